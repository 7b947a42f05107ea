//! `{{args.name}}` substitution, with PromQL-aware escaping.
//!
//! Values are fixed when the run is created ([`Args`]); every placeholder in a metric is then
//! filled from them. A placeholder whose name is not an arg fails (`failed to resolve
//! {{args.x}}`), as does an arg that never got a value (`args.x was not resolved`) — Argo's
//! messages, so users searching for them find the same answers.
//!
//! In a PromQL query ([`render_promql`]) a placeholder inside a string literal — a label
//! matcher's quotes — is *data*: its value is escaped so it cannot close the string, and a
//! value like `foo"} or vector(1) #` stays one label value. Regex metacharacters are **not**
//! escaped inside `=~` matchers: templates pass alternations (`a|b`) there on purpose, and a
//! regex can only widen the set of series of the selector it sits in, not change the query.
//! A placeholder outside quotes (`[{{args.window}}]`, a threshold, a whole selector) splices
//! PromQL on purpose and is inserted verbatim: the template author chose that.

use std::collections::{BTreeMap, BTreeSet};

use thiserror::Error;

use crate::api::{Argument, ValueFrom};

/// The longest a field of a metric may grow to with its args filled in.
pub const MAX_RENDERED_BYTES: usize = 64 << 10;

/// What a secret's value is replaced with in messages and status.
pub const REDACTED: &str = "*****";

#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum TemplateError {
    /// An arg declared without a value, and none was given by the rollout.
    #[error("args.{0} was not resolved")]
    Unresolved(String),
    /// A placeholder that names no arg (or isn't an `args.` placeholder at all).
    #[error("failed to resolve {{{{{0}}}}}")]
    UnknownPlaceholder(String),
    #[error("unterminated \"{{{{\" in template: {0}")]
    Unterminated(String),
    /// A raw (backtick) PromQL string cannot express a backtick, so the value cannot be placed.
    #[error("args.{0} contains a backtick and cannot be placed inside a `raw` PromQL string")]
    Unquotable(String),
    /// Placeholders would make one field of a metric longer than [`MAX_RENDERED_BYTES`]: args
    /// repeated many times could make a small spec allocate gigabytes in the controller.
    #[error(
        "args make a field of the metric longer than {MAX_RENDERED_BYTES} bytes: use them fewer times or shorter"
    )]
    TooLong,
    /// A Secret's value would become part of a URL's scheme, host or path, where it is logged
    /// by every proxy and server on the way, and picks where the request goes.
    #[error(
        "args.{0} comes from a Secret and cannot be placed in a URL's host or path: pass it in a header or after the '?' of the query"
    )]
    SecretInUrl(String),
    /// A Secret's value would be written into a Job (readable by whoever may read Jobs).
    #[error(
        "args.{0} comes from a Secret and cannot be written into a job metric's Job: reference the Secret from the pod instead (env[].valueFrom.secretKeyRef)"
    )]
    SecretInJob(String),
    /// Args made two keys of one object equal.
    #[error("args make the key \"{0}\" twice in one object: give the keys distinct values")]
    DuplicateKey(String),
}

/// Arg values, fixed when the run is created.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Args {
    values: BTreeMap<String, String>,
    /// Names whose values came from a Secret and must not appear in status or logs.
    secrets: BTreeSet<String>,
}

impl Args {
    /// Collects the run's args, `(name, value)`; an arg without a value is an error. Later
    /// entries with the same name win, which lets rollout values override template defaults
    /// when passed after them.
    pub fn resolve<'a, I>(args: I) -> Result<Args, TemplateError>
    where
        I: IntoIterator<Item = (&'a str, Option<&'a str>)>,
    {
        let mut values = BTreeMap::new();
        for (name, value) in args {
            let value = value.ok_or_else(|| TemplateError::Unresolved(name.to_owned()))?;
            values.insert(name.to_owned(), value.to_owned());
        }
        Ok(Args {
            values,
            secrets: BTreeSet::new(),
        })
    }

    /// Collects a run's args. `value_from` reads a `valueFrom` reference (a Secret key, a field
    /// of the object) — I/O the caller does, returning `None` when it is missing; args read
    /// from a Secret are redacted by [`Args::redact`].
    pub fn from_arguments<F>(args: &[Argument], mut value_from: F) -> Result<Args, TemplateError>
    where
        F: FnMut(&ValueFrom) -> Option<String>,
    {
        let mut resolved = Args::default();
        for arg in args {
            let value = match (&arg.value, &arg.value_from) {
                (Some(value), _) => Some(value.clone()),
                (None, Some(from)) => value_from(from),
                (None, None) => None,
            };
            let value = value.ok_or_else(|| TemplateError::Unresolved(arg.name.clone()))?;
            if arg.value.is_none()
                && arg
                    .value_from
                    .as_ref()
                    .is_some_and(|f| f.secret_key_ref.is_some())
            {
                resolved.secrets.insert(arg.name.clone());
            }
            resolved.values.insert(arg.name.clone(), value);
        }
        Ok(resolved)
    }

    /// `text` with every secret arg's value replaced by [`REDACTED`], in every form it may have
    /// taken on the way: as is, without surrounding whitespace (a URL parser strips a trailing
    /// newline), escaped in a PromQL string, and form-encoded in a query string. Longest first,
    /// so a secret containing another is masked whole.
    pub fn redact(&self, text: &str) -> String {
        let mut forms: Vec<String> = self
            .secrets
            .iter()
            .filter_map(|name| self.values.get(name))
            .flat_map(|value| {
                let mut double = String::new();
                escape_into(&mut double, value, '"');
                let mut single = String::new();
                escape_into(&mut single, value, '\'');
                let encoded: String = form_urlencoded::byte_serialize(value.as_bytes()).collect();
                [
                    value.clone(),
                    value.trim().to_owned(),
                    double,
                    single,
                    encoded,
                ]
            })
            .filter(|f| !f.is_empty())
            .collect();
        forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
        forms.dedup();
        let mut out = text.to_owned();
        for form in &forms {
            out = out.replace(form.as_str(), REDACTED);
        }
        out
    }

    /// Whether any arg came from a Secret.
    pub fn has_secrets(&self) -> bool {
        !self.secrets.is_empty()
    }

    /// Refuses a secret arg anywhere in `text` (a job metric's Job: its spec is readable by
    /// whoever may read Jobs and pods, so a Secret's value must not be written into it).
    pub fn check_no_secret(&self, text: &str) -> Result<(), TemplateError> {
        let mut rest = text;
        while let Some((_, tag, after)) = next_placeholder(rest)? {
            if let Some(name) = tag
                .strip_prefix("args.")
                .filter(|name| self.secrets.contains(*name))
            {
                return Err(TemplateError::SecretInJob(name.to_owned()));
            }
            rest = after;
        }
        Ok(())
    }

    /// Refuses a secret arg placed before the query (`?`) or fragment (`#`) of `url`, a URL
    /// template: in its scheme, host or path. Judged on the template's own text, so a value
    /// inserted earlier cannot move a secret into the query.
    pub fn check_url(&self, url: &str) -> Result<(), TemplateError> {
        let mut prefix = String::new();
        let mut rest = url;
        while let Some((before, tag, after)) = next_placeholder(rest)? {
            prefix.push_str(before);
            let secret = tag
                .strip_prefix("args.")
                .filter(|name| self.secrets.contains(*name));
            if let Some(name) = secret
                && !prefix.contains(['?', '#'])
            {
                return Err(TemplateError::SecretInUrl(name.to_owned()));
            }
            rest = after;
        }
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    fn lookup(&self, tag: &str) -> Result<&str, TemplateError> {
        tag.strip_prefix("args.")
            .and_then(|name| self.get(name))
            .ok_or_else(|| TemplateError::UnknownPlaceholder(tag.to_owned()))
    }
}

/// Fills placeholders verbatim: for conditions, counts, intervals, URLs.
pub fn render(template: &str, args: &Args) -> Result<String, TemplateError> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some((before, tag, after)) = next_placeholder(rest)? {
        let value = args.lookup(tag)?;
        if out.len() + before.len() + value.len() > MAX_RENDERED_BYTES {
            return Err(TemplateError::TooLong);
        }
        out.push_str(before);
        out.push_str(value);
        rest = after;
    }
    out.push_str(rest);
    Ok(out)
}

/// Fills placeholders in a PromQL query, escaping those inside string literals (see module doc).
pub fn render_promql(query: &str, args: &Args) -> Result<String, TemplateError> {
    let mut out = String::with_capacity(query.len());
    let mut lexer = PromqlLexer::default();
    let mut rest = query;
    while let Some((before, tag, after)) = next_placeholder(rest)? {
        out.push_str(before);
        lexer.advance(before);
        let value = args.lookup(tag)?;
        // Escaping at most doubles a value.
        if out.len() + 2 * value.len() > MAX_RENDERED_BYTES {
            return Err(TemplateError::TooLong);
        }
        match lexer.string_quote() {
            None => out.push_str(value),
            Some('`') if value.contains('`') => {
                return Err(TemplateError::Unquotable(
                    tag.trim_start_matches("args.").to_owned(),
                ));
            }
            Some('`') => out.push_str(value),
            Some(quote) => escape_into(&mut out, value, quote),
        }
        rest = after;
    }
    out.push_str(rest);
    Ok(out)
}

/// Splits at the next `{{ tag }}`: text before, the trimmed tag, text after. In `x{{{args.a}}}`
/// the outer braces belong to PromQL, so the placeholder starts at the last `{{` of a run.
fn next_placeholder(text: &str) -> Result<Option<(&str, &str, &str)>, TemplateError> {
    let Some(mut open) = text.find("{{") else {
        return Ok(None);
    };
    while text[open + 2..].starts_with('{') {
        open += 1;
    }
    let inner = &text[open + 2..];
    let close = inner
        .find("}}")
        .ok_or_else(|| TemplateError::Unterminated(text[open..].to_owned()))?;
    Ok(Some((
        &text[..open],
        inner[..close].trim(),
        &inner[close + 2..],
    )))
}

/// Escapes for a PromQL double- or single-quoted string (Go string-literal escapes).
fn escape_into(out: &mut String, value: &str, quote: char) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
}

/// Tracks whether the template text so far leaves us inside a PromQL string or comment.
#[derive(Default)]
struct PromqlLexer {
    /// The quote of the string we are in, if any.
    quote: Option<char>,
    /// The previous character was a backslash inside a non-raw string.
    escaped: bool,
    in_comment: bool,
}

impl PromqlLexer {
    fn advance(&mut self, text: &str) {
        for c in text.chars() {
            if self.in_comment {
                self.in_comment = c != '\n';
            } else if let Some(quote) = self.quote {
                if self.escaped {
                    self.escaped = false;
                } else if c == '\\' && quote != '`' {
                    self.escaped = true;
                } else if c == quote {
                    self.quote = None;
                }
            } else if matches!(c, '"' | '\'' | '`') {
                self.quote = Some(c);
            } else if c == '#' {
                self.in_comment = true;
            }
        }
    }

    fn string_quote(&self) -> Option<char> {
        self.quote
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(pairs: &[(&str, &str)]) -> Args {
        Args::resolve(pairs.iter().map(|(n, v)| (*n, Some(*v)))).expect("all args have values")
    }

    #[test]
    fn substitutes_with_inner_spaces_trimmed() {
        let a = args(&[("service", "checkout"), ("threshold", "0.95")]);
        let cases = [
            ("{{args.service}}", "checkout"),
            ("{{ args.service }}", "checkout"),
            ("{{  args.service\t}}-x", "checkout-x"),
            ("result[0] >= {{args.threshold}}", "result[0] >= 0.95"),
            ("no placeholders", "no placeholders"),
            ("{{args.service}}/{{args.service}}", "checkout/checkout"),
        ];
        for (template, expected) in cases {
            assert_eq!(render(template, &a), Ok(expected.to_owned()), "{template}");
        }
    }

    #[test]
    fn arguments_resolve_value_from_and_redact_secrets() {
        use crate::api::{FieldRef, SecretKeyRef};
        let args = vec![
            Argument {
                name: "service".into(),
                value: Some("checkout".into()),
                value_from: None,
            },
            Argument {
                name: "token".into(),
                value: None,
                value_from: Some(ValueFrom {
                    secret_key_ref: Some(SecretKeyRef {
                        name: "prom".into(),
                        key: "token".into(),
                    }),
                    field_ref: None,
                }),
            },
            Argument {
                name: "env".into(),
                value: None,
                value_from: Some(ValueFrom {
                    secret_key_ref: None,
                    field_ref: Some(FieldRef {
                        field_path: "metadata.labels['env']".into(),
                    }),
                }),
            },
        ];
        let resolved = Args::from_arguments(&args, |from| match from {
            ValueFrom {
                secret_key_ref: Some(_),
                ..
            } => Some("s3cr3t".into()),
            ValueFrom {
                field_ref: Some(_), ..
            } => Some("prod".into()),
            _ => None,
        })
        .expect("all resolve");
        assert_eq!(
            render("{{args.service}} {{args.env}} {{args.token}}", &resolved).as_deref(),
            Ok("checkout prod s3cr3t")
        );
        assert_eq!(
            resolved.redact("Bearer s3cr3t for prod"),
            "Bearer ***** for prod"
        );
        // A Secret never goes into a URL's scheme, host or path; the query is fine, and so is
        // any other arg anywhere.
        for url in [
            "https://{{args.token}}.example.com/x",
            "https://example.com/{{args.token}}",
            "{{args.token}}",
            "https://{{args.service}}.example.com/{{ args.token }}?q=1",
        ] {
            assert_eq!(
                resolved.check_url(url),
                Err(TemplateError::SecretInUrl("token".into())),
                "{url}"
            );
        }
        for url in [
            "https://{{args.service}}.example.com/{{args.env}}?token={{args.token}}",
            "https://example.com/x#{{args.token}}",
            "https://example.com/x",
        ] {
            assert_eq!(resolved.check_url(url), Ok(()), "{url}");
        }
        let missing = Args::from_arguments(&args, |_| None);
        assert_eq!(missing, Err(TemplateError::Unresolved("token".into())));
        let required = [Argument {
            name: "canary-hash".into(),
            value: None,
            value_from: None,
        }];
        assert_eq!(
            Args::from_arguments(&required, |_| None).map_err(|e| e.to_string()),
            Err("args.canary-hash was not resolved".into())
        );
    }

    #[test]
    fn later_values_override_earlier_ones() {
        let a = Args::resolve([("env", Some("default")), ("env", Some("prod"))]);
        assert_eq!(
            a.map(|a| a.get("env").map(str::to_owned)),
            Ok(Some("prod".into()))
        );
    }

    #[test]
    fn unknown_and_unresolved_args_fail_with_argo_messages() {
        let a = args(&[("service", "checkout")]);
        let unknown = render("rate(x{job=\"{{ args.job }}\"}[5m])", &a);
        assert_eq!(
            unknown,
            Err(TemplateError::UnknownPlaceholder("args.job".into()))
        );
        assert_eq!(
            unknown.map_err(|e| e.to_string()),
            Err("failed to resolve {{args.job}}".into())
        );
        assert_eq!(
            render("{{namespace}}", &a).map_err(|e| e.to_string()),
            Err("failed to resolve {{namespace}}".into())
        );
        let unresolved = Args::resolve([("service", Some("x")), ("canary-hash", None)]);
        assert_eq!(
            unresolved.map_err(|e| e.to_string()),
            Err("args.canary-hash was not resolved".into())
        );
        assert!(matches!(
            render("a {{args.service", &a),
            Err(TemplateError::Unterminated(_))
        ));
    }

    #[test]
    fn promql_values_in_quotes_cannot_break_out() {
        let template =
            r#"sum(rate(http_requests_total{service="{{args.service}}",code=~"5.."}[5m]))"#;
        let hostile = r#"foo"} or vector(1) #"#;
        let rendered = render_promql(template, &args(&[("service", hostile)])).expect("renders");
        assert_eq!(
            rendered,
            r#"sum(rate(http_requests_total{service="foo\"} or vector(1) #",code=~"5.."}[5m]))"#
        );
        // The structure is unchanged: the escaped query lexes to the same string literals as the
        // template, with the hostile text as one literal's content.
        assert_eq!(
            string_literals(&rendered),
            vec![hostile.to_owned(), "5..".to_owned()]
        );
    }

    #[test]
    fn promql_escapes_backslashes_newlines_and_the_right_quote() {
        let a = args(&[("v", "a\\b\n'\"")]);
        assert_eq!(
            render_promql(r#"x{l="{{args.v}}"}"#, &a),
            Ok(r#"x{l="a\\b\n'\""}"#.to_owned())
        );
        assert_eq!(
            render_promql(r#"x{l='{{args.v}}'}"#, &a),
            Ok(r#"x{l='a\\b\n\'"'}"#.to_owned())
        );
        assert_eq!(
            render_promql("x{l=`{{args.v}}`}", &args(&[("v", "a\\b\"")])),
            Ok("x{l=`a\\b\"`}".to_owned())
        );
        assert_eq!(
            render_promql("x{l=`{{args.v}}`}", &args(&[("v", "a`b")])),
            Err(TemplateError::Unquotable("v".into()))
        );
    }

    #[test]
    fn promql_regex_values_keep_their_meaning() {
        let a = args(&[("target", "podinfo-canary|podinfo-primary")]);
        assert_eq!(
            render_promql(r#"x{workload=~"{{args.target}}"}"#, &a),
            Ok(r#"x{workload=~"podinfo-canary|podinfo-primary"}"#.to_owned())
        );
    }

    #[test]
    fn promql_placeholders_outside_quotes_are_spliced() {
        let a = args(&[("window", "5m"), ("sel", "job=\"api\""), ("svc", "a\"b")]);
        assert_eq!(
            render_promql(r#"rate(x{{{args.sel}}}[{{args.window}}])"#, &a),
            Ok(r#"rate(x{job="api"}[5m])"#.to_owned())
        );
        // Quote state follows the template, not spliced values, and survives escaped quotes
        // and comments in the template.
        assert_eq!(
            render_promql(
                "x{a=\"q\\\"{{args.svc}}\", b=\"{{args.svc}}\"} # \"{{args.window}}\n+ \"{{args.svc}}\"",
                &a
            ),
            Ok("x{a=\"q\\\"a\\\"b\", b=\"a\\\"b\"} # \"5m\n+ \"a\\\"b\"".to_owned())
        );
    }

    /// The contents of the string literals a PromQL lexer would see, unescaped.
    fn string_literals(query: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut chars = query.chars();
        let mut comment = false;
        while let Some(c) = chars.next() {
            if comment {
                comment = c != '\n';
            } else if c == '#' {
                comment = true;
            } else if c == '"' {
                let mut s = String::new();
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => s.extend(chars.next()),
                        '"' => break,
                        c => s.push(c),
                    }
                }
                out.push(s);
            }
        }
        out
    }
}
