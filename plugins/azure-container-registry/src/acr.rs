//! The registry data plane: listing URLs and scopes, `Link` paging, and the catalog and
//! manifest listings.

use keelson_plugin_sdk::http::{Response, display_url, encode_component};
use keelson_plugin_sdk::{ConnectorError, Image, ImageRef, Platform, Repository};
use serde_json::Value;

use crate::error::Error;
use crate::lenient;

/// The largest page the listings are asked for. ACR honours `n` up to its own limit and pages
/// the rest with `Link`, so asking for more than it gives costs nothing.
pub(crate) const MAX_PAGE: u32 = 1000;

/// The token scope of the catalog.
pub(crate) const CATALOG_SCOPE: &str = "registry:catalog:*";

/// The token scope of a repository's metadata (tags and manifests listings).
pub(crate) fn metadata_scope(repository: &str) -> String {
    format!("repository:{repository}:metadata_read")
}

/// Checks that `registry` is a login server (`host[:port]`) before it goes into a URL.
pub(crate) fn check_login_server(registry: &str) -> Result<String, ConnectorError> {
    let (host, port) = match registry.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (registry, None),
    };
    let host_ok = !host.is_empty()
        && host.contains('.')
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        && !host.starts_with(['.', '-']);
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|n| n > 0));
    if host_ok && port_ok {
        Ok(registry.to_ascii_lowercase())
    } else {
        Err(Error::NotALoginServer(registry.to_owned()).into())
    }
}

/// Checks a repository name before it goes into a URL: `/`-separated components of
/// `[a-z0-9._-]` that start and end alphanumeric, as OCI registries allow.
pub(crate) fn check_repository(repository: &str) -> Result<(), ConnectorError> {
    let ok = !repository.is_empty()
        && repository.split('/').all(|part| {
            let alphanumeric = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
            part.starts_with(alphanumeric)
                && part.ends_with(alphanumeric)
                && part
                    .chars()
                    .all(|c| alphanumeric(c) || matches!(c, '.' | '_' | '-'))
        });
    if ok {
        Ok(())
    } else {
        Err(ConnectorError::NotFound(format!(
            "`{repository}` is not a repository name"
        )))
    }
}

/// Path and query of the first catalog page.
pub(crate) fn catalog_path(n: u32) -> String {
    format!("/acr/v1/_catalog?n={n}")
}

/// Path and query of the first manifests page of `repository` (its `/` encoded as `%2F`).
pub(crate) fn manifests_path(repository: &str, n: u32) -> String {
    format!("/acr/v1/{}/_manifests?n={n}", encode_component(repository))
}

/// Sets `n` in a path-and-query, so a followed `Link` asks for the current page size.
pub(crate) fn with_page_size(path: &str, n: u32) -> String {
    let (base, query) = path.split_once('?').unwrap_or((path, ""));
    let mut params: Vec<String> = query
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("n=") && *p != "n")
        .map(str::to_owned)
        .collect();
    params.push(format!("n={n}"));
    format!("{base}?{}", params.join("&"))
}

/// The `rel="next"` target of a `Link` header, as a path and query on `registry`. An absolute
/// target on another host is refused: the registry token would go with it.
pub(crate) fn next_link(
    response: &Response,
    registry: &str,
) -> Result<Option<String>, ConnectorError> {
    for header in response.header_all("link") {
        for part in split_link_header(header) {
            let Some((target, params)) = part
                .trim()
                .strip_prefix('<')
                .and_then(|p| p.split_once('>'))
            else {
                continue;
            };
            let is_next = params.split(';').any(|param| {
                let param = param.trim();
                param.strip_prefix("rel=").is_some_and(|rel| {
                    rel.trim_matches('"')
                        .split_whitespace()
                        .any(|r| r.eq_ignore_ascii_case("next"))
                })
            });
            if !is_next {
                continue;
            }
            return relative_to(target, registry).map(Some);
        }
    }
    Ok(None)
}

/// Splits a `Link` header into its links (commas inside `<…>` do not split).
fn split_link_header(header: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in header.char_indices() {
        match c {
            '<' => depth += 1,
            '>' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&header[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&header[start..]);
    parts
}

fn relative_to(target: &str, registry: &str) -> Result<String, ConnectorError> {
    if target.starts_with('/') && !target.starts_with("//") {
        return Ok(target.to_owned());
    }
    let origin = format!("https://{registry}");
    match target.strip_prefix(&origin) {
        Some(rest) if rest.starts_with('/') => Ok(rest.to_owned()),
        _ => Err(Error::ForeignLink {
            what: "the registry's `Link` header",
            link: display_url(target),
            expected: origin,
        }
        .into()),
    }
}

/// Parses a catalog page (`{"repositories": [...] | null}`).
pub(crate) fn parse_catalog(
    response: &Response,
    registry: &str,
) -> Result<Vec<Repository>, ConnectorError> {
    let body = lenient::normalize(response.json::<Value>()?);
    match lenient::at(&body, &["repositories"]) {
        None | Some(Value::Array(_)) => {}
        Some(_) => {
            return Err(Error::Malformed {
                what: format!("`{}`", display_url(response.url())),
                detail: "`repositories` is not a list".into(),
            }
            .into());
        }
    }
    Ok(lenient::texts(&body, &["repositories"])
        .into_iter()
        .map(|name| Repository {
            registry: registry.to_owned(),
            name,
            updated_at: None,
        })
        .collect())
}

/// Parses a manifests page into images.
pub(crate) fn parse_manifests(
    response: &Response,
    registry: &str,
    repository: &str,
) -> Result<Vec<Image>, ConnectorError> {
    let body = lenient::normalize(response.json::<Value>()?);
    let mut images = Vec::new();
    for manifest in lenient::items(&body, &["manifests"]) {
        let Some(digest) = lenient::text(manifest, &["digest"]) else {
            continue;
        };
        let media_type = lenient::text(manifest, &["mediatype"]);
        let children: Vec<String> = lenient::items(manifest, &["references"])
            .iter()
            .filter_map(|r| lenient::text(r, &["digest"]))
            .collect();
        let is_index = !children.is_empty()
            || media_type
                .as_deref()
                .is_some_and(|m| m.contains("index") || m.contains("manifest.list"));
        let platform = match (
            lenient::text(manifest, &["os"]),
            lenient::text(manifest, &["architecture"]),
        ) {
            (Some(os), Some(architecture)) if !is_index => Some(Platform {
                os,
                architecture,
                variant: lenient::text(manifest, &["variant"]),
            }),
            _ => None,
        };
        images.push(Image {
            image_ref: ImageRef {
                registry: registry.to_owned(),
                repository: repository.to_owned(),
                digest: digest.to_ascii_lowercase(),
            },
            tags: lenient::texts(manifest, &["tags"]),
            media_type,
            platform,
            children,
            size_bytes: lenient::unsigned(manifest, &["imagesize"]),
            created_at: lenient::text(manifest, &["createdtime"]),
            updated_at: lenient::text(manifest, &["lastupdatetime"]),
        });
    }
    Ok(images)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::testdata;

    /// A recorded response (Azure SDK test-proxy format) as a [`Response`].
    fn recorded(entry: &Value) -> Response {
        let headers: Vec<(String, String)> = entry["ResponseHeaders"]
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(name, value)| match value {
                Value::Array(values) => values
                    .iter()
                    .map(|v| (name.clone(), v.as_str().unwrap().to_owned()))
                    .collect::<Vec<_>>(),
                v => vec![(name.clone(), v.as_str().unwrap().to_owned())],
            })
            .collect();
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        Response::new(
            entry["RequestUri"].as_str().unwrap(),
            entry["StatusCode"].as_u64().unwrap() as u16,
            &headers,
            entry["ResponseBody"].to_string().as_bytes(),
        )
    }

    #[test]
    fn catalog_recording_pages_with_link() {
        let recording = testdata::sample("acr-recording-list-repositories-by-pages.json");
        let first = recorded(&recording["Entries"][3]);
        assert_eq!(
            parse_catalog(&first, "myregistry.azurecr.io").unwrap(),
            vec![Repository {
                registry: "myregistry.azurecr.io".into(),
                name: "library/busybox".into(),
                updated_at: None
            }]
        );
        assert_eq!(
            next_link(&first, "myregistry.azurecr.io")
                .unwrap()
                .as_deref(),
            Some("/acr/v1/_catalog?last=library%2Fbusybox&n=1&orderby=")
        );
        let last = recorded(&recording["Entries"][4]);
        assert_eq!(
            parse_catalog(&last, "myregistry.azurecr.io").unwrap()[0].name,
            "library/hello-world"
        );
        assert_eq!(next_link(&last, "myregistry.azurecr.io").unwrap(), None);
    }

    #[test]
    fn manifests_recording_parses_images_and_link() {
        let recording = testdata::sample("acr-recording-list-manifests-by-pages.json");
        let page = recorded(&recording["Entries"][3]);
        let images =
            parse_manifests(&page, "myregistry.azurecr.io", "library/hello-world").unwrap();
        assert_eq!(images.len(), 1);
        let image = &images[0];
        assert_eq!(
            image.image_ref.digest,
            "sha256:40d0cfd0861719208ff9f7747ab3f97844eeca509df705db44a736df863b76af"
        );
        assert_eq!(image.size_bytes, Some(5001));
        assert_eq!(
            image.platform,
            Some(Platform {
                os: "linux".into(),
                architecture: "arm".into(),
                variant: None
            })
        );
        assert_eq!(
            image.media_type.as_deref(),
            Some("application/vnd.docker.distribution.manifest.v2+json")
        );
        assert_eq!(
            image.created_at.as_deref(),
            Some("2023-02-28T18:36:40.5864993Z")
        );
        assert!(image.tags.is_empty());
        assert_eq!(
            next_link(&page, "myregistry.azurecr.io")
                .unwrap()
                .as_deref(),
            Some(
                "/acr/v1/library%2Fhello-world/_manifests?last=sha256%3A40d0cfd0861719208ff9f7747ab3f97844eeca509df705db44a736df863b76af&n=1&orderby="
            )
        );
    }

    #[test]
    fn manifest_list_sample_parses_tags_and_sizes() {
        let sample = testdata::sample("acr-dataplane-GetManifestList-2021-07-01.json");
        let body = &sample["responses"]["200"]["body"];
        let response = Response::new(
            "https://r/acr/v1/nanoserver/_manifests",
            200,
            &[],
            body.to_string().as_bytes(),
        );
        let images = parse_manifests(&response, "acrapi.azurecr-test.io", "nanoserver").unwrap();
        assert_eq!(images.len(), 2);
        assert_eq!(
            images[0].tags,
            vec!["4.7.2-20180905-nanoserver-1803".to_owned()]
        );
        assert_eq!(images[1].size_bytes, Some(4_135_121));
        assert_eq!(images[1].platform.as_ref().unwrap().os, "windows");
    }

    #[test]
    fn indexes_list_children_and_no_platform() {
        let body = json!({"manifests": [{
            "digest": "sha256:AA", "mediaType": "application/vnd.oci.image.index.v1+json",
            "architecture": null, "os": null, "tags": ["v1"],
            "references": [{"digest": "sha256:b1", "architecture": "amd64", "os": "linux"},
                           {"digest": "sha256:b2", "architecture": "arm64", "os": "linux"}]
        }, {"imageSize": 3}]});
        let response = Response::new("https://r/x", 200, &[], body.to_string().as_bytes());
        let images = parse_manifests(&response, "r.azurecr.io", "app").unwrap();
        assert_eq!(images.len(), 1, "a manifest without digest is skipped");
        assert_eq!(images[0].image_ref.digest, "sha256:aa");
        assert_eq!(images[0].platform, None);
        assert_eq!(
            images[0].children,
            vec!["sha256:b1".to_owned(), "sha256:b2".to_owned()]
        );
    }

    #[test]
    fn empty_registry_catalog_is_null() {
        let response = Response::new(
            "https://r/acr/v1/_catalog",
            200,
            &[],
            br#"{"repositories":null}"#,
        );
        assert!(parse_catalog(&response, "r.azurecr.io").unwrap().is_empty());
        let sample = testdata::sample("acr-dataplane-GetRepositoryList-2021-07-01.json");
        let response = Response::new(
            "https://r/acr/v1/_catalog",
            200,
            &[],
            sample["responses"]["200"]["body"].to_string().as_bytes(),
        );
        assert_eq!(parse_catalog(&response, "r.azurecr.io").unwrap().len(), 2);
        let bad = Response::new(
            "https://r/acr/v1/_catalog",
            200,
            &[],
            br#"{"repositories":"x"}"#,
        );
        assert_eq!(
            parse_catalog(&bad, "r.azurecr.io").unwrap_err().kind(),
            "unavailable"
        );
    }

    #[test]
    fn link_parsing_handles_absolute_foreign_and_other_rels() {
        let r = |link: &str| Response::new("https://r.azurecr.io/x", 200, &[("Link", link)], b"");
        assert_eq!(
            next_link(
                &r("<https://r.azurecr.io/v2/_catalog?last=a&n=2>; rel=\"next\""),
                "r.azurecr.io"
            )
            .unwrap()
            .as_deref(),
            Some("/v2/_catalog?last=a&n=2")
        );
        assert_eq!(
            next_link(
                &r("</a?x=1,2>; rel=\"prev\", </b?last=c>; rel=next"),
                "r.azurecr.io"
            )
            .unwrap()
            .as_deref(),
            Some("/b?last=c")
        );
        let err = next_link(
            &r("<https://evil.example/v2/_catalog?last=a>; rel=\"next\""),
            "r.azurecr.io",
        )
        .unwrap_err();
        assert_eq!(err.kind(), "unavailable");
        assert!(next_link(&r("<//evil.example/x>; rel=\"next\""), "r.azurecr.io").is_err());
        assert_eq!(next_link(&r("garbage"), "r.azurecr.io").unwrap(), None);
    }

    #[test]
    fn paths_encode_repositories_and_page_sizes() {
        assert_eq!(catalog_path(1000), "/acr/v1/_catalog?n=1000");
        assert_eq!(
            manifests_path("team/app", 50),
            "/acr/v1/team%2Fapp/_manifests?n=50"
        );
        assert_eq!(
            with_page_size("/acr/v1/_catalog?last=a%2Fb&n=1&orderby=", 100),
            "/acr/v1/_catalog?last=a%2Fb&orderby=&n=100"
        );
        assert_eq!(with_page_size("/x", 5), "/x?n=5");
        assert_eq!(
            metadata_scope("team/app"),
            "repository:team/app:metadata_read"
        );
    }

    #[test]
    fn login_servers_and_repositories_are_checked() {
        assert_eq!(
            check_login_server("MyReg.azurecr.io").unwrap(),
            "myreg.azurecr.io"
        );
        assert!(check_login_server("reg.sim.test:8443").is_ok());
        for bad in [
            "",
            "reg",
            "a/b.io",
            "evil.io@x",
            "r.io:99999",
            "r.io:",
            ".r.io",
        ] {
            assert_eq!(
                check_login_server(bad).unwrap_err().kind(),
                "other",
                "{bad}"
            );
        }
        assert!(check_repository("team/app-1.2_x").is_ok());
        for bad in ["", "Team/app", "a//b", "../x", "a/-b", "a b", "a?x"] {
            assert!(check_repository(bad).is_err(), "{bad}");
        }
    }
}
