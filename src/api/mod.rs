//! The `aviary.dev/v1alpha1` API: Rollout, AnalysisTemplate, ClusterAnalysisTemplate and
//! AnalysisRun.
//!
//! Field names, shapes and defaults follow Argo Rollouts' `argoproj.io/v1alpha1`, so an Argo
//! manifest ports by changing only `apiVersion`. These Rust types are the source of truth: the
//! CRDs in `crds/` are generated from them (`cargo run --bin crdgen`), doc comments become the
//! schema descriptions, and admission rules are CEL `x-kubernetes-validations` declared on the
//! types.
//!
//! Unknown fields: the API server's structural schema would silently prune a field it does not
//! know. Clients should send objects with server-side field validation `Strict` (kubectl's
//! default since 1.27, and what `kubectl apply --server-side` uses), which turns an unknown field
//! into an error. Argo Rollouts fields that Aviary does not implement are declared in the schema
//! as opaque values ([`Unsupported`]) and rejected by a CEL rule whose message names the field, so
//! they are refused whatever the client's field-validation setting.
//!
//! This module depends on nothing else in the crate.

pub mod analysis;
pub mod conditions;
pub mod duration;
pub mod field_path;
pub mod lenient;
pub mod rollout;
pub mod wire;

use std::borrow::Cow;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition as Crd, JSONSchemaProps,
};
use kube::core::{Message, Reason, Rule};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

pub use analysis::*;
pub use conditions::{Condition, ConditionStatus};
pub use duration::Duration;
pub use rollout::*;
pub use wire::POD_TEMPLATE_HASH_LABEL;

/// API group of every Aviary kind.
pub const GROUP: &str = "aviary.dev";
/// API version of every Aviary kind.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` of every Aviary kind.
pub const API_VERSION: &str = "aviary.dev/v1alpha1";

/// An Argo Rollouts field Aviary does not implement. The schema accepts any value here (so the
/// API server does not prune it silently) and a CEL rule on the enclosing object rejects it
/// with a message naming the field.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Unsupported(pub serde_json::Value);

impl JsonSchema for Unsupported {
    fn schema_name() -> Cow<'static, str> {
        "Unsupported".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        unsupported_schema("object")
    }

    fn inline_schema() -> bool {
        true
    }
}

/// The schema of an unsupported field of JSON type `ty`. CEL only sees typed properties, so
/// each unsupported field is declared with the type Argo gives it; its content is kept as is.
fn unsupported_schema(ty: &str) -> Schema {
    const DESCRIPTION: &str =
        "Not supported by Aviary; declared only so that admission rejects it by name.";
    match ty {
        "array" => json_schema!({
            "description": DESCRIPTION,
            "type": "array",
            "items": { "type": "object", "x-kubernetes-preserve-unknown-fields": true },
        }),
        "string-array" => json_schema!({
            "description": DESCRIPTION,
            "type": "array",
            "items": { "type": "string" },
        }),
        "object" => json_schema!({
            "description": DESCRIPTION,
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": true,
        }),
        scalar => json_schema!({ "description": DESCRIPTION, "type": scalar }),
    }
}

/// Schema of an unsupported Argo field that is a list of objects.
pub(crate) fn unsupported_array(_: &mut SchemaGenerator) -> Schema {
    unsupported_schema("array")
}

/// Schema of an unsupported Argo field that is a list of strings.
pub(crate) fn unsupported_string_array(_: &mut SchemaGenerator) -> Schema {
    unsupported_schema("string-array")
}

/// The CEL rule rejecting an [`Unsupported`] field `field` of the object it is declared on.
/// `what` names the field for the reader (the API server also prefixes its full path) and
/// `hint` says what to do instead.
pub(crate) fn unsupported(field: &str, what: &str, hint: &str) -> Rule {
    let mut message = format!("{what} is not supported by Aviary");
    if !hint.is_empty() {
        message.push_str(": ");
        message.push_str(hint);
    }
    Rule::new(format!("!has(self.{field})"))
        .message(Message::Message(message))
        .field_path(format!(".{field}"))
        .reason(Reason::FieldValueForbidden)
}

/// Every CRD of the API, in the order they should be installed.
pub fn crds() -> Vec<Crd> {
    KINDS.iter().filter_map(|(kind, _)| crd_for(kind)).collect()
}

/// The Rollout CRD, with two adjustments to the Kubernetes schemas embedded in it:
///
/// - the descriptions inside `spec.template` (the PodTemplateSpec) are dropped: they are
///   Kubernetes' own documentation, and without them the CRD stays well under the 256 KiB that
///   client-side `kubectl apply` can keep in its annotation;
/// - `spec.selector.matchLabels` gets at most 64 entries and label values at most 63 characters
///   (Kubernetes' own limit for label values), which bounds the CEL cost of the rule that checks
///   the selector against the template's labels.
pub fn rollout_crd() -> Crd {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaPropsOrBool;
    use kube::CustomResourceExt;
    let mut crd = Rollout::crd();
    for version in &mut crd.spec.versions {
        let Some(spec) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
            .and_then(|s| s.properties.as_mut())
            .and_then(|p| p.get_mut("spec"))
            .and_then(|s| s.properties.as_mut())
        else {
            continue;
        };
        let label_values = |labels: &mut JSONSchemaProps| {
            if let Some(JSONSchemaPropsOrBool::Schema(values)) =
                labels.additional_properties.as_mut()
            {
                values.max_length = Some(63);
            }
        };
        if let Some(match_labels) = spec
            .get_mut("selector")
            .and_then(|s| s.properties.as_mut())
            .and_then(|p| p.get_mut("matchLabels"))
        {
            match_labels.max_properties = Some(64);
            label_values(match_labels);
        }
        if let Some(template) = spec.get_mut("template") {
            let own = template.description.take();
            strip_descriptions(template);
            template.description = own;
            if let Some(labels) = template
                .properties
                .as_mut()
                .and_then(|p| p.get_mut("metadata"))
                .and_then(|m| m.properties.as_mut())
                .and_then(|p| p.get_mut("labels"))
            {
                label_values(labels);
            }
        }
    }
    crd
}

/// Gives every 32-bit integer in `schema` the bounds of its type, which `format: int32` alone
/// does not make the API server enforce (before Kubernetes 1.36): unbounded, `replicas:
/// 3000000000` was admitted, and one such object failed every list of its kind. A `port` that
/// is `x-kubernetes-int-or-string` with no rule of its own is Kubernetes' IntOrString (an int32
/// or a named port: probes' and lifecycle handlers' `httpGet` and `tcpSocket`) and gets the same
/// bounds, which apply to the number alone. Other int-or-strings are not int32: resource
/// quantities (any integer, e.g. `memory: 4294967296`), and ours (durations, percentages,
/// analysis limits), which bound their numbers in their rules.
pub fn bound_int32(schema: &mut JSONSchemaProps) {
    bound_int32_named(schema, "");
}

fn bound_int32_named(schema: &mut JSONSchemaProps, name: &str) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
        JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
    };
    let int32 = schema.format.as_deref() == Some("int32")
        || (name == "port"
            && schema.x_kubernetes_int_or_string == Some(true)
            && schema.x_kubernetes_validations.is_none());
    if int32 {
        let (lo, hi) = (f64::from(i32::MIN), f64::from(i32::MAX));
        schema.minimum = Some(schema.minimum.map_or(lo, |m| m.max(lo)));
        schema.maximum = Some(schema.maximum.map_or(hi, |m| m.min(hi)));
    }
    for (name, s) in schema.properties.iter_mut().flat_map(|p| p.iter_mut()) {
        bound_int32_named(s, name);
    }
    match schema.items.as_mut() {
        Some(JSONSchemaPropsOrArray::Schema(s)) => bound_int32(s),
        Some(JSONSchemaPropsOrArray::Schemas(ss)) => ss.iter_mut().for_each(bound_int32),
        None => {}
    }
    if let Some(JSONSchemaPropsOrBool::Schema(s)) = schema.additional_properties.as_mut() {
        bound_int32(s);
    }
    for s in [&mut schema.all_of, &mut schema.any_of, &mut schema.one_of]
        .into_iter()
        .flatten()
        .flatten()
    {
        bound_int32(s);
    }
}

/// `crd` with [`bound_int32`] applied to every version's schema.
fn bounded(mut crd: Crd) -> Crd {
    for version in &mut crd.spec.versions {
        if let Some(s) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        {
            bound_int32(s);
        }
    }
    crd
}

fn strip_descriptions(schema: &mut JSONSchemaProps) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
        JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
    };
    schema.description = None;
    for s in schema.properties.iter_mut().flat_map(|p| p.values_mut()) {
        strip_descriptions(s);
    }
    match schema.items.as_mut() {
        Some(JSONSchemaPropsOrArray::Schema(s)) => strip_descriptions(s),
        Some(JSONSchemaPropsOrArray::Schemas(ss)) => ss.iter_mut().for_each(strip_descriptions),
        None => {}
    }
    if let Some(JSONSchemaPropsOrBool::Schema(s)) = schema.additional_properties.as_mut() {
        strip_descriptions(s);
    }
    for s in [&mut schema.all_of, &mut schema.any_of, &mut schema.one_of]
        .into_iter()
        .flatten()
        .flatten()
    {
        strip_descriptions(s);
    }
}

/// Aviary's kinds, with the file each CRD is written to.
pub const KINDS: [(&str, &str); 4] = [
    ("Rollout", "rollouts.yaml"),
    ("AnalysisTemplate", "analysistemplates.yaml"),
    ("ClusterAnalysisTemplate", "clusteranalysistemplates.yaml"),
    ("AnalysisRun", "analysisruns.yaml"),
];

/// The CRD of one of Aviary's [`KINDS`], as installed.
pub fn crd_for(kind: &str) -> Option<Crd> {
    use kube::CustomResourceExt;
    let crd = match kind {
        "Rollout" => rollout_crd(),
        "AnalysisTemplate" => AnalysisTemplate::crd(),
        "ClusterAnalysisTemplate" => ClusterAnalysisTemplate::crd(),
        "AnalysisRun" => AnalysisRun::crd(),
        _ => return None,
    };
    Some(bounded(crd))
}

/// The CRD files as written to `crds/`: file name and YAML.
pub fn crd_files() -> Result<Vec<(&'static str, String)>, serde_yaml::Error> {
    let header =
        "# Generated by `cargo run --bin crdgen -- --out crds` from src/api. Do not edit.\n";
    KINDS
        .iter()
        .filter_map(|(kind, file)| crd_for(kind).map(|crd| (*file, crd)))
        .map(|(file, crd)| serde_yaml::to_string(&crd).map(|y| (file, format!("{header}{y}"))))
        .collect()
}

#[cfg(test)]
mod tests;
