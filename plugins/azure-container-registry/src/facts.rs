//! What a session remembers between calls, bounded so that memory does not grow with the tenant.
//!
//! - [`FactsCache`]: the tags and times of the images just listed, kept only until
//!   `describe-images` asks about them, and only for the registry being enumerated: starting
//!   another registry drops what the last one left (the host describes a registry's images right
//!   after listing them). At most one registry's images are held.
//! - [`RepositoryIndex`]: each registry's repository names from its catalog, so a Defender row
//!   that names its repository only in a lossy form (`team-api` for `team/api`, read back from a
//!   resource id) still finds it. One entry per repository, never per image; image digests are
//!   kept only for repositories whose lossy names collide, which a hint alone cannot tell apart.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use keelson_plugin_sdk::ImageRef;

use crate::defender::ImageFacts;

/// Digests kept, across registries, to tell apart repositories whose lossy names collide. Past
/// this the lossy name is used as it is (a rare case made rarer: colliding names are unusual).
const MAX_COLLIDING_DIGESTS: usize = 50_000;

/// A digest as a map key: 32 bytes for `sha256:<hex>`, the text for anything else.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum DigestKey {
    Sha256([u8; 32]),
    Other(Box<str>),
}

impl DigestKey {
    /// The key of a digest already in lowercase.
    fn new(digest: &str) -> Self {
        digest
            .strip_prefix("sha256:")
            .and_then(sha256_bytes)
            .map_or_else(|| Self::Other(digest.into()), Self::Sha256)
    }
}

fn sha256_bytes(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.as_bytes();
    if hex.len() != 64 {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        *byte = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

/// One image's facts as stored: boxed slices (no spare capacity), and `updated_at` empty when
/// it equals `created_at` (a fresh image's two times are the same string; text is never empty).
#[derive(Debug, Default)]
struct StoredFacts {
    tags: Box<[Box<str>]>,
    last_pushed_at: Option<Box<str>>,
    created_at: Option<Box<str>>,
    updated_at: Option<Box<str>>,
}

impl StoredFacts {
    fn new(facts: &ImageFacts) -> Self {
        let mut stored = Self::default();
        stored.fill(facts);
        stored
    }

    /// Fills what is missing from `facts`.
    fn fill(&mut self, facts: &ImageFacts) {
        if self.tags.is_empty() {
            self.tags = facts.tags.iter().map(|t| t.as_str().into()).collect();
        }
        if self.last_pushed_at.is_none() {
            self.last_pushed_at = facts.last_pushed_at.as_deref().map(Into::into);
        }
        if self.created_at.is_none() {
            self.created_at = facts.created_at.as_deref().map(Into::into);
        }
        if self.updated_at.is_none() {
            self.updated_at = facts.updated_at.as_deref().map(|u| {
                if self.created_at.as_deref() == Some(u) {
                    Box::from("")
                } else {
                    u.into()
                }
            });
        }
    }

    fn into_facts(self) -> ImageFacts {
        let created_at = self.created_at.map(String::from);
        let updated_at = self.updated_at.map(|u| {
            if u.is_empty() {
                created_at.clone().unwrap_or_default()
            } else {
                u.into()
            }
        });
        ImageFacts {
            tags: self.tags.into_vec().into_iter().map(String::from).collect(),
            last_pushed_at: self.last_pushed_at.map(String::from),
            created_at,
            updated_at,
        }
    }
}

/// Facts of listed images not yet described, by registry, then repository, then digest (each
/// name stored once, not once per image).
#[derive(Debug, Default)]
pub(crate) struct FactsCache {
    registries: HashMap<String, HashMap<Box<str>, HashMap<DigestKey, StoredFacts>>>,
}

impl FactsCache {
    /// Enumeration of `registry` begins: the facts other registries left behind are dropped.
    /// Returns how many images' facts were dropped.
    pub(crate) fn start_registry(&mut self, registry: &str) -> usize {
        let mut dropped = 0;
        self.registries.retain(|name, repositories| {
            let keep = name == registry;
            if !keep {
                dropped += repositories.values().map(HashMap::len).sum::<usize>();
            }
            keep
        });
        dropped
    }

    /// Remembers a listed image's facts, filling what an earlier record lacks.
    pub(crate) fn remember(&mut self, image: &ImageRef, facts: &ImageFacts) {
        let repositories = self.registries.entry(image.registry.clone()).or_default();
        let digests = match repositories.get_mut(image.repository.as_str()) {
            Some(digests) => digests,
            None => repositories
                .entry(image.repository.as_str().into())
                .or_default(),
        };
        match digests.entry(DigestKey::new(&image.digest)) {
            Entry::Occupied(mut known) => known.get_mut().fill(facts),
            Entry::Vacant(slot) => {
                slot.insert(StoredFacts::new(facts));
            }
        }
    }

    /// Adds what a finding row tells about an image that is still waiting to be described; an
    /// image not held is not added (it was described already, or never listed).
    pub(crate) fn fill_known(&mut self, image: &ImageRef, facts: &ImageFacts) {
        if let Some(known) = self
            .registries
            .get_mut(&image.registry)
            .and_then(|r| r.get_mut(image.repository.as_str()))
            .and_then(|d| d.get_mut(&DigestKey::new(&image.digest)))
        {
            known.fill(facts);
        }
    }

    /// Takes an image's facts out: once described, they are not needed again. `image` is in
    /// canonical form (lowercase registry and digest).
    pub(crate) fn take(&mut self, image: &ImageRef) -> Option<ImageFacts> {
        let repositories = self.registries.get_mut(&image.registry)?;
        let digests = repositories.get_mut(image.repository.as_str())?;
        let facts = digests.remove(&DigestKey::new(&image.digest))?;
        if digests.is_empty() {
            repositories.remove(image.repository.as_str());
        }
        Some(facts.into_facts())
    }

    /// Images held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.registries
            .values()
            .flat_map(HashMap::values)
            .map(HashMap::len)
            .sum()
    }
}

/// Which repository a lossy name (`/` written as `-`) stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Candidate {
    /// A repository of that very name (which has a `-` and no `/`).
    Itself,
    /// The one repository whose name, with `/` as `-`, is this.
    Named(Box<str>),
    /// Several repositories read the same way.
    Colliding,
}

#[derive(Debug, Default)]
struct Repositories {
    /// Repositories whose name holds `/` or `-`, by lossy name. A name with neither can only
    /// be its own lossy name, so it is not stored.
    by_lossy_name: HashMap<Box<str>, Candidate>,
    /// Images of colliding repositories: digest to repository.
    colliding: HashMap<DigestKey, Box<str>>,
}

/// Repository names by registry, as the catalogs listed them.
#[derive(Debug, Default)]
pub(crate) struct RepositoryIndex {
    registries: HashMap<String, Repositories>,
    colliding_digests: usize,
}

/// `name` with `/` written as `-`, as Defender's resource ids write it.
fn lossy(name: &str) -> String {
    name.replace('/', "-")
}

impl RepositoryIndex {
    /// Records a page of `registry`'s catalog.
    pub(crate) fn add<'a>(&mut self, registry: &str, names: impl IntoIterator<Item = &'a str>) {
        let repositories = self.registries.entry(registry.to_owned()).or_default();
        for name in names {
            let candidate = if name.contains('/') {
                Candidate::Named(name.into())
            } else if name.contains('-') {
                Candidate::Itself
            } else {
                continue;
            };
            match repositories.by_lossy_name.entry(lossy(name).into()) {
                Entry::Vacant(slot) => {
                    slot.insert(candidate);
                }
                Entry::Occupied(mut known) => {
                    if *known.get() != candidate {
                        known.insert(Candidate::Colliding);
                    }
                }
            }
        }
    }

    /// Whether `registry`'s catalog was read (or given up on) in this session, even if it listed
    /// no names.
    pub(crate) fn knows(&self, registry: &str) -> bool {
        self.registries.contains_key(registry)
    }

    /// Notes a listed image: kept only when its repository's lossy name collides with another's.
    pub(crate) fn note_image(&mut self, image: &ImageRef) {
        let Some(repositories) = self.registries.get_mut(&image.registry) else {
            return;
        };
        let colliding = repositories
            .by_lossy_name
            .get(lossy(&image.repository).as_str())
            == Some(&Candidate::Colliding);
        if !colliding || self.colliding_digests >= MAX_COLLIDING_DIGESTS {
            return;
        }
        if repositories
            .colliding
            .insert(
                DigestKey::new(&image.digest),
                image.repository.as_str().into(),
            )
            .is_none()
        {
            self.colliding_digests += 1;
        }
    }

    /// The repository of `registry` that `hint` (a lossy name) stands for, telling colliding
    /// names apart by the image's `digest` (lowercase). A name the catalog did not list (or a
    /// registry whose catalog was not read) is taken as it is.
    pub(crate) fn resolve(&self, registry: &str, hint: &str, digest: &str) -> String {
        let Some(repositories) = self.registries.get(registry) else {
            return hint.to_owned();
        };
        match repositories.by_lossy_name.get(hint) {
            Some(Candidate::Named(name)) => name.as_ref().to_owned(),
            Some(Candidate::Colliding) => repositories
                .colliding
                .get(&DigestKey::new(digest))
                .map_or_else(|| hint.to_owned(), |name| name.as_ref().to_owned()),
            Some(Candidate::Itself) | None => hint.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(registry: &str, repository: &str, digest: &str) -> ImageRef {
        ImageRef {
            registry: registry.into(),
            repository: repository.into(),
            digest: digest.into(),
        }
    }

    fn digest(byte: &str) -> String {
        format!("sha256:{}", byte.repeat(32))
    }

    fn facts(tag: &str, created: &str, updated: &str) -> ImageFacts {
        ImageFacts {
            tags: vec![tag.into()],
            last_pushed_at: None,
            created_at: Some(created.into()),
            updated_at: Some(updated.into()),
        }
    }

    #[test]
    fn sha256_digests_are_stored_as_bytes_and_others_as_text() {
        assert_eq!(DigestKey::new(&digest("ab")), DigestKey::Sha256([0xab; 32]));
        assert_eq!(
            DigestKey::new("sha256:xyz"),
            DigestKey::Other("sha256:xyz".into())
        );
        assert_eq!(
            DigestKey::new("c186fc44-3154"),
            DigestKey::Other("c186fc44-3154".into())
        );
    }

    #[test]
    fn facts_come_back_as_given_once() {
        let mut cache = FactsCache::default();
        let a = image("r.azurecr.io", "team/api", &digest("01"));
        let b = image("r.azurecr.io", "team/api", &digest("02"));
        cache.remember(
            &a,
            &facts("1.0", "2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z"),
        );
        cache.remember(
            &b,
            &facts("2.0", "2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z"),
        );
        cache.fill_known(
            &a,
            &ImageFacts {
                tags: vec!["ignored".into()],
                last_pushed_at: Some("2026-03-01T00:00:00Z".into()),
                ..ImageFacts::default()
            },
        );
        assert_eq!(cache.len(), 2);
        let got = cache.take(&a).unwrap();
        assert_eq!(got.tags, ["1.0"]);
        assert_eq!(got.created_at.as_deref(), Some("2026-01-01T00:00:00Z"));
        assert_eq!(got.updated_at.as_deref(), Some("2026-01-01T00:00:00Z"));
        assert_eq!(got.last_pushed_at.as_deref(), Some("2026-03-01T00:00:00Z"));
        assert_eq!(
            cache.take(&b).unwrap().updated_at.as_deref(),
            Some("2026-02-01T00:00:00Z")
        );
        assert_eq!(cache.take(&a), None, "taken once");
        assert_eq!(cache.len(), 0);
        assert!(cache.registries["r.azurecr.io"].is_empty());
    }

    #[test]
    fn a_finding_row_does_not_add_an_image_that_is_not_held() {
        let mut cache = FactsCache::default();
        cache.fill_known(
            &image("r.azurecr.io", "a", &digest("01")),
            &facts("1", "x", "y"),
        );
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn starting_a_registry_drops_the_others() {
        let mut cache = FactsCache::default();
        cache.remember(
            &image("a.azurecr.io", "x", &digest("01")),
            &facts("1", "t", "t"),
        );
        cache.remember(
            &image("a.azurecr.io", "y", &digest("02")),
            &facts("1", "t", "t"),
        );
        cache.remember(
            &image("b.azurecr.io", "x", &digest("03")),
            &facts("1", "t", "t"),
        );
        assert_eq!(cache.start_registry("b.azurecr.io"), 2);
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.start_registry("b.azurecr.io"), 0);
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn lossy_names_resolve_through_the_catalog() {
        let mut index = RepositoryIndex::default();
        let registry = "r.azurecr.io";
        index.add(registry, ["team/api", "web", "my-app", "a/b-c", "a-b/c"]);
        assert_eq!(
            index.resolve(registry, "team-api", &digest("01")),
            "team/api"
        );
        assert_eq!(index.resolve(registry, "web", &digest("01")), "web");
        assert_eq!(index.resolve(registry, "my-app", &digest("01")), "my-app");
        // `a/b-c` and `a-b/c` both read `a-b-c`: told apart by the image's digest.
        index.note_image(&image(registry, "a/b-c", &digest("0a")));
        index.note_image(&image(registry, "a-b/c", &digest("0b")));
        index.note_image(&image(registry, "team/api", &digest("0c")));
        assert_eq!(index.resolve(registry, "a-b-c", &digest("0a")), "a/b-c");
        assert_eq!(index.resolve(registry, "a-b-c", &digest("0b")), "a-b/c");
        assert_eq!(index.resolve(registry, "a-b-c", &digest("0d")), "a-b-c");
        assert_eq!(index.colliding_digests, 2, "only colliding repositories");
        // A registry whose catalog was not read: the hint as it is.
        assert!(index.knows(registry) && !index.knows("other.azurecr.io"));
        assert_eq!(
            index.resolve("other.azurecr.io", "team-api", "d"),
            "team-api"
        );
    }

    #[test]
    fn a_catalog_without_names_counts_as_read() {
        let mut index = RepositoryIndex::default();
        index.add("r.azurecr.io", std::iter::empty());
        assert!(index.knows("r.azurecr.io"));
        assert_eq!(index.resolve("r.azurecr.io", "team-api", "d"), "team-api");
    }

    #[test]
    fn a_name_colliding_with_a_plain_one_is_not_guessed() {
        let mut index = RepositoryIndex::default();
        index.add("r.azurecr.io", ["team-api"]);
        index.add("r.azurecr.io", ["team/api"]);
        index.add("r.azurecr.io", ["team/api"]);
        assert_eq!(
            index.registries["r.azurecr.io"].by_lossy_name["team-api"],
            Candidate::Colliding
        );
        index.note_image(&image("r.azurecr.io", "team/api", &digest("01")));
        assert_eq!(
            index.resolve("r.azurecr.io", "team-api", &digest("01")),
            "team/api"
        );
    }
}
