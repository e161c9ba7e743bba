//! `file:` secrets against a real file system: the run-time check follows symlinks.

use std::fs;
use std::path::Path;

use keelson_config::{Error, SecretRef, resolve_secret_file};

#[test]
fn a_file_inside_the_secrets_folder_resolves() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("prod")).unwrap();
    fs::write(dir.path().join("prod/key"), "x").unwrap();
    let reference = SecretRef::parse("key", "file:prod/key", dir.path()).unwrap();
    let SecretRef::File(path) = reference else {
        panic!("a file reference")
    };
    let resolved = resolve_secret_file(dir.path(), &path).unwrap();
    assert_eq!(
        resolved,
        dir.path().canonicalize().unwrap().join("prod/key")
    );
}

#[cfg(unix)]
#[test]
fn a_symlink_out_of_the_secrets_folder_is_refused() {
    let outside = tempfile::tempdir().unwrap();
    fs::write(outside.path().join("shadow"), "not for plugins").unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path().join("shadow"), dir.path().join("innocent")).unwrap();

    // Lexically the reference is fine; only the run-time check sees where it leads.
    let SecretRef::File(path) = SecretRef::parse("key", "file:innocent", dir.path()).unwrap()
    else {
        panic!("a file reference")
    };
    let err = resolve_secret_file(dir.path(), &path).unwrap_err();
    assert!(matches!(err, Error::SecretFileOutside { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("innocent") && message.contains("outside the secrets folder"),
        "{message}"
    );
    assert!(!message.contains("not for plugins"), "{message}");
}

#[cfg(unix)]
#[test]
fn a_symlinked_folder_inside_the_secrets_folder_that_stays_inside_resolves() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("real")).unwrap();
    fs::write(dir.path().join("real/key"), "x").unwrap();
    std::os::unix::fs::symlink(dir.path().join("real"), dir.path().join("alias")).unwrap();
    let resolved = resolve_secret_file(dir.path(), &dir.path().join("alias/key")).unwrap();
    assert_eq!(
        resolved,
        dir.path().canonicalize().unwrap().join("real/key")
    );
}

#[test]
fn a_missing_file_is_refused_naming_the_reference() {
    let dir = tempfile::tempdir().unwrap();
    let err = resolve_secret_file(dir.path(), &dir.path().join("absent")).unwrap_err();
    assert!(matches!(err, Error::SecretFileUnreadable { .. }), "{err:?}");
    assert!(err.to_string().contains("absent"), "{err}");
}

#[test]
fn the_secrets_folder_itself_is_not_a_secret_file() {
    let dir = tempfile::tempdir().unwrap();
    let err = resolve_secret_file(dir.path(), dir.path()).unwrap_err();
    assert!(matches!(err, Error::SecretFileOutside { .. }), "{err:?}");
}

#[test]
fn absolute_and_climbing_references_are_refused_when_loaded() {
    let dir = Path::new("/srv/keelson/secrets");
    for text in [
        "file:/etc/shadow",
        "file:../x",
        "file:a/../../x",
        "file:",
        "file:/srv/keelson/secrets/../x",
    ] {
        let err = SecretRef::parse("key", text, dir).unwrap_err();
        assert!(err.to_string().contains(text), "{text}: {err}");
    }
    assert_eq!(
        SecretRef::parse("key", "file:/srv/keelson/secrets/a/./b", dir).unwrap(),
        SecretRef::File("/srv/keelson/secrets/a/b".into())
    );
}

#[test]
fn a_config_named_without_a_folder_reads_file_secrets_from_the_working_folder() {
    let config = keelson_config::parse("", Path::new("plugins.toml")).unwrap();
    assert_eq!(config.host.secrets_dir, Path::new("."));
    let SecretRef::File(path) =
        SecretRef::parse("key", "file:Cargo.toml", &config.host.secrets_dir).unwrap()
    else {
        panic!("a file reference")
    };
    // Tests run in the crate's folder, which has a Cargo.toml.
    let resolved = resolve_secret_file(&config.host.secrets_dir, &path).unwrap();
    assert_eq!(resolved, Path::new("Cargo.toml").canonicalize().unwrap());
}
