//! The HTML report: one self-contained file a researcher can mail, archive or open offline —
//! a table of contents, the grouped table (sortable by any column), every figure as inline SVG
//! grouped by stream and then by method and grid point, the per-run table, each experiment's
//! recipe text and the clorch versions involved. No external CSS, scripts, fonts or images: the
//! style sheet and the few lines of script that sort tables are inline, and SVG text uses the
//! reader's `sans-serif`.

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
h3 { font-size: 1.1em; margin-top: 1.5em; }
h4 { font-size: 1em; margin: 1.2em 0 0.4em; }
p.meta { color: #555; margin-top: 0; }
nav.toc { background: #f8f8f8; border: 1px solid #e4e4e4; padding: 0.5em 1.5em; display: inline-block; }
nav.toc ul { margin: 0.2em 0; padding-left: 1.2em; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { padding: 0.3em 0.7em; border-bottom: 1px solid #ddd; text-align: left; white-space: nowrap; }
th { background: #f2f2f2; }
table.sortable th { cursor: pointer; user-select: none; }
th[aria-sort=ascending]::after { content: ' \\25B2'; }
th[aria-sort=descending]::after { content: ' \\25BC'; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tbody tr:nth-child(even) { background: #fafafa; }
span.incomplete { color: #a33; }
p.legend { color: #555; font-size: 0.85em; }
figure { margin: 1.5em 0; }
div.figures { display: grid; grid-template-columns: repeat(auto-fill, minmax(560px, 1fr)); gap: 0 1.5em; }
figure svg { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9em; }
pre { background: #f6f6f6; padding: 1em; overflow-x: auto; font-size: 0.85em; }
details { margin: 1em 0; }
.scroll { overflow-x: auto; }
";

/// Sorting of every `table.sortable`: a click on a header sorts by that column (numbers by the
/// value in `data-sort`, text otherwise; empty cells last), a second click reverses. An
/// address ending in `#sort=<table id>:<column>:<asc|desc>` opens the page sorted (a link to a
/// sorted view, and how the headless-browser test checks the sorting).
const SCRIPT: &str = "
function clorchSort(table, col, dir) {
  const body = table.tBodies[0];
  const key = r => { const c = r.cells[col]; return c ? (c.dataset.sort !== undefined ? c.dataset.sort : c.textContent.trim()) : ''; };
  const numeric = table.tHead.rows[0].cells[col].classList.contains('num');
  const rows = Array.from(body.rows);
  rows.sort((a, b) => {
    const x = key(a), y = key(b);
    if (x === '' || y === '') return (x === '') - (y === '');
    const d = numeric ? parseFloat(x) - parseFloat(y) : x.localeCompare(y);
    return dir === 'asc' ? d : -d;
  });
  rows.forEach(r => body.appendChild(r));
  Array.from(table.tHead.rows[0].cells).forEach((th, i) => {
    if (i === col) th.setAttribute('aria-sort', dir === 'asc' ? 'ascending' : 'descending');
    else th.removeAttribute('aria-sort');
  });
}
document.querySelectorAll('table.sortable').forEach(table => {
  Array.from(table.tHead.rows[0].cells).forEach((th, col) => {
    th.title = 'sort by this column';
    th.addEventListener('click', () => {
      clorchSort(table, col, th.getAttribute('aria-sort') === 'descending' ? 'asc' : 'desc');
    });
  });
});
const clorchWanted = /^#sort=([^:]+):(\\d+):(asc|desc)$/.exec(location.hash);
if (clorchWanted) {
  const table = document.getElementById(clorchWanted[1]);
  if (table) clorchSort(table, Number(clorchWanted[2]), clorchWanted[3]);
}
";

/// A fragment identifier made of `prefix` and `text`: letters, digits and `-` only.
fn anchor(prefix: &str, text: &str) -> String {
    let mut out = String::from(prefix);
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_end_matches('-').to_string()
}

/// The figures of one stream: those comparing its groups, then each group's.
struct StreamFigures<'a> {
    stream: &'a str,
    overview: Vec<&'a Figure>,
    groups: Vec<(&'a str, Vec<&'a Figure>)>,
}

/// `figures` grouped by stream (in order of first appearance) and, within a stream, by group.
fn by_stream(figures: &[Figure]) -> Vec<StreamFigures<'_>> {
    let mut streams: Vec<StreamFigures<'_>> = Vec::new();
    for figure in figures {
        let i = match streams.iter().position(|s| s.stream == figure.stream()) {
            Some(i) => i,
            None => {
                streams.push(StreamFigures {
                    stream: figure.stream(),
                    overview: Vec::new(),
                    groups: Vec::new(),
                });
                streams.len() - 1
            }
        };
        let entry = &mut streams[i];
        match figure.group() {
            None => entry.overview.push(figure),
            Some(group) => match entry.groups.iter_mut().find(|(g, _)| *g == group) {
                Some((_, list)) => list.push(figure),
                None => entry.groups.push((group, vec![figure])),
            },
        }
    }
    streams
}

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
        let streams = by_stream(figures);

        writeln!(out, r#"<nav class="toc"><strong>Contents</strong><ul>"#)?;
        writeln!(out, r##"<li><a href="#results">Results</a></li>"##)?;
        if !streams.is_empty() {
            writeln!(out, r##"<li><a href="#figures">Figures</a><ul>"##)?;
            for s in &streams {
                write!(
                    out,
                    r##"<li><a href="#{}">{}</a>"##,
                    anchor("stream-", s.stream),
                    html_escape(s.stream)
                )?;
                if !s.groups.is_empty() {
                    write!(out, "<ul>")?;
                    for (group, _) in &s.groups {
                        let id = anchor("figures-", &format!("{} {group}", s.stream));
                        write!(out, r##"<li><a href="#{id}">{}</a></li>"##, html_escape(group))?;
                    }
                    write!(out, "</ul>")?;
                }
                writeln!(out, "</li>")?;
            }
            writeln!(out, "</ul></li>")?;
        }
        writeln!(out, r##"<li><a href="#runs">Runs</a></li>"##)?;
        writeln!(out, r##"<li><a href="#recipes">Recipes</a></li>"##)?;
        writeln!(out, "</ul></nav>")?;

        writeln!(out, r#"<h2 id="results">Results</h2>"#)?;
        writeln!(out, r#"<p class="legend">Click a column's header to sort by it.</p>"#)?;
        writeln!(out, r#"<div class="scroll">"#)?;
        text::write_html(&text::groups_table(self), self.precision(), "results-table", out)?;
        writeln!(out, "</div>")?;

        if !streams.is_empty() {
            writeln!(out, r#"<h2 id="figures">Figures</h2>"#)?;
            for s in &streams {
                writeln!(
                    out,
                    r#"<h3 id="{}">Stream {}</h3>"#,
                    anchor("stream-", s.stream),
                    html_escape(s.stream)
                )?;
                for figure in &s.overview {
                    write_figure(figure, out)?;
                }
                for (group, list) in &s.groups {
                    let id = anchor("figures-", &format!("{} {group}", s.stream));
                    writeln!(out, r#"<h4 id="{id}">{}</h4>"#, html_escape(group))?;
                    // A group's figures side by side where the page is wide enough.
                    writeln!(out, r#"<div class="figures">"#)?;
                    for figure in list {
                        write_figure(figure, out)?;
                    }
                    writeln!(out, "</div>")?;
                }
            }
        }

        writeln!(out, r#"<h2 id="runs">Runs</h2>"#)?;
        writeln!(out, "<details><summary>One row per run ({})</summary>", self.runs().len())?;
        writeln!(out, r#"<div class="scroll">"#)?;
        text::write_html(&text::runs_table(self), self.precision(), "runs-table", out)?;
        writeln!(out, "</div></details>")?;

        writeln!(out, r#"<h2 id="recipes">Recipes</h2>"#)?;
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
        writeln!(out, "<script>{SCRIPT}</script>")?;
        writeln!(out, "</body></html>")?;
        Ok(())
    }
}

/// One figure as inline SVG with its caption.
fn write_figure(figure: &Figure, out: &mut dyn Write) -> Result<(), ReportError> {
    let svg = figure.to_svg()?;
    writeln!(out, r#"<figure id="{}">"#, html_escape(figure.name()))?;
    writeln!(out, "{}", svg.trim())?;
    writeln!(out, "<figcaption>{}</figcaption>", html_escape(figure.title()))?;
    writeln!(out, "</figure>")?;
    Ok(())
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
        assert_eq!(page.matches(r#"class="sortable">"#).count(), 2, "grouped and per-run tables");
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
        // Self-contained: one inline script (sorting), no scripts, style sheets, images or
        // fonts from elsewhere. (SVG's xmlns is a name, not a fetch.)
        assert_eq!(page.matches("<script").count(), 1);
        assert!(page.contains("<script>\nfunction clorchSort"));
        for needle in ["<link", "<img", "src=", "@import", "url(", "https://", "fetch("] {
            assert!(!page.contains(needle), "`{needle}` in the page");
        }
        let without_xmlns = page.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
        assert!(!without_xmlns.contains("http://"), "an external reference");
        // The same numbers as the Markdown table.
        let md = render(&report, TableKind::Groups, Format::Markdown);
        assert!(md.contains("**0.855 ± 0.064**"));
    }

    /// Issue 16: a table of contents linking every section, figures grouped by stream and then
    /// by method, and numeric cells carrying their full value for sorting.
    #[test]
    fn the_page_has_contents_and_groups_figures_by_stream_and_method() {
        let report = Report::build(&store_with_meta(), &ReportOptions::default()).unwrap();
        let page = html(&report);
        let toc = &page[page.find(r#"<nav class="toc">"#).unwrap()..page.find("</nav>").unwrap()];
        let links: Vec<&str> =
            toc.split(r##"href="#"##).skip(1).map(|l| &l[..l.find('"').unwrap()]).collect();
        assert_eq!(
            links,
            [
                "results",
                "figures",
                "stream-synthetic",
                "figures-synthetic-sgd-lr-0-1",
                "figures-synthetic-cbp-lr-0-1",
                "figures-synthetic-l2-lr-0-1",
                "stream-regression",
                "runs",
                "recipes"
            ]
        );
        for id in &links {
            assert!(page.contains(&format!(r#"id="{id}""#)), "no section `{id}`");
        }
        // Stream-wide figures first, then each group's under its heading, in report order.
        let at = |needle: &str| page.find(needle).unwrap_or_else(|| panic!("no `{needle}`"));
        assert!(at(r#"id="stream-synthetic""#) < at(r#"<figure id="online-accuracy-synthetic">"#));
        assert!(at(r#"<figure id="plasticity-synthetic">"#) < at(r#"id="figures-synthetic-sgd-lr-0-1""#));
        assert!(
            at(r#"id="figures-synthetic-sgd-lr-0-1""#)
                < at(r#"<figure id="accuracy-matrix-synthetic-sgd-lr-0.1">"#)
        );
        assert!(
            at(r#"<figure id="task-accuracy-synthetic-sgd-lr-0.1">"#)
                < at(r#"id="figures-synthetic-cbp-lr-0-1""#)
        );
        assert!(
            at(r#"id="figures-synthetic-cbp-lr-0-1""#) < at(r#"<figure id="capacity-synthetic-cbp-lr-0.1">"#)
        );
        assert!(at(r#"id="stream-regression""#) < at(r#"<figure id="online-error-regression">"#));
        // Sorting uses full-precision values, not the rounded text.
        assert!(
            page.contains(r#"data-sort="0.855""#) || page.contains(r#"data-sort="0.8550000000000001""#),
            "{page}"
        );
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
        let mut child = test_support::headless(&browser, &scratch.path().join("profile"))
            .arg("--hide-scrollbars")
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

        // Issue 16: the page's script sorts the results table. The address asks for ACC, lowest
        // first; the DOM after the script ran lists the methods in that order.
        let headers = header_cells(&html(&report));
        let acc = headers.iter().position(|h| h == "ACC").unwrap();
        // Groups without ACC (the regression stream's) sort last, in their order.
        let mut expected: Vec<(f64, String)> = report
            .groups()
            .iter()
            .map(|g| (g.cell(crate::Metric::Acc).mean.unwrap_or(f64::INFINITY), g.method.clone()))
            .collect();
        expected.sort_by(|a, b| a.0.total_cmp(&b.0));
        let expected: Vec<String> = expected.into_iter().map(|(_, m)| m).collect();
        let page_order: Vec<String> = report.groups().iter().map(|g| g.method.clone()).collect();
        assert_ne!(expected, page_order, "the sorted order must differ from the page's");
        let dom = Command::new(&browser)
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            .args(["--disable-component-update", "--disable-sync", "--no-first-run", "--dump-dom"])
            .arg(format!("--user-data-dir={}", scratch.path().join("profile-dom").display()))
            .arg(format!("file://{}#sort=results-table:{acc}:asc", page.display()))
            .stderr(Stdio::null())
            .output()
            .unwrap();
        assert!(dom.status.success(), "{} --dump-dom failed", browser.display());
        let dom = String::from_utf8_lossy(&dom.stdout);
        let table = &dom[dom.find(r#"id="results-table""#).expect("the results table")..];
        let table = &table[..table.find("</table>").unwrap()];
        let methods: Vec<String> = table
            .split("<tr>")
            .skip(2)
            .map(|row| {
                let cells: Vec<&str> = row.split("<td").skip(1).collect();
                let cell = cells[1];
                cell[cell.find('>').unwrap() + 1..cell.find("</td>").unwrap()].to_string()
            })
            .collect();
        assert_eq!(methods, expected, "rows after sorting by ACC");
        assert!(table.contains(r#"aria-sort="ascending""#), "the sorted column is marked");
    }

    /// The header texts of the page's first table.
    fn header_cells(page: &str) -> Vec<String> {
        let head = &page[page.find("<thead>").unwrap()..page.find("</thead>").unwrap()];
        // The first piece is before `<thead>`, the second `<thead>`'s own rest.
        head.split("<th")
            .skip(2)
            .map(|c| c[c.find('>').unwrap() + 1..c.find("</th>").unwrap()].to_string())
            .collect()
    }
}
