//! Traffic simulator for the demo and manual testing: serves `http_requests_total` and
//! `http_request_duration_seconds` as if requests to a Rollout were split by the weights its
//! routing objects show, registered with the local Prometheus as a scrape target.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aviary_trafficsim::exporter::Exporter;
use aviary_trafficsim::traffic::{Behaviour, SimConfig, run};
use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    name = "aviary-trafficsim",
    about = "Simulated traffic split by a Rollout's weights"
)]
struct Args {
    #[arg(long, short = 'n')]
    namespace: String,
    #[arg(long)]
    rollout: String,
    /// Requests per second across the rollout's Services.
    #[arg(long, default_value_t = 200.0)]
    rps: f64,
    /// How one image misbehaves: IMAGE=ERROR_RATE[,LATENCY_SECONDS] (repeatable).
    #[arg(long = "image")]
    images: Vec<String>,
}

fn parse_behaviour(spec: &str) -> anyhow::Result<(String, Behaviour)> {
    let (image, rest) = spec
        .rsplit_once('=')
        .ok_or_else(|| anyhow::anyhow!("--image {spec}: expected IMAGE=ERROR_RATE[,LATENCY]"))?;
    let mut parts = rest.split(',');
    let error_rate = parts.next().unwrap_or("0").trim().parse()?;
    let latency = parts
        .next()
        .map(|l| l.trim().parse())
        .transpose()?
        .unwrap_or(0.02);
    Ok((
        image.to_string(),
        Behaviour {
            error_rate,
            latency,
        },
    ))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let behaviours: BTreeMap<String, Behaviour> = args
        .images
        .iter()
        .map(|s| parse_behaviour(s))
        .collect::<anyhow::Result<_>>()?;
    let client = kube::Client::try_default().await?;
    let exporter =
        Arc::new(Exporter::start(&format!("trafficsim-{}-{}", args.namespace, args.rollout)).await);
    eprintln!(
        "aviary-trafficsim: serving metrics on http://{}/metrics",
        exporter.addr
    );
    let cfg = Arc::new(Mutex::new(SimConfig {
        namespace: args.namespace,
        rollout: args.rollout,
        rps: args.rps,
        behaviours,
        default: Behaviour::default(),
        service_prefix: String::new(),
        service_label: None,
    }));
    tokio::select! {
        _ = run(client, exporter, cfg, Duration::from_millis(250)) => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}
