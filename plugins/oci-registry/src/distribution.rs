//! The distribution API's documents: `Link` paging, the catalog and tag lists, and manifests
//! and image indexes turned into the contract's images.

use std::collections::BTreeMap;

use keelson_plugin_sdk::{ConnectorError, Image, ImageRef, Platform};
use serde::Deserialize;

pub(crate) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// What a manifest request accepts: both indexes and both single-image formats.
pub(crate) const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// The `rel="next"` target of a `Link` header (`</v2/_catalog?last=b&n=2>; rel="next"`).
pub(crate) fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        let next = params.split(';').any(|p| {
            let p = p.trim();
            p.eq_ignore_ascii_case("rel=\"next\"") || p.eq_ignore_ascii_case("rel=next")
        });
        next.then(|| target.to_owned())
    })
}

/// Reduces a `Link` target to a path on the registry (`/v2/...`), refusing one that points at
/// another origin: a cursor must not be able to send the session's credentials elsewhere.
pub(crate) fn link_path(base: &str, target: &str) -> Result<String, ConnectorError> {
    let path = target.strip_prefix(base).unwrap_or(target);
    let escapes = path.split(['/', '?']).any(|segment| segment == "..");
    if path.starts_with("/v2/") && !escapes && !path.contains("://") && !path.contains('#') {
        Ok(path.to_owned())
    } else {
        Err(ConnectorError::Unavailable(format!(
            "the registry's `Link` header points at `{}`, outside `{base}/v2/`",
            keelson_plugin_sdk::http::display_url(target)
        )))
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct Catalog {
    #[serde(default)]
    pub(crate) repositories: Vec<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct TagList {
    /// `null` for a repository without tags.
    #[serde(default)]
    pub(crate) tags: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
struct Descriptor {
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    digest: String,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default)]
    platform: Option<DescPlatform>,
}

#[derive(Debug, Deserialize)]
struct DescPlatform {
    os: String,
    architecture: String,
    #[serde(default)]
    variant: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Manifest {
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
    /// Present on an index (and only there).
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
}

/// The parts of an image config the inventory shows.
#[derive(Debug, Deserialize)]
pub(crate) struct ImageConfig {
    #[serde(default)]
    os: Option<String>,
    #[serde(default)]
    architecture: Option<String>,
    #[serde(default)]
    variant: Option<String>,
    #[serde(default)]
    created: Option<String>,
}

/// One manifest as fetched by tag.
pub(crate) struct Fetched {
    pub(crate) digest: String,
    /// The `Content-Type` the registry served it with.
    pub(crate) content_type: Option<String>,
    pub(crate) body: Vec<u8>,
}

/// A parsed manifest: an index with its children, or one image with its config's digest.
pub(crate) enum Parsed {
    Index {
        media_type: String,
        children: Vec<Child>,
    },
    Single {
        media_type: String,
        config_digest: Option<String>,
        size: Option<u64>,
    },
}

/// One entry of an index.
pub(crate) struct Child {
    pub(crate) digest: String,
    pub(crate) media_type: Option<String>,
    pub(crate) platform: Option<Platform>,
}

/// Parses a manifest body; `what` names it in the error.
pub(crate) fn parse_manifest(fetched: &Fetched, what: &str) -> Result<Parsed, ConnectorError> {
    let manifest: Manifest = serde_json::from_slice(&fetched.body).map_err(|e| {
        ConnectorError::Unavailable(format!(
            "the manifest of {what} is not valid JSON ({}:{})",
            e.line(),
            e.column()
        ))
    })?;
    let media_type = manifest
        .media_type
        .clone()
        .or_else(|| fetched.content_type.clone())
        .unwrap_or_else(|| {
            if manifest.manifests.is_some() {
                OCI_INDEX.to_owned()
            } else {
                OCI_MANIFEST.to_owned()
            }
        });
    if let Some(entries) = manifest.manifests {
        let children = entries
            .into_iter()
            .map(|d| Child {
                digest: d.digest,
                media_type: d.media_type,
                platform: d.platform.map(|p| Platform {
                    os: p.os,
                    architecture: p.architecture,
                    variant: p.variant.filter(|v| !v.is_empty()),
                }),
            })
            .collect();
        return Ok(Parsed::Index {
            media_type,
            children,
        });
    }
    let size = manifest
        .layers
        .iter()
        .chain(manifest.config.iter())
        .map(|d| d.size)
        .sum::<Option<u64>>();
    Ok(Parsed::Single {
        media_type,
        config_digest: manifest.config.map(|c| c.digest),
        size,
    })
}

/// Fills platform and creation time from an image config blob.
pub(crate) fn apply_config(image: &mut Image, config: &ImageConfig) {
    if let (Some(os), Some(architecture)) = (&config.os, &config.architecture) {
        image.platform = Some(Platform {
            os: os.clone(),
            architecture: architecture.clone(),
            variant: config.variant.clone().filter(|v| !v.is_empty()),
        });
    }
    image.created_at.clone_from(&config.created);
}

/// Builds the repository's images from its tags' manifests: one image per digest with every
/// tag pointing at it, and one per platform manifest an index lists (untagged unless a tag
/// points at it too). Sorted by digest, so paging by offset is stable.
pub(crate) struct Inventory {
    registry: String,
    repository: String,
    images: BTreeMap<String, Image>,
}

impl Inventory {
    pub(crate) fn new(registry: &str, repository: &str) -> Self {
        Self {
            registry: registry.to_owned(),
            repository: repository.to_owned(),
            images: BTreeMap::new(),
        }
    }

    fn entry(&mut self, digest: &str) -> &mut Image {
        let (registry, repository) = (&self.registry, &self.repository);
        self.images
            .entry(digest.to_owned())
            .or_insert_with(|| Image {
                image_ref: ImageRef {
                    registry: registry.clone(),
                    repository: repository.clone(),
                    digest: digest.to_owned(),
                },
                tags: Vec::new(),
                media_type: None,
                platform: None,
                children: Vec::new(),
                size_bytes: None,
                created_at: None,
                updated_at: None,
            })
    }

    /// Records that `tag` points at `digest`. Returns whether the digest is new.
    pub(crate) fn tag(&mut self, digest: &str, tag: &str) -> bool {
        let new = !self.images.contains_key(digest);
        let image = self.entry(digest);
        if !image.tags.iter().any(|t| t == tag) {
            image.tags.push(tag.to_owned());
            image.tags.sort();
        }
        new
    }

    /// Records what a manifest says about its digest; returns the config digest to read for a
    /// single image.
    pub(crate) fn manifest(&mut self, digest: &str, parsed: Parsed) -> Option<String> {
        match parsed {
            Parsed::Index {
                media_type,
                children,
            } => {
                let image = self.entry(digest);
                image.media_type = Some(media_type);
                image.children = children.iter().map(|c| c.digest.clone()).collect();
                for child in children {
                    let entry = self.entry(&child.digest);
                    if entry.media_type.is_none() {
                        entry.media_type = child.media_type;
                    }
                    if entry.platform.is_none() {
                        entry.platform = child.platform;
                    }
                }
                None
            }
            Parsed::Single {
                media_type,
                config_digest,
                size,
            } => {
                let image = self.entry(digest);
                image.media_type = Some(media_type);
                image.size_bytes = size;
                config_digest
            }
        }
    }

    pub(crate) fn image_mut(&mut self, digest: &str) -> Option<&mut Image> {
        self.images.get_mut(digest)
    }

    pub(crate) fn into_images(self) -> Vec<Image> {
        self.images.into_values().collect()
    }
}

/// Whether `digest` looks like `algorithm:hex`, checked before it goes into a URL.
pub(crate) fn valid_digest(digest: &str) -> bool {
    digest.split_once(':').is_some_and(|(alg, hex)| {
        !alg.is_empty()
            && alg
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+._-".contains(c))
            && hex.len() >= 32
            && hex.chars().all(|c| c.is_ascii_hexdigit())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_header_next_is_found_and_kept_on_the_registry() {
        let header = r#"</v2/_catalog?last=b%2Fc&n=2>; rel="next""#;
        assert_eq!(
            next_link(header).as_deref(),
            Some("/v2/_catalog?last=b%2Fc&n=2")
        );
        assert_eq!(next_link(r#"</x>; rel="prev""#), None);
        let base = "https://r.example:5000";
        assert_eq!(
            link_path(base, "https://r.example:5000/v2/a/tags/list?n=1&last=x").unwrap(),
            "/v2/a/tags/list?n=1&last=x"
        );
        assert!(link_path(base, "https://evil.example/v2/_catalog").is_err());
        assert!(link_path(base, "/other").is_err());
        assert!(link_path(base, "/v2/../admin").is_err());
    }

    fn sha(n: u8) -> String {
        format!("sha256:{}", format!("{n:02x}").repeat(32))
    }

    #[test]
    fn an_index_gives_its_platform_children_and_tags_group_by_digest() {
        let index = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[
                {{"mediaType":"{OCI_MANIFEST}","digest":"{a}","size":500,"platform":{{"os":"linux","architecture":"amd64"}}}},
                {{"mediaType":"{OCI_MANIFEST}","digest":"{b}","size":500,"platform":{{"os":"linux","architecture":"arm64","variant":"v8"}}}}]}}"#,
            a = sha(1),
            b = sha(2)
        );
        let mut inv = Inventory::new("r.example", "lib/x");
        assert!(inv.tag(&sha(9), "latest"));
        assert!(!inv.tag(&sha(9), "1.0"));
        let fetched = Fetched {
            digest: sha(9),
            content_type: None,
            body: index.into_bytes(),
        };
        let parsed = parse_manifest(&fetched, "lib/x:latest").unwrap();
        assert_eq!(inv.manifest(&sha(9), parsed), None);
        let images = inv.into_images();
        assert_eq!(images.len(), 3);
        let top = images
            .iter()
            .find(|i| i.image_ref.digest == sha(9))
            .unwrap();
        assert_eq!(top.tags, vec!["1.0".to_owned(), "latest".to_owned()]);
        assert_eq!(top.children, vec![sha(1), sha(2)]);
        assert_eq!(top.media_type.as_deref(), Some(OCI_INDEX));
        let arm = images
            .iter()
            .find(|i| i.image_ref.digest == sha(2))
            .unwrap();
        assert!(arm.tags.is_empty());
        assert_eq!(
            arm.platform,
            Some(Platform {
                os: "linux".into(),
                architecture: "arm64".into(),
                variant: Some("v8".into())
            })
        );
    }

    const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

    #[test]
    fn a_single_manifest_sums_its_sizes_and_names_its_config() {
        let body = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{c}","size":100}},
            "layers":[{{"mediaType":"x","digest":"{l}","size":1000}}]}}"#,
            c = sha(3),
            l = sha(4)
        );
        let fetched = Fetched {
            digest: sha(5),
            content_type: Some(DOCKER_MANIFEST.to_owned()),
            body: body.into_bytes(),
        };
        let mut inv = Inventory::new("r", "x");
        inv.tag(&sha(5), "v1");
        let config = inv.manifest(&sha(5), parse_manifest(&fetched, "x:v1").unwrap());
        assert_eq!(config, Some(sha(3)));
        let cfg: ImageConfig = serde_json::from_str(
            r#"{"os":"linux","architecture":"amd64","created":"2024-05-01T12:00:00Z"}"#,
        )
        .unwrap();
        apply_config(inv.image_mut(&sha(5)).unwrap(), &cfg);
        let image = &inv.into_images()[0];
        assert_eq!(image.size_bytes, Some(1100));
        assert_eq!(image.media_type.as_deref(), Some(DOCKER_MANIFEST));
        assert_eq!(image.platform.as_ref().unwrap().architecture, "amd64");
        assert_eq!(image.created_at.as_deref(), Some("2024-05-01T12:00:00Z"));
    }

    #[test]
    fn malformed_manifest_is_unavailable_and_digests_are_checked() {
        let fetched = Fetched {
            digest: sha(1),
            content_type: None,
            body: b"{not json".to_vec(),
        };
        assert!(matches!(
            parse_manifest(&fetched, "x:y"),
            Err(ConnectorError::Unavailable(_))
        ));
        assert!(valid_digest(&sha(1)));
        assert!(!valid_digest("sha256:../../x"));
        assert!(!valid_digest("latest"));
    }
}
