//! `weight_aligning` on convolutional networks: the same method as the MLP version (see the
//! parent module), with the final `Layer::Linear` as the classifier whose rows are aligned.
//!
//! What changes with the model family, and nothing else:
//! - **The head** is the conv net's last layer, which must be a `linear` layer (refused at
//!   `task_started` otherwise); its rows are the class weight vectors W_k of the paper (the
//!   features φ(x) are the flattened or pooled maps feeding it).
//! - **The previous network** for distillation runs in evaluation mode: batch norm uses its
//!   running statistics and moves none, as PyCIL's frozen `_old_network` (`.eval()`) does.
//! - **Growing heads**: on class-incremental CIFAR-100 each task trains on every class seen
//!   so far; its new classes are the increment (see the parent module's definition).
//! - **Checkpoints** store the previous network's named tensors (parameters and batch norm's
//!   running statistics). `load` has no network to shape them with, so they are put into a
//!   copy of the trained network's structure when first needed; a checkpoint whose tensors do
//!   not fit that structure fails the run at the next task boundary, with their names.

use super::{
    add_seen, align, distil, distillation_weight, new_classes, old_classes, task_classes,
    WeightAligningConfig,
};
use crate::method::conv_state::SavedConvNet;
use crate::method::{ContinualMethod, MethodError, MethodState, OutputContext, StepContext, TaskContext};
use crate::model::convnet::{self, ConvNet, Layer, Mode, Workspace};
use crate::model::Linear;
use crate::protocol::payload::MethodPayload;

/// Weight Aligning with knowledge distillation, for conv nets.
pub(crate) struct ConvWeightAligning {
    pub(super) config: WeightAligningConfig,
    /// Output indices of classes seen in tasks before the current one, sorted.
    seen: Vec<usize>,
    /// Output indices of the current task's classes, sorted.
    current: Vec<usize>,
    /// The network after the previous task (after its alignment), for distillation.
    previous: Option<ConvNet>,
    /// The previous network's tensors as a checkpoint holds them, until a network is at hand.
    restored: Option<SavedConvNet>,
    /// Why `restored` did not fit the network, reported at the next task boundary.
    failure: Option<String>,
    /// Buffers of the previous network's forward pass (not state).
    workspace: Option<Workspace>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Meta {
    seen: Vec<usize>,
    current: Vec<usize>,
    /// Names of the previous network's tensors, in order; absent when there is none.
    previous: Option<Vec<String>>,
}

impl ConvWeightAligning {
    /// A fresh method: no class seen yet.
    pub(crate) fn new(config: WeightAligningConfig) -> Self {
        ConvWeightAligning {
            config,
            seen: Vec::new(),
            current: Vec::new(),
            previous: None,
            restored: None,
            failure: None,
            workspace: None,
        }
    }

    fn old(&self) -> Vec<usize> {
        old_classes(&self.seen, &self.current)
    }

    /// λ of the current task.
    #[cfg(test)]
    fn distillation_weight_now(&self) -> f32 {
        distillation_weight(&self.config, self.old().len(), new_classes(&self.seen, &self.current).len())
    }

    /// Puts the previous network read from a checkpoint into a copy of `net`'s structure.
    fn materialise(&mut self, net: &ConvNet) {
        let Some(restored) = self.restored.take() else { return };
        match restored.to_net(net) {
            Ok(previous) => self.previous = Some(previous),
            Err(why) => self.failure = Some(why),
        }
    }

    fn check(&mut self) -> Result<(), MethodError> {
        match self.failure.take() {
            Some(why) => Err(MethodError::State(format!("weight_aligning: {why}"))),
            None => Ok(()),
        }
    }
}

/// The classifier: the network's last layer, which must be linear.
fn head_layer(net: &mut ConvNet) -> Result<&mut Linear, MethodError> {
    match net.layers.last_mut() {
        Some(Layer::Linear(l)) => Ok(l),
        _ => Err(MethodError::Failed(
            "weight_aligning needs a network whose last layer is `linear` (the classifier it aligns)".into(),
        )),
    }
}

impl ContinualMethod<ConvNet> for ConvWeightAligning {
    fn task_started(&mut self, cx: &mut TaskContext<'_, ConvNet>) -> Result<(), MethodError> {
        head_layer(cx.net)?;
        self.materialise(cx.net);
        self.check()?;
        self.current = task_classes(cx.task, cx.head.start)?;
        Ok(())
    }

    fn output_gradient(&mut self, cx: &mut OutputContext<'_, ConvNet>) {
        let lambda =
            distillation_weight(&self.config, self.old().len(), new_classes(&self.seen, &self.current).len());
        if lambda <= 0.0 {
            return;
        }
        self.materialise(cx.net);
        let old = self.old();
        let Some(previous) = self.previous.as_ref() else { return };
        let batch = cx.input.len() / previous.input_shape().len();
        let ws = self.workspace.get_or_insert_with(|| Workspace::new(previous, batch));
        ws.set_batch(previous, batch);
        ws.input.copy_from_slice(cx.input);
        convnet::forward_pass(previous, ws, Mode::Eval).expect("an evaluation-mode pass cannot fail");
        distil(lambda, self.config.temperature, &old, cx.outputs, ws.outputs(), cx.output_grad, cx.width);
    }

    fn after_update(&mut self, cx: &mut StepContext<'_, ConvNet>) {
        if self.config.clip_weights {
            if let Some(Layer::Linear(output)) = cx.net.layers.last_mut() {
                output.weight.iter_mut().for_each(|w| *w = w.max(0.0));
            }
        }
    }

    fn task_finished(&mut self, cx: &mut TaskContext<'_, ConvNet>) -> Result<(), MethodError> {
        self.check()?;
        let (old, new) = (self.old(), new_classes(&self.seen, &self.current));
        if let Some(aligned) = align(head_layer(cx.net)?, &old, &new, self.config.align_bias) {
            cx.report.push(MethodPayload::WeightAligningGamma(aligned));
        }
        add_seen(&mut self.seen, std::mem::take(&mut self.current));
        self.restored = None;
        if self.config.distillation > 0.0 {
            self.previous = Some(cx.net.clone());
        }
        Ok(())
    }

    fn save(&self, state: &mut MethodState) {
        let previous = match (&self.previous, &self.restored) {
            (Some(previous), _) => Some(SavedConvNet::save(state, "previous", previous)),
            (None, Some(restored)) => Some(restored.save_again(state, "previous")),
            (None, None) => None,
        };
        let meta = Meta { seen: self.seen.clone(), current: self.current.clone(), previous };
        state.meta = serde_json::to_value(meta).expect("class lists serialise");
    }

    fn load(&mut self, state: &MethodState) -> Result<(), MethodError> {
        let meta: Meta = serde_json::from_value(state.meta.clone())
            .map_err(|e| MethodError::State(format!("weight_aligning classes: {e}")))?;
        self.seen = meta.seen;
        self.current = meta.current;
        self.previous = None;
        self.failure = None;
        self.restored =
            meta.previous.map(|names| SavedConvNet::read(state, "previous", names)).transpose()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::method::conv_testing::{image_task, sgd, train_conv_steps, with_conv_task};
    use crate::model::convnet::{LayerSpec, Shape};
    use crate::rng;

    /// conv(1→3, 3×3) − ReLU − max pool − flatten − linear(8) on 1×6×6 images.
    fn net() -> ConvNet {
        let specs = [
            LayerSpec::Conv2d { channels: 3, kernel: 3, stride: 1, padding: 1, bias: true },
            LayerSpec::Relu,
            LayerSpec::MaxPool2d { kernel: 2, stride: 2, padding: 0 },
            LayerSpec::Flatten,
            LayerSpec::Linear { units: 8 },
        ];
        ConvNet::new(Shape::new(1, 6, 6), &specs, &mut rng::stream(1, "wa-conv", 0)).unwrap()
    }

    fn head(net: &ConvNet) -> &Linear {
        match net.layers.last() {
            Some(Layer::Linear(l)) => l,
            _ => unreachable!(),
        }
    }

    fn mean_norm(net: &ConvNet, classes: &[usize]) -> f64 {
        let out = head(net);
        classes
            .iter()
            .map(|&k| out.row(k).iter().map(|&w| f64::from(w).powi(2)).sum::<f64>().sqrt())
            .sum::<f64>()
            / classes.len() as f64
    }

    /// The defining property on a conv net with a growing head: after a task the new classes'
    /// rows of the final linear layer have the old classes' mean norm, every new-class logit is γ times what it
    /// was (features unchanged), and nothing else moves.
    #[test]
    fn alignment_gives_the_new_classes_rows_the_old_classes_mean_norm() {
        let mut net = net();
        let Some(Layer::Linear(out)) = net.layers.last_mut() else { unreachable!() };
        for k in [4, 5] {
            out.row_mut(k).iter_mut().for_each(|w| *w *= 3.0);
            out.bias[k] = 0.4 + k as f32 * 0.1;
        }
        let before = net.clone();
        let mut method = ConvWeightAligning::new(WeightAligningConfig::default());
        // A growing head: the task trains on every class so far, 4 and 5 are its increment.
        method.seen = vec![0, 1, 2, 3];
        method.current = vec![0, 1, 2, 3, 4, 5];
        let task = image_task(Shape::new(1, 6, 6), 2, 0, 4);
        let mut opt = sgd(&net, 0.1);
        let (result, report) =
            with_conv_task(&mut net, &mut opt, &task, 0..8, 1, &mut rng::stream(0, "t", 1), |cx| {
                method.task_finished(cx)
            });
        result.unwrap();
        let (old, new) = (mean_norm(&net, &[0, 1, 2, 3]), mean_norm(&net, &[4, 5]));
        assert!((old - new).abs() <= 1e-6 * old, "{old} vs {new}");
        let gamma = mean_norm(&before, &[0, 1, 2, 3]) / mean_norm(&before, &[4, 5]);
        assert!(gamma < 0.5, "{gamma}");
        let [MethodPayload::WeightAligningGamma(aligned)] = report.as_slice() else { panic!("{report:?}") };
        assert!((aligned.gamma - gamma).abs() < 1e-12);
        assert_eq!(
            (aligned.old_classes.as_slice(), aligned.new_classes.as_slice()),
            (&[0, 1, 2, 3][..], &[4, 5][..])
        );
        for k in [0, 1, 2, 3, 6, 7] {
            assert_eq!(head(&net).row(k), head(&before).row(k));
            assert_eq!(head(&net).bias[k], head(&before).bias[k]);
        }
        assert_eq!(net.layers[..4], before.layers[..4], "only the classifier is aligned");
        let outputs = |net: &ConvNet| {
            let mut ws = Workspace::new(net, 4);
            let mut r = rng::stream(2, "inputs", 0);
            ws.input.iter_mut().for_each(|x| *x = rand::Rng::gen_range(&mut r, -2.0f32..2.0));
            convnet::forward_pass(net, &mut ws, Mode::Eval).unwrap();
            ws.outputs().to_vec()
        };
        let (now, was) = (outputs(&net), outputs(&before));
        for b in 0..4 {
            for k in [4, 5] {
                let (z, z0) = (f64::from(now[b * 8 + k]), f64::from(was[b * 8 + k]));
                assert!((z - gamma * z0).abs() < 1e-5, "{z} vs γ·{z0}");
            }
        }
        assert_eq!(method.seen, [0, 1, 2, 3, 4, 5]);
        assert_eq!(method.previous.as_ref(), Some(&net));
    }

    /// Distillation against the previous conv net survives a checkpoint: a method restored
    /// from `save` (its previous network rebuilt into the trained network's structure) trains
    /// the next steps to the same bits as the original, and a network without a final linear
    /// layer is refused.
    #[test]
    fn distillation_resumes_bit_identically_from_a_checkpoint() {
        let mut net = net();
        let task0 = image_task(Shape::new(1, 6, 6), 4, 0, 6);
        let mut opt = sgd(&net, 0.05);
        let mut r = rng::stream(3, "t", 0);
        let mut method = ConvWeightAligning::new(WeightAligningConfig::default());
        let (result, _) = with_conv_task(&mut net, &mut opt, &task0, 0..4, 2, &mut r, |cx| {
            method.task_started(cx)?;
            method.task_finished(cx)
        });
        result.unwrap();
        assert!(method.previous.is_some());
        // Task 1 uses classes 4..8 (targets 0..4 read through rows 4..8).
        let task1 = image_task(Shape::new(1, 6, 6), 4, 1, 6);
        let (result, _) =
            with_conv_task(&mut net, &mut opt, &task1, 4..8, 2, &mut r, |cx| method.task_started(cx));
        result.unwrap();
        assert!(method.distillation_weight_now() > 0.0);
        train_conv_steps(&mut method, &mut net, &mut opt, &mut r, &task1, 4..8, 0..2, 6);
        let mut state = MethodState::default();
        method.save(&mut state);
        let mut restored = ConvWeightAligning::new(WeightAligningConfig::default());
        restored.load(&state).unwrap();
        let (mut net_b, mut opt_b, mut r_b) = (net.clone(), opt.clone(), r.clone());
        train_conv_steps(&mut method, &mut net, &mut opt, &mut r, &task1, 4..8, 2..5, 6);
        train_conv_steps(&mut restored, &mut net_b, &mut opt_b, &mut r_b, &task1, 4..8, 2..5, 6);
        assert_eq!(net, net_b, "the restored method distils to the same bits");
        assert_eq!(restored.previous, method.previous);

        let mut bad = ConvNet::new(
            Shape::new(1, 6, 6),
            &[LayerSpec::Conv2d { channels: 2, kernel: 3, stride: 1, padding: 1, bias: true }],
            &mut rng::stream(1, "t", 0),
        )
        .unwrap();
        let mut opt = sgd(&bad, 0.1);
        let (result, _) = with_conv_task(&mut bad, &mut opt, &task0, 0..2, 2, &mut r, |cx| {
            ConvWeightAligning::new(WeightAligningConfig::default()).task_started(cx)
        });
        assert!(result.unwrap_err().to_string().contains("last layer is `linear`"));
    }
}
