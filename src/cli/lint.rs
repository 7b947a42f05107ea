//! `lint -f FILE`: offline validation of Rollout, AnalysisTemplate, ClusterAnalysisTemplate and
//! AnalysisRun YAML with the controller's own types and rules.
//!
//! The rules are not restated here: each document is checked against the CRD schema generated
//! from the Rust types in `api/` — types, required fields, ranges, lengths, enums, unknown
//! fields (which strict field validation rejects), Argo fields Aviary does not support, and the
//! CEL `x-kubernetes-validations` rules, evaluated with the same CEL engine the analysis uses.
//! Then the document is read into the Rust type the controller reads, and success/failure
//! conditions are compiled as the analysis does. Findings name the field and, for block-style
//! YAML, its line.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use serde_json::Value;

use super::CliError;
use crate::api::{
    API_VERSION, AnalysisRun, AnalysisTemplate, ClusterAnalysisTemplate, Rollout, crd_for,
};

/// The apiVersion of Argo Rollouts' kinds.
pub const ARGO_API_VERSION: &str = "argoproj.io/v1alpha1";
/// The description the schema gives Argo fields Aviary declares only to reject them.
const UNSUPPORTED_DESCRIPTION: &str = "Not supported by Aviary";

/// What kind of problem a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// The API server (or the controller) would reject it.
    Error,
    /// An Argo field Aviary does not implement.
    Unsupported,
    /// A field no Aviary type has (strict field validation rejects it).
    Unknown,
}

/// One problem in a document.
#[derive(Clone, Debug, PartialEq)]
pub struct Finding {
    pub severity: Severity,
    /// JSON path, e.g. `spec.strategy.canary.steps[1].pause.duration`.
    pub path: String,
    pub message: String,
}

/// A segment of a path.
#[derive(Clone, Debug, PartialEq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// A path as `a.b[0].c`.
pub fn path_string(path: &[Seg]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// Parses a path string back into segments (for line lookup).
pub fn parse_path(path: &str) -> Vec<Seg> {
    let mut out = vec![];
    for part in path.split('.') {
        let mut rest = part;
        if let Some(i) = rest.find('[') {
            if i > 0 {
                out.push(Seg::Key(rest[..i].to_string()));
            }
            rest = &rest[i..];
            while let Some(stripped) = rest.strip_prefix('[') {
                let end = stripped.find(']').unwrap_or(stripped.len());
                if let Ok(n) = stripped[..end].parse() {
                    out.push(Seg::Index(n));
                }
                rest = stripped.get(end + 1..).unwrap_or("");
            }
        } else if !rest.is_empty() {
            out.push(Seg::Key(rest.to_string()));
        }
    }
    out
}

fn root_schema(crd: &CustomResourceDefinition) -> Option<&JSONSchemaProps> {
    crd.spec
        .versions
        .first()?
        .schema
        .as_ref()?
        .open_api_v3_schema
        .as_ref()
}

// ---------------------------------------------------------------------------------------------
// The schema walk

/// Converts JSON into a CEL value (integers stay integers, as Kubernetes' CEL has them).
fn to_cel(v: &Value) -> cel::Value {
    match v {
        Value::Null => cel::Value::Null,
        Value::Bool(b) => cel::Value::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => cel::Value::Int(i),
            None => cel::Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => cel::Value::String(Arc::new(s.clone())),
        Value::Array(a) => cel::Value::List(Arc::new(a.iter().map(to_cel).collect())),
        Value::Object(m) => {
            let map: HashMap<String, cel::Value> =
                m.iter().map(|(k, v)| (k.clone(), to_cel(v))).collect();
            cel::Value::from(map)
        }
    }
}

/// Evaluates one CEL rule with `self` bound; `None` when it can't be evaluated here (a
/// transition rule, or a function this engine lacks) — such a rule is left to the API server.
fn eval_rule(rule: &str, value: &Value) -> Option<bool> {
    if rule.contains("oldSelf") {
        return None;
    }
    let program = cel::Program::compile(rule).ok()?;
    let mut ctx = cel::Context::default();
    ctx.add_variable_from_value("self", to_cel(value));
    match program.execute(&ctx) {
        Ok(cel::Value::Bool(b)) => Some(b),
        _ => None,
    }
}

/// The field a rule `!has(self.FIELD)` rejects.
fn rejected_field(rule: &str) -> Option<&str> {
    rule.strip_prefix("!has(self.")?.strip_suffix(')')
}

fn is_unsupported(s: &JSONSchemaProps) -> bool {
    s.description
        .as_deref()
        .is_some_and(|d| d.starts_with(UNSUPPORTED_DESCRIPTION))
}

fn type_ok(v: &Value, s: &JSONSchemaProps) -> bool {
    if s.x_kubernetes_int_or_string == Some(true) {
        return v.is_i64() || v.is_u64() || v.is_string();
    }
    match s.type_.as_deref() {
        Some("object") => v.is_object(),
        Some("array") => v.is_array(),
        Some("string") => v.is_string(),
        Some("integer") => v.is_i64() || v.is_u64(),
        Some("number") => v.is_number(),
        Some("boolean") => v.is_boolean(),
        _ => true,
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Checks `v` against the schema `s`, appending findings.
fn walk(v: &Value, s: &JSONSchemaProps, path: &mut Vec<Seg>, out: &mut Vec<Finding>) {
    let here = |out: &mut Vec<Finding>, path: &[Seg], severity, message: String| {
        out.push(Finding {
            severity,
            path: path_string(path),
            message,
        })
    };
    if v.is_null() {
        return;
    }
    if !type_ok(v, s) {
        let want = if s.x_kubernetes_int_or_string == Some(true) {
            "integer or string"
        } else {
            s.type_.as_deref().unwrap_or("?")
        };
        here(
            out,
            path,
            Severity::Error,
            format!("must be {want}, not {}", type_name(v)),
        );
        return;
    }
    match v {
        Value::Object(map) => {
            for req in s.required.iter().flatten() {
                if !map.contains_key(req) {
                    path.push(Seg::Key(req.clone()));
                    here(
                        out,
                        path,
                        Severity::Error,
                        "required field is missing".into(),
                    );
                    path.pop();
                }
            }
            let rules = s.x_kubernetes_validations.as_deref().unwrap_or_default();
            for (k, child) in map {
                path.push(Seg::Key(k.clone()));
                match s.properties.as_ref().and_then(|p| p.get(k)) {
                    Some(cs) if is_unsupported(cs) => {
                        let message = rules
                            .iter()
                            .find(|r| rejected_field(&r.rule) == Some(k.as_str()))
                            .and_then(|r| r.message.clone())
                            .unwrap_or_else(|| format!("{k} is not supported by Aviary"));
                        here(out, path, Severity::Unsupported, message);
                    }
                    Some(cs) => walk(child, cs, path, out),
                    None => match &s.additional_properties {
                        Some(JSONSchemaPropsOrBool::Schema(cs)) => walk(child, cs, path, out),
                        Some(JSONSchemaPropsOrBool::Bool(true)) => {}
                        _ if s.x_kubernetes_preserve_unknown_fields == Some(true) => {}
                        _ if s.properties.is_none() && s.additional_properties.is_none() => {}
                        _ => here(
                            out,
                            path,
                            Severity::Unknown,
                            format!("unknown field \"{k}\" (not part of Aviary's API)"),
                        ),
                    },
                }
                path.pop();
            }
            if let Some(max) = s.max_properties
                && map.len() as i64 > max
            {
                here(out, path, Severity::Error, format!("at most {max} entries"));
            }
        }
        Value::Array(items) => {
            if let Some(max) = s.max_items
                && items.len() as i64 > max
            {
                here(
                    out,
                    path,
                    Severity::Error,
                    format!("at most {max} items, got {}", items.len()),
                );
            }
            if let Some(min) = s.min_items
                && (items.len() as i64) < min
            {
                here(
                    out,
                    path,
                    Severity::Error,
                    format!("at least {min} item(s) required"),
                );
            }
            if let Some(JSONSchemaPropsOrArray::Schema(is)) = &s.items {
                for (i, item) in items.iter().enumerate() {
                    path.push(Seg::Index(i));
                    walk(item, is, path, out);
                    path.pop();
                }
                // Lists keyed by name must not repeat a key.
                if s.x_kubernetes_list_type.as_deref() == Some("map") {
                    let keys = s.x_kubernetes_list_map_keys.clone().unwrap_or_default();
                    let mut seen = vec![];
                    for (i, item) in items.iter().enumerate() {
                        let key: Vec<&Value> = keys.iter().filter_map(|k| item.get(k)).collect();
                        if seen.contains(&key) {
                            path.push(Seg::Index(i));
                            here(
                                out,
                                path,
                                Severity::Error,
                                format!("duplicate entry ({})", keys.join(", ")),
                            );
                            path.pop();
                        }
                        seen.push(key);
                    }
                }
            }
        }
        Value::String(text) => {
            let n = text.chars().count() as i64;
            if let Some(max) = s.max_length
                && n > max
            {
                here(
                    out,
                    path,
                    Severity::Error,
                    format!("at most {max} characters"),
                );
            }
            if let Some(min) = s.min_length
                && n < min
            {
                here(
                    out,
                    path,
                    Severity::Error,
                    format!("at least {min} character(s)"),
                );
            }
        }
        Value::Number(num) => {
            let x = num.as_f64().unwrap_or(0.0);
            if let Some(min) = s.minimum
                && x < min
            {
                here(out, path, Severity::Error, format!("must be >= {min}"));
            }
            if let Some(max) = s.maximum
                && x > max
            {
                here(out, path, Severity::Error, format!("must be <= {max}"));
            }
        }
        _ => {}
    }
    if let Some(allowed) = &s.enum_
        && !allowed.iter().any(|a| &a.0 == v)
    {
        let list: Vec<String> = allowed.iter().map(|a| a.0.to_string()).collect();
        here(
            out,
            path,
            Severity::Error,
            format!("must be one of {}", list.join(", ")),
        );
    }
    for rule in s.x_kubernetes_validations.iter().flatten() {
        let unsupported_rule = rejected_field(&rule.rule).is_some_and(|f| {
            s.properties
                .as_ref()
                .and_then(|p| p.get(f))
                .is_some_and(is_unsupported)
        });
        if unsupported_rule {
            continue; // reported by the field walk, with the same message
        }
        if eval_rule(&rule.rule, v) == Some(false) {
            let mut p = path.clone();
            if let Some(fp) = &rule.field_path {
                p.extend(parse_path(fp.trim_start_matches('.')));
            }
            let message = rule
                .message
                .clone()
                .unwrap_or_else(|| format!("failed rule: {}", rule.rule));
            here(out, &p, Severity::Error, message);
        }
    }
}

/// Checks one Aviary document (apiVersion `aviary.dev/v1alpha1`) against its CRD schema, its
/// Rust type and the analysis' condition compiler.
pub fn check_document(doc: &Value) -> Vec<Finding> {
    let kind = doc["kind"].as_str().unwrap_or_default();
    let mut out = vec![];
    let Some(crd) = crd_for(kind) else {
        return out;
    };
    if doc["metadata"]["name"].as_str().is_none_or(str::is_empty) {
        out.push(Finding {
            severity: Severity::Error,
            path: "metadata.name".into(),
            message: "required field is missing".into(),
        });
    }
    if let Some(schema) = root_schema(&crd) {
        let mut body = doc.clone();
        if let Some(m) = body.as_object_mut() {
            // The API server validates these itself; the CRD schema leaves them open.
            for k in ["apiVersion", "kind", "metadata"] {
                m.remove(k);
            }
        }
        walk(&body, schema, &mut vec![], &mut out);
    }
    // The Rust types the controller reads.
    let typed = match kind {
        "Rollout" => serde_json::from_value::<Rollout>(doc.clone()).map(|_| ()),
        "AnalysisTemplate" => serde_json::from_value::<AnalysisTemplate>(doc.clone()).map(|_| ()),
        "ClusterAnalysisTemplate" => {
            serde_json::from_value::<ClusterAnalysisTemplate>(doc.clone()).map(|_| ())
        }
        _ => serde_json::from_value::<AnalysisRun>(doc.clone()).map(|_| ()),
    };
    if let Err(e) = typed
        && out.iter().all(|f| f.severity != Severity::Error)
    {
        out.push(Finding {
            severity: Severity::Error,
            path: String::new(),
            message: format!("cannot be read as a {kind}: {e}"),
        });
    }
    // Conditions compile as the analysis compiles them.
    for (i, m) in doc["spec"]["metrics"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let prometheus = m["provider"]["prometheus"].is_object();
        for field in ["successCondition", "failureCondition"] {
            let Some(expr) = m[field].as_str() else {
                continue;
            };
            match crate::analysis::condition::Condition::compile(expr) {
                Err(e) => out.push(Finding {
                    severity: Severity::Error,
                    path: format!("spec.metrics[{i}].{field}"),
                    message: e.to_string(),
                }),
                Ok(c) if prometheus && !c.non_numeric_comparisons().is_empty() => {
                    out.push(Finding {
                        severity: Severity::Error,
                        path: format!("spec.metrics[{i}].{field}"),
                        message: format!(
                            "compares result with {}, but a Prometheus result holds only numbers, so the comparison never means what it says; compare with a number (result[0] == 1)",
                            c.non_numeric_comparisons().join(" and ")
                        ),
                    })
                }
                Ok(_) => {}
            }
        }
        // A web metric's jsonPath parses as the provider parses it (unless args fill it in).
        if let Some(path) = m["provider"]["web"]["jsonPath"].as_str()
            && !path.contains("{{")
            && !path.trim().is_empty()
            && let Err(e) = crate::analysis::json_path::JsonPath::parse(path)
        {
            out.push(Finding {
                severity: Severity::Error,
                path: format!("spec.metrics[{i}].provider.web.jsonPath"),
                message: e,
            });
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Documents and lines

/// One YAML document of a file: its text, the line it starts on (1-based) and its value.
#[derive(Clone, Debug)]
pub struct Document {
    pub text: String,
    pub first_line: usize,
    pub value: Result<Value, String>,
}

/// Splits a multi-document YAML file, keeping each document's text and first line.
pub fn documents(text: &str) -> Vec<Document> {
    let mut docs = vec![];
    let mut current = String::new();
    let mut start = 1;
    let push = |current: &mut String, start: usize, docs: &mut Vec<Document>| {
        let has_content = current
            .lines()
            .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'));
        if has_content {
            let value = serde_yaml::from_str::<Value>(current).map_err(|e| {
                let line = e.location().map(|l| l.line() + start - 1);
                match line {
                    Some(l) => format!("line {l}: invalid YAML: {e}"),
                    None => format!("invalid YAML: {e}"),
                }
            });
            docs.push(Document {
                text: std::mem::take(current),
                first_line: start,
                value,
            });
        }
        current.clear();
    };
    for (i, line) in text.lines().enumerate() {
        if line.starts_with("---") {
            push(&mut current, start, &mut docs);
            start = i + 2;
            continue;
        }
        current.push_str(line);
        current.push('\n');
    }
    push(&mut current, start, &mut docs);
    docs
}

fn key_of(line: &str) -> Option<(usize, &str)> {
    let first = line.len() - line.trim_start().len();
    let mut rest = &line[first..];
    let mut col = first;
    while let Some(r) = rest.strip_prefix("- ") {
        let trimmed = r.trim_start();
        col += 2 + (r.len() - trimmed.len());
        rest = trimmed;
    }
    let (key, _) = rest.split_once(':')?;
    let key = key.trim().trim_matches('"').trim_matches('\'');
    (!key.is_empty() && !key.contains(' ') && !key.starts_with('#')).then_some((col, key))
}

fn first_col(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

fn is_content(line: &str) -> bool {
    let t = line.trim();
    !t.is_empty() && !t.starts_with('#')
}

/// The line (0-based, within `text`) of the field at `path`, for block-style YAML; the closest
/// enclosing field found when the rest is written in flow style.
pub fn locate(text: &str, path: &[Seg]) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    // `block`: lines after `from` whose indentation is > `parent` belong to the current node.
    let mut from: Option<usize> = None;
    let mut parent: i64 = -1;
    let mut found: Option<usize> = None;
    let mut item_col: Option<usize> = None; // the key column inside a list item just entered
    for seg in path {
        let start = from.map_or(0, |f| if item_col.is_some() { f } else { f + 1 });
        let block_end = (start..lines.len())
            .find(|&i| {
                is_content(lines[i])
                    && Some(i) != from
                    && (first_col(lines[i]) as i64) <= parent
                    && !(lines[i].trim_start().starts_with("- ")
                        && first_col(lines[i]) as i64 == parent)
            })
            .unwrap_or(lines.len());
        match seg {
            Seg::Key(k) => {
                let child_col = item_col.or_else(|| {
                    (start..block_end)
                        .find(|&i| is_content(lines[i]))
                        .and_then(|i| key_of(lines[i]).map(|(c, _)| c))
                });
                let hit = (start..block_end).find(|&i| {
                    key_of(lines[i]).is_some_and(|(c, key)| key == k && Some(c) == child_col)
                });
                match hit {
                    Some(i) => {
                        found = Some(i);
                        from = Some(i);
                        parent = key_of(lines[i]).map_or(parent, |(c, _)| c as i64);
                        item_col = None;
                    }
                    None => return found,
                }
            }
            Seg::Index(n) => {
                let dash_col = (start..block_end)
                    .find(|&i| lines[i].trim_start().starts_with("- "))
                    .map(|i| first_col(lines[i]));
                let Some(dc) = dash_col else { return found };
                let hit = (start..block_end)
                    .filter(|&i| {
                        lines[i].trim_start().starts_with("- ") && first_col(lines[i]) == dc
                    })
                    .nth(*n);
                match hit {
                    Some(i) => {
                        found = Some(i);
                        from = Some(i);
                        parent = dc as i64;
                        item_col = key_of(lines[i]).map(|(c, _)| c);
                    }
                    None => return found,
                }
            }
        }
    }
    found
}

// ---------------------------------------------------------------------------------------------
// The command

/// A finding as printed: `FILE:LINE: PATH: message`.
pub fn format_finding(file: &str, doc: &Document, f: &Finding) -> String {
    let line = locate(&doc.text, &parse_path(&f.path)).map(|l| l + doc.first_line);
    let loc = match line {
        Some(l) => format!("{file}:{l}"),
        None => format!("{file}:{}", doc.first_line),
    };
    let what = match f.severity {
        Severity::Error => "",
        Severity::Unsupported => "unsupported: ",
        Severity::Unknown => "unknown field: ",
    };
    let message = super::errors::one_line(&f.message);
    if f.path.is_empty() {
        format!("{loc}: {what}{message}")
    } else {
        format!("{loc}: {}: {what}{message}", f.path)
    }
}

/// Reads a file, or stdin for `-`.
pub fn read_input(file: &Path) -> Result<String, CliError> {
    if file == Path::new("-") {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .map_err(|e| CliError::Usage(format!("cannot read stdin: {e}")))?;
        return Ok(s);
    }
    std::fs::read_to_string(file)
        .map_err(|e| CliError::NotFound(format!("cannot read {}: {e}", file.display())))
}

/// Lints a whole file's text; returns the report lines and whether it is clean.
pub fn lint_text(name: &str, text: &str) -> (Vec<String>, bool) {
    let mut lines = vec![];
    let mut clean = true;
    let mut checked = vec![];
    for doc in documents(text) {
        let value = match &doc.value {
            Ok(v) => v,
            Err(e) => {
                clean = false;
                lines.push(format!("{name}:{}: {e}", doc.first_line));
                continue;
            }
        };
        let api_version = value["apiVersion"].as_str().unwrap_or_default();
        let kind = value["kind"].as_str().unwrap_or_default();
        let obj_name = value["metadata"]["name"].as_str().unwrap_or("?");
        if api_version == ARGO_API_VERSION && crd_for(kind).is_some() {
            clean = false;
            let line = locate(&doc.text, &[Seg::Key("apiVersion".into())])
                .map_or(doc.first_line, |l| l + doc.first_line);
            lines.push(format!(
                "{name}:{line}: apiVersion: {ARGO_API_VERSION} is Argo Rollouts'; Aviary's is {API_VERSION} (kubectl aviary convert -f {name} converts the file)"
            ));
            continue;
        }
        if api_version != API_VERSION || crd_for(kind).is_none() {
            continue;
        }
        checked.push(format!("{kind} {obj_name}"));
        for f in check_document(value) {
            clean = false;
            lines.push(format_finding(name, &doc, &f));
        }
    }
    if clean {
        if checked.is_empty() {
            lines.push(format!(
                "{name}: no Aviary objects found (nothing to check)"
            ));
        } else {
            lines.push(format!("{name}: ok ({})", checked.join(", ")));
        }
    }
    (lines, clean)
}

/// `lint -f FILE`: exit 0 when clean, 1 with one line per finding.
pub fn run(file: &Path) -> Result<i32, CliError> {
    let text = read_input(file)?;
    let name = file.display().to_string();
    let (lines, clean) = lint_text(&name, &text);
    if clean {
        super::print(&format!("{}\n", lines.join("\n")))?;
        Ok(super::errors::exit::OK)
    } else {
        super::print(&format!("{}\n", lines.join("\n")))?;
        eprintln!("error: {} problem(s) in {name}", lines.len());
        Ok(super::errors::exit::NO)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"apiVersion: aviary.dev/v1alpha1
kind: Rollout
metadata:
  name: web
spec:
  replicas: 3
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
        - name: web
          image: web:1
  strategy:
    canary:
      steps:
        - setWeight: 10
        - pause: {duration: 2m}
---
apiVersion: aviary.dev/v1alpha1
kind: AnalysisTemplate
metadata:
  name: success-rate
spec:
  metrics:
    - name: success-rate
      interval: 1m
      successCondition: result[0] >= 0.95
      provider:
        prometheus:
          query: up
"#;

    #[test]
    fn a_valid_file_is_ok() {
        let (lines, clean) = lint_text("f.yaml", GOOD);
        assert!(clean, "{lines:#?}");
        assert_eq!(
            lines,
            vec!["f.yaml: ok (Rollout web, AnalysisTemplate success-rate)"]
        );
    }

    /// Each case: a replacement in GOOD and the finding line expected.
    #[test]
    fn findings_name_the_field_and_line() {
        let cases = [
            (
                "        - setWeight: 10",
                "        - setWeight: 150",
                "f.yaml:20: spec.strategy.canary.steps: steps[].setWeight and setCanaryScale.weight are at most 100",
            ),
            (
                "        - setWeight: 10",
                "        - setWeigth: 10",
                "f.yaml:21: spec.strategy.canary.steps[0].setWeigth: unknown field: unknown field \"setWeigth\" (not part of Aviary's API)",
            ),
            (
                "        - setWeight: 10",
                "        - setWeight: 10\n          experiment: {}",
                "f.yaml:22: spec.strategy.canary.steps[0].experiment: unsupported: steps[].experiment is not supported by Aviary: use an analysis step",
            ),
            (
                "  replicas: 3",
                "  replicas: three",
                "f.yaml:6: spec.replicas: must be integer, not string",
            ),
            (
                "        app: web\n    spec:",
                "        app: api\n    spec:",
                "f.yaml:7: spec.selector: selector.matchLabels must match template.metadata.labels",
            ),
            (
                "      successCondition: result[0] >= 0.95",
                "      successCondition: result[0] >=",
                "f.yaml:32: spec.metrics[0].successCondition: invalid condition",
            ),
            (
                "      successCondition: result[0] >= 0.95",
                "      successCondition: result[0] == 'ok'",
                "f.yaml:32: spec.metrics[0].successCondition: compares result with a string, but a Prometheus result holds only numbers",
            ),
            (
                "        prometheus:\n          query: up",
                "        web:\n          url: http://x/\n          jsonPath: \"{$.a[}\"",
                "f.yaml:36: spec.metrics[0].provider.web.jsonPath: jsonPath '{$.a[}'",
            ),
            (
                "      interval: 1m",
                "      interval: 1m\n      count: 3\n      failureLimit: 5",
                "f.yaml:32: spec.metrics[0].count: count must be >= failureLimit + consecutiveSuccessLimit",
            ),
            (
                "          query: up",
                "          query: up\n          authentication: {sigv4: {region: x}}",
                "f.yaml:36: spec.metrics[0].provider.prometheus.authentication.sigv4: unsupported: authentication.sigv4 is not supported by Aviary",
            ),
            (
                "  selector:\n    matchLabels:\n      app: web\n",
                "",
                "f.yaml:5: spec.selector: selector is required (it may be left out only with spec.workloadRef",
            ),
        ];
        for (from, to, want) in cases {
            let text = GOOD.replacen(from, to, 1);
            let (lines, clean) = lint_text("f.yaml", &text);
            assert!(!clean, "{to}: {lines:#?}");
            assert!(
                lines.iter().any(|l| l.starts_with(want)),
                "{to:?}: want a line starting {want:?}, got {lines:#?}"
            );
        }
    }

    #[test]
    fn argo_api_version_points_at_convert() {
        let text = GOOD.replace("aviary.dev/v1alpha1", "argoproj.io/v1alpha1");
        let (lines, clean) = lint_text("f.yaml", &text);
        assert!(!clean);
        assert!(
            lines[0].starts_with("f.yaml:1: apiVersion: argoproj.io/v1alpha1 is Argo Rollouts'"),
            "{lines:?}"
        );
    }

    #[test]
    fn locate_finds_block_style_paths() {
        let text = "a:\n  b:\n    - x: 1\n      y: 2\n    - x: 3\n  c: {d: 1}\n";
        let cases = [
            ("a.b[0].y", Some(3)),
            ("a.b[1].x", Some(4)),
            ("a.c.d", Some(5)),
            ("a.b[5]", Some(1)),
        ];
        for (p, want) in cases {
            assert_eq!(locate(text, &parse_path(p)), want, "{p}");
        }
    }

    #[test]
    fn invalid_yaml_says_where() {
        let (lines, clean) = lint_text("f.yaml", "apiVersion: aviary.dev/v1alpha1\nkind: [\n");
        assert!(!clean);
        assert!(lines[0].contains("invalid YAML"), "{lines:?}");
    }
}
