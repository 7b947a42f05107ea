//! AnalysisTemplate, ClusterAnalysisTemplate and AnalysisRun: metrics measured against
//! Prometheus or a web endpoint, with success and failure conditions and limits.
//!
//! Shapes follow Argo Rollouts' `argoproj.io/v1alpha1` analysis types. Providers other than
//! `prometheus` and `web` are accepted by the schema only so that admission can reject them by
//! name.

use std::{borrow::Cow, collections::BTreeMap, fmt};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

use super::{Duration, Unsupported, unsupported};

/// Most metrics a template or run may declare (bounds CEL cost and object size).
pub const MAX_METRICS: usize = 100;
/// Most arguments a template, run or Rollout analysis may declare.
pub const MAX_ARGS: usize = 100;
/// Most measurements a metric result may keep in status (`measurementRetention` limit).
pub const MAX_MEASUREMENTS: usize = 1000;
/// Measurements kept per metric when no `measurementRetention` applies (Argo's default).
pub const DEFAULT_MEASUREMENT_RETENTION: usize = 10;
/// Consecutive errors tolerated when `consecutiveErrorLimit` is unset (Argo's default).
pub const DEFAULT_CONSECUTIVE_ERROR_LIMIT: i64 = 4;

// ---------------------------------------------------------------------------------------------
// Templates

/// Declares the spec type shared by AnalysisTemplate and ClusterAnalysisTemplate (the derive
/// needs one spec struct per kind; the fields are identical).
macro_rules! analysis_template_spec {
    ($(#[$attr:meta])* $name:ident) => {
        $(#[$attr])*
        #[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
        #[serde(rename_all = "camelCase")]
        #[x_kube(validation = Rule::new("(has(self.metrics) && size(self.metrics) > 0) || (has(self.templates) && size(self.templates) > 0)").message("a template needs metrics, templates (references to other templates), or both"))]
        pub struct $name {
            /// The metrics to measure. Names must be unique, here and across the templates this
            /// one references.
            #[serde(default)]
            #[schemars(length(max = 100))]
            #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["name".into()]))]
            pub metrics: Vec<Metric>,
            /// Arguments the metrics refer to as `{{args.NAME}}`. An argument without `value` or
            /// `valueFrom` must be supplied by whoever runs the template.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            #[schemars(length(max = 100))]
            #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["name".into()]))]
            pub args: Option<Vec<Argument>>,
            /// Metrics (by name; `*` for all) whose results are recorded but never affect the run.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            #[schemars(length(max = 100))]
            #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["metricName".into()]))]
            pub dry_run: Option<Vec<DryRun>>,
            /// How many measurements to keep in status per metric (default 10).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            #[schemars(length(max = 100))]
            #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["metricName".into()]))]
            pub measurement_retention: Option<Vec<MeasurementRetention>>,
            /// Other templates whose metrics, args, dryRun and measurementRetention this one
            /// includes (resolved when a run is created, recursively; a cycle is an error).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            #[schemars(length(max = 20))]
            pub templates: Option<Vec<super::AnalysisTemplateRef>>,
        }
    };
}

analysis_template_spec! {
    /// A reusable set of metrics, referenced by Rollouts (`templateName`) in the same namespace.
    #[derive(CustomResource)]
    #[kube(
        group = "aviary.dev",
        version = "v1alpha1",
        kind = "AnalysisTemplate",
        namespaced,
        shortname = "at",
        category = "aviary",
        doc = "A reusable set of metrics and success conditions, referenced by Rollouts in the same namespace.",
        derive = "PartialEq",
        derive = "Default",
        printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
    )]
    AnalysisTemplateSpec
}

analysis_template_spec! {
    /// A cluster-wide AnalysisTemplate, referenced with `clusterScope: true`.
    #[derive(CustomResource)]
    #[kube(
        group = "aviary.dev",
        version = "v1alpha1",
        kind = "ClusterAnalysisTemplate",
        shortname = "cat",
        category = "aviary",
        doc = "A cluster-scoped AnalysisTemplate, referenced from Rollouts with clusterScope: true.",
        derive = "PartialEq",
        derive = "Default",
        printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
    )]
    ClusterAnalysisTemplateSpec
}

impl From<ClusterAnalysisTemplateSpec> for AnalysisTemplateSpec {
    fn from(s: ClusterAnalysisTemplateSpec) -> Self {
        Self {
            metrics: s.metrics,
            args: s.args,
            dry_run: s.dry_run,
            measurement_retention: s.measurement_retention,
            templates: s.templates,
        }
    }
}

impl From<AnalysisTemplateSpec> for ClusterAnalysisTemplateSpec {
    fn from(s: AnalysisTemplateSpec) -> Self {
        Self {
            metrics: s.metrics,
            args: s.args,
            dry_run: s.dry_run,
            measurement_retention: s.measurement_retention,
            templates: s.templates,
        }
    }
}

impl AnalysisTemplateSpec {
    /// The declared arguments (empty when none).
    pub fn args(&self) -> &[Argument] {
        self.args.as_deref().unwrap_or_default()
    }
}

/// An argument of a template or run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.value) && has(self.valueFrom))").message("set either value or valueFrom, not both").field_path(".valueFrom"))]
pub struct Argument {
    /// Referred to as `{{args.NAME}}`.
    #[schemars(length(min = 1))]
    pub name: String,
    /// The value (a default in a template; overridden by the Rollout's args).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Where to read the value from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<ValueFrom>,
}

/// The source of an argument's value. Exactly one of the fields.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.secretKeyRef) != has(self.fieldRef)").message("valueFrom must set exactly one of secretKeyRef or fieldRef"))]
pub struct ValueFrom {
    /// A key of a Secret in the run's namespace; the value is redacted from messages and logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<SecretKeyRef>,
    /// A field of the AnalysisRun: `metadata.name`, `.namespace`, `.uid`, `.labels['KEY']` or
    /// `.annotations['KEY']`; another path is accepted, as Argo does, for a Rollout's args to
    /// override (left unresolved, the run ends in Error naming the arg).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field_ref: Option<FieldRef>,
}

/// A key of a Secret in the same namespace.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// The Secret's name.
    #[schemars(length(min = 1))]
    pub name: String,
    /// The key within the Secret.
    #[schemars(length(min = 1))]
    pub key: String,
}

/// A path to a field of the object, e.g. `metadata.labels['env']`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FieldRef {
    /// The field path.
    #[schemars(length(min = 1, max = 256))]
    pub field_path: String,
}

/// Runs a metric in dry-run mode: measured and reported, never affecting the run's phase.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DryRun {
    /// The metric's name, a regular expression over metric names, or `*` for all.
    #[schemars(length(min = 1))]
    pub metric_name: String,
}

/// How many measurements of a metric to keep in status.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MeasurementRetention {
    /// The metric's name, a regular expression over metric names, or `*` for all.
    #[schemars(length(min = 1))]
    pub metric_name: String,
    /// Measurements to keep (1..=1000).
    #[schemars(range(min = 1, max = 1000))]
    pub limit: i32,
}

// ---------------------------------------------------------------------------------------------
// Metrics

/// An integer, or a string holding an integer or an `{{args.NAME}}` placeholder, as Argo's
/// int-or-string limits allow (`failureLimit: "{{args.limit}}"`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum IntOrArg {
    /// A literal integer.
    Int(i64),
    /// A placeholder or an integer written as a string.
    Str(String),
}

impl IntOrArg {
    /// The integer, if this is one or a string holding one (after argument substitution).
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Self::Int(i) => Some(*i),
            Self::Str(s) => s.trim().parse().ok(),
        }
    }
}

impl From<i64> for IntOrArg {
    fn from(i: i64) -> Self {
        Self::Int(i)
    }
}

impl fmt::Display for IntOrArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Int(i) => write!(f, "{i}"),
            Self::Str(s) => f.write_str(s),
        }
    }
}

impl JsonSchema for IntOrArg {
    fn schema_name() -> Cow<'static, str> {
        "IntOrArg".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "x-kubernetes-int-or-string": true,
            "maxLength": 128,
            "x-kubernetes-validations": [{
                "rule": "type(self) == int || self.matches('^ *-?[0-9]+ *$') || self.matches('^[{][{] *args[.][A-Za-z0-9_.-]+ *[}][}]$')",
                "message": "must be an integer or an {{args.NAME}} placeholder",
            }],
        })
    }

    fn inline_schema() -> bool {
        true
    }
}

/// A metric's `interval` or `initialDelay`: a [`Duration`], or a string holding an
/// `{{args.NAME}}` placeholder (`"{{args.interval}}"`, `"{{args.minutes}}m"`) that the run
/// resolves and then reads as a duration, as Argo does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DurationOrArg {
    Duration(Duration),
    /// Kept as written until the run substitutes its args.
    Arg(String),
}

impl DurationOrArg {
    /// The duration, once no placeholder is left.
    pub fn duration(&self) -> Option<&Duration> {
        match self {
            Self::Duration(d) => Some(d),
            Self::Arg(_) => None,
        }
    }
}

impl From<Duration> for DurationOrArg {
    fn from(d: Duration) -> Self {
        Self::Duration(d)
    }
}

impl fmt::Display for DurationOrArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Duration(d) => write!(f, "{d}"),
            Self::Arg(s) => f.write_str(s),
        }
    }
}

impl Serialize for DurationOrArg {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Duration(d) => d.serialize(serializer),
            Self::Arg(s) => serializer.serialize_str(s),
        }
    }
}

impl<'de> Deserialize<'de> for DurationOrArg {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        match serde_json::Value::deserialize(deserializer)? {
            serde_json::Value::String(s) if s.contains("{{") => Ok(Self::Arg(s)),
            serde_json::Value::String(s) => Duration::parse(&s)
                .map(Self::Duration)
                .map_err(D::Error::custom),
            other => Duration::deserialize(other)
                .map(Self::Duration)
                .map_err(D::Error::custom),
        }
    }
}

impl JsonSchema for DurationOrArg {
    fn schema_name() -> Cow<'static, str> {
        "DurationOrArg".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        let rule = format!(
            "(type(self) != int && self.matches('[{{][{{] *args[.][A-Za-z0-9_.-]+ *[}}][}}]')) || ({})",
            super::duration::DURATION_RULE
        );
        let message = format!(
            "{}; or a string with an {{{{args.NAME}}}} placeholder",
            super::duration::DURATION_MESSAGE
        );
        json_schema!({
            "x-kubernetes-int-or-string": true,
            "maxLength": 128,
            "x-kubernetes-validations": [{"rule": rule, "message": message}],
        })
    }

    fn inline_schema() -> bool {
        true
    }
}

/// One metric: what to measure, how often, and when it passes or fails.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.count) || type(self.count) != int || self.count <= 1 || has(self.interval)").message("count > 1 requires interval: set interval (e.g. 1m) between measurements").field_path(".count"))]
#[x_kube(validation = Rule::new("!has(self.count) || type(self.count) != int || self.count >= 0").message("count must be >= 0").field_path(".count"))]
#[x_kube(validation = Rule::new("!has(self.provider.job) || (!has(self.successCondition) && !has(self.failureCondition))").message("a job metric's result is its Job's outcome (complete: Successful, failed: Failed): remove successCondition and failureCondition").field_path(".provider.job"))]
#[x_kube(validation = Rule::new("!has(self.failureLimit) || type(self.failureLimit) != int || self.failureLimit >= -1").message("failureLimit must be >= -1 (-1 disables the failure limit)").field_path(".failureLimit"))]
#[x_kube(validation = Rule::new("!has(self.inconclusiveLimit) || type(self.inconclusiveLimit) != int || self.inconclusiveLimit >= 0").message("inconclusiveLimit must be >= 0").field_path(".inconclusiveLimit"))]
#[x_kube(validation = Rule::new("!has(self.consecutiveErrorLimit) || type(self.consecutiveErrorLimit) != int || self.consecutiveErrorLimit >= 0").message("consecutiveErrorLimit must be >= 0").field_path(".consecutiveErrorLimit"))]
#[x_kube(validation = Rule::new("!has(self.consecutiveSuccessLimit) || type(self.consecutiveSuccessLimit) != int || self.consecutiveSuccessLimit >= 0").message("consecutiveSuccessLimit must be >= 0").field_path(".consecutiveSuccessLimit"))]
#[x_kube(validation = Rule::new("!has(self.failureLimit) || type(self.failureLimit) != int || self.failureLimit != -1 || (has(self.consecutiveSuccessLimit) && (type(self.consecutiveSuccessLimit) != int || self.consecutiveSuccessLimit > 0))").message("failureLimit -1 requires consecutiveSuccessLimit > 0, otherwise the metric can never fail or succeed").field_path(".failureLimit"))]
#[x_kube(validation = Rule::new("!has(self.count) || type(self.count) != int || self.count == 0 || (has(self.failureLimit) && type(self.failureLimit) != int) || (has(self.consecutiveSuccessLimit) && type(self.consecutiveSuccessLimit) != int) || ((has(self.failureLimit) ? self.failureLimit : 0) >= 0 ? self.count >= (has(self.failureLimit) ? self.failureLimit : 0) + (has(self.consecutiveSuccessLimit) ? self.consecutiveSuccessLimit : 0) : self.count >= (has(self.consecutiveSuccessLimit) ? self.consecutiveSuccessLimit : 0))").message("count must be >= failureLimit + consecutiveSuccessLimit (or >= consecutiveSuccessLimit when failureLimit is -1), as Argo requires").field_path(".count"))]
#[x_kube(validation = Rule::new("!has(self.count) || !has(self.inconclusiveLimit) || type(self.count) != int || type(self.inconclusiveLimit) != int || self.count == 0 || self.count >= self.inconclusiveLimit").message("count must be >= inconclusiveLimit").field_path(".count"))]
pub struct Metric {
    /// Unique within the template; names the metric's results.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Time between measurements (e.g. `30s`, `5m`, `1h`). Without it the metric is measured once
    /// (or `count` times, which then needs an interval).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<DurationOrArg>,
    /// Wait this long after the run starts before the first measurement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_delay: Option<DurationOrArg>,
    /// Number of measurements. Default: 1 without `interval`, unbounded with it. `count > 1`
    /// requires `interval`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<IntOrArg>,
    /// Expression over `result` that must hold for a measurement to be Successful, e.g.
    /// `result[0] >= 0.95`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_condition: Option<String>,
    /// Expression over `result` that makes a measurement Failed; wins over `successCondition`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_condition: Option<String>,
    /// The metric fails when more than this many measurements failed (default 0; -1 disables).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_limit: Option<IntOrArg>,
    /// The metric is Inconclusive when more than this many measurements were (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inconclusive_limit: Option<IntOrArg>,
    /// The metric errors when more than this many measurements errored in a row (default 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_error_limit: Option<IntOrArg>,
    /// The metric succeeds after this many Successful measurements in a row (default 0: off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_success_limit: Option<IntOrArg>,
    /// Where the measurement comes from: exactly one provider.
    pub provider: MetricProvider,
}

/// The integer in `v`, or `default` when unset. `None` only for an unresolved `{{args.NAME}}`
/// placeholder: resolve arguments first.
fn int_or(v: &Option<IntOrArg>, default: i64) -> Option<i64> {
    v.as_ref().map_or(Some(default), IntOrArg::as_int)
}

impl Metric {
    /// How many measurements to take, as Argo counts them: 1 when neither `count` nor
    /// `interval` is set, unbounded (`Ok(None)`) with only `interval` (or `count: 0`), else
    /// `count`. `Err` carries an unresolved `count` placeholder.
    pub fn effective_count(&self) -> Result<Option<i64>, &IntOrArg> {
        match &self.count {
            Some(c) => match c.as_int() {
                Some(0) if self.interval.is_some() => Ok(None),
                Some(0) => Ok(Some(1)),
                Some(n) => Ok(Some(n)),
                None => Err(c),
            },
            None if self.interval.is_some() => Ok(None),
            None => Ok(Some(1)),
        }
    }

    /// `failureLimit` (default 0; -1 disables).
    pub fn failure_limit(&self) -> Option<i64> {
        int_or(&self.failure_limit, 0)
    }

    /// `inconclusiveLimit` (default 0).
    pub fn inconclusive_limit(&self) -> Option<i64> {
        int_or(&self.inconclusive_limit, 0)
    }

    /// `consecutiveErrorLimit` (default 4).
    pub fn consecutive_error_limit(&self) -> Option<i64> {
        int_or(
            &self.consecutive_error_limit,
            DEFAULT_CONSECUTIVE_ERROR_LIMIT,
        )
    }

    /// Same as [`Metric::consecutive_error_limit`] (the name it was first published under).
    pub fn effective_consecutive_error_limit(&self) -> Option<i64> {
        self.consecutive_error_limit()
    }

    /// `consecutiveSuccessLimit` (default 0: off).
    pub fn consecutive_success_limit(&self) -> Option<i64> {
        int_or(&self.consecutive_success_limit, 0)
    }
}

/// A Job run for each measurement, as Argo's job provider runs it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobMetric {
    /// Labels and annotations for the Job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<ExtraMetadata>,
    /// The Job's spec, as in a `batch/v1` Job (args substituted in its strings). The API server
    /// checks it when the Job is created; what it refuses is an Error measurement quoting it.
    #[schemars(schema_with = "json_object")]
    pub spec: serde_json::Map<String, serde_json::Value>,
}

/// Labels and annotations added to an object Aviary creates (a job metric's Job, a Rollout's
/// AnalysisRuns). Aviary's own labels win over one of the same key.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExtraMetadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// The system a metric is measured in. Exactly one of `prometheus`, `web` or `job`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.prometheus) || has(self.web) || has(self.kayenta) || has(self.datadog) || has(self.wavefront) || has(self.newRelic) || has(self.job) || has(self.cloudWatch) || has(self.graphite) || has(self.influxdb) || has(self.skywalking) || has(self.plugin)").message("provider must set one of prometheus, web or job").reason(kube::core::Reason::FieldValueRequired))]
#[x_kube(validation = Rule::new("[has(self.prometheus), has(self.web), has(self.job)].filter(x, x).size() <= 1").message("provider must set only one of prometheus, web or job"))]
#[x_kube(validation = unsupported("kayenta", "provider.kayenta", "use prometheus, web or job"))]
#[x_kube(validation = unsupported("datadog", "provider.datadog", "use prometheus, web or job"))]
#[x_kube(validation = unsupported("wavefront", "provider.wavefront", "use prometheus, web or job"))]
#[x_kube(validation = unsupported("newRelic", "provider.newRelic", "use prometheus, web or job"))]
#[x_kube(validation = unsupported("cloudWatch", "provider.cloudWatch", "use prometheus, web or job"))]
#[x_kube(validation = unsupported("graphite", "provider.graphite", "use prometheus, web or job"))]
#[x_kube(validation = unsupported("influxdb", "provider.influxdb", "use prometheus, web or job"))]
#[x_kube(validation = unsupported("skywalking", "provider.skywalking", "use prometheus, web or job"))]
#[x_kube(validation = unsupported("plugin", "provider.plugin (metric provider plugins)", "use prometheus, web or job"))]
pub struct MetricProvider {
    /// A PromQL query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusMetric>,
    /// An HTTP GET returning JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web: Option<WebMetric>,
    /// Not supported by Aviary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kayenta: Option<Unsupported>,
    /// Not supported by Aviary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datadog: Option<Unsupported>,
    /// Not supported by Aviary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wavefront: Option<Unsupported>,
    /// Not supported by Aviary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_relic: Option<Unsupported>,
    /// A Kubernetes Job per measurement: Successful when the Job completes, Failed when it
    /// fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<JobMetric>,
    /// Not supported by Aviary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_watch: Option<Unsupported>,
    /// Not supported by Aviary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graphite: Option<Unsupported>,
    /// Not supported by Aviary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub influxdb: Option<Unsupported>,
    /// Not supported by Aviary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skywalking: Option<Unsupported>,
    /// Not supported by Aviary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<Unsupported>,
}

/// A PromQL query; `result` is a float (scalar) or a list of floats (vector, one per series;
/// with `rangeQuery`, every sample of every series).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusMetric {
    /// Base URL of the Prometheus API, e.g. `http://prometheus.monitoring:9090`. Empty: the
    /// controller's default address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// The PromQL query; `{{args.NAME}}` placeholders are substituted first.
    #[schemars(length(min = 1))]
    pub query: String,
    /// Query timeout in seconds (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 3600))]
    pub timeout: Option<i64>,
    /// Skip TLS certificate verification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure: Option<bool>,
    /// Extra HTTP headers sent with the query (e.g. `X-Scope-OrgID`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 50))]
    pub headers: Option<Vec<WebMetricHeader>>,
    /// Credentials for the Prometheus API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication: Option<PrometheusAuth>,
    /// Query a range instead of an instant: every sample of every series from `start` to
    /// `end`, `step` apart, is one number of `result`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range_query: Option<RangeQuery>,
}

/// A Prometheus range query's bounds, as Argo writes them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RangeQuery {
    /// The first time: `now()`, `date("2026-01-02T15:04:05Z")`, either followed by
    /// `- duration("1h")` or `+ duration("…")` (args may fill in the duration).
    #[schemars(length(min = 1, max = 256))]
    pub start: String,
    /// The last time, in the same forms (usually `now()`).
    #[schemars(length(min = 1, max = 256))]
    pub end: String,
    /// The time between two samples (e.g. `30s`, `1m`).
    pub step: DurationOrArg,
}

/// Authentication to a metric's endpoint (the Prometheus API, or a web metric's URL).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = unsupported("sigv4", "authentication.sigv4", "use basicAuth or headers"))]
#[x_kube(validation = Rule::new("!has(self.basicAuth) || !has(self.oauth2)").message("authentication: use either basicAuth or oauth2, not both").field_path(".oauth2"))]
pub struct PrometheusAuth {
    /// HTTP basic authentication. Take the password from a Secret with an argument
    /// (`valueFrom.secretKeyRef`) and write `password: "{{args.prom-password}}"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<BasicAuth>,
    /// Not supported by Aviary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sigv4: Option<Unsupported>,
    /// OAuth2 client credentials: a token from `tokenUrl`, sent as `Authorization: Bearer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth2: Option<OAuth2>,
}

/// The OAuth2 client-credentials grant (RFC 6749 §4.4), as Argo's `oauth2` declares it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OAuth2 {
    /// The token endpoint (its host and path may not come from a Secret).
    #[schemars(length(min = 1))]
    pub token_url: String,
    /// The client's id.
    #[schemars(length(min = 1))]
    pub client_id: String,
    /// The client's secret (use an `{{args.NAME}}` placeholder backed by a Secret).
    #[schemars(length(min = 1))]
    pub client_secret: String,
    /// Scopes to ask for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 50))]
    pub scopes: Option<Vec<String>>,
}

/// HTTP basic authentication.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BasicAuth {
    /// User name (may be an `{{args.NAME}}` placeholder).
    #[schemars(length(min = 1))]
    pub username: String,
    /// Password (use an `{{args.NAME}}` placeholder backed by a Secret).
    pub password: String,
}

/// An HTTP header.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebMetricHeader {
    /// Header name.
    #[schemars(length(min = 1))]
    pub key: String,
    /// Header value (may use `{{args.NAME}}`).
    pub value: String,
}

/// An HTTP request whose JSON response, narrowed by `jsonPath`, is the measurement's `result`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.method) || self.method in ['GET', 'POST', 'PUT']").message("web.method must be GET (the default), POST or PUT").field_path(".method"))]
#[x_kube(validation = Rule::new("!has(self.body) || !has(self.jsonBody)").message("web: use either body or jsonBody, not both").field_path(".jsonBody"))]
#[x_kube(validation = Rule::new("(!has(self.body) && !has(self.jsonBody)) || (has(self.method) && self.method in ['POST', 'PUT'])").message("web.body and web.jsonBody are sent only with method POST or PUT: set method").field_path(".method"))]
pub struct WebMetric {
    /// The URL; `{{args.NAME}}` placeholders are substituted first.
    #[schemars(length(min = 1))]
    pub url: String,
    /// HTTP method: `GET` (the default), `POST` or `PUT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Extra HTTP headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 50))]
    pub headers: Option<Vec<WebMetricHeader>>,
    /// Request timeout in seconds (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 3600))]
    pub timeout_seconds: Option<i64>,
    /// JSONPath selecting the result from the response, e.g. `{$.data.ok}` (default: the whole
    /// document).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_path: Option<String>,
    /// Skip TLS certificate verification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure: Option<bool>,
    /// Credentials for the URL: `basicAuth`, an Aviary extension (Argo's web provider ignores
    /// it; its `oauth2` and `sigv4` are refused by name). Beside an `Authorization` header, the
    /// measurement is an Error saying to choose one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication: Option<PrometheusAuth>,
    /// The request body, sent as written (args substituted), with POST or PUT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 65536))]
    pub body: Option<String>,
    /// A JSON request body (args substituted in its strings), sent with POST or PUT and
    /// `Content-Type: application/json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "json_object")]
    pub json_body: Option<serde_json::Map<String, serde_json::Value>>,
}

/// Any JSON object, kept as written (`jsonBody`).
fn json_object(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

// ---------------------------------------------------------------------------------------------
// Runs

/// One execution of a set of metrics, created by a Rollout (or by hand from a template).
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "aviary.dev",
    version = "v1alpha1",
    kind = "AnalysisRun",
    namespaced,
    shortname = "ar",
    category = "aviary",
    status = "AnalysisRunStatus",
    doc = "One execution of a set of metrics: the template spec with arguments resolved, and the measurements taken.",
    derive = "PartialEq",
    derive = "Default",
    printcolumn(
        name = "Phase",
        type_ = "string",
        json_path = ".status.phase",
        description = "Phase of the run"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = unsupported("ttlStrategy", "ttlStrategy", "a Rollout keeps its finished runs up to spec.analysis.successfulRunHistoryLimit and unsuccessfulRunHistoryLimit (5 each by default) and deletes older ones; delete a run you created yourself when done with it"))]
pub struct AnalysisRunSpec {
    /// The metrics to measure (from the templates, merged).
    #[schemars(length(min = 1, max = 100))]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["name".into()]))]
    pub metrics: Vec<Metric>,
    /// Argument values (resolved, or `valueFrom` references resolved when the run starts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 100))]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["name".into()]))]
    pub args: Option<Vec<Argument>>,
    /// Stop the run: no new measurements; unfinished metrics end Successful.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminate: Option<bool>,
    /// Metrics that never affect the run's phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 100))]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["metricName".into()]))]
    pub dry_run: Option<Vec<DryRun>>,
    /// Measurements kept per metric.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 100))]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["metricName".into()]))]
    pub measurement_retention: Option<Vec<MeasurementRetention>>,
    /// Not supported by Aviary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_strategy: Option<Unsupported>,
}

impl AnalysisRunSpec {
    /// Whether `terminate` is set.
    pub fn terminated(&self) -> bool {
        self.terminate == Some(true)
    }

    /// The arguments (empty when none).
    pub fn args(&self) -> &[Argument] {
        self.args.as_deref().unwrap_or_default()
    }
}

impl From<AnalysisTemplateSpec> for AnalysisRunSpec {
    /// A run of the template as it stands (arguments not yet resolved).
    fn from(t: AnalysisTemplateSpec) -> Self {
        Self {
            metrics: t.metrics,
            args: t.args,
            terminate: None,
            dry_run: t.dry_run,
            measurement_retention: t.measurement_retention,
            ttl_strategy: None,
        }
    }
}

/// Phase of a run, a metric or a single measurement.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum AnalysisPhase {
    /// Not started.
    #[default]
    Pending,
    /// Measuring.
    Running,
    /// Passed.
    Successful,
    /// A failure condition held (more than `failureLimit` times).
    Failed,
    /// Could not be measured (more than `consecutiveErrorLimit` times in a row).
    Error,
    /// Neither success nor failure (more than `inconclusiveLimit` times). Also what a phase this
    /// version does not know (a newer controller's) reads as: final, so the run is neither
    /// measured again nor overwritten, and a Rollout waiting on it holds for a human.
    #[serde(other)]
    Inconclusive,
}

impl AnalysisPhase {
    /// Whether this phase is final.
    pub fn is_completed(self) -> bool {
        matches!(
            self,
            Self::Successful | Self::Failed | Self::Error | Self::Inconclusive
        )
    }

    /// Rank for combining metric phases into a run phase: the run takes the worst, in the
    /// order Successful < Running < Pending < Inconclusive < Error < Failed.
    pub fn severity(self) -> u8 {
        match self {
            Self::Successful => 0,
            Self::Running => 1,
            Self::Pending => 2,
            Self::Inconclusive => 3,
            Self::Error => 4,
            Self::Failed => 5,
        }
    }

    /// The worse of two phases (see [`AnalysisPhase::severity`]).
    pub fn worst(self, other: Self) -> Self {
        if other.severity() > self.severity() {
            other
        } else {
            self
        }
    }

    /// The phase as Argo spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::Running => "Running",
            Self::Successful => "Successful",
            Self::Failed => "Failed",
            Self::Error => "Error",
            Self::Inconclusive => "Inconclusive",
        }
    }
}

impl fmt::Display for AnalysisPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Observed state of an AnalysisRun. Counters are always written (a patch that omitted a
/// counter going back to 0 would leave the old value).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisRunStatus {
    /// Pending, Running, Successful, Failed, Error or Inconclusive.
    #[serde(default)]
    pub phase: AnalysisPhase,
    /// Why the run is in its phase, e.g. `Metric "x" assessed Failed due to failed (1) > failureLimit (0)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Per-metric results.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub metric_results: Vec<MetricResult>,
    /// When the run started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// When the run reached a final phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Time>,
    /// Totals over the non-dry-run metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_summary: Option<RunSummary>,
    /// Totals over the dry-run metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_run_summary: Option<RunSummary>,
}

impl AnalysisRunStatus {
    /// The result of the named metric.
    pub fn metric_result(&self, name: &str) -> Option<&MetricResult> {
        self.metric_results.iter().find(|r| r.name == name)
    }

    /// The result of the named metric, mutable.
    pub fn metric_result_mut(&mut self, name: &str) -> Option<&mut MetricResult> {
        self.metric_results.iter_mut().find(|r| r.name == name)
    }
}

/// Number of metrics per final phase.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunSummary {
    /// Metrics in total.
    #[serde(default)]
    pub count: i32,
    /// Metrics Successful.
    #[serde(default)]
    pub successful: i32,
    /// Metrics Failed.
    #[serde(default)]
    pub failed: i32,
    /// Metrics Inconclusive.
    #[serde(default)]
    pub inconclusive: i32,
    /// Metrics in Error.
    #[serde(default)]
    pub error: i32,
}

/// The state of one metric: its phase, counters and most recent measurements.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricResult {
    /// The metric's name.
    pub name: String,
    /// The metric's phase.
    #[serde(default)]
    pub phase: AnalysisPhase,
    /// The most recent measurements, oldest first (bounded by `measurementRetention`, default 10).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1000))]
    pub measurements: Vec<Measurement>,
    /// Why the metric is in its phase (e.g. the last error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Measurements taken without error (= successful + failed + inconclusive).
    #[serde(default)]
    pub count: i32,
    /// Measurements Successful.
    #[serde(default)]
    pub successful: i32,
    /// Measurements Failed.
    #[serde(default)]
    pub failed: i32,
    /// Measurements Inconclusive.
    #[serde(default)]
    pub inconclusive: i32,
    /// Measurements that errored.
    #[serde(default)]
    pub error: i32,
    /// Errors in a row; reset by any non-error measurement.
    #[serde(default)]
    pub consecutive_error: i32,
    /// Successful measurements in a row; reset by any other outcome.
    #[serde(default)]
    pub consecutive_success: i32,
    /// Whether the metric runs in dry-run mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<bool>,
    /// Provider data kept across measurements, e.g. `ResolvedPrometheusQuery`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

impl MetricResult {
    /// A fresh result for the named metric.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ..Self::default()
        }
    }
}

/// One measurement of a metric.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Measurement {
    /// Running, Successful, Failed, Inconclusive or Error.
    #[serde(default)]
    pub phase: AnalysisPhase,
    /// The value as text, e.g. `[0.98]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Why (e.g. the error, or that the result was empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the measurement started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// When it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Time>,
    /// When to retry or continue an unfinished measurement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_at: Option<Time>,
    /// Provider details, e.g. Prometheus warnings.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}
