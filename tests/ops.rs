//! Running in production, end to end: real controller processes against the local cluster.
//!
//! - leader election: one writer among two processes; a stolen lease stops all writes at once;
//!   a killed leader is replaced within the lease duration; SIGTERM releases the lease at once;
//! - metrics, delivery (DORA) figures and webhooks after real rollouts that complete, abort and
//!   roll back — checked on `/metrics`, through the local Prometheus with the PromQL of
//!   `docs/operations.md`, and at a webhook receiver the test runs.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use aviary::api::{Rollout, RolloutPhase};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use support::controller::{
    ControllerProcess, controller_writes_between, grant_rbac, install_aviary_crds, wait_rbac,
};
use support::scrape::{PromTarget, Sample, probe, scrape, sum};
use support::webhook::{WebhookReceiver, hanging_server};
use support::{TestNamespace, apply_value, client, install_crds, poll_until, upstream_crd};

const LEASE: &str = "aviary-controller";
/// Short lease timings, so handovers happen in seconds.
const LEASE_ARGS: [&str; 6] = [
    "--leader-elect-lease-duration",
    "4s",
    "--leader-elect-renew-deadline",
    "3s",
    "--leader-elect-retry-period",
    "500ms",
];
const LEASE_DURATION: Duration = Duration::from_secs(4);
const RETRY: Duration = Duration::from_millis(500);

async fn setup(client: &Client) {
    install_aviary_crds(client).await;
    install_crds(client, &[&upstream_crd("istio-virtualservice.yaml")]).await;
    grant_rbac(client).await;
    wait_rbac(client).await;
}

async fn fixtures(client: &Client, ns: &str) {
    for name in ["web-stable", "web-canary"] {
        apply_value(
            client,
            Some(ns),
            &json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
                    "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}}),
        )
        .await
        .expect("service");
    }
    apply_value(
        client,
        Some(ns),
        &json!({
            "apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "web"},
            "spec": {"hosts": ["web.example.com"], "http": [{"name": "primary", "route": [
                {"destination": {"host": "web-stable"}, "weight": 100},
                {"destination": {"host": "web-canary"}, "weight": 0}]}]}
        }),
    )
    .await
    .expect("virtual service");
}

fn rollout(image: &str, steps: Value) -> Value {
    json!({
        "apiVersion": "aviary.dev/v1alpha1", "kind": "Rollout", "metadata": {"name": "web"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                         "spec": {"containers": [{"name": "web", "image": image}]}},
            "strategy": {"canary": {
                "canaryService": "web-canary", "stableService": "web-stable",
                "scaleDownDelaySeconds": 1, "abortScaleDownDelaySeconds": 1,
                "trafficRouting": {"istio": {"virtualService": {"name": "web", "routes": ["primary"]}}},
                "steps": steps,
            }}
        }
    })
}

fn hash_of(manifest: &Value) -> String {
    let ro: Rollout = serde_json::from_value(manifest.clone()).expect("rollout manifest");
    aviary::plan::pod_template_hash(&ro.spec.template, None)
}

async fn status(client: &Client, ns: &str) -> aviary::api::RolloutStatus {
    Api::<Rollout>::namespaced(client.clone(), ns)
        .get("web")
        .await
        .ok()
        .and_then(|r| r.status)
        .unwrap_or_default()
}

async fn wait_phase(
    client: &Client,
    ns: &str,
    what: &str,
    timeout: Duration,
    ok: impl Fn(&aviary::api::RolloutStatus) -> bool,
) {
    let deadline = Instant::now() + timeout;
    loop {
        let st = status(client, ns).await;
        if ok(&st) {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "timed out after {timeout:?} waiting for {what}: phase {:?}, message {:?}, step {:?}",
                st.phase, st.message, st.current_step_index
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_healthy_on(client: &Client, ns: &str, hash: &str, timeout: Duration) {
    let h = hash.to_string();
    wait_phase(
        client,
        ns,
        &format!("Healthy on {hash}"),
        timeout,
        move |st| {
            st.phase == Some(RolloutPhase::Healthy) && st.stable_rs.as_deref() == Some(h.as_str())
        },
    )
    .await;
}

async fn wait_paused(client: &Client, ns: &str) {
    wait_phase(client, ns, "Paused", Duration::from_secs(60), |st| {
        st.phase == Some(RolloutPhase::Paused)
    })
    .await;
}

async fn patch_status(client: &Client, ns: &str, patch: Value) {
    Api::<Rollout>::namespaced(client.clone(), ns)
        .patch_status(
            "web",
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": patch})),
        )
        .await
        .expect("patch rollout status");
}

/// Given a namespace with the fixtures, the Rollout on `web:1` with [`timed_steps`], and the
/// controller "a" holding the Lease.
async fn given_a_leader(prefix: &str) -> (Client, TestNamespace, ControllerProcess) {
    let client = client().await;
    setup(&client).await;
    let ns = TestNamespace::new(&client, prefix).await;
    fixtures(&client, &ns.name).await;
    let v1 = rollout("web:1", timed_steps());
    apply_value(&client, Some(&ns.name), &v1).await.expect("v1");
    let a = ControllerProcess::start_named(&ns.name, "a", &LEASE_ARGS);
    wait_holder(
        &client,
        &ns.name,
        Some(&a.identity()),
        Duration::from_secs(30),
    )
    .await;
    (client, ns, a)
}

/// Applies the Rollout on `image` with [`timed_steps`] and waits until its first step is done;
/// returns the new revision's hash.
async fn update_under_way(client: &Client, ns: &str, image: &str) -> String {
    let next = rollout(image, timed_steps());
    let hash = hash_of(&next);
    apply_value(client, Some(ns), &next).await.expect("update");
    // Of the new revision: the finished update before it also shows a step index.
    let h = hash.clone();
    wait_phase(
        client,
        ns,
        "update under way",
        Duration::from_secs(30),
        move |st| {
            st.current_pod_hash.as_deref() == Some(h.as_str())
                && st.current_step_index.unwrap_or(0) >= 1
        },
    )
    .await;
    hash
}

/// Waits until the controller serving metrics at `addr` says it does not lead.
async fn wait_not_leader(addr: SocketAddr, timeout: Duration) {
    poll_until(
        "the controller notices the loss",
        timeout,
        Duration::from_millis(20),
        || async move {
            let s = scrape(addr).await?;
            (sum(&s, "aviary_leader", &[]) == 0.0).then_some(())
        },
    )
    .await;
}

/// A canary of five weights with 1 s pauses between them.
fn timed_steps() -> Value {
    json!([{"setWeight": 20}, {"pause": {"duration": "1s"}}, {"setWeight": 40}, {"pause": {"duration": "1s"}},
           {"setWeight": 60}, {"pause": {"duration": "1s"}}, {"setWeight": 80}, {"pause": {"duration": "1s"}},
           {"setWeight": 100}])
}

/// Gives the Lease to "intruder", renewed now and valid for 30 s: longer than any observation
/// window, so nobody may take it over before the test releases it. A renewal the frozen leader
/// had already handed to its HTTP client may land between our read and our write (409): the
/// intruder then reads again, as any contender does.
async fn steal_lease(leases: &Api<Lease>) {
    poll_until(
        "the Lease taken by the intruder",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || async move {
            let mut lease = leases.get(LEASE).await.expect("lease");
            if let Some(spec) = lease.spec.as_mut() {
                spec.holder_identity = Some("intruder".into());
                spec.lease_duration_seconds = Some(30);
                spec.renew_time = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
                    Timestamp::now(),
                ));
            }
            match leases.replace(LEASE, &PostParams::default(), &lease).await {
                Ok(_) => Some(()),
                Err(kube::Error::Api(e)) if e.code == 409 => None,
                Err(e) => panic!("steal the lease: {e}"),
            }
        },
    )
    .await;
}

/// The intruder lets go of the Lease (no holder).
async fn give_lease_back(leases: &Api<Lease>) {
    let mut lease = leases.get(LEASE).await.expect("lease");
    if let Some(spec) = lease.spec.as_mut() {
        spec.holder_identity = None;
    }
    leases
        .replace(LEASE, &PostParams::default(), &lease)
        .await
        .expect("release");
}

async fn holder(client: &Client, ns: &str) -> Option<String> {
    Api::<Lease>::namespaced(client.clone(), ns)
        .get_opt(LEASE)
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec?.holder_identity)
        .filter(|h| !h.is_empty())
}

/// Waits until the Lease is held by `identity` (or released, for `None`); returns how long.
async fn wait_holder(
    client: &Client,
    ns: &str,
    identity: Option<&str>,
    timeout: Duration,
) -> Duration {
    let t0 = Instant::now();
    poll_until(
        &format!("lease holder {identity:?}"),
        timeout,
        Duration::from_millis(25),
        || async move { (holder(client, ns).await.as_deref() == identity).then_some(()) },
    )
    .await;
    t0.elapsed()
}

async fn metrics_of(addr: SocketAddr) -> Vec<Sample> {
    poll_until(
        "a /metrics scrape",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || scrape(addr),
    )
    .await
}

fn writes(samples: &[Sample]) -> f64 {
    ["create", "update", "patch", "delete"]
        .iter()
        .map(|v| sum(samples, "aviary_kube_api_requests_total", &[("verb", v)]))
        .sum()
}

/// Given two controllers, when they start, then one holds the Lease and reconciles while the
/// other is ready but makes no write at all; when the lease is taken from the leader, no
/// controller writes anything while the other holder owns it; when the leader is SIGKILLed, the
/// standby takes over within the lease duration and finishes the rollout; when that leader gets
/// SIGTERM, it exits cleanly having released the lease, and a new controller takes it at once.
#[tokio::test]
async fn one_leader_writes_a_lost_lease_stops_writes_a_dead_leader_is_replaced_and_sigterm_releases()
 {
    // Given two controllers.
    let (client, ns, a) = given_a_leader("ops-leader").await;
    let v1 = rollout("web:1", timed_steps());
    let b = ControllerProcess::start_named(&ns.name, "b", &LEASE_ARGS);
    wait_healthy_on(&client, &ns.name, &hash_of(&v1), Duration::from_secs(60)).await;

    // Then the leader reconciles and the standby is ready, live, and has written nothing.
    let (a_metrics, b_metrics, b_health) = (
        a.metrics_addr().await,
        b.metrics_addr().await,
        b.health_addr().await,
    );
    poll_until(
        "standby ready",
        Duration::from_secs(20),
        Duration::from_millis(100),
        || async move { (probe(b_health, "/readyz").await == Some(200)).then_some(()) },
    )
    .await;
    assert_eq!(probe(b_health, "/healthz").await, Some(200));
    let sa = metrics_of(a_metrics).await;
    let sb = metrics_of(b_metrics).await;
    assert_eq!(sum(&sa, "aviary_leader", &[]), 1.0, "a leads");
    assert!(
        sum(&sa, "aviary_reconciles_total", &[]) > 0.0,
        "the leader reconciles"
    );
    assert_eq!(sum(&sb, "aviary_leader", &[]), 0.0, "b stands by");
    assert_eq!(
        sum(&sb, "aviary_reconciles_total", &[]),
        0.0,
        "the standby never reconciles"
    );
    assert_eq!(
        writes(&sb),
        0.0,
        "the standby never writes (not even the lease)"
    );
    assert!(
        sum(
            &sb,
            "aviary_kube_api_requests_total",
            &[("verb", "get"), ("resource", "leases")]
        ) > 0.0
    );

    // When the lease is taken from the leader in the middle of an update…
    let h2 = update_under_way(&client, &ns.name, "web:2").await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns.name);
    steal_lease(&leases).await;
    let stolen = Instant::now();
    wait_not_leader(a_metrics, Duration::from_secs(3)).await;
    println!("leadership loss noticed after {:?}", stolen.elapsed());
    // …then nobody writes while the intruder's lease is valid.
    let quiet_from = Timestamp::now();
    let step_before = status(&client, &ns.name).await.current_step_index;
    tokio::time::sleep(Duration::from_millis(2500)).await; // the observation window itself
    let quiet_to = Timestamp::now();
    let step_after = status(&client, &ns.name).await.current_step_index;
    assert_eq!(
        step_before, step_after,
        "the rollout advanced without a leader"
    );
    let during = controller_writes_between(&ns.name, quiet_from, quiet_to);
    assert!(
        during.is_empty(),
        "writes while another process held the lease: {during:#?}"
    );

    // When the intruder releases it, a controller takes over and the update finishes.
    give_lease_back(&leases).await;
    wait_healthy_on(&client, &ns.name, &h2, Duration::from_secs(60)).await;
    let (ida, idb) = (a.identity(), b.identity());
    let leader_id = poll_until(
        "a controller holding the lease",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || {
            let (ida, idb) = (ida.clone(), idb.clone());
            let client = client.clone();
            let ns = ns.name.clone();
            async move {
                holder(&client, &ns)
                    .await
                    .filter(|h| *h == ida || *h == idb)
            }
        },
    )
    .await;
    let (mut leader, mut standby) = if leader_id == a.identity() {
        (a, b)
    } else {
        (b, a)
    };
    let standby_metrics = standby.metrics_addr().await;

    // When the leader is killed, the standby takes over within the lease duration.
    let h3 = update_under_way(&client, &ns.name, "web:3").await;
    leader.kill();
    let handover = wait_holder(
        &client,
        &ns.name,
        Some(&standby.identity()),
        LEASE_DURATION + RETRY * 2 + Duration::from_secs(2),
    )
    .await;
    println!(
        "handover after SIGKILL of the leader: {handover:?} (lease duration {LEASE_DURATION:?})"
    );
    assert!(
        handover <= LEASE_DURATION + RETRY * 2 + Duration::from_millis(500),
        "handover took {handover:?}"
    );
    wait_healthy_on(&client, &ns.name, &h3, Duration::from_secs(60)).await;
    let s = metrics_of(standby_metrics).await;
    assert_eq!(sum(&s, "aviary_leader", &[]), 1.0);
    assert!(
        sum(&s, "aviary_reconciles_total", &[]) > 0.0,
        "the new leader reconciles"
    );

    // When the leader gets SIGTERM, it exits 0 having released the lease…
    let t0 = Instant::now();
    let exit = standby.terminate(Duration::from_secs(20));
    let exited_after = t0.elapsed();
    assert!(
        exit.is_some_and(|e| e.success()),
        "exit after SIGTERM: {exit:?}\n{}",
        standby.log_tail(20)
    );
    assert_eq!(
        holder(&client, &ns.name).await,
        None,
        "lease released on SIGTERM"
    );
    println!("SIGTERM → exited with the lease released after {exited_after:?}");
    assert!(
        exited_after < Duration::from_secs(5),
        "shutdown took {exited_after:?}"
    );

    // …so a new controller takes it at once, not after the lease duration.
    let c = ControllerProcess::start_named(&ns.name, "c", &LEASE_ARGS);
    let took = wait_holder(
        &client,
        &ns.name,
        Some(&c.identity()),
        Duration::from_secs(30),
    )
    .await;
    println!("a fresh controller took the released lease after {took:?}");
    assert!(
        took < LEASE_DURATION,
        "took {took:?}: the lease was not released"
    );
    assert!(!leader.is_running());
}

/// L1: given two controllers and a canary whose analysis waits on a provider that never answers
/// (timeout 60 s), when the leader gets SIGTERM mid-measurement, it abandons the measurement,
/// exits and releases the lease at once — not after the provider's timeout, and never killed
/// holding the lease — and the standby takes over and measures again. The handover is printed.
#[tokio::test]
async fn sigterm_mid_analysis_hands_over_without_waiting_for_the_provider() {
    let client = client().await;
    setup(&client).await;
    let ns = TestNamespace::new(&client, "ops-handover").await;
    fixtures(&client, &ns.name).await;
    let (slow, accepted) = hanging_server().await;
    let template = json!({
        "apiVersion": "aviary.dev/v1alpha1", "kind": "AnalysisTemplate", "metadata": {"name": "slow"},
        "spec": {"metrics": [{"name": "slow", "successCondition": "result == 1",
            "provider": {"web": {"url": format!("http://{slow}/health"), "jsonPath": "{$.ok}",
                                 "timeoutSeconds": 60}}}]},
    });
    apply_value(&client, Some(&ns.name), &template)
        .await
        .expect("template");
    let steps = json!([{"setWeight": 20}, {"analysis": {"templates": [{"templateName": "slow"}]}},
                       {"setWeight": 100}]);
    apply_value(&client, Some(&ns.name), &rollout("web:1", steps.clone()))
        .await
        .expect("v1");
    let a = ControllerProcess::start_named(&ns.name, "a", &LEASE_ARGS);
    wait_holder(
        &client,
        &ns.name,
        Some(&a.identity()),
        Duration::from_secs(30),
    )
    .await;
    let b = ControllerProcess::start_named(&ns.name, "b", &LEASE_ARGS);
    let v1 = rollout("web:1", steps.clone());
    wait_healthy_on(&client, &ns.name, &hash_of(&v1), Duration::from_secs(60)).await;
    apply_value(&client, Some(&ns.name), &rollout("web:2", steps))
        .await
        .expect("v2");
    poll_until(
        "the leader's measurement in flight",
        Duration::from_secs(60),
        Duration::from_millis(50),
        || async { (accepted.load(std::sync::atomic::Ordering::SeqCst) >= 1).then_some(()) },
    )
    .await;

    let (mut leader, standby) = (a, b);
    let t0 = Instant::now();
    let exit = leader.terminate(Duration::from_secs(30));
    let exited_after = t0.elapsed();
    assert!(
        exit.is_some_and(|e| e.success()),
        "exit after SIGTERM: {exit:?}\n{}",
        leader.log_tail(20)
    );
    let took = wait_holder(
        &client,
        &ns.name,
        Some(&standby.identity()),
        Duration::from_secs(30),
    )
    .await;
    let handover = t0.elapsed();
    println!(
        "SIGTERM mid-measurement: the leader exited after {exited_after:?}; the standby held the lease {took:?} later ({handover:?} from SIGTERM; retry period {RETRY:?}, lease duration {LEASE_DURATION:?})"
    );
    // Released, not expired: the standby took it before the lease could have run out, and the
    // leader did not wait for the provider's 60 s timeout.
    assert!(
        exited_after < Duration::from_secs(20),
        "shutdown waited on the provider: {exited_after:?}"
    );
    assert!(
        took < LEASE_DURATION,
        "the lease was not released: {took:?}"
    );
    poll_until(
        "the new leader measuring again",
        Duration::from_secs(30),
        Duration::from_millis(50),
        || async { (accepted.load(std::sync::atomic::Ordering::SeqCst) >= 2).then_some(()) },
    )
    .await;
}

/// Expected webhook triggers, as (path, trigger) pairs, in order.
fn triggers(bodies: &[Value], key: &str) -> Vec<String> {
    bodies
        .iter()
        .map(|b| b[key].as_str().unwrap_or("").to_string())
        .collect()
}

/// Given a controller with a generic webhook (flags), a Slack-format webhook (notifications
/// file) and a webhook at a dead address, when one update is promoted, one aborted by hand and
/// undone, one rolled back, and one aborted by a failing analysis and undone, then `/metrics`
/// counts the deployments by outcome with a lead time and two times to restore, the analysis
/// run and measurement by phase, the canary weight and phase gauges followed the rollout, the
/// docs' PromQL gives deployment count, change failure rate and time to restore, each webhook
/// got its notifications in order, and the dead one was counted as failed without holding
/// anything up.
#[tokio::test]
async fn delivery_figures_metrics_and_webhooks_follow_real_rollouts() {
    let client = client().await;
    setup(&client).await;
    let ns = TestNamespace::new(&client, "ops-delivery").await;
    fixtures(&client, &ns.name).await;
    let receiver = WebhookReceiver::start().await;
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let file = support::repo_root().join(format!("target/test-logs/notify-{}.yaml", ns.name));
    std::fs::write(
        &file,
        format!(
            "webhooks:\n- name: slack\n  url: {}\n  format: slack\n  triggers: [promoted, aborted, paused]\n- name: dead\n  url: http://{dead}/x\n  timeout: 1s\n  triggers: [promoted]\n",
            receiver.url("/slack")
        ),
    )
    .expect("notifications file");
    let generic = receiver.url("/generic");
    let file_arg = file.display().to_string();
    let ctl = ControllerProcess::start_named(
        &ns.name,
        "delivery",
        &[
            "--notify-webhook-url",
            &generic,
            "--notify-webhook-format",
            "generic",
            "--notify-config",
            &file_arg,
        ],
    );
    let addr = ctl.metrics_addr().await;
    let _target = PromTarget::register(&format!("aviary-{}", ns.name), addr);
    let steps = json!([{"setWeight": 20}, {"pause": {}}, {"setWeight": 100}]);
    let v1 = rollout("web:1", steps.clone());
    let h1 = hash_of(&v1);
    apply_value(&client, Some(&ns.name), &v1).await.expect("v1");
    wait_healthy_on(&client, &ns.name, &h1, Duration::from_secs(60)).await;
    let labels = [("namespace", ns.name.as_str()), ("rollout", "web")];
    // Prometheus has the delivery counters at 0 before anything happens, so increase() sees
    // every event.
    let zeroes = format!(
        "count(aviary_deployments_total{{namespace=\"{}\"}} == 0)",
        ns.name
    );
    poll_until(
        "Prometheus scraping the controller's zeroed counters",
        Duration::from_secs(60),
        Duration::from_millis(250),
        || {
            let q = zeroes.clone();
            async move {
                (support::prom_query(&q).await.ok()?.first().copied() == Some(3.0)).then_some(())
            }
        },
    )
    .await;

    // v2: paused at 20 %, then promoted.
    let v2 = rollout("web:2", steps.clone());
    let h2 = hash_of(&v2);
    apply_value(&client, Some(&ns.name), &v2).await.expect("v2");
    wait_paused(&client, &ns.name).await;
    let s = metrics_of(addr).await;
    assert_eq!(sum(&s, "aviary_rollout_canary_weight_ratio", &labels), 0.2);
    assert_eq!(
        sum(
            &s,
            "aviary_rollout_phase",
            &[labels[0], labels[1], ("phase", "Paused")]
        ),
        1.0
    );
    assert_eq!(sum(&s, "aviary_rollouts", &[("phase", "Paused")]), 1.0);
    patch_status(&client, &ns.name, json!({"pauseConditions": null})).await;
    wait_healthy_on(&client, &ns.name, &h2, Duration::from_secs(60)).await;

    // v3: paused, aborted, then undone (template back to v2).
    let v3 = rollout("web:3", steps.clone());
    apply_value(&client, Some(&ns.name), &v3).await.expect("v3");
    wait_paused(&client, &ns.name).await;
    patch_status(&client, &ns.name, json!({"abort": true})).await;
    wait_phase(
        &client,
        &ns.name,
        "Degraded after abort",
        Duration::from_secs(30),
        |st| st.phase == Some(RolloutPhase::Degraded),
    )
    .await;
    apply_value(&client, Some(&ns.name), &v2)
        .await
        .expect("undo to v2");
    wait_healthy_on(&client, &ns.name, &h2, Duration::from_secs(60)).await;

    // v4: paused, then rolled back by reverting the template.
    let v4 = rollout("web:4", steps);
    apply_value(&client, Some(&ns.name), &v4).await.expect("v4");
    wait_paused(&client, &ns.name).await;
    apply_value(&client, Some(&ns.name), &v2)
        .await
        .expect("revert to v2");
    wait_phase(
        &client,
        &ns.name,
        "Healthy on v2 after the revert",
        Duration::from_secs(60),
        |st| {
            st.phase == Some(RolloutPhase::Healthy)
                && st.current_pod_hash.as_deref() == Some(h2.as_str())
        },
    )
    .await;

    // v5: an analysis step whose metric fails (a web metric reading the receiver's 50 % error
    // rate) aborts the update; undone to v2.
    receiver.serve_document(json!({"errorRate": 0.5}));
    apply_value(
        &client,
        Some(&ns.name),
        &json!({"apiVersion": "aviary.dev/v1alpha1", "kind": "AnalysisTemplate", "metadata": {"name": "error-rate"},
                "spec": {"metrics": [{"name": "error-rate", "failureLimit": 0, "successCondition": "result <= 0.01",
                         "provider": {"web": {"url": receiver.url("/metric"), "jsonPath": "{$.errorRate}"}}}]}}),
    )
    .await
    .expect("analysis template");
    let v5 = rollout(
        "web:5",
        json!([{"setWeight": 20}, {"analysis": {"templates": [{"templateName": "error-rate"}]}}, {"setWeight": 100}]),
    );
    apply_value(&client, Some(&ns.name), &v5).await.expect("v5");
    wait_phase(
        &client,
        &ns.name,
        "aborted by the failed analysis",
        Duration::from_secs(60),
        |st| st.phase == Some(RolloutPhase::Degraded),
    )
    .await;
    apply_value(&client, Some(&ns.name), &v2)
        .await
        .expect("undo to v2");
    wait_healthy_on(&client, &ns.name, &h2, Duration::from_secs(60)).await;

    // Then /metrics counts each deployment outcome.
    let s = poll_until(
        "delivery figures on /metrics",
        Duration::from_secs(20),
        Duration::from_millis(200),
        || async move {
            let s = scrape(addr).await?;
            let restored = sum(
                &s,
                "aviary_deployment_time_to_restore_seconds_count",
                &labels,
            );
            (restored == 2.0).then_some(s)
        },
    )
    .await;
    for (outcome, n) in [("completed", 1.0), ("aborted", 2.0), ("rolled_back", 1.0)] {
        assert_eq!(
            sum(
                &s,
                "aviary_deployments_total",
                &[labels[0], labels[1], ("outcome", outcome)]
            ),
            n,
            "{outcome}"
        );
    }
    assert_eq!(
        sum(&s, "aviary_deployment_lead_time_seconds_count", &labels),
        1.0
    );
    let lead = sum(&s, "aviary_deployment_lead_time_seconds_sum", &labels);
    assert!(lead > 0.0 && lead < 120.0, "lead time {lead}");
    let restore = sum(&s, "aviary_deployment_time_to_restore_seconds_sum", &labels);
    assert!(
        restore > 0.0 && restore < 120.0,
        "time to restore {restore}"
    );
    // …the analysis run and its measurement…
    assert_eq!(
        sum(&s, "aviary_analysis_runs_total", &[("phase", "Failed")]),
        1.0
    );
    assert!(
        sum(
            &s,
            "aviary_analysis_measurements_total",
            &[("phase", "Failed")]
        ) >= 1.0
    );
    // …and the reconcile, phase, weight, leader and API request series.
    assert!(sum(&s, "aviary_reconciles_total", &[("result", "success")]) > 0.0);
    assert!(sum(&s, "aviary_reconcile_duration_seconds_count", &[]) > 0.0);
    assert_eq!(sum(&s, "aviary_rollouts", &[("phase", "Healthy")]), 1.0);
    assert_eq!(
        sum(
            &s,
            "aviary_rollout_phase",
            &[labels[0], labels[1], ("phase", "Healthy")]
        ),
        1.0
    );
    assert_eq!(sum(&s, "aviary_rollout_canary_weight_ratio", &labels), 0.0);
    assert_eq!(sum(&s, "aviary_leader", &[]), 1.0);
    assert!(
        sum(
            &s,
            "aviary_kube_api_requests_total",
            &[
                ("verb", "patch"),
                ("resource", "rollouts/status"),
                ("result", "success")
            ]
        ) > 0.0
    );
    assert!(
        sum(
            &s,
            "aviary_kube_api_requests_total",
            &[("verb", "watch"), ("resource", "rollouts")]
        ) > 0.0
    );
    // Bounded labels: no series names a ReplicaSet, a revision or a request.
    for sample in &s {
        for (k, v) in &sample.labels {
            assert!(
                !v.contains(&h2) && !v.starts_with("web-"),
                "unbounded label {k}={v} on {}",
                sample.name
            );
        }
    }

    // Then the webhooks got their notifications, in order.
    let expected_generic = [
        "paused",
        "promoted",
        "paused",
        "aborted",
        "restored",
        "paused",
        "rolled-back",
        "analysis-failed",
        "aborted",
        "restored",
    ];
    let r = &receiver;
    let bodies = poll_until(
        "generic webhook notifications",
        Duration::from_secs(20),
        Duration::from_millis(100),
        || async move {
            let b = r.bodies("/generic");
            (b.len() >= expected_generic.len()).then_some(b)
        },
    )
    .await;
    assert_eq!(triggers(&bodies, "trigger"), expected_generic);
    let promoted = &bodies[1];
    assert_eq!(promoted["namespace"], ns.name.as_str());
    assert_eq!(promoted["rollout"], "web");
    assert_eq!(promoted["revision"], h2.as_str());
    assert!(
        promoted["leadTimeSeconds"]
            .as_f64()
            .is_some_and(|t| t > 0.0)
    );
    assert!(
        bodies[4]["timeToRestoreSeconds"]
            .as_f64()
            .is_some_and(|t| t > 0.0)
    );
    assert_eq!(bodies[7]["analysisPhase"], "Failed");
    assert!(
        bodies[7]["message"]
            .as_str()
            .is_some_and(|m| m.contains("error-rate")),
        "{}",
        bodies[7]
    );
    let slack = receiver.bodies("/slack");
    assert_eq!(
        slack.len(),
        6,
        "slack: paused, promoted, paused, aborted, paused, aborted: {slack:#?}"
    );
    assert!(
        slack[1]["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("*Rollout promoted*"))
    );
    assert_eq!(slack[3]["attachments"][0]["title"], "Rollout aborted");
    let failed = poll_until(
        "the dead webhook counted",
        Duration::from_secs(20),
        Duration::from_millis(200),
        || async move {
            let s = scrape(addr).await?;
            let n = sum(
                &s,
                "aviary_notifications_total",
                &[("sink", "dead"), ("result", "failed")],
            );
            (n >= 1.0).then_some(n)
        },
    )
    .await;
    assert_eq!(failed, 1.0);
    let s = metrics_of(addr).await;
    assert_eq!(
        sum(
            &s,
            "aviary_notifications_total",
            &[("sink", "flags"), ("result", "sent")]
        ),
        10.0
    );

    // Then the docs' PromQL, through the real Prometheus, gives the figures.
    let nsf = format!("namespace=\"{}\"", ns.name);
    let deployments =
        format!("sum(increase(aviary_deployments_total{{{nsf},outcome=\"completed\"}}[10m]))");
    let cfr = format!(
        "sum(increase(aviary_deployments_total{{{nsf},outcome=~\"aborted|rolled_back\"}}[10m])) / sum(increase(aviary_deployments_total{{{nsf}}}[10m]))"
    );
    let mttr = format!(
        "sum(increase(aviary_deployment_time_to_restore_seconds_sum{{{nsf}}}[10m])) / sum(increase(aviary_deployment_time_to_restore_seconds_count{{{nsf}}}[10m]))"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let (d, f, m) = loop {
        let first = |q: String| async move {
            support::prom_query(&q)
                .await
                .ok()
                .and_then(|v| v.first().copied())
        };
        let (d, f, m) = (
            first(deployments.clone()).await,
            first(cfr.clone()).await,
            first(mttr.clone()).await,
        );
        // increase() extrapolates a little past the last sample.
        if let (Some(d), Some(f), Some(m)) = (d, f, m)
            && d >= 0.95
            && f > 0.7
            && f < 0.8
            && m > 0.0
        {
            break (d, f, m);
        }
        assert!(
            Instant::now() < deadline,
            "PromQL delivery figures: deployments {d:?}, change failure rate {f:?}, time to restore {m:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    println!(
        "PromQL: deployments {d:.2}, change failure rate {f:.2}, mean time to restore {m:.1} s"
    );
    assert!(
        d < 2.0,
        "deployments {d}: one completed deployment, extrapolated by increase()"
    );
}

/// Fencing (issue 21): a leader frozen mid-update — a paused VM, a stopped container — resumes
/// with timers due and reconciles in flight, after another process took the Lease. Given a
/// leader walking a canary with 1 s pauses, when it is frozen (SIGSTOP), the Lease is taken
/// from it, and it resumes (SIGCONT) past its renew deadline, then it sends no write at all:
/// every write waits for a renewal younger than the renew deadline, and that renewal finds the
/// other holder.
#[tokio::test]
async fn a_frozen_leader_that_resumes_after_losing_the_lease_writes_nothing() {
    let (client, ns, a) = given_a_leader("ops-frozen").await;
    let v1 = rollout("web:1", timed_steps());
    wait_healthy_on(&client, &ns.name, &hash_of(&v1), Duration::from_secs(60)).await;
    let a_metrics = a.metrics_addr().await;

    let h2 = update_under_way(&client, &ns.name, "web:2").await;
    // Frozen while it waits out a pause: with no request of its own half-sent (one handed to
    // the HTTP client before a freeze goes out after it, past any fence).
    wait_paused(&client, &ns.name).await;
    a.signal("STOP");
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns.name);
    steal_lease(&leases).await;
    // The freeze itself is what is tested: it lasts past the renew deadline (3 s) and the
    // lease duration (4 s), with pause timers falling due meanwhile.
    tokio::time::sleep(LEASE_DURATION + Duration::from_secs(1)).await;
    let resumed = Timestamp::now();
    a.signal("CONT");
    wait_not_leader(a_metrics, Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await; // the observation window itself
    let during = controller_writes_between(&ns.name, resumed, Timestamp::now());
    assert!(
        during.is_empty(),
        "writes by a resumed leader that had lost the lease: {during:#?}\n{}",
        a.log_tail(30)
    );

    // When the intruder lets go, it leads again and the update finishes.
    give_lease_back(&leases).await;
    wait_healthy_on(&client, &ns.name, &h2, Duration::from_secs(60)).await;
}

/// H2 on the real controller: one client holding its share of the probe listener's connections
/// (8) gets no more, while another client (here another loopback address, as the kubelet is to
/// a pod) still gets `/readyz` answered; a client that never sends its request is cut off.
#[tokio::test]
async fn one_client_cannot_hold_the_probes_hostage() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let client = client().await;
    setup(&client).await;
    let ns = TestNamespace::new(&client, "ops-probes").await;
    let ctl = ControllerProcess::start(&ns.name);
    let addr = ctl.health_addr().await;
    poll_until(
        "the controller ready",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || async { (probe(addr, "/readyz").await == Some(200)).then_some(()) },
    )
    .await;
    // The readiness probes above may still hold a slot for a moment: a connection the
    // listener refused (closed at once) is replaced until all 8 are held.
    let mut held = vec![];
    let deadline = Instant::now() + Duration::from_secs(20);
    while held.len() < aviary::metrics::MAX_CONNECTIONS_PER_PEER {
        assert!(
            Instant::now() < deadline,
            "only {} connections held",
            held.len()
        );
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let mut byte = [0u8; 1];
        if tokio::time::timeout(Duration::from_millis(500), s.read(&mut byte))
            .await
            .is_err()
        {
            held.push(s);
        }
    }
    let mut extra = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let _ = extra
        .write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await;
    let mut answer = vec![];
    let _ = tokio::time::timeout(Duration::from_secs(5), extra.read_to_end(&mut answer)).await;
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
    let other = tokio::net::TcpSocket::new_v4().expect("socket");
    other
        .bind("127.0.0.2:0".parse().expect("addr"))
        .expect("bind 127.0.0.2");
    let mut other = other.connect(addr).await.expect("connect");
    let _ = other
        .write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await;
    let mut answer = vec![];
    let _ = tokio::time::timeout(Duration::from_secs(5), other.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // The silent ones are cut off after the header timeout, not held.
    let t0 = Instant::now();
    let mut first = held.remove(0);
    let mut rest = vec![];
    let _ = tokio::time::timeout(Duration::from_secs(30), first.read_to_end(&mut rest)).await;
    println!("a silent client was cut off after {:?}", t0.elapsed());
    assert!(t0.elapsed() < Duration::from_secs(30), "held open");
}
