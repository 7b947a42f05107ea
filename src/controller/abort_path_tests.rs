//! The abort fast path against a mock API server: weight 0 goes out only onto a stable with
//! pods, as the one write it needs, and from the watch without a read when it was prepared.

use http::StatusCode;
use kube::runtime::watcher::Event as WatchEvent;
use serde_json::{Value, json};

use super::*;
use crate::controller::fixtures::{self, mock_client, within_deadline};
use crate::controller::replica_set_cache::WatchedReplicaSet;
use crate::plan::Action;

const VS: &str = "/apis/networking.istio.io/v1/namespaces/shop/virtualservices/web";

fn rollout(abort: bool) -> Rollout {
    fixtures::rollout(
        json!({"canary": {
            "canaryService": "web-canary", "stableService": "web-stable",
            "trafficRouting": {"istio": {"virtualService": {"name": "web", "routes": ["primary"]}}},
            "steps": [{"setWeight": 20}, {"pause": {}}],
        }}),
        json!({"abort": abort, "stableRS": "old", "currentPodHash": "new", "phase": "Paused"}),
    )
}

fn virtual_service(rv: &str, canary: i32) -> Value {
    json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "web", "namespace": "shop", "resourceVersion": rv},
        "spec": {"hosts": ["web"], "http": [{"name": "primary", "route": [
            {"destination": {"host": "web-stable"}, "weight": 100 - canary},
            {"destination": {"host": "web-canary"}, "weight": canary},
        ]}]},
    })
}

/// The context, its ReplicaSet cache holding the stable revision with `available` pods.
fn context(client: kube::Client, available: i32) -> Context {
    let ctx = Context::for_tests(client);
    let stable: WatchedReplicaSet = serde_json::from_value(json!({
        "metadata": {"name": "web-old", "namespace": "shop", "resourceVersion": "2",
                     "labels": {"rollouts-pod-template-hash": "old"},
                     "ownerReferences": [{"apiVersion": "aviary.dev/v1alpha1", "kind": "Rollout",
                                          "name": "web", "uid": "u1", "controller": true}]},
        "spec": {"replicas": 1},
        "status": {"replicas": 1, "availableReplicas": available},
    }))
    .expect("replica set");
    ctx.view.replica_sets.apply(&WatchEvent::Apply(stable));
    ctx
}

fn weight_written(body: &Value) -> Option<i64> {
    body.as_array()?
        .iter()
        .find(|op| op["op"] == "replace" && op["path"] == "/spec/http/0/route/1/weight")
        .and_then(|op| op["value"].as_i64())
}

#[tokio::test]
async fn an_abort_sends_weight_0_at_once_onto_a_stable_with_pods() {
    let (client, mut server) = mock_client();
    let ctx = context(client, 1);
    let outbox = report::Outbox::default();
    let controller = async {
        route_to_stable_now(&ctx, &rollout(true), &outbox, Guarded::Any).await;
        drop(ctx);
    };
    let api_server = async move {
        server
            .expect("GET", VS, StatusCode::OK, virtual_service("3", 20))
            .await;
        let patch = server
            .expect("PATCH", VS, StatusCode::OK, virtual_service("4", 0))
            .await;
        assert_eq!(weight_written(&patch.body), Some(0), "{}", patch.body);
        server.expect_no_more().await;
    };
    within_deadline(async { tokio::join!(controller, api_server) }).await;
    assert_eq!(outbox.queued(), 1, "the weight change's Event");
}

#[tokio::test]
async fn an_abort_sends_nothing_while_the_stable_has_no_pod() {
    let (client, server) = mock_client();
    let ctx = Arc::new(context(client, 0));
    let outbox = report::Outbox::default();
    let controller = async {
        route_to_stable_now(&ctx, &rollout(true), &outbox, Guarded::Any).await;
        send_prepared_aborts(ctx.clone(), rollout(true)).await;
        drop(ctx);
    };
    within_deadline(async { tokio::join!(controller, server.expect_no_more()) }).await;
    assert_eq!(outbox.queued(), 0);
}

/// The write that gave the canary its weight prepares the way back; the watch that sees the
/// abort sends it with no read first, testing the weight that write left.
#[tokio::test]
async fn the_watch_sends_the_prepared_abort_without_a_read() {
    let (client, mut server) = mock_client();
    let ctx = Arc::new(context(client, 1));
    let progressing = rollout(false);
    let routing = crate::traffic::Routing::for_rollout(&progressing);
    let controller = async {
        let set = act::apply(
            &ctx,
            &progressing,
            &[Action::SetWeight {
                weight: 20,
                canary_hash: "new".into(),
                stable_hash: "old".into(),
            }],
            &[],
            &super::super::run_specs::PreparedRuns::default(),
            &routing,
            vec![],
        )
        .await;
        send_prepared_aborts(ctx.clone(), rollout(true)).await;
        drop(ctx);
        set
    };
    let api_server = async move {
        server
            .expect("GET", VS, StatusCode::OK, virtual_service("3", 0))
            .await;
        server
            .expect("PATCH", VS, StatusCode::OK, virtual_service("4", 20))
            .await;
        let abort = server
            .expect("PATCH", VS, StatusCode::OK, virtual_service("5", 0))
            .await;
        assert_eq!(weight_written(&abort.body), Some(0), "{}", abort.body);
        let tested = abort.body.as_array().is_some_and(|ops| {
            ops.iter()
                .any(|op| op["op"] == "test" && op["value"]["weight"] == 20)
        });
        assert!(
            tested,
            "tests the weight the first write left: {}",
            abort.body
        );
        // Said at once, not queued behind a reconcile.
        let event = server
            .expect(
                "POST",
                "/apis/events.k8s.io/v1/namespaces/shop/events",
                StatusCode::CREATED,
                json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
                       "metadata": {"name": "web.1", "namespace": "shop"},
                       "eventTime": "2026-12-02T00:00:00.000000Z"}),
            )
            .await;
        assert_eq!(
            event.body["reason"], "TrafficWeightUpdated",
            "{}",
            event.body
        );
        let note = event.body["note"].as_str().unwrap_or_default();
        assert!(note.contains("from 20 to 0"), "{note}");
        server.expect_no_more().await;
    };
    let (set, ()) = within_deadline(async { tokio::join!(controller, api_server) }).await;
    set.expect("weight set");
}
