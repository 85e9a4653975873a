//! A phase's rules and their actions: [`Rule`], [`Action`].

use super::*;

/// One rule of a phase: an optional name, expressions that must all hold, and actions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rule {
    name: Option<String>,
    expressions: Vec<String>,
    actions: Vec<Yaml>,
}

impl Rule {
    /// A rule with no expressions (it always applies) and no actions yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// `name:`.
    pub fn named(mut self, name: &str) -> Self {
        self.name = Some(name.to_owned());
        self
    }

    /// Adds a CEL expression to `expressions`.
    pub fn when(mut self, expression: &str) -> Self {
        self.expressions.push(expression.to_owned());
        self
    }

    /// Adds an action.
    pub fn then(self, action: Action) -> Self {
        self.then_raw(action.to_value())
    }

    pub(super) fn then_raw(mut self, action: Yaml) -> Self {
        self.actions.push(action);
        self
    }

    pub(super) fn to_value(&self) -> Yaml {
        let mut rule = Map::new();
        if let Some(name) = &self.name {
            rule.set("name", name.as_str());
        }
        if !self.expressions.is_empty() {
            rule.set(
                "expressions",
                Yaml::Array(
                    self.expressions
                        .iter()
                        .map(|e| Yaml::String(e.clone()))
                        .collect(),
                ),
            );
        }
        rule.set("actions", Yaml::Array(self.actions.clone()));
        rule.into()
    }
}

/// An action of a rule.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// `type: deny`, with `config: { status_code }` when one is given.
    Deny {
        /// The HTTP status of the refusal (on_http_request only).
        status_code: Option<u16>,
    },
    /// `type: custom-response`: answer without the upstream.
    CustomResponse {
        /// `status_code`
        status_code: u16,
        /// `body`
        body: String,
        /// `headers`, in order.
        headers: Vec<(String, String)>,
    },
    /// `type: add-headers`: headers for the upstream (values may use `${…}`).
    AddHeaders(Vec<(String, String)>),
}

impl Action {
    /// `{ type: deny }`.
    pub fn deny() -> Self {
        Action::Deny { status_code: None }
    }

    /// `{ type: deny, config: { status_code } }`.
    pub fn deny_with(status_code: u16) -> Self {
        Action::Deny {
            status_code: Some(status_code),
        }
    }

    /// `{ type: custom-response, config: { status_code, body } }`; add headers with
    /// [`Action::header`].
    pub fn custom_response(status_code: u16, body: &str) -> Self {
        Action::CustomResponse {
            status_code,
            body: body.to_owned(),
            headers: Vec::new(),
        }
    }

    /// `{ type: add-headers, config: { headers } }`.
    pub fn add_headers(headers: &[(&str, &str)]) -> Self {
        Action::AddHeaders(
            headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    /// Adds a header to a custom response or to add-headers; a deny has none (panics).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        match &mut self {
            Action::CustomResponse { headers, .. } | Action::AddHeaders(headers) => {
                headers.push((name.to_owned(), value.to_owned()));
            }
            Action::Deny { .. } => panic!("a deny action has no headers"),
        }
        self
    }

    pub(super) fn to_value(&self) -> Yaml {
        let headers_value = |headers: &[(String, String)]| {
            let mut map = Map::new();
            for (name, value) in headers {
                map.set(name, value.as_str());
            }
            map
        };
        let mut action = Map::new();
        let mut config = Map::new();
        match self {
            Action::Deny { status_code } => {
                action.set("type", "deny");
                if let Some(code) = status_code {
                    config.set("status_code", Yaml::Integer((*code).into()));
                }
            }
            Action::CustomResponse {
                status_code,
                body,
                headers,
            } => {
                action.set("type", "custom-response");
                config.set("status_code", Yaml::Integer((*status_code).into()));
                config.set("body", body.as_str());
                if !headers.is_empty() {
                    config.set("headers", headers_value(headers));
                }
            }
            Action::AddHeaders(headers) => {
                action.set("type", "add-headers");
                config.set("headers", headers_value(headers));
            }
        }
        if !config.is_empty() {
            action.set("config", config);
        }
        action.into()
    }
}
