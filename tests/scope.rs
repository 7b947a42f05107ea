//! Multi-namespace mode on the real cluster: a controller given `--namespace a,b` and a Role in
//! each of those namespaces only (no ClusterRole) rolls out there, leaves every other
//! namespace alone, and makes no request outside its namespaces. Its own test binary: the
//! identity is a ServiceAccount of the fixed namespace `aviary-scoped`, whose requests the
//! cluster's audit policy records (hack/cluster.sh).

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use support::controller::{ControllerProcess, rule_file};
use support::{TestNamespace, apply_value, client, poll_until};

use aviary::api::Rollout;

/// The controller's own namespace: its ServiceAccount and its Lease.
const HOME: &str = "aviary-scoped";
const SA: &str = "aviary";

fn rollout(image: &str) -> Value {
    json!({
        "apiVersion": "aviary.dev/v1alpha1", "kind": "Rollout", "metadata": {"name": "web"},
        "spec": {"replicas": 1,
                 "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": image}]}},
                 "strategy": {"canary": {}}},
    })
}

/// Binds the rules of the chart's `file` to the ServiceAccount in `ns`, as the chart's
/// namespaced mode does.
async fn grant(client: &Client, ns: &str, role: &str, file: &str) {
    let r = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": role},
        "rules": rule_file(file),
    });
    let b = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": role},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
        "subjects": [{"kind": "ServiceAccount", "name": SA, "namespace": HOME}],
    });
    apply_value(client, Some(ns), &r).await.expect("Role");
    apply_value(client, Some(ns), &b)
        .await
        .expect("RoleBinding");
}

/// A kubeconfig of the operator's cluster with a token of the ServiceAccount.
async fn kubeconfig(client: &Client) -> std::path::PathBuf {
    let token = support::service_account_token(client, HOME, SA).await;
    let base = std::env::var("AVIARY_OPERATOR_KUBECONFIG")
        .expect("AVIARY_OPERATOR_KUBECONFIG (from hack/cluster.sh env)");
    let mut config: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(base).expect("read kubeconfig"))
            .expect("kubeconfig");
    config["users"][0]["user"]["token"] = serde_yaml::Value::String(token);
    let dir = support::repo_root().join("target/test-logs");
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("scoped.kubeconfig");
    std::fs::write(&path, serde_yaml::to_string(&config).expect("yaml")).expect("write");
    path
}

async fn healthy_at(api: &Api<Rollout>, generation: i64) {
    poll_until(
        &format!("Rollout Healthy at generation {generation}"),
        Duration::from_secs(90),
        Duration::from_millis(200),
        || async move {
            let ro = api.get("web").await.ok()?;
            let status = ro.status.as_ref()?;
            (status.observed_generation == Some(generation)
                && status.phase == Some(aviary::api::RolloutPhase::Healthy)
                && status.stable_rs.is_some()
                && status.stable_rs == status.current_pod_hash)
                .then_some(())
        },
    )
    .await;
}

/// Given a ServiceAccount with the chart's controller Role in namespaces A and B only (its
/// leader-election Role in its own), and a Rollout in each of A, B and C: a controller started
/// with `--namespace A,B` brings A's and B's Rollouts to Healthy and rolls A's update out, while
/// C's Rollout gets no status and no ReplicaSet. Per the API server's audit log, every request
/// it made that names a namespace names A, B or its own, and none was forbidden. Before
/// `--namespace` took a list, the controller could watch one namespace, or every one with a
/// ClusterRole.
#[tokio::test]
async fn a_controller_of_listed_namespaces_works_there_with_roles_alone() {
    let client = client().await;
    support::controller::install_aviary_crds(&client).await;
    apply_value(
        &client,
        None,
        &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": HOME}}),
    )
    .await
    .expect("home namespace");
    apply_value(
        &client,
        Some(HOME),
        &json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": SA}}),
    )
    .await
    .expect("ServiceAccount");
    let a = TestNamespace::new(&client, "scope-a").await;
    let b = TestNamespace::new(&client, "scope-b").await;
    let c = TestNamespace::new(&client, "scope-c").await;
    for ns in [&a.name, &b.name] {
        grant(&client, ns, "aviary-controller", "controller.yaml").await;
    }
    grant(
        &client,
        HOME,
        "aviary-leader-election",
        "leader-election.yaml",
    )
    .await;
    let config = kubeconfig(&client).await;
    let started = k8s_openapi::jiff::Timestamp::now();
    for ns in [&a.name, &b.name, &c.name] {
        apply_value(&client, Some(ns), &rollout("web:1"))
            .await
            .expect("Rollout");
    }

    let listed = format!("{},{}", a.name, b.name);
    let _ctl = ControllerProcess::start_as(
        "scoped",
        config,
        &["--namespace", &listed, "--leader-elect-namespace", HOME],
    );
    let api = |ns: &str| Api::<Rollout>::namespaced(client.clone(), ns);
    healthy_at(&api(&a.name), 1).await;
    healthy_at(&api(&b.name), 1).await;
    api(&a.name)
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"template": {"spec": {"containers": [
                {"name": "web", "image": "web:2"}]}}}})),
        )
        .await
        .expect("update A");
    healthy_at(&api(&a.name), 2).await;

    // By now the controller has listed every namespace it watches and reconciled all it found.
    let c_rollout = api(&c.name).get("web").await.expect("C's Rollout");
    assert!(c_rollout.status.is_none(), "{:?}", c_rollout.status);
    let c_sets = Api::<ReplicaSet>::namespaced(client.clone(), &c.name)
        .list(&ListParams::default())
        .await
        .expect("list C's ReplicaSets");
    assert!(
        c_sets.items.is_empty(),
        "{:?}",
        c_sets
            .items
            .iter()
            .map(|r| r.name_any())
            .collect::<Vec<_>>()
    );

    let requests = scoped_requests(started);
    assert!(
        !requests.is_empty(),
        "no audit record of the ServiceAccount (was the cluster started before hack/cluster.sh audited group system:serviceaccounts:{HOME}? restart it)"
    );
    let allowed: BTreeSet<&str> = [a.name.as_str(), b.name.as_str(), HOME].into();
    let outside: Vec<_> = requests
        .iter()
        .filter(|r| {
            r.resource.is_some()
                && !r
                    .namespace
                    .as_deref()
                    .is_some_and(|ns| allowed.contains(ns))
        })
        .collect();
    assert!(
        outside.is_empty(),
        "requests outside A, B and its own namespace: {outside:#?}"
    );
    let forbidden: Vec<_> = requests.iter().filter(|r| r.code == 403).collect();
    assert!(forbidden.is_empty(), "forbidden: {forbidden:#?}");
    println!(
        "{} requests by the scoped controller, all in {}, {} or {HOME}",
        requests.len(),
        a.name,
        b.name
    );
}

#[derive(Debug)]
#[allow(dead_code)] // read by Debug in failure messages
struct Request {
    verb: String,
    uri: String,
    resource: Option<String>,
    namespace: Option<String>,
    code: i64,
}

/// Requests of the ServiceAccount received since `from`, per the audit log.
fn scoped_requests(from: k8s_openapi::jiff::Timestamp) -> Vec<Request> {
    let path =
        std::env::var("AVIARY_AUDIT_LOG").expect("AVIARY_AUDIT_LOG (from hack/cluster.sh env)");
    let user = format!("system:serviceaccount:{HOME}:{SA}");
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["user"]["username"] == user.as_str())
        .filter(|e| {
            e["requestReceivedTimestamp"]
                .as_str()
                .and_then(|t| t.parse::<k8s_openapi::jiff::Timestamp>().ok())
                .is_some_and(|t| t >= from)
        })
        .map(|e| Request {
            verb: e["verb"].as_str().unwrap_or_default().to_string(),
            uri: e["requestURI"].as_str().unwrap_or_default().to_string(),
            resource: e["objectRef"]["resource"].as_str().map(str::to_string),
            namespace: e["objectRef"]["namespace"].as_str().map(str::to_string),
            code: e["responseStatus"]["code"].as_i64().unwrap_or_default(),
        })
        .collect()
}
