//! Writing Parquet that the readers on clusters open: pyarrow 12 and 14, pandas 2.0 and 2.1.
//!
//! polars 0.55 writes its strings as Arrow *view* types and records that in the file's
//! `ARROW:schema` metadata; `ParquetWriter` has no switch for it (it converts at
//! `CompatLevel::newest()`), and pyarrow before 15 refuses such a file
//! (`ArrowInvalid: Unrecognized type: 24`). The column data itself is plain Parquet
//! (`BYTE_ARRAY` with the `String` annotation) either way, so here the Arrow schema stored
//! beside it is replaced by one without view or large types (`Utf8`, `Binary`), which every
//! Arrow reader since 1.0 knows; polars keeps a caller's `ARROW:schema` instead of its own.
//!
//! That schema also carries the `pandas` metadata (pyarrow takes a file's schema metadata from
//! `ARROW:schema` when it is there): it says which integer columns hold nulls, so
//! `pd.read_parquet` gives them pandas' nullable `Int64` instead of turning them into floats
//! (`after_task` stays an integer).

use std::io::Write;

use base64::Engine;
use polars::io::parquet::write::KeyValueMetadata;
use polars::prelude::{
    ArrowDataType, ArrowSchema, CompatLevel, DataFrame, DataType, ParquetCompression, ParquetWriter,
    PolarsResult,
};
use polars_arrow::datatypes::Metadata;
use polars_arrow::io::ipc::write::{default_ipc_fields, schema_to_bytes};

/// The file metadata key Arrow readers take the Arrow schema from.
const ARROW_SCHEMA: &str = "ARROW:schema";

/// Writes `df` to `out` as Parquet (Snappy-compressed, which every reader decodes).
pub(crate) fn write(df: &mut DataFrame, out: &mut dyn Write) -> PolarsResult<()> {
    let schema: ArrowSchema = df
        .columns()
        .iter()
        .map(|column| {
            let mut arrow = column.dtype().to_arrow_field(column.name().clone(), CompatLevel::oldest());
            arrow.dtype = plain(arrow.dtype);
            (arrow.name.clone(), arrow)
        })
        .collect();
    let pandas = pandas_metadata(df);
    let mut custom = Metadata::new();
    custom.insert("pandas".into(), pandas.as_str().into());
    let metadata = vec![(ARROW_SCHEMA.to_string(), encode(&schema, &custom)), ("pandas".to_string(), pandas)];
    ParquetWriter::new(out)
        .with_compression(ParquetCompression::Snappy)
        .with_key_value_metadata(Some(KeyValueMetadata::from_static(metadata)))
        .finish(df)?;
    Ok(())
}

/// `schema` as the `ARROW:schema` value: the IPC schema message in the legacy framing Arrow
/// uses there (0xFFFFFFFF, the length, the message), base64-encoded.
fn encode(schema: &ArrowSchema, custom: &Metadata) -> String {
    let message = schema_to_bytes(schema, &default_ipc_fields(schema.iter_values()), Some(custom));
    let mut framed = Vec::with_capacity(message.len() + 8);
    framed.extend_from_slice(&[0xFF; 4]);
    framed.extend_from_slice(&(message.len() as u32).to_le_bytes());
    framed.extend_from_slice(&message);
    base64::engine::general_purpose::STANDARD.encode(framed)
}

/// `dtype` without the large and view variants older readers lack.
fn plain(dtype: ArrowDataType) -> ArrowDataType {
    match dtype {
        ArrowDataType::LargeUtf8 | ArrowDataType::Utf8View => ArrowDataType::Utf8,
        ArrowDataType::LargeBinary | ArrowDataType::BinaryView => ArrowDataType::Binary,
        other => other,
    }
}

/// The `pandas` metadata pyarrow's `to_pandas` reads: no index, and per column the pandas
/// dtype, `Int64` (nullable) for integer columns with nulls.
fn pandas_metadata(df: &DataFrame) -> String {
    let columns: Vec<serde_json::Value> = df
        .columns()
        .iter()
        .map(|c| {
            let (pandas_type, numpy_type) = match c.dtype() {
                DataType::Int64 if c.null_count() > 0 => ("int64", "Int64"),
                DataType::Int64 => ("int64", "int64"),
                DataType::Float64 => ("float64", "float64"),
                DataType::Boolean if c.null_count() > 0 => ("bool", "boolean"),
                DataType::Boolean => ("bool", "bool"),
                _ => ("unicode", "object"),
            };
            serde_json::json!({
                "name": c.name().as_str(), "field_name": c.name().as_str(),
                "pandas_type": pandas_type, "numpy_type": numpy_type, "metadata": null,
            })
        })
        .collect();
    serde_json::json!({
        "index_columns": [], "column_indexes": [], "columns": columns,
        "creator": {"library": "clorch", "version": env!("CARGO_PKG_VERSION")},
        "pandas_version": "2.0.3",
    })
    .to_string()
}
