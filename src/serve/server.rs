//! `corelane serve`: a Redis-protocol pub/sub server on the runtime.
//!
//! Core 0 accepts connections and deals them to the cores in turn (itself
//! included), handing each socket over through a lane. From then on a
//! connection belongs to one core: its reads, parsing, replies and
//! subscriptions happen there and nowhere else.
//!
//! A PUBLISH is delivered at once to the subscribers on the publisher's
//! core and forwarded, as one frame, to every other core, which delivers
//! it to its own. A lane that is full does not lose or reorder a forward:
//! it waits in a per-destination backlog, and while the backlog is over
//! its bound the core stops reading from its clients (backpressure).
//! CLIENT LIST's requests and lines go ahead of the forwards waiting
//! there (see `send_ahead`): a list does not wait for a flood of
//! PUBLISHes to drain.
//!
//! Output is written once per turn per connection, from a chain of buffers
//! taken from the core's pool (see `output.rs`) that go back as they are
//! written. A subscriber whose unwritten output passes the output limit is
//! disconnected and its buffers given back; a client that is not a
//! subscriber is simply not read from until its replies drain.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Token};
use rkyv::Archived;
use slab::Slab;

use super::connection::{Connection, ReadOutcome};
use super::journal::CoreJournal;
use super::message::{ArchivedServerMsg, ServerMsg, ServerMsgRef};
use super::output::{OutputBuffer, OutputCounts, OutputPool};
use super::pubsub::{shrink_if_sparse, RemoteInterest, Subscriptions};
use super::reply;
use super::resp::{Limits, RequestParser};
use crate::pool::PoolConfig;
use crate::runtime::{
    Context, Handler, IdleStrategy, Running, Runtime, RuntimeError, RuntimeHandle, SendError,
    ShutdownReport, TimeSource,
};
use crate::segment::journal::{JournalConfig, JournalError};

/// The listener's token on core 0; connections use their slab key.
const LISTENER: Token = Token(usize::MAX - 1);

/// The handler timer that retries `accept` after it failed.
const ACCEPT_RETRY: u64 = 1;

/// How long after a failed `accept` it is tried again.
const ACCEPT_RETRY_AFTER: Duration = Duration::from_millis(50);

/// Reads from one connection per readiness event before the core moves on
/// to others (the rest is read on a later turn).
const READS_PER_EVENT: usize = 16;

/// What a message waiting in a backlog takes: its own slot as well as the
/// bytes it holds. Counting the bytes alone let a flood of empty PUBLISHes
/// hold a hundred times `backlog_limit` before the core pushed back.
fn backlog_cost(msg: &ServerMsg) -> usize {
    std::mem::size_of::<ServerMsg>() + msg.heap_len()
}

/// Settings of a server.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Address to listen on. Default `127.0.0.1:6380`.
    pub bind: SocketAddr,
    /// Cores to run; `None` for one per CPU.
    pub cores: Option<usize>,
    /// Bytes of frames in each lane; a published message (channel plus
    /// payload) must fit in half of it. Default 1 MiB.
    pub lane_capacity: usize,
    /// How idle cores wait. Default [`IdleStrategy::default`].
    pub idle: IdleStrategy,
    /// Most frames a core reads from one lane per turn. Default 1024: a
    /// core serving many pipelining clients receives forwards in bursts,
    /// and a small batch would let them queue for many turns.
    pub drain_batch: usize,
    /// Unwritten output at which a subscriber is disconnected; 0 for no
    /// limit, as in Redis. Default 32 MiB (Redis's hard limit for pub/sub
    /// clients).
    pub output_limit: usize,
    /// Unwritten output at which the server stops reading a client's
    /// commands until it reads its replies. Default 1 MiB.
    pub read_pause: usize,
    /// Bytes of forwards waiting for full lanes (each message's own size
    /// and the bytes it holds) at which a core stops reading from its
    /// clients. Default 16 MiB.
    pub backlog_limit: usize,
    /// Request size limits. Default: Redis's, with bulk strings capped at
    /// 8 MiB (no larger message fits the frame of a lane of 16 MiB or
    /// less). A server whose lanes carry more raises the cap to half of
    /// `lane_capacity`, so a PUBLISH the lanes would carry is not refused
    /// as a protocol error first.
    pub limits: Limits,
    /// Unparsed input a client may accumulate (one huge or never-ending
    /// command) before it gets an error and is disconnected. Default
    /// 64 MiB; at least twice the bulk-string cap once the lanes raise it.
    pub max_query_buffer: usize,
    /// Journal every PUBLISH under this directory, one journal per core
    /// (`core-N`, see [`super::journal`]). Default none.
    pub journal: Option<std::path::PathBuf>,
    /// Segment size and durability of those journals.
    pub journal_config: JournalConfig,
    /// Size classes and caps of each core's buffer pool, from which socket
    /// input and output buffers (and lane messages too large for a frame)
    /// are taken. Default [`PoolConfig::default`].
    pub pool: PoolConfig,
    /// The clock the cores' timers (and the journals' sync periods) run
    /// on. Default the monotonic clock; tests use a virtual one.
    pub time_source: TimeSource,
}

impl ServerConfig {
    /// Raises the bulk-string cap to the largest message a lane carries
    /// (half of `lane_capacity`), where that is more, and the query
    /// buffer to hold two such commands.
    fn fit_limits_to_lanes(&mut self) {
        let lane_message = self.lane_capacity / 2;
        if lane_message > self.limits.max_bulk_len {
            self.limits.max_bulk_len = lane_message;
            self.max_query_buffer = self.max_query_buffer.max(2 * lane_message);
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 6380)),
            cores: None,
            lane_capacity: 1 << 20,
            idle: IdleStrategy::default(),
            drain_batch: 1024,
            output_limit: 32 << 20,
            read_pause: 1 << 20,
            backlog_limit: 16 << 20,
            limits: Limits {
                max_bulk_len: 8 << 20,
                ..Limits::default()
            },
            max_query_buffer: 64 << 20,
            journal: None,
            journal_config: JournalConfig::default(),
            pool: PoolConfig::default(),
            time_source: TimeSource::default(),
        }
    }
}

/// Why a server could not start or stopped badly.
#[derive(Debug)]
pub enum ServeError {
    /// Binding the listening socket failed.
    Bind(SocketAddr, io::Error),
    /// The runtime failed.
    Runtime(RuntimeError),
    /// A core's journal could not be opened (or recovered).
    Journal(JournalError),
}

impl fmt::Display for ServeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServeError::Bind(addr, error) => write!(f, "cannot listen on {addr}: {error}"),
            ServeError::Runtime(error) => error.fmt(f),
            ServeError::Journal(error) => write!(f, "journal: {error}"),
        }
    }
}

impl std::error::Error for ServeError {}

impl From<RuntimeError> for ServeError {
    fn from(error: RuntimeError) -> Self {
        ServeError::Runtime(error)
    }
}

/// Counters the cores share with INFO: each written by its own core.
#[derive(Debug)]
pub(crate) struct ServerStats {
    pub(crate) connections: Vec<AtomicU64>,
    /// Commands executed, per core (stored, not added to: one writer).
    pub(crate) commands: Vec<AtomicU64>,
    pub(crate) accepted: AtomicU64,
    /// Output buffers held by each core's connections, as that core last
    /// published them.
    pub(crate) output: Vec<PublishedOutput>,
    pub(crate) bind: SocketAddr,
    pub(crate) started: std::time::Instant,
}

/// One core's [`OutputCounts`], published for INFO on other cores: each
/// field written by that core alone, read with no ordering beyond its own.
#[derive(Debug, Default)]
pub(crate) struct PublishedOutput {
    buffers: AtomicU64,
    bytes: AtomicU64,
    fallbacks: AtomicU64,
}

impl PublishedOutput {
    fn publish(&self, counts: OutputCounts) {
        self.buffers.store(counts.buffers, Ordering::Relaxed);
        self.bytes.store(counts.bytes, Ordering::Relaxed);
        self.fallbacks.store(counts.fallbacks, Ordering::Relaxed);
    }

    /// The counts as last published.
    pub(crate) fn load(&self) -> OutputCounts {
        OutputCounts {
            buffers: self.buffers.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            fallbacks: self.fallbacks.load(Ordering::Relaxed),
        }
    }
}

/// A running server.
pub struct Server {
    addr: SocketAddr,
    running: Running<ServerMsg>,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server").field("addr", &self.addr).finish()
    }
}

impl Server {
    /// Binds the listener, then starts the cores.
    ///
    /// # Errors
    ///
    /// [`ServeError::Bind`] if the address cannot be bound (in use, not
    /// local); [`ServeError::Runtime`] if the runtime cannot start.
    pub fn start(mut config: ServerConfig) -> Result<Server, ServeError> {
        config.fit_limits_to_lanes();
        let listener =
            TcpListener::bind(config.bind).map_err(|error| ServeError::Bind(config.bind, error))?;
        let addr = listener
            .local_addr()
            .map_err(|error| ServeError::Bind(config.bind, error))?;
        let mut builder = Runtime::builder()
            .lane_capacity(config.lane_capacity)
            .drain_batch(config.drain_batch)
            .idle(config.idle)
            .pool(config.pool.clone())
            .time_source(config.time_source.clone());
        if let Some(cores) = config.cores {
            builder = builder.cores(cores);
        }
        let runtime = builder.build()?;
        let stats = Arc::new(ServerStats {
            connections: (0..runtime.cores()).map(|_| AtomicU64::new(0)).collect(),
            commands: (0..runtime.cores()).map(|_| AtomicU64::new(0)).collect(),
            accepted: AtomicU64::new(0),
            output: (0..runtime.cores())
                .map(|_| PublishedOutput::default())
                .collect(),
            bind: addr,
            started: std::time::Instant::now(),
        });
        let journals = match &config.journal {
            Some(dir) => CoreJournal::open_all(
                dir,
                runtime.cores(),
                config.journal_config,
                &config.time_source,
            )
            .map_err(ServeError::Journal)?
            .into_iter()
            .map(Some)
            .collect(),
            None => Vec::new(),
        };
        let journals = Mutex::new(journals);
        let listener = Mutex::new(Some(listener));
        let config = Arc::new(config);
        let running = runtime.start(move |core| {
            // Only core 0 accepts; it takes the listener on its first call.
            let listener = if core == 0 {
                listener.lock().map(|mut slot| slot.take()).unwrap_or(None)
            } else {
                None
            };
            let journal = journals
                .lock()
                .ok()
                .and_then(|mut all| all.get_mut(core).and_then(Option::take));
            let mut serve_core =
                ServeCore::new(core, Arc::clone(&config), Arc::clone(&stats), listener);
            serve_core.journal = journal;
            serve_core
        })?;
        Ok(Server { addr, running })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// A handle to the runtime: stop it, read metrics.
    pub fn runtime(&self) -> RuntimeHandle {
        self.running.handle()
    }

    /// Stops the server: closes the listener and every connection, drains
    /// the lanes, and reports.
    ///
    /// # Errors
    ///
    /// [`ServeError::Runtime`] if a core panicked.
    pub fn shutdown(self) -> Result<ShutdownReport, ServeError> {
        Ok(self.running.shutdown()?)
    }

    /// Waits until something stops the server (see [`Server::runtime`]).
    ///
    /// # Errors
    ///
    /// [`ServeError::Runtime`] if a core panicked.
    pub fn wait(self) -> Result<ShutdownReport, ServeError> {
        Ok(self.running.wait()?)
    }
}

/// One core of the server.
pub(crate) struct ServeCore {
    pub(crate) core: usize,
    pub(crate) config: Arc<ServerConfig>,
    pub(crate) stats: Arc<ServerStats>,
    listener: Option<TcpListener>,
    /// The core the next accepted connection goes to.
    next_core: usize,
    /// Accepted sockets waiting for room in the lane to their core.
    pending_adopt: VecDeque<(usize, TcpStream)>,
    /// An `accept` failed and is to be retried on a timer.
    accept_retry: bool,
    pub(crate) conns: Slab<Connection>,
    pub(crate) subs: Subscriptions,
    /// What each other core's subscribers want (this core's entry unused).
    pub(crate) remote: Vec<RemoteInterest>,
    /// Messages waiting for room, per destination core, in order.
    backlog: Vec<VecDeque<ServerMsg>>,
    /// How many messages at the front of each destination's backlog were
    /// sent ahead of the rest (`send_ahead`), in the order sent.
    ahead: Vec<usize>,
    /// What the backlog takes, by [`backlog_cost`].
    backlog_bytes: usize,
    /// Connections with output to write this turn.
    pub(crate) dirty: Vec<usize>,
    /// Connections with input left unread on their socket.
    unread: Vec<usize>,
    /// An empty list with capacity, swapped with `dirty` or `unread`
    /// while one is worked through.
    spare: Vec<usize>,
    /// The id the next connection adopted here gets. Core `c` of `n` hands
    /// out `c + 1`, `c + 1 + n`, `c + 1 + 2n`, ...: unique on the whole
    /// server, as Redis's client ids are, without a counter the cores share.
    next_id: u64,
    /// Commands executed on this core; published in `stats.commands`.
    pub(crate) commands: u64,
    /// This core's journal of PUBLISHes, with `--journal`.
    pub(crate) journal: Option<CoreJournal>,
    /// Where connections take output buffers: the core's pool, reached
    /// from the first connection adopted (the pool lives in the context).
    output: Option<OutputPool>,
    /// `output`'s counts as last published in `stats.output`.
    published_output: OutputCounts,
}

impl ServeCore {
    fn new(
        core: usize,
        config: Arc<ServerConfig>,
        stats: Arc<ServerStats>,
        listener: Option<TcpListener>,
    ) -> Self {
        let cores = stats.connections.len();
        ServeCore {
            core,
            config,
            stats,
            listener,
            next_core: 0,
            pending_adopt: VecDeque::new(),
            accept_retry: false,
            conns: Slab::new(),
            subs: Subscriptions::default(),
            remote: (0..cores).map(|_| RemoteInterest::default()).collect(),
            backlog: (0..cores).map(|_| VecDeque::new()).collect(),
            ahead: vec![0; cores],
            backlog_bytes: 0,
            dirty: Vec::new(),
            unread: Vec::new(),
            spare: Vec::new(),
            next_id: core as u64 + 1,
            commands: 0,
            journal: None,
            output: None,
            published_output: OutputCounts::default(),
        }
    }

    /// Publishes what this core's connections hold for output, when it
    /// changed, for INFO.
    fn publish_output(&mut self) {
        let counts = self
            .output
            .as_ref()
            .map(OutputPool::counts)
            .unwrap_or_default();
        if counts != self.published_output {
            self.stats.output[self.core].publish(counts);
            self.published_output = counts;
        }
    }

    /// Whether the core must stop reading client input for now.
    fn backpressured(&self) -> bool {
        self.backlog_bytes > self.config.backlog_limit
    }

    fn accept(&mut self, cx: &mut Context<'_, ServerMsg>) {
        let Some(listener) = &self.listener else {
            return;
        };
        loop {
            match listener.accept() {
                Ok((stream, _peer)) => {
                    if let Err(error) = stream.set_nodelay(true) {
                        log::debug!("TCP_NODELAY: {error}");
                    }
                    self.stats.accepted.fetch_add(1, Ordering::Relaxed);
                    let target = self.next_core;
                    self.next_core = (self.next_core + 1) % cx.cores();
                    self.pending_adopt.push_back((target, stream));
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => {
                    // Out of descriptors (or memory), or a connection reset
                    // before we took it. The listener is polled
                    // edge-triggered: connections already waiting would not
                    // raise another event, and would wait until some new
                    // client connects. Try again shortly instead.
                    log::warn!("accept failed: {error}");
                    if !self.accept_retry {
                        self.accept_retry = true;
                        cx.schedule_timer(ACCEPT_RETRY_AFTER, ACCEPT_RETRY);
                    }
                    break;
                }
            }
        }
        self.hand_over(cx);
    }

    /// Hands accepted sockets to their cores, in order; stops at a full lane.
    fn hand_over(&mut self, cx: &mut Context<'_, ServerMsg>) -> bool {
        let mut moved = false;
        while let Some((target, stream)) = self.pending_adopt.pop_front() {
            if target == self.core {
                self.adopt(cx, stream);
                moved = true;
                continue;
            }
            let msg = ServerMsgRef::Adopt {
                fd: stream.as_raw_fd(),
            };
            match cx.send(target, &msg) {
                Ok(()) => {
                    // The receiving core owns the descriptor now.
                    let _ = stream.into_raw_fd();
                    moved = true;
                }
                Err(SendError::Full(_)) => {
                    self.pending_adopt.push_front((target, stream));
                    break;
                }
                Err(error) => {
                    log::error!("cannot hand a connection to core {target}: {error}");
                }
            }
        }
        moved
    }

    fn adopt(&mut self, cx: &mut Context<'_, ServerMsg>, mut stream: TcpStream) {
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        if let Err(error) = cx.registry().register(
            &mut stream,
            Token(key),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            log::warn!("cannot register a connection: {error}");
            return;
        }
        let parser = RequestParser::new(self.config.limits);
        let output = self
            .output
            .get_or_insert_with(|| OutputPool::new(cx.pool().lender()));
        let out = OutputBuffer::new(output.clone());
        entry.insert(Connection::new(stream, self.next_id, parser, out));
        self.next_id += cx.cores() as u64;
        self.stats.connections[self.core].fetch_add(1, Ordering::Relaxed);
        // Bytes may have arrived before registration: read them now.
        self.mark_unread(key);
    }

    pub(crate) fn mark_unread(&mut self, key: usize) {
        if let Some(conn) = self.conns.get_mut(key) {
            if !conn.unread {
                conn.unread = true;
                self.unread.push(key);
            }
        }
    }

    pub(crate) fn mark_dirty(&mut self, key: usize) {
        if let Some(conn) = self.conns.get_mut(key) {
            if !conn.dirty {
                conn.dirty = true;
                self.dirty.push(key);
            }
        }
    }

    /// Reads and executes what a client sent, within this event's budget.
    fn read_from(&mut self, cx: &mut Context<'_, ServerMsg>, key: usize) {
        for _ in 0..READS_PER_EVENT {
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            if conn.closing {
                return;
            }
            if conn.listing.is_some() {
                // Nothing runs until the CLIENT LIST is answered: reading
                // on would pile up unparsed input past the query buffer
                // limit, since the read pause counts only output. The
                // answer reads again.
                return;
            }
            if self.backlog_bytes > self.config.backlog_limit {
                self.mark_unread(key);
                return;
            }
            if conn.pending_out() > self.config.read_pause {
                // `write_to` resumes reading once the client has read its
                // replies; coming back every turn would spin the core.
                conn.read_paused = true;
                return;
            }
            match conn.read_chunk(cx.pool()) {
                Ok(ReadOutcome::Data) => self.execute_input(cx, key),
                Ok(ReadOutcome::Drained) => return,
                Ok(ReadOutcome::Closed) => {
                    // The client may have only shut down its sending side
                    // and still wait for replies: write them, then close.
                    // Commands it sent may still wait in its input, left
                    // at the read pause (the write that made room comes
                    // in the same event as this end): they run first.
                    // Stopped again, at the pause or behind a CLIENT LIST,
                    // the read that resumes them meets this end again.
                    self.execute_input(cx, key);
                    let read_pause = self.config.read_pause;
                    if let Some(conn) = self.conns.get_mut(key) {
                        if conn.listing.is_some() || conn.pending_out() > read_pause {
                            return;
                        }
                        conn.closing = true;
                    }
                    self.mark_dirty(key);
                    return;
                }
                Err(error) => {
                    log::debug!("core {}: read from client: {error}", self.core);
                    self.close(cx, key);
                    return;
                }
            }
        }
        self.mark_unread(key);
    }

    /// Parses and executes every complete command in a client's input.
    pub(crate) fn execute_input(&mut self, cx: &mut Context<'_, ServerMsg>, key: usize) {
        let conn = &mut self.conns[key];
        if conn.closing || conn.listing.is_some() {
            // After QUIT or an error the rest of the input must never run,
            // but the connection can still be on the unread list (its last
            // read used up the read budget, or a closed connection's key
            // there was reused): parsing again would repeat the error.
            // While a CLIENT LIST waits for other cores, what follows it
            // waits too, so that its reply comes first.
            return;
        }
        let input = std::mem::take(&mut conn.input);
        let mut parser = std::mem::take(&mut conn.parser);
        if input.len() > self.config.max_query_buffer {
            reply::error(&mut conn.out, "ERR query buffer limit reached");
            conn.closing = true;
            conn.input = input;
            conn.parser = parser;
            self.mark_dirty(key);
            return;
        }
        // What Redis would still hold in its query buffer while these
        // commands run, for CLIENT LIST's `qbuf` (see `running_input`).
        conn.running_input = input.len().saturating_sub(parser.parsed_len());
        let mut consumed = 0;
        loop {
            match parser.parse(&input.data()[consumed..]) {
                Ok(Some(request)) => {
                    consumed += request.consumed();
                    self.execute(cx, key, &request);
                    let stop = self.conns.get(key).is_none_or(|conn| {
                        conn.closing
                            || conn.listing.is_some()
                            || conn.pending_out() > self.config.read_pause
                    });
                    if stop {
                        break;
                    }
                }
                Ok(None) => {
                    consumed += parser.take_skipped();
                    break;
                }
                Err(error) => {
                    if let Some(conn) = self.conns.get_mut(key) {
                        // The parser's text has no error code; Redis sends
                        // `-ERR Protocol error: ...` and clients read the
                        // first word as the code.
                        reply::error(&mut conn.out, &format!("ERR {error}"));
                        conn.closing = true;
                    }
                    self.mark_dirty(key);
                    break;
                }
            }
        }
        if let Some(conn) = self.conns.get_mut(key) {
            let mut input = input;
            input.consume(consumed);
            conn.input = input;
            conn.parser = parser;
            conn.running_input = 0;
            if !conn.closing && conn.pending_out() > self.config.read_pause {
                // Complete commands may remain (we stopped for output):
                // `write_to` comes back to them once the client has read.
                // Input left otherwise is an incomplete command, and its
                // next bytes come with a readable event: polling for them
                // every turn would spin the core.
                conn.read_paused = true;
            }
        }
    }

    /// Writes out a connection's pending output; closes it when asked to
    /// or on error.
    fn write_to(&mut self, cx: &mut Context<'_, ServerMsg>, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        conn.dirty = false;
        if conn.held > 0 {
            // Waiting for other cores to acknowledge a subscription; the
            // last acknowledgement marks the connection dirty again.
            return;
        }
        match conn.write_out() {
            Ok(true) if conn.closing => self.close(cx, key),
            Ok(_) => {
                if conn.read_paused && conn.pending_out() <= self.config.read_pause {
                    conn.read_paused = false;
                    self.mark_unread(key);
                }
            }
            Err(error) => {
                log::debug!("core {}: write to client: {error}", self.core);
                self.close(cx, key);
            }
        }
    }

    pub(crate) fn close(&mut self, cx: &mut Context<'_, ServerMsg>, key: usize) {
        let Some(mut conn) = self.conns.try_remove(key) else {
            return;
        };
        for channel in &conn.channels {
            self.subs.unsubscribe(channel, key);
            self.announce(cx, channel, false, -1, None);
        }
        for pattern in &conn.patterns {
            self.subs.punsubscribe(pattern, key);
            self.announce(cx, pattern, true, -1, None);
        }
        if let Err(error) = cx.registry().deregister(&mut conn.stream) {
            log::debug!("deregister: {error}");
        }
        self.stats.connections[self.core].fetch_sub(1, Ordering::Relaxed);
    }

    /// Sends `msg` to core `target` behind anything already waiting for
    /// that lane, so messages to one core keep their order. It is archived
    /// straight from the bytes it borrows into the lane; only a message that
    /// has to wait is copied (into the backlog).
    pub(crate) fn send_ordered(
        &mut self,
        cx: &mut Context<'_, ServerMsg>,
        target: usize,
        msg: ServerMsgRef<'_>,
    ) {
        if self.backlog[target].is_empty() && sent_now(cx, target, &msg) {
            return;
        }
        let msg = msg.to_msg();
        self.backlog_bytes += backlog_cost(&msg);
        self.backlog[target].push_back(msg);
    }

    /// Sends `msg` to core `target` ahead of the messages waiting for that
    /// lane, behind only those sent ahead before it: for CLIENT LIST's
    /// requests and lines, which wait on a client and depend on no other
    /// message (a connection being handed over waits elsewhere, in
    /// `pending_adopt`), so that a list does not wait for a backlog of
    /// forwards (up to `backlog_limit`, seconds of them on small lanes).
    /// What is already in the lane still goes first.
    pub(crate) fn send_ahead(
        &mut self,
        cx: &mut Context<'_, ServerMsg>,
        target: usize,
        msg: ServerMsgRef<'_>,
    ) {
        if self.ahead[target] == 0 && sent_now(cx, target, &msg) {
            return;
        }
        let msg = msg.to_msg();
        self.backlog_bytes += backlog_cost(&msg);
        self.backlog[target].insert(self.ahead[target], msg);
        self.ahead[target] += 1;
    }

    /// Forwards a PUBLISH to every other core whose subscribers want it;
    /// returns how many subscriptions there it reaches.
    ///
    /// The message is archived into each core's lane straight from the
    /// client's request: while the lanes have room, forwarding allocates
    /// and copies nothing else.
    pub(crate) fn forward(
        &mut self,
        cx: &mut Context<'_, ServerMsg>,
        channel: &[u8],
        payload: &[u8],
    ) -> usize {
        let mut reached = 0;
        let msg = ServerMsgRef::Publish { channel, payload };
        for target in 0..cx.cores() {
            if target == self.core {
                continue;
            }
            let count = self.remote[target].count(channel);
            if count == 0 {
                continue;
            }
            reached += count;
            self.send_ordered(cx, target, msg);
        }
        reached
    }

    /// Tells every other core that this core's subscriptions to `name`
    /// changed by `delta`. With `waiter`, that connection's output is held
    /// until every core has acknowledged, so that once a client sees its
    /// SUBSCRIBE confirmed, a PUBLISH on any core reaches it (and once it
    /// sees an UNSUBSCRIBE confirmed, no PUBLISH counts it).
    pub(crate) fn announce(
        &mut self,
        cx: &mut Context<'_, ServerMsg>,
        name: &[u8],
        pattern: bool,
        delta: i32,
        waiter: Option<usize>,
    ) {
        let waiter_id = match waiter.and_then(|key| self.conns.get_mut(key).map(|c| (key, c))) {
            Some((key, conn)) => {
                conn.held += cx.cores() as u32 - 1;
                (key as u32, conn.id)
            }
            None => (0, 0),
        };
        if cx.cores() == 1 {
            // No other core to tell, and nothing to wait for.
            return;
        }
        let msg = ServerMsgRef::Interest {
            name,
            pattern,
            delta,
            waiter: waiter_id,
        };
        for target in 0..cx.cores() {
            if target != self.core {
                self.send_ordered(cx, target, msg);
            }
        }
    }

    /// Moves waiting forwards into lanes that have room again.
    fn drain_backlog(&mut self, cx: &mut Context<'_, ServerMsg>) -> bool {
        let mut moved = false;
        for target in 0..self.backlog.len() {
            if self.backlog[target].is_empty() || !cx.may_have_room(target) {
                // Nothing consumed there since the last refusal: a retry
                // now would only be refused (and counted) again.
                continue;
            }
            while let Some(msg) = self.backlog[target].front() {
                match cx.send(target, msg) {
                    Ok(()) => {}
                    Err(SendError::Full(_)) => break,
                    Err(error) => log::error!("cannot forward to core {target}: {error}"),
                }
                let cost = backlog_cost(msg);
                self.backlog[target].pop_front();
                self.ahead[target] = self.ahead[target].saturating_sub(1);
                self.backlog_bytes -= cost;
                moved = true;
            }
            // A burst (a million SUBSCRIBEs announced) does not keep its
            // queue's size once it has drained.
            shrink_if_sparse(&mut self.backlog[target]);
        }
        moved
    }

    /// Delivers a message published on `channel` to this core's
    /// subscribers; returns how many received it.
    pub(crate) fn deliver(&mut self, channel: &[u8], payload: &[u8]) -> usize {
        // Written in place, no per-message allocation: subscriptions and
        // connections are separate fields, borrowed apart.
        let limit = self.config.output_limit;
        let mut over_limit = Vec::new();
        let ServeCore {
            subs, conns, dirty, ..
        } = self;
        let direct = subs.direct(channel);
        let mut count = direct.len();
        for &key in direct {
            queue_output(conns, dirty, &mut over_limit, limit, key, |out| {
                reply::array_header(out, 3);
                reply::bulk(out, b"message");
                reply::bulk(out, channel);
                reply::bulk(out, payload);
            });
        }
        // A connection subscribed by two matching patterns gets the message
        // twice and counts twice, as in Redis.
        for (pattern, keys) in subs.matching(channel) {
            count += keys.len();
            for &key in keys {
                queue_output(conns, dirty, &mut over_limit, limit, key, |out| {
                    reply::array_header(out, 4);
                    reply::bulk(out, b"pmessage");
                    reply::bulk(out, pattern);
                    reply::bulk(out, channel);
                    reply::bulk(out, payload);
                });
            }
        }
        for key in over_limit {
            if let Some(conn) = self.conns.get_mut(key) {
                log::info!(
                    "core {}: disconnecting client {}: {} bytes of output unread (limit {})",
                    self.core,
                    conn.id,
                    conn.pending_out(),
                    self.config.output_limit
                );
                // Not closed here: `close` needs the context. Drop its
                // output and close it on the next flush.
                conn.discard_output();
                conn.closing = true;
                conn.stream.shutdown(std::net::Shutdown::Both).ok();
            }
            self.mark_dirty(key);
        }
        count
    }
}

/// Appends one message to connection `key`'s output and queues it for
/// writing; a connection past the output limit, and whose socket will not
/// take enough of it at once to come back under, goes to `over_limit`
/// instead, once, and one already closing gets nothing more.
fn queue_output(
    conns: &mut Slab<Connection>,
    dirty: &mut Vec<usize>,
    over_limit: &mut Vec<usize>,
    limit: usize,
    key: usize,
    write: impl FnOnce(&mut OutputBuffer),
) {
    let conn = &mut conns[key];
    if conn.closing {
        // Its output is final: QUIT, or cut off at the limit.
        return;
    }
    write(&mut conn.out);
    if limit != 0 && conn.pending_out() > limit && conn.held == 0 {
        // One turn can queue more than the limit before the turn's flush
        // writes any of it (a lane's worth of forwards, a read's worth of
        // PUBLISHes): write now, so that only a client that does not read
        // is cut, not one that reads as fast as it can. A write error is
        // left to that flush, which meets it again and closes.
        let _ = conn.write_out();
    }
    if limit != 0 && conn.pending_out() > limit {
        // Closing from here on: a further subscription of the same
        // connection that matches (a pattern as well as the channel) adds
        // nothing to it, and does not list it, and log it, a second time.
        conn.closing = true;
        over_limit.push(key);
    } else if !conn.dirty {
        conn.dirty = true;
        dirty.push(key);
    }
}

impl Handler for ServeCore {
    type Message = ServerMsg;

    fn on_start(&mut self, cx: &mut Context<'_, ServerMsg>) {
        if let Some(listener) = &mut self.listener {
            if let Err(error) = cx
                .registry()
                .register(listener, LISTENER, Interest::READABLE)
            {
                log::error!("cannot poll the listener: {error}");
            }
        } else {
            // Make sure every core polls for the sockets it will adopt.
            let _ = cx.registry();
        }
    }

    fn on_message(
        &mut self,
        cx: &mut Context<'_, ServerMsg>,
        from: usize,
        msg: &Archived<ServerMsg>,
    ) {
        match msg {
            ArchivedServerMsg::Publish { channel, payload } => {
                self.deliver(channel.as_slice(), payload.as_slice());
            }
            ArchivedServerMsg::Adopt { fd } => {
                // SAFETY: core 0 sent this descriptor through this process's
                // own lane right after accepting it, and gave up ownership
                // (`into_raw_fd`) only once the send succeeded; each Adopt
                // frame is read exactly once, so exactly one owner exists.
                let stream = unsafe { std::net::TcpStream::from_raw_fd(fd.to_native()) };
                self.adopt(cx, TcpStream::from_std(stream));
            }
            ArchivedServerMsg::Interest {
                name,
                pattern,
                delta,
                waiter,
            } => {
                self.remote[from].apply(name.as_slice(), *pattern, delta.to_native());
                let (key, id) = (waiter.0.to_native(), waiter.1.to_native());
                if id != 0 {
                    self.send_ordered(cx, from, ServerMsgRef::Ack { waiter: (key, id) });
                }
            }
            ArchivedServerMsg::Ack { waiter } => {
                let (key, id) = (waiter.0.to_native() as usize, waiter.1.to_native());
                let released = match self.conns.get_mut(key) {
                    Some(conn) if conn.id == id => {
                        conn.held = conn.held.saturating_sub(1);
                        conn.held == 0
                    }
                    // The connection closed meanwhile.
                    _ => false,
                };
                if released {
                    self.mark_dirty(key);
                }
            }
            ArchivedServerMsg::ListClients { waiter, filter } => {
                let waiter = (waiter.0.to_native(), waiter.1.to_native());
                self.send_client_lines(cx, from, waiter, filter);
            }
            ArchivedServerMsg::ClientLines {
                waiter,
                lines,
                last,
            } => {
                let waiter = (waiter.0.to_native() as usize, waiter.1.to_native());
                self.client_lines_received(cx, from, waiter, lines.as_slice(), *last);
            }
        }
    }

    fn on_timer(&mut self, cx: &mut Context<'_, ServerMsg>, timer: u64) {
        if timer == super::journal::SYNC_TIMER {
            if let Some(journal) = &mut self.journal {
                journal.on_sync_timer(cx);
            }
        } else if timer == ACCEPT_RETRY {
            self.accept_retry = false;
            self.accept(cx);
        }
    }

    fn on_io(&mut self, cx: &mut Context<'_, ServerMsg>, event: &mio::event::Event) {
        if event.token() == LISTENER {
            self.accept(cx);
            return;
        }
        let key = event.token().0;
        if event.is_writable() {
            self.write_to(cx, key);
        }
        if event.is_readable() || event.is_read_closed() || event.is_error() {
            self.read_from(cx, key);
        }
    }

    fn on_turn(&mut self, cx: &mut Context<'_, ServerMsg>) -> bool {
        // Levels for the core's published metrics (two plain stores).
        cx.set_connections(self.conns.len() as u64);
        cx.set_backlog(self.backlog_bytes as u64);
        let mut work = self.drain_backlog(cx);
        if !self.pending_adopt.is_empty() {
            work |= self.hand_over(cx);
        }
        if !self.unread.is_empty() && !self.backpressured() {
            // Swapped with a spare list, not taken: both keep their
            // capacity, so a busy turn allocates nothing.
            let mut unread = std::mem::replace(&mut self.unread, std::mem::take(&mut self.spare));
            for key in unread.drain(..) {
                if let Some(conn) = self.conns.get_mut(key) {
                    conn.unread = false;
                    if !conn.input.is_empty() {
                        self.execute_input(cx, key);
                    }
                    self.read_from(cx, key);
                    work = true;
                }
            }
            self.spare = unread;
        }
        if !self.dirty.is_empty() {
            let mut dirty = std::mem::replace(&mut self.dirty, std::mem::take(&mut self.spare));
            for key in dirty.drain(..) {
                self.write_to(cx, key);
                work = true;
            }
            self.spare = dirty;
        }
        // After the writes: what is published is what stays held.
        self.publish_output();
        // A core with forwards or sockets waiting for room in a lane may
        // park: the runtime wakes it when that lane's consumer frees space.
        work
    }

    fn on_stop(&mut self, cx: &mut Context<'_, ServerMsg>) {
        if let Some(mut listener) = self.listener.take() {
            let _ = cx.registry().deregister(&mut listener);
        }
        // Sockets accepted and still waiting for room in a lane are closed
        // now and reported. Handed over later, they could land in the lane
        // of a core that has already exited, and their descriptors would
        // never be closed: the clients would wait on an open connection.
        cx.abandon("accepted connection", self.pending_adopt.len() as u64);
        self.pending_adopt.clear();
        let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
        for key in keys {
            if let Some(conn) = self.conns.get_mut(key) {
                // Best effort: what the socket takes now is sent.
                let _ = conn.write_out();
            }
            self.close(cx, key);
        }
    }

    fn on_exit(&mut self, cx: &mut Context<'_, ServerMsg>) {
        // Whatever is still queued for full lanes (the receiving cores have
        // stopped reading) is reported, not silently dropped.
        for queue in &self.backlog {
            for msg in queue {
                cx.abandon(msg.kind_name(), 1);
            }
        }
    }
}

/// Tries to send `msg` to core `target` at once: `true` if it is done with
/// (sent, or refused for a reason waiting cannot mend, which is logged),
/// `false` if the lane is full and the message must wait.
fn sent_now(cx: &mut Context<'_, ServerMsg>, target: usize, msg: &ServerMsgRef<'_>) -> bool {
    match cx.send(target, msg) {
        Ok(()) => true,
        Err(SendError::Full(_)) => false,
        Err(error) => {
            // Sizes are checked before sending; this is a bug.
            log::error!("cannot send to core {target}: {error}");
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::Pool;
    use crate::runtime::{ManualRuntime, VirtualClock};

    /// Shared counters for `cores` cores.
    fn stats(cores: usize) -> Arc<ServerStats> {
        Arc::new(ServerStats {
            connections: (0..cores).map(|_| AtomicU64::new(0)).collect(),
            commands: (0..cores).map(|_| AtomicU64::new(0)).collect(),
            accepted: AtomicU64::new(0),
            output: (0..cores).map(|_| PublishedOutput::default()).collect(),
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            started: std::time::Instant::now(),
        })
    }

    /// Two server cores turned by the test, core 0 with `listener`: core 0
    /// is told that core 1 has a subscriber to `channel`.
    fn two_cores(
        config: ServerConfig,
        channel: &[u8],
        listener: Option<TcpListener>,
    ) -> ManualRuntime<ServeCore> {
        let runtime = Runtime::builder()
            .cores(2)
            .pin(false)
            .lane_capacity(config.lane_capacity)
            .time_source(TimeSource::Virtual(VirtualClock::new()))
            .build()
            .unwrap();
        let stats = stats(2);
        let config = Arc::new(config);
        let mut listener = listener;
        let mut runtime = runtime
            .start_manual(|core| {
                let listener = if core == 0 { listener.take() } else { None };
                ServeCore::new(core, Arc::clone(&config), Arc::clone(&stats), listener)
            })
            .unwrap();
        runtime.with_context(0, |core, _| core.remote[1].apply(channel, false, 1));
        runtime
    }

    /// Forwards waiting for a full lane are retried once per time the
    /// receiver makes progress, not on every turn of the sender: the
    /// `refused` count is of refusals, not of turns.
    #[test]
    fn waiting_forwards_are_not_retried_while_the_receiver_stands_still() {
        let config = ServerConfig {
            lane_capacity: 1024,
            ..ServerConfig::default()
        };
        let mut runtime = two_cores(config, b"c", None);
        let forwarded = runtime.with_context(0, |core, cx| {
            for _ in 0..200 {
                assert_eq!(core.forward(cx, b"c", b"payload"), 1);
            }
            200
        });
        assert!(!runtime.handler(0).backlog[1].is_empty());
        let refused = |runtime: &mut ManualRuntime<ServeCore>| {
            runtime.with_context(0, |_, cx| cx.metrics().cores[0].counters.refused)
        };
        // Core 1 stands still: turns of core 0 refuse nothing more.
        let before = refused(&mut runtime);
        assert_eq!(before, 1, "the forward that started the backlog");
        for _ in 0..100 {
            runtime.turn_core(0);
        }
        assert_eq!(refused(&mut runtime), before);

        // Once it moves, the backlog drains, all of it delivered.
        runtime.run_until_idle(100_000);
        assert!(runtime.handler(0).backlog[1].is_empty());
        let report = runtime.shutdown().unwrap();
        assert_eq!(report.totals.delivered, forwarded);
        assert!(report.totals.refused < 100, "{}", report.totals.refused);
    }

    /// Empty PUBLISHes hold almost no bytes, but each waiting forward
    /// takes its own slot: the core pushes back once what the backlog
    /// takes passes the limit, not after a hundred times as many, and
    /// gives the queue's memory back once it has drained.
    #[test]
    fn the_backlog_limit_counts_what_waiting_forwards_take() {
        const LIMIT: usize = 64 * 1024;
        let config = ServerConfig {
            lane_capacity: 1024,
            backlog_limit: LIMIT,
            ..ServerConfig::default()
        };
        let mut runtime = two_cores(config, b"c", None);

        // Core 1 does not turn: the lane fills, then the backlog.
        let forwarded = runtime.with_context(0, |core, cx| {
            let mut forwarded = 0;
            while !core.backpressured() {
                assert_eq!(core.forward(cx, b"c", b""), 1);
                forwarded += 1;
            }
            forwarded
        });
        let waiting = runtime.handler(0).backlog[1].len();
        assert!(
            waiting > 0 && waiting < forwarded,
            "{waiting} of {forwarded}"
        );
        let slot = std::mem::size_of::<ServerMsg>();
        assert!(
            waiting <= LIMIT / slot + 1,
            "{waiting} forwards of {slot} bytes each wait under a {LIMIT}-byte limit"
        );

        runtime.run_until_idle(100_000);
        let core = runtime.handler(0);
        assert!(core.backlog[1].is_empty());
        assert_eq!(core.backlog_bytes, 0);
        // The burst's queue was given back once drained (`shrink_if_sparse`).
        assert!(
            core.backlog[1].capacity() <= 64,
            "{}",
            core.backlog[1].capacity()
        );
        assert_eq!(
            runtime.shutdown().unwrap().totals.delivered,
            forwarded as u64
        );
    }

    /// A CLIENT LIST asked while forwards wait for a full lane is
    /// answered before they have all gone: its request, and the other
    /// core's lines, go ahead of the backlog. Before, the request waited
    /// behind every forward queued ahead of it (up to `backlog_limit`,
    /// 16 MB by default: seconds on 1 KiB lanes).
    #[test]
    fn a_client_list_goes_ahead_of_waiting_forwards() {
        let config = ServerConfig {
            lane_capacity: 1024,
            ..ServerConfig::default()
        };
        let mut runtime = two_cores(config, b"c", None);
        let forwarded = runtime.with_context(0, |core, cx| {
            for _ in 0..500 {
                assert_eq!(core.forward(cx, b"c", b"payload"), 1);
            }
            500
        });
        let waiting = runtime.handler(0).backlog[1].len();
        assert!(waiting > 400, "{waiting} forwards wait");

        // A client on core 0 asks for the list.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (socket, _) = listener.accept().unwrap();
        socket.set_nonblocking(true).unwrap();
        let key = runtime.with_context(0, |core, cx| {
            let out = OutputBuffer::new(OutputPool::new(cx.pool().lender()));
            let parser = RequestParser::new(Limits::default());
            let conn = Connection::new(TcpStream::from_std(socket), 1, parser, out);
            let key = core.conns.insert(conn);
            let mut parser = RequestParser::new(Limits::default());
            let request = parser.parse(b"CLIENT LIST\r\n").unwrap().unwrap();
            core.list_clients(cx, key, &request);
            key
        });
        assert!(runtime.handler(0).conns[key].listing.is_some());
        assert!(matches!(
            runtime.handler(0).backlog[1].front(),
            Some(ServerMsg::ListClients { .. })
        ));

        // Each round, core 1 drains its lane and core 0 refills it.
        let mut rounds = 0;
        while runtime.handler(0).conns[key].listing.is_some() {
            rounds += 1;
            assert!(rounds < 1000, "the list is never answered");
            runtime.turn_core(1);
            runtime.turn_core(0);
        }
        let left = runtime.handler(0).backlog[1].len();
        assert!(
            left > waiting / 2,
            "answered with {left} of {waiting} forwards left"
        );
        assert_eq!(runtime.handler(0).ahead, [0, 0]);

        client
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let mut reply = [0; 64];
        let read = std::io::Read::read(&mut client, &mut reply).unwrap();
        let reply = String::from_utf8_lossy(&reply[..read]);
        assert!(
            reply.starts_with('$') && reply.contains("\r\nid=1 "),
            "{reply}"
        );

        runtime.run_until_idle(100_000);
        assert!(runtime.handler(0).backlog[1].is_empty());
        let report = runtime.shutdown().unwrap();
        // The forwards, the request and the one piece of lines.
        assert_eq!(report.totals.delivered, forwarded + 2);
        assert!(report.adds_up(), "{report}");
    }

    /// A connection accepted while the lane to its core is full waits on
    /// core 0; when the server stops, it is closed at once and reported,
    /// never handed to a core that may have exited.
    #[test]
    fn connections_waiting_for_their_core_are_closed_when_the_server_stops() {
        use std::io::Read;

        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
        let addr = listener.local_addr().unwrap();
        let config = ServerConfig {
            lane_capacity: 1024,
            ..ServerConfig::default()
        };
        let mut runtime = two_cores(config, b"c", Some(listener));
        // Core 1 does not turn: fill the lane to it.
        runtime.with_context(0, |core, cx| {
            while core.backlog[1].is_empty() {
                core.forward(cx, b"c", b"filler");
            }
        });

        // The first client stays on core 0, the second waits for core 1.
        let _first = std::net::TcpStream::connect(addr).unwrap();
        let mut second = std::net::TcpStream::connect(addr).unwrap();
        while runtime.handler(0).pending_adopt.is_empty() {
            runtime.turn_core(0);
        }
        assert_eq!(runtime.handler(0).conns.len(), 1);

        runtime.handle().stop();
        runtime.turn_core(0);
        assert!(runtime.handler(0).pending_adopt.is_empty());
        // Closed: the client reads the end of the stream (the timeout only
        // keeps a failure from hanging the test).
        second
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut byte = [0u8; 1];
        assert_eq!(second.read(&mut byte).unwrap(), 0);

        let report = runtime.shutdown().unwrap();
        let waiting = report
            .abandoned
            .iter()
            .find(|entry| entry.name == "accepted connection");
        assert_eq!(waiting.map(|entry| entry.count), Some(1), "{report}");
    }

    /// Log records, kept for tests that check what the server logs.
    static LOGGED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

    struct Recorder;

    impl log::Log for Recorder {
        fn enabled(&self, _: &log::Metadata<'_>) -> bool {
            true
        }

        fn log(&self, record: &log::Record<'_>) {
            if let Ok(mut logged) = LOGGED.lock() {
                logged.push(record.args().to_string());
            }
        }

        fn flush(&self) {}
    }

    /// Starts keeping log records (once per test process).
    fn record_logs() {
        static RECORDER: Recorder = Recorder;
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            log::set_logger(&RECORDER).expect("no other logger in unit tests");
            log::set_max_level(log::LevelFilter::Info);
        });
    }

    /// Writes to a non-blocking socket until the kernel takes no more, as
    /// a client that never reads leaves it.
    fn fill(socket: &mut std::net::TcpStream) {
        use std::io::Write;
        let block = [0u8; 64 * 1024];
        loop {
            match socket.write(&block) {
                Ok(_) => {}
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return,
                Err(error) => panic!("filling the socket: {error}"),
            }
        }
    }

    /// A subscriber that does not read, reached by one message twice over
    /// (its channel and a pattern), that passes the output limit is
    /// disconnected once: one
    /// log line with the bytes it left unread, not a second saying 0.
    #[test]
    fn a_subscriber_over_the_output_limit_is_disconnected_once() {
        const CLIENT: u64 = 0x5eed_0001;
        record_logs();
        let config = ServerConfig {
            output_limit: 1000,
            ..ServerConfig::default()
        };
        let mut core = ServeCore::new(0, Arc::new(config), stats(1), None);

        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let _client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut socket, _) = listener.accept().unwrap();
        socket.set_nonblocking(true).unwrap();
        fill(&mut socket);
        let pool = Pool::new(&PoolConfig::default());
        let out = OutputBuffer::new(OutputPool::new(pool.lender()));
        let parser = RequestParser::new(Limits::default());
        let conn = Connection::new(TcpStream::from_std(socket), CLIENT, parser, out);
        let key = core.conns.insert(conn);
        core.subs.subscribe(b"news", key);
        core.subs.psubscribe(b"n*", key);

        assert_eq!(core.deliver(b"news", &[b'x'; 2000]), 2);
        assert!(core.conns[key].closing);
        assert_eq!(core.conns[key].pending_out(), 0);
        assert_eq!(core.dirty, [key]);
        let mention = format!("client {CLIENT}:");
        let logged: Vec<String> = LOGGED
            .lock()
            .unwrap()
            .iter()
            .filter(|line| line.contains(&mention))
            .cloned()
            .collect();
        assert_eq!(logged.len(), 1, "{logged:?}");
        assert!(logged[0].contains("bytes of output unread"), "{logged:?}");
        assert!(!logged[0].contains(": 0 bytes"), "{logged:?}");
    }

    /// Messages queued in one turn past the output limit, for a subscriber
    /// whose socket has room for them, are written rather than cut off:
    /// the limit is for clients that do not read, and one turn can queue
    /// a lane's worth of forwards before the turn's flush.
    #[test]
    fn a_subscriber_whose_socket_takes_the_output_is_not_cut_off() {
        const MESSAGES: usize = 16;
        const PAYLOAD: usize = 1000;
        let config = ServerConfig {
            output_limit: 4 * PAYLOAD,
            ..ServerConfig::default()
        };
        let mut core = ServeCore::new(0, Arc::new(config), stats(1), None);

        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (socket, _) = listener.accept().unwrap();
        socket.set_nonblocking(true).unwrap();
        let pool = Pool::new(&PoolConfig::default());
        let out = OutputBuffer::new(OutputPool::new(pool.lender()));
        let parser = RequestParser::new(Limits::default());
        let conn = Connection::new(TcpStream::from_std(socket), 1, parser, out);
        let key = core.conns.insert(conn);
        core.subs.subscribe(b"news", key);

        for _ in 0..MESSAGES {
            assert_eq!(core.deliver(b"news", &[b'x'; PAYLOAD]), 1);
        }
        assert!(!core.conns[key].closing);
        let pending = core.conns[key].pending_out();
        assert!(pending <= 4 * PAYLOAD, "{pending} bytes left unwritten");

        // What was written, and what the flush writes, is every message.
        core.conns[key].write_out().unwrap();
        drop(core);
        let mut received = Vec::new();
        std::io::Read::read_to_end(&mut client, &mut received).unwrap();
        let one = format!("*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n${PAYLOAD}\r\n");
        let one = [one.as_bytes(), &[b'x'; PAYLOAD], b"\r\n"].concat();
        assert_eq!(received, one.repeat(MESSAGES));
    }
}
