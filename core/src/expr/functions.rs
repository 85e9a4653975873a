//! The CEL function library: the standard environment, built once, with ngrok's IP functions
//! and header macros.

use std::sync::Arc;

use cel::common::ast::{operators, Expr};
use cel::common::types::{CelBool, CelList, CelString};
use cel::{ExecutionError, IdedExpr};

/// The CEL standard environment, built once: `Context::default()` would rebuild its function
/// table on every evaluation, which dominated the per-request cost.
pub(super) fn stdlib() -> &'static Arc<cel::Env> {
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
