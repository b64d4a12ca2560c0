//! What the trainer needs of a network, so one training loop, one checkpoint format and one
//! method interface serve both model families: the multi-layer perceptron (with its two
//! gradient engines) and the convolutional network.
//!
//! A method written for one family implements `ContinualMethod<Mlp>` (the default) or
//! `ContinualMethod<ConvNet>`; one written against [`Trainable`] and
//! [`Parameters`](crate::model::Parameters) alone (plain backprop) serves both.

use crate::method::{self, Compute, ContinualMethod, ConvCompute, Learner, MethodError, Passes};
use crate::model::convnet::ConvNet;
use crate::model::{Layers, Mlp, Parameters, Workspace};
use crate::optim::OptimizerConfig;
use crate::protocol::{EventBody, MethodSpec, PlasticitySpec};
use crate::stream::Task;

use super::RunError;

/// A method built for a model family, with its optimiser configuration.
pub type BuiltFor<M> = (Box<dyn ContinualMethod<M>>, OptimizerConfig);

/// A network the trainer can train.
pub trait Trainable: Clone + Send + Sized + 'static {
    /// Its parameters' shape: what gradients and optimiser moments look like.
    type Params: Parameters;
    /// The buffers of one forward/backward pass.
    type Workspace: Send;
    /// The compute facility the trainer and the methods share.
    type Compute: Passes<Self>;

    /// The parameters.
    fn parameters(&self) -> &Self::Params;
    /// The parameters, mutable.
    fn parameters_mut(&mut self) -> &mut Self::Params;
    /// Outputs per example (every head side by side).
    fn outputs(&self) -> usize;
    /// Number of trainable parameters.
    fn parameter_count(&self) -> usize;
    /// Numbers that identify the structure, stored in checkpoints so a checkpoint of another
    /// network is refused by name rather than read into the wrong buffers.
    fn structure(&self) -> Vec<usize>;
    /// Builds the method `spec` names for this family; a method without a version for it is
    /// refused with a line saying so.
    fn build_method(spec: &MethodSpec) -> Result<BuiltFor<Self>, MethodError>;
    /// The `plasticity` event after `after_tasks` tasks, on a probe of `task`.
    #[allow(clippy::too_many_arguments)]
    fn plasticity(
        compute: &mut Self::Compute,
        net: &Self,
        learner: Option<&mut dyn Learner<Self>>,
        task: &Task,
        spec: &PlasticitySpec,
        seed: u64,
        after_tasks: usize,
    ) -> Result<EventBody, RunError>;
}

impl Trainable for Mlp {
    type Params = Layers;
    type Workspace = Workspace;
    type Compute = Compute;

    fn parameters(&self) -> &Layers {
        &self.params
    }

    fn parameters_mut(&mut self) -> &mut Layers {
        &mut self.params
    }

    fn outputs(&self) -> usize {
        self.sizes().last().copied().unwrap_or(0)
    }

    fn parameter_count(&self) -> usize {
        Mlp::parameter_count(self)
    }

    fn structure(&self) -> Vec<usize> {
        self.sizes()
    }

    fn build_method(spec: &MethodSpec) -> Result<BuiltFor<Self>, MethodError> {
        method::build(spec)
    }

    fn plasticity(
        compute: &mut Compute,
        net: &Mlp,
        learner: Option<&mut dyn Learner<Mlp>>,
        task: &Task,
        spec: &PlasticitySpec,
        seed: u64,
        after_tasks: usize,
    ) -> Result<EventBody, RunError> {
        super::diagnostics::plasticity(compute, net, learner, task, spec, seed, after_tasks)
    }
}

impl Trainable for ConvNet {
    type Params = ConvNet;
    type Workspace = crate::model::convnet::Workspace;
    type Compute = ConvCompute;

    fn parameters(&self) -> &ConvNet {
        self
    }

    fn parameters_mut(&mut self) -> &mut ConvNet {
        self
    }

    fn outputs(&self) -> usize {
        ConvNet::outputs(self)
    }

    fn parameter_count(&self) -> usize {
        ConvNet::parameter_count(self)
    }

    fn structure(&self) -> Vec<usize> {
        self.tensors().iter().map(|t| t.values.len()).collect()
    }

    fn build_method(spec: &MethodSpec) -> Result<BuiltFor<Self>, MethodError> {
        method::build_conv(spec)
    }

    fn plasticity(
        compute: &mut ConvCompute,
        net: &ConvNet,
        _learner: Option<&mut dyn Learner<ConvNet>>,
        task: &Task,
        spec: &PlasticitySpec,
        seed: u64,
        after_tasks: usize,
    ) -> Result<EventBody, RunError> {
        super::diagnostics::conv_plasticity(compute, net, task, spec, seed, after_tasks)
    }
}
