//! `successCondition` / `failureCondition` expressions, in CEL.
//!
//! Argo Rollouts evaluates conditions in the `expr` language. Aviary uses CEL, whose everyday
//! forms are the same (`result[0] >= 0.95`, `&&`, `||`, `a ? b : c`), and closes the gaps that
//! would otherwise make Argo templates fail after porting:
//!
//! - **Functions** `len(x)` (an alias of `size`), `isNaN(x)`, `isInf(x)`, `asInt(x)`,
//!   `asFloat(x)`, `isNil(x)` and `default(x, d)` (`d` when `x` is null, an empty list or NaN).
//! - **Word operators** `and`, `or`, `not` are read as `&&`, `||`, `!`, and `nil` as `null`.
//! - **Mixed int/double arithmetic.** CEL compares ints with doubles (`result[0] >= 1`,
//!   `result == 0`) but refuses to add or multiply them (`result[0] * 100` is a type error).
//!   Integer *literals* used in arithmetic next to a double-valued operand are therefore
//!   rewritten to double literals (`100` → `100.0`) before compiling. Integer-valued
//!   expressions other than literals (`size(result) * 0.5`) are left alone: such an expression
//!   needs an explicit `double(...)`.
//!
//! `result` is bound to the provider's value: a `list(double)` for vectors and matrices, a
//! `double` for scalars, and for a web response its JSON type (`bool`, `double`, `string`,
//! `map`, `list`, `null`). NaN compared with `<`, `>=`, … is an evaluation *error* in this CEL
//! implementation (Argo's `expr` answers false); either way such a comparison never passes.
//!
//! Messages never quote a string, list or map the value holds (a web response may carry what
//! status readers must not see): CEL's own errors are rewritten to name types only.

use std::sync::{Arc, LazyLock};

use cel::common::ast::{Expr, LiteralValue};
use cel::{Context, Env, ExecutionError, IdedExpr, Program, Value};
use thiserror::Error;

use super::value::{MetricValue, MissingData};

/// The only variable a condition can read.
const RESULT: &str = "result";

/// Functions that let a condition decide explicitly what an empty vector means.
const EMPTY_GUARDS: [&str; 3] = ["len", "size", "default"];
/// Functions that let a condition decide explicitly what a NaN means.
const NAN_GUARDS: [&str; 2] = ["isNaN", "default"];
/// Functions that let a condition decide explicitly what a JSON null means (so does comparing
/// `result` with `null`).
const NULL_GUARDS: [&str; 2] = ["isNil", "default"];

/// The standard CEL environment is immutable and costly to build, so every evaluation shares one.
static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| Arc::new(Env::stdlib()));

#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ConditionError {
    /// The expression can never run: the analysis run is rejected at start.
    #[error("invalid condition \"{expression}\": {message}")]
    Compile { expression: String, message: String },
    /// The expression ran into an error with this value: the measurement is an Error.
    #[error("condition \"{expression}\" could not be evaluated: {message}")]
    Evaluate { expression: String, message: String },
    /// The expression produced something other than a boolean: the measurement is an Error.
    #[error("condition \"{expression}\" returned {got}, not a boolean")]
    NotBoolean { expression: String, got: String },
}

/// A compiled condition.
#[derive(Debug)]
pub struct Condition {
    /// As the user wrote it, for messages.
    expression: String,
    program: Program,
    guards_empty: bool,
    guards_nan: bool,
    guards_null: bool,
}

impl Condition {
    /// Compiles `expression`, rejecting syntax errors and references to anything but `result`
    /// and the known functions, so a bad template fails the run at start instead of producing
    /// an Error measurement per interval.
    pub fn compile(expression: &str) -> Result<Condition, ConditionError> {
        let compile_error = |message: String| ConditionError::Compile {
            expression: expression.to_owned(),
            message,
        };
        let words_replaced = replace_word_operators(expression);
        let parsed = ENV
            .compile(&words_replaced)
            .map_err(|e| compile_error(e.to_string()))?;
        let source = widen_int_literals(&words_replaced, &parsed);
        let program = if source == words_replaced {
            parsed
        } else {
            ENV.compile(&source)
                .map_err(|e| compile_error(e.to_string()))?
        };
        let references = program.references();
        let guards_empty = EMPTY_GUARDS.iter().any(|f| references.has_function(f));
        let guards_nan = NAN_GUARDS.iter().any(|f| references.has_function(f));
        let guards_null = NULL_GUARDS.iter().any(|f| references.has_function(f));
        let condition = Condition {
            expression: expression.to_owned(),
            program,
            guards_empty,
            guards_nan,
            guards_null,
        };
        condition.reject_undeclared_references()?;
        // `result == nil` says what null means as plainly as `isNil(result)`.
        let guards_null =
            condition.guards_null || condition.non_numeric_comparisons().contains(&"null");
        Ok(Condition {
            guards_null,
            ..condition
        })
    }

    /// The expression as written.
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// Whether the expression says explicitly what to do with this kind of missing data.
    pub fn guards(&self, missing: MissingData) -> bool {
        match missing {
            MissingData::Empty => self.guards_empty,
            MissingData::NaN => self.guards_nan,
            MissingData::Null => self.guards_null,
        }
    }

    /// Evaluates the condition with `result` bound to `value`. Anything but a boolean is an error.
    pub fn evaluate(&self, value: &MetricValue) -> Result<bool, ConditionError> {
        // A web value's strings may hold anything; numbers derived from them too.
        let show = !matches!(value, MetricValue::Json(_));
        match self.execute(value) {
            Ok(Value::Bool(b)) => Ok(b),
            Ok(other) => Err(ConditionError::NotBoolean {
                expression: self.expression.clone(),
                got: describe(&other, show),
            }),
            Err(e) => {
                let mut spelled = Vec::new();
                spelled_keys(self.program.expression(), &mut spelled);
                Err(ConditionError::Evaluate {
                    expression: self.expression.clone(),
                    message: error_message(&e, &spelled, show),
                })
            }
        }
    }

    fn execute(&self, value: &MetricValue) -> Result<Value, ExecutionError> {
        let mut context = Context::with_env(Arc::clone(&ENV));
        context.add_variable_from_value(RESULT, to_cel(value));
        add_functions(&mut context).map_err(|e| ExecutionError::InternalError(e.to_string()))?;
        self.program.execute(&context)
    }

    /// The kinds of non-numeric literal (`a string`, `a boolean`, `null`) the expression
    /// compares a value read from `result` with (`result[0] == "1"`, `result == true`). With a
    /// provider whose values are numbers (Prometheus) such a comparison can never hold, which
    /// `kubectl aviary lint` reports.
    pub fn non_numeric_comparisons(&self) -> Vec<&'static str> {
        let mut found = Vec::new();
        comparisons(self.program.expression(), &mut Vec::new(), &mut found);
        found.sort_unstable();
        found.dedup();
        found
    }

    /// An undeclared name fails whatever the data, so it is a compile error. CEL only finds
    /// them while running, so run once per shape of `result`; a name only reached on one
    /// branch may still slip through and then fails as an Error measurement.
    fn reject_undeclared_references(&self) -> Result<(), ConditionError> {
        let samples = [MetricValue::Vector(vec![1.0]), MetricValue::Scalar(1.0)];
        let mut undeclared = None;
        for sample in &samples {
            match self.execute(sample) {
                Err(ExecutionError::UndeclaredReference(name)) => undeclared = Some(name),
                _ => return Ok(()),
            }
        }
        match undeclared {
            Some(name) => Err(ConditionError::Compile {
                expression: self.expression.clone(),
                message: format!("undeclared reference to '{name}'"),
            }),
            None => Ok(()),
        }
    }
}

const COMPARISONS: [&str; 6] = ["_==_", "_!=_", "_<_", "_<=_", "_>_", "_>=_"];

fn comparisons(expr: &IdedExpr, result_vars: &mut Vec<String>, found: &mut Vec<&'static str>) {
    match &expr.expr {
        Expr::Call(call) => {
            if let (true, [a, b]) = (
                COMPARISONS.contains(&call.func_name.as_str()),
                call.args.as_slice(),
            ) {
                for (value, literal) in [(a, b), (b, a)] {
                    if let (true, Some(kind)) =
                        (reads_result(value, result_vars), literal_kind(literal))
                    {
                        found.push(kind);
                    }
                }
            }
            for e in call.target.iter().map(|t| &**t).chain(&call.args) {
                comparisons(e, result_vars, found);
            }
        }
        Expr::Select(select) => comparisons(&select.operand, result_vars, found),
        Expr::List(list) => {
            for e in &list.elements {
                comparisons(e, result_vars, found);
            }
        }
        Expr::Comprehension(c) => {
            comparisons(&c.iter_range, result_vars, found);
            comparisons(&c.accu_init, result_vars, found);
            let over_result = reads_result(&c.iter_range, result_vars);
            if over_result {
                result_vars.push(c.iter_var.clone());
            }
            for part in [&c.loop_cond, &c.loop_step, &c.result] {
                comparisons(part, result_vars, found);
            }
            if over_result {
                result_vars.pop();
            }
        }
        _ => {}
    }
}

/// Whether `expr` is `result`, an element or field of it, or a macro variable ranging over it.
fn reads_result(expr: &IdedExpr, result_vars: &[String]) -> bool {
    match &expr.expr {
        Expr::Ident(name) => name == RESULT || result_vars.contains(name),
        Expr::Select(select) => reads_result(&select.operand, result_vars),
        Expr::Call(call) if call.func_name == "_[_]" => call
            .args
            .first()
            .is_some_and(|a| reads_result(a, result_vars)),
        _ => false,
    }
}

fn literal_kind(expr: &IdedExpr) -> Option<&'static str> {
    match &expr.expr {
        Expr::Literal(LiteralValue::String(_)) => Some("a string"),
        Expr::Literal(LiteralValue::Boolean(_)) => Some("a boolean"),
        Expr::Literal(LiteralValue::Null) => Some("null"),
        _ => None,
    }
}

fn to_cel(value: &MetricValue) -> Value {
    match value {
        MetricValue::Scalar(v) => Value::Float(*v),
        MetricValue::Vector(values) => {
            Value::List(Arc::new(values.iter().map(|v| Value::Float(*v)).collect()))
        }
        MetricValue::Json(v) => json_to_cel(v),
    }
}

/// JSON as Argo's `expr` sees it after Go's `json.Unmarshal`: every number a double.
fn json_to_cel(v: &serde_json::Value) -> Value {
    use serde_json::Value as Json;
    match v {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        Json::String(s) => Value::String(Arc::new(s.clone())),
        Json::Array(items) => Value::List(Arc::new(items.iter().map(json_to_cel).collect())),
        Json::Object(fields) => Value::from(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), json_to_cel(v)))
                .collect::<std::collections::HashMap<String, Value>>(),
        ),
    }
}

/// A value for a message. With `show`, numbers, booleans and null as they are and a string,
/// list or map by its type only; without it (a web value, whose strings may hold numbers a
/// condition parsed out of them), every value by its type only.
fn describe(value: &Value, show: bool) -> String {
    match value {
        Value::Int(i) if show => format!("int {i}"),
        Value::UInt(u) if show => format!("uint {u}"),
        Value::Float(f) if show => format!("double {f}"),
        Value::Bool(b) if show => format!("bool {b}"),
        Value::List(l) if show => format!("a list of {}", l.len()),
        Value::Map(m) if show => format!("a map of {}", m.map.len()),
        Value::Int(_) => "an int".to_owned(),
        Value::UInt(_) => "a uint".to_owned(),
        Value::Float(_) => "a double".to_owned(),
        Value::Bool(_) => "a bool".to_owned(),
        Value::List(_) => "a list".to_owned(),
        Value::Map(_) => "a map".to_owned(),
        Value::String(_) => "a string".to_owned(),
        Value::Null => "null".to_owned(),
        other => format!("a {}", other.type_of()),
    }
}

/// CEL's error, with every value it quotes replaced by [`describe`]. A missing key is named
/// only when the expression spells it as a field or a string literal (a key read from the
/// value itself is not). Without `show`, a function's own message is left out unless the
/// function is one of ours, whose messages name types only.
fn error_message(e: &ExecutionError, spelled: &[String], show: bool) -> String {
    let describe = |v: &Value| describe(v, show);
    match e {
        ExecutionError::UnsupportedTargetType { target } => {
            format!("invalid argument type: {}", describe(target))
        }
        ExecutionError::NotSupportedAsMethod { method, target } => {
            format!("method '{method}' not supported on {}", describe(target))
        }
        ExecutionError::UnsupportedKeyType(v) => {
            format!("unable to use {} as a key", describe(v))
        }
        ExecutionError::NoSuchKey(key) if spelled.iter().any(|k| k == key.as_str()) => {
            format!("no such key: {key}")
        }
        ExecutionError::NoSuchKey(_) => "no such key".to_owned(),
        ExecutionError::ValuesNotComparable(a, b) => {
            format!("{} can not be compared to {}", describe(a), describe(b))
        }
        ExecutionError::UnsupportedBinaryOperator(op, a, b) => format!(
            "unsupported binary operator '{op}': {}, {}",
            describe(a),
            describe(b)
        ),
        ExecutionError::UnsupportedIndex(index, target) => format!(
            "cannot use {} to index {}",
            describe(index),
            describe(target)
        ),
        ExecutionError::DivisionByZero(v) => format!("division by zero of {}", describe(v)),
        ExecutionError::RemainderByZero(v) => format!("remainder by zero of {}", describe(v)),
        ExecutionError::Overflow(op, a, b) => format!(
            "overflow from binary operator '{op}': {}, {}",
            describe(a),
            describe(b)
        ),
        ExecutionError::IndexOutOfBounds(v) => format!("index out of bounds: {}", describe(v)),
        ExecutionError::DuplicateKey(v) => format!("repeated key: {}", describe(v)),
        #[allow(deprecated)]
        ExecutionError::UnsupportedUnaryOperator(op, v) => {
            format!("unsupported unary operator '{op}': {}", describe(v))
        }
        #[allow(deprecated)]
        ExecutionError::UnsupportedMapIndex(v) | ExecutionError::UnsupportedListIndex(v) => {
            format!("cannot use {} as an index", describe(v))
        }
        ExecutionError::FunctionError { function, .. }
            if !show && !OUR_FUNCTIONS.contains(&function.as_str()) =>
        {
            format!(
                "function '{function}' failed (its message may quote the value, so it is not shown)"
            )
        }
        ExecutionError::UnexpectedType { want, .. } if !show => {
            format!("unexpected type: want '{want}'")
        }
        // The rest name types, functions or our own messages (which quote no value).
        other => other.to_string(),
    }
}

/// The functions [`add_functions`] registers; their errors name types only.
const OUR_FUNCTIONS: [&str; 7] = [
    "len", "isNaN", "isInf", "asInt", "asFloat", "isNil", "default",
];

/// The names an expression spells: fields it selects and string literals (map keys).
fn spelled_keys(expr: &IdedExpr, out: &mut Vec<String>) {
    match &expr.expr {
        Expr::Literal(LiteralValue::String(s)) => out.push(s.inner().to_string()),
        Expr::Select(select) => {
            out.push(select.field.clone());
            spelled_keys(&select.operand, out);
        }
        Expr::Call(call) => {
            for e in call.target.iter().map(|t| &**t).chain(&call.args) {
                spelled_keys(e, out);
            }
        }
        Expr::List(list) => {
            for e in &list.elements {
                spelled_keys(e, out);
            }
        }
        Expr::Map(map) => {
            for entry in &map.entries {
                if let cel::common::ast::EntryExpr::MapEntry(e) = &entry.expr {
                    spelled_keys(&e.key, out);
                    spelled_keys(&e.value, out);
                }
            }
        }
        Expr::Comprehension(c) => {
            for part in [
                &c.iter_range,
                &c.accu_init,
                &c.loop_cond,
                &c.loop_step,
                &c.result,
            ] {
                spelled_keys(part, out);
            }
        }
        _ => {}
    }
}

fn not_a_number(function: &str, value: &Value) -> ExecutionError {
    ExecutionError::function_error(
        function,
        format!("expects a number, got {}", describe(value, false)),
    )
}

/// The Argo-compatible helpers. Registered per context because `cel` keeps non-overload
/// functions on the context, not on the shared environment.
fn add_functions(context: &mut Context) -> Result<(), cel::DeclarationError> {
    context.add_function("len", |v: Value| -> Result<Value, ExecutionError> {
        match &v {
            Value::List(l) => Ok(Value::Int(l.len() as i64)),
            Value::String(s) => Ok(Value::Int(s.chars().count() as i64)),
            Value::Map(m) => Ok(Value::Int(m.map.len() as i64)),
            other => Err(ExecutionError::function_error(
                "len",
                format!(
                    "expects a list, string or map, got {}",
                    describe(other, false)
                ),
            )),
        }
    })?;
    context.add_function("isNaN", |v: Value| -> Result<Value, ExecutionError> {
        match v {
            Value::Float(f) => Ok(Value::Bool(f.is_nan())),
            Value::Int(_) | Value::UInt(_) => Ok(Value::Bool(false)),
            other => Err(not_a_number("isNaN", &other)),
        }
    })?;
    context.add_function("isInf", |v: Value| -> Result<Value, ExecutionError> {
        match v {
            Value::Float(f) => Ok(Value::Bool(f.is_infinite())),
            Value::Int(_) | Value::UInt(_) => Ok(Value::Bool(false)),
            other => Err(not_a_number("isInf", &other)),
        }
    })?;
    context.add_function("asInt", |v: Value| -> Result<Value, ExecutionError> {
        match v {
            Value::Int(i) => Ok(Value::Int(i)),
            Value::UInt(u) => i64::try_from(u)
                .map(Value::Int)
                .map_err(|e| ExecutionError::function_error("asInt", e)),
            // Truncates toward zero like Go's int64(f), but refuses what Go would garble.
            Value::Float(f) if f.is_finite() && f.abs() < 9.2e18 => Ok(Value::Int(f as i64)),
            Value::Float(_) => Err(ExecutionError::function_error(
                "asInt",
                "a double with no integer value (NaN, infinite or out of range)",
            )),
            Value::String(s) => s
                .trim()
                .parse::<i64>()
                .map(Value::Int)
                .map_err(|e| ExecutionError::function_error("asInt", format!("a string: {e}"))),
            other => Err(not_a_number("asInt", &other)),
        }
    })?;
    context.add_function("asFloat", |v: Value| -> Result<Value, ExecutionError> {
        match v {
            Value::Float(f) => Ok(Value::Float(f)),
            Value::Int(i) => Ok(Value::Float(i as f64)),
            Value::UInt(u) => Ok(Value::Float(u as f64)),
            Value::String(s) => {
                s.trim().parse::<f64>().map(Value::Float).map_err(|e| {
                    ExecutionError::function_error("asFloat", format!("a string: {e}"))
                })
            }
            other => Err(not_a_number("asFloat", &other)),
        }
    })?;
    context.add_function("isNil", |v: Value| Value::Bool(matches!(v, Value::Null)))?;
    context.add_function("default", |v: Value, fallback: Value| {
        let missing = match &v {
            Value::Null => true,
            Value::List(l) => l.is_empty(),
            Value::Float(f) => f.is_nan(),
            _ => false,
        };
        if missing { fallback } else { v }
    })?;
    Ok(())
}

/// Replaces `and`, `or` and `not` outside string literals with `&&`, `||` and `!`, so Argo's
/// `expr` spellings parse as CEL. A word after `.` is a field name and stays.
fn replace_word_operators(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    let mut previous_significant: Option<char> = None;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' {
            // Raw strings (r"…") have no escapes: the prefix letter was just copied.
            let raw = matches!(previous_significant, Some('r' | 'R'))
                && i > 0
                && matches!(chars[i - 1], 'r' | 'R');
            let end = string_literal_end(&chars, i, raw);
            out.extend(&chars[i..end]);
            previous_significant = Some(c);
            i = end;
        } else if c.is_ascii_digit() {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric()
                    || chars[i] == '.'
                    || (matches!(chars[i], '+' | '-') && matches!(chars[i - 1], 'e' | 'E')))
            {
                i += 1;
            }
            out.extend(&chars[start..i]);
            previous_significant = chars.get(i - 1).copied();
        } else if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let is_field = previous_significant == Some('.');
            match word.as_str() {
                "and" if !is_field => out.push_str("&&"),
                "or" if !is_field => out.push_str("||"),
                "not" if !is_field => out.push('!'),
                "nil" if !is_field => out.push_str("null"),
                _ => out.push_str(&word),
            }
            previous_significant = chars.get(i - 1).copied();
        } else {
            out.push(c);
            if !c.is_whitespace() {
                previous_significant = Some(c);
            }
            i += 1;
        }
    }
    out
}

/// The index just past the string literal opening at `start` (single, double or triple quoted).
fn string_literal_end(chars: &[char], start: usize, raw: bool) -> usize {
    let quote = chars[start];
    let triple = chars.get(start + 1) == Some(&quote) && chars.get(start + 2) == Some(&quote);
    let mut i = start + if triple { 3 } else { 1 };
    while i < chars.len() {
        if !raw && chars[i] == '\\' {
            i += 2;
            continue;
        }
        if chars[i] == quote {
            if !triple {
                return i + 1;
            }
            if chars.get(i + 1) == Some(&quote) && chars.get(i + 2) == Some(&quote) {
                return i + 3;
            }
        }
        i += 1;
    }
    chars.len()
}

/// What is statically known of an expression's type, enough to spot int/double arithmetic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Int,
    Double,
    /// Most likely a double: `result`, its elements, values derived from them.
    Numeric,
    /// A list literal of ints, so macro variables over it are ints.
    IntList,
    /// Booleans, strings, macro accumulators: never widened against.
    Other,
}

/// Rewrites integer literals that meet a double in arithmetic into double literals, using the
/// source offsets the parser recorded. A literal whose recorded text doesn't spell its value
/// (macro-generated ones) is left alone.
fn widen_int_literals(source: &str, program: &Program) -> String {
    let mut to_widen = Vec::new();
    let mut scope = Vec::new();
    infer(program.expression(), &mut scope, &mut to_widen);
    if to_widen.is_empty() {
        return source.to_owned();
    }
    // Offsets count characters; edits need byte positions.
    let byte_at: Vec<usize> = source
        .char_indices()
        .map(|(b, _)| b)
        .chain(std::iter::once(source.len()))
        .collect();
    let mut edits: Vec<(usize, usize, String)> = to_widen
        .into_iter()
        .filter_map(|(id, value)| {
            let (start, stop) = program.source_info().offset_for(id)?;
            let start = *byte_at.get(start as usize)?;
            let end = *byte_at.get(stop as usize + 1)?;
            let text = source.get(start..end)?;
            spells(text, value.unsigned_abs())
                .then(|| (start, end, format!("{}.0", value.unsigned_abs())))
        })
        .collect();
    edits.sort_by_key(|e| std::cmp::Reverse(e.0));
    edits.dedup_by_key(|e| e.0);
    let mut out = source.to_owned();
    for (start, end, replacement) in edits {
        out.replace_range(start..end, &replacement);
    }
    out
}

/// Whether `text` is an integer literal of `magnitude` (a folded `-2` records only the `2`).
fn spells(text: &str, magnitude: u64) -> bool {
    let parsed = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None if text.bytes().all(|b| b.is_ascii_digit()) => text.parse::<u64>().ok(),
        None => None,
    };
    parsed == Some(magnitude)
}

fn infer(expr: &IdedExpr, scope: &mut Vec<(String, Kind)>, to_widen: &mut Vec<(u64, i64)>) -> Kind {
    match &expr.expr {
        Expr::Literal(LiteralValue::Int(_)) => Kind::Int,
        Expr::Literal(LiteralValue::Double(_)) => Kind::Double,
        Expr::Literal(_) => Kind::Other,
        Expr::Ident(name) => scope
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, k)| *k)
            .unwrap_or(if name.starts_with('@') {
                Kind::Other
            } else {
                Kind::Numeric
            }),
        Expr::Select(select) => {
            infer(&select.operand, scope, to_widen);
            Kind::Numeric
        }
        Expr::List(list) => {
            let kinds: Vec<Kind> = list
                .elements
                .iter()
                .map(|e| infer(e, scope, to_widen))
                .collect();
            if !kinds.is_empty() && kinds.iter().all(|k| *k == Kind::Int) {
                Kind::IntList
            } else {
                Kind::Other
            }
        }
        Expr::Comprehension(c) => {
            let range = infer(&c.iter_range, scope, to_widen);
            let element = if range == Kind::IntList {
                Kind::Int
            } else {
                Kind::Numeric
            };
            infer(&c.accu_init, scope, to_widen);
            scope.push((c.iter_var.clone(), element));
            if let Some(second) = &c.iter_var2 {
                scope.push((second.clone(), Kind::Numeric));
            }
            scope.push((c.accu_var.clone(), Kind::Other));
            for part in [&c.loop_cond, &c.loop_step, &c.result] {
                infer(part, scope, to_widen);
            }
            scope.pop();
            if c.iter_var2.is_some() {
                scope.pop();
            }
            scope.pop();
            Kind::Numeric
        }
        Expr::Call(call) => {
            if let Some(target) = &call.target {
                infer(target, scope, to_widen);
            }
            let kinds: Vec<Kind> = call
                .args
                .iter()
                .map(|a| infer(a, scope, to_widen))
                .collect();
            match (call.func_name.as_str(), kinds.as_slice()) {
                ("_+_" | "_-_" | "_*_" | "_/_" | "_%_", [left, right]) => {
                    arithmetic(&call.args[0], *left, &call.args[1], *right, to_widen)
                }
                ("_?_:_", [_, yes, no]) => {
                    arithmetic(&call.args[1], *yes, &call.args[2], *no, to_widen)
                }
                ("-_", [operand]) => *operand,
                ("size" | "len" | "asInt" | "int", _) => Kind::Int,
                ("double" | "asFloat", _) => Kind::Double,
                (
                    "_==_" | "_!=_" | "_<_" | "_<=_" | "_>_" | "_>=_" | "_&&_" | "_||_" | "!_"
                    | "@in" | "isNaN" | "isInf" | "isNil",
                    _,
                ) => Kind::Other,
                _ => Kind::Numeric,
            }
        }
        Expr::Map(_) | Expr::Struct(_) | Expr::Unspecified => Kind::Other,
    }
}

/// The kind of `left op right`, widening an int literal operand that meets a double.
fn arithmetic(
    left_expr: &IdedExpr,
    left: Kind,
    right_expr: &IdedExpr,
    right: Kind,
    to_widen: &mut Vec<(u64, i64)>,
) -> Kind {
    let doubleish = |k: Kind| matches!(k, Kind::Double | Kind::Numeric);
    match (left, right) {
        (Kind::Int, Kind::Int) => Kind::Int,
        (Kind::Int, r) if doubleish(r) => {
            widen(left_expr, to_widen);
            Kind::Numeric
        }
        (l, Kind::Int) if doubleish(l) => {
            widen(right_expr, to_widen);
            Kind::Numeric
        }
        (Kind::Double, Kind::Double) => Kind::Double,
        _ => Kind::Numeric,
    }
}

/// Marks the int literal in `expr`, looking through unary minus and nested int arithmetic
/// (`result[0] * (2 + 3)` widens both).
fn widen(expr: &IdedExpr, to_widen: &mut Vec<(u64, i64)>) {
    match &expr.expr {
        Expr::Literal(LiteralValue::Int(i)) => to_widen.push((expr.id, *i.inner())),
        Expr::Call(call)
            if matches!(
                call.func_name.as_str(),
                "-_" | "_+_" | "_-_" | "_*_" | "_/_" | "_%_" | "_?_:_"
            ) =>
        {
            let operands = if call.func_name == "_?_:_" {
                &call.args[1..]
            } else {
                &call.args[..]
            };
            for operand in operands {
                widen(operand, to_widen);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vector(values: &[f64]) -> MetricValue {
        MetricValue::Vector(values.to_vec())
    }

    fn eval(expression: &str, value: &MetricValue) -> Result<bool, ConditionError> {
        Condition::compile(expression)
            .unwrap_or_else(|e| panic!("{expression}: {e}"))
            .evaluate(value)
    }

    #[test]
    fn everyday_conditions() {
        let cases: &[(&str, MetricValue, bool)] = &[
            ("result[0] >= 0.95", vector(&[0.98]), true),
            ("result[0] >= 0.95", vector(&[0.90]), false),
            ("result[0] <= 0.05 && result[0] >= 0", vector(&[0.01]), true),
            (
                "result[0] <= 0.05 && result[0] >= 0",
                vector(&[-0.01]),
                false,
            ),
            ("len(result) == 0 || result[0] < 0.2", vector(&[]), true),
            ("len(result) == 0 || result[0] < 0.2", vector(&[0.1]), true),
            ("len(result) == 0 || result[0] < 0.2", vector(&[0.3]), false),
            ("size(result) == 2", vector(&[1.0, 2.0]), true),
            ("result.size() == 1", vector(&[1.0]), true),
            ("isNaN(result[0])", vector(&[f64::NAN]), true),
            ("isNaN(result[0])", vector(&[0.5]), false),
            ("isInf(result)", MetricValue::Scalar(f64::INFINITY), true),
            ("isInf(result)", MetricValue::Scalar(1.0), false),
            ("asInt(result[0]) == 3", vector(&[3.7]), true),
            ("asInt(\"42\") == 42", vector(&[]), true),
            ("asFloat(result[0]) == 3.5", vector(&[3.5]), true),
            ("asFloat(2) == 2.0", vector(&[]), true),
            ("default(result, [0.5])[0] == 0.5", vector(&[]), true),
            ("default(result, [0.5])[0] == 0.9", vector(&[0.9]), true),
            (
                "default(result, 1.0) == 1.0",
                MetricValue::Scalar(f64::NAN),
                true,
            ),
            ("isNil(result)", vector(&[]), false),
            ("result[0] > 0.5 ? true : false", vector(&[0.6]), true),
            ("result.all(x, x < 0.1)", vector(&[0.01, 0.02]), true),
            ("result.exists(x, x > 0.1)", vector(&[0.01, 0.2]), true),
            (
                "result.filter(x, x > 0.1).size() == 1",
                vector(&[0.01, 0.2]),
                true,
            ),
            ("result > 0.5", MetricValue::Scalar(0.7), true),
            (
                "result[0] >= 0.95 || isNaN(result[0])",
                vector(&[f64::NAN]),
                true,
            ),
        ];
        for (expression, value, expected) in cases {
            assert_eq!(
                eval(expression, value),
                Ok(*expected),
                "{expression} on {value}"
            );
        }
    }

    fn web(v: serde_json::Value) -> MetricValue {
        MetricValue::Json(v)
    }

    /// F (issue 26): a web value keeps its JSON type, so Argo's documented web conditions hold.
    #[test]
    fn web_values_keep_their_json_type() {
        use serde_json::json;
        let cases: &[(&str, MetricValue, bool)] = &[
            ("result == true", web(json!(true)), true),
            ("result == true", web(json!(false)), false),
            ("result", web(json!(true)), true),
            ("!result", web(json!(false)), true),
            ("result == false", web(json!(true)), false),
            ("result == 1", web(json!(true)), false),
            (
                "result.major == '1'",
                web(json!({"major": "1", "minor": "30"})),
                true,
            ),
            ("result.major == '1'", web(json!({"major": "2"})), false),
            ("result['major'] == \"1\"", web(json!({"major": "1"})), true),
            ("result == 'ok'", web(json!("ok")), true),
            ("result.startsWith('ok')", web(json!("ok, fine")), true),
            (
                "result.ok && result.rate >= 0.95",
                web(json!({"ok": true, "rate": 0.97})),
                true,
            ),
            ("result.rate * 100 >= 95", web(json!({"rate": 0.97})), true),
            ("result == 1", web(json!(1)), true),
            ("result * 100 > 95", web(json!(1)), true),
            ("result[0] >= 0.95", web(json!([0.97, 0.5])), true),
            (
                "result.all(x, x.healthy)",
                web(json!([{"healthy": true}, {"healthy": true}])),
                true,
            ),
            (
                "result.items.size() == 2",
                web(json!({"items": [1, 2]})),
                true,
            ),
            ("isNil(result)", web(json!(null)), true),
            ("isNil(result.x)", web(json!({"x": null})), true),
            ("result.x == nil", web(json!({"x": null})), true),
            ("result.nil == 1", web(json!({"nil": 1})), true),
            ("default(result, 0.5) == 0.5", web(json!(null)), true),
            ("asInt(result) == 42", web(json!("42")), true),
            ("asFloat(result.v) == 0.5", web(json!({"v": "0.5"})), true),
            ("len(result) == 3", web(json!("abc")), true),
        ];
        for (expression, value, expected) in cases {
            assert_eq!(
                eval(expression, value),
                Ok(*expected),
                "{expression} on {value:?}"
            );
        }
    }

    #[test]
    fn comparisons_with_non_numeric_literals_are_found() {
        let cases: &[(&str, &[&str])] = &[
            ("result == true", &["a boolean"]),
            ("result[0] == '1'", &["a string"]),
            ("'1' != result.major", &["a string"]),
            ("result.all(x, x == null)", &["null"]),
            (
                "result[0] > 0.5 && result[1] == false && result[2] == 'x'",
                &["a boolean", "a string"],
            ),
            ("result[0] >= 0.95", &[]),
            ("asInt(result[0]) == 1", &[]),
            ("[1, 2].all(x, x == 'a') && result[0] > 1", &[]),
            ("isNil(result) || result == 1", &[]),
        ];
        for (expression, expected) in cases {
            let c = Condition::compile(expression).expect(expression);
            assert_eq!(c.non_numeric_comparisons(), *expected, "{expression}");
        }
    }

    /// No message quotes a string, list or map from the value: they may be a web response.
    #[test]
    fn errors_on_web_values_name_types_only() {
        use serde_json::json;
        let secret = "hunter2";
        let cases: &[(&str, MetricValue)] = &[
            ("result > 0.5", web(json!(secret))),
            ("result + 1 > 2", web(json!(secret))),
            ("result[0] > 1", web(json!({"k": secret}))),
            ("result.k > 1", web(json!({"k": secret}))),
            ("result.missing == 1", web(json!({secret: 1}))),
            ("result[result.k] == 1", web(json!({"k": secret}))),
            ("result", web(json!(secret))),
            ("result", web(json!([secret]))),
            ("result", web(json!({"k": secret}))),
            ("asInt(result) == 1", web(json!(secret))),
            ("asFloat(result) == 1.0", web(json!(secret))),
            ("isNaN(result)", web(json!(secret))),
            ("result / 0 == 1", web(json!([secret]))),
            ("result[5] == 1", web(json!([secret]))),
            ("-result == 1", web(json!(secret))),
            ("result.size() > 0 && result[0] > 1", web(json!([secret]))),
        ];
        for (expression, value) in cases {
            let err = eval(expression, value).expect_err(expression).to_string();
            assert!(!err.contains(secret), "{expression}: {err}");
        }
        // Numbers a condition parses out of a string, a string's length, a key read from the
        // data that the expression happens to contain (found by review).
        let pin = "482913";
        let data = web(json!({"pin": pin, "total": "0", "name": "hunter2", "user": "resu"}));
        for expression in [
            "asInt(result.pin)",
            "int(result.pin)",
            "asFloat(result.pin) > 1.0 ? 1 : 0",
            "asInt(result.pin) / asInt(result.total) > 1",
            "asInt(result.pin) % 0 == 1",
            "[1][asInt(result.pin)] == 1",
            "asInt(result.pin) * 9223372036854775807 > 0",
            "asInt(result.pin) > 'x'",
            "asInt(asFloat(result.pin) * 1e30) == 1",
            "int(asFloat(result.pin) * 1e30) == 1",
            "result.name.size()",
            "result[result.user] > 0",
        ] {
            let err = eval(expression, &data).expect_err(expression).to_string();
            for leak in [pin, "4.82913", "int 7", "key: resu", "hunter2"] {
                assert!(!err.contains(leak), "{expression}: {err}");
            }
        }
        // The key the expression spells is named; a key taken from the data is not.
        let err = eval("result.missing == 1", &web(json!({secret: 1})))
            .expect_err("missing key")
            .to_string();
        assert!(err.contains("no such key: missing"), "{err}");
    }

    #[test]
    fn mixed_int_and_double() {
        let cases: &[(&str, MetricValue, bool)] = &[
            ("result[0] >= 1", vector(&[1.0]), true),
            ("result[0] >= 1", vector(&[0.99]), false),
            ("result == 0", MetricValue::Scalar(0.0), true),
            ("result == 0", MetricValue::Scalar(0.5), false),
            ("result != 0", MetricValue::Scalar(0.5), true),
            ("result[0] * 100 >= 95", vector(&[0.96]), true),
            ("result[0] * 100 >= 95", vector(&[0.94]), false),
            ("100 * result[0] > 95", vector(&[0.96]), true),
            ("1 - result[0] < 0.05", vector(&[0.96]), true),
            ("result[0] / 2 == 0.25", vector(&[0.5]), true),
            ("result[0] + -1 == 0", vector(&[1.0]), true),
            ("result[0] * (2 + 3) == 5", vector(&[1.0]), true),
            ("result[0] * 0x10 == 16", vector(&[1.0]), true),
            ("result.all(x, x * 100 < 5)", vector(&[0.01, 0.02]), true),
            ("result.map(x, x * 2)[1] == 4", vector(&[1.0, 2.0]), true),
            (
                "(result[0] > 0.5 ? 1 : result[0]) == 1",
                vector(&[0.9]),
                true,
            ),
            ("asInt(result[0] * 100) == 98", vector(&[0.985]), true),
            // Int-only arithmetic must stay int: a double index or size would break these.
            (
                "result[size(result) - 1] == 3",
                vector(&[1.0, 2.0, 3.0]),
                true,
            ),
            ("size(result) - 1 == 2", vector(&[1.0, 2.0, 3.0]), true),
            ("[1, 2].map(x, x * 2)[1] == 4", vector(&[]), true),
            ("result[1 + 0] == 2", vector(&[1.0, 2.0]), true),
            // Digits inside strings are not literals.
            ("asInt(\"1\" + \"5\") * 2 == 30", vector(&[]), true),
        ];
        for (expression, value, expected) in cases {
            assert_eq!(
                eval(expression, value),
                Ok(*expected),
                "{expression} on {value}"
            );
        }
    }

    #[test]
    fn word_operators_from_argo_templates() {
        let cases: &[(&str, MetricValue, bool)] = &[
            ("len(result) == 0 or result[0] < 0.2", vector(&[]), true),
            ("result[0] > 0.1 and result[0] < 0.2", vector(&[0.15]), true),
            ("not (result[0] > 0.1)", vector(&[0.15]), false),
            ("\"a and b\" == \"a and b\"", vector(&[]), true),
        ];
        for (expression, value, expected) in cases {
            assert_eq!(
                eval(expression, value),
                Ok(*expected),
                "{expression} on {value}"
            );
        }
        let rewrites = [
            (r#"'x or y' or 1e-5"#, r#"'x or y' || 1e-5"#),
            (r#""a \" and b" or x"#, r#""a \" and b" || x"#),
            (r#"r'\' and x"#, r#"r'\' && x"#),
            (r#"'''it's and''' or x"#, r#"'''it's and''' || x"#),
            ("x.and or x.not", "x.and || x.not"),
            ("android or notable", "android || notable"),
        ];
        for (source, expected) in rewrites {
            assert_eq!(replace_word_operators(source), expected, "{source}");
        }
    }

    #[test]
    fn evaluation_errors() {
        let empty = vector(&[]);
        match eval("result[0] >= 0.95", &empty) {
            Err(ConditionError::Evaluate {
                expression,
                message,
            }) => {
                assert_eq!(expression, "result[0] >= 0.95");
                assert!(message.contains("out of bounds"), "{message}");
            }
            other => panic!("expected an evaluation error, got {other:?}"),
        }
        assert!(matches!(
            eval("result[0] >= 0.95", &vector(&[f64::NAN])),
            Err(ConditionError::Evaluate { .. })
        ));
        assert!(matches!(
            eval("asInt(result[0]) == 1", &vector(&[f64::NAN])),
            Err(ConditionError::Evaluate { .. })
        ));
        assert_eq!(
            eval("result[0]", &vector(&[0.5])),
            Err(ConditionError::NotBoolean {
                expression: "result[0]".into(),
                got: "double 0.5".into()
            })
        );
        assert_eq!(
            eval("size(result)", &vector(&[0.5])),
            Err(ConditionError::NotBoolean {
                expression: "size(result)".into(),
                got: "int 1".into()
            })
        );
    }

    #[test]
    fn compile_errors_carry_expression_and_text() {
        for expression in [
            "result[0] >=",
            "result[0] > 0.5 &&& true",
            "resutl[0] > 0.5",
            "nope(result)",
        ] {
            match Condition::compile(expression) {
                Err(ConditionError::Compile {
                    expression: e,
                    message,
                }) => {
                    assert_eq!(e, expression);
                    assert!(!message.is_empty());
                    let shown = ConditionError::Compile {
                        expression: e,
                        message,
                    }
                    .to_string();
                    assert!(shown.contains(expression), "{shown}");
                }
                other => panic!("{expression}: expected a compile error, got {other:?}"),
            }
        }
        // A name only valid for one shape of `result` is not a compile error.
        assert!(Condition::compile("result[0] > 0.5").is_ok());
        assert!(Condition::compile("result > 0.5").is_ok());
    }

    #[test]
    fn guards_are_detected_by_function() {
        let guards = |e: &str| {
            let c = Condition::compile(e).unwrap_or_else(|err| panic!("{err}"));
            (c.guards(MissingData::Empty), c.guards(MissingData::NaN))
        };
        assert_eq!(guards("result[0] >= 0.95"), (false, false));
        assert_eq!(
            guards("len(result) == 0 || result[0] >= 0.95"),
            (true, false)
        );
        assert_eq!(
            guards("size(result) == 0 || result[0] >= 0.95"),
            (true, false)
        );
        assert_eq!(
            guards("isNaN(result[0]) || result[0] >= 0.95"),
            (false, true)
        );
        assert_eq!(guards("default(result, [1.0])[0] >= 0.95"), (true, true));
        assert_eq!(guards("result.all(x, x >= 0.95)"), (false, false));
        let null = |e: &str| {
            Condition::compile(e)
                .unwrap_or_else(|err| panic!("{err}"))
                .guards(MissingData::Null)
        };
        assert!(null("isNil(result) || result.ok"));
        assert!(null("default(result, true)"));
        assert!(null("result == nil || result.ok"));
        assert!(null("result != null && result.ok"));
        assert!(!null("result.ok == true"));
        assert!(!null("result == false"));
    }
}
