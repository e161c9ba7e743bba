//! Registry authentication as the distribution spec describes it: the registry answers `401`
//! with a `WWW-Authenticate` challenge, `Basic` (send the credentials) or `Bearer` (fetch a
//! token for the request's scope from the challenge's realm, with the credentials if any).

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        /// The scope the registry asked for, if it named one.
        scope: Option<String>,
    },
}

/// Parses `Basic realm="x"` or `Bearer realm="https://auth/token",service="reg",scope="a b"`.
/// `None` for other schemes or a bearer challenge without a realm.
pub(crate) fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, params) = header.split_once(' ').unwrap_or((header, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let params = parse_params(params);
    let get = |k: &str| {
        params
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.clone())
    };
    Some(Challenge::Bearer {
        realm: get("realm").filter(|r| !r.is_empty())?,
        service: get("service"),
        scope: get("scope"),
    })
}

/// `a="x, y",b=z` -> [(a, "x, y"), (b, z)]: quoted values may hold commas.
fn parse_params(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let key = key.trim().trim_start_matches(',').trim().to_owned();
        let after = after.trim_start();
        let (value, remaining) = if let Some(quoted) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, escaped)) = chars.next() {
                            value.push(escaped);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    _ => value.push(c),
                }
            }
            (value, &quoted[end..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_owned(), &after[end..])
        };
        out.push((key, value));
        rest = remaining.trim_start().trim_start_matches(',').trim_start();
    }
    out
}

/// `Basic base64(user:password)`, as the host composes it from a sealed password.
#[cfg(test)]
pub(crate) fn basic_header(username: &str, password: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
    )
}

/// The token URL for a bearer challenge and a scope (the request's own, else the challenge's).
pub(crate) fn token_url(realm: &str, service: Option<&str>, scope: Option<&str>) -> String {
    use keelson_plugin_sdk::http::encode_component;
    let mut query = Vec::new();
    if let Some(service) = service {
        query.push(format!("service={}", encode_component(service)));
    }
    if let Some(scope) = scope.filter(|s| !s.is_empty()) {
        query.push(format!("scope={}", encode_component(scope)));
    }
    if query.is_empty() {
        realm.to_owned()
    } else {
        let sep = if realm.contains('?') { '&' } else { '?' };
        format!("{realm}{sep}{}", query.join("&"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_basic_and_bearer_challenges() {
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into()),
                scope: Some("repository:a/b:pull,push".into()),
            })
        );
        assert_eq!(
            parse_challenge(r"bearer realm=https://a/t, service=x"),
            Some(Challenge::Bearer {
                realm: "https://a/t".into(),
                service: Some("x".into()),
                scope: None,
            })
        );
        assert_eq!(parse_challenge("Bearer service=x"), None);
        assert_eq!(parse_challenge("Negotiate abc"), None);
    }

    #[test]
    fn token_url_encodes_service_and_scope() {
        assert_eq!(
            token_url(
                "https://a/token",
                Some("reg.example"),
                Some("repository:x/y:pull")
            ),
            "https://a/token?service=reg.example&scope=repository%3Ax%2Fy%3Apull"
        );
        assert_eq!(
            token_url("https://a/t?x=1", None, Some("s")),
            "https://a/t?x=1&scope=s"
        );
        assert_eq!(token_url("https://a/t", None, None), "https://a/t");
    }

    #[test]
    fn basic_header_is_base64_of_user_colon_password() {
        assert_eq!(basic_header("user", "pass"), "Basic dXNlcjpwYXNz");
    }
}
