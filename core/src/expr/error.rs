//! Why an expression or a `${…}` template does not compile.

/// An expression the loader refuses, and why. Printed after the expression as
/// `expression `conn.foo == 1`: unknown variable `foo`; …`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CompileError {
    /// The CEL parser's message.
    #[error("does not parse: {reason}")]
    Parse { reason: String },
    /// A name that is no variable of the phase: an unknown root (`parent` is `None`, `known`
    /// lists the roots) or an unknown field of `parent` (`known` lists its fields).
    #[error(
        "unknown variable `{variable}`; {}",
        match parent {
            None => format!("variables start with {known}"),
            Some(parent) => format!("`{parent}` has {known}"),
        }
    )]
    UnknownVariable {
        variable: String,
        parent: Option<String>,
        known: String,
    },
    /// A variable ngrok has and tlsgate does not (yet) provide.
    #[error("`{variable}` is an ngrok variable tlsgate does not provide; `{parent}` has {known}")]
    NgrokVariable {
        variable: String,
        parent: String,
        known: String,
    },
    /// A field selected from a variable that has none.
    #[error("`{variable}` has no field `{field}`")]
    NoField { variable: String, field: String },
    #[error(
        "`req` does not exist in {phase}: the connection has no request yet (move the rule to \
         on_http_request)"
    )]
    NoRequest { phase: &'static str },
    #[error("`{name}` is an ngrok macro tlsgate does not provide; {instead}")]
    NgrokMacro { name: String, instead: &'static str },
    #[error("invalid regular expression in matches(): {reason}")]
    BadRegex { reason: String },
    #[error("`{range}` in {function}() is not a CIDR (10.0.0.0/8, 2001:db8::/32) or address")]
    BadCidr { range: String, function: String },
    /// tlsgate carries no time-zone database (it was a quarter of the filter's `.wasm`); a
    /// timestamp accessor takes `UTC` or a fixed offset.
    #[error(
        "time zone `{zone}` in {function}(): tlsgate knows no named zones; write \"UTC\" or an \
         offset such as \"+01:00\" or \"-05:30\""
    )]
    NamedTimeZone { zone: String, function: String },
    #[error("message construction is not supported")]
    MessageConstruction,
    /// Found by evaluating against sample facts (`cel` has no type checker).
    #[error("type error: {reason}")]
    Type { reason: String },
    #[error("type error in `${{{expression}}}`: {reason}")]
    TypeInTemplate { expression: String, reason: String },
    #[error("evaluates to {found}, but a rule expression must be true or false")]
    NotBoolean { found: &'static str },
    #[error("empty `${{}}` in `{text}`")]
    EmptyInterpolation { text: String },
    #[error("`${{` without a closing `}}` in `{text}`")]
    UnclosedInterpolation { text: String },
}

/// Why an expression or a `${…}` template failed at run time. The policy fails closed (a deny
/// counts as matched, anything else as failed: [`crate::policy`]); hosts log this as the
/// verdict's detail, so each variant prints the text those logs have always carried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// A rule expression gave a value that is not a boolean; `found` names its type
    /// (`a string`), as [`CompileError::NotBoolean`] does.
    #[error("`{expression}` gave {found}")]
    NotBoolean {
        expression: std::sync::Arc<str>,
        found: &'static str,
    },
    /// CEL could not evaluate a rule expression: `reason` is cel's message, `function` the
    /// function or method cel names, when it names one.
    #[error("`{expression}` failed: {reason}")]
    Failed {
        expression: std::sync::Arc<str>,
        function: Option<String>,
        reason: String,
    },
    /// The same for the `expression` of a `${expression}` in a template or `set-vars` value.
    #[error("`${{{expression}}}` failed: {reason}")]
    InterpolationFailed {
        expression: std::sync::Arc<str>,
        function: Option<String>,
        reason: String,
    },
    /// An `add-headers` value rendered to text HTTP cannot carry (a control character): the
    /// rule fails rather than the header being dropped or mangled.
    #[error("the value for `{header}` holds a control character")]
    ControlCharacter { header: String },
}

impl RuntimeError {
    /// A failure of `expression` as cel reported it; `interpolated` for a `${…}` part.
    pub(super) fn cel(
        expression: &std::sync::Arc<str>,
        error: &cel::ExecutionError,
        interpolated: bool,
    ) -> Self {
        let expression = std::sync::Arc::clone(expression);
        let function = match error {
            cel::ExecutionError::FunctionError { function, .. } => Some(function.clone()),
            cel::ExecutionError::NoSuchOverload(overload) => Some(overload.function().to_owned()),
            cel::ExecutionError::NotSupportedAsMethod { method, .. } => Some(method.clone()),
            _ => None,
        };
        let reason = error.to_string();
        if interpolated {
            Self::InterpolationFailed {
                expression,
                function,
                reason,
            }
        } else {
            Self::Failed {
                expression,
                function,
                reason,
            }
        }
    }

    /// The expression that failed (`None` for [`Self::ControlCharacter`]).
    pub fn expression(&self) -> Option<&str> {
        match self {
            Self::NotBoolean { expression, .. }
            | Self::Failed { expression, .. }
            | Self::InterpolationFailed { expression, .. } => Some(expression),
            Self::ControlCharacter { .. } => None,
        }
    }
}
