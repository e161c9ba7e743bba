//! The ground truth: what a correct connector must report for the tenant as it is now.
//!
//! Iterators walk the lazily generated tenant, so a million findings are streamed, never held.
//!
//! [`GroundTruth::write_json`] (also `GET /_sim/ground-truth` and `azure-sim --expected FILE`)
//! writes `{"registries":[..],"images":[..],"findings":[..]}`. When an [`Anomaly`] is on, an
//! `"anomaly"` section follows: what a correct client concludes when it scans with the anomaly on,
//! after a normal full scan ([`AnomalyTruth`]):
//!
//! ```json
//! "anomaly": {
//!   "active": ["one-registry-forbidden"],
//!   "target_registry": "contosodev",
//!   "covered_registries": [{"name": "contosolegacy", "login_server": "contosolegacy.azurecr.sim.localhost:PORT"}, ...],
//!   "uncovered_registries": [{"name": "contosodev", "login_server": "...", "reason": "forbidden"}],
//!   "registry_listing_complete": true,
//!   "findings_complete": true,
//!   "findings_reasons": [],
//!   "rows_without_status": 0,
//!   "may_resolve_registries": ["contosolegacy", "contosoprod"],
//!   "run_status": "partial"
//! }
//! ```
//!
//! - `covered_registries`: registries whose inventory (repositories, images) a client can read
//!   completely. `uncovered_registries` gives a reason word for each other one: `forbidden` (the
//!   data plane answers 403: `one-registry-forbidden`, or a denied registry of the tenant spec),
//!   `private-network` (public network access disabled), `catalog-loop` (`acr-catalog-loop`).
//! - `registry_listing_complete`: false when the ARM registry listing never ends
//!   (`arm-nextlink-loop-at-end`); every registry was still served, so each can be covered.
//! - `findings_complete`: false when the Resource Graph answers hide or garble findings;
//!   `findings_reasons` names the anomalies responsible. `arg-empty-after-full` is well formed on
//!   the wire: a client tells it from a clean tenant only by the drop against its previous scan.
//! - `rows_without_status`: Resource Graph rows served without `properties.status`
//!   (`arg-missing-status`); a client counts them and must not read them as healthy.
//! - `may_resolve_registries`: registries whose open findings a client may bring up to date
//!   (covered, with complete findings). Every finding open elsewhere must stay open; with
//!   incomplete findings that is every open finding.
//! - `run_status`: `partial` when anything was not covered, `held` when the only fault is findings
//!   hidden by a well-formed empty answer (the resolution of every open finding is held back),
//!   `failed` when neither a registry nor the findings could be covered, `complete` otherwise.
//!
//! The section is left out when no anomaly is on, so the default ground truth is unchanged;
//! [`GroundTruth::anomaly`] answers either way.

use std::io::{self, Write};
use std::sync::Arc;

use serde::Serialize;

use crate::anomaly::{self, Anomaly};
use crate::faults::FaultSpec;
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
    /// False when the data plane refuses the principal (403, also under
    /// `one-registry-forbidden`) or the registry is private.
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

/// How a correct client ends a scan of the tenant with the active anomalies on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Every registry and the findings were read completely.
    Complete,
    /// Some registry, listing or the findings could not be read completely.
    Partial,
    /// Read completely, but it would resolve every open finding: the resolution is held.
    Held,
    /// Neither a registry nor the findings could be read completely.
    Failed,
}

/// A registry whose inventory a correct client reads completely.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CoveredRegistry {
    pub name: String,
    pub login_server: String,
}

/// A registry whose inventory a correct client cannot read completely, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UncoveredRegistry {
    pub name: String,
    pub login_server: String,
    /// `forbidden`, `private-network` or `catalog-loop`.
    pub reason: &'static str,
}

/// What a correct client concludes when it scans with the active anomalies on, after a normal
/// full scan. Written as the `anomaly` section of [`GroundTruth::write_json`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AnomalyTruth {
    /// The active anomalies, sorted.
    pub active: Vec<Anomaly>,
    /// The registry `acr-catalog-loop` and `one-registry-forbidden` hit (by name), when one of
    /// them is on and a registry qualifies.
    pub target_registry: Option<String>,
    /// Registries whose inventory (repositories, images) a client can read completely.
    pub covered_registries: Vec<CoveredRegistry>,
    /// Every other registry, with the reason.
    pub uncovered_registries: Vec<UncoveredRegistry>,
    /// False when the ARM registry listing never ends (`arm-nextlink-loop-at-end`); every
    /// registry was still served, so each can be covered.
    pub registry_listing_complete: bool,
    /// False when the Resource Graph answers hide or garble findings.
    pub findings_complete: bool,
    /// The anomalies that make the findings incomplete.
    pub findings_reasons: Vec<&'static str>,
    /// Resource Graph rows served without `properties.status` (`arg-missing-status`).
    pub rows_without_status: u64,
    /// Names of the registries whose open findings may be brought up to date; every finding open
    /// elsewhere must stay open.
    pub may_resolve_registries: Vec<String>,
    /// How the scan ends.
    pub run_status: RunStatus,
}

impl AnomalyTruth {
    /// True when a correct client may resolve open findings of the registry with this login
    /// server; every other open finding must stay open.
    pub fn may_resolve_in(&self, login_server: &str) -> bool {
        self.findings_complete
            && self
                .covered_registries
                .iter()
                .any(|r| r.login_server.eq_ignore_ascii_case(login_server))
    }
}

/// A consistent snapshot of the tenant's ground truth.
#[derive(Clone, Debug)]
pub struct GroundTruth {
    tenant: Arc<Tenant>,
    overlay: Arc<Overlay>,
    anomalies: Vec<Anomaly>,
}

impl GroundTruth {
    pub(crate) fn new(tenant: Arc<Tenant>, faults: &FaultSpec) -> Self {
        let overlay = tenant.overlay();
        let mut anomalies = faults.anomalies.clone();
        anomalies.sort_unstable();
        anomalies.dedup();
        Self {
            tenant,
            overlay,
            anomalies,
        }
    }

    fn has(&self, a: Anomaly) -> bool {
        self.anomalies.contains(&a)
    }

    /// The registry index `one-registry-forbidden` makes unreadable, when it is on.
    fn forbidden_registry(&self) -> Option<usize> {
        self.has(Anomaly::OneRegistryForbidden)
            .then(|| anomaly::target_registry(&self.tenant))
            .flatten()
    }

    /// Every registry, in ARM id order.
    pub fn registries(&self) -> Vec<TruthRegistry> {
        let forbidden = self.forbidden_registry();
        self.tenant
            .registries
            .iter()
            .enumerate()
            .map(|(i, r)| TruthRegistry {
                name: r.spec.name.clone(),
                login_server: r.login_server.clone(),
                subscription_id: r.subscription_id.clone(),
                resource_group: r.spec.resource_group.clone(),
                arm_id: r.arm_id.clone(),
                sku: r.spec.sku.as_str().to_owned(),
                public_network: r.spec.public_network,
                data_plane_readable: r.spec.public_network
                    && !r.spec.data_plane_denied
                    && forbidden != Some(i),
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

    /// What a correct client concludes under the active anomalies (also with none active: then
    /// only registries the tenant spec makes unreadable are uncovered).
    pub fn anomaly(&self) -> AnomalyTruth {
        let t = &self.tenant;
        let target = self
            .anomalies
            .iter()
            .any(|a| a.hits_one_registry())
            .then(|| anomaly::target_registry(t))
            .flatten();
        let mut covered = Vec::new();
        let mut uncovered = Vec::new();
        for (i, r) in t.registries.iter().enumerate() {
            let reason = if !r.spec.public_network {
                Some("private-network")
            } else if r.spec.data_plane_denied
                || (target == Some(i) && self.has(Anomaly::OneRegistryForbidden))
            {
                Some("forbidden")
            } else if target == Some(i) && self.has(Anomaly::AcrCatalogLoop) {
                Some("catalog-loop")
            } else {
                None
            };
            let (name, login_server) = (r.spec.name.clone(), r.login_server.clone());
            match reason {
                Some(reason) => uncovered.push(UncoveredRegistry {
                    name,
                    login_server,
                    reason,
                }),
                None => covered.push(CoveredRegistry { name, login_server }),
            }
        }
        let findings_reasons: Vec<&'static str> = [
            Anomaly::ArgNullData,
            Anomaly::ArgEmptyAfterFull,
            Anomaly::ArgMissingStatus,
            Anomaly::ArgHtml200,
            Anomaly::TotalsMismatch,
        ]
        .into_iter()
        .filter(|a| self.has(*a))
        .map(Anomaly::name)
        .collect();
        let findings_complete = findings_reasons.is_empty();
        // Rows are served (with or without status) only when no other anomaly replaces the answer.
        let rows_without_status = if self.has(Anomaly::ArgMissingStatus)
            && !self.has(Anomaly::ArgNullData)
            && !self.has(Anomaly::ArgEmptyAfterFull)
            && !self.has(Anomaly::ArgHtml200)
        {
            crate::arg::rows_without_status(t, &self.overlay)
        } else {
            0
        };
        let registry_listing_complete = !self.has(Anomaly::ArmNextlinkLoopAtEnd);
        let only_empty = findings_reasons == [Anomaly::ArgEmptyAfterFull.name()];
        let run_status = if covered.is_empty() && !findings_complete {
            RunStatus::Failed
        } else if !uncovered.is_empty()
            || !registry_listing_complete
            || (!findings_complete && !only_empty)
        {
            RunStatus::Partial
        } else if only_empty {
            RunStatus::Held
        } else {
            RunStatus::Complete
        };
        let may_resolve_registries = if findings_complete {
            covered.iter().map(|r| r.name.clone()).collect()
        } else {
            Vec::new()
        };
        AnomalyTruth {
            active: self.anomalies.clone(),
            target_registry: target.map(|i| t.registries[i].spec.name.clone()),
            covered_registries: covered,
            uncovered_registries: uncovered,
            registry_listing_complete,
            findings_complete,
            findings_reasons,
            rows_without_status,
            may_resolve_registries,
            run_status,
        }
    }

    /// Streams `{"registries":[..],"images":[..],"findings":[..]}` to `w`, followed by
    /// `"anomaly":{..}` when an anomaly is on.
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
        w.write_all(b"]")?;
        if !self.anomalies.is_empty() {
            w.write_all(b",\n\"anomaly\":")?;
            serde_json::to_writer(&mut w, &self.anomaly())?;
        }
        w.write_all(b"}\n")?;
        Ok(counts)
    }
}
