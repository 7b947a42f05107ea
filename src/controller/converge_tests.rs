//! Prepare against a mock API server: an analysis that cannot start is the planner's verdict
//! before anything of the plan is written.

use http::StatusCode;
use serde_json::json;

use super::*;
use crate::api::AnalysisPhase;
use crate::controller::fixtures::{self, mock_client, within_deadline};
use crate::plan::{Action, AnalysisKind, ObservedReplicaSet, rollout_template_hash};

fn rollout() -> Rollout {
    let mut ro = fixtures::rollout(
        json!({"canary": {"steps": [
            {"analysis": {"templates": [{"templateName": "no-such"}]}},
        ]}}),
        serde_json::Value::Null,
    );
    let hash = rollout_template_hash(&ro);
    ro.status = serde_json::from_value(json!({
        "stableRS": "old", "currentPodHash": hash, "currentStepIndex": 0,
        "currentStepHash": crate::plan::hash::hash_of(&ro.spec.steps()),
        "phase": "Progressing",
    }))
    .expect("status");
    ro
}

fn rs(hash: &str) -> ObservedReplicaSet {
    ObservedReplicaSet {
        name: format!("web-{hash}"),
        hash: hash.into(),
        replicas: 1,
        available: 1,
        current: 1,
        revision: Some(1),
        ..Default::default()
    }
}

fn observed_for<'r>(ro: &'r Rollout, rss: Vec<ObservedReplicaSet>) -> Observed<'r> {
    Observed {
        rollout: ro,
        replica_sets: rss,
        services: vec![],
        current_weight: None,
        subset_hashes: None,
        analysis_runs: vec![],
        analysis_run_history: vec![],
        pods: None,
        workload: None,
        now: k8s_openapi::jiff::Timestamp::now(),
    }
}

/// The step's run prepared for `ro` while the API server answers the template's GET with
/// `status` and `reply` and nothing else is asked: the plan, the runs and what was observed.
async fn prepare_answering_template<'r>(
    ro: &'r Rollout,
    status: StatusCode,
    reply: serde_json::Value,
) -> (plan::Plan, PreparedRuns, Observed<'r>) {
    let hash = rollout_template_hash(ro);
    let mut observed = observed_for(ro, vec![rs("old"), rs(&hash)]);
    let asked = plan::plan(&observed);
    let (client, mut server) = mock_client();
    let ctx = Context::for_tests(client);
    let controller = async {
        let prepared = prepare_runs(&ctx, ro, asked, &mut observed).await;
        drop(ctx);
        prepared
    };
    let api_server = async move {
        server
            .expect(
                "GET",
                "/apis/aviary.dev/v1alpha1/namespaces/shop/analysistemplates/no-such",
                status,
                reply,
            )
            .await;
        // Nothing is written while the runs are prepared.
        server.expect_no_more().await;
    };
    let ((plan, runs), ()) = within_deadline(async { tokio::join!(controller, api_server) }).await;
    (plan, runs, observed)
}

#[tokio::test]
async fn a_missing_template_aborts_before_any_write() {
    let ro = rollout();
    let hash = rollout_template_hash(&ro);
    let asked = plan::plan(&observed_for(&ro, vec![rs("old"), rs(&hash)]));
    assert!(
        asked.actions.contains(&Action::CreateAnalysisRun {
            kind: AnalysisKind::Step(0),
            hash: hash.clone(),
        }),
        "the planner asks for the step's run: {:?}",
        asked.actions
    );
    let (plan, runs, observed) = prepare_answering_template(
        &ro,
        StatusCode::NOT_FOUND,
        json!({"apiVersion": "v1", "kind": "Status", "status": "Failure",
               "reason": "NotFound", "code": 404,
               "message": "analysistemplates.aviary.dev \"no-such\" not found"}),
    )
    .await;
    assert!(runs.get(AnalysisKind::Step(0), &hash).is_none());
    assert!(
        !plan
            .actions
            .iter()
            .any(|a| matches!(a, Action::CreateAnalysisRun { .. })),
        "{:?}",
        plan.actions
    );
    assert_eq!(plan.status.abort, Some(true), "the Error verdict aborts");
    let why = plan.status.message.clone().unwrap_or_default();
    assert!(
        why.contains("AnalysisTemplate 'no-such' not found"),
        "{why}"
    );
    assert!(
        observed
            .analysis_runs
            .iter()
            .any(|r| r.phase == AnalysisPhase::Error),
        "the verdict the planner was given"
    );
}

/// A template our types reject (admitted by an older CRD) is a verdict, not an outage: the
/// analysis errors and the rollout aborts with a message naming the template's field, instead
/// of retrying a read that can never decode.
#[tokio::test]
async fn a_template_that_does_not_decode_aborts_naming_its_field() {
    let ro = rollout();
    let hash = rollout_template_hash(&ro);
    let (plan, runs, _) = prepare_answering_template(
        &ro,
        StatusCode::OK,
        json!({"apiVersion": "aviary.dev/v1alpha1", "kind": "AnalysisTemplate",
               "metadata": {"name": "no-such", "namespace": "shop"},
               "spec": {"metrics": [{"name": "m",
                   "interval": "99999999999999999999999999999999999999999s",
                   "provider": {"prometheus": {"query": "up"}}}]}}),
    )
    .await;
    assert!(runs.get(AnalysisKind::Step(0), &hash).is_none());
    assert_eq!(plan.status.abort, Some(true), "{:?}", plan.status.message);
    let why = plan.status.message.clone().unwrap_or_default();
    assert!(
        why.contains("AnalysisTemplate 'no-such' cannot be read: spec.metrics[0].interval"),
        "{why}"
    );
}

/// A template the API server cannot serve right now (a 500) is no verdict on the analysis: no
/// abort, the run is not created this time, and the rollout is looked at again shortly.
#[tokio::test]
async fn an_unreadable_template_is_retried_not_an_abort() {
    let ro = rollout();
    let hash = rollout_template_hash(&ro);
    let (plan, runs, observed) = prepare_answering_template(
        &ro,
        StatusCode::INTERNAL_SERVER_ERROR,
        crate::controller::fixtures::server_error(),
    )
    .await;
    assert!(runs.get(AnalysisKind::Step(0), &hash).is_none());
    assert_ne!(plan.status.abort, Some(true), "{:?}", plan.status.message);
    assert!(
        observed
            .analysis_runs
            .iter()
            .all(|r| r.phase != AnalysisPhase::Error),
        "no verdict given"
    );
    assert!(
        plan.requeue_after
            .is_some_and(|d| d <= std::time::Duration::from_secs(5)),
        "{:?}",
        plan.requeue_after
    );
}

/// Found by review: blue-green pre-promotion analysis on a missing template, aborted, then
/// retried without the template: the retry's plan recorded the Error verdict it was given
/// (then named like every such verdict, `<rollout>-<hash>`) as superseded, so the next
/// reconcile's verdict of that name was ignored and the rollout waited silently. Fix: the
/// verdict's name is new each reconcile.
#[tokio::test]
async fn after_a_retry_a_missing_template_still_aborts() {
    let mut ro = fixtures::rollout(
        json!({"blueGreen": {
            "activeService": "web-active",
            "previewService": "web-preview",
            "prePromotionAnalysis": {"templates": [{"templateName": "no-such"}]},
        }}),
        serde_json::Value::Null,
    );
    let hash = rollout_template_hash(&ro);
    let now = k8s_openapi::jiff::Timestamp::now();
    // Aborted on the missing template, then retried (`abort` taken back, `abortedAt` kept).
    ro.status = serde_json::from_value(json!({
        "stableRS": "old", "currentPodHash": hash, "phase": "Degraded",
        "abortedAt": (now - k8s_openapi::jiff::SignedDuration::from_secs(60)).to_string(),
        "blueGreen": {
            "activeSelector": "old", "previewSelector": hash,
            "prePromotionAnalysisRunStatus": {
                "name": format!("web-{hash}"), "status": "Error",
                "message": "AnalysisTemplate 'no-such' not found",
            },
        },
    }))
    .expect("status");
    let services = vec![
        crate::plan::ObservedService {
            name: "web-active".into(),
            hash: Some("old".into()),
        },
        crate::plan::ObservedService {
            name: "web-preview".into(),
            hash: Some(hash.clone()),
        },
    ];
    let not_found = json!({"apiVersion": "v1", "kind": "Status", "status": "Failure",
                           "reason": "NotFound", "code": 404, "message": "not found"});
    // Two reconciles a few seconds apart: the retry's, then the next one.
    for (i, at) in [now, now + k8s_openapi::jiff::SignedDuration::from_secs(3)]
        .into_iter()
        .enumerate()
    {
        let mut observed = observed_for(&ro, vec![rs("old"), rs(&hash)]);
        observed.services = services.clone();
        observed.now = at;
        let asked = plan::plan(&observed);
        let (client, server) = mock_client();
        let ctx = Context::for_tests(client);
        let controller = async {
            let prepared = prepare_runs(&ctx, &ro, asked, &mut observed).await;
            drop(ctx);
            prepared
        };
        let ((plan, _), gets) = within_deadline(async {
            tokio::join!(
                controller,
                server.answer_all(StatusCode::NOT_FOUND, not_found.clone())
            )
        })
        .await;
        if i == 1 {
            assert_eq!(
                plan.status.abort,
                Some(true),
                "the next reconcile aborts again ({} template reads): {:?}",
                gets.len(),
                plan.status.message
            );
        }
        ro.status = Some(plan.status);
    }
}
