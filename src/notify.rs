//! Webhook notifications: promoted, aborted, rolled back, paused (waiting for a person),
//! analysis failed, restored.
//!
//! Sinks come from flags (one webhook) and from a YAML file — in the chart, a ConfigMap mounted
//! as a file, re-read when it changes. A sink posts either Slack-compatible JSON (`text` plus a
//! coloured attachment; Slack, Mattermost and Rocket.Chat incoming webhooks accept it) or generic
//! JSON (every field, machine-readable). A webhook URL is a secret (Slack's carries a token):
//! it can come from an environment variable (`urlFromEnv`, fed by a Secret) and is never logged.
//!
//! Sending never blocks a rollout: the controller hands notifications to a bounded queue
//! (dropped and counted when full) and one background task posts them in order, with a timeout
//! and one retry. Failures are logged and counted in `aviary_notifications_total`.
//!
//! ```yaml
//! webhooks:
//!   - name: slack-deploys
//!     urlFromEnv: SLACK_WEBHOOK_URL     # or url: https://…
//!     format: slack                     # or generic
//!     triggers: [promoted, aborted, paused, analysis-failed]   # default: all
//!     timeout: 5s
//! ```

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use k8s_openapi::jiff::Timestamp;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

use crate::delivery::{Transition, Trigger};
use crate::metrics::Metrics;

/// Payload shape.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// `{"text": …, "attachments": [{"color": …, "fields": […]}]}`.
    Slack,
    /// Every field of the notification, flat.
    #[default]
    Generic,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "slack" => Ok(Format::Slack),
            "generic" => Ok(Format::Generic),
            _ => Err(format!("unknown webhook format '{s}' (slack or generic)")),
        }
    }
}

/// One webhook as configured in the file.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SinkConfig {
    pub name: String,
    #[serde(default)]
    pub url: Option<String>,
    /// Name of an environment variable holding the URL (fed from a Secret).
    #[serde(default)]
    pub url_from_env: Option<String>,
    #[serde(default)]
    pub format: Format,
    /// Triggers to send; empty: all.
    #[serde(default)]
    pub triggers: Vec<String>,
    #[serde(default)]
    pub timeout: Option<crate::api::Duration>,
}

/// The notifications file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NotifyFile {
    #[serde(default)]
    pub webhooks: Vec<SinkConfig>,
}

/// A webhook ready to post to.
#[derive(Clone, PartialEq)]
pub struct Sink {
    pub name: String,
    pub url: String,
    pub format: Format,
    pub triggers: BTreeSet<Trigger>,
    pub timeout: Duration,
}

impl std::fmt::Debug for Sink {
    // The URL is a secret: never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sink")
            .field("name", &self.name)
            .field("format", &self.format)
            .field("triggers", &self.triggers)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Parses trigger names; empty means all.
pub fn parse_triggers<S: AsRef<str>>(names: &[S]) -> Result<BTreeSet<Trigger>, String> {
    if names.is_empty() {
        return Ok(Trigger::ALL.into_iter().collect());
    }
    names.iter().map(|n| n.as_ref().parse()).collect()
}

impl SinkConfig {
    /// Resolves the URL and triggers. `env` looks up environment variables.
    pub fn resolve(&self, env: impl Fn(&str) -> Option<String>) -> Result<Sink, String> {
        let url = match (&self.url, &self.url_from_env) {
            (Some(u), None) => u.clone(),
            (None, Some(var)) => env(var).filter(|u| !u.is_empty()).ok_or_else(|| {
                format!(
                    "webhook '{}': environment variable {var} is not set",
                    self.name
                )
            })?,
            _ => {
                return Err(format!(
                    "webhook '{}': set exactly one of url and urlFromEnv",
                    self.name
                ));
            }
        };
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!(
                "webhook '{}': the URL must start with http:// or https://",
                self.name
            ));
        }
        Ok(Sink {
            name: self.name.clone(),
            url,
            format: self.format,
            triggers: parse_triggers(&self.triggers)
                .map_err(|e| format!("webhook '{}': {e}", self.name))?,
            timeout: self
                .timeout
                .as_ref()
                .map(|d| d.as_std())
                .unwrap_or(DEFAULT_TIMEOUT),
        })
    }
}

/// Reads and resolves a notifications file.
pub fn load_file(path: &std::path::Path) -> Result<Vec<Sink>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("read notifications file {}: {e}", path.display()))?;
    if text.trim().is_empty() {
        return Ok(vec![]);
    }
    let file: NotifyFile = serde_yaml::from_str(&text)
        .map_err(|e| format!("notifications file {}: {e}", path.display()))?;
    file.webhooks
        .iter()
        .map(|s| s.resolve(|v| std::env::var(v).ok()))
        .collect()
}

/// One notification.
#[derive(Clone, Debug, PartialEq)]
pub struct Notification {
    pub trigger: Trigger,
    pub namespace: String,
    pub rollout: String,
    pub revision: String,
    pub message: String,
    pub time: Timestamp,
    /// Extra machine-readable fields (lead time, run name, …).
    pub details: serde_json::Map<String, Value>,
}

fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m {}s", s / 60, s % 60),
        _ => format!("{}h {}m", s / 3600, (s % 3600) / 60),
    }
}

impl Notification {
    /// The notification for a transition of `namespace/rollout`.
    pub fn of(namespace: &str, rollout: &str, t: &Transition, time: Timestamp) -> Self {
        let mut details = serde_json::Map::new();
        let (revision, message) = match t {
            Transition::Promoted {
                revision,
                lead_time,
            } => {
                if let Some(d) = lead_time {
                    details.insert("leadTimeSeconds".into(), json!(d.as_secs_f64()));
                }
                (
                    revision.clone(),
                    match lead_time {
                        Some(d) => format!(
                            "revision {revision} fully promoted ({} after it was created)",
                            human(*d)
                        ),
                        None => format!("revision {revision} fully promoted"),
                    },
                )
            }
            Transition::Aborted { revision, message } => (revision.clone(), message.clone()),
            Transition::RolledBack { revision } => (
                revision.clone(),
                format!("update abandoned: back to the stable revision {revision}"),
            ),
            Transition::Paused { revision, reason } => (revision.clone(), reason.clone()),
            Transition::AnalysisFailed {
                run,
                phase,
                message,
            } => {
                details.insert("analysisRun".into(), json!(run));
                details.insert("analysisPhase".into(), json!(phase.as_str()));
                (
                    String::new(),
                    format!("AnalysisRun {run} {}: {message}", phase.as_str()),
                )
            }
            Transition::Restored { revision, after } => {
                details.insert("timeToRestoreSeconds".into(), json!(after.as_secs_f64()));
                (
                    revision.clone(),
                    format!(
                        "healthy again on revision {revision}, {} after the abort",
                        human(*after)
                    ),
                )
            }
        };
        Notification {
            trigger: t.trigger(),
            namespace: namespace.into(),
            rollout: rollout.into(),
            revision,
            message,
            time,
            details,
        }
    }

    fn title(&self) -> &'static str {
        match self.trigger {
            Trigger::Promoted => "Rollout promoted",
            Trigger::Aborted => "Rollout aborted",
            Trigger::RolledBack => "Rollout rolled back",
            Trigger::Paused => "Rollout paused",
            Trigger::AnalysisFailed => "Analysis failed",
            Trigger::Restored => "Rollout restored",
        }
    }

    fn color(&self) -> &'static str {
        match self.trigger {
            Trigger::Promoted | Trigger::Restored => "#2eb67d",
            Trigger::Paused => "#ecb22e",
            Trigger::Aborted | Trigger::AnalysisFailed | Trigger::RolledBack => "#e01e5a",
        }
    }

    /// The JSON body for a sink of `format`.
    pub fn payload(&self, format: Format) -> Value {
        match format {
            Format::Generic => {
                let mut v = json!({
                    "source": "aviary",
                    "trigger": self.trigger.as_str(),
                    "namespace": self.namespace,
                    "rollout": self.rollout,
                    "revision": self.revision,
                    "message": self.message,
                    "time": self.time.to_string(),
                });
                if let Some(obj) = v.as_object_mut() {
                    for (k, val) in &self.details {
                        obj.insert(k.clone(), val.clone());
                    }
                }
                v
            }
            Format::Slack => {
                let mut fields = vec![
                    json!({"title": "Rollout", "value": format!("{}/{}", self.namespace, self.rollout), "short": true}),
                ];
                if !self.revision.is_empty() {
                    fields
                        .push(json!({"title": "Revision", "value": self.revision, "short": true}));
                }
                json!({
                    "text": format!("*{}*: `{}/{}` {}", self.title(), self.namespace, self.rollout, self.message),
                    "attachments": [{
                        "color": self.color(),
                        "title": self.title(),
                        "text": self.message,
                        "fields": fields,
                        "footer": "aviary",
                        "ts": self.time.as_second(),
                    }],
                })
            }
        }
    }
}

/// Where sinks come from: fixed ones (flags) and a file re-read when it changes.
pub struct SinkSource {
    fixed: Vec<Sink>,
    file: Option<PathBuf>,
    loaded: Vec<Sink>,
    file_mtime: Option<SystemTime>,
}

impl SinkSource {
    pub fn new(fixed: Vec<Sink>, file: Option<PathBuf>) -> Self {
        SinkSource {
            fixed,
            file,
            loaded: vec![],
            file_mtime: None,
        }
    }

    /// Whether any sink is or could be configured.
    pub fn is_empty(&self) -> bool {
        self.fixed.is_empty() && self.file.is_none()
    }

    /// The sinks now, re-reading the file when its modification time changed. A file that no
    /// longer parses keeps the sinks it had.
    pub fn current(&mut self) -> Vec<Sink> {
        if let Some(path) = &self.file {
            let mtime = std::fs::metadata(path).and_then(|m| m.modified()).ok();
            if mtime != self.file_mtime {
                self.file_mtime = mtime;
                match load_file(path) {
                    Ok(sinks) => {
                        info!(file = %path.display(), sinks = ?sinks, "notification sinks loaded");
                        self.loaded = sinks;
                    }
                    Err(e) => error!(error = %e, "notification sinks not reloaded"),
                }
            }
        }
        self.fixed.iter().chain(&self.loaded).cloned().collect()
    }
}

/// Hands notifications to the background sender. Cheap to clone.
#[derive(Clone)]
pub struct Notifier {
    tx: Option<mpsc::Sender<Notification>>,
    metrics: Arc<Metrics>,
}

/// Notifications waiting to be sent beyond which new ones are dropped (and counted).
const QUEUE: usize = 1024;

impl Notifier {
    /// A notifier that sends nothing.
    pub fn disabled(metrics: Arc<Metrics>) -> Self {
        Notifier { tx: None, metrics }
    }

    /// Starts the background sender (none when no sink is configured).
    pub fn start(mut source: SinkSource, metrics: Arc<Metrics>) -> Self {
        if source.is_empty() {
            return Self::disabled(metrics);
        }
        // Load once now, so a bad file shows in the logs at startup.
        let _ = source.current();
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(send_loop(rx, source, metrics.clone()));
        Notifier {
            tx: Some(tx),
            metrics,
        }
    }

    /// Queues a notification; never waits.
    pub fn notify(&self, n: Notification) {
        let Some(tx) = &self.tx else { return };
        if let Err(e) = tx.try_send(n) {
            let n = match e {
                mpsc::error::TrySendError::Full(n) | mpsc::error::TrySendError::Closed(n) => n,
            };
            warn!(trigger = n.trigger.as_str(), rollout = %format!("{}/{}", n.namespace, n.rollout), "notification queue full: dropped");
            self.metrics.notification("queue", n.trigger, "dropped");
        }
    }
}

async fn post(client: &reqwest::Client, sink: &Sink, body: &Value) -> Result<(), String> {
    let resp = client
        .post(&sink.url)
        .timeout(sink.timeout)
        .json(body)
        .send()
        .await
        .map_err(|e| e.without_url().to_string())?;
    let status = resp.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("HTTP {status}"))
    }
}

async fn send_loop(
    mut rx: mpsc::Receiver<Notification>,
    mut source: SinkSource,
    metrics: Arc<Metrics>,
) {
    let client = match reqwest::Client::builder().build() {
        Ok(c) => c,
        Err(e) => {
            error!(error = %e, "cannot build the webhook HTTP client: notifications disabled");
            return;
        }
    };
    while let Some(n) = rx.recv().await {
        for sink in source
            .current()
            .into_iter()
            .filter(|s| s.triggers.contains(&n.trigger))
        {
            let body = n.payload(sink.format);
            let mut result = post(&client, &sink, &body).await;
            if result.is_err() {
                tokio::time::sleep(Duration::from_millis(500)).await;
                result = post(&client, &sink, &body).await;
            }
            match result {
                Ok(()) => {
                    debug!(sink = %sink.name, trigger = n.trigger.as_str(), "notification sent");
                    metrics.notification(&sink.name, n.trigger, "sent");
                }
                Err(e) => {
                    warn!(sink = %sink.name, trigger = n.trigger.as_str(), rollout = %format!("{}/{}", n.namespace, n.rollout), error = %e, "notification not sent");
                    metrics.notification(&sink.name, n.trigger, "failed");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Notification {
        Notification::of(
            "shop",
            "web",
            &Transition::Promoted {
                revision: "6f7c9".into(),
                lead_time: Some(Duration::from_secs(754)),
            },
            "2026-01-01T10:00:00Z".parse().expect("time"),
        )
    }

    #[test]
    fn generic_payload_carries_every_field() {
        assert_eq!(
            sample().payload(Format::Generic),
            json!({
                "source": "aviary", "trigger": "promoted", "namespace": "shop", "rollout": "web",
                "revision": "6f7c9", "message": "revision 6f7c9 fully promoted (12m 34s after it was created)",
                "time": "2026-01-01T10:00:00Z", "leadTimeSeconds": 754.0
            })
        );
    }

    #[test]
    fn slack_payload_has_text_and_a_coloured_attachment() {
        let p = sample().payload(Format::Slack);
        assert_eq!(
            p["text"],
            "*Rollout promoted*: `shop/web` revision 6f7c9 fully promoted (12m 34s after it was created)"
        );
        assert_eq!(p["attachments"][0]["color"], "#2eb67d");
        assert_eq!(p["attachments"][0]["fields"][0]["value"], "shop/web");
        assert_eq!(p["attachments"][0]["ts"], 1767261600);
    }

    #[test]
    fn sinks_resolve_from_the_file_format() {
        let file: NotifyFile = serde_yaml::from_str(
            "webhooks:\n- name: slack\n  urlFromEnv: HOOK\n  format: slack\n  triggers: [promoted, analysis-failed]\n  timeout: 2s\n- name: all\n  url: http://127.0.0.1:9/x\n",
        )
        .expect("parse");
        let env = |v: &str| (v == "HOOK").then(|| "https://hooks.example/T/B/x".to_string());
        let slack = file.webhooks[0].resolve(env).expect("slack");
        assert_eq!(slack.format, Format::Slack);
        assert_eq!(
            slack.triggers,
            BTreeSet::from([Trigger::Promoted, Trigger::AnalysisFailed])
        );
        assert_eq!(slack.timeout, Duration::from_secs(2));
        assert!(
            !format!("{slack:?}").contains("hooks.example"),
            "URL is secret"
        );
        let all = file.webhooks[1].resolve(env).expect("all");
        assert_eq!(all.triggers.len(), Trigger::ALL.len());
        assert_eq!(all.format, Format::Generic);

        let missing = SinkConfig {
            url_from_env: Some("NOPE".into()),
            ..file.webhooks[0].clone()
        };
        assert!(missing.resolve(env).is_err());
        let bad_trigger = SinkConfig {
            triggers: vec!["deployed".into()],
            ..file.webhooks[1].clone()
        };
        assert!(bad_trigger.resolve(env).is_err());
        assert!(
            serde_yaml::from_str::<NotifyFile>("webhooks:\n- name: x\n  uri: http://a\n").is_err(),
            "unknown fields are refused"
        );
    }
}
