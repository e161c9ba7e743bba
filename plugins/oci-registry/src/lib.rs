//! The OCI registry connector for Keelson: the inventory of any registry that speaks the OCI
//! distribution API (Docker Registry / `distribution`, Harbor, GHCR, Quay, ACR's `/v2/`).
//!
//! It reads the catalog (or a fixed repository list), each repository's tags, and their
//! manifests: an image index becomes one image with its platform manifests as children, each of
//! them an image of its own with its platform. It authenticates as the registry's
//! `WWW-Authenticate` challenge asks (anonymous, Basic, or Bearer tokens per scope). It has no
//! scanner: `scanning` reports nothing unless a findings feed is configured.
//!
//! - `config`: the settings.
//! - `auth`: challenges and token requests.
//! - `distribution`: `Link` paging, catalog, tag lists, manifests and indexes.
//! - `findings`: the optional JSON findings feed.
//! - `session`: one connection: authentication state, requests and paging.

mod auth;
mod config;
mod distribution;
mod findings;
mod session;

use keelson_plugin_sdk::http::Client;
use keelson_plugin_sdk::{Connector, ConnectorError, ConnectorInfo, Settings};

use crate::config::Config;
use crate::session::OciSession;

const INSTRUCTIONS: &str = "\
Keelson reads the registry's catalog, tags and manifests; it never pushes or deletes.

1. **URL.** Give the registry's base URL, `https://host[:port]`, the address clients push to \
(`https://registry.example.com`, `https://ghcr.io`, `https://harbor.example.com`).
2. **Credentials.** For a registry that needs them, create a read-only user or robot account \
(Harbor: a robot account with *pull* on the projects; GHCR: a token with `read:packages`) and \
give its name and password or token. Leave both empty for anonymous access. The connector \
answers the registry's own challenge: Basic, or a Bearer token from its token service.
3. **Repositories.** Registries that do not serve `/v2/_catalog` to your user (GHCR, Docker Hub) \
need the repositories listed in **Repositories**.
4. **Allow the hosts.** Grant the plugin the registry's URL in `allowed_hosts`, plus its token \
service if it uses one (the `realm` of its `WWW-Authenticate` header, e.g. `https://auth.docker.io`).

Findings: the registry API carries none. Point **Findings feed URL** at a JSON export of your \
scanner's results to bring them in; without it Keelson keeps the inventory only.";

struct OciRegistry;

impl Connector for OciRegistry {
    type Session = OciSession;

    fn describe() -> ConnectorInfo {
        ConnectorInfo {
            id: "oci-registry".to_owned(),
            display_name: "OCI registry".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            source_tool: "OCI registry".to_owned(),
            settings: config::spec(),
            instructions: INSTRUCTIONS.to_owned(),
            suggested_hosts: Vec::new(),
        }
    }

    fn connect(settings: Settings) -> Result<OciSession, ConnectorError> {
        let config = Config::from_settings(&settings)?;
        Ok(OciSession::new(config, Client::new()))
    }
}

keelson_plugin_sdk::export_connector!(OciRegistry);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_declares_every_setting_with_label_and_help() {
        let info = OciRegistry::describe();
        assert_eq!(info.id, "oci-registry");
        let keys: Vec<_> = info.settings.iter().map(|s| s.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "url",
                "username",
                "password",
                "repositories",
                "findings_url"
            ]
        );
        assert!(
            info.settings
                .iter()
                .all(|s| !s.label.is_empty() && !s.help.is_empty())
        );
        assert!(
            info.settings
                .iter()
                .find(|s| s.key == "password")
                .unwrap()
                .secret
        );
    }
}
