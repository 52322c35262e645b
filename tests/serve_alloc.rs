//! A steady publish/subscribe load on `corelane serve` allocates nothing
//! per message: input and output buffers come from the core's pool and go
//! back to it, and every list the core works through keeps its capacity.
//! Pattern subscribers are part of the load: patterns are parsed once, at
//! PSUBSCRIBE, and matched without allocating (one of them never matches),
//! the longest pattern PSUBSCRIBE accepts included, whose search table is
//! the largest matching keeps on the stack.
//! On two cores the same holds for the PUBLISH forwarded to the other
//! core's subscribers: archived into the lane from buffers the core keeps,
//! read there in place.
//!
//! The whole process counts its heap allocations (a counting global
//! allocator), so this file holds one test, and its client side is written
//! to allocate nothing while the count runs: raw sockets, commands built
//! beforehand, replies read into a buffer made beforehand.
//!
//! The one thing in the server that may allocate while the count runs is
//! the core's periodic metrics publication (every
//! [`FLUSH_INTERVAL_NS`], whatever the load): the bound allows a few
//! allocations per publication by elapsed time, and stays far below one
//! allocation per message. The first publication after the load starts
//! also sets up the published copies of the histograms the load started
//! (8 allocations here), so an INFO makes it happen before the count; on
//! two cores, the core that receives the forwards publishes on its own
//! schedule, so the warm-up also waits out a few publication intervals.
//!
//! Without the kept forward buffers, two cores allocated twice per
//! message; with them but with `encoded_len` buffering the archive and
//! failed in-place attempts boxing their error, five times at each wrap of
//! the lane (10 in the count).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use corelane::metrics::FLUSH_INTERVAL_NS;
use corelane::runtime::IdleStrategy;
use corelane::serve::{ServeError, Server, ServerConfig};

#[path = "common/counting.rs"]
mod counting;
use counting::ALLOCATIONS;

/// Subscribers to the channel.
const SUBSCRIBERS: usize = 3;
/// Patterns each pattern subscriber holds, the first matching the channel
/// and the others not, and their PSUBSCRIBE replies.
const PATTERNS: [&[(&str, &[u8])]; 2] = [
    &[
        (
            "n[a-z]w*",
            b"*3\r\n$10\r\npsubscribe\r\n$8\r\nn[a-z]w*\r\n:1\r\n",
        ),
        (
            "sport.*",
            b"*3\r\n$10\r\npsubscribe\r\n$7\r\nsport.*\r\n:2\r\n",
        ),
    ],
    &[("*e?s", b"*3\r\n$10\r\npsubscribe\r\n$4\r\n*e?s\r\n:1\r\n")],
];
/// Bytes in each message.
const PAYLOAD: usize = 1000;
/// Messages published before allocations are counted.
const WARM_UP: usize = 500;
/// Messages published while allocations are counted.
const ROUNDS: usize = 2000;
/// Most allocations one metrics publication is allowed.
const METRICS_ALLOCATIONS: u64 = 4;

/// Starts a server of `cores` cores on the first free port of 17100-17199.
fn start(cores: usize) -> Server {
    for port in 17100..17200 {
        let config = ServerConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], port)),
            cores: Some(cores),
            idle: IdleStrategy::BusySpin,
            ..ServerConfig::default()
        };
        match Server::start(config) {
            Ok(server) => return server,
            Err(ServeError::Bind(..)) => continue,
            Err(error) => panic!("server: {error}"),
        }
    }
    panic!("no free port in 17100-17199");
}

fn connect(server: &Server) -> TcpStream {
    let stream = TcpStream::connect(server.local_addr()).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

/// Reads exactly `expected.len()` bytes into `scratch` and checks them.
fn expect(stream: &mut TcpStream, scratch: &mut [u8], expected: &[u8]) {
    let got = &mut scratch[..expected.len()];
    stream.read_exact(got).expect("read from the server");
    assert!(got == expected, "the server sent other bytes");
}

/// Asks for `INFO stats` and reads the whole reply. The INFO makes every
/// core publish its metrics at once, so the first publication after the
/// warm-up, which also sets up the published copies of the histograms the
/// load has started (allocations once per kind, not per message), happens
/// before the count starts rather than inside it.
fn info_stats(stream: &mut TcpStream) {
    stream.write_all(b"INFO stats\r\n").expect("INFO");
    let mut header = Vec::new();
    let mut byte = [0u8; 1];
    while !header.ends_with(b"\r\n") {
        stream.read_exact(&mut byte).expect("INFO reply");
        header.push(byte[0]);
    }
    assert_eq!(header[0], b'$', "INFO replies with a bulk string");
    let len: usize = std::str::from_utf8(&header[1..header.len() - 2])
        .expect("a length")
        .parse()
        .expect("a length");
    let mut body = vec![0u8; len + 2];
    stream.read_exact(&mut body).expect("INFO body");
    assert!(body.ends_with(b"\r\n"));
}

/// One round: a PUBLISH, its reply (five receivers), and at every
/// subscriber the message it should get.
fn round(
    publisher: &mut TcpStream,
    subscribers: &mut [(TcpStream, Vec<u8>)],
    command: &[u8],
    scratch: &mut [u8],
) {
    publisher.write_all(command).expect("publish");
    expect(publisher, scratch, b":5\r\n");
    for (subscriber, message) in subscribers.iter_mut() {
        expect(subscriber, scratch, message);
    }
}

#[test]
fn steady_publish_subscribe_allocates_nothing_per_message() {
    // One test, so that nothing else runs while allocations are counted:
    // one core, then two.
    let one = steady_load(1);
    assert!(one.allocations <= one.allowed, "one core: {one:?}");

    let two = steady_load(2);
    assert!(two.allocations <= two.allowed, "two cores: {two:?}");

    let longest = longest_pattern_load();
    assert!(
        longest.allocations <= longest.allowed,
        "the longest pattern: {longest:?}"
    );
    // Connections are dealt to the cores in turn, so the publisher (the
    // fourth) is on core 1 with the second subscriber and the second
    // pattern subscriber (the sixth), and the first and third subscribers
    // and the first pattern subscriber are on core 0: every message was
    // forwarded once.
    assert!(
        two.sent >= (WARM_UP + ROUNDS) as u64,
        "two cores sent {} messages for {} forwards",
        two.sent,
        WARM_UP + ROUNDS
    );
}

/// What one steady load counted.
#[derive(Debug)]
struct Load {
    /// Allocations while `ROUNDS` messages were published and delivered.
    allocations: u64,
    /// The most allowed: the metrics publications' own, and far below one
    /// per message.
    allowed: u64,
    /// Messages the cores sent each other in the whole run.
    sent: u64,
}

/// Publishes `ROUNDS` messages to `SUBSCRIBERS` subscribers and the
/// `PATTERNS` subscribers on a server of `cores` cores, counting
/// allocations.
fn steady_load(cores: usize) -> Load {
    let server = start(cores);
    let mut subscribers: Vec<TcpStream> = (0..SUBSCRIBERS).map(|_| connect(&server)).collect();
    let mut scratch = vec![0u8; 4 * PAYLOAD];
    for subscriber in &mut subscribers {
        subscriber.write_all(b"SUBSCRIBE news\r\n").unwrap();
        expect(
            subscriber,
            &mut scratch,
            b"*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n",
        );
    }
    let mut publisher = connect(&server);
    let mut pattern_subscribers: Vec<TcpStream> =
        PATTERNS.iter().map(|_| connect(&server)).collect();
    for (subscriber, patterns) in pattern_subscribers.iter_mut().zip(PATTERNS) {
        for (pattern, reply) in patterns {
            subscriber
                .write_all(format!("PSUBSCRIBE {pattern}\r\n").as_bytes())
                .unwrap();
            expect(subscriber, &mut scratch, reply);
        }
    }

    let payload: Vec<u8> = (0..PAYLOAD).map(|i| b'a' + (i % 26) as u8).collect();
    let mut command = format!("*3\r\n$7\r\nPUBLISH\r\n$4\r\nnews\r\n${PAYLOAD}\r\n").into_bytes();
    command.extend_from_slice(&payload);
    command.extend_from_slice(b"\r\n");
    let message = |header: String| [header.as_bytes(), &payload, b"\r\n"].concat();
    let direct = message(format!(
        "*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n${PAYLOAD}\r\n"
    ));
    let mut subscribers: Vec<(TcpStream, Vec<u8>)> = subscribers
        .into_iter()
        .map(|subscriber| (subscriber, direct.clone()))
        .collect();
    for (subscriber, patterns) in pattern_subscribers.into_iter().zip(PATTERNS) {
        let (pattern, _) = patterns[0];
        let header = format!(
            "*4\r\n$8\r\npmessage\r\n${}\r\n{pattern}\r\n$4\r\nnews\r\n${PAYLOAD}\r\n",
            pattern.len()
        );
        subscribers.push((subscriber, message(header)));
    }

    // Warm up: the pool's blocks, the core's lists and the kernel's socket
    // buffers reach their working sizes.
    for _ in 0..WARM_UP {
        round(&mut publisher, &mut subscribers, &command, &mut scratch);
    }

    // Every core publishes once more after the load started (the one that
    // receives the forwards on its own schedule, not at the INFO).
    std::thread::sleep(Duration::from_nanos(3 * FLUSH_INTERVAL_NS));
    info_stats(&mut publisher);

    let started = Instant::now();
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..ROUNDS {
        round(&mut publisher, &mut subscribers, &command, &mut scratch);
    }
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
    // Each core publishes its metrics on its own.
    let publications = (started.elapsed().as_nanos() as u64 / FLUSH_INTERVAL_NS + 1) * cores as u64;
    let allowed = (METRICS_ALLOCATIONS * publications).min(ROUNDS as u64 / 10);

    drop((publisher, subscribers));
    let report = server.shutdown().expect("no core panicked");
    let merged = report.metrics.merged();
    assert_eq!(
        (merged.pool.in_use, merged.pool.fallbacks),
        (0, 0),
        "{:?}",
        merged.pool
    );
    Load {
        allocations,
        allowed,
        sent: merged.counters.sent,
    }
}

/// Bytes of the longest pattern PSUBSCRIBE accepts.
const LONGEST_PATTERN: usize = 1024;

/// A pattern subscriber holding the longest pattern PSUBSCRIBE accepts,
/// `*a...ab*`: its middle segment of 1,022 tokens is searched in a
/// channel longer than itself with the largest search table matching
/// keeps on the stack (16 words a row), for one channel it matches at the
/// end and one it does not. On one core, publishing to both `ROUNDS`
/// times, counting allocations as [`steady_load`] does.
fn longest_pattern_load() -> Load {
    let server = start(1);
    let mut subscriber = connect(&server);
    let mut publisher = connect(&server);
    let mut scratch = vec![0u8; 4 * PAYLOAD];
    let pattern = format!("*{}b*", "a".repeat(LONGEST_PATTERN - 3));
    assert_eq!(pattern.len(), LONGEST_PATTERN);
    let bulk = |text: &str| format!("${}\r\n{text}\r\n", text.len());
    subscriber
        .write_all(format!("*2\r\n$10\r\nPSUBSCRIBE\r\n{}", bulk(&pattern)).as_bytes())
        .unwrap();
    let confirmation = format!("*3\r\n$10\r\npsubscribe\r\n{}:1\r\n", bulk(&pattern));
    expect(&mut subscriber, &mut scratch, confirmation.as_bytes());

    let run = "a".repeat(2 * LONGEST_PATTERN);
    let (hit, miss) = (format!("{run}b"), format!("{run}c"));
    let publish = |channel: &str| {
        format!("*3\r\n$7\r\nPUBLISH\r\n{}{}", bulk(channel), bulk("hi")).into_bytes()
    };
    let (publish_hit, publish_miss) = (publish(&hit), publish(&miss));
    let message = format!(
        "*4\r\n$8\r\npmessage\r\n{}{}{}",
        bulk(&pattern),
        bulk(&hit),
        bulk("hi")
    );
    let mut round = |publisher: &mut TcpStream, scratch: &mut [u8]| {
        publisher.write_all(&publish_hit).expect("publish");
        expect(publisher, scratch, b":1\r\n");
        expect(&mut subscriber, scratch, message.as_bytes());
        publisher.write_all(&publish_miss).expect("publish");
        expect(publisher, scratch, b":0\r\n");
    };
    for _ in 0..WARM_UP {
        round(&mut publisher, &mut scratch);
    }
    std::thread::sleep(Duration::from_nanos(3 * FLUSH_INTERVAL_NS));
    info_stats(&mut publisher);

    let started = Instant::now();
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..ROUNDS {
        round(&mut publisher, &mut scratch);
    }
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
    let publications = started.elapsed().as_nanos() as u64 / FLUSH_INTERVAL_NS + 1;
    let allowed = (METRICS_ALLOCATIONS * publications).min(ROUNDS as u64 / 10);

    drop((publisher, subscriber));
    let report = server.shutdown().expect("no core panicked");
    Load {
        allocations,
        allowed,
        sent: report.metrics.merged().counters.sent,
    }
}
