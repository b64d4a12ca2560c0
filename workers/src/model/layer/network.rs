//! A network spec resolved to its layers, their shapes checked from the stream's input, and
//! the form the engines compute.

use super::{lookup, Part, Shape};
use crate::model::convnet::{LayerSpec as ConvLayer, Shape as ConvShape};
use crate::protocol::{Activation, Architecture, LayerSpec, NetworkSpec, Params};

/// One layer of a [`Network`], its shapes checked.
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedLayer {
    /// The layer as the spec (or the `hidden` shorthand, or the output head) gives it.
    pub spec: LayerSpec,
    /// Shape of its input.
    pub input: Shape,
    /// Shape of its output.
    pub output: Shape,
    /// Its trainable parameters.
    pub parameters: usize,
    /// What it becomes in the built model.
    pub part: Part,
}

/// A network spec resolved to a list of layers — `hidden` expanded to `linear`/activation
/// pairs, `layers` as written, or a named `architecture` expanded, then the `linear` output
/// head — with every layer's shape checked. A `hidden` network (a multi-layer perceptron)
/// flattens an image input first, as it always has on MNIST; a `layers` network says where it
/// flattens.
#[derive(Clone, Debug, PartialEq)]
pub struct Network {
    /// The layers, input side first; the last is the output head.
    pub layers: Vec<PlannedLayer>,
    /// Whether the spec wrote its hidden part as `layers` (else as `hidden`, or as an
    /// architecture).
    written_as_layers: bool,
    /// The named architecture the layers come from, if any but `mlp`.
    architecture: Option<Architecture>,
    /// `network.activation`: the activation of a `hidden` network.
    activation: Activation,
}

/// The widest layer a network may have (recipes/README.md, "Bounds").
pub const MAX_WIDTH: usize = 65_536;
/// The most trainable parameters a network may have.
pub const MAX_PARAMETERS: usize = 1 << 31;

impl Network {
    /// The layer list `spec` describes, the output head of `head_units` units appended.
    pub fn layer_specs(spec: &NetworkSpec, head_units: usize) -> Result<Vec<LayerSpec>, String> {
        spec.check_form()?;
        let linear = |units: usize| {
            LayerSpec::new("linear", Params::from_iter([("units".to_string(), serde_json::json!(units))]))
        };
        let mut layers = Vec::new();
        if let Some(hidden) = spec.architecture.and_then(super::hidden_layers) {
            if spec.activation != Activation::default() {
                return Err(format!(
                    "`network.activation: {}` applies to `network.hidden`; `network.architecture` \
                     fixes its own activations",
                    spec.activation.name()
                ));
            }
            layers = hidden;
        } else if spec.layers.is_empty() {
            for &units in &spec.hidden {
                layers.push(linear(units));
                layers.push(LayerSpec::new(spec.activation.name(), Params::new()));
            }
        } else {
            if spec.activation != Activation::default() {
                return Err(format!(
                    "`network.activation: {}` applies to `network.hidden`; a network written as \
                     `layers` names its activation layers (`{{{}: {{}}}}`)",
                    spec.activation.name(),
                    spec.activation.name()
                ));
            }
            layers.extend(spec.layers.iter().cloned());
        }
        layers.push(linear(head_units));
        Ok(layers)
    }

    /// Resolves `spec` and checks every layer's shape, from the stream's `input` shape to an
    /// output head of `head_units` units (the stream's outputs per head × heads). A layer
    /// that is unknown, malformed, zero-wide or does not fit its input is refused, named by
    /// its index and kind.
    pub fn plan(spec: &NetworkSpec, input: Shape, head_units: usize) -> Result<Network, String> {
        Self::plan_from(spec, Some(input), head_units)
    }

    /// Checks what can be checked of `spec` before the run: the layers' kinds, parameters,
    /// widths and shapes, and the form the engines compute. `input` is the stream's input
    /// shape when its headers could be read; without it the walk starts from a stand-in
    /// vector that messages never name (a network that needs an image is then refused by its
    /// first image layer, after the stream's own error). A worker checks again from the
    /// stream's real shape when it starts.
    pub fn check(spec: &NetworkSpec, input: Option<Shape>) -> Result<(), String> {
        let network = Self::plan_from(spec, input, 1)?;
        let count = network.layers.len();
        for (i, layer) in network.layers.iter().enumerate() {
            if let Part::Linear { units } = layer.part {
                if units > MAX_WIDTH {
                    let name = network.describe(i, count, &layer.spec.kind);
                    return Err(format!("{name}: {units} units; at most {MAX_WIDTH} are supported"));
                }
            }
        }
        let parameters = network.layers.iter().fold(0usize, |sum, l| sum.saturating_add(l.parameters));
        if parameters > MAX_PARAMETERS {
            return Err(format!(
                "the network has {parameters} trainable parameters{}; at most {MAX_PARAMETERS} (2^31) \
                 are supported",
                if input.is_none() { " (on a 1-wide input)" } else { "" }
            ));
        }
        if network.is_convolutional() {
            network.conv_specs().map(|_| ())
        } else {
            network.mlp().map(|_| ())
        }
    }

    /// Whether the network needs the conv-net engine: it has a layer other than `linear` and
    /// activations (an MLP keeps the MLP engines, which are faster on vectors and offer
    /// every activation).
    pub fn is_convolutional(&self) -> bool {
        self.layers.iter().any(|l| !matches!(l.part, Part::Linear { .. } | Part::Activation(_)))
    }

    fn plan_from(spec: &NetworkSpec, input: Option<Shape>, head_units: usize) -> Result<Network, String> {
        let specs = Self::layer_specs(spec, head_units)?;
        let written_as_layers = !spec.layers.is_empty();
        let architecture = spec.architecture.filter(|a| *a != Architecture::Mlp);
        let mut network = Network {
            layers: Vec::with_capacity(specs.len()),
            written_as_layers,
            architecture,
            activation: spec.activation,
        };
        let count = specs.len();
        // A perceptron reads an image as its flat vector of pixels.
        let perceptron = !written_as_layers && architecture.is_none();
        let input = input.map(|shape| if perceptron { Shape::Vector(shape.len()) } else { shape });
        // Whether `shape` is real rather than derived unchanged from the stand-in input.
        let mut known = input.is_some();
        let mut shape = input.unwrap_or(Shape::Vector(1));
        for (i, layer) in specs.into_iter().enumerate() {
            let name = network.describe(i, count, &layer.kind);
            let on = if known { format!(", on {shape}") } else { String::new() };
            let entry = lookup(&layer.kind).map_err(|e| format!("{name}: {e}"))?;
            let output = entry.output_shape(&layer.params, shape).map_err(|e| format!("{name}{on}: {e}"))?;
            if output.is_empty() {
                return Err(format!("{name}{on}: its output, {output}, holds no values"));
            }
            let parameters = entry.parameters(&layer.params, shape)?;
            let part = entry.part(&layer.params)?;
            network.layers.push(PlannedLayer { spec: layer, input: shape, output, parameters, part });
            known |= output != shape;
            shape = output;
        }
        Ok(network)
    }

    /// How messages name layer `index`: by its place in the spec, and its kind.
    fn describe(&self, index: usize, count: usize, kind: &str) -> String {
        if index + 1 == count {
            format!("the output head (layer {index}, `{kind}`)")
        } else if let Some(architecture) = self.architecture {
            format!("layer {index} (`{kind}`) of `network.architecture: {}`", architecture.name())
        } else if self.written_as_layers {
            format!("`network.layers[{index}]` (`{kind}`)")
        } else {
            format!("layer {index} (`{kind}`, from `network.hidden[{}]`)", index / 2)
        }
    }

    /// Trainable parameters of the whole network.
    pub fn parameters(&self) -> usize {
        self.layers.iter().map(|l| l.parameters).sum()
    }

    /// The network as the conv-net model builds it (`model::convnet`): its input shape and
    /// layers, the head included — the one description of a conv net, whether written as
    /// `layers` or as a named `architecture`. The conv-net model computes ReLU only; another
    /// activation is named as the layer it cannot build.
    pub fn conv_specs(&self) -> Result<(ConvShape, Vec<ConvLayer>), String> {
        let count = self.layers.len();
        let input = match self.layers[0].input {
            Shape::Image { channels, height, width } => ConvShape::new(channels, height, width),
            Shape::Vector(n) => ConvShape::new(n, 1, 1),
        };
        let mut specs = Vec::with_capacity(count);
        for (i, layer) in self.layers.iter().enumerate() {
            specs.push(match layer.part {
                Part::Linear { units } => ConvLayer::Linear { units },
                Part::Activation(Activation::Relu) => ConvLayer::Relu,
                Part::Activation(a) => {
                    return Err(format!(
                        "{}: the conv-net model computes `relu` only, not `{}`",
                        self.describe(i, count, &layer.spec.kind),
                        a.name()
                    ))
                }
                Part::Conv2d { channels, kernel, stride, padding, bias } => {
                    ConvLayer::Conv2d { channels, kernel, stride, padding, bias }
                }
                Part::MaxPool2d { kernel, stride, padding } => {
                    ConvLayer::MaxPool2d { kernel, stride, padding }
                }
                Part::AvgPool2d { kernel, stride, padding } => {
                    ConvLayer::AvgPool2d { kernel, stride, padding }
                }
                Part::BatchNorm => ConvLayer::BatchNorm2d,
                Part::BasicBlock { channels, stride, bias } => {
                    ConvLayer::BasicBlock { channels, stride, bias }
                }
                Part::GlobalAvgPool => ConvLayer::GlobalAvgPool,
                Part::Flatten => ConvLayer::Flatten,
            });
        }
        Ok((input, specs))
    }

    /// The multi-layer perceptron the fused and autograd engines compute: its sizes (input,
    /// hidden…, output) and hidden activation, or why the layer list is not of that form
    /// (`linear`, activation, …, `linear`, one activation kind).
    pub fn mlp(&self) -> Result<(Vec<usize>, Activation), String> {
        const FORM: &str = "the MLP engine computes alternating `linear` and activation layers with one \
                            activation kind, ending in the `linear` output head";
        let count = self.layers.len();
        let convolutional = |p: &Part| !matches!(p, Part::Linear { .. } | Part::Activation(_));
        if let Some((i, layer)) = self.layers.iter().enumerate().find(|(_, l)| convolutional(&l.part)) {
            return Err(format!(
                "{}: the MLP engine computes `linear` and activation layers only; a network with \
                 this layer is trained by the conv-net engine",
                self.describe(i, count, &layer.spec.kind)
            ));
        }
        let mut sizes = vec![self.layers[0].input.len()];
        let mut activation: Option<(usize, Activation)> = None;
        for (i, layer) in self.layers.iter().enumerate() {
            let name = self.describe(i, count, &layer.spec.kind);
            match (layer.part, i % 2 == 0) {
                (Part::Linear { units }, true) => sizes.push(units),
                (Part::Linear { .. }, false) => {
                    return Err(format!(
                        "{FORM}; {name} follows a `linear` layer where an activation belongs"
                    ))
                }
                (Part::Activation(_), true) => {
                    return Err(format!("{FORM}; {name} is where a `linear` layer belongs"))
                }
                (Part::Activation(a), false) => match activation {
                    Some((first, b)) if a != b => {
                        let first = self.describe(first, count, b.name());
                        return Err(format!("{FORM}; {name} differs from {first}"));
                    }
                    Some(_) => {}
                    None => activation = Some((i, a)),
                },
                (_, _) => unreachable!("convolutional layers are refused above"),
            }
        }
        Ok((sizes, activation.map_or(self.activation, |(_, a)| a)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::NetworkSpec;

    fn layered(layers: serde_json::Value) -> NetworkSpec {
        serde_json::from_value(serde_json::json!({ "layers": layers })).unwrap()
    }

    #[test]
    fn hidden_expands_to_linear_and_activation_pairs_and_the_head() {
        let mut spec = NetworkSpec::mlp(vec![100, 50]);
        spec.activation = Activation::Tanh;
        let net = Network::plan(&spec, Shape::Vector(784), 10).unwrap();
        let kinds: Vec<_> = net.layers.iter().map(|l| l.spec.kind.as_str()).collect();
        assert_eq!(kinds, ["linear", "tanh", "linear", "tanh", "linear"]);
        assert_eq!(net.mlp().unwrap(), (vec![784, 100, 50, 10], Activation::Tanh));
        assert_eq!(net.parameters(), 785 * 100 + 101 * 50 + 51 * 10);
        // No hidden layers: a linear model, whose activation is unused.
        let linear = Network::plan(&NetworkSpec::mlp(vec![]), Shape::Vector(8), 3).unwrap();
        assert_eq!(linear.mlp().unwrap(), (vec![8, 3], Activation::Relu));
    }

    #[test]
    fn a_layers_network_equal_to_a_hidden_one_builds_the_same_mlp() {
        let spec = layered(serde_json::json!([
            {"linear": {"units": 100}}, {"leaky_relu": {}}, {"linear": {"units": 50}}, {"leaky_relu": {}}
        ]));
        let mut hidden = NetworkSpec::mlp(vec![100, 50]);
        hidden.activation = Activation::LeakyRelu;
        let (a, b) =
            (Network::plan(&spec, Shape::Vector(784), 10), Network::plan(&hidden, Shape::Vector(784), 10));
        assert_eq!(a.unwrap().mlp(), b.unwrap().mlp());
    }

    #[test]
    fn shape_errors_name_the_layer_its_kind_and_the_shapes() {
        let spec =
            layered(serde_json::json!([{"linear": {"units": 100}}, {"relu": {}}, {"linear": {"units": 0}}]));
        let err = Network::plan(&spec, Shape::Vector(784), 10).unwrap_err();
        assert_eq!(
            err,
            "`network.layers[2]` (`linear`), on a vector of 100: `units` must be ≥ 1 (a zero-width layer)"
        );
        let spec = layered(serde_json::json!([{"linear": {"units": 100}}, {"relu": {}}]));
        let image = Shape::Image { channels: 1, height: 28, width: 28 };
        let err = Network::plan(&spec, image, 10).unwrap_err();
        assert!(
            err.starts_with("`network.layers[0]` (`linear`), on an image of 1×28×28: takes a vector"),
            "{err}"
        );
        let err = Network::plan(&NetworkSpec::mlp(vec![8, 0]), Shape::Vector(4), 2).unwrap_err();
        assert!(err.starts_with("layer 2 (`linear`, from `network.hidden[1]`)"), "{err}");
        let err = Network::plan(&NetworkSpec::mlp(vec![8]), Shape::Vector(4), 0).unwrap_err();
        assert!(err.starts_with("the output head (layer 2, `linear`)"), "{err}");
        let err =
            Network::plan(&layered(serde_json::json!([{"conv3d": {}}])), Shape::Vector(4), 2).unwrap_err();
        assert!(err.starts_with("`network.layers[0]` (`conv3d`): unknown layer kind"), "{err}");
        let err =
            Network::plan(&layered(serde_json::json!([{"conv2d": {}}])), Shape::Vector(4), 2).unwrap_err();
        assert!(err.contains("missing field `channels`"), "{err}");
        let err = Network::plan(&layered(serde_json::json!([{"linear": {"width": 3}}])), Shape::Vector(4), 2)
            .unwrap_err();
        assert!(err.contains("unknown field `width`"), "{err}");
    }

    #[test]
    fn only_the_mlp_form_is_built() {
        let form = |layers: serde_json::Value| {
            Network::plan(&layered(layers), Shape::Vector(4), 2).and_then(|n| n.mlp()).unwrap_err()
        };
        let err = form(
            serde_json::json!([{"linear": {"units": 8}}, {"relu": {}}, {"linear": {"units": 8}}, {"tanh": {}}]),
        );
        assert!(
            err.starts_with("the MLP engine computes alternating `linear` and activation layers"),
            "{err}"
        );
        assert!(
            err.ends_with("`network.layers[3]` (`tanh`) differs from `network.layers[1]` (`relu`)"),
            "{err}"
        );
        let err = form(serde_json::json!([{"relu": {}}]));
        assert!(err.ends_with("`network.layers[0]` (`relu`) is where a `linear` layer belongs"), "{err}");
        let err = form(serde_json::json!([{"linear": {"units": 8}}]));
        assert!(
            err.ends_with(
                "the output head (layer 1, `linear`) follows a `linear` layer where an activation belongs"
            ),
            "{err}"
        );
        let err = form(serde_json::json!([{"linear": {"units": 8}}, {"relu": {}}, {"relu": {}}]));
        assert!(err.contains("`network.layers[2]` (`relu`) is where a `linear` layer belongs"), "{err}");
    }

    #[test]
    fn conv_layers_are_planned_with_shapes_but_not_built_as_a_perceptron() {
        let image = Shape::Image { channels: 1, height: 28, width: 28 };
        let spec = layered(serde_json::json!([
            {"conv2d": {"channels": 4, "kernel": 3}}, {"relu": {}}, {"max_pool2d": {"kernel": 2}}, {"flatten": {}}
        ]));
        let net = Network::plan(&spec, image, 10).unwrap();
        assert_eq!(net.layers[3].output, Shape::Vector(4 * 13 * 13));
        assert_eq!(net.parameters(), 4 * 9 + 4 + (4 * 13 * 13 + 1) * 10);
        let err = net.mlp().unwrap_err();
        assert!(
            err.starts_with(
                "`network.layers[0]` (`conv2d`): the MLP engine computes `linear` and activation"
            ),
            "{err}"
        );
        // A perceptron written as `hidden` flattens the image itself.
        let mlp = Network::plan(&NetworkSpec::mlp(vec![8]), image, 10).unwrap();
        assert_eq!(mlp.mlp().unwrap().0, vec![784, 8, 10]);
        // Without the stream's shape, a conv net's first layer is refused; with it, it fits.
        let convnet = NetworkSpec {
            architecture: Some(crate::protocol::Architecture::Convnet),
            ..NetworkSpec::mlp(vec![])
        };
        let err = Network::plan(&convnet, Shape::Vector(784), 2).unwrap_err();
        assert!(
            err.contains("of `network.architecture: convnet`") && err.contains("takes an image"),
            "{err}"
        );
        // The conv-net model builds what the registry planned, head included; ReLU only.
        let (input, layers) = net.conv_specs().unwrap();
        assert_eq!((input.channels, input.height, input.width), (1, 28, 28));
        assert_eq!(layers.len(), 5);
        assert_eq!(layers[4], crate::model::convnet::LayerSpec::Linear { units: 10 });
        let tanh = layered(
            serde_json::json!([{"conv2d": {"channels": 4, "kernel": 3}}, {"tanh": {}}, {"flatten": {}}]),
        );
        let err = Network::plan(&tanh, image, 10).unwrap().conv_specs().unwrap_err();
        assert!(
            err.starts_with("`network.layers[1]` (`tanh`): the conv-net model computes `relu` only"),
            "{err}"
        );
        let both = NetworkSpec { hidden: vec![8], ..convnet };
        assert!(Network::check(&both, Some(image)).unwrap_err().contains("write one of them"));
    }

    #[test]
    fn hidden_and_layers_exclude_each_other_and_activation_belongs_to_hidden() {
        let mut spec = layered(serde_json::json!([{"linear": {"units": 8}}, {"relu": {}}]));
        spec.hidden = vec![8];
        assert!(Network::check(&spec, None).unwrap_err().contains("write one of them"));
        spec.hidden.clear();
        assert_eq!(Network::check(&spec, None), Ok(()));
        // Without data the input shape is unknown, and messages do not make one up.
        let zero = layered(serde_json::json!([{"linear": {"units": 0}}, {"relu": {}}]));
        assert_eq!(
            Network::check(&zero, None).unwrap_err(),
            "`network.layers[0]` (`linear`): `units` must be ≥ 1 (a zero-width layer)"
        );
        spec.activation = Activation::Tanh;
        let err = Network::check(&spec, None).unwrap_err();
        assert!(err.contains("`network.activation: tanh` applies to `network.hidden`"), "{err}");
    }
}
