//! The Aviary controller.
//!
//! Every flag can also be set by the environment variable named in its help
//! (`docs/operations.md` lists them all).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use aviary::api::Duration;
use aviary::controller::pacing::{Clients, Pace};
use aviary::controller::telemetry::TelemetrySinks;
use aviary::fence::Fence;
use aviary::leader::{Elector, LeaseSettings};
use aviary::metrics::{ApiRequestsLayer, Endpoints, Health, Metrics};
use aviary::notify::{Format, Notifier, Sink, SinkSource, parse_triggers};
use clap::{ArgAction, Parser};
use kube::config::{KubeConfigOptions, Kubeconfig};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use tracing_subscriber::EnvFilter;

#[derive(Parser, Debug)]
#[command(
    name = "aviary",
    version = aviary::build_info::LONG_VERSION,
    about = "Progressive delivery controller for Kubernetes"
)]
struct Args {
    /// Path to a kubeconfig (default: $KUBECONFIG, ~/.kube/config, or in-cluster).
    #[arg(long, env = "AVIARY_KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Watch only these namespaces, comma-separated or repeated (default: all namespaces). The
    /// controller then needs its Role in each of them and no ClusterRole.
    #[arg(long, env = "AVIARY_NAMESPACE", value_delimiter = ',')]
    namespace: Vec<String>,
    /// Rollouts reconciled at once.
    #[arg(long, env = "AVIARY_CONCURRENCY", default_value_t = 16)]
    concurrency: u16,
    /// How long the main lane waits after a Rollout's last trigger before reconciling it, so
    /// that a burst of changes (a ReplicaSet's counters moving one by one, the controller's own
    /// status write) is one reconcile, not one each. Aborts are not delayed: they take the
    /// urgent lane. 0s reconciles at once.
    #[arg(long, env = "AVIARY_DEBOUNCE", default_value = "0s")]
    debounce: Duration,
    /// Average requests per second of the main lane, the one that moves rollouts forward (0:
    /// unpaced). Watches, aborts, analysis and leader election are never paced.
    #[arg(long, env = "AVIARY_KUBE_API_QPS", default_value_t = 0.0)]
    kube_api_qps: f64,
    /// Requests the main lane may send at once before the pace applies.
    #[arg(long, env = "AVIARY_KUBE_API_BURST", default_value_t = 100)]
    kube_api_burst: u32,
    /// Prometheus for analysis metrics that name no `address`.
    #[arg(long, env = "AVIARY_PROMETHEUS_ADDRESS")]
    prometheus_address: Option<String>,
    /// At SIGTERM, how long reconciles in flight may take to finish before they are dropped and
    /// the lease is released. Keep it below the pod's termination grace period (the chart sets
    /// it 10 s below): killed holding the lease, the standby would wait the lease duration.
    /// Analysis measurements in flight are cancelled at once.
    #[arg(long, env = "AVIARY_SHUTDOWN_DEADLINE", default_value = "20s")]
    shutdown_deadline: Duration,
    /// A PEM bundle of CA certificates trusted, besides the system's, for analysis endpoints
    /// (Prometheus, web): a private CA without `insecure: true`.
    #[arg(long, env = "AVIARY_ANALYSIS_CA_BUNDLE")]
    analysis_ca_bundle: Option<PathBuf>,
    /// Run AnalysisRuns that no Rollout owns (created by hand), as Argo Rollouts does. Off, such
    /// a run ends in Error saying so: the controller measures only what its Rollouts ask for.
    #[arg(long, env = "AVIARY_RUN_UNOWNED_ANALYSIS", default_value_t = false, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    run_unowned_analysis: bool,
    /// Run job metrics (`provider.job`): a Job, so pods, per measurement, with the pod spec the
    /// template wrote. Off, such a run ends in Error saying so (see docs/security.md).
    #[arg(long, env = "AVIARY_ALLOW_JOB_METRICS", default_value_t = false, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    allow_job_metrics: bool,
    /// Log format.
    #[arg(long, env = "AVIARY_LOG_FORMAT", value_parser = ["text", "json"], default_value = "text")]
    log_format: String,
    /// Log level or filter (e.g. `info`, `aviary=debug,kube=warn`).
    #[arg(long, env = "AVIARY_LOG_LEVEL", default_value = "info")]
    log_level: String,

    /// Address of the Prometheus metrics endpoint (`/metrics`).
    #[arg(long, env = "AVIARY_METRICS_ADDR", default_value = "0.0.0.0:8090")]
    metrics_addr: SocketAddr,
    /// Address of the probes (`/healthz`, `/readyz`); may equal --metrics-addr.
    #[arg(long, env = "AVIARY_HEALTH_ADDR", default_value = "0.0.0.0:8080")]
    health_addr: SocketAddr,

    /// Reconcile only while holding the leader Lease (required with more than one replica).
    #[arg(long, env = "AVIARY_LEADER_ELECT", default_value_t = true, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    leader_elect: bool,
    /// Name of the leader Lease.
    #[arg(
        long,
        env = "AVIARY_LEADER_ELECT_LEASE_NAME",
        default_value = "aviary-controller"
    )]
    leader_elect_lease_name: String,
    /// Namespace of the leader Lease (default: $POD_NAMESPACE, else the first --namespace, else the
    /// kubeconfig's or service account's namespace).
    #[arg(long, env = "AVIARY_LEADER_ELECT_NAMESPACE")]
    leader_elect_namespace: Option<String>,
    /// This process's identity in the Lease (default: $POD_NAME, else host name and a random
    /// suffix). Must be unique per replica; a restarted container of the same pod keeps it.
    #[arg(long, env = "AVIARY_LEADER_ELECT_IDENTITY")]
    leader_elect_identity: Option<String>,
    /// How long a Lease is valid without renewal: how long a standby waits after a leader died
    /// without releasing.
    #[arg(
        long,
        env = "AVIARY_LEADER_ELECT_LEASE_DURATION",
        default_value = "15s"
    )]
    leader_elect_lease_duration: Duration,
    /// How long the leader keeps failing to renew before it stops reconciling.
    #[arg(
        long,
        env = "AVIARY_LEADER_ELECT_RENEW_DEADLINE",
        default_value = "10s"
    )]
    leader_elect_renew_deadline: Duration,
    /// How often the leader renews and standbys retry.
    #[arg(long, env = "AVIARY_LEADER_ELECT_RETRY_PERIOD", default_value = "2s")]
    leader_elect_retry_period: Duration,

    /// A webhook to notify (a secret: prefer the environment variable).
    #[arg(long, env = "AVIARY_NOTIFY_WEBHOOK_URL", hide_env_values = true)]
    notify_webhook_url: Option<String>,
    /// Payload of --notify-webhook-url: `slack` (Slack-compatible) or `generic` JSON.
    #[arg(long, env = "AVIARY_NOTIFY_WEBHOOK_FORMAT", default_value = "generic")]
    notify_webhook_format: Format,
    /// Triggers sent to --notify-webhook-url, comma-separated (default: all of promoted,
    /// aborted, rolled-back, paused, analysis-failed, restored).
    #[arg(long, env = "AVIARY_NOTIFY_TRIGGERS", value_delimiter = ',')]
    notify_triggers: Vec<String>,
    /// A notifications file (`webhooks:` list; in the chart, a mounted ConfigMap), re-read when
    /// it changes.
    #[arg(long, env = "AVIARY_NOTIFY_CONFIG")]
    notify_config: Option<PathBuf>,
}

/// The controller's clients, every write of theirs through `fence`, and a client for the Lease
/// (which opens the fence, so must not pass it).
async fn clients(
    args: &Args,
    metrics: Arc<Metrics>,
    fence: &Fence,
) -> anyhow::Result<(Clients, kube::Client)> {
    let config = match &args.kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path)?;
            kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?
        }
        None => kube::Config::infer().await?,
    };
    let pace = Pace::new(args.kube_api_qps, args.kube_api_burst).map_err(anyhow::Error::msg)?;
    // Both clients count their requests in the same metric.
    let counted = || {
        kube::client::ClientBuilder::try_from(config.clone()).map(|b| {
            b.with_layer(&ApiRequestsLayer {
                metrics: metrics.clone(),
            })
        })
    };
    let lease = counted()?.build();
    let unpaced = counted()?.with_layer(&fence.layer()).build();
    let Some(pace) = pace else {
        return Ok((Clients::unpaced_only(unpaced), lease));
    };
    info!(
        qps = pace.qps,
        burst = pace.burst,
        "main lane requests paced"
    );
    let paced = counted()?
        .with_layer(&pace.layer(metrics.clone()))
        .with_layer(&fence.layer())
        .build();
    Ok((Clients::new(paced, unpaced), lease))
}

fn notifier(args: &Args, metrics: Arc<Metrics>) -> anyhow::Result<Notifier> {
    let mut fixed = vec![];
    if let Some(url) = args.notify_webhook_url.as_ref().filter(|u| !u.is_empty()) {
        let triggers = parse_triggers(&args.notify_triggers).map_err(anyhow::Error::msg)?;
        fixed.push(Sink {
            name: "flags".into(),
            url: url.clone(),
            format: args.notify_webhook_format,
            triggers,
            timeout: std::time::Duration::from_secs(5),
        });
    }
    Ok(Notifier::start(
        SinkSource::new(fixed, args.notify_config.clone()),
        metrics,
    ))
}

/// Cancels the token at the first SIGTERM or SIGINT; exits at the second.
fn on_signals(token: CancellationToken) {
    tokio::spawn(async move {
        let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        else {
            warn!("cannot listen for SIGTERM");
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        info!("shutting down: finishing in-flight reconciles, then releasing the lease");
        token.cancel();
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        warn!("second signal: exiting at once");
        std::process::exit(130);
    });
}

/// How analysis providers connect; a CA bundle that cannot be read stops the start with why.
fn analysis_http(args: &Args) -> anyhow::Result<aviary::provider::HttpOptions> {
    let options = aviary::provider::HttpOptions {
        default_prometheus: args.prometheus_address.clone(),
        ..Default::default()
    };
    let Some(path) = &args.analysis_ca_bundle else {
        return Ok(options);
    };
    let pem = std::fs::read(path)
        .with_context(|| format!("--analysis-ca-bundle: cannot read {}", path.display()))?;
    options
        .with_ca_bundle(&pem)
        .with_context(|| format!("--analysis-ca-bundle {}", path.display()))
}

/// The worker threads' stacks: tasks polled there (the watch's abort writes, the lanes'
/// spawned work) run deep chains of async calls, and a debug build (the tests') keeps a large
/// frame for each: the default 2 MiB overflowed on the abort path in `make test`.
const WORKER_STACK: usize = 8 * 1024 * 1024;

fn main() -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(WORKER_STACK)
        .build()?
        .block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    let filter = EnvFilter::try_new(&args.log_level)?;
    if args.log_format == "json" {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init();
    } else {
        // Colours only on a terminal: a pod's log (or a file) gets plain text.
        tracing_subscriber::fmt()
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .with_env_filter(filter)
            .init();
    }

    info!(
        version = aviary::build_info::VERSION,
        revision = aviary::build_info::REVISION,
        built = aviary::build_info::BUILD_DATE,
        "aviary starting"
    );
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::default());
    if args.metrics_addr == args.health_addr {
        let both = Endpoints {
            metrics: Some(metrics.clone()),
            health: Some(health.clone()),
        };
        let at = aviary::metrics::serve(args.metrics_addr, both)
            .await
            .with_context(|| format!("listen on {}", args.metrics_addr))?;
        info!(address = %at, "serving /metrics");
        info!(address = %at, "serving /healthz and /readyz");
    } else {
        let m = Endpoints {
            metrics: Some(metrics.clone()),
            health: None,
        };
        let h = Endpoints {
            metrics: None,
            health: Some(health.clone()),
        };
        let at = aviary::metrics::serve(args.metrics_addr, m)
            .await
            .with_context(|| format!("listen on {}", args.metrics_addr))?;
        info!(address = %at, "serving /metrics");
        let at = aviary::metrics::serve(args.health_addr, h)
            .await
            .with_context(|| format!("listen on {}", args.health_addr))?;
        info!(address = %at, "serving /healthz and /readyz");
    }

    let shutdown = CancellationToken::new();
    on_signals(shutdown.clone());
    // Without leader election this process is the only writer: its fence is always open.
    let fence = if args.leader_elect {
        Fence::closed()
    } else {
        Fence::open()
    };
    let (clients, lease_client) = clients(&args, metrics.clone(), &fence).await?;
    let client = clients.unpaced().clone();
    let sinks = TelemetrySinks {
        notifier: notifier(&args, metrics.clone())?,
        metrics: metrics.clone(),
    };
    let scope = aviary::controller::scope::Scope::from_names(&args.namespace)?;
    let settings = aviary::controller::Settings {
        scope: scope.clone(),
        concurrency: args.concurrency,
        debounce: args.debounce.as_std(),
        http: analysis_http(&args)?,
        run_unowned_analysis: args.run_unowned_analysis,
        allow_job_metrics: args.allow_job_metrics,
    };
    if !aviary::controller::wait_for_crds(&client, &scope, &shutdown).await {
        return Ok(());
    }
    health.set_ready(true);

    if !args.leader_elect {
        warn!("leader election is off: run exactly one replica");
        metrics.set_leader(true);
        let deadline = args.shutdown_deadline.as_std();
        let overdue = {
            let shutdown = shutdown.clone();
            async move {
                shutdown.cancelled().await;
                tokio::time::sleep(deadline).await;
            }
        };
        return tokio::select! {
            res = aviary::controller::run(clients, settings, sinks, shutdown) => res,
            () = overdue => {
                warn!(?deadline, "shutdown deadline passed: dropping the reconciles still in flight");
                Ok(())
            }
        };
    }
    let lease = LeaseSettings {
        name: args.leader_elect_lease_name.clone(),
        namespace: args
            .leader_elect_namespace
            .clone()
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .or_else(|| scope.first().map(str::to_string))
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| client.default_namespace().to_string()),
        identity: args
            .leader_elect_identity
            .clone()
            .or_else(|| std::env::var("POD_NAME").ok())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(aviary::leader::default_identity),
        lease_duration: args.leader_elect_lease_duration.as_std(),
        renew_deadline: args.leader_elect_renew_deadline.as_std(),
        retry_period: args.leader_elect_retry_period.as_std(),
    };
    lease.validate().map_err(anyhow::Error::msg)?;
    let elector = Elector::new(lease_client, lease, fence);
    aviary::leader::run_elected(
        elector,
        health,
        metrics,
        shutdown,
        args.shutdown_deadline.as_std(),
        move |stop| aviary::controller::run(clients.clone(), settings.clone(), sinks.clone(), stop),
    )
    .await
}
