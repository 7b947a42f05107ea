//! The run reconciler against a mock API server and a fake metric provider: what it reads, what
//! it asks the provider, and the one status write it makes.

use std::sync::Mutex;

use futures::future::BoxFuture;
use http::StatusCode;
use serde_json::{Value, json};

use super::*;
use crate::analysis::run::MetricPlan;
use crate::analysis::value::MetricValue;
use crate::controller::fixtures::{mock_client, within_deadline};
use crate::provider::{Provider, ProviderError};

/// Answers every measurement with `value` and remembers the queries it was asked.
struct Fake {
    value: f64,
    asked: Arc<Mutex<Vec<String>>>,
}

impl Provider for Fake {
    fn measure<'a>(
        &'a self,
        plan: &'a MetricPlan,
    ) -> BoxFuture<'a, Result<MetricValue, ProviderError>> {
        if let Ok(mut asked) = self.asked.lock() {
            asked.push(plan.query.clone().unwrap_or_default());
        }
        let value = self.value;
        Box::pin(async move { Ok(MetricValue::Vector(vec![value])) })
    }
}

fn run_ctx(client: Client, value: f64, asked: Arc<Mutex<Vec<String>>>) -> Arc<RunContext> {
    run_ctx_with(client, value, asked, false)
}

fn run_ctx_with(
    client: Client,
    value: f64,
    asked: Arc<Mutex<Vec<String>>>,
    run_unowned: bool,
) -> Arc<RunContext> {
    Arc::new(RunContext {
        client,
        providers: Arc::new(
            move |_: &MetricPlan| -> Result<Box<dyn Provider>, ProviderError> {
                Ok(Box::new(Fake {
                    value,
                    asked: asked.clone(),
                }))
            },
        ),
        metrics: Arc::new(crate::metrics::Metrics::new()),
        run_unowned,
        allow_job_metrics: false,
        shutdown: Default::default(),
        slots: crate::controller::analysis_slots::NamespaceSlots::new(16),
    })
}

const RUN_PATH: &str = "/apis/aviary.dev/v1alpha1/namespaces/shop/analysisruns/web-abc-2-0";

fn analysis_run() -> Value {
    json!({
        "apiVersion": "aviary.dev/v1alpha1", "kind": "AnalysisRun",
        "metadata": {"name": "web-abc-2-0", "namespace": "shop", "resourceVersion": "11",
                     "ownerReferences": [{"apiVersion": "aviary.dev/v1alpha1", "kind": "Rollout",
                                          "name": "web", "uid": "u1", "controller": true}]},
        "spec": {
            "args": [
                {"name": "service", "value": "web-canary"},
                {"name": "tenant", "valueFrom": {"secretKeyRef": {"name": "prom", "key": "tenant"}}},
            ],
            "metrics": [{
                "name": "error-rate",
                "successCondition": "result[0] <= 0.05",
                "provider": {"prometheus": {
                    "address": "http://prometheus:9090",
                    "query": "rate(errors{service=\"{{args.service}}\",tenant=\"{{args.tenant}}\"}[1m])",
                }},
            }],
        },
    })
}

/// The Secret the run's args name, labelled for analysis by its owner or not.
fn secret(labelled: bool) -> Value {
    let labels = if labelled {
        json!({crate::api::wire::ANALYSIS_SECRET_LABEL: "true"})
    } else {
        json!({})
    };
    json!({"apiVersion": "v1", "kind": "Secret",
           "metadata": {"name": "prom", "namespace": "shop", "labels": labels},
           "data": {"tenant": "YWNtZS1zZWNyZXQ="}})
}

/// A run that may not start: the run is read, then (if asked) the Secret answers `secret`, and
/// one status patch ends the run; the provider is never asked.
async fn refused(run: Value, secret: Option<(StatusCode, Value)>, run_unowned: bool) -> Value {
    let (client, mut server) = mock_client();
    let asked = Arc::new(Mutex::new(vec![]));
    let ctx = run_ctx_with(client, 0.0, asked.clone(), run_unowned);
    let cached: Arc<AnalysisRun> = Arc::new(serde_json::from_value(run.clone()).expect("run"));
    let controller = async move { reconcile(cached, ctx).await.map(|_| ()) };
    let api_server = async move {
        server
            .expect("GET", RUN_PATH, StatusCode::OK, run.clone())
            .await;
        if let Some((code, body)) = secret {
            server
                .expect("GET", "/api/v1/namespaces/shop/secrets/prom", code, body)
                .await;
        }
        let patch = server
            .expect("PATCH", &format!("{RUN_PATH}/status"), StatusCode::OK, run)
            .await;
        server.expect_no_more().await;
        patch.body
    };
    let (done, body) = within_deadline(async { tokio::join!(controller, api_server) }).await;
    done.expect("reconciled");
    assert!(
        asked.lock().map(|a| a.is_empty()).unwrap_or(false),
        "the provider was asked"
    );
    assert_eq!(body["status"]["phase"], "Error", "{body}");
    body
}

/// A Secret its owner did not label for analysis is not used: the controller's own right to
/// read it is not lent to whoever wrote the run. The run ends in Error naming the label; the
/// value is never sent anywhere.
#[tokio::test]
async fn an_unlabelled_secret_is_not_used() {
    let body = refused(analysis_run(), Some((StatusCode::OK, secret(false))), false).await;
    let message = body["status"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("Secret 'prom' is not labelled aviary.dev/analysis-secret=\"true\""),
        "{message}"
    );
    assert!(!body.to_string().contains("acme-secret"), "{body}");
}

/// A Secret the controller may not read (the chart grants none by default) is a clear refusal,
/// not an error retried for ever.
#[tokio::test]
async fn a_secret_the_controller_may_not_read_is_a_refusal() {
    let forbidden = json!({"apiVersion": "v1", "kind": "Status", "status": "Failure",
                           "reason": "Forbidden", "code": 403, "message": "forbidden"});
    let body = refused(
        analysis_run(),
        Some((StatusCode::FORBIDDEN, forbidden)),
        false,
    )
    .await;
    let message = body["status"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("may not read Secret 'prom'"), "{message}");
}

/// A run no Rollout owns is not run (unless the controller is told to): not even its Secret is
/// read, and its status says why and how to allow it.
#[tokio::test]
async fn a_run_no_rollout_owns_is_not_run() {
    let mut run = analysis_run();
    run["metadata"]["ownerReferences"] = json!([]);
    let body = refused(run, None, false).await;
    let message = body["status"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("--run-unowned-analysis"), "{message}");
}

/// A Secret placed in the web provider's URL path is refused before anything is sent.
#[tokio::test]
async fn a_secret_in_a_url_path_is_refused() {
    let mut run = analysis_run();
    run["spec"]["metrics"][0]["provider"] =
        json!({"web": {"url": "https://example.invalid/{{args.tenant}}/health"}});
    let body = refused(run, Some((StatusCode::OK, secret(true))), false).await;
    let message = body["status"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("args.tenant comes from a Secret"),
        "{message}"
    );
}

/// One measurement, as the run asks for it: the run is read fresh, the Secret its args name is
/// read, the provider gets the query with the args in it, and one status patch — guarded by the
/// resourceVersion read — records the measurement and the verdict, with the secret redacted.
async fn measured(value: f64) -> (Value, Vec<String>) {
    let (client, mut server) = mock_client();
    let asked = Arc::new(Mutex::new(vec![]));
    let ctx = run_ctx(client, value, asked.clone());
    let cached: Arc<AnalysisRun> =
        Arc::new(serde_json::from_value(analysis_run()).expect("analysis run"));
    let controller = async move {
        let done = reconcile(cached, ctx).await;
        done.map(|_| ())
    };
    let api_server = async move {
        server
            .expect("GET", RUN_PATH, StatusCode::OK, analysis_run())
            .await;
        server
            .expect(
                "GET",
                "/api/v1/namespaces/shop/secrets/prom",
                StatusCode::OK,
                secret(true),
            )
            .await;
        let patch = server
            .expect(
                "PATCH",
                &format!("{RUN_PATH}/status"),
                StatusCode::OK,
                analysis_run(),
            )
            .await;
        server.expect_no_more().await;
        patch.body
    };
    let (done, body) = within_deadline(async { tokio::join!(controller, api_server) }).await;
    done.expect("reconciled");
    let asked = asked.lock().map(|a| a.clone()).unwrap_or_default();
    (body, asked)
}

#[tokio::test]
async fn a_measurement_within_the_condition_passes_the_run() {
    let (patch, asked) = measured(0.01).await;
    assert_eq!(
        asked,
        ["rate(errors{service=\"web-canary\",tenant=\"acme-secret\"}[1m])"],
        "the provider gets the query with the args, the secret's included"
    );
    assert_eq!(patch["metadata"]["resourceVersion"], "11");
    assert_eq!(patch["status"]["phase"], "Successful", "{patch}");
    let metric = &patch["status"]["metricResults"][0];
    assert_eq!(metric["name"], "error-rate");
    assert_eq!(metric["measurements"][0]["phase"], "Successful");
    assert!(
        !patch.to_string().contains("acme-secret"),
        "the secret never reaches status: {patch}"
    );
}

#[tokio::test]
async fn a_measurement_outside_the_condition_fails_the_run() {
    let (patch, _) = measured(0.3).await;
    assert_eq!(patch["status"]["phase"], "Failed", "{patch}");
    assert_eq!(
        patch["status"]["metricResults"][0]["measurements"][0]["phase"],
        "Failed"
    );
}

/// A run a newer controller finished with a phase this version does not know (a `helm
/// rollback`) reads as Inconclusive, a final phase: it is neither measured again nor is its
/// verdict overwritten (found by review, when it read as Running).
#[tokio::test]
async fn a_run_ended_with_an_unknown_phase_is_left_as_it_is() {
    let (client, mut server) = mock_client();
    let asked = Arc::new(Mutex::new(vec![]));
    let ctx = run_ctx(client, 0.0, asked.clone());
    let mut run = analysis_run();
    run["status"] = json!({"phase": "Cancelled", "message": "cancelled by a newer Aviary"});
    let cached: Arc<AnalysisRun> = Arc::new(serde_json::from_value(run.clone()).expect("run"));
    let controller = async move { reconcile(cached, ctx).await.map(|_| ()) };
    let api_server = async move {
        server.expect("GET", RUN_PATH, StatusCode::OK, run).await;
        server.expect_no_more().await;
    };
    let (done, ()) = within_deadline(async { tokio::join!(controller, api_server) }).await;
    done.expect("reconciled");
    assert!(
        asked.lock().map(|a| a.is_empty()).unwrap_or(false),
        "measured again"
    );
}

/// A run whose namespace's share of the slots is in use (another of its runs waits on a slow
/// provider) is looked at again shortly, without a single request; another namespace's run
/// would measure (`analysis_slots` tests).
#[tokio::test]
async fn a_run_over_its_namespace_s_share_waits_without_a_request() {
    let (client, server) = mock_client();
    let asked = Arc::new(Mutex::new(vec![]));
    let ctx = run_ctx(client, 0.0, asked.clone());
    let held: Vec<_> = (0..ctx.slots.per_namespace())
        .filter_map(|_| ctx.slots.try_take("shop"))
        .collect();
    let cached: Arc<AnalysisRun> =
        Arc::new(serde_json::from_value(analysis_run()).expect("analysis run"));
    let controller = async move { reconcile(cached, ctx).await };
    let api_server = async move { server.expect_no_more().await };
    let (done, ()) = within_deadline(async { tokio::join!(controller, api_server) }).await;
    assert_eq!(
        done.ok(),
        Some(Requeue::requeue(Duration::from_secs(1))),
        "waits its turn"
    );
    drop(held);
}

/// A job metric runs pods: off unless the controller allows it, the run ends in Error saying
/// how to allow it, and no Job is created (found by review).
#[tokio::test]
async fn a_job_metric_is_not_run_unless_allowed() {
    let mut run = analysis_run();
    run["spec"]["args"] = json!([]);
    run["spec"]["metrics"] = json!([{"name": "smoke", "provider": {"job": {"spec": {
        "template": {"spec": {"containers": [{"name": "c", "image": "x"}]}}}}}}]);
    let body = refused(run, None, false).await;
    let message = body["status"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("job metrics run pods") && message.contains("--allow-job-metrics"),
        "{message}"
    );
}
