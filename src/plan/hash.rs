//! The pod-template hash that names a revision's ReplicaSet (`<rollout>-<hash>`) and labels its
//! pods (`rollouts-pod-template-hash`): so that a template always maps to the same ReplicaSet,
//! across restarts and controller replicas.
//!
//! It is Argo Rollouts' hash, to the byte: FNV-32a over Go's JSON of the template
//! ([`super::go_json`]) and the collision count (when set) as 8 little-endian bytes,
//! "safe-encoded". So a Rollout taken over from Argo Rollouts finds its ReplicaSets and keeps its
//! pods. Aviary 0.2 and earlier hashed serde's JSON instead ([`legacy_pod_template_hash`]); a
//! ReplicaSet labelled so is still the template's own ([`revision_hash`]), as Argo still finds
//! ReplicaSets by its own former hash — upgrading Aviary restarts no pod.

use k8s_openapi::api::core::v1::PodTemplateSpec;
use kube::ResourceExt;

use crate::api::Rollout;

pub use crate::api::wire::POD_TEMPLATE_HASH_LABEL;

const FNV_OFFSET: u32 = 0x811c_9dc5;
const FNV_PRIME: u32 = 0x0100_0193;

fn fnv32a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(FNV_OFFSET, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(FNV_PRIME)
    })
}

/// Maps each character onto an alphabet without vowels (and without 0, 1, 3) so a hash never
/// spells a word, as Kubernetes' `rand.SafeEncodeString` does.
fn safe_encode(s: &str) -> String {
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    s.bytes()
        .map(|b| char::from(ALPHANUMS[usize::from(b) % ALPHANUMS.len()]))
        .collect()
}

/// A short, stable hash of any serialisable value (used for `status.currentStepHash`).
pub fn hash_of<T: serde::Serialize>(value: &T) -> String {
    safe_encode(&fnv32a(&serde_json::to_vec(value).unwrap_or_default()).to_string())
}

/// The template without the hash label: a template read back from a ReplicaSet hashes like the
/// one in the Rollout.
fn without_hash_label(template: &PodTemplateSpec) -> std::borrow::Cow<'_, PodTemplateSpec> {
    let labelled = template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.as_ref())
        .is_some_and(|l| l.contains_key(POD_TEMPLATE_HASH_LABEL));
    if !labelled {
        return std::borrow::Cow::Borrowed(template);
    }
    let mut t = template.clone();
    if let Some(labels) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove(POD_TEMPLATE_HASH_LABEL);
    }
    std::borrow::Cow::Owned(t)
}

/// The template as Argo Rollouts' CRD stores it — what Argo's informer hands its hash, where
/// Aviary's CRD stores the manifest as written: `metadata` pruned to `labels` and `annotations`,
/// and the CRD's defaults (k8s.io/api's `+default` markers) filled in: a container port's
/// `protocol: TCP`, a gRPC probe's `service: ""`, an env `fileKeyRef`'s `optional: false`. (Its
/// `name: ""` defaults change nothing: Go omits an empty name.) tests/argo_hash.rs checks this
/// against objects stored through Argo's CRD.
fn as_argo_stores_it(template: &PodTemplateSpec) -> serde_json::Value {
    use serde_json::{Value, json};
    let mut v = serde_json::to_value(template).unwrap_or_default();
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.retain(|k, _| k == "labels" || k == "annotations");
    }
    fn default(obj: &mut Value, key: &str, value: Value) {
        if let Some(o) = obj.as_object_mut()
            && o.get(key).is_none_or(Value::is_null)
        {
            o.insert(key.to_string(), value);
        }
    }
    let Some(spec) = v.get_mut("spec") else {
        return v;
    };
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        let Some(containers) = spec.get_mut(list).and_then(Value::as_array_mut) else {
            continue;
        };
        for c in containers {
            for port in c
                .get_mut("ports")
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                default(port, "protocol", json!("TCP"));
            }
            for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
                if let Some(grpc) = c.get_mut(probe).and_then(|p| p.get_mut("grpc")) {
                    default(grpc, "service", json!(""));
                }
            }
            for env in c
                .get_mut("env")
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                if let Some(file) = env
                    .get_mut("valueFrom")
                    .and_then(|f| f.get_mut("fileKeyRef"))
                {
                    default(file, "optional", json!(false));
                }
            }
        }
    }
    v
}

/// The hash of a pod template, as Argo Rollouts computes it (`ComputePodTemplateHash`) for the
/// same manifest stored through its CRD ([`as_argo_stores_it`]).
pub fn pod_template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let t = without_hash_label(template);
    // A template Go could not decode (a fractional number where Go has an integer) could not
    // be an Argo Rollout's: serde's JSON names it as well.
    let mut bytes = super::go_json::pod_template_value_json(&as_argo_stores_it(&t))
        .map(String::into_bytes)
        .unwrap_or_else(|_| serde_json::to_vec(&*t).unwrap_or_default());
    if let Some(c) = collision_count {
        // Go: binary.LittleEndian.PutUint32 into an 8-byte slice.
        bytes.extend_from_slice(&(c as u32).to_le_bytes());
        bytes.extend_from_slice(&[0; 4]);
    }
    safe_encode(&fnv32a(&bytes).to_string())
}

/// The hash Aviary 0.2 and earlier computed: FNV-32a over serde's JSON of the template (fields
/// in alphabetical order) and the collision count in decimal. Only read, never given to a new
/// ReplicaSet.
pub fn legacy_pod_template_hash(
    template: &PodTemplateSpec,
    collision_count: Option<i32>,
) -> String {
    let t = without_hash_label(template);
    let mut bytes = serde_json::to_vec(&*t).unwrap_or_default();
    if let Some(c) = collision_count {
        bytes.extend_from_slice(c.to_string().as_bytes());
    }
    safe_encode(&fnv32a(&bytes).to_string())
}

/// A template's hash, and the one Aviary 0.2 gave its ReplicaSet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateHashes {
    pub current: String,
    pub legacy: String,
}

impl TemplateHashes {
    pub fn of(template: &PodTemplateSpec, collision_count: Option<i32>) -> Self {
        Self {
            current: pod_template_hash(template, collision_count),
            legacy: legacy_pod_template_hash(template, collision_count),
        }
    }

    /// Whether a ReplicaSet labelled `hash` is this template's.
    pub fn names(&self, hash: &str) -> bool {
        hash == self.current || hash == self.legacy
    }
}

/// Where a cached Rollout trimmed of its pod spec keeps its template's hashes, current and
/// legacy, space-separated (in the controller's memory only; never written).
pub const TRIMMED_TEMPLATE_HASH: &str = "aviary.dev/trimmed-template-hash";

/// The hashes of the Rollout's pod template with its `status.collisionCount`: computed from the
/// template, or, for a cached Rollout whose pod spec was trimmed away (the API server never
/// serves a template without one), those computed before trimming.
pub fn rollout_template_hashes(ro: &Rollout) -> TemplateHashes {
    if ro.spec.template.spec.is_none()
        && let Some(kept) = ro.annotations().get(TRIMMED_TEMPLATE_HASH)
    {
        let (current, legacy) = kept.split_once(' ').unwrap_or((kept, kept));
        return TemplateHashes {
            current: current.to_string(),
            legacy: legacy.to_string(),
        };
    }
    let collision_count = ro.status.as_ref().and_then(|s| s.collision_count);
    TemplateHashes::of(&ro.spec.template, collision_count)
}

/// The hash of the Rollout's pod template (see [`rollout_template_hashes`]).
pub fn rollout_template_hash(ro: &Rollout) -> String {
    rollout_template_hashes(ro).current
}

/// The hash the Rollout's current revision goes by: the template's, unless no ReplicaSet has it
/// and the revision is known by its Aviary 0.2 hash — a ReplicaSet labelled so exists (its pods
/// stay), or the status records it (someone deleted that ReplicaSet: it is recreated under the
/// name the status, the Services and the stable revision know, as Aviary 0.2 would have).
pub fn revision_hash(ro: &Rollout, replica_sets: &[super::ObservedReplicaSet]) -> String {
    let h = rollout_template_hashes(ro);
    let has = |hash: &str| replica_sets.iter().any(|r| r.hash == hash);
    if has(&h.current) || h.legacy == h.current {
        return h.current;
    }
    let recorded = ro
        .status
        .as_ref()
        .and_then(|s| s.current_pod_hash.as_deref());
    if has(&h.legacy) || recorded == Some(h.legacy.as_str()) {
        return h.legacy;
    }
    h.current
}

/// The name of a revision's ReplicaSet.
pub fn replica_set_name(rollout: &str, hash: &str) -> String {
    format!("{rollout}-{hash}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(image: &str) -> PodTemplateSpec {
        serde_json::from_value(serde_json::json!({
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": image}]}
        }))
        .expect("template")
    }

    #[test]
    fn fnv32a_matches_reference_vectors() {
        assert_eq!(fnv32a(b""), 0x811c9dc5);
        assert_eq!(fnv32a(b"a"), 0xe40c292c);
        assert_eq!(fnv32a(b"foobar"), 0xbf9cf968);
    }

    #[test]
    fn same_template_same_hash_and_image_change_changes_it() {
        let a = pod_template_hash(&template("web:1"), None);
        assert_eq!(a, pod_template_hash(&template("web:1"), None));
        assert_ne!(a, pod_template_hash(&template("web:2"), None));
        assert!(
            a.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)),
            "{a}"
        );
    }

    #[test]
    fn the_hash_label_does_not_change_the_hash() {
        let mut labelled = template("web:1");
        if let Some(l) = labelled.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
            l.insert(POD_TEMPLATE_HASH_LABEL.into(), "xyz".into());
        }
        assert_eq!(
            pod_template_hash(&labelled, None),
            pod_template_hash(&template("web:1"), None)
        );
    }

    #[test]
    fn collision_count_changes_the_hash() {
        let t = template("web:1");
        assert_ne!(pod_template_hash(&t, None), pod_template_hash(&t, Some(1)));
    }

    fn nginx() -> PodTemplateSpec {
        serde_json::from_value(serde_json::json!({
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "nginx:1"}]}
        }))
        .expect("template")
    }

    /// Argo Rollouts' own answers (`argo-hash`, hack/argo-tools), with and without a collision
    /// count; tests/argo_hash.rs checks many more against Go.
    #[test]
    fn the_hash_is_argo_rollouts_hash() {
        assert_eq!(pod_template_hash(&nginx(), None), "5b4b8c567c");
        assert_eq!(pod_template_hash(&nginx(), Some(2)), "7b6dfdb84c");
    }

    /// What Aviary 0.2 labelled this template's ReplicaSets with: it must not drift, or an
    /// upgrade would restart every rollout's pods.
    #[test]
    fn the_legacy_hash_is_aviary_0_2s() {
        assert_eq!(legacy_pod_template_hash(&nginx(), None), "75f67448f4");
        assert_eq!(legacy_pod_template_hash(&nginx(), Some(2)), "65bcbcbccb");
    }

    fn rollout_with(template: PodTemplateSpec) -> Rollout {
        let mut ro: Rollout = serde_json::from_value(serde_json::json!({
            "apiVersion": "aviary.dev/v1alpha1", "kind": "Rollout",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": "web"}},
                     "template": {"spec": {"containers": []}},
                     "strategy": {"canary": {}}}
        }))
        .expect("rollout");
        ro.spec.template = template;
        ro
    }

    fn rs(hash: &str) -> super::super::ObservedReplicaSet {
        super::super::ObservedReplicaSet {
            name: format!("web-{hash}"),
            hash: hash.into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_replica_set_of_aviary_0_2_stays_the_revision_until_one_has_the_current_hash() {
        let ro = rollout_with(nginx());
        assert_eq!(revision_hash(&ro, &[]), "5b4b8c567c");
        assert_eq!(revision_hash(&ro, &[rs("75f67448f4")]), "75f67448f4");
        assert_eq!(
            revision_hash(&ro, &[rs("75f67448f4"), rs("5b4b8c567c")]),
            "5b4b8c567c"
        );
        // Another template's ReplicaSet is not this one's.
        assert_eq!(revision_hash(&ro, &[rs("65bcbcbccb")]), "5b4b8c567c");
        // Its ReplicaSet deleted, the revision the status records keeps its name.
        let mut recorded = ro.clone();
        recorded.status = Some(crate::api::RolloutStatus {
            current_pod_hash: Some("75f67448f4".into()),
            ..Default::default()
        });
        assert_eq!(revision_hash(&recorded, &[]), "75f67448f4");
        assert_eq!(revision_hash(&recorded, &[rs("5b4b8c567c")]), "5b4b8c567c");
    }

    #[test]
    fn a_trimmed_rollout_keeps_both_hashes() {
        let full = rollout_with(nginx());
        let mut trimmed = full.clone();
        trimmed.spec.template.spec = None;
        trimmed
            .annotations_mut()
            .insert(TRIMMED_TEMPLATE_HASH.into(), "5b4b8c567c 75f67448f4".into());
        assert_eq!(
            rollout_template_hashes(&trimmed),
            rollout_template_hashes(&full)
        );
        assert_eq!(revision_hash(&trimmed, &[rs("75f67448f4")]), "75f67448f4");
    }
}
