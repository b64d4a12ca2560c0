//! Plasticity diagnostics of the hidden layers on a probe batch of a task.

use rand::seq::index::sample;

use super::RunError;
use crate::method::{Compute, ConvCompute, Learner};
use crate::metrics::plasticity::{layer_plasticity, mean_abs_weight_over};
use crate::model::convnet::{self, ConvNet, Layer};
use crate::model::{activation, Mlp, Parameters, Targets, Workspace};
use crate::protocol::{EventBody, PlasticitySpec};
use crate::rng;
use crate::stream::Task;

/// The probe: up to `spec.probe` examples of `task`'s training split, a seeded sample in
/// split order, the same for every method of a seed.
fn probe_indices(task: &Task, spec: &PlasticitySpec, seed: u64) -> Vec<usize> {
    let n = task.train.len();
    let mut indices =
        sample(&mut rng::stream(seed, "plasticity.probe", task.index as u64), n, spec.probe.min(n))
            .into_vec();
    indices.sort_unstable();
    indices
}

/// Measures every hidden layer on up to `spec.probe` examples of `task`'s training split (a
/// seeded sample, the same for every method of a seed, so methods are compared on the same
/// probe) and returns the `plasticity` event. With a `learner` (a method's own model) the
/// features are its hidden values; the weight statistics stay those of `net`, its backbone.
pub fn plasticity(
    compute: &mut Compute,
    net: &Mlp,
    learner: Option<&mut dyn Learner>,
    task: &Task,
    spec: &PlasticitySpec,
    seed: u64,
    after_tasks: usize,
) -> Result<EventBody, RunError> {
    let indices = probe_indices(task, spec, seed);
    let probe = indices.len();
    let hidden = net.hidden_layers();
    let widths: Vec<usize> = net.layers()[..hidden].iter().map(|l| l.outputs).collect();
    let mut features: Vec<Vec<f32>> = widths.iter().map(|w| Vec::with_capacity(probe * w)).collect();
    let collect = |ws: &Workspace, _: Targets<'_>| {
        for (l, f) in features.iter_mut().enumerate() {
            f.extend_from_slice(ws.hidden(l));
        }
    };
    match learner {
        Some(learner) => compute
            .for_each_chunk_with(
                net,
                &task.train,
                &indices,
                |net, ws| learner.forward(None, net, ws),
                collect,
            )
            .map_err(RunError::Method)?,
        None => compute.for_each_chunk(net, &task.train, &indices, collect),
    }
    let relu_family = activation::can_die(net.activation);
    let mut layers = Vec::with_capacity(hidden);
    for (l, f) in features.iter().enumerate() {
        let measured =
            layer_plasticity(f, probe, widths[l], &net.layers()[l].weight, spec.dormant_tau, relu_family)
                .map_err(|e| RunError::Diagnostics(format!("hidden layer {l}: {e}")))?;
        layers.push(measured);
    }
    let weights: Vec<&[f32]> = net.layers().iter().map(|l| l.weight.as_slice()).collect();
    let mean_abs_weight =
        mean_abs_weight_over(&weights).map_err(|e| RunError::Diagnostics(format!("weights: {e}")))?;
    Ok(EventBody::Plasticity {
        after_tasks,
        probe_task: task.index,
        probe_examples: probe,
        layers,
        mean_abs_weight,
    })
}

/// The hidden layers of a conv net that plasticity is measured on: the output of every ReLU
/// and every residual block (which ends in one) before the last layer, with the weights that
/// feed it (the nearest convolution or linear layer before it; a block's second convolution).
fn rectified_layers(net: &ConvNet) -> Vec<(usize, &[f32])> {
    let mut out = Vec::new();
    let mut feeding: Option<&[f32]> = None;
    for (l, layer) in net.layers.iter().enumerate().take(net.layers.len().saturating_sub(1)) {
        match layer {
            Layer::Conv2d(c) => feeding = Some(&c.weight),
            Layer::Linear(lin) => feeding = Some(&lin.weight),
            Layer::BasicBlock(b) => {
                feeding = Some(&b.conv2.weight);
                out.push((l, &b.conv2.weight[..]));
            }
            Layer::Relu => {
                if let Some(w) = feeding {
                    out.push((l, w));
                }
            }
            _ => {}
        }
    }
    out
}

/// [`plasticity`] for a conv net: one entry per rectified layer ([`rectified_layers`]), its
/// units the layer's channels (a flat layer's units). A channel's feature on an example is its
/// activation averaged over the feature map — global average pooling, as the
/// loss-of-plasticity code pools conv features before it measures their rank — so a channel
/// is dead when it is zero at every position of every probe example, its dormancy score is
/// its mean activation against the layer's, and the effective and stable ranks are those of
/// the pooled `probe × channels` matrix. Batch norm uses its running statistics (evaluation
/// mode), so probing changes nothing.
pub fn conv_plasticity(
    compute: &mut ConvCompute,
    net: &ConvNet,
    task: &Task,
    spec: &PlasticitySpec,
    seed: u64,
    after_tasks: usize,
) -> Result<EventBody, RunError> {
    let indices = probe_indices(task, spec, seed);
    let probe = indices.len();
    let measured = rectified_layers(net);
    let shapes: Vec<convnet::Shape> = measured.iter().map(|&(l, _)| net.output_shape_of(l)).collect();
    let mut features: Vec<Vec<f32>> = shapes.iter().map(|s| Vec::with_capacity(probe * s.channels)).collect();
    compute.for_each_chunk(net, &task.train, &indices, |ws, _| {
        for ((&(l, _), shape), f) in measured.iter().zip(&shapes).zip(features.iter_mut()) {
            let plane = shape.height * shape.width;
            for map in ws.layer_output(l).chunks_exact(plane) {
                f.push((map.iter().map(|&v| v as f64).sum::<f64>() / plane as f64) as f32);
            }
        }
    });
    let mut layers = Vec::with_capacity(measured.len());
    for (i, ((l, weights), f)) in measured.iter().zip(&features).enumerate() {
        let channels = shapes[i].channels;
        let entry = layer_plasticity(f, probe, channels, weights, spec.dormant_tau, true)
            .map_err(|e| RunError::Diagnostics(format!("layer {l}: {e}")))?;
        layers.push(entry);
    }
    // Every weight matrix and kernel, biases and batch norm's scales excluded, as for MLPs.
    let tensors = net.tensors();
    let weights: Vec<&[f32]> =
        tensors.iter().filter(|t| t.name.ends_with("weight")).map(|t| t.values).collect();
    let mean_abs_weight =
        mean_abs_weight_over(&weights).map_err(|e| RunError::Diagnostics(format!("weights: {e}")))?;
    Ok(EventBody::Plasticity {
        after_tasks,
        probe_task: task.index,
        probe_examples: probe,
        layers,
        mean_abs_weight,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::convnet::{LayerSpec, Shape};
    use crate::stream::split::{Inputs, Split, Targets as Labels};
    use rand::Rng as _;

    /// A task of `n` random 2×6×6 images, every one of class 0.
    fn image_task(n: usize) -> Task {
        let mut r = rng::stream(3, "test", 0);
        let dim = 2 * 6 * 6;
        let data: Vec<f32> = (0..n * dim).map(|_| r.gen_range(-1.0..1.0)).collect();
        let split = Split {
            inputs: Inputs::Floats { data: data.into(), dim },
            targets: Labels::Classes { labels: vec![0u8; n].into(), map: None },
            rows: None,
            permutation: None,
            head: 0,
        };
        Task { index: 0, train: split.clone(), test: split, validation: None, active_outputs: None }
    }

    /// A channel whose kernel is zero and whose bias is negative never fires: it is dead, its
    /// pooled feature is zero on every probe example (so the pooled matrix has rank ≤ 2 of 3),
    /// and the hidden linear layer after it is measured as a layer of units.
    #[test]
    fn a_silenced_channel_is_dead_and_layers_are_measured_per_channel() {
        let specs = [
            LayerSpec::Conv2d { channels: 3, kernel: 3, stride: 1, padding: 1, bias: true },
            LayerSpec::Relu,
            LayerSpec::MaxPool2d { kernel: 2, stride: 2, padding: 0 },
            LayerSpec::Flatten,
            LayerSpec::Linear { units: 5 },
            LayerSpec::Relu,
            LayerSpec::Linear { units: 2 },
        ];
        let mut net = ConvNet::new(Shape::new(2, 6, 6), &specs, &mut rng::stream(0, "t", 0)).unwrap();
        let Layer::Conv2d(conv) = &mut net.layers[0] else { unreachable!() };
        conv.row_mut(0).fill(0.0);
        conv.bias.as_mut().unwrap()[0] = -1.0;
        let task = image_task(40);
        let mut compute = ConvCompute::new(&net, 8);
        let spec = PlasticitySpec { every: 1, probe: 30, dormant_tau: 0.1 };
        let EventBody::Plasticity { layers, probe_examples, .. } =
            conv_plasticity(&mut compute, &net, &task, &spec, 0, 1).unwrap()
        else {
            unreachable!()
        };
        assert_eq!(probe_examples, 30);
        assert_eq!(layers.len(), 2);
        assert_eq!(layers[0].units, 3);
        assert!((layers[0].dead - 1.0 / 3.0).abs() < 1e-12, "{:?}", layers[0]);
        assert!(layers[0].dormant >= 1.0 / 3.0);
        assert!(layers[0].effective_rank <= 2.0 + 1e-9 && layers[0].stable_rank <= 2, "{:?}", layers[0]);
        assert_eq!(layers[1].units, 5);
    }
}
