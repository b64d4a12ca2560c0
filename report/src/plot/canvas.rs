//! The two outputs a figure is drawn onto: an SVG document (a string, for files and for
//! inlining into the HTML report) and a PNG image (drawn into an RGB buffer, encoded with the
//! `png` crate).

use std::fmt;
use std::str::FromStr;

use plotters::coord::Shift;
use plotters::prelude::{
    BitMapBackend, DrawingArea, DrawingAreaErrorKind, DrawingBackend, IntoDrawingArea, SVGBackend,
};
use plotters::style::WHITE;

use super::error::PlotError;
use super::style;

/// What drawing a figure onto a backend returns.
pub(super) type DrawResult<DB> = Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

/// A figure file format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PlotFormat {
    /// PNG, 8-bit RGB: for slides, READMEs and chat.
    #[default]
    Png,
    /// SVG: scalable, for papers and the HTML report.
    Svg,
}

impl PlotFormat {
    /// The format's name and file extension.
    pub fn extension(self) -> &'static str {
        match self {
            PlotFormat::Png => "png",
            PlotFormat::Svg => "svg",
        }
    }
}

impl fmt::Display for PlotFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.extension())
    }
}

/// A figure format name that is neither `png` nor `svg`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown figure format `{0}`; expected png or svg")]
pub struct UnknownPlotFormat(pub String);

impl FromStr for PlotFormat {
    type Err = UnknownPlotFormat;

    /// Parses `png` or `svg`, ignoring case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "png" => Ok(PlotFormat::Png),
            "svg" => Ok(PlotFormat::Svg),
            _ => Err(UnknownPlotFormat(s.to_string())),
        }
    }
}

fn draw_error(figure: &str, e: impl fmt::Display) -> PlotError {
    PlotError::Draw { figure: figure.to_string(), message: e.to_string() }
}

/// Draws onto a white SVG canvas of `size` pixels and returns the document.
pub(super) fn svg(
    figure: &str,
    size: (u32, u32),
    draw: impl for<'a, 'b> FnOnce(&'a DrawingArea<SVGBackend<'b>, Shift>) -> DrawResult<SVGBackend<'b>>,
) -> Result<String, PlotError> {
    style::ensure_fonts()?;
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, size).into_drawing_area();
        root.fill(&WHITE).map_err(|e| draw_error(figure, e))?;
        draw(&root).map_err(|e| draw_error(figure, e))?;
        root.present().map_err(|e| draw_error(figure, e))?;
    }
    Ok(out)
}

/// Draws onto a white RGB canvas of `size` pixels and returns it encoded as PNG.
pub(super) fn png(
    figure: &str,
    size: (u32, u32),
    draw: impl for<'a, 'b> FnOnce(&'a DrawingArea<BitMapBackend<'b>, Shift>) -> DrawResult<BitMapBackend<'b>>,
) -> Result<Vec<u8>, PlotError> {
    style::ensure_fonts()?;
    let (width, height) = size;
    let mut pixels = vec![0u8; width as usize * height as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, size).into_drawing_area();
        root.fill(&WHITE).map_err(|e| draw_error(figure, e))?;
        draw(&root).map_err(|e| draw_error(figure, e))?;
        root.present().map_err(|e| draw_error(figure, e))?;
    }
    let encode_error =
        |e: png::EncodingError| PlotError::Encode { figure: figure.to_string(), message: e.to_string() };
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(png::Compression::Balanced);
    let mut writer = encoder.write_header().map_err(encode_error)?;
    writer.write_image_data(&pixels).map_err(encode_error)?;
    writer.finish().map_err(encode_error)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse_by_name() {
        assert_eq!("PNG".parse::<PlotFormat>().unwrap(), PlotFormat::Png);
        assert_eq!("svg".parse::<PlotFormat>().unwrap(), PlotFormat::Svg);
        let err = "pdf".parse::<PlotFormat>().unwrap_err().to_string();
        assert_eq!(err, "unknown figure format `pdf`; expected png or svg");
    }
}
