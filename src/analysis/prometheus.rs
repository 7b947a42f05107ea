//! Prometheus query results as [`MetricValue`]s, following Argo's provider
//! (`metricproviders/prometheus/prometheus.go`): a scalar is a number, a vector one number per
//! series, a matrix every sample of every series flattened in order; anything else is an error.

use prometheus_http_query::response::Data;
use thiserror::Error;

use super::value::MetricValue;

#[derive(Debug, Error)]
pub enum PrometheusValueError {
    /// `string` results (and any future type) carry no number to compare.
    #[error("unsupported Prometheus result type \"{0}\"")]
    UnsupportedResultType(String),
    #[error("malformed Prometheus result: {0}")]
    Malformed(#[from] serde_json::Error),
}

/// The value of a query result the client already decoded.
pub fn metric_value(data: &Data) -> MetricValue {
    match data {
        Data::Scalar(sample) => MetricValue::Scalar(sample.value()),
        Data::Vector(series) => {
            MetricValue::Vector(series.iter().map(|s| s.sample().value()).collect())
        }
        Data::Matrix(series) => MetricValue::Vector(
            series
                .iter()
                .flat_map(|s| s.samples().iter().map(|sample| sample.value()))
                .collect(),
        ),
    }
}

/// The value of the `data` object of a raw `/api/v1/query` response
/// (`{"resultType": …, "result": …}`). The client's [`Data`] cannot hold a `string` result; this
/// names it, so the measurement's Error says why instead of showing a decoding failure.
pub fn metric_value_from_json(
    data: &serde_json::Value,
) -> Result<MetricValue, PrometheusValueError> {
    let result_type = data
        .get("resultType")
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default();
    if !matches!(result_type, "scalar" | "vector" | "matrix") {
        return Err(PrometheusValueError::UnsupportedResultType(
            result_type.to_owned(),
        ));
    }
    let decoded: Data = serde_json::from_value(data.clone())?;
    Ok(metric_value(&decoded))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn convert(data: serde_json::Value) -> MetricValue {
        metric_value_from_json(&data).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn scalar_is_a_number() {
        let value = convert(json!({"resultType": "scalar", "result": [1700000000.0, "0.5"]}));
        assert_eq!(value, MetricValue::Scalar(0.5));
        assert_eq!(value.to_string(), "0.5");
    }

    #[test]
    fn vector_is_one_number_per_series() {
        let value = convert(json!({"resultType": "vector", "result": [
            {"metric": {"pod": "a"}, "value": [1700000000.0, "0.98"]},
            {"metric": {"pod": "b"}, "value": [1700000000.0, "NaN"]},
            {"metric": {"pod": "c"}, "value": [1700000000.0, "+Inf"]},
        ]}));
        let MetricValue::Vector(values) = &value else {
            panic!("expected a vector, got {value:?}");
        };
        assert_eq!(values.len(), 3);
        assert_eq!(values[0], 0.98);
        assert!(values[1].is_nan());
        assert_eq!(values[2], f64::INFINITY);
        assert_eq!(value.to_string(), "[0.98,NaN,+Inf]");
    }

    #[test]
    fn empty_vector_is_an_empty_list() {
        let value = convert(json!({"resultType": "vector", "result": []}));
        assert_eq!(value, MetricValue::Vector(vec![]));
        assert_eq!(value.to_string(), "[]");
    }

    #[test]
    fn matrix_is_flattened_in_series_order() {
        let value = convert(json!({"resultType": "matrix", "result": [
            {"metric": {"pod": "a"}, "values": [[1.0, "1"], [2.0, "2"]]},
            {"metric": {"pod": "b"}, "values": [[1.0, "3"]]},
        ]}));
        assert_eq!(value, MetricValue::Vector(vec![1.0, 2.0, 3.0]));
    }

    #[test]
    fn string_and_unknown_results_are_errors() {
        let string = metric_value_from_json(&json!({"resultType": "string", "result": [1.0, "x"]}));
        assert_eq!(
            string.map_err(|e| e.to_string()),
            Err("unsupported Prometheus result type \"string\"".to_owned())
        );
        assert!(matches!(
            metric_value_from_json(&json!({"result": []})),
            Err(PrometheusValueError::UnsupportedResultType(t)) if t.is_empty()
        ));
        assert!(matches!(
            metric_value_from_json(&json!({"resultType": "vector", "result": [{"value": 3}]})),
            Err(PrometheusValueError::Malformed(_))
        ));
    }
}
