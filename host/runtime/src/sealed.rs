//! Sealed secrets (contract 0.2.0): the values behind the guest's `secret` handles, and the
//! host-side steps that use them without the guest ever holding one.
//!
//! - [`SealedSecret`]: a value, what it is called and the hosts it is bound to.
//! - Rendering: a request's parts joined where each value goes, encoded for that place (a
//!   header as it is, a form field percent-encoded, a JSON string escaped, basic authorization in
//!   base64), with the [`SealedUse`] of each secret written so the egress gate confines every
//!   hop to its hosts.
//! - [`capture`]: credential fields taken out of a JSON response into new secrets.
//! - [`Scrubber`]: every known value, in every encoding the host itself produces (raw, JSON
//!   escapes, percent-encoding, base64), replaced before anything reaches the guest or a log.

use std::fmt;

use base64::Engine as _;
use keelson_core::HostPattern;
use keelson_http::SealedUse;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// Values shorter than this are never scrubbed: they would match ordinary text, and no real
/// credential is that short.
const MIN_SCRUBBED: usize = 4;

/// A secret the guest holds only as a handle. (`pub` only because the bindings re-export it;
/// the module is private.)
#[derive(Clone)]
#[allow(
    unreachable_pub,
    reason = "the generated bindings re-export the resource's type"
)]
pub struct SealedSecret {
    /// The setting key or the captured field; never the value.
    pub(crate) name: String,
    pub(crate) value: String,
    /// Where the value may be sent.
    pub(crate) hosts: Vec<HostPattern>,
    /// When a captured token expires (seconds since the epoch), where the response or the
    /// token said.
    pub(crate) expires_at: Option<u64>,
    /// Captured from a response (rather than a secret setting): forgotten by the scrubber when
    /// the guest drops it.
    pub(crate) captured: bool,
}

impl fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedSecret")
            .field("name", &self.name)
            .field("value", &"[sealed]")
            .field("hosts", &self.hosts)
            .field("expires_at", &self.expires_at)
            .field("captured", &self.captured)
            .finish()
    }
}

impl SealedSecret {
    /// What the egress gate needs to confine a request carrying this value.
    pub(crate) fn use_of(&self) -> SealedUse {
        SealedUse {
            name: self.name.clone(),
            allowed_hosts: self.hosts.clone(),
        }
    }
}

/// A piece of a value: plain text, or a secret to put in.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Piece<'a> {
    Text(&'a str),
    Secret(&'a SealedSecret),
}

/// Why a request could not be rendered; the guest gets it as `invalid`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RenderError {
    #[error("the value of header `{0}` would hold a line break or NUL; a header value is one line")]
    HeaderBreak(String),
}

/// The secrets written into one request, deduplicated by name.
#[derive(Debug, Default)]
pub(crate) struct Uses(Vec<SealedUse>);

impl Uses {
    fn note(&mut self, secret: &SealedSecret) {
        if !self.0.iter().any(|u| u.name == secret.name) {
            self.0.push(secret.use_of());
        }
    }

    pub(crate) fn into_vec(self) -> Vec<SealedUse> {
        self.0
    }
}

/// A header value: the pieces joined as they are; a line break or NUL anywhere is refused so a
/// value cannot smuggle a second header.
pub(crate) fn header_value(
    name: &str,
    pieces: &[Piece<'_>],
    uses: &mut Uses,
) -> Result<String, RenderError> {
    let value = join(pieces, uses, |text, out| out.push_str(text));
    if value.contains(['\r', '\n', '\0']) {
        return Err(RenderError::HeaderBreak(name.to_owned()));
    }
    Ok(value)
}

/// `Bearer <value>`.
pub(crate) fn bearer(secret: &SealedSecret, uses: &mut Uses) -> Result<String, RenderError> {
    header_value(
        "authorization",
        &[Piece::Text("Bearer "), Piece::Secret(secret)],
        uses,
    )
}

/// `Basic base64(user:password)`.
pub(crate) fn basic(user: &[Piece<'_>], password: &[Piece<'_>], uses: &mut Uses) -> String {
    let user = join(user, uses, |text, out| out.push_str(text));
    let password = join(password, uses, |text, out| out.push_str(text));
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {encoded}")
}

/// `application/x-www-form-urlencoded`, names and values percent-encoded.
pub(crate) fn form<'a>(
    fields: impl IntoIterator<Item = (&'a str, Vec<Piece<'a>>)>,
    uses: &mut Uses,
) -> Vec<u8> {
    let mut body = String::new();
    for (name, value) in fields {
        if !body.is_empty() {
            body.push('&');
        }
        body.extend(utf8_percent_encode(name, FORM));
        body.push('=');
        let value = join(&value, uses, |text, out| out.push_str(text));
        body.extend(utf8_percent_encode(&value, FORM));
    }
    body.into_bytes()
}

/// A JSON text from pieces: text as it is, each secret as the escaped contents of a string.
pub(crate) fn json(pieces: &[Piece<'_>], uses: &mut Uses) -> Vec<u8> {
    let mut out = String::new();
    for piece in pieces {
        match piece {
            Piece::Text(text) => out.push_str(text),
            Piece::Secret(secret) => {
                uses.note(secret);
                out.push_str(&json_contents(&secret.value));
            }
        }
    }
    out.into_bytes()
}

fn join(pieces: &[Piece<'_>], uses: &mut Uses, text: impl Fn(&str, &mut String)) -> String {
    let mut out = String::new();
    for piece in pieces {
        match piece {
            Piece::Text(t) => text(t, &mut out),
            Piece::Secret(secret) => {
                uses.note(secret);
                out.push_str(&secret.value);
            }
        }
    }
    out
}

/// What a form field keeps as it is: the RFC 3986 unreserved set (`A-Z a-z 0-9 - . _ ~`), as
/// the guest SDK encodes plain fields.
const FORM: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `text` as the contents of a JSON string (without the quotes).
fn json_contents(text: &str) -> String {
    let quoted = serde_json::Value::String(text.to_owned()).to_string();
    quoted[1..quoted.len() - 1].to_owned()
}

/// What [`capture`] took from a response.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Captured {
    pub(crate) field: String,
    pub(crate) value: String,
    /// From `expires_in` (seconds from `now`), `expires_on` (epoch seconds) or the value's JWT
    /// `exp` claim, in that order.
    pub(crate) expires_at: Option<u64>,
}

/// Takes `fields` out of a JSON object body: each one present as a string becomes a
/// [`Captured`] and reads `[sealed:FIELD]` in the returned body. `None` when the body is not a
/// JSON object (nothing is captured, and the body is passed on as it is, scrubbed).
pub(crate) fn capture(body: &[u8], fields: &[&str], now: u64) -> Option<(Vec<u8>, Vec<Captured>)> {
    let serde_json::Value::Object(mut object) = serde_json::from_slice(body).ok()? else {
        return None;
    };
    let seconds = |key: &str| match object.get(key) {
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    };
    let expires = seconds("expires_in")
        .map(|s| now.saturating_add(s))
        .or_else(|| seconds("expires_on"));
    let mut captured = Vec::new();
    for field in fields {
        let Some(serde_json::Value::String(value)) = object.get(*field) else {
            continue;
        };
        let value = value.clone();
        object.insert(
            (*field).to_owned(),
            serde_json::Value::String(format!("[sealed:{field}]")),
        );
        captured.push(Captured {
            field: (*field).to_owned(),
            expires_at: expires.or_else(|| jwt_expiry(&value)),
            value,
        });
    }
    let body = serde_json::to_vec(&object).ok()?;
    Some((body, captured))
}

/// The `exp` claim of a JWT (`header.payload.signature`, base64url), without checking anything
/// else: it only tells the guest when to renew.
fn jwt_expiry(token: &str) -> Option<u64> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("exp")?.as_u64()
}

/// Replaces known secret values, in each form the host writes them, with `[sealed:NAME]`.
///
/// It runs over every response a guest gets, so it holds only live values: a captured token is
/// removed when the guest drops its handle (a scan captures a token per registry scope).
#[derive(Debug, Clone, Default)]
pub(crate) struct Scrubber {
    /// Each value added, with its replacement, in the order added.
    values: Vec<(String, Vec<u8>)>,
    /// (encoded form, its replacement) of every value, longest first so a form containing
    /// another wins; rebuilt when a value comes or goes.
    forms: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Scrubber {
    /// Adds `value`, called `name`: it reads `[sealed:NAME]` where it was.
    pub(crate) fn add(&mut self, name: &str, value: &str) {
        self.add_as(value, &format!("[sealed:{name}]"));
    }

    /// Adds `value`, to read `label` where it was.
    pub(crate) fn add_as(&mut self, value: &str, label: &str) {
        if value.len() < MIN_SCRUBBED {
            return;
        }
        self.values
            .push((value.to_owned(), label.as_bytes().to_vec()));
        self.rebuild();
    }

    /// Forgets one addition of `value` (another handle may hold the same value).
    pub(crate) fn remove(&mut self, value: &str) {
        if let Some(at) = self.values.iter().position(|(v, _)| v == value) {
            self.values.remove(at);
            self.rebuild();
        }
    }

    fn rebuild(&mut self) {
        self.forms.clear();
        for (value, label) in &self.values {
            for form in forms(value) {
                if !self.forms.iter().any(|(f, _)| *f == form) {
                    self.forms.push((form, label.clone()));
                }
            }
        }
        self.forms
            .sort_by_key(|(form, _)| std::cmp::Reverse(form.len()));
    }

    /// `bytes` with every known form replaced.
    pub(crate) fn bytes(&self, bytes: &[u8]) -> Vec<u8> {
        let mut out = bytes.to_vec();
        for (form, label) in &self.forms {
            if memchr::memmem::find(&out, form).is_some() {
                out = replace(&out, form, label);
            }
        }
        out
    }

    /// `text` with every known form replaced.
    pub(crate) fn text(&self, text: &str) -> String {
        String::from_utf8_lossy(&self.bytes(text.as_bytes())).into_owned()
    }
}

/// The encodings of `value` the host itself produces or a service commonly echoes.
fn forms(value: &str) -> Vec<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let mut forms = vec![
        value.as_bytes().to_vec(),
        json_contents(value).into_bytes(),
        utf8_percent_encode(value, FORM).to_string().into_bytes(),
        utf8_percent_encode(value, NON_ALPHANUMERIC)
            .to_string()
            .into_bytes(),
    ];
    for engine in [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD] {
        forms.push(engine.encode(value).into_bytes());
    }
    forms.sort();
    forms.dedup();
    forms
}

fn replace(haystack: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(haystack.len());
    let mut last = 0;
    for at in memchr::memmem::find_iter(haystack, needle) {
        // Matches may overlap (`aaa` in `aaaa`); skip those inside one already replaced.
        if at < last {
            continue;
        }
        out.extend_from_slice(&haystack[last..at]);
        out.extend_from_slice(with);
        last = at + needle.len();
    }
    out.extend_from_slice(&haystack[last..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(name: &str, value: &str, host: &str) -> SealedSecret {
        SealedSecret {
            name: name.into(),
            value: value.into(),
            hosts: vec![HostPattern::parse(host).unwrap()],
            expires_at: None,
            captured: false,
        }
    }

    const VALUE: &str = "Zk8Q~a+b/c=\"d\\e";

    #[test]
    fn each_place_encodes_the_value_and_notes_its_use() {
        let s = secret("client_secret", VALUE, "https://login.example");
        let mut uses = Uses::default();
        let body = form(
            [
                ("grant_type", vec![Piece::Text("client_credentials")]),
                ("client_secret", vec![Piece::Secret(&s)]),
            ],
            &mut uses,
        );
        assert_eq!(
            String::from_utf8(body).unwrap(),
            "grant_type=client_credentials&client_secret=Zk8Q~a%2Bb%2Fc%3D%22d%5Ce"
        );
        let body = json(
            &[
                Piece::Text(r#"{"k":""#),
                Piece::Secret(&s),
                Piece::Text(r#""}"#),
            ],
            &mut uses,
        );
        let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(parsed["k"], VALUE);
        assert_eq!(bearer(&s, &mut uses).unwrap(), format!("Bearer {VALUE}"));
        let basic = basic(&[Piece::Text("app")], &[Piece::Secret(&s)], &mut uses);
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(basic.strip_prefix("Basic ").unwrap())
            .unwrap();
        assert_eq!(decoded, format!("app:{VALUE}").as_bytes());
        let uses = uses.into_vec();
        assert_eq!(uses.len(), 1, "one secret, noted once");
        assert_eq!(uses[0].name, "client_secret");
    }

    #[test]
    fn a_header_value_cannot_break_the_line() {
        let s = secret("t", "abc\r\nX-Evil: 1", "https://a.example");
        let err = header_value("x-key", &[Piece::Secret(&s)], &mut Uses::default()).unwrap_err();
        assert_eq!(err, RenderError::HeaderBreak("x-key".into()));
    }

    #[test]
    fn captured_fields_leave_the_body_and_keep_their_expiry() {
        let body = br#"{"token_type":"Bearer","expires_in":"3599","access_token":"eyJ.tok","refresh_token":5}"#;
        let (body, captured) =
            capture(body, &["access_token", "refresh_token", "id_token"], 1000).unwrap();
        let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(parsed["access_token"], "[sealed:access_token]");
        assert_eq!(parsed["refresh_token"], 5, "not a string: not captured");
        assert_eq!(parsed["token_type"], "Bearer");
        assert_eq!(
            captured,
            [Captured {
                field: "access_token".into(),
                value: "eyJ.tok".into(),
                expires_at: Some(4599),
            }]
        );
        assert!(capture(b"not json", &["access_token"], 0).is_none());
        assert!(capture(b"[1]", &["access_token"], 0).is_none());
    }

    #[test]
    fn a_jwt_says_when_it_expires() {
        let b64 = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        let jwt = format!(
            "{}.{}.sig",
            b64(r#"{"alg":"RS256"}"#),
            b64(r#"{"exp":1700000000}"#)
        );
        let body = format!(r#"{{"refresh_token":"{jwt}"}}"#);
        let (_, captured) = capture(body.as_bytes(), &["refresh_token"], 0).unwrap();
        assert_eq!(captured[0].expires_at, Some(1_700_000_000));
        assert_eq!(jwt_expiry("opaque"), None);
    }

    #[test]
    fn the_scrubber_replaces_every_form_the_host_knows() {
        let mut scrub = Scrubber::default();
        scrub.add("client_secret", VALUE);
        scrub.add("short", "ab");
        let b64 = base64::engine::general_purpose::STANDARD.encode(VALUE);
        let b64url = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(VALUE);
        for carrier in [
            format!("echo: {VALUE}"),
            format!(r#"{{"echo":"{}"}}"#, json_contents(VALUE)),
            "q=Zk8Q%7Ea%2Bb%2Fc%3D%22d%5Ce".to_owned(),
            "q=Zk8Q~a%2Bb%2Fc%3D%22d%5Ce".to_owned(),
            format!("basic {b64} / {b64url}"),
        ] {
            let out = scrub.text(&carrier);
            assert!(out.contains("[sealed:client_secret]"), "{carrier} -> {out}");
            assert!(!out.contains(VALUE) && !out.contains(&b64), "{out}");
        }
        assert_eq!(scrub.text("ab ab"), "ab ab", "short values are left alone");
    }

    #[test]
    fn a_removed_value_is_no_longer_scrubbed_unless_added_twice() {
        let mut scrub = Scrubber::default();
        scrub.add("access_token", "token-value-1");
        scrub.add("access_token", "token-value-1");
        scrub.remove("token-value-1");
        assert_eq!(scrub.text("x token-value-1"), "x [sealed:access_token]");
        scrub.remove("token-value-1");
        assert_eq!(scrub.text("x token-value-1"), "x token-value-1");
        assert_eq!(replace(b"aaaa", b"aa", b"-"), b"--");
        assert_eq!(replace(b"abcabc", b"bc", b"X"), b"aXaX");
    }
}
