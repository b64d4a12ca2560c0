//! Issue 16, docs: `clorch methods` lists typed defaults and only parameters a recipe may set
//! (each accepted by `clorch validate` at its listed default), and recipes/README.md has a
//! section for every registered method kind.

use std::collections::BTreeMap;

mod common;
use common::{clorch, text, Scratch};

/// `name = value` pairs as listed.
type Assignments = Vec<(String, String)>;

/// One method of the listing: the optimiser groups (the optimiser's name, `None` when it is
/// fixed, and its settings) and the method's own parameters.
#[derive(Debug, Default)]
struct Listed {
    optimizers: Vec<(Option<String>, Assignments)>,
    own: Assignments,
}

fn assignments(text: &str) -> Assignments {
    text.split(", ")
        .map(|a| {
            let (name, value) = a.split_once(" = ").unwrap_or_else(|| panic!("not `name = value`: {a}"));
            (name.trim().to_string(), value.trim().to_string())
        })
        .collect()
}

fn listing() -> BTreeMap<String, Listed> {
    let out = clorch(&["methods"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut methods: BTreeMap<String, Listed> = BTreeMap::new();
    let mut current = String::new();
    for line in text(&out.stdout).lines() {
        if !line.starts_with(' ') {
            current = line.split_whitespace().next().unwrap().to_string();
            methods.insert(current.clone(), Listed::default());
            continue;
        }
        let body = line.trim();
        let entry = methods.get_mut(&current).unwrap();
        if body.starts_with("optimizer = ") {
            continue; // the choice; each choice's group follows
        }
        if let Some((optimizer, rest)) = body.split_once(':').filter(|(o, _)| *o == "sgd" || *o == "adam") {
            entry.optimizers.push((Some(optimizer.to_string()), assignments(rest)));
        } else if body.starts_with("lr = ") {
            entry.optimizers.push((None, assignments(body)));
        } else {
            entry.own.extend(assignments(body));
        }
    }
    methods
}

#[test]
fn methods_prints_typed_defaults_including_the_learning_rate() {
    let methods = listing();
    for (kind, listed) in &methods {
        assert!(!listed.optimizers.is_empty(), "{kind}: no optimiser settings");
        for (_, group) in &listed.optimizers {
            assert_eq!(group[0].0, "lr", "{kind}: lr first, with its default");
            assert!(group[0].1.parse::<f64>().is_ok(), "{kind}: lr = {}", group[0].1);
        }
    }
    let own = |kind: &str, name: &str| {
        methods[kind].own.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone()).unwrap()
    };
    assert_eq!(own("redo", "every_steps"), "1000", "a whole number, not 1000.0");
    assert_eq!(own("redo", "probe"), "256");
    assert_eq!(own("ewc", "fisher_samples"), "1000");
    assert_eq!(own("cbp", "maturity_threshold"), "100");
    assert_eq!(own("cbp", "accumulate"), "true", "a boolean, not a string");
    assert_eq!(own("ewc", "mode"), "\"separate\"");
    assert_eq!(own("ewc", "fisher"), "true", "the boolean a recipe writes, not the string \"true\"");
    let sgd = &methods["sgd"].optimizers;
    assert_eq!(sgd.len(), 1, "sgd has no optimiser choice: {sgd:?}");
    assert!(sgd[0].1.iter().all(|(n, _)| n != "beta1"), "sgd refuses Adam's settings: {sgd:?}");
    assert!(
        methods["classp"].optimizers[0].1.iter().all(|(n, _)| n != "momentum"),
        "classp refuses momentum"
    );
}

#[test]
fn every_listed_parameter_is_accepted_by_validate_at_its_default() {
    let s = Scratch::new("methods-validate");
    let mut entries = Vec::new();
    for (kind, listed) in listing() {
        for (i, (optimizer, group)) in listed.optimizers.iter().enumerate() {
            let mut entry = format!("  - {{name: {kind}-{i}, kind: {kind}");
            if let Some(o) = optimizer {
                entry.push_str(&format!(", optimizer: {o}"));
            }
            for (name, value) in group.iter().chain(&listed.own) {
                entry.push_str(&format!(", {name}: {value}"));
            }
            entry.push('}');
            entries.push((kind.clone(), entry));
        }
    }
    // One recipe per entry: the stream each kind needs differs (task heads, boundaries), so
    // the recipe varies only what it must and a refusal names its parameter.
    for (i, (kind, entry)) in entries.iter().enumerate() {
        let heads =
            if matches!(kind.as_str(), "clnp" | "niwf" | "weight_field") { ", heads: per_task" } else { "" };
        let body = format!(
            "stream: {{kind: synthetic_permuted, tasks: 2}}\nnetwork: {{hidden: [8]{heads}}}\nmethods:\n{entry}\nseeds: 1\n"
        );
        let recipe = s.recipe(&format!("method-{i}"), &body);
        let out = clorch(&["validate", recipe.to_str().unwrap()]);
        assert!(out.status.success(), "{entry}\n{}", text(&out.stderr));
    }
}

#[test]
fn the_recipe_reference_documents_every_method_kind() {
    let readme = std::fs::read_to_string(test_support::repo_root().join("recipes/README.md")).unwrap();
    let headings: Vec<&str> = readme.lines().filter(|l| l.starts_with("### ")).collect();
    for kind in listing().keys() {
        let code = format!("`{kind}`");
        assert!(
            headings.iter().any(|h| h.contains(&code)),
            "recipes/README.md has no `### …{code}…` section; headings: {headings:#?}"
        );
    }
}

#[test]
fn the_readme_says_how_to_install_clorch_on_the_path() {
    let readme = std::fs::read_to_string(test_support::repo_root().join("README.md")).unwrap();
    assert!(readme.contains("cargo install --path clorch"), "no installation command");
    assert!(readme.contains("PATH"), "no word on the PATH");
}
