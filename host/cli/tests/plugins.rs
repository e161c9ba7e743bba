//! `keelson plugins list|inspect` on the real binary: the fixtures load with their contract
//! version and exports, and every kind of bad component is refused with a message that says why.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn plugins_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../plugins/target/wasm32-wasip2/release")
}

fn component(file: &str) -> PathBuf {
    let path = plugins_dir().join(file);
    assert!(
        path.is_file(),
        "`{}` is missing: build the plugins first (`cargo build --release --target wasm32-wasip2 --manifest-path plugins/Cargo.toml`)",
        path.display()
    );
    path
}

fn keelson(config: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_keelson"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("KEELSON_CONFIG")
        .output()
        .expect("keelson runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A config with the well-behaved fixture (a 0.1.0 component, allowed its plaintext secrets),
/// the same file without that allowance, and four bad components, each as its own plugin.
fn config_with_fixtures(dir: &Path) -> PathBuf {
    let well_behaved = component("well_behaved.wasm");
    let bytes = std::fs::read(&well_behaved).unwrap();
    std::fs::write(dir.join("truncated.wasm"), &bytes[..bytes.len() / 2]).unwrap();
    // The smallest valid core module: magic and version 1, no sections.
    std::fs::write(dir.join("core.wasm"), b"\0asm\x01\0\0\0").unwrap();
    let cache = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/keelson-test-cache");
    let text = format!(
        r#"
[host]
database = "keelson.db"
cache_dir = "{cache}"

[[plugin]]
id = "well-behaved"
path = "{well_behaved}"
allowed_hosts = ["https://example.test"]
allow_plaintext_secrets = true

[[plugin]]
id = "plaintext-not-allowed"
path = "{well_behaved}"

[[plugin]]
id = "pinned-wrong"
path = "{well_behaved}"
sha256 = "{zeros}"

[[plugin]]
id = "core-module"
path = "core.wasm"

[[plugin]]
id = "truncated"
path = "truncated.wasm"

[[plugin]]
id = "future-version"
path = "{future}"
"#,
        cache = cache.display(),
        well_behaved = well_behaved.display(),
        zeros = "0".repeat(64),
        future = component("future_version.wasm").display(),
    );
    let path = dir.join("plugins.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn list_shows_the_fixtures_and_refuses_each_bad_component_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_with_fixtures(dir.path());
    let (ok, stdout, stderr) = keelson(&config, &["plugins", "list", "--json"]);
    assert!(!ok, "a refused plugin makes the command fail");
    let list: Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("JSON ({e}): {stdout}\n{stderr}"));
    let by_id = |id: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|p| p["id"] == id)
            .unwrap()
            .clone()
    };

    let good = by_id("well-behaved");
    assert_eq!(good["status"], "loaded", "{good}");
    assert_eq!(good["wit_version"], "0.1.0");
    let exports: Vec<&str> = good["exports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    for interface in ["auth", "enumeration", "scanning", "enrichment"] {
        let name = format!("keelson:registry/{interface}@0.1.0");
        assert!(
            exports.contains(&name.as_str()),
            "exports {exports:?} include {name}"
        );
    }
    assert_eq!(good["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(good["secrets"], "plaintext");

    let refused = |id: &str, needle: &str| {
        let p = by_id(id);
        assert_eq!(p["status"], "refused", "{p}");
        let error = p["error"].as_str().unwrap();
        assert!(
            error.contains(needle),
            "`{id}` refused with `{error}`, which should mention `{needle}`"
        );
    };
    refused("pinned-wrong", "sha256");
    refused("core-module", "core WebAssembly module");
    refused("truncated", "not a valid component");
    refused("future-version", "keelson:registry@9.0.0");
    refused("plaintext-not-allowed", "allow_plaintext_secrets = true");
}

#[test]
fn table_output_names_versions_and_inspect_shows_the_connector() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_with_fixtures(dir.path());
    let (_, table, _) = keelson(&config, &["plugins", "list"]);
    let line = table
        .lines()
        .find(|l| l.starts_with("well-behaved"))
        .expect("a row for the fixture");
    assert!(line.contains("loaded") && line.contains("0.1.0"), "{line}");
    assert!(
        line.contains("auth,enumeration,scanning,enrichment"),
        "{line}"
    );
    assert!(
        table.contains("secrets: PLAINTEXT: built for keelson:registry@0.1.0"),
        "a plugin allowed plaintext secrets says why that is dangerous:\n{table}"
    );

    let (ok, detail, stderr) = keelson(&config, &["plugins", "inspect", "well-behaved"]);
    assert!(ok, "{stderr}");
    assert!(detail.contains("source tool:"), "{detail}");
    assert!(detail.contains("connection instructions:"), "{detail}");

    let (ok, _, stderr) = keelson(&config, &["plugins", "inspect", "nope"]);
    assert!(!ok);
    assert!(
        stderr.contains("no plugin `nope`") && stderr.contains("`well-behaved`"),
        "{stderr}"
    );
}

#[test]
fn a_malformed_config_is_refused_with_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plugins.toml");
    std::fs::write(
        &path,
        "[[plugin]]\nid = \"x\"\npath = \"x.wasm\"\nalowed_hosts = []\n",
    )
    .unwrap();
    let (ok, _, stderr) = keelson(&path, &["plugins", "list"]);
    assert!(!ok);
    assert!(
        stderr.contains("plugins.toml:4:1") && stderr.contains("alowed_hosts"),
        "{stderr}"
    );
}
