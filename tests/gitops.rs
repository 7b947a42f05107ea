//! What GitOps tools see of a Rollout, on the real cluster, read by their own code: kstatus from
//! sigs.k8s.io/cli-utils (Flux, `kubectl wait`-style tools) and Argo CD's Lua VM (gopher-lua)
//! running `integrations/argocd`, both as the helpers of hack/gitops-tools. Each phase of a
//! canary and a blue-green rollout is captured live and judged by both; Argo CD's resource
//! actions are run in its VM and their patches applied as Argo CD applies them.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use aviary::api::Rollout;
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};
use support::controller::ControllerProcess;
use support::{TestNamespace, apply_value, client, poll_until};

fn tools() -> PathBuf {
    PathBuf::from(std::env::var("AVIARY_GITOPS_TOOLS").expect(
        "AVIARY_GITOPS_TOOLS (from hack/cluster.sh env; build with hack/build-bins.sh gitops)",
    ))
}

fn argocd_dir() -> PathBuf {
    support::repo_root().join("integrations/argocd")
}

/// Runs a helper of hack/gitops-tools on `obj` and decodes its one line of JSON.
fn tool(bin: &str, args: &[&str], obj: &Value) -> Value {
    let out = support::run_with_input(&tools().join(bin), args, &obj.to_string());
    serde_json::from_str(&out).expect("one JSON line")
}

/// kstatus' verdict: InProgress, Current, Failed, …
fn kstatus(obj: &Value) -> String {
    tool("kstatus", &[], obj)["status"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Argo CD's health of an Aviary Rollout, by our health.lua, as (status, message). It must
/// also be what Argo CD's own health script for argoproj.io Rollouts says of the same status
/// (tests/data/argocd): Aviary keeps Argo Rollouts' status, so Argo CD users see the same.
fn argocd_health(obj: &Value) -> (String, String) {
    let ours = tool(
        "argocd-lua",
        &[
            "health",
            &argocd_dir().join("health.lua").display().to_string(),
        ],
        obj,
    );
    let mut as_argo = obj.clone();
    as_argo["apiVersion"] = json!("argoproj.io/v1alpha1");
    let argo_script = support::repo_root().join("tests/data/argocd/argoproj-rollout-health.lua");
    let argos = tool(
        "argocd-lua",
        &["-open-libs", "health", &argo_script.display().to_string()],
        &as_argo,
    );
    assert_eq!(
        ours, argos,
        "Argo CD's own Rollout health script reads this status the same"
    );
    let s = |k: &str| ours[k].as_str().unwrap_or_default().to_string();
    (s("status"), s("message"))
}

/// Runs Argo CD resource action `name` on `obj` in Argo CD's VM; returns its merge patch.
fn argocd_action(name: &str, obj: &Value) -> Value {
    let script = argocd_dir().join("actions").join(name).join("action.lua");
    tool(
        "argocd-lua",
        &["action", &script.display().to_string()],
        obj,
    )["patch"]
        .clone()
}

/// Whether discovery.lua offers action `name` for `obj`.
fn offered(name: &str, obj: &Value) -> bool {
    let script = argocd_dir().join("actions/discovery.lua");
    let actions = tool(
        "argocd-lua",
        &["discovery", &script.display().to_string()],
        obj,
    );
    actions.get(name).is_some() && actions[name]["disabled"] != json!(true)
}

/// Applies an action's merge patch as Argo CD's server does: the whole patch to the status
/// subresource when it touches status, then what is not status to the resource.
async fn apply_action(client: &Client, ns: &str, name: &str, patch: &Value) {
    let api: Api<Rollout> = Api::namespaced(client.clone(), ns);
    let pp = PatchParams::default();
    if patch.get("status").is_some() {
        api.patch_status(name, &pp, &Patch::Merge(patch))
            .await
            .expect("status patch");
    }
    let mut rest = patch.clone();
    if let Some(m) = rest.as_object_mut() {
        m.remove("status");
        if !m.is_empty() {
            api.patch(name, &pp, &Patch::Merge(&rest))
                .await
                .expect("patch");
        }
    }
}

/// The Rollout as a GitOps tool reads it: the API server's JSON.
async fn live(client: &Client, ns: &str, name: &str) -> Value {
    let ar = ApiResource::erase::<Rollout>(&());
    let obj = Api::<DynamicObject>::namespaced_with(client.clone(), ns, &ar)
        .get(name)
        .await
        .expect("get Rollout");
    serde_json::to_value(obj).expect("json")
}

/// Waits until the controller has observed the newest spec and `ready` holds of the status.
async fn wait_status(
    client: &Client,
    ns: &str,
    name: &str,
    what: &str,
    ready: fn(&Value) -> bool,
) -> Value {
    poll_until(
        what,
        Duration::from_secs(90),
        Duration::from_millis(200),
        || async move {
            let obj = live(client, ns, name).await;
            let observed = obj["status"]["observedGeneration"] == obj["metadata"]["generation"];
            (observed && ready(&obj["status"])).then_some(obj)
        },
    )
    .await
}

fn phase(s: &Value) -> &str {
    s["phase"].as_str().unwrap_or_default()
}

fn paused_for(s: &Value, reason: &str) -> bool {
    phase(s) == "Paused"
        && s["pauseConditions"]
            .as_array()
            .is_some_and(|p| p.iter().any(|c| c["reason"] == reason))
}

fn condition<'a>(s: &'a Value, type_: &str) -> &'a Value {
    s["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
        .unwrap_or(&Value::Null)
}

fn canary(image: &str, steps: Value) -> Value {
    json!({
        "apiVersion": "aviary.dev/v1alpha1", "kind": "Rollout", "metadata": {"name": "web"},
        "spec": {"replicas": 2,
                 "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": image}]}},
                 "strategy": {"canary": {"steps": steps}}},
    })
}

async fn set_image(client: &Client, ns: &str, name: &str, image: &str) {
    Api::<Rollout>::namespaced(client.clone(), ns)
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"template": {"spec": {"containers": [
                {"name": name, "image": image}]}}}})),
        )
        .await
        .expect("set image");
}

/// Given a canary `[setWeight 50, pause {}]`, at each phase kstatus and Argo CD read:
/// Healthy → Current / Healthy; paused at `pause: {}` → InProgress (Reconciling=True naming the
/// pause) / Suspended; Argo CD's `promote` → Healthy; `abort` → Failed / Degraded with the abort
/// message; `retry` → InProgress again; a spec naming a missing Service → Failed / Degraded.
/// (kstatus already read the old conditions of a pause as InProgress, through `Ready=False`;
/// the conditions now say so themselves, with the pause as the reason.)
#[tokio::test]
async fn canary_phases_read_truthfully_by_kstatus_and_argo_cd() {
    let client = client().await;
    support::controller::prepare(&client).await;
    let ns = TestNamespace::new(&client, "gitops-canary").await;
    let _ctl = ControllerProcess::start(&ns.name);
    let steps = json!([{"setWeight": 50}, {"pause": {}}]);
    apply_value(&client, Some(&ns.name), &canary("web:1", steps))
        .await
        .expect("Rollout");
    let healthy = |s: &Value| phase(s) == "Healthy";
    let obj = wait_status(&client, &ns.name, "web", "Healthy", healthy).await;
    assert_eq!(kstatus(&obj), "Current");
    assert_eq!(argocd_health(&obj).0, "Healthy");
    assert!(!offered("promote", &obj) && !offered("abort", &obj) && offered("pause", &obj));

    set_image(&client, &ns.name, "web", "web:2").await;
    let paused = |s: &Value| paused_for(s, "CanaryPauseStep");
    let obj = wait_status(&client, &ns.name, "web", "paused at pause {}", paused).await;
    assert_eq!(kstatus(&obj), "InProgress", "a pause is not done");
    let reconciling = condition(&obj["status"], "Reconciling");
    assert_eq!(reconciling["status"], "True");
    assert_eq!(reconciling["reason"], "CanaryPauseStep");
    assert_eq!(argocd_health(&obj).0, "Suspended");
    assert!(offered("promote", &obj) && offered("abort", &obj) && !offered("retry", &obj));

    // Argo CD's promote writes what `kubectl aviary promote` writes.
    let patch = argocd_action("promote", &obj);
    let ro: Rollout = serde_json::from_value(obj.clone()).expect("Rollout");
    let cli = aviary::cli::actions::promote_plan(&ro, false).expect("promote plan");
    assert_eq!(
        (Some(&patch), None),
        (cli.status.as_ref(), cli.spec.as_ref()),
        "{patch}"
    );
    apply_action(&client, &ns.name, "web", &patch).await;
    let obj = wait_status(&client, &ns.name, "web", "Healthy after promote", healthy).await;
    assert_eq!(kstatus(&obj), "Current");

    set_image(&client, &ns.name, "web", "web:3").await;
    let obj = wait_status(&client, &ns.name, "web", "paused again", paused).await;
    apply_action(&client, &ns.name, "web", &argocd_action("abort", &obj)).await;
    let degraded = |s: &Value| phase(s) == "Degraded";
    let obj = wait_status(&client, &ns.name, "web", "Degraded after abort", degraded).await;
    assert_eq!(kstatus(&obj), "Failed");
    let (status, message) = argocd_health(&obj);
    assert_eq!(status, "Degraded");
    assert!(message.starts_with("Rollout aborted"), "{message}");
    assert_eq!(
        condition(&obj["status"], "Stalled")["reason"],
        "RolloutAborted"
    );
    assert!(offered("retry", &obj) && !offered("promote", &obj));

    apply_action(&client, &ns.name, "web", &argocd_action("retry", &obj)).await;
    let obj = wait_status(&client, &ns.name, "web", "paused after retry", paused).await;
    assert_eq!(kstatus(&obj), "InProgress");

    // An invalid spec: Stalled, so kstatus says Failed, not Current or InProgress for ever.
    Api::<Rollout>::namespaced(client.clone(), &ns.name)
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"strategy": {"canary": {"canaryService": "missing"}}}})),
        )
        .await
        .expect("break the spec");
    let invalid = |s: &Value| condition(s, "InvalidSpec")["status"] == "True";
    let obj = wait_status(&client, &ns.name, "web", "InvalidSpec", invalid).await;
    assert_eq!(kstatus(&obj), "Failed");
    assert_eq!(
        condition(&obj["status"], "Stalled")["reason"],
        "InvalidSpec"
    );
    let (status, message) = argocd_health(&obj);
    assert_eq!(status, "Degraded");
    assert!(message.contains("missing"), "{message}");
}

/// Given a blue-green Rollout without auto-promotion: waiting for promotion is InProgress /
/// Suspended, Argo CD's `promote` ends it, and the Rollout is Current / Healthy; `pause` and
/// `resume` write spec.paused as `kubectl aviary pause` and `resume` do.
#[tokio::test]
async fn blue_green_phases_read_truthfully_by_kstatus_and_argo_cd() {
    let client = client().await;
    support::controller::prepare(&client).await;
    let ns = TestNamespace::new(&client, "gitops-bg").await;
    for svc in ["active", "preview"] {
        apply_value(
            &client,
            Some(&ns.name),
            &json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": svc},
                    "spec": {"selector": {"app": "bg"}, "ports": [{"port": 80}]}}),
        )
        .await
        .expect("Service");
    }
    let _ctl = ControllerProcess::start(&ns.name);
    let ro = json!({
        "apiVersion": "aviary.dev/v1alpha1", "kind": "Rollout", "metadata": {"name": "bg"},
        "spec": {"replicas": 1,
                 "selector": {"matchLabels": {"app": "bg"}},
                 "template": {"metadata": {"labels": {"app": "bg"}},
                              "spec": {"containers": [{"name": "bg", "image": "bg:1"}]}},
                 "strategy": {"blueGreen": {"activeService": "active", "previewService": "preview",
                                            "autoPromotionEnabled": false}}},
    });
    apply_value(&client, Some(&ns.name), &ro)
        .await
        .expect("Rollout");
    let healthy = |s: &Value| phase(s) == "Healthy";
    let obj = wait_status(&client, &ns.name, "bg", "Healthy", healthy).await;
    assert_eq!(kstatus(&obj), "Current");
    assert_eq!(argocd_health(&obj).0, "Healthy");

    set_image(&client, &ns.name, "bg", "bg:2").await;
    let paused = |s: &Value| paused_for(s, "BlueGreenPause");
    let obj = wait_status(&client, &ns.name, "bg", "awaiting promotion", paused).await;
    assert_eq!(kstatus(&obj), "InProgress");
    assert_eq!(
        condition(&obj["status"], "Reconciling")["reason"],
        "BlueGreenPause"
    );
    assert_eq!(argocd_health(&obj).0, "Suspended");

    // pause / resume: spec.paused, as the CLI writes it.
    let patch = argocd_action("pause", &obj);
    assert_eq!(patch, json!({"spec": {"paused": true}}));
    apply_action(&client, &ns.name, "bg", &patch).await;
    let manual = |s: &Value| phase(s) == "Paused" && s["message"] == "manually paused";
    let obj = wait_status(&client, &ns.name, "bg", "manually paused", manual).await;
    assert_eq!(kstatus(&obj), "InProgress");
    assert!(offered("resume", &obj) && !offered("pause", &obj));
    let patch = argocd_action("resume", &obj);
    assert_eq!(patch, json!({"spec": {"paused": false}}));
    apply_action(&client, &ns.name, "bg", &patch).await;
    let obj = wait_status(&client, &ns.name, "bg", "awaiting promotion again", paused).await;

    apply_action(&client, &ns.name, "bg", &argocd_action("promote", &obj)).await;
    let obj = wait_status(&client, &ns.name, "bg", "Healthy after promote", |s| {
        phase(s) == "Healthy" && s["stableRS"] == s["currentPodHash"]
    })
    .await;
    assert_eq!(kstatus(&obj), "Current");
    assert_eq!(argocd_health(&obj), ("Healthy".to_string(), String::new()));

    // restart: spec.restartAt, now.
    let patch = argocd_action("restart", &obj);
    let at = patch["spec"]["restartAt"].as_str().expect("restartAt");
    let at: k8s_openapi::jiff::Timestamp = at.parse().expect("a timestamp");
    let age = k8s_openapi::jiff::Timestamp::now().duration_since(at);
    assert!(age.as_secs().abs() < 60, "restartAt is now: {at}");
    assert_eq!(
        at.subsec_nanosecond(),
        0,
        "whole seconds, as the CLI writes"
    );
}

/// Given a canary whose analysis step measures a value neither its success nor its failure
/// condition holds: the run is Inconclusive and the Rollout pauses for a human — InProgress for
/// kstatus (Reconciling=True naming InconclusiveAnalysisRun), Suspended for Argo CD; Argo CD's
/// `promote-full` then finishes it (Current / Healthy).
#[tokio::test]
async fn an_inconclusive_analysis_pause_reads_as_in_progress_and_suspended() {
    let client = client().await;
    support::controller::prepare(&client).await;
    let ns = TestNamespace::new(&client, "gitops-inconclusive").await;
    let receiver = support::webhook::WebhookReceiver::start().await;
    receiver.serve_document(json!({"v": 5}));
    let template = json!({
        "apiVersion": "aviary.dev/v1alpha1", "kind": "AnalysisTemplate", "metadata": {"name": "inc"},
        "spec": {"metrics": [{"name": "v", "successCondition": "result == 1",
                              "failureCondition": "result == 0",
                              "provider": {"web": {"url": receiver.url("/v"), "jsonPath": "{$.v}"}}}]},
    });
    apply_value(&client, Some(&ns.name), &template)
        .await
        .expect("AnalysisTemplate");
    let _ctl = ControllerProcess::start(&ns.name);
    let steps = json!([{"setWeight": 50}, {"analysis": {"templates": [{"templateName": "inc"}]}}]);
    apply_value(&client, Some(&ns.name), &canary("web:1", steps))
        .await
        .expect("Rollout");
    wait_status(&client, &ns.name, "web", "Healthy", |s| {
        phase(s) == "Healthy"
    })
    .await;
    set_image(&client, &ns.name, "web", "web:2").await;
    let paused = |s: &Value| paused_for(s, "InconclusiveAnalysisRun");
    let obj = wait_status(&client, &ns.name, "web", "paused: inconclusive", paused).await;
    assert_eq!(kstatus(&obj), "InProgress");
    assert_eq!(
        condition(&obj["status"], "Reconciling")["reason"],
        "InconclusiveAnalysisRun"
    );
    assert_eq!(argocd_health(&obj).0, "Suspended");

    let patch = argocd_action("promote-full", &obj);
    let ro: Rollout = serde_json::from_value(obj.clone()).expect("Rollout");
    let cli = aviary::cli::actions::promote_plan(&ro, true).expect("promote plan");
    assert_eq!(
        Some(&patch),
        cli.status.as_ref(),
        "what `promote --full` writes"
    );
    apply_action(&client, &ns.name, "web", &patch).await;
    let obj = wait_status(
        &client,
        &ns.name,
        "web",
        "Healthy after promote-full",
        |s| phase(s) == "Healthy" && s["stableRS"] == s["currentPodHash"],
    )
    .await;
    assert_eq!(kstatus(&obj), "Current");
    assert_eq!(argocd_health(&obj).0, "Healthy");
}

/// integrations/argocd/argocd-cm.yaml (hack/argocd-cm.py) holds the Lua files byte for byte,
/// and every action there is; the chart's copy is the same file.
#[test]
fn the_argocd_cm_patch_holds_the_scripts_as_they_are() {
    let dir = argocd_dir();
    let read =
        |p: &str| std::fs::read_to_string(dir.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    let cm: serde_yaml::Value =
        serde_yaml::from_str(&read("argocd-cm.yaml")).expect("argocd-cm.yaml");
    let data = &cm["data"];
    let stale = "stale: run python3 hack/argocd-cm.py";
    assert_eq!(
        data["resource.customizations.health.aviary.dev_Rollout"].as_str(),
        Some(read("health.lua").as_str()),
        "{stale}"
    );
    let actions: serde_yaml::Value = serde_yaml::from_str(
        data["resource.customizations.actions.aviary.dev_Rollout"]
            .as_str()
            .expect("actions"),
    )
    .expect("actions YAML");
    assert_eq!(
        actions["discovery.lua"].as_str(),
        Some(read("actions/discovery.lua").as_str()),
        "{stale}"
    );
    let mut names = vec![];
    for d in actions["definitions"].as_sequence().expect("definitions") {
        let name = d["name"].as_str().expect("name");
        assert_eq!(
            d["action.lua"].as_str(),
            Some(read(&format!("actions/{name}/action.lua")).as_str()),
            "{name}: {stale}"
        );
        names.push(name.to_string());
    }
    let mut dirs: Vec<String> = std::fs::read_dir(dir.join("actions"))
        .expect("actions dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    dirs.sort();
    names.sort();
    assert_eq!(names, dirs, "every action is in the patch");
    let chart_copy = support::repo_root().join("charts/aviary/files/argocd-cm.yaml");
    assert_eq!(
        std::fs::read_to_string(&chart_copy).ok().as_deref(),
        Some(read("argocd-cm.yaml").as_str()),
        "the chart's copy ({}) is {stale}",
        chart_copy.display()
    );
}
