//! Tests over the API as a whole: the examples and the all-fields manifests round-trip through the Rust types, the committed
//! CRDs match the types, and every unsupported field has the rule that rejects it.

use std::path::Path;

use serde_json::Value;

use super::*;

const EXAMPLES: &[(&str, &str)] = &[
    (
        "analysis-templates.yaml",
        include_str!("../../examples/analysis-templates.yaml"),
    ),
    (
        "canary-istio.yaml",
        include_str!("../../examples/canary-istio.yaml"),
    ),
    (
        "canary-nginx.yaml",
        include_str!("../../examples/canary-nginx.yaml"),
    ),
    (
        "blue-green.yaml",
        include_str!("../../examples/blue-green.yaml"),
    ),
    (
        "tests/data/valid/rollout-canary-all-fields.yaml",
        include_str!("../../tests/data/valid/rollout-canary-all-fields.yaml"),
    ),
    (
        "tests/data/valid/rollout-workload-ref.yaml",
        include_str!("../../tests/data/valid/rollout-workload-ref.yaml"),
    ),
    (
        "examples/workload-ref.yaml",
        include_str!("../../examples/workload-ref.yaml"),
    ),
    (
        "tests/data/valid/analysis-all-fields.yaml",
        include_str!("../../tests/data/valid/analysis-all-fields.yaml"),
    ),
];

/// The YAML documents of a multi-document file, as JSON values.
fn documents(yaml: &str) -> Vec<Value> {
    use serde::Deserialize;
    serde_yaml::Deserializer::from_str(yaml)
        .map(|d| Value::deserialize(d).expect("valid YAML"))
        .filter(|v| !v.is_null())
        .collect()
}

/// Deserialises `doc` as `T` and serialises it back.
fn round_trip<T: serde::de::DeserializeOwned + serde::Serialize>(doc: &Value) -> Value {
    let typed: T = serde_json::from_value(doc.clone()).expect("deserialises");
    serde_json::to_value(&typed).expect("serialises")
}

#[test]
fn manifests_round_trip_without_loss() {
    let mut seen = std::collections::BTreeMap::<String, usize>::new();
    for (file, yaml) in EXAMPLES {
        for doc in documents(yaml) {
            if doc["apiVersion"] != API_VERSION {
                continue;
            }
            let kind = doc["kind"].as_str().unwrap_or_default().to_owned();
            let back = match kind.as_str() {
                "Rollout" => round_trip::<Rollout>(&doc),
                "AnalysisTemplate" => round_trip::<AnalysisTemplate>(&doc),
                "ClusterAnalysisTemplate" => round_trip::<ClusterAnalysisTemplate>(&doc),
                "AnalysisRun" => round_trip::<AnalysisRun>(&doc),
                other => panic!("{file}: unexpected kind {other}"),
            };
            assert_eq!(
                back, doc,
                "{file}: {kind} {} changed",
                doc["metadata"]["name"]
            );
            *seen.entry(kind).or_default() += 1;
        }
    }
    assert_eq!(seen.get("Rollout"), Some(&10), "{seen:?}");
    assert_eq!(seen.get("AnalysisTemplate"), Some(&4), "{seen:?}");
    assert_eq!(seen.get("ClusterAnalysisTemplate"), Some(&1), "{seen:?}");
    assert_eq!(seen.get("AnalysisRun"), Some(&1), "{seen:?}");
}

#[test]
fn examples_say_what_the_issue_asks() {
    let docs: Vec<Value> = EXAMPLES.iter().flat_map(|(_, y)| documents(y)).collect();
    let rollout = |name: &str| -> Rollout {
        let doc = docs
            .iter()
            .find(|d| d["kind"] == "Rollout" && d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no Rollout {name}"));
        serde_json::from_value(doc.clone()).unwrap()
    };
    let steps = |r: &Rollout| {
        r.steps()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
    };

    let bff = rollout("bff");
    assert_eq!(
        steps(&bff),
        [
            "setWeight: 10",
            "pause: 2m",
            "setWeight: 20",
            "pause: 2m",
            "setWeight: 50",
            "pause: 5m",
            "setWeight: 100"
        ]
    );
    let canary = bff.spec.canary().unwrap();
    assert!(canary.traffic_routing.as_ref().unwrap().istio.is_some());
    let bg = canary.analysis.as_ref().unwrap();
    assert_eq!(bg.templates[0].template_name, "success-rate");
    assert_eq!(
        bff.steps()[1]
            .pause
            .as_ref()
            .unwrap()
            .duration
            .as_ref()
            .unwrap()
            .as_secs(),
        120
    );

    let phoenix = rollout("phoenix-api");
    assert_eq!(
        steps(&phoenix),
        [
            "setWeight: 20",
            "pause: 5m",
            "analysis",
            "setWeight: 40",
            "pause: 5m",
            "setWeight: 60",
            "pause: 5m",
            "setWeight: 80",
            "pause: 5m",
            "setWeight: 100"
        ]
    );
    let nginx = phoenix
        .spec
        .canary()
        .unwrap()
        .traffic_routing
        .clone()
        .unwrap()
        .nginx
        .unwrap();
    assert_eq!(nginx.stable_ingresses(), ["phoenix-api-ingress"]);

    let bluegreen = rollout("bff-bluegreen");
    let strategy = bluegreen.spec.blue_green().unwrap();
    assert_eq!(strategy.active_service, "bff-active");
    assert!(!strategy.auto_promotion_enabled());

    for (name, condition, needle) in [
        ("success-rate", "result[0] >= 0.95", "status=~\"2..\""),
        ("error-rate", "result[0] <= 0.05", "status=~\"5..\""),
        (
            "latency-p95",
            "result[0] <= 0.2",
            "histogram_quantile(0.95,",
        ),
    ] {
        let doc = docs
            .iter()
            .find(|d| d["kind"] == "AnalysisTemplate" && d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no AnalysisTemplate {name}"));
        let t: AnalysisTemplate = serde_json::from_value(doc.clone()).unwrap();
        assert_eq!(t.spec.args()[0].name, "service-name");
        let m = &t.spec.metrics[0];
        assert_eq!(m.success_condition.as_deref(), Some(condition));
        assert_eq!(m.failure_limit, Some(IntOrArg::Int(3)));
        assert_eq!(
            m.interval
                .as_ref()
                .and_then(|d| d.duration())
                .map(Duration::as_secs),
            Some(60)
        );
        let query = &m.provider.prometheus.as_ref().unwrap().query;
        assert!(
            query.contains(needle) && query.contains("{{args.service-name}}"),
            "{query}"
        );
    }
}

#[test]
fn committed_crds_match_the_types() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
    for (name, yaml) in crd_files().unwrap() {
        let on_disk = std::fs::read_to_string(dir.join(name)).unwrap_or_default();
        assert!(
            on_disk == yaml,
            "crds/{name} is out of date: run `cargo run --bin crdgen -- --out crds`"
        );
    }
}

/// Every CEL rule of every CRD compiles (with the CEL crate `kubectl aviary lint` uses; the API
/// server would refuse the CRD otherwise), every 32-bit integer has its type's bounds, and no
/// other number does (found by review: resource quantities were bounded too).
#[test]
fn every_rule_compiles_and_every_int32_is_bounded() {
    fn visit(v: &Value, path: &str, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for r in m
                    .get("x-kubernetes-validations")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let rule = r.get("rule").and_then(Value::as_str).unwrap_or_default();
                    if let Err(e) = cel::Program::compile(rule) {
                        out.push(format!("{path}: {rule}: {e}"));
                    }
                }
                let bound = |k: &str| m.get(k).and_then(Value::as_f64);
                if m.get("format").and_then(Value::as_str) == Some("int32")
                    && !(bound("maximum").is_some_and(|x| x <= f64::from(i32::MAX))
                        && bound("minimum").is_some_and(|x| x >= f64::from(i32::MIN)))
                {
                    out.push(format!("{path}: int32 without its bounds"));
                }
                // Only IntOrString ports are int32; a quantity (`memory: 4294967296`) is not.
                if m.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true))
                    && m.contains_key("maximum")
                    && !path.ends_with(".port")
                {
                    out.push(format!("{path}: an int-or-string bounded as an int32"));
                }
                for (k, c) in m {
                    visit(c, &format!("{path}.{k}"), out);
                }
            }
            Value::Array(a) => a.iter().for_each(|c| visit(c, path, out)),
            _ => {}
        }
    }
    let mut problems = vec![];
    for (kind, _) in KINDS {
        let crd = serde_json::to_value(crd_for(kind).unwrap()).unwrap();
        visit(&crd, kind, &mut problems);
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

/// Walks a schema; calls `f(parent, property name, property schema)` for every property.
fn walk(schema: &Value, f: &mut dyn FnMut(&Value, &str, &Value)) {
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (name, prop) in props {
            f(schema, name, prop);
            walk(prop, f);
        }
    }
    if let Some(items) = schema.get("items") {
        walk(items, f);
    }
    if let Some(additional) = schema.get("additionalProperties") {
        walk(additional, f);
    }
}

fn schema_of(crd: &Crd) -> Value {
    serde_json::to_value(crd).unwrap()["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

#[test]
fn every_unsupported_field_is_rejected_by_name() {
    let mut count = 0;
    for crd in crds() {
        walk(&schema_of(&crd), &mut |parent, name, prop| {
            let described = prop["description"].as_str().unwrap_or_default();
            if !described.starts_with("Not supported by Aviary") {
                return;
            }
            count += 1;
            let rules = parent["x-kubernetes-validations"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let rule = rules
                .iter()
                .find(|r| r["rule"] == format!("!has(self.{name})"))
                .unwrap_or_else(|| panic!("{}: no rule rejects {name}", crd.spec.names.kind));
            assert!(
                rule["message"]
                    .as_str()
                    .unwrap()
                    .contains("not supported by Aviary")
            );
            assert_eq!(rule["fieldPath"], format!(".{name}"));
        });
    }
    assert!(count >= 40, "only {count} unsupported fields found");
}

#[test]
fn every_field_has_a_type_for_a_structural_schema() {
    for crd in crds() {
        walk(&schema_of(&crd), &mut |_, name, prop| {
            let ok = prop.get("type").is_some()
                || prop.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true))
                || prop.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
            assert!(ok, "{}: property {name} has no type", crd.spec.names.kind);
        });
    }
}

#[test]
fn rollout_crd_has_the_subresources_and_columns() {
    let crd = rollout_crd();
    assert_eq!(
        crd.spec.names.short_names.as_deref(),
        Some(&["ro".to_owned()][..])
    );
    let v = &crd.spec.versions[0];
    let sub = v.subresources.as_ref().unwrap();
    assert!(sub.status.is_some());
    let scale = sub.scale.as_ref().unwrap();
    assert_eq!(scale.spec_replicas_path, ".spec.replicas");
    assert_eq!(
        scale.label_selector_path.as_deref(),
        Some(".status.selector")
    );
    let columns: Vec<&str> = v
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(
        columns,
        [
            "Desired",
            "Current",
            "Up-to-date",
            "Available",
            "Step",
            "Weight",
            "Phase",
            "Age"
        ]
    );
    let run = AnalysisRun::crd_columns();
    assert_eq!(run, ["Phase", "Age"]);
}

impl AnalysisRun {
    fn crd_columns() -> Vec<String> {
        use kube::CustomResourceExt;
        Self::crd().spec.versions[0]
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.clone())
            .collect()
    }
}

#[test]
fn status_serialises_with_argo_names() {
    let status = RolloutStatus {
        phase: Some(RolloutPhase::Paused),
        stable_rs: Some("abc".into()),
        current_step_index: Some(1),
        pause_conditions: vec![PauseCondition {
            reason: PauseReason::CanaryPauseStep,
            start_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ),
        }],
        canary: Some(CanaryStatus {
            weights: Some(TrafficWeights {
                canary: WeightDestination {
                    weight: 10,
                    service_name: Some("c".into()),
                    pod_template_hash: Some("new".into()),
                },
                stable: WeightDestination {
                    weight: 90,
                    ..Default::default()
                },
                verified: None,
            }),
            ..Default::default()
        }),
        blue_green: Some(BlueGreenStatus {
            active_selector: Some("abc".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let v = serde_json::to_value(&status).unwrap();
    assert_eq!(v["phase"], "Paused");
    assert_eq!(v["stableRS"], "abc");
    assert_eq!(v["currentStepIndex"], 1);
    assert_eq!(v["replicas"], 0, "counters are always written");
    assert_eq!(v["pauseConditions"][0]["reason"], "CanaryPauseStep");
    assert_eq!(v["canary"]["weights"]["canary"]["weight"], 10);
    assert_eq!(v["blueGreen"]["activeSelector"], "abc");
    let back: RolloutStatus = serde_json::from_value(v).unwrap();
    assert_eq!(back, status);

    let run = AnalysisRunStatus {
        phase: AnalysisPhase::Failed,
        metric_results: vec![MetricResult {
            consecutive_error: 2,
            measurements: vec![Measurement {
                phase: AnalysisPhase::Failed,
                value: Some("[0.5]".into()),
                ..Default::default()
            }],
            ..MetricResult::new("success-rate")
        }],
        run_summary: Some(RunSummary {
            count: 1,
            failed: 1,
            ..Default::default()
        }),
        ..Default::default()
    };
    let v = serde_json::to_value(&run).unwrap();
    assert_eq!(v["phase"], "Failed");
    assert_eq!(v["metricResults"][0]["consecutiveError"], 2);
    assert_eq!(v["metricResults"][0]["measurements"][0]["value"], "[0.5]");
    assert_eq!(v["runSummary"]["failed"], 1);
    assert_eq!(serde_json::from_value::<AnalysisRunStatus>(v).unwrap(), run);
}

#[test]
fn analysis_phase_order_picks_the_worst() {
    use AnalysisPhase::*;
    let all = [Successful, Running, Pending, Inconclusive, Error, Failed];
    for (i, a) in all.iter().enumerate() {
        for b in &all[i..] {
            assert_eq!(a.worst(*b), *b);
            assert_eq!(b.worst(*a), *b);
        }
    }
    assert!(Failed.is_completed() && !Running.is_completed());
}

#[test]
fn step_actions() {
    let s = CanaryStep::set_weight(20);
    assert_eq!(s.action(), Some(StepAction::SetWeight(20)));
    let p = CanaryStep::pause(None);
    assert!(matches!(p.action(), Some(StepAction::Pause(p)) if p.is_indefinite()));
    assert_eq!(p.to_string(), "pause");
    assert_eq!(CanaryStep::default().action(), None);
}

#[test]
fn effective_count_and_limits_follow_argo() {
    let m = |v: Value| -> Metric {
        let mut base =
            serde_json::json!({"name": "m", "provider": {"prometheus": {"query": "up"}}});
        conditions_merge(&mut base, v);
        serde_json::from_value(base).unwrap()
    };
    assert_eq!(m(serde_json::json!({})).effective_count(), Ok(Some(1)));
    assert_eq!(
        m(serde_json::json!({"interval": "1m"})).effective_count(),
        Ok(None)
    );
    assert_eq!(
        m(serde_json::json!({"interval": "1m", "count": 0})).effective_count(),
        Ok(None)
    );
    assert_eq!(
        m(serde_json::json!({"interval": "1m", "count": 5})).effective_count(),
        Ok(Some(5))
    );
    let unresolved = m(serde_json::json!({"interval": "1m", "count": "{{args.n}}"}));
    assert!(unresolved.effective_count().is_err());
    let resolved = m(serde_json::json!({"interval": "1m", "count": "7"}));
    assert_eq!(resolved.effective_count(), Ok(Some(7)));
    let d = m(serde_json::json!({}));
    assert_eq!(
        (
            d.failure_limit(),
            d.inconclusive_limit(),
            d.consecutive_error_limit()
        ),
        (Some(0), Some(0), Some(4))
    );
    assert_eq!(d.consecutive_success_limit(), Some(0));
}

fn conditions_merge(base: &mut Value, patch: Value) {
    if let (Some(b), Value::Object(p)) = (base.as_object_mut(), patch) {
        b.extend(p);
    }
}

#[test]
fn summary_conditions_for_kstatus() {
    use conditions::{is_condition_true, set_condition, types};
    let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
    );
    let mut cs = Vec::new();
    for c in RolloutPhase::Healthy.summary_conditions("RolloutHealthy", "", Some(2), &now) {
        set_condition(&mut cs, c);
    }
    assert!(is_condition_true(&cs, types::READY));
    assert!(!is_condition_true(&cs, types::RECONCILING));
    assert!(!is_condition_true(&cs, types::STALLED));
    assert_eq!(cs[0].observed_generation, Some(2));
    for c in RolloutPhase::Degraded.summary_conditions("RolloutAborted", "aborted", Some(3), &now) {
        set_condition(&mut cs, c);
    }
    assert!(!is_condition_true(&cs, types::READY));
    assert!(is_condition_true(&cs, types::STALLED));
    assert_eq!(cs[0].reason, "Degraded");
    assert_eq!(
        (cs[2].reason.as_str(), cs[2].message.as_str()),
        ("RolloutAborted", "aborted")
    );
    let paused = RolloutPhase::Paused.summary_conditions("CanaryPauseStep", "step", None, &now);
    assert_eq!(
        paused[1].reason, "CanaryPauseStep",
        "the reason names the pause"
    );
    assert!(paused[1].is_true(), "a paused rollout is still reconciling");
}

/// A status written by a newer controller (a `helm rollback` leaves the newer CRD in place)
/// decodes: values this version does not know read as the safe known ones. (A pause reason is
/// the exception: see `plan::tests::unknown_status`.)
#[test]
fn statuses_with_values_from_a_newer_controller_decode() {
    let ro: Rollout = serde_json::from_value(serde_json::json!({
        "apiVersion": "aviary.dev/v1alpha1", "kind": "Rollout",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}}},
                 "strategy": {"canary": {}}},
        "status": {
            "phase": "Rebalancing",
            "conditions": [{"type": "Ready", "status": "Maybe", "reason": "R", "message": "",
                            "lastTransitionTime": "2026-01-01T00:00:00Z"}],
            "canary": {"currentStepAnalysisRunStatus": {"name": "r", "status": "Skipped"}},
        },
    }))
    .unwrap_or_else(|e| panic!("a newer controller's status failed to decode: {e}"));
    let st = ro.status.unwrap_or_default();
    assert_eq!(st.phase, Some(RolloutPhase::Progressing));
    assert_eq!(st.conditions[0].status, ConditionStatus::Unknown);
    let run = st.canary.and_then(|c| c.current_step_analysis_run_status);
    // Final, no verdict: neither measured again nor overwritten, and the Rollout holds.
    assert_eq!(run.map(|r| r.status), Some(AnalysisPhase::Inconclusive));
    let phase: AnalysisPhase = serde_json::from_value(serde_json::json!("Cancelled")).unwrap();
    assert!(phase.is_completed());
}
