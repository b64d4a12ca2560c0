//! Wording of recipe errors: serde's messages rephrased in the recipe's own terms, and "did
//! you mean" suggestions for misspelt names.

/// Optimal-string-alignment distance: insertions, deletions, substitutions and transpositions
/// of neighbours each cost 1 (`replacment_rate` → `replacement_rate` is 1, `sdg` → `sgd` is 1).
pub(super) fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1).min(d[i][j - 1] + 1).min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

/// The candidate nearest to `word`, if it is near enough to be a plausible typo: at most a
/// third of the word's length away (at least 1, at most 3 edits).
pub(super) fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).clamp(1, 3);
    candidates
        .into_iter()
        .map(|candidate| (edit_distance(word, candidate), candidate))
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

/// `unknown key `x` (did you mean `y`?); <owner> takes: a, b, c` — `owner` names what the key
/// was written in ("a recipe", "cbp", "stream.network").
pub(super) fn unknown_key(key: &str, known: &[String], owner: &str) -> String {
    let mut message = format!("unknown key `{key}`");
    if let Some(near) = closest(key, known.iter().map(String::as_str)) {
        message.push_str(&format!(" (did you mean `{near}`?)"));
    }
    if known.is_empty() {
        message.push_str(&format!("; {owner} takes no keys"));
    } else {
        message.push_str(&format!("; {owner} takes: {}", known.join(", ")));
    }
    message
}

/// `unknown <what> `x` (did you mean `y`?); expected one of: a, b, c`.
pub(super) fn unknown_name(what: &str, name: &str, known: &[String]) -> String {
    let mut message = format!("unknown {what} `{name}`");
    if let Some(near) = closest(name, known.iter().map(String::as_str)) {
        message.push_str(&format!(" (did you mean `{near}`?)"));
    }
    message.push_str(&format!("; expected one of: {}", known.join(", ")));
    message
}

/// Appended when a list appears where a single value is expected: the likeliest cause is a
/// grid written outside the method parameters.
pub(super) const GRID_HINT: &str = "grids (lists) are allowed only in method parameters";

/// A serde error message, classified.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum SerdeMessage {
    /// `unknown field`: the key and the keys the mapping takes.
    UnknownKey { key: String, known: Vec<String> },
    /// Anything else, already rephrased.
    Other(String),
}

/// Rephrases serde's messages (`invalid type: string "ten", expected usize`) in recipe terms
/// (`expected a non-negative integer, found "ten"`). Messages serde does not produce pass
/// through unchanged.
pub(super) fn rephrase(message: &str) -> SerdeMessage {
    if let Some(rest) = message.strip_prefix("unknown field `") {
        if let Some((key, tail)) = rest.split_once('`') {
            return SerdeMessage::UnknownKey { key: key.to_string(), known: backticked(tail) };
        }
    }
    if let Some(rest) = message.strip_prefix("unknown variant `") {
        if let Some((name, tail)) = rest.split_once('`') {
            return SerdeMessage::Other(unknown_name("value", name, &backticked(tail)));
        }
    }
    if let Some(rest) = message.strip_prefix("missing field `") {
        if let Some((key, _)) = rest.split_once('`') {
            return SerdeMessage::Other(format!("missing key `{key}`"));
        }
    }
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = message.strip_prefix(prefix) {
            if let Some((found, expected)) = rest.split_once(", expected ") {
                return SerdeMessage::Other(mismatch(found, expected));
            }
        }
    }
    if let Some(rest) = message.strip_prefix("invalid length ") {
        if let Some((found, expected)) = rest.split_once(", expected ") {
            return SerdeMessage::Other(format!("expected {expected}, found {found} entries"));
        }
    }
    SerdeMessage::Other(message.to_string())
}

/// `expected <what>, found <value>`, with the grid hint when a list is found where a list is
/// not expected.
pub(super) fn mismatch(found: &str, expected: &str) -> String {
    let expected = describe_expected(expected);
    let found = describe_found(found);
    let mut message = format!("expected {expected}, found {found}");
    if found == "a list" && !expected.contains("list") {
        message.push_str("; ");
        message.push_str(GRID_HINT);
    }
    message
}

fn describe_expected(expected: &str) -> String {
    match expected {
        "usize" | "u64" | "u32" | "u16" | "u8" => "a non-negative integer".into(),
        "isize" | "i64" | "i32" | "i16" | "i8" => "an integer".into(),
        "f64" | "f32" => "a number".into(),
        "a boolean" => "`true` or `false`".into(),
        "a string" | "path string" | "a borrowed string" => "a string".into(),
        "a sequence" => "a list".into(),
        "a map" => "a mapping".into(),
        "enum EvalTasks" => "`all` or `{subsample: {earlier: N}}`".into(),
        e if e.starts_with("struct ") => "a mapping".into(),
        e if e.starts_with("enum ") || e.ends_with(" variant") => "a name".into(),
        e => e.into(),
    }
}

fn describe_found(found: &str) -> String {
    if let Some(s) = found.strip_prefix("string ") {
        return s.to_string();
    }
    for prefix in ["integer ", "floating point ", "boolean "] {
        if let Some(v) = found.strip_prefix(prefix) {
            return v.trim_matches('`').to_string();
        }
    }
    match found {
        "sequence" => "a list".into(),
        "map" => "a mapping".into(),
        "unit value" | "Option value" => "nothing (null)".into(),
        f => f.into(),
    }
}

/// How a value found in the recipe tree is named in messages: `"ten"`, `5`, `a list`, ….
pub(super) fn describe_json(value: &serde_json::Value) -> String {
    use serde_json::Value;
    match value {
        Value::Null => "nothing (null)".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("{s:?}"),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "a mapping".into(),
    }
}

/// A parameter value as shown in tables and messages: strings bare, everything else as JSON.
pub(super) fn show_value(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn backticked(text: &str) -> Vec<String> {
    text.split('`').skip(1).step_by(2).map(str::to_string).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_count_typos() {
        assert_eq!(edit_distance("replacment_rate", "replacement_rate"), 1);
        assert_eq!(edit_distance("sdg", "sgd"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn suggestions_only_when_near() {
        let keys = ["parallel", "name", "seeds"];
        assert_eq!(closest("paralel", keys), Some("parallel"));
        assert_eq!(closest("seed", keys), Some("seeds"));
        assert_eq!(closest("optimizer", keys), None);
    }

    #[test]
    fn serde_messages_are_rephrased() {
        assert_eq!(
            rephrase(r#"invalid type: string "ten", expected usize"#),
            SerdeMessage::Other(r#"expected a non-negative integer, found "ten""#.into())
        );
        assert_eq!(
            rephrase("invalid type: sequence, expected usize"),
            SerdeMessage::Other(format!("expected a non-negative integer, found a list; {GRID_HINT}"))
        );
        assert_eq!(
            rephrase("unknown field `paralel`, expected one of `name`, `parallel`"),
            SerdeMessage::UnknownKey { key: "paralel".into(), known: vec!["name".into(), "parallel".into()] }
        );
        assert_eq!(
            rephrase("unknown variant `rleu`, expected one of `relu`, `tanh`"),
            SerdeMessage::Other(
                "unknown value `rleu` (did you mean `relu`?); expected one of: relu, tanh".into()
            )
        );
        assert_eq!(rephrase("missing field `hidden`"), SerdeMessage::Other("missing key `hidden`".into()));
        assert_eq!(rephrase("something else"), SerdeMessage::Other("something else".into()));
    }
}
