//! Connections: a named account of one plugin, its settings, sealed secrets and location selection.

use std::collections::BTreeMap;

use rusqlite::{OptionalExtension, params};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::secrets::{self, Keyring, Sealed};
use crate::{ConnectionId, Error, Result, Store, from_json, now, to_json};

/// A connection as the operator declares it: what [`Store::save_connection`] writes.
#[derive(Debug, Clone)]
pub struct ConnectionSpec {
    pub name: String,
    pub plugin: String,
    /// Non-secret settings, stored as JSON.
    pub settings: BTreeMap<String, String>,
    /// Secret settings, sealed before they reach the database.
    pub secrets: BTreeMap<String, SecretString>,
}

impl ConnectionSpec {
    pub fn new(name: impl Into<String>, plugin: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            plugin: plugin.into(),
            settings: BTreeMap::new(),
            secrets: BTreeMap::new(),
        }
    }
}

/// Whether a selection rule adds or removes matching locations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SelectionAction {
    Select,
    Deselect,
}

impl SelectionAction {
    fn as_str(self) -> &'static str {
        match self {
            Self::Select => "select",
            Self::Deselect => "deselect",
        }
    }
}

/// One `--select GLOB` / `--deselect GLOB`. The store keeps the order; the last matching rule wins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelectionRule {
    pub action: SelectionAction,
    pub pattern: String,
}

/// A registry known from earlier runs of a connection, with its repositories, for
/// `keelson locations`. Removed ones were missing from a run that read their registry completely.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KnownRegistry {
    pub name: String,
    pub removed: bool,
    pub last_seen: String,
    /// `(name, removed)`, by name.
    pub repositories: Vec<(String, bool)>,
}

/// A stored connection. Secret values are not here: only their names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredConnection {
    pub id: ConnectionId,
    pub name: String,
    pub plugin: String,
    pub settings: BTreeMap<String, String>,
    pub secret_keys: Vec<String>,
    pub selection: Vec<SelectionRule>,
    pub created_at: String,
    pub updated_at: String,
}

impl Store {
    /// Creates or replaces the connection named `spec.name`: plugin, settings and the whole set of
    /// stored secrets (sealed with the keyring's current key). Selection rules are kept.
    pub fn save_connection(
        &mut self,
        spec: &ConnectionSpec,
        keys: &Keyring,
        actor: &str,
    ) -> Result<ConnectionId> {
        let tx = self.write()?;
        let at = now(&tx)?;
        let id: i64 = tx.query_row(
            "INSERT INTO connections (name, plugin, settings, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?4)
             ON CONFLICT (name) DO UPDATE SET plugin = excluded.plugin, settings = excluded.settings,
                 updated_at = excluded.updated_at
             RETURNING id",
            params![spec.name, spec.plugin, to_json(&spec.settings), at],
            |row| row.get(0),
        )?;
        tx.execute(
            "DELETE FROM connection_secrets WHERE connection_id = ?1",
            [id],
        )?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO connection_secrets (connection_id, key, key_id, nonce, ciphertext, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for (key, value) in &spec.secrets {
                let sealed = secrets::seal(keys.current(), &spec.name, key, value)?;
                insert.execute(params![
                    id,
                    key,
                    sealed.key_id,
                    sealed.nonce,
                    sealed.ciphertext,
                    at
                ])?;
            }
        }
        let secret_names: Vec<&String> = spec.secrets.keys().collect();
        tx.execute(
            "INSERT INTO events (at, kind, connection_id, actor, new_value) VALUES (?1, 'connection-saved', ?2, ?3, ?4)",
            params![
                at,
                id,
                actor,
                to_json(&serde_json::json!({
                    "plugin": spec.plugin,
                    "settings": spec.settings,
                    "secrets": secret_names,
                }))
            ],
        )?;
        tx.commit()?;
        Ok(ConnectionId(id))
    }

    /// The connection named `name`, if any.
    pub fn connection(&self, name: &str) -> Result<Option<StoredConnection>> {
        let row = self
            .conn
            .prepare_cached("SELECT id, name, plugin, settings, created_at, updated_at FROM connections WHERE name = ?1 AND retired_at IS NULL")?
            .query_row([name], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, String>(3)?,
                    row.get::<_, String>(4)?,
                    row.get::<_, String>(5)?,
                ))
            })
            .optional()?;
        let Some((id, name, plugin, settings, created_at, updated_at)) = row else {
            return Ok(None);
        };
        let secret_keys = self
            .conn
            .prepare_cached(
                "SELECT key FROM connection_secrets WHERE connection_id = ?1 ORDER BY key",
            )?
            .query_map([id], |row| row.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        let selection = self.selection_of(id)?;
        Ok(Some(StoredConnection {
            id: ConnectionId(id),
            name,
            plugin,
            settings: from_json("connections.settings", &settings)?,
            secret_keys,
            selection,
            created_at,
            updated_at,
        }))
    }

    /// Every connection that is not retired, by name.
    pub fn connections(&self) -> Result<Vec<StoredConnection>> {
        let names: Vec<String> = self
            .conn
            .prepare_cached("SELECT name FROM connections WHERE retired_at IS NULL ORDER BY name")?
            .query_map([], |row| row.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            out.extend(self.connection(&name)?);
        }
        Ok(out)
    }

    /// Opens the stored secrets of connection `name`. A missing or wrong key is an error naming
    /// the connection, the setting and the key id, never the value.
    pub fn connection_secrets(
        &self,
        name: &str,
        keys: &Keyring,
    ) -> Result<BTreeMap<String, SecretString>> {
        let id = self.connection_id(name)?;
        let rows: Vec<(String, Sealed)> = self
            .conn
            .prepare_cached(
                "SELECT key, key_id, nonce, ciphertext FROM connection_secrets WHERE connection_id = ?1 ORDER BY key",
            )?
            .query_map([id.0], |row| {
                Ok((
                    row.get(0)?,
                    Sealed {
                        key_id: row.get(1)?,
                        nonce: row.get(2)?,
                        ciphertext: row.get(3)?,
                    },
                ))
            })?
            .collect::<rusqlite::Result<_>>()?;
        rows.into_iter()
            .map(|(key, sealed)| {
                let value = secrets::open(keys, name, &key, &sealed)?;
                Ok((key, value))
            })
            .collect()
    }

    /// Re-seals every secret not under the keyring's current key. Returns how many were re-sealed.
    ///
    /// All or nothing: if any secret cannot be opened with the keyring, nothing changes.
    pub fn rotate_secrets(&mut self, keys: &Keyring) -> Result<usize> {
        let tx = self.write()?;
        let at = now(&tx)?;
        let rows: Vec<(i64, String, String, Sealed)> = tx
            .prepare(
                "SELECT s.connection_id, c.name, s.key, s.key_id, s.nonce, s.ciphertext
                 FROM connection_secrets s JOIN connections c ON c.id = s.connection_id
                 WHERE s.key_id <> ?1",
            )?
            .query_map([keys.current().id()], |row| {
                Ok((
                    row.get(0)?,
                    row.get(1)?,
                    row.get(2)?,
                    Sealed {
                        key_id: row.get(3)?,
                        nonce: row.get(4)?,
                        ciphertext: row.get(5)?,
                    },
                ))
            })?
            .collect::<rusqlite::Result<_>>()?;
        for (connection_id, connection, key, sealed) in &rows {
            let value = secrets::open(keys, connection, key, sealed)?;
            let fresh = secrets::seal(keys.current(), connection, key, &value)?;
            tx.execute(
                "UPDATE connection_secrets SET key_id = ?3, nonce = ?4, ciphertext = ?5, updated_at = ?6
                 WHERE connection_id = ?1 AND key = ?2",
                params![connection_id, key, fresh.key_id, fresh.nonce, fresh.ciphertext, at],
            )?;
            tx.execute(
                "INSERT INTO events (at, kind, connection_id, actor, field, old_value, new_value)
                 VALUES (?1, 'secret-rekeyed', ?2, 'key-rotation', ?3, ?4, ?5)",
                params![at, connection_id, key, sealed.key_id, fresh.key_id],
            )?;
        }
        tx.commit()?;
        Ok(rows.len())
    }

    /// Replaces the selection rules of connection `name` (empty: everything is selected).
    pub fn set_selection(
        &mut self,
        name: &str,
        rules: &[SelectionRule],
        actor: &str,
    ) -> Result<()> {
        let id = self.connection_id(name)?;
        let before = self.selection_of(id.0)?;
        let tx = self.write()?;
        let at = now(&tx)?;
        tx.execute(
            "DELETE FROM connection_selection WHERE connection_id = ?1",
            [id.0],
        )?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO connection_selection (connection_id, position, action, pattern) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for (position, rule) in rules.iter().enumerate() {
                insert.execute(params![
                    id.0,
                    position as i64,
                    rule.action.as_str(),
                    rule.pattern
                ])?;
            }
        }
        tx.execute(
            "INSERT INTO events (at, kind, connection_id, actor, field, old_value, new_value)
             VALUES (?1, 'selection-changed', ?2, ?3, 'selection', ?4, ?5)",
            params![at, id.0, actor, to_json(&before), to_json(rules)],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The registries and repositories that runs of connection `name` have seen, by name.
    pub fn known_locations(&self, name: &str) -> Result<Vec<KnownRegistry>> {
        let id = self.connection_id(name)?;
        // registry, removed, last seen, repository, repository removed
        type Line = (String, bool, String, Option<String>, Option<bool>);
        let rows: Vec<Line> = self
            .conn
            .prepare_cached(
                "SELECT rg.name, rg.removed_at IS NOT NULL, rg.last_seen, rp.name, rp.removed_at IS NOT NULL
                 FROM registries rg LEFT JOIN repositories rp ON rp.registry_id = rg.id
                 WHERE rg.connection_id = ?1 ORDER BY rg.name, rp.name",
            )?
            .query_map([id.0], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?))
            })?
            .collect::<rusqlite::Result<_>>()?;
        let mut out: Vec<KnownRegistry> = Vec::new();
        for (registry, removed, last_seen, repository, repository_removed) in rows {
            if out.last().is_none_or(|r| r.name != registry) {
                out.push(KnownRegistry {
                    name: registry,
                    removed,
                    last_seen,
                    repositories: Vec::new(),
                });
            }
            if let (Some(repository), Some(last)) = (repository, out.last_mut()) {
                last.repositories
                    .push((repository, repository_removed.unwrap_or(false)));
            }
        }
        Ok(out)
    }

    /// Retires connection `name` as `actor`: what deleting a connection means, since its runs,
    /// findings and events must stay. Its sealed secrets are overwritten and dropped, it leaves
    /// [`Store::connections`], scans and the queue, and its name is free again (the row is
    /// renamed `NAME#retired-ID`). Refused while a live process scans it.
    pub fn retire_connection(&mut self, name: &str, actor: &str) -> Result<ConnectionId> {
        // With secure_delete, SQLite zeroes the cells it frees, so the old ciphertext does not
        // linger in the file's free pages either.
        let secure: i64 = self
            .conn
            .query_row("PRAGMA secure_delete", [], |row| row.get(0))?;
        self.conn.pragma_update(None, "secure_delete", true)?;
        let retired = self.retire(name, actor);
        self.conn.pragma_update(None, "secure_delete", secure)?;
        if retired.is_ok() {
            // The WAL still holds the frames that wrote the secret; copy the zeroed pages back
            // and empty it. Best effort: a concurrent reader may keep it, and a later
            // checkpoint finishes the job.
            let _busy: rusqlite::Result<i64> =
                self.conn
                    .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| row.get(0));
        }
        retired
    }

    fn retire(&mut self, name: &str, actor: &str) -> Result<ConnectionId> {
        let Store { conn, owner } = self;
        // The same write lock `begin_run` takes: no scan can start between the check and the end.
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let at = now(&tx)?;
        let id = tx
            .query_row(
                "SELECT id FROM connections WHERE name = ?1 AND retired_at IS NULL",
                [name],
                |row| row.get(0),
            )
            .optional()?
            .map(ConnectionId)
            .ok_or_else(|| Error::UnknownConnection(name.to_owned()))?;
        let running: Option<(i64, Option<String>)> = tx
            .query_row(
                "SELECT id, owner FROM scan_runs WHERE connection_id = ?1 AND status = 'running'",
                [id.0],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()?;
        if let Some((run, run_owner)) = running
            && owner.liveness(run_owner.as_deref()) == crate::owner::Liveness::Alive
        {
            return Err(Error::AlreadyRunning {
                connection: name.to_owned(),
                run: crate::RunId(run),
            });
        }
        let secrets: Vec<String> = tx
            .prepare("SELECT key FROM connection_secrets WHERE connection_id = ?1 ORDER BY key")?
            .query_map([id.0], |row| row.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        // Overwrite in place first, then drop the rows.
        tx.execute(
            "UPDATE connection_secrets SET ciphertext = zeroblob(length(ciphertext)),
                 nonce = zeroblob(length(nonce)), key_id = 'wiped', updated_at = ?2
             WHERE connection_id = ?1",
            params![id.0, at],
        )?;
        tx.execute(
            "DELETE FROM connection_secrets WHERE connection_id = ?1",
            [id.0],
        )?;
        let retired_name: String = tx.query_row(
            "UPDATE connections SET retired_at = ?2, updated_at = ?2, name = name || '#retired-' || id
             WHERE id = ?1 RETURNING name",
            params![id.0, at],
            |row| row.get(0),
        )?;
        tx.execute(
            "INSERT INTO events (at, kind, connection_id, actor, field, old_value, new_value)
             VALUES (?1, 'connection-retired', ?2, ?3, 'name', ?4, ?5)",
            params![at, id.0, actor, name, retired_name],
        )?;
        if !secrets.is_empty() {
            tx.execute(
                "INSERT INTO events (at, kind, connection_id, actor, field, old_value)
                 VALUES (?1, 'secrets-wiped', ?2, ?3, 'secrets', ?4)",
                params![at, id.0, actor, to_json(&secrets)],
            )?;
        }
        tx.commit()?;
        Ok(id)
    }

    pub(crate) fn connection_id(&self, name: &str) -> Result<ConnectionId> {
        self.conn
            .prepare_cached("SELECT id FROM connections WHERE name = ?1 AND retired_at IS NULL")?
            .query_row([name], |row| row.get(0))
            .optional()?
            .map(ConnectionId)
            .ok_or_else(|| Error::UnknownConnection(name.to_owned()))
    }

    fn selection_of(&self, id: i64) -> Result<Vec<SelectionRule>> {
        let rows: Vec<(String, String)> = self
            .conn
            .prepare_cached(
                "SELECT action, pattern FROM connection_selection WHERE connection_id = ?1 ORDER BY position",
            )?
            .query_map([id], |row| Ok((row.get(0)?, row.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        rows.into_iter()
            .map(|(action, pattern)| {
                let action = match action.as_str() {
                    "select" => SelectionAction::Select,
                    "deselect" => SelectionAction::Deselect,
                    other => {
                        return Err(Error::Corrupt {
                            column: "connection_selection.action",
                            reason: format!("`{other}`"),
                        });
                    }
                };
                Ok(SelectionRule { action, pattern })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use keelson_core::ScanScope;
    use secrecy::ExposeSecret;

    use super::*;
    use crate::MasterKey;

    fn spec() -> ConnectionSpec {
        let mut spec = ConnectionSpec::new("prod", "azure-container-registry");
        spec.settings.insert("tenant-id".into(), "t-1".into());
        spec.secrets.insert(
            "client-secret".into(),
            SecretString::from("hunter2-canary".to_owned()),
        );
        spec
    }

    #[test]
    fn save_then_read_back_settings_and_secrets() {
        let mut store = Store::open_in_memory().unwrap();
        let keys = Keyring::new(MasterKey::generate("k1").unwrap());
        let id = store.save_connection(&spec(), &keys, "alice").unwrap();
        let conn = store.connection("prod").unwrap().unwrap();
        assert_eq!(conn.id, id);
        assert_eq!(conn.settings["tenant-id"], "t-1");
        assert_eq!(conn.secret_keys, vec!["client-secret".to_owned()]);
        let secrets = store.connection_secrets("prod", &keys).unwrap();
        assert_eq!(secrets["client-secret"].expose_secret(), "hunter2-canary");
        assert!(store.connection("nope").unwrap().is_none());
        assert!(
            matches!(store.connection_secrets("nope", &keys), Err(Error::UnknownConnection(n)) if n == "nope")
        );
    }

    #[test]
    fn saving_again_replaces_and_keeps_one_row() {
        let mut store = Store::open_in_memory().unwrap();
        let keys = Keyring::new(MasterKey::generate("k1").unwrap());
        let first = store.save_connection(&spec(), &keys, "alice").unwrap();
        let mut changed = spec();
        changed.secrets.clear();
        changed.settings.insert("tenant-id".into(), "t-2".into());
        let second = store.save_connection(&changed, &keys, "alice").unwrap();
        assert_eq!(first, second);
        let all = store.connections().unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].settings["tenant-id"], "t-2");
        assert!(all[0].secret_keys.is_empty());
    }

    #[test]
    fn rotation_reseals_under_the_new_key() {
        let mut store = Store::open_in_memory().unwrap();
        let old_bytes = [7u8; 32];
        let old = Keyring::new(MasterKey::from_bytes("k1", &old_bytes).unwrap());
        store.save_connection(&spec(), &old, "alice").unwrap();
        let both = Keyring::new(MasterKey::generate("k2").unwrap())
            .with_previous(MasterKey::from_bytes("k1", &old_bytes).unwrap());
        assert_eq!(store.rotate_secrets(&both).unwrap(), 1);
        assert_eq!(store.rotate_secrets(&both).unwrap(), 0, "already current");
        // The old key alone no longer opens it; the new one does.
        assert!(matches!(
            store.connection_secrets("prod", &old),
            Err(Error::MissingKey { key_id, .. }) if key_id == "k2"
        ));
        let secrets = store.connection_secrets("prod", &both).unwrap();
        assert_eq!(secrets["client-secret"].expose_secret(), "hunter2-canary");
    }

    #[test]
    fn retiring_hides_the_connection_wipes_secrets_and_frees_the_name() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("k.db");
        let mut store = Store::open(&db).unwrap();
        let keys = Keyring::new(MasterKey::generate("k1").unwrap());
        let first = store.save_connection(&spec(), &keys, "alice").unwrap();
        let ciphertext: Vec<u8> = store
            .conn
            .query_row(
                "SELECT ciphertext FROM connection_secrets WHERE connection_id = ?1",
                [first.0],
                |r| r.get(0),
            )
            .unwrap();
        assert!(ciphertext.len() >= 14, "long enough to search for");
        let run = store
            .begin_run("prod", crate::RunTrigger::Manual, &ScanScope::default())
            .unwrap();
        // A live scan keeps the connection.
        assert!(matches!(
            store.retire_connection("prod", "bob"),
            Err(Error::AlreadyRunning { connection, .. }) if connection == "prod"
        ));
        store
            .finish_run(
                run,
                &crate::RunOutcome::Complete,
                &crate::Coverage::default(),
                &crate::ResolveGuard::default(),
                &|_, _| true,
            )
            .unwrap();
        assert_eq!(store.retire_connection("prod", "bob").unwrap(), first);
        assert!(store.connection("prod").unwrap().is_none());
        assert!(store.connection("prod#retired-1").unwrap().is_none());
        assert!(store.connections().unwrap().is_empty());
        assert!(matches!(
            store.begin_run("prod", crate::RunTrigger::Manual, &ScanScope::default()),
            Err(Error::UnknownConnection(n)) if n == "prod"
        ));
        assert!(matches!(
            store.retire_connection("prod", "bob"),
            Err(Error::UnknownConnection(_))
        ));
        let left: i64 = store
            .conn
            .query_row("SELECT count(*) FROM connection_secrets", [], |r| r.get(0))
            .unwrap();
        assert_eq!(left, 0);
        let (kind, actor, old): (String, String, String) = store
            .conn
            .query_row(
                "SELECT kind, actor, old_value FROM events WHERE connection_id = ?1 AND kind = 'connection-retired'",
                [first.0],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!(
            (kind.as_str(), actor.as_str(), old.as_str()),
            ("connection-retired", "bob", "prod")
        );
        // The name is free again, for a new row; the old one keeps its runs.
        let second = store.save_connection(&spec(), &keys, "alice").unwrap();
        assert_ne!(first, second);
        assert_eq!(store.connections().unwrap().len(), 1);
        assert!(store.runs(Some("prod"), 10).unwrap().is_empty());
        // Neither the database nor its WAL still holds the retired ciphertext, even while the
        // store is open (closing it would checkpoint anyway).
        for file in [db.clone(), dir.path().join("k.db-wal")] {
            let bytes = std::fs::read(&file).unwrap_or_default();
            assert!(
                !bytes
                    .windows(ciphertext.len())
                    .any(|w| w == ciphertext.as_slice()),
                "ciphertext left in {}",
                file.display()
            );
        }
    }

    #[test]
    fn selection_rules_keep_their_order() {
        let mut store = Store::open_in_memory().unwrap();
        let keys = Keyring::new(MasterKey::generate("k1").unwrap());
        store.save_connection(&spec(), &keys, "alice").unwrap();
        let rules = vec![
            SelectionRule {
                action: SelectionAction::Deselect,
                pattern: "*".into(),
            },
            SelectionRule {
                action: SelectionAction::Select,
                pattern: "prod*.azurecr.io/*".into(),
            },
        ];
        store.set_selection("prod", &rules, "alice").unwrap();
        assert_eq!(store.connection("prod").unwrap().unwrap().selection, rules);
        // Saving the connection again keeps what the operator selected.
        store.save_connection(&spec(), &keys, "alice").unwrap();
        assert_eq!(store.connection("prod").unwrap().unwrap().selection, rules);
    }
}
