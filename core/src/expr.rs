//! CEL rule expressions and `${…}` header templates.
//!
//! Expressions are compiled once at load. The `cel` crate has no type checker, so the loader
//! does two things a checker would: it walks the syntax tree and refuses any `conn.…`/`req.…`
//! path that is not a known variable, and it evaluates the expression against representative
//! facts (with and without a client certificate, with a request when the phase has one) to catch
//! type errors such as `conn.tls.version > 2` and results that are not booleans.
//!
//! At run time an expression that fails to evaluate counts as a match of a deny and as a
//! failure of everything else: the policy fails closed (see [`crate::policy`]).

use std::collections::HashMap;
use std::sync::Arc;

use cel::common::ast::{operators, Expr};
use cel::common::types::{CelBool, CelList, CelString};
use cel::common::value::{CowVal, Val};
use cel::context::VariableResolver;
use cel::objects::{Key, Map};
use cel::{Context, ExecutionError, IdedExpr, Value};

use crate::facts::{ClientCert, ClientCertFacts, DistinguishedName, TlsFacts};
use crate::request::Request;

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

/// The variables a policy may name. `Leaf` has no fields; `Map` allows any key (headers).
enum Shape {
    Leaf,
    Map,
    Object(&'static [(&'static str, Shape)]),
}

const NAME: Shape = Shape::Object(&[
    ("rfc4514", Shape::Leaf),
    ("common_name", Shape::Leaf),
    ("organization", Shape::Leaf),
    ("organizational_unit", Shape::Leaf),
    ("country", Shape::Leaf),
    ("locality", Shape::Leaf),
    ("province", Shape::Leaf),
]);

const SAN: Shape = Shape::Object(&[
    ("dns_names", Shape::Leaf),
    ("email_addresses", Shape::Leaf),
    ("ip_addresses", Shape::Leaf),
    ("uris", Shape::Leaf),
]);

const VALIDITY: Shape = Shape::Object(&[("not_before", Shape::Leaf), ("not_after", Shape::Leaf)]);

const CLIENT: Shape = Shape::Object(&[
    ("presented", Shape::Leaf),
    ("verified", Shape::Leaf),
    ("verification", Shape::Leaf),
    ("subject", NAME),
    ("issuer", NAME),
    ("san", SAN),
    ("serial_number", Shape::Leaf),
    ("signature_algorithm", Shape::Leaf),
    ("validity", VALIDITY),
    ("extensions", Shape::Leaf),
    ("fingerprint", Shape::Object(&[("sha256", Shape::Leaf)])),
    ("pem", Shape::Leaf),
]);

/// The certificate the endpoint serves (ngrok's `conn.tls.server`).
const SERVER: Shape = Shape::Object(&[
    ("subject", NAME),
    ("issuer", NAME),
    ("san", SAN),
    ("serial_number", Shape::Leaf),
    ("signature_algorithm", Shape::Leaf),
    ("validity", VALIDITY),
    ("fingerprint", Shape::Object(&[("sha256", Shape::Leaf)])),
]);

const CONN: Shape = Shape::Object(&[
    ("client_ip", Shape::Leaf),
    ("client_port", Shape::Leaf),
    ("server_ip", Shape::Leaf),
    ("server_port", Shape::Leaf),
    ("ts", Shape::Object(&[("start", Shape::Leaf)])),
    (
        "tls",
        Shape::Object(&[
            ("version", Shape::Leaf),
            ("cipher_suite", Shape::Leaf),
            ("session_resumed", Shape::Leaf),
            ("key_exchange_group", Shape::Leaf),
            ("ja4_fingerprint", Shape::Leaf),
            ("sni", Shape::Leaf),
            ("negotiated_alpn", Shape::Leaf),
            ("client", CLIENT),
            ("server", SERVER),
        ]),
    ),
]);

const REQ: Shape = Shape::Object(&[
    ("method", Shape::Leaf),
    ("host", Shape::Leaf),
    ("path", Shape::Leaf),
    ("url", Shape::Leaf),
    ("headers", Shape::Map),
]);

/// A parsed expression after tlsgate's rewrites ([`dn_strings`]), ready to evaluate.
type Program = IdedExpr;

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
    pub fn compile(source: &str, phase: Phase) -> Result<Self, String> {
        let (program, reads) = compile_checked(source, phase)?;
        for sample in samples(phase) {
            match sample.eval(&program) {
                Ok(Value::Bool(_)) => {}
                Ok(other) => {
                    return Err(format!(
                        "evaluates to {}, but a rule expression must be true or false",
                        type_name(&other)
                    ))
                }
                Err(e) if is_type_error(&e) => return Err(format!("type error: {e}")),
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

    /// Evaluates against a prepared context. `Err` carries a reason for logs.
    pub fn matches(&self, vars: &Variables) -> Result<bool, String> {
        match vars.eval(&self.program) {
            Ok(Value::Bool(b)) => Ok(b),
            Ok(other) => Err(format!("`{}` gave {}", self.source, type_name(&other))),
            Err(e) => Err(format!("`{}` failed: {e}", self.source)),
        }
    }
}

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
    pub fn compile(raw: &serde_json::Value, phase: Phase) -> Result<Self, String> {
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
                                    return Err(format!("type error in `${{{source}}}`: {e}"));
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

    fn value(&self, vars: &Variables) -> Result<Value, String> {
        match &self.kind {
            VarKind::Constant(value) => Ok(value.clone()),
            VarKind::Template(t) => t.render(vars).map(|s| Value::from(s.as_str())),
            VarKind::Expr(source, program, _) => vars
                .eval(program)
                .map_err(|e| format!("`${{{source}}}` failed: {e}")),
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
    pub fn compile(text: &str, phase: Phase) -> Result<Self, String> {
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
                .ok_or_else(|| format!("`${{` without a closing `}}` in `{text}`"))?;
            let source = after[..end].trim();
            if source.is_empty() {
                return Err(format!("empty `${{}}` in `{text}`"));
            }
            let (program, reads) = compile_checked(source, phase)?;
            all_reads.add(reads);
            for sample in samples(phase) {
                if let Err(e) = sample.eval(&program) {
                    if is_type_error(&e) {
                        return Err(format!("type error in `${{{source}}}`: {e}"));
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

    pub fn render(&self, vars: &Variables) -> Result<String, String> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Expr(source, program) => match vars.eval(program) {
                    Ok(value) => render_value(&value, &mut out),
                    Err(e) => return Err(format!("`${{{source}}}` failed: {e}")),
                },
            }
        }
        Ok(out)
    }
}

fn render_value(value: &Value, out: &mut String) {
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

/// Parses and checks an expression; also says what it reads.
fn compile_checked(source: &str, phase: Phase) -> Result<(Program, Reads), String> {
    let parsed = stdlib()
        .compile(source)
        .map_err(|e| format!("does not parse: {e}"))?;
    let mut walk = Walk {
        phase,
        bound: Vec::new(),
        reads: Reads::default(),
    };
    walk.expr(parsed.expression())?;
    let mut program = parsed.expression().clone();
    dn_strings(&mut program, Use::Value);
    Ok((program, walk.reads))
}

/// How the value of a node is used by its parent.
#[derive(Clone, Copy, PartialEq)]
enum Use {
    /// As a map: a field is selected from it, it is indexed, `in` asks for one of its keys,
    /// or a macro iterates over it.
    Map,
    /// Anything else: compared, concatenated, given to a function, interpolated.
    Value,
}

/// ngrok documents `conn.tls.client.subject` (and `issuer`) both as a string
/// (`conn.tls.client.subject == 'CN=alice,O=Example'`) and as a map of attributes
/// (`conn.tls.client.subject.common_name`). A CEL value cannot be both, so the name is a map
/// that also holds its RFC 4514 string under `rfc4514`, and every place that uses the name
/// itself as a value rather than as a map is rewritten to read that string. The same for
/// `conn.tls.server`. Rewritten here, once, the rule is the same in both hosts.
fn dn_strings(e: &mut IdedExpr, used_as: Use) {
    if used_as == Use::Value && is_distinguished_name(e) {
        let name = std::mem::take(e);
        *e = IdedExpr {
            id: name.id,
            expr: Expr::Select(cel::common::ast::SelectExpr {
                operand: Box::new(name),
                field: "rfc4514".to_owned(),
                test: false,
            }),
        };
        return;
    }
    match &mut e.expr {
        Expr::Select(select) => dn_strings(&mut select.operand, Use::Map),
        Expr::Call(call) => {
            if let Some(target) = &mut call.target {
                dn_strings(target, Use::Value);
            }
            let func = call.func_name.as_str();
            for (i, arg) in call.args.iter_mut().enumerate() {
                let as_map =
                    (func == operators::INDEX && i == 0) || (func == operators::IN && i == 1);
                dn_strings(arg, if as_map { Use::Map } else { Use::Value });
            }
        }
        Expr::Comprehension(c) => {
            dn_strings(&mut c.iter_range, Use::Map);
            for part in [
                &mut c.accu_init,
                &mut c.loop_cond,
                &mut c.loop_step,
                &mut c.result,
            ] {
                dn_strings(part, Use::Value);
            }
        }
        Expr::List(list) => {
            for element in &mut list.elements {
                dn_strings(element, Use::Value);
            }
        }
        Expr::Map(map) => {
            for entry in &mut map.entries {
                match &mut entry.expr {
                    cel::common::ast::EntryExpr::MapEntry(m) => {
                        dn_strings(&mut m.key, Use::Value);
                        dn_strings(&mut m.value, Use::Value);
                    }
                    cel::common::ast::EntryExpr::StructField(f) => {
                        dn_strings(&mut f.value, Use::Value);
                    }
                }
            }
        }
        Expr::Struct(_) | Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => {}
    }
}

/// `conn.tls.{client,server}.{subject,issuer}`, written as a plain select chain.
fn is_distinguished_name(e: &IdedExpr) -> bool {
    let mut path = Vec::new();
    let mut cur = e;
    loop {
        match &cur.expr {
            Expr::Select(select) if !select.test => {
                path.push(select.field.as_str());
                cur = &select.operand;
            }
            Expr::Ident(name) => {
                path.push(name.as_str());
                break;
            }
            _ => return false,
        }
    }
    path.reverse();
    matches!(
        path.as_slice(),
        ["conn", "tls", "client" | "server", "subject" | "issuer"]
    )
}

/// Walks the syntax tree; every select chain rooted at a free identifier must be a known
/// variable for the phase. Comprehension variables (`x` in `list.exists(x, …)`) are bound.
struct Walk {
    phase: Phase,
    bound: Vec<String>,
    reads: Reads,
}

impl Walk {
    fn expr(&mut self, e: &IdedExpr) -> Result<(), String> {
        check_references(e, self)
    }
}

/// `s.matches('(')` would compile (and fail) on every evaluation and deny every request; a
/// literal pattern is checked once, here.
fn check_regex_literal(call: &cel::common::ast::CallExpr) -> Result<(), String> {
    use cel::common::ast::LiteralValue;
    if call.func_name != "matches" {
        return Ok(());
    }
    let pattern = match (&call.target, call.args.as_slice()) {
        (Some(_), [p]) | (None, [_, p]) => p,
        _ => return Ok(()),
    };
    if let Expr::Literal(LiteralValue::String(p)) = &pattern.expr {
        regex::Regex::new(p.inner())
            .map_err(|e| format!("invalid regular expression in matches(): {e}"))?;
    }
    Ok(())
}

/// `inCidrRange(ip, '10.0.0/8')` would fail on every evaluation and deny every request; literal
/// ranges are checked once, here.
fn check_cidr_literals(call: &cel::common::ast::CallExpr) -> Result<(), String> {
    use cel::common::ast::LiteralValue;
    let ranges: Vec<&IdedExpr> = match (call.func_name.as_str(), call.args.as_slice()) {
        ("inCidrRange", [_, range]) => vec![range],
        ("inCidrRanges", [_, list]) => match &list.expr {
            Expr::List(list) => list.elements.iter().collect(),
            _ => Vec::new(),
        },
        _ => Vec::new(),
    };
    for range in ranges {
        if let Expr::Literal(LiteralValue::String(text)) = &range.expr {
            let text = text.inner();
            if crate::net::parse_range(text).is_none() {
                return Err(format!(
                    "`{text}` in {}() is not a CIDR (10.0.0.0/8, 2001:db8::/32) or address",
                    call.func_name
                ));
            }
        }
    }
    Ok(())
}

fn check_references(e: &IdedExpr, w: &mut Walk) -> Result<(), String> {
    match &e.expr {
        Expr::Ident(name) => w.path(&[name.as_str()]),
        Expr::Select(_) => {
            let mut path = Vec::new();
            let mut cur = e;
            loop {
                match &cur.expr {
                    Expr::Select(select) => {
                        path.push(select.field.as_str());
                        cur = &select.operand;
                    }
                    Expr::Ident(name) => {
                        path.push(name.as_str());
                        path.reverse();
                        return w.path(&path);
                    }
                    _ => return check_references(cur, w),
                }
            }
        }
        Expr::Call(call) => {
            if let Some((_, instead)) = NGROK_MACROS_MISSING
                .iter()
                .find(|(name, _)| *name == call.func_name)
            {
                return Err(format!(
                    "`{}` is an ngrok macro tlsgate does not provide; {instead}",
                    call.func_name
                ));
            }
            check_regex_literal(call)?;
            check_cidr_literals(call)?;
            if let Some(target) = &call.target {
                check_references(target, w)?;
            }
            for arg in &call.args {
                check_references(arg, w)?;
            }
            Ok(())
        }
        Expr::Comprehension(c) => {
            check_references(&c.iter_range, w)?;
            check_references(&c.accu_init, w)?;
            let before = w.bound.len();
            w.bound.push(c.iter_var.clone());
            w.bound.push(c.accu_var.clone());
            w.bound.extend(c.iter_var2.clone());
            let result = check_references(&c.loop_cond, w)
                .and_then(|()| check_references(&c.loop_step, w))
                .and_then(|()| check_references(&c.result, w));
            w.bound.truncate(before);
            result
        }
        Expr::List(list) => list
            .elements
            .iter()
            .try_for_each(|el| check_references(el, w)),
        Expr::Map(map) => map.entries.iter().try_for_each(|entry| match &entry.expr {
            cel::common::ast::EntryExpr::MapEntry(m) => {
                check_references(&m.key, w)?;
                check_references(&m.value, w)
            }
            cel::common::ast::EntryExpr::StructField(f) => check_references(&f.value, w),
        }),
        Expr::Struct(_) => Err("message construction is not supported".into()),
        Expr::Literal(_) | Expr::Unspecified => Ok(()),
    }
}

impl Walk {
    fn path(&mut self, path: &[&str]) -> Result<(), String> {
        let (phase, bound) = (self.phase, &self.bound);
        // Only `req.method`, `req.host`, `req.path` and `req.url` are known not to need the
        // headers. Anything else that reaches `req` — `req.headers`, `req['headers']`,
        // `[req].exists(r, ...)` — may read them, so the host must collect them: guessing
        // wrong would evaluate a header rule against an empty map and fail open.
        let scalar_field = matches!(path.get(1), Some(&("method" | "host" | "path" | "url")));
        if path.first() == Some(&"req") && !scalar_field && !bound.iter().any(|b| b == "req") {
            self.reads.headers = true;
        }
        if path.first() == Some(&"vars") && !bound.iter().any(|b| b == "vars") {
            let name: Arc<str> = path.get(1).copied().unwrap_or("*").into();
            if !self.reads.vars.contains(&name) {
                self.reads.vars.push(name);
            }
        }
        if path.first() == Some(&"conn") && !bound.iter().any(|b| b == "conn") {
            let dotted: Arc<str> = path.join(".").into();
            if !self.reads.conn.contains(&dotted) {
                self.reads.conn.push(dotted);
            }
        }
        check_path(path, phase, bound)
    }
}

fn check_path(path: &[&str], phase: Phase, bound: &[String]) -> Result<(), String> {
    let Some((root, fields)) = path.split_first() else {
        return Ok(());
    };
    if bound.iter().any(|b| b == root) {
        return Ok(());
    }
    let shape = match *root {
        "conn" => &CONN,
        // set-vars' names: whether each was set before it is read is the loader's check.
        "vars" => &Shape::Map,
        "req" if phase == Phase::HttpRequest => &REQ,
        "req" => {
            return Err(format!(
                "`req` does not exist in {}: the connection has no request yet \
                 (move the rule to on_http_request)",
                phase.name()
            ))
        }
        other => {
            return Err(format!(
                "unknown variable `{other}`; variables start with `conn.`{}",
                if phase == Phase::HttpRequest {
                    " or `req.`"
                } else {
                    ""
                }
            ))
        }
    };
    let mut shape = shape;
    let mut walked = (*root).to_owned();
    for field in fields {
        match shape {
            Shape::Object(children) => match children.iter().find(|(n, _)| n == field) {
                Some((_, child)) => shape = child,
                None => {
                    let known: Vec<&str> = children.iter().map(|(n, _)| *n).collect();
                    let name = format!("{walked}.{field}");
                    if NGROK_VARIABLES.iter().any(|v| name.starts_with(v)) {
                        return Err(format!(
                            "`{name}` is an ngrok variable tlsgate does not provide; \
                             `{walked}` has {}",
                            known.join(", ")
                        ));
                    }
                    return Err(format!(
                        "unknown variable `{name}`; `{walked}` has {}",
                        known.join(", ")
                    ));
                }
            },
            Shape::Map => return Ok(()),
            Shape::Leaf => {
                return Err(format!("`{walked}` has no field `{field}`"));
            }
        }
        walked.push('.');
        walked.push_str(field);
    }
    Ok(())
}

/// ngrok macros tlsgate does not provide, with what to write instead.
const NGROK_MACROS_MISSING: &[(&str, &str)] = &[
    ("hasReqCookie", "cookies are not parsed by tlsgate"),
    ("getReqCookie", "cookies are not parsed by tlsgate"),
    (
        "hasQueryParam",
        "query parameters are not parsed by tlsgate",
    ),
    (
        "getQueryParam",
        "query parameters are not parsed by tlsgate",
    ),
];

/// ngrok connection variables tlsgate does not (yet) provide: a policy that names one is told
/// so, rather than that the name is unknown (see docs/ngrok-compatibility.md).
const NGROK_VARIABLES: &[&str] = &["conn.bytes_in", "conn.bytes_out", "conn.geo"];

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

/// The CEL variables of one connection (and, for requests, one request).
///
/// `conn` is converted to CEL's runtime form once per connection and lent to every evaluation
/// through a resolver; binding it with `add_variable_from_value` would deep-copy the whole map
/// on each evaluation. A value that fails to convert is left out, so expressions naming it fail
/// and the policy denies.
#[derive(Clone, Debug)]
pub struct Variables {
    conn: Option<Arc<dyn Val>>,
    req: Option<Arc<dyn Val>>,
    /// `set-vars` values so far in this phase, and the same as one CEL map.
    vars: Vec<(Arc<str>, Value)>,
    vars_val: Option<Arc<dyn Val>>,
}

impl Variables {
    /// `conn` for a connection whose endpoint serves `server` (its certificate's facts).
    pub fn for_connection(facts: &TlsFacts, server: Option<&ClientCertFacts>) -> Self {
        Self {
            conn: to_val(conn_value(facts, server)),
            req: None,
            vars: Vec::new(),
            vars_val: None,
        }
    }

    /// Adds `req`; `path` is the normalized path and `url` the URL built from it.
    #[must_use]
    pub fn with_request(&self, req: &Request<'_>, path: &str, url: &str) -> Self {
        Self {
            conn: self.conn.clone(),
            req: to_val(req_value(req, path, url)),
            vars: Vec::new(),
            vars_val: None,
        }
    }

    /// Runs one `set-vars` action: each value in order, each seeing the ones before it (and
    /// those of earlier actions in the phase). Returns the new variables and each value as
    /// text, for traces.
    pub fn set_vars(&self, set: &[(String, VarValue)]) -> Result<(Self, Vec<String>), String> {
        let mut next = Self {
            conn: self.conn.clone(),
            req: self.req.clone(),
            vars: self.vars.clone(),
            vars_val: self.vars_val.clone(),
        };
        let mut shown = Vec::with_capacity(set.len());
        for (name, value) in set {
            let value = value.value(&next)?;
            let mut text = String::new();
            render_value(&value, &mut text);
            shown.push(format!("{name}={text}"));
            let name: Arc<str> = name.as_str().into();
            match next.vars.iter_mut().find(|(n, _)| *n == name) {
                Some(entry) => entry.1 = value,
                None => next.vars.push((name, value)),
            }
            let map: HashMap<Key, Value> = next
                .vars
                .iter()
                .map(|(n, v)| (Key::String(Arc::new(n.to_string())), v.clone()))
                .collect();
            next.vars_val = to_val(Value::Map(Map { map: Arc::new(map) }));
        }
        Ok((next, shown))
    }

    fn eval(&self, program: &Program) -> Result<Value, ExecutionError> {
        let mut ctx = Context::with_env(Arc::clone(stdlib()));
        ctx.set_variable_resolver(self);
        Value::resolve(program, &ctx)
    }
}

impl VariableResolver for Variables {
    fn resolve<'b>(&'b self, variable: &str) -> Option<CowVal<'b, 'b>> {
        let val = match variable {
            "conn" => self.conn.as_deref()?,
            "req" => self.req.as_deref()?,
            "vars" => self.vars_val.as_deref()?,
            _ => return None,
        };
        Some(CowVal::Borrowed(val))
    }
}

fn to_val(value: Value) -> Option<Arc<dyn Val>> {
    let boxed: Box<dyn Val> = value.try_into().ok()?;
    Some(Arc::from(boxed))
}

/// The CEL standard environment, built once: `Context::default()` would rebuild its function
/// table on every evaluation, which dominated the per-request cost.
fn stdlib() -> &'static Arc<cel::Env> {
    static ENV: std::sync::OnceLock<Arc<cel::Env>> = std::sync::OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = cel::Env::stdlib();
        // ngrok's IP macros. A registration can only fail on a name clash with the standard
        // library, which a test rules out; the macros are then simply absent, and a policy
        // naming them fails to load (every expression is evaluated at load).
        let _ = cel::add_overload!(env, fn in_cidr_range: (CelString, CelString) -> Result<CelBool>,
            name = "inCidrRange", id = "tlsgate_in_cidr_range");
        let _ = cel::add_overload!(env, fn in_cidr_ranges: (CelString, CelList) -> Result<CelBool>,
            name = "inCidrRanges", id = "tlsgate_in_cidr_ranges");
        // ngrok's header macros, rewritten at parse time into what tlsgate already has, so the
        // phase check (`req` in on_tcp_connect) and header collection see plain `req.headers`.
        let _ = env.add_macro(cel::parser::Macro::global(
            "hasReqHeader",
            1,
            |h, _, args| {
                let name = header_name_literal(h, args, "hasReqHeader")?;
                let headers = req_headers(h);
                let name = literal(h, name);
                Ok(Some(call(h, operators::IN, vec![name, headers])))
            },
        ));
        let _ = env.add_macro(cel::parser::Macro::global(
            "getReqHeader",
            1,
            |h, _, args| {
                let name = header_name_literal(h, args, "getReqHeader")?;
                let (key, headers) = (literal(h, name.clone()), req_headers(h));
                let present = call(h, operators::IN, vec![key, headers]);
                let (headers, key) = (req_headers(h), literal(h, name));
                let values = call(h, operators::INDEX, vec![headers, key]);
                let none = h.next_expr(Expr::List(cel::common::ast::ListExpr::new(vec![])));
                Ok(Some(call(
                    h,
                    operators::CONDITIONAL,
                    vec![present, values, none],
                )))
            },
        ));
        Arc::new(env)
    })
}

/// The header name of `hasReqHeader('X-Name')` / `getReqHeader(…)`, lowercased (`req.headers`
/// keys are); a name that is not a quoted string is a parse error.
fn header_name_literal(
    h: &mut cel::parser::MacroExprHelper<'_>,
    args: &mut Vec<IdedExpr>,
    function: &str,
) -> Result<String, cel::parser::ParseError> {
    let Some(arg) = args.pop() else {
        return Err(h.new_error(0, format!("{function} takes a header name")));
    };
    match &arg.expr {
        Expr::Literal(cel::common::ast::LiteralValue::String(name)) => {
            Ok(name.inner().to_ascii_lowercase())
        }
        _ => Err(h.new_error(
            arg.id,
            format!(
                "{function} takes the header name as a quoted string, e.g. {function}('x-api-key')"
            ),
        )),
    }
}

fn literal(h: &mut cel::parser::MacroExprHelper<'_>, text: String) -> IdedExpr {
    h.next_expr(Expr::Literal(cel::common::ast::LiteralValue::String(
        text.into(),
    )))
}

fn req_headers(h: &mut cel::parser::MacroExprHelper<'_>) -> IdedExpr {
    let req = h.next_expr(Expr::Ident("req".into()));
    h.next_expr(Expr::Select(cel::common::ast::SelectExpr {
        operand: Box::new(req),
        field: "headers".into(),
        test: false,
    }))
}

fn call(h: &mut cel::parser::MacroExprHelper<'_>, function: &str, args: Vec<IdedExpr>) -> IdedExpr {
    h.next_expr(Expr::Call(cel::common::ast::CallExpr {
        func_name: function.to_owned(),
        target: None,
        args,
    }))
}

/// `inCidrRange(ip, cidr)`: whether the address is in the range (an IPv4-mapped IPv6 address
/// counts as its IPv4 address, as `restrict-ips` does).
fn in_cidr_range(ip: &CelString<'_>, cidr: &CelString<'_>) -> Result<CelBool, ExecutionError> {
    Ok(CelBool::from(cidr_contains(cidr.inner(), ip.inner())?))
}

/// `inCidrRanges(ip, [cidr, …])`: whether the address is in any of the ranges.
fn in_cidr_ranges(ip: &CelString<'_>, cidrs: &CelList<'_>) -> Result<CelBool, ExecutionError> {
    for item in cidrs.inner() {
        let Some(cidr) = item.downcast_ref::<CelString<'_>>() else {
            return Err(cidr_error("inCidrRanges", "the ranges must be strings"));
        };
        if cidr_contains(cidr.inner(), ip.inner())? {
            return Ok(CelBool::from(true));
        }
    }
    Ok(CelBool::from(false))
}

fn cidr_contains(cidr: &str, ip: &str) -> Result<bool, ExecutionError> {
    let net = crate::net::parse_range(cidr)
        .ok_or_else(|| cidr_error("inCidrRange", &format!("`{cidr}` is not a CIDR")))?;
    let ip: std::net::IpAddr = ip
        .parse()
        .map_err(|_| cidr_error("inCidrRange", &format!("`{ip}` is not an IP address")))?;
    Ok(net.contains(&crate::net::canonical(ip)))
}

fn cidr_error(function: &str, message: &str) -> ExecutionError {
    ExecutionError::FunctionError {
        function: function.to_owned(),
        message: message.to_owned(),
    }
}

fn map(entries: Vec<(&'static str, Value)>) -> Value {
    let map: HashMap<Key, Value> = entries
        .into_iter()
        .map(|(k, v)| (Key::String(Arc::new(k.to_owned())), v))
        .collect();
    Value::Map(Map { map: Arc::new(map) })
}

fn strings(items: &[String]) -> Value {
    Value::List(Arc::new(
        items.iter().map(|s| Value::from(s.as_str())).collect(),
    ))
}

fn timestamp(secs: i64) -> Value {
    use cel::objects::Value as V;
    match chrono::DateTime::from_timestamp(secs, 0) {
        Some(t) => V::Timestamp(t.fixed_offset()),
        None => V::Null,
    }
}

/// A moment, to the microsecond (a connection's start; certificates' times are whole seconds).
fn instant(at: std::time::SystemTime) -> Value {
    use cel::objects::Value as V;
    let since = at.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = i64::try_from(since.as_secs()).unwrap_or(i64::MAX);
    let nanos = since.subsec_micros() * 1_000;
    match chrono::DateTime::from_timestamp(secs, nanos) {
        Some(t) => V::Timestamp(t.fixed_offset()),
        None => V::Null,
    }
}

fn name_value(dn: &DistinguishedName) -> Value {
    map(vec![
        ("rfc4514", Value::from(dn.rfc4514.as_str())),
        ("common_name", Value::from(dn.common_name.as_str())),
        ("organization", strings(&dn.organization)),
        ("organizational_unit", strings(&dn.organizational_unit)),
        ("country", strings(&dn.country)),
        ("locality", strings(&dn.locality)),
        ("province", strings(&dn.province)),
    ])
}

/// `conn.tls.client`. Identity claims (subject, issuer, SANs, serial, validity, extensions,
/// signature algorithm) are filled in only for a certificate that verified against the
/// endpoint's CAs: anyone can put `CN=admin` in a self-signed certificate. What possession of
/// the key does establish — the certificate itself (`pem`, `fingerprint.sha256`) — is there for
/// every presented certificate, so a policy can pin one. `verified` and `verification` say which
/// case this is.
fn client_value(cert: &ClientCert) -> Value {
    // Without a verified certificate every identity field is present and empty, so
    // `cn != 'x'` is simply true and a rule written for mTLS denies instead of erroring.
    let empty = no_certificate();
    let (identity, presented) = match cert {
        ClientCert::Verified(c) => (c.as_ref(), Some(c.as_ref())),
        ClientCert::Unverified(c, _) => (&empty, Some(c.as_ref())),
        ClientCert::Absent => (&empty, None),
    };
    let c = identity;
    let extensions = Value::List(Arc::new(
        c.extensions
            .iter()
            .map(|e| {
                map(vec![
                    ("id", Value::from(e.id.as_str())),
                    ("critical", Value::Bool(e.critical)),
                ])
            })
            .collect(),
    ));
    let mut fields = identity_fields(c);
    fields.extend([
        ("presented", Value::Bool(presented.is_some())),
        (
            "verified",
            Value::Bool(matches!(cert, ClientCert::Verified(_))),
        ),
        ("verification", Value::from(cert.verification())),
        ("extensions", extensions),
        (
            "fingerprint",
            map(vec![(
                "sha256",
                Value::from(presented.map_or("", |p| p.fingerprint_sha256.as_str())),
            )]),
        ),
        (
            "pem",
            Value::from(presented.map(ClientCertFacts::pem).unwrap_or_default()),
        ),
    ]);
    map(fields)
}

/// The fields a certificate's holder is identified by, the same for `conn.tls.client` and
/// `conn.tls.server`.
fn identity_fields(c: &ClientCertFacts) -> Vec<(&'static str, Value)> {
    vec![
        ("subject", name_value(&c.subject)),
        ("issuer", name_value(&c.issuer)),
        (
            "san",
            map(vec![
                ("dns_names", strings(&c.san.dns_names)),
                ("email_addresses", strings(&c.san.email_addresses)),
                ("ip_addresses", strings(&c.san.ip_addresses)),
                ("uris", strings(&c.san.uris)),
            ]),
        ),
        ("serial_number", Value::from(c.serial_number.as_str())),
        (
            "signature_algorithm",
            Value::from(c.signature_algorithm.as_str()),
        ),
        (
            "validity",
            map(vec![
                ("not_before", timestamp(c.not_before)),
                ("not_after", timestamp(c.not_after)),
            ]),
        ),
    ]
}

fn conn_value(facts: &TlsFacts, server: Option<&ClientCertFacts>) -> Value {
    map(vec![
        ("client_ip", Value::from(facts.client_ip.to_string())),
        ("client_port", Value::Int(i64::from(facts.client_port))),
        ("server_ip", Value::from(facts.server.ip().to_string())),
        ("server_port", Value::Int(i64::from(facts.server.port()))),
        ("ts", map(vec![("start", instant(facts.started))])),
        (
            "tls",
            map(vec![
                ("version", Value::from(facts.version.as_str())),
                ("cipher_suite", Value::from(facts.cipher_suite.as_str())),
                ("session_resumed", Value::Bool(facts.resumed)),
                ("key_exchange_group", Value::from(facts.key_exchange_group)),
                ("ja4_fingerprint", Value::from(facts.ja4.as_str())),
                ("sni", Value::from(facts.sni.clone().unwrap_or_default())),
                (
                    "negotiated_alpn",
                    Value::from(facts.alpn.clone().unwrap_or_default()),
                ),
                ("client", client_value(&facts.client_cert)),
                ("server", server_value(server)),
            ]),
        ),
    ])
}

/// A certificate with every field empty.
fn no_certificate() -> ClientCertFacts {
    ClientCertFacts {
        subject: DistinguishedName::default(),
        issuer: DistinguishedName::default(),
        issuer_der: Vec::new(),
        san: Default::default(),
        serial_number: String::new(),
        signature_algorithm: String::new(),
        not_before: 0,
        not_after: 0,
        extensions: Vec::new(),
        fingerprint_sha256: String::new(),
        is_ca: false,
        client_auth: crate::facts::ClientAuthUsage::NotAllowed,
        legacy_v1: false,
        der: Vec::new(),
    }
}

/// `conn.tls.server`: the endpoint's certificate, the same fields as a client's identity (all
/// empty for a policy loaded without its certificate, and in the load-time type check).
fn server_value(cert: Option<&ClientCertFacts>) -> Value {
    let empty;
    let c = match cert {
        Some(c) => c,
        None => {
            empty = no_certificate();
            &empty
        }
    };
    let mut fields = identity_fields(c);
    fields.push((
        "fingerprint",
        map(vec![("sha256", Value::from(c.fingerprint_sha256.as_str()))]),
    ));
    map(fields)
}

fn req_value(req: &Request<'_>, path: &str, url: &str) -> Value {
    let mut headers: HashMap<Key, Vec<Value>> = HashMap::new();
    for (name, value) in req.headers {
        let name = name.to_ascii_lowercase();
        // Headers the edge owns are forged when a client sends them, and `_` names are dropped;
        // rules never see either (hosts remove them before forwarding, too).
        if crate::request::drops_client_header(&name) {
            continue;
        }
        headers
            .entry(Key::String(Arc::new(name)))
            .or_default()
            .push(Value::from(*value));
    }
    let headers: HashMap<Key, Value> = headers
        .into_iter()
        .map(|(k, v)| (k, Value::List(Arc::new(v))))
        .collect();
    map(vec![
        ("method", Value::from(req.method)),
        ("host", Value::from(req.host)),
        ("path", Value::from(path)),
        ("url", Value::from(url)),
        (
            "headers",
            Value::Map(Map {
                map: Arc::new(headers),
            }),
        ),
    ])
}

/// Facts that exercise every variable, for load-time type checking.
fn samples(phase: Phase) -> Vec<Variables> {
    let absent = TlsFacts {
        version: crate::facts::TlsVersion::Tls13,
        cipher_suite: "TLS_AES_128_GCM_SHA256".into(),
        sni: Some("example.com".into()),
        alpn: Some("h2".into()),
        client_ip: std::net::IpAddr::from([127, 0, 0, 1]),
        client_port: 50_000,
        server: std::net::SocketAddr::from(([127, 0, 0, 1], 443)),
        started: std::time::UNIX_EPOCH,
        resumed: false,
        key_exchange_group: "",
        ja4: String::new(),
        client_cert: ClientCert::Absent,
    };
    let sample_cert = ClientCertFacts {
        subject: DistinguishedName {
            common_name: "client".into(),
            organization: vec!["Example".into()],
            rfc4514: "CN=client,O=Example".into(),
            ..DistinguishedName::default()
        },
        issuer: DistinguishedName {
            common_name: "ca".into(),
            rfc4514: "CN=ca".into(),
            ..DistinguishedName::default()
        },
        issuer_der: Vec::new(),
        san: crate::facts::SubjectAltNames {
            dns_names: vec!["client.example.com".into()],
            uris: vec!["spiffe://example.com/client".into()],
            ..Default::default()
        },
        serial_number: "01".into(),
        signature_algorithm: "ECDSA-SHA256".into(),
        not_before: 0,
        not_after: 4_102_444_800,
        extensions: vec![crate::facts::ExtensionFact {
            id: "2.5.29.37".into(),
            critical: false,
        }],
        fingerprint_sha256: "00".into(),
        is_ca: false,
        client_auth: crate::facts::ClientAuthUsage::Allowed,
        legacy_v1: false,
        der: Vec::new(),
    };
    let present = TlsFacts {
        started: std::time::UNIX_EPOCH,
        resumed: false,
        key_exchange_group: "",
        ja4: String::new(),
        client_cert: ClientCert::Verified(Box::new(sample_cert)),
        ..absent.clone()
    };
    let with_cert = Variables::for_connection(&present, None);
    let served = match &present.client_cert {
        ClientCert::Verified(c) => Some(c.as_ref()),
        _ => None,
    };
    let mut out = vec![
        Variables::for_connection(&absent, None),
        with_cert,
        Variables::for_connection(&absent, served),
    ];
    if phase == Phase::HttpRequest {
        let headers = [("user-agent", "sample")];
        let req = Request {
            method: "GET",
            host: "example.com",
            target: "/",
            headers: &headers,
        };
        out = out
            .iter()
            .map(|v| v.with_request(&req, "/", "https://example.com/"))
            .collect();
    }
    // `vars` exists (empty): a name in it is the loader's check, not a type error.
    for sample in &mut out {
        sample.vars_val = to_val(Value::Map(Map {
            map: Arc::new(HashMap::new()),
        }));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_known_variables() {
        for e in [
            "conn.tls.client.subject.common_name == 'ExampleClient'",
            "'Org' in conn.tls.client.subject.organization",
            "conn.tls.client.san.dns_names.exists(d, d.endsWith('.example.com'))",
            "conn.tls.version == '1.3' && conn.tls.sni != ''",
            "conn.tls.client.validity.not_after > timestamp('2020-01-01T00:00:00Z')",
            "size(conn.tls.client.extensions) >= 0",
        ] {
            Expression::compile(e, Phase::TcpConnect).unwrap_or_else(|err| panic!("{e}: {err}"));
        }
        Expression::compile(
            "req.method == 'GET' && 'x-a' in req.headers && req.path.startsWith('/')",
            Phase::HttpRequest,
        )
        .expect("compiles");
    }

    #[test]
    fn refuses_unknown_variables_with_the_known_ones() {
        let err = Expression::compile("conn.tls.client.subject.cn == 'x'", Phase::TcpConnect)
            .expect_err("unknown field");
        assert!(err.contains("conn.tls.client.subject.cn"), "{err}");
        assert!(err.contains("common_name"), "{err}");
        let err = Expression::compile("foo == 1", Phase::TcpConnect).expect_err("unknown root");
        assert!(err.contains("unknown variable `foo`"), "{err}");
    }

    #[test]
    fn knows_which_conn_variables_it_reads_directly_or_through_an_enclosing_object() {
        let reads = |source: &str| {
            let e = Expression::compile(source, Phase::HttpRequest)
                .unwrap_or_else(|e| panic!("{source}: {e}"));
            e.reads_variable("conn.tls.cipher_suite")
        };
        assert!(reads("conn.tls.cipher_suite == 'TLS_AES_128_GCM_SHA256'"));
        assert!(reads("has(conn.tls.cipher_suite)"));
        assert!(!reads("conn.tls.sni == 'a.example.com'"));
        // A name that merely starts like another is not inside it.
        let longer = Reads {
            conn: vec!["conn.tls.cipher_suite_x".into()],
            ..Reads::default()
        };
        assert!(!longer.variable("conn.tls.cipher_suite"));
        // Through an index or the whole object: it may read anything under it.
        assert!(reads("conn.tls['cipher_suite'] == ''"));
        assert!(reads("[conn].exists(c, c.tls.sni == '')"));
        // A comprehension variable named like a root is not the connection.
        assert!(!reads("[1].exists(conn, conn == 1)"));
        let t = Template::compile("suite=${conn.tls.cipher_suite}", Phase::HttpRequest)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(t.reads_variable("conn.tls.cipher_suite"));
        assert!(!t.reads_variable("conn.tls.session_resumed"));
    }

    #[test]
    fn refuses_requests_in_tcp_phase() {
        let err =
            Expression::compile("req.method == 'GET'", Phase::TcpConnect).expect_err("no req");
        assert!(err.contains("on_http_request"), "{err}");
    }

    #[test]
    fn ngrok_header_macros_are_req_headers_and_only_in_requests() {
        let e = Expression::compile("hasReqHeader('X-Api-Key')", Phase::HttpRequest)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            e.reads_request_headers(),
            "the host must collect headers for it"
        );
        let e = Expression::compile("size(getReqHeader('x-tag')) == 0", Phase::HttpRequest)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(e.reads_request_headers());
        let err = Expression::compile("hasReqHeader('x-api-key')", Phase::TcpConnect)
            .expect_err("no request yet");
        assert!(err.contains("on_http_request"), "{err}");
        let err = Expression::compile("hasReqHeader(req.method)", Phase::HttpRequest)
            .expect_err("not a literal");
        assert!(err.contains("quoted string"), "{err}");
    }

    #[test]
    fn a_distinguished_name_is_a_string_where_used_as_one_and_a_map_elsewhere() {
        let verified = Expression::compile("conn.tls.client.verified", Phase::TcpConnect).unwrap();
        let all = samples(Phase::TcpConnect);
        let vars = all
            .iter()
            .find(|v| verified.matches(v) == Ok(true))
            .expect("a sample with a verified certificate");
        for source in [
            // As ngrok's string.
            "conn.tls.client.subject == 'CN=client,O=Example'",
            "conn.tls.client.subject.startsWith('CN=client,')",
            "conn.tls.client.issuer == 'CN=ca'",
            "conn.tls.client.subject in ['CN=other', 'CN=client,O=Example']",
            "size(conn.tls.client.subject) == 19",
            "conn.tls.client.subject + '' == conn.tls.client.subject.rfc4514",
            "string(conn.tls.client.issuer).contains('ca')",
            "conn.tls.client.subject.matches('^CN=[a-z]+,')",
            // As a map, in the same expression.
            "conn.tls.client.subject.common_name == 'client'",
            "'common_name' in conn.tls.client.subject",
            "conn.tls.client.subject['common_name'] == 'client'",
            "conn.tls.client.subject.exists(k, k == 'organization')",
            "has(conn.tls.client.subject.common_name)",
            "has(conn.tls.client.subject)",
            "conn.tls.client.subject.rfc4514 == 'CN=client,O=Example'",
        ] {
            let e = Expression::compile(source, Phase::TcpConnect)
                .unwrap_or_else(|e| panic!("{source}: {e}"));
            assert_eq!(e.matches(vars), Ok(true), "{source}");
        }
        // No certificate: the string is empty, as every identity field is.
        let absent = all
            .iter()
            .find(|v| verified.matches(v) == Ok(false))
            .expect("a sample without one");
        let e = Expression::compile("conn.tls.client.subject == ''", Phase::TcpConnect).unwrap();
        assert_eq!(e.matches(absent), Ok(true));
        // Templates read the string too.
        let t = Template::compile("${conn.tls.client.subject}", Phase::TcpConnect).unwrap();
        assert_eq!(t.render(vars).as_deref(), Ok("CN=client,O=Example"));
    }

    #[test]
    fn every_served_certificate_field_loads() {
        // The load-time type check evaluates with no served certificate too: every field must
        // be there, empty, not only the names.
        for field in [
            "subject.common_name",
            "issuer.organization",
            "san.dns_names",
            "serial_number",
            "signature_algorithm",
            "validity.not_after",
            "fingerprint.sha256",
        ] {
            let source = format!("conn.tls.server.{field} == conn.tls.server.{field}");
            Expression::compile(&source, Phase::TcpConnect)
                .unwrap_or_else(|e| panic!("{source}: {e}"));
        }
    }

    #[test]
    fn refuses_type_errors_and_non_booleans() {
        let err = Expression::compile("conn.tls.version > 2", Phase::TcpConnect).expect_err("type");
        assert!(err.contains("type error"), "{err}");
        let err = Expression::compile("conn.tls.version", Phase::TcpConnect).expect_err("string");
        assert!(err.contains("true or false"), "{err}");
        assert!(Expression::compile("conn.tls.version ==", Phase::TcpConnect).is_err());
        let err = Expression::compile("conn.tls.sni.matches('(')", Phase::TcpConnect)
            .expect_err("bad regex");
        assert!(err.contains("invalid regular expression"), "{err}");
        Expression::compile(
            "conn.tls.sni.matches('^[a-z]+\\\\.test$')",
            Phase::TcpConnect,
        )
        .expect("a valid regex compiles");
    }

    #[test]
    fn ngrok_ip_macros_match_ranges() {
        let facts = TlsFacts {
            version: crate::facts::TlsVersion::Tls13,
            cipher_suite: String::new(),
            sni: None,
            alpn: None,
            client_ip: std::net::IpAddr::from([10, 1, 2, 3]),
            client_port: 50_000,
            server: std::net::SocketAddr::from(([127, 0, 0, 1], 443)),
            started: std::time::UNIX_EPOCH,
            resumed: false,
            key_exchange_group: "",
            ja4: String::new(),
            client_cert: ClientCert::Absent,
        };
        let vars = Variables::for_connection(&facts, None);
        let eval = |source: &str| {
            Expression::compile(source, Phase::TcpConnect)
                .unwrap_or_else(|e| panic!("{source}: {e}"))
                .matches(&vars)
        };
        assert_eq!(eval("inCidrRange(conn.client_ip, '10.0.0.0/8')"), Ok(true));
        assert_eq!(
            eval("inCidrRange(conn.client_ip, '192.168.0.0/16')"),
            Ok(false)
        );
        assert_eq!(
            eval("inCidrRanges(conn.client_ip, ['192.168.0.0/16', '10.1.2.3'])"),
            Ok(true)
        );
        assert_eq!(eval("inCidrRanges(conn.client_ip, [])"), Ok(false));
        let err = Expression::compile("inCidrRange(conn.client_ip, '10.0.0/8')", Phase::TcpConnect)
            .expect_err("a bad literal range");
        assert!(err.contains("not a CIDR"), "{err}");
        let err = Expression::compile("inCidrRange(conn.client_ip, 8)", Phase::TcpConnect)
            .expect_err("a number is no range");
        assert!(err.contains("type error"), "{err}");
    }

    #[test]
    fn templates_interpolate() {
        let t = Template::compile(
            "cn=${conn.tls.client.subject.common_name};v=${conn.tls.version}",
            Phase::HttpRequest,
        )
        .expect("compiles");
        let facts = TlsFacts {
            version: crate::facts::TlsVersion::Tls12,
            cipher_suite: "x".into(),
            sni: None,
            alpn: None,
            client_ip: std::net::IpAddr::from([127, 0, 0, 1]),
            client_port: 50_000,
            server: std::net::SocketAddr::from(([127, 0, 0, 1], 443)),
            started: std::time::UNIX_EPOCH,
            resumed: false,
            key_exchange_group: "",
            ja4: String::new(),
            client_cert: ClientCert::Absent,
        };
        assert_eq!(
            t.render(&Variables::for_connection(&facts, None))
                .expect("renders"),
            "cn=;v=1.2"
        );
        assert!(Template::compile("${conn.nope}", Phase::HttpRequest).is_err());
        assert!(Template::compile("${conn.tls.version", Phase::HttpRequest).is_err());
        assert_eq!(
            Template::compile("plain", Phase::HttpRequest)
                .expect("ok")
                .as_literal(),
            Some("plain")
        );
    }
}
