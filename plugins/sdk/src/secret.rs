//! Sealed secrets: a credential the connector uses without holding its value.
//!
//! The host hands each secret setting to [`Connector::connect`](crate::Connector::connect) as a
//! [`Secret`], and turns credential fields of responses into new ones (see
//! [`RequestBuilder::capture`](crate::http::RequestBuilder::capture)). A request names a
//! secret where its value goes ([`bearer`](crate::http::RequestBuilder::bearer),
//! [`form_secret`](crate::http::RequestBuilder::form_secret),
//! [`header_secret`](crate::http::RequestBuilder::header_secret),
//! [`basic`](crate::http::RequestBuilder::basic)); the host writes the value in only when the
//! request goes to a host the secret is bound to. There is no way to read the value: a
//! connector cannot leak what it never sees.
//!
//! Unit tests run without a host: [`Secret::for_tests`] makes a secret whose value the SDK
//! writes in itself, so a test transport sees requests as the host would send them.

use std::fmt;
use std::rc::Rc;

use base64::Engine as _;

/// A sealed credential; cheap to clone (clones share one handle).
#[derive(Clone)]
pub struct Secret(Rc<Inner>);

enum Inner {
    /// A handle into the host's table.
    Sealed(crate::wit::keelson::registry::secrets::Secret),
    /// A value the SDK holds itself: only for unit tests, where there is no host.
    Plain {
        name: String,
        value: String,
        expires_at: Option<u64>,
    },
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Secret").field(&self.name()).finish()
    }
}

impl Secret {
    pub(crate) fn sealed(handle: crate::wit::keelson::registry::secrets::Secret) -> Self {
        Self(Rc::new(Inner::Sealed(handle)))
    }

    /// A secret whose value the SDK knows, for unit tests without a host. A connector never
    /// needs this: the host gives it every secret it may use.
    pub fn for_tests(name: &str, value: &str) -> Self {
        Self::plain(name, value, None)
    }

    pub(crate) fn plain(name: &str, value: &str, expires_at: Option<u64>) -> Self {
        Self(Rc::new(Inner::Plain {
            name: name.to_owned(),
            value: value.to_owned(),
            expires_at: expires_at.or_else(|| jwt_expiry(value)),
        }))
    }

    /// What the secret is: the setting key or the captured field (`access_token`).
    pub fn name(&self) -> String {
        match &*self.0 {
            Inner::Sealed(handle) => handle.name(),
            Inner::Plain { name, .. } => name.clone(),
        }
    }

    /// For a captured token: when it expires (seconds since the Unix epoch), from the
    /// response's `expires_in`/`expires_on` or the token's JWT `exp` claim.
    pub fn expires_at(&self) -> Option<u64> {
        match &*self.0 {
            Inner::Sealed(handle) => handle.expires_at(),
            Inner::Plain { expires_at, .. } => *expires_at,
        }
    }

    /// The host's handle, or the value of a test secret.
    pub(crate) fn view(&self) -> View<'_> {
        match &*self.0 {
            Inner::Sealed(handle) => View::Sealed(handle),
            Inner::Plain { value, .. } => View::Plain(value),
        }
    }
}

/// How a request gets at a secret.
pub(crate) enum View<'a> {
    Sealed(&'a crate::wit::keelson::registry::secrets::Secret),
    Plain(&'a str),
}

/// The `exp` claim of a JWT, as the host reads it for sealed tokens.
fn jwt_expiry(token: &str) -> Option<u64> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("exp")?.as_u64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_test_secret_shows_its_name_never_its_value() {
        let secret = Secret::for_tests("client_secret", "CANARY-value");
        assert_eq!(secret.name(), "client_secret");
        assert_eq!(format!("{secret:?}"), "Secret(\"client_secret\")");
        assert_eq!(secret.expires_at(), None);
    }

    #[test]
    fn a_jwt_test_secret_knows_its_expiry() {
        let b64 = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        let jwt = format!("{}.{}.s", b64("{}"), b64(r#"{"exp":42}"#));
        assert_eq!(Secret::for_tests("t", &jwt).expires_at(), Some(42));
    }
}
