//! The real controller binary, run as a separate process under the `aviary-operator` identity
//! with the RBAC a cluster admin would grant it, scoped to one test namespace.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use kube::Client;
use serde_json::json;

use super::{apply_value, poll_until};

/// What the controller may do, verb by verb (the chart's ClusterRole holds the same rules).
pub fn controller_rules() -> serde_json::Value {
    json!([
        {"apiGroups": ["aviary.dev"], "resources": ["rollouts", "analysisruns"], "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
        {"apiGroups": ["aviary.dev"], "resources": ["rollouts/status", "analysisruns/status"], "verbs": ["get", "update", "patch"]},
        {"apiGroups": ["aviary.dev"], "resources": ["analysistemplates", "clusteranalysistemplates"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["apps"], "resources": ["replicasets"], "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
        {"apiGroups": [""], "resources": ["services"], "verbs": ["get", "list", "watch", "patch"]},
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]},
        {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses"], "verbs": ["get", "list", "watch", "create", "patch"]},
        {"apiGroups": ["networking.istio.io"], "resources": ["virtualservices", "destinationrules"], "verbs": ["get", "list", "watch", "patch"]},
        {"apiGroups": ["gateway.networking.k8s.io"], "resources": ["httproutes"], "verbs": ["get", "list", "watch", "patch"]},
        {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]}
    ])
}

/// Grants the controller's rules to the `aviary-operator` user (idempotent).
pub async fn grant_rbac(client: &Client) {
    let role = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "aviary-test-controller"},
        "rules": controller_rules(),
    });
    let binding = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": "aviary-test-controller"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "aviary-test-controller"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "aviary-operator"}],
    });
    apply_value(client, None, &role)
        .await
        .expect("apply ClusterRole");
    apply_value(client, None, &binding)
        .await
        .expect("apply ClusterRoleBinding");
}

/// A running controller; killed (SIGKILL) when dropped.
pub struct ControllerProcess {
    child: Option<Child>,
    namespace: String,
    extra_args: Vec<String>,
    log: std::path::PathBuf,
    starts: u32,
}

impl ControllerProcess {
    /// Starts `target/…/aviary --namespace NS` with the operator's kubeconfig.
    pub fn start(namespace: &str) -> Self {
        Self::start_with(namespace, &[])
    }

    /// Starts the controller with extra flags (e.g. `--prometheus-address`).
    pub fn start_with(namespace: &str, extra: &[&str]) -> Self {
        let dir = super::repo_root().join("target/test-logs");
        let _ = std::fs::create_dir_all(&dir);
        let mut p = ControllerProcess {
            child: None,
            namespace: namespace.to_string(),
            extra_args: extra.iter().map(|s| s.to_string()).collect(),
            log: dir.join(format!("controller-{namespace}.log")),
            starts: 0,
        };
        p.spawn();
        p
    }

    fn spawn(&mut self) {
        let kubeconfig = std::env::var("AVIARY_OPERATOR_KUBECONFIG")
            .expect("AVIARY_OPERATOR_KUBECONFIG (from hack/cluster.sh env)");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("controller log file");
        let err = log.try_clone().expect("log handle");
        let child = Command::new(env!("CARGO_BIN_EXE_aviary"))
            .args([
                "--namespace",
                &self.namespace,
                "--kubeconfig",
                &kubeconfig,
                "--log-level",
                "info,aviary=debug",
            ])
            .args(&self.extra_args)
            .env_remove("KUBECONFIG")
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("start the aviary controller");
        self.child = Some(child);
        self.starts += 1;
    }

    /// SIGKILL: no graceful shutdown, as in a node crash or OOM kill.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// The controller's log so far (for failure messages).
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for ControllerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Installs Aviary's CRDs from `crds/`.
pub async fn install_aviary_crds(client: &Client) {
    let root = super::repo_root().join("crds");
    let files: Vec<std::path::PathBuf> = [
        "rollouts.yaml",
        "analysistemplates.yaml",
        "clusteranalysistemplates.yaml",
        "analysisruns.yaml",
    ]
    .iter()
    .map(|f| root.join(f))
    .collect();
    let refs: Vec<&std::path::Path> = files.iter().map(|p| p.as_path()).collect();
    super::install_crds(client, &refs).await;
}

/// Write requests (create/update/patch/delete) the controller's identity made, per the API
/// server's audit log, since `since` (RFC 3339 compared as text works for the same format).
pub fn controller_writes_since(since: &str) -> Vec<String> {
    let path =
        std::env::var("AVIARY_AUDIT_LOG").expect("AVIARY_AUDIT_LOG (from hack/cluster.sh env)");
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["user"]["username"] == "aviary-operator")
        .filter(|e| {
            matches!(
                e["verb"].as_str(),
                Some("create" | "update" | "patch" | "delete")
            )
        })
        .filter(|e| {
            e["requestReceivedTimestamp"]
                .as_str()
                .is_some_and(|t| t >= since)
        })
        .map(|e| {
            format!(
                "{} {}",
                e["verb"].as_str().unwrap_or(""),
                e["requestURI"].as_str().unwrap_or("")
            )
        })
        .collect()
}

/// Waits until the controller's identity can list Rollouts (RBAC propagated).
pub async fn wait_rbac(client: &Client) {
    let _ = client;
    poll_until(
        "RBAC for aviary-operator",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async {
            let out = Command::new("kubectl")
                .args([
                    "auth",
                    "can-i",
                    "list",
                    "rollouts.aviary.dev",
                    "--as",
                    "aviary-operator",
                ])
                .output()
                .ok()?;
            (String::from_utf8_lossy(&out.stdout).trim() == "yes").then_some(())
        },
    )
    .await;
}

/// Everything a controller test needs installed once: Aviary's CRDs, the upstream routing CRDs,
/// and the controller's RBAC.
pub async fn prepare(client: &Client) {
    install_aviary_crds(client).await;
    let files = [
        "istio-virtualservice.yaml",
        "istio-destinationrule.yaml",
        "gateway-api-httproutes.yaml",
    ]
    .map(super::upstream_crd);
    let refs: Vec<&std::path::Path> = files.iter().map(|p| p.as_path()).collect();
    super::install_crds(client, &refs).await;
    grant_rbac(client).await;
    wait_rbac(client).await;
}
