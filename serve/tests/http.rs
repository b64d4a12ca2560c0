//! The dashboard over real HTTP: what it answers, what it refuses, and that it follows a
//! results folder as it is written. Requests are written by hand on a TCP socket, so paths
//! reach the server exactly as given (`..`, `%2e%2e`), as an attacker would send them.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use protocol::{line, Event, EventBody};
use results::fixtures::record;
use results::{run_dir, write_experiment_files, write_run_record, ExperimentMeta, RunRecord, RunStatus};

/// A results folder with two runs of one group, the first with a few events.
struct Folder {
    _scratch: test_support::TempDir,
    dir: PathBuf,
    runs: Vec<RunRecord>,
}

fn started(tasks: usize) -> EventBody {
    EventBody::Started {
        protocol: 1,
        tasks,
        inputs: 8,
        outputs: 10,
        heads: 1,
        parameters: 90,
        problem: "classification".into(),
    }
}

fn online(task: usize, bin: usize, acc: f64) -> EventBody {
    EventBody::Online { task, bin, examples: 100, loss: 1.0 - acc, accuracy: Some(acc) }
}

fn append(dir: &Path, run: &str, first_seq: u64, bodies: Vec<EventBody>) {
    let mut text = Vec::new();
    for (i, body) in bodies.into_iter().enumerate() {
        line::encode_into(&Event { run: run.into(), seq: first_seq + i as u64, body }, &mut text);
    }
    let path = dir.join(protocol::files::EVENTS);
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
    f.write_all(&text).unwrap();
}

fn folder(name: &str) -> Folder {
    let scratch = test_support::scratch(name);
    let dir = scratch.path().join("results");
    let runs = vec![record(0, 3, "sgd", 0.1, 1), record(1, 3, "sgd", 0.1, 2)];
    let mut meta = ExperimentMeta::new("served", "name: served\n", 1);
    meta.runs = runs.iter().map(|r| r.id.clone()).collect();
    write_experiment_files(&dir, &meta).unwrap();
    for r in &runs {
        let mut r = r.clone();
        r.status = RunStatus::Running;
        write_run_record(&run_dir(&dir, &r.id), &r).unwrap();
    }
    append(&run_dir(&dir, &runs[0].id), &runs[0].id, 0, vec![started(3), online(0, 0, 0.5)]);
    Folder { _scratch: scratch, dir, runs }
}

/// Serves `dirs` on a free loopback port from a thread of its own; returns the address.
fn serve(dirs: Vec<PathBuf>, token: Option<&str>) -> SocketAddr {
    let config = serve::ServeConfig {
        dirs,
        bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
        port: 0,
        token: token.map(str::to_string),
        refresh: Duration::from_millis(50),
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            let server = serve::Server::bind(config).await.unwrap();
            tx.send(server.local_addr()).unwrap();
            server.run().await;
        });
    });
    rx.recv_timeout(Duration::from_secs(30)).unwrap()
}

struct Reply {
    status: u16,
    headers: String,
    body: String,
}

/// Sends `request` (method, raw target, extra header lines) and reads the whole reply.
fn send(addr: SocketAddr, method: &str, target: &str, headers: &[&str]) -> Reply {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut request =
        format!("{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n", addr.port());
    for h in headers {
        request.push_str(h);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).unwrap();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    Reply { status, headers: head.to_lowercase(), body: body.to_string() }
}

fn get(addr: SocketAddr, target: &str) -> Reply {
    send(addr, "GET", target, &[])
}

/// Polls `target` until `ready` holds (the refresher reads events after the server starts).
fn until(addr: SocketAddr, target: &str, ready: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = json(&get(addr, target));
        if ready(&v) {
            return v;
        }
        let shown: String = v.to_string().chars().take(2000).collect();
        assert!(Instant::now() < deadline, "{target} never got ready: {shown}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn json(reply: &Reply) -> serde_json::Value {
    assert_eq!(reply.status, 200, "{}", reply.body);
    serde_json::from_str(&reply.body).unwrap_or_else(|e| panic!("{e}: {}", reply.body))
}

#[test]
fn the_dashboard_follows_the_folder_as_it_is_written() {
    let f = folder("serve-follow");
    let addr = serve(vec![f.dir.clone()], None);
    let page = get(addr, "/");
    assert_eq!(page.status, 200);
    assert!(page.body.contains("/assets/app.js") && page.headers.contains("content-security-policy"));
    assert_eq!(get(addr, "/assets/app.js").status, 200);

    let view =
        until(addr, "/api/experiments/0", |v| v["groups"][0]["online"]["mean"] == serde_json::json!([0.5]));
    assert_eq!(view["runs"].as_array().unwrap().len(), 2);
    assert_eq!(view["runs"][0]["status"], "running");
    let version = view["version"].as_u64().unwrap();
    let same = json(&get(addr, &format!("/api/experiments/0?since={version}")));
    assert_eq!(same["unchanged"], true);

    // The second seed catches up, the first one goes on: the group band gains a point.
    let (a, b) = (&f.runs[0].id, &f.runs[1].id);
    append(&run_dir(&f.dir, b), b, 0, vec![started(3), online(0, 0, 0.7), online(0, 1, 0.8)]);
    append(&run_dir(&f.dir, a), a, 2, vec![online(0, 1, 0.6)]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let view = loop {
        let v = json(&get(addr, &format!("/api/experiments/0?since={version}")));
        if v["unchanged"] != true && v["groups"][0]["online"]["n"] == serde_json::json!([2, 2]) {
            break v;
        }
        assert!(Instant::now() < deadline, "the appended events never showed: {v}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mean = view["groups"][0]["online"]["mean"].as_array().unwrap();
    assert!(
        (mean[0].as_f64().unwrap() - 0.6).abs() < 1e-12 && (mean[1].as_f64().unwrap() - 0.7).abs() < 1e-12
    );
    assert!(view["groups"][0]["online"]["half"][0].as_f64().unwrap() > 0.0, "two seeds give a band");

    // A resumed worker cuts the log back and writes again: the run is read afresh.
    let events = run_dir(&f.dir, a).join(protocol::files::EVENTS);
    let text = std::fs::read_to_string(&events).unwrap();
    let first_two: usize = text.lines().take(2).map(|l| l.len() + 1).sum();
    std::fs::write(&events, &text[..first_two]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let run = json(&get(addr, &format!("/api/experiments/0/runs/{a}")));
        if run["online"]["mean"] == serde_json::json!([0.5]) {
            break;
        }
        assert!(Instant::now() < deadline, "the cut log was not re-read: {run}");
        std::thread::sleep(Duration::from_millis(50));
    }

    // The comparison table is report's.
    let table = json(&get(addr, "/api/experiments/0/table"));
    assert!(table["markdown"].as_str().unwrap().contains("| synthetic"), "{table}");
}

#[test]
fn a_damaged_line_is_reported_not_read() {
    let f = folder("serve-damage");
    let a = &f.runs[0].id;
    let events = run_dir(&f.dir, a).join(protocol::files::EVENTS);
    let text = std::fs::read_to_string(&events).unwrap().replace("0.5", "0.9");
    std::fs::write(&events, text).unwrap();
    let addr = serve(vec![f.dir.clone()], None);
    let view = until(addr, "/api/experiments/0", |v| !v["runs"][0]["reason"].is_null());
    let reason = view["runs"][0]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("events.jsonl line 2") && reason.contains("checksum mismatch"), "{view}");
    assert_eq!(view["groups"][0]["online"]["n"], serde_json::json!([]), "no damaged number is drawn");
}

#[test]
fn requests_never_reach_files_outside_the_results_folders() {
    let f = folder("serve-escape");
    let secret_dir = test_support::scratch("serve-secret");
    let secret = secret_dir.path().join("secret.txt");
    std::fs::write(&secret, "TOP-SECRET").unwrap();
    let a = &f.runs[0].id;
    // A worker.log that is a symlink to the secret, and a run folder that is a symlink.
    std::os::unix::fs::symlink(&secret, run_dir(&f.dir, a).join(protocol::files::WORKER_LOG)).unwrap();
    std::os::unix::fs::symlink(secret_dir.path(), f.dir.join("runs").join("aaaaaaaaaaaa")).unwrap();
    std::fs::write(secret_dir.path().join(protocol::files::WORKER_LOG), "TOP-SECRET").unwrap();
    let addr = serve(vec![f.dir.clone()], None);

    let secret_path = secret.display().to_string();
    let targets = [
        "/../../../../etc/passwd".to_string(),
        "/assets/../../../../etc/passwd".to_string(),
        "/assets/%2e%2e/%2e%2e/%2e%2e/etc/passwd".to_string(),
        "/assets/..%2f..%2f..%2fetc%2fpasswd".to_string(),
        "//etc/passwd".to_string(),
        secret_path.clone(),
        format!("/assets/{secret_path}"),
        format!("/api/experiments/0/runs/{a}/../../../../../etc/passwd"),
        "/api/experiments/0/runs/%2e%2e%2f%2e%2e/log".to_string(),
        "/api/experiments/0/runs/aaaaaaaaaaaa/log".to_string(),
        "/api/experiments/1".to_string(),
        "/api/experiments/-1".to_string(),
        "/api/experiments/00000000000000000000001".to_string(),
        "http://127.0.0.1/etc/passwd".to_string(),
    ];
    for target in &targets {
        let reply = get(addr, target);
        assert!(reply.status == 404 || reply.status == 400, "{target}: {} {}", reply.status, reply.body);
        assert!(
            !reply.body.contains("root:") && !reply.body.contains("TOP-SECRET"),
            "{target}: {}",
            reply.body
        );
    }
    // The symlinked log is not followed; the symlinked run folder is not a run.
    let log = get(addr, &format!("/api/experiments/0/runs/{a}/log"));
    assert_eq!(log.status, 200);
    assert!(!log.body.contains("TOP-SECRET"), "{}", log.body);
    let view = json(&get(addr, "/api/experiments/0"));
    assert!(!view.to_string().contains("aaaaaaaaaaaa"));
}

#[test]
fn only_reads_are_answered_and_nothing_is_written() {
    let f = folder("serve-readonly");
    let before = listing(&f.dir);
    let addr = serve(vec![f.dir.clone()], None);
    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        for target in ["/", "/api/experiments", "/api/experiments/0"] {
            let reply = send(addr, method, target, &["Content-Length: 0"]);
            assert_eq!(reply.status, 405, "{method} {target}");
        }
    }
    assert_eq!(send(addr, "HEAD", "/api/experiments", &[]).status, 200);
    get(addr, "/api/experiments/0/table");
    assert_eq!(listing(&f.dir), before, "serving changed the results folder");
}

fn listing(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let meta = std::fs::symlink_metadata(e.path()).unwrap();
            if meta.is_dir() {
                stack.push(e.path());
            }
            out.push((e.path(), meta.len()));
        }
    }
    out.sort();
    out
}

#[test]
fn a_token_guards_every_request_and_the_host_is_checked_without_one() {
    let f = folder("serve-token");
    let token = "0123456789abcdef0123";
    let addr = serve(vec![f.dir.clone()], Some(token));
    for target in ["/", "/assets/app.js", "/api/experiments", "/api/experiments/0"] {
        assert_eq!(get(addr, target).status, 401, "{target} without the token");
        let wrong = send(addr, "GET", target, &["Authorization: Bearer 0123456789abcdef0124"]);
        assert_eq!(wrong.status, 401, "{target} with a wrong token");
        let bearer = format!("Authorization: Bearer {token}");
        assert_eq!(send(addr, "GET", target, &[&bearer]).status, 200, "{target} with the token");
        let cookie = format!("Cookie: other=1; {}={token}", serve::routes::COOKIE_NAME);
        assert_eq!(send(addr, "GET", target, &[&cookie]).status, 200, "{target} with the cookie");
    }
    let page = get(addr, &format!("/?token={token}"));
    assert_eq!(page.status, 200);
    assert!(
        page.headers.contains("set-cookie: clorch_token=") && page.headers.contains("httponly"),
        "{}",
        page.headers
    );

    // Without a token only loopback names are answered (a DNS-rebound page cannot read it).
    let open = serve(vec![f.dir.clone()], None);
    let rebound = send(open, "GET", "/api/experiments", &[]);
    assert_eq!(rebound.status, 200);
    let mut stream = TcpStream::connect(open).unwrap();
    stream
        .write_all(b"GET /api/experiments HTTP/1.1\r\nHost: evil.example:8080\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 403"), "{reply}");
}

#[test]
fn binding_beyond_loopback_needs_a_token_and_folders_must_be_experiments() {
    let f = folder("serve-refuse");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let bind = |dirs: Vec<PathBuf>, ip: IpAddr, token: Option<&str>| {
        let config = serve::ServeConfig {
            dirs,
            bind: ip,
            port: 0,
            token: token.map(str::to_string),
            refresh: Duration::from_secs(1),
        };
        runtime.block_on(serve::Server::bind(config)).err().map(|e| e.to_string())
    };
    let any = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    let err = bind(vec![f.dir.clone()], any, None).expect("refused");
    assert!(err.contains("--token"), "{err}");
    assert!(bind(vec![f.dir.clone()], any, Some("short")).unwrap().contains("16 to 128"));
    let foreign = test_support::scratch("serve-foreign");
    std::fs::write(foreign.path().join("notes.txt"), "mine").unwrap();
    let err =
        bind(vec![foreign.path().to_path_buf()], IpAddr::V4(Ipv4Addr::LOCALHOST), None).expect("refused");
    assert!(err.contains("notes.txt") && err.contains("not a clorch results folder"), "{err}");
}

#[test]
fn answers_stay_bounded_however_long_the_run() {
    let f = folder("serve-bounded");
    let a = &f.runs[0].id;
    let dir = run_dir(&f.dir, a);
    let bins: Vec<EventBody> = (0..20_000).map(|i| online(i / 100, i % 100, 0.5)).collect();
    append(&dir, a, 2, bins);
    std::fs::write(dir.join(protocol::files::WORKER_LOG), "x".repeat(199) + "\n").unwrap();
    let big: String = (0..20_000).map(|i| format!("log line {i:>10}\n")).collect();
    std::fs::write(dir.join(protocol::files::WORKER_LOG), &big).unwrap();
    let addr = serve(vec![f.dir.clone()], None);
    let run = until(addr, &format!("/api/experiments/0/runs/{a}"), |v| {
        v["online"]["x"].as_array().and_then(|x| x.last()).and_then(serde_json::Value::as_f64)
            == Some(2_000_100.0)
    });
    let points = run["online"]["x"].as_array().unwrap().len();
    assert!(points <= serve::bands::MAX_POINTS && points > 100, "{points}");
    let log = get(addr, &format!("/api/experiments/0/runs/{a}/log"));
    assert!(log.body.len() as u64 <= serve::api::LOG_TAIL_BYTES, "{}", log.body.len());
    assert!(
        log.body.ends_with("log line      19999\n") && log.body.starts_with("log line"),
        "starts at a line"
    );
}
