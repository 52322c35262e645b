//! One client connection: its socket, input buffer, parser, output buffer
//! and subscriptions. Owned and touched by one core only. Both buffers come
//! from the core's pool and go back to it when drained.

use std::collections::HashSet;
use std::io::{self, Read};
use std::net::SocketAddr;
use std::time::Instant;

use mio::net::TcpStream;

use super::output::OutputBuffer;
use super::pubsub::shrink_if_sparse;
use super::resp::RequestParser;
use crate::pool::{Pool, PoolBuf};

/// Channel or pattern names a connection is subscribed to.
pub(crate) type Names = HashSet<Box<[u8]>>;

/// Bytes read from a socket in one call.
const READ_CHUNK: usize = 16 * 1024;

/// Bytes received and not yet parsed: `bytes[start..end]`, in a buffer
/// from the core's pool. A connection holds a buffer only while it has
/// unparsed input: once everything is parsed the buffer goes back to the
/// pool, so idle connections cost no buffer memory and busy ones reuse the
/// same few blocks. Reads go straight into the buffer's spare capacity (no
/// zeroing); it is compacted when the end is reached and grows, to the next
/// size class, only with bytes actually received.
#[derive(Debug, Default)]
pub(crate) struct InputBuffer {
    bytes: Option<PoolBuf>,
    start: usize,
    end: usize,
}

impl InputBuffer {
    /// The unparsed bytes.
    pub(crate) fn data(&self) -> &[u8] {
        match &self.bytes {
            Some(bytes) => &bytes[self.start..self.end],
            None => &[],
        }
    }

    /// Number of unparsed bytes.
    pub(crate) fn len(&self) -> usize {
        self.end - self.start
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Drops `n` parsed bytes from the front; once all are parsed, the
    /// buffer goes back to its pool.
    pub(crate) fn consume(&mut self, n: usize) {
        debug_assert!(n <= self.len(), "consumed {n} of {} bytes", self.len());
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            self.bytes = None;
        }
    }

    /// Reads once from `reader` into the free space, making some first
    /// (from `pool`).
    fn read_from(&mut self, reader: &mut impl Read, pool: &Pool) -> io::Result<usize> {
        let capacity = self.bytes.as_ref().map_or(0, PoolBuf::capacity);
        if self.end == capacity {
            if self.start > 0 {
                if let Some(bytes) = &mut self.bytes {
                    bytes.capacity_mut().copy_within(self.start..self.end, 0);
                }
                self.end -= self.start;
                self.start = 0;
            }
            if self.end == capacity {
                let mut grown = pool.take((capacity * 2).max(READ_CHUNK));
                if let Some(old) = &self.bytes {
                    grown.capacity_mut()[..self.end].copy_from_slice(&old[..self.end]);
                }
                self.bytes = Some(grown);
            }
        }
        let bytes = self.bytes.as_mut().expect("a buffer was just made");
        let read = reader.read(&mut bytes.capacity_mut()[self.end..]);
        if let Ok(n) = read {
            self.end += n;
            bytes.set_len(self.end);
        }
        if self.is_empty() {
            // Nothing arrived (would block, closed, failed): an idle
            // connection keeps no buffer.
            self.consume(0);
        }
        read
    }
}

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
    /// The client's address, for CLIENT LIST's `addr`, read when the
    /// connection was made: once the client has gone (its socket reset),
    /// the socket no longer knows it, and the connection may still be
    /// listed before the server reads that end (a connection waiting for
    /// its own CLIENT LIST reads nothing). `None` if it could not be read.
    pub(crate) peer_addr: Option<SocketAddr>,
    /// The server's address of the connection, for `laddr`, read with
    /// `peer_addr`.
    pub(crate) local_addr: Option<SocketAddr>,
    /// A number unique on the whole server and never reused, for
    /// `CLIENT ID` (never 0: an acknowledgement's waiter id 0 means none).
    pub(crate) id: u64,
    /// Bytes received and not yet parsed into commands. Taken out while
    /// its commands run (see `running_input`).
    pub(crate) input: InputBuffer,
    pub(crate) parser: RequestParser,
    /// Replies and messages not yet written, in buffers from the core's
    /// pool.
    pub(crate) out: OutputBuffer,
    /// Channels subscribed to; changed through [`Connection::forget`] or
    /// taken whole, so that the set shrinks as it empties.
    pub(crate) channels: Names,
    /// Patterns subscribed to, kept as `channels` is.
    pub(crate) patterns: Names,
    pub(crate) name: Option<Vec<u8>>,
    /// While the commands in `input` run (it is taken out meanwhile),
    /// the bytes a Redis query buffer would hold: all of them but what
    /// the parser had taken in of a partial command before (the part
    /// Redis has moved out). Redis trims its buffer only after running
    /// what it read, so a command sees itself in its own CLIENT LIST's
    /// `qbuf`, with the commands read together with it. 0 otherwise.
    pub(crate) running_input: usize,
    /// When the connection was adopted, for CLIENT LIST's `age`.
    pub(crate) since: Instant,
    /// The last command's full name, for CLIENT LIST's `cmd` (see
    /// `command_name`); `None` before any, or after one neither the server
    /// nor (for a subscriber) Redis 7.0 knows.
    pub(crate) last_command: Option<&'static str>,
    /// When the server last read bytes from the client or wrote bytes to
    /// it (replies, messages), for CLIENT LIST's `idle`, as Redis keeps
    /// its `lastinteraction`: one clock reading per read or write that
    /// moved bytes; `since` until the first.
    pub(crate) last_interaction: Instant,
    /// Close once the output is written (QUIT, protocol error).
    pub(crate) closing: bool,
    /// Acknowledgements of subscriptions still awaited from other cores;
    /// output is held while non-zero.
    pub(crate) held: u32,
    /// A CLIENT LIST waiting for other cores' lines; the connection's
    /// further commands wait (unparsed, and unread on the socket) until
    /// it is answered.
    pub(crate) listing: Option<ClientListing>,
    /// On the core's list of connections to flush this turn.
    pub(crate) dirty: bool,
    /// The socket may hold input we have not read (we stopped early for
    /// backpressure or fairness); edge-triggered polling will not tell us
    /// again, so the core must come back to it.
    pub(crate) unread: bool,
    /// Not read from because its unwritten output passed the read pause;
    /// writing enough of it out puts it back on the unread list.
    pub(crate) read_paused: bool,
}

impl Connection {
    pub(crate) fn new(
        stream: TcpStream,
        id: u64,
        parser: RequestParser,
        out: OutputBuffer,
    ) -> Self {
        let now = Instant::now();
        Connection {
            peer_addr: stream.peer_addr().ok(),
            local_addr: stream.local_addr().ok(),
            stream,
            id,
            input: InputBuffer::default(),
            parser,
            out,
            channels: HashSet::new(),
            patterns: HashSet::new(),
            name: None,
            running_input: 0,
            since: now,
            last_command: None,
            last_interaction: now,
            closing: false,
            held: 0,
            listing: None,
            dirty: false,
            unread: false,
            read_paused: false,
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

    /// Drops `name` from the channels (or, with `pattern`, the patterns)
    /// held; returns whether it was held. A set left sparse is shrunk.
    pub(crate) fn forget(&mut self, name: &[u8], pattern: bool) -> bool {
        let set = if pattern {
            &mut self.patterns
        } else {
            &mut self.channels
        };
        let held = set.remove(name);
        if held {
            shrink_if_sparse(set);
        }
        held
    }

    /// Takes every channel and pattern held, leaving two empty sets with
    /// no capacity.
    pub(crate) fn take_subscriptions(&mut self) -> (Names, Names) {
        (
            std::mem::take(&mut self.channels),
            std::mem::take(&mut self.patterns),
        )
    }

    /// The bytes of its query buffer, as Redis counts CLIENT LIST's
    /// `qbuf`: received and not yet parsed (a partial command's whole
    /// arguments are parsed), or while its commands run, what was read
    /// with them (see `running_input`).
    pub(crate) fn query_buffer(&self) -> usize {
        if self.running_input > 0 {
            return self.running_input;
        }
        self.input.len().saturating_sub(self.parser.parsed_len())
    }

    /// Bytes waiting to be written.
    pub(crate) fn pending_out(&self) -> usize {
        self.out.pending()
    }

    /// Drops all pending output, giving its buffers back to the pool.
    pub(crate) fn discard_output(&mut self) {
        self.out.clear();
    }

    /// Reads one chunk from the socket into the input buffer, which comes
    /// from `pool`.
    pub(crate) fn read_chunk(&mut self, pool: &Pool) -> io::Result<ReadOutcome> {
        loop {
            return match self.input.read_from(&mut self.stream, pool) {
                Ok(0) => Ok(ReadOutcome::Closed),
                Ok(_) => {
                    self.last_interaction = Instant::now();
                    Ok(ReadOutcome::Data)
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => Ok(ReadOutcome::Drained),
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => Err(error),
            };
        }
    }

    /// Writes pending output until done or the socket is full; buffers
    /// written out go back to the pool. Returns whether everything was
    /// written.
    pub(crate) fn write_out(&mut self) -> io::Result<bool> {
        let pending = self.out.pending();
        let written = self.out.write_to(&mut self.stream);
        if self.out.pending() < pending {
            self.last_interaction = Instant::now();
        }
        written
    }
}

/// A CLIENT LIST being gathered from every core.
#[derive(Debug, Default)]
pub(crate) struct ClientListing {
    /// Each core's lines received so far, by core. Kept apart because
    /// two cores' pieces may arrive interleaved (one core's wait for room
    /// in its lane while another's come in), and a line can be cut across
    /// pieces.
    pub(crate) lines: Vec<Vec<u8>>,
    /// Requests to other cores whose last lines have not come yet (a core
    /// asked for many ids may be asked more than once).
    pub(crate) waiting: usize,
    /// For `CLIENT LIST ID`, the ids in the order given (repeats kept):
    /// the order of the reply. `None`: in the order of the ids.
    pub(crate) given: Option<Vec<u64>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::PoolConfig;
    use crate::serve::output::OutputPool;

    /// A connection over a loopback socket of its own.
    fn connection(pool: &Pool) -> (Connection, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let peer = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (stream, _) = listener.accept().unwrap();
        stream.set_nonblocking(true).unwrap();
        let out = OutputBuffer::new(OutputPool::new(pool.lender()));
        let conn = Connection::new(
            TcpStream::from_std(stream),
            1,
            RequestParser::default(),
            out,
        );
        (conn, peer)
    }

    #[test]
    fn subscription_sets_shrink_as_they_empty() {
        let pool = Pool::new(&PoolConfig::default());
        let (mut conn, _peer) = connection(&pool);
        let names: Vec<Vec<u8>> = (0..5000).map(|i| format!("ch{i}").into_bytes()).collect();
        for name in &names {
            conn.channels.insert(name.as_slice().into());
            conn.patterns.insert(name.as_slice().into());
        }
        assert!(conn.channels.capacity() >= 5000);
        for name in &names {
            assert!(conn.forget(name, false));
        }
        assert!(!conn.forget(b"ch0", false), "forgotten already");
        assert!(
            conn.channels.capacity() <= 128,
            "{}",
            conn.channels.capacity()
        );

        // RESET takes both sets whole; what is left has no table at all.
        let (_, patterns) = conn.take_subscriptions();
        assert_eq!(patterns.len(), 5000);
        assert_eq!((conn.channels.capacity(), conn.patterns.capacity()), (0, 0));
        assert!(!conn.is_subscriber());
    }
}
