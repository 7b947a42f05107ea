//! The Job provider, as Argo Rollouts runs it: each measurement creates a `batch/v1` Job from
//! the metric's `job` (owned by the AnalysisRun, named `<run uid>.<metric>.<n>`); the
//! measurement stays Running, and is looked at again every [`POLL`], until the Job completes
//! (Successful) or fails (Failed). Unlike the other providers it spans reconciles, so the
//! measurement itself (its `job-name` metadata) is what a later reconcile, or another leader,
//! resumes from: no state is kept in the controller.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, PostParams, PropagationPolicy};
use kube::{Client, Resource, ResourceExt};

use crate::analysis::run::MetricPlan;
use crate::api::{AnalysisPhase, AnalysisRun, Measurement, MetricResult};

/// Measurement metadata naming the Job (Argo's keys).
pub const JOB_NAME_KEY: &str = "job-name";
pub const JOB_NAMESPACE_KEY: &str = "job-namespace";
/// The label a Job carries with its AnalysisRun's uid.
pub const RUN_UID_LABEL: &str = "aviary.dev/analysis-run-uid";
/// How often a running Job is looked at.
pub const POLL: Duration = Duration::from_secs(2);
/// Kubernetes' limit for a Job's name (it becomes a label value on its pods).
const NAME_LIMIT: usize = 63;

/// Measures `plan`'s job metric of `run`: resumes the Job of an unfinished last measurement,
/// or creates the next one. Never fails: a problem is an Error measurement saying what.
pub async fn measure(
    client: &Client,
    run: &AnalysisRun,
    plan: &MetricPlan,
    result: Option<&MetricResult>,
) -> Measurement {
    let now = Timestamp::now();
    let unfinished = result
        .and_then(|r| r.measurements.last())
        .filter(|m| m.finished_at.is_none() && m.metadata.contains_key(JOB_NAME_KEY));
    match unfinished {
        Some(last) => resume(client, run, last, now).await,
        None => start(client, run, plan, result, now).await,
    }
}

fn error(mut m: Measurement, message: String, now: Timestamp) -> Measurement {
    m.phase = AnalysisPhase::Error;
    m.message = Some(message);
    m.finished_at = Some(Time(now));
    m.resume_at = None;
    m
}

/// The Job's name, as Argo names it: `<run uid>.<metric>.<n>`, the metric's name cut to fit.
fn job_name(run: &AnalysisRun, metric: &str, n: i64) -> String {
    let uid = run.metadata.uid.as_deref().unwrap_or_default();
    let fixed = uid.len() + 2 + n.to_string().len();
    let room = NAME_LIMIT.saturating_sub(fixed);
    let metric: String = metric.chars().take(room).collect();
    format!("{uid}.{metric}.{n}")
}

async fn start(
    client: &Client,
    run: &AnalysisRun,
    plan: &MetricPlan,
    result: Option<&MetricResult>,
    now: Timestamp,
) -> Measurement {
    let pending = Measurement {
        phase: AnalysisPhase::Running,
        started_at: Some(Time(now)),
        ..Measurement::default()
    };
    let Some(spec) = plan.metric.provider.job.as_ref() else {
        return error(pending, "not a job metric".into(), now);
    };
    let ns = run.namespace().unwrap_or_default();
    let n = result.map_or(0, |r| i64::from(r.count) + i64::from(r.error)) + 1;
    let name = job_name(run, &plan.metric.name, n);
    let job_spec = match serde_json::from_value(serde_json::Value::Object(spec.spec.clone())) {
        Ok(s) => s,
        Err(e) => {
            return error(
                pending,
                format!("job.spec is not a batch/v1 JobSpec: {e}; fix the metric's job.spec"),
                now,
            );
        }
    };
    let metadata = spec.metadata.clone().unwrap_or_default();
    let mut labels = metadata.labels.unwrap_or_default();
    labels.insert(
        RUN_UID_LABEL.into(),
        run.metadata.uid.clone().unwrap_or_default(),
    );
    let mut annotations = metadata.annotations.unwrap_or_default();
    annotations.insert("aviary.dev/analysis-run".into(), run.name_any());
    annotations.insert("aviary.dev/metric".into(), plan.metric.name.clone());
    let job = Job {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(ns.clone()),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references: run.controller_owner_ref(&()).map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        spec: Some(job_spec),
        status: None,
    };
    let api: Api<Job> = Api::namespaced(client.clone(), &ns);
    let created = match api
        .create(
            &PostParams {
                field_manager: Some(crate::api::wire::FIELD_MANAGER.into()),
                ..PostParams::default()
            },
            &job,
        )
        .await
    {
        Ok(_) => Ok(()),
        // Created by this run before (a status write lost, another leader): carry on with it.
        Err(kube::Error::Api(e)) if e.code == 409 => match api.get(&name).await {
            Ok(existing) if owned_by(&existing, run) => Ok(()),
            Ok(_) => Err(format!(
                "Job '{name}' exists and does not belong to this AnalysisRun"
            )),
            Err(e) => Err(format!("Job '{name}' exists but cannot be read: {e}")),
        },
        Err(kube::Error::Api(e)) if matches!(e.code, 400 | 422) => Err(format!(
            "the API server refused Job '{name}': {}; fix the metric's job",
            e.message
        )),
        Err(e) => Err(format!("creating Job '{name}' failed: {e}")),
    };
    match created {
        Ok(()) => Measurement {
            metadata: BTreeMap::from([(JOB_NAME_KEY.into(), name), (JOB_NAMESPACE_KEY.into(), ns)]),
            resume_at: Some(Time(add(now, POLL))),
            ..pending
        },
        Err(message) => error(pending, message, now),
    }
}

fn owned_by(job: &Job, run: &AnalysisRun) -> bool {
    job.owner_references()
        .iter()
        .any(|o| o.controller == Some(true) && Some(&o.uid) == run.metadata.uid.as_ref())
}

fn add(t: Timestamp, d: Duration) -> Timestamp {
    k8s_openapi::jiff::SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_add(d).ok())
        .unwrap_or(t)
}

async fn resume(
    client: &Client,
    run: &AnalysisRun,
    last: &Measurement,
    now: Timestamp,
) -> Measurement {
    let name = last.metadata.get(JOB_NAME_KEY).cloned().unwrap_or_default();
    let ns = last
        .metadata
        .get(JOB_NAMESPACE_KEY)
        .cloned()
        .unwrap_or_else(|| run.namespace().unwrap_or_default());
    let api: Api<Job> = Api::namespaced(client.clone(), &ns);
    let job = match api.get_opt(&name).await {
        Ok(Some(job)) => job,
        Ok(None) => {
            return error(
                last.clone(),
                format!("Job '{name}' no longer exists (deleted before it finished)"),
                now,
            );
        }
        // Not an answer about the Job: looked at again later.
        Err(e) => {
            return Measurement {
                message: Some(format!("reading Job '{name}' failed: {e}; trying again")),
                resume_at: Some(Time(add(now, POLL))),
                ..last.clone()
            };
        }
    };
    let condition = |kind: &str| {
        job.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == kind && c.status == "True"))
    };
    if condition("Complete").is_some() {
        return Measurement {
            phase: AnalysisPhase::Successful,
            message: None,
            finished_at: Some(Time(now)),
            resume_at: None,
            ..last.clone()
        };
    }
    if let Some(failed) = condition("Failed") {
        let why = [failed.reason.as_deref(), failed.message.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(": ");
        return Measurement {
            phase: AnalysisPhase::Failed,
            message: Some(format!("Job '{name}' failed: {why}")),
            finished_at: Some(Time(now)),
            resume_at: None,
            ..last.clone()
        };
    }
    Measurement {
        message: None,
        resume_at: Some(Time(add(now, POLL))),
        ..last.clone()
    }
}

/// Deletes the Jobs of a run's unfinished job measurements (the run ended or was terminated),
/// with their pods. Best effort: a Job left behind goes with its AnalysisRun.
pub async fn delete_unfinished(
    client: &Client,
    run: &AnalysisRun,
    status: &crate::api::AnalysisRunStatus,
) {
    for result in &status.metric_results {
        let Some(last) = result.measurements.last() else {
            continue;
        };
        if last.finished_at.is_some() {
            continue;
        }
        let (Some(name), Some(ns)) = (
            last.metadata.get(JOB_NAME_KEY),
            last.metadata.get(JOB_NAMESPACE_KEY),
        ) else {
            continue;
        };
        let api: Api<Job> = Api::namespaced(client.clone(), ns);
        let dp = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            ..DeleteParams::default()
        };
        if let Err(e) = api.delete(name, &dp).await {
            tracing::info!(job = %name, run = %run.name_any(), error = %e, "could not delete the Job of an ended run");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_names_fit_63_characters_as_argo_cuts_them() {
        let run = AnalysisRun {
            metadata: ObjectMeta {
                uid: Some("0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0".into()),
                ..ObjectMeta::default()
            },
            ..AnalysisRun::default()
        };
        assert_eq!(
            job_name(&run, "smoke", 1),
            "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0.smoke.1"
        );
        let long = job_name(&run, &"m".repeat(60), 12);
        assert_eq!(long.len(), 63, "{long}");
        assert!(long.ends_with(".12"));
    }
}
