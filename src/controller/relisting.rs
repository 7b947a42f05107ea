//! Maps kept up to date from a watch, with a reflector store's relist semantics.

use std::sync::{Arc, RwLock};

use kube::runtime::watcher::Event;

/// What a watch keeps up to date: insert or replace an object, forget one.
pub trait WatchedMap<K>: Default {
    fn upsert(&mut self, obj: &K);
    fn forget(&mut self, obj: &K);
    /// The objects (namespace, name) a relist found changed or gone against the map before it.
    fn changed_since(&self, _before: &Self) -> Vec<(String, String)> {
        vec![]
    }
}

/// A [`WatchedMap`] and its relist, shared between the watch that writes it and the reconciles
/// that read it. A relist (`Init` … `InitDone`, after start-up or a watch that could not resume)
/// is built aside and swapped in whole at `InitDone`, as kube-runtime's store does: readers never
/// see a half-listed map, and what was deleted while the watch was down is gone afterwards.
pub struct Relisting<M> {
    state: Arc<RwLock<State<M>>>,
}

#[derive(Default)]
struct State<M> {
    live: M,
    relist: Option<M>,
    ready: bool,
}

// Not derived: cloning shares the map, so `M` need not be `Clone`.
impl<M> Clone for Relisting<M> {
    fn clone(&self) -> Self {
        Relisting {
            state: self.state.clone(),
        }
    }
}

impl<M: Default> Default for Relisting<M> {
    fn default() -> Self {
        Relisting {
            state: Arc::new(RwLock::new(State::default())),
        }
    }
}

impl<M> Relisting<M> {
    /// Applies one watch event. At the end of a relist that replaced an earlier list, returns
    /// what the relist found changed or gone (what a broken watch may have missed).
    pub fn apply<K>(&self, event: &Event<K>) -> Vec<(String, String)>
    where
        M: WatchedMap<K>,
    {
        let Ok(mut st) = self.state.write() else {
            return vec![];
        };
        match event {
            Event::Apply(obj) => st.live.upsert(obj),
            Event::Delete(obj) => st.live.forget(obj),
            Event::Init => st.relist = Some(M::default()),
            Event::InitApply(obj) => st.relist.get_or_insert_with(M::default).upsert(obj),
            Event::InitDone => {
                let mut changed = vec![];
                if let Some(listed) = st.relist.take() {
                    if st.ready {
                        changed = listed.changed_since(&st.live);
                    }
                    st.live = listed;
                }
                st.ready = true;
                return changed;
            }
        }
        vec![]
    }

    /// Changes the live map with `f` (outside a watch event: see `scope::RelistHook`).
    pub fn modify(&self, f: impl FnOnce(&mut M)) {
        if let Ok(mut st) = self.state.write() {
            f(&mut st.live);
        }
    }

    /// `f` of the live map; `None` only if a writer panicked while holding it.
    pub fn read<R>(&self, f: impl FnOnce(&M) -> R) -> Option<R> {
        self.state.read().ok().map(|st| f(&st.live))
    }

    /// Whether a first full list has been swapped in: until then an absent object may just not
    /// be listed yet.
    pub fn is_ready(&self) -> bool {
        self.state.read().map(|st| st.ready).unwrap_or(false)
    }
}
