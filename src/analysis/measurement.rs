//! One measurement's verdict: the conditions table of Argo Rollouts, and the rule that makes
//! missing data an Error instead of a pass.
//!
//! | successCondition | failureCondition | measurement                                    |
//! |------------------|------------------|------------------------------------------------|
//! | unset            | unset            | Successful                                     |
//! | set              | unset            | Successful if true, else Failed                |
//! | unset            | set              | Failed if true, else Successful                |
//! | set              | set              | Failed if failure true (wins); Successful if success true; else Inconclusive |
//!
//! A condition that errors or returns a non-boolean makes the measurement **Error** — except
//! that a failureCondition that holds still wins over a successCondition that errored.
//!
//! # Missing data
//!
//! A value *has no data* when it is an empty Prometheus vector, when every number in it is NaN
//! (a scalar NaN included) — an idle canary's `rate(errors) / rate(requests)` is 0/0 — or when
//! it is a web response's JSON `null`. (An empty web list is data: an alerts endpoint with
//! nothing firing answers `[]`.) Argo lets such
//! a value decide the verdict: an empty vector errors, but a NaN compares false, so
//! `result[0] < 0.05` as a failureCondition *passes* a canary that served nothing. Aviary's rule:
//!
//! 1. No data, and a condition failed to evaluate (e.g. `result[0]` on `[]`, or `NaN >= 0.95`,
//!    which this CEL refuses to compare) → **Error**, message `no data returned by the query`.
//! 2. No data, every condition evaluated, but none of the metric's conditions says what to do
//!    with this kind of missing data → **Error**, `no data returned by the query`, *whatever
//!    verdict the conditions gave* — an accidental pass, fail or inconclusive on no data is
//!    never trusted. A condition says so by calling a guard: for an empty vector `len`, `size`
//!    or `default`; for NaN `isNaN` or `default`; for null `isNil`, `default` or a comparison
//!    of `result` with `nil`/`null`. So `isNaN(result[0]) || result[0] >= 0.95`
//!    and `len(result) == 0 || result[0] < 0.2` decide for themselves, while
//!    `result.all(x, x < 0.05)` (true on `[]`) and a missing condition do not.
//! 3. Otherwise the table applies.
//!
//! Error measurements don't count towards `count`, are retried after 10 s and end the metric
//! after `consecutiveErrorLimit` + 1 in a row: an idle canary is given about 40 s of grace
//! instead of being passed or aborted on the first empty scrape.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::condition::{Condition, ConditionError};
use super::value::{MetricValue, MissingData};
use crate::api::{AnalysisPhase, Measurement, Metric};

/// The message of a measurement whose query returned nothing to judge.
pub const NO_DATA: &str = "no data returned by the query";

/// A metric's compiled `successCondition` and `failureCondition`.
#[derive(Debug, Default)]
pub struct Conditions {
    success: Option<Condition>,
    failure: Option<Condition>,
}

/// The outcome of judging one value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Successful, Failed, Inconclusive or Error.
    pub phase: AnalysisPhase,
    /// Why, for anything but Successful: the condition that decided, or the error.
    pub message: Option<String>,
}

impl Conditions {
    /// Compiles both expressions (either may be absent).
    pub fn compile(success: Option<&str>, failure: Option<&str>) -> Result<Self, ConditionError> {
        Ok(Conditions {
            success: success.map(Condition::compile).transpose()?,
            failure: failure.map(Condition::compile).transpose()?,
        })
    }

    /// Compiles a metric's conditions, as found in its spec (args already substituted).
    pub fn for_metric(metric: &Metric) -> Result<Self, ConditionError> {
        Self::compile(
            metric.success_condition.as_deref(),
            metric.failure_condition.as_deref(),
        )
    }

    /// Judges `value` (see the module doc for the table and the missing-data rule).
    pub fn judge(&self, value: &MetricValue) -> Verdict {
        let failed = self.failure.as_ref().map(|c| c.evaluate(value)).transpose();
        let succeeded = self.success.as_ref().map(|c| c.evaluate(value)).transpose();
        let outcome = match (failed, succeeded) {
            // Failure wins, even over a successCondition that could not be evaluated.
            (Ok(Some(true)), _) => Ok(verdict(
                AnalysisPhase::Failed,
                self.failure
                    .as_ref()
                    .map(|c| format!("failureCondition \"{}\" is true", c.expression())),
            )),
            (Err(e), _) | (_, Err(e)) => Err(e),
            (Ok(_), Ok(succeeded)) => Ok(self.table(succeeded)),
        };
        let missing = value.missing_data();
        match (outcome, missing) {
            (Err(_), Some(_)) => verdict(AnalysisPhase::Error, Some(NO_DATA.to_owned())),
            (Err(e), None) => verdict(AnalysisPhase::Error, Some(e.to_string())),
            (Ok(_), Some(missing)) if !self.guards(missing) => {
                verdict(AnalysisPhase::Error, Some(NO_DATA.to_owned()))
            }
            (Ok(v), _) => v,
        }
    }

    /// The table's answer once the failureCondition (if any) is known not to hold.
    fn table(&self, succeeded: Option<bool>) -> Verdict {
        match (&self.success, &self.failure, succeeded) {
            (_, _, Some(true)) => verdict(AnalysisPhase::Successful, None),
            (Some(success), None, _) => verdict(
                AnalysisPhase::Failed,
                Some(format!(
                    "successCondition \"{}\" is false",
                    success.expression()
                )),
            ),
            (Some(success), Some(failure), _) => verdict(
                AnalysisPhase::Inconclusive,
                Some(format!(
                    "neither successCondition \"{}\" nor failureCondition \"{}\" is true",
                    success.expression(),
                    failure.expression()
                )),
            ),
            // No successCondition: anything the failureCondition didn't catch passes.
            (None, _, _) => verdict(AnalysisPhase::Successful, None),
        }
    }

    /// Whether any of the conditions says what to do with this kind of missing data.
    fn guards(&self, missing: MissingData) -> bool {
        [&self.success, &self.failure]
            .into_iter()
            .flatten()
            .any(|c| c.guards(missing))
    }

    /// A finished measurement of `value` judged by these conditions.
    pub fn measure(
        &self,
        value: &MetricValue,
        started: Timestamp,
        finished: Timestamp,
    ) -> Measurement {
        let Verdict { phase, message } = self.judge(value);
        Measurement {
            phase,
            value: Some(value.to_string()),
            message,
            started_at: Some(Time(started)),
            finished_at: Some(Time(finished)),
            ..Measurement::default()
        }
    }
}

fn verdict(phase: AnalysisPhase, message: Option<String>) -> Verdict {
    Verdict { phase, message }
}

/// A finished Error measurement for a provider failure (unreachable Prometheus, bad response).
pub fn error_measurement(
    message: impl Into<String>,
    started: Timestamp,
    finished: Timestamp,
) -> Measurement {
    Measurement {
        phase: AnalysisPhase::Error,
        message: Some(message.into()),
        started_at: Some(Time(started)),
        finished_at: Some(Time(finished)),
        ..Measurement::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use AnalysisPhase::*;

    fn vector(values: &[f64]) -> MetricValue {
        MetricValue::Vector(values.to_vec())
    }

    fn judge(success: Option<&str>, failure: Option<&str>, value: &MetricValue) -> Verdict {
        Conditions::compile(success, failure)
            .unwrap_or_else(|e| panic!("{e}"))
            .judge(value)
    }

    const SUCCESS: &str = "result[0] >= 0.95";
    const FAILURE: &str = "result[0] < 0.5";

    #[test]
    fn conditions_table() {
        let good = vector(&[0.99]);
        let middling = vector(&[0.7]);
        let bad = vector(&[0.1]);
        let cases: &[(Option<&str>, Option<&str>, &MetricValue, AnalysisPhase)] = &[
            (None, None, &good, Successful),
            (None, None, &bad, Successful),
            (Some(SUCCESS), None, &good, Successful),
            (Some(SUCCESS), None, &middling, Failed),
            (None, Some(FAILURE), &bad, Failed),
            (None, Some(FAILURE), &middling, Successful),
            (Some(SUCCESS), Some(FAILURE), &good, Successful),
            (Some(SUCCESS), Some(FAILURE), &bad, Failed),
            (Some(SUCCESS), Some(FAILURE), &middling, Inconclusive),
            // Both true: failure wins.
            (
                Some("result[0] > 0.0"),
                Some("result[0] > 0.0"),
                &good,
                Failed,
            ),
        ];
        for (success, failure, value, phase) in cases {
            assert_eq!(
                judge(*success, *failure, value).phase,
                *phase,
                "success {success:?}, failure {failure:?}, value {value}"
            );
        }
    }

    #[test]
    fn verdict_messages_name_the_condition() {
        assert_eq!(
            judge(Some(SUCCESS), None, &vector(&[0.7]))
                .message
                .as_deref(),
            Some("successCondition \"result[0] >= 0.95\" is false")
        );
        assert_eq!(
            judge(Some(SUCCESS), Some(FAILURE), &vector(&[0.1]))
                .message
                .as_deref(),
            Some("failureCondition \"result[0] < 0.5\" is true")
        );
        assert_eq!(
            judge(Some(SUCCESS), Some(FAILURE), &vector(&[0.7]))
                .message
                .as_deref(),
            Some(
                "neither successCondition \"result[0] >= 0.95\" nor failureCondition \"result[0] < 0.5\" is true"
            )
        );
        assert_eq!(judge(Some(SUCCESS), None, &vector(&[0.99])).message, None);
    }

    #[test]
    fn errors_and_non_booleans_are_error_measurements() {
        let error = judge(Some("result[0] > 'x'"), None, &vector(&[0.5]));
        assert_eq!(error.phase, Error);
        assert!(
            error
                .message
                .as_deref()
                .is_some_and(|m| m.contains("result[0] > 'x'")),
            "{error:?}"
        );
        let not_bool = judge(Some("result[0]"), None, &vector(&[0.5]));
        assert_eq!(not_bool.phase, Error);
        assert_eq!(
            not_bool.message.as_deref(),
            Some("condition \"result[0]\" returned double 0.5, not a boolean")
        );
        // A failureCondition that holds wins over a successCondition that errors, but an
        // erroring failureCondition is an Error even when the successCondition holds.
        assert_eq!(
            judge(Some("result[0]"), Some("result[0] > 0.1"), &vector(&[0.5])).phase,
            Failed
        );
        assert_eq!(
            judge(Some("result[0] > 0.1"), Some("result[0]"), &vector(&[0.5])).phase,
            Error
        );
        assert_eq!(
            judge(Some("result[0]"), Some("result[0] > 0.9"), &vector(&[0.5])).phase,
            Error
        );
    }

    #[test]
    fn missing_data_is_never_a_pass() {
        let empty = vector(&[]);
        let nan = vector(&[f64::NAN]);
        let nans = vector(&[f64::NAN, f64::NAN]);
        let scalar_nan = MetricValue::Scalar(f64::NAN);
        let no_data = Verdict {
            phase: Error,
            message: Some(NO_DATA.to_owned()),
        };
        let cases: &[(Option<&str>, Option<&str>, &MetricValue)] = &[
            // Evaluation fails on the missing data.
            (Some(SUCCESS), None, &empty),
            (Some(SUCCESS), None, &nan),
            (Some("result >= 0.95"), None, &scalar_nan),
            (None, Some("result[0] > 0.05"), &nan),
            (None, Some("result[0] > 0.05"), &empty),
            (Some(SUCCESS), Some(FAILURE), &nan),
            // Evaluates fine but would pass by accident.
            (Some("result.all(x, x < 0.05)"), None, &empty),
            (None, Some("result.exists(x, x > 0.05)"), &empty),
            (Some("result[0] != 0.5"), None, &nan),
            (None, Some("result[0] == 1.0"), &nans),
            // Would fail or be inconclusive by accident: still an Error, so it is retried.
            (Some("result[0] == 1.0"), None, &nan),
            (Some("result[0] == 1.0"), Some("result[0] == 0.0"), &nan),
            // No condition at all cannot vouch for missing data.
            (None, None, &empty),
            (None, None, &nan),
            // A guard for the other kind of missing data doesn't count.
            (Some("len(result) == 0 || result[0] != 0.5"), None, &nan),
            (Some("isNaN(result[0]) || result[0] >= 0.95"), None, &empty),
        ];
        for (success, failure, value) in cases {
            assert_eq!(
                judge(*success, *failure, value),
                no_data,
                "success {success:?}, failure {failure:?}, value {value}"
            );
        }
    }

    #[test]
    fn explicit_guards_decide_on_missing_data() {
        let cases: &[(Option<&str>, Option<&str>, MetricValue, AnalysisPhase)] = &[
            (
                Some("isNaN(result[0]) || result[0] >= 0.95"),
                None,
                vector(&[f64::NAN]),
                Successful,
            ),
            (
                Some("!isNaN(result[0]) && result[0] >= 0.95"),
                None,
                vector(&[f64::NAN]),
                Failed,
            ),
            (
                Some("len(result) == 0 || result[0] < 0.2"),
                None,
                vector(&[]),
                Successful,
            ),
            (
                Some("size(result) > 0 && result[0] < 0.2"),
                None,
                vector(&[]),
                Failed,
            ),
            (
                None,
                Some("len(result) > 0 && result[0] > 0.05"),
                vector(&[]),
                Successful,
            ),
            (
                Some("default(result, [1.0])[0] >= 0.95"),
                None,
                vector(&[]),
                Successful,
            ),
            (
                Some("default(result, 0.0) >= 0.95"),
                None,
                MetricValue::Scalar(f64::NAN),
                Failed,
            ),
            (
                Some("len(result) == 0 || isNaN(result[0]) || result[0] >= 0.95"),
                None,
                vector(&[f64::NAN]),
                Successful,
            ),
            // A guard in the failure condition speaks for the metric.
            (
                Some(SUCCESS),
                Some("isNaN(result[0]) || result[0] < 0.5"),
                vector(&[f64::NAN]),
                Failed,
            ),
        ];
        for (success, failure, value, phase) in cases {
            assert_eq!(
                judge(*success, *failure, value).phase,
                *phase,
                "success {success:?}, failure {failure:?}, value {value}"
            );
        }
    }

    #[test]
    fn partial_nan_is_data() {
        // One idle series among busy ones: the busy ones are judged; comparing the idle one
        // is an ordinary evaluation error with its own message.
        let value = vector(&[0.99, f64::NAN]);
        assert_eq!(judge(Some(SUCCESS), None, &value).phase, Successful);
        let error = judge(Some("result.all(x, x >= 0.95)"), None, &value);
        assert_eq!(error.phase, Error);
        assert_ne!(error.message.as_deref(), Some(NO_DATA));
    }

    /// A web `null` is missing data: an Error unless a condition says what it means; a
    /// `false`, `""` or `[]` is data, judged as it is.
    #[test]
    fn web_null_is_missing_data_unless_guarded() {
        use serde_json::json;
        let web = |v| MetricValue::Json(v);
        let cases: &[(Option<&str>, Option<&str>, MetricValue, AnalysisPhase)] = &[
            (Some("result == true"), None, web(json!(null)), Error),
            (None, Some("result == false"), web(json!(null)), Error),
            (
                Some("isNil(result) || result"),
                None,
                web(json!(null)),
                Successful,
            ),
            (None, Some("result == nil"), web(json!(null)), Failed),
            (
                Some("default(result, false)"),
                None,
                web(json!(null)),
                Failed,
            ),
            (Some("size(result) > 0"), None, web(json!([])), Failed),
            // An empty web list is data (an alerts endpoint with nothing firing).
            (
                None,
                Some("result.exists(a, a.severity == 'critical')"),
                web(json!([])),
                Successful,
            ),
            (
                Some("result.all(a, a.ok)"),
                None,
                web(json!([])),
                Successful,
            ),
            (Some("result == true"), None, web(json!(false)), Failed),
            (Some("result == ''"), None, web(json!("")), Successful),
        ];
        for (success, failure, value, phase) in cases {
            let verdict = judge(*success, *failure, value);
            assert_eq!(
                verdict.phase, *phase,
                "{success:?} {failure:?} {value:?}: {verdict:?}"
            );
            if *phase == Error {
                assert_eq!(verdict.message.as_deref(), Some(NO_DATA));
            }
        }
    }

    #[test]
    fn measurement_records_value_text_and_times() {
        let conditions = Conditions::compile(Some(SUCCESS), None).unwrap_or_else(|e| panic!("{e}"));
        let start = Timestamp::from_second(1_700_000_000).unwrap_or_else(|e| panic!("{e}"));
        let end = Timestamp::from_second(1_700_000_001).unwrap_or_else(|e| panic!("{e}"));
        let m = conditions.measure(&vector(&[0.98]), start, end);
        assert_eq!(m.phase, Successful);
        assert_eq!(m.value.as_deref(), Some("[0.98]"));
        assert_eq!(m.started_at, Some(Time(start)));
        assert_eq!(m.finished_at, Some(Time(end)));
        let e = error_measurement("connection refused", start, end);
        assert_eq!(
            (e.phase, e.message.as_deref(), e.value),
            (Error, Some("connection refused"), None)
        );
    }
}
