//! Act on a role metadata sync ([`crate::plan::pod_metadata`]): the ReplicaSet first — its
//! template, the record of what it now carries, and the keys its pods still have to lose — so
//! every pod it creates from then on carries the role; then, once the ReplicaSet controller has
//! seen that template (`status.observedGeneration`; until then it may still create pods from
//! the old one), its running pods, each patched in place (labels and annotations only: nothing
//! restarts); then the record that its pods are done. A controller stopped between two steps
//! finds the pending record and does them again.

use std::collections::BTreeMap;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch};
use kube::{Resource, ResourceExt};
use serde_json::{Map, Value, json};
use tracing::{debug, info};

use super::Context;
use super::error::Error;
use super::replica_set_cache::WatchedReplicaSet;
use crate::api::wire::{
    self, ARGO_POD_METADATA_ANNOTATION, POD_METADATA_ANNOTATION, POD_METADATA_KEPT_ANNOTATION,
    POD_METADATA_STALE_ANNOTATION, reasons,
};
use crate::api::{PodMetadata, Rollout};
use crate::plan::pod_metadata::{
    Annotations, Keys, kept_keys, metadata_patch, protected_keys, read,
};
use crate::plan::{Event, POD_TEMPLATE_HASH_LABEL};

/// Pods patched at once.
const CONCURRENT_PATCHES: usize = 8;

/// Brings the ReplicaSet `name` of `ro` and its pods to `want`. `None` when there was nothing
/// to do (the ReplicaSet is gone, is not this Rollout's, or already holds `want`) or the pods
/// must wait for the ReplicaSet controller (the ReplicaSet's status change wakes the Rollout);
/// else the Event that says what changed.
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
    let record = read(Annotations::of(rs.annotations()));
    // The cache may not show an earlier sync yet: one that holds needs no write, no list.
    let held = record.recorded.applied.as_ref().filter(|m| !m.is_empty());
    if !record.recorded.pending && held == want {
        return Ok(None);
    }
    let remove = record.to_remove(want);
    let spec = rs.spec.as_ref();
    let template_meta = spec
        .and_then(|s| s.template.as_ref())
        .and_then(|t| t.metadata.as_ref());
    let own = record.own_keys(
        template_meta.and_then(|m| m.labels.as_ref()),
        template_meta.and_then(|m| m.annotations.as_ref()),
    );
    let mut kept = record.kept.clone();
    kept.extend(kept_keys(&own, want));
    let mut protected = protected_keys(spec.and_then(|s| s.selector.match_labels.as_ref()));
    protected.extend(own);

    // 1. The ReplicaSet: template, record, and the keys its pods still have to lose.
    let json_or_null = |keys: &Keys| -> Result<Value, Error> {
        Ok(if keys.is_empty() {
            Value::Null
        } else {
            Value::String(serde_json::to_string(keys)?)
        })
    };
    let mut annotations = Map::new();
    annotations.insert(
        POD_METADATA_ANNOTATION.into(),
        match want {
            Some(w) => Value::String(serde_json::to_string(w)?),
            None => Value::Null,
        },
    );
    if rs.annotations().contains_key(ARGO_POD_METADATA_ANNOTATION) {
        annotations.insert(ARGO_POD_METADATA_ANNOTATION.into(), Value::Null);
    }
    annotations.insert(
        POD_METADATA_STALE_ANNOTATION.into(),
        Value::String(serde_json::to_string(&remove)?),
    );
    annotations.insert(POD_METADATA_KEPT_ANNOTATION.into(), json_or_null(&kept)?);
    let mut body = json!({"metadata": {"annotations": annotations}});
    if let Some(template) = metadata_patch(
        template_meta.and_then(|m| m.labels.as_ref()),
        template_meta.and_then(|m| m.annotations.as_ref()),
        want,
        &remove,
        &protected,
    ) {
        body["spec"] = json!({"template": {"metadata": template}});
    }
    // Written as the watch decodes ReplicaSets, so the write can be recorded in the cache.
    let watched_api: Api<WatchedReplicaSet> = Api::namespaced(ctx.client().clone(), &ns);
    let params = wire::patch_params();
    let written = watched_api
        .patch(name, &params, &Patch::Merge(&body))
        .await?;
    let uid = ro.meta().uid.as_deref();
    if let Some(uid) = uid {
        ctx.view.replica_sets.record_write(uid, name, &written);
    }
    let generation = written.metadata.generation.unwrap_or(0);
    let observed = written
        .status
        .as_ref()
        .and_then(|s| s.observed_generation)
        .unwrap_or(0);
    if observed < generation {
        // Pods made from the old template may still come; list them once they can't.
        debug!(rollout = %ro.name_any(), replica_set = name, "role metadata: waiting for the ReplicaSet controller to see the template");
        return Ok(None);
    }

    // 2. Its pods: every one it made from an older template exists now.
    let pod_api: Api<Pod> = Api::namespaced(ctx.client().clone(), &ns);
    let rs_uid = rs.meta().uid.clone();
    let mut params_list = ListParams::default()
        .labels(&format!("{POD_TEMPLATE_HASH_LABEL}={hash}"))
        .limit(super::observe::POD_PAGE);
    let mut patches: Vec<(String, Value)> = vec![];
    loop {
        let page = pod_api.list_metadata(&params_list).await?;
        for p in &page.items {
            let mine = p
                .owner_references()
                .iter()
                .any(|o| o.controller == Some(true) && Some(&o.uid) == rs_uid.as_ref());
            if !mine {
                continue;
            }
            let meta = &p.metadata;
            if let Some(patch) = metadata_patch(
                meta.labels.as_ref(),
                meta.annotations.as_ref(),
                want,
                &remove,
                &protected,
            ) {
                patches.push((p.name_any(), json!({ "metadata": patch })));
            }
        }
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params_list = params_list.continue_token(&token),
            _ => break,
        }
    }
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
    if let Some(uid) = uid {
        ctx.view.replica_sets.record_write(uid, name, &written);
    }
    info!(rollout = %ro.name_any(), replica_set = name, pods = patched, "synced role metadata");
    Ok(Some(Event::normal(
        reasons::POD_METADATA_SYNCED,
        describe(name, want, &remove, &kept, patched),
    )))
}

/// "Role metadata of ReplicaSet web-abc and 3 of its pods updated: set labels role; removed
/// labels track".
fn describe(
    name: &str,
    want: Option<&PodMetadata>,
    remove: &Keys,
    kept: &Keys,
    pods: usize,
) -> String {
    let map_keys = |m: Option<&BTreeMap<String, String>>| {
        m.map(|m| m.keys().cloned().collect::<Vec<_>>().join(", "))
            .unwrap_or_default()
    };
    let set_keys =
        |s: &std::collections::BTreeSet<String>| s.iter().cloned().collect::<Vec<_>>().join(", ");
    let mut parts = vec![];
    for (what, keys) in [
        ("set labels", map_keys(want.and_then(|w| w.labels.as_ref()))),
        (
            "set annotations",
            map_keys(want.and_then(|w| w.annotations.as_ref())),
        ),
        ("removed labels", set_keys(&remove.labels)),
        ("removed annotations", set_keys(&remove.annotations)),
        ("left the template's own labels", set_keys(&kept.labels)),
        (
            "left the template's own annotations",
            set_keys(&kept.annotations),
        ),
    ] {
        if !keys.is_empty() {
            parts.push(format!("{what} {keys}"));
        }
    }
    if parts.is_empty() {
        parts.push("no role metadata".into());
    }
    format!(
        "Role metadata of ReplicaSet {name} and {pods} of its pods updated: {}",
        parts.join("; ")
    )
}
