//! A scripted connector for the scan's own tests: a small tenant served in pages, with a fault
//! placed at any page of any listing, so every rule about coverage is tested without a sandbox.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use keelson_connector::{CallError, CallResult, CallSite, Connector, FailureKind, PageRequest};
use keelson_core::{
    Account, ConnectorError, ConnectorInfo, Exploitability, Finding, Image, ImageContext, ImageRef,
    Page, Registry, Repository, ScanScope, Severity,
};

/// Which paged listing a fault hits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Listing {
    Registries,
    Repositories(String),
    Images(String, String),
    Findings,
}

/// What goes wrong at that page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// `unavailable` on every try (the retries run out).
    Unavailable,
    /// `permission-denied`.
    Denied,
    /// A value the host refuses.
    Malformed,
    /// The page's `next` repeats a cursor already given.
    Loop,
    /// The call runs out of time; the instance is gone.
    Timeout,
    /// The code traps; the instance is gone.
    Trap,
    /// The operator cancels while this page is read (the page itself is served).
    Cancel,
}

impl Fault {
    pub(crate) const ALL: [Self; 7] = [
        Self::Unavailable,
        Self::Denied,
        Self::Malformed,
        Self::Loop,
        Self::Timeout,
        Self::Trap,
        Self::Cancel,
    ];
}

/// A fault at page `page` (0-based) of `listing`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FaultAt {
    pub(crate) listing: Listing,
    pub(crate) page: usize,
    pub(crate) fault: Fault,
}

/// What the source holds: registries, their repositories and images, and open findings.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tenant {
    pub(crate) repositories: BTreeMap<String, Vec<String>>,
    pub(crate) images: BTreeMap<(String, String), Vec<String>>,
    pub(crate) findings: Vec<Finding>,
}

impl Tenant {
    /// `registries` registries (`r0.test` ...), each with `repos` repositories of `images` images,
    /// each image with `per_image` findings.
    pub(crate) fn grid(registries: usize, repos: usize, images: usize, per_image: usize) -> Self {
        let mut tenant = Self::default();
        for r in 0..registries {
            let registry = format!("r{r}.test");
            let mut names = Vec::new();
            for p in 0..repos {
                let repository = format!("app{p}");
                let mut digests = Vec::new();
                for i in 0..images {
                    let digest = format!("sha256:{:064x}", r * 10_000 + p * 100 + i);
                    for v in 0..per_image {
                        tenant.findings.push(finding(
                            &registry,
                            &repository,
                            &digest,
                            &format!("CVE-2026-{v:04}"),
                        ));
                    }
                    digests.push(digest);
                }
                tenant
                    .images
                    .insert((registry.clone(), repository.clone()), digests);
                names.push(repository);
            }
            tenant.repositories.insert(registry, names);
        }
        tenant
    }

    pub(crate) fn registries(&self) -> Vec<String> {
        self.repositories.keys().cloned().collect()
    }
}

pub(crate) fn finding(registry: &str, repository: &str, digest: &str, cve: &str) -> Finding {
    Finding {
        image: ImageRef {
            registry: registry.into(),
            repository: repository.into(),
            digest: digest.into(),
        },
        vulnerability_id: cve.into(),
        source_id: None,
        title: format!("{cve} in openssl"),
        description: String::new(),
        severity: Severity::High,
        cvss_score: None,
        cvss_vector: None,
        package: None,
        remediation: None,
        evidence: Vec::new(),
        references: Vec::new(),
        published_at: None,
        modified_at: None,
        exploitability: Exploitability::default(),
        weaknesses: Vec::new(),
        raw: "{}".into(),
    }
}

/// One instance of the fake connector over a shared tenant and fault list.
pub(crate) struct FakeConnector {
    info: ConnectorInfo,
    tenant: Arc<Tenant>,
    faults: Arc<Vec<FaultAt>>,
    cancel: Arc<AtomicBool>,
    page_size: usize,
    failed: bool,
    requests: u64,
}

impl FakeConnector {
    pub(crate) fn new(
        tenant: Arc<Tenant>,
        faults: Arc<Vec<FaultAt>>,
        cancel: Arc<AtomicBool>,
        page_size: usize,
    ) -> Self {
        Self {
            info: ConnectorInfo {
                id: "fake".into(),
                display_name: "Fake".into(),
                version: "0.1.0".into(),
                source_tool: "Fake Registry".into(),
                settings: Vec::new(),
                instructions: String::new(),
                suggested_hosts: Vec::new(),
            },
            tenant,
            faults,
            cancel,
            page_size: page_size.max(1),
            failed: false,
            requests: 0,
        }
    }

    fn site(operation: &'static str) -> CallSite {
        CallSite {
            plugin: "fake".into(),
            version: "0.1.0".into(),
            operation,
        }
    }

    /// Serves page `cursor` of `items` for `listing`, applying the fault placed there.
    fn page<T: Clone>(
        &mut self,
        operation: &'static str,
        listing: &Listing,
        items: &[T],
        page: &PageRequest,
    ) -> CallResult<Page<T>> {
        self.requests += 1;
        if self.failed {
            return Err(CallError::Failed {
                kind: FailureKind::Retired,
                message: "the instance failed earlier".into(),
            });
        }
        let size = self.page_size.min(page.max_items as usize).max(1);
        let (index, looping) = match page.cursor.as_deref() {
            None => (0, false),
            Some("loop") => (0, true),
            Some(c) => (c.parse::<usize>().expect("the fake's own cursor"), false),
        };
        if looping {
            return Ok(Page {
                items: Vec::new(),
                next: Some("loop".into()),
                gaps: Vec::new(),
            });
        }
        let start = index * size;
        let chunk: Vec<T> = items.iter().skip(start).take(size).cloned().collect();
        let more = start + size < items.len();
        let next = more.then(|| (index + 1).to_string());
        let fault = self
            .faults
            .iter()
            .find(|f| &f.listing == listing && f.page == index)
            .map(|f| f.fault);
        let site = Self::site(operation);
        match fault {
            None => Ok(Page {
                items: chunk,
                next,
                gaps: Vec::new(),
            }),
            Some(Fault::Unavailable) => Err(CallError::Connector {
                site,
                source: ConnectorError::Unavailable("the source answered 503".into()),
            }),
            Some(Fault::Denied) => Err(CallError::Connector {
                site,
                source: ConnectorError::PermissionDenied("403 AuthorizationFailed".into()),
            }),
            Some(Fault::Malformed) => Err(CallError::Invalid {
                site,
                reason: "`items[0].digest` is not a digest".into(),
            }),
            Some(Fault::Loop) => Ok(Page {
                items: chunk,
                next: Some(if index == 0 {
                    "loop".into()
                } else {
                    index.to_string()
                }),
                gaps: Vec::new(),
            }),
            Some(kind @ (Fault::Timeout | Fault::Trap)) => {
                self.failed = true;
                let (kind, what) = if kind == Fault::Trap {
                    (FailureKind::Trap, "the plugin trapped: panicked at 'boom'")
                } else {
                    (
                        FailureKind::Timeout,
                        "no answer within 60s; the call was stopped",
                    )
                };
                Err(CallError::Failed {
                    kind,
                    message: format!("{site}: {what}"),
                })
            }
            Some(Fault::Cancel) => {
                self.cancel.store(true, Ordering::Relaxed);
                Ok(Page {
                    items: chunk,
                    next,
                    gaps: Vec::new(),
                })
            }
        }
    }
}

impl Connector for FakeConnector {
    fn info(&self) -> &ConnectorInfo {
        &self.info
    }

    fn requests_sent(&self) -> u64 {
        self.requests
    }

    async fn verify(&mut self) -> CallResult<Account> {
        Ok(Account {
            id: "fake".into(),
            display_name: "Fake".into(),
            details: Vec::new(),
        })
    }

    async fn list_registries(&mut self, page: PageRequest) -> CallResult<Page<Registry>> {
        let registries: Vec<Registry> = self
            .tenant
            .registries()
            .into_iter()
            .map(|name| Registry {
                source_id: format!("/fake/{name}"),
                display_name: name.clone(),
                name,
                location: None,
                tier: None,
                public_network_access: None,
                attributes: Vec::new(),
            })
            .collect();
        self.page("list-registries", &Listing::Registries, &registries, &page)
    }

    async fn list_repositories(
        &mut self,
        registry: &str,
        page: PageRequest,
    ) -> CallResult<Page<Repository>> {
        let repositories: Vec<Repository> = self
            .tenant
            .repositories
            .get(registry)
            .into_iter()
            .flatten()
            .map(|name| Repository {
                registry: registry.into(),
                name: name.clone(),
                updated_at: None,
            })
            .collect();
        let listing = Listing::Repositories(registry.into());
        self.page("list-repositories", &listing, &repositories, &page)
    }

    async fn list_images(
        &mut self,
        registry: &str,
        repository: &str,
        page: PageRequest,
    ) -> CallResult<Page<Image>> {
        let key = (registry.to_owned(), repository.to_owned());
        let images: Vec<Image> = self
            .tenant
            .images
            .get(&key)
            .into_iter()
            .flatten()
            .map(|digest| Image {
                image_ref: ImageRef {
                    registry: registry.into(),
                    repository: repository.into(),
                    digest: digest.clone(),
                },
                tags: Vec::new(),
                media_type: None,
                platform: None,
                children: Vec::new(),
                size_bytes: None,
                created_at: None,
                updated_at: None,
            })
            .collect();
        let listing = Listing::Images(key.0, key.1);
        self.page("list-images", &listing, &images, &page)
    }

    async fn list_findings(
        &mut self,
        scope: &ScanScope,
        page: PageRequest,
    ) -> CallResult<Page<Finding>> {
        let findings: Vec<Finding> = self
            .tenant
            .findings
            .iter()
            .filter(|f| scope.registries.is_empty() || scope.registries.contains(&f.image.registry))
            .cloned()
            .collect();
        self.page("list-findings", &Listing::Findings, &findings, &page)
    }

    async fn describe_images(&mut self, _images: &[ImageRef]) -> CallResult<Vec<ImageContext>> {
        Ok(Vec::new())
    }
}
