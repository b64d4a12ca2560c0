//! CLNP's defining guarantee, through the engine: once task j is done, nothing that feeds task
//! j's head changes — its outputs on task j's data keep the same f32 bits to the end of the
//! stream, and so R[i][j] = R[j][j] for every later i.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use test_support::images::write_cifar100;
use test_support::SpecBuilder;
use workers::checkpoint::{self, Checkpoint};
use workers::engine::{self, RunControl, RunOutcome};
use workers::model::{fused, Layers, Linear, Mlp, Workspace};
use workers::protocol::files::EVENTS as EVENT_LOG;
use workers::protocol::*;
use workers::stream;

const TASKS: usize = 4;
const CLASSES: usize = 4;
/// Test examples of each task whose outputs are compared bit for bit.
const BATCH: usize = 60;

/// A fresh run folder that outlives the test's handle (the test removes it when it passes).
fn scratch(name: &str) -> PathBuf {
    test_support::scratch(&format!("clnp-{name}")).keep()
}

/// Four tasks of a synthetic stream, one head each; Adam, whose moments would move frozen
/// weights if CLNP did not restore them; a checkpoint at the end of every task's training
/// (`every_steps` = steps per task) and at every task boundary, all kept.
fn spec(params: serde_json::Value, heads: Heads, dir: &Path) -> RunSpec {
    SpecBuilder::synthetic(TASKS)
        .experiment("clnp-test")
        .seed(3)
        .stream(serde_json::json!({"synthetic_permuted": {
            "tasks": TASKS, "classes": CLASSES, "dim": 16, "train_per_class": 60, "test_per_class": 25,
            "noise": 1.5, "transform": "permute"
        }}))
        .hidden(&[32, 24])
        .method("clnp", params)
        // 240 examples − 40 validation = 200 = 13 batches of 16; 3 passes: 39 steps per task.
        .training(16, 3)
        .run_dir(dir)
        .with(|s| {
            s.network.heads = heads;
            s.training.validation = 40;
            s.checkpoint = CheckpointSpec { every_steps: Some(39), every_tasks: Some(1), keep: 1000 };
        })
        .build()
}

fn events(dir: &Path) -> Vec<EventBody> {
    let text = std::fs::read_to_string(dir.join(EVENT_LOG)).unwrap();
    text.lines().map(|l| serde_json::from_str::<Event>(l).unwrap().body).collect()
}

/// The network stored in a checkpoint, and where in the stream it was taken.
fn network(ckpt: &Checkpoint) -> Mlp {
    let sizes: Vec<usize> = serde_json::from_value(ckpt.meta()["sizes"].clone()).unwrap();
    let layers = sizes
        .windows(2)
        .enumerate()
        .map(|(l, w)| Linear {
            inputs: w[0],
            outputs: w[1],
            weight: ckpt.f32(&format!("model.{l}.weight")).unwrap().to_vec(),
            bias: ckpt.f32(&format!("model.{l}.bias")).unwrap().to_vec(),
        })
        .collect();
    Mlp { params: Layers { layers }, activation: Activation::Relu }
}

/// The bits of head `task`'s outputs on the first [`BATCH`] test examples of task `task`.
fn head_bits(net: &Mlp, spec: &RunSpec, task: usize) -> Vec<u32> {
    let test = stream::build(&spec.stream, spec.seed).unwrap().task(task).test;
    let mut ws = Workspace::new(&net.sizes(), BATCH);
    test.gather_inputs(&(0..BATCH).collect::<Vec<_>>(), &mut ws.input);
    fused::forward(net, &mut ws);
    let width = CLASSES * TASKS;
    ws.outputs()
        .chunks_exact(width)
        .flat_map(|row| row[task * CLASSES..(task + 1) * CLASSES].iter().map(|v| v.to_bits()))
        .collect()
}

fn check_guarantee(margin: f64) {
    let dir = scratch(&format!("guarantee-{margin}"));
    let spec = spec(
        serde_json::json!({"optimizer": "adam", "lr": 0.01, "alpha": 1e-3, "margin": margin}),
        Heads::PerTask,
        &dir,
    );
    let control = RunControl::default();
    assert_eq!(engine::run(&spec, Box::new(std::io::sink()), &control).unwrap(), RunOutcome::Finished);

    // Networks after each task (boundary checkpoints: pruned and frozen), and after training
    // the last task (its last step; the final pruning only zeroes free units, which feed
    // nothing frozen, and the eval events below cover the very end).
    let mut after_task: Vec<Option<Mlp>> = vec![None; TASKS];
    for file in checkpoint::list(&dir).unwrap() {
        let ckpt = Checkpoint::read(&file.path).unwrap();
        let position = &ckpt.meta()["position"];
        let task = position["task"].as_u64().unwrap() as usize;
        if !position["task_begun"].as_bool().unwrap() && task > 0 {
            after_task[task - 1] = Some(network(&ckpt));
        } else if task == TASKS - 1 && position["epoch"] == 2 && position["batch"] == 13 {
            after_task[TASKS - 1] = Some(network(&ckpt));
        }
    }
    let after_task: Vec<Mlp> =
        after_task.into_iter().map(|n| n.expect("a checkpoint after every task")).collect();
    for j in 0..TASKS - 1 {
        let reference = head_bits(&after_task[j], &spec, j);
        for (i, later) in after_task.iter().enumerate().skip(j + 1) {
            assert_eq!(
                head_bits(later, &spec, j),
                reference,
                "margin {margin}: head {j}'s outputs changed by task {i}"
            );
        }
    }
    // The later tasks did train the shared network, not just their heads.
    assert_ne!(after_task[0].params.layers[0], after_task[TASKS - 1].params.layers[0]);
    assert_ne!(after_task[0].params.layers[1], after_task[TASKS - 1].params.layers[1]);

    // R[i][j] = R[j][j], loss and accuracy to the last bit.
    let events = events(&dir);
    let mut r: BTreeMap<(usize, usize), (f64, Option<f64>)> = BTreeMap::new();
    for e in &events {
        if let EventBody::Eval { after_task: Some(i), on_task, loss, accuracy, .. } = e {
            r.insert((*i, *on_task), (*loss, *accuracy));
        }
    }
    assert_eq!(r.len(), TASKS * TASKS);
    for j in 0..TASKS {
        for i in j + 1..TASKS {
            assert_eq!(r[&(i, j)], r[&(j, j)], "margin {margin}: R[{i}][{j}] ≠ R[{j}][{j}]");
        }
    }
    // The tasks are learnt (chance is 0.25), and pruning made room that later tasks used.
    assert!((0..TASKS).all(|j| r[&(j, j)].1.unwrap() > 0.35), "{r:?}");
    let capacity: Vec<(usize, &payload::ClnpCapacity)> = events
        .iter()
        .filter_map(|e| match e {
            EventBody::Method { task, payload: MethodPayload::ClnpCapacity(c) } => Some((*task, c)),
            _ => None,
        })
        .collect();
    assert_eq!(capacity.iter().map(|(t, _)| *t).collect::<Vec<_>>(), (0..TASKS).collect::<Vec<_>>());
    let total = |count: fn(&payload::ClnpLayer) -> usize, c: &payload::ClnpCapacity| -> usize {
        c.layers.iter().map(count).sum()
    };
    assert!(total(|l| l.pruned, capacity[0].1) > 0, "task 0 pruned nothing: {:?}", capacity[0]);
    assert!(
        capacity[1..].iter().any(|(_, c)| total(|l| l.new, c) > 0),
        "no later task kept a unit of its own"
    );
    for (t, (_, c)) in capacity.iter().enumerate() {
        assert_eq!((c.measured_on, c.examples), (payload::MeasuredOn::Validation, 40));
        for l in &c.layers {
            assert_eq!(l.used + l.free, l.units);
        }
        if t > 0 {
            assert!(total(|l| l.used, c) >= total(|l| l.used, capacity[t - 1].1), "U only grows");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn with_margin_zero_no_later_task_changes_an_earlier_heads_outputs() {
    check_guarantee(0.0);
}

#[test]
fn with_a_positive_margin_the_pruned_network_is_what_stays_fixed() {
    check_guarantee(0.05);
}

#[test]
fn a_shared_head_stops_the_run_before_training_with_a_clear_message() {
    let dir = scratch("shared");
    let spec = spec(serde_json::json!({}), Heads::Shared, &dir);
    let err = engine::run(&spec, Box::new(std::io::sink()), &RunControl::default()).unwrap_err().to_string();
    assert!(
        err.contains("is task-incremental: it needs one output head per task (`network.heads: per_task`"),
        "{err}"
    );
    // Refused before anything was trained (or even written).
    assert!(
        !dir.join(EVENT_LOG).exists()
            || !events(&dir).iter().any(|e| matches!(e, EventBody::TaskStarted { .. }))
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A pixel of the CIFAR-100 fixture (`write_cifar100`): each class a fixed
/// pattern plus a little per-image variation, so the tasks can be learnt in a few steps (a task
/// nothing was learnt on would make the guarantee vacuous).
fn class_pattern(i: usize, k: usize, salt: usize) -> u8 {
    let fine = i % 100;
    let pattern = (fine * 53 + (k % 97) * (fine % 11 + 3) + (k / 97) * (fine % 7)) % 251;
    (pattern + (i * 7 + k + salt) % 9) as u8
}

/// The guarantee on a conv net, through the engine: conv − ReLU − max pool − conv − ReLU −
/// max pool − flatten − linear heads, one per task, on four tasks of task-incremental split
/// CIFAR-100 (a learnable fixture), with SGD momentum. Every R[i][j] (loss and accuracy)
/// equals R[j][j] to the last bit, while the tasks were learnt and later tasks kept filters.
#[test]
fn on_a_conv_net_no_later_task_changes_an_earlier_heads_results() {
    let data = scratch("conv-data");
    write_cifar100(&data, 4, class_pattern);
    let dir = scratch("conv-guarantee");
    let spec = SpecBuilder::synthetic(TASKS)
        .experiment("clnp-conv-test")
        .seed(4)
        .stream(serde_json::json!({"split_cifar100": {
            "data_dir": &data, "tasks": TASKS, "augment": false
        }}))
        .method("clnp", serde_json::json!({"lr": 0.05, "momentum": 0.9, "alpha": 0.01, "retrain_epochs": 1, "retrain_batch_size": 8}))
        .training(8, 4)
        .run_dir(&dir)
        .with(|s| {
            s.network = serde_json::from_value(serde_json::json!({"layers": [
                {"conv2d": {"channels": 6, "kernel": 3, "padding": 1}}, {"relu": {}},
                {"max_pool2d": {"kernel": 4}},
                {"conv2d": {"channels": 8, "kernel": 3, "padding": 1}}, {"relu": {}},
                {"max_pool2d": {"kernel": 2}},
                {"flatten": {}}
            ]}))
            .unwrap();
            s.network.heads = Heads::PerTask;
        })
        .build();
    let control = RunControl::default();
    assert_eq!(engine::run(&spec, Box::new(std::io::sink()), &control).unwrap(), RunOutcome::Finished);
    let events = events(&dir);
    let mut r: BTreeMap<(usize, usize), (f64, Option<f64>)> = BTreeMap::new();
    for e in &events {
        if let EventBody::Eval { after_task: Some(i), on_task, loss, accuracy, .. } = e {
            r.insert((*i, *on_task), (*loss, *accuracy));
        }
    }
    assert_eq!(r.len(), TASKS * TASKS);
    for j in 0..TASKS {
        for i in j + 1..TASKS {
            assert_eq!(r[&(i, j)], r[&(j, j)], "R[{i}][{j}] ≠ R[{j}][{j}]");
        }
    }
    // Learnt: chance is 1/25.
    assert!((0..TASKS).all(|j| r[&(j, j)].1.unwrap() >= 0.12), "{r:?}");
    let capacity: Vec<&payload::ClnpCapacity> = events
        .iter()
        .filter_map(|e| match e {
            EventBody::Method { payload: MethodPayload::ClnpCapacity(c), .. } => Some(c),
            _ => None,
        })
        .collect();
    assert_eq!(capacity.len(), TASKS);
    let total = |count: fn(&payload::ClnpLayer) -> usize, c: &payload::ClnpCapacity| -> usize {
        c.layers.iter().map(count).sum()
    };
    assert_eq!(capacity[0].layers.iter().map(|l| l.units).collect::<Vec<_>>(), [6, 8]);
    assert!(total(|l| l.pruned, capacity[0]) > 0, "task 0 pruned nothing: {:?}", capacity[0]);
    assert!(
        capacity[1..].iter().any(|c| total(|l| l.new, c) > 0),
        "no later task kept a filter: {capacity:?}"
    );
    for d in [dir, data] {
        let _ = std::fs::remove_dir_all(d);
    }
}
