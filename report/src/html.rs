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

#[cfg(test)]
mod tests {
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    use crate::plot::tests::{non_white_pixels, png_size, rich_store};
    use crate::tests::render;
    use crate::{Format, Report, ReportOptions, TableKind};
    use results::ExperimentMeta;
    use runner::store::Store;

    const RECIPE: &str = "name: fixture\n# a <recipe> & its comment\nseeds: 3\n";

    fn store_with_meta() -> Store {
        let store = rich_store();
        store.put_experiment(&ExperimentMeta::new("fixture", RECIPE, 1)).unwrap();
        store
    }

    fn html(report: &Report) -> String {
        let mut out = Vec::new();
        report.write_html(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn the_page_holds_the_tables_the_figures_and_the_recipe_and_nothing_external() {
        let report = Report::build(&store_with_meta(), &ReportOptions::default()).unwrap();
        let page = html(&report);
        assert!(page.starts_with("<!DOCTYPE html>"));
        assert!(page.trim_end().ends_with("</body></html>"));
        assert!(page.contains("<h1>Experiment: fixture</h1>"), "{page}");
        assert_eq!(page.matches("<table>").count(), 2, "grouped and per-run tables");
        assert!(page.contains("<th>Method</th>") && page.contains(r#"<th class="num">ACC</th>"#));
        assert!(page.contains(r#"<span class="incomplete">(2/3)</span>"#), "the running cbp seed");
        assert!(page.contains("<strong>0.855&nbsp;±&nbsp;0.064</strong>"), "best ACC in bold");
        let figures = crate::plot::figures(&report);
        assert_eq!(page.matches("<svg").count(), figures.len());
        for f in &figures {
            assert!(page.contains(&format!(r#"<figure id="{}">"#, f.name())), "{}", f.name());
        }
        assert!(
            page.contains("<pre>name: fixture\n# a &lt;recipe&gt; &amp; its comment\nseeds: 3\n</pre>"),
            "{page}"
        );
        assert!(page.contains(&format!("report made by clorch {}", env!("CARGO_PKG_VERSION"))));
        assert!(page.contains(&format!("run with clorch {}", env!("CARGO_PKG_VERSION"))));
        // Self-contained: no scripts, style sheets, images or fonts from elsewhere. (SVG's
        // xmlns is a name, not a fetch.)
        for needle in ["<script", "<link", "<img", "src=", "@import", "url(", "https://"] {
            assert!(!page.contains(needle), "`{needle}` in the page");
        }
        let without_xmlns = page.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
        assert!(!without_xmlns.contains("http://"), "an external reference");
        // The same numbers as the Markdown table.
        let md = render(&report, TableKind::Groups, Format::Markdown);
        assert!(md.contains("**0.855 ± 0.064**"));
    }

    #[test]
    fn a_comparison_page_names_each_experiment_and_recipe() {
        let a = store_with_meta();
        let b = rich_store();
        b.put_experiment(&ExperimentMeta::new("other", "name: other\n", 1)).unwrap();
        let report = Report::compare(&[&a, &b], &ReportOptions::default()).unwrap();
        let page = html(&report);
        assert!(page.contains("<h1>Comparison: fixture, other</h1>"), "{page}");
        assert!(page.contains("<th>Experiment</th>"));
        assert!(page.contains("<h3>fixture</h3>") && page.contains("<h3>other</h3>"));
        assert!(page.contains("<pre>name: other\n</pre>"));
    }

    #[test]
    fn the_page_renders_in_a_headless_browser() {
        let Some(browser) = test_support::chromium() else {
            test_support::missing("chromium on PATH (to render the HTML report)", "apt-get install chromium");
            return;
        };
        let scratch = test_support::scratch("chromium");
        let report = Report::build(&store_with_meta(), &ReportOptions::default()).unwrap();
        let page = scratch.path().join("report.html");
        std::fs::write(&page, html(&report)).unwrap();
        let shot = scratch.path().join("shot.png");
        let mut child = Command::new(&browser)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--hide-scrollbars",
            ])
            .arg(format!("--user-data-dir={}", scratch.path().join("profile").display()))
            .arg(format!("--screenshot={}", shot.display()))
            .arg("--window-size=1200,900")
            .arg(format!("file://{}", page.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(180);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                child.kill().unwrap();
                child.wait().unwrap();
                panic!("{} took more than 180 s to render the page", browser.display());
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let mut log = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut log).unwrap();
        assert!(status.success() && shot.is_file(), "{} failed ({status}):\n{log}", browser.display());
        let bytes = std::fs::read(&shot).unwrap();
        assert_eq!(png_size(&bytes), (1200, 900));
        // Heading, table and the first figure: far from blank.
        let inked = non_white_pixels(&bytes);
        assert!(inked > 1200 * 900 / 50, "only {inked} non-white pixels in the screenshot");
    }
}
