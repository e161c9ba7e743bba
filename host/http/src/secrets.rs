//! Egress binding: a connection's secret may leave only towards the hosts bound to it.
//!
//! A wildcard grant such as `https://*.azurecr.io` would otherwise let a hostile plugin post the
//! client secret to a registry its author owns. Before a request (and each redirect hop) goes
//! out, every secret not bound to the destination is searched for in the URL, header names and
//! values, and body: raw, after percent-decoding (covers URL and form encoding), and as base64
//! (standard and URL-safe, at every alignment, so `Basic base64(user:secret)` is caught) or hex.

use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use percent_encoding::percent_decode;

use crate::BoundSecret;

/// Shortest base64 fragment still worth matching; shorter ones would match by accident.
const MIN_FRAGMENT: usize = 6;

/// A secret with every encoded form it is searched for in.
pub(crate) struct Needles {
    pub(crate) secret: BoundSecret,
    forms: Vec<Vec<u8>>,
}

impl Needles {
    pub(crate) fn new(secret: BoundSecret) -> Option<Self> {
        let raw = secret.value.as_bytes();
        if raw.is_empty() {
            return None;
        }
        let mut forms = vec![
            raw.to_vec(),
            json_escaped(raw),
            hex(raw, false),
            hex(raw, true),
        ];
        for engine in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
            forms.extend(base64_fragments(raw, engine));
        }
        forms.sort();
        forms.dedup();
        Some(Self { secret, forms })
    }

    /// Whether `haystack` carries the secret in any form, raw or percent-decoded.
    pub(crate) fn found_in(&self, haystack: &[u8]) -> bool {
        let hit = |h: &[u8]| {
            self.forms
                .iter()
                .any(|f| memchr::memmem::find(h, f).is_some())
        };
        if hit(haystack) {
            return true;
        }
        // Percent- and form-decoding, applied repeatedly so `%2541` does not hide an `A`.
        let mut current: Vec<u8> = haystack.to_vec();
        for _ in 0..3 {
            if !current.contains(&b'%') && !current.contains(&b'+') {
                break;
            }
            let plus_as_space: Vec<u8> = current
                .iter()
                .map(|&b| if b == b'+' { b' ' } else { b })
                .collect();
            let decoded: Vec<u8> = percent_decode(&current).collect();
            let decoded_form: Vec<u8> = percent_decode(&plus_as_space).collect();
            if hit(&decoded) || hit(&decoded_form) {
                return true;
            }
            if decoded == current {
                break;
            }
            current = decoded;
        }
        false
    }
}

fn json_escaped(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    for &b in raw {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'/' => out.extend_from_slice(b"\\/"),
            _ => out.push(b),
        }
    }
    out
}

fn hex(raw: &[u8], upper: bool) -> Vec<u8> {
    let digits: &[u8; 16] = if upper {
        b"0123456789ABCDEF"
    } else {
        b"0123456789abcdef"
    };
    raw.iter()
        .flat_map(|b| [digits[usize::from(b >> 4)], digits[usize::from(b & 0xf)]])
        .collect()
}

/// The base64 characters that depend on the secret alone, for each of the three alignments the
/// secret can have inside a longer encoded text.
fn base64_fragments(raw: &[u8], engine: &impl base64::Engine) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for offset in 0..3usize {
        let mut buf = vec![0u8; offset];
        buf.extend_from_slice(raw);
        let encoded = engine.encode(&buf).into_bytes();
        // Character i covers bits 6i..6i+6; keep those entirely within the secret's bits.
        let start = (offset * 8).div_ceil(6);
        let end = ((offset + raw.len()) * 8) / 6;
        if end > start && end - start >= MIN_FRAGMENT {
            out.push(encoded[start..end].to_vec());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE};

    const SECRET: &str = "s3cr~et.V4lue_with+sl/ash=";

    fn needles() -> Needles {
        Needles::new(BoundSecret {
            name: "client-secret".into(),
            value: SECRET.into(),
            allowed_hosts: vec![],
        })
        .unwrap()
    }

    /// `%7E` -> `%7e`, leaving every other character alone.
    fn lower_hex_escapes(text: &str) -> String {
        let mut out = String::new();
        let mut left = 0;
        for c in text.chars() {
            if c == '%' {
                left = 2;
                out.push(c);
            } else if left > 0 {
                left -= 1;
                out.push(c.to_ascii_lowercase());
            } else {
                out.push(c);
            }
        }
        out
    }

    #[test]
    fn finds_the_secret_in_every_encoding() {
        let n = needles();
        let enc = |s: &str| {
            percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
        };
        let form = |s: &str| enc(s).replace("%20", "+");
        let carriers = [
            format!("client_secret={SECRET}&x=1"),
            format!("client_secret={}", enc(SECRET)),
            format!("client_secret={}", lower_hex_escapes(&enc(SECRET))),
            format!("q={}", enc(&enc(SECRET))),
            form(&format!("a b {SECRET}")),
            format!("{{\"secret\":\"{}\"}}", SECRET.replace('/', "\\/")),
            format!("Basic {}", STANDARD.encode(format!("app:{SECRET}"))),
            format!("Basic {}", STANDARD.encode(format!("ap:{SECRET}"))),
            format!("Basic {}", STANDARD.encode(format!("a:{SECRET}"))),
            URL_SAFE.encode(format!("xx{SECRET}yy")),
            format!(
                "h={}",
                hex(SECRET.as_bytes(), false)
                    .iter()
                    .map(|&b| b as char)
                    .collect::<String>()
            ),
            format!(
                "h={}",
                hex(SECRET.as_bytes(), true)
                    .iter()
                    .map(|&b| b as char)
                    .collect::<String>()
            ),
        ];
        for carrier in &carriers {
            assert!(n.found_in(carrier.as_bytes()), "missed in {carrier}");
        }
    }

    #[test]
    fn does_not_fire_on_unrelated_text() {
        let n = needles();
        for text in [
            "grant_type=client_credentials&scope=https%3A%2F%2Fmanagement.azure.com%2F.default",
            "",
            "s3cr~et",
            "Basic YXBwOnBhc3N3b3Jk",
        ] {
            assert!(!n.found_in(text.as_bytes()), "false hit in {text}");
        }
    }

    #[test]
    fn empty_secrets_bind_nothing() {
        assert!(
            Needles::new(BoundSecret {
                name: "x".into(),
                value: String::new(),
                allowed_hosts: vec![]
            })
            .is_none()
        );
    }

    #[test]
    fn fragments_are_substrings_of_the_encoding_at_each_alignment() {
        let raw = SECRET.as_bytes();
        let frags = base64_fragments(raw, &STANDARD_NO_PAD);
        assert_eq!(frags.len(), 3);
        for prefix in ["", "a", "ab", "abc", "abcd"] {
            let mut text = prefix.as_bytes().to_vec();
            text.extend_from_slice(raw);
            let enc = STANDARD.encode(&text);
            assert!(
                frags
                    .iter()
                    .any(|f| enc.contains(std::str::from_utf8(f).unwrap())),
                "prefix {prefix:?}"
            );
        }
    }
}
