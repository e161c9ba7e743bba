//! What a finishing run resolves and marks removed, computed once and then applied, or kept for a
//! held run until it is accepted.
//!
//! [`Resolution::compute`] reads, inside the transaction that finishes the run, the open findings
//! and live inventory of the registries the run may resolve in (its
//! [`Coverage::resolvable`](crate::Coverage::resolvable)), keeps those of selected repositories,
//! and lists the ones the run did not see. [`Resolution::apply`] resolves and removes them;
//! [`Resolution::persist`] keeps the exact ids of a held run (`run_held`, delta-encoded like the
//! seen batches) and [`Resolution::load`] reads them back when it is accepted, so an accept
//! applies what the run computed, not what a recomputation would find later.

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::seen::{Seen, SeenSet};
use crate::{Error, Result, RunId};

/// Whether the operator selected (registry, repository).
pub(crate) type Selected<'a> = &'a dyn Fn(&str, &str) -> bool;

/// The ids a run resolves or marks removed, and the counts its guard is judged by.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Resolution {
    /// Open findings it did not see.
    pub(crate) findings: Vec<i64>,
    /// Live images it did not see.
    pub(crate) images: Vec<i64>,
    /// Live repositories it did not see.
    pub(crate) repositories: Vec<i64>,
    /// Live registries it did not see.
    pub(crate) registries: Vec<i64>,
    /// Open findings of the connection.
    pub(crate) open: u64,
    /// Open findings inside the resolvable, selected scope.
    pub(crate) open_in_covered: u64,
}

/// What applying a resolution changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Applied {
    pub(crate) findings: u64,
    pub(crate) images: u64,
}

/// Remembers `selected` per (registry, repository): a tenant has few repositories and many
/// findings, and the operator's globs are not free to match.
struct SelectionCache<'a> {
    selected: Selected<'a>,
    known: HashMap<String, HashMap<String, bool>>,
}

impl<'a> SelectionCache<'a> {
    fn new(selected: Selected<'a>) -> Self {
        Self {
            selected,
            known: HashMap::new(),
        }
    }

    fn get(&mut self, registry: &str, repository: &str) -> bool {
        if let Some(&answer) = self.known.get(registry).and_then(|r| r.get(repository)) {
            return answer;
        }
        let answer = (self.selected)(registry, repository);
        self.known
            .entry(registry.to_owned())
            .or_default()
            .insert(repository.to_owned(), answer);
        answer
    }
}

/// The row kinds a held run keeps, as named in `run_held.kind`.
const KINDS: [&str; 4] = ["findings", "images", "repositories", "registries"];

impl Resolution {
    /// Lists what `run` did not see inside `resolvable_json` (a JSON array of registry names)
    /// among the selected repositories of connection `connection_id`.
    pub(crate) fn compute(
        conn: &Connection,
        run: RunId,
        connection_id: i64,
        resolvable_json: &str,
        selected: Selected<'_>,
    ) -> Result<Self> {
        let mut selection = SelectionCache::new(selected);
        let mut out = Self {
            open: conn
                .prepare_cached(
                    "SELECT count(*) FROM findings WHERE connection_id = ?1 AND status = 'open'",
                )?
                .query_row([connection_id], |row| row.get::<_, i64>(0))?
                .max(0) as u64,
            ..Self::default()
        };

        let seen = SeenSet::load(conn, run, Seen::Findings)?;
        {
            let mut stmt = conn.prepare_cached(
                "SELECT f.id, i.registry, i.repository FROM findings f JOIN issues i ON i.id = f.issue_id
                 WHERE f.connection_id = ?1 AND f.status = 'open'
                   AND i.registry IN (SELECT value FROM json_each(?2))",
            )?;
            let mut rows = stmt.query(params![connection_id, resolvable_json])?;
            while let Some(row) = rows.next()? {
                let id: i64 = row.get(0)?;
                if selection.get(text(row, 1)?, text(row, 2)?) {
                    out.open_in_covered += 1;
                    if !seen.contains(id) {
                        out.findings.push(id);
                    }
                }
            }
        }

        let images = SeenSet::load(conn, run, Seen::Images)?;
        {
            let mut stmt = conn.prepare_cached(
                "SELECT im.id, rg.name, rp.name FROM images im
                 JOIN repositories rp ON rp.id = im.repository_id JOIN registries rg ON rg.id = rp.registry_id
                 WHERE rg.connection_id = ?1 AND im.removed_at IS NULL
                   AND rg.name IN (SELECT value FROM json_each(?2))",
            )?;
            let mut rows = stmt.query(params![connection_id, resolvable_json])?;
            while let Some(row) = rows.next()? {
                let id: i64 = row.get(0)?;
                if !images.contains(id) && selection.get(text(row, 1)?, text(row, 2)?) {
                    out.images.push(id);
                }
            }
        }

        {
            let mut stmt = conn.prepare_cached(
                "SELECT rp.id, rg.name, rp.name FROM repositories rp JOIN registries rg ON rg.id = rp.registry_id
                 WHERE rg.connection_id = ?1 AND rp.removed_at IS NULL AND rp.last_run_id IS NOT ?2
                   AND rg.name IN (SELECT value FROM json_each(?3))",
            )?;
            let mut rows = stmt.query(params![connection_id, run.0, resolvable_json])?;
            while let Some(row) = rows.next()? {
                let id: i64 = row.get(0)?;
                if selection.get(text(row, 1)?, text(row, 2)?) {
                    out.repositories.push(id);
                }
            }
        }

        out.registries = conn
            .prepare_cached(
                "SELECT id FROM registries
                 WHERE connection_id = ?1 AND removed_at IS NULL AND last_run_id IS NOT ?2
                   AND name IN (SELECT value FROM json_each(?3))",
            )?
            .query_map(params![connection_id, run.0, resolvable_json], |row| {
                row.get(0)
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(out)
    }

    /// Resolves the findings that are still open (events name `run`, and `actor` when an operator
    /// accepted it) and marks removed the inventory that is still live, at `at`.
    pub(crate) fn apply(
        &self,
        conn: &Connection,
        run: RunId,
        at: &str,
        actor: Option<&str>,
    ) -> Result<Applied> {
        stage(conn, &self.findings)?;
        conn.execute(
            "INSERT INTO events (at, kind, connection_id, issue_id, finding_id, run_id, actor, field, old_value, new_value)
             SELECT ?2, 'resolved', f.connection_id, f.issue_id, f.id, ?1, ?3, 'status', 'open', 'resolved'
             FROM findings f WHERE f.id IN (SELECT id FROM temp.staged) AND f.status = 'open' ORDER BY f.id",
            params![run.0, at, actor],
        )?;
        let findings = conn.execute(
            "UPDATE findings SET status = 'resolved', resolved_at = ?2, resolved_run_id = ?1
             WHERE id IN (SELECT id FROM temp.staged) AND status = 'open'",
            params![run.0, at],
        )?;
        let mut images = 0;
        for (table, ids) in [
            ("images", &self.images),
            ("repositories", &self.repositories),
            ("registries", &self.registries),
        ] {
            stage(conn, ids)?;
            let removed = conn.execute(
                &format!(
                    "UPDATE {table} SET removed_at = ?1
                     WHERE id IN (SELECT id FROM temp.staged) AND removed_at IS NULL"
                ),
                [at],
            )?;
            if table == "images" {
                images = removed;
            }
        }
        Ok(Applied {
            findings: findings as u64,
            images: images as u64,
        })
    }

    /// Keeps the ids for [`Resolution::load`], replacing any kept before for `run`.
    pub(crate) fn persist(&self, conn: &Connection, run: RunId) -> Result<()> {
        drop_held(conn, run)?;
        let lists = [
            &self.findings,
            &self.images,
            &self.repositories,
            &self.registries,
        ];
        for (kind, ids) in KINDS.into_iter().zip(lists) {
            if ids.is_empty() {
                continue;
            }
            let mut ids = ids.clone();
            let blob = crate::seen::encode(&mut ids);
            conn.prepare_cached("INSERT INTO run_held (run_id, kind, ids) VALUES (?1, ?2, ?3)")?
                .execute(params![run.0, kind, blob])?;
        }
        Ok(())
    }

    /// The ids [`Resolution::persist`] kept for `run` (the counts are not kept).
    pub(crate) fn load(conn: &Connection, run: RunId) -> Result<Self> {
        let mut out = Self::default();
        for kind in KINDS {
            let blob: Option<Vec<u8>> = conn
                .prepare_cached("SELECT ids FROM run_held WHERE run_id = ?1 AND kind = ?2")?
                .query_row(params![run.0, kind], |row| row.get(0))
                .optional()?;
            let ids = match blob {
                None => Vec::new(),
                Some(blob) => crate::seen::decode_ids(&blob).ok_or_else(|| Error::Corrupt {
                    column: "run_held.ids",
                    reason: format!("the `{kind}` ids of run `{run}` do not decode"),
                })?,
            };
            match kind {
                "findings" => out.findings = ids,
                "images" => out.images = ids,
                "repositories" => out.repositories = ids,
                _ => out.registries = ids,
            }
        }
        Ok(out)
    }
}

/// Drops what a held `run` kept.
pub(crate) fn drop_held(conn: &Connection, run: RunId) -> Result<()> {
    conn.prepare_cached("DELETE FROM run_held WHERE run_id = ?1")?
        .execute([run.0])?;
    Ok(())
}

/// Drops what held runs of the connection older than `run` kept: a run started after them, so
/// they can never be accepted.
pub(crate) fn drop_superseded(conn: &Connection, run: RunId, connection_id: i64) -> Result<()> {
    conn.prepare_cached(
        "DELETE FROM run_held WHERE run_id IN (
             SELECT id FROM scan_runs WHERE connection_id = ?2 AND id < ?1)",
    )?
    .execute(params![run.0, connection_id])?;
    Ok(())
}

/// Column `index` of `row` as text, borrowed.
fn text<'r>(row: &'r Row<'_>, index: usize) -> rusqlite::Result<&'r str> {
    row.get_ref(index)?.as_str().map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Text, Box::new(e))
    })
}

/// Puts `ids` in `temp.staged` for the statements that act on them: few things go away per run,
/// and a primary-key table is the cheapest `IN` for SQLite to probe.
fn stage(conn: &Connection, ids: &[i64]) -> Result<()> {
    conn.execute_batch(
        "CREATE TEMP TABLE IF NOT EXISTS staged (id INTEGER PRIMARY KEY); DELETE FROM temp.staged;",
    )?;
    let mut insert = conn.prepare_cached("INSERT OR IGNORE INTO temp.staged (id) VALUES (?1)")?;
    for id in ids {
        insert.execute([id])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_ids_read_back_exactly_and_a_damaged_row_is_an_error() {
        let store = crate::Store::open_in_memory().unwrap();
        let conn = &store.conn;
        conn.execute_batch(
            "INSERT INTO connections (id, name, plugin, created_at, updated_at) VALUES (1, 'prod', 'acr', 't', 't');
             INSERT INTO scan_runs (id, connection_id, trigger, requested_scope, status, started_at)
                 VALUES (4, 1, 'manual', '[]', 'held', 't');",
        )
        .unwrap();
        let kept = Resolution {
            findings: vec![9, 3, 300],
            images: vec![7],
            repositories: vec![],
            registries: vec![2],
            ..Resolution::default()
        };
        kept.persist(conn, RunId(4)).unwrap();
        let back = Resolution::load(conn, RunId(4)).unwrap();
        assert_eq!(back.findings, [3, 9, 300]);
        assert_eq!(back.images, [7]);
        assert!(back.repositories.is_empty());
        assert_eq!(back.registries, [2]);

        conn.execute(
            "UPDATE run_held SET ids = x'ff' WHERE run_id = 4 AND kind = 'findings'",
            [],
        )
        .unwrap();
        let err = Resolution::load(conn, RunId(4)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "stored value in `run_held.ids` is not valid: the `findings` ids of run `4` do not decode"
        );
        drop_held(conn, RunId(4)).unwrap();
        assert_eq!(
            Resolution::load(conn, RunId(4)).unwrap(),
            Resolution::default()
        );
    }
}
