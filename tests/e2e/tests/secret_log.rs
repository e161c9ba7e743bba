//! T37 in the logs: no form of a client secret (the good one, wrong ones, an expired one)
//! appears in anything the host or the connector logs, or in an error, over sign-in failures
//! and a whole scan.
//!
//! A test binary of its own: the log is captured by a subscriber set for this test's thread, and
//! `tracing` caches a callsite's interest when it is first met. Another test's thread meeting
//! the plugin's log callsites first (with no subscriber) would silence them here.

use azure_sim::{Scenario, SimOptions};
use keelson_e2e::{AcrEnv, snapshot};
use keelson_scan::PagingPolicy;

/// A `tracing` writer that keeps everything in memory.
#[derive(Clone, Default)]
struct CapturedLog(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for CapturedLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for CapturedLog {
    type Writer = CapturedLog;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

// Current-thread runtime: the log subscriber is set for this thread, and the host, the plugin
// and the simulator all run on it.
#[tokio::test(flavor = "current_thread")]
async fn the_client_secret_never_appears_in_logs_or_errors() {
    use base64::Engine as _;
    let log = CapturedLog::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(log.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let env = AcrEnv::start(SimOptions::new(Scenario::Small)).await;
    let good = env.sim.credentials();
    let mut errors = Vec::new();
    for creds in [
        env.sim.wrong_secret(),
        env.sim.expired_secret_client(),
        env.sim.no_role_client(),
    ] {
        let err = match env.connect(&creds).await {
            Ok(mut conn) => conn.verify().await.expect_err("fails"),
            Err(err) => err,
        };
        errors.push((creds.client_secret.clone(), format!("{err} {err:?}")));
    }
    let mut conn = env.connect(&good).await.expect("connects");
    conn.verify().await.expect("verifies");
    let snap = snapshot(&mut conn, &PagingPolicy::default()).await;
    assert!(snap.failures.is_empty(), "{:?}", snap.failures);
    drop(conn);

    let log = String::from_utf8_lossy(&log.0.lock().unwrap()).into_owned();
    assert!(
        log.contains("e2e"),
        "the log captured the run (it names the connection); it holds {} bytes: {}",
        log.len(),
        log.chars().take(600).collect::<String>()
    );
    let mut secrets: Vec<String> = errors.iter().map(|(s, _)| s.clone()).collect();
    secrets.push(good.client_secret.clone());
    for secret in &secrets {
        let forms = [
            secret.clone(),
            percent_encoding::utf8_percent_encode(secret, percent_encoding::NON_ALPHANUMERIC)
                .to_string(),
            base64::engine::general_purpose::STANDARD.encode(secret),
        ];
        for form in &forms {
            assert!(
                !log.contains(form.as_str()),
                "a secret form appears in the log"
            );
            for (_, text) in &errors {
                assert!(
                    !text.contains(form.as_str()),
                    "a secret form appears in an error"
                );
            }
        }
    }
}
