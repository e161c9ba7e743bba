//! The benchmark tenant: `registries x repos x images`, findings drawn like the simulator's large
//! scenario, and the throttling limits it is served with.

use std::collections::BTreeMap;
use std::time::Duration;

use azure_sim::{Limits, RegistrySpec, RepoSpec, Sku, TenantSpec};

const TEAMS: [&str; 10] = [
    "payments", "web", "data", "ml", "platform", "mobile", "search", "infra", "security", "billing",
];

/// How big the tenant is and whether its limits are scaled down.
#[derive(Debug, Clone)]
pub(crate) struct Size {
    pub(crate) registries: u32,
    pub(crate) repos: u32,
    pub(crate) images: u32,
    /// Limits divided so a tiny tenant still meets throttling (CI smoke size).
    pub(crate) scaled: bool,
}

impl Size {
    pub(crate) fn new(registries: u32, repos: u32, images: u32) -> Self {
        Self {
            registries,
            repos,
            images,
            scaled: false,
        }
    }

    /// 3 registries (one per SKU) x 10 repositories x 5 images, with limits small enough that
    /// every budget throttles within seconds.
    pub(crate) fn smoke() -> Self {
        Self {
            registries: 3,
            repos: 10,
            images: 5,
            scaled: true,
        }
    }

    fn sku(r: u32) -> Sku {
        [Sku::Premium, Sku::Standard, Sku::Basic][(r % 3) as usize]
    }

    fn name(r: u32) -> String {
        format!("benchreg{r:03}")
    }

    /// The tenant: findings drawn as in the simulator's large scenario.
    pub(crate) fn spec(&self) -> TenantSpec {
        let mut spec = TenantSpec::large();
        spec.subscriptions = vec!["Bench Enterprise".to_owned()];
        spec.registries = (0..self.registries)
            .map(|r| RegistrySpec {
                name: Self::name(r),
                subscription: 0,
                resource_group: format!("rg-bench-{r:03}"),
                location: "westeurope".to_owned(),
                sku: Self::sku(r),
                public_network: true,
                data_plane_denied: false,
                aad_as_arm: true,
                repositories: (0..self.repos)
                    .map(|i| RepoSpec {
                        name: format!("{}/service-{i:04}", TEAMS[i as usize % TEAMS.len()]),
                        images: self.images,
                    })
                    .collect(),
            })
            .collect();
        spec
    }

    /// Registry name to SKU.
    pub(crate) fn skus(&self) -> BTreeMap<String, Sku> {
        (0..self.registries)
            .map(|r| (Self::name(r), Self::sku(r)))
            .collect()
    }

    /// Azure's documented limits, or for the smoke size the same shapes scaled down: ACR
    /// 10/20/40 per 2 s, Resource Graph 2 per 1 s, ARM a bucket of 5 refilled at 5/s.
    pub(crate) fn limits(&self) -> Limits {
        if !self.scaled {
            return Limits::default();
        }
        Limits {
            arm_reads_capacity: 5,
            arm_reads_per_sec: 5.0,
            arg_queries: 2,
            arg_window: Duration::from_secs(1),
            acr_read_ops: [10, 20, 40],
            acr_window: Duration::from_secs(2),
            ..Limits::default()
        }
    }

    /// Requests the APIs need at least, per endpoint, for a full scan (pages at their maximum:
    /// 1000 for ACR lists and Resource Graph, the tenant's ARM page). ACR: one AAD exchange per
    /// registry and two access tokens (the catalog, then every repository in one token request).
    pub(crate) fn minimum_requests(
        &self,
        arg_rows: u64,
        arm_page: usize,
    ) -> BTreeMap<&'static str, u64> {
        let regs = u64::from(self.registries);
        let mut m = BTreeMap::new();
        m.insert("entra.token", 1);
        m.insert(
            "arm.registries",
            regs.div_ceil(arm_page.max(1) as u64).max(1),
        );
        m.insert("arg.resources", arg_rows.div_ceil(1000).max(1));
        m.insert("acr.exchange", regs);
        m.insert("acr.token", regs * 2);
        m.insert(
            "acr.catalog",
            regs * u64::from(self.repos).div_ceil(1000).max(1),
        );
        m.insert(
            "acr.manifests",
            regs * u64::from(self.repos) * u64::from(self.images).div_ceil(1000).max(1),
        );
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_size_is_two_hundred_thousand_images_in_mixed_skus() {
        let size = Size::new(20, 500, 20);
        let spec = size.spec();
        let images: u32 = spec
            .registries
            .iter()
            .flat_map(|r| r.repositories.iter().map(|p| p.images))
            .sum();
        assert_eq!(images, 200_000);
        let skus = size.skus();
        assert_eq!(skus.values().filter(|s| **s == Sku::Basic).count(), 6);
        assert_eq!(skus.values().filter(|s| **s == Sku::Premium).count(), 7);
        assert_eq!(size.limits(), Limits::default());
    }

    #[test]
    fn minimum_requests_follow_page_maxima() {
        let m = Size::new(20, 500, 20).minimum_requests(1_000_001, 100);
        assert_eq!(m["arg.resources"], 1001);
        assert_eq!(m["acr.manifests"], 10_000);
        assert_eq!(m["acr.catalog"], 20);
        assert_eq!(m["arm.registries"], 1);
    }
}
