//! PSUBSCRIBE patterns cost the server memory in proportion to their
//! bytes. A parsed pattern once held a 16-byte token for each of its
//! elements and a 32-byte set for each class, so 4,000 patterns of 1,024
//! bytes of `[]` (4 MB sent) grew the server by about 100 MB for as long as
//! the connection lived; the number of patterns a client holds has no cap.
//!
//! The whole process tracks its heap bytes (a global allocator), so this
//! file holds one test.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::time::Duration;

#[path = "common/peak.rs"]
mod peak;
use peak::{start_one_core as start, LIVE};

/// Bytes of each pattern: the longest PSUBSCRIBE accepts.
const PATTERN_LEN: usize = 1024;

/// Patterns subscribed of each kind.
const PATTERNS: usize = 1000;

/// The `index`-th pattern of a kind: `unit` repeated to fill the pattern
/// but for a distinct four-digit tail.
fn pattern(unit: &[u8], index: usize) -> Vec<u8> {
    let tail = format!("{index:04}");
    let mut pattern = unit.repeat((PATTERN_LEN - tail.len()) / unit.len());
    pattern.resize(PATTERN_LEN - tail.len(), b'x');
    pattern.extend_from_slice(tail.as_bytes());
    pattern
}

/// Subscribes `stream` to `patterns` and reads each confirmation;
/// `before` is how many patterns it holds already.
fn psubscribe(stream: &mut TcpStream, patterns: &[Vec<u8>], before: usize) {
    let mut request = Vec::new();
    let mut expected = Vec::new();
    for (count, pattern) in (before + 1..).zip(patterns) {
        let bulk = |out: &mut Vec<u8>| {
            out.extend_from_slice(format!("${}\r\n", pattern.len()).as_bytes());
            out.extend_from_slice(pattern);
            out.extend_from_slice(b"\r\n");
        };
        request.extend_from_slice(b"*2\r\n$10\r\nPSUBSCRIBE\r\n");
        bulk(&mut request);
        expected.extend_from_slice(b"*3\r\n$10\r\npsubscribe\r\n");
        bulk(&mut expected);
        expected.extend_from_slice(format!(":{count}\r\n").as_bytes());
    }
    stream.write_all(&request).expect("send");
    let mut got = vec![0u8; expected.len()];
    stream.read_exact(&mut got).expect("confirmations");
    assert!(got == expected, "PSUBSCRIBE confirmations differ");
}

#[test]
fn psubscribe_patterns_hold_memory_in_proportion_to_their_bytes() {
    let server = start();
    let mut stream = TcpStream::connect(server.local_addr()).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();

    // The kinds that cost the most per byte when each element took a
    // token: empty classes, distinct one-byte classes, `?` runs, escapes,
    // classes of many ranges and negated ones.
    let distinct: Vec<u8> = (b'a'..=b'z').flat_map(|byte| [b'[', byte, b']']).collect();
    let kinds: [&[u8]; 6] = [b"[]", &distinct, b"?", b"\\*", b"[a-cx-z0-9]", b"[^]"];
    let mut sent = 0;
    let mut held_before = 0;
    let before = LIVE.load(Ordering::Relaxed);
    for unit in kinds {
        let patterns: Vec<Vec<u8>> = (0..PATTERNS).map(|index| pattern(unit, index)).collect();
        for chunk in patterns.chunks(100) {
            psubscribe(&mut stream, chunk, held_before);
            held_before += chunk.len();
        }
        sent += PATTERNS * PATTERN_LEN;
        drop(patterns);
    }

    // The server keeps each pattern's name (for replies and
    // PUNSUBSCRIBE), the connection's own list of them, and the parsed
    // pattern (at most twice the name); Redis keeps about the bytes sent.
    // A token and a set per element held 6 (`?`) to 25 (`[]`) times this.
    let held = LIVE.load(Ordering::Relaxed) - before;
    assert!(
        held <= 4 * sent,
        "{} patterns of {PATTERN_LEN} bytes ({sent} bytes) held {held} bytes",
        kinds.len() * PATTERNS
    );
    drop(stream);
    server.shutdown().expect("shutdown");
}
