//! Rows a connector could not use, counted so a listing that lost them says so.
//!
//! A source row that lacks a field the connector needs (an id, a status, a digest) must not
//! vanish silently: the host would read the listing as complete and resolve what the row held.
//! [`Skipped`] counts such rows per reason (logging a warning the first time each reason is
//! seen, with an example id), travels in the listing's cursor so the call stays stateless, and
//! at the end of the listing turns into a *deferred error*: the last page is returned as usual
//! with a cursor from [`Skipped::finish`], and the call with that cursor answers
//! `unavailable` naming the counts ([`Skipped::deferred_error`]), the same on every retry. The
//! host keeps every item already returned and records the listing as incomplete.
//!
//! ```
//! # use keelson_plugin_sdk::{PageRequest, skipped::Skipped};
//! let mut skipped = Skipped::new("findings", "Resource Graph rows");
//! skipped.record("lacked `properties.status`", "/subscriptions/s/…/assessments/a1");
//! // Last upstream page: return its items with this `next`.
//! let next = skipped.finish();
//! assert!(next.is_some());
//! // The host calls again with it.
//! let page = PageRequest { cursor: next, max_items: 100 };
//! let err = Skipped::deferred_error(&page).unwrap();
//! assert_eq!(err.kind(), "unavailable");
//! ```

use serde::{Deserialize, Serialize};

use crate::pager::{Cursor, shorten};
use crate::{ConnectorError, PageRequest};

/// How long an example id may be in a message.
const EXAMPLE_MAX: usize = 200;

/// Rows skipped in one listing, per reason, in the order the reasons were first seen.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    /// What the listing is, for the message (`findings`).
    listing: String,
    /// What a row is (`Resource Graph rows`).
    rows: String,
    reasons: Vec<Reason>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Reason {
    text: String,
    count: u64,
    example: String,
}

/// The cursor that carries a deferred error; the key makes it unlike any connector's own.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Deferred {
    skipped_rows: Skipped,
}

impl Skipped {
    /// No rows skipped yet in `listing` (e.g. `findings`), whose rows are called `rows` (e.g.
    /// `Resource Graph rows`).
    pub fn new(listing: &str, rows: &str) -> Self {
        Self {
            listing: listing.to_owned(),
            rows: rows.to_owned(),
            reasons: Vec::new(),
        }
    }

    /// Counts one row skipped for `reason` (e.g. ``lacked `properties.status` ``), with the id
    /// that names it (kept for the first row of each reason, and logged as a warning then).
    /// The id must not be secret; it is shortened.
    pub fn record(&mut self, reason: &str, example: &str) {
        if let Some(known) = self.reasons.iter_mut().find(|r| r.text == reason) {
            known.count += 1;
            return;
        }
        let example = shorten(example, EXAMPLE_MAX);
        crate::log::warn(&format!(
            "{}: {} {reason} and were skipped (e.g. `{example}`); the listing will end \
             incomplete",
            self.listing, self.rows
        ));
        self.reasons.push(Reason {
            text: reason.to_owned(),
            count: 1,
            example,
        });
    }

    /// Adds the counts of `other` (e.g. one page's) to these.
    pub fn merge(&mut self, other: &Self) {
        for reason in &other.reasons {
            match self.reasons.iter_mut().find(|r| r.text == reason.text) {
                Some(known) => known.count += reason.count,
                None => self.reasons.push(reason.clone()),
            }
        }
    }

    /// How many rows were skipped, for every reason.
    pub fn total(&self) -> u64 {
        self.reasons.iter().map(|r| r.count).sum()
    }

    /// Whether no row was skipped.
    pub fn is_empty(&self) -> bool {
        self.reasons.is_empty()
    }

    /// How many rows were skipped for `reason`.
    pub fn count(&self, reason: &str) -> u64 {
        self.reasons
            .iter()
            .find(|r| r.text == reason)
            .map_or(0, |r| r.count)
    }

    /// The operator message: ``findings incomplete: 12 Resource Graph rows lacked
    /// `properties.status` (e.g. `<id>`); 1 lacked `id` (e.g. `<id>`)``.
    pub fn message(&self) -> String {
        let parts: Vec<String> = self
            .reasons
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let rows = if i == 0 {
                    format!(" {}", self.rows)
                } else {
                    String::new()
                };
                format!("{}{rows} {} (e.g. `{}`)", r.count, r.text, r.example)
            })
            .collect();
        format!("{} incomplete: {}", self.listing, parts.join("; "))
    }

    /// The `next` cursor of the listing's last page: `None` when nothing was skipped (the
    /// listing ends), else a cursor whose call answers [`Skipped::deferred_error`].
    pub fn finish(&self) -> Option<String> {
        (!self.is_empty()).then(|| {
            Cursor::encode(&Deferred {
                skipped_rows: self.clone(),
            })
        })
    }

    /// The error to answer when `page` carries a cursor made by [`Skipped::finish`]; `None`
    /// for any other cursor. Call it first in a list function, before decoding the cursor.
    pub fn deferred_error(page: &PageRequest) -> Option<ConnectorError> {
        let cursor = page.cursor.as_deref()?;
        let deferred = Cursor::decode::<Deferred>(cursor).ok()?;
        Some(ConnectorError::Unavailable(deferred.skipped_rows.message()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(cursor: Option<String>) -> PageRequest {
        PageRequest {
            cursor,
            max_items: 10,
        }
    }

    #[test]
    fn counts_per_reason_and_names_one_example_each() {
        let mut skipped = Skipped::new("findings", "Resource Graph rows");
        for i in 0..12 {
            skipped.record("lacked `properties.status`", &format!("/a/{i}"));
        }
        skipped.record("lacked `id`", "row 7");
        assert_eq!(skipped.total(), 13);
        assert_eq!(skipped.count("lacked `properties.status`"), 12);
        assert_eq!(
            skipped.message(),
            "findings incomplete: 12 Resource Graph rows lacked `properties.status` (e.g. \
             `/a/0`); 1 lacked `id` (e.g. `row 7`)"
        );
    }

    #[test]
    fn warns_once_per_reason() {
        crate::log::take_captured();
        let mut skipped = Skipped::new("findings", "rows");
        skipped.record("lacked `id`", "a");
        skipped.record("lacked `id`", "b");
        skipped.record("lacked `digest`", "c");
        let logged = crate::log::take_captured();
        assert_eq!(logged.len(), 2, "{logged:?}");
        assert!(logged[0].1.contains("lacked `id`") && logged[0].1.contains("`a`"));
    }

    #[test]
    fn nothing_skipped_ends_the_listing() {
        let skipped = Skipped::new("findings", "rows");
        assert!(skipped.is_empty());
        assert_eq!(skipped.finish(), None);
    }

    #[test]
    fn the_deferred_cursor_answers_unavailable_on_every_retry() {
        let mut skipped = Skipped::new("findings", "rows");
        skipped.record("lacked `id`", "x");
        let next = skipped.finish();
        for _ in 0..3 {
            let err = Skipped::deferred_error(&page(next.clone())).unwrap();
            assert_eq!(err.kind(), "unavailable");
            assert_eq!(
                err.message(),
                Some("findings incomplete: 1 rows lacked `id` (e.g. `x`)")
            );
        }
    }

    #[test]
    fn other_cursors_are_not_deferred_errors() {
        assert!(Skipped::deferred_error(&page(None)).is_none());
        let own = Cursor::encode(&serde_json::json!({"token": "t", "skip": 3}));
        assert!(Skipped::deferred_error(&page(Some(own))).is_none());
        assert!(Skipped::deferred_error(&page(Some("junk".into()))).is_none());
    }

    #[test]
    fn merge_adds_counts_and_keeps_first_examples() {
        let mut all = Skipped::new("findings", "rows");
        all.record("lacked `id`", "first");
        let mut page = Skipped::new("findings", "rows");
        page.record("lacked `id`", "second");
        page.record("lacked `digest`", "third");
        all.merge(&page);
        assert_eq!(all.count("lacked `id`"), 2);
        assert_eq!(all.count("lacked `digest`"), 1);
        assert!(all.message().contains("(e.g. `first`)"));
    }
}
