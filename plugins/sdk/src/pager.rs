//! Paging helpers: opaque cursors and loop detection.
//!
//! The host drives paging and hands the previous page's cursor back verbatim. Keep the whole
//! paging state in the cursor ([`Cursor::encode`] any serde type, [`Cursor::decode`] it on the
//! next call) so a page can be asked for again and the session holds no hidden position.
//! [`Trail`] remembers the links already followed, so a service that pages in a loop is caught.
//!
//! A listing that cannot go on after the page in hand (a paging loop, rows it could not read)
//! returns that page with a [`deferred`] cursor instead of failing: the host keeps the page's
//! items, and the next call answers `unavailable`, so the listing is recorded as incomplete.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{ConnectorError, PageRequest};

/// Encodes and decodes opaque cursors: base64url (no padding) of the state's JSON.
#[derive(Debug, Clone, Copy)]
pub struct Cursor;

impl Cursor {
    /// Encodes `state` as a cursor string.
    pub fn encode<T: Serialize>(state: &T) -> String {
        // Serialising plain structs to JSON cannot fail; a failure is a bug in the state type.
        let json = serde_json::to_vec(state).expect("cursor state serialises to JSON");
        URL_SAFE_NO_PAD.encode(json)
    }

    /// Decodes a cursor made by [`Cursor::encode`]. A cursor that is not one gives an error
    /// naming it (shortened).
    pub fn decode<T: DeserializeOwned>(cursor: &str) -> Result<T, ConnectorError> {
        let bad = || {
            ConnectorError::Other(format!(
                "cursor `{}` was not made by this connector (or by this version of it); start \
                 the listing again",
                shorten(cursor, 48)
            ))
        };
        let json = URL_SAFE_NO_PAD
            .decode(cursor.trim().as_bytes())
            .map_err(|_| bad())?;
        serde_json::from_slice(&json).map_err(|_| bad())
    }
}

impl PageRequest {
    /// The page size to ask a service for: `max-items`, at least 1 and at most `cap` (the
    /// service's own maximum).
    pub fn limit(&self, cap: u32) -> u32 {
        self.max_items.clamp(1, cap.max(1))
    }

    /// Decodes the cursor, or `None` for the first page. A cursor made by [`deferred`] fails
    /// with its error (`unavailable`), the same on every retry.
    pub fn state<T: DeserializeOwned>(&self) -> Result<Option<T>, ConnectorError> {
        if let Some(error) = self.deferred_error() {
            return Err(error);
        }
        self.cursor.as_deref().map(Cursor::decode).transpose()
    }

    /// The error a cursor made by [`deferred`] carries; `None` for any other cursor.
    /// [`PageRequest::state`] checks this itself.
    pub fn deferred_error(&self) -> Option<ConnectorError> {
        let deferred = Cursor::decode::<Deferred>(self.cursor.as_deref()?).ok()?;
        Some(ConnectorError::Unavailable(deferred.listing_incomplete))
    }
}

/// The state of a [`deferred`] cursor; its key makes it unlike any connector's own.
#[derive(Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Deferred {
    listing_incomplete: String,
}

/// A `next` cursor whose call answers `unavailable` with `message` (say what was not read and
/// why). Return it with the page in hand when the listing cannot go on: a plain error would
/// make the host drop that page, this keeps it and still marks the listing incomplete.
pub fn deferred(message: &str) -> String {
    Cursor::encode(&Deferred {
        listing_incomplete: message.to_owned(),
    })
}

/// Serves `items` (a listing the connector reads whole) in pages of `max-items` (at most `cap`),
/// with the offset in the cursor. A cursor that is not one of these, or is past the end, is an
/// error naming it.
pub fn offset_page<T: Clone>(
    items: &[T],
    page: &PageRequest,
    cap: u32,
) -> Result<(Vec<T>, Option<String>), ConnectorError> {
    #[derive(Serialize, serde::Deserialize)]
    struct Offset {
        offset: usize,
    }
    let offset = page.state::<Offset>()?.map_or(0, |c| c.offset);
    if offset > items.len() {
        return Err(ConnectorError::Other(format!(
            "cursor points past the end of the listing ({offset} of {}); start it again",
            items.len()
        )));
    }
    let end = items.len().min(offset + page.limit(cap) as usize);
    let next = (end < items.len()).then(|| Cursor::encode(&Offset { offset: end }));
    Ok((items[offset..end].to_vec(), next))
}

/// The links (URLs, continuation tokens) a listing has followed, kept in its cursor to detect a
/// service that pages in a loop (a link repeating, or a cycle A → B → A).
///
/// Only short fingerprints are stored, and only the most recent [`Trail::CAPACITY`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Trail(Vec<String>);

impl Trail {
    /// How many fingerprints a trail keeps.
    pub const CAPACITY: usize = 256;

    /// An empty trail.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `link` is about to be followed. Fails with `unavailable` naming `what` and
    /// the link (shortened) when it was followed before.
    pub fn visit(&mut self, link: &str, what: &str) -> Result<(), ConnectorError> {
        let print = fingerprint(link);
        if self.0.contains(&print) {
            return Err(ConnectorError::Unavailable(loop_message(link, what)));
        }
        self.push(print);
        Ok(())
    }

    /// The `next` cursor that follows `link`: `state(link, trail)` encoded, or, when `link` was
    /// followed before, a [`deferred`] loop error, so the page in hand is still returned.
    pub fn follow<T: Serialize>(
        mut self,
        link: String,
        what: &str,
        state: impl FnOnce(String, Self) -> T,
    ) -> String {
        if self.contains(&link) {
            return deferred(&loop_message(&link, what));
        }
        self.push(fingerprint(&link));
        Cursor::encode(&state(link, self))
    }

    fn push(&mut self, print: String) {
        if self.0.len() == Self::CAPACITY {
            self.0.remove(0);
        }
        self.0.push(print);
    }

    /// Whether `link` was followed before.
    pub fn contains(&self, link: &str) -> bool {
        self.0.contains(&fingerprint(link))
    }

    /// How many links are remembered.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no link is remembered.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn loop_message(link: &str, what: &str) -> String {
    format!(
        "{what} paged in a loop: the link `{}` came back a second time; the listing is \
         incomplete, try again later",
        shorten(link, 160)
    )
}

/// A 64-bit FNV-1a hash in hex: short, stable across builds, good enough to spot repeats.
fn fingerprint(text: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// `text` cut to at most `max` characters, with `…` when cut.
pub(crate) fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let mut cut: String = text.chars().take(max).collect();
        cut.push('…');
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, serde::Deserialize)]
    struct State {
        link: String,
        offset: u32,
        trail: Trail,
    }

    #[test]
    fn cursor_round_trips_state() {
        let mut trail = Trail::new();
        trail.visit("https://a/1", "test").unwrap();
        let state = State {
            link: "/acr/v1/_catalog?last=a%2Fb&n=2".into(),
            offset: 7,
            trail,
        };
        let cursor = Cursor::encode(&state);
        assert!(
            cursor
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert_eq!(Cursor::decode::<State>(&cursor).unwrap(), state);
    }

    #[test]
    fn decode_rejects_foreign_cursor_naming_it() {
        let err = Cursor::decode::<State>("not a cursor!").unwrap_err();
        assert_eq!(err.kind(), "other");
        assert!(err.message().unwrap().contains("`not a cursor!`"));
        // Valid base64url, but JSON of another shape.
        let other = Cursor::encode(&vec![1, 2, 3]);
        assert!(Cursor::decode::<State>(&other).is_err());
    }

    #[test]
    fn page_request_limit_and_state() {
        let page = PageRequest {
            cursor: None,
            max_items: 5000,
        };
        assert_eq!(page.limit(1000), 1000);
        assert_eq!(
            PageRequest {
                cursor: None,
                max_items: 0
            }
            .limit(1000),
            1
        );
        assert_eq!(page.state::<State>().unwrap(), None);
        let state = State {
            link: "x".into(),
            offset: 1,
            trail: Trail::new(),
        };
        let next = PageRequest {
            cursor: Some(Cursor::encode(&state)),
            max_items: 10,
        };
        assert_eq!(next.state::<State>().unwrap(), Some(state));
    }

    #[test]
    fn offset_page_walks_a_list_and_refuses_a_cursor_past_its_end() {
        let items: Vec<u32> = (0..5).collect();
        let mut page = PageRequest {
            cursor: None,
            max_items: 2,
        };
        let mut seen = Vec::new();
        loop {
            let (chunk, next) = offset_page(&items, &page, 100).unwrap();
            assert!(chunk.len() <= 2);
            seen.extend(chunk);
            match next {
                Some(c) => page.cursor = Some(c),
                None => break,
            }
        }
        assert_eq!(seen, items);
        let past = Cursor::encode(&serde_json::json!({ "offset": 9 }));
        let err = offset_page(
            &items,
            &PageRequest {
                cursor: Some(past),
                max_items: 2,
            },
            100,
        )
        .unwrap_err();
        assert_eq!(err.kind(), "other");
        assert!(
            offset_page(
                &items,
                &PageRequest {
                    cursor: Some("x".into()),
                    max_items: 2
                },
                100
            )
            .is_err()
        );
    }

    #[test]
    fn trail_detects_repeat_and_cycle() {
        let mut trail = Trail::new();
        trail.visit("A", "registries").unwrap();
        trail.visit("B", "registries").unwrap();
        let err = trail.visit("A", "registries").unwrap_err();
        assert_eq!(err.kind(), "unavailable");
        assert!(err.message().unwrap().contains("`A`"));
        assert!(trail.contains("B"));
        assert!(!trail.contains("C"));
    }

    #[test]
    fn follow_encodes_the_next_state_or_defers_the_loop_error() {
        let mut trail = Trail::new();
        trail.visit("/page/1", "the catalog").unwrap();
        let next = trail
            .clone()
            .follow("/page/2".into(), "the catalog", |link, trail| State {
                link,
                offset: 0,
                trail,
            });
        let state = Cursor::decode::<State>(&next).unwrap();
        assert_eq!(state.link, "/page/2");
        assert!(state.trail.contains("/page/1") && state.trail.contains("/page/2"));

        // The link back to page 1: the cursor still comes back, and its call fails.
        let looped = state
            .trail
            .follow("/page/1".into(), "the catalog", |link, trail| State {
                link,
                offset: 0,
                trail,
            });
        let page = PageRequest {
            cursor: Some(looped),
            max_items: 10,
        };
        for _ in 0..2 {
            let err = page.state::<State>().unwrap_err();
            assert_eq!(err.kind(), "unavailable");
            assert!(
                err.message()
                    .unwrap()
                    .starts_with("the catalog paged in a loop: the link `/page/1`"),
                "{err:?}"
            );
        }
    }

    #[test]
    fn only_a_deferred_cursor_carries_an_error() {
        let page = |cursor: Option<String>| PageRequest {
            cursor,
            max_items: 1,
        };
        assert!(page(None).deferred_error().is_none());
        assert!(page(Some("junk".into())).deferred_error().is_none());
        let own = Cursor::encode(&serde_json::json!({"listing_incomplete": "x", "skip": 3}));
        assert!(page(Some(own)).deferred_error().is_none());
        let err = page(Some(deferred("findings incomplete: x")))
            .deferred_error()
            .unwrap();
        assert_eq!(err.message(), Some("findings incomplete: x"));
    }

    #[test]
    fn trail_keeps_only_recent_fingerprints() {
        let mut trail = Trail::new();
        for i in 0..=Trail::CAPACITY {
            trail.visit(&format!("link-{i}"), "x").unwrap();
        }
        assert_eq!(trail.len(), Trail::CAPACITY);
        assert!(!trail.contains("link-0"));
        assert!(trail.contains("link-1"));
    }

    #[test]
    fn shorten_cuts_long_text() {
        assert_eq!(shorten("abc", 5), "abc");
        assert_eq!(shorten("abcdef", 3), "abc…");
    }
}
