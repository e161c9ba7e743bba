//! The master key that seals connection secrets in the store.
//!
//! Taken from `KEELSON_MASTER_KEY` when set: 32 bytes written as 64 hex digits or as standard
//! base64 (44 characters with padding). Otherwise from `master.key` beside the database: created
//! on first use with 32 random bytes in hex and mode 0600, and refused later if anyone but the
//! owner may read it. The key's id is derived from its bytes (`k-` and 8 hex digits of its
//! SHA-256), so the same key gives the same id whether it comes from the variable or the file.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use base64::Engine as _;
use keelson_store::{Keyring, MasterKey};
use sha2::{Digest as _, Sha256};

/// The variable a master key may come from.
pub(crate) const ENV: &str = keelson_config::MASTER_KEY_ENV;

/// The key file used when the variable is not set.
pub(crate) fn key_file(database: &Path) -> PathBuf {
    keelson_config::master_key_file(database)
}

/// Whether the secret `value` is a key of `keys`, in any form a master key is accepted in: a
/// copy of the key file or another variable holding the key is refused as a connection secret
/// just as `env:KEELSON_MASTER_KEY` is.
pub(crate) fn is_master_key(keys: &Keyring, value: &str) -> bool {
    decode(value.trim()).is_ok_and(|bytes| keys.contains(&bytes))
}

/// The keyring for the store at `database`: from [`ENV`] when `from_env` is given, else the key
/// file (created if missing).
pub(crate) fn keyring(database: &Path, from_env: Option<&str>) -> anyhow::Result<Keyring> {
    let bytes = match from_env {
        Some(text) => {
            decode(text.trim()).with_context(|| format!("`{ENV}` is not a master key"))?
        }
        None => from_file(&key_file(database))?,
    };
    Ok(Keyring::new(master_key(&bytes)?))
}

fn master_key(bytes: &[u8]) -> anyhow::Result<MasterKey> {
    let digest = Sha256::digest(bytes);
    let id = format!("k-{}", hex::encode(&digest[..4]));
    Ok(MasterKey::from_bytes(id, bytes)?)
}

/// 64 hex digits or base64 of exactly 32 bytes. Never echoes the text.
fn decode(text: &str) -> anyhow::Result<Vec<u8>> {
    if text.len() == 64
        && let Ok(bytes) = hex::decode(text)
    {
        return Ok(bytes);
    }
    match base64::engine::general_purpose::STANDARD.decode(text) {
        Ok(bytes) if bytes.len() == 32 => Ok(bytes),
        _ => bail!(
            "expected 32 bytes as 64 hex digits or as base64 (e.g. the output of `openssl rand -hex 32`)"
        ),
    }
}

fn from_file(path: &Path) -> anyhow::Result<Vec<u8>> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            check_private(path)?;
            decode(text.trim())
                .with_context(|| format!("the master key file `{}` is not valid", path.display()))
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => create(path),
        Err(err) => Err(err)
            .with_context(|| format!("cannot read the master key file `{}`", path.display())),
    }
}

fn create(path: &Path) -> anyhow::Result<Vec<u8>> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the folder `{}`", dir.display()))?;
    }
    let bytes: [u8; 32] = rand::random();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let written = options.open(path).and_then(|mut file| {
        writeln!(file, "{}", hex::encode(bytes))?;
        file.sync_all()
    });
    match written {
        Ok(()) => {
            tracing::info!(path = %path.display(), "created a new master key file");
            Ok(bytes.to_vec())
        }
        // Another keelson created it first: use theirs.
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => from_file(path),
        Err(err) => Err(err)
            .with_context(|| format!("cannot create the master key file `{}`", path.display())),
    }
}

#[cfg(unix)]
fn check_private(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(path)
        .with_context(|| format!("cannot read the master key file `{}`", path.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        bail!(
            "the master key file `{}` may be read by others (mode {:o}); run `chmod 600 {}`",
            path.display(),
            mode & 0o777,
            path.display()
        );
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_path: &Path) -> anyhow::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_and_base64_give_the_same_key_id() {
        let bytes = [7u8; 32];
        let hex_text = hex::encode(bytes);
        let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
        let a = keyring(Path::new("unused.db"), Some(&hex_text)).unwrap();
        let b = keyring(Path::new("unused.db"), Some(&format!(" {b64}\n"))).unwrap();
        assert_eq!(a.current().id(), b.current().id());
        assert!(a.current().id().starts_with("k-"));
    }

    #[test]
    fn bad_keys_are_refused_without_echo() {
        for bad in ["abc", &"0".repeat(63), "c2hvcnQ="] {
            let err = keyring(Path::new("unused.db"), Some(bad)).unwrap_err();
            let text = format!("{err:#}");
            assert!(text.contains(ENV), "{text}");
            assert!(!text.contains(bad), "{text}");
        }
    }

    #[test]
    fn the_master_key_is_recognised_in_either_form() {
        let bytes = [9u8; 32];
        let keys = keyring(Path::new("unused.db"), Some(&hex::encode(bytes))).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
        assert!(is_master_key(&keys, &hex::encode(bytes)));
        assert!(is_master_key(&keys, &format!("{b64}\n")));
        assert!(!is_master_key(&keys, &hex::encode([8u8; 32])));
        assert!(!is_master_key(&keys, "an ordinary client secret"));
    }

    #[cfg(unix)]
    #[test]
    fn the_key_file_is_created_private_and_reused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("state").join("keelson.db");
        let first = keyring(&db, None).unwrap();
        let file = key_file(&db);
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let second = keyring(&db, None).unwrap();
        assert_eq!(first.current().id(), second.current().id());
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = keyring(&db, None).unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }
}
