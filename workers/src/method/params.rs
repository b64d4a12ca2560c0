//! Parsing a method's parameters: the optimiser's keys first, the method's own config from
//! the rest (unknown names rejected).

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::MethodKind;
use crate::optim::{OptimizerConfig, OptimizerKind, OPTIMIZER_PARAMETERS};
use crate::protocol::MethodSpec;

/// Why a method could not be built or run.
#[derive(Debug, thiserror::Error)]
pub enum MethodError {
    /// No method of that kind is registered.
    #[error("unknown method kind `{kind}`; known kinds: {known}")]
    UnknownKind {
        /// The kind asked for.
        kind: String,
        /// The registered kinds.
        known: String,
    },
    /// A parameter is unknown, of the wrong type or out of range.
    #[error("method `{method}` ({kind}): {message}")]
    Parameter {
        /// The method's name.
        method: String,
        /// Its kind.
        kind: String,
        /// What is wrong and what is expected.
        message: String,
    },
    /// A checkpoint's method state does not fit the method.
    #[error("method state in the checkpoint: {0}")]
    State(String),
    /// The method cannot continue (e.g. a numerical failure).
    #[error("{0}")]
    Failed(String),
}

pub(super) fn optimizer_parameter_names(choice: bool) -> Vec<String> {
    OPTIMIZER_PARAMETERS.iter().filter(|&&n| choice || n != "optimizer").map(|n| n.to_string()).collect()
}

/// Serialises a whole-number parameter kept as f64 (so that a recipe's `1000.0` is accepted
/// and checked, not refused by serde) as the integer it is: `clorch methods` and exports show
/// `1000`, not `1000.0`.
pub(super) fn whole_number<S: serde::Serializer>(value: &f64, s: S) -> Result<S::Ok, S::Error> {
    if value.fract() == 0.0 && value.abs() < 9.0e15 {
        s.serialize_i64(*value as i64)
    } else {
        s.serialize_f64(*value)
    }
}

/// An f32 setting as the JSON number its decimal text reads (`0.01`, not the f64 widening
/// `0.009999999776482582`).
pub(super) fn f32_value(x: f32) -> serde_json::Value {
    serde_json::to_string(&x)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(serde_json::Value::Null)
}

pub(super) fn default_parameters<C: Serialize + Default>() -> Vec<(String, serde_json::Value)> {
    match serde_json::to_value(C::default()) {
        Ok(serde_json::Value::Object(map)) => map.into_iter().collect(),
        _ => Vec::new(),
    }
}

pub(super) fn parse<M: MethodKind>(spec: &MethodSpec) -> Result<(M::Config, OptimizerConfig), MethodError> {
    let fail = |message: String| MethodError::Parameter {
        method: spec.name.clone(),
        kind: spec.kind.clone(),
        message,
    };
    let mut own = serde_json::Map::new();
    let mut kind = M::DEFAULT_OPTIMIZER;
    if let Some(v) = spec.params.get("optimizer") {
        let chosen = match v.as_str() {
            Some("sgd") => OptimizerKind::Sgd,
            Some("adam") => OptimizerKind::Adam,
            _ => return Err(fail(format!("`optimizer` must be sgd or adam, not {v}"))),
        };
        if !M::OPTIMIZER_CHOICE && chosen != kind {
            return Err(fail(format!(
                "`optimizer` cannot be changed for `{}`; use kind `{}` instead",
                M::KIND,
                match chosen {
                    OptimizerKind::Sgd => "sgd",
                    OptimizerKind::Adam => "adam",
                }
            )));
        }
        kind = chosen;
    }
    let mut optimizer = OptimizerConfig::defaults(kind);
    for (name, value) in &spec.params {
        let number = || -> Result<f32, MethodError> {
            value
                .as_f64()
                .map(|v| v as f32)
                .filter(|v| v.is_finite())
                .ok_or_else(|| fail(format!("`{name}` must be a number, not {value}")))
        };
        match name.as_str() {
            "optimizer" => {}
            "lr" => {
                optimizer.lr = number()?;
                if optimizer.lr <= 0.0 {
                    return Err(fail(format!("`lr` must be positive, not {value}")));
                }
            }
            "momentum" | "beta1" | "beta2" => {
                let v = number()?;
                if !(0.0..1.0).contains(&v) {
                    return Err(fail(format!("`{name}` must lie in [0, 1), not {value}")));
                }
                match name.as_str() {
                    "momentum" => optimizer.momentum = v,
                    "beta1" => optimizer.beta1 = v,
                    _ => optimizer.beta2 = v,
                }
            }
            "eps" => {
                optimizer.eps = number()?;
                if optimizer.eps <= 0.0 {
                    return Err(fail(format!("`eps` must be positive, not {value}")));
                }
            }
            _ => {
                own.insert(name.clone(), value.clone());
            }
        }
    }
    if optimizer.kind == OptimizerKind::Adam && spec.params.contains_key("momentum") {
        return Err(fail("`momentum` applies to sgd; Adam uses `beta1`".into()));
    }
    if optimizer.kind == OptimizerKind::Sgd
        && ["beta1", "beta2", "eps"].iter().any(|k| spec.params.contains_key(*k))
    {
        return Err(fail("`beta1`, `beta2` and `eps` apply to adam; this method uses sgd".into()));
    }
    let config = config_from_map::<M::Config>(own).map_err(|e| {
        let own_names: Vec<String> = default_parameters::<M::Config>().into_iter().map(|(n, _)| n).collect();
        let mut names = optimizer_parameter_names(M::OPTIMIZER_CHOICE);
        names.extend(own_names);
        fail(format!("{e}; `{}` takes: {}", M::KIND, names.join(", ")))
    })?;
    M::check(&config).map_err(fail)?;
    M::check_optimizer(&optimizer).map_err(fail)?;
    Ok((config, optimizer))
}

fn config_from_map<C: DeserializeOwned>(
    map: serde_json::Map<String, serde_json::Value>,
) -> Result<C, String> {
    serde_json::from_value(serde_json::Value::Object(map)).map_err(|e| {
        // serde_json's messages are good ("unknown field `x`, expected one of …") but end
        // with a position that means nothing for a value tree.
        let msg = e.to_string();
        match msg.find(" at line ") {
            Some(i) => msg[..i].to_string(),
            None => msg,
        }
    })
}
