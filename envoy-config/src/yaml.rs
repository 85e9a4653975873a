//! A few constructors that keep the generated document in the order a person reads it
//! (name first, then match, then what it does), which a serialised map would not.

use yaml_rust2::yaml::{Hash, Yaml};
use yaml_rust2::YamlEmitter;

pub(crate) fn map<const N: usize>(entries: [(&str, Yaml); N]) -> Yaml {
    let mut hash = Hash::new();
    for (key, value) in entries {
        if !matches!(value, Yaml::Null) {
            hash.insert(Yaml::String(key.to_owned()), value);
        }
    }
    Yaml::Hash(hash)
}

pub(crate) fn s(value: impl Into<String>) -> Yaml {
    Yaml::String(value.into())
}

pub(crate) fn int(value: impl Into<i64>) -> Yaml {
    Yaml::Integer(value.into())
}

pub(crate) fn boolean(value: bool) -> Yaml {
    Yaml::Boolean(value)
}

pub(crate) fn list(items: Vec<Yaml>) -> Yaml {
    Yaml::Array(items)
}

/// `None` leaves the key out (see [`map`]).
pub(crate) fn opt(value: Option<Yaml>) -> Yaml {
    value.unwrap_or(Yaml::Null)
}

/// `{"@type": …, rest…}`: a typed_config.
pub(crate) fn typed<const N: usize>(type_url: &str, entries: [(&str, Yaml); N]) -> Yaml {
    let mut hash = Hash::new();
    hash.insert(s("@type"), s(format!("type.googleapis.com/{type_url}")));
    if let Yaml::Hash(rest) = map(entries) {
        hash.extend(rest);
    }
    Yaml::Hash(hash)
}

pub(crate) fn emit(doc: &Yaml) -> Result<String, String> {
    let mut out = String::new();
    {
        let mut emitter = YamlEmitter::new(&mut out);
        emitter.multiline_strings(true);
        emitter.dump(doc).map_err(|e| format!("{e:?}"))?;
    }
    out.push('\n');
    Ok(out)
}
