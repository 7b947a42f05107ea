//! The Job provider, as Argo Rollouts runs it: each measurement creates a `batch/v1` Job from
//! the metric's `job` (owned by the AnalysisRun, named `<run uid>.<metric>.<n>`); the
//! measurement stays Running, and is looked at again every [`POLL`], until the Job completes
//! (Successful) or fails (Failed). Unlike the other providers it spans reconciles, so the
//! measurement itself (its `job-name` metadata) is what a later reconcile, or another leader,
//! resumes from: no state is kept in the controller.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
#[cfg(test)]
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ListParams, PostParams, PropagationPolicy,
};
use kube::{Client, Resource, ResourceExt};

use crate::analysis::run::MetricPlan;
use crate::api::{AnalysisPhase, AnalysisRun, Measurement, MetricResult};

/// Measurement metadata naming the Job (Argo's keys).
pub const JOB_NAME_KEY: &str = "job-name";
pub const JOB_NAMESPACE_KEY: &str = "job-namespace";
/// The label a Job carries with its AnalysisRun's uid (Argo's key, so its tooling finds them).
pub const RUN_UID_LABEL: &str = "analysisrun.argoproj.io/uid";
/// Annotations naming the run and the metric (Argo's keys).
pub const RUN_NAME_ANNOTATION: &str = "analysisrun.argoproj.io/name";
pub const RUN_NAMESPACE_ANNOTATION: &str = "analysisrun.argoproj.io/namespace";
pub const METRIC_ANNOTATION: &str = "analysisrun.argoproj.io/metric-name";
/// How often a running Job is looked at.
pub const POLL: Duration = Duration::from_secs(2);
/// Kubernetes' limit for a Job's name (it becomes a label value on its pods).
const NAME_LIMIT: usize = 63;

/// Measures `plan`'s job metric of `run`: resumes the Job of an unfinished last measurement,
/// or creates the next one. `None` while a Job runs (nothing to write: the reconcile looks again
/// in [`POLL`]). Never fails: a problem is an Error measurement saying what.
pub async fn measure(
    client: &Client,
    run: &AnalysisRun,
    plan: &MetricPlan,
    result: Option<&MetricResult>,
) -> Option<Measurement> {
    let now = Timestamp::now();
    let unfinished = result
        .and_then(|r| r.measurements.last())
        .filter(|m| m.finished_at.is_none() && m.metadata.contains_key(JOB_NAME_KEY));
    match unfinished {
        Some(last) => resume(client, run, last, now).await,
        None => Some(start(client, run, plan, result, now).await),
    }
}

fn error(mut m: Measurement, message: String, now: Timestamp) -> Measurement {
    m.phase = AnalysisPhase::Error;
    m.message = Some(message);
    m.finished_at = Some(Time(now));
    m.resume_at = None;
    m
}

/// The Job's name, as Argo names it: `<run uid>.<metric>.<n>`. A metric name too long for 63
/// characters is cut, with a hash of the whole name (Argo only cuts, so two metrics of one run
/// that share their first characters would share Jobs), and never ends a DNS label on `-`.
fn job_name(run: &AnalysisRun, metric: &str, n: i64) -> String {
    let uid = run.metadata.uid.as_deref().unwrap_or_default();
    let whole = format!("{uid}.{metric}.{n}");
    if whole.len() <= NAME_LIMIT {
        return whole;
    }
    let hash = format!("{:08x}", fnv1a(metric));
    let room = NAME_LIMIT.saturating_sub(uid.len() + 3 + hash.len() + n.to_string().len());
    let cut: String = metric.chars().take(room).collect();
    let cut = cut.trim_end_matches(|c: char| !c.is_ascii_alphanumeric());
    format!("{uid}.{cut}-{hash}.{n}")
}

/// 32-bit FNV-1a: a short, stable tag of a metric's whole name.
fn fnv1a(text: &str) -> u32 {
    text.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
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
    let metadata = spec.metadata.clone().unwrap_or_default();
    let mut labels = metadata.labels.unwrap_or_default();
    labels.insert(
        RUN_UID_LABEL.into(),
        run.metadata.uid.clone().unwrap_or_default(),
    );
    let mut annotations = metadata.annotations.unwrap_or_default();
    annotations.insert(RUN_NAME_ANNOTATION.into(), run.name_any());
    annotations.insert(RUN_NAMESPACE_ANNOTATION.into(), ns.clone());
    annotations.insert(METRIC_ANNOTATION.into(), plan.metric.name.clone());
    // The spec as written (not through our JobSpec type, which would drop a field it does not
    // know): the API server checks it.
    let mut job = DynamicObject::new(&name, &job_resource()).within(&ns);
    job.metadata.labels = Some(labels);
    job.metadata.annotations = Some(annotations);
    job.metadata.owner_references = run.controller_owner_ref(&()).map(|o| vec![o]);
    job.data = serde_json::json!({"spec": spec.spec});
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &job_resource());
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
        // Created by this measurement before (a status write lost, another leader): carry on.
        Err(kube::Error::Api(e)) if e.code == 409 => {
            match Api::<Job>::namespaced(client.clone(), &ns).get(&name).await {
                Ok(existing) if owned_by(&existing, run, &plan.metric.name) => Ok(()),
                Ok(_) => Err(format!(
                    "Job '{name}' exists and is not this AnalysisRun's for metric '{}'",
                    plan.metric.name
                )),
                Err(e) => Err(format!("Job '{name}' exists but cannot be read: {e}")),
            }
        }
        Err(kube::Error::Api(e)) if matches!(e.code, 400 | 422) => Err(format!(
            "the API server refused Job '{name}': {}; fix the metric's job",
            e.message
        )),
        Err(e) => Err(format!("creating Job '{name}' failed: {e}")),
    };
    match created {
        Ok(()) => {
            prune_finished(client, run, &plan.metric.name, plan.policy.retention).await;
            Measurement {
                metadata: BTreeMap::from([
                    (JOB_NAME_KEY.into(), name),
                    (JOB_NAMESPACE_KEY.into(), ns),
                ]),
                resume_at: Some(Time(add(now, POLL))),
                ..pending
            }
        }
        Err(message) => error(pending, message, now),
    }
}

fn job_resource() -> ApiResource {
    ApiResource::erase::<Job>(&())
}

/// The run's Jobs (by its uid label), of one metric or all.
async fn jobs_of(client: &Client, run: &AnalysisRun, metric: Option<&str>) -> Vec<Job> {
    let ns = run.namespace().unwrap_or_default();
    let uid = run.metadata.uid.clone().unwrap_or_default();
    let api: Api<Job> = Api::namespaced(client.clone(), &ns);
    match api
        .list(&ListParams::default().labels(&format!("{RUN_UID_LABEL}={uid}")))
        .await
    {
        Ok(list) => list
            .items
            .into_iter()
            .filter(|j| {
                owned_by_run(j, run)
                    && metric.is_none_or(|m| {
                        j.annotations().get(METRIC_ANNOTATION).map(String::as_str) == Some(m)
                    })
            })
            .collect(),
        Err(e) => {
            tracing::info!(run = %run.name_any(), error = %e, "could not list the run's Jobs");
            vec![]
        }
    }
}

fn finished(job: &Job) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| {
            c.iter()
                .any(|c| matches!(c.type_.as_str(), "Complete" | "Failed") && c.status == "True")
        })
}

async fn delete(client: &Client, job: &Job) {
    let api: Api<Job> = Api::namespaced(client.clone(), &job.namespace().unwrap_or_default());
    let dp = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..DeleteParams::default()
    };
    if let Err(e) = api.delete(&job.name_any(), &dp).await {
        tracing::info!(job = %job.name_any(), error = %e, "could not delete a Job");
    }
}

/// Keeps the newest `keep` finished Jobs of a metric (its measurement retention), as Argo's
/// GarbageCollect does: a background analysis every minute would otherwise leave a Job and a
/// pod per minute until the run goes.
async fn prune_finished(client: &Client, run: &AnalysisRun, metric: &str, keep: usize) {
    let mut done: Vec<Job> = jobs_of(client, run, Some(metric))
        .await
        .into_iter()
        .filter(finished)
        .collect();
    done.sort_by_key(|j| j.metadata.creation_timestamp.as_ref().map(|t| t.0));
    let excess = done.len().saturating_sub(keep);
    for job in &done[..excess] {
        delete(client, job).await;
    }
}

/// Deletes the run's Jobs that have not finished (the run ended or was terminated), found by
/// its label, so a Job whose measurement never reached status goes too. Finished Jobs stay
/// (their pods' logs) until the run is deleted.
pub async fn delete_unfinished(client: &Client, run: &AnalysisRun) {
    for job in jobs_of(client, run, None).await {
        if !finished(&job) {
            delete(client, &job).await;
        }
    }
}

fn owned_by_run(job: &Job, run: &AnalysisRun) -> bool {
    job.owner_references()
        .iter()
        .any(|o| o.controller == Some(true) && Some(&o.uid) == run.metadata.uid.as_ref())
}

fn owned_by(job: &Job, run: &AnalysisRun, metric: &str) -> bool {
    owned_by_run(job, run)
        && job.annotations().get(METRIC_ANNOTATION).map(String::as_str) == Some(metric)
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
) -> Option<Measurement> {
    let name = last.metadata.get(JOB_NAME_KEY).cloned().unwrap_or_default();
    // Always the run's own namespace: status is not trusted to name another.
    let ns = run.namespace().unwrap_or_default();
    let api: Api<Job> = Api::namespaced(client.clone(), &ns);
    let job = match api.get_opt(&name).await {
        Ok(Some(job)) if owned_by_run(&job, run) => job,
        Ok(Some(_)) => {
            return Some(error(
                last.clone(),
                format!("Job '{name}' is not this AnalysisRun's"),
                now,
            ));
        }
        Ok(None) => {
            return Some(error(
                last.clone(),
                format!("Job '{name}' no longer exists (deleted before its result was read)"),
                now,
            ));
        }
        // As Argo: an Error measurement (counted towards consecutiveErrorLimit); the next one
        // starts a new Job.
        Err(e) => {
            return Some(error(
                last.clone(),
                format!("reading Job '{name}' failed: {e}"),
                now,
            ));
        }
    };
    let condition = |kind: &str| {
        job.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == kind && c.status == "True"))
    };
    if condition("Complete").is_some() {
        return Some(Measurement {
            phase: AnalysisPhase::Successful,
            message: None,
            finished_at: Some(Time(now)),
            resume_at: None,
            ..last.clone()
        });
    }
    if let Some(failed) = condition("Failed") {
        let why = [failed.reason.as_deref(), failed.message.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(": ");
        return Some(Measurement {
            phase: AnalysisPhase::Failed,
            message: Some(format!("Job '{name}' failed: {why}")),
            finished_at: Some(Time(now)),
            resume_at: None,
            ..last.clone()
        });
    }
    // Still running: nothing changed, nothing to write.
    None
}

/// The measurement that ends a job metric's unfinished one when its run is terminated (Argo's
/// Terminate: Successful, "Metric Terminated"); `None` when the last measurement is not a
/// running Job's.
pub fn terminated(result: &MetricResult, now: Timestamp) -> Option<Measurement> {
    let last = result.measurements.last()?;
    (last.finished_at.is_none() && last.metadata.contains_key(JOB_NAME_KEY)).then(|| Measurement {
        phase: AnalysisPhase::Successful,
        message: Some("Metric Terminated".into()),
        finished_at: Some(Time(now)),
        resume_at: None,
        ..last.clone()
    })
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
        assert!(long.len() <= 63, "{long}");
        assert!(long.ends_with(".12"));
        // Found by review: two metrics sharing their first characters, and a cut ending a DNS
        // label on '-'.
        let eu = job_name(&run, "checkout-latency-p99-region-eu", 1);
        let us = job_name(&run, "checkout-latency-p99-region-us", 1);
        assert_ne!(eu, us);
        for name in [eu, us, job_name(&run, "aaaaaaaaaaaaaaaaaaaaaaa-b", 1)] {
            assert!(name.len() <= 63, "{name}");
            assert!(
                name.split('.')
                    .all(|l| l.ends_with(|c: char| c.is_ascii_alphanumeric())),
                "{name}"
            );
        }
    }
}
