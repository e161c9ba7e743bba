//! A minimal Keelson connector, to copy and adapt.
//!
//! It reads a registry that serves its inventory as JSON over HTTPS, with a bearer token:
//!
//! - `GET {url}/api/whoami` -> `{"account": "acme"}`
//! - `GET {url}/api/repositories?limit=N[&after=NAME]` -> `{"repositories": ["a"], "more": true}`
//! - `GET {url}/api/repositories/{name}/images` -> `{"images": [{"digest": "sha256:…", "tags": []}]}`
//!
//! It has no findings: `list_findings` and `describe_images` keep the SDK's defaults.

use keelson_plugin_sdk::http::{Client, encode_component};
use keelson_plugin_sdk::pager::{Cursor, offset_page};
use keelson_plugin_sdk::{
    Account, Connector, ConnectorError, ConnectorInfo, Image, ImagePage, ImageRef, PageRequest,
    Registry, RegistryPage, Repository, RepositoryPage, Secret, Session, SettingSpec, Settings,
};
use serde::{Deserialize, Serialize};

/// The largest page the API serves.
const MAX_PAGE: u32 = 100;

struct Template;

impl Connector for Template {
    type Session = TemplateSession;

    fn describe() -> ConnectorInfo {
        ConnectorInfo {
            id: "template".to_owned(),
            display_name: "Template registry".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            source_tool: "Template registry".to_owned(),
            settings: vec![
                SettingSpec::new(
                    "url",
                    "URL",
                    "Base URL of the registry, `https://host[:port]`.",
                ),
                SettingSpec::new(
                    "token",
                    "API token",
                    "A read-only API token of the registry.",
                )
                .secret(),
            ],
            instructions: "Create a read-only API token in the registry's settings, paste it \
                           into **API token**, and grant the registry's URL in `allowed_hosts`."
                .to_owned(),
            suggested_hosts: Vec::new(),
        }
    }

    /// Checks every setting; signs in lazily, on the first request.
    fn connect(settings: Settings) -> Result<TemplateSession, ConnectorError> {
        let url = settings.required("url")?.trim_end_matches('/');
        let host = url
            .strip_prefix("https://")
            .filter(|h| !h.contains(['/', '?', '@']));
        let Some(host) = host else {
            return Err(ConnectorError::InvalidConfig(format!(
                "setting `url` is `{url}`; expected `https://host[:port]`"
            )));
        };
        Ok(TemplateSession {
            base: url.to_owned(),
            registry: host.to_owned(),
            token: settings.secret("token")?,
            client: Client::new(),
        })
    }
}

struct TemplateSession {
    base: String,
    /// The registry's key: its login server, `host[:port]`.
    registry: String,
    /// Sealed: the host writes it into requests to the granted hosts; the connector never
    /// sees its value.
    token: Secret,
    client: Client,
}

#[derive(Deserialize)]
struct WhoAmI {
    account: String,
}

#[derive(Deserialize)]
struct RepositoryList {
    repositories: Vec<String>,
    more: bool,
}

#[derive(Deserialize)]
struct ImageList {
    images: Vec<ImageEntry>,
}

#[derive(Clone, Deserialize)]
struct ImageEntry {
    digest: String,
    #[serde(default)]
    tags: Vec<String>,
}

/// The repository listing's paging state, carried by the host in the opaque cursor.
#[derive(Serialize, Deserialize)]
struct After {
    after: String,
}

impl TemplateSession {
    /// GETs a path under the base URL; HTTP errors become typed errors (401 -> invalid-credentials…).
    fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, ConnectorError> {
        let url = format!("{}{path}", self.base);
        let response = self.client.get(&url).bearer(&self.token).send()?;
        response.error_for_status()?.json()
    }

    fn check_registry(&self, registry: &str) -> Result<(), ConnectorError> {
        if registry == self.registry {
            return Ok(());
        }
        Err(ConnectorError::NotFound(format!(
            "registry `{registry}` is not this connection's"
        )))
    }
}

impl Session for TemplateSession {
    fn verify(&self) -> Result<Account, ConnectorError> {
        let me: WhoAmI = self.get("/api/whoami")?;
        Ok(Account {
            display_name: me.account.clone(),
            id: me.account,
            details: Vec::new(),
        })
    }

    fn list_registries(&self, page: PageRequest) -> Result<RegistryPage, ConnectorError> {
        // One page only; still refuse a cursor this connector never issued.
        if let Some(cursor) = &page.cursor {
            Cursor::decode::<After>(cursor)?;
        }
        let registry = Registry::new(&self.registry, &self.base);
        Ok(RegistryPage::new(vec![registry], None))
    }

    fn list_repositories(
        &self,
        registry: &str,
        page: PageRequest,
    ) -> Result<RepositoryPage, ConnectorError> {
        self.check_registry(registry)?;
        let limit = page.limit(MAX_PAGE);
        let mut path = format!("/api/repositories?limit={limit}");
        if let Some(state) = page.state::<After>()? {
            path = format!("{path}&after={}", encode_component(&state.after));
        }
        let list: RepositoryList = self.get(&path)?;
        let next = match list.repositories.last() {
            Some(name) if list.more => Some(Cursor::encode(&After {
                after: name.clone(),
            })),
            _ => None,
        };
        let names = list.repositories.iter().take(limit as usize);
        let items = names
            .map(|name| Repository::new(&self.registry, name))
            .collect();
        Ok(RepositoryPage::new(items, next))
    }

    fn list_images(
        &self,
        registry: &str,
        repository: &str,
        page: PageRequest,
    ) -> Result<ImagePage, ConnectorError> {
        self.check_registry(registry)?;
        // The API answers the whole list; serve it in pages of `max-items`, offset in the cursor.
        let path = format!("/api/repositories/{}/images", encode_component(repository));
        let list: ImageList = self.get(&path)?;
        let (entries, next) = offset_page(&list.images, &page, MAX_PAGE)?;
        let items = entries
            .into_iter()
            .map(|e| Image::new(ImageRef::new(&self.registry, repository, &e.digest), e.tags));
        Ok(ImagePage::new(items.collect(), next))
    }
}

keelson_plugin_sdk::export_connector!(Template);
