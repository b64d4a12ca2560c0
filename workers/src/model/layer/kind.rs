//! The layer registry: how network specs name layers, what parameters each takes, the shape
//! each maps its input to, and what each becomes in the built model.
//!
//! Adding a layer kind: one file with its parameter struct (serde, `deny_unknown_fields`) and
//! an implementation of [`LayerKind`], one line in [`registry`], and tests (see the module
//! documentation of [`super`]).

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{Part, Shape};
use crate::protocol::{LayerSpec, Params};

/// Static description of a layer kind.
pub trait LayerKind {
    /// The kind's name in recipes and specs (`linear`, `relu`, …).
    const KIND: &'static str;
    /// One line for the recipe reference.
    const SUMMARY: &'static str;
    /// The parameters; serde field names are the recipe's keys.
    type Params: DeserializeOwned + Serialize;
    /// The shape of the layer's output for an input of shape `input`, or what does not fit
    /// (naming the shapes: "takes a vector, found an image of 1×28×28").
    fn output_shape(params: &Self::Params, input: Shape) -> Result<Shape, String>;
    /// Trainable parameters of the layer for an input of shape `input` (which fits).
    fn parameters(params: &Self::Params, input: Shape) -> usize;
    /// What the layer becomes in the model the engine builds.
    fn part(params: &Self::Params) -> Part;

    /// The spec of a layer of this kind with `params`.
    fn spec(params: &Self::Params) -> LayerSpec {
        let text = serde_json::to_string(params).expect("layer parameters always serialise");
        LayerSpec::new(Self::KIND, serde_json::from_str(&text).expect("layer parameters are an object"))
    }
}

/// A registered layer kind, with its parameters still in their wire form.
pub struct LayerEntry {
    /// Name in recipes.
    pub kind: &'static str,
    /// One-line description.
    pub summary: &'static str,
    output_shape: fn(&Params, Shape) -> Result<Shape, String>,
    parameters: fn(&Params, Shape) -> Result<usize, String>,
    part: fn(&Params) -> Result<Part, String>,
}

impl LayerEntry {
    /// The output shape for `input`, or why the parameters are malformed or the input does
    /// not fit.
    pub fn output_shape(&self, params: &Params, input: Shape) -> Result<Shape, String> {
        (self.output_shape)(params, input)
    }

    /// Trainable parameters for `input`.
    pub fn parameters(&self, params: &Params, input: Shape) -> Result<usize, String> {
        (self.parameters)(params, input)
    }

    /// What the layer becomes in the built model.
    pub fn part(&self, params: &Params) -> Result<Part, String> {
        (self.part)(params)
    }
}

fn parse<K: LayerKind>(params: &Params) -> Result<K::Params, String> {
    serde_json::from_value(serde_json::Value::Object(params.to_object())).map_err(|e| e.to_string())
}

fn entry<K: LayerKind>() -> LayerEntry {
    LayerEntry {
        kind: K::KIND,
        summary: K::SUMMARY,
        output_shape: |p, input| K::output_shape(&parse::<K>(p)?, input),
        parameters: |p, input| parse::<K>(p).map(|typed| K::parameters(&typed, input)),
        part: |p| parse::<K>(p).map(|typed| K::part(&typed)),
    }
}

/// Every layer kind clorch knows, in the order the recipe reference lists them.
pub fn registry() -> Vec<LayerEntry> {
    vec![
        entry::<super::LinearKind>(),
        entry::<super::ReluKind>(),
        entry::<super::TanhKind>(),
        entry::<super::SigmoidKind>(),
        entry::<super::LeakyReluKind>(),
        entry::<super::Conv2dKind>(),
        entry::<super::MaxPool2dKind>(),
        entry::<super::AvgPool2dKind>(),
        entry::<super::BatchNormKind>(),
        entry::<super::BasicBlockKind>(),
        entry::<super::GlobalAvgPoolKind>(),
        entry::<super::FlattenKind>(),
    ]
}

/// The registered kind `kind`, or a message listing the known ones.
pub fn lookup(kind: &str) -> Result<LayerEntry, String> {
    registry().into_iter().find(|l| l.kind == kind).ok_or_else(|| {
        format!(
            "unknown layer kind `{kind}`; known kinds: {}",
            registry().iter().map(|l| l.kind).collect::<Vec<_>>().join(", ")
        )
    })
}

/// The spec of a layer of kind `K` with `params`: how code and tests name a layer without
/// writing its JSON.
pub fn spec_of<K: LayerKind>(params: &K::Params) -> LayerSpec {
    K::spec(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_unique_and_looked_up_by_name() {
        let kinds: Vec<_> = registry().iter().map(|l| l.kind).collect();
        let mut unique = kinds.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), kinds.len(), "{kinds:?}");
        assert_eq!(
            kinds,
            [
                "linear",
                "relu",
                "tanh",
                "sigmoid",
                "leaky_relu",
                "conv2d",
                "max_pool2d",
                "avg_pool2d",
                "batch_norm",
                "basic_block",
                "global_avg_pool",
                "flatten"
            ]
        );
        assert!(registry().iter().all(|l| !l.summary.is_empty()));
        let err = lookup("conv3d").err().unwrap();
        assert!(err.contains("unknown layer kind `conv3d`") && err.contains("linear, relu"), "{err}");
    }

    #[test]
    fn entries_parse_their_parameters() {
        let linear = lookup("linear").unwrap();
        let spec = spec_of::<super::super::LinearKind>(&super::super::LinearParams { units: 7 });
        assert_eq!(serde_json::to_string(&spec).unwrap(), r#"{"linear":{"units":7}}"#);
        assert_eq!(linear.output_shape(&spec.params, Shape::Vector(3)), Ok(Shape::Vector(7)));
        assert_eq!(linear.parameters(&spec.params, Shape::Vector(3)), Ok(28));
        let typo: Params = serde_json::from_str(r#"{"unit": 7}"#).unwrap();
        let err = linear.output_shape(&typo, Shape::Vector(3)).unwrap_err();
        assert!(err.contains("unknown field `unit`"), "{err}");
        let relu = lookup("relu").unwrap();
        assert!(relu.part(&serde_json::from_str(r#"{"slope": 1}"#).unwrap()).is_err());
    }
}
