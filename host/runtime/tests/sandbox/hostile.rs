//! The hostile fixture, one misbehaviour per test: each is contained, reported as a typed error,
//! and the host goes on serving.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keelson_core::ScanScope;
use keelson_runtime::{Error, PageRequest, RuntimeSettings};

use crate::harness::{Server, assert_host_still_serves, hostile, limits, runtime, runtime_with};

const SHORT: Duration = Duration::from_secs(1);

#[tokio::test]
async fn infinite_loop_is_interrupted() {
    // T01
    let rt = runtime();
    let mut conn = hostile(&rt, limits(SHORT, 64), &[("mode", "loop")]).await;
    let started = Instant::now();
    let err = conn.verify().await.unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(&err, Error::Timeout { site, limit } if site.operation == "verify" && *limit == SHORT),
        "{err:?}"
    );
    assert!(took < SHORT + Duration::from_secs(1), "took {took:?}");
    assert!(
        err.to_string()
            .starts_with("from plugin `hostile` 0.1.0 in `verify`"),
        "{err}"
    );

    // The instance is retired: no second entry into a poisoned store.
    let again = conn.verify().await.unwrap_err();
    assert!(matches!(again, Error::Retired { .. }), "{again:?}");
    assert!(again.to_string().contains("retired"), "{again}");
    assert_host_still_serves(&rt).await;
}

#[tokio::test]
async fn infinite_loop_in_connect_is_interrupted() {
    let rt = runtime();
    let mut s = crate::harness::spec("hostile", "hostile");
    s.limits = limits(SHORT, 64);
    let plugin = crate::harness::load(&rt, &s).await.unwrap();
    let err = plugin
        .connect(
            "c",
            crate::harness::settings(&[("mode", "loop"), ("at", "connect")]),
            Vec::new(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Timeout { site, .. } if site.operation == "connect"),
        "{err:?}"
    );
    assert_host_still_serves(&rt).await;
}

#[tokio::test]
async fn tight_loop_of_host_calls_is_stopped_by_the_deadline() {
    // T02, `log` flavour: the guest spends its time in host calls.
    let rt = runtime();
    let mut conn = hostile(&rt, limits(SHORT, 64), &[("mode", "host-call-loop")]).await;
    let started = Instant::now();
    let err = conn.verify().await.unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    assert!(
        started.elapsed() < SHORT + Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
    assert_host_still_serves(&rt).await;
}

#[tokio::test]
async fn host_call_that_never_returns_is_cut_by_the_wall_clock() {
    // T02, `send` flavour: epochs never fire while the guest waits in the host.
    let server = Server::start();
    let rt = runtime();
    let url = server.url("/slow");
    let mut conn = hostile(
        &rt,
        limits(SHORT, 64),
        &[("mode", "host-call-loop"), ("urls", &url)],
    )
    .await;
    let started = Instant::now();
    let err = conn.verify().await.unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    assert!(
        started.elapsed() < SHORT + Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        server.accepted() >= 1,
        "the request never reached the server"
    );
    assert_host_still_serves(&rt).await;
}

#[tokio::test]
async fn memory_bomb_is_stopped_at_the_limit() {
    // T03
    let rt = runtime();
    let mut conn = hostile(
        &rt,
        limits(Duration::from_secs(10), 64),
        &[("mode", "memory")],
    )
    .await;
    let err = conn.verify().await.unwrap_err();
    match &err {
        Error::MemoryLimit {
            limit, requested, ..
        } => {
            assert_eq!(*limit, 64 << 20);
            assert!(*requested > 64 << 20);
        }
        other => panic!("expected a memory limit error, got {other:?}"),
    }
    assert!(
        conn.peak_memory_bytes() <= 64 << 20,
        "{}",
        conn.peak_memory_bytes()
    );
    assert_host_still_serves(&rt).await;
}

#[tokio::test]
async fn unbounded_recursion_is_a_stack_overflow() {
    // T05
    let rt = runtime();
    let mut conn = hostile(
        &rt,
        limits(Duration::from_secs(10), 64),
        &[("mode", "recursion")],
    )
    .await;
    let err = conn.verify().await.unwrap_err();
    assert!(
        matches!(err, Error::StackOverflow { limit, .. } if limit == 512 << 10),
        "{err:?}"
    );
    assert_host_still_serves(&rt).await;
}

#[tokio::test]
async fn panic_is_a_trap_carrying_the_panic_message() {
    let rt = runtime();
    let mut conn = hostile(
        &rt,
        limits(Duration::from_secs(10), 64),
        &[("mode", "panic")],
    )
    .await;
    let err = conn.verify().await.unwrap_err();
    match &err {
        Error::Trap { stderr, .. } => {
            assert!(
                stderr.contains("hostile fixture panicked on purpose in `verify`"),
                "{stderr}"
            );
        }
        other => panic!("expected a trap, got {other:?}"),
    }
    assert!(err.retires_connection());
    assert_host_still_serves(&rt).await;
}

#[tokio::test]
async fn huge_string_fails_on_the_lift_cap() {
    // T06: 100 MiB fits in the guest's 256 MiB but not in the 64 MiB the host lifts per value.
    let rt = runtime();
    let bytes = (100_u32 << 20).to_string();
    let mut conn = hostile(
        &rt,
        limits(Duration::from_secs(20), 256),
        &[("mode", "huge-string"), ("bytes", &bytes)],
    )
    .await;
    let err = conn.verify().await.unwrap_err();
    assert!(
        matches!(err, Error::LiftLimit { limit, .. } if limit == 64 << 20),
        "{err:?}"
    );
    assert_host_still_serves(&rt).await;
}

#[tokio::test]
async fn ten_million_item_list_fails_on_the_lift_cap() {
    // T06: ten million empty strings cost the guest 80 MB but the host 240 MB of `String`s.
    let rt = runtime();
    let mut conn = hostile(
        &rt,
        limits(Duration::from_secs(20), 512),
        &[("mode", "huge-list"), ("at", "list-images")],
    )
    .await;
    let err = conn
        .list_images("r", "x", PageRequest::first(10))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::LiftLimit { .. }), "{err:?}");
    assert_host_still_serves(&rt).await;
}

#[tokio::test]
async fn oversized_field_is_refused_by_the_validator() {
    // T06: 2 MiB lifts fine but is more than a text field may hold; the connection survives.
    let rt = runtime();
    let bytes = (2_u32 << 20).to_string();
    let mut conn = hostile(
        &rt,
        limits(Duration::from_secs(10), 64),
        &[
            ("mode", "huge-string"),
            ("bytes", &bytes),
            ("at", "list-findings"),
        ],
    )
    .await;
    let scope = ScanScope::default();
    // `raw` may be up to 4 MiB, so 2 MiB there passes...
    let page = conn
        .list_findings(&scope, PageRequest::first(10))
        .await
        .unwrap();
    assert_eq!(page.items[0].raw.len(), 2 << 20);

    let mut conn = hostile(
        &rt,
        limits(Duration::from_secs(10), 64),
        &[("mode", "huge-string"), ("bytes", &bytes), ("at", "verify")],
    )
    .await;
    // ...but not in a display name.
    let err = conn.verify().await.unwrap_err();
    match &err {
        Error::Invalid { reason, .. } => assert!(reason.contains("`display-name`"), "{reason}"),
        other => panic!("expected a validation error, got {other:?}"),
    }
    assert!(conn.retired().is_none());
}

#[tokio::test]
async fn too_many_items_in_a_page_are_refused_by_the_validator() {
    let rt = runtime();
    let mut conn = hostile(
        &rt,
        limits(Duration::from_secs(10), 64),
        &[
            ("mode", "many-items"),
            ("at", "list-registries"),
            ("items", "10001"),
        ],
    )
    .await;
    let err = conn
        .list_registries(PageRequest::first(100_000))
        .await
        .unwrap_err();
    match &err {
        Error::Invalid { reason, .. } => assert!(
            reason.contains("10001 items, more than the 10000 allowed"),
            "{reason}"
        ),
        other => panic!("expected a validation error, got {other:?}"),
    }
    let err = conn
        .list_registries(PageRequest::first(10))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("more than the 10 allowed"),
        "{err}"
    );
}

#[tokio::test]
async fn leaked_resource_handles_hit_the_handle_cap() {
    // T07
    let rt = runtime();
    let mut conn = hostile(
        &rt,
        limits(Duration::from_secs(10), 64),
        &[("mode", "handles")],
    )
    .await;
    let err = conn.verify().await.unwrap_err();
    assert!(matches!(err, Error::ResourceLimit { .. }), "{err:?}");
    assert_host_still_serves(&rt).await;
}

#[tokio::test]
async fn wasi_gives_no_files_environment_or_sockets() {
    // T11
    let rt = runtime();
    let mut conn = hostile(
        &rt,
        limits(Duration::from_secs(10), 64),
        &[("mode", "wasi")],
    )
    .await;
    let account = conn.verify().await.unwrap();
    let get = |k: &str| {
        account
            .details
            .iter()
            .find(|d| d.key == k)
            .unwrap()
            .value
            .clone()
    };
    for key in ["file", "dir", "tcp", "udp", "dns"] {
        assert!(get(key).starts_with("error: "), "{key}: {}", get(key));
    }
    assert_eq!(get("env"), "0");
    assert_eq!(get("args"), "0");
}

#[tokio::test]
async fn cancelled_calls_leave_the_host_healthy() {
    // T12: the caller drops the call future mid-flight, a hundred times.
    let rt = runtime();
    for _ in 0..100 {
        let mut conn = hostile(
            &rt,
            limits(Duration::from_secs(10), 64),
            &[("mode", "loop")],
        )
        .await;
        let cut = tokio::time::timeout(Duration::from_millis(2), conn.verify()).await;
        assert!(cut.is_err(), "the loop cannot have finished");
        let err = conn.verify().await.unwrap_err();
        assert!(err.to_string().contains("cancelled"), "{err}");
    }
    assert_host_still_serves(&rt).await;
}

/// Collects formatted log output of the current thread.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn output_flood_is_capped_and_escaped() {
    // T14: 100 MB of ANSI escapes and NUL bytes to stdout and stderr.
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let rt = runtime_with(RuntimeSettings {
        max_output_bytes: 16 << 10,
        ..RuntimeSettings::new(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/keelson-test-cache"),
        )
    });
    let mut conn = hostile(
        &rt,
        limits(Duration::from_secs(20), 64),
        &[("mode", "flood")],
    )
    .await;
    let account = conn
        .verify()
        .await
        .expect("a full pipe is not the guest's fault");
    let written: usize = account
        .details
        .iter()
        .find(|d| d.key == "written")
        .unwrap()
        .value
        .parse()
        .unwrap();
    assert!(
        written <= 2 * (16 << 10),
        "{written} bytes got past the cap"
    );

    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        log.contains("\\u{1b}[2J\\u{1b}[31mred\\u{0}nul\\u{7}bell"),
        "escaped output is missing"
    );
    assert!(
        !log.contains('\u{1b}') && !log.contains('\0'),
        "a control character reached the log"
    );
    assert!(log.contains("plugin output reached its cap"));
    assert!(
        log.len() < 1 << 20,
        "{} bytes of log for a 16 KiB cap",
        log.len()
    );
}

#[tokio::test]
async fn forbidden_destinations_come_back_to_the_guest_as_denied() {
    // T15 (runtime half): even with every host granted, these never leave; the guest gets a
    // `denied` value and carries on, it is never trapped.
    let rt = runtime();
    let urls = [
        "http://169.254.169.254/metadata/identity/oauth2/token",
        "http://127.0.0.1:22/",
        "http://[::1]/",
        "http://0x7f.1/",
        "http://2130706433/",
    ];
    let joined = urls.join(" ");
    let mut conn = hostile(
        &rt,
        limits(Duration::from_secs(10), 64),
        &[("mode", "http"), ("urls", &joined)],
    )
    .await;
    let account = conn.verify().await.unwrap();
    for url in urls {
        let outcome = &account.details.iter().find(|d| d.key == url).unwrap().value;
        assert!(outcome.starts_with("denied: "), "{url}: {outcome}");
    }
    assert_eq!(conn.requests_sent(), 0);
}

#[tokio::test]
async fn redirect_to_a_forbidden_host_is_denied_to_the_guest() {
    // T17 (runtime half)
    let server = Server::start();
    let rt = runtime();
    let url = server.url("/redirect");
    let mut conn = hostile(
        &rt,
        limits(Duration::from_secs(10), 64),
        &[("mode", "http"), ("urls", &url)],
    )
    .await;
    let account = conn.verify().await.unwrap();
    let outcome = &account.details.iter().find(|d| d.key == url).unwrap().value;
    assert!(outcome.starts_with("denied: "), "{outcome}");
    assert_eq!(
        server.accepted(),
        1,
        "the first hop goes out, the redirect does not"
    );
}

#[tokio::test]
async fn wildcard_look_alike_hosts_are_denied_to_the_guest() {
    // T18 (runtime half)
    let rt = runtime();
    let mut s = crate::harness::spec("hostile", "hostile");
    s.allowed_hosts = crate::harness::hosts(&["https://*.azurecr.io"]);
    let plugin = crate::harness::load(&rt, &s).await.unwrap();
    let urls = [
        "https://evilazurecr.io/v2/",
        "https://azurecr.io.evil.com/v2/",
        "https://azurecr.io/v2/",
    ];
    let joined = urls.join(" ");
    let mut conn = plugin
        .connect(
            "c",
            crate::harness::settings(&[("mode", "http"), ("urls", &joined)]),
            Vec::new(),
        )
        .await
        .unwrap();
    let account = conn.verify().await.unwrap();
    for url in urls {
        let outcome = &account.details.iter().find(|d| d.key == url).unwrap().value;
        assert!(outcome.starts_with("denied: "), "{url}: {outcome}");
    }
}

#[tokio::test]
async fn malformed_utf8_from_the_guest_is_refused_not_a_host_panic() {
    // T08, for strings: the canonical ABI lift checks UTF-8 before the host sees a `String`.
    let rt = runtime();
    let mut conn = hostile(
        &rt,
        limits(Duration::from_secs(10), 64),
        &[("mode", "bad-utf8")],
    )
    .await;
    let err = conn.verify().await.unwrap_err();
    match &err {
        Error::Trap { message, .. } => assert!(message.contains("utf-8"), "{message}"),
        other => panic!("expected a trap, got {other:?}"),
    }
    assert_host_still_serves(&rt).await;
}
