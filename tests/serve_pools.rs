//! `corelane serve` takes its socket input and output buffers from each
//! core's pool, gives them back, and reports the pools in INFO.
//!
//! Runtimes pin their loops to CPUs, so the tests take a lock and run one
//! at a time; servers listen on loopback ports 17100-17199.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use corelane::pool::PoolConfig;
use corelane::serve::{ServeError, Server, ServerConfig};

use common::{idle, serial};

/// How long a read, or a wait for INFO to show something, may take.
const TIMEOUT: Duration = Duration::from_secs(20);

/// Starts a server with `config`, on the first free port of 17100-17199.
fn start(config: ServerConfig) -> Server {
    for port in 17100..17200 {
        let config = ServerConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], port)),
            idle: idle(),
            ..config.clone()
        };
        match Server::start(config) {
            Ok(server) => return server,
            Err(ServeError::Bind(..)) => continue,
            Err(error) => panic!("server: {error}"),
        }
    }
    panic!("no free port in 17100-17199");
}

fn info_client(server: &Server) -> redis::Connection {
    let client = redis::Client::open(format!("redis://{}/", server.local_addr())).unwrap();
    let con = client
        .get_connection_with_timeout(TIMEOUT)
        .expect("client connects");
    con.set_read_timeout(Some(TIMEOUT)).unwrap();
    con
}

fn info(con: &mut redis::Connection) -> String {
    redis::cmd("INFO").arg("pools").query(con).unwrap()
}

/// Asks INFO until `done` holds for it (other cores publish their counts
/// once per turn or metrics interval); returns that INFO.
fn info_until(con: &mut redis::Connection, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let text = info(con);
        if done(&text) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "INFO never showed {what}: {text}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A subscriber on a raw socket.
fn subscriber(server: &Server, channel: &str) -> TcpStream {
    let mut stream = TcpStream::connect(server.local_addr()).expect("connect");
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
        .write_all(format!("SUBSCRIBE {channel}\r\n").as_bytes())
        .unwrap();
    let confirmation = format!(
        "*3\r\n$9\r\nsubscribe\r\n${}\r\n{channel}\r\n:1\r\n",
        channel.len()
    );
    expect(&mut stream, confirmation.as_bytes());
    stream
}

/// Reads exactly `expected.len()` bytes and checks them.
fn expect(stream: &mut TcpStream, expected: &[u8]) {
    let mut got = vec![0u8; expected.len()];
    stream.read_exact(&mut got).expect("read from the server");
    if let Some(at) = got.iter().zip(expected).position(|(a, b)| a != b) {
        panic!("byte {at} of {} differs", expected.len());
    }
}

/// What a subscriber to `channel` receives for `payload`.
fn message(channel: &str, payload: &[u8]) -> Vec<u8> {
    let mut bytes = format!(
        "*3\r\n$7\r\nmessage\r\n${}\r\n{channel}\r\n${}\r\n",
        channel.len(),
        payload.len()
    )
    .into_bytes();
    bytes.extend_from_slice(payload);
    bytes.extend_from_slice(b"\r\n");
    bytes
}

/// Payload `index` of `len` bytes, different for every index.
fn payload(index: usize, len: usize) -> Vec<u8> {
    let mut bytes: Vec<u8> = (0..len).map(|i| b'a' + ((i + index) % 26) as u8).collect();
    bytes[..8].copy_from_slice(&(index as u64).to_le_bytes());
    bytes
}

/// One `key=value` field of an INFO line `name:key=value,...`.
fn pool_field(info: &str, line: &str, key: &str) -> u64 {
    let fields = info
        .lines()
        .find_map(|text| text.strip_prefix(line)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("INFO has no {line}: {info}"));
    fields
        .trim()
        .split(',')
        .find_map(|pair| pair.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("{line} has no {key}: {fields}"))
        .parse()
        .expect("a number")
}

fn this_core(info: &str) -> usize {
    info.lines()
        .find_map(|line| line.strip_prefix("this_core:"))
        .expect("INFO server has this_core")
        .trim()
        .parse()
        .expect("a number")
}

#[test]
fn input_buffers_come_from_the_pool_and_info_shows_it() {
    let _serial = serial();
    let server = start(ServerConfig {
        cores: Some(2),
        ..ServerConfig::default()
    });
    let mut con = info_client(&server);

    // A command larger than one read chunk grows the input buffer through
    // the 16, 32, 64 and 128 KiB classes; once parsed, all go back.
    let payload = vec![b'x'; 100 * 1024];
    let receivers: i64 = redis::cmd("PUBLISH")
        .arg("news")
        .arg(&payload)
        .query(&mut con)
        .unwrap();
    assert_eq!(receivers, 0);

    let info: String = redis::cmd("INFO").query(&mut con).unwrap();
    assert!(info.contains("# Pools\r\n"), "{info}");
    let core = this_core(&info);
    let line = format!("pool_core_{core}");
    // The buffer holding this very INFO command is in use.
    assert!(pool_field(&info, &line, "in_use") >= 1, "{info}");
    assert!(
        pool_field(&info, &line, "in_use_bytes") >= 16 * 1024,
        "{info}"
    );
    // The PUBLISH's buffers are back on the free list.
    assert!(
        pool_field(&info, &line, "free_bytes") >= 128 * 1024,
        "{info}"
    );
    assert_eq!(pool_field(&info, &line, "fallbacks"), 0, "{info}");
    assert!(
        pool_field(&info, "pool_all", "free_bytes") >= 128 * 1024,
        "{info}"
    );

    let only: String = redis::cmd("INFO").arg("pools").query(&mut con).unwrap();
    assert!(only.starts_with("# Pools\r\n"), "{only}");
    assert!(!only.contains("# Stats"), "{only}");

    let report = server.shutdown().expect("no core panicked");
    assert!(report.adds_up(), "{report}");
    assert_eq!(report.metrics.merged().pool.in_use, 0, "{report}");
}

/// Publishes to reading subscribers on both cores and to one that never
/// reads: every message arrives intact, all output comes from the pools
/// with no fallback, the silent subscriber's backlog is held in pooled
/// buffers, and once the subscribers leave every output buffer is back.
#[test]
fn output_buffers_come_from_the_pool_and_go_back_when_drained() {
    const READERS: usize = 4;
    const MESSAGES: usize = 2000;
    const PAYLOAD: usize = 8 * 1024;
    let _serial = serial();
    // Room in the 64 KiB class for the silent subscriber's backlog (up to
    // 16 MiB, less what the kernel takes), so nothing falls back.
    let server = start(ServerConfig {
        cores: Some(2),
        pool: PoolConfig::default().cap(64 * 1024, 512),
        ..ServerConfig::default()
    });
    let mut con = info_client(&server);
    let baseline = info_until(&mut con, "no output held", |text| {
        pool_field(text, "output_all", "buffers") == 0
    });
    let in_use = pool_field(&baseline, "pool_all", "in_use");

    let mut readers: Vec<TcpStream> = (0..READERS).map(|_| subscriber(&server, "news")).collect();
    let silent = subscriber(&server, "news");
    let mut shown = Vec::new();
    for index in 0..MESSAGES {
        let bytes = payload(index, PAYLOAD);
        let receivers: i64 = redis::cmd("PUBLISH")
            .arg("news")
            .arg(&bytes)
            .query(&mut con)
            .unwrap();
        assert_eq!(receivers, READERS as i64 + 1, "message {index}");
        let expected = message("news", &bytes);
        for reader in &mut readers {
            expect(reader, &expected);
        }
        if index == 0 {
            shown = expected;
        }
    }
    assert!(!shown.is_empty());

    // The silent subscriber holds what the kernel did not take (at most
    // 4 MiB of socket buffers here) in pooled buffers, none from the
    // allocator.
    let held = info(&mut con);
    assert!(
        pool_field(&held, "output_all", "bytes") >= 4 << 20,
        "{held}"
    );
    assert!(pool_field(&held, "output_all", "buffers") >= 64, "{held}");
    assert_eq!(pool_field(&held, "output_all", "fallbacks"), 0, "{held}");
    assert_eq!(pool_field(&held, "pool_all", "fallbacks"), 0, "{held}");

    // Gone, its buffers go back; the pools hold what they held before.
    drop((readers, silent));
    let after = info_until(&mut con, "every output buffer back", |text| {
        pool_field(text, "output_all", "buffers") == 0
            && pool_field(text, "pool_all", "in_use") == in_use
    });
    assert_eq!(pool_field(&after, "output_all", "bytes"), 0, "{after}");
    assert_eq!(pool_field(&after, "output_all", "fallbacks"), 0, "{after}");
    assert_eq!(pool_field(&after, "pool_all", "fallbacks"), 0, "{after}");
    assert_eq!(pool_field(&after, "pool_all", "in_use"), in_use, "{after}");

    drop(con);
    let report = server.shutdown().expect("no core panicked");
    assert!(report.adds_up(), "{report}");
    assert_eq!(report.metrics.merged().pool.in_use, 0, "{report}");
}

/// Messages larger than the pool's largest class reach subscribers intact
/// through a chain of pooled output buffers: the output never falls back
/// to the allocator (the publisher's input, which has no chain, does).
#[test]
fn output_larger_than_the_largest_class_is_a_chain_of_pooled_buffers() {
    const PAYLOAD: usize = 256 * 1024;
    let _serial = serial();
    let server = start(ServerConfig {
        cores: Some(1),
        pool: PoolConfig::default().largest_class(16 * 1024),
        ..ServerConfig::default()
    });
    let mut con = info_client(&server);
    let mut reader = subscriber(&server, "big");
    for index in 0..3 {
        let bytes = payload(index, PAYLOAD);
        let receivers: i64 = redis::cmd("PUBLISH")
            .arg("big")
            .arg(&bytes)
            .query(&mut con)
            .unwrap();
        assert_eq!(receivers, 1);
        expect(&mut reader, &message("big", &bytes));
    }
    drop(reader);
    let after = info_until(&mut con, "every output buffer back", |text| {
        pool_field(text, "output_all", "buffers") == 0
    });
    assert_eq!(pool_field(&after, "output_all", "fallbacks"), 0, "{after}");
    assert!(pool_field(&after, "pool_all", "fallbacks") > 0, "{after}");
    drop(con);
    let report = server.shutdown().expect("no core panicked");
    assert_eq!(report.metrics.merged().pool.in_use, 0, "{report}");
}

/// C15 with the pools: a subscriber that never reads is cut off at the
/// output limit, and the buffers holding its backlog go back.
#[test]
fn a_silent_subscriber_cut_off_gives_its_buffers_back() {
    let _serial = serial();
    let server = start(ServerConfig {
        cores: Some(1),
        output_limit: 1 << 20,
        ..ServerConfig::default()
    });
    let mut con = info_client(&server);
    let baseline = info_until(&mut con, "no output held", |text| {
        pool_field(text, "output_all", "buffers") == 0
    });
    let in_use = pool_field(&baseline, "pool_all", "in_use");
    let silent = subscriber(&server, "flood");
    let bytes = payload(0, 64 * 1024);
    let mut cut_off = false;
    // 64 MiB at most: far past the 1 MiB limit plus what the kernel takes.
    for _ in 0..1024 {
        let receivers: i64 = redis::cmd("PUBLISH")
            .arg("flood")
            .arg(&bytes)
            .query(&mut con)
            .unwrap();
        if receivers == 0 {
            cut_off = true;
            break;
        }
    }
    assert!(cut_off, "the silent subscriber was never disconnected");
    let after = info_until(&mut con, "every output buffer back", |text| {
        pool_field(text, "output_all", "buffers") == 0
            && pool_field(text, "pool_all", "in_use") == in_use
    });
    assert_eq!(pool_field(&after, "output_all", "bytes"), 0, "{after}");
    // Never more than the limit's worth pooled for output at once.
    let pooled = pool_field(&after, "pool_all", "in_use_bytes")
        + pool_field(&after, "pool_all", "free_bytes");
    assert!(pooled <= 4 << 20, "{after}");
    drop((silent, con));
    server.shutdown().expect("no core panicked");
}
