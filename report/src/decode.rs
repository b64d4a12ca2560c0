//! Decoding stored events for a report, fast.
//!
//! Nearly every stored event is an `eval` (an accuracy-matrix entry) or an `online` bin, and
//! a report reads all of them: 10^6 rows for 200 runs of a 70-task stream. Decoding each into
//! [`Event`] goes through serde's buffering of `#[serde(flatten)]` and the internally tagged
//! body (every key and value copied into an intermediate tree, the run id allocated): about
//! 1.1 s of CPU for those 10^6 events with optimised code, more than the rest of the report.
//! Here those two kinds are read from the stored bytes into a flat struct of the few fields a
//! report needs, without allocating (about 0.6 s, summarising included); every other kind,
//! and any event the flat view cannot read, is decoded as an [`Event`] as before, so malformed
//! events fail with serde's message exactly as through
//! `Store::events` (the runner's store). Measured by `benches/report.rs`.
//!
//! The field names are those of the wire format, `protocol::EventBody::{Eval,
//! Online}`; the tests check both paths agree on every kind of event.

use std::borrow::Cow;

use protocol::Event;
use serde::Deserialize;

/// The fields of `eval` and `online` events a report reads; other keys (`run`, `seq`, the
/// fields of other kinds) are skipped. No field of another kind shares a name with these and
/// a different type.
#[derive(Deserialize)]
struct Fields<'a> {
    #[serde(borrow)]
    event: Cow<'a, str>,
    after_task: Option<usize>,
    on_task: Option<usize>,
    task: Option<usize>,
    bin: Option<usize>,
    examples: Option<u64>,
    loss: Option<f64>,
    accuracy: Option<f64>,
    #[serde(borrow)]
    variant: Option<Cow<'a, str>>,
}

/// A stored event as the report needs it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Decoded {
    /// An `eval` event: R\[after_task\]\[on_task\] (b_j without `after_task`).
    Eval {
        /// i, or `None` for the untrained network.
        after_task: Option<usize>,
        /// j.
        on_task: usize,
        /// Mean loss.
        loss: f64,
        /// Accuracy, absent for regression.
        accuracy: Option<f64>,
    },
    /// An `online` bin.
    Online {
        /// Task of the bin.
        task: usize,
        /// Bin index within the task.
        bin: usize,
        /// Examples in the bin.
        examples: u64,
        /// Mean loss.
        loss: f64,
        /// Accuracy, absent for regression.
        accuracy: Option<f64>,
    },
    /// Any other event, fully decoded.
    Other(Box<Event>),
}

/// Decodes one stored event (its JSON bytes).
pub(crate) fn decode(bytes: &[u8]) -> Result<Decoded, serde_json::Error> {
    if let Ok(f) = serde_json::from_slice::<Fields<'_>>(bytes) {
        match (f.event.as_ref(), f.on_task, f.task, f.bin, f.examples, f.loss) {
            // Rows of an earlier version or a composition (weight fields) take the full path.
            ("eval", Some(on_task), _, _, Some(_), Some(loss)) if f.variant.is_none() => {
                return Ok(Decoded::Eval { after_task: f.after_task, on_task, loss, accuracy: f.accuracy });
            }
            ("online", _, Some(task), Some(bin), Some(examples), Some(loss)) => {
                return Ok(Decoded::Online { task, bin, examples, loss, accuracy: f.accuracy });
            }
            _ => {}
        }
    }
    serde_json::from_slice::<Event>(bytes).map(|e| Decoded::Other(Box::new(e)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::{EventBody, LayerPlasticity};

    fn bytes(body: EventBody) -> Vec<u8> {
        serde_json::to_vec(&Event { run: "3f9a".into(), seq: 7, body }).unwrap()
    }

    #[test]
    fn eval_and_online_events_take_the_flat_path_with_the_same_values() {
        let eval = EventBody::Eval {
            after_task: Some(2),
            on_task: 1,
            examples: 50,
            loss: 0.25,
            accuracy: Some(0.9),
            variant: None,
        };
        assert_eq!(
            decode(&bytes(eval)).unwrap(),
            Decoded::Eval { after_task: Some(2), on_task: 1, loss: 0.25, accuracy: Some(0.9) }
        );
        let baseline = EventBody::Eval {
            after_task: None,
            on_task: 0,
            examples: 5,
            loss: 2.3,
            accuracy: None,
            variant: None,
        };
        assert_eq!(
            decode(&bytes(baseline)).unwrap(),
            Decoded::Eval { after_task: None, on_task: 0, loss: 2.3, accuracy: None }
        );
        let online = EventBody::Online { task: 3, bin: 4, examples: 10, loss: 0.5, accuracy: Some(0.75) };
        assert_eq!(
            decode(&bytes(online)).unwrap(),
            Decoded::Online { task: 3, bin: 4, examples: 10, loss: 0.5, accuracy: Some(0.75) }
        );
    }

    #[test]
    fn every_other_kind_decodes_in_full() {
        let layer = LayerPlasticity {
            units: 4,
            dead: 0.25,
            dormant: 0.5,
            effective_rank: 3.0,
            stable_rank: 3,
            mean_abs_weight: 0.1,
        };
        let bodies = vec![
            EventBody::Started {
                protocol: 1,
                tasks: 5,
                inputs: 8,
                outputs: 10,
                heads: 1,
                parameters: 100,
                problem: "classification".into(),
            },
            EventBody::TaskStarted { task: 1, head: 0, train_examples: 100 },
            EventBody::Plasticity {
                after_tasks: 1,
                probe_task: 1,
                probe_examples: 100,
                layers: vec![layer],
                mean_abs_weight: 0.1,
            },
            crate::tests::capacity_event(2, &[(3, 1)]),
            EventBody::Checkpoint { tasks_done: 2, step: 40, file: "c".into(), checksum: "00".into() },
            EventBody::Finished { tasks: 5, steps: 10, examples: 200 },
            EventBody::Failed { reason: "diverged: loss is \"NaN\"".into() },
        ];
        for body in bodies {
            let event = Event { run: "3f9a".into(), seq: 7, body };
            let decoded = decode(&serde_json::to_vec(&event).unwrap()).unwrap();
            assert_eq!(decoded, Decoded::Other(Box::new(event)));
        }
    }

    #[test]
    fn malformed_events_fail_as_the_full_decoder_does() {
        for text in [
            r#"{"run":"a","seq":1,"event":"eval","on_task":1}"#,
            r#"{"run":"a","seq":1,"event":"teleport"}"#,
            "{",
        ] {
            let fast = decode(text.as_bytes()).unwrap_err().to_string();
            let full = serde_json::from_str::<Event>(text).unwrap_err().to_string();
            assert_eq!(fast, full, "{text}");
        }
    }
}
