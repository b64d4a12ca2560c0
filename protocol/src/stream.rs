//! Task streams on the wire: a registered kind and its parameters.
//!
//! The protocol does not enumerate stream kinds: a worker declares the kinds it knows, with
//! their parameters and defaults (`clorch worker --describe`), and the orchestrator checks
//! recipes against that. On the wire a stream is a one-key object, the kind mapping to its
//! parameters:
//!
//! ```json
//! {"permuted_mnist": {"data_dir": "/data/mnist", "fingerprint": "5b1f…", "tasks": 10}}
//! ```
//!
//! Parameters keep the order the worker declares them in: the orchestrator plans with
//! *normalised* parameters (every default filled in, in declared order), so a run's id — a hash
//! of the spec's JSON — does not depend on how a recipe spelt them.
//!
//! Two parameter names mean the same for every stream: [`DATA_DIR`], the folder a stream reads
//! its data from (resolved to an absolute path by the orchestrator, and left out of the run's
//! identity), and [`FINGERPRINT`], a digest of those files the orchestrator fills in, which
//! identifies the data instead of its path.

use std::borrow::Cow;
use std::fmt;
use std::path::PathBuf;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// Name of the parameter holding a stream's data folder.
pub const DATA_DIR: &str = "data_dir";
/// Name of the parameter holding the fingerprint of a stream's data files.
pub const FINGERPRINT: &str = "fingerprint";

/// A task stream: its kind and the kind's parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamSpec {
    /// The registered kind (`permuted_mnist`, `synthetic_permuted`, …).
    pub kind: String,
    /// The kind's parameters, in declared order once normalised.
    pub params: Params,
}

impl StreamSpec {
    /// A stream of `kind` with `params`.
    pub fn new(kind: impl Into<String>, params: Params) -> Self {
        StreamSpec { kind: kind.into(), params }
    }

    /// The folder the stream reads its data from, if it reads any.
    pub fn data_dir(&self) -> Option<PathBuf> {
        self.params.get(DATA_DIR).and_then(Value::as_str).map(PathBuf::from)
    }

    /// Replaces the data folder (a stream without one is left alone).
    pub fn set_data_dir(&mut self, dir: &std::path::Path) {
        if self.params.get(DATA_DIR).is_some() {
            self.params.set(DATA_DIR, Value::String(dir.display().to_string()));
        }
    }

    /// The fingerprint recorded for the data, if any.
    pub fn fingerprint(&self) -> Option<&str> {
        self.params.get(FINGERPRINT).and_then(Value::as_str)
    }
}

impl Serialize for StreamSpec {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_one_key(serializer, &self.kind, &self.params)
    }
}

impl<'de> Deserialize<'de> for StreamSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (kind, params) = deserialize_one_key(deserializer, "stream")?;
        Ok(StreamSpec { kind, params })
    }
}

/// Writes a registered kind and its parameters as a one-key object (streams, layers).
pub(crate) fn serialize_one_key<S: Serializer>(
    serializer: S,
    kind: &str,
    params: &Params,
) -> Result<S::Ok, S::Error> {
    let mut map = serializer.serialize_map(Some(1))?;
    map.serialize_entry(kind, params)?;
    map.end()
}

/// Reads a one-key object, the kind of a `what` (`stream`, `layer`) mapping to its parameters.
pub(crate) fn deserialize_one_key<'de, D: Deserializer<'de>>(
    deserializer: D,
    what: &'static str,
) -> Result<(String, Params), D::Error> {
    struct OneKey(&'static str);
    impl<'de> Visitor<'de> for OneKey {
        type Value = (String, Params);
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            write!(f, "an object with one key, the {} kind, mapping to its parameters", self.0)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(String, Params), A::Error> {
            let what = self.0;
            let Some((kind, params)) = map.next_entry::<String, Params>()? else {
                return Err(serde::de::Error::custom(format!(
                    "expected a {what} kind, found an empty object"
                )));
            };
            if let Some(other) = map.next_key::<String>()? {
                return Err(serde::de::Error::custom(format!(
                    "a {what} has one kind, found `{kind}` and `{other}`"
                )));
            }
            Ok((kind, params))
        }
    }
    deserializer.deserialize_map(OneKey(what))
}

impl JsonSchema for StreamSpec {
    fn schema_name() -> Cow<'static, str> {
        "StreamSpec".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A task stream: one key, the stream kind a worker declares, mapping to \
                            the kind's parameters (an object).",
            "type": "object",
            "minProperties": 1,
            "maxProperties": 1,
            "additionalProperties": {"type": "object"}
        })
    }
}

/// Where a stream's parameters fail to parse: the path inside them and the parser's message
/// (serde's wording, which the orchestrator rephrases at the recipe's YAML position).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamProblem {
    /// From the stream's parameters down to the offending value, outermost first.
    pub path: Vec<ParamSegment>,
    /// What is wrong.
    pub message: String,
}

/// One step of a [`ParamProblem`]'s path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParamSegment {
    /// A key of an object.
    Key(String),
    /// An index of a list.
    Index(usize),
}

/// Named parameter values that keep their order (a JSON object on the wire).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Params(Vec<(String, Value)>);

impl Params {
    /// No parameters.
    pub fn new() -> Self {
        Params(Vec::new())
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// Sets `name`, in place when present, else at the end.
    pub fn set(&mut self, name: &str, value: Value) {
        match self.0.iter_mut().find(|(n, _)| n == name) {
            Some((_, v)) => *v = value,
            None => self.0.push((name.to_string(), value)),
        }
    }

    /// Removes `name`, returning its value.
    pub fn remove(&mut self, name: &str) -> Option<Value> {
        let i = self.0.iter().position(|(n, _)| n == name)?;
        Some(self.0.remove(i).1)
    }

    /// The parameters in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v))
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// As a JSON object (keys sorted: serde_json's map).
    pub fn to_object(&self) -> serde_json::Map<String, Value> {
        self.0.iter().cloned().collect()
    }
}

impl FromIterator<(String, Value)> for Params {
    fn from_iter<I: IntoIterator<Item = (String, Value)>>(iter: I) -> Self {
        let mut params = Params::new();
        for (n, v) in iter {
            params.set(&n, v);
        }
        params
    }
}

impl Serialize for Params {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (n, v) in &self.0 {
            map.serialize_entry(n, v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Params {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct InOrder;
        impl<'de> Visitor<'de> for InOrder {
            type Value = Params;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of parameters")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Params, A::Error> {
                let mut params = Vec::new();
                while let Some((name, value)) = map.next_entry::<String, Value>()? {
                    if params.iter().any(|(n, _)| *n == name) {
                        return Err(serde::de::Error::custom(format!("duplicate parameter `{name}`")));
                    }
                    params.push((name, value));
                }
                Ok(Params(params))
            }
        }
        deserializer.deserialize_map(InOrder)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_one_key_objects_whose_parameters_keep_their_order() {
        let text = r#"{"permuted_mnist":{"tasks":3,"data_dir":"/d","first_unpermuted":false}}"#;
        let s: StreamSpec = serde_json::from_str(text).unwrap();
        assert_eq!(s.kind, "permuted_mnist");
        assert_eq!(s.data_dir(), Some(PathBuf::from("/d")));
        assert_eq!(serde_json::to_string(&s).unwrap(), text);
        for bad in [r#"{}"#, r#"{"a":{},"b":{}}"#, r#"{"a":3}"#, r#"{"a":{"x":1,"x":2}}"#] {
            assert!(serde_json::from_str::<StreamSpec>(bad).is_err(), "{bad}");
        }
    }
}
