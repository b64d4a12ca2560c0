//! Errors of drawing and writing figures.

use std::path::PathBuf;

/// Everything that can go wrong when drawing or writing a figure.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// The embedded font could not be loaded (a damaged build).
    #[error("the embedded font (DejaVu Sans) could not be loaded; the clorch binary is damaged")]
    Font,
    /// plotters failed while drawing.
    #[error("drawing the figure `{figure}` failed: {message}")]
    Draw {
        /// The figure's file stem.
        figure: String,
        /// plotters' message.
        message: String,
    },
    /// Encoding the PNG failed.
    #[error("encoding the figure `{figure}` as PNG failed: {message}")]
    Encode {
        /// The figure's file stem.
        figure: String,
        /// The encoder's message.
        message: String,
    },
    /// Creating the output folder or writing a file failed.
    #[error("{}: {source}", path.display())]
    Write {
        /// The folder or file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}
