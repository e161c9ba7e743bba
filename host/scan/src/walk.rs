//! Walking a paged connector call to its end.

use std::collections::HashSet;
use std::time::Duration;

use keelson_connector::{CallError, PageRequest};
use keelson_core::{ConnectorError, Gap, Page};

/// How the host pages through one listing.
#[derive(Debug, Clone)]
pub struct PagingPolicy {
    /// `max-items` asked for per page. Connectors cap it at what their API allows.
    pub page_size: u32,
    /// A listing with more pages than this is stopped as runaway.
    pub max_pages: u64,
    /// Times one page is asked for again after `unavailable` (a truncated or malformed answer).
    pub retries: u32,
    /// Wait before asking again after `unavailable`; doubles per attempt.
    pub retry_delay: Duration,
    /// Longest wait accepted for one `throttled` answer; longer means give up on this listing.
    pub max_throttle_wait: Duration,
    /// Connector instances enumerating registries at once in a scan (each registry has its own
    /// throttling budget); the findings are read by one more.
    pub parallel_registries: usize,
}

impl Default for PagingPolicy {
    fn default() -> Self {
        Self {
            page_size: 1000,
            max_pages: 1_000_000,
            retries: 3,
            retry_delay: Duration::from_millis(200),
            max_throttle_wait: Duration::from_mins(2),
            parallel_registries: crate::DEFAULT_PARALLEL_REGISTRIES,
        }
    }
}

/// Why a listing ended before its last page.
#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    /// The plugin call failed (its typed error after retries, or a trap, timeout or limit).
    #[error(transparent)]
    Call(#[from] CallError),
    /// The connector handed back a cursor it had already returned: its paging loops.
    #[error(
        "the connector returned cursor `{cursor}` a second time after {pages} pages; its paging loops"
    )]
    RepeatedCursor { cursor: String, pages: u64 },
    /// More pages than [`PagingPolicy::max_pages`].
    #[error("stopped after {pages} pages without reaching the end")]
    TooManyPages { pages: u64 },
    /// The sink asked to stop.
    #[error("stopped: {0}")]
    Stopped(String),
    /// Every page was read, but the connector named parts of the scope it could not read.
    #[error("{}", gaps_message(.0))]
    Gaps(Vec<Gap>),
}

/// `2 parts could not be read: `r/team-a/*`: permission denied: …; …` (the first few named).
fn gaps_message(gaps: &[Gap]) -> String {
    const NAMED: usize = 3;
    let named: Vec<String> = gaps.iter().take(NAMED).map(ToString::to_string).collect();
    let more = gaps.len().saturating_sub(NAMED);
    let tail = if more > 0 {
        format!("; and {more} more")
    } else {
        String::new()
    };
    let parts = if gaps.len() == 1 { "part" } else { "parts" };
    format!(
        "{} {parts} could not be read: {}{tail}",
        gaps.len(),
        named.join("; ")
    )
}

impl WalkError {
    /// The connector's own error, if that is what ended the walk.
    pub fn connector_error(&self) -> Option<&ConnectorError> {
        match self {
            Self::Call(CallError::Connector { source, .. }) => Some(source),
            _ => None,
        }
    }
}

/// Where a walk gets its pages: one plugin call per page request.
///
/// [`walk`] takes closures; a named type implementing this is for a walk that must run in a
/// spawned task, whose future has to be provably `Send`.
pub trait PageSource<T> {
    fn fetch(&mut self, request: PageRequest) -> impl Future<Output = Result<Page<T>, CallError>>;
}

/// Where a walk hands each page's items; an `Err` stops the walk with that message.
pub trait PageSink<T> {
    fn accept(&mut self, items: Vec<T>) -> impl Future<Output = Result<(), String>>;
}

struct FetchFn<F>(F);

impl<T, F: AsyncFnMut(PageRequest) -> Result<Page<T>, CallError>> PageSource<T> for FetchFn<F> {
    fn fetch(&mut self, request: PageRequest) -> impl Future<Output = Result<Page<T>, CallError>> {
        (self.0)(request)
    }
}

struct SinkFn<F>(F);

impl<T, F: FnMut(Vec<T>) -> Result<(), String>> PageSink<T> for SinkFn<F> {
    fn accept(&mut self, items: Vec<T>) -> impl Future<Output = Result<(), String>> {
        std::future::ready((self.0)(items))
    }
}

/// Fetches every page of one listing, handing each page's items to `sink` as it arrives, and
/// returns the number of pages. `fetch` makes one plugin call for one page request.
///
/// `unavailable` is retried with backoff and `throttled(ms)` waited out (within the policy);
/// every other error ends the walk at once. Items of pages already handed to `sink` stay handed:
/// the caller decides what a partial listing means.
pub async fn walk<T>(
    policy: &PagingPolicy,
    fetch: impl AsyncFnMut(PageRequest) -> Result<Page<T>, CallError>,
    sink: impl FnMut(Vec<T>) -> Result<(), String>,
) -> Result<u64, WalkError> {
    walk_pages(policy, &mut FetchFn(fetch), &mut SinkFn(sink)).await
}

/// [`walk`] over a named [`PageSource`] and [`PageSink`].
pub async fn walk_pages<T>(
    policy: &PagingPolicy,
    source: &mut impl PageSource<T>,
    sink: &mut impl PageSink<T>,
) -> Result<u64, WalkError> {
    let mut seen_cursors = HashSet::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0u64;
    // Gaps keep the walk going (the rest is still read) but end it incomplete.
    let mut gaps = Vec::new();
    loop {
        let request = PageRequest {
            cursor: cursor.clone(),
            max_items: policy.page_size,
        };
        let page = fetch_with_retries(policy, source, request).await?;
        pages += 1;
        gaps.extend(page.gaps);
        sink.accept(page.items).await.map_err(WalkError::Stopped)?;
        let Some(next) = page.next else {
            return if gaps.is_empty() {
                Ok(pages)
            } else {
                Err(WalkError::Gaps(gaps))
            };
        };
        if !seen_cursors.insert(next.clone()) {
            return Err(WalkError::RepeatedCursor {
                cursor: next,
                pages,
            });
        }
        if pages >= policy.max_pages {
            return Err(WalkError::TooManyPages { pages });
        }
        cursor = Some(next);
    }
}

async fn fetch_with_retries<T>(
    policy: &PagingPolicy,
    source: &mut impl PageSource<T>,
    request: PageRequest,
) -> Result<Page<T>, WalkError> {
    let mut unavailable_retries = 0;
    let mut delay = policy.retry_delay;
    loop {
        let err = match source.fetch(request.clone()).await {
            Ok(page) => return Ok(page),
            Err(err) => err,
        };
        let wait = match &err {
            CallError::Connector {
                source: ConnectorError::Throttled(ms),
                ..
            } => {
                let wait = Duration::from_millis(u64::from(*ms));
                if wait > policy.max_throttle_wait {
                    return Err(err.into());
                }
                wait
            }
            CallError::Connector {
                source: ConnectorError::Unavailable(_),
                ..
            } if unavailable_retries < policy.retries => {
                unavailable_retries += 1;
                let wait = delay;
                delay *= 2;
                wait
            }
            _ => return Err(err.into()),
        };
        tracing::debug!(error = %err, wait_ms = wait.as_millis() as u64, "asking for the page again");
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keelson_connector::CallSite;

    fn connector_err(source: ConnectorError) -> CallError {
        CallError::Connector {
            site: CallSite {
                plugin: "p".into(),
                version: "0.1.0".into(),
                operation: "list-images",
            },
            source,
        }
    }

    fn policy() -> PagingPolicy {
        PagingPolicy {
            retry_delay: Duration::from_millis(1),
            ..PagingPolicy::default()
        }
    }

    #[tokio::test]
    async fn walks_every_page_in_order_passing_cursors_back() {
        let mut asked = Vec::new();
        let mut got = Vec::new();
        let pages = walk(
            &policy(),
            async |req: PageRequest| {
                asked.push(req.cursor.clone());
                let n: u32 = req.cursor.as_deref().map_or(0, |c| c.parse().unwrap());
                Ok(Page {
                    items: vec![n],
                    next: (n < 2).then(|| (n + 1).to_string()),
                    gaps: Vec::new(),
                })
            },
            |items| {
                got.extend(items);
                Ok(())
            },
        )
        .await
        .unwrap();
        assert_eq!(pages, 3);
        assert_eq!(got, vec![0, 1, 2]);
        assert_eq!(asked, vec![None, Some("1".into()), Some("2".into())]);
    }

    #[tokio::test]
    async fn a_repeated_cursor_stops_the_walk() {
        let err = walk(
            &policy(),
            async |_req: PageRequest| {
                Ok(Page {
                    items: vec![1],
                    next: Some("same".into()),
                    gaps: Vec::new(),
                })
            },
            |_| Ok(()),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(err, WalkError::RepeatedCursor { pages: 2, .. }),
            "{err}"
        );
    }

    #[tokio::test]
    async fn unavailable_is_retried_then_given_up() {
        let mut calls = 0;
        let err = walk(
            &policy(),
            async |_req: PageRequest| -> Result<Page<u8>, _> {
                calls += 1;
                Err(connector_err(ConnectorError::Unavailable(
                    "truncated".into(),
                )))
            },
            |_| Ok(()),
        )
        .await
        .unwrap_err();
        assert_eq!(calls, 4, "one try and three retries");
        assert!(matches!(
            err.connector_error(),
            Some(ConnectorError::Unavailable(_))
        ));
    }

    #[tokio::test]
    async fn a_transient_failure_recovers_and_other_errors_end_at_once() {
        let mut calls = 0;
        let pages = walk(
            &policy(),
            async |_req: PageRequest| {
                calls += 1;
                if calls == 1 {
                    Err(connector_err(ConnectorError::Throttled(5)))
                } else {
                    Ok(Page {
                        items: vec![1],
                        next: None,
                        gaps: Vec::new(),
                    })
                }
            },
            |_| Ok(()),
        )
        .await
        .unwrap();
        assert_eq!((pages, calls), (1, 2));

        let mut calls = 0;
        let err = walk(
            &policy(),
            async |_req: PageRequest| -> Result<Page<u8>, _> {
                calls += 1;
                Err(connector_err(ConnectorError::PermissionDenied(
                    "no role".into(),
                )))
            },
            |_| Ok(()),
        )
        .await
        .unwrap_err();
        assert_eq!(calls, 1);
        assert!(matches!(
            err.connector_error(),
            Some(ConnectorError::PermissionDenied(_))
        ));
    }

    #[tokio::test]
    async fn runaway_paging_is_capped() {
        let policy = PagingPolicy {
            max_pages: 5,
            ..policy()
        };
        let mut n = 0u32;
        let err = walk(
            &policy,
            async |_req: PageRequest| {
                n += 1;
                Ok(Page {
                    items: Vec::<u8>::new(),
                    next: Some(n.to_string()),
                    gaps: Vec::new(),
                })
            },
            |_| Ok(()),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, WalkError::TooManyPages { pages: 5 }), "{err}");
    }

    #[tokio::test]
    async fn gaps_keep_the_walk_going_and_end_it_incomplete() {
        let mut seen = Vec::new();
        let result = walk(
            &policy(),
            async |req: PageRequest| {
                let n: u32 = req.cursor.as_deref().map_or(0, |c| c.parse().unwrap());
                let gaps = if n == 0 {
                    vec![Gap {
                        registry: Some("r.example".into()),
                        namespace: Some("team-a".into()),
                        error: ConnectorError::PermissionDenied("403 on project team-a".into()),
                    }]
                } else {
                    Vec::new()
                };
                Ok(Page {
                    items: vec![n],
                    next: (n < 1).then(|| (n + 1).to_string()),
                    gaps,
                })
            },
            |items| {
                seen.extend(items);
                Ok(())
            },
        )
        .await;
        assert_eq!(seen, [0, 1], "the pages after the gap are still read");
        let err = result.unwrap_err();
        assert!(
            matches!(&err, WalkError::Gaps(g) if g.len() == 1),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "1 part could not be read: `r.example/team-a/*`: permission denied: 403 on project team-a"
        );
    }
}
