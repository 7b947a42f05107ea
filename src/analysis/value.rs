//! The value a metric provider measured, as conditions see it and as status stores it.

use std::fmt;

/// What a provider returned for one measurement.
///
/// Prometheus scalars become [`MetricValue::Scalar`]; vectors (one number per series) and
/// matrices (every sample of every series, flattened) become [`MetricValue::Vector`]. Conditions
/// see a scalar as a `double` and a vector as a `list(double)` bound to `result`.
#[derive(Clone, Debug, PartialEq)]
pub enum MetricValue {
    Scalar(f64),
    Vector(Vec<f64>),
}

/// Why a value carries no usable data, which decides what guard a condition needs to accept it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MissingData {
    /// An empty vector: the query matched no series.
    Empty,
    /// Every number is NaN: series exist but, e.g., a rate over zero requests is 0/0.
    NaN,
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
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        ];
        for (value, expected) in cases {
            assert_eq!(value.missing_data(), expected, "{value:?}");
        }
    }
}
