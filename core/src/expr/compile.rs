//! Compiling an expression: parsing with the function library, the rewrite that lets a
//! distinguished name be read as a string, and the walk that refuses a variable the phase does
//! not have, against the tree of the variables that exist.

use std::sync::Arc;

use cel::common::ast::{operators, Expr};
use cel::IdedExpr;

use super::functions::stdlib;
use super::{CompileError, Phase, Reads};

/// A parsed expression after tlsgate's rewrites ([`dn_strings`]), ready to evaluate.
pub(super) type Program = IdedExpr;

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

/// Parses and checks an expression; also says what it reads.
pub(super) fn compile_checked(
    source: &str,
    phase: Phase,
) -> Result<(Program, Reads), CompileError> {
    let parsed = stdlib().compile(source).map_err(|e| CompileError::Parse {
        reason: e.to_string(),
    })?;
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
    fn expr(&mut self, e: &IdedExpr) -> Result<(), CompileError> {
        check_references(e, self)
    }
}

/// `s.matches('(')` would compile (and fail) on every evaluation and deny every request; a
/// literal pattern is checked once, here.
fn check_regex_literal(call: &cel::common::ast::CallExpr) -> Result<(), CompileError> {
    use cel::common::ast::LiteralValue;
    if call.func_name != "matches" {
        return Ok(());
    }
    let pattern = match (&call.target, call.args.as_slice()) {
        (Some(_), [p]) | (None, [_, p]) => p,
        _ => return Ok(()),
    };
    if let Expr::Literal(LiteralValue::String(p)) = &pattern.expr {
        regex::Regex::new(p.inner()).map_err(|e| CompileError::BadRegex {
            reason: e.to_string(),
        })?;
    }
    Ok(())
}

/// `inCidrRange(ip, '10.0.0/8')` would fail on every evaluation and deny every request; literal
/// ranges are checked once, here.
fn check_cidr_literals(call: &cel::common::ast::CallExpr) -> Result<(), CompileError> {
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
                return Err(CompileError::BadCidr {
                    range: text.to_owned(),
                    function: call.func_name.clone(),
                });
            }
        }
    }
    Ok(())
}

/// The timestamp accessors that take a time zone: `t.getHours("Europe/Paris")`.
const ZONED_ACCESSORS: [&str; 10] = [
    "getDate",
    "getDayOfMonth",
    "getDayOfWeek",
    "getDayOfYear",
    "getFullYear",
    "getHours",
    "getMilliseconds",
    "getMinutes",
    "getMonth",
    "getSeconds",
];

/// Whether the time zone `zone` can be applied without a time-zone database: empty or `UTC`
/// (what cel reads as UTC), or a `[+-]HH:MM` offset (cel reads anything with a colon as one
/// and checks its range when evaluated).
pub(crate) fn zone_without_database(zone: &str) -> bool {
    zone.is_empty() || zone == "UTC" || zone.contains(':')
}

/// `t.getHours('America/New_York')` would fail on every evaluation (the build has no zone
/// database: `.cargo/config.toml` keeps only UTC) and deny every request; a literal zone is
/// checked once, here.
fn check_time_zone_literal(call: &cel::common::ast::CallExpr) -> Result<(), CompileError> {
    use cel::common::ast::LiteralValue;
    if !ZONED_ACCESSORS.contains(&call.func_name.as_str()) {
        return Ok(());
    }
    let zone = match (&call.target, call.args.as_slice()) {
        (Some(_), [zone]) | (None, [_, zone]) => zone,
        _ => return Ok(()),
    };
    if let Expr::Literal(LiteralValue::String(zone)) = &zone.expr {
        if !zone_without_database(zone.inner()) {
            return Err(CompileError::NamedTimeZone {
                zone: zone.inner().to_owned(),
                function: call.func_name.clone(),
            });
        }
    }
    Ok(())
}

fn check_references(e: &IdedExpr, w: &mut Walk) -> Result<(), CompileError> {
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
                return Err(CompileError::NgrokMacro {
                    name: call.func_name.clone(),
                    instead,
                });
            }
            check_regex_literal(call)?;
            check_cidr_literals(call)?;
            check_time_zone_literal(call)?;
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
        Expr::Struct(_) => Err(CompileError::MessageConstruction),
        Expr::Literal(_) | Expr::Unspecified => Ok(()),
    }
}

impl Walk {
    fn path(&mut self, path: &[&str]) -> Result<(), CompileError> {
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

fn check_path(path: &[&str], phase: Phase, bound: &[String]) -> Result<(), CompileError> {
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
            return Err(CompileError::NoRequest {
                phase: phase.name(),
            })
        }
        other => {
            return Err(CompileError::UnknownVariable {
                variable: other.to_owned(),
                parent: None,
                known: if phase == Phase::HttpRequest {
                    "`conn.` or `req.`"
                } else {
                    "`conn.`"
                }
                .to_owned(),
            })
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
                        return Err(CompileError::NgrokVariable {
                            variable: name,
                            parent: walked,
                            known: known.join(", "),
                        });
                    }
                    return Err(CompileError::UnknownVariable {
                        variable: name,
                        parent: Some(walked),
                        known: known.join(", "),
                    });
                }
            },
            Shape::Map => return Ok(()),
            Shape::Leaf => {
                return Err(CompileError::NoField {
                    variable: walked,
                    field: (*field).to_owned(),
                });
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
