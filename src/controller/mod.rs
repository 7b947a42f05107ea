//! The Rollout controller: *observe → plan → act → report*. The map is `docs/architecture.md`.
//!
//! - [`view`]: what a reconcile reads — the watch caches ([`watches`] builds them all) and the
//!   records of our own writes they may not show yet;
//! - [`wiring`]: the watches' wake-ups, the lanes and the AnalysisRun controller, as one chain;
//! - [`reconcile`]: the lanes, reading the Rollout ([`freshness`]), the finalizer, backoff;
//! - [`converge`]: observe ([`observe`], from the caches [`replica_set_cache`],
//!   [`service_cache`], [`routing_cache`]) → plan ([`crate::plan`], pure) → act ([`act`], in the
//!   plan's order) → report ([`report`]: the status only when it changed, Events);
//! - [`abort_path`]: an abort's first write before anything is read, and why that is safe.
//!
//! Timers are requeue-after from the plan; there is no per-object task. A Rollout at rest is
//! converged again every 15 minutes, writing nothing when nothing changed.
//!
//! Memory: the Rollout cache is **trimmed** (no pod spec — its hash is kept instead — no managed
//! fields or last-applied annotation). Creating a ReplicaSet, the one action that needs the
//! whole template, reads the Rollout fresh. Caching whole Rollouts is what makes rival
//! controllers grow with the number of rollouts (docs/benchmarks.md).

pub mod act;
pub mod analysis;
pub mod analysis_runs;
pub mod analysis_slots;
pub mod cleanup;
pub mod drift;
pub mod error;
pub mod freshness;
pub mod index;
pub mod observe;
pub mod pacing;
pub mod pod_metadata;
pub mod relisting;
pub mod replica_set_cache;
pub mod report;
pub mod routing_cache;
pub mod run_specs;
pub mod scope;
pub mod serial;
pub mod service_cache;
pub mod service_release;
pub mod telemetry;
pub mod undecodable;
pub mod view;
pub mod wakers;
pub mod watches;

mod abort_path;
mod converge;
mod reconcile;
mod wiring;

pub use wiring::{run, wait_for_crds};

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use kube::runtime::reflector::Store;
use kube::{Client, ResourceExt};

use crate::traffic::PreparedAborts;
pub use error::Error;

/// What every reconcile shares.
pub struct Context {
    /// Paced for the main lane, unpaced for aborts ([`pacing`]): take [`Context::client`].
    pub clients: pacing::Clients,
    pub recorder: report::EventRecorder,
    /// The watch caches and the records of our writes they may not show yet ([`view`]).
    pub view: view::View,
    /// One reconcile per rollout at a time across the main and the urgent lane.
    serial: serial::KeyLocks,
    /// Consecutive failures per rollout, for backoff; reset on success.
    failures: Mutex<HashMap<String, u32>>,
    /// Metrics, delivery figures and notifications ([`telemetry`]).
    pub telemetry: telemetry::Telemetry,
    /// Weight-0 writes prepared when a canary weight was set, so that an abort's first write
    /// needs no read ([`crate::traffic::prepared`]).
    pub prepared_aborts: PreparedAborts,
    /// When each rollout's status was last written ([`report::COUNTERS_EVERY`]).
    pub status_writes: report::StatusWrites,
}

impl Context {
    /// The client for this reconcile's requests: paced on the main lane, unpaced on the urgent
    /// one ([`pacing`]).
    pub fn client(&self) -> &Client {
        self.clients.current()
    }

    /// A context over `client` (a mock API server's, in tests) with empty caches that have not
    /// listed yet, no VirtualService cache, and quiet telemetry.
    #[cfg(test)]
    pub(crate) fn for_tests(client: Client) -> Self {
        let clients = pacing::Clients::new(client.clone(), client);
        Context {
            recorder: report::EventRecorder::new(clients.clone(), crate::api::wire::EVENT_REPORTER),
            clients,
            view: view::View::for_tests(),
            serial: serial::KeyLocks::default(),
            failures: Mutex::new(HashMap::new()),
            telemetry: telemetry::Telemetry::new(telemetry::TelemetrySinks::quiet()),
            prepared_aborts: PreparedAborts::default(),
            status_writes: report::StatusWrites::default(),
        }
    }
}

/// Controller settings.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The namespaces watched and acted on.
    pub scope: scope::Scope,
    /// Rollouts reconciled at once.
    pub concurrency: u16,
    /// The main lane's trailing-edge debounce (zero: none); the urgent lane has none.
    pub debounce: Duration,
    /// How analysis providers connect: the default Prometheus address, extra CA certificates.
    pub http: crate::provider::HttpOptions,
    /// Run AnalysisRuns no Rollout owns (created by hand), as Argo Rollouts does.
    pub run_unowned_analysis: bool,
    /// Run job metrics, which run pods.
    pub allow_job_metrics: bool,
}

pub use crate::plan::abort_pending;

fn key<K: ResourceExt>(ro: &K) -> String {
    format!("{}/{}", ro.namespace().unwrap_or_default(), ro.name_any())
}

pub(crate) fn store_ready<K>(store: &Store<K>) -> bool
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: std::hash::Hash + Eq + Clone,
{
    use futures::FutureExt;
    matches!(store.wait_until_ready().now_or_never(), Some(Ok(())))
}

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod tests;
