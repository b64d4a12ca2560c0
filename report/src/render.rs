//! Choosing a table and a format, and writing it (ripgrep's habit: concrete printers picked
//! by an enum at the top).

use std::fmt;
use std::io::Write;
use std::str::FromStr;

use polars::prelude::{AnyValue, CsvWriter, DataFrame, SerWriter};

use super::error::ReportError;
use super::frame;
use super::parquet;
use super::report::Report;
use super::text;

/// An output format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    /// A padded Markdown pipe table with a legend; the default on a terminal.
    #[default]
    Markdown,
    /// Comma-separated values with a header row; nulls are empty fields.
    Csv,
    /// Apache Parquet, typed (Float64 metrics, Int64 integers, string labels), readable by
    /// pyarrow 12 and later.
    Parquet,
    /// A JSON array of row objects, keys in column order; nulls are `null`.
    Json,
    /// A LaTeX booktabs `tabular`, `$0.912 \pm 0.004$`, best values in bold.
    Latex,
}

impl Format {
    /// Every format.
    pub const ALL: [Format; 5] =
        [Format::Markdown, Format::Csv, Format::Parquet, Format::Json, Format::Latex];

    /// The format's name as accepted by [`Format::from_str`].
    pub fn name(self) -> &'static str {
        match self {
            Format::Markdown => "markdown",
            Format::Csv => "csv",
            Format::Parquet => "parquet",
            Format::Json => "json",
            Format::Latex => "latex",
        }
    }

    /// The usual file extension.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Markdown => "md",
            Format::Csv => "csv",
            Format::Parquet => "parquet",
            Format::Json => "json",
            Format::Latex => "tex",
        }
    }

    /// Whether the output is binary (not for a terminal).
    pub fn is_binary(self) -> bool {
        self == Format::Parquet
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A format name that is not one of [`Format::ALL`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown format `{0}`; expected one of: markdown (md), csv, parquet, json, latex (tex)")]
pub struct UnknownFormat(pub String);

impl FromStr for Format {
    type Err = UnknownFormat;

    /// Parses a format name or its extension, ignoring case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase();
        Format::ALL
            .into_iter()
            .find(|f| f.name() == wanted || f.extension() == wanted)
            .ok_or_else(|| UnknownFormat(s.to_string()))
    }
}

/// Which table of a report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TableKind {
    /// One row per (stream, method, grid point): statistics over seeds.
    #[default]
    Groups,
    /// One row per run.
    Runs,
    /// One row per accuracy-matrix entry measured (long format).
    PerTask,
    /// One row per measured value over the stream (long format): online bins, accuracy-matrix
    /// entries, plasticity diagnostics, methods' numbers. Needs a report built with
    /// [`ReportOptions::series`](crate::ReportOptions::series).
    Series,
}

impl TableKind {
    fn name(self) -> &'static str {
        match self {
            TableKind::Groups => "groups",
            TableKind::Runs => "runs",
            TableKind::PerTask => "per-task",
            TableKind::Series => "series",
        }
    }
}

impl Report {
    /// `table` as a DataFrame (column names in [`frame::columns`]).
    pub fn frame(&self, table: TableKind) -> Result<DataFrame, ReportError> {
        let built = match table {
            TableKind::Groups => frame::groups_frame(self),
            TableKind::Runs => frame::runs_frame(self),
            TableKind::PerTask => frame::per_task_frame(self),
            TableKind::Series => frame::series_frame(self),
        };
        built.map_err(|source| ReportError::Table { table: table.name(), action: "built".into(), source })
    }

    /// Writes `table` in `format` to `out`.
    pub fn write(&self, table: TableKind, format: Format, out: &mut dyn Write) -> Result<(), ReportError> {
        let text_table = || match table {
            TableKind::Groups => text::groups_table(self),
            TableKind::Runs => text::runs_table(self),
            TableKind::PerTask => text::per_task_table(self),
            TableKind::Series => text::series_table(self),
        };
        let failed = |source| ReportError::Table {
            table: table.name(),
            action: format!("written as {format}"),
            source,
        };
        match format {
            Format::Markdown => text::write_markdown(&text_table(), self.precision(), out)?,
            Format::Latex => text::write_latex(&text_table(), self.precision(), out)?,
            Format::Csv => {
                let mut df = self.frame(table)?;
                CsvWriter::new(out).include_header(true).finish(&mut df).map_err(failed)?;
            }
            Format::Parquet => {
                let mut df = self.frame(table)?;
                parquet::write(&mut df, out).map_err(failed)?;
            }
            Format::Json => write_json(&self.frame(table)?, out).map_err(failed)?,
        }
        Ok(())
    }
}

/// Writes `df` as a JSON array of objects, one per row and line, keys in column order.
/// (polars' own JSON writer needs a feature the workspace leaves off; the table is small.)
fn write_json(df: &DataFrame, out: &mut dyn Write) -> polars::prelude::PolarsResult<()> {
    let names: Vec<String> = df
        .get_column_names()
        .iter()
        .map(|n| serde_json::to_string(n.as_str()).expect("names serialise"))
        .collect();
    let columns = df.columns();
    writeln!(out, "[")?;
    for row in 0..df.height() {
        write!(out, "{{")?;
        for (i, column) in columns.iter().enumerate() {
            if i > 0 {
                write!(out, ",")?;
            }
            let value = match column.get(row)? {
                AnyValue::Null => serde_json::Value::Null,
                AnyValue::Boolean(b) => b.into(),
                AnyValue::String(s) => s.into(),
                AnyValue::StringOwned(s) => s.as_str().into(),
                AnyValue::UInt32(v) => v.into(),
                AnyValue::UInt64(v) => v.into(),
                AnyValue::Int64(v) => v.into(),
                AnyValue::Float64(v) => {
                    serde_json::Number::from_f64(v).map_or(serde_json::Value::Null, Into::into)
                }
                other => other.to_string().into(),
            };
            write!(out, "{}:{}", names[i], value)?;
        }
        let sep = if row + 1 < df.height() { "," } else { "" };
        writeln!(out, "}}{sep}")?;
    }
    writeln!(out, "]")?;
    Ok(())
}
