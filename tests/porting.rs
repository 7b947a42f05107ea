//! The porting promise, end to end: each Argo Rollouts manifest in `tests/data/argo/` (written
//! with `argoproj.io/v1alpha1`) runs on the local cluster, with only its apiVersion changed, to
//! the outcome Argo documents (the `# expect:` line at the top of the file; see its README).

mod support;

use std::path::Path;
use std::time::Duration;

use aviary::api::{Rollout, RolloutPhase};
use k8s_openapi::api::apps::v1::Deployment;
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
    // With workloadRef the template is the Deployment's: updated, and read, there; a status is
    // current once it reflects the Deployment's generation too.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    let workload = rollout["spec"]["workloadRef"].clone();
    let referenced = workload["name"].as_str().map(str::to_owned);
    let phase_is = |phase: RolloutPhase, what: String| {
        let api = api.clone();
        let name = name.clone();
        let deployments = deployments.clone();
        let referenced = referenced.clone();
        async move {
            poll_until(
                &what,
                Duration::from_secs(90),
                Duration::from_millis(200),
                || {
                    let api = api.clone();
                    let name = name.clone();
                    let deployments = deployments.clone();
                    let referenced = referenced.clone();
                    async move {
                        let ro = api.get(&name).await.ok()?;
                        let st = ro.status?;
                        let workload_seen = match &referenced {
                            Some(d) => {
                                let generation = deployments.get(d).await.ok()?.metadata.generation;
                                st.workload_observed_generation == generation.map(|g| g.to_string())
                            }
                            None => true,
                        };
                        (st.phase == Some(phase)
                            && st.observed_generation == ro.metadata.generation
                            && workload_seen)
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
    let ends_deployment = matches!(
        workload["scaleDown"].as_str(),
        Some("onsuccess" | "progressively")
    );
    let template_of = |doc: &Value| match &referenced {
        Some(d) => docs
            .iter()
            .find(|x| x["kind"] == json!("Deployment") && x["metadata"]["name"] == json!(d))
            .map(|x| x["spec"]["template"].clone())
            .unwrap_or_else(|| panic!("{}: no Deployment {d}", file.display())),
        None => doc["spec"]["template"].clone(),
    };
    if let (Some(d), true) = (&referenced, ends_deployment) {
        let scaled = deployments
            .get(d)
            .await
            .ok()
            .and_then(|d| d.spec)
            .and_then(|s| s.replicas);
        assert_eq!(
            scaled,
            Some(0),
            "{}: the Deployment is scaled to 0 once the Rollout is Healthy",
            file.display()
        );
    }
    let update = if expected.update.is_null() {
        let mut containers = template_of(rollout)["spec"]["containers"].clone();
        containers[0]["image"] = json!("web:2");
        json!({"spec": {"template": {"spec": {"containers": containers}}}})
    } else {
        expected.update.clone()
    };
    match &referenced {
        Some(d) => deployments
            .patch(d, &PatchParams::default(), &Patch::Merge(&update))
            .await
            .map(drop),
        None => api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&update))
            .await
            .map(drop),
    }
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
        let template = match &referenced {
            Some(d) => deployments
                .get(d)
                .await
                .expect("deployment")
                .spec
                .map(|s| s.template)
                .unwrap_or_default(),
            None => live.spec.template.clone(),
        };
        let hash = aviary::plan::pod_template_hash(&template, None);
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

/// The Rollout `name`'s status once `done` holds for it (90 s).
async fn rollout_status(
    api: &Api<Rollout>,
    name: &str,
    what: &str,
    done: impl Fn(&aviary::api::RolloutStatus) -> bool,
) -> aviary::api::RolloutStatus {
    poll_until(
        what,
        Duration::from_secs(90),
        Duration::from_millis(200),
        || async { api.get(name).await.ok()?.status.filter(|s| done(s)) },
    )
    .await
}

/// The hash selector of Service `name` (`None`: it has none yet).
async fn selected_hash(client: &kube::Client, ns: &str, name: &str) -> Option<String> {
    let api: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(client.clone(), ns);
    api.get(name)
        .await
        .expect("service")
        .spec
        .and_then(|s| s.selector)
        .and_then(|s| s.get(aviary::api::POD_TEMPLATE_HASH_LABEL).cloned())
}

/// Given a Deployment of 3 serving pods behind the stable and canary Services, when a Rollout
/// takes it over with `workloadRef` (`scaleDown: progressively`) while no new pod can start, then
/// nothing of the Deployment's goes and the Services are not adopted; once the Rollout's pods
/// are all available the Services select them and the Deployment is scaled to 0 and marked; an
/// edit of the Deployment's template is a canary update (the Deployment stays at 0). A Rollout
/// naming a missing Deployment says so (InvalidSpec, an Event) and creates nothing.
#[tokio::test]
async fn a_deployment_is_taken_over_without_a_gap_and_updated_through_its_template() {
    let client = client().await;
    prepare(&client).await;
    let ns = TestNamespace::new(&client, "workload-ref").await;
    let pool = support::pods::NodePool::new(&ns.name);
    for svc in ["web-stable", "web-canary"] {
        let doc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": svc},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}});
        apply_value(&client, Some(&ns.name), &doc)
            .await
            .expect("service");
    }
    let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"nodeSelector": pool.node_selector(),
                    "containers": [{"name": "web", "image": "web:1"}]}}}});
    apply_value(&client, Some(&ns.name), &deployment)
        .await
        .expect("deployment");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    let deployment_now = || async {
        let d = deployments.get("web").await.expect("deployment");
        let marked = d
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(aviary::plan::workload::SCALED_DOWN_FOR).cloned());
        (
            d.metadata.generation,
            d.spec.and_then(|s| s.replicas),
            d.status,
            marked,
        )
    };
    poll_until(
        "the Deployment's 3 pods available",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || async {
            let (_, _, status, _) = deployment_now().await;
            (status?.available_replicas == Some(3)).then_some(())
        },
    )
    .await;

    pool.cordon();
    let ctl = ControllerProcess::start(&ns.name);
    let rollout = json!({"apiVersion": "aviary.dev/v1alpha1", "kind": "Rollout",
        "metadata": {"name": "web"},
        "spec": {"replicas": 3,
            "workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
                "scaleDown": "progressively"},
            "strategy": {"canary": {"stableService": "web-stable", "canaryService": "web-canary",
                "steps": [{"setWeight": 50}, {"pause": {}}]}}}});
    apply_value(&client, Some(&ns.name), &rollout)
        .await
        .expect("rollout");
    let api: Api<Rollout> = Api::namespaced(client.clone(), &ns.name);
    let (generation, ..) = deployment_now().await;
    let st = rollout_status(
        &api,
        "web",
        "the first revision planned from the Deployment",
        |s| {
            s.workload_observed_generation == generation.map(|g| g.to_string())
                && s.current_pod_hash.is_some()
        },
    )
    .await;
    let h1 = st.current_pod_hash.clone().unwrap_or_default();
    let replica_sets: Api<k8s_openapi::api::apps::v1::ReplicaSet> =
        Api::namespaced(client.clone(), &ns.name);
    poll_until(
        "the Rollout's ReplicaSet at 3, its pods unschedulable",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async {
            let rs = replica_sets.get(&format!("web-{h1}")).await.ok()?;
            (rs.spec?.replicas == Some(3)).then_some(())
        },
    )
    .await;
    let (_, replicas, _, marked) = deployment_now().await;
    assert_eq!(
        (replicas, marked),
        (Some(3), None),
        "the Deployment keeps every pod while the Rollout has none\n{}",
        ctl.log_tail(30)
    );
    for svc in ["web-stable", "web-canary"] {
        assert_eq!(
            selected_hash(&client, &ns.name, svc).await,
            None,
            "{svc} is not adopted before the Rollout's pods are all available"
        );
    }

    pool.uncordon();
    rollout_status(&api, "web", "Healthy on the Deployment's template", |s| {
        s.phase == Some(RolloutPhase::Healthy) && s.stable_rs.as_deref() == Some(h1.as_str())
    })
    .await;
    poll_until(
        "the Deployment scaled to 0 and marked",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async {
            let (_, replicas, _, marked) = deployment_now().await;
            (replicas == Some(0) && marked.as_deref() == Some("web")).then_some(())
        },
    )
    .await;
    for svc in ["web-stable", "web-canary"] {
        assert_eq!(
            selected_hash(&client, &ns.name, svc).await.as_deref(),
            Some(h1.as_str()),
            "{svc} adopted"
        );
    }
    support::wait_for_event(&client, &ns.name, "web", "ScalingDeployment", |r, n| {
        r == "ScalingDeployment" && n.contains("Scaled Deployment web to 0")
    })
    .await;

    // An update is an edit of the Deployment's template.
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "web:2"}]}}}});
    deployments
        .patch("web", &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .expect("edit the Deployment");
    let (generation, ..) = deployment_now().await;
    let st = rollout_status(&api, "web", "the update paused at its step", |s| {
        s.workload_observed_generation == generation.map(|g| g.to_string())
            && s.phase == Some(RolloutPhase::Paused)
    })
    .await;
    assert_ne!(st.current_pod_hash.as_deref(), Some(h1.as_str()));
    assert_eq!(st.stable_rs.as_deref(), Some(h1.as_str()));
    let (_, replicas, ..) = deployment_now().await;
    assert_eq!(
        replicas,
        Some(0),
        "the Deployment stays at 0 during an update"
    );

    // `kubectl aviary set image` and `undo` write the Deployment's template, not the Rollout's.
    let plugin = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_kubectl-aviary"))
            .args(["-n", &ns.name])
            .args(args)
            .output()
            .expect("run kubectl-aviary");
        assert!(
            out.status.success(),
            "kubectl aviary {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let image = || async {
        deployments
            .get("web")
            .await
            .ok()
            .and_then(|d| d.spec)
            .and_then(|s| s.template.spec)
            .and_then(|s| s.containers.first().and_then(|c| c.image.clone()))
    };
    plugin(&["set", "image", "web", "web=web:3"]);
    assert_eq!(image().await.as_deref(), Some("web:3"));
    plugin(&["undo", "web", "--to-revision", "1"]);
    assert_eq!(image().await.as_deref(), Some("web:1"));
    let (generation, ..) = deployment_now().await;
    rollout_status(&api, "web", "back on revision 1 at once", |s| {
        s.workload_observed_generation == generation.map(|g| g.to_string())
            && s.phase == Some(RolloutPhase::Healthy)
            && s.current_pod_hash.as_deref() == Some(h1.as_str())
    })
    .await;

    // A Rollout naming a Deployment that does not exist.
    let ghost = json!({"apiVersion": "aviary.dev/v1alpha1", "kind": "Rollout",
        "metadata": {"name": "ghost"},
        "spec": {"workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "absent"},
            "strategy": {"canary": {}}}});
    apply_value(&client, Some(&ns.name), &ghost)
        .await
        .expect("ghost rollout");
    let st = rollout_status(&api, "ghost", "InvalidSpec naming the Deployment", |s| {
        s.conditions.iter().any(|c| {
            c.type_ == "InvalidSpec" && c.message.contains("Deployment 'absent' not found")
        })
    })
    .await;
    assert_eq!(st.phase, Some(RolloutPhase::Degraded));
    support::wait_for_event(&client, &ns.name, "ghost", "InvalidSpec Event", |r, n| {
        r == "InvalidSpec" && n.contains("spec.workloadRef.name")
    })
    .await;
    let listed = replica_sets
        .list(&kube::api::ListParams::default().labels("aviary.dev/rollout=ghost"))
        .await
        .expect("list");
    assert!(listed.items.is_empty(), "nothing created for ghost");
}

/// Installs Argo Rollouts' Rollout CRD (v1.9.1, as vendored) beside Aviary's. Left installed:
/// deleting it under another test of this file still running would delete that test's Argo
/// Rollouts; nothing of the suite names `rollouts` without its group (`hack/demo.sh` names
/// `rollouts.aviary.dev`).
async fn install_argo_crd(client: &kube::Client) {
    let path = support::repo_root().join("tests/data/argo-v1.9.1/rollout-crd.yaml");
    support::install_crds(client, &[path.as_path()]).await;
}

fn argo_rollouts() -> kube::api::ApiResource {
    kube::api::ApiResource {
        group: "argoproj.io".into(),
        version: "v1alpha1".into(),
        api_version: "argoproj.io/v1alpha1".into(),
        kind: "Rollout".into(),
        plural: "rollouts".into(),
    }
}

/// `kubectl aviary migrate web` in `ns`: whether it succeeded, and what it printed.
fn migrate(ns: &str) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kubectl-aviary"))
        .args(["-n", ns, "migrate", "web"])
        .output()
        .expect("run kubectl-aviary migrate");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// What Argo Rollouts leaves for an Argo Rollout `web` of 4 pods with `strategy`, paused at step
/// 1 with 20 % on its canary: two ReplicaSets it controls (revision 1 at 4 pods, revision 2 at
/// 1), the Services pointed at each with Argo's annotation, its status. Returns its UID and the
/// two revisions' hashes (as Argo computes them on the template its CRD stored).
async fn lay_out_argo(
    client: &kube::Client,
    ns: &str,
    strategy: Value,
) -> (String, String, String) {
    let argo_api: Api<kube::api::DynamicObject> =
        Api::namespaced_with(client.clone(), ns, &argo_rollouts());
    let argo_rollout = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
        "metadata": {"name": "web"},
        "spec": {"replicas": 4, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "web:2"}]}},
            "strategy": strategy}});
    let created = apply_value(client, Some(ns), &argo_rollout)
        .await
        .expect("the Argo Rollout");
    let argo_uid = created.metadata.uid.clone().expect("uid");
    let stored: k8s_openapi::api::core::v1::PodTemplateSpec =
        serde_json::from_value(created.data["spec"]["template"].clone()).expect("template");
    let mut v1 = stored.clone();
    if let Some(c) = v1.spec.as_mut().and_then(|s| s.containers.first_mut()) {
        c.image = Some("web:1".into());
    }
    let h1 = aviary::plan::pod_template_hash(&v1, None);
    let h2 = aviary::plan::pod_template_hash(&stored, None);
    argo_replica_set(client, ns, &argo_uid, &v1, &h1, 1, 4).await;
    argo_replica_set(client, ns, &argo_uid, &stored, &h2, 2, 1).await;
    argo_services(client, ns, &h1, &h2).await;
    let status = json!({"status": {"stableRS": h1, "currentPodHash": h2, "currentStepIndex": 1,
        "pauseConditions": [{"reason": "CanaryPauseStep", "startTime": "2026-12-01T10:00:00Z"}],
        "controllerPause": true, "observedGeneration": "1", "phase": "Paused",
        "message": "CanaryPauseStep", "currentStepHash": "argos",
        "canary": {"weights": {
            "canary": {"weight": 20, "podTemplateHash": h2, "serviceName": "web-canary"},
            "stable": {"weight": 80, "podTemplateHash": h1, "serviceName": "web-stable"}}}}});
    argo_api
        .patch_status("web", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("Argo's status");
    (argo_uid, h1, h2)
}

/// The ReplicaSet of revision `revision` (`hash`) as Argo creates it, controlled by the Argo
/// Rollout `web` of UID `argo_uid`.
async fn argo_replica_set(
    client: &kube::Client,
    ns: &str,
    argo_uid: &str,
    template: &k8s_openapi::api::core::v1::PodTemplateSpec,
    hash: &str,
    revision: i64,
    replicas: i32,
) {
    let mut t = serde_json::to_value(template).expect("template");
    t["metadata"]["labels"][aviary::api::POD_TEMPLATE_HASH_LABEL] = json!(hash);
    let rs = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": format!("web-{hash}"),
            "labels": {"app": "web", "rollouts-pod-template-hash": hash},
            "annotations": {"rollout.argoproj.io/revision": revision.to_string()},
            "ownerReferences": [{"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
                "name": "web", "uid": argo_uid, "controller": true, "blockOwnerDeletion": true}]},
        "spec": {"replicas": replicas,
            "selector": {"matchLabels": {"app": "web", "rollouts-pod-template-hash": hash}},
            "template": t}});
    apply_value(client, Some(ns), &rs)
        .await
        .expect("ReplicaSet");
}

/// The stable and canary Services as Argo leaves them: pointed at `stable` and `canary`, with
/// Argo's managed-by annotation.
async fn argo_services(client: &kube::Client, ns: &str, stable: &str, canary: &str) {
    for (svc, hash) in [("web-stable", stable), ("web-canary", canary)] {
        let doc = json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": svc, "annotations": {"argo-rollouts.argoproj.io/managed-by-rollouts": "web"}},
            "spec": {"selector": {"app": "web", "rollouts-pod-template-hash": hash}, "ports": [{"port": 80}]}});
        apply_value(client, Some(ns), &doc).await.expect("service");
    }
}

/// The namespace's `app=web` pods once there are `n` of them (60 s).
async fn web_pods_up(
    client: &kube::Client,
    ns: &str,
    n: usize,
) -> std::collections::BTreeSet<(String, String)> {
    poll_until(
        &format!("{n} app=web pods"),
        Duration::from_secs(60),
        Duration::from_millis(200),
        || async {
            let pods = web_pods(client, ns).await;
            (pods.len() == n).then_some(pods)
        },
    )
    .await
}

/// The names and UIDs of the namespace's `app=web` pods that are not being deleted.
async fn web_pods(client: &kube::Client, ns: &str) -> std::collections::BTreeSet<(String, String)> {
    let api: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), ns);
    api.list(&kube::api::ListParams::default().labels("app=web"))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| {
            (
                p.metadata.name.unwrap_or_default(),
                p.metadata.uid.unwrap_or_default(),
            )
        })
        .collect()
}

/// Given an Argo Rollout paused mid-canary as Argo Rollouts leaves it (Istio, 20 % on a canary
/// ReplicaSet of 1 pod beside a stable of 4, Services pointed at each with Argo's annotation; both
/// CRDs installed), when `kubectl aviary migrate` hands it over while the Aviary controller runs,
/// then the Aviary Rollout of that name is paused at the same step with the same weight, controls
/// the same ReplicaSets at the same sizes, the Services still select the same revisions, no pod
/// was replaced, and the Argo Rollout is gone; `promote` then goes on to the next step's weight.
#[tokio::test]
async fn an_argo_rollout_is_taken_over_mid_canary_without_restarting_a_pod() {
    let client = client().await;
    prepare(&client).await;
    install_argo_crd(&client).await;
    let ns = TestNamespace::new(&client, "migrate").await;
    let strategy = json!({"canary": {"stableService": "web-stable", "canaryService": "web-canary",
        "trafficRouting": {"istio": {"virtualService": {"name": "web", "routes": ["primary"]}}},
        "steps": [{"setWeight": 20}, {"pause": {}}, {"setWeight": 60}, {"pause": {}}]}});
    let (_, h1, h2) = lay_out_argo(&client, &ns.name, strategy).await;
    let argo_api: Api<kube::api::DynamicObject> =
        Api::namespaced_with(client.clone(), &ns.name, &argo_rollouts());
    let vs = json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "web"},
        "spec": {"hosts": ["web.example.com"], "http": [{"name": "primary", "route": [
            {"destination": {"host": "web-stable"}, "weight": 80},
            {"destination": {"host": "web-canary"}, "weight": 20}]}]}});
    apply_value(&client, Some(&ns.name), &vs)
        .await
        .expect("VirtualService");
    let before = web_pods_up(&client, &ns.name, 5).await;

    let ctl = ControllerProcess::start(&ns.name);
    let (ok, stdout) = migrate(&ns.name);
    assert!(ok, "migrate: {stdout}");
    assert!(
        stdout.contains(&format!("adopted ReplicaSet web-{h1} (4 replicas)")),
        "{stdout}"
    );
    assert!(
        argo_api.get_opt("web").await.expect("get").is_none(),
        "the Argo Rollout is gone"
    );

    let api: Api<Rollout> = Api::namespaced(client.clone(), &ns.name);
    let st = rollout_status(
        &api,
        "web",
        "the Aviary controller's status, paused at step 1",
        |s| {
            s.observed_generation.is_some()
                && s.phase == Some(RolloutPhase::Paused)
                && s.current_step_index == Some(1)
        },
    )
    .await;
    assert_eq!(st.stable_rs.as_deref(), Some(h1.as_str()));
    assert_eq!(st.current_pod_hash.as_deref(), Some(h2.as_str()));
    let live = api.get("web").await.expect("rollout");
    assert!(!aviary::api::wire::migrating(&live.metadata), "released");
    let uid = live.metadata.uid.clone().unwrap_or_default();
    let replica_sets: Api<k8s_openapi::api::apps::v1::ReplicaSet> =
        Api::namespaced(client.clone(), &ns.name);
    for (hash, replicas) in [(&h1, 4), (&h2, 1)] {
        let rs = replica_sets
            .get(&format!("web-{hash}"))
            .await
            .expect("ReplicaSet");
        let owner = rs
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true))
            .map(|o| o.uid.clone());
        assert_eq!(owner.as_deref(), Some(uid.as_str()), "web-{hash} adopted");
        assert_eq!(
            rs.spec.and_then(|s| s.replicas),
            Some(replicas),
            "web-{hash} keeps its size\n{}",
            ctl.log_tail(30)
        );
    }
    for (svc, hash) in [("web-stable", &h1), ("web-canary", &h2)] {
        assert_eq!(
            selected_hash(&client, &ns.name, svc).await.as_deref(),
            Some(hash.as_str()),
            "{svc} still selects its revision"
        );
    }
    let vs_api: Api<kube::api::DynamicObject> = Api::namespaced_with(
        client.clone(),
        &ns.name,
        &kube::api::ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(
            "networking.istio.io",
            "v1",
            "VirtualService",
        )),
    );
    let canary_weight = || async {
        let vs = vs_api.get("web").await.ok()?;
        vs.data["spec"]["http"][0]["route"]
            .as_array()?
            .iter()
            .find(|d| d["destination"]["host"] == "web-canary")
            .and_then(|d| d["weight"].as_i64())
    };
    assert_eq!(canary_weight().await, Some(20), "the weight did not move");
    assert_eq!(
        web_pods(&client, &ns.name).await,
        before,
        "no pod was replaced"
    );

    // Aviary's from now on: promote goes on to 60 %.
    let promote = std::process::Command::new(env!("CARGO_BIN_EXE_kubectl-aviary"))
        .args(["-n", &ns.name, "promote", "web"])
        .output()
        .expect("run kubectl-aviary promote");
    assert!(promote.status.success(), "{promote:?}");
    poll_until(
        "60 % on the canary after promote",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || async { (canary_weight().await == Some(60)).then_some(()) },
    )
    .await;
}

/// Given an Argo Rollout with `workloadRef` and no selector of its own, Healthy on 3 pods beside
/// its Deployment scaled to 0 (Argo's migration guide), when it is migrated, then its ReplicaSet
/// is the Aviary Rollout's — never orphaned, so the Deployment, whose selector matches it, never
/// takes it over and scales it to 0 (helper-42) — and its pods stay.
#[tokio::test]
async fn a_workload_ref_argo_rollout_is_migrated_without_the_deployment_taking_its_pods() {
    let client = client().await;
    prepare(&client).await;
    install_argo_crd(&client).await;
    let ns = TestNamespace::new(&client, "migrate-wl").await;
    let argo_ar = kube::api::ApiResource {
        group: "argoproj.io".into(),
        version: "v1alpha1".into(),
        api_version: "argoproj.io/v1alpha1".into(),
        kind: "Rollout".into(),
        plural: "rollouts".into(),
    };
    let argo_api: Api<kube::api::DynamicObject> =
        Api::namespaced_with(client.clone(), &ns.name, &argo_ar);
    apply_value(&client, Some(&ns.name), &json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web"}, "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "web:1"}]}}}}))
    .await
    .expect("Deployment");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    let stored = deployments
        .get("web")
        .await
        .expect("Deployment")
        .spec
        .expect("spec")
        .template;
    let h = aviary::plan::pod_template_hash(&stored, None);
    let created = apply_value(&client, Some(&ns.name), &json!({"apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout", "metadata": {"name": "web"},
        "spec": {"replicas": 3,
            "workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "scaleDown": "onsuccess"},
            "strategy": {"canary": {"stableService": "web-stable", "canaryService": "web-canary",
                "steps": [{"setWeight": 20}, {"pause": {}}]}}}}))
    .await
    .expect("the Argo Rollout");
    let argo_uid = created.metadata.uid.clone().expect("uid");
    argo_replica_set(&client, &ns.name, &argo_uid, &stored, &h, 1, 3).await;
    argo_services(&client, &ns.name, &h, &h).await;
    argo_api
        .patch_status(
            "web",
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {"stableRS": h, "currentPodHash": h,
                "currentStepIndex": 2, "observedGeneration": "1", "phase": "Healthy"}})),
        )
        .await
        .expect("Argo's status");
    let before = web_pods_up(&client, &ns.name, 3).await;
    let ctl = ControllerProcess::start(&ns.name);
    let (ok, out) = migrate(&ns.name);
    assert!(ok, "migrate: {out}");
    let api: Api<Rollout> = Api::namespaced(client.clone(), &ns.name);
    rollout_status(&api, "web", "Healthy under Aviary", |s| {
        s.observed_generation.is_some() && s.phase == Some(RolloutPhase::Healthy)
    })
    .await;
    let uid = api
        .get("web")
        .await
        .expect("rollout")
        .metadata
        .uid
        .unwrap_or_default();
    let replica_sets: Api<k8s_openapi::api::apps::v1::ReplicaSet> =
        Api::namespaced(client.clone(), &ns.name);
    let rs = replica_sets
        .get(&format!("web-{h}"))
        .await
        .expect("ReplicaSet");
    let owner = rs
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
        .map(|o| (o.kind.clone(), o.uid.clone()));
    assert_eq!(
        owner,
        Some(("Rollout".to_string(), uid)),
        "{}",
        ctl.log_tail(20)
    );
    assert_eq!(rs.spec.and_then(|s| s.replicas), Some(3));
    assert_eq!(web_pods(&client, &ns.name).await, before, "pods kept");
}

/// Given an Argo Rollout that does not convert (an `experiment` step), when `migrate` refuses it,
/// then nothing was written: Argo's controller still has it (no instance-id label), and no Aviary
/// Rollout exists (helper-43).
#[tokio::test]
async fn a_refused_migration_writes_nothing() {
    let client = client().await;
    prepare(&client).await;
    install_argo_crd(&client).await;
    let ns = TestNamespace::new(&client, "migrate-refused").await;
    let strategy = json!({"canary": {"stableService": "web-stable", "canaryService": "web-canary",
        "steps": [{"setWeight": 20}, {"pause": {}},
            {"experiment": {"templates": [{"name": "x", "specRef": "canary"}]}}]}});
    lay_out_argo(&client, &ns.name, strategy).await;
    let (ok, out) = migrate(&ns.name);
    assert!(!ok, "refused: {out}");
    assert!(out.contains("experiment"), "names the field: {out}");
    let argo_api: Api<kube::api::DynamicObject> =
        Api::namespaced_with(client.clone(), &ns.name, &argo_rollouts());
    let argo = argo_api.get("web").await.expect("the Argo Rollout");
    assert!(
        !argo
            .metadata
            .labels
            .clone()
            .unwrap_or_default()
            .contains_key("argo-rollouts.argoproj.io/controller-instance-id"),
        "Argo's controller was told to let go of a Rollout that was not taken over"
    );
    let api: Api<Rollout> = Api::namespaced(client.clone(), &ns.name);
    assert!(api.get_opt("web").await.expect("get").is_none());
}

/// Given an Argo Rollout routed by NGINX, paused at 20 % with the canary Ingress Argo controls,
/// when it is migrated, then the canary Ingress is the Aviary Rollout's and `promote` moves its
/// weight to 60 (an orphaned canary Ingress was refused as someone else's: helper-43). A
/// ReplicaSet of the selector that nobody controls (another Rollout's, orphaned) is left alone.
#[tokio::test]
async fn an_nginx_argo_rollout_is_taken_over_with_its_canary_ingress_and_nothing_else() {
    let client = client().await;
    prepare(&client).await;
    install_argo_crd(&client).await;
    let ns = TestNamespace::new(&client, "migrate-nginx").await;
    let strategy = json!({"canary": {"stableService": "web-stable", "canaryService": "web-canary",
        "trafficRouting": {"nginx": {"stableIngress": "web"}},
        "steps": [{"setWeight": 20}, {"pause": {}}, {"setWeight": 60}, {"pause": {}}]}});
    let (argo_uid, _, _) = lay_out_argo(&client, &ns.name, strategy).await;
    let rule = |svc: &str| {
        json!([{"host": "web.example.com", "http": {"paths": [{"path": "/", "pathType": "Prefix",
        "backend": {"service": {"name": svc, "port": {"number": 80}}}}]}}])
    };
    let stable = json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "web"}, "spec": {"ingressClassName": "nginx", "rules": rule("web-stable")}});
    apply_value(&client, Some(&ns.name), &stable)
        .await
        .expect("stable Ingress");
    let canary = json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "web-web-canary",
            "annotations": {"nginx.ingress.kubernetes.io/canary": "true",
                "nginx.ingress.kubernetes.io/canary-weight": "20"},
            "ownerReferences": [{"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
                "name": "web", "uid": argo_uid, "controller": true, "blockOwnerDeletion": true}]},
        "spec": {"ingressClassName": "nginx", "rules": rule("web-canary")}});
    apply_value(&client, Some(&ns.name), &canary)
        .await
        .expect("canary Ingress");
    let foreign = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "web-admin-6d4c8b", "labels": {"app": "web", "tier": "admin",
            "rollouts-pod-template-hash": "6d4c8b"}},
        "spec": {"replicas": 1,
            "selector": {"matchLabels": {"app": "web", "tier": "admin", "rollouts-pod-template-hash": "6d4c8b"}},
            "template": {"metadata": {"labels": {"app": "web", "tier": "admin", "rollouts-pod-template-hash": "6d4c8b"}},
                "spec": {"containers": [{"name": "admin", "image": "admin:7"}]}}}});
    apply_value(&client, Some(&ns.name), &foreign)
        .await
        .expect("foreign ReplicaSet");
    let ctl = ControllerProcess::start(&ns.name);
    let (ok, out) = migrate(&ns.name);
    assert!(ok, "migrate: {out}");
    assert!(!out.contains("web-admin-6d4c8b"), "{out}");
    let api: Api<Rollout> = Api::namespaced(client.clone(), &ns.name);
    rollout_status(&api, "web", "paused at step 1 under Aviary", |s| {
        s.observed_generation.is_some()
            && s.phase == Some(RolloutPhase::Paused)
            && s.current_step_index == Some(1)
    })
    .await;
    let ingresses: Api<k8s_openapi::api::networking::v1::Ingress> =
        Api::namespaced(client.clone(), &ns.name);
    let weight = || async {
        ingresses
            .get("web-web-canary")
            .await
            .ok()?
            .metadata
            .annotations?
            .get("nginx.ingress.kubernetes.io/canary-weight")
            .cloned()
    };
    assert_eq!(weight().await.as_deref(), Some("20"));
    let promote = std::process::Command::new(env!("CARGO_BIN_EXE_kubectl-aviary"))
        .args(["-n", &ns.name, "promote", "web"])
        .output()
        .expect("promote");
    assert!(promote.status.success(), "{promote:?}");
    poll_until(
        "60 % on the canary Ingress after promote",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || async { (weight().await.as_deref() == Some("60")).then_some(()) },
    )
    .await;
    let rs_api: Api<k8s_openapi::api::apps::v1::ReplicaSet> =
        Api::namespaced(client.clone(), &ns.name);
    let rs = rs_api.get("web-admin-6d4c8b").await.expect("foreign");
    assert!(
        rs.metadata.owner_references.is_none(),
        "{:?}\n{}",
        rs.metadata.owner_references,
        ctl.log_tail(20)
    );
    assert_eq!(rs.spec.and_then(|s| s.replicas), Some(1));
}

/// Given a migration stopped after it created the held Aviary Rollout, and the Argo Rollout
/// then promoted and its steps edited, when migrate runs again, then the Aviary Rollout has the
/// Argo Rollout's spec and status as they are now: 5 steps, no pause (helper-43).
#[tokio::test]
async fn a_rerun_copies_the_argo_rollout_afresh() {
    let client = client().await;
    prepare(&client).await;
    install_argo_crd(&client).await;
    let ns = TestNamespace::new(&client, "migrate-rerun").await;
    let strategy = json!({"canary": {"stableService": "web-stable", "canaryService": "web-canary",
        "steps": [{"setWeight": 20}, {"pause": {}}, {"setWeight": 60}, {"pause": {}}]}});
    let (argo_uid, h1, h2) = lay_out_argo(&client, &ns.name, strategy).await;
    // What a run stopped after stage 2 leaves: the held Aviary Rollout of its read.
    let held = json!({"apiVersion": "aviary.dev/v1alpha1", "kind": "Rollout",
        "metadata": {"name": "web", "annotations": {"aviary.dev/migrating-from": argo_uid}},
        "spec": {"replicas": 4, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "web:2"}]}},
            "strategy": {"canary": {"stableService": "web-stable", "canaryService": "web-canary",
                "steps": [{"setWeight": 20}, {"pause": {}}, {"setWeight": 60}, {"pause": {}}]}}}});
    apply_value(&client, Some(&ns.name), &held)
        .await
        .expect("held");
    let api: Api<Rollout> = Api::namespaced(client.clone(), &ns.name);
    api.patch_status(
        "web",
        &PatchParams::default(),
        &Patch::Merge(&json!({"status": {
        "stableRS": h1, "currentPodHash": h2, "currentStepIndex": 1,
        "pauseConditions": [{"reason": "CanaryPauseStep", "startTime": "2026-12-01T10:00:00Z"}],
        "controllerPause": true}})),
    )
    .await
    .expect("held status");
    let argo_api: Api<kube::api::DynamicObject> =
        Api::namespaced_with(client.clone(), &ns.name, &argo_rollouts());
    // Meanwhile the Argo Rollout is promoted, and its steps edited.
    argo_api
        .patch_status(
            "web",
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {"pauseConditions": null, "controllerPause": null}})),
        )
        .await
        .expect("promote");
    argo_api
        .patch("web", &PatchParams::default(), &Patch::Merge(&json!({"spec": {"strategy": {"canary": {
            "steps": [{"setWeight": 20}, {"pause": {}}, {"setWeight": 40}, {"pause": {}}, {"setWeight": 80}]}}}})))
        .await
        .expect("edit");
    let (ok, out) = migrate(&ns.name);
    assert!(ok, "migrate: {out}");
    let live = api.get("web").await.expect("rollout");
    assert_eq!(
        live.spec.steps().len(),
        5,
        "the steps as the Argo Rollout had them"
    );
    let st = live.status.unwrap_or_default();
    assert!(
        st.pause_conditions.is_empty() && st.controller_pause.is_none(),
        "the promote is kept: {:?} {:?}",
        st.pause_conditions,
        st.controller_pause
    );
}
