//! The well-behaved fixture end to end: every export, paging, typed errors, host-http.

use keelson_core::{ConnectorError, ImageRef, ScanScope, Severity};
use keelson_runtime::{Error, PageRequest};

use crate::harness::{Server, hosts, load, runtime, settings, spec};

#[tokio::test]
async fn every_export_pages_through_its_data() {
    let rt = runtime();
    let plugin = load(&rt, &spec("well-behaved", "well_behaved"))
        .await
        .unwrap();
    let mut conn = plugin
        .connect("prod", Vec::new(), Vec::new())
        .await
        .unwrap();

    let mut registries = Vec::new();
    let mut page = PageRequest::first(100);
    let mut pages = 0;
    loop {
        let p = conn.list_registries(page).await.unwrap();
        pages += 1;
        registries.extend(p.items);
        match p.next {
            Some(next) => page = PageRequest::after(next, 100),
            None => break,
        }
    }
    assert_eq!((pages, registries.len()), (3, 5));
    assert_eq!(registries[4].name, "r4.registry.test");

    let repos = conn
        .list_repositories("r1.registry.test", PageRequest::first(10))
        .await
        .unwrap();
    assert_eq!(repos.items.len(), 2);
    let images = conn
        .list_images(
            "r1.registry.test",
            &repos.items[0].name,
            PageRequest::first(10),
        )
        .await
        .unwrap();
    assert_eq!(images.items.len(), 2);
    assert_eq!(images.items[0].image_ref.digest.len(), "sha256:".len() + 64);

    let scope = ScanScope {
        registries: vec!["r0.registry.test".into(), "r3.registry.test".into()],
    };
    let mut findings = Vec::new();
    let mut page = PageRequest::first(50);
    loop {
        let p = conn.list_findings(&scope, page).await.unwrap();
        findings.extend(p.items);
        match p.next {
            Some(next) => page = PageRequest::after(next, 50),
            None => break,
        }
    }
    assert_eq!(findings.len(), 6);
    assert!(
        findings
            .iter()
            .all(|f| scope.registries.contains(&f.image.registry))
    );
    assert_eq!(findings[2].severity, Severity::Critical);
    assert_eq!(
        findings[0]
            .package
            .as_ref()
            .unwrap()
            .fixed_version
            .as_deref(),
        Some("1.0.1")
    );

    let refs: Vec<ImageRef> = images.items.iter().map(|i| i.image_ref.clone()).collect();
    let contexts = conn.describe_images(&refs).await.unwrap();
    assert_eq!(contexts.len(), 2);
    assert_eq!(contexts[0].image, refs[0]);
    assert_eq!(contexts[0].running, Some(true));
    assert!(conn.retired().is_none());
}

#[tokio::test]
async fn connector_errors_are_typed_and_keep_the_connection() {
    let rt = runtime();
    let plugin = load(&rt, &spec("well-behaved", "well_behaved"))
        .await
        .unwrap();

    let err = plugin
        .connect("prod", settings(&[("token", "wrong")]), Vec::new())
        .await
        .unwrap_err();
    match &err {
        Error::Connector { site, source } => {
            assert_eq!(
                (site.plugin.as_str(), site.version.as_str(), site.operation),
                ("well-behaved", "0.1.0", "connect")
            );
            assert!(
                matches!(source, ConnectorError::InvalidCredentials(_)),
                "{source:?}"
            );
        }
        other => panic!("expected a connector error, got {other:?}"),
    }
    assert!(
        err.to_string()
            .starts_with("from plugin `well-behaved` 0.1.0 in `connect`: invalid credentials"),
        "{err}"
    );

    let mut conn = plugin
        .connect("prod", Vec::new(), Vec::new())
        .await
        .unwrap();
    let err = conn
        .list_repositories("nope.test", PageRequest::first(10))
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            Error::Connector {
                source: ConnectorError::NotFound(_),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!err.retires_connection());
    conn.verify()
        .await
        .expect("a typed error does not retire the connection");
}

#[tokio::test]
async fn page_longer_than_asked_is_refused_without_retiring() {
    let rt = runtime();
    let plugin = load(&rt, &spec("well-behaved", "well_behaved"))
        .await
        .unwrap();
    let mut conn = plugin
        .connect("prod", Vec::new(), Vec::new())
        .await
        .unwrap();
    // The fixture returns pages of two; asking for one is honoured...
    assert_eq!(
        conn.list_registries(PageRequest::first(1))
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    // ...and a cursor it does not know is its own typed error.
    let err = conn
        .list_registries(PageRequest::after("zz".into(), 2))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Connector {
                source: ConnectorError::Other(_),
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn no_state_survives_between_connections() {
    // T13: each connection is a fresh instance, so the fixture's connect counter is always 1.
    let rt = runtime();
    let plugin = load(&rt, &spec("well-behaved", "well_behaved"))
        .await
        .unwrap();
    for name in ["a", "b", "c"] {
        let mut conn = plugin.connect(name, Vec::new(), Vec::new()).await.unwrap();
        let account = conn.verify().await.unwrap();
        let connects = account
            .details
            .iter()
            .find(|d| d.key == "connects")
            .unwrap();
        assert_eq!(
            connects.value, "1",
            "connection `{name}` saw another connection's state"
        );
    }
}

#[tokio::test]
async fn host_http_reaches_a_granted_host_and_denies_others() {
    let server = Server::start();
    let rt = runtime();
    let mut s = spec("well-behaved", "well_behaved");
    s.allowed_hosts = hosts(&[&format!(
        "http://{}:{}",
        crate::harness::LOCAL,
        server.addr.port()
    )]);
    let plugin = load(&rt, &s).await.unwrap();

    let mut conn = plugin
        .connect("prod", settings(&[("url", &server.url("/ok"))]), Vec::new())
        .await
        .unwrap();
    let account = conn.verify().await.unwrap();
    let http = account.details.iter().find(|d| d.key == "http").unwrap();
    assert_eq!(http.value, "status 200: hello");
    assert_eq!(conn.requests_sent(), 1);

    let mut conn = plugin
        .connect(
            "prod",
            settings(&[("url", "http://not-granted.test/")]),
            Vec::new(),
        )
        .await
        .unwrap();
    let account = conn.verify().await.unwrap();
    let http = account.details.iter().find(|d| d.key == "http").unwrap();
    assert!(http.value.starts_with("denied: "), "{}", http.value);
}
