//! act against a mock API server: the writes in the plan's order, and nothing else.

use http::StatusCode;
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

use super::*;
use crate::controller::fixtures::{self, ApiServer, mock_client, server_error, within_deadline};
use crate::plan::AnalysisKind;

fn rollout() -> Rollout {
    fixtures::rollout(
        json!({"canary": {"steps": [{"setWeight": 20}]}}),
        Value::Null,
    )
}

fn replica_set(name: &str, hash: &str, replicas: i32) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": name, "namespace": "shop", "resourceVersion": "7",
                     "labels": {POD_TEMPLATE_HASH_LABEL: hash}},
        "spec": {"replicas": replicas},
    })
}

/// Runs act over `actions` (with the routers `ro` names) against a mock API server that
/// `script` plays; the script ends with [`ApiServer::expect_no_more`].
async fn converse<F, Fut>(
    ro: &Rollout,
    actions: &[Action],
    runs: &PreparedRuns,
    script: F,
) -> Result<Vec<Event>, Error>
where
    F: FnOnce(ApiServer) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    // No snapshots: each router reads at its first write.
    converse_from(ro, actions, runs, vec![], script).await
}

/// [`converse`], with the routing snapshots observe took.
async fn converse_from<F, Fut>(
    ro: &Rollout,
    actions: &[Action],
    runs: &PreparedRuns,
    snapshots: Vec<crate::traffic::RoutingSnapshot>,
    script: F,
) -> Result<Vec<Event>, Error>
where
    F: FnOnce(ApiServer) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let (client, server) = mock_client();
    let ctx = Context::for_tests(client);
    let routing = crate::traffic::Routing::for_rollout(ro);
    let controller = async move {
        let applied = apply(&ctx, ro, actions, &[], runs, &routing, snapshots).await;
        drop(ctx); // the API server then sees the client hang up
        applied
    };
    let (applied, ()) = within_deadline(async { tokio::join!(controller, script(server)) }).await;
    applied
}

const RS_PATH: &str = "/apis/apps/v1/namespaces/shop/replicasets";

fn scale(name: &str, replicas: i32, deadline: Option<Option<Timestamp>>) -> Action {
    Action::ScaleReplicaSet {
        name: name.into(),
        replicas,
        scale_down_at: deadline,
    }
}

/// The order the planner chose is the order of the writes (a deadline before the scale that
/// depends on it), each write is what the action says, and nothing else is sent.
#[tokio::test]
async fn actions_are_written_in_the_plan_order() {
    let at = Timestamp::from_second(1_800_000_000).expect("time");
    let actions = [
        scale("web-old", 3, Some(Some(at))),
        scale("web-new", 0, None),
    ];
    let script = |mut server: ApiServer| async move {
        let first = server
            .expect(
                "PATCH",
                &format!("{RS_PATH}/web-old"),
                StatusCode::OK,
                replica_set("web-old", "old", 3),
            )
            .await;
        assert!(first.uri.contains("fieldManager=aviary"), "{}", first.uri);
        assert_eq!(first.body["spec"]["replicas"], 3);
        assert_eq!(
            first.body["metadata"]["annotations"][SCALE_DOWN_DEADLINE_ANNOTATION],
            json!(at.to_string())
        );
        let second = server
            .expect(
                "PATCH",
                &format!("{RS_PATH}/web-new"),
                StatusCode::OK,
                replica_set("web-new", "new", 0),
            )
            .await;
        assert_eq!(second.body["spec"]["replicas"], 0);
        assert!(
            second.body["metadata"]["annotations"]
                .get(SCALE_DOWN_DEADLINE_ANNOTATION)
                .is_none(),
            "a deadline left alone is not written"
        );
        server.expect_no_more().await;
    };
    let applied = converse(&rollout(), &actions, &PreparedRuns::default(), script).await;
    let events = applied.expect("applied");
    assert_eq!(
        events.len(),
        1,
        "one Event, for the scale without a deadline"
    );
}

/// A failed write stops the plan there: what came after it in the planner's safe order
/// (a switch after the capacity it needs) is not sent.
#[tokio::test]
async fn a_failed_write_stops_the_rest() {
    let actions = [scale("web-new", 3, None), scale("web-old", 0, None)];
    let script = |mut server: ApiServer| async move {
        server
            .expect(
                "PATCH",
                &format!("{RS_PATH}/web-new"),
                StatusCode::INTERNAL_SERVER_ERROR,
                server_error(),
            )
            .await;
        server.expect_no_more().await;
    };
    let applied = converse(&rollout(), &actions, &PreparedRuns::default(), script).await;
    assert!(
        matches!(applied, Err(Error::Kube(_))),
        "the API's error: {applied:?}"
    );
}

fn forbidden() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Status", "status": "Failure", "reason": "Forbidden",
        "message": "admission webhook \"audit.example.com\" denied the request", "code": 403,
    })
}

/// Deleting runs and ReplicaSets beyond the history limits is housekeeping: refused, it is said
/// in a Warning Event and the writes after it (and the status write after act) still happen.
#[tokio::test]
async fn a_refused_history_deletion_does_not_hold_the_rollout() {
    let actions = [
        Action::DeleteAnalysisRun {
            name: "web-abc-1-2".into(),
        },
        Action::DeleteReplicaSet {
            name: "web-older".into(),
        },
        scale("web-new", 2, None),
    ];
    let script = |mut server: ApiServer| async move {
        server
            .expect(
                "DELETE",
                "/apis/aviary.dev/v1alpha1/namespaces/shop/analysisruns/web-abc-1-2",
                StatusCode::FORBIDDEN,
                forbidden(),
            )
            .await;
        server
            .expect(
                "DELETE",
                &format!("{RS_PATH}/web-older"),
                StatusCode::INTERNAL_SERVER_ERROR,
                server_error(),
            )
            .await;
        server
            .expect(
                "PATCH",
                &format!("{RS_PATH}/web-new"),
                StatusCode::OK,
                replica_set("web-new", "new", 2),
            )
            .await;
        server.expect_no_more().await;
    };
    let applied = converse(&rollout(), &actions, &PreparedRuns::default(), script).await;
    let events = applied.expect("a refused deletion is no error");
    let failed: Vec<&Event> = events
        .iter()
        .filter(|e| e.reason == reasons::HISTORY_CLEANUP_FAILED)
        .collect();
    assert_eq!(failed.len(), 2, "{events:?}");
    assert!(
        failed[0].message.contains("AnalysisRun 'web-abc-1-2'")
            && failed[0].message.contains("audit.example.com"),
        "{}",
        failed[0].message
    );
    assert!(
        failed[1].message.contains("ReplicaSet 'web-older'"),
        "{}",
        failed[1].message
    );
}

const SVC_PATH: &str = "/api/v1/namespaces/shop/services";

fn service(name: &str, hash: &str, managed_by: Option<&str>) -> Value {
    let mut svc = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "shop", "resourceVersion": "5"},
        "spec": {"selector": {"app": "web", POD_TEMPLATE_HASH_LABEL: hash}},
    });
    if let Some(owner) = managed_by {
        svc["metadata"]["annotations"] = json!({MANAGED_BY_ANNOTATION: owner});
    }
    svc
}

fn switch(service: &str, hash: &str) -> Action {
    Action::SwitchService {
        service: service.into(),
        hash: hash.into(),
    }
}

/// A switch patches the hash selector and our managed-by mark and nothing else of a Service the
/// user owns (its other selector labels, ports, … stay theirs).
#[tokio::test]
async fn a_switch_patches_only_the_hash_selector_and_our_mark() {
    let actions = [switch("web-stable", "new")];
    let script = |mut server: ApiServer| async move {
        server
            .expect(
                "GET",
                &format!("{SVC_PATH}/web-stable"),
                StatusCode::OK,
                service("web-stable", "old", Some("web")),
            )
            .await;
        let patch = server
            .expect(
                "PATCH",
                &format!("{SVC_PATH}/web-stable"),
                StatusCode::OK,
                service("web-stable", "new", Some("web")),
            )
            .await;
        assert_eq!(
            patch.body,
            json!({
                "metadata": {"annotations": {MANAGED_BY_ANNOTATION: "web"}},
                "spec": {"selector": {POD_TEMPLATE_HASH_LABEL: "new"}},
            })
        );
        assert!(patch.uri.contains("fieldManager=aviary"), "{}", patch.uri);
        server.expect_no_more().await;
    };
    let applied = converse(&rollout(), &actions, &PreparedRuns::default(), script).await;
    applied.expect("switched");
}

/// A Service another Rollout steers is refused with an error that names both, and neither it
/// nor anything planned after it is written.
#[tokio::test]
async fn a_service_another_rollout_manages_is_never_written() {
    let actions = [switch("web-stable", "new"), scale("web-old", 0, None)];
    let script = |mut server: ApiServer| async move {
        server
            .expect(
                "GET",
                &format!("{SVC_PATH}/web-stable"),
                StatusCode::OK,
                service("web-stable", "old", Some("api")),
            )
            .await;
        server.expect_no_more().await;
    };
    let applied = converse(&rollout(), &actions, &PreparedRuns::default(), script).await;
    match applied {
        Err(Error::InvalidSpec(msg)) => assert!(
            msg.contains("'web-stable'") && msg.contains("Rollout 'api'"),
            "{msg}"
        ),
        other => panic!("expected InvalidSpec, got {other:?}"),
    }
}

fn create(hash: &str, replicas: i32) -> Action {
    Action::CreateReplicaSet {
        hash: hash.into(),
        replicas,
        revision: 2,
    }
}

/// A create that meets a ReplicaSet of that name (our own earlier create, which the cache had
/// not shown) goes on when it is ours, and stops with a clear error when it is someone else's.
#[tokio::test]
async fn a_create_that_meets_an_existing_replica_set_checks_whose_it_is() {
    for (ours, owner_uid) in [(true, "u1"), (false, "someone-else")] {
        let actions = [create("abc", 1), scale("web-old", 0, None)];
        let script = |mut server: ApiServer| async move {
            let post = server
                .expect(
                    "POST",
                    RS_PATH,
                    StatusCode::CONFLICT,
                    json!({"apiVersion": "v1", "kind": "Status", "status": "Failure",
                           "reason": "AlreadyExists", "code": 409,
                           "message": "replicasets.apps \"web-abc\" already exists"}),
                )
                .await;
            assert_eq!(post.body["metadata"]["name"], "web-abc");
            assert_eq!(post.body["spec"]["replicas"], 1);
            assert_eq!(
                post.body["metadata"]["ownerReferences"][0]["uid"], "u1",
                "created controlled by the Rollout"
            );
            let mut existing = replica_set("web-abc", "abc", 1);
            existing["metadata"]["ownerReferences"] = json!([{
                "apiVersion": "aviary.dev/v1alpha1", "kind": "Rollout", "name": "web",
                "uid": owner_uid, "controller": true,
            }]);
            server
                .expect(
                    "GET",
                    &format!("{RS_PATH}/web-abc"),
                    StatusCode::OK,
                    existing,
                )
                .await;
            if ours {
                server
                    .expect(
                        "PATCH",
                        &format!("{RS_PATH}/web-old"),
                        StatusCode::OK,
                        replica_set("web-old", "old", 0),
                    )
                    .await;
            }
            server.expect_no_more().await;
        };
        let applied = converse(&rollout(), &actions, &PreparedRuns::default(), script).await;
        match (ours, applied) {
            (true, Ok(_)) => {}
            (false, Err(Error::InvalidSpec(msg))) => {
                assert!(msg.contains("'web-abc'"), "{msg}")
            }
            (_, other) => panic!("ours {ours}: {other:?}"),
        }
    }
}

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

/// A run is created from the spec prepared before the plan's first write, named after its
/// ReplicaSet's revision (one created by the same plan included), labelled for the planner to
/// read back, and controlled by the Rollout; a run the Rollout configures no analysis for is
/// not created.
#[tokio::test]
async fn a_run_is_created_from_its_prepared_spec_and_named_by_revision() {
    let mut runs = PreparedRuns::default();
    let spec: crate::api::AnalysisRunSpec = serde_json::from_value(json!({
        "metrics": [{"name": "error-rate", "successCondition": "result[0] < 0.05",
                     "provider": {"prometheus": {"query": "q"}}}],
    }))
    .expect("spec");
    runs.insert(AnalysisKind::Step(0), "abc", spec);
    let actions = [
        create("abc", 1),
        Action::CreateAnalysisRun {
            kind: AnalysisKind::Step(0),
            hash: "abc".into(),
        },
        Action::CreateAnalysisRun {
            kind: AnalysisKind::Background,
            hash: "abc".into(),
        },
    ];
    let script = |mut server: ApiServer| async move {
        let mut created = replica_set("web-abc", "abc", 1);
        created["metadata"]["annotations"] = json!({REVISION_ANNOTATION: "2"});
        server
            .expect("POST", RS_PATH, StatusCode::CREATED, created)
            .await;
        let post = server
            .expect(
                "POST",
                "/apis/aviary.dev/v1alpha1/namespaces/shop/analysisruns",
                StatusCode::CREATED,
                json!({"apiVersion": "aviary.dev/v1alpha1", "kind": "AnalysisRun",
                       "metadata": {"name": "web-abc-2-0", "namespace": "shop"},
                       "spec": {"metrics": []}}),
            )
            .await;
        let meta = &post.body["metadata"];
        assert_eq!(meta["name"], "web-abc-2-0", "rollout-hash-revision-step");
        assert_eq!(meta["labels"][ROLLOUT_LABEL], "web");
        assert_eq!(meta["labels"][POD_TEMPLATE_HASH_LABEL], "abc");
        assert_eq!(meta["labels"][wire::ANALYSIS_TYPE_LABEL], "Step");
        assert_eq!(meta["labels"][wire::STEP_INDEX_LABEL], "0");
        assert_eq!(meta["ownerReferences"][0]["uid"], "u1");
        assert_eq!(post.body["spec"]["metrics"][0]["name"], "error-rate");
        server.expect_no_more().await;
    };
    let applied = converse(&rollout(), &actions, &runs, script).await;
    let events = applied.expect("created");
    assert!(
        events
            .iter()
            .any(|e| e.reason == reasons::ANALYSIS_RUN_CREATED
                && e.message.contains("web-abc-2-0")),
        "{events:?}"
    );
}
