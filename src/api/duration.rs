//! Durations as Argo Rollouts writes them: an integer number of seconds (`30`) or a Go-style
//! duration string (`30s`, `5m`, `1h30m`, `1.5h`, `250ms`).
//!
//! The value keeps the form it was written in, so a manifest round-trips unchanged, and the
//! admission rule in [`DURATION_RULE`] accepts exactly what [`Duration::parse`] accepts.

use std::{borrow::Cow, fmt, str::FromStr};

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// The CEL rule the API server applies to every duration field. Keep in step with
/// [`Duration::parse`]; `tests` in this module check both against the same table.
///
/// Bounded so that every admitted duration fits Go's (and the controller's) range, about 292
/// years: integer seconds up to [`MAX_SECONDS`]; in a string each unit at most once, largest
/// first, with at most [`UNIT_DIGITS`] integer digits each (the largest such string is under
/// 2^63 ns). Unbounded, the rule admitted values that no decoder could read, and one such
/// object stopped every watch of its kind.
pub const DURATION_RULE: &str = r"type(self) == int ? (self >= 0 && self <= 9223372036) : (self != '' && self.matches('^(0|([0-9]{1,6}(\\.[0-9]+)?h)?([0-9]{1,7}(\\.[0-9]+)?m)?([0-9]{1,9}(\\.[0-9]+)?s)?([0-9]{1,12}(\\.[0-9]+)?ms)?([0-9]{1,15}(\\.[0-9]+)?us)?([0-9]{1,18}(\\.[0-9]+)?ns)?)$'))";

/// The largest integer number of seconds admitted (2^63 ns, Go's largest duration, rounded down).
pub const MAX_SECONDS: u64 = 9_223_372_036;

/// Units in the order a duration string must give them, with the most integer digits each may
/// have and its length in nanoseconds.
pub const UNIT_DIGITS: [(&str, usize, u128); 6] = [
    ("h", 6, 3_600_000_000_000),
    ("m", 7, 60_000_000_000),
    ("s", 9, 1_000_000_000),
    ("ms", 12, 1_000_000),
    ("us", 15, 1_000),
    ("ns", 18, 1),
];

/// The message the API server returns when [`DURATION_RULE`] fails; the server prefixes the
/// field's path.
pub const DURATION_MESSAGE: &str = "must be integer seconds (0 to 9223372036) or a duration string such as 30s, 5m, 1h or 1h30m: units ns, us, ms, s, m, h, each at most once and largest first, up to 999999h";

/// A non-negative duration, written either as integer seconds or as a duration string.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Duration {
    nanos: u128,
    form: Form,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Form {
    /// Written as a bare integer number of seconds.
    Seconds(u64),
    /// Written as a duration string, kept verbatim.
    Text(String),
}

/// Why a duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {reason}; {DURATION_MESSAGE}")]
pub struct ParseDurationError {
    input: String,
    reason: &'static str,
}

impl Duration {
    /// A duration of whole seconds, serialised as a bare integer.
    pub fn from_secs(secs: u64) -> Self {
        Self {
            nanos: u128::from(secs) * 1_000_000_000,
            form: Form::Seconds(secs),
        }
    }

    /// Parses `0`, or one or more `<number><unit>` groups with units `ns`, `us`, `ms`, `s`, `m`,
    /// `h` and an optional decimal fraction (`1.5h`). A bare number other than `0` has no unit and
    /// is rejected, as Go's `time.ParseDuration` does; integers are accepted only as JSON numbers.
    pub fn parse(input: &str) -> Result<Self, ParseDurationError> {
        let err = |reason| ParseDurationError {
            input: input.to_owned(),
            reason,
        };
        if input == "0" {
            return Ok(Self {
                nanos: 0,
                form: Form::Text(input.to_owned()),
            });
        }
        if input.is_empty() {
            return Err(err("empty string"));
        }
        let bytes = input.as_bytes();
        let mut i = 0;
        let mut total: u128 = 0;
        // Index in UNIT_DIGITS of the smallest unit the next group may have.
        let mut next_unit = 0;
        while i < bytes.len() {
            let int_start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            if i == int_start {
                return Err(err("expected a number"));
            }
            let int_part = &input[int_start..i];
            let mut frac_part = "";
            if i < bytes.len() && bytes[i] == b'.' {
                i += 1;
                let frac_start = i;
                while i < bytes.len() && bytes[i].is_ascii_digit() {
                    i += 1;
                }
                if i == frac_start {
                    return Err(err("expected digits after the decimal point"));
                }
                frac_part = &input[frac_start..i];
            }
            let unit_start = i;
            while i < bytes.len() && bytes[i].is_ascii_lowercase() {
                i += 1;
            }
            let unit = &input[unit_start..i];
            if unit.is_empty() {
                return Err(err("missing unit"));
            }
            let Some(pos) = UNIT_DIGITS.iter().position(|(u, _, _)| *u == unit) else {
                return Err(err("unknown unit"));
            };
            if pos < next_unit {
                return Err(err(
                    "units must appear at most once each, largest first (e.g. 1h30m)",
                ));
            }
            next_unit = pos + 1;
            let (_, max_digits, unit_nanos) = UNIT_DIGITS[pos];
            if int_part.len() > max_digits {
                return Err(err(
                    "number too large (at most 999999h, 9999999m, 999999999s, …)",
                ));
            }
            let whole: u128 = int_part.parse().map_err(|_| err("number too large"))?;
            let mut part = whole
                .checked_mul(unit_nanos)
                .ok_or_else(|| err("number too large"))?;
            // Fraction: at most 18 digits matter at nanosecond resolution of an hour.
            let mut scale = unit_nanos;
            for d in frac_part.bytes().take(18) {
                scale /= 10;
                part += u128::from(d - b'0') * scale;
            }
            total = total
                .checked_add(part)
                .ok_or_else(|| err("number too large"))?;
        }
        Ok(Self {
            nanos: total,
            form: Form::Text(input.to_owned()),
        })
    }

    /// The duration as a `std::time::Duration` (saturating at `u64::MAX` seconds).
    pub fn as_std(&self) -> std::time::Duration {
        let secs = u64::try_from(self.nanos / 1_000_000_000).unwrap_or(u64::MAX);
        // The remainder is < 1e9, so it fits in u32.
        let sub = u32::try_from(self.nanos % 1_000_000_000).unwrap_or(0);
        std::time::Duration::new(secs, sub)
    }

    /// Whole seconds, rounded down.
    pub fn as_secs(&self) -> u64 {
        self.as_std().as_secs()
    }

    /// Whether it was written as a bare integer number of seconds.
    pub fn is_integer_seconds(&self) -> bool {
        matches!(self.form, Form::Seconds(_))
    }
}

impl Default for Duration {
    fn default() -> Self {
        Self::from_secs(0)
    }
}

impl From<std::time::Duration> for Duration {
    /// Whole seconds become an integer; anything finer a milliseconds string.
    fn from(d: std::time::Duration) -> Self {
        if d.subsec_nanos() == 0 {
            Self::from_secs(d.as_secs())
        } else {
            Self {
                nanos: d.as_nanos(),
                form: Form::Text(format!("{}ms", d.as_millis())),
            }
        }
    }
}

impl FromStr for Duration {
    type Err = ParseDurationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for Duration {
    /// The string form: the text as written, or `<n>s` for integer seconds.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.form {
            Form::Seconds(s) => write!(f, "{s}s"),
            Form::Text(t) => f.write_str(t),
        }
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match &self.form {
            Form::Seconds(s) => serializer.serialize_u64(*s),
            Form::Text(t) => serializer.serialize_str(t),
        }
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = Duration;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("integer seconds or a duration string such as 30s, 5m, 1h")
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
                if v > MAX_SECONDS {
                    return Err(E::custom(format_args!(
                        "{v} seconds is more than the largest duration, {MAX_SECONDS}"
                    )));
                }
                Ok(Duration::from_secs(v))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
                let v =
                    u64::try_from(v).map_err(|_| E::custom("a duration must not be negative"))?;
                self.visit_u64(v)
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
                Duration::parse(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "x-kubernetes-int-or-string": true,
            "maxLength": 64,
            "x-kubernetes-validations": [{
                "rule": DURATION_RULE,
                "message": DURATION_MESSAGE,
            }],
        })
    }

    fn inline_schema() -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The regular expression inside [`DURATION_RULE`], as the API server's CEL sees it.
    fn rule_regex() -> regex::Regex {
        let start = DURATION_RULE.find("matches('").unwrap() + "matches('".len();
        let end = DURATION_RULE.rfind("')").unwrap();
        // The rule is a CEL string literal: `\\.` there is `\.` in the regex.
        regex::Regex::new(&DURATION_RULE[start..end].replace("\\\\", "\\")).unwrap()
    }

    /// The parser and the admission rule must agree on every string.
    fn rule_regex_accepts(s: &str) -> bool {
        // The rule's string arm: `self != '' && self.matches(…)`.
        assert!(DURATION_RULE.contains("self != '' && self.matches("));
        let by_rule = !s.is_empty() && rule_regex().is_match(s);
        assert_eq!(
            by_rule,
            Duration::parse(s).is_ok(),
            "parser and CEL rule disagree on {s:?}"
        );
        by_rule
    }

    #[test]
    fn parses_go_style_strings() {
        let cases: &[(&str, u128)] = &[
            ("0", 0),
            ("30s", 30_000_000_000),
            ("5m", 300_000_000_000),
            ("1h", 3_600_000_000_000),
            ("1h30m", 5_400_000_000_000),
            ("1.5h", 5_400_000_000_000),
            ("250ms", 250_000_000),
            ("10us", 10_000),
            ("7ns", 7),
            ("2m0s", 120_000_000_000),
        ];
        for (s, nanos) in cases {
            assert!(rule_regex_accepts(s), "{s}");
            let d = Duration::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(d.nanos, *nanos, "{s}");
            assert_eq!(d.to_string(), *s);
        }
    }

    #[test]
    fn rejects_what_the_admission_rule_rejects() {
        for s in [
            "", "30", "-5s", "5 m", "5M", "1d", "1.s", ".5s", "s", "5m ", "1h-30m", "abc",
        ] {
            assert!(!rule_regex_accepts(s), "{s:?} should be rejected");
        }
    }

    #[test]
    fn bounds_keep_every_admitted_duration_inside_go_s_range() {
        let largest = "999999.9h9999999.9m999999999.9s999999999999.9ms";
        for s in [
            "999999h",
            "9999999m",
            "999999999s",
            "1h30m",
            "1h0m0s",
            "2m1.5s500ms",
            largest,
        ] {
            assert!(rule_regex_accepts(s), "{s}");
        }
        let nanos = Duration::parse(largest).map(|d| d.nanos);
        assert!(
            nanos.as_ref().is_ok_and(|n| *n <= i64::MAX as u128),
            "{nanos:?}"
        );
        for s in [
            "1000000h",
            "9999999999s",
            "99999999999999999999999999999999999999999s",
            "30m1h",
            "1h1h",
            "1s1m",
            "5ms1s",
        ] {
            assert!(!rule_regex_accepts(s), "{s:?} should be rejected");
        }
        let err = Duration::parse("30m1h")
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(err.contains("largest first"), "{err}");
        let secs = |n: u64| serde_json::from_value::<Duration>(serde_json::json!(n));
        assert!(secs(MAX_SECONDS).is_ok());
        let err = secs(MAX_SECONDS + 1).map(|_| ()).unwrap_err().to_string();
        assert!(err.contains("largest duration"), "{err}");
        assert!(DURATION_RULE.contains(&format!("self <= {MAX_SECONDS}")));
    }

    proptest::proptest! {
        /// Whatever the rule admits, the parser reads, and below 2^63 ns.
        #[test]
        fn what_the_rule_admits_fits(s in "(0|([0-9]{1,6}(\\.[0-9]{1,5})?h)?([0-9]{1,7}(\\.[0-9]{1,5})?m)?([0-9]{1,9}s)?([0-9]{1,12}ms)?([0-9]{1,15}us)?([0-9]{1,18}ns)?)") {
            proptest::prop_assume!(!s.is_empty());
            proptest::prop_assert!(rule_regex().is_match(&s));
            let d = Duration::parse(&s);
            proptest::prop_assert!(d.as_ref().is_ok_and(|d| d.nanos <= i64::MAX as u128), "{s:?}: {d:?}");
        }

        /// On any short string of digits, dots and unit letters, the rule and the parser agree.
        #[test]
        fn rule_and_parser_agree(s in "[0-9.hmsun]{1,12}") {
            rule_regex_accepts(&s);
        }
    }

    #[test]
    fn integers_are_seconds_and_round_trip() {
        let d: Duration = serde_json::from_value(serde_json::json!(120)).unwrap();
        assert_eq!(d.as_secs(), 120);
        assert!(d.is_integer_seconds());
        assert_eq!(serde_json::to_value(&d).unwrap(), serde_json::json!(120));
        let s: Duration = serde_json::from_value(serde_json::json!("2m")).unwrap();
        assert_eq!(s.as_secs(), 120);
        assert_eq!(serde_json::to_value(&s).unwrap(), serde_json::json!("2m"));
        assert!(serde_json::from_value::<Duration>(serde_json::json!(-1)).is_err());
        assert!(serde_json::from_value::<Duration>(serde_json::json!("2x")).is_err());
    }

    #[test]
    fn converts_to_std() {
        assert_eq!(
            Duration::parse("1.5s").unwrap().as_std(),
            std::time::Duration::from_millis(1500)
        );
        assert_eq!(
            Duration::from(std::time::Duration::from_millis(1500)).to_string(),
            "1500ms"
        );
        assert_eq!(
            Duration::from(std::time::Duration::from_secs(3)),
            Duration::from_secs(3)
        );
    }
}
