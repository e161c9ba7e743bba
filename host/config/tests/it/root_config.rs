//! The repository's own `plugins.toml`, the one the README's demo uses, must load.

use std::path::Path;

#[test]
fn repository_plugins_toml_loads() {
    let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../plugins.toml"));
    let config = keelson_config::load(path).unwrap_or_else(|e| panic!("{e}"));
    let base = path.parent().unwrap();
    assert_eq!(config.host.database, base.join(".keelson/keelson.db"));
    assert_eq!(config.host.cache_dir, base.join(".keelson/cache"));
    let acr = config
        .plugin("azure-container-registry")
        .expect("the ACR plugin");
    assert_eq!(
        acr.path,
        base.join("plugins/target/wasm32-wasip2/release/azure_container_registry.wasm")
    );
    let hosts: Vec<String> = acr.allowed_hosts.iter().map(ToString::to_string).collect();
    assert_eq!(
        hosts,
        [
            "https://login.microsoftonline.com",
            "https://management.azure.com",
            "https://*.azurecr.io"
        ]
    );
    assert_eq!(acr.limits.memory_bytes, 64 << 20);
    assert_eq!(acr.limits.call_timeout.as_secs(), 60);
    assert!(acr.enabled);
    assert!(
        config.connections.is_empty(),
        "the demo adds its own connections"
    );
}
