//! Continual-learning methods behind one trait.
//!
//! The trainer runs every step as: forward → loss → [`ContinualMethod::output_gradient`] →
//! backward → [`ContinualMethod::shape_gradients`] → [`ContinualMethod::update`] (the optimiser by
//! default) → [`ContinualMethod::after_update`]; and calls [`ContinualMethod::task_started`] /
//! [`ContinualMethod::task_finished`] at task boundaries the learner is allowed to see. Through
//! these hooks a method reads activations, gradients and parameters per unit, masks gradients,
//! rewrites rows and columns of weight matrices and resets optimiser state — what continual
//! backprop, CLNP, EWC and the others need.
//!
//! Adding a method: one file implementing [`ContinualMethod`] and [`MethodKind`], one line in
//! [`registry`], a recipe example and tests of its defining property.

mod backprop;
mod cbp;
mod cbp_conv;
mod classp;
mod clnp;
mod context;
mod conv_compute;
mod conv_state;
#[cfg(test)]
mod conv_testing;
mod conv_units;
mod ewc;
mod l2;
mod l2_init;
mod learner;
mod niwf;
mod params;
mod redo;
mod redo_conv;
mod rehearsal;
mod shrink_perturb;
mod state;
mod weight_aligning;

pub use context::{Compute, OutputContext, Passes, StepContext, TaskContext};
pub use conv_compute::ConvCompute;
pub use learner::{Learner, LearnerStep};
pub use params::MethodError;
pub use state::{MethodState, StateTensor};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::engine::Trainable;
use crate::model::convnet::ConvNet;
use crate::model::Mlp;
use crate::optim::{OptimizerConfig, OptimizerKind};
use crate::protocol::MethodSpec;

/// A continual-learning method. Every hook has a neutral default, so a method implements only
/// what it changes.
///
/// `M` is the model family the method trains: MLPs (the default) or conv nets
/// ([`ConvNet`]); a method with versions for both implements the trait twice.
pub trait ContinualMethod<M: Trainable = Mlp>: Send {
    /// Once, before the first task of a fresh run (not on resume: state comes from the
    /// checkpoint then). Snapshot initial parameters here.
    fn begin(&mut self, _cx: &mut TaskContext<'_, M>) -> Result<(), MethodError> {
        Ok(())
    }

    /// A task begins (not called on online streams, whose learner is not told).
    fn task_started(&mut self, _cx: &mut TaskContext<'_, M>) -> Result<(), MethodError> {
        Ok(())
    }

    /// Adjusts d(loss)/d(outputs) before back-propagation (e.g. distillation terms).
    fn output_gradient(&mut self, _cx: &mut OutputContext<'_, M>) {}

    /// Adjusts the parameter gradients before the update (regularisers, masks).
    fn shape_gradients(&mut self, _cx: &mut StepContext<'_, M>) {}

    /// Applies the update; by default the configured optimiser.
    fn update(&mut self, cx: &mut StepContext<'_, M>) {
        cx.optimizer.step_parameters(cx.net.parameters_mut(), cx.grads);
    }

    /// After the update (unit replacement, noise, restoring frozen weights).
    fn after_update(&mut self, _cx: &mut StepContext<'_, M>) {}

    /// A task ended (not called on online streams). Diagnostics go to `cx.report`.
    fn task_finished(&mut self, _cx: &mut TaskContext<'_, M>) -> Result<(), MethodError> {
        Ok(())
    }

    /// Writes the method's whole state (everything a resumed run needs to continue
    /// bit-identically).
    fn save(&self, _state: &mut MethodState) {}

    /// Restores what [`ContinualMethod::save`] wrote.
    fn load(&mut self, _state: &MethodState) -> Result<(), MethodError> {
        Ok(())
    }

    /// The method's own model, for methods that are not the plain MLP (see [`Learner`]). When
    /// it returns one, the trainer trains and predicts through it and the step hooks above
    /// (`output_gradient` … `after_update`) are not called; the task hooks, `begin`, `save`
    /// and `load` are. `None` (the default) is the standard MLP path.
    fn learner(&mut self) -> Option<&mut dyn Learner<M>> {
        None
    }
}

/// Static description of a method kind: how recipes name it and how it is built.
pub trait MethodKind {
    /// The kind's name in recipes (`cbp`, `l2`, …).
    const KIND: &'static str;
    /// One line for `clorch methods` and the recipe reference.
    const SUMMARY: &'static str;
    /// The optimiser used when a recipe names none.
    const DEFAULT_OPTIMIZER: OptimizerKind = OptimizerKind::Sgd;
    /// Whether the recipe may choose the optimiser (`false` for `sgd` and `adam`, whose name
    /// is the optimiser).
    const OPTIMIZER_CHOICE: bool = true;
    /// Whether the method needs to be told where tasks begin and end (it consolidates, prunes
    /// or aligns at task boundaries). Online streams do not announce boundaries, so such
    /// methods are refused there rather than silently doing nothing.
    const NEEDS_TASK_BOUNDARIES: bool = false;
    /// Whether the method is task-incremental: it needs one output head per task (a task id
    /// at test time), and is refused with a shared head.
    const NEEDS_TASK_HEADS: bool = false;
    /// The method's own hyper-parameters; `Default` holds the paper's defaults, and the serde
    /// field names are the recipe's parameter names.
    type Config: DeserializeOwned + Serialize + Default;
    /// Checks a configuration's values (ranges); one line saying what is wrong.
    fn check(_config: &Self::Config) -> Result<(), String> {
        Ok(())
    }
    /// Checks the optimiser settings against the method: a method that replaces the update
    /// (`classp`) rejects the settings it would silently ignore, such as SGD momentum. One line
    /// saying what is wrong.
    fn check_optimizer(_optimizer: &OptimizerConfig) -> Result<(), String> {
        Ok(())
    }
    /// Checks a configuration against the stream it will train on, before anything trains:
    /// a parameter that names tasks must name tasks the stream has. Without it such a
    /// mistake passes `clorch validate` and fails the run when training begins. One line
    /// saying what is wrong.
    fn check_stream(_config: &Self::Config, _tasks: usize) -> Result<(), String> {
        Ok(())
    }
    /// Builds the method.
    fn build(config: Self::Config, optimizer: &OptimizerConfig) -> Box<dyn ContinualMethod>;
    /// Builds the method's version for convolutional networks; `None` (the default): it has
    /// none, and a recipe that pairs it with a conv net is refused at validation.
    fn build_conv(
        _config: Self::Config,
        _optimizer: &OptimizerConfig,
    ) -> Option<Box<dyn ContinualMethod<ConvNet>>> {
        None
    }
}

/// A built method and its optimiser configuration.
pub type Built = (Box<dyn ContinualMethod>, OptimizerConfig);

/// A built conv-net method and its optimiser configuration.
pub type BuiltConv = (Box<dyn ContinualMethod<ConvNet>>, OptimizerConfig);

/// A registered method kind.
pub struct MethodInfo {
    /// Name in recipes.
    pub kind: &'static str,
    /// One-line description.
    pub summary: &'static str,
    /// Default optimiser.
    pub default_optimizer: OptimizerKind,
    /// Whether `optimizer` may be set.
    pub optimizer_choice: bool,
    /// Whether the method needs task boundaries ([`MethodKind::NEEDS_TASK_BOUNDARIES`]).
    pub needs_task_boundaries: bool,
    /// Whether the method needs one head per task ([`MethodKind::NEEDS_TASK_HEADS`]).
    pub needs_task_heads: bool,
    parameters: fn() -> Vec<(String, serde_json::Value)>,
    build: fn(&MethodSpec) -> Result<Built, MethodError>,
    build_conv: fn(&MethodSpec) -> Result<Option<BuiltConv>, MethodError>,
    check_stream: fn(&MethodSpec, usize) -> Result<(), MethodError>,
}

impl MethodInfo {
    /// Whether the method has a version for convolutional networks.
    pub fn trains_conv(&self) -> bool {
        let spec = MethodSpec {
            name: self.kind.into(),
            kind: self.kind.into(),
            params: Default::default(),
            worker: None,
        };
        matches!((self.build_conv)(&spec), Ok(Some(_)))
    }

    /// The method's own parameters with their default values, in the config's field order.
    pub fn own_parameters(&self) -> Vec<(String, serde_json::Value)> {
        (self.parameters)()
    }

    /// The optimisers a recipe may train this method with, the default first.
    pub fn optimizers(&self) -> Vec<OptimizerKind> {
        let other = match self.default_optimizer {
            OptimizerKind::Sgd => OptimizerKind::Adam,
            OptimizerKind::Adam => OptimizerKind::Sgd,
        };
        let mut kinds = vec![self.default_optimizer];
        if self.optimizer_choice {
            kinds.push(other);
        }
        kinds
    }

    /// The optimiser's parameters a recipe may set when this method trains with `optimizer`,
    /// with their defaults: `lr`, then `momentum` (SGD) or `beta1, beta2, eps` (Adam) — those
    /// this method accepts both at their default and at another valid value (`classp` has no
    /// momentum: it accepts only 0, so momentum is not listed for it).
    pub fn optimizer_parameters(&self, optimizer: OptimizerKind) -> Vec<(String, serde_json::Value)> {
        let d = crate::optim::OptimizerConfig::defaults(optimizer);
        // (name, default, another valid value)
        let mut all = vec![("lr", d.lr, d.lr * 2.0)];
        match optimizer {
            OptimizerKind::Sgd => all.push(("momentum", d.momentum, 0.5)),
            OptimizerKind::Adam => {
                all.extend([("beta1", d.beta1, 0.5), ("beta2", d.beta2, 0.99), ("eps", d.eps, 1e-6)])
            }
        }
        let accepts = |name: &str, value: f32| {
            let mut spec = MethodSpec {
                name: self.kind.into(),
                kind: self.kind.into(),
                params: Default::default(),
                worker: None,
            };
            spec.params.insert("optimizer".into(), optimizer_name(optimizer).into());
            spec.params.insert(name.into(), params::f32_value(value));
            (self.build)(&spec).is_ok()
        };
        all.into_iter()
            .filter(|&(name, default, other)| accepts(name, default) && accepts(name, other))
            .map(|(name, default, _)| (name.to_string(), params::f32_value(default)))
            .collect()
    }

    /// Every parameter a run of this method with the spec's `given` parameters trains with:
    /// the given values, the rest at their defaults (`optimizer` named, its settings, the
    /// method's own). What a report's `param.*` columns and `--where` see.
    pub fn resolved_parameters(
        &self,
        given: &std::collections::BTreeMap<String, serde_json::Value>,
    ) -> std::collections::BTreeMap<String, serde_json::Value> {
        let optimizer = match given.get("optimizer").and_then(|v| v.as_str()) {
            Some("adam") => OptimizerKind::Adam,
            Some("sgd") => OptimizerKind::Sgd,
            _ => self.default_optimizer,
        };
        let mut all: std::collections::BTreeMap<String, serde_json::Value> =
            self.optimizer_parameters(optimizer).into_iter().chain(self.own_parameters()).collect();
        all.insert("optimizer".into(), optimizer_name(optimizer).into());
        all.extend(given.iter().map(|(k, v)| (k.clone(), v.clone())));
        all
    }

    /// Every parameter name a recipe may set: the optimiser's and the method's own.
    pub fn parameter_names(&self) -> Vec<String> {
        let mut names: Vec<String> = params::optimizer_parameter_names(self.optimizer_choice);
        names.extend(self.own_parameters().into_iter().map(|(n, _)| n));
        names
    }
}

/// The optimiser's name in recipes.
pub fn optimizer_name(kind: OptimizerKind) -> &'static str {
    match kind {
        OptimizerKind::Sgd => "sgd",
        OptimizerKind::Adam => "adam",
    }
}

fn info<M: MethodKind>() -> MethodInfo {
    MethodInfo {
        kind: M::KIND,
        summary: M::SUMMARY,
        default_optimizer: M::DEFAULT_OPTIMIZER,
        optimizer_choice: M::OPTIMIZER_CHOICE,
        needs_task_boundaries: M::NEEDS_TASK_BOUNDARIES,
        needs_task_heads: M::NEEDS_TASK_HEADS,
        parameters: || params::default_parameters::<M::Config>(),
        build: |spec| {
            let (config, optimizer) = params::parse::<M>(spec)?;
            Ok((M::build(config, &optimizer), optimizer))
        },
        build_conv: |spec| {
            let (config, optimizer) = params::parse::<M>(spec)?;
            Ok(M::build_conv(config, &optimizer).map(|m| (m, optimizer)))
        },
        check_stream: |spec, tasks| {
            let (config, _) = params::parse::<M>(spec)?;
            M::check_stream(&config, tasks).map_err(|message| MethodError::Parameter {
                method: spec.name.clone(),
                kind: spec.kind.clone(),
                message,
            })
        },
    }
}

/// Every method kind clorch knows, in the order `clorch methods` lists them.
pub fn registry() -> Vec<MethodInfo> {
    vec![
        info::<backprop::Sgd>(),
        info::<backprop::Adam>(),
        info::<l2::L2>(),
        info::<shrink_perturb::ShrinkPerturb>(),
        info::<cbp::Cbp>(),
        info::<l2_init::L2InitKind>(),
        info::<classp::ClasspKind>(),
        info::<ewc::EwcKind>(),
        info::<redo::RedoKind>(),
        info::<weight_aligning::WeightAligningKind>(),
        info::<clnp::Clnp>(),
        info::<niwf::WeightFieldKind>(),
        info::<niwf::Niwf>(),
        info::<rehearsal::ErKind>(),
        info::<rehearsal::DerKind>(),
        info::<rehearsal::DerppKind>(),
        info::<rehearsal::AgemKind>(),
    ]
}

/// The registered kind `kind`.
pub fn lookup(kind: &str) -> Result<MethodInfo, MethodError> {
    registry().into_iter().find(|m| m.kind == kind).ok_or_else(|| MethodError::UnknownKind {
        kind: kind.to_string(),
        known: registry().iter().map(|m| m.kind).collect::<Vec<_>>().join(", "),
    })
}

/// Builds the method a spec names, with its optimiser configuration.
pub fn build(spec: &MethodSpec) -> Result<Built, MethodError> {
    (lookup(&spec.kind)?.build)(spec)
}

/// Builds the conv-net version of the method a spec names, with its optimiser configuration;
/// a method without one is refused, naming the methods that have one.
pub fn build_conv(spec: &MethodSpec) -> Result<BuiltConv, MethodError> {
    (lookup(&spec.kind)?.build_conv)(spec)?.ok_or_else(|| MethodError::Parameter {
        method: spec.name.clone(),
        kind: spec.kind.clone(),
        message: format!(
            "`{}` trains multi-layer perceptrons only; methods with a convolutional-network version: {}",
            spec.kind,
            registry().iter().filter(|m| m.trains_conv()).map(|m| m.kind).collect::<Vec<_>>().join(", ")
        ),
    })
}

/// Checks a spec against a stream of `tasks` tasks ([`MethodKind::check_stream`]).
pub fn check_stream(spec: &MethodSpec, tasks: usize) -> Result<(), MethodError> {
    (lookup(&spec.kind)?.check_stream)(spec, tasks)
}

/// Checks a spec (kind, parameter names, types and ranges) without training anything.
pub fn validate(spec: &MethodSpec) -> Result<(), MethodError> {
    build(spec).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn spec(kind: &str, params: serde_json::Value) -> MethodSpec {
        let params: BTreeMap<String, serde_json::Value> = serde_json::from_value(params).unwrap();
        MethodSpec { name: kind.into(), kind: kind.into(), params, worker: None }
    }

    #[test]
    fn every_registered_kind_builds_with_its_defaults_and_names_its_parameters() {
        let kinds: Vec<_> = registry().iter().map(|m| m.kind).collect();
        let mut unique = kinds.clone();
        unique.dedup();
        assert_eq!(kinds, unique);
        for m in registry() {
            validate(&spec(m.kind, serde_json::json!({}))).unwrap();
            // Setting every documented parameter to its default is accepted.
            let all: serde_json::Map<_, _> = m.own_parameters().into_iter().collect();
            validate(&spec(m.kind, serde_json::Value::Object(all))).unwrap();
        }
    }

    #[test]
    fn bad_specs_get_one_clear_line() {
        let err = validate(&spec("sgdd", serde_json::json!({}))).unwrap_err().to_string();
        assert!(err.contains("unknown method kind `sgdd`") && err.contains("sgd, adam"), "{err}");
        let err = validate(&spec("l2", serde_json::json!({"weight_decy": 0.1}))).unwrap_err().to_string();
        assert!(err.contains("weight_decy") && err.contains("weight_decay"), "{err}");
        let err = validate(&spec("sgd", serde_json::json!({"lr": -1}))).unwrap_err().to_string();
        assert!(err.contains("lr") && err.contains("positive"), "{err}");
        let err = validate(&spec("sgd", serde_json::json!({"optimizer": "adam"}))).unwrap_err().to_string();
        assert!(err.contains("kind `adam`"), "{err}");
        let err = validate(&spec("l2", serde_json::json!({"optimizer": "rmsprop"}))).unwrap_err().to_string();
        assert!(err.contains("rmsprop") && err.contains("sgd or adam"), "{err}");
    }
}
