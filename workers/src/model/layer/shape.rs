//! The shape of the values flowing between layers, one example at a time.

use std::fmt;

/// The shape of one example's values at a point of the network (the batch dimension left
/// out). Streams give vectors today; image streams and convolutional layers use
/// [`Shape::Image`] (channels first, as PyTorch's NCHW).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Shape {
    /// A flat vector of features.
    Vector(usize),
    /// A stack of `channels` feature maps of `height × width`.
    Image {
        /// Feature maps.
        channels: usize,
        /// Rows of each map.
        height: usize,
        /// Columns of each map.
        width: usize,
    },
}

impl Shape {
    /// Number of values.
    pub fn len(self) -> usize {
        match self {
            Shape::Vector(n) => n,
            Shape::Image { channels, height, width } => channels * height * width,
        }
    }

    /// Whether the shape holds no values (some dimension is zero).
    pub fn is_empty(self) -> bool {
        self.len() == 0
    }

    /// Channels of an image; a vector's features (a vector of n is n × 1 × 1).
    pub fn channels(self) -> usize {
        match self {
            Shape::Image { channels, .. } => channels,
            Shape::Vector(n) => n,
        }
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Shape::Vector(n) => write!(f, "a vector of {n}"),
            Shape::Image { channels, height, width } => write!(f, "an image of {channels}×{height}×{width}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_count_and_name_their_values() {
        assert_eq!(Shape::Vector(784).len(), 784);
        let image = Shape::Image { channels: 3, height: 32, width: 32 };
        assert_eq!(image.len(), 3072);
        assert_eq!(image.to_string(), "an image of 3×32×32");
        assert!(Shape::Image { channels: 0, height: 4, width: 4 }.is_empty());
    }
}
