//! `clorch serve` next to a running `clorch run`: the dashboard shows the runs in progress, its
//! curves gain points while they go — in the API and in a headless browser's page — and once
//! they finish its comparison table is exactly `clorch report`'s.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{clorch, text, Scratch, CLORCH};

/// Four runs of 100 tasks with online bins: ~30–60 s here with two workers, long enough for
/// two page loads while they go.
const LIVE: &str = "
stream: {kind: synthetic_permuted, tasks: 100, classes: 10, dim: 64, train_per_class: 100, test_per_class: 20}
network: {hidden: [64, 64]}
training: {batch_size: 8, epochs: 3}
eval: {online_bin: 200, tasks: {subsample: {earlier: 3}}}
methods:
  - {name: sgd, lr: 0.02}
  - {name: l2, lr: 0.02, weight_decay: 0.001}
seeds: 2
";

/// Kills a child process when dropped, so a failing test leaves nothing running.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// GET `target` from `host:port` with the dashboard's token; the body, or the status line.
fn get(port: u16, token: &str, target: &str) -> Result<String, String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        stream,
        "GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).map_err(|e| e.to_string())?;
    let (head, body) = reply.split_once("\r\n\r\n").ok_or("no reply")?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(head.lines().next().unwrap_or_default().to_string());
    }
    Ok(body.to_string())
}

fn api(port: u16, token: &str, target: &str) -> serde_json::Value {
    let body = get(port, token, target).unwrap_or_else(|e| panic!("{target}: {e}"));
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{target}: {e}: {body}"))
}

/// The page as a headless Chromium renders it after its scripts ran for a few seconds.
fn rendered(browser: &Path, profile: &Path, url: &str) -> String {
    let out = test_support::headless(browser, profile)
        .args(["--virtual-time-budget=5000", "--dump-dom"])
        .arg(url)
        .stderr(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{} failed: {}", browser.display(), out.status);
    text(&out.stdout)
}

/// How far the page's first chart (the online curve over seeds) reaches, in examples, and how
/// many points it draws (thinned to at most a few hundred, so it can shrink as the run grows).
fn first_chart(dom: &str) -> (f64, usize) {
    let attr = |name: &str| -> String {
        let key = format!("{name}=\"");
        let at = dom.find(&key).unwrap_or_else(|| panic!("no chart in the page:\n{dom}"));
        dom[at + key.len()..].split('"').next().unwrap().to_string()
    };
    (attr("data-xmax").parse().unwrap(), attr("data-points").parse().unwrap())
}

/// The cells of a Markdown table's body rows, bold marks removed.
fn markdown_cells(markdown: &str) -> Vec<Vec<String>> {
    markdown
        .lines()
        .filter(|l| l.starts_with('|'))
        .skip(2)
        .map(|l| l.trim_matches('|').split('|').map(|c| c.trim().replace("**", "")).collect())
        .collect()
}

#[test]
fn the_dashboard_shows_a_running_experiment_live_and_ends_with_reports_table() {
    let browser = test_support::chromium();
    if browser.is_none() {
        test_support::missing("chromium on PATH (to render the dashboard)", "apt-get install chromium");
    }
    let s = Scratch::new("serve-live");
    let recipe = s.recipe("live", LIVE);
    let results = s.path("results-live");
    let run = Killed(
        Command::new(CLORCH)
            .args(["run", recipe.to_str().unwrap(), "--no-progress", "-j", "2", "-q"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // The results folder exists once planning is done.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !results.join("experiment.json").exists() {
        assert!(Instant::now() < deadline, "clorch run did not create {}", results.display());
        std::thread::sleep(Duration::from_millis(50));
    }
    let token = "serve-test-token-0123456789";
    let mut server = Killed(
        Command::new(CLORCH)
            .args(["serve", results.to_str().unwrap(), "--port", "0", "--token", token])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut first = String::new();
    BufReader::new(server.0.stdout.take().unwrap()).read_line(&mut first).unwrap();
    let url = first.split_whitespace().last().unwrap_or_default().to_string();
    assert!(url.starts_with("http://127.0.0.1:") && url.contains(token), "{first}");
    let port: u16 = url.trim_start_matches("http://127.0.0.1:").split('/').next().unwrap().parse().unwrap();

    // The API while the runs go: some run running, with online points.
    let deadline = Instant::now() + Duration::from_secs(120);
    let points_while_running = loop {
        let v = api(port, token, "/api/experiments/0");
        let running = v["runs"].as_array().unwrap().iter().any(|r| r["status"] == "running");
        let points = v["groups"][0]["online"]["x"].as_array().map_or(0, Vec::len);
        if running && points > 0 {
            break points;
        }
        assert!(Instant::now() < deadline, "no running run with points: {v}");
        std::thread::sleep(Duration::from_millis(100));
    };

    // The page in a browser, twice while the run goes: running rows, a curve that grows.
    if let Some(browser) = &browser {
        let profile = s.path("profile");
        let dom = rendered(browser, &profile, &url);
        assert!(dom.contains("class=\"status-running\""), "no running row in the page");
        let (before, points) = first_chart(&dom);
        assert!(before > 0.0 && points > 0, "the online chart is empty");
        std::thread::sleep(Duration::from_secs(3));
        let dom = rendered(browser, &profile, &url);
        let (after, points) = first_chart(&dom);
        assert!(
            after > before && points > 0,
            "the curve did not grow: up to {before} examples, then {after}"
        );
    }
    let v = api(port, token, "/api/experiments/0");
    let points_later = v["groups"][0]["online"]["x"].as_array().map_or(0, Vec::len);
    assert!(points_later >= points_while_running);

    // When the runs are done, the table is report's, in the API and on the page.
    let mut run = run;
    let status = run.0.wait().unwrap();
    assert!(status.success(), "clorch run failed: {status}");
    let report = clorch(&["report", results.to_str().unwrap()]);
    assert!(report.status.success());
    let expected = text(&report.stdout);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = api(port, token, "/api/experiments/0");
        if v["counts"]["finished"] == 4 {
            let table = api(port, token, "/api/experiments/0/table");
            if table["markdown"] == expected.as_str() {
                break;
            }
        }
        assert!(Instant::now() < deadline, "the served table never equalled clorch report's:\n{expected}");
        std::thread::sleep(Duration::from_millis(200));
    }
    if let Some(browser) = &browser {
        let dom = rendered(browser, &s.path("profile"), &url);
        let table = &dom[dom.find("id=\"table\"").expect("the comparison table")..];
        let body = &table[..table.find("</table>").unwrap()];
        let cells: Vec<Vec<String>> = body
            .split("<tr>")
            .skip(2)
            .map(|row| {
                row.split("<td")
                    .skip(1)
                    .map(|c| c[c.find('>').unwrap() + 1..c.find("</td>").unwrap()].to_string())
                    .collect()
            })
            .collect();
        assert_eq!(cells, markdown_cells(&expected), "the page's table differs from clorch report's");
    }
}
