//! Network layers on the wire: a registered layer kind and its parameters.
//!
//! Like streams, layer kinds are not enumerated by the protocol: a worker declares the kinds it
//! knows and checks a spec's layers against them when it plans and when it starts. On the wire
//! a layer is a one-key object, the kind mapping to its parameters:
//!
//! ```json
//! [{"linear": {"units": 100}}, {"relu": {}}, {"linear": {"units": 100}}, {"relu": {}}]
//! ```

use std::borrow::Cow;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::stream::{deserialize_one_key, serialize_one_key};
use crate::Params;

/// One layer of a network: its kind and the kind's parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerSpec {
    /// The registered kind (`linear`, `relu`, …).
    pub kind: String,
    /// The kind's parameters.
    pub params: Params,
}

impl LayerSpec {
    /// A layer of `kind` with `params`.
    pub fn new(kind: impl Into<String>, params: Params) -> Self {
        LayerSpec { kind: kind.into(), params }
    }
}

impl Serialize for LayerSpec {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_one_key(serializer, &self.kind, &self.params)
    }
}

impl<'de> Deserialize<'de> for LayerSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (kind, params) = deserialize_one_key(deserializer, "layer")?;
        Ok(LayerSpec { kind, params })
    }
}

impl JsonSchema for LayerSpec {
    fn schema_name() -> Cow<'static, str> {
        "LayerSpec".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A network layer: one key, the layer kind a worker declares, mapping to \
                            the kind's parameters (an object).",
            "type": "object",
            "minProperties": 1,
            "maxProperties": 1,
            "additionalProperties": {"type": "object"}
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_are_one_key_objects() {
        let text = r#"[{"linear":{"units":100}},{"relu":{}}]"#;
        let layers: Vec<LayerSpec> = serde_json::from_str(text).unwrap();
        assert_eq!((layers[0].kind.as_str(), layers[1].kind.as_str()), ("linear", "relu"));
        assert_eq!(layers[0].params.get("units"), Some(&serde_json::json!(100)));
        assert_eq!(serde_json::to_string(&layers).unwrap(), text);
        for bad in [r#"{}"#, r#"{"relu":{},"tanh":{}}"#, r#"{"linear":100}"#, r#""relu""#] {
            assert!(serde_json::from_str::<LayerSpec>(bad).is_err(), "{bad}");
        }
    }
}
