//! What differs between the recipes of several experiments, key by key, so that `clorch
//! compare` can say why two tables differ (`stream.transform: permute | rotate`) even when
//! the difference came from an override and no recipe file shows it.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value as Json;

use super::messages::show_value;
use super::yaml;

/// Keys that name or place an experiment rather than shape its runs.
const IDENTITY_KEYS: [&str; 3] = ["name", "description", "output"];

/// One key whose value is not the same in every recipe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Difference {
    /// The dotted key, entries of `methods` and `streams` by name (`methods.sgd.lr`).
    pub key: String,
    /// Its value in each recipe, in the order given, as written in overrides; `None` where
    /// the recipe does not set it (its default applies).
    pub values: Vec<Option<String>>,
}

/// The keys whose values differ between `recipes` (YAML texts), in key order. A text that
/// does not parse is named by its position in the error.
pub fn differences(recipes: &[&str]) -> Result<Vec<Difference>, String> {
    let mut flat = Vec::with_capacity(recipes.len());
    for (i, text) in recipes.iter().enumerate() {
        let tree = yaml::parse(text).map_err(|p| format!("recipe {}: {}", i + 1, p.message))?;
        let mut leaves = BTreeMap::new();
        flatten(&tree, String::new(), &mut leaves);
        flat.push(leaves);
    }
    let keys: BTreeSet<&String> = flat.iter().flat_map(|leaves| leaves.keys()).collect();
    Ok(keys
        .into_iter()
        .filter(|key| !IDENTITY_KEYS.contains(&key.as_str()))
        .filter_map(|key| {
            let values: Vec<Option<String>> = flat.iter().map(|leaves| leaves.get(key).cloned()).collect();
            values.iter().any(|v| v != &values[0]).then(|| Difference { key: key.clone(), values })
        })
        .collect())
}

/// The tree's values by dotted key: mappings are walked, lists of named entries walked by
/// name, every other value (scalars, other lists) is one leaf.
fn flatten(node: &Json, prefix: String, leaves: &mut BTreeMap<String, String>) {
    let join = |key: &str| if prefix.is_empty() { key.to_string() } else { format!("{prefix}.{key}") };
    match node {
        Json::Object(map) => {
            for (key, value) in map {
                flatten(value, join(key), leaves);
            }
        }
        Json::Array(items)
            if !items.is_empty() && items.iter().all(|i| i.get("name").is_some_and(Json::is_string)) =>
        {
            for item in items {
                let name = item["name"].as_str().unwrap_or_default();
                let mut entry = item.clone();
                if let Json::Object(map) = &mut entry {
                    map.remove("name");
                }
                flatten(&entry, join(name), leaves);
            }
        }
        other => {
            leaves.insert(prefix, show_value(other));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_are_named_by_key_with_each_recipes_value() {
        let a = "name: a\nstream: {kind: synthetic_permuted, transform: permute}\nmethods:\n  - {name: sgd, lr: 0.1}\nseeds: 3\n";
        let b = "# with stream.transform=rotate\nname: b\nstream: {kind: synthetic_permuted, transform: rotate}\nmethods:\n  - {name: sgd, lr: 0.1}\n  - {name: l2, weight_decay: 0.01}\nseeds: 3\n";
        let found = differences(&[a, b]).unwrap();
        let shown: Vec<(String, Vec<Option<String>>)> =
            found.into_iter().map(|d| (d.key, d.values)).collect();
        assert_eq!(
            shown,
            vec![
                ("methods.l2.weight_decay".to_string(), vec![None, Some("0.01".to_string())]),
                (
                    "stream.transform".to_string(),
                    vec![Some("permute".to_string()), Some("rotate".to_string())]
                ),
            ]
        );
        assert!(differences(&[a, a]).unwrap().is_empty());
        assert!(differences(&[a, "a: [1"]).unwrap_err().starts_with("recipe 2:"));
    }
}
