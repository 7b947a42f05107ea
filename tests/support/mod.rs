//! Test harness for tests against the real local cluster (`hack/cluster.sh`).
//!
//! Tests get a `kube::Client` from `KUBECONFIG` (exported by `hack/cluster.sh env`), their own
//! namespace (deleted when the guard drops), CRD installation that waits for `Established`, and
//! [`poll_until`], the only way a test waits: for a condition, with a deadline, never a bare sleep.
#![allow(dead_code)]

pub mod controller;
pub mod exporter;
pub mod helm;
pub mod pods;
pub mod scrape;
pub mod webhook;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::pinned_kind;
use kube::{Client, ResourceExt};

pub const FIELD_MANAGER: &str = "aviary-test";

/// Runs `program` with `args`, `input` on its standard input; its standard output. Panics with
/// its standard error when it fails. The input is written from a thread: a tool that answers as
/// it reads would otherwise block on a full pipe.
pub fn run_with_input(program: &Path, args: &[&str], input: &str) -> String {
    use std::io::Write as _;
    use std::process::{Command, Stdio};
    let name = program.display();
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {name}: {e}"));
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_string();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().expect("wait");
    writer.join().expect("writer").expect("write the input");
    assert!(
        out.status.success(),
        "{name} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// A client for the local cluster. Panics with the fix when no cluster is configured: a test that
/// needs the cluster must fail loudly rather than pass without it.
pub async fn client() -> Client {
    if std::env::var_os("KUBECONFIG").is_none() {
        panic!(
            "KUBECONFIG is not set: these tests need the local cluster. \
             Run `make test`, or `hack/cluster.sh up && eval \"$(hack/cluster.sh env)\"`"
        );
    }
    Client::try_default()
        .await
        .expect("cannot build a client from KUBECONFIG")
}

/// The repository root (where Cargo.toml is).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `../shared` beside the repository, or `AVIARY_SHARED`.
pub fn shared_dir() -> PathBuf {
    std::env::var_os("AVIARY_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("../shared"))
}

/// Polls `check` every `every` until it yields `Some`, or panics naming `what` after `timeout`.
pub async fn poll_until<T, F, Fut>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut check: F,
) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(every).await;
    }
}

static NS_COUNTER: AtomicU32 = AtomicU32::new(0);

/// A namespace of the test's own, deleted (without waiting) when dropped.
pub struct TestNamespace {
    pub name: String,
}

impl TestNamespace {
    pub async fn new(client: &Client, prefix: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let n = NS_COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("{prefix}-{:x}{n}", nanos % 0xfffff);
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": {"aviary.dev/test": "true"}}
        }))
        .expect("namespace manifest");
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .unwrap_or_else(|e| panic!("create namespace {name}: {e}"));
        // Pods are rejected until the namespace's `default` ServiceAccount exists.
        let sa: Api<k8s_openapi::api::core::v1::ServiceAccount> =
            Api::namespaced(client.clone(), &name);
        poll_until(
            "default ServiceAccount",
            Duration::from_secs(30),
            Duration::from_millis(100),
            || {
                let sa = sa.clone();
                async move { sa.get_opt("default").await.ok().flatten().map(|_| ()) }
            },
        )
        .await;
        TestNamespace { name }
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if std::env::var_os("AVIARY_KEEP_NAMESPACES").is_some() {
            return;
        }
        // Drop can't await; kubectl (on PATH from `hack/cluster.sh env`) deletes without waiting.
        // The test's controller is usually gone by now, so nobody would remove the route-cleanup
        // finalizer of its Rollouts and the namespace would stay Terminating: release them first.
        release_rollouts(&self.name);
        let _ = std::process::Command::new("kubectl")
            .args([
                "delete",
                "namespace",
                &self.name,
                "--wait=false",
                "--ignore-not-found",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// Removes the finalizers of every Rollout in `ns` (kubectl; errors ignored: the CRD may not be
/// installed). For test teardown only: it skips the controller's cleanup of routing objects.
pub fn release_rollouts(ns: &str) {
    let Ok(out) = std::process::Command::new("kubectl")
        .args(["get", "rollouts.aviary.dev", "-n", ns, "-o", "name"])
        .stderr(std::process::Stdio::null())
        .output()
    else {
        return;
    };
    for name in String::from_utf8_lossy(&out.stdout).lines() {
        let _ = std::process::Command::new("kubectl")
            .args([
                "patch",
                name,
                "-n",
                ns,
                "--type=merge",
                "-p",
                r#"{"metadata":{"finalizers":null}}"#,
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// Splits a multi-document YAML string into JSON values, skipping empty documents.
pub fn yaml_documents(text: &str) -> Vec<serde_json::Value> {
    use serde::Deserialize;
    serde_yaml::Deserializer::from_str(text)
        .filter_map(|doc| {
            let v = serde_json::Value::deserialize(doc).expect("valid YAML document");
            (!v.is_null()).then_some(v)
        })
        .collect()
}

/// Server-side applies one object as it stands (namespaced objects go to `ns` unless they name
/// one). Returns the API server's answer, so tests can assert on rejections.
pub async fn apply_value(
    client: &Client,
    ns: Option<&str>,
    value: &serde_json::Value,
) -> Result<DynamicObject, kube::Error> {
    let obj: DynamicObject =
        serde_json::from_value(value.clone()).expect("object with apiVersion/kind/metadata");
    let tm = obj.types.clone().expect("apiVersion and kind");
    let (group, version) = match tm.api_version.split_once('/') {
        Some((g, v)) => (g.to_string(), v.to_string()),
        None => (String::new(), tm.api_version.clone()),
    };
    let gvk = GroupVersionKind::gvk(&group, &version, &tm.kind);
    let (ar, caps) = pinned_kind(client, &gvk).await?;
    let api: Api<DynamicObject> = if caps.scope == kube::discovery::Scope::Namespaced {
        let ns = obj
            .namespace()
            .or(ns.map(str::to_string))
            .unwrap_or_else(|| "default".into());
        Api::namespaced_with(client.clone(), &ns, &ar)
    } else {
        Api::all_with(client.clone(), &ar)
    };
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    api.patch(&obj.name_any(), &pp, &Patch::Apply(value)).await
}

/// Server-side applies every document of a YAML file or string.
pub async fn apply_yaml(client: &Client, ns: Option<&str>, text: &str) -> Vec<DynamicObject> {
    let mut out = Vec::new();
    for doc in yaml_documents(text) {
        let applied = apply_value(client, ns, &doc)
            .await
            .unwrap_or_else(|e| panic!("apply {}: {e}", doc["metadata"]["name"]));
        out.push(applied);
    }
    out
}

/// Installs CRDs from YAML files (server-side apply, idempotent) and waits until each is
/// Established and served by discovery.
pub async fn install_crds(client: &Client, files: &[&Path]) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for file in files {
        let text = std::fs::read_to_string(file)
            .unwrap_or_else(|e| panic!("read {}: {e}", file.display()));
        for doc in yaml_documents(&text) {
            let name = doc["metadata"]["name"]
                .as_str()
                .expect("CRD name")
                .to_string();
            crds.patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&doc),
            )
            .await
            .unwrap_or_else(|e| panic!("install CRD {name}: {e}"));
            poll_until(
                &format!("CRD {name} Established"),
                Duration::from_secs(60),
                Duration::from_millis(100),
                || {
                    let crds = crds.clone();
                    let name = name.clone();
                    async move {
                        let crd = crds.get(&name).await.ok()?;
                        let established = crd
                            .status?
                            .conditions?
                            .iter()
                            .any(|c| c.type_ == "Established" && c.status == "True");
                        established.then_some(())
                    }
                },
            )
            .await;
        }
    }
}

/// The upstream CRDs shipped in `../shared/fixtures/crds/` (Istio, Gateway API, ServiceMonitor).
pub fn upstream_crd(file: &str) -> PathBuf {
    shared_dir().join("fixtures/crds").join(file)
}

/// Deletes a namespaced object by kind, ignoring "not found".
pub async fn delete_dynamic(api: &Api<DynamicObject>, name: &str) {
    let _ = api.delete(name, &DeleteParams::default()).await;
}

/// Runs an instant PromQL query and returns the values of the result's samples
/// (scalar → one value, vector → one per series).
pub async fn prom_query(query: &str) -> Result<Vec<f64>, String> {
    let url = std::env::var("AVIARY_PROMETHEUS_URL")
        .map_err(|_| "AVIARY_PROMETHEUS_URL is not set".to_string())?;
    let client: prometheus_http_query::Client = url.parse().map_err(|e| format!("{e}"))?;
    let res = client
        .query(query)
        .get()
        .await
        .map_err(|e| format!("{e}"))?;
    Ok(match res.data() {
        prometheus_http_query::response::Data::Scalar(s) => vec![s.value()],
        prometheus_http_query::response::Data::Vector(v) => {
            v.iter().map(|s| s.sample().value()).collect()
        }
        prometheus_http_query::response::Data::Matrix(m) => m
            .iter()
            .flat_map(|r| r.samples().iter().map(|s| s.value()))
            .collect(),
    })
}

/// The (reason, note) of every Event about the named object in a namespace.
pub async fn events_for(client: &Client, ns: &str, name: &str) -> Vec<(String, String)> {
    let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), ns);
    let list = api
        .list(&kube::api::ListParams::default().fields(&format!("regarding.name={name}")))
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    list.into_iter()
        .map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
        .collect()
}

/// Waits until an Event about the named object matches `matches(reason, note)`. Events are
/// posted just after the status write they report, so a test that has seen the status polls
/// for them (10 s) rather than reading them once.
pub async fn wait_for_event(
    client: &Client,
    ns: &str,
    name: &str,
    what: &str,
    matches: impl Fn(&str, &str) -> bool,
) {
    poll_until(
        what,
        Duration::from_secs(10),
        Duration::from_millis(100),
        || async {
            events_for(client, ns, name)
                .await
                .iter()
                .any(|(reason, note)| matches(reason, note))
                .then_some(())
        },
    )
    .await;
}

/// A token of ServiceAccount `ns/sa`, valid for an hour (a TokenRequest, as the kubelet makes
/// for a pod).
pub async fn service_account_token(client: &Client, ns: &str, sa: &str) -> String {
    use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
    use k8s_openapi::api::core::v1::ServiceAccount;
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec![],
            expiration_seconds: Some(3600),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .create_token_request(sa, &PostParams::default(), &request)
        .await
        .expect("token request")
        .status
        .expect("token")
        .token
}
