//! Which request gets which answer — and which gets none.
//!
//! The dashboard is read-only: only `GET` and `HEAD` are answered. Paths are matched segment
//! by segment against a fixed set of routes and never decoded or joined onto a folder: an
//! experiment is named by its index in the served list and a run by its id, which must be one
//! the watched folder holds, so no request can name a file (`..`, `%2e%2e`, absolute paths and
//! symlinks included). With a token, every request must carry it — in an `Authorization:
//! Bearer` header, in the address (`?token=`, which the printed address does; the answer then
//! sets it as an HttpOnly, SameSite=Strict cookie), or as that cookie; without one (loopback only),
//! the `Host` header must name the loopback address, which stops a web page in the user's
//! browser from reaching the dashboard through a rebound DNS name.

use std::sync::Arc;

use hyper::header::{HeaderValue, AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, COOKIE, HOST};
use hyper::{Method, Request, StatusCode};

use crate::assets;
use crate::state::Shared;

/// An answer before it becomes an HTTP response.
pub struct Answer {
    /// The status.
    pub status: StatusCode,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// The body.
    pub body: Vec<u8>,
    /// Whether the body may be cached (embedded assets).
    pub cacheable: bool,
    /// Whether to hand the browser the token as a cookie (the request brought it in its
    /// address), so that the page's own asset and API requests carry it too.
    pub set_cookie: bool,
}

impl Answer {
    fn json(value: &impl serde::Serialize) -> Answer {
        match serde_json::to_vec(value) {
            Ok(body) => Answer {
                status: StatusCode::OK,
                content_type: "application/json",
                body,
                cacheable: false,
                set_cookie: false,
            },
            Err(e) => Answer::error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        }
    }

    fn text(status: StatusCode, text: String) -> Answer {
        Answer {
            status,
            content_type: "text/plain; charset=utf-8",
            body: text.into_bytes(),
            cacheable: false,
            set_cookie: false,
        }
    }

    fn error(status: StatusCode, message: &str) -> Answer {
        Answer::text(status, format!("{message}\n"))
    }
}

/// Answers one request.
pub async fn answer<B>(shared: Arc<Shared>, request: &Request<B>) -> Answer {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return Answer::error(StatusCode::METHOD_NOT_ALLOWED, "clorch serve is read-only: GET only");
    }
    let by_address = match authorise(&shared, request) {
        Ok(by_address) => by_address,
        Err(refusal) => return refusal,
    };
    let mut answer = route(shared, request).await;
    answer.set_cookie = by_address;
    answer
}

async fn route<B>(shared: Arc<Shared>, request: &Request<B>) -> Answer {
    let path = request.uri().path();
    let query = request.uri().query().unwrap_or("");
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    match segments.as_slice() {
        [""] => asset("index.html"),
        ["assets", name] => asset(name),
        ["api", "experiments"] => {
            let list = shared.read_all(crate::api::experiments);
            Answer::json(&list)
        }
        ["api", "experiments", index] => match parse_index(&shared, index) {
            Some(i) => {
                let since = param(query, "since").and_then(|v| v.parse::<u64>().ok());
                shared.read(i, |w| {
                    if since == Some(w.version) {
                        Answer::json(&serde_json::json!({ "version": w.version, "unchanged": true }))
                    } else {
                        Answer::json(&crate::api::experiment(w, results::unix_now()))
                    }
                })
            }
            None => not_found(),
        },
        ["api", "experiments", index, "table"] => match parse_index(&shared, index) {
            Some(i) => match shared.table(i).await {
                Ok(json) => Answer {
                    status: StatusCode::OK,
                    content_type: "application/json",
                    body: json.to_vec(),
                    cacheable: false,
                    set_cookie: false,
                },
                Err(e) => Answer::error(StatusCode::INTERNAL_SERVER_ERROR, &e),
            },
            None => not_found(),
        },
        ["api", "experiments", index, "runs", id] => match parse_index(&shared, index) {
            Some(i) => shared.read(i, |w| match w.runs.get(*id) {
                Some(r) => Answer::json(&crate::api::run(w, r, results::unix_now())),
                None => not_found(),
            }),
            None => not_found(),
        },
        ["api", "experiments", index, "runs", id, "log"] => match parse_index(&shared, index) {
            Some(i) => shared.read(i, |w| match w.runs.get(*id) {
                Some(r) => Answer::text(StatusCode::OK, crate::api::log_tail(r)),
                None => not_found(),
            }),
            None => not_found(),
        },
        _ => not_found(),
    }
}

fn not_found() -> Answer {
    Answer::error(StatusCode::NOT_FOUND, "not found")
}

fn asset(name: &str) -> Answer {
    match assets::get(name) {
        Some((content_type, body)) => Answer {
            status: StatusCode::OK,
            content_type,
            body: body.to_vec(),
            cacheable: true,
            set_cookie: false,
        },
        None => not_found(),
    }
}

/// An experiment index as a request names it: decimal digits only, within the served list.
fn parse_index(shared: &Shared, text: &str) -> Option<usize> {
    if text.is_empty() || text.len() > 6 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok().filter(|i| *i < shared.len())
}

/// The value of `key` in a query string (no percent-decoding: no value this server reads
/// needs it).
fn param<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query.split('&').find_map(|pair| pair.split_once('=').filter(|(k, _)| *k == key).map(|(_, v)| v))
}

/// Whether the request may be answered; `Ok(true)` when it brought the token in its address
/// (a browser opening the printed address), which then becomes a cookie.
fn authorise<B>(shared: &Shared, request: &Request<B>) -> Result<bool, Answer> {
    match &shared.token {
        Some(token) => {
            let headers = request.headers();
            let bearer = headers
                .get(AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "));
            let cookie = headers.get_all(COOKIE).iter().filter_map(|v| v.to_str().ok()).find_map(|v| {
                v.split(';')
                    .find_map(|pair| pair.trim().strip_prefix(COOKIE_NAME).and_then(|r| r.strip_prefix('=')))
            });
            let in_address = param(request.uri().query().unwrap_or(""), "token");
            let matches =
                |given: Option<&str>| given.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes()));
            if matches(bearer) || matches(cookie) {
                Ok(false)
            } else if matches(in_address) {
                Ok(true)
            } else {
                Err(Answer::error(
                    StatusCode::UNAUTHORIZED,
                    "this dashboard needs its token: open the address `clorch serve` printed",
                ))
            }
        }
        None => {
            let host = request.headers().get(HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
            if is_loopback_host(host) {
                Ok(false)
            } else {
                Err(Answer::error(
                    StatusCode::FORBIDDEN,
                    "without a token this dashboard answers only requests to 127.0.0.1, localhost or [::1]",
                ))
            }
        }
    }
}

/// The cookie that carries the token after the first page load.
pub const COOKIE_NAME: &str = "clorch_token";

/// Whether a `Host` header names the loopback interface (with or without a port).
fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    matches!(name, "127.0.0.1" | "localhost" | "::1")
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Headers every response carries: no caching of data, no sniffing, no framing, and scripts
/// only from the dashboard itself.
pub fn common_headers(headers: &mut hyper::HeaderMap, content_type: &'static str, cacheable: bool) {
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers
        .insert(CACHE_CONTROL, HeaderValue::from_static(if cacheable { "max-age=300" } else { "no-store" }));
    headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
        ),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_are_told_apart_from_others() {
        for host in ["127.0.0.1:8080", "localhost:1", "[::1]:8080", "localhost", "127.0.0.1"] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in ["evil.example:8080", "127.0.0.1.evil.example", "", "[::2]:1", "10.0.0.1:8080"] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }

    #[test]
    fn query_parameters_and_tokens() {
        assert_eq!(param("a=1&since=42", "since"), Some("42"));
        assert_eq!(param("sincex=1", "since"), None);
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd") && !constant_time_eq(b"abc", b"ab"));
    }
}
