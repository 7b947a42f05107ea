//! `successCondition` / `failureCondition` expressions, in CEL.
//!
//! Argo Rollouts evaluates conditions in the `expr` language. Aviary uses CEL, whose everyday
//! forms are the same (`result[0] >= 0.95`, `&&`, `||`, `a ? b : c`), and closes the gaps that
//! would otherwise make Argo templates fail after porting:
//!
//! - **Functions** `len(x)` (an alias of `size`), `isNaN(x)`, `isInf(x)`, `asInt(x)`,
//!   `asFloat(x)`, `isNil(x)` and `default(x, d)` (`d` when `x` is null, an empty list or NaN).
//! - **Word operators** `and`, `or`, `not` are read as `&&`, `||`, `!`.
//! - **Mixed int/double arithmetic.** CEL compares ints with doubles (`result[0] >= 1`,
//!   `result == 0`) but refuses to add or multiply them (`result[0] * 100` is a type error).
//!   Integer *literals* used in arithmetic next to a double-valued operand are therefore
//!   rewritten to double literals (`100` → `100.0`) before compiling. Integer-valued
//!   expressions other than literals (`size(result) * 0.5`) are left alone: such an expression
//!   needs an explicit `double(...)`.
//!
//! `result` is bound to the provider's value: a `list(double)` for vectors and matrices, a
//! `double` for scalars. NaN compared with `<`, `>=`, … is an evaluation *error* in this CEL
//! implementation (Argo's `expr` answers false); either way such a comparison never passes.

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
        let condition = Condition {
            expression: expression.to_owned(),
            program,
            guards_empty,
            guards_nan,
        };
        condition.reject_undeclared_references()?;
        Ok(condition)
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
        }
    }

    /// Evaluates the condition with `result` bound to `value`. Anything but a boolean is an error.
    pub fn evaluate(&self, value: &MetricValue) -> Result<bool, ConditionError> {
        match self.execute(value) {
            Ok(Value::Bool(b)) => Ok(b),
            Ok(other) => Err(ConditionError::NotBoolean {
                expression: self.expression.clone(),
                got: describe(&other),
            }),
            Err(e) => Err(ConditionError::Evaluate {
                expression: self.expression.clone(),
                message: e.to_string(),
            }),
        }
    }

    fn execute(&self, value: &MetricValue) -> Result<Value, ExecutionError> {
        let mut context = Context::with_env(Arc::clone(&ENV));
        context.add_variable_from_value(RESULT, to_cel(value));
        add_functions(&mut context).map_err(|e| ExecutionError::InternalError(e.to_string()))?;
        self.program.execute(&context)
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

fn to_cel(value: &MetricValue) -> Value {
    match value {
        MetricValue::Scalar(v) => Value::Float(*v),
        MetricValue::Vector(values) => {
            Value::List(Arc::new(values.iter().map(|v| Value::Float(*v)).collect()))
        }
    }
}

fn describe(value: &Value) -> String {
    match value {
        Value::Int(i) => format!("int {i}"),
        Value::UInt(u) => format!("uint {u}"),
        Value::Float(f) => format!("double {f}"),
        Value::String(s) => format!("string {s:?}"),
        Value::Null => "null".to_owned(),
        Value::List(l) => format!("a list of {}", l.len()),
        other => format!("{other:?}"),
    }
}

fn not_a_number(function: &str, value: &Value) -> ExecutionError {
    ExecutionError::function_error(
        function,
        format!("expects a number, got {}", describe(value)),
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
                format!("expects a list, string or map, got {}", describe(other)),
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
            Value::Float(f) => Err(ExecutionError::function_error(
                "asInt",
                format!("{f} has no integer value"),
            )),
            Value::String(s) => s
                .trim()
                .parse::<i64>()
                .map(Value::Int)
                .map_err(|e| ExecutionError::function_error("asInt", format!("{s:?}: {e}"))),
            other => Err(not_a_number("asInt", &other)),
        }
    })?;
    context.add_function("asFloat", |v: Value| -> Result<Value, ExecutionError> {
        match v {
            Value::Float(f) => Ok(Value::Float(f)),
            Value::Int(i) => Ok(Value::Float(i as f64)),
            Value::UInt(u) => Ok(Value::Float(u as f64)),
            Value::String(s) => s
                .trim()
                .parse::<f64>()
                .map(Value::Float)
                .map_err(|e| ExecutionError::function_error("asFloat", format!("{s:?}: {e}"))),
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
    }
}
