use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};

#[test]
fn binary_prints_config_ground_truth_and_the_ready_line() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    let expected = dir.path().join("expected.json");
    let mut child = Command::new(env!("CARGO_BIN_EXE_azure-sim"))
        .args([
            "--scenario",
            "demo",
            "--seed",
            "3",
            "--port",
            "0",
            "--print-config",
        ])
        .arg("--ca-out")
        .arg(&ca)
        .arg("--expected")
        .arg(&expected)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut printed = String::new();
    let port = loop {
        let mut line = String::new();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "binary exited early: {printed}"
        );
        if let Some(p) = line.trim().strip_prefix("# azure-sim ready port=") {
            break p.parse::<u16>().unwrap();
        }
        printed.push_str(&line);
    };
    let config: toml::Table = toml::from_str(&printed).expect("the snippet is TOML");
    assert_eq!(
        config["host"]["extra_ca_certs"][0].as_str().unwrap(),
        std::path::absolute(&ca).unwrap().to_str().unwrap()
    );
    assert_eq!(
        config["host"]["resolve"]["*.sim.localhost"].as_str(),
        Some("127.0.0.1")
    );
    let hosts = config["plugin"][0]["allowed_hosts"].as_array().unwrap();
    assert_eq!(
        hosts[0].as_str().unwrap(),
        format!("https://login.sim.localhost:{port}")
    );
    assert_eq!(
        hosts[2].as_str().unwrap(),
        format!("https://*.azurecr.sim.localhost:{port}")
    );
    let conn = &config["connection"][0];
    assert_eq!(conn["settings"]["cloud"].as_str(), Some("custom"));
    assert_eq!(
        conn["secrets"]["client_secret"].as_str(),
        Some("env:KEELSON_SIM_CLIENT_SECRET")
    );
    assert!(
        !printed.contains("sim~"),
        "the secret never appears in the snippet"
    );
    assert!(
        std::fs::read_to_string(&ca)
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE-----")
    );
    let truth: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&expected).unwrap()).unwrap();
    assert_eq!(truth["registries"].as_array().unwrap().len(), 3);
    assert!(!truth["findings"].as_array().unwrap().is_empty());

    // SIGTERM ends it gracefully.
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "{exit:?}");
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(err.contains("export KEELSON_SIM_CLIENT_SECRET="));
}

#[tokio::test]
async fn binary_starts_with_the_anomalies_it_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    let expected = dir.path().join("expected.json");
    let mut child = Command::new(env!("CARGO_BIN_EXE_azure-sim"))
        .args([
            "--scenario",
            "demo",
            "--anomaly",
            "one-registry-forbidden",
            "--anomaly",
            "arg-null-data",
            "--anomaly",
            "arg-null-data",
        ])
        .arg("--ca-out")
        .arg(&ca)
        .arg("--expected")
        .arg(&expected)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let port = loop {
        let mut line = String::new();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "binary exited early"
        );
        if let Some(p) = line.trim().strip_prefix("# azure-sim ready port=") {
            break p.parse::<u16>().unwrap();
        }
    };
    let truth: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&expected).unwrap()).unwrap();
    let anomaly = &truth["anomaly"];
    assert_eq!(
        anomaly["active"],
        serde_json::json!(["arg-null-data", "one-registry-forbidden"]),
        "given twice, on once"
    );
    assert_eq!(anomaly["target_registry"], "contosodev");
    assert_eq!(anomaly["uncovered_registries"][0]["reason"], "forbidden");

    // The running server has them on too.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let pem = std::fs::read(&ca).unwrap();
    let http = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()])
        .no_proxy()
        .resolve(
            "management.sim.localhost",
            std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        )
        .build()
        .unwrap();
    let faults = http
        .get(format!(
            "https://management.sim.localhost:{port}/_sim/faults"
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let faults: serde_json::Value = serde_json::from_str(&faults).unwrap();
    assert_eq!(faults["anomalies"], anomaly["active"]);

    assert!(
        Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .unwrap()
            .success()
    );
    assert!(child.wait().unwrap().success());
}

#[test]
fn binary_refuses_an_unknown_anomaly_and_names_the_known_ones() {
    let out = Command::new(env!("CARGO_BIN_EXE_azure-sim"))
        .args(["--anomaly", "arg-nul-data"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown anomaly `arg-nul-data`"), "{err}");
    assert!(err.contains("arg-null-data, arg-empty-after-full"), "{err}");
}
