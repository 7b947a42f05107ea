//! Act on a role metadata sync ([`crate::plan::pod_metadata`]): the ReplicaSet first — its
//! template, the record of what it now carries, and the keys its pods still have to lose — so
//! every pod it creates from then on carries the role; then its running pods, each patched in
//! place (labels and annotations only: nothing restarts); then the record that its pods are
//! done. A controller stopped between two steps finds the pending record and does them again.

use std::collections::BTreeMap;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch};
use kube::{Resource, ResourceExt};
use serde_json::{Map, Value, json};
use tracing::info;

use super::Context;
use super::error::Error;
use super::replica_set_cache::WatchedReplicaSet;
use crate::api::wire::{
    self, ARGO_POD_METADATA_ANNOTATION, POD_METADATA_ANNOTATION, POD_METADATA_STALE_ANNOTATION,
    reasons,
};
use crate::api::{PodMetadata, Rollout};
use crate::plan::pod_metadata::{Keys, keys_to_remove, metadata_patch, protected_keys, read};
use crate::plan::{Event, POD_TEMPLATE_HASH_LABEL};

/// Pods patched at once.
const CONCURRENT_PATCHES: usize = 8;

/// Brings the ReplicaSet `name` of `ro` and its pods to `want`. `None` when there was nothing
/// to do (the ReplicaSet is gone, or is not this Rollout's); else the Event that says what.
pub async fn sync(
    ctx: &Context,
    ro: &Rollout,
    name: &str,
    want: Option<&PodMetadata>,
) -> Result<Option<Event>, Error> {
    let ns = ro.namespace().unwrap_or_default();
    let rs_api: Api<ReplicaSet> = Api::namespaced(ctx.client().clone(), &ns);
    let Some(rs) = rs_api.get_opt(name).await? else {
        return Ok(None);
    };
    let ours = rs
        .owner_references()
        .iter()
        .any(|o| o.controller == Some(true) && Some(&o.uid) == ro.meta().uid.as_ref());
    let Some(hash) = rs.labels().get(POD_TEMPLATE_HASH_LABEL).cloned() else {
        return Ok(None);
    };
    if !ours {
        return Ok(None);
    }
    let annotations = rs.annotations();
    let (recorded, stale) = read(
        annotations
            .get(POD_METADATA_ANNOTATION)
            .or_else(|| annotations.get(ARGO_POD_METADATA_ANNOTATION))
            .map(String::as_str),
        annotations
            .get(POD_METADATA_STALE_ANNOTATION)
            .map(String::as_str),
    );
    // The cache may not show an earlier sync yet: one that holds needs no write, no list.
    let held = recorded.applied.as_ref().filter(|m| !m.is_empty());
    if !recorded.pending && held == want {
        return Ok(None);
    }
    let remove = keys_to_remove(recorded.applied.as_ref(), stale, want);
    let spec = rs.spec.as_ref();
    let protected = protected_keys(spec.and_then(|s| s.selector.match_labels.as_ref()));
    let template_meta = spec
        .and_then(|s| s.template.as_ref())
        .and_then(|t| t.metadata.as_ref());

    // 1. The ReplicaSet: template, record, and the keys its pods still have to lose.
    let mut record = Map::new();
    record.insert(
        POD_METADATA_ANNOTATION.into(),
        match want {
            Some(w) => Value::String(serde_json::to_string(w)?),
            None => Value::Null,
        },
    );
    if annotations.contains_key(ARGO_POD_METADATA_ANNOTATION) {
        record.insert(ARGO_POD_METADATA_ANNOTATION.into(), Value::Null);
    }
    record.insert(
        POD_METADATA_STALE_ANNOTATION.into(),
        Value::String(serde_json::to_string(&remove)?),
    );
    let mut body = json!({"metadata": {"annotations": record}});
    if let Some(template) = metadata_patch(
        template_meta.and_then(|m| m.labels.as_ref()),
        template_meta.and_then(|m| m.annotations.as_ref()),
        want,
        &remove,
        &protected,
    ) {
        body["spec"] = json!({"template": {"metadata": template}});
    }
    // Written as the watch decodes ReplicaSets, so the last write can be recorded in the cache.
    let watched_api: Api<WatchedReplicaSet> = Api::namespaced(ctx.client().clone(), &ns);
    let params = wire::patch_params();
    watched_api
        .patch(name, &params, &Patch::Merge(&body))
        .await?;

    // 2. Its pods, listed after the ReplicaSet changed: one it creates later has the role.
    let pod_api: Api<Pod> = Api::namespaced(ctx.client().clone(), &ns);
    let rs_uid = rs.meta().uid.clone();
    let pods = pod_api
        .list(&ListParams::default().labels(&format!("{POD_TEMPLATE_HASH_LABEL}={hash}")))
        .await?;
    let patches: Vec<(String, Value)> = pods
        .items
        .iter()
        .filter(|p| {
            p.owner_references()
                .iter()
                .any(|o| o.controller == Some(true) && Some(&o.uid) == rs_uid.as_ref())
        })
        .filter_map(|p| {
            let meta = p.meta();
            let patch = metadata_patch(
                meta.labels.as_ref(),
                meta.annotations.as_ref(),
                want,
                &remove,
                &protected,
            )?;
            Some((p.name_any(), json!({ "metadata": patch })))
        })
        .collect();
    let patched = patches.len();
    let results: Vec<Result<(), kube::Error>> = futures::stream::iter(patches)
        .map(|(pod, body)| {
            let api = pod_api.clone();
            async move {
                match api
                    .patch(&pod, &wire::patch_params(), &Patch::Merge(&body))
                    .await
                {
                    Ok(_) => Ok(()),
                    // Gone: its replacement comes from the template, which has the role.
                    Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
                    Err(e) => Err(e),
                }
            }
        })
        .buffer_unordered(CONCURRENT_PATCHES)
        .collect()
        .await;
    for r in results {
        r?;
    }

    // 3. Done: nothing left to take off.
    let done = json!({"metadata": {"annotations": {POD_METADATA_STALE_ANNOTATION: null}}});
    let written = watched_api
        .patch(name, &params, &Patch::Merge(&done))
        .await?;
    if let Some(uid) = ro.meta().uid.as_deref() {
        ctx.view.replica_sets.record_write(uid, name, &written);
    }
    info!(rollout = %ro.name_any(), replica_set = name, pods = patched, "synced role metadata");
    Ok(Some(Event::normal(
        reasons::POD_METADATA_SYNCED,
        describe(name, want, &remove, patched),
    )))
}

/// "ReplicaSet web-abc and 3 of its pods: set labels role; removed labels track".
fn describe(name: &str, want: Option<&PodMetadata>, remove: &Keys, pods: usize) -> String {
    let keys = |m: Option<&BTreeMap<String, String>>| {
        m.map(|m| m.keys().cloned().collect::<Vec<_>>().join(", "))
            .unwrap_or_default()
    };
    let mut parts = vec![];
    let set_labels = keys(want.and_then(|w| w.labels.as_ref()));
    let set_annotations = keys(want.and_then(|w| w.annotations.as_ref()));
    if !set_labels.is_empty() {
        parts.push(format!("set labels {set_labels}"));
    }
    if !set_annotations.is_empty() {
        parts.push(format!("set annotations {set_annotations}"));
    }
    let join =
        |s: &std::collections::BTreeSet<String>| s.iter().cloned().collect::<Vec<_>>().join(", ");
    if !remove.labels.is_empty() {
        parts.push(format!("removed labels {}", join(&remove.labels)));
    }
    if !remove.annotations.is_empty() {
        parts.push(format!("removed annotations {}", join(&remove.annotations)));
    }
    if parts.is_empty() {
        parts.push("no role metadata".into());
    }
    format!(
        "Role metadata of ReplicaSet {name} and {pods} of its pods updated: {}",
        parts.join("; ")
    )
}
