//! One core's event loop.
//!
//! A turn: poll for I/O (zero timeout, only on a core that uses I/O), drain
//! inbound lanes in batches (high-priority lanes first, then the normal
//! ones unless the starvation guard holds them back; round-robin within a
//! priority, starting one lane further each turn), fire the timers that are
//! due, let the handler do its own work, move overflow queues into lanes,
//! wake the cores written to, and publish metrics when due. A turn that
//! found nothing to do is idle and the idle strategy decides: spin, yield
//! or park; a parked core wakes for a frame, an I/O event, room in a lane
//! it waits on, or its next timer.
//!
//! The same loop runs on a pinned thread ([`CoreLoop::run`]) or turn by
//! turn on a host's thread (`manual`).

use std::marker::PhantomData;
use std::time::Duration;

use mio::{Events, Poll, Token};

use super::context::{Context, Outbox, BLOCKED_BOUND};
use super::doorbell::fence_after_publish;
use super::drain_budget::DrainBudget;
use super::idle::{IdleAction, Idler};
use super::priority::{Priority, StarvationGuard};
use super::report::tally;
use super::timers::{TimerAction, Timers};
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
pub(crate) const FINAL_DRAIN_NS: u64 = 100_000_000;

/// What a core leaves behind: its inbound lanes (to count what is left in
/// them), what its handler reported holding, and what the runtime held for
/// it (delayed and overflow messages).
pub(crate) struct CoreExit {
    pub(crate) inbound: Vec<FrameConsumer<HeapRegion>>,
    pub(crate) abandoned: Vec<super::Undelivered>,
    pub(crate) held: Vec<super::Undelivered>,
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

/// What a step of the loop came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// The turn did work (or moved the shutdown on).
    Work(usize),
    /// The turn found nothing to do.
    Idle,
    /// Every core has run `on_stop`: time for the final drain.
    Stopped,
}

/// Everything one core owns.
pub(crate) struct CoreLoop<H: Handler> {
    pub(crate) core: usize,
    pub(crate) handler: H,
    pub(crate) poll: Poll,
    pub(crate) events: Events,
    /// Index in `events` of the first event not yet handed to `on_io`,
    /// while the handler is hearing them; left set if it panicked (and a
    /// host caught it), so that the next poll hands out the rest first:
    /// sockets are polled edge-triggered and would not be reported again.
    pub(crate) unheard: Option<usize>,
    /// Normal lanes from every core, by sender.
    pub(crate) inbound: Vec<FrameConsumer<HeapRegion>>,
    /// High-priority lanes from every core, by sender.
    pub(crate) inbound_high: Vec<FrameConsumer<HeapRegion>>,
    pub(crate) outbox: Outbox,
    pub(crate) recorder: Recorder,
    pub(crate) idler: Idler,
    pub(crate) shared: std::sync::Arc<Shared>,
    pub(crate) budget: DrainBudget,
    pub(crate) guard: StarvationGuard,
    /// Messages read from each sender, published for its in-flight bound
    /// when `count_consumed`.
    pub(crate) consumed: Vec<u64>,
    pub(crate) count_consumed: bool,
    pub(crate) timers: Timers,
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
            timers: &mut $self.timers,
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
        self.start();
        loop {
            match self.step() {
                Step::Work(_) => {}
                Step::Idle => self.idle(),
                Step::Stopped => break,
            }
        }
        self.finish()
    }

    /// Runs the handler's `on_start`.
    pub(crate) fn start(&mut self) {
        crate::metrics::prepare_to_wait();
        with_context!(self, cx => self.handler.on_start(cx));
        self.ring_doorbells();
    }

    /// Lends the handler and a context to `work`, as a callback would.
    pub(crate) fn with_handler<R>(
        &mut self,
        work: impl FnOnce(&mut H, &mut Context<'_, H::Message>) -> R,
    ) -> R {
        let result = with_context!(self, cx => work(&mut self.handler, cx));
        self.ring_doorbells();
        result
    }

    /// One turn, and the shutdown sequence's next move if one is due.
    pub(crate) fn step(&mut self) -> Step {
        let work = self.turn();
        if self.phase == Phase::Running && self.shared.stop_requested() {
            with_context!(self, cx => self.handler.on_stop(cx));
            self.ring_doorbells();
            self.shared.core_stopping(self.core);
            self.phase = Phase::Stopping;
            return Step::Work(work);
        }
        if self.phase == Phase::Stopping && self.shared.all_stopping() {
            return Step::Stopped;
        }
        if work > 0 {
            self.idler.reset();
            Step::Work(work)
        } else {
            Step::Idle
        }
    }

    /// What an idle turn does, by the idle strategy.
    pub(crate) fn idle(&mut self) {
        match self.idler.next() {
            IdleAction::Spin => std::hint::spin_loop(),
            IdleAction::Yield => std::thread::yield_now(),
            IdleAction::Park => self.park(),
        }
    }

    /// Every core has run `on_stop`: delivers what is still in flight, lets
    /// handlers move what they queued into lanes, then exits. Bounded in
    /// time: a handler that always claims work must not hold shutdown.
    pub(crate) fn finish(mut self) -> CoreExit {
        let deadline = clock::now_ns() + FINAL_DRAIN_NS;
        while self.final_drain_round() && clock::now_ns() <= deadline {}
        self.exit()
    }

    /// One round of the final drain; returns whether it found work.
    pub(crate) fn final_drain_round(&mut self) -> bool {
        let drained = self.drain_lanes();
        let fired = self.fire_timers();
        let worked = self.run_on_turn();
        let moved = self.flush_overflow();
        self.ring_doorbells();
        drained + fired + moved > 0 || worked
    }

    /// Runs `on_exit` and accounts for everything still held.
    pub(crate) fn exit(mut self) -> CoreExit {
        with_context!(self, cx => self.handler.on_exit(cx));
        let mut held = Vec::new();
        self.outbox.take_held(&mut held);
        // The end of time fires every pending timer: delayed messages are
        // counted, the handler's own timers simply end.
        let mut pending = std::mem::take(&mut self.timers.fired);
        self.timers.wheel.advance(u64::MAX, &mut pending);
        for entry in pending.drain(..) {
            if let TimerAction::Delayed(frame) = entry.action {
                tally(&mut held, frame.kind, 1);
            }
        }
        self.publish_metrics(clock::now_ns());
        let mut inbound = self.inbound;
        inbound.append(&mut self.inbound_high);
        CoreExit {
            inbound,
            abandoned: self.outbox.abandoned,
            held,
        }
    }

    /// One turn; returns how much work it found.
    pub(crate) fn turn(&mut self) -> usize {
        let mut work = 0;
        if self.uses_io {
            work += self.poll_io(Some(Duration::ZERO));
        }
        work += self.drain_lanes();
        work += self.fire_timers();
        if self.run_on_turn() {
            work += 1;
        }
        work += self.flush_overflow();
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
        let _running = self.shared.handler_slot(self.core).leave_on_unwind();
        let worked = with_context!(self, cx => self.handler.on_turn(cx));
        if worked {
            self.recorder.leave_handler(index, started, clock::now_ns());
        } else {
            self.recorder.leave_handler_idle();
        }
        worked
    }

    /// Runs the handler's `on_timer` for `timer`, timed and marked running
    /// for the stall detector, as the other handlers are.
    fn run_on_timer(&mut self, timer: u64) {
        let started = clock::now_ns();
        let index = self.recorder.enter_handler("on_timer", started);
        let _running = self.shared.handler_slot(self.core).leave_on_unwind();
        with_context!(self, cx => self.handler.on_timer(cx, timer));
        self.recorder.leave_handler(index, started, clock::now_ns());
    }

    /// Publishes the core's metrics, with the bytes waiting in its lanes.
    fn publish_metrics(&mut self, now_ns: u64) {
        self.recorder.local.gauges.lane_backlog_bytes = self
            .inbound
            .iter()
            .chain(&self.inbound_high)
            .map(FrameConsumer::backlog_bytes)
            .sum();
        self.recorder.flush(now_ns);
    }

    /// Polls mio and hands each event to the handler; returns the number of
    /// I/O events (the waker's do not count as work).
    fn poll_io(&mut self, timeout: Option<Duration>) -> usize {
        // Events of the last poll that an unwound `on_io` left unheard go
        // first, without polling (which would drop them).
        let first = match self.unheard.take() {
            Some(index) => index,
            None => {
                if let Err(error) = self.poll.poll(&mut self.events, timeout) {
                    if error.kind() != std::io::ErrorKind::Interrupted {
                        log::error!("core {}: poll failed: {error}", self.core);
                    }
                    return 0;
                }
                0
            }
        };
        let mut work = 0;
        for (at, event) in self.events.iter().enumerate().skip(first) {
            if event.token() == WAKER_TOKEN {
                continue;
            }
            self.unheard = Some(at + 1);
            work += 1;
            let started = clock::now_ns();
            let index = self.recorder.enter_handler("on_io", started);
            let _running = self.shared.handler_slot(self.core).leave_on_unwind();
            with_context!(self, cx => self.handler.on_io(cx, event));
            self.recorder.leave_handler(index, started, clock::now_ns());
        }
        self.unheard = None;
        if work > 0 {
            self.ring_doorbells();
        }
        work
    }

    /// Fires the timers that are due; returns how many it acted on.
    fn fire_timers(&mut self) -> usize {
        // Entries left in `fired` were due on an earlier turn whose
        // `on_timer` panicked (a host driving the core caught it).
        if self.timers.wheel.is_empty() && self.timers.fired.is_empty() {
            return 0;
        }
        let now = self.timers.source.now_ns();
        if !self.timers.due(now) && self.timers.fired.is_empty() {
            return 0;
        }
        let count = self.timers.fire(now);
        self.recorder.local.counters.timers_fired += count as u64;
        // Taken one at a time, so that the rest stay in `fired` if a
        // handler panics.
        let mut acted = 0;
        while let Some(entry) = self.timers.fired.pop() {
            acted += 1;
            match entry.action {
                TimerAction::Handler(timer) => self.run_on_timer(timer),
                TimerAction::Delayed(mut frame) => {
                    frame.timestamp_ns = clock::now_ns();
                    let counters = &mut self.recorder.local.counters;
                    self.outbox
                        .send_held(self.core, frame, &self.shared, counters);
                }
            }
        }
        acted
    }

    fn flush_overflow(&mut self) -> usize {
        let counters = &mut self.recorder.local.counters;
        self.outbox
            .flush_overflow(self.core, &self.shared, counters)
    }

    /// Reads a batch from each inbound lane, high-priority lanes first;
    /// returns how many frames it delivered.
    fn drain_lanes(&mut self) -> usize {
        let lanes = self.inbound.len();
        let start = self.next_lane;
        self.next_lane = (start + 1) % lanes;
        let batch = self.budget.current();
        let mut delivered = 0;
        let mut largest = 0;
        let mut backlog = false;
        let mut high_backlog = false;
        for i in 0..lanes {
            let from = (start + i) % lanes;
            // High lanes are mostly empty: one load says so, without
            // setting up a drain.
            if !self.inbound_high[from].has_frame() {
                continue;
            }
            let got = self.drain_lane(from, Priority::High, batch);
            delivered += got;
            largest = largest.max(got);
            high_backlog |= got == batch && self.inbound_high[from].has_frame();
        }
        if self.guard.drain_normal(high_backlog) {
            for i in 0..lanes {
                let from = (start + i) % lanes;
                let got = self.drain_lane(from, Priority::Normal, batch);
                delivered += got;
                largest = largest.max(got);
                backlog |= got == batch && self.inbound[from].has_frame();
            }
        }
        self.budget.adapt(backlog || high_backlog, largest);
        self.recorder.local.drain_batch = self.budget.current() as u64;
        if delivered > 0 {
            self.wake_blocked_senders();
        }
        delivered
    }

    /// Space was freed in inbound lanes: wake the senders parked waiting
    /// for it. One fence for all lanes.
    fn wake_blocked_senders(&self) {
        // Pairs with the fence in the sender's `announce_sleep`, made after
        // it set `room_wanted`: either it sees our new `head` (and consumed
        // count), or we see its flag (see `park`).
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

    fn drain_lane(&mut self, from: usize, priority: Priority, batch: usize) -> usize {
        let CoreLoop {
            core,
            handler,
            poll,
            inbound,
            inbound_high,
            outbox,
            recorder,
            uses_io,
            timers,
            shared,
            consumed,
            count_consumed,
            ..
        } = self;
        let lane = match priority {
            Priority::Normal => &mut inbound[from],
            Priority::High => &mut inbound_high[from],
        };
        let slot = shared.handler_slot(*core);
        let cx = &mut Context {
            core: *core,
            outbox,
            recorder,
            registry: poll.registry(),
            uses_io,
            timers,
            shared,
            _message: PhantomData,
        };
        let mut now = None;
        let count_consumed = *count_consumed;
        let consumed = &mut consumed[from];
        let drained = lane.drain(batch, |frame| {
            // Counted before the handler runs: a frame whose handler
            // panics is read all the same (see `FrameConsumer::drain`), and
            // a host that catches the panic keeps the count right.
            if count_consumed {
                *consumed += 1;
            }
            // SAFETY: lanes are heap memory of this process, written only by
            // `Context::send`; each frame is read once. The buffer goes back
            // to its pool when this closure returns.
            let pooled = unsafe { super::large::pooled_buffer(&frame) };
            if let Err(error) = check_type::<H::Message>(&frame.meta) {
                // Lanes carry only the runtime's own message type: this is a
                // bug in corelane, not bad input.
                debug_assert!(false, "core {}: {error}", cx.core);
                log::error!("core {}: dropped frame from core {from}: {error}", cx.core);
                return;
            }
            // SAFETY: lanes are heap memory of this process; every frame in
            // them was written by `Context::send` (or copied whole from an
            // archive it made, `HeldFrame`) for `H::Message`, whose type and
            // version were just checked, and the ring lends the payload
            // 32-byte aligned and unchanged until released (or the pooled
            // buffer it names, 64-byte aligned and owned here).
            let msg = unsafe {
                access_trusted::<H::Message>(pooled.as_deref().unwrap_or(frame.payload()))
            };
            // One clock read per message: a handler's end is the next
            // one's start.
            let started = now.unwrap_or_else(clock::now_ns);
            let kind = H::Message::kind(msg);
            let index = cx
                .recorder
                .enter_message(kind, frame.meta.timestamp_ns, started);
            let _running = slot.leave_on_unwind();
            handler.on_message(cx, from, msg);
            let ended = clock::now_ns();
            cx.recorder.leave_handler(index, started, ended);
            now = Some(ended);
        });
        let count = match drained {
            Ok(count) => count,
            Err(error) => {
                log::error!("core {core}: lane from core {from}: {error}");
                0
            }
        };
        if self.count_consumed && count > 0 {
            // Pairs with the Acquire load in the sender's `Shared::consumed`:
            // the frames counted here have been released.
            self.shared
                .consumed_cell(from, self.core)
                .store(self.consumed[from], Ordering::Release);
        }
        count
    }

    fn ring_doorbells(&mut self) {
        self.outbox.ring_doorbells(&self.shared.doorbells);
    }

    /// Whether a destination that refused a send has made room since.
    /// Called after `announce_sleep`, whose fence orders the `room_wanted`
    /// flags set here before the loads of `head` and consumed counts.
    fn room_appeared(&mut self) -> bool {
        let mut appeared = false;
        for to in 0..self.outbox.blocked.len() {
            let blocked = self.outbox.blocked[to];
            if blocked == 0 {
                continue;
            }
            let mut moved = self.outbox.refused_lane_moved(to);
            if blocked & BLOCKED_BOUND != 0 {
                let consumed = self.shared.consumed(self.core, to);
                if consumed != self.outbox.flow.cached_consumed[to] {
                    self.outbox.flow.cached_consumed[to] = consumed;
                    moved = true;
                }
            }
            if moved {
                // The handler (or the overflow flush) retries on the next
                // turn; a new refusal sets the bits again with a fresh view.
                self.outbox.blocked[to] = 0;
                appeared = true;
            }
        }
        appeared
    }

    /// Whether a frame waits in any inbound lane.
    fn has_frame(&self) -> bool {
        self.inbound_high.iter().any(FrameConsumer::has_frame)
            || self.inbound.iter().any(FrameConsumer::has_frame)
    }

    /// Parks until a frame, an I/O event, a wake-up or the next timer; a
    /// core with sends refused by full lanes (or the in-flight bound) also
    /// wakes when those destinations make room.
    pub(crate) fn park(&mut self) {
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
            if blocked != 0 {
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
        // Read after the announcement: a virtual clock that moves after
        // this read rings the doorbell.
        let now = self.timers.source.now_ns();
        let has_work =
            must_stop || self.has_frame() || self.room_appeared() || self.timers.due(now);
        if has_work {
            self.shared.doorbells[self.core].awake();
            return;
        }
        let mut timeout = self.timers.park_timeout(now);
        if deferred {
            let publish_by = Duration::from_nanos(PARK_PUBLISH_DELAY_NS);
            timeout = Some(timeout.map_or(publish_by, |t| t.min(publish_by)));
        }
        let parked_at = clock::now_ns();
        self.poll_io(timeout);
        self.shared.doorbells[self.core].awake();
        self.recorder.parked(parked_at, clock::now_ns());
    }
}
