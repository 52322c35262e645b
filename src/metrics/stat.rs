//! `corelane stat`: a live per-core view of a running server, from its
//! Prometheus endpoint (`corelane serve --metrics ADDR`).
//!
//! Each refresh scrapes `/metrics` once and shows, per core, rates since
//! the previous scrape (messages delivered and sent, refusals, busy share)
//! and levels (backlog, connections, delivery p99 since start).

use std::fmt::Write as _;
use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::deadline::{read_by, write_all_by};
use super::scrape::{self, Sample};

/// Largest response read from the endpoint.
const MAX_RESPONSE: u64 = 16 << 20;

/// Fetches `GET /metrics` from `addr`; returns the body.
///
/// `timeout` bounds the whole fetch, from connecting to the last byte of
/// the answer: an endpoint that trickles its answer cannot hold it longer.
///
/// # Errors
///
/// Connection or read errors, a non-200 status, or a response over 16 MiB;
/// [`io::ErrorKind::InvalidData`] as soon as the answer starts with
/// anything but `HTTP/` (or is not UTF-8); [`io::ErrorKind::TimedOut`] (or `WouldBlock`, as the socket reports a
/// read that timed out) if the answer is not complete within `timeout`.
pub fn fetch(addr: SocketAddr, timeout: Duration) -> io::Result<String> {
    let deadline = Instant::now() + timeout;
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    write_all_by(
        &mut stream,
        b"GET /metrics HTTP/1.1\r\nHost: corelane\r\nConnection: close\r\n\r\n",
        deadline,
    )?;
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let read = match read_by(&mut stream, &mut chunk, deadline) {
            Ok(0) => break,
            Ok(read) => read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        if (bytes.len() + read) as u64 > MAX_RESPONSE {
            return Err(io::Error::other(format!(
                "response over {MAX_RESPONSE} bytes"
            )));
        }
        bytes.extend_from_slice(&chunk[..read]);
        // Something that answers other than in HTTP (the server's Redis
        // port says `-ERR unknown command 'GET'`) is not waited on.
        let start = bytes.len().min(HTTP_START.len());
        if bytes[..start] != HTTP_START[..start] {
            return Err(not_http(&bytes));
        }
    }
    let response = String::from_utf8(bytes)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "response is not UTF-8"))?;
    response_body(&response).map(str::to_string)
}

/// How every HTTP response starts.
const HTTP_START: &[u8] = b"HTTP/";

/// Longest part of an answer that is not HTTP repeated in the error.
const SHOWN_ANSWER: usize = 80;

/// The error for an answer that is not HTTP, showing its first line.
fn not_http(answer: &[u8]) -> io::Error {
    let line = answer.split(|&byte| byte == b'\r' || byte == b'\n').next();
    let line = line.unwrap_or_default();
    let shown = String::from_utf8_lossy(&line[..line.len().min(SHOWN_ANSWER)]);
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("answered {shown:?}, not HTTP"),
    )
}

/// The body of a whole HTTP response, if its status is 200.
///
/// # Errors
///
/// A response without the blank line that ends its head, or with another
/// status (named in the error).
pub fn response_body(response: &str) -> io::Result<&str> {
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| io::Error::other("response without a header end"))?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        let status = head.lines().next().unwrap_or("");
        return Err(io::Error::other(format!("endpoint answered {status:?}")));
    }
    Ok(body)
}

/// One core's numbers from one scrape.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CoreSample {
    /// Counter values, cumulative: requests served (a server's commands).
    pub requests: f64,
    /// Messages delivered.
    pub delivered: f64,
    /// Messages sent.
    pub sent: f64,
    /// Sends refused.
    pub refused: f64,
    /// Seconds busy.
    pub busy_s: f64,
    /// Seconds busy, spinning or parked.
    pub accounted_s: f64,
    /// Lane plus handler backlog, bytes.
    pub backlog: f64,
    /// Connections.
    pub connections: f64,
    /// Delivery p99 over all kinds' summaries (the largest), seconds.
    pub p99_s: f64,
}

/// Groups `samples` by their `core` label.
pub fn by_core(samples: &[Sample]) -> Vec<CoreSample> {
    let mut cores: Vec<CoreSample> = Vec::new();
    for sample in samples {
        let Some(core) = sample.label("core").and_then(|c| c.parse::<usize>().ok()) else {
            continue;
        };
        // Core labels come from the server; do not let one allocate much.
        if core >= 4096 {
            continue;
        }
        if cores.len() <= core {
            cores.resize(core + 1, CoreSample::default());
        }
        let entry = &mut cores[core];
        let v = sample.value;
        match sample.name.as_str() {
            "corelane_requests_total" => entry.requests = v,
            "corelane_messages_delivered_total" => entry.delivered = v,
            "corelane_messages_sent_total" => entry.sent = v,
            "corelane_messages_refused_total" => entry.refused = v,
            "corelane_lane_backlog_bytes" | "corelane_handler_backlog_bytes" => entry.backlog += v,
            "corelane_connections" => entry.connections = v,
            "corelane_core_seconds_total" => {
                entry.accounted_s += v;
                if sample.label("state") == Some("busy") {
                    entry.busy_s = v;
                }
            }
            "corelane_delivery_latency_seconds" if sample.label("quantile") == Some("0.99") => {
                entry.p99_s = entry.p99_s.max(v);
            }
            _ => {}
        }
    }
    cores
}

/// The view between two scrapes `seconds` apart.
pub fn render(before: &[CoreSample], after: &[CoreSample], seconds: f64) -> String {
    let mut text = String::new();
    let _ = writeln!(
        text,
        "{:<5} {:>12} {:>12} {:>12} {:>10} {:>6} {:>12} {:>6} {:>12}",
        "core",
        "request/s",
        "deliver/s",
        "send/s",
        "refuse/s",
        "busy%",
        "backlog_B",
        "conns",
        "p99_us"
    );
    let seconds = seconds.max(1e-9);
    for (core, now) in after.iter().enumerate() {
        let then = before.get(core).cloned().unwrap_or_default();
        let accounted = increase(now.accounted_s, then.accounted_s);
        let busy = if accounted > 0.0 {
            increase(now.busy_s, then.busy_s) / accounted * 100.0
        } else {
            0.0
        };
        let _ = writeln!(
            text,
            "{:<5} {:>12.0} {:>12.0} {:>12.0} {:>10.0} {:>6.1} {:>12} {:>6} {:>12.1}",
            core,
            increase(now.requests, then.requests) / seconds,
            increase(now.delivered, then.delivered) / seconds,
            increase(now.sent, then.sent) / seconds,
            increase(now.refused, then.refused) / seconds,
            busy,
            now.backlog,
            now.connections,
            now.p99_s * 1e6,
        );
    }
    text
}

/// How much a counter grew from `then` to `now`. A counter that went down
/// was started over (the server restarted between two scrapes), so all of
/// `now` is new, as Prometheus's `rate` reads a reset; never negative.
fn increase(now: f64, then: f64) -> f64 {
    if now >= then {
        now - then
    } else {
        now
    }
}

/// Scrapes `addr` every `every`, printing the view to `out`, `count`
/// times (forever if `None`). A scrape that fails after the first has
/// worked is shown as a line saying so, counted as one of the `count`, and
/// the next one is tried.
///
/// # Errors
///
/// The first scrape, if it fails or does not parse; a write to `out`.
pub fn watch(
    addr: SocketAddr,
    every: Duration,
    count: Option<u64>,
    out: &mut impl Write,
) -> io::Result<()> {
    let scrape = || -> io::Result<Vec<CoreSample>> {
        let body = fetch(addr, Duration::from_secs(5))?;
        let samples = scrape::parse(&body).map_err(io::Error::other)?;
        Ok(by_core(&samples))
    };
    let mut before = scrape()?;
    let mut then = Instant::now();
    let mut shown = 0;
    while count.is_none_or(|count| shown < count) {
        std::thread::sleep(every);
        // Once a first scrape has worked, the server is the right one: a
        // failed scrape (a restart, a moment's overload) is shown and the
        // view goes on, with rates over the time since the last answer.
        let after = match scrape() {
            Ok(after) => after,
            Err(error) => {
                writeln!(
                    out,
                    "corelane stat {addr}: no answer ({error}); trying again"
                )?;
                out.flush()?;
                shown += 1;
                continue;
            }
        };
        let now = Instant::now();
        let view = render(&before, &after, now.duration_since(then).as_secs_f64());
        writeln!(out, "corelane stat {addr}\n{view}")?;
        out.flush()?;
        before = after;
        then = now;
        shown += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_gives_its_body_only_with_status_200() {
        assert_eq!(
            response_body("HTTP/1.1 200 OK\r\nA: b\r\n\r\nx 1\n").unwrap(),
            "x 1\n"
        );
        let refused = response_body("HTTP/1.1 404 Not Found\r\n\r\nnot found").unwrap_err();
        assert!(refused.to_string().contains("404 Not Found"), "{refused}");
        let cut = response_body("HTTP/1.1 200 OK\r\nA: b\r\n").unwrap_err();
        assert!(cut.to_string().contains("header end"), "{cut}");
    }

    #[test]
    fn rates_come_from_two_scrapes() {
        let scrape = |requests: f64, delivered: f64, busy: f64| {
            let text = format!(
                "corelane_requests_total{{core=\"1\"}} {requests}\n\
                 corelane_messages_delivered_total{{core=\"1\"}} {delivered}\n\
                 corelane_core_seconds_total{{core=\"1\",state=\"busy\"}} {busy}\n\
                 corelane_core_seconds_total{{core=\"1\",state=\"parked\"}} 1\n\
                 corelane_connections{{core=\"1\"}} 3\n\
                 corelane_delivery_latency_seconds{{core=\"1\",kind=\"A\",quantile=\"0.99\"}} 0.00002\n"
            );
            by_core(&scrape::parse(&text).unwrap())
        };
        let before = scrape(1000.0, 100.0, 0.5);
        let after = scrape(7000.0, 300.0, 1.0);
        assert_eq!(after.len(), 2);
        let view = render(&before, &after, 2.0);
        let header: Vec<&str> = view.lines().next().unwrap().split_whitespace().collect();
        assert_eq!(header[1..3], ["request/s", "deliver/s"]);
        let row = view.lines().nth(2).unwrap();
        let fields: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(fields[0], "1");
        assert_eq!(fields[1], "3000"); // (7000 - 1000) / 2 s
        assert_eq!(fields[2], "100"); // (300 - 100) / 2 s
        assert_eq!(fields[5], "100.0"); // all new time was busy
        assert_eq!(fields[7], "3");
        assert_eq!(fields[8], "20.0");

        // The server restarted between the scrapes: its counters started
        // over, so the rates count what the new one did, never below 0.
        let restarted = scrape(400.0, 60.0, 0.25);
        let view = render(&after, &restarted, 2.0);
        let fields: Vec<&str> = view.lines().nth(2).unwrap().split_whitespace().collect();
        assert_eq!(fields[1..3], ["200", "30"]);
        assert_eq!(fields[5], "20.0"); // 0.25 s busy of 1.25 s accounted
    }
}
