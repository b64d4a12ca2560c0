//! Key paths into a recipe (`methods[1].lr`, `stream.tasks`): how errors name the place they
//! are about, independent of the YAML library.

use std::fmt;

/// One step of a [`KeyPath`]: a mapping key or a list index.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Segment {
    /// A key of a mapping.
    Key(String),
    /// A position in a list, from 0.
    Index(usize),
}

/// A path from the top of a recipe document to one of its nodes, written the way a reader
/// looks it up: keys joined by `.`, list positions in brackets (`methods[1].lr`). The empty
/// path is the document itself.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct KeyPath(Vec<Segment>);

impl KeyPath {
    /// The document itself.
    pub fn root() -> KeyPath {
        KeyPath(Vec::new())
    }

    /// The steps of the path, outermost first.
    pub fn segments(&self) -> &[Segment] {
        &self.0
    }

    /// Whether this is the document itself.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// This path extended by a mapping key.
    pub fn key(&self, key: impl Into<String>) -> KeyPath {
        let mut segments = self.0.clone();
        segments.push(Segment::Key(key.into()));
        KeyPath(segments)
    }

    /// This path extended by a list index.
    pub fn index(&self, index: usize) -> KeyPath {
        let mut segments = self.0.clone();
        segments.push(Segment::Index(index));
        KeyPath(segments)
    }

    /// This path followed by all steps of `tail`.
    pub fn join(&self, tail: &KeyPath) -> KeyPath {
        let mut segments = self.0.clone();
        segments.extend(tail.0.iter().cloned());
        KeyPath(segments)
    }

    /// Whether `self` is `other` or one of its ancestors.
    pub fn is_prefix_of(&self, other: &KeyPath) -> bool {
        other.0.starts_with(&self.0)
    }

    /// The path without its last step (the root stays the root).
    pub fn parent(&self) -> KeyPath {
        let mut segments = self.0.clone();
        segments.pop();
        KeyPath(segments)
    }

    /// The last step, if any.
    pub fn last(&self) -> Option<&Segment> {
        self.0.last()
    }
}

impl From<Vec<Segment>> for KeyPath {
    fn from(segments: Vec<Segment>) -> KeyPath {
        KeyPath(segments)
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(key) if i == 0 => write!(f, "{key}")?,
                Segment::Key(key) => write!(f, ".{key}")?,
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_display_like_they_are_looked_up() {
        let path = KeyPath::root().key("methods").index(1).key("lr");
        assert_eq!(path.to_string(), "methods[1].lr");
        assert_eq!(KeyPath::root().index(0).key("a").to_string(), "[0].a");
        assert_eq!(KeyPath::root().to_string(), "");
    }

    #[test]
    fn prefixes_are_ancestors() {
        let method = KeyPath::root().key("methods").index(1);
        assert!(method.is_prefix_of(&method.key("lr")));
        assert!(method.is_prefix_of(&method));
        assert!(!method.key("lr").is_prefix_of(&method));
        assert_eq!(method.key("lr").parent(), method);
    }
}
