//! `aviary-bench`: footprint and reaction-time benchmark of a Rollout controller against a real
//! cluster (see `docs/benchmarks.md`; run through `make bench`).
//!
//! For each size N it creates N one-replica canary Rollouts (Istio: two Services and a
//! VirtualService per rollout; or a basic canary) spread over a few namespaces, waits until all
//! are Healthy, then measures:
//! - the controller's RSS (steady and peak, `/proc/PID/status`) and CPU seconds
//!   (`/proc/PID/stat`);
//! - idle API requests and writes per minute by the controller's identity, **from the API
//!   server's audit log** (the only source that sees every request, whatever the controller);
//! - an update wave: the image of all N changed at once, time until all are Healthy again, and
//!   the controller's requests per rollout and per step;
//! - reaction: while up to 1,000 rollouts progress (paused at 20 %), K of them are aborted one at
//!   a time; time from sending the abort patch to the harness's watch seeing the VirtualService
//!   at canary weight 0 (an upper bound: it includes the watch's own delivery);
//! - soak (optional): repeated update waves, RSS after each.
//!
//! The controller is a command the harness starts per size (`--controller-cmd`) or a running
//! process (`--controller-pid`); the Rollouts' API version is a flag, so the same run can measure
//! another controller serving the same API shape (e.g. `argoproj.io/v1alpha1`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

const MANAGER: &str = "aviary-bench";
const BENCH_LABEL: &str = "aviary-bench";

#[derive(Parser, Debug, Clone)]
#[command(
    name = "aviary-bench",
    about = "Footprint and reaction benchmark of a Rollout controller"
)]
struct Args {
    /// Rollout counts to measure, in order.
    #[arg(long, value_delimiter = ',', default_value = "100,1000")]
    sizes: Vec<usize>,
    /// Command that starts the controller (run with `sh -c 'exec …'` once per size).
    #[arg(long, conflicts_with = "controller_pid")]
    controller_cmd: Option<String>,
    /// PID of an already running controller to measure instead.
    #[arg(long)]
    controller_pid: Option<u32>,
    /// File the controller's output goes to (with --controller-cmd).
    #[arg(long, default_value = "target/bench/controller.log")]
    controller_log: PathBuf,
    /// apiVersion of the Rollout objects (e.g. `argoproj.io/v1alpha1`).
    #[arg(long, default_value = "aviary.dev/v1alpha1")]
    api_version: String,
    /// `istio` (two Services and a VirtualService per rollout) or `basic` (no traffic routing).
    #[arg(long, default_value = "istio", value_parser = ["istio", "basic"])]
    routing: String,
    /// Namespaces the rollouts are spread over.
    #[arg(long, default_value_t = 4)]
    namespaces: usize,
    /// The API server's audit log (from `hack/cluster.sh env`).
    #[arg(long, env = "AVIARY_AUDIT_LOG")]
    audit_log: PathBuf,
    /// The user the controller's requests are made as, in the audit log.
    #[arg(long, default_value = "aviary-operator")]
    audit_user: String,
    /// Length of the idle window.
    #[arg(long, default_value_t = 60)]
    idle_seconds: u64,
    /// Rollouts progressing during the reaction measurement (capped at N).
    #[arg(long, default_value_t = 1000)]
    progressing: usize,
    /// Aborts timed during the reaction measurement.
    #[arg(long, default_value_t = 50)]
    aborts: usize,
    /// Extra update waves after the measurements (0: no soak).
    #[arg(long, default_value_t = 0)]
    soak_waves: usize,
    /// Give up waiting for all Healthy after this many seconds per wait (default: 900, or half
    /// a second per rollout when that is more — an update wave at 10,000 takes about an hour
    /// on 2 cores).
    #[arg(long)]
    wait_timeout: Option<u64>,
    /// Run the update wave (`--wave false` skips it: creation, idle and reaction only).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    wave: bool,
    /// Delete the bench namespaces after the last size (`false` when the cluster is torn down
    /// anyway: at 10,000 rollouts the deletion takes longer than the measurements).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    clean_after: bool,
    /// Parallel requests the harness makes while creating and updating.
    #[arg(long, default_value_t = 32)]
    parallel: usize,
    /// JSON results file.
    #[arg(long, default_value = "target/bench/results.json")]
    out: PathBuf,
}

// ---------------------------------------------------------------------------------------------
// The controller process: /proc figures.

struct Controller {
    pid: u32,
    child: Option<Child>,
}

impl Controller {
    fn start(args: &Args) -> anyhow::Result<Self> {
        if let Some(pid) = args.controller_pid {
            return Ok(Controller { pid, child: None });
        }
        let cmd = args
            .controller_cmd
            .as_deref()
            .context("--controller-cmd or --controller-pid is required")?;
        if let Some(dir) = args.controller_log.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&args.controller_log)?;
        let child = Command::new("sh")
            .arg("-c")
            .arg(format!("exec {cmd}"))
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("start the controller")?;
        Ok(Controller {
            pid: child.id(),
            child: Some(child),
        })
    }

    fn alive(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => std::path::Path::new(&format!("/proc/{}", self.pid)).exists(),
        }
    }

    fn status_kib(&self, field: &str) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with(field))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|v| v.parse().ok())
            })
            .unwrap_or(0)
    }

    fn rss_mib(&self) -> f64 {
        self.status_kib("VmRSS:") as f64 / 1024.0
    }

    fn peak_rss_mib(&self) -> f64 {
        self.status_kib("VmHWM:") as f64 / 1024.0
    }

    /// User + system CPU seconds so far.
    fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).unwrap_or_default();
        // Fields after the command name (which may hold spaces) start after the last ')'.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        // utime and stime are fields 14 and 15 of stat; `rest` starts at field 3.
        (ticks(11) + ticks(12)) / clock_ticks()
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").arg(c.id().to_string()).status();
            for _ in 0..50 {
                if matches!(c.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        self.stop();
    }
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

// ---------------------------------------------------------------------------------------------
// The audit log: the controller's requests between two instants.

#[derive(Default, Debug, Clone, serde::Serialize)]
struct Requests {
    /// Every request except the leader-election Lease's.
    total: u64,
    /// Writes among them.
    writes: u64,
    /// Requests on the leader-election Lease (renewals: a GET and an UPDATE every retry period,
    /// 2 s by default), kept apart: they are the price of leader election, not of the rollouts.
    lease_requests: u64,
    lease_writes: u64,
    by_verb: std::collections::BTreeMap<String, u64>,
    /// Writes by verb and resource, e.g. `patch rollouts/status`.
    writes_by_resource: std::collections::BTreeMap<String, u64>,
}

fn audit_requests(args: &Args, from: Timestamp, to: Timestamp) -> Requests {
    let mut out = Requests::default();
    // The current file and its rotated backups (audit-<time>.log beside it).
    let dir = args
        .audit_log
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default();
    let stem = args
        .audit_log
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_default();
    let files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with(&stem))
                })
                .collect()
        })
        .unwrap_or_default();
    let user = format!("\"username\":\"{}\"", args.audit_user);
    for f in files {
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        for line in text.lines().filter(|l| l.contains(&user)) {
            let Ok(e) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            let Some(t) = e["requestReceivedTimestamp"]
                .as_str()
                .and_then(|t| t.parse::<Timestamp>().ok())
            else {
                continue;
            };
            if t < from || t >= to {
                continue;
            }
            let verb = e["verb"].as_str().unwrap_or("").to_string();
            let write = matches!(verb.as_str(), "create" | "update" | "patch" | "delete");
            if e["objectRef"]["resource"].as_str() == Some("leases") {
                out.lease_requests += 1;
                out.lease_writes += u64::from(write);
                continue;
            }
            out.total += 1;
            if write {
                out.writes += 1;
                let r = &e["objectRef"];
                let res = match r["subresource"].as_str() {
                    Some(s) => format!("{}/{s}", r["resource"].as_str().unwrap_or("")),
                    None => r["resource"].as_str().unwrap_or("").to_string(),
                };
                *out.writes_by_resource
                    .entry(format!("{verb} {res}"))
                    .or_default() += 1;
            }
            *out.by_verb.entry(verb).or_default() += 1;
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// What the harness sees of the cluster: one watch on the Rollouts, one on the VirtualServices.

#[derive(Default)]
struct Seen {
    /// (generation, observedGeneration, phase) per namespace/name.
    rollouts: HashMap<String, (i64, i64, String)>,
    /// (canary weight, when the watch delivered it) per namespace/name.
    weights: HashMap<String, (i64, Instant)>,
    /// The generation each rollout's last update produced: "Healthy" counts only from there.
    expected: HashMap<String, i64>,
}

type Shared = Arc<Mutex<Seen>>;

fn key(o: &DynamicObject) -> String {
    format!("{}/{}", o.namespace().unwrap_or_default(), o.name_any())
}

fn as_i64(v: &Value) -> i64 {
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or(-1)
}

fn api_resource(api_version: &str, kind: &str, plural: &str) -> ApiResource {
    let (g, v) = api_version.split_once('/').unwrap_or(("", api_version));
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(g, v, kind), plural)
}

fn spawn_watches(client: &Client, args: &Args, seen: Shared) {
    let ro_ar = api_resource(&args.api_version, "Rollout", "rollouts");
    let ro_api: Api<DynamicObject> = Api::all_with(client.clone(), &ro_ar);
    let cfg = watcher::Config::default().labels(BENCH_LABEL);
    let s = seen.clone();
    tokio::spawn(
        watcher(ro_api, cfg.clone())
            .default_backoff()
            .applied_objects()
            .for_each(move |o| {
                if let Ok(o) = o {
                    let st = &o.data["status"];
                    let entry = (
                        o.metadata.generation.unwrap_or(0),
                        as_i64(&st["observedGeneration"]),
                        st["phase"].as_str().unwrap_or("").to_string(),
                    );
                    s.lock().unwrap().rollouts.insert(key(&o), entry);
                }
                async {}
            }),
    );
    if args.routing != "istio" {
        return;
    }
    let vs_ar = api_resource(
        "networking.istio.io/v1",
        "VirtualService",
        "virtualservices",
    );
    let vs_api: Api<DynamicObject> = Api::all_with(client.clone(), &vs_ar);
    tokio::spawn(
        watcher(vs_api, cfg)
            .default_backoff()
            .applied_objects()
            .for_each(move |o| {
                if let Ok(o) = o {
                    let canary = format!("{}-canary", o.name_any());
                    let w = o.data["spec"]["http"][0]["route"]
                        .as_array()
                        .and_then(|r| {
                            r.iter()
                                .find(|d| d["destination"]["host"] == canary.as_str())
                        })
                        .map(|d| d["weight"].as_i64().unwrap_or(0))
                        .unwrap_or(-1);
                    seen.lock()
                        .unwrap()
                        .weights
                        .insert(key(&o), (w, Instant::now()));
                }
                async {}
            }),
    );
}

// ---------------------------------------------------------------------------------------------
// The objects.

fn ns_name(size: usize, i: usize) -> String {
    format!("bench-{size}-{i}")
}

fn steps_normal() -> Value {
    json!([{"setWeight": 50}, {"pause": {"duration": "1s"}}])
}

fn steps_paused() -> Value {
    json!([{"setWeight": 20}, {"pause": {}}])
}

fn rollout(args: &Args, name: &str, image: &str, steps: Value) -> Value {
    let mut canary =
        json!({"steps": steps, "scaleDownDelaySeconds": 5, "abortScaleDownDelaySeconds": 5});
    if args.routing == "istio" {
        canary["canaryService"] = json!(format!("{name}-canary"));
        canary["stableService"] = json!(format!("{name}-stable"));
        canary["trafficRouting"] =
            json!({"istio": {"virtualService": {"name": name, "routes": ["primary"]}}});
    }
    json!({
        "apiVersion": args.api_version, "kind": "Rollout",
        "metadata": {"name": name, "labels": {BENCH_LABEL: "true"}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                         "spec": {"containers": [{"name": "app", "image": image}]}},
            "strategy": {"canary": canary}
        }
    })
}

fn routing_objects(name: &str) -> Vec<(ApiResource, Value)> {
    let svc = |n: String| {
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": n, "labels": {BENCH_LABEL: "true"}},
               "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": 8080}]}})
    };
    let vs = json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": name, "labels": {BENCH_LABEL: "true"}},
        "spec": {"hosts": [format!("{name}.example.com")], "http": [{"name": "primary", "route": [
            {"destination": {"host": format!("{name}-stable")}, "weight": 100},
            {"destination": {"host": format!("{name}-canary")}, "weight": 0}]}]}
    });
    let svc_ar = ApiResource::erase::<k8s_openapi::api::core::v1::Service>(&());
    vec![
        (svc_ar.clone(), svc(format!("{name}-stable"))),
        (svc_ar, svc(format!("{name}-canary"))),
        (
            api_resource(
                "networking.istio.io/v1",
                "VirtualService",
                "virtualservices",
            ),
            vs,
        ),
    ]
}

async fn apply(
    client: &Client,
    ns: &str,
    ar: &ApiResource,
    obj: &Value,
) -> anyhow::Result<DynamicObject> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, ar);
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    let mut delay = Duration::from_millis(100);
    loop {
        match api
            .patch(
                name,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(obj),
            )
            .await
        {
            Ok(o) => return Ok(o),
            Err(e) if delay < Duration::from_secs(10) => {
                eprintln!("  retrying {ns}/{name}: {e}");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// (namespace, name) of every rollout of a size.
fn names(args: &Args, size: usize) -> Vec<(String, String)> {
    (0..size)
        .map(|i| (ns_name(size, i % args.namespaces), format!("ro-{i}")))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Waiting.

/// Rollouts of `keys` that are Healthy at their current generation.
fn healthy_count(seen: &Shared, keys: &[String]) -> usize {
    let s = seen.lock().unwrap();
    keys.iter()
        .filter(|k| {
            let min = s.expected.get(*k).copied().unwrap_or(0);
            s.rollouts
                .get(*k)
                .is_some_and(|(g, og, p)| g == og && *g >= min && p == "Healthy")
        })
        .count()
}

/// How long to wait for `n` rollouts: `--wait-timeout`, else 900 s or 0.5 s per rollout.
fn wait_limit(args: &Args, n: usize) -> Duration {
    Duration::from_secs(args.wait_timeout.unwrap_or_else(|| (n as u64 / 2).max(900)))
}

async fn wait_all_healthy(
    args: &Args,
    seen: &Shared,
    keys: &[String],
    what: &str,
    ctl: &mut Controller,
) -> anyhow::Result<Duration> {
    let t0 = Instant::now();
    let limit = wait_limit(args, keys.len());
    let mut last_print = Instant::now();
    loop {
        let n = healthy_count(seen, keys);
        if n == keys.len() {
            return Ok(t0.elapsed());
        }
        if !ctl.alive() {
            bail!("the controller exited while waiting for {what}");
        }
        if t0.elapsed() > limit {
            bail!(
                "{what}: only {n}/{} Healthy after {} s",
                keys.len(),
                limit.as_secs()
            );
        }
        if last_print.elapsed() > Duration::from_secs(10) {
            eprintln!(
                "  {what}: {n}/{} Healthy after {:.0} s (controller RSS {:.1} MiB)",
                keys.len(),
                t0.elapsed().as_secs_f64(),
                ctl.rss_mib()
            );
            last_print = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn set_image(
    client: &Client,
    args: &Args,
    seen: &Shared,
    targets: &[(String, String)],
    image: &str,
    steps: Value,
) -> anyhow::Result<()> {
    let ar = api_resource(&args.api_version, "Rollout", "rollouts");
    futures::stream::iter(targets.iter().cloned())
        .map(|(ns, name)| {
            let obj = rollout(args, &name, image, steps.clone());
            let ar = ar.clone();
            async move {
                let o = apply(client, &ns, &ar, &obj).await?;
                seen.lock()
                    .unwrap()
                    .expected
                    .insert(key(&o), o.metadata.generation.unwrap_or(0));
                anyhow::Ok(())
            }
        })
        .buffer_unordered(args.parallel)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

// ---------------------------------------------------------------------------------------------
// One size.

#[derive(Default, Debug, serde::Serialize)]
struct SizeResult {
    rollouts: usize,
    routing: String,
    /// Wall time of this size's whole run, creation to the last measurement.
    size_total_s: f64,
    create_to_healthy_s: f64,
    rss_steady_mib: f64,
    rss_peak_mib: f64,
    cpu_s_total: f64,
    idle_window_s: f64,
    idle_cpu_percent_of_core: f64,
    idle_requests_per_min: f64,
    idle_writes_per_min: f64,
    idle_lease_writes_per_min: f64,
    idle_requests: Requests,
    wave_to_healthy_s: f64,
    wave_cpu_s: f64,
    wave_requests: Requests,
    wave_requests_per_rollout: f64,
    wave_requests_per_step: f64,
    wave_rss_after_mib: f64,
    reaction_progressing: usize,
    reaction_aborts: usize,
    reaction_ms_p50: f64,
    reaction_ms_p95: f64,
    reaction_ms_p99: f64,
    reaction_ms_max: f64,
    reaction_samples_ms: Vec<f64>,
    /// Each timed abort: which rollout, when the patch was sent (to line it up with the
    /// controller's requests in the audit log), the latency, and when the API server answered
    /// the abort patch (`acked_ms`).
    reaction_aborted: Vec<Value>,
    soak: Vec<SoakWave>,
    notes: Vec<String>,
}

#[derive(Debug, serde::Serialize)]
struct SoakWave {
    wave: usize,
    to_healthy_s: f64,
    rss_mib: f64,
}

/// All N get a new image at once; time until all are Healthy, requests per rollout and step.
#[allow(clippy::too_many_arguments)]
async fn update_wave(
    client: &Client,
    args: &Args,
    seen: &Shared,
    size: usize,
    targets: &[(String, String)],
    keys: &[String],
    ctl: &mut Controller,
    r: &mut SizeResult,
) -> anyhow::Result<()> {
    let (t0, cpu0, w0) = (Timestamp::now(), ctl.cpu_seconds(), Instant::now());
    set_image(client, args, seen, targets, "app:v2", steps_normal()).await?;
    eprintln!(
        "[{size}] wave: {size} image updates sent in {:.1} s",
        w0.elapsed().as_secs_f64()
    );
    wait_all_healthy(args, seen, keys, "update wave", ctl).await?;
    r.wave_to_healthy_s = w0.elapsed().as_secs_f64();
    r.wave_cpu_s = ctl.cpu_seconds() - cpu0;
    r.wave_rss_after_mib = ctl.rss_mib();
    tokio::time::sleep(Duration::from_secs(2)).await;
    r.wave_requests = audit_requests(args, t0, Timestamp::now());
    r.wave_requests_per_rollout = r.wave_requests.total as f64 / size as f64;
    let steps = steps_normal().as_array().map(|a| a.len()).unwrap_or(1) + 1; // + full promotion
    r.wave_requests_per_step = r.wave_requests_per_rollout / steps as f64;
    eprintln!(
        "[{size}] wave: all Healthy in {:.1} s, {:.1} requests per rollout ({} writes in all), CPU {:.1} s",
        r.wave_to_healthy_s, r.wave_requests_per_rollout, r.wave_requests.writes, r.wave_cpu_s
    );
    Ok(())
}

async fn run_size(
    client: &Client,
    args: &Args,
    seen: &Shared,
    size: usize,
) -> anyhow::Result<SizeResult> {
    let mut r = SizeResult {
        rollouts: size,
        routing: args.routing.clone(),
        ..Default::default()
    };
    let targets = names(args, size);
    let keys: Vec<String> = targets.iter().map(|(ns, n)| format!("{ns}/{n}")).collect();
    let ns_api: Api<Namespace> = Api::all(client.clone());
    for i in 0..args.namespaces.min(size) {
        let ns = json!({"apiVersion": "v1", "kind": "Namespace",
                        "metadata": {"name": ns_name(size, i), "labels": {BENCH_LABEL: "true"}}});
        ns_api
            .patch(
                &ns_name(size, i),
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&ns),
            )
            .await?;
    }
    // Pods are refused until each namespace's default ServiceAccount exists.
    for i in 0..args.namespaces.min(size) {
        let sa: Api<k8s_openapi::api::core::v1::ServiceAccount> =
            Api::namespaced(client.clone(), &ns_name(size, i));
        while sa.get_opt("default").await?.is_none() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let mut ctl = Controller::start(args)?;
    eprintln!(
        "[{size}] controller pid {}; creating {size} rollouts ({})",
        ctl.pid, args.routing
    );
    let t_create = Instant::now();
    let ro_ar = api_resource(&args.api_version, "Rollout", "rollouts");
    futures::stream::iter(targets.iter().cloned())
        .map(|(ns, name)| {
            let ro_ar = ro_ar.clone();
            async move {
                if args.routing == "istio" {
                    for (ar, obj) in routing_objects(&name) {
                        apply(client, &ns, &ar, &obj).await?;
                    }
                }
                apply(
                    client,
                    &ns,
                    &ro_ar,
                    &rollout(args, &name, "app:v1", steps_normal()),
                )
                .await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(args.parallel)
        .try_collect::<Vec<_>>()
        .await?;
    eprintln!(
        "[{size}] created in {:.1} s; waiting for all Healthy",
        t_create.elapsed().as_secs_f64()
    );
    wait_all_healthy(args, seen, &keys, "create", &mut ctl).await?;
    r.create_to_healthy_s = t_create.elapsed().as_secs_f64();
    eprintln!(
        "[{size}] all Healthy {:.1} s after the first create",
        r.create_to_healthy_s
    );

    // Idle: settle, then a window with nothing changing.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (t0, cpu0, i0) = (Timestamp::now(), ctl.cpu_seconds(), Instant::now());
    eprintln!("[{size}] idle window of {} s", args.idle_seconds);
    tokio::time::sleep(Duration::from_secs(args.idle_seconds)).await;
    let (t1, cpu1) = (Timestamp::now(), ctl.cpu_seconds());
    r.idle_window_s = i0.elapsed().as_secs_f64();
    r.idle_cpu_percent_of_core = 100.0 * (cpu1 - cpu0) / r.idle_window_s;
    r.rss_steady_mib = ctl.rss_mib();
    // The API server writes an audit event when the request completes: give it a moment.
    tokio::time::sleep(Duration::from_secs(2)).await;
    r.idle_requests = audit_requests(args, t0, t1);
    r.idle_requests_per_min = r.idle_requests.total as f64 * 60.0 / r.idle_window_s;
    r.idle_writes_per_min = r.idle_requests.writes as f64 * 60.0 / r.idle_window_s;
    r.idle_lease_writes_per_min = r.idle_requests.lease_writes as f64 * 60.0 / r.idle_window_s;
    eprintln!(
        "[{size}] idle: RSS {:.1} MiB, CPU {:.2} % of a core, {:.1} requests/min, {:.1} writes/min (+ {:.1} leader Lease renewals/min)",
        r.rss_steady_mib,
        r.idle_cpu_percent_of_core,
        r.idle_requests_per_min,
        r.idle_writes_per_min,
        r.idle_lease_writes_per_min
    );

    // Update wave.
    if args.wave {
        update_wave(client, args, seen, size, &targets, &keys, &mut ctl, &mut r).await?;
    } else {
        r.notes.push("update wave skipped (--wave false)".into());
    }

    // Reaction.
    if args.routing == "istio" && args.aborts > 0 {
        let m = args.progressing.min(size);
        r.reaction_progressing = m;
        let progressing = &targets[..m];
        eprintln!(
            "[{size}] reaction: {m} rollouts progress to a 20 % pause; aborting {} one at a time",
            args.aborts.min(m)
        );
        let sender = {
            let client = client.clone();
            let args = args.clone();
            let progressing = progressing.to_vec();
            let seen = seen.clone();
            tokio::spawn(async move {
                set_image(
                    &client,
                    &args,
                    &seen,
                    &progressing,
                    "app:v3",
                    steps_paused(),
                )
                .await
            })
        };
        let ro_api = |ns: &str| Api::<DynamicObject>::namespaced_with(client.clone(), ns, &ro_ar);
        let mut samples = Vec::new();
        // Abort rollouts spread over the progressing set, each as soon as its canary shows weight.
        let stride = (m / args.aborts.max(1)).max(1);
        for (ns, name) in progressing.iter().step_by(stride).take(args.aborts) {
            let k = format!("{ns}/{name}");
            let deadline = Instant::now() + wait_limit(args, m);
            loop {
                let w = seen.lock().unwrap().weights.get(&k).map(|(w, _)| *w);
                if w.is_some_and(|w| w > 0) {
                    break;
                }
                if Instant::now() > deadline {
                    bail!("{k} never showed canary weight");
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let t_abort = Instant::now();
            let sent_at = Timestamp::now();
            ro_api(ns)
                .patch_status(
                    name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"status": {"abort": true}})),
                )
                .await?;
            // When the API server answered the abort: the part of the figure that is the
            // server's, not the controller's.
            let acked = t_abort.elapsed();
            let deadline = Instant::now() + Duration::from_secs(60);
            let latency = loop {
                if let Some((0, at)) = seen.lock().unwrap().weights.get(&k).copied()
                    && at >= t_abort
                {
                    break at - t_abort;
                }
                if Instant::now() > deadline {
                    bail!("{k}: canary weight not 0 within 60 s of the abort");
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            };
            samples.push(latency.as_secs_f64() * 1000.0);
            r.reaction_aborted
                .push(json!({"rollout": k, "sent_at": sent_at.to_string(),
                             "ms": latency.as_secs_f64() * 1000.0,
                             "acked_ms": acked.as_secs_f64() * 1000.0}));
        }
        sender.await??;
        let still = m - healthy_count(seen, &keys[..m]);
        r.notes.push(format!("{still} of {m} rollouts were not Healthy (progressing, paused or aborted) when the last abort was timed"));
        let mut sorted = samples.clone();
        sorted.sort_by(|a, b| a.total_cmp(b));
        r.reaction_aborts = samples.len();
        r.reaction_ms_p50 = percentile(&sorted, 50.0);
        r.reaction_ms_p95 = percentile(&sorted, 95.0);
        r.reaction_ms_p99 = percentile(&sorted, 99.0);
        r.reaction_ms_max = sorted.last().copied().unwrap_or(f64::NAN);
        r.reaction_samples_ms = samples;
        eprintln!(
            "[{size}] reaction: abort → weight 0 p50 {:.0} ms, p95 {:.0} ms, p99 {:.0} ms (n={})",
            r.reaction_ms_p50, r.reaction_ms_p95, r.reaction_ms_p99, r.reaction_aborts
        );
    }

    // Soak: repeated waves over everything (which also supersedes the paused and aborted ones).
    for wave in 0..args.soak_waves {
        let w0 = Instant::now();
        set_image(
            client,
            args,
            seen,
            &targets,
            &format!("app:soak-{wave}"),
            steps_normal(),
        )
        .await?;
        wait_all_healthy(args, seen, &keys, "soak wave", &mut ctl).await?;
        let s = SoakWave {
            wave: wave + 1,
            to_healthy_s: w0.elapsed().as_secs_f64(),
            rss_mib: ctl.rss_mib(),
        };
        eprintln!(
            "[{size}] soak wave {}: Healthy in {:.1} s, RSS {:.1} MiB",
            s.wave, s.to_healthy_s, s.rss_mib
        );
        r.soak.push(s);
    }
    r.rss_peak_mib = ctl.peak_rss_mib();
    r.cpu_s_total = ctl.cpu_seconds();
    ctl.stop();
    Ok(r)
}

async fn delete_size(client: &Client, args: &Args, size: usize) {
    let ns_api: Api<Namespace> = Api::all(client.clone());
    for i in 0..args.namespaces.min(size) {
        release_rollouts(client, &args.api_version, &ns_name(size, i)).await;
        let _ = ns_api
            .delete(&ns_name(size, i), &DeleteParams::background())
            .await;
    }
}

/// Removes the finalizers of the Rollouts in `ns`. The controller is stopped before the bench
/// deletes its namespaces, and Aviary's route-cleanup finalizer would otherwise keep them
/// Terminating (the routing objects go with the namespace: there is nothing to restore).
async fn release_rollouts(client: &Client, api_version: &str, ns: &str) {
    let ar = api_resource(api_version, "Rollout", "rollouts");
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
    let Ok(list) = api.list(&ListParams::default()).await else {
        return;
    };
    let release = json!({"metadata": {"finalizers": null}});
    futures::stream::iter(list.items.iter().filter(|ro| !ro.finalizers().is_empty()))
        .for_each_concurrent(32, |ro| {
            let (api, release) = (&api, &release);
            async move {
                let _ = api
                    .patch(
                        &ro.name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(release),
                    )
                    .await;
            }
        })
        .await;
}

/// Deletes bench namespaces left from earlier runs and waits until they are gone.
async fn clean(client: &Client, api_version: &str) -> anyhow::Result<()> {
    let ns_api: Api<Namespace> = Api::all(client.clone());
    let lp = ListParams::default().labels(BENCH_LABEL);
    let t0 = Instant::now();
    loop {
        let left = ns_api.list(&lp).await?.items;
        if left.is_empty() {
            return Ok(());
        }
        for ns in &left {
            release_rollouts(client, api_version, &ns.name_any()).await;
            if ns.metadata.deletion_timestamp.is_none() {
                let _ = ns_api
                    .delete(&ns.name_any(), &DeleteParams::background())
                    .await;
            }
        }
        if t0.elapsed() > Duration::from_secs(600) {
            bail!("bench namespaces still terminating after 10 min");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn print_table(results: &[SizeResult]) {
    println!();
    println!(
        "| rollouts | create→Healthy s | RSS steady MiB | RSS peak MiB | idle CPU % core | idle req/min | idle writes/min (+Lease) | wave→Healthy s | wave req/rollout | wave req/step | wave CPU s | abort→0 p50/p95/p99 ms (n) | size total s |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|");
    for r in results {
        println!(
            "| {} | {:.1} | {:.1} | {:.1} | {:.2} | {:.1} | {:.1} (+{:.0}) | {:.1} | {:.1} | {:.1} | {:.1} | {:.0} / {:.0} / {:.0} ({} of {} progressing) | {:.0} |",
            r.rollouts,
            r.create_to_healthy_s,
            r.rss_steady_mib,
            r.rss_peak_mib,
            r.idle_cpu_percent_of_core,
            r.idle_requests_per_min,
            r.idle_writes_per_min,
            r.idle_lease_writes_per_min,
            r.wave_to_healthy_s,
            r.wave_requests_per_rollout,
            r.wave_requests_per_step,
            r.wave_cpu_s,
            r.reaction_ms_p50,
            r.reaction_ms_p95,
            r.reaction_ms_p99,
            r.reaction_aborts,
            r.reaction_progressing,
            r.size_total_s
        );
    }
    for r in results.iter().filter(|r| !r.soak.is_empty()) {
        let rss: Vec<String> = r.soak.iter().map(|s| format!("{:.1}", s.rss_mib)).collect();
        println!(
            "soak at {}: RSS MiB after each wave: {}",
            r.rollouts,
            rss.join(", ")
        );
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.controller_cmd.is_none() && args.controller_pid.is_none() {
        bail!("give the controller to measure: --controller-cmd '…' or --controller-pid PID");
    }
    let client = Client::try_default()
        .await
        .context("client from KUBECONFIG")?;
    clean(&client, &args.api_version).await?;
    let seen: Shared = Arc::default();
    spawn_watches(&client, &args, seen.clone());
    let mut results = Vec::new();
    let started = Timestamp::now();
    for (i, &size) in args.sizes.iter().enumerate() {
        let t_size = Instant::now();
        let res = run_size(&client, &args, &seen, size).await;
        delete_size(&client, &args, size).await;
        match res {
            Ok(mut r) => {
                r.size_total_s = t_size.elapsed().as_secs_f64();
                results.push(r)
            }
            Err(e) => {
                eprintln!("[{size}] FAILED: {e:#}");
                results.push(SizeResult {
                    rollouts: size,
                    routing: args.routing.clone(),
                    notes: vec![format!("failed: {e:#}")],
                    ..Default::default()
                });
                break;
            }
        }
        // After the last size the results come first: deleting 10,000 rollouts' namespaces
        // takes the namespace controller minutes, and a slow cleanup must not lose them.
        if i + 1 < args.sizes.len() {
            clean(&client, &args.api_version).await?;
        }
    }
    print_table(&results);
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let doc = json!({
        "started": started.to_string(),
        "finished": Timestamp::now().to_string(),
        "api_version": args.api_version,
        "controller": args.controller_cmd.clone().unwrap_or_else(|| format!("pid {}", args.controller_pid.unwrap_or(0))),
        "request_source": "kube-apiserver audit log, user ".to_string() + &args.audit_user,
        "results": results,
    });
    std::fs::write(&args.out, serde_json::to_string_pretty(&doc)?)?;
    println!("\nresults: {}", args.out.display());
    if args.clean_after
        && let Err(e) = clean(&client, &args.api_version).await
    {
        eprintln!("warning: {e:#}");
    }
    Ok(())
}
