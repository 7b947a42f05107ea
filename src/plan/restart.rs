//! Restarts: `spec.restartAt` recreates every pod of the Rollout created before that time,
//! without a new revision and without walking the steps — as Argo Rollouts does
//! (`rollout/restart.go`):
//!
//! - a restart is **due** once `restartAt` has passed and is later than `status.restartedAt`
//!   (the last one acted on); one in the future is acted on when it arrives;
//! - pods of every ReplicaSet of the Rollout are restarted, stable first, then the current
//!   revision, then older ones (oldest revision first), each oldest pod first — also while an
//!   update is under way, as Argo does;
//! - a pod is evicted only while the Rollout keeps `max(replicas, pods wanted) − n` available
//!   pods, where `n` is `maxUnavailable` (canary; 0 for blue-green) but at least 1: with the
//!   default 25 % and fewer than 8 replicas, one pod at a time, the next one only once its
//!   replacement is available;
//! - when one is evicted, nothing else happens in that reconcile: the ReplicaSets' availability
//!   no longer counts the pod just evicted, and scaling on it could take away more pods than
//!   allowed (Argo fixed the same hazard by stopping its reconcile there);
//! - it is over — `status.restartedAt = restartAt`, Event `RolloutRestarted` — once no pod
//!   created before `restartAt` is left; a new revision cancels it the same way (its pods are
//!   new anyway, and the old ones go).
//!
//! Stricter than Argo: while a router splits traffic between two ReplicaSets, neither loses its
//! last available pod to a restart (Argo would route that ReplicaSet's share to no pod at all),
//! nor more at once than its own share of `maxUnavailable`; the restart resumes once the
//! ReplicaSet has more pods or the update ends.
//!
//! Pure: the controller lists the pods (only while a restart is due) and applies
//! [`Action::EvictPod`]; everything decided here is a table test.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;

use super::{Action, Event, Observed, ObservedReplicaSet, Plan, after};
use crate::api::wire::reasons;
use crate::api::{Rollout, RolloutStatus};

/// How soon to look again while a restart waits for replacements. The ReplicaSets' status
/// changes wake the reconcile sooner; this covers a pod that turns available after
/// `minReadySeconds` without its ReplicaSet's status changing at that moment, and an eviction
/// a PodDisruptionBudget refused.
pub const RESTART_CHECK: std::time::Duration = std::time::Duration::from_secs(5);

/// A pod of one of the Rollout's ReplicaSets, as a restart needs it (the rest of the object is
/// dropped as soon as it is listed).
#[derive(Clone, Debug, PartialEq)]
pub struct ObservedPod {
    pub name: String,
    /// The ReplicaSet that controls it.
    pub replica_set: String,
    /// `metadata.creationTimestamp` (whole seconds, as the API server stores it).
    pub created: Timestamp,
    /// It has a deletion timestamp: already going.
    pub terminating: bool,
    /// Since when its `Ready` condition is True; `None` when it is not ready.
    pub ready_since: Option<Timestamp>,
}

impl ObservedPod {
    /// Ready for `min_ready_seconds` and not going: what a ReplicaSet counts as available.
    pub fn is_available(&self, min_ready_seconds: i32, now: Timestamp) -> bool {
        !self.terminating
            && self
                .ready_since
                .is_some_and(|t| after(t, i64::from(min_ready_seconds.max(0))) <= now)
    }
}

/// Whether `spec.restartAt` asks for anything now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Due {
    /// No `restartAt`, or it was already acted on.
    No,
    /// `restartAt` is still in the future: look again then.
    Later(Timestamp),
    /// `restartAt` has passed and was not acted on yet.
    Now(Timestamp),
}

/// Whether a restart is due: `restartAt` set, later than `status.restartedAt`, and passed.
pub fn due(ro: &Rollout, now: Timestamp) -> Due {
    let Some(at) = ro.spec.restart_at.as_ref().map(|t| t.0) else {
        return Due::No;
    };
    let done = ro
        .status
        .as_ref()
        .and_then(|s| s.restarted_at.as_ref())
        .is_some_and(|t| t.0 >= at);
    if done {
        Due::No
    } else if at < now {
        Due::Now(at)
    } else {
        Due::Later(at)
    }
}

/// What to do for a due restart.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Decision {
    /// Pods to evict now, in order.
    pub evict: Vec<String>,
    /// Pods created before `restartAt` still there (those evicted now and those already
    /// terminating included): 0 means the restart is over.
    pub remaining: usize,
}

/// `maxUnavailable` as a pod count (a percentage of `replicas` rounded down, as Argo and
/// Deployments do), the canary's or blue-green's (Argo: only restarts read blue-green's), 25 %
/// when unset.
fn max_unavailable(ro: &Rollout, replicas: i32) -> i32 {
    let value = match (ro.spec.canary(), ro.spec.blue_green()) {
        (_, Some(bg)) => bg.max_unavailable.clone().unwrap_or_else(|| {
            IntOrString::String(crate::api::DEFAULT_MAX_SURGE_UNAVAILABLE.into())
        }),
        (Some(canary), None) => canary.max_unavailable(),
        (None, None) => return 0,
    };
    match value {
        IntOrString::Int(n) => n.max(0),
        IntOrString::String(s) => s
            .trim_end_matches('%')
            .trim()
            .parse::<i64>()
            .map(|p| (i64::from(replicas) * p.clamp(0, 100) / 100) as i32)
            .unwrap_or(0),
    }
}

/// The pods to evict next, and how many old ones are left.
///
/// `stable` and `current` are the stable and newest revisions' hashes (restart order);
/// `protected` are the hashes of ReplicaSets a router sends part of the traffic to while it is
/// split: each keeps its last available pod, and loses at most its own share of
/// `maxUnavailable` at a time (a stable shrunk by `dynamicStableScale` to 4 pods of 20 carries
/// 20 % of the traffic: it must not lose 3 of them to a budget counted over all 20).
pub fn decide(
    ro: &Rollout,
    replica_sets: &[ObservedReplicaSet],
    pods: &[ObservedPod],
    restart_at: Timestamp,
    now: Timestamp,
    order: (Option<&str>, Option<&str>),
    protected: &[&str],
) -> Decision {
    let (stable, current) = order;
    let min_ready = ro.spec.min_ready_seconds();
    let replicas = ro.spec.replicas().max(0);
    let wanted: i32 = replica_sets.iter().map(|r| r.replicas.max(0)).sum();
    let concurrent = max_unavailable(ro, replicas).max(1);
    let min_available = replicas.max(wanted) - concurrent;
    let available = pods
        .iter()
        .filter(|p| p.is_available(min_ready, now))
        .count() as i32;
    let mut can_evict = available - min_available;

    let rs_of = |pod: &ObservedPod| replica_sets.iter().find(|r| r.name == pod.replica_set);
    // Stable first, then the current revision, then older ones, oldest first; within a
    // ReplicaSet the oldest pod first. Names break ties so the order is stable.
    let rank = |pod: &ObservedPod| {
        let rs = rs_of(pod);
        let hash = rs.map(|r| r.hash.as_str());
        let group = if hash.is_some() && hash == stable {
            0
        } else if hash.is_some() && hash == current {
            1
        } else {
            2
        };
        let revision = rs.and_then(|r| r.revision).unwrap_or(i64::MAX);
        (group, revision, pod.created, pod.name.clone())
    };
    let mut old: Vec<&ObservedPod> = pods.iter().filter(|p| p.created < restart_at).collect();
    old.sort_by_key(|p| rank(p));

    // Available pods per protected ReplicaSet, lowered as its pods are picked, and the fewest
    // it keeps.
    let mut keep: Vec<(&str, i32, i32)> = protected
        .iter()
        .filter_map(|hash| {
            let rs = replica_sets.iter().find(|r| r.hash == *hash)?;
            let n = pods
                .iter()
                .filter(|p| p.replica_set == rs.name && p.is_available(min_ready, now))
                .count() as i32;
            let share = if replicas > 0 {
                (n * concurrent / replicas).max(1)
            } else {
                1
            };
            Some((rs.name.as_str(), n, (n - share).max(1)))
        })
        .collect();

    let mut evict = vec![];
    for pod in &old {
        if pod.terminating {
            continue;
        }
        // An old pod that is not available costs no availability: replacing it can only help.
        let available = pod.is_available(min_ready, now);
        if available && can_evict <= 0 {
            continue;
        }
        if let Some((_, n, floor)) = keep.iter_mut().find(|(rs, _, _)| *rs == pod.replica_set) {
            if available && *n <= *floor {
                continue;
            }
            if available {
                *n -= 1;
            }
        }
        evict.push(pod.name.clone());
        if available {
            can_evict -= 1;
        }
    }
    Decision {
        evict,
        remaining: old.len(),
    }
}

/// ReplicaSets whose availability counts no more pods than the listing shows available: right
/// after an eviction the ReplicaSet's status still counts the evicted pod.
pub fn with_pod_availability(
    replica_sets: &[ObservedReplicaSet],
    pods: &[ObservedPod],
    min_ready_seconds: i32,
    now: Timestamp,
) -> Vec<ObservedReplicaSet> {
    replica_sets
        .iter()
        .map(|rs| {
            let listed = pods
                .iter()
                .filter(|p| p.replica_set == rs.name && p.is_available(min_ready_seconds, now))
                .count() as i32;
            ObservedReplicaSet {
                available: rs.available.min(listed),
                ..rs.clone()
            }
        })
        .collect()
}

/// The ReplicaSets a router sends traffic to while it splits it between two revisions.
fn split_hashes(status: &RolloutStatus) -> Vec<&str> {
    let Some(w) = status.canary.as_ref().and_then(|c| c.weights.as_ref()) else {
        return vec![];
    };
    match (
        w.canary.pod_template_hash.as_deref(),
        w.stable.pod_template_hash.as_deref(),
    ) {
        // Both sides carry some (whatever the total: 100, or maxTrafficWeight).
        (Some(c), Some(s)) if c != s && w.canary.weight > 0 && w.stable.weight > 0 => {
            vec![c, s]
        }
        _ => vec![],
    }
}

/// Adds the restart to a strategy's plan: a requeue for one not due yet; evictions (and
/// nothing else) for one under way; `status.restartedAt` and an Event when it is over or a new
/// revision cancelled it.
pub fn plan(obs: &Observed<'_>, plan: &mut Plan) {
    let ro = obs.rollout;
    let at = match due(ro, obs.now) {
        Due::No => return,
        Due::Later(at) => {
            plan.requeue_at(obs.now, at);
            return;
        }
        Due::Now(at) => at,
    };
    let old = ro.status.clone().unwrap_or_default();
    if old.current_pod_hash.is_some() && old.current_pod_hash != plan.status.current_pod_hash {
        plan.status.restarted_at = Some(Time(at));
        plan.events.push(Event::normal(
            reasons::ROLLOUT_RESTART_CANCELLED,
            format!(
                "Restart requested for {at} cancelled: a new revision replaces every pod anyway"
            ),
        ));
        return;
    }
    // The controller lists the pods whenever a restart is due; without them, decide nothing.
    let Some(pods) = obs.pods.as_deref() else {
        return;
    };
    let protected = split_hashes(&plan.status);
    let decision = decide(
        ro,
        &obs.replica_sets,
        pods,
        at,
        obs.now,
        (
            plan.status.stable_rs.as_deref(),
            plan.status.current_pod_hash.as_deref(),
        ),
        &protected,
    );
    if decision.remaining == 0 {
        plan.status.restarted_at = Some(Time(at));
        plan.events.push(Event::normal(
            reasons::ROLLOUT_RESTARTED,
            format!("Restarted every pod created before {at}"),
        ));
        return;
    }
    if !decision.evict.is_empty() {
        // Only the evictions this time; the strategy plans again from the next observation.
        plan.actions = decision
            .evict
            .into_iter()
            .map(|name| Action::EvictPod { name })
            .collect();
        plan.status = old;
        plan.events.clear();
        plan.requeue_after = Some(RESTART_CHECK);
        return;
    }
    plan.requeue_after = Some(
        plan.requeue_after
            .map_or(RESTART_CHECK, |d| d.min(RESTART_CHECK)),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + secs).expect("time")
    }

    fn rollout(extra: &str) -> Rollout {
        rollout_of(3, extra)
    }

    fn rollout_of(replicas: i32, extra: &str) -> Rollout {
        let yaml = format!(
            r#"
apiVersion: aviary.dev/v1alpha1
kind: Rollout
metadata: {{name: web, namespace: t, uid: u1}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec: {{containers: [{{name: web, image: "web:1"}}]}}
  strategy:
    canary:
      steps: [{{setWeight: 50}}, {{pause: {{}}}}]
{extra}
"#
        );
        serde_yaml::from_str(&yaml).expect("rollout yaml")
    }

    fn rs(hash: &str, replicas: i32, revision: i64) -> ObservedReplicaSet {
        ObservedReplicaSet {
            name: format!("web-{hash}"),
            hash: hash.into(),
            replicas,
            available: replicas,
            ready: replicas,
            current: replicas,
            revision: Some(revision),
            ..Default::default()
        }
    }

    fn pod(name: &str, hash: &str, created: i64) -> ObservedPod {
        ObservedPod {
            name: name.into(),
            replica_set: format!("web-{hash}"),
            created: t(created),
            terminating: false,
            ready_since: Some(t(created)),
        }
    }

    fn decide_at(
        ro: &Rollout,
        sets: &[ObservedReplicaSet],
        pods: &[ObservedPod],
        protected: &[&str],
    ) -> Decision {
        decide(
            ro,
            sets,
            pods,
            t(100),
            t(200),
            (Some("s"), Some("c")),
            protected,
        )
    }

    #[test]
    fn restart_is_due_once_restart_at_passed_and_was_not_acted_on() {
        let mut ro = rollout("");
        assert_eq!(due(&ro, t(0)), Due::No);
        ro.spec.restart_at = Some(Time(t(10)));
        assert_eq!(due(&ro, t(5)), Due::Later(t(10)));
        assert_eq!(
            due(&ro, t(10)),
            Due::Later(t(10)),
            "not before it has passed"
        );
        assert_eq!(due(&ro, t(11)), Due::Now(t(10)));
        let st = ro.status.get_or_insert_with(Default::default);
        st.restarted_at = Some(Time(t(10)));
        assert_eq!(due(&ro, t(11)), Due::No, "already acted on");
        ro.spec.restart_at = Some(Time(t(5)));
        assert_eq!(due(&ro, t(11)), Due::No, "earlier than the last restart");
        ro.spec.restart_at = Some(Time(t(20)));
        assert_eq!(due(&ro, t(21)), Due::Now(t(20)), "a later one is due again");
    }

    #[test]
    fn three_replicas_restart_one_pod_at_a_time_waiting_for_each_replacement() {
        let ro = rollout("");
        let sets = [rs("s", 3, 1)];
        let mut pods = vec![pod("a", "s", 0), pod("b", "s", 1), pod("c", "s", 2)];
        // All available: one may go (3 replicas − max(25 % of 3 = 0, 1) = 2 must stay).
        let d = decide_at(&ro, &sets, &pods, &[]);
        assert_eq!(
            d.evict,
            vec!["a".to_string()],
            "oldest first, one at a time"
        );
        assert_eq!(d.remaining, 3);
        // "a" terminating, its replacement not ready yet: wait.
        pods[0].terminating = true;
        let mut fresh = pod("a2", "s", 150);
        fresh.ready_since = None;
        pods.push(fresh);
        let d = decide_at(&ro, &sets, &pods, &[]);
        assert!(d.evict.is_empty(), "{d:?}");
        assert_eq!(d.remaining, 3);
        // "a" gone, "a2" ready: the next one.
        pods.remove(0);
        pods[2].ready_since = Some(t(160));
        let d = decide_at(&ro, &sets, &pods, &[]);
        assert_eq!(d.evict, vec!["b".to_string()]);
        assert_eq!(d.remaining, 2);
        // All replaced.
        let pods = [
            pod("a2", "s", 150),
            pod("b2", "s", 160),
            pod("c2", "s", 170),
        ];
        assert_eq!(decide_at(&ro, &sets, &pods, &[]), Decision::default());
    }

    #[test]
    fn a_pod_created_at_restart_at_is_new_enough() {
        let ro = rollout_of(2, "");
        let pods = [pod("a", "s", 100), pod("b", "s", 99)];
        let d = decide_at(&ro, &[rs("s", 2, 1)], &pods, &[]);
        assert_eq!((d.evict, d.remaining), (vec!["b".to_string()], 1));
    }

    #[test]
    fn max_unavailable_sets_how_many_go_at_once() {
        let sets = [rs("s", 8, 1)];
        let pods: Vec<ObservedPod> = (0..8).map(|i| pod(&format!("p{i}"), "s", i)).collect();
        // 25 % of 8 = 2.
        let d = decide_at(&rollout_of(8, ""), &sets, &pods, &[]);
        assert_eq!(d.evict, vec!["p0".to_string(), "p1".to_string()]);
        let d = decide_at(&rollout_of(8, "      maxUnavailable: 3"), &sets, &pods, &[]);
        assert_eq!(d.evict.len(), 3);
        // 0 (with a surge) still restarts: at least one at a time.
        let d = decide_at(
            &rollout_of(8, "      maxUnavailable: 0\n      maxSurge: 1"),
            &sets,
            &pods,
            &[],
        );
        assert_eq!(d.evict.len(), 1);
        // One pod already unavailable uses up one of the two.
        // One pod unavailable already uses one of the two; it goes too, costing nothing.
        let mut short = pods.clone();
        short[7].ready_since = None;
        let d = decide_at(&rollout_of(8, ""), &sets, &short, &[]);
        assert_eq!(d.evict, vec!["p0", "p7"]);
    }

    /// Blue-green's `maxUnavailable` paces restarts only, as in Argo: 25 % when unset.
    #[test]
    fn blue_green_max_unavailable_sets_how_many_go_at_once() {
        let bg = |extra: &str| -> Rollout {
            let yaml = format!(
                r#"
apiVersion: aviary.dev/v1alpha1
kind: Rollout
metadata: {{name: web, namespace: t, uid: u1}}
spec:
  replicas: 8
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec: {{containers: [{{name: web, image: "web:1"}}]}}
  strategy:
    blueGreen:
      activeService: web-active
{extra}
"#
            );
            serde_yaml::from_str(&yaml).expect("rollout yaml")
        };
        let sets = [rs("s", 8, 1)];
        let pods: Vec<ObservedPod> = (0..8).map(|i| pod(&format!("p{i}"), "s", i)).collect();
        for (extra, n) in [
            ("", 2),
            ("      maxUnavailable: 3", 3),
            ("      maxUnavailable: \"50%\"", 4),
            ("      maxUnavailable: 0", 1),
            ("      maxUnavailable: 20", 8),
        ] {
            let d = decide_at(&bg(extra), &sets, &pods, &[]);
            assert_eq!(d.evict.len(), n, "{extra:?}");
        }
    }

    #[test]
    fn an_unready_old_pod_is_replaced_without_costing_availability() {
        let ro = rollout("");
        let sets = [rs("s", 3, 1)];
        let mut pods = vec![pod("a", "s", 0), pod("b", "s", 1), pod("c", "s", 2)];
        pods[2].ready_since = None;
        // 2 available, 2 must stay: no available pod may go, but the unready one may.
        let d = decide_at(&ro, &sets, &pods, &[]);
        assert_eq!((d.evict, d.remaining), (vec!["c".to_string()], 3));
    }

    #[test]
    fn min_ready_seconds_delays_availability() {
        let ro = rollout_of(2, "  minReadySeconds: 30");
        let sets = [rs("s", 2, 1)];
        let mut pods = vec![pod("a", "s", 0), pod("b2", "s", 150)];
        pods[1].ready_since = Some(t(190));
        // b2 ready 10 s ago, needs 30: one available of 2, 1 must stay.
        let d = decide_at(&ro, &sets, &pods, &[]);
        assert!(d.evict.is_empty(), "{d:?}");
        pods[1].ready_since = Some(t(160));
        let d = decide_at(&ro, &sets, &pods, &[]);
        assert_eq!(d.evict, vec!["a".to_string()]);
    }

    #[test]
    fn stable_then_current_then_older_revisions() {
        let ro = rollout("      maxUnavailable: 10");
        let sets = [
            rs("old", 1, 1),
            rs("c", 1, 3),
            rs("s", 1, 2),
            rs("older", 1, 0),
        ];
        let pods = [
            pod("o", "old", 0),
            pod("c", "c", 0),
            pod("s", "s", 5),
            pod("x", "older", 3),
        ];
        let d = decide_at(&ro, &sets, &pods, &[]);
        assert_eq!(d.evict, vec!["s", "c", "x", "o"]);
    }

    #[test]
    fn a_replicaset_carrying_split_traffic_keeps_its_last_available_pod() {
        let ro = rollout("      maxUnavailable: 10");
        let sets = [rs("s", 3, 1), rs("c", 1, 2)];
        let pods = [
            pod("s1", "s", 0),
            pod("s2", "s", 1),
            pod("s3", "s", 2),
            pod("c1", "c", 3),
        ];
        let d = decide_at(&ro, &sets, &pods, &["c", "s"]);
        assert_eq!(d.evict, vec!["s1", "s2"], "the canary's only pod stays");
        assert_eq!(d.remaining, 4);
        let d = decide_at(&ro, &sets, &pods, &[]);
        assert_eq!(d.evict, vec!["s1", "s2", "s3", "c1"]);
    }

    /// A stable shrunk by dynamicStableScale to 4 of 20 pods carries 20 % of the traffic: it
    /// loses at most its share of `maxUnavailable` (1 of 4), not 3 of 4 to the global budget.
    #[test]
    fn a_split_replicaset_loses_at_most_its_share_of_max_unavailable() {
        let ro = rollout_of(20, "      maxUnavailable: 5");
        let sets = [rs("s", 4, 1), rs("c", 16, 2)];
        let mut pods: Vec<ObservedPod> = (0..4).map(|i| pod(&format!("s{i}"), "s", i)).collect();
        pods.extend((0..16).map(|i| pod(&format!("c{i:02}"), "c", 10 + i)));
        let d = decide_at(&ro, &sets, &pods, &["c", "s"]);
        assert_eq!(d.evict, vec!["s0", "c00", "c01", "c02", "c03"]);
    }

    #[test]
    fn pods_outside_the_listing_do_not_count_as_available() {
        let sets = [rs("s", 3, 1)];
        let pods = [pod("a", "s", 0), pod("b", "s", 1)];
        let out = with_pod_availability(&sets, &pods, 0, t(200));
        assert_eq!(out[0].available, 2);
        let out = with_pod_availability(&sets, &[], 0, t(200));
        assert_eq!(out[0].available, 0);
    }

    // ---- through the planner ---------------------------------------------------------

    fn healthy() -> Rollout {
        let mut ro = rollout("");
        let hash = super::super::pod_template_hash(&ro.spec.template, None);
        ro.status = Some(RolloutStatus {
            current_pod_hash: Some(hash.clone()),
            stable_rs: Some(hash.clone()),
            current_step_hash: Some(super::super::hash::hash_of(&ro.spec.steps())),
            current_step_index: Some(2),
            ..Default::default()
        });
        ro
    }

    fn observe<'a>(ro: &'a Rollout, pods: Option<Vec<ObservedPod>>, now: i64) -> Observed<'a> {
        let hash = super::super::pod_template_hash(&ro.spec.template, None);
        Observed {
            rollout: ro,
            replica_sets: vec![rs(&hash, 3, 1)],
            services: vec![],
            current_weight: None,
            subset_hashes: None,
            analysis_runs: vec![],
            analysis_run_history: vec![],
            pods,
            workload: None,
            now: t(now),
        }
    }

    fn pods_of(ro: &Rollout, created: [i64; 3]) -> Vec<ObservedPod> {
        let hash = super::super::pod_template_hash(&ro.spec.template, None);
        created
            .iter()
            .enumerate()
            .map(|(i, c)| pod(&format!("p{i}"), &hash, *c))
            .collect()
    }

    #[test]
    fn the_planner_waits_for_a_future_restart_then_evicts_then_records_it() {
        let mut ro = healthy();
        ro.spec.restart_at = Some(Time(t(100)));
        let p = super::super::plan(&observe(&ro, None, 40));
        assert!(p.actions.is_empty());
        let wait = p.requeue_after.expect("requeue at restartAt");
        assert!(
            wait >= std::time::Duration::from_secs(60) && wait < std::time::Duration::from_secs(61),
            "{wait:?}"
        );

        let p = super::super::plan(&observe(&ro, Some(pods_of(&ro, [0, 1, 2])), 101));
        assert_eq!(
            p.actions,
            vec![Action::EvictPod { name: "p0".into() }],
            "only the eviction"
        );
        assert_eq!(p.status, ro.status.clone().unwrap_or_default());
        assert_eq!(p.requeue_after, Some(RESTART_CHECK));

        let p = super::super::plan(&observe(&ro, Some(pods_of(&ro, [101, 102, 103])), 110));
        assert!(p.actions.is_empty());
        assert_eq!(p.status.restarted_at, Some(Time(t(100))));
        assert_eq!(
            p.events
                .iter()
                .filter(|e| e.reason == reasons::ROLLOUT_RESTARTED)
                .count(),
            1
        );
        ro.status = Some(p.status);
        assert_eq!(due(&ro, t(111)), Due::No);
    }

    #[test]
    fn waiting_for_a_replacement_lets_the_strategy_plan_and_looks_again_soon() {
        let mut ro = healthy();
        ro.spec.restart_at = Some(Time(t(100)));
        let mut pods = pods_of(&ro, [101, 1, 2]);
        pods[0].ready_since = None;
        let p = super::super::plan(&observe(&ro, Some(pods), 105));
        assert!(p.actions.is_empty(), "{:?}", p.actions);
        assert_eq!(p.requeue_after, Some(RESTART_CHECK));
        assert_eq!(
            p.status.available_replicas, 2,
            "the unready replacement is not counted available"
        );
        assert_eq!(p.status.restarted_at, None);
    }

    #[test]
    fn a_new_revision_cancels_a_due_restart() {
        let mut ro = healthy();
        ro.spec.restart_at = Some(Time(t(100)));
        let spec = ro.spec.template.spec.as_mut().expect("pod spec");
        spec.containers[0].image = Some("web:2".into());
        let p = super::super::plan(&observe(&ro, Some(pods_of(&ro, [0, 1, 2])), 101));
        assert!(
            !p.actions
                .iter()
                .any(|a| matches!(a, Action::EvictPod { .. })),
            "{:?}",
            p.actions
        );
        assert_eq!(p.status.restarted_at, Some(Time(t(100))));
        assert!(
            p.events
                .iter()
                .any(|e| e.reason == reasons::ROLLOUT_RESTART_CANCELLED)
        );
    }
}
