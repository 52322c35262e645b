//! A tiny HTTP/1.1 responder for metrics scrapes, on a thread of its own.
//!
//! `GET /metrics` answers the Prometheus text exposition, `GET
//! /metrics.json` the JSON rendering; anything else gets a short error
//! (400 for a request it cannot parse, 404, 405, 431 for an oversized
//! head). One connection at a time, one request per connection, with a
//! deadline for the whole exchange and a bounded request head: a scraper
//! is not a crowd, and a misbehaving client, however slowly it trickles,
//! can hold the responder for at most the deadline.
//! The request never decides how much is allocated.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::deadline::{read_by, write_all_by};
use super::export::{to_json, to_prometheus};
use super::Snapshot;

/// Largest request head read (request line and headers), in bytes.
pub const MAX_REQUEST_HEAD: usize = 8 * 1024;

/// How long a client may take in all, from accept to close: to send its
/// request, read the answer and (when refused) finish sending. A deadline
/// for the whole exchange, not a timeout per read, so that a client
/// trickling a byte at a time cannot hold the responder (and, through its
/// drop, the shutdown of `corelane serve`) for longer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);

/// A running metrics endpoint. Dropping it stops the responder thread.
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// Listens on `addr` (port 0 picks one) and answers scrapes with what
    /// `snapshot` returns at the time of each request.
    ///
    /// # Errors
    ///
    /// The bind or thread creation error.
    pub fn start(
        addr: SocketAddr,
        snapshot: impl Fn() -> Snapshot + Send + 'static,
    ) -> io::Result<MetricsServer> {
        MetricsServer::on(TcpListener::bind(addr)?, snapshot)
    }

    /// Answers scrapes on `listener`, bound by the caller (so that a busy
    /// port can be found before anything else is started), with what
    /// `snapshot` returns at the time of each request.
    ///
    /// # Errors
    ///
    /// The error reading the listener's address, or creating the thread.
    pub fn on(
        listener: TcpListener,
        snapshot: impl Fn() -> Snapshot + Send + 'static,
    ) -> io::Result<MetricsServer> {
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("corelane-metrics-http".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    if stopping.load(Ordering::Relaxed) {
                        break;
                    }
                    match stream {
                        Ok(stream) => {
                            if let Err(error) = answer(stream, &snapshot) {
                                log::debug!("metrics endpoint: {error}");
                            }
                        }
                        Err(error) => log::warn!("metrics endpoint: accept failed: {error}"),
                    }
                }
            })?;
        Ok(MetricsServer {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the blocking accept with a connection of our own.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A request as the endpoint reads it, or the status to refuse it with.
#[derive(Debug, PartialEq, Eq)]
pub enum Request<'a> {
    /// `GET` or `HEAD` of `path` (the target without its query).
    Get {
        /// Starts with `/`; holds no space and no `?`.
        path: &'a str,
        /// `HEAD`: the answer has no body.
        head_only: bool,
    },
    /// Refused with this status and a one-line reason.
    Refuse(u16, &'static str),
}

/// Reads the request whose head starts `bytes`: `None` while the blank
/// line that ends the head has not arrived, whatever else has (the caller
/// bounds how much it buffers, [`MAX_REQUEST_HEAD`]). Nothing after the
/// head is looked at. Exposed for the fuzz target.
pub fn request(bytes: &[u8]) -> Option<Request<'_>> {
    find_head_end(bytes).map(|end| parse(&bytes[..end]))
}

fn answer(mut stream: TcpStream, snapshot: &impl Fn() -> Snapshot) -> io::Result<()> {
    let deadline = Instant::now() + CLIENT_TIMEOUT;
    let mut head = [0u8; MAX_REQUEST_HEAD];
    let mut filled = 0;
    let request = loop {
        if let Some(request) = request(&head[..filled]) {
            break request;
        }
        if filled == head.len() {
            break Request::Refuse(431, "request head too large\n");
        }
        let read = read_by(&mut stream, &mut head[filled..], deadline)?;
        if read == 0 {
            // The client closed before finishing its request.
            if filled == 0 {
                return Ok(());
            }
            break Request::Refuse(400, "incomplete request\n");
        }
        filled += read;
    };
    match request {
        Request::Get { path, head_only } => {
            let (status, content_type, body) = match path {
                "/metrics" => (
                    200,
                    super::export::PROMETHEUS_CONTENT_TYPE,
                    to_prometheus(&snapshot()),
                ),
                "/metrics.json" => (200, "application/json", to_json(&snapshot()).to_string()),
                _ => (404, "text/plain", "not found: try /metrics\n".to_string()),
            };
            respond(
                &mut stream,
                status,
                content_type,
                &body,
                head_only,
                deadline,
            )
        }
        Request::Refuse(status, reason) => {
            respond(&mut stream, status, "text/plain", reason, false, deadline)?;
            linger(&mut stream, deadline);
            Ok(())
        }
    }
}

/// After refusing a client that may still be sending, reads (and drops)
/// a bounded amount of what it sends, so that closing with unread input
/// does not reset the connection before the client has read the answer.
fn linger(stream: &mut TcpStream, deadline: Instant) {
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut sink = [0u8; 4096];
    let mut left = 16 * MAX_REQUEST_HEAD;
    while left > 0 {
        match read_by(stream, &mut sink, deadline) {
            Ok(0) | Err(_) => break,
            Ok(read) => left = left.saturating_sub(read),
        }
    }
}

/// Position just past the first blank line, which ends the head, if
/// present. Lines end with CRLF or a bare LF, mixed as clients send them.
/// The first blank line, not the first of one kind: otherwise a head seen
/// in part could end at a bare LF one that a later CRLF one overrides once
/// more has arrived.
fn find_head_end(bytes: &[u8]) -> Option<usize> {
    (1..bytes.len())
        .find(|&at| {
            bytes[at] == b'\n'
                && (bytes[at - 1] == b'\n' || (at >= 2 && bytes[at - 2..at] == *b"\n\r"))
        })
        .map(|at| at + 1)
}

fn parse(head: &[u8]) -> Request<'_> {
    let Ok(head) = std::str::from_utf8(head) else {
        return Request::Refuse(400, "request is not text\n");
    };
    let line = head.lines().next().unwrap_or("");
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Request::Refuse(400, "malformed request line\n");
    };
    if !matches!(version, "HTTP/1.0" | "HTTP/1.1") || !target.starts_with('/') {
        return Request::Refuse(400, "malformed request line\n");
    }
    let path = target.split('?').next().unwrap_or(target);
    match method {
        "GET" => Request::Get {
            path,
            head_only: false,
        },
        "HEAD" => Request::Get {
            path,
            head_only: true,
        },
        _ => Request::Refuse(405, "only GET and HEAD\n"),
    }
}

fn respond(
    stream: &mut TcpStream,
    status: u16,
    content_type: &str,
    body: &str,
    head_only: bool,
    deadline: Instant,
) -> io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Request Header Fields Too Large",
    };
    let mut response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        response.extend_from_slice(body.as_bytes());
    }
    write_all_by(stream, &response, deadline)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_request_lines() {
        assert_eq!(
            parse(b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n"),
            Request::Get {
                path: "/metrics",
                head_only: false
            }
        );
        assert_eq!(
            parse(b"HEAD / HTTP/1.0\r\n\r\n"),
            Request::Get {
                path: "/",
                head_only: true
            }
        );
        assert!(matches!(
            parse(b"POST /metrics HTTP/1.1\r\n\r\n"),
            Request::Refuse(405, _)
        ));
        for bad in [
            &b"GET\r\n\r\n"[..],
            b"GET /metrics\r\n\r\n",
            b"GET metrics HTTP/1.1\r\n\r\n",
            b"GET /metrics HTTP/9\r\n\r\n",
            b"GET /metrics HTTP/1.1 extra\r\n\r\n",
            b"\xff\xfe /x HTTP/1.1\r\n\r\n",
            b"\r\n\r\n",
        ] {
            assert!(matches!(parse(bad), Request::Refuse(400, _)), "{bad:?}");
        }
    }

    #[test]
    fn reads_a_request_only_once_its_head_is_whole() {
        let sent = b"GET /metrics HTTP/1.1\r\nHost: a\r\n\r\nleftover";
        let end = sent.len() - "leftover".len();
        for cut in 0..end {
            assert_eq!(request(&sent[..cut]), None, "cut at {cut}");
        }
        let get = Some(Request::Get {
            path: "/metrics",
            head_only: false,
        });
        assert_eq!(request(&sent[..end]), get);
        assert_eq!(request(sent), get);
    }

    #[test]
    fn finds_the_end_of_the_head() {
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n\r\nbody"), Some(18));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\n\n"), Some(16));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n"), None);
        assert_eq!(find_head_end(b"\r\n\r\n"), Some(4));
        assert_eq!(find_head_end(b"\n\n"), Some(2));
        // The first blank line ends the head, whatever comes after it.
        assert_eq!(find_head_end(b"GET / HTTP/1.1\n\nX: y\r\n\r\n"), Some(16));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n\nX"), Some(17));
    }
}
