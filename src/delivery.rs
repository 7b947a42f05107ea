//! Delivery figures and notification triggers, derived from what one reconcile changed.
//!
//! The planner already says what happened: it emits `RolloutCompleted` when a new revision is
//! fully promoted, `RolloutAborted` when an update is aborted (by a user or a failed analysis) and
//! `SkipSteps` (canary) or `RolloutRollback` (blue-green) when the template returns to the stable
//! revision mid-update (an undo or a GitOps revert). This module turns those Events, and the difference between the status a reconcile
//! started from and the one it wrote, into [`Transition`]s — the only input of the delivery
//! (DORA) metrics and of the notifications. Pure: time and the revision's creation time are passed
//! in, so every rule is a table test.
//!
//! | figure | from |
//! |---|---|
//! | deployments completed | `RolloutCompleted` |
//! | deployments aborted | `RolloutAborted` (once per abort) |
//! | deployments rolled back | `SkipSteps` / `RolloutRollback` (template back to the stable revision mid-update, not after an abort) |
//! | lead time | `RolloutCompleted` time − creation of the revision's ReplicaSet |
//! | time to restore | first abort (`status.abortedAt`) → the rollout next `Healthy`, on any revision |

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use crate::api::wire::reasons;
use crate::api::{AnalysisPhase, CanaryStep, PauseReason, RolloutPhase, RolloutStatus};
use crate::plan::Event;

/// Something a person or a dashboard cares about happened to a rollout.
#[derive(Clone, Debug, PartialEq)]
pub enum Transition {
    /// A new revision was fully promoted.
    Promoted {
        revision: String,
        /// From the revision's ReplicaSet being created to now (unknown if the ReplicaSet is not
        /// in the cache).
        lead_time: Option<Duration>,
    },
    /// The update was aborted: traffic went back to the stable revision.
    Aborted { revision: String, message: String },
    /// The template went back to the stable revision mid-update: the update was abandoned.
    RolledBack { revision: String },
    /// The rollout stopped and waits for a person: an indefinite pause step, `spec.paused` or an
    /// inconclusive analysis.
    Paused { revision: String, reason: String },
    /// An AnalysisRun of the rollout ended Failed or Error.
    AnalysisFailed {
        run: String,
        phase: AnalysisPhase,
        message: String,
    },
    /// The rollout is Healthy again after an abort.
    Restored { revision: String, after: Duration },
}

impl Transition {
    /// The trigger name used in notification settings and payloads.
    pub fn trigger(&self) -> Trigger {
        match self {
            Transition::Promoted { .. } => Trigger::Promoted,
            Transition::Aborted { .. } => Trigger::Aborted,
            Transition::RolledBack { .. } => Trigger::RolledBack,
            Transition::Paused { .. } => Trigger::Paused,
            Transition::AnalysisFailed { .. } => Trigger::AnalysisFailed,
            Transition::Restored { .. } => Trigger::Restored,
        }
    }
}

/// The kinds of [`Transition`], as named in flags, config and payloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Trigger {
    Promoted,
    Aborted,
    RolledBack,
    Paused,
    AnalysisFailed,
    Restored,
}

impl Trigger {
    pub const ALL: [Trigger; 6] = [
        Trigger::Promoted,
        Trigger::Aborted,
        Trigger::RolledBack,
        Trigger::Paused,
        Trigger::AnalysisFailed,
        Trigger::Restored,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Promoted => "promoted",
            Trigger::Aborted => "aborted",
            Trigger::RolledBack => "rolled-back",
            Trigger::Paused => "paused",
            Trigger::AnalysisFailed => "analysis-failed",
            Trigger::Restored => "restored",
        }
    }
}

impl std::str::FromStr for Trigger {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Trigger::ALL
            .into_iter()
            .find(|t| t.as_str() == s.trim())
            .ok_or_else(|| {
                format!(
                    "unknown notification trigger '{s}' (one of: {})",
                    Trigger::ALL.map(Trigger::as_str).join(", ")
                )
            })
    }
}

/// What one reconcile changed, and the facts needed to date it.
pub struct Change<'a> {
    /// The status the reconcile started from (fresh from the API server).
    pub old: &'a RolloutStatus,
    /// The status it wrote.
    pub new: &'a RolloutStatus,
    /// The planner's Events of this reconcile.
    pub events: &'a [Event],
    /// The Rollout's canary steps (to tell a timed pause from one that waits for a person).
    pub steps: &'a [CanaryStep],
    /// `spec.paused`.
    pub spec_paused: bool,
    /// When the ReplicaSet of the revision being promoted was created.
    pub revision_created: Option<Timestamp>,
    pub now: Timestamp,
}

fn elapsed(from: Timestamp, to: Timestamp) -> Duration {
    let d = to.duration_since(from);
    Duration::try_from(d).unwrap_or(Duration::ZERO)
}

fn has_event(events: &[Event], reason: &str) -> bool {
    events.iter().any(|e| e.reason == reason)
}

/// The analysis-run summaries a status carries, by slot.
fn analysis_slots(st: &RolloutStatus) -> [Option<&crate::api::RolloutAnalysisRunStatus>; 4] {
    let canary = st.canary.as_ref();
    let bg = st.blue_green.as_ref();
    [
        canary.and_then(|c| c.current_step_analysis_run_status.as_ref()),
        canary.and_then(|c| c.current_background_analysis_run_status.as_ref()),
        bg.and_then(|b| b.pre_promotion_analysis_run_status.as_ref()),
        bg.and_then(|b| b.post_promotion_analysis_run_status.as_ref()),
    ]
}

fn failed(phase: AnalysisPhase) -> bool {
    matches!(phase, AnalysisPhase::Failed | AnalysisPhase::Error)
}

/// Why the new status waits for a person, if it entered such a pause in this reconcile.
fn waiting_pause(c: &Change<'_>) -> Option<String> {
    let entered =
        c.new.phase == Some(RolloutPhase::Paused) && c.old.phase != Some(RolloutPhase::Paused);
    if !entered {
        return None;
    }
    if c.spec_paused {
        return Some("manually paused (spec.paused)".into());
    }
    let cond = c.new.pause_conditions.first()?;
    match cond.reason {
        PauseReason::CanaryPauseStep => {
            let idx = c.new.current_step_index.unwrap_or(0);
            let step = usize::try_from(idx).ok().and_then(|i| c.steps.get(i));
            let indefinite = step
                .and_then(|s| s.pause.as_ref())
                .is_some_and(|p| p.duration.is_none());
            indefinite.then(|| {
                format!(
                    "paused at step {}/{} until promoted",
                    idx + 1,
                    c.steps.len()
                )
            })
        }
        PauseReason::BlueGreenPause => Some("waiting for promotion of the preview".into()),
        PauseReason::InconclusiveAnalysisRun => {
            Some("paused by an inconclusive analysis: promote or abort".into())
        }
    }
}

/// The transitions of one reconcile. `pending_abort` is when the rollout was first aborted and
/// not yet restored (kept by the caller across reconciles); the second value is its new value.
pub fn transitions(
    c: &Change<'_>,
    pending_abort: Option<Timestamp>,
) -> (Vec<Transition>, Option<Timestamp>) {
    let mut out = Vec::new();
    let revision = c
        .new
        .current_pod_hash
        .clone()
        .or_else(|| c.new.stable_rs.clone())
        .unwrap_or_default();

    if has_event(c.events, reasons::ROLLOUT_COMPLETED) {
        let revision = c.new.stable_rs.clone().unwrap_or_else(|| revision.clone());
        out.push(Transition::Promoted {
            revision,
            lead_time: c.revision_created.map(|t| elapsed(t, c.now)),
        });
    }
    // An aborted update that is then undone was already counted as aborted: one outcome per
    // attempt, so the change failure rate does not count it twice.
    let back_to_stable =
        has_event(c.events, reasons::SKIP_STEPS) || has_event(c.events, reasons::ROLLOUT_ROLLBACK);
    if back_to_stable && c.old.abort != Some(true) {
        out.push(Transition::RolledBack {
            revision: c.new.stable_rs.clone().unwrap_or_else(|| revision.clone()),
        });
    }
    for (old, new) in analysis_slots(c.old).into_iter().zip(analysis_slots(c.new)) {
        let Some(new) = new.filter(|n| failed(n.status)) else {
            continue;
        };
        let known = old.is_some_and(|o| o.name == new.name && failed(o.status));
        if !known {
            out.push(Transition::AnalysisFailed {
                run: new.name.clone(),
                phase: new.status,
                message: new.message.clone().unwrap_or_default(),
            });
        }
    }
    if let Some(e) = c
        .events
        .iter()
        .find(|e| e.reason == reasons::ROLLOUT_ABORTED)
    {
        out.push(Transition::Aborted {
            revision: revision.clone(),
            message: e.message.clone(),
        });
    }
    if let Some(reason) = waiting_pause(c) {
        out.push(Transition::Paused {
            revision: revision.clone(),
            reason,
        });
    }

    // Restore: the earliest abort not yet followed by a Healthy rollout.
    let aborted_at = [
        pending_abort,
        c.old.aborted_at.as_ref().map(|t| t.0),
        c.new.aborted_at.as_ref().map(|t| t.0),
    ]
    .into_iter()
    .flatten()
    .min();
    let pending = match aborted_at {
        Some(at) if c.new.phase == Some(RolloutPhase::Healthy) && c.new.abort != Some(true) => {
            out.push(Transition::Restored {
                revision: c.new.stable_rs.clone().unwrap_or(revision),
                after: elapsed(at, c.now),
            });
            None
        }
        other => other,
    };
    (out, pending)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{CanaryStatus, PauseCondition, RolloutAnalysisRunStatus, RolloutPause};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    fn status(phase: RolloutPhase) -> RolloutStatus {
        RolloutStatus {
            phase: Some(phase),
            current_pod_hash: Some("new".into()),
            stable_rs: Some("old".into()),
            ..Default::default()
        }
    }

    fn change<'a>(
        old: &'a RolloutStatus,
        new: &'a RolloutStatus,
        events: &'a [Event],
        steps: &'a [CanaryStep],
    ) -> Change<'a> {
        Change {
            old,
            new,
            events,
            steps,
            spec_paused: false,
            revision_created: Some(ts("2026-01-01T10:00:00Z")),
            now: ts("2026-01-01T10:05:00Z"),
        }
    }

    #[test]
    fn completion_is_a_promotion_with_lead_time_from_the_revision_creation() {
        let old = status(RolloutPhase::Progressing);
        let mut new = status(RolloutPhase::Progressing);
        new.stable_rs = Some("new".into());
        let events = [Event::normal(reasons::ROLLOUT_COMPLETED, "done")];
        let (t, pending) = transitions(&change(&old, &new, &events, &[]), None);
        assert_eq!(
            t,
            vec![Transition::Promoted {
                revision: "new".into(),
                lead_time: Some(Duration::from_secs(300))
            }]
        );
        assert_eq!(pending, None);
    }

    #[test]
    fn no_event_no_transition() {
        let old = status(RolloutPhase::Progressing);
        let new = status(RolloutPhase::Progressing);
        let (t, _) = transitions(&change(&old, &new, &[], &[]), None);
        assert!(t.is_empty());
    }

    #[test]
    fn an_abort_is_counted_and_starts_the_restore_clock_which_stops_at_healthy() {
        let old = status(RolloutPhase::Paused);
        let mut new = status(RolloutPhase::Degraded);
        new.abort = Some(true);
        new.aborted_at = Some(Time(ts("2026-01-01T10:01:00Z")));
        let events = [Event::warning(reasons::ROLLOUT_ABORTED, "aborted by user")];
        let (t, pending) = transitions(&change(&old, &new, &events, &[]), None);
        assert_eq!(
            t,
            vec![Transition::Aborted {
                revision: "new".into(),
                message: "aborted by user".into()
            }]
        );
        assert_eq!(pending, Some(ts("2026-01-01T10:01:00Z")));

        // An undo clears abortedAt in the same reconcile that skips the steps; the rollout is
        // still scaling the stable back up: not restored yet, the clock keeps running. The
        // attempt was counted as aborted already: no rolled-back outcome on top.
        let old2 = new.clone();
        let mut new2 = status(RolloutPhase::Progressing);
        new2.current_pod_hash = Some("old".into());
        let events2 = [Event::normal(reasons::SKIP_STEPS, "undo")];
        let (t2, pending2) = transitions(&change(&old2, &new2, &events2, &[]), pending);
        assert_eq!(t2, vec![]);
        assert_eq!(pending2, pending);

        // Healthy: restored four minutes after the abort.
        let old3 = new2.clone();
        let mut new3 = status(RolloutPhase::Healthy);
        new3.current_pod_hash = Some("old".into());
        let (t3, pending3) = transitions(&change(&old3, &new3, &[], &[]), pending2);
        assert_eq!(
            t3,
            vec![Transition::Restored {
                revision: "old".into(),
                after: Duration::from_secs(240)
            }]
        );
        assert_eq!(pending3, None);
    }

    #[test]
    fn an_undo_mid_update_is_a_roll_back() {
        let old = status(RolloutPhase::Paused);
        let mut new = status(RolloutPhase::Progressing);
        new.current_pod_hash = Some("old".into());
        let events = [Event::normal(reasons::SKIP_STEPS, "undo")];
        let (t, pending) = transitions(&change(&old, &new, &events, &[]), None);
        assert_eq!(
            t,
            vec![Transition::RolledBack {
                revision: "old".into()
            }]
        );
        assert_eq!(pending, None);
    }

    #[test]
    fn a_blue_green_rollback_is_a_roll_back_too() {
        let old = status(RolloutPhase::Paused);
        let new = status(RolloutPhase::Healthy);
        let events = [Event::normal(reasons::ROLLOUT_ROLLBACK, "back")];
        let (t, _) = transitions(&change(&old, &new, &events, &[]), None);
        assert_eq!(
            t,
            vec![Transition::RolledBack {
                revision: "old".into()
            }]
        );
    }

    #[test]
    fn the_restore_clock_is_recovered_from_the_status_after_a_restart() {
        // A retried rollout still carries abortedAt until it completes.
        let mut old = status(RolloutPhase::Progressing);
        old.aborted_at = Some(Time(ts("2026-01-01T10:00:30Z")));
        let mut new = old.clone();
        new.phase = Some(RolloutPhase::Healthy);
        new.stable_rs = Some("new".into());
        let (t, pending) = transitions(&change(&old, &new, &[], &[]), None);
        assert_eq!(
            t,
            vec![Transition::Restored {
                revision: "new".into(),
                after: Duration::from_secs(270)
            }]
        );
        assert_eq!(pending, None);
    }

    #[test]
    fn only_pauses_that_wait_for_a_person_are_transitions() {
        let steps: Vec<CanaryStep> = vec![
            CanaryStep {
                pause: Some(RolloutPause {
                    duration: Some(crate::api::Duration::from_secs(10)),
                }),
                ..Default::default()
            },
            CanaryStep {
                pause: Some(RolloutPause { duration: None }),
                ..Default::default()
            },
        ];
        let old = status(RolloutPhase::Progressing);
        let mut new = status(RolloutPhase::Paused);
        new.pause_conditions = vec![PauseCondition {
            reason: PauseReason::CanaryPauseStep,
            start_time: Time(ts("2026-01-01T10:00:00Z")),
        }];
        new.current_step_index = Some(0);
        let (t, _) = transitions(&change(&old, &new, &[], &steps), None);
        assert!(t.is_empty(), "a timed pause is progress: {t:?}");
        new.current_step_index = Some(1);
        let (t, _) = transitions(&change(&old, &new, &[], &steps), None);
        assert_eq!(
            t,
            vec![Transition::Paused {
                revision: "new".into(),
                reason: "paused at step 2/2 until promoted".into()
            }]
        );
        // Already paused: nothing new.
        let (t, _) = transitions(&change(&new, &new, &[], &steps), None);
        assert!(t.is_empty());
    }

    #[test]
    fn a_failed_analysis_is_reported_once() {
        let old = status(RolloutPhase::Progressing);
        let mut new = status(RolloutPhase::Degraded);
        new.canary = Some(CanaryStatus {
            current_step_analysis_run_status: Some(RolloutAnalysisRunStatus {
                name: "web-abc-2".into(),
                status: AnalysisPhase::Failed,
                message: Some("error rate 0.2 > 0.01".into()),
            }),
            ..Default::default()
        });
        let (t, _) = transitions(&change(&old, &new, &[], &[]), None);
        assert_eq!(
            t,
            vec![Transition::AnalysisFailed {
                run: "web-abc-2".into(),
                phase: AnalysisPhase::Failed,
                message: "error rate 0.2 > 0.01".into()
            }]
        );
        let (t, _) = transitions(&change(&new, &new, &[], &[]), None);
        assert!(t.is_empty());
    }

    #[test]
    fn triggers_parse_and_print() {
        for t in Trigger::ALL {
            assert_eq!(t.as_str().parse::<Trigger>(), Ok(t));
        }
        assert!("promote".parse::<Trigger>().is_err());
    }
}
