//! The view of the cluster a reconcile reads: every watch cache, and the records of our own
//! writes those caches may not show yet (so that no reconcile plans from a state older than a
//! write it or another made). Readiness and forgetting a deleted Rollout are answered here, for
//! all of them at once.

use std::collections::HashSet;

use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};

use super::{analysis_runs, drift, freshness, index, replica_set_cache, routing_cache};
use super::{service_cache, store_ready};
use crate::api::{AnalysisRun, Rollout};

pub struct View {
    /// The watched Rollouts (trimmed): what the watch has delivered, ahead of a reconcile's read.
    pub rollouts: Store<Rollout>,
    /// Our writes the Rollout cache may not show yet ([`freshness::ReadYourWrites`]: the one
    /// rule, read fresh while the cache is behind).
    pub rollout_reads: freshness::ReadYourWrites<()>,
    /// Owned ReplicaSets (label-filtered), by controlling Rollout, as the planner sees them;
    /// our own creates and scale writes stand in until the watch shows them.
    pub replica_sets: replica_set_cache::ReplicaSetCache,
    /// Every Service in the watched namespaces, as observe and act read it ([`service_cache`]).
    pub services: service_cache::ServiceCache,
    /// Our selector writes the Service cache may not show yet (the same rule; what our write
    /// returned stands in while the cache shows the version it showed then).
    pub service_writes: freshness::ReadYourWrites<service_cache::CachedService>,
    /// Owned AnalysisRuns (label-filtered).
    pub analysis_runs: Store<AnalysisRun>,
    /// Which cached AnalysisRuns each Rollout controls.
    pub analysis_run_owners: index::OwnerIndex,
    /// Runs we retired that the cache may not show retired yet.
    pub retired_runs: analysis_runs::RetiredRuns,
    /// VirtualServices, and our reads and writes the cache may not show yet ([`routing_cache`]).
    pub routing: routing_cache::RoutingCache,
    /// Who made the changes to steered objects that a write of ours has yet to put back.
    pub drift: drift::DriftNotes,
}

impl View {
    /// Empty caches that have not listed yet, and no VirtualService cache.
    #[cfg(test)]
    pub fn for_tests() -> Self {
        use kube::runtime::reflector;
        View {
            rollouts: reflector::store().0,
            rollout_reads: freshness::ReadYourWrites::default(),
            replica_sets: replica_set_cache::ReplicaSetCache::default(),
            services: service_cache::ServiceCache::default(),
            service_writes: freshness::ReadYourWrites::default(),
            analysis_runs: reflector::store().0,
            analysis_run_owners: index::OwnerIndex::default(),
            retired_runs: analysis_runs::RetiredRuns::default(),
            routing: routing_cache::RoutingCache::none(),
            drift: drift::DriftNotes::default(),
        }
    }

    /// Whether the caches the planner reads hold their first full list: until then "no
    /// ReplicaSet seen" means "not listed yet", not "none exists".
    pub fn is_ready(&self) -> bool {
        self.replica_sets.is_ready() && store_ready(&self.analysis_runs) && self.services.is_ready()
    }

    /// Forgets what is kept per Rollout for those no longer live (`live`: `ns/name` keys,
    /// `live_uids`: their UIDs), and the records of writes the caches have caught up with.
    pub fn forget_deleted(&self, live: &HashSet<String>, live_uids: &HashSet<String>) {
        self.rollout_reads.retain(|key| {
            let (ns, name) = key.split_once('/').filter(|_| live.contains(key))?;
            let cached = self.rollouts.get(&ObjectRef::new(name).within(ns));
            Some(cached.and_then(|c| c.resource_version()))
        });
        self.routing.retain_cached();
        self.drift.forget(live);
        self.service_writes.retain(|key| {
            let (ns, name) = key.split_once('/')?;
            let cached = self.services.get(ns, name)?;
            Some(cached.resource_version.as_deref().map(str::to_string))
        });
        self.replica_sets.retain_writes(live_uids);
        let live_runs = self
            .analysis_runs
            .state()
            .iter()
            .filter_map(|r| r.metadata.uid.clone())
            .collect();
        self.retired_runs.retain(&live_runs);
    }
}
