//! The store's failpoint tests (`cargo test -p keelson-store --features failpoints`): a failure at
//! any point inside a commit leaves nothing of that transaction, every listed point is reached
//! (`rollback`), and crash safety (T29, `crash`): a scanning child process killed with SIGKILL at
//! each failpoint and at random moments loses nothing and resolves nothing wrongly.
//!
//! Failpoints are process-wide, so these tests live in their own binary and each test that touches
//! them holds a `FailScenario`, which runs them one at a time.

mod crash;
mod rollback;

use keelson_core::{Finding, ImageRef, Severity};
use keelson_store::{ConnectionSpec, Keyring, MasterKey, Store};

pub(crate) const TOOL: &str = "Azure Container Registry";

/// Adds connection `prod` (plugin `acr`, no secrets).
pub(crate) fn add_prod(store: &mut Store) {
    let keys = Keyring::new(MasterKey::from_bytes("k", &[7u8; 32]).unwrap());
    store
        .save_connection(&ConnectionSpec::new("prod", "acr"), &keys, "test")
        .unwrap();
}

/// A finding of `vulnerability` in image `digest` of repository `app` in `registry`.
pub(crate) fn finding(registry: &str, digest: &str, vulnerability: &str) -> Finding {
    Finding {
        image: ImageRef {
            registry: registry.into(),
            repository: "app".into(),
            digest: digest.into(),
        },
        vulnerability_id: vulnerability.into(),
        source_id: None,
        title: vulnerability.into(),
        description: String::new(),
        severity: Severity::High,
        cvss_score: None,
        cvss_vector: None,
        package: None,
        remediation: None,
        evidence: vec![],
        references: vec![],
        published_at: None,
        modified_at: None,
        exploitability: keelson_core::Exploitability::default(),
        weaknesses: vec![],
        raw: "{}".into(),
    }
}
