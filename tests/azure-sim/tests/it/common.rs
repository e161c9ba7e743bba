//! Helpers: a TLS client pinned to the simulator, token fetching, and sample shape comparison.

use std::collections::BTreeSet;

use azure_sim::{Credentials, SimHandle, SimOptions, Simulator};
use serde_json::Value;

pub(crate) struct Env {
    pub(crate) sim: SimHandle,
    pub(crate) http: reqwest::Client,
}

pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: reqwest::header::HeaderMap,
    pub(crate) text: String,
}

impl Reply {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text))
    }

    pub(crate) fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    pub(crate) fn header_all(&self, name: &str) -> Vec<String> {
        self.headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect()
    }
}

pub(crate) fn client(sim: &SimHandle) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = reqwest::Certificate::from_pem(sim.ca_pem().as_bytes()).expect("ca pem");
    let mut b = reqwest::Client::builder()
        .tls_certs_only([ca])
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none());
    for name in sim.host_names() {
        b = b.resolve(&name, sim.addr());
    }
    b = b.resolve(
        &format!("nosuchreg.azurecr.{}", sim.host_suffix()),
        sim.addr(),
    );
    b.build().expect("client")
}

pub(crate) async fn start(opts: SimOptions) -> Env {
    let sim = Simulator::start(opts).await.expect("simulator starts");
    let http = client(&sim);
    Env { sim, http }
}

impl Env {
    pub(crate) async fn send(&self, req: reqwest::RequestBuilder) -> Reply {
        let resp = req.send().await.expect("request reaches the simulator");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("body");
        Reply {
            status,
            headers,
            text,
        }
    }

    pub(crate) async fn get(&self, url: &str, token: Option<&str>) -> Reply {
        let mut req = self.http.get(url);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        self.send(req).await
    }

    pub(crate) async fn post_form(&self, url: &str, form: &[(&str, &str)]) -> Reply {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        self.send(
            self.http
                .post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body),
        )
        .await
    }

    pub(crate) async fn post_json(&self, url: &str, token: Option<&str>, body: &Value) -> Reply {
        let mut req = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        self.send(req).await
    }

    pub(crate) fn token_url(&self, tenant: &str) -> String {
        format!("{}/{tenant}/oauth2/v2.0/token", self.sim.login_url())
    }

    pub(crate) async fn token_reply(&self, c: &Credentials, scope: &str) -> Reply {
        self.post_form(
            &self.token_url(&c.tenant_id),
            &[
                ("client_id", c.client_id.as_str()),
                ("client_secret", c.client_secret.as_str()),
                ("grant_type", "client_credentials"),
                ("scope", scope),
            ],
        )
        .await
    }

    pub(crate) async fn token_for(&self, c: &Credentials, scope: &str) -> String {
        let r = self.token_reply(c, scope).await;
        assert_eq!(r.status, 200, "{}", r.text);
        r.json()["access_token"].as_str().unwrap().to_owned()
    }

    pub(crate) async fn arm_token(&self) -> String {
        self.token_for(
            &self.sim.credentials(),
            "https://management.azure.com/.default",
        )
        .await
    }

    /// The full data-plane dance for one registry and scope: ARM token, exchange, token.
    pub(crate) async fn acr_token(&self, login_server: &str, scope: &str) -> String {
        let arm = self.arm_token().await;
        self.acr_token_with(&arm, login_server, scope).await
    }

    pub(crate) async fn acr_token_with(
        &self,
        entra: &str,
        login_server: &str,
        scope: &str,
    ) -> String {
        let ex = self
            .post_form(
                &format!("https://{login_server}/oauth2/exchange?api-version=2021-07-01"),
                &[
                    ("grant_type", "access_token"),
                    ("service", login_server),
                    ("access_token", entra),
                ],
            )
            .await;
        assert_eq!(ex.status, 200, "{}", ex.text);
        let refresh = ex.json()["refresh_token"].as_str().unwrap().to_owned();
        let tok = self
            .post_form(
                &format!("https://{login_server}/oauth2/token?api-version=2021-07-01"),
                &[
                    ("service", login_server),
                    ("scope", scope),
                    ("refresh_token", &refresh),
                    ("grant_type", "refresh_token"),
                ],
            )
            .await;
        assert_eq!(tok.status, 200, "{}", tok.text);
        tok.json()["access_token"].as_str().unwrap().to_owned()
    }

    pub(crate) fn arg_url(&self) -> String {
        format!(
            "{}/providers/Microsoft.ResourceGraph/resources?api-version=2024-04-01",
            self.sim.management_url()
        )
    }
}

/// Loads a sample payload shipped with the tests.
pub(crate) fn sample(name: &str) -> Value {
    let path = format!("{}/tests/samples/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap()
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Compares `actual` to `sample` field by field: same keys (except `extra` keys the simulator
/// may add and `optional` keys it may leave out), same JSON types, recursively; arrays compare
/// each element against the sample's first element.
pub(crate) fn assert_shape(
    sample: &Value,
    actual: &Value,
    path: &str,
    extra: &[&str],
    optional: &[&str],
) {
    match (sample, actual) {
        // Tags are free-form user data: only the type is fixed.
        (Value::Object(_), Value::Object(_)) if path.rsplit('.').next() == Some("tags") => {}
        (Value::Object(s), Value::Object(a)) => {
            let sk: BTreeSet<&String> = s.keys().collect();
            let ak: BTreeSet<&String> = a.keys().collect();
            for k in sk.difference(&ak) {
                assert!(
                    optional.contains(&k.as_str()),
                    "{path}: missing field `{k}`"
                );
            }
            for k in ak.difference(&sk) {
                assert!(
                    extra.contains(&k.as_str()),
                    "{path}: unexpected field `{k}`"
                );
            }
            for (k, sv) in s {
                if let Some(av) = a.get(k) {
                    assert_shape(sv, av, &format!("{path}.{k}"), extra, optional);
                }
            }
        }
        (Value::Array(s), Value::Array(a)) => {
            if let Some(first) = s.first() {
                for (i, av) in a.iter().enumerate() {
                    assert_shape(first, av, &format!("{path}[{i}]"), extra, optional);
                }
            }
        }
        // A sample `null` stands for "no value here"; the simulator must also send null.
        (s, a) => assert_eq!(kind(s), kind(a), "{path}: type differs ({s} vs {a})"),
    }
}
