//! A tiny HTTP/1.1 responder for metrics scrapes, on a thread of its own.
//!
//! `GET /metrics` answers the Prometheus text exposition, `GET
//! /metrics.json` the JSON rendering; anything else gets a short error
//! (400 for a request it cannot parse, 404, 405, 431 for an oversized
//! head). One request per connection, with a deadline for the whole
//! exchange and a bounded request head, so that a misbehaving client,
//! however slowly it trickles, is let go at the deadline.
//!
//! The thread polls its clients (nonblocking sockets, mio) and serves up
//! to [`MAX_CLIENTS`] at once, each as its bytes arrive: a scrape is
//! answered as soon as its request is in, whatever other connections are
//! doing. Serving one connection at a time, as this did before, let ten
//! clients that connect and say nothing hold a scrape back 20 s (each for
//! its whole deadline). A client that comes when the endpoint is full
//! takes the place of the one that has been there longest, so a crowd of
//! idle connections cannot shut a scraper out either: it only makes the
//! oldest of them go sooner.
//!
//! The request never decides how much is allocated: a client holds a head
//! buffer of [`MAX_REQUEST_HEAD`] bytes and, once it has asked, its answer.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;

use super::export::{to_json, to_prometheus};
use super::Snapshot;

/// Largest request head read (request line and headers), in bytes.
pub const MAX_REQUEST_HEAD: usize = 8 * 1024;

/// Most clients served at once; a newcomer past it takes the place of the
/// client that has been there longest.
pub const MAX_CLIENTS: usize = 32;

/// How long a client may take in all, from accept to close: to send its
/// request, read the answer and (when refused) finish sending. A deadline
/// for the whole exchange, not a timeout per read, so that a client
/// trickling a byte at a time cannot hold its place for longer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);

/// Input read (and dropped) from a refused client before closing, so that
/// closing with unread input does not reset the connection before the
/// client has read the answer.
const LINGER_BYTES: usize = 16 * MAX_REQUEST_HEAD;

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX);

/// A running metrics endpoint. Dropping it stops the responder thread.
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// Listens on `addr` (port 0 picks one) and answers scrapes with what
    /// `snapshot` returns at the time of each request.
    ///
    /// # Errors
    ///
    /// The bind, poller or thread creation error.
    pub fn start(
        addr: SocketAddr,
        snapshot: impl Fn() -> Snapshot + Send + 'static,
    ) -> io::Result<MetricsServer> {
        MetricsServer::on(std::net::TcpListener::bind(addr)?, snapshot)
    }

    /// Answers scrapes on `listener`, bound by the caller (so that a busy
    /// port can be found before anything else is started), with what
    /// `snapshot` returns at the time of each request.
    ///
    /// # Errors
    ///
    /// The error making the listener non-blocking or reading its address,
    /// or creating the poller or the thread.
    pub fn on(
        listener: std::net::TcpListener,
        snapshot: impl Fn() -> Snapshot + Send + 'static,
    ) -> io::Result<MetricsServer> {
        listener.set_nonblocking(true)?;
        let mut listener = TcpListener::from_std(listener);
        let addr = listener.local_addr()?;
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("corelane-metrics-http".into())
            .spawn(move || {
                let mut responder = Responder {
                    poll,
                    listener,
                    clients: Slab::with_capacity(MAX_CLIENTS),
                };
                responder.run(&stopping, &snapshot);
            })?;
        Ok(MetricsServer {
            addr,
            stop,
            waker,
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
        if let Err(error) = self.waker.wake() {
            log::warn!("metrics endpoint: cannot wake the responder to stop it: {error}");
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The responder thread's state: its poller, listener and clients.
struct Responder {
    poll: Poll,
    listener: TcpListener,
    clients: Slab<Client>,
}

/// Where a client's exchange is.
enum Stage {
    /// Reading the request head.
    Reading,
    /// Writing the answer; `linger` after it if the request was refused.
    Writing {
        answer: Vec<u8>,
        written: usize,
        linger: bool,
    },
    /// Reading and dropping what a refused client still sends.
    Lingering { left: usize },
}

/// One connection being served.
struct Client {
    stream: TcpStream,
    /// When it is let go, done or not.
    deadline: Instant,
    head: Box<[u8]>,
    filled: usize,
    /// Bytes of `head` searched for its end (and found to hold none).
    scanned: usize,
    stage: Stage,
}

/// What one step of an exchange came to.
enum Step {
    /// On to the next stage.
    Next(Stage),
    /// The socket has no more for now: wait for its next event.
    Wait,
    /// The exchange is over: close.
    Done,
}

impl Responder {
    fn run(&mut self, stop: &AtomicBool, snapshot: &impl Fn() -> Snapshot) {
        let mut events = Events::with_capacity(64);
        while !stop.load(Ordering::Relaxed) {
            let timeout = self
                .clients
                .iter()
                .map(|(_, client)| client.deadline)
                .min()
                .map(|deadline| deadline.saturating_duration_since(Instant::now()));
            if let Err(error) = self.poll.poll(&mut events, timeout) {
                if error.kind() != io::ErrorKind::Interrupted {
                    log::warn!("metrics endpoint: poll failed: {error}");
                    return;
                }
            }
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(),
                    WAKER => {}
                    Token(key) => {
                        let done = match self.clients.get_mut(key) {
                            Some(client) => client.advance(snapshot),
                            None => false,
                        };
                        if done {
                            self.remove(key);
                        }
                    }
                }
            }
            self.expire();
        }
    }

    /// Takes every waiting connection, making room by letting the longest
    /// served client go when full.
    fn accept(&mut self) {
        loop {
            let mut stream = match self.listener.accept() {
                Ok((stream, _)) => stream,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    // Out of descriptors, or a connection reset before it
                    // was taken. Connections still waiting raise no new
                    // event: the next one to come (a scraper retries) does.
                    log::warn!("metrics endpoint: accept failed: {error}");
                    return;
                }
            };
            if self.clients.len() >= MAX_CLIENTS {
                let oldest = self
                    .clients
                    .iter()
                    .min_by_key(|(_, client)| client.deadline)
                    .map(|(key, _)| key);
                if let Some(key) = oldest {
                    self.remove(key);
                }
            }
            let entry = self.clients.vacant_entry();
            let interest = Interest::READABLE | Interest::WRITABLE;
            if let Err(error) =
                self.poll
                    .registry()
                    .register(&mut stream, Token(entry.key()), interest)
            {
                log::warn!("metrics endpoint: cannot poll a client: {error}");
                continue;
            }
            entry.insert(Client {
                stream,
                deadline: Instant::now() + CLIENT_TIMEOUT,
                head: vec![0; MAX_REQUEST_HEAD].into_boxed_slice(),
                filled: 0,
                scanned: 0,
                stage: Stage::Reading,
            });
        }
    }

    /// Lets go the clients whose deadline has passed.
    fn expire(&mut self) {
        let now = Instant::now();
        let registry = self.poll.registry();
        self.clients.retain(|_, client| {
            if client.deadline > now {
                return true;
            }
            log::debug!("metrics endpoint: a client ran out of time");
            let _ = registry.deregister(&mut client.stream);
            false
        });
    }

    fn remove(&mut self, key: usize) {
        let mut client = self.clients.remove(key);
        let _ = self.poll.registry().deregister(&mut client.stream);
    }
}

impl Client {
    /// Moves the exchange on as far as the socket allows now; returns
    /// whether it is over.
    fn advance(&mut self, snapshot: &impl Fn() -> Snapshot) -> bool {
        loop {
            let step = match &mut self.stage {
                Stage::Reading => self.read_request(snapshot),
                Stage::Writing {
                    answer,
                    written,
                    linger,
                } => write_answer(&mut self.stream, answer, written, *linger),
                Stage::Lingering { left } => linger(&mut self.stream, left),
            };
            match step {
                Ok(Step::Next(next)) => self.stage = next,
                Ok(Step::Wait) => return false,
                Ok(Step::Done) => return true,
                Err(error) => {
                    log::debug!("metrics endpoint: {error}");
                    return true;
                }
            }
        }
    }

    /// Reads the head until it is whole (then answers it), refused, or
    /// the socket has no more for now.
    fn read_request(&mut self, snapshot: &impl Fn() -> Snapshot) -> io::Result<Step> {
        loop {
            let head = &self.head[..self.filled];
            if let Some(end) = find_head_end_from(head, self.scanned) {
                return Ok(Step::Next(answer(parse(&head[..end]), snapshot)));
            }
            self.scanned = self.filled;
            if self.filled == self.head.len() {
                let refused = Request::Refuse(431, "request head too large\n");
                return Ok(Step::Next(answer(refused, snapshot)));
            }
            match self.stream.read(&mut self.head[self.filled..]) {
                // The client closed before finishing its request.
                Ok(0) if self.filled == 0 => return Ok(Step::Done),
                Ok(0) => {
                    let refused = Request::Refuse(400, "incomplete request\n");
                    return Ok(Step::Next(answer(refused, snapshot)));
                }
                Ok(read) => self.filled += read,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(Step::Wait),
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
    }
}

/// Writes what is left of `answer`; then lingers if `linger`, or is done.
fn write_answer(
    stream: &mut TcpStream,
    answer: &[u8],
    written: &mut usize,
    linger: bool,
) -> io::Result<Step> {
    while *written < answer.len() {
        match stream.write(&answer[*written..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(count) => *written += count,
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(Step::Wait),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    if !linger {
        return Ok(Step::Done);
    }
    let _ = stream.shutdown(Shutdown::Write);
    Ok(Step::Next(Stage::Lingering { left: LINGER_BYTES }))
}

/// After refusing a client that may still be sending, reads (and drops) a
/// bounded amount of what it sends, until it closes.
fn linger(stream: &mut TcpStream, left: &mut usize) -> io::Result<Step> {
    let mut sink = [0u8; 4096];
    while *left > 0 {
        match stream.read(&mut sink) {
            Ok(0) => break,
            Ok(read) => *left = left.saturating_sub(read),
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(Step::Wait),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(Step::Done)
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

/// The answer to `request`, and what comes after it.
fn answer(request: Request<'_>, snapshot: &impl Fn() -> Snapshot) -> Stage {
    let (status, content_type, body, head_only) = match request {
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
            (status, content_type, body, head_only)
        }
        Request::Refuse(status, reason) => (status, "text/plain", reason.to_string(), false),
    };
    Stage::Writing {
        answer: response(status, content_type, &body, head_only),
        written: 0,
        linger: matches!(request, Request::Refuse(..)),
    }
}

/// Position just past the first blank line, which ends the head, if
/// present. Lines end with CRLF or a bare LF, mixed as clients send them.
/// The first blank line, not the first of one kind: otherwise a head seen
/// in part could end at a bare LF one that a later CRLF one overrides once
/// more has arrived.
fn find_head_end(bytes: &[u8]) -> Option<usize> {
    find_head_end_from(bytes, 1)
}

/// As [`find_head_end`], for a blank line ending at `from` or later: a
/// client's head is searched only where it grew. Searched from the start
/// on every read, a head trickled a byte at a time costs the square of its
/// length: 32 million byte comparisons for 8 KiB, for each of the clients
/// served at once.
fn find_head_end_from(bytes: &[u8], from: usize) -> Option<usize> {
    (from.max(1)..bytes.len())
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

fn response(status: u16, content_type: &str, body: &str, head_only: bool) -> Vec<u8> {
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
    response
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
    fn a_head_searched_as_it_grows_ends_where_the_whole_one_does() {
        let heads: [&[u8]; 4] = [
            b"GET /metrics HTTP/1.1\r\nHost: a\r\n\r\nrest",
            b"GET / HTTP/1.1\n\nX: y\r\n\r\n",
            b"GET / HTTP/1.1\r\n\nX",
            b"no end here\r\n",
        ];
        for head in heads {
            for cut in 0..=head.len() {
                // The search that found nothing in the first `cut` bytes
                // goes on from there once the rest arrives.
                let early = find_head_end_from(&head[..cut], 0);
                let resumed = early.or_else(|| find_head_end_from(head, cut));
                assert_eq!(resumed, find_head_end(head), "{head:?} cut at {cut}");
            }
        }
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
