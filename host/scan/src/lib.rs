//! Drives connection runs: the host side of every loop a connector takes part in.
//!
//! A connector answers one page per call; the host decides page sizes, passes cursors back,
//! retries a page the source failed to serve, waits out throttling, and stops on a cursor that
//! repeats or a page count that runs away ([`walk`]). [`scan`] is one whole run of a connection
//! against the store: lease, enumeration, findings and the coverage that decides what a complete
//! run may resolve ([`run`]). [`Selection`] says which registries and repositories are in scope.

#[cfg(test)]
mod fake;
mod feeds;
pub mod run;
mod select;
mod walk;

pub use feeds::{DEFAULT_PARALLEL_REGISTRIES, DESCRIBE_BATCH};
pub use run::{NoProgress, Progress, ScanRequest, ScanSummary, Uncovered, scan, scan_with_policy};
pub use select::{Selection, check_glob, glob_match};
pub use walk::{PageSink, PageSource, PagingPolicy, WalkError, walk, walk_pages};

/// Why a scan could not run or could not be recorded. Connector failures are not here: they end
/// the run `failed` or `partial` and are reported in its [`ScanSummary`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The store refused or failed (a scan already running, a database error).
    #[error(transparent)]
    Store(#[from] keelson_store::Error),
    /// A selection glob is empty, padded with spaces or holds control characters.
    #[error(
        "`{0}` is not a location glob; use `*` and `?` wildcards, e.g. `prod*` or `prod*/payments/*`"
    )]
    InvalidGlob(String),
}
