//! The namespaces the controller watches: every one, or a list of them.
//!
//! A list is watched one namespace at a time, so the controller needs rights in those
//! namespaces only (a Role in each, no ClusterRole). Every reader downstream expects one
//! stream with one watch's relist semantics (a store is rebuilt whole at `InitDone`), so the
//! watches of a list are merged ([`merge`]): one list of the union at start-up, and afterwards
//! a relist of one namespace passed on as changes to that namespace only — a store fed the
//! merged stream never loses another namespace's objects to it.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;

use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, ApiResource, DynamicObject, ObjectMeta};
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, watcher as watch_api};
use kube::{Client, Resource, ResourceExt};

/// What the controller watches and acts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every namespace (a ClusterRole).
    Cluster,
    /// These namespaces only (a Role in each); never empty, no duplicates.
    Namespaces(Vec<String>),
}

/// A namespace list the controller cannot watch.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScopeError {
    #[error(
        "--namespace: {0:?} is not a namespace name (lowercase letters, digits and '-', at most 63, starting and ending with a letter or digit)"
    )]
    InvalidName(String),
}

impl Scope {
    /// The scope of `--namespace` values (each may be a comma-separated list): none (or only
    /// empty ones) is every namespace; a name given twice counts once.
    pub fn from_names<S: AsRef<str>>(names: &[S]) -> Result<Self, ScopeError> {
        let mut out: Vec<String> = vec![];
        for name in names.iter().flat_map(|n| n.as_ref().split(',')) {
            let name = name.trim();
            // An empty value (`AVIARY_NAMESPACE=`, a trailing comma) names nothing.
            if name.is_empty() {
                continue;
            }
            if !is_dns_label(name) {
                return Err(ScopeError::InvalidName(name.to_string()));
            }
            if !out.iter().any(|n| n == name) {
                out.push(name.to_string());
            }
        }
        Ok(if out.is_empty() {
            Scope::Cluster
        } else {
            Scope::Namespaces(out)
        })
    }

    /// One namespace, for tests and single-namespace installs.
    pub fn namespace(name: &str) -> Self {
        Scope::Namespaces(vec![name.to_string()])
    }

    /// The first namespace listed, if any (the default of the leader Lease's namespace).
    pub fn first(&self) -> Option<&str> {
        match self {
            Scope::Cluster => None,
            Scope::Namespaces(names) => names.first().map(String::as_str),
        }
    }

    /// One API per watch: one of every namespace, or one per namespace listed.
    pub fn apis<K>(&self, client: &Client) -> Vec<Api<K>>
    where
        K: Resource<Scope = kube::core::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        match self {
            Scope::Cluster => vec![Api::all(client.clone())],
            Scope::Namespaces(names) => names
                .iter()
                .map(|ns| Api::namespaced(client.clone(), ns))
                .collect(),
        }
    }

    /// [`Self::apis`] of a kind known at run time.
    pub fn apis_with(&self, client: &Client, resource: &ApiResource) -> Vec<Api<DynamicObject>> {
        match self {
            Scope::Cluster => vec![Api::all_with(client.clone(), resource)],
            Scope::Namespaces(names) => names
                .iter()
                .map(|ns| Api::namespaced_with(client.clone(), ns, resource))
                .collect(),
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Cluster => f.write_str("all namespaces"),
            Scope::Namespaces(names) => f.write_str(&names.join(",")),
        }
    }
}

/// RFC 1123 label, as Kubernetes names namespaces.
fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    let alnum = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    !b.is_empty()
        && b.len() <= 63
        && b.iter().all(|c| alnum(c) || *c == b'-')
        && b.first().is_some_and(alnum)
        && b.last().is_some_and(alnum)
}

/// A watch stream, as `watcher` yields it.
pub type WatchStream<K> = BoxStream<'static, Result<Event<K>, watcher::Error>>;

/// Called when a namespace's relist (after every namespace has listed) ends, with the names it
/// listed: a cache that also holds entries the watch never delivered (our own writes standing
/// in) forgets that namespace's others, as a single watch's relist replaces the whole cache.
pub type RelistHook = Box<dyn FnMut(&str, &HashSet<String>) + Send>;

/// Watches `apis` (with backoff) as one stream: the one watch itself, or several merged
/// ([`merge`]). `tombstone` builds a deletion from an object's identity.
pub fn watch<K>(
    apis: Vec<Api<K>>,
    config: watcher::Config,
    tombstone: fn(ObjectMeta) -> K,
    on_relist: Option<RelistHook>,
) -> WatchStream<K>
where
    K: Resource + Clone + fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
{
    let mut streams: Vec<(String, WatchStream<K>)> = apis
        .into_iter()
        .map(|api| {
            let ns = api.namespace().unwrap_or_default().to_string();
            (ns, watch_api(api, config.clone()).default_backoff().boxed())
        })
        .collect();
    if streams.len() == 1
        && let Some((_, one)) = streams.pop()
    {
        return one;
    }
    merge(streams, tombstone, on_relist).boxed()
}

/// The watches `streams` (one namespace each) as one, with a single watch's semantics for a
/// store fed from it (see the module doc): [`Merged`] applied to their events as they come.
pub fn merge<K>(
    streams: Vec<(String, WatchStream<K>)>,
    tombstone: fn(ObjectMeta) -> K,
    on_relist: Option<RelistHook>,
) -> impl Stream<Item = Result<Event<K>, watcher::Error>> + Send + 'static
where
    K: Resource + Send + 'static,
{
    let namespaces = streams.iter().map(|(ns, _)| ns.clone()).collect();
    let mut merged = Merged::new(namespaces, tombstone, on_relist);
    futures::stream::select_all(
        streams
            .into_iter()
            .enumerate()
            .map(|(i, (_, s))| s.map(move |item| (i, item))),
    )
    .flat_map(move |(i, item)| {
        let out: Vec<_> = match item {
            Err(e) => vec![Err(e)],
            Ok(event) => merged.on(i, event).into_iter().map(Ok).collect(),
        };
        futures::stream::iter(out)
    })
}

/// What is kept of an object passed on: whether a relist changed it, and what its deletion
/// needs (the owner is woken when a relist finds an owned object gone).
struct Known {
    resource_version: Option<String>,
    uid: Option<String>,
    /// The controlling owner reference (the one owners are woken by).
    owner: Option<OwnerReference>,
}

impl Known {
    fn of<K: Resource>(obj: &K) -> Self {
        let m = obj.meta();
        Known {
            resource_version: m.resource_version.clone(),
            uid: m.uid.clone(),
            owner: obj
                .owner_references()
                .iter()
                .find(|o| o.controller == Some(true))
                .cloned(),
        }
    }
}

/// The merge of several watches' events (pure: [`merge`] drives it).
///
/// Until every watch has listed once, each is buffered as a store of its own; then the union
/// goes out as one list (`Init`, `InitApply` each, `InitDone`), so a store fed from it is
/// ready exactly when every namespace is listed. From then on a watch's changes pass through,
/// and its relist (after a watch that could not resume) is buffered as kube's store buffers
/// one, and at its end goes out as changes: an `Apply` for each object new or at another
/// version (in resourceVersion order), then a `Delete` for each object passed on before that
/// the relist no longer holds. A store fed the merge holds, after each relist's events and
/// every other event, the union of what stores fed each watch would hold; between the events
/// of one relist's end (passed on at once) it may hold a mix of the old list and the new,
/// where a single watch's store swaps the whole list in.
pub struct Merged<K> {
    spaces: Vec<Space<K>>,
    tombstone: fn(ObjectMeta) -> K,
    on_relist: Option<RelistHook>,
}

struct Space<K> {
    namespace: String,
    /// A list under way: its objects by name.
    relist: Option<BTreeMap<String, K>>,
    phase: Phase<K>,
}

enum Phase<K> {
    /// Before the merged list: this watch's store, once it has listed.
    Buffering(Option<BTreeMap<String, K>>),
    /// After: what it has passed on, by name.
    Passing(HashMap<String, Known>),
}

impl<K: Resource> Merged<K> {
    /// The merge of one watch per namespace of `namespaces` (in the order of the watch
    /// indices [`Self::on`] is given).
    pub fn new(
        namespaces: Vec<String>,
        tombstone: fn(ObjectMeta) -> K,
        on_relist: Option<RelistHook>,
    ) -> Self {
        Merged {
            spaces: namespaces
                .into_iter()
                .map(|namespace| Space {
                    namespace,
                    relist: None,
                    phase: Phase::Buffering(None),
                })
                .collect(),
            tombstone,
            on_relist,
        }
    }

    /// The events to pass on for `event` of watch `i`.
    pub fn on(&mut self, i: usize, event: Event<K>) -> Vec<Event<K>> {
        let tombstone = self.tombstone;
        let Some(space) = self.spaces.get_mut(i) else {
            return vec![];
        };
        match event {
            Event::Init => {
                space.relist = Some(BTreeMap::new());
                vec![]
            }
            Event::InitApply(obj) => {
                space
                    .relist
                    .get_or_insert_default()
                    .insert(obj.name_any(), obj);
                vec![]
            }
            Event::InitDone => {
                // kube's watcher never ends a list it did not begin; were one to, it lists
                // nothing and must not delete everything.
                let Some(listed) = space.relist.take() else {
                    return vec![];
                };
                match &mut space.phase {
                    Phase::Buffering(store) => {
                        *store = Some(listed);
                        self.start_if_listed()
                    }
                    Phase::Passing(known) => {
                        let names: HashSet<String> = listed.keys().cloned().collect();
                        let out = relisted(&space.namespace, known, listed, tombstone);
                        if let Some(hook) = &mut self.on_relist {
                            hook(&space.namespace, &names);
                        }
                        out
                    }
                }
            }
            Event::Apply(obj) => match &mut space.phase {
                // A change after its list (a watch yields none before it).
                Phase::Buffering(store) => {
                    store.get_or_insert_default().insert(obj.name_any(), obj);
                    vec![]
                }
                Phase::Passing(known) => {
                    known.insert(obj.name_any(), Known::of(&obj));
                    vec![Event::Apply(obj)]
                }
            },
            Event::Delete(obj) => match &mut space.phase {
                Phase::Buffering(store) => {
                    if let Some(store) = store {
                        store.remove(&obj.name_any());
                    }
                    vec![]
                }
                Phase::Passing(known) => {
                    known.remove(&obj.name_any());
                    vec![Event::Delete(obj)]
                }
            },
        }
    }

    /// Once every watch has listed: the merged list; every watch passes through from here on
    /// (a relist under way goes on, buffered).
    fn start_if_listed(&mut self) -> Vec<Event<K>> {
        let all_listed = self
            .spaces
            .iter()
            .all(|s| matches!(s.phase, Phase::Buffering(Some(_))));
        if !all_listed {
            return vec![];
        }
        let mut list = vec![Event::Init];
        for space in &mut self.spaces {
            let Phase::Buffering(store) = &mut space.phase else {
                continue;
            };
            let mut known = HashMap::new();
            for (name, obj) in store.take().unwrap_or_default() {
                known.insert(name, Known::of(&obj));
                list.push(Event::InitApply(obj));
            }
            space.phase = Phase::Passing(known);
        }
        list.push(Event::InitDone);
        list
    }
}

/// The end of a relist of `namespace` as changes against what was passed on (`known`, brought
/// up to date): new or changed objects first, so that nothing is missing in between, then the
/// deletions.
fn relisted<K: Resource>(
    namespace: &str,
    known: &mut HashMap<String, Known>,
    listed: BTreeMap<String, K>,
    tombstone: fn(ObjectMeta) -> K,
) -> Vec<Event<K>> {
    let mut applied = vec![];
    let mut gone: BTreeSet<String> = known.keys().cloned().collect();
    for (name, obj) in listed {
        gone.remove(&name);
        let now = Known::of(&obj);
        let changed = known
            .get(&name)
            .is_none_or(|k| k.resource_version != now.resource_version);
        known.insert(name, now);
        if changed {
            applied.push(obj);
        }
    }
    // In the order they were written (resourceVersions are etcd revisions), as a watch would
    // have delivered them.
    applied.sort_by_key(|o| {
        o.resource_version()
            .and_then(|rv| rv.parse::<u64>().ok())
            .unwrap_or(u64::MAX)
    });
    let mut out: Vec<Event<K>> = applied.into_iter().map(Event::Apply).collect();
    for name in gone {
        let Some(k) = known.remove(&name) else {
            continue;
        };
        // No resourceVersion: the deletion's is unknown, and the last one passed on may be
        // our own write's, which would make the deletion look like our own change.
        out.push(Event::Delete(tombstone(ObjectMeta {
            name: Some(name),
            namespace: Some(namespace.to_string()),
            uid: k.uid,
            owner_references: k.owner.map(|o| vec![o]),
            ..Default::default()
        })));
    }
    out
}

#[cfg(test)]
#[path = "scope_tests.rs"]
mod tests;
