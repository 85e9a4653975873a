//! Reading policy files: documents, endpoints across files, and the errors that name the file,
//! the field path and the line.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{invalid, ConfigError, ConfigErrorKind};
use crate::source::{self, Document, FieldPath};

use super::*;

impl Config {
    /// Loads one or more policy files; endpoints of all files form one config. Certificate
    /// and key paths are read relative to the file that names them.
    pub fn load_files(paths: &[PathBuf], keys: KeyMode<'_>) -> Result<Self, ConfigError> {
        let mut config = Config {
            endpoints: Vec::new(),
            warnings: Vec::new(),
        };
        let mut documents = Vec::with_capacity(paths.len());
        for path in paths {
            let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
                file: Some(path.clone()),
                path: FieldPath::root(),
                location: None,
                kind: Box::new(ConfigErrorKind::Unreadable {
                    path: path.clone(),
                    reason: e.to_string(),
                }),
            })?;
            let reader = crate::pem::FileReader {
                base_dir: path.parent().unwrap_or(Path::new(".")).to_path_buf(),
            };
            let options = LoadOptions {
                reader: &reader,
                keys,
            };
            let (part, doc) =
                Self::load_document(&text, Some(path), &options, config.endpoints.len())?;
            config.endpoints.extend(part.endpoints);
            config.warnings.extend(part.warnings);
            documents.push(doc);
        }
        // Each file was checked alone; hosts may still collide across files.
        check_unique_hosts(&config.endpoints).map_err(|(i, e)| {
            // Files were loaded in order, so the endpoints before this file's are the others'.
            let first_of_file = config.endpoints[..i]
                .iter()
                .filter(|ep| ep.file != config.endpoints[i].file)
                .count();
            let path = relative_path(&e.path, first_of_file);
            let file = config.endpoints[i].file.clone();
            let doc = paths
                .iter()
                .position(|p| Some(p) == file.as_ref())
                .and_then(|n| documents.get(n));
            ConfigError {
                location: doc.and_then(|d| d.locate(&path)),
                file,
                path,
                kind: e.kind,
            }
        })?;
        Ok(config)
    }

    /// Loads a policy from text. `file` names it in errors; `first_index` numbers endpoints
    /// when several files are combined.
    pub fn load_str(
        text: &str,
        file: Option<&Path>,
        options: &LoadOptions<'_>,
        first_index: usize,
    ) -> Result<Self, ConfigError> {
        Self::load_document(text, file, options, first_index).map(|(config, _)| config)
    }

    fn load_document(
        text: &str,
        file: Option<&Path>,
        options: &LoadOptions<'_>,
        first_index: usize,
    ) -> Result<(Self, Document), ConfigError> {
        let with_file = |mut e: ConfigError, doc: Option<&Document>| {
            e.file = file.map(Path::to_path_buf);
            if e.location.is_none() {
                e.location = doc.and_then(|d| d.locate(&e.path));
            }
            e
        };
        let doc = source::parse(text).map_err(|e| {
            with_file(
                ConfigError {
                    file: None,
                    path: FieldPath::root(),
                    location: e.location,
                    kind: Box::new(ConfigErrorKind::Syntax(e.message)),
                },
                None,
            )
        })?;
        let raw: RawConfig =
            deserialize(&doc.value, FieldPath::root()).map_err(|e| with_file(e, Some(&doc)))?;
        let mut warnings = Vec::new();
        let mut endpoints: Vec<Endpoint> = Vec::new();
        let RawConfig {
            endpoints: raw_endpoints,
        } = raw;
        if raw_endpoints.is_empty() {
            return Err(with_file(
                ConfigError::new(
                    FieldPath::root().key("endpoints"),
                    invalid("the policy has no endpoints; add at least one under `endpoints:`"),
                ),
                Some(&doc),
            ));
        }
        for (i, raw) in raw_endpoints.into_iter().enumerate() {
            let path = FieldPath::root().key("endpoints").index(i);
            let endpoint =
                Endpoint::from_raw(raw, first_index + i, file, path, options, &mut warnings)
                    .map_err(|e| with_file(e, Some(&doc)))?;
            endpoints.push(endpoint);
        }
        check_unique_hosts(&endpoints).map_err(|(_, e)| with_file(e, Some(&doc)))?;
        let warnings = warnings
            .into_iter()
            .map(|w| with_file(w, Some(&doc)))
            .collect();
        Ok((
            Config {
                endpoints,
                warnings,
            },
            doc,
        ))
    }
}

/// Rewrites `endpoints[N]…` to `endpoints[first]…` numbering.
pub(super) fn relative_path(path: &FieldPath, first: usize) -> FieldPath {
    let mut out = FieldPath::root();
    for (n, segment) in path.segments().iter().enumerate() {
        out = match segment {
            crate::source::Segment::Index(i) if n == 1 => out.index(i - first),
            crate::source::Segment::Index(i) => out.index(*i),
            crate::source::Segment::Key(k) => out.key(k),
        };
    }
    out
}

/// Two endpoints on one bind may not claim the same host, nor mix https and tls (one listener
/// speaks one protocol after the handshake). Returns the position of the offending endpoint.
pub(super) fn check_unique_hosts(endpoints: &[Endpoint]) -> Result<(), (usize, ConfigError)> {
    for (i, a) in endpoints.iter().enumerate() {
        for b in &endpoints[..i] {
            let at = |key: &str| FieldPath::root().key("endpoints").index(i).key(key);
            if a.bind == b.bind && a.host == b.host {
                let other = match (&b.file, a.file == b.file) {
                    (Some(file), false) => format!("{} in {}", b.url, file.display()),
                    _ => format!("endpoints[{}]", b.index - endpoints[0].index),
                };
                let kind = ConfigErrorKind::DuplicateHost {
                    host: a.host.to_string(),
                    bind: a.bind.to_string(),
                    other,
                };
                return Err((i, ConfigError::new(at("url"), kind)));
            }
            if a.bind == b.bind && a.scheme != b.scheme {
                let kind = invalid(format!(
                    "{} shares {} with endpoints[{}], which has another scheme; \
                     https and tls endpoints need their own bind addresses",
                    a.url, a.bind, b.index
                ));
                return Err((i, ConfigError::new(at("bind"), kind)));
            }
        }
    }
    Ok(())
}

pub(super) fn deserialize<T: DeserializeOwned>(
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
