//! `where` filters: `method=cbp`, `stream=pmnist`, `seed=3`, `status=failed`, or any method
//! parameter of the runs' resolved specs, gridded or fixed (`lr=0.01`, `optimizer=adam`; also
//! written `param.lr=0.01`, as the export's column is named).
//!
//! Filters on the same key are alternatives (`method=cbp method=l2` keeps both); filters on
//! different keys must all hold. Numbers compare as numbers (`lr=1e-2` and `lr=0.010` match
//! `0.01`).

use std::collections::BTreeSet;
use std::str::FromStr;

use results::{RunLabels, RunStatus};

use super::params::{Params, PARAM_PREFIX};

/// The keys that are run labels rather than grid parameters.
const LABEL_KEYS: [&str; 4] = ["stream", "method", "seed", "status"];

/// One `key=value` condition on runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filter {
    /// `stream`, `method`, `seed`, `status`, or a method parameter's name.
    pub key: String,
    /// The wanted value, as written.
    pub value: String,
}

/// A filter that is not `key=value`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid filter `{text}`: expected key=value (e.g. method=cbp or lr=0.01)")]
pub struct InvalidFilter {
    /// The text given.
    pub text: String,
}

impl FromStr for Filter {
    type Err = InvalidFilter;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || InvalidFilter { text: s.to_string() };
        let (key, value) = s.split_once('=').ok_or_else(invalid)?;
        let (key, value) = (key.trim(), value.trim());
        let key = key.strip_prefix(PARAM_PREFIX).unwrap_or(key);
        if key.is_empty() || value.is_empty() {
            return Err(invalid());
        }
        Ok(Filter { key: key.to_string(), value: value.to_string() })
    }
}

impl Filter {
    /// Whether a run with these labels, status and resolved method parameters satisfies this
    /// one condition. A parameter is looked up in the grid point first, then in the spec.
    pub fn matches(&self, labels: &RunLabels, status: &RunStatus, params: &Params) -> bool {
        match self.key.as_str() {
            "stream" => labels.stream == self.value,
            "method" => labels.method == self.value,
            "seed" => self.value.parse::<u64>().is_ok_and(|s| s == labels.seed),
            "status" => status.name() == self.value,
            key => labels
                .grid
                .get(key)
                .or_else(|| params.get(key))
                .is_some_and(|v| value_matches(v, &self.value)),
        }
    }
}

fn value_matches(value: &serde_json::Value, wanted: &str) -> bool {
    use serde_json::Value;
    match value {
        Value::String(s) => s == wanted,
        Value::Number(n) => {
            if let (Some(a), Ok(b)) = (n.as_i64(), wanted.parse::<i64>()) {
                return a == b;
            }
            if let (Some(a), Ok(b)) = (n.as_u64(), wanted.parse::<u64>()) {
                return a == b;
            }
            matches!((n.as_f64(), wanted.parse::<f64>()), (Some(a), Ok(b)) if a == b)
        }
        Value::Bool(b) => wanted.parse::<bool>().is_ok_and(|w| w == *b),
        Value::Null => wanted == "null",
        Value::Array(_) | Value::Object(_) => {
            serde_json::from_str::<Value>(wanted).is_ok_and(|w| w == *value)
        }
    }
}

/// A filter key that is neither a label nor a method parameter of any run: most likely a typo.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("--where {key}=…: no run has a label or method parameter `{key}`; known keys: {}", known.join(", "))]
pub struct UnknownFilterKey {
    /// The key given.
    pub key: String,
    /// The keys that exist.
    pub known: Vec<String>,
}

/// Keeps the runs that satisfy `filters` (alternatives within a key, all keys required);
/// `fields` gives a run's labels, status and resolved method parameters. Every key must be a
/// label, or a grid or method parameter of some run.
pub(crate) fn apply<T>(
    filters: &[Filter],
    runs: Vec<T>,
    fields: impl Fn(&T) -> (&RunLabels, &RunStatus, &Params),
) -> Result<Vec<T>, UnknownFilterKey> {
    if filters.is_empty() {
        return Ok(runs);
    }
    let param_keys: BTreeSet<String> = runs
        .iter()
        .flat_map(|r| {
            let (labels, _, params) = fields(r);
            labels.grid.keys().chain(params.keys()).cloned().collect::<Vec<_>>()
        })
        .collect();
    for filter in filters {
        if !LABEL_KEYS.contains(&filter.key.as_str()) && !param_keys.contains(&filter.key) {
            let known = LABEL_KEYS.iter().map(|k| k.to_string()).chain(param_keys.iter().cloned());
            return Err(UnknownFilterKey { key: filter.key.clone(), known: known.collect() });
        }
    }
    let keys: BTreeSet<&str> = filters.iter().map(|f| f.key.as_str()).collect();
    Ok(runs
        .into_iter()
        .filter(|run| {
            let (l, status, params) = fields(run);
            keys.iter()
                .all(|key| filters.iter().filter(|f| f.key == *key).any(|f| f.matches(l, status, params)))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summary::RunSummary;
    use std::collections::BTreeMap;

    fn run(method: &str, lr: serde_json::Value, seed: u64) -> RunSummary {
        let mut grid = BTreeMap::new();
        grid.insert("lr".to_string(), lr.clone());
        grid.insert("opt".to_string(), serde_json::json!("adam"));
        let mut params = grid.clone();
        params.insert("momentum".to_string(), serde_json::json!(0.9));
        params
            .insert("optimizer".to_string(), serde_json::json!(if method == "l2" { "adam" } else { "sgd" }));
        RunSummary {
            id: format!("{method}-{seed}"),
            experiment: "x".into(),
            order: 0,
            labels: RunLabels { stream: "pm".into(), method: method.into(), grid, seed },
            params,
            status: RunStatus::Finished,
            attempts: 1,
            tasks: 2,
            regression: false,
            values: Default::default(),
            flags: vec![],
            evals: vec![],
            series: Default::default(),
        }
    }

    fn ids(filters: &[&str], runs: Vec<RunSummary>) -> Vec<String> {
        let filters: Vec<Filter> = filters.iter().map(|f| f.parse().unwrap()).collect();
        apply(&filters, runs, |r| (&r.labels, &r.status, &r.params))
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect()
    }

    fn runs() -> Vec<RunSummary> {
        vec![
            run("cbp", serde_json::json!(0.01), 1),
            run("cbp", serde_json::json!(0.1), 2),
            run("l2", serde_json::json!(0.01), 3),
            run("sgd", serde_json::json!(1), 4),
        ]
    }

    #[test]
    fn filters_select_on_labels_and_grid_values() {
        assert_eq!(ids(&["method=cbp"], runs()), ["cbp-1", "cbp-2"]);
        assert_eq!(ids(&["lr=1e-2"], runs()), ["cbp-1", "l2-3"]);
        assert_eq!(ids(&["lr=0.01", "method=cbp"], runs()), ["cbp-1"]);
        assert_eq!(ids(&["method=cbp", "method=l2", "lr=0.01"], runs()), ["cbp-1", "l2-3"]);
        assert_eq!(ids(&["lr=1"], runs()), ["sgd-4"]);
        assert_eq!(ids(&["lr=1.0"], runs()), ["sgd-4"]);
        assert_eq!(ids(&["seed=2"], runs()), ["cbp-2"]);
        assert_eq!(ids(&["opt=adam", "status=finished"], runs()).len(), 4);
        assert!(ids(&["status=failed"], runs()).is_empty());
        let mut shaped = runs();
        shaped[1].labels.grid.insert("hidden".into(), serde_json::json!([64, 64]));
        assert_eq!(ids(&["hidden=[64, 64]"], shaped.clone()), ["cbp-2"]);
        assert!(ids(&["hidden=[64]"], shaped).is_empty());
    }

    /// Issue 16: `--where` on a fixed parameter (not in the grid) and numbers compared by value.
    #[test]
    fn filters_select_on_fixed_parameters_of_the_resolved_spec() {
        assert_eq!(ids(&["optimizer=adam"], runs()), ["l2-3"]);
        assert_eq!(ids(&["momentum=0.90"], runs()).len(), 4);
        assert_eq!(ids(&["param.optimizer=sgd", "lr=0.010"], runs()), ["cbp-1"]);
        assert!(ids(&["momentum=0.8"], runs()).is_empty());
    }

    #[test]
    fn malformed_and_unknown_filters_are_errors() {
        for text in ["method", "=cbp", "lr= "] {
            let err = text.parse::<Filter>().unwrap_err().to_string();
            assert!(err.contains("expected key=value"), "{err}");
        }
        let err = apply(&["rl=0.1".parse().unwrap()], runs(), |r| (&r.labels, &r.status, &r.params))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "--where rl=…: no run has a label or method parameter `rl`; known keys: stream, method, \
             seed, status, lr, momentum, opt, optimizer"
        );
    }
}
