//! Reading policy text into a value tree while remembering where every node was written.
//!
//! Serde alone reports a line for syntax errors, but most policy mistakes are valid YAML with a
//! wrong meaning (a key that does not match its certificate, `min_version` above `max_version`,
//! a CEL expression naming an unknown field). Those are found after deserialization, when the
//! parser's position is long gone. So the loader parses once into a [`Document`]: a
//! `serde_json::Value` plus a map from every [`FieldPath`] to the [`Location`] it came from.
//! Any later error carries a path, and the path finds its line.
//!
//! JSON is read by the same parser (JSON is YAML 1.2 flow syntax), so both formats get the same
//! positions and the same strictness: duplicate keys are an error in either.

use std::collections::HashMap;
use std::fmt;

use serde_json::{Map, Number, Value};
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A 1-based line and column in a policy file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// One step into a document: a mapping key or a sequence index.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Segment {
    Key(String),
    Index(usize),
}

/// Where a value sits in a policy, printed as `endpoints[0].traffic_policy.on_tcp_connect[1]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct FieldPath(Vec<Segment>);

impl FieldPath {
    pub fn root() -> Self {
        Self(Vec::new())
    }

    #[must_use]
    pub fn key(&self, key: &str) -> Self {
        let mut segments = self.0.clone();
        segments.push(Segment::Key(key.to_owned()));
        Self(segments)
    }

    #[must_use]
    pub fn index(&self, index: usize) -> Self {
        let mut segments = self.0.clone();
        segments.push(Segment::Index(index));
        Self(segments)
    }

    pub fn segments(&self) -> &[Segment] {
        &self.0
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    fn parent(&self) -> Option<Self> {
        let (_, rest) = self.0.split_last()?;
        Some(Self(rest.to_vec()))
    }

    pub(crate) fn push(&mut self, segment: Segment) {
        self.0.push(segment);
    }

    pub(crate) fn pop(&mut self) {
        self.0.pop();
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(document)");
        }
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(key) if i == 0 => f.write_str(key)?,
                Segment::Key(key) => write!(f, ".{key}")?,
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// A parsed policy document: the values and where each was written.
#[derive(Debug, Clone)]
pub struct Document {
    pub value: Value,
    locations: HashMap<FieldPath, Location>,
}

impl Document {
    /// The location of `path`, or of its nearest ancestor that was written down (a missing
    /// field is reported at the mapping that lacks it).
    pub fn locate(&self, path: &FieldPath) -> Option<Location> {
        let mut current = Some(path.clone());
        while let Some(p) = current {
            if let Some(location) = self.locations.get(&p) {
                return Some(*location);
            }
            current = p.parent();
        }
        None
    }
}

/// Why a text could not be read as a policy document at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub message: String,
    pub location: Option<Location>,
}

/// Parses every document of a YAML stream (`---`-separated, as `kubectl apply -f` reads them),
/// each with its own positions (lines count from the start of the text). Empty documents
/// (a trailing `---`) are left out.
pub fn parse_stream(text: &str) -> Result<Vec<Document>, SyntaxError> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    parser.load(&mut builder, true).map_err(|e| SyntaxError {
        message: e.info().to_owned(),
        location: Some(location(*e.marker())),
    })?;
    if let Some(error) = builder.error {
        return Err(error);
    }
    Ok(builder
        .documents
        .into_iter()
        .filter(|d| !d.value.is_null())
        .collect())
}

/// Parses YAML or JSON text into a [`Document`].
pub fn parse(text: &str) -> Result<Document, SyntaxError> {
    let mut documents = parse_stream(text)?;
    match documents.len() {
        0 => Err(SyntaxError {
            message: "the file is empty; a policy needs an `endpoints:` list".into(),
            location: None,
        }),
        1 => Ok(documents.remove(0)),
        n => Err(SyntaxError {
            message: format!(
                "the file holds {n} YAML documents; a tlsgate policy is one document \
                 (split the others into their own files and pass each with -c)"
            ),
            location: None,
        }),
    }
}

fn location(mark: Marker) -> Location {
    Location {
        line: mark.line(),
        column: mark.col() + 1,
    }
}

enum Frame {
    Sequence(Vec<Value>, usize),
    /// The mapping so far and, when a key has been read, that key.
    Mapping(Map<String, Value>, usize, Option<String>),
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    path: FieldPath,
    documents: Vec<Document>,
    anchors: HashMap<usize, Value>,
    locations: HashMap<FieldPath, Location>,
    error: Option<SyntaxError>,
}

impl Builder {
    /// The path the next value will take, once it is attached to the current container.
    fn next_path(&self) -> FieldPath {
        let mut path = self.path.clone();
        match self.stack.last() {
            Some(Frame::Sequence(items, _)) => path.push(Segment::Index(items.len())),
            Some(Frame::Mapping(_, _, Some(key))) => path.push(Segment::Key(key.clone())),
            _ => {}
        }
        path
    }

    fn fail(&mut self, message: String, mark: Marker) {
        if self.error.is_none() {
            self.error = Some(SyntaxError {
                message,
                location: Some(location(mark)),
            });
        }
    }

    /// Attaches a finished value to its parent (or ends the document).
    fn attach(&mut self, value: Value, anchor: usize, mark: Marker) {
        if anchor > 0 {
            self.anchors.insert(anchor, value.clone());
        }
        match self.stack.last_mut() {
            None => {
                // A document ends: its positions and anchors are its own.
                self.anchors.clear();
                self.documents.push(Document {
                    value,
                    locations: std::mem::take(&mut self.locations),
                });
            }
            Some(Frame::Sequence(items, _)) => items.push(value),
            Some(Frame::Mapping(map, _, pending)) => match pending.take() {
                Some(key) => {
                    map.insert(key, value);
                }
                None => match value {
                    Value::String(key) => {
                        if map.contains_key(&key) {
                            let message = format!(
                                "the key `{key}` appears twice in one mapping; \
                                 keep one (a repeated key would silently override the first)"
                            );
                            self.fail(message, mark);
                            return;
                        }
                        let mut key_path = self.path.clone();
                        key_path.push(Segment::Key(key.clone()));
                        self.locations.entry(key_path).or_insert(location(mark));
                        if let Some(Frame::Mapping(_, _, pending)) = self.stack.last_mut() {
                            *pending = Some(key);
                        }
                    }
                    other => {
                        let message = format!("mapping keys must be strings, found `{other}`");
                        self.fail(message, mark);
                    }
                },
            },
        }
    }

    fn is_key_position(&self) -> bool {
        matches!(self.stack.last(), Some(Frame::Mapping(_, _, None)))
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, event: Event, mark: Marker) {
        if self.error.is_some() {
            return;
        }
        match event {
            Event::Scalar(text, style, anchor, tag) => {
                let is_key = self.is_key_position();
                let value = if is_key {
                    Value::String(text)
                } else {
                    let path = self.next_path();
                    self.locations.insert(path, location(mark));
                    scalar(text, style, tag.as_ref())
                };
                self.attach(value, anchor, mark);
            }
            Event::SequenceStart(anchor, _) => {
                if self.is_key_position() {
                    self.fail("mapping keys must be strings, found a list".into(), mark);
                    return;
                }
                let path = self.next_path();
                self.locations.insert(path.clone(), location(mark));
                self.path = path;
                self.stack.push(Frame::Sequence(Vec::new(), anchor));
            }
            Event::MappingStart(anchor, _) => {
                if self.is_key_position() {
                    self.fail("mapping keys must be strings, found a mapping".into(), mark);
                    return;
                }
                let path = self.next_path();
                self.locations.insert(path.clone(), location(mark));
                self.path = path;
                self.stack.push(Frame::Mapping(Map::new(), anchor, None));
            }
            Event::SequenceEnd => {
                if let Some(Frame::Sequence(items, anchor)) = self.stack.pop() {
                    self.path.pop();
                    self.attach(Value::Array(items), anchor, mark);
                }
            }
            Event::MappingEnd => {
                if let Some(Frame::Mapping(map, anchor, _)) = self.stack.pop() {
                    self.path.pop();
                    self.attach(Value::Object(map), anchor, mark);
                }
            }
            Event::Alias(id) => match self.anchors.get(&id).cloned() {
                Some(value) => {
                    if !self.is_key_position() {
                        let path = self.next_path();
                        self.locations.insert(path, location(mark));
                    }
                    self.attach(value, 0, mark);
                }
                None => self.fail("alias to an unknown anchor".into(), mark),
            },
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart
            | Event::DocumentEnd => {}
        }
    }
}

/// Resolves a scalar with the YAML 1.2 core schema: quoted text is always a string, plain text
/// may be null, a boolean or a number. (YAML 1.1's `yes`/`no`/`on`/`off` stay strings.)
fn scalar(text: String, style: TScalarStyle, tag: Option<&Tag>) -> Value {
    if let Some(tag) = tag {
        if tag.suffix == "str" {
            return Value::String(text);
        }
    }
    if style != TScalarStyle::Plain {
        return Value::String(text);
    }
    match text.as_str() {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    if let Ok(i) = text.parse::<i64>() {
        return Value::Number(i.into());
    }
    if looks_like_float(&text) {
        if let Some(n) = text.parse::<f64>().ok().and_then(Number::from_f64) {
            return Value::Number(n);
        }
    }
    Value::String(text)
}

fn looks_like_float(text: &str) -> bool {
    let body = text.strip_prefix(['-', '+']).unwrap_or(text);
    !body.is_empty()
        && body
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit() || c == '.')
        && body
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '-' | '+'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(p: &[Segment]) -> FieldPath {
        FieldPath(p.to_vec())
    }

    #[test]
    fn records_the_line_of_nested_values() {
        let doc = parse("endpoints:\n  - url: https://a.example\n    bind: 127.0.0.1:1\n")
            .expect("parses");
        let bind = path(&[
            Segment::Key("endpoints".into()),
            Segment::Index(0),
            Segment::Key("bind".into()),
        ]);
        assert_eq!(doc.locate(&bind).map(|l| l.line), Some(3));
        assert_eq!(bind.to_string(), "endpoints[0].bind");
    }

    #[test]
    fn a_missing_field_is_located_at_its_mapping() {
        let doc = parse("a:\n  b: 1\n").expect("parses");
        let missing = FieldPath::root().key("a").key("c");
        assert_eq!(doc.locate(&missing).map(|l| l.line), Some(2));
    }

    #[test]
    fn reads_json_with_the_same_positions() {
        let doc = parse("{\n \"a\": [1,\n  \"x\"]\n}").expect("parses");
        assert_eq!(doc.value["a"][1], Value::String("x".into()));
        assert_eq!(
            doc.locate(&FieldPath::root().key("a").index(1))
                .map(|l| l.line),
            Some(3)
        );
    }

    #[test]
    fn quoted_versions_stay_strings_and_plain_ones_are_numbers() {
        let doc = parse("q: \"1.3\"\np: 1.3\nn: ~\nb: yes\n").expect("parses");
        assert_eq!(doc.value["q"], Value::String("1.3".into()));
        assert!(doc.value["p"].is_f64());
        assert!(doc.value["n"].is_null());
        assert_eq!(doc.value["b"], Value::String("yes".into()));
    }

    #[test]
    fn rejects_duplicate_keys() {
        let err = parse("a: 1\nb: 2\na: 3\n").expect_err("duplicate");
        assert!(err.message.contains("`a` appears twice"), "{}", err.message);
        assert_eq!(err.location.map(|l| l.line), Some(3));
    }

    #[test]
    fn reports_syntax_errors_with_a_position() {
        let err = parse("a: [1, 2\nb: 3\n").expect_err("unclosed");
        assert!(err.location.is_some());
    }

    #[test]
    fn reads_each_document_of_a_stream_with_its_own_lines() {
        let docs = parse_stream("kind: A\n---\nkind: B\nspec:\n  x: 1\n---\n").expect("parses");
        assert_eq!(docs.len(), 2, "the empty trailing document is left out");
        assert_eq!(docs[1].value["kind"], Value::String("B".into()));
        let x = FieldPath::root().key("spec").key("x");
        assert_eq!(docs[1].locate(&x).map(|l| l.line), Some(5));
        assert_eq!(docs[0].locate(&x).map(|l| l.line), Some(1));
        let err = parse("a: 1\n---\nb: 2\n").expect_err("two documents");
        assert!(err.message.contains("2 YAML documents"), "{}", err.message);
    }

    #[test]
    fn resolves_aliases() {
        let doc = parse("a: &x {k: v}\nb: *x\n").expect("parses");
        assert_eq!(doc.value["b"]["k"], Value::String("v".into()));
    }
}
