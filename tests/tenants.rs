//! Shared clusters on the real cluster: one tenant's slow analysis never holds back another's.
//! A cluster-wide controller, as the chart installs it; its own test binary, so no other
//! test's controller runs beside it.

mod support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use aviary::api::{AnalysisPhase, AnalysisRun};
use kube::api::Api;
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use support::controller::ControllerProcess;
use support::webhook::hanging_server;
use support::{TestNamespace, apply_value, client, poll_until};

/// A paused Rollout to own the runs (the controller runs only its Rollouts' AnalysisRuns).
async fn owner(client: &Client, ns: &str) -> Value {
    let ro = json!({
        "apiVersion": "aviary.dev/v1alpha1", "kind": "Rollout", "metadata": {"name": "owner"},
        "spec": {"replicas": 0, "paused": true,
                 "selector": {"matchLabels": {"app": "owner"}},
                 "template": {"metadata": {"labels": {"app": "owner"}},
                              "spec": {"containers": [{"name": "c", "image": "owner:1"}]}},
                 "strategy": {"canary": {}}},
    });
    let created = apply_value(client, Some(ns), &ro)
        .await
        .expect("owner Rollout");
    json!([{"apiVersion": "aviary.dev/v1alpha1", "kind": "Rollout", "name": "owner",
            "uid": created.uid().unwrap_or_default(), "controller": true}])
}

fn run(name: &str, owners: &Value, provider: Value) -> Value {
    json!({
        "apiVersion": "aviary.dev/v1alpha1", "kind": "AnalysisRun",
        "metadata": {"name": name, "ownerReferences": owners},
        "spec": {"metrics": [{"name": "m", "successCondition": "result == 1",
                              "provider": provider}]},
    })
}

/// A4: given a controller of 4 slots (a namespace's share: 1) and a tenant whose 4 runs wait on a
/// provider that never answers (timeout 60 s), another tenant's run still gets its verdict at
/// once. Before, the slow tenant held every slot and the other's verdict — and any abort it
/// would trigger — waited for the 60 s timeouts. The wait is printed.
#[tokio::test]
async fn a_slow_tenant_does_not_hold_back_another_tenant_s_analysis() {
    let client = client().await;
    support::controller::prepare(&client).await;
    let slow_ns = TestNamespace::new(&client, "tenant-slow").await;
    let quick_ns = TestNamespace::new(&client, "tenant-quick").await;
    let (slow, accepted) = hanging_server().await;
    let receiver = support::webhook::WebhookReceiver::start().await;
    receiver.serve_document(json!({"ok": 1}));

    // 4 slots: a namespace's share is 1.
    let ctl =
        ControllerProcess::start_cluster_wide("tenants", &quick_ns.name, &["--concurrency", "4"]);
    let slow_owner = owner(&client, &slow_ns.name).await;
    for i in 0..4 {
        let provider = json!({"web": {"url": format!("http://{slow}/health"), "jsonPath": "{$.ok}",
                                      "timeoutSeconds": 60}});
        apply_value(
            &client,
            Some(&slow_ns.name),
            &run(&format!("slow-{i}"), &slow_owner, provider),
        )
        .await
        .expect("slow run");
    }
    poll_until(
        "the slow tenant's measurements in flight",
        Duration::from_secs(60),
        Duration::from_millis(50),
        || async { (accepted.load(Ordering::SeqCst) >= 1).then_some(()) },
    )
    .await;

    let quick_owner = owner(&client, &quick_ns.name).await;
    let provider = json!({"web": {"url": receiver.url("/ok"), "jsonPath": "{$.ok}"}});
    let t0 = Instant::now();
    apply_value(
        &client,
        Some(&quick_ns.name),
        &run("quick", &quick_owner, provider),
    )
    .await
    .expect("quick run");
    let api: Api<AnalysisRun> = Api::namespaced(client.clone(), &quick_ns.name);
    let phase = poll_until(
        "the other tenant's verdict",
        Duration::from_secs(40),
        Duration::from_millis(50),
        || {
            let api = api.clone();
            async move {
                let st = api.get("quick").await.ok()?.status?;
                st.phase.is_completed().then_some(st.phase)
            }
        },
    )
    .await;
    println!(
        "the quick tenant's verdict came {:?} after its run was created, while the slow tenant's {} measurement(s) waited",
        t0.elapsed(),
        accepted.load(Ordering::SeqCst)
    );
    assert_eq!(phase, AnalysisPhase::Successful, "{}", ctl.log_tail(20));
    // The slow tenant measured in at most its share (1 of 4) at once.
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "the slow tenant held more than its share"
    );
}
