//! The Azure Container Registry connector for Keelson.
//!
//! Signs in to Microsoft Entra ID with an app registration's client secret, lists the
//! registries of one subscription from Azure Resource Manager, their repositories and images
//! from each registry's data plane, and the vulnerability findings Microsoft Defender for Cloud
//! reports for those images through Azure Resource Graph.
//!
//! - `config`: the settings and the endpoints of each Azure cloud.
//! - `auth`: Entra ID tokens, the registry token exchange, `AADSTS` error messages.
//! - `arm`: the subscription and the registry list.
//! - `acr`: the registry data plane (catalog, manifests, `Link` paging).
//! - `defender`: the Resource Graph queries and Defender's three row formats.
//! - `facts`: image facts until described, and repository names for rows' lossy names.
//! - `session`: one connection: token caches, requests, paging.

mod acr;
mod arm;
mod auth;
mod config;
mod defender;
mod error;
mod facts;
mod lenient;
mod session;

use keelson_plugin_sdk::http::Client;
use keelson_plugin_sdk::{Connector, ConnectorError, ConnectorInfo, Settings};

use crate::config::Config;
use crate::session::AcrSession;

/// The connector's id, as in `plugins.toml`.
const ID: &str = "azure-container-registry";

/// What the host shows as *Connection instructions*.
const INSTRUCTIONS: &str = "\
Keelson reads your registries and Microsoft Defender for Cloud's findings with an Entra ID app \
registration that may only read. It never changes anything in Azure.

1. **Register an app.** In the Azure portal open *Microsoft Entra ID* → *App registrations* → \
*New registration*. Give it a name you will recognise (for example `keelson-scanner`), choose \
*Accounts in this organizational directory only* (single tenant), leave the redirect URI empty \
and select *Register*.
2. **Note the IDs.** On the app's *Overview* page, copy the *Application (client) ID* into \
**Client ID** and the *Directory (tenant) ID* into **Tenant ID**.
3. **Grant read access.** Open *Subscriptions*, pick the subscription that holds your registries, \
then *Access control (IAM)* → *Add* → *Add role assignment*. Choose the **Reader** role, assign \
access to *User, group, or service principal*, select the app and finish with *Review + assign*. \
Reader lets the app list the registries, read their repositories and images, and query \
Defender's findings; role assignments can take a few minutes to apply. Registries set to \
*RBAC Registry + ABAC Repository Permissions* also need the app to hold a repository reader and \
catalog lister role on them.
4. **Create a client secret.** In the app, open *Certificates & secrets* → *Client secrets* → \
*New client secret*, pick an expiry, and copy the secret's **Value** (not the *Secret ID*) \
straight away: Azure shows it only once. Keep it in your secrets manager, reference it from \
Keelson as **Client Secret**, and set a reminder to rotate it before it expires.
5. **Copy the subscription.** From the subscription's *Overview* page, copy the *Subscription ID* \
into **Subscription ID**.
6. **Allow the hosts.** Grant the plugin `https://login.microsoftonline.com`, \
`https://management.azure.com` and `https://*.azurecr.io` in `allowed_hosts`. For Azure operated \
by 21Vianet use `login.chinacloudapi.cn`, `management.chinacloudapi.cn` and `*.azurecr.cn`; for \
Azure Government `login.microsoftonline.us`, `management.usgovcloudapi.net` and `*.azurecr.us`.

Findings come from Microsoft Defender for Cloud's vulnerability assessment of registry images \
(Defender for Containers or Defender CSPM). Without it, scans list the images but report no \
findings. *Findings source* picks Defender's data: `auto` reads the current individual \
recommendations and the legacy sub-assessments, which Microsoft retired in July 2026.";

struct AzureContainerRegistry;

impl Connector for AzureContainerRegistry {
    type Session = AcrSession;

    fn describe() -> ConnectorInfo {
        ConnectorInfo {
            id: ID.to_owned(),
            display_name: "Azure Container Registry".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            source_tool: "Azure Container Registry".to_owned(),
            settings: config::spec(),
            instructions: INSTRUCTIONS.to_owned(),
            suggested_hosts: vec![
                "https://login.microsoftonline.com".to_owned(),
                "https://management.azure.com".to_owned(),
                "https://*.azurecr.io".to_owned(),
            ],
        }
    }

    /// Validates the settings; signing in waits for the first call that needs a token.
    fn connect(settings: Settings) -> Result<AcrSession, ConnectorError> {
        let config = Config::from_settings(&settings)?;
        Ok(AcrSession::new(config, Client::new()))
    }
}

keelson_plugin_sdk::export_connector!(AzureContainerRegistry);

#[cfg(test)]
pub(crate) mod testdata {
    //! The Azure sample payloads in `tests/data` (provenance in its README).

    use std::path::Path;

    pub(crate) fn sample(name: &str) -> serde_json::Value {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data")
            .join(name);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading sample `{}`: {e}", path.display()));
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("parsing sample `{}`: {e}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_names_the_connector_and_its_settings() {
        let info = AzureContainerRegistry::describe();
        assert_eq!(info.id, "azure-container-registry");
        assert_eq!(info.source_tool, "Azure Container Registry");
        assert_eq!(info.settings.len(), 8);
        assert!(
            info.suggested_hosts
                .contains(&"https://*.azurecr.io".to_owned())
        );
        for needed in [
            "single tenant",
            "Reader",
            "Access control (IAM)",
            "secrets manager",
            "rotate",
            "Subscription ID",
            "Client ID",
            "Tenant ID",
        ] {
            assert!(
                info.instructions.contains(needed),
                "instructions lack `{needed}`"
            );
        }
    }

    #[test]
    fn connect_validates_without_network() {
        let err = AzureContainerRegistry::connect(Settings::from_pairs(&[("tenant_id", "x")]))
            .err()
            .unwrap();
        assert_eq!(err.kind(), "invalid-config");
        let ok = AzureContainerRegistry::connect(Settings::from_pairs(&[
            ("tenant_id", "72f988bf-86f1-41af-91ab-2d7cd011db47"),
            ("client_id", "11111111-2222-3333-4444-555555555555"),
            ("client_secret", "s"),
            ("subscription_id", "00000000-0000-0000-0000-000000000000"),
        ]));
        assert!(ok.is_ok());
    }
}
