//! The namespaces the controller watches: every one, or a list of them.
//!
//! A list is watched one namespace at a time, so the controller needs rights in those
//! namespaces only (a Role in each, no ClusterRole). Every reader downstream expects one
//! stream with one watch's relist semantics (a store is rebuilt whole at `InitDone`), so the
//! watches of a list are merged ([`merge`]): one list of the union at start-up, and afterwards
//! a relist of one namespace passed on as changes to that namespace only — a store fed the
//! merged stream never loses another namespace's objects to it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
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
    /// The scope of `--namespace` values (each may be a comma-separated list): none is every
    /// namespace; a name given twice counts once.
    pub fn from_names<S: AsRef<str>>(names: &[S]) -> Result<Self, ScopeError> {
        let mut out: Vec<String> = vec![];
        for name in names.iter().flat_map(|n| n.as_ref().split(',')) {
            let name = name.trim();
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

/// Watches `apis` (with backoff) as one stream: the one watch itself, or several merged
/// ([`merge`]). `tombstone` builds a deletion from an object's identity.
pub fn watch<K>(
    apis: Vec<Api<K>>,
    config: watcher::Config,
    tombstone: fn(ObjectMeta) -> K,
) -> WatchStream<K>
where
    K: Resource + Clone + fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
{
    let mut streams: Vec<WatchStream<K>> = apis
        .into_iter()
        .map(|api| watch_api(api, config.clone()).default_backoff().boxed())
        .collect();
    if streams.len() == 1
        && let Some(one) = streams.pop()
    {
        return one;
    }
    merge(streams, tombstone).boxed()
}

/// The watches `streams` (one namespace each) as one, with a single watch's semantics for a
/// store fed from it (see the module doc): [`Merged`] applied to their events as they come.
pub fn merge<K>(
    streams: Vec<WatchStream<K>>,
    tombstone: fn(ObjectMeta) -> K,
) -> impl Stream<Item = Result<Event<K>, watcher::Error>> + Send + 'static
where
    K: Resource + Send + 'static,
{
    let mut merged = Merged::new(streams.len(), tombstone);
    futures::stream::select_all(
        streams
            .into_iter()
            .enumerate()
            .map(|(i, s)| s.map(move |item| (i, item))),
    )
    .flat_map(move |(i, item)| {
        let out: Vec<_> = match item {
            Err(e) => vec![Err(e)],
            Ok(event) => merged.on(i, event).into_iter().map(Ok).collect(),
        };
        futures::stream::iter(out)
    })
}

/// `namespace/name`.
type Key = (String, String);

fn key_of<K: Resource>(obj: &K) -> Key {
    (obj.namespace().unwrap_or_default(), obj.name_any())
}

/// What a deletion needs of an object: its name, namespace, UID and owners (the owner is woken
/// when a relist finds an owned object gone).
fn identity<K: Resource>(obj: &K) -> ObjectMeta {
    let m = obj.meta();
    ObjectMeta {
        name: m.name.clone(),
        namespace: m.namespace.clone(),
        uid: m.uid.clone(),
        owner_references: m.owner_references.clone(),
        ..Default::default()
    }
}

/// The merge of several watches' events (pure: [`merge`] drives it).
///
/// Until every watch has listed once, each is buffered as a store of its own; then the union
/// goes out as one list (`Init`, `InitApply` each, `InitDone`), so a store fed from it is
/// ready exactly when every namespace is listed. From then on a watch's changes pass through,
/// and its relist (after a watch that could not resume) goes out as changes: each object listed
/// as an `Apply`, and at its end a `Delete` for each object it passed on before that the relist
/// no longer holds. A store fed the merge holds, whenever no relist is under way, the union of
/// what stores fed each watch would hold; during one, that union or newer.
pub struct Merged<K> {
    spaces: Vec<Space<K>>,
    tombstone: fn(ObjectMeta) -> K,
}

enum Space<K> {
    /// Before the merged list: its own store (`listed`, once it has listed) and a list under
    /// way.
    Buffering {
        listed: Option<BTreeMap<Key, K>>,
        relist: Option<BTreeMap<Key, K>>,
    },
    /// After: the identity of every object it has passed on, and the keys a relist under way
    /// has listed so far.
    Passing {
        known: HashMap<Key, ObjectMeta>,
        relist: Option<HashSet<Key>>,
    },
}

impl<K: Resource> Merged<K> {
    pub fn new(watches: usize, tombstone: fn(ObjectMeta) -> K) -> Self {
        Merged {
            spaces: (0..watches)
                .map(|_| Space::Buffering {
                    listed: None,
                    relist: None,
                })
                .collect(),
            tombstone,
        }
    }

    /// The events to pass on for `event` of watch `i`.
    pub fn on(&mut self, i: usize, event: Event<K>) -> Vec<Event<K>> {
        let tombstone = self.tombstone;
        let Some(space) = self.spaces.get_mut(i) else {
            return vec![];
        };
        match space {
            Space::Buffering { listed, relist } => {
                match event {
                    Event::Init => *relist = Some(BTreeMap::new()),
                    Event::InitApply(obj) => {
                        relist.get_or_insert_default().insert(key_of(&obj), obj);
                    }
                    Event::InitDone => {
                        *listed = Some(relist.take().unwrap_or_default());
                        return self.start_if_listed();
                    }
                    // Changes after its list (a watch yields none before it).
                    Event::Apply(obj) => {
                        listed.get_or_insert_default().insert(key_of(&obj), obj);
                    }
                    Event::Delete(obj) => {
                        if let Some(listed) = listed {
                            listed.remove(&key_of(&obj));
                        }
                    }
                }
                vec![]
            }
            Space::Passing { known, relist } => match event {
                Event::Init => {
                    *relist = Some(HashSet::new());
                    vec![]
                }
                Event::InitApply(obj) => {
                    let key = key_of(&obj);
                    known.insert(key.clone(), identity(&obj));
                    relist.get_or_insert_default().insert(key);
                    vec![Event::Apply(obj)]
                }
                Event::InitDone => {
                    let Some(listed) = relist.take() else {
                        return vec![];
                    };
                    let mut gone: Vec<Key> = known
                        .keys()
                        .filter(|k| !listed.contains(*k))
                        .cloned()
                        .collect();
                    gone.sort();
                    gone.into_iter()
                        .filter_map(|k| known.remove(&k))
                        .map(|meta| Event::Delete(tombstone(meta)))
                        .collect()
                }
                Event::Apply(obj) => {
                    known.insert(key_of(&obj), identity(&obj));
                    vec![Event::Apply(obj)]
                }
                Event::Delete(obj) => {
                    known.remove(&key_of(&obj));
                    vec![Event::Delete(obj)]
                }
            },
        }
    }

    /// Once every watch has listed: the merged list, then what relists under way have listed
    /// so far (as changes); every watch passes through from here on.
    fn start_if_listed(&mut self) -> Vec<Event<K>> {
        let all_listed = self.spaces.iter().all(|s| {
            matches!(
                s,
                Space::Buffering {
                    listed: Some(_),
                    ..
                }
            )
        });
        if !all_listed {
            return vec![];
        }
        let mut list = vec![Event::Init];
        let mut changes = vec![];
        for space in &mut self.spaces {
            let Space::Buffering { listed, relist } = space else {
                continue;
            };
            let mut known = HashMap::new();
            for (key, obj) in listed.take().unwrap_or_default() {
                known.insert(key, identity(&obj));
                list.push(Event::InitApply(obj));
            }
            let relist = relist.take().map(|objects| {
                objects
                    .into_iter()
                    .map(|(key, obj)| {
                        known.insert(key.clone(), identity(&obj));
                        changes.push(Event::Apply(obj));
                        key
                    })
                    .collect()
            });
            *space = Space::Passing { known, relist };
        }
        list.push(Event::InitDone);
        list.extend(changes);
        list
    }
}

#[cfg(test)]
#[path = "scope_tests.rs"]
mod tests;
