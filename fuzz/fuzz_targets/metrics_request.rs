//! Feeds arbitrary bytes to the metrics endpoint's request reader, as a
//! client's socket delivers them, and checks what it promises: no answer
//! before the head is whole, the same answer once it is (whatever follows),
//! and a path that starts with `/` and holds no space and no `?`.
//!
//! Input layout: byte 0 picks where the bytes are cut, as if the first read
//! ended there; the rest is what the client sends.

#![no_main]

use corelane::metrics::http::{request, Request, MAX_REQUEST_HEAD};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, sent)) = data.split_first() else {
        return;
    };
    // The endpoint never buffers more than this.
    let sent = &sent[..sent.len().min(MAX_REQUEST_HEAD)];
    let whole = request(sent);
    if let Some(Request::Get { path, .. }) = &whole {
        assert!(path.starts_with('/'), "{path:?}");
        assert!(!path.contains([' ', '?']), "{path:?}");
    }

    // A first read that ended earlier: either the head was not whole yet,
    // or it was, and the same request is read from it.
    let first = &sent[..usize::from(cut).min(sent.len())];
    match request(first) {
        None => {}
        Some(early) => assert_eq!(Some(early), whole),
    }
});
