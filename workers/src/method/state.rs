//! A method's checkpointable state: named tensors plus a JSON value for scalars.

use std::collections::BTreeMap;

use super::MethodError;
use crate::model::{Layers, Parameters};

/// A copy of every trainable buffer of `params`, in [`Parameters::slices`] order: what a
/// method keeps of a network (θ₀, θ*, a Fisher diagonal) for either model family.
pub(crate) fn snapshot<P: Parameters>(params: &P) -> Vec<Vec<f32>> {
    params.slices().into_iter().map(<[f32]>::to_vec).collect()
}

/// One named array of a method's state.
#[derive(Clone, Debug, PartialEq)]
pub enum StateTensor {
    /// Floats (utilities, snapshots, Fisher diagonals).
    F32(Vec<f32>),
    /// Small counters and masks.
    U32(Vec<u32>),
    /// Large counters (ages).
    U64(Vec<u64>),
}

/// What a method saves in a checkpoint. Names are the method's own (`age.0`, `fisher.w1`); the
/// trainer namespaces them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MethodState {
    /// Scalars and small structures.
    pub meta: serde_json::Value,
    /// Arrays.
    pub tensors: BTreeMap<String, StateTensor>,
}

impl MethodState {
    /// Stores floats.
    pub fn put_f32(&mut self, name: impl Into<String>, data: Vec<f32>) {
        self.tensors.insert(name.into(), StateTensor::F32(data));
    }

    /// Stores 32-bit integers.
    pub fn put_u32(&mut self, name: impl Into<String>, data: Vec<u32>) {
        self.tensors.insert(name.into(), StateTensor::U32(data));
    }

    /// Stores 64-bit integers.
    pub fn put_u64(&mut self, name: impl Into<String>, data: Vec<u64>) {
        self.tensors.insert(name.into(), StateTensor::U64(data));
    }

    /// Stores every buffer of a parameter-shaped set under `prefix.<layer>.weight|bias`.
    pub fn put_layers(&mut self, prefix: &str, layers: &Layers) {
        for (l, layer) in layers.layers.iter().enumerate() {
            self.put_f32(format!("{prefix}.{l}.weight"), layer.weight.clone());
            self.put_f32(format!("{prefix}.{l}.bias"), layer.bias.clone());
        }
    }

    fn missing(name: &str) -> MethodError {
        MethodError::State(format!("tensor `{name}` is missing"))
    }

    /// Floats stored under `name`.
    pub fn f32(&self, name: &str) -> Result<&[f32], MethodError> {
        match self.tensors.get(name) {
            Some(StateTensor::F32(v)) => Ok(v),
            Some(_) => Err(MethodError::State(format!("tensor `{name}` is not f32"))),
            None => Err(Self::missing(name)),
        }
    }

    /// 32-bit integers stored under `name`.
    pub fn u32(&self, name: &str) -> Result<&[u32], MethodError> {
        match self.tensors.get(name) {
            Some(StateTensor::U32(v)) => Ok(v),
            Some(_) => Err(MethodError::State(format!("tensor `{name}` is not u32"))),
            None => Err(Self::missing(name)),
        }
    }

    /// 64-bit integers stored under `name`.
    pub fn u64(&self, name: &str) -> Result<&[u64], MethodError> {
        match self.tensors.get(name) {
            Some(StateTensor::U64(v)) => Ok(v),
            Some(_) => Err(MethodError::State(format!("tensor `{name}` is not u64"))),
            None => Err(Self::missing(name)),
        }
    }

    /// Copies floats stored under `name` into `out`, checking the length.
    pub fn read_f32_into(&self, name: &str, out: &mut [f32]) -> Result<(), MethodError> {
        let v = self.f32(name)?;
        if v.len() != out.len() {
            return Err(MethodError::State(format!(
                "tensor `{name}` has {} values, the network needs {}",
                v.len(),
                out.len()
            )));
        }
        out.copy_from_slice(v);
        Ok(())
    }

    /// Restores a parameter-shaped set written by [`MethodState::put_layers`] into `layers`
    /// (whose shape must match).
    pub fn read_layers_into(&self, prefix: &str, layers: &mut Layers) -> Result<(), MethodError> {
        for (l, layer) in layers.layers.iter_mut().enumerate() {
            self.read_f32_into(&format!("{prefix}.{l}.weight"), &mut layer.weight)?;
            self.read_f32_into(&format!("{prefix}.{l}.bias"), &mut layer.bias)?;
        }
        Ok(())
    }

    /// Stores a parameter-shaped set like [`MethodState::put_layers`] plus its layer sizes
    /// under `prefix.sizes`, for state whose shape the method does not know when it is
    /// restored (a snapshot taken from the network, before the method has seen one).
    pub fn put_sized_layers(&mut self, prefix: &str, layers: &Layers) {
        let mut sizes = vec![layers.layers.first().map_or(0, |l| l.inputs) as u64];
        sizes.extend(layers.layers.iter().map(|l| l.outputs as u64));
        self.put_u64(format!("{prefix}.sizes"), sizes);
        self.put_layers(prefix, layers);
    }

    /// Stores a parameter-shaped set of either model family — buffers in
    /// [`Parameters::slices`](crate::model::Parameters::slices) order — as `prefix.<i>`, with
    /// their lengths under `prefix.lengths`, so it is restored without the network at hand.
    pub fn put_buffers(&mut self, prefix: &str, buffers: &[Vec<f32>]) {
        self.put_u64(format!("{prefix}.lengths"), buffers.iter().map(|b| b.len() as u64).collect());
        for (i, b) in buffers.iter().enumerate() {
            self.put_f32(format!("{prefix}.{i}"), b.clone());
        }
    }

    /// Whether a set was stored under `prefix` by [`MethodState::put_buffers`] (or, before
    /// conv nets, by [`MethodState::put_sized_layers`]).
    pub fn has_buffers(&self, prefix: &str) -> bool {
        self.tensors.contains_key(&format!("{prefix}.lengths"))
            || self.tensors.contains_key(&format!("{prefix}.sizes"))
    }

    /// Restores a set written by [`MethodState::put_buffers`]; a multi-layer perceptron's set
    /// written by [`MethodState::put_sized_layers`] (checkpoints from before conv nets) is read
    /// as its buffers in the same order.
    pub fn buffers(&self, prefix: &str) -> Result<Vec<Vec<f32>>, MethodError> {
        let name = format!("{prefix}.lengths");
        if !self.tensors.contains_key(&name) && self.tensors.contains_key(&format!("{prefix}.sizes")) {
            return Ok(self.sized_layers(prefix)?.buffers().map(<[f32]>::to_vec).collect());
        }
        let lengths = self.u64(&name)?;
        lengths
            .iter()
            .enumerate()
            .map(|(i, &len)| {
                let mut out = vec![0.0; len as usize];
                self.read_f32_into(&format!("{prefix}.{i}"), &mut out)?;
                Ok(out)
            })
            .collect()
    }

    /// Restores a set written by [`MethodState::put_sized_layers`], shape included.
    pub fn sized_layers(&self, prefix: &str) -> Result<Layers, MethodError> {
        let name = format!("{prefix}.sizes");
        let sizes: Vec<usize> = self.u64(&name)?.iter().map(|&s| s as usize).collect();
        if sizes.len() < 2 {
            return Err(MethodError::State(format!("tensor `{name}` needs at least two layer sizes")));
        }
        let mut layers = Layers::zeros(&sizes);
        self.read_layers_into(prefix, &mut layers)?;
        Ok(layers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sized_layers_round_trip_with_their_shape_and_reject_a_missing_tensor() {
        let mut layers = Layers::zeros(&[3, 2, 4]);
        layers.layers[1].weight[5] = 1.5;
        layers.layers[0].bias[1] = -2.0;
        let mut state = MethodState::default();
        state.put_sized_layers("anchor", &layers);
        assert_eq!(state.sized_layers("anchor").unwrap(), layers);
        state.tensors.remove("anchor.1.bias");
        let err = state.sized_layers("anchor").unwrap_err().to_string();
        assert!(err.contains("`anchor.1.bias` is missing"), "{err}");
        assert!(state.sized_layers("other").is_err());
    }

    #[test]
    fn buffers_round_trip_and_read_an_older_perceptron_set() {
        let buffers = vec![vec![1.0, 2.0, 3.0], vec![], vec![-0.5]];
        let mut state = MethodState::default();
        assert!(!state.has_buffers("theta"));
        state.put_buffers("theta", &buffers);
        assert!(state.has_buffers("theta"));
        assert_eq!(state.buffers("theta").unwrap(), buffers);
        state.put_f32("theta.2", vec![1.0, 2.0]);
        let err = state.buffers("theta").unwrap_err().to_string();
        assert!(err.contains("`theta.2` has 2 values"), "{err}");
        let mut layers = Layers::zeros(&[2, 3]);
        layers.layers[0].bias[2] = 4.0;
        state.put_sized_layers("old", &layers);
        assert!(state.has_buffers("old"));
        assert_eq!(state.buffers("old").unwrap(), vec![vec![0.0; 6], vec![0.0, 0.0, 4.0]]);
    }
}
