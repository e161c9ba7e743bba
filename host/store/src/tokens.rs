//! API tokens of `keelson serve`, and the audit events of changes made through it.
//!
//! Only a token's SHA-256 is stored: the token itself is shown once, when it is created, and a
//! copy of the database does not let anyone sign in.

use rusqlite::{OptionalExtension as _, params};
use serde::Serialize;

use crate::{Error, Result, Store, now};

/// One API token, without its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiToken {
    pub id: i64,
    pub name: String,
    /// `viewer`, `operator` or `admin`.
    pub role: String,
    pub created_at: String,
    pub created_by: String,
    pub revoked_at: Option<String>,
}

/// The roles a token may have, weakest first.
pub const TOKEN_ROLES: [&str; 3] = ["viewer", "operator", "admin"];

fn token_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<ApiToken> {
    Ok(ApiToken {
        id: row.get(0)?,
        name: row.get(1)?,
        role: row.get(2)?,
        created_at: row.get(3)?,
        created_by: row.get(4)?,
        revoked_at: row.get(5)?,
    })
}

const TOKEN_COLUMNS: &str = "id, name, role, created_at, created_by, revoked_at";

impl Store {
    /// Records a new token `name` with `role`, identified by the hex SHA-256 of its value.
    pub fn create_token(
        &mut self,
        name: &str,
        role: &str,
        token_sha256: &str,
        actor: &str,
    ) -> Result<ApiToken> {
        if !TOKEN_ROLES.contains(&role) {
            return Err(Error::InvalidRole(role.to_owned()));
        }
        let tx = self.write()?;
        let at = now(&tx)?;
        let taken: Option<i64> = tx
            .query_row("SELECT id FROM api_tokens WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()?;
        if taken.is_some() {
            return Err(Error::TokenExists(name.to_owned()));
        }
        tx.execute(
            "INSERT INTO api_tokens (name, role, token_sha256, created_at, created_by) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![name, role, token_sha256, at, actor],
        )?;
        let id = tx.last_insert_rowid();
        tx.execute(
            "INSERT INTO events (at, kind, actor, field, new_value) VALUES (?1, 'token-created', ?2, ?3, ?4)",
            params![at, actor, name, role],
        )?;
        let token = tx.query_row(
            &format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = ?1"),
            [id],
            token_from_row,
        )?;
        tx.commit()?;
        Ok(token)
    }

    /// The unrevoked token whose value hashes to `token_sha256`.
    pub fn token_by_hash(&self, token_sha256: &str) -> Result<Option<ApiToken>> {
        Ok(self
            .conn
            .query_row(
                &format!(
                    "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE token_sha256 = ?1 AND revoked_at IS NULL"
                ),
                [token_sha256],
                token_from_row,
            )
            .optional()?)
    }

    /// Every token, oldest first.
    pub fn tokens(&self) -> Result<Vec<ApiToken>> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY id"
        ))?;
        let rows = stmt.query_map([], token_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Revokes token `name`; `false` when there is no such unrevoked token.
    pub fn revoke_token(&mut self, name: &str, actor: &str) -> Result<bool> {
        let tx = self.write()?;
        let at = now(&tx)?;
        let changed = tx.execute(
            "UPDATE api_tokens SET revoked_at = ?1 WHERE name = ?2 AND revoked_at IS NULL",
            params![at, name],
        )?;
        if changed > 0 {
            tx.execute(
                "INSERT INTO events (at, kind, actor, field) VALUES (?1, 'token-revoked', ?2, ?3)",
                params![at, actor, name],
            )?;
        }
        tx.commit()?;
        Ok(changed > 0)
    }

    /// Appends an audit event `kind` by `actor`, about connection `connection` when given.
    pub fn audit(
        &mut self,
        kind: &str,
        connection: Option<&str>,
        actor: &str,
        detail: Option<&str>,
    ) -> Result<()> {
        let tx = self.write()?;
        let at = now(&tx)?;
        let connection_id: Option<i64> = match connection {
            Some(name) => Some(
                tx.query_row("SELECT id FROM connections WHERE name = ?1", [name], |r| {
                    r.get(0)
                })
                .optional()?
                .ok_or_else(|| Error::UnknownConnection(name.to_owned()))?,
            ),
            None => None,
        };
        tx.execute(
            "INSERT INTO events (at, kind, connection_id, actor, new_value) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![at, kind, connection_id, actor, detail],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The newest `limit` events whose actor is `actor` (newest first).
    pub fn events_by_actor(&self, actor: &str, limit: usize) -> Result<Vec<(String, String)>> {
        let mut stmt = self
            .conn
            .prepare("SELECT at, kind FROM events WHERE actor = ?1 ORDER BY id DESC LIMIT ?2")?;
        let rows = stmt.query_map(params![actor, limit as i64], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_found_by_hash_until_revoked() {
        let mut store = Store::open_in_memory().unwrap();
        let token = store.create_token("ci", "viewer", "ab12", "cli").unwrap();
        assert_eq!(token.role, "viewer");
        assert_eq!(store.token_by_hash("ab12").unwrap().unwrap().name, "ci");
        assert!(store.token_by_hash("ab13").unwrap().is_none());
        assert!(matches!(
            store.create_token("ci", "admin", "cd34", "cli"),
            Err(Error::TokenExists(n)) if n == "ci"
        ));
        assert!(matches!(
            store.create_token("x", "root", "ef56", "cli"),
            Err(Error::InvalidRole(r)) if r == "root"
        ));
        assert!(store.revoke_token("ci", "cli").unwrap());
        assert!(!store.revoke_token("ci", "cli").unwrap());
        assert!(store.token_by_hash("ab12").unwrap().is_none());
        let kinds: Vec<String> = store
            .events_by_actor("cli", 10)
            .unwrap()
            .into_iter()
            .map(|(_, k)| k)
            .collect();
        assert_eq!(kinds, ["token-revoked", "token-created"]);
    }

    #[test]
    fn audit_names_the_actor_and_checks_the_connection() {
        let mut store = Store::open_in_memory().unwrap();
        store.audit("signed-in", None, "token:ana", None).unwrap();
        assert!(matches!(
            store.audit("scan-requested", Some("nope"), "token:ana", None),
            Err(Error::UnknownConnection(n)) if n == "nope"
        ));
        assert_eq!(store.events_by_actor("token:ana", 5).unwrap().len(), 1);
    }
}
