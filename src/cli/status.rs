//! `status NAME [--timeout D]`: waits for a verdict, for CI/CD pipelines. Exit 0 when Healthy,
//! 1 when Degraded or aborted (with the message), 2 when the timeout runs out; while waiting,
//! prints `Phase - message` whenever it changes. Paused keeps waiting, as in Argo Rollouts.

use std::time::Duration;

use futures::StreamExt;
use kube::ResourceExt;
use kube::runtime::{WatchStreamExt, watcher};
use serde::Serialize;

use super::info::display_phase;
use super::{CliError, Cluster, Op, Output, print};
use crate::api::{Rollout, RolloutPhase};

/// What a rollout's status means for someone waiting on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Healthy,
    /// Degraded or aborted, with the message.
    Degraded(String),
    /// Still going (Progressing or Paused), with the line to print.
    Waiting(String),
}

/// The verdict on a rollout as read now. A status the controller computed for an older
/// generation says nothing about the current spec: that is still Waiting.
pub fn verdict(ro: &Rollout) -> Verdict {
    let (phase, message) = display_phase(ro);
    let line = match &message {
        Some(m) => format!("{phase} - {m}"),
        None => phase.clone(),
    };
    let st = ro.status.clone().unwrap_or_default();
    let observed =
        ro.metadata.generation.is_none() || st.observed_generation == ro.metadata.generation;
    if !observed || ro.status.is_none() {
        return Verdict::Waiting(line);
    }
    if phase == RolloutPhase::Degraded.as_str() || st.is_aborted() {
        let why = message.unwrap_or_else(|| "rollout aborted".into());
        return Verdict::Degraded(format!(
            "The rollout is in a degraded state with message: {why}"
        ));
    }
    if phase == RolloutPhase::Healthy.as_str() {
        return Verdict::Healthy;
    }
    Verdict::Waiting(line)
}

/// What `-o json|yaml` prints at the end.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusResult {
    pub name: String,
    pub namespace: String,
    /// Healthy, Degraded, or the phase when the timeout ran out.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub timed_out: bool,
}

/// Parses `--timeout`: `0` (wait forever), integer seconds, or `30s`, `5m`, `1h30m`.
pub fn parse_timeout(s: &str) -> Result<Option<Duration>, CliError> {
    let d = parse_duration(s).map_err(|e| {
        CliError::Usage(format!(
            "invalid --timeout '{s}': {e} (e.g. 30s, 5m, 1h; 0 waits forever)"
        ))
    })?;
    Ok((!d.is_zero()).then_some(d))
}

/// A duration: integer seconds or Go-style (`30s`, `5m`, `1h30m`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    crate::api::Duration::parse(s)
        .map(|d| d.as_std())
        .map_err(|e| e.to_string())
}

pub async fn run(
    cluster: &Cluster,
    name: &str,
    timeout: Option<Duration>,
    watch: bool,
    output: Output,
) -> Result<(), CliError> {
    let mut ro = cluster.rollout(name).await?;
    let progress = |line: &str| -> Result<(), CliError> {
        if output == Output::Text {
            print(&format!("{line}\n"))
        } else {
            eprintln!("{line}");
            Ok(())
        }
    };
    let finish = |ro: &Rollout, timed_out: bool| -> Result<(), CliError> {
        let (status, message) = display_phase(ro);
        let result = StatusResult {
            name: ro.name_any(),
            namespace: ro.namespace().unwrap_or_default(),
            status,
            message,
            timed_out,
        };
        if let Some(text) = output.encode(&result)? {
            print(&text)?;
        }
        Ok(())
    };
    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    let op = Op::new("watch", "rollouts.aviary.dev", &cluster.namespace).named(name);
    let mut stream = watcher(
        cluster.rollouts(),
        watcher::Config::default().fields(&format!("metadata.name={name}")),
    )
    .default_backoff()
    .boxed();
    let mut last_line = String::new();
    loop {
        match verdict(&ro) {
            Verdict::Healthy => {
                progress("Healthy")?;
                return finish(&ro, false);
            }
            Verdict::Degraded(msg) => {
                let (phase, m) = display_phase(&ro);
                let line = m.map(|m| format!("{phase} - {m}")).unwrap_or(phase);
                if line != last_line {
                    progress(&line)?;
                }
                finish(&ro, false)?;
                return Err(CliError::Degraded(msg));
            }
            Verdict::Waiting(line) => {
                if line != last_line {
                    progress(&line)?;
                    last_line = line;
                }
                if !watch {
                    finish(&ro, false)?;
                    return Err(CliError::Timeout(format!(
                        "rollout '{name}' is not Healthy yet ({last_line})"
                    )));
                }
            }
        }
        let until =
            deadline.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(86400));
        tokio::select! {
            ev = stream.next() => match ev {
                Some(Ok(watcher::Event::Apply(r))) | Some(Ok(watcher::Event::InitApply(r))) => ro = r,
                Some(Ok(watcher::Event::Delete(_))) => {
                    return Err(CliError::NotFound(format!("rollout '{name}' was deleted while waiting for it")));
                }
                Some(Ok(_)) => {}
                Some(Err(watcher::Error::InitialListFailed(e))) | Some(Err(watcher::Error::WatchFailed(e))) => {
                    let e = cluster.error(e, &op).await;
                    if matches!(e, CliError::Forbidden { .. } | CliError::NotInstalled { .. }) {
                        return Err(e);
                    }
                }
                Some(Err(_)) => {}
                None => return Err(CliError::Api("the watch ended".into())),
            },
            _ = tokio::time::sleep_until(until) => {
                finish(&ro, true)?;
                let waited = timeout.map(|t| crate::api::Duration::from(t).to_string()).unwrap_or_default();
                return Err(CliError::Timeout(format!(
                    "timed out after {waited} waiting for rollout '{name}' to become Healthy ({last_line})"
                )));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{RolloutSpec, RolloutStatus};

    fn ro(generation: i64, status: Option<RolloutStatus>) -> Rollout {
        let mut r = Rollout::new("web", RolloutSpec::default());
        r.metadata.generation = Some(generation);
        r.status = status;
        r
    }

    fn st(observed: i64, phase: RolloutPhase, message: &str, abort: bool) -> Option<RolloutStatus> {
        Some(RolloutStatus {
            observed_generation: Some(observed),
            phase: Some(phase),
            message: (!message.is_empty()).then(|| message.to_string()),
            abort: abort.then_some(true),
            ..Default::default()
        })
    }

    #[test]
    fn verdicts() {
        use RolloutPhase::*;
        let cases = [
            (ro(2, st(2, Healthy, "", false)), Verdict::Healthy),
            // A Healthy status for generation 1 says nothing about generation 2.
            (
                ro(2, st(1, Healthy, "", false)),
                Verdict::Waiting("Progressing - waiting for the controller to observe generation 2".into()),
            ),
            (
                ro(3, st(3, Degraded, "Rollout aborted update to revision abc: aborted by user", true)),
                Verdict::Degraded("The rollout is in a degraded state with message: Rollout aborted update to revision abc: aborted by user".into()),
            ),
            (
                ro(3, st(3, Paused, "CanaryPauseStep", false)),
                Verdict::Waiting("Paused - CanaryPauseStep".into()),
            ),
            (
                ro(3, st(3, Progressing, "waiting for all steps to complete (step 0/4)", false)),
                Verdict::Waiting("Progressing - waiting for all steps to complete (step 0/4)".into()),
            ),
            (
                ro(1, None),
                Verdict::Waiting("Progressing - waiting for the controller: the rollout has no status yet (is the Aviary controller running?)".into()),
            ),
        ];
        for (r, want) in cases {
            assert_eq!(verdict(&r), want, "{:?}", r.status);
        }
    }

    #[test]
    fn timeouts_parse() {
        assert_eq!(parse_timeout("0").ok(), Some(None));
        assert_eq!(
            parse_timeout("30").ok(),
            Some(Some(Duration::from_secs(30)))
        );
        assert_eq!(
            parse_timeout("5m").ok(),
            Some(Some(Duration::from_secs(300)))
        );
        assert!(matches!(parse_timeout("soon"), Err(CliError::Usage(_))));
    }
}
