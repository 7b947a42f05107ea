//! The Service cache: of every Service in the watched namespaces, what observe and act read.
//!
//! Services are the users' and not labelled by us, so the watch cannot filter them: every
//! Service in the watched namespaces is cached, two or more per rollout. A kube-runtime `Store`
//! of `Service`s, even trimmed to the selector and one annotation, kept per Service an
//! `ObjectMeta` and a `ServiceSpec` of mostly empty fields, a B-tree node of ~540 bytes for each
//! of the two maps however few entries they hold, and an `ObjectRef` key (docs/benchmarks.md,
//! item 19). What is read is the selector, our managed-by annotation, and the resourceVersion
//! our own writes are checked against ([`super::observe::ServiceWrites`]). So the watch decodes
//! each event into [`WatchedService`] (no ports, IPs or status: never decoded) and the cache keeps
//! a [`CachedService`] by namespace and name.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use kube::runtime::watcher::Event;
use serde::{Deserialize, Serialize};

use super::relisting::{Relisting, WatchedMap};
use crate::api::wire::MANAGED_BY_ANNOTATION;

/// A Service as the watch (and a read on a cache miss, and our selector patch's answer) decodes
/// it: its metadata and selector. It lives only until it has become a [`CachedService`].
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, kube::Resource)]
#[resource(inherit = Service)]
pub struct WatchedService {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<WatchedServiceSpec>,
}

/// Of a Service's spec, the selector.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct WatchedServiceSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<BTreeMap<String, String>>,
}

/// One cached Service: what observe and act read of it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CachedService {
    /// `metadata.resourceVersion`: our selector writes are matched against it.
    pub resource_version: Option<Box<str>>,
    /// The Rollout our managed-by annotation names, if any.
    pub managed_by: Option<Box<str>>,
    /// `spec.selector`, ordered by key; empty when the Service has none. A boxed slice, not a
    /// map: a selector holds a few labels, and a B-tree node is ~540 bytes however few.
    pub selector: Box<[(Box<str>, Box<str>)]>,
}

impl CachedService {
    /// The other Rollout that manages this Service, if one does: each Rollout needs its own.
    pub fn managed_by_other(&self, rollout: &str) -> Option<&str> {
        self.managed_by.as_deref().filter(|o| *o != rollout)
    }

    /// The selector's value for `label`.
    pub fn selects(&self, label: &str) -> Option<&str> {
        self.selector
            .iter()
            .find(|(k, _)| &**k == label)
            .map(|(_, v)| &**v)
    }
}

impl From<&WatchedService> for CachedService {
    fn from(svc: &WatchedService) -> Self {
        CachedService {
            resource_version: svc.metadata.resource_version.as_deref().map(Box::from),
            managed_by: svc
                .annotations()
                .get(MANAGED_BY_ANNOTATION)
                .map(|m| Box::from(m.as_str())),
            selector: svc
                .spec
                .as_ref()
                .and_then(|s| s.selector.as_ref())
                .map(|sel| {
                    sel.iter()
                        .map(|(k, v)| (Box::from(k.as_str()), Box::from(v.as_str())))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

/// Namespace → name → Service: looked up by borrowed names, without building a key.
#[derive(Default)]
struct Entries(HashMap<Box<str>, HashMap<Box<str>, CachedService>>);

impl WatchedMap<WatchedService> for Entries {
    fn upsert(&mut self, svc: &WatchedService) {
        let ns = svc.namespace().unwrap_or_default();
        let names = match self.0.get_mut(ns.as_str()) {
            Some(names) => names,
            None => self.0.entry(ns.into_boxed_str()).or_default(),
        };
        names.insert(svc.name_any().into_boxed_str(), CachedService::from(svc));
    }

    fn changed_since(&self, before: &Self) -> Vec<(String, String)> {
        let version = |e: &Self, ns: &str, name: &str| {
            e.0.get(ns)
                .and_then(|names| names.get(name))
                .map(|s| s.resource_version.clone())
        };
        let mut changed: Vec<(String, String)> = self
            .0
            .iter()
            .flat_map(|(ns, names)| names.iter().map(move |(name, svc)| (ns, name, svc)))
            .filter(|(ns, name, svc)| {
                version(before, ns, name) != Some(svc.resource_version.clone())
            })
            .map(|(ns, name, _)| (ns.to_string(), name.to_string()))
            .collect();
        changed.extend(
            before
                .0
                .iter()
                .flat_map(|(ns, names)| names.keys().map(move |name| (ns, name)))
                .filter(|(ns, name)| version(self, ns, name).is_none())
                .map(|(ns, name)| (ns.to_string(), name.to_string())),
        );
        changed
    }

    fn forget(&mut self, svc: &WatchedService) {
        let ns = svc.namespace().unwrap_or_default();
        if let Some(names) = self.0.get_mut(ns.as_str()) {
            names.remove(svc.name_any().as_str());
            if names.is_empty() {
                self.0.remove(ns.as_str());
            }
        }
    }
}

/// The Service cache. Cheap to clone (shared).
#[derive(Clone, Default)]
pub struct ServiceCache {
    entries: Relisting<Entries>,
}

impl ServiceCache {
    /// Applies one watch event; at the end of a relist after a broken watch, returns the
    /// Services (namespace, name) it found changed or gone.
    pub fn apply(&self, event: &Event<WatchedService>) -> Vec<(String, String)> {
        self.entries.apply(event)
    }

    /// The cached Service `namespace/name`, if the cache holds it.
    pub fn get(&self, namespace: &str, name: &str) -> Option<CachedService> {
        self.entries
            .read(|e| e.0.get(namespace)?.get(name).cloned())
            .flatten()
    }

    /// Whether the cache holds a first full list: until then "not cached" means "not listed
    /// yet", not "none exists" (a miss is read from the API server either way).
    pub fn is_ready(&self) -> bool {
        self.entries.is_ready()
    }

    /// Every cached Service that names a managing Rollout: namespace, name and the Service.
    pub fn managed(&self) -> Vec<(String, String, CachedService)> {
        self.entries
            .read(|e| {
                e.0.iter()
                    .flat_map(|(ns, names)| {
                        names
                            .iter()
                            .filter(|(_, svc)| svc.managed_by.is_some())
                            .map(|(name, svc)| (ns.to_string(), name.to_string(), svc.clone()))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// How many Services the cache holds (for tests).
    pub fn count(&self) -> usize {
        self.entries
            .read(|e| e.0.values().map(HashMap::len).sum())
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(ns: &str, name: &str, rv: &str, selector: serde_json::Value) -> WatchedService {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": ns, "resourceVersion": rv},
            "spec": {"selector": selector},
        }))
        .expect("service")
    }

    #[test]
    fn decodes_selector_annotation_and_version_and_nothing_else() {
        // Served at the built-in kind's path (the Resource impl is inherited from it).
        assert_eq!(
            <WatchedService as kube::Resource>::url_path(&(), Some("app")),
            "/api/v1/namespaces/app/services"
        );
        let full = json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "app", "resourceVersion": "7",
                "labels": {"team": "a"},
                "annotations": {MANAGED_BY_ANNOTATION: "web", "note": "x"},
                "managedFields": [{"manager": "kubectl"}]},
            "spec": {"selector": {"tier": "api", "app": "web"}, "ports": [{"port": 80}],
                "clusterIP": "10.0.0.1", "type": "ClusterIP"},
            "status": {"loadBalancer": {}}
        });
        let watched: WatchedService = serde_json::from_value(full).expect("decode");
        // Ports, IPs and status are never decoded.
        assert_eq!(
            serde_json::to_value(&watched.spec).expect("json"),
            json!({"selector": {"app": "web", "tier": "api"}})
        );
        let cached = CachedService::from(&watched);
        assert_eq!(
            cached,
            CachedService {
                resource_version: Some("7".into()),
                managed_by: Some("web".into()),
                selector: vec![("app".into(), "web".into()), ("tier".into(), "api".into())]
                    .into_boxed_slice(),
            }
        );
        assert_eq!(cached.selects("tier"), Some("api"));
        assert_eq!(cached.selects("other"), None);

        let bare: WatchedService =
            serde_json::from_value(json!({"metadata": {"name": "ext", "namespace": "app"},
                "spec": {"type": "ExternalName", "externalName": "example.com"}}))
            .expect("decode");
        let bare = CachedService::from(&bare);
        assert!(bare.selector.is_empty() && bare.managed_by.is_none());
    }

    #[test]
    fn follows_updates_and_deletes_by_namespace_and_name() {
        let cache = ServiceCache::default();
        let a1 = svc("ns1", "web", "1", json!({"app": "web"}));
        let b1 = svc("ns2", "web", "2", json!({"app": "other"}));
        cache.apply(&Event::Apply(a1.clone()));
        cache.apply(&Event::Apply(b1));
        assert_eq!(cache.count(), 2);
        assert_eq!(
            cache
                .get("ns1", "web")
                .and_then(|c| c.selects("app").map(str::to_string)),
            Some("web".to_string())
        );
        assert_eq!(
            cache
                .get("ns2", "web")
                .and_then(|c| c.selects("app").map(str::to_string)),
            Some("other".to_string())
        );
        let a2 = svc("ns1", "web", "3", json!({"app": "web", "h": "abc"}));
        cache.apply(&Event::Apply(a2));
        let got = cache.get("ns1", "web").expect("cached");
        assert_eq!(got.resource_version.as_deref(), Some("3"));
        assert_eq!(got.selects("h"), Some("abc"));
        cache.apply(&Event::Delete(a1));
        assert_eq!(cache.get("ns1", "web"), None);
        assert_eq!(cache.count(), 1);
        assert!(cache.get("ns2", "web").is_some());
        // Deleting what is not cached changes nothing.
        cache.apply(&Event::Delete(svc("ns3", "web", "9", json!({}))));
        assert_eq!(cache.count(), 1);
    }

    #[test]
    fn a_relist_replaces_the_cache_only_when_done() {
        let cache = ServiceCache::default();
        assert!(!cache.is_ready());
        cache.apply(&Event::Init);
        cache.apply(&Event::InitApply(svc("ns", "gone", "1", json!({"a": "b"}))));
        assert!(
            cache.apply(&Event::InitDone).is_empty(),
            "a first list wakes nobody"
        );
        assert!(cache.is_ready());
        assert!(cache.get("ns", "gone").is_some());
        // A relist after the watch was down: the old contents stay readable until it is done,
        // then what was deleted meanwhile is gone.
        cache.apply(&Event::Init);
        cache.apply(&Event::InitApply(svc("ns", "kept", "2", json!({"a": "b"}))));
        assert!(cache.get("ns", "gone").is_some());
        assert!(cache.get("ns", "kept").is_none());
        assert_eq!(
            cache.apply(&Event::InitDone),
            [
                ("ns".to_string(), "kept".to_string()),
                ("ns".to_string(), "gone".to_string())
            ],
            "what the broken watch missed: one new, one gone"
        );
        assert!(cache.get("ns", "gone").is_none());
        assert!(cache.get("ns", "kept").is_some());
        assert!(cache.is_ready());
    }
}
