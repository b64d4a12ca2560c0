//! Recipe errors: each names the file, the line and column where YAML gives one, the key path,
//! the override it came from (if any) and what was expected.

use std::fmt;
use std::path::PathBuf;

use super::path::KeyPath;

/// One problem with a recipe, displayed as
/// `recipes/x.yaml:12:5: methods[1]: unknown key `replacment_rate`; cbp takes: …`, or, when a
/// command-line override caused it, `recipes/x.yaml: override `parallel=x`: expected a
/// positive integer, found "x"`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", render(self))]
pub struct RecipeError {
    /// The recipe file, as given on the command line.
    pub file: PathBuf,
    /// 1-based line of the offending node, when it is in the file.
    pub line: Option<usize>,
    /// 1-based column of the offending node, when it is in the file.
    pub column: Option<usize>,
    /// Where in the recipe the problem is (`methods[1].lr`); the root for whole-file problems.
    pub key: KeyPath,
    /// The override (`key=value`, as written) that put the offending value there.
    pub via_override: Option<String>,
    /// What is wrong and what was expected; lowercase, one line.
    pub message: String,
}

fn render(error: &RecipeError) -> String {
    let mut out = error.file.display().to_string();
    if let Some(line) = error.line {
        out.push_str(&format!(":{line}"));
        if let Some(column) = error.column {
            out.push_str(&format!(":{column}"));
        }
    }
    out.push_str(": ");
    if let Some(o) = &error.via_override {
        out.push_str(&format!("override `{o}`: "));
    }
    if !error.key.is_root() {
        out.push_str(&format!("{}: ", error.key));
    }
    out.push_str(&error.message);
    out
}

/// All problems found in one recipe, in the order of the file (problems without a position,
/// such as those of overrides, last). Validation goes on after the first problem where later
/// checks do not depend on it, so one edit–validate cycle fixes as much as possible.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct RecipeErrors {
    /// At least one problem.
    pub errors: Vec<RecipeError>,
}

impl RecipeErrors {
    pub(super) fn new(mut errors: Vec<RecipeError>) -> RecipeErrors {
        // Stable: problems at the same place keep the order they were found in.
        errors.sort_by_key(|e| (e.line.is_none(), e.line, e.column));
        errors.dedup();
        RecipeErrors { errors }
    }
}

impl From<RecipeError> for RecipeErrors {
    fn from(error: RecipeError) -> RecipeErrors {
        RecipeErrors { errors: vec![error] }
    }
}

impl fmt::Display for RecipeErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_file_position_override_and_key() {
        let mut error = RecipeError {
            file: "recipes/x.yaml".into(),
            line: Some(3),
            column: Some(10),
            key: KeyPath::root().key("stream").key("tasks"),
            via_override: None,
            message: "expected a positive integer, found \"ten\"".into(),
        };
        assert_eq!(
            error.to_string(),
            "recipes/x.yaml:3:10: stream.tasks: expected a positive integer, found \"ten\""
        );
        error.line = None;
        error.column = None;
        error.key = KeyPath::root();
        error.via_override = Some("parallel=x".into());
        assert_eq!(
            error.to_string(),
            "recipes/x.yaml: override `parallel=x`: expected a positive integer, found \"ten\""
        );
    }
}
