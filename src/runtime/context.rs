//! What a handler sees of its core: sending to other cores, its sockets,
//! and the runtime's stop switch.

use std::fmt;
use std::marker::PhantomData;

use rkyv::ser::allocator::Arena;

use super::doorbell::{fence_after_publish, Doorbell};
use super::report::{tally, Undelivered};
use super::Shared;
use crate::clock;
use crate::frame::Message;
use crate::lane::frames::{ClaimError, FrameProducer, WriteError};
use crate::lane::HeapRegion;
use crate::metrics::{Recorder, Snapshot};

/// Why a message was not sent. Every variant hands the message back.
pub enum SendError<T> {
    /// The lane to that core is full now; retry later.
    Full(T),
    /// The message is larger than a lane frame can ever carry.
    TooLarge {
        /// The message.
        msg: T,
        /// Its archived size.
        payload_len: usize,
        /// The largest payload a lane takes.
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
                "message of {payload_len} bytes can never fit a lane (largest is {max_payload})"
            ),
            SendError::NoSuchCore(_, core) => write!(f, "no core {core}"),
            SendError::Encode(_, reason) => write!(f, "cannot serialize message: {reason}"),
        }
    }
}

impl<T> std::error::Error for SendError<T> {}

/// A core's sending side: one producer per destination core (itself
/// included), the serializer's scratch arena, and who needs waking.
pub(crate) struct Outbox {
    pub(crate) lanes: Vec<FrameProducer<HeapRegion>>,
    arena: Arena,
    /// Destinations written to since the last `ring_doorbells`.
    pending_wake: Vec<bool>,
    any_pending: bool,
    /// Destinations whose lane refused the last send: before parking, the
    /// core asks their consumers to wake it when they free space.
    pub(crate) blocked: Vec<bool>,
    /// What the handler said it held and never sent (see `abandon`).
    pub(crate) abandoned: Vec<Undelivered>,
}

impl Outbox {
    pub(crate) fn new(lanes: Vec<FrameProducer<HeapRegion>>) -> Self {
        let cores = lanes.len();
        Outbox {
            lanes,
            arena: Arena::new(),
            pending_wake: vec![false; cores],
            any_pending: false,
            blocked: vec![false; cores],
            abandoned: Vec::new(),
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

    /// Serializes `msg` into the lane to core `to` (this core included),
    /// stamped with the current time. Its receiver reads it in place.
    ///
    /// # Errors
    ///
    /// Hands `msg` back in every case: [`SendError::Full`] if the lane has
    /// no room now (counted as refused), [`SendError::TooLarge`] if it never
    /// will, [`SendError::NoSuchCore`], [`SendError::Encode`].
    pub fn send<'m>(&mut self, to: usize, msg: &'m M) -> Result<(), SendError<&'m M>> {
        let Some(lane) = self.outbox.lanes.get_mut(to) else {
            return Err(SendError::NoSuchCore(msg, to));
        };
        match lane.write_message(msg, clock::now_ns(), &mut self.outbox.arena) {
            Ok(()) => {
                self.outbox.blocked[to] = false;
                self.recorder.local.counters.sent += 1;
                if to != self.core {
                    self.outbox.pending_wake[to] = true;
                    self.outbox.any_pending = true;
                }
                Ok(())
            }
            Err(WriteError::Claim(ClaimError::Full)) => {
                self.outbox.blocked[to] = true;
                self.recorder.local.counters.refused += 1;
                Err(SendError::Full(msg))
            }
            Err(WriteError::Claim(ClaimError::TooLarge {
                payload_len,
                max_payload,
            })) => Err(SendError::TooLarge {
                msg,
                payload_len,
                max_payload,
            }),
            Err(WriteError::Encode(error)) => Err(SendError::Encode(msg, error.to_string())),
        }
    }

    /// Largest archived message a lane can carry.
    pub fn max_payload(&self) -> usize {
        self.outbox.lanes[self.core].max_payload()
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
