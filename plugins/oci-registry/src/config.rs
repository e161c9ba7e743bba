//! The connection settings: the registry's base URL, optional credentials, an optional fixed
//! repository list (registries without a catalog) and an optional findings feed.

use keelson_plugin_sdk::{ConnectorError, Secret, SettingSpec, Settings};

/// The settings as `describe` declares them, in form order.
pub(crate) fn spec() -> Vec<SettingSpec> {
    vec![
        SettingSpec::new(
            "url",
            "Registry URL",
            "Base URL of the registry, as `https://host[:port]` without a path \
             (`https://registry.example.com`, `https://ghcr.io`).",
        ),
        SettingSpec::new(
            "username",
            "Username",
            "User name for the registry; leave empty for anonymous access.",
        )
        .optional(),
        SettingSpec::new(
            "password",
            "Password or token",
            "Password or access token of that user (a GitHub or Harbor robot token works).",
        )
        .secret()
        .optional(),
        SettingSpec::new(
            "repositories",
            "Repositories",
            "Comma-separated repositories to scan instead of the catalog, for registries that do \
             not serve `/v2/_catalog` (GHCR, Docker Hub).",
        )
        .optional(),
        SettingSpec::new(
            "findings_url",
            "Findings feed URL",
            "Optional `https://` URL of a JSON findings feed for this registry's images; without \
             one the connector reports inventory only.",
        )
        .optional(),
    ]
}

/// Validated settings.
#[derive(Clone)]
pub(crate) struct Config {
    /// `https://host[:port]`, no trailing slash.
    pub(crate) base: String,
    /// `host[:port]` as clients pull from it: the registry's key.
    pub(crate) login_server: String,
    /// The user and the sealed password.
    pub(crate) credentials: Option<(String, Secret)>,
    pub(crate) repositories: Option<Vec<String>>,
    pub(crate) findings_url: Option<String>,
}

// Hand-written so the password never reaches a log.
impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("base", &self.base)
            .field("has_credentials", &self.credentials.is_some())
            .finish_non_exhaustive()
    }
}

impl Config {
    pub(crate) fn from_settings(settings: &Settings) -> Result<Self, ConnectorError> {
        let url = settings.required("url")?;
        let (base, login_server) = parse_base(url).ok_or_else(|| {
            ConnectorError::InvalidConfig(format!(
                "setting `url` is `{url}`; expected `https://host[:port]` without path, query or \
                 user info"
            ))
        })?;
        let credentials = match (settings.get("username"), settings.secret_opt("password")) {
            (Some(u), Some(p)) => Some((u.to_owned(), p)),
            (None, None) => None,
            (Some(_), None) => {
                return Err(ConnectorError::InvalidConfig(
                    "setting `password` is required when `username` is set".to_owned(),
                ));
            }
            (None, Some(_)) => {
                return Err(ConnectorError::InvalidConfig(
                    "setting `username` is required when `password` is set".to_owned(),
                ));
            }
        };
        let repositories = match settings.get("repositories") {
            None => None,
            Some(list) => {
                let mut names: Vec<String> = list
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect();
                if let Some(bad) = names.iter().find(|n| !valid_repository(n)) {
                    return Err(ConnectorError::InvalidConfig(format!(
                        "setting `repositories` names `{bad}`, which is not a repository name"
                    )));
                }
                names.sort();
                names.dedup();
                Some(names)
            }
        };
        let findings_url = match settings.get("findings_url") {
            None => None,
            Some(u) if u.starts_with("https://") || u.starts_with("http://") => Some(u.to_owned()),
            Some(u) => {
                return Err(ConnectorError::InvalidConfig(format!(
                    "setting `findings_url` is `{u}`; expected an `https://` URL"
                )));
            }
        };
        Ok(Self {
            base,
            login_server,
            credentials,
            repositories,
            findings_url,
        })
    }
}

/// `https://Host:5000/` -> (`https://host:5000`, `host:5000`); `None` for anything with a path,
/// query, fragment or user info.
fn parse_base(url: &str) -> Option<(String, String)> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "https" && scheme != "http" {
        return None;
    }
    let authority = rest.strip_suffix('/').unwrap_or(rest).to_ascii_lowercase();
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (authority.as_str(), None),
    };
    let host_ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        && !host.starts_with(['.', '-']);
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|n| n > 0));
    (host_ok && port_ok).then(|| (format!("{scheme}://{authority}"), authority.clone()))
}

/// `/`-separated components of `[a-z0-9._-]` that start and end alphanumeric, as the
/// distribution spec allows; checked before a name goes into a URL path.
pub(crate) fn valid_repository(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name.split('/').all(|part| {
            let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
            part.starts_with(alnum)
                && part.ends_with(alnum)
                && part
                    .chars()
                    .all(|c| alnum(c) || matches!(c, '.' | '_' | '-'))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_is_normalised_and_strict() {
        assert_eq!(
            parse_base("https://Registry.Example:5000/"),
            Some((
                "https://registry.example:5000".to_owned(),
                "registry.example:5000".to_owned()
            ))
        );
        for bad in [
            "registry.example",
            "https://u:p@registry.example",
            "https://registry.example/v2/",
            "https://registry.example?x=1",
            "ftp://registry.example",
            "https://registry.example:0",
        ] {
            assert_eq!(parse_base(bad), None, "{bad}");
        }
    }

    #[test]
    fn credentials_come_in_pairs_and_errors_name_the_key() {
        let only_user = Settings::from_pairs(&[("url", "https://r.example"), ("username", "u")]);
        let err = Config::from_settings(&only_user).unwrap_err();
        assert!(matches!(&err, ConnectorError::InvalidConfig(m) if m.contains("`password`")));
        let missing = Settings::from_pairs(&[]);
        assert!(matches!(
            Config::from_settings(&missing).unwrap_err(),
            ConnectorError::InvalidConfig(m) if m.contains("`url`")
        ));
        let full = Settings::from_pairs(&[
            ("url", "https://r.example"),
            ("username", "u"),
            ("password", "hunter2"),
            ("repositories", "b/x, a ,b/x"),
        ]);
        let config = Config::from_settings(&full).unwrap();
        assert_eq!(config.repositories, Some(vec!["a".into(), "b/x".into()]));
        assert!(!format!("{config:?}").contains("hunter2"));
    }

    #[test]
    fn repository_names_follow_the_spec() {
        assert!(valid_repository("library/alpine"));
        assert!(valid_repository("a.b_c-d/e__f"));
        for bad in ["", "Upper", "-a", "a/", "a//b", "a/../b", "a?b"] {
            assert!(!valid_repository(bad), "{bad}");
        }
    }
}
