//! `clorch serve`: a live, read-only dashboard of running experiments.
//!
//! It shows what `clorch status`, `clorch report` and `clorch plot` show, while the runs go:
//! the run table (status, attempts, task k/N, ETA, checkpoint age, failure reason), curves per
//! run and per group of seeds (online accuracy or loss with 95% bands, accuracy on each task
//! right after training it, ACC so far, dead units and effective rank), a run's accuracy
//! matrix filling in, the comparison table with `clorch report`'s numbers, and a run's log
//! tail. The page polls every second; every asset is embedded, nothing is fetched from
//! elsewhere, and it works offline.
//!
//! It reads the results folders' files only ([`watch`]): it never takes an experiment's lock
//! nor opens its store, so it can watch a `clorch run` without slowing it. See [`routes`] for
//! what it answers and refuses.

#![warn(missing_docs)]

pub mod api;
mod assets;
pub mod bands;
pub mod routes;
pub mod series;
mod source;
mod state;
pub mod watch;

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

pub use state::Shared;
pub use watch::Watched;

/// How a dashboard is served.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// Results folders, each a clorch experiment.
    pub dirs: Vec<PathBuf>,
    /// Address to listen on.
    pub bind: IpAddr,
    /// Port (0: any free one).
    pub port: u16,
    /// Token every request must carry; required when `bind` is not a loopback address.
    pub token: Option<String>,
    /// How often the folders are read for changes.
    pub refresh: Duration,
}

/// Why a dashboard could not be served.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A folder given is not a clorch results folder.
    #[error("{}: {reason}", path.display())]
    NotAnExperiment {
        /// The folder.
        path: PathBuf,
        /// What it is instead.
        reason: String,
    },
    /// Nothing to serve.
    #[error("no results folders to serve")]
    Nothing,
    /// Listening on a non-loopback address without a token would show the results to the
    /// whole network.
    #[error(
        "--bind {0} is reachable from other machines: give --token <secret> (or --token generate) so that only \
         holders of the printed address can read the dashboard"
    )]
    TokenRequired(IpAddr),
    /// A token that could leak into logs as a URL, or is too short to guess badly.
    #[error("--token must be 16 to 128 characters of [A-Za-z0-9_-]")]
    BadToken,
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// A bound, not yet serving, dashboard.
pub struct Server {
    listener: TcpListener,
    shared: Arc<Shared>,
    refresh: Duration,
}

impl Server {
    /// Checks the folders, reads them once and binds the address.
    pub async fn bind(config: ServeConfig) -> Result<Server, ServeError> {
        if config.dirs.is_empty() {
            return Err(ServeError::Nothing);
        }
        if let Some(token) = &config.token {
            let ok = (16..=128).contains(&token.len())
                && token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if !ok {
                return Err(ServeError::BadToken);
            }
        } else if !config.bind.is_loopback() {
            return Err(ServeError::TokenRequired(config.bind));
        }
        let mut experiments = Vec::new();
        for dir in &config.dirs {
            match results::inspect_folder(dir) {
                results::FolderState::Experiment => {}
                other => {
                    return Err(ServeError::NotAnExperiment { path: dir.clone(), reason: describe(&other) });
                }
            }
            let dir = dir
                .canonicalize()
                .map_err(|e| ServeError::NotAnExperiment { path: dir.clone(), reason: e.to_string() })?;
            // Records only: the events are read by the refresher once serving, so the first
            // page does not wait for a big experiment's logs.
            let mut w = Watched::new(dir);
            w.refresh_records();
            experiments.push(w);
        }
        let addr = SocketAddr::new(config.bind, config.port);
        let listener = TcpListener::bind(addr).await.map_err(|source| ServeError::Bind { addr, source })?;
        Ok(Server {
            listener,
            shared: Arc::new(Shared::new(experiments, config.token)),
            refresh: config.refresh,
        })
    }

    /// The address it listens on (with the port chosen, when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// Experiments served.
    pub fn experiments(&self) -> usize {
        self.shared.len()
    }

    /// The address to open in a browser, with the token when there is one.
    pub fn url(&self) -> String {
        let addr = self.local_addr();
        let host = if addr.ip().is_unspecified() { "127.0.0.1".to_string() } else { addr.ip().to_string() };
        let host = if host.contains(':') { format!("[{host}]") } else { host };
        match &self.shared.token {
            Some(token) => format!("http://{host}:{}/?token={token}", addr.port()),
            None => format!("http://{host}:{}/", addr.port()),
        }
    }

    /// Serves until the process ends.
    pub async fn run(self) {
        let shared = self.shared.clone();
        let every = self.refresh;
        std::thread::Builder::new()
            .name("clorch-serve-refresh".into())
            .spawn(move || shared.refresh_forever(every))
            .expect("a thread can be started");
        loop {
            let Ok((stream, _)) = self.listener.accept().await else { continue };
            let shared = self.shared.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                    let shared = shared.clone();
                    async move { Ok::<_, Infallible>(respond(shared, request).await) }
                });
                // Request heads larger than this are refused by hyper before any handler runs.
                let _ = hyper::server::conn::http1::Builder::new()
                    .max_buf_size(64 * 1024)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }
}

async fn respond(shared: Arc<Shared>, request: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let shared_token = shared.token.clone();
    let answer = routes::answer(shared, &request).await;
    let head = request.method() == hyper::Method::HEAD;
    let body = if head { Vec::new() } else { answer.body };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = answer.status;
    routes::common_headers(response.headers_mut(), answer.content_type, answer.cacheable);
    if let (true, Some(token)) = (answer.set_cookie, &shared_token) {
        let cookie = format!("{}={token}; HttpOnly; SameSite=Strict; Path=/", routes::COOKIE_NAME);
        if let Ok(value) = hyper::header::HeaderValue::from_str(&cookie) {
            response.headers_mut().insert(hyper::header::SET_COOKIE, value);
        }
    }
    response
}

fn describe(state: &results::FolderState) -> String {
    match state {
        results::FolderState::Missing => "does not exist".to_string(),
        results::FolderState::Empty => "is empty: not a clorch results folder".to_string(),
        results::FolderState::Foreign(found) => format!("not a clorch results folder: {found}"),
        results::FolderState::Experiment => "is an experiment".to_string(),
    }
}

/// A fresh random token: 128 bits from the operating system, as 32 hex digits.
pub fn generate_token() -> std::io::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}
