//! `spec.analysis.successfulRunHistoryLimit` / `unsuccessfulRunHistoryLimit`: how many finished
//! AnalysisRuns a rollout keeps. Beyond that, the oldest go — otherwise every update, retry and
//! abort adds runs for ever, growing etcd, the run watch and the controller's caches.
//!
//! As Argo Rollouts does it (`FilterAnalysisRunsToDelete`): the runs the rollout still uses are
//! set apart and never counted; of the others, newest first, a run whose revision has no
//! ReplicaSet any more (or that names no revision) goes, then the newest N Successful and the
//! newest M unsuccessful (Failed, Error, Inconclusive) are kept and the older ones deleted.
//! Aviary never deletes a run that has not finished, nor one the current attempt may still read
//! as its verdict: the runs of the revision rolling out that are not retired, until the old and
//! the new status both show it stable.

use super::{Action, AnalysisRunRecord, Observed, Plan};
use crate::api::{AnalysisPhase, RolloutStatus};

/// `successfulRunHistoryLimit` and `unsuccessfulRunHistoryLimit` when unset, as Argo Rollouts.
pub const DEFAULT_RUN_HISTORY_LIMIT: i32 = 5;

/// The names of the runs a status records (the canary's step and background runs, the blue-green
/// pre- and post-promotion runs).
fn recorded(status: &RolloutStatus) -> impl Iterator<Item = &str> {
    let canary = status.canary.as_ref();
    let blue_green = status.blue_green.as_ref();
    [
        canary.and_then(|c| c.current_step_analysis_run_status.as_ref()),
        canary.and_then(|c| c.current_background_analysis_run_status.as_ref()),
        blue_green.and_then(|b| b.pre_promotion_analysis_run_status.as_ref()),
        blue_green.and_then(|b| b.post_promotion_analysis_run_status.as_ref()),
    ]
    .into_iter()
    .flatten()
    .map(|r| r.name.as_str())
}

/// The deletions that bring the rollout's finished AnalysisRuns back to its history limits,
/// newest first. Never touches a run `plan` acts on.
pub fn prune(observed: &Observed<'_>, plan: &Plan) -> Vec<Action> {
    let history = observed.rollout.spec.analysis.as_ref();
    let limit =
        |l: Option<i32>| usize::try_from(l.unwrap_or(DEFAULT_RUN_HISTORY_LIMIT)).unwrap_or(0);
    let successful = limit(history.and_then(|h| h.successful_run_history_limit));
    let unsuccessful = limit(history.and_then(|h| h.unsuccessful_run_history_limit));

    let old = observed.rollout.status.as_ref();
    let new = &plan.status;
    // The revision rolling out, while it is not stable in both the status read and the status
    // written: its runs are (or, should the write fail, are again) its verdicts.
    let steady = |s: &RolloutStatus| s.stable_rs.is_some() && s.stable_rs == s.current_pod_hash;
    let attempts: Vec<&str> = [old, Some(new)]
        .into_iter()
        .flatten()
        .filter(|s| !steady(s))
        .filter_map(|s| s.current_pod_hash.as_deref())
        .collect();
    let recorded: Vec<&str> = old.into_iter().chain([new]).flat_map(recorded).collect();
    let acted_on = |run: &AnalysisRunRecord| {
        plan.actions
            .iter()
            .any(|a| matches!(a, Action::TerminateAnalysisRun { name, .. } if name == &run.name))
    };
    let in_use = |run: &AnalysisRunRecord| {
        !run.phase.is_completed()
            || recorded.contains(&run.name.as_str())
            || (!run.retired && run.hash.as_deref().is_some_and(|h| attempts.contains(&h)))
            || acted_on(run)
    };
    let has_replica_set = |hash: &str| observed.replica_sets.iter().any(|rs| rs.hash == hash);

    let (mut kept_successful, mut kept_unsuccessful) = (0, 0);
    let mut deletions = vec![];
    for run in observed.analysis_run_history.iter().rev() {
        if in_use(run) {
            continue;
        }
        let delete = if !run.hash.as_deref().is_some_and(has_replica_set) {
            // Measured a revision that is gone: nothing can return to it.
            true
        } else {
            let (kept, limit) = match run.phase {
                AnalysisPhase::Successful => (&mut kept_successful, successful),
                AnalysisPhase::Failed | AnalysisPhase::Error | AnalysisPhase::Inconclusive => {
                    (&mut kept_unsuccessful, unsuccessful)
                }
                AnalysisPhase::Pending | AnalysisPhase::Running => continue,
            };
            if *kept < limit {
                *kept += 1;
                false
            } else {
                true
            }
        };
        if delete {
            deletions.push(Action::DeleteAnalysisRun {
                name: run.name.clone(),
            });
        }
    }
    deletions
}
