//! `spec.revisionHistoryLimit`: how many old ReplicaSets a rollout keeps, scaled to zero, for
//! a fast rollback to a recent revision. Beyond that, the oldest go — otherwise every update adds
//! a ReplicaSet for ever, growing etcd, every ReplicaSet watch and the controller's cache.
//!
//! As Argo Rollouts does it: the old ReplicaSets are all but the desired revision's and the
//! stable one; when there are more than the limit, the oldest (by revision) are deleted, but only
//! those fully scaled down — no replicas wanted, no pods left, no scale-down delay running.
//! One that is still shrinking is counted and waits for a later reconcile.

use super::{Action, Observed, ObservedReplicaSet, Plan};

/// The deletions that bring the rollout back to its revision history limit, oldest first. Never
/// touches a ReplicaSet that `plan` acts on or that its new status names.
pub fn prune(observed: &Observed<'_>, plan: &Plan) -> Vec<Action> {
    let limit = usize::try_from(observed.rollout.spec.revision_history_limit()).unwrap_or(0);
    let keep_hashes = [
        plan.status.current_pod_hash.as_deref(),
        plan.status.stable_rs.as_deref(),
        observed
            .rollout
            .status
            .as_ref()
            .and_then(|s| s.stable_rs.as_deref()),
    ];
    let acted_on = |rs: &ObservedReplicaSet| {
        plan.actions.iter().any(|a| match a {
            Action::ScaleReplicaSet { name, .. } => name == &rs.name,
            Action::CreateReplicaSet { hash, .. } => hash == &rs.hash,
            _ => false,
        })
    };
    let mut old: Vec<&ObservedReplicaSet> = observed
        .replica_sets
        .iter()
        .filter(|rs| !keep_hashes.contains(&Some(rs.hash.as_str())))
        .collect();
    if old.len() <= limit {
        return Vec::new();
    }
    // Oldest first; a ReplicaSet without a revision annotation counts as the oldest.
    old.sort_by_key(|rs| (rs.revision.unwrap_or(i64::MIN), rs.name.as_str()));
    let excess = old.len() - limit;
    old.into_iter()
        .take(excess)
        .filter(|rs| {
            rs.replicas == 0 && rs.current == 0 && rs.scale_down_at.is_none() && !acted_on(rs)
        })
        .map(|rs| Action::DeleteReplicaSet {
            name: rs.name.clone(),
        })
        .collect()
}
