//! The controller's OCI image (`make image`, hack/image/) run for real by a container runtime, as
//! the chart runs it: read-only root filesystem, uid/gid 65532, no capabilities, the args of the
//! Deployment the chart installed, the ServiceAccount token the kubelet would mount, and the
//! API server and Prometheus of the local cluster reached over the host's network. A canary
//! walks to Healthy through a Prometheus analysis, an update whose analysis fails is aborted
//! back to stable, and the probes and metrics answer from outside the container.
//!
//! Skipped, with the reason printed, where no container runtime can run a container here
//! (podman exits 125 before the image's process starts). An image that is missing fails when
//! `AVIARY_REQUIRE_IMAGE` is set (`make test` builds it first), and is skipped otherwise.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use aviary::api::{Rollout, RolloutPhase};
use k8s_openapi::api::apps::v1::ReplicaSet;
use kube::api::{Api, ListParams};
use serde_json::{Value, json};
use support::helm::Release;
use support::scrape::{probe, scrape, sum};
use support::{TestNamespace, apply_value, client, poll_until, repo_root};

/// `hack/image/podman.sh`: podman with the settings that work on this project's machines.
fn podman() -> Command {
    let mut cmd = Command::new("bash");
    cmd.arg(repo_root().join("hack/image/podman.sh"));
    cmd
}

/// The built image as podman names an OCI layout: `oci:DIR:TAG`; `None` (with the reason
/// printed) when the test must be skipped.
fn image() -> Option<String> {
    let layout = std::env::var("AVIARY_IMAGE_LAYOUT")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo_root().join("target/image/oci"));
    let reference = format!("oci:{}:{}", layout.display(), env!("CARGO_PKG_VERSION"));
    if !layout.join("index.json").is_file() {
        let why = format!(
            "no image at {} (build it with `make image`)",
            layout.display()
        );
        assert!(std::env::var_os("AVIARY_REQUIRE_IMAGE").is_none(), "{why}");
        println!("SKIPPED: {why}");
        return None;
    }
    // The image's own answer to --version; 125 is podman's failure before the process starts.
    let out = podman()
        .args(["run", "--rm", "--read-only", &reference, "--version"])
        .output()
        .expect("run hack/image/podman.sh");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    if out.status.code() == Some(125) {
        println!("SKIPPED: no container runtime can run a container here: {stderr}");
        return None;
    }
    assert!(
        out.status.success(),
        "the image's --version failed: {stdout}{stderr}"
    );
    // The binary says which commit it is, and the image was built from this one.
    let revision = git_revision();
    assert!(
        stdout.starts_with(&format!("aviary {} (revision ", env!("CARGO_PKG_VERSION"))),
        "{stdout}"
    );
    if let Some(rev) = revision {
        assert!(
            stdout.contains(&rev),
            "the image is of another commit (make image again): {stdout}"
        );
    }
    Some(reference)
}

fn git_revision() -> Option<String> {
    let out = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(repo_root())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// A controller container; removed when dropped.
struct Container {
    name: String,
}

impl Container {
    fn logs(&self) -> String {
        let out = podman()
            .args(["logs", &self.name])
            .output()
            .expect("podman logs");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// The address a JSON log line with `message` names (`address`), waiting for it.
    async fn logged_addr(&self, message: &str) -> std::net::SocketAddr {
        poll_until(
            &format!("the container logs '{message}'"),
            Duration::from_secs(30),
            Duration::from_millis(100),
            || async {
                self.logs().lines().find_map(|l| {
                    let v: Value = serde_json::from_str(l).ok()?;
                    (v["fields"]["message"] == message)
                        .then(|| v["fields"]["address"].as_str()?.parse().ok())
                        .flatten()
                })
            },
        )
        .await
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman().args(["rm", "-f", "-t", "0", &self.name]).output();
    }
}

/// The files the kubelet mounts at /var/run/secrets/kubernetes.io/serviceaccount for `sa`: a
/// token, the cluster's CA and the namespace, readable by uid 65532.
async fn service_account_dir(client: &kube::Client, ns: &str, sa: &str) -> PathBuf {
    let token = support::service_account_token(client, ns, sa).await;
    let dir = repo_root()
        .join("target/test-logs")
        .join(format!("sa-{ns}"));
    std::fs::create_dir_all(&dir).expect("dir");
    let (_, ca) = api_server();
    std::fs::copy(&ca, dir.join("ca.crt")).expect("copy the CA");
    std::fs::write(dir.join("token"), token).expect("token");
    std::fs::write(dir.join("namespace"), ns).expect("namespace");
    use std::os::unix::fs::PermissionsExt;
    for f in ["ca.crt", "token", "namespace"] {
        std::fs::set_permissions(dir.join(f), std::fs::Permissions::from_mode(0o644))
            .expect("chmod");
    }
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    dir
}

/// The API server's port and CA file, from the cluster's kubeconfig.
fn api_server() -> (u16, PathBuf) {
    let path = std::env::var("AVIARY_OPERATOR_KUBECONFIG")
        .expect("AVIARY_OPERATOR_KUBECONFIG (from hack/cluster.sh env)");
    let config: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(path).expect("kubeconfig")).expect("yaml");
    let cluster = &config["clusters"][0]["cluster"];
    let server = cluster["server"].as_str().expect("server");
    let port = server
        .rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .expect("port");
    let ca = PathBuf::from(cluster["certificate-authority"].as_str().expect("CA file"));
    (port, ca)
}

/// Starts `image` as the chart's pod would run it, with the chart's `args` (the listen addresses
/// moved to ports the OS hands out: the host's network is shared).
fn start(image: &str, name: &str, ns: &str, sa_dir: &Path, args: &[String]) -> Container {
    let (port, _) = api_server();
    let args: Vec<String> = args
        .iter()
        .map(|a| {
            if a.starts_with("--metrics-addr=") {
                "--metrics-addr=127.0.0.1:0".to_string()
            } else if a.starts_with("--health-addr=") {
                "--health-addr=127.0.0.1:0".to_string()
            } else {
                a.clone()
            }
        })
        .collect();
    let container = Container {
        name: name.to_string(),
    };
    let out = podman()
        .args(["run", "-d", "--name", name])
        .args(["--read-only", "--user", "65532:65532", "--cap-drop", "ALL"])
        .args(["--security-opt", "no-new-privileges", "--network", "host"])
        .args([
            "-e",
            &format!("POD_NAME={name}"),
            "-e",
            &format!("POD_NAMESPACE={ns}"),
        ])
        .args(["-e", "KUBERNETES_SERVICE_HOST=127.0.0.1"])
        .args(["-e", &format!("KUBERNETES_SERVICE_PORT={port}")])
        .args(["-v"])
        .arg(format!(
            "{}:/var/run/secrets/kubernetes.io/serviceaccount:ro",
            sa_dir.display()
        ))
        .arg(image)
        .args(&args)
        .output()
        .expect("podman run");
    assert!(
        out.status.success(),
        "podman run: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    container
}

fn template() -> Value {
    json!({
        "apiVersion": "aviary.dev/v1alpha1", "kind": "AnalysisTemplate", "metadata": {"name": "check"},
        "spec": {
            "args": [{"name": "query"}],
            "metrics": [{
                "name": "check", "count": 1, "failureLimit": 0,
                "successCondition": "result[0] == 1",
                // No address: the controller's --prometheus-address (the chart's value).
                "provider": {"prometheus": {"query": "{{args.query}}"}}
            }]
        }
    })
}

fn rollout(image: &str, query: &str) -> Value {
    json!({
        "apiVersion": "aviary.dev/v1alpha1", "kind": "Rollout", "metadata": {"name": "web"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                         "spec": {"containers": [{"name": "web", "image": image}]}},
            "strategy": {"canary": {"steps": [
                {"setWeight": 50},
                {"analysis": {"templates": [{"templateName": "check"}],
                              "args": [{"name": "query", "value": query}]}}
            ]}}
        }
    })
}

async fn phase_is(api: &Api<Rollout>, want: RolloutPhase, what: &str) -> Rollout {
    poll_until(
        what,
        Duration::from_secs(120),
        Duration::from_millis(250),
        || async {
            let ro = api.get("web").await.ok()?;
            let st = ro.status.as_ref()?;
            (st.phase == Some(want) && st.observed_generation == ro.metadata.generation)
                .then_some(ro.clone())
        },
    )
    .await
}

/// Given the image built by `make image` and the chart installed (its Deployment's pods are
/// KWOK's, which run nothing), when the image runs as that Deployment's container would, then
/// it leads, walks a canary through a Prometheus analysis to Healthy, aborts an update whose
/// analysis fails back to the stable revision, and answers /healthz, /readyz and /metrics.
#[tokio::test]
async fn the_image_runs_as_the_chart_runs_it() {
    let Some(image) = image() else {
        return;
    };
    let client = client().await;
    support::controller::install_aviary_crds(&client).await;
    let ns = TestNamespace::new(&client, "image").await;
    let prometheus = std::env::var("AVIARY_PROMETHEUS_URL")
        .expect("AVIARY_PROMETHEUS_URL (from hack/cluster.sh env)");
    let release = Release::install(
        &ns.name,
        &ns.name,
        &[
            "controller.replicas=1",
            &format!("controller.prometheusAddress={prometheus}"),
        ],
    );
    let full = format!("{}-aviary", release.name);
    let args = support::helm::controller_container(&client, &ns.name, &full)
        .await
        .args
        .expect("args");
    let sa_dir = service_account_dir(&client, &ns.name, &full).await;
    let ctl = start(
        &image,
        &format!("aviary-{}", ns.name),
        &ns.name,
        &sa_dir,
        &args,
    );

    let health = ctl.logged_addr("serving /healthz and /readyz").await;
    let metrics = ctl.logged_addr("serving /metrics").await;
    poll_until(
        "/readyz answers 200 from outside the container",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || async { (probe(health, "/readyz").await == Some(200)).then_some(()) },
    )
    .await;
    assert_eq!(probe(health, "/healthz").await, Some(200));
    poll_until(
        "the container leads",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || async {
            let s = scrape(metrics).await?;
            (sum(&s, "aviary_leader", &[]) == 1.0).then_some(())
        },
    )
    .await;

    apply_value(&client, Some(&ns.name), &template())
        .await
        .expect("template");
    let rollouts: Api<Rollout> = Api::namespaced(client.clone(), &ns.name);
    apply_value(&client, Some(&ns.name), &rollout("web:1", "vector(1)"))
        .await
        .expect("v1");
    phase_is(&rollouts, RolloutPhase::Healthy, "v1 Healthy").await;
    apply_value(&client, Some(&ns.name), &rollout("web:2", "vector(1)"))
        .await
        .expect("v2");
    let v2 = phase_is(
        &rollouts,
        RolloutPhase::Healthy,
        "v2 Healthy through its analysis",
    )
    .await;
    let stable = v2.status.as_ref().and_then(|s| s.stable_rs.clone());
    assert_eq!(
        stable,
        v2.status.as_ref().and_then(|s| s.current_pod_hash.clone()),
        "v2 is stable"
    );

    // An update whose analysis fails: aborted, and the stable revision is whole again.
    apply_value(&client, Some(&ns.name), &rollout("web:3", "vector(0)"))
        .await
        .expect("v3");
    let aborted = phase_is(
        &rollouts,
        RolloutPhase::Degraded,
        "v3 aborted by its analysis",
    )
    .await;
    let st = aborted.status.clone().unwrap_or_default();
    assert_eq!(st.stable_rs, stable, "the stable revision stays v2");
    let rs: Api<ReplicaSet> = Api::namespaced(client.clone(), &ns.name);
    poll_until(
        "v2 whole and v3 scaled away",
        Duration::from_secs(90),
        Duration::from_millis(250),
        || async {
            let list = rs.list(&ListParams::default()).await.ok()?;
            let replicas = |hash: &str| {
                list.items
                    .iter()
                    .find(|r| {
                        r.metadata
                            .name
                            .as_deref()
                            .is_some_and(|n| n.ends_with(hash))
                    })
                    .and_then(|r| r.status.as_ref())
                    .map(|s| (s.replicas, s.available_replicas.unwrap_or(0)))
            };
            let stable = replicas(stable.as_deref()?)?;
            let canary = replicas(st.current_pod_hash.as_deref()?)?;
            (stable == (2, 2) && canary.0 == 0).then_some(())
        },
    )
    .await;

    // /metrics from outside: the reconciles, the failed analysis, the build.
    let s = scrape(metrics).await.expect("/metrics");
    assert!(sum(&s, "aviary_reconciles_total", &[]) > 0.0);
    let revision = git_revision().unwrap_or_else(|| "unknown".into());
    assert_eq!(
        sum(
            &s,
            "aviary_build_info",
            &[
                ("version", env!("CARGO_PKG_VERSION")),
                ("revision", revision.as_str())
            ]
        ),
        1.0,
        "{}",
        ctl.logs()
    );
}
