//! Plain backpropagation: the baseline every continual method is compared with.

use serde::{Deserialize, Serialize};

use super::{ContinualMethod, MethodKind};
use crate::engine::Trainable;
use crate::model::convnet::ConvNet;
use crate::optim::{OptimizerConfig, OptimizerKind};

/// Backprop has no parameters of its own; the optimiser's are its only ones.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackpropConfig {}

/// Plain backprop: the optimiser's update and nothing else, on any model family.
pub struct Backprop;

impl<M: Trainable> ContinualMethod<M> for Backprop {}

/// `sgd`: backprop with stochastic gradient descent.
pub struct Sgd;

impl MethodKind for Sgd {
    const KIND: &'static str = "sgd";
    const SUMMARY: &'static str = "plain backprop with SGD (optional momentum)";
    const OPTIMIZER_CHOICE: bool = false;
    type Config = BackpropConfig;
    fn build(_: BackpropConfig, _: &OptimizerConfig) -> Box<dyn ContinualMethod> {
        Box::new(Backprop)
    }
    fn build_conv(_: BackpropConfig, _: &OptimizerConfig) -> Option<Box<dyn ContinualMethod<ConvNet>>> {
        Some(Box::new(Backprop))
    }
}

/// `adam`: backprop with Adam.
pub struct Adam;

impl MethodKind for Adam {
    const KIND: &'static str = "adam";
    const SUMMARY: &'static str = "plain backprop with Adam";
    const DEFAULT_OPTIMIZER: OptimizerKind = OptimizerKind::Adam;
    const OPTIMIZER_CHOICE: bool = false;
    type Config = BackpropConfig;
    fn build(_: BackpropConfig, _: &OptimizerConfig) -> Box<dyn ContinualMethod> {
        Box::new(Backprop)
    }
    fn build_conv(_: BackpropConfig, _: &OptimizerConfig) -> Option<Box<dyn ContinualMethod<ConvNet>>> {
        Some(Box::new(Backprop))
    }
}
