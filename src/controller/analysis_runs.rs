//! AnalysisRuns of a Rollout: created from the spec [`super::run_specs`] prepared, owned by the
//! Rollout, labelled with what they measure; and terminated, retired or deleted (beyond the run
//! history limits) when the planner says so.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, Patch, PostParams};
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::info;

use super::Context;
use super::error::Error;
use crate::api::lenient::Lenient;
use crate::api::wire::{
    self, ANALYSIS_TYPE_LABEL, FIELD_MANAGER, RETIRED_LABEL, ROLLOUT_LABEL, STEP_INDEX_LABEL,
    STEPS_HASH_LABEL, reasons,
};
use crate::api::{AnalysisRun, AnalysisRunSpec, Rollout};
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
    // The Rollout's analysisRunMetadata first: Aviary's own labels, which tie the run to its
    // Rollout and step, overwrite one of the same key.
    let extra = super::run_specs::analysis_for(ro, kind)
        .and_then(|a| a.analysis_run_metadata)
        .unwrap_or_default();
    let mut labels = extra.labels.unwrap_or_default();
    labels.extend([
        (ROLLOUT_LABEL.to_string(), ro.name_any()),
        (POD_TEMPLATE_HASH_LABEL.to_string(), hash.to_string()),
        (
            ANALYSIS_TYPE_LABEL.to_string(),
            kind_label(kind).to_string(),
        ),
    ]);
    let annotations = extra.annotations.filter(|a| !a.is_empty());
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
                annotations: annotations.clone(),
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
                // Ours and still counting (the cache lagged our own create): nothing to do. One
                // that does not decode (reported by the run watch) counts for nothing: the
                // analysis goes on under the next name instead of retrying this read for ever.
                let existing: Lenient<AnalysisRun> = Api::namespaced(ctx.client().clone(), &ns)
                    .get(&name)
                    .await?;
                let ours = match &existing {
                    Lenient::Decoded(existing) => observe_run(existing).is_some_and(|r| {
                        r.kind == kind
                            && r.hash == hash
                            && r.steps_hash.is_none_or(|h| h == steps_hash(ro))
                    }),
                    Lenient::Undecodable(_) => false,
                };
                if ours {
                    return Ok(vec![]);
                }
            }
            // Refused as written (a label in analysisRunMetadata that is not a label, an
            // admission webhook): the user must fix it; reported, not retried in a loop.
            Err(kube::Error::Api(e)) if matches!(e.code, 400 | 422) => {
                return Err(Error::InvalidSpec(format!(
                    "the API server refused AnalysisRun '{name}': {}; fix the analysis' analysisRunMetadata or its templates",
                    e.message
                )));
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
