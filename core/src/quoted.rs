//! [`Quoted`]: a user's value as an error quotes it, with pasted material redacted.

use std::fmt;

/// A value from the policy as an error quotes it. A value that is long, spans lines or holds
/// PEM is probably material pasted into the wrong field — a private key among them — so it is
/// replaced by its length when the error is made: the error (its `Debug` too) still says what
/// was wrong and where, never what the key is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quoted(String);

impl Quoted {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn new(value: &str) -> Self {
        if shown_as_length(value) {
            Self(format!("<{} bytes, not shown>", value.len()))
        } else {
            Self(value.to_owned())
        }
    }
}

impl From<&str> for Quoted {
    fn from(value: &str) -> Self {
        Self::new(value)
    }
}

impl From<&String> for Quoted {
    fn from(value: &String) -> Self {
        Self::new(value)
    }
}

impl From<String> for Quoted {
    fn from(value: String) -> Self {
        Self::new(&value)
    }
}

impl fmt::Display for Quoted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl PartialEq<str> for Quoted {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for Quoted {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

fn shown_as_length(value: &str) -> bool {
    value.len() > 200 || value.contains('\n') || value.contains("-----BEGIN")
}
