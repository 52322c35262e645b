//! The parser's own consistency check, shared by the unit tests in
//! `resp.rs` and the `resp` fuzz target (which includes this file by path):
//! a stream parsed in pieces, as a server's read loop feeds it, must give
//! exactly what parsing it whole gives.

// The includer's scope: `crate::serve::resp` for the unit tests, the fuzz
// target's root (which imports them from `corelane::serve::resp`).
use super::{Limits, ProtocolError, Request, RequestParser};

/// A request's arguments, owned.
pub type Args = Vec<Vec<u8>>;

/// Everything one run of the parser over a stream produced: each request
/// with the stream offset where it ended, then how the stream ended
/// (`None`: waiting for more bytes).
#[derive(Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Requests in order, each with the offset just past it.
    pub requests: Vec<(Args, usize)>,
    /// The error that ended the stream, if any.
    pub end: Option<ProtocolError>,
}

/// A parsed request's arguments, checking what every request promises.
pub fn owned(request: &Request<'_>) -> Args {
    assert!(!request.is_empty());
    assert!(request.consumed() > 0);
    assert_eq!(request.args().len(), request.len());
    request.args().map(<[u8]>::to_vec).collect()
}

/// Parses a stream that is all there at once.
pub fn parse_whole(stream: &[u8], limits: Limits) -> Outcome {
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

/// Parses a stream arriving in `pieces`, as a server's read loop would,
/// draining skipped empty commands early when `take_skipped` is set.
pub fn parse_pieces<'a>(
    pieces: impl IntoIterator<Item = &'a [u8]>,
    limits: Limits,
    take_skipped: bool,
) -> Outcome {
    let mut parser = RequestParser::new(limits);
    let mut buf = Vec::new();
    let mut drained = 0;
    let mut requests = Vec::new();
    for piece in pieces {
        buf.extend_from_slice(piece);
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
        if take_skipped {
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
