//! The simulated tenant: what exists (subscriptions, registries, repositories, images, findings)
//! and how tests change it between scans.
//!
//! Registries and repository names are small and kept in memory; images and findings are never
//! stored. Image `i` of a repository, its manifest, digest and vulnerable packages are computed
//! from the seed, the registry and repository names, `i` and a push generation. Mutations live
//! in a small copy-on-write [`Overlay`] (removed images, re-push generations, added images, fixed
//! findings), so a 200k-image tenant costs a few megabytes.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::util::{Rng, hash, hash_bytes, seeded_guid};
use crate::vulns::{self, Cve, PACKAGES, PackageKind};
use crate::{Error, Result};

/// Registry SKU; decides the data-plane ReadOps limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Sku {
    Basic,
    Standard,
    Premium,
}

impl Sku {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Basic => "Basic",
            Self::Standard => "Standard",
            Self::Premium => "Premium",
        }
    }
}

/// Which Defender data set Resource Graph holds for this tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum DataSet {
    /// Current individual recommendations (`microsoft.security/assessments`).
    #[default]
    Individual,
    /// Legacy MDVM sub-assessments (assessment key `c0b7cfc6-…`).
    Mdvm,
    /// Legacy Qualys sub-assessments (assessment key `dbd0cb49-…`).
    Qualys,
}

impl DataSet {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "individual" => Ok(Self::Individual),
            "mdvm" => Ok(Self::Mdvm),
            "qualys" => Ok(Self::Qualys),
            other => Err(Error::UnknownDataSet(other.to_owned())),
        }
    }
}

/// A named, ready-made tenant and fault profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// Three registries, a handful of images, a few dozen readable findings.
    Demo,
    /// A little more data, an empty registry, small pages so paging is exercised.
    Small,
    /// `Small` plus transient faults, a registry the principal may not read, a private registry
    /// and tokens that expire mid-scan.
    Hostile,
    /// 200k images and about a million findings, generated lazily.
    Large,
}

impl Scenario {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "demo" => Ok(Self::Demo),
            "small" => Ok(Self::Small),
            "hostile" => Ok(Self::Hostile),
            "large" => Ok(Self::Large),
            other => Err(Error::UnknownScenario(other.to_owned())),
        }
    }
}

/// One repository and how many images it starts with.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RepoSpec {
    pub name: String,
    pub images: u32,
}

/// One registry.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RegistrySpec {
    /// Registry name (5–50 alphanumerics); the login server is `<name>.azurecr.<suffix>:<port>`.
    pub name: String,
    /// Index into [`TenantSpec::subscriptions`].
    pub subscription: usize,
    pub resource_group: String,
    pub location: String,
    pub sku: Sku,
    /// `publicNetworkAccess`; when false the data plane answers 403 to every request.
    pub public_network: bool,
    /// The principal has no data-plane permission here: 403 `DENIED`.
    pub data_plane_denied: bool,
    /// `policies.azureADAuthenticationAsArmPolicy`: `/oauth2/exchange` accepts ARM tokens.
    pub aad_as_arm: bool,
    pub repositories: Vec<RepoSpec>,
}

/// How findings are drawn for each image.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FindingSpec {
    /// Share of images with at least one vulnerable package.
    pub vulnerable_share: f64,
    /// Vulnerable packages per vulnerable image (inclusive range).
    pub packages: (u32, u32),
    /// CVEs per package row (inclusive range).
    pub cves: (u32, u32),
    /// Share of package rows reported `Healthy` (already fixed upstream).
    pub healthy_share: f64,
    /// Share of package rows `NotApplicable` with cause `Exempt`.
    pub exempt_share: f64,
    /// Share of package rows with a fixed version available.
    pub fix_share: f64,
    /// Share of CVEs with exploitability flags set.
    pub exploit_share: f64,
    /// Draw from synthetic CVE ids too (large tenants); otherwise only the readable table.
    pub synthetic_cves: bool,
}

/// How images look.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ImageSpec {
    /// Share of images (other than the newest of a repository) that carry no tag.
    pub untagged_share: f64,
    /// `(architecture, os)` choices.
    pub platforms: Vec<(String, String)>,
}

/// Everything the generator needs to build a tenant.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TenantSpec {
    /// Display names of the subscriptions; ids derive from the seed.
    pub subscriptions: Vec<String>,
    pub registries: Vec<RegistrySpec>,
    pub findings: FindingSpec,
    pub images: ImageSpec,
    pub data_set: DataSet,
    /// ARM `nextLink` page size for subscription and registry lists.
    pub arm_page_size: usize,
}

fn reg(name: &str, sku: Sku, repos: &[(&str, u32)]) -> RegistrySpec {
    RegistrySpec {
        name: name.to_owned(),
        subscription: 0,
        resource_group: format!("rg-{name}"),
        location: "westeurope".to_owned(),
        sku,
        public_network: true,
        data_plane_denied: false,
        aad_as_arm: true,
        repositories: repos
            .iter()
            .map(|(n, i)| RepoSpec {
                name: (*n).to_owned(),
                images: *i,
            })
            .collect(),
    }
}

fn default_platforms() -> Vec<(String, String)> {
    vec![
        ("amd64".to_owned(), "linux".to_owned()),
        ("amd64".to_owned(), "linux".to_owned()),
        ("arm64".to_owned(), "linux".to_owned()),
    ]
}

impl TenantSpec {
    /// The spec a scenario uses.
    pub fn for_scenario(scenario: Scenario) -> Self {
        match scenario {
            Scenario::Demo => Self::demo(),
            Scenario::Small => Self::small(),
            Scenario::Hostile => Self::hostile(),
            Scenario::Large => Self::large(),
        }
    }

    /// Three registries, nine repositories, about twenty images.
    pub fn demo() -> Self {
        Self {
            subscriptions: vec!["Contoso Production".to_owned()],
            registries: vec![
                reg(
                    "contosoprod",
                    Sku::Premium,
                    &[
                        ("payments/api", 3),
                        ("payments/worker", 2),
                        ("web/frontend", 3),
                        ("base/alpine", 2),
                    ],
                ),
                reg(
                    "contosodev",
                    Sku::Standard,
                    &[
                        ("payments/api", 2),
                        ("tools/ci-runner", 2),
                        ("ml/trainer", 1),
                    ],
                ),
                reg(
                    "contosolegacy",
                    Sku::Basic,
                    &[("legacy/billing", 2), ("legacy/reports", 1)],
                ),
            ],
            findings: FindingSpec {
                vulnerable_share: 0.85,
                packages: (1, 3),
                cves: (1, 2),
                healthy_share: 0.1,
                exempt_share: 0.08,
                fix_share: 0.6,
                exploit_share: 0.15,
                synthetic_cves: false,
            },
            images: ImageSpec {
                untagged_share: 0.1,
                platforms: default_platforms(),
            },
            data_set: DataSet::Individual,
            arm_page_size: 100,
        }
    }

    /// A small tenant with an empty registry and small ARM pages.
    pub fn small() -> Self {
        let mut spec = Self::demo();
        spec.subscriptions = vec!["Fabrikam Small".to_owned()];
        spec.registries = vec![
            reg(
                "fabrikamapps",
                Sku::Standard,
                &[
                    ("apps/api", 4),
                    ("apps/web", 4),
                    ("apps/worker", 3),
                    ("library/busybox", 2),
                    ("library/hello-world", 12),
                ],
            ),
            reg(
                "fabrikambase",
                Sku::Basic,
                &[("base/debian", 3), ("base/ubuntu", 3), ("base/alpine", 3)],
            ),
            reg("fabrikamempty", Sku::Basic, &[]),
            reg(
                "fabrikamml",
                Sku::Premium,
                &[("ml/trainer", 3), ("ml/serving/gpu", 2)],
            ),
        ];
        spec.findings.packages = (1, 4);
        spec.findings.cves = (1, 3);
        spec.arm_page_size = 2;
        spec
    }

    /// `small` with a denied registry and a private one.
    pub fn hostile() -> Self {
        let mut spec = Self::small();
        spec.subscriptions = vec!["Fabrikam Hostile".to_owned()];
        let mut denied = reg("fabrikamsecret", Sku::Standard, &[("secret/app", 2)]);
        denied.data_plane_denied = true;
        let mut private = reg("fabrikamprivate", Sku::Premium, &[("internal/app", 2)]);
        private.public_network = false;
        spec.registries.push(denied);
        spec.registries.push(private);
        spec
    }

    /// 20 registries × 100 repositories × 100 images = 200k images, about 1M open findings.
    pub fn large() -> Self {
        let teams = [
            "payments", "web", "data", "ml", "platform", "mobile", "search", "infra", "security",
            "billing",
        ];
        let registries = (0..20)
            .map(|r| {
                let sku = [Sku::Premium, Sku::Standard, Sku::Basic][r % 3];
                let repos = (0..100)
                    .map(|i| RepoSpec {
                        name: format!("{}/service-{i:03}", teams[i % teams.len()]),
                        images: 100,
                    })
                    .collect();
                RegistrySpec {
                    repositories: repos,
                    ..reg(&format!("largereg{r:02}"), sku, &[])
                }
            })
            .collect();
        Self {
            subscriptions: vec!["Large Enterprise".to_owned()],
            registries,
            findings: FindingSpec {
                vulnerable_share: 0.9,
                packages: (1, 5),
                cves: (1, 3),
                healthy_share: 0.04,
                exempt_share: 0.03,
                fix_share: 0.6,
                exploit_share: 0.05,
                synthetic_cves: true,
            },
            images: ImageSpec {
                untagged_share: 0.05,
                platforms: default_platforms(),
            },
            data_set: DataSet::Individual,
            arm_page_size: 100,
        }
    }

    fn validate(&self) -> Result<()> {
        let mut names = HashSet::new();
        for r in &self.registries {
            let ok = (5..=50).contains(&r.name.len())
                && r.name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
            if !ok {
                return Err(Error::InvalidSpec(format!("registry name `{}`", r.name)));
            }
            if !names.insert(r.name.clone()) {
                return Err(Error::InvalidSpec(format!(
                    "duplicate registry `{}`",
                    r.name
                )));
            }
            if r.subscription >= self.subscriptions.len() {
                return Err(Error::InvalidSpec(format!(
                    "registry `{}` names subscription {}",
                    r.name, r.subscription
                )));
            }
            let mut repos = HashSet::new();
            for repo in &r.repositories {
                if repo.images > 0xffff || !repos.insert(repo.name.clone()) {
                    return Err(Error::InvalidSpec(format!("repository `{}`", repo.name)));
                }
            }
        }
        Ok(())
    }
}

/// A subscription.
#[derive(Clone, Debug)]
pub(crate) struct Subscription {
    pub(crate) id: String,
    pub(crate) display_name: String,
}

/// A repository as served.
#[derive(Clone, Debug)]
pub(crate) struct Repo {
    pub(crate) name: String,
    pub(crate) base_images: u32,
    pub(crate) name_hash: u64,
}

/// A registry as served.
#[derive(Clone, Debug)]
pub(crate) struct Registry {
    pub(crate) spec: RegistrySpec,
    pub(crate) subscription_id: String,
    pub(crate) arm_id: String,
    pub(crate) login_server: String,
    pub(crate) name_hash: u64,
    /// Sorted by name, as the catalog lists them.
    pub(crate) repos: Vec<Repo>,
}

/// Identifies an image slot: registry position, repository position, image index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct ImageKey {
    pub(crate) reg: u32,
    pub(crate) repo: u32,
    pub(crate) idx: u32,
}

/// Identifies one finding: an image push, a package row and a CVE in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct FindingKey {
    pub(crate) image: ImageKey,
    pub(crate) generation: u32,
    pub(crate) pkg: u8,
    pub(crate) cve: u8,
}

/// Test-driven changes on top of the generated tenant.
#[derive(Clone, Debug, Default)]
pub(crate) struct Overlay {
    pub(crate) epoch: u64,
    removed: HashSet<ImageKey>,
    generations: HashMap<ImageKey, u32>,
    added: HashMap<(u32, u32), u32>,
    fixed: HashSet<FindingKey>,
}

impl Overlay {
    /// The push generation of a slot, `None` when the image was removed.
    pub(crate) fn generation(&self, key: ImageKey) -> Option<u32> {
        if self.removed.contains(&key) {
            None
        } else {
            Some(self.generations.get(&key).copied().unwrap_or(0))
        }
    }
}

/// A manifest as stored in a repository.
#[derive(Clone, Debug)]
pub(crate) struct Image {
    pub(crate) key: ImageKey,
    pub(crate) generation: u32,
    pub(crate) digest: String,
    pub(crate) manifest: String,
    pub(crate) tags: Vec<String>,
    pub(crate) architecture: &'static str,
    pub(crate) os: &'static str,
    pub(crate) size: u64,
    pub(crate) created: i64,
    pub(crate) created_frac: u32,
}

pub(crate) const MANIFEST_MEDIA_TYPE: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// Status of a package row before fixes are applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BaseStatus {
    Unhealthy,
    Healthy,
    Exempt,
}

/// One CVE of a package row.
#[derive(Clone, Debug)]
pub(crate) struct CveFinding {
    pub(crate) idx: u8,
    pub(crate) cve: Cve,
    pub(crate) fixed: bool,
    pub(crate) exploit: [bool; 3],
}

/// One vulnerable package in an image: a row of individual recommendations.
#[derive(Clone, Debug)]
pub(crate) struct PackageFinding {
    pub(crate) idx: u8,
    pub(crate) package: usize,
    pub(crate) version: &'static str,
    pub(crate) fixed_version: Option<String>,
    pub(crate) base: BaseStatus,
    pub(crate) cves: Vec<CveFinding>,
    pub(crate) time_generated: i64,
}

impl PackageFinding {
    pub(crate) fn name(&self) -> &'static str {
        PACKAGES[self.package].name
    }

    pub(crate) fn kind(&self) -> PackageKind {
        PACKAGES[self.package].kind
    }

    /// True when the package row is reported as a finding (Unhealthy and not all fixed).
    pub(crate) fn open(&self) -> bool {
        self.base == BaseStatus::Unhealthy && self.cves.iter().any(|c| !c.fixed)
    }

    /// The row status as ARG shows it.
    pub(crate) fn status(&self) -> BaseStatus {
        match self.base {
            BaseStatus::Unhealthy if !self.open() => BaseStatus::Healthy,
            other => other,
        }
    }

    /// The status of one CVE as a sub-assessment row.
    pub(crate) fn cve_status(&self, c: &CveFinding) -> BaseStatus {
        match self.base {
            BaseStatus::Unhealthy if c.fixed => BaseStatus::Healthy,
            other => other,
        }
    }
}

/// 2026-05-01T00:00:00Z: the newest push time of generated images.
const BASE_TIME: i64 = 1_777_593_600;

/// The simulated tenant.
#[derive(Debug)]
pub(crate) struct Tenant {
    pub(crate) seed: u64,
    #[allow(clippy::struct_field_names, reason = "Azure calls it the tenant id")]
    pub(crate) tenant_id: String,
    pub(crate) subscriptions: Vec<Subscription>,
    /// Sorted by ARM id, which is the order ARG pages them in.
    pub(crate) registries: Vec<Registry>,
    pub(crate) findings: FindingSpec,
    pub(crate) images: ImageSpec,
    pub(crate) data_set: DataSet,
    pub(crate) arm_page_size: usize,
    overlay: RwLock<Arc<Overlay>>,
}

impl Tenant {
    /// Builds the tenant; `registry_host` turns a registry name into its login server.
    pub(crate) fn new(
        spec: &TenantSpec,
        seed: u64,
        registry_host: impl Fn(&str) -> String,
    ) -> Result<Self> {
        spec.validate()?;
        let subscriptions: Vec<Subscription> = spec
            .subscriptions
            .iter()
            .enumerate()
            .map(|(i, name)| Subscription {
                id: seeded_guid(seed, &format!("subscription-{i}")),
                display_name: name.clone(),
            })
            .collect();
        let mut registries: Vec<Registry> = spec
            .registries
            .iter()
            .map(|r| {
                let sub = &subscriptions[r.subscription].id;
                let mut repos: Vec<Repo> = r
                    .repositories
                    .iter()
                    .map(|p| Repo {
                        name: p.name.clone(),
                        base_images: p.images,
                        name_hash: hash_bytes(p.name.as_bytes()),
                    })
                    .collect();
                repos.sort_by(|a, b| a.name.cmp(&b.name));
                Registry {
                    arm_id: format!(
                        "/subscriptions/{sub}/resourceGroups/{}/providers/Microsoft.ContainerRegistry/registries/{}",
                        r.resource_group, r.name
                    ),
                    subscription_id: sub.clone(),
                    login_server: registry_host(&r.name),
                    name_hash: hash_bytes(r.name.as_bytes()),
                    spec: r.clone(),
                    repos,
                }
            })
            .collect();
        registries.sort_by(|a, b| a.arm_id.cmp(&b.arm_id));
        Ok(Self {
            seed,
            tenant_id: seeded_guid(seed, "tenant"),
            subscriptions,
            registries,
            findings: spec.findings.clone(),
            images: spec.images.clone(),
            data_set: spec.data_set,
            arm_page_size: spec.arm_page_size.max(1),
            overlay: RwLock::new(Arc::new(Overlay::default())),
        })
    }

    /// The current overlay; cheap to take, stays consistent for one request.
    pub(crate) fn overlay(&self) -> Arc<Overlay> {
        self.overlay
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn mutate<T>(&self, f: impl FnOnce(&mut Overlay) -> T) -> T {
        let mut guard = self
            .overlay
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut next = (**guard).clone();
        let out = f(&mut next);
        next.epoch += 1;
        *guard = Arc::new(next);
        out
    }

    pub(crate) fn registry_by_name(&self, name: &str) -> Option<usize> {
        self.registries
            .iter()
            .position(|r| r.spec.name.eq_ignore_ascii_case(name))
    }

    pub(crate) fn repo_by_name(&self, reg: usize, name: &str) -> Option<usize> {
        self.registries[reg]
            .repos
            .binary_search_by(|r| r.name.as_str().cmp(name))
            .ok()
    }

    /// Number of image slots in a repository (removed ones included).
    pub(crate) fn slots(&self, ov: &Overlay, reg: usize, repo: usize) -> u32 {
        self.registries[reg].repos[repo].base_images
            + ov.added
                .get(&(reg as u32, repo as u32))
                .copied()
                .unwrap_or(0)
    }

    /// The image in a slot, or `None` when it was removed.
    pub(crate) fn image(&self, ov: &Overlay, key: ImageKey) -> Option<Image> {
        if ov.removed.contains(&key) {
            return None;
        }
        let generation = ov.generations.get(&key).copied().unwrap_or(0);
        let slots = self.slots(ov, key.reg as usize, key.repo as usize);
        Some(self.build_image(key, generation, slots))
    }

    fn image_seed(&self, key: ImageKey, generation: u32) -> [u64; 5] {
        let r = &self.registries[key.reg as usize];
        [
            self.seed,
            r.name_hash,
            r.repos[key.repo as usize].name_hash,
            u64::from(key.idx),
            u64::from(generation),
        ]
    }

    fn build_image(&self, key: ImageKey, generation: u32, slots: u32) -> Image {
        let mut rng = Rng::new(&self.image_seed(key, generation));
        let layers = rng.range(1, 4);
        let config_size = 1200 + rng.range(0, 6000);
        let config_digest = hex::encode(Sha256::digest(rng.next_u64().to_le_bytes()));
        let mut size = u64::from(config_size);
        let mut layer_json = Vec::with_capacity(layers as usize);
        for _ in 0..layers {
            let s = 500_000 + u64::from(rng.range(0, 40_000_000));
            size += s;
            let d = hex::encode(Sha256::digest(rng.next_u64().to_le_bytes()));
            layer_json.push(format!(
                r#"{{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":{s},"digest":"sha256:{d}"}}"#
            ));
        }
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{MANIFEST_MEDIA_TYPE}","config":{{"mediaType":"application/vnd.docker.container.image.v1+json","size":{config_size},"digest":"sha256:{config_digest}"}},"layers":[{}]}}"#,
            layer_json.join(",")
        );
        let digest = format!(
            "sha256:{}",
            hex::encode(Sha256::digest(manifest.as_bytes()))
        );
        let newest = key.idx + 1 == slots;
        let mut tags = Vec::new();
        if newest {
            tags.push("latest".to_owned());
        }
        if newest || !rng.chance(self.images.untagged_share) {
            tags.push(format!("1.{}.{}", key.idx, generation));
        }
        tags.sort();
        let platform = if self.images.platforms.is_empty() {
            ("amd64", "linux")
        } else {
            let (a, o) = &self.images.platforms
                [rng.range(0, self.images.platforms.len() as u32 - 1) as usize];
            (static_str(a), static_str(o))
        };
        let created = BASE_TIME - i64::from(slots - key.idx) * 3 * 86_400
            + i64::from(rng.range(0, 86_000))
            + i64::from(generation) * 86_400;
        Image {
            key,
            generation,
            digest,
            manifest,
            tags,
            architecture: platform.0,
            os: platform.1,
            size: size + manifest_len_hint(layers),
            created,
            created_frac: rng.range(0, 9_999_999),
        }
    }

    /// All images currently in a repository, in slot order.
    pub(crate) fn repo_images(&self, ov: &Overlay, reg: usize, repo: usize) -> Vec<Image> {
        (0..self.slots(ov, reg, repo))
            .filter_map(|idx| {
                self.image(
                    ov,
                    ImageKey {
                        reg: reg as u32,
                        repo: repo as u32,
                        idx,
                    },
                )
            })
            .collect()
    }

    /// True when the repository currently holds at least one image.
    pub(crate) fn repo_exists(&self, ov: &Overlay, reg: usize, repo: usize) -> bool {
        (0..self.slots(ov, reg, repo)).any(|idx| {
            !ov.removed.contains(&ImageKey {
                reg: reg as u32,
                repo: repo as u32,
                idx,
            })
        })
    }

    /// The vulnerable packages Defender reports for an image push.
    pub(crate) fn packages(&self, ov: &Overlay, image: &Image) -> Vec<PackageFinding> {
        self.packages_of(ov, image.key, image.generation)
    }

    /// Like [`Self::packages`] without building the image (no hashing), for counting.
    pub(crate) fn packages_of(
        &self,
        ov: &Overlay,
        key: ImageKey,
        generation: u32,
    ) -> Vec<PackageFinding> {
        let spec = &self.findings;
        let mut rng = Rng::new(&[hash(&self.image_seed(key, generation)), 0xF1]);
        if !rng.chance(spec.vulnerable_share) {
            return Vec::new();
        }
        let k = rng
            .range(spec.packages.0, spec.packages.1)
            .min(PACKAGES.len() as u32);
        let mut pool: Vec<usize> = (0..PACKAGES.len()).collect();
        let mut out = Vec::with_capacity(k as usize);
        for pkg in 0..k {
            let pick = rng.range(pkg, pool.len() as u32 - 1) as usize;
            pool.swap(pkg as usize, pick);
            let p = pool[pkg as usize];
            let def = &PACKAGES[p];
            let version = def.versions[rng.range(0, def.versions.len() as u32 - 1) as usize];
            let fixed_version = rng.chance(spec.fix_share).then(|| vulns::bump(version));
            let roll = rng.unit();
            let base = if roll < spec.exempt_share {
                BaseStatus::Exempt
            } else if roll < spec.exempt_share + spec.healthy_share {
                BaseStatus::Healthy
            } else {
                BaseStatus::Unhealthy
            };
            let n_pool = vulns::cve_pool(p, spec.synthetic_cves);
            let c = rng.range(spec.cves.0, spec.cves.1).clamp(1, n_pool);
            let mut variants: Vec<u32> = Vec::with_capacity(c as usize);
            while variants.len() < c as usize {
                let v = rng.range(0, n_pool - 1);
                if !variants.contains(&v) {
                    variants.push(v);
                }
            }
            variants.sort_unstable();
            let cves = variants
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let exploited = rng.chance(spec.exploit_share);
                    let fk = FindingKey {
                        image: key,
                        generation,
                        pkg: pkg as u8,
                        cve: i as u8,
                    };
                    CveFinding {
                        idx: i as u8,
                        cve: vulns::cve(p, *v),
                        fixed: ov.fixed.contains(&fk),
                        exploit: [exploited, exploited || rng.chance(0.05), false],
                    }
                })
                .collect();
            out.push(PackageFinding {
                idx: pkg as u8,
                package: p,
                version,
                fixed_version,
                base,
                cves,
                time_generated: BASE_TIME + 86_400 + i64::from(rng.range(0, 86_000)),
            });
        }
        out
    }

    /// Finds an image by digest.
    pub(crate) fn find_image(
        &self,
        ov: &Overlay,
        registry: &str,
        repository: &str,
        digest: &str,
    ) -> Result<Image> {
        let reg = self
            .registry_by_name(registry)
            .ok_or_else(|| Error::UnknownRegistry(registry.to_owned()))?;
        let repo = self
            .repo_by_name(reg, repository)
            .ok_or_else(|| Error::UnknownRepository(repository.to_owned()))?;
        self.repo_images(ov, reg, repo)
            .into_iter()
            .find(|i| i.digest == digest)
            .ok_or_else(|| Error::UnknownDigest(digest.to_owned()))
    }

    /// Visits every current image, registry by registry.
    pub(crate) fn for_each_image(&self, ov: &Overlay, mut f: impl FnMut(&Image)) {
        for reg in 0..self.registries.len() {
            for repo in 0..self.registries[reg].repos.len() {
                for image in self.repo_images(ov, reg, repo) {
                    f(&image);
                }
            }
        }
    }

    /// Deterministic selection of a share of items for a mutation.
    fn pick(&self, ov: &Overlay, salt: u64, parts: &[u64], share: f64) -> bool {
        let mut all = vec![self.seed, salt, ov.epoch];
        all.extend_from_slice(parts);
        crate::util::unit_of(hash(&all)) < share
    }

    pub(crate) fn remove_image(
        &self,
        registry: &str,
        repository: &str,
        digest: &str,
    ) -> Result<()> {
        let ov = self.overlay();
        let image = self.find_image(&ov, registry, repository, digest)?;
        self.mutate(|o| o.removed.insert(image.key));
        Ok(())
    }

    pub(crate) fn remove_share(&self, share: f64) -> usize {
        let ov = self.overlay();
        let mut keys = Vec::new();
        self.for_each_image(&ov, |i| {
            if self.pick(
                &ov,
                1,
                &[
                    u64::from(i.key.reg),
                    u64::from(i.key.repo),
                    u64::from(i.key.idx),
                ],
                share,
            ) {
                keys.push(i.key);
            }
        });
        let n = keys.len();
        self.mutate(|o| o.removed.extend(keys));
        n
    }

    /// Re-pushes an image: same slot and tags, new content, new digest, new findings.
    pub(crate) fn repush_image(
        &self,
        registry: &str,
        repository: &str,
        digest: &str,
    ) -> Result<String> {
        let ov = self.overlay();
        let image = self.find_image(&ov, registry, repository, digest)?;
        self.mutate(|o| {
            o.generations.insert(image.key, image.generation + 1);
        });
        let ov = self.overlay();
        Ok(self
            .image(&ov, image.key)
            .map(|i| i.digest)
            .unwrap_or_default())
    }

    pub(crate) fn repush_share(&self, share: f64) -> usize {
        let ov = self.overlay();
        let mut keys = Vec::new();
        self.for_each_image(&ov, |i| {
            if self.pick(
                &ov,
                2,
                &[
                    u64::from(i.key.reg),
                    u64::from(i.key.repo),
                    u64::from(i.key.idx),
                ],
                share,
            ) {
                keys.push((i.key, i.generation));
            }
        });
        let n = keys.len();
        self.mutate(|o| {
            for (k, g) in keys {
                o.generations.insert(k, g + 1);
            }
        });
        n
    }

    /// Pushes `count` new images to a repository (it must exist in the spec); returns digests.
    pub(crate) fn push_images(
        &self,
        registry: &str,
        repository: &str,
        count: u32,
    ) -> Result<Vec<String>> {
        let reg = self
            .registry_by_name(registry)
            .ok_or_else(|| Error::UnknownRegistry(registry.to_owned()))?;
        let repo = self
            .repo_by_name(reg, repository)
            .ok_or_else(|| Error::UnknownRepository(repository.to_owned()))?;
        let before = self.slots(&self.overlay(), reg, repo);
        if before + count > 0xffff {
            return Err(Error::InvalidSpec(format!(
                "repository `{repository}` would exceed 65535 images"
            )));
        }
        self.mutate(|o| *o.added.entry((reg as u32, repo as u32)).or_default() += count);
        let ov = self.overlay();
        Ok((before..before + count)
            .filter_map(|idx| {
                self.image(
                    &ov,
                    ImageKey {
                        reg: reg as u32,
                        repo: repo as u32,
                        idx,
                    },
                )
                .map(|i| i.digest)
            })
            .collect())
    }

    /// Marks one open finding fixed.
    pub(crate) fn fix_finding(
        &self,
        registry: &str,
        repository: &str,
        digest: &str,
        vulnerability_id: &str,
        package: &str,
    ) -> Result<()> {
        let ov = self.overlay();
        let image = self.find_image(&ov, registry, repository, digest)?;
        let key = self
            .packages(&ov, &image)
            .iter()
            .filter(|p| p.name() == package)
            .flat_map(|p| p.cves.iter().map(move |c| (p.idx, c)))
            .find(|(_, c)| c.cve.id == vulnerability_id)
            .map(|(pkg, c)| FindingKey {
                image: image.key,
                generation: image.generation,
                pkg,
                cve: c.idx,
            })
            .ok_or_else(|| Error::UnknownFinding(format!("{vulnerability_id} in {package}")))?;
        self.mutate(|o| o.fixed.insert(key));
        Ok(())
    }

    /// Fixes a deterministic share of the open findings; returns how many.
    pub(crate) fn fix_share(&self, share: f64) -> usize {
        let ov = self.overlay();
        let mut keys = Vec::new();
        self.for_each_image(&ov, |i| {
            for p in self.packages(&ov, i) {
                if p.base != BaseStatus::Unhealthy {
                    continue;
                }
                for c in p.cves.iter().filter(|c| !c.fixed) {
                    let parts = [
                        u64::from(i.key.reg),
                        u64::from(i.key.repo),
                        u64::from(i.key.idx),
                        u64::from(p.idx),
                        u64::from(c.idx),
                    ];
                    if self.pick(&ov, 3, &parts, share) {
                        keys.push(FindingKey {
                            image: i.key,
                            generation: i.generation,
                            pkg: p.idx,
                            cve: c.idx,
                        });
                    }
                }
            }
        });
        let n = keys.len();
        self.mutate(|o| o.fixed.extend(keys));
        n
    }
}

/// Platform strings come from a small set; interning them keeps `Image` cheap to build.
fn static_str(s: &str) -> &'static str {
    const KNOWN: &[&str] = &[
        "amd64", "arm64", "arm", "386", "ppc64le", "s390x", "riscv64", "linux", "windows",
    ];
    KNOWN.iter().find(|k| **k == s).copied().unwrap_or("amd64")
}

/// The manifest itself counts towards `imageSize` in ACR.
fn manifest_len_hint(layers: u32) -> u64 {
    300 + u64::from(layers) * 160
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(spec: &TenantSpec, seed: u64) -> Tenant {
        Tenant::new(spec, seed, |n| format!("{n}.azurecr.test:1")).unwrap()
    }

    #[test]
    fn digest_is_the_sha256_of_the_manifest() {
        let t = tenant(&TenantSpec::demo(), 7);
        let ov = t.overlay();
        for i in t.repo_images(&ov, 0, 0) {
            let d = format!(
                "sha256:{}",
                hex::encode(Sha256::digest(i.manifest.as_bytes()))
            );
            assert_eq!(d, i.digest);
        }
    }

    #[test]
    fn same_seed_same_tenant_other_seed_other_digests() {
        let a = tenant(&TenantSpec::demo(), 7);
        let b = tenant(&TenantSpec::demo(), 7);
        let c = tenant(&TenantSpec::demo(), 8);
        let d = |t: &Tenant| {
            let mut v = Vec::new();
            t.for_each_image(&t.overlay(), |i| v.push(i.digest.clone()));
            v
        };
        assert_eq!(d(&a), d(&b));
        assert_ne!(d(&a), d(&c));
    }

    #[test]
    fn newest_image_is_latest_and_push_moves_it() {
        let t = tenant(&TenantSpec::demo(), 1);
        let name = t.registries[0].spec.name.clone();
        let repo = t.registries[0].repos[0].name.clone();
        let ov = t.overlay();
        let imgs = t.repo_images(&ov, 0, 0);
        assert!(imgs.last().unwrap().tags.contains(&"latest".to_owned()));
        let new = t.push_images(&name, &repo, 1).unwrap();
        let ov = t.overlay();
        let imgs = t.repo_images(&ov, 0, 0);
        assert_eq!(imgs.last().unwrap().digest, new[0]);
        assert_eq!(
            imgs.iter()
                .filter(|i| i.tags.contains(&"latest".to_owned()))
                .count(),
            1
        );
    }

    #[test]
    fn fixing_a_finding_closes_only_it() {
        let t = tenant(&TenantSpec::demo(), 3);
        let ov = t.overlay();
        let mut target = None;
        t.for_each_image(&ov, |i| {
            if target.is_some() {
                return;
            }
            if let Some(p) = t.packages(&ov, i).into_iter().find(PackageFinding::open) {
                target = Some((i.clone(), p));
            }
        });
        let (image, pkg) = target.expect("demo has an open finding");
        let reg = &t.registries[image.key.reg as usize];
        let repo = &reg.repos[image.key.repo as usize].name;
        let cve = pkg.cves[0].cve.id.clone();
        t.fix_finding(&reg.spec.name, repo, &image.digest, &cve, pkg.name())
            .unwrap();
        let ov = t.overlay();
        let after = t.packages(&ov, &image);
        let same = after.iter().find(|p| p.idx == pkg.idx).unwrap();
        assert!(same.cves[0].fixed);
        assert_eq!(same.cves.iter().filter(|c| c.fixed).count(), 1);
    }
}
