//! Pods on the local cluster: holding new pods back (a pool of the KWOK nodes the test's pods
//! are pinned to, cordoned and uncordoned by label) and watching a ReplicaSet's availability.

use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use kube::Client;
use kube::api::Api;
use kube::runtime::watcher;
use serde_json::{Value, json};

/// Pods only on nodes that carry a label of the test's own: its Rollout's pods select
/// `{KEY: "yes"}` and every KWOK node gets the label. Taking the label away works as a cordon
/// for this test's pods (new ones stay Pending, unschedulable; running ones stay) without
/// cordoning the nodes that tests running beside it schedule onto. Dropped: label removed.
pub struct NodePool {
    key: String,
}

impl NodePool {
    pub fn new(ns: &str) -> Self {
        let pool = NodePool {
            key: format!("e2e.aviary.dev/{ns}"),
        };
        pool.uncordon();
        pool
    }

    pub fn node_selector(&self) -> Value {
        json!({ self.key.clone(): "yes" })
    }

    fn label(&self, arg: &str) {
        let status = std::process::Command::new("kubectl")
            .args(["label", "nodes", "-l", "type=kwok", arg, "--overwrite"])
            .stdout(std::process::Stdio::null())
            .status()
            .expect("run kubectl label nodes");
        assert!(status.success(), "kubectl label nodes {arg}");
    }

    /// No new pod of the test's can be scheduled.
    pub fn cordon(&self) {
        self.label(&format!("{}-", self.key));
    }

    pub fn uncordon(&self) {
        self.label(&format!("{}=yes", self.key));
    }
}

impl Drop for NodePool {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kubectl")
            .args([
                "label",
                "nodes",
                "-l",
                "type=kwok",
                &format!("{}-", self.key),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// The available pods a watch saw on a ReplicaSet: the lowest `availableReplicas` of any
/// status it showed, and how many statuses it saw.
#[derive(Clone, Default)]
pub struct AvailabilityLog(Arc<Mutex<(Option<i32>, usize)>>);

impl AvailabilityLog {
    pub fn lowest(&self) -> Option<i32> {
        self.0.lock().ok().and_then(|l| l.0)
    }
    pub fn seen(&self) -> usize {
        self.0.lock().map(|l| l.1).unwrap_or(0)
    }
}

/// Watches a ReplicaSet (every change, not polling) and keeps the lowest availableReplicas.
pub async fn record_availability(
    client: &Client,
    ns: &str,
    name: &str,
) -> (AvailabilityLog, tokio::task::JoinHandle<()>) {
    let api: Api<ReplicaSet> = Api::namespaced(client.clone(), ns);
    let cfg = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let log = AvailabilityLog::default();
    let out = log.clone();
    let handle = tokio::spawn(async move {
        let mut stream = watcher::watcher(api, cfg).boxed();
        while let Some(ev) = stream.next().await {
            let rs = match ev {
                Ok(watcher::Event::Apply(o)) | Ok(watcher::Event::InitApply(o)) => o,
                _ => continue,
            };
            let available = rs.status.and_then(|s| s.available_replicas).unwrap_or(0);
            if let Ok(mut l) = out.0.lock() {
                l.0 = Some(l.0.map_or(available, |low: i32| low.min(available)));
                l.1 += 1;
            }
        }
    });
    (log, handle)
}

/// `kubectl aviary restart NAME` in `ns`, as an SRE runs it; panics when it fails.
pub async fn run_restart(ns: &str, name: &str) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_kubectl-aviary"))
        .args(["-n", ns, "restart", name])
        .output()
        .await
        .expect("run kubectl-aviary restart");
    assert!(
        out.status.success(),
        "kubectl aviary restart: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
