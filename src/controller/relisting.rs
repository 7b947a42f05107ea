//! Maps kept up to date from a watch, with a reflector store's relist semantics.

use kube::runtime::watcher::Event;

/// What a watch keeps up to date: insert or replace an object, forget one.
pub trait WatchedMap<K>: Default {
    fn upsert(&mut self, obj: &K);
    fn forget(&mut self, obj: &K);
}

/// A [`WatchedMap`] and its relist. A relist (`Init` … `InitDone`, after start-up or a watch
/// that could not resume) is built aside and swapped in whole at `InitDone`, as kube-runtime's
/// store does: readers never see a half-listed map, and what was deleted while the watch was
/// down is gone afterwards.
#[derive(Default)]
pub struct Relisting<M> {
    pub live: M,
    relist: Option<M>,
    ready: bool,
}

impl<M> Relisting<M> {
    /// Applies one watch event.
    pub fn apply<K>(&mut self, event: &Event<K>)
    where
        M: WatchedMap<K>,
    {
        match event {
            Event::Apply(obj) => self.live.upsert(obj),
            Event::Delete(obj) => self.live.forget(obj),
            Event::Init => self.relist = Some(M::default()),
            Event::InitApply(obj) => self.relist.get_or_insert_with(M::default).upsert(obj),
            Event::InitDone => {
                if let Some(listed) = self.relist.take() {
                    self.live = listed;
                }
                self.ready = true;
            }
        }
    }

    /// Whether a first full list has been swapped in: until then an absent object may just not
    /// be listed yet.
    pub fn is_ready(&self) -> bool {
        self.ready
    }
}
