//! One connection to a registry: authentication state and token cache, requests, and the
//! paged listings. Paging state lives in opaque cursors; the session only caches what it read
//! (tokens, a repository's images, the findings feed) so asking for a page again is cheap.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use keelson_plugin_sdk::http::{Client, RequestBuilder, Response, display_url};
use keelson_plugin_sdk::pager::{self, Cursor, Trail};
use keelson_plugin_sdk::{
    Account, ConnectorError, Finding, FindingPage, Image, ImagePage, PageRequest, Registry,
    RegistryPage, Repository, RepositoryPage, ScanScope, Secret, Session, Setting,
};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use crate::auth::{self, Challenge};
use crate::config::{Config, valid_repository};
use crate::distribution::{
    self, ACCEPT, Catalog, Fetched, ImageConfig, Inventory, TagList, valid_digest,
};
use crate::findings;

/// The largest page asked of the registry; `n` above what it allows is capped by the registry.
const MAX_PAGE: u32 = 1000;
/// Tag-list pages followed for one repository before giving up.
const MAX_TAG_PAGES: usize = 1000;
/// The catalog scope of a bearer token.
const CATALOG_SCOPE: &str = "registry:catalog:*";

/// How requests are authorised, as the registry's challenge said.
#[derive(Debug, Clone, PartialEq, Eq)]
enum AuthMode {
    /// Not asked yet, or the registry did not challenge.
    Anonymous,
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

pub(crate) struct OciSession {
    config: Config,
    client: Client,
    mode: RefCell<AuthMode>,
    /// Bearer tokens by scope.
    /// Sealed bearer tokens by scope.
    tokens: RefCell<HashMap<String, Secret>>,
    /// Each repository's images, built on its first page.
    images: RefCell<HashMap<String, Rc<Vec<Image>>>>,
    findings: RefCell<Option<Rc<Vec<Finding>>>>,
}

/// The cursor of a `Link`-paged listing: the next link and how many of its items were already
/// returned (a page larger than `max-items` is served in parts).
#[derive(Debug, Serialize, Deserialize)]
struct LinkCursor {
    l: String,
    s: usize,
    t: Trail,
}

/// The cursor of a listing the session holds whole: an offset into it.
#[derive(Debug, Serialize, Deserialize)]
struct OffsetCursor {
    o: usize,
}

/// The only page of `list-registries`; a cursor is still decoded so a forged one is refused.
#[derive(Debug, Serialize, Deserialize)]
struct NoCursor {}

impl OciSession {
    pub(crate) fn new(config: Config, client: Client) -> Self {
        Self {
            config,
            client,
            mode: RefCell::new(AuthMode::Anonymous),
            tokens: RefCell::new(HashMap::new()),
            images: RefCell::new(HashMap::new()),
            findings: RefCell::new(None),
        }
    }

    /// Adds the authorization the registry asked for: the sealed password (basic) or the
    /// scope's sealed token (bearer).
    fn authorize(&self, request: RequestBuilder, scope: &str) -> RequestBuilder {
        match &*self.mode.borrow() {
            AuthMode::Anonymous => request,
            AuthMode::Basic => match &self.config.credentials {
                Some((user, password)) => request.basic(user, password),
                None => request,
            },
            AuthMode::Bearer { .. } => match self.tokens.borrow().get(scope) {
                Some(token) => request.bearer(token),
                None => request,
            },
        }
    }

    fn send_once(&self, path: &str, scope: &str, accept: &str) -> Result<Response, ConnectorError> {
        let url = format!("{}{path}", self.config.base);
        let mut request = self.client.get(&url);
        if !accept.is_empty() {
            request = request.header("Accept", accept);
        }
        self.authorize(request, scope).send()
    }

    /// GETs `path` on the registry, answering one `401` challenge (Basic or Bearer for
    /// `scope`) and sending again; other statuses are mapped to typed errors.
    fn get(&self, path: &str, scope: &str, accept: &str) -> Result<Response, ConnectorError> {
        let response = self.send_once(path, scope, accept)?;
        if response.status != 401 {
            return response.error_for_status();
        }
        let challenge = response
            .header("www-authenticate")
            .and_then(auth::parse_challenge);
        let retry = match challenge {
            Some(Challenge::Basic) => {
                let was = self.mode.replace(AuthMode::Basic);
                if self.config.credentials.is_none() {
                    return Err(self.needs_credentials());
                }
                was != AuthMode::Basic
            }
            Some(Challenge::Bearer {
                realm,
                service,
                scope: asked,
            }) => {
                let scope_for_token = if scope.is_empty() {
                    asked.unwrap_or_default()
                } else {
                    scope.to_owned()
                };
                let token = self.fetch_token(&realm, service.as_deref(), &scope_for_token)?;
                self.tokens.borrow_mut().insert(scope.to_owned(), token);
                self.mode.replace(AuthMode::Bearer { realm, service });
                true
            }
            None => false,
        };
        if !retry {
            return response.error_for_status();
        }
        self.send_once(path, scope, accept)?.error_for_status()
    }

    fn needs_credentials(&self) -> ConnectorError {
        ConnectorError::InvalidCredentials(format!(
            "`{}` requires credentials; set `username` and `password`",
            self.config.base
        ))
    }

    fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: &str,
    ) -> Result<Secret, ConnectorError> {
        if !realm.starts_with("https://") && !realm.starts_with("http://") {
            return Err(ConnectorError::Unavailable(format!(
                "the registry's token realm `{}` is not an absolute URL",
                display_url(realm)
            )));
        }
        let url = auth::token_url(realm, service, Some(scope));
        // The token goes to the registry only, whatever host issued it.
        let mut request = self
            .client
            .get(&url)
            .capture("token", &[&self.config.base])
            .capture("access_token", &[&self.config.base]);
        if let Some((user, password)) = &self.config.credentials {
            request = request.basic(user, password);
        }
        let response = request.send()?;
        if response.status == 401 {
            return Err(ConnectorError::InvalidCredentials(format!(
                "the token service `{}` rejected the credentials (HTTP 401)",
                display_url(realm)
            )));
        }
        let response = response.error_for_status()?;
        // The body must still be JSON; `token` is the distribution spelling, `access_token`
        // OAuth2's.
        let _: serde_json::Value = response.json()?;
        response
            .captured("token")
            .or_else(|_| response.captured("access_token"))
            .map_err(|_| {
                ConnectorError::Unavailable(format!(
                    "the token service `{}` answered without a token",
                    display_url(realm)
                ))
            })
    }

    fn check_registry(&self, registry: &str) -> Result<(), ConnectorError> {
        if registry.eq_ignore_ascii_case(&self.config.login_server) {
            Ok(())
        } else {
            Err(ConnectorError::NotFound(format!(
                "registry `{registry}` is not this connection's (`{}`)",
                self.config.login_server
            )))
        }
    }

    fn check_repository(repository: &str) -> Result<(), ConnectorError> {
        if valid_repository(repository) {
            Ok(())
        } else {
            Err(ConnectorError::NotFound(format!(
                "`{repository}` is not a repository name"
            )))
        }
    }

    /// One page of a `Link`-paged list whose items `extract` reads from a response.
    fn link_page(
        &self,
        page: &PageRequest,
        first: String,
        scope: &str,
        what: &str,
        extract: impl Fn(&Response) -> Result<Vec<String>, ConnectorError>,
    ) -> Result<(Vec<String>, Option<String>), ConnectorError> {
        let max = page.limit(MAX_PAGE) as usize;
        let mut state = if let Some(state) = page.state::<LinkCursor>()? {
            // A cursor names a path on this registry, never anything else.
            distribution::link_path(&self.config.base, &state.l).map_err(|_| {
                ConnectorError::Other(format!(
                    "the cursor of {what} does not point at this registry; start the listing again"
                ))
            })?;
            state
        } else {
            let mut t = Trail::new();
            t.visit(&first, what)?;
            LinkCursor { l: first, s: 0, t }
        };
        let response = self.get(&state.l, scope, "")?;
        let items = extract(&response)?;
        let link = response.header("link").and_then(distribution::next_link);
        if state.s > items.len() {
            return Err(ConnectorError::Other(format!(
                "the cursor of {what} is past the end of its page; start the listing again"
            )));
        }
        let rest = &items[state.s..];
        if rest.len() > max {
            let out = rest[..max].to_vec();
            state.s += max;
            return Ok((out, Some(Cursor::encode(&state))));
        }
        let out = rest.to_vec();
        // A foreign or repeating link ends the listing incomplete; the page in hand is kept.
        let next = link.map(
            |target| match distribution::link_path(&self.config.base, &target) {
                Ok(path) => state.t.follow(path, what, |l, t| LinkCursor { l, s: 0, t }),
                Err(error) => pager::deferred(error.message().unwrap_or("a bad `Link` header")),
            },
        );
        Ok((out, next))
    }

    /// Every tag of `repository`, following `Link` pages.
    fn all_tags(&self, repository: &str) -> Result<Vec<String>, ConnectorError> {
        let scope = format!("repository:{repository}:pull");
        let mut path = format!("/v2/{repository}/tags/list?n={MAX_PAGE}");
        let mut trail = Trail::new();
        let mut tags = Vec::new();
        for _ in 0..MAX_TAG_PAGES {
            trail.visit(&path, &format!("the tags of `{repository}`"))?;
            let response = self.get(&path, &scope, "")?;
            let list: TagList = response.json()?;
            tags.extend(list.tags.unwrap_or_default());
            match response.header("link").and_then(distribution::next_link) {
                None => return Ok(tags),
                Some(target) => path = distribution::link_path(&self.config.base, &target)?,
            }
        }
        Err(ConnectorError::Unavailable(format!(
            "the tags of `{repository}` did not end after {MAX_TAG_PAGES} pages"
        )))
    }

    fn fetch_manifest(&self, repository: &str, reference: &str) -> Result<Fetched, ConnectorError> {
        let scope = format!("repository:{repository}:pull");
        let response = self.get(
            &format!(
                "/v2/{repository}/manifests/{}",
                keelson_plugin_sdk::http::encode_component(reference)
            ),
            &scope,
            ACCEPT,
        )?;
        let computed = format!("sha256:{:x}", sha2::Sha256::digest(&response.body));
        let digest = match response.header("docker-content-digest") {
            Some(d) if valid_digest(d.trim()) => d.trim().to_owned(),
            _ => computed,
        };
        Ok(Fetched {
            digest,
            content_type: response
                .header("content-type")
                .map(|c| c.split(';').next().unwrap_or(c).trim().to_owned()),
            body: response.body,
        })
    }

    /// Builds the images of `repository`: every tag's manifest, the platform manifests of
    /// indexes, and each single image's config for its platform.
    fn build_images(&self, repository: &str) -> Result<Vec<Image>, ConnectorError> {
        let scope = format!("repository:{repository}:pull");
        let mut inventory = Inventory::new(&self.config.login_server, repository);
        let mut configs = Vec::new();
        for tag in self.all_tags(repository)? {
            let fetched = self.fetch_manifest(repository, &tag)?;
            if inventory.tag(&fetched.digest, &tag) {
                let parsed =
                    distribution::parse_manifest(&fetched, &format!("`{repository}:{tag}`"))?;
                if let Some(config) = inventory.manifest(&fetched.digest, parsed) {
                    configs.push((fetched.digest.clone(), config));
                }
            }
        }
        for (digest, config) in configs {
            if !valid_digest(&config) {
                continue;
            }
            let response = self.get(&format!("/v2/{repository}/blobs/{config}"), &scope, "")?;
            // A config that is not an image config (an artifact) has no platform to read.
            if let Ok(parsed) = serde_json::from_slice::<ImageConfig>(&response.body)
                && let Some(image) = inventory.image_mut(&digest)
            {
                distribution::apply_config(image, &parsed);
            }
        }
        Ok(inventory.into_images())
    }

    fn images_of(&self, repository: &str) -> Result<Rc<Vec<Image>>, ConnectorError> {
        if let Some(images) = self.images.borrow().get(repository) {
            return Ok(images.clone());
        }
        let images = Rc::new(self.build_images(repository)?);
        self.images
            .borrow_mut()
            .insert(repository.to_owned(), images.clone());
        Ok(images)
    }

    fn findings(&self) -> Result<Rc<Vec<Finding>>, ConnectorError> {
        if let Some(f) = &*self.findings.borrow() {
            return Ok(f.clone());
        }
        let list = match &self.config.findings_url {
            None => Vec::new(),
            Some(url) => {
                let response = self.client.get(url).send()?.error_for_status()?;
                findings::parse_feed(&response.body, &self.config.login_server)?
            }
        };
        let list = Rc::new(list);
        *self.findings.borrow_mut() = Some(list.clone());
        Ok(list)
    }
}

/// Serves `items[offset..]` in pages of `max-items`, with the offset in the cursor.
fn offset_page<T: Clone>(
    items: &[T],
    page: &PageRequest,
    what: &str,
) -> Result<(Vec<T>, Option<String>), ConnectorError> {
    let offset = page.state::<OffsetCursor>()?.map_or(0, |c| c.o);
    if offset > items.len() {
        return Err(ConnectorError::Other(format!(
            "the cursor of {what} is past the end of the listing; start it again"
        )));
    }
    let end = items.len().min(offset + page.limit(MAX_PAGE) as usize);
    let next = (end < items.len()).then(|| Cursor::encode(&OffsetCursor { o: end }));
    Ok((items[offset..end].to_vec(), next))
}

impl Session for OciSession {
    fn verify(&self) -> Result<Account, ConnectorError> {
        let response = self.get("/v2/", "", "")?;
        let api = response
            .header("docker-distribution-api-version")
            .unwrap_or("unknown")
            .to_owned();
        let mut details = vec![Setting {
            key: "api_version".to_owned(),
            value: api,
        }];
        let mode = match &*self.mode.borrow() {
            AuthMode::Anonymous => "anonymous",
            AuthMode::Basic => "basic",
            AuthMode::Bearer { .. } => "token",
        };
        details.push(Setting {
            key: "auth".to_owned(),
            value: mode.to_owned(),
        });
        // The catalog is what a scan reads first; prove it can be read.
        if self.config.repositories.is_none() {
            self.get("/v2/_catalog?n=1", CATALOG_SCOPE, "")?;
            details.push(Setting {
                key: "catalog".to_owned(),
                value: "readable".to_owned(),
            });
        }
        Ok(Account {
            id: self.config.login_server.clone(),
            display_name: self.config.login_server.clone(),
            details,
        })
    }

    fn list_registries(&self, page: PageRequest) -> Result<RegistryPage, ConnectorError> {
        page.state::<NoCursor>()?;
        if page.cursor.is_some() {
            return Err(ConnectorError::Other(
                "the registry listing has one page; start it again".to_owned(),
            ));
        }
        Ok(RegistryPage {
            items: vec![Registry {
                name: self.config.login_server.clone(),
                source_id: self.config.base.clone(),
                display_name: self.config.login_server.clone(),
                location: None,
                tier: None,
                public_network_access: None,
                attributes: Vec::new(),
            }],
            next: None,
            gaps: Vec::new(),
        })
    }

    fn list_repositories(
        &self,
        registry: &str,
        page: PageRequest,
    ) -> Result<RepositoryPage, ConnectorError> {
        self.check_registry(registry)?;
        let (names, next) = if let Some(fixed) = &self.config.repositories {
            offset_page(fixed, &page, "the repositories")?
        } else {
            let first = format!("/v2/_catalog?n={}", page.limit(MAX_PAGE));
            self.link_page(&page, first, CATALOG_SCOPE, "the catalog", |r| {
                Ok(r.json::<Catalog>()?.repositories)
            })?
        };
        Ok(RepositoryPage {
            items: names
                .into_iter()
                .map(|name| Repository {
                    registry: self.config.login_server.clone(),
                    name,
                    updated_at: None,
                })
                .collect(),
            next,
            gaps: Vec::new(),
        })
    }

    fn list_images(
        &self,
        registry: &str,
        repository: &str,
        page: PageRequest,
    ) -> Result<ImagePage, ConnectorError> {
        self.check_registry(registry)?;
        Self::check_repository(repository)?;
        // Check the cursor before any request, so a forged one costs nothing.
        page.state::<OffsetCursor>()?;
        let images = self.images_of(repository)?;
        let (items, next) = offset_page(&images, &page, &format!("the images of `{repository}`"))?;
        Ok(ImagePage::new(items, next))
    }

    fn list_findings(
        &self,
        scope: &ScanScope,
        page: PageRequest,
    ) -> Result<FindingPage, ConnectorError> {
        page.state::<OffsetCursor>()?;
        let all = self.findings()?;
        let selected: Vec<Finding> = if scope.registries.is_empty() {
            all.to_vec()
        } else {
            all.iter()
                .filter(|f| {
                    scope
                        .registries
                        .iter()
                        .any(|r| r.eq_ignore_ascii_case(&f.image.registry))
                })
                .cloned()
                .collect()
        };
        let (items, next) = offset_page(&selected, &page, "the findings")?;
        Ok(FindingPage::new(items, next))
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use keelson_plugin_sdk::Settings;
    use keelson_plugin_sdk::http::{Header, HttpError, RawResponse, Request};

    use super::*;

    fn header(name: &str, value: &str) -> Header {
        Header {
            name: name.to_owned(),
            value: value.to_owned(),
        }
    }

    fn has(req: &Request, name: &str, value: &str) -> bool {
        req.headers
            .iter()
            .any(|h| h.name.eq_ignore_ascii_case(name) && h.value == value)
    }

    fn session(
        pairs: &[(&str, &str)],
        answer: impl Fn(&Request) -> Result<RawResponse, HttpError> + 'static,
    ) -> OciSession {
        let config = Config::from_settings(&Settings::from_pairs(pairs)).unwrap();
        OciSession::new(config, Client::with_transport(answer))
    }

    #[allow(clippy::unnecessary_wraps, reason = "the transport closures return it")]
    fn ok(body: &str, headers: Vec<Header>) -> Result<RawResponse, HttpError> {
        Ok(RawResponse {
            status: 200,
            headers,
            body: body.as_bytes().to_vec(),
        })
    }

    #[test]
    fn bearer_challenge_fetches_a_token_for_the_scope_with_basic_credentials() {
        let token_calls = Rc::new(Cell::new(0));
        let calls = token_calls.clone();
        let s = session(
            &[
                ("url", "https://reg.example"),
                ("username", "robot"),
                ("password", "s3cret"),
            ],
            move |req| {
                if req.url.starts_with("https://auth.example/token") {
                    calls.set(calls.get() + 1);
                    assert!(
                        req.url.contains("scope=registry%3Acatalog%3A%2A"),
                        "{}",
                        req.url
                    );
                    assert!(has(
                        req,
                        "authorization",
                        &auth::basic_header("robot", "s3cret")
                    ));
                    return ok(r#"{"token":"tok-1"}"#, vec![]);
                }
                if has(req, "authorization", "Bearer tok-1") {
                    return ok(r#"{"repositories":["a","b"]}"#, vec![]);
                }
                Ok(RawResponse {
                    status: 401,
                    headers: vec![header(
                        "WWW-Authenticate",
                        r#"Bearer realm="https://auth.example/token",service="reg.example",scope="registry:catalog:*""#,
                    )],
                    body: Vec::new(),
                })
            },
        );
        let page = s
            .list_repositories(
                "reg.example",
                PageRequest {
                    cursor: None,
                    max_items: 10,
                },
            )
            .unwrap();
        assert_eq!(page.items.len(), 2);
        // The token is cached for the scope.
        s.list_repositories(
            "reg.example",
            PageRequest {
                cursor: None,
                max_items: 10,
            },
        )
        .unwrap();
        assert_eq!(token_calls.get(), 1);
    }

    #[test]
    fn basic_challenge_without_credentials_is_invalid_credentials() {
        let s = session(&[("url", "https://reg.example")], |_| {
            Ok(RawResponse {
                status: 401,
                headers: vec![header("WWW-Authenticate", r#"Basic realm="r""#)],
                body: Vec::new(),
            })
        });
        let err = s.verify().unwrap_err();
        assert_eq!(err.kind(), "invalid-credentials");
        assert!(err.message().unwrap().contains("`username`"));
    }

    #[test]
    fn catalog_pages_follow_link_and_split_oversized_pages() {
        let s = session(&[("url", "https://reg.example")], |req| {
            if req.url.contains("last=c") {
                ok(r#"{"repositories":["d"]}"#, vec![])
            } else {
                // A registry that ignores `n` and sends three items with a next link.
                ok(
                    r#"{"repositories":["a","b","c"]}"#,
                    vec![header("Link", r#"</v2/_catalog?last=c&n=2>; rel="next""#)],
                )
            }
        });
        let mut names = Vec::new();
        let mut cursor = None;
        let mut pages = 0;
        loop {
            let page = s
                .list_repositories(
                    "reg.example",
                    PageRequest {
                        cursor,
                        max_items: 2,
                    },
                )
                .unwrap();
            assert!(page.items.len() <= 2);
            names.extend(page.items.into_iter().map(|r| r.name));
            pages += 1;
            cursor = page.next;
            if cursor.is_none() {
                break;
            }
        }
        assert_eq!(names, ["a", "b", "c", "d"]);
        assert_eq!(pages, 3);
    }

    #[test]
    fn a_catalog_that_loops_keeps_its_pages_and_ends_unavailable() {
        let s = session(&[("url", "https://reg.example")], |req| {
            if req.url.contains("last=a") {
                // The second page links back to the first.
                ok(
                    r#"{"repositories":["b"]}"#,
                    vec![header("Link", r#"</v2/_catalog?n=100>; rel="next""#)],
                )
            } else {
                ok(
                    r#"{"repositories":["a"]}"#,
                    vec![header("Link", r#"</v2/_catalog?last=a&n=100>; rel="next""#)],
                )
            }
        });
        let request = |cursor| PageRequest {
            cursor,
            max_items: 100,
        };
        let first = s.list_repositories("reg.example", request(None)).unwrap();
        let second = s
            .list_repositories("reg.example", request(first.next))
            .unwrap();
        assert_eq!(second.items[0].name, "b", "the page that looped is kept");
        let err = s
            .list_repositories("reg.example", request(second.next))
            .unwrap_err();
        assert_eq!(err.kind(), "unavailable");
        assert!(err.message().unwrap().contains("loop"), "{err:?}");
    }

    #[test]
    fn forged_cursors_and_foreign_registries_are_typed_errors() {
        let s = session(&[("url", "https://reg.example")], |_| ok("{}", vec![]));
        let forged = Cursor::encode(&LinkCursor {
            l: "https://evil.example/v2/_catalog".into(),
            s: 0,
            t: Trail::new(),
        });
        let err = s
            .list_repositories(
                "reg.example",
                PageRequest {
                    cursor: Some(forged),
                    max_items: 2,
                },
            )
            .unwrap_err();
        assert_eq!(err.kind(), "other");
        let err = s
            .list_repositories(
                "other.example",
                PageRequest {
                    cursor: None,
                    max_items: 2,
                },
            )
            .unwrap_err();
        assert_eq!(err.kind(), "not-found");
        let err = s
            .list_registries(PageRequest {
                cursor: Some("x".into()),
                max_items: 2,
            })
            .unwrap_err();
        assert_eq!(err.kind(), "other");
        let err = s
            .list_images(
                "reg.example",
                "../x",
                PageRequest {
                    cursor: None,
                    max_items: 2,
                },
            )
            .unwrap_err();
        assert_eq!(err.kind(), "not-found");
    }

    #[test]
    fn scanning_reports_nothing_without_a_findings_feed() {
        let s = session(&[("url", "https://reg.example")], |_| {
            panic!("no request expected")
        });
        let page = s
            .list_findings(
                &ScanScope { registries: vec![] },
                PageRequest {
                    cursor: None,
                    max_items: 5,
                },
            )
            .unwrap();
        assert!(page.items.is_empty() && page.next.is_none());
    }
}
