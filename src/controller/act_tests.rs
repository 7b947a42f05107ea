//! act against a mock API server: the writes in the plan's order, and nothing else.

use http::StatusCode;
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

use super::*;
use crate::controller::fixtures::{self, ApiServer, mock_client, server_error, within_deadline};
use crate::plan::AnalysisKind;

pub(super) fn rollout() -> Rollout {
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
pub(super) async fn converse<F, Fut>(
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
pub(super) async fn converse_from<F, Fut>(
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

pub(super) fn scale(name: &str, replicas: i32, deadline: Option<Option<Timestamp>>) -> Action {
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

/// antiAffinity: a revision created while another is stable gets Argo's injected term (next to
/// the template's own affinity, which — like the hash — is left as written); the first
/// revision and the stable itself get none.
#[test]
fn anti_affinity_keeps_a_new_revision_off_the_stable_nodes() {
    let spec =
        |anti: Value| json!({"canary": {"antiAffinity": anti, "steps": [{"setWeight": 20}]}});
    let own = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]}}});
    let mut ro = fixtures::rollout(
        spec(json!({"preferredDuringSchedulingIgnoredDuringExecution": {"weight": 40}})),
        json!({"stableRS": "old"}),
    );
    if let Some(pod) = ro.spec.template.spec.as_mut() {
        pod.affinity = serde_json::from_value(own.clone()).ok();
    }
    let written = |ro: &Rollout, hash: &str| {
        let rs = build_replica_set(ro, hash, 1, 2);
        serde_json::to_value(rs.spec.and_then(|s| s.template)).unwrap_or_default()
    };
    let affinity = &written(&ro, "new")["spec"]["affinity"];
    assert_eq!(
        affinity["nodeAffinity"], own["nodeAffinity"],
        "the template's own kept"
    );
    assert_eq!(
        affinity["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"],
        json!([{"weight": 40, "podAffinityTerm": {
            "labelSelector": {"matchExpressions": [
                {"key": POD_TEMPLATE_HASH_LABEL, "operator": "In", "values": ["old"]}]},
            "namespaces": ["shop"],
            "topologyKey": "kubernetes.io/hostname"}}])
    );
    assert_eq!(
        ro.spec
            .template
            .spec
            .as_ref()
            .and_then(|p| p.affinity.as_ref())
            .and_then(|a| a.pod_anti_affinity.as_ref()),
        None,
        "the Rollout's template is not touched"
    );
    assert_eq!(
        written(&ro, "old")["spec"]["affinity"]["podAntiAffinity"],
        Value::Null,
        "the stable revision itself"
    );

    let ro = fixtures::rollout(
        spec(json!({"requiredDuringSchedulingIgnoredDuringExecution": {}})),
        json!({"stableRS": "old"}),
    );
    assert_eq!(
        written(&ro, "new")["spec"]["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            [0]["labelSelector"]["matchExpressions"][0]["values"],
        json!(["old"])
    );
    let first = fixtures::rollout(
        spec(json!({"requiredDuringSchedulingIgnoredDuringExecution": {}})),
        Value::Null,
    );
    assert_eq!(
        written(&first, "new")["spec"]["affinity"],
        Value::Null,
        "a first deploy"
    );
}
