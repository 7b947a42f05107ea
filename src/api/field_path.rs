//! `valueFrom.fieldRef.fieldPath` as Argo Rollouts resolves it for analysis args.
//!
//! - `metadata.name`, `.namespace`, `.uid`, `.labels`, `.annotations`, and a key of the last two
//!   (`metadata.labels['env']`; a missing key is the empty string), as Kubernetes' downward API
//!   (Argo uses its `fieldpath` package). The whole map is `key="value"` lines in key order.
//! - Any path under `spec` or `status` (Rollout args only): the object as JSON, walked by the
//!   path's sections (split on runs of `.`, `[` and `]`; a number indexes an array). The path
//!   must end at a string, number or boolean; a missing field is an error.
//!
//! Admission checks the root only ([`rule`]). Where Argo differs: it retries the reconcile on a
//! path that does not resolve (and may go on with "" when a later arg resolves); Aviary ends the
//! analysis in Error naming the path, never a silently kept default. Numbers print as written
//! (Argo prints 1000000 as `1e+06`); the whole-map forms quote values as Rust does, which
//! differs from Go's only for control characters.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::Value;

/// The admission rule on a Rollout arg's `valueFrom` (`self`) with a `fieldRef`: a path under
/// `metadata`, `spec` or `status`. Only the roots: a regular expression of the whole form costs
/// more than the API server's CEL budget allows for 100 steps of 100 args; the rest is checked
/// when the run is built ([`resolve`]: an Error naming the path). (A template arg's `fieldRef`
/// is not checked, as Argo does not: the Rollout's args override it, and one left unresolved
/// ends its run in Error naming the arg.)
pub fn rule() -> kube::core::Rule {
    let roots = ["metadata.", "spec.", "spec[", "status.", "status["]
        .iter()
        .map(|r| format!("self.fieldRef.fieldPath.startsWith('{r}')"))
        .collect::<Vec<_>>()
        .join(" || ");
    kube::core::Rule::new(format!("!has(self.fieldRef) || {roots}"))
        .message(kube::core::Message::Message(
            "fieldRef.fieldPath must be metadata.name, metadata.namespace, metadata.uid, metadata.labels['KEY'] or metadata.annotations['KEY'], or a spec.* or status.* path such as spec.replicas".to_string(),
        ))
        .field_path(".fieldRef.fieldPath")
        .reason(kube::core::Reason::FieldValueInvalid)
}

/// The value at `path` of the object with metadata `meta` and JSON form `object` (`None`: a
/// metadata path only).
pub fn resolve(meta: &ObjectMeta, object: Option<&Value>, path: &str) -> Result<String, String> {
    let path = path.trim();
    if path == "metadata" || path.starts_with("metadata.") {
        return metadata(meta, path);
    }
    let under = |root: &str| {
        path.strip_prefix(root)
            .is_some_and(|rest| rest.starts_with(['.', '[']))
    };
    match object {
        Some(object) if under("spec") || under("status") => json(object, path),
        _ => Err(format!(
            "fieldPath '{path}' is not supported: use metadata.name, metadata.namespace, metadata.uid, metadata.labels['KEY'] or metadata.annotations['KEY']{}",
            if object.is_some() {
                ", or a spec.* or status.* path"
            } else {
                ""
            }
        )),
    }
}

fn metadata(meta: &ObjectMeta, path: &str) -> Result<String, String> {
    let empty = BTreeMap::new();
    let map_of = |name: &str| match name {
        "labels" => Some(meta.labels.as_ref().unwrap_or(&empty)),
        "annotations" => Some(meta.annotations.as_ref().unwrap_or(&empty)),
        _ => None,
    };
    let field = path.strip_prefix("metadata.").unwrap_or_default();
    if let Some((name, rest)) = field.split_once('[') {
        let key = rest
            .strip_suffix(']')
            .and_then(|k| {
                k.strip_prefix('\'')
                    .and_then(|k| k.strip_suffix('\''))
                    .or_else(|| k.strip_prefix('"').and_then(|k| k.strip_suffix('"')))
            })
            .filter(|k| !k.is_empty());
        return match (map_of(name), key) {
            (Some(map), Some(key)) => Ok(map.get(key).cloned().unwrap_or_default()),
            _ => Err(format!(
                "fieldPath '{path}' is not supported: a key is written metadata.labels['KEY'] or metadata.annotations['KEY']"
            )),
        };
    }
    match field {
        "name" => Ok(meta.name.clone().unwrap_or_default()),
        "namespace" => Ok(meta.namespace.clone().unwrap_or_default()),
        "uid" => Ok(meta.uid.clone().unwrap_or_default()),
        "labels" | "annotations" => Ok(map_of(field)
            .into_iter()
            .flatten()
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect::<Vec<_>>()
            .join("\n")),
        _ => Err(format!(
            "fieldPath '{path}' is not supported: of metadata, use name, namespace, uid, labels or annotations"
        )),
    }
}

fn json(object: &Value, path: &str) -> Result<String, String> {
    let mut at = object;
    for section in path.split(['.', '[', ']']).filter(|s| !s.is_empty()) {
        at = match at {
            Value::Array(items) => {
                let i: usize = section
                    .parse()
                    .map_err(|_| format!("fieldPath '{path}': '{section}' is not an index"))?;
                items
                    .get(i)
                    .ok_or_else(|| format!("fieldPath '{path}': index {i} is out of range"))?
            }
            Value::Object(fields) => fields
                .get(section)
                .ok_or_else(|| format!("fieldPath '{path}': there is no field '{section}'"))?,
            _ => return Err(format!("fieldPath '{path}': '{section}' is under a value")),
        };
    }
    match at {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Null => Err(format!("fieldPath '{path}' is not set")),
        Value::Array(_) | Value::Object(_) => Err(format!(
            "fieldPath '{path}' must end at a string, number or boolean, not a list or map"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn meta() -> ObjectMeta {
        serde_json::from_value(json!({
            "name": "web", "namespace": "shop", "uid": "u-1",
            "labels": {"env": "prod", "app": "web"},
            "annotations": {"team": "payments"}
        }))
        .expect("meta")
    }

    fn rollout() -> Value {
        json!({"spec": {"replicas": 4, "paused": false,
                        "template": {"metadata": {"labels": {"version": "v2"}},
                                     "spec": {"containers": [{"name": "web", "image": "web:2"}]}}},
               "status": {"stableRS": "abc", "canary": {"weights": null}}})
    }

    #[test]
    fn paths_resolve_as_argo_resolves_them() {
        let (m, ro) = (meta(), rollout());
        let cases: &[(&str, Result<&str, &str>)] = &[
            ("metadata.name", Ok("web")),
            ("metadata.namespace", Ok("shop")),
            ("metadata.uid", Ok("u-1")),
            ("metadata.labels['env']", Ok("prod")),
            ("metadata.labels[\"env\"]", Ok("prod")),
            ("metadata.labels['missing']", Ok("")),
            ("metadata.annotations['team']", Ok("payments")),
            ("metadata.labels", Ok("app=\"web\"\nenv=\"prod\"")),
            ("metadata.generation", Err("of metadata, use")),
            ("metadata.labels[env]", Err("a key is written")),
            ("spec.replicas", Ok("4")),
            ("spec.paused", Ok("false")),
            ("spec.template.metadata.labels.version", Ok("v2")),
            ("spec.template.spec.containers[0].image", Ok("web:2")),
            ("spec.template.spec.containers.0.name", Ok("web")),
            ("status.stableRS", Ok("abc")),
            ("spec.template.metadata.labels[version]", Ok("v2")),
            ("spec..replicas", Ok("4")),
            ("spec.template.spec.containers[0]image", Ok("web:2")),
            (
                "spec.template.spec.containers[3].image",
                Err("out of range"),
            ),
            ("spec.template.spec.containers[x]", Err("not an index")),
            ("status.nope", Err("no field 'nope'")),
            ("status.canary.weights", Err("is not set")),
            ("spec.template", Err("not a list or map")),
            ("kind", Err("is not supported")),
        ];
        for (path, want) in cases {
            let got = resolve(&m, Some(&ro), path);
            match want {
                Ok(v) => assert_eq!(got.as_deref(), Ok(*v), "{path}"),
                Err(e) => assert!(
                    got.as_ref().is_err_and(|g| g.contains(e)),
                    "{path}: {got:?}"
                ),
            }
        }
        // A template arg reads the run: metadata only.
        assert!(resolve(&m, None, "spec.replicas").is_err_and(|e| !e.contains("spec.*")));
        assert_eq!(
            resolve(&m, None, "metadata.labels['app']").as_deref(),
            Ok("web")
        );
    }
}
