//! A whole AnalysisRun: its metrics compiled once, which are due, and the run's phase.
//!
//! The controller drives a run as observe → plan → act → report:
//!
//! 1. [`Analysis::new`] substitutes args and compiles conditions and policies. An error here is
//!    a bad spec or bad args: [`reject`] the run (phase Error at once).
//! 2. [`Analysis::assess`] brings phases, summaries and the message up to date.
//! 3. [`Analysis::due`] names the metrics to measure now; the controller queries each provider,
//!    judges the value ([`crate::analysis::measurement::Conditions::measure`]) and
//!    [`Analysis::record`]s the measurement, then assesses again.
//! 4. [`Analysis::requeue_after`] says when to look again.
//!
//! Run phase: while a metric (dry-run ones included) is unfinished, Running. The first
//! non-dry-run metric that ends Failed, Error or Inconclusive — or `spec.terminate` — makes the
//! run *terminating*: nothing more is measured and unfinished metrics end Successful. The run
//! then takes the worst non-dry-run metric phase (Successful < Running < Pending < Inconclusive
//! < Error < Failed); dry-run metrics are reported in `dryRunSummary` only.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use regex::Regex;
use thiserror::Error;

use super::condition::ConditionError;
use super::json_path::JsonPath;
use super::measurement::Conditions;
use super::metric::{MetricPolicy, PolicyError};
use super::template::{Args, TemplateError, render, render_promql};
use super::time_expr::TimeExpr;
use crate::api::{
    AnalysisPhase, AnalysisRunSpec, AnalysisRunStatus, DEFAULT_MEASUREMENT_RETENTION, Measurement,
    Metric, MetricResult, RunSummary,
};

/// Metric metadata key holding the query actually sent, as Argo names it.
pub const RESOLVED_PROMETHEUS_QUERY: &str = "ResolvedPrometheusQuery";
/// The run message when `spec.terminate` ended it and no metric did worse (Argo's wording).
pub const TERMINATED: &str = "Run Terminated";

/// Why a run cannot start: it ends in Error at once with this as its message.
#[derive(Debug, Error)]
pub enum RunError {
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error(transparent)]
    Condition(#[from] ConditionError),
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error("{field}[{index}]: Rule didn't match any metric name(s)")]
    UnmatchedRule { field: &'static str, index: usize },
    #[error("{field}[{index}]: invalid metricName pattern: {message}")]
    BadPattern {
        field: &'static str,
        index: usize,
        message: String,
    },
    #[error("metric \"{metric}\": {message}")]
    JsonPath { metric: String, message: String },
    #[error("metric \"{metric}\": {field}: {message}")]
    Resolved {
        metric: String,
        field: &'static str,
        message: String,
    },
    #[error("metric \"{metric}\": args could not be substituted: {message}")]
    Substitution { metric: String, message: String },
    /// The run may not start as asked: a Secret it may not use, a run no Rollout owns.
    #[error("{0}")]
    Refused(String),
}

/// One metric of a run, ready to measure.
#[derive(Debug)]
pub struct MetricPlan {
    /// The metric with args substituted (the provider reads its fields from here).
    pub metric: Metric,
    pub policy: MetricPolicy,
    pub conditions: Conditions,
    pub dry_run: bool,
    /// The PromQL to send, with args substituted and escaped; `None` for other providers.
    pub query: Option<String>,
    /// The query with secret args redacted, for status and logs.
    pub query_for_status: Option<String>,
    /// A web metric's `jsonPath`, parsed (`None` for other providers or when unset).
    pub json_path: Option<JsonPath>,
    /// A Prometheus `rangeQuery`, parsed (`None` for an instant query).
    pub range: Option<RangePlan>,
}

/// A range query's bounds, evaluated at each measurement.
#[derive(Debug)]
pub struct RangePlan {
    pub start: TimeExpr,
    pub end: TimeExpr,
    pub step: std::time::Duration,
}

impl RangePlan {
    fn of(metric: &Metric) -> Result<Option<RangePlan>, RunError> {
        let Some(range) = metric
            .provider
            .prometheus
            .as_ref()
            .and_then(|p| p.range_query.as_ref())
        else {
            return Ok(None);
        };
        let error = |field: &'static str, message: String| RunError::Resolved {
            metric: metric.name.clone(),
            field,
            message,
        };
        let step = range
            .step
            .duration()
            .map(crate::api::Duration::as_std)
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                error(
                    "rangeQuery.step",
                    format!("\"{}\" is not a duration above zero", range.step),
                )
            })?;
        Ok(Some(RangePlan {
            start: TimeExpr::parse(&range.start).map_err(|e| error("rangeQuery.start", e))?,
            end: TimeExpr::parse(&range.end).map_err(|e| error("rangeQuery.end", e))?,
            step,
        }))
    }
}

/// A run's metrics, compiled.
#[derive(Debug)]
pub struct Analysis {
    metrics: Vec<MetricPlan>,
    terminate: bool,
    args: Args,
}

impl Analysis {
    /// Substitutes `args` into every metric and compiles it. An error's text never carries a
    /// secret arg's value (it becomes the run's message).
    pub fn new(spec: &AnalysisRunSpec, args: Args) -> Result<Analysis, RunError> {
        let redactor = args.has_secrets().then(|| args.clone());
        Self::compile(spec, args).map_err(|e| match redactor {
            Some(r) => {
                let text = e.to_string();
                let redacted = r.redact(&text);
                if redacted == text {
                    e
                } else {
                    RunError::Refused(redacted)
                }
            }
            None => e,
        })
    }

    fn compile(spec: &AnalysisRunSpec, args: Args) -> Result<Analysis, RunError> {
        let names: Vec<&str> = spec.metrics.iter().map(|m| m.name.as_str()).collect();
        let dry_run = match_rules(
            "dryRun",
            spec.dry_run
                .iter()
                .flatten()
                .map(|r| r.metric_name.as_str()),
            &names,
        )?;
        let mut retention: BTreeMap<&str, usize> = BTreeMap::new();
        let rules = spec.measurement_retention.iter().flatten();
        for (rule, matched) in rules.clone().zip(match_each_rule(
            "measurementRetention",
            rules.map(|r| r.metric_name.as_str()),
            &names,
        )?) {
            for name in matched {
                retention.insert(name, usize::try_from(rule.limit).unwrap_or(1));
            }
        }
        let metrics = spec
            .metrics
            .iter()
            .map(|metric| {
                let (metric, query) = substitute(metric, &args)?;
                let keep = retention
                    .get(metric.name.as_str())
                    .copied()
                    .unwrap_or(DEFAULT_MEASUREMENT_RETENTION);
                let json_path = metric
                    .provider
                    .web
                    .as_ref()
                    .and_then(|w| w.json_path.as_deref())
                    // Argo reads an empty jsonPath (a Helm value left blank) as unset.
                    .filter(|p| !p.trim().is_empty())
                    .map(JsonPath::parse)
                    .transpose()
                    .map_err(|message| RunError::JsonPath {
                        metric: metric.name.clone(),
                        message,
                    })?;
                Ok(MetricPlan {
                    range: RangePlan::of(&metric)?,
                    json_path,
                    policy: MetricPolicy::from_metric(&metric, keep)?,
                    conditions: Conditions::for_metric(&metric)?,
                    dry_run: dry_run.contains(metric.name.as_str()),
                    query_for_status: query
                        .as_deref()
                        .map(|q| truncate_to(&args.redact(q), MAX_QUERY_CHARS)),
                    query,
                    metric,
                })
            })
            .collect::<Result<Vec<_>, RunError>>()?;
        Ok(Analysis {
            metrics,
            terminate: spec.terminated(),
            args,
        })
    }

    pub fn metrics(&self) -> &[MetricPlan] {
        &self.metrics
    }

    pub fn metric(&self, name: &str) -> Option<&MetricPlan> {
        self.metrics.iter().find(|m| m.metric.name == name)
    }

    /// The metrics to measure at `now`: none once the run is completed or terminating.
    pub fn due(&self, status: &AnalysisRunStatus, now: Timestamp) -> Vec<&MetricPlan> {
        if status.phase.is_completed() || self.terminating(status) {
            return Vec::new();
        }
        let started = started_at(status, now);
        self.metrics
            .iter()
            .filter(|plan| {
                let fresh;
                let result = match status.metric_result(&plan.metric.name) {
                    Some(r) => r,
                    None => {
                        fresh = MetricResult::new(&plan.metric.name);
                        &fresh
                    }
                };
                plan.policy
                    .next_measurement_at(result, started)
                    .is_some_and(|due| due <= now)
            })
            .collect()
    }

    /// Adds a measurement of `metric` to the status. Unknown metrics are ignored: the spec is
    /// immutable, so that can only be a caller's mistake, not a state to act on.
    pub fn record(
        &self,
        status: &mut AnalysisRunStatus,
        metric: &str,
        mut measurement: Measurement,
    ) {
        let Some(plan) = self.metric(metric) else {
            return;
        };
        if let Some(message) = &measurement.message {
            measurement.message = Some(truncate(&self.args.redact(message)));
        }
        if let Some(value) = &measurement.value {
            measurement.value = Some(truncate(value));
        }
        plan.policy.record(result_mut(status, plan), measurement);
        fit_status_budget(status);
    }

    /// Brings metric phases, summaries, the run phase and message, `startedAt` and
    /// `completedAt` up to date. A completed run is final and left as it is.
    pub fn assess(&self, status: &mut AnalysisRunStatus, now: Timestamp) {
        if status.phase.is_completed() {
            return;
        }
        if status.started_at.is_none() {
            status.started_at = Some(Time(now));
        }
        for plan in &self.metrics {
            let result = result_mut(status, plan);
            let (phase, reason) = plan.policy.assess(result, false);
            set_metric_phase(plan, result, phase, reason);
        }
        // A terminating run stops unfinished metrics, which then end Successful.
        let terminating = self.terminating(status);
        if terminating {
            for plan in &self.metrics {
                let result = result_mut(status, plan);
                let (phase, reason) = plan.policy.assess(result, true);
                set_metric_phase(plan, result, phase, reason);
            }
        }

        let mut summary = RunSummary::default();
        let mut dry_summary = RunSummary::default();
        let mut worst: Option<(AnalysisPhase, Option<String>)> = None;
        let mut unfinished = false;
        for plan in &self.metrics {
            let Some(result) = status.metric_result(&plan.metric.name) else {
                continue;
            };
            let summary = if plan.dry_run {
                &mut dry_summary
            } else {
                &mut summary
            };
            count(summary, result.phase);
            if !result.phase.is_completed() {
                unfinished = true;
            } else if !plan.dry_run
                && worst
                    .as_ref()
                    .is_none_or(|(w, _)| result.phase.severity() > w.severity())
            {
                worst = Some((result.phase, result.message.clone()));
            }
        }
        status.run_summary = Some(summary);
        status.dry_run_summary = Some(dry_summary);

        let (phase, message) = if unfinished && !terminating {
            (AnalysisPhase::Running, None)
        } else {
            let (phase, message) = worst.unwrap_or((AnalysisPhase::Successful, None));
            let message = match phase {
                AnalysisPhase::Successful => None,
                _ => message,
            };
            (
                phase,
                message.or_else(|| self.terminate.then(|| TERMINATED.to_owned())),
            )
        };
        status.phase = phase;
        status.message = message;
        if phase.is_completed() && status.completed_at.is_none() {
            status.completed_at = Some(Time(now));
        }
    }

    /// How long until the next measurement is due; `None` when the run is completed.
    pub fn requeue_after(&self, status: &AnalysisRunStatus, now: Timestamp) -> Option<Duration> {
        if status.phase.is_completed() || self.terminating(status) {
            return None;
        }
        let started = started_at(status, now);
        self.metrics
            .iter()
            .filter_map(|plan| {
                let fresh = MetricResult::new(&plan.metric.name);
                let result = status.metric_result(&plan.metric.name).unwrap_or(&fresh);
                plan.policy.next_measurement_at(result, started)
            })
            .min()
            .map(|due| {
                let wait = now.duration_until(due);
                Duration::try_from(wait).unwrap_or(Duration::ZERO)
            })
    }

    /// `spec.terminate`, or a non-dry-run metric already Failed, Error or Inconclusive.
    fn terminating(&self, status: &AnalysisRunStatus) -> bool {
        self.terminate
            || self.metrics.iter().any(|plan| {
                !plan.dry_run
                    && status.metric_result(&plan.metric.name).is_some_and(|r| {
                        matches!(
                            r.phase,
                            AnalysisPhase::Failed
                                | AnalysisPhase::Error
                                | AnalysisPhase::Inconclusive
                        )
                    })
            })
    }
}

/// Ends a run that cannot start (bad args, bad spec) in Error, with the reason as its message.
pub fn reject(status: &mut AnalysisRunStatus, error: &RunError, now: Timestamp) {
    status.phase = AnalysisPhase::Error;
    status.message = Some(error.to_string());
    if status.started_at.is_none() {
        status.started_at = Some(Time(now));
    }
    if status.completed_at.is_none() {
        status.completed_at = Some(Time(now));
    }
}

/// The most characters a measurement's value or message keeps in status.
pub const MAX_FIELD_CHARS: usize = 1024;

/// The size an AnalysisRun's status is kept under. The API server refuses an object past about
/// 1.5 MiB; a status grown past that made every write fail, and the run re-measured about once
/// a second for ever.
pub const STATUS_BUDGET_BYTES: usize = 512 << 10;

/// Metric metadata key saying that older measurements were dropped to keep the status small.
pub const TRUNCATED_METADATA: &str = "AviaryMeasurementsDropped";

/// The most characters of the resolved query status keeps.
pub const MAX_QUERY_CHARS: usize = 4096;

/// Characters a field keeps when even a metric's last measurement must shrink to fit.
const SHRUNK_FIELD_CHARS: usize = 128;

/// `text`, cut to [`MAX_FIELD_CHARS`] and saying so.
fn truncate(text: &str) -> String {
    truncate_to(text, MAX_FIELD_CHARS)
}

/// `text` cut to `max` characters, saying so; control characters (six bytes each once JSON
/// escapes them) become `�`, so a field's size in status is bounded by its characters.
fn truncate_to(text: &str, max: usize) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_control() && c != '\n' {
                    '\u{fffd}'
                } else {
                    c
                }
            })
            .collect()
    };
    match text.char_indices().nth(max) {
        None => clean(text),
        Some((at, _)) => format!("{}… (truncated)", clean(&text[..at])),
    }
}

/// Drops the oldest measurements (never a metric's last) while the status is past
/// [`STATUS_BUDGET_BYTES`], counting what was dropped in each metric's metadata. Counters and
/// verdicts are kept: only the detail of old measurements goes.
fn fit_status_budget(status: &mut AnalysisRunStatus) {
    let size = |s: &AnalysisRunStatus| serde_json::to_vec(s).map_or(0, |v| v.len());
    let mut over = size(status).saturating_sub(STATUS_BUDGET_BYTES);
    while over > 0 {
        let Some(fullest) = status
            .metric_results
            .iter_mut()
            .filter(|r| r.measurements.len() > 1)
            .max_by_key(|r| r.measurements.len())
        else {
            shrink_texts(status);
            return;
        };
        let dropped = fullest.measurements.remove(0);
        let freed = serde_json::to_vec(&dropped).map_or(0, |v| v.len());
        let before: u64 = fullest
            .metadata
            .get(TRUNCATED_METADATA)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        fullest
            .metadata
            .insert(TRUNCATED_METADATA.into(), (before + 1).to_string());
        over = if freed >= over {
            size(status).saturating_sub(STATUS_BUDGET_BYTES)
        } else {
            over - freed
        };
    }
}

/// Past the budget with nothing left to drop (many metrics, each with its last measurement):
/// every free text shrinks to [`SHRUNK_FIELD_CHARS`].
fn shrink_texts(status: &mut AnalysisRunStatus) {
    let shrink = |t: &mut Option<String>| {
        if let Some(s) = t
            .as_mut()
            .filter(|s| s.chars().count() > SHRUNK_FIELD_CHARS)
        {
            *s = truncate_to(s, SHRUNK_FIELD_CHARS);
        }
    };
    for r in &mut status.metric_results {
        shrink(&mut r.message);
        for v in r.metadata.values_mut() {
            if v.chars().count() > SHRUNK_FIELD_CHARS {
                *v = truncate_to(v, SHRUNK_FIELD_CHARS);
            }
        }
        for m in &mut r.measurements {
            shrink(&mut m.message);
            shrink(&mut m.value);
        }
    }
    shrink(&mut status.message);
}

fn started_at(status: &AnalysisRunStatus, now: Timestamp) -> Timestamp {
    status.started_at.as_ref().map_or(now, |t| t.0)
}

/// The plan's result in `status`, created (Pending) on first use so every metric shows.
fn result_mut<'s>(status: &'s mut AnalysisRunStatus, plan: &MetricPlan) -> &'s mut MetricResult {
    let name = &plan.metric.name;
    let index = match status.metric_results.iter().position(|r| &r.name == name) {
        Some(i) => i,
        None => {
            let mut result = MetricResult::new(name.clone());
            result.dry_run = plan.dry_run.then_some(true);
            if let Some(query) = &plan.query_for_status {
                result
                    .metadata
                    .insert(RESOLVED_PROMETHEUS_QUERY.to_owned(), query.clone());
            }
            status.metric_results.push(result);
            status.metric_results.len() - 1
        }
    };
    &mut status.metric_results[index]
}

/// Sets the phase; on a limit breach, the message names the metric, the limit, the last value
/// and what the conditions said of it — the text a Rollout's abort Event quotes.
fn set_metric_phase(
    plan: &MetricPlan,
    result: &mut MetricResult,
    phase: AnalysisPhase,
    reason: Option<String>,
) {
    if result.phase == phase {
        return;
    }
    result.phase = phase;
    if let Some(reason) = reason {
        let mut message = format!(
            "Metric \"{}\" assessed {} due to {}",
            plan.metric.name, phase, reason
        );
        if let Some(last) = result
            .measurements
            .iter()
            .rev()
            .find(|m| m.phase.is_completed())
        {
            message.push_str("; last measurement");
            if let Some(value) = &last.value {
                message.push_str(&format!(" {value}"));
            }
            if let Some(why) = &last.message {
                message.push_str(&format!(": {why}"));
            }
        }
        result.message = Some(message);
    }
}

fn count(summary: &mut RunSummary, phase: AnalysisPhase) {
    summary.count += 1;
    match phase {
        AnalysisPhase::Successful => summary.successful += 1,
        AnalysisPhase::Failed => summary.failed += 1,
        AnalysisPhase::Inconclusive => summary.inconclusive += 1,
        AnalysisPhase::Error => summary.error += 1,
        AnalysisPhase::Pending | AnalysisPhase::Running => {}
    }
}

/// Substitutes args in every string of the metric; the PromQL query with escaping.
fn substitute(metric: &Metric, args: &Args) -> Result<(Metric, Option<String>), RunError> {
    let substitution_error = |e: serde_json::Error| RunError::Substitution {
        metric: metric.name.clone(),
        message: e.to_string(),
    };
    // A Secret never decides where a request goes, nor is it logged as part of a path.
    if let Some(web) = &metric.provider.web {
        args.check_url(&web.url)?;
    }
    if let Some(address) = metric
        .provider
        .prometheus
        .as_ref()
        .and_then(|p| p.address.as_ref())
    {
        args.check_url(address)?;
    }
    let authentication = (metric
        .provider
        .web
        .as_ref()
        .and_then(|w| w.authentication.as_ref()))
    .or(metric
        .provider
        .prometheus
        .as_ref()
        .and_then(|p| p.authentication.as_ref()));
    if let Some(oauth2) = authentication.and_then(|a| a.oauth2.as_ref()) {
        args.check_url(&oauth2.token_url)?;
    }
    if let Some(job) = &metric.provider.job {
        let text = serde_json::to_string(job).map_err(substitution_error)?;
        args.check_no_secret(&text)?;
    }
    let mut without_query = metric.clone();
    let query = match without_query.provider.prometheus.as_mut() {
        Some(prometheus) => Some(render_promql(&std::mem::take(&mut prometheus.query), args)?),
        None => None,
    };
    let mut json = serde_json::to_value(&without_query).map_err(substitution_error)?;
    render_strings(&mut json, args)?;
    // A duration filled in by args is read now, so its error names the field.
    for (field, text) in [
        ("interval", json.get("interval")),
        ("initialDelay", json.get("initialDelay")),
        (
            "rangeQuery.step",
            json.pointer("/provider/prometheus/rangeQuery/step"),
        ),
    ] {
        if let Some(serde_json::Value::String(text)) = text
            && !text.contains("{{")
            && let Err(e) = crate::api::Duration::parse(text)
        {
            return Err(RunError::Resolved {
                metric: metric.name.clone(),
                field,
                message: e.to_string(),
            });
        }
    }
    let mut substituted: Metric = serde_json::from_value(json).map_err(substitution_error)?;
    if let (Some(prometheus), Some(query)) = (substituted.provider.prometheus.as_mut(), &query) {
        prometheus.query.clone_from(query);
    }
    Ok((substituted, query))
}

fn render_strings(value: &mut serde_json::Value, args: &Args) -> Result<(), TemplateError> {
    match value {
        serde_json::Value::String(s) => *s = render(s, args)?,
        serde_json::Value::Array(items) => {
            for item in items {
                render_strings(item, args)?;
            }
        }
        serde_json::Value::Object(fields) => {
            // Keys too (a jsonBody's), as Argo substitutes over the metric's whole JSON text.
            let mut rendered = serde_json::Map::with_capacity(fields.len());
            for (key, mut field) in std::mem::take(fields) {
                render_strings(&mut field, args)?;
                let key = if key.contains("{{") {
                    render(&key, args)?
                } else {
                    key
                };
                if rendered.contains_key(&key) {
                    return Err(TemplateError::DuplicateKey(key));
                }
                rendered.insert(key, field);
            }
            *fields = rendered;
        }
        _ => {}
    }
    Ok(())
}

/// The metric names matched by any of `patterns` (see [`match_each_rule`]).
fn match_rules<'n, 'p>(
    field: &'static str,
    patterns: impl Iterator<Item = &'p str>,
    names: &[&'n str],
) -> Result<BTreeSet<&'n str>, RunError> {
    Ok(match_each_rule(field, patterns, names)?
        .into_iter()
        .flatten()
        .collect())
}

/// For each pattern, the metric names it matches: `*` matches all, anything else is an
/// unanchored regular expression (Go's `regexp.MatchString`, as Argo uses). A pattern that
/// matches nothing is an error, so a typo can't silently turn dry-run off.
fn match_each_rule<'n, 'p>(
    field: &'static str,
    patterns: impl Iterator<Item = &'p str>,
    names: &[&'n str],
) -> Result<Vec<Vec<&'n str>>, RunError> {
    patterns
        .enumerate()
        .map(|(index, pattern)| {
            let matched: Vec<&str> = if pattern == "*" {
                names.to_vec()
            } else {
                let regex = Regex::new(pattern).map_err(|e| RunError::BadPattern {
                    field,
                    index,
                    message: e.to_string(),
                })?;
                names
                    .iter()
                    .copied()
                    .filter(|n| regex.is_match(n))
                    .collect()
            };
            if matched.is_empty() {
                return Err(RunError::UnmatchedRule { field, index });
            }
            Ok(matched)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::measurement::error_measurement;
    use crate::analysis::value::MetricValue;
    use crate::api::{
        DryRun, Duration as ApiDuration, DurationOrArg, IntOrArg, MeasurementRetention,
        MetricProvider, PrometheusMetric,
    };
    use AnalysisPhase::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + secs).unwrap_or_else(|e| panic!("{e}"))
    }

    fn prometheus_metric(name: &str, query: &str, success: &str) -> Metric {
        Metric {
            name: name.into(),
            interval: Some(ApiDuration::from_secs(60).into()),
            success_condition: Some(success.into()),
            provider: MetricProvider {
                prometheus: Some(PrometheusMetric {
                    query: query.into(),
                    ..PrometheusMetric::default()
                }),
                ..MetricProvider::default()
            },
            ..Metric::default()
        }
    }

    fn spec(metrics: Vec<Metric>) -> AnalysisRunSpec {
        AnalysisRunSpec {
            metrics,
            ..AnalysisRunSpec::default()
        }
    }

    fn analysis(spec: &AnalysisRunSpec) -> Analysis {
        Analysis::new(spec, Args::default()).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Measures `value` for `metric` at `t` the way the controller would.
    fn measure(a: &Analysis, status: &mut AnalysisRunStatus, metric: &str, value: &[f64], t: i64) {
        let plan = a
            .metric(metric)
            .unwrap_or_else(|| panic!("no metric {metric}"));
        let m = plan
            .conditions
            .measure(&MetricValue::Vector(value.to_vec()), at(t), at(t));
        a.record(status, metric, m);
        a.assess(status, at(t));
    }

    #[test]
    fn a_failed_metric_fails_the_run_with_a_quotable_message() {
        let s = spec(vec![
            Metric {
                failure_limit: Some(IntOrArg::Int(1)),
                ..prometheus_metric("error-rate", "q", "result[0] <= 0.05")
            },
            prometheus_metric("latency", "q2", "result[0] < 500"),
        ]);
        let a = analysis(&s);
        let mut status = AnalysisRunStatus::default();
        a.assess(&mut status, at(0));
        assert_eq!(status.phase, Running);
        assert_eq!(status.started_at, Some(Time(at(0))));
        let due: Vec<&str> = a
            .due(&status, at(0))
            .iter()
            .map(|p| p.metric.name.as_str())
            .collect();
        assert_eq!(due, ["error-rate", "latency"]);

        measure(&a, &mut status, "latency", &[120.0], 0);
        measure(&a, &mut status, "error-rate", &[0.07], 0);
        assert_eq!(
            status.phase, Running,
            "one failure is within failureLimit 1"
        );
        measure(&a, &mut status, "error-rate", &[0.09], 60);
        assert_eq!(status.phase, Failed);
        assert_eq!(
            status.message.as_deref(),
            Some(
                "Metric \"error-rate\" assessed Failed due to failed (2) > failureLimit (1); last measurement [0.09]: successCondition \"result[0] <= 0.05\" is false"
            )
        );
        assert_eq!(status.completed_at, Some(Time(at(60))));
        // The other metric was stopped and ends Successful; nothing more is measured.
        assert_eq!(
            status.metric_result("latency").map(|r| r.phase),
            Some(Successful)
        );
        assert!(a.due(&status, at(1000)).is_empty());
        assert_eq!(a.requeue_after(&status, at(60)), None);
        assert_eq!(
            status.run_summary,
            Some(RunSummary {
                count: 2,
                successful: 1,
                failed: 1,
                inconclusive: 0,
                error: 0
            })
        );
    }

    #[test]
    fn five_empty_results_error_the_run() {
        let a = analysis(&spec(vec![prometheus_metric(
            "success-rate",
            "q",
            "result[0] >= 0.95",
        )]));
        let mut status = AnalysisRunStatus::default();
        a.assess(&mut status, at(0));
        let mut t = 0;
        for _ in 0..4 {
            measure(&a, &mut status, "success-rate", &[], t);
            assert_eq!(status.phase, Running);
            assert_eq!(
                a.requeue_after(&status, at(t)),
                Some(Duration::from_secs(10))
            );
            t += 10;
        }
        measure(&a, &mut status, "success-rate", &[], t);
        assert_eq!(status.phase, Error);
        assert_eq!(
            status.message.as_deref(),
            Some(
                "Metric \"success-rate\" assessed Error due to consecutiveErrors (5) > consecutiveErrorLimit (4); last measurement []: no data returned by the query"
            )
        );
    }

    #[test]
    fn run_phase_is_the_worst_metric_phase() {
        // Each metric driven to a phase by its own limits; the run takes the worst.
        let ordered = [Successful, Inconclusive, Error, Failed];
        for (i, worst) in ordered.iter().enumerate() {
            let metrics: Vec<Metric> = ordered[..=i]
                .iter()
                .map(|phase| Metric {
                    interval: None,
                    consecutive_error_limit: Some(IntOrArg::Int(0)),
                    success_condition: Some("result[0] > 0.5".into()),
                    failure_condition: Some("result[0] < 0.1".into()),
                    ..prometheus_metric(phase.as_str(), "q", "")
                })
                .collect();
            let a = analysis(&spec(metrics));
            let mut status = AnalysisRunStatus::default();
            // Record everything before assessing, so no metric stops another.
            for phase in &ordered[..=i] {
                let m = match phase {
                    Successful => a.metric("Successful").map(|p| {
                        p.conditions
                            .measure(&MetricValue::Vector(vec![0.9]), at(0), at(0))
                    }),
                    Inconclusive => a.metric("Inconclusive").map(|p| {
                        p.conditions
                            .measure(&MetricValue::Vector(vec![0.3]), at(0), at(0))
                    }),
                    Failed => a.metric("Failed").map(|p| {
                        p.conditions
                            .measure(&MetricValue::Vector(vec![0.0]), at(0), at(0))
                    }),
                    _ => Some(error_measurement("boom", at(0), at(0))),
                };
                a.record(
                    &mut status,
                    phase.as_str(),
                    m.unwrap_or_else(|| panic!("metric")),
                );
            }
            a.assess(&mut status, at(0));
            assert_eq!(status.phase, *worst, "metrics {:?}", &ordered[..=i]);
        }
    }

    #[test]
    fn unfinished_metrics_keep_the_run_running() {
        // An indefinite metric and a one-shot one: the one-shot succeeds, the run keeps going.
        let mut once = prometheus_metric("once", "q", "result[0] > 0.5");
        once.interval = None;
        let a = analysis(&spec(vec![
            prometheus_metric("forever", "q", "result[0] > 0.5"),
            once,
        ]));
        let mut status = AnalysisRunStatus::default();
        a.assess(&mut status, at(0));
        assert_eq!(
            status
                .metric_results
                .iter()
                .map(|r| r.phase)
                .collect::<Vec<_>>(),
            [Pending, Pending]
        );
        measure(&a, &mut status, "once", &[0.9], 0);
        measure(&a, &mut status, "forever", &[0.9], 0);
        assert_eq!(status.phase, Running);
        assert_eq!(
            status.metric_result("once").map(|r| r.phase),
            Some(Successful)
        );
        assert_eq!(
            a.requeue_after(&status, at(0)),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            a.requeue_after(&status, at(45)),
            Some(Duration::from_secs(15))
        );
        assert_eq!(a.requeue_after(&status, at(75)), Some(Duration::ZERO));
        let due: Vec<&str> = a
            .due(&status, at(60))
            .iter()
            .map(|p| p.metric.name.as_str())
            .collect();
        assert_eq!(due, ["forever"]);
    }

    #[test]
    fn initial_delay_counts_from_run_start() {
        let mut m = prometheus_metric("m", "q", "result[0] > 0.5");
        m.initial_delay = Some(ApiDuration::from_secs(30).into());
        let a = analysis(&spec(vec![m]));
        let mut status = AnalysisRunStatus::default();
        a.assess(&mut status, at(5));
        assert!(a.due(&status, at(20)).is_empty());
        assert_eq!(
            a.requeue_after(&status, at(20)),
            Some(Duration::from_secs(15))
        );
        assert_eq!(a.due(&status, at(35)).len(), 1);
    }

    #[test]
    fn dry_run_metrics_never_affect_the_run() {
        let mut s = spec(vec![
            prometheus_metric("canary-errors", "q", "result[0] < 0.05"),
            prometheus_metric("latency", "q", "result[0] < 500"),
        ]);
        s.dry_run = Some(vec![DryRun {
            metric_name: "canary-.*".into(),
        }]);
        let a = analysis(&s);
        let mut status = AnalysisRunStatus::default();
        a.assess(&mut status, at(0));
        measure(&a, &mut status, "canary-errors", &[0.5], 0);
        measure(&a, &mut status, "latency", &[100.0], 0);
        let dry = status.metric_result("canary-errors");
        assert_eq!(
            dry.map(|r| (r.phase, r.dry_run)),
            Some((Failed, Some(true)))
        );
        assert_eq!(
            status.phase, Running,
            "a failed dry-run metric doesn't terminate the run"
        );
        assert_eq!(status.message, None);
        assert_eq!(a.due(&status, at(60)).len(), 1);
        assert_eq!(
            status.dry_run_summary,
            Some(RunSummary {
                count: 1,
                successful: 0,
                failed: 1,
                inconclusive: 0,
                error: 0
            })
        );
        assert_eq!(status.run_summary.as_ref().map(|s| s.count), Some(1));
        // Terminated later: Successful, the dry-run failure notwithstanding.
        s.terminate = Some(true);
        let a = analysis(&s);
        a.assess(&mut status, at(70));
        assert_eq!(
            (status.phase, status.message.as_deref()),
            (Successful, Some(TERMINATED))
        );
    }

    #[test]
    fn terminate_ends_the_run_successful() {
        let mut s = spec(vec![prometheus_metric("m", "q", "result[0] > 0.5")]);
        s.terminate = Some(true);
        let a = analysis(&s);
        let mut status = AnalysisRunStatus::default();
        a.assess(&mut status, at(0));
        assert_eq!(
            (status.phase, status.message.as_deref()),
            (Successful, Some(TERMINATED))
        );
        assert_eq!(status.metric_result("m").map(|r| r.phase), Some(Successful));
        assert!(a.due(&status, at(0)).is_empty());
        assert_eq!(status.completed_at, Some(Time(at(0))));

        // Terminating after a failure keeps the failure.
        let running = analysis(&spec(vec![prometheus_metric("m", "q", "result[0] > 0.5")]));
        let mut status = AnalysisRunStatus::default();
        running.assess(&mut status, at(0));
        let m = running.metric("m").map(|p| {
            p.conditions
                .measure(&MetricValue::Vector(vec![0.1]), at(0), at(0))
        });
        running.record(&mut status, "m", m.unwrap_or_else(|| panic!("metric")));
        a.assess(&mut status, at(1));
        assert_eq!(status.phase, Failed);
    }

    #[test]
    fn completed_runs_are_final() {
        let a = analysis(&spec(vec![prometheus_metric("m", "q", "result[0] > 0.5")]));
        let mut status = AnalysisRunStatus {
            phase: Failed,
            message: Some("x".into()),
            ..Default::default()
        };
        a.assess(&mut status, at(0));
        assert_eq!(
            (status.phase, status.message.as_deref(), status.started_at),
            (Failed, Some("x"), None)
        );
    }

    /// Issue 26: `{{args.*}}` in interval, initialDelay, count and the limits resolve as Argo
    /// resolves them; a value that does not fit once resolved ends the run naming the field.
    #[test]
    fn templated_numeric_fields_resolve_and_are_checked_once_resolved() {
        let templated = || {
            let mut m = prometheus_metric("m", "up", "result[0] == 1");
            m.interval = Some(DurationOrArg::Arg("{{args.interval}}".into()));
            m.initial_delay = Some(DurationOrArg::Arg("{{ args.delay }}s".into()));
            m.count = Some(IntOrArg::Str("{{args.count}}".into()));
            m.failure_limit = Some(IntOrArg::Str("{{args.failures}}".into()));
            m.inconclusive_limit = Some(IntOrArg::Str("{{args.inconclusive}}".into()));
            m.consecutive_error_limit = Some(IntOrArg::Str("{{args.errors}}".into()));
            m
        };
        let run = |values: [(&str, &str); 6]| {
            let args = Args::resolve(values.iter().map(|(k, v)| (*k, Some(*v))))
                .unwrap_or_else(|e| panic!("{e}"));
            Analysis::new(&spec(vec![templated()]), args)
        };
        let ok = [
            ("interval", "1m"),
            ("delay", "30"),
            ("count", "5"),
            ("failures", "2"),
            ("inconclusive", "1"),
            ("errors", "0"),
        ];
        let a = run(ok).unwrap_or_else(|e| panic!("{e}"));
        let p = &a.metric("m").unwrap_or_else(|| panic!("metric")).policy;
        assert_eq!(
            (
                p.interval,
                p.initial_delay,
                p.count,
                p.failure_limit,
                p.inconclusive_limit,
                p.consecutive_error_limit
            ),
            (
                Some(std::time::Duration::from_secs(60)),
                Some(std::time::Duration::from_secs(30)),
                Some(5),
                2,
                1,
                0
            )
        );
        let bad: &[((&str, &str), &str)] = &[
            (
                ("interval", "soon"),
                "metric \"m\": interval: invalid duration \"soon\"",
            ),
            (
                ("delay", "-3"),
                "metric \"m\": initialDelay: invalid duration \"-3s\"",
            ),
            (
                ("count", "three"),
                "metric \"m\": count \"three\" is not an integer",
            ),
            (("count", "-1"), "metric \"m\": count must be >= 0, got -1"),
            (
                ("failures", "9"),
                "metric \"m\": count (5) must be >= failureLimit + consecutiveSuccessLimit (9 + 0)",
            ),
            (
                ("errors", "-2"),
                "metric \"m\": consecutiveErrorLimit must be >= 0, got -2",
            ),
            (
                ("failures", "-1"),
                "metric \"m\": failureLimit -1 requires consecutiveSuccessLimit > 0",
            ),
            (
                ("interval", "{{args.other}}"),
                "metric \"m\": interval \"{{args.other}}\" is not a duration",
            ),
        ];
        for ((key, value), want) in bad {
            let mut values = ok;
            for v in values.iter_mut() {
                if v.0 == *key {
                    v.1 = value;
                }
            }
            let err = run(values).map(|_| ()).expect_err(key).to_string();
            assert!(err.starts_with(want), "{key}={value}: {err}");
        }
        // count > 1 without an interval, once resolved.
        let mut m = prometheus_metric("m", "up", "result[0] == 1");
        m.count = Some(IntOrArg::Str("{{args.count}}".into()));
        m.interval = None;
        let args = Args::resolve([("count", Some("3"))]).unwrap_or_else(|e| panic!("{e}"));
        let err = Analysis::new(&spec(vec![m]), args)
            .map(|_| ())
            .expect_err("count")
            .to_string();
        assert!(err.contains("count 3 > 1 requires interval"), "{err}");
    }

    /// Issue 26: a rangeQuery's bounds and step are read when the run starts; one that does not
    /// parse ends the run naming the field and the forms to write.
    #[test]
    fn range_query_bounds_are_checked_at_start() {
        let with_range = |start: &str, end: &str, step: &str| {
            let mut m = prometheus_metric("m", "up", "result[0] == 1");
            if let Some(p) = m.provider.prometheus.as_mut() {
                p.range_query = Some(crate::api::RangeQuery {
                    start: start.into(),
                    end: end.into(),
                    step: DurationOrArg::Arg(step.into()),
                });
            }
            let args = Args::resolve([("step", Some("30s")), ("bad", Some("0s"))])
                .unwrap_or_else(|e| panic!("{e}"));
            Analysis::new(&spec(vec![m]), args)
        };
        let a = with_range("now() - duration('1h')", "now()", "{{args.step}}")
            .unwrap_or_else(|e| panic!("{e}"));
        let range = a
            .metric("m")
            .and_then(|p| p.range.as_ref())
            .unwrap_or_else(|| panic!("a range"));
        assert_eq!(range.step, std::time::Duration::from_secs(30));
        for (start, end, step, want) in [
            (
                "an hour ago",
                "now()",
                "{{args.step}}",
                "metric \"m\": rangeQuery.start: \"an hour ago\" is not a time expression",
            ),
            (
                "now()",
                "now() - 1h",
                "{{args.step}}",
                "metric \"m\": rangeQuery.end: \"now() - 1h\": only duration",
            ),
            (
                "now()",
                "now()",
                "{{args.bad}}",
                "metric \"m\": rangeQuery.step: \"0s\" is not a duration above zero",
            ),
        ] {
            let err = with_range(start, end, step)
                .map(|_| ())
                .expect_err(start)
                .to_string();
            assert!(err.starts_with(want), "{err}");
        }
    }

    #[test]
    fn args_are_substituted_and_promql_escaped() {
        let mut m = prometheus_metric(
            "m",
            "sum(rate(x{service=\"{{args.service}}\"}[{{ args.window }}]))",
            "result[0] <= {{args.max}}",
        );
        m.failure_limit = Some(IntOrArg::Str("{{args.limit}}".into()));
        let args = Args::resolve([
            ("service", Some("a\"} or vector(1) #")),
            ("window", Some("5m")),
            ("max", Some("0.05")),
            ("limit", Some("3")),
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        let a = Analysis::new(&spec(vec![m]), args).unwrap_or_else(|e| panic!("{e}"));
        let plan = a.metric("m").unwrap_or_else(|| panic!("metric"));
        let expected = "sum(rate(x{service=\"a\\\"} or vector(1) #\"}[5m]))";
        assert_eq!(plan.query.as_deref(), Some(expected));
        assert_eq!(
            plan.metric
                .provider
                .prometheus
                .as_ref()
                .map(|p| p.query.as_str()),
            Some(expected)
        );
        assert_eq!(
            plan.metric.success_condition.as_deref(),
            Some("result[0] <= 0.05")
        );
        assert_eq!(plan.policy.failure_limit, 3);
        let mut status = AnalysisRunStatus::default();
        a.assess(&mut status, at(0));
        assert_eq!(
            status
                .metric_result("m")
                .and_then(|r| r.metadata.get(RESOLVED_PROMETHEUS_QUERY))
                .map(String::as_str),
            Some(expected)
        );
    }

    #[test]
    fn bad_specs_are_rejected_at_start() {
        let unknown_arg = spec(vec![prometheus_metric(
            "m",
            "x{a=\"{{args.nope}}\"}",
            "result[0] > 0",
        )]);
        let err = Analysis::new(&unknown_arg, Args::default())
            .map(|_| ())
            .map_err(|e| e.to_string());
        assert_eq!(err, Err("failed to resolve {{args.nope}}".into()));

        let bad_condition = spec(vec![prometheus_metric("m", "q", "result[0] >=")]);
        let err = Analysis::new(&bad_condition, Args::default()).map(|_| ());
        assert!(
            matches!(
                err,
                Err(RunError::Condition(ConditionError::Compile { .. }))
            ),
            "{err:?}"
        );

        let mut unmatched = spec(vec![prometheus_metric("m", "q", "result[0] > 0")]);
        unmatched.dry_run = Some(vec![DryRun {
            metric_name: "latency".into(),
        }]);
        let err = Analysis::new(&unmatched, Args::default())
            .map(|_| ())
            .map_err(|e| e.to_string());
        assert_eq!(
            err,
            Err("dryRun[0]: Rule didn't match any metric name(s)".into())
        );

        let mut status = AnalysisRunStatus::default();
        let error = RunError::Template(TemplateError::Unresolved("x".into()));
        reject(&mut status, &error, at(3));
        assert_eq!(
            (status.phase, status.message.as_deref(), status.completed_at),
            (Error, Some("args.x was not resolved"), Some(Time(at(3))))
        );
    }

    #[test]
    fn measurement_retention_rules() {
        let mut s = spec(vec![
            prometheus_metric("error-rate", "q", "result[0] < 1"),
            prometheus_metric("latency", "q", "result[0] < 1"),
        ]);
        s.measurement_retention = Some(vec![MeasurementRetention {
            metric_name: "error".into(),
            limit: 2,
        }]);
        let a = analysis(&s);
        assert_eq!(a.metric("error-rate").map(|p| p.policy.retention), Some(2));
        assert_eq!(a.metric("latency").map(|p| p.policy.retention), Some(10));
        let mut status = AnalysisRunStatus::default();
        a.assess(&mut status, at(0));
        for t in 0..5 {
            measure(&a, &mut status, "error-rate", &[0.0], t * 60);
        }
        assert_eq!(
            status
                .metric_result("error-rate")
                .map(|r| (r.measurements.len(), r.count)),
            Some((2, 5))
        );
    }

    /// A3: a status grown past the object size limit made every write fail. Long values and
    /// messages are cut, and the oldest measurements go (counted, the verdict's counters kept)
    /// while the status is past its budget, so it stays writable.
    #[test]
    fn the_status_stays_under_its_budget() {
        let mut metrics = vec![];
        for i in 0..4 {
            let mut m = prometheus_metric(&format!("m{i}"), "q", "result[0] > 0");
            m.interval = Some(ApiDuration::from_secs(1).into());
            metrics.push(m);
        }
        let mut s = spec(metrics);
        s.measurement_retention = Some(vec![MeasurementRetention {
            metric_name: ".*".into(),
            limit: 1000,
        }]);
        let a = analysis(&s);
        let mut status = AnalysisRunStatus::default();
        a.assess(&mut status, at(0));
        let huge = "9".repeat(5000);
        for t in 0..100 {
            for i in 0..4 {
                let mut m = error_measurement(&huge, at(t), at(t));
                m.value = Some(huge.clone());
                a.record(&mut status, &format!("m{i}"), m);
            }
        }
        let size = serde_json::to_vec(&status).map_or(0, |v| v.len());
        assert!(size <= STATUS_BUDGET_BYTES, "{size} bytes");
        let r = status.metric_result("m0").unwrap_or_else(|| panic!("m0"));
        assert_eq!(r.error, 100, "the counters keep every measurement");
        let dropped: usize = r
            .metadata
            .get(TRUNCATED_METADATA)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        assert!(dropped > 0, "older measurements went");
        assert_eq!(dropped + r.measurements.len(), 100, "what went is counted");
        let last = r
            .measurements
            .last()
            .unwrap_or_else(|| panic!("a measurement"));
        assert!(last.value.as_deref().is_some_and(
            |v| v.ends_with("… (truncated)") && v.chars().count() < MAX_FIELD_CHARS + 20
        ));
        assert!(
            last.message
                .as_deref()
                .is_some_and(|v| v.ends_with("… (truncated)"))
        );
    }

    #[test]
    fn secret_args_are_redacted_from_status() {
        use crate::api::{Argument, SecretKeyRef, ValueFrom};
        let m = prometheus_metric("m", "x{token=\"{{args.token}}\"}", "result[0] > 0");
        let args = Args::from_arguments(
            &[Argument {
                name: "token".into(),
                value: None,
                value_from: Some(ValueFrom {
                    secret_key_ref: Some(SecretKeyRef {
                        name: "s".into(),
                        key: "k".into(),
                    }),
                    field_ref: None,
                }),
            }],
            |_| Some("hunter2".into()),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let a = Analysis::new(&spec(vec![m]), args).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            a.metric("m").and_then(|p| p.query.as_deref()),
            Some("x{token=\"hunter2\"}")
        );
        let mut status = AnalysisRunStatus::default();
        a.assess(&mut status, at(0));
        a.record(
            &mut status,
            "m",
            error_measurement("401 for token hunter2", at(0), at(0)),
        );
        let result = status
            .metric_result("m")
            .unwrap_or_else(|| panic!("result"));
        assert_eq!(
            result
                .metadata
                .get(RESOLVED_PROMETHEUS_QUERY)
                .map(String::as_str),
            Some("x{token=\"*****\"}")
        );
        assert_eq!(
            result.measurements[0].message.as_deref(),
            Some("401 for token *****")
        );
    }
}

#[cfg(test)]
mod thread_safety {
    /// The controller holds a compiled run across `.await`s on a multi-threaded runtime.
    #[test]
    fn analysis_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<super::Analysis>();
    }
}

/// Found by review: jsonBody keys, a written zero interval.
#[cfg(test)]
mod review_tests {
    use super::*;
    use crate::analysis::template::Args;
    use serde_json::json;

    /// Argo resolves args in the metric's whole JSON text (ResolveMetricArgs), keys included.
    #[test]
    fn json_body_keys_are_substituted_as_in_argo() {
        let spec: AnalysisRunSpec = serde_json::from_value(json!({"metrics": [{
            "name": "m", "successCondition": "result.ok",
            "provider": {"web": {"url": "http://x/q", "method": "POST",
                "jsonBody": {"{{args.field}}": "{{args.field}}"}}}}]}))
        .expect("spec");
        let args = Args::resolve([("field", Some("service"))]).expect("args");
        let a = Analysis::new(&spec, args).expect("analysis");
        let body = a
            .metric("m")
            .and_then(|p| p.metric.provider.web.clone())
            .and_then(|w| w.json_body);
        assert_eq!(
            body,
            Some(
                json!({"service": "service"})
                    .as_object()
                    .cloned()
                    .expect("obj")
            )
        );
    }

    /// A Secret's value would be written into the Job (readable by whoever reads Jobs); keys
    /// made equal by args would silently drop a field.
    #[test]
    fn job_specs_refuse_secret_args_and_rendered_keys_never_collide() {
        let secret_args = Args::from_arguments(
            &[crate::api::Argument {
                name: "token".into(),
                value: None,
                value_from: Some(crate::api::ValueFrom {
                    secret_key_ref: Some(crate::api::SecretKeyRef {
                        name: "s".into(),
                        key: "k".into(),
                    }),
                    field_ref: None,
                }),
            }],
            |_| Some("hunter2".to_owned()),
        )
        .expect("args");
        let spec: AnalysisRunSpec = serde_json::from_value(json!({"metrics": [{
            "name": "m", "provider": {"job": {"spec": {"template": {"spec": {
                "containers": [{"name": "c", "image": "x", "args": ["{{ args.token }}"]}]}}}}}}]}))
        .expect("spec");
        let err = Analysis::new(&spec, secret_args)
            .map(|_| ())
            .expect_err("secret");
        assert!(
            err.to_string().contains("args.token comes from a Secret"),
            "{err}"
        );
        assert!(!err.to_string().contains("hunter2"));
        let spec: AnalysisRunSpec = serde_json::from_value(json!({"metrics": [{
            "name": "m", "successCondition": "result.ok",
            "provider": {"web": {"url": "http://x/q", "method": "POST",
                "jsonBody": {"{{args.field}}": 1, "service": 2}}}}]}))
        .expect("spec");
        let args = Args::resolve([("field", Some("service"))]).expect("args");
        let err = Analysis::new(&spec, args)
            .map(|_| ())
            .expect_err("duplicate");
        assert!(
            err.to_string().contains("the key \"service\" twice"),
            "{err}"
        );
    }

    /// Admission accepts `count: 3, interval: "0"` (has(self.interval)); Argo measures 3 times
    /// (interval "0" != ""), and so does Aviary.
    #[test]
    fn a_zero_interval_with_count_is_admitted_and_runs() {
        let spec: AnalysisRunSpec = serde_json::from_value(json!({"metrics": [{
            "name": "m", "successCondition": "result[0] > 0", "count": 3, "interval": "0",
            "provider": {"prometheus": {"query": "up"}}}]}))
        .expect("spec");
        let a = Analysis::new(&spec, Args::default())
            .map(|_| ())
            .map_err(|e| e.to_string());
        assert_eq!(a, Ok(()));
    }
}
