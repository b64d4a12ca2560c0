//! Command-line overrides in Hydra's habit: `key.path=value`, the value a YAML flow value
//! (`seeds=5`, `methods.sgd.lr=[0.01,0.003]`, `eval.tasks={subsample: {earlier: 3}}`).
//!
//! An override edits the parsed recipe tree before it is validated, so an overridden value is
//! checked exactly like one written in the file. In lists of named entries (`methods`,
//! `streams`) a path step selects the entry by its `name`; elsewhere in lists a number selects
//! by position (`network.hidden.0=50`). Missing mappings on the way are created, so a section
//! the file leaves out can be set (`eval.max_examples=500`).

use std::fmt;

use serde_json::{Map, Value as Json};

use super::messages::closest;
use super::path::KeyPath;
use super::yaml;

/// One override as given on the command line, recorded in the [`super::Recipe`] so the
/// experiment's metadata says how the recipe was changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Override {
    /// The dotted key path as written (`methods.sgd.lr`).
    pub key: String,
    /// The value as written (`[0.01,0.003]`), parsed as a YAML flow value.
    pub value: String,
}

impl Override {
    /// Splits `key.path=value` at the first `=`. The value is parsed later, when applied.
    pub fn parse(text: &str) -> Result<Override, String> {
        let Some((key, value)) = text.split_once('=') else {
            return Err("expected `key.path=value`".to_string());
        };
        let key = key.trim();
        if key.starts_with(['+', '~']) {
            return Err("adding (`+`) or deleting (`~`) keys is not supported; write \
                        `key.path=value`, which adds the key when it is missing"
                .to_string());
        }
        if key.is_empty() || key.split('.').any(str::is_empty) {
            return Err("expected `key.path=value` with non-empty keys between the dots".to_string());
        }
        Ok(Override { key: key.to_string(), value: value.trim().to_string() })
    }
}

impl fmt::Display for Override {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.key, self.value)
    }
}

impl Override {
    /// The values of a comma-separated list (`16,32`, `[100,100],[400,400]`): the value split at
    /// the commas outside brackets, braces and quotes, each part trimmed. `None` when the value
    /// has no such comma (`[0.01,0.003]` is one list value, `'a, b'` one string).
    pub fn comma_list(&self) -> Option<Vec<&str>> {
        let mut parts = Vec::new();
        let (mut depth, mut quote, mut start) = (0usize, None::<char>, 0);
        for (i, c) in self.value.char_indices() {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => {}
                (None, '\'' | '"') => quote = Some(c),
                (None, '[' | '{') => depth += 1,
                (None, ']' | '}') => depth = depth.saturating_sub(1),
                (None, ',') if depth == 0 => {
                    parts.push(self.value[start..i].trim());
                    start = i + 1;
                }
                _ => {}
            }
        }
        if parts.is_empty() {
            return None;
        }
        parts.push(self.value[start..].trim());
        Some(parts)
    }
}

/// Reads one value as written on the command line (a YAML flow value).
pub(super) fn parse_value(text: &str) -> Result<Json, String> {
    yaml::parse(text).map_err(|p| format!("cannot read the value: {}", p.message))
}

/// Sets the override's value in `tree` and returns the path it set (with named list entries
/// resolved to their positions), or says why it cannot.
pub(super) fn apply(tree: &mut Json, o: &Override) -> Result<KeyPath, String> {
    set(tree, &o.key, parse_value(&o.value)?)
}

/// Sets `value` at the dotted `key` of `tree`, the way an override does, and returns the path
/// it set.
pub(super) fn set(tree: &mut Json, key: &str, value: Json) -> Result<KeyPath, String> {
    let steps: Vec<&str> = key.split('.').collect();
    let mut path = KeyPath::root();
    let mut node = tree;
    for (i, step) in steps.iter().enumerate() {
        let last = i + 1 == steps.len();
        if node.is_null() {
            *node = Json::Object(Map::new());
        }
        node = match node {
            Json::Object(map) => {
                path = path.key(*step);
                if last {
                    map.insert(step.to_string(), value);
                    return Ok(path);
                }
                map.entry(step.to_string()).or_insert(Json::Null)
            }
            Json::Array(items) => {
                let index = entry_index(items, step).ok_or_else(|| no_entry(&path, items, step))?;
                path = path.index(index);
                if last {
                    items[index] = value;
                    return Ok(path);
                }
                &mut items[index]
            }
            _ => return Err(format!("`{path}` holds a single value, so it has no key `{step}`")),
        };
    }
    unreachable!("a parsed override has at least one key")
}

/// The entry named `step` (an object whose `name` is `step`), or else the entry at position
/// `step`.
fn entry_index(items: &[Json], step: &str) -> Option<usize> {
    items
        .iter()
        .position(|item| item.get("name").and_then(Json::as_str) == Some(step))
        .or_else(|| step.parse::<usize>().ok().filter(|&i| i < items.len()))
}

fn no_entry(path: &KeyPath, items: &[Json], step: &str) -> String {
    let names: Vec<&str> = items.iter().filter_map(|item| item.get("name").and_then(Json::as_str)).collect();
    let mut message = format!("`{path}` has no entry named `{step}`");
    if let Some(near) = closest(step, names.iter().copied()) {
        message.push_str(&format!(" (did you mean `{near}`?)"));
    }
    if names.is_empty() {
        message.push_str(&format!("; it has {} entries, addressed by position from 0", items.len()));
    } else {
        message.push_str(&format!("; entries: {}", names.join(", ")));
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn applied(tree: &mut Json, text: &str) -> Result<String, String> {
        apply(tree, &Override::parse(text)?).map(|path| path.to_string())
    }

    #[test]
    fn parses_key_and_value() {
        let o = Override::parse("methods.sgd.lr=[0.01, 0.003]").unwrap();
        assert_eq!(o.key, "methods.sgd.lr");
        assert_eq!(o.value, "[0.01, 0.003]");
        assert_eq!(o.to_string(), "methods.sgd.lr=[0.01, 0.003]");
        assert!(Override::parse("seeds").unwrap_err().contains("key.path=value"));
        assert!(Override::parse("a..b=1").unwrap_err().contains("non-empty keys"));
        assert!(Override::parse("+methods.x=1").unwrap_err().contains("not supported"));
    }

    #[test]
    fn comma_lists_split_outside_brackets_and_quotes() {
        let list = |text: &str| Override::parse(text).unwrap().comma_list().map(|v| v.join(" | "));
        assert_eq!(list("training.batch_size=16, 32").as_deref(), Some("16 | 32"));
        assert_eq!(list("network.hidden=[100,100],[400,400]").as_deref(), Some("[100,100] | [400,400]"));
        assert_eq!(list("eval.tasks={a: 1, b: 2},all").as_deref(), Some("{a: 1, b: 2} | all"));
        assert_eq!(list("methods.sgd.lr=[0.01,0.003]"), None);
        assert_eq!(list("description='a, b'"), None);
        assert_eq!(list("seeds=5"), None);
    }

    #[test]
    fn sets_values_by_name_position_and_new_key() {
        let mut tree = json!({
            "seeds": 3,
            "network": {"hidden": [100, 100]},
            "methods": [{"name": "sgd", "lr": 0.1}, {"name": "cbp"}],
        });
        assert_eq!(applied(&mut tree, "seeds=5").unwrap(), "seeds");
        assert_eq!(applied(&mut tree, "methods.cbp.lr=[0.01,0.003]").unwrap(), "methods[1].lr");
        assert_eq!(applied(&mut tree, "network.hidden.1=50").unwrap(), "network.hidden[1]");
        assert_eq!(applied(&mut tree, "eval.tasks={subsample: {earlier: 3}}").unwrap(), "eval.tasks");
        assert_eq!(
            tree,
            json!({
                "seeds": 5,
                "network": {"hidden": [100, 50]},
                "methods": [{"name": "sgd", "lr": 0.1}, {"name": "cbp", "lr": [0.01, 0.003]}],
                "eval": {"tasks": {"subsample": {"earlier": 3}}},
            })
        );
    }

    #[test]
    fn says_why_a_path_cannot_be_set() {
        let mut tree = json!({"parallel": 2, "methods": [{"name": "sgd"}]});
        let error = applied(&mut tree, "methods.sdg.lr=0.1").unwrap_err();
        assert!(error.contains("no entry named `sdg` (did you mean `sgd`?); entries: sgd"), "{error}");
        let error = applied(&mut tree, "parallel.x=1").unwrap_err();
        assert!(error.contains("`parallel` holds a single value"), "{error}");
        let error = applied(&mut tree, "seeds=[1, 2").unwrap_err();
        assert!(error.starts_with("cannot read the value"), "{error}");
    }
}
