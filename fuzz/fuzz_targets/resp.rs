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

/// Each request with the stream offset where it ended, then how the stream
/// ended (`None`: waiting for more bytes).
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    requests: Vec<(Vec<Vec<u8>>, usize)>,
    end: Option<ProtocolError>,
}

fn owned(request: &Request<'_>) -> Vec<Vec<u8>> {
    assert!(!request.is_empty());
    assert!(request.consumed() > 0);
    assert_eq!(request.args().len(), request.len());
    request.args().map(<[u8]>::to_vec).collect()
}

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

fn parse_whole(stream: &[u8], limits: Limits) -> Outcome {
    let mut parser = RequestParser::new(limits);
    let mut requests = Vec::new();
    let mut offset = 0;
    loop {
        match parser.parse(&stream[offset..]) {
            Ok(Some(request)) => {
                assert!(request.consumed() <= stream.len() - offset);
                offset += request.consumed();
                requests.push((owned(&request), offset));
            }
            Ok(None) => {
                return Outcome {
                    requests,
                    end: None,
                }
            }
            Err(error) => {
                return Outcome {
                    requests,
                    end: Some(error),
                }
            }
        }
    }
}

fn parse_in_reads(stream: &[u8], limits: Limits, reads: &[usize], drain_skipped: bool) -> Outcome {
    let mut parser = RequestParser::new(limits);
    let mut buf = Vec::new();
    let mut drained = 0;
    let mut requests = Vec::new();
    let mut rest = stream;
    for &size in reads.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (read, tail) = rest.split_at(size.min(rest.len()));
        rest = tail;
        buf.extend_from_slice(read);
        loop {
            match parser.parse(&buf) {
                Ok(Some(request)) => {
                    let consumed = request.consumed();
                    assert!(
                        consumed <= buf.len(),
                        "consumed {consumed} of {}",
                        buf.len()
                    );
                    requests.push((owned(&request), drained + consumed));
                    buf.drain(..consumed);
                    drained += consumed;
                }
                Ok(None) => break,
                Err(error) => {
                    return Outcome {
                        requests,
                        end: Some(error),
                    }
                }
            }
        }
        if drain_skipped {
            let skipped = parser.take_skipped();
            assert!(skipped <= buf.len(), "skipped {skipped} of {}", buf.len());
            buf.drain(..skipped);
            drained += skipped;
        }
    }
    Outcome {
        requests,
        end: None,
    }
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
    let pieces = parse_in_reads(stream, limits, &reads, drain_skipped);
    assert_eq!(whole, pieces);
});
