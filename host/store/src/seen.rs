//! What a run saw: the finding and image ids of each ingested page, kept as one compact row per
//! page (`run_seen`, `run_seen_images`) so that an unchanged finding or image costs no write of
//! its own row.
//!
//! A page's ids are sorted, deduplicated and stored as LEB128 varints of their deltas (one or two
//! bytes per finding in practice). When a complete or partial run finishes, [`SeenSet::load`]
//! reads the run's batches into a bitmap over finding ids (one bit per id, so 1M findings cost
//! 125 KB) and the open findings of the registries it may resolve in that it does not contain are
//! resolved (or, for a held run, kept in `run_held` in the same encoding, see `crate::resolve`).

use rusqlite::{Connection, params};

use crate::{Error, Result, RunId};

/// Encodes ids as sorted, deduplicated LEB128 deltas.
pub(crate) fn encode(ids: &mut Vec<i64>) -> Vec<u8> {
    ids.sort_unstable();
    ids.dedup();
    let mut out = Vec::with_capacity(ids.len() * 2);
    let mut previous = 0i64;
    for &id in ids.iter() {
        let mut delta = u64::try_from(id - previous).expect("ids are sorted and positive");
        previous = id;
        loop {
            let byte = (delta & 0x7f) as u8;
            delta >>= 7;
            if delta == 0 {
                out.push(byte);
                break;
            }
            out.push(byte | 0x80);
        }
    }
    out
}

/// Decodes what [`encode`] wrote, calling `each` with every id; `None` if the bytes are cut short
/// or a value overflows.
fn decode(bytes: &[u8], mut each: impl FnMut(u64)) -> Option<()> {
    let mut id = 0u64;
    let mut delta = 0u64;
    let mut shift = 0u32;
    for &byte in bytes {
        if shift > 63 {
            return None;
        }
        delta |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            id = id.checked_add(delta)?;
            each(id);
            delta = 0;
            shift = 0;
        } else {
            shift += 7;
        }
    }
    (shift == 0).then_some(())
}

/// Decodes what [`encode`] wrote into ids; `None` if the bytes are damaged or an id does not fit.
pub(crate) fn decode_ids(bytes: &[u8]) -> Option<Vec<i64>> {
    let mut ids = Vec::new();
    let mut fits = true;
    decode(bytes, |id| match i64::try_from(id) {
        Ok(id) => ids.push(id),
        Err(_) => fits = false,
    })?;
    fits.then_some(ids)
}

/// What the ids of a batch are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seen {
    Findings,
    Images,
}

impl Seen {
    /// The table and its id column.
    fn table(self) -> (&'static str, &'static str) {
        match self {
            Self::Findings => ("run_seen", "finding_ids"),
            Self::Images => ("run_seen_images", "image_ids"),
        }
    }
}

/// Records one page's ids of `kind` for `run` as the next batch, and empties `ids`.
pub(crate) fn record(conn: &Connection, run: RunId, kind: Seen, ids: &mut Vec<i64>) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let blob = encode(ids);
    ids.clear();
    let (table, column) = kind.table();
    conn.prepare_cached(&format!(
        "INSERT INTO {table} (run_id, batch, {column})
         VALUES (?1, (SELECT coalesce(max(batch), 0) + 1 FROM {table} WHERE run_id = ?1), ?2)"
    ))?
    .execute(params![run.0, blob])?;
    Ok(())
}

/// Drops the batches of `run` and of every finished run of its connection (left by a crash).
pub(crate) fn forget(conn: &Connection, run: RunId, connection_id: i64) -> Result<()> {
    for kind in [Seen::Findings, Seen::Images] {
        let (table, _) = kind.table();
        conn.prepare_cached(&format!(
            "DELETE FROM {table} WHERE run_id = ?1 OR run_id IN (
                 SELECT id FROM scan_runs WHERE connection_id = ?2 AND status <> 'running')"
        ))?
        .execute(params![run.0, connection_id])?;
    }
    Ok(())
}

/// The finding ids a run saw, as a bitmap.
#[derive(Debug, Default)]
pub(crate) struct SeenSet {
    words: Vec<u64>,
    len: u64,
}

impl SeenSet {
    fn insert(&mut self, id: u64) {
        let word = usize::try_from(id / 64).expect("finding ids fit in memory");
        if word >= self.words.len() {
            self.words.resize(word + 1, 0);
        }
        let bit = 1u64 << (id % 64);
        if self.words[word] & bit == 0 {
            self.words[word] |= bit;
            self.len += 1;
        }
    }

    pub(crate) fn contains(&self, id: i64) -> bool {
        let Ok(id) = u64::try_from(id) else {
            return false;
        };
        usize::try_from(id / 64)
            .ok()
            .and_then(|word| self.words.get(word))
            .is_some_and(|w| w & (1u64 << (id % 64)) != 0)
    }

    /// How many distinct ids the set holds.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Reads every batch `run` recorded. A batch that does not decode is an error: resolving
    /// against a partial set would resolve findings the run did see.
    pub(crate) fn load(conn: &Connection, run: RunId, kind: Seen) -> Result<Self> {
        let mut set = Self::default();
        let (table, column) = kind.table();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT batch, {column} FROM {table} WHERE run_id = ?1"
        ))?;
        let mut rows = stmt.query([run.0])?;
        while let Some(row) = rows.next()? {
            let batch: i64 = row.get(0)?;
            let corrupt = Error::CorruptSeenBatch { run, batch };
            let Ok(blob) = row.get_ref(1)?.as_blob() else {
                return Err(corrupt);
            };
            decode(blob, |id| set.insert(id)).ok_or(corrupt)?;
        }
        Ok(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(bytes: &[u8]) -> Option<Vec<u64>> {
        let mut out = Vec::new();
        decode(bytes, |id| out.push(id))?;
        Some(out)
    }

    #[test]
    fn ids_round_trip_sorted_and_deduplicated() {
        let mut ids = vec![300, 1, 5, 5, 1 << 40, 2, 128, 127];
        let bytes = encode(&mut ids);
        assert_eq!(
            decoded(&bytes).unwrap(),
            vec![1, 2, 5, 127, 128, 300, 1 << 40]
        );
    }

    #[test]
    fn dense_ids_cost_one_byte_each() {
        let mut ids: Vec<i64> = (1000..2000).collect();
        let bytes = encode(&mut ids);
        // The first delta (1000) takes two bytes, every other one byte.
        assert_eq!(bytes.len(), 1001);
    }

    #[test]
    fn a_cut_short_batch_does_not_decode() {
        let mut ids = vec![1, 1 << 20];
        let bytes = encode(&mut ids);
        assert!(decoded(&bytes[..bytes.len() - 1]).is_none());
    }

    #[test]
    fn the_set_answers_membership() {
        let mut set = SeenSet::default();
        for id in [3u64, 64, 65, 1_000_000] {
            set.insert(id);
        }
        set.insert(64);
        assert_eq!(set.len(), 4);
        for id in [3, 64, 65, 1_000_000] {
            assert!(set.contains(id), "{id}");
        }
        for id in [0, 2, 4, 63, 66, 999_999, 2_000_000, -1] {
            assert!(!set.contains(id), "{id}");
        }
    }
}
