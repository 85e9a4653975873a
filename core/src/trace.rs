//! What a decision looked at, step by step, for `tlsgate eval` and the playground.
//!
//! The decision functions take a [`Tracer`]; hosts pass [`Tracer::off`], which records nothing
//! and builds nothing (each step is a closure that only runs when tracing), so both hosts and
//! `eval` run the very same code and `eval`'s answer is theirs.

use serde::Serialize;

/// One step of a decision, in the order it was taken.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    /// The SNI was checked against the endpoint's host pattern.
    ServerName { sni: Option<String>, served: bool },
    /// The verification strategy was applied to the client certificate's class.
    Certificate {
        /// `conn.tls.client.verification`.
        verification: &'static str,
        strategy: Option<&'static str>,
        /// `None`: admitted; otherwise the deny reason.
        refused: Option<&'static str>,
    },
    /// A built-in request check (method, Host, target) and what it found.
    Request {
        check: &'static str,
        outcome: String,
    },
    /// A rule was reached.
    Rule {
        phase: &'static str,
        /// Position in the phase as written.
        index: usize,
        name: Option<String>,
    },
    /// One of the rule's expressions, and its value (`Err`: it could not be evaluated).
    Expression {
        source: String,
        value: Result<bool, String>,
    },
    /// The rule's expressions all held (or it had none): its actions run.
    Fired,
    /// An expression was false: the rule's actions do not run.
    NotFired,
    /// An action ran, and what it did.
    Action { kind: &'static str, effect: String },
}

/// Collects [`Step`]s when on.
#[derive(Debug, Default)]
pub struct Tracer {
    steps: Option<Vec<Step>>,
    /// What `log` actions recorded: kept whether tracing is on or off, because hosts write it
    /// into the access line.
    logged: Vec<(String, String)>,
}

impl Tracer {
    /// Records no steps: what hosts use.
    pub fn off() -> Self {
        Self {
            steps: None,
            logged: Vec::new(),
        }
    }

    /// Records every step.
    pub fn on() -> Self {
        Self {
            steps: Some(Vec::new()),
            logged: Vec::new(),
        }
    }

    /// A `log` action's field.
    pub fn log(&mut self, key: &str, value: String) {
        self.logged.push((key.to_owned(), value));
    }

    /// The `log` actions' fields, as the access line shows them: `log.KEY="VALUE"` each,
    /// space-separated, with `"` and `\` escaped and control characters as `\u{…}`; `None`
    /// when no `log` action ran. The same bytes in both hosts.
    pub fn logged(&self) -> Option<String> {
        if self.logged.is_empty() {
            return None;
        }
        let mut out = String::new();
        for (key, value) in &self.logged {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str("log.");
            out.push_str(key);
            out.push_str("=\"");
            for c in value.chars() {
                match c {
                    '"' | '\\' => {
                        out.push('\\');
                        out.push(c);
                    }
                    c if c.is_control() => out.push_str(&c.escape_unicode().to_string()),
                    c => out.push(c),
                }
            }
            out.push('"');
        }
        Some(out)
    }

    /// Records the step `make` builds, when on.
    #[inline]
    pub fn step(&mut self, make: impl FnOnce() -> Step) {
        if let Some(steps) = &mut self.steps {
            steps.push(make());
        }
    }

    /// The steps recorded so far, leaving none.
    pub fn take(&mut self) -> Vec<Step> {
        self.steps.as_mut().map(std::mem::take).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logged_fields_cannot_forge_the_access_line() {
        let mut off = Tracer::off();
        assert_eq!(off.logged(), None);
        off.log("event", "a \"quoted\" \\ value".into());
        off.log("who", "eve\n[forged] line\u{1b}".into());
        assert_eq!(
            off.logged().as_deref(),
            Some(
                "log.event=\"a \\\"quoted\\\" \\\\ value\" \
                 log.who=\"eve\\u{a}[forged] line\\u{1b}\""
            )
        );
        // Recorded whether steps are traced or not.
        assert!(off.take().is_empty());
    }
}
