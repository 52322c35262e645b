//! Metrics end to end: recording on real cores, the exports read back by
//! their own readers, the HTTP endpoint, C12, and the stall detector.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::time::Duration;

use corelane::frame::Message;
use corelane::metrics::export::{to_prometheus, IntervalLog};
use corelane::metrics::http::MetricsServer;
use corelane::metrics::watch::{Alert, WatchConfig, Watcher};
use corelane::metrics::{scrape, CoreMetrics, Interval, Snapshot, MAX_TRACKED_NS};
use corelane::runtime::{Context, Handler, Running, Runtime, RuntimeHandle};

mod common;
use common::idle;

/// Two kinds of message, so latency is kept by kind.
#[derive(rkyv::Archive, rkyv::Serialize)]
enum Ping {
    Ball(u32),
    Note,
    /// Makes the receiving handler block until the test lets it go.
    Hold,
}

impl Message for Ping {
    const TYPE_ID: u16 = 3;
    const VERSION: u8 = 1;
    const NAME: &'static str = "Ping";

    fn kind(archived: &ArchivedPing) -> &'static str {
        match archived {
            ArchivedPing::Ball(_) => "Ball",
            ArchivedPing::Note => "Note",
            ArchivedPing::Hold => "Hold",
        }
    }
}

/// Bounces a ball `rounds` times between cores 0 and 1, with a note each
/// time core 1 receives it.
struct Bouncer {
    rounds: u32,
}

impl Handler for Bouncer {
    type Message = Ping;

    fn on_start(&mut self, cx: &mut Context<'_, Ping>) {
        if cx.core() == 0 {
            cx.send(1, &Ping::Ball(0)).unwrap();
        }
    }

    fn on_message(&mut self, cx: &mut Context<'_, Ping>, from: usize, msg: &ArchivedPing) {
        if let ArchivedPing::Ball(hits) = msg {
            // Each ball is a request served, as a server counts commands.
            cx.count_requests(1);
            let hits = hits.to_native() + 1;
            if cx.core() == 1 {
                cx.send(0, &Ping::Note).unwrap();
            }
            if hits == self.rounds {
                cx.stop_runtime();
            } else {
                cx.send(from, &Ping::Ball(hits)).unwrap();
            }
        }
    }
}

fn bounced(rounds: u32) -> Snapshot {
    let runtime = Runtime::builder().cores(2).idle(idle()).build().unwrap();
    let report = runtime
        .start(move |_| Bouncer { rounds })
        .unwrap()
        .wait()
        .unwrap();
    assert!(report.adds_up());
    report.metrics
}

#[test]
fn cores_record_latency_by_kind_and_run_time_by_handler() {
    let snapshot = bounced(1_000);
    let merged = snapshot.merged();
    let balls = merged.delivery_by_kind.get("Ball").unwrap().count();
    let notes = merged.delivery_by_kind.get("Note").unwrap().count();
    assert_eq!(balls, 1_000);
    // Core 1 notes every ball it receives (500); some may be undelivered
    // at the stop, but never more than were sent.
    assert!((499..=500).contains(&notes), "{notes}");
    assert_eq!(merged.delivery.count(), balls + notes);
    assert_eq!(merged.handler_time.get("Ball").unwrap().count(), 1_000);
    let counters = merged.counters;
    assert_eq!(counters.requests, 1_000);
    assert_eq!(snapshot.cores[0].counters.requests, 500);
    assert!(counters.turns > 0);
    assert!(counters.busy_ns > 0);
    assert!(merged.turn_lag.count() > 0);
}

#[test]
fn prometheus_output_parses_back_with_names_labels_and_values() {
    let mut snapshot = bounced(200);
    // C12: a value above the top is saturated and counted, not a panic.
    snapshot.cores[1].delivery.record(u64::MAX);
    snapshot.cores[1].gauges.connections = 7;
    let text = to_prometheus(&snapshot);
    let samples = scrape::parse(&text).unwrap();
    let value = |name: &str, labels: &[(&str, &str)]| {
        let found: Vec<f64> = samples
            .iter()
            .filter(|s| s.name == name && labels.iter().all(|(k, v)| s.label(k) == Some(v)))
            .map(|s| s.value)
            .collect();
        assert_eq!(found.len(), 1, "{name} {labels:?} in\n{text}");
        found[0]
    };
    for (core, metrics) in snapshot.cores.iter().enumerate() {
        let core_label = core.to_string();
        let core = [("core", core_label.as_str())];
        let c = &metrics.counters;
        assert_eq!(value("corelane_messages_sent_total", &core), c.sent as f64);
        assert_eq!(
            value("corelane_messages_delivered_total", &core),
            c.delivered as f64
        );
        assert_eq!(value("corelane_messages_refused_total", &core), 0.0);
        assert_eq!(value("corelane_requests_total", &core), c.requests as f64);
        assert_eq!(c.requests, 100);
        assert_eq!(value("corelane_loop_turns_total", &core), c.turns as f64);
        let busy = [("core", core_label.as_str()), ("state", "busy")];
        assert_eq!(
            value("corelane_core_seconds_total", &busy),
            c.busy_ns as f64 / 1e9
        );
        let ball = [("core", core_label.as_str()), ("kind", "Ball")];
        let count = value("corelane_delivery_latency_seconds_count", &ball);
        assert_eq!(
            count,
            metrics.delivery_by_kind.get("Ball").unwrap().count() as f64
        );
        let p99 = [
            ("core", core_label.as_str()),
            ("kind", "Ball"),
            ("quantile", "0.99"),
        ];
        let expected = metrics
            .delivery_by_kind
            .get("Ball")
            .unwrap()
            .percentile(99.0);
        assert_eq!(
            value("corelane_delivery_latency_seconds", &p99),
            expected as f64 / 1e9
        );
        let handler = [("core", core_label.as_str()), ("handler", "Ball")];
        assert_eq!(value("corelane_handler_run_seconds_count", &handler), 100.0);
    }
    assert_eq!(value("corelane_connections", &[("core", "1")]), 7.0);
    assert_eq!(
        value("corelane_latency_saturated_total", &[("core", "1")]),
        1.0
    );
    assert_eq!(
        value("corelane_latency_saturated_total", &[("core", "0")]),
        0.0
    );
    // Every sample belongs to a family that has a TYPE line.
    for sample in &samples {
        let family = sample
            .name
            .trim_end_matches("_sum")
            .trim_end_matches("_count");
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "{}",
            sample.name
        );
    }
}

/// Sends `request` and returns the whole response.
fn http(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

#[test]
fn http_endpoint_serves_metrics_and_refuses_bad_requests() {
    let mut core = CoreMetrics::default();
    core.counters.sent = 42;
    let snapshot = Snapshot { cores: vec![core] };
    let server =
        MetricsServer::start("127.0.0.1:0".parse().unwrap(), move || snapshot.clone()).unwrap();
    let addr = server.local_addr();
    assert_ne!(addr.port(), 0);

    let ok = http(addr, b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let (head, body) = ok.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4"),
        "{head}"
    );
    assert!(
        head.contains(&format!("Content-Length: {}", body.len())),
        "{head}"
    );
    let samples = scrape::parse(body).unwrap();
    let sent = samples
        .iter()
        .find(|s| s.name == "corelane_messages_sent_total")
        .unwrap();
    assert_eq!(sent.value, 42.0);

    let json = http(addr, b"GET /metrics.json HTTP/1.0\r\n\r\n");
    let body = json.split_once("\r\n\r\n").unwrap().1;
    let parsed: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(parsed["cores"][0]["sent"], 42);

    let garbage = http(addr, b"\x00\x01garbage\r\n\r\n");
    assert!(garbage.starts_with("HTTP/1.1 400 "), "{garbage}");
    let no_version = http(addr, b"GET /metrics\r\n\r\n");
    assert!(no_version.starts_with("HTTP/1.1 400 "), "{no_version}");
    let post = http(addr, b"POST /metrics HTTP/1.1\r\n\r\n");
    assert!(post.starts_with("HTTP/1.1 405 "), "{post}");
    let missing = http(addr, b"GET /nope HTTP/1.1\r\n\r\n");
    assert!(missing.starts_with("HTTP/1.1 404 "), "{missing}");
    // A head that never ends is refused at the bound, not buffered.
    let huge = vec![b'a'; 64 * 1024];
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let _ = stream.write_all(&huge);
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    assert!(response.starts_with("HTTP/1.1 431 "), "{response}");
    // A client that connects and closes without a word changes nothing.
    drop(TcpStream::connect(addr).unwrap());

    // Still serving after all that.
    let again = http(addr, b"GET /metrics HTTP/1.1\r\n\r\n");
    assert!(again.starts_with("HTTP/1.1 200 OK"), "{again}");
}

/// A client that trickles its request a byte at a time, each byte well
/// inside the endpoint's per-read timeout, still gets no more than the
/// client timeout in all: a scrape that comes after it is answered, and
/// the endpoint stops (as `serve` does on SIGTERM), while the trickle
/// still has most of its head to send.
#[test]
fn a_client_trickling_its_request_holds_the_endpoint_only_for_the_timeout() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let server = MetricsServer::start("127.0.0.1:0".parse().unwrap(), || Snapshot {
        cores: Vec::new(),
    })
    .unwrap();
    let addr = server.local_addr();

    // 60 bytes at one every 400 ms: 24 s to send the whole head, far past
    // the 2 s a client has.
    let sent_whole_head = Arc::new(AtomicBool::new(false));
    let trickle = {
        let sent_whole_head = Arc::clone(&sent_whole_head);
        let mut stream = TcpStream::connect(addr).unwrap();
        std::thread::spawn(move || {
            let head = format!(
                "GET /metrics HTTP/1.1\r\nX-Slow: {}\r\n\r\n",
                "a".repeat(25)
            );
            assert_eq!(head.len(), 60);
            let (last, before) = head.as_bytes().split_last().unwrap();
            for byte in before {
                if stream.write_all(&[*byte]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(400));
            }
            // Set before the last byte goes: an endpoint that waits for the
            // whole head cannot answer anyone else before this.
            sent_whole_head.store(true, Ordering::SeqCst);
            let _ = stream.write_all(&[*last]);
        })
    };

    // Connected after the trickle, so accepted after it.
    std::thread::sleep(Duration::from_millis(200));
    let scrape = http(addr, b"GET /metrics HTTP/1.1\r\n\r\n");
    assert!(scrape.starts_with("HTTP/1.1 200 OK"), "{scrape}");
    assert!(
        !sent_whole_head.load(Ordering::SeqCst),
        "the scrape waited for the trickle to finish"
    );

    // Stopping waits for the client being answered, if any: not for the
    // trickle either.
    drop(server);
    assert!(!sent_whole_head.load(Ordering::SeqCst));
    trickle.join().unwrap();
}

/// Whether the endpoint has let `stream` go (closed or reset it), without
/// waiting: a client it still holds, having asked nothing whole, has
/// nothing to read yet.
fn let_go(stream: &mut TcpStream) -> bool {
    stream.set_nonblocking(true).unwrap();
    match stream.read(&mut [0; 64]) {
        Ok(0) => true,
        Ok(read) => panic!("{read} bytes of an answer to no request"),
        Err(error) => error.kind() != std::io::ErrorKind::WouldBlock,
    }
}

/// Clients that connect and say nothing (or half a request) do not queue a
/// scrape behind them: it is answered while they are still held, and a
/// crowd of them past the endpoint's limit pushes its oldest out rather
/// than the newcomer. Before, the endpoint answered one connection at a
/// time, each for up to its 2 s deadline: ten idle connections kept a
/// scrape waiting 20 s, past `stat`'s 5 s and Prometheus's 10 s, and a
/// connection every 2 s kept it from ever being answered.
#[test]
fn idle_clients_do_not_keep_a_scrape_waiting() {
    let server = MetricsServer::start("127.0.0.1:0".parse().unwrap(), || Snapshot {
        cores: Vec::new(),
    })
    .unwrap();
    let addr = server.local_addr();
    let mut idle: Vec<TcpStream> = (0..40)
        .map(|client| {
            let mut stream = TcpStream::connect(addr).unwrap();
            if client % 2 == 1 {
                stream.write_all(b"GET /metrics HTTP/1.1\r\n").unwrap();
            }
            stream
        })
        .collect();

    let scrape = http(addr, b"GET /metrics HTTP/1.1\r\n\r\n");
    assert!(scrape.starts_with("HTTP/1.1 200 OK"), "{scrape}");
    let newest = idle.last_mut().unwrap();
    assert!(!let_go(newest), "the scrape waited for the idle clients");
    // Forty and the scrape are more than the endpoint holds at once: the
    // oldest went to make room.
    assert!(let_go(&mut idle[0]));
}

/// `stat`'s fetch gives up at its timeout even against an endpoint that
/// trickles its answer a byte at a time, each byte inside the timeout: the
/// timeout bounds the whole fetch, and the answer is still being sent when
/// the fetch returns.
#[test]
fn a_fetch_from_an_endpoint_trickling_its_answer_times_out() {
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    // 60 bytes at one every 400 ms: 24 s for the whole answer.
    let sent_whole_answer = Arc::new(AtomicBool::new(false));
    let endpoint = {
        let sent_whole_answer = Arc::clone(&sent_whole_answer);
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            // Read first, so that closing does not reset the connection.
            let mut request = [0; 1024];
            let _ = stream.read(&mut request);
            let answer = format!("HTTP/1.1 200 OK\r\nX-Slow: {}\r\n\r\n", "a".repeat(31));
            assert_eq!(answer.len(), 60);
            let (last, before) = answer.as_bytes().split_last().unwrap();
            for byte in before {
                if stream.write_all(&[*byte]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(400));
            }
            // Set before the last byte goes: a fetch that waits for the
            // whole answer cannot return before this.
            sent_whole_answer.store(true, Ordering::SeqCst);
            let _ = stream.write_all(&[*last]);
        })
    };

    let error = corelane::metrics::stat::fetch(addr, Duration::from_secs(1)).unwrap_err();
    assert!(
        matches!(
            error.kind(),
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
        ),
        "{error}"
    );
    assert!(!sent_whole_answer.load(Ordering::SeqCst));
    endpoint.join().unwrap();
}

/// Every histogram line of an interval log, decoded by hdrhistogram's own
/// reader: (tag, start, length, histogram).
fn read_interval_log(
    bytes: &[u8],
) -> Vec<(String, Duration, Duration, hdrhistogram::Histogram<u64>)> {
    use base64::Engine as _;
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
    use hdrhistogram::serialization::Deserializer;

    let mut lines = Vec::new();
    for entry in IntervalLogIterator::new(bytes) {
        let LogEntry::Interval(line) = entry.unwrap() else {
            continue;
        };
        let compressed = base64::engine::general_purpose::STANDARD
            .decode(line.encoded_histogram())
            .unwrap();
        let histogram = Deserializer::new()
            .deserialize(&mut compressed.as_slice())
            .unwrap();
        let tag = line
            .tag()
            .map_or(String::new(), |tag| tag.as_str().to_owned());
        lines.push((tag, line.start_timestamp(), line.duration(), histogram));
    }
    lines
}

#[test]
fn interval_log_reads_back_with_hdrhistograms_own_reader() {
    let mut intervals = Vec::new();
    for core in 0..2u64 {
        let mut metrics = CoreMetrics::default();
        for value in 1..=1_000 {
            metrics.delivery.record(value * (core + 1));
        }
        metrics.delivery.record(u64::MAX); // saturated, kept at the top
        intervals.push(Interval {
            metrics,
            start_ns: 1_000_000_000,
            end_ns: 2_000_000_000,
        });
    }
    let mut log = IntervalLog::begin(Vec::new()).unwrap();
    log.write(&intervals).unwrap();
    log.write(&intervals).unwrap();
    let bytes = log.into_inner();

    let mut histograms = 0;
    for (tag, start, length, histogram) in read_interval_log(&bytes) {
        let core = histograms % 2;
        assert_eq!(tag, format!("core{core}"));
        assert_eq!(start, Duration::from_secs(1));
        assert_eq!(length, Duration::from_secs(1));
        let original = intervals[core].metrics.delivery.inner();
        assert_eq!(histogram.len(), 1_001);
        assert_eq!(histogram.max(), original.max());
        assert!(histogram.max() >= MAX_TRACKED_NS);
        assert_eq!(
            histogram.value_at_quantile(0.5),
            original.value_at_quantile(0.5)
        );
        histograms += 1;
    }
    assert_eq!(histograms, 4);
    let text = String::from_utf8(bytes).unwrap();
    assert!(text.contains("#[StartTime: "), "{text}");
    // The V2 compressed encoding starts with cookie 0x1c849304 ("HISTFAA").
    assert!(text.contains(",HISTFAA"), "{text}");
}

/// Per kind: one tagged line per kind delivered in the interval, read
/// back by hdrhistogram's own log reader with the counts recorded.
#[test]
fn interval_log_has_a_tagged_histogram_per_kind() {
    use std::collections::BTreeMap;

    // Core 0: Ball 300 times, Note 20 times, a kind whose name needs
    // escaping 7 times; core 1: Note 5 times, and Ball known but silent.
    let recorded: [&[(&'static str, u64)]; 2] = [
        &[("Ball", 300), ("Note", 20), ("Odd kind, 2", 7)],
        &[("Ball", 0), ("Note", 5)],
    ];
    let mut intervals = Vec::new();
    for kinds in recorded {
        let mut metrics = CoreMetrics::default();
        for &(kind, count) in kinds {
            if count == 0 {
                // Known from an earlier interval, nothing in this one.
                metrics.delivery_by_kind.record(kind, 1);
                metrics.delivery_by_kind.reset();
            }
            for value in 0..count {
                let ns = 1_000 + value * 10;
                metrics.delivery_by_kind.record(kind, ns);
                metrics.delivery.record(ns);
            }
        }
        intervals.push(Interval {
            metrics,
            start_ns: 3_000_000_000,
            end_ns: 4_000_000_000,
        });
    }
    let mut log = IntervalLog::begin(Vec::new()).unwrap();
    log.write(&intervals).unwrap();
    let bytes = log.into_inner();

    let mut counts = BTreeMap::new();
    for (tag, start, length, histogram) in read_interval_log(&bytes) {
        assert_eq!(start, Duration::from_secs(3));
        assert_eq!(length, Duration::from_secs(1));
        assert!(counts.insert(tag, histogram.len()).is_none());
    }
    let expected: BTreeMap<String, u64> = [
        ("core0", 327),
        ("core0.Ball", 300),
        ("core0.Note", 20),
        ("core0.Odd_kind__2", 7),
        ("core1", 5),
        ("core1.Note", 5),
    ]
    .into_iter()
    .map(|(tag, count)| (tag.to_owned(), count))
    .collect();
    assert_eq!(counts, expected);
}

/// Where core 1 blocks: in `on_message`, on a `Hold` from core 0, or in
/// `on_timer`, on a timer of its own.
#[derive(Clone, Copy, PartialEq)]
enum HoldIn {
    Message,
    Timer,
}

/// Core 1 blocks where `hold_in` says until the test sends on `release`.
struct Holder {
    hold_in: HoldIn,
    release: Option<mpsc::Receiver<()>>,
    held: mpsc::Sender<()>,
}

impl Holder {
    /// Says it is held, then waits to be let go (core 1 only).
    fn hold(&self) {
        if let Some(release) = &self.release {
            let _ = self.held.send(());
            let _ = release.recv();
        }
    }
}

impl Handler for Holder {
    type Message = Ping;

    fn on_start(&mut self, cx: &mut Context<'_, Ping>) {
        match self.hold_in {
            HoldIn::Message if cx.core() == 0 => cx.send(1, &Ping::Hold).unwrap(),
            HoldIn::Timer if self.release.is_some() => {
                cx.schedule_timer(Duration::ZERO, 1);
            }
            _ => {}
        }
    }

    fn on_message(&mut self, _cx: &mut Context<'_, Ping>, _from: usize, msg: &ArchivedPing) {
        if self.hold_in == HoldIn::Message && matches!(msg, ArchivedPing::Hold) {
            self.hold();
        }
    }

    fn on_timer(&mut self, _cx: &mut Context<'_, Ping>, _timer: u64) {
        if self.hold_in == HoldIn::Timer {
            self.hold();
        }
    }
}

/// Starts two cores with core 1 held where `hold_in` says, and returns
/// once it is, with the sender that lets it go.
fn start_holding(hold_in: HoldIn) -> (Running<Ping>, mpsc::Sender<()>) {
    let (release_tx, release_rx) = mpsc::channel();
    let (held_tx, held_rx) = mpsc::channel();
    let release = std::sync::Mutex::new(Some(release_rx));
    let runtime = Runtime::builder().cores(2).idle(idle()).build().unwrap();
    let running = runtime
        .start(move |core| Holder {
            hold_in,
            release: if core == 1 {
                release.lock().unwrap().take()
            } else {
                None
            },
            held: held_tx.clone(),
        })
        .unwrap();
    held_rx.recv_timeout(Duration::from_secs(60)).unwrap();
    (running, release_tx)
}

/// Starts a stall watcher on `handle` (a stall after 1 ms), waits for its
/// first stall alert about core 1 and checks that it names `handler`.
fn assert_stall_on_core_1(handle: &RuntimeHandle, handler: &str) {
    let (alert_tx, alert_rx) = mpsc::channel();
    let watcher = Watcher::start(
        handle.clone(),
        WatchConfig {
            stall_after: Some(Duration::from_millis(1)),
            stall_check: Duration::from_millis(1),
            ..WatchConfig::default()
        },
        Box::new(move |alert| {
            let _ = alert_tx.send(alert.clone());
        }),
        None,
    )
    .unwrap();
    let alert = loop {
        let alert = alert_rx.recv_timeout(Duration::from_secs(60)).unwrap();
        if let Alert::Stall { core: 1, .. } = alert {
            break alert;
        }
    };
    assert!(
        matches!(alert, Alert::Stall { core: 1, handler: named, .. } if named == handler),
        "{alert:?}"
    );
    drop(watcher);
}

/// C12 and the stall detector: while core 1 is stuck in a handler (and
/// core 0 idles), snapshots and interval takes return at once, and the
/// watcher names the core and the handler.
#[test]
fn snapshots_never_wait_and_the_stall_detector_names_a_slow_handler() {
    let (running, release_tx) = start_holding(HoldIn::Message);
    let handle = running.handle();

    // The stuck core cannot answer; none of these may wait for it. A
    // reader that waited would hang here forever (the handler is only
    // released below), so returning at all is the assertion.
    let (done_tx, done_rx) = mpsc::channel();
    let reader = handle.clone();
    std::thread::spawn(move || {
        let snapshot = reader.metrics();
        let intervals = reader.take_intervals();
        let fresh = reader.fresh_metrics(Duration::from_millis(100));
        let _ = done_tx.send((snapshot.cores.len(), intervals.len(), fresh.cores.len()));
    });
    assert_eq!(
        done_rx.recv_timeout(Duration::from_secs(60)).unwrap(),
        (2, 2, 2)
    );

    let running_now = handle.running_handlers();
    assert_eq!(running_now[1].map(|r| r.name), Some("Hold"));

    assert_stall_on_core_1(&handle, "Hold");

    release_tx.send(()).unwrap();
    let report = running.shutdown().unwrap();
    assert!(report.adds_up());
    assert_eq!(
        report
            .metrics
            .merged()
            .handler_time
            .get("Hold")
            .unwrap()
            .count(),
        1
    );
}

/// A timer handler that runs long is a stall like any other: the slot
/// names `on_timer` while it runs, the watcher reports it, and its run
/// time is kept under that name. Before, `on_timer` ran outside the slot:
/// core 1 looked idle (`running_handlers` gave `None`) for as long as it
/// was stuck, and no stall was ever reported.
#[test]
fn the_stall_detector_names_a_slow_timer_handler() {
    let before = corelane::clock::now_ns();
    let (running, release_tx) = start_holding(HoldIn::Timer);
    let handle = running.handle();

    let running_now = handle.running_handlers();
    let on_timer = running_now[1].expect("core 1 is in on_timer");
    assert_eq!(on_timer.name, "on_timer");
    assert!(
        on_timer.started_ns >= before,
        "{on_timer:?} started before {before}"
    );
    assert!(on_timer.started_ns <= corelane::clock::now_ns());

    assert_stall_on_core_1(&handle, "on_timer");

    release_tx.send(()).unwrap();
    let report = running.shutdown().unwrap();
    assert!(report.adds_up());
    assert_eq!(report.totals.timers_fired, 1);
    let merged = report.metrics.merged();
    assert_eq!(merged.handler_time.get("on_timer").unwrap().count(), 1);
}

#[test]
fn stat_shows_every_core_from_a_live_endpoint() {
    let mut core = CoreMetrics::default();
    core.counters.delivered = 10;
    core.gauges.connections = 3;
    let snapshot = Snapshot {
        cores: vec![core.clone(), core],
    };
    let server =
        MetricsServer::start("127.0.0.1:0".parse().unwrap(), move || snapshot.clone()).unwrap();
    let mut out = Vec::new();
    corelane::metrics::stat::watch(
        server.local_addr(),
        Duration::from_millis(10),
        Some(2),
        &mut out,
    )
    .unwrap();
    let text = String::from_utf8(out).unwrap();
    let rows: Vec<Vec<&str>> = text
        .lines()
        .filter(|line| line.starts_with(|c: char| c.is_ascii_digit()))
        .map(|line| line.split_whitespace().collect())
        .collect();
    // Two refreshes of two cores; nothing changed, so every rate is 0.
    assert_eq!(rows.len(), 4, "{text}");
    for row in &rows {
        assert_eq!(row[1..5], ["0", "0", "0", "0"], "{text}");
        assert_eq!(row[7], "3", "{text}");
    }
}

/// Once a first scrape has worked, `stat` shows a scrape that fails (the
/// server restarting) and goes on: here a mock endpoint answers, closes
/// the next connection unanswered, then answers again.
#[test]
fn stat_goes_on_past_a_scrape_that_fails() {
    use std::io::{Read, Write};

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let endpoint = std::thread::spawn(move || {
        let body = "corelane_messages_delivered_total{core=\"0\"} 5\n";
        for answer in [true, false, true] {
            let (mut stream, _) = listener.accept().unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap() == 1 {
                head.push(byte[0]);
            }
            if answer {
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                stream.write_all(response.as_bytes()).unwrap();
            }
        }
    });
    let mut out = Vec::new();
    corelane::metrics::stat::watch(addr, Duration::from_millis(10), Some(2), &mut out).unwrap();
    endpoint.join().unwrap();
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with(&format!("corelane stat {addr}: no answer (")),
        "{text}"
    );
    assert!(lines[0].ends_with("); trying again"), "{text}");
    let rows: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|line| line.starts_with('0'))
        .collect();
    assert_eq!(rows.len(), 1, "one view after the failed scrape: {text}");
}
