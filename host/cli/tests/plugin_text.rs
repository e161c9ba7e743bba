//! Through the real `keelson` binary and the template connector, against a loopback HTTPS server
//! that answers what a hostile service would: text a connector returns (an account name,
//! repository names) reaches the terminal with its control and bidi characters as visible
//! escapes, while `--json` keeps it exactly; a connection's secret is never Keelson's own master
//! key; and every setting is of the kind, secret or not, that the plugin declares.
//!
//! Needs the plugins built (`cargo build --release --target wasm32-wasip2` in `plugins/`).

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use keelson_core::text::is_neutralised;

mod support;

use support::JsonServer;

/// An OSC 52 clipboard write, a screen clear, a right-to-left override and a C1 CSI.
const HOSTILE: &str = "acme\x1b]52;c;SGVsbG8=\x07\x1b[2J\u{202e}\u{9b}0m";
/// [`HOSTILE`] as the terminal must show it.
const SHOWN: &str = r"acme\u{1b}]52;c;SGVsbG8=\u{7}\u{1b}[2J\u{202e}\u{9b}0m";
const TOKEN: &str = "template-token-not-a-secret";
const TOKEN_VAR: &str = "KEELSON_T_TOKEN";

/// The template connector's API, with a hostile account name and repository name, paged by
/// name as the template expects.
fn api(method: &str, target: &str, auth: Option<&str>) -> (u16, String) {
    if auth != Some(&format!("Bearer {TOKEN}")) {
        return (401, r#"{"error":"unauthorized"}"#.into());
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let param = |name: &str| {
        query
            .split('&')
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| percent_decode(v))
    };
    let body = match (method, path) {
        ("GET", "/api/whoami") => serde_json::json!({ "account": HOSTILE }),
        ("GET", "/api/repositories") => {
            let repositories = ["app".to_owned(), format!("evil-{HOSTILE}")];
            let limit: usize = param("limit").and_then(|l| l.parse().ok()).unwrap_or(100);
            let after = param("after").unwrap_or_default();
            let rest: Vec<&String> = repositories.iter().filter(|r| **r > after).collect();
            let page: Vec<&&String> = rest.iter().take(limit).collect();
            serde_json::json!({ "repositories": page, "more": rest.len() > limit })
        }
        ("GET", p) if p.ends_with("/images") => serde_json::json!({ "images": [] }),
        _ => return (404, "{}".into()),
    };
    (200, body.to_string())
}

/// `%XX` escapes back to bytes (the template percent-encodes names in queries).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn template_connector() -> PathBuf {
    let path = support::workspace_root()
        .join("plugins/target/wasm32-wasip2/release/template_connector.wasm");
    assert!(
        path.is_file(),
        "`{}` is missing: build the plugins first (`cargo build --release --target wasm32-wasip2` in `plugins/`)",
        path.display()
    );
    std::path::absolute(path).expect("absolute path")
}

/// A folder with a plugins.toml granting the template connector the server, and the server.
struct Folder {
    dir: tempfile::TempDir,
    server: JsonServer,
}

impl Folder {
    /// `connections` is appended to plugins.toml; `{url}` in it is the server's base URL.
    async fn start(connections: &str) -> Self {
        let server = JsonServer::start("template.test", Arc::new(api)).await;
        let dir = tempfile::tempdir().expect("temp dir");
        let config = format!(
            r#"[host]
database = "state/keelson.db"
cache_dir = {cache:?}
extra_ca_certs = [{ca:?}]

[host.resolve]
"template.test" = "127.0.0.1"

[[plugin]]
id = "template"
path = {path:?}
allowed_hosts = ["{url}"]
{connections}"#,
            cache = support::workspace_root()
                .join("target/keelson-test-cache")
                .display()
                .to_string(),
            ca = server.ca_file.path().display().to_string(),
            path = template_connector().display().to_string(),
            url = server.base(),
            connections = connections.replace("{url}", &server.base()),
        );
        std::fs::write(dir.path().join("plugins.toml"), config).expect("write plugins.toml");
        Self { dir, server }
    }

    fn url(&self) -> String {
        self.server.base()
    }

    /// Runs `keelson` here with the token in [`TOKEN_VAR`] and `envs` on top.
    fn keelson(&self, args: &[&str], envs: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_keelson"));
        cmd.current_dir(self.dir.path())
            .args(args)
            .env_remove("KEELSON_CONFIG")
            .env_remove("KEELSON_MASTER_KEY")
            .env_remove("KEELSON_LOG")
            .env(TOKEN_VAR, TOKEN)
            .stdin(Stdio::null());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        cmd.output().expect("keelson runs")
    }
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Succeeded, and printed no control or bidi character but the newlines it writes itself.
fn ok_and_clean(output: &Output) -> String {
    let all = text(output);
    assert!(output.status.success(), "{all}");
    assert_clean(&all);
    all
}

fn refused(output: &Output) -> String {
    let all = text(output);
    assert!(!output.status.success(), "{all}");
    assert_clean(&all);
    all
}

fn assert_clean(all: &str) {
    let raw: Vec<char> = all
        .chars()
        .filter(|c| is_neutralised(*c) && *c != '\n')
        .collect();
    assert!(raw.is_empty(), "raw {raw:?} in:\n{all}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_text_reaches_the_terminal_as_visible_escapes() {
    let folder = Folder::start("").await;
    let url = folder.url();

    let out = folder.server.conformance(
        &support::workspace_root().join("target/keelson-test-cache"),
        &template_connector(),
        &[("url", url.clone()), ("token", TOKEN.to_owned())],
    );
    let all = ok_and_clean(&out);
    assert!(
        all.contains(&format!("PASS verify: account `{SHOWN}`")),
        "{all}"
    );

    let set_url = format!("url={url}");
    let secret = format!("token=env:{TOKEN_VAR}");
    let out = folder.keelson(
        &[
            "connect", "template", "--name", "t", "--set", &set_url, "--secret", &secret,
        ],
        &[],
    );
    let all = ok_and_clean(&out);
    assert!(all.contains(&format!("saved: {SHOWN} ({SHOWN})")), "{all}");

    let all = ok_and_clean(&folder.keelson(&["verify", "t"], &[]));
    assert!(
        all.contains(&format!("can connect: {SHOWN} ({SHOWN})")),
        "{all}"
    );

    let all = ok_and_clean(&folder.keelson(&["locations", "t"], &[]));
    assert!(all.contains(&format!("[x] evil-{SHOWN}\n")), "{all}");

    // JSON keeps the data exactly, in escapes a terminal does not run.
    let out = folder.keelson(&["locations", "t", "--json"], &[]);
    ok_and_clean(&out);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let names: Vec<&str> = report["registries"][0]["repositories"]
        .as_array()
        .expect("repositories")
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert!(
        names.contains(&format!("evil-{HOSTILE}").as_str()),
        "{names:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_secret_is_never_the_master_key() {
    let folder = Folder::start("").await;
    let set_url = format!("url={}", folder.url());
    let connect = |secret: &str, envs: &[(&str, &str)]| {
        let secret = format!("token={secret}");
        folder.keelson(
            &[
                "connect", "template", "--name", "t", "--set", &set_url, "--secret", &secret,
            ],
            envs,
        )
    };

    let all = refused(&connect("env:KEELSON_MASTER_KEY", &[]));
    assert!(
        all.contains(
            "secret `token` reads `env:KEELSON_MASTER_KEY`, where Keelson's master key comes from"
        ),
        "{all}"
    );

    // The first command created the key file beside the database.
    let key_file = folder.dir.path().join("state/master.key");
    let key = std::fs::read_to_string(&key_file).expect("master key file");
    let all = refused(&connect("file:state/master.key", &[]));
    assert!(
        all.contains("where Keelson's master key comes from"),
        "{all}"
    );

    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(&key_file, folder.dir.path().join("token-link")).unwrap();
        let all = refused(&connect("file:token-link", &[]));
        assert!(all.contains("which is Keelson's master key file"), "{all}");
        std::fs::hard_link(&key_file, folder.dir.path().join("token-copy")).unwrap();
        let all = refused(&connect("file:token-copy", &[]));
        assert!(all.contains("which is Keelson's master key file"), "{all}");
        assert!(!all.contains(key.trim()), "{all}");
    }

    // The key's value under another name: a copy of the file, another variable.
    std::fs::write(folder.dir.path().join("token-file"), &key).unwrap();
    let all = refused(&connect("file:token-file", &[]));
    assert!(
        all.contains("secret `token` of connection `t` is Keelson's master key"),
        "{all}"
    );
    let all = refused(&connect(
        "env:KEELSON_T_COPY",
        &[("KEELSON_T_COPY", key.trim())],
    ));
    assert!(all.contains("is Keelson's master key"), "{all}");
    assert!(!all.contains(key.trim()), "{all}");

    // Nothing was saved; the connection's own token is accepted.
    let all = refused(&folder.keelson(&["verify", "t"], &[]));
    assert!(all.contains("no connection named `t`"), "{all}");
    ok_and_clean(&connect(&format!("env:{TOKEN_VAR}"), &[]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_are_of_the_kind_the_plugin_declares() {
    let folder = Folder::start(
        r#"
[[connection]]
name = "plain-token"
plugin = "template"
settings = { url = "{url}", token = "typed-into-plugins-toml" }

[[connection]]
name = "secret-url"
plugin = "template"
secrets = { url = "env:KEELSON_T_URL", token = "env:KEELSON_T_TOKEN" }
"#,
    )
    .await;
    let url = folder.url();

    let out = folder.keelson(
        &[
            "connect",
            "template",
            "--name",
            "t",
            "--secret",
            "url=env:KEELSON_T_URL",
            "--secret",
            &format!("token=env:{TOKEN_VAR}"),
        ],
        &[("KEELSON_T_URL", &url)],
    );
    let all = refused(&out);
    assert!(
        all.contains("setting `url` is not secret: pass it as `--set url=VALUE`; `--secret` is only for the settings plugin `template` marks secret (`token`)"),
        "{all}"
    );

    let out = folder.keelson(
        &[
            "connect",
            "template",
            "--name",
            "t",
            "--set",
            &format!("url={url}"),
            "--set",
            "token=x",
        ],
        &[],
    );
    let all = refused(&out);
    assert!(all.contains("setting `token` is secret"), "{all}");

    // Declared connections are checked when they are used: the plugin's `describe` decides.
    let out = folder.keelson(&["verify", "plain-token"], &[]);
    let all = refused(&out);
    assert!(
        all.contains("setting `token` is secret for plugin `template` but is given as a plain setting; move it to `secrets`"),
        "{all}"
    );
    assert!(!all.contains("typed-into-plugins-toml"), "{all}");
    let out = folder.keelson(&["verify", "secret-url"], &[("KEELSON_T_URL", &url)]);
    let all = refused(&out);
    assert!(
        all.contains("setting `url` is not secret for plugin `template` but is given as a secret; move it to `settings`"),
        "{all}"
    );
}

/// `secret_hosts` in a `[[plugin]]` entry narrows where a secret may go; it can never widen it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_narrows_where_a_secret_may_go() {
    // Outside the grant: plugins.toml itself is refused, naming the setting and the host.
    let folder = Folder::start("secret_hosts = { token = [\"https://elsewhere.test\"] }\n").await;
    let out = folder.keelson(&["plugins", "list"], &[]);
    let all = refused(&out);
    assert!(
        all.contains("secret `token` is bound to `https://elsewhere.test`, which is not inside this plugin's `allowed_hosts`"),
        "{all}"
    );

    // Narrowed to the one granted host: the token is still written in there, and verify works.
    let folder = Folder::start("secret_hosts = { token = [\"{url}\"] }\n").await;
    let set_url = format!("url={}", folder.url());
    let secret = format!("token=env:{TOKEN_VAR}");
    let out = folder.keelson(
        &[
            "connect", "template", "--name", "t", "--set", &set_url, "--secret", &secret,
        ],
        &[],
    );
    ok_and_clean(&out);
}
