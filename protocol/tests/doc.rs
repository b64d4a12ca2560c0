//! `docs/protocol.md` cannot drift from the types: its example event lines (checksums included)
//! parse and serialise back to the same bytes, every event kind and method payload has an example, and its example
//! spec hashes to its own id.

use std::collections::BTreeSet;

use protocol::{control, exit, files, heartbeat, schema, Event, EventBody, RunSpec};
use serde_json::Value;

const DOC: &str = include_str!("../../docs/protocol.md");

/// The lines of the doc's fenced blocks of language `lang`, one `Vec` per block.
fn blocks(lang: &str) -> Vec<Vec<&'static str>> {
    let fence = format!("```{lang}");
    let mut out = Vec::new();
    let mut current: Option<Vec<&str>> = None;
    for line in DOC.lines() {
        match &mut current {
            None if line.trim_end() == fence => current = Some(Vec::new()),
            None => {}
            Some(_) if line.trim_end() == "```" => out.push(current.take().expect("in a block")),
            Some(lines) => lines.push(line),
        }
    }
    assert!(current.is_none(), "docs/protocol.md: an unclosed ```{lang} block");
    out
}

/// Every string `const` of a property named `property` in a schema.
fn consts(schema: &Value, property: &str, into: &mut BTreeSet<String>) {
    match schema {
        Value::Object(map) => {
            if let Some(c) = map.get("properties").and_then(|p| p.get(property)).and_then(|p| p.get("const"))
            {
                into.insert(c.as_str().expect("tags are strings").to_string());
            }
            map.values().for_each(|v| consts(v, property, into));
        }
        Value::Array(items) => items.iter().for_each(|v| consts(v, property, into)),
        _ => {}
    }
}

fn examples() -> Vec<(&'static str, Event)> {
    let lines: Vec<&str> = blocks("jsonl").into_iter().flatten().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "docs/protocol.md has no ```jsonl examples");
    lines
        .into_iter()
        .map(|line| {
            let event: Event = protocol::line::decode(line.as_bytes())
                .unwrap_or_else(|e| panic!("docs/protocol.md: not a sealed event line: {e}\n{line}"));
            let again = protocol::line::encode(&event);
            assert_eq!(
                again.trim_end(),
                line,
                "docs/protocol.md: an example that does not serialise back to itself"
            );
            (line, event)
        })
        .collect()
}

#[test]
fn the_example_events_are_events_byte_for_byte() {
    examples();
}

#[test]
fn every_event_kind_and_method_payload_has_an_example() {
    let event_schema = schema::all()
        .into_iter()
        .find(|(name, _)| *name == "event.schema.json")
        .map(|(_, s)| serde_json::to_value(s).unwrap())
        .expect("the event schema");
    let (mut kinds, mut names) = (BTreeSet::new(), BTreeSet::new());
    consts(&event_schema, "event", &mut kinds);
    consts(&event_schema, "name", &mut names);
    assert!(kinds.len() >= 9 && names.len() >= 11, "{kinds:?} {names:?}");

    let examples = examples();
    let shown_kinds: BTreeSet<String> = examples.iter().map(|(_, e)| e.body.kind().to_string()).collect();
    let shown_names: BTreeSet<String> = examples
        .iter()
        .filter_map(|(_, e)| match &e.body {
            EventBody::Method { payload, .. } => Some(payload.name().to_string()),
            _ => None,
        })
        .collect();
    let missing: Vec<_> = kinds.difference(&shown_kinds).collect();
    assert!(missing.is_empty(), "docs/protocol.md has no example of event kinds {missing:?}");
    let missing: Vec<_> = names.difference(&shown_names).collect();
    assert!(missing.is_empty(), "docs/protocol.md has no example of method payloads {missing:?}");
    for kind in &kinds {
        assert!(DOC.contains(&format!("**`{kind}`**")), "docs/protocol.md does not describe `{kind}`");
    }
    for name in &names {
        assert!(DOC.contains(&format!("`{name}`")), "docs/protocol.md does not describe `{name}`");
    }
}

#[test]
fn the_example_spec_is_a_spec_with_its_own_id() {
    // The JSON examples are one spec, an external worker's description and its resume manifest.
    let mut specs = Vec::new();
    let (mut descriptions, mut manifests) = (0, 0);
    for block in blocks("json") {
        let text = block.join("\n");
        if let Ok(spec) = serde_json::from_str::<RunSpec>(&text) {
            specs.push(spec);
        } else if serde_json::from_str::<protocol::describe::WorkerDescription>(&text).is_ok() {
            descriptions += 1;
        } else if serde_json::from_str::<protocol::resume::ResumeManifest>(&text).is_ok() {
            manifests += 1;
        } else {
            panic!("docs/protocol.md: a json example that is no spec, description or manifest:\n{text}");
        }
    }
    assert_eq!((specs.len(), descriptions, manifests), (1, 1, 1), "one example of each");
    let spec = &specs[0];
    assert_eq!(spec.protocol, protocol::PROTOCOL_VERSION);
    assert_eq!(spec.content_id(), spec.id, "the example spec's id is not its content hash");
}

#[test]
fn the_doc_names_the_files_codes_signals_and_heartbeat() {
    for file in
        [files::SPEC, files::EVENTS, files::WORKER_LOCK, files::WORKER_LOG, files::RUN_RECORD, files::RESUME]
    {
        assert!(DOC.contains(&format!("| `{file}` |")), "docs/protocol.md: no row for {file}");
    }
    for (code, name) in [
        (exit::FINISHED, "FINISHED"),
        (exit::FAILED, "FAILED"),
        (exit::BAD_SPEC, "BAD_SPEC"),
        (exit::TRANSIENT, "TRANSIENT"),
        (exit::INTERRUPTED, "INTERRUPTED"),
    ] {
        assert!(DOC.contains(&format!("| {code} | `{name}` |")), "docs/protocol.md: no row for exit {code}");
    }
    for signal in control::STOP_SIGNALS.into_iter().chain([control::KILL]) {
        let name = control::signal_name(signal).unwrap();
        assert!(
            DOC.contains(&format!("`SIG{name}` ({signal})")),
            "docs/protocol.md: no SIG{name} ({signal})"
        );
    }
    assert!(DOC.contains(control::WATCH_STDIN_FLAG));
    let example = heartbeat::Heartbeat { task: 3, tasks: 10, step: 1200 }.to_string();
    assert!(DOC.contains(&example), "docs/protocol.md: the heartbeat example is not `{example}`");
}
