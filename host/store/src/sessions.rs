//! Signed-in browser sessions of `keelson serve`, kept in the store so a restart signs nobody
//! out.
//!
//! Only the SHA-256 of a session's cookie value is stored. A session is live while it has not
//! expired, was used within the server's idle time, and its API token is not revoked: revoking
//! a token ends its sessions at once, because every lookup joins the token.

use std::time::Duration;

use rusqlite::{OptionalExtension as _, params};

use crate::{ApiToken, Result, Store, now};

/// A live session: the token it stands for and the CSRF token its pages echo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebSession {
    pub token: ApiToken,
    pub csrf: String,
    pub expires_at: String,
    /// Its last recorded use is old enough that this one should be recorded
    /// ([`Store::touch_session`]); [`Store::session`] has done so already.
    pub touch_due: bool,
}

/// `+N seconds` for SQLite's date functions.
fn seconds(d: Duration, sign: char) -> String {
    format!("{sign}{} seconds", d.as_secs().max(1))
}

impl Store {
    /// Starts a session for token `token_id` that ends `lifetime` from now at the latest.
    /// Sessions already past their end are dropped on the way.
    pub fn create_session(
        &mut self,
        cookie_sha256: &str,
        token_id: i64,
        csrf: &str,
        lifetime: Duration,
    ) -> Result<()> {
        let tx = self.write()?;
        let at = now(&tx)?;
        tx.execute("DELETE FROM web_sessions WHERE expires_at <= ?1", [&at])?;
        tx.execute(
            "INSERT INTO web_sessions (cookie_sha256, token_id, csrf, created_at, last_used, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?4, strftime('%Y-%m-%dT%H:%M:%fZ', ?4, ?5))",
            params![cookie_sha256, token_id, csrf, at, seconds(lifetime, '+')],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The live session whose cookie hashes to `cookie_sha256`, marking it used: not expired,
    /// used within `idle`, and its token not revoked.
    pub fn session(&mut self, cookie_sha256: &str, idle: Duration) -> Result<Option<WebSession>> {
        let Some(mut session) = self.find_session(cookie_sha256, idle)? else {
            return Ok(None);
        };
        if session.touch_due {
            self.touch_session(cookie_sha256)?;
            session.touch_due = false;
        }
        Ok(Some(session))
    }

    /// The live session whose cookie hashes to `cookie_sha256`, like [`Store::session`], without
    /// marking it used: it only reads, so a read-only store answers it while another connection
    /// writes. When its `touch_due` is set, [`Store::touch_session`] should record the use.
    pub fn find_session(&self, cookie_sha256: &str, idle: Duration) -> Result<Option<WebSession>> {
        let at = now(&self.conn)?;
        Ok(self
            .conn
            .prepare_cached(
                "SELECT s.csrf, s.expires_at, s.last_used < strftime('%Y-%m-%dT%H:%M:%fZ', ?2, ?4),
                        t.id, t.name, t.role, t.created_at, t.created_by, t.revoked_at
                 FROM web_sessions s JOIN api_tokens t ON t.id = s.token_id
                 WHERE s.cookie_sha256 = ?1 AND t.revoked_at IS NULL AND s.expires_at > ?2
                   AND s.last_used > strftime('%Y-%m-%dT%H:%M:%fZ', ?2, ?3)",
            )?
            .query_row(
                params![
                    cookie_sha256,
                    at,
                    seconds(idle, '-'),
                    // Marking a session used is a write: do it at most every tenth of the idle
                    // time (and at least every minute), not on every request.
                    seconds((idle / 10).min(Duration::from_mins(1)), '-'),
                ],
                |r| {
                    Ok(WebSession {
                        csrf: r.get(0)?,
                        expires_at: r.get(1)?,
                        touch_due: r.get(2)?,
                        token: ApiToken {
                            id: r.get(3)?,
                            name: r.get(4)?,
                            role: r.get(5)?,
                            created_at: r.get(6)?,
                            created_by: r.get(7)?,
                            revoked_at: r.get(8)?,
                        },
                    })
                },
            )
            .optional()?)
    }

    /// Records that the session whose cookie hashes to `cookie_sha256` was used now.
    pub fn touch_session(&mut self, cookie_sha256: &str) -> Result<()> {
        let at = now(&self.conn)?;
        self.conn.execute(
            "UPDATE web_sessions SET last_used = ?2 WHERE cookie_sha256 = ?1",
            params![cookie_sha256, at],
        )?;
        Ok(())
    }

    /// Ends the session whose cookie hashes to `cookie_sha256`; `false` if there was none.
    pub fn end_session(&mut self, cookie_sha256: &str) -> Result<bool> {
        Ok(self.conn.execute(
            "DELETE FROM web_sessions WHERE cookie_sha256 = ?1",
            [cookie_sha256],
        )? > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_survive_reopening_and_end_with_their_token() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("k.db");
        let idle = Duration::from_hours(1);
        {
            let mut store = Store::open(&db).unwrap();
            let token = store.create_token("ana", "operator", "t1", "cli").unwrap();
            store
                .create_session("c1", token.id, "csrf-1", Duration::from_hours(24))
                .unwrap();
            store
                .create_session("c2", token.id, "csrf-2", Duration::from_hours(24))
                .unwrap();
        }
        let mut store = Store::open(&db).unwrap();
        let session = store.session("c1", idle).unwrap().unwrap();
        assert_eq!(session.token.name, "ana");
        assert_eq!(session.csrf, "csrf-1");
        assert!(store.session("c3", idle).unwrap().is_none());
        // Only the hash is stored: the table never holds what the cookie would need.
        let hashes: Vec<String> = store
            .conn
            .prepare("SELECT cookie_sha256 FROM web_sessions ORDER BY id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(hashes, ["c1", "c2"]);
        assert!(store.end_session("c1").unwrap());
        assert!(!store.end_session("c1").unwrap());
        assert!(store.session("c1", idle).unwrap().is_none());
        assert!(store.session("c2", idle).unwrap().is_some());
        store.revoke_token("ana", "cli").unwrap();
        assert!(store.session("c2", idle).unwrap().is_none());
    }

    #[test]
    fn finding_a_session_only_reads_and_says_when_its_use_is_due_to_be_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("k.db");
        let mut store = Store::open(&db).unwrap();
        let token = store.create_token("ana", "viewer", "t1", "cli").unwrap();
        store
            .create_session("c1", token.id, "x", Duration::from_hours(1))
            .unwrap();
        let reader = Store::open_read_only(&db).unwrap();
        let idle = Duration::from_hours(8);
        let fresh = reader.find_session("c1", idle).unwrap().unwrap();
        assert_eq!(fresh.token.name, "ana");
        assert!(!fresh.touch_due, "just created");
        let last_used = |s: &Store| -> String {
            s.conn
                .query_row("SELECT last_used FROM web_sessions", [], |r| r.get(0))
                .unwrap()
        };
        store
            .conn
            .execute(
                "UPDATE web_sessions SET last_used = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-600 seconds')",
                [],
            )
            .unwrap();
        let before = last_used(&store);
        assert!(reader.find_session("c1", idle).unwrap().unwrap().touch_due);
        assert_eq!(last_used(&store), before, "finding wrote nothing");
        store.touch_session("c1").unwrap();
        assert!(last_used(&store) > before);
        assert!(!reader.find_session("c1", idle).unwrap().unwrap().touch_due);
        assert!(reader.find_session("c2", idle).unwrap().is_none());
    }

    #[test]
    fn sessions_end_when_idle_or_expired() {
        let mut store = Store::open_in_memory().unwrap();
        let token = store.create_token("ana", "viewer", "t1", "cli").unwrap();
        store
            .create_session("c1", token.id, "x", Duration::from_hours(1))
            .unwrap();
        // Pretend the session was last used two hours ago and expires in an hour.
        store
            .conn
            .execute(
                "UPDATE web_sessions SET last_used = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-7200 seconds')",
                [],
            )
            .unwrap();
        assert!(
            store
                .session("c1", Duration::from_hours(1))
                .unwrap()
                .is_none()
        );
        assert!(
            store
                .session("c1", Duration::from_hours(3))
                .unwrap()
                .is_some()
        );
        store
            .conn
            .execute(
                "UPDATE web_sessions SET expires_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-1 seconds')",
                [],
            )
            .unwrap();
        assert!(
            store
                .session("c1", Duration::from_hours(3))
                .unwrap()
                .is_none()
        );
        // Expired sessions are swept when the next one starts.
        store
            .create_session("c2", token.id, "y", Duration::from_hours(1))
            .unwrap();
        let left: i64 = store
            .conn
            .query_row("SELECT count(*) FROM web_sessions", [], |r| r.get(0))
            .unwrap();
        assert_eq!(left, 1);
    }
}
