//! The invariants of `docs/bluegreen.md`, checked after every write the simulated controller
//! makes to a blue-green rollout. Only the active Service carries production traffic (the
//! preview carries none, so nothing is asserted of it per write). Blue-green has no
//! `maxUnavailable`: the active Service moves only onto a revision with all `replicas` pods
//! available. As for the canary, a pod dying is the cluster's doing: a write is blamed only for
//! what it changed — a selector it moved, or pods it removed.

use super::bluegreen::active;
use super::world::{World, Write};
use crate::api::{AnalysisPhase, BlueGreenStrategy};
use crate::plan::{Action, AnalysisKind, after as later};

/// Whether a Successful run of `kind` measured revision `hash` in the current attempt (not a
/// terminated one, which reads Successful without having passed, nor a retired one).
fn passed(w: &World, kind: AnalysisKind, hash: &str) -> bool {
    w.runs.iter().any(|x| {
        x.run.kind == kind
            && x.run.hash == hash
            && x.created_in >= w.attempt_from
            && x.run.phase == AnalysisPhase::Successful
            && !x.terminated
            && !x.retired
    })
}

/// Why revision `to` has not earned production traffic yet: its pre-promotion analysis has not
/// passed in this attempt, or it was not promoted — automatically (at once, or
/// `autoPromotionSeconds` after its pause began) or by a human.
fn unearned(w: &World, bg: &BlueGreenStrategy, to: &str) -> Option<String> {
    let waived = w.human_promoted;
    if bg.pre_promotion_analysis.is_some() && !waived && !passed(w, AnalysisKind::PrePromotion, to)
    {
        return Some("without a Successful pre-promotion run in this attempt".into());
    }
    let secs = i64::from(bg.auto_promotion_seconds().max(0));
    let auto = if secs > 0 {
        w.bg_pause_start
            .is_some_and(|start| w.now >= later(start, secs))
    } else {
        bg.auto_promotion_enabled()
    };
    (!auto && !waived).then(|| {
        format!(
            "unpromoted (autoPromotionEnabled {}, autoPromotionSeconds {secs}, pause began {:?})",
            bg.auto_promotion_enabled(),
            w.bg_pause_start
        )
    })
}

/// Checks one write: `before` and `after` are the world around it.
pub fn check_write(before: &World, after: &World, write: &Write<'_>) -> Result<(), String> {
    let fail = |inv: &str, what: String| {
        let st = before.status();
        let bgs = st.blue_green.clone().unwrap_or_default();
        Err(format!(
            "{inv} broken by {:?} at {}: {what}\n  world before: {}\n  status before: stable {:?}, activeSelector {:?}, promoting {:?}, abort {:?}, pause {:?}, phase {:?}",
            write.action,
            after.now,
            before.describe(),
            st.stable_rs,
            bgs.active_selector,
            bgs.scale_up_preview_check_point,
            st.abort,
            st.pause_conditions
                .iter()
                .map(|c| c.reason)
                .collect::<Vec<_>>(),
            st.phase,
        ))
    };
    let Some(bg) = after.ro.spec.blue_green() else {
        return Ok(());
    };
    let r = after.replicas();
    // Scaled to zero on purpose: there is no capacity to keep.
    let capacity = r > 0;
    let st = before.status();
    let stable = st.stable_rs.clone();
    let hash = after.current_hash();
    let (was, now) = (active(before), active(after));
    // The stable ReplicaSet was deleted mid-update: there is nothing to return to, and the
    // active Service may go to the new revision's pods (never making it stable by itself).
    let lost = stable
        .as_deref()
        .is_some_and(|s| s != hash && !before.rs.contains_key(s));

    // The active Service moved.
    if let Some(to) = now.as_deref().filter(|_| was != now && capacity) {
        let avail = after.available(to);
        // I1 and I2 (no maxUnavailable in blue-green): only onto a revision with all its pods.
        if before.first_deploy_done && avail == 0 {
            return fail(
                "I1",
                format!("the active Service moved to revision {to}, which has no available pod"),
            );
        }
        if before.first_deploy_done && avail < r {
            return fail(
                "I2",
                format!(
                    "the active Service moved to revision {to} with {avail} of {r} pods available"
                ),
            );
        }
        // I5: while an abort is persisted, the active Service only ever goes back to stable.
        let aborted = st.abort == Some(true) && st.current_pod_hash.as_deref() == Some(&hash);
        if aborted && !lost && stable.as_deref() != Some(to) {
            return fail(
                "I5",
                format!(
                    "the rollout is aborted, yet the active Service moved to {to}, not to stable {stable:?}"
                ),
            );
        }
        // I3: onto a revision that is not the stable one only once its pre-promotion analysis
        // passed in this attempt and it was promoted — automatically, after
        // autoPromotionSeconds, or by a human.
        if let Some(s) = stable
            .as_deref()
            .filter(|s| *s != to && before.first_deploy_done && !lost)
        {
            if to != hash {
                return fail(
                    "I3",
                    format!(
                        "the active Service moved to {to}, neither stable {s} nor the template {hash}"
                    ),
                );
            }
            if let Some(why) = unearned(after, bg, to) {
                return fail("I3", format!("the active Service moved to {to} {why}"));
            }
        }
    }

    // I3: a revision becomes stable only while the active Service selects it, once its
    // post-promotion analysis passed in this attempt (or a human promoted it).
    let new_stable = after.status().stable_rs;
    if let (Some(old), Some(new)) = (&stable, &new_stable)
        && old != new
        && before.first_deploy_done
    {
        if capacity && !lost && now.as_deref() != Some(new) {
            return fail(
                "I3",
                format!("revision {new} became stable while the active Service selects {now:?}"),
            );
        }
        if let Some(why) = unearned(after, bg, new) {
            return fail("I3", format!("revision {new} became stable {why}"));
        }
        let waived = after.human_promoted;
        if bg.post_promotion_analysis.is_some()
            && !waived
            && !passed(after, AnalysisKind::PostPromotion, new)
        {
            return fail(
                "I3",
                format!(
                    "revision {new} became stable without a Successful post-promotion run in this attempt"
                ),
            );
        }
    }

    // I6: pods removed from a revision (below what it had and below `replicas`).
    if let Some(Action::ScaleReplicaSet { name, replicas, .. }) = write.action
        && capacity
        && before.first_deploy_done
        && let Some(rs) = before.rs.values().find(|x| &x.name == name)
        && *replicas < rs.replicas
        && *replicas < r
    {
        let h = rs.hash.as_str();
        if now.as_deref() == Some(h) {
            return fail(
                "I6",
                format!(
                    "revision {h}, which the active Service selects, scaled from {} to {replicas}",
                    rs.replicas
                ),
            );
        }
        let aborted = st.abort == Some(true) && h == hash && stable.as_deref() != Some(h);
        if aborted {
            let delay = i64::from(bg.abort_scale_down_delay_seconds());
            let due = after.abort_from.map(|t| later(t, delay));
            if delay == 0 || due.is_none_or(|d| after.now < d) {
                return fail(
                    "I6",
                    format!(
                        "the aborted preview {h} scaled to {replicas} before abortScaleDownDelaySeconds {delay} from the abort at {:?}",
                        after.abort_from
                    ),
                );
            }
        } else if h != hash
            && let Some((left, by_abort)) = after.active_left_at.get(h)
        {
            // Left by an abort, the aborted revision is kept abortScaleDownDelaySeconds from
            // then (0: until the next update, which this is); otherwise scaleDownDelaySeconds.
            let delay_of = |by_abort: bool| {
                i64::from(if by_abort {
                    bg.abort_scale_down_delay_seconds()
                } else {
                    bg.scale_down_delay_seconds()
                })
            };
            let delay = delay_of(*by_abort);
            // scaleDownDelayRevisionLimit: that many newer revisions waiting out their own
            // delays with pods (any delay, an abort's included, as Argo counts them) take the
            // places first.
            let order = |x: &super::world::SimReplicaSet| {
                (
                    x.scale_down_at.unwrap_or(k8s_openapi::jiff::Timestamp::MAX),
                    x.revision.unwrap_or(0),
                    x.name.clone(),
                )
            };
            let newer_waiting = before
                .rs
                .values()
                .filter(|x| {
                    order(x) > order(rs)
                        && x.replicas > 0
                        && x.hash != hash
                        && stable.as_deref() != Some(x.hash.as_str())
                        && (x.scale_down_at.is_some_and(|at| at > after.now)
                            || after
                                .active_left_at
                                .get(&x.hash)
                                .is_some_and(|(l, a)| after.now < later(*l, delay_of(*a))))
                })
                .count();
            let over_limit = after
                .ro
                .spec
                .scale_down_delay_revision_limit()
                .is_some_and(|l| newer_waiting >= usize::try_from(l).unwrap_or(0));
            if after.now < later(*left, delay) && !over_limit {
                return fail(
                    "I6",
                    format!(
                        "revision {h} scaled to {replicas} before scaleDownDelaySeconds {delay} from the switch away from it at {left}"
                    ),
                );
            }
        }
    }
    Ok(())
}
