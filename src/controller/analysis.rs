//! The AnalysisRun reconciler: measure what is due, judge it, record it, say when to look
//! again. The decisions are [`crate::analysis::run::Analysis`]'s; this is the I/O around them —
//! reading Secrets for args, querying providers, writing status.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch};
use kube::runtime::controller::Action as Requeue;
use kube::{Client, ResourceExt};
use serde_json::json;
use tracing::{Instrument, debug, info, info_span};

use super::analysis_slots::NamespaceSlots;
use super::error::Error;
use super::report::merge_diff;
use crate::analysis::measurement::error_measurement;
use crate::analysis::run::{Analysis, RunError, reject};
use crate::analysis::template::Args;
use crate::api::wire;
use crate::api::{AnalysisRun, AnalysisRunStatus, ValueFrom};
use crate::provider::{Providers, job};

/// What the run reconciler shares.
pub struct RunContext {
    pub client: Client,
    /// Where each metric's numbers come from ([`crate::provider::providers`]).
    pub providers: Providers,
    /// Counts runs and measurements by phase (`aviary_analysis_*`).
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Each namespace's share of the measuring reconciles ([`NamespaceSlots`]).
    pub slots: NamespaceSlots,
    /// Cancelled at shutdown: measurements in flight are abandoned.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// Whether AnalysisRuns no Rollout owns (created by hand) are run; off, they end in Error
    /// saying why.
    pub run_unowned: bool,
    /// Whether job metrics (which run pods) are run; off, their runs end in Error saying why.
    pub allow_job_metrics: bool,
}

/// Reads every Secret value the run's args reference (so the pure resolver needs no I/O): only
/// from Secrets in the run's namespace that their owner labelled [`wire::ANALYSIS_SECRET_LABEL`].
/// `Ok(Err(why))` when the run may not use one (unlabelled, or one the controller may not
/// read): the run ends in Error with that message and the value is never read or sent.
async fn secret_values(
    client: &Client,
    ns: &str,
    run: &AnalysisRun,
) -> Result<Result<BTreeMap<(String, String), String>, String>, Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let mut out = BTreeMap::new();
    for arg in run.spec.args() {
        let Some(r) = arg
            .value_from
            .as_ref()
            .and_then(|v| v.secret_key_ref.as_ref())
        else {
            continue;
        };
        let secret = match api.get_opt(&r.name).await {
            Ok(Some(secret)) => secret,
            Ok(None) => continue,
            Err(kube::Error::Api(e)) if e.code == 403 => {
                return Ok(Err(format!(
                    "args.{}: the controller may not read Secret '{}' in namespace '{ns}': grant it (the chart's analysis.secretArgs) or pass the value another way",
                    arg.name, r.name
                )));
            }
            Err(e) => return Err(e.into()),
        };
        if secret
            .labels()
            .get(wire::ANALYSIS_SECRET_LABEL)
            .map(String::as_str)
            != Some("true")
        {
            return Ok(Err(format!(
                "args.{}: Secret '{}' is not labelled {}=\"true\": its owner must label it to let analysis use it",
                arg.name,
                r.name,
                wire::ANALYSIS_SECRET_LABEL
            )));
        }
        let value = secret
            .data
            .as_ref()
            .and_then(|d| d.get(&r.key))
            .map(|b| String::from_utf8_lossy(&b.0).into_owned())
            .or_else(|| {
                secret
                    .string_data
                    .as_ref()
                    .and_then(|d| d.get(&r.key).cloned())
            });
        if let Some(v) = value {
            out.insert((r.name.clone(), r.key.clone()), v);
        }
    }
    Ok(Ok(out))
}

/// Why a run is not run: no Rollout owns it and hand-made runs are off
/// ([`RunContext::run_unowned`]).
fn unowned(run: &AnalysisRun, ctx: &RunContext) -> Option<String> {
    let owned = run.owner_references().iter().any(|o| {
        o.kind == "Rollout"
            && o.api_version.starts_with("aviary.dev/")
            && o.controller == Some(true)
    });
    (!owned && !ctx.run_unowned).then(|| {
        "not run: no Rollout owns this AnalysisRun, and this controller runs only its Rollouts' \
         runs (start it with --run-unowned-analysis, chart value analysis.runUnowned: true, to \
         run AnalysisRuns created by hand)"
            .to_string()
    })
}

fn has_job_metrics(run: &AnalysisRun) -> bool {
    run.spec.metrics.iter().any(|m| m.provider.job.is_some())
}

/// Why a run's job metrics may not run: a job metric runs pods (with any ServiceAccount of the
/// namespace), so they are off unless the controller was started with `--allow-job-metrics`;
/// and, unless hand-made runs are allowed, the Rollout its owner reference names must exist
/// with that uid (a forged reference passes [`unowned`], which only reads the reference).
async fn job_metrics_refused(run: &AnalysisRun, ctx: &RunContext) -> Result<Option<String>, Error> {
    if !has_job_metrics(run) {
        return Ok(None);
    }
    if !ctx.allow_job_metrics {
        return Ok(Some(
            "not run: job metrics run pods, and this controller does not run them (start it with              --allow-job-metrics, chart value analysis.jobMetrics.enabled: true; see              docs/security.md)"
                .to_string(),
        ));
    }
    // Checked before the run started; a started run was checked then (only the controller
    // writes a run's status), so its measurements every 2 s read no Rollout.
    if ctx.run_unowned || run.status.as_ref().is_some_and(|s| s.started_at.is_some()) {
        return Ok(None);
    }
    let Some(owner) = run
        .owner_references()
        .iter()
        .find(|o| o.kind == "Rollout" && o.controller == Some(true))
    else {
        return Ok(Some("not run: no Rollout owns this AnalysisRun".into()));
    };
    let rollouts: Api<crate::api::Rollout> =
        Api::namespaced(ctx.client.clone(), &run.namespace().unwrap_or_default());
    let real = rollouts.get_opt(&owner.name).await?;
    Ok(match real {
        Some(ro) if ro.metadata.uid.as_deref() == Some(owner.uid.as_str()) => None,
        _ => Some(format!(
            "not run: its owner reference names Rollout '{}' with a uid no Rollout has; only a              Rollout's own runs may run job metrics",
            owner.name
        )),
    })
}

pub async fn reconcile(cached: Arc<AnalysisRun>, ctx: Arc<RunContext>) -> Result<Requeue, Error> {
    let ns = cached.namespace().unwrap_or_default();
    let span = info_span!("analysis_run", run = %format!("{ns}/{}", cached.name_any()));
    async move {
        // Over its namespace's share: looked at again shortly, without a request.
        let Some(_slot) = ctx.slots.try_take(&ns) else {
            debug!("namespace's analysis share in use: waiting");
            return Ok(Requeue::requeue(Duration::from_secs(1)));
        };
        let api: Api<AnalysisRun> = Api::namespaced(ctx.client.clone(), &ns);
        let Some(run) = api.get_opt(&cached.name_any()).await? else { return Ok(Requeue::await_change()) };
        let old = run.status.clone().unwrap_or_default();
        if old.phase.is_completed() {
            // Again here: the delete after completing may have failed, or the leader changed.
            if has_job_metrics(&run) {
                job::delete_unfinished(&ctx.client, &run).await;
            }
            return Ok(Requeue::await_change());
        }
        let now = Timestamp::now();
        let mut status = old.clone();
        // A run that may not start (refused, or unusable as written) ends in Error saying why.
        let refused = match unowned(&run, &ctx) {
            Some(why) => Some(why),
            None => job_metrics_refused(&run, &ctx).await?,
        };
        let started = match refused {
            Some(why) => Err(RunError::Refused(why)),
            None => match secret_values(&ctx.client, &ns, &run).await? {
                Err(why) => Err(RunError::Refused(why)),
                Ok(secrets) => Args::from_arguments(run.spec.args(), |from: &ValueFrom| {
                    if let Some(r) = &from.secret_key_ref {
                        return secrets.get(&(r.name.clone(), r.key.clone())).cloned();
                    }
                    // The run's metadata; another path stays unresolved, and the run ends
                    // in Error naming the arg.
                    from.field_ref.as_ref().and_then(|f| {
                        crate::api::field_path::resolve(&run.metadata, None, &f.field_path).ok()
                    })
                })
                .map_err(Into::into)
                .and_then(|a| Analysis::new(&run.spec, a)),
            },
        };
        let analysis = match started {
            Ok(a) => a,
            Err(e) => {
                info!(error = %e, "AnalysisRun cannot start");
                reject(&mut status, &e, now);
                write_status(&api, &run, &old, &status).await?;
                ctx.metrics.record_analysis_run(Some(&old), &status);
                return Ok(Requeue::await_change());
            }
        };
        // Terminated: a job metric's running measurement ends as Argo ends it (Successful,
        // "Metric Terminated"), and its Job goes once the run is complete (below).
        if run.spec.terminated() {
            let ended: Vec<_> = status
                .metric_results
                .iter()
                .filter_map(|r| job::terminated(r, now).map(|m| (r.name.clone(), m)))
                .collect();
            for (name, m) in ended {
                analysis.record(&mut status, &name, m);
            }
        }
        analysis.assess(&mut status, now);
        // The due metrics are measured together (a run takes as long as its slowest metric,
        // not their sum), and abandoned at shutdown: nothing is recorded, the next leader
        // measures again, and the lease is released without waiting on a slow provider.
        let due = analysis.due(&status, now);
        let measuring = futures::future::join_all(due.into_iter().map(|plan| async {
            let started = Timestamp::now();
            // A Job spans reconciles: its measurement is created, then resumed.
            if plan.metric.provider.job.is_some() {
                let result = status.metric_result(&plan.metric.name);
                let measurement = job::measure(&ctx.client, &run, plan, result).await;
                return (plan.metric.name.clone(), measurement);
            }
            let measurement = match (ctx.providers)(plan) {
                Ok(provider) => match provider.measure(plan).await {
                    Ok(value) => plan.conditions.measure(&value, started, Timestamp::now()),
                    Err(e) => error_measurement(e.to_string(), started, Timestamp::now()),
                },
                Err(e) => error_measurement(e.to_string(), started, Timestamp::now()),
            };
            (plan.metric.name.clone(), Some(measurement))
        }));
        let measured = tokio::select! {
            () = ctx.shutdown.cancelled() => {
                info!("shutting down: measurements in flight abandoned");
                return Ok(Requeue::await_change());
            }
            measured = measuring => measured,
        };
        // A Job still running changes nothing: no status write, looked at again in job::POLL.
        let mut polling = false;
        for (name, measurement) in measured {
            let Some(measurement) = measurement else {
                polling = true;
                continue;
            };
            debug!(metric = %name, phase = ?measurement.phase, value = ?measurement.value, "measured");
            analysis.record(&mut status, &name, measurement);
        }
        let now = Timestamp::now();
        analysis.assess(&mut status, now);
        write_status(&api, &run, &old, &status).await?;
        ctx.metrics.record_analysis_run(Some(&old), &status);
        if status.phase.is_completed() {
            // A terminated (or otherwise ended) run's Jobs still running are stopped.
            if has_job_metrics(&run) {
                job::delete_unfinished(&ctx.client, &run).await;
            }
            info!(phase = %status.phase.as_str(), message = ?status.message, "AnalysisRun completed");
            return Ok(Requeue::await_change());
        }
        let next = analysis.requeue_after(&status, now);
        Ok(match (next, polling) {
            // A running Job's resume time has passed: not sooner than the poll.
            (Some(d), true) => Requeue::requeue(d.max(job::POLL)),
            (None, true) => Requeue::requeue(job::POLL),
            (Some(d), false) => Requeue::requeue(d.max(Duration::from_millis(50))),
            (None, false) => Requeue::requeue(Duration::from_secs(10)),
        })
    }
    .instrument(span)
    .await
}

async fn write_status(
    api: &Api<AnalysisRun>,
    run: &AnalysisRun,
    old: &AnalysisRunStatus,
    new: &AnalysisRunStatus,
) -> Result<(), Error> {
    let Some(diff) = merge_diff(&serde_json::to_value(old)?, &serde_json::to_value(new)?) else {
        return Ok(());
    };
    let patch = json!({"metadata": {"resourceVersion": run.resource_version()}, "status": diff});
    api.patch_status(
        &run.name_any(),
        &wire::patch_params(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}

pub fn error_policy(_run: Arc<AnalysisRun>, err: &Error, _ctx: Arc<RunContext>) -> Requeue {
    tracing::warn!(error = %err, "AnalysisRun reconcile failed");
    Requeue::requeue(Duration::from_secs(if err.is_transient() { 1 } else { 10 }))
}

#[cfg(test)]
#[path = "analysis_tests.rs"]
mod tests;
