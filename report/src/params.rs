//! One typed column per method parameter (`param.lr`, `param.mode`, …) in the machine tables.
//!
//! The values come from each run's resolved spec (`method.params`: fixed and gridded alike),
//! so a researcher filters and plots by `param.lr` in pandas without parsing the `grid` text.
//! A column's type is the narrowest that holds every run's value: Int64 when all are integers,
//! Float64 when all are numbers, Boolean, else String (arrays and objects as compact JSON).
//! A run without the parameter (another method) has null there.

use std::collections::{BTreeMap, BTreeSet};

use polars::prelude::Column;
use serde_json::Value;

/// The prefix of every parameter column: `param.` then the parameter's name.
pub const PARAM_PREFIX: &str = "param.";

/// A run's resolved method parameters, by name.
pub type Params = BTreeMap<String, Value>;

/// Completes a run's parameters from its method kind and the parameters its spec states: the
/// defaults it trains with filled in (`optimizer`, `lr`, the method's own). The method
/// registry that knows them is the workers' crate, which the report does not link; the binary
/// passes its registry's function in [`ReportOptions::resolve_params`](crate::ReportOptions).
#[derive(Clone, Copy)]
pub struct ResolveParams(pub fn(kind: &str, given: &Params) -> Params);

impl PartialEq for ResolveParams {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::fn_addr_eq(self.0, other.0)
    }
}

impl Eq for ResolveParams {}

impl std::fmt::Debug for ResolveParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResolveParams")
    }
}

/// The type a parameter's column takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Int,
    Float,
    Bool,
    Text,
}

fn kind_of(value: &Value) -> Kind {
    match value {
        Value::Number(n) if n.is_i64() => Kind::Int,
        Value::Number(_) => Kind::Float,
        Value::Bool(_) => Kind::Bool,
        _ => Kind::Text,
    }
}

/// The narrowest kind holding both: integers widen to floats, anything else mixed is text.
fn join(a: Kind, b: Kind) -> Kind {
    match (a, b) {
        (a, b) if a == b => a,
        (Kind::Int, Kind::Float) | (Kind::Float, Kind::Int) => Kind::Float,
        _ => Kind::Text,
    }
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The parameter columns, sorted by parameter name, for table rows whose parameters are
/// `rows` (one entry per row, in order). The columns and their types come from `runs`, every
/// run of the report, so that each table has the same `param.*` columns even without rows.
pub(crate) fn param_columns<'a>(runs: &[&'a Params], rows: &[&'a Params]) -> Vec<Column> {
    let names: BTreeSet<&'a str> = runs.iter().flat_map(|p| p.keys().map(String::as_str)).collect();
    names
        .into_iter()
        .map(|name| {
            let present = |p: &&'a Params| p.get(name).filter(|v| !v.is_null());
            let kind = runs.iter().filter_map(present).map(kind_of).reduce(join).unwrap_or(Kind::Text);
            let values: Vec<Option<&Value>> = rows.iter().map(present).collect();
            let column = format!("{PARAM_PREFIX}{name}");
            match kind {
                Kind::Int => Column::new(
                    column.into(),
                    values.iter().map(|v| v.and_then(Value::as_i64)).collect::<Vec<Option<i64>>>(),
                ),
                Kind::Float => Column::new(
                    column.into(),
                    values.iter().map(|v| v.and_then(Value::as_f64)).collect::<Vec<Option<f64>>>(),
                ),
                Kind::Bool => Column::new(
                    column.into(),
                    values.iter().map(|v| v.and_then(Value::as_bool)).collect::<Vec<Option<bool>>>(),
                ),
                Kind::Text => Column::new(
                    column.into(),
                    values.iter().map(|v| v.map(text)).collect::<Vec<Option<String>>>(),
                ),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use polars::prelude::DataType;
    use serde_json::json;

    fn params(pairs: Value) -> Params {
        serde_json::from_value(pairs).unwrap()
    }

    #[test]
    fn each_parameter_gets_the_narrowest_type_that_holds_every_value() {
        let a =
            params(json!({"lr": 0.05, "hidden": 64, "mode": "separate", "online": true, "shape": [1, 2]}));
        let b = params(json!({"lr": 1, "hidden": 128, "mode": "online", "mix": 3}));
        let c = params(json!({"mix": "x"}));
        let cols = param_columns(&[&a, &b, &c], &[&a, &b, &c]);
        let by_name: BTreeMap<String, &Column> = cols.iter().map(|c| (c.name().to_string(), c)).collect();
        assert_eq!(
            by_name.keys().map(String::as_str).collect::<Vec<_>>(),
            ["param.hidden", "param.lr", "param.mix", "param.mode", "param.online", "param.shape"]
        );
        assert_eq!(by_name["param.lr"].dtype(), &DataType::Float64);
        assert_eq!(by_name["param.hidden"].dtype(), &DataType::Int64);
        assert_eq!(by_name["param.online"].dtype(), &DataType::Boolean);
        assert_eq!(by_name["param.mode"].dtype(), &DataType::String);
        assert_eq!(by_name["param.mix"].dtype(), &DataType::String);
        assert_eq!(by_name["param.shape"].dtype(), &DataType::String);
        let lr: Vec<Option<f64>> = by_name["param.lr"].f64().unwrap().iter().collect();
        assert_eq!(lr, [Some(0.05), Some(1.0), None]);
        let shape = by_name["param.shape"].str().unwrap().get(0).map(str::to_string);
        assert_eq!(shape.as_deref(), Some("[1,2]"));
    }
}
