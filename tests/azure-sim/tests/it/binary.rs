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
