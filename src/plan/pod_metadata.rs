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
//! a role changed again before the pods caught up still takes the older keys off. A key the
//! ReplicaSet's own template has (an older revision's label that a role now names) is never set
//! or taken off: a third annotation keeps it.

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
    /// started and has not finished (or the record was unreadable, or only Argo's).
    pub pending: bool,
}

/// Label and annotation keys.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Keys {
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub labels: BTreeSet<String>,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub annotations: BTreeSet<String>,
}

impl Keys {
    pub fn of(md: &PodMetadata) -> Self {
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

    pub fn extend(&mut self, other: Keys) {
        self.labels.extend(other.labels);
        self.annotations.extend(other.annotations);
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.annotations.is_empty()
    }

    fn without(mut self, other: &Keys) -> Keys {
        self.labels.retain(|k| !other.labels.contains(k));
        self.annotations.retain(|k| !other.annotations.contains(k));
        self
    }

    fn intersect(&self, other: &Keys) -> Keys {
        Keys {
            labels: self.labels.intersection(&other.labels).cloned().collect(),
            annotations: self
                .annotations
                .intersection(&other.annotations)
                .cloned()
                .collect(),
        }
    }
}

/// A ReplicaSet's record annotations, read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Record {
    pub recorded: Recorded,
    /// Keys an unfinished sync still has to take off the pods.
    pub stale: Keys,
    /// The template's own keys a role names and leaves alone.
    pub kept: Keys,
}

impl Record {
    /// Every key a role put on the template: what it applied and what is still to come off,
    /// kept keys (the template's own) aside.
    pub fn role_keys(&self) -> Keys {
        let mut all = self.stale.clone();
        if let Some(a) = &self.recorded.applied {
            all.extend(Keys::of(a));
        }
        all.without(&self.kept)
    }

    /// The template's own keys: those on it no role put there, and the kept ones.
    pub fn own_keys(
        &self,
        labels: Option<&BTreeMap<String, String>>,
        annotations: Option<&BTreeMap<String, String>>,
    ) -> Keys {
        let role = self.role_keys();
        let names = |m: Option<&BTreeMap<String, String>>| {
            m.into_iter()
                .flatten()
                .map(|(k, _)| k.clone())
                .collect::<BTreeSet<_>>()
        };
        let mut own = Keys {
            labels: names(labels),
            annotations: names(annotations),
        }
        .without(&role);
        own.extend(self.kept.clone());
        own
    }

    /// The keys to take off the template and pods on the way to `want`: the role keys `want`
    /// does not set.
    pub fn to_remove(&self, want: Option<&PodMetadata>) -> Keys {
        let role = self.role_keys();
        match want {
            Some(w) => role.without(&Keys::of(w)),
            None => role,
        }
    }
}

/// The template's own keys that `want` names: left as they are, and recorded as kept so that
/// they are never taken off.
pub fn kept_keys(own: &Keys, want: Option<&PodMetadata>) -> Keys {
    match want {
        Some(w) => own.intersect(&Keys::of(w)),
        None => Keys::default(),
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
    let stable = observed
        .rollout
        .status
        .as_ref()
        .and_then(|s| s.stable_rs.as_deref());
    // The desired revision first, then the stable, then the rest (Argo's order): at promotion
    // the new stable gains its labels before the old one loses them.
    let rank = |rs: &&ObservedReplicaSet| {
        if hashes.names(&rs.hash) {
            0
        } else if stable == Some(rs.hash.as_str()) {
            1
        } else {
            2
        }
    };
    let mut sets: Vec<&ObservedReplicaSet> = observed.replica_sets.iter().collect();
    sets.sort_by_key(rank);
    sets.into_iter()
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

/// The JSON merge patch of an object's `labels` and `annotations` that sets `want` and takes
/// `remove` off, as far as they differ from `labels`/`annotations` now; `None` when nothing
/// differs. Keys in `protected` (the pod-template hash, the selector's, the template's own) are
/// never touched.
pub fn metadata_patch(
    labels: Option<&BTreeMap<String, String>>,
    annotations: Option<&BTreeMap<String, String>>,
    want: Option<&PodMetadata>,
    remove: &Keys,
    protected: &Keys,
) -> Option<Value> {
    let side = |now: Option<&BTreeMap<String, String>>,
                set: Option<&BTreeMap<String, String>>,
                drop: &BTreeSet<String>,
                guard: &BTreeSet<String>| {
        let mut patch = Map::new();
        for (k, v) in set.into_iter().flatten() {
            if !guard.contains(k) && now.and_then(|n| n.get(k)) != Some(v) {
                patch.insert(k.clone(), Value::String(v.clone()));
            }
        }
        for k in drop {
            if !guard.contains(k) && now.is_some_and(|n| n.contains_key(k)) {
                patch.insert(k.clone(), Value::Null);
            }
        }
        patch
    };
    let l = side(
        labels,
        want.and_then(|w| w.labels.as_ref()),
        &remove.labels,
        &protected.labels,
    );
    let a = side(
        annotations,
        want.and_then(|w| w.annotations.as_ref()),
        &remove.annotations,
        &protected.annotations,
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

/// The keys never set or removed on a ReplicaSet's pods by a role: its hash label and its
/// selector's.
pub fn protected_keys(selector: Option<&BTreeMap<String, String>>) -> Keys {
    let mut labels: BTreeSet<String> = selector
        .into_iter()
        .flatten()
        .map(|(k, _)| k.clone())
        .collect();
    labels.insert(POD_TEMPLATE_HASH_LABEL.to_string());
    Keys {
        labels,
        annotations: BTreeSet::new(),
    }
}

/// Sets `md` on a template being built (a new ReplicaSet's), protected keys aside.
pub fn apply(
    meta: &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    md: &PodMetadata,
    protected: &Keys,
) {
    for (k, v) in md.labels.iter().flatten() {
        if !protected.labels.contains(k) {
            meta.labels
                .get_or_insert_with(BTreeMap::new)
                .insert(k.clone(), v.clone());
        }
    }
    for (k, v) in md.annotations.iter().flatten() {
        if !protected.annotations.contains(k) {
            meta.annotations
                .get_or_insert_with(BTreeMap::new)
                .insert(k.clone(), v.clone());
        }
    }
}

/// Takes the role keys off a ReplicaSet's template (to find the Rollout template it was made
/// from, for undo).
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

/// The record annotations of a ReplicaSet, as found on it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Annotations<'a> {
    /// Ours (`aviary.dev/ephemeral-metadata`).
    pub applied: Option<&'a str>,
    /// Argo Rollouts' (`rollout.argoproj.io/ephemeral-metadata`), read when ours is absent.
    pub argo: Option<&'a str>,
    /// The keys still to take off its pods.
    pub stale: Option<&'a str>,
    /// The template's own keys a role names.
    pub kept: Option<&'a str>,
}

impl<'a> Annotations<'a> {
    /// The record annotations among `annotations`.
    pub fn of(annotations: &'a BTreeMap<String, String>) -> Self {
        use crate::api::wire;
        let get = |k: &str| annotations.get(k).map(String::as_str);
        Annotations {
            applied: get(wire::POD_METADATA_ANNOTATION),
            argo: get(wire::ARGO_POD_METADATA_ANNOTATION),
            stale: get(wire::POD_METADATA_STALE_ANNOTATION),
            kept: get(wire::POD_METADATA_KEPT_ANNOTATION),
        }
    }
}

/// Reads the record annotations. A record only Argo Rollouts wrote is pending once: Argo kept
/// no mark of an unfinished sync (it listed pods every reconcile instead).
pub fn read(a: Annotations<'_>) -> Record {
    let (text, from_argo) = match (a.applied, a.argo) {
        (Some(t), _) => (Some(t), false),
        (None, Some(t)) => (Some(t), true),
        (None, None) => (None, false),
    };
    let parsed = text.map(serde_json::from_str::<PodMetadata>);
    let unreadable = matches!(parsed, Some(Err(_)));
    let keys = |t: Option<&str>| {
        t.and_then(|t| serde_json::from_str::<Keys>(t).ok())
            .unwrap_or_default()
    };
    Record {
        recorded: Recorded {
            applied: parsed.and_then(Result::ok),
            pending: a.stale.is_some() || unreadable || from_argo,
        },
        stale: keys(a.stale),
        kept: keys(a.kept),
    }
}
