//! One metric's state machine: when to measure, how a measurement changes the counters, and
//! what phase the counters put the metric in. Pure: the time is passed in, and "later" is
//! returned as a deadline for the controller's requeue-after — never a sleeping task.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use thiserror::Error;

use crate::api::{
    AnalysisPhase, DEFAULT_CONSECUTIVE_ERROR_LIMIT, DEFAULT_MEASUREMENT_RETENTION, DurationOrArg,
    IntOrArg, MAX_MEASUREMENTS, Measurement, Metric, MetricResult,
};

/// Wait after an Error measurement before retrying, whatever the interval: a transient error
/// must not cost a whole interval (Argo #1008).
pub const ERROR_RETRY_INTERVAL: Duration = Duration::from_secs(10);

#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum PolicyError {
    /// A limit or count that is still a placeholder, or not an integer, after substitution.
    #[error("metric \"{metric}\": {field} \"{value}\" is not an integer")]
    NotAnInteger {
        metric: String,
        field: &'static str,
        value: String,
    },
    #[error("metric \"{metric}\": {field} must be >= {min}, got {value}")]
    OutOfRange {
        metric: String,
        field: &'static str,
        min: i64,
        value: i64,
    },
    /// An `interval` or `initialDelay` still holding a placeholder after substitution.
    #[error("metric \"{metric}\": {field} \"{value}\" is not a duration")]
    NotADuration {
        metric: String,
        field: &'static str,
        value: String,
    },
    /// Fields that admission checks together when they are literals, checked again once args
    /// filled them in.
    #[error("metric \"{metric}\": {message}")]
    Inconsistent { metric: String, message: String },
}

/// The fields of a metric that drive its state machine, with Argo's defaults applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricPolicy {
    pub name: String,
    /// Between finished measurements; `None` measures once (or `count` times back to back).
    pub interval: Option<Duration>,
    /// From the run's start to the first measurement.
    pub initial_delay: Option<Duration>,
    /// Non-error measurements after which the metric completes; `None` runs until the run ends.
    pub count: Option<i64>,
    /// Failed when `failed` exceeds it; −1 disables.
    pub failure_limit: i64,
    /// Inconclusive when `inconclusive` exceeds it.
    pub inconclusive_limit: i64,
    /// Error when `consecutiveError` exceeds it.
    pub consecutive_error_limit: i64,
    /// Successful after this many Successful measurements in a row; 0 is off.
    pub consecutive_success_limit: i64,
    /// Measurements kept in status.
    pub retention: usize,
}

impl Default for MetricPolicy {
    fn default() -> Self {
        MetricPolicy {
            name: String::new(),
            interval: None,
            initial_delay: None,
            count: Some(1),
            failure_limit: 0,
            inconclusive_limit: 0,
            consecutive_error_limit: DEFAULT_CONSECUTIVE_ERROR_LIMIT,
            consecutive_success_limit: 0,
            retention: DEFAULT_MEASUREMENT_RETENTION,
        }
    }
}

impl MetricPolicy {
    /// Reads a metric whose `{{args.*}}` have been substituted. `retention` comes from the run's
    /// `measurementRetention` rules (default [`DEFAULT_MEASUREMENT_RETENTION`]).
    pub fn from_metric(metric: &Metric, retention: usize) -> Result<Self, PolicyError> {
        let int = |field: &'static str, value: &Option<IntOrArg>, default: i64, min: i64| {
            let Some(value) = value else {
                return Ok(default);
            };
            let parsed = value.as_int().ok_or_else(|| PolicyError::NotAnInteger {
                metric: metric.name.clone(),
                field,
                value: value.to_string(),
            })?;
            if parsed < min {
                return Err(PolicyError::OutOfRange {
                    metric: metric.name.clone(),
                    field,
                    min,
                    value: parsed,
                });
            }
            Ok(parsed)
        };
        let duration = |field: &'static str, value: &Option<DurationOrArg>| {
            value
                .as_ref()
                .map(|v| {
                    v.duration()
                        .map(crate::api::Duration::as_std)
                        .ok_or_else(|| PolicyError::NotADuration {
                            metric: metric.name.clone(),
                            field,
                            value: v.to_string(),
                        })
                })
                .transpose()
        };
        let interval = duration("interval", &metric.interval)?.filter(|d| !d.is_zero());
        // Argo's EffectiveCount: an unset or zero count is 1 without an interval, unbounded
        // with one.
        let written_count = int("count", &metric.count, 0, 0)?;
        let count = match written_count {
            0 if interval.is_some() => None,
            0 => Some(1),
            n => Some(n),
        };
        let policy = MetricPolicy {
            name: metric.name.clone(),
            interval,
            initial_delay: duration("initialDelay", &metric.initial_delay)?,
            count,
            failure_limit: int("failureLimit", &metric.failure_limit, 0, -1)?,
            inconclusive_limit: int("inconclusiveLimit", &metric.inconclusive_limit, 0, 0)?,
            consecutive_error_limit: int(
                "consecutiveErrorLimit",
                &metric.consecutive_error_limit,
                DEFAULT_CONSECUTIVE_ERROR_LIMIT,
                0,
            )?,
            consecutive_success_limit: int(
                "consecutiveSuccessLimit",
                &metric.consecutive_success_limit,
                0,
                0,
            )?,
            retention: retention.clamp(1, MAX_MEASUREMENTS),
        };
        policy
            .check_together(written_count, metric.interval.is_some())
            .map_err(|message| PolicyError::Inconsistent {
                metric: metric.name.clone(),
                message,
            })?;
        Ok(policy)
    }

    /// The admission rules that relate fields (src/api/analysis.rs, on `Metric`), for values
    /// that were placeholders or numeric strings there and so were not checked.
    /// `count` is as written (0 when unset: only a written count is checked, as in Argo), and
    /// `interval_written` whether an interval was (`"0"` counts, as for admission and Argo).
    fn check_together(&self, count: i64, interval_written: bool) -> Result<(), String> {
        if count > 1 && !interval_written {
            return Err(format!(
                "count {count} > 1 requires interval: set interval (e.g. 1m) between measurements"
            ));
        }
        if self.failure_limit == -1 && self.consecutive_success_limit == 0 {
            return Err("failureLimit -1 requires consecutiveSuccessLimit > 0, otherwise the metric can never fail or succeed".into());
        }
        // Argo's ValidateMetric.
        let (failures, successes) = (self.failure_limit, self.consecutive_success_limit);
        if count > 0 {
            if failures >= 0 && count < failures + successes {
                return Err(format!(
                    "count ({count}) must be >= failureLimit + consecutiveSuccessLimit ({failures} + {successes})"
                ));
            }
            if failures < 0 && count < successes {
                return Err(format!(
                    "count ({count}) must be >= consecutiveSuccessLimit ({successes})"
                ));
            }
            if count < self.inconclusive_limit {
                return Err(format!(
                    "count ({count}) must be >= inconclusiveLimit ({})",
                    self.inconclusive_limit
                ));
            }
        }
        Ok(())
    }

    /// When the next measurement is due, or `None` when the metric takes no more.
    /// `run_started` is the run's `startedAt`, from which `initialDelay` counts.
    pub fn next_measurement_at(
        &self,
        result: &MetricResult,
        run_started: Timestamp,
    ) -> Option<Timestamp> {
        if result.phase.is_completed() || self.count.is_some_and(|c| i64::from(result.count) >= c) {
            return None;
        }
        let Some(last) = result.measurements.last() else {
            return Some(add(run_started, self.initial_delay.unwrap_or_default()));
        };
        let Some(Time(finished)) = last.finished_at else {
            // Unfinished (the controller stopped mid-measurement): take it again now, or when
            // the provider asked to be asked again.
            return Some(last.resume_at.as_ref().map_or(run_started, |t| t.0));
        };
        let wait = if last.phase == AnalysisPhase::Error {
            ERROR_RETRY_INTERVAL
        } else {
            // No interval: `count` measurements back to back (validation keeps that at 1).
            self.interval.unwrap_or_default()
        };
        Some(add(finished, wait))
    }

    /// Adds a measurement to the result: counters, consecutive counters, retention. An
    /// unfinished measurement replaces an unfinished last one and counts for nothing yet.
    pub fn record(&self, result: &mut MetricResult, measurement: Measurement) {
        if result
            .measurements
            .last()
            .is_some_and(|m| !m.phase.is_completed())
        {
            result.measurements.pop();
        }
        match measurement.phase {
            AnalysisPhase::Successful => {
                result.count += 1;
                result.successful += 1;
                result.consecutive_error = 0;
                result.consecutive_success += 1;
            }
            AnalysisPhase::Failed | AnalysisPhase::Inconclusive => {
                result.count += 1;
                if measurement.phase == AnalysisPhase::Failed {
                    result.failed += 1;
                } else {
                    result.inconclusive += 1;
                }
                result.consecutive_error = 0;
                result.consecutive_success = 0;
            }
            AnalysisPhase::Error => {
                result.error += 1;
                result.consecutive_error += 1;
                result.consecutive_success = 0;
            }
            AnalysisPhase::Pending | AnalysisPhase::Running => {}
        }
        if measurement.phase == AnalysisPhase::Error {
            // The last error stays visible on the metric until the next good measurement.
            result.message.clone_from(&measurement.message);
        } else if measurement.phase.is_completed() {
            result.message = None;
        }
        result.measurements.push(measurement);
        let excess = result.measurements.len().saturating_sub(self.retention);
        result.measurements.drain(..excess);
    }

    /// The metric's phase and, when a limit decided it, why (`failed (4) > failureLimit (3)`).
    /// `terminating`: the run is ending, so a metric that isn't Failed/Error/Inconclusive ends
    /// Successful.
    pub fn assess(
        &self,
        result: &MetricResult,
        terminating: bool,
    ) -> (AnalysisPhase, Option<String>) {
        if result.phase.is_completed() {
            return (result.phase, None);
        }
        let Some(last) = result.measurements.last() else {
            return if terminating {
                (AnalysisPhase::Successful, None)
            } else {
                (AnalysisPhase::Pending, None)
            };
        };
        if !last.phase.is_completed() {
            return (AnalysisPhase::Running, None);
        }
        if let Some((phase, reason)) = self.breach(result) {
            return (phase, Some(reason));
        }
        if self.consecutive_success_limit > 0
            && i64::from(result.consecutive_success) >= self.consecutive_success_limit
        {
            return (AnalysisPhase::Successful, None);
        }
        if let Some(count) = self.count
            && i64::from(result.count) >= count
        {
            if self.consecutive_success_limit > 0 {
                // The run of successes the metric was waiting for never came.
                let phase = if self.failure_limit < 0 {
                    AnalysisPhase::Failed
                } else {
                    AnalysisPhase::Inconclusive
                };
                return (
                    phase,
                    Some(format!(
                        "count ({}) reached without consecutiveSuccess reaching consecutiveSuccessLimit ({})",
                        result.count, self.consecutive_success_limit
                    )),
                );
            }
            return (AnalysisPhase::Successful, None);
        }
        if terminating {
            return (AnalysisPhase::Successful, None);
        }
        (AnalysisPhase::Running, None)
    }

    /// The limit breached, if any. Checked failed → inconclusive → consecutive errors, and the
    /// last breach wins, as in Argo.
    fn breach(&self, result: &MetricResult) -> Option<(AnalysisPhase, String)> {
        let mut breach = None;
        if self.failure_limit >= 0 && i64::from(result.failed) > self.failure_limit {
            breach = Some((
                AnalysisPhase::Failed,
                format!(
                    "failed ({}) > failureLimit ({})",
                    result.failed, self.failure_limit
                ),
            ));
        }
        if i64::from(result.inconclusive) > self.inconclusive_limit {
            breach = Some((
                AnalysisPhase::Inconclusive,
                format!(
                    "inconclusive ({}) > inconclusiveLimit ({})",
                    result.inconclusive, self.inconclusive_limit
                ),
            ));
        }
        if i64::from(result.consecutive_error) > self.consecutive_error_limit {
            breach = Some((
                AnalysisPhase::Error,
                format!(
                    "consecutiveErrors ({}) > consecutiveErrorLimit ({})",
                    result.consecutive_error, self.consecutive_error_limit
                ),
            ));
        }
        breach
    }
}

fn add(t: Timestamp, d: Duration) -> Timestamp {
    SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_add(d).ok())
        .unwrap_or(Timestamp::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Duration as ApiDuration;
    use AnalysisPhase::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + secs).unwrap_or_else(|e| panic!("{e}"))
    }

    fn measurement(phase: AnalysisPhase, finished: i64) -> Measurement {
        Measurement {
            phase,
            value: Some("[1]".into()),
            started_at: Some(Time(at(finished))),
            finished_at: Some(Time(at(finished))),
            ..Measurement::default()
        }
    }

    fn policy() -> MetricPolicy {
        MetricPolicy {
            name: "error-rate".into(),
            ..MetricPolicy::default()
        }
    }

    /// Records `phases` one second apart and returns the result with its assessed phase.
    fn run(
        policy: &MetricPolicy,
        phases: &[AnalysisPhase],
    ) -> (MetricResult, AnalysisPhase, Option<String>) {
        let mut result = MetricResult::new(&policy.name);
        for (i, phase) in phases.iter().enumerate() {
            policy.record(&mut result, measurement(*phase, i as i64));
        }
        let (phase, message) = policy.assess(&result, false);
        (result, phase, message)
    }

    #[test]
    fn policy_defaults_follow_argo() {
        let metric = Metric {
            name: "m".into(),
            ..Metric::default()
        };
        let p = MetricPolicy::from_metric(&metric, 10).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (
                p.count,
                p.failure_limit,
                p.inconclusive_limit,
                p.consecutive_error_limit,
                p.retention
            ),
            (Some(1), 0, 0, 4, 10)
        );
        let with_interval = Metric {
            interval: Some(ApiDuration::from_secs(60).into()),
            ..metric.clone()
        };
        let p = MetricPolicy::from_metric(&with_interval, 10).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((p.count, p.interval), (None, Some(Duration::from_secs(60))));
        let zero_count = Metric {
            count: Some(IntOrArg::Int(0)),
            ..with_interval.clone()
        };
        assert_eq!(
            MetricPolicy::from_metric(&zero_count, 10).map(|p| p.count),
            Ok(None)
        );
        let limits = Metric {
            count: Some(IntOrArg::Str("5".into())),
            failure_limit: Some(IntOrArg::Int(-1)),
            consecutive_success_limit: Some(IntOrArg::Int(2)),
            consecutive_error_limit: Some(IntOrArg::Str(" 2 ".into())),
            ..with_interval
        };
        let p = MetricPolicy::from_metric(&limits, 10).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (p.count, p.failure_limit, p.consecutive_error_limit),
            (Some(5), -1, 2)
        );
    }

    #[test]
    fn policy_rejects_unsubstituted_or_out_of_range_limits() {
        let metric = Metric {
            name: "m".into(),
            failure_limit: Some(IntOrArg::Str("{{args.limit}}".into())),
            ..Metric::default()
        };
        assert_eq!(
            MetricPolicy::from_metric(&metric, 10).map_err(|e| e.to_string()),
            Err("metric \"m\": failureLimit \"{{args.limit}}\" is not an integer".into())
        );
        let metric = Metric {
            name: "m".into(),
            inconclusive_limit: Some(IntOrArg::Int(-1)),
            ..Metric::default()
        };
        assert!(matches!(
            MetricPolicy::from_metric(&metric, 10),
            Err(PolicyError::OutOfRange {
                field: "inconclusiveLimit",
                value: -1,
                ..
            })
        ));
    }

    #[test]
    fn counters_follow_each_measurement_phase() {
        let p = MetricPolicy {
            count: None,
            failure_limit: -1,
            inconclusive_limit: 99,
            ..policy()
        };
        let (r, _, _) = run(
            &p,
            &[
                Successful,
                Error,
                Error,
                Failed,
                Inconclusive,
                Successful,
                Successful,
                Error,
            ],
        );
        assert_eq!(
            (
                r.count,
                r.successful,
                r.failed,
                r.inconclusive,
                r.error,
                r.consecutive_error,
                r.consecutive_success
            ),
            (5, 3, 1, 1, 3, 1, 0)
        );
        let (r, _, _) = run(&p, &[Error, Error, Successful, Successful]);
        assert_eq!(
            (r.consecutive_error, r.consecutive_success, r.error, r.count),
            (0, 2, 2, 2)
        );
    }

    #[test]
    fn failure_limit() {
        let cases: &[(i64, &[AnalysisPhase], AnalysisPhase, Option<&str>)] = &[
            (0, &[Failed], Failed, Some("failed (1) > failureLimit (0)")),
            (0, &[Successful], Running, None),
            (3, &[Failed, Failed, Failed], Running, None),
            (
                3,
                &[Failed, Failed, Failed, Failed],
                Failed,
                Some("failed (4) > failureLimit (3)"),
            ),
            (
                3,
                &[Failed, Successful, Failed, Successful, Failed],
                Running,
                None,
            ),
            (
                -1,
                &[Failed, Failed, Failed, Failed, Failed, Failed],
                Running,
                None,
            ),
        ];
        for (limit, phases, expected, message) in cases {
            let p = MetricPolicy {
                count: None,
                failure_limit: *limit,
                ..policy()
            };
            let (_, phase, reason) = run(&p, phases);
            assert_eq!(
                (phase, reason.as_deref()),
                (*expected, *message),
                "failureLimit {limit}, {phases:?}"
            );
        }
    }

    #[test]
    fn inconclusive_limit() {
        let cases: &[(i64, &[AnalysisPhase], AnalysisPhase)] = &[
            (0, &[Inconclusive], Inconclusive),
            (1, &[Inconclusive], Running),
            (1, &[Inconclusive, Successful, Inconclusive], Inconclusive),
        ];
        for (limit, phases, expected) in cases {
            let p = MetricPolicy {
                count: None,
                inconclusive_limit: *limit,
                ..policy()
            };
            assert_eq!(
                run(&p, phases).1,
                *expected,
                "inconclusiveLimit {limit}, {phases:?}"
            );
        }
        let p = MetricPolicy {
            count: None,
            ..policy()
        };
        assert_eq!(
            run(&p, &[Inconclusive]).2.as_deref(),
            Some("inconclusive (1) > inconclusiveLimit (0)")
        );
    }

    #[test]
    fn consecutive_error_limit_default_errors_on_the_fifth() {
        let p = MetricPolicy {
            count: None,
            ..policy()
        };
        assert_eq!(run(&p, &[Error; 4]).1, Running);
        let (_, phase, message) = run(&p, &[Error; 5]);
        assert_eq!(
            (phase, message.as_deref()),
            (
                Error,
                Some("consecutiveErrors (5) > consecutiveErrorLimit (4)")
            )
        );
        // A good measurement resets the streak.
        let streak = [
            Error, Error, Error, Error, Successful, Error, Error, Error, Error,
        ];
        let (r, phase, _) = run(&p, &streak);
        assert_eq!((phase, r.error, r.consecutive_error), (Running, 8, 4));
        let zero = MetricPolicy {
            consecutive_error_limit: 0,
            ..p
        };
        assert_eq!(run(&zero, &[Error]).1, Error);
    }

    #[test]
    fn last_breach_wins() {
        let p = MetricPolicy {
            count: None,
            consecutive_error_limit: 0,
            ..policy()
        };
        // Failed and Inconclusive both breached: Inconclusive is checked later and wins.
        assert_eq!(run(&p, &[Failed, Inconclusive]).1, Inconclusive);
        assert_eq!(run(&p, &[Failed, Inconclusive, Error]).1, Error);
    }

    #[test]
    fn count_completes_the_metric() {
        let p = MetricPolicy {
            count: Some(3),
            failure_limit: 1,
            ..policy()
        };
        assert_eq!(run(&p, &[Successful, Successful]).1, Running);
        assert_eq!(run(&p, &[Successful, Error, Successful]).1, Running);
        assert_eq!(run(&p, &[Successful, Failed, Successful]).1, Successful);
        assert_eq!(run(&p, &[Failed, Failed]).1, Failed);
        assert_eq!(run(&policy(), &[Successful]).1, Successful);
    }

    #[test]
    fn consecutive_success_limit() {
        let p = MetricPolicy {
            count: Some(5),
            consecutive_success_limit: 2,
            failure_limit: 3,
            ..policy()
        };
        assert_eq!(run(&p, &[Failed, Successful, Successful]).1, Successful);
        let (_, phase, message) = run(&p, &[Successful, Failed, Successful, Failed, Successful]);
        assert_eq!(phase, Inconclusive);
        assert_eq!(
            message.as_deref(),
            Some(
                "count (5) reached without consecutiveSuccess reaching consecutiveSuccessLimit (2)"
            )
        );
        let never_fails = MetricPolicy {
            failure_limit: -1,
            ..p
        };
        assert_eq!(
            run(
                &never_fails,
                &[Successful, Failed, Successful, Failed, Successful]
            )
            .1,
            Failed
        );
    }

    #[test]
    fn pending_running_and_terminating() {
        let p = MetricPolicy {
            count: None,
            ..policy()
        };
        let fresh = MetricResult::new("error-rate");
        assert_eq!(p.assess(&fresh, false).0, Pending);
        assert_eq!(p.assess(&fresh, true).0, Successful);
        let (r, phase, _) = run(&p, &[Successful]);
        assert_eq!(phase, Running);
        assert_eq!(p.assess(&r, true).0, Successful);
        let mut in_flight = r.clone();
        p.record(
            &mut in_flight,
            Measurement {
                phase: Running,
                ..Measurement::default()
            },
        );
        assert_eq!(p.assess(&in_flight, false).0, Running);
        // A completed phase is final.
        let done = MetricResult { phase: Failed, ..r };
        assert_eq!(p.assess(&done, false), (Failed, None));
    }

    #[test]
    fn unfinished_measurement_is_replaced_not_counted() {
        let p = MetricPolicy {
            count: None,
            ..policy()
        };
        let mut r = MetricResult::new("m");
        p.record(
            &mut r,
            Measurement {
                phase: Running,
                ..Measurement::default()
            },
        );
        assert_eq!((r.measurements.len(), r.count), (1, 0));
        p.record(&mut r, measurement(Successful, 1));
        assert_eq!(
            (r.measurements.len(), r.count, r.measurements[0].phase),
            (1, 1, Successful)
        );
    }

    #[test]
    fn retention_keeps_the_latest() {
        let p = MetricPolicy {
            count: None,
            failure_limit: -1,
            retention: 3,
            ..policy()
        };
        let mut r = MetricResult::new("m");
        for i in 0..7 {
            p.record(
                &mut r,
                measurement(if i % 2 == 0 { Successful } else { Failed }, i),
            );
        }
        let finished: Vec<_> = r
            .measurements
            .iter()
            .map(|m| m.finished_at.clone())
            .collect();
        assert_eq!(
            finished,
            vec![Some(Time(at(4))), Some(Time(at(5))), Some(Time(at(6)))]
        );
        assert_eq!(r.count, 7);
        let default = policy();
        let mut r = MetricResult::new("m");
        for i in 0..25 {
            default.record(&mut r, measurement(Error, i));
        }
        assert_eq!(r.measurements.len(), 10);
    }

    #[test]
    fn error_message_shown_until_a_good_measurement() {
        let p = MetricPolicy {
            count: None,
            ..policy()
        };
        let mut r = MetricResult::new("m");
        p.record(
            &mut r,
            Measurement {
                message: Some("no data returned by the query".into()),
                ..measurement(Error, 0)
            },
        );
        assert_eq!(r.message.as_deref(), Some("no data returned by the query"));
        p.record(&mut r, measurement(Successful, 1));
        assert_eq!(r.message, None);
    }

    #[test]
    fn next_measurement_timing() {
        let start = at(0);
        let every_minute = MetricPolicy {
            count: None,
            interval: Some(Duration::from_secs(60)),
            initial_delay: Some(Duration::from_secs(30)),
            ..policy()
        };
        let mut r = MetricResult::new("m");
        assert_eq!(
            every_minute.next_measurement_at(&r, start),
            Some(at(30)),
            "initialDelay from run start"
        );
        every_minute.record(&mut r, measurement(Successful, 31));
        assert_eq!(
            every_minute.next_measurement_at(&r, start),
            Some(at(91)),
            "interval after the last finish"
        );
        every_minute.record(&mut r, measurement(Error, 95));
        assert_eq!(
            every_minute.next_measurement_at(&r, start),
            Some(at(105)),
            "error retry in 10 s"
        );
        every_minute.record(&mut r, measurement(Failed, 105));
        assert_eq!(
            every_minute.next_measurement_at(&r, start),
            Some(at(165)),
            "back to the interval"
        );

        let once = policy();
        let mut r = MetricResult::new("m");
        assert_eq!(
            once.next_measurement_at(&r, start),
            Some(start),
            "no delay: now"
        );
        once.record(&mut r, measurement(Error, 2));
        assert_eq!(
            once.next_measurement_at(&r, start),
            Some(at(12)),
            "even without interval, errors retry"
        );
        once.record(&mut r, measurement(Successful, 12));
        assert_eq!(once.next_measurement_at(&r, start), None, "count reached");

        let mut done = MetricResult::new("m");
        every_minute.record(&mut done, measurement(Failed, 40));
        done.phase = Failed;
        assert_eq!(
            every_minute.next_measurement_at(&done, start),
            None,
            "completed metric"
        );

        let mut in_flight = MetricResult::new("m");
        every_minute.record(
            &mut in_flight,
            Measurement {
                phase: Running,
                resume_at: Some(Time(at(50))),
                ..Measurement::default()
            },
        );
        assert_eq!(
            every_minute.next_measurement_at(&in_flight, start),
            Some(at(50))
        );
    }
}
