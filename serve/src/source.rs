//! A watched folder as a report source, so the dashboard's comparison table is computed by
//! the very code behind `clorch report` and shows the same numbers.

use std::path::Path;

use results::{EventVisitor, ExperimentMeta, RunRecord, RunSource, SourceError};

use crate::watch::Watched;

impl RunSource for Watched {
    fn results_dir(&self) -> Option<&Path> {
        Some(&self.dir)
    }

    fn experiment(&self) -> Result<Option<ExperimentMeta>, SourceError> {
        Ok(self.meta.clone())
    }

    fn runs(&self) -> Result<Vec<RunRecord>, SourceError> {
        let mut runs: Vec<RunRecord> = self.runs.values().map(|r| r.record.clone()).collect();
        runs.sort_by(|a, b| (a.order, &a.id).cmp(&(b.order, &b.id)));
        Ok(runs)
    }

    fn visit_events(&self, run: &str, visit: &mut EventVisitor<'_>) -> Result<(), SourceError> {
        if let Some(r) = self.runs.get(run) {
            for (seq, bytes) in r.events.iter().enumerate() {
                visit(seq as u64, bytes)?;
            }
        }
        Ok(())
    }
}
