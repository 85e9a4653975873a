//! A serde serializer into `yaml_rust2`'s ordered tree, so the Istio resources are typed
//! structs (field names checked by the compiler and, in the tests, by Istio's CRD schemas) and
//! still come out in the order they are declared — `apiVersion`, `kind`, `metadata`, `spec` —
//! which `serde_json::Value` (sorted keys) would not keep.
//!
//! `None` is left out of a mapping, so `Option` fields need no `skip_serializing_if`. Only what
//! the resources use is supported; anything else is an error, never a panic.

use serde::ser::{self, Serialize};
use yaml_rust2::yaml::{Hash, Yaml};

#[derive(Debug)]
pub(crate) struct SerError(pub String);

impl std::fmt::Display for SerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SerError {}

impl ser::Error for SerError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        Self(msg.to_string())
    }
}

/// `value` as a YAML tree.
pub(crate) fn to_yaml<T: Serialize + ?Sized>(value: &T) -> Result<Yaml, SerError> {
    value.serialize(Serializer)
}

struct Serializer;

/// Sequences and mappings under construction.
pub(crate) struct Seq(Vec<Yaml>);
pub(crate) struct Map {
    hash: Hash,
    key: Option<Yaml>,
}

fn unsupported<T>(what: &str) -> Result<T, SerError> {
    Err(SerError(format!(
        "{what} cannot be written as a Kubernetes resource"
    )))
}

impl ser::Serializer for Serializer {
    type Ok = Yaml;
    type Error = SerError;
    type SerializeSeq = Seq;
    type SerializeTuple = Seq;
    type SerializeTupleStruct = Seq;
    type SerializeTupleVariant = ser::Impossible<Yaml, SerError>;
    type SerializeMap = Map;
    type SerializeStruct = Map;
    type SerializeStructVariant = ser::Impossible<Yaml, SerError>;

    fn serialize_bool(self, v: bool) -> Result<Yaml, SerError> {
        Ok(Yaml::Boolean(v))
    }
    fn serialize_i8(self, v: i8) -> Result<Yaml, SerError> {
        Ok(Yaml::Integer(v.into()))
    }
    fn serialize_i16(self, v: i16) -> Result<Yaml, SerError> {
        Ok(Yaml::Integer(v.into()))
    }
    fn serialize_i32(self, v: i32) -> Result<Yaml, SerError> {
        Ok(Yaml::Integer(v.into()))
    }
    fn serialize_i64(self, v: i64) -> Result<Yaml, SerError> {
        Ok(Yaml::Integer(v))
    }
    fn serialize_u8(self, v: u8) -> Result<Yaml, SerError> {
        Ok(Yaml::Integer(v.into()))
    }
    fn serialize_u16(self, v: u16) -> Result<Yaml, SerError> {
        Ok(Yaml::Integer(v.into()))
    }
    fn serialize_u32(self, v: u32) -> Result<Yaml, SerError> {
        Ok(Yaml::Integer(v.into()))
    }
    fn serialize_u64(self, v: u64) -> Result<Yaml, SerError> {
        i64::try_from(v)
            .map(Yaml::Integer)
            .map_err(|_| SerError(format!("{v} is too large for a YAML integer")))
    }
    fn serialize_f32(self, v: f32) -> Result<Yaml, SerError> {
        self.serialize_f64(v.into())
    }
    fn serialize_f64(self, v: f64) -> Result<Yaml, SerError> {
        Ok(Yaml::Real(v.to_string()))
    }
    fn serialize_char(self, v: char) -> Result<Yaml, SerError> {
        Ok(Yaml::String(v.to_string()))
    }
    fn serialize_str(self, v: &str) -> Result<Yaml, SerError> {
        Ok(Yaml::String(v.to_owned()))
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<Yaml, SerError> {
        unsupported("raw bytes")
    }
    fn serialize_none(self) -> Result<Yaml, SerError> {
        Ok(Yaml::Null)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<Yaml, SerError> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<Yaml, SerError> {
        Ok(Yaml::Null)
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<Yaml, SerError> {
        Ok(Yaml::Null)
    }
    /// Enums of names (`MUTUAL`, `FAIL_CLOSE`) are strings.
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<Yaml, SerError> {
        Ok(Yaml::String(variant.to_owned()))
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<Yaml, SerError> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<Yaml, SerError> {
        unsupported("an enum with data")
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<Seq, SerError> {
        Ok(Seq(Vec::with_capacity(len.unwrap_or(0))))
    }
    fn serialize_tuple(self, len: usize) -> Result<Seq, SerError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(self, _: &'static str, len: usize) -> Result<Seq, SerError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, SerError> {
        unsupported("an enum with data")
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Map, SerError> {
        Ok(Map {
            hash: Hash::new(),
            key: None,
        })
    }
    fn serialize_struct(self, _: &'static str, len: usize) -> Result<Map, SerError> {
        self.serialize_map(Some(len))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, SerError> {
        unsupported("an enum with data")
    }
}

impl ser::SerializeSeq for Seq {
    type Ok = Yaml;
    type Error = SerError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), SerError> {
        self.0.push(to_yaml(value)?);
        Ok(())
    }
    fn end(self) -> Result<Yaml, SerError> {
        Ok(Yaml::Array(self.0))
    }
}

impl ser::SerializeTuple for Seq {
    type Ok = Yaml;
    type Error = SerError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), SerError> {
        ser::SerializeSeq::serialize_element(self, value)
    }
    fn end(self) -> Result<Yaml, SerError> {
        ser::SerializeSeq::end(self)
    }
}

impl ser::SerializeTupleStruct for Seq {
    type Ok = Yaml;
    type Error = SerError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), SerError> {
        ser::SerializeSeq::serialize_element(self, value)
    }
    fn end(self) -> Result<Yaml, SerError> {
        ser::SerializeSeq::end(self)
    }
}

impl Map {
    fn insert(&mut self, key: Yaml, value: Yaml) {
        if !matches!(value, Yaml::Null) {
            self.hash.insert(key, value);
        }
    }
}

impl ser::SerializeMap for Map {
    type Ok = Yaml;
    type Error = SerError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), SerError> {
        self.key = Some(to_yaml(key)?);
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), SerError> {
        let key = self
            .key
            .take()
            .ok_or_else(|| SerError("a mapping value without its key".into()))?;
        let value = to_yaml(value)?;
        self.insert(key, value);
        Ok(())
    }
    fn end(self) -> Result<Yaml, SerError> {
        Ok(Yaml::Hash(self.hash))
    }
}

impl ser::SerializeStruct for Map {
    type Ok = Yaml;
    type Error = SerError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), SerError> {
        let value = to_yaml(value)?;
        self.insert(Yaml::String(key.to_owned()), value);
        Ok(())
    }
    fn end(self) -> Result<Yaml, SerError> {
        Ok(Yaml::Hash(self.hash))
    }
}
