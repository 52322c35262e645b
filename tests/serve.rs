//! `corelane serve` end to end: a server started in this process, driven by
//! the `redis` client crate and by raw sockets that send exactly the bytes
//! a test wants, well-formed or not.
//!
//! Core 0 deals accepted connections to the cores in turn, so on a fresh
//! server the k-th connection lives on core `k % cores`; the tests open
//! their connections in order to put subscribers and publishers on the
//! cores they mean, and check it with INFO's `this_core`.
//!
//! Runtimes pin their loops to CPUs, so the tests take a lock and run one
//! at a time. Every socket read has a timeout: a server bug fails a test
//! instead of hanging it.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use corelane::runtime::IdleStrategy;
use corelane::serve::{Server, ServerConfig};

/// How long any one read may wait before the test gives up.
const TIMEOUT: Duration = Duration::from_secs(10);

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A server's settings for a test: a free port on loopback, `cores` cores,
/// everything else default, except the idle strategy when
/// `CORELANE_TEST_IDLE` names one (busy-spin, park): CI runs this file
/// under both, since spinning can hide a missing wake-up (C11).
fn config(cores: usize) -> ServerConfig {
    let idle = match std::env::var("CORELANE_TEST_IDLE").as_deref() {
        Ok("busy-spin") => IdleStrategy::BusySpin,
        Ok("park") => IdleStrategy::Park,
        Ok(other) => panic!("CORELANE_TEST_IDLE={other}: expected busy-spin or park"),
        Err(_) => IdleStrategy::default(),
    };
    ServerConfig {
        bind: SocketAddr::from(([127, 0, 0, 1], 0)),
        cores: Some(cores),
        idle,
        ..ServerConfig::default()
    }
}

fn start(config: ServerConfig) -> Server {
    Server::start(config).expect("server starts")
}

/// Shuts the server down and checks that every frame between its cores was
/// accounted for.
fn stop(server: Server) {
    let report = server.shutdown().expect("no core panicked");
    assert!(report.adds_up(), "lane traffic does not add up: {report}");
}

/// A `redis` crate connection with read and write timeouts.
fn client(server: &Server) -> redis::Connection {
    let url = format!("redis://{}/", server.local_addr());
    let client = redis::Client::open(url).expect("valid url");
    let con = client
        .get_connection_with_timeout(TIMEOUT)
        .expect("client connects");
    con.set_read_timeout(Some(TIMEOUT)).unwrap();
    con.set_write_timeout(Some(TIMEOUT)).unwrap();
    con
}

/// The core a connection lives on, from INFO's `this_core`.
fn core_of(con: &mut redis::Connection) -> usize {
    let info: String = redis::cmd("INFO").arg("server").query(con).unwrap();
    info_field(&info, "this_core")
}

/// A numeric field of INFO's text.
fn info_field(info: &str, name: &str) -> usize {
    info.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("INFO has no {name}: {info}"))
        .trim()
        .parse()
        .unwrap_or_else(|error| panic!("INFO {name}: {error}"))
}

/// The process's resident memory, in bytes (the server runs in-process).
fn rss_bytes() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("procfs");
    let kib: usize = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status");
    kib * 1024
}

/// Polls `check` until it holds or `limit` passes.
fn eventually(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(1));
    }
}

/// Sets a socket option that std does not expose.
fn set_socket_option<T>(stream: &TcpStream, option: libc::c_int, value: T) {
    // SAFETY: `stream` is an open socket, and `value` a live `T` whose size
    // is passed along with it.
    let result = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            option,
            (&value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    assert_eq!(result, 0, "setsockopt: {}", io::Error::last_os_error());
}

/// The RESP2 encoding of a bulk string.
fn bulk(bytes: &[u8]) -> Vec<u8> {
    let mut out = format!("${}\r\n", bytes.len()).into_bytes();
    out.extend_from_slice(bytes);
    out.extend_from_slice(b"\r\n");
    out
}

/// The RESP2 encoding of an array of bulk strings: a multibulk command, or
/// a pub/sub message as the server sends it.
fn multibulk(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", parts.len()).into_bytes();
    for part in parts {
        out.extend_from_slice(&bulk(part));
    }
    out
}

/// A subscription confirmation, `[kind, name, count]`.
fn confirmation(kind: &str, name: &str, count: usize) -> Vec<u8> {
    let mut out = b"*3\r\n".to_vec();
    out.extend_from_slice(&bulk(kind.as_bytes()));
    out.extend_from_slice(&bulk(name.as_bytes()));
    out.extend_from_slice(format!(":{count}\r\n").as_bytes());
    out
}

/// Bytes for a failure message: the first 200, lossily.
fn shown(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]);
    format!("{text:?} ({} bytes)", bytes.len())
}

/// One reply, parsed from a raw socket.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Resp {
    Simple(String),
    Error(String),
    Integer(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Resp>>),
}

/// How a raw connection ended.
#[derive(Debug, PartialEq, Eq)]
enum Ending {
    /// The server closed it (read returned 0).
    Eof,
    /// The server reset it (it closed with our bytes unread).
    Reset,
}

/// A plain TCP connection to the server: what a test writes is exactly what
/// the server reads.
struct Raw {
    stream: TcpStream,
    /// Bytes received and not yet taken by the test.
    buffer: Vec<u8>,
}

impl Raw {
    fn connect(server: &Server) -> Raw {
        let stream = TcpStream::connect(server.local_addr()).expect("raw connect");
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        Raw {
            stream,
            buffer: Vec::new(),
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to server");
    }

    /// One read from the socket into the buffer; panics on a timeout.
    fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 64 * 1024];
        let read = loop {
            // A socket with a read timeout can see EINTR with no handler at
            // all (a stop and continue of the process, signal(7)): read on.
            match self.stream.read(&mut chunk) {
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                read => break read,
            }
        };
        match read {
            Ok(n) => {
                self.buffer.extend_from_slice(&chunk[..n]);
                Ok(n)
            }
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                panic!("no reply within {TIMEOUT:?}; have {}", shown(&self.buffer))
            }
            Err(error) => Err(error),
        }
    }

    /// Takes exactly `n` bytes.
    fn take(&mut self, n: usize) -> Vec<u8> {
        while self.buffer.len() < n {
            let read = self.fill().expect("read from server");
            assert!(
                read > 0,
                "server closed with {n} bytes wanted, have {}",
                shown(&self.buffer)
            );
        }
        let rest = self.buffer.split_off(n);
        std::mem::replace(&mut self.buffer, rest)
    }

    /// Reads exactly `expected.len()` bytes and checks them.
    fn expect(&mut self, expected: &[u8]) {
        let got = self.take(expected.len());
        if let Some(at) = got.iter().zip(expected).position(|(a, b)| a != b) {
            // Show where they part, not megabytes of what matched.
            let from = at.saturating_sub(40);
            let to = |bytes: &[u8]| {
                String::from_utf8_lossy(&bytes[from..(at + 40).min(bytes.len())]).into_owned()
            };
            panic!(
                "replies differ at byte {at} of {}:\nexpected ...{:?}...\n     got ...{:?}...",
                expected.len(),
                to(expected),
                to(&got)
            );
        }
    }

    /// Takes one line, without its `\r\n`.
    fn line(&mut self) -> Vec<u8> {
        loop {
            if let Some(at) = self.buffer.windows(2).position(|w| w == b"\r\n") {
                let line = self.take(at + 2);
                return line[..at].to_vec();
            }
            let read = self.fill().expect("read from server");
            assert!(read > 0, "server closed mid-line");
        }
    }

    /// Takes one whole reply.
    fn reply(&mut self) -> Resp {
        let line = self.line();
        let text = String::from_utf8_lossy(&line[1..]).into_owned();
        let number = || text.parse::<i64>().expect("a number");
        match line[0] {
            b'+' => Resp::Simple(text),
            b'-' => Resp::Error(text),
            b':' => Resp::Integer(number()),
            b'$' if number() < 0 => Resp::Bulk(None),
            b'$' => {
                let mut bytes = self.take(number() as usize + 2);
                assert_eq!(bytes.split_off(bytes.len() - 2), b"\r\n");
                Resp::Bulk(Some(bytes))
            }
            b'*' if number() < 0 => Resp::Array(None),
            b'*' => Resp::Array(Some((0..number()).map(|_| self.reply()).collect())),
            other => panic!("not a reply: {:?}", char::from(other)),
        }
    }

    /// Sends an inline command and returns its reply.
    fn command(&mut self, line: &str) -> Resp {
        self.send(format!("{line}\r\n").as_bytes());
        self.reply()
    }

    /// The core this connection lives on.
    fn core(&mut self) -> usize {
        match self.command("INFO server") {
            Resp::Bulk(Some(info)) => info_field(&String::from_utf8_lossy(&info), "this_core"),
            other => panic!("INFO replied {other:?}"),
        }
    }

    /// Reads until the server closes the connection; returns every byte
    /// received (buffered ones included) and how it ended.
    fn until_closed(&mut self) -> (Vec<u8>, Ending) {
        let deadline = Instant::now() + TIMEOUT;
        let ending = loop {
            assert!(Instant::now() < deadline, "server did not close");
            match self.fill() {
                Ok(0) => break Ending::Eof,
                Ok(_) => {}
                Err(error) if error.kind() == io::ErrorKind::ConnectionReset => {
                    break Ending::Reset
                }
                Err(error) => panic!("read failed: {error}"),
            }
        };
        (std::mem::take(&mut self.buffer), ending)
    }

    /// Checks that nothing more arrives for a while.
    fn quiet(&mut self) {
        self.stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut byte = [0u8; 1];
        let result = self.stream.read(&mut byte);
        self.stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        match result {
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            other => panic!(
                "expected silence, got {other:?}, have {}",
                shown(&self.buffer)
            ),
        }
        assert!(self.buffer.is_empty(), "unexpected {}", shown(&self.buffer));
    }
}

/// The payload of message `index` in the ordering tests: the index first,
/// then a length that varies, so that a lost, repeated or reordered message
/// cannot go unnoticed.
fn numbered(prefix: &str, index: usize) -> Vec<u8> {
    let mut payload = format!("{prefix}{index:08}:").into_bytes();
    payload.resize(payload.len() + index % 61, b'a' + (index % 26) as u8);
    payload
}

/// Subscribes `con` to `channel`, reports on `ready` once the server has
/// confirmed, then collects `count` message payloads.
fn collect(
    mut con: redis::Connection,
    channel: &'static str,
    count: usize,
    ready: mpsc::Sender<()>,
) -> Vec<Vec<u8>> {
    let mut pubsub = con.as_pubsub();
    pubsub.subscribe(channel).expect("subscribe");
    ready.send(()).unwrap();
    (0..count)
        .map(|_| {
            let msg = pubsub.get_message().expect("message within the timeout");
            assert_eq!(msg.get_channel_name(), channel);
            assert!(!msg.from_pattern());
            msg.get_payload_bytes().to_vec()
        })
        .collect()
}

/// Redis's error text when `command` is sent in subscribed mode.
fn subscribed_mode_error(command: &str) -> String {
    format!(
        "-ERR Can't execute '{command}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / \
         RESET are allowed in this context\r\n"
    )
}

/// C14: what redis-cli, redis-benchmark and client libraries send when they
/// connect gets well-formed answers, and an unknown command leaves the
/// connection usable.
#[test]
fn connect_time_commands_get_well_formed_replies() {
    let _serial = serial();
    let server = start(config(2));
    let mut con = client(&server);

    let pong: String = redis::cmd("PING").query(&mut con).unwrap();
    assert_eq!(pong, "PONG");
    let echoed: String = redis::cmd("PING").arg("hi there").query(&mut con).unwrap();
    assert_eq!(echoed, "hi there");
    let echoed: Vec<u8> = redis::cmd("ECHO")
        .arg(&b"a\r\nb\0"[..])
        .query(&mut con)
        .unwrap();
    assert_eq!(echoed, b"a\r\nb\0");

    // redis-cli asks for the command docs first; an empty table is fine.
    let docs: redis::Value = redis::cmd("COMMAND").arg("DOCS").query(&mut con).unwrap();
    assert_eq!(docs, redis::Value::Array(vec![]));

    // redis-benchmark reads these two and requires name-value pairs.
    let save: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("save")
        .query(&mut con)
        .unwrap();
    assert_eq!(save, ["save", ""]);
    let aof: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("appendonly")
        .query(&mut con)
        .unwrap();
    assert_eq!(aof, ["appendonly", "no"]);

    for hello in [&["HELLO"][..], &["HELLO", "2"]] {
        let fields: Vec<redis::Value> = redis::cmd(hello[0])
            .arg(&hello[1..])
            .query(&mut con)
            .unwrap();
        assert_eq!(fields.len(), 14, "{hello:?}: {fields:?}");
        let proto = fields
            .iter()
            .position(|field| *field == redis::Value::BulkString(b"proto".to_vec()))
            .expect("HELLO names the protocol");
        assert_eq!(fields[proto + 1], redis::Value::Int(2));
        // The Redis version INFO reports, not the crate's: clients pick
        // features by it.
        let version = fields
            .iter()
            .position(|field| *field == redis::Value::BulkString(b"version".to_vec()))
            .expect("HELLO names the version");
        assert_eq!(
            fields[version + 1],
            redis::Value::BulkString(b"7.0.0".to_vec())
        );
    }
    let server_info: String = redis::cmd("INFO").arg("server").query(&mut con).unwrap();
    assert!(
        server_info.contains("\r\nredis_version:7.0.0\r\n"),
        "{server_info}"
    );
    let crate_version = format!("\r\ncorelane_version:{}\r\n", env!("CARGO_PKG_VERSION"));
    assert!(server_info.contains(&crate_version), "{server_info}");
    let refused = redis::cmd("HELLO")
        .arg("3")
        .query::<redis::Value>(&mut con)
        .unwrap_err();
    assert_eq!(refused.code(), Some("NOPROTO"), "{refused}");

    let ok: String = redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg("tester")
        .query(&mut con)
        .unwrap();
    assert_eq!(ok, "OK");
    let name: String = redis::cmd("CLIENT").arg("GETNAME").query(&mut con).unwrap();
    assert_eq!(name, "tester");
    let id: i64 = redis::cmd("CLIENT").arg("ID").query(&mut con).unwrap();
    assert!(id > 0);
    let ok: String = redis::cmd("CLIENT")
        .arg("SETINFO")
        .arg("LIB-NAME")
        .arg("corelane-tests")
        .query(&mut con)
        .unwrap();
    assert_eq!(ok, "OK");
    // Redis 7.2 takes only these two attributes, and one word for each.
    for (attribute, value, error) in [
        ("lib-color", "red", "Unrecognized option 'lib-color'"),
        (
            "lib-ver",
            "1 2",
            "lib-ver cannot contain spaces, newlines or special characters.",
        ),
    ] {
        let refused = redis::cmd("CLIENT")
            .arg("SETINFO")
            .arg(attribute)
            .arg(value)
            .query::<String>(&mut con)
            .unwrap_err();
        assert_eq!(refused.detail(), Some(error), "{refused}");
    }
    let ok: String = redis::cmd("SELECT").arg(0).query(&mut con).unwrap();
    assert_eq!(ok, "OK");
    let refused = redis::cmd("SELECT")
        .arg(1)
        .query::<String>(&mut con)
        .unwrap_err();
    assert!(
        refused.to_string().contains("DB index is out of range"),
        "{refused}"
    );

    let info: String = redis::cmd("INFO").query(&mut con).unwrap();
    assert!(info.contains("# Latency\r\n"), "{info}");
    assert!(info.contains("\r\ndelivery_all:count="), "{info}");
    assert!(info.contains("\r\ndelivery_core_1:count="), "{info}");
    assert!(info.contains("\r\nconnected_clients:1\r\n"), "{info}");

    let unknown = redis::cmd("FLUSHALL")
        .arg("ASYNC")
        .query::<String>(&mut con)
        .unwrap_err();
    assert_eq!(unknown.code(), Some("ERR"), "{unknown}");
    assert!(
        unknown
            .to_string()
            .contains("unknown command 'FLUSHALL', with args beginning with: 'ASYNC'"),
        "{unknown}"
    );
    let pong: String = redis::cmd("PING").query(&mut con).unwrap();
    assert_eq!(pong, "PONG", "the connection survives an unknown command");

    // The exact bytes redis-benchmark parses, on a raw socket.
    let mut raw = Raw::connect(&server);
    raw.send(&multibulk(&[b"CONFIG", b"GET", b"save"]));
    raw.expect(b"*2\r\n$4\r\nsave\r\n$0\r\n\r\n");
    raw.send(b"CONFIG GET appendonly\r\n");
    raw.expect(b"*2\r\n$10\r\nappendonly\r\n$2\r\nno\r\n");
    raw.send(b"COMMAND DOCS\r\nHELLO 3\r\nNOSUCH\r\nPING\r\n");
    raw.expect(b"*0\r\n-NOPROTO this server speaks RESP2 only\r\n");
    raw.expect(b"-ERR unknown command 'NOSUCH', with args beginning with: \r\n+PONG\r\n");
    // Arguments as Redis 7 shows them: each quoted with a space after it,
    // until 128 bytes of them are shown, the last cut to fit.
    let long = [b'a'; 200];
    raw.send(&multibulk(&[b"NOSUCH", b"x", b"", &long, b"never"]));
    let shown = format!(
        "-ERR unknown command 'NOSUCH', with args beginning with: 'x' '' '{}' \r\n",
        "a".repeat(128 - "'x' '' ".len())
    );
    raw.expect(shown.as_bytes());
    // Integers read as Redis reads them: no leading zero, no sign but `-`.
    raw.send(b"HELLO 02\r\nHELLO abc\r\nHELLO -2\r\n");
    raw.expect(b"-ERR Protocol version is not an integer or out of range\r\n");
    raw.expect(b"-ERR Protocol version is not an integer or out of range\r\n");
    raw.expect(b"-NOPROTO unsupported protocol version\r\n");
    raw.send(b"SELECT 00\r\nSELECT +1\r\nSELECT 5000000000\r\nSELECT -1\r\n");
    for _ in 0..2 {
        raw.expect(b"-ERR value is not an integer or out of range\r\n");
    }
    // Redis 7's own words, "value must between" as it writes them.
    raw.expect(b"-ERR value is out of range, value must between -2147483648 and 2147483647\r\n");
    raw.expect(b"-ERR DB index is out of range\r\n");

    // Names are cut at 128 bytes in errors, as Redis cuts them, rather
    // than echoed whole.
    let long = vec![b'X'; 100_000];
    for command in [&[&long[..]][..], &[b"CLIENT", &long], &[b"COMMAND", &long]] {
        raw.send(&multibulk(command));
        match raw.reply() {
            Resp::Error(text) => {
                assert!(text.len() < 300, "a {}-byte error", text.len());
                assert!(text.to_uppercase().contains(&"X".repeat(128)), "{text}");
            }
            other => panic!("{other:?}"),
        }
    }
    raw.send(b"SUBSCRIBE c\r\n");
    raw.expect(&confirmation("subscribe", "c", 1));
    raw.send(&multibulk(&[&long]));
    match raw.reply() {
        Resp::Error(text) => assert!(text.len() < 300, "a {}-byte error", text.len()),
        other => panic!("{other:?}"),
    }

    drop(con);
    drop(raw);
    stop(server);
}

/// CLIENT LIST lists every core's connections, in the order of their
/// IDs, whichever core serves the one asking; the commands after it in a
/// pipeline answer after it, even from a client that has already shut
/// down its sending side.
#[test]
fn client_list_gathers_every_cores_connections() {
    let _serial = serial();
    let server = start(config(3));
    // Six connections, dealt round the three cores; each one named.
    let mut raws: Vec<Raw> = (0..6).map(|_| Raw::connect(&server)).collect();
    let mut ids = Vec::new();
    for (n, raw) in raws.iter_mut().enumerate() {
        raw.send(format!("CLIENT SETNAME c{n}\r\nCLIENT ID\r\n").as_bytes());
        raw.expect(b"+OK\r\n");
        match raw.reply() {
            Resp::Integer(id) => ids.push(id),
            other => panic!("{other:?}"),
        }
    }
    let mut sorted = ids.clone();
    sorted.sort_unstable();

    for raw in &mut raws {
        raw.send(b"CLIENT LIST\r\nPING\r\n");
        let list = match raw.reply() {
            Resp::Bulk(Some(list)) => String::from_utf8(list).unwrap(),
            other => panic!("{other:?}"),
        };
        raw.expect(b"+PONG\r\n");
        let lines: Vec<&str> = list.lines().collect();
        let listed: Vec<i64> = lines
            .iter()
            .map(|line| {
                line.strip_prefix("id=")
                    .unwrap()
                    .split(' ')
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap()
            })
            .collect();
        assert_eq!(listed, sorted, "{list}");
        let cores: std::collections::BTreeSet<&str> = lines
            .iter()
            .map(|line| line.rsplit(' ').next().unwrap())
            .collect();
        assert_eq!(
            cores.into_iter().collect::<Vec<_>>(),
            ["core=0", "core=1", "core=2"]
        );
        for (n, id) in ids.iter().enumerate() {
            let line = lines
                .iter()
                .find(|line| line.starts_with(&format!("id={id} ")))
                .unwrap();
            assert!(line.contains(&format!(" name=c{n} ")), "{line}");
        }
    }

    // Sent whole, then the sending side shut: every reply still comes,
    // in order, and then the server closes.
    let mut last = raws.pop().unwrap();
    last.send(b"CLIENT LIST\r\nCLIENT LIST\r\nECHO done\r\n");
    last.stream.shutdown(std::net::Shutdown::Write).unwrap();
    for _ in 0..2 {
        match last.reply() {
            Resp::Bulk(Some(list)) => assert_eq!(list.iter().filter(|&&b| b == b'\n').count(), 6),
            other => panic!("{other:?}"),
        }
    }
    last.expect(b"$4\r\ndone\r\n");
    assert_eq!(last.until_closed(), (Vec::new(), Ending::Eof));

    drop(raws);
    stop(server);
}

/// A core's lines of CLIENT LIST larger than a lane frame come in pieces,
/// put back together whole.
#[test]
fn client_list_larger_than_a_lane_frame_arrives_whole() {
    let _serial = serial();
    let server = start(ServerConfig {
        lane_capacity: 1024,
        ..config(2)
    });
    let mut raws: Vec<Raw> = (0..8).map(|_| Raw::connect(&server)).collect();
    let names: Vec<String> = (0..8).map(|n| format!("{n}{}", "x".repeat(300))).collect();
    for (raw, name) in raws.iter_mut().zip(&names) {
        raw.send(format!("CLIENT SETNAME {name}\r\n").as_bytes());
        raw.expect(b"+OK\r\n");
    }
    for raw in raws.iter_mut().take(2) {
        raw.send(b"CLIENT LIST\r\n");
        let list = match raw.reply() {
            Resp::Bulk(Some(list)) => String::from_utf8(list).unwrap(),
            other => panic!("{other:?}"),
        };
        assert!(list.len() > 2 * 1024, "{} bytes", list.len());
        assert_eq!(list.lines().count(), 8, "{list}");
        for name in &names {
            assert_eq!(list.matches(&format!(" name={name} ")).count(), 1, "{name}");
        }
    }
    drop(raws);
    let report = server.shutdown().expect("no core panicked");
    assert!(report.adds_up(), "{report}");
    // Two lists, each with the other core's lines in several pieces.
    let pieces = report
        .metrics
        .merged()
        .delivery_by_kind
        .get("client list lines")
        .map_or(0, |pieces| pieces.count());
    assert!(pieces > 2, "{pieces} pieces");
}

/// Several cores' lines of CLIENT LIST, each in several pieces, are put
/// back together core by core: pieces from two cores that arrive
/// interleaved (a lane of two frames holds a few pieces at a time) make
/// no line out of two cores' halves.
#[test]
fn client_list_pieces_from_several_cores_are_not_mixed() {
    let _serial = serial();
    let server = start(ServerConfig {
        lane_capacity: 1024,
        ..config(3)
    });
    // Nine connections, three a core, each line about 400 bytes: every
    // core's lines take several pieces.
    let mut raws: Vec<Raw> = (0..9).map(|_| Raw::connect(&server)).collect();
    let names: Vec<String> = (0..9).map(|n| format!("{n}{}", "x".repeat(300))).collect();
    for (raw, name) in raws.iter_mut().zip(&names) {
        raw.send(format!("CLIENT SETNAME {name}\r\n").as_bytes());
        raw.expect(b"+OK\r\n");
    }
    for raw in &mut raws {
        raw.send(b"CLIENT LIST\r\n");
        let list = match raw.reply() {
            Resp::Bulk(Some(list)) => String::from_utf8(list).unwrap(),
            other => panic!("{other:?}"),
        };
        assert_eq!(list.lines().count(), 9, "{list}");
        for line in list.lines() {
            assert!(line.starts_with("id="), "{line}");
            assert_eq!(line.matches("id=").count(), 1, "{line}");
            assert_eq!(line.matches(" name=").count(), 1, "{line}");
            assert_eq!(line.matches(" core=").count(), 1, "{line}");
        }
        for name in &names {
            assert_eq!(list.matches(&format!(" name={name} ")).count(), 1, "{name}");
        }
    }
    drop(raws);
    stop(server);
}

/// A client that sends CLIENT LIST and commands whose replies pass the
/// read pause, then shuts down its sending side before the list is in,
/// still gets every reply: the end of its input is met again once the
/// commands that waited have run, not taken as the end of its commands.
#[test]
fn half_closed_client_behind_a_client_list_gets_replies_past_the_read_pause() {
    let _serial = serial();
    let server = start(ServerConfig {
        read_pause: 1024,
        ..config(2)
    });
    let big = "y".repeat(4000);
    for _ in 0..5 {
        let mut raw = half_closed_after(&server, "CLIENT LIST\r\n", &big);
        match raw.reply() {
            Resp::Bulk(Some(list)) => assert!(list.starts_with(b"id="), "{}", shown(&list)),
            other => panic!("{other:?}"),
        }
        expect_echoes_then_end(&mut raw, &big);
    }
    stop(server);
}

/// A connection that has sent `first`, then `ECHO big` twice and `ECHO
/// done`, and shut down its sending side.
fn half_closed_after(server: &Server, first: &str, big: &str) -> Raw {
    let mut raw = Raw::connect(server);
    raw.send(format!("{first}ECHO {big}\r\nECHO {big}\r\nECHO done\r\n").as_bytes());
    raw.stream.shutdown(std::net::Shutdown::Write).unwrap();
    raw
}

/// The replies to [`half_closed_after`]'s ECHOs, then the end of the
/// connection.
fn expect_echoes_then_end(raw: &mut Raw, big: &str) {
    for _ in 0..2 {
        assert_eq!(raw.reply(), Resp::Bulk(Some(big.as_bytes().to_vec())));
    }
    assert_eq!(raw.reply(), Resp::Bulk(Some(b"done".to_vec())));
    assert_eq!(raw.until_closed(), (Vec::new(), Ending::Eof));
}

/// A client that sends commands whose replies pass the read pause and
/// then shuts down its sending side gets every reply: the commands left
/// at the pause run before the end of its input closes the connection,
/// also when the write that makes room and the end of input come in one
/// readiness event.
#[test]
fn half_closed_client_paused_at_the_read_pause_gets_every_reply() {
    let _serial = serial();
    let server = start(ServerConfig {
        read_pause: 1024,
        ..config(2)
    });
    let big = "y".repeat(700);
    for _ in 0..10 {
        let mut raw = half_closed_after(&server, "", &big);
        expect_echoes_then_end(&mut raw, &big);
    }
    stop(server);
}

/// A client that pipelines CLIENT LIST many times over is served like
/// one that pipelines any other command: what it sends is not read ahead
/// while a list waits for other cores, so its unparsed input stays small
/// and does not reach the query buffer limit.
#[test]
fn pipelined_client_lists_do_not_pile_up_unparsed_input() {
    const LISTS: usize = 20_000;
    let _serial = serial();
    let server = start(ServerConfig {
        max_query_buffer: 64 * 1024,
        ..config(2)
    });
    let mut raw = Raw::connect(&server);
    // Sent from another thread while this one reads: 260 kB of commands,
    // four times the limit.
    let mut sender = raw.stream.try_clone().unwrap();
    let sending = thread::spawn(move || {
        sender
            .write_all(&b"CLIENT LIST\r\n".repeat(LISTS))
            .expect("send the pipeline");
    });
    for n in 0..LISTS {
        match raw.reply() {
            Resp::Bulk(Some(list)) => assert!(list.starts_with(b"id="), "{}", shown(&list)),
            other => panic!("reply {n}: {other:?}"),
        }
    }
    sending.join().unwrap();
    raw.send(b"PING\r\n");
    raw.expect(b"+PONG\r\n");
    stop(server);
}

/// CLIENT answers as Redis 7 does: HELP as an array of status lines,
/// LIST and INFO as `field=value` lines, and Redis's own words for an
/// unknown subcommand or a wrong number of arguments.
#[test]
fn client_help_list_and_errors_read_as_redis_7s() {
    let _serial = serial();
    let server = start(config(1));
    let mut con = client(&server);
    let ok: String = redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg("lister")
        .query(&mut con)
        .unwrap();
    assert_eq!(ok, "OK");
    let mut subscriber = Raw::connect(&server);
    subscriber.send(b"SUBSCRIBE news\r\n");
    subscriber.expect(&confirmation("subscribe", "news", 1));

    let help: Vec<String> = redis::cmd("CLIENT").arg("HELP").query(&mut con).unwrap();
    assert_eq!(
        help[0],
        "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:"
    );
    for sub in [
        "GETNAME",
        "ID",
        "INFO",
        "LIST [options ...]",
        "SETNAME <name>",
        "HELP",
    ] {
        assert!(help.iter().any(|line| line == sub), "{sub} in {help:?}");
    }
    assert_eq!(
        help.last().map(String::as_str),
        Some("    Print this help.")
    );

    let list: String = redis::cmd("CLIENT").arg("LIST").query(&mut con).unwrap();
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 2, "{list}");
    assert!(list.ends_with('\n'), "{list:?}");
    let id: i64 = redis::cmd("CLIENT").arg("ID").query(&mut con).unwrap();
    let mine = lines
        .iter()
        .find(|line| line.starts_with(&format!("id={id} ")))
        .unwrap_or_else(|| panic!("no line for id {id}: {list}"));
    for field in [
        " name=lister ",
        " flags=N ",
        " db=0 ",
        " sub=0 ",
        " psub=0 ",
    ] {
        assert!(mine.contains(field), "{field} in {mine}");
    }
    assert!(
        mine.contains(&format!(" laddr={} ", server.local_addr())),
        "{mine}"
    );
    let other = lines
        .iter()
        .find(|line| !line.starts_with(&format!("id={id} ")));
    assert!(
        other.is_some_and(|line| line.contains(" flags=P ") && line.contains(" sub=1 ")),
        "{list}"
    );
    // CLIENT INFO is the same line, but for the command just sent.
    let info: String = redis::cmd("CLIENT").arg("INFO").query(&mut con).unwrap();
    assert!(mine.contains(" cmd=client|list "), "{mine}");
    assert_eq!(
        info.trim_end(),
        mine.trim_end()
            .replace(" cmd=client|list ", " cmd=client|info ")
    );

    let mut raw = Raw::connect(&server);
    raw.send(b"CLIENT NOSUCH\r\nCLIENT LIST extra\r\nCLIENT SETNAME two words\r\n");
    raw.expect(b"-ERR unknown subcommand 'NOSUCH'. Try CLIENT HELP.\r\n");
    raw.expect(b"-ERR syntax error\r\n");
    raw.expect(b"-ERR wrong number of arguments for 'client|setname' command\r\n");
    raw.send(b"CLIENT SETNAME a\x01b\r\nCLIENT GETNAME\r\n");
    raw.expect(
        b"-ERR Client names cannot contain spaces, newlines or special characters.\r\n$-1\r\n",
    );

    drop((con, subscriber, raw));
    stop(server);
}

/// CLIENT ID names one connection on the whole server, as in Redis, not
/// one per core: connections served by different cores at the same time
/// never share an id, and CLIENT INFO shows the id CLIENT ID returns.
#[test]
fn client_ids_are_unique_across_cores() {
    let _serial = serial();
    let server = start(config(3));
    // Connections are spread over the cores in turn: six cover each twice.
    let mut cons: Vec<redis::Connection> = (0..6).map(|_| client(&server)).collect();
    let mut ids = Vec::new();
    let mut cores = Vec::new();
    for con in &mut cons {
        let id: i64 = redis::cmd("CLIENT").arg("ID").query(con).unwrap();
        let info: String = redis::cmd("CLIENT").arg("INFO").query(con).unwrap();
        assert!(info.starts_with(&format!("id={id} ")), "{info}");
        let core = info
            .split(' ')
            .find_map(|field| field.strip_prefix("core="));
        cores.push(core.unwrap().trim().to_string());
        ids.push(id);
    }
    cores.sort();
    cores.dedup();
    assert_eq!(cores.len(), 3, "connections on every core: {cores:?}");
    let mut distinct = ids.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), ids.len(), "ids {ids:?}");
    assert!(ids.iter().all(|&id| id > 0), "ids {ids:?}");
    drop(cons);
    stop(server);
}

/// Subscribers on three cores each receive all of 10,000 messages from a
/// publisher on a fourth, in publish order, and every PUBLISH counts all
/// three.
#[test]
fn messages_reach_subscribers_on_every_core_in_publish_order() {
    const MESSAGES: usize = 10_000;
    const BATCH: usize = 100;
    let _serial = serial();
    let server = start(config(4));

    let mut subscribers = Vec::new();
    for core in 0..3 {
        let mut con = client(&server);
        assert_eq!(core_of(&mut con), core);
        subscribers.push(con);
    }
    let mut publisher = client(&server);
    assert_eq!(core_of(&mut publisher), 3);

    let (ready, confirmed) = mpsc::channel();
    let readers: Vec<_> = subscribers
        .into_iter()
        .map(|con| {
            let ready = ready.clone();
            thread::spawn(move || collect(con, "orders", MESSAGES, ready))
        })
        .collect();
    for _ in 0..readers.len() {
        confirmed
            .recv_timeout(TIMEOUT)
            .expect("subscription confirmed");
    }

    for first in (0..MESSAGES).step_by(BATCH) {
        let mut pipe = redis::pipe();
        for index in first..first + BATCH {
            pipe.cmd("PUBLISH").arg("orders").arg(numbered("", index));
        }
        let receivers: Vec<i64> = pipe.query(&mut publisher).expect("publish");
        assert!(
            receivers.iter().all(|&n| n == 3),
            "PUBLISH {first}..: {receivers:?}"
        );
    }

    let expected: Vec<Vec<u8>> = (0..MESSAGES).map(|index| numbered("", index)).collect();
    for (core, reader) in readers.into_iter().enumerate() {
        let received = reader.join().expect("subscriber received everything");
        assert!(
            received == expected,
            "core {core}: messages lost or reordered"
        );
    }
    drop(publisher);
    stop(server);
}

/// Two publishers on different cores, one channel: every subscriber sees
/// each publisher's messages in that publisher's order, and all of them.
#[test]
fn each_publishers_order_is_kept_at_every_subscriber() {
    const EACH: usize = 3_000;
    let _serial = serial();
    let server = start(config(3));

    let mut cons: Vec<redis::Connection> = (0..4).map(|_| client(&server)).collect();
    let cores: Vec<usize> = cons.iter_mut().map(core_of).collect();
    assert_eq!(cores, [0, 1, 2, 0]);
    let publishers = cons.split_off(2);

    let (ready, confirmed) = mpsc::channel();
    let readers: Vec<_> = cons
        .into_iter()
        .map(|con| {
            let ready = ready.clone();
            thread::spawn(move || collect(con, "ticks", 2 * EACH, ready))
        })
        .collect();
    for _ in 0..readers.len() {
        confirmed
            .recv_timeout(TIMEOUT)
            .expect("subscription confirmed");
    }

    let writers: Vec<_> = publishers
        .into_iter()
        .zip(["A", "B"])
        .map(|(mut con, name)| {
            thread::spawn(move || {
                for first in (0..EACH).step_by(50) {
                    let mut pipe = redis::pipe();
                    for index in first..first + 50 {
                        pipe.cmd("PUBLISH").arg("ticks").arg(numbered(name, index));
                    }
                    let receivers: Vec<i64> = pipe.query(&mut con).expect("publish");
                    assert!(receivers.iter().all(|&n| n == 2), "{receivers:?}");
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().expect("publisher finished");
    }

    for reader in readers {
        let received = reader.join().expect("subscriber received everything");
        for name in ["A", "B"] {
            let mine: Vec<&Vec<u8>> = received
                .iter()
                .filter(|payload| payload.starts_with(name.as_bytes()))
                .collect();
            let expected: Vec<Vec<u8>> = (0..EACH).map(|index| numbered(name, index)).collect();
            assert_eq!(mine.len(), EACH, "publisher {name}: count");
            assert!(
                mine.into_iter().eq(expected.iter()),
                "publisher {name}: order broken"
            );
        }
    }
    stop(server);
}

/// PSUBSCRIBE patterns match as Redis globs, for a subscriber on the
/// publisher's core and one on another; the subscribed mode allows only
/// what RESP2 allows; PUNSUBSCRIBE and UNSUBSCRIBE stop delivery.
#[test]
fn pattern_subscriptions_and_subscribed_mode() {
    let _serial = serial();
    let server = start(config(2));
    let mut local = Raw::connect(&server);
    let mut remote = Raw::connect(&server);
    let mut publisher = client(&server);
    assert_eq!((local.core(), remote.core()), (0, 1));
    assert_eq!(core_of(&mut publisher), 0, "the publisher shares core 0");
    let mut subs = [local, remote];
    let publish = |con: &mut redis::Connection, channel: &str, payload: &str| -> i64 {
        redis::cmd("PUBLISH")
            .arg(channel)
            .arg(payload)
            .query(con)
            .unwrap()
    };

    let patterns = ["news.*", "h?llo", "[ab]c"];
    for sub in &mut subs {
        sub.send(b"PSUBSCRIBE news.* h?llo [ab]c\r\n");
        for (count, pattern) in patterns.iter().enumerate() {
            sub.expect(&confirmation("psubscribe", pattern, count + 1));
        }
    }

    let deliveries = [
        ("news.sport", "goal", Some("news.*")),
        ("news", "no dot", None),
        ("hello", "h1", Some("h?llo")),
        ("hallo", "h2", Some("h?llo")),
        ("hllo", "too short", None),
        ("ac", "c1", Some("[ab]c")),
        ("bc", "c2", Some("[ab]c")),
        ("cc", "outside the class", None),
    ];
    for (channel, payload, pattern) in deliveries {
        let expected = if pattern.is_some() { 2 } else { 0 };
        assert_eq!(
            publish(&mut publisher, channel, payload),
            expected,
            "{channel}"
        );
    }
    for sub in &mut subs {
        for (channel, payload, pattern) in deliveries {
            if let Some(pattern) = pattern {
                let parts: [&[u8]; 4] = [
                    b"pmessage",
                    pattern.as_bytes(),
                    channel.as_bytes(),
                    payload.as_bytes(),
                ];
                sub.expect(&multibulk(&parts));
            }
        }
        sub.quiet();

        // Subscribed mode: RESP2 allows (un)subscribing, PING, QUIT, RESET.
        sub.send(b"ECHO hi\r\n");
        sub.expect(subscribed_mode_error("echo").as_bytes());
        sub.send(b"PING\r\nPING hey\r\n");
        sub.expect(b"*2\r\n$4\r\npong\r\n$0\r\n\r\n*2\r\n$4\r\npong\r\n$3\r\nhey\r\n");
    }

    for sub in &mut subs {
        sub.send(b"PUNSUBSCRIBE h?llo\r\n");
        sub.expect(&confirmation("punsubscribe", "h?llo", 2));
    }
    assert_eq!(publish(&mut publisher, "hello", "gone"), 0);
    assert_eq!(publish(&mut publisher, "ac", "still here"), 2);
    for sub in &mut subs {
        sub.expect(&multibulk(&[b"pmessage", b"[ab]c", b"ac", b"still here"]));
    }

    // UNSUBSCRIBE without names drops every channel (in any order), not
    // the patterns.
    for sub in &mut subs {
        sub.send(b"SUBSCRIBE plain1 plain2\r\n");
        sub.expect(&confirmation("subscribe", "plain1", 3));
        sub.expect(&confirmation("subscribe", "plain2", 4));
    }
    assert_eq!(publish(&mut publisher, "plain1", "p"), 2);
    for sub in &mut subs {
        sub.expect(&multibulk(&[b"message", b"plain1", b"p"]));
        sub.send(b"UNSUBSCRIBE\r\n");
        let replies = [sub.reply(), sub.reply()];
        let order = |first: &str, second: &str| {
            let reply = |name: &str, count| {
                Resp::Array(Some(vec![
                    Resp::Bulk(Some(b"unsubscribe".to_vec())),
                    Resp::Bulk(Some(name.as_bytes().to_vec())),
                    Resp::Integer(count),
                ]))
            };
            [reply(first, 3), reply(second, 2)]
        };
        assert!(
            replies == order("plain1", "plain2") || replies == order("plain2", "plain1"),
            "{replies:?}"
        );
    }
    assert_eq!(publish(&mut publisher, "plain2", "p"), 0);
    assert_eq!(publish(&mut publisher, "news.x", "n"), 2);
    for sub in &mut subs {
        sub.expect(&multibulk(&[b"pmessage", b"news.*", b"news.x", b"n"]));
        sub.send(b"PUNSUBSCRIBE\r\n");
        let counts: Vec<Resp> = (0..2)
            .map(|_| match sub.reply() {
                Resp::Array(Some(mut parts)) => parts.pop().unwrap(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(counts, [Resp::Integer(1), Resp::Integer(0)]);

        // Out of subscribed mode: any command again.
        sub.send(b"ECHO hi\r\nPING\r\nUNSUBSCRIBE\r\n");
        sub.expect(b"$2\r\nhi\r\n+PONG\r\n");
        sub.expect(b"*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n");
    }
    assert_eq!(publish(&mut publisher, "news.y", "n"), 0);
    for sub in &mut subs {
        sub.quiet();
    }
    stop(server);
}

/// A RESP2 subscriber sending a command this server does not serve is
/// answered as Redis 7.0 answers it when Redis has the command: its
/// subcommand, then its arity, then subscribed mode checked, as Redis
/// checks them (the expected bytes are redis-server 7.0's). A command
/// Redis lacks too, and SSUBSCRIBE (which Redis allows a subscriber),
/// stay unknown; out of subscribed mode every one of them is unknown.
#[test]
fn subscribers_are_refused_redis_commands_in_redis_7_words() {
    let _serial = serial();
    let server = start(config(2));
    let mut raw = Raw::connect(&server);
    raw.send(&multibulk(&[b"SUBSCRIBE", b"a"]));
    raw.expect(&confirmation("subscribe", "a", 1));
    let cases: &[(&[&[u8]], String)] = &[
        (&[b"GET", b"k"], subscribed_mode_error("get")),
        (&[b"auth", b"secret"], subscribed_mode_error("auth")),
        (&[b"Set", b"a", b"b"], subscribed_mode_error("set")),
        (
            &[b"CONFIG", b"SET", b"x", b"y"],
            subscribed_mode_error("config|set"),
        ),
        (
            &[b"CLIENT", b"KILL", b"a", b"b"],
            subscribed_mode_error("client|kill"),
        ),
        (
            &[b"command", b"getkeys", b"get", b"k"],
            subscribed_mode_error("command|getkeys"),
        ),
        (
            &[b"GET"],
            "-ERR wrong number of arguments for 'get' command\r\n".into(),
        ),
        (
            &[b"client", b"kill"],
            "-ERR wrong number of arguments for 'client|kill' command\r\n".into(),
        ),
        (
            &[b"ssubscribe"],
            "-ERR wrong number of arguments for 'ssubscribe' command\r\n".into(),
        ),
        (
            &[b"acl", b"nosuch"],
            "-ERR unknown subcommand 'nosuch'. Try ACL HELP.\r\n".into(),
        ),
        (
            &[b"foo", b"bar"],
            "-ERR unknown command 'foo', with args beginning with: 'bar' \r\n".into(),
        ),
        (
            &[b"config|set", b"a"],
            "-ERR unknown command 'config|set', with args beginning with: 'a' \r\n".into(),
        ),
        (
            &[b"SSUBSCRIBE", b"s"],
            "-ERR unknown command 'SSUBSCRIBE', with args beginning with: 's' \r\n".into(),
        ),
    ];
    for (request, expected) in cases {
        raw.send(&multibulk(request));
        raw.expect(expected.as_bytes());
    }
    // Still subscribed, and still a connection that works.
    raw.send(b"PING\r\n");
    raw.expect(b"*2\r\n$4\r\npong\r\n$0\r\n\r\n");

    raw.send(&multibulk(&[b"UNSUBSCRIBE"]));
    raw.expect(&confirmation("unsubscribe", "a", 0));
    raw.send(&multibulk(&[b"GET", b"k"]));
    raw.expect(b"-ERR unknown command 'GET', with args beginning with: 'k' \r\n");
    raw.send(&multibulk(&[b"GET"]));
    raw.expect(b"-ERR unknown command 'GET', with args beginning with: \r\n");
    stop(server);
}

/// Once UNSUBSCRIBE or RESET is confirmed, no core counts the old
/// subscription in a PUBLISH reply. Repeated, with the subscriber on
/// another core than the publisher's, where a late announcement shows.
#[test]
fn publish_counts_follow_confirmed_unsubscribes() {
    let _serial = serial();
    // Parked cores widen the window: the publisher's core wakes for the
    // announcement no sooner than the client has read the confirmation.
    let mut config = config(2);
    config.idle = IdleStrategy::Park;
    let server = start(config);
    let mut publisher = client(&server);
    let mut sub = Raw::connect(&server);
    assert_eq!((core_of(&mut publisher), sub.core()), (0, 1));
    for round in 0..200 {
        sub.send(b"SUBSCRIBE flip\r\n");
        sub.expect(&confirmation("subscribe", "flip", 1));
        let n: i64 = redis::cmd("PUBLISH")
            .arg("flip")
            .arg("x")
            .query(&mut publisher)
            .unwrap();
        assert_eq!(n, 1, "round {round}: after SUBSCRIBE");
        sub.expect(&multibulk(&[b"message", b"flip", b"x"]));
        // RESET drops subscriptions too, and is confirmed the same way.
        if round % 2 == 0 {
            sub.send(b"UNSUBSCRIBE flip\r\n");
            sub.expect(&confirmation("unsubscribe", "flip", 0));
        } else {
            sub.send(b"RESET\r\n");
            sub.expect(b"+RESET\r\n");
        }
        let n: i64 = redis::cmd("PUBLISH")
            .arg("flip")
            .arg("y")
            .query(&mut publisher)
            .unwrap();
        assert_eq!(n, 0, "round {round}: after UNSUBSCRIBE");
    }
    sub.quiet();
    stop(server);
}

/// The request stream of the pipelining tests, with the replies it must
/// get: multibulk and inline commands mixed, blank lines and empty arrays
/// (skipped by Redis) in between.
fn pipeline(commands: usize) -> (Vec<u8>, Vec<u8>) {
    let mut requests = Vec::new();
    let mut replies = Vec::new();
    for index in 0..commands {
        match index % 6 {
            0 => {
                requests.extend_from_slice(b"PING\r\n");
                replies.extend_from_slice(b"+PONG\r\n");
            }
            1 => {
                requests.extend_from_slice(b"*2\r\n$4\r\nECHO\r\n$3\r\nabc\r\n");
                replies.extend_from_slice(b"$3\r\nabc\r\n");
            }
            2 => {
                let word = format!("w{index}");
                requests.extend_from_slice(format!("echo {word}\n").as_bytes());
                replies.extend_from_slice(&bulk(word.as_bytes()));
            }
            3 => {
                let payload = numbered("", index);
                requests.extend_from_slice(&multibulk(&[b"PING", &payload]));
                replies.extend_from_slice(&bulk(&payload));
            }
            4 => {
                requests.extend_from_slice(b"\r\n*0\r\nECHO \"a b\\x41\"\r\n");
                replies.extend_from_slice(b"$4\r\na bA\r\n");
            }
            _ => {
                requests.extend_from_slice(&multibulk(&[b"PUBLISH", b"nobody", b"x"]));
                replies.extend_from_slice(b":0\r\n");
            }
        }
    }
    (requests, replies)
}

/// Thousands of commands in one write come back as their replies, in
/// order, byte for byte.
#[test]
fn pipelined_commands_reply_in_order() {
    let _serial = serial();
    let server = start(config(2));
    let (requests, replies) = pipeline(20_000);
    for _ in 0..2 {
        // One connection per core.
        let mut raw = Raw::connect(&server);
        let mut writer = raw.stream.try_clone().unwrap();
        let requests = requests.clone();
        // Written from another thread: the replies must be read meanwhile
        // or both sides' socket buffers could fill.
        let sending = thread::spawn(move || writer.write_all(&requests));
        raw.expect(&replies);
        sending.join().unwrap().expect("requests written");
        raw.quiet();
    }
    stop(server);
}

/// A pipeline that arrives in pieces, split at every byte boundary or one
/// byte at a time, gets the same replies as in one piece.
#[test]
fn pipelines_split_anywhere_get_the_same_replies() {
    let _serial = serial();
    let server = start(config(2));
    let (requests, replies) = pipeline(6);
    let mut raw = Raw::connect(&server);

    for split in 1..requests.len() {
        raw.send(&requests[..split]);
        thread::sleep(Duration::from_micros(300));
        raw.send(&requests[split..]);
        raw.expect(&replies);
    }

    for &byte in &requests {
        raw.send(&[byte]);
        thread::sleep(Duration::from_micros(200));
    }
    raw.expect(&replies);
    raw.quiet();
    stop(server);
}

/// Malformed requests get Redis's protocol error and a closed connection;
/// the lengths they claim are never allocated; other clients carry on.
#[test]
fn malformed_input_gets_an_error_and_a_closed_connection() {
    let _serial = serial();
    let mut config = config(2);
    config.max_query_buffer = 1 << 20;
    let server = start(config);
    let mut bystander = client(&server);
    let before = rss_bytes();

    let mut garbage: Vec<u8> = (0..70_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    garbage.retain(|&b| b != b'\n');
    let long_count = [&b"*"[..], &[b'1'; 70_000]].concat();
    let cases: [(&str, Vec<u8>, &str); 10] = [
        (
            "not a count",
            b"*abc\r\n".to_vec(),
            "invalid multibulk length",
        ),
        (
            "negative bulk",
            b"*1\r\n$-5\r\n".to_vec(),
            "invalid bulk length",
        ),
        (
            "2 GB bulk",
            b"*1\r\n$2000000000\r\n".to_vec(),
            "invalid bulk length",
        ),
        (
            "100M arguments",
            b"*100000000\r\n".to_vec(),
            "invalid multibulk length",
        ),
        (
            "binary argument",
            b"*2\r\n\xff\xfe\x00junk\r\n".to_vec(),
            "expected '$', got '\\xff'",
        ),
        ("binary line", garbage, "too big inline request"),
        ("endless count", long_count, "too big mbulk count string"),
        (
            "bulk overrun",
            b"*1\r\n$3\r\nabcdef\r\n".to_vec(),
            "bulk string not followed by CRLF",
        ),
        (
            "open quote",
            b"ECHO \"abc\r\n".to_vec(),
            "unbalanced quotes in request",
        ),
        (
            "count then junk",
            b"*1\r\nPING\r\n".to_vec(),
            "expected '$', got 'P'",
        ),
    ];
    for (case, bytes, reason) in cases {
        let mut raw = Raw::connect(&server);
        // The server may close before it has read everything: a failed
        // write is expected then.
        let _ = raw.stream.write_all(&bytes);
        let (reply, ending) = raw.until_closed();
        let expected = format!("-ERR Protocol error: {reason}\r\n");
        assert_eq!(
            String::from_utf8_lossy(&reply),
            expected,
            "{case}: reply (connection ended by {ending:?})"
        );
    }

    // Lengths within the limits, claimed and never sent: nothing is set
    // aside for them (100 clients claiming 8 MB each would be 800 MB).
    let claims: Vec<Raw> = (0..100)
        .map(|_| {
            let mut raw = Raw::connect(&server);
            raw.send(b"*3\r\n$7\r\nPUBLISH\r\n$1\r\nc\r\n$8000000\r\nabc");
            raw
        })
        .collect();
    eventually(TIMEOUT, "the claims to be read", || {
        let mut raw = Raw::connect(&server);
        match raw.command("INFO clients") {
            Resp::Bulk(Some(info)) => {
                info_field(&String::from_utf8_lossy(&info), "connected_clients") >= 102
            }
            other => panic!("INFO replied {other:?}"),
        }
    });
    thread::sleep(Duration::from_millis(50));
    let claimed = rss_bytes().saturating_sub(before);
    assert!(claimed < 64 << 20, "memory grew by {claimed} bytes");
    drop(claims);

    // A command that never ends is cut off at the query buffer limit.
    let mut raw = Raw::connect(&server);
    let mut writer = raw.stream.try_clone().unwrap();
    let sending = thread::spawn(move || {
        let _ = writer.write_all(b"*3\r\n$7\r\nPUBLISH\r\n$1\r\nc\r\n$8000000\r\n");
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..64 {
            if writer.write_all(&chunk).is_err() {
                break;
            }
        }
    });
    let (reply, _) = raw.until_closed();
    assert_eq!(reply, b"-ERR query buffer limit reached\r\n");
    sending.join().unwrap();

    let pong: String = redis::cmd("PING").query(&mut bystander).unwrap();
    assert_eq!(pong, "PONG");
    let mut fresh = Raw::connect(&server);
    fresh.send(b"PING\r\n");
    fresh.expect(b"+PONG\r\n");

    let grown = rss_bytes().saturating_sub(before);
    assert!(grown < 64 << 20, "memory grew by {grown} bytes");
    drop(bystander);
    stop(server);
}

/// C15: a subscriber that never reads is disconnected at the output limit,
/// while a subscriber that reads, on another core, gets every message in
/// order, other clients keep being served, and memory stays bounded.
#[test]
fn silent_subscriber_is_disconnected_and_others_are_unaffected() {
    const PAYLOAD: usize = 64 * 1024;
    const MESSAGES: usize = 800; // 50 MiB
    /// Messages the reading subscriber may lag behind: it keeps up, by far
    /// less than the output limit.
    const WINDOW: usize = 4;
    let _serial = serial();
    let mut config = config(3);
    config.output_limit = 1 << 20;
    let server = start(config);

    let mut silent = Raw::connect(&server);
    let mut reader = Raw::connect(&server);
    let mut publisher = client(&server);
    let mut bystander = client(&server);
    assert_eq!((silent.core(), reader.core()), (0, 1));
    assert_eq!((core_of(&mut publisher), core_of(&mut bystander)), (2, 0));
    for sub in [&mut silent, &mut reader] {
        sub.send(b"SUBSCRIBE feed\r\n");
        sub.expect(&confirmation("subscribe", "feed", 1));
    }

    let payload = |index: usize| {
        let mut bytes = vec![b'a' + (index % 26) as u8; PAYLOAD];
        bytes[..8].copy_from_slice(&(index as u64).to_le_bytes());
        bytes
    };
    let frame = move |index: usize| multibulk(&[b"message", b"feed", &payload(index)]);

    let received = Arc::new(AtomicUsize::new(0));
    let reading = {
        let received = Arc::clone(&received);
        thread::spawn(move || {
            for index in 0..MESSAGES {
                reader.expect(&frame(index));
                received.store(index + 1, Ordering::Release);
            }
            reader.quiet();
        })
    };

    let before = rss_bytes();
    let mut peak = before;
    let mut counts = Vec::with_capacity(MESSAGES);
    for index in 0..MESSAGES {
        eventually(TIMEOUT, "the reader to keep up", || {
            received.load(Ordering::Acquire) + WINDOW > index || reading.is_finished()
        });
        let n: i64 = redis::cmd("PUBLISH")
            .arg("feed")
            .arg(payload(index))
            .query(&mut publisher)
            .expect("publish");
        counts.push(n);
        if index % 50 == 0 {
            let started = Instant::now();
            let pong: String = redis::cmd("PING").query(&mut bystander).unwrap();
            assert_eq!(pong, "PONG");
            assert!(
                started.elapsed() < Duration::from_secs(1),
                "PING took {:?}",
                started.elapsed()
            );
            peak = peak.max(rss_bytes());
        }
    }
    reading
        .join()
        .expect("the reading subscriber got every message in order");

    // The silent subscriber was counted while it lasted, then dropped.
    assert_eq!(counts[0], 2);
    assert_eq!(*counts.last().unwrap(), 1, "the silent subscriber is gone");
    assert!(counts.windows(2).all(|w| w[0] >= w[1]), "{counts:?}");
    let (got, _) = silent.until_closed();
    let sent_to_silent = counts.iter().filter(|&&n| n == 2).count();
    assert!(
        got.len() < sent_to_silent * (PAYLOAD + 40),
        "the silent subscriber got more than was published while it was counted"
    );
    let stream: Vec<u8> = (0..got.len() / PAYLOAD + 1).flat_map(frame).collect();
    assert!(
        got[..] == stream[..got.len()],
        "what the silent subscriber got is not a prefix of the messages"
    );

    let pong: String = redis::cmd("PING").query(&mut bystander).unwrap();
    assert_eq!(pong, "PONG");
    let grown = peak.saturating_sub(before);
    eprintln!(
        "silent subscriber: got {} KiB before the cut; memory grew by {} KiB",
        got.len() >> 10,
        grown >> 10
    );
    assert!(
        grown < 16 << 20,
        "memory grew by {grown} bytes publishing 50 MiB"
    );
    drop((publisher, bystander));
    stop(server);
}

/// A subscriber that reads, but always a little behind, keeps some output
/// pending on every turn: the server's buffer for it must hold what is
/// pending, not everything ever sent to it.
#[test]
fn lagging_subscriber_output_memory_stays_bounded() {
    const PAYLOAD: usize = 64 * 1024;
    const MESSAGES: usize = 2048; // 128 MiB
    /// The reader's lag, in messages (12 MiB): more than the kernel buffers
    /// between server and reader, so the server always has output pending,
    /// and less than the output limit, so the reader is never cut off.
    const LAG: usize = 192;
    let _serial = serial();
    let server = start(config(2));
    let mut publisher = client(&server);
    let mut reader = Raw::connect(&server);
    assert_eq!((core_of(&mut publisher), reader.core()), (0, 1));
    // A small receive buffer, fixed so that the kernel cannot grow it.
    set_socket_option(&reader.stream, libc::SO_RCVBUF, 64 * 1024 as libc::c_int);
    reader.send(b"SUBSCRIBE slow\r\n");
    reader.expect(&confirmation("subscribe", "slow", 1));

    let payload = |index: usize| {
        let mut bytes = vec![b'k' + (index % 7) as u8; PAYLOAD];
        bytes[..8].copy_from_slice(&(index as u64).to_le_bytes());
        bytes
    };
    let received = Arc::new(AtomicUsize::new(0));
    let reading = {
        let received = Arc::clone(&received);
        thread::spawn(move || {
            for index in 0..MESSAGES {
                reader.expect(&multibulk(&[b"message", b"slow", &payload(index)]));
                received.store(index + 1, Ordering::Release);
                if index % 4 == 3 {
                    // Slower than the publisher, so the lag stays.
                    thread::sleep(Duration::from_millis(1));
                }
            }
        })
    };

    let before = rss_bytes();
    let mut peak = before;
    for index in 0..MESSAGES {
        eventually(TIMEOUT, "the reader to catch up", || {
            received.load(Ordering::Acquire) + LAG > index || reading.is_finished()
        });
        let n: i64 = redis::cmd("PUBLISH")
            .arg("slow")
            .arg(payload(index))
            .query(&mut publisher)
            .expect("publish");
        assert_eq!(n, 1, "message {index}: the reader was cut off");
        if index % 32 == 0 {
            peak = peak.max(rss_bytes());
        }
    }
    reading
        .join()
        .expect("the reader got every message in order");

    let grown = peak.saturating_sub(before);
    eprintln!("lagging subscriber: memory grew by {} KiB", grown >> 10);
    assert!(
        grown < 48 << 20,
        "memory grew by {grown} bytes sending 128 MiB with a 12 MiB lag"
    );
    drop(publisher);
    stop(server);
}

/// Checks that the server's cores, with nothing to do, wait rather than
/// spin: under [`IdleStrategy::Park`] an idle core turns only on events.
fn assert_idle(server: &Server) {
    let runtime = server.runtime();
    let turns = || -> u64 {
        let snapshot = runtime.fresh_metrics(Duration::from_secs(1));
        snapshot.cores.iter().map(|core| core.counters.turns).sum()
    };
    let before = turns();
    thread::sleep(Duration::from_millis(300));
    let spun = turns() - before;
    assert!(
        spun < 1_000,
        "{spun} loop turns in 300 ms with nothing to do"
    );
}

/// A client that has sent part of a command is waited for, not polled.
#[test]
fn client_with_a_partial_command_does_not_keep_its_core_busy() {
    let _serial = serial();
    let mut config = config(2);
    config.idle = IdleStrategy::Park;
    let server = start(config);
    let mut clients = [Raw::connect(&server), Raw::connect(&server)];
    for raw in &mut clients {
        raw.send(b"*3\r\n$7\r\nPUBLISH\r\n$1\r\nc\r\n$5\r\nhel");
    }
    assert_idle(&server);
    for raw in &mut clients {
        raw.send(b"lo\r\n");
        raw.expect(b":0\r\n");
    }
    stop(server);
}

/// A client that sends commands and never reads the replies is not read
/// from once they pile up, and its core then waits instead of spinning;
/// once the client reads, every command it sent is answered.
#[test]
fn client_that_does_not_read_replies_is_paused_without_spinning() {
    let _serial = serial();
    let mut config = config(2);
    config.idle = IdleStrategy::Park;
    let server = start(config);
    let mut stuck = Raw::connect(&server);
    let mut writer = stuck.stream.try_clone().unwrap();

    // Write until the server stops reading (a write blocks for 200 ms).
    writer
        .set_write_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let chunk = b"PING\r\n".repeat(10_000);
    let mut sent = 0usize;
    let deadline = Instant::now() + TIMEOUT;
    loop {
        assert!(
            Instant::now() < deadline,
            "the server never stopped reading"
        );
        // A write cut short by the timeout is carried on where it stopped:
        // starting the chunk again would send `PI` + `PING` (`PIPING`).
        match writer.write(&chunk[sent % chunk.len()..]) {
            Ok(n) => sent += n,
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                break
            }
            Err(error) => panic!("write: {error}"),
        }
    }

    assert_idle(&server);

    // Complete the last command, then read every reply.
    let cut = sent % 6;
    if cut > 0 {
        writer.set_write_timeout(Some(TIMEOUT)).unwrap();
        let mut rest = b"PING\r\n"[cut..].to_vec();
        let finishing = thread::spawn(move || writer.write_all(&rest.split_off(0)));
        stuck.expect(&b"+PONG\r\n".repeat(sent / 6 + 1));
        finishing.join().unwrap().expect("write the rest");
    } else {
        stuck.expect(&b"+PONG\r\n".repeat(sent / 6));
    }
    stuck.send(b"PING\r\n");
    stuck.expect(b"+PONG\r\n");
    stuck.quiet();
    stop(server);
}

/// Forwards that find the lane to another core full wait in order, the
/// publisher is throttled while they are over the backlog limit, and all of
/// them arrive, whether or not the publishing core parks meanwhile.
#[test]
fn full_lanes_delay_forwards_without_losing_or_reordering_them() {
    const MESSAGES: usize = 5_000;
    let _serial = serial();
    for idle in [IdleStrategy::default(), IdleStrategy::Park] {
        let mut config = config(2);
        config.idle = idle;
        config.lane_capacity = 4 * 1024;
        config.backlog_limit = 16 * 1024;
        let server = start(config);
        let mut publisher = Raw::connect(&server);
        let mut sub = Raw::connect(&server);
        assert_eq!((publisher.core(), sub.core()), (0, 1));
        sub.send(b"SUBSCRIBE lane\r\n");
        sub.expect(&confirmation("subscribe", "lane", 1));

        let payload = |index: usize| {
            let mut bytes = numbered("", index);
            bytes.resize(1000, b'.');
            bytes
        };
        let requests: Vec<u8> = (0..MESSAGES)
            .flat_map(|index| multibulk(&[b"PUBLISH", b"lane", &payload(index)]))
            .collect();
        let mut writer = publisher.stream.try_clone().unwrap();
        let sending = thread::spawn(move || writer.write_all(&requests));
        let replies = thread::spawn(move || publisher.expect(&b":1\r\n".repeat(MESSAGES)));
        for index in 0..MESSAGES {
            sub.expect(&multibulk(&[b"message", b"lane", &payload(index)]));
        }
        sending.join().unwrap().expect("requests written");
        replies.join().expect("every PUBLISH answered");
        sub.quiet();
        stop(server);
    }
}

/// A client name is one word of visible characters, as in Redis: a name
/// with a space or a line end is refused (a listing of clients could not
/// be read back), an empty one removes the name, and a HELLO whose options
/// are incomplete or unknown fails whole, changing nothing.
#[test]
fn client_names_are_one_visible_word_and_hello_options_are_checked() {
    let _serial = serial();
    let server = start(config(2));
    let mut raw = Raw::connect(&server);
    let error = |text: &str| Resp::Error(text.to_string());
    let refused_name =
        error("ERR Client names cannot contain spaces, newlines or special characters.");
    let getname = |raw: &mut Raw| {
        raw.send(&multibulk(&[b"CLIENT", b"GETNAME"]));
        raw.reply()
    };

    assert_eq!(
        raw.command("CLIENT SETNAME first"),
        Resp::Simple("OK".into())
    );
    for bad in [
        &b"two words"[..],
        b"line\nend",
        b"tab\t",
        b"\x7f",
        b"\xc3\xa9",
    ] {
        raw.send(&multibulk(&[b"CLIENT", b"SETNAME", bad]));
        assert_eq!(raw.reply(), refused_name, "{}", shown(bad));
        raw.send(&multibulk(&[b"HELLO", b"2", b"SETNAME", bad]));
        assert_eq!(raw.reply(), refused_name, "{}", shown(bad));
    }
    assert_eq!(getname(&mut raw), Resp::Bulk(Some(b"first".to_vec())));

    for (options, option) in [
        ("SETNAME", "SETNAME"),
        ("AUTH user", "AUTH"),
        ("SETNAME second bogus", "bogus"),
        ("bogus SETNAME second", "bogus"),
    ] {
        assert_eq!(
            raw.command(&format!("HELLO 2 {options}")),
            error(&format!("ERR Syntax error in HELLO option '{option}'")),
            "HELLO 2 {options}"
        );
    }
    assert_eq!(getname(&mut raw), Resp::Bulk(Some(b"first".to_vec())));

    match raw.command("HELLO 2 AUTH user secret SETNAME second") {
        Resp::Array(Some(fields)) => assert_eq!(fields.len(), 14),
        other => panic!("HELLO: {other:?}"),
    }
    assert_eq!(getname(&mut raw), Resp::Bulk(Some(b"second".to_vec())));
    raw.send(&multibulk(&[b"CLIENT", b"SETNAME", b""]));
    assert_eq!(raw.reply(), Resp::Simple("OK".into()));
    assert_eq!(getname(&mut raw), Resp::Bulk(None));
    raw.quiet();
    stop(server);
}

/// QUIT is answered, then the connection closes.
#[test]
fn quit_replies_ok_and_closes() {
    let _serial = serial();
    let server = start(config(2));
    let mut raw = Raw::connect(&server);
    raw.send(b"PING\r\nQUIT\r\n");
    let (got, ending) = raw.until_closed();
    assert_eq!(got, b"+PONG\r\n+OK\r\n");
    assert_eq!(ending, Ending::Eof);

    // Commands after QUIT in the same write are not executed.
    let mut raw = Raw::connect(&server);
    raw.send(b"QUIT\r\nPING\r\n");
    let (got, _) = raw.until_closed();
    assert_eq!(got, b"+OK\r\n");

    // Redis 7 quits whatever follows QUIT on its line.
    let mut raw = Raw::connect(&server);
    raw.send(b"QUIT now\r\nPING\r\n");
    let (got, ending) = raw.until_closed();
    assert_eq!(got, b"+OK\r\n");
    assert_eq!(ending, Ending::Eof);
    stop(server);
}

/// The section headers of an INFO reply, in order.
fn info_sections(info: &str) -> Vec<&str> {
    info.lines()
        .filter_map(|line| line.strip_prefix("# "))
        .filter(|name| !name.starts_with("cross-core"))
        .collect()
}

/// INFO takes several sections, as Redis 7 does (`INFO server clients`),
/// in any case; `all` among them means every section.
#[test]
fn info_answers_every_section_named() {
    let _serial = serial();
    let server = start(config(2));
    let mut con = client(&server);

    let two: String = redis::cmd("INFO")
        .arg("clients")
        .arg("SERVER")
        .query(&mut con)
        .unwrap();
    assert_eq!(info_sections(&two), ["Server", "Clients"], "{two}");
    assert!(two.contains("\r\nconnected_clients:1\r\n"), "{two}");
    // One blank line between sections, none after the last, as Redis has.
    assert!(two.contains("\r\n\r\n# Clients\r\n"), "{two}");
    assert!(
        two.ends_with("\r\n") && !two.ends_with("\r\n\r\n"),
        "{two:?}"
    );

    let one: String = redis::cmd("INFO").arg("pubsub").query(&mut con).unwrap();
    assert_eq!(info_sections(&one), ["Pubsub"], "{one}");
    assert_eq!(
        one,
        "# Pubsub\r\npubsub_channels:0\r\npubsub_patterns:0\r\n"
    );

    let every: String = redis::cmd("INFO")
        .arg("server")
        .arg("all")
        .query(&mut con)
        .unwrap();
    let sections = [
        "Server", "Clients", "Memory", "Pubsub", "Stats", "Pools", "Latency", "Keyspace",
    ];
    assert_eq!(info_sections(&every), sections, "{every}");
    // Redis's Keyspace comes last, its header shown with no keys.
    assert!(every.ends_with("\r\n\r\n# Keyspace\r\n"), "{every:?}");
    for all in [&[][..], &["everything"][..], &["default"][..]] {
        let info: String = redis::cmd("INFO").arg(all).query(&mut con).unwrap();
        assert_eq!(info_sections(&info), sections, "INFO {all:?}: {info}");
        assert!(info.ends_with("\r\n\r\n# Keyspace\r\n"), "{info:?}");
    }
    for keyspace in ["keyspace", "KEYSPACE"] {
        let alone: String = redis::cmd("INFO").arg(keyspace).query(&mut con).unwrap();
        assert_eq!(alone, "# Keyspace\r\n");
    }
    let with_pubsub: String = redis::cmd("INFO")
        .arg("keyspace")
        .arg("pubsub")
        .query(&mut con)
        .unwrap();
    assert_eq!(
        with_pubsub,
        "# Pubsub\r\npubsub_channels:0\r\npubsub_patterns:0\r\n\r\n# Keyspace\r\n"
    );

    let none: String = redis::cmd("INFO").arg("nosuch").query(&mut con).unwrap();
    assert_eq!(none, "");
    drop(con);
    stop(server);
}

/// CONFIG GET client-output-buffer-limit reports the server's own output
/// limit (`--output-limit`), as INFO does, not the default's.
#[test]
fn config_get_reports_the_output_limit_in_force() {
    let _serial = serial();
    let server = start(ServerConfig {
        output_limit: 4096,
        ..config(1)
    });
    let mut con = client(&server);
    let limit: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("client-output-*")
        .query(&mut con)
        .unwrap();
    assert_eq!(
        limit,
        ["client-output-buffer-limit", "normal 0 0 0 pubsub 4096 0 0"]
    );
    let info: String = redis::cmd("INFO").arg("clients").query(&mut con).unwrap();
    assert!(
        info.contains("\r\nclient_output_limit_bytes:4096\r\n"),
        "{info}"
    );
    let every: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("*")
        .query(&mut con)
        .unwrap();
    assert_eq!(every.len(), 10, "{every:?}");
    drop(con);
    stop(server);
}

/// CONFIG GET with no parameter is a wrong number of arguments, in Redis
/// 7's words, not a CONFIG subcommand this server lacks; CONFIG SET is
/// refused as read-only, and a subcommand Redis has not either as unknown.
#[test]
fn config_get_without_a_parameter_is_short_of_arguments() {
    let _serial = serial();
    let server = start(config(1));
    let mut raw = Raw::connect(&server);
    assert_eq!(
        raw.command("CONFIG GET"),
        Resp::Error("ERR wrong number of arguments for 'config|get' command".into())
    );
    assert_eq!(
        raw.command("CONFIG SET maxmemory 1"),
        Resp::Error(
            "ERR CONFIG is read-only here: only CONFIG GET <parameter> is supported".into()
        )
    );
    assert_eq!(
        raw.command("COMMAND COUNT x"),
        Resp::Error("ERR wrong number of arguments for 'command|count' command".into())
    );
    assert_eq!(raw.command("COMMAND COUNT"), Resp::Integer(0));
    assert_eq!(
        raw.command("CONFIG FOO"),
        Resp::Error("ERR unknown subcommand 'FOO'. Try CONFIG HELP.".into())
    );
    drop(raw);
    stop(server);
}

/// A subscribed connection's request is checked in Redis 7's order: a
/// command or subcommand neither this server nor Redis knows is unknown,
/// then the arity, then subscribed mode; the errors name a subcommand as
/// `client|id`, as Redis names it.
#[test]
fn subscribed_mode_is_checked_after_the_name_and_the_arity() {
    let _serial = serial();
    let server = start(config(2));
    let mut sub = Raw::connect(&server);
    sub.send(b"SUBSCRIBE news\r\n");
    sub.expect(&confirmation("subscribe", "news", 1));
    let unknown = |text: &str| Resp::Error(text.into());
    let arity = |name: &str| {
        Resp::Error(format!(
            "ERR wrong number of arguments for '{name}' command"
        ))
    };
    let subscribed = |name: &str| {
        let text = subscribed_mode_error(name);
        Resp::Error(text[1..text.len() - 2].into())
    };
    let cases = [
        (
            "NOSUCH x",
            unknown("ERR unknown command 'NOSUCH', with args beginning with: 'x' "),
        ),
        (
            "CLIENT NOSUCH",
            unknown("ERR unknown subcommand 'NOSUCH'. Try CLIENT HELP."),
        ),
        // A subcommand Redis has and this server does not is checked as
        // Redis checks it: here, its arity.
        ("CLIENT KILL", arity("client|kill")),
        (
            "COMMAND NOSUCH",
            unknown("ERR unknown subcommand 'NOSUCH'. Try COMMAND HELP."),
        ),
        ("PUBLISH news", arity("publish")),
        ("PING a b", arity("ping")),
        ("CLIENT", arity("client")),
        ("CLIENT ID x", arity("client|id")),
        ("CONFIG GET", arity("config|get")),
        ("COMMAND COUNT x", arity("command|count")),
        ("COMMAND HELP x", arity("command|help")),
        ("CONFIG HELP x", arity("config|help")),
        ("RESET x", arity("reset")),
        ("PUBLISH news hi", subscribed("publish")),
        ("CLIENT ID", subscribed("client|id")),
        ("CONFIG GET save", subscribed("config|get")),
        ("COMMAND", subscribed("command")),
    ];
    for (line, expected) in cases {
        assert_eq!(sub.command(line), expected, "{line}");
    }
    // Still subscribed, and still served.
    sub.send(b"PING\r\n");
    sub.expect(b"*2\r\n$4\r\npong\r\n$0\r\n\r\n");
    drop(sub);
    stop(server);
}

/// CONFIG GET answers each setting once, under the name it was first
/// asked by: a plain name spelled as the client gave it (`SAVE`), as Redis
/// 7 answers, so a client that looks up the name it asked for finds it;
/// a pattern's matches as the settings are named.
#[test]
fn config_get_answers_a_plain_name_as_it_was_asked() {
    let _serial = serial();
    let server = start(config(1));
    let mut raw = Raw::connect(&server);
    let pairs = |pairs: &[(&str, &str)]| {
        let mut items = Vec::new();
        for (name, value) in pairs {
            items.push(Resp::Bulk(Some(name.as_bytes().to_vec())));
            items.push(Resp::Bulk(Some(value.as_bytes().to_vec())));
        }
        Resp::Array(Some(items))
    };
    assert_eq!(
        raw.command("CONFIG GET MaxMemory"),
        pairs(&[("MaxMemory", "0")])
    );
    assert_eq!(
        raw.command("CONFIG GET SAVE sav* save"),
        pairs(&[("SAVE", "")])
    );
    assert_eq!(raw.command("CONFIG GET SAV* SAVE"), pairs(&[("save", "")]));
    drop(raw);
    stop(server);
}

/// COMMAND INFO answers one entry per name asked, nil for each (this
/// server publishes no command table), as Redis answers for a command it
/// does not have; with no name, an empty list.
#[test]
fn command_info_has_a_nil_per_name() {
    let _serial = serial();
    let server = start(config(1));
    let mut raw = Raw::connect(&server);
    assert_eq!(
        raw.command("COMMAND INFO publish nosuch"),
        Resp::Array(Some(vec![Resp::Bulk(None), Resp::Bulk(None)]))
    );
    assert_eq!(raw.command("COMMAND INFO"), Resp::Array(Some(vec![])));
    drop(raw);
    stop(server);
}

/// The HELP that an unknown subcommand's error points to is there for
/// COMMAND and CONFIG as for CLIENT: status lines that name the
/// subcommands this server answers.
#[test]
fn help_subcommands_answer() {
    let _serial = serial();
    let server = start(config(1));
    let mut raw = Raw::connect(&server);
    for (command, first, names) in [
        (
            "COMMAND HELP",
            "COMMAND <subcommand>",
            &["COUNT", "DOCS", "INFO", "HELP"][..],
        ),
        (
            "CONFIG HELP",
            "CONFIG <subcommand>",
            &["GET <pattern>", "HELP"][..],
        ),
        (
            "CLIENT HELP",
            "CLIENT <subcommand>",
            &["GETNAME", "LIST", "HELP"][..],
        ),
    ] {
        let Resp::Array(Some(lines)) = raw.command(command) else {
            panic!("{command}: not an array");
        };
        let lines: Vec<String> = lines
            .into_iter()
            .map(|line| match line {
                Resp::Simple(text) => text,
                other => panic!("{command}: {other:?} is not a status line"),
            })
            .collect();
        assert!(lines[0].starts_with(first), "{command}: {lines:?}");
        for name in names {
            assert!(
                lines.iter().any(|line| line.starts_with(name)),
                "{command} names no {name}: {lines:?}"
            );
        }
    }
    drop(raw);
    stop(server);
}

/// A PUBLISH larger than a lane can carry is refused before any core
/// delivers it; the largest that fits reaches every core; the connection
/// stays usable.
#[test]
fn oversized_publish_is_refused_everywhere() {
    let _serial = serial();
    let mut config = config(2);
    config.lane_capacity = 64 * 1024;
    let server = start(config);
    let mut local = Raw::connect(&server);
    let mut remote = Raw::connect(&server);
    let mut publisher = Raw::connect(&server);
    assert_eq!((local.core(), remote.core(), publisher.core()), (0, 1, 0));
    for sub in [&mut local, &mut remote] {
        sub.send(b"SUBSCRIBE big\r\n");
        sub.expect(&confirmation("subscribe", "big", 1));
    }

    let payload = vec![b'z'; 40 * 1024];
    publisher.send(&multibulk(&[b"PUBLISH", b"big", &payload]));
    let carried = match publisher.reply() {
        Resp::Error(text) => {
            assert!(text.starts_with("ERR message too large"), "{text}");
            // "... a lane carries at most N (raise ...)"
            let tail = text.split("at most ").nth(1).expect("names the limit");
            tail.split(' ').next().unwrap().parse::<usize>().unwrap()
        }
        other => panic!("expected an error, got {other:?}"),
    };
    publisher.send(b"PING\r\n");
    publisher.expect(b"+PONG\r\n");

    // Around the limit: refused everywhere or delivered everywhere.
    for len in carried - 3 - 4..=carried - 3 + 4 {
        let payload = vec![b'y'; len];
        publisher.send(&multibulk(&[b"PUBLISH", b"big", &payload]));
        if 3 + len <= carried {
            publisher.expect(b":2\r\n");
            for sub in [&mut local, &mut remote] {
                sub.expect(&multibulk(&[b"message", b"big", &payload]));
            }
        } else {
            assert!(
                matches!(publisher.reply(), Resp::Error(_)),
                "{len} bytes accepted"
            );
        }
    }
    publisher.send(b"PUBLISH big after\r\n");
    publisher.expect(b":2\r\n");
    for sub in [&mut local, &mut remote] {
        sub.expect(&multibulk(&[b"message", b"big", b"after"]));
        sub.quiet();
    }
    stop(server);
}

/// A lane raised past 16 MiB carries a PUBLISH larger than the default
/// 8 MiB bulk-string cap: the cap follows the lane (half of it), so the
/// message the lanes promise is delivered rather than refused as a
/// protocol error that closes the connection.
#[test]
fn a_larger_lane_raises_the_bulk_string_limit_with_it() {
    let _serial = serial();
    let mut config = config(2);
    config.lane_capacity = 32 << 20;
    let server = start(config);
    let mut local = Raw::connect(&server);
    let mut remote = Raw::connect(&server);
    let mut publisher = Raw::connect(&server);
    assert_eq!((local.core(), remote.core(), publisher.core()), (0, 1, 0));
    for sub in [&mut local, &mut remote] {
        sub.send(b"SUBSCRIBE big\r\n");
        sub.expect(&confirmation("subscribe", "big", 1));
    }

    let payload = vec![b'b'; 12 << 20];
    publisher.send(&multibulk(&[b"PUBLISH", b"big", &payload]));
    publisher.expect(b":2\r\n");
    for sub in [&mut local, &mut remote] {
        sub.expect(&multibulk(&[b"message", b"big", &payload]));
    }
    publisher.send(b"PING\r\n");
    publisher.expect(b"+PONG\r\n");
    stop(server);
}

/// Clients that vanish mid-command, with replies unread, or right after
/// connecting leave nothing behind: the server keeps serving, their
/// subscriptions are forgotten and the client count returns to zero.
#[test]
fn vanished_clients_leave_nothing_behind() {
    let _serial = serial();
    let server = start(config(2));

    let connected = || {
        let mut raw = Raw::connect(&server);
        match raw.command("INFO clients") {
            // Less the connection that asks.
            Resp::Bulk(Some(info)) => {
                info_field(&String::from_utf8_lossy(&info), "connected_clients") - 1
            }
            other => panic!("INFO replied {other:?}"),
        }
    };

    // Mid-command: a multibulk cut inside an argument.
    let mut raw = Raw::connect(&server);
    raw.send(b"*3\r\n$7\r\nPUBLISH\r\n$2\r\nch\r\n$10\r\nhal");
    drop(raw);
    // Thousands of replies left unread.
    let mut raw = Raw::connect(&server);
    raw.send(&b"PING\r\n".repeat(20_000));
    drop(raw);
    // Subscribers that go away without unsubscribing, on both cores.
    let mut publisher = client(&server);
    for _ in 0..2 {
        let mut sub = Raw::connect(&server);
        sub.send(b"SUBSCRIBE ghost\r\n");
        sub.expect(&confirmation("subscribe", "ghost", 1));
    }
    // Many short-lived connections, some reset rather than closed.
    for index in 0..200 {
        let mut raw = Raw::connect(&server);
        if index % 2 == 0 {
            raw.send(b"PING\r\n");
            raw.expect(b"+PONG\r\n");
        } else {
            // Closed with SO_LINGER 0: the server sees a reset.
            let linger = libc::linger {
                l_onoff: 1,
                l_linger: 0,
            };
            set_socket_option(&raw.stream, libc::SO_LINGER, linger);
            raw.send(b"PING\r\n");
        }
        if index % 3 == 0 {
            raw.stream.shutdown(Shutdown::Write).unwrap();
        }
    }

    eventually(TIMEOUT, "ghost subscriptions to go", || {
        let n: i64 = redis::cmd("PUBLISH")
            .arg("ghost")
            .arg("boo")
            .query(&mut publisher)
            .unwrap();
        n == 0
    });
    drop(publisher);
    eventually(TIMEOUT, "connected_clients to return to 0", || {
        connected() == 0
    });
    let mut raw = Raw::connect(&server);
    raw.send(b"PING\r\n");
    raw.expect(b"+PONG\r\n");
    drop(raw);
    stop(server);
}

/// A client that sends its commands and then shuts down only its sending
/// side still gets every reply before the server closes.
#[test]
fn half_closed_clients_get_their_replies() {
    let _serial = serial();
    let server = start(config(2));
    for _ in 0..20 {
        let mut raw = Raw::connect(&server);
        raw.send(b"PING\r\nECHO hello\r\n");
        raw.stream.shutdown(std::net::Shutdown::Write).unwrap();
        let (got, ending) = raw.until_closed();
        assert_eq!(got, b"+PONG\r\n$5\r\nhello\r\n");
        assert_eq!(ending, Ending::Eof);
    }
    stop(server);
}

/// A (P)SUBSCRIBE whose name could not be announced to the other cores, or
/// whose pattern is too long to match cheaply, is refused whole: nothing
/// subscribed, the connection usable, no reply held forever.
#[test]
fn subscriptions_too_large_to_announce_are_refused() {
    let _serial = serial();
    let mut config = config(2);
    config.lane_capacity = 4096;
    let server = start(config);
    let mut raw = Raw::connect(&server);
    let huge = vec![b'c'; 3000];
    raw.send(&multibulk(&[b"SUBSCRIBE", b"ok", &huge]));
    let error = raw.line();
    assert!(
        error.starts_with(b"-ERR name of 3000 bytes is too large"),
        "{}",
        shown(&error)
    );
    let long_pattern = vec![b'*'; 1025];
    raw.send(&multibulk(&[b"PSUBSCRIBE", &long_pattern]));
    let error = raw.line();
    assert!(
        error.starts_with(b"-ERR pattern of 1025 bytes is too long"),
        "{}",
        shown(&error)
    );
    // Not in subscribed mode: ordinary commands still work.
    raw.send(b"ECHO still-here\r\n");
    raw.expect(b"$10\r\nstill-here\r\n");
    stop(server);
}

/// Every command a client sends counts as a request served on its core,
/// in the metrics `corelane stat` and the exports read.
#[test]
fn every_command_counts_as_a_request_on_its_core() {
    let server = start(config(2));
    let mut stream = TcpStream::connect(server.local_addr()).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    // Five commands in one write, one of them unknown (still served, with
    // an error reply).
    stream
        .write_all(b"PING\r\nECHO a\r\nPUBLISH c m\r\nNOSUCH\r\nPING\r\n")
        .unwrap();
    let expected = "+PONG\r\n$1\r\na\r\n:0\r\n";
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while !got.ends_with(b"+PONG\r\n") || got.len() <= expected.len() {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    assert!(got.starts_with(expected.as_bytes()), "{got:?}");
    drop(stream);
    let report = server.shutdown().expect("no core panicked");
    let requests: Vec<u64> = report
        .metrics
        .cores
        .iter()
        .map(|core| core.counters.requests)
        .collect();
    assert_eq!(requests.iter().sum::<u64>(), 5, "{requests:?}");
}

/// The ids of a CLIENT LIST reply's lines, in the order listed.
fn listed_ids(reply: Resp) -> Vec<i64> {
    let Resp::Bulk(Some(list)) = reply else {
        panic!("CLIENT LIST replied {reply:?}");
    };
    let list = String::from_utf8(list).unwrap();
    list.lines()
        .map(|line| {
            let id = line.strip_prefix("id=").unwrap_or_else(|| panic!("{line}"));
            id.split(' ').next().unwrap().parse().unwrap()
        })
        .collect()
}

/// The value of `field` in a CLIENT LIST line.
fn line_field<'a>(line: &'a str, field: &str) -> &'a str {
    line.split(' ')
        .find_map(|pair| pair.strip_prefix(field)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {field} in {line}"))
}

/// CLIENT LIST TYPE and CLIENT LIST ID filter every core's connections,
/// whichever core serves the one asking: TYPE by kind (a subscriber is
/// `pubsub`; this server has no replicas or masters), ID in the order the
/// ids are given, repeats included, as Redis 7 lists them. Bad arguments
/// get Redis 7's errors.
#[test]
fn client_list_filters_by_type_and_id_on_every_core() {
    let _serial = serial();
    let server = start(config(3));
    // Six connections, two a core; the second and the last subscribe.
    let mut raws: Vec<Raw> = (0..6).map(|_| Raw::connect(&server)).collect();
    let mut ids = Vec::new();
    for raw in &mut raws {
        match raw.command("CLIENT ID") {
            Resp::Integer(id) => ids.push(id),
            other => panic!("{other:?}"),
        }
    }
    for n in [1, 5] {
        raws[n].send(b"SUBSCRIBE news\r\n");
        raws[n].expect(&confirmation("subscribe", "news", 1));
    }
    let sorted = |mut ids: Vec<i64>| {
        ids.sort_unstable();
        ids
    };
    let subscribers = sorted(vec![ids[1], ids[5]]);
    let others = sorted(vec![ids[0], ids[2], ids[3], ids[4]]);

    for n in [0, 2, 4] {
        let asker = &mut raws[n];
        assert_eq!(
            listed_ids(asker.command("CLIENT LIST TYPE pubsub")),
            subscribers
        );
        assert_eq!(listed_ids(asker.command("CLIENT LIST TYPE normal")), others);
        assert_eq!(listed_ids(asker.command("client list type NORMAL")), others);
        for kind in ["replica", "slave", "master"] {
            let empty = asker.command(&format!("CLIENT LIST TYPE {kind}"));
            assert_eq!(empty, Resp::Bulk(Some(Vec::new())), "{kind}");
        }
        let wanted = format!(
            "CLIENT LIST ID {} {} 0 -1 999999 {} {}",
            ids[5], ids[2], ids[2], ids[n]
        );
        assert_eq!(
            listed_ids(asker.command(&wanted)),
            [ids[5], ids[2], ids[2], ids[n]]
        );
        assert_eq!(
            listed_ids(asker.command("CLIENT LIST ID 999999")),
            [0i64; 0]
        );
    }

    let asker = &mut raws[3];
    for (arguments, error) in [
        ("TYPE bogus", "ERR Unknown client type 'bogus'"),
        ("TYPE", "ERR syntax error"),
        ("TYPE normal extra", "ERR syntax error"),
        ("ID", "ERR syntax error"),
        ("extra", "ERR syntax error"),
        ("TYPE normal TYPE pubsub", "ERR syntax error"),
        ("ID 1 x", "ERR Invalid client ID"),
        ("ID +1", "ERR Invalid client ID"),
        ("ID 1 TYPE normal", "ERR Invalid client ID"),
        ("ID 99999999999999999999", "ERR Invalid client ID"),
    ] {
        let reply = asker.command(&format!("CLIENT LIST {arguments}"));
        assert_eq!(
            reply,
            Resp::Error(error.to_string()),
            "CLIENT LIST {arguments}"
        );
    }
    assert_eq!(asker.command("PING"), Resp::Simple("PONG".to_string()));

    drop(raws);
    stop(server);
}

/// CLIENT LIST shows each connection's `idle` (whole seconds since the
/// server last read from it or wrote to it) and `cmd` (that command's name in lower case, a
/// subcommand as `container|sub`, `NULL` before any command or after one
/// the server does not know), placed as Redis 7 places them.
#[test]
fn client_list_shows_idle_time_and_last_command() {
    let _serial = serial();
    let server = start(config(2));
    let mut asker = Raw::connect(&server);
    let mut quiet = Raw::connect(&server);
    let asker_id = match asker.command("CLIENT ID") {
        Resp::Integer(id) => id,
        other => panic!("{other:?}"),
    };
    // The quiet connection's id, without a command from it.
    let listed = listed_ids(asker.command("CLIENT LIST"));
    assert_eq!(listed.len(), 2);
    let quiet_id = listed.into_iter().find(|&id| id != asker_id).unwrap();
    let line_of = |asker: &mut Raw, id: i64| match asker.command(&format!("CLIENT LIST ID {id}")) {
        Resp::Bulk(Some(line)) => String::from_utf8(line).unwrap(),
        other => panic!("{other:?}"),
    };

    // Nothing sent yet: no command, idle since it connected.
    std::thread::sleep(Duration::from_millis(1100));
    let line = line_of(&mut asker, quiet_id);
    assert_eq!(line_field(&line, "cmd"), "NULL", "{line}");
    let idle: u64 = line_field(&line, "idle").parse().unwrap();
    let age: u64 = line_field(&line, "age").parse().unwrap();
    assert!(idle >= 1 && idle <= age, "{line}");
    let fields: Vec<&str> = line
        .trim_end()
        .split(' ')
        .map(|pair| pair.split('=').next().unwrap())
        .collect();
    assert_eq!(
        fields,
        [
            "id", "addr", "laddr", "fd", "name", "age", "idle", "flags", "db", "sub", "psub",
            "qbuf", "omem", "cmd", "resp", "core"
        ]
    );

    for (command, name) in [
        ("PING", "ping"),
        ("client getname", "client|getname"),
        ("CLIENT GETNAME extra", "client|getname"),
        ("CONFIG GET maxmemory", "config|get"),
        ("COMMAND DOCS", "command|docs"),
        ("COMMAND", "command"),
        ("Echo hi", "echo"),
        ("GET key", "NULL"),
        ("CLIENT NOSUCH", "NULL"),
        ("SUBSCRIBE news", "subscribe"),
        // Refused with Redis's words in subscribed mode, so named as Redis
        // names it; out of it, an unknown command (NULL) above.
        ("GET key", "get"),
        ("FOO key", "NULL"),
        ("ECHO refused", "echo"),
    ] {
        quiet.command(command);
        let line = line_of(&mut asker, quiet_id);
        assert_eq!(line_field(&line, "cmd"), name, "after {command}: {line}");
    }
    let line = line_of(&mut asker, quiet_id);
    let idle: u64 = line_field(&line, "idle").parse().unwrap();
    let age: u64 = line_field(&line, "age").parse().unwrap();
    assert!(idle <= age, "{line}");

    // The asker sees its own CLIENT LIST as its last command.
    let Resp::Bulk(Some(list)) = asker.command("CLIENT LIST") else {
        panic!("no list");
    };
    let list = String::from_utf8(list).unwrap();
    let own = list
        .lines()
        .find(|line| line_field(line, "id") == asker_id.to_string())
        .unwrap();
    assert_eq!(line_field(own, "cmd"), "client|list", "{own}");
    assert_eq!(line_field(own, "idle"), "0", "{own}");

    drop((asker, quiet));
    stop(server);
}

/// The line of connection `id` in a CLIENT LIST that `asker` asks for.
fn listed_line(asker: &mut Raw, id: i64) -> String {
    match asker.command(&format!("CLIENT LIST ID {id}")) {
        Resp::Bulk(Some(line)) => String::from_utf8(line).unwrap(),
        other => panic!("{other:?}"),
    }
}

/// `qbuf` and `idle` read as redis-server 7.0 shows them: a partial
/// command's whole arguments are parsed (3 bytes of its payload wait), a
/// connection's own CLIENT LIST counts what was read with it (the 26
/// bytes `redis-cli` sends, or a pipeline's 19), and bytes read from a
/// client or written to it (a subscriber's messages) reset its idle
/// time. Before, the asker saw `qbuf=0`, the partial command all its 33
/// bytes, and only commands reset `idle`.
#[test]
fn client_list_shows_qbuf_and_idle_as_redis_7() {
    let _serial = serial();
    let server = start(config(2));
    let mut asker = Raw::connect(&server);
    let mut dribbler = Raw::connect(&server);
    let mut subscriber = Raw::connect(&server);
    let mut quiet = Raw::connect(&server);
    let mut ids = Vec::new();
    for raw in [&mut asker, &mut dribbler, &mut subscriber, &mut quiet] {
        match raw.command("CLIENT ID") {
            Resp::Integer(id) => ids.push(id),
            other => panic!("{other:?}"),
        }
    }
    let [asker_id, dribbler_id, subscriber_id, quiet_id] = ids[..] else {
        unreachable!()
    };
    subscriber.send(b"SUBSCRIBE news\r\n");
    subscriber.expect(&confirmation("subscribe", "news", 1));

    let partial = b"*3\r\n$7\r\nPUBLISH\r\n$4\r\nnews\r\n$10\r\nhel";
    dribbler.send(partial);
    let qbuf_of = |asker: &mut Raw, id: i64| -> usize {
        line_field(&listed_line(asker, id), "qbuf").parse().unwrap()
    };
    eventually(TIMEOUT, "the partial command read", || {
        qbuf_of(&mut asker, dribbler_id) == 3
    });

    // The asker's own line, asked as redis-cli asks, then pipelined.
    asker.send(&multibulk(&[b"CLIENT", b"LIST"]));
    let Resp::Bulk(Some(list)) = asker.reply() else {
        panic!("no list");
    };
    let list = String::from_utf8(list).unwrap();
    let own = list
        .lines()
        .find(|line| line_field(line, "id") == asker_id.to_string())
        .unwrap();
    assert_eq!(line_field(own, "qbuf"), "26", "{own}");
    assert_eq!(line_field(own, "cmd"), "client|list", "{own}");
    asker.send(format!("CLIENT LIST ID {asker_id}\r\nPING\r\n").as_bytes());
    let Resp::Bulk(Some(own)) = asker.reply() else {
        panic!("no list");
    };
    let own = String::from_utf8(own).unwrap();
    let pipelined = format!("CLIENT LIST ID {asker_id}\r\nPING\r\n").len();
    assert_eq!(line_field(&own, "qbuf"), pipelined.to_string(), "{own}");
    asker.expect(b"+PONG\r\n");
    assert_eq!(qbuf_of(&mut asker, quiet_id), 0);

    // A second on, the subscriber gets a message and the dribbler sends
    // a byte more: both have interacted since; the quiet one has not.
    thread::sleep(Duration::from_millis(1100));
    assert_eq!(asker.command("PUBLISH news hello"), Resp::Integer(1));
    subscriber.expect(&multibulk(&[b"message", b"news", b"hello"]));
    dribbler.send(b"l");
    eventually(TIMEOUT, "the byte read", || {
        qbuf_of(&mut asker, dribbler_id) == 4
    });
    let idle = |asker: &mut Raw, id: i64| -> u64 {
        line_field(&listed_line(asker, id), "idle").parse().unwrap()
    };
    // Whole seconds, so compared with the quiet one rather than with 0: a
    // loaded machine may take a second to get here. The quiet one's last
    // interaction is 1.1 s before theirs, and it is asked last.
    let subscriber_idle = idle(&mut asker, subscriber_id);
    let dribbler_idle = idle(&mut asker, dribbler_id);
    let quiet_idle = idle(&mut asker, quiet_id);
    assert!(quiet_idle >= 1, "quiet client idle={quiet_idle}");
    assert!(
        quiet_idle > subscriber_idle && quiet_idle > dribbler_idle,
        "idle: quiet {quiet_idle}, subscriber {subscriber_idle}, dribbler {dribbler_idle}"
    );

    // The rest of the payload completes the command.
    dribbler.send(b"o12345\r\n");
    assert_eq!(dribbler.reply(), Resp::Integer(1));
    subscriber.expect(&multibulk(&[b"message", b"news", b"hello12345"]));
    assert_eq!(qbuf_of(&mut asker, dribbler_id), 0);

    drop((asker, dribbler, subscriber, quiet));
    stop(server);
}

/// A CLIENT LIST ID with more ids than one lane frame holds asks the
/// cores that own them in several requests, and still lists every match.
#[test]
fn client_list_of_more_ids_than_a_frame_holds_lists_them_all() {
    let _serial = serial();
    let server = start(ServerConfig {
        lane_capacity: 1024,
        ..config(2)
    });
    let mut asker = Raw::connect(&server);
    let mut other = Raw::connect(&server);
    let ids: Vec<i64> = [&mut asker, &mut other]
        .into_iter()
        .map(|raw| match raw.command("CLIENT ID") {
            Resp::Integer(id) => id,
            other => panic!("{other:?}"),
        })
        .collect();
    // Every id up to 400, highest first: each core owns half of them.
    let wanted: Vec<String> = (1..=400).rev().map(|id| id.to_string()).collect();
    let listed = listed_ids(asker.command(&format!("CLIENT LIST ID {}", wanted.join(" "))));
    assert_eq!(listed, [ids[1].max(ids[0]), ids[1].min(ids[0])]);

    drop((asker, other));
    let report = server.shutdown().expect("no core panicked");
    assert!(report.adds_up(), "{report}");
    let requests = report
        .metrics
        .merged()
        .delivery_by_kind
        .get("client list request")
        .map_or(0, |requests| requests.count());
    assert!(requests > 1, "{requests} requests");
}

/// CLIENT LIST names a subscriber's last command as Redis 7.0.15 does
/// (checked against redis-server 7.0.15): a command Redis has is named by
/// its full name even when refused, for its arity or in subscribed mode,
/// and whether or not this server serves it (`get`, `client|kill`); an
/// unknown command or subcommand is `NULL`. A refused GET was once `NULL`.
#[test]
fn client_list_names_a_subscribers_refused_command_as_redis_does() {
    let _serial = serial();
    let server = start(config(1));
    let mut subscriber = Raw::connect(&server);
    subscriber.send(b"CLIENT SETNAME watched\r\nSUBSCRIBE ch\r\n");
    subscriber.expect(b"+OK\r\n");
    subscriber.expect(&confirmation("subscribe", "ch", 1));
    let mut lister = client(&server);
    let arity = |name: &str| format!("-ERR wrong number of arguments for '{name}' command\r\n");
    let cases: [(&[&[u8]], String, &str); 9] = [
        (&[b"get", b"k"], subscribed_mode_error("get"), "get"),
        (&[b"GET"], arity("get"), "get"),
        (
            &[b"foo", b"x"],
            "-ERR unknown command 'foo', with args beginning with: 'x' \r\n".to_string(),
            "NULL",
        ),
        (
            &[b"client", b"kill", b"1.2.3.4:5"],
            subscribed_mode_error("client|kill"),
            "client|kill",
        ),
        (
            &[b"config", b"foo"],
            "-ERR unknown subcommand 'foo'. Try CONFIG HELP.\r\n".to_string(),
            "NULL",
        ),
        (
            &[b"object", b"help", b"x"],
            arity("object|help"),
            "object|help",
        ),
        (
            &[b"acl", b"nosuch"],
            "-ERR unknown subcommand 'nosuch'. Try ACL HELP.\r\n".to_string(),
            "NULL",
        ),
        (
            &[b"config", b"set", b"a", b"b"],
            subscribed_mode_error("config|set"),
            "config|set",
        ),
        (
            &[b"ping"],
            String::from_utf8(multibulk(&[b"pong", b""])).unwrap(),
            "ping",
        ),
    ];
    for (request, reply, cmd) in cases {
        subscriber.send(&multibulk(request));
        // Its reply has come, so CLIENT LIST sees it as the last command.
        subscriber.expect(reply.as_bytes());
        let list: String = redis::cmd("CLIENT").arg("LIST").query(&mut lister).unwrap();
        let line = list
            .lines()
            .find(|line| line.contains(" name=watched "))
            .unwrap_or_else(|| panic!("no subscriber in {list}"));
        assert!(
            line.contains(&format!(" cmd={cmd} ")),
            "{}: cmd={cmd} expected in {line}",
            shown(&request.join(&b" "[..]))
        );
    }
    drop((subscriber, lister));
    stop(server);
}
