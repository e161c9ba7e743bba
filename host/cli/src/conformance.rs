//! `keelson plugins test`: the conformance runner. It loads one connector component, runs it
//! against the Azure simulator (started in-process) or a server the author names, and checks,
//! one by one, what every host relies on: `describe` is complete, errors are typed (never traps),
//! paging terminates and is stable, cursors are opaque, `max-items` is respected, and the
//! connector stays inside its grants. One `PASS`/`FAIL` line per check; any failure fails the
//! command.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::Args;
use keelson_config::{PluginId, PluginLimits, PluginSpec};
use keelson_core::{
    ConnectorError, ConnectorInfo, Finding, HostPattern, Image, KeyValue, Page, Registry,
    Repository, ScanScope,
};
use keelson_runtime::{BoundSecret, Connection, PageRequest, Plugin, Runtime, RuntimeSettings};

use crate::connections::say;

/// Arguments of `keelson plugins test`.
#[derive(Debug, Args)]
pub(crate) struct TestArgs {
    /// The connector component (`.wasm`) to test.
    path: PathBuf,
    /// `simulator` to run the ACR connector against the built-in Azure simulator, or the base URL
    /// (`https://registry.example:5000`) of the service the connector talks to.
    #[arg(long)]
    against: String,
    /// A connection setting, `KEY=VALUE` (repeatable). Settings `describe` marks secret may only
    /// be sent to the granted hosts.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// A connection setting read from an environment variable, `KEY=VAR` (repeatable): keeps a
    /// secret off the command line.
    #[arg(long = "set-env", value_name = "KEY=VAR")]
    set_env: Vec<String>,
    /// A further host pattern to grant besides the `--against` URL's origin (repeatable).
    #[arg(long = "allow", value_name = "PATTERN")]
    allow: Vec<String>,
    /// A PEM file of a CA certificate to trust (a local server's self-signed CA; repeatable).
    #[arg(long = "ca-cert", value_name = "FILE")]
    ca_cert: Vec<PathBuf>,
    /// Pin a name to an address, `NAME=IP`; needed for a loopback server (repeatable).
    #[arg(long = "resolve", value_name = "NAME=IP")]
    resolve: Vec<String>,
    /// The plugin id to load it under; defaults to the file name (`oci_registry.wasm` ->
    /// `oci-registry`).
    #[arg(long)]
    id: Option<String>,
    /// Where precompiled components are cached.
    #[arg(long, default_value = ".keelson/cache")]
    cache_dir: PathBuf,
    /// `max-items` of the paging walks; small on purpose, so paging is exercised.
    #[arg(long, default_value_t = 3)]
    page_size: u32,
    /// How many registries, and repositories per registry, to walk in depth.
    #[arg(long, default_value_t = 3)]
    sample: usize,
}

/// How the connector is run: its settings, grants and the egress settings for the target.
struct Target {
    settings: Vec<KeyValue>,
    allowed_hosts: Vec<HostPattern>,
    /// The grant of the narrow-grant check: a strict subset of `allowed_hosts`.
    narrow_hosts: Vec<HostPattern>,
    ca_pems: Vec<Vec<u8>>,
    resolve: Vec<keelson_http::ResolvePin>,
    /// Where each secret setting may go; `None` binds it to every granted host.
    secret_hosts: Option<Vec<HostPattern>>,
}

/// Check results, printed as they come.
#[derive(Default)]
struct Report {
    passed: usize,
    failed: Vec<String>,
}

impl Report {
    // The details quote the connector (its account names, its errors): lines are neutralised.
    fn pass(&mut self, check: &str, detail: &str) {
        self.passed += 1;
        say(&format!("PASS {check}: {detail}"));
    }

    fn fail(&mut self, check: &str, detail: &str) {
        self.failed.push(check.to_owned());
        say(&format!("FAIL {check}: {detail}"));
    }

    fn check(&mut self, check: &str, result: Result<String, String>) -> bool {
        match result {
            Ok(detail) => {
                self.pass(check, &detail);
                true
            }
            Err(detail) => {
                self.fail(check, &detail);
                false
            }
        }
    }
}

/// Runs every check and returns failure if any failed.
pub(crate) async fn run(args: TestArgs) -> anyhow::Result<ExitCode> {
    let path = std::path::absolute(&args.path)
        .with_context(|| format!("cannot resolve `{}`", args.path.display()))?;
    let id = match &args.id {
        Some(id) => id.clone(),
        None => default_id(&path)?,
    };
    let id = PluginId::new(&id).map_err(|p| anyhow::anyhow!("plugin id `{id}`: {p}"))?;

    // The simulator lives as long as the checks run.
    let mut sim = None;
    let target = if args.against == "simulator" {
        let handle =
            azure_sim::Simulator::start(azure_sim::SimOptions::new(azure_sim::Scenario::Small))
                .await
                .context("cannot start the Azure simulator")?;
        let target = simulator_target(&handle, &args)?;
        sim = Some(handle);
        target
    } else {
        url_target(&args)?
    };

    let egress = keelson_http::Egress::new(keelson_http::EgressSettings {
        extra_ca_certs_pem: target.ca_pems.clone(),
        resolve: target.resolve.clone(),
        ..keelson_http::EgressSettings::default()
    })
    .context("cannot set up outbound HTTP for the plugin")?;
    let runtime = Runtime::new(RuntimeSettings::new(&args.cache_dir), egress)?;
    let spec = |hosts: Vec<HostPattern>| PluginSpec {
        id: id.clone(),
        path: path.clone(),
        sha256: None,
        allowed_hosts: hosts,
        limits: PluginLimits::default(),
        enabled: true,
        // The runner checks a connector of any linked contract version, 0.1.0 included; only
        // test secrets are at stake here.
        allow_plaintext_secrets: true,
        secret_hosts: std::collections::BTreeMap::new(),
    };

    let mut report = Report::default();
    let plugin = match runtime.load(&spec(target.allowed_hosts.clone())).await {
        Ok(plugin) => {
            report.pass(
                "load",
                &format!(
                    "`{}` targets keelson:registry@{}, exports {}",
                    path.display(),
                    plugin.wit_version(),
                    plugin.exports().len()
                ),
            );
            plugin
        }
        Err(err) => {
            report.fail("load", &err.to_string());
            return Ok(finish(&report));
        }
    };
    let info = plugin.describe().clone();
    report.check("describe", check_describe(&info));

    let secrets = bind_secrets(&info, &target);
    check_connect_errors(&mut report, &plugin, &info, &target).await;

    let mut conn = match plugin
        .connect("conformance", target.settings.clone(), secrets.clone())
        .await
    {
        Ok(conn) => {
            report.pass("connect", "the settings given open a session");
            conn
        }
        Err(err) => {
            report.fail("connect", &err.to_string());
            return Ok(finish(&report));
        }
    };
    report.check(
        "verify",
        conn.verify()
            .await
            .map(|a| format!("account `{}` ({} details)", a.id, a.details.len()))
            .map_err(|e| e.to_string()),
    );

    let issued = check_listings(&mut report, &mut conn, &args).await;
    check_cursors(&mut report, &mut conn, issued).await;
    // Counted before the unknown-registry check: a connector may rightly try that host and be
    // refused.
    let denials = conn.egress_denials();
    check_unknown(&mut report, &mut conn).await;
    report.check(
        "grants-respected",
        match denials {
            0 => Ok(format!(
                "{} requests, none outside the grants",
                conn.requests_sent()
            )),
            n => Err(format!(
                "the egress gate refused {n} request(s) to hosts outside the grants"
            )),
        },
    );

    if conn.requests_sent() == 0 {
        report.pass(
            "grants-denial-typed",
            "skipped: the connector made no requests to deny",
        );
    } else {
        let narrow = runtime.load(&spec(target.narrow_hosts.clone())).await?;
        check_narrow_grant(&mut report, &narrow, &target, secrets).await;
    }

    if let Some(sim) = sim {
        sim.shutdown().await;
    }
    Ok(finish(&report))
}

#[allow(clippy::print_stdout, reason = "command output")]
fn finish(report: &Report) -> ExitCode {
    if report.failed.is_empty() {
        println!("conformance: all {} checks passed", report.passed);
        ExitCode::SUCCESS
    } else {
        println!(
            "conformance: {} passed, {} failed ({})",
            report.passed,
            report.failed.len(),
            report.failed.join(", ")
        );
        ExitCode::FAILURE
    }
}

/// `oci_registry.wasm` -> `oci-registry`.
fn default_id(path: &std::path::Path) -> anyhow::Result<String> {
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .with_context(|| format!("`{}` has no file name; pass `--id`", path.display()))?;
    Ok(stem.replace('_', "-").to_ascii_lowercase())
}

fn simulator_target(sim: &azure_sim::SimHandle, args: &TestArgs) -> anyhow::Result<Target> {
    let creds = sim.credentials();
    let port = sim.port();
    let suffix = sim.host_suffix();
    let login = HostPattern::parse(&sim.login_url())?;
    let allowed_hosts = vec![
        login.clone(),
        HostPattern::parse(&sim.management_url())?,
        HostPattern::parse(&format!("https://*.azurecr.{suffix}:{port}"))?,
    ];
    let mut settings = vec![
        kv("tenant_id", &creds.tenant_id),
        kv("client_id", &creds.client_id),
        kv("client_secret", &creds.client_secret),
        kv("subscription_id", &creds.subscription_id),
        kv("cloud", "custom"),
        kv("authority_host", &sim.login_url()),
        kv("resource_manager_endpoint", &sim.management_url()),
    ];
    for (key, value) in given_settings(args)? {
        settings.retain(|s| s.key != key);
        settings.push(kv(&key, &value));
    }
    Ok(Target {
        settings,
        narrow_hosts: vec![login.clone()],
        allowed_hosts,
        ca_pems: vec![sim.ca_pem().as_bytes().to_vec()],
        resolve: vec![keelson_http::ResolvePin {
            name: format!("*.{suffix}"),
            addrs: vec![sim.addr().ip()],
        }],
        secret_hosts: Some(vec![login]),
    })
}

fn url_target(args: &TestArgs) -> anyhow::Result<Target> {
    let origin = HostPattern::parse(&args.against).with_context(|| {
        format!(
            "`--against {}` is neither `simulator` nor a base URL",
            args.against
        )
    })?;
    let mut allowed_hosts = vec![origin];
    for pattern in &args.allow {
        allowed_hosts.push(HostPattern::parse(pattern)?);
    }
    let mut ca_pems = Vec::new();
    for file in &args.ca_cert {
        ca_pems.push(
            std::fs::read(file).with_context(|| format!("cannot read `{}`", file.display()))?,
        );
    }
    let mut resolve = Vec::new();
    for (name, addr) in parse_pairs(&args.resolve, "--resolve")? {
        let addr: IpAddr = addr
            .parse()
            .with_context(|| format!("`--resolve {name}={addr}`: `{addr}` is not an IP address"))?;
        resolve.push(keelson_http::ResolvePin {
            name,
            addrs: vec![addr],
        });
    }
    let settings = given_settings(args)?
        .into_iter()
        .map(|(k, v)| kv(&k, &v))
        .collect();
    Ok(Target {
        settings,
        allowed_hosts,
        narrow_hosts: Vec::new(),
        ca_pems,
        resolve,
        secret_hosts: None,
    })
}

/// `--set` pairs, then `--set-env` pairs with their variables' values.
fn given_settings(args: &TestArgs) -> anyhow::Result<Vec<(String, String)>> {
    let mut pairs = parse_pairs(&args.set, "--set")?;
    for (key, var) in parse_pairs(&args.set_env, "--set-env")? {
        #[allow(
            clippy::disallowed_methods,
            reason = "the CLI is where the environment is read"
        )]
        let value = std::env::var(&var)
            .with_context(|| format!("`--set-env {key}={var}`: `{var}` is not set"))?;
        pairs.push((key, value));
    }
    Ok(pairs)
}

fn parse_pairs(values: &[String], flag: &str) -> anyhow::Result<Vec<(String, String)>> {
    values
        .iter()
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
            _ => bail!(
                "`{flag}` takes `KEY=VALUE`, got `{}`",
                pair.split('=').next().unwrap_or("")
            ),
        })
        .collect()
}

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: value.to_owned(),
    }
}

/// Binds each setting `describe` marks secret to where it may go.
fn bind_secrets(info: &ConnectorInfo, target: &Target) -> Vec<BoundSecret> {
    info.settings
        .iter()
        .filter(|s| s.secret)
        .filter_map(|s| {
            let value = target.settings.iter().find(|kv| kv.key == s.key)?;
            Some(BoundSecret {
                name: s.key.clone(),
                value: value.value.clone(),
                allowed_hosts: target
                    .secret_hosts
                    .clone()
                    .unwrap_or_else(|| target.allowed_hosts.clone()),
            })
        })
        .collect()
}

/// `describe` is complete: what the host shows and validates comes from it.
fn check_describe(info: &ConnectorInfo) -> Result<String, String> {
    let mut problems = Vec::new();
    let id_ok = !info.id.is_empty()
        && info
            .id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !info.id.starts_with('-')
        && !info.id.ends_with('-');
    if !id_ok {
        problems.push(format!("id `{}` is not lowercase with dashes", info.id));
    }
    for (field, value) in [
        ("display-name", &info.display_name),
        ("source-tool", &info.source_tool),
        ("instructions", &info.instructions),
    ] {
        if value.trim().is_empty() {
            problems.push(format!("`{field}` is empty"));
        }
    }
    let semver = info.version.split(['-', '+']).next().unwrap_or("");
    if semver.split('.').count() != 3 || !semver.split('.').all(|p| p.parse::<u64>().is_ok()) {
        problems.push(format!("version `{}` is not semver", info.version));
    }
    let mut keys = BTreeSet::new();
    for s in &info.settings {
        if !keys.insert(s.key.as_str()) {
            problems.push(format!("setting `{}` is declared twice", s.key));
        }
        if s.label.trim().is_empty() || s.help.trim().is_empty() {
            problems.push(format!("setting `{}` has no label or no help", s.key));
        }
        if let (Some(d), false) = (&s.default_value, s.choices.is_empty())
            && !s.choices.contains(d)
        {
            problems.push(format!(
                "setting `{}` defaults to `{d}`, which is not one of its choices",
                s.key
            ));
        }
    }
    for s in &info.settings {
        if let Some(when) = &s.only_when
            && !keys.contains(when.key.as_str())
        {
            problems.push(format!(
                "setting `{}` applies only when `{}` is set, which is not a setting",
                s.key, when.key
            ));
        }
    }
    for host in &info.suggested_hosts {
        if HostPattern::parse(host).is_err() {
            problems.push(format!("suggested host `{host}` is not a host pattern"));
        }
    }
    if problems.is_empty() {
        Ok(format!(
            "`{}` {} ({} settings, source tool `{}`)",
            info.id,
            info.version,
            info.settings.len(),
            info.source_tool
        ))
    } else {
        Err(problems.join("; "))
    }
}

/// A typed connector error, or why the result is not one.
fn typed<T>(result: &keelson_runtime::Result<T>) -> Result<Option<&ConnectorError>, String> {
    match result {
        Ok(_) => Ok(None),
        Err(keelson_runtime::Error::Connector { source, .. }) => Ok(Some(source)),
        Err(other) => Err(format!("not a typed connector error: {other}")),
    }
}

/// Missing settings give `invalid-config` naming the key; a wrong secret gives
/// `invalid-credentials` no later than `verify`.
async fn check_connect_errors(
    report: &mut Report,
    plugin: &Plugin,
    info: &ConnectorInfo,
    target: &Target,
) {
    if let Some(required) = info.settings.iter().find(|s| s.required) {
        let settings: Vec<KeyValue> = target
            .settings
            .iter()
            .filter(|kv| kv.key != required.key)
            .cloned()
            .collect();
        let result = plugin
            .connect("conformance-missing", settings, Vec::new())
            .await;
        report.check(
            "error-missing-setting",
            match typed(&result) {
                Ok(Some(ConnectorError::InvalidConfig(m))) if m.contains(&required.key) => Ok(
                    format!("without `{}`: invalid-config naming it", required.key),
                ),
                Ok(Some(other)) => Err(format!(
                    "without `{}`: expected invalid-config naming the key, got {} `{other}`",
                    required.key,
                    other.kind()
                )),
                Ok(None) => Err(format!(
                    "connect succeeded without the required setting `{}`",
                    required.key
                )),
                Err(e) => Err(e),
            },
        );
    }
    let Some(secret) = info
        .settings
        .iter()
        .find(|s| s.secret && target.settings.iter().any(|kv| kv.key == s.key))
    else {
        return;
    };
    let wrong = format!("conformance-wrong-{}", secret.key);
    let bad = target.clone_with_secret(&secret.key, &wrong);
    let secrets = bind_secrets(info, &bad);
    let result = match plugin
        .connect("conformance-wrong", bad.settings, secrets)
        .await
    {
        Ok(mut conn) => conn.verify().await.map(|_| ()),
        Err(e) => Err(e),
    };
    report.check(
        "error-wrong-secret",
        match typed(&result) {
            Ok(Some(ConnectorError::InvalidCredentials(_))) => Ok(format!(
                "a wrong `{}` gives invalid-credentials",
                secret.key
            )),
            Ok(Some(other)) => Err(format!(
                "a wrong `{}` gave {}, expected invalid-credentials",
                secret.key,
                other.kind()
            )),
            Ok(None) => Err(format!("a wrong `{}` verified", secret.key)),
            Err(e) => Err(e),
        },
    );
}

impl Target {
    fn clone_with_secret(&self, key: &str, value: &str) -> Self {
        let mut settings = self.settings.clone();
        for kv in &mut settings {
            if kv.key == key {
                value.clone_into(&mut kv.value);
            }
        }
        Self {
            settings,
            allowed_hosts: self.allowed_hosts.clone(),
            narrow_hosts: self.narrow_hosts.clone(),
            ca_pems: Vec::new(),
            resolve: Vec::new(),
            secret_hosts: self.secret_hosts.clone(),
        }
    }
}

/// One full walk of a listing: every page at most `max_items`, no cursor twice, a bounded
/// number of pages.
struct Walk<T> {
    items: Vec<T>,
    pages: usize,
    /// A cursor the connector issued, for the cursor checks.
    cursor: Option<String>,
}

const MAX_PAGES: usize = 5_000;

async fn walk<T>(
    max_items: u32,
    mut fetch: impl AsyncFnMut(PageRequest) -> keelson_runtime::Result<Page<T>>,
) -> Result<Walk<T>, String> {
    let mut seen = BTreeSet::new();
    let mut walk = Walk {
        items: Vec::new(),
        pages: 0,
        cursor: None,
    };
    let mut request = PageRequest::first(max_items);
    loop {
        let page = fetch(request).await.map_err(|e| e.to_string())?;
        walk.pages += 1;
        if page.items.len() > max_items as usize {
            return Err(format!(
                "page {} has {} items, more than max-items {max_items}",
                walk.pages,
                page.items.len()
            ));
        }
        walk.items.extend(page.items);
        let Some(next) = page.next else {
            return Ok(walk);
        };
        if !seen.insert(next.clone()) {
            return Err(format!(
                "cursor repeated after page {}: paging would never end",
                walk.pages
            ));
        }
        if walk.pages >= MAX_PAGES {
            return Err(format!("no last page after {MAX_PAGES} pages"));
        }
        walk.cursor.get_or_insert_with(|| next.clone());
        request = PageRequest::after(next, max_items);
    }
}

fn registry_key(r: &Registry) -> String {
    r.name.clone()
}
fn repository_key(r: &Repository) -> String {
    format!("{}/{}", r.registry, r.name)
}
fn image_key(i: &Image) -> String {
    let mut tags = i.tags.clone();
    tags.sort();
    format!(
        "{}/{}@{} [{}]",
        i.image_ref.registry,
        i.image_ref.repository,
        i.image_ref.digest,
        tags.join(",")
    )
}
fn finding_key(f: &Finding) -> String {
    format!(
        "{}/{}@{} {} {}",
        f.image.registry,
        f.image.repository,
        f.image.digest,
        f.vulnerability_id,
        f.package.as_ref().map_or("", |p| p.name.as_str())
    )
}

/// Compares two walks of one listing: same items, and no item twice within one walk (a page
/// boundary that repeats or skips).
fn compare(what: &str, first: &[String], second: &[String], unique: bool) -> Result<(), String> {
    let a: BTreeSet<&String> = first.iter().collect();
    let b: BTreeSet<&String> = second.iter().collect();
    if unique && a.len() != first.len() {
        return Err(format!(
            "{what}: {} items but only {} distinct: a page repeated items",
            first.len(),
            a.len()
        ));
    }
    if a != b {
        let only_a = a.difference(&b).next();
        let only_b = b.difference(&a).next();
        return Err(format!(
            "{what}: two walks differ ({} vs {} items; e.g. `{}` / `{}`)",
            first.len(),
            second.len(),
            only_a.map_or("-", |s| s.as_str()),
            only_b.map_or("-", |s| s.as_str())
        ));
    }
    Ok(())
}

/// Everything one pass over the listings saw.
#[derive(Default)]
struct Pass {
    registries: Vec<String>,
    repositories: Vec<String>,
    images: Vec<String>,
    findings: Vec<String>,
    pages: usize,
    cursor: Option<(Listing, String)>,
    sample_images: Vec<keelson_core::ImageRef>,
}

/// Which listing a cursor came from, so the cursor checks can call it again.
#[derive(Clone)]
enum Listing {
    Registries,
    Repositories(String),
    Images(String, String),
    Findings,
}

async fn one_pass(conn: &mut Connection, max_items: u32, sample: usize) -> Result<Pass, String> {
    let mut pass = Pass::default();
    let w = walk(max_items, async |p| conn.list_registries(p).await)
        .await
        .map_err(|e| format!("list-registries: {e}"))?;
    pass.pages += w.pages;
    if let Some(c) = w.cursor {
        pass.cursor = Some((Listing::Registries, c));
    }
    pass.registries = w.items.iter().map(registry_key).collect();
    for registry in w.items.iter().take(sample) {
        let name = &registry.name;
        let repos = walk(max_items, async |p| conn.list_repositories(name, p).await)
            .await
            .map_err(|e| format!("list-repositories `{name}`: {e}"))?;
        pass.pages += repos.pages;
        if let (None, Some(c)) = (&pass.cursor, repos.cursor) {
            pass.cursor = Some((Listing::Repositories(name.clone()), c));
        }
        pass.repositories
            .extend(repos.items.iter().map(repository_key));
        for repo in repos.items.iter().take(sample) {
            let images = walk(max_items, async |p| {
                conn.list_images(name, &repo.name, p).await
            })
            .await
            .map_err(|e| format!("list-images `{name}/{}`: {e}", repo.name))?;
            pass.pages += images.pages;
            if let (None, Some(c)) = (&pass.cursor, images.cursor) {
                pass.cursor = Some((Listing::Images(name.clone(), repo.name.clone()), c));
            }
            pass.images.extend(images.items.iter().map(image_key));
            pass.sample_images
                .extend(images.items.iter().take(2).map(|i| i.image_ref.clone()));
        }
    }
    // Findings pages are larger in practice; a larger page keeps the walk short.
    let findings_page = max_items.max(50);
    let scope = ScanScope::default();
    let findings = walk(findings_page, async |p| conn.list_findings(&scope, p).await)
        .await
        .map_err(|e| format!("list-findings: {e}"))?;
    pass.pages += findings.pages;
    if let (None, Some(c)) = (&pass.cursor, findings.cursor) {
        pass.cursor = Some((Listing::Findings, c));
    }
    pass.findings = findings.items.iter().map(finding_key).collect();
    Ok(pass)
}

/// Walks every listing three times (page size, `max-items` 1, page size again) and compares.
/// Returns a cursor the connector issued, for the cursor checks.
async fn check_listings(
    report: &mut Report,
    conn: &mut Connection,
    args: &TestArgs,
) -> Option<(Listing, String)> {
    let first = match one_pass(conn, args.page_size, args.sample).await {
        Ok(pass) => {
            report.pass(
                "paging-terminates",
                &format!(
                    "{} registries, {} repositories, {} images, {} findings in {} pages of at most {}",
                    pass.registries.len(),
                    pass.repositories.len(),
                    pass.images.len(),
                    pass.findings.len(),
                    pass.pages,
                    args.page_size
                ),
            );
            pass
        }
        Err(e) => {
            report.fail("paging-terminates", &e);
            return None;
        }
    };
    report.check(
        "limits-respected",
        match one_pass(conn, 1, 1).await {
            Ok(p) => Ok(format!("max-items 1: {} pages, none larger", p.pages)),
            Err(e) => Err(format!("max-items 1: {e}")),
        },
    );
    match one_pass(conn, args.page_size, args.sample).await {
        Ok(second) => {
            let result = compare("registries", &first.registries, &second.registries, true)
                .and_then(|()| {
                    compare(
                        "repositories",
                        &first.repositories,
                        &second.repositories,
                        true,
                    )
                })
                .and_then(|()| compare("images", &first.images, &second.images, true))
                .and_then(|()| compare("findings", &first.findings, &second.findings, false));
            report.check(
                "paging-stable",
                result.map(|()| "two walks report the same items, none twice".to_owned()),
            );
        }
        Err(e) => report.fail("paging-stable", &format!("second walk: {e}")),
    }
    if !first.sample_images.is_empty() {
        let asked = first.sample_images.clone();
        let result = conn.describe_images(&asked).await;
        report.check(
            "enrichment",
            match result {
                Ok(contexts) => {
                    let known: BTreeSet<_> = asked.iter().collect();
                    match contexts.iter().find(|c| !known.contains(&c.image)) {
                        Some(c) => Err(format!(
                            "describe-images returned `{}` which was not asked for",
                            c.image.digest
                        )),
                        None => Ok(format!(
                            "{} of {} images described",
                            contexts.len(),
                            asked.len()
                        )),
                    }
                }
                Err(keelson_runtime::Error::Connector { source, .. }) => Ok(format!(
                    "describe-images answered a typed error ({})",
                    source.kind()
                )),
                Err(e) => Err(e.to_string()),
            },
        );
    }
    first.cursor
}

async fn call(
    conn: &mut Connection,
    listing: &Listing,
    cursor: String,
) -> keelson_runtime::Result<usize> {
    let page = PageRequest::after(cursor, 3);
    match listing {
        Listing::Registries => conn.list_registries(page).await.map(|p| p.items.len()),
        Listing::Repositories(r) => conn.list_repositories(r, page).await.map(|p| p.items.len()),
        Listing::Images(r, x) => conn.list_images(r, x, page).await.map(|p| p.items.len()),
        Listing::Findings => conn
            .list_findings(&ScanScope::default(), page)
            .await
            .map(|p| p.items.len()),
    }
}

/// Cursors are opaque and checked: one the connector never issued, and one it issued with a
/// byte changed, give a typed error (or a valid page) and never a trap.
async fn check_cursors(
    report: &mut Report,
    conn: &mut Connection,
    issued: Option<(Listing, String)>,
) {
    let garbage = "%%not-a-cursor%%".to_owned();
    let result = call(conn, &Listing::Registries, garbage).await;
    report.check(
        "cursor-foreign",
        match typed(&result) {
            Ok(Some(e)) => Ok(format!("a foreign cursor gives {}", e.kind())),
            Ok(None) => Err("a cursor the connector never issued was accepted".to_owned()),
            Err(e) => Err(e),
        },
    );
    let Some((listing, cursor)) = issued else {
        report.pass(
            "cursor-tampered",
            "skipped: no listing had a second page to take a cursor from",
        );
        return;
    };
    let mut tampered = cursor.clone();
    // Cut the cursor in half: whatever its encoding, what is left is not what was issued.
    tampered.truncate(cursor.len() / 2);
    tampered.push('!');
    let result = call(conn, &listing, tampered).await;
    report.check(
        "cursor-tampered",
        match typed(&result) {
            Ok(Some(e)) => Ok(format!("a tampered cursor gives {}", e.kind())),
            Ok(None) => Ok("a tampered cursor still gave a page".to_owned()),
            Err(e) => Err(e),
        },
    );
    let again = call(conn, &listing, cursor).await;
    report.check(
        "cursor-replay",
        again
            .map(|n| format!("an issued cursor can be asked for again ({n} items)"))
            .map_err(|e| e.to_string()),
    );
}

/// Unknown registries and repositories give a typed error or an empty listing, never a trap.
async fn check_unknown(report: &mut Report, conn: &mut Connection) {
    let registry = "conformance-unknown.invalid";
    let result = conn
        .list_repositories(registry, PageRequest::first(3))
        .await;
    let mut text = String::new();
    let outcome = match typed(&result) {
        Ok(Some(e)) => {
            let _ = write!(text, "unknown registry: {}", e.kind());
            Ok(())
        }
        Ok(None) => {
            let n = result.map(|p| p.items.len()).unwrap_or_default();
            if n == 0 {
                text.push_str("unknown registry: empty");
                Ok(())
            } else {
                Err(format!(
                    "unknown registry `{registry}` listed {n} repositories"
                ))
            }
        }
        Err(e) => Err(e),
    };
    report.check("error-unknown-registry", outcome.map(|()| text));
    report.check(
        "connection-usable",
        match conn.retired() {
            None => Ok("no check retired the connection".to_owned()),
            Some(reason) => Err(format!("the connection was retired: {reason}")),
        },
    );
}

/// With a narrower grant, the connector's requests are refused and it says so with a typed
/// error (permission-denied, naming the host), not a trap or a silent empty answer.
async fn check_narrow_grant(
    report: &mut Report,
    plugin: &Plugin,
    target: &Target,
    secrets: Vec<BoundSecret>,
) {
    let grant = if target.narrow_hosts.is_empty() {
        "no hosts".to_owned()
    } else {
        target
            .narrow_hosts
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut conn = match plugin
        .connect("conformance-narrow", target.settings.clone(), secrets)
        .await
    {
        Ok(conn) => conn,
        Err(keelson_runtime::Error::Connector { source, .. }) => {
            report.pass(
                "grants-denial-typed",
                &format!("granted {grant}: connect answered {}", source.kind()),
            );
            return;
        }
        Err(e) => {
            report.fail("grants-denial-typed", &e.to_string());
            return;
        }
    };
    let verify = conn.verify().await.map(|_| ());
    let listing = conn
        .list_registries(PageRequest::first(3))
        .await
        .map(|p| p.items.len());
    let denials = conn.egress_denials();
    let outcome = match (typed(&verify), typed(&listing)) {
        (Err(e), _) | (_, Err(e)) => Err(e),
        (Ok(None), _) => Err(format!(
            "granted {grant}: verify succeeded although the connector's hosts were refused"
        )),
        (Ok(Some(v)), Ok(l)) => {
            if denials == 0 {
                Err(format!(
                    "granted {grant}: verify failed ({}) but no request was refused",
                    v.kind()
                ))
            } else {
                Ok(format!(
                    "granted {grant}: {denials} request(s) refused; verify answered {}, list-registries {}",
                    v.kind(),
                    l.map_or("a page".to_owned(), |e| e.kind().to_owned())
                ))
            }
        }
    };
    report.check("grants-denial-typed", outcome);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> ConnectorInfo {
        ConnectorInfo {
            id: "oci-registry".into(),
            display_name: "OCI registry".into(),
            version: "0.1.0".into(),
            source_tool: "OCI registry".into(),
            settings: vec![keelson_core::SettingSpec {
                key: "url".into(),
                label: "URL".into(),
                help: "Base URL.".into(),
                secret: false,
                required: true,
                default_value: None,
                choices: Vec::new(),
                only_when: None,
                secret_hosts: Vec::new(),
            }],
            instructions: "Give the URL.".into(),
            suggested_hosts: vec!["https://*.example".into()],
        }
    }

    #[test]
    fn describe_check_accepts_a_complete_description() {
        assert!(check_describe(&info()).is_ok());
    }

    #[test]
    fn describe_check_names_each_gap() {
        let mut bad = info();
        bad.id = "OCI_Registry".into();
        bad.version = "1.0".into();
        bad.settings[0].help = String::new();
        bad.settings.push(bad.settings[0].clone());
        bad.settings[1].only_when = Some(kv("nope", "x"));
        let err = check_describe(&bad).unwrap_err();
        for needle in [
            "id `OCI_Registry`",
            "version `1.0`",
            "no label or no help",
            "declared twice",
            "`nope`",
        ] {
            assert!(err.contains(needle), "{err} should mention {needle}");
        }
    }

    #[test]
    fn compare_finds_repeats_and_differences() {
        let a = vec!["x".to_owned(), "y".to_owned()];
        assert!(compare("r", &a, &a, true).is_ok());
        let dup = vec!["x".to_owned(), "x".to_owned()];
        assert!(
            compare("r", &dup, &dup, true)
                .unwrap_err()
                .contains("distinct")
        );
        let b = vec!["x".to_owned(), "z".to_owned()];
        assert!(compare("r", &a, &b, true).unwrap_err().contains("`y`"));
    }

    #[tokio::test]
    async fn walk_stops_on_a_repeated_cursor_and_an_oversized_page() {
        let looping = walk::<u8>(2, async |_| {
            Ok(Page {
                items: vec![1],
                next: Some("same".into()),
                gaps: Vec::new(),
            })
        })
        .await;
        assert!(looping.err().unwrap().contains("cursor repeated"));
        let big = walk::<u8>(2, async |_| {
            Ok(Page {
                items: vec![1, 2, 3],
                next: None,
                gaps: Vec::new(),
            })
        })
        .await;
        assert!(big.err().unwrap().contains("more than max-items 2"));
        let mut calls = 0;
        let ok = walk::<u8>(2, async |p| {
            calls += 1;
            Ok(Page {
                items: vec![1],
                next: if p.cursor.is_none() {
                    Some("c1".into())
                } else {
                    None
                },
                gaps: Vec::new(),
            })
        })
        .await
        .unwrap();
        assert_eq!(
            (ok.items.len(), ok.pages, ok.cursor.as_deref()),
            (2, 2, Some("c1"))
        );
        assert_eq!(calls, 2);
    }
}
