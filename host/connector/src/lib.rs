//! The host-facing side of a connector: what a scan, the conformance runner or a test asks of
//! one, with no sandbox in sight.
//!
//! [`Connector`] is one open connection to one account: describe, verify, the paged listings and
//! `describe-images`. `keelson-runtime` implements it for a WebAssembly component (one binding
//! module per contract version behind it); tests implement it with scripted fakes, so the rules
//! that decide what a scan may resolve are tested without wasmtime. Every call fails with a
//! [`CallError`], which tells the caller what it may do next: go on with the same instance after
//! the connector's own typed error or a refused value, or stop using an instance that failed.

use std::fmt;

use keelson_core::{
    Account, ConnectorError, ConnectorInfo, Finding, Image, ImageContext, ImageRef, Page, Registry,
    Repository, ScanScope,
};

/// Which page to fetch: the host drives paging and passes each page's `next` back verbatim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    pub cursor: Option<String>,
    /// Upper bound on items; an implementation may cap it lower.
    pub max_items: u32,
}

impl PageRequest {
    /// The first page, of at most `max_items` items.
    pub fn first(max_items: u32) -> Self {
        Self {
            cursor: None,
            max_items,
        }
    }

    /// The page after the one whose `next` was `cursor`.
    pub fn after(cursor: String, max_items: u32) -> Self {
        Self {
            cursor: Some(cursor),
            max_items,
        }
    }
}

/// Which connector call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallSite {
    pub plugin: String,
    /// The connector's own version, as `describe` reported it (`?` before that is known).
    pub version: String,
    /// The operation, in WIT spelling (`list-findings`), or `instantiate`.
    pub operation: &'static str,
}

impl fmt::Display for CallSite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "from plugin `{}` {} in `{}`",
            self.plugin, self.version, self.operation
        )
    }
}

/// How an instance failed when it cannot serve further calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The code trapped (a panic, an unreachable, a hostile plugin).
    Trap,
    /// The call did not finish in time and was stopped.
    Timeout,
    /// A sandbox limit was reached (memory, stack, tables, the size of a returned value).
    Limit,
    /// The instance had already failed in an earlier call.
    Retired,
}

/// Why a connector call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// The connector's own typed error; the instance stays usable.
    #[error("{site}: {source}")]
    Connector {
        site: CallSite,
        source: ConnectorError,
    },
    /// The connector returned a value the host refuses (too many items, a malformed field); the
    /// instance stays usable.
    #[error("{site}: invalid value: {reason}")]
    Invalid { site: CallSite, reason: String },
    /// The instance failed and serves no further calls; `message` says how, with the plugin's
    /// identity and, for a trap, the end of what it wrote to stderr.
    #[error("{message}")]
    Failed { kind: FailureKind, message: String },
}

impl CallError {
    /// The connector's own error, if that is what this is.
    pub fn connector_error(&self) -> Option<&ConnectorError> {
        match self {
            Self::Connector { source, .. } => Some(source),
            _ => None,
        }
    }

    /// Whether the instance that returned this can serve no further calls.
    pub fn instance_failed(&self) -> bool {
        matches!(self, Self::Failed { .. })
    }
}

/// `Result` with a [`CallError`].
pub type CallResult<T> = Result<T, CallError>;

/// One open connection of a connector to one account. Calls take `&mut self`: an instance serves
/// one call at a time; a scan opens several instances to read in parallel.
///
/// Paged listings return one page per call; the caller passes each page's `next` back verbatim
/// and decides what a listing that ends in an error means (the items of earlier pages stay
/// returned). Futures are `Send` so readers can run in tasks of their own.
pub trait Connector: Send {
    /// What the connector said about itself when it was loaded.
    fn info(&self) -> &ConnectorInfo;

    /// Requests the connector put on the wire so far (retries and redirect hops included).
    fn requests_sent(&self) -> u64;

    /// Proves the connection works without scanning; called for *Verify connectivity*.
    fn verify(&mut self) -> impl Future<Output = CallResult<Account>> + Send;

    /// One page of the registries the connection can see.
    fn list_registries(
        &mut self,
        page: PageRequest,
    ) -> impl Future<Output = CallResult<Page<Registry>>> + Send;

    /// One page of the repositories of `registry` (a login server).
    fn list_repositories(
        &mut self,
        registry: &str,
        page: PageRequest,
    ) -> impl Future<Output = CallResult<Page<Repository>>> + Send;

    /// One page of the images of one repository.
    fn list_images(
        &mut self,
        registry: &str,
        repository: &str,
        page: PageRequest,
    ) -> impl Future<Output = CallResult<Page<Image>>> + Send;

    /// One page of the open findings in `scope` (empty: every registry).
    fn list_findings(
        &mut self,
        scope: &ScanScope,
        page: PageRequest,
    ) -> impl Future<Output = CallResult<Page<Finding>>> + Send;

    /// What the source knows about a batch of images; at most one context per image asked about.
    fn describe_images(
        &mut self,
        images: &[ImageRef],
    ) -> impl Future<Output = CallResult<Vec<ImageContext>>> + Send;
}
