//! Blue-green end to end: the real controller binary against the local cluster, where the real
//! controller-manager keeps each Service's EndpointSlices — so "the active Service serves the old
//! pods" is checked the way traffic sees it, not by reading a selector back. Each test reads as
//! given / when / then.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use aviary::api::{PauseReason, Rollout, RolloutPhase, RolloutStatus};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Client;
use kube::api::{Api, ListParams};
use serde_json::{Value, json};
use support::controller::{ControllerProcess, grant_rbac, install_aviary_crds, wait_rbac};
use support::pods::{NodePool, record_availability};
use support::{TestNamespace, apply_value, client, poll_until};

const REPLICAS: i32 = 3;
const HASH_LABEL: &str = "rollouts-pod-template-hash";

async fn setup(client: &Client, prefix: &str) -> TestNamespace {
    install_aviary_crds(client).await;
    grant_rbac(client).await;
    wait_rbac(client).await;
    TestNamespace::new(client, prefix).await
}

/// A Service as its owner writes it: selecting the app, with a label Aviary must leave alone.
fn service(name: &str, selector: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
           "spec": {"selector": selector, "ports": [{"port": 80, "targetPort": 8080}]}})
}

fn services() -> [Value; 2] {
    [
        service("web-active", json!({"app": "web", "tier": "api"})),
        service("web-preview", json!({"app": "web", "tier": "api"})),
    ]
}

fn rollout(image: &str, blue_green: Value) -> Value {
    let mut strategy = json!({"activeService": "web-active", "previewService": "web-preview"});
    if let (Some(s), Some(extra)) = (strategy.as_object_mut(), blue_green.as_object()) {
        s.extend(extra.clone());
    }
    json!({
        "apiVersion": "aviary.dev/v1alpha1", "kind": "Rollout", "metadata": {"name": "web"},
        "spec": {
            "replicas": REPLICAS,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web", "tier": "api"}},
                         "spec": {"containers": [{"name": "web", "image": image}]}},
            "strategy": {"blueGreen": strategy}
        }
    })
}

fn hash_of(manifest: &Value) -> String {
    let ro: Rollout = serde_json::from_value(manifest.clone()).expect("rollout manifest");
    aviary::plan::pod_template_hash(&ro.spec.template, None)
}

/// Waits until the Rollout's status satisfies `ok`; panics with the status and the controller's
/// log otherwise.
async fn wait_status(
    client: &Client,
    ns: &str,
    what: &str,
    timeout: Duration,
    ctl: &ControllerProcess,
    ok: impl Fn(&RolloutStatus) -> bool,
) -> RolloutStatus {
    wait_status_of(client, ns, "web", what, timeout, ctl, ok).await
}

async fn wait_status_of(
    client: &Client,
    ns: &str,
    name: &str,
    what: &str,
    timeout: Duration,
    ctl: &ControllerProcess,
    ok: impl Fn(&RolloutStatus) -> bool,
) -> RolloutStatus {
    let api: Api<Rollout> = Api::namespaced(client.clone(), ns);
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(ro) = api.get(name).await {
            let st = ro.status.clone().unwrap_or_default();
            if st.observed_generation == ro.metadata.generation && ok(&st) {
                return st;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {what}: phase {:?}, message {:?}, stable {:?}, blueGreen {:?}, pause {:?}\ncontroller log:\n{}",
                    st.phase,
                    st.message,
                    st.stable_rs,
                    st.blue_green,
                    st.pause_conditions,
                    ctl.log_tail(40)
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn healthy_on(hash: &str) -> impl Fn(&RolloutStatus) -> bool + '_ {
    move |st| st.phase == Some(RolloutPhase::Healthy) && st.stable_rs.as_deref() == Some(hash)
}

/// The ready addresses of a Service, from the EndpointSlices the controller-manager keeps.
async fn endpoint_ips(client: &Client, ns: &str, service: &str) -> BTreeSet<String> {
    let api: Api<EndpointSlice> = Api::namespaced(client.clone(), ns);
    let lp = ListParams::default().labels(&format!("kubernetes.io/service-name={service}"));
    let slices = api.list(&lp).await.map(|l| l.items).unwrap_or_default();
    slices
        .iter()
        .flat_map(|s| s.endpoints.iter())
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true))
        .flat_map(|e| e.addresses.iter().cloned())
        .collect()
}

/// The IPs of the running pods of one revision.
async fn pod_ips(client: &Client, ns: &str, hash: &str) -> BTreeSet<String> {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let lp = ListParams::default().labels(&format!("{HASH_LABEL}={hash}"));
    let pods = api.list(&lp).await.map(|l| l.items).unwrap_or_default();
    pods.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| p.status.as_ref()?.pod_ip.clone())
        .collect()
}

/// Waits until `service`'s endpoints are exactly the `REPLICAS` pods of revision `hash`.
async fn wait_endpoints(client: &Client, ns: &str, service: &str, hash: &str, timeout: Duration) {
    wait_endpoints_n(client, ns, service, hash, REPLICAS as usize, timeout).await
}

async fn wait_endpoints_n(
    client: &Client,
    ns: &str,
    service: &str,
    hash: &str,
    pods: usize,
    timeout: Duration,
) {
    poll_until(
        &format!("{service} endpoints = the pods of {hash}"),
        timeout,
        Duration::from_millis(50),
        || async move {
            let ips = pod_ips(client, ns, hash).await;
            let endpoints = endpoint_ips(client, ns, service).await;
            (ips.len() == pods && endpoints == ips).then_some(())
        },
    )
    .await;
}

async fn selector(client: &Client, ns: &str, service: &str) -> BTreeMap<String, String> {
    Api::<Service>::namespaced(client.clone(), ns)
        .get(service)
        .await
        .expect("get service")
        .spec
        .and_then(|s| s.selector)
        .unwrap_or_default()
}

async fn replicas_of(client: &Client, ns: &str, hash: &str) -> Option<i32> {
    Api::<ReplicaSet>::namespaced(client.clone(), ns)
        .get(&format!("web-{hash}"))
        .await
        .ok()?
        .spec?
        .replicas
}

/// Runs the real `kubectl aviary` plugin (admin kubeconfig from the environment); it must succeed.
async fn kubectl_aviary(args: &[&str]) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_kubectl-aviary"))
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("run kubectl-aviary");
    assert!(
        out.status.success(),
        "kubectl aviary {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn deploy_v1(
    client: &Client,
    ns: &TestNamespace,
    blue_green: &Value,
) -> (ControllerProcess, String) {
    for svc in services() {
        apply_value(client, Some(&ns.name), &svc)
            .await
            .expect("service");
    }
    let v1 = rollout("web:1", blue_green.clone());
    let h1 = hash_of(&v1);
    apply_value(client, Some(&ns.name), &v1).await.expect("v1");
    let ctl = ControllerProcess::start(&ns.name);
    wait_status(
        client,
        &ns.name,
        "Healthy on v1",
        Duration::from_secs(60),
        &ctl,
        healthy_on(&h1),
    )
    .await;
    wait_endpoints(client, &ns.name, "web-active", &h1, Duration::from_secs(30)).await;
    (ctl, h1)
}

/// Given a Healthy blue-green Rollout with manual promotion, when its image changes, then the
/// preview Service's endpoints are the new pods while the active Service's stay the old ones, and
/// it pauses (BlueGreenPause); when promoted, the active Service's endpoints become the new pods,
/// the old ReplicaSet stays up for scaleDownDelaySeconds and then goes to 0. The Services' own
/// selector labels are never touched.
#[tokio::test]
async fn manual_promotion_previews_then_switches_and_scales_the_old_down_after_the_delay() {
    let client = client().await;
    let ns = setup(&client, "bg-manual").await;
    let strategy = json!({"autoPromotionEnabled": false, "scaleDownDelaySeconds": 4});
    let (ctl, h1) = deploy_v1(&client, &ns, &strategy).await;

    let v2 = rollout("web:2", strategy);
    let h2 = hash_of(&v2);
    apply_value(&client, Some(&ns.name), &v2).await.expect("v2");
    let st = wait_status(
        &client,
        &ns.name,
        "paused with BlueGreenPause",
        Duration::from_secs(60),
        &ctl,
        |st| {
            st.phase == Some(RolloutPhase::Paused)
                && st
                    .pause_conditions
                    .iter()
                    .any(|c| c.reason == PauseReason::BlueGreenPause)
        },
    )
    .await;
    let bgs = st.blue_green.expect("blueGreen status");
    assert_eq!(bgs.preview_selector.as_deref(), Some(h2.as_str()));
    assert_eq!(bgs.active_selector.as_deref(), Some(h1.as_str()));
    wait_endpoints(
        &client,
        &ns.name,
        "web-preview",
        &h2,
        Duration::from_secs(30),
    )
    .await;
    wait_endpoints(&client, &ns.name, "web-active", &h1, Duration::from_secs(5)).await;
    let active_selector = selector(&client, &ns.name, "web-active").await;
    assert_eq!(
        active_selector,
        BTreeMap::from([
            ("app".into(), "web".into()),
            ("tier".into(), "api".into()),
            (HASH_LABEL.into(), h1.clone())
        ]),
        "only the hash label is added to the selector"
    );

    kubectl_aviary(&["-n", &ns.name, "promote", "web"]).await;
    wait_endpoints(
        &client,
        &ns.name,
        "web-active",
        &h2,
        Duration::from_secs(30),
    )
    .await;
    let switched = Instant::now();
    assert_eq!(
        replicas_of(&client, &ns.name, &h1).await,
        Some(REPLICAS),
        "the old ReplicaSet stays up right after the switch"
    );
    wait_status(
        &client,
        &ns.name,
        "Healthy on v2",
        Duration::from_secs(30),
        &ctl,
        healthy_on(&h2),
    )
    .await;
    poll_until(
        "old ReplicaSet at 0 after scaleDownDelaySeconds",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            let client = client.clone();
            let (ns, h1) = (ns.name.clone(), h1.clone());
            async move { (replicas_of(&client, &ns, &h1).await == Some(0)).then_some(()) }
        },
    )
    .await;
    let kept = switched.elapsed();
    println!("old ReplicaSet scaled to 0 {kept:?} after the active switch was seen");
    assert!(
        kept >= Duration::from_secs(3),
        "the old pods went before scaleDownDelaySeconds (4 s): after {kept:?}"
    );
    assert_eq!(
        selector(&client, &ns.name, "web-preview")
            .await
            .get("tier")
            .map(String::as_str),
        Some("api")
    );

    for reason in [
        "RolloutPaused",
        "RolloutPromoted",
        "SwitchService",
        "RolloutCompleted",
    ] {
        support::wait_for_event(
            &client,
            &ns.name,
            "web",
            &format!("{reason} Event"),
            |r, _| r == reason,
        )
        .await;
    }
}

/// Given autoPromotionSeconds: 4, when the image changes, then the rollout pauses once the
/// preview is available and promotes itself 4 s later, without anyone's help.
#[tokio::test]
async fn auto_promotion_after_auto_promotion_seconds() {
    let client = client().await;
    let ns = setup(&client, "bg-auto").await;
    let strategy = json!({"autoPromotionSeconds": 4, "scaleDownDelaySeconds": 2});
    let (ctl, h1) = deploy_v1(&client, &ns, &strategy).await;

    let v2 = rollout("web:2", strategy);
    let h2 = hash_of(&v2);
    apply_value(&client, Some(&ns.name), &v2).await.expect("v2");
    let st = wait_status(
        &client,
        &ns.name,
        "paused with BlueGreenPause",
        Duration::from_secs(60),
        &ctl,
        |st| {
            st.pause_conditions
                .iter()
                .any(|c| c.reason == PauseReason::BlueGreenPause)
        },
    )
    .await;
    let paused_at = st.pause_conditions[0].start_time.0;
    wait_endpoints(&client, &ns.name, "web-active", &h1, Duration::from_secs(5)).await;
    wait_endpoints(
        &client,
        &ns.name,
        "web-active",
        &h2,
        Duration::from_secs(30),
    )
    .await;
    let switched_after = k8s_openapi::jiff::Timestamp::now().duration_since(paused_at);
    println!("active Service switched {switched_after:?} after the pause began");
    assert!(
        switched_after >= k8s_openapi::jiff::SignedDuration::from_secs(4),
        "promoted before autoPromotionSeconds: {switched_after:?}"
    );
    assert!(
        switched_after < k8s_openapi::jiff::SignedDuration::from_secs(10),
        "promoted late: {switched_after:?}"
    );
    wait_status(
        &client,
        &ns.name,
        "Healthy on v2",
        Duration::from_secs(30),
        &ctl,
        healthy_on(&h2),
    )
    .await;
    poll_until(
        "old ReplicaSet at 0",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            let client = client.clone();
            let (ns, h1) = (ns.name.clone(), h1.clone());
            async move { (replicas_of(&client, &ns, &h1).await == Some(0)).then_some(()) }
        },
    )
    .await;
}

/// Given a blue-green rollout paused before promotion, when it is aborted, then the active
/// Service never leaves the old pods, the phase is Degraded with reason RolloutAborted, and the
/// preview goes to 0 after abortScaleDownDelaySeconds.
#[tokio::test]
async fn abort_keeps_the_old_pods_active_and_removes_the_preview_after_the_delay() {
    let client = client().await;
    let ns = setup(&client, "bg-abort").await;
    let strategy = json!({"autoPromotionEnabled": false, "abortScaleDownDelaySeconds": 2});
    let (ctl, h1) = deploy_v1(&client, &ns, &strategy).await;
    let v2 = rollout("web:2", strategy);
    let h2 = hash_of(&v2);
    apply_value(&client, Some(&ns.name), &v2).await.expect("v2");
    wait_status(
        &client,
        &ns.name,
        "paused",
        Duration::from_secs(60),
        &ctl,
        |st| st.phase == Some(RolloutPhase::Paused),
    )
    .await;
    kubectl_aviary(&["-n", &ns.name, "abort", "web"]).await;
    let st = wait_status(
        &client,
        &ns.name,
        "Degraded",
        Duration::from_secs(10),
        &ctl,
        |st| st.phase == Some(RolloutPhase::Degraded),
    )
    .await;
    let progressing = st.condition("Progressing").expect("Progressing condition");
    assert_eq!(progressing.reason, "RolloutAborted");
    poll_until(
        "preview ReplicaSet at 0 after abortScaleDownDelaySeconds",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            let client = client.clone();
            let (ns, h2) = (ns.name.clone(), h2.clone());
            async move { (replicas_of(&client, &ns, &h2).await == Some(0)).then_some(()) }
        },
    )
    .await;
    wait_endpoints(&client, &ns.name, "web-active", &h1, Duration::from_secs(5)).await;
    support::wait_for_event(&client, &ns.name, "web", "Event RolloutAborted", |r, _| {
        r == "RolloutAborted"
    })
    .await;
}

/// Given an active Service whose own selector does not match the Rollout's pods, then the
/// Rollout is Degraded with an InvalidSpec condition and Event naming the label, and nothing is
/// switched; once the Service is fixed, the Rollout goes Healthy by itself.
#[tokio::test]
async fn a_service_selecting_foreign_pods_is_reported_and_picked_up_once_fixed() {
    let client = client().await;
    let ns = setup(&client, "bg-foreign").await;
    apply_value(
        &client,
        Some(&ns.name),
        &service("web-active", json!({"app": "shop"})),
    )
    .await
    .expect("service");
    apply_value(
        &client,
        Some(&ns.name),
        &service("web-preview", json!({"app": "web"})),
    )
    .await
    .expect("service");
    let v1 = rollout("web:1", json!({}));
    let h1 = hash_of(&v1);
    apply_value(&client, Some(&ns.name), &v1).await.expect("v1");
    let ctl = ControllerProcess::start(&ns.name);
    let st = wait_status(
        &client,
        &ns.name,
        "InvalidSpec",
        Duration::from_secs(30),
        &ctl,
        |st| {
            st.condition("InvalidSpec")
                .is_some_and(|c| format!("{:?}", c.status) == "True")
        },
    )
    .await;
    assert_eq!(st.phase, Some(RolloutPhase::Degraded));
    let message = st.condition("InvalidSpec").map(|c| c.message.clone());
    assert!(
        message
            .as_deref()
            .is_some_and(|m| m.contains("web-active") && m.contains("app=shop")),
        "{message:?}"
    );
    // The Event is recorded right after the status is written.
    support::wait_for_event(
        &client,
        &ns.name,
        "web",
        "a Warning Event naming the foreign label",
        |r, n| r == "InvalidSpec" && n.contains("app=shop"),
    )
    .await;
    assert!(
        !selector(&client, &ns.name, "web-active")
            .await
            .contains_key(HASH_LABEL),
        "a Service with a foreign selector is never switched"
    );

    apply_value(
        &client,
        Some(&ns.name),
        &service("web-active", json!({"app": "web"})),
    )
    .await
    .expect("fixed service");
    let st = wait_status(
        &client,
        &ns.name,
        "Healthy once the Service is fixed",
        Duration::from_secs(45),
        &ctl,
        healthy_on(&h1),
    )
    .await;
    assert!(
        st.condition("InvalidSpec")
            .is_none_or(|c| format!("{:?}", c.status) == "False"),
        "InvalidSpec cleared"
    );
    wait_endpoints(
        &client,
        &ns.name,
        "web-active",
        &h1,
        Duration::from_secs(30),
    )
    .await;
}

/// The error-rate template of the brief, measuring every second over a 5 s window (no 5xx series
/// yet counts as no errors); one failed measurement fails the run.
fn error_rate_template() -> Value {
    let sel = r#"service="{{args.service-name}}""#;
    json!({"apiVersion": "aviary.dev/v1alpha1", "kind": "AnalysisTemplate", "metadata": {"name": "error-rate"},
    "spec": {"args": [{"name": "service-name"}], "metrics": [{
        "name": "error-rate", "interval": "1s", "initialDelay": "2s", "count": 60, "failureLimit": 0,
        "successCondition": "result[0] <= 0.05",
        "provider": {"prometheus": {"query": format!(
            r#"(sum(rate(http_requests_total{{{sel},status=~"5.."}}[5s])) or vector(0)) / sum(rate(http_requests_total{{{sel}}}[5s]))"#
        )}}}]}})
}

/// Given a blue-green Rollout with a post-promotion error-rate analysis of the active Service,
/// measured through the real Prometheus scraping the traffic simulator, when v2 (which fails
/// every request) is promoted, then the analysis fails and the active Service selects the old
/// pods again within a second — they were kept at full size — and the rollout is Degraded.
#[tokio::test]
async fn a_failing_post_promotion_analysis_switches_active_back_within_a_second() {
    use aviary::api::{AnalysisPhase, AnalysisRun};
    use aviary_trafficsim::exporter::Exporter;
    use aviary_trafficsim::traffic::{Behaviour, SimConfig};
    use std::sync::{Arc, Mutex};

    let prometheus = std::env::var("AVIARY_PROMETHEUS_URL")
        .expect("AVIARY_PROMETHEUS_URL (hack/cluster.sh env)");
    let client = client().await;
    let ns = setup(&client, "bg-post").await;
    for obj in services().into_iter().chain([error_rate_template()]) {
        apply_value(&client, Some(&ns.name), &obj)
            .await
            .expect("fixture");
    }
    let strategy = json!({"postPromotionAnalysis": {
        "templates": [{"templateName": "error-rate"}],
        "args": [{"name": "service-name", "value": format!("{}-web-active", ns.name)}],
    }});
    let v1 = rollout("web:1", strategy.clone());
    let h1 = hash_of(&v1);
    apply_value(&client, Some(&ns.name), &v1).await.expect("v1");
    let ctl = ControllerProcess::start_with(&ns.name, &["--prometheus-address", &prometheus]);
    let exporter = Arc::new(Exporter::start(&ns.name).await);
    let sim = Arc::new(Mutex::new(SimConfig {
        namespace: ns.name.clone(),
        rollout: "web".into(),
        rps: 200.0,
        behaviours: BTreeMap::from([(
            "web:2".to_string(),
            Behaviour {
                error_rate: 1.0,
                latency: 0.02,
            },
        )]),
        default: Behaviour::default(),
        service_prefix: format!("{}-", ns.name),
        service_label: None,
    }));
    let sim_task = tokio::spawn(aviary_trafficsim::traffic::run(
        client.clone(),
        exporter.clone(),
        sim.clone(),
        Duration::from_millis(200),
    ));
    wait_status(
        &client,
        &ns.name,
        "Healthy on v1",
        Duration::from_secs(60),
        &ctl,
        healthy_on(&h1),
    )
    .await;

    let v2 = rollout("web:2", strategy);
    let h2 = hash_of(&v2);
    apply_value(&client, Some(&ns.name), &v2).await.expect("v2");
    wait_endpoints(
        &client,
        &ns.name,
        "web-active",
        &h2,
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(
        replicas_of(&client, &ns.name, &h1).await,
        Some(REPLICAS),
        "the old pods stay up while the post-promotion analysis runs"
    );

    let runs: Api<AnalysisRun> = Api::namespaced(client.clone(), &ns.name);
    let (run, failed_seen) = poll_until(
        "the post-promotion AnalysisRun to fail",
        Duration::from_secs(60),
        Duration::from_millis(10),
        || {
            let runs = runs.clone();
            async move {
                let list = runs.list(&ListParams::default()).await.ok()?;
                list.items
                    .into_iter()
                    .find(|r| {
                        r.metadata
                            .labels
                            .as_ref()
                            .and_then(|l| l.get("aviary.dev/analysis-type"))
                            .is_some_and(|t| t == "PostPromotion")
                            && r.status
                                .as_ref()
                                .is_some_and(|s| s.phase == AnalysisPhase::Failed)
                    })
                    .map(|r| (r, Instant::now()))
            }
        },
    )
    .await;
    let back = poll_until(
        "active Service back on the old pods",
        Duration::from_secs(5),
        Duration::from_millis(5),
        || {
            let client = client.clone();
            let (ns, h1) = (ns.name.clone(), h1.clone());
            async move {
                (selector(&client, &ns, "web-active").await.get(HASH_LABEL) == Some(&h1))
                    .then(Instant::now)
            }
        },
    )
    .await;
    let selector_after = back.duration_since(failed_seen);
    wait_endpoints(&client, &ns.name, "web-active", &h1, Duration::from_secs(5)).await;
    let endpoints_after = failed_seen.elapsed();
    println!(
        "run {} Failed → active selector back after {selector_after:?}, endpoints = old pods after {endpoints_after:?}",
        kube::ResourceExt::name_any(&run)
    );
    assert!(
        selector_after < Duration::from_secs(1),
        "active Service switched back {selector_after:?} after the analysis failed"
    );
    assert!(
        endpoints_after < Duration::from_secs(1),
        "active endpoints were the old pods {endpoints_after:?} after the analysis failed"
    );
    let st = wait_status(
        &client,
        &ns.name,
        "Degraded",
        Duration::from_secs(10),
        &ctl,
        |st| st.phase == Some(RolloutPhase::Degraded),
    )
    .await;
    assert!(
        st.message
            .as_deref()
            .is_some_and(|m| m.contains("post-promotion") && m.contains("error-rate")),
        "{:?}",
        st.message
    );
    assert_eq!(st.stable_rs.as_deref(), Some(h1.as_str()));
    sim_task.abort();
}

/// Given `examples/blue-green.yaml` as written (its analysis left out: the example's
/// Prometheus address does not exist here, and analysis is covered above), then it deploys
/// Healthy behind bff-active, previews a new image behind bff-preview and pauses, and promotes.
#[tokio::test]
async fn the_blue_green_example_previews_pauses_and_promotes() {
    let client = client().await;
    let ns = setup(&client, "bg-example").await;
    let text = std::fs::read_to_string(support::repo_root().join("examples/blue-green.yaml"))
        .expect("read the example");
    let mut docs = support::yaml_documents(&text);
    let mut manifest = Value::Null;
    for doc in &mut docs {
        if doc["kind"] == "Rollout" {
            let bg = &mut doc["spec"]["strategy"]["blueGreen"];
            if let Some(bg) = bg.as_object_mut() {
                bg.remove("prePromotionAnalysis");
                bg.remove("postPromotionAnalysis");
            }
            manifest = doc.clone();
        }
        apply_value(&client, Some(&ns.name), doc)
            .await
            .expect("apply the example");
    }
    let name = manifest["metadata"]["name"]
        .as_str()
        .expect("rollout name")
        .to_string();
    let replicas = manifest["spec"]["replicas"].as_i64().unwrap_or(1) as usize;
    let h1 = hash_of(&manifest);
    let ctl = ControllerProcess::start(&ns.name);
    let t = Duration::from_secs(60);
    let healthy_on_revision = |h: &str| {
        let h = h.to_string();
        move |st: &RolloutStatus| {
            st.phase == Some(RolloutPhase::Healthy) && st.stable_rs.as_deref() == Some(h.as_str())
        }
    };
    wait_status_of(
        &client,
        &ns.name,
        &name,
        "Healthy",
        t,
        &ctl,
        healthy_on_revision(&h1),
    )
    .await;
    wait_endpoints_n(&client, &ns.name, "bff-active", &h1, replicas, t).await;

    manifest["spec"]["template"]["spec"]["containers"][0]["image"] =
        json!("ghcr.io/platform/bff:v1.4.0");
    let h2 = hash_of(&manifest);
    apply_value(&client, Some(&ns.name), &manifest)
        .await
        .expect("new image");
    wait_status_of(&client, &ns.name, &name, "paused", t, &ctl, |st| {
        st.phase == Some(RolloutPhase::Paused)
    })
    .await;
    wait_endpoints_n(&client, &ns.name, "bff-preview", &h2, replicas, t).await;
    wait_endpoints_n(&client, &ns.name, "bff-active", &h1, replicas, t).await;

    kubectl_aviary(&["-n", &ns.name, "promote", &name]).await;
    wait_status_of(
        &client,
        &ns.name,
        &name,
        "Healthy on v1.4.0",
        t,
        &ctl,
        healthy_on_revision(&h2),
    )
    .await;
    wait_endpoints_n(&client, &ns.name, "bff-active", &h2, replicas, t).await;
}

/// Given a Healthy blue-green rollout of 4 pods with `maxUnavailable: 2`, pinned to nodes that
/// then take no new pod, when it is restarted, then two pods are evicted at once (Argo's restart
/// budget; the default, 25 % of 4, would stop at one while its replacement cannot start); once
/// the nodes take pods again every pod is replaced, the ReplicaSet never showing fewer than 2
/// available.
#[tokio::test]
async fn a_restart_evicts_max_unavailable_pods_at_once() {
    let client = client().await;
    let ns = setup(&client, "bg-restart").await;
    let pool = NodePool::new(&ns.name);
    for s in services() {
        apply_value(&client, Some(&ns.name), &s)
            .await
            .expect("service");
    }
    let mut v1 = rollout(
        "web:1",
        json!({"autoPromotionEnabled": true, "maxUnavailable": 2}),
    );
    v1["spec"]["replicas"] = json!(4);
    v1["spec"]["template"]["spec"]["nodeSelector"] = pool.node_selector();
    let h1 = hash_of(&v1);
    apply_value(&client, Some(&ns.name), &v1)
        .await
        .expect("apply v1");
    let ctl = ControllerProcess::start(&ns.name);
    wait_status(
        &client,
        &ns.name,
        "Healthy on v1",
        Duration::from_secs(60),
        &ctl,
        healthy_on(&h1),
    )
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    let ready_names = || {
        let pods = pods.clone();
        async move {
            let list = pods
                .list(&ListParams::default().labels("app=web"))
                .await
                .ok()?;
            Some(
                list.items
                    .into_iter()
                    .filter(|p| p.metadata.deletion_timestamp.is_none())
                    .filter(|p| {
                        p.status
                            .as_ref()
                            .and_then(|s| s.conditions.as_ref())
                            .is_some_and(|c| {
                                c.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                            })
                    })
                    .filter_map(|p| p.metadata.name)
                    .collect::<BTreeSet<String>>(),
            )
        }
    };
    let originals = poll_until(
        "4 ready pods",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || async { ready_names().await.filter(|n| n.len() == 4) },
    )
    .await;
    let (low, watch) = record_availability(&client, &ns.name, &format!("web-{h1}")).await;

    pool.cordon();
    support::pods::run_restart(&ns.name, "web").await;
    poll_until(
        "two original pods evicted together while no replacement can start",
        Duration::from_secs(30),
        Duration::from_millis(50),
        || async {
            let left = ready_names().await?;
            (originals.iter().filter(|n| !left.contains(*n)).count() == 2).then_some(())
        },
    )
    .await;

    pool.uncordon();
    wait_status(
        &client,
        &ns.name,
        "status.restartedAt recorded",
        Duration::from_secs(90),
        &ctl,
        |st| st.restarted_at.is_some(),
    )
    .await;
    poll_until(
        "4 ready pods, none from before the restart",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || async {
            let now = ready_names().await?;
            (now.len() == 4 && now.is_disjoint(&originals)).then_some(())
        },
    )
    .await;
    watch.abort();
    assert!(
        low.lowest().is_some_and(|l| l >= 2),
        "the ReplicaSet showed {:?} available pods at its lowest: more than maxUnavailable went at once",
        low.lowest()
    );
}
