//! Rows a connector could not use, counted so a listing that lost them says so.
//!
//! A source row that lacks a field the connector needs (an id, a status, a digest) must not
//! vanish silently: the host would read the listing as complete and resolve what the row held.
//! [`Skipped`] counts such rows per reason (logging a warning the first time each reason is
//! seen, with an example id), and notes *problems* of the listing itself that do not stop it
//! (a page whose `count` contradicts its rows). It travels in the listing's cursor so the call
//! stays stateless, and at the end of the listing turns into a [deferred
//! error](crate::pager::deferred): the last page is returned as usual with the cursor from
//! [`Skipped::finish`], and the call with that cursor answers `unavailable` naming the counts,
//! the same on every retry. The host keeps every item returned and records the listing as
//! incomplete.
//!
//! ```
//! # use keelson_plugin_sdk::{PageRequest, skipped::Skipped};
//! let mut skipped = Skipped::new("findings", "Resource Graph rows");
//! skipped.record("lacked `properties.status`", "/subscriptions/s/…/assessments/a1");
//! // Last upstream page: return its items with this `next`.
//! let next = skipped.finish();
//! assert!(next.is_some());
//! // The host calls again with it; decoding the cursor gives the error.
//! let page = PageRequest { cursor: next, max_items: 100 };
//! let err = page.state::<serde_json::Value>().unwrap_err();
//! assert_eq!(err.kind(), "unavailable");
//! ```

use serde::{Deserialize, Serialize};

use crate::pager::{deferred, shorten};

/// How long an example id may be in a message.
const EXAMPLE_MAX: usize = 200;

/// Rows skipped in one listing, per reason, and problems of the listing, each in the order
/// first seen.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    /// What the listing is, for the message (`findings`).
    listing: String,
    /// What a row is (`Resource Graph rows`).
    rows: String,
    reasons: Vec<Reason>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    problems: Vec<Reason>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Reason {
    text: String,
    count: u64,
    example: String,
}

impl Skipped {
    /// No rows skipped yet in `listing` (e.g. `findings`), whose rows are called `rows` (e.g.
    /// `Resource Graph rows`).
    pub fn new(listing: &str, rows: &str) -> Self {
        Self {
            listing: listing.to_owned(),
            rows: rows.to_owned(),
            reasons: Vec::new(),
            problems: Vec::new(),
        }
    }

    /// Counts one row skipped for `reason` (e.g. ``lacked `properties.status` ``), with the id
    /// that names it (kept for the first row of each reason, and logged as a warning then).
    /// The id must not be secret; it is shortened.
    pub fn record(&mut self, reason: &str, example: &str) {
        if count(&mut self.reasons, reason, example) {
            crate::log::warn(&format!(
                "{}: {} {reason} and were skipped (e.g. `{}`); the listing will end incomplete",
                self.listing,
                self.rows,
                shorten(example, EXAMPLE_MAX)
            ));
        }
    }

    /// Notes a problem of the listing that does not stop it (e.g. ``a page's `count`
    /// contradicted its rows``), with the detail of its first occurrence (e.g. `count 4, 3
    /// rows`); logged the first time. Like a skipped row, it makes the listing end incomplete.
    pub fn problem(&mut self, problem: &str, detail: &str) {
        if count(&mut self.problems, problem, detail) {
            crate::log::warn(&format!(
                "{}: {problem} ({}); the listing will end incomplete",
                self.listing,
                shorten(detail, EXAMPLE_MAX)
            ));
        }
    }

    /// Adds the counts of `other` (e.g. one page's) to these.
    pub fn merge(&mut self, other: &Self) {
        for (mine, theirs) in [
            (&mut self.reasons, &other.reasons),
            (&mut self.problems, &other.problems),
        ] {
            for reason in theirs {
                match mine.iter_mut().find(|r| r.text == reason.text) {
                    Some(known) => known.count += reason.count,
                    None => mine.push(reason.clone()),
                }
            }
        }
    }

    /// How many rows were skipped, for every reason.
    pub fn total(&self) -> u64 {
        self.reasons.iter().map(|r| r.count).sum()
    }

    /// Whether no row was skipped and no problem noted.
    pub fn is_empty(&self) -> bool {
        self.reasons.is_empty() && self.problems.is_empty()
    }

    /// How many rows were skipped for `reason`.
    pub fn count(&self, reason: &str) -> u64 {
        self.reasons
            .iter()
            .find(|r| r.text == reason)
            .map_or(0, |r| r.count)
    }

    /// The operator message: ``findings incomplete: a page's `count` contradicted its rows (2
    /// times; first: `count 4, 3 rows`); 12 Resource Graph rows lacked `properties.status`
    /// (e.g. `<id>`); 1 lacked `id` (e.g. `<id>`)``.
    pub fn message(&self) -> String {
        let problems = self.problems.iter().map(|p| match p.count {
            1 => format!("{} (`{}`)", p.text, p.example),
            n => format!("{} ({n} times; first: `{}`)", p.text, p.example),
        });
        let rows = self.reasons.iter().enumerate().map(|(i, r)| {
            let rows = if i == 0 {
                format!(" {}", self.rows)
            } else {
                String::new()
            };
            format!("{}{rows} {} (e.g. `{}`)", r.count, r.text, r.example)
        });
        let parts: Vec<String> = problems.chain(rows).collect();
        format!("{} incomplete: {}", self.listing, parts.join("; "))
    }

    /// The `next` cursor of the listing's last page: `None` when nothing was skipped (the
    /// listing ends), else a [deferred error](crate::pager::deferred) with [`Self::message`].
    pub fn finish(&self) -> Option<String> {
        (!self.is_empty()).then(|| deferred(&self.message()))
    }
}

/// Counts one more of `text` in `list`; `true` when it is the first.
fn count(list: &mut Vec<Reason>, text: &str, example: &str) -> bool {
    if let Some(known) = list.iter_mut().find(|r| r.text == text) {
        known.count += 1;
        return false;
    }
    list.push(Reason {
        text: text.to_owned(),
        count: 1,
        example: shorten(example, EXAMPLE_MAX),
    });
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PageRequest;
    use crate::pager::Cursor;

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
            let err = page(next.clone()).state::<serde_json::Value>().unwrap_err();
            assert_eq!(err.kind(), "unavailable");
            assert_eq!(
                err.message(),
                Some("findings incomplete: 1 rows lacked `id` (e.g. `x`)")
            );
        }
    }

    #[test]
    fn problems_come_first_and_count_like_rows() {
        crate::log::take_captured();
        let mut skipped = Skipped::new("findings", "rows");
        skipped.record("lacked `id`", "row 3");
        skipped.problem("a page's `count` contradicted its rows", "count 4, 3 rows");
        skipped.problem("a page's `count` contradicted its rows", "count 9, 8 rows");
        assert_eq!(skipped.total(), 1, "problems are not rows");
        assert_eq!(
            skipped.message(),
            "findings incomplete: a page's `count` contradicted its rows (2 times; first: \
             `count 4, 3 rows`); 1 rows lacked `id` (e.g. `row 3`)"
        );
        assert_eq!(crate::log::take_captured().len(), 2, "one warning each");

        let mut only = Skipped::new("findings", "rows");
        only.problem("more rows than `totalRecords`", "1001 of 1000");
        assert!(!only.is_empty());
        assert!(only.finish().is_some());
        let mut merged = Skipped::new("findings", "rows");
        merged.merge(&skipped);
        merged.merge(&only);
        assert!(merged.message().contains("(2 times;"));
        assert!(
            merged
                .message()
                .contains("more rows than `totalRecords` (`1001 of 1000`)")
        );
    }

    #[test]
    fn it_survives_a_cursor_round_trip() {
        let mut skipped = Skipped::new("findings", "rows");
        skipped.record("lacked `id`", "x");
        skipped.problem("looped", "detail");
        let back: Skipped = Cursor::decode(&Cursor::encode(&skipped)).unwrap();
        assert_eq!(back, skipped);
        // Cursors written before problems existed still decode.
        let old = Cursor::encode(&serde_json::json!({"listing": "f", "rows": "r", "reasons": []}));
        assert!(Cursor::decode::<Skipped>(&old).unwrap().is_empty());
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
