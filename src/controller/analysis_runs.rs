//! AnalysisRuns of a Rollout: created from its AnalysisTemplates / ClusterAnalysisTemplates with
//! the Rollout's args resolved, owned by the Rollout, labelled with what they measure; and
//! terminated, retired or deleted (beyond the run history limits) when the planner says so.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, Patch, PostParams};
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::info;

use super::Context;
use super::error::Error;
use crate::api::wire::{
    self, ANALYSIS_TYPE_LABEL, FIELD_MANAGER, RETIRED_LABEL, ROLLOUT_LABEL, STEP_INDEX_LABEL,
    STEPS_HASH_LABEL, reasons,
};
use crate::api::{
    AnalysisRun, AnalysisRunSpec, AnalysisTemplate, AnalysisTemplateSpec, Argument,
    ClusterAnalysisTemplate, PodTemplateHashValue, Rollout, RolloutAnalysis, RolloutArgument,
};
use crate::plan::{
    AnalysisKind, AnalysisRunRecord, Event, ObservedAnalysisRun, POD_TEMPLATE_HASH_LABEL,
};

fn kind_label(kind: AnalysisKind) -> &'static str {
    match kind {
        AnalysisKind::Step(_) => "Step",
        AnalysisKind::Background => "Background",
        AnalysisKind::PrePromotion => "PrePromotion",
        AnalysisKind::PostPromotion => "PostPromotion",
    }
}

/// The hash of `ro`'s canary steps, as [`STEPS_HASH_LABEL`] carries it.
pub fn steps_hash(ro: &Rollout) -> String {
    crate::plan::hash::hash_of(&ro.spec.steps())
}

/// Reads what a run measures back from its labels.
pub fn observe_run(run: &AnalysisRun) -> Option<ObservedAnalysisRun> {
    if is_retired(run) {
        return None;
    }
    let labels = run.labels();
    let kind = match labels.get(ANALYSIS_TYPE_LABEL)?.as_str() {
        "Step" => AnalysisKind::Step(labels.get(STEP_INDEX_LABEL)?.parse().ok()?),
        "Background" => AnalysisKind::Background,
        "PrePromotion" => AnalysisKind::PrePromotion,
        "PostPromotion" => AnalysisKind::PostPromotion,
        _ => return None,
    };

    let status = run.status.clone().unwrap_or_default();
    Some(ObservedAnalysisRun {
        name: run.name_any(),
        kind,
        hash: labels.get(POD_TEMPLATE_HASH_LABEL)?.clone(),
        phase: status.phase,
        message: status.message,
        steps_hash: labels.get(STEPS_HASH_LABEL).cloned(),
    })
}

/// A run as the rollout's run history limits count it: retired or not.
pub fn record_of(run: &AnalysisRun) -> AnalysisRunRecord {
    let labels = run.labels();
    AnalysisRunRecord {
        name: run.name_any(),
        hash: labels.get(POD_TEMPLATE_HASH_LABEL).cloned(),
        phase: run.status.as_ref().map(|s| s.phase).unwrap_or_default(),
        retired: labels.get(RETIRED_LABEL).is_some_and(|v| v == "true"),
    }
}

/// The analysis block the rollout declares for `kind`.
fn analysis_for(ro: &Rollout, kind: AnalysisKind) -> Option<RolloutAnalysis> {
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

/// Reads `metadata.name`, `metadata.namespace`, `metadata.labels['k']`, `metadata.annotations['k']`.
fn field_of(ro: &Rollout, path: &str) -> Option<String> {
    let p = path.trim();
    let keyed = |prefix: &str, map: &BTreeMap<String, String>| -> Option<Option<String>> {
        let rest = p.strip_prefix(prefix)?;
        let key = rest
            .trim_start_matches('[')
            .trim_end_matches(']')
            .trim_matches(|c| c == '\'' || c == '"');
        Some(map.get(key).cloned())
    };
    match p {
        "metadata.name" => Some(ro.name_any()),
        "metadata.namespace" => ro.namespace(),
        "metadata.uid" => ro.metadata.uid.clone(),
        _ => keyed("metadata.labels", ro.labels())
            .or_else(|| keyed("metadata.annotations", ro.annotations()))
            .flatten(),
    }
}

/// Resolves a Rollout arg to a plain value (hash and field references are fixed at creation).
fn rollout_arg_value(
    ro: &Rollout,
    arg: &RolloutArgument,
    stable: Option<&str>,
    latest: &str,
) -> Option<String> {
    if let Some(v) = &arg.value {
        return Some(v.clone());
    }
    let from = arg.value_from.as_ref()?;
    if let Some(which) = &from.pod_template_hash_value {
        return match which {
            PodTemplateHashValue::Stable => stable.map(str::to_string),
            PodTemplateHashValue::Latest => Some(latest.to_string()),
        };
    }
    from.field_ref
        .as_ref()
        .and_then(|f| field_of(ro, &f.field_path))
}

async fn template_spec(
    ctx: &Context,
    ns: &str,
    name: &str,
    cluster: bool,
) -> Result<AnalysisTemplateSpec, String> {
    if cluster {
        let api: Api<ClusterAnalysisTemplate> = Api::all(ctx.client().clone());
        match api.get_opt(name).await {
            Ok(Some(t)) => Ok(AnalysisTemplateSpec::from(t.spec)),
            Ok(None) => Err(format!(
                "ClusterAnalysisTemplate '{name}' not found: create it or fix the templateName"
            )),
            Err(e) => Err(format!("cannot read ClusterAnalysisTemplate '{name}': {e}")),
        }
    } else {
        let api: Api<AnalysisTemplate> = Api::namespaced(ctx.client().clone(), ns);
        match api.get_opt(name).await {
            Ok(Some(t)) => Ok(t.spec),
            Ok(None) => Err(format!(
                "AnalysisTemplate '{name}' not found in namespace '{ns}': create it or fix the templateName"
            )),
            Err(e) => Err(format!("cannot read AnalysisTemplate '{name}': {e}")),
        }
    }
}

/// Builds the run spec: the templates' metrics, their args with the Rollout's values applied
/// (args a template doesn't declare are ignored, as Argo does).
async fn build_spec(
    ctx: &Context,
    ro: &Rollout,
    analysis: &RolloutAnalysis,
    hash: &str,
) -> Result<AnalysisRunSpec, String> {
    let ns = ro.namespace().unwrap_or_default();
    let mut spec = AnalysisRunSpec::default();
    let mut args: Vec<Argument> = vec![];
    for t in &analysis.templates {
        let tpl = template_spec(ctx, &ns, &t.template_name, t.is_cluster_scope()).await?;
        spec.metrics.extend(tpl.metrics.iter().cloned());
        for a in tpl.args.iter().flatten() {
            if !args.iter().any(|x| x.name == a.name) {
                args.push(a.clone());
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
        let value = rollout_arg_value(ro, ra, stable, hash);
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
/// resolved); `Ok(None)` when the Rollout configures no such analysis. `Err` says why the
/// analysis cannot even start (a missing template): the caller gives the planner that verdict.
pub async fn prepare(
    ctx: &Context,
    ro: &Rollout,
    kind: AnalysisKind,
    hash: &str,
) -> Result<Option<AnalysisRunSpec>, String> {
    let Some(analysis) = analysis_for(ro, kind) else {
        return Ok(None);
    };
    build_spec(ctx, ro, &analysis, hash).await.map(Some)
}

/// Creates the run the planner asked for from its prepared `spec`, named with `revision`, the
/// revision number of the ReplicaSet of `hash` (0 when it has none).
pub async fn create(
    ctx: &Context,
    ro: &Rollout,
    kind: AnalysisKind,
    hash: &str,
    revision: i64,
    spec: &AnalysisRunSpec,
) -> Result<Vec<Event>, Error> {
    let ns = ro.namespace().unwrap_or_default();
    let base = match kind {
        AnalysisKind::Step(i) => format!("{}-{hash}-{revision}-{i}", ro.name_any()),
        AnalysisKind::Background => format!("{}-{hash}-{revision}", ro.name_any()),
        AnalysisKind::PrePromotion => format!("{}-{hash}-{revision}-pre", ro.name_any()),
        AnalysisKind::PostPromotion => format!("{}-{hash}-{revision}-post", ro.name_any()),
    };
    let mut labels = BTreeMap::from([
        (ROLLOUT_LABEL.to_string(), ro.name_any()),
        (POD_TEMPLATE_HASH_LABEL.to_string(), hash.to_string()),
        (
            ANALYSIS_TYPE_LABEL.to_string(),
            kind_label(kind).to_string(),
        ),
    ]);
    if let AnalysisKind::Step(i) = kind {
        labels.insert(STEP_INDEX_LABEL.into(), i.to_string());
    }
    if matches!(kind, AnalysisKind::Step(_) | AnalysisKind::Background) {
        labels.insert(STEPS_HASH_LABEL.into(), steps_hash(ro));
    }
    let api: Api<AnalysisRun> = Api::namespaced(ctx.client().clone(), &ns);
    // A retried rollout gets fresh runs beside the retired ones: `.1`, `.2`, … as Argo names them.
    for attempt in 0..20 {
        let name = if attempt == 0 {
            base.clone()
        } else {
            format!("{base}.{attempt}")
        };
        let run = AnalysisRun {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(ns.clone()),
                labels: Some(labels.clone()),
                owner_references: ro.controller_owner_ref(&()).map(|o| vec![o]),
                ..Default::default()
            },
            spec: spec.clone(),
            status: None,
        };
        match api
            .create(
                &PostParams {
                    field_manager: Some(FIELD_MANAGER.into()),
                    ..Default::default()
                },
                &run,
            )
            .await
        {
            Ok(_) => {
                info!(rollout = %ro.name_any(), run = %name, "created AnalysisRun");
                return Ok(vec![Event::normal(
                    reasons::ANALYSIS_RUN_CREATED,
                    format!("Created AnalysisRun '{name}' ({})", kind_label(kind)),
                )]);
            }
            Err(kube::Error::Api(e)) if e.code == 409 => {
                // Ours and still counting (the cache lagged our own create): nothing to do.
                let existing = api.get(&name).await?;
                let ours = observe_run(&existing).is_some_and(|r| {
                    r.kind == kind
                        && r.hash == hash
                        && r.steps_hash.is_none_or(|h| h == steps_hash(ro))
                });
                if ours {
                    return Ok(vec![]);
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::InvalidSpec(format!(
        "AnalysisRuns {base} to {base}.19 all exist and are not this analysis's: delete the retired ones"
    )))
}

/// Runs we retired that the AnalysisRun cache may not show retired yet, by uid: they are left
/// out as if it did. Otherwise the reconcile right after steps were edited, reading a cache
/// that lags our retire patch, would take the old attempt's verdict for the new steps.
#[derive(Debug, Default)]
pub struct RetiredRuns {
    uids: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl RetiredRuns {
    /// Our retire patch of the run `uid` succeeded.
    pub fn record(&self, uid: String) {
        if let Ok(mut u) = self.uids.lock() {
            u.insert(uid);
        }
    }

    /// Whether `run`, as cached, is one we retired; forgets it once the cache shows it so.
    pub fn retired(&self, run: &AnalysisRun) -> bool {
        let Some(uid) = run.uid() else {
            return false;
        };
        let Ok(mut u) = self.uids.lock() else {
            return false;
        };
        if !u.contains(&uid) {
            return false;
        }
        if is_retired(run) {
            u.remove(&uid);
        }
        true
    }

    /// Forgets runs no longer cached (deleted before the cache showed them retired).
    pub fn retain(&self, live: &std::collections::HashSet<String>) {
        if let Ok(mut u) = self.uids.lock() {
            u.retain(|uid| live.contains(uid));
        }
    }
}

fn is_retired(run: &AnalysisRun) -> bool {
    run.labels().get(RETIRED_LABEL).is_some_and(|v| v == "true")
}

/// Terminates a run (`spec.terminate`), and retires it when asked.
pub async fn terminate(ctx: &Context, ns: &str, name: &str, retire: bool) -> Result<(), Error> {
    let api: Api<AnalysisRun> = Api::namespaced(ctx.client().clone(), ns);
    let mut patch = json!({"spec": {"terminate": true}});
    if retire {
        patch["metadata"] = json!({"labels": {RETIRED_LABEL: "true"}});
    }
    match api
        .patch(name, &wire::patch_params(), &Patch::Merge(&patch))
        .await
    {
        Ok(written) => {
            if let (true, Some(uid)) = (retire, written.uid()) {
                ctx.view.retired_runs.record(uid);
            }
            Ok(())
        }
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Deletes a finished run beyond the rollout's run history limits (one already gone is done).
pub async fn delete(ctx: &Context, ns: &str, name: &str) -> Result<(), Error> {
    let api: Api<AnalysisRun> = Api::namespaced(ctx.client().clone(), ns);
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => {
            info!(run = %name, "deleted AnalysisRun beyond the run history limits");
            Ok(())
        }
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
#[path = "analysis_runs_tests.rs"]
mod retired_tests;
