//! A watch cache of VirtualServices, so that a reconcile reads its routing object without a GET.
//!
//! Reading the VirtualService was the one request every reconcile made (ten per rollout in an
//! update wave: docs/benchmarks.md). Observe takes the cached copy as the VirtualService's
//! [`RoutingSnapshot`] instead of a read ([`RoutingCache::copy`]), under the same rule as the
//! Rollout ([`super::freshness`]): once we have written the object, or read it fresh, the copy
//! is used only when the cache shows that version. A copy stale for any other reason (someone
//! else's write not delivered yet) is as good as a read made a moment earlier: every Istio
//! weight write `test`s the destinations and the weight it read, so it fails rather than
//! land on a state it did not see, and the retry reads fresh.
//!
//! Watched only when the VirtualService API is served at start-up; without it (no Istio, or
//! its CRDs installed later) routers read as before.

use std::sync::Arc;

use futures::StreamExt;
use futures::stream::BoxStream;
use kube::api::{Api, ApiResource, DynamicObject, ListParams};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::Value;
use tracing::{debug, info, warn};

use super::freshness::ReadYourWrites;
use super::scope::{self, Scope};
use crate::metrics::Metrics;
use crate::traffic::{RoutingObject, RoutingSnapshot};

/// A routing object changed (or was deleted), as a watch event told.
#[derive(Clone, Debug)]
pub struct RoutingChange {
    /// `VirtualService`, `HTTPRoute` or `Ingress`.
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
    pub resource_version: Option<String>,
    /// The field manager of the change ([`super::drift::last_writer`]).
    pub manager: Option<String>,
}

impl RoutingChange {
    /// The change an event of `obj` (of `kind`) tells; `None` for other events. A deletion
    /// names no manager: the object's last state names who wrote it, not who deleted it.
    fn of(
        kind: &'static str,
        event: Result<watcher::Event<DynamicObject>, watcher::Error>,
        metrics: &Metrics,
    ) -> Option<Self> {
        let (obj, deleted) = match event {
            Ok(watcher::Event::Apply(obj)) => (obj, false),
            Ok(watcher::Event::Delete(obj)) => (obj, true),
            Ok(_) => return None,
            Err(e) => {
                metrics.watch_error(kind);
                warn!(kind, error = %e, "watch failed; retrying");
                return None;
            }
        };
        Some(RoutingChange {
            kind,
            namespace: obj.namespace().unwrap_or_default(),
            name: obj.name_any(),
            resource_version: obj.resource_version(),
            manager: super::drift::last_writer(&obj.metadata)
                .filter(|_| !deleted)
                .map(str::to_string),
        })
    }
}

/// Whether `kind`'s API is served, probed by a one-item list in the first namespace of the
/// scope. Not served (no such CRD) is told once; any other failure (say, a missing grant) is
/// a warning and a watch error: its objects' changes wake nothing until a restart.
async fn served(apis: &[Api<DynamicObject>], kind: &'static str, metrics: &Metrics) -> bool {
    let Some(api) = apis.first() else {
        return false;
    };
    // A passing failure (a timeout, 429, 5xx) is tried again a few times; a refusal is final.
    let mut backoff = std::time::Duration::from_millis(500);
    for attempt in 1..=PROBE_ATTEMPTS {
        let one = ListParams::default().limit(1);
        let probe = api.list_metadata(&one);
        let answer = match tokio::time::timeout(PROBE_TIMEOUT, probe).await {
            Ok(answer) => answer,
            Err(_) => Err(kube::Error::Service(
                format!("no answer within {PROBE_TIMEOUT:?}").into(),
            )),
        };
        match answer {
            Ok(_) => return true,
            Err(kube::Error::Api(e)) if e.code == 404 => {
                info!(
                    kind,
                    "not served: changes to these objects wake no Rollout (a restart watches them once their CRD is installed)"
                );
                return false;
            }
            Err(e) => {
                metrics.watch_error(kind);
                let refused = matches!(&e, kube::Error::Api(s) if s.code == 403);
                if refused || attempt == PROBE_ATTEMPTS {
                    warn!(kind, error = %e, "cannot list these objects: their changes wake no Rollout until a restart");
                    return false;
                }
                debug!(kind, error = %e, attempt, "probing whether these objects are served failed; trying again");
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
        }
    }
    false
}

/// How often [`served`] asks before it gives up on a failure that may pass, and how long it
/// waits for each answer: start-up waits at most about 24 s per kind.
const PROBE_ATTEMPTS: u32 = 4;
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The changes delivered as watch events (not a relist) of the routing objects of `resource`
/// (`kind`) in `scope`, when its API is served; a stream that never yields otherwise. Nothing
/// is cached: the events only wake the Rollouts that name the object ([`super::wakers`]).
pub async fn watch_changes(
    client: &Client,
    scope: &Scope,
    resource: &ApiResource,
    kind: &'static str,
    metrics: Arc<Metrics>,
) -> BoxStream<'static, RoutingChange> {
    let apis = scope.apis_with(client, resource);
    if !served(&apis, kind, &metrics).await {
        return futures::stream::pending().boxed();
    }
    let tombstone = |metadata| DynamicObject {
        types: None,
        metadata,
        data: Value::Null,
    };
    scope::watch(apis, watcher::Config::default(), tombstone, None)
        .filter_map(move |res| futures::future::ready(RoutingChange::of(kind, res, &metrics)))
        .boxed()
}

/// The cached VirtualServices and the versions our own reads and writes saw of them, by the
/// view's one read-your-writes rule (no stand-ins: a cache behind is read fresh). The own-write
/// versions are those our weight writes returned; a read's version is not one (another
/// Rollout's news may hide behind it).
pub struct RoutingCache {
    virtual_services: Option<(Store<DynamicObject>, ApiResource)>,
    seen: ReadYourWrites<()>,
}

impl RoutingCache {
    /// No cache: every router reads (tests, and clusters without Istio).
    pub fn none() -> Self {
        RoutingCache {
            virtual_services: None,
            seen: ReadYourWrites::default(),
        }
    }

    /// Watches VirtualServices (in the namespaces of `scope`) when their API is served. The
    /// stream drives the watch and must be polled for as long as the cache is used; it yields
    /// each change delivered as a watch event (not a relist), for [`super::wakers`].
    pub async fn watch(
        client: &Client,
        scope: &Scope,
        metrics: Arc<Metrics>,
    ) -> (Self, BoxStream<'static, RoutingChange>) {
        let resource = crate::traffic::istio::virtual_service_resource();
        let apis = scope.apis_with(client, &resource);
        if !served(&apis, "VirtualService", &metrics).await {
            // Routers read them on each reconcile.
            return (Self::none(), futures::stream::pending().boxed());
        }
        let writer = reflector::store::Writer::new(resource.clone());
        let store = writer.as_reader();
        let tombstone = |metadata| DynamicObject {
            types: None,
            metadata,
            data: Value::Null,
        };
        let stream = scope::watch(apis, watcher::Config::default(), tombstone, None)
            .modify(|vs| {
                // Of managedFields, only who changed it last (for drift attribution).
                let writer = super::drift::last_writer(&vs.metadata).map(str::to_string);
                crate::traffic::istio::trim_virtual_service(vs);
                vs.metadata.managed_fields = writer.map(|manager| {
                    vec![
                        k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry {
                            manager: Some(manager),
                            ..Default::default()
                        },
                    ]
                });
                compact(vs);
            })
            .reflect(writer)
            .filter_map(move |res| {
                futures::future::ready(RoutingChange::of("VirtualService", res, &metrics))
            })
            .boxed();
        let cache = RoutingCache {
            virtual_services: Some((store, resource)),
            seen: ReadYourWrites::default(),
        };
        (cache, Box::pin(stream))
    }

    fn cached(&self, key: &str) -> Option<Arc<DynamicObject>> {
        let (store, resource) = self.virtual_services.as_ref()?;
        if !super::store_ready(store) {
            return None;
        }
        let (ns, name) = key.split_once('/')?;
        store.get(&ObjectRef::new_with(name, resource.clone()).within(ns))
    }

    /// The key of `object` in this cache, when it is of the kind cached.
    fn key_of(&self, object: &RoutingObject) -> Option<String> {
        let (_, resource) = self.virtual_services.as_ref()?;
        (object.resource == *resource).then(|| object.key())
    }

    /// The cached copy of `object` as a snapshot, when it is cached and the cache shows at
    /// least the version we last saw of it.
    pub fn copy(&self, object: &RoutingObject) -> Option<RoutingSnapshot> {
        let key = self.key_of(object)?;
        let cached = self.cached(&key)?;
        if self
            .seen
            .cache_behind(&key, cached.resource_version().as_deref())
        {
            debug!(target: "aviary::reads", virtual_service = %key, "reading the VirtualService fresh: the cache is behind");
            return None;
        }
        Some(RoutingSnapshot {
            object: object.clone(),
            body: expand(&cached)?,
        })
    }

    /// We read `snapshot` fresh, or a write left it so: the copy is used again only once the
    /// cache shows its version.
    pub fn saw(&self, snapshot: &RoutingSnapshot) {
        let Some(key) = self.key_of(&snapshot.object) else {
            return;
        };
        let cached_rv = self.cached(&key).and_then(|c| c.resource_version());
        self.seen.learnt(
            &key,
            cached_rv.as_deref(),
            snapshot.resource_version().map(str::to_string),
            None,
        );
    }

    /// Our weight write left `snapshot` (recorded by [`RoutingCache::saw`] too): its watch
    /// event is our own change, which wakes nobody.
    pub fn own_write(&self, snapshot: &RoutingSnapshot) {
        if let (Some(key), Some(rv)) = (self.key_of(&snapshot.object), snapshot.resource_version())
        {
            self.seen.own_write(&key, rv);
        }
    }

    /// A write of `object` failed: its outcome, and so the version, is unknown until a fresh
    /// read agrees with the cache.
    pub fn lost(&self, object: &RoutingObject) {
        if let Some(key) = self.key_of(object) {
            self.seen.distrust(&key);
        }
    }

    /// Whether `change` is the version our own last weight write returned.
    pub fn is_own_write(&self, change: &RoutingChange) -> bool {
        let key = format!("{}/{}", change.namespace, change.name);
        self.seen.is_own(&key, change.resource_version.as_deref())
    }

    /// Forgets the records of VirtualServices no longer cached, or that the cache has caught up
    /// with.
    pub fn retain_cached(&self) {
        if self.virtual_services.is_some() {
            self.seen.retain(|key| {
                let cached = self.cached(key)?;
                Some(cached.resource_version())
            });
        }
    }
}

/// Holds the trimmed object's body as one JSON string: a `serde_json::Value` tree costs ~6 KiB
/// for even a small VirtualService (a map per level), the string a few hundred bytes. Parsed
/// back only when a router is handed the copy ([`expand`]).
fn compact(vs: &mut DynamicObject) {
    let body = std::mem::take(&mut vs.data);
    vs.data = Value::String(body.to_string());
}

/// The whole object a router reads, from a cached one (compacted or not).
fn expand(vs: &DynamicObject) -> Option<Value> {
    let mut copy = match &vs.data {
        Value::String(body) => serde_json::from_str(body).ok()?,
        other => other.clone(),
    };
    let fields = copy.as_object_mut()?;
    fields.insert("metadata".into(), serde_json::to_value(&vs.metadata).ok()?);
    if let Some(types) = &vs.types {
        fields.insert(
            "apiVersion".into(),
            Value::String(types.api_version.clone()),
        );
        fields.insert("kind".into(), Value::String(types.kind.clone()));
    }
    Some(copy)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn virtual_service(rv: &str) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": "web", "namespace": "app", "resourceVersion": rv},
            "spec": {"http": []}
        }))
        .expect("virtual service")
    }

    fn cache_at(rv: &str) -> (RoutingCache, reflector::store::Writer<DynamicObject>) {
        let resource = crate::traffic::istio::virtual_service_resource();
        let mut writer = reflector::store::Writer::new(resource.clone());
        writer.apply_watcher_event(&watcher::Event::Init);
        writer.apply_watcher_event(&watcher::Event::InitApply(virtual_service(rv)));
        writer.apply_watcher_event(&watcher::Event::InitDone);
        let cache = RoutingCache {
            virtual_services: Some((writer.as_reader(), resource)),
            seen: ReadYourWrites::default(),
        };
        (cache, writer)
    }

    fn web() -> RoutingObject {
        RoutingObject::new(
            crate::traffic::istio::virtual_service_resource(),
            "app",
            "web",
        )
    }

    /// `web` as a read or a write left it, at `rv`.
    fn at(rv: Option<&str>) -> RoutingSnapshot {
        RoutingSnapshot {
            object: web(),
            body: json!({"metadata": {"resourceVersion": rv}}),
        }
    }

    #[test]
    fn only_the_version_our_write_returned_is_our_own_change() {
        let (cache, _writer) = cache_at("5");
        let change = |rv: &str| RoutingChange {
            kind: "VirtualService",
            namespace: "app".into(),
            name: "web".into(),
            resource_version: Some(rv.into()),
            manager: None,
        };
        // A fresh read found 6: not ours (another Rollout's news may be in it).
        cache.saw(&at(Some("6")));
        assert!(!cache.is_own_write(&change("6")));
        // Our write returned 7: its event is ours; any other version is news.
        cache.saw(&at(Some("7")));
        assert!(
            !cache.is_own_write(&change("7")),
            "seen, but not known to be our write"
        );
        cache.own_write(&at(Some("7")));
        assert!(cache.is_own_write(&change("7")));
        assert!(!cache.is_own_write(&change("8")));
        let elsewhere = RoutingChange {
            namespace: "other".into(),
            ..change("7")
        };
        assert!(!cache.is_own_write(&elsewhere));
    }

    #[test]
    fn a_copy_is_given_only_while_the_cache_shows_what_we_last_saw() {
        let (cache, mut writer) = cache_at("5");
        let copy = cache
            .copy(&web())
            .expect("nothing written yet: the cache is used");
        assert_eq!(copy.resource_version(), Some("5"));
        assert_eq!(copy.object, web());

        // Our write returned 6; the cache still shows 5.
        cache.saw(&at(Some("6")));
        assert!(
            cache.copy(&web()).is_none(),
            "the cache is behind our write"
        );
        writer.apply_watcher_event(&watcher::Event::Apply(virtual_service("6")));
        assert!(cache.copy(&web()).is_some(), "the cache shows our write");

        // A write that failed: unknown until a fresh read agrees with the cache.
        cache.lost(&web());
        assert!(cache.copy(&web()).is_none());
        cache.saw(&at(Some("6")));
        assert!(cache.copy(&web()).is_some());
    }

    #[test]
    fn only_virtual_services_are_given_from_the_cache() {
        let (cache, _writer) = cache_at("5");
        // An HTTPRoute of the same namespace and name is another object.
        let gvk = kube::core::GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute");
        let route = RoutingObject::new(ApiResource::from_gvk(&gvk), "app", "web");
        assert!(cache.copy(&route).is_none());
        cache.lost(&route);
        assert!(
            cache.copy(&web()).is_some(),
            "a route's record is not the VirtualService's"
        );
    }

    #[test]
    fn a_compacted_copy_reads_as_the_trimmed_object() {
        let mut vs = virtual_service("9");
        vs.data = json!({"spec": {"hosts": ["web"], "http": [{"name": "primary", "retries": {},
            "route": [{"destination": {"host": "web-stable"}, "weight": 100}]}]}});
        crate::traffic::istio::trim_virtual_service(&mut vs);
        let trimmed = expand(&vs).expect("expands");
        compact(&mut vs);
        assert!(vs.data.is_string());
        assert_eq!(expand(&vs), Some(trimmed.clone()));
        assert_eq!(trimmed["metadata"]["resourceVersion"], "9");
        assert_eq!(trimmed["kind"], "VirtualService");
        assert_eq!(
            trimmed["spec"],
            json!({"http": [{"name": "primary",
                "route": [{"destination": {"host": "web-stable"}, "weight": 100}]}]})
        );
    }

    /// The cache is distrusted only when a write's outcome is unknown (a sent write failed): an
    /// error raised before anything was sent (here other destinations leave the canary no room,
    /// so `weight_patch` is Invalid) leaves the copy trusted.
    #[tokio::test]
    async fn a_weight_write_that_sent_nothing_leaves_the_copy_trusted() {
        use crate::traffic::{IstioRouter, ObjectName, RouteTarget, TrafficError, TrafficRouter};
        let resource = crate::traffic::istio::virtual_service_resource();
        let mut writer = reflector::store::Writer::new(resource.clone());
        let vs: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": "web", "namespace": "app", "resourceVersion": "5"},
            "spec": {"http": [{"route": [
                {"destination": {"host": "web-stable"}, "weight": 10},
                {"destination": {"host": "web-canary"}, "weight": 0},
                {"destination": {"host": "web-mirror"}, "weight": 90},
            ]}]}
        }))
        .expect("virtual service");
        writer.apply_watcher_event(&watcher::Event::Init);
        writer.apply_watcher_event(&watcher::Event::InitApply(vs));
        writer.apply_watcher_event(&watcher::Event::InitDone);
        let mut ctx = crate::controller::Context::for_tests(crate::traffic::fake::offline_client());
        ctx.view.routing = RoutingCache {
            virtual_services: Some((writer.as_reader(), resource)),
            seen: ReadYourWrites::default(),
        };
        let router = IstioRouter::new(ObjectName::parse("web"), vec![], None);
        let target = RouteTarget {
            namespace: "app".into(),
            rollout: "web".into(),
            stable_service: "web-stable".into(),
            canary_service: "web-canary".into(),
            ..Default::default()
        };
        let object = router.object(&target);
        let observed = ctx
            .view
            .routing
            .copy(&object)
            .expect("observe takes the copy");
        assert_eq!(router.weight_in(&observed, &target).ok(), Some(Some(0)));
        let client = crate::traffic::fake::offline_client();
        let written = crate::controller::act::set_weight(
            &ctx,
            &client,
            "shop/web",
            &router,
            &target,
            &mut Some(observed),
            20,
        )
        .await;
        // Invalid, not Kube: no request was attempted (the offline client reaches no server).
        assert!(
            matches!(written, Err(TrafficError::Invalid(_))),
            "{written:?}"
        );
        assert!(
            ctx.view.routing.copy(&object).is_some(),
            "nothing was sent, so the cache is as good as before"
        );
    }

    #[test]
    fn without_a_cache_routers_read() {
        assert!(RoutingCache::none().copy(&web()).is_none());
    }
}
