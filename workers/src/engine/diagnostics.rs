//! Plasticity diagnostics of the hidden layers on a probe batch of a task.

use rand::seq::index::sample;

use super::RunError;
use crate::method::{Compute, Learner};
use crate::metrics::plasticity::{layer_plasticity, mean_abs_weight_over};
use crate::model::{activation, Mlp, Targets, Workspace};
use crate::protocol::{EventBody, PlasticitySpec};
use crate::rng;
use crate::stream::Task;

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
    let n = task.train.len();
    let probe = spec.probe.min(n);
    let mut indices =
        sample(&mut rng::stream(seed, "plasticity.probe", task.index as u64), n, probe).into_vec();
    indices.sort_unstable();
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
