//! The Aviary controller.

use clap::Parser;
use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};
use tracing_subscriber::EnvFilter;

#[derive(Parser, Debug)]
#[command(
    name = "aviary",
    version,
    about = "Progressive delivery controller for Kubernetes"
)]
struct Args {
    /// Path to a kubeconfig (default: $KUBECONFIG, ~/.kube/config, or in-cluster).
    #[arg(long, env = "AVIARY_KUBECONFIG")]
    kubeconfig: Option<std::path::PathBuf>,
    /// Watch one namespace only (default: all namespaces).
    #[arg(long, env = "AVIARY_NAMESPACE")]
    namespace: Option<String>,
    /// Rollouts reconciled at once.
    #[arg(long, env = "AVIARY_CONCURRENCY", default_value_t = 16)]
    concurrency: u16,
    /// Prometheus for analysis metrics that name no `address`.
    #[arg(long, env = "AVIARY_PROMETHEUS_ADDRESS")]
    prometheus_address: Option<String>,
    /// Log format.
    #[arg(long, env = "AVIARY_LOG_FORMAT", value_parser = ["text", "json"], default_value = "text")]
    log_format: String,
    /// Log level or filter (e.g. `info`, `aviary=debug,kube=warn`).
    #[arg(long, env = "AVIARY_LOG_LEVEL", default_value = "info")]
    log_level: String,
}

async fn client(args: &Args) -> anyhow::Result<Client> {
    Ok(match &args.kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path)?;
            Client::try_from(
                kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?,
            )?
        }
        None => Client::try_default().await?,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let filter = EnvFilter::try_new(&args.log_level)?;
    if args.log_format == "json" {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init();
    } else {
        use std::io::IsTerminal;
        tracing_subscriber::fmt()
            .with_ansi(std::io::stderr().is_terminal())
            .with_env_filter(filter)
            .init();
    }
    let client = client(&args).await?;
    aviary::controller::run(
        client,
        aviary::controller::Settings {
            namespace: args.namespace.clone(),
            concurrency: args.concurrency,
            prometheus_address: args.prometheus_address.clone(),
        },
    )
    .await
}
