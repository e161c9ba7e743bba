use azure_sim::{Scenario, SimOptions};
use serde_json::json;

use crate::arg::{INDIVIDUAL, fetch_all, open_findings, truth};
use crate::common::start;

#[tokio::test]
async fn mutations_show_up_in_every_api_and_the_ground_truth() {
    let env = start(SimOptions::new(Scenario::Demo)).await;
    let token = env.arm_token().await;
    let gt = env.sim.ground_truth();
    let before: Vec<_> = gt.findings().collect();
    let victim = before[0].clone();
    let reg_name = victim.login_server.split('.').next().unwrap().to_owned();

    // Fix one finding: it leaves the ground truth and the ARG rows.
    env.sim
        .fix_finding(
            &reg_name,
            &victim.repository,
            &victim.digest,
            &victim.vulnerability_id,
            &victim.package,
        )
        .unwrap();
    let after = truth(&env);
    assert_eq!(after.len(), before.len() - 1);
    let (rows, _) = fetch_all(&env, &token, INDIVIDUAL, 1000).await;
    assert_eq!(open_findings(&rows, azure_sim::DataSet::Individual), after);

    // Remove the image: gone from the manifests list and from the truth.
    env.sim
        .remove_image(&reg_name, &victim.repository, &victim.digest)
        .unwrap();
    assert!(
        env.sim
            .ground_truth()
            .images()
            .all(|i| i.digest != victim.digest)
    );
    let login = victim.login_server.clone();
    let t = env
        .acr_token(
            &login,
            &format!("repository:{}:metadata_read", victim.repository),
        )
        .await;
    let enc = victim.repository.replace('/', "%2F");
    let r = env
        .get(
            &format!("https://{login}/acr/v1/{enc}/_manifests"),
            Some(&t),
        )
        .await;
    assert!(!r.text.contains(&victim.digest));

    // Push and re-push: new digests appear.
    let pushed = env
        .sim
        .push_images(&reg_name, &victim.repository, 2)
        .unwrap();
    assert_eq!(pushed.len(), 2);
    let r = env
        .get(
            &format!("https://{login}/acr/v1/{enc}/_manifests"),
            Some(&t),
        )
        .await;
    assert!(pushed.iter().all(|d| r.text.contains(d.as_str())));
    let repushed = env
        .sim
        .repush_image(&reg_name, &victim.repository, &pushed[0])
        .unwrap();
    assert_ne!(repushed, pushed[0]);
    assert!(
        env.sim
            .ground_truth()
            .images()
            .any(|i| i.digest == repushed)
    );
    let n = env.sim.repush_images(0.5);
    assert!(n > 0);
    let (rows, _) = fetch_all(&env, &token, INDIVIDUAL, 1000).await;
    assert_eq!(
        open_findings(&rows, azure_sim::DataSet::Individual),
        truth(&env)
    );

    // Unknown names are errors carrying the name.
    let e = env
        .sim
        .remove_image("nosuchregistry", "x", "sha256:00")
        .unwrap_err();
    assert_eq!(e.to_string(), "unknown registry `nosuchregistry`");
    env.sim.shutdown().await;
}

#[tokio::test]
async fn control_routes_drive_the_simulator_over_http() {
    let env = start(SimOptions::new(Scenario::Small)).await;
    let base = format!("{}/_sim", env.sim.management_url());
    let images = env.sim.ground_truth().images().count();

    let r = env
        .post_json(
            &format!("{base}/images/remove"),
            None,
            &json!({"share": 0.25}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let removed = r.json()["images"].as_u64().unwrap() as usize;
    assert!(removed > 0);
    assert_eq!(env.sim.ground_truth().images().count(), images - removed);

    let open = env.sim.ground_truth().findings().count();
    let r = env
        .post_json(
            &format!("{base}/findings/fix"),
            None,
            &json!({"share": 0.5}),
        )
        .await;
    let fixed = r.json()["findings"].as_u64().unwrap() as usize;
    assert_eq!(env.sim.ground_truth().findings().count(), open - fixed);

    let r = env
        .post_json(
            &format!("{base}/images/push"),
            None,
            &json!({"registry": "fabrikamapps", "repository": "apps/api", "count": 1}),
        )
        .await;
    assert_eq!(r.json()["digests"].as_array().unwrap().len(), 1);
    let r = env
        .post_json(
            &format!("{base}/images/push"),
            None,
            &json!({"registry": "nope", "repository": "apps/api"}),
        )
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"], "unknown registry `nope`");

    let r = env
        .send(
            env.http
                .put(format!("{base}/faults"))
                .body(json!({"server_error_share": 1.0}).to_string()),
        )
        .await;
    assert_eq!(r.status, 200);
    assert!((env.sim.faults().server_error_share - 1.0).abs() < f64::EPSILON);
    let r = env
        .send(env.http.put(format!("{base}/faults")).body("{\"typo\": 1}"))
        .await;
    assert_eq!(r.status, 400);

    let gt = env.get(&format!("{base}/ground-truth"), None).await.json();
    assert_eq!(
        gt["findings"].as_array().unwrap().len(),
        env.sim.ground_truth().findings().count()
    );
    let stats = env.get(&format!("{base}/stats"), None).await.json();
    let control = stats["requests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["endpoint"] == "sim.control")
        .count();
    assert!(control >= 1);
    env.sim.shutdown().await;
}

#[tokio::test]
async fn the_same_seed_serves_the_same_tenant() {
    let a = start(SimOptions::new(Scenario::Small).seed(77)).await;
    let b = start(SimOptions::new(Scenario::Small).seed(77)).await;
    let c = start(SimOptions::new(Scenario::Small).seed(78)).await;
    let dump = |e: &crate::common::Env| {
        let mut v = Vec::new();
        e.sim.ground_truth().write_json(&mut v).unwrap();
        // Login servers carry the port, which differs between runs.
        String::from_utf8(v)
            .unwrap()
            .replace(&format!(":{}", e.sim.port()), ":PORT")
    };
    assert_eq!(dump(&a), dump(&b));
    assert_ne!(dump(&a), dump(&c));
    assert_eq!(a.sim.credentials(), b.sim.credentials());
    let ta = a.arm_token().await;
    let tb = b.arm_token().await;
    let (ra, _) = fetch_all(&a, &ta, INDIVIDUAL, 1000).await;
    let (rb, _) = fetch_all(&b, &tb, INDIVIDUAL, 1000).await;
    let norm = |e: &crate::common::Env, rows: &[serde_json::Value]| {
        serde_json::to_string(rows)
            .unwrap()
            .replace(&format!(":{}", e.sim.port()), ":PORT")
    };
    assert_eq!(norm(&a, &ra), norm(&b, &rb));
    for e in [a, b, c] {
        e.sim.shutdown().await;
    }
}
