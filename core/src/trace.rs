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
}

impl Tracer {
    /// Records nothing: what hosts use.
    pub fn off() -> Self {
        Self { steps: None }
    }

    /// Records every step.
    pub fn on() -> Self {
        Self {
            steps: Some(Vec::new()),
        }
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
