//! The red-team suite (sealed secrets, contract 0.2.0): the `red-team` fixture tries every way
//! the contract gives it to move its sealed canary, or a token it captured, to a host it is
//! granted but that the secrets are not bound to: sealed in a form, a bearer or basic
//! authorization or a header; through a redirect from the bound host; by forwarding what the
//! bound host echoed; with a captured token; with a capture aimed outside the grant. The
//! `evil` server records every byte it receives, and no plaintext arrives there in any
//! encoding. The bound server does receive the canary: the values are written in where they
//! may go. Under 0.1.0 the plugin holds the plaintext, and only the egress gate's byte matching
//! stands in the way: the second test shows which re-encodings get past it, the reason such
//! plugins load only with `allow_plaintext_secrets = true`.

use std::fmt::Write as _;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{Ipv4Addr, TcpListener};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use keelson_http::BoundSecret;

use crate::harness::{LOCAL, hosts, load, runtime, settings, spec};

const CANARY: &str = "CANARY-9d2f~red/team+secret";
/// The token the bound host hands out at `/token`.
const TOKEN: &str = "TOKEN-CANARY-51c7e0";

/// A loopback server that records every request's bytes and answers by path.
struct Recorder {
    port: u16,
    received: Arc<Mutex<Vec<u8>>>,
}

impl Recorder {
    fn start(evil_port: Option<u16>) -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = received.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let log = log.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut head = String::new();
                    let mut length = 0usize;
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                            break;
                        }
                        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                        head.push_str(&line);
                    }
                    let mut body = vec![0; length];
                    let _ = reader.read_exact(&mut body);
                    let mut request = head.clone().into_bytes();
                    request.extend_from_slice(b"\r\n");
                    request.extend_from_slice(&body);
                    log.lock().unwrap().extend_from_slice(&request);
                    let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
                    let (status, extra, answer) = match (path.as_str(), evil_port) {
                        ("/token", _) => (
                            "200 OK",
                            "content-type: application/json\r\n".to_owned(),
                            format!(r#"{{"token_type":"Bearer","expires_in":600,"access_token":"{TOKEN}"}}"#).into_bytes(),
                        ),
                        ("/echo", _) => (
                            "200 OK",
                            // The request comes back, headers as a header too.
                            format!(
                                "x-echoed: {}\r\n",
                                head.replace("\r\n", " | ")
                            ),
                            request,
                        ),
                        ("/redirect", Some(evil)) => (
                            "307 Temporary Redirect",
                            format!("location: http://{LOCAL}:{evil}/collected\r\n"),
                            Vec::new(),
                        ),
                        _ => ("200 OK", String::new(), b"ok".to_vec()),
                    };
                    let mut response = format!(
                        "HTTP/1.1 {status}\r\n{extra}content-length: {}\r\nconnection: close\r\n\r\n",
                        answer.len()
                    )
                    .into_bytes();
                    response.extend_from_slice(&answer);
                    let _ = stream.write_all(&response);
                });
            }
        });
        Self { port, received }
    }

    fn url(&self) -> String {
        format!("http://{LOCAL}:{}", self.port)
    }

    fn received(&self) -> String {
        String::from_utf8_lossy(&self.received.lock().unwrap()).into_owned()
    }
}

/// The canary as a secret setting bound to `hosts`.
fn canary(hosts_bound: &[&str]) -> BoundSecret {
    BoundSecret {
        name: "canary".into(),
        value: CANARY.into(),
        allowed_hosts: hosts(hosts_bound),
    }
}

/// `value` in every encoding a plugin could have used to carry it.
fn encodings(value: &str) -> Vec<String> {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    let percent: String = value.bytes().fold(String::new(), |mut out, b| {
        if b.is_ascii_alphanumeric() {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
        out
    });
    vec![
        value.to_owned(),
        value.chars().rev().collect(),
        STANDARD.encode(value),
        URL_SAFE_NO_PAD.encode(value),
        STANDARD.encode(format!("user:{value}")),
        percent.clone(),
        percent.to_lowercase(),
        value.replace('/', "%2F").replace('+', "%2B"),
        hex::encode(value),
        // The longest part that holds no character an encoding would change.
        value
            .split(['~', '/', '+'])
            .max_by_key(|p| p.len())
            .unwrap()
            .to_owned(),
    ]
}

#[tokio::test]
async fn a_sealed_secret_or_captured_token_never_reaches_a_host_it_is_not_bound_to() {
    let evil = Recorder::start(None);
    let bound = Recorder::start(Some(evil.port));
    let rt = runtime();
    let mut s = spec("red-team", "red_team");
    // Both are granted; only `bound` is the secret's.
    s.allowed_hosts = hosts(&[&bound.url(), &evil.url()]);
    s.allow_plaintext_secrets = false;
    let plugin = load(&rt, &s).await.unwrap();
    assert!(plugin.seals_secrets());
    let secret = canary(&[&bound.url()]);
    let mut conn = plugin
        .connect(
            "red",
            settings(&[
                ("bound", &bound.url()),
                ("evil", &evil.url()),
                ("canary", CANARY),
            ]),
            vec![secret],
        )
        .await
        .unwrap();
    let report = conn.verify().await.unwrap();
    let attempt = |key: &str| {
        report.details.iter().find(|kv| kv.key == key).map_or_else(
            || panic!("no attempt `{key}`: {report:?}"),
            |kv| kv.value.clone(),
        )
    };

    // Each direct attempt is refused before anything leaves.
    for key in [
        "form-to-evil",
        "bearer-to-evil",
        "basic-to-evil",
        "header-to-evil",
        "redirected-to-evil",
        "token-bearer-to-evil",
        "token-form-to-evil",
    ] {
        let outcome = attempt(key);
        assert!(
            outcome.starts_with("permission-denied") && outcome.contains("secret-egress-denied"),
            "{key}: {outcome}"
        );
    }
    assert!(
        attempt("capture-for-ungranted-host").contains("capture-host-not-granted"),
        "{report:?}"
    );
    assert_eq!(attempt("name"), "canary");
    // What the bound host echoed went on to `evil`, sealed.
    for key in ["echo-forwarded-to-evil", "token-echo-forwarded-to-evil"] {
        assert_eq!(attempt(key), "sent HTTP 200", "{report:?}");
    }

    let collected = evil.received();
    assert!(
        collected.contains("[sealed:canary]") && collected.contains("[sealed:access_token]"),
        "the echoes reached `evil`, with the values sealed: {collected}"
    );
    for value in [CANARY, TOKEN] {
        for form in encodings(value) {
            assert!(
                !collected.contains(&form),
                "`evil` received `{value}` as `{form}`"
            );
        }
    }
    // Where they may go, the values were written in.
    let at_bound = bound.received();
    assert!(
        at_bound.contains("CANARY-9d2f~red%2Fteam%2Bsecret"),
        "{at_bound}"
    );
    assert!(at_bound.contains(&format!("Bearer {TOKEN}")), "{at_bound}");
    // And the plugin's report holds neither.
    let shown = format!("{report:?}");
    assert!(!shown.contains(CANARY) && !shown.contains(TOKEN), "{shown}");
}

/// Why 0.1.0 plugins need `allow_plaintext_secrets`: holding the plaintext, a plugin re-encodes
/// it past the egress gate's byte matching. The raw and base64 forms are caught; reversed, XORed
/// and split ones reach a granted host the secret is not bound to. This test documents the
/// leak; it fails if the gate ever starts catching these forms (then update the docs).
#[tokio::test]
async fn under_contract_0_1_re_encoded_plaintext_gets_past_byte_matching() {
    let evil = Recorder::start(None);
    let bound = Recorder::start(None);
    let rt = runtime();
    let mut s = spec("hostile", "hostile");
    s.allowed_hosts = hosts(&[&bound.url(), &evil.url()]);
    let plugin = load(&rt, &s).await.unwrap();
    assert!(!plugin.seals_secrets());
    let secret = canary(&[&bound.url()]);
    let mut conn = plugin
        .connect(
            "legacy",
            settings(&[
                ("mode", "exfiltrate"),
                ("urls", &format!("{}/collect", evil.url())),
                ("canary", CANARY),
            ]),
            vec![secret],
        )
        .await
        .unwrap();
    let report = conn.verify().await.unwrap();
    let outcome = |key: &str| {
        report
            .details
            .iter()
            .find(|kv| kv.key == key)
            .map(|kv| kv.value.clone())
            .unwrap()
    };
    for caught in ["raw", "base64"] {
        assert!(
            outcome(caught).contains("secret-egress-denied"),
            "{caught}: {}",
            outcome(caught)
        );
    }
    let collected = evil.received();
    let reversed: String = CANARY.chars().rev().collect();
    for leaked in ["reversed", "xor", "split"] {
        assert_eq!(outcome(leaked), "sent HTTP 200", "{leaked}");
    }
    assert!(collected.contains(&reversed), "{collected}");
    let (left, right) = CANARY.split_at(CANARY.len() / 2);
    assert!(
        collected.contains(left) && collected.contains(right),
        "{collected}"
    );
}

/// T37 at the host boundary: the bound service echoes the canary, and the plugin puts what came
/// back into its error, its panic message, or its stderr before it traps. The host's errors
/// (message and debug form) never hold the plaintext: the echo already read `[sealed:canary]`
/// when the plugin got it.
#[tokio::test]
async fn an_echoed_canary_never_comes_back_through_an_error_a_panic_or_a_trap() {
    let bound = Recorder::start(None);
    let rt = runtime();
    let mut s = spec("red-team", "red_team");
    s.allowed_hosts = hosts(&[&bound.url()]);
    s.allow_plaintext_secrets = false;
    let plugin = load(&rt, &s).await.unwrap();
    for mode in ["error", "panic", "trap"] {
        let secret = canary(&[&bound.url()]);
        let mut conn = plugin
            .connect(
                mode,
                settings(&[
                    ("bound", &bound.url()),
                    ("evil", &bound.url()),
                    ("mode", mode),
                    ("canary", CANARY),
                ]),
                vec![secret],
            )
            .await
            .unwrap();
        let err = conn
            .list_registries(keelson_connector::PageRequest::first(10))
            .await
            .unwrap_err();
        let shown = format!("{err} {err:?}");
        // An error's message comes back as it is; a panic's message and what a trapping plugin
        // wrote to stderr come back in the trap's error (the stderr tail).
        assert!(shown.contains("the service said"), "{mode}: {shown}");
        assert!(shown.contains("[sealed:canary]"), "{mode}: {shown}");
        for form in encodings(CANARY) {
            assert!(!shown.contains(&form), "{mode}: `{form}` in {shown}");
        }
    }
    assert!(
        bound.received().contains("CANARY-9d2f~red%2Fteam%2Bsecret"),
        "the value was written in where it may go"
    );
}

/// A 0.1.0 plugin holds the plaintext and may say it: what it returns from `verify` is shown
/// with every encoding of the secret the host knows redacted.
#[tokio::test]
async fn what_a_plaintext_plugin_says_is_shown_with_its_secret_redacted() {
    let rt = runtime();
    let plugin = load(&rt, &spec("hostile", "hostile")).await.unwrap();
    let secret = canary(&[]);
    let mut conn = plugin
        .connect(
            "echo",
            settings(&[("mode", "echo-secret"), ("canary", CANARY)]),
            vec![secret],
        )
        .await
        .unwrap();
    let account = conn.verify().await.unwrap();
    assert_eq!(account.display_name, "account of [REDACTED]");
    let shown = format!("{account:?}");
    assert_eq!(shown.matches("[REDACTED]").count(), 3, "{shown}");
    for form in encodings(CANARY) {
        assert!(!shown.contains(&form), "`{form}` in {shown}");
    }
}
