//! `workloadRef`: the Deployment's template resolved in place of the Rollout's, and what becomes
//! of the Deployment's own pods (`scaleDown`).

use k8s_openapi::api::apps::v1::Deployment;

use super::*;
use crate::api::WorkloadScaleDown;
use crate::plan::workload::{ObservedWorkload, SCALED_DOWN_FOR, WorkloadError, resolve, scale};

/// A basic canary naming Deployment `web` (its template inline, as the shell resolves it).
const BASIC: &str = r#"
apiVersion: aviary.dev/v1alpha1
kind: Rollout
metadata: {name: web, namespace: t, generation: 1, uid: u1}
spec:
  replicas: 4
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: "web:1"}]}
  workloadRef: {apiVersion: apps/v1, kind: Deployment, name: web, scaleDown: progressively}
  strategy:
    canary:
      canaryService: web-canary
      stableService: web-stable
      steps:
      - setWeight: 50
      - pause: {}
"#;

fn deployment(yaml: &str) -> Deployment {
    serde_yaml::from_str(yaml).expect("deployment yaml")
}

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: t, generation: 7}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web, tier: front}, annotations: {note: "1"}}
    spec: {containers: [{name: web, image: "web:9"}]}
"#;

/// The Rollout as a user writes it: no template, no selector.
fn referencing(extra: &str) -> Rollout {
    rollout(&format!(
        r#"
apiVersion: aviary.dev/v1alpha1
kind: Rollout
metadata: {{name: web, namespace: t}}
spec:
  workloadRef: {{apiVersion: apps/v1, kind: Deployment, name: web}}
  strategy:
    canary:
      steps: [{{setWeight: 50}}]
{extra}"#
    ))
}

#[test]
fn the_deployments_template_and_selector_become_the_rollouts() {
    let ro = referencing("");
    let (resolved, observed) = resolve(&ro, &deployment(DEPLOYMENT)).expect("resolves");
    let image = resolved
        .spec
        .template
        .spec
        .as_ref()
        .expect("pod spec")
        .containers[0]
        .image
        .clone();
    assert_eq!(image.as_deref(), Some("web:9"));
    assert_eq!(
        resolved.spec.selector.match_labels,
        Some(BTreeMap::from([("app".to_string(), "web".to_string())]))
    );
    assert_eq!(
        observed,
        ObservedWorkload {
            name: "web".into(),
            replicas: 3,
            generation: Some(7),
            scaled_down: false,
            original: None,
        }
    );
    // The hash is the template's: the same as an inline copy of it would have.
    let mut inline = ro.clone();
    inline.spec.template = deployment(DEPLOYMENT).spec.expect("spec").template;
    assert_eq!(
        rollout_template_hash(&resolved),
        rollout_template_hash(&inline)
    );
}

#[test]
fn the_rollouts_own_selector_is_kept_and_must_match_the_deployments_labels() {
    let narrower = rollout(
        r#"
apiVersion: aviary.dev/v1alpha1
kind: Rollout
metadata: {name: web, namespace: t}
spec:
  selector: {matchLabels: {app: web, tier: front}}
  workloadRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  strategy: {canary: {}}
"#,
    );
    let (resolved, _) = resolve(&narrower, &deployment(DEPLOYMENT)).expect("resolves");
    assert_eq!(
        resolved.spec.selector.match_labels.map(|m| m.len()),
        Some(2)
    );

    let other = rollout(
        r#"
apiVersion: aviary.dev/v1alpha1
kind: Rollout
metadata: {name: web, namespace: t}
spec:
  selector: {matchLabels: {app: api}}
  workloadRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  strategy: {canary: {}}
"#,
    );
    let err = resolve(&other, &deployment(DEPLOYMENT)).expect_err("mismatch");
    assert!(matches!(err, WorkloadError::SelectorMismatch { .. }));
    let text = err.to_string();
    assert!(
        text.contains("spec.selector.matchLabels") && text.contains("app=api"),
        "{text}"
    );
}

#[test]
fn a_role_key_the_deployments_template_has_is_refused_by_name() {
    let ro = referencing("      canaryMetadata: {labels: {tier: canary}}\n");
    let err = resolve(&ro, &deployment(DEPLOYMENT)).expect_err("clash");
    let text = err.to_string();
    assert!(
        text.contains("canary.canaryMetadata.labels") && text.contains("'tier'"),
        "{text}"
    );
    let ro = referencing("      stableMetadata: {annotations: {note: x}}\n");
    assert!(matches!(
        resolve(&ro, &deployment(DEPLOYMENT)),
        Err(WorkloadError::RoleKeyClash {
            map: "annotations",
            ..
        })
    ));
}

#[test]
fn the_mark_counts_only_when_it_names_this_rollout() {
    let mut dep = deployment(DEPLOYMENT);
    dep.metadata.annotations = Some(BTreeMap::from([(
        SCALED_DOWN_FOR.to_string(),
        "other".to_string(),
    )]));
    let (_, observed) = resolve(&referencing(""), &dep).expect("resolves");
    assert!(!observed.scaled_down);
    dep.metadata.annotations = Some(BTreeMap::from([(
        SCALED_DOWN_FOR.to_string(),
        "web".to_string(),
    )]));
    let (_, observed) = resolve(&referencing(""), &dep).expect("resolves");
    assert!(observed.scaled_down);
}

fn with_mode(mode: Option<WorkloadScaleDown>) -> Rollout {
    let mut ro = rollout(BASIC);
    if let Some(w) = ro.spec.workload_ref.as_mut() {
        w.scale_down = mode;
    }
    ro
}

fn dep(replicas: i32, scaled_down: bool) -> ObservedWorkload {
    ObservedWorkload {
        name: "web".into(),
        replicas,
        generation: Some(1),
        scaled_down,
        original: None,
    }
}

/// The size `scale` asks for (`None`: no write), and whether it marks.
fn asked(ro: &Rollout, w: &ObservedWorkload, healthy: bool, available: i32) -> Option<(i32, bool)> {
    scale(ro, w, healthy, available).map(|a| match a {
        Action::ScaleDeployment {
            replicas,
            mark_scaled_down,
            ..
        } => (replicas, mark_scaled_down),
        other => panic!("not a Deployment scale: {other:?}"),
    })
}

/// Mode, the Deployment's pods, marked, Healthy, the Rollout's available pods -> what is asked.
type Case = (
    Option<WorkloadScaleDown>,
    i32,
    bool,
    bool,
    i32,
    Option<(i32, bool)>,
);

#[test]
fn scale_down_modes_as_a_table() {
    use WorkloadScaleDown::*;
    let cases: &[Case] = &[
        (None, 3, false, true, 4, None),
        (Some(Never), 3, false, true, 4, None),
        (Some(OnSuccess), 3, false, false, 4, None),
        (Some(OnSuccess), 3, false, true, 4, Some((0, true))),
        (Some(OnSuccess), 0, true, true, 4, None),
        // Scaled to 0 by a human first: the mark is still written, once.
        (Some(OnSuccess), 0, false, true, 4, Some((0, true))),
        // Marked: the migration is over, the Deployment is its owner's (scaled up again to
        // leave the Rollout, as Argo documents): never sized by Aviary again.
        (Some(OnSuccess), 2, true, true, 4, None),
        (Some(Progressively), 4, true, true, 4, None),
        // Progressively: a pod given up for each of the Rollout's available ones...
        (Some(Progressively), 4, false, false, 1, Some((3, false))),
        (Some(Progressively), 3, false, false, 3, Some((1, false))),
        (Some(Progressively), 0, false, false, 9, None),
        (Some(Progressively), 1, false, true, 4, Some((0, true))),
        // ...nothing before the Rollout has one...
        (Some(Progressively), 4, false, false, 0, None),
        (Some(Progressively), 9, false, false, 0, None),
        // ...and never scaled up (an owner's 0, an HPA's size stay).
        (Some(Progressively), 1, false, false, 2, None),
        (Some(Progressively), 0, false, false, 1, None),
        (Some(Progressively), 9, false, false, 2, Some((2, false))),
        // The migration ended: an update under way never brings its pods back.
        (Some(Progressively), 0, true, false, 1, None),
    ];
    for (i, (mode, pods, marked, healthy, available, want)) in cases.iter().enumerate() {
        let ro = with_mode(*mode);
        assert_eq!(
            asked(&ro, &dep(*pods, *marked), *healthy, *available),
            *want,
            "case {i}: {mode:?}, Deployment {pods} (marked {marked}), Healthy {healthy}, {available} available"
        );
    }
}

/// The first progressive scale-down records the Deployment's size; pods lost by the Rollout
/// before it was Healthy are given back up to that size, never beyond (helper-44: they were
/// never given back).
#[test]
fn progressively_gives_pods_back_up_to_the_size_it_began_with() {
    let ro = with_mode(Some(WorkloadScaleDown::Progressively));
    let first = scale(&ro, &dep(4, false), false, 3);
    assert!(
        matches!(
            first,
            Some(Action::ScaleDeployment {
                replicas: 1,
                record_original: Some(4),
                ..
            })
        ),
        "{first:?}"
    );
    let recorded = ObservedWorkload {
        original: Some(4),
        ..dep(1, false)
    };
    // The Rollout's pods die: back to 3, then 4 when it has none, never 5.
    assert_eq!(asked(&ro, &recorded, false, 1), Some((3, false)));
    assert_eq!(asked(&ro, &recorded, false, 0), Some((4, false)));
    let small = ObservedWorkload {
        original: Some(2),
        ..dep(1, false)
    };
    assert_eq!(asked(&ro, &small, false, 0), Some((2, false)));
    // Later writes do not record it again.
    assert!(matches!(
        scale(&ro, &recorded, false, 0),
        Some(Action::ScaleDeployment {
            record_original: None,
            ..
        })
    ));

    let mut w = World::new(BASIC);
    w.workload = Some(dep(4, false));
    let hash = w.canary_hash();
    w.frozen.push(hash.clone());
    w.reconcile();
    let rs = w.rs.get_mut(&hash).expect("first ReplicaSet");
    (rs.available, rs.ready, rs.current) = (3, 3, 4);
    w.reconcile();
    assert_eq!(w.workload.as_ref().map(|d| d.replicas), Some(1));
    let rs = w.rs.get_mut(&hash).expect("first ReplicaSet");
    (rs.available, rs.ready, rs.current) = (1, 1, 4);
    w.run(5);
    assert_eq!(w.workload.as_ref().map(|d| d.replicas), Some(3));
}

#[test]
fn progressively_without_replicas_waits_for_healthy_as_argo() {
    let mut ro = with_mode(Some(WorkloadScaleDown::Progressively));
    ro.spec.replicas = None;
    // The Rollout's size (1 by default) says nothing of the Deployment's (an HPA's, say).
    assert_eq!(asked(&ro, &dep(10, false), false, 1), None);
    assert_eq!(asked(&ro, &dep(10, false), true, 1), Some((0, true)));
}

/// Argo's way back to a Deployment (docs/migrating.md): scale it up, wait, scale the Rollout to
/// 0. Once the migration is over the Deployment is its owner's: nothing scales it back down.
#[test]
fn the_way_back_to_the_deployment_keeps_its_pods() {
    let mut w = World::new(&BASIC.replace("progressively", "onsuccess"));
    w.workload = Some(dep(4, false));
    w.run_to_end(20);
    assert_eq!(
        w.workload.as_ref().map(|d| (d.replicas, d.scaled_down)),
        Some((0, true))
    );
    if let Some(d) = w.workload.as_mut() {
        d.replicas = 4;
    }
    w.run(5);
    w.ro.spec.replicas = Some(0);
    w.ro.metadata.generation = Some(2);
    w.run(10);
    assert_eq!(w.workload.as_ref().map(|d| d.replicas), Some(4));
}

/// A Deployment larger than the Rollout: the scale to 0 says capacity drops (a Warning).
#[test]
fn ending_a_larger_deployment_warns() {
    let mut w = World::new(&BASIC.replace("progressively", "onsuccess"));
    w.workload = Some(dep(10, false));
    w.run_to_end(20);
    assert!(
        w.events.iter().any(|e| e.kind == EventKind::Warning
            && e.message.contains("had 10 pods and the Rollout runs 4")),
        "{:?}",
        w.events
    );
}

#[test]
fn the_deployment_goes_only_as_the_rollouts_pods_come_and_last_after_the_services_move() {
    let mut w = World::new(BASIC);
    w.workload = Some(dep(4, false));
    let hash = w.canary_hash();
    // The first revision's pods are not up yet: the Deployment keeps all of its own.
    w.frozen.push(hash.clone());
    let p = w.reconcile();
    assert!(
        p.actions
            .iter()
            .all(|a| !matches!(a, Action::ScaleDeployment { .. })),
        "{:?}",
        p.actions
    );
    assert_eq!(p.status.workload_observed_generation.as_deref(), Some("1"));
    // Three of four up: the Deployment keeps one; no Service adopted yet.
    let rs = w.rs.get_mut(&hash).expect("first ReplicaSet");
    (rs.available, rs.ready, rs.current) = (3, 3, 4);
    w.reconcile();
    assert_eq!(w.workload.as_ref().map(|d| d.replicas), Some(1));
    assert!(w.switches.is_empty(), "{:?}", w.switches);
    // All four: the Services move to the revision, then the Deployment goes, marked.
    w.frozen.clear();
    let p = w.run(5);
    assert_eq!(p.status.phase, Some(RolloutPhase::Healthy));
    assert_eq!(
        w.workload.as_ref().map(|d| (d.replicas, d.scaled_down)),
        Some((0, true))
    );
    assert_eq!(w.switches.len(), 2, "{:?}", w.switches);
    assert!(
        w.switches
            .iter()
            .all(|(_, h, available)| *h == hash && *available == 4)
    );

    // An update: its canary pods are lost for a while, and the Deployment stays at 0.
    w.update_image("web:2");
    let canary = w.canary_hash();
    w.frozen.push(canary);
    w.run(5);
    assert_eq!(w.status().phase, Some(RolloutPhase::Progressing));
    let stable = w.rs.get_mut(&hash).expect("stable");
    stable.available = 1;
    w.frozen.push(hash);
    w.reconcile();
    assert_eq!(w.workload.as_ref().map(|d| d.replicas), Some(0));
}

/// Adopting a Service with no hash selector waits for the revision's ReplicaSet to be available
/// at its own size (a preview of one pod, a canary of one), not at the Rollout's: else the
/// Service keeps selecting every pod while the rollout pauses for a review of it, or while a
/// weight is routed to it (helper-42).
#[test]
fn a_service_without_a_hash_is_adopted_at_its_revisions_own_size() {
    let mut w = World::new(super::bluegreen::BLUE_GREEN);
    w.deploy_first();
    w.services.insert("web-preview".into(), None);
    w.update_image("web:2");
    let v2 = w.canary_hash();
    w.run(10);
    assert_eq!(w.services["web-preview"].as_deref(), Some(v2.as_str()));

    let mut w = World::new(ISTIO);
    w.deploy_first();
    w.services.insert("web-canary".into(), None);
    w.update_image("web:2");
    let v2 = w.canary_hash();
    for _ in 0..6 {
        w.reconcile();
        assert!(
            w.weight.unwrap_or(0) == 0 || w.services["web-canary"].as_deref() == Some(v2.as_str()),
            "weight {:?} on a canary Service that selects the stable's pods too",
            w.weight
        );
    }
    assert!(w.weight.unwrap_or(0) > 0);
}

/// A Deployment with annotations `pairs`, resolved for the Rollout `web`.
fn annotated(replicas: i32, pairs: &[(&str, &str)]) -> ObservedWorkload {
    let mut d = deployment(DEPLOYMENT);
    if let Some(spec) = d.spec.as_mut() {
        spec.replicas = Some(replicas);
    }
    d.metadata.annotations = Some(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    resolve(&referencing(""), &d).expect("resolves").1
}

/// helper-45: a negative recorded size (a hand edit) panicked every reconcile (`clamp` with
/// min > max); another Rollout's record, left beside its mark, scaled a retired Deployment up.
#[test]
fn a_record_that_is_not_this_migrations_is_ignored() {
    let ro = with_mode(Some(WorkloadScaleDown::Progressively));
    let negative = annotated(3, &[(crate::plan::workload::REPLICAS_BEFORE, "-1")]);
    assert_eq!(negative.original, None);
    // No panic: the size it has is the ceiling (4 − 1 = 3 is what it has).
    assert_eq!(asked(&ro, &negative, false, 1), None);
    let retired = annotated(
        0,
        &[
            (SCALED_DOWN_FOR, "other"),
            (crate::plan::workload::REPLICAS_BEFORE, "4"),
        ],
    );
    assert_eq!(retired.original, None);
    assert_eq!(
        asked(&ro, &retired, false, 0),
        None,
        "a retired Deployment scaled up"
    );
}

/// helper-45: with `replicaProgressThreshold`, the stable Service without a hash selector is
/// adopted to the canary only with every pod (the threshold is the canary Service's).
#[test]
fn the_stable_service_is_adopted_to_a_canary_only_with_every_pod() {
    let yaml = r#"
apiVersion: aviary.dev/v1alpha1
kind: Rollout
metadata: {name: web, namespace: t, generation: 1, uid: u1}
spec:
  replicas: 10
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: "web:1"}]}
  strategy:
    canary:
      canaryService: web-canary
      stableService: web-stable
      replicaProgressThreshold: {type: Percent, value: 70}
      steps:
      - setWeight: 100
      - pause: {}
"#;
    let mut w = World::new(yaml);
    w.deploy_first();
    w.services.insert("web-stable".into(), None);
    w.update_image("web:2");
    let canary = w.canary_hash();
    w.frozen.push(canary.clone());
    for _ in 0..20 {
        w.reconcile();
        if let Some(rs) = w.rs.get_mut(&canary) {
            let a = (rs.replicas - 2).max(0);
            (rs.available, rs.ready, rs.current) = (a, a, rs.replicas);
        }
        w.advance(5);
    }
    let early: Vec<_> = w
        .switches
        .iter()
        .filter(|(s, h, available)| s == "web-stable" && *h == canary && *available < 10)
        .collect();
    assert!(early.is_empty(), "{early:?}");
}
