//! The pod-template hash that names a revision's ReplicaSet (`<rollout>-<hash>`) and labels its
//! pods (`rollouts-pod-template-hash`). Computed as Argo Rollouts does — FNV-32a over the JSON of
//! the pod template (plus the collision count, when set), "safe-encoded" — so that a template
//! always maps to the same ReplicaSet, across restarts and controller replicas.

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

/// The hash of a pod template. The hash label itself is ignored, so a template read back from a
/// ReplicaSet hashes like the one in the Rollout.
pub fn pod_template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let mut t = template.clone();
    if let Some(labels) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove(POD_TEMPLATE_HASH_LABEL);
    }
    // Serialising a k8s-openapi struct is deterministic: fields in declaration order, maps sorted.
    let mut bytes = serde_json::to_vec(&t).unwrap_or_default();
    if let Some(c) = collision_count {
        bytes.extend_from_slice(c.to_string().as_bytes());
    }
    safe_encode(&fnv32a(&bytes).to_string())
}

/// Where a cached Rollout trimmed of its pod spec keeps its template's hash (in the
/// controller's memory only; never written).
pub const TRIMMED_TEMPLATE_HASH: &str = "aviary.dev/trimmed-template-hash";

/// The hash of the Rollout's pod template with its `status.collisionCount`: computed from the
/// template, or, for a cached Rollout whose pod spec was trimmed away (the API server never
/// serves a template without one), the hash computed before trimming.
pub fn rollout_template_hash(ro: &Rollout) -> String {
    if ro.spec.template.spec.is_none()
        && let Some(hash) = ro.annotations().get(TRIMMED_TEMPLATE_HASH)
    {
        return hash.clone();
    }
    let collision_count = ro.status.as_ref().and_then(|s| s.collision_count);
    pod_template_hash(&ro.spec.template, collision_count)
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
}
