//! The canary engine end to end: the real controller binary against the local cluster (real
//! API server, controller manager and KWOK pods), shifting real Istio VirtualServices, NGINX
//! canary Ingresses and Gateway API HTTPRoutes. Each test reads as given / when / then.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aviary::api::{Rollout, RolloutPhase};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use support::controller::ControllerProcess;
use support::pods::{NodePool, record_availability};
use support::{TestNamespace, apply_value, client, poll_until};

const REPLICAS: i32 = 5;

async fn setup(client: &Client) {
    support::controller::prepare(client).await;
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Router {
    Istio,
    Nginx,
    Gateway,
}

fn service(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
           "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}})
}

/// The routing object a test routes through, as its owner (a user, a GitOps repo) declares it.
fn routing_object(router: Router) -> Value {
    match router {
        Router::Istio => json!({
            "apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "web"},
            "spec": {"hosts": ["web.example.com"], "http": [{"name": "primary", "route": [
                {"destination": {"host": "web-stable"}, "weight": 100},
                {"destination": {"host": "web-canary"}, "weight": 0}]}]}
        }),
        Router::Nginx => json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "web"},
            "spec": {"ingressClassName": "nginx", "rules": [{"host": "web.example.com", "http": {"paths": [
                {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web-stable", "port": {"number": 80}}}}]}}]}
        }),
        Router::Gateway => json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "web"},
            "spec": {"parentRefs": [{"name": "gw"}], "rules": [{"backendRefs": [
                {"name": "web-stable", "port": 80, "weight": 100},
                {"name": "web-canary", "port": 80, "weight": 0}]}]}
        }),
    }
}

fn traffic_routing(router: Router) -> Value {
    match router {
        Router::Istio => {
            json!({"istio": {"virtualService": {"name": "web", "routes": ["primary"]}}})
        }
        Router::Nginx => json!({"nginx": {"stableIngress": "web"}}),
        Router::Gateway => json!({"gatewayAPI": {"httpRoute": "web"}}),
    }
}

fn rollout(router: Router, image: &str, steps: Value) -> Value {
    json!({
        "apiVersion": "aviary.dev/v1alpha1", "kind": "Rollout", "metadata": {"name": "web"},
        "spec": {
            "replicas": REPLICAS,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                         "spec": {"containers": [{"name": "web", "image": image}]}},
            "strategy": {"canary": {
                "canaryService": "web-canary", "stableService": "web-stable",
                "scaleDownDelaySeconds": 2, "abortScaleDownDelaySeconds": 2,
                "trafficRouting": traffic_routing(router),
                "steps": steps,
            }}
        }
    })
}

fn standard_steps() -> Value {
    json!([{"setWeight": 10}, {"pause": {"duration": "2s"}}, {"setWeight": 50}, {"pause": {"duration": 2}}, {"setWeight": 100}])
}

/// Reads the canary weight a routing object shows.
fn canary_weight(router: Router, obj: &DynamicObject) -> Option<i32> {
    match router {
        Router::Istio => obj.data["spec"]["http"][0]["route"]
            .as_array()?
            .iter()
            .find(|d| d["destination"]["host"] == "web-canary")
            .map(|d| d["weight"].as_i64().unwrap_or(0) as i32),
        Router::Nginx => obj
            .annotations()
            .get("nginx.ingress.kubernetes.io/canary-weight")
            .and_then(|w| w.parse().ok()),
        Router::Gateway => obj.data["spec"]["rules"][0]["backendRefs"]
            .as_array()?
            .iter()
            .find(|b| b["name"] == "web-canary")
            .map(|b| b["weight"].as_i64().unwrap_or(1) as i32),
    }
}

fn watched_object(router: Router) -> (GroupVersionKind, &'static str) {
    match router {
        Router::Istio => (
            GroupVersionKind::gvk("networking.istio.io", "v1", "VirtualService"),
            "web",
        ),
        Router::Nginx => (
            GroupVersionKind::gvk("networking.k8s.io", "v1", "Ingress"),
            "web-web-canary",
        ),
        Router::Gateway => (
            GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute"),
            "web",
        ),
    }
}

/// Every distinct canary weight the routing object showed, in order, each with the canary
/// ReplicaSet's available pods at the moment the test saw it.
#[derive(Clone, Default)]
struct WeightLog(Arc<Mutex<Vec<(i32, i32)>>>);

impl WeightLog {
    fn weights(&self) -> Vec<i32> {
        self.0
            .lock()
            .map(|l| l.iter().map(|(w, _)| *w).collect())
            .unwrap_or_default()
    }
    fn entries(&self) -> Vec<(i32, i32)> {
        self.0.lock().map(|l| l.clone()).unwrap_or_default()
    }
    fn last(&self) -> Option<i32> {
        self.weights().last().copied()
    }
    /// Polls (every `every`, up to `timeout`) until the last weight seen is `weight`.
    async fn wait_for(&self, what: &str, weight: i32, timeout: Duration, every: Duration) {
        poll_until(what, timeout, every, || {
            let w = self.last();
            async move { (w == Some(weight)).then_some(()) }
        })
        .await;
    }
}

/// Watches the routing object (every change, not polling) and logs canary weight changes.
/// Applies `next` (an Istio rollout named `web`) and waits until it is Paused with the
/// VirtualService giving the new revision `weight`; returns the Rollout API and the new
/// revision's weight log with its watch task.
async fn update_to_paused_at(
    client: &Client,
    ns: &str,
    next: &Value,
    weight: i32,
) -> (Api<Rollout>, WeightLog, tokio::task::JoinHandle<()>) {
    let h2 = hash_of(next);
    let (log, watch) = record_weights(client, ns, Router::Istio, format!("web-{h2}")).await;
    apply_value(client, Some(ns), next)
        .await
        .expect("the update");
    let api: Api<Rollout> = Api::namespaced(client.clone(), ns);
    poll_until(
        &format!("paused at {weight} %"),
        Duration::from_secs(60),
        Duration::from_millis(100),
        || {
            let api = api.clone();
            let w = log.last();
            async move {
                let st = api.get("web").await.ok()?.status?;
                (st.phase == Some(RolloutPhase::Paused) && w == Some(weight)).then_some(())
            }
        },
    )
    .await;
    (api, log, watch)
}

async fn record_weights(
    client: &Client,
    ns: &str,
    router: Router,
    canary_rs: String,
) -> (WeightLog, tokio::task::JoinHandle<()>) {
    let (gvk, name) = watched_object(router);
    let (ar, _) = kube::discovery::pinned_kind(client, &gvk)
        .await
        .expect("discover routing kind");
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
    let rs_api: Api<ReplicaSet> = Api::namespaced(client.clone(), ns);
    let log = WeightLog::default();
    let out = log.clone();
    let handle = tokio::spawn(async move {
        let cfg = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let mut stream = watcher::watcher(api, cfg).boxed();
        while let Some(ev) = stream.next().await {
            let objs = match ev {
                Ok(watcher::Event::Apply(o)) | Ok(watcher::Event::InitApply(o)) => vec![o],
                _ => continue,
            };
            for o in objs {
                let Some(w) = canary_weight(router, &o) else {
                    continue;
                };
                let changed = out
                    .0
                    .lock()
                    .map(|l| l.last().map(|(x, _)| *x) != Some(w))
                    .unwrap_or(false);
                if changed {
                    let available = rs_api
                        .get_opt(&canary_rs)
                        .await
                        .ok()
                        .flatten()
                        .and_then(|rs| rs.status?.available_replicas)
                        .unwrap_or(0);
                    if let Ok(mut l) = out.0.lock() {
                        l.push((w, available));
                    }
                }
            }
        }
    });
    (log, handle)
}

async fn get_rollout(client: &Client, ns: &str) -> Rollout {
    Api::<Rollout>::namespaced(client.clone(), ns)
        .get("web")
        .await
        .expect("get rollout")
}

/// Waits until the Rollout is Healthy on the revision of `hash`.
async fn wait_healthy(
    client: &Client,
    ns: &str,
    hash: &str,
    timeout: Duration,
    ctl: &ControllerProcess,
) {
    let api: Api<Rollout> = Api::namespaced(client.clone(), ns);
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(ro) = api.get("web").await {
            let st = ro.status.unwrap_or_default();
            if st.phase == Some(RolloutPhase::Healthy)
                && st.stable_rs.as_deref() == Some(hash)
                && st.observed_generation == ro.metadata.generation
            {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "rollout not Healthy on {hash} within {timeout:?}: phase {:?}, message {:?}, step {:?}, stable {:?}\ncontroller log:\n{}",
                    st.phase,
                    st.message,
                    st.current_step_index,
                    st.stable_rs,
                    ctl.log_tail(40)
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Given: a namespace with the Services and the routing object, the real controller, and the
/// Rollout `v1` Healthy on its first revision.
async fn given_healthy(
    prefix: &str,
    router: Router,
    v1: &Value,
) -> (Client, TestNamespace, ControllerProcess) {
    let client = client().await;
    setup(&client).await;
    let ns = TestNamespace::new(&client, prefix).await;
    for obj in [
        service("web-stable"),
        service("web-canary"),
        routing_object(router),
    ] {
        apply_value(&client, Some(&ns.name), &obj)
            .await
            .expect("fixture");
    }
    apply_value(&client, Some(&ns.name), v1)
        .await
        .expect("apply rollout v1");
    let ctl = ControllerProcess::start(&ns.name);
    wait_healthy(
        &client,
        &ns.name,
        &hash_of(v1),
        Duration::from_secs(60),
        &ctl,
    )
    .await;
    (client, ns, ctl)
}

fn hash_of(manifest: &Value) -> String {
    let ro: Rollout = serde_json::from_value(manifest.clone()).expect("rollout manifest");
    aviary::plan::pod_template_hash(&ro.spec.template, None)
}

/// Given a Rollout on v1 behind `router`, when its image changes to v2, then the routing object
/// shows exactly the declared weights in order — never one the canary's available pods can't
/// carry — and the rollout ends Healthy on v2 with the old ReplicaSet scaled to 0.
async fn canary_walk(router: Router) {
    let v1 = rollout(router, "web:1", standard_steps());
    let prefix = format!("canary-{router:?}").to_lowercase();
    let (client, ns, ctl) = given_healthy(&prefix, router, &v1).await;

    let v2 = rollout(router, "web:2", standard_steps());
    let h2 = hash_of(&v2);
    let (log, watch) = record_weights(&client, &ns.name, router, format!("web-{h2}")).await;
    apply_value(&client, Some(&ns.name), &v2)
        .await
        .expect("apply rollout v2");
    wait_healthy(&client, &ns.name, &h2, Duration::from_secs(90), &ctl).await;
    log.wait_for(
        "weight back to 0 after promotion",
        0,
        Duration::from_secs(10),
        Duration::from_millis(50),
    )
    .await;
    watch.abort();

    let mut seen = log.weights();
    // The first event is the object as it was before the update (weight 0; for NGINX the canary
    // Ingress as first created, at 0).
    if seen.first() == Some(&0) {
        seen.remove(0);
    }
    assert_eq!(
        seen,
        vec![10, 50, 100, 0],
        "{router:?}: canary weights observed, in order"
    );
    for (w, available) in log.entries() {
        let needed = (REPLICAS * w + 99) / 100;
        assert!(
            available >= needed,
            "{router:?}: weight {w} was visible while the canary had {available} available pods (< {needed})"
        );
    }
    // The status and the ReplicaSets' scaling are filed under Aviary's field manager.
    let ro = Api::<Rollout>::namespaced(client.clone(), &ns.name)
        .get("web")
        .await
        .expect("rollout");
    let status_managers: Vec<_> = ro
        .managed_fields()
        .iter()
        .filter(|m| m.subresource.as_deref() == Some("status"))
        .filter_map(|m| m.manager.clone())
        .collect();
    assert_eq!(status_managers, vec!["aviary".to_string()], "{router:?}");
    let rs_api: Api<ReplicaSet> = Api::namespaced(client.clone(), &ns.name);
    let old = format!("web-{}", hash_of(&v1));
    poll_until(
        "old ReplicaSet scaled to 0 after scaleDownDelaySeconds",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            let rs_api = rs_api.clone();
            let old = old.clone();
            async move { (rs_api.get(&old).await.ok()?.spec?.replicas == Some(0)).then_some(()) }
        },
    )
    .await;
}

#[tokio::test]
async fn istio_canary_walks_the_declared_weights() {
    canary_walk(Router::Istio).await;
}

#[tokio::test]
async fn nginx_canary_walks_the_declared_weights() {
    canary_walk(Router::Nginx).await;
}

#[tokio::test]
async fn gateway_api_canary_walks_the_declared_weights() {
    canary_walk(Router::Gateway).await;
}

/// Given a Rollout with `revisionHistoryLimit: 1`, when it is updated three times, then only the
/// stable ReplicaSet and the newest old one remain: the older revisions are deleted once scaled
/// to zero, not kept for ever.
#[tokio::test]
async fn old_replica_sets_beyond_the_revision_history_limit_are_deleted() {
    let versioned = |image: &str| {
        let mut ro = rollout(Router::Istio, image, json!([{"setWeight": 50}]));
        ro["spec"]["revisionHistoryLimit"] = json!(1);
        ro
    };
    let v1 = versioned("web:1");
    let (client, ns, ctl) = given_healthy("canary-history", Router::Istio, &v1).await;
    let mut hashes = vec![hash_of(&v1)];
    for image in ["web:2", "web:3", "web:4"] {
        let next = versioned(image);
        hashes.push(hash_of(&next));
        apply_value(&client, Some(&ns.name), &next)
            .await
            .expect("apply update");
        wait_healthy(
            &client,
            &ns.name,
            &hash_of(&next),
            Duration::from_secs(90),
            &ctl,
        )
        .await;
    }
    let rs_api: Api<ReplicaSet> = Api::namespaced(client.clone(), &ns.name);
    let mut wanted = vec![format!("web-{}", hashes[2]), format!("web-{}", hashes[3])];
    wanted.sort();
    poll_until(
        "only the stable and one old ReplicaSet left",
        Duration::from_secs(60),
        Duration::from_millis(250),
        || {
            let rs_api = rs_api.clone();
            let wanted = wanted.clone();
            async move {
                let mut names: Vec<String> = rs_api
                    .list(&Default::default())
                    .await
                    .ok()?
                    .items
                    .iter()
                    .filter(|rs| rs.metadata.deletion_timestamp.is_none())
                    .map(|rs| rs.name_any())
                    .collect();
                names.sort();
                (names == wanted).then_some(())
            }
        },
    )
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

/// Given a canary paused at 20 %, when it is aborted, then the canary weight is 0 at once, the
/// canary ReplicaSet goes to 0 after abortScaleDownDelaySeconds and the phase is Degraded with
/// reason RolloutAborted; when retried and promoted, it completes.
#[tokio::test]
async fn abort_returns_traffic_at_once_and_retry_completes() {
    let steps = json!([{"setWeight": 20}, {"pause": {}}, {"setWeight": 60}, {"pause": {}}]);
    let v1 = rollout(Router::Istio, "web:1", steps.clone());
    let (client, ns, ctl) = given_healthy("canary-abort", Router::Istio, &v1).await;
    let v2 = rollout(Router::Istio, "web:2", steps);
    let h2 = hash_of(&v2);
    let (api, log, watch) = update_to_paused_at(&client, &ns.name, &v2, 20).await;

    let t0 = Instant::now();
    patch_status(&client, &ns.name, json!({"abort": true})).await;
    log.wait_for(
        "canary weight 0 after abort",
        0,
        Duration::from_secs(10),
        Duration::from_millis(5),
    )
    .await;
    println!("abort → canary weight 0 observed after {:?}", t0.elapsed());
    // One request, no read: the write prepared when the weight went to 20, sent from the watch
    // (or, should a lane take the abort first, from that lane). The line follows the write.
    let log_text = poll_until(
        "the prepared write in the controller's log",
        Duration::from_secs(10),
        Duration::from_millis(20),
        || {
            let text = ctl.log_tail(400);
            async move {
                text.contains("set canary weight (prepared write)")
                    .then_some(text)
            }
        },
    )
    .await;
    println!(
        "sent from the watch: {}",
        log_text.contains("(from the watch)")
    );

    let rs_api: Api<ReplicaSet> = Api::namespaced(client.clone(), &ns.name);
    poll_until(
        "canary ReplicaSet at 0 after the abort delay",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            let rs_api = rs_api.clone();
            let name = format!("web-{h2}");
            async move { (rs_api.get(&name).await.ok()?.spec?.replicas == Some(0)).then_some(()) }
        },
    )
    .await;
    let ro = get_rollout(&client, &ns.name).await;
    let st = ro.status.expect("status");
    assert_eq!(st.phase, Some(RolloutPhase::Degraded));
    let progressing = st.condition("Progressing").expect("Progressing condition");
    assert_eq!(progressing.reason, "RolloutAborted");
    assert_eq!(format!("{:?}", progressing.status), "False");
    support::wait_for_event(
        &client,
        &ns.name,
        "web",
        "Event RolloutAborted",
        |reason, _| reason == "RolloutAborted",
    )
    .await;

    // retry, then promote through both pauses
    patch_status(&client, &ns.name, json!({"abort": false})).await;
    for expected in [20, 60] {
        poll_until(
            &format!("paused at {expected} % after retry"),
            Duration::from_secs(60),
            Duration::from_millis(100),
            || {
                let api = api.clone();
                let w = log.last();
                async move {
                    let st = api.get("web").await.ok()?.status?;
                    (st.phase == Some(RolloutPhase::Paused) && w == Some(expected)).then_some(())
                }
            },
        )
        .await;
        patch_status(&client, &ns.name, json!({"pauseConditions": null})).await;
    }
    wait_healthy(&client, &ns.name, &h2, Duration::from_secs(60), &ctl).await;
    watch.abort();
}

/// Given a canary paused at 20 % and a controller restarted with a main-lane pace of one request
/// a minute, whose reconcile of the rollout is held mid-way by the pace (holding the rollout's
/// lock: the status message, changed by hand, makes each reconcile write the status back, so
/// the second such write waits for the pace), when the rollout is aborted, then the canary weight is 0 long before that
/// minute is up: the urgent lane's guarded weight write is neither paced nor behind the lock.
/// (After the restart there is no prepared write: this is the read-and-write path.)
#[tokio::test]
async fn an_abort_is_not_held_behind_a_paced_reconcile() {
    let steps = json!([{"setWeight": 20}, {"pause": {}}]);
    let v1 = rollout(Router::Istio, "web:1", steps.clone());
    let (client, ns, mut ctl) = given_healthy("canary-paced", Router::Istio, &v1).await;
    let v2 = rollout(Router::Istio, "web:2", steps);
    let (_api, log, watch) = update_to_paused_at(&client, &ns.name, &v2, 20).await;

    ctl.terminate(Duration::from_secs(10));
    let paced = ControllerProcess::start_with(
        &ns.name,
        &["--kube-api-qps", "0.0166", "--kube-api-burst", "1"],
    );
    let pokes = std::sync::atomic::AtomicU32::new(0);
    poll_until(
        "the restarted controller's main lane held back by its pace",
        Duration::from_secs(30),
        Duration::from_secs(1),
        || {
            let text = paced.log_tail(200);
            let n = pokes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let api = Api::<Rollout>::namespaced(client.clone(), &ns.name);
            async move {
                if text.contains("holding the main lane's requests for the pace") {
                    return Some(());
                }
                let poke = json!({"status": {"message": format!("poke {n}")}});
                let _ = api
                    .patch_status("web", &PatchParams::default(), &Patch::Merge(&poke))
                    .await;
                None
            }
        },
    )
    .await;
    patch_status(&client, &ns.name, json!({"abort": true})).await;
    // Well under the 60 s the held reconcile waits for its next request.
    log.wait_for(
        "canary weight 0 while the main lane is held",
        0,
        Duration::from_secs(15),
        Duration::from_millis(20),
    )
    .await;
    let text = paced.log_tail(400);
    assert!(
        text.contains("main lane requests paced"),
        "the controller ran paced:\n{text}"
    );
    watch.abort();
}

/// Given a canary in progress, when the controller is SIGKILLed and restarted at random points
/// 20 times, then it resumes from the same step: the weights are exactly the declared sequence,
/// none repeated, none skipped, and the rollout ends Healthy.
#[tokio::test]
async fn controller_killed_and_restarted_20_times_neither_repeats_nor_skips_a_step() {
    let weights = [5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100];
    let mut steps = vec![];
    for w in weights {
        steps.push(json!({"setWeight": w}));
        steps.push(json!({"pause": {"duration": 2}}));
    }
    let v1 = rollout(Router::Istio, "web:1", json!(steps));
    let (client, ns, mut ctl) = given_healthy("canary-crash", Router::Istio, &v1).await;
    let v2 = rollout(Router::Istio, "web:2", json!(steps));
    let h2 = hash_of(&v2);
    let (log, watch) = record_weights(&client, &ns.name, Router::Istio, format!("web-{h2}")).await;
    apply_value(&client, Some(&ns.name), &v2).await.expect("v2");

    // A small deterministic generator, seeded from the clock and printed, for kill times.
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(42);
    println!("kill schedule seed: {seed}");
    let mut kills = 0;
    while kills < 20 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let wait_ms = 100 + (seed >> 33) % 900;
        tokio::time::sleep(Duration::from_millis(wait_ms)).await;
        let st = get_rollout(&client, &ns.name)
            .await
            .status
            .unwrap_or_default();
        if st.stable_rs.as_deref() == Some(h2.as_str()) {
            break;
        }
        ctl.restart();
        kills += 1;
    }
    println!("controller killed and restarted {kills} times during the rollout");
    assert_eq!(
        kills, 20,
        "the rollout finished before the controller was killed 20 times"
    );
    wait_healthy(&client, &ns.name, &h2, Duration::from_secs(120), &ctl).await;
    log.wait_for(
        "weight 0 after promotion",
        0,
        Duration::from_secs(10),
        Duration::from_millis(50),
    )
    .await;
    watch.abort();
    let mut seen = log.weights();
    if seen.first() == Some(&0) {
        seen.remove(0);
    }
    let mut expected: Vec<i32> = weights.to_vec();
    expected.push(0);
    assert_eq!(seen, expected, "weights across {kills} controller crashes");
    for (w, available) in log.entries() {
        let needed = (REPLICAS * w + 99) / 100;
        assert!(
            available >= needed,
            "weight {w} visible with {available} available canary pods"
        );
    }
}

/// Given a rollout mid-canary, when its template is reverted to the stable one, then it is
/// Healthy at once without walking steps; and left alone, it makes no write requests at all.
#[tokio::test]
async fn undo_returns_at_once_and_an_idle_rollout_makes_no_writes() {
    let steps = json!([{"setWeight": 20}, {"pause": {}}, {"setWeight": 100}]);
    let v1 = rollout(Router::Istio, "web:1", steps.clone());
    let h1 = hash_of(&v1);
    let (client, ns, ctl) = given_healthy("canary-undo", Router::Istio, &v1).await;
    let v2 = rollout(Router::Istio, "web:2", steps);
    let h2 = hash_of(&v2);
    let (log, watch) = record_weights(&client, &ns.name, Router::Istio, format!("web-{h2}")).await;
    apply_value(&client, Some(&ns.name), &v2).await.expect("v2");
    log.wait_for(
        "canary at 20 %",
        20,
        Duration::from_secs(60),
        Duration::from_millis(100),
    )
    .await;

    apply_value(&client, Some(&ns.name), &v1)
        .await
        .expect("revert to v1");
    wait_healthy(&client, &ns.name, &h1, Duration::from_secs(30), &ctl).await;
    assert_eq!(log.last(), Some(0), "canary traffic removed on undo");
    let st = get_rollout(&client, &ns.name).await.status.expect("status");
    assert_eq!(
        st.current_step_index,
        Some(3),
        "no steps walked: index is past the last step"
    );
    let rs_api: Api<ReplicaSet> = Api::namespaced(client.clone(), &ns.name);
    poll_until(
        "the abandoned canary scaled to 0",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            let rs_api = rs_api.clone();
            let name = format!("web-{h2}");
            async move { (rs_api.get(&name).await.ok()?.spec?.replicas == Some(0)).then_some(()) }
        },
    )
    .await;
    watch.abort();

    // Idle: let any in-flight work settle (the status stops changing), then count writes.
    let api: Api<Rollout> = Api::namespaced(client.clone(), &ns.name);
    let last_rv = Arc::new(Mutex::new(String::new()));
    poll_until(
        "status settled",
        Duration::from_secs(30),
        Duration::from_secs(2),
        || {
            let api = api.clone();
            let last_rv = last_rv.clone();
            async move {
                let rv = api.get("web").await.ok()?.resource_version()?;
                let mut prev = last_rv.lock().ok()?;
                let settled = *prev == rv;
                *prev = rv;
                settled.then_some(())
            }
        },
    )
    .await;
    let since = k8s_openapi::jiff::Timestamp::now().to_string();
    tokio::time::sleep(Duration::from_secs(30)).await; // the measurement window itself, not a wait for a condition
    let writes: Vec<String> = support::controller::controller_writes_since(&since)
        .into_iter()
        .filter(|w| w.contains(&format!("/namespaces/{}/", ns.name)))
        .collect();
    println!("controller writes in 30 s of idleness: {}", writes.len());
    assert!(
        writes.is_empty(),
        "an idle rollout caused writes: {writes:#?}"
    );
}

/// Given canary pods that never become ready (KWOK's chaos stage fails their containers), when
/// `progressDeadlineSeconds` passes, then the rollout is Degraded with ProgressDeadlineExceeded
/// and — with `progressDeadlineAbort` — aborted, its traffic back on stable.
#[tokio::test]
async fn canary_pods_that_never_become_ready_hit_the_progress_deadline_and_abort() {
    let mut v1 = rollout(Router::Istio, "web:1", standard_steps());
    v1["spec"]["progressDeadlineSeconds"] = json!(6);
    // KWOK's chaos stage lets each pod be Ready for about a second before failing it; with
    // minReadySeconds the ReplicaSet never counts such a pod available, as with a real crash loop.
    v1["spec"]["minReadySeconds"] = json!(3);
    v1["spec"]["progressDeadlineAbort"] = json!(true);
    let (client, ns, _ctl) = given_healthy("canary-deadline", Router::Istio, &v1).await;
    let mut v2 = v1.clone();
    v2["spec"]["template"]["spec"]["containers"][0]["image"] = json!("web:broken");
    v2["spec"]["template"]["metadata"]["labels"]["pod-container-running-failed.stage.kwok.x-k8s.io"] =
        json!("true");
    apply_value(&client, Some(&ns.name), &v2).await.expect("v2");
    let api: Api<Rollout> = Api::namespaced(client.clone(), &ns.name);
    let st = poll_until(
        "Degraded by the progress deadline",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || {
            let api = api.clone();
            async move {
                let st = api.get("web").await.ok()?.status?;
                (st.phase == Some(RolloutPhase::Degraded)).then_some(st)
            }
        },
    )
    .await;
    assert_eq!(st.abort, Some(true));
    let msg = st.message.unwrap_or_default();
    assert!(msg.contains("timed out progressing"), "{msg}");
    assert_eq!(
        st.stable_rs.as_deref(),
        Some(hash_of(&v1).as_str()),
        "the broken revision never became stable"
    );
    support::wait_for_event(&client, &ns.name, "web", "Event RolloutAborted", |r, n| {
        r == "RolloutAborted" && n.contains("timed out")
    })
    .await;
}

/// Given a Rollout whose VirtualService does not exist, when it updates, then it says so in a
/// condition and an Event, and it recovers once the VirtualService appears.
#[tokio::test]
async fn a_missing_virtualservice_is_a_clear_condition_and_event_not_a_crash_loop() {
    let client = client().await;
    setup(&client).await;
    let ns = TestNamespace::new(&client, "canary-missing").await;
    for obj in [service("web-stable"), service("web-canary")] {
        apply_value(&client, Some(&ns.name), &obj)
            .await
            .expect("fixture");
    }
    let v1 = rollout(Router::Istio, "web:1", standard_steps());
    apply_value(&client, Some(&ns.name), &v1).await.expect("v1");
    let ctl = ControllerProcess::start(&ns.name);
    let api: Api<Rollout> = Api::namespaced(client.clone(), &ns.name);
    let st = poll_until(
        "InvalidSpec naming the VirtualService",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || {
            let api = api.clone();
            async move {
                let st = api.get("web").await.ok()?.status?;
                let c = st.condition("InvalidSpec")?.clone();
                (c.message.contains("VirtualService")).then_some((st, c))
            }
        },
    )
    .await;
    println!("condition: {}", st.1.message);
    assert_eq!(st.0.phase, Some(RolloutPhase::Degraded));
    support::wait_for_event(&client, &ns.name, "web", "Event InvalidSpec", |r, n| {
        r == "InvalidSpec" && n.contains("VirtualService")
    })
    .await;
    apply_value(&client, Some(&ns.name), &routing_object(Router::Istio))
        .await
        .expect("VirtualService");
    wait_healthy(
        &client,
        &ns.name,
        &hash_of(&v1),
        Duration::from_secs(60),
        &ctl,
    )
    .await;
    let st = get_rollout(&client, &ns.name).await.status.expect("status");
    assert!(
        st.condition("InvalidSpec").is_none(),
        "the InvalidSpec condition is cleared once fixed"
    );
}

/// The UIDs of the Rollout's pods that are Ready and not going away.
async fn ready_pod_uids(client: &Client, ns: &str) -> Vec<String> {
    let api: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), ns);
    let list = api
        .list(&kube::api::ListParams::default().labels("app=web"))
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    list.into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .filter_map(|p| p.metadata.uid)
        .collect()
}

/// Given a Healthy rollout of 3 pods, when `kubectl aviary restart` sets `spec.restartAt`, then
/// every pod is replaced by a new one — one at a time, the ReplicaSet never showing fewer than 2
/// available — `status.restartedAt` records the restart and an Event says it is over.
#[tokio::test]
async fn restart_replaces_every_pod_keeping_all_but_one_available() {
    let mut v1 = rollout(Router::Istio, "web:1", standard_steps());
    v1["spec"]["replicas"] = json!(3);
    let (client, ns, ctl) = given_healthy("canary-restart", Router::Istio, &v1).await;
    let before = poll_until(
        "3 ready pods",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            let client = client.clone();
            let ns = ns.name.clone();
            async move {
                let uids = ready_pod_uids(&client, &ns).await;
                (uids.len() == 3).then_some(uids)
            }
        },
    )
    .await;
    let rs_name = format!("web-{}", hash_of(&v1));
    let (low, watch) = record_availability(&client, &ns.name, &rs_name).await;

    let t0 = Instant::now();
    support::pods::run_restart(&ns.name, "web").await;
    let restart_at = get_rollout(&client, &ns.name)
        .await
        .spec
        .restart_at
        .expect("restartAt set by the plugin");

    let api: Api<Rollout> = Api::namespaced(client.clone(), &ns.name);
    poll_until(
        "status.restartedAt = spec.restartAt",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || {
            let api = api.clone();
            let restart_at = restart_at.clone();
            async move {
                let st = api.get("web").await.ok()?.status?;
                (st.restarted_at.as_ref() == Some(&restart_at)).then_some(())
            }
        },
    )
    .await;
    let recorded = t0.elapsed();
    let after = poll_until(
        "3 ready pods, none of them from before the restart",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            let client = client.clone();
            let ns = ns.name.clone();
            let before = before.clone();
            async move {
                let uids = ready_pod_uids(&client, &ns).await;
                (uids.len() == 3 && uids.iter().all(|u| !before.contains(u))).then_some(uids)
            }
        },
    )
    .await;
    let all_ready = t0.elapsed();
    watch.abort();
    println!(
        "restart of 3 pods: restartedAt recorded after {recorded:?}, all 3 new pods ready after {all_ready:?} \
         ({} ReplicaSet statuses seen, lowest availableReplicas {:?}); new pods {after:?}",
        low.seen(),
        low.lowest()
    );
    assert!(
        low.seen() >= 3,
        "the watch saw the restart's status changes"
    );
    assert!(
        low.lowest().is_some_and(|l| l >= 2),
        "availability dropped to {:?} during the restart\n{}",
        low.lowest(),
        ctl.log_tail(40)
    );
    // The Event is posted just after the status write, and Healthy follows the new pods'
    // ReplicaSet status: both are waited for, not read once.
    support::wait_for_event(
        &client,
        &ns.name,
        "web",
        "Event RolloutRestarted",
        |r, _| r == "RolloutRestarted",
    )
    .await;
    poll_until(
        "Healthy again after the restart",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            let api = api.clone();
            async move {
                let st = api.get("web").await.ok()?.status?;
                (st.phase == Some(RolloutPhase::Healthy)).then_some(())
            }
        },
    )
    .await;
}

/// The canary weight the VirtualService `web` shows now (a fresh read).
async fn virtual_service_weight(client: &Client, ns: &str) -> Option<i32> {
    let (gvk, name) = watched_object(Router::Istio);
    let (ar, _) = kube::discovery::pinned_kind(client, &gvk).await.ok()?;
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
    canary_weight(Router::Istio, &api.get(name).await.ok()?)
}

/// Given an Istio canary paused at 30 %, when the Rollout is deleted, then the VirtualService
/// sends all traffic back to stable before the Rollout goes (the route-cleanup finalizer), and
/// the Rollout is gone.
#[tokio::test]
async fn deleting_a_rollout_mid_canary_returns_its_traffic_to_stable() {
    let steps = json!([{"setWeight": 30}, {"pause": {}}]);
    let v1 = rollout(Router::Istio, "web:1", steps.clone());
    let (client, ns, ctl) = given_healthy("canary-delete", Router::Istio, &v1).await;
    let ro = get_rollout(&client, &ns.name).await;
    assert!(
        ro.finalizers()
            .iter()
            .any(|f| f == "aviary.dev/route-cleanup"),
        "a routed Rollout carries the finalizer: {:?}",
        ro.finalizers()
    );
    let v2 = rollout(Router::Istio, "web:2", steps);
    let (api, log, watch) = update_to_paused_at(&client, &ns.name, &v2, 30).await;

    let t0 = Instant::now();
    api.delete("web", &kube::api::DeleteParams::default())
        .await
        .expect("delete the rollout");
    poll_until(
        "VirtualService back to canary weight 0 and the Rollout gone",
        Duration::from_secs(30),
        Duration::from_millis(50),
        || {
            let api = api.clone();
            let client = client.clone();
            let ns = ns.name.clone();
            async move {
                let gone = api.get_opt("web").await.ok()?.is_none();
                let weight = virtual_service_weight(&client, &ns).await;
                (gone && weight == Some(0)).then_some(())
            }
        },
    )
    .await;
    println!(
        "delete → weight 0 and Rollout gone within {:?}",
        t0.elapsed()
    );
    watch.abort();
    let seen = log.weights();
    assert_eq!(
        seen.last(),
        Some(&0),
        "the last weight the VirtualService showed: {seen:?}\n{}",
        ctl.log_tail(30)
    );
    support::wait_for_event(&client, &ns.name, "web", "Event RouteCleanup", |r, n| {
        r == "RouteCleanup" && n.contains("from 30 to 0")
    })
    .await;
}

/// Given a Rollout whose VirtualService no longer has the canary destination (so its weight
/// can't be restored), when the Rollout is deleted, then the deletion is not held: a Warning
/// Event says what was left as it was, and the Rollout is gone.
#[tokio::test]
async fn deleting_a_rollout_whose_route_is_broken_is_not_blocked() {
    let v1 = rollout(Router::Istio, "web:1", standard_steps());
    let (client, ns, _ctl) = given_healthy("canary-delete-broken", Router::Istio, &v1).await;
    let broken = json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "web"},
        "spec": {"hosts": ["web.example.com"], "http": [{"name": "primary", "route": [
            {"destination": {"host": "web-stable"}, "weight": 100}]}]}
    });
    apply_value(&client, Some(&ns.name), &broken)
        .await
        .expect("VirtualService without the canary destination");
    let api: Api<Rollout> = Api::namespaced(client.clone(), &ns.name);
    let t0 = Instant::now();
    api.delete("web", &kube::api::DeleteParams::default())
        .await
        .expect("delete the rollout");
    poll_until(
        "the Rollout gone",
        Duration::from_secs(30),
        Duration::from_millis(50),
        || {
            let api = api.clone();
            async move { api.get_opt("web").await.ok()?.is_none().then_some(()) }
        },
    )
    .await;
    println!("delete → Rollout gone within {:?}", t0.elapsed());
    support::wait_for_event(
        &client,
        &ns.name,
        "web",
        "Event RouteCleanupFailed",
        |r, n| r == "RouteCleanupFailed" && n.contains("VirtualService"),
    )
    .await;
}

/// F6 (issue 21): a deleted stable ReplicaSet of a Healthy rollout stayed gone (the watch
/// dropped deletions and an idle rollout is never resynced sooner than its safety resync), with
/// the status still "Healthy". Given a Healthy rollout, when its ReplicaSet is deleted, then
/// the delete wakes the rollout, the ReplicaSet is recreated and its pods come back.
#[tokio::test]
async fn a_deleted_replica_set_is_recreated() {
    let v1 = rollout(Router::Istio, "web:1", standard_steps());
    let h1 = hash_of(&v1);
    let (client, ns, ctl) = given_healthy("canary-rs-deleted", Router::Istio, &v1).await;
    let rs_api: Api<ReplicaSet> = Api::namespaced(client.clone(), &ns.name);
    let name = format!("web-{h1}");
    let old_uid = rs_api
        .get(&name)
        .await
        .expect("stable ReplicaSet")
        .metadata
        .uid;
    rs_api
        .delete(&name, &kube::api::DeleteParams::background())
        .await
        .expect("delete the stable ReplicaSet");
    poll_until(
        "a new stable ReplicaSet with every pod available",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || {
            let rs_api = rs_api.clone();
            let name = name.clone();
            let old_uid = old_uid.clone();
            async move {
                let rs = rs_api.get(&name).await.ok()?;
                let available = rs.status.as_ref()?.available_replicas.unwrap_or(0);
                (rs.metadata.uid != old_uid && available == REPLICAS).then_some(())
            }
        },
    )
    .await;
    wait_healthy(&client, &ns.name, &h1, Duration::from_secs(30), &ctl).await;
}

/// F1 (issue 21): in Istio subset mode, a promotion whose weight needed no write left the
/// DestinationRule's stable subset on the old hash; the old pods were then scaled away under
/// 100 % of the traffic. Given `steps: [{setWeight: 50}]` in subset mode, when v2 completes,
/// then both subsets select v2, the canary subset carries 0 and the old revision is scaled to
/// 0 only after nothing routes to it.
#[tokio::test]
async fn subset_mode_promotion_moves_both_subsets() {
    let client = client().await;
    setup(&client).await;
    let ns = TestNamespace::new(&client, "canary-subsets").await;
    let vs = json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "web"},
        "spec": {"hosts": ["web.example.com"], "http": [{"name": "primary", "route": [
            {"destination": {"host": "web-stable", "subset": "stable"}, "weight": 100},
            {"destination": {"host": "web-stable", "subset": "canary"}, "weight": 0}]}]}
    });
    let dr = json!({
        "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule", "metadata": {"name": "web"},
        "spec": {"host": "web-stable", "subsets": [{"name": "stable"}, {"name": "canary"}]}
    });
    for obj in [service("web-stable"), service("web-canary"), vs, dr] {
        apply_value(&client, Some(&ns.name), &obj)
            .await
            .expect("fixture");
    }
    let with_subsets = |image: &str| {
        let mut ro = rollout(Router::Istio, image, json!([{"setWeight": 50}]));
        ro["spec"]["strategy"]["canary"]["trafficRouting"] = json!({"istio": {
            "virtualService": {"name": "web", "routes": ["primary"]},
            "destinationRule": {"name": "web", "canarySubsetName": "canary", "stableSubsetName": "stable"},
        }});
        ro
    };
    let (v1, v2) = (with_subsets("web:1"), with_subsets("web:2"));
    let (h1, h2) = (hash_of(&v1), hash_of(&v2));
    apply_value(&client, Some(&ns.name), &v1).await.expect("v1");
    let ctl = ControllerProcess::start(&ns.name);
    wait_healthy(&client, &ns.name, &h1, Duration::from_secs(60), &ctl).await;
    apply_value(&client, Some(&ns.name), &v2).await.expect("v2");
    wait_healthy(&client, &ns.name, &h2, Duration::from_secs(90), &ctl).await;

    let gvk = GroupVersionKind::gvk("networking.istio.io", "v1", "DestinationRule");
    let (ar, _) = kube::discovery::pinned_kind(&client, &gvk)
        .await
        .expect("discover DestinationRule");
    let dr_api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns.name, &ar);
    let vs_gvk = GroupVersionKind::gvk("networking.istio.io", "v1", "VirtualService");
    let (vs_ar, _) = kube::discovery::pinned_kind(&client, &vs_gvk)
        .await
        .expect("discover VirtualService");
    let vs_api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns.name, &vs_ar);
    let rs_api: Api<ReplicaSet> = Api::namespaced(client.clone(), &ns.name);
    poll_until(
        "both subsets on v2, the canary subset at 0, v1 scaled to 0",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            let (dr_api, vs_api, rs_api) = (dr_api.clone(), vs_api.clone(), rs_api.clone());
            let (h1, h2) = (h1.clone(), h2.clone());
            async move {
                let dr = dr_api.get("web").await.ok()?;
                let subsets = dr.data["spec"]["subsets"].as_array()?.clone();
                let hash = |name: &str| {
                    subsets
                        .iter()
                        .find(|s| s["name"] == name)
                        .and_then(|s| s["labels"]["rollouts-pod-template-hash"].as_str())
                        .map(str::to_string)
                };
                let vs = vs_api.get("web").await.ok()?;
                let canary_weight = vs.data["spec"]["http"][0]["route"]
                    .as_array()?
                    .iter()
                    .find(|d| d["destination"]["subset"] == "canary")?["weight"]
                    .as_i64()
                    .unwrap_or(0);
                let old = rs_api.get(&format!("web-{h1}")).await.ok()?;
                let done = hash("stable").as_deref() == Some(h2.as_str())
                    && hash("canary").as_deref() == Some(h2.as_str())
                    && canary_weight == 0
                    && old.spec?.replicas == Some(0);
                done.then_some(())
            }
        },
    )
    .await;
}

/// F18 (issue 21): once Degraded by an invalid spec (the canary Service deleted mid-canary), an
/// abort did nothing: the VirtualService stayed at the canary's weight for minutes. Given a
/// canary paused at 20 % whose canary Service is then deleted (InvalidSpec), when it is
/// aborted, then the weight goes to 0.
#[tokio::test]
async fn an_abort_still_acts_on_a_rollout_degraded_by_an_invalid_spec() {
    let steps = json!([{"setWeight": 20}, {"pause": {}}, {"setWeight": 100}]);
    let v1 = rollout(Router::Istio, "web:1", steps.clone());
    let (client, ns, ctl) = given_healthy("canary-abort-invalid", Router::Istio, &v1).await;
    let v2 = rollout(Router::Istio, "web:2", steps);
    let (api, _log, watch) = update_to_paused_at(&client, &ns.name, &v2, 20).await;
    Api::<k8s_openapi::api::core::v1::Service>::namespaced(client.clone(), &ns.name)
        .delete("web-canary", &Default::default())
        .await
        .expect("delete the canary Service");
    // Something wakes the rollout (the resync would, later): a poke of its annotations.
    api.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(&json!({"metadata": {"annotations": {"test/poke": "1"}}})),
    )
    .await
    .expect("poke");
    poll_until(
        "Degraded by the missing canary Service",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            let api = api.clone();
            async move {
                let st = api.get("web").await.ok()?.status?;
                (st.phase == Some(RolloutPhase::Degraded) && st.condition("InvalidSpec").is_some())
                    .then_some(())
            }
        },
    )
    .await;
    assert_eq!(virtual_service_weight(&client, &ns.name).await, Some(20));
    patch_status(&client, &ns.name, json!({"abort": true})).await;
    poll_until(
        "the weight back to 0 after the abort",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || {
            let client = client.clone();
            let ns = ns.name.clone();
            async move { (virtual_service_weight(&client, &ns).await == Some(0)).then_some(()) }
        },
    )
    .await;
    watch.abort();
    drop(ctl);
}

/// What a watch of every ReplicaSet of the namespace saw (one watch: its events come in the
/// order the API server wrote them, so sums over ReplicaSets are sums at one moment):
/// per ReplicaSet `(spec.replicas, status.replicas, availableReplicas)`; once armed, the lowest
/// available pods of all ReplicaSets together, and every moment the `canary` was scaled to 0
/// while the `stable` had fewer than `floor` available pods.
#[derive(Default)]
struct Capacity {
    sets: std::collections::BTreeMap<String, (i32, i32, i32)>,
    events: usize,
    armed: bool,
    lowest: Option<i32>,
    violations: Vec<String>,
}

#[derive(Clone)]
struct CapacityLog {
    inner: Arc<Mutex<Capacity>>,
    stable: String,
    canary: String,
    floor: i32,
}

impl CapacityLog {
    fn with<T>(&self, f: impl FnOnce(&mut Capacity) -> T) -> T {
        f(&mut self.inner.lock().expect("capacity log"))
    }
    fn set(&self, name: &str) -> Option<(i32, i32, i32)> {
        self.with(|c| c.sets.get(name).copied())
    }
    fn observe(&self, rs: ReplicaSet) {
        let name = rs.name_any();
        let spec = rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
        let st = rs.status.unwrap_or_default();
        let (replicas, available) = (st.replicas, st.available_replicas.unwrap_or(0));
        self.with(|c| {
            c.sets.insert(name, (spec, replicas, available));
            c.events += 1;
            if !c.armed {
                return;
            }
            let total: i32 = c.sets.values().map(|(_, _, a)| *a).sum();
            c.lowest = Some(c.lowest.map_or(total, |l| l.min(total)));
            let canary = c.sets.get(&self.canary).copied().unwrap_or_default();
            let stable = c.sets.get(&self.stable).copied().unwrap_or_default();
            if canary.0 == 0 && stable.2 < self.floor {
                c.violations.push(format!(
                    "canary scaled to 0 while the stable had {} available (spec, replicas, available: canary {canary:?}, stable {stable:?})",
                    stable.2
                ));
            }
        });
    }
}

async fn record_capacity(
    client: &Client,
    ns: &str,
    stable: String,
    canary: String,
    floor: i32,
) -> (CapacityLog, tokio::task::JoinHandle<()>) {
    let api: Api<ReplicaSet> = Api::namespaced(client.clone(), ns);
    let log = CapacityLog {
        inner: Arc::default(),
        stable,
        canary,
        floor,
    };
    let out = log.clone();
    let handle = tokio::spawn(async move {
        let mut stream = watcher::watcher(api, watcher::Config::default()).boxed();
        while let Some(ev) = stream.next().await {
            if let Ok(watcher::Event::Apply(rs)) | Ok(watcher::Event::InitApply(rs)) = ev {
                out.observe(rs);
            }
        }
    });
    (log, handle)
}

/// Writes `status.message` by hand and waits until a reconcile wrote it back: proof that the
/// controller planned the rollout again (from what it sees now) after the call began.
async fn await_a_reconcile(client: &Client, ns: &str, n: usize, ctl: &ControllerProcess) {
    let api: Api<Rollout> = Api::namespaced(client.clone(), ns);
    let poke = format!("e2e poke {n}");
    patch_status(client, ns, json!({"message": poke})).await;
    let t0 = Instant::now();
    loop {
        let st = api.get("web").await.ok().and_then(|r| r.status);
        if st.is_some_and(|s| s.message.as_deref() != Some(poke.as_str())) {
            return;
        }
        if t0.elapsed() > Duration::from_secs(20) {
            panic!(
                "no reconcile rewrote the poked status message\n{}",
                ctl.log_tail(40)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// F4 (issue 21): a basic canary (no router) paused at 80 % scaled the canary to 0 at once on
/// abort, while the stable had 2 pods. Given 10 replicas, `maxUnavailable: 1`, paused at 80 %
/// (8 canary, 2 stable pods, all available), when no new pod can become ready (the nodes
/// cordoned for the test's pods) and the rollout is aborted, then the stable is scaled up (its
/// new pods Pending) and, reconcile after reconcile, the canary keeps the pods that hold
/// `replicas − maxUnavailable` = 9 available; once the nodes take pods again, the abort
/// completes (canary 0, stable 10 available, Degraded/RolloutAborted), never below 9 available.
#[tokio::test]
async fn a_basic_canary_abort_keeps_capacity_while_the_stable_cannot_scale_up() {
    const R: i32 = 10;
    const FLOOR: i32 = R - 1;
    let client = client().await;
    setup(&client).await;
    let ns = TestNamespace::new(&client, "canary-basic-abort").await;
    let pool = NodePool::new(&ns.name);
    let basic = |image: &str| {
        json!({
            "apiVersion": "aviary.dev/v1alpha1", "kind": "Rollout", "metadata": {"name": "web"},
            "spec": {
                "replicas": R,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                             "spec": {"nodeSelector": pool.node_selector(),
                                      "containers": [{"name": "web", "image": image}]}},
                "strategy": {"canary": {
                    "maxUnavailable": 1,
                    "steps": [{"setWeight": 80}, {"pause": {}}],
                }}
            }
        })
    };
    let (v1, v2) = (basic("web:1"), basic("web:2"));
    let (h1, h2) = (hash_of(&v1), hash_of(&v2));
    let (stable, canary) = (format!("web-{h1}"), format!("web-{h2}"));
    apply_value(&client, Some(&ns.name), &v1).await.expect("v1");
    let ctl = ControllerProcess::start(&ns.name);
    wait_healthy(&client, &ns.name, &h1, Duration::from_secs(60), &ctl).await;
    let (cap, watch) =
        record_capacity(&client, &ns.name, stable.clone(), canary.clone(), FLOOR).await;
    apply_value(&client, Some(&ns.name), &v2).await.expect("v2");
    let api: Api<Rollout> = Api::namespaced(client.clone(), &ns.name);
    poll_until(
        "paused at 80 %: 8 canary and 2 stable pods, all available",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || {
            let api = api.clone();
            let cap = cap.clone();
            let (stable, canary) = (stable.clone(), canary.clone());
            async move {
                let st = api.get("web").await.ok()?.status?;
                let paused = st.phase == Some(RolloutPhase::Paused);
                (paused
                    && cap.set(&canary) == Some((8, 8, 8))
                    && cap.set(&stable) == Some((2, 2, 2)))
                .then_some(())
            }
        },
    )
    .await;

    // When: nothing new can become ready, and the rollout is aborted.
    cap.with(|c| c.armed = true);
    pool.cordon();
    patch_status(&client, &ns.name, json!({"abort": true})).await;
    poll_until(
        "the stable scaled up (within maxSurge), its new pods Pending",
        Duration::from_secs(30),
        Duration::from_millis(50),
        || {
            let s = cap.set(&stable);
            async move {
                let (spec, replicas, available) = s?;
                (spec >= 5 && replicas == spec && available == 2).then_some(())
            }
        },
    )
    .await;
    // Then: reconcile after reconcile, the canary keeps its pods.
    for n in 0..5 {
        await_a_reconcile(&client, &ns.name, n, &ctl).await;
    }
    let (canary_now, stable_now) = (cap.set(&canary), cap.set(&stable));
    println!(
        "while the stable could not scale up: canary {canary_now:?}, stable {stable_now:?} (spec, replicas, available); lowest available {:?}",
        cap.with(|c| c.lowest)
    );
    let (canary_spec, _, canary_available) = canary_now.expect("canary ReplicaSet");
    let (stable_spec, _, stable_available) = stable_now.expect("stable ReplicaSet");
    assert_eq!(stable_available, 2, "no new stable pod became available");
    assert!(
        canary_available + stable_available >= FLOOR && canary_spec >= FLOOR - 2,
        "the abort took the canary's pods before the stable had replacements: canary {canary_now:?}, stable {stable_now:?}\n{}",
        ctl.log_tail(40)
    );
    assert!(
        canary_spec + stable_spec <= R + 3,
        "more pods than replicas + maxSurge (25 % of 10 = 3): canary {canary_spec}, stable {stable_spec}"
    );

    // When the nodes take pods again, then the abort completes.
    pool.uncordon();
    poll_until(
        "the canary at 0 and the stable at 10 available",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || {
            let (c, s) = (cap.set(&canary), cap.set(&stable));
            async move {
                let (c, s) = (c?, s?);
                (c.0 == 0 && c.1 == 0 && s.0 == R && s.2 == R).then_some(())
            }
        },
    )
    .await;
    let st = poll_until(
        "Degraded by the abort",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            let api = api.clone();
            async move {
                let st = api.get("web").await.ok()?.status?;
                (st.phase == Some(RolloutPhase::Degraded)).then_some(st)
            }
        },
    )
    .await;
    watch.abort();
    assert_eq!(st.abort, Some(true));
    assert_eq!(st.stable_rs.as_deref(), Some(h1.as_str()));
    assert_eq!(
        st.condition("Progressing").map(|c| c.reason.as_str()),
        Some("RolloutAborted")
    );
    let (lowest, events, violations) = cap.with(|c| (c.lowest, c.events, c.violations.clone()));
    println!("ReplicaSet statuses seen: {events}; lowest available during the abort: {lowest:?}");
    assert!(violations.is_empty(), "{violations:#?}");
    assert!(
        lowest.is_some_and(|l| l >= FLOOR),
        "available pods dropped to {lowest:?} during the abort (floor {FLOOR})\n{}",
        ctl.log_tail(40)
    );
}

/// Where a Service's `rollouts-pod-template-hash` selector points.
fn selected_hash(svc: &k8s_openapi::api::core::v1::Service) -> Option<String> {
    svc.spec
        .as_ref()?
        .selector
        .as_ref()?
        .get(aviary::plan::POD_TEMPLATE_HASH_LABEL)
        .cloned()
}

/// One look at an Istio rollout's serving: the canary weight, where the stable and canary
/// Services point, and each ReplicaSet's `(spec.replicas, availableReplicas)` by hash.
#[derive(Debug)]
struct Serving {
    weight: Option<i32>,
    stable: Option<String>,
    canary: Option<String>,
    sets: std::collections::BTreeMap<String, (i32, i32)>,
}

impl Serving {
    fn available(&self, hash: Option<&str>) -> i32 {
        hash.and_then(|h| self.sets.get(h)).map_or(0, |s| s.1)
    }
    fn replicas(&self, hash: &str) -> i32 {
        self.sets.get(hash).map_or(0, |s| s.0)
    }
}

struct ServingApis {
    vs: Api<DynamicObject>,
    svc: Api<k8s_openapi::api::core::v1::Service>,
    rs: Api<ReplicaSet>,
}

impl ServingApis {
    async fn new(client: &Client, ns: &str) -> Self {
        let (gvk, _) = watched_object(Router::Istio);
        let (ar, _) = kube::discovery::pinned_kind(client, &gvk)
            .await
            .expect("discover VirtualService");
        ServingApis {
            vs: Api::namespaced_with(client.clone(), ns, &ar),
            svc: Api::namespaced(client.clone(), ns),
            rs: Api::namespaced(client.clone(), ns),
        }
    }

    async fn look(&self) -> Option<Serving> {
        let vs = self.vs.get("web").await.ok()?;
        let stable = selected_hash(&self.svc.get("web-stable").await.ok()?);
        let canary = selected_hash(&self.svc.get("web-canary").await.ok()?);
        let sets = self
            .rs
            .list(&Default::default())
            .await
            .ok()?
            .items
            .into_iter()
            .filter_map(|rs| {
                let hash = rs
                    .labels()
                    .get(aviary::plan::POD_TEMPLATE_HASH_LABEL)?
                    .clone();
                let spec = rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
                let available = rs.status.and_then(|s| s.available_replicas).unwrap_or(0);
                Some((hash, (spec, available)))
            })
            .collect();
        Some(Serving {
            weight: canary_weight(Router::Istio, &vs),
            stable,
            canary,
            sets,
        })
    }
}

/// Samples the serving of an Istio rollout of `replicas` pods back to back (weight, Services,
/// ReplicaSets, in that order) and records every sample in which the stable Service selects a
/// revision with fewer than `floor` available pods, or the canary's weight goes to a Service
/// whose pods can't carry it. A sample whose reads took over 500 ms is not judged (the old
/// revision is scaled down only 2 s after the Service left it).
#[derive(Default)]
struct ServingLog {
    samples: usize,
    violations: Vec<String>,
}

fn sample_serving(
    apis: ServingApis,
    replicas: i32,
    floor: i32,
) -> (Arc<Mutex<ServingLog>>, tokio::task::JoinHandle<()>) {
    let log: Arc<Mutex<ServingLog>> = Arc::default();
    let out = log.clone();
    let handle = tokio::spawn(async move {
        loop {
            let t0 = Instant::now();
            let look = apis.look().await;
            if let Some(s) = look.filter(|_| t0.elapsed() < Duration::from_millis(500)) {
                let mut bad = vec![];
                let stable_available = s.available(s.stable.as_deref());
                if stable_available < floor {
                    bad.push(format!(
                        "the stable Service selects {:?} with {stable_available} available pods",
                        s.stable
                    ));
                }
                let w = s.weight.unwrap_or(0);
                let canary_available = s.available(s.canary.as_deref());
                if w > 0 && canary_available < (replicas * w + 99) / 100 {
                    bad.push(format!(
                        "weight {w} on the canary Service, selecting {:?} with {canary_available} available pods",
                        s.canary
                    ));
                }
                if let Ok(mut l) = out.lock() {
                    l.samples += 1;
                    for b in bad {
                        l.violations.push(format!("{b}: {s:?}"));
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    (log, handle)
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum RaceOutcome {
    Promoted,
    Aborted,
}

/// When the abort of a race is sent.
#[derive(Clone, Copy, Debug)]
enum AbortAt {
    /// This many milliseconds after the promote is sent (before it, if negative).
    Ms(i64),
    /// As soon as the test's watch sees the canary ReplicaSet fully available: the event on
    /// which the controller decides the promotion.
    CanaryFull,
    /// As soon as the test's watch sees the promotion decided (`stableRS` the new revision),
    /// before or while the Services and the weight move.
    Decided,
}

/// Watches `name` and sends `abort` the moment an object matching `fire` is seen; returns
/// once the watch is established (its initial list done), with the task that waits.
async fn abort_when<K>(
    api: Api<K>,
    rollouts: Api<Rollout>,
    name: &str,
    fire: impl Fn(&K) -> bool + Send + 'static,
) -> tokio::task::JoinHandle<()>
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
    K::DynamicType: Default,
{
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let cfg = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let task = tokio::spawn(async move {
        let mut ready = Some(ready_tx);
        let mut stream = watcher::watcher(api, cfg).boxed();
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(watcher::Event::InitDone) => {
                    if let Some(tx) = ready.take() {
                        let _ = tx.send(());
                    }
                }
                Ok(watcher::Event::Apply(o)) if ready.is_none() && fire(&o) => {
                    rollouts
                        .patch_status(
                            "web",
                            &PatchParams::default(),
                            &Patch::Merge(&json!({"status": {"abort": true}})),
                        )
                        .await
                        .expect("abort");
                    return;
                }
                _ => {}
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), ready_rx)
        .await
        .expect("watch established")
        .expect("watch task alive");
    task
}

/// Sends `promote` (the patch `kubectl aviary promote` makes) and an abort (`at`), and waits for
/// the rollout to come to rest in one of the two consistent states: promoted (Healthy on `new`,
/// both Services on it, weight 0, no abort pending, `old` scaled to 0) or aborted (Degraded,
/// abort set, both Services on `old`, weight 0, `old` fully available, `new` scaled to 0).
async fn race_promote_and_abort(
    client: &Client,
    ns: &str,
    apis: &ServingApis,
    at: AbortAt,
    old: &str,
    new: &str,
    ctl: &ControllerProcess,
) -> RaceOutcome {
    let api: Api<Rollout> = Api::namespaced(client.clone(), ns);
    let ro = api.get("web").await.expect("rollout");
    let plan = aviary::cli::actions::promote_plan(&ro, false).expect("promote plan");
    let promote = plan.status.expect("promote patches the status");
    let abort = json!({"status": {"abort": true}});
    let send = |patch: Value| {
        let api = api.clone();
        async move {
            api.patch_status("web", &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .expect("status patch")
        }
    };
    match at {
        AbortAt::Ms(ms) if ms < 0 => {
            send(abort).await;
            tokio::time::sleep(Duration::from_millis(ms.unsigned_abs())).await;
            send(promote).await;
        }
        AbortAt::Ms(ms) => {
            tokio::join!(send(promote), async {
                tokio::time::sleep(Duration::from_millis(ms.unsigned_abs())).await;
                send(abort).await;
            });
        }
        AbortAt::CanaryFull => {
            let rs: Api<ReplicaSet> = Api::namespaced(client.clone(), ns);
            let waiter = abort_when(rs, api.clone(), &format!("web-{new}"), |rs| {
                rs.status.as_ref().and_then(|s| s.available_replicas) == Some(REPLICAS)
            })
            .await;
            send(promote).await;
            tokio::time::timeout(Duration::from_secs(20), waiter)
                .await
                .expect("the canary fully available")
                .expect("abort sent");
        }
        AbortAt::Decided => {
            let new_stable = new.to_string();
            let waiter = abort_when(api.clone(), api.clone(), "web", move |ro: &Rollout| {
                ro.status
                    .as_ref()
                    .is_some_and(|s| s.stable_rs.as_deref() == Some(new_stable.as_str()))
            })
            .await;
            send(promote).await;
            tokio::time::timeout(Duration::from_secs(20), waiter)
                .await
                .expect("the promotion decided")
                .expect("abort sent");
        }
    }
    let t0 = Instant::now();
    loop {
        let st = api.get("web").await.ok().and_then(|r| r.status);
        if let (Some(st), Some(s)) = (st, apis.look().await) {
            let all_on = |h: &str| {
                s.stable.as_deref() == Some(h)
                    && s.canary.as_deref() == Some(h)
                    && s.weight == Some(0)
            };
            let promoted = st.phase == Some(RolloutPhase::Healthy)
                && st.stable_rs.as_deref() == Some(new)
                && st.abort != Some(true)
                && all_on(new)
                && s.available(Some(new)) == REPLICAS
                && s.replicas(old) == 0;
            let aborted = st.phase == Some(RolloutPhase::Degraded)
                && st.abort == Some(true)
                && st.stable_rs.as_deref() == Some(old)
                && all_on(old)
                && s.available(Some(old)) == REPLICAS
                && s.replicas(new) == 0;
            if promoted {
                return RaceOutcome::Promoted;
            }
            if aborted {
                return RaceOutcome::Aborted;
            }
            if t0.elapsed() > Duration::from_secs(30) {
                panic!(
                    "abort {at:?}: no consistent end state within 30 s: phase {:?}, abort {:?}, stableRS {:?}, message {:?}; {s:?}\n{}",
                    st.phase,
                    st.abort,
                    st.stable_rs,
                    st.message,
                    ctl.log_tail(60)
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// F3 (issue 21): the promotion switched the stable Service before its status write, so an
/// abort that won the race left the Service on the aborted revision, whose pods then went.
/// Given an Istio canary paused at 50 %, when `promote` and an abort land together or in quick
/// succession — 16 updates in a row, the abort sent from 20 ms before to 1 s after the promote,
/// or the moment the test sees the canary fully available (the event the promotion is decided
/// on) or the decision persisted; the last three against a controller paced to 5 requests a
/// second — then, sampled throughout, the stable Service always selects a revision with
/// `replicas − maxUnavailable` available pods and the weight never goes to pods that can't
/// carry it; and every race ends consistent: promoted (Healthy, Services and traffic on the new
/// revision, the old one scaled to 0) or aborted (Services and all traffic on the old revision,
/// which kept its pods, the aborted one scaled to 0). Both outcomes occur. With the old
/// one-phase promotion (the stable Service moved by the deciding reconcile) and without the
/// abort's return of the stable Service, a race ends with the stable Service on the aborted
/// revision and the test fails.
#[tokio::test]
async fn an_abort_racing_a_promotion_leaves_the_services_on_pods_either_way() {
    let steps = json!([{"setWeight": 50}, {"pause": {}}]);
    let v1 = rollout(Router::Istio, "web:1", steps.clone());
    let (client, ns, ctl) = given_healthy("canary-race", Router::Istio, &v1).await;
    let (log, sampler) = sample_serving(ServingApis::new(&client, &ns.name).await, REPLICAS, 4);
    let apis = ServingApis::new(&client, &ns.name).await;
    let mut races: Vec<(AbortAt, &str)> = [-20, 0, 0, 5, 20, 60, 100, 130, 160, 1000]
        .into_iter()
        .map(|ms| (AbortAt::Ms(ms), "unpaced"))
        .collect();
    for at in [AbortAt::CanaryFull, AbortAt::CanaryFull, AbortAt::Decided] {
        races.push((at, "unpaced"));
    }
    // A controller whose main lane makes 5 requests a second widens every window between the
    // decision, its status write and the moves that follow (aborts are never paced).
    for at in [AbortAt::CanaryFull, AbortAt::CanaryFull, AbortAt::Decided] {
        races.push((at, "paced"));
    }
    let mut ctl = ctl;
    let mut stable = hash_of(&v1);
    let mut outcomes = vec![];
    let t0 = Instant::now();
    for (i, (at, pace)) in races.iter().copied().enumerate() {
        if pace == "paced" && (i == 0 || races[i - 1].1 != "paced") {
            ctl.terminate(Duration::from_secs(10));
            ctl = ControllerProcess::start_named(
                &ns.name,
                "paced",
                &["--kube-api-qps", "5", "--kube-api-burst", "1"],
            );
        }
        let next = rollout(Router::Istio, &format!("web:{}", i + 2), steps.clone());
        let h = hash_of(&next);
        let (_api, _weights, watch) = update_to_paused_at(&client, &ns.name, &next, 50).await;
        watch.abort();
        let outcome = race_promote_and_abort(&client, &ns.name, &apis, at, &stable, &h, &ctl).await;
        println!("{pace} controller, abort at {at:?}: {outcome:?}");
        outcomes.push((at, outcome));
        if outcome == RaceOutcome::Promoted {
            stable = h;
        }
    }
    sampler.abort();
    let (samples, violations) = log
        .lock()
        .map(|l| (l.samples, l.violations.clone()))
        .expect("serving log");
    println!(
        "{} races in {:?}, {samples} samples of the Services and weight",
        races.len(),
        t0.elapsed()
    );
    assert!(
        violations.is_empty(),
        "{} unsafe samples, first ones: {:#?}",
        violations.len(),
        &violations[..violations.len().min(5)]
    );
    assert!(samples >= 100, "too few samples: {samples}");
    for want in [RaceOutcome::Promoted, RaceOutcome::Aborted] {
        assert!(
            outcomes.iter().any(|(_, o)| *o == want),
            "no race ended {want:?}: {outcomes:?}"
        );
    }
}

/// The controller kills of a crash test, by what the rollout was doing when they landed.
#[derive(Debug, Default)]
struct Kills {
    walking: u32,
    analysis: u32,
    promotion: u32,
    abort: u32,
}

/// A small deterministic generator (seeded from the clock and printed) for kill times.
struct KillClock(u64);

impl KillClock {
    fn new() -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(42);
        println!("kill schedule seed: {seed}");
        KillClock(seed)
    }
    /// A duration in `[lo, hi)` milliseconds.
    fn ms(&mut self, lo: u64, hi: u64) -> Duration {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        Duration::from_millis(lo + (self.0 >> 33) % (hi - lo))
    }
}

/// The AnalysisRuns of revision `hash`: (name, phase, retired).
async fn runs_of(client: &Client, ns: &str, hash: &str) -> Vec<(String, String, bool)> {
    let api: Api<aviary::api::AnalysisRun> = Api::namespaced(client.clone(), ns);
    let lp = kube::api::ListParams::default()
        .labels(&format!("{}={hash}", aviary::plan::POD_TEMPLATE_HASH_LABEL));
    api.list(&lp)
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .map(|r| {
            let retired = r
                .labels()
                .get("aviary.dev/retired")
                .is_some_and(|v| v == "true");
            let phase = r
                .status
                .as_ref()
                .map(|s| format!("{:?}", s.phase))
                .unwrap_or_default();
            (r.name_any(), phase, retired)
        })
        .collect()
}

/// Given an Istio canary whose steps include a step analysis (a web metric that succeeds),
/// when the controller is SIGKILLed and restarted at random points — while it walks the steps,
/// while the analysis runs, between the last step and the rollout being Healthy (the promotion
/// decided and the Services and weight moved), and, on the next update, right after an abort —
/// then: the weights are exactly the declared ones in order, each carried by available pods;
/// the analysis step ran once (one AnalysisRun, Successful); the promotion completes; the
/// abort completes by itself (weight 0, both Services on stable, the canary scaled to 0,
/// Degraded/RolloutAborted, the aborted revision's run retired); nothing waits for a human.
#[tokio::test]
async fn controller_killed_during_analysis_promotion_and_abort_neither_repeats_nor_skips() {
    let receiver = support::webhook::WebhookReceiver::start().await;
    receiver.serve_document(json!({"ok": 1}));
    let template = json!({"apiVersion": "aviary.dev/v1alpha1", "kind": "AnalysisTemplate", "metadata": {"name": "ok"},
        "spec": {"metrics": [{"name": "ok", "interval": "1s", "count": 3, "successCondition": "result >= 1",
                 "provider": {"web": {"url": receiver.url("/metric"), "jsonPath": "{$.ok}"}}}]}});
    let steps = json!([
        {"setWeight": 10}, {"pause": {"duration": 1}}, {"setWeight": 30},
        {"analysis": {"templates": [{"templateName": "ok"}]}},
        {"setWeight": 60}, {"pause": {"duration": 1}}, {"setWeight": 80}, {"pause": {}}
    ]);
    const ANALYSIS_STEP: i32 = 3;
    let v1 = rollout(Router::Istio, "web:1", steps.clone());
    let (client, ns, mut ctl) = given_healthy("canary-crash-more", Router::Istio, &v1).await;
    apply_value(&client, Some(&ns.name), &template)
        .await
        .expect("analysis template");
    let api: Api<Rollout> = Api::namespaced(client.clone(), &ns.name);
    let apis = ServingApis::new(&client, &ns.name).await;
    let mut clock = KillClock::new();
    let mut kills = Kills::default();
    let t0 = Instant::now();

    // v2: walked and analysed under kills, then promoted by hand at its last pause, under kills.
    let v2 = rollout(Router::Istio, "web:2", steps.clone());
    let h2 = hash_of(&v2);
    let (log, watch) = record_weights(&client, &ns.name, Router::Istio, format!("web-{h2}")).await;
    apply_value(&client, Some(&ns.name), &v2).await.expect("v2");
    loop {
        let st = api
            .get("web")
            .await
            .ok()
            .and_then(|r| r.status)
            .unwrap_or_default();
        let ours = st.current_pod_hash.as_deref() == Some(h2.as_str());
        if ours && st.phase == Some(RolloutPhase::Paused) && log.last() == Some(80) {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(90),
            "v2 not at its last pause within 90 s: {st:?}\n{}",
            ctl.log_tail(40)
        );
        let idx = st.current_step_index.unwrap_or(0);
        let (wait, count, cap) = if ours && idx == ANALYSIS_STEP {
            (clock.ms(100, 600), &mut kills.analysis, 4)
        } else {
            (clock.ms(150, 700), &mut kills.walking, 8)
        };
        if *count < cap {
            *count += 1;
            ctl.restart();
        }
        tokio::time::sleep(wait).await;
    }
    // The promotion by a controller paced to 5 requests a second: the decision's status write
    // and the moves that carry it out are then at least 200 ms apart.
    ctl.terminate(Duration::from_secs(10));
    ctl = ControllerProcess::start_named(
        &ns.name,
        "paced",
        &["--kube-api-qps", "5", "--kube-api-burst", "1"],
    );
    let ro = api.get("web").await.expect("rollout");
    let promote = aviary::cli::actions::promote_plan(&ro, false)
        .expect("promote plan")
        .status
        .expect("promote patches the status");
    api.patch_status("web", &PatchParams::default(), &Patch::Merge(&promote))
        .await
        .expect("promote");
    // Killed once while the canary scales to full size, then each time the decision is seen
    // persisted with the Services and weight not yet moved (polled every 5 ms).
    let mut next_kill = Instant::now() + clock.ms(0, 60);
    let mut decided_kills = 0;
    loop {
        let st = api
            .get("web")
            .await
            .ok()
            .and_then(|r| r.status)
            .unwrap_or_default();
        let decided = st.stable_rs.as_deref() == Some(h2.as_str());
        let s = apis.look().await;
        let moved = s.as_ref().is_some_and(|s| {
            s.weight == Some(0)
                && s.stable.as_deref() == Some(h2.as_str())
                && s.canary.as_deref() == Some(h2.as_str())
        });
        if decided && moved && st.phase == Some(RolloutPhase::Healthy) {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "v2 not promoted within 120 s: {st:?}, {s:?}\n{}",
            ctl.log_tail(40)
        );
        let now = Instant::now();
        if decided && !moved && decided_kills < 3 && now >= next_kill {
            decided_kills += 1;
            kills.promotion += 1;
            ctl.restart();
            next_kill = now + clock.ms(0, 300);
        } else if !decided && kills.promotion == 0 && now >= next_kill {
            kills.promotion += 1;
            ctl.restart();
            next_kill = now;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    println!("kills with the promotion decided and not yet carried out: {decided_kills}");
    assert!(
        decided_kills >= 1,
        "no kill landed between the decision and the switch"
    );
    log.wait_for(
        "weight 0 after the promotion",
        0,
        Duration::from_secs(10),
        Duration::from_millis(50),
    )
    .await;
    watch.abort();
    println!(
        "v2 promoted after {:?}; kills so far {kills:?}",
        t0.elapsed()
    );
    let mut seen = log.weights();
    if seen.first() == Some(&0) {
        seen.remove(0);
    }
    assert_eq!(
        seen,
        vec![10, 30, 60, 80, 0],
        "v2's weights across {kills:?}"
    );
    for (w, available) in log.entries() {
        let needed = (REPLICAS * w + 99) / 100;
        assert!(
            available >= needed,
            "weight {w} visible with {available} available canary pods"
        );
    }
    let runs = runs_of(&client, &ns.name, &h2).await;
    assert!(
        runs.len() == 1 && runs[0].1 == "Successful",
        "the analysis step ran once and succeeded: {runs:?}"
    );

    // v3: aborted during its analysis, the controller (unpaced again) killed while the abort is
    // carried out.
    ctl.terminate(Duration::from_secs(10));
    ctl = ControllerProcess::start_named(&ns.name, "unpaced", &[]);
    let v3 = rollout(Router::Istio, "web:3", steps);
    let h3 = hash_of(&v3);
    let (log, watch) = record_weights(&client, &ns.name, Router::Istio, format!("web-{h3}")).await;
    apply_value(&client, Some(&ns.name), &v3).await.expect("v3");
    poll_until(
        "v3 in its analysis step",
        Duration::from_secs(60),
        Duration::from_millis(50),
        || {
            let api = api.clone();
            let h3 = h3.clone();
            async move {
                let st = api.get("web").await.ok()?.status?;
                (st.current_pod_hash.as_deref() == Some(h3.as_str())
                    && st.current_step_index == Some(ANALYSIS_STEP))
                .then_some(())
            }
        },
    )
    .await;
    patch_status(&client, &ns.name, json!({"abort": true})).await;
    let t1 = Instant::now();
    loop {
        tokio::time::sleep(clock.ms(0, 300)).await;
        let st = api
            .get("web")
            .await
            .ok()
            .and_then(|r| r.status)
            .unwrap_or_default();
        let s = apis.look().await;
        let done = st.phase == Some(RolloutPhase::Degraded)
            && st.abort == Some(true)
            && s.as_ref().is_some_and(|s| {
                s.weight == Some(0)
                    && s.stable.as_deref() == Some(h2.as_str())
                    && s.canary.as_deref() == Some(h2.as_str())
                    && s.replicas(&h3) == 0
                    && s.available(Some(&h2)) == REPLICAS
            });
        if done {
            break;
        }
        assert!(
            t1.elapsed() < Duration::from_secs(60),
            "the abort did not complete within 60 s: {st:?}, {s:?}\n{}",
            ctl.log_tail(40)
        );
        if kills.abort < 5 {
            kills.abort += 1;
            ctl.restart();
        }
    }
    println!(
        "v3's abort complete {:?} after it was sent; kills {kills:?}, {:?} in all",
        t1.elapsed(),
        t0.elapsed()
    );
    watch.abort();
    let mut seen = log.weights();
    if seen.first() == Some(&0) {
        seen.remove(0);
    }
    assert_eq!(seen, vec![10, 30, 0], "v3's weights across {kills:?}");
    let st = get_rollout(&client, &ns.name).await.status.expect("status");
    assert_eq!(st.stable_rs.as_deref(), Some(h2.as_str()));
    assert_eq!(
        st.condition("Progressing").map(|c| c.reason.as_str()),
        Some("RolloutAborted")
    );
    assert!(st.pause_conditions.is_empty(), "{:?}", st.pause_conditions);
    let runs = poll_until(
        "v3's run retired",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || {
            let client = client.clone();
            let (ns, h3) = (ns.name.clone(), h3.clone());
            async move {
                let runs = runs_of(&client, &ns, &h3).await;
                runs.iter().all(|r| r.2).then_some(runs)
            }
        },
    )
    .await;
    assert!(runs.len() <= 1, "v3's analysis step ran once: {runs:?}");
    assert!(
        kills.analysis >= 1 && kills.promotion >= 1 && kills.abort >= 1,
        "kills landed in every phase: {kills:?}"
    );
}

/// What a watch of one ReplicaSet saw: `(spec.replicas, has a scale-down deadline)` per change.
async fn record_scale_down(
    client: &Client,
    ns: &str,
    name: &str,
) -> (Arc<Mutex<Vec<(i32, bool)>>>, tokio::task::JoinHandle<()>) {
    let api: Api<ReplicaSet> = Api::namespaced(client.clone(), ns);
    let cfg = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let log: Arc<Mutex<Vec<(i32, bool)>>> = Arc::default();
    let out = log.clone();
    let handle = tokio::spawn(async move {
        let mut stream = watcher::watcher(api, cfg).boxed();
        while let Some(ev) = stream.next().await {
            if let Ok(watcher::Event::Apply(rs)) | Ok(watcher::Event::InitApply(rs)) = ev {
                let spec = rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
                let deadline = rs
                    .annotations()
                    .contains_key("aviary.dev/scale-down-deadline");
                if let Ok(mut l) = out.lock()
                    && l.last() != Some(&(spec, deadline))
                {
                    l.push((spec, deadline));
                }
            }
        }
    });
    (log, handle)
}

/// Found by this test: the reconcile that carries out a promotion moves the stable Service,
/// then the weight, then writes the old revision's scale-down deadline; a controller killed in
/// between left no deadline, and its successor (the Service already moved) scaled the old
/// revision to 0 at once. Given an Istio canary paused at 50 %, promoted by a controller paced
/// to 5 requests a second (its writes 200 ms apart), when the controller is SIGKILLed the
/// moment the stable Service moves to the new revision and another one takes over, then the
/// old revision still waits out `scaleDownDelaySeconds` (it gets its deadline before it is
/// scaled to 0): proxies may still send to it.
#[tokio::test]
async fn a_crash_right_after_the_stable_service_moves_keeps_the_scale_down_delay() {
    let steps = json!([{"setWeight": 50}, {"pause": {}}]);
    let v1 = rollout(Router::Istio, "web:1", steps.clone());
    let h1 = hash_of(&v1);
    let (client, ns, mut ctl) = given_healthy("canary-crash-switch", Router::Istio, &v1).await;
    let v2 = rollout(Router::Istio, "web:2", steps);
    let h2 = hash_of(&v2);
    let (api, _log, watch) = update_to_paused_at(&client, &ns.name, &v2, 50).await;
    watch.abort();
    let (old, old_watch) = record_scale_down(&client, &ns.name, &format!("web-{h1}")).await;
    ctl.terminate(Duration::from_secs(10));
    ctl = ControllerProcess::start_named(
        &ns.name,
        "paced",
        &["--kube-api-qps", "5", "--kube-api-burst", "1"],
    );
    let svc: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(client.clone(), &ns.name);
    let (moved_tx, moved_rx) = tokio::sync::oneshot::channel::<()>();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<()>();
    let want = h2.clone();
    let svc_watch = tokio::spawn(async move {
        let cfg = watcher::Config::default().fields("metadata.name=web-stable");
        let mut stream = watcher::watcher(svc, cfg).boxed();
        let (mut ready, mut moved) = (Some(ready_tx), Some(moved_tx));
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(watcher::Event::InitDone) => {
                    if let Some(tx) = ready.take() {
                        let _ = tx.send(());
                    }
                }
                Ok(watcher::Event::Apply(s)) if selected_hash(&s).as_deref() == Some(&want) => {
                    if let Some(tx) = moved.take() {
                        let _ = tx.send(());
                    }
                }
                _ => {}
            }
        }
    });
    ready_rx.await.expect("Service watch established");
    let ro = api.get("web").await.expect("rollout");
    let promote = aviary::cli::actions::promote_plan(&ro, false)
        .expect("promote plan")
        .status
        .expect("promote patches the status");
    api.patch_status("web", &PatchParams::default(), &Patch::Merge(&promote))
        .await
        .expect("promote");
    tokio::time::timeout(Duration::from_secs(60), moved_rx)
        .await
        .expect("the stable Service moved to the new revision")
        .expect("Service watch alive");
    ctl.kill();
    svc_watch.abort();
    let before_restart = old.lock().map(|l| l.clone()).unwrap_or_default();
    assert!(
        !before_restart.iter().any(|(_, d)| *d),
        "the kill came after the deadline was written: {before_restart:?}"
    );
    let ctl = ControllerProcess::start_named(&ns.name, "after-crash", &[]);
    wait_healthy(&client, &ns.name, &h2, Duration::from_secs(60), &ctl).await;
    // Polled on what the watch recorded, not on a GET: the GET can show 0 before the watch
    // delivers it, and the sequence below is the watch's.
    poll_until(
        "the old revision scaled to 0, as its watch saw",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            let old = old.clone();
            async move { old.lock().ok()?.iter().any(|(r, _)| *r == 0).then_some(()) }
        },
    )
    .await;
    old_watch.abort();
    let seen = old.lock().map(|l| l.clone()).unwrap_or_default();
    println!(
        "old ReplicaSet (replicas, deadline) before the kill {before_restart:?}, in all {seen:?}"
    );
    let first_zero = seen.iter().position(|(r, _)| *r == 0).expect("scaled to 0");
    assert!(
        seen[..first_zero].iter().any(|(_, d)| *d),
        "the old revision was scaled to 0 without a scale-down deadline (scaleDownDelaySeconds skipped): {seen:?}\n{}",
        ctl.log_tail(40)
    );
}

/// The hash selector and managed-by mark of the Service `name` (a fresh read).
async fn service_marks(client: &Client, ns: &str, name: &str) -> (Option<String>, Option<String>) {
    let svc = Api::<k8s_openapi::api::core::v1::Service>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .expect("get Service");
    let hash = svc
        .spec
        .and_then(|s| s.selector)
        .and_then(|s| s.get("rollouts-pod-template-hash").cloned());
    let owner = svc
        .metadata
        .annotations
        .and_then(|a| a.get("aviary.dev/managed-by-rollouts").cloned());
    (hash, owner)
}

/// Waits until neither Service selects a pod-template hash nor carries the managed-by mark.
async fn wait_services_released(client: &Client, ns: &str, timeout: Duration) {
    poll_until(
        "both Services released",
        timeout,
        Duration::from_millis(200),
        || async move {
            for name in ["web-stable", "web-canary"] {
                if service_marks(client, ns, name).await != (None, None) {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
}

/// Issue 21, item 2: a change someone else makes to an object the Rollout steers wakes it.
/// Given an Istio canary paused at 20 %, when a GitOps-style edit resets the VirtualService to
/// all-stable, and then someone points the canary Service at the stable pods, then each is put
/// right within seconds (before this, only the 15-minute resync would have).
#[tokio::test]
async fn drift_on_a_virtual_service_or_a_service_is_put_right_at_once() {
    let steps = json!([{"setWeight": 20}, {"pause": {}}, {"setWeight": 100}]);
    let v1 = rollout(Router::Istio, "web:1", steps.clone());
    let h1 = hash_of(&v1);
    let (client, ns, ctl) = given_healthy("canary-drift", Router::Istio, &v1).await;
    let v2 = rollout(Router::Istio, "web:2", steps);
    let h2 = hash_of(&v2);
    let (_api, _log, watch) = update_to_paused_at(&client, &ns.name, &v2, 20).await;
    watch.abort();

    // The VirtualService as its owner declared it: all traffic to stable.
    let reset = apply_value(&client, Some(&ns.name), &routing_object(Router::Istio))
        .await
        .expect("reset the VirtualService");
    // As written (a read after it may already show the controller's answer), and then a
    // later version of it (the controller's write, not the reset's) back at 20 %.
    assert_eq!(canary_weight(Router::Istio, &reset), Some(0));
    let reset_version = reset.resource_version();
    poll_until(
        "the VirtualService back at the canary's 20 % by a later write",
        Duration::from_secs(20),
        Duration::from_millis(100),
        || {
            let (client, ns, reset_version) =
                (client.clone(), ns.name.clone(), reset_version.clone());
            async move {
                let (gvk, name) = watched_object(Router::Istio);
                let (ar, _) = kube::discovery::pinned_kind(&client, &gvk).await.ok()?;
                let api: Api<DynamicObject> = Api::namespaced_with(client, &ns, &ar);
                let now = api.get(name).await.ok()?;
                (canary_weight(Router::Istio, &now) == Some(20)
                    && now.resource_version() != reset_version)
                    .then_some(())
            }
        },
    )
    .await;

    Api::<k8s_openapi::api::core::v1::Service>::namespaced(client.clone(), &ns.name)
        .patch(
            "web-canary",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"selector": {"rollouts-pod-template-hash": h1}}})),
        )
        .await
        .expect("point the canary Service at the stable pods");
    poll_until(
        "the canary Service back on the canary's pods",
        Duration::from_secs(20),
        Duration::from_millis(100),
        || {
            let (client, ns, h2) = (client.clone(), ns.name.clone(), h2.clone());
            async move {
                let (hash, _) = service_marks(&client, &ns, "web-canary").await;
                (hash.as_deref() == Some(h2.as_str())).then_some(())
            }
        },
    )
    .await;
    assert_eq!(
        virtual_service_weight(&client, &ns.name).await,
        Some(20),
        "{}",
        ctl.log_tail(30)
    );
}

/// F15 (issue 21): a deleted Rollout left its Services selecting a pod-template hash and marked
/// as managed by it, so a new Rollout on the same Services was refused. Given a Healthy
/// Rollout, when it is deleted, then both Services get their selectors back as written and lose
/// the mark, and a Rollout of another name adopts them and becomes Healthy.
#[tokio::test]
async fn a_deleted_rollouts_services_are_released_for_the_next_rollout() {
    let v1 = rollout(Router::Istio, "web:1", standard_steps());
    let h1 = hash_of(&v1);
    let (client, ns, ctl) = given_healthy("canary-release", Router::Istio, &v1).await;
    for name in ["web-stable", "web-canary"] {
        let (hash, owner) = service_marks(&client, &ns.name, name).await;
        assert_eq!(
            (hash.as_deref(), owner.as_deref()),
            (Some(h1.as_str()), Some("web")),
            "{name}"
        );
    }
    let api: Api<Rollout> = Api::namespaced(client.clone(), &ns.name);
    api.delete("web", &kube::api::DeleteParams::default())
        .await
        .expect("delete the rollout");
    wait_services_released(&client, &ns.name, Duration::from_secs(30)).await;

    let mut next = v1.clone();
    next["metadata"]["name"] = json!("next");
    apply_value(&client, Some(&ns.name), &next)
        .await
        .expect("apply the next Rollout");
    poll_until(
        "the next Rollout Healthy on the adopted Services",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || {
            let (api, client, ns, h1) = (api.clone(), client.clone(), ns.name.clone(), h1.clone());
            async move {
                let st = api.get("next").await.ok()?.status?;
                let (hash, owner) = service_marks(&client, &ns, "web-stable").await;
                (st.phase == Some(RolloutPhase::Healthy)
                    && hash.as_deref() == Some(h1.as_str())
                    && owner.as_deref() == Some("next"))
                .then_some(())
            }
        },
    )
    .await;
    drop(ctl);
}

/// F15's release, with `--cascade=orphan` (a migration back to a Deployment, say): the Rollout
/// goes, its ReplicaSets stay. Given an Istio canary paused at 20 %, when the Rollout is deleted
/// with orphaned dependents, then its Services stay on their revisions (widening the stable
/// Service's selector would send production traffic to the unpromoted canary) for as long as
/// both revisions have pods; once the canary's ReplicaSet is scaled to 0, both are released.
#[tokio::test]
async fn an_orphaning_deletion_keeps_the_services_on_their_revisions_until_one_is_gone() {
    let steps = json!([{"setWeight": 20}, {"pause": {}}, {"setWeight": 100}]);
    let v1 = rollout(Router::Istio, "web:1", steps.clone());
    let h1 = hash_of(&v1);
    let (client, ns, ctl) = given_healthy("canary-orphan", Router::Istio, &v1).await;
    let v2 = rollout(Router::Istio, "web:2", steps);
    let h2 = hash_of(&v2);
    let (api, _log, watch) = update_to_paused_at(&client, &ns.name, &v2, 20).await;
    watch.abort();
    let orphan = kube::api::DeleteParams {
        propagation_policy: Some(kube::api::PropagationPolicy::Orphan),
        ..Default::default()
    };
    api.delete("web", &orphan).await.expect("delete, orphaning");
    poll_until(
        "the Rollout gone and its Services kept",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            let (api, ctl) = (api.clone(), &ctl);
            async move {
                let gone = api.get_opt("web").await.ok()?.is_none();
                (gone
                    && ctl
                        .log_tail(400)
                        .contains("Service of a deleted Rollout kept for now"))
                .then_some(())
            }
        },
    )
    .await;
    assert_eq!(
        service_marks(&client, &ns.name, "web-stable").await,
        (Some(h1.clone()), Some("web".to_string())),
        "the stable Service stays on the stable pods"
    );
    assert_eq!(
        service_marks(&client, &ns.name, "web-canary").await,
        (Some(h2.clone()), Some("web".to_string()))
    );

    Api::<ReplicaSet>::namespaced(client.clone(), &ns.name)
        .patch(
            &format!("web-{h2}"),
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"replicas": 0}})),
        )
        .await
        .expect("scale the orphaned canary to 0");
    // The next sweep (every minute) releases both.
    wait_services_released(&client, &ns.name, Duration::from_secs(90)).await;
}

/// Issue 23, item 3: a GitOps reset of the weight during `pause: {}`, made by another field
/// manager, is put back at once — the routing object is watched, whichever the router — and
/// the write that puts it back names who made the change: a Warning Event `DriftCorrected` on
/// the Rollout and `aviary_drift_corrections_total{kind}`. The time from the reset to the
/// correction is printed. (Before, HTTPRoutes and Ingresses were not watched: a reset waited
/// for the safety resync; and no correction said whose change it undid.)
async fn a_reset_by_another_manager_is_put_back_and_attributed(router: Router, prefix: &str) {
    const MANAGER: &str = "gitops-sync";
    let steps = json!([{"setWeight": 20}, {"pause": {}}, {"setWeight": 100}]);
    let v1 = rollout(router, "web:1", steps.clone());
    let (client, ns, ctl) = given_healthy(prefix, router, &v1).await;
    apply_value(&client, Some(&ns.name), &rollout(router, "web:2", steps))
        .await
        .expect("the update");
    let (gvk, name) = watched_object(router);
    let (ar, _) = kube::discovery::pinned_kind(&client, &gvk)
        .await
        .expect("the routing kind");
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns.name, &ar);
    let rollouts: Api<Rollout> = Api::namespaced(client.clone(), &ns.name);
    poll_until(
        "paused at 20 %",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || {
            let (api, rollouts) = (api.clone(), rollouts.clone());
            async move {
                let st = rollouts.get("web").await.ok()?.status?;
                let w = canary_weight(router, &api.get(name).await.ok()?);
                (st.phase == Some(RolloutPhase::Paused) && w == Some(20)).then_some(())
            }
        },
    )
    .await;

    let reset = match router {
        // The canary Ingress is Aviary's own: someone edits its weight.
        Router::Nginx => {
            let pp = PatchParams {
                field_manager: Some(MANAGER.into()),
                ..Default::default()
            };
            let weight = json!({"metadata": {"annotations": {
                "nginx.ingress.kubernetes.io/canary-weight": "0"}}});
            api.patch(name, &pp, &Patch::Merge(&weight)).await
        }
        // The object as Git declares it, applied with force as a GitOps sync does.
        _ => {
            let pp = PatchParams::apply(MANAGER).force();
            api.patch(name, &pp, &Patch::Apply(routing_object(router)))
                .await
        }
    }
    .expect("reset the weight");
    let t0 = Instant::now();
    assert_eq!(canary_weight(router, &reset), Some(0), "the reset took");
    let reset_version = reset.resource_version();
    poll_until(
        "the weight back at 20 % by a later write",
        Duration::from_secs(20),
        Duration::from_millis(20),
        || {
            let (api, reset_version) = (api.clone(), reset_version.clone());
            async move {
                let now = api.get(name).await.ok()?;
                (canary_weight(router, &now) == Some(20) && now.resource_version() != reset_version)
                    .then_some(())
            }
        },
    )
    .await;
    println!(
        "{router:?}: a reset by another field manager was put back {:?} after it",
        t0.elapsed()
    );
    support::wait_for_event(
        &client,
        &ns.name,
        "web",
        "DriftCorrected naming the field manager",
        |reason, note| reason == "DriftCorrected" && note.contains(MANAGER),
    )
    .await;
    let kind = gvk.kind.clone();
    let addr = ctl.metrics_addr().await;
    poll_until(
        "aviary_drift_corrections_total counted",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || {
            let kind = kind.clone();
            async move {
                let samples = support::scrape::scrape(addr).await?;
                samples
                    .iter()
                    .any(|s| {
                        s.name == "aviary_drift_corrections_total"
                            && s.labels.get("kind") == Some(&kind)
                            && s.value >= 1.0
                    })
                    .then_some(())
            }
        },
    )
    .await;
}

#[tokio::test]
async fn istio_a_reset_by_another_manager_is_put_back_and_attributed() {
    a_reset_by_another_manager_is_put_back_and_attributed(Router::Istio, "drift-istio").await;
}

#[tokio::test]
async fn gateway_a_reset_by_another_manager_is_put_back_and_attributed() {
    a_reset_by_another_manager_is_put_back_and_attributed(Router::Gateway, "drift-gateway").await;
}

#[tokio::test]
async fn nginx_a_reset_by_another_manager_is_put_back_and_attributed() {
    a_reset_by_another_manager_is_put_back_and_attributed(Router::Nginx, "drift-nginx").await;
}

/// Issue 26: a pod template the API server refuses when the ReplicaSet is created
/// (`memory: invalid` passes the Rollout's schema, which holds quantities as strings) ends in
/// a status condition and an Event quoting the API server, not a silent retry loop; v1 keeps
/// serving, and fixing the template clears it.
#[tokio::test]
async fn a_pod_template_the_api_server_refuses_is_reported_quoting_it() {
    let steps = json!([{"setWeight": 20}, {"pause": {}}, {"setWeight": 100}]);
    let v1 = rollout(Router::Istio, "web:1", steps.clone());
    let (client, ns, ctl) = given_healthy("canary-refused-template", Router::Istio, &v1).await;
    let mut v2 = rollout(Router::Istio, "web:2", steps);
    v2["spec"]["template"]["spec"]["containers"][0]["resources"] =
        json!({"limits": {"memory": "invalid"}});
    apply_value(&client, Some(&ns.name), &v2)
        .await
        .expect("v2 is admitted");
    let api: Api<Rollout> = Api::namespaced(client.clone(), &ns.name);
    let (st, message) = poll_until(
        "a condition quoting the API server",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || {
            let api = api.clone();
            async move {
                let st = api.get("web").await.ok()?.status?;
                let c = st
                    .conditions
                    .iter()
                    .find(|c| {
                        c.type_ == "InvalidSpec" && c.message.contains("quantities must match")
                    })?
                    .clone();
                Some((st, format!("{}: {}", c.type_, c.message)))
            }
        },
    )
    .await;
    println!("{message}");
    assert!(
        message.starts_with("InvalidSpec: the API server refused ReplicaSet")
            && message.ends_with("fix spec.template"),
        "{message}\n{}",
        ctl.log_tail(20)
    );
    assert_eq!(st.stable_rs.as_deref(), Some(hash_of(&v1).as_str()));
    support::wait_for_event(
        &client,
        &ns.name,
        "web",
        "an Event quoting the API server",
        |_, n| n.contains("quantities must match"),
    )
    .await;
    let mut fixed = v2.clone();
    fixed["spec"]["template"]["spec"]["containers"][0]["resources"] =
        json!({"limits": {"memory": "64Mi"}});
    apply_value(&client, Some(&ns.name), &fixed)
        .await
        .expect("fixed");
    poll_until(
        "the condition cleared once the template is fixed",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || {
            let api = api.clone();
            async move {
                let st = api.get("web").await.ok()?.status?;
                (!st.conditions
                    .iter()
                    .any(|c| c.message.contains("quantities must match")))
                .then_some(())
            }
        },
    )
    .await;
}

/// `rollbackWindow: {revisions: 1}`: back to the revision just before the stable one, the
/// update skips its steps — an indefinite pause included — and says so in a SkipSteps Event;
/// forward again to the newer revision, the steps hold it as usual.
#[tokio::test]
async fn a_rollback_within_the_window_skips_the_steps_and_forward_does_not() {
    let steps = json!([{"setWeight": 20}, {"pause": {}}, {"setWeight": 100}]);
    let with_window = |image: &str| {
        let mut ro = rollout(Router::Istio, image, steps.clone());
        ro["spec"]["rollbackWindow"] = json!({"revisions": 1});
        ro
    };
    let v1 = with_window("web:1");
    let h1 = hash_of(&v1);
    let (client, ns, ctl) = given_healthy("canary-window", Router::Istio, &v1).await;
    let v2 = with_window("web:2");
    let h2 = hash_of(&v2);
    apply_value(&client, Some(&ns.name), &v2).await.expect("v2");
    let api: Api<Rollout> = Api::namespaced(client.clone(), &ns.name);
    let paused = || {
        let api = api.clone();
        async move {
            let st = api.get("web").await.ok()?.status?;
            (st.phase == Some(RolloutPhase::Paused)).then_some(st.current_pod_hash)
        }
    };
    let on = poll_until(
        "v2 paused at its pause step",
        Duration::from_secs(60),
        Duration::from_millis(100),
        paused,
    )
    .await;
    assert_eq!(on.as_deref(), Some(h2.as_str()));
    patch_status(&client, &ns.name, json!({"promoteFull": true})).await;
    wait_healthy(&client, &ns.name, &h2, Duration::from_secs(60), &ctl).await;

    let (log, watch) = record_weights(&client, &ns.name, Router::Istio, format!("web-{h1}")).await;
    apply_value(&client, Some(&ns.name), &v1)
        .await
        .expect("back to v1");
    wait_healthy(&client, &ns.name, &h1, Duration::from_secs(60), &ctl).await;
    watch.abort();
    assert!(
        !log.weights().contains(&20),
        "the steps' weight was set on a rollback inside the window: {:?}",
        log.weights()
    );
    support::wait_for_event(
        &client,
        &ns.name,
        "web",
        "a SkipSteps Event naming the window",
        |reason, note| reason == "SkipSteps" && note.contains("rollbackWindow"),
    )
    .await;

    // Forward to v2, newer than the stable v1: not a rollback; the pause holds it.
    apply_value(&client, Some(&ns.name), &v2)
        .await
        .expect("v2 again");
    let on = poll_until(
        "v2 paused again",
        Duration::from_secs(60),
        Duration::from_millis(100),
        paused,
    )
    .await;
    assert_eq!(on.as_deref(), Some(h2.as_str()));
}

/// `dynamicStableScale` behind NGINX, 10 replicas, weights 20 and 60. Given the update paused at
/// 20 % then at 60 %, the stable ReplicaSet has shrunk to 8 then 4 pods (each after its traffic
/// left). When the rollout is aborted while no new pod can become ready (the test's nodes
/// cordoned), then the weight stays at 60 % — reconcile after reconcile, the 4 stable pods
/// cannot carry 80 % — while the stable asks for the pods of the next weight down (8, not all
/// 10); once pods can run again, the traffic comes back one declared weight at a time (60 →
/// 20 → 0), and the canary goes after abortScaleDownDelaySeconds.
#[tokio::test]
async fn dynamic_stable_scale_shrinks_the_stable_and_an_abort_grows_it_before_traffic_returns() {
    const R: i32 = 10;
    let client = client().await;
    setup(&client).await;
    let ns = TestNamespace::new(&client, "canary-dynamic").await;
    let pool = NodePool::new(&ns.name);
    for obj in [
        service("web-stable"),
        service("web-canary"),
        routing_object(Router::Nginx),
    ] {
        apply_value(&client, Some(&ns.name), &obj)
            .await
            .expect("fixture");
    }
    let dynamic = |image: &str| {
        json!({
            "apiVersion": "aviary.dev/v1alpha1", "kind": "Rollout", "metadata": {"name": "web"},
            "spec": {
                "replicas": R,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                             "spec": {"nodeSelector": pool.node_selector(),
                                      "containers": [{"name": "web", "image": image}]}},
                "strategy": {"canary": {
                    "canaryService": "web-canary", "stableService": "web-stable",
                    "dynamicStableScale": true, "abortScaleDownDelaySeconds": 2,
                    "trafficRouting": traffic_routing(Router::Nginx),
                    "steps": [{"setWeight": 20}, {"pause": {}}, {"setWeight": 60}, {"pause": {}}],
                }}
            }
        })
    };
    let (v1, v2) = (dynamic("web:1"), dynamic("web:2"));
    let (h1, h2) = (hash_of(&v1), hash_of(&v2));
    let (stable, canary) = (format!("web-{h1}"), format!("web-{h2}"));
    apply_value(&client, Some(&ns.name), &v1).await.expect("v1");
    let ctl = ControllerProcess::start(&ns.name);
    wait_healthy(&client, &ns.name, &h1, Duration::from_secs(60), &ctl).await;
    let (cap, rs_watch) =
        record_capacity(&client, &ns.name, stable.clone(), canary.clone(), 0).await;
    let (log, watch) = record_weights(&client, &ns.name, Router::Nginx, canary.clone()).await;
    apply_value(&client, Some(&ns.name), &v2).await.expect("v2");
    let api: Api<Rollout> = Api::namespaced(client.clone(), &ns.name);
    let paused_at = |weight: i32, stable_pods: i32, canary_pods: i32| {
        let (api, cap, log) = (api.clone(), cap.clone(), log.clone());
        let (stable, canary) = (stable.clone(), canary.clone());
        async move {
            poll_until(
                &format!("paused at {weight} %: stable {stable_pods} pods, canary {canary_pods}"),
                Duration::from_secs(60),
                Duration::from_millis(100),
                || {
                    let api = api.clone();
                    let (s, c, w) = (cap.set(&stable), cap.set(&canary), log.last());
                    async move {
                        let st = api.get("web").await.ok()?.status?;
                        (st.phase == Some(RolloutPhase::Paused)
                            && w == Some(weight)
                            && s == Some((stable_pods, stable_pods, stable_pods))
                            && c == Some((canary_pods, canary_pods, canary_pods)))
                        .then_some(())
                    }
                },
            )
            .await
        }
    };
    paused_at(20, 8, 2).await;
    patch_status(&client, &ns.name, json!({"pauseConditions": null})).await;
    paused_at(60, 4, 6).await;

    // When: nothing new can become ready, and the rollout is aborted.
    pool.cordon();
    patch_status(&client, &ns.name, json!({"abort": true})).await;
    poll_until(
        "the stable asks for the 8 pods of 20 %, its new ones Pending",
        Duration::from_secs(30),
        Duration::from_millis(50),
        || {
            let s = cap.set(&stable);
            async move { (s? == (8, 8, 4)).then_some(()) }
        },
    )
    .await;
    for n in 0..3 {
        await_a_reconcile(&client, &ns.name, n, &ctl).await;
    }
    assert_eq!(
        log.last(),
        Some(60),
        "traffic moved onto a stable that could not carry it: {:?}\n{}",
        log.weights(),
        ctl.log_tail(40)
    );
    assert_eq!(
        cap.set(&canary),
        Some((6, 6, 6)),
        "the canary keeps its pods"
    );

    // Then, once pods can run: back one declared weight at a time.
    pool.uncordon();
    log.wait_for(
        "all traffic back on the stable",
        0,
        Duration::from_secs(60),
        Duration::from_millis(50),
    )
    .await;
    poll_until(
        "the stable at 10 available, the canary at 0",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || {
            let (s, c) = (cap.set(&stable), cap.set(&canary));
            async move { (s? == (R, R, R) && c?.0 == 0).then_some(()) }
        },
    )
    .await;
    watch.abort();
    rs_watch.abort();
    assert_eq!(log.weights(), vec![20, 60, 20, 0]);
    let st = get_rollout(&client, &ns.name).await.status.expect("status");
    assert_eq!(st.phase, Some(RolloutPhase::Degraded));
    assert_eq!(st.stable_rs.as_deref(), Some(h1.as_str()));
}

/// `scaleDownDelayRevisionLimit: 1` with a 60 s `scaleDownDelaySeconds`: given v1 → v2 promoted
/// (v1 waiting out its delay with its pods), when v3 is promoted too, then v2 — the newest old
/// revision — keeps its pods and its deadline while v1 goes to 0 at once, long before its delay.
#[tokio::test]
async fn the_scale_down_delay_revision_limit_keeps_only_the_newest_old_replica_set() {
    let limited = |image: &str| {
        let mut ro = rollout(Router::Istio, image, json!([{"setWeight": 50}]));
        ro["spec"]["strategy"]["canary"]["scaleDownDelaySeconds"] = json!(60);
        ro["spec"]["strategy"]["canary"]["scaleDownDelayRevisionLimit"] = json!(1);
        ro
    };
    let v1 = limited("web:1");
    let (client, ns, ctl) = given_healthy("canary-delay-limit", Router::Istio, &v1).await;
    let rs_api: Api<ReplicaSet> = Api::namespaced(client.clone(), &ns.name);
    let spec_of = |hash: String| {
        let rs_api = rs_api.clone();
        async move {
            let rs = rs_api.get(&format!("web-{hash}")).await.ok()?;
            let waits = rs
                .annotations()
                .keys()
                .any(|k| k.contains("scale-down-deadline"));
            Some((rs.spec?.replicas?, waits))
        }
    };
    let (v2, v3) = (limited("web:2"), limited("web:3"));
    apply_value(&client, Some(&ns.name), &v2).await.expect("v2");
    wait_healthy(
        &client,
        &ns.name,
        &hash_of(&v2),
        Duration::from_secs(60),
        &ctl,
    )
    .await;
    let t0 = Instant::now();
    assert_eq!(
        spec_of(hash_of(&v1)).await,
        Some((REPLICAS, true)),
        "v1 waits out its delay with its pods"
    );
    apply_value(&client, Some(&ns.name), &v3).await.expect("v3");
    wait_healthy(
        &client,
        &ns.name,
        &hash_of(&v3),
        Duration::from_secs(60),
        &ctl,
    )
    .await;
    poll_until(
        "v1 at 0 while v2 waits with its pods",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            let (a, b) = (spec_of(hash_of(&v1)), spec_of(hash_of(&v2)));
            async move { (a.await?.0 == 0 && b.await? == (REPLICAS, true)).then_some(()) }
        },
    )
    .await;
    assert!(
        t0.elapsed() < Duration::from_secs(60),
        "v1 went at the limit, not at the end of its delay"
    );
}

/// `antiAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {}}` on a basic canary of one
/// replica, on the two KWOK nodes: given v1 Healthy (its pod on one node), when v2 goes out,
/// then v2's ReplicaSet carries Argo's injected anti-affinity term against v1's hash, and the
/// real scheduler puts v2's pod on the other node.
#[tokio::test]
async fn anti_affinity_keeps_the_canary_off_the_stable_nodes() {
    let client = client().await;
    setup(&client).await;
    let ns = TestNamespace::new(&client, "canary-anti-affinity").await;
    let basic = |image: &str| {
        json!({
            "apiVersion": "aviary.dev/v1alpha1", "kind": "Rollout", "metadata": {"name": "web"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                             "spec": {"containers": [{"name": "web", "image": image}]}},
                "strategy": {"canary": {
                    "antiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {}},
                    "steps": [{"setWeight": 50}, {"pause": {}}],
                }}
            }
        })
    };
    let (v1, v2) = (basic("web:1"), basic("web:2"));
    let (h1, h2) = (hash_of(&v1), hash_of(&v2));
    apply_value(&client, Some(&ns.name), &v1).await.expect("v1");
    let ctl = ControllerProcess::start(&ns.name);
    wait_healthy(&client, &ns.name, &h1, Duration::from_secs(60), &ctl).await;
    apply_value(&client, Some(&ns.name), &v2).await.expect("v2");
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), &ns.name);
    let node_of = |hash: String| {
        let pods = pods.clone();
        async move {
            let lp = kube::api::ListParams::default()
                .labels(&format!("rollouts-pod-template-hash={hash}"));
            let list = pods.list(&lp).await.ok()?;
            let pod = list.items.into_iter().find(|p| {
                p.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            })?;
            pod.spec?.node_name
        }
    };
    let (stable_node, canary_node) = poll_until(
        "a ready pod of each revision",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || {
            let (a, b) = (node_of(h1.clone()), node_of(h2.clone()));
            async move { Some((a.await?, b.await?)) }
        },
    )
    .await;
    assert_ne!(
        stable_node,
        canary_node,
        "the canary's pod shares the stable's node\n{}",
        ctl.log_tail(20)
    );
    let rs: Api<ReplicaSet> = Api::namespaced(client.clone(), &ns.name);
    let canary = rs
        .get(&format!("web-{h2}"))
        .await
        .expect("canary ReplicaSet");
    let term = serde_json::to_value(
        canary
            .spec
            .and_then(|s| s.template)
            .and_then(|t| t.spec)
            .and_then(|p| p.affinity),
    )
    .expect("affinity json");
    assert_eq!(
        term["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0],
        json!({"labelSelector": {"matchExpressions": [
                  {"key": "rollouts-pod-template-hash", "operator": "In", "values": [h1]}]},
               "namespaces": [ns.name.clone()],
               "topologyKey": "kubernetes.io/hostname"})
    );
    println!("stable pod on {stable_node}, canary pod on {canary_node}");
}

/// The pods of the ReplicaSet of `hash` once there are `count` of them and every one passes
/// `holds`; their UIDs.
async fn pods_once(
    client: &Client,
    ns: &str,
    hash: &str,
    count: usize,
    what: &str,
    holds: impl Fn(&k8s_openapi::api::core::v1::Pod) -> bool,
) -> Vec<String> {
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), ns);
    let holds = &holds;
    poll_until(
        what,
        Duration::from_secs(60),
        Duration::from_millis(100),
        || {
            let pods = pods.clone();
            async move {
                let params = kube::api::ListParams::default()
                    .labels(&format!("rollouts-pod-template-hash={hash}"));
                let list: Vec<_> = pods
                    .list(&params)
                    .await
                    .ok()?
                    .items
                    .into_iter()
                    .filter(|p| p.metadata.deletion_timestamp.is_none())
                    .collect();
                (list.len() == count && list.iter().all(holds))
                    .then(|| list.iter().filter_map(|p| p.metadata.uid.clone()).collect())
            }
        },
    )
    .await
}

fn label_of<'a>(pod: &'a k8s_openapi::api::core::v1::Pod, key: &str) -> Option<&'a str> {
    pod.labels().get(key).map(String::as_str)
}

fn annotation_of<'a>(pod: &'a k8s_openapi::api::core::v1::Pod, key: &str) -> Option<&'a str> {
    pod.annotations().get(key).map(String::as_str)
}

/// Given a canary with `canaryMetadata` and `stableMetadata`, when v2 pauses at 40 %, then the
/// canary's pods carry the canary role and the stable's pods the stable role; when promoted,
/// then the very same canary pods (none restarted) carry the stable role instead, without the
/// canary's annotation, and the old ReplicaSet's template has no role left.
#[tokio::test]
async fn role_metadata_follows_promotion_in_place_without_restarting_pods() {
    let with_roles = |image: &str| {
        let mut ro = rollout(
            Router::Istio,
            image,
            json!([{"setWeight": 40}, {"pause": {}}]),
        );
        ro["spec"]["strategy"]["canary"]["canaryMetadata"] =
            json!({"labels": {"role": "canary"}, "annotations": {"release": "candidate"}});
        ro["spec"]["strategy"]["canary"]["stableMetadata"] = json!({"labels": {"role": "stable"}});
        ro
    };
    let v1 = with_roles("web:1");
    let h1 = hash_of(&v1);
    let (client, ns, ctl) = given_healthy("canary-roles", Router::Istio, &v1).await;
    let count = REPLICAS as usize;
    let stable = |p: &k8s_openapi::api::core::v1::Pod| {
        label_of(p, "role") == Some("stable") && annotation_of(p, "release").is_none()
    };
    pods_once(
        &client,
        &ns.name,
        &h1,
        count,
        "v1's pods labelled role=stable",
        stable,
    )
    .await;

    let v2 = with_roles("web:2");
    let h2 = hash_of(&v2);
    let (_api, _log, watch) = update_to_paused_at(&client, &ns.name, &v2, 40).await;
    let canary_uids = pods_once(
        &client,
        &ns.name,
        &h2,
        2,
        "the canary's pods labelled role=canary, annotated release=candidate",
        |p| {
            label_of(p, "role") == Some("canary")
                && annotation_of(p, "release") == Some("candidate")
        },
    )
    .await;
    pods_once(
        &client,
        &ns.name,
        &h1,
        count,
        "the stable keeps role=stable",
        stable,
    )
    .await;

    patch_status(&client, &ns.name, json!({"pauseConditions": null})).await;
    wait_healthy(&client, &ns.name, &h2, Duration::from_secs(60), &ctl).await;
    let after = pods_once(
        &client,
        &ns.name,
        &h2,
        count,
        "v2's pods labelled role=stable, the canary annotation gone",
        stable,
    )
    .await;
    for uid in &canary_uids {
        assert!(
            after.contains(uid),
            "the canary's pod {uid} was replaced, not relabelled in place"
        );
    }
    let rs_api: Api<ReplicaSet> = Api::namespaced(client.clone(), &ns.name);
    poll_until(
        "the old stable's template without a role",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            let rs_api = rs_api.clone();
            let name = format!("web-{h1}");
            async move {
                let rs = rs_api.get(&name).await.ok()?;
                let template_labels = rs.spec?.template?.metadata?.labels.unwrap_or_default();
                let clean = !template_labels.contains_key("role")
                    && !rs.metadata.annotations.unwrap_or_default().keys().any(|k| {
                        k == "aviary.dev/ephemeral-metadata"
                            || k == "aviary.dev/ephemeral-metadata-pending"
                    });
                clean.then_some(())
            }
        },
    )
    .await;
    support::wait_for_event(
        &client,
        &ns.name,
        "web",
        "Event PodMetadataSynced",
        |reason, message| reason == "PodMetadataSynced" && message.contains("role"),
    )
    .await;
    watch.abort();
}

/// Given a canary with `replicaProgressThreshold: {type: Percent, value: 60}` whose new pods
/// can run only one per node (a host port; the cluster has two nodes), when v2 goes to 60 % of
/// 5 replicas (3 pods wanted), then the weight is routed, and the rollout pauses at the next
/// step, with 2 of the 3 pods available (60 % rounded up), the third Pending. Without the
/// threshold it would wait for the third for ever.
#[tokio::test]
async fn replica_progress_threshold_routes_a_weight_before_every_canary_pod_is_up() {
    let steps = json!([{"setWeight": 60}, {"pause": {}}]);
    let mut v1 = rollout(Router::Istio, "web:1", steps);
    v1["spec"]["strategy"]["canary"]["replicaProgressThreshold"] =
        json!({"type": "Percent", "value": 60});
    let (client, ns, _ctl) = given_healthy("canary-threshold", Router::Istio, &v1).await;
    let mut v2 = v1.clone();
    v2["spec"]["template"]["spec"]["containers"][0]["image"] = json!("web:2");
    v2["spec"]["template"]["spec"]["containers"][0]["ports"] =
        json!([{"containerPort": 8080, "hostPort": 18431}]);
    let h2 = hash_of(&v2);
    let (_api, log, watch) = update_to_paused_at(&client, &ns.name, &v2, 60).await;
    assert_eq!(
        log.entries().last(),
        Some(&(60, 2)),
        "60 % routed on 2 available canary pods: {:?}",
        log.entries()
    );
    let rs = Api::<ReplicaSet>::namespaced(client.clone(), &ns.name)
        .get(&format!("web-{h2}"))
        .await
        .expect("canary ReplicaSet");
    assert_eq!(
        rs.spec.and_then(|s| s.replicas),
        Some(3),
        "the canary is still sized for its whole share"
    );
    assert_eq!(
        rs.status.and_then(|s| s.available_replicas),
        Some(2),
        "one pod per node: the third cannot be placed"
    );
    watch.abort();
}

/// Given a canary paused at 20 % over two routes of one VirtualService, when someone (a GitOps
/// sync of an older copy) sets the second route back to 0 %, then the routes disagree — the
/// weight is unknown, not the higher 20 — and the controller writes 20 to both again.
#[tokio::test]
async fn a_route_set_back_to_zero_beside_another_is_rewritten() {
    let two_routes = json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "web"},
        "spec": {"hosts": ["web.example.com"], "http": [
            {"name": "primary", "route": [
                {"destination": {"host": "web-stable"}, "weight": 100},
                {"destination": {"host": "web-canary"}, "weight": 0}]},
            {"name": "secondary", "route": [
                {"destination": {"host": "web-stable"}, "weight": 100},
                {"destination": {"host": "web-canary"}, "weight": 0}]}]}
    });
    let both = |image: &str| {
        let mut ro = rollout(
            Router::Istio,
            image,
            json!([{"setWeight": 20}, {"pause": {}}]),
        );
        ro["spec"]["strategy"]["canary"]["trafficRouting"] = json!({"istio": {"virtualService": {"name": "web", "routes": ["primary", "secondary"]}}});
        ro
    };
    let v1 = rollout(
        Router::Istio,
        "web:1",
        json!([{"setWeight": 20}, {"pause": {}}]),
    );
    let (client, ns, _ctl) = given_healthy("canary-two-routes", Router::Istio, &v1).await;
    // given_healthy applied the one-route VirtualService; the update routes over two.
    apply_value(&client, Some(&ns.name), &two_routes)
        .await
        .expect("two-route VirtualService");
    let v2 = both("web:2");
    let (_api, _log, watch) = update_to_paused_at(&client, &ns.name, &v2, 20).await;
    let (ar, _) = kube::discovery::pinned_kind(
        &client,
        &GroupVersionKind::gvk("networking.istio.io", "v1", "VirtualService"),
    )
    .await
    .expect("discover VirtualService");
    let vs: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns.name, &ar);
    let canary_weights = |obj: &DynamicObject| -> Vec<i64> {
        obj.data["spec"]["http"]
            .as_array()
            .map(|routes| {
                routes
                    .iter()
                    .filter_map(|r| {
                        r["route"].as_array()?.iter().find_map(|d| {
                            (d["destination"]["host"] == "web-canary")
                                .then(|| d["weight"].as_i64().unwrap_or(0))
                        })
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    poll_until(
        "both routes at 20",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            let vs = vs.clone();
            async move { (canary_weights(&vs.get("web").await.ok()?) == vec![20, 20]).then_some(()) }
        },
    )
    .await;
    // Someone sets the second route back (a JSON patch of that route's weights only).
    let reset = json!([
        {"op": "replace", "path": "/spec/http/1/route/0/weight", "value": 100},
        {"op": "replace", "path": "/spec/http/1/route/1/weight", "value": 0}
    ]);
    vs.patch(
        "web",
        &PatchParams::default(),
        &Patch::<()>::Json(serde_json::from_value(reset).expect("json patch")),
    )
    .await
    .expect("reset the second route");
    poll_until(
        "the second route rewritten to 20",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            let vs = vs.clone();
            async move { (canary_weights(&vs.get("web").await.ok()?) == vec![20, 20]).then_some(()) }
        },
    )
    .await;
    watch.abort();
}
