//! The activation layers: `relu`, `tanh`, `sigmoid` and `leaky_relu`, element-wise and without
//! parameters. Their values, derivatives and initialisation gains are in
//! [`crate::model::activation`].

use serde::{Deserialize, Serialize};

use super::{LayerKind, Part, Shape};
use crate::protocol::Activation;

/// Parameters of a kind that takes none: `{}`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

macro_rules! activation_kind {
    ($(#[$doc:meta])* $name:ident, $activation:expr, $summary:literal) => {
        $(#[$doc])*
        pub struct $name;

        impl LayerKind for $name {
            const KIND: &'static str = $activation.name();
            const SUMMARY: &'static str = $summary;
            type Params = NoParams;

            fn output_shape(_: &NoParams, input: Shape) -> Result<Shape, String> {
                Ok(input)
            }

            fn parameters(_: &NoParams, _: Shape) -> usize {
                0
            }

            fn part(_: &NoParams) -> Part {
                Part::Activation($activation)
            }
        }
    };
}

activation_kind!(
    /// `relu`: max(0, x).
    ReluKind,
    Activation::Relu,
    "max(0, x), element-wise"
);
activation_kind!(
    /// `tanh`: tanh x.
    TanhKind,
    Activation::Tanh,
    "tanh x, element-wise"
);
activation_kind!(
    /// `sigmoid`: 1 / (1 + e^−x).
    SigmoidKind,
    Activation::Sigmoid,
    "1 / (1 + e^−x), element-wise"
);
activation_kind!(
    /// `leaky_relu`: max(0, x) + 0.01·min(0, x).
    LeakyReluKind,
    Activation::LeakyRelu,
    "max(0, x) + 0.01·min(0, x), element-wise"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activations_keep_the_shape_and_have_no_parameters() {
        let image = Shape::Image { channels: 8, height: 5, width: 5 };
        for input in [Shape::Vector(100), image] {
            assert_eq!(ReluKind::output_shape(&NoParams {}, input), Ok(input));
            assert_eq!(TanhKind::output_shape(&NoParams {}, input), Ok(input));
            assert_eq!(SigmoidKind::output_shape(&NoParams {}, input), Ok(input));
            assert_eq!(LeakyReluKind::output_shape(&NoParams {}, input), Ok(input));
            assert_eq!(ReluKind::parameters(&NoParams {}, input), 0);
        }
        assert_eq!(LeakyReluKind::KIND, "leaky_relu");
        assert_eq!(LeakyReluKind::part(&NoParams {}), Part::Activation(Activation::LeakyRelu));
    }
}
