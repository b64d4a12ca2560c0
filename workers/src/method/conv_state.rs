//! A conv net kept in a method's checkpoint state (a frozen copy, a previous network).
//!
//! `ContinualMethod::load` has no network at hand, and a conv net's structure is not in the
//! state, so the tensors are read back as they were saved ([`SavedConvNet`]) and put into a
//! copy of the trained network's structure when the method next sees the network
//! ([`SavedConvNet::to_net`]): the checkpoint holds the same structure, so every tensor's
//! name and size must match, and a mismatch is an error naming the tensor.

use super::{MethodError, MethodState};
use crate::model::convnet::ConvNet;
use crate::model::Parameters;

/// A conv net's named tensors as a checkpoint holds them.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct SavedConvNet {
    tensors: Vec<(String, Vec<f32>)>,
}

impl SavedConvNet {
    /// Writes `net`'s tensors (parameters and running statistics) as `prefix.<name>`;
    /// returns their names, in order, for the method's metadata.
    pub(crate) fn save(state: &mut MethodState, prefix: &str, net: &ConvNet) -> Vec<String> {
        net.tensors()
            .into_iter()
            .map(|t| {
                state.put_f32(format!("{prefix}.{}", t.name), t.values.to_vec());
                t.name
            })
            .collect()
    }

    /// Writes these tensors back as `prefix.<name>` (a method saved before it saw a network).
    pub(crate) fn save_again(&self, state: &mut MethodState, prefix: &str) -> Vec<String> {
        for (name, values) in &self.tensors {
            state.put_f32(format!("{prefix}.{name}"), values.clone());
        }
        self.tensors.iter().map(|(n, _)| n.clone()).collect()
    }

    /// Reads the tensors `names` written under `prefix`.
    pub(crate) fn read(state: &MethodState, prefix: &str, names: Vec<String>) -> Result<Self, MethodError> {
        let tensors = names
            .into_iter()
            .map(|name| {
                let values = state.f32(&format!("{prefix}.{name}"))?.to_vec();
                Ok((name, values))
            })
            .collect::<Result<_, MethodError>>()?;
        Ok(SavedConvNet { tensors })
    }

    /// A copy of `like` holding these tensors; why not, when they do not fit its structure.
    pub(crate) fn to_net(&self, like: &ConvNet) -> Result<ConvNet, String> {
        let mut net = like.clone();
        let mut tensors = net.tensors_mut();
        if tensors.len() != self.tensors.len() {
            return Err(format!(
                "the checkpoint holds {} tensors of a saved network, the network has {}",
                self.tensors.len(),
                tensors.len()
            ));
        }
        for ((name, values), (saved_name, saved)) in tensors.iter_mut().zip(&self.tensors) {
            if name != saved_name || values.len() != saved.len() {
                return Err(format!(
                    "the checkpoint's saved network has tensor `{saved_name}` of {} values where the \
                     network has `{name}` of {}",
                    saved.len(),
                    values.len()
                ));
            }
            values.copy_from_slice(saved);
        }
        drop(tensors);
        Ok(net)
    }
}
