//! Where [`SchedulerEvent`]s go.

use super::events::SchedulerEvent;
use crate::store::StoreError;

/// Why a reporter could not report.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The status file could not be written (the results folder's disk).
    #[error(transparent)]
    StatusFile(#[from] StoreError),
}

/// Receives the scheduler's events. An error stops the scheduler, as a store error does: a
/// results folder that cannot be written to is not one to go on training into.
pub trait Reporter {
    /// Takes one event.
    fn report(&mut self, event: &SchedulerEvent<'_>) -> Result<(), ReportError>;
}

/// Every reporter gets every event, in the order of the list.
impl Reporter for Vec<Box<dyn Reporter + '_>> {
    fn report(&mut self, event: &SchedulerEvent<'_>) -> Result<(), ReportError> {
        self.iter_mut().try_for_each(|r| r.report(event))
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;

    struct Log<'a>(&'a RefCell<Vec<String>>, &'static str);

    impl Reporter for Log<'_> {
        fn report(&mut self, event: &SchedulerEvent<'_>) -> Result<(), ReportError> {
            self.0.borrow_mut().push(format!("{} {event:?}", self.1));
            Ok(())
        }
    }

    #[test]
    fn every_reporter_gets_every_event_in_list_order() {
        let seen = RefCell::new(Vec::new());
        let mut all: Vec<Box<dyn Reporter + '_>> = vec![Box::new(Log(&seen, "a")), Box::new(Log(&seen, "b"))];
        all.report(&SchedulerEvent::Note("x")).unwrap();
        all.report(&SchedulerEvent::KillRequested).unwrap();
        assert_eq!(*seen.borrow(), ["a Note(\"x\")", "b Note(\"x\")", "a KillRequested", "b KillRequested"]);
    }
}
