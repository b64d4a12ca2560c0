//! The HTML report: one self-contained file a researcher can mail, archive or open offline —
//! the grouped table, the per-run table, every figure as inline SVG, each experiment's recipe
//! text and the clorch versions involved. No external CSS, scripts, fonts or images: the style
//! sheet is inline and SVG text uses the reader's `sans-serif`.

use std::io::Write;

use super::error::ReportError;
use super::plot::{self, Figure};
use super::report::Report;
use super::text::{self, html_escape};

/// The inline style sheet: readable tables, figures scaled to the page width.
const STYLE: &str = "
body { font-family: sans-serif; margin: 2em auto; max-width: 1400px; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #ccc; padding-bottom: 0.2em; }
p.meta { color: #555; margin-top: 0; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { padding: 0.3em 0.7em; border-bottom: 1px solid #ddd; text-align: left; white-space: nowrap; }
th { background: #f2f2f2; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tbody tr:nth-child(even) { background: #fafafa; }
span.incomplete { color: #a33; }
p.legend { color: #555; font-size: 0.85em; }
figure { margin: 1.5em 0; }
figure svg { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9em; }
pre { background: #f6f6f6; padding: 1em; overflow-x: auto; font-size: 0.85em; }
details { margin: 1em 0; }
.scroll { overflow-x: auto; }
";

impl Report {
    /// Writes the HTML report with every figure of [`plot::figures`].
    pub fn write_html(&self, out: &mut dyn Write) -> Result<(), ReportError> {
        self.write_html_with(&plot::figures(self), out)
    }

    /// Writes the HTML report with `figures` (drawn as inline SVG), for callers that chose or
    /// already computed them.
    pub fn write_html_with(&self, figures: &[Figure], out: &mut dyn Write) -> Result<(), ReportError> {
        let names: Vec<&str> = self.experiments().iter().map(|e| e.label.as_str()).collect();
        let subject = if names.is_empty() { "clorch report".to_string() } else { names.join(", ") };
        let version = env!("CARGO_PKG_VERSION");
        writeln!(out, "<!DOCTYPE html>")?;
        writeln!(out, r#"<html lang="en"><head><meta charset="utf-8">"#)?;
        writeln!(out, r#"<meta name="viewport" content="width=device-width, initial-scale=1">"#)?;
        writeln!(out, r#"<meta name="generator" content="clorch {version}">"#)?;
        writeln!(out, "<title>{}</title>", html_escape(&format!("{subject}: clorch report")))?;
        writeln!(out, "<style>{STYLE}</style>")?;
        writeln!(out, "</head><body>")?;
        let heading = if self.is_comparison() { "Comparison" } else { "Experiment" };
        writeln!(out, "<h1>{heading}: {}</h1>", html_escape(&subject))?;
        let finished = self.runs().iter().filter(|r| r.finished()).count();
        writeln!(
            out,
            r#"<p class="meta">{} runs ({finished} finished) in {} groups; report made by clorch {version}.</p>"#,
            self.runs().len(),
            self.groups().len(),
        )?;

        writeln!(out, "<h2>Results</h2>")?;
        writeln!(out, r#"<div class="scroll">"#)?;
        text::write_html(&text::groups_table(self), self.precision(), out)?;
        writeln!(out, "</div>")?;

        if !figures.is_empty() {
            writeln!(out, "<h2>Figures</h2>")?;
            for figure in figures {
                let svg = figure.to_svg()?;
                writeln!(out, r#"<figure id="{}">"#, html_escape(figure.name()))?;
                writeln!(out, "{}", svg.trim())?;
                writeln!(out, "<figcaption>{}</figcaption>", html_escape(figure.title()))?;
                writeln!(out, "</figure>")?;
            }
        }

        writeln!(out, "<h2>Runs</h2>")?;
        writeln!(out, "<details><summary>One row per run ({})</summary>", self.runs().len())?;
        writeln!(out, r#"<div class="scroll">"#)?;
        text::write_html(&text::runs_table(self), self.precision(), out)?;
        writeln!(out, "</div></details>")?;

        writeln!(out, "<h2>Recipes</h2>")?;
        for info in self.experiments() {
            writeln!(out, "<h3>{}</h3>", html_escape(&info.label))?;
            let mut facts = Vec::new();
            if let Some(dir) = &info.results_dir {
                facts
                    .push(format!("results folder <code>{}</code>", html_escape(&dir.display().to_string())));
            }
            if let Some(v) = &info.clorch_version {
                facts.push(format!("run with clorch {}", html_escape(v)));
            }
            if !facts.is_empty() {
                writeln!(out, r#"<p class="meta">{}</p>"#, facts.join("; "))?;
            }
            match &info.recipe {
                Some(recipe) => writeln!(out, "<pre>{}</pre>", html_escape(recipe))?,
                None => writeln!(out, "<p>The store has no recipe text for this experiment.</p>")?,
            }
        }
        writeln!(out, "</body></html>")?;
        Ok(())
    }
}
