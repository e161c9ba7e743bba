//! Failpoints at every commit point of the store, for rollback and crash tests.
//!
//! With the cargo feature `failpoints`, each name in [`FAILPOINTS`] is a failpoint of the `fail`
//! crate: `fail::cfg(name, "return")` makes the store return [`Error::Failpoint`](crate::Error)
//! there (before a commit that rolls the whole transaction back), `"panic"` panics, `"sleep(ms)"`
//! waits; a process configures them from the `FAILPOINTS` environment variable with
//! `fail::FailScenario::setup()`. A crash loop can iterate over [`FAILPOINTS`] and kill or panic
//! at each in turn. Without the feature the points compile to nothing.
//!
//! The points, in the order a scan meets them:
//! - `store::begin_run::before_commit`
//! - `store::ingest_inventory::before_commit`, `store::ingest_inventory::after_commit`
//! - `store::ingest_findings::before_commit`, `store::ingest_findings::after_commit`
//! - `store::save_image_contexts::before_commit`, `store::save_image_contexts::after_commit`
//! - `store::finish_run::before_resolve`, `store::finish_run::after_resolve` (inside the
//!   transaction), `store::finish_run::before_commit`, `store::finish_run::after_commit`
//! - `store::accept_held::before_commit`, `store::accept_held::after_commit`

/// Every failpoint the store defines.
pub const FAILPOINTS: &[&str] = &[
    "store::begin_run::before_commit",
    "store::ingest_inventory::before_commit",
    "store::ingest_inventory::after_commit",
    "store::ingest_findings::before_commit",
    "store::ingest_findings::after_commit",
    "store::save_image_contexts::before_commit",
    "store::save_image_contexts::after_commit",
    "store::finish_run::before_resolve",
    "store::finish_run::after_resolve",
    "store::finish_run::before_commit",
    "store::finish_run::after_commit",
    "store::accept_held::before_commit",
    "store::accept_held::after_commit",
];

/// A failpoint named `$name` (one of [`FAILPOINTS`]) in a function returning
/// [`Result`](crate::Result): configured as `return`, the function returns
/// `Err(Error::Failpoint(name))` there.
#[cfg(feature = "failpoints")]
macro_rules! failpoint {
    ($name:literal) => {
        fail::fail_point!($name, |_| Err($crate::Error::Failpoint($name)))
    };
}

/// Without the `failpoints` feature a failpoint is nothing.
#[cfg(not(feature = "failpoints"))]
macro_rules! failpoint {
    ($name:literal) => {};
}

pub(crate) use failpoint;

#[cfg(test)]
mod tests {
    use super::FAILPOINTS;

    const SOURCES: [&str; 3] = [
        include_str!("runs.rs"),
        include_str!("ingest.rs"),
        include_str!("enrich.rs"),
    ];

    /// The names used at call sites, in source order.
    fn used() -> Vec<String> {
        let mut names = Vec::new();
        for source in SOURCES {
            for piece in source.split("failpoint!(\"").skip(1) {
                names.push(piece.split('"').next().unwrap().to_owned());
            }
        }
        names
    }

    #[test]
    fn every_failpoint_is_listed_once_and_every_listed_one_is_used_once() {
        let used = used();
        for name in &used {
            assert!(
                FAILPOINTS.contains(&name.as_str()),
                "`{name}` is not listed"
            );
        }
        for name in FAILPOINTS {
            let uses = used.iter().filter(|u| u == name).count();
            assert_eq!(uses, 1, "`{name}` is used {uses} times");
        }
        assert_eq!(used.len(), FAILPOINTS.len());
    }
}
