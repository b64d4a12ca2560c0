//! The store as a report reads it: [`results::RunSource`] over the sled trees.

use std::path::Path;

use results::{EventVisitor, ExperimentMeta, RunRecord, RunSource, SourceError};

use super::Store;

impl RunSource for Store {
    fn results_dir(&self) -> Option<&Path> {
        Store::results_dir(self)
    }

    fn experiment(&self) -> Result<Option<ExperimentMeta>, SourceError> {
        Store::experiment(self).map_err(SourceError::read)
    }

    fn runs(&self) -> Result<Vec<RunRecord>, SourceError> {
        Store::runs(self).map_err(SourceError::read)
    }

    fn visit_events(&self, run: &str, visit: &mut EventVisitor<'_>) -> Result<(), SourceError> {
        for stored in self.event_bytes(run) {
            let stored = stored.map_err(SourceError::read)?;
            visit(stored.seq(), &stored)?;
        }
        Ok(())
    }
}
