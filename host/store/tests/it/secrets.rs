//! T38 (and the store's share of T37): secrets at rest are sealed, and failures never show them.

use std::path::Path;

use base64::Engine;
use keelson_store::{ConnectionSpec, Error, Keyring, MasterKey, Store};
use secrecy::{ExposeSecret, SecretString};

const CANARY: &str = "CANARY-6f1c2a9e-secret-value";

fn files_contain(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            if bytes.windows(needle.len()).any(|w| w == needle) {
                hits.push(path.display().to_string());
            }
        }
    }
    hits
}

#[test]
fn a_saved_secret_is_absent_from_the_database_files_and_a_wrong_key_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keelson.db");
    let keys = Keyring::new(MasterKey::from_bytes("main", &[9u8; 32]).unwrap());
    let mut store = Store::open(&path).unwrap();
    let mut spec = ConnectionSpec::new("prod", "acr");
    spec.settings
        .insert("tenant-id".into(), "tenant-visible".into());
    spec.secrets.insert(
        "client-secret".into(),
        SecretString::from(CANARY.to_owned()),
    );
    store.save_connection(&spec, &keys, "test").unwrap();

    // Both the WAL (before checkpoint) and the main file (after) are clean.
    let forms = [
        CANARY.as_bytes().to_vec(),
        base64::engine::general_purpose::STANDARD
            .encode(CANARY)
            .into_bytes(),
        hex::encode(CANARY).into_bytes(),
    ];
    assert!(
        !files_contain(dir.path(), b"tenant-visible").is_empty(),
        "the probe finds plain settings"
    );
    for form in &forms {
        assert!(files_contain(dir.path(), form).is_empty());
    }
    drop(store);
    for form in &forms {
        assert!(files_contain(dir.path(), form).is_empty());
    }

    let store = Store::open(&path).unwrap();
    let opened = store.connection_secrets("prod", &keys).unwrap();
    assert_eq!(opened["client-secret"].expose_secret(), CANARY);

    let wrong = Keyring::new(MasterKey::from_bytes("main", &[8u8; 32]).unwrap());
    let err = store.connection_secrets("prod", &wrong).unwrap_err();
    assert!(matches!(err, Error::Decrypt { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "secret `client-secret` of connection `prod` cannot be decrypted with master key `main`: \
         the key is wrong or the stored secret was altered"
    );
    let missing = Keyring::new(MasterKey::from_bytes("other", &[9u8; 32]).unwrap());
    let err = store.connection_secrets("prod", &missing).unwrap_err();
    assert!(
        err.to_string()
            .contains("master key `main`, which was not given"),
        "{err}"
    );

    // Nothing printable about the store, the connection or the secrets shows the value.
    let printed = format!(
        "{store:?} {:?} {:?} {err:?}",
        store.connection("prod").unwrap(),
        opened
    );
    assert!(!printed.contains(CANARY), "{printed}");
    let json = serde_json::to_string(&store.connection("prod").unwrap()).unwrap();
    assert!(!json.contains(CANARY));
}
