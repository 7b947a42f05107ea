//! Services whose Rollout is gone are released (F15 of the safety issue).
//!
//! A Rollout points its Services at its pods by adding `rollouts-pod-template-hash` to their
//! selectors, and marks them with the managed-by annotation so no second Rollout takes them.
//! Once the Rollout is deleted both would stay: the selector names pods that are being
//! garbage-collected, and a new Rollout on the same Services (a re-created one, a migration)
//! is refused as "managed by Rollout …". So, as Argo Rollouts does, a Service whose managing
//! Rollout no longer exists gets its selector back as the user wrote it and loses the mark.
//!
//! The sweep runs with the periodic forgetting of deleted rollouts ([`super::telemetry`]), only
//! once the Rollout and Service caches are both complete. Before each release a quorum read
//! confirms the Rollout is gone, and the release waits while another revision of the pods the
//! Service selects still has some (a Rollout deleted with `--cascade=orphan` mid-update: a wider
//! selector would send production traffic to its unpromoted or aborted revision). Each release
//! is a JSON patch that first tests the resourceVersion it decided on: a Rollout re-created
//! meanwhile that writes the Service first wins, and the release is decided again next sweep.

use std::collections::HashSet;

use k8s_openapi::api::apps::v1::ReplicaSet;
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use tracing::{debug, info, warn};

use super::service_cache::{CachedService, WatchedService};
use crate::api::lenient::Lenient;
use crate::api::wire::MANAGED_BY_ANNOTATION;
use crate::api::{POD_TEMPLATE_HASH_LABEL, Rollout};

/// A Service to release: its namespace, name, and the JSON patch that does it.
#[derive(Debug, PartialEq)]
pub struct Release {
    pub namespace: String,
    pub name: String,
    pub owner: String,
    /// The pod-template hash the Service selects, if any.
    pub hash: Option<String>,
    /// The rest of its selector, as a label selector.
    pub others: String,
    pub patch: Value,
}

/// The releases due for `managed` Services (namespace, name, Service) whose managing Rollout is
/// not in `live` (`namespace/name` keys).
pub fn releases(
    managed: Vec<(String, String, CachedService)>,
    live: &HashSet<String>,
) -> Vec<Release> {
    managed
        .into_iter()
        .filter_map(|(namespace, name, svc)| {
            let owner = svc.managed_by.as_deref()?.to_string();
            if live.contains(&format!("{namespace}/{owner}")) {
                return None;
            }
            let rv = svc.resource_version.as_deref()?;
            let mut ops = vec![
                json!({"op": "test", "path": "/metadata/resourceVersion", "value": rv}),
                json!({"op": "remove", "path": format!("/metadata/annotations/{}", escape(MANAGED_BY_ANNOTATION))}),
            ];
            if svc.selects(POD_TEMPLATE_HASH_LABEL).is_some() {
                ops.push(json!({"op": "remove", "path": format!("/spec/selector/{}", escape(POD_TEMPLATE_HASH_LABEL))}));
            }
            let others = svc
                .selector
                .iter()
                .filter(|(k, _)| &**k != POD_TEMPLATE_HASH_LABEL)
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",");
            Some(Release {
                namespace,
                name,
                owner,
                hash: svc.selects(POD_TEMPLATE_HASH_LABEL).map(str::to_string),
                others,
                patch: Value::Array(ops),
            })
        })
        .collect()
}

/// A JSON pointer segment (RFC 6901).
fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// Whether the release must wait: the Rollout still exists (a quorum read: the cache that said
/// it is gone may lag), or the Service selects a revision with pods while another of the same
/// pods still has some — a Rollout deleted with `--cascade=orphan` mid-update, its unpromoted or
/// aborted revision left running: widening the selector would send production traffic to it.
/// The release then waits for those pods to go.
async fn must_wait(
    client: &kube::Client,
    release: &Release,
) -> Result<Option<String>, kube::Error> {
    let ns = &release.namespace;
    // Lenient: a Rollout that exists but does not decode (skipped by the watch, so absent from
    // the cache) still exists, and keeps its Services.
    if Api::<Lenient<Rollout>>::namespaced(client.clone(), ns)
        .get_opt(&release.owner)
        .await?
        .is_some()
    {
        return Ok(Some("the Rollout exists".into()));
    }
    let Some(hash) = &release.hash else {
        return Ok(None);
    };
    let listed = Api::<ReplicaSet>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(&release.others))
        .await?;
    let has_pods = |rs: &&ReplicaSet| {
        rs.status.as_ref().map_or(0, |s| s.replicas)
            + rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
            > 0
    };
    let revision = |rs: &ReplicaSet| rs.labels().get(POD_TEMPLATE_HASH_LABEL).cloned();
    let mut with_pods = listed.items.iter().filter(has_pods);
    // A selector on a revision without pods has no traffic to protect: widening it can only
    // help (the migration's new pods, say).
    if !with_pods
        .clone()
        .any(|rs| revision(rs).as_ref() == Some(hash))
    {
        return Ok(None);
    }
    let other = with_pods.find(|rs| revision(rs).is_some_and(|r| &r != hash));
    Ok(other.map(|rs| {
        format!(
            "ReplicaSet {} of another revision still has pods",
            rs.name_any()
        )
    }))
}

/// Releases every Service whose managing Rollout is not in `live`. Failures are logged and left
/// for the next sweep.
pub async fn release_orphans(ctx: &super::Context, live: &HashSet<String>) {
    if !ctx.view.services.is_ready() {
        return;
    }
    for release in releases(ctx.view.services.managed(), live) {
        match must_wait(ctx.client(), &release).await {
            Ok(None) => {}
            Ok(Some(why)) => {
                debug!(namespace = %release.namespace, service = %release.name, rollout = %release.owner, %why, "Service of a deleted Rollout kept for now");
                continue;
            }
            Err(e) => {
                info!(namespace = %release.namespace, service = %release.name, error = %e, "could not check the Service of a deleted Rollout yet");
                continue;
            }
        }
        let api: Api<WatchedService> = Api::namespaced(ctx.client().clone(), &release.namespace);
        let patch = match serde_json::from_value::<json_patch::Patch>(release.patch) {
            Ok(p) => p,
            Err(e) => {
                warn!(error = %e, "release patch did not build");
                continue;
            }
        };
        let (ns, name, owner) = (&release.namespace, &release.name, &release.owner);
        match api
            .patch(name, &PatchParams::default(), &Patch::<()>::Json(patch))
            .await
        {
            Ok(_) => info!(
                namespace = %ns, service = %name, rollout = %owner,
                "released the Service of a deleted Rollout: its selector no longer names a pod-template hash"
            ),
            Err(e) => info!(
                namespace = %ns, service = %name, rollout = %owner, error = %e,
                "could not release the Service of a deleted Rollout yet; trying again at the next sweep"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Rollout that exists but does not decode is absent from the cache (the watch skips it),
    /// but it still exists: its Services are not released.
    #[tokio::test]
    async fn a_rollout_that_does_not_decode_still_keeps_its_services() {
        use crate::controller::fixtures::{mock_client, within_deadline};
        let (client, mut server) = mock_client();
        let release = Release {
            namespace: "shop".into(),
            name: "web-stable".into(),
            owner: "web".into(),
            hash: Some("abc".into()),
            others: "app=web".into(),
            patch: json!([]),
        };
        let client_side = async move { must_wait(&client, &release).await };
        let server_side = async {
            server
                .expect(
                    "GET",
                    "/apis/aviary.dev/v1alpha1/namespaces/shop/rollouts/web",
                    http::StatusCode::OK,
                    json!({"apiVersion": "aviary.dev/v1alpha1", "kind": "Rollout",
                           "metadata": {"name": "web", "namespace": "shop"},
                           "spec": {"replicas": "three"}}),
                )
                .await;
        };
        let (waits, ()) = within_deadline(async { tokio::join!(client_side, server_side) }).await;
        assert_eq!(
            waits.map_err(|e| e.to_string()),
            Ok(Some("the Rollout exists".to_string()))
        );
    }

    fn svc(rv: &str, owner: Option<&str>, hash: Option<&str>) -> CachedService {
        let mut selector = vec![("app".into(), "web".into())];
        if let Some(h) = hash {
            selector.push((POD_TEMPLATE_HASH_LABEL.into(), h.into()));
        }
        CachedService {
            resource_version: Some(rv.into()),
            managed_by: owner.map(Into::into),
            selector: selector.into_boxed_slice(),
        }
    }

    #[test]
    fn only_services_of_gone_rollouts_are_released_under_their_version() {
        let live = HashSet::from(["app/web".to_string()]);
        let managed = vec![
            (
                "app".into(),
                "web-stable".into(),
                svc("5", Some("web"), Some("abc")),
            ),
            (
                "app".into(),
                "old-stable".into(),
                svc("7", Some("old"), Some("def")),
            ),
            // A Rollout of the same name in another namespace does not keep it.
            (
                "other".into(),
                "web-stable".into(),
                svc("9", Some("web"), None),
            ),
        ];
        let got = releases(managed, &live);
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(
            (got[0].name.as_str(), got[0].owner.as_str()),
            ("old-stable", "old")
        );
        assert_eq!(
            (got[0].hash.as_deref(), got[0].others.as_str()),
            (Some("def"), "app=web")
        );
        assert_eq!(
            got[0].patch,
            json!([
                {"op": "test", "path": "/metadata/resourceVersion", "value": "7"},
                {"op": "remove", "path": "/metadata/annotations/aviary.dev~1managed-by-rollouts"},
                {"op": "remove", "path": "/spec/selector/rollouts-pod-template-hash"},
            ])
        );
        // No hash in the selector: only the mark goes.
        assert_eq!(got[1].namespace, "other");
        assert_eq!(got[1].patch.as_array().map(Vec::len), Some(2));
    }
}
