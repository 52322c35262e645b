//! What a handler sees of its core: sending to other cores (at a priority,
//! by key, or after a delay: see `priority`, `routing`, `timers`), its
//! timers, its sockets, and the runtime's stop switch.

use std::fmt;
use std::marker::PhantomData;

use rkyv::ser::allocator::Arena;

use super::backpressure::Flow;
use super::doorbell::{fence_after_publish, Doorbell};
use super::held::HeldFrame;
use super::large;
use super::priority::Priority;
use super::report::{tally, Undelivered};
use super::timers::Timers;
use super::Shared;
use crate::clock;
use crate::frame::{Encodes, Message};
use crate::lane::frames::{ClaimError, FrameProducer, WriteError};
use crate::lane::HeapRegion;
use crate::metrics::{Recorder, Snapshot};
use crate::pool::Pool;

/// Why a message was not sent. Every variant hands the message back.
pub enum SendError<T> {
    /// The lane to that core is full now, or the core's in-flight bound is
    /// reached, and the backpressure policy does not hold the message;
    /// retry later.
    Full(T),
    /// The message is larger than the runtime sends at all
    /// ([`Builder::max_message`](crate::runtime::Builder::max_message)).
    /// A message merely too large for a lane frame is not refused: it
    /// travels in a pooled buffer.
    TooLarge {
        /// The message.
        msg: T,
        /// Its archived size.
        payload_len: usize,
        /// The largest archived message the runtime sends
        /// ([`Context::max_message`]).
        max_payload: usize,
    },
    /// There is no core with that index.
    NoSuchCore(T, usize),
    /// rkyv could not serialize the message.
    Encode(T, String),
}

impl<T> SendError<T> {
    /// Takes the message back.
    pub fn into_inner(self) -> T {
        match self {
            SendError::Full(msg)
            | SendError::TooLarge { msg, .. }
            | SendError::NoSuchCore(msg, _)
            | SendError::Encode(msg, _) => msg,
        }
    }
}

impl<T> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl<T> fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Full(_) => f.write_str("lane is full"),
            SendError::TooLarge {
                payload_len,
                max_payload,
                ..
            } => write!(
                f,
                "message of {payload_len} bytes is larger than the runtime sends (largest is \
                 {max_payload}, Builder::max_message)"
            ),
            SendError::NoSuchCore(_, core) => write!(f, "no core {core}"),
            SendError::Encode(_, reason) => write!(f, "cannot serialize message: {reason}"),
        }
    }
}

impl<T> std::error::Error for SendError<T> {}

/// Bits of [`Outbox::blocked`]: why sends to a destination were refused.
pub(crate) const BLOCKED_NORMAL: u8 = 1;
/// The high-priority lane was full.
pub(crate) const BLOCKED_HIGH: u8 = 2;
/// The in-flight bound was reached.
pub(crate) const BLOCKED_BOUND: u8 = 4;

/// The `blocked` bit for a lane of `priority`.
pub(crate) fn blocked_bit(priority: Priority) -> u8 {
    match priority {
        Priority::Normal => BLOCKED_NORMAL,
        Priority::High => BLOCKED_HIGH,
    }
}

/// A core's sending side: two producers per destination core (itself
/// included), one per priority, the serializer's scratch arena, the
/// backpressure accounting, and who needs waking.
pub(crate) struct Outbox {
    pub(crate) lanes: Vec<FrameProducer<HeapRegion>>,
    /// The high-priority lane to each destination.
    pub(crate) high: Vec<FrameProducer<HeapRegion>>,
    pub(crate) arena: Arena,
    /// Destinations written to since the last `ring_doorbells`.
    pending_wake: Vec<bool>,
    any_pending: bool,
    /// Per destination, why the last sends to it were refused (the
    /// `BLOCKED_*` bits): before parking, the core asks their consumers to
    /// wake it when they free space.
    pub(crate) blocked: Vec<u8>,
    /// In-flight bound and overflow queues.
    pub(crate) flow: Flow,
    /// What the handler said it held and never sent (see `abandon`).
    pub(crate) abandoned: Vec<Undelivered>,
    /// The core's buffer pool: messages too large for a lane, socket
    /// buffers (see `large.rs`).
    pub(crate) pool: Pool,
    /// Largest archived message `send` accepts.
    pub(crate) max_message: usize,
}

impl Outbox {
    /// Whether a lane to `to` that refused a send (its `blocked` bit set)
    /// has had frames consumed since: its consumer's head moved.
    pub(crate) fn refused_lane_moved(&self, to: usize) -> bool {
        let blocked = self.blocked[to];
        (blocked & BLOCKED_NORMAL != 0 && self.lanes[to].consumer_moved())
            || (blocked & BLOCKED_HIGH != 0 && self.high[to].consumer_moved())
    }

    pub(crate) fn new(
        lanes: Vec<FrameProducer<HeapRegion>>,
        high: Vec<FrameProducer<HeapRegion>>,
        flow: Flow,
        pool: Pool,
        max_message: usize,
    ) -> Self {
        let cores = lanes.len();
        Outbox {
            pool,
            max_message,
            lanes,
            high,
            arena: Arena::new(),
            pending_wake: vec![false; cores],
            any_pending: false,
            blocked: vec![0; cores],
            flow,
            abandoned: Vec::new(),
        }
    }

    /// The lanes of `priority`, by destination.
    #[inline]
    pub(crate) fn lanes_for(&mut self, priority: Priority) -> &mut [FrameProducer<HeapRegion>] {
        match priority {
            Priority::Normal => &mut self.lanes,
            Priority::High => &mut self.high,
        }
    }

    /// Accounts for a message written into a lane to `to` by core `core`.
    #[inline]
    pub(crate) fn wrote(&mut self, core: usize, to: usize, priority: Priority, sent: &mut u64) {
        self.blocked[to] &= !blocked_bit(priority);
        self.flow.written[to] += 1;
        *sent += 1;
        if to != core {
            self.pending_wake[to] = true;
            self.any_pending = true;
        }
    }

    /// Wakes every destination written to since the last call that has
    /// announced it is parking: one fence for the whole batch.
    pub(crate) fn ring_doorbells(&mut self, doorbells: &[Doorbell]) {
        if !self.any_pending {
            return;
        }
        fence_after_publish();
        for (pending, doorbell) in self.pending_wake.iter_mut().zip(doorbells) {
            if std::mem::take(pending) {
                doorbell.ring_if_sleeping();
            }
        }
        self.any_pending = false;
    }
}

/// A handler's view of its core, lent for the duration of one callback.
pub struct Context<'c, M> {
    pub(crate) core: usize,
    pub(crate) outbox: &'c mut Outbox,
    pub(crate) recorder: &'c mut Recorder,
    pub(crate) registry: &'c mio::Registry,
    pub(crate) uses_io: &'c mut bool,
    pub(crate) timers: &'c mut Timers,
    pub(crate) shared: &'c Shared,
    pub(crate) _message: PhantomData<fn(M)>,
}

impl<M: Message> Context<'_, M> {
    /// This core's index, `0..cores()`.
    pub fn core(&self) -> usize {
        self.core
    }

    /// Number of cores in the runtime.
    pub fn cores(&self) -> usize {
        self.outbox.lanes.len()
    }

    /// Serializes `msg` into the normal lane to core `to` (this core
    /// included), stamped with the current time. Its receiver reads it in
    /// place. A message larger than a lane frame
    /// ([`max_payload`](Self::max_payload)) is serialized into a buffer from
    /// this core's pool instead, and only its handle goes through the lane;
    /// the buffer comes back to the pool once the receiver's `on_message`
    /// returns. The same as [`send_with`](Self::send_with) at
    /// [`Priority::Normal`].
    ///
    /// `msg` is an `M`, or any value whose archive is an `M`'s
    /// ([`Encodes`]): a view of an `M` made of borrowed bytes is archived
    /// into the lane straight from them, and read at the other end as an
    /// `M`.
    ///
    /// # Errors
    ///
    /// Hands `msg` back in every case: [`SendError::Full`] if the lane (or
    /// the destination's in-flight bound) has no room now and the
    /// backpressure policy does not hold it (counted as refused),
    /// [`SendError::TooLarge`] if it is over
    /// [`max_message`](Self::max_message), [`SendError::NoSuchCore`],
    /// [`SendError::Encode`].
    pub fn send<'m, T: Encodes<M>>(
        &mut self,
        to: usize,
        msg: &'m T,
    ) -> Result<(), SendError<&'m T>> {
        self.send_with(to, msg, Priority::Normal)
    }

    /// Sends `msg` to core `to` in the lane of `priority`: high-priority
    /// lanes are drained first (see [`Priority`]).
    ///
    /// When the destination has no room (its lane is full, or the
    /// builder's `max_in_flight` is reached), the builder's
    /// [`Backpressure`](crate::runtime::Backpressure) policy decides: refuse
    /// and hand the message back, or hold it in a bounded overflow queue
    /// that the core sends on, in order, as room appears.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send).
    pub fn send_with<'m, T: Encodes<M>>(
        &mut self,
        to: usize,
        msg: &'m T,
        priority: Priority,
    ) -> Result<(), SendError<&'m T>> {
        if to >= self.cores() {
            return Err(SendError::NoSuchCore(msg, to));
        }
        let (core, shared) = (self.core, self.shared);
        let outbox = &mut *self.outbox;
        let counters = &mut self.recorder.local.counters;
        let now = clock::now_ns();

        // Messages already queued for `to` go first, to keep order.
        let queued = !outbox.flow.overflow[to].is_empty();
        if !queued {
            if outbox.flow.admits(to, || shared.consumed(core, to)) {
                let lane = match priority {
                    Priority::Normal => &mut outbox.lanes[to],
                    Priority::High => &mut outbox.high[to],
                };
                let written = match lane.write_as::<M, T>(msg, now, &mut outbox.arena) {
                    // Too large for a frame: a pooled buffer carries it
                    // instead, and only its handle goes through the lane.
                    Err(WriteError::Claim(ClaimError::TooLarge { payload_len, .. })) => {
                        large::write_pooled::<M, T>(
                            lane,
                            &outbox.pool,
                            &mut outbox.arena,
                            msg,
                            payload_len,
                            outbox.max_message,
                        )
                    }
                    written => written,
                };
                match written {
                    Ok(()) => {
                        outbox.wrote(core, to, priority, &mut counters.sent);
                        return Ok(());
                    }
                    Err(WriteError::Claim(ClaimError::Full)) => {
                        outbox.blocked[to] |= blocked_bit(priority);
                    }
                    Err(WriteError::Claim(ClaimError::TooLarge {
                        payload_len,
                        max_payload,
                    })) => {
                        return Err(SendError::TooLarge {
                            msg,
                            payload_len,
                            max_payload,
                        })
                    }
                    Err(WriteError::Encode(error)) => {
                        return Err(SendError::Encode(msg, error.to_string()))
                    }
                }
            } else {
                outbox.blocked[to] |= BLOCKED_BOUND;
            }
        }

        // No room now: hold it if the policy and the queue allow.
        if !outbox.flow.overflow_has_room(to) {
            counters.refused += 1;
            return Err(SendError::Full(msg));
        }
        let held = HeldFrame::encode::<M, T>(msg, to, priority, now, &mut outbox.arena)
            .map_err(|reason| SendError::Encode(msg, reason))?;
        let max_payload = outbox.lanes_for(priority)[to].max_payload();
        // Too large for a frame: held in a pooled buffer, sent by handle.
        let held = held
            .fit(max_payload, outbox.max_message, &outbox.pool)
            .map_err(|(payload_len, max_payload)| SendError::TooLarge {
                msg,
                payload_len,
                max_payload,
            })?;
        outbox.flow.overflow[to].push_back(held);
        outbox.flow.overflowing = true;
        counters.overflowed += 1;
        Ok(())
    }

    /// Whether a send to core `to` may find room now: `false` only while
    /// the last send refused there (its lane full, or its in-flight bound
    /// reached) has seen nothing consumed since, so that a retry would be
    /// refused again. One load of the destination's progress; nothing is
    /// counted.
    ///
    /// For a handler that keeps refused messages itself and retries them
    /// each turn: asking first keeps the retries (and the `refused` count)
    /// to one per time the destination makes progress. A destination that
    /// refused has frames waiting, so it makes progress as long as its core
    /// runs.
    pub fn may_have_room(&self, to: usize) -> bool {
        let Some(&blocked) = self.outbox.blocked.get(to) else {
            // No such core: the send says so.
            return true;
        };
        blocked == 0
            || self.outbox.refused_lane_moved(to)
            || (blocked & BLOCKED_BOUND != 0
                && self.shared.consumed(self.core, to) != self.outbox.flow.cached_consumed[to])
    }

    /// Largest archived message a normal lane can carry. A high-priority
    /// lane carries at most half of `Builder::high_lane_capacity`, less a
    /// header.
    pub fn max_payload(&self) -> usize {
        self.outbox.lanes[self.core].max_payload()
    }

    /// Largest archived message [`send`](Self::send) accepts at all
    /// ([`Builder::max_message`](crate::runtime::Builder::max_message)).
    pub fn max_message(&self) -> usize {
        self.outbox.max_message
    }

    /// This core's buffer pool (socket buffers, scratch that outlives a
    /// callback). Its buffers may be sent to and dropped on other cores.
    pub fn pool(&self) -> &Pool {
        &self.outbox.pool
    }

    /// The core's mio registry, to register sockets with. Tokens are the
    /// handler's to choose, except `usize::MAX` (the core's waker). A core
    /// that has asked for its registry polls for I/O on every turn.
    pub fn registry(&mut self) -> &mio::Registry {
        *self.uses_io = true;
        self.registry
    }

    /// The metrics every core last published, this core's brought up to
    /// date first. Never waits for another core.
    pub fn metrics(&mut self) -> Snapshot {
        self.recorder.flush(clock::now_ns());
        self.shared.snapshot()
    }

    /// Reports the bytes the handler holds queued for other cores (its own
    /// backlog, beyond the lanes); published with the core's metrics as
    /// [`Gauges::handler_backlog_bytes`](crate::metrics::Gauges).
    pub fn set_backlog(&mut self, bytes: u64) {
        self.recorder.local.gauges.handler_backlog_bytes = bytes;
    }

    /// Reports the number of connections this core owns; published with
    /// the core's metrics as [`Gauges::connections`](crate::metrics::Gauges).
    pub fn set_connections(&mut self, connections: u64) {
        self.recorder.local.gauges.connections = connections;
    }

    /// Counts `requests` more served by this core's handler (a server's
    /// commands, say); published with the core's metrics as
    /// [`Counters::requests`](crate::metrics::Counters::requests), so that
    /// `corelane stat` and the exports show work that arrives on sockets
    /// rather than lanes. One add to a core-local counter.
    pub fn count_requests(&mut self, requests: u64) {
        self.recorder.local.counters.requests += requests;
    }

    /// Reports `count` messages of kind `name` that the handler holds and
    /// will never send (typically from [`Handler::on_exit`]); they appear
    /// in [`ShutdownReport::abandoned`](crate::runtime::ShutdownReport).
    ///
    /// [`Handler::on_exit`]: crate::runtime::Handler::on_exit
    pub fn abandon(&mut self, name: &str, count: u64) {
        if count > 0 {
            tally(&mut self.outbox.abandoned, name, count);
        }
    }

    /// Asks every core to stop: see [`crate::runtime::Running::shutdown`].
    pub fn stop_runtime(&self) {
        self.shared.request_stop();
    }

    /// Whether a stop has been requested.
    pub fn is_stopping(&self) -> bool {
        self.shared.stop_requested()
    }
}
