//! Shapes from values: [`deserialize`] turns a parsed document (or part of one) into a `raw`
//! DTO, with errors at the field path serde stopped at, and the helpers the conversions share.

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{ConfigError, ConfigErrorKind};
use crate::source::FieldPath;

pub(crate) fn deserialize<T: DeserializeOwned>(
    value: &Value,
    at: FieldPath,
) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let mut path = at;
        for segment in e.path().iter() {
            match segment {
                serde_path_to_error::Segment::Seq { index } => path = path.index(*index),
                serde_path_to_error::Segment::Map { key } => path = path.key(key),
                serde_path_to_error::Segment::Enum { variant } => path = path.key(variant),
                serde_path_to_error::Segment::Unknown => {}
            }
        }
        ConfigError::new(
            path,
            ConfigErrorKind::Shape(redact(e.into_inner().to_string())),
        )
    })
}

/// serde quotes the offending value (`invalid type: string "…", expected …`). A long or
/// multi-line value may be PEM, a key among them: keep the shape of the message, drop the value.
pub(super) fn redact(message: String) -> String {
    for prefix in ["invalid type: string \"", "invalid value: string \""] {
        if let Some(rest) = message.strip_prefix(prefix) {
            if let Some(end) = rest.rfind("\", expected") {
                let value = &rest[..end];
                if value.len() > 64 || value.contains('\n') {
                    return format!("{prefix}<{} bytes, not shown>{}", value.len(), &rest[end..]);
                }
            }
        }
    }
    message
}

pub(super) fn err(path: FieldPath, kind: ConfigErrorKind) -> ConfigError {
    ConfigError::new(path, kind)
}
