//! The settings a connection was opened with, with lookups that produce `invalid-config`
//! errors naming the key.

use crate::{ConnectorError, Secret, Setting};

/// The settings the host passed to [`Connector::connect`](crate::Connector::connect), keyed as
/// in the connector's [`SettingSpec`](crate::SettingSpec)s: plain values, and the secret ones
/// sealed ([`Settings::secret`]).
///
/// Values are trimmed and an empty value counts as absent. Error messages name the key and
/// never the value.
#[derive(Clone, Default)]
pub struct Settings {
    entries: Vec<(String, String)>,
    secrets: Vec<(String, Secret)>,
}

// Hand-written so a secret never reaches a log through `{:?}`.
impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("keys", &self.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Settings {
    /// Wraps the settings as the host passed them.
    pub fn new(settings: Vec<Setting>, secrets: Vec<(String, Secret)>) -> Self {
        Self {
            entries: settings.into_iter().map(|s| (s.key, s.value)).collect(),
            secrets,
        }
    }

    /// Builds settings from pairs, for tests and tools. Off WebAssembly a pair also stands in
    /// for a secret of its key ([`Settings::secret`]).
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Self {
        Self {
            entries: pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            secrets: Vec::new(),
        }
    }

    /// The keys present, plain and secret, in the order given.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries
            .iter()
            .map(|(k, _)| k.as_str())
            .chain(self.secrets.iter().map(|(k, _)| k.as_str()))
    }

    /// The sealed secret `key`, or an `invalid-config` error naming it.
    pub fn secret(&self, key: &str) -> Result<Secret, ConnectorError> {
        self.secret_opt(key)
            .ok_or_else(|| ConnectorError::InvalidConfig(format!("setting `{key}` is required")))
    }

    /// The sealed secret `key`, if given. Off WebAssembly (unit tests, where no host seals
    /// anything) a plain value under `key` stands in for it.
    pub fn secret_opt(&self, key: &str) -> Option<Secret> {
        if let Some((_, secret)) = self.secrets.iter().rev().find(|(k, _)| k == key) {
            return Some(secret.clone());
        }
        if cfg!(target_arch = "wasm32") {
            return None;
        }
        self.get(key).map(|value| Secret::for_tests(key, value))
    }

    /// The trimmed value of `key`, or `None` when absent or empty. A repeated key keeps its
    /// last value.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    }

    /// The value of `key`, or an `invalid-config` error naming it.
    pub fn required(&self, key: &str) -> Result<&str, ConnectorError> {
        self.get(key)
            .ok_or_else(|| ConnectorError::InvalidConfig(format!("setting `{key}` is required")))
    }

    /// The value of `key`, or `default`.
    pub fn get_or<'a>(&'a self, key: &str, default: &'a str) -> &'a str {
        self.get(key).unwrap_or(default)
    }

    /// The value of `key` (or `default`) as one of `choices`, matched ignoring ASCII case and
    /// returned as spelled in `choices`. Only for non-secret settings: the error quotes the value.
    pub fn choice<'a>(
        &self,
        key: &str,
        choices: &[&'a str],
        default: &'a str,
    ) -> Result<&'a str, ConnectorError> {
        let Some(value) = self.get(key) else {
            return Ok(default);
        };
        choices
            .iter()
            .find(|c| c.eq_ignore_ascii_case(value))
            .copied()
            .ok_or_else(|| {
                let expected = choices
                    .iter()
                    .map(|c| format!("`{c}`"))
                    .collect::<Vec<_>>()
                    .join(", ");
                ConnectorError::InvalidConfig(format!(
                    "setting `{key}` is `{value}`; expected one of {expected}"
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_trims_and_treats_empty_as_absent() {
        let s = Settings::from_pairs(&[("a", "  x "), ("b", "   "), ("a2", "")]);
        assert_eq!(s.get("a"), Some("x"));
        assert_eq!(s.get("b"), None);
        assert_eq!(s.get("a2"), None);
        assert_eq!(s.get("missing"), None);
    }

    #[test]
    fn repeated_key_keeps_last_value() {
        let s = Settings::from_pairs(&[("k", "one"), ("k", "two")]);
        assert_eq!(s.get("k"), Some("two"));
    }

    #[test]
    fn required_names_the_key_not_the_value() {
        let s = Settings::from_pairs(&[("client_secret", "")]);
        let err = s.required("client_secret").unwrap_err();
        assert_eq!(
            err,
            ConnectorError::InvalidConfig("setting `client_secret` is required".into())
        );
    }

    #[test]
    fn get_or_falls_back() {
        let s = Settings::from_pairs(&[("x", "1")]);
        assert_eq!(s.get_or("x", "d"), "1");
        assert_eq!(s.get_or("y", "d"), "d");
    }

    #[test]
    fn choice_matches_case_insensitively_and_rejects_others() {
        let s = Settings::from_pairs(&[("cloud", "USGov"), ("bad", "mars")]);
        let choices = ["public", "usgov"];
        assert_eq!(s.choice("cloud", &choices, "public").unwrap(), "usgov");
        assert_eq!(s.choice("absent", &choices, "public").unwrap(), "public");
        let err = s.choice("bad", &choices, "public").unwrap_err();
        assert_eq!(
            err.message(),
            Some("setting `bad` is `mars`; expected one of `public`, `usgov`")
        );
    }

    #[test]
    fn secrets_are_looked_up_by_key_and_name_it_when_missing() {
        let s = Settings::new(
            vec![],
            vec![("token".into(), Secret::for_tests("token", "v"))],
        );
        assert_eq!(s.secret("token").unwrap().name(), "token");
        assert_eq!(s.keys().collect::<Vec<_>>(), ["token"]);
        assert_eq!(
            s.secret("other").unwrap_err(),
            ConnectorError::InvalidConfig("setting `other` is required".into())
        );
        // Off WebAssembly a plain pair stands in, so unit tests can build settings from pairs.
        let s = Settings::from_pairs(&[("client_secret", "CANARY")]);
        assert_eq!(s.secret("client_secret").unwrap().name(), "client_secret");
    }

    #[test]
    fn debug_shows_keys_only() {
        let s = Settings::from_pairs(&[("client_secret", "CANARY-123")]);
        let shown = format!("{s:?}");
        assert!(shown.contains("client_secret"));
        assert!(!shown.contains("CANARY"));
    }
}
