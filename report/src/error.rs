//! Errors of building and writing reports.

use polars::prelude::PolarsError;

use super::filter::UnknownFilterKey;
use results::SourceError;

/// Everything that can go wrong when building or writing a report.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// Reading the results failed.
    #[error(transparent)]
    Source(#[from] SourceError),

    /// A filter names a key no run has.
    #[error(transparent)]
    UnknownFilterKey(#[from] UnknownFilterKey),
    /// polars could not build or write a table.
    #[error("the {table} table could not be {action}: {source}")]
    Table {
        /// Which table (`groups`, `runs`, `per-task`).
        table: &'static str,
        /// `built` or `written as <format>`.
        action: String,
        /// polars' error.
        #[source]
        source: PolarsError,
    },
    /// Drawing a figure failed.
    #[error(transparent)]
    Plot(#[from] super::plot::PlotError),
    /// Writing the rendered table failed.
    #[error("writing the report failed: {0}")]
    Io(#[from] std::io::Error),
    /// An export's output folder cannot be written (the message names it and why).
    #[error("{0}")]
    Output(String),
}
