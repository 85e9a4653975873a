//! The YAML the builders emit through: an ordered mapping, the conversion into YAML values,
//! paths and string lists.

use yaml_rust2::yaml::Hash;

use super::*;

/// A path as the string a policy holds.
pub(super) fn path_value(path: &Path) -> Yaml {
    Yaml::String(path.display().to_string())
}

/// A YAML mapping that keeps its keys in the order they were first set.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Map(Hash);

impl Map {
    pub(super) fn new() -> Self {
        Self::default()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Sets `key`, keeping its place if it was set before.
    pub(super) fn set(&mut self, key: &str, value: impl IntoYaml) {
        let key = Yaml::String(key.to_owned());
        let value = value.into_yaml();
        match self.0.get_mut(&key) {
            Some(slot) => *slot = value,
            None => {
                self.0.insert(key, value);
            }
        }
    }

    /// Appends `value` to the list under `key`, creating it.
    pub(super) fn push_to(&mut self, key: &str, value: Yaml) {
        let key = Yaml::String(key.to_owned());
        match self.0.get_mut(&key) {
            Some(Yaml::Array(items)) => items.push(value),
            _ => {
                self.0.insert(key, Yaml::Array(vec![value]));
            }
        }
    }
}

impl From<Map> for Yaml {
    fn from(map: Map) -> Self {
        Yaml::Hash(map.0)
    }
}

/// What [`Map::set`] takes: a YAML value, a string or a nested map.
pub(super) trait IntoYaml {
    fn into_yaml(self) -> Yaml;
}

impl IntoYaml for Yaml {
    fn into_yaml(self) -> Yaml {
        self
    }
}

impl IntoYaml for &str {
    fn into_yaml(self) -> Yaml {
        Yaml::String(self.to_owned())
    }
}

impl IntoYaml for Map {
    fn into_yaml(self) -> Yaml {
        self.into()
    }
}

pub(super) fn strings(items: &[String]) -> Yaml {
    Yaml::Array(items.iter().map(|s| Yaml::String(s.clone())).collect())
}
