//! The learner's network: a multi-layer perceptron with run-time sizes.
//!
//! Parameters live in plain row-major buffers — weight row i holds unit i's incoming weights,
//! column i of the next layer its outgoing weights — because continual methods rewrite rows and
//! columns (continual backprop, ReDo), mask them (CLNP) and snapshot them (EWC), and both
//! gradient engines (the fused kernels and dfdx) read the same buffers.

use rand::Rng as _;

use super::activation::{self, Activation};
use crate::rng::Rng;

/// A fully connected layer's parameters (or a gradient / optimiser moment of the same shape).
#[derive(Clone, Debug, PartialEq)]
pub struct Linear {
    /// Inputs (fan-in).
    pub inputs: usize,
    /// Outputs (units).
    pub outputs: usize,
    /// `outputs × inputs`, row-major: `weight[i * inputs + j]` connects input j to unit i.
    pub weight: Vec<f32>,
    /// One bias per unit.
    pub bias: Vec<f32>,
}

impl Linear {
    /// A layer of zeros.
    pub fn zeros(inputs: usize, outputs: usize) -> Self {
        Linear { inputs, outputs, weight: vec![0.0; inputs * outputs], bias: vec![0.0; outputs] }
    }

    /// Unit `unit`'s incoming weights.
    pub fn row(&self, unit: usize) -> &[f32] {
        &self.weight[unit * self.inputs..(unit + 1) * self.inputs]
    }

    /// Unit `unit`'s incoming weights, mutable.
    pub fn row_mut(&mut self, unit: usize) -> &mut [f32] {
        &mut self.weight[unit * self.inputs..(unit + 1) * self.inputs]
    }

    /// Sets every weight from input `input` (a column) to `value`.
    pub fn fill_column(&mut self, input: usize, value: f32) {
        for w in self.weight.iter_mut().skip(input).step_by(self.inputs) {
            *w = value;
        }
    }

    /// Sets every entry to zero.
    pub fn clear(&mut self) {
        self.weight.fill(0.0);
        self.bias.fill(0.0);
    }

    /// Number of parameters.
    pub fn len(&self) -> usize {
        self.weight.len() + self.bias.len()
    }

    /// Whether the layer has no parameters.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Something shaped like a network's parameters: parameters themselves, gradients, optimiser
/// moments. Layer l maps `sizes[l]` inputs to `sizes[l+1]` outputs.
#[derive(Clone, Debug, PartialEq)]
pub struct Layers {
    /// The layers, input side first.
    pub layers: Vec<Linear>,
}

impl Layers {
    /// All zeros, for the given sizes (input, hidden…, output).
    pub fn zeros(sizes: &[usize]) -> Self {
        Layers { layers: sizes.windows(2).map(|w| Linear::zeros(w[0], w[1])).collect() }
    }

    /// All zeros, shaped like `other`.
    pub fn zeros_like(other: &Layers) -> Self {
        Layers { layers: other.layers.iter().map(|l| Linear::zeros(l.inputs, l.outputs)).collect() }
    }

    /// Sets every entry to zero.
    pub fn clear(&mut self) {
        self.layers.iter_mut().for_each(Linear::clear);
    }

    /// Every parameter buffer (weights and biases of every layer), in a fixed order.
    pub fn buffers(&self) -> impl Iterator<Item = &[f32]> {
        self.layers.iter().flat_map(|l| [l.weight.as_slice(), l.bias.as_slice()])
    }

    /// Every parameter buffer, mutable, in the order of [`Layers::buffers`].
    pub fn buffers_mut(&mut self) -> impl Iterator<Item = &mut Vec<f32>> {
        self.layers.iter_mut().flat_map(|l| [&mut l.weight, &mut l.bias])
    }

    /// Total number of entries.
    pub fn len(&self) -> usize {
        self.layers.iter().map(Linear::len).sum()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A multi-layer perceptron: hidden layers with one activation, then a linear output layer
/// holding every head's outputs side by side.
#[derive(Clone, Debug, PartialEq)]
pub struct Mlp {
    /// The parameters.
    pub params: Layers,
    /// Activation of every hidden layer.
    pub activation: Activation,
}

impl Mlp {
    /// A network with the given sizes (input, hidden…, output), initialised as PyTorch's
    /// `kaiming_uniform_` with the gain of each layer's activation (linear for the output
    /// layer): weights ~ U(−b, b), b = gain·√(3 / fan_in); biases zero.
    pub fn new(sizes: &[usize], activation: Activation, rng: &mut Rng) -> Self {
        assert!(sizes.len() >= 2, "an MLP needs at least input and output sizes");
        let mut params = Layers::zeros(sizes);
        let last = params.layers.len() - 1;
        for (l, layer) in params.layers.iter_mut().enumerate() {
            let bound = init_bound(if l == last { None } else { Some(activation) }, layer.inputs);
            for w in &mut layer.weight {
                *w = rng.gen_range(-bound..=bound);
            }
        }
        Mlp { params, activation }
    }

    /// Layer sizes: input, hidden…, output.
    pub fn sizes(&self) -> Vec<usize> {
        let mut sizes = vec![self.params.layers[0].inputs];
        sizes.extend(self.params.layers.iter().map(|l| l.outputs));
        sizes
    }

    /// The layers.
    pub fn layers(&self) -> &[Linear] {
        &self.params.layers
    }

    /// The layers, mutable.
    pub fn layers_mut(&mut self) -> &mut [Linear] {
        &mut self.params.layers
    }

    /// Number of hidden layers.
    pub fn hidden_layers(&self) -> usize {
        self.params.layers.len() - 1
    }

    /// Number of trainable parameters.
    pub fn parameter_count(&self) -> usize {
        self.params.len()
    }

    /// The activation of layer `layer`'s outputs (`None` for the linear output layer).
    pub fn layer_activation(&self, layer: usize) -> Option<Activation> {
        (layer < self.hidden_layers()).then_some(self.activation)
    }

    /// Redraws unit `unit` of layer `layer`'s incoming weights from the initial distribution
    /// and zeroes its bias — the reinitialisation of continual backprop and ReDo.
    pub fn reinitialize_incoming(&mut self, layer: usize, unit: usize, rng: &mut Rng) {
        let bound = init_bound(self.layer_activation(layer), self.params.layers[layer].inputs);
        let linear = &mut self.params.layers[layer];
        for w in linear.row_mut(unit) {
            *w = rng.gen_range(-bound..=bound);
        }
        linear.bias[unit] = 0.0;
    }
}

/// The half-width of the Kaiming-uniform initial distribution: gain·√(3 / fan_in).
pub fn init_bound(activation: Option<Activation>, fan_in: usize) -> f32 {
    activation::gain(activation) * (3.0 / fan_in as f32).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng;

    #[test]
    fn initialisation_follows_kaiming_uniform_with_the_activation_gain() {
        let mut r = rng::stream(0, "test", 0);
        let net = Mlp::new(&[400, 300, 10], Activation::Tanh, &mut r);
        assert_eq!(net.sizes(), vec![400, 300, 10]);
        assert_eq!(net.parameter_count(), 400 * 300 + 300 + 300 * 10 + 10);
        let hidden = &net.layers()[0];
        let bound = 5.0 / 3.0 * (3.0f32 / 400.0).sqrt();
        assert!(hidden.weight.iter().all(|w| w.abs() <= bound));
        // U(−b, b) has variance b²/3: gain² / fan_in.
        let var = hidden.weight.iter().map(|w| (w * w) as f64).sum::<f64>() / hidden.weight.len() as f64;
        let expected = (bound as f64).powi(2) / 3.0;
        assert!((var / expected - 1.0).abs() < 0.02, "{var} vs {expected}");
        let out_bound = (3.0f32 / 300.0).sqrt();
        assert!(net.layers()[1].weight.iter().all(|w| w.abs() <= out_bound));
        assert!(net.layers().iter().all(|l| l.bias.iter().all(|&b| b == 0.0)));
    }

    #[test]
    fn rows_and_columns_address_units() {
        let mut l = Linear::zeros(3, 2);
        l.weight.copy_from_slice(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(l.row(1), &[4.0, 5.0, 6.0]);
        l.fill_column(1, 0.0);
        assert_eq!(l.weight, vec![1.0, 0.0, 3.0, 4.0, 0.0, 6.0]);
    }
}
