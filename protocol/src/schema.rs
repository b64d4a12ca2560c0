//! JSON Schemas of the wire types, generated from the Rust types so that they cannot drift
//! from what the orchestrator reads. The committed copies in `docs/schemas/` are checked
//! against these by this crate's tests (`CLORCH_BLESS=1 cargo test -p clorch-protocol`
//! rewrites them); workers in other languages validate against the committed files.

use schemars::{schema_for, Schema};

use crate::{Event, RunSpec};

/// Every schema, by file name: the run spec a worker reads, one event line, an external
/// worker's `--describe` output and its resume manifest.
pub fn all() -> Vec<(&'static str, Schema)> {
    vec![
        ("run-spec.schema.json", schema_for!(RunSpec)),
        ("event.schema.json", event_line()),
        ("worker-description.schema.json", schema_for!(crate::describe::WorkerDescription)),
        ("resume.schema.json", schema_for!(crate::resume::ResumeManifest)),
    ]
}

/// An [`Event`] as a line carries it: the type's fields plus the checksum member that
/// [`crate::line`] adds (not a field of the type, since it covers the serialised bytes).
fn event_line() -> Schema {
    let mut schema = schema_for!(Event);
    let object = schema.as_object_mut().expect("an event's schema is an object");
    let crc = serde_json::json!({
        "description": "CRC-32 (IEEE, as zlib's crc32) of the line without this member, as 8 lowercase \
                        hex digits; always the last member (see docs/protocol.md).",
        "type": "string",
        "pattern": "^[0-9a-f]{8}$"
    });
    if let Some(serde_json::Value::Object(properties)) = object.get_mut("properties") {
        properties.insert(crate::line::CHECKSUM_FIELD.to_string(), crc);
    }
    if let Some(serde_json::Value::Array(required)) = object.get_mut("required") {
        required.push(crate::line::CHECKSUM_FIELD.into());
    }
    schema
}

/// A schema as the committed file holds it: pretty JSON and a final newline.
pub fn to_file_text(schema: &Schema) -> String {
    let mut text = serde_json::to_string_pretty(schema).expect("a schema always serialises");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn the_committed_schemas_are_the_generated_ones() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/schemas");
        let bless = std::env::var_os("CLORCH_BLESS").is_some();
        for (name, schema) in all() {
            let path = dir.join(name);
            let text = to_file_text(&schema);
            if bless {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(&path, &text).unwrap();
            }
            let committed = std::fs::read_to_string(&path).unwrap_or_else(|e| {
                panic!("{}: {e}; CLORCH_BLESS=1 cargo test -p clorch-protocol writes it", path.display())
            });
            assert!(
                committed == text,
                "{} is out of date with the protocol's types; CLORCH_BLESS=1 cargo test -p clorch-protocol rewrites it",
                path.display()
            );
        }
    }
}
