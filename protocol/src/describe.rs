//! What an external worker says about itself when run with `--describe`: the stream kinds it
//! reads and, per method it implements, its parameters with types, defaults and docs. The
//! orchestrator checks a recipe's method entries against it exactly as it checks built-in
//! methods against their registry (unknown or mistyped parameters are refused with the
//! recipe's file:line:column), and fills in the defaults so that every spec lists every
//! parameter.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The JSON document `<command> --describe` prints on standard output.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkerDescription {
    /// The protocol version the worker speaks; must equal [`crate::PROTOCOL_VERSION`].
    pub protocol: u32,
    /// The worker's name, for messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
    /// Stream kinds (`permuted_mnist`, `split_mnist`, …) the worker can train on; empty or
    /// absent: any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub streams: Vec<String>,
    /// The methods the worker implements; a recipe entry names one by its `kind` (or its
    /// `name` when it gives no `kind`).
    pub methods: Vec<MethodDescription>,
}

/// One method of an external worker.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MethodDescription {
    /// The method kind, as `spec.method.kind` will carry it.
    pub kind: String,
    /// One line on what it is (shown by `clorch methods`-style listings and errors).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub doc: String,
    /// Its hyper-parameters, in the order the worker declares them.
    #[serde(default)]
    pub params: Vec<ParamDescription>,
}

/// One hyper-parameter of an external worker's method.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ParamDescription {
    /// The parameter's name, as the recipe and `spec.method.params` write it.
    pub name: String,
    /// Its JSON type.
    #[serde(rename = "type")]
    pub ty: ParamType,
    /// The value used when the recipe gives none; absent: the recipe must give one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<serde_json::Value>,
    /// What it does.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub doc: String,
    /// The only values allowed, if the parameter is a choice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub choices: Option<Vec<serde_json::Value>>,
}

/// The JSON types a parameter can have.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    /// A number (an integer is accepted and kept as written).
    Float,
    /// An integer.
    Int,
    /// `true` or `false`.
    Bool,
    /// A string.
    String,
}

impl ParamType {
    /// Whether `value` has this type.
    pub fn admits(self, value: &serde_json::Value) -> bool {
        match self {
            ParamType::Float => value.is_number(),
            ParamType::Int => value.is_i64() || value.is_u64(),
            ParamType::Bool => value.is_boolean(),
            ParamType::String => value.is_string(),
        }
    }

    /// The type's name as a recipe error says it.
    pub fn name(self) -> &'static str {
        match self {
            ParamType::Float => "a number",
            ParamType::Int => "an integer",
            ParamType::Bool => "true or false",
            ParamType::String => "a string",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_description_reads_with_defaults_optional_and_types_checked() {
        let text = r#"{"protocol":1,"worker":"numpy-mlp","streams":["permuted_mnist"],
            "methods":[{"kind":"er","doc":"experience replay","params":[
              {"name":"lr","type":"float","default":0.01,"doc":"step size"},
              {"name":"buffer","type":"int"},
              {"name":"mode","type":"string","default":"reservoir","choices":["reservoir","ring"]}]}]}"#;
        let d: WorkerDescription = serde_json::from_str(text).unwrap();
        let p = &d.methods[0].params;
        assert_eq!(p[1].default, None);
        assert!(p[0].ty.admits(&serde_json::json!(1)) && !p[1].ty.admits(&serde_json::json!(1.5)));
        assert!(!ParamType::String.admits(&serde_json::json!(1)));
        let unknown = r#"{"protocol":1,"methods":[{"kind":"x","params":[{"name":"a","type":"tensor"}]}]}"#;
        assert!(serde_json::from_str::<WorkerDescription>(unknown).is_err());
    }
}
