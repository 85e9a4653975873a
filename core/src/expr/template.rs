//! `${…}` templates and `set-vars` values: text with interpolated expressions, rendered into
//! header values and variables.

use std::collections::HashMap;
use std::sync::Arc;

use cel::objects::{Key, Map};
use cel::Value;

use super::compile::{compile_checked, Program};
use super::variables::{samples, Variables};
use super::{is_type_error, CompileError, Phase, Reads, RuntimeError};

/// One `set-vars` value, as ngrok has them: a constant of any type (string, number, boolean,
/// null, list, map), a string with `${…}` parts (a string), or exactly `${expression}` (the
/// expression's value, of its own type).
#[derive(Clone)]
pub struct VarValue {
    kind: VarKind,
    /// The value as written, for the filter's copy of the policy.
    raw: serde_json::Value,
}

#[derive(Clone)]
enum VarKind {
    Constant(Value),
    Template(Template),
    Expr(Arc<str>, Arc<Program>, Reads),
}

impl std::fmt::Debug for VarValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("VarValue").field(&self.raw).finish()
    }
}

impl VarValue {
    pub fn compile(raw: &serde_json::Value, phase: Phase) -> Result<Self, CompileError> {
        let kind = match raw {
            serde_json::Value::String(text) => {
                let trimmed = text.trim();
                let whole = trimmed
                    .strip_prefix("${")
                    .and_then(|rest| rest.strip_suffix('}'))
                    .filter(|inner| !inner.contains("${") && !inner.contains('}'));
                match whole {
                    Some(source) => {
                        let source = source.trim();
                        let (program, reads) = compile_checked(source, phase)?;
                        for sample in samples(phase) {
                            if let Err(e) = sample.eval(&program) {
                                if is_type_error(&e) {
                                    return Err(CompileError::TypeInTemplate {
                                        expression: source.to_owned(),
                                        reason: e.to_string(),
                                    });
                                }
                            }
                        }
                        VarKind::Expr(source.into(), Arc::new(program), reads)
                    }
                    None if text.contains("${") => {
                        VarKind::Template(Template::compile(text, phase)?)
                    }
                    None => VarKind::Constant(Value::from(text.as_str())),
                }
            }
            other => VarKind::Constant(json_value(other)),
        };
        Ok(Self {
            kind,
            raw: raw.clone(),
        })
    }

    /// The value as written.
    pub fn raw(&self) -> &serde_json::Value {
        &self.raw
    }

    fn reads(&self) -> Option<&Reads> {
        match &self.kind {
            VarKind::Constant(_) => None,
            VarKind::Template(t) => Some(&t.reads),
            VarKind::Expr(_, _, reads) => Some(reads),
        }
    }

    /// Whether the value reads `req.headers`.
    pub fn reads_request_headers(&self) -> bool {
        self.reads().is_some_and(|r| r.headers)
    }

    /// Whether the value reads the `conn` variable `variable` (a dotted path).
    pub fn reads_variable(&self, variable: &str) -> bool {
        self.reads().is_some_and(|r| r.variable(variable))
    }

    /// The first `vars.NAME` the value reads that is not among `defined`.
    pub fn undefined_var(&self, defined: &[String]) -> Option<&str> {
        self.reads().and_then(|r| r.undefined_var(defined))
    }

    pub(super) fn value(&self, vars: &Variables) -> Result<Value, RuntimeError> {
        match &self.kind {
            VarKind::Constant(value) => Ok(value.clone()),
            VarKind::Template(t) => t.render(vars).map(|s| Value::from(s.as_str())),
            VarKind::Expr(source, program, _) => vars
                .eval(program)
                .map_err(|e| RuntimeError::cel(source, &e, true)),
        }
    }
}

/// A YAML/JSON constant as a CEL value (integers stay integers).
fn json_value(raw: &serde_json::Value) -> Value {
    match raw {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => Value::Int(i),
            (None, Some(u), _) => Value::UInt(u),
            (None, None, Some(f)) => Value::Float(f),
            (None, None, None) => Value::Null,
        },
        serde_json::Value::String(s) => Value::from(s.as_str()),
        serde_json::Value::Array(items) => {
            Value::List(Arc::new(items.iter().map(json_value).collect()))
        }
        serde_json::Value::Object(entries) => {
            let map: HashMap<Key, Value> = entries
                .iter()
                .map(|(k, v)| (Key::String(Arc::new(k.clone())), json_value(v)))
                .collect();
            Value::Map(Map { map: Arc::new(map) })
        }
    }
}

/// A header value with `${expression}` parts, as in ngrok's `add-headers`.
#[derive(Clone, Debug)]
pub struct Template {
    parts: Vec<Part>,
    reads: Reads,
}

#[derive(Clone)]
enum Part {
    Text(String),
    Expr(Arc<str>, Arc<Program>),
}

impl std::fmt::Debug for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Text(t) => f.debug_tuple("Text").field(t).finish(),
            Self::Expr(s, _) => f.debug_tuple("Expr").field(s).finish(),
        }
    }
}

impl Template {
    pub fn compile(text: &str, phase: Phase) -> Result<Self, CompileError> {
        let mut parts = Vec::new();
        let mut all_reads = Reads::default();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            if start > 0 {
                parts.push(Part::Text(rest[..start].to_owned()));
            }
            let after = &rest[start + 2..];
            let end = after
                .find('}')
                .ok_or_else(|| CompileError::UnclosedInterpolation {
                    text: text.to_owned(),
                })?;
            let source = after[..end].trim();
            if source.is_empty() {
                return Err(CompileError::EmptyInterpolation {
                    text: text.to_owned(),
                });
            }
            let (program, reads) = compile_checked(source, phase)?;
            all_reads.add(reads);
            for sample in samples(phase) {
                if let Err(e) = sample.eval(&program) {
                    if is_type_error(&e) {
                        return Err(CompileError::TypeInTemplate {
                            expression: source.to_owned(),
                            reason: e.to_string(),
                        });
                    }
                }
            }
            parts.push(Part::Expr(source.into(), Arc::new(program)));
            rest = &after[end + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Self {
            parts,
            reads: all_reads,
        })
    }

    /// Whether an interpolation reads `req.headers`.
    pub fn reads_request_headers(&self) -> bool {
        self.reads.headers
    }

    /// Whether an interpolation reads the `conn` variable `variable` (a dotted path).
    pub fn reads_variable(&self, variable: &str) -> bool {
        self.reads.variable(variable)
    }

    /// The first `vars.NAME` an interpolation reads that is not among `defined`.
    pub fn undefined_var(&self, defined: &[String]) -> Option<&str> {
        self.reads.undefined_var(defined)
    }

    /// The template as written (`x=${expr}`), up to whitespace inside `${…}`.
    pub fn source(&self) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Expr(source, _) => {
                    out.push_str("${");
                    out.push_str(source);
                    out.push('}');
                }
            }
        }
        out
    }

    /// Whether the template is plain text (no expressions), so it can be used as is.
    pub fn as_literal(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [] => Some(""),
            [Part::Text(t)] => Some(t),
            _ => None,
        }
    }

    /// The text, each `${…}` replaced by its value; `Err` says which one failed and why.
    pub fn render(&self, vars: &Variables) -> Result<String, RuntimeError> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Expr(source, program) => match vars.eval(program) {
                    Ok(value) => render_value(&value, &mut out),
                    Err(e) => return Err(RuntimeError::cel(source, &e, true)),
                },
            }
        }
        Ok(out)
    }
}

pub(super) fn render_value(value: &Value, out: &mut String) {
    match value {
        Value::String(s) => out.push_str(s),
        Value::Int(i) => out.push_str(&i.to_string()),
        Value::UInt(u) => out.push_str(&u.to_string()),
        Value::Float(f) => out.push_str(&f.to_string()),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Timestamp(t) => out.push_str(&t.to_rfc3339()),
        Value::List(items) => {
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                render_value(item, out);
            }
        }
        Value::Null => {}
        other => out.push_str(&format!("{other:?}")),
    }
}
