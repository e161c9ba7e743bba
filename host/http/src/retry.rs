//! When and how long to wait before trying a request again.
//!
//! 408, 429, 500, 502, 503 and 504 and dropped connections are retried with jittered exponential
//! backoff. A server's own wait (`retry-after-ms`, `x-ms-retry-after-ms`, then `Retry-After` in
//! seconds or as an HTTP date) is a lower bound: the wait is the larger of it and the backoff.
//! No wait runs past the caller's deadline; when the next attempt would, the last response is
//! returned as it is.

use std::future::Future;
use std::time::{Duration, SystemTime};

use http::HeaderMap;
use tokio::time::Instant;

/// How failed attempts are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, the first included; 1 disables retries.
    pub max_attempts: u32,
    /// Backoff before the first retry; it doubles for each further one.
    pub base_delay: Duration,
    /// Upper bound of the backoff (a server's `Retry-After` may ask for more).
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            base_delay: Duration::from_millis(800),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// Backoff before retry number `retry` (1 for the first), jittered to 80–120 % so clients
    /// that failed together do not come back together.
    pub fn backoff(&self, retry: u32, jitter: f64) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(1u32 << retry.saturating_sub(1).min(20));
        exp.min(self.max_delay)
            .mul_f64(jitter.clamp(0.8, 1.2))
            .min(self.max_delay)
    }
}

/// Statuses worth another attempt.
pub fn is_retryable_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
}

/// The wait a response asks for, if any: `retry-after-ms`, `x-ms-retry-after-ms` (milliseconds),
/// then `Retry-After` (seconds, or an HTTP date relative to `now`; a past date means no wait).
pub fn server_delay(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    for name in ["retry-after-ms", "x-ms-retry-after-ms"] {
        if let Some(ms) = text(name).and_then(parse_non_negative) {
            return Some(Duration::from_secs_f64(ms / 1000.0));
        }
    }
    let value = text("retry-after")?;
    if let Some(secs) = parse_non_negative(value) {
        return Some(Duration::from_secs_f64(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// A finite, non-negative decimal no larger than a day (anything above is nonsense we ignore).
fn parse_non_negative(text: &str) -> Option<f64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    let n: f64 = text.parse().ok()?;
    (n.is_finite() && n <= 86_400_000.0).then_some(n)
}

/// What one attempt produced.
pub(crate) enum Attempt<R> {
    /// A response arrived (headers only; the body is still on the wire).
    Response {
        status: u16,
        headers: HeaderMap,
        response: R,
    },
    /// The transport failed; `retryable` for resets and failed connects.
    Failed {
        error: crate::HttpError,
        retryable: bool,
    },
}

/// Outcome of the retry loop.
pub(crate) struct Retried<R> {
    pub(crate) result: Result<(u16, HeaderMap, R), crate::HttpError>,
    pub(crate) retries: u32,
}

/// Runs `attempt` until it gives a response that needs no retry, retries run out, the next
/// wait would pass `deadline`, or `may_retry` (the request budget) says no.
pub(crate) async fn run<R, F, Fut>(
    policy: &RetryPolicy,
    deadline: Instant,
    mut may_retry: impl FnMut() -> bool,
    mut attempt: F,
) -> Retried<R>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Attempt<R>>,
{
    let mut retries = 0;
    loop {
        let (server, result, retryable) = match attempt().await {
            Attempt::Response {
                status,
                headers,
                response,
            } => {
                let server = server_delay(&headers, SystemTime::now());
                (
                    server,
                    Ok((status, headers, response)),
                    is_retryable_status(status),
                )
            }
            Attempt::Failed { error, retryable } => (None, Err(error), retryable),
        };
        let done = |result| Retried { result, retries };
        if !retryable || retries + 1 >= policy.max_attempts.max(1) {
            return done(result);
        }
        let backoff = policy.backoff(retries + 1, rand::random_range(0.8..=1.2));
        let wait = server.map_or(backoff, |s| s.max(backoff));
        if Instant::now() + wait >= deadline || !may_retry() {
            return done(result);
        }
        // Let the unread response go (its connection closes) before sleeping.
        drop(result);
        tokio::time::sleep(wait).await;
        retries += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::HttpError;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let d = |pairs: &[(&'static str, &str)]| server_delay(&headers(pairs), now);
        assert_eq!(d(&[("retry-after", "2")]), Some(Duration::from_secs(2)));
        assert_eq!(d(&[("retry-after", " 0 ")]), Some(Duration::ZERO));
        assert_eq!(
            d(&[("retry-after", "1.5")]),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            d(&[("retry-after-ms", "250")]),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            d(&[("x-ms-retry-after-ms", "1200")]),
            Some(Duration::from_millis(1200))
        );
        // The millisecond headers are more precise, so they win.
        assert_eq!(
            d(&[("retry-after", "9"), ("retry-after-ms", "100")]),
            Some(Duration::from_millis(100))
        );
        assert_eq!(
            d(&[("retry-after", "9"), ("x-ms-retry-after-ms", "300")]),
            Some(Duration::from_millis(300))
        );
        // HTTP dates: IMF-fixdate, RFC 850 and asctime, relative to `now`.
        let in_5s = httpdate::fmt_http_date(now + Duration::from_secs(5));
        assert_eq!(d(&[("retry-after", &in_5s)]), Some(Duration::from_secs(5)));
        assert_eq!(
            d(&[("retry-after", "Tue, 14 Nov 2023 22:13:25 GMT")]),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            d(&[("retry-after", "Tuesday, 14-Nov-23 22:13:25 GMT")]),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            d(&[("retry-after", "Tue Nov 14 22:13:25 2023")]),
            Some(Duration::from_secs(5))
        );
        let past = httpdate::fmt_http_date(now - Duration::from_mins(1));
        assert_eq!(d(&[("retry-after", &past)]), Some(Duration::ZERO));
        // Garbage is ignored, so the backoff alone decides.
        for bad in ["-1", "soon", "", "1e3", "NaN", "inf", "99999999999"] {
            assert_eq!(d(&[("retry-after", bad)]), None, "{bad:?}");
        }
        assert_eq!(
            d(&[("retry-after-ms", "abc"), ("retry-after", "3")]),
            Some(Duration::from_secs(3))
        );
        assert_eq!(d(&[]), None);
    }

    #[test]
    fn backoff_doubles_jitters_and_caps() {
        let p = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        };
        assert_eq!(p.backoff(1, 1.0), Duration::from_millis(100));
        assert_eq!(p.backoff(2, 1.0), Duration::from_millis(200));
        assert_eq!(p.backoff(3, 1.0), Duration::from_millis(400));
        assert_eq!(p.backoff(3, 0.8), Duration::from_millis(320));
        assert_eq!(p.backoff(3, 1.2), Duration::from_millis(480));
        assert_eq!(
            p.backoff(3, 5.0),
            Duration::from_millis(480),
            "jitter is clamped"
        );
        assert_eq!(
            p.backoff(5, 1.2),
            Duration::from_secs(1),
            "capped after jitter"
        );
        assert_eq!(p.backoff(60, 1.0), Duration::from_secs(1), "no overflow");
    }

    #[test]
    fn retryable_statuses() {
        let retryable: Vec<u16> = (100..600).filter(|s| is_retryable_status(*s)).collect();
        assert_eq!(retryable, vec![408, 429, 500, 502, 503, 504]);
    }

    /// Drives `run` with scripted attempts under paused time; returns the instants (relative to
    /// the start) at which each attempt began.
    async fn script(
        policy: RetryPolicy,
        budget: Duration,
        steps: Vec<Attempt<&'static str>>,
    ) -> (Retried<&'static str>, Vec<Duration>) {
        let start = Instant::now();
        let mut steps = steps.into_iter();
        let mut times = Vec::new();
        let out = run(
            &policy,
            start + budget,
            || true,
            || {
                times.push(start.elapsed());
                let next = steps.next().expect("more attempts than scripted");
                async move { next }
            },
        )
        .await;
        (out, times)
    }

    fn resp(
        status: u16,
        pairs: &[(&'static str, &str)],
        tag: &'static str,
    ) -> Attempt<&'static str> {
        Attempt::Response {
            status,
            headers: headers(pairs),
            response: tag,
        }
    }

    const POLICY: RetryPolicy = RetryPolicy {
        max_attempts: 4,
        base_delay: Duration::from_millis(100),
        max_delay: Duration::from_secs(5),
    };

    #[tokio::test(start_paused = true)]
    async fn server_wait_is_honoured_when_longer_than_backoff() {
        for (pairs, want) in [
            (vec![("retry-after", "2")], Duration::from_secs(2)),
            (
                vec![("retry-after-ms", "1500")],
                Duration::from_millis(1500),
            ),
            (
                vec![("x-ms-retry-after-ms", "700")],
                Duration::from_millis(700),
            ),
        ] {
            let (out, times) = script(
                POLICY,
                Duration::from_mins(1),
                vec![resp(429, &pairs, "throttled"), resp(200, &[], "ok")],
            )
            .await;
            assert_eq!(out.result.unwrap().2, "ok");
            assert_eq!(out.retries, 1);
            assert_eq!(times[1], want, "{pairs:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn http_date_retry_after_is_waited_for() {
        let at = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(3));
        let (out, times) = script(
            POLICY,
            Duration::from_mins(1),
            vec![
                resp(503, &[("retry-after", &at)], "busy"),
                resp(200, &[], "ok"),
            ],
        )
        .await;
        assert_eq!(out.result.unwrap().2, "ok");
        // The date has one-second resolution, so the wait lands within a second below 3 s.
        assert!(
            times[1] >= Duration::from_secs(2) && times[1] <= Duration::from_secs(3),
            "{:?}",
            times[1]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_wins_over_a_shorter_server_wait() {
        let (_, times) = script(
            POLICY,
            Duration::from_mins(1),
            vec![
                resp(429, &[("retry-after-ms", "1")], "a"),
                resp(429, &[("retry-after-ms", "1")], "b"),
                resp(200, &[], "ok"),
            ],
        )
        .await;
        let first = times[1];
        let second = times[2].checked_sub(times[1]).unwrap();
        assert!(
            first >= Duration::from_millis(80) && first <= Duration::from_millis(120),
            "{first:?}"
        );
        assert!(
            second >= Duration::from_millis(160) && second <= Duration::from_millis(240),
            "{second:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn five_hundreds_are_retried_until_success() {
        let (out, times) = script(
            POLICY,
            Duration::from_mins(1),
            vec![
                resp(500, &[], "a"),
                resp(502, &[], "b"),
                resp(503, &[], "c"),
                resp(200, &[], "ok"),
            ],
        )
        .await;
        assert_eq!(out.result.unwrap().2, "ok");
        assert_eq!(out.retries, 3);
        assert_eq!(times.len(), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn last_response_comes_back_when_attempts_run_out() {
        let (out, times) = script(
            POLICY,
            Duration::from_mins(1),
            vec![
                resp(504, &[], "a"),
                resp(504, &[], "b"),
                resp(504, &[], "c"),
                resp(504, &[], "last"),
            ],
        )
        .await;
        let (status, _, tag) = out.result.unwrap();
        assert_eq!((status, tag), (504, "last"));
        assert_eq!(times.len(), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn client_errors_are_never_retried() {
        for status in [400, 401, 403, 404, 409, 501] {
            let (out, times) = script(
                POLICY,
                Duration::from_mins(1),
                vec![resp(status, &[], "final")],
            )
            .await;
            assert_eq!(out.result.unwrap().0, status);
            assert_eq!(times.len(), 1, "{status}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn no_wait_runs_past_the_deadline() {
        let start = Instant::now();
        let (out, times) = script(
            POLICY,
            Duration::from_secs(10),
            vec![resp(429, &[("retry-after", "30")], "throttled")],
        )
        .await;
        assert_eq!(out.result.unwrap().2, "throttled");
        assert_eq!(times.len(), 1);
        assert_eq!(
            start.elapsed(),
            Duration::ZERO,
            "gave up at once instead of sleeping"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn connection_failures_retry_only_when_retryable() {
        let reset = || Attempt::Failed {
            error: HttpError::Connect("reset".into()),
            retryable: true,
        };
        let (out, times) = script(
            POLICY,
            Duration::from_mins(1),
            vec![reset(), reset(), resp(200, &[], "ok")],
        )
        .await;
        assert_eq!(out.result.unwrap().2, "ok");
        assert_eq!(times.len(), 3);
        let tls = Attempt::Failed {
            error: HttpError::Connect("bad certificate".into()),
            retryable: false,
        };
        let (out, times) = script(POLICY, Duration::from_mins(1), vec![tls]).await;
        assert_eq!(
            out.result.unwrap_err(),
            HttpError::Connect("bad certificate".into())
        );
        assert_eq!(times.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn an_exhausted_budget_stops_retries() {
        let policy = POLICY;
        let start = Instant::now();
        let mut n = 0;
        let out = run(
            &policy,
            start + Duration::from_mins(1),
            || false,
            || {
                n += 1;
                async { resp(503, &[], "busy") }
            },
        )
        .await;
        assert_eq!(out.result.unwrap().0, 503);
        assert_eq!(n, 1);
    }
}
