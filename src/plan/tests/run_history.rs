//! F16: `spec.analysis.successfulRunHistoryLimit` / `unsuccessfulRunHistoryLimit` were never
//! read: every AnalysisRun, retired ones included, was kept for ever.

use super::*;
use crate::api::{
    AnalysisPhase::{Failed, Running, Successful},
    BlueGreenStatus, CanaryStatus, RolloutAnalysisRunStatus, RolloutStatus,
};

const STEP_ANALYSIS: &str = r#"
apiVersion: aviary.dev/v1alpha1
kind: Rollout
metadata: {name: web, namespace: t, generation: 1, uid: u1}
spec:
  replicas: 2
  revisionHistoryLimit: 20
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: "web:1"}]}
  strategy:
    canary:
      canaryService: web-canary
      stableService: web-stable
      trafficRouting: {istio: {virtualService: {name: web}}}
      steps:
      - setWeight: 50
      - analysis: {templates: [{templateName: error-rate}]}
      - pause: {}
"#;

fn with_limits(yaml: &str, successful: Option<i32>, unsuccessful: Option<i32>) -> Rollout {
    let mut ro = rollout(yaml);
    if successful.is_some() || unsuccessful.is_some() {
        ro.spec.analysis = Some(crate::api::AnalysisRunHistory {
            successful_run_history_limit: successful,
            unsuccessful_run_history_limit: unsuccessful,
        });
    }
    ro
}

/// A run of the table: `(name, hash, phase, retired)`.
type Row = (&'static str, &'static str, AnalysisPhase, bool);

/// One case: limits, the status (stable, current), the ReplicaSets, the runs oldest first, the
/// names the status records, and the runs that must be deleted.
struct Case {
    name: &'static str,
    limits: (Option<i32>, Option<i32>),
    stable: &'static str,
    current: &'static str,
    replica_sets: &'static [&'static str],
    runs: &'static [Row],
    recorded: &'static [&'static str],
    deleted: &'static [&'static str],
}

fn record((name, hash, phase, retired): &Row) -> AnalysisRunRecord {
    AnalysisRunRecord {
        name: name.to_string(),
        hash: (!hash.is_empty()).then(|| hash.to_string()),
        phase: *phase,
        retired: *retired,
    }
}

fn status(stable: &str, current: &str, recorded: &[&str]) -> RolloutStatus {
    let rec = |i: usize| {
        recorded.get(i).map(|n| RolloutAnalysisRunStatus {
            name: n.to_string(),
            status: Successful,
            message: None,
        })
    };
    RolloutStatus {
        stable_rs: Some(stable.into()),
        current_pod_hash: Some(current.into()),
        canary: Some(CanaryStatus {
            current_step_analysis_run_status: rec(0),
            current_background_analysis_run_status: rec(1),
            ..Default::default()
        }),
        blue_green: Some(BlueGreenStatus {
            pre_promotion_analysis_run_status: rec(2),
            post_promotion_analysis_run_status: rec(3),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn deletions(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::DeleteAnalysisRun { name } => Some(name.clone()),
            _ => None,
        })
        .collect()
}

/// Prunes `history` for a rollout in `old` status whose plan writes `new`.
fn prune_with(
    ro: &Rollout,
    old: RolloutStatus,
    new: RolloutStatus,
    replica_sets: &[&str],
    history: Vec<AnalysisRunRecord>,
) -> Vec<String> {
    let mut ro = ro.clone();
    ro.status = Some(old);
    let analysis_runs = history
        .iter()
        .filter(|r| !r.retired)
        .filter_map(|r| {
            Some(ObservedAnalysisRun {
                name: r.name.clone(),
                kind: AnalysisKind::Step(1),
                hash: r.hash.clone()?,
                phase: r.phase,
                message: None,
                steps_hash: None,
            })
        })
        .collect();
    let observed = Observed {
        rollout: &ro,
        replica_sets: replica_sets
            .iter()
            .map(|h| ObservedReplicaSet {
                name: format!("web-{h}"),
                hash: h.to_string(),
                ..Default::default()
            })
            .collect(),
        services: vec![],
        current_weight: None,
        subset_hashes: None,
        analysis_runs,
        analysis_run_history: history,
        pods: None,
        workload: None,
        now: Timestamp::from_second(1_700_000_000).expect("time"),
    };
    let plan = Plan {
        actions: vec![],
        status: new,
        events: vec![],
        requeue_after: None,
    };
    deletions(&crate::plan::run_history::prune(&observed, &plan))
}

#[test]
fn finished_runs_beyond_the_history_limits_are_deleted_oldest_first() {
    use AnalysisPhase as P;
    let cases = [
        Case {
            name: "the issue: 4 successful runs, limit 1: the 3 oldest go",
            limits: (Some(1), Some(1)),
            stable: "d",
            current: "d",
            replica_sets: &["a", "b", "c", "d"],
            runs: &[
                ("a-1", "a", P::Successful, true),
                ("b-1", "b", P::Successful, true),
                ("c-1", "c", P::Successful, true),
                ("d-1", "d", P::Successful, false),
            ],
            recorded: &[],
            deleted: &["c-1", "b-1", "a-1"],
        },
        Case {
            name: "defaults are 5 and 5",
            limits: (None, None),
            stable: "a",
            current: "a",
            replica_sets: &["a"],
            runs: &[
                ("s1", "a", P::Successful, true),
                ("s2", "a", P::Successful, true),
                ("f1", "a", P::Failed, true),
                ("s3", "a", P::Successful, true),
                ("s4", "a", P::Successful, true),
                ("s5", "a", P::Successful, true),
                ("s6", "a", P::Successful, true),
                ("s7", "a", P::Successful, false),
            ],
            recorded: &[],
            deleted: &["s2", "s1"],
        },
        Case {
            name: "Failed, Error and Inconclusive share the unsuccessful limit",
            limits: (Some(1), Some(1)),
            stable: "a",
            current: "a",
            replica_sets: &["a"],
            runs: &[
                ("f", "a", P::Failed, true),
                ("e", "a", P::Error, true),
                ("i", "a", P::Inconclusive, true),
                ("s", "a", P::Successful, true),
            ],
            recorded: &[],
            deleted: &["e", "f"],
        },
        Case {
            name: "a run that has not finished is never deleted nor counted",
            limits: (Some(0), Some(0)),
            stable: "a",
            current: "a",
            replica_sets: &["a"],
            runs: &[
                ("p", "a", P::Pending, true),
                ("r", "a", P::Running, false),
                ("s", "a", P::Successful, true),
            ],
            recorded: &[],
            deleted: &["s"],
        },
        Case {
            name: "while a revision rolls out, its runs that count are its verdicts",
            limits: (Some(0), Some(0)),
            stable: "a",
            current: "b",
            replica_sets: &["a", "b"],
            runs: &[
                ("a-1", "a", P::Successful, true),
                ("b-aborted", "b", P::Failed, true),
                ("b-1", "b", P::Successful, false),
                ("b-2", "b", P::Inconclusive, false),
            ],
            recorded: &[],
            deleted: &["b-aborted", "a-1"],
        },
        Case {
            name: "the runs the status records are kept and not counted",
            limits: (Some(1), Some(0)),
            stable: "a",
            current: "a",
            replica_sets: &["a"],
            runs: &[
                ("old", "a", P::Successful, true),
                ("step", "a", P::Successful, true),
                ("bg", "a", P::Failed, true),
                ("pre", "a", P::Successful, true),
                ("post", "a", P::Successful, true),
            ],
            recorded: &["step", "bg", "pre", "post"],
            deleted: &[],
        },
        Case {
            name: "a run of a revision whose ReplicaSet is gone, or of none, goes (as Argo)",
            limits: (Some(5), Some(5)),
            stable: "b",
            current: "b",
            replica_sets: &["b"],
            runs: &[
                ("gone", "a", P::Successful, true),
                ("unlabelled", "", P::Failed, false),
                ("b-1", "b", P::Successful, false),
            ],
            recorded: &[],
            deleted: &["unlabelled", "gone"],
        },
        Case {
            name: "within the limits nothing goes",
            limits: (Some(2), Some(2)),
            stable: "b",
            current: "b",
            replica_sets: &["a", "b"],
            runs: &[
                ("a-1", "a", P::Failed, true),
                ("a-2", "a", P::Successful, true),
                ("b-1", "b", P::Successful, false),
            ],
            recorded: &[],
            deleted: &[],
        },
    ];
    for case in cases {
        let ro = with_limits(STEP_ANALYSIS, case.limits.0, case.limits.1);
        let st = status(case.stable, case.current, case.recorded);
        let history: Vec<_> = case.runs.iter().map(record).collect();
        let deleted = prune_with(
            &ro,
            st.clone(),
            st.clone(),
            case.replica_sets,
            history.clone(),
        );
        assert_eq!(deleted, case.deleted, "{}", case.name);
        // Applied, the state holds: planning it again deletes nothing.
        let left: Vec<_> = history
            .into_iter()
            .filter(|r| !deleted.contains(&r.name))
            .collect();
        let again = prune_with(&ro, st.clone(), st, case.replica_sets, left);
        assert!(again.is_empty(), "{}: deleted again {again:?}", case.name);
    }
}

/// The plan that promotes writes a steady status; should that write fail, the next reconcile
/// plans from the old one and reads the verdicts again: they stay until both agree.
#[test]
fn the_verdicts_stay_until_the_written_and_the_read_status_are_both_steady() {
    let ro = with_limits(STEP_ANALYSIS, Some(0), Some(0));
    let runs = vec![record(&("b-1", "b", Successful, false))];
    let progressing = status("a", "b", &[]);
    let promoted = status("b", "b", &[]);
    let rs = &["a", "b"];
    assert!(prune_with(&ro, progressing.clone(), promoted.clone(), rs, runs.clone()).is_empty());
    assert!(prune_with(&ro, promoted.clone(), progressing, rs, runs.clone()).is_empty());
    assert_eq!(
        prune_with(&ro, promoted.clone(), promoted, rs, runs),
        ["b-1"]
    );
}

/// Marks every run still going as finished with `phase` (the fake analysis controller).
fn finish_runs(w: &mut World, phase: AnalysisPhase) {
    for r in w.runs.iter_mut().filter(|r| !r.phase.is_completed()) {
        r.phase = phase;
    }
}

fn kept_runs(w: &World) -> Vec<String> {
    w.history().into_iter().map(|r| r.name).collect()
}

/// The issue's sequence: four updates, each passing its analysis, with a limit of 1: one run is
/// left, the newest; and a rollout at rest plans nothing more.
#[test]
fn f16_four_passed_updates_with_a_limit_of_one_keep_one_run() {
    let mut w = World::new(STEP_ANALYSIS);
    w.ro = with_limits(STEP_ANALYSIS, Some(1), Some(1));
    w.run_analysis = true;
    w.deploy_first();
    for image in ["web:2", "web:3", "web:4", "web:5"] {
        w.update_image(image);
        w.run(10);
        assert_eq!(w.status().current_step_index, Some(1), "{image}");
        finish_runs(&mut w, Successful);
        w.run(10);
        assert_eq!(w.status().current_step_index, Some(2), "{image}");
        // `kubectl aviary promote` past the pause.
        let mut st = w.status();
        st.pause_conditions.clear();
        st.controller_pause = None;
        st.current_step_index = Some(3);
        w.ro.status = Some(st);
        w.run_to_end(20);
        w.advance(60);
        w.run(10);
    }
    let newest = w
        .runs
        .iter()
        .find(|r| r.hash == w.canary_hash())
        .map(|r| r.name.clone());
    assert_eq!(
        kept_runs(&w),
        Vec::from_iter(newest),
        "{:?}",
        w.deleted_runs
    );
    assert_eq!(w.deleted_runs.len(), 3);
    let again = w.reconcile();
    assert!(again.actions.is_empty(), "{:?}", again.actions);
}

/// A failed analysis aborts; its run is never deleted while it is the verdict, nor while the
/// status names it as the reason (limit 0), and deleting it then measures nothing afresh.
#[test]
fn f16_the_failed_verdict_stays_while_the_abort_names_it() {
    let mut w = World::new(STEP_ANALYSIS);
    w.ro = with_limits(STEP_ANALYSIS, Some(0), Some(0));
    w.run_analysis = true;
    w.deploy_first();
    w.update_image("web:2");
    w.run(10);
    finish_runs(&mut w, Failed);
    let run = w.runs[0].name.clone();
    w.run(10);
    let st = w.status();
    assert_eq!(st.abort, Some(true));
    assert_eq!(st.phase, Some(RolloutPhase::Degraded));
    assert!(
        st.message.as_deref().is_some_and(|m| m.contains(&run)),
        "{:?}",
        st.message
    );
    assert_eq!(
        kept_runs(&w),
        std::slice::from_ref(&run),
        "retired, and kept"
    );
    assert!(w.deleted_runs.is_empty());
    assert!(w.reconcile().actions.is_empty());
    // A new revision: the abort is over, and so is its reason.
    w.update_image("web:3");
    w.run(10);
    assert_eq!(w.deleted_runs, [run]);
    assert_eq!(w.status().abort, None);
    assert_eq!(w.status().current_step_index, Some(1));
    let current: Vec<_> = w.runs.iter().map(|r| (r.hash.clone(), r.phase)).collect();
    assert_eq!(current, [(w.canary_hash(), Running)]);
}
