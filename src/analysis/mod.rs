//! The pure core of analysis: everything an AnalysisRun decides, without I/O.
//!
//! - [`template`]: `{{args.x}}` substitution, PromQL-safe inside label matcher quotes.
//! - [`condition`]: `successCondition` / `failureCondition` in CEL, with Argo's helpers.
//! - [`json_path`]: a web metric's `jsonPath`, in Kubernetes' template form.
//! - [`time_expr`]: a Prometheus `rangeQuery`'s `start` and `end`.
//! - [`value`] and [`prometheus`]: what a provider measured, and how it reads as text.
//! - [`measurement`]: one value judged by the conditions, including the missing-data rule.
//! - [`metric`]: a metric's counters, limits, phase and next due time.
//! - [`run`]: a run's metrics together, its phase, summaries and message.
//!
//! Time is always passed in and "later" is returned as a requeue-after duration, so every
//! decision here is a plain function tested with `#[test]` tables. The controller does the
//! I/O: querying providers, reading Secrets for args, writing status.
//! Depends only on [`crate::api`].

pub mod condition;
pub mod json_path;
pub mod measurement;
pub mod metric;
pub mod prometheus;
pub mod run;
pub mod template;
pub mod time_expr;
pub mod value;
