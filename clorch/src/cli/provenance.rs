//! What `clorch report` and `clorch compare` say about the experiments beside the table: the
//! overrides of the latest `clorch run` of each, and the keys whose values differ between their
//! recipes as they ran (overrides applied), so that a difference made on the command line
//! (`stream.transform=rotate`) is not invisible.

use std::path::Path;

use results::RunSource;
use runner::recipe::differences;

/// Notes on standard error (quiet under `-q`): each differing key with every experiment's
/// value, or that the recipes agree. Experiments without a stored recipe are left out.
pub fn note_differences(labels: &[String], sources: &[&dyn RunSource]) {
    let mut named = Vec::new();
    for (label, source) in labels.iter().zip(sources) {
        if let Ok(Some(meta)) = source.experiment() {
            named.push((label.as_str(), meta.recipe));
        }
    }
    if named.len() < 2 {
        return;
    }
    let texts: Vec<&str> = named.iter().map(|(_, text)| text.as_str()).collect();
    let found = match differences(&texts) {
        Ok(found) => found,
        Err(e) => {
            crate::logging::note(format_args!("note: cannot compare the recipes: {e}"));
            return;
        }
    };
    if found.is_empty() {
        crate::logging::note("note: the experiments' recipes (overrides applied) set the same values");
        return;
    }
    let mut text = String::from("note: the experiments' recipes (overrides applied) differ in:");
    for difference in found {
        let values: Vec<String> = named
            .iter()
            .zip(&difference.values)
            .map(|((label, _), value)| format!("{label}: {}", value.as_deref().unwrap_or("(default)")))
            .collect();
        text.push_str(&format!("\n  {}  ({})", difference.key, values.join(", ")));
    }
    crate::logging::note(text);
}

/// A note on standard error (quiet under `-q`) when the latest `clorch run` of the experiment
/// in `results_dir` had overrides: they are what the table shows, not the recipe file alone.
pub fn note_overrides(results_dir: &Path) {
    match results::read_invocations(results_dir) {
        Ok(log) => {
            if let Some(last) = log.last().filter(|i| !i.overrides.is_empty()) {
                crate::logging::note(format_args!(
                    "note: {}: the latest `clorch run` of {} had overrides: {} (invocations.jsonl \
                     logs all {} runs)",
                    results_dir.display(),
                    last.recipe,
                    super::command_line::shell_line(&last.overrides),
                    log.len()
                ));
            }
        }
        Err(e) => crate::logging::note(format_args!("note: {e}")),
    }
}
