//! The traffic simulator: every `tick`, reads the Rollout, the weight its routing objects show
//! (or, without a router, its replica split; for blue-green, its active and preview Services)
//! and the image each Service's pods run, and tells the exporter how many requests per second
//! each Service/version receives, with the error rate and latency configured for that image.
//!
//! Series are labelled `service=<Kubernetes Service name>` (like a mesh's destination service)
//! and `version=<image>`, so an AnalysisTemplate given the canary Service's name measures the
//! canary alone.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aviary::api::Rollout;
use aviary::api::wire::{POD_TEMPLATE_HASH_LABEL, ROLLOUT_LABEL};
use aviary::traffic::{RouteTarget, current_weight, routers_for};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};

use crate::exporter::{Exporter, Traffic};

/// How requests to one image behave.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Behaviour {
    pub error_rate: f64,
    pub latency: f64,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            error_rate: 0.0,
            latency: 0.02,
        }
    }
}

/// What the simulator does; shared so a test can change behaviours while it runs.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub namespace: String,
    pub rollout: String,
    /// Total requests per second across the rollout's Services.
    pub rps: f64,
    /// Behaviour per image; images not listed behave as `default`.
    pub behaviours: BTreeMap<String, Behaviour>,
    pub default: Behaviour,
    /// Prepended to the `service` label, so that several simulations can share one Prometheus
    /// without their series mixing (tests use the namespace).
    pub service_prefix: String,
    /// When set, every series is labelled with this `service` instead of the Kubernetes Service
    /// name — an application-level metric labelled by app, as the brief's queries expect.
    pub service_label: Option<String>,
}

/// The share of traffic (0..=1) each Service gets, and which pod-template hash it selects.
#[derive(Clone, Debug, PartialEq)]
pub struct Share {
    pub service: String,
    pub hash: Option<String>,
    pub share: f64,
}

async fn service_hash(client: &Client, ns: &str, name: &str) -> Option<String> {
    let api: Api<Service> = Api::namespaced(client.clone(), ns);
    let svc = api.get_opt(name).await.ok()??;
    svc.spec?.selector?.get(POD_TEMPLATE_HASH_LABEL).cloned()
}

/// Reads how traffic is split now.
pub async fn shares(client: &Client, ro: &Rollout) -> Vec<Share> {
    let ns = ro.namespace().unwrap_or_default();
    if let Some(bg) = ro.spec.blue_green() {
        let mut out = vec![Share {
            service: bg.active_service.clone(),
            hash: service_hash(client, &ns, &bg.active_service).await,
            share: 1.0,
        }];
        if let Some(p) = &bg.preview_service {
            // Preview gets a trickle of test traffic on top.
            out.push(Share {
                service: p.clone(),
                hash: service_hash(client, &ns, p).await,
                share: 0.1,
            });
        }
        return out;
    }
    let Some(c) = ro.spec.canary() else {
        return vec![];
    };
    let (Some(canary), Some(stable)) = (c.canary_service.clone(), c.stable_service.clone()) else {
        return vec![];
    };
    let canary_hash = service_hash(client, &ns, &canary).await;
    let stable_hash = service_hash(client, &ns, &stable).await;
    let weight = match &c.traffic_routing {
        Some(routing) => {
            let target = RouteTarget {
                namespace: ns.clone(),
                rollout: ro.name_any(),
                rollout_uid: ro.metadata.uid.clone().unwrap_or_default(),
                stable_service: stable.clone(),
                canary_service: canary.clone(),
                stable_hash: None,
                canary_hash: None,
            };
            let mut w = 0;
            for r in routers_for(routing) {
                if let Ok(Some(x)) = current_weight(r.as_ref(), client, &target).await {
                    w = x;
                    break;
                }
            }
            w
        }
        None => ro
            .status
            .as_ref()
            .and_then(|s| s.canary.as_ref())
            .and_then(|c| c.weights.as_ref())
            .map(|w| w.canary.weight)
            .unwrap_or(0),
    };
    let w = f64::from(weight.clamp(0, 100)) / 100.0;
    vec![
        Share {
            service: canary,
            hash: canary_hash,
            share: w,
        },
        Share {
            service: stable,
            hash: stable_hash,
            share: 1.0 - w,
        },
    ]
}

/// The first container image of each of the rollout's ReplicaSets, by hash.
pub async fn images(client: &Client, ro: &Rollout) -> BTreeMap<String, String> {
    let api: Api<ReplicaSet> = Api::namespaced(client.clone(), &ro.namespace().unwrap_or_default());
    let lp = ListParams::default().labels(&format!("{ROLLOUT_LABEL}={}", ro.name_any()));
    let mut out = BTreeMap::new();
    for rs in api.list(&lp).await.map(|l| l.items).unwrap_or_default() {
        let hash = rs.labels().get(POD_TEMPLATE_HASH_LABEL).cloned();
        let image = rs
            .spec
            .and_then(|s| s.template)
            .and_then(|t| t.spec)
            .and_then(|s| s.containers.first().and_then(|c| c.image.clone()));
        if let (Some(h), Some(i)) = (hash, image) {
            out.insert(h, i);
        }
    }
    out
}

/// One simulation step: reads the split and sets the exporter's series. Returns the shares
/// with the image each gets, for progress output.
pub async fn tick(
    client: &Client,
    exporter: &Exporter,
    cfg: &SimConfig,
    active: &mut Vec<(String, String)>,
) -> Vec<(Share, String)> {
    let api: Api<Rollout> = Api::namespaced(client.clone(), &cfg.namespace);
    let Ok(ro) = api.get(&cfg.rollout).await else {
        return vec![];
    };
    let images = images(client, &ro).await;
    let mut now_active = vec![];
    let mut out = vec![];
    for share in shares(client, &ro).await {
        let Some(image) = share.hash.as_ref().and_then(|h| images.get(h)).cloned() else {
            continue;
        };
        let b = cfg.behaviours.get(&image).copied().unwrap_or(cfg.default);
        let service = format!(
            "{}{}",
            cfg.service_prefix,
            cfg.service_label.as_deref().unwrap_or(&share.service)
        );
        exporter.set(
            &service,
            &image,
            Traffic {
                rps: cfg.rps * share.share,
                error_rate: b.error_rate,
                latency: b.latency,
            },
        );
        now_active.push((service, image.clone()));
        out.push((share, image));
    }
    for (svc, img) in active.iter() {
        if !now_active.contains(&(svc.clone(), img.clone())) {
            exporter.stop(svc, img);
        }
    }
    *active = now_active;
    out
}

/// Runs until the task is dropped, re-reading the split every `every`.
pub async fn run(
    client: Client,
    exporter: Arc<Exporter>,
    cfg: Arc<Mutex<SimConfig>>,
    every: Duration,
) {
    let mut active = vec![];
    loop {
        let snapshot = cfg.lock().map(|c| c.clone()).ok();
        if let Some(c) = snapshot {
            tick(&client, &exporter, &c, &mut active).await;
        }
        tokio::time::sleep(every).await;
    }
}
