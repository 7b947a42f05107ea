//! Hostile input on the real cluster: objects the API server admits but Aviary's types reject
//! ("poison") never stop the rollouts of other namespaces, even across a controller restart.
//!
//! Today's CRDs refuse these values at admission (see `tests/admission.rs`), so the test first
//! serves an older, looser CRD — as a cluster upgraded without its CRDs still does — creates the
//! poison objects, and restores the CRDs: objects already stored stay (validation ratcheting),
//! exactly as they would in such a cluster. Its own test binary: the CRDs are cluster-wide.

mod support;

use std::time::Duration;

use aviary::api::{Rollout, RolloutPhase};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use support::controller::ControllerProcess;
use support::scrape::{probe, scrape, sum};
use support::{TestNamespace, apply_value, client, poll_until, wait_for_event};

/// The duration rule before durations were bounded: it admits 41 digits of seconds.
const UNBOUNDED_DURATION_RULE: &str =
    r"type(self) == int ? self >= 0 : self.matches('^(0|([0-9]+(\\.[0-9]+)?(ns|us|ms|s|m|h))+)$')";

const SPEC: &str = "/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties";

/// Loosens the served CRDs as an older release's were: a canary pause's `duration` and an
/// AnalysisRun's `interval` with the unbounded duration rule. (An int32 past its range is the
/// other poison an older release admitted, on Kubernetes that does not enforce `format: int32`;
/// this cluster's does.)
async fn serve_older_crds(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let loosen = [
        (
            "rollouts.aviary.dev",
            json!([{"op": "replace",
                    "path": format!("{SPEC}/strategy/properties/canary/properties/steps/items/properties/pause/properties/duration/x-kubernetes-validations"),
                    "value": [{"rule": UNBOUNDED_DURATION_RULE}]}]),
        ),
        (
            "analysisruns.aviary.dev",
            json!([{"op": "replace",
                    "path": format!("{SPEC}/metrics/items/properties/interval/x-kubernetes-validations"),
                    "value": [{"rule": UNBOUNDED_DURATION_RULE}]}]),
        ),
    ];
    for (name, patch) in loosen {
        let patch: json_patch::Patch = serde_json::from_value(patch).expect("a JSON patch");
        crds.patch(name, &PatchParams::default(), &Patch::<()>::Json(patch))
            .await
            .unwrap_or_else(|e| panic!("loosen CRD {name}: {e}"));
    }
}

fn api(client: &Client, ns: &str, kind: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("aviary.dev", "v1alpha1", kind);
    Api::namespaced_with(client.clone(), ns, &ApiResource::from_gvk(&gvk))
}

/// Creates `obj`, retrying while the API server still serves the stricter schema (a CRD
/// change reaches its handler a moment after the write).
async fn create_when_admitted(client: &Client, ns: &str, obj: Value) {
    let kind = obj["kind"].as_str().unwrap_or_default().to_string();
    let name = obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let api = api(client, ns, &kind);
    poll_until(
        &format!("the looser CRD to admit {kind} {name}"),
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            let (api, obj) = (api.clone(), obj.clone());
            async move {
                let obj: DynamicObject = serde_json::from_value(obj).ok()?;
                match api.create(&PostParams::default(), &obj).await {
                    Ok(_) => Some(()),
                    Err(kube::Error::Api(e)) if e.code == 409 => Some(()),
                    Err(_) => None,
                }
            }
        },
    )
    .await;
}

/// Restores today's CRDs and waits until the API server refuses the poison again (a dry run).
async fn restore_crds(client: &Client, ns: &str, poison: &Value) {
    support::controller::install_aviary_crds(client).await;
    let api = api(client, ns, "Rollout");
    let mut probe_obj = poison.clone();
    probe_obj["metadata"]["name"] = json!("dry-run-probe");
    poll_until(
        "today's CRD to refuse the poison again",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            let (api, obj) = (api.clone(), probe_obj.clone());
            async move {
                let obj: DynamicObject = serde_json::from_value(obj).ok()?;
                let dry = PostParams {
                    dry_run: true,
                    ..Default::default()
                };
                match api.create(&dry, &obj).await {
                    Err(kube::Error::Api(e)) if e.code == 422 => Some(()),
                    _ => None,
                }
            }
        },
    )
    .await;
}

const POISON_DURATION: &str = "99999999999999999999999999999999999999999s";

fn rollout(name: &str, image: &str, pause: Value) -> Value {
    json!({
        "apiVersion": "aviary.dev/v1alpha1", "kind": "Rollout", "metadata": {"name": name},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                         "spec": {"containers": [{"name": "web", "image": image}]}},
            "strategy": {"canary": {"steps": [{"setWeight": 50}, {"pause": pause}]}},
        }
    })
}

fn hash_of(manifest: &Value) -> String {
    let ro: Rollout = serde_json::from_value(manifest.clone()).expect("rollout manifest");
    aviary::plan::pod_template_hash(&ro.spec.template, None)
}

/// Waits until the Rollout `web` in `ns` satisfies `done`, printing what it was and the
/// controller's log on timeout.
async fn wait_rollout(
    client: &Client,
    ns: &str,
    what: &str,
    ctl: &ControllerProcess,
    done: impl Fn(&Rollout) -> bool,
) {
    let api: Api<Rollout> = Api::namespaced(client.clone(), ns);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let ro = api.get_opt("web").await.ok().flatten();
        if ro.as_ref().is_some_and(&done) {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            panic!(
                "{what}: not within 90 s; status {:?}\ncontroller log:\n{}",
                ro.and_then(|r| r.status),
                ctl.log_tail(40)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Given a poison Rollout (a 41-digit pause `duration`) and a poison AnalysisRun (a 41-digit
/// `interval`) in a tenant's namespace, and a cluster-wide controller restarted after they
/// exist: another team's Rollout still goes out and still aborts; each poison object has a
/// Warning Event naming its field; `aviary_undecodable_objects` counts them; `/readyz` is ok.
#[tokio::test]
async fn poison_objects_never_stop_the_rollouts_of_other_namespaces() {
    let client = client().await;
    support::controller::prepare(&client).await;
    // The tenant's namespace sorts first: its poison Rollout is the first of every list, the
    // one a `limit=1` probe sees (found by review: the start-up probe listed strictly).
    let tenant = TestNamespace::new(&client, "poison-a-tenant").await;
    let team = TestNamespace::new(&client, "poison-b-team").await;

    let poison_rollout = rollout(
        "poison-pause",
        "web:1",
        json!({"duration": POISON_DURATION}),
    );
    let poison_run = json!({
        "apiVersion": "aviary.dev/v1alpha1", "kind": "AnalysisRun",
        "metadata": {"name": "poison-interval",
                     "labels": {aviary::api::wire::ROLLOUT_LABEL: "poison-pause"}},
        "spec": {"metrics": [{
            "name": "m", "interval": POISON_DURATION,
            "provider": {"prometheus": {"address": "http://127.0.0.1:9", "query": "up"}},
        }]},
    });
    serve_older_crds(&client).await;
    create_when_admitted(&client, &tenant.name, poison_rollout.clone()).await;
    create_when_admitted(&client, &tenant.name, poison_run).await;
    restore_crds(&client, &tenant.name, &poison_rollout).await;

    let mut ctl = ControllerProcess::start_cluster_wide("poison", &team.name, &[]);
    let v1 = rollout("web", "web:1", json!({}));
    apply_value(&client, Some(&team.name), &v1)
        .await
        .expect("apply v1");
    let h1 = hash_of(&v1);
    wait_rollout(&client, &team.name, "v1 Healthy", &ctl, |ro| {
        let st = ro.status.clone().unwrap_or_default();
        st.phase == Some(RolloutPhase::Healthy) && st.stable_rs.as_deref() == Some(h1.as_str())
    })
    .await;

    // After a restart the poison objects are in the first list of their kinds.
    ctl.restart();
    let v2 = rollout("web", "web:2", json!({}));
    apply_value(&client, Some(&team.name), &v2)
        .await
        .expect("apply v2");
    let h2 = hash_of(&v2);
    wait_rollout(
        &client,
        &team.name,
        "v2 paused at its pause step",
        &ctl,
        |ro| {
            let st = ro.status.clone().unwrap_or_default();
            st.phase == Some(RolloutPhase::Paused)
                && st.current_pod_hash.as_deref() == Some(h2.as_str())
                && st.current_step_index == Some(1)
                && st.observed_generation == ro.metadata.generation
        },
    )
    .await;
    Api::<Rollout>::namespaced(client.clone(), &team.name)
        .patch_status(
            "web",
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {"abort": true}})),
        )
        .await
        .expect("abort");
    wait_rollout(&client, &team.name, "v2 aborted", &ctl, |ro| {
        let st = ro.status.clone().unwrap_or_default();
        st.phase == Some(RolloutPhase::Degraded) && st.aborted_at.is_some()
    })
    .await;

    for (name, field) in [
        (
            "poison-pause",
            "spec.strategy.canary.steps[1].pause.duration",
        ),
        ("poison-interval", "spec.metrics[0].interval"),
    ] {
        wait_for_event(
            &client,
            &tenant.name,
            name,
            &format!("an Undecodable Event on {name} naming {field}"),
            |reason, note| reason == "Undecodable" && note.contains(field),
        )
        .await;
    }
    let samples = scrape(ctl.metrics_addr().await)
        .await
        .expect("scrape /metrics");
    for kind in ["Rollout", "AnalysisRun"] {
        assert_eq!(
            sum(&samples, "aviary_undecodable_objects", &[("kind", kind)]),
            1.0,
            "undecodable {kind}s"
        );
    }
    assert_eq!(probe(ctl.health_addr().await, "/readyz").await, Some(200));
    // Nothing was done for the poison Rollout: no ReplicaSet, no status.
    let poison = api(&client, &tenant.name, "Rollout")
        .get("poison-pause")
        .await
        .expect("the poison Rollout is still there");
    assert_eq!(poison.data.get("status"), None, "{}", poison.name_any());

    // The SRE's listing is not stopped either: the poison Rollout is a warning naming its field.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_kubectl-aviary"))
        .args(["list", "-n", &tenant.name])
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("run kubectl-aviary list");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr
            .contains("poison-pause cannot be read: spec.strategy.canary.steps[1].pause.duration"),
        "{stderr}"
    );
}
