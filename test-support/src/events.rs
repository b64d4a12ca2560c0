//! Events as workers write them, for tests that feed a store, a watcher or an exporter.

use protocol::{Event, EventBody};

/// Event `seq` of run `r`.
pub fn at(seq: u64, body: EventBody) -> Event {
    Event { run: "r".into(), seq, body }
}

/// An accuracy-matrix entry: accuracy `acc` on task `on` after task `after` (`None`: before
/// training), loss `1 − acc`, 10 examples.
pub fn eval(after: Option<usize>, on: usize, acc: f64) -> EventBody {
    EventBody::Eval {
        after_task: after,
        on_task: on,
        examples: 10,
        loss: 1.0 - acc,
        accuracy: Some(acc),
        variant: None,
    }
}
