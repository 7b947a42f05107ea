//! The spec of an AnalysisRun the planner asks for: the Rollout's analysis (a step's,
//! the background one, blue-green's pre- or post-promotion), its AnalysisTemplates and
//! ClusterAnalysisTemplates read and merged, the Rollout's args resolved. Built before any
//! write of the plan (`converge::prepare_runs`), so that a template that cannot be used is the
//! planner's verdict, not a failure half-way through act.

use kube::ResourceExt;
use kube::api::Api;

use super::Context;
use super::undecodable::Lenient;
use crate::api::field_path;
use crate::api::{
    AnalysisRunSpec, AnalysisTemplate, AnalysisTemplateRef, AnalysisTemplateSpec, Argument,
    ClusterAnalysisTemplate, PodTemplateHashValue, Rollout, RolloutAnalysis, RolloutArgument,
};
use crate::plan::AnalysisKind;

/// The analysis block the rollout declares for `kind`.
pub(super) fn analysis_for(ro: &Rollout, kind: AnalysisKind) -> Option<RolloutAnalysis> {
    match kind {
        AnalysisKind::Step(i) => ro
            .spec
            .steps()
            .get(i.max(0) as usize)
            .and_then(|s| s.analysis.clone()),
        AnalysisKind::Background => ro
            .spec
            .canary()
            .and_then(|c| c.analysis.as_ref())
            .map(|b| b.analysis()),
        AnalysisKind::PrePromotion => ro
            .spec
            .blue_green()
            .and_then(|b| b.pre_promotion_analysis.clone()),
        AnalysisKind::PostPromotion => ro
            .spec
            .blue_green()
            .and_then(|b| b.post_promotion_analysis.clone()),
    }
}

/// Resolves a Rollout arg to a plain value (hash and field references are fixed at creation);
/// `None` for the stable hash before there is a stable revision. A field path that does not
/// resolve is an error naming it: a query must never run with the template's default instead.
fn rollout_arg_value(
    ro: &Rollout,
    arg: &RolloutArgument,
    stable: Option<&str>,
    latest: &str,
) -> Result<Option<String>, String> {
    if let Some(v) = &arg.value {
        return Ok(Some(v.clone()));
    }
    let Some(from) = arg.value_from.as_ref() else {
        return Ok(None);
    };
    if let Some(which) = &from.pod_template_hash_value {
        return Ok(match which {
            PodTemplateHashValue::Stable => stable.map(str::to_string),
            PodTemplateHashValue::Latest => Some(latest.to_string()),
        });
    }
    let Some(field) = &from.field_ref else {
        return Ok(None);
    };
    let object = serde_json::to_value(ro).map_err(|e| e.to_string())?;
    field_path::resolve(&ro.metadata, Some(&object), &field.field_path).map(Some)
}

async fn template_spec(
    ctx: &Context,
    ns: &str,
    name: &str,
    cluster: bool,
) -> Result<AnalysisTemplateSpec, SpecError> {
    // Decoded leniently: a template our types reject (admitted by an older CRD) is a spec
    // error naming its field, not an API error retried for ever.
    let (kind, got) = if cluster {
        let api: Api<Lenient<ClusterAnalysisTemplate>> = Api::all(ctx.client().clone());
        let got = api.get_opt(name).await.map(|t| {
            t.map(|t| match t {
                Lenient::Decoded(t) => Ok(AnalysisTemplateSpec::from(t.spec)),
                Lenient::Undecodable(u) => Err(u.error),
            })
        });
        ("ClusterAnalysisTemplate", got)
    } else {
        let api: Api<Lenient<AnalysisTemplate>> = Api::namespaced(ctx.client().clone(), ns);
        let got = api.get_opt(name).await.map(|t| {
            t.map(|t| match t {
                Lenient::Decoded(t) => Ok(t.spec),
                Lenient::Undecodable(u) => Err(u.error),
            })
        });
        ("AnalysisTemplate", got)
    };
    match got {
        Ok(Some(Ok(spec))) => Ok(spec),
        Ok(Some(Err(field))) => Err(SpecError::Unusable(format!(
            "{kind} '{name}' cannot be read: {field}; fix that field of the template"
        ))),
        Ok(None) if cluster => Err(SpecError::Unusable(format!(
            "ClusterAnalysisTemplate '{name}' not found: create it or fix the templateName"
        ))),
        Ok(None) => Err(SpecError::Unusable(format!(
            "AnalysisTemplate '{name}' not found in namespace '{ns}': create it or fix the templateName"
        ))),
        Err(e) => Err(SpecError::read(e, format!("cannot read {kind} '{name}'"))),
    }
}

/// Why a run's spec could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The analysis cannot start as configured (a missing template, one we may not read): the
    /// planner gets an Error verdict, which aborts the rollout with this message.
    #[error("{0}")]
    Unusable(String),
    /// The API server could not answer now (5xx, throttled, unreachable): nothing is wrong
    /// with the analysis, the run is created on a later reconcile.
    #[error("{0}")]
    Unavailable(String),
}

impl SpecError {
    fn read(e: kube::Error, what: String) -> Self {
        match &e {
            kube::Error::Api(s) if s.code < 500 && s.code != 429 => {
                SpecError::Unusable(format!("{what}: {e}"))
            }
            _ => SpecError::Unavailable(format!("{what}: {e}")),
        }
    }
}

/// How deep templates may reference templates (Argo sets no bound; a cycle is caught anyway).
const MAX_TEMPLATE_DEPTH: usize = 10;

/// The templates `refs` name, each followed by the templates it references (its `templates`),
/// depth first, as Argo flattens them; with each one's description for messages. A template
/// that references itself, directly or through others, is an error naming the cycle.
async fn flatten(
    ctx: &Context,
    ns: &str,
    refs: &[AnalysisTemplateRef],
) -> Result<Vec<(AnalysisTemplateSpec, String)>, SpecError> {
    // Explicit stack of (reference, path of templates leading to it).
    let mut todo: Vec<(AnalysisTemplateRef, Vec<String>)> =
        refs.iter().rev().map(|r| (r.clone(), vec![])).collect();
    let mut out = vec![];
    // A template reached twice (listed twice, or a diamond) is included once, as Argo's
    // FilterUniqueTemplates does; this also bounds the reads to the distinct templates.
    let mut seen: std::collections::BTreeSet<String> = Default::default();
    while let Some((r, path)) = todo.pop() {
        let kind = if r.is_cluster_scope() {
            "ClusterAnalysisTemplate"
        } else {
            "AnalysisTemplate"
        };
        let name = format!("{kind} '{}'", r.template_name);
        if path.contains(&name) {
            return Err(SpecError::Unusable(format!(
                "{name} references itself ({} -> {name}): remove one of these references",
                path.join(" -> ")
            )));
        }
        if !seen.insert(name.clone()) {
            continue;
        }
        if path.len() >= MAX_TEMPLATE_DEPTH {
            return Err(SpecError::Unusable(format!(
                "templates reference templates more than {MAX_TEMPLATE_DEPTH} deep ({} -> {name})",
                path.join(" -> ")
            )));
        }
        let tpl = template_spec(ctx, ns, &r.template_name, r.is_cluster_scope()).await?;
        let mut inner = path.clone();
        inner.push(name.clone());
        for child in tpl.templates.iter().flatten().rev() {
            todo.push((child.clone(), inner.clone()));
        }
        out.push((tpl, name));
    }
    Ok(out)
}

/// Builds the run spec: the templates' metrics, their args with the Rollout's values applied
/// (args a template doesn't declare are ignored, as Argo does).
async fn build_spec(
    ctx: &Context,
    ro: &Rollout,
    analysis: &RolloutAnalysis,
    hash: &str,
) -> Result<AnalysisRunSpec, SpecError> {
    let ns = ro.namespace().unwrap_or_default();
    let mut spec = AnalysisRunSpec::default();
    let mut args: Vec<Argument> = vec![];
    let mut defined_by: Vec<(String, String)> = vec![];
    for (tpl, name) in flatten(ctx, &ns, &analysis.templates).await? {
        for m in &tpl.metrics {
            if let Some((_, other)) = defined_by.iter().find(|(metric, _)| *metric == m.name) {
                return Err(SpecError::Unusable(format!(
                    "metric '{}' is defined by both {other} and {name}: metric names must be unique across the templates a run uses; rename one",
                    m.name
                )));
            }
            defined_by.push((m.name.clone(), name.clone()));
        }
        spec.metrics.extend(tpl.metrics.iter().cloned());
        // As Argo's flattenArgs: an arg declared again fills in a value the first declaration
        // lacked; two different values are an error.
        for a in tpl.args.iter().flatten() {
            match args.iter_mut().find(|x| x.name == a.name) {
                None => args.push(a.clone()),
                Some(prev) => match (&prev.value, &a.value) {
                    (Some(p), Some(v)) if p != v => {
                        return Err(SpecError::Unusable(format!(
                            "arg '{}' is declared by more than one template with different values ('{p}' and '{v}', the second in {name}): give it one value",
                            a.name
                        )));
                    }
                    (None, _) if prev.value_from.is_none() => *prev = a.clone(),
                    _ => {}
                },
            }
        }
        if let Some(d) = &tpl.dry_run {
            spec.dry_run
                .get_or_insert_with(Vec::new)
                .extend(d.iter().cloned());
        }
        if let Some(r) = &tpl.measurement_retention {
            spec.measurement_retention
                .get_or_insert_with(Vec::new)
                .extend(r.iter().cloned());
        }
    }
    let stable = ro.status.as_ref().and_then(|s| s.stable_rs.as_deref());
    for ra in analysis.args() {
        let value = rollout_arg_value(ro, ra, stable, hash).map_err(|e| {
            SpecError::Unusable(format!(
                "analysis arg '{}': {e}; fix the Rollout's valueFrom.fieldRef",
                ra.name
            ))
        })?;
        if let (Some(arg), Some(v)) = (args.iter_mut().find(|a| a.name == ra.name), value) {
            arg.value = Some(v);
            arg.value_from = None;
        }
    }
    if let Some(d) = &analysis.dry_run {
        spec.dry_run
            .get_or_insert_with(Vec::new)
            .extend(d.iter().cloned());
    }
    if let Some(r) = &analysis.measurement_retention {
        spec.measurement_retention
            .get_or_insert_with(Vec::new)
            .extend(r.iter().cloned());
    }
    if spec.metrics.is_empty() {
        return Err(SpecError::Unusable(
            "the analysis' templates define no metrics: add metrics to one of them".into(),
        ));
    }
    spec.args = (!args.is_empty()).then_some(args);
    Ok(spec)
}

/// The run specs a plan's `CreateAnalysisRun` actions will create, built before anything of
/// the plan is written ([`prepare`]).
#[derive(Debug, Default)]
pub struct PreparedRuns(Vec<(AnalysisKind, String, AnalysisRunSpec)>);

impl PreparedRuns {
    pub fn get(&self, kind: AnalysisKind, hash: &str) -> Option<&AnalysisRunSpec> {
        self.0
            .iter()
            .find(|(k, h, _)| *k == kind && h == hash)
            .map(|(_, _, spec)| spec)
    }

    pub fn insert(&mut self, kind: AnalysisKind, hash: &str, spec: AnalysisRunSpec) {
        self.0.push((kind, hash.to_string(), spec));
    }
}

/// The spec of the run the planner asks for (its templates read and merged, its args
/// resolved); `Ok(None)` when the Rollout configures no such analysis.
pub async fn prepare(
    ctx: &Context,
    ro: &Rollout,
    kind: AnalysisKind,
    hash: &str,
) -> Result<Option<AnalysisRunSpec>, SpecError> {
    let Some(analysis) = analysis_for(ro, kind) else {
        return Ok(None);
    };
    build_spec(ctx, ro, &analysis, hash).await.map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::fixtures::rollout;
    use serde_json::json;

    fn arg(field_path: &str) -> RolloutArgument {
        serde_json::from_value(
            json!({"name": "a", "valueFrom": {"fieldRef": {"fieldPath": field_path}}}),
        )
        .expect("arg")
    }

    /// Issue 26: a `spec.*`/`status.*` fieldRef was dropped without a word, and the template's
    /// default went into the query. Now it resolves as Argo does, and what does not resolve is
    /// an error naming the path.
    #[test]
    fn field_refs_resolve_against_the_rollout_or_say_why_not() {
        let ro = rollout(json!({"canary": {}}), json!({"stableRS": "abc"}));
        let value = |path: &str| rollout_arg_value(&ro, &arg(path), Some("abc"), "def");
        assert_eq!(
            value("spec.template.spec.containers[0].image"),
            Ok(Some("web:2".into()))
        );
        assert_eq!(value("spec.replicas"), Ok(Some("1".into())));
        assert_eq!(value("status.stableRS"), Ok(Some("abc".into())));
        assert_eq!(value("metadata.labels['env']"), Ok(Some(String::new())));
        assert!(value("status.nope").is_err_and(|e| e.contains("status.nope")));
    }
}

/// Nested `templates` as Argo's getAnalysisTemplatesFromRefs resolves them (found by review).
#[cfg(test)]
mod nested_tests {
    use super::*;
    use crate::controller::Context;
    use crate::controller::fixtures::{mock_client, rollout, within_deadline};
    use http::StatusCode;
    use serde_json::{Value, json};

    fn tpl(name: &str, spec: Value) -> Value {
        json!({"apiVersion": "aviary.dev/v1alpha1", "kind": "AnalysisTemplate",
            "metadata": {"name": name, "namespace": "shop"}, "spec": spec})
    }

    fn path(name: &str) -> String {
        format!("/apis/aviary.dev/v1alpha1/namespaces/shop/analysistemplates/{name}")
    }

    fn step_rollout() -> Rollout {
        rollout(
            json!({"canary": {"steps": [{"analysis": {"templates": [{"templateName": "a"}]}}]}}),
            Value::Null,
        )
    }

    const METRIC: &str = "m";

    fn leaf() -> Value {
        json!({"metrics": [{"name": METRIC, "successCondition": "result[0] > 0",
            "provider": {"prometheus": {"query": "up"}}}]})
    }

    /// The spec `prepare` builds for a step naming template "a", with the API server holding
    /// `templates` (read in this order, each once).
    async fn prepared(templates: Vec<(&str, Value)>) -> Result<Option<AnalysisRunSpec>, String> {
        let (client, mut server) = mock_client();
        let ro = step_rollout();
        let (got, ()) = within_deadline(async {
            tokio::join!(
                async {
                    let ctx = Context::for_tests(client);
                    prepare(&ctx, &ro, AnalysisKind::Step(0), "h").await
                },
                async {
                    for (name, spec) in templates {
                        server
                            .expect("GET", &path(name), StatusCode::OK, tpl(name, spec))
                            .await;
                    }
                    server.expect_no_more().await;
                }
            )
        })
        .await;
        got.map_err(|e| e.to_string())
    }

    /// Argo dedups templates reached twice (FilterUniqueTemplates): a -> [b, b] runs b's
    /// metric once, and b is read once.
    #[tokio::test]
    async fn a_template_reached_twice_is_included_once_as_in_argo() {
        let a = json!({"templates": [{"templateName": "b"}, {"templateName": "b"}]});
        let spec = prepared(vec![("a", a), ("b", leaf())]).await;
        let metrics = spec.map(|s| s.map(|s| s.metrics.len()));
        assert_eq!(metrics, Ok(Some(1)), "Argo runs this with metric 'm' once");
    }

    /// Argo's flattenArgs: an arg declared without a value by one template takes the value
    /// another (here nested) template declares; two different values are an error.
    #[tokio::test]
    async fn a_nested_templates_arg_default_fills_an_outer_valueless_arg_as_in_argo() {
        let a = json!({"args": [{"name": "x"}], "templates": [{"templateName": "b"}]});
        let mut b = leaf();
        b["args"] = json!([{"name": "x", "value": "5"}]);
        let spec = prepared(vec![("a", a), ("b", b)])
            .await
            .expect("spec")
            .expect("analysis");
        let x = spec.args.iter().flatten().find(|a| a.name == "x").cloned();
        assert_eq!(x.and_then(|a| a.value), Some("5".to_owned()), "Argo: x = 5");
    }

    #[tokio::test]
    async fn two_templates_giving_an_arg_different_values_is_an_error() {
        let a =
            json!({"args": [{"name": "x", "value": "4"}], "templates": [{"templateName": "b"}]});
        let mut b = leaf();
        b["args"] = json!([{"name": "x", "value": "5"}]);
        let err = prepared(vec![("a", a), ("b", b)])
            .await
            .map(|_| ())
            .expect_err("conflict");
        assert!(
            err.contains(
                "arg 'x' is declared by more than one template with different values ('4' and '5'"
            ),
            "{err}"
        );
    }
}
