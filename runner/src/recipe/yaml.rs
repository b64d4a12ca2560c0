//! The one place that names the YAML library.
//!
//! A recipe is parsed into a [`serde_json::Value`] tree (JSON numbers keep integers apart from
//! floats, which the run ids depend on); everything after this file works on that tree and on
//! [`KeyPath`]s. Positions are not carried in the tree: when an error is reported,
//! [`locate`] walks the original text once more to the node the error is about and reads the
//! position the YAML parser attaches to errors there. Errors are rare, so this costs nothing in
//! the common case and keeps the tree free of span bookkeeping. Swapping the YAML crate means
//! rewriting this file only.

use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value as Json};
use serde_yaml::Value as Yaml;

use super::path::{KeyPath, Segment};

/// A 1-based line and column in the recipe text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Position {
    pub line: usize,
    pub column: usize,
}

/// Why a text could not be turned into a tree: the parser's message, where it happened, and
/// the node whose value is not representable (non-finite numbers, tags, non-string keys).
#[derive(Debug)]
pub(super) struct YamlProblem {
    pub message: String,
    pub position: Option<Position>,
    pub path: KeyPath,
}

/// Parses a YAML document (the recipe file, or one override value written as a flow value)
/// into a JSON tree. Merge keys (`<<: *defaults`) are applied.
///
/// Texts past the limits ([`MAX_TEXT_BYTES`], [`MAX_EXPANDED_BYTES`], [`MAX_DEPTH`]) are
/// refused, in time linear in the text, before any value is built.
pub(super) fn parse(text: &str) -> Result<Json, YamlProblem> {
    check_bounds(text)?;
    let mut value: Yaml = serde_yaml::from_str(text).map_err(|error| {
        let position = error.location().map(|l| Position { line: l.line(), column: l.column() });
        let mut message = error.to_string();
        if let Some(p) = position {
            // The parser appends its own position; ours goes in front of the whole line.
            message = message.replacen(&format!(" at line {} column {}", p.line, p.column), "", 1);
        }
        YamlProblem { message, position, path: KeyPath::root() }
    })?;
    value.apply_merge().map_err(|error| YamlProblem {
        message: format!("cannot apply a merge key (`<<`): {error}"),
        position: error.location().map(|l| Position { line: l.line(), column: l.column() }),
        path: KeyPath::root(),
    })?;
    to_json(value, &KeyPath::root()).map_err(|(path, message)| {
        let position = locate(text, &path, Target::Node);
        YamlProblem { message, position, path }
    })
}

/// `tree` as YAML text (block style, keys in the tree's order).
pub(super) fn emit(tree: &Json) -> String {
    serde_yaml::to_string(tree).expect("a JSON tree always serialises as YAML")
}

/// Largest recipe text accepted, in bytes.
pub(super) const MAX_TEXT_BYTES: usize = 1 << 20;
/// Largest size the document may reach once every alias (`*name`) is replaced by the node it
/// refers to, in bytes of scalar text (plus one per node).
pub(super) const MAX_EXPANDED_BYTES: usize = 16 << 20;
/// Deepest nesting of mappings and lists accepted.
pub(super) const MAX_DEPTH: usize = 64;

/// Refuses texts that would cost far more to parse than their size suggests, before the YAML
/// library builds anything: texts over [`MAX_TEXT_BYTES`], flow collections (`[[[…`) nested
/// deeper than [`MAX_DEPTH`] (the YAML scanner is quadratic in that depth), and documents whose
/// aliases expand past [`MAX_EXPANDED_BYTES`] or nest past [`MAX_DEPTH`]. Linear in the text.
fn check_bounds(text: &str) -> Result<(), YamlProblem> {
    let problem = |message: String, position: Option<Position>| YamlProblem {
        message,
        position,
        path: KeyPath::root(),
    };
    if text.len() > MAX_TEXT_BYTES {
        return Err(problem(
            format!("the recipe text is {} bytes; the limit is {MAX_TEXT_BYTES} bytes (1 MiB)", text.len()),
            Some(position_of(text, MAX_TEXT_BYTES)),
        ));
    }
    if let Some(offset) = flow_too_deep(text) {
        return Err(problem(
            format!("collections are nested more than {MAX_DEPTH} levels deep (the depth limit)"),
            Some(position_of(text, offset)),
        ));
    }
    let deserializer = serde_yaml::Deserializer::from_str(text);
    let mut budget = Budget { bytes: 0 };
    match (Counter { budget: &mut budget, depth: 0 }).deserialize(deserializer) {
        Err(error) if error.to_string().contains(LIMIT) => {
            let position = error.location().map(|l| Position { line: l.line(), column: l.column() });
            let message = error.to_string();
            let message = message.split(LIMIT).nth(1).unwrap_or_default();
            let message = message.split(LIMIT).next().unwrap_or_default().to_string();
            Err(problem(message, position))
        }
        // Other errors are reported by the real parse, with its own wording.
        _ => Ok(()),
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn position_of(text: &str, offset: usize) -> Position {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    Position { line, column: before[line_start..].chars().count() + 1 }
}

/// A lexical pass over the text that tracks how deep flow collections (`[ ]`, `{ }`) nest,
/// skipping comments, quoted scalars and block scalars. Returns the byte offset of the first
/// bracket that goes past [`MAX_DEPTH`]. It errs on the side of not counting: a bracket inside
/// a plain scalar in block context is not an opening.
fn flow_too_deep(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    // Whether the next token starts a node (line start, after `: `, `- `, `? `, `,`, `[`, `{`).
    let mut node_start = true;
    let mut line_indent = 0usize;
    let mut at_line_start = true;
    // Indentation of the line holding a `|`/`>` whose content lines are being skipped.
    let mut block_scalar: Option<usize> = None;
    while i < bytes.len() {
        let b = bytes[i];
        if at_line_start {
            let indent = bytes[i..].iter().take_while(|&&c| c == b' ').count();
            let rest = &bytes[i + indent..];
            let blank = rest.first().is_none_or(|&c| c == b'\n' || c == b'\r');
            if let Some(parent) = block_scalar {
                if blank || indent > parent {
                    i += indent;
                    i += bytes[i..].iter().position(|&c| c == b'\n').map_or(bytes.len() - i, |p| p + 1);
                    continue;
                }
                block_scalar = None;
            }
            line_indent = indent;
            at_line_start = false;
            if depth == 0 {
                node_start = true;
            }
            i += indent;
            continue;
        }
        let prev_space = i == 0 || matches!(bytes[i - 1], b' ' | b'\t' | b'\n' | b'\r');
        let next_space = bytes.get(i + 1).is_none_or(|c| matches!(c, b' ' | b'\t' | b'\n' | b'\r'));
        match b {
            b'\n' => {
                at_line_start = true;
                i += 1;
                continue;
            }
            b' ' | b'\t' | b'\r' => {}
            b'#' if prev_space => {
                i += bytes[i..].iter().position(|&c| c == b'\n').unwrap_or(bytes.len() - i);
                continue;
            }
            b'[' | b'{' if depth > 0 || node_start => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Some(i);
                }
                node_start = true;
            }
            b']' | b'}' if depth > 0 => {
                depth -= 1;
                node_start = false;
            }
            b',' if depth > 0 => node_start = true,
            b'\'' | b'"' if node_start => {
                // Skip the quoted scalar; `''` in single quotes, `\"` in double quotes.
                i += 1;
                while i < bytes.len() {
                    match bytes[i] {
                        b'\\' if b == b'"' => i += 1,
                        c if c == b && b == b'\'' && bytes.get(i + 1) == Some(&b'\'') => i += 1,
                        c if c == b => break,
                        _ => {}
                    }
                    i += 1;
                }
                node_start = false;
            }
            b':' | b'-' | b'?' if next_space || (b == b':' && depth > 0) => node_start = true,
            b'|' | b'>' if node_start && depth == 0 => {
                block_scalar = Some(line_indent);
                i += bytes[i..].iter().position(|&c| c == b'\n').unwrap_or(bytes.len() - i);
                continue;
            }
            // Anchors and tags come before the node they belong to.
            b'&' | b'!' if node_start => {
                i += bytes[i..]
                    .iter()
                    .position(|&c| matches!(c, b' ' | b'\t' | b'\n' | b'\r'))
                    .unwrap_or(bytes.len() - i);
                continue;
            }
            _ => node_start = false,
        }
        i += 1;
    }
    None
}

/// Marks the error a [`Counter`] raises when a limit is crossed, so that it can be told apart
/// from the parser's own errors and its message cut out of the parser's wording.
const LIMIT: &str = "\u{1}";

struct Budget {
    bytes: usize,
}

/// Walks the document as the YAML library replays it (aliases included, without copying
/// them), adding up scalar sizes and depth, and fails as soon as a limit is crossed.
struct Counter<'b> {
    budget: &'b mut Budget,
    depth: usize,
}

impl Counter<'_> {
    fn add<E: de::Error>(&mut self, bytes: usize) -> Result<(), E> {
        self.budget.bytes = self.budget.bytes.saturating_add(bytes + 1);
        if self.budget.bytes > MAX_EXPANDED_BYTES {
            return Err(E::custom(format!(
                "{LIMIT}the recipe grows past {MAX_EXPANDED_BYTES} bytes (16 MiB) once its aliases (`*name`) are expanded (the expanded-size limit){LIMIT}"
            )));
        }
        Ok(())
    }

    fn nested(&mut self) -> Counter<'_> {
        Counter { budget: self.budget, depth: self.depth + 1 }
    }

    fn enter<E: de::Error>(&mut self) -> Result<(), E> {
        self.add(0)?;
        if self.depth >= MAX_DEPTH {
            return Err(E::custom(format!(
                "{LIMIT}collections are nested more than {MAX_DEPTH} levels deep (the depth limit){LIMIT}"
            )));
        }
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for Counter<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Counter<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E: de::Error>(mut self, _: bool) -> Result<(), E> {
        self.add(1)
    }
    fn visit_i64<E: de::Error>(mut self, _: i64) -> Result<(), E> {
        self.add(8)
    }
    fn visit_u64<E: de::Error>(mut self, _: u64) -> Result<(), E> {
        self.add(8)
    }
    fn visit_f64<E: de::Error>(mut self, _: f64) -> Result<(), E> {
        self.add(8)
    }
    fn visit_str<E: de::Error>(mut self, v: &str) -> Result<(), E> {
        self.add(v.len())
    }
    fn visit_bytes<E: de::Error>(mut self, v: &[u8]) -> Result<(), E> {
        self.add(v.len())
    }
    fn visit_unit<E: de::Error>(mut self) -> Result<(), E> {
        self.add(0)
    }
    fn visit_none<E: de::Error>(mut self) -> Result<(), E> {
        self.add(0)
    }
    fn visit_some<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        self.deserialize(deserializer)
    }
    fn visit_enum<A: de::EnumAccess<'de>>(mut self, data: A) -> Result<(), A::Error> {
        use de::VariantAccess;
        self.enter()?;
        let ((), variant) = data.variant_seed(self.nested())?;
        variant.newtype_variant_seed(self.nested())
    }
    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        self.enter()?;
        while seq.next_element_seed(self.nested())?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        self.enter()?;
        while map.next_key_seed(self.nested())?.is_some() {
            map.next_value_seed(self.nested())?;
        }
        Ok(())
    }
}

fn to_json(value: Yaml, path: &KeyPath) -> Result<Json, (KeyPath, String)> {
    Ok(match value {
        Yaml::Null => Json::Null,
        Yaml::Bool(b) => Json::Bool(b),
        Yaml::Number(n) => {
            if let Some(u) = n.as_u64() {
                Json::Number(u.into())
            } else if let Some(i) = n.as_i64() {
                Json::Number(i.into())
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                match Number::from_f64(f) {
                    Some(number) => Json::Number(number),
                    None => return Err((path.clone(), format!("expected a finite number, found {n}"))),
                }
            }
        }
        Yaml::String(s) => Json::String(s),
        Yaml::Sequence(items) => Json::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(i, item)| to_json(item, &path.index(i)))
                .collect::<Result<_, _>>()?,
        ),
        Yaml::Mapping(mapping) => {
            let mut object = Map::new();
            for (key, item) in mapping {
                let key = match key {
                    Yaml::String(key) => key,
                    other => {
                        return Err((
                            path.clone(),
                            format!("keys must be names (strings), found {}", short(&other)),
                        ))
                    }
                };
                let item = to_json(item, &path.key(key.as_str()))?;
                object.insert(key, item);
            }
            Json::Object(object)
        }
        Yaml::Tagged(tagged) => {
            return Err((path.clone(), format!("YAML tags are not supported, found `{}`", tagged.tag)))
        }
    })
}

fn short(value: &Yaml) -> String {
    serde_yaml::to_string(value)
        .map(|s| s.trim_end().to_string())
        .unwrap_or_else(|_| "a non-string key".to_string())
}

/// What [`locate`] looks for at the end of a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Target {
    /// The node's value (for a mapping or list: where it starts).
    Node,
    /// The key that introduces the node in its mapping (for unknown or misplaced keys).
    Key,
}

/// Position of the node at `path` in `text`, or of its nearest ancestor present in the text
/// when the path does not exist there (merged or overridden content). `None` when the text does
/// not parse.
pub(super) fn locate(text: &str, path: &KeyPath, target: Target) -> Option<Position> {
    let segments = path.segments();
    if let Some(position) = probe(text, segments, target) {
        return Some(position);
    }
    (0..segments.len()).rev().find_map(|len| probe(text, &segments[..len], Target::Node))
}

/// The message a probe raises when it reaches its node; the parser attaches the node's
/// position to it. Nothing a recipe can contain produces it.
const FOUND: &str = "\u{1}clorch: node found\u{1}";

fn probe(text: &str, segments: &[Segment], target: Target) -> Option<Position> {
    let (walk, key) = match (target, segments.split_last()) {
        (Target::Key, Some((Segment::Key(key), parent))) => (parent, Some(key.as_str())),
        _ => (segments, None),
    };
    let deserializer = serde_yaml::Deserializer::from_str(text);
    match (Probe { rest: walk, key }).deserialize(deserializer) {
        Err(error) if error.to_string().contains(FOUND) => {
            error.location().map(|l| Position { line: l.line(), column: l.column() })
        }
        _ => None,
    }
}

/// Walks down `rest`, skipping everything else, and fails with [`FOUND`] at the target node
/// (or, with `key`, at that key of the mapping at the end of `rest`).
struct Probe<'a> {
    rest: &'a [Segment],
    key: Option<&'a str>,
}

impl<'de> DeserializeSeed<'de> for Probe<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl Probe<'_> {
    fn at_target(&self) -> bool {
        self.rest.is_empty() && self.key.is_none()
    }

    fn scalar<E: de::Error>(self) -> Result<(), E> {
        if self.at_target() {
            Err(E::custom(FOUND))
        } else {
            Ok(())
        }
    }
}

impl<'de> Visitor<'de> for Probe<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML node")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.scalar()
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.scalar()
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.scalar()
    }
    fn visit_i128<E: de::Error>(self, _: i128) -> Result<(), E> {
        self.scalar()
    }
    fn visit_u128<E: de::Error>(self, _: u128) -> Result<(), E> {
        self.scalar()
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.scalar()
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        self.scalar()
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.scalar()
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.scalar()
    }
    fn visit_some<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
    /// A tagged node (`!tag value`); the probe does not descend into it.
    fn visit_enum<A: de::EnumAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        self.scalar()
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if self.at_target() {
            return Err(de::Error::custom(FOUND));
        }
        let Some((Segment::Index(wanted), rest)) = self.rest.split_first() else {
            return Ok(());
        };
        for _ in 0..*wanted {
            if seq.next_element::<IgnoredAny>()?.is_none() {
                return Ok(());
            }
        }
        seq.next_element_seed(Probe { rest, key: self.key })?;
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        if self.at_target() {
            return Err(de::Error::custom(FOUND));
        }
        let wanted_key = if self.rest.is_empty() { self.key } else { None };
        while let Some(key) = map.next_key_seed(KeyProbe { wanted: wanted_key })? {
            match self.rest.split_first() {
                Some((Segment::Key(wanted), rest)) if *wanted == key => {
                    return map.next_value_seed(Probe { rest, key: self.key });
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// Reads a mapping key as text, failing with [`FOUND`] when it is the wanted one.
struct KeyProbe<'a> {
    wanted: Option<&'a str>,
}

impl<'de> DeserializeSeed<'de> for KeyProbe<'_> {
    type Value = String;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<String, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl KeyProbe<'_> {
    fn key<E: de::Error>(self, key: String) -> Result<String, E> {
        if self.wanted == Some(key.as_str()) {
            Err(E::custom(FOUND))
        } else {
            Ok(key)
        }
    }
}

impl<'de> Visitor<'de> for KeyProbe<'_> {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        self.key(v.to_string())
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
        self.key(v.to_string())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        self.key(v.to_string())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        self.key(v.to_string())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
        self.key(v.to_string())
    }
    fn visit_unit<E: de::Error>(self) -> Result<String, E> {
        Ok(String::new())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<String, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(String::new())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<String, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(String::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
name: demo
stream:
  kind: permuted_mnist
  tasks: ten
methods:
  - name: sgd
    lr: 0.01
  - name: cbp
    replacment_rate: [1e-4, 1e-5]
seeds: [0, 7]
";

    fn at(path: KeyPath, target: Target) -> Option<(usize, usize)> {
        locate(TEXT, &path, target).map(|p| (p.line, p.column))
    }

    #[test]
    fn locates_values_keys_and_list_entries() {
        let root = KeyPath::root();
        assert_eq!(at(root.key("stream").key("tasks"), Target::Node), Some((4, 10)));
        assert_eq!(at(root.key("stream").key("tasks"), Target::Key), Some((4, 3)));
        assert_eq!(at(root.key("methods").index(1), Target::Node), Some((8, 5)));
        let rate = root.key("methods").index(1).key("replacment_rate");
        assert_eq!(at(rate.clone(), Target::Key), Some((9, 5)));
        assert_eq!(at(rate.index(1), Target::Node), Some((9, 29)));
        assert_eq!(at(root.key("seeds").index(1), Target::Node), Some((10, 12)));
        assert_eq!(at(root.clone(), Target::Node), Some((1, 1)));
    }

    #[test]
    fn missing_paths_fall_back_to_the_nearest_ancestor() {
        let root = KeyPath::root();
        assert_eq!(at(root.key("methods").index(0).key("momentum"), Target::Key), Some((6, 5)));
        assert_eq!(at(root.key("methods").index(5), Target::Node), Some((6, 3)));
    }

    #[test]
    fn numbers_keep_integers_apart_from_floats() {
        let tree = parse("a: 1e-4\nb: 3\nc: -2\nd: 1.0\ne: '5'\n").unwrap();
        assert_eq!(serde_json::to_string(&tree).unwrap(), r#"{"a":0.0001,"b":3,"c":-2,"d":1.0,"e":"5"}"#);
    }

    #[test]
    fn syntax_errors_carry_a_position_once() {
        let problem = parse("name: x\n  bad: [1, 2\n").unwrap_err();
        let position = problem.position.expect("a syntax error has a position");
        assert_eq!(position.line, 2);
        assert!(!problem.message.contains(&format!("at line {}", position.line)), "{}", problem.message);
    }

    #[test]
    fn unrepresentable_values_are_located() {
        let problem = parse("a:\n  b: .nan\n").unwrap_err();
        assert_eq!(problem.path.to_string(), "a.b");
        assert!(problem.message.contains("finite number"), "{}", problem.message);
        assert_eq!(problem.position, Some(Position { line: 2, column: 6 }));
        let problem = parse("a: !custom 3\n").unwrap_err();
        assert!(problem.message.contains("tags are not supported"), "{}", problem.message);
        let problem = parse("a:\n  1: x\n").unwrap_err();
        assert!(problem.message.contains("keys must be names"), "{}", problem.message);
    }

    #[test]
    fn merge_keys_are_applied() {
        let tree = parse("base: &b {lr: 0.1}\nm:\n  <<: *b\n  momentum: 0.9\n").unwrap();
        assert_eq!(tree["m"]["lr"], serde_json::json!(0.1));
    }

    #[test]
    fn an_alias_bomb_is_refused_by_expanded_size() {
        let big = "x".repeat(1_000_000);
        let refs = vec!["*a"; 5000].join(", ");
        let text = format!("name: a\nbig: &a \"{big}\"\nlist: [{refs}]\n");
        assert!(text.len() < MAX_TEXT_BYTES);
        let problem = parse(&text).unwrap_err();
        assert!(problem.message.contains("expanded-size limit"), "{}", problem.message);
        assert!(problem.position.is_some());
    }

    #[test]
    fn deep_nesting_is_refused_with_its_position() {
        let n = 100_000;
        let text = format!("a: {}{}\n", "[".repeat(n), "]".repeat(n));
        let problem = parse(&text).unwrap_err();
        assert!(problem.message.contains("depth limit"), "{}", problem.message);
        assert_eq!(problem.position, Some(Position { line: 1, column: 4 + MAX_DEPTH }));

        let mut block = String::new();
        for level in 0..MAX_DEPTH + 5 {
            block.push_str(&format!("{}k{level}:\n", "  ".repeat(level)));
        }
        let problem = parse(&block).unwrap_err();
        assert!(problem.message.contains("depth limit"), "{}", problem.message);
    }

    #[test]
    fn nesting_up_to_the_limit_and_brackets_in_scalars_are_accepted() {
        let depth = MAX_DEPTH - 1;
        let text = format!("a: {}1{}\n", "[".repeat(depth), "]".repeat(depth));
        parse(&text).unwrap();
        let text = "a: x[[[[[[[[\nb: '[[[[[[[[[['\nc: |\n  [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\n# [[[[\n";
        let big = text.replace("[[[[[[[[", &"[".repeat(80));
        parse(&big).unwrap();
    }

    #[test]
    fn texts_over_the_size_limit_are_refused() {
        let text = format!("a: \"{}\"\n", "x".repeat(MAX_TEXT_BYTES));
        let problem = parse(&text).unwrap_err();
        assert!(problem.message.contains("1 MiB"), "{}", problem.message);
    }
}
