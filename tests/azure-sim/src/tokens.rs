//! Token minting and checking for Entra access tokens and ACR refresh/access tokens.
//!
//! Tokens look like JWTs (three base64url parts) so clients treat them as opaque bearer strings
//! the way they do with Azure's, but they are stateless: the claims travel in the token and a
//! keyed SHA-256 tag proves the simulator minted them.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// What a token is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum TokenKind {
    /// Entra access token for ARM / Resource Graph.
    Arm,
    /// Entra access token for the ACR audience.
    Acr,
    /// ACR refresh token from `/oauth2/exchange`.
    AcrRefresh,
    /// ACR access token from `/oauth2/token`.
    AcrAccess,
}

/// One granted ACR scope.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Access {
    #[serde(rename = "type")]
    pub(crate) kind: String,
    pub(crate) name: String,
    pub(crate) actions: Vec<String>,
}

/// The claims every simulator token carries.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Claims {
    pub(crate) kind: TokenKind,
    pub(crate) aud: String,
    pub(crate) iss: String,
    pub(crate) tid: String,
    pub(crate) appid: String,
    pub(crate) oid: String,
    pub(crate) iat: i64,
    pub(crate) nbf: i64,
    pub(crate) exp: i64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) access: Vec<Access>,
}

/// Signs and verifies tokens with a per-process key.
#[derive(Debug)]
pub(crate) struct Signer {
    key: [u8; 32],
}

impl Signer {
    pub(crate) fn new(seed: u64) -> Self {
        let mut h = Sha256::new();
        h.update(b"azure-sim token key");
        h.update(seed.to_le_bytes());
        h.update(crate::util::now_nanos().to_le_bytes());
        h.update(std::process::id().to_le_bytes());
        Self {
            key: h.finalize().into(),
        }
    }

    fn tag(&self, data: &[u8]) -> String {
        let inner = Sha256::new()
            .chain_update(self.key)
            .chain_update(data)
            .finalize();
        let outer = Sha256::new()
            .chain_update(self.key)
            .chain_update(inner)
            .finalize();
        URL_SAFE_NO_PAD.encode(outer)
    }

    pub(crate) fn sign(&self, claims: &Claims) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"RS256","kid":"azure-sim"}"#);
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap_or_default());
        let signed = format!("{header}.{body}");
        let tag = self.tag(signed.as_bytes());
        format!("{signed}.{tag}")
    }

    /// The claims of a token this simulator minted, expired or not; `None` for anything else.
    pub(crate) fn verify(&self, token: &str) -> Option<Claims> {
        let (signed, tag) = token.rsplit_once('.')?;
        if self.tag(signed.as_bytes()) != tag {
            return None;
        }
        let (_, body) = signed.split_once('.')?;
        let bytes = URL_SAFE_NO_PAD.decode(body).ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> Claims {
        Claims {
            kind: TokenKind::Arm,
            aud: "https://management.core.windows.net/".into(),
            iss: "https://sts.windows.net/t/".into(),
            tid: "t".into(),
            appid: "a".into(),
            oid: "o".into(),
            iat: 1,
            nbf: 1,
            exp: 2,
            access: vec![],
        }
    }

    #[test]
    fn roundtrip_and_tamper() {
        let s = Signer::new(1);
        let t = s.sign(&claims());
        assert_eq!(t.matches('.').count(), 2);
        assert_eq!(s.verify(&t).unwrap().appid, "a");
        let mut forged = t.clone();
        forged.push('x');
        assert!(s.verify(&forged).is_none());
        assert!(
            Signer::new(1).verify(&t).is_none(),
            "another process key must not verify"
        );
    }
}
