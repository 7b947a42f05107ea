//! The simulated cluster the planner is driven against: ReplicaSets whose pods become available
//! after delays the scenario chooses and die when it says so, Services, the routing object's
//! weight and (in subset mode) its DestinationRule subsets, AnalysisRuns with the verdicts the
//! scenario gives them, and the Rollout as persisted. It applies the planner's actions the way
//! the controller's act stage does (in order, stopping at a failed write), then writes the
//! status with the controller's resourceVersion guard, and after every single write asks the
//! invariant checker whether that write broke something.

use std::collections::BTreeMap;

use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::api::{AnalysisPhase, Rollout, RolloutStatus};
use crate::plan::{
    Action, Observed, ObservedAnalysisRun, ObservedReplicaSet, ObservedService, Plan, plan,
    rollout_template_hash,
};

/// How traffic reaches the canary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Routing {
    /// No router: traffic follows pod counts (the basic canary).
    None,
    /// Istio host mode: the VirtualService splits between the canary and stable Services.
    Host,
    /// Istio subset mode: the VirtualService splits between two DestinationRule subsets whose
    /// hash labels the controller moves.
    Subset,
}

#[derive(Clone, Debug)]
pub struct Pod {
    /// When it becomes available.
    pub ready_at: Timestamp,
    /// Created by the reconcile under way: not available before that reconcile ends, whatever
    /// its delay. The planner never sees such a pod, and in a cluster the reconcile's next write
    /// comes milliseconds after the create, long before a pod is scheduled, started and ready.
    pub fresh: bool,
}

#[derive(Clone, Debug)]
pub struct SimReplicaSet {
    pub name: String,
    pub hash: String,
    pub replicas: i32,
    pub pods: Vec<Pod>,
    pub revision: Option<i64>,
    pub scale_down_at: Option<Timestamp>,
    pub scaled_at: Option<Timestamp>,
    /// Where the events that pick "the i-th ReplicaSet" find it: its template's Aviary 0.2 hash,
    /// the order the recorded regressions were found in (hashes changed to Argo's since).
    pub order: String,
    /// The role metadata its template and pods carry.
    pub pod_metadata: Option<crate::api::PodMetadata>,
}

impl SimReplicaSet {
    /// Available pods, never above `spec.replicas` (as the observer counts them).
    pub fn available(&self, now: Timestamp) -> i32 {
        let ready = self
            .pods
            .iter()
            .filter(|p| p.ready_at <= now && !p.fresh)
            .count() as i32;
        ready.min(self.replicas)
    }
}

/// One AnalysisRun, with what the simulation knows of how it ended.
#[derive(Clone, Debug)]
pub struct SimRun {
    pub run: ObservedAnalysisRun,
    /// Set when the controller terminated it: its phase then says Successful ("Run Terminated")
    /// as a real AnalysisRun does, but no measurement passed.
    pub terminated: bool,
    /// Set aside by the controller (`retire`): no longer observed.
    pub retired: bool,
    /// The reconcile that created it (see [`World::attempt_from`]).
    pub created_in: u64,
}

/// A destination of traffic: which revision it selects and what share it carries.
#[derive(Clone, Debug, PartialEq)]
pub struct Destination {
    pub role: &'static str,
    pub hash: Option<String>,
    pub weight: i32,
}

/// What the invariant checker is told about one write.
#[derive(Clone, Debug)]
pub struct Write<'a> {
    /// The write: an action, or `None` for the status write that ends a reconcile.
    pub action: Option<&'a Action>,
}

pub const CANARY_SVC: &str = "web-canary";
pub const STABLE_SVC: &str = "web-stable";
pub const ACTIVE_SVC: &str = "web-active";
pub const PREVIEW_SVC: &str = "web-preview";
/// The Deployment a `workloadRef` case names.
pub const DEPLOYMENT: &str = "web";

/// The Deployment of a `workloadRef` case: its pods are not modelled, only its size and mark.
#[derive(Clone, Debug, PartialEq)]
pub struct SimDeployment {
    pub replicas: i32,
    pub scaled_down: bool,
    /// Its size before the first progressive scale-down, once recorded.
    pub original: Option<i32>,
    /// Its size when the case began (what W1 caps it at).
    pub initial: i32,
}

#[derive(Clone, Debug)]
pub struct World {
    pub ro: Rollout,
    pub routing: Routing,
    pub rs: BTreeMap<String, SimReplicaSet>,
    pub services: BTreeMap<String, Option<String>>,
    /// The VirtualService's canary weight.
    pub weight: i32,
    /// DestinationRule subsets' hash labels (subset mode).
    pub canary_subset: Option<String>,
    pub stable_subset: Option<String>,
    pub runs: Vec<SimRun>,
    pub now: Timestamp,
    /// Pod readiness delays in seconds, taken in turn.
    pub delays: Vec<u8>,
    pub next_delay: usize,
    /// Bumped on every template change, steps change and retry: verdicts count only within one.
    /// Reconciles so far.
    pub reconciles: u64,
    /// The current attempt at the current revision began with this reconcile: the one whose
    /// status write first recorded a new template or new steps, or the one after a retry of an
    /// abort the controller had acted on. Verdicts count only from runs created since.
    pub attempt_from: u64,
    /// A new template or steps planned for but not recorded yet, and the first reconcile that
    /// planned for it.
    #[allow(clippy::type_complexity)]
    pub pending_attempt: Option<((Option<String>, Option<String>), u64)>,
    /// Whether a human promoted (or unpaused) during the current attempt.
    pub human_promoted: bool,
    /// The next reconcile's write at this index fails (a conflict); later ones are not sent.
    pub fail_at: Option<usize>,
    /// The next reconcile's status write is refused (someone wrote the Rollout meanwhile).
    pub status_conflict: bool,
    /// Every weight ever written, in order.
    pub weights_written: Vec<i32>,
    /// The ReplicaSets as observed at the previous reconcile: a lagging watch cache.
    pub stale_rs: Option<Vec<ObservedReplicaSet>>,
    /// ReplicaSets the last reconcile created or scaled (their write's answer is read back).
    pub scaled_last: Vec<String>,
    /// Events the planner emitted, by reason.
    pub event_reasons: Vec<&'static str>,
    pub first_deploy_done: bool,
    /// Blue-green: when the active Service last moved away from each revision, and whether
    /// that was an abort moving it off the aborted revision.
    pub active_left_at: BTreeMap<String, (Timestamp, bool)>,
    /// When a reconcile first planned the current abort (cleared once a status write persists
    /// no abort).
    pub abort_from: Option<Timestamp>,
    /// Whether the reconcile being applied planned an abort.
    pub planning_abort: bool,
    /// Blue-green: when the `BlueGreenPause` of the current attempt began, as persisted.
    pub bg_pause_start: Option<Timestamp>,
    /// `workloadRef`'s Deployment, when the case has one.
    pub deployment: Option<SimDeployment>,
}

impl World {
    pub fn new(ro: Rollout, routing: Routing, delays: Vec<u8>) -> Self {
        let names = match ro.spec.blue_green() {
            Some(bg) => {
                let mut n = vec![bg.active_service.clone()];
                n.extend(bg.preview_service.clone());
                n
            }
            None => vec![CANARY_SVC.to_string(), STABLE_SVC.to_string()],
        };
        let services = names.into_iter().map(|s| (s, None)).collect();
        World {
            ro,
            routing,
            rs: BTreeMap::new(),
            services,
            weight: 0,
            canary_subset: None,
            stable_subset: None,
            runs: vec![],
            now: Timestamp::from_second(1_700_000_000).unwrap_or(Timestamp::UNIX_EPOCH),
            delays: if delays.is_empty() { vec![0] } else { delays },
            next_delay: 0,
            reconciles: 0,
            attempt_from: 0,
            pending_attempt: None,
            human_promoted: false,
            fail_at: None,
            status_conflict: false,
            weights_written: vec![],
            stale_rs: None,
            scaled_last: vec![],
            event_reasons: vec![],
            first_deploy_done: false,
            active_left_at: BTreeMap::new(),
            abort_from: None,
            planning_abort: false,
            bg_pause_start: None,
            deployment: None,
        }
    }

    /// The total traffic weight (`maxTrafficWeight`, else 100).
    pub fn total(&self) -> i32 {
        self.ro.spec.total_weight()
    }

    pub fn status(&self) -> RolloutStatus {
        self.ro.status.clone().unwrap_or_default()
    }

    pub fn replicas(&self) -> i32 {
        self.ro.spec.replicas().max(0)
    }

    pub fn current_hash(&self) -> String {
        rollout_template_hash(&self.ro)
    }

    pub fn advance(&mut self, secs: i64) {
        self.now = self
            .now
            .checked_add(SignedDuration::from_secs(secs))
            .unwrap_or(self.now);
    }

    fn delay(&mut self) -> i64 {
        let d = self.delays[self.next_delay % self.delays.len()];
        self.next_delay += 1;
        i64::from(d)
    }

    fn new_pod(&mut self) -> Pod {
        let d = self.delay();
        Pod {
            ready_at: self
                .now
                .checked_add(SignedDuration::from_secs(d))
                .unwrap_or(self.now),
            fresh: true,
        }
    }

    pub fn available(&self, hash: &str) -> i32 {
        self.rs
            .get(hash)
            .map(|r| r.available(self.now))
            .unwrap_or(0)
    }

    fn observed_rs(&self) -> Vec<ObservedReplicaSet> {
        self.rs
            .values()
            .map(|r| {
                let available = r.available(self.now);
                ObservedReplicaSet {
                    name: r.name.clone(),
                    hash: r.hash.clone(),
                    replicas: r.replicas,
                    available,
                    ready: available,
                    current: r.pods.len() as i32,
                    revision: r.revision,
                    scale_down_at: r.scale_down_at,
                    scaled_at: r.scaled_at,
                    pod_metadata: crate::plan::pod_metadata::Recorded {
                        applied: r.pod_metadata.clone(),
                        pending: false,
                    },
                }
            })
            .collect()
    }

    pub fn observed(&self) -> Observed<'_> {
        let replica_sets = match &self.stale_rs {
            // A lagging watch, except for what our own creates and scale writes returned (the
            // controller's ReplicaSet cache overlays them until the watch catches up).
            Some(stale) => {
                let now = self.observed_rs();
                let ours = |n: &&ObservedReplicaSet| self.scaled_last.contains(&n.name);
                let mut seen: Vec<ObservedReplicaSet> = stale
                    .iter()
                    .map(|old| {
                        now.iter()
                            .filter(ours)
                            .find(|n| n.name == old.name)
                            .cloned()
                            .unwrap_or_else(|| old.clone())
                    })
                    .collect();
                let created: Vec<ObservedReplicaSet> = now
                    .iter()
                    .filter(ours)
                    .filter(|n| !stale.iter().any(|o| o.name == n.name))
                    .cloned()
                    .collect();
                seen.extend(created);
                seen.sort_by(|a, b| a.name.cmp(&b.name));
                seen
            }
            None => self.observed_rs(),
        };
        Observed {
            rollout: &self.ro,
            replica_sets,
            services: self
                .services
                .iter()
                .map(|(name, hash)| ObservedService {
                    name: name.clone(),
                    hash: hash.clone(),
                })
                .collect(),
            current_weight: (self.routing != Routing::None).then_some(self.weight),
            subset_hashes: (self.routing == Routing::Subset).then(|| crate::plan::SubsetHashes {
                canary: self.canary_subset.clone(),
                stable: self.stable_subset.clone(),
            }),
            analysis_runs: self
                .runs
                .iter()
                .filter(|r| !r.retired)
                .map(|r| r.run.clone())
                .collect(),
            analysis_run_history: self
                .runs
                .iter()
                .map(|r| crate::plan::AnalysisRunRecord {
                    name: r.run.name.clone(),
                    hash: Some(r.run.hash.clone()),
                    phase: r.run.phase,
                    retired: r.retired,
                })
                .collect(),
            pods: None,
            workload: self
                .deployment
                .as_ref()
                .map(|d| crate::plan::workload::ObservedWorkload {
                    name: DEPLOYMENT.to_string(),
                    replicas: d.replicas,
                    generation: Some(1),
                    scaled_down: d.scaled_down,
                    original: d.original,
                }),
            now: self.now,
        }
    }

    /// Where traffic goes now: the canary and stable destinations with their shares. Without a
    /// router, none (traffic follows pods; I6 covers that case).
    pub fn destinations(&self) -> Vec<Destination> {
        let (canary, stable) = match self.routing {
            Routing::None => return vec![],
            Routing::Host => (
                self.services.get(CANARY_SVC).cloned().flatten(),
                self.services.get(STABLE_SVC).cloned().flatten(),
            ),
            Routing::Subset => (self.canary_subset.clone(), self.stable_subset.clone()),
        };
        vec![
            Destination {
                role: "canary",
                hash: canary,
                weight: self.weight,
            },
            Destination {
                role: "stable",
                hash: stable,
                weight: self.total() - self.weight,
            },
        ]
    }

    /// One reconcile as the controller runs it: plan from what is observed, apply the actions
    /// in order (stopping at an injected failure), then write the status under the
    /// resourceVersion guard. `check` is called after every write with the world before it.
    pub fn reconcile(
        &mut self,
        check: &mut dyn FnMut(&World, &World, &Write<'_>) -> Result<(), String>,
    ) -> Result<Plan, String> {
        let planned = self.reconcile_writes(check);
        for p in self.rs.values_mut().flat_map(|rs| rs.pods.iter_mut()) {
            p.fresh = false;
        }
        planned
    }

    fn reconcile_writes(
        &mut self,
        check: &mut dyn FnMut(&World, &World, &Write<'_>) -> Result<(), String>,
    ) -> Result<Plan, String> {
        self.reconciles += 1;
        let persisted = self.status();
        let planned = plan(&self.observed());
        let key = |s: &RolloutStatus| (s.current_pod_hash.clone(), s.current_step_hash.clone());
        // The first reconcile that planned for a new template or steps starts the attempt,
        // once a status write records it (runs it created count from there).
        if key(&planned.status) != key(&persisted)
            && self.pending_attempt.as_ref().map(|p| &p.0) != Some(&key(&planned.status))
        {
            self.pending_attempt = Some((key(&planned.status), self.reconciles));
        }
        self.planning_abort = planned.status.abort == Some(true);
        if planned.status.abort == Some(true) && self.abort_from.is_none() {
            self.abort_from = Some(self.now);
        }
        let fail_at = self.fail_at.take();
        let stale = self.stale_rs.take().is_some();
        self.scaled_last.clear();
        let mut all_applied = true;
        for (i, action) in planned.actions.iter().enumerate() {
            if fail_at == Some(i) {
                all_applied = false;
                break;
            }
            if let Action::ScaleReplicaSet { name, .. } = action
                && !self.rs.values().any(|r| &r.name == name)
            {
                // A patch of a ReplicaSet that is gone: 404, the reconcile stops.
                all_applied = false;
                break;
            }
            if let (true, Action::CreateReplicaSet { hash, .. }) = (stale, action)
                && self.rs.contains_key(hash)
            {
                // act meets a 409 for a ReplicaSet the cache had not shown yet: it exists and
                // is ours, which is what was wanted.
                continue;
            }
            if let (
                Routing::Subset,
                Action::SetWeight {
                    weight,
                    canary_hash,
                    stable_hash,
                },
            ) = (self.routing, action)
            {
                // act writes the DestinationRule's subsets, then the VirtualService's weight:
                // two writes, each checked.
                let before = self.clone();
                self.canary_subset = Some(canary_hash.clone());
                self.stable_subset = Some(stable_hash.clone());
                let subsets_only = Action::SetWeight {
                    weight: before.weight,
                    canary_hash: canary_hash.clone(),
                    stable_hash: stable_hash.clone(),
                };
                check(
                    &before,
                    self,
                    &Write {
                        action: Some(&subsets_only),
                    },
                )?;
                let _ = weight;
            }
            let before = self.clone();
            self.apply(action)?;
            check(
                &before,
                self,
                &Write {
                    action: Some(action),
                },
            )?;
        }
        if all_applied && !std::mem::take(&mut self.status_conflict) {
            let before = self.clone();
            if key(&planned.status) != key(&persisted) {
                self.attempt_from = match self.pending_attempt.take() {
                    Some((k, first)) if k == key(&planned.status) => first,
                    _ => self.reconciles,
                };
                self.human_promoted = false;
                self.bg_pause_start = None;
            }
            let own_full_promotion = (planned.status.promote_full == Some(true)
                && persisted.promote_full != Some(true))
                || planned
                    .events
                    .iter()
                    .any(|e| e.message.contains("rollbackWindow"));
            if own_full_promotion {
                // No user asked (their `promote --full` is on the persisted status): the
                // planner's own (persisted, or acted on at once), allowed only for a rollback
                // inside `rollbackWindow` — the spec author's standing decision, which waives
                // the analysis as a human's would.
                self.rollback_in_window(&planned.status, &persisted)?;
                self.human_promoted = true;
            }
            self.ro.status = Some(planned.status.clone());
            if planned.status.abort != Some(true) {
                self.abort_from = None;
            }
            if self.bg_pause_start.is_none() {
                self.bg_pause_start = planned
                    .status
                    .pause_conditions
                    .iter()
                    .find(|c| c.reason == crate::api::PauseReason::BlueGreenPause)
                    .map(|c| c.start_time.0);
            }
            self.event_reasons
                .extend(planned.events.iter().map(|e| e.reason));
            if planned.status.phase == Some(crate::api::RolloutPhase::Healthy) {
                self.first_deploy_done = true;
            }
            check(&before, self, &Write { action: None })?;
        }
        Ok(planned)
    }

    fn apply(&mut self, a: &Action) -> Result<(), String> {
        match a {
            Action::CreateReplicaSet {
                hash,
                replicas,
                revision,
            } => {
                if self.rs.contains_key(hash) {
                    return Err(format!("created ReplicaSet {hash}, which exists"));
                }
                let pods = (0..*replicas).map(|_| self.new_pod()).collect();
                let collision = self.ro.status.as_ref().and_then(|s| s.collision_count);
                let order =
                    if crate::plan::pod_template_hash(&self.ro.spec.template, collision) == *hash {
                        crate::plan::legacy_pod_template_hash(&self.ro.spec.template, collision)
                    } else {
                        hash.clone()
                    };
                self.active_left_at.remove(hash);
                self.scaled_last.push(format!("web-{hash}"));
                // act builds the template with its role's metadata, as of the persisted status.
                let pod_metadata = crate::plan::pod_metadata::at_creation(&self.ro, hash).cloned();
                self.rs.insert(
                    hash.clone(),
                    SimReplicaSet {
                        name: format!("web-{hash}"),
                        hash: hash.clone(),
                        replicas: *replicas,
                        pods,
                        revision: Some(*revision),
                        scale_down_at: None,
                        scaled_at: Some(self.now),
                        order,
                        pod_metadata,
                    },
                );
            }
            Action::ScaleReplicaSet {
                name,
                replicas,
                scale_down_at,
            } => {
                let Some(hash) = self
                    .rs
                    .values()
                    .find(|r| &r.name == name)
                    .map(|r| r.hash.clone())
                else {
                    return Ok(()); // (stopped before: see the loop over the actions)
                };
                let mut extra = vec![];
                let have = self.rs.get(&hash).map(|r| r.pods.len()).unwrap_or(0) as i32;
                for _ in have..*replicas {
                    extra.push(self.new_pod());
                }
                let now = self.now;
                self.scaled_last.push(name.clone());
                if let Some(rs) = self.rs.get_mut(&hash) {
                    rs.replicas = *replicas;
                    rs.scaled_at = Some(now);
                    rs.pods.extend(extra);
                    // The ReplicaSet controller removes pods that are not ready first.
                    rs.pods.sort_by_key(|p| (p.fresh, p.ready_at));
                    rs.pods.truncate(rs.replicas.max(0) as usize);
                    if let Some(at) = scale_down_at {
                        rs.scale_down_at = *at;
                    }
                }
            }
            Action::SwitchService { service, hash } => {
                let old = self.services.insert(service.clone(), Some(hash.clone()));
                let active = self.ro.spec.blue_green().map(|b| b.active_service.as_str());
                if let (Some(Some(old)), Some(active)) = (old, active)
                    && active == service
                    && old != *hash
                    && self.rs.get(&old).is_some_and(|rs| {
                        rs.pods.iter().any(|p| p.ready_at <= self.now && !p.fresh)
                    })
                {
                    // (Traffic that reached no pod — a selector on a revision without pods, put
                    // there by someone else — leaves nothing to drain.)
                    // An abort planned (persisted or not) moving traffic off the aborted one.
                    let aborted = self.planning_abort && old == self.current_hash();
                    self.active_left_at.insert(old, (self.now, aborted));
                }
            }
            Action::SetWeight {
                weight,
                canary_hash,
                stable_hash,
            } => {
                if self.routing == Routing::Subset {
                    // act writes the subset hashes first, then the weight.
                    self.canary_subset = Some(canary_hash.clone());
                    self.stable_subset = Some(stable_hash.clone());
                }
                if self.weight != *weight {
                    self.weight = *weight;
                    self.weights_written.push(*weight);
                }
            }
            Action::CreateAnalysisRun { kind, hash } => {
                // Numbered past every run left: deleted runs (history limits) free no number.
                let n = self
                    .runs
                    .iter()
                    .filter_map(|r| r.run.name.rsplit('-').next()?.parse::<usize>().ok())
                    .max()
                    .unwrap_or(0)
                    + 1;
                self.runs.push(SimRun {
                    run: ObservedAnalysisRun {
                        name: format!("web-{hash}-{n}"),
                        kind: *kind,
                        hash: hash.clone(),
                        phase: AnalysisPhase::Running,
                        message: None,
                        // Labelled with the steps they were made for, as the controller does.
                        steps_hash: matches!(
                            kind,
                            crate::plan::AnalysisKind::Step(_)
                                | crate::plan::AnalysisKind::Background
                        )
                        .then(|| crate::plan::hash::hash_of(&self.ro.spec.steps())),
                    },
                    terminated: false,
                    retired: false,
                    created_in: self.reconciles,
                });
            }
            Action::TerminateAnalysisRun { name, retire } => {
                if let Some(r) = self.runs.iter_mut().find(|r| &r.run.name == name) {
                    if !r.run.phase.is_completed() {
                        // A real AnalysisRun ends "Successful (Run Terminated)".
                        r.run.phase = AnalysisPhase::Successful;
                        r.run.message = Some("Run Terminated".into());
                        r.terminated = true;
                    }
                    if *retire {
                        r.retired = true;
                    }
                }
            }
            Action::DeleteAnalysisRun { name } => {
                if self
                    .runs
                    .iter()
                    .any(|r| &r.run.name == name && !r.run.phase.is_completed())
                {
                    return Err(format!("deleted AnalysisRun {name} while it runs"));
                }
                self.runs.retain(|r| &r.run.name != name);
            }
            Action::EvictPod { .. } => return Err("no restart was asked for".into()),
            Action::ScaleDeployment {
                name,
                replicas,
                mark_scaled_down,
                record_original,
            } => {
                let r = self.replicas();
                // What serves: the Service production traffic goes through, and its pods.
                let serving = match self.ro.spec.blue_green() {
                    Some(_) => ACTIVE_SVC,
                    None => STABLE_SVC,
                };
                let serving = self.services.get(serving).cloned().flatten();
                let serving_pods = serving.as_deref().map_or(0, |h| self.available(h));
                let available: i32 = self.rs.values().map(|rs| rs.available(self.now)).sum();
                let Some(d) = self.deployment.as_mut() else {
                    return Err(format!(
                        "scaled Deployment {name}, which no workloadRef names"
                    ));
                };
                // W1: the Deployment is never scaled above the size it had when the migration
                // began (an owner's 0 stays 0), nor touched at all once its migration ended (its
                // pods would run the newest template, outside every Service).
                if *replicas > d.initial || d.scaled_down {
                    return Err(format!(
                        "W1: scaled Deployment {name} from {} to {replicas} (it began at {}; migration ended: {})",
                        d.replicas, d.initial, d.scaled_down
                    ));
                }
                // W2: its pods go only as the Rollout's can take their place: at the end, once
                // the Service selects a revision with every pod; before, never below what the
                // Rollout still lacks.
                let covered = if *mark_scaled_down {
                    serving_pods >= r
                } else {
                    replicas + available >= r
                };
                if *replicas < d.replicas && !covered {
                    return Err(format!(
                        "W2: scaled Deployment {name} from {} to {replicas} with {available} of {r} Rollout pods available (the Service's revision {serving:?} has {serving_pods})",
                        d.replicas
                    ));
                }
                d.replicas = *replicas;
                d.scaled_down |= *mark_scaled_down;
                d.original = d.original.or(*record_original);
            }
            Action::SyncPodMetadata { name, metadata } => {
                let Some(rs) = self.rs.values_mut().find(|r| &r.name == name) else {
                    return Err(format!("synced the pod metadata of {name}, which is gone"));
                };
                rs.pod_metadata = metadata.clone();
            }
            Action::DeleteReplicaSet { name } => {
                if let Some(rs) = self.rs.values().find(|r| &r.name == name)
                    && (rs.replicas != 0 || !rs.pods.is_empty())
                {
                    return Err(format!("deleted ReplicaSet {name} with pods"));
                }
                self.rs.retain(|_, r| &r.name != name);
            }
        }
        Ok(())
    }

    /// A one-line picture of the world, for failure messages.
    pub fn describe(&self) -> String {
        let rs: Vec<String> = self
            .rs
            .values()
            .map(|r| format!("{}={}/{}", r.hash, r.available(self.now), r.replicas))
            .collect();
        format!(
            "template {}, ReplicaSets (available/replicas) [{}], Services {:?}, weight {}, subsets {:?}/{:?}",
            self.current_hash(),
            rs.join(", "),
            self.services,
            self.weight,
            self.canary_subset,
            self.stable_subset
        )
    }

    // ---- what happens to the cluster besides the controller --------------------------------

    /// Checks a promotion the planner decided itself: back to an earlier revision than the stable
    /// one, with fewer than `rollbackWindow.revisions` revisions created between them.
    fn rollback_in_window(
        &self,
        planned: &RolloutStatus,
        persisted: &RolloutStatus,
    ) -> Result<(), String> {
        let revision = |h: Option<&String>| h.and_then(|h| self.rs.get(h)).and_then(|r| r.revision);
        let to = revision(planned.current_pod_hash.as_ref());
        let from = revision(persisted.stable_rs.as_ref());
        let window = self
            .ro
            .spec
            .rollback_window
            .as_ref()
            .and_then(|w| w.revisions)
            .unwrap_or(0);
        if let (Some(to), Some(from)) = (to, from) {
            let between = self
                .rs
                .values()
                .filter_map(|r| r.revision)
                .filter(|r| *r > to && *r < from)
                .count();
            if to < from && (between as i64) < i64::from(window) {
                return Ok(());
            }
        }
        Err(format!(
            "I3: the planner set promoteFull itself outside rollbackWindow ({window}): revision {to:?} from stable revision {from:?}"
        ))
    }

    /// The hash of the `i`-th ReplicaSet (modulo their number), by [`SimReplicaSet::order`].
    fn nth_hash(&self, i: usize) -> Option<String> {
        let mut sets: Vec<&SimReplicaSet> = self.rs.values().collect();
        sets.sort_by(|a, b| a.order.cmp(&b.order));
        sets.get(i % sets.len().max(1)).map(|r| r.hash.clone())
    }

    /// A pod of the `i`-th ReplicaSet dies; its ReplicaSet replaces it.
    pub fn kill_pod(&mut self, i: usize, j: usize) {
        let Some(hash) = self.nth_hash(i) else {
            return;
        };
        let replacement = Pod {
            // Between reconciles: it counts once its delay has passed.
            fresh: false,
            ..self.new_pod()
        };
        if let Some(rs) = self.rs.get_mut(&hash)
            && !rs.pods.is_empty()
        {
            let k = j % rs.pods.len();
            rs.pods[k] = replacement;
        }
    }

    /// Someone else edits what the Rollout steers (a GitOps sync, a hand edit): the weight, a
    /// Service's selector, or a DestinationRule subset, set to the `i`-th ReplicaSet's hash or,
    /// for the weight, to `i` % 101. The controller must put it back; the edit itself is not
    /// the controller's to answer for.
    pub fn external_edit(&mut self, what: u8, i: u8) {
        let hash = self.nth_hash(usize::from(i));
        match what % 4 {
            0 if self.routing != Routing::None => {
                self.weight = (i32::from(i) % 101) * self.total() / 100;
            }
            1 => {
                let names: Vec<String> = self.services.keys().cloned().collect();
                if let Some(name) = names.get(usize::from(i) % names.len().max(1)) {
                    self.services.insert(name.clone(), hash);
                }
            }
            2 if self.routing == Routing::Subset => self.stable_subset = hash,
            3 if self.routing == Routing::Subset => self.canary_subset = hash,
            _ => {}
        }
    }

    /// Someone deletes the `i`-th ReplicaSet (its pods go with it).
    pub fn delete_rs(&mut self, i: usize) {
        if let Some(hash) = self.nth_hash(i) {
            self.rs.remove(&hash);
            self.active_left_at.remove(&hash);
        }
    }

    /// The analysis controller gives the `i`-th running run of this attempt a verdict.
    pub fn verdict(&mut self, i: usize, phase: AnalysisPhase) {
        let running: Vec<usize> = self
            .runs
            .iter()
            .enumerate()
            .filter(|(_, r)| !r.retired && !r.run.phase.is_completed())
            .map(|(k, _)| k)
            .collect();
        if running.is_empty() {
            return;
        }
        let k = running[i % running.len()];
        self.runs[k].run.phase = phase;
        self.runs[k].run.message = Some(format!("verdict {}", phase.as_str()));
    }

    /// Every pod becomes available now.
    pub fn all_ready(&mut self) {
        let now = self.now;
        for rs in self.rs.values_mut() {
            for p in &mut rs.pods {
                p.ready_at = p.ready_at.min(now);
            }
        }
    }
}
