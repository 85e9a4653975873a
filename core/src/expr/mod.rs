//! CEL rule expressions and `${…}` header templates.
//!
//! Expressions are compiled once at load. The `cel` crate has no type checker, so the loader
//! does two things a checker would: it walks the syntax tree and refuses any `conn.…`/`req.…`
//! path that is not a known variable, and it evaluates the expression against representative
//! facts (with and without a client certificate, with a request when the phase has one) to catch
//! type errors such as `conn.tls.version > 2` and results that are not booleans.
//!
//! At run time an expression that fails to evaluate counts as a match of a deny and as a
//! failure of everything else: the policy fails closed (see [`crate::policy`]), and a
//! [`RuntimeError`] says why.

use std::sync::Arc;

use cel::{ExecutionError, Value};

mod compile;
mod error;
mod functions;
mod template;
mod values;
mod variables;

use compile::{compile_checked, Program};
pub use error::{CompileError, RuntimeError};
pub use template::{Template, VarValue};
use variables::samples;
pub use variables::Variables;

/// Where in a connection's life an expression runs; decides which variables exist.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    TcpConnect,
    HttpRequest,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Self::TcpConnect => "on_tcp_connect",
            Self::HttpRequest => "on_http_request",
        }
    }
}

/// A compiled boolean rule expression.
#[derive(Clone)]
pub struct Expression {
    source: Arc<str>,
    program: Arc<Program>,
    reads: Reads,
}

/// What an expression reads that a host must provide: `req.headers` (collected only then) and
/// which `conn` variables (a host that cannot know one refuses the policy at load).
#[derive(Clone, Debug, Default)]
struct Reads {
    headers: bool,
    /// Dotted paths under `conn` as written (`conn.tls.sni`); `conn` alone when the whole
    /// object, or an index into it, is used.
    conn: Vec<Arc<str>>,
    /// The `vars.NAME` names read (`set-vars`); `*` when `vars` is used whole or by index.
    vars: Vec<Arc<str>>,
}

impl Reads {
    fn add(&mut self, other: Reads) {
        self.headers |= other.headers;
        for path in other.conn {
            if !self.conn.contains(&path) {
                self.conn.push(path);
            }
        }
        for name in other.vars {
            if !self.vars.contains(&name) {
                self.vars.push(name);
            }
        }
    }

    /// The first `vars.NAME` read that `defined` (names an earlier `set-vars` of the phase
    /// set) does not hold.
    fn undefined_var(&self, defined: &[String]) -> Option<&str> {
        self.vars
            .iter()
            .find(|name| {
                if name.as_ref() == "*" {
                    defined.is_empty()
                } else {
                    !defined.iter().any(|d| d == name.as_ref())
                }
            })
            .map(AsRef::as_ref)
    }

    /// Whether `variable` is read, itself, through a field of it, or through an object that
    /// holds it (`conn.tls` passed whole holds `conn.tls.cipher_suite`).
    fn variable(&self, variable: &str) -> bool {
        let within = |inner: &str, outer: &str| {
            inner == outer
                || inner
                    .strip_prefix(outer)
                    .is_some_and(|rest| rest.starts_with('.'))
        };
        self.conn
            .iter()
            .any(|path| within(path, variable) || within(variable, path))
    }
}

impl std::fmt::Debug for Expression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Expression").field(&self.source).finish()
    }
}

impl Expression {
    /// Compiles and checks a boolean expression for `phase`.
    pub fn compile(source: &str, phase: Phase) -> Result<Self, CompileError> {
        let (program, reads) = compile_checked(source, phase)?;
        for sample in samples(phase) {
            match sample.eval(&program) {
                Ok(Value::Bool(_)) => {}
                Ok(other) => {
                    return Err(CompileError::NotBoolean {
                        found: type_name(&other),
                    })
                }
                Err(e) if is_type_error(&e) => {
                    return Err(CompileError::Type {
                        reason: e.to_string(),
                    })
                }
                Err(_) => {}
            }
        }
        Ok(Self {
            source: source.into(),
            program: Arc::new(program),
            reads,
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the expression reads `req.headers` (hosts collect headers only then).
    pub fn reads_request_headers(&self) -> bool {
        self.reads.headers
    }

    /// Whether the expression reads the `conn` variable `variable` (a dotted path).
    pub fn reads_variable(&self, variable: &str) -> bool {
        self.reads.variable(variable)
    }

    /// The first `vars.NAME` it reads that is not among `defined`.
    pub fn undefined_var(&self, defined: &[String]) -> Option<&str> {
        self.reads.undefined_var(defined)
    }

    /// Evaluates against a prepared context. `Err` says which expression failed and why, for
    /// logs.
    pub fn matches(&self, vars: &Variables) -> Result<bool, RuntimeError> {
        match vars.eval(&self.program) {
            Ok(Value::Bool(b)) => Ok(b),
            Ok(other) => Err(RuntimeError::NotBoolean {
                expression: Arc::clone(&self.source),
                found: type_name(&other),
            }),
            Err(e) => Err(RuntimeError::cel(&self.source, &e, false)),
        }
    }
}

fn is_type_error(e: &ExecutionError) -> bool {
    matches!(
        e,
        ExecutionError::NoSuchOverload(_)
            | ExecutionError::UnsupportedBinaryOperator(..)
            | ExecutionError::ValuesNotComparable(..)
            | ExecutionError::UnsupportedIndex(..)
            | ExecutionError::UnsupportedKeyType(_)
            | ExecutionError::UndeclaredReference(_)
            | ExecutionError::InvalidArgumentCount { .. }
    )
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::List(_) => "a list",
        Value::Map(_) => "a map",
        Value::Int(_) | Value::UInt(_) => "an integer",
        Value::Float(_) => "a number",
        Value::String(_) => "a string",
        Value::Bytes(_) => "bytes",
        Value::Bool(_) => "a boolean",
        Value::Null => "null",
        Value::Timestamp(_) => "a timestamp",
        Value::Duration(_) => "a duration",
        _ => "a value",
    }
}

#[cfg(test)]
mod tests;
