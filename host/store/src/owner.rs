//! Which process owns a `running` scan run, so recovery never interrupts a live scan.
//!
//! Each [`Store`](crate::Store) on a file holds an exclusive OS lock on its own file in
//! `<database>-owners/`, named by a random token that its runs record. The kernel drops the lock
//! when the process dies, even by `kill -9`; a run whose owner's lock can be taken is therefore
//! abandoned and can be marked `interrupted`.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use crate::{Error, Result};

pub(crate) struct Owner {
    token: String,
    /// The lock directory and our held lock; `None` for an in-memory database.
    lock: Option<(PathBuf, File)>,
}

/// Whether the owner of a run is still alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Liveness {
    Alive,
    Dead,
}

impl Owner {
    pub(crate) fn in_memory() -> Self {
        Self {
            token: new_token(),
            lock: None,
        }
    }

    pub(crate) fn for_database(db: &Path) -> Result<Self> {
        let mut dir = db.as_os_str().to_owned();
        dir.push("-owners");
        let dir = PathBuf::from(dir);
        let io_err = |path: &Path| {
            let path = path.to_owned();
            move |source| Error::OwnerLock { path, source }
        };
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let token = new_token();
        // Lock under a hidden name, then rename: nobody can see the final name unlocked.
        let staging = dir.join(format!(".{token}"));
        let file = OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(&staging)
            .map_err(io_err(&staging))?;
        file.lock().map_err(io_err(&staging))?;
        let path = dir.join(&token);
        fs::rename(&staging, &path).map_err(io_err(&path))?;
        Ok(Self {
            token,
            lock: Some((dir, file)),
        })
    }

    pub(crate) fn token(&self) -> &str {
        &self.token
    }

    /// Checks the owner recorded on a run. A dead owner's lock file is removed.
    pub(crate) fn liveness(&self, owner: Option<&str>) -> Liveness {
        let Some(owner) = owner else {
            return Liveness::Dead;
        };
        if owner == self.token {
            return Liveness::Alive;
        }
        let Some((dir, _)) = &self.lock else {
            // A private in-memory database has no other process.
            return Liveness::Dead;
        };
        if owner.is_empty() || !owner.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Liveness::Dead;
        }
        let path = dir.join(owner);
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Liveness::Dead,
            // Unsure: leave the run alone rather than interrupt a live scan.
            Err(_) => return Liveness::Alive,
        };
        match file.try_lock() {
            Ok(()) => {
                // Best effort: a leftover file only costs a directory entry.
                let _ = fs::remove_file(&path);
                Liveness::Dead
            }
            Err(TryLockError::WouldBlock | TryLockError::Error(_)) => Liveness::Alive,
        }
    }
}

impl Drop for Owner {
    fn drop(&mut self) {
        if let Some((dir, _file)) = &self.lock {
            let _ = fs::remove_file(dir.join(&self.token));
        }
    }
}

fn new_token() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().fold(String::with_capacity(32), |mut hex, b| {
        use std::fmt::Write;
        let _ = write!(hex, "{b:02x}");
        hex
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_owner_is_alive_and_a_dropped_one_is_dead() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("k.db");
        let a = Owner::for_database(&db).unwrap();
        let b = Owner::for_database(&db).unwrap();
        assert_eq!(b.liveness(Some(a.token())), Liveness::Alive);
        assert_eq!(a.liveness(Some(a.token())), Liveness::Alive);
        let token = a.token().to_owned();
        drop(a);
        assert_eq!(b.liveness(Some(&token)), Liveness::Dead);
        assert_eq!(b.liveness(None), Liveness::Dead);
        assert_eq!(b.liveness(Some("../../etc/passwd")), Liveness::Dead);
    }

    #[test]
    fn a_leftover_lock_file_without_a_holder_is_dead_and_cleaned() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("k.db");
        let me = Owner::for_database(&db).unwrap();
        let stale = dir.path().join("k.db-owners").join("00ff");
        File::create(&stale).unwrap();
        assert_eq!(me.liveness(Some("00ff")), Liveness::Dead);
        assert!(!stale.exists());
    }
}
