//! A file server on 127.0.0.1 for the download tests (CI has no internet): HTTP/1.1 GET with
//! `Range: bytes=N-`, one connection at a time, and on request a response cut short after a
//! number of body bytes — the broken transfer a resumed download must recover from — or
//! ranges ignored, as some servers do.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// One request the server received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The request path, e.g. `/mnist/t10k-labels-idx1-ubyte.gz`.
    pub path: String,
    /// The `Range` header's value, if there was one.
    pub range: Option<String>,
}

#[derive(Default)]
struct State {
    files: HashMap<String, Vec<u8>>,
    requests: Vec<Request>,
    /// Body bytes the next response sends before it closes the connection.
    cut_next_after: Option<usize>,
    /// Answer every request with the whole file, as servers without range support do.
    ignore_ranges: bool,
}

/// The server; it stops when dropped.
pub struct FileServer {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FileServer {
    /// Serves `files`, keyed by path (`/mnist/a.gz`), on a free port of 127.0.0.1.
    ///
    /// # Panics
    /// When no port can be bound.
    pub fn start(files: impl IntoIterator<Item = (String, Vec<u8>)>) -> FileServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0");
        let addr = listener.local_addr().expect("the bound address");
        let state = Arc::new(Mutex::new(State { files: files.into_iter().collect(), ..State::default() }));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (state, stop) = (Arc::clone(&state), Arc::clone(&stop));
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(stream) = stream {
                        serve(stream, &state);
                    }
                }
            })
        };
        FileServer { addr, state, stop, thread: Some(thread) }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The next response announces the whole body but sends only `bytes` of it, then closes.
    pub fn cut_next_after(&self, bytes: usize) {
        self.state.lock().unwrap().cut_next_after = Some(bytes);
    }

    /// From now on, answers `Range` requests with the whole file (`200 OK`).
    pub fn ignore_ranges(&self) {
        self.state.lock().unwrap().ignore_ranges = true;
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<Request> {
        self.state.lock().unwrap().requests.clone()
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so that it sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A URL on 127.0.0.1 where nothing listens: connections are refused, as when offline.
///
/// # Panics
/// When no port can be bound.
pub fn closed_port_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0");
    let addr = listener.local_addr().expect("the bound address");
    drop(listener);
    format!("http://{addr}")
}

fn serve(stream: TcpStream, state: &Mutex<State>) {
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    });
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() || request_line.is_empty() {
        return;
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut range = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).is_err() || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.trim().eq_ignore_ascii_case("range") {
                range = Some(value.trim().to_string());
            }
        }
    }
    let (body, cut, start) = {
        let mut state = state.lock().unwrap();
        state.requests.push(Request { path: path.clone(), range: range.clone() });
        let Some(body) = state.files.get(&path).cloned() else {
            drop(state);
            let _ = respond(stream, "404 Not Found", &[], b"", None);
            return;
        };
        let start = range
            .as_deref()
            .and_then(|r| r.strip_prefix("bytes="))
            .and_then(|r| r.strip_suffix('-'))
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|_| !state.ignore_ranges);
        (body, state.cut_next_after.take(), start)
    };
    let _ = match start {
        Some(start) if start < body.len() => {
            let content_range = format!("bytes {start}-{}/{}", body.len() - 1, body.len());
            respond(stream, "206 Partial Content", &[("Content-Range", &content_range)], &body[start..], cut)
        }
        Some(_) => {
            let content_range = format!("bytes */{}", body.len());
            respond(stream, "416 Range Not Satisfiable", &[("Content-Range", &content_range)], b"", None)
        }
        None => respond(stream, "200 OK", &[], &body, cut),
    };
}

fn respond(
    mut stream: TcpStream,
    status: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    cut: Option<usize>,
) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n", body.len());
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(&body[..cut.unwrap_or(body.len()).min(body.len())])?;
    stream.flush()?;
    stream.shutdown(std::net::Shutdown::Both)
}
