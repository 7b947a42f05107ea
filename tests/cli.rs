//! `kubectl aviary` end to end: the built plugin against the local cluster while the real
//! controller drives a real rollout. Each test reads as given / when / then, and checks exit
//! codes, the one-line messages and what the plugin wrote.

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use aviary::api::{Rollout, RolloutPhase};
use kube::api::Api;
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use support::controller::{ControllerProcess, grant_rbac, install_aviary_crds, wait_rbac};
use support::{TestNamespace, apply_value, client, poll_until};

/// What a run of the plugin gave.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn plugin_path() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_kubectl-aviary"))
}

/// Runs the plugin with the admin kubeconfig from the environment (`extra_env` overrides).
async fn aviary_env(args: &[&str], extra_env: &[(&str, &str)]) -> Run {
    let mut cmd = tokio::process::Command::new(plugin_path());
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_remove("NO_COLOR");
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let out = cmd.output().await.expect("run kubectl-aviary");
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    println!(
        "$ kubectl aviary {}\n{}{}[exit {}]",
        args.join(" "),
        run.stdout,
        run.stderr,
        run.code
    );
    run
}

async fn aviary(args: &[&str]) -> Run {
    aviary_env(args, &[]).await
}

/// Asserts the exit code and that stderr is exactly one `error: …` line containing `needle`.
fn assert_error(run: &Run, code: i32, needle: &str) {
    assert_eq!(run.code, code, "exit code; stderr: {}", run.stderr);
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line on stderr, got: {:?}", run.stderr);
    assert!(lines[0].starts_with("error: "), "{}", lines[0]);
    assert!(
        lines[0].contains(needle),
        "{:?} does not contain {needle:?}",
        lines[0]
    );
    assert!(!run.stderr.contains("panicked") && !run.stderr.contains("backtrace"));
}

async fn setup(client: &Client) {
    install_aviary_crds(client).await;
    grant_rbac(client).await;
    wait_rbac(client).await;
}

fn rollout(image: &str, steps: Value) -> Value {
    json!({
        "apiVersion": "aviary.dev/v1alpha1", "kind": "Rollout", "metadata": {"name": "web"},
        "spec": {
            "replicas": 4,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                         "spec": {"containers": [{"name": "web", "image": image,
                            "ports": [{"containerPort": 8080}],
                            "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}, "periodSeconds": 5}}]}},
            "strategy": {"canary": {"steps": steps}}
        }
    })
}

fn pause_steps() -> Value {
    json!([{"setWeight": 25}, {"pause": {}}, {"setWeight": 50}, {"pause": {}}])
}

async fn get_ro(client: &Client, ns: &str) -> Rollout {
    Api::<Rollout>::namespaced(client.clone(), ns)
        .get("web")
        .await
        .expect("get rollout")
}

/// Waits until the rollout's status satisfies `check`.
async fn wait_for(
    client: &Client,
    ns: &str,
    what: &str,
    ctl: &ControllerProcess,
    check: impl Fn(&Rollout) -> bool,
) {
    let api: Api<Rollout> = Api::namespaced(client.clone(), ns);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(ro) = api.get("web").await {
            let observed =
                ro.status.as_ref().and_then(|s| s.observed_generation) == ro.metadata.generation;
            if observed && check(&ro) {
                return;
            }
            if std::time::Instant::now() > deadline {
                panic!(
                    "timed out waiting for {what}: status {:#?}\ncontroller log:\n{}",
                    ro.status,
                    ctl.log_tail(30)
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn phase(ro: &Rollout) -> Option<RolloutPhase> {
    ro.status.as_ref().and_then(|s| s.phase)
}

fn step(ro: &Rollout) -> i32 {
    ro.status
        .as_ref()
        .map(|s| s.current_step_index())
        .unwrap_or(-1)
}

/// A namespace with the controller running and the rollout Healthy on `web:1`.
async fn healthy_rollout(
    client: &Client,
    prefix: &str,
    steps: Value,
) -> (TestNamespace, ControllerProcess) {
    setup(client).await;
    let ns = TestNamespace::new(client, prefix).await;
    apply_value(client, Some(&ns.name), &rollout("web:1", steps))
        .await
        .expect("apply rollout");
    let ctl = ControllerProcess::start(&ns.name);
    (ns, ctl)
}

/// Given a healthy rollout, when its image is set and it is promoted, aborted, retried and fully
/// promoted with the plugin, then each command writes what the controller reads and `status`
/// exits 0 (Healthy), 1 (Degraded) or 2 (timeout) accordingly.
#[tokio::test]
async fn set_image_promote_abort_retry_and_status_exit_codes() {
    let client = client().await;
    let (ns, ctl) = healthy_rollout(&client, "cli-steer", pause_steps()).await;
    let n = ns.name.as_str();

    let run = aviary(&["-n", n, "status", "web", "--timeout", "60s"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.lines().last() == Some("Healthy"),
        "{}",
        run.stdout
    );

    let run = aviary(&["-n", n, "set", "image", "web", "web=web:2"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    let ro = get_ro(&client, n).await;
    let image = ro
        .spec
        .template
        .spec
        .as_ref()
        .and_then(|s| s.containers[0].image.clone());
    assert_eq!(image.as_deref(), Some("web:2"));
    wait_for(&client, n, "paused at step 1", &ctl, |ro| {
        phase(ro) == Some(RolloutPhase::Paused) && step(ro) == 1
    })
    .await;

    // Paused keeps status waiting: the timeout gives exit 2.
    let run = aviary(&["-n", n, "status", "web", "--timeout", "2s"]).await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stdout.contains("Paused - CanaryPauseStep"),
        "{}",
        run.stdout
    );
    assert_error(&run, 2, "timed out after 2s waiting for rollout 'web'");

    let run = aviary(&["-n", n, "get", "rollout", "web"]).await;
    assert_eq!(run.code, 0);
    for want in [
        "Status:          ॥ Paused",
        "Step:          1/4 (pause)",
        "SetWeight:     25",
        "ActualWeight:  25",
        "web:1 (stable)",
        "web:2 (canary)",
        "# revision:2",
        "# revision:1",
        "canary, 1/1 available",
        "Pod",
    ] {
        assert!(
            run.stdout.contains(want),
            "get output lacks {want:?}:\n{}",
            run.stdout
        );
    }
    let run = aviary(&["-n", n, "get", "rollout", "web", "-o", "json"]).await;
    let v: Value = serde_json::from_str(&run.stdout).expect("get -o json is JSON");
    assert_eq!(v["status"], "Paused");
    assert_eq!(v["step"]["index"], 1);
    assert_eq!(v["setWeight"], 25);
    assert_eq!(v["revisions"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        v["revisions"][0]["replicaSets"][0]["pods"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );

    // promote ends the pause: on to setWeight 50, then the next pause.
    let run = aviary(&["-n", n, "promote", "web"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("ended the pause"), "{}", run.stdout);
    wait_for(&client, n, "paused at step 3", &ctl, |ro| {
        phase(ro) == Some(RolloutPhase::Paused) && step(ro) == 3
    })
    .await;

    // abort: Degraded; status exits 1 with the message; promote is refused.
    let run = aviary(&["-n", n, "abort", "web"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        get_ro(&client, n).await.status.and_then(|s| s.abort),
        Some(true)
    );
    wait_for(&client, n, "Degraded", &ctl, |ro| {
        phase(ro) == Some(RolloutPhase::Degraded)
    })
    .await;
    let run = aviary(&["-n", n, "status", "web", "--timeout", "30s"]).await;
    assert_error(
        &run,
        1,
        "The rollout is in a degraded state with message: Rollout aborted",
    );
    let run = aviary(&["-n", n, "promote", "web"]).await;
    assert_error(
        &run,
        1,
        "rollout 'web' is aborted: run 'kubectl aviary retry web'",
    );
    let run = aviary(&["-n", n, "status", "web", "-o", "json"]).await;
    assert_eq!(run.code, 1);
    let v: Value = serde_json::from_str(&run.stdout).expect("status -o json");
    assert_eq!(v["status"], "Degraded");

    // retry: the steps start over; promote through the first pause, then --full.
    let run = aviary(&["-n", n, "retry", "rollout", "web"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(get_ro(&client, n).await.status.and_then(|s| s.abort), None);
    wait_for(&client, n, "paused at step 1 after retry", &ctl, |ro| {
        phase(ro) == Some(RolloutPhase::Paused) && step(ro) == 1
    })
    .await;
    let run = aviary(&["-n", n, "promote", "web", "--full"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    let run = aviary(&["-n", n, "status", "web", "--timeout", "60s"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    let ro = get_ro(&client, n).await;
    let st = ro.status.clone().unwrap_or_default();
    assert_eq!(
        st.stable_rs,
        Some(aviary::plan::pod_template_hash(&ro.spec.template, None))
    );
    // Nothing left to promote.
    let run = aviary(&["-n", n, "promote", "web"]).await;
    assert_eq!(run.code, 0);
    assert!(run.stdout.contains("nothing to promote"), "{}", run.stdout);
}

/// Given a rollout waiting on an analysis step whose metric measures forever (an interval and
/// no count: the run stays Running, so the step never completes on its own), `get` shows the
/// controller's AnalysisRun with its metric's last values; when promoted, exactly one step is
/// skipped. Also: pause/resume toggle spec.paused; restart sets spec.restartAt.
#[tokio::test]
async fn promote_skips_one_step_pause_resume_restart_and_analysis_runs_in_the_tree() {
    let client = client().await;
    let steps = json!([{"analysis": {"templates": [{"templateName": "success-rate"}]}}, {"pause": {}}, {"setWeight": 50}]);
    let (ns, ctl) = healthy_rollout(&client, "cli-skip", steps.clone()).await;
    let n = ns.name.as_str();
    let prometheus = std::env::var("AVIARY_PROMETHEUS_URL")
        .expect("AVIARY_PROMETHEUS_URL (hack/cluster.sh env)");
    let template = json!({
        "apiVersion": "aviary.dev/v1alpha1", "kind": "AnalysisTemplate", "metadata": {"name": "success-rate"},
        "spec": {"metrics": [{"name": "success-rate", "interval": "1s", "successCondition": "result[0] >= 0.95",
            "provider": {"prometheus": {"address": prometheus, "query": "vector(0.99)"}}}]}
    });
    apply_value(&client, Some(n), &template)
        .await
        .expect("analysis template");
    wait_for(&client, n, "Healthy", &ctl, |ro| {
        phase(ro) == Some(RolloutPhase::Healthy)
    })
    .await;

    // pause / resume
    let run = aviary(&["-n", n, "pause", "web"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(get_ro(&client, n).await.spec.paused, Some(true));
    wait_for(&client, n, "manually paused", &ctl, |ro| {
        ro.status
            .as_ref()
            .and_then(|s| s.message.clone())
            .as_deref()
            == Some("manually paused")
    })
    .await;
    let run = aviary(&["-n", n, "get", "rollout", "web"]).await;
    assert!(
        run.stdout.contains("Message:         manually paused"),
        "{}",
        run.stdout
    );
    let run = aviary(&["-n", n, "resume", "web"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(get_ro(&client, n).await.spec.paused, Some(false));
    wait_for(&client, n, "Healthy after resume", &ctl, |ro| {
        phase(ro) == Some(RolloutPhase::Healthy)
    })
    .await;

    // restart
    let run = aviary(&["-n", n, "restart", "web"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    let restart_at = get_ro(&client, n)
        .await
        .spec
        .restart_at
        .expect("restartAt set");
    // Rounded up to the next whole second, so at most a second ahead.
    let age = k8s_openapi::jiff::Timestamp::now().as_second() - restart_at.0.as_second();
    assert!((-1..60).contains(&age), "restartAt is now: {restart_at:?}");
    wait_for(&client, n, "restart recorded", &ctl, |ro| {
        ro.status.as_ref().and_then(|s| s.restarted_at.as_ref()) == Some(&restart_at)
    })
    .await;

    // A new image waits on the analysis step.
    apply_value(&client, Some(n), &rollout("web:2", steps))
        .await
        .expect("v2");
    wait_for(&client, n, "waiting on the analysis step", &ctl, |ro| {
        step(ro) == 0
            && phase(ro) == Some(RolloutPhase::Progressing)
            && ro.status.as_ref().is_some_and(|s| s.stable_rs.is_some())
    })
    .await;

    // The controller's AnalysisRun of the canary revision, measuring.
    let ro = get_ro(&client, n).await;
    let hash = aviary::plan::pod_template_hash(&ro.spec.template, None);
    let runs: Api<aviary::api::AnalysisRun> = Api::namespaced(client.clone(), n);
    let run_name = poll_until(
        "an AnalysisRun with two measurements",
        Duration::from_secs(60),
        Duration::from_millis(250),
        || {
            let runs = runs.clone();
            async move {
                let list = runs.list(&Default::default()).await.ok()?;
                list.items.into_iter().find_map(|r| {
                    let measured = r
                        .status
                        .as_ref()?
                        .metric_result("success-rate")?
                        .measurements
                        .len();
                    (measured >= 2).then(|| r.name_any())
                })
            }
        },
    )
    .await;
    let run = aviary(&["-n", n, "get", "rollout", "web"]).await;
    for want in [
        format!("α {run_name}"),
        format!("web-{hash}"),
        "AnalysisRun  ◌ Running".into(),
        "step 0, ✔".into(),
        "# success-rate".into(),
        "last: [0.99], [0.99]".into(),
        "Step:          0/3 (analysis)".into(),
    ] {
        assert!(
            run.stdout.contains(&want),
            "get lacks {want:?}:\n{}",
            run.stdout
        );
    }
    let json_run = aviary(&["-n", n, "get", "rollout", "web", "-o", "json"]).await;
    let v: Value = serde_json::from_str(&json_run.stdout).expect("json");
    assert_eq!(
        v["revisions"][0]["analysisRuns"][0]["name"],
        run_name.as_str()
    );
    assert_eq!(
        v["revisions"][0]["analysisRuns"][0]["metrics"][0]["phase"],
        "Running"
    );

    // promote skips exactly the analysis step (resourceVersion-guarded) and lands on the pause.
    let run = aviary(&["-n", n, "promote", "web"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains("skipped step 1/3 (analysis)"),
        "{}",
        run.stdout
    );
    wait_for(&client, n, "paused at step 1", &ctl, |ro| {
        phase(ro) == Some(RolloutPhase::Paused) && step(ro) == 1
    })
    .await;
}

/// Given revisions 1 (stable) and 2 (a paused canary), when undone, then the rollout is back on
/// revision 1's ReplicaSet at once (no new revision, no steps), `history` tells how each
/// revision stands, and undoing to the current or a missing revision says so.
#[tokio::test]
async fn undo_and_history() {
    let client = client().await;
    let (ns, ctl) = healthy_rollout(&client, "cli-undo", pause_steps()).await;
    let n = ns.name.as_str();
    wait_for(&client, n, "Healthy", &ctl, |ro| {
        phase(ro) == Some(RolloutPhase::Healthy)
    })
    .await;
    let h1 = aviary::plan::pod_template_hash(&get_ro(&client, n).await.spec.template, None);
    aviary(&["-n", n, "set", "image", "web", "web=web:2"]).await;
    wait_for(&client, n, "paused at step 1", &ctl, |ro| {
        phase(ro) == Some(RolloutPhase::Paused)
    })
    .await;

    let run = aviary(&["-n", n, "history", "web"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert!(lines[0].starts_with("REVISION"), "{}", run.stdout);
    assert!(
        lines[1].starts_with("2 *")
            && lines[1].contains("web:2")
            && lines[1].contains("canary, paused at step 1/4"),
        "{}",
        run.stdout
    );
    assert!(
        lines[2].starts_with("1 ")
            && lines[2].contains("web:1")
            && lines[2].contains("stable, being replaced"),
        "{}",
        run.stdout
    );
    let run = aviary(&["-n", n, "history", "web", "-o", "yaml"]).await;
    let v: Value = serde_yaml::from_str(&run.stdout).expect("history -o yaml");
    assert_eq!(v[0]["revision"], 2);

    let run = aviary(&["-n", n, "undo", "web"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains("rolled back to revision 1"),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr.is_empty(),
        "the exact template was reproduced: {}",
        run.stderr
    );
    let ro = get_ro(&client, n).await;
    assert_eq!(
        aviary::plan::pod_template_hash(&ro.spec.template, None),
        h1,
        "the template hashes to revision 1's ReplicaSet again"
    );
    let run = aviary(&["-n", n, "status", "web", "--timeout", "30s"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    let ro = get_ro(&client, n).await;
    assert_eq!(
        ro.status.as_ref().and_then(|s| s.stable_rs.clone()),
        Some(h1.clone())
    );
    assert_eq!(step(&ro), 4, "no steps walked");
    let rss: Api<k8s_openapi::api::apps::v1::ReplicaSet> = Api::namespaced(client.clone(), n);
    assert_eq!(
        rss.list(&Default::default())
            .await
            .map(|l| l.items.len())
            .unwrap_or(0),
        2,
        "no new revision"
    );

    let run = aviary(&["-n", n, "undo", "web", "--to-revision", "1"]).await;
    assert_eq!(run.code, 0);
    assert_eq!(
        run.stdout.trim(),
        "skipped rollback (current template already matches revision 1)"
    );
    let run = aviary(&["-n", n, "undo", "web", "--to-revision", "9"]).await;
    assert_error(
        &run,
        3,
        "revision 9 of rollout 'web' not found (revisions: 1, 2)",
    );
    // Forward again to revision 2: a canary walking its steps.
    let run = aviary(&["-n", n, "undo", "web", "--to-revision", "2"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    wait_for(&client, n, "revision 2 paused at step 1", &ctl, |ro| {
        phase(ro) == Some(RolloutPhase::Paused) && step(ro) == 1
    })
    .await;
}

/// Given rollouts in two namespaces, `list -A` shows both; `list` alone the context's namespace;
/// and `get --watch` piped (not a terminal) prints a plain frame whenever the rollout changes.
#[tokio::test]
async fn list_all_namespaces_json_and_plain_watch_frames() {
    let client = client().await;
    let (ns, ctl) = healthy_rollout(&client, "cli-list", pause_steps()).await;
    let other = TestNamespace::new(&client, "cli-list-b").await;
    apply_value(&client, Some(&other.name), &rollout("web:1", pause_steps()))
        .await
        .expect("second rollout");
    let n = ns.name.as_str();
    wait_for(&client, n, "Healthy", &ctl, |ro| {
        phase(ro) == Some(RolloutPhase::Healthy)
    })
    .await;

    let run = aviary(&["list", "rollouts", "-A"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.starts_with("NAMESPACE"), "{}", run.stdout);
    let mine = run
        .stdout
        .lines()
        .find(|l| l.starts_with(&format!("{n} ")))
        .expect("row of the first namespace");
    for want in ["web", "Canary", "✔ Healthy", "4/4", "100"] {
        assert!(mine.contains(want), "{mine}");
    }
    assert!(
        run.stdout
            .lines()
            .any(|l| l.starts_with(&format!("{} ", other.name))),
        "{}",
        run.stdout
    );

    let run = aviary(&["-n", n, "list", "rollouts", "-o", "json"]).await;
    let v: Value = serde_json::from_str(&run.stdout).expect("list -o json");
    assert_eq!(v.as_array().map(Vec::len), Some(1));
    assert_eq!(v[0]["name"], "web");
    assert_eq!(v[0]["status"], "Healthy");
    assert_eq!(v[0]["step"], "4/4");

    // list -w: a line whenever the rollout's line changes.
    let mut list_watch = tokio::process::Command::new(plugin_path())
        .args(["-n", n, "list", "rollouts", "-w"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("list -w");

    // Watch, piped: frames only on change. Change the image while it watches.
    let watcher = tokio::spawn({
        let n = n.to_string();
        async move {
            aviary(&[
                "-n",
                &n,
                "get",
                "rollout",
                "web",
                "--watch",
                "--timeout-seconds",
                "15",
            ])
            .await
        }
    });
    tokio::time::sleep(Duration::from_secs(2)).await; // let the watch draw its first frame
    aviary(&["-n", n, "set", "image", "web", "web=web:2"]).await;
    wait_for(&client, n, "paused at step 1", &ctl, |ro| {
        phase(ro) == Some(RolloutPhase::Paused)
    })
    .await;
    let run = watcher.await.expect("watch task");
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        !run.stdout.contains('\x1b'),
        "no escape codes when not a terminal"
    );
    let frames = run.stdout.matches("Name:            web").count();
    assert!(
        frames >= 2,
        "a frame per change, got {frames}:\n{}",
        run.stdout
    );
    assert!(frames < 40, "frames only on change, got {frames}");
    assert!(
        run.stdout.contains("✔ Healthy") && run.stdout.contains("॥ Paused"),
        "{}",
        run.stdout
    );
    // list -w printed the table, then the changes, ending paused at step 1.
    let _ = list_watch.start_kill();
    let out = list_watch.wait_with_output().await.expect("list -w output");
    let text = String::from_utf8_lossy(&out.stdout);
    println!("list -w:\n{text}");
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines.first().is_some_and(|l| l.starts_with("NAME")),
        "{text}"
    );
    assert!(
        lines.len() >= 3,
        "the table and at least one change: {text}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("॥ Paused") && l.contains("1/4")),
        "{text}"
    );
    // The last frame shows the paused canary.
    let last = run
        .stdout
        .rsplit("Name:            web")
        .next()
        .unwrap_or_default();
    assert!(
        last.contains("॥ Paused") && last.contains("web:2 (canary)"),
        "{last}"
    );
}

// ---------------------------------------------------------------------------------------------
// Errors

fn admin_kubeconfig() -> (String, String) {
    let path = std::env::var("KUBECONFIG").expect("KUBECONFIG");
    let text = std::fs::read_to_string(&path).expect("read KUBECONFIG");
    let kc: Value = serde_yaml::from_str(&text).expect("kubeconfig YAML");
    let server = kc["clusters"][0]["cluster"]["server"]
        .as_str()
        .expect("server")
        .to_string();
    let ca = kc["clusters"][0]["cluster"]["certificate-authority"]
        .as_str()
        .expect("CA")
        .to_string();
    (server, ca)
}

/// A kubeconfig file with one context per (name, server, token, namespace); the first is
/// current.
fn write_kubeconfig(dir: &Path, file: &str, contexts: &[(&str, &str, &str, &str)]) -> PathBuf {
    let (_, ca) = admin_kubeconfig();
    let kc = json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": contexts.iter().map(|(n, s, _, _)| json!({"name": n, "cluster": {"server": s, "certificate-authority": ca}})).collect::<Vec<_>>(),
        "users": contexts.iter().map(|(n, _, t, _)| json!({"name": n, "user": {"token": t}})).collect::<Vec<_>>(),
        "contexts": contexts.iter().map(|(n, _, _, ns)| json!({"name": n, "context": {"cluster": n, "user": n, "namespace": ns}})).collect::<Vec<_>>(),
        "current-context": contexts[0].0,
    });
    let path = dir.join(file);
    std::fs::write(&path, serde_yaml::to_string(&kc).expect("yaml")).expect("write kubeconfig");
    path
}

fn temp_dir(name: &str) -> PathBuf {
    let d = support::repo_root().join("target/test-cli").join(format!(
        "{name}-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Given no rollout of that name, a user without RBAC, a cluster that isn't there, a context
/// that doesn't exist and a bad flag, every command fails with one line saying which and what
/// to do, and its own exit code; `--context` and the context's namespace are honoured; and the
/// plugin runs as `kubectl aviary`.
#[tokio::test]
async fn errors_are_one_line_with_distinct_exit_codes() {
    let client = client().await;
    setup(&client).await;
    let ns = TestNamespace::new(&client, "cli-errors").await;
    let n = ns.name.as_str();
    let dir = temp_dir("errors");

    // Unknown rollout: for reads and for writes.
    for args in [
        vec!["get", "rollout", "nope"],
        vec!["status", "nope"],
        vec!["promote", "nope"],
        vec!["abort", "nope"],
        vec!["undo", "nope"],
        vec!["history", "nope"],
        vec!["set", "image", "nope", "a=b"],
    ] {
        let mut full = vec!["-n", n];
        full.extend(args);
        let run = aviary(&full).await;
        assert_error(
            &run,
            3,
            &format!("rollout 'nope' not found in namespace '{n}'"),
        );
    }

    // A user with no RBAC (a ServiceAccount's token): "no permission", for reads and writes.
    let sa: Value =
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "nobody"}});
    apply_value(&client, Some(n), &sa)
        .await
        .expect("service account");
    let token = std::process::Command::new("kubectl")
        .args(["create", "token", "nobody", "-n", n])
        .output()
        .expect("kubectl create token");
    let token = String::from_utf8_lossy(&token.stdout).trim().to_string();
    assert!(!token.is_empty(), "got a token");
    let (server, _) = admin_kubeconfig();
    let admin_token = std::fs::read_to_string(std::env::var("KUBECONFIG").unwrap_or_default())
        .ok()
        .and_then(|t| serde_yaml::from_str::<Value>(&t).ok())
        .and_then(|v| v["users"][0]["user"]["token"].as_str().map(str::to_string))
        .expect("admin token");
    let closed = format!("https://127.0.0.1:{}", free_port());
    let kc = write_kubeconfig(
        &dir,
        "kubeconfig",
        &[
            ("nobody", &server, &token, n),
            ("admin", &server, &admin_token, n),
            ("gone", &closed, "x", n),
        ],
    );
    let kcs = kc.to_string_lossy().to_string();
    let run = aviary(&["--kubeconfig", &kcs, "get", "rollout", "web"]).await;
    assert_error(
        &run,
        5,
        &format!(
            "no permission: User \"system:serviceaccount:{n}:nobody\" cannot get resource \"rollouts\" in API group \"aviary.dev\""
        ),
    );
    assert!(
        run.stderr.contains(&format!(
            "kubectl auth can-i get rollouts.aviary.dev -n {n}"
        )),
        "{}",
        run.stderr
    );
    let run = aviary(&["--kubeconfig", &kcs, "list", "rollouts"]).await;
    assert_error(&run, 5, "no permission");
    // Allowed to read, not to write status: abort says which permission is missing.
    let role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "read-rollouts"},
        "rules": [{"apiGroups": ["aviary.dev"], "resources": ["rollouts"], "verbs": ["get", "list", "watch"]}]});
    let binding = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "read-rollouts"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read-rollouts"},
        "subjects": [{"kind": "ServiceAccount", "name": "nobody", "namespace": n}]});
    apply_value(&client, Some(n), &role).await.expect("role");
    apply_value(&client, Some(n), &binding)
        .await
        .expect("binding");
    apply_value(&client, Some(n), &rollout("web:1", pause_steps()))
        .await
        .expect("rollout");
    let run = poll_until(
        "RBAC to allow reading rollouts",
        Duration::from_secs(20),
        Duration::from_millis(200),
        || {
            let kcs = kcs.clone();
            async move {
                let run = aviary(&["--kubeconfig", &kcs, "abort", "web"]).await;
                (run.code != 3 && !run.stderr.contains("cannot get")).then_some(run)
            }
        },
    )
    .await;
    assert_error(&run, 5, "cannot patch resource \"rollouts/status\"");
    assert!(
        run.stderr
            .contains("kubectl auth can-i patch rollouts.aviary.dev/status"),
        "{}",
        run.stderr
    );

    // --context picks another context; the context's namespace is the default.
    let run = aviary(&[
        "--kubeconfig",
        &kcs,
        "--context",
        "admin",
        "list",
        "rollouts",
        "-o",
        "json",
    ])
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    let v: Value = serde_json::from_str(&run.stdout).expect("json");
    assert_eq!(v[0]["namespace"], n, "the context's namespace");

    // No cluster: a closed port.
    let run = aviary(&[
        "--kubeconfig",
        &kcs,
        "--context",
        "gone",
        "get",
        "rollout",
        "web",
    ])
    .await;
    assert_error(
        &run,
        6,
        &format!("cannot reach the cluster at {closed} (connection refused)"),
    );
    let run = aviary(&["--kubeconfig", &kcs, "--context", "gone", "status", "web"]).await;
    assert_error(&run, 6, "cannot reach the cluster");
    // A context that does not exist; a kubeconfig that does not exist.
    let run = aviary(&[
        "--kubeconfig",
        &kcs,
        "--context",
        "nowhere",
        "list",
        "rollouts",
    ])
    .await;
    assert_error(&run, 6, "check that context 'nowhere' exists");
    let run = aviary_env(
        &["list", "rollouts"],
        &[
            ("KUBECONFIG", "/nonexistent/kubeconfig"),
            ("HOME", "/nonexistent"),
        ],
    )
    .await;
    assert_error(&run, 6, "no usable cluster configuration");
    let run = aviary(&["--kubeconfig", "/nonexistent/kc", "list", "rollouts"]).await;
    assert_error(&run, 6, "cannot read kubeconfig /nonexistent/kc");

    // Usage errors: 64; -o with an unknown format; bad timeout.
    let run = aviary(&["promote"]).await;
    assert_eq!(run.code, 64, "{run:?}");
    let run = aviary(&["-n", n, "get", "rollout", "web", "-o", "xml"]).await;
    assert_error(&run, 64, "unknown output format 'xml'");
    let run = aviary(&["-n", n, "status", "web", "--timeout", "soon"]).await;
    assert_error(&run, 64, "invalid --timeout 'soon'");
    let run = aviary(&["-n", n, "set", "image", "web", "sidecar=x:1"]).await;
    assert_error(
        &run,
        3,
        "container 'sidecar' not found in rollout 'web' (its containers: web)",
    );

    // As a kubectl plugin.
    let bin_dir = plugin_path().parent().expect("bin dir").to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = std::process::Command::new("kubectl")
        .args(["aviary", "-n", n, "list", "rollouts"])
        .env("PATH", path)
        .output()
        .expect("kubectl aviary");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "kubectl aviary: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with("NAME") && stdout.contains("web"),
        "{stdout}"
    );
}

/// The kubeconfig of a second, real API server on the shared etcd under its own key prefix: a
/// cluster without Aviary's CRDs, without touching the CRDs other tests use.
struct BareApiServer {
    child: std::process::Child,
    kubeconfig: PathBuf,
}

impl Drop for BareApiServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn bare_api_server(dir: &Path) -> BareApiServer {
    let state = PathBuf::from(std::env::var("KUBECONFIG").expect("KUBECONFIG"))
        .parent()
        .expect("cluster state dir")
        .to_path_buf();
    let ports =
        std::fs::read_to_string(state.join("ports.env")).expect("ports.env of hack/cluster.sh");
    let etcd = ports
        .lines()
        .find_map(|l| l.strip_prefix("ETCD_PORT="))
        .expect("ETCD_PORT")
        .trim()
        .to_string();
    let port = free_port();
    let certs = dir.join("pki");
    std::fs::create_dir_all(&certs).expect("cert dir");
    let log = std::fs::File::create(dir.join("apiserver.log")).expect("log");
    let child = std::process::Command::new("kube-apiserver")
        .args([
            &format!("--etcd-servers=http://127.0.0.1:{etcd}"),
            // Its own key space: nothing it stores is seen by the shared cluster, and a fixed
            // prefix means repeated runs reuse the same keys instead of piling up new ones.
            "--etcd-prefix=/aviary-cli-test-no-crds",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            &format!("--secure-port={port}"),
            &format!("--cert-dir={}", certs.display()),
            &format!("--token-auth-file={}", state.join("tokens.csv").display()),
            "--authorization-mode=RBAC",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            &format!(
                "--service-account-key-file={}",
                state.join("sa.pub").display()
            ),
            &format!(
                "--service-account-signing-key-file={}",
                state.join("sa.key").display()
            ),
            "--service-cluster-ip-range=10.97.0.0/16",
            "--endpoint-reconciler-type=none",
            "--enable-priority-and-fairness=false",
            "--profiling=false",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("start kube-apiserver (on PATH from hack/cluster.sh env)");
    let server = format!("https://127.0.0.1:{port}");
    let kc = json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "bare", "cluster": {"server": server, "insecure-skip-tls-verify": true}}],
        "users": [{"name": "admin", "user": {"token": "admin-token"}}],
        "contexts": [{"name": "bare", "context": {"cluster": "bare", "user": "admin", "namespace": "default"}}],
        "current-context": "bare",
    });
    let kubeconfig = dir.join("bare.kubeconfig");
    std::fs::write(&kubeconfig, serde_yaml::to_string(&kc).expect("yaml")).expect("write");
    let bare = BareApiServer { child, kubeconfig };
    let kcs = bare.kubeconfig.to_string_lossy().to_string();
    poll_until(
        "the bare API server to serve namespaces",
        Duration::from_secs(90),
        Duration::from_millis(500),
        || {
            let kcs = kcs.clone();
            async move {
                let out = tokio::process::Command::new("kubectl")
                    .args([
                        "--kubeconfig",
                        &kcs,
                        "get",
                        "namespace",
                        "default",
                        "-o",
                        "name",
                    ])
                    .output()
                    .await
                    .ok()?;
                out.status.success().then_some(())
            }
        },
    )
    .await;
    bare
}

/// Given a real API server where Aviary's CRDs are not installed, every command says Aviary is
/// not installed (exit 4) instead of "not found".
#[tokio::test]
async fn a_cluster_without_aviary_says_it_is_not_installed() {
    let dir = temp_dir("bare");
    let bare = bare_api_server(&dir).await;
    let kc = bare.kubeconfig.to_string_lossy().to_string();
    for args in [
        vec!["get", "rollout", "web"],
        vec!["list", "rollouts"],
        vec!["list", "rollouts", "-A"],
        vec!["status", "web"],
        vec!["abort", "web"],
    ] {
        let mut full = vec!["--kubeconfig", kc.as_str()];
        full.extend(args);
        let run = aviary(&full).await;
        assert_error(&run, 4, "Aviary is not installed in this cluster");
    }
}

// ---------------------------------------------------------------------------------------------
// convert and lint

/// `kubectl apply --server-side` (strict field validation, as kubectl does) of a file.
fn kubectl_apply(ns: &str, file: &Path) -> std::process::Output {
    std::process::Command::new("kubectl")
        .args(["apply", "--server-side", "-n", ns, "-f"])
        .arg(file)
        .output()
        .expect("kubectl apply")
}

/// The ```yaml blocks of the brief's scenarios.
fn scenario_blocks() -> Vec<String> {
    let text = std::fs::read_to_string(support::shared_dir().join("brief/scenarios.md"))
        .expect("../shared/brief/scenarios.md");
    text.split("```yaml\n")
        .skip(1)
        .filter_map(|b| b.split_once("```").map(|(y, _)| y.to_string()))
        .collect()
}

/// Given each Rollout and AnalysisTemplate of the brief's scenarios (Argo manifests), when
/// converted, then nothing is unsupported and the local API server accepts the output as is.
#[tokio::test]
async fn convert_turns_the_scenarios_into_manifests_the_api_server_accepts() {
    let client = client().await;
    install_aviary_crds(&client).await;
    let dir = temp_dir("convert");
    let blocks = scenario_blocks();
    let argo: Vec<&String> = blocks
        .iter()
        .filter(|b| b.contains("argoproj.io/v1alpha1"))
        .collect();
    assert!(
        argo.len() >= 4,
        "the scenarios hold 2 Rollouts and 2 AnalysisTemplates"
    );
    let mut kinds = vec![];
    for (i, block) in argo.iter().enumerate() {
        let input = dir.join(format!("scenario-{i}.yaml"));
        std::fs::write(&input, block).expect("write scenario");
        let run = aviary(&["convert", "-f", &input.to_string_lossy()]).await;
        assert_eq!(
            run.code, 0,
            "scenario {i} converts with nothing unsupported: {run:?}"
        );
        assert!(
            !run.stdout.contains("apiVersion: argoproj.io"),
            "{}",
            run.stdout
        );
        let output = dir.join(format!("scenario-{i}.aviary.yaml"));
        std::fs::write(&output, &run.stdout).expect("write output");
        // Its own namespace: both scenarios name their template success-rate.
        let ns = TestNamespace::new(&client, "cli-convert").await;
        let applied = kubectl_apply(&ns.name, &output);
        assert!(
            applied.status.success(),
            "the API server accepts scenario {i}: {}\n{}",
            String::from_utf8_lossy(&applied.stderr),
            run.stdout
        );
        let got = std::process::Command::new("kubectl")
            .args([
                "get",
                "rollouts.aviary.dev,analysistemplates.aviary.dev",
                "-n",
                &ns.name,
                "-o",
                "name",
            ])
            .output()
            .expect("kubectl get");
        kinds.push(String::from_utf8_lossy(&got.stdout).trim().to_string());
        // And lint agrees.
        let run = aviary(&["lint", "-f", &output.to_string_lossy()]).await;
        assert_eq!(run.code, 0, "{run:?}");
    }
    let all = kinds.join("\n");
    for want in [
        "rollout.aviary.dev/bff",
        "rollout.aviary.dev/phoenix-api",
        "analysistemplate.aviary.dev/success-rate",
    ] {
        assert!(all.contains(want), "{all}");
    }

    // Unsupported Argo fields: listed with path and line, removed, exit 1; the output still
    // applies.
    let input = dir.join("unsupported.yaml");
    let text = argo[0]
        .replacen(
            "  strategy:\n    canary:\n",
            "  strategy:\n    canary:\n      pingPong: {pingService: ping, pongService: pong}\n",
            1,
        )
        .replacen(
            "      trafficRouting:\n",
            "      trafficRouting:\n        managedRoutes: [{name: header-route}]\n",
            1,
        );
    assert_ne!(&text, argo[0]);
    std::fs::write(&input, &text).expect("write");
    let run = aviary(&["convert", "-f", &input.to_string_lossy()]).await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains(
            "spec.strategy.canary.pingPong: unsupported: canary.pingPong is not supported by Aviary"
        ),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("spec.strategy.canary.trafficRouting.managedRoutes: unsupported"),
        "{}",
        run.stderr
    );
    let output = dir.join("unsupported.aviary.yaml");
    std::fs::write(&output, &run.stdout).expect("write");
    let ns = TestNamespace::new(&client, "cli-convert").await;
    let applied = kubectl_apply(&ns.name, &output);
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );
}

/// Given manifests the API server rejects, lint rejects them too, naming the field and line;
/// given ones it accepts, lint passes.
#[tokio::test]
async fn lint_agrees_with_admission() {
    let client = client().await;
    install_aviary_crds(&client).await;
    let ns = TestNamespace::new(&client, "cli-lint").await;
    let dir = temp_dir("lint");
    let good = serde_yaml::to_string(&rollout("web:1", pause_steps())).expect("yaml");
    let cases: Vec<(&str, String, Option<&str>)> = vec![
        ("good", good.clone(), None),
        (
            "weight",
            good.replace("setWeight: 50", "setWeight: 150"),
            Some(
                "spec.strategy.canary.steps: steps[].setWeight and setCanaryScale.weight are at most 100",
            ),
        ),
        (
            "unknown",
            good.replace("setWeight: 50", "setWeigth: 50"),
            Some("unknown field \"setWeigth\""),
        ),
        (
            "experiment",
            good.replace("- setWeight: 50", "- experiment: {}"),
            Some("steps[].experiment is not supported by Aviary"),
        ),
        (
            "selector",
            good.replacen("app: web", "app: api", 1),
            Some("selector.matchLabels must match template.metadata.labels"),
        ),
    ];
    for (name, text, want) in cases {
        let file = dir.join(format!("{name}.yaml"));
        std::fs::write(&file, &text).expect("write");
        let run = aviary(&["lint", "-f", &file.to_string_lossy()]).await;
        let applied = kubectl_apply(&ns.name, &file);
        match want {
            None => {
                assert_eq!(run.code, 0, "{name}: {run:?}");
                assert!(
                    applied.status.success(),
                    "{name}: {}",
                    String::from_utf8_lossy(&applied.stderr)
                );
            }
            Some(w) => {
                assert_eq!(run.code, 1, "{name}: {run:?}");
                assert!(
                    run.stdout.contains(w),
                    "{name}: lint says {:?}, want {w:?}",
                    run.stdout
                );
                let line = run.stdout.lines().next().unwrap_or_default();
                let file_line = format!("{}:", file.display());
                assert!(
                    line.starts_with(&file_line)
                        && line[file_line.len()..]
                            .split(':')
                            .next()
                            .is_some_and(|l| l.parse::<usize>().is_ok()),
                    "names the line: {line}"
                );
                assert!(
                    !applied.status.success(),
                    "{name}: the API server rejects it too"
                );
            }
        }
    }
    let run = aviary(&["lint", "-f", "/nonexistent.yaml"]).await;
    assert_error(&run, 3, "cannot read /nonexistent.yaml");
}

// ---------------------------------------------------------------------------------------------
// get --watch in a terminal

/// A tmux server of the test's own (its own socket), killed when dropped.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn cmd(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux (hack/deps.sh installs it)")
    }

    /// The visible pane, as text (`escapes`: with colour codes); `history`: the scrollback too.
    fn capture(&self, escapes: bool, history: bool) -> String {
        let mut args = vec!["capture-pane", "-p", "-t", "watch"];
        if escapes {
            args.push("-e");
        }
        if history {
            args.extend(["-S", "-"]);
        }
        String::from_utf8_lossy(&self.cmd(&args).stdout).into_owned()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]);
    }
}

/// Given `get rollout --watch` running in a terminal (tmux), when the rollout progresses, then
/// the pane shows the current tree redrawn in place — one frame on screen, nothing scrolled
/// into history — in colour, ending on the paused canary.
#[tokio::test]
async fn get_watch_redraws_in_place_in_a_terminal() {
    let client = client().await;
    let (ns, ctl) = healthy_rollout(&client, "cli-tty", pause_steps()).await;
    let n = ns.name.as_str();
    wait_for(&client, n, "Healthy", &ctl, |ro| {
        phase(ro) == Some(RolloutPhase::Healthy)
    })
    .await;
    let tmux = Tmux {
        socket: format!("aviary-{n}"),
    };
    let kubeconfig = std::env::var("KUBECONFIG").expect("KUBECONFIG");
    let command = format!(
        "env KUBECONFIG={kubeconfig} TERM=xterm-256color {} -n {n} get rollout web --watch",
        plugin_path().display()
    );
    let out = tmux.cmd(&[
        "new-session",
        "-d",
        "-s",
        "watch",
        "-x",
        "120",
        "-y",
        "45",
        &command,
    ]);
    assert!(
        out.status.success(),
        "tmux: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    poll_until(
        "the healthy tree on screen",
        Duration::from_secs(20),
        Duration::from_millis(200),
        || {
            let pane = tmux.capture(false, false);
            async move { pane.contains("✔ Healthy").then_some(()) }
        },
    )
    .await;

    aviary(&["-n", n, "set", "image", "web", "web=web:2"]).await;
    let pane = poll_until(
        "the paused canary on screen",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || {
            let pane = tmux.capture(false, false);
            async move {
                (pane.contains("॥ Paused")
                    && pane.contains("web:2 (canary)")
                    && pane.contains("canary, 1/1 available"))
                .then_some(pane)
            }
        },
    )
    .await;
    println!("{pane}");
    assert_eq!(
        pane.matches("Name:").count(),
        1,
        "one frame on screen:\n{pane}"
    );
    let all = tmux.capture(false, true);
    assert_eq!(
        all.matches("Name:").count(),
        1,
        "redrawn in place, nothing scrolled:\n{all}"
    );
    assert!(
        !pane.contains("Rollout     ✔ Healthy"),
        "the old frame's rollout line is gone:\n{pane}"
    );
    let coloured = tmux.capture(true, false);
    assert!(coloured.contains("\x1b["), "colours on a terminal");
}
