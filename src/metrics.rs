//! One Prometheus registry for the whole process, and the small HTTP server that exposes it
//! (`/metrics`) with the probes (`/healthz`, `/readyz`).
//!
//! Label cardinality is bounded by construction: the only unbounded-looking labels are
//! `namespace` and `rollout`, which exist once per *live* Rollout (their series are removed when
//! the Rollout is deleted, and every per-rollout gauge is cleared when this process stops being
//! the leader). Nothing is labelled by request, AnalysisRun, ReplicaSet, revision or error
//! message — the per-request labels that made Argo Rollouts' controller run out of memory.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `aviary_reconciles_total` | counter | `result` |
//! | `aviary_reconcile_errors_total` | counter | `kind` |
//! | `aviary_reconcile_duration_seconds` | histogram | |
//! | `aviary_rollouts` | gauge | `phase` |
//! | `aviary_rollout_phase` | gauge (1) | `namespace`, `rollout`, `phase` |
//! | `aviary_rollout_canary_weight_ratio` | gauge | `namespace`, `rollout` |
//! | `aviary_deployments_total` | counter | `namespace`, `rollout`, `outcome` |
//! | `aviary_deployment_lead_time_seconds` | histogram | `namespace`, `rollout` |
//! | `aviary_deployment_time_to_restore_seconds` | histogram | `namespace`, `rollout` |
//! | `aviary_analysis_runs_total` | counter | `phase` |
//! | `aviary_analysis_measurements_total` | counter | `phase` |
//! | `aviary_kube_api_requests_total` | counter | `verb`, `resource`, `result` |
//! | `aviary_notifications_total` | counter | `sink`, `trigger`, `result` |
//! | `aviary_leader` | gauge | |
//! | `aviary_leader_acquisitions_total` | counter | |
//! | `aviary_build_info` | gauge (1) | `version`, `revision` |

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use tokio::net::TcpListener;
use tracing::{debug, warn};

use crate::api::{AnalysisPhase, AnalysisRunStatus, RolloutPhase};
use crate::delivery::{Transition, Trigger};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabel {
    phase: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RolloutLabels {
    namespace: String,
    rollout: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RolloutPhaseLabels {
    namespace: String,
    rollout: String,
    phase: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    namespace: String,
    rollout: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApiLabels {
    verb: &'static str,
    resource: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NotifyLabels {
    sink: String,
    trigger: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabel {
    version: &'static str,
    revision: &'static str,
}

type GaugeF64 = Gauge<f64, AtomicU64>;
type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Deployment outcomes counted in `aviary_deployments_total`.
pub mod outcomes {
    pub const COMPLETED: &str = "completed";
    pub const ABORTED: &str = "aborted";
    pub const ROLLED_BACK: &str = "rolled_back";
    pub const ALL: [&str; 3] = [COMPLETED, ABORTED, ROLLED_BACK];
}

fn reconcile_histogram() -> Histogram {
    Histogram::new([
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ])
}

/// Lead time, from a revision's ReplicaSet being created to its full promotion: minutes to days.
fn lead_time_histogram() -> Histogram {
    Histogram::new([
        60.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0, 86400.0, 259200.0,
    ])
}

/// Time to restore after an abort: seconds (automatic rollback) to a day (a fix rolled forward).
fn restore_histogram() -> Histogram {
    Histogram::new([
        10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 14400.0, 86400.0,
    ])
}

/// What the metrics know of one rollout, to keep the phase gauges consistent.
#[derive(Clone, Debug, Default)]
struct RolloutSeries {
    phase: Option<RolloutPhase>,
    weight: bool,
}

/// The process's metrics.
pub struct Metrics {
    registry: Registry,
    reconciles: Family<ResultLabel, Counter>,
    reconcile_errors: Family<KindLabel, Counter>,
    reconcile_duration: Histogram,
    rollouts: Family<PhaseLabel, Gauge>,
    rollout_phase: Family<RolloutPhaseLabels, Gauge>,
    canary_weight: Family<RolloutLabels, GaugeF64>,
    deployments: Family<OutcomeLabels, Counter>,
    lead_time: HistogramFamily<RolloutLabels>,
    time_to_restore: HistogramFamily<RolloutLabels>,
    analysis_runs: Family<PhaseLabel, Counter>,
    measurements: Family<PhaseLabel, Counter>,
    api_requests: Family<ApiLabels, Counter>,
    api_pace_wait: Counter<f64, AtomicU64>,
    notifications: Family<NotifyLabels, Counter>,
    leader: Gauge,
    leader_acquisitions: Counter,
    undecodable: Family<KindLabel, Gauge>,
    watch_errors: Family<KindLabel, Counter>,
    drift_corrections: Family<KindLabel, Counter>,
    /// Per-rollout series currently exported (for removal and the `aviary_rollouts` totals).
    series: Mutex<HashMap<(String, String), RolloutSeries>>,
}

const PHASES: [RolloutPhase; 4] = [
    RolloutPhase::Healthy,
    RolloutPhase::Progressing,
    RolloutPhase::Paused,
    RolloutPhase::Degraded,
];

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let reconciles = Family::<ResultLabel, Counter>::default();
        registry.register(
            "aviary_reconciles",
            "Rollout reconciles, by result (success or error)",
            reconciles.clone(),
        );
        let reconcile_errors = Family::<KindLabel, Counter>::default();
        registry.register(
            "aviary_reconcile_errors",
            "Failed Rollout reconciles, by error kind (kube, traffic, invalid_spec, serde)",
            reconcile_errors.clone(),
        );
        let reconcile_duration = reconcile_histogram();
        registry.register_with_unit(
            "aviary_reconcile_duration",
            "Time one Rollout reconcile took",
            Unit::Seconds,
            reconcile_duration.clone(),
        );
        let rollouts = Family::<PhaseLabel, Gauge>::default();
        registry.register(
            "aviary_rollouts",
            "Rollouts this controller reconciles, by phase (exported by the leader only)",
            rollouts.clone(),
        );
        let rollout_phase = Family::<RolloutPhaseLabels, Gauge>::default();
        registry.register(
            "aviary_rollout_phase",
            "1 for the phase each Rollout is in (exported by the leader only)",
            rollout_phase.clone(),
        );
        let canary_weight = Family::<RolloutLabels, GaugeF64>::default();
        registry.register(
            "aviary_rollout_canary_weight_ratio",
            "Share of traffic (0-1) the canary revision receives",
            canary_weight.clone(),
        );
        let deployments = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "aviary_deployments",
            "Updates to a new revision that ended, by outcome: completed (fully promoted), aborted, rolled_back (template returned to the stable revision mid-update)",
            deployments.clone(),
        );
        let lead_time: HistogramFamily<RolloutLabels> =
            Family::new_with_constructor(lead_time_histogram);
        registry.register_with_unit(
            "aviary_deployment_lead_time",
            "From a revision's ReplicaSet being created to the revision being fully promoted",
            Unit::Seconds,
            lead_time.clone(),
        );
        let time_to_restore: HistogramFamily<RolloutLabels> =
            Family::new_with_constructor(restore_histogram);
        registry.register_with_unit(
            "aviary_deployment_time_to_restore",
            "From an abort to the Rollout being Healthy again (rolled back, retried or fixed forward)",
            Unit::Seconds,
            time_to_restore.clone(),
        );
        let analysis_runs = Family::<PhaseLabel, Counter>::default();
        registry.register(
            "aviary_analysis_runs",
            "AnalysisRuns that reached a final phase, by phase",
            analysis_runs.clone(),
        );
        let measurements = Family::<PhaseLabel, Counter>::default();
        registry.register(
            "aviary_analysis_measurements",
            "Analysis measurements taken, by verdict",
            measurements.clone(),
        );
        let api_requests = Family::<ApiLabels, Counter>::default();
        registry.register(
            "aviary_kube_api_requests",
            "Requests to the Kubernetes API server, by verb, resource and result",
            api_requests.clone(),
        );
        let api_pace_wait = Counter::<f64, AtomicU64>::default();
        registry.register_with_unit(
            "aviary_kube_api_pace_wait",
            "Time the first of the main lane's queued requests was held back by --kube-api-qps \
             (rising about a second per second: the pace, not the API server, sets the speed)",
            Unit::Seconds,
            api_pace_wait.clone(),
        );
        let notifications = Family::<NotifyLabels, Counter>::default();
        registry.register(
            "aviary_notifications",
            "Webhook notifications, by sink, trigger and result (sent, failed, dropped)",
            notifications.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "aviary_leader",
            "1 while this process holds the leader Lease and reconciles",
            leader.clone(),
        );
        let leader_acquisitions = Counter::default();
        registry.register(
            "aviary_leader_acquisitions",
            "Times this process became the leader",
            leader_acquisitions.clone(),
        );
        let undecodable = Family::<KindLabel, Gauge>::default();
        registry.register(
            "aviary_undecodable_objects",
            "Objects the controller cannot decode and so skips, by kind (each also has a warning Event)",
            undecodable.clone(),
        );
        let watch_errors = Family::<KindLabel, Counter>::default();
        registry.register(
            "aviary_watch_errors",
            "Failed list or watch requests, by kind (the watch retries with a backoff)",
            watch_errors.clone(),
        );
        let drift_corrections = Family::<KindLabel, Counter>::default();
        registry.register(
            "aviary_drift_corrections",
            "Writes that put back someone else's change to a routing object's weights or a Service's selector, by kind",
            drift_corrections.clone(),
        );
        let build_info = Family::<VersionLabel, Gauge>::default();
        build_info
            .get_or_create(&VersionLabel {
                version: crate::build_info::VERSION,
                revision: crate::build_info::REVISION,
            })
            .set(1);
        registry.register(
            "aviary_build_info",
            "The build of this process: version and git revision (constant 1)",
            build_info,
        );
        let m = Metrics {
            registry,
            reconciles,
            reconcile_errors,
            reconcile_duration,
            rollouts,
            rollout_phase,
            canary_weight,
            deployments,
            lead_time,
            time_to_restore,
            analysis_runs,
            measurements,
            api_requests,
            api_pace_wait,
            notifications,
            leader,
            leader_acquisitions,
            undecodable,
            watch_errors,
            drift_corrections,
            series: Mutex::new(HashMap::new()),
        };
        m.zero_rollout_totals();
        m
    }

    fn zero_rollout_totals(&self) {
        for p in PHASES {
            self.rollouts
                .get_or_create(&PhaseLabel { phase: p.as_str() })
                .set(0);
        }
    }

    /// The registry in the Prometheus text exposition format (OpenMetrics flavour).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            warn!(error = %e, "could not encode metrics");
        }
        out
    }

    /// Starts timing a reconcile; the guard records its duration and result when finished (or
    /// as an error-free reconcile if dropped early, e.g. on leadership loss).
    pub fn reconcile_timer(self: &Arc<Self>) -> ReconcileTimer {
        ReconcileTimer {
            metrics: self.clone(),
            start: Instant::now(),
            error: None,
        }
    }

    /// Records a rollout's phase and canary weight (a share of `total`: 100, or
    /// `maxTrafficWeight`) after a reconcile.
    pub fn observe_rollout(
        &self,
        namespace: &str,
        rollout: &str,
        phase: Option<RolloutPhase>,
        canary_weight: Option<(i32, i32)>,
    ) {
        let key = (namespace.to_string(), rollout.to_string());
        let Ok(mut series) = self.series.lock() else {
            return;
        };
        let first_sight = !series.contains_key(&key);
        let entry = series.entry(key).or_default();
        if first_sight && phase.is_some() {
            self.init_delivery_series(namespace, rollout);
        }
        if entry.phase != phase {
            if let Some(old) = entry.phase {
                self.rollouts
                    .get_or_create(&PhaseLabel {
                        phase: old.as_str(),
                    })
                    .dec();
                self.rollout_phase.remove(&RolloutPhaseLabels {
                    namespace: namespace.into(),
                    rollout: rollout.into(),
                    phase: old.as_str(),
                });
            }
            if let Some(new) = phase {
                self.rollouts
                    .get_or_create(&PhaseLabel {
                        phase: new.as_str(),
                    })
                    .inc();
                self.rollout_phase
                    .get_or_create(&RolloutPhaseLabels {
                        namespace: namespace.into(),
                        rollout: rollout.into(),
                        phase: new.as_str(),
                    })
                    .set(1);
            }
            entry.phase = phase;
        }
        let labels = RolloutLabels {
            namespace: namespace.into(),
            rollout: rollout.into(),
        };
        match canary_weight {
            Some((w, total)) => {
                let total = total.max(1);
                self.canary_weight
                    .get_or_create(&labels)
                    .set(f64::from(w.clamp(0, total)) / f64::from(total));
                entry.weight = true;
            }
            None if entry.weight => {
                self.canary_weight.remove(&labels);
                entry.weight = false;
            }
            None => {}
        }
    }

    /// Creates a rollout's delivery counters and histograms at zero, so the first event is an
    /// increase from 0 that `increase()` and `rate()` see (a series born at 1 shows none).
    fn init_delivery_series(&self, namespace: &str, rollout: &str) {
        for outcome in outcomes::ALL {
            let _ = self.deployments.get_or_create(&OutcomeLabels {
                namespace: namespace.into(),
                rollout: rollout.into(),
                outcome,
            });
        }
        let labels = RolloutLabels {
            namespace: namespace.into(),
            rollout: rollout.into(),
        };
        let _ = self.lead_time.get_or_create(&labels);
        let _ = self.time_to_restore.get_or_create(&labels);
    }

    /// Removes every series of a Rollout that no longer exists.
    pub fn forget_rollout(&self, namespace: &str, rollout: &str) {
        self.observe_rollout(namespace, rollout, None, None);
        if let Ok(mut series) = self.series.lock() {
            series.remove(&(namespace.to_string(), rollout.to_string()));
        }
        let labels = RolloutLabels {
            namespace: namespace.into(),
            rollout: rollout.into(),
        };
        self.lead_time.remove(&labels);
        self.time_to_restore.remove(&labels);
        for outcome in outcomes::ALL {
            self.deployments.remove(&OutcomeLabels {
                namespace: namespace.into(),
                rollout: rollout.into(),
                outcome,
            });
        }
    }

    /// Records the delivery figure a transition stands for (notification-only transitions are
    /// ignored here).
    pub fn record_transition(&self, namespace: &str, rollout: &str, t: &Transition) {
        if let Ok(mut series) = self.series.lock() {
            series
                .entry((namespace.to_string(), rollout.to_string()))
                .or_default();
        }
        let labels = RolloutLabels {
            namespace: namespace.into(),
            rollout: rollout.into(),
        };
        let count = |outcome| {
            self.deployments
                .get_or_create(&OutcomeLabels {
                    namespace: namespace.into(),
                    rollout: rollout.into(),
                    outcome,
                })
                .inc();
        };
        match t {
            Transition::Promoted { lead_time, .. } => {
                count(outcomes::COMPLETED);
                if let Some(d) = lead_time {
                    self.lead_time
                        .get_or_create(&labels)
                        .observe(d.as_secs_f64());
                }
            }
            Transition::Aborted { .. } => count(outcomes::ABORTED),
            Transition::RolledBack { .. } => count(outcomes::ROLLED_BACK),
            Transition::Restored { after, .. } => {
                self.time_to_restore
                    .get_or_create(&labels)
                    .observe(after.as_secs_f64());
            }
            Transition::Paused { .. } | Transition::AnalysisFailed { .. } => {}
        }
    }

    /// Records what an AnalysisRun status write changed: a final phase reached, and the
    /// measurements taken since `old` (from the per-metric counters, so a measurement history
    /// trimmed to its limit doesn't hide any).
    pub fn record_analysis_run(&self, old: Option<&AnalysisRunStatus>, new: &AnalysisRunStatus) {
        let was_final = old.is_some_and(|o| o.phase.is_completed());
        if new.phase.is_completed() && !was_final {
            self.analysis_runs
                .get_or_create(&PhaseLabel {
                    phase: new.phase.as_str(),
                })
                .inc();
        }
        for m in &new.metric_results {
            let before = old.and_then(|o| o.metric_result(&m.name));
            let delta = |now: i32, then: Option<i32>| {
                u64::try_from(now.saturating_sub(then.unwrap_or(0))).unwrap_or(0)
            };
            for (phase, n) in [
                (
                    AnalysisPhase::Successful,
                    delta(m.successful, before.map(|b| b.successful)),
                ),
                (
                    AnalysisPhase::Failed,
                    delta(m.failed, before.map(|b| b.failed)),
                ),
                (
                    AnalysisPhase::Inconclusive,
                    delta(m.inconclusive, before.map(|b| b.inconclusive)),
                ),
                (
                    AnalysisPhase::Error,
                    delta(m.error, before.map(|b| b.error)),
                ),
            ] {
                if n > 0 {
                    self.measurements
                        .get_or_create(&PhaseLabel {
                            phase: phase.as_str(),
                        })
                        .inc_by(n);
                }
            }
        }
    }

    /// Counts one API request.
    pub fn api_request(&self, verb: &'static str, resource: String, result: &'static str) {
        self.api_requests
            .get_or_create(&ApiLabels {
                verb,
                resource,
                result,
            })
            .inc();
    }

    /// Counts one notification attempt (`sent`, `failed` or `dropped`).
    pub fn notification(&self, sink: &str, trigger: Trigger, result: &'static str) {
        self.notifications
            .get_or_create(&NotifyLabels {
                sink: sink.to_string(),
                trigger: trigger.as_str(),
                result,
            })
            .inc();
    }

    /// Adds time the paced client waited for its pace ([`crate::controller::pacing`]).
    pub fn api_pace_waited(&self, waited: std::time::Duration) {
        self.api_pace_wait.inc_by(waited.as_secs_f64());
    }

    /// Leadership changed. A process that is not the leader exports no per-rollout gauges, so
    /// summing over replicas never counts a rollout twice.
    /// How many objects of `kind` the controller currently cannot decode.
    pub fn set_undecodable(&self, kind: &'static str, count: usize) {
        self.undecodable
            .get_or_create(&KindLabel { kind })
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// A write put back someone else's change to an object of `kind`.
    pub fn drift_corrected(&self, kind: &'static str) {
        self.drift_corrections
            .get_or_create(&KindLabel { kind })
            .inc();
    }

    /// A list or watch request of `kind` failed.
    pub fn watch_error(&self, kind: &'static str) {
        self.watch_errors.get_or_create(&KindLabel { kind }).inc();
    }

    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
        if leading {
            self.leader_acquisitions.inc();
        } else {
            // A standby watches nothing: it knows of no undecodable object.
            self.undecodable.clear();
            self.clear_rollouts();
        }
    }

    /// Drops the per-rollout gauges (the delivery counters stay: they are this process's
    /// history, and `increase()` over all replicas stays right).
    fn clear_rollouts(&self) {
        if let Ok(mut series) = self.series.lock() {
            for s in series.values_mut() {
                *s = RolloutSeries::default();
            }
        }
        self.rollout_phase.clear();
        self.canary_weight.clear();
        self.zero_rollout_totals();
    }

    /// The rollouts that have series here (for removing those of deleted Rollouts).
    pub fn tracked_rollouts(&self) -> Vec<(String, String)> {
        self.series
            .lock()
            .map(|s| s.keys().cloned().collect())
            .unwrap_or_default()
    }
}

/// Times one reconcile (a drop guard, so every exit path is measured).
pub struct ReconcileTimer {
    metrics: Arc<Metrics>,
    start: Instant,
    error: Option<&'static str>,
}

impl ReconcileTimer {
    /// Marks the reconcile failed with an error of `kind`.
    pub fn failed(&mut self, kind: &'static str) {
        self.error = Some(kind);
    }
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        let m = &self.metrics;
        m.reconcile_duration
            .observe(self.start.elapsed().as_secs_f64());
        let result = if self.error.is_some() {
            "error"
        } else {
            "success"
        };
        m.reconciles.get_or_create(&ResultLabel { result }).inc();
        if let Some(kind) = self.error {
            m.reconcile_errors.get_or_create(&KindLabel { kind }).inc();
        }
    }
}

// ---- probes -------------------------------------------------------------------------------

/// Liveness and readiness.
///
/// - ready (`/readyz`) once the API server answered and the Aviary CRDs are served — a standby
///   replica is ready too: it is ready to take over;
/// - live (`/healthz`) unless a watched loop (the leader election) has not made progress for
///   longer than its allowance: a wedged process is restarted rather than left holding, or
///   waiting for, the lease.
#[derive(Default)]
pub struct Health {
    ready: AtomicBool,
    heartbeat: Mutex<Option<(Instant, Duration)>>,
}

impl Health {
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// A watched loop made progress; it must again within `allowance`.
    pub fn beat(&self, allowance: Duration) {
        if let Ok(mut h) = self.heartbeat.lock() {
            *h = Some((Instant::now(), allowance));
        }
    }

    pub fn is_live(&self) -> bool {
        match self.heartbeat.lock() {
            Ok(h) => h.is_none_or(|(at, allowance)| at.elapsed() <= allowance),
            Err(_) => false,
        }
    }
}

// ---- HTTP ---------------------------------------------------------------------------------

/// What one listener serves.
#[derive(Clone, Default)]
pub struct Endpoints {
    pub metrics: Option<Arc<Metrics>>,
    pub health: Option<Arc<Health>>,
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r
}

fn route(endpoints: &Endpoints, path: &str) -> Response<Full<Bytes>> {
    match (path, &endpoints.metrics, &endpoints.health) {
        ("/metrics", Some(m), _) => {
            let mut r = text(StatusCode::OK, m.encode());
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            r
        }
        ("/healthz" | "/livez", _, Some(h)) => {
            if h.is_live() {
                text(StatusCode::OK, "ok\n")
            } else {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "leader election loop stalled\n",
                )
            }
        }
        ("/readyz", _, Some(h)) => {
            if h.is_ready() {
                text(StatusCode::OK, "ok\n")
            } else {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "waiting for the API server and the Aviary CRDs\n",
                )
            }
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// Binds `addr` (so a bad address fails at startup) and serves `endpoints` on it in a
/// background task for the life of the process.
pub async fn serve(addr: SocketAddr, endpoints: Endpoints) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    // Bounded: at most MAX_CONNECTIONS at once, headers within HEADER_TIMEOUT and a connection
    // for CONNECTION_TIMEOUT in all, so slow or idle clients cannot pile up in the controller.
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    // Per client address too: one pod holding every slot would have the kubelet's probes
    // refused, and the controller restarted for it.
    let per_peer: Arc<Mutex<HashMap<std::net::IpAddr, usize>>> = Arc::default();
    tokio::spawn(async move {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    warn!(error = %e, "metrics/health listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let ip = peer.ip();
            let peer_full = {
                let mut m = per_peer
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let n = m.entry(ip).or_insert(0);
                if *n >= MAX_CONNECTIONS_PER_PEER {
                    true
                } else {
                    *n += 1;
                    false
                }
            };
            if peer_full {
                debug!(%ip, "metrics/health: too many connections from one client; closing a new one");
                drop(stream);
                continue;
            }
            let release_peer = {
                let per_peer = per_peer.clone();
                move || {
                    let mut m = per_peer
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    if let Some(n) = m.get_mut(&ip) {
                        *n = n.saturating_sub(1);
                        if *n == 0 {
                            m.remove(&ip);
                        }
                    }
                }
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                debug!("metrics/health: too many connections; closing a new one");
                release_peer();
                drop(stream);
                continue;
            };
            let endpoints = endpoints.clone();
            tokio::spawn(async move {
                let _slot = slot;
                let _peer = scopeguard(release_peer);
                let service = hyper::service::service_fn(move |req: Request<_>| {
                    let resp = route(&endpoints, req.uri().path());
                    async move { Ok::<_, Infallible>(resp) }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .serve_connection(io, service);
                match tokio::time::timeout(CONNECTION_TIMEOUT, conn).await {
                    Ok(Err(e)) => {
                        debug!(error = %e, "metrics/health connection ended with an error")
                    }
                    Err(_) => debug!("metrics/health connection closed: open too long"),
                    Ok(Ok(())) => {}
                }
            });
        }
    });
    Ok(local)
}

/// Connections the metrics and probe listener serves at once.
pub const MAX_CONNECTIONS: usize = 64;
/// Connections it serves at once from one client address.
pub const MAX_CONNECTIONS_PER_PEER: usize = 8;

/// Runs `f` when dropped.
fn scopeguard<F: FnOnce()>(f: F) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}
/// How long a client may take to send its request headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one connection may stay open (keep-alive included).
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(60);

// ---- API requests -------------------------------------------------------------------------

/// The Kubernetes verb and resource of a request to the API server. The resource is the path's
/// resource type (with its subresource), never a name or namespace, so the label stays bounded
/// by the kinds the controller uses.
pub fn classify_request(method: &http::Method, uri: &http::Uri) -> (&'static str, String) {
    let segments: Vec<&str> = uri.path().split('/').filter(|s| !s.is_empty()).collect();
    // /api/v1/... or /apis/group/version/...
    let rest: &[&str] = match segments.as_slice() {
        ["api", _v, rest @ ..] => rest,
        ["apis", _g, _v, rest @ ..] => rest,
        _ => &[],
    };
    let rest = match rest {
        ["namespaces", _ns, r, more @ ..] => {
            let mut v = vec![*r];
            v.extend_from_slice(more);
            v
        }
        other => other.to_vec(),
    };
    let (resource, named) = match rest.as_slice() {
        [] => ("discovery".to_string(), false),
        [r] => ((*r).to_string(), false),
        [r, _name] => ((*r).to_string(), true),
        [r, _name, sub, ..] => (format!("{r}/{sub}"), true),
    };
    let resource: String = resource
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '/'))
        .take(64)
        .collect();
    let watch = uri
        .query()
        .is_some_and(|q| q.split('&').any(|kv| kv == "watch=true" || kv == "watch=1"));
    let verb = match *method {
        http::Method::GET if watch => "watch",
        http::Method::GET if named => "get",
        http::Method::GET => "list",
        http::Method::POST => "create",
        http::Method::PUT => "update",
        http::Method::PATCH => "patch",
        http::Method::DELETE if named => "delete",
        http::Method::DELETE => "deletecollection",
        _ => "other",
    };
    (verb, resource)
}

/// The result label of a response status.
pub fn classify_status(status: http::StatusCode) -> &'static str {
    match status.as_u16() {
        200..=299 => "success",
        404 => "not_found",
        409 => "conflict",
        429 => "throttled",
        400..=499 => "client_error",
        500..=599 => "server_error",
        _ => "other",
    }
}

/// A tower layer for `kube::client::ClientBuilder` counting requests by verb, resource and
/// result.
#[derive(Clone)]
pub struct ApiRequestsLayer {
    pub metrics: Arc<Metrics>,
}

impl<S> tower::Layer<S> for ApiRequestsLayer {
    type Service = ApiRequests<S>;
    fn layer(&self, inner: S) -> Self::Service {
        ApiRequests {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// See [`ApiRequestsLayer`].
#[derive(Clone)]
pub struct ApiRequests<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S, B, R> tower::Service<http::Request<B>> for ApiRequests<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let (verb, resource) = classify_request(req.method(), req.uri());
        let metrics = self.metrics.clone();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let res = fut.await;
            let result = match &res {
                Ok(r) => classify_status(r.status()),
                Err(_) => "error",
            };
            metrics.api_request(verb, resource, result);
            res
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::MetricResult;

    async fn health_endpoint() -> SocketAddr {
        let health = Arc::new(Health::default());
        health.set_ready(true);
        let endpoints = Endpoints {
            metrics: None,
            health: Some(health),
        };
        serve("127.0.0.1:0".parse().expect("addr"), endpoints)
            .await
            .expect("serve")
    }

    /// Reads until the server closes the connection; the bytes read.
    async fn read_to_close(stream: &mut tokio::net::TcpStream) -> Vec<u8> {
        use tokio::io::AsyncReadExt;
        let mut out = vec![];
        let _ = stream.read_to_end(&mut out).await;
        out
    }

    /// H2: a client that connects and never sends its headers is cut off after HEADER_TIMEOUT,
    /// not held for ever.
    #[tokio::test(start_paused = true)]
    async fn a_silent_client_is_cut_off() {
        let addr = health_endpoint().await;
        let mut silent = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let t0 = tokio::time::Instant::now();
        read_to_close(&mut silent).await;
        assert!(t0.elapsed() >= HEADER_TIMEOUT, "{:?}", t0.elapsed());
        assert!(t0.elapsed() < CONNECTION_TIMEOUT, "{:?}", t0.elapsed());
    }

    /// H2: past MAX_CONNECTIONS_PER_PEER open at once from one client, its new connection is
    /// closed at once (other clients, the kubelet among them, still get theirs); the probe
    /// answers again once one is free.
    #[tokio::test]
    async fn connections_are_bounded() {
        use tokio::io::AsyncWriteExt;
        let addr = health_endpoint().await;
        let mut held = vec![];
        for _ in 0..MAX_CONNECTIONS_PER_PEER {
            held.push(tokio::net::TcpStream::connect(addr).await.expect("connect"));
        }
        // Accepted in order: the next one finds every slot taken.
        let mut extra = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let _ = extra
            .write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await;
        let answer = tokio::time::timeout(Duration::from_secs(5), read_to_close(&mut extra))
            .await
            .expect("closed at once");
        assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
        // Another client (another loopback address) is still served.
        let other = tokio::net::TcpSocket::new_v4().expect("socket");
        other
            .bind("127.0.0.2:0".parse().expect("addr"))
            .expect("bind 127.0.0.2");
        let mut other = other.connect(addr).await.expect("connect");
        let _ = other
            .write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await;
        let answered = String::from_utf8_lossy(&read_to_close(&mut other).await).into_owned();
        assert!(answered.starts_with("HTTP/1.1 200"), "{answered}");
        drop(held);
        let answered = crate::metrics::tests::get_readyz(addr).await;
        assert!(answered.starts_with("HTTP/1.1 200"), "{answered}");
    }

    /// `/readyz` over a fresh connection, retried while the freed slots come back.
    async fn get_readyz(addr: SocketAddr) -> String {
        use tokio::io::AsyncWriteExt;
        for _ in 0..50 {
            let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
                continue;
            };
            let _ = s
                .write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .await;
            let got = String::from_utf8_lossy(&read_to_close(&mut s).await).into_owned();
            if !got.is_empty() {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        String::new()
    }

    fn series(text: &str, prefix: &str) -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with(prefix))
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn requests_are_classified_by_verb_and_resource_never_by_name() {
        let cases = [
            (
                "GET",
                "/apis/aviary.dev/v1alpha1/namespaces/ns1/rollouts/web",
                ("get", "rollouts"),
            ),
            (
                "GET",
                "/apis/aviary.dev/v1alpha1/rollouts?watch=true&resourceVersion=5",
                ("watch", "rollouts"),
            ),
            (
                "GET",
                "/apis/apps/v1/namespaces/x/replicasets?labelSelector=a",
                ("list", "replicasets"),
            ),
            (
                "PATCH",
                "/apis/aviary.dev/v1alpha1/namespaces/ns1/rollouts/web/status",
                ("patch", "rollouts/status"),
            ),
            (
                "POST",
                "/api/v1/namespaces/ns1/services",
                ("create", "services"),
            ),
            (
                "PUT",
                "/apis/coordination.k8s.io/v1/namespaces/ns/leases/aviary",
                ("update", "leases"),
            ),
            ("DELETE", "/api/v1/namespaces/ns1", ("delete", "namespaces")),
            ("GET", "/api/v1/namespaces", ("list", "namespaces")),
            ("GET", "/apis", ("list", "discovery")),
        ];
        for (method, uri, (verb, resource)) in cases {
            let m: http::Method = method.parse().expect("method");
            let u: http::Uri = uri.parse().expect("uri");
            assert_eq!(
                classify_request(&m, &u),
                (verb, resource.to_string()),
                "{method} {uri}"
            );
        }
        assert_eq!(classify_status(http::StatusCode::CONFLICT), "conflict");
        assert_eq!(classify_status(http::StatusCode::CREATED), "success");
    }

    #[test]
    fn the_weight_ratio_is_a_share_of_max_traffic_weight() {
        let m = Metrics::new();
        m.observe_rollout(
            "ns",
            "fine",
            Some(RolloutPhase::Progressing),
            Some((5, 1000)),
        );
        let t = m.encode();
        assert!(
            t.contains(
                "aviary_rollout_canary_weight_ratio{namespace=\"ns\",rollout=\"fine\"} 0.005"
            ),
            "{t}"
        );
    }

    #[test]
    fn phase_gauges_follow_the_rollout_and_go_away_with_it() {
        let m = Metrics::new();
        m.observe_rollout(
            "ns",
            "web",
            Some(RolloutPhase::Progressing),
            Some((20, 100)),
        );
        m.observe_rollout("ns", "api", Some(RolloutPhase::Healthy), None);
        let t = m.encode();
        assert!(
            t.contains("aviary_rollouts{phase=\"Progressing\"} 1"),
            "{t}"
        );
        assert!(t.contains("aviary_rollouts{phase=\"Healthy\"} 1"), "{t}");
        assert!(
            t.contains("aviary_rollout_canary_weight_ratio{namespace=\"ns\",rollout=\"web\"} 0.2")
        );
        m.observe_rollout("ns", "web", Some(RolloutPhase::Healthy), Some((0, 100)));
        let t = m.encode();
        assert!(
            t.contains("aviary_rollouts{phase=\"Progressing\"} 0"),
            "{t}"
        );
        assert!(t.contains("aviary_rollouts{phase=\"Healthy\"} 2"), "{t}");
        assert_eq!(
            series(&t, "aviary_rollout_phase{namespace=\"ns\",rollout=\"web\""),
            vec!["aviary_rollout_phase{namespace=\"ns\",rollout=\"web\",phase=\"Healthy\"} 1"]
        );
        m.record_transition(
            "ns",
            "web",
            &Transition::Promoted {
                revision: "h".into(),
                lead_time: Some(Duration::from_secs(90)),
            },
        );
        m.forget_rollout("ns", "web");
        let t = m.encode();
        assert!(t.contains("aviary_rollouts{phase=\"Healthy\"} 1"), "{t}");
        assert!(!t.contains("rollout=\"web\""), "{t}");
        // A standby exports no per-rollout gauges; the delivery counters stay.
        m.set_leader(false);
        let t = m.encode();
        assert!(
            !t.contains("aviary_rollout_phase{namespace=\"ns\",rollout=\"api\""),
            "{t}"
        );
        assert!(t.contains(
            "aviary_deployments_total{namespace=\"ns\",rollout=\"api\",outcome=\"completed\"} 0"
        ));
        assert!(t.contains("aviary_rollouts{phase=\"Healthy\"} 0"), "{t}");
    }

    #[test]
    fn delivery_figures_are_counted_per_rollout() {
        let m = Metrics::new();
        m.record_transition(
            "ns",
            "web",
            &Transition::Promoted {
                revision: "h".into(),
                lead_time: Some(Duration::from_secs(90)),
            },
        );
        m.record_transition(
            "ns",
            "web",
            &Transition::Aborted {
                revision: "h".into(),
                message: "x".into(),
            },
        );
        m.record_transition(
            "ns",
            "web",
            &Transition::Restored {
                revision: "h".into(),
                after: Duration::from_secs(20),
            },
        );
        let t = m.encode();
        for line in [
            "aviary_deployments_total{namespace=\"ns\",rollout=\"web\",outcome=\"completed\"} 1",
            "aviary_deployments_total{namespace=\"ns\",rollout=\"web\",outcome=\"aborted\"} 1",
            "aviary_deployment_lead_time_seconds_sum{namespace=\"ns\",rollout=\"web\"} 90.0",
            "aviary_deployment_lead_time_seconds_count{namespace=\"ns\",rollout=\"web\"} 1",
            "aviary_deployment_time_to_restore_seconds_bucket{le=\"30.0\",namespace=\"ns\",rollout=\"web\"} 1",
        ] {
            assert!(t.contains(line), "missing {line} in\n{t}");
        }
    }

    #[test]
    fn analysis_runs_and_measurements_are_counted_from_status_changes() {
        let m = Metrics::new();
        let running = AnalysisRunStatus {
            phase: AnalysisPhase::Running,
            metric_results: vec![MetricResult {
                name: "success-rate".into(),
                successful: 2,
                count: 2,
                ..Default::default()
            }],
            ..Default::default()
        };
        m.record_analysis_run(None, &running);
        let mut failed = running.clone();
        failed.phase = AnalysisPhase::Failed;
        failed.metric_results[0].failed = 2;
        failed.metric_results[0].successful = 3;
        m.record_analysis_run(Some(&running), &failed);
        m.record_analysis_run(Some(&failed), &failed);
        let t = m.encode();
        for line in [
            "aviary_analysis_runs_total{phase=\"Failed\"} 1",
            "aviary_analysis_measurements_total{phase=\"Successful\"} 3",
            "aviary_analysis_measurements_total{phase=\"Failed\"} 2",
        ] {
            assert!(t.contains(line), "missing {line} in\n{t}");
        }
    }

    #[test]
    fn the_reconcile_timer_counts_results_and_error_kinds() {
        let m = Arc::new(Metrics::new());
        drop(m.reconcile_timer());
        let mut t = m.reconcile_timer();
        t.failed("kube");
        drop(t);
        let text = m.encode();
        for line in [
            "aviary_reconciles_total{result=\"success\"} 1",
            "aviary_reconciles_total{result=\"error\"} 1",
            "aviary_reconcile_errors_total{kind=\"kube\"} 1",
            "aviary_reconcile_duration_seconds_count 2",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }

    #[test]
    fn health_goes_stale_without_heartbeats() {
        let h = Health::default();
        assert!(h.is_live(), "no watched loop: live");
        assert!(!h.is_ready());
        h.beat(Duration::from_secs(60));
        assert!(h.is_live());
        h.beat(Duration::ZERO);
        std::thread::sleep(Duration::from_millis(5));
        assert!(!h.is_live());
    }
}
