//! The provenance of an experiment: every `clorch run` of it, appended to `invocations.jsonl`
//! in its results folder, with each distinct recipe text kept under `recipes/<hash>.yaml`.
//!
//! `recipe.yaml` holds only the latest recipe, and overrides (`seeds=5`) or an edited file
//! change what runs without leaving a trace there; this log answers "what was run here, how,
//! when and where" for every run of the folder, and lets two experiments be compared by their
//! commands and recipe texts.
//!
//! ```text
//! <results dir>/
//!   invocations.jsonl    one Invocation per line, appended
//!   recipes/<hash>.yaml  each distinct recipe text a run read (hash: BLAKE3 of the text)
//! ```

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{FolderError, Result};
use crate::record::recipe_hash;

/// The log of invocations inside a results folder.
pub const INVOCATIONS_FILE: &str = "invocations.jsonl";
/// The folder of recipe texts by hash inside a results folder.
pub const RECIPES_DIR: &str = "recipes";

/// One `clorch run` of an experiment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Invocation {
    /// When it started (unix seconds).
    pub time: u64,
    /// The full command line, as the process received it (program name first).
    pub argv: Vec<String>,
    /// The recipe file, as given.
    pub recipe: String,
    /// The overrides, as written, in order.
    #[serde(default)]
    pub overrides: Vec<String>,
    /// Whether comma lists were sweeps (`-m`).
    #[serde(default)]
    pub multirun: bool,
    /// [`recipe_hash`] of the recipe file's text: its copy is `recipes/<hash>.yaml`.
    pub recipe_hash: String,
    /// The clorch version that ran.
    pub clorch_version: String,
    /// The host it ran on.
    pub host: String,
}

/// The name of the host this process runs on (empty when the system does not say).
pub fn this_host() -> String {
    nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Appends `invocation` to the folder's log, first keeping `recipe_text` (whose hash the
/// invocation names) under `recipes/` unless a copy is there. The line is written with one
/// `write` and synced, so a crash leaves at most a cut-short last line, which
/// [`read_invocations`] ignores.
pub fn append_invocation(results_dir: &Path, invocation: &Invocation, recipe_text: &str) -> Result<()> {
    debug_assert_eq!(invocation.recipe_hash, recipe_hash(recipe_text));
    let copy = results_dir.join(RECIPES_DIR).join(format!("{}.yaml", invocation.recipe_hash));
    if !copy.exists() {
        crate::folder::write_atomically(&copy, recipe_text.as_bytes())?;
    }
    let path = results_dir.join(INVOCATIONS_FILE);
    let mut line = serde_json::to_vec(invocation).expect("an invocation serialises");
    line.push(b'\n');
    let mut file =
        OpenOptions::new().create(true).append(true).open(&path).map_err(|e| FolderError::io(&path, e))?;
    file.write_all(&line).map_err(|e| FolderError::io(&path, e))?;
    file.sync_all().map_err(|e| FolderError::io(&path, e))
}

/// The folder's invocations, oldest first; none when the folder has no log (experiments run
/// before it existed). A line that does not decode stops with an error naming the file and
/// line, except a cut-short last line (a crash while appending), which is left out.
pub fn read_invocations(results_dir: &Path) -> Result<Vec<Invocation>> {
    let path = results_dir.join(INVOCATIONS_FILE);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(FolderError::io(&path, e)),
    };
    let mut invocations = Vec::new();
    for (i, line) in text.lines().enumerate() {
        match serde_json::from_str(line) {
            Ok(invocation) => invocations.push(invocation),
            Err(_) if !text.ends_with('\n') && i + 1 == text.lines().count() => {}
            Err(e) => return Err(FolderError::bad_file(&path, format!("line {}: {e}", i + 1))),
        }
    }
    Ok(invocations)
}

/// The recipe text an invocation read, from `recipes/<hash>.yaml`.
pub fn read_invoked_recipe(results_dir: &Path, invocation: &Invocation) -> Result<String> {
    let path = results_dir.join(RECIPES_DIR).join(format!("{}.yaml", invocation.recipe_hash));
    fs::read_to_string(&path).map_err(|e| FolderError::io(&path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invocation(recipe: &str, overrides: &[&str]) -> Invocation {
        Invocation {
            time: 7,
            argv: ["clorch", "run", "r.yaml"].iter().chain(overrides).map(|s| s.to_string()).collect(),
            recipe: "r.yaml".into(),
            overrides: overrides.iter().map(|s| s.to_string()).collect(),
            multirun: false,
            recipe_hash: recipe_hash(recipe),
            clorch_version: "0.1.0".into(),
            host: "h".into(),
        }
    }

    #[test]
    fn invocations_append_and_keep_each_recipe_text_once() {
        let scratch = test_support::scratch("invocations");
        let dir = scratch.path();
        assert!(read_invocations(dir).unwrap().is_empty());
        let a = invocation("name: a\n", &["seeds=5"]);
        let b = invocation("name: a\n", &[]);
        let c = invocation("name: a  # edited\n", &[]);
        append_invocation(dir, &a, "name: a\n").unwrap();
        append_invocation(dir, &b, "name: a\n").unwrap();
        append_invocation(dir, &c, "name: a  # edited\n").unwrap();
        assert_eq!(read_invocations(dir).unwrap(), vec![a, b, c.clone()]);
        assert_eq!(fs::read_dir(dir.join(RECIPES_DIR)).unwrap().count(), 2);
        assert_eq!(read_invoked_recipe(dir, &c).unwrap(), "name: a  # edited\n");

        // A cut-short last line (a crash while appending) is left out; a bad line elsewhere is not.
        let log = dir.join(INVOCATIONS_FILE);
        let mut text = fs::read_to_string(&log).unwrap();
        text.push_str("{\"time\":");
        fs::write(&log, &text).unwrap();
        assert_eq!(read_invocations(dir).unwrap().len(), 3);
        fs::write(&log, format!("garbage\n{text}\n")).unwrap();
        let error = read_invocations(dir).unwrap_err().to_string();
        assert!(error.contains("invocations.jsonl") && error.contains("line 1"), "{error}");
    }
}
