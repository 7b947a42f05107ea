//! The value a metric provider measured, as conditions see it and as status stores it.

use std::fmt;

use serde_json::Value;

/// What a provider returned for one measurement.
///
/// Prometheus scalars become [`MetricValue::Scalar`]; vectors (one number per series) and
/// matrices (every sample of every series, flattened) become [`MetricValue::Vector`]. Conditions
/// see a scalar as a `double` and a vector as a `list(double)` bound to `result`.
///
/// A web response keeps its JSON type ([`MetricValue::Json`]), as Argo's `expr` sees it: a
/// boolean stays a `bool` (so `result == true` holds), a string a `string`, an object a `map`,
/// an array a `list`, null `null`; every number is a `double`, as Go's `json.Unmarshal` makes it.
#[derive(Clone, Debug, PartialEq)]
pub enum MetricValue {
    Scalar(f64),
    Vector(Vec<f64>),
    Json(Value),
}

/// Why a value carries no usable data, which decides what guard a condition needs to accept it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MissingData {
    /// An empty vector: the Prometheus query matched no series.
    Empty,
    /// Every number is NaN: series exist but, e.g., a rate over zero requests is 0/0.
    NaN,
    /// A web response's value is JSON `null`.
    Null,
}

impl MetricValue {
    /// `Some` when the value has nothing a threshold could be checked against: an empty vector,
    /// or only NaNs. A vector with some real numbers has data, even if other series are NaN.
    pub fn missing_data(&self) -> Option<MissingData> {
        match self {
            MetricValue::Scalar(v) if v.is_nan() => Some(MissingData::NaN),
            MetricValue::Scalar(_) => None,
            MetricValue::Vector(values) if values.is_empty() => Some(MissingData::Empty),
            MetricValue::Vector(values) if values.iter().all(|v| v.is_nan()) => {
                Some(MissingData::NaN)
            }
            MetricValue::Vector(_) => None,
            // An empty web list is data (an alerts endpoint with nothing firing), judged by
            // the conditions as Argo judges it; only null is missing.
            MetricValue::Json(Value::Null) => Some(MissingData::Null),
            MetricValue::Json(_) => None,
        }
    }
}

/// Formats one number like Prometheus (Go's `strconv.FormatFloat(v, 'f', -1, 64)`), so stored
/// values read the same as in Argo Rollouts and in the Prometheus UI.
struct PromNumber(f64);

impl fmt::Display for PromNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0;
        if v.is_nan() {
            f.write_str("NaN")
        } else if v == f64::INFINITY {
            f.write_str("+Inf")
        } else if v == f64::NEG_INFINITY {
            f.write_str("-Inf")
        } else {
            // Rust's shortest round-trip form without exponent, as Go's 'f' with precision -1.
            write!(f, "{v}")
        }
    }
}

/// The text stored in `measurements[].value`: `"0.5"` for a scalar, `"[0.98,0.5]"` for a vector
/// (Argo's Prometheus provider joins with commas, no spaces), `"[]"` when empty.
///
/// A web value is stored as JSON (as Argo stores it) when it holds only numbers, booleans and
/// null. A string, or an object or array holding one, is described by its JSON type only: a web
/// metric reaches whatever the controller's pod can reach, and status is readable by more people
/// than that endpoint may be (docs/security.md).
impl fmt::Display for MetricValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetricValue::Scalar(v) => write!(f, "{}", PromNumber(*v)),
            MetricValue::Vector(values) => {
                f.write_str("[")?;
                for (i, v) in values.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{}", PromNumber(*v))?;
                }
                f.write_str("]")
            }
            MetricValue::Json(v) if only_numbers(v) => write_json(f, v),
            MetricValue::Json(v) => write!(
                f,
                "({}; not shown: a web response is never quoted into status)",
                json_kind(v)
            ),
        }
    }
}

/// Whether `v` holds nothing but numbers, booleans and null, at any depth.
fn only_numbers(v: &Value) -> bool {
    match v {
        Value::Null | Value::Bool(_) | Value::Number(_) => true,
        Value::String(_) => false,
        Value::Array(items) => items.iter().all(only_numbers),
        Value::Object(fields) => fields.is_empty(),
    }
}

/// Compact JSON with numbers written as Argo writes them (Go marshals float64 `1` as `1`).
fn write_json(f: &mut fmt::Formatter<'_>, v: &Value) -> fmt::Result {
    match v {
        Value::Number(n) => match n.as_f64() {
            Some(x) => write!(f, "{}", PromNumber(x)),
            None => write!(f, "{n}"),
        },
        Value::Array(items) => {
            f.write_str("[")?;
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    f.write_str(",")?;
                }
                write_json(f, item)?;
            }
            f.write_str("]")
        }
        other => write!(f, "{other}"),
    }
}

/// A JSON value's type, for messages that must not quote it.
pub fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn display_matches_argo_text() {
        let cases = [
            (MetricValue::Vector(vec![0.98]), "[0.98]"),
            (MetricValue::Vector(vec![0.98, 0.5]), "[0.98,0.5]"),
            (MetricValue::Vector(vec![]), "[]"),
            (MetricValue::Scalar(0.5), "0.5"),
            (MetricValue::Scalar(1.0), "1"),
            (MetricValue::Scalar(f64::NAN), "NaN"),
            (
                MetricValue::Vector(vec![f64::INFINITY, f64::NEG_INFINITY]),
                "[+Inf,-Inf]",
            ),
            (MetricValue::Scalar(1e21), "1000000000000000000000"),
            (MetricValue::Scalar(-0.25), "-0.25"),
            (MetricValue::Json(json!(true)), "true"),
            (MetricValue::Json(json!(1)), "1"),
            (MetricValue::Json(json!(1e6)), "1000000"),
            (
                MetricValue::Json(json!([0.5, false, null])),
                "[0.5,false,null]",
            ),
            (MetricValue::Json(json!({})), "{}"),
            (MetricValue::Json(json!(null)), "null"),
        ];
        for (value, text) in cases {
            assert_eq!(value.to_string(), text, "{value:?}");
        }
    }

    #[test]
    fn missing_data_classification() {
        let cases = [
            (MetricValue::Vector(vec![]), Some(MissingData::Empty)),
            (MetricValue::Vector(vec![f64::NAN]), Some(MissingData::NaN)),
            (
                MetricValue::Vector(vec![f64::NAN, f64::NAN]),
                Some(MissingData::NaN),
            ),
            (MetricValue::Vector(vec![f64::NAN, 0.5]), None),
            (MetricValue::Vector(vec![0.0]), None),
            (MetricValue::Scalar(f64::NAN), Some(MissingData::NaN)),
            (MetricValue::Scalar(f64::INFINITY), None),
            (MetricValue::Scalar(0.0), None),
            (MetricValue::Json(json!(null)), Some(MissingData::Null)),
            (MetricValue::Json(json!([])), None),
            (MetricValue::Json(json!(false)), None),
            (MetricValue::Json(json!("")), None),
            (MetricValue::Json(json!({})), None),
            (MetricValue::Json(json!([null])), None),
        ];
        for (value, expected) in cases {
            assert_eq!(value.missing_data(), expected, "{value:?}");
        }
    }

    /// A string anywhere in a web value keeps the whole value out of status.
    #[test]
    fn web_text_is_described_not_quoted() {
        for v in [
            json!("hunter2"),
            json!({"token": 1}),
            json!([1, "hunter2"]),
            json!({"a": {"b": "hunter2"}}),
        ] {
            let text = MetricValue::Json(v.clone()).to_string();
            assert!(
                !text.contains("hunter2") && !text.contains("token"),
                "{text}"
            );
            assert!(text.contains(json_kind(&v)), "{text}");
        }
    }
}
