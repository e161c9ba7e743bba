//! `plugins.toml`: the operator's configuration, read strictly and validated into a [`Config`].
//!
//! The file is deserialised into private wire structs (unknown keys refused), then validated into
//! the types of [`model`]: paths resolved against the file's folder, host patterns parsed, ids
//! checked, secret references checked. Nothing outside this crate sees the raw form. Every error
//! names the file, line and column, the offending value and the expected form (see [`Error`]).
//!
//! Entry points: [`load`] and [`parse`]; [`resolve_secret_file`] for reading a `file:` secret at
//! run time.

mod error;
pub mod model;
mod validate;
mod wire;

use std::path::{Path, PathBuf};

pub use error::{Error, Location, Problem};
pub use model::*;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Reads and validates the file at `path`.
pub fn load(path: &Path) -> Result<Config> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, path)
}

/// Validates `text` as the content of the file at `path`. `path` is named in error messages, and
/// relative paths in the file are resolved against its folder (no file is opened).
pub fn parse(text: &str, path: &Path) -> Result<Config> {
    let base = path.parent().unwrap_or_else(|| Path::new(""));
    let src = validate::Source {
        file: path,
        text,
        base,
    };
    let wire: wire::FileWire = toml::from_str(text).map_err(|e| src.toml_error(&e))?;
    validate::validate(wire, &src)
}

/// Resolves a `file:` secret for reading: follows symlinks and `..`, and refuses a file that
/// ends up outside `secrets_dir` or does not exist. `path` is as held by [`SecretRef::File`].
///
/// The configuration is checked lexically when loaded; this is the check that counts, made right
/// before the read, since a symlink can point anywhere.
pub fn resolve_secret_file(secrets_dir: &Path, path: &Path) -> Result<PathBuf> {
    let dir = secrets_dir
        .canonicalize()
        .map_err(|source| Error::SecretsDirUnreadable {
            path: secrets_dir.to_path_buf(),
            source,
        })?;
    let resolved = path
        .canonicalize()
        .map_err(|source| Error::SecretFileUnreadable {
            path: path.to_path_buf(),
            source,
        })?;
    if resolved == dir || !resolved.starts_with(&dir) {
        return Err(Error::SecretFileOutside {
            path: path.to_path_buf(),
            resolved,
            secrets_dir: dir,
        });
    }
    Ok(resolved)
}
