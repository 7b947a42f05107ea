//! Leader election on a `coordination.k8s.io/v1` Lease: one writer, however many replicas run.
//!
//! The protocol is client-go's (`tools/leaderelection`), written out on kube's Lease API:
//!
//! - a **candidate** reads the Lease every `retry_period`. It takes the Lease when there is
//!   none, when it is released (no holder), or when the holder has not renewed it for
//!   `leaseDurationSeconds` *as measured by the candidate's own clock* from the moment it last saw
//!   the Lease change — so clock skew between nodes never shortens a lease;
//! - the **leader** renews every `retry_period`. If it cannot renew for `renew_deadline` (less
//!   than the lease duration), or finds another holder, it has lost: the controller future is
//!   dropped at once — in-flight reconciles are cancelled, nothing more is written — before any
//!   candidate can consider the lease expired;
//! - on **shutdown** the controller is stopped gracefully (in-flight reconciles finish), then the
//!   Lease is released (holder cleared), so a standby takes over at its next retry instead of
//!   waiting for the lease to expire.
//!
//! Every write is a PUT carrying the `resourceVersion` read just before, so two candidates
//! racing for a free Lease cannot both win. The decision itself is [`decide`], a pure function.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::{Client, ResourceExt};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::fence::Fence;
use crate::metrics::{Health, Metrics};

/// Lease settings (flags `--leader-elect-*`).
#[derive(Clone, Debug)]
pub struct LeaseSettings {
    pub name: String,
    pub namespace: String,
    /// Unique per process; stable across restarts of the same pod (its name), so a restarted
    /// container takes its own lease back at once.
    pub identity: String,
    /// How long a Lease is valid without renewal.
    pub lease_duration: Duration,
    /// How long the leader keeps trying to renew before giving up leadership (< lease duration).
    pub renew_deadline: Duration,
    /// How often candidates try to acquire and the leader renews.
    pub retry_period: Duration,
}

impl LeaseSettings {
    /// Checks the timing invariants that make two leaders impossible.
    pub fn validate(&self) -> Result<(), String> {
        if self.renew_deadline >= self.lease_duration {
            return Err(format!(
                "--leader-elect-renew-deadline ({:?}) must be shorter than --leader-elect-lease-duration ({:?})",
                self.renew_deadline, self.lease_duration
            ));
        }
        if self.retry_period >= self.renew_deadline {
            return Err(format!(
                "--leader-elect-retry-period ({:?}) must be shorter than --leader-elect-renew-deadline ({:?})",
                self.retry_period, self.renew_deadline
            ));
        }
        if self.lease_duration < Duration::from_secs(1) {
            return Err("--leader-elect-lease-duration must be at least 1s".into());
        }
        Ok(())
    }

    /// How long the election loop may go without progress before `/healthz` fails.
    fn stall_allowance(&self) -> Duration {
        (self.lease_duration * 2).max(self.retry_period * 5)
    }
}

/// A process identity unique enough for a Lease holder: the host (the pod name in a cluster)
/// and a per-process random suffix.
pub fn default_identity() -> String {
    use std::hash::{BuildHasher, Hasher};
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "aviary".into());
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    format!("{host}_{:08x}", h.finish() as u32)
}

/// The part of a Lease the decision needs.
#[derive(Clone, Debug, PartialEq)]
pub struct LeaseView {
    pub holder: Option<String>,
    pub duration: Duration,
}

impl LeaseView {
    fn of(lease: &Lease, default: Duration) -> Self {
        let spec = lease.spec.as_ref();
        LeaseView {
            holder: spec
                .and_then(|s| s.holder_identity.clone())
                .filter(|h| !h.is_empty()),
            duration: spec
                .and_then(|s| s.lease_duration_seconds)
                .and_then(|s| u64::try_from(s).ok())
                .map(Duration::from_secs)
                .unwrap_or(default),
        }
    }
}

/// What to do with the Lease.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// There is none: create it, held by us.
    Create,
    /// We hold it: renew it.
    Renew,
    /// Released, or not renewed for its whole duration: take it.
    TakeOver,
    /// Another process holds a valid lease.
    Follow { holder: String },
}

/// Decides, given the Lease (if any), who we are, and how long (by our clock) the Lease has been
/// unchanged since we first saw its current version.
pub fn decide(lease: Option<&LeaseView>, me: &str, unchanged_for: Duration) -> Decision {
    let Some(lease) = lease else {
        return Decision::Create;
    };
    match lease.holder.as_deref() {
        Some(h) if h == me => Decision::Renew,
        None => Decision::TakeOver,
        Some(_) if unchanged_for >= lease.duration => Decision::TakeOver,
        Some(h) => Decision::Follow {
            holder: h.to_string(),
        },
    }
}

/// Acquires, renews and releases one Lease.
pub struct Elector {
    api: Api<Lease>,
    settings: LeaseSettings,
    /// The resourceVersion last seen and when (our clock) it was first seen.
    observed: Option<(String, Instant)>,
    /// The holder last reported in the logs.
    last_holder: Option<String>,
    /// Opened by each successful renewal for the renew deadline ([`crate::fence`]).
    fence: Fence,
}

fn now_micro() -> MicroTime {
    MicroTime(Timestamp::now())
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

impl Elector {
    /// `client` must not pass `fence` (the Lease's own writes open it); the controller's
    /// clients should.
    pub fn new(client: Client, settings: LeaseSettings, fence: Fence) -> Self {
        fence.close();
        Elector {
            api: Api::namespaced(client, &settings.namespace),
            settings,
            observed: None,
            last_holder: None,
            fence,
        }
    }

    /// A candidate's attempt: takes the Lease when it is free or expired (or renews it when it
    /// is already ours). Sets the fence by its outcome ([`Elector::fenced`]).
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool, kube::Error> {
        let began = Instant::now();
        let held = self.attempt(false).await;
        self.fenced(began, held)
    }

    /// The leader's attempt: renews the Lease only if it is still ours. A Lease we would have
    /// to take again (released or expired while this process was frozen or cut off, perhaps
    /// after another leader came and went) is lost, not taken: the reconciles of this term
    /// planned from a world that has moved on, so the term must end and a new one start with
    /// fresh caches.
    pub async fn renew(&mut self) -> Result<bool, kube::Error> {
        let began = Instant::now();
        let held = self.attempt(true).await;
        self.fenced(began, held)
    }

    /// Sets the fence by an attempt's outcome: open for the renew deadline from when the
    /// attempt began when we hold the Lease, closed when we don't. An error leaves it as it was
    /// (it closes by itself once the last renewal is too old).
    fn fenced(
        &mut self,
        began: Instant,
        held: Result<bool, kube::Error>,
    ) -> Result<bool, kube::Error> {
        match held {
            Ok(true) => self.fence.hold_until(began + self.settings.renew_deadline),
            Ok(false) => self.fence.close(),
            Err(_) => {}
        }
        held
    }

    pub fn settings(&self) -> &LeaseSettings {
        &self.settings
    }

    fn duration_secs(&self) -> i32 {
        i32::try_from(self.settings.lease_duration.as_secs().max(1)).unwrap_or(i32::MAX)
    }

    /// One attempt (client-go's `tryAcquireOrRenew`): whether we hold the Lease afterwards.
    /// `renewing`: only renew; never create or take over.
    async fn attempt(&mut self, renewing: bool) -> Result<bool, kube::Error> {
        let me = self.settings.identity.clone();
        let name = self.settings.name.clone();
        let Some(mut lease) = self.api.get_opt(&name).await? else {
            if renewing {
                warn!(lease = %name, "the lease is gone: leadership lost");
                return Ok(false);
            }
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(self.settings.namespace.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(me),
                    lease_duration_seconds: Some(self.duration_secs()),
                    acquire_time: Some(now_micro()),
                    renew_time: Some(now_micro()),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(e) if is_conflict(&e) => Ok(false),
                Err(e) => Err(e),
            };
        };
        let rv = lease.resource_version().unwrap_or_default();
        let seen_at = match &self.observed {
            Some((old, at)) if *old == rv => *at,
            _ => Instant::now(),
        };
        self.observed = Some((rv, seen_at));
        let view = LeaseView::of(&lease, self.settings.lease_duration);
        let decision = decide(Some(&view), &me, seen_at.elapsed());
        let spec = lease.spec.get_or_insert_with(Default::default);
        match decision {
            Decision::Follow { holder } => {
                if self.last_holder.as_deref() != Some(holder.as_str()) {
                    info!(lease = %name, %holder, "another process is the leader; standing by");
                    self.last_holder = Some(holder);
                }
                return Ok(false);
            }
            Decision::Renew => {
                spec.renew_time = Some(now_micro());
                spec.lease_duration_seconds = Some(self.duration_secs());
            }
            Decision::TakeOver | Decision::Create if renewing => {
                warn!(lease = %name, holder = ?view.holder, "the lease is no longer ours to renew: leadership lost");
                return Ok(false);
            }
            Decision::TakeOver | Decision::Create => {
                info!(lease = %name, previous = ?view.holder, "taking over the lease");
                spec.holder_identity = Some(me.clone());
                spec.acquire_time = Some(now_micro());
                spec.renew_time = Some(now_micro());
                spec.lease_duration_seconds = Some(self.duration_secs());
                spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            }
        }
        match self
            .api
            .replace(&name, &PostParams::default(), &lease)
            .await
        {
            Ok(updated) => {
                self.observed = updated.resource_version().map(|rv| (rv, Instant::now()));
                self.last_holder = Some(me);
                Ok(true)
            }
            Err(e) if is_conflict(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Gives the Lease up if we hold it: clears the holder so a standby takes over at its next
    /// retry rather than after the lease duration.
    pub async fn release(&mut self) -> Result<(), kube::Error> {
        self.fence.close();
        let Some(mut lease) = self.api.get_opt(&self.settings.name).await? else {
            return Ok(());
        };
        let spec = lease.spec.get_or_insert_with(Default::default);
        if spec.holder_identity.as_deref() != Some(self.settings.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(now_micro());
        self.api
            .replace(&self.settings.name, &PostParams::default(), &lease)
            .await?;
        info!(lease = %self.settings.name, "released the lease");
        Ok(())
    }
}

/// Keeps renewing until told to stop (`Ok`) or until leadership is lost (`Err(why)`).
async fn keep_renewing(
    elector: &mut Elector,
    health: &Health,
    stop: &CancellationToken,
) -> Result<(), String> {
    let s = elector.settings().clone();
    // Timed from when each successful attempt began, as the fence is; attempts start every
    // retry period from the previous start, so a slow answer does not push the next one back.
    let mut last_renew = Instant::now();
    let mut next = last_renew + s.retry_period;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = tokio::time::sleep_until(next.into()) => {}
        }
        let began = Instant::now();
        next = began + s.retry_period;
        health.beat(s.stall_allowance());
        let remaining = s.renew_deadline.saturating_sub(last_renew.elapsed());
        match tokio::time::timeout(remaining, elector.renew()).await {
            Ok(Ok(true)) => {
                last_renew = began;
                debug!(lease = %s.name, "renewed the lease");
            }
            Ok(Ok(false)) => {
                return Err("the lease is held by another process, or was lost meanwhile".into());
            }
            Ok(Err(e)) => {
                warn!(lease = %s.name, error = %e, "could not renew the lease");
                if last_renew.elapsed() >= s.renew_deadline {
                    return Err(format!(
                        "could not renew the lease within {:?}: {e}",
                        s.renew_deadline
                    ));
                }
            }
            Err(_) => {
                return Err(format!(
                    "could not renew the lease within {:?}",
                    s.renew_deadline
                ));
            }
        }
    }
}

/// How long each step of the hand-off at shutdown may take: the renewal in flight to stop, then
/// the release. Twice this fits in the 10 s the chart leaves after the shutdown deadline.
const HANDOFF_STEP: Duration = Duration::from_secs(3);

/// Stops renewing and gives the lease up, so a standby takes over at once rather than after the
/// lease duration; each step bounded by [`HANDOFF_STEP`], so a slow API server cannot keep the
/// process past its grace period (then the lease simply expires).
async fn hand_off(
    mut renewal: tokio::task::JoinHandle<(Elector, Result<(), String>)>,
    stop_renewing: &CancellationToken,
    metrics: &Metrics,
) {
    stop_renewing.cancel();
    metrics.set_leader(false);
    let mut elector = match tokio::time::timeout(HANDOFF_STEP, &mut renewal).await {
        Ok(Ok((elector, _))) => elector,
        Ok(Err(e)) => {
            warn!(error = %e, "lease renewal task failed: the lease is not released");
            return;
        }
        Err(_) => {
            renewal.abort();
            warn!("a lease renewal is still in flight: the lease is not released, it expires");
            return;
        }
    };
    match tokio::time::timeout(HANDOFF_STEP, elector.release()).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => warn!(error = %err, "could not release the lease"),
        Err(_) => warn!("could not release the lease: the API server did not answer"),
    }
}

/// Runs `lead` only while this process holds the Lease, until `shutdown`.
///
/// `lead` gets a token that is cancelled at shutdown and must then stop gracefully (finish
/// in-flight work) and return; after it returns the Lease is released. When leadership is lost
/// instead, the future `lead` returned is dropped at once and the process goes back to standing
/// by.
pub async fn run_elected<F, Fut>(
    mut elector: Elector,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    shutdown_deadline: Duration,
    mut lead: F,
) -> anyhow::Result<()>
where
    F: FnMut(CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let s = elector.settings().clone();
    info!(lease = %format!("{}/{}", s.namespace, s.name), identity = %s.identity, "leader election: standing for the lease");
    loop {
        // Candidate.
        loop {
            health.beat(s.stall_allowance());
            if shutdown.is_cancelled() {
                return Ok(());
            }
            match tokio::time::timeout(s.renew_deadline, elector.try_acquire_or_renew()).await {
                Ok(Ok(true)) => break,
                Ok(Ok(false)) => {}
                Ok(Err(e)) => {
                    warn!(error = %e, "leader election: could not read or take the lease")
                }
                Err(_) => warn!("leader election: the API server did not answer in time"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep(s.retry_period) => {}
            }
        }
        info!(identity = %s.identity, "became the leader: starting the controller");
        metrics.set_leader(true);

        // Leader: the controller runs as its own task-free future here; renewal runs beside it.
        let mut controller = Box::pin(lead(shutdown.clone()));
        let stop_renewing = CancellationToken::new();
        let renew_stop = stop_renewing.clone();
        let renew_health = health.clone();
        let renewal = tokio::spawn(async move {
            let outcome = keep_renewing(&mut elector, &renew_health, &renew_stop).await;
            (elector, outcome)
        });
        let mut renewal = renewal;
        // At shutdown the controller stops taking work and lets what is in flight finish, but
        // no longer than the deadline: then it is dropped (as a crash would, which the
        // reconcile is built for) so the lease is released before the pod is killed.
        let overdue = async {
            shutdown.cancelled().await;
            tokio::time::sleep(shutdown_deadline).await;
        };
        tokio::select! {
            () = overdue => {
                warn!(deadline = ?shutdown_deadline, "shutdown deadline passed: dropping the reconciles still in flight");
                drop(controller);
                hand_off(renewal, &stop_renewing, &metrics).await;
                return Ok(());
            }
            res = &mut controller => {
                hand_off(renewal, &stop_renewing, &metrics).await;
                return res;
            }
            joined = &mut renewal => {
                // Lost: stop writing now — drop the controller and every in-flight reconcile.
                drop(controller);
                metrics.set_leader(false);
                let (e, outcome) = joined?;
                e.fence.close();
                elector = e;
                error!(reason = %outcome.err().unwrap_or_default(), "leadership lost: stopped reconciling; standing by");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held_by(h: &str) -> LeaseView {
        LeaseView {
            holder: Some(h.into()),
            duration: Duration::from_secs(15),
        }
    }

    #[test]
    fn decisions() {
        let s = Duration::from_secs;
        let cases: Vec<(Option<LeaseView>, Duration, Decision)> = vec![
            (None, s(0), Decision::Create),
            (Some(held_by("me")), s(100), Decision::Renew),
            (
                Some(held_by("other")),
                s(14),
                Decision::Follow {
                    holder: "other".into(),
                },
            ),
            (Some(held_by("other")), s(15), Decision::TakeOver),
            (
                Some(LeaseView {
                    holder: None,
                    duration: s(1),
                }),
                s(0),
                Decision::TakeOver,
            ),
        ];
        for (lease, unchanged, expected) in &cases {
            assert_eq!(
                decide(lease.as_ref(), "me", *unchanged),
                *expected,
                "{lease:?} unchanged for {unchanged:?}"
            );
        }
        // An empty holder string is a released lease, as client-go writes it.
        let lease = Lease {
            spec: Some(LeaseSpec {
                holder_identity: Some(String::new()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            decide(Some(&LeaseView::of(&lease, s(15))), "me", s(0)),
            Decision::TakeOver
        );
    }

    #[test]
    fn timing_invariants_are_checked() {
        let ok = LeaseSettings {
            name: "l".into(),
            namespace: "n".into(),
            identity: "me".into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        };
        assert!(ok.validate().is_ok());
        let bad = LeaseSettings {
            renew_deadline: Duration::from_secs(15),
            ..ok.clone()
        };
        assert!(bad.validate().is_err());
        let bad = LeaseSettings {
            retry_period: Duration::from_secs(10),
            ..ok
        };
        assert!(bad.validate().is_err());
    }

    #[test]
    fn identities_differ_per_process_value() {
        assert_ne!(default_identity(), default_identity());
    }
}
