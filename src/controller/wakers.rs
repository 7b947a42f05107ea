//! Which Rollouts a change to a Service or a routing object (VirtualService, HTTPRoute, Ingress)
//! wakes; and a change to a Deployment, the Rollouts whose `workloadRef` names it.
//!
//! A Rollout steers objects it does not own: its Services' selectors and its VirtualServices'
//! weights. When someone else changes one (a GitOps sync that resets a weight, a hand edit of a
//! selector, a Service deleted and re-created), the Rollout must converge it again now, not at
//! the next safety resync. So the Service and VirtualService watches (which exist anyway, as
//! caches) and the change-only watches of HTTPRoutes and Ingresses wake every Rollout that
//! names the changed object.
//!
//! Our own writes are not news: the Rollout that made one already planned past it. A Service or
//! VirtualService change whose resourceVersion is the one our write returned wakes nobody (a
//! version a read found is not ours: on a VirtualService two Rollouts share, another Rollout's
//! news may hide behind it); an HTTPRoute or Ingress change whose newest field manager is ours
//! wakes nobody. Changes delivered as watch events wake. After a broken watch, what the relist
//! finds changed or gone wakes for Services; for routing objects only in a multi-namespace
//! scope (whose merged watch, [`super::scope`], sends a relist's changes as events); otherwise a
//! routing object changed while its watch was broken waits for the safety resync.

use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};

use crate::api::Rollout;
use crate::traffic::ObjectName;

/// The canary's traffic routing, if it has one.
fn traffic_routing(ro: &Rollout) -> Option<&crate::api::RolloutTrafficRouting> {
    ro.spec.canary().and_then(|c| c.traffic_routing.as_ref())
}

/// Whether `ro` weights the VirtualService `namespace/name` (named plainly, in the Rollout's
/// namespace, or as `namespace/name`).
pub fn names_virtual_service(ro: &Rollout, namespace: &str, name: &str) -> bool {
    let own_ns = ro.namespace().unwrap_or_default();
    traffic_routing(ro)
        .and_then(|t| t.istio.as_ref())
        .is_some_and(|istio| {
            istio.virtual_services().into_iter().any(|vs| {
                let vs = ObjectName::parse(&vs.name);
                vs.name == name && vs.namespace_or(&own_ns) == namespace
            })
        })
}

/// Whether `ro` weights the HTTPRoute `namespace/name` (named in the Rollout's namespace).
pub fn names_http_route(ro: &Rollout, namespace: &str, name: &str) -> bool {
    ro.namespace().as_deref() == Some(namespace)
        && traffic_routing(ro)
            .and_then(|t| t.gateway_api.as_ref())
            .is_some_and(|g| g.http_routes().contains(&name))
}

/// Whether `ro` routes through the Ingress `namespace/name`: a stable Ingress it names, or the
/// canary Ingress it keeps beside one.
pub fn names_ingress(ro: &Rollout, namespace: &str, name: &str) -> bool {
    let rollout = ro.name_any();
    ro.namespace().as_deref() == Some(namespace)
        && traffic_routing(ro)
            .and_then(|t| t.nginx.as_ref())
            .is_some_and(|n| {
                n.stable_ingresses().into_iter().any(|stable| {
                    stable == name
                        || crate::traffic::nginx::canary_ingress_name(&rollout, stable) == name
                })
            })
}

/// Whether `ro`'s `workloadRef` names the Deployment `namespace/name`.
pub fn names_deployment(ro: &Rollout, namespace: &str, name: &str) -> bool {
    ro.namespace().as_deref() == Some(namespace)
        && ro
            .spec
            .workload_ref
            .as_ref()
            .is_some_and(|w| w.name == name)
}

/// The Rollouts that steer the routing object `kind` `namespace/name`.
pub fn rollouts_naming_routing_object(
    store: &Store<Rollout>,
    kind: &str,
    namespace: &str,
    name: &str,
) -> Vec<ObjectRef<Rollout>> {
    match kind {
        "VirtualService" => rollouts_naming_virtual_service(store, namespace, name),
        "HTTPRoute" => rollouts_where(store, |ro| names_http_route(ro, namespace, name)),
        "Ingress" => rollouts_where(store, |ro| names_ingress(ro, namespace, name)),
        "Deployment" => rollouts_where(store, |ro| names_deployment(ro, namespace, name)),
        _ => vec![],
    }
}

/// The Rollouts of `store` that `names` says name the object.
fn rollouts_where(
    store: &Store<Rollout>,
    names: impl Fn(&Rollout) -> bool,
) -> Vec<ObjectRef<Rollout>> {
    store
        .state()
        .iter()
        .filter(|ro| names(ro))
        .map(|ro| ObjectRef::from_obj(ro.as_ref()))
        .collect()
}

/// The Rollouts in `namespace` that point the Service `name` at their pods.
pub fn rollouts_naming_service(
    store: &Store<Rollout>,
    namespace: &str,
    name: &str,
) -> Vec<ObjectRef<Rollout>> {
    rollouts_where(store, |ro| {
        ro.namespace().as_deref() == Some(namespace) && ro.spec.service_names().any(|s| s == name)
    })
}

/// The Rollouts (in any namespace) that weight the VirtualService `namespace/name`.
pub fn rollouts_naming_virtual_service(
    store: &Store<Rollout>,
    namespace: &str,
    name: &str,
) -> Vec<ObjectRef<Rollout>> {
    rollouts_where(store, |ro| names_virtual_service(ro, namespace, name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::reflector;
    use kube::runtime::watcher::Event;
    use serde_json::json;

    fn rollout(ns: &str, name: &str, strategy: serde_json::Value) -> Rollout {
        serde_json::from_value(json!({
            "apiVersion": "aviary.dev/v1alpha1", "kind": "Rollout",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"selector": {"matchLabels": {"app": name}},
                "template": {"metadata": {"labels": {"app": name}}},
                "strategy": strategy},
        }))
        .expect("rollout")
    }

    fn names(refs: Vec<ObjectRef<Rollout>>) -> Vec<String> {
        let mut v: Vec<String> = refs
            .into_iter()
            .map(|r| format!("{}/{}", r.namespace.unwrap_or_default(), r.name))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_change_wakes_the_rollouts_that_name_the_object_and_no_other() {
        let (store, mut writer) = reflector::store::<Rollout>();
        writer.apply_watcher_event(&Event::Init);
        for ro in [
            rollout(
                "a",
                "web",
                json!({"canary": {"stableService": "web-stable", "canaryService": "web-canary",
                "trafficRouting": {"istio": {"virtualService": {"name": "web"}}}}}),
            ),
            rollout(
                "b",
                "web",
                json!({"canary": {"stableService": "web-stable",
                "trafficRouting": {"istio": {"virtualServices": [{"name": "mesh/shared"}, {"name": "local"}]}}}}),
            ),
            rollout(
                "a",
                "bg",
                json!({"blueGreen": {"activeService": "bg-active", "previewService": "web-canary"}}),
            ),
        ] {
            writer.apply_watcher_event(&Event::InitApply(ro));
        }
        writer.apply_watcher_event(&Event::InitDone);

        assert_eq!(
            names(rollouts_naming_service(&store, "a", "web-stable")),
            ["a/web"]
        );
        assert_eq!(
            names(rollouts_naming_service(&store, "b", "web-stable")),
            ["b/web"]
        );
        // Two Rollouts naming one Service both wake (the second is refused, and says so).
        assert_eq!(
            names(rollouts_naming_service(&store, "a", "web-canary")),
            ["a/bg", "a/web"]
        );
        assert_eq!(
            names(rollouts_naming_service(&store, "a", "bg-active")),
            ["a/bg"]
        );
        assert!(rollouts_naming_service(&store, "a", "unrelated").is_empty());

        assert_eq!(
            names(rollouts_naming_virtual_service(&store, "a", "web")),
            ["a/web"]
        );
        assert!(rollouts_naming_virtual_service(&store, "b", "web").is_empty());
        // Named with its namespace, from another namespace.
        assert_eq!(
            names(rollouts_naming_virtual_service(&store, "mesh", "shared")),
            ["b/web"]
        );
        assert!(rollouts_naming_virtual_service(&store, "b", "shared").is_empty());
        assert_eq!(
            names(rollouts_naming_virtual_service(&store, "b", "local")),
            ["b/web"]
        );
    }

    #[test]
    fn http_routes_and_ingresses_wake_the_rollouts_that_steer_them() {
        let (store, mut writer) = reflector::store::<Rollout>();
        writer.apply_watcher_event(&Event::Init);
        for ro in [
            rollout(
                "a",
                "gw",
                json!({"canary": {"stableService": "s", "canaryService": "c",
                "trafficRouting": {"gatewayAPI": {"httpRoute": "route"}}}}),
            ),
            rollout(
                "a",
                "ng",
                json!({"canary": {"stableService": "s", "canaryService": "c",
                "trafficRouting": {"nginx": {"stableIngress": "front"}}}}),
            ),
            {
                let mut ro = rollout("a", "migrated", json!({"canary": {}}));
                ro.spec.workload_ref = Some(crate::api::WorkloadRef {
                    api_version: "apps/v1".into(),
                    kind: "Deployment".into(),
                    name: "legacy".into(),
                    scale_down: None,
                });
                ro
            },
        ] {
            writer.apply_watcher_event(&Event::InitApply(ro));
        }
        writer.apply_watcher_event(&Event::InitDone);
        let woken = |kind: &str, ns: &str, name: &str| {
            names(rollouts_naming_routing_object(&store, kind, ns, name))
        };
        assert_eq!(woken("HTTPRoute", "a", "route"), ["a/gw"]);
        assert!(
            woken("HTTPRoute", "b", "route").is_empty(),
            "same name, other namespace"
        );
        assert_eq!(
            woken("Ingress", "a", "front"),
            ["a/ng"],
            "the stable Ingress"
        );
        assert_eq!(
            woken("Ingress", "a", "ng-front-canary"),
            ["a/ng"],
            "the canary Ingress"
        );
        assert!(woken("Ingress", "a", "route").is_empty());
        assert!(
            woken("Deployment", "a", "front").is_empty(),
            "no workloadRef"
        );
        assert_eq!(woken("Deployment", "a", "legacy"), ["a/migrated"]);
        assert!(
            woken("Deployment", "b", "legacy").is_empty(),
            "other namespace"
        );
        assert!(woken("Service", "a", "s").is_empty(), "not a routing kind");
    }
}
