//! One core's event loop.
//!
//! A turn: poll for I/O (zero timeout, only on a core that uses I/O), drain
//! inbound lanes in batches (round-robin, starting one lane further each
//! turn), let the handler do its own work, wake the cores written to, and
//! publish metrics when due. A turn that found nothing to do is idle and
//! the idle strategy decides: spin, yield or park.

use std::marker::PhantomData;
use std::time::Duration;

use mio::{Events, Poll, Token};

use super::context::{Context, Outbox};
use super::doorbell::fence_after_publish;
use super::idle::{IdleAction, Idler};
use super::{Handler, Shared};
use crate::clock;
use crate::frame::envelope::{access_trusted, check_type};
use crate::frame::Message;
use crate::lane::frames::FrameConsumer;
use crate::lane::HeapRegion;
use crate::metrics::Recorder;
use crate::sync::Ordering;

/// A parking core publishes its metrics if it last did longer ago than
/// this (5 ms); otherwise it parks for at most this long, then publishes.
const PARK_PUBLISH_DELAY_NS: u64 = 5_000_000;

/// Longest a core spends in its final drain (100 ms).
const FINAL_DRAIN_NS: u64 = 100_000_000;

/// What a core leaves behind: its inbound lanes (to count what is left in
/// them) and what its handler reported holding.
pub(crate) struct CoreExit {
    pub(crate) inbound: Vec<FrameConsumer<HeapRegion>>,
    pub(crate) abandoned: Vec<super::Undelivered>,
}

/// Token of the core's waker in its poller.
pub(crate) const WAKER_TOKEN: Token = Token(usize::MAX);

/// Where a core is in the shutdown sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    Running,
    /// `on_stop` has run; waiting for every other core to get here.
    Stopping,
}

/// Everything one core owns.
pub(crate) struct CoreLoop<H: Handler> {
    pub(crate) core: usize,
    pub(crate) handler: H,
    pub(crate) poll: Poll,
    pub(crate) events: Events,
    pub(crate) inbound: Vec<FrameConsumer<HeapRegion>>,
    pub(crate) outbox: Outbox,
    pub(crate) recorder: Recorder,
    pub(crate) idler: Idler,
    pub(crate) shared: std::sync::Arc<Shared>,
    pub(crate) drain_batch: usize,
    pub(crate) uses_io: bool,
    pub(crate) next_lane: usize,
    pub(crate) phase: Phase,
}

/// Runs `$body` with a [`Context`] built from the loop's fields.
macro_rules! with_context {
    ($self:ident, $cx:ident => $body:expr) => {{
        let $cx = &mut Context {
            core: $self.core,
            outbox: &mut $self.outbox,
            recorder: &mut $self.recorder,
            registry: $self.poll.registry(),
            uses_io: &mut $self.uses_io,
            shared: &$self.shared,
            _message: PhantomData,
        };
        $body
    }};
}

impl<H: Handler> CoreLoop<H> {
    /// Runs until the runtime stops; returns the inbound lanes so that what
    /// is left in them can be counted.
    pub(crate) fn run(mut self) -> CoreExit {
        with_context!(self, cx => self.handler.on_start(cx));
        self.ring_doorbells();
        loop {
            let work = self.turn();
            if self.phase == Phase::Running && self.shared.stop_requested() {
                with_context!(self, cx => self.handler.on_stop(cx));
                self.ring_doorbells();
                self.shared.core_stopping();
                self.phase = Phase::Stopping;
                continue;
            }
            if self.phase == Phase::Stopping && self.shared.all_stopping() {
                break;
            }
            if work > 0 {
                self.idler.reset();
                continue;
            }
            match self.idler.next() {
                IdleAction::Spin => std::hint::spin_loop(),
                IdleAction::Yield => std::thread::yield_now(),
                IdleAction::Park => self.park(),
            }
        }
        // Every core has run `on_stop`: deliver what is still in flight,
        // and let handlers move what they queued into lanes. Bounded in
        // time: a handler that always claims work must not hold shutdown.
        let deadline = clock::now_ns() + FINAL_DRAIN_NS;
        loop {
            let drained = self.drain_lanes();
            let worked = self.run_on_turn();
            self.ring_doorbells();
            if (drained == 0 && !worked) || clock::now_ns() > deadline {
                break;
            }
        }
        with_context!(self, cx => self.handler.on_exit(cx));
        self.recorder.flush(clock::now_ns());
        CoreExit {
            inbound: self.inbound,
            abandoned: self.outbox.abandoned,
        }
    }

    /// One turn; returns how much work it found.
    fn turn(&mut self) -> usize {
        let mut work = 0;
        if self.uses_io {
            work += self.poll_io(Some(Duration::ZERO));
        }
        work += self.drain_lanes();
        if self.run_on_turn() {
            work += 1;
        }
        self.ring_doorbells();
        let now = clock::now_ns();
        self.recorder.end_turn(now, work > 0);
        if self.recorder.flush_due(now) {
            self.publish_metrics(now);
        }
        work
    }

    /// Runs the handler's `on_turn`, timed (when it worked) and marked
    /// running for the stall detector.
    fn run_on_turn(&mut self) -> bool {
        let started = clock::now_ns();
        let index = self.recorder.enter_handler("on_turn", started);
        let worked = with_context!(self, cx => self.handler.on_turn(cx));
        if worked {
            self.recorder.leave_handler(index, started, clock::now_ns());
        } else {
            self.recorder.leave_handler_idle();
        }
        worked
    }

    /// Publishes the core's metrics, with the bytes waiting in its lanes.
    fn publish_metrics(&mut self, now_ns: u64) {
        self.recorder.local.gauges.lane_backlog_bytes =
            self.inbound.iter().map(FrameConsumer::backlog_bytes).sum();
        self.recorder.flush(now_ns);
    }

    /// Polls mio and hands each event to the handler; returns the number of
    /// I/O events (the waker's do not count as work).
    fn poll_io(&mut self, timeout: Option<Duration>) -> usize {
        if let Err(error) = self.poll.poll(&mut self.events, timeout) {
            if error.kind() != std::io::ErrorKind::Interrupted {
                log::error!("core {}: poll failed: {error}", self.core);
            }
            return 0;
        }
        let mut work = 0;
        for event in self.events.iter() {
            if event.token() == WAKER_TOKEN {
                continue;
            }
            work += 1;
            let started = clock::now_ns();
            let index = self.recorder.enter_handler("on_io", started);
            with_context!(self, cx => self.handler.on_io(cx, event));
            self.recorder.leave_handler(index, started, clock::now_ns());
        }
        if work > 0 {
            self.ring_doorbells();
        }
        work
    }

    /// Reads up to `drain_batch` frames from each inbound lane; returns how
    /// many it delivered.
    fn drain_lanes(&mut self) -> usize {
        let lanes = self.inbound.len();
        let start = self.next_lane;
        self.next_lane = (start + 1) % lanes;
        let mut delivered = 0;
        for i in 0..lanes {
            let from = (start + i) % lanes;
            delivered += self.drain_lane(from);
        }
        if delivered > 0 {
            self.wake_blocked_senders();
        }
        delivered
    }

    /// Space was freed in inbound lanes: wake the senders parked waiting
    /// for it. One fence for all lanes.
    fn wake_blocked_senders(&self) {
        // Pairs with the fence in the sender's `announce_sleep`, made after
        // it set `room_wanted`: either it sees our new `head`, or we see its
        // flag (see `park`).
        fence_after_publish();
        for from in 0..self.inbound.len() {
            let wanted = self.shared.room_wanted(from, self.core);
            if from != self.core
                && wanted.load(Ordering::Relaxed)
                && wanted.swap(false, Ordering::AcqRel)
            {
                self.shared.doorbells[from].ring_if_sleeping();
            }
        }
    }

    fn drain_lane(&mut self, from: usize) -> usize {
        let CoreLoop {
            core,
            handler,
            poll,
            inbound,
            outbox,
            recorder,
            uses_io,
            shared,
            drain_batch,
            ..
        } = self;
        let cx = &mut Context {
            core: *core,
            outbox,
            recorder,
            registry: poll.registry(),
            uses_io,
            shared,
            _message: PhantomData,
        };
        let mut now = None;
        let drained = inbound[from].drain(*drain_batch, |frame| {
            if let Err(error) = check_type::<H::Message>(&frame.meta) {
                // Lanes carry only the runtime's own message type: this is a
                // bug in corelane, not bad input.
                debug_assert!(false, "core {}: {error}", cx.core);
                log::error!("core {}: dropped frame from core {from}: {error}", cx.core);
                return;
            }
            // SAFETY: lanes are heap memory of this process; every frame in
            // them was written by `Context::send` for `H::Message`, whose
            // type and version were just checked, and the ring lends the
            // payload 32-byte aligned and unchanged until released.
            let msg = unsafe { access_trusted::<H::Message>(frame.payload()) };
            // One clock read per message: a handler's end is the next
            // one's start.
            let started = now.unwrap_or_else(clock::now_ns);
            let kind = H::Message::kind(msg);
            let index = cx
                .recorder
                .enter_message(kind, frame.meta.timestamp_ns, started);
            handler.on_message(cx, from, msg);
            let ended = clock::now_ns();
            cx.recorder.leave_handler(index, started, ended);
            now = Some(ended);
        });
        match drained {
            Ok(count) => count,
            Err(error) => {
                log::error!("core {core}: lane from core {from}: {error}");
                0
            }
        }
    }

    fn ring_doorbells(&mut self) {
        self.outbox.ring_doorbells(&self.shared.doorbells);
    }

    /// Whether a lane that refused a send has been drained since. Called
    /// after `announce_sleep`, whose fence orders the `room_wanted` flags
    /// set here before the loads of `head`.
    fn room_appeared(&mut self) -> bool {
        let mut appeared = false;
        for (to, blocked) in self.outbox.blocked.iter_mut().enumerate() {
            if *blocked && self.outbox.lanes[to].consumer_moved() {
                // The handler retries on the next turn; a new refusal
                // sets the flag again with a fresh view of `head`.
                *blocked = false;
                appeared = true;
            }
        }
        appeared
    }

    /// Parks until a frame, an I/O event or a wake-up arrives; a core with
    /// sends refused by full lanes also wakes when those lanes drain.
    fn park(&mut self) {
        // Publish first, so a reader never waits for a parked core. A
        // publication costs tens of microseconds (histogram merges): a core
        // that parks often publishes at most every PARK_PUBLISH_DELAY_NS
        // and, when it put one off, parks no longer than that.
        let now = clock::now_ns();
        let deferred = self.recorder.flushed_since(now, PARK_PUBLISH_DELAY_NS);
        if !deferred {
            self.publish_metrics(now);
        }
        for (to, &blocked) in self.outbox.blocked.iter().enumerate() {
            if blocked {
                self.shared
                    .room_wanted(self.core, to)
                    .store(true, Ordering::Relaxed);
            }
        }
        self.shared.doorbells[self.core].announce_sleep();
        // The last core to reach `Stopping` wakes the others, so a stopping
        // core may park until then.
        let must_stop = match self.phase {
            Phase::Running => self.shared.stop_requested(),
            Phase::Stopping => self.shared.all_stopping(),
        };
        let has_work =
            must_stop || self.inbound.iter().any(FrameConsumer::has_frame) || self.room_appeared();
        if has_work {
            self.shared.doorbells[self.core].awake();
            return;
        }
        let parked_at = clock::now_ns();
        self.poll_io(deferred.then_some(Duration::from_nanos(PARK_PUBLISH_DELAY_NS)));
        self.shared.doorbells[self.core].awake();
        self.recorder.parked(parked_at, clock::now_ns());
    }
}
