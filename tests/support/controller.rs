//! The real controller binary, run as a separate process under the `aviary-operator` identity
//! with the RBAC a cluster admin would grant it, scoped to one test namespace.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use kube::Client;
use serde_json::json;

use super::{apply_value, poll_until};

/// What the controller may do, verb by verb: the chart's rule files, the one source of the
/// rules (the chart's ClusterRole embeds `controller.yaml`, its leader-election Role
/// `leader-election.yaml`, and with job metrics on `job-metrics.yaml`). The test identity gets
/// all three, cluster-wide.
pub fn controller_rules() -> serde_json::Value {
    let mut rules = vec![];
    for file in [
        "controller.yaml",
        "leader-election.yaml",
        "job-metrics.yaml",
    ] {
        rules.extend(rule_file(file));
    }
    serde_json::Value::Array(rules)
}

/// The rules of one of the chart's rule files (`controller.yaml`, `leader-election.yaml`).
pub fn rule_file(file: &str) -> Vec<serde_json::Value> {
    let path = super::repo_root()
        .join("charts/aviary/files/rbac")
        .join(file);
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
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
    /// Distinguishes controllers of one namespace: log file and leader-election identity.
    name: String,
    extra_args: Vec<String>,
    log: std::path::PathBuf,
    starts: u32,
    /// Another identity's kubeconfig (default: the operator's).
    kubeconfig: Option<std::path::PathBuf>,
}

impl ControllerProcess {
    /// Starts `target/…/aviary --namespace NS` with the operator's kubeconfig.
    pub fn start(namespace: &str) -> Self {
        Self::start_named(namespace, "controller", &[])
    }

    /// Starts the controller with extra flags (e.g. `--prometheus-address`).
    pub fn start_with(namespace: &str, extra: &[&str]) -> Self {
        Self::start_named(namespace, "controller", extra)
    }

    /// Starts a controller named `name` (its Lease identity is `aviary-test-NAME`, kept across
    /// restarts like a pod's name) with extra flags. Metrics and probes listen on ports the OS
    /// hands out ([`Self::metrics_addr`]).
    pub fn start_named(namespace: &str, name: &str, extra_args: &[&str]) -> Self {
        let mut p = Self::unstarted(namespace, name, extra_args);
        p.spawn();
        p
    }

    fn unstarted(namespace: &str, name: &str, extra_args: &[&str]) -> Self {
        let dir = super::repo_root().join("target/test-logs");
        let _ = std::fs::create_dir_all(&dir);
        let log = if name == "controller" {
            dir.join(format!("controller-{namespace}.log"))
        } else {
            dir.join(format!("controller-{namespace}-{name}.log"))
        };
        let _ = std::fs::remove_file(&log);
        ControllerProcess {
            child: None,
            namespace: namespace.to_string(),
            name: name.to_string(),
            extra_args: extra_args.iter().map(|a| a.to_string()).collect(),
            log,
            starts: 0,
            kubeconfig: None,
        }
    }

    /// Starts a controller of every namespace (no `--namespace`), as the chart installs it, its
    /// Lease in `lease_namespace`.
    pub fn start_cluster_wide(name: &str, lease_namespace: &str, extra_args: &[&str]) -> Self {
        let mut args = vec!["--leader-elect-namespace", lease_namespace];
        args.extend_from_slice(extra_args);
        Self::start_named("", name, &args)
    }

    /// Starts a controller named `name` as the identity of `kubeconfig`, with `args` alone
    /// choosing what it watches (`--namespace`) and where its Lease is.
    pub fn start_as(name: &str, kubeconfig: std::path::PathBuf, args: &[&str]) -> Self {
        let mut p = Self::unstarted("", name, args);
        p.kubeconfig = Some(kubeconfig);
        p.spawn();
        p
    }

    /// The Lease identity of this controller.
    pub fn identity(&self) -> String {
        format!("aviary-test-{}", self.name)
    }

    fn spawn(&mut self) {
        let kubeconfig = match &self.kubeconfig {
            Some(path) => path.display().to_string(),
            None => std::env::var("AVIARY_OPERATOR_KUBECONFIG")
                .expect("AVIARY_OPERATOR_KUBECONFIG (from hack/cluster.sh env)"),
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("controller log file");
        let err = log.try_clone().expect("log handle");
        // An empty namespace: every namespace.
        let scope: &[&str] = if self.namespace.is_empty() {
            &[]
        } else {
            &["--namespace", &self.namespace]
        };
        let child = Command::new(env!("CARGO_BIN_EXE_aviary"))
            .args(scope)
            .args([
                "--kubeconfig",
                &kubeconfig,
                "--log-level",
                "info,aviary=debug",
                "--metrics-addr",
                "127.0.0.1:0",
                "--health-addr",
                "127.0.0.1:0",
                "--leader-elect-identity",
                &self.identity(),
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

    /// Sends `signal` (`STOP`, `CONT`, …) to the process, as `kill -SIGNAL` does.
    pub fn signal(&self, signal: &str) {
        let pid = self
            .child
            .as_ref()
            .map(|c| c.id())
            .expect("a running controller");
        let status = Command::new("kill")
            .args([format!("-{signal}"), pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {pid}");
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

    /// SIGTERM, as the kubelet sends at pod deletion; waits (up to `timeout`) for the exit and
    /// returns its status.
    pub fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if std::time::Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the process still runs.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The address `/metrics` listens on (from the controller's log), waiting for it.
    pub async fn metrics_addr(&self) -> std::net::SocketAddr {
        self.logged_addr("serving /metrics").await
    }

    /// The address `/healthz` and `/readyz` listen on.
    pub async fn health_addr(&self) -> std::net::SocketAddr {
        self.logged_addr("serving /healthz").await
    }

    async fn logged_addr(&self, marker: &str) -> std::net::SocketAddr {
        let log = self.log.clone();
        let starts = self.starts;
        poll_until(
            &format!("controller log line '{marker}'"),
            Duration::from_secs(30),
            Duration::from_millis(50),
            || {
                let log = log.clone();
                async move {
                    let text = std::fs::read_to_string(&log).ok()?;
                    // The newest start's line (a restart appends to the log).
                    let line = text
                        .lines()
                        .filter(|l| l.contains(marker))
                        .nth(starts.saturating_sub(1) as usize)?;
                    let at = line.split("address=").nth(1)?;
                    at.split_whitespace().next()?.parse().ok()
                }
            },
        )
        .await
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
/// Leader-Lease renewals are left out: they are the leader's heartbeat (one every retry period,
/// whatever the rollouts do), not writes about any rollout.
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
        .filter(|e| e["objectRef"]["resource"] != "leases")
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

/// Write requests the controller's identity made in namespace `ns` with a request time in
/// `[from, to]`, per the API server's audit log (times parsed, not compared as text).
pub fn controller_writes_between(
    ns: &str,
    from: k8s_openapi::jiff::Timestamp,
    to: k8s_openapi::jiff::Timestamp,
) -> Vec<String> {
    let path =
        std::env::var("AVIARY_AUDIT_LOG").expect("AVIARY_AUDIT_LOG (from hack/cluster.sh env)");
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["user"]["username"] == "aviary-operator")
        .filter(|e| e["objectRef"]["namespace"] == ns)
        .filter(|e| {
            matches!(
                e["verb"].as_str(),
                Some("create" | "update" | "patch" | "delete")
            )
        })
        .filter(|e| {
            e["requestReceivedTimestamp"]
                .as_str()
                .and_then(|t| t.parse::<k8s_openapi::jiff::Timestamp>().ok())
                .is_some_and(|t| t >= from && t <= to)
        })
        .map(|e| {
            format!(
                "{} {} at {}",
                e["verb"].as_str().unwrap_or(""),
                e["requestURI"].as_str().unwrap_or(""),
                e["requestReceivedTimestamp"].as_str().unwrap_or("")
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
