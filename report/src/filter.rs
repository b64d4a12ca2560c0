//! `where` filters: `method=cbp`, `stream=pmnist`, `seed=3`, `status=failed`, or a grid
//! parameter such as `lr=0.01`.
//!
//! Filters on the same key are alternatives (`method=cbp method=l2` keeps both); filters on
//! different keys must all hold. Numbers compare as numbers (`lr=1e-2` matches `0.01`).

use std::collections::BTreeSet;
use std::str::FromStr;

use results::{RunLabels, RunStatus};

/// The keys that are run labels rather than grid parameters.
const LABEL_KEYS: [&str; 4] = ["stream", "method", "seed", "status"];

/// One `key=value` condition on runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filter {
    /// `stream`, `method`, `seed`, `status`, or a grid parameter's name.
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
        if key.is_empty() || value.is_empty() {
            return Err(invalid());
        }
        Ok(Filter { key: key.to_string(), value: value.to_string() })
    }
}

impl Filter {
    /// Whether a run with these labels and status satisfies this one condition.
    pub fn matches(&self, labels: &RunLabels, status: &RunStatus) -> bool {
        match self.key.as_str() {
            "stream" => labels.stream == self.value,
            "method" => labels.method == self.value,
            "seed" => self.value.parse::<u64>().is_ok_and(|s| s == labels.seed),
            "status" => status.name() == self.value,
            key => labels.grid.get(key).is_some_and(|v| value_matches(v, &self.value)),
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

/// A filter key that is neither a label nor a grid parameter of any run: most likely a typo.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("no run has a label or grid parameter `{key}`; filterable keys: {}", known.join(", "))]
pub struct UnknownFilterKey {
    /// The key given.
    pub key: String,
    /// The keys that exist.
    pub known: Vec<String>,
}

/// Keeps the runs that satisfy `filters` (alternatives within a key, all keys required);
/// `labels` gives a run's labels and status. Every key must be a label or a grid parameter of
/// some run.
pub(crate) fn apply<T>(
    filters: &[Filter],
    runs: Vec<T>,
    labels: impl Fn(&T) -> (&RunLabels, &RunStatus),
) -> Result<Vec<T>, UnknownFilterKey> {
    if filters.is_empty() {
        return Ok(runs);
    }
    let grid_keys: BTreeSet<String> = runs.iter().flat_map(|r| labels(r).0.grid.keys().cloned()).collect();
    for filter in filters {
        if !LABEL_KEYS.contains(&filter.key.as_str()) && !grid_keys.contains(&filter.key) {
            let known = LABEL_KEYS.iter().map(|k| k.to_string()).chain(grid_keys.iter().cloned());
            return Err(UnknownFilterKey { key: filter.key.clone(), known: known.collect() });
        }
    }
    let keys: BTreeSet<&str> = filters.iter().map(|f| f.key.as_str()).collect();
    Ok(runs
        .into_iter()
        .filter(|run| {
            let (l, status) = labels(run);
            keys.iter().all(|key| filters.iter().filter(|f| f.key == *key).any(|f| f.matches(l, status)))
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
        grid.insert("lr".to_string(), lr);
        grid.insert("opt".to_string(), serde_json::json!("adam"));
        RunSummary {
            id: format!("{method}-{seed}"),
            experiment: "x".into(),
            order: 0,
            labels: RunLabels { stream: "pm".into(), method: method.into(), grid, seed },
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
        apply(&filters, runs, |r| (&r.labels, &r.status)).unwrap().into_iter().map(|r| r.id).collect()
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

    #[test]
    fn malformed_and_unknown_filters_are_errors() {
        for text in ["method", "=cbp", "lr= "] {
            let err = text.parse::<Filter>().unwrap_err().to_string();
            assert!(err.contains("expected key=value"), "{err}");
        }
        let err =
            apply(&["rl=0.1".parse().unwrap()], runs(), |r| (&r.labels, &r.status)).unwrap_err().to_string();
        assert_eq!(
            err,
            "no run has a label or grid parameter `rl`; filterable keys: stream, method, seed, \
             status, lr, opt"
        );
    }
}
