//! Objects the controller cannot decode: skipped and reported, never allowed to stop the others.
//!
//! kube decodes a list page as one `Vec<K>`, so a single object our types reject (one admitted
//! by an older, looser CRD; a status written by a newer controller) would fail the whole list,
//! and the watcher would retry it for ever: no Rollout in any namespace would progress or
//! abort. The watches therefore decode each object on its own ([`Lenient`]): one that fails is
//! passed on as a deletion (the controller acts on it neither from a stale copy nor after a
//! restart: the same state, the same behaviour), and [`Undecodables`] reports it once per
//! version — a warn log, a Warning Event on the object that names the field, and the
//! `aviary_undecodable_objects` gauge.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::ObjectMeta;
use kube::runtime::watcher;
use kube::{Client, Resource};

pub use crate::api::lenient::{Lenient, Undecodable};
use crate::metrics::Metrics;

/// The objects of one kind that failed to decode, by namespace and name, with the version each
/// failed at: a version is reported once, and the gauge counts what is still undecodable.
pub struct Undecodables {
    kind: &'static str,
    api_version: String,
    client: Option<Client>,
    /// None: a second watch of objects another one reports already (skipped, not reported).
    metrics: Option<Arc<Metrics>>,
    state: Mutex<State>,
    /// Reports made (Events and warn logs), for tests.
    reported: std::sync::atomic::AtomicUsize,
}

#[derive(Default)]
struct State {
    /// `namespace/name` → (resourceVersion, seen in the relist under way).
    objects: HashMap<String, (Option<String>, bool)>,
    relisting: bool,
}

/// What [`Undecodables::observe`] asks its caller to pass on.
enum Seen<K> {
    Pass(watcher::Event<K>),
    /// An undecodable object: reported, and passed on as a deletion where a copy may be cached.
    Drop(Option<watcher::Event<K>>),
}

impl Undecodables {
    /// Reports of `K`'s undecodable objects; Events are written with `client` (none in tests).
    pub fn new<K>(client: Option<Client>, metrics: Option<Arc<Metrics>>) -> Arc<Self>
    where
        K: Resource<DynamicType = ()>,
    {
        if let Some(m) = &metrics {
            m.set_undecodable(kind_label(&K::kind(&())), 0);
        }
        Arc::new(Self {
            kind: kind_label(&K::kind(&())),
            api_version: K::api_version(&()).into_owned(),
            client,
            metrics,
            state: Mutex::default(),
            reported: Default::default(),
        })
    }

    /// How many objects are undecodable now.
    pub fn count(&self) -> usize {
        self.state.lock().map(|s| s.objects.len()).unwrap_or(0)
    }

    /// How many reports were made.
    pub fn reported(&self) -> usize {
        self.reported.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The newly undecodable version among `event`, if any, after updating the record.
    fn observe<K: Resource + Default>(&self, event: watcher::Event<Lenient<K>>) -> Seen<K> {
        use watcher::Event as E;
        // A panic elsewhere while holding the lock leaves the record usable: dropping events
        // here (InitDone among them) would keep the cache from ever being ready.
        let mut st = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let seen = match event {
            E::Init => {
                st.relisting = true;
                st.objects.values_mut().for_each(|o| o.1 = false);
                Seen::Pass(E::Init)
            }
            E::InitDone => {
                // Gone during the relist's gap: no longer undecodable.
                st.objects.retain(|_, o| o.1);
                st.relisting = false;
                Seen::Pass(E::InitDone)
            }
            E::InitApply(Lenient::Decoded(k)) => {
                st.objects.remove(&object_key(k.meta()));
                Seen::Pass(E::InitApply(k))
            }
            E::Apply(Lenient::Decoded(k)) => {
                st.objects.remove(&object_key(k.meta()));
                Seen::Pass(E::Apply(k))
            }
            E::Delete(obj) => {
                st.objects.remove(&object_key(obj.meta()));
                Seen::Pass(E::Delete(tombstone_of(obj)))
            }
            E::InitApply(Lenient::Undecodable(u)) => {
                self.record(&mut st, &u);
                // Left out of the relist: the store it rebuilds never holds it.
                Seen::Drop(None)
            }
            E::Apply(Lenient::Undecodable(u)) => {
                self.record(&mut st, &u);
                // A copy decoded before the change may be cached: it goes.
                Seen::Drop(Some(E::Delete(tombstone(u.metadata))))
            }
        };
        if let Some(m) = &self.metrics {
            m.set_undecodable(self.kind, st.objects.len());
        }
        seen
    }

    /// Records `u`; reports it when this version was not reported yet.
    fn record(&self, st: &mut State, u: &Undecodable) {
        let key = object_key(&u.metadata);
        let rv = u.metadata.resource_version.clone();
        let relisting = st.relisting;
        let before = st.objects.insert(key.clone(), (rv.clone(), relisting));
        if before.is_some_and(|(old, _)| old == rv) || self.metrics.is_none() {
            return;
        }
        self.reported
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::warn!(kind = self.kind, object = %key, error = %u.error,
            "cannot decode this object: skipping it until it is fixed");
        if let Some(client) = &self.client {
            let reference = ObjectReference {
                api_version: Some(self.api_version.clone()),
                kind: Some(self.kind.to_string()),
                name: u.metadata.name.clone(),
                namespace: u.metadata.namespace.clone(),
                uid: u.metadata.uid.clone(),
                resource_version: rv,
                ..Default::default()
            };
            let message = format!(
                "Aviary cannot read this {}: {}. Fix the field (kubectl apply with a valid value); until then Aviary leaves the {} and what it manages as they are.",
                self.kind, u.error, self.kind
            );
            tokio::spawn(super::report::publish_about(
                client.clone(),
                reference,
                plan_event(message),
            ));
        }
    }

    /// `stream` with each undecodable object reported and left out (see the module doc).
    pub fn skip<K, S>(
        self: Arc<Self>,
        stream: S,
    ) -> impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + use<K, S>
    where
        K: Resource + Default + Send + 'static,
        S: Stream<Item = Result<watcher::Event<Lenient<K>>, watcher::Error>> + Send,
    {
        stream.filter_map(move |item| {
            let passed = match item {
                Err(e) => {
                    if let Some(m) = &self.metrics {
                        m.watch_error(self.kind);
                    }
                    tracing::warn!(kind = self.kind, error = %e, "watch failed; retrying");
                    Some(Err(e))
                }
                Ok(event) => match self.observe(event) {
                    Seen::Pass(e) => Some(Ok(e)),
                    Seen::Drop(e) => e.map(Ok),
                },
            };
            std::future::ready(passed)
        })
    }
}

/// The kinds whose objects are decoded leniently, as metric labels.
fn kind_label(kind: &str) -> &'static str {
    match kind {
        "Rollout" => "Rollout",
        "AnalysisRun" => "AnalysisRun",
        _ => "other",
    }
}

fn object_key(meta: &ObjectMeta) -> String {
    format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default()
    )
}

/// A deleted object as the store needs it: a decoded one as it is, another by its identity.
fn tombstone_of<K: Resource + Default>(obj: Lenient<K>) -> K {
    match obj {
        Lenient::Decoded(k) => k,
        Lenient::Undecodable(u) => tombstone(u.metadata),
    }
}

/// An object of kind `K` with only `metadata`: enough for a store to drop it by name.
fn tombstone<K: Resource + Default>(metadata: ObjectMeta) -> K {
    let mut k = K::default();
    *k.meta_mut() = metadata;
    k
}

fn plan_event(message: String) -> crate::plan::Event {
    crate::plan::Event::warning(crate::api::conditions::reasons::UNDECODABLE, message)
}

#[cfg(test)]
#[path = "undecodable_tests.rs"]
mod tests;
