//! The invariants of `docs/canary.md`, checked after every write the simulated controller makes.
//!
//! Pods die in the simulation whenever the scenario says so, so a destination can lose its pods
//! without any write. A write is therefore blamed only for what it changed: an invariant that
//! holds before a write and not after it, or a shortfall the write made worse.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::world::{Routing, STABLE_SVC, World, Write};
use crate::api::{AnalysisPhase, ReplicaProgressThreshold, StepAction};
use crate::plan::replicas::routed_replicas_of;
use crate::plan::{Action, AnalysisKind};

/// `maxSurge` and `maxUnavailable` in pods, as Kubernetes resolves them (the planner's own
/// arithmetic, itself table-tested against Kubernetes' rounding).
pub fn surge_and_unavailable(w: &World) -> (i32, i32) {
    let default = || IntOrString::String("25%".into());
    let c = w.ro.spec.canary();
    crate::plan::replicas::surge_and_unavailable(
        w.replicas(),
        &c.map(|c| c.max_surge()).unwrap_or_else(default),
        &c.map(|c| c.max_unavailable()).unwrap_or_else(default),
    )
}

/// The weights the spec declares, plus 0 and the total (100, or `maxTrafficWeight`).
fn declared_weights(w: &World) -> Vec<i32> {
    let mut ws: Vec<i32> =
        w.ro.spec
            .steps()
            .iter()
            .filter_map(|s| s.set_weight)
            .collect();
    ws.extend([0, w.total()]);
    ws
}

/// Checks one write: `before` and `after` are the world around it.
pub fn check_write(before: &World, after: &World, write: &Write<'_>) -> Result<(), String> {
    if after.ro.spec.blue_green().is_some() {
        return super::bluegreen_invariants::check_write(before, after, write);
    }
    let fail = |inv: &str, what: String| {
        let st = before.status();
        Err(format!(
            "{inv} broken by {:?} at {}: {what}\n  world before: {}\n  status before: stable {:?}, step {:?}, abort {:?}, pause {:?}, phase {:?}",
            write.action,
            after.now,
            before.describe(),
            st.stable_rs,
            st.current_step_index,
            st.abort,
            st.pause_conditions
                .iter()
                .map(|c| c.reason)
                .collect::<Vec<_>>(),
            st.phase,
        ))
    };
    let r = after.replicas();
    // Scaled to zero on purpose: there is no capacity to keep (I1, I2, I6 do not apply).
    let capacity = r > 0;

    // I4: every weight written is declared, 0, or 100.
    if let Some(Action::SetWeight { weight, .. }) = write.action
        && before.weight != *weight
        && !declared_weights(after).contains(weight)
    {
        return fail(
            "I4",
            format!("weight {weight} is not one the spec declares"),
        );
    }

    // I1: no destination gets weight while it has no available pod, nor more share than its
    // available pods carry. Moving traffic away from the canary may leave the stable short
    // (that is what an abort must do), but never on a stable without pods — and with
    // dynamicStableScale, whose stable shrank by design, never short at all: traffic returns
    // to it only as it grows back.
    let dynamic = after
        .ro
        .spec
        .canary()
        .is_some_and(|c| c.dynamic_stable_scale());
    let weight_lowered = after.weight < before.weight && !dynamic;
    // replicaProgressThreshold: the desired revision may carry its share on that many of the
    // pods the share needs, by the user's choice — and so, once promoted so, may the stable
    // until its pods are up. Only pods not up yet are excused: the revision's ReplicaSet must
    // want every pod of the share (pods scaled away are never excused). A write is blamed
    // when it leaves a destination short of the pods its share needs (counted in full, before
    // and after alike) by more than before, and below what the threshold accepts.
    let threshold = after
        .ro
        .spec
        .canary()
        .and_then(|c| c.replica_progress_threshold.clone());
    let current = after.current_hash();
    let stable_now = after.status().stable_rs;
    let wants = |hash: &str, pods: i32| after.rs.get(hash).is_some_and(|rs| rs.replicas >= pods);
    let accepted = |weight: i32, hash: &str| {
        let pods = routed_replicas_of(r, weight, after.total());
        if (hash == current || stable_now.as_deref() == Some(hash)) && wants(hash, pods) {
            ReplicaProgressThreshold::pods_for(threshold.as_ref(), pods)
        } else {
            pods
        }
    };
    let shortfall = |w: &World, weight: i32, hash: &str| {
        (routed_replicas_of(r, weight, w.total()) - w.available(hash)).max(0)
    };
    for (b, a) in before
        .destinations()
        .iter()
        .zip(after.destinations())
        .filter(|_| capacity)
    {
        let Some(hash) = a.hash.as_deref() else {
            continue;
        };
        if a.weight == 0 {
            continue;
        }
        let avail = after.available(hash);
        // Blamed unless that destination already carried traffic on no pod before the write
        // (a destination naming no revision — a subset someone stripped of its label — selects
        // every pod of the host).
        let starved_before = b.weight > 0
            && match b.hash.as_deref() {
                Some(h) => before.available(h) == 0,
                None => before.rs.keys().all(|h| before.available(h) == 0),
            };
        if avail == 0 && !starved_before {
            return fail(
                "I1",
                format!(
                    "{} destination carries {} % on revision {hash} with no available pod",
                    a.role, a.weight
                ),
            );
        }
        let short_after = shortfall(after, a.weight, hash);
        let short_before = match b.hash.as_deref() {
            Some(h) if b.weight > 0 => shortfall(before, b.weight, h),
            // Naming no revision, it selects every pod of the host.
            None if b.weight > 0 => {
                let all: i32 = before.rs.keys().map(|h| before.available(h)).sum();
                (routed_replicas_of(r, b.weight, before.total()) - all).max(0)
            }
            _ => 0,
        };
        let exempt = a.role == "stable" && weight_lowered;
        if short_after > short_before && avail < accepted(a.weight, hash) && !exempt {
            return fail(
                "I1",
                format!(
                    "{} destination carries {} % on revision {hash} with {avail} of the {} pods it needs",
                    a.role,
                    a.weight,
                    accepted(a.weight, hash)
                ),
            );
        }
    }

    let (surge, unavailable) = surge_and_unavailable(after);
    // I2: once the first deploy completed, the stable Service selects a revision with at least
    // replicas − maxUnavailable available pods; no write may take it below that.
    if before.first_deploy_done && capacity {
        let svc = |w: &World| w.services.get(STABLE_SVC).cloned().flatten();
        if let Some(hash) = svc(after) {
            // Without a router the stable shrinks by design while traffic follows pods: its
            // Service must only never be left without one.
            let floor = if after.routing == Routing::None {
                if surge == 0 {
                    0
                } else {
                    (r - unavailable).clamp(0, 1)
                }
            } else if dynamic {
                // The stable shrinks to its share of the routed traffic by design (I1 holds the
                // destinations to their shares): the Service itself keeps a pod.
                1
            } else {
                (r - unavailable).max(1).min(r)
            };
            // A revision promoted at replicaProgressThreshold takes the Service with that many.
            let floor = if (hash == current || stable_now.as_deref() == Some(hash.as_str()))
                && wants(&hash, floor)
            {
                floor.min(ReplicaProgressThreshold::pods_for(threshold.as_ref(), r))
            } else {
                floor
            };
            let a = after.available(&hash);
            // What the Service had before the write, on whichever revision it selected.
            let b = svc(before)
                .map(|h| before.available(&h))
                .unwrap_or(i32::MAX);
            if a < floor && a < b {
                return fail(
                    "I2",
                    format!(
                        "stable Service selects revision {hash} with {a} available pods (needs {floor})"
                    ),
                );
            }
        }
    }

    // I6: without a router, replica counts respect maxSurge and maxUnavailable both ways.
    if after.routing == Routing::None && before.first_deploy_done && capacity {
        let total = |w: &World| w.rs.values().map(|x| x.replicas).sum::<i32>();
        let avail = |w: &World| w.rs.values().map(|x| x.available(w.now)).sum::<i32>();
        let (tb, ta) = (total(before), total(after));
        if ta > r + surge && ta > tb {
            return fail(
                "I6",
                format!("{ta} pods wanted, above replicas {r} + maxSurge {surge} (was {tb})"),
            );
        }
        let (ab, aa) = (avail(before), avail(after));
        if aa < r - unavailable && aa < ab {
            return fail(
                "I6",
                format!(
                    "{aa} pods available, below replicas {r} − maxUnavailable {unavailable} (was {ab})"
                ),
            );
        }
    }

    // I3: a revision becomes stable only when every analysis of this attempt passed, or a human
    // promoted it.
    let (sb, sa) = (before.status().stable_rs, after.status().stable_rs);
    if let (Some(old), Some(new)) = (&sb, &sa)
        && old != new
        && !after.human_promoted
    {
        for (i, step) in after.ro.spec.steps().iter().enumerate() {
            if !matches!(step.action(), Some(StepAction::Analysis(_))) {
                continue;
            }
            let passed = after.runs.iter().any(|x| {
                x.run.kind == AnalysisKind::Step(i as i32)
                    && &x.run.hash == new
                    && x.created_in >= after.attempt_from
                    && x.run.phase == AnalysisPhase::Successful
                    && !x.terminated
                    && !x.retired
            });
            if !passed {
                return fail(
                    "I3",
                    format!(
                        "revision {new} became stable without a Successful run of analysis step {} in this attempt",
                        i + 1
                    ),
                );
            }
        }
        let bad_background = after.runs.iter().find(|x| {
            x.run.kind == AnalysisKind::Background
                && &x.run.hash == new
                && x.created_in >= after.attempt_from
                && !x.terminated
                && !x.retired
                && matches!(
                    x.run.phase,
                    AnalysisPhase::Failed | AnalysisPhase::Error | AnalysisPhase::Inconclusive
                )
        });
        if let Some(run) = bad_background {
            return fail(
                "I3",
                format!(
                    "revision {new} became stable while its background run {} is {}",
                    run.run.name,
                    run.run.phase.as_str()
                ),
            );
        }
    }
    Ok(())
}
