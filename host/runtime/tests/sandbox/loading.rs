//! What `Runtime::load` refuses, and what it reports about what it accepts (T04, T09, T10).

use keelson_runtime::Error;

use crate::harness::{assert_host_still_serves, fixture, load, runtime, spec};

fn message(e: &Error) -> String {
    e.to_string()
}

#[tokio::test]
async fn loaded_plugin_reports_its_contract_and_description() {
    let rt = runtime();
    let plugin = load(&rt, &spec("well-behaved", "well_behaved"))
        .await
        .unwrap();
    assert_eq!(plugin.wit_version(), "0.1.0");
    assert_eq!(plugin.sha256().len(), 64);
    for name in ["auth", "enumeration", "scanning", "enrichment"] {
        let export = format!("keelson:registry/{name}@0.1.0");
        assert!(plugin.exports().contains(&export), "{:?}", plugin.exports());
    }
    assert!(
        plugin
            .imports()
            .iter()
            .any(|i| i == "keelson:registry/host-http@0.1.0")
    );
    let info = plugin.describe();
    assert_eq!(
        (info.id.as_str(), info.version.as_str()),
        ("well-behaved", "0.1.0")
    );
    assert!(info.settings.iter().any(|s| s.key == "token" && s.secret));
    assert_eq!(plugin.describe_fresh().await.unwrap(), *info);
}

#[tokio::test]
async fn pinned_sha256_is_checked_before_compiling() {
    let rt = runtime();
    let mut s = spec("well-behaved", "well_behaved");
    let bytes = std::fs::read(&s.path).unwrap();
    let actual = {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(&bytes))
    };
    s.sha256 = Some("0".repeat(64));
    let err = load(&rt, &s).await.unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err:?}");
    let text = message(&err);
    assert!(
        text.contains(&"0".repeat(64)) && text.contains(&actual),
        "{text}"
    );
    assert!(text.contains("refusing to load"), "{text}");

    s.sha256 = Some(actual.to_uppercase());
    load(&rt, &s)
        .await
        .expect("the right digest loads, in any case");
}

#[tokio::test]
async fn core_module_is_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("core.wasm");
    // The smallest valid core module: magic and version 1.
    std::fs::write(&path, b"\0asm\x01\0\0\0").unwrap();
    let mut s = spec("core", "well_behaved");
    s.path = path;
    let err = load(&runtime(), &s).await.unwrap_err();
    assert!(matches!(err, Error::CoreModule { .. }), "{err:?}");
    assert!(
        message(&err).contains("is a core WebAssembly module, not a component"),
        "{err}"
    );
}

#[tokio::test]
async fn non_wasm_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("text.wasm");
    std::fs::write(&path, "#!/bin/sh\necho hi\n").unwrap();
    let mut s = spec("text", "well_behaved");
    s.path = path;
    let err = load(&runtime(), &s).await.unwrap_err();
    assert!(matches!(err, Error::NotWasm { .. }), "{err:?}");
    assert!(message(&err).contains("is not a WebAssembly file"), "{err}");
}

#[tokio::test]
async fn truncated_component_is_refused_and_host_keeps_serving() {
    let rt = runtime();
    let bytes = std::fs::read(fixture("well_behaved")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("truncated.wasm");
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let mut s = spec("truncated", "well_behaved");
    s.path = path;
    let err = load(&rt, &s).await.unwrap_err();
    assert!(matches!(err, Error::InvalidComponent { .. }), "{err:?}");
    assert!(message(&err).contains("is not a valid component"), "{err}");
    assert_host_still_serves(&rt).await;
}

#[tokio::test]
async fn missing_file_is_refused_naming_the_path() {
    let mut s = spec("gone", "well_behaved");
    s.path = s.path.with_file_name("does-not-exist.wasm");
    let err = load(&runtime(), &s).await.unwrap_err();
    assert!(matches!(err, Error::Read { .. }), "{err:?}");
    assert!(message(&err).contains("does-not-exist.wasm"), "{err}");
}

#[tokio::test]
async fn unknown_contract_version_is_refused_naming_both_versions() {
    let rt = runtime();
    let err = load(&rt, &spec("future-version", "future_version"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::UnsupportedVersion { .. }), "{err:?}");
    let text = message(&err);
    assert!(text.contains("`keelson:registry@9.0.0`"), "{text}");
    assert!(text.contains("`keelson:registry@0.2.0`"), "{text}");
    assert_host_still_serves(&rt).await;
}

#[tokio::test]
async fn a_plaintext_contract_loads_only_when_the_operator_allows_it() {
    let rt = runtime();
    let mut s = spec("well-behaved", "well_behaved");
    s.allow_plaintext_secrets = false;
    let err = load(&rt, &s).await.unwrap_err();
    assert!(matches!(err, Error::PlaintextSecrets { .. }), "{err:?}");
    let text = message(&err);
    assert!(
        text.contains("`keelson:registry@0.1.0`")
            && text.contains("allow_plaintext_secrets = true"),
        "{text}"
    );
    s.allow_plaintext_secrets = true;
    let plugin = load(&rt, &s).await.unwrap();
    assert!(!plugin.seals_secrets());
    assert_host_still_serves(&rt).await;
}

#[tokio::test]
async fn initial_memory_over_the_limit_fails_instantiation() {
    let rt = runtime();
    let mut s = spec("big-memory", "big_memory");
    s.limits.memory_bytes = 64 << 20;
    let err = load(&rt, &s).await.unwrap_err();
    match &err {
        Error::MemoryLimit {
            site,
            limit,
            requested,
        } => {
            assert_eq!(site.operation, "instantiate");
            assert_eq!(*limit, 64 << 20);
            assert!(*requested >= 256 << 20, "{requested}");
        }
        other => panic!("expected a memory limit error, got {other:?}"),
    }
    // The same component loads once its memory fits: the refusal was about the limit.
    s.limits.memory_bytes = 512 << 20;
    load(&rt, &s).await.unwrap();
    assert_host_still_serves(&rt).await;
}
