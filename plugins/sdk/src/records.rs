//! Short constructors for the contract's records, with every optional field empty, so a
//! connector spells out only what its source knows.

use crate::{Image, ImageRef, Registry, Repository};

impl Registry {
    /// A registry keyed by its login server `name` (also its display name), with the source's
    /// own id for it; location, tier, exposure and attributes unknown.
    pub fn new(name: &str, source_id: &str) -> Self {
        Self {
            name: name.to_owned(),
            source_id: source_id.to_owned(),
            display_name: name.to_owned(),
            location: None,
            tier: None,
            public_network_access: None,
            attributes: Vec::new(),
        }
    }
}

impl Repository {
    /// Repository `name` of `registry`, last push unknown.
    pub fn new(registry: &str, name: &str) -> Self {
        Self {
            registry: registry.to_owned(),
            name: name.to_owned(),
            updated_at: None,
        }
    }
}

impl ImageRef {
    /// The manifest `digest` in `repository` of `registry`.
    pub fn new(registry: &str, repository: &str, digest: &str) -> Self {
        Self {
            registry: registry.to_owned(),
            repository: repository.to_owned(),
            digest: digest.to_owned(),
        }
    }
}

impl Image {
    /// An image with `tags` and nothing else known (media type, platform, children, size, times).
    pub fn new(image_ref: ImageRef, tags: Vec<String>) -> Self {
        Self {
            image_ref,
            tags,
            media_type: None,
            platform: None,
            children: Vec::new(),
            size_bytes: None,
            created_at: None,
            updated_at: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructors_leave_optional_fields_empty() {
        let r = Registry::new("r.example:5000", "https://r.example:5000");
        assert_eq!(r.display_name, "r.example:5000");
        assert!(r.location.is_none() && r.attributes.is_empty());
        assert_eq!(Repository::new("r", "a/b").name, "a/b");
        let image = Image::new(ImageRef::new("r", "a", "sha256:00"), vec!["v1".into()]);
        assert_eq!(image.image_ref.digest, "sha256:00");
        assert!(image.platform.is_none() && image.children.is_empty());
    }
}
