//! One event as one line, sealed with a checksum.
//!
//! `events.jsonl` is the durable record a run's numbers are rebuilt and resumed from, so damage
//! to it must never pass unseen: a changed digit would otherwise move a run's BWT at the next
//! `store rebuild`, silently. Every line therefore ends with a member `"crc"` holding the
//! CRC-32 (IEEE, as zlib's `crc32`) of the line's own bytes *without* that member, as eight
//! lowercase hex digits:
//!
//! ```text
//! {"run":"6247c9afbbe8","seq":0,"event":"started",…,"problem":"regression","crc":"0f1e2d3c"}
//! ```
//!
//! To check a line, cut the final `,"crc":"xxxxxxxx"}` (18 bytes), put back the `}`, and
//! compare the CRC-32 of those bytes. The member is always the last one, so a writer in any
//! language seals a line by serialising the event, dropping its closing brace and appending
//! the member; no canonical re-serialisation is needed on either side. CRC-32 rather than a
//! cryptographic hash: it guards against accidents (torn writes, bit flips, an editor), every
//! language's standard library has it, and a line costs nanoseconds.
//!
//! The same sealed line goes to standard output, where the orchestrator checks it too.

use crate::Event;

/// The checksum member's name.
pub const CHECKSUM_FIELD: &str = "crc";

/// `,"crc":"` — what precedes the eight hex digits.
const OPENING: &[u8] = b",\"crc\":\"";
/// Bytes the member adds to a line: `,"crc":"` + 8 hex digits + `"` (the final `}` is the
/// object's own).
const MEMBER_LEN: usize = OPENING.len() + 8 + 1;

/// Why a line is not a sound event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LineError {
    /// The line does not end with the `"crc"` member: cut short, or written without one.
    NoChecksum,
    /// The checksum does not match the bytes: the line was changed after it was written.
    Mismatch {
        /// What the line says.
        stated: u32,
        /// What its bytes give.
        computed: u32,
    },
    /// The checksum matches but the line is not a valid event (a worker bug, not damage).
    Invalid {
        /// serde_json's message (field and column).
        reason: String,
    },
}

impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LineError::NoChecksum => {
                write!(
                    f,
                    "the line does not end with its checksum (`\"crc\":\"<8 hex digits>\"`); cut short?"
                )
            }
            LineError::Mismatch { stated, computed } => write!(
                f,
                "checksum mismatch: the line states crc {stated:08x} but its bytes give {computed:08x} \
                 (changed after it was written)"
            ),
            LineError::Invalid { reason } => write!(f, "not a valid event: {reason}"),
        }
    }
}

impl std::error::Error for LineError {}

impl LineError {
    /// A few words for tables: `checksum mismatch`, `no checksum`, `invalid event`.
    pub fn summary(&self) -> &'static str {
        match self {
            LineError::NoChecksum => "no checksum",
            LineError::Mismatch { .. } => "checksum mismatch",
            LineError::Invalid { .. } => "invalid event",
        }
    }
}

/// Appends `event` to `out` as one sealed line, `\n` included.
pub fn encode_into(event: &Event, out: &mut Vec<u8>) {
    let start = out.len();
    serde_json::to_writer(&mut *out, event).expect("an event always serialises");
    let crc = crc32fast::hash(&out[start..]);
    out.pop(); // the closing brace; the member goes before it
    out.extend_from_slice(OPENING);
    out.extend_from_slice(format!("{crc:08x}").as_bytes());
    out.extend_from_slice(b"\"}\n");
}

/// `event` as one sealed line, `\n` included.
pub fn encode(event: &Event) -> String {
    let mut out = Vec::with_capacity(256);
    encode_into(event, &mut out);
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

/// Checks a line's checksum and returns the bytes it covers (the line without the member,
/// closing brace put back). A trailing `\n` or `\r\n` is ignored.
pub fn verify(line: &[u8]) -> Result<Vec<u8>, LineError> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let body = line.strip_suffix(b"}").ok_or(LineError::NoChecksum)?;
    if body.len() < MEMBER_LEN + 1 {
        return Err(LineError::NoChecksum);
    }
    let (covered, member) = body.split_at(body.len() - MEMBER_LEN);
    let hex = member
        .strip_prefix(OPENING)
        .and_then(|rest| rest.strip_suffix(b"\""))
        .filter(|hex| hex.iter().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b)))
        .ok_or(LineError::NoChecksum)?;
    let stated = std::str::from_utf8(hex)
        .ok()
        .and_then(|h| u32::from_str_radix(h, 16).ok())
        .ok_or(LineError::NoChecksum)?;
    let mut original = Vec::with_capacity(covered.len() + 1);
    original.extend_from_slice(covered);
    original.push(b'}');
    let computed = crc32fast::hash(&original);
    if stated != computed {
        return Err(LineError::Mismatch { stated, computed });
    }
    Ok(original)
}

/// Reads one sealed line: checks its checksum, then parses the event.
pub fn decode(line: &[u8]) -> Result<Event, LineError> {
    let original = verify(line)?;
    serde_json::from_slice(&original).map_err(|e| LineError::Invalid { reason: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EventBody;

    fn event() -> Event {
        Event {
            run: "abc".into(),
            seq: 7,
            body: EventBody::Online { task: 1, bin: 2, examples: 100, loss: 0.25, accuracy: Some(0.5) },
        }
    }

    #[test]
    fn a_sealed_line_is_the_plain_json_with_a_final_crc_member() {
        let line = encode(&event());
        let plain = serde_json::to_string(&event()).unwrap();
        let crc = crc32fast::hash(plain.as_bytes());
        assert_eq!(line, format!("{},\"crc\":\"{crc:08x}\"}}\n", &plain[..plain.len() - 1]));
        assert_eq!(decode(line.as_bytes()).unwrap(), event());
        // Still one JSON object: tools that do not check the seal read it as before.
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["crc"], format!("{crc:08x}"));
    }

    #[test]
    fn zlib_crc32_agrees() {
        // The value Python's zlib.crc32(b"123456789") gives: the check value of CRC-32/IEEE.
        assert_eq!(crc32fast::hash(b"123456789"), 0xcbf4_3926);
    }

    #[test]
    fn any_changed_byte_is_found() {
        let line = encode(&event()).into_bytes();
        for i in 0..line.len() - 1 {
            for flip in [1u8, 0x20, 0x80] {
                let mut damaged = line.clone();
                damaged[i] ^= flip;
                assert!(decode(&damaged).is_err(), "flipping byte {i} by {flip:#x} went unseen");
            }
        }
    }

    #[test]
    fn a_changed_digit_is_a_mismatch_and_a_cut_line_has_no_checksum() {
        let line = encode(&event());
        let changed = line.replace("0.25", "0.35");
        assert!(matches!(decode(changed.as_bytes()), Err(LineError::Mismatch { .. })));
        for cut in 1..line.len() - 1 {
            let err = decode(&line.as_bytes()[..cut]).unwrap_err();
            assert!(matches!(err, LineError::NoChecksum | LineError::Mismatch { .. }), "cut at {cut}: {err}");
        }
        let unsealed = serde_json::to_string(&event()).unwrap();
        assert_eq!(decode(unsealed.as_bytes()), Err(LineError::NoChecksum));
        assert!(LineError::NoChecksum.to_string().contains("crc"));
    }

    #[test]
    fn a_sealed_line_that_is_no_event_says_so() {
        let mut out = br#"{"run":"abc","seq":1,"event":"nonsense""#.to_vec();
        let crc = crc32fast::hash(&[out.as_slice(), b"}"].concat());
        out.extend_from_slice(format!(",\"crc\":\"{crc:08x}\"}}").as_bytes());
        let err = decode(&out).unwrap_err();
        assert!(matches!(&err, LineError::Invalid { reason } if reason.contains("nonsense")), "{err}");
    }
}
