//! The porting promise, field by field: every field path of Argo Rollouts' own Rollout and
//! AnalysisTemplate schemas (v1.9.1, `tests/data/argo-v1.9.1/`) is either implemented by
//! Aviary's CRDs, with a compatible type, or declared and rejected at admission by a rule whose
//! message names it and says what to use instead. Nothing an Argo manifest sets is pruned.
//!
//! The walk is pure; `argo_fields_aviary_rejects_are_refused_by_name_on_the_api_server` then
//! sets each rejected field in a manifest and server-side dry-runs it on the local cluster.

mod support;

use std::collections::BTreeMap;

use kube::api::{Api, DynamicObject, Patch, PatchParams, ValidationDirective};
use kube::core::GroupVersionKind;
use kube::discovery::pinned_kind;
use serde_json::{Value, json};
use support::{TestNamespace, client, install_crds, repo_root, yaml_documents};

/// One step of a field path.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Seg {
    Field(String),
    Items,
}

fn show(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Field(f) if out.is_empty() => out.push_str(f),
            Seg::Field(f) => {
                out.push('.');
                out.push_str(f);
            }
            Seg::Items => out.push_str("[]"),
        }
    }
    out
}

/// Where a walk of Argo's schema against ours ended up.
#[derive(Default)]
struct Walk {
    /// Argo paths with no field in Aviary's schema (an Argo manifest's value would be pruned or,
    /// under strict validation, refused as unknown without saying what to use).
    missing: Vec<String>,
    /// Implemented paths whose types differ: `(path, Argo's, Aviary's)`.
    mistyped: Vec<(String, String, String)>,
    /// Declared-and-rejected paths: the path, Argo's schema for it, and the rule's message
    /// (`None` when no `!has(self.FIELD)` rule on the parent rejects it).
    rejected: Vec<(Vec<Seg>, Value, Option<String>)>,
    /// Implemented leaf paths, counted for the report.
    implemented: usize,
}

const UNSUPPORTED: &str = "Not supported by Aviary";

fn schema_of(crd: &Value) -> Value {
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

fn type_of(s: &Value) -> String {
    if s["x-kubernetes-int-or-string"] == json!(true) {
        return "int-or-string".into();
    }
    s["type"].as_str().unwrap_or("any").into()
}

fn compatible(argo: &str, ours: &str) -> bool {
    argo == ours
        || ours == "any"
        || (ours == "int-or-string" && matches!(argo, "integer" | "string"))
}

/// The message of the rule on `parent` that rejects `field` by name.
fn rejection(parent: &Value, field: &str) -> Option<String> {
    let rule = format!("!has(self.{field})");
    parent["x-kubernetes-validations"]
        .as_array()?
        .iter()
        .find(|r| r["rule"].as_str() == Some(rule.as_str()))
        .and_then(|r| r["message"].as_str())
        .map(str::to_owned)
}

/// Kubernetes' own parts (the PodTemplateSpec both embed, validated when the ReplicaSet is
/// created; object metadata) and what the controller, not the user, writes.
/// Subtrees Aviary keeps whole and hands to Kubernetes, which validates them: a job metric's
/// `spec` becomes the Job's (an invalid one is refused when the Job is created, and the
/// measurement is an Error quoting the API server).
const PASS_THROUGH: [&str; 1] = ["spec.metrics[].provider.job.spec"];

fn skipped(path: &str) -> bool {
    matches!(
        path,
        "apiVersion" | "kind" | "metadata" | "status" | "spec.template"
    )
}

fn walk(argo: &Value, ours: &Value, path: &mut Vec<Seg>, out: &mut Walk) {
    let here = show(path);
    if !compatible(&type_of(argo), &type_of(ours)) {
        out.mistyped
            .push((here.clone(), type_of(argo), type_of(ours)));
        return;
    }
    let argo_fields = argo["properties"].as_object();
    if argo_fields.is_none() && !argo["items"].is_object() {
        out.implemented += 1;
    }
    for (name, argo_child) in argo_fields.into_iter().flatten() {
        path.push(Seg::Field(name.clone()));
        if skipped(&show(path)) {
            path.pop();
            continue;
        }
        if PASS_THROUGH.contains(&show(path).as_str()) {
            if ours["properties"][name]["x-kubernetes-preserve-unknown-fields"] == json!(true) {
                out.implemented += 1;
            } else {
                out.missing.push(format!(
                    "{} (declared pass-through, but not kept whole)",
                    show(path)
                ));
            }
            path.pop();
            continue;
        }
        match ours["properties"].get(name) {
            None => out.missing.push(show(path)),
            Some(child)
                if child["description"]
                    .as_str()
                    .is_some_and(|d| d.starts_with(UNSUPPORTED)) =>
            {
                out.rejected
                    .push((path.clone(), argo_child.clone(), rejection(ours, name)));
            }
            Some(child) => walk(argo_child, child, path, out),
        }
        path.pop();
    }
    if argo["items"].is_object() {
        path.push(Seg::Items);
        walk(&argo["items"], &ours["items"], path, out);
        path.pop();
    }
}

fn load(relative: &str) -> Value {
    let text = std::fs::read_to_string(repo_root().join(relative))
        .unwrap_or_else(|e| panic!("{relative}: {e}"));
    yaml_documents(&text)
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("{relative}: no document"))
}

/// Argo's CRD and ours, by kind.
const PAIRS: [(&str, &str, &str); 2] = [
    (
        "Rollout",
        "tests/data/argo-v1.9.1/rollout-crd.yaml",
        "crds/rollouts.yaml",
    ),
    (
        "AnalysisTemplate",
        "tests/data/argo-v1.9.1/analysis-template-crd.yaml",
        "crds/analysistemplates.yaml",
    ),
];

fn walk_kind(argo: &str, ours: &str) -> Walk {
    let mut out = Walk::default();
    walk(
        &schema_of(&load(argo)),
        &schema_of(&load(ours)),
        &mut vec![],
        &mut out,
    );
    out
}

#[test]
fn every_argo_field_is_implemented_or_rejected_by_name() {
    let mut problems = vec![];
    for (kind, argo, ours) in PAIRS {
        let walk = walk_kind(argo, ours);
        for path in &walk.missing {
            problems.push(format!(
                "{kind} {path}: not in Aviary's schema (would be pruned)"
            ));
        }
        for (path, a, o) in &walk.mistyped {
            problems.push(format!("{kind} {path}: Argo's type is {a}, Aviary's {o}"));
        }
        for (path, _, message) in &walk.rejected {
            let path = show(path);
            match message {
                None => problems.push(format!(
                    "{kind} {path}: declared unsupported but no rule rejects it"
                )),
                Some(m) => {
                    let field = path.rsplit('.').next().unwrap_or_default();
                    let hint = m
                        .split_once(" is not supported by Aviary: ")
                        .map(|(_, h)| h.trim());
                    if !m.contains(field) || hint.is_none_or(str::is_empty) {
                        problems.push(format!(
                            "{kind} {path}: the message {m:?} must name the field and say what to use instead"
                        ));
                    }
                }
            }
        }
        println!(
            "{kind}: {} implemented leaf paths, {} rejected by name",
            walk.implemented,
            walk.rejected.len()
        );
        // A walk that found nothing would pass vacuously.
        assert!(
            walk.implemented > 30 && !walk.rejected.is_empty(),
            "{kind}: the walk saw too little"
        );
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// A value of Argo's type for a rejected field, enough for `has()` to see it.
fn sample(schema: &Value) -> Value {
    match type_of(schema).as_str() {
        "object" | "any" => json!({}),
        "array" if schema["items"]["type"] == json!("string") => json!(["x"]),
        "array" => json!([{}]),
        "string" => json!("x"),
        "boolean" => json!(true),
        _ => json!(1),
    }
}

/// The smallest value `schema` admits: its required fields, one item where items are
/// required. The API server checks no CEL rule of an object missing a required field, so the
/// objects made on the way to a rejected field must be otherwise valid.
fn minimal(schema: &Value) -> Value {
    if let Some(first) = schema["enum"].as_array().and_then(|e| e.first()) {
        return first.clone();
    }
    match type_of(schema).as_str() {
        "object" => {
            let mut out = serde_json::Map::new();
            for name in schema["required"].as_array().into_iter().flatten() {
                if let Some(name) = name.as_str() {
                    out.insert(name.to_owned(), minimal(&schema["properties"][name]));
                }
            }
            Value::Object(out)
        }
        "array" if schema["minItems"].as_u64().unwrap_or(0) > 0 => {
            json!([minimal(&schema["items"])])
        }
        "array" => json!([]),
        "string" => json!("x"),
        "boolean" => json!(false),
        "any" => json!({}),
        _ => json!(schema["minimum"].as_i64().unwrap_or(0).max(1)),
    }
}

/// Sets `path` in `doc` (whose schema, Aviary's, is `schema`), making minimal objects and
/// one-element lists on the way.
fn set(doc: &mut Value, schema: &Value, path: &[Seg], value: Value) {
    let Some((first, rest)) = path.split_first() else {
        *doc = value;
        return;
    };
    let (next, child) = match first {
        Seg::Field(f) => {
            let child = &schema["properties"][f.as_str()];
            let Some(map) = doc.as_object_mut() else {
                return;
            };
            (
                map.entry(f.clone()).or_insert_with(|| minimal(child)),
                child,
            )
        }
        Seg::Items => {
            let child = &schema["items"];
            let Some(list) = doc.as_array_mut() else {
                return;
            };
            if list.is_empty() {
                list.push(minimal(child));
            }
            (&mut list[0], child)
        }
    };
    set(next, child, rest, value);
}

fn base(kind: &str, path: &str) -> Value {
    match kind {
        "Rollout" => {
            let strategy = if path.starts_with("spec.strategy.blueGreen") {
                json!({"blueGreen": {"activeService": "web"}})
            } else {
                json!({"canary": {"steps": [{"setWeight": 10}]}})
            };
            json!({"apiVersion": "aviary.dev/v1alpha1", "kind": "Rollout",
                "metadata": {"name": "argo-field"},
                "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                    "template": {"metadata": {"labels": {"app": "web"}},
                        "spec": {"containers": [{"name": "web", "image": "web:1"}]}},
                    "strategy": strategy}})
        }
        _ => json!({"apiVersion": "aviary.dev/v1alpha1", "kind": "AnalysisTemplate",
            "metadata": {"name": "argo-field"},
            "spec": {"metrics": [{"name": "m", "successCondition": "result[0] >= 0.95",
                "provider": {"prometheus": {"query": "up"}}}]}}),
    }
}

#[tokio::test]
async fn argo_fields_aviary_rejects_are_refused_by_name_on_the_api_server() {
    let client = client().await;
    let root = repo_root();
    let ours = [
        "rollouts.yaml",
        "analysistemplates.yaml",
        "clusteranalysistemplates.yaml",
        "analysisruns.yaml",
    ]
    .map(|f| root.join("crds").join(f));
    install_crds(
        &client,
        &ours.iter().map(|p| p.as_path()).collect::<Vec<_>>(),
    )
    .await;
    let ns = TestNamespace::new(&client, "argo-schema").await;
    let mut failures = BTreeMap::new();
    let mut checked = 0;
    for (kind, argo, ours) in PAIRS {
        let gvk = GroupVersionKind::gvk("aviary.dev", "v1alpha1", kind);
        let (resource, _) = pinned_kind(&client, &gvk).await.expect("kind served");
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns.name, &resource);
        let mut pp = PatchParams::apply(support::FIELD_MANAGER);
        pp.field_validation = Some(ValidationDirective::Strict);
        pp.dry_run = true;
        let schema = schema_of(&load(ours));
        for (path, argo_schema, message) in walk_kind(argo, ours).rejected {
            let shown = show(&path);
            let Some(message) = message else {
                failures.insert(format!("{kind} {shown}"), "no rule".to_owned());
                continue;
            };
            let mut doc = base(kind, &shown);
            set(&mut doc, &schema, &path, sample(&argo_schema));
            let outcome = api.patch("argo-field", &pp, &Patch::Apply(&doc)).await;
            checked += 1;
            match outcome {
                Ok(_) => {
                    failures.insert(format!("{kind} {shown}"), "admitted".to_owned());
                }
                Err(e) if e.to_string().contains(&message) => {}
                Err(e) => {
                    failures.insert(
                        format!("{kind} {shown}"),
                        format!("refused, but not by name: {e}"),
                    );
                }
            }
        }
    }
    println!("{checked} rejected Argo fields dry-run");
    // A floor against a walk that silently tries nothing (it falls as fields are implemented).
    assert!(checked >= 20, "only {checked} fields were tried");
    assert!(
        failures.is_empty(),
        "{}",
        failures
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}
