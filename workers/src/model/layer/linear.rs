//! `linear`: a fully connected layer.

use serde::{Deserialize, Serialize};

use super::{LayerKind, Part, Shape};

/// A fully connected layer: every output unit sees every input value.
pub struct LinearKind;

/// Parameters of `linear`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinearParams {
    /// Output units (≥ 1).
    pub units: usize,
}

impl LayerKind for LinearKind {
    const KIND: &'static str = "linear";
    const SUMMARY: &'static str =
        "fully connected: `units` outputs, each a weighted sum of every input plus a bias";
    type Params = LinearParams;

    fn output_shape(params: &LinearParams, input: Shape) -> Result<Shape, String> {
        if params.units == 0 {
            return Err("`units` must be ≥ 1 (a zero-width layer)".into());
        }
        match input {
            Shape::Vector(0) => Err(format!("its input is {input}, which holds no values")),
            Shape::Vector(_) => Ok(Shape::Vector(params.units)),
            Shape::Image { .. } => Err(format!("takes a vector, found {input}; flatten it first")),
        }
    }

    fn parameters(params: &LinearParams, input: Shape) -> usize {
        (input.len() + 1) * params.units
    }

    fn part(params: &LinearParams) -> Part {
        Part::Linear { units: params.units }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_maps_a_vector_to_its_units() {
        let p = LinearParams { units: 100 };
        assert_eq!(LinearKind::output_shape(&p, Shape::Vector(784)), Ok(Shape::Vector(100)));
        assert_eq!(LinearKind::parameters(&p, Shape::Vector(784)), 784 * 100 + 100);
        let zero = LinearKind::output_shape(&LinearParams { units: 0 }, Shape::Vector(784)).unwrap_err();
        assert!(zero.contains("zero-width"), "{zero}");
        let image = Shape::Image { channels: 1, height: 28, width: 28 };
        let err = LinearKind::output_shape(&p, image).unwrap_err();
        assert!(err.contains("an image of 1×28×28"), "{err}");
        assert!(LinearKind::output_shape(&p, Shape::Vector(0)).is_err());
    }
}
