//! The look shared by every figure: the embedded font, text sizes, the colour palette for
//! methods, the sequential colour scale for tasks and accuracies, and band transparency.
//!
//! The font is DejaVu Sans (`report/assets/DejaVuSans.ttf`, license beside it), compiled
//! into the binary and registered with plotters' `ab_glyph` text engine, so figures render the
//! same on a headless CI machine with no fonts installed as on a desktop. SVG files name the
//! family `sans-serif` and leave the glyphs to the viewer.

use std::sync::OnceLock;

use plotters::style::{register_font, FontStyle, RGBColor, TextStyle, BLACK, WHITE};

use super::error::PlotError;

/// The embedded font's bytes.
static DEJAVU_SANS: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");

/// The font family every text style names.
pub(super) const FAMILY: &str = "sans-serif";

/// Registers the embedded font once per process (for every style plotters may ask for). Call
/// before drawing; later calls return the first outcome.
pub(super) fn ensure_fonts() -> Result<(), PlotError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        [FontStyle::Normal, FontStyle::Bold, FontStyle::Italic, FontStyle::Oblique]
            .into_iter()
            .all(|style| register_font(FAMILY, style, DEJAVU_SANS).is_ok())
    });
    if ok {
        Ok(())
    } else {
        Err(PlotError::Font)
    }
}

/// Font size of figure titles, in pixels (smaller for titles too long for the figure).
pub(super) const TITLE_SIZE: u32 = 20;

/// Panel titles inside a figure with several panels.
pub(super) fn panel_title() -> TextStyle<'static> {
    (FAMILY, 16).into()
}

/// Tick labels and legend entries.
pub(super) fn label() -> TextStyle<'static> {
    (FAMILY, 13).into()
}

/// Axis descriptions.
pub(super) fn axis() -> TextStyle<'static> {
    (FAMILY, 14).into()
}

/// Small text: cell values of the accuracy matrix, notes.
pub(super) fn small(size: u32) -> TextStyle<'static> {
    (FAMILY, size).into()
}

/// Opacity of a confidence band over its line's colour.
pub(super) const BAND_OPACITY: f64 = 0.18;

/// Colours of methods (groups), in order: the Okabe–Ito palette, which stays distinguishable
/// for the common colour-vision deficiencies, with its black moved last. After eight series
/// the colours repeat with another line pattern ([`series_style`]).
const PALETTE: [RGBColor; 8] = [
    RGBColor(0, 114, 178),   // blue
    RGBColor(213, 94, 0),    // vermillion
    RGBColor(0, 158, 115),   // bluish green
    RGBColor(204, 121, 167), // reddish purple
    RGBColor(230, 159, 0),   // orange
    RGBColor(86, 180, 233),  // sky blue
    RGBColor(240, 228, 66),  // yellow
    RGBColor(0, 0, 0),       // black
];

/// How a line is stroked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Dash {
    /// A continuous line.
    Solid,
    /// Long dashes.
    Dashed,
    /// Dots.
    Dotted,
}

impl Dash {
    /// The patterns in the order series use them.
    pub(super) const ALL: [Dash; 3] = [Dash::Solid, Dash::Dashed, Dash::Dotted];

    /// Length of a dash and of the gap after it, in pixels; `None` for a solid line.
    pub(super) fn pattern(self) -> Option<(u32, u32)> {
        match self {
            Dash::Solid => None,
            Dash::Dashed => Some((10, 5)),
            Dash::Dotted => Some((2, 4)),
        }
    }
}

/// A series' look: colour and line pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct SeriesStyle {
    /// Line, marker and band colour.
    pub colour: RGBColor,
    /// Line pattern.
    pub dash: Dash,
}

impl SeriesStyle {
    /// A solid line in `colour` (task lines, coloured along viridis).
    pub(super) fn solid(colour: RGBColor) -> SeriesStyle {
        SeriesStyle { colour, dash: Dash::Solid }
    }
}

/// How many series of a figure have a look of their own: colours × line patterns (24). An
/// 18-configuration sweep no longer draws three groups in one blue.
pub(super) const DISTINCT_SERIES: usize = PALETTE.len() * Dash::ALL.len();

/// The look of the `i`-th method (group) of a figure: the palette's colours solid, then
/// dashed, then dotted; only beyond [`DISTINCT_SERIES`] does a look repeat.
pub(super) fn series_style(i: usize) -> SeriesStyle {
    let i = i % DISTINCT_SERIES;
    SeriesStyle { colour: PALETTE[i % PALETTE.len()], dash: Dash::ALL[i / PALETTE.len()] }
}

/// Anchors of the viridis colour map (van der Walt & Smith), at 0, 1/8, …, 1.
const VIRIDIS: [(u8, u8, u8); 9] = [
    (68, 1, 84),
    (71, 44, 122),
    (59, 81, 139),
    (44, 113, 142),
    (33, 144, 141),
    (39, 173, 129),
    (92, 200, 99),
    (170, 220, 50),
    (253, 231, 37),
];

/// The viridis colour of `t` ∈ \[0, 1\] (clamped), linearly interpolated between anchors:
/// perceptually ordered, so a heat map's colours read as values and tasks in order read as a
/// progression.
pub(super) fn viridis(t: f64) -> RGBColor {
    let t = if t.is_finite() { t.clamp(0.0, 1.0) } else { 0.0 };
    let scaled = t * (VIRIDIS.len() - 1) as f64;
    let i = (scaled.floor() as usize).min(VIRIDIS.len() - 2);
    let f = scaled - i as f64;
    let (a, b) = (VIRIDIS[i], VIRIDIS[i + 1]);
    let mix = |x: u8, y: u8| (x as f64 + (y as f64 - x as f64) * f).round() as u8;
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// Black or white, whichever reads better on `background` (by its relative luminance).
pub(super) fn text_on(background: RGBColor) -> &'static RGBColor {
    let RGBColor(r, g, b) = background;
    let luminance = 0.2126 * r as f64 + 0.7152 * g as f64 + 0.0722 * b as f64;
    if luminance > 140.0 {
        &BLACK
    } else {
        &WHITE
    }
}

/// Fill of matrix cells that were not measured.
pub(super) const MISSING: RGBColor = RGBColor(225, 225, 225);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn viridis_runs_from_purple_to_yellow_and_clamps() {
        assert_eq!(viridis(0.0), RGBColor(68, 1, 84));
        assert_eq!(viridis(1.0), RGBColor(253, 231, 37));
        assert_eq!(viridis(2.0), viridis(1.0));
        assert_eq!(viridis(f64::NAN), viridis(0.0));
        assert_eq!(viridis(0.5), RGBColor(33, 144, 141));
        assert_eq!(*text_on(viridis(0.0)), WHITE);
        assert_eq!(*text_on(viridis(1.0)), BLACK);
    }

    #[test]
    fn twenty_four_series_each_have_their_own_look() {
        let looks: Vec<SeriesStyle> = (0..DISTINCT_SERIES).map(series_style).collect();
        for (i, a) in looks.iter().enumerate() {
            assert!(looks[i + 1..].iter().all(|b| b != a), "series {i} repeats");
        }
        const { assert!(DISTINCT_SERIES >= 20) };
        assert_eq!(series_style(0).dash, Dash::Solid);
        assert_eq!(series_style(8), SeriesStyle { colour: series_style(0).colour, dash: Dash::Dashed });
    }

    #[test]
    fn the_embedded_font_registers() {
        ensure_fonts().unwrap();
        ensure_fonts().unwrap();
    }
}
