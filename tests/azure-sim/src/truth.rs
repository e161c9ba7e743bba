//! The ground truth: what a correct connector must report for the tenant as it is now.
//!
//! Iterators walk the lazily generated tenant, so a million findings are streamed, never held.

use std::io::{self, Write};
use std::sync::Arc;

use serde::Serialize;

use crate::tenant::{DataSet, Image, Overlay, PackageFinding, Tenant};
use crate::vulns::{PackageKind, Severity};

/// A registry in the tenant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TruthRegistry {
    pub name: String,
    pub login_server: String,
    pub subscription_id: String,
    pub resource_group: String,
    pub arm_id: String,
    pub sku: String,
    pub public_network: bool,
    /// False when the data plane refuses the principal (403) or the registry is private.
    pub data_plane_readable: bool,
}

/// An image (manifest) in a repository.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TruthImage {
    pub login_server: String,
    pub repository: String,
    pub digest: String,
    pub tags: Vec<String>,
    pub architecture: String,
    pub os: String,
}

/// An open finding: one vulnerability of one package in one image.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TruthFinding {
    pub login_server: String,
    pub repository: String,
    pub digest: String,
    pub vulnerability_id: String,
    pub package: String,
    pub package_version: String,
    pub fixed_version: Option<String>,
    /// As the tenant's data set reports it (Qualys has no `Critical`: those read `High`).
    pub severity: Severity,
    pub package_type: String,
    pub exploitable: bool,
}

/// Totals written by [`GroundTruth::write_json`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TruthCounts {
    pub registries: u64,
    pub images: u64,
    pub findings: u64,
}

/// A consistent snapshot of the tenant's ground truth.
#[derive(Clone, Debug)]
pub struct GroundTruth {
    tenant: Arc<Tenant>,
    overlay: Arc<Overlay>,
}

impl GroundTruth {
    pub(crate) fn new(tenant: Arc<Tenant>) -> Self {
        let overlay = tenant.overlay();
        Self { tenant, overlay }
    }

    /// Every registry, in ARM id order.
    pub fn registries(&self) -> Vec<TruthRegistry> {
        self.tenant
            .registries
            .iter()
            .map(|r| TruthRegistry {
                name: r.spec.name.clone(),
                login_server: r.login_server.clone(),
                subscription_id: r.subscription_id.clone(),
                resource_group: r.spec.resource_group.clone(),
                arm_id: r.arm_id.clone(),
                sku: r.spec.sku.as_str().to_owned(),
                public_network: r.spec.public_network,
                data_plane_readable: r.spec.public_network && !r.spec.data_plane_denied,
            })
            .collect()
    }

    fn images_raw(&self) -> impl Iterator<Item = Image> + '_ {
        let t = &self.tenant;
        let ov = &self.overlay;
        (0..t.registries.len()).flat_map(move |reg| {
            (0..t.registries[reg].repos.len())
                .flat_map(move |repo| t.repo_images(ov, reg, repo).into_iter())
        })
    }

    fn names(&self, image: &Image) -> (&str, &str) {
        let r = &self.tenant.registries[image.key.reg as usize];
        (&r.login_server, &r.repos[image.key.repo as usize].name)
    }

    /// Every image currently in a registry.
    pub fn images(&self) -> impl Iterator<Item = TruthImage> + '_ {
        self.images_raw().map(move |i| {
            let (login, repo) = self.names(&i);
            TruthImage {
                login_server: login.to_owned(),
                repository: repo.to_owned(),
                digest: i.digest.clone(),
                tags: i.tags.clone(),
                architecture: i.architecture.to_owned(),
                os: i.os.to_owned(),
            }
        })
    }

    /// Every open finding.
    pub fn findings(&self) -> impl Iterator<Item = TruthFinding> + '_ {
        let qualys = self.tenant.data_set == DataSet::Qualys;
        self.images_raw().flat_map(move |image| {
            let packages = self.tenant.packages(&self.overlay, &image);
            let (login, repo) = self.names(&image);
            let (login, repo) = (login.to_owned(), repo.to_owned());
            packages
                .into_iter()
                .filter(PackageFinding::open)
                .flat_map(move |p| {
                    let image = image.clone();
                    let (login, repo) = (login.clone(), repo.clone());
                    p.cves
                        .clone()
                        .into_iter()
                        .filter(|c| !c.fixed)
                        .map(move |c| TruthFinding {
                            login_server: login.clone(),
                            repository: repo.clone(),
                            digest: image.digest.clone(),
                            vulnerability_id: c.cve.id.clone(),
                            // Qualys rows name no package (only their title does), so a
                            // correct connector reports none.
                            package: if qualys {
                                String::new()
                            } else {
                                p.name().to_owned()
                            },
                            package_version: p.version.to_owned(),
                            fixed_version: p.fixed_version.clone(),
                            severity: if qualys && c.cve.severity == Severity::Critical {
                                Severity::High
                            } else {
                                c.cve.severity
                            },
                            package_type: match p.kind() {
                                PackageKind::Os => "OS".to_owned(),
                                PackageKind::Language(_) => "Language".to_owned(),
                            },
                            exploitable: c.exploit.iter().any(|e| *e),
                        })
                })
        })
    }

    /// Streams `{"registries":[..],"images":[..],"findings":[..]}` to `w`.
    pub fn write_json(&self, mut w: impl Write) -> io::Result<TruthCounts> {
        let mut counts = TruthCounts::default();
        w.write_all(b"{\"registries\":")?;
        let regs = self.registries();
        counts.registries = regs.len() as u64;
        serde_json::to_writer(&mut w, &regs)?;
        w.write_all(b",\n\"images\":[")?;
        for (i, img) in self.images().enumerate() {
            if i > 0 {
                w.write_all(b",")?;
            }
            w.write_all(b"\n")?;
            serde_json::to_writer(&mut w, &img)?;
            counts.images += 1;
        }
        w.write_all(b"],\n\"findings\":[")?;
        for (i, f) in self.findings().enumerate() {
            if i > 0 {
                w.write_all(b",")?;
            }
            w.write_all(b"\n")?;
            serde_json::to_writer(&mut w, &f)?;
            counts.findings += 1;
        }
        w.write_all(b"]}\n")?;
        Ok(counts)
    }
}
