//! A Prometheus `rangeQuery`'s `start` and `end`: the forms of Argo Rollouts' `expr` time
//! expressions its documentation and users write — `now()`, `date("2026-01-02T15:04:05Z")`,
//! each followed by any number of `+ duration("…")` / `- duration("…")` (Go duration strings,
//! args already substituted). Anything else is refused when the run starts, naming the field.

use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::api::Duration;

/// Where an expression starts from.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Base {
    Now,
    At(Timestamp),
}

/// A parsed time expression: a base and a signed offset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimeExpr {
    base: Base,
    offset: SignedDuration,
}

const FORMS: &str = "write now(), date(\"2026-01-02T15:04:05Z\") or either followed by - duration(\"1h\") / + duration(\"30m\")";

impl TimeExpr {
    pub fn parse(source: &str) -> Result<TimeExpr, String> {
        let mut p = Parser {
            rest: source.trim(),
        };
        let base =
            if p.eat("now") {
                p.expect("(")?;
                p.expect(")")?;
                Base::Now
            } else if p.eat("date") {
                p.expect("(")?;
                let text = p.string()?;
                p.expect(")")?;
                Base::At(text.parse::<Timestamp>().map_err(|e| {
                    format!("date(\"{text}\"): not an RFC 3339 time ({e}); {FORMS}")
                })?)
            } else {
                return Err(format!("\"{source}\" is not a time expression; {FORMS}"));
            };
        let mut offset = SignedDuration::ZERO;
        while !p.rest.is_empty() {
            let sign = if p.eat("+") {
                1
            } else if p.eat("-") {
                -1
            } else {
                return Err(format!(
                    "unexpected \"{}\" in \"{source}\"; {FORMS}",
                    p.rest
                ));
            };
            if !p.eat("duration") {
                return Err(format!(
                    "\"{source}\": only duration(\"…\") can be added or subtracted; {FORMS}"
                ));
            }
            p.expect("(")?;
            let text = p.string()?;
            p.expect(")")?;
            let (negative, unsigned) = match text.strip_prefix('-') {
                Some(rest) => (true, rest),
                None => (false, text.as_str()),
            };
            let d = Duration::parse(unsigned).map_err(|e| format!("duration(\"{text}\"): {e}"))?;
            let d = SignedDuration::try_from(d.as_std())
                .map_err(|e| format!("duration(\"{text}\"): {e}"))?;
            let d = if negative == (sign < 0) { d } else { -d };
            offset = offset
                .checked_add(d)
                .ok_or_else(|| format!("\"{source}\": the durations add up past any time"))?;
        }
        Ok(TimeExpr { base, offset })
    }

    /// The time this expression names at `now`.
    pub fn at(&self, now: Timestamp) -> Result<Timestamp, String> {
        let base = match &self.base {
            Base::Now => now,
            Base::At(t) => *t,
        };
        base.checked_add(self.offset)
            .map_err(|e| format!("the time is out of range: {e}"))
    }
}

struct Parser<'a> {
    rest: &'a str,
}

impl Parser<'_> {
    fn eat(&mut self, token: &str) -> bool {
        match self.rest.strip_prefix(token) {
            Some(rest) => {
                self.rest = rest.trim_start();
                true
            }
            None => false,
        }
    }

    fn expect(&mut self, token: &str) -> Result<(), String> {
        if self.eat(token) {
            Ok(())
        } else {
            Err(format!(
                "expected \"{token}\" at \"{}\"; {FORMS}",
                self.rest
            ))
        }
    }

    /// A double- or single-quoted string without escapes.
    fn string(&mut self) -> Result<String, String> {
        let quote = self
            .rest
            .chars()
            .next()
            .filter(|c| matches!(c, '"' | '\''))
            .ok_or_else(|| format!("expected a quoted string at \"{}\"", self.rest))?;
        let body = &self.rest[1..];
        let end = body
            .find(quote)
            .ok_or_else(|| format!("unterminated string at \"{}\"", self.rest))?;
        let text = body[..end].to_owned();
        self.rest = body[end + 1..].trim_start();
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(source: &str) -> Result<Timestamp, String> {
        let now: Timestamp = "2026-12-03T10:00:00Z".parse().expect("now");
        TimeExpr::parse(source)?.at(now)
    }

    #[test]
    fn argo_forms_evaluate() {
        let cases = [
            ("now()", "2026-12-03T10:00:00Z"),
            ("now() - duration(\"1h\")", "2026-12-03T09:00:00Z"),
            ("now()-duration('90m')", "2026-12-03T08:30:00Z"),
            (
                "now() - duration(\"1h\") + duration(\"15m\")",
                "2026-12-03T09:15:00Z",
            ),
            ("now() + duration(\"-5m\")", "2026-12-03T09:55:00Z"),
            ("now() - duration(\"-5m\")", "2026-12-03T10:05:00Z"),
            ("date(\"2026-01-02T15:04:05Z\")", "2026-01-02T15:04:05Z"),
            (
                "date('2026-01-02T15:04:05+01:00') + duration('1s')",
                "2026-01-02T14:04:06Z",
            ),
        ];
        for (source, want) in cases {
            let want: Timestamp = want.parse().expect("want");
            assert_eq!(at(source), Ok(want), "{source}");
        }
    }

    #[test]
    fn other_forms_are_refused_saying_what_to_write() {
        for source in [
            "",
            "yesterday",
            "now",
            "now() - 1h",
            "now() * duration(\"1h\")",
            "now() - duration(\"1 hour\")",
            "date(\"Jan 2\")",
            "now() - duration(\"1h\"",
            "now() - duration(\"1h)",
        ] {
            let err = at(source).expect_err(source);
            assert!(!err.is_empty(), "{source}");
        }
        assert!(at("yesterday").unwrap_err().contains("write now()"));
    }
}
