//! Role metadata (Argo Rollouts' "ephemeral metadata"): the labels and annotations a
//! ReplicaSet's pods carry while it holds a role — `canaryMetadata`/`stableMetadata`,
//! blue-green `previewMetadata`/`activeMetadata` — set on its pod template and on its running
//! pods in place, and taken off both when the role passes. No pod restarts.
//!
//! Roles follow the persisted `status.stableRS`, as Argo's do: the desired revision is the
//! canary (preview) while another revision is stable, and the stable (active) once it is; every
//! other ReplicaSet carries none. The ReplicaSet records what its pods were given in an
//! annotation, and while the pods are being brought to it a second annotation lists the keys
//! still to take off: a controller stopped half-way finds the work unfinished and redoes it, and
//! a role changed again before the pods caught up still takes the older keys off.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{Action, Observed, ObservedReplicaSet, POD_TEMPLATE_HASH_LABEL, TemplateHashes};
use crate::api::{PodMetadata, Rollout};

/// What a ReplicaSet's annotations say its pods were given.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recorded {
    /// The role metadata its template carries (`None`: none, or unreadable).
    pub applied: Option<PodMetadata>,
    /// Its pods may not carry `applied` yet, or still carry keys of an earlier role: a sync
    /// started and has not finished (or the record was unreadable).
    pub pending: bool,
}

/// Label and annotation keys to take off.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Keys {
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub labels: BTreeSet<String>,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub annotations: BTreeSet<String>,
}

impl Keys {
    fn of(md: &PodMetadata) -> Self {
        let keys = |m: &Option<BTreeMap<String, String>>| {
            m.iter()
                .flat_map(|m| m.keys().cloned())
                .collect::<BTreeSet<_>>()
        };
        Keys {
            labels: keys(&md.labels),
            annotations: keys(&md.annotations),
        }
    }

    fn extend(&mut self, other: Keys) {
        self.labels.extend(other.labels);
        self.annotations.extend(other.annotations);
    }
}

/// The role metadata `hash`'s pods should carry; `None` for none.
pub fn desired<'a>(
    ro: &'a Rollout,
    hashes: &TemplateHashes,
    hash: &str,
) -> Option<&'a PodMetadata> {
    let (new_role, stable_role) = match ro.spec.blue_green() {
        Some(bg) => (bg.preview_metadata.as_ref(), bg.active_metadata.as_ref()),
        None => match ro.spec.strategy.canary.as_ref() {
            Some(c) => (c.canary_metadata.as_ref(), c.stable_metadata.as_ref()),
            None => (None, None),
        },
    };
    let stable = ro.status.as_ref().and_then(|s| s.stable_rs.as_deref());
    let role = if hashes.names(hash) {
        match stable {
            Some(s) if !hashes.names(s) => new_role,
            _ => stable_role,
        }
    } else if stable == Some(hash) {
        stable_role
    } else {
        None
    };
    role.filter(|m| !m.is_empty())
}

/// The role metadata of the ReplicaSet `hash` being created: that of the desired revision.
pub fn at_creation<'a>(ro: &'a Rollout, hash: &str) -> Option<&'a PodMetadata> {
    let hashes = TemplateHashes {
        current: hash.to_string(),
        legacy: hash.to_string(),
    };
    desired(ro, &hashes, hash)
}

/// The syncs that bring every ReplicaSet's pods to their role's metadata: none once they carry
/// it (re-planning a state that holds writes nothing). Skips ReplicaSets `actions` delete.
pub fn sync(observed: &Observed<'_>, hashes: &TemplateHashes, actions: &[Action]) -> Vec<Action> {
    let deleted = |rs: &ObservedReplicaSet| {
        actions
            .iter()
            .any(|a| matches!(a, Action::DeleteReplicaSet { name } if *name == rs.name))
    };
    observed
        .replica_sets
        .iter()
        .filter(|rs| !deleted(rs))
        .filter_map(|rs| {
            let want = desired(observed.rollout, hashes, &rs.hash);
            let held = rs.pod_metadata.applied.as_ref().filter(|m| !m.is_empty());
            (rs.pod_metadata.pending || held != want).then(|| Action::SyncPodMetadata {
                name: rs.name.clone(),
                metadata: want.cloned(),
            })
        })
        .collect()
}

/// The keys to take off a ReplicaSet's template and pods when it moves to `want`: those it
/// recorded applying, and those an unfinished sync left to take off, that `want` does not set.
pub fn keys_to_remove(
    applied: Option<&PodMetadata>,
    stale: Keys,
    want: Option<&PodMetadata>,
) -> Keys {
    let mut all = stale;
    if let Some(a) = applied {
        all.extend(Keys::of(a));
    }
    if let Some(w) = want {
        let keep = Keys::of(w);
        all.labels.retain(|k| !keep.labels.contains(k));
        all.annotations.retain(|k| !keep.annotations.contains(k));
    }
    all
}

/// The JSON merge patch of an object's `labels` and `annotations` that sets `want` and takes
/// `remove` off, as far as they differ from `labels`/`annotations` now; `None` when nothing
/// differs. Keys in `protected` (the pod-template hash, the selector's) are never touched.
pub fn metadata_patch(
    labels: Option<&BTreeMap<String, String>>,
    annotations: Option<&BTreeMap<String, String>>,
    want: Option<&PodMetadata>,
    remove: &Keys,
    protected: &BTreeSet<String>,
) -> Option<Value> {
    let side = |now: Option<&BTreeMap<String, String>>,
                set: Option<&BTreeMap<String, String>>,
                drop: &BTreeSet<String>,
                guard: bool| {
        let mut patch = Map::new();
        for (k, v) in set.into_iter().flatten() {
            if guard && protected.contains(k) {
                continue;
            }
            if now.and_then(|n| n.get(k)) != Some(v) {
                patch.insert(k.clone(), Value::String(v.clone()));
            }
        }
        for k in drop {
            if guard && protected.contains(k) {
                continue;
            }
            if now.is_some_and(|n| n.contains_key(k)) {
                patch.insert(k.clone(), Value::Null);
            }
        }
        patch
    };
    let l = side(
        labels,
        want.and_then(|w| w.labels.as_ref()),
        &remove.labels,
        true,
    );
    let a = side(
        annotations,
        want.and_then(|w| w.annotations.as_ref()),
        &remove.annotations,
        false,
    );
    if l.is_empty() && a.is_empty() {
        return None;
    }
    let mut meta = Map::new();
    if !l.is_empty() {
        meta.insert("labels".into(), Value::Object(l));
    }
    if !a.is_empty() {
        meta.insert("annotations".into(), Value::Object(a));
    }
    Some(Value::Object(meta))
}

/// The keys never set or removed on a ReplicaSet's pods: its hash label and its selector's.
pub fn protected_keys(selector: Option<&BTreeMap<String, String>>) -> BTreeSet<String> {
    let mut keys: BTreeSet<String> = selector
        .into_iter()
        .flatten()
        .map(|(k, _)| k.clone())
        .collect();
    keys.insert(POD_TEMPLATE_HASH_LABEL.to_string());
    keys
}

/// Sets `md` on a template being built (a new ReplicaSet's), protected keys aside.
pub fn apply(
    meta: &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    md: &PodMetadata,
    protected: &BTreeSet<String>,
) {
    for (k, v) in md.labels.iter().flatten() {
        if !protected.contains(k) {
            meta.labels
                .get_or_insert_with(BTreeMap::new)
                .insert(k.clone(), v.clone());
        }
    }
    for (k, v) in md.annotations.iter().flatten() {
        meta.annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(k.clone(), v.clone());
    }
}

/// Takes the recorded role keys off a ReplicaSet's template (to find the Rollout template it
/// was made from, for undo).
pub fn strip(meta: &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta, keys: &Keys) {
    if let Some(l) = meta.labels.as_mut() {
        l.retain(|k, _| !keys.labels.contains(k));
    }
    if let Some(a) = meta.annotations.as_mut() {
        a.retain(|k, _| !keys.annotations.contains(k));
        if a.is_empty() {
            meta.annotations = None;
        }
    }
}

/// Every role key a ReplicaSet's template may carry, by its record annotations: what it
/// applied, and what an unfinished sync still had to take off.
pub fn recorded_keys(applied: Option<&str>, stale: Option<&str>) -> Keys {
    let (recorded, stale) = read(applied, stale);
    keys_to_remove(recorded.applied.as_ref(), stale, None)
}

/// Reads the record annotations (`applied`: ours, else Argo's; `stale`: the keys an unfinished
/// sync has left to take off).
pub fn read(applied: Option<&str>, stale: Option<&str>) -> (Recorded, Keys) {
    let parsed = applied.map(serde_json::from_str::<PodMetadata>);
    let stale_keys = stale.map(serde_json::from_str::<Keys>);
    let unreadable = matches!(parsed, Some(Err(_)));
    let keys = match &stale_keys {
        Some(Ok(k)) => k.clone(),
        _ => Keys::default(),
    };
    (
        Recorded {
            applied: parsed.and_then(Result::ok),
            pending: stale.is_some() || unreadable,
        },
        keys,
    )
}
