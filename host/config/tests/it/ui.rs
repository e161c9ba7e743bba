//! Golden tests: every `tests/ui/invalid/<case>.toml` must be refused with exactly the message in
//! `<case>.err`, and every `tests/ui/valid/*.toml` must load.
//!
//! Run with `BLESS=1` to rewrite the `.err` files from the current messages (then review the diff).

use std::fs;
use std::path::{Path, PathBuf};

fn ui_dir(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/ui")
        .join(kind)
}

/// Files in `dir` ending in `.ext`, sorted so failures read in a stable order.
fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    out.sort();
    out
}

#[expect(
    clippy::disallowed_methods,
    reason = "the golden-file switch belongs to the test harness"
)]
fn blessing() -> bool {
    std::env::var_os("BLESS").is_some_and(|v| !v.is_empty() && v != "0")
}

/// Parses a case under its bare file name, so messages read `case.toml:3:9: …` on any machine.
fn parse_case(path: &Path) -> Result<keelson_config::Config, keelson_config::Error> {
    let text = fs::read_to_string(path).expect("readable case");
    let name = path.file_name().expect("file name");
    keelson_config::parse(&text, Path::new(name))
}

#[test]
fn invalid_files_are_refused_with_their_golden_message() {
    let dir = ui_dir("invalid");
    let cases = files(&dir, "toml");
    assert!(
        cases.len() >= 30,
        "expected the whole catalogue of invalid cases, found {}",
        cases.len()
    );
    let bless = blessing();
    let mut failures = Vec::new();
    for case in &cases {
        let expected_path = case.with_extension("err");
        let actual = match parse_case(case) {
            Ok(_) => {
                failures.push(format!("{}: parsed, but must be refused", case.display()));
                continue;
            }
            Err(e) => format!("{e}\n"),
        };
        if bless {
            fs::write(&expected_path, &actual).expect("write .err");
            continue;
        }
        match fs::read_to_string(&expected_path) {
            Ok(expected) if expected == actual => {}
            Ok(expected) => failures.push(format!(
                "{}:\n  expected: {}  actual:   {}",
                case.display(),
                expected,
                actual
            )),
            Err(e) => failures.push(format!(
                "{}: {e} (run with BLESS=1 to create it)",
                expected_path.display()
            )),
        }
    }
    // An `.err` without its `.toml` is a case that silently stopped running.
    for err in files(&dir, "err") {
        if !err.with_extension("toml").exists() {
            failures.push(format!("{}: no matching .toml", err.display()));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn every_error_names_file_line_and_column() {
    for case in files(&ui_dir("invalid"), "toml") {
        let err = parse_case(&case).expect_err("invalid case");
        let location = err.location().expect("content errors carry a location");
        let (line, column) = location.position.expect("a position");
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        assert!(line >= 1 && column >= 1, "{name}: {line}:{column}");
        assert!(
            err.to_string()
                .starts_with(&format!("{name}:{line}:{column}: ")),
            "{err}"
        );
    }
}

#[test]
fn valid_files_load() {
    let cases = files(&ui_dir("valid"), "toml");
    assert!(
        cases.len() >= 3,
        "expected the valid examples, found {}",
        cases.len()
    );
    for case in cases {
        if let Err(e) = parse_case(&case) {
            panic!("{} must load: {e}", case.display());
        }
    }
}

#[test]
fn plain_secret_value_is_never_echoed() {
    let case = ui_dir("invalid").join("secret_plain_value.toml");
    let text = fs::read_to_string(&case).unwrap();
    assert!(
        text.contains("hunter2-do-not-print"),
        "the case must hold the sample value"
    );
    let message = parse_case(&case).unwrap_err().to_string();
    assert!(message.contains("client_secret"), "{message}");
    assert!(!message.contains("hunter2"), "{message}");
}

#[test]
fn syntax_error_on_a_secret_line_does_not_quote_the_line() {
    let text = "[[connection]]\nname = \"prod\"\nplugin = \"acr\"\nsecrets = { client_secret = \"hunter2-do-not-print }\n";
    let message = keelson_config::parse(text, Path::new("plugins.toml"))
        .unwrap_err()
        .to_string();
    assert!(message.starts_with("plugins.toml:4:"), "{message}");
    assert!(!message.contains("hunter2"), "{message}");
}

#[test]
fn full_example_is_read_field_by_field() {
    use std::time::Duration;

    use keelson_config::{Schedule, SecretRef};

    let config = parse_case(&ui_dir("valid").join("full.toml")).unwrap();
    assert_eq!(config.source, Path::new("full.toml"));
    let host = &config.host;
    assert_eq!(host.database, Path::new("data/keelson.db"));
    assert_eq!(host.cache_dir, Path::new("/var/cache/keelson"));
    assert_eq!(
        host.extra_ca_certs,
        vec![PathBuf::from("certs/corp-root.pem")]
    );
    assert_eq!(
        host.proxy.as_deref(),
        Some("http://proxy.corp.example:3128")
    );
    assert_eq!(host.secrets_dir, Path::new("secrets"));
    let pins: Vec<(&str, Vec<String>)> = host
        .resolve
        .iter()
        .map(|p| {
            (
                p.name.as_str(),
                p.addrs.iter().map(ToString::to_string).collect(),
            )
        })
        .collect();
    assert_eq!(
        pins,
        vec![
            (
                "*.azurecr.io",
                vec!["10.1.2.4".to_owned(), "fd00::4".to_owned()]
            ),
            ("management.azure.com", vec!["10.1.2.3".to_owned()]),
        ]
    );

    assert_eq!(config.plugins.len(), 2);
    let acr = config.plugin("azure-container-registry").expect("acr");
    assert_eq!(acr.path, Path::new("plugins/acr.wasm"));
    assert_eq!(
        acr.sha256.as_deref(),
        Some("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
    );
    let hosts: Vec<String> = acr.allowed_hosts.iter().map(ToString::to_string).collect();
    assert_eq!(
        hosts,
        ["https://login.microsoftonline.com", "https://*.azurecr.io"]
    );
    let narrowed: Vec<String> = acr.secret_hosts["client_secret"]
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(narrowed, ["https://login.microsoftonline.com"]);
    assert!(acr.allowed_hosts[1].matches("https", "myreg.azurecr.io", 443));
    assert_eq!(acr.limits.memory_bytes, 128 << 20);
    assert_eq!(
        acr.limits.call_timeout,
        Duration::from_mins(1) + Duration::from_secs(30)
    );
    assert_eq!(acr.limits.max_requests, 5000);
    assert_eq!(acr.limits.max_concurrent_requests, 4);
    assert_eq!(acr.limits.max_response_bytes, 16 << 20);
    assert!(acr.enabled);
    let echo = config.plugin("echo").expect("echo");
    assert!(!echo.enabled);
    assert!(echo.allowed_hosts.is_empty());
    assert_eq!(echo.limits, keelson_config::PluginLimits::default());

    let prod = config.connection("prod").expect("prod");
    assert_eq!(prod.plugin.as_str(), "azure-container-registry");
    assert_eq!(
        prod.schedule,
        Some(Schedule::Every(Duration::from_hours(6)))
    );
    assert_eq!(
        prod.settings.get("tenant_id").map(String::as_str),
        Some("00000000-0000-0000-0000-000000000001")
    );
    assert_eq!(
        prod.secrets.get("client_secret"),
        Some(&SecretRef::Env("KEELSON_SECRET_PROD".to_owned()))
    );
    assert_eq!(
        prod.secrets.get("cert"),
        Some(&SecretRef::File(PathBuf::from("secrets/prod/cert.pem")))
    );
    assert_eq!(prod.secrets.get("token"), Some(&SecretRef::Prompt));
    assert_eq!(
        prod.locations,
        ["myreg.azurecr.io/payments/*", "other.azurecr.io"]
    );
    let lab = config.connection("lab_2").expect("lab_2");
    assert_eq!(lab.schedule, None);
    assert_eq!(lab.locations, ["*"]);
    assert!(config.connection("nope").is_none());
}

#[test]
fn relative_paths_resolve_against_the_config_folder() {
    let text = "[host]\ndatabase = \"k.db\"\n[[plugin]]\nid = \"a\"\npath = \"a.wasm\"\n";
    let config = keelson_config::parse(text, Path::new("etc/keelson/plugins.toml")).unwrap();
    assert_eq!(config.host.database, Path::new("etc/keelson/k.db"));
    assert_eq!(
        config.host.cache_dir,
        Path::new("etc/keelson/.keelson/cache")
    );
    assert_eq!(config.host.secrets_dir, Path::new("etc/keelson"));
    assert_eq!(config.plugins[0].path, Path::new("etc/keelson/a.wasm"));
}

#[test]
fn an_empty_file_is_a_config_with_defaults() {
    let config = keelson_config::parse("", Path::new("plugins.toml")).unwrap();
    assert!(config.plugins.is_empty() && config.connections.is_empty());
    assert_eq!(config.host.database, Path::new("keelson.db"));
    assert!(config.host.resolve.is_empty() && config.host.proxy.is_none());
}

#[test]
fn missing_file_is_a_read_error_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.toml");
    let err = keelson_config::load(&path).unwrap_err();
    assert!(matches!(err, keelson_config::Error::Read { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("absent.toml: cannot read the file"),
        "{err}"
    );
}
