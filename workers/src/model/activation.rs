//! Hidden-layer non-linearities: values, derivatives and initialisation gains.

pub use crate::protocol::Activation;

/// PyTorch's `calculate_gain` for a non-linearity; `None` is a linear (output) layer.
pub fn gain(activation: Option<Activation>) -> f32 {
    match activation {
        None | Some(Activation::Sigmoid) => 1.0,
        Some(Activation::Relu) => std::f32::consts::SQRT_2,
        Some(Activation::Tanh) => 5.0 / 3.0,
        Some(Activation::LeakyRelu) => {
            let s = Activation::LEAKY_SLOPE;
            (2.0 / (1.0 + s * s)).sqrt()
        }
    }
}

/// Applies the activation in place.
pub fn apply(activation: Activation, values: &mut [f32]) {
    match activation {
        Activation::Relu => values.iter_mut().for_each(|v| *v = v.max(0.0)),
        Activation::Tanh => values.iter_mut().for_each(|v| *v = v.tanh()),
        Activation::Sigmoid => values.iter_mut().for_each(|v| *v = 1.0 / (1.0 + (-*v).exp())),
        Activation::LeakyRelu => values.iter_mut().for_each(|v| {
            if *v < 0.0 {
                *v *= Activation::LEAKY_SLOPE
            }
        }),
    }
}

/// Multiplies `delta` by the activation's derivative, given the post-activation values `post`
/// of the same units. The post-activation suffices for every supported non-linearity (ReLU
/// and leaky ReLU are positive exactly where their input is), so the forward pass keeps one
/// buffer per layer. At 0 the ReLU-family derivative is taken as 0 (slope for leaky ReLU), as
/// in PyTorch.
pub fn backprop(activation: Activation, post: &[f32], delta: &mut [f32]) {
    match activation {
        Activation::Relu => {
            for (d, &h) in delta.iter_mut().zip(post) {
                if h <= 0.0 {
                    *d = 0.0;
                }
            }
        }
        Activation::LeakyRelu => {
            for (d, &h) in delta.iter_mut().zip(post) {
                if h <= 0.0 {
                    *d *= Activation::LEAKY_SLOPE;
                }
            }
        }
        Activation::Tanh => {
            for (d, &h) in delta.iter_mut().zip(post) {
                *d *= 1.0 - h * h;
            }
        }
        Activation::Sigmoid => {
            for (d, &h) in delta.iter_mut().zip(post) {
                *d *= h * (1.0 - h);
            }
        }
    }
}

/// Whether units can be exactly zero over whole inputs ("dead"): ReLU only; leaky ReLU,
/// tanh and sigmoid units always carry a signal.
pub fn can_die(activation: Activation) -> bool {
    matches!(activation, Activation::Relu)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gains_match_pytorch() {
        assert_eq!(gain(None), 1.0);
        assert!((gain(Some(Activation::Relu)) - 2f32.sqrt()).abs() < 1e-6);
        assert!((gain(Some(Activation::Tanh)) - 1.666_666_7).abs() < 1e-6);
        assert!((gain(Some(Activation::LeakyRelu)) - 1.414_142_3).abs() < 1e-6);
    }

    #[test]
    fn derivatives_match_finite_differences() {
        for act in [Activation::Relu, Activation::Tanh, Activation::Sigmoid, Activation::LeakyRelu] {
            for &x in &[-1.3f32, -0.2, 0.4, 2.0] {
                let h = 1e-3f32;
                let f = |v: f32| {
                    let mut a = [v];
                    apply(act, &mut a);
                    a[0] as f64
                };
                let numeric = (f(x + h) - f(x - h)) / (2.0 * h as f64);
                let mut post = [x];
                apply(act, &mut post);
                let mut d = [1.0f32];
                backprop(act, &post, &mut d);
                assert!((d[0] as f64 - numeric).abs() < 1e-3, "{act:?} at {x}: {} vs {numeric}", d[0]);
            }
        }
    }
}
