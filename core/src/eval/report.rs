//! How an [`Evaluation`] reads: the conformance table's outcome labels, the JSON the
//! playground and `tlsgate eval --format json` print, and the text a person reads.

use serde_json::{json, Value};

use super::{Evaluation, Outcome};
use crate::trace::Step;

impl Outcome {
    /// The conformance table's spelling.
    pub fn label(&self) -> String {
        match self {
            Self::Refused(_) => "refused".into(),
            Self::Closed(_) => "closed".into(),
            Self::Status(status, _) => status.to_string(),
            Self::Forward => "forward".into(),
            Self::Admitted => "admitted".into(),
        }
    }
}

impl Evaluation {
    pub fn to_json(&self) -> Value {
        let (outcome, reason) = match &self.outcome {
            Outcome::Refused(why) | Outcome::Closed(why) => {
                (self.outcome.label(), Some(why.clone()))
            }
            Outcome::Status(_, why) => (self.outcome.label(), why.clone()),
            Outcome::Forward | Outcome::Admitted => (self.outcome.label(), None),
        };
        json!({
            "endpoint": self.endpoint,
            "certificate": self.certificate.iter().map(|(k, v)| json!({"name": k, "value": v})).collect::<Vec<_>>(),
            "notes": self.notes,
            "steps": self.steps,
            "outcome": outcome,
            "reason": reason,
            "upstream": self.upstream.as_ref().map(|u| json!({
                "url": u.url,
                "method": u.method,
                "authority": u.authority,
                "target": u.target,
                "headers": u.headers.iter().map(|(n, v)| json!([n, v])).collect::<Vec<_>>(),
                "removed": u.removed,
            })),
        })
    }

    /// The trace as a person reads it.
    pub fn to_text(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        match &self.endpoint {
            Some(e) => {
                let _ = writeln!(out, "endpoint: {e}");
            }
            None => out.push_str("endpoint: none\n"),
        }
        if !self.certificate.is_empty() {
            out.push_str("certificate:\n");
            for (k, v) in &self.certificate {
                let _ = writeln!(out, "  {k} = {v}");
            }
        }
        for step in &self.steps {
            let line = match step {
                Step::ServerName { sni, served } => format!(
                    "server name {}: {}",
                    sni.as_deref().unwrap_or("(none)"),
                    if *served {
                        "served here"
                    } else {
                        "not served here"
                    }
                ),
                Step::Certificate {
                    verification,
                    strategy,
                    refused,
                } => format!(
                    "client certificate: {verification}{}{}",
                    strategy.map(|s| format!(" under {s}")).unwrap_or_default(),
                    match refused {
                        Some(r) => format!(" -> refused ({r})"),
                        None => " -> admitted".into(),
                    }
                ),
                Step::Request { check, outcome } => format!("request {check}: {outcome}"),
                Step::Rule { phase, index, name } => format!(
                    "{phase}[{index}]{}",
                    name.as_deref()
                        .map(|n| format!(" {n:?}"))
                        .unwrap_or_default()
                ),
                Step::Expression { source, value } => match value {
                    Ok(v) => format!("  {source}  =>  {v}"),
                    Err(e) => format!("  {source}  =>  error: {e}"),
                },
                Step::Fired => "  fired".into(),
                Step::NotFired => "  not fired".into(),
                Step::Action { kind, effect } => format!("  {kind}: {effect}"),
            };
            out.push_str(&line);
            out.push('\n');
        }
        let verdict = match &self.outcome {
            Outcome::Refused(why) => format!("REFUSED at the handshake: {why}"),
            Outcome::Closed(why) => format!("CLOSED after the handshake: {why}"),
            Outcome::Status(status, why) => format!(
                "ANSWERED {status}{}",
                why.as_deref()
                    .map(|w| format!(" ({w})"))
                    .unwrap_or_default()
            ),
            Outcome::Forward => "FORWARDED".into(),
            Outcome::Admitted => "ADMITTED (give --request to evaluate on_http_request)".into(),
        };
        let _ = writeln!(out, "verdict: {verdict}");
        if let Some(up) = &self.upstream {
            let _ = writeln!(
                out,
                "upstream {}: {} {} (authority {})",
                up.url, up.method, up.target, up.authority
            );
            for (n, v) in &up.headers {
                let _ = writeln!(out, "  {n}: {}", shortened(v));
            }
            if !up.removed.is_empty() {
                let _ = writeln!(out, "  removed by the policy: {}", up.removed.join(", "));
            }
        }
        for note in &self.notes {
            let _ = writeln!(out, "note: {note}");
        }
        out
    }
}

/// A long value (an XFCC header carries the whole certificate) cut for reading; JSON has it all.
fn shortened(value: &str) -> String {
    const KEEP: usize = 120;
    if value.len() <= KEEP + 20 {
        return value.to_owned();
    }
    let cut = (0..=KEEP)
        .rev()
        .find(|i| value.is_char_boundary(*i))
        .unwrap_or(0);
    format!(
        "{}… ({} bytes; --format json shows all)",
        &value[..cut],
        value.len()
    )
}
