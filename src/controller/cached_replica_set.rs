//! The ReplicaSet as the controller caches it.
//!
//! k8s-openapi's `ReplicaSet` holds its pod template inline: 1,848 of its 2,360 bytes, allocated
//! for every cached ReplicaSet even with the template cleared. A rollout keeps up to
//! `revisionHistoryLimit` + 1 ReplicaSets (11 by default), so this was most of the controller's
//! memory once histories fill (docs/benchmarks.md). This type has only what the planner reads —
//! metadata, `spec.replicas`, the status counters — and the watch decodes the rest of each
//! object (the pod template) into nothing.

use std::borrow::Cow;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::ReplicaSetStatus;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

/// A ReplicaSet without its pod template and selector.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct CachedReplicaSet {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<CachedReplicaSetSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ReplicaSetStatus>,
}

/// Of a ReplicaSet's spec, the replica count.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct CachedReplicaSetSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
}

impl kube::Resource for CachedReplicaSet {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        "ReplicaSet".into()
    }
    fn group(_: &()) -> Cow<'_, str> {
        "apps".into()
    }
    fn version(_: &()) -> Cow<'_, str> {
        "v1".into()
    }
    fn api_version(_: &()) -> Cow<'_, str> {
        "apps/v1".into()
    }
    fn plural(_: &()) -> Cow<'_, str> {
        "replicasets".into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// Drops what is left that the controller never reads: managed fields and the last-applied
/// annotation (the template and selector are never decoded).
pub fn trim(rs: &mut CachedReplicaSet) {
    rs.metadata.managed_fields = None;
    if let Some(a) = rs.metadata.annotations.as_mut() {
        a.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::ReplicaSet;
    use serde_json::json;

    #[test]
    fn decodes_what_the_planner_reads_and_nothing_of_the_template() {
        let whole = json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "web-abc", "namespace": "shop", "resourceVersion": "7",
                         "labels": {"rollouts-pod-template-hash": "abc"},
                         "annotations": {"aviary.dev/revision": "3"},
                         "managedFields": [{"manager": "aviary", "operation": "Update"}]},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "web", "image": "web:2"}]}}},
            "status": {"replicas": 2, "readyReplicas": 1, "availableReplicas": 1}
        });
        let mut cached: CachedReplicaSet = serde_json::from_value(whole.clone()).expect("decodes");
        trim(&mut cached);
        let full: ReplicaSet = serde_json::from_value(whole).expect("decodes");
        assert_eq!(cached.metadata.name, full.metadata.name);
        assert_eq!(cached.metadata.labels, full.metadata.labels);
        assert_eq!(cached.metadata.annotations, full.metadata.annotations);
        assert_eq!(cached.metadata.managed_fields, None);
        assert_eq!(cached.spec.and_then(|s| s.replicas), Some(2));
        assert_eq!(cached.status, full.status);
        assert!(
            std::mem::size_of::<CachedReplicaSet>() * 3 < std::mem::size_of::<ReplicaSet>(),
            "the cached form is a fraction of the whole"
        );
    }
}
