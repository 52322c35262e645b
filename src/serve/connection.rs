//! One client connection: its socket, input buffer, parser, output buffer
//! and subscriptions. Owned and touched by one core only.

use std::collections::HashSet;
use std::io::{self, Read, Write};

use mio::net::TcpStream;

use super::resp::RequestParser;

/// Bytes read from a socket in one call.
const READ_CHUNK: usize = 16 * 1024;

/// What one read found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ReadOutcome {
    /// Some bytes were appended to the input buffer.
    Data,
    /// Nothing more to read until the next readiness event.
    Drained,
    /// The peer closed its side.
    Closed,
}

/// A client connection.
#[derive(Debug)]
pub(crate) struct Connection {
    pub(crate) stream: TcpStream,
    /// A number unique on this core, for `CLIENT ID`.
    pub(crate) id: u64,
    /// Bytes received and not yet parsed into commands.
    pub(crate) input: Vec<u8>,
    pub(crate) parser: RequestParser,
    /// Replies and messages not yet written; `out[written..]` is pending.
    pub(crate) out: Vec<u8>,
    written: usize,
    pub(crate) channels: HashSet<Box<[u8]>>,
    pub(crate) patterns: HashSet<Box<[u8]>>,
    pub(crate) name: Option<Vec<u8>>,
    /// Close once the output is written (QUIT, protocol error).
    pub(crate) closing: bool,
    /// Acknowledgements of subscriptions still awaited from other cores;
    /// output is held while non-zero.
    pub(crate) held: u32,
    /// On the core's list of connections to flush this turn.
    pub(crate) dirty: bool,
    /// The socket may hold input we have not read (we stopped early for
    /// backpressure or fairness); edge-triggered polling will not tell us
    /// again, so the core must come back to it.
    pub(crate) unread: bool,
}

impl Connection {
    pub(crate) fn new(stream: TcpStream, id: u64, parser: RequestParser) -> Self {
        Connection {
            stream,
            id,
            input: Vec::new(),
            parser,
            out: Vec::new(),
            written: 0,
            channels: HashSet::new(),
            patterns: HashSet::new(),
            name: None,
            closing: false,
            held: 0,
            dirty: false,
            unread: false,
        }
    }

    /// Whether the connection is in subscribed mode (RESP2 allows only
    /// (P)(UN)SUBSCRIBE, PING, QUIT and RESET there).
    pub(crate) fn is_subscriber(&self) -> bool {
        !self.channels.is_empty() || !self.patterns.is_empty()
    }

    /// Subscriptions held, channels and patterns together.
    pub(crate) fn subscription_count(&self) -> usize {
        self.channels.len() + self.patterns.len()
    }

    /// Bytes waiting to be written.
    pub(crate) fn pending_out(&self) -> usize {
        self.out.len() - self.written
    }

    /// Reads one chunk from the socket into the input buffer.
    pub(crate) fn read_chunk(&mut self) -> io::Result<ReadOutcome> {
        let filled = self.input.len();
        self.input.resize(filled + READ_CHUNK, 0);
        let result = loop {
            match self.stream.read(&mut self.input[filled..]) {
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        match result {
            Ok(0) => {
                self.input.truncate(filled);
                Ok(ReadOutcome::Closed)
            }
            Ok(n) => {
                self.input.truncate(filled + n);
                Ok(ReadOutcome::Data)
            }
            Err(error) => {
                self.input.truncate(filled);
                if error.kind() == io::ErrorKind::WouldBlock {
                    Ok(ReadOutcome::Drained)
                } else {
                    Err(error)
                }
            }
        }
    }

    /// Writes pending output until done or the socket is full. Returns
    /// whether everything was written.
    pub(crate) fn write_out(&mut self) -> io::Result<bool> {
        while self.written < self.out.len() {
            match self.stream.write(&self.out[self.written..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.written += n,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
        self.out.clear();
        self.written = 0;
        // A burst may have grown the buffer far beyond the usual; give the
        // memory back rather than keep it per idle connection.
        if self.out.capacity() > 1 << 20 {
            self.out.shrink_to(64 * 1024);
        }
        if self.input.is_empty() && self.input.capacity() > 1 << 20 {
            self.input.shrink_to(READ_CHUNK);
        }
        Ok(true)
    }
}
