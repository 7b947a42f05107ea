//! A pod template as Go's `encoding/json` writes it — byte for byte what Argo Rollouts hashes
//! (`json.Marshal` of a `corev1.PodTemplateSpec`), so that Aviary names a template's ReplicaSet
//! with the same `rollouts-pod-template-hash` as Argo does, and takes over an Argo Rollout's
//! pods without restarting them.
//!
//! What differs from serde's JSON, and is reproduced here from [`layout`] (generated from
//! k8s.io/api by `hack/argo-tools`): fields in Go's struct order, not alphabetical; a field that
//! is absent is Go's zero value, written unless `omitempty` (or `omitzero`) drops it — so
//! `"resources":{}` and `"name":""` appear where serde writes nothing; quantities in their
//! canonical form ([`quantity`]); `<`, `>` and `&` escaped in strings. Fields Go's types do not
//! have are dropped, as Go's decoder drops them. tests/argo_hash.rs compares the bytes with Go's.

#[rustfmt::skip]
mod layout;
pub mod quantity;

use std::fmt::Write as _;

use k8s_openapi::api::core::v1::PodTemplateSpec;
use serde_json::Value;

/// A Go type, as far as its JSON is concerned.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Ty {
    Str,
    Bool,
    Int,
    /// `resource.Quantity`: written in canonical form.
    Quantity,
    /// `intstr.IntOrString`: a number or a string.
    IntOrString,
    /// `metav1.Time`: `null` when zero.
    Time,
    /// `metav1.FieldsV1`: raw JSON.
    Raw,
    Ptr(&'static Ty),
    Slice(&'static Ty),
    Map(&'static Ty),
    /// A struct, by the name [`layout::fields`] knows it by.
    Struct(&'static str),
}

/// One JSON field of a Go struct.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Field {
    json: &'static str,
    omit_empty: bool,
    omit_zero: bool,
    ty: Ty,
}

impl Field {
    const fn new(json: &'static str, omit_empty: bool, omit_zero: bool, ty: Ty) -> Self {
        Self {
            json,
            omit_empty,
            omit_zero,
            ty,
        }
    }
}

/// Why a template has no Go JSON: Go's decoder would have refused it too (so Argo could not
/// have hashed it either).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GoJsonError {
    #[error("{path}: {problem}")]
    Invalid { path: String, problem: String },
}

fn invalid(path: &str, problem: impl Into<String>) -> GoJsonError {
    GoJsonError::Invalid {
        path: if path.is_empty() {
            ".".into()
        } else {
            path.into()
        },
        problem: problem.into(),
    }
}

/// `json.Marshal` of the template, as Go's `corev1.PodTemplateSpec` decoded from the same JSON.
pub fn pod_template_json(template: &PodTemplateSpec) -> Result<String, GoJsonError> {
    let value = serde_json::to_value(template).map_err(|e| invalid("", e.to_string()))?;
    pod_template_value_json(&value)
}

/// [`pod_template_json`] of a template given as JSON.
pub fn pod_template_value_json(value: &Value) -> Result<String, GoJsonError> {
    let mut out = String::with_capacity(1024);
    encode(Some(value), &layout::POD_TEMPLATE_SPEC, "", &mut out)?;
    Ok(out)
}

/// JSON `null` decodes to Go's zero value, as an absent field does.
fn present(v: Option<&Value>) -> Option<&Value> {
    v.filter(|v| !v.is_null())
}

/// Go's `isEmptyValue` of the value Go would decode `v` into.
fn is_empty(v: Option<&Value>, ty: &Ty) -> bool {
    let Some(v) = present(v) else {
        // Zero: empty but for structs (and the struct-typed specials).
        return !matches!(
            ty,
            Ty::Struct(_) | Ty::Quantity | Ty::IntOrString | Ty::Time | Ty::Raw
        );
    };
    match ty {
        Ty::Str => v.as_str() == Some(""),
        Ty::Bool => v.as_bool() == Some(false),
        Ty::Int => v.as_f64() == Some(0.0),
        Ty::Slice(_) => v.as_array().is_some_and(Vec::is_empty),
        Ty::Map(_) => v.as_object().is_some_and(serde_json::Map::is_empty),
        Ty::Ptr(_) | Ty::Struct(_) | Ty::Quantity | Ty::IntOrString | Ty::Time | Ty::Raw => false,
    }
}

/// Go's `omitzero`: the zero value (by `IsZero` for `metav1.Time`). A non-nil empty slice or map
/// is not zero.
fn is_zero(v: Option<&Value>, ty: &Ty) -> bool {
    let Some(v) = present(v) else {
        return true;
    };
    match ty {
        Ty::Struct(name) => {
            let obj = v.as_object();
            layout::fields(name)
                .iter()
                .all(|f| is_zero(obj.and_then(|o| o.get(f.json)), &f.ty))
        }
        Ty::Str => v.as_str() == Some(""),
        Ty::Bool => v.as_bool() == Some(false),
        Ty::Int => v.as_f64() == Some(0.0),
        // `metav1.Time.IsZero`: Go's zero time, as RFC 3339.
        Ty::Time => v.as_str() == Some("0001-01-01T00:00:00Z"),
        _ => false,
    }
}

fn encode(v: Option<&Value>, ty: &Ty, path: &str, out: &mut String) -> Result<(), GoJsonError> {
    let v = present(v);
    match ty {
        Ty::Str => match v {
            None => out.push_str("\"\""),
            Some(Value::String(s)) => string(s, out),
            Some(_) => return Err(invalid(path, "not a string")),
        },
        Ty::Bool => match v {
            None => out.push_str("false"),
            Some(Value::Bool(b)) => out.push_str(if *b { "true" } else { "false" }),
            Some(_) => return Err(invalid(path, "not a boolean")),
        },
        Ty::Int => match v {
            None => out.push('0'),
            Some(n) => integer(n, path, out)?,
        },
        Ty::Quantity => {
            let text = match v {
                None => "0".to_string(),
                Some(Value::String(s)) => s.clone(),
                Some(Value::Number(n)) => n.to_string(),
                Some(_) => return Err(invalid(path, "not a quantity")),
            };
            let canonical = quantity::canonical(&text).map_err(|e| invalid(path, e.to_string()))?;
            string(&canonical, out);
        }
        Ty::IntOrString => match v {
            None => out.push('0'),
            Some(Value::String(s)) => string(s, out),
            Some(n @ Value::Number(_)) => integer(n, path, out)?,
            Some(_) => return Err(invalid(path, "neither a number nor a string")),
        },
        Ty::Time => match v {
            None => out.push_str("null"),
            Some(Value::String(s)) => string(s, out),
            Some(_) => return Err(invalid(path, "not a time")),
        },
        Ty::Raw => match v {
            None => out.push_str("null"),
            Some(raw) => out.push_str(&raw.to_string()),
        },
        Ty::Ptr(inner) => match v {
            None => out.push_str("null"),
            Some(_) => encode(v, inner, path, out)?,
        },
        Ty::Slice(inner) => match v {
            None => out.push_str("null"),
            Some(Value::Array(items)) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    encode(Some(item), inner, &format!("{path}[{i}]"), out)?;
                }
                out.push(']');
            }
            Some(_) => return Err(invalid(path, "not a list")),
        },
        Ty::Map(inner) => match v {
            None => out.push_str("null"),
            Some(Value::Object(entries)) => {
                // Go sorts map keys by their bytes, as a BTreeMap of Strings does.
                let sorted: std::collections::BTreeMap<&String, &Value> = entries.iter().collect();
                out.push('{');
                for (i, (k, item)) in sorted.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    string(k, out);
                    out.push(':');
                    encode(Some(item), inner, &format!("{path}.{k}"), out)?;
                }
                out.push('}');
            }
            Some(_) => return Err(invalid(path, "not a map")),
        },
        Ty::Struct(name) => {
            let obj = match v {
                None => None,
                Some(Value::Object(o)) => Some(o),
                Some(_) => return Err(invalid(path, "not an object")),
            };
            out.push('{');
            let mut first = true;
            for f in layout::fields(name) {
                let fv = obj.and_then(|o| o.get(f.json));
                if (f.omit_empty && is_empty(fv, &f.ty)) || (f.omit_zero && is_zero(fv, &f.ty)) {
                    continue;
                }
                if !first {
                    out.push(',');
                }
                first = false;
                string(f.json, out);
                out.push(':');
                encode(fv, &f.ty, &format!("{path}.{}", f.json), out)?;
            }
            out.push('}');
        }
    }
    Ok(())
}

fn integer(n: &Value, path: &str, out: &mut String) -> Result<(), GoJsonError> {
    if let Some(i) = n.as_i64() {
        let _ = write!(out, "{i}");
    } else if let Some(u) = n.as_u64() {
        let _ = write!(out, "{u}");
    } else {
        return Err(invalid(path, "not an integer"));
    }
    Ok(())
}

/// A string as Go writes it: HTML-safe (`<`, `>`, `&` escaped), control characters as `\n`-style
/// escapes where JSON has one and `\u00XX` otherwise, U+2028 and U+2029 escaped.
fn string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests;
