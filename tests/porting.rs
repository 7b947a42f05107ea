//! The porting promise, end to end: each Argo Rollouts manifest in `tests/data/argo/` (written
//! with `argoproj.io/v1alpha1`) runs on the local cluster, with only its apiVersion changed, to
//! the outcome Argo documents (the `# expect:` line at the top of the file; see its README).

mod support;

use std::path::Path;
use std::time::Duration;

use aviary::api::{Rollout, RolloutPhase};
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};
use support::controller::{ControllerProcess, prepare};
use support::{TestNamespace, apply_value, client, poll_until, repo_root, yaml_documents};

/// What a file expects of its update.
#[derive(Debug)]
struct Expectation {
    phase: RolloutPhase,
    /// Text the Rollout's message must hold.
    message: String,
    /// The update to apply (default: the first container's image to `web:2`).
    update: Value,
}

fn expectation(file: &Path, text: &str) -> Expectation {
    let header = |key: &str| {
        text.lines()
            .take_while(|l| l.starts_with('#'))
            .find_map(|l| l.strip_prefix(&format!("# {key}:")).map(str::trim))
    };
    let expect =
        header("expect").unwrap_or_else(|| panic!("{}: no '# expect:' line", file.display()));
    let (phase, message) = expect.split_once(' ').unwrap_or((expect, ""));
    assert!(
        phase == "Healthy" || !message.trim().is_empty(),
        "{}: '# expect: Degraded' needs the text its message must hold",
        file.display()
    );
    let phase = match phase {
        "Healthy" => RolloutPhase::Healthy,
        "Degraded" => RolloutPhase::Degraded,
        other => panic!("{}: unknown phase {other}", file.display()),
    };
    let update = match header("update") {
        Some(patch) => serde_json::from_str(patch)
            .unwrap_or_else(|e| panic!("{}: '# update:' is not JSON: {e}", file.display())),
        None => Value::Null,
    };
    Expectation {
        phase,
        message: message.to_owned(),
        update,
    }
}

/// The document with only its apiVersion changed, as a user ports it.
fn ported(mut doc: Value) -> Value {
    if doc["apiVersion"] == json!("argoproj.io/v1alpha1") {
        doc["apiVersion"] = json!("aviary.dev/v1alpha1");
    }
    doc
}

async fn run_file(file: &Path) {
    let text = std::fs::read_to_string(file).expect("read");
    let expected = expectation(file, &text);
    let client = client().await;
    let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or("argo");
    let ns = TestNamespace::new(&client, &format!("port-{}", &stem[..stem.len().min(20)])).await;
    let ctl = ControllerProcess::start_with(
        &ns.name,
        &[
            "--allow-job-metrics",
            "--prometheus-address",
            &std::env::var("AVIARY_PROMETHEUS_URL").expect("AVIARY_PROMETHEUS_URL"),
        ],
    );
    let docs: Vec<Value> = yaml_documents(&text).into_iter().map(ported).collect();
    for doc in &docs {
        apply_value(&client, Some(&ns.name), doc)
            .await
            .unwrap_or_else(|e| panic!("{}: {} refused: {e}", file.display(), doc["kind"]));
    }
    let rollout = docs
        .iter()
        .find(|d| d["kind"] == json!("Rollout"))
        .unwrap_or_else(|| panic!("{}: no Rollout", file.display()));
    let name = rollout["metadata"]["name"]
        .as_str()
        .unwrap_or("web")
        .to_owned();
    let api: Api<Rollout> = Api::namespaced(client.clone(), &ns.name);
    let phase_is = |phase: RolloutPhase, what: String| {
        let api = api.clone();
        let name = name.clone();
        async move {
            poll_until(
                &what,
                Duration::from_secs(90),
                Duration::from_millis(200),
                || {
                    let api = api.clone();
                    let name = name.clone();
                    async move {
                        let ro = api.get(&name).await.ok()?;
                        let st = ro.status?;
                        (st.phase == Some(phase)
                            && st.observed_generation == ro.metadata.generation)
                            .then(|| st.message.unwrap_or_default())
                    }
                },
            )
            .await
        }
    };
    phase_is(
        RolloutPhase::Healthy,
        format!("{} v1 Healthy", file.display()),
    )
    .await;
    let v1_hash = api
        .get(&name)
        .await
        .ok()
        .and_then(|r| r.status)
        .and_then(|s| s.stable_rs)
        .unwrap_or_default();
    let update = if expected.update.is_null() {
        let mut containers = rollout["spec"]["template"]["spec"]["containers"].clone();
        containers[0]["image"] = json!("web:2");
        json!({"spec": {"template": {"spec": {"containers": containers}}}})
    } else {
        expected.update.clone()
    };
    api.patch(&name, &PatchParams::default(), &Patch::Merge(&update))
        .await
        .expect("update");
    let message = phase_is(
        expected.phase,
        format!("{}: {:?} after the update", file.display(), expected.phase),
    )
    .await;
    assert!(
        message.contains(&expected.message),
        "{}: message {message:?} should hold {:?}\n{}",
        file.display(),
        expected.message,
        ctl.log_tail(20)
    );
    // Degraded: the update was not promoted; v1 stays the stable revision.
    if expected.phase == RolloutPhase::Degraded {
        let live = api.get(&name).await.expect("rollout");
        let stable = live.status.and_then(|s| s.stable_rs).unwrap_or_default();
        assert_eq!(stable, v1_hash, "{}: v1 stays stable", file.display());
    }
    // Healthy means the update itself was promoted, and every analysis it ran passed.
    if expected.phase == RolloutPhase::Healthy {
        let live = api.get(&name).await.expect("rollout");
        let hash = aviary::plan::pod_template_hash(&live.spec.template, None);
        let stable = live.status.and_then(|s| s.stable_rs).unwrap_or_default();
        assert_eq!(
            stable,
            hash,
            "{}: the update is the stable revision",
            file.display()
        );
        let runs: Api<aviary::api::AnalysisRun> = Api::namespaced(client.clone(), &ns.name);
        let runs = runs.list(&Default::default()).await.expect("runs").items;
        let has_analysis = docs.iter().any(|d| d["kind"] == json!("AnalysisTemplate"));
        assert!(
            !has_analysis || !runs.is_empty(),
            "{}: no AnalysisRun",
            file.display()
        );
        for run in runs {
            let phase = run.status.map(|s| s.phase);
            assert_eq!(
                phase,
                Some(aviary::api::AnalysisPhase::Successful),
                "{}: AnalysisRun {:?}",
                file.display(),
                run.metadata.name
            );
        }
    }
}

#[tokio::test]
async fn argo_manifests_run_to_the_outcome_argo_documents() {
    let dir = repo_root().join("tests/data/argo");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/data/argo")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "only {} manifests", files.len());
    prepare(&client().await).await;
    // One namespace and controller per file, all at once: they are independent.
    futures::future::join_all(files.iter().map(|f| run_file(f))).await;
}
