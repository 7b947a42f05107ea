//! The product brief's rollouts (`examples/`, ported from `../shared/brief/scenarios.md` by
//! changing `apiVersion`) run to Healthy against the local cluster, with only what a test must
//! change: pauses shortened to seconds, the analysis templates' Prometheus address pointed at the
//! local Prometheus with second-scale intervals and windows, a `count` on metrics used by an
//! analysis *step* (with `interval` and no `count` a metric measures until the run is
//! terminated, so a step waiting on it would wait forever — in Argo Rollouts too), and the
//! `service-name` arg pointed at this test's simulated series.

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aviary::api::{AnalysisPhase, Rollout, RolloutPhase};
use aviary_trafficsim::exporter::Exporter;
use aviary_trafficsim::traffic::{Behaviour, SimConfig};
use kube::api::Api;
use kube::{Client, ResourceExt};
use serde_json::Value;
use support::controller::{ControllerProcess, prepare};
use support::{TestNamespace, apply_value, client, poll_until, yaml_documents};

fn shorten(doc: &mut Value, prometheus: &str, service: &str, pause: &str) {
    match doc {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                match (k.as_str(), &*v) {
                    ("duration", Value::String(_)) => *v = Value::String(pause.into()),
                    ("interval", Value::String(_)) => *v = Value::String("2s".into()),
                    ("address", Value::String(_)) => *v = Value::String(prometheus.into()),
                    ("query", Value::String(q)) => *v = Value::String(q.replace("[5m]", "[10s]")),
                    _ => shorten(v, prometheus, service, pause),
                }
            }
            if map.get("name").and_then(Value::as_str) == Some("service-name")
                && map.contains_key("value")
            {
                map.insert("value".into(), Value::String(service.into()));
            }
            if map.contains_key("successCondition") {
                map.entry("count").or_insert(Value::from(3));
                map.entry("initialDelay")
                    .or_insert(Value::String("3s".into()));
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|i| shorten(i, prometheus, service, pause)),
        _ => {}
    }
}

fn set_image(doc: &mut Value, image: &str) {
    if doc["kind"] == "Rollout" {
        doc["spec"]["template"]["spec"]["containers"][0]["image"] = Value::String(image.into());
    }
}

async fn run_scenario(example: &str, rollout: &str, app: &str, analysis_type: &str, pause: &str) {
    let client: Client = client().await;
    prepare(&client).await;
    let ns = TestNamespace::new(&client, &format!("brief-{app}")).await;
    let prometheus = std::env::var("AVIARY_PROMETHEUS_URL").expect("AVIARY_PROMETHEUS_URL");
    let service = format!("{}-{app}", ns.name);
    let root = support::repo_root().join("examples");
    let mut docs = yaml_documents(
        &std::fs::read_to_string(root.join("analysis-templates.yaml")).expect("templates"),
    );
    docs.extend(yaml_documents(
        &std::fs::read_to_string(root.join(example)).expect("example"),
    ));
    for d in docs.iter_mut() {
        shorten(d, &prometheus, &service, pause);
    }
    let ctl = ControllerProcess::start(&ns.name);
    let exporter = Arc::new(Exporter::start(&ns.name).await);
    let sim = Arc::new(Mutex::new(SimConfig {
        namespace: ns.name.clone(),
        rollout: rollout.into(),
        rps: 200.0,
        behaviours: BTreeMap::new(),
        default: Behaviour::default(),
        service_prefix: String::new(),
        service_label: Some(service.clone()),
    }));
    let sim_task = tokio::spawn(aviary_trafficsim::traffic::run(
        client.clone(),
        exporter,
        sim,
        Duration::from_millis(200),
    ));

    let api: Api<Rollout> = Api::namespaced(client.clone(), &ns.name);
    for (i, image) in ["example.invalid/app:1", "example.invalid/app:2"]
        .into_iter()
        .enumerate()
    {
        for d in docs.iter_mut() {
            set_image(d, image);
            apply_value(&client, Some(&ns.name), d)
                .await
                .unwrap_or_else(|e| panic!("apply {}: {e}", d["metadata"]["name"]));
        }
        let ro = docs
            .iter()
            .find(|d| d["kind"] == "Rollout")
            .expect("a Rollout in the example");
        let ro: Rollout = serde_json::from_value(ro.clone()).expect("rollout");
        let hash = aviary::plan::pod_template_hash(&ro.spec.template, None);
        poll_until(
            &format!("{rollout} revision {} Healthy", i + 1),
            Duration::from_secs(120),
            Duration::from_millis(200),
            || {
                let api = api.clone();
                let hash = hash.clone();
                async move {
                    let r = api.get(rollout).await.ok()?;
                    let st = r.status?;
                    (st.phase == Some(RolloutPhase::Healthy)
                        && st.stable_rs.as_deref() == Some(hash.as_str())
                        && st.observed_generation == r.metadata.generation)
                        .then_some(())
                }
            },
        )
        .await;
    }
    sim_task.abort();
    // The Event is recorded just after the status write that made the rollout Healthy.
    support::wait_for_event(
        &client,
        &ns.name,
        rollout,
        "a RolloutCompleted Event",
        |r, _| r == "RolloutCompleted",
    )
    .await;
    let _ = &ctl;
    // The analysis really ran: a run of the expected type measured successfully and passed.
    let runs = Api::<aviary::api::AnalysisRun>::namespaced(client.clone(), &ns.name)
        .list(&Default::default())
        .await
        .expect("list runs")
        .items;
    let run = runs.iter().find(|r| {
        r.labels()
            .get("aviary.dev/analysis-type")
            .map(String::as_str)
            == Some(analysis_type)
    });
    let st = run
        .and_then(|r| r.status.clone())
        .unwrap_or_else(|| panic!("a {analysis_type} AnalysisRun: {runs:?}"));
    let measured: i32 = st.metric_results.iter().map(|m| m.successful).sum();
    assert!(
        measured >= 1,
        "{analysis_type} run measured successfully: {st:?}"
    );
    assert_eq!(st.phase, AnalysisPhase::Successful, "{st:?}");
}

#[tokio::test]
async fn the_briefs_istio_canary_with_background_analysis_runs_to_healthy() {
    // Pauses long enough for the background run to measure a few times before promotion.
    run_scenario("canary-istio.yaml", "bff", "bff", "Background", "8s").await;
}

#[tokio::test]
async fn the_briefs_nginx_canary_with_an_analysis_step_runs_to_healthy() {
    run_scenario(
        "canary-nginx.yaml",
        "phoenix-api",
        "phoenix-api",
        "Step",
        "1s",
    )
    .await;
}
