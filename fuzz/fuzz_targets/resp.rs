//! Feeds arbitrary bytes to the RESP request parser in pieces, the way a
//! server's read loop does, and checks that the pieces change nothing: the
//! requests (and the error, if any) must be those of parsing the whole
//! stream at once, and every `consumed` must lie within the buffer.
//!
//! Input layout: byte 0 picks the limits and whether skipped empty commands
//! are drained early; bytes 1..4 give a cycle of read sizes; the rest is the
//! stream.

#![no_main]

use corelane::serve::resp::{Limits, ProtocolError, Request, RequestParser};
use libfuzzer_sys::fuzz_target;
use resp_check::{parse_pieces, parse_whole};

#[path = "../../src/serve/resp_check.rs"]
mod resp_check;

fn limits(choice: u8) -> Limits {
    match choice % 4 {
        0 => Limits::default(),
        1 => Limits {
            max_bulk_len: 16,
            max_args: 4,
            max_inline_len: 12,
        },
        2 => Limits {
            max_bulk_len: 0,
            max_args: 1,
            max_inline_len: 1,
        },
        _ => Limits {
            max_bulk_len: 300,
            max_args: 64,
            max_inline_len: 40,
        },
    }
}

/// Cuts the stream into reads of the given sizes, in turn.
fn in_reads<'a>(mut rest: &'a [u8], sizes: &'a [usize]) -> impl Iterator<Item = &'a [u8]> + 'a {
    sizes.iter().cycle().map_while(move |&size| {
        if rest.is_empty() {
            return None;
        }
        let (read, tail) = rest.split_at(size.min(rest.len()));
        rest = tail;
        Some(read)
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((header, stream)) = data.split_first_chunk::<4>() else {
        return;
    };
    let limits = limits(header[0]);
    let drain_skipped = header[0] & 4 != 0;
    let reads = [
        usize::from(header[1] % 17) + 1,
        usize::from(header[2]) + 1,
        usize::from(header[3] % 4) + 1,
    ];

    let whole = parse_whole(stream, limits);
    let pieces = parse_pieces(in_reads(stream, &reads), limits, drain_skipped);
    assert_eq!(whole, pieces);
});
