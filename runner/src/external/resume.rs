//! Where an external worker's next attempt resumes, read from its `resume.json`
//! ([`protocol::resume`]) by the rule the worker applies to itself: the manifest must parse,
//! name a file of the run folder that exists, and every event line it covers must be intact
//! — otherwise the run starts from the beginning.

use std::io::{BufRead, BufReader};
use std::path::Path;

use protocol::resume::ResumeManifest;
use protocol::{files, line, RunSpec};
use results::{CheckpointFallback, RejectedCheckpoint};

use crate::ResumePoint;

/// The resume point of an external worker's run folder.
pub fn resume_point(spec: &RunSpec, run_dir: &Path) -> Result<ResumePoint, String> {
    let path = run_dir.join(files::RESUME);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ResumePoint::default()),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let manifest = match serde_json::from_slice::<ResumeManifest>(&bytes) {
        Ok(m) if m.names_a_plain_file() => m,
        Ok(m) => {
            return Ok(started_over(
                &m.checkpoint,
                "bad name",
                "the manifest names a file outside the run folder",
            ))
        }
        Err(e) => return Ok(started_over(files::RESUME, "unreadable", &format!("{}: {e}", path.display()))),
    };
    if !run_dir.join(&manifest.checkpoint).is_file() {
        return Ok(started_over(&manifest.checkpoint, "missing", "the checkpoint resume.json names is gone"));
    }
    if let Err(damage) = intact_prefix(spec, &run_dir.join(files::EVENTS), manifest.next_seq) {
        return Ok(started_over(&manifest.checkpoint, "events damaged", &damage));
    }
    Ok(ResumePoint { next_seq: manifest.next_seq, fallback: None })
}

fn started_over(file: &str, summary: &str, reason: &str) -> ResumePoint {
    ResumePoint {
        next_seq: 0,
        fallback: Some(CheckpointFallback {
            attempt: 0,
            rejected: vec![RejectedCheckpoint {
                file: file.to_string(),
                summary: summary.to_string(),
                reason: reason.to_string(),
            }],
            resumed_from: None,
        }),
    }
}

/// Checks that lines `0..covered` of `events.jsonl` are sealed events of this run in order.
fn intact_prefix(spec: &RunSpec, events: &Path, covered: u64) -> Result<(), String> {
    if covered == 0 {
        return Ok(());
    }
    let file = std::fs::File::open(events).map_err(|e| format!("{}: {e}", events.display()))?;
    let mut reader = BufReader::new(file);
    let mut buf = Vec::new();
    for seq in 0..covered {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf).map_err(|e| format!("{}: {e}", events.display()))?;
        if n == 0 || buf.last() != Some(&b'\n') {
            return Err(format!(
                "{}: {seq} complete lines, the checkpoint covers {covered}",
                events.display()
            ));
        }
        let event = line::decode(&buf).map_err(|e| format!("{} line {}: {e}", events.display(), seq + 1))?;
        if event.run != spec.id || event.seq != seq {
            return Err(format!(
                "{} line {}: run {} seq {}, expected run {} seq {seq}",
                events.display(),
                seq + 1,
                event.run,
                event.seq,
                spec.id
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::{Event, EventBody};

    fn setup(lines: usize) -> (tempfile::TempDir, RunSpec) {
        let scratch = test_support::scratch("external-resume");
        let spec = test_support::SpecBuilder::synthetic(2).build();
        let mut log = String::new();
        for seq in 0..lines as u64 {
            let event = Event {
                run: spec.id.clone(),
                seq,
                body: EventBody::Failed { reason: format!("line {seq}") },
            };
            log.push_str(&line::encode(&event));
        }
        std::fs::write(scratch.path().join(files::EVENTS), log).unwrap();
        (scratch, spec)
    }

    #[test]
    fn a_valid_manifest_over_intact_lines_is_the_resume_point() {
        let (s, spec) = setup(5);
        assert_eq!(resume_point(&spec, s.path()).unwrap(), ResumePoint::default(), "no manifest: from 0");
        std::fs::write(s.path().join("ck-3.pkl"), b"state").unwrap();
        std::fs::write(s.path().join(files::RESUME), r#"{"next_seq":3,"checkpoint":"ck-3.pkl"}"#).unwrap();
        let point = resume_point(&spec, s.path()).unwrap();
        assert_eq!(point.next_seq, 3, "{:?}", point.fallback);
    }

    #[test]
    fn a_missing_checkpoint_a_bad_manifest_or_damaged_lines_start_over() {
        let (s, spec) = setup(5);
        std::fs::write(s.path().join(files::RESUME), r#"{"next_seq":3,"checkpoint":"gone.pkl"}"#).unwrap();
        let point = resume_point(&spec, s.path()).unwrap();
        assert_eq!((point.next_seq, point.fallback.unwrap().rejected[0].summary.as_str()), (0, "missing"));

        std::fs::write(s.path().join("ck.pkl"), b"state").unwrap();
        std::fs::write(s.path().join(files::RESUME), r#"{"next_seq":9,"checkpoint":"ck.pkl"}"#).unwrap();
        let point = resume_point(&spec, s.path()).unwrap();
        assert_eq!(point.next_seq, 0, "covers more lines than the log has");

        std::fs::write(s.path().join(files::RESUME), r#"{"next_seq":2,"checkpoint":"../spec.json"}"#)
            .unwrap();
        assert_eq!(resume_point(&spec, s.path()).unwrap().next_seq, 0);
        std::fs::write(s.path().join(files::RESUME), "{not json").unwrap();
        assert_eq!(resume_point(&spec, s.path()).unwrap().next_seq, 0);

        let text = std::fs::read_to_string(s.path().join(files::EVENTS)).unwrap();
        std::fs::write(s.path().join(files::EVENTS), text.replacen("line 1", "line 7", 1)).unwrap();
        std::fs::write(s.path().join(files::RESUME), r#"{"next_seq":3,"checkpoint":"ck.pkl"}"#).unwrap();
        let point = resume_point(&spec, s.path()).unwrap();
        assert_eq!(point.next_seq, 0, "a changed line before the resume point");
        assert!(point.fallback.unwrap().rejected[0].reason.contains("line 2"));
    }
}
