//! act's traffic writes against a mock API server: Istio weights `test`ed at what they start
//! from (a read, or observe's snapshot), the way back prepared, the subsets before any weight.

use http::StatusCode;
use serde_json::{Value, json};

use super::tests::{converse, converse_from};
use super::*;
use crate::controller::fixtures::{self, ApiServer};

fn routed_rollout() -> Rollout {
    fixtures::rollout(
        json!({"canary": {
            "canaryService": "web-canary", "stableService": "web-stable",
            "trafficRouting": {"istio": {"virtualService": {"name": "web", "routes": ["primary"]}}},
            "steps": [{"setWeight": 20}],
        }}),
        Value::Null,
    )
}

fn virtual_service(rv: &str, stable: i32, canary: i32) -> Value {
    json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "web", "namespace": "shop", "resourceVersion": rv},
        "spec": {"hosts": ["web"], "http": [{"name": "primary", "route": [
            {"destination": {"host": "web-stable"}, "weight": stable},
            {"destination": {"host": "web-canary"}, "weight": canary},
        ]}]},
    })
}

fn set_weight(weight: i32) -> Action {
    Action::SetWeight {
        weight,
        canary_hash: "new".into(),
        stable_hash: "old".into(),
    }
}

/// The ops of a JSON patch as `(op, path, value)`.
fn ops(body: &Value) -> Vec<(String, String, Value)> {
    body.as_array()
        .map(|ops| {
            ops.iter()
                .map(|o| {
                    (
                        o["op"].as_str().unwrap_or_default().to_string(),
                        o["path"].as_str().unwrap_or_default().to_string(),
                        o["value"].clone(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A weight write reads the VirtualService once and patches only the weights, each `test`ed
/// at the value it read (a concurrent change fails the write instead of being overwritten);
/// the way back to 0 in the same plan goes from the first write's answer, without a read.
#[tokio::test]
async fn weight_writes_test_what_they_read_and_the_way_back_needs_no_read() {
    let ro = routed_rollout();
    let actions = [set_weight(20), set_weight(0)];
    const VS: &str = "/apis/networking.istio.io/v1/namespaces/shop/virtualservices/web";
    let script = |mut server: ApiServer| async move {
        server
            .expect("GET", VS, StatusCode::OK, virtual_service("3", 100, 0))
            .await;
        let up = server
            .expect("PATCH", VS, StatusCode::OK, virtual_service("4", 80, 20))
            .await;
        let weight = |i: usize| format!("/spec/http/0/route/{i}/weight");
        let up = ops(&up.body);
        let canary_entry = |w: i32| {
            (
                "test".to_string(),
                "/spec/http/0/route/1".to_string(),
                json!({"destination": {"host": "web-canary"}, "weight": w}),
            )
        };
        assert!(
            up.contains(&canary_entry(0)),
            "the canary entry as read: {up:?}"
        );
        assert!(
            up.contains(&("replace".into(), weight(0), json!(80))),
            "{up:?}"
        );
        assert!(
            up.contains(&("replace".into(), weight(1), json!(20))),
            "{up:?}"
        );
        assert!(
            up.iter()
                .all(|(op, path, _)| op == "test" || path.ends_with("/weight")),
            "only weights are written: {up:?}"
        );
        assert!(
            up.iter().position(|(op, ..)| op != "test")
                > up.iter().rposition(|(op, ..)| op == "test"),
            "every test before any write: {up:?}"
        );
        let back = server
            .expect("PATCH", VS, StatusCode::OK, virtual_service("5", 100, 0))
            .await;
        let back = ops(&back.body);
        assert!(
            back.contains(&canary_entry(20)),
            "tested against the first write's answer: {back:?}"
        );
        assert!(
            back.contains(&("replace".into(), weight(1), json!(0))),
            "{back:?}"
        );
        server.expect_no_more().await;
    };
    let applied = converse(&ro, &actions, &PreparedRuns::default(), script).await;
    let events = applied.expect("written");
    let weights: Vec<&str> = events
        .iter()
        .filter(|e| e.reason == reasons::TRAFFIC_WEIGHT_UPDATED)
        .map(|e| e.message.as_str())
        .collect();
    assert_eq!(weights.len(), 2, "{events:?}");
    assert!(weights[0].contains("from 0 to 20"), "{weights:?}");
    assert!(weights[1].contains("from 20 to 0"), "{weights:?}");
}

/// The weight is written from the snapshot observe took, with no read in between: the patch
/// `test`s that snapshot, so a VirtualService changed since refuses it.
#[tokio::test]
async fn a_weight_is_written_from_the_snapshot_observe_took() {
    let ro = routed_rollout();
    let routing = crate::traffic::Routing::for_rollout(&ro);
    let observed = crate::traffic::RoutingSnapshot {
        object: routing.routers[0].object(&routing.target),
        body: virtual_service("3", 90, 10),
    };
    const VS: &str = "/apis/networking.istio.io/v1/namespaces/shop/virtualservices/web";
    let script = |mut server: ApiServer| async move {
        let up = server
            .expect("PATCH", VS, StatusCode::OK, virtual_service("4", 80, 20))
            .await;
        let up = ops(&up.body);
        assert!(
            up.contains(&(
                "test".to_string(),
                "/spec/http/0/route/1".to_string(),
                json!({"destination": {"host": "web-canary"}, "weight": 10}),
            )),
            "the canary entry as observed: {up:?}"
        );
        server.expect_no_more().await;
    };
    let applied = converse_from(
        &ro,
        &[set_weight(20)],
        &PreparedRuns::default(),
        vec![observed],
        script,
    )
    .await;
    let events = applied.expect("written");
    assert!(
        events.iter().any(|e| e.message.contains("from 10 to 20")),
        "{events:?}"
    );
}

/// With a DestinationRule, the subsets move first, once for the Rollout, and only then does any
/// VirtualService give the canary a weight: a weight never reaches a subset that still selects
/// the previous pods.
#[tokio::test]
async fn subsets_move_once_before_any_weight() {
    let ro = fixtures::rollout(
        json!({"canary": {
            "canaryService": "web-canary", "stableService": "web-stable",
            "trafficRouting": {"istio": {
                "virtualServices": [{"name": "web"}, {"name": "edge"}],
                "destinationRule": {"name": "web", "canarySubsetName": "canary", "stableSubsetName": "stable"},
            }},
            "steps": [{"setWeight": 20}],
        }}),
        Value::Null,
    );
    const DR: &str = "/apis/networking.istio.io/v1/namespaces/shop/destinationrules/web";
    let vs_path =
        |name: &str| format!("/apis/networking.istio.io/v1/namespaces/shop/virtualservices/{name}");
    let vs = |name: &str, rv: &str, canary: i32| {
        json!({
            "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": name, "namespace": "shop", "resourceVersion": rv},
            "spec": {"http": [{"route": [
                {"destination": {"host": "web", "subset": "stable"}, "weight": 100 - canary},
                {"destination": {"host": "web", "subset": "canary"}, "weight": canary},
            ]}]},
        })
    };
    let dr = |canary: &str| {
        json!({
            "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
            "metadata": {"name": "web", "namespace": "shop", "resourceVersion": "7"},
            "spec": {"host": "web", "subsets": [
                {"name": "stable", "labels": {"rollouts-pod-template-hash": "old"}},
                {"name": "canary", "labels": {"rollouts-pod-template-hash": canary}},
            ]},
        })
    };
    let script = |mut server: ApiServer| async move {
        server.expect("GET", DR, StatusCode::OK, dr("older")).await;
        let moved = server.expect("PATCH", DR, StatusCode::OK, dr("new")).await;
        assert!(
            ops(&moved.body).contains(&(
                "replace".into(),
                "/spec/subsets/1/labels/rollouts-pod-template-hash".into(),
                json!("new")
            )),
            "{:?}",
            moved.body
        );
        for name in ["web", "edge"] {
            server
                .expect("GET", &vs_path(name), StatusCode::OK, vs(name, "3", 0))
                .await;
            server
                .expect("PATCH", &vs_path(name), StatusCode::OK, vs(name, "4", 20))
                .await;
        }
        server.expect_no_more().await;
    };
    let applied = converse(&ro, &[set_weight(20)], &PreparedRuns::default(), script).await;
    let events = applied.expect("written");
    assert_eq!(
        events
            .iter()
            .filter(|e| e.reason == reasons::TRAFFIC_WEIGHT_UPDATED)
            .count(),
        2,
        "{events:?}"
    );
}
