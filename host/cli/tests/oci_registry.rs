//! The OCI registry connector against a real registry: Debian's `docker-registry`
//! (distribution 2.8) started on loopback with TLS and htpasswd auth, populated by pushing blobs
//! and manifests over HTTP (single-platform images and a multi-platform index). The connector
//! must report exactly the repositories, tags and platform digests pushed, and pass
//! `keelson plugins test` against the same registry.
//!
//! A second test restarts the registry with token authentication behind a token service the
//! test runs (ES256 tokens, certificate chain in `x5c`), so the Bearer challenge is proven too.
//!
//! Needs the connector built (`cargo build --release --target wasm32-wasip2` in `plugins/`) and
//! `docker-registry` and `htpasswd` installed (`scripts/setup` does both).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keelson_config::{PluginId, PluginLimits, PluginSpec};
use keelson_core::{HostPattern, Image, KeyValue};
use keelson_runtime::{BoundSecret, Connection, PageRequest, Runtime, RuntimeSettings};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

mod support;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use sha2::{Digest as _, Sha256};
use support::JsonServer;

const HOST: &str = "registry.test";
const USER: &str = "scanner";
const TOKEN_ISSUER: &str = "keelson-test-issuer";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn connector() -> PathBuf {
    let path = workspace_root().join("plugins/target/wasm32-wasip2/release/oci_registry.wasm");
    assert!(
        path.is_file(),
        "`{}` is missing: build the plugins first (`cargo build --release --target wasm32-wasip2` in `plugins/`)",
        path.display()
    );
    std::path::absolute(path).expect("absolute path")
}

/// Runs `name` from `PATH`, failing with what to install when it is missing.
fn tool(name: &str) -> Command {
    let probe = Command::new(name)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    assert!(
        probe.is_ok(),
        "`{name}` is not installed; run `scripts/setup` (Debian packages docker-registry, apache2-utils)"
    );
    Command::new(name)
}

/// A running `docker-registry` on 127.0.0.1, killed on drop.
struct Registry {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
    password: String,
    ca_der: Vec<u8>,
    /// The test CA, which also signs the token service's signing certificate.
    issuer: Issuer<'static, KeyPair>,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Registry {
    fn start() -> Self {
        let mut registry = tool("docker-registry");
        let mut htpasswd = tool("htpasswd");
        let dir = tempfile::tempdir().expect("temp dir");
        let password = format!("pw-{:x}", rand::random::<u64>());

        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec![HOST.to_owned()])
            .unwrap()
            .signed_by(&leaf_key, &issuer)
            .unwrap();
        std::fs::write(dir.path().join("cert.pem"), leaf.pem()).unwrap();
        std::fs::write(dir.path().join("key.pem"), leaf_key.serialize_pem()).unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();

        let out = htpasswd
            .args(["-Bbn", USER, &password])
            .output()
            .expect("htpasswd runs");
        assert!(out.status.success(), "htpasswd failed");
        std::fs::write(dir.path().join("htpasswd"), &out.stdout).unwrap();

        let d = dir.path().display();
        let auth = format!("  htpasswd:\n    realm: keelson-test\n    path: {d}/htpasswd\n");
        let (child, port) = spawn(&mut registry, dir.path(), &auth);
        Self {
            child,
            dir,
            port,
            password,
            ca_der: ca.der().to_vec(),
            issuer,
        }
    }

    /// Restarts the registry on the same storage with token authentication: the registry
    /// trusts tokens signed by a key whose certificate the test CA issued, from `realm`.
    /// Returns that key (PKCS#8 DER) and certificate (DER) for the token service.
    fn restart_with_token_auth(&mut self, realm: &str) -> TokenSigner {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "keelson test token signer");
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let d = self.dir.path().display();
        let auth = format!(
            "  token:\n    realm: {realm}\n    service: {HOST}\n    issuer: {TOKEN_ISSUER}\n    rootcertbundle: {d}/ca.pem\n"
        );
        let (child, port) = spawn(&mut tool("docker-registry"), self.dir.path(), &auth);
        self.child = child;
        self.port = port;
        TokenSigner {
            key_der: key.serialize_der(),
            cert_der: cert.der().to_vec(),
        }
    }

    fn base(&self) -> String {
        format!("https://{HOST}:{}", self.port)
    }

    fn ca_path(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    fn client(&self) -> reqwest::Client {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(rustls::pki_types::CertificateDer::from(self.ca_der.clone()))
            .unwrap();
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .resolve(HOST, SocketAddr::from((Ipv4Addr::LOCALHOST, self.port)))
            .no_proxy()
            .build()
            .unwrap()
    }
}

/// Writes the registry's configuration with `auth` (the YAML under `auth:`) and starts it on a
/// free loopback port; returns once it accepts connections.
fn spawn(registry: &mut Command, dir: &Path, auth: &str) -> (Child, u16) {
    let port = {
        let probe = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        probe.local_addr().unwrap().port()
    };
    let d = dir.display();
    let config = format!(
        "version: 0.1\n\
         log:\n  level: error\n  accesslog:\n    disabled: true\n\
         storage:\n  filesystem:\n    rootdirectory: {d}/data\n\
         http:\n  addr: 127.0.0.1:{port}\n  secret: test-only-upload-secret\n  tls:\n    certificate: {d}/cert.pem\n    key: {d}/key.pem\n\
         auth:\n{auth}"
    );
    std::fs::write(dir.join("config.yml"), config).unwrap();
    let child = registry
        .arg("serve")
        .arg(dir.join("config.yml"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("docker-registry starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "docker-registry did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (child, port)
}

/// The token service's signing key and certificate.
struct TokenSigner {
    key_der: Vec<u8>,
    cert_der: Vec<u8>,
}

impl TokenSigner {
    /// A registry token (JWT, ES256, certificate in `x5c`) granting `scope` for `service`.
    fn token(&self, service: &str, scope: &str) -> String {
        let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
        let header = serde_json::json!({
            "alg": "ES256",
            "typ": "JWT",
            "x5c": [STANDARD.encode(&self.cert_der)],
        });
        // `repository:team/app:pull`, `registry:catalog:*`; several are separated by spaces.
        let access: Vec<serde_json::Value> = scope
            .split(' ')
            .filter_map(|s| {
                let (kind, rest) = s.split_once(':')?;
                let (name, actions) = rest.rsplit_once(':')?;
                Some(serde_json::json!({
                    "type": kind,
                    "name": name,
                    "actions": actions.split(',').collect::<Vec<_>>(),
                }))
            })
            .collect();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let claims = serde_json::json!({
            "iss": TOKEN_ISSUER,
            "sub": USER,
            "aud": service,
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": format!("{:x}", rand::random::<u64>()),
            "access": access,
        });
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let key = rustls::crypto::ring::sign::any_ecdsa_type(
            &rustls::pki_types::PrivateKeyDer::Pkcs8(self.key_der.clone().into()),
        )
        .unwrap();
        let signer = key
            .choose_scheme(&[rustls::SignatureScheme::ECDSA_NISTP256_SHA256])
            .unwrap();
        let der = signer.sign(input.as_bytes()).unwrap();
        format!("{input}.{}", b64(&ecdsa_raw(&der)))
    }
}

/// A DER ECDSA P-256 signature (`SEQUENCE { INTEGER r, INTEGER s }`) as JWS wants it: `r || s`,
/// 32 bytes each.
fn ecdsa_raw(der: &[u8]) -> Vec<u8> {
    assert_eq!(der[0], 0x30, "a DER sequence");
    let mut at = 2;
    let mut out = Vec::with_capacity(64);
    for _ in 0..2 {
        assert_eq!(der[at], 0x02, "a DER integer");
        let len = usize::from(der[at + 1]);
        let int = &der[at + 2..at + 2 + len];
        let int = &int[int.iter().take_while(|b| **b == 0).count()..];
        out.extend(std::iter::repeat_n(0, 32 - int.len()));
        out.extend_from_slice(int);
        at += 2 + len;
    }
    out
}

/// `%3A` -> `:`; enough for the scopes and service names a token request carries.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = text.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
        } else {
            out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Pushes blobs and manifests with the registry's own upload protocol.
struct Pusher<'a> {
    registry: &'a Registry,
    client: reqwest::Client,
}

impl Pusher<'_> {
    async fn blob(&self, repo: &str, bytes: &[u8]) -> String {
        let d = digest(bytes);
        let base = self.registry.base();
        let start = self
            .client
            .post(format!("{base}/v2/{repo}/blobs/uploads/"))
            .basic_auth(USER, Some(&self.registry.password))
            .send()
            .await
            .unwrap();
        assert_eq!(start.status().as_u16(), 202, "upload of a blob to `{repo}`");
        let location = start.headers()["location"].to_str().unwrap().to_owned();
        let location = if location.starts_with('/') {
            format!("{base}{location}")
        } else {
            location
        };
        let sep = if location.contains('?') { '&' } else { '?' };
        let done = self
            .client
            .put(format!("{location}{sep}digest={d}"))
            .basic_auth(USER, Some(&self.registry.password))
            .header("content-type", "application/octet-stream")
            .body(bytes.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(done.status().as_u16(), 201, "blob {d} to `{repo}`");
        d
    }

    async fn manifest(&self, repo: &str, reference: &str, media_type: &str, body: &str) -> String {
        let d = digest(body.as_bytes());
        let reference = if reference.is_empty() { &d } else { reference };
        let response = self
            .client
            .put(format!(
                "{}/v2/{repo}/manifests/{reference}",
                self.registry.base()
            ))
            .basic_auth(USER, Some(&self.registry.password))
            .header("content-type", media_type)
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        assert_eq!(status, 201, "manifest `{repo}:{reference}`: {text}");
        d
    }

    /// A one-layer image for a platform; returns the manifest's digest (pushed untagged when
    /// `tag` is empty).
    async fn image(&self, repo: &str, tag: &str, arch: &str, variant: Option<&str>) -> String {
        let layer = format!("layer of {repo} {arch} {tag}").into_bytes();
        let layer_digest = self.blob(repo, &layer).await;
        let variant_json = variant.map_or(String::new(), |v| format!(r#","variant":"{v}""#));
        let config = format!(
            r#"{{"architecture":"{arch}","os":"linux"{variant_json},"created":"2024-05-01T12:00:00Z","rootfs":{{"type":"layers","diff_ids":["{layer_digest}"]}}}}"#
        );
        let config_digest = self.blob(repo, config.as_bytes()).await;
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"{OCI_CONFIG}","digest":"{config_digest}","size":{}}},"layers":[{{"mediaType":"{OCI_LAYER}","digest":"{layer_digest}","size":{}}}]}}"#,
            config.len(),
            layer.len()
        );
        self.manifest(repo, tag, OCI_MANIFEST, &manifest).await
    }
}

/// What the connector must report per image: tags, platform and children.
type Expected = BTreeMap<String, (Vec<String>, Option<String>, Vec<String>)>;

fn platform(arch: &str, variant: Option<&str>) -> String {
    match variant {
        Some(v) => format!("linux/{arch}/{v}"),
        None => format!("linux/{arch}"),
    }
}

/// Pushes three repositories and returns what each must contain.
async fn populate(registry: &Registry) -> BTreeMap<String, Expected> {
    let p = Pusher {
        registry,
        client: registry.client(),
    };
    let mut all = BTreeMap::new();

    // A multi-platform index under two tags; its platform manifests are untagged.
    let repo = "library/alpine";
    let amd = p.image(repo, "", "amd64", None).await;
    let arm = p.image(repo, "", "arm64", Some("v8")).await;
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{}]}}"#,
        [(&amd, "amd64", None), (&arm, "arm64", Some("v8"))]
            .iter()
            .map(|(d, arch, variant)| {
                let v = variant.map_or(String::new(), |v| format!(r#","variant":"{v}""#));
                format!(
                    r#"{{"mediaType":"{OCI_MANIFEST}","digest":"{d}","size":400,"platform":{{"architecture":"{arch}","os":"linux"{v}}}}}"#
                )
            })
            .collect::<Vec<_>>()
            .join(",")
    );
    let index_digest = p.manifest(repo, "3.20", OCI_INDEX, &index).await;
    assert_eq!(
        p.manifest(repo, "latest", OCI_INDEX, &index).await,
        index_digest
    );
    let mut alpine = Expected::new();
    alpine.insert(
        index_digest,
        (
            vec!["3.20".into(), "latest".into()],
            None,
            vec![amd.clone(), arm.clone()],
        ),
    );
    alpine.insert(amd, (vec![], Some(platform("amd64", None)), vec![]));
    alpine.insert(arm, (vec![], Some(platform("arm64", Some("v8"))), vec![]));
    all.insert(repo.to_owned(), alpine);

    // Two single-platform images, one of them under two tags.
    let repo = "team/app";
    let v1 = p.image(repo, "v1", "amd64", None).await;
    let v2 = p.image(repo, "v2", "arm64", None).await;
    let manifest = p
        .client
        .get(format!("{}/v2/{repo}/manifests/v2", registry.base()))
        .basic_auth(USER, Some(&registry.password))
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        p.manifest(repo, "stable", OCI_MANIFEST, &manifest).await,
        v2
    );
    let mut app = Expected::new();
    app.insert(
        v1,
        (vec!["v1".into()], Some(platform("amd64", None)), vec![]),
    );
    app.insert(
        v2,
        (
            vec!["stable".into(), "v2".into()],
            Some(platform("arm64", None)),
            vec![],
        ),
    );
    all.insert(repo.to_owned(), app);

    // Enough images that listing them takes several pages.
    let repo = "tools/scanner";
    let mut tools = Expected::new();
    for tag in ["1.0", "1.1", "1.2", "2.0"] {
        let d = p.image(repo, tag, "amd64", None).await;
        tools.insert(d, (vec![tag.into()], Some(platform("amd64", None)), vec![]));
    }
    all.insert(repo.to_owned(), tools);
    all
}

fn summarise(images: &[Image]) -> Expected {
    images
        .iter()
        .map(|i| {
            let platform = i.platform.as_ref().map(|p| match &p.variant {
                Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
                None => format!("{}/{}", p.os, p.architecture),
            });
            (
                i.image_ref.digest.clone(),
                (i.tags.clone(), platform, i.children.clone()),
            )
        })
        .collect()
}

async fn walk_all<T>(
    mut fetch: impl AsyncFnMut(PageRequest) -> keelson_runtime::Result<keelson_core::Page<T>>,
) -> Vec<T> {
    let mut items = Vec::new();
    let mut request = PageRequest::first(2);
    for _ in 0..100 {
        let page = fetch(request).await.expect("page");
        assert!(page.items.len() <= 2);
        items.extend(page.items);
        match page.next {
            Some(next) => request = PageRequest::after(next, 2),
            None => return items,
        }
    }
    panic!("paging did not end");
}

async fn connect(registry: &Registry, password: &str) -> Connection {
    connect_with(registry, password, None).await
}

/// Connects the way an operator would configure it: the registry (and the token service, if
/// any) granted, their CAs trusted and their names pinned to loopback.
async fn connect_with(
    registry: &Registry,
    password: &str,
    token_service: Option<&JsonServer>,
) -> Connection {
    let mut ca = vec![std::fs::read(registry.ca_path()).unwrap()];
    let mut resolve = vec![keelson_http::ResolvePin {
        name: HOST.to_owned(),
        addrs: vec![Ipv4Addr::LOCALHOST.into()],
    }];
    let mut grants = vec![HostPattern::parse(&registry.base()).unwrap()];
    if let Some(service) = token_service {
        ca.push(std::fs::read(service.ca_file.path()).unwrap());
        resolve.push(keelson_http::ResolvePin {
            name: service.host.clone(),
            addrs: vec![Ipv4Addr::LOCALHOST.into()],
        });
        grants.push(HostPattern::parse(&service.base()).unwrap());
    }
    let egress = keelson_http::EgressSettings {
        extra_ca_certs_pem: ca,
        resolve,
        ..keelson_http::EgressSettings::default()
    };
    let runtime = Runtime::new(
        RuntimeSettings::new(workspace_root().join("target/keelson-test-cache")),
        keelson_http::Egress::new(egress).unwrap(),
    )
    .unwrap();
    let spec = PluginSpec {
        id: PluginId::new("oci-registry").unwrap(),
        path: connector(),
        sha256: None,
        allowed_hosts: grants.clone(),
        limits: PluginLimits::default(),
        enabled: true,
        allow_plaintext_secrets: false,
        secret_hosts: BTreeMap::new(),
    };
    let plugin = runtime.load(&spec).await.expect("the connector loads");
    let kv = |k: &str, v: &str| KeyValue {
        key: k.to_owned(),
        value: v.to_owned(),
    };
    plugin
        .connect(
            "oci-test",
            vec![
                kv("url", &registry.base()),
                kv("username", USER),
                kv("password", password),
            ],
            vec![BoundSecret {
                name: "password".to_owned(),
                value: password.to_owned(),
                allowed_hosts: grants,
            }],
        )
        .await
        .expect("connects")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connector_reports_a_real_registry_exactly_and_passes_conformance() {
    let registry = Registry::start();
    let expected = populate(&registry).await;

    let mut conn = connect(&registry, &registry.password).await;
    let account = conn.verify().await.expect("verifies");
    assert_eq!(account.id, format!("{HOST}:{}", registry.port));
    let detail = |k: &str| {
        account
            .details
            .iter()
            .find(|d| d.key == k)
            .map(|d| d.value.clone())
    };
    assert_eq!(detail("auth").as_deref(), Some("basic"));
    assert_eq!(detail("api_version").as_deref(), Some("registry/2.0"));

    let registries = walk_all(async |p| conn.list_registries(p).await).await;
    assert_eq!(registries.len(), 1);
    let name = registries[0].name.clone();
    assert_eq!(name, format!("{HOST}:{}", registry.port));
    let repositories = walk_all(async |p| conn.list_repositories(&name, p).await).await;
    let names: Vec<&str> = repositories.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["library/alpine", "team/app", "tools/scanner"]);
    for (repo, want) in &expected {
        let images = walk_all(async |p| conn.list_images(&name, repo, p).await).await;
        assert!(images.iter().all(|i| i.image_ref.registry == name));
        assert_eq!(&summarise(&images), want, "images of `{repo}`");
    }
    let findings = walk_all(async |p| {
        conn.list_findings(&keelson_core::ScanScope::default(), p)
            .await
    })
    .await;
    assert!(findings.is_empty(), "no findings source is configured");
    assert_eq!(conn.egress_denials(), 0);

    // A wrong password is refused by the registry and reported as such.
    let mut wrong = connect(&registry, "not-the-password").await;
    let err = wrong.verify().await.expect_err("a wrong password fails");
    assert!(
        matches!(
            &err,
            keelson_runtime::Error::Connector {
                source: keelson_core::ConnectorError::InvalidCredentials(_),
                ..
            }
        ),
        "{err}"
    );

    // The conformance runner, as a plugin author runs it.
    let out = Command::new(env!("CARGO_BIN_EXE_keelson"))
        .args(["plugins", "test"])
        .arg(connector())
        .args(["--against", &registry.base()])
        .args(["--resolve", &format!("{HOST}=127.0.0.1")])
        .arg("--ca-cert")
        .arg(registry.ca_path())
        .arg("--cache-dir")
        .arg(workspace_root().join("target/keelson-test-cache"))
        .args(["--set", &format!("url={}", registry.base())])
        .args(["--set", &format!("username={USER}")])
        .args(["--set-env", "password=KEELSON_OCI_TEST_PASSWORD"])
        .env("KEELSON_OCI_TEST_PASSWORD", &registry.password)
        .env_remove("KEELSON_CONFIG")
        .output()
        .expect("keelson runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for check in [
        "describe",
        "error-missing-setting",
        "error-wrong-secret",
        "paging-terminates",
        "limits-respected",
        "paging-stable",
        "cursor-foreign",
        "cursor-tampered",
        "grants-respected",
        "grants-denial-typed",
    ] {
        assert!(
            stdout.contains(&format!("PASS {check}:")),
            "{check} in:\n{stdout}"
        );
    }
    assert!(stdout.contains("3 repositories, 9 images"), "{stdout}");

    // And as an operator runs it: plugins.toml, `keelson connect`, `keelson scan`; the store
    // then holds exactly what was pushed.
    let stored = scan_with_the_binary(&registry);
    let mut want = BTreeMap::new();
    for (repo, images) in &expected {
        for (digest, (tags, platform, _)) in images {
            want.insert(
                (repo.clone(), digest.clone()),
                (tags.clone(), platform.clone()),
            );
        }
    }
    assert_eq!(stored, want);
    assert!(
        !stdout.contains(&registry.password) && !stderr.contains(&registry.password),
        "the password leaked"
    );
}

/// (repository, digest) -> (tags, platform) as the store holds them after a scan.
type Stored = BTreeMap<(String, String), (Vec<String>, Option<String>)>;

fn scan_with_the_binary(registry: &Registry) -> Stored {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(registry.ca_path(), dir.path().join("registry-ca.pem")).unwrap();
    let config = format!(
        r#"[host]
database = "state/keelson.db"
cache_dir = {cache:?}
extra_ca_certs = ["registry-ca.pem"]

[host.resolve]
"{HOST}" = "127.0.0.1"

[[plugin]]
id = "oci-registry"
path = {path:?}
allowed_hosts = ["{base}"]
"#,
        cache = workspace_root()
            .join("target/keelson-test-cache")
            .display()
            .to_string(),
        path = connector().display().to_string(),
        base = registry.base(),
    );
    std::fs::write(dir.path().join("plugins.toml"), config).unwrap();
    let keelson = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_keelson"))
            .current_dir(dir.path())
            .args(args)
            .env_remove("KEELSON_CONFIG")
            .env_remove("KEELSON_MASTER_KEY")
            .env_remove("KEELSON_LOG")
            .env("KEELSON_OCI_TEST_PASSWORD", &registry.password)
            .stdin(Stdio::null())
            .output()
            .expect("keelson runs");
        let text = format!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "`keelson {}`:\n{text}",
            args.join(" ")
        );
        assert!(!text.contains(&registry.password), "the password leaked");
        text
    };
    keelson(&[
        "connect",
        "oci-registry",
        "--name",
        "local",
        "--set",
        &format!("url={}", registry.base()),
        "--set",
        &format!("username={USER}"),
        "--secret",
        "password=env:KEELSON_OCI_TEST_PASSWORD",
    ]);
    keelson(&["scan", "local"]);

    let db = rusqlite::Connection::open(dir.path().join("state/keelson.db")).unwrap();
    let mut stmt = db
        .prepare(
            "SELECT r.name, i.digest, i.tags, i.platform FROM images i \
             JOIN repositories r ON r.id = i.repository_id WHERE i.removed_at IS NULL",
        )
        .unwrap();
    let rows = stmt
        .query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, Option<String>>(3)?,
            ))
        })
        .unwrap();
    let mut stored = Stored::new();
    for row in rows {
        let (repo, digest, tags, platform) = row.unwrap();
        let mut tags: Vec<String> = serde_json::from_str(&tags).unwrap();
        tags.sort();
        let platform = platform.map(|p| {
            let p: serde_json::Value = serde_json::from_str(&p).unwrap();
            let s = |k: &str| p[k].as_str().map(str::to_owned);
            match s("variant") {
                Some(v) => format!("{}/{}/{v}", s("os").unwrap(), s("architecture").unwrap()),
                None => format!("{}/{}", s("os").unwrap(), s("architecture").unwrap()),
            }
        });
        stored.insert((repo, digest), (tags, platform));
    }
    stored
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_auth_per_the_challenge_reads_the_same_inventory() {
    let mut registry = Registry::start();
    let expected = populate(&registry).await;

    // A token service in front of the same registry: Basic credentials in, a signed token for
    // the scope the registry's challenge named out.
    let signer = Arc::new(std::sync::OnceLock::<TokenSigner>::new());
    let issued = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let basic = format!(
        "Basic {}",
        STANDARD.encode(format!("{USER}:{}", registry.password))
    );
    let handler = {
        let (signer, issued) = (signer.clone(), issued.clone());
        move |method: &str, target: &str, auth: Option<&str>| -> (u16, String) {
            let Some(query) = target.strip_prefix("/token?").filter(|_| method == "GET") else {
                return (404, "{}".to_owned());
            };
            if auth != Some(basic.as_str()) {
                return (401, r#"{"errors":[{"code":"UNAUTHORIZED"}]}"#.to_owned());
            }
            let param = |name: &str| {
                query
                    .split('&')
                    .filter_map(|p| p.split_once('='))
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| percent_decode(v))
                    .unwrap_or_default()
            };
            issued.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let token = signer
                .get()
                .unwrap()
                .token(&param("service"), &param("scope"));
            (
                200,
                serde_json::json!({ "token": token, "expires_in": 300 }).to_string(),
            )
        }
    };
    let service = JsonServer::start("auth.test", Arc::new(handler)).await;
    assert!(
        signer
            .set(registry.restart_with_token_auth(&format!("{}/token", service.base())))
            .is_ok()
    );

    let mut conn = connect_with(&registry, &registry.password, Some(&service)).await;
    let account = conn.verify().await.expect("verifies with a token");
    let mode = account.details.iter().find(|d| d.key == "auth").unwrap();
    assert_eq!(mode.value, "token");
    let name = format!("{HOST}:{}", registry.port);
    let repositories = walk_all(async |p| conn.list_repositories(&name, p).await).await;
    let names: Vec<&str> = repositories.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["library/alpine", "team/app", "tools/scanner"]);
    for (repo, want) in &expected {
        let images = walk_all(async |p| conn.list_images(&name, repo, p).await).await;
        assert_eq!(&summarise(&images), want, "images of `{repo}`");
    }
    // One token per scope: `/v2/`, the catalog, and each repository, reused across pages.
    assert_eq!(issued.load(std::sync::atomic::Ordering::SeqCst), 5);
    assert_eq!(conn.egress_denials(), 0);

    let mut wrong = connect_with(&registry, "not-the-password", Some(&service)).await;
    let err = wrong.verify().await.expect_err("the token service refuses");
    assert!(
        matches!(
            &err,
            keelson_runtime::Error::Connector {
                source: keelson_core::ConnectorError::InvalidCredentials(_),
                ..
            }
        ),
        "{err}"
    );
}
