//! The real `keelson` binary in a folder of its own with the demo simulator: a plugins.toml for
//! it, commands with a transcript (for the canary checks), the queue as JSON and the ground truth.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use azure_sim::SimHandle;

use super::ACR_PLUGIN as PLUGIN;

pub(crate) const KEELSON: &str = env!("CARGO_BIN_EXE_keelson");
pub(crate) const SECRET_VAR: &str = "KEELSON_E2E_CLIENT_SECRET";

/// A simulator, a folder with a plugins.toml for it (no connection declared), and the binary.
pub(crate) struct Env {
    pub(crate) sim: SimHandle,
    pub(crate) dir: tempfile::TempDir,
    /// Everything any command printed, for the canary check.
    pub(crate) transcript: String,
}

impl Env {
    pub(crate) async fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let sim = super::demo_simulator(dir.path()).await;
        Self {
            sim,
            dir,
            transcript: String::new(),
        }
    }

    pub(crate) fn secret(&self) -> String {
        self.sim.credentials().client_secret
    }

    pub(crate) fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(KEELSON);
        cmd.current_dir(self.dir.path())
            .args(["--log", "debug"])
            .args(args)
            .env_remove("KEELSON_CONFIG")
            .env_remove("KEELSON_MASTER_KEY")
            .env_remove("KEELSON_LOG")
            .env(SECRET_VAR, self.secret())
            .stdin(Stdio::null());
        cmd
    }

    pub(crate) fn run(&mut self, args: &[&str]) -> Output {
        let output = self.command(args).output().expect("keelson runs");
        self.transcript
            .push_str(&String::from_utf8_lossy(&output.stdout));
        self.transcript
            .push_str(&String::from_utf8_lossy(&output.stderr));
        output
    }

    pub(crate) fn ok(&mut self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "`keelson {}` failed:\n{}\n{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("utf-8 output")
    }

    /// The `--set` arguments an operator types for the simulator.
    pub(crate) fn settings(&self) -> Vec<String> {
        let c = self.sim.credentials();
        [
            ("tenant_id", c.tenant_id.clone()),
            ("client_id", c.client_id.clone()),
            ("subscription_id", c.subscription_id.clone()),
            ("cloud", "custom".to_owned()),
            ("authority_host", self.sim.login_url()),
            ("resource_manager_endpoint", self.sim.management_url()),
        ]
        .into_iter()
        .flat_map(|(k, v)| ["--set".to_owned(), format!("{k}={v}")])
        .collect()
    }

    pub(crate) fn connect(
        &mut self,
        name: &str,
        secret_ref: &str,
        extra_env: &[(&str, &str)],
    ) -> Output {
        let mut args: Vec<String> = vec![
            "connect".into(),
            PLUGIN.into(),
            "--name".into(),
            name.into(),
        ];
        args.extend(self.settings());
        args.extend(["--secret".into(), format!("client_secret={secret_ref}")]);
        let mut cmd = self.command(&args.iter().map(String::as_str).collect::<Vec<_>>());
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let output = cmd.output().expect("keelson runs");
        self.transcript
            .push_str(&String::from_utf8_lossy(&output.stdout));
        self.transcript
            .push_str(&String::from_utf8_lossy(&output.stderr));
        output
    }

    pub(crate) fn database(&self) -> PathBuf {
        self.dir.path().join("state/keelson.db")
    }

    /// The bytes of the database and its WAL.
    pub(crate) fn database_bytes(&self) -> Vec<u8> {
        let mut bytes = std::fs::read(self.database()).expect("database exists");
        if let Ok(wal) = std::fs::read(self.dir.path().join("state/keelson.db-wal")) {
            bytes.extend(wal);
        }
        bytes
    }

    pub(crate) fn scan_json(&mut self, name: &str, extra: &[&str]) -> (bool, serde_json::Value) {
        let mut args = vec!["scan", name, "--json"];
        args.extend(extra);
        let output = self.run(&args);
        let stdout = String::from_utf8_lossy(&output.stdout);
        let value: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
            panic!(
                "scan --json prints JSON ({e}):\n{stdout}\n{}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
        (output.status.success(), value[0].clone())
    }

    pub(crate) fn issues(&mut self, status: &str) -> Vec<serde_json::Value> {
        let text = self.ok(&[
            "issues",
            "--source-tool",
            "Azure Container Registry",
            "--status",
            status,
            "--format",
            "json",
        ]);
        serde_json::from_str(&text).expect("issues --format json is a JSON array")
    }
}

/// (registry, repository, vulnerability, package) -> open digests.
pub(crate) type Queue = BTreeMap<(String, String, String, String), BTreeSet<String>>;

pub(crate) fn queue_of(issues: &[serde_json::Value]) -> Queue {
    let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
    issues
        .iter()
        .map(|i| {
            let digests = i["images"]
                .as_array()
                .expect("images")
                .iter()
                .filter(|im| im["status"] == "open")
                .map(|im| s(&im["digest"]))
                .collect();
            (
                (
                    s(&i["registry"]),
                    s(&i["repository"]),
                    s(&i["vulnerability_id"]),
                    s(&i["package"]),
                ),
                digests,
            )
        })
        .collect()
}

pub(crate) fn truth_queue(sim: &SimHandle, registry_prefix: &str) -> Queue {
    let mut queue = Queue::new();
    for f in sim.ground_truth().findings() {
        if f.login_server.starts_with(registry_prefix) {
            queue
                .entry((f.login_server, f.repository, f.vulnerability_id, f.package))
                .or_default()
                .insert(f.digest);
        }
    }
    queue
}

/// Findings (one per image) of the ground truth under `registry_prefix`.
pub(crate) fn truth_findings(
    sim: &SimHandle,
    registry_prefix: &str,
) -> BTreeSet<(String, String, String, String, String)> {
    sim.ground_truth()
        .findings()
        .filter(|f| f.login_server.starts_with(registry_prefix))
        .map(|f| {
            (
                f.login_server,
                f.repository,
                f.digest,
                f.vulnerability_id,
                f.package,
            )
        })
        .collect()
}

pub(crate) fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// An [`Env`] with connection `prod` saved (its secret read from the environment).
pub(crate) async fn connected_env() -> Env {
    let mut env = Env::start().await;
    let saved = env.connect("prod", &format!("env:{SECRET_VAR}"), &[]);
    assert!(
        saved.status.success(),
        "{}",
        String::from_utf8_lossy(&saved.stderr)
    );
    env
}
