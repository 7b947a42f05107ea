//! Analysis end to end: the real controller measures a canary through the real Prometheus,
//! which scrapes the traffic simulator, which splits requests by the weights the controller set
//! on a real VirtualService. Weights → traffic → Prometheus → analysis → decision.

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aviary::api::{AnalysisPhase, AnalysisRun, Rollout, RolloutPhase};
use aviary_trafficsim::exporter::Exporter;
use aviary_trafficsim::traffic::{Behaviour, SimConfig};
use kube::api::{Api, DynamicObject, ListParams};
use kube::core::GroupVersionKind;
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use support::controller::{ControllerProcess, prepare};
use support::{TestNamespace, apply_value, client, poll_until};

fn prometheus_url() -> String {
    std::env::var("AVIARY_PROMETHEUS_URL")
        .expect("AVIARY_PROMETHEUS_URL (from hack/cluster.sh env)")
}

fn service(name: &str, app: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
           "spec": {"selector": {"app": app}, "ports": [{"port": 80}]}})
}

fn virtual_service() -> Value {
    json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "web"},
           "spec": {"hosts": ["web"], "http": [{"name": "primary", "route": [
               {"destination": {"host": "web-stable"}, "weight": 100},
               {"destination": {"host": "web-canary"}, "weight": 0}]}]}})
}

/// The brief's three templates with intervals shortened to seconds and a 10 s rate window.
fn template(name: &str, extra: Value) -> Value {
    let sel = r#"service="{{args.service-name}}""#;
    let (query, condition) = match name {
        "success-rate" => (
            format!(
                r#"sum(rate(http_requests_total{{{sel},status!~"5.."}}[10s])) / sum(rate(http_requests_total{{{sel}}}[10s]))"#
            ),
            "result[0] >= 0.95",
        ),
        "error-rate" => (
            format!(
                r#"sum(rate(http_requests_total{{{sel},status=~"5.."}}[10s])) / sum(rate(http_requests_total{{{sel}}}[10s]))"#
            ),
            "result[0] <= 0.05",
        ),
        _ => (
            format!(
                r#"histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket{{{sel}}}[10s])))"#
            ),
            "result[0] <= 0.2",
        ),
    };
    let mut metric = json!({
        "name": name, "interval": "2s", "initialDelay": "3s", "count": 4, "failureLimit": 3,
        "successCondition": condition,
        "provider": {"prometheus": {"query": query}},
    });
    if let (Some(m), Some(e)) = (metric.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            m.insert(k.clone(), v.clone());
        }
    }
    json!({"apiVersion": "aviary.dev/v1alpha1", "kind": "AnalysisTemplate", "metadata": {"name": name},
           "spec": {"args": [{"name": "service-name"}], "metrics": [metric]}})
}

fn rollout(image: &str, templates: &[&str], ns: &str) -> Value {
    let refs: Vec<Value> = templates
        .iter()
        .map(|t| json!({"templateName": t}))
        .collect();
    json!({
        "apiVersion": "aviary.dev/v1alpha1", "kind": "Rollout", "metadata": {"name": "web"},
        "spec": {
            "replicas": 4,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": image}]}},
            "strategy": {"canary": {
                "canaryService": "web-canary", "stableService": "web-stable",
                "abortScaleDownDelaySeconds": 2, "scaleDownDelaySeconds": 2,
                "trafficRouting": {"istio": {"virtualService": {"name": "web", "routes": ["primary"]}}},
                "steps": [
                    {"setWeight": 50},
                    {"analysis": {"templates": refs, "args": [{"name": "service-name", "value": format!("{ns}-web-canary")}]}},
                    {"setWeight": 100}
                ]
            }}
        }
    })
}

fn hash_of(manifest: &Value) -> String {
    let ro: Rollout = serde_json::from_value(manifest.clone()).expect("rollout");
    aviary::plan::pod_template_hash(&ro.spec.template, None)
}

/// A namespace with the Services, the VirtualService, the templates, the controller, an
/// exporter registered with Prometheus and the traffic simulator splitting by weight.
struct Scene {
    client: Client,
    ns: TestNamespace,
    ctl: ControllerProcess,
    sim: Arc<Mutex<SimConfig>>,
    _exporter: Arc<Exporter>,
    sim_task: tokio::task::JoinHandle<()>,
}

impl Drop for Scene {
    fn drop(&mut self) {
        self.sim_task.abort();
    }
}

async fn scene(prefix: &str, templates: Vec<Value>, prometheus: &str) -> Scene {
    let client = client().await;
    prepare(&client).await;
    let ns = TestNamespace::new(&client, prefix).await;
    for obj in [
        service("web-stable", "web"),
        service("web-canary", "web"),
        virtual_service(),
    ]
    .into_iter()
    .chain(templates)
    {
        apply_value(&client, Some(&ns.name), &obj)
            .await
            .expect("fixture");
    }
    let ctl = ControllerProcess::start_with(&ns.name, &["--prometheus-address", prometheus]);
    let exporter = Arc::new(Exporter::start(&ns.name).await);
    let sim = Arc::new(Mutex::new(SimConfig {
        namespace: ns.name.clone(),
        rollout: "web".into(),
        rps: 200.0,
        behaviours: BTreeMap::new(),
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
    Scene {
        client,
        ns,
        ctl,
        sim,
        _exporter: exporter,
        sim_task,
    }
}

impl Scene {
    fn rollouts(&self) -> Api<Rollout> {
        Api::namespaced(self.client.clone(), &self.ns.name)
    }

    async fn wait_phase(
        &self,
        name: &str,
        phase: RolloutPhase,
        stable: Option<&str>,
        timeout: Duration,
    ) -> Rollout {
        let api = self.rollouts();
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(ro) = api.get(name).await {
                let st = ro.status.clone().unwrap_or_default();
                if st.phase == Some(phase)
                    && stable.is_none_or(|s| st.stable_rs.as_deref() == Some(s))
                    && st.observed_generation == ro.metadata.generation
                {
                    return ro;
                }
                if Instant::now() > deadline {
                    panic!(
                        "{name} not {phase:?} within {timeout:?}: phase {:?} message {:?} step {:?}\n{}",
                        st.phase,
                        st.message,
                        st.current_step_index,
                        self.ctl.log_tail(30)
                    );
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn deploy(&self, manifest: &Value) {
        apply_value(&self.client, Some(&self.ns.name), manifest)
            .await
            .expect("apply rollout");
    }

    async fn runs(&self) -> Vec<AnalysisRun> {
        Api::<AnalysisRun>::namespaced(self.client.clone(), &self.ns.name)
            .list(&ListParams::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default()
    }

    async fn canary_weight(&self) -> Option<i64> {
        let gvk = GroupVersionKind::gvk("networking.istio.io", "v1", "VirtualService");
        let (ar, _) = kube::discovery::pinned_kind(&self.client, &gvk)
            .await
            .ok()?;
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), &self.ns.name, &ar);
        let vs = api.get("web").await.ok()?;
        vs.data["spec"]["http"][0]["route"]
            .as_array()?
            .iter()
            .find(|d| d["destination"]["host"] == "web-canary")?["weight"]
            .as_i64()
    }

    /// Polls the run until it completes; returns it and when the test first saw it completed.
    async fn wait_run_completed(&self, timeout: Duration) -> (AnalysisRun, Instant) {
        poll_until(
            "an AnalysisRun to complete",
            timeout,
            Duration::from_millis(20),
            || async {
                let run = self
                    .runs()
                    .await
                    .into_iter()
                    .find(|r| r.status.as_ref().is_some_and(|s| s.phase.is_completed()))?;
                Some((run, Instant::now()))
            },
        )
        .await
    }

    /// Given v1 Healthy, deploys v2 whose image behaves as `behaviour`.
    async fn update_to_v2(&self, templates: &[&str], behaviour: Behaviour) -> String {
        let v1 = rollout("web:1", templates, &self.ns.name);
        self.deploy(&v1).await;
        self.wait_phase(
            "web",
            RolloutPhase::Healthy,
            Some(&hash_of(&v1)),
            Duration::from_secs(60),
        )
        .await;
        if let Ok(mut c) = self.sim.lock() {
            c.behaviours.insert("web:2".into(), behaviour);
        }
        let v2 = rollout("web:2", templates, &self.ns.name);
        self.deploy(&v2).await;
        hash_of(&v2)
    }
}

#[tokio::test]
async fn a_healthy_canary_passes_success_rate_error_rate_and_p95_and_is_promoted() {
    let all = ["success-rate", "error-rate", "latency-p95"];
    let s = scene(
        "analysis-ok",
        all.iter().map(|t| template(t, json!({}))).collect(),
        &prometheus_url(),
    )
    .await;
    let h2 = s
        .update_to_v2(
            &all,
            Behaviour {
                error_rate: 0.0,
                latency: 0.02,
            },
        )
        .await;
    s.wait_phase(
        "web",
        RolloutPhase::Healthy,
        Some(&h2),
        Duration::from_secs(90),
    )
    .await;
    let runs = s.runs().await;
    assert_eq!(runs.len(), 1, "one step AnalysisRun");
    let st = runs[0].status.clone().expect("run status");
    assert_eq!(st.phase, AnalysisPhase::Successful);
    for name in all {
        let m = st
            .metric_result(name)
            .unwrap_or_else(|| panic!("metric {name} measured"));
        assert_eq!((m.count, m.successful), (4, 4), "{name}: {m:?}");
    }
}

/// Runs a failing canary and checks the rollback; returns the run.
async fn failing_canary(prefix: &str, template_name: &str, behaviour: Behaviour) -> AnalysisRun {
    let s = scene(
        prefix,
        vec![template(template_name, json!({}))],
        &prometheus_url(),
    )
    .await;
    let h2 = s.update_to_v2(&[template_name], behaviour).await;
    poll_until(
        "canary at 50 %",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || async { (s.canary_weight().await == Some(50)).then_some(()) },
    )
    .await;
    let (run, failed_seen) = s.wait_run_completed(Duration::from_secs(90)).await;
    let zero = poll_until(
        "canary weight 0 after the failed analysis",
        Duration::from_secs(10),
        Duration::from_millis(5),
        || async { (s.canary_weight().await == Some(0)).then(Instant::now) },
    )
    .await;
    println!(
        "{template_name}: run {} seen {:?} → canary weight 0 seen after {:?}",
        run.name_any(),
        run.status.as_ref().map(|s| s.phase),
        zero.saturating_duration_since(failed_seen)
    );
    let ro = s
        .wait_phase("web", RolloutPhase::Degraded, None, Duration::from_secs(30))
        .await;
    let st = ro.status.expect("status");
    assert_ne!(st.stable_rs.as_deref(), Some(h2.as_str()), "never promoted");
    let msg = st.message.unwrap_or_default();
    assert!(
        msg.contains(template_name),
        "the rollout says which metric failed: {msg}"
    );
    let cond = st
        .conditions
        .iter()
        .find(|c| c.type_ == "Progressing")
        .expect("Progressing");
    assert_eq!(cond.reason, "RolloutAborted");
    // The Event is recorded just after the status write: poll for it.
    support::wait_for_event(
        &s.client,
        &s.ns.name,
        "web",
        "an Event naming the failed metric",
        |r, n| r == "RolloutAborted" && n.contains(template_name),
    )
    .await;
    run
}

#[tokio::test]
async fn ten_percent_errors_fail_error_rate_after_failure_limit_plus_one_and_roll_back() {
    let run = failing_canary(
        "analysis-errors",
        "error-rate",
        Behaviour {
            error_rate: 0.1,
            latency: 0.02,
        },
    )
    .await;
    let st = run.status.expect("run status");
    assert_eq!(st.phase, AnalysisPhase::Failed);
    let m = st.metric_result("error-rate").expect("error-rate result");
    assert_eq!(
        m.failed, 4,
        "failureLimit 3 → Failed at the 4th failed measurement: {m:?}"
    );
    let last = m
        .measurements
        .last()
        .and_then(|x| x.value.clone())
        .unwrap_or_default();
    // The value is stored as text, e.g. "[0.0998…]": about 10 % errors.
    let measured: f64 = last
        .trim_matches(|c| c == '[' || c == ']')
        .parse()
        .unwrap_or(f64::NAN);
    assert!(
        (measured - 0.1).abs() < 0.02,
        "measured value recorded: {last}"
    );
}

#[tokio::test]
async fn a_p95_of_500ms_fails_a_200ms_limit_and_rolls_back() {
    let run = failing_canary(
        "analysis-latency",
        "latency-p95",
        Behaviour {
            error_rate: 0.0,
            latency: 0.5,
        },
    )
    .await;
    let st = run.status.expect("run status");
    assert_eq!(st.phase, AnalysisPhase::Failed);
    assert_eq!(st.metric_result("latency-p95").map(|m| m.failed), Some(4));
}

/// A TCP proxy to Prometheus that the test can cut, as if Prometheus went away.
async fn proxy_to(target: &str) -> (String, tokio::task::JoinHandle<()>) {
    let upstream = target.trim_start_matches("http://").to_string();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind proxy");
    let addr = listener.local_addr().expect("proxy addr");
    let task = tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let upstream = upstream.clone();
            tokio::spawn(async move {
                if let Ok(mut out) = tokio::net::TcpStream::connect(&upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                }
            });
        }
    });
    (format!("http://{addr}"), task)
}

#[tokio::test]
async fn prometheus_going_away_mid_analysis_errors_and_aborts_never_promotes() {
    let (proxy, proxy_task) = proxy_to(&prometheus_url()).await;
    let t = template(
        "success-rate",
        json!({"count": 30, "consecutiveErrorLimit": 1, "initialDelay": "2s"}),
    );
    let s = scene("analysis-promdown", vec![t], &proxy).await;
    let h2 = s
        .update_to_v2(&["success-rate"], Behaviour::default())
        .await;
    poll_until(
        "two successful measurements",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || async {
            let runs = s.runs().await;
            let ok = runs
                .first()?
                .status
                .as_ref()?
                .metric_result("success-rate")?
                .successful;
            (ok >= 2).then_some(())
        },
    )
    .await;
    proxy_task.abort();
    let (run, _) = s.wait_run_completed(Duration::from_secs(60)).await;
    let st = run.status.expect("run status");
    assert_eq!(st.phase, AnalysisPhase::Error, "{st:?}");
    let m = st.metric_result("success-rate").expect("result");
    assert!(m.consecutive_error >= 2, "{m:?}");
    let ro = s
        .wait_phase("web", RolloutPhase::Degraded, None, Duration::from_secs(30))
        .await;
    assert_ne!(
        ro.status.and_then(|s| s.stable_rs).as_deref(),
        Some(h2.as_str()),
        "never promoted"
    );
    assert_eq!(s.canary_weight().await, Some(0));
}

#[tokio::test]
async fn a_query_returning_no_series_is_an_error_never_a_success() {
    let mut t = template(
        "success-rate",
        json!({"consecutiveErrorLimit": 0, "initialDelay": "1s"}),
    );
    t["spec"]["metrics"][0]["provider"]["prometheus"]["query"] = json!(
        r#"sum(rate(http_requests_total{service="no-such-service-{{args.service-name}}"}[10s]))"#
    );
    let s = scene("analysis-nodata", vec![t], &prometheus_url()).await;
    let h2 = s
        .update_to_v2(&["success-rate"], Behaviour::default())
        .await;
    let (run, _) = s.wait_run_completed(Duration::from_secs(60)).await;
    let st = run.status.expect("run status");
    assert_eq!(st.phase, AnalysisPhase::Error);
    let m = st.metric_result("success-rate").expect("result");
    assert_eq!(m.successful, 0);
    let msg = m
        .measurements
        .last()
        .and_then(|x| x.message.clone())
        .unwrap_or_default();
    assert!(msg.contains("no data returned by the query"), "{msg}");
    let ro = s
        .wait_phase("web", RolloutPhase::Degraded, None, Duration::from_secs(30))
        .await;
    assert_ne!(
        ro.status.and_then(|s| s.stable_rs).as_deref(),
        Some(h2.as_str())
    );
}

/// Each broken analysis ends with a message naming its cause, and the rollout says why.
#[tokio::test]
async fn broken_analyses_end_with_their_cause_and_the_rollout_says_why() {
    let (client, ns, ctl) = controller_in(
        "analysis-broken",
        &["--prometheus-address", &prometheus_url()],
    )
    .await;
    let mut bad_query = template(
        "bad-query",
        json!({"consecutiveErrorLimit": 0, "initialDelay": "0s"}),
    );
    bad_query["spec"]["metrics"][0]["provider"]["prometheus"]["query"] =
        json!("sum(rate(http_requests_total[10s]");
    let mut bad_condition = template("bad-condition", json!({"initialDelay": "0s"}));
    bad_condition["spec"]["metrics"][0]["successCondition"] = json!("result[0] >= >= 0.95");
    let missing_arg = template("missing-arg", json!({"initialDelay": "0s"}));
    for t in [bad_query, bad_condition, missing_arg] {
        apply_value(&client, Some(&ns.name), &t)
            .await
            .expect("template");
    }
    // (rollout, template, what the rollout's message must name)
    let cases = [
        ("q", "bad-query", "bad-query"),
        ("c", "bad-condition", "result[0] >= >= 0.95"),
        ("a", "missing-arg", "args.service-name"),
        (
            "t",
            "no-such-template",
            "AnalysisTemplate 'no-such-template' not found",
        ),
        // A field path that does not resolve: never the template's default in its place.
        ("f", "missing-arg", "fieldPath 'status.nope'"),
    ];
    let api: Api<Rollout> = Api::namespaced(client.clone(), &ns.name);
    for (name, tpl, _) in cases {
        let args = match (name, tpl) {
            ("f", _) => json!([{"name": "service-name",
                                "valueFrom": {"fieldRef": {"fieldPath": "status.nope"}}}]),
            (_, "missing-arg") => json!([]),
            _ => json!([{"name": "service-name", "value": "x"}]),
        };
        let steps = json!([{"setWeight": 50},
                           {"analysis": {"templates": [{"templateName": tpl}], "args": args}}]);
        deploy_then_update(&client, &ns.name, name, 2, steps).await;
    }
    for (name, _, needle) in cases {
        let msg = poll_until(
            &format!("{name} Degraded naming its cause"),
            Duration::from_secs(60),
            Duration::from_millis(200),
            || {
                let api = api.clone();
                async move {
                    let st = api.get(name).await.ok()?.status?;
                    (st.phase == Some(RolloutPhase::Degraded))
                        .then(|| st.message.unwrap_or_default())
                }
            },
        )
        .await;
        println!("{name}: {msg}");
        assert!(
            msg.contains(needle),
            "rollout {name}: message {msg:?} should name {needle:?}\n{}",
            ctl.log_tail(20)
        );
    }
}

/// Waits until the AnalysisRun `name` in `ns` is completed; returns its status.
async fn finished_run(client: &Client, ns: &str, name: &str) -> aviary::api::AnalysisRunStatus {
    let api: Api<AnalysisRun> = Api::namespaced(client.clone(), ns);
    poll_until(
        &format!("AnalysisRun {name} to complete"),
        Duration::from_secs(60),
        Duration::from_millis(100),
        || {
            let api = api.clone();
            async move {
                let st = api.get(name).await.ok()?.status?;
                st.phase.is_completed().then_some(st)
            }
        },
    )
    .await
}

/// A metric that needs no traffic: Prometheus answers `vector(1)` at once.
fn always_one(name: &str) -> Value {
    json!({"name": name, "count": 2, "interval": "1s", "successCondition": "result[0] == 1",
           "provider": {"prometheus": {"query": "vector(1)"}}})
}

/// F24: an AnalysisRun created by hand (no Rollout, no `aviary.dev/rollout` label) stayed
/// Pending for ever: the run controller only watched labelled runs. Argo runs it; Aviary does
/// when told to (`--run-unowned-analysis`), and otherwise says why it does not.
#[tokio::test]
async fn an_analysis_run_created_by_hand_runs_to_completion() {
    let (client, ns, ctl) = controller_in(
        "analysis-standalone",
        &[
            "--prometheus-address",
            &prometheus_url(),
            "--run-unowned-analysis",
        ],
    )
    .await;
    let run = json!({
        "apiVersion": "aviary.dev/v1alpha1", "kind": "AnalysisRun", "metadata": {"name": "by-hand"},
        "spec": {"metrics": [always_one("one")]},
    });
    apply_value(&client, Some(&ns.name), &run)
        .await
        .expect("AnalysisRun");
    let status = finished_run(&client, &ns.name, "by-hand").await;
    assert_eq!(
        status.phase,
        AnalysisPhase::Successful,
        "{status:?}\n{}",
        ctl.log_tail(20)
    );
}

/// A6: a user who may create AnalysisRuns but not read Secrets cannot have the controller read
/// one for them and send it out. Unlabelled by its owner, the Secret is not used (the run ends
/// in Error saying so, and nothing is sent); labelled, it is never put in a URL's path; once the
/// owner labels it, the same run works — so the refusals are not vacuous.
#[tokio::test]
async fn a_secret_never_leaves_the_cluster_without_its_owner_s_consent() {
    use k8s_openapi::api::core::v1::Secret;
    let client = client().await;
    prepare(&client).await;
    let ns = TestNamespace::new(&client, "analysis-secrets").await;
    // The controller may read Secrets here (the chart's analysis.secretArgs); the tenant may not.
    let rules: Value = serde_yaml::from_str(
        &std::fs::read_to_string(
            support::repo_root().join("charts/aviary/files/rbac/analysis-secrets.yaml"),
        )
        .expect("rules file"),
    )
    .expect("rules YAML");
    let tenant_rules = json!([{"apiGroups": ["aviary.dev"], "resources": ["analysisruns"],
                               "verbs": ["create", "get", "list", "watch"]}]);
    for (name, user, rules) in [
        ("controller-secrets", "aviary-operator", rules),
        ("tenant", "tenant", tenant_rules),
    ] {
        let role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                          "metadata": {"name": name}, "rules": rules});
        let binding = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]});
        for obj in [role, binding] {
            apply_value(&client, Some(&ns.name), &obj)
                .await
                .expect("RBAC");
        }
    }
    let mut config = kube::Config::infer().await.expect("kubeconfig");
    config.auth_info.impersonate = Some("tenant".into());
    let tenant = Client::try_from(config).expect("tenant client");
    let secret_value = "s3cr3t-value-4711";
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"},
                        "stringData": {"token": secret_value}});
    apply_value(&client, Some(&ns.name), &secret)
        .await
        .expect("Secret");
    poll_until(
        "the tenant's RBAC to hold (runs yes, Secrets no)",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            let (tenant, ns) = (tenant.clone(), ns.name.clone());
            async move {
                let runs = Api::<AnalysisRun>::namespaced(tenant.clone(), &ns)
                    .list(&ListParams::default())
                    .await;
                let secret = Api::<Secret>::namespaced(tenant, &ns).get("db").await;
                let denied = matches!(secret, Err(kube::Error::Api(e)) if e.code == 403);
                (runs.is_ok() && denied).then_some(())
            }
        },
    )
    .await;

    let receiver = support::webhook::WebhookReceiver::start().await;
    receiver.serve_document(json!({"ok": 1}));
    let ctl = ControllerProcess::start_with(&ns.name, &["--run-unowned-analysis"]);
    let run = |name: &str, url: String| {
        json!({
            "apiVersion": "aviary.dev/v1alpha1", "kind": "AnalysisRun", "metadata": {"name": name},
            "spec": {
                "args": [{"name": "token", "valueFrom": {"secretKeyRef": {"name": "db", "key": "token"}}}],
                "metrics": [{"name": "probe", "successCondition": "result == 1",
                             "provider": {"web": {"url": url, "jsonPath": "{$.ok}",
                                                  "headers": [{"key": "X-Token", "value": "{{args.token}}"}]}}}],
            },
        })
    };
    let create = |obj: Value| {
        let api: Api<DynamicObject> = Api::namespaced_with(
            tenant.clone(),
            &ns.name,
            &kube::core::ApiResource::from_gvk(&GroupVersionKind::gvk(
                "aviary.dev",
                "v1alpha1",
                "AnalysisRun",
            )),
        );
        async move {
            let obj: DynamicObject = serde_json::from_value(obj).expect("run");
            api.create(&Default::default(), &obj)
                .await
                .expect("the tenant creates the run");
        }
    };

    // Unlabelled: refused, nothing sent.
    create(run("unlabelled", receiver.url("/probe"))).await;
    let st = finished_run(&client, &ns.name, "unlabelled").await;
    assert_eq!(st.phase, AnalysisPhase::Error, "{}", ctl.log_tail(20));
    let message = st.message.clone().unwrap_or_default();
    assert!(
        message.contains("is not labelled aviary.dev/analysis-secret"),
        "{message}"
    );
    assert!(
        receiver.get_requests().is_empty(),
        "{:?}",
        receiver.get_requests()
    );

    // The owner consents; a run that puts the Secret in the URL's path is still refused.
    let labelled = json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "db", "labels": {"aviary.dev/analysis-secret": "true"}},
        "stringData": {"token": secret_value}});
    apply_value(&client, Some(&ns.name), &labelled)
        .await
        .expect("label the Secret");
    create(run("in-path", receiver.url("/probe/{{args.token}}"))).await;
    let st = finished_run(&client, &ns.name, "in-path").await;
    assert_eq!(st.phase, AnalysisPhase::Error);
    let message = st.message.clone().unwrap_or_default();
    assert!(
        message.contains("cannot be placed in a URL's host or path"),
        "{message}"
    );
    assert!(
        receiver.get_requests().is_empty(),
        "{:?}",
        receiver.get_requests()
    );

    // Consented and in a header: it works, and the value stays out of the run's status.
    create(run("consented", receiver.url("/probe"))).await;
    let st = finished_run(&client, &ns.name, "consented").await;
    assert_eq!(
        st.phase,
        AnalysisPhase::Successful,
        "{st:?}\n{}",
        ctl.log_tail(20)
    );
    let sent = receiver.get_requests();
    assert!(
        sent.iter()
            .any(|r| r.contains(&format!("x-token: {secret_value}"))),
        "{sent:?}"
    );
    let status = serde_json::to_string(&st).expect("status");
    assert!(!status.contains(secret_value), "{status}");
}

/// A3: a status grown past the object size limit made every write fail and the run measured
/// about once a second for ever. Measurements of a vector of 300,000 values (0.6 MB each as
/// text, three of them past the API server's limit): the run completes, each value cut.
#[tokio::test]
async fn a_run_of_huge_measurements_completes_with_its_values_cut() {
    let client = client().await;
    prepare(&client).await;
    let ns = TestNamespace::new(&client, "analysis-huge").await;
    let receiver = support::webhook::WebhookReceiver::start().await;
    receiver.serve_document(json!({"values": vec![1; 300_000]}));
    let ctl = ControllerProcess::start_with(&ns.name, &["--run-unowned-analysis"]);
    let run = json!({
        "apiVersion": "aviary.dev/v1alpha1", "kind": "AnalysisRun", "metadata": {"name": "huge"},
        "spec": {"metrics": [{"name": "many", "count": 3, "interval": "1s",
                              "successCondition": "result[0] == 1",
                              "provider": {"web": {"url": receiver.url("/values"),
                                                   "jsonPath": "{$.values}"}}}]},
    });
    apply_value(&client, Some(&ns.name), &run)
        .await
        .expect("AnalysisRun");
    let status = finished_run(&client, &ns.name, "huge").await;
    assert_eq!(
        status.phase,
        AnalysisPhase::Successful,
        "{:?}\n{}",
        status.message,
        ctl.log_tail(20)
    );
    let m = status.metric_result("many").expect("the metric");
    assert_eq!(m.count, 3);
    assert!(
        m.measurements.iter().all(|x| x
            .value
            .as_deref()
            .is_some_and(|v| v.ends_with("… (truncated)"))),
        "each value cut"
    );
}

/// An HTTP answer: status, Location header, body.
type Answer = (u16, Option<String>, Vec<u8>);

/// A local server answering each request with `answer(path, own address)`. It counts the
/// requests it got.
async fn http_server(
    answer: fn(&str, std::net::SocketAddr) -> Answer,
) -> (std::net::SocketAddr, Arc<Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]).into_owned();
                let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                if let Ok(mut l) = log.lock() {
                    l.push(head.replace("\r\n", " | "));
                }
                let (status, location, body) = answer(&path, addr);
                let location = location
                    .map(|l| format!("location: {l}\r\n"))
                    .unwrap_or_default();
                let head = format!(
                    "HTTP/1.1 {status} X\r\n{location}content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(&body).await;
            });
        }
    });
    (addr, seen)
}

/// A7 and A2 through the controller: a web metric redirected to another origin is refused (the
/// API key never reaches it), and a response past 4 MiB is refused; both are Error measurements
/// saying why, and the runs end in Error (consecutiveErrorLimit 0).
#[tokio::test]
async fn a_redirect_elsewhere_and_an_oversized_answer_are_refused() {
    let client = client().await;
    prepare(&client).await;
    let ns = TestNamespace::new(&client, "analysis-bounded").await;
    let (elsewhere, elsewhere_seen) =
        http_server(|_, _| (200, None, br#"{"ok": 1}"#.to_vec())).await;
    static ELSEWHERE: std::sync::OnceLock<std::net::SocketAddr> = std::sync::OnceLock::new();
    let _ = ELSEWHERE.set(elsewhere);
    let (origin, _) = http_server(|path, _| match path {
        "/redirect" => (
            302,
            ELSEWHERE.get().map(|a| format!("http://{a}/stolen")),
            vec![],
        ),
        _ => {
            let mut body = br#"{"ok": 1, "pad": ""#.to_vec();
            body.extend(std::iter::repeat_n(b'x', 5 << 20));
            body.extend_from_slice(br#""}"#);
            (200, None, body)
        }
    })
    .await;
    let ctl = ControllerProcess::start_with(&ns.name, &["--run-unowned-analysis"]);
    for (name, path) in [("redirected", "/redirect"), ("oversized", "/big")] {
        let run = json!({
            "apiVersion": "aviary.dev/v1alpha1", "kind": "AnalysisRun", "metadata": {"name": name},
            "spec": {"metrics": [{"name": "m", "successCondition": "result == 1",
                "consecutiveErrorLimit": 0,
                "provider": {"web": {"url": format!("http://{origin}{path}"), "jsonPath": "{$.ok}",
                                     "headers": [{"key": "X-Api-Key", "value": "k3y"}]}}}]},
        });
        apply_value(&client, Some(&ns.name), &run)
            .await
            .expect("AnalysisRun");
    }
    let redirected = finished_run(&client, &ns.name, "redirected").await;
    let oversized = finished_run(&client, &ns.name, "oversized").await;
    let last_message = |st: &aviary::api::AnalysisRunStatus| {
        st.metric_result("m")
            .and_then(|r| r.measurements.last())
            .and_then(|m| m.message.clone())
            .unwrap_or_default()
    };
    assert_eq!(
        redirected.phase,
        AnalysisPhase::Error,
        "{}",
        ctl.log_tail(20)
    );
    assert!(
        last_message(&redirected).contains("redirect to another origin"),
        "{}",
        last_message(&redirected)
    );
    assert!(
        elsewhere_seen.lock().map(|s| s.is_empty()).unwrap_or(false),
        "the other origin was reached"
    );
    assert_eq!(oversized.phase, AnalysisPhase::Error);
    assert!(
        last_message(&oversized).contains("larger than 4 MiB"),
        "{}",
        last_message(&oversized)
    );
}

/// By default a run no Rollout owns is not run (the controller measures what its Rollouts ask
/// for, and lends its network position and rights to nobody else): it ends in Error saying how
/// to allow it.
#[tokio::test]
async fn an_analysis_run_no_rollout_owns_is_not_run_by_default() {
    let (client, ns, ctl) = controller_in(
        "analysis-unowned",
        &["--prometheus-address", &prometheus_url()],
    )
    .await;
    let run = json!({
        "apiVersion": "aviary.dev/v1alpha1", "kind": "AnalysisRun", "metadata": {"name": "by-hand"},
        "spec": {"metrics": [always_one("one")]},
    });
    apply_value(&client, Some(&ns.name), &run)
        .await
        .expect("AnalysisRun");
    let status = finished_run(&client, &ns.name, "by-hand").await;
    assert_eq!(status.phase, AnalysisPhase::Error, "{}", ctl.log_tail(20));
    let message = status.message.unwrap_or_default();
    assert!(message.contains("--run-unowned-analysis"), "{message}");
    assert!(status.metric_results.is_empty(), "nothing was measured");
}

/// F16: `spec.analysis.successfulRunHistoryLimit` was never read: every update left its run
/// behind (four of four kept with a limit of 1). Now the older finished runs are deleted.
#[tokio::test]
async fn finished_runs_beyond_the_history_limit_are_deleted() {
    let (client, ns, ctl) = controller_in(
        "analysis-history",
        &["--prometheus-address", &prometheus_url()],
    )
    .await;
    let template = json!({
        "apiVersion": "aviary.dev/v1alpha1", "kind": "AnalysisTemplate", "metadata": {"name": "ok"},
        "spec": {"metrics": [always_one("one")]},
    });
    apply_value(&client, Some(&ns.name), &template)
        .await
        .expect("template");
    let manifest = |image: &str| {
        json!({
            "apiVersion": "aviary.dev/v1alpha1", "kind": "Rollout", "metadata": {"name": "web"},
            "spec": {
                "replicas": 2,
                "analysis": {"successfulRunHistoryLimit": 1, "unsuccessfulRunHistoryLimit": 1},
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": image}]}},
                "strategy": {"canary": {"steps": [
                    {"setWeight": 50},
                    {"analysis": {"templates": [{"templateName": "ok"}]}}
                ]}}
            }
        })
    };
    let rollouts: Api<Rollout> = Api::namespaced(client.clone(), &ns.name);
    let runs: Api<AnalysisRun> = Api::namespaced(client.clone(), &ns.name);
    for image in ["web:1", "web:2", "web:3", "web:4", "web:5"] {
        let m = manifest(image);
        apply_value(&client, Some(&ns.name), &m)
            .await
            .expect("rollout");
        let hash = hash_of(&m);
        poll_until(
            &format!("{image} Healthy and stable"),
            Duration::from_secs(90),
            Duration::from_millis(100),
            || {
                let api = rollouts.clone();
                let hash = hash.clone();
                async move {
                    let ro = api.get("web").await.ok()?;
                    let st = ro.status?;
                    (st.phase == Some(RolloutPhase::Healthy)
                        && st.stable_rs.as_deref() == Some(hash.as_str())
                        && st.observed_generation == ro.metadata.generation)
                        .then_some(())
                }
            },
        )
        .await;
    }
    // Four updates each passed an analysis; one run is left: the newest.
    let newest = hash_of(&manifest("web:5"));
    let left = poll_until(
        "the older runs to be deleted",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            let runs = runs.clone();
            async move {
                let items = runs.list(&ListParams::default()).await.ok()?.items;
                (items.len() == 1).then_some(items)
            }
        },
    )
    .await;
    let labels = left[0].labels();
    assert_eq!(
        labels.get("rollouts-pod-template-hash"),
        Some(&newest),
        "{labels:?}\n{}",
        ctl.log_tail(20)
    );
    assert_eq!(
        left[0].status.as_ref().map(|s| s.phase),
        Some(AnalysisPhase::Successful)
    );
}

/// Issue 26: Argo's documented web conditions (`result == true`, `result.major == '1'`) pass
/// through the controller: a web value keeps its JSON type. A boolean is stored as Argo stores
/// it; an object is described, never quoted (docs/security.md).
#[tokio::test]
async fn web_values_keep_their_json_type_through_the_controller() {
    let client = client().await;
    prepare(&client).await;
    let ns = TestNamespace::new(&client, "analysis-web-json").await;
    let (addr, _) = http_server(|path, _| match path {
        "/healthz" => (200, None, b"OK".to_vec()),
        _ => (
            200,
            None,
            br#"{"ok": true, "version": {"major": "1", "minor": "30"}}"#.to_vec(),
        ),
    })
    .await;
    let ctl = ControllerProcess::start_with(&ns.name, &["--run-unowned-analysis"]);
    let metric = |name: &str, path: &str, json_path: Option<&str>, condition: &str| {
        let mut web = json!({"url": format!("http://{addr}{path}")});
        if let Some(p) = json_path {
            web["jsonPath"] = json!(p);
        }
        json!({"name": name, "successCondition": condition, "provider": {"web": web}})
    };
    let run = json!({
        "apiVersion": "aviary.dev/v1alpha1", "kind": "AnalysisRun", "metadata": {"name": "typed"},
        "spec": {"metrics": [
            metric("ok", "/status", Some("{$.ok}"), "result == true"),
            metric("major", "/status", Some("{$.version}"), "result.major == '1'"),
            metric("text", "/healthz", None, "result == 'OK'"),
        ]},
    });
    apply_value(&client, Some(&ns.name), &run)
        .await
        .expect("AnalysisRun");
    let status = finished_run(&client, &ns.name, "typed").await;
    assert_eq!(
        status.phase,
        AnalysisPhase::Successful,
        "{status:?}\n{}",
        ctl.log_tail(20)
    );
    let value = |metric: &str| {
        status
            .metric_result(metric)
            .and_then(|r| r.measurements.last())
            .and_then(|m| m.value.clone())
            .unwrap_or_default()
    };
    assert_eq!(value("ok"), "true");
    assert!(
        value("major").starts_with("(an object; not shown"),
        "{}",
        value("major")
    );
    assert!(
        value("text").starts_with("(a string; not shown"),
        "{}",
        value("text")
    );
}

/// Issue 26: `{{args.*}}` in interval, initialDelay, count and the limits, as Argo's e2e
/// templates write them, resolve in the run; a value that does not fit once resolved ends the
/// run in Error naming the field (Argo reads `count: "three"` as 0 without a word).
#[tokio::test]
async fn templated_intervals_and_counts_resolve_in_the_run() {
    let (client, ns, ctl) = controller_in(
        "analysis-templated",
        &[
            "--prometheus-address",
            &prometheus_url(),
            "--run-unowned-analysis",
        ],
    )
    .await;
    let run = |name: &str, count: &str| {
        json!({
            "apiVersion": "aviary.dev/v1alpha1", "kind": "AnalysisRun", "metadata": {"name": name},
            "spec": {
                "args": [{"name": "interval", "value": "1s"}, {"name": "count", "value": count},
                         {"name": "delay", "value": "1"}],
                "metrics": [{"name": "one", "interval": "{{args.interval}}",
                    "initialDelay": "{{args.delay}}s", "count": "{{args.count}}",
                    "failureLimit": "{{args.count}}", "successCondition": "result[0] == 1",
                    "provider": {"prometheus": {"query": "vector(1)"}}}]},
        })
    };
    for (name, count) in [("resolved", "3"), ("unfit", "three")] {
        apply_value(&client, Some(&ns.name), &run(name, count))
            .await
            .expect("AnalysisRun");
    }
    let resolved = finished_run(&client, &ns.name, "resolved").await;
    assert_eq!(
        resolved.phase,
        AnalysisPhase::Successful,
        "{resolved:?}\n{}",
        ctl.log_tail(20)
    );
    let result = resolved.metric_result("one").cloned().unwrap_or_default();
    assert_eq!((result.count, result.successful), (3, 3), "{result:?}");
    let unfit = finished_run(&client, &ns.name, "unfit").await;
    assert_eq!(unfit.phase, AnalysisPhase::Error, "{unfit:?}");
    let message = unfit.message.unwrap_or_default();
    assert!(
        message.contains("count \"three\" is not an integer"),
        "{message}"
    );
}

/// Issue 26: an AnalysisTemplate's `templates` (Argo's nested references) are flattened into
/// the run, depth first; a cycle and a metric defined twice degrade the Rollout naming them.
/// A step's `analysisRunMetadata` labels and annotates its run; one the API server refuses
/// degrades the Rollout quoting it.
#[tokio::test]
async fn nested_templates_are_flattened_and_a_cycle_is_named() {
    let (client, ns, ctl) = controller_in(
        "analysis-nested",
        &["--prometheus-address", &prometheus_url()],
    )
    .await;
    let tpl = |name: &str, metrics: &[&str], refs: &[&str]| {
        let mut spec =
            json!({"metrics": metrics.iter().map(|m| always_one(m)).collect::<Vec<_>>()});
        if !refs.is_empty() {
            spec["templates"] = refs.iter().map(|r| json!({"templateName": r})).collect();
        }
        json!({"apiVersion": "aviary.dev/v1alpha1", "kind": "AnalysisTemplate",
               "metadata": {"name": name}, "spec": spec})
    };
    for t in [
        tpl("outer", &["outer-one"], &["middle"]),
        tpl("middle", &[], &["inner"]),
        tpl("inner", &["inner-one"], &[]),
        tpl("loop-a", &["a"], &["loop-b"]),
        tpl("loop-b", &["b"], &["loop-a"]),
        tpl("twice", &["inner-one"], &["inner"]),
    ] {
        apply_value(&client, Some(&ns.name), &t)
            .await
            .expect("template");
    }
    let api: Api<Rollout> = Api::namespaced(client.clone(), &ns.name);
    // (rollout, template, the step analysis' analysisRunMetadata)
    let cases = [
        (
            "n",
            "outer",
            json!({"labels": {"team": "payments", "aviary.dev/rollout": "someone-else"},
                   "annotations": {"runbook": "https://example.com/rb"}}),
        ),
        ("l", "loop-a", json!({})),
        ("d", "twice", json!({})),
        ("m", "inner", json!({"labels": {"not a label!": "x"}})),
    ];
    for (name, tpl, metadata) in &cases {
        let steps = json!([{"analysis": {"templates": [{"templateName": tpl}],
                                          "analysisRunMetadata": metadata}}]);
        deploy_then_update(&client, &ns.name, name, 1, steps).await;
    }
    // The nested one runs both levels' metrics and completes.
    ended(&api, "n", RolloutPhase::Healthy).await;
    let runs: Api<AnalysisRun> = Api::namespaced(client.clone(), &ns.name);
    let run = runs
        .list(&Default::default())
        .await
        .expect("runs")
        .items
        .into_iter()
        .find(|r| {
            r.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("aviary.dev/rollout"))
                .map(String::as_str)
                == Some("n")
        })
        .expect("the nested rollout's run");
    let mut metrics: Vec<_> = run.spec.metrics.iter().map(|m| m.name.as_str()).collect();
    metrics.sort_unstable();
    assert_eq!(metrics, ["inner-one", "outer-one"], "{}", ctl.log_tail(20));
    // analysisRunMetadata: added, except over Aviary's own label (found by that label above).
    assert_eq!(
        run.labels().get("team").map(String::as_str),
        Some("payments")
    );
    assert_eq!(
        run.annotations().get("runbook").map(String::as_str),
        Some("https://example.com/rb")
    );
    // A label the API server refuses: the Rollout says so, quoting it.
    let refused = ended(&api, "m", RolloutPhase::Degraded).await;
    assert!(
        refused.contains("the API server refused AnalysisRun")
            && refused.contains("analysisRunMetadata"),
        "{refused}"
    );
    let cycle = ended(&api, "l", RolloutPhase::Degraded).await;
    assert!(
        cycle.contains("AnalysisTemplate 'loop-a' references itself (AnalysisTemplate 'loop-a' -> AnalysisTemplate 'loop-b' -> AnalysisTemplate 'loop-a')"),
        "{cycle}"
    );
    let twice = ended(&api, "d", RolloutPhase::Degraded).await;
    assert!(
        twice.contains("metric 'inner-one' is defined by both AnalysisTemplate 'twice' and AnalysisTemplate 'inner'"),
        "{twice}"
    );
}

/// Waits until Rollout `name` is in `phase`; returns its message.
async fn ended(api: &Api<Rollout>, name: &str, phase: RolloutPhase) -> String {
    poll_until(
        &format!("{name} {phase:?}"),
        Duration::from_secs(60),
        Duration::from_millis(200),
        || {
            let api = api.clone();
            async move {
                let st = api.get(name).await.ok()?.status?;
                (st.phase == Some(phase)).then(|| st.message.unwrap_or_default())
            }
        },
    )
    .await
}

/// Issue 26: a web metric that POSTs a JSON body with an OAuth2 token (client credentials),
/// through the controller: the token is fetched, then sent as a bearer on the POST.
#[tokio::test]
async fn a_web_metric_posts_json_with_an_oauth2_token() {
    let client = client().await;
    prepare(&client).await;
    let ns = TestNamespace::new(&client, "analysis-web-post").await;
    let (addr, seen) = http_server(|path, _| match path {
        "/token" => (
            200,
            None,
            br#"{"access_token": "t0ken", "token_type": "Bearer"}"#.to_vec(),
        ),
        _ => (200, None, br#"{"ok": true}"#.to_vec()),
    })
    .await;
    let ctl = ControllerProcess::start_with(&ns.name, &["--run-unowned-analysis"]);
    let run = json!({
        "apiVersion": "aviary.dev/v1alpha1", "kind": "AnalysisRun", "metadata": {"name": "posted"},
        "spec": {"metrics": [{"name": "m", "successCondition": "result.ok == true",
            "provider": {"web": {"url": format!("http://{addr}/query"), "method": "POST",
                "jsonBody": {"query": "up", "window": 5}, "jsonPath": "{$}",
                "authentication": {"oauth2": {"tokenUrl": format!("http://{addr}/token"),
                    "clientId": "aviary", "clientSecret": "s3cret"}}}}}]},
    });
    apply_value(&client, Some(&ns.name), &run)
        .await
        .expect("AnalysisRun");
    let status = finished_run(&client, &ns.name, "posted").await;
    assert_eq!(
        status.phase,
        AnalysisPhase::Successful,
        "{status:?}\n{}",
        ctl.log_tail(20)
    );
    let requests = seen.lock().map(|s| s.clone()).unwrap_or_default();
    let lower: Vec<String> = requests.iter().map(|r| r.to_ascii_lowercase()).collect();
    assert!(lower[0].starts_with("post /token"), "{requests:?}");
    let query = lower
        .iter()
        .find(|r| r.starts_with("post /query"))
        .expect("the POST");
    assert!(
        query.contains("authorization: bearer t0ken")
            && query.contains("content-type: application/json"),
        "{query}"
    );
}

/// Issue 26: `rangeQuery` against the real Prometheus: `vector(1)` over the last minute, 15 s
/// apart, is a matrix whose samples are all 1; the run counts its measurement Successful.
#[tokio::test]
async fn a_range_query_measures_every_sample_of_the_range() {
    let (client, ns, ctl) = controller_in(
        "analysis-range",
        &[
            "--prometheus-address",
            &prometheus_url(),
            "--run-unowned-analysis",
        ],
    )
    .await;
    let run = json!({
        "apiVersion": "aviary.dev/v1alpha1", "kind": "AnalysisRun", "metadata": {"name": "ranged"},
        "spec": {"args": [{"name": "lookback", "value": "1m"}],
            "metrics": [{"name": "r",
                "successCondition": "size(result) == 5 && result.all(x, x == 1)",
                "provider": {"prometheus": {"query": "vector(1)",
                    "rangeQuery": {"start": "now() - duration(\"{{args.lookback}}\")",
                                   "end": "now()", "step": "15s"}}}}]},
    });
    apply_value(&client, Some(&ns.name), &run)
        .await
        .expect("AnalysisRun");
    let status = finished_run(&client, &ns.name, "ranged").await;
    assert_eq!(
        status.phase,
        AnalysisPhase::Successful,
        "{status:?}\n{}",
        ctl.log_tail(20)
    );
    let value = status
        .metric_result("r")
        .and_then(|r| r.measurements.last())
        .and_then(|m| m.value.clone())
        .unwrap_or_default();
    assert_eq!(value, "[1,1,1,1,1]");
}

/// Issue 26: the Job provider on the local cluster (KWOK completes or fails the pods): a Job
/// per measurement, owned by the run; Complete is Successful, Failed is Failed; a Rollout's
/// step with a job template goes Healthy; terminating a run whose Job still runs deletes it.
#[tokio::test]
async fn job_metrics_run_a_job_per_measurement() {
    use k8s_openapi::api::batch::v1::Job;
    let (client, ns, ctl) = controller_in(
        "analysis-job",
        &["--run-unowned-analysis", "--allow-job-metrics"],
    )
    .await;
    // labels: pod labels; node_selector: one no node has keeps the pod (and its Job) pending.
    let job = |labels: Value, node_selector: Value| {
        json!({"spec": {"backoffLimit": 0, "template": {
            "metadata": {"labels": labels},
            "spec": {"restartPolicy": "Never", "nodeSelector": node_selector,
                     "containers": [{"name": "smoke", "image": "smoke:{{args.version}}"}]}}}})
    };
    let run = |name: &str, job: Value| {
        json!({"apiVersion": "aviary.dev/v1alpha1", "kind": "AnalysisRun", "metadata": {"name": name},
               "spec": {"args": [{"name": "version", "value": "1.2"}],
                        "metrics": [{"name": "smoke", "provider": {"job": job}}]}})
    };
    let failing = json!({"pod-container-running-failed.stage.kwok.x-k8s.io": "true"});
    for (name, job) in [
        ("passes", job(json!({}), json!({}))),
        ("fails", job(failing, json!({}))),
        (
            "stuck",
            job(json!({}), json!({"aviary-test/no-such-node": "x"})),
        ),
    ] {
        apply_value(&client, Some(&ns.name), &run(name, job))
            .await
            .expect("AnalysisRun");
    }
    let passes = finished_run(&client, &ns.name, "passes").await;
    assert_eq!(
        passes.phase,
        AnalysisPhase::Successful,
        "{passes:?}\n{}",
        ctl.log_tail(20)
    );
    let jobs: Api<Job> = Api::namespaced(client.clone(), &ns.name);
    let m = passes
        .metric_result("smoke")
        .and_then(|r| r.measurements.last().cloned())
        .expect("a measurement");
    let job_name = m.metadata.get("job-name").cloned().unwrap_or_default();
    let created = jobs.get(&job_name).await.expect("the Job");
    let image = created
        .spec
        .and_then(|s| s.template.spec)
        .and_then(|s| s.containers.first().and_then(|c| c.image.clone()));
    assert_eq!(
        image.as_deref(),
        Some("smoke:1.2"),
        "args are substituted in the Job"
    );
    assert_eq!(
        created
            .metadata
            .owner_references
            .unwrap_or_default()
            .first()
            .map(|o| o.kind.as_str()),
        Some("AnalysisRun")
    );
    let fails = finished_run(&client, &ns.name, "fails").await;
    assert_eq!(fails.phase, AnalysisPhase::Failed, "{fails:?}");
    let message = fails
        .metric_result("smoke")
        .and_then(|r| r.measurements.last())
        .and_then(|m| m.message.clone())
        .unwrap_or_default();
    assert!(message.contains("failed"), "{message}");
    // The stuck one runs until terminated; then its Job goes.
    let runs: Api<AnalysisRun> = Api::namespaced(client.clone(), &ns.name);
    let stuck_job = poll_until(
        "the stuck run's Job",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            let runs = runs.clone();
            async move {
                let st = runs.get("stuck").await.ok()?.status?;
                st.metric_result("smoke")?
                    .measurements
                    .last()?
                    .metadata
                    .get("job-name")
                    .cloned()
            }
        },
    )
    .await;
    runs.patch(
        "stuck",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(json!({"spec": {"terminate": true}})),
    )
    .await
    .expect("terminate");
    let stuck = finished_run(&client, &ns.name, "stuck").await;
    assert_eq!(stuck.phase, AnalysisPhase::Successful, "{stuck:?}");
    poll_until(
        "the terminated run's Job deleted",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            let jobs = jobs.clone();
            let name = stuck_job.clone();
            async move {
                match jobs.get_opt(&name).await {
                    Ok(None) => Some(()),
                    Ok(Some(j)) => j.metadata.deletion_timestamp.map(|_| ()),
                    Err(_) => None,
                }
            }
        },
    )
    .await;
}

/// Rollout `name` (`replicas`, canary `steps`) applied at `app:1` until Healthy, then updated
/// to `app:2`.
async fn deploy_then_update(client: &Client, ns: &str, name: &str, replicas: i32, steps: Value) {
    let api: Api<Rollout> = Api::namespaced(client.clone(), ns);
    for image in ["app:1", "app:2"] {
        let ro = json!({
            "apiVersion": "aviary.dev/v1alpha1", "kind": "Rollout", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "c", "image": image}]}},
                     "strategy": {"canary": {"steps": steps}}}
        });
        apply_value(client, Some(ns), &ro).await.expect("rollout");
        if image == "app:1" {
            ended(&api, name, RolloutPhase::Healthy).await;
        }
    }
}

/// A fresh namespace named from `prefix`, with the CRDs and RBAC in place, and a controller
/// started for it with `flags`.
async fn controller_in(prefix: &str, flags: &[&str]) -> (Client, TestNamespace, ControllerProcess) {
    let client = client().await;
    prepare(&client).await;
    let ns = TestNamespace::new(&client, prefix).await;
    let ctl = ControllerProcess::start_with(&ns.name, flags);
    (client, ns, ctl)
}
