//! A web metric's `jsonPath`, written in Kubernetes' template form as Argo Rollouts reads it
//! (`{$.data.ok}`, `{.items[0].value}`), evaluated by `serde_json_path` (RFC 9535): member and
//! index selectors, wildcards, slices, unions, recursive descent and filters
//! (`{$.items[?(@.name == "api")].rate}`).
//!
//! As Argo does, the value is the **first** node the path selects: `{$.items[*].v}` on
//! `[{"v": 1}, {"v": 2}]` is `1`. A path that selects nothing is an error naming the path.

use serde_json::Value;
use serde_json_path::JsonPath as Compiled;

/// A parsed `jsonPath`.
#[derive(Debug)]
pub struct JsonPath {
    /// As written, for messages.
    written: String,
    compiled: Compiled,
}

impl JsonPath {
    /// Parses `path`: one `{…}` template (or a bare path), starting at `$`, `.` or `[`.
    /// An unset `jsonPath` is `{$}`, the whole document.
    pub fn parse(path: &str) -> Result<JsonPath, String> {
        let trimmed = path.trim();
        let inner = match trimmed.strip_prefix('{') {
            Some(rest) => rest.strip_suffix('}').ok_or_else(|| {
                format!("jsonPath '{path}': a '{{' without its closing '}}' at the end")
            })?,
            None => trimmed,
        };
        if inner.contains(['{', '}']) && !inner.contains(['"', '\'']) {
            return Err(format!(
                "jsonPath '{path}': only one {{…}} expression is supported, with no text around it"
            ));
        }
        let inner = inner.trim();
        let rfc = if inner.starts_with('$') {
            inner.to_owned()
        } else if inner.starts_with(['.', '[']) {
            format!("${inner}")
        } else {
            return Err(format!(
                "jsonPath '{path}': must start with '$', '.' or '[' (e.g. {{$.data.value}})"
            ));
        };
        let compiled = Compiled::parse(&rfc).map_err(|e| format!("jsonPath '{path}': {e}"))?;
        Ok(JsonPath {
            written: path.to_owned(),
            compiled,
        })
    }

    /// The first value the path selects in `doc`.
    pub fn first<'a>(&self, doc: &'a Value) -> Result<&'a Value, String> {
        self.compiled.query(doc).first().ok_or_else(|| {
            format!(
                "jsonPath '{}' selected nothing in the response",
                self.written
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pick(path: &str, doc: &Value) -> Result<Value, String> {
        JsonPath::parse(path)?.first(doc).cloned()
    }

    #[test]
    fn kubernetes_template_forms_select_as_argo_does() {
        let doc = json!({"data": {"ok": 0.97, "flag": true, "items": [
            {"name": "web", "v": 1}, {"name": "api", "v": "2"}]},
            "a-b": 3, "nothing": null});
        let cases: &[(&str, Value)] = &[
            ("{$.data.ok}", json!(0.97)),
            ("$.data.ok", json!(0.97)),
            ("{.data.ok}", json!(0.97)),
            (" { $.data.flag } ", json!(true)),
            ("{$.data.items[1].v}", json!("2")),
            // The first of several, as Argo's getValue takes it.
            ("{$.data.items[*].v}", json!(1)),
            ("{$..v}", json!(1)),
            ("{$.data.items[-1].name}", json!("api")),
            ("{$.data.items[?(@.name == 'api')].v}", json!("2")),
            ("{$.data.items[?@.v == 1].name}", json!("web")),
            ("{$['a-b']}", json!(3)),
            ("{$.nothing}", json!(null)),
            ("{$}", doc.clone()),
            ("{$.data.items}", doc["data"]["items"].clone()),
        ];
        for (path, expected) in cases {
            assert_eq!(pick(path, &doc).as_ref(), Ok(expected), "{path}");
        }
    }

    #[test]
    fn a_path_that_selects_nothing_or_does_not_parse_names_itself() {
        let doc = json!({"data": {"items": []}});
        for path in ["{$.data.missing}", "{$.data.items[*]}", "{$.data.items[0]}"] {
            let err = pick(path, &doc).expect_err(path);
            assert!(
                err.contains(path) && err.contains("selected nothing"),
                "{err}"
            );
        }
        for path in [
            "{$.data.items[x]}",
            "{$.a",
            "data.ok",
            "{$.a}{$.b}",
            "x{$.a}",
            "{$.a[}",
        ] {
            let err = pick(path, &doc).expect_err(path);
            assert!(err.contains(&format!("jsonPath '{path}'")), "{err}");
        }
    }
}
