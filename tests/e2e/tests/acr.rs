//! The Azure Container Registry connector, run by the real host against the simulator over TLS,
//! through its unchanged default code paths (only the `custom` cloud endpoints and the host's CA
//! and resolve settings point at the simulator).

#![allow(
    clippy::print_stdout,
    reason = "the tests print request counts and messages for the log"
)]

use std::collections::BTreeSet;

use azure_sim::{DataSet, FaultSpec, Scenario, SimOptions, TenantSpec};
use keelson_core::ConnectorError;
use keelson_e2e::{AcrEnv, Snapshot, connector_error, snapshot};
use keelson_scan::PagingPolicy;

type FindingKey = (String, String, String, String, String, String);

fn truth_findings(env: &AcrEnv) -> BTreeSet<FindingKey> {
    env.sim
        .ground_truth()
        .findings()
        .map(|f| {
            (
                f.login_server,
                f.repository,
                f.digest,
                f.vulnerability_id,
                f.package,
                f.severity.as_str().to_ascii_lowercase(),
            )
        })
        .collect()
}

fn reported_findings(snap: &Snapshot) -> BTreeSet<FindingKey> {
    snap.findings
        .iter()
        .map(|f| {
            (
                f.image.registry.clone(),
                f.image.repository.clone(),
                f.image.digest.clone(),
                f.vulnerability_id.clone(),
                f.package
                    .as_ref()
                    .map(|p| p.name.clone())
                    .unwrap_or_default(),
                f.severity.as_str().to_owned(),
            )
        })
        .collect()
}

/// Registries, readable images and open findings must equal the ground truth exactly.
fn assert_matches_truth(env: &AcrEnv, snap: &Snapshot) {
    let truth = env.sim.ground_truth();
    let registries: BTreeSet<String> = truth
        .registries()
        .into_iter()
        .map(|r| r.login_server)
        .collect();
    let reported: BTreeSet<String> = snap.registries.iter().map(|r| r.name.clone()).collect();
    assert_eq!(reported, registries, "registries");

    let readable: BTreeSet<String> = truth
        .registries()
        .into_iter()
        .filter(|r| r.data_plane_readable)
        .map(|r| r.login_server)
        .collect();
    let images: BTreeSet<(String, String, String)> = truth
        .images()
        .filter(|i| readable.contains(&i.login_server))
        .map(|i| (i.login_server, i.repository, i.digest))
        .collect();
    let reported: BTreeSet<(String, String, String)> = snap
        .images
        .iter()
        .map(|i| {
            (
                i.image_ref.registry.clone(),
                i.image_ref.repository.clone(),
                i.image_ref.digest.clone(),
            )
        })
        .collect();
    assert_eq!(reported.len(), snap.images.len(), "no image reported twice");
    assert_eq!(reported, images, "images (registry, repository, digest)");

    let repositories: BTreeSet<(String, String)> = images
        .iter()
        .map(|(r, n, _)| (r.clone(), n.clone()))
        .collect();
    let reported: BTreeSet<(String, String)> = snap
        .repositories
        .iter()
        .map(|r| (r.registry.clone(), r.name.clone()))
        .collect();
    assert!(
        repositories.is_subset(&reported),
        "every repository holding images is listed"
    );

    let expected = truth_findings(env);
    let got = reported_findings(snap);
    assert_eq!(got.len(), snap.findings.len(), "no finding reported twice");
    let missing: Vec<_> = expected.difference(&got).take(5).collect();
    let extra: Vec<_> = got.difference(&expected).take(5).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "findings differ: missing {missing:?}, extra {extra:?}"
    );
    assert!(!expected.is_empty(), "the scenario has findings to compare");
}

fn print_requests(label: &str, env: &AcrEnv) {
    let stats = env.sim.stats();
    let mut lines: Vec<String> = stats
        .requests
        .iter()
        .map(|e| format!("  {} {} x{}", e.endpoint, e.status, e.count))
        .collect();
    lines.sort();
    println!(
        "{label}: {} requests\n{}",
        stats.total_requests(),
        lines.join("\n")
    );
}

async fn scan_format(data_set: DataSet) {
    let mut options = SimOptions::new(Scenario::Demo);
    options.tenant.data_set = data_set;
    let env = AcrEnv::start(options).await;
    let mut conn = env.connect(&env.sim.credentials()).await.expect("connects");
    let account = conn.verify().await.expect("verifies");
    assert_eq!(account.id, env.sim.credentials().subscription_id);
    let snap = snapshot(&mut conn, &PagingPolicy::default()).await;
    assert!(
        snap.failures.is_empty(),
        "no listing failed: {:?}",
        snap.failures
    );
    assert_matches_truth(&env, &snap);
    assert_raw_is_the_whole_source_row(&snap);
    print_requests(&format!("{data_set:?} scan"), &env);
}

/// Each finding's `raw` is its whole Resource Graph row: the findings of one row (one per CVE)
/// come one after the other with the very same text, which names the row's id.
fn assert_raw_is_the_whole_source_row(snap: &Snapshot) {
    let mut rows = 0;
    for (i, f) in snap.findings.iter().enumerate() {
        let id = f.source_id.as_deref().expect("Defender rows have an id");
        assert!(
            f.raw.starts_with('{') && f.raw.contains(&format!("\"{id}\"")),
            "`raw` of {} is its row",
            f.vulnerability_id
        );
        match i.checked_sub(1).map(|p| &snap.findings[p]) {
            Some(prev) if prev.source_id == f.source_id => {
                assert_eq!(prev.raw, f.raw, "one text for all findings of a row");
            }
            _ => rows += 1,
        }
    }
    let distinct: BTreeSet<_> = snap.findings.iter().map(|f| &f.source_id).collect();
    assert_eq!(rows, distinct.len(), "a row's findings come together");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn individual_recommendations_match_ground_truth() {
    scan_format(DataSet::Individual).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mdvm_sub_assessments_match_ground_truth() {
    scan_format(DataSet::Mdvm).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qualys_sub_assessments_match_ground_truth() {
    scan_format(DataSet::Qualys).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_count_stays_at_the_minimum() {
    let env = AcrEnv::start(SimOptions::new(Scenario::Demo)).await;
    let mut conn = env.connect(&env.sim.credentials()).await.expect("connects");
    let snap = snapshot(&mut conn, &PagingPolicy::default()).await;
    assert!(snap.failures.is_empty(), "{:?}", snap.failures);
    let stats = env.sim.stats();
    print_requests("minimal scan", &env);
    let truth = env.sim.ground_truth();
    let registries = truth.registries().len() as u64;
    let repositories: BTreeSet<(String, String)> = truth
        .images()
        .map(|i| (i.login_server, i.repository))
        .collect();
    // One Entra token for ARM (the data plane exchanges it), one exchange per registry, and per
    // registry one catalog token plus one metadata token per repository.
    assert_eq!(
        stats.total("entra.token"),
        1,
        "one Entra token per audience per lifetime"
    );
    assert_eq!(
        stats.total("acr.exchange"),
        registries,
        "one refresh token per registry"
    );
    assert_eq!(
        stats.total("acr.catalog"),
        registries,
        "one catalog walk per registry (all fit one page)"
    );
    assert_eq!(
        stats.total("acr.manifests"),
        repositories.len() as u64,
        "one manifest walk per repository"
    );
    let rows = truth.findings().count() as u64;
    assert!(
        stats.total("arg.resources") <= 3 * rows.div_ceil(1000).max(1),
        "ceil(rows / 1000) pages per data set"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_tenant_recovers_transient_faults_and_reports_the_rest_precisely() {
    let env = AcrEnv::start(SimOptions::new(Scenario::Hostile)).await;
    let mut conn = env.connect(&env.sim.credentials()).await.expect("connects");
    let snap = snapshot(&mut conn, &PagingPolicy::default()).await;
    print_requests("hostile scan", &env);
    let truth = env.sim.ground_truth();
    for registry in truth
        .registries()
        .into_iter()
        .filter(|r| !r.data_plane_readable)
    {
        let failure = snap.failure(&format!("repositories of {}", registry.login_server));
        assert!(
            failure.is_some_and(|f| f.contains("permission denied")),
            "forbidden registry `{}` is reported as permission denied, got {failure:?}",
            registry.login_server
        );
    }
    let unexpected: Vec<_> = snap
        .failures
        .keys()
        .filter(|k| !k.starts_with("repositories of"))
        .collect();
    assert!(
        unexpected.is_empty(),
        "transient faults are recovered: {:?}",
        snap.failures
    );
    assert_matches_truth(&env, &snap);
    assert!(
        env.sim.stats().faults.values().sum::<u64>() > 0,
        "faults were injected"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeating_page_token_is_detected_not_followed_forever() {
    let mut options = SimOptions::new(Scenario::Demo);
    options.faults = FaultSpec {
        repeat_page_token: true,
        ..FaultSpec::default()
    };
    options.tenant = TenantSpec {
        arm_page_size: 1,
        ..options.tenant
    };
    let env = AcrEnv::start(options).await;
    let mut conn = env.connect(&env.sim.credentials()).await.expect("connects");
    let snap = snapshot(&mut conn, &PagingPolicy::default()).await;
    let failure = snap
        .failure("registries")
        .expect("the registry listing fails");
    assert!(
        failure.contains("repeat") || failure.contains("loop"),
        "{failure}"
    );
}

async fn connect_error(env: &AcrEnv, creds: &azure_sim::Credentials) -> String {
    let err = match env.connect(creds).await {
        Ok(mut conn) => conn.verify().await.expect_err("verification fails"),
        Err(err) => err,
    };
    let message = err.to_string();
    assert!(
        !message.contains(&creds.client_secret),
        "the secret never appears in an error"
    );
    assert!(
        connector_error(&err).is_some(),
        "a typed connector error, got {err}"
    );
    message
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_credential_failure_has_its_own_message() {
    let env = AcrEnv::start(SimOptions::new(Scenario::Small)).await;
    let cases = [
        (env.sim.wrong_secret(), "AADSTS7000215"),
        (env.sim.expired_secret_client(), "AADSTS7000222"),
        (env.sim.unknown_client(), "AADSTS700016"),
        (env.sim.unknown_tenant(), "AADSTS90002"),
        (env.sim.no_role_client(), "AuthorizationFailed"),
    ];
    let mut seen = BTreeSet::new();
    for (creds, code) in cases {
        let message = connect_error(&env, &creds).await;
        println!("{code}: {message}");
        assert!(message.contains(code), "`{message}` names {code}");
        assert!(seen.insert(message), "messages differ per cause");
    }
    let mut unknown_subscription = env.sim.credentials();
    unknown_subscription.subscription_id = "00000000-0000-0000-0000-00000000abcd".to_owned();
    let message = connect_error(&env, &unknown_subscription).await;
    assert!(
        message.contains("SubscriptionNotFound") || message.contains("not found"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_secret_is_invalid_credentials_and_not_retried() {
    let env = AcrEnv::start(SimOptions::new(Scenario::Small)).await;
    let err = match env.connect(&env.sim.wrong_secret()).await {
        Ok(mut conn) => conn.verify().await.expect_err("fails"),
        Err(err) => err,
    };
    assert!(
        matches!(
            connector_error(&err),
            Some(ConnectorError::InvalidCredentials(_))
        ),
        "{err}"
    );
    assert_eq!(
        env.sim.stats().total("entra.token"),
        1,
        "a rejected secret is not retried"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_that_expires_mid_scan_is_refreshed_once_and_the_scan_completes() {
    let mut options = SimOptions::new(Scenario::Small);
    // Azure rejects tokens older than one second here, although `expires_in` promises an hour.
    options.faults = FaultSpec {
        token_max_age_secs: Some(1),
        ..FaultSpec::default()
    };
    let env = AcrEnv::start(options).await;
    let mut conn = env.connect(&env.sim.credentials()).await.expect("connects");
    conn.verify().await.expect("verifies");
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let snap = snapshot(&mut conn, &PagingPolicy::default()).await;
    let forbidden: BTreeSet<String> = env
        .sim
        .ground_truth()
        .registries()
        .into_iter()
        .filter(|r| !r.data_plane_readable)
        .map(|r| format!("repositories of {}", r.login_server))
        .collect();
    let unexpected: Vec<_> = snap
        .failures
        .keys()
        .filter(|k| !forbidden.contains(*k))
        .collect();
    assert!(unexpected.is_empty(), "{:?}", snap.failures);
    assert_matches_truth(&env, &snap);
    let stats = env.sim.stats();
    print_requests("expiring tokens", &env);
    assert!(
        stats.total("entra.token") >= 2,
        "the expired token was replaced"
    );
    assert!(
        stats.count("arm.registries", 401) + stats.count("arm.subscription", 401) >= 1,
        "Azure refused the old token"
    );
}
