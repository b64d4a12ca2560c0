//! The image-benchmark recipes (issues #18 and #19) fit together before anyone downloads a data
//! set: each recipe's stream reads fixture data written in the canonical formats (the CIFAR
//! binary files, downsampled ImageNet's npz batches) from where `clorch data download` puts the
//! real files, its network plans on the stream's input shape, every grid point of every method
//! entry validates, and every method that has a conv-net version trains the recipe's own
//! network, with its batch size and optimiser settings, through a first task that changes what
//! the network computes.
//!
//! The recipes are read as shipped (YAML, turned into the wire JSON the orchestrator sends), so
//! an edit that breaks one fails here. Scaled down: the data (a few images per class), continual
//! ImageNet's task count and images per class (a fixture cannot hold 700 images of each of 1,000
//! classes), epochs (1), the validation split (2 examples), evaluation (2 examples per task, no
//! plasticity probe); and a run stops once the first task has been evaluated. A method entry
//! whose kind has no conv-net version yet is checked to be refused with the conv-net message
//! and is not trained; once its conv-net version exists, the same test trains it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::{json, Value};
use test_support::images::write_cifar100;
use workers::engine::{self, RunControl, RunOutcome};
use workers::protocol::*;

/// The recipes of issues #18 and #19.
const RECIPES: [&str; 5] = [
    "split-cifar100",
    "continual-imagenet",
    "class-incremental-cifar100",
    "split-cifar10-clnp",
    "weight-aligning-cifar100",
];

/// The recipe `recipes/<name>.yaml` as JSON.
fn recipe(name: &str) -> Value {
    let path = test_support::repo_root().join("recipes").join(format!("{name}.yaml"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let yaml: serde_yaml::Value = serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
    serde_json::to_value(yaml).unwrap()
}

/// Pixel `k` of image `i` of a fixture: varied, so batch norm sees non-constant channels.
fn pixel(i: usize, k: usize, salt: usize) -> u8 {
    ((i * 131 + k * 7 + (k / 1024) * 29 + salt) % 251) as u8
}

/// CIFAR-10's binary version: five training batches of `2 * per_class` images (so `per_class`
/// … of each class in all, 10 classes cycling) and a test batch of one image per class.
fn write_cifar10(dir: &Path, per_class: usize) {
    let records = |count: usize, salt: usize| -> Vec<u8> {
        (0..count)
            .flat_map(|i| std::iter::once((i % 10) as u8).chain((0..3072).map(move |k| pixel(i, k, salt))))
            .collect()
    };
    for b in 1..=5 {
        std::fs::write(dir.join(format!("data_batch_{b}.bin")), records(2 * per_class, b)).unwrap();
    }
    std::fs::write(dir.join("test_batch.bin"), records(10, 17)).unwrap();
}

/// A NumPy `.npy` array (format 1.0) of `descr` values.
fn npy(descr: &str, shape: &[usize], data: &[u8]) -> Vec<u8> {
    let dims = shape.iter().map(|d| format!("{d},")).collect::<String>();
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': ({dims}), }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((header.len() as u16).to_le_bytes());
    out.extend(header.as_bytes());
    out.extend(data);
    out
}

/// A ZIP archive of stored (uncompressed) members, as `numpy.savez` writes small ones.
fn zip_stored(members: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let (mut out, mut directory) = (Vec::new(), Vec::new());
    for (name, bytes) in members {
        let (crc, size, offset) = (crc32fast::hash(bytes), bytes.len() as u32, out.len() as u32);
        let common = |v: &mut Vec<u8>| {
            v.extend([20, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // version, flags, stored, time, date
            v.extend(crc.to_le_bytes());
            v.extend(size.to_le_bytes());
            v.extend(size.to_le_bytes());
            v.extend((name.len() as u16).to_le_bytes());
            v.extend(0u16.to_le_bytes());
        };
        out.extend(0x0403_4b50u32.to_le_bytes());
        common(&mut out);
        out.extend(name.as_bytes());
        out.extend(bytes);
        directory.extend(0x0201_4b50u32.to_le_bytes());
        directory.extend([20, 0]);
        common(&mut directory);
        directory.extend([0; 8]); // comment length, disk, internal and external attributes
        directory.extend([0; 2]);
        directory.extend(offset.to_le_bytes());
        directory.extend(name.as_bytes());
    }
    let at = out.len() as u32;
    out.extend(&directory);
    out.extend(0x0605_4b50u32.to_le_bytes());
    out.extend([0; 4]);
    out.extend((members.len() as u16).to_le_bytes());
    out.extend((members.len() as u16).to_le_bytes());
    out.extend((directory.len() as u32).to_le_bytes());
    out.extend(at.to_le_bytes());
    out.extend([0; 2]);
    out
}

/// The ten training batches of downsampled ImageNet 32×32 (npz variant) holding `per_class`
/// images of each of the 1,000 classes; image i has the 1-based label 1 + i mod 1000.
fn write_imagenet32(dir: &Path, per_class: usize) {
    let per_batch = per_class * 100;
    for b in 0..10 {
        let images = b * per_batch..(b + 1) * per_batch;
        let data: Vec<u8> = images.clone().flat_map(|i| (0..3072).map(move |k| pixel(i, k, 3))).collect();
        let labels: Vec<u8> = images.flat_map(|i| (1 + (i % 1000) as i64).to_le_bytes()).collect();
        let archive = zip_stored(&[
            ("data.npy", npy("|u1", &[per_batch, 3072], &data)),
            ("labels.npy", npy("<i8", &[per_batch], &labels)),
        ]);
        std::fs::write(dir.join(format!("train_data_batch_{}.npz", b + 1)), archive).unwrap();
    }
}

/// Fixture folders of every data set the recipes read.
struct Fixtures {
    cifar10: PathBuf,
    cifar100: PathBuf,
    imagenet32: PathBuf,
}

impl Fixtures {
    /// Writes them under `root`.
    fn write(root: &Path) -> Fixtures {
        let make = |name: &str| {
            let dir = root.join(name);
            std::fs::create_dir_all(&dir).unwrap();
            dir
        };
        let (cifar10, cifar100, imagenet32) = (make("cifar10"), make("cifar100"), make("imagenet32"));
        write_cifar10(&cifar10, 10);
        write_cifar100(&cifar100, 2, pixel);
        write_imagenet32(&imagenet32, 3);
        Fixtures { cifar10, cifar100, imagenet32 }
    }

    /// Where the recipe of stream `kind` must point (relative to `recipes/`, where `clorch data
    /// download` and the ImageNet instructions put the files) and the fixture standing in.
    fn for_kind(&self, kind: &str) -> (&'static str, &Path) {
        match kind {
            "split_cifar10" => ("../data/cifar10/cifar-10-batches-bin", &self.cifar10),
            "split_cifar100" | "class_incremental_cifar100" => {
                ("../data/cifar100/cifar-100-binary", &self.cifar100)
            }
            "continual_imagenet" => ("../data/imagenet32", &self.imagenet32),
            other => panic!("no fixture for stream kind `{other}`"),
        }
    }
}

/// The recipe's stream, normalised as the orchestrator does, with its data folder replaced by
/// the fixture and continual ImageNet cut to what the fixture holds.
fn stream(name: &str, recipe: &Value, data: &Fixtures) -> StreamSpec {
    let mut params = recipe["stream"].as_object().unwrap_or_else(|| panic!("{name}: one `stream`")).clone();
    let kind = params.remove("kind").and_then(|k| k.as_str().map(str::to_string)).expect("a stream kind");
    let as_written: Params = serde_json::from_value(Value::Object(params.clone())).unwrap();
    workers::stream::normalize(&kind, &as_written).unwrap_or_else(|e| panic!("{name}: stream: {e:?}"));
    let (expected_dir, fixture) = data.for_kind(&kind);
    assert_eq!(params["data_dir"], expected_dir, "{name}: the data folder `clorch data download` fills");
    params.insert("data_dir".into(), json!(fixture));
    if kind == "continual_imagenet" {
        params.insert("tasks".into(), json!(3));
        params.insert("train_per_class".into(), json!(2));
        params.insert("test_per_class".into(), json!(1));
    }
    let params: Params = serde_json::from_value(Value::Object(params)).unwrap();
    let spec = workers::stream::normalize(&kind, &params).unwrap_or_else(|e| panic!("{name}: stream: {e:?}"));
    workers::stream::validate(&spec).unwrap_or_else(|e| panic!("{name}: fixture data: {e}"));
    spec
}

/// Every grid point of a method entry: the cartesian product of its list-valued parameters.
fn grid_points(entry: &Value) -> Vec<MethodSpec> {
    let mut fields = entry.as_object().expect("a method entry is a mapping").clone();
    let name = fields.remove("name").and_then(|n| n.as_str().map(str::to_string)).expect("a method name");
    let kind = fields.remove("kind").and_then(|k| k.as_str().map(str::to_string)).unwrap_or(name.clone());
    let mut points = vec![std::collections::BTreeMap::new()];
    for (key, value) in fields {
        let values = match value {
            Value::Array(values) => values,
            single => vec![single],
        };
        let mut next = Vec::new();
        for point in &points {
            for v in &values {
                let mut point = point.clone();
                point.insert(key.clone(), v.clone());
                next.push(point);
            }
        }
        points = next;
    }
    points
        .into_iter()
        .map(|params| MethodSpec { name: name.clone(), kind: kind.clone(), params, worker: None })
        .collect()
}

/// Collects the events and asks the run to stop once the first task has been evaluated.
#[derive(Clone)]
struct StopAfterFirstTask {
    events: Arc<Mutex<Vec<u8>>>,
    stop: Arc<AtomicBool>,
}

impl Write for StopAfterFirstTask {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut events = self.events.lock().unwrap();
        events.extend_from_slice(buf);
        // The pattern may straddle two writes.
        let fresh = &events[events.len().saturating_sub(buf.len() + 14)..];
        if fresh.windows(15).any(|w| w == b"\"after_task\":0,") {
            self.stop.store(true, Ordering::Relaxed);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs `spec` until its first task has been evaluated; returns its events.
fn first_task(spec: &RunSpec) -> Vec<Value> {
    let control = RunControl::default();
    let out = StopAfterFirstTask { events: Arc::default(), stop: control.stop.clone() };
    let outcome = engine::run(spec, Box::new(out.clone()), &control)
        .unwrap_or_else(|e| panic!("{}: {e}", spec.method.name));
    assert!(matches!(outcome, RunOutcome::Interrupted { .. } | RunOutcome::Finished), "{outcome:?}");
    let text = String::from_utf8(out.events.lock().unwrap().clone()).unwrap();
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// The loss of the evaluation of task 0 after `after` tasks (`None`: before training).
fn loss_on_first_task(events: &[Value], after: Option<u64>) -> f64 {
    let after = after.map_or(Value::Null, Value::from);
    events
        .iter()
        .find(|e| {
            e["event"] == "eval" && e["on_task"] == 0 && e["after_task"] == after && e["variant"].is_null()
        })
        .and_then(|e| e["loss"].as_f64())
        .unwrap_or_else(|| panic!("no evaluation of task 0 after {after}"))
}

/// Each image recipe's stream reads the canonical formats from the folders its comments name,
/// its network plans on the stream's input, every grid point of every method validates, and
/// every method with a conv-net version takes a first task of the recipe's own network and
/// optimiser settings that changes its loss on that task (finite before and after). Methods
/// without a conv-net version are refused with the message naming the ones that have one.
#[test]
fn every_image_recipe_plans_and_trains_its_first_task_on_fixture_data() {
    let root = test_support::scratch("image-recipes");
    let data = Fixtures::write(root.path());
    let mut untrained = Vec::new();
    for name in RECIPES {
        let recipe = recipe(name);
        for key in recipe.as_object().unwrap().keys() {
            let known = ["name", "description", "stream", "network", "training", "eval", "methods", "seeds"];
            assert!(known.contains(&key.as_str()), "{name}: the test does not know the recipe key `{key}`");
        }
        let stream = stream(name, &recipe, &data);
        let network: NetworkSpec = serde_json::from_value(recipe["network"].clone()).unwrap();
        let mut training: TrainingSpec = serde_json::from_value(recipe["training"].clone()).unwrap();
        let mut eval: EvalSpec = serde_json::from_value(recipe["eval"].clone()).unwrap();
        training.epochs = 1;
        training.validation = training.validation.min(2);
        eval.before_training = true;
        eval.max_examples = Some(2);
        eval.plasticity.every = 0;
        for entry in recipe["methods"].as_array().unwrap() {
            let points = grid_points(entry);
            for point in &points {
                workers::method::validate(point).unwrap_or_else(|e| panic!("{name}: {}: {e}", point.name));
            }
            let method = points[0].clone();
            let mut spec = RunSpec {
                protocol: PROTOCOL_VERSION,
                id: String::new(),
                experiment: name.into(),
                seed: 1,
                stream: stream.clone(),
                network: network.clone(),
                method: method.clone(),
                training: training.clone(),
                eval: eval.clone(),
                checkpoint: CheckpointSpec::default(),
                run_dir: None,
            };
            spec.id = spec.content_id();
            let trains_conv = workers::method::lookup(&method.kind).unwrap().trains_conv();
            if !trains_conv {
                let err = engine::check_spec(&spec).expect_err("a method without a conv-net version");
                assert!(
                    err.contains("trains multi-layer perceptrons only"),
                    "{name}: {}: {err}",
                    method.name
                );
                untrained.push(format!("{name}/{}", method.name));
                continue;
            }
            engine::check_spec(&spec).unwrap_or_else(|e| panic!("{name}: {}: {e}", method.name));
            let started = Instant::now();
            let events = first_task(&spec);
            let took = started.elapsed();
            let run = events.iter().find(|e| e["event"] == "started").expect("a started event");
            let (before, after) = (loss_on_first_task(&events, None), loss_on_first_task(&events, Some(0)));
            assert!(
                before.is_finite() && after.is_finite(),
                "{name}: {}: losses {before}, {after}",
                method.name
            );
            assert_ne!(before, after, "{name}: {}: the first task changed nothing", method.name);
            let examples =
                events.iter().find(|e| e["event"] == "task_started").unwrap()["train_examples"].clone();
            println!(
                "{name}/{}: {} parameters, first task of {examples} examples trained and evaluated in {took:.1?}; \
                 loss on it {before:.4} → {after:.4}",
                method.name, run["parameters"]
            );
            if network.architecture == Some(Architecture::ReducedResnet18) {
                assert_eq!(
                    run["parameters"], 1_109_240,
                    "{name}: recipes/README.md's reduced ResNet-18 count"
                );
            }
        }
    }
    println!("no conv-net version yet, not trained: {}", untrained.join(", "));
}
