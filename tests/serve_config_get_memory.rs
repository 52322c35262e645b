//! CONFIG GET holds memory bounded by the settings it can name, not by
//! the pattern it is sent. A pattern was once parsed whole before it was
//! matched against the few settings' names: a token of 16 bytes for each
//! `?` and a class of 32 bytes more for each `[]`, so a request of a few
//! MiB made the server hold 30 times as much (244 MB at its peak for one
//! of 8 MiB), on a client's say-so. Now a pattern is parsed only as far
//! as a setting's name could match it.
//!
//! The whole process tracks its heap bytes (a global allocator that keeps
//! the peak), so this file holds one test.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::time::Duration;

#[path = "common/peak.rs"]
mod peak;
use peak::{start_one_core as start, LIVE, PEAK};

fn config_get(pattern: &[u8]) -> Vec<u8> {
    let mut request = format!("*3\r\n$6\r\nCONFIG\r\n$3\r\nGET\r\n${}\r\n", pattern.len());
    request.reserve(pattern.len() + 2);
    let mut request = request.into_bytes();
    request.extend_from_slice(pattern);
    request.extend_from_slice(b"\r\n");
    request
}

/// Sends `request` and reads a reply of exactly `expected.len()` bytes.
fn ask(stream: &mut TcpStream, request: &[u8], expected: &[u8]) {
    stream.write_all(request).expect("send");
    let mut got = vec![0u8; expected.len()];
    stream.read_exact(&mut got).expect("reply");
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(expected)
    );
}

#[test]
fn config_get_holds_no_more_than_its_request_for_a_huge_pattern() {
    let server = start();
    let mut stream = TcpStream::connect(server.local_addr()).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();

    // Patterns of 4 MiB that name no setting: as many empty classes, and
    // as many `?`, as fit; the 32-byte class of each `[]` and the 16-byte
    // token of each `?` were what the server held.
    const LEN: usize = 4 << 20;
    let classes = b"[]".repeat(LEN / 2);
    let any = b"?".repeat(LEN);
    // One that names them all, whatever its length: stars take no byte.
    let stars = b"*".repeat(LEN);
    let classes = config_get(&classes);
    let any = config_get(&any);
    let stars = config_get(&stars);
    // Once, so that the connection's buffers have grown to fit such a
    // request before the peak is measured.
    ask(&mut stream, &any, b"*0\r\n");

    for (what, request) in [("[]", &classes), ("?", &any)] {
        let before = LIVE.load(Ordering::Relaxed);
        PEAK.store(before, Ordering::Relaxed);
        ask(&mut stream, request, b"*0\r\n");
        let held = PEAK.load(Ordering::Relaxed) - before;
        // The request itself and a lower-cased copy of its pattern, with
        // room to spare; parsed whole, the pattern alone held 6 (`?`) to
        // 12 (`[]`) times this bound.
        assert!(
            held <= 4 * LEN,
            "CONFIG GET with a {LEN}-byte pattern of {what} held {held} bytes"
        );
    }

    // Matching is unchanged: all the settings for stars.
    stream.write_all(&stars).expect("send");
    let mut header = [0u8; 4];
    stream.read_exact(&mut header).expect("reply");
    assert_eq!(&header[..1], b"*");
    assert_ne!(&header, b"*0\r\n", "stars matched no setting");
    drop(stream);
    server.shutdown().expect("shutdown");
}
