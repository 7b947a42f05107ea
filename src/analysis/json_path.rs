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
        let rest = inner.strip_prefix('$').unwrap_or(inner);
        if !(rest.is_empty() || rest.starts_with(['.', '['])) {
            return Err(format!(
                "jsonPath '{path}': must start with '$', '.' or '[' (e.g. {{$.data.value}})"
            ));
        }
        let rfc = to_rfc9535(rest).map_err(|e| format!("jsonPath '{path}': {e}"))?;
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

/// Kubernetes' dotted names are any run of characters up to `. [ ] , { } $ @`, `(`, `)` or
/// a space, with `\` escaping one (`.error-rate`, `.http.5xx`, `.labels.app\.kubernetes\.io/name`);
/// RFC 9535's shorthand allows far fewer, so each becomes a bracketed name (`['error-rate']`).
/// Brackets (indexes, slices, wildcards, filters) are the same in both and are kept.
fn to_rfc9535(path: &str) -> Result<String, String> {
    let chars: Vec<char> = path.chars().collect();
    let mut out = String::from("$");
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '.' => {
                i += 1;
                if chars.get(i) == Some(&'.') {
                    out.push_str("..");
                    i += 1;
                    if chars.get(i) == Some(&'[') {
                        continue;
                    }
                } else if matches!(chars.get(i), None | Some('[')) {
                    // `{.}` and `.[0]`: the current node.
                    continue;
                }
                if chars.get(i) == Some(&'*') {
                    out.push_str("[*]");
                    i += 1;
                    continue;
                }
                let mut name = String::new();
                while let Some(&c) = chars.get(i) {
                    match c {
                        '\\' => {
                            let escaped = chars
                                .get(i + 1)
                                .ok_or("a '\\' at the end escapes nothing")?;
                            name.push(*escaped);
                            i += 2;
                        }
                        '.' | '[' | ']' | ',' | '{' | '}' | '$' | '@' | '(' | ')' => break,
                        c if c.is_whitespace() => break,
                        c => {
                            name.push(c);
                            i += 1;
                        }
                    }
                }
                if name.is_empty() {
                    return Err(format!("no field name at character {}", i + 1));
                }
                out.push_str("['");
                for c in name.chars() {
                    if matches!(c, '\'' | '\\') {
                        out.push('\\');
                    }
                    out.push(c);
                }
                out.push_str("']");
            }
            '[' => {
                let end = bracket_end(&chars, i)
                    .ok_or_else(|| format!("the '[' at character {} is not closed", i + 1))?;
                out.extend(&chars[i..end]);
                i = end;
            }
            c => return Err(format!("unexpected '{c}' at character {}", i + 1)),
        }
    }
    Ok(out)
}

/// The index just past the `]` closing the `[` at `start`, skipping quoted strings and nested
/// brackets (a filter may hold both).
fn bracket_end(chars: &[char], start: usize) -> Option<usize> {
    let mut depth = 0;
    let mut quote: Option<char> = None;
    let mut i = start;
    while i < chars.len() {
        let c = chars[i];
        match quote {
            Some(_) if c == '\\' => i += 1,
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None => match c {
                '\'' | '"' => quote = Some(c),
                '[' => depth += 1,
                ']' => {
                    depth -= 1;
                    if depth == 0 {
                        return Some(i + 1);
                    }
                }
                _ => {}
            },
        }
        i += 1;
    }
    None
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
            "a-b": 3, "nothing": null, "http": {"5xx": 2},
            "labels": {"app.kubernetes.io/name": "x"}, "quote'd": 4});
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
            // Kubernetes' names that RFC 9535's shorthand refuses (found by review).
            ("{$.a-b}", json!(3)),
            ("{.a-b}", json!(3)),
            ("{$.http.5xx}", json!(2)),
            (r"{.labels.app\.kubernetes\.io/name}", json!("x")),
            ("{.quote'd}", json!(4)),
            (r#"{.data.items[?(@.name=="api")].v}"#, json!("2")),
            ("{.data.items[?(@.v>0)].name}", json!("web")),
            ("{$..name}", json!("web")),
            ("{..items[0].name}", json!("web")),
            ("{.http.*}", json!(2)),
            ("{.}", doc.clone()),
            ("{$['data']['ok']}", json!(0.97)),
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
