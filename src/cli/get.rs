//! `get rollout NAME [-w]`: the rollout tree, once or redrawn on every change.

use std::time::Duration;

use futures::{StreamExt, stream};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};

use super::info::{RolloutInfo, rollout_info};
use super::render::{Screen, Style, rollout_tree, terminal_size};
use super::{CliError, Cluster, Output, print, selector_string};
use crate::api::wire::ROLLOUT_LABEL;
use crate::api::{AnalysisRun, Rollout};

/// Options of `get rollout`.
#[derive(Clone, Debug, Default)]
pub struct GetOptions {
    pub watch: bool,
    pub no_color: bool,
    pub output: Output,
    /// Stop watching after this long (None: until interrupted).
    pub timeout: Option<Duration>,
}

/// Reads everything the tree shows.
pub async fn fetch(cluster: &Cluster, name: &str) -> Result<RolloutInfo, CliError> {
    let ro = cluster.rollout(name).await?;
    let (rss, pods, runs) = futures::try_join!(
        cluster.replica_sets(&ro),
        cluster.pods(&ro),
        cluster.analysis_runs(&ro)
    )?;
    Ok(rollout_info(&ro, &rss, &pods, &runs))
}

pub async fn run(cluster: &Cluster, name: &str, opts: &GetOptions) -> Result<(), CliError> {
    let info = fetch(cluster, name).await?;
    if !opts.watch {
        if let Some(text) = opts.output.encode(&info)? {
            return print(&text);
        }
        let style = Style {
            color: Style::color_for_stdout(opts.no_color),
            now: Some(Timestamp::now()),
        };
        return print(&rollout_tree(&info, &style));
    }
    watch(cluster, name, info, opts).await
}

async fn watch(
    cluster: &Cluster,
    name: &str,
    first: RolloutInfo,
    opts: &GetOptions,
) -> Result<(), CliError> {
    use std::io::IsTerminal;
    let tty = std::io::stdout().is_terminal() && opts.output == super::Output::Text;
    let color = tty && Style::color_for_stdout(opts.no_color);
    let mut screen = Screen::new(tty);
    let ns = cluster.namespace.clone();
    let client = cluster.client.clone();
    let ro_api: Api<Rollout> = Api::namespaced(client.clone(), &ns);
    let selector = ro_api
        .get(name)
        .await
        .map(|ro| selector_string(&ro))
        .unwrap_or_default();
    // Any change to the rollout, its ReplicaSets, pods or runs triggers a redraw.
    let triggers = stream::select_all(vec![
        watcher(
            ro_api,
            watcher::Config::default().fields(&format!("metadata.name={name}")),
        )
        .default_backoff()
        .map(|_| ())
        .boxed(),
        watcher(
            Api::<ReplicaSet>::namespaced(client.clone(), &ns),
            watcher::Config::default().labels(&format!("{ROLLOUT_LABEL}={name}")),
        )
        .default_backoff()
        .map(|_| ())
        .boxed(),
        watcher(
            Api::<Pod>::namespaced(client.clone(), &ns),
            watcher::Config::default().labels(&selector),
        )
        .default_backoff()
        .map(|_| ())
        .boxed(),
        watcher(
            Api::<AnalysisRun>::namespaced(client.clone(), &ns),
            watcher::Config::default(),
        )
        .default_backoff()
        .map(|_| ())
        .boxed(),
    ]);
    let mut triggers = triggers.fuse();
    let deadline = opts.timeout.map(|t| tokio::time::Instant::now() + t);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut info = Some(first);
    let mut error_line: Option<String> = None;
    loop {
        if let Some(i) = &info {
            draw(&mut screen, i, color, opts.output, error_line.as_deref())?;
        }
        let sleep_until =
            deadline.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        let changed = tokio::select! {
            _ = triggers.next() => {
                // Let a burst of events settle into one redraw.
                tokio::time::sleep(Duration::from_millis(100)).await;
                while let Some(Some(())) = futures::FutureExt::now_or_never(triggers.next()) {}
                true
            }
            // Ages move on a terminal: redraw what we have, no new reads.
            _ = tick.tick() => false,
            _ = tokio::time::sleep_until(sleep_until) => {
                return Ok(());
            }
        };
        if !changed {
            continue;
        }
        match fetch(cluster, name).await {
            Ok(i) => {
                info = Some(i);
                error_line = None;
            }
            Err(e @ CliError::NotFound(_)) => return Err(e),
            Err(e) => error_line = Some(format!("error: {} (retrying)", e.one_line())),
        }
    }
}

fn draw(
    screen: &mut Screen,
    info: &RolloutInfo,
    color: bool,
    output: Output,
    error_line: Option<&str>,
) -> Result<(), CliError> {
    let (frame, key) = match output.encode(info)? {
        Some(text) => (text.clone(), text),
        None => {
            let now = Timestamp::now();
            let mut frame = rollout_tree(
                info,
                &Style {
                    color,
                    now: Some(now),
                },
            );
            let mut key = rollout_tree(
                info,
                &Style {
                    color: false,
                    now: None,
                },
            );
            if let Some(e) = error_line {
                frame.push_str(e);
                frame.push('\n');
                key.push_str(e);
            }
            (frame, key)
        }
    };
    if let Some(bytes) = screen.frame(&frame, &key, terminal_size()) {
        print(&bytes)?;
    }
    Ok(())
}
