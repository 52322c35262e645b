//! Timers in the runtime: each core's timing wheel, what handlers schedule
//! on it, and delayed messages.
//!
//! A core owns one [`Wheel`]. Handlers schedule timers from their
//! [`Context`] and get a [`TimerHandle`] back to cancel them with (a stale
//! handle cancels nothing); the core fires what is due once per turn, after
//! draining its lanes (step 3 of a turn in the design), by calling
//! [`Handler::on_timer`](super::Handler::on_timer) with the timer's id. An
//! idle core parks no longer than until its next timer is due.
//!
//! A delayed message is serialized when it is scheduled and written into
//! its lane when its timer fires (or, if the lane has no room then, queued
//! in the destination's overflow queue, beyond its usual bound, since it
//! was already accepted). Delayed messages still pending when the core
//! exits are listed in the shutdown report's `held`, by kind.

use std::time::Duration;

use super::context::{Context, SendError};
use super::held::HeldFrame;
use super::priority::Priority;
use super::time::TimeSource;
use crate::clock;
use crate::frame::{Encodes, Message};
use crate::timer::{TimerHandle, Wheel};

/// What a timer on a core's wheel does when it fires.
pub(crate) enum TimerAction {
    /// Calls the handler's `on_timer` with this id.
    Handler(u64),
    /// Sends a message held since it was scheduled.
    Delayed(HeldFrame),
}

/// A timer on a core's wheel.
pub(crate) struct TimerEntry {
    /// The tick it is due at, then the order it was scheduled in: the wheel
    /// leaves the order within a tick open, and the core sorts what fires
    /// together by this, so that delayed messages due in the same tick
    /// are sent in the order they were scheduled.
    pub(crate) order: (u64, u64),
    pub(crate) action: TimerAction,
}

/// One core's timers and the time they run on.
pub(crate) struct Timers {
    pub(crate) wheel: Wheel<TimerEntry>,
    pub(crate) source: TimeSource,
    /// Fired entries not yet acted on, the earliest last (the core pops
    /// them one at a time); kept between turns so firing does not
    /// allocate, and so that entries due with an `on_timer` that panicked
    /// are acted on by a later turn rather than dropped.
    pub(crate) fired: Vec<TimerEntry>,
    /// Timers scheduled so far: the next one's place in `order`.
    scheduled: u64,
    tick_ns: u64,
}

impl Timers {
    pub(crate) fn new(tick: Duration, source: TimeSource) -> Self {
        let mut wheel = Wheel::new(tick);
        // The wheel's time starts at 0; a virtual clock may start anywhere.
        wheel.advance(source.now_ns(), &mut Vec::new());
        Timers {
            wheel,
            source,
            fired: Vec::new(),
            scheduled: 0,
            tick_ns: u64::try_from(tick.as_nanos()).unwrap_or(u64::MAX).max(1),
        }
    }

    /// Schedules `action` at `deadline_ns`.
    pub(crate) fn schedule(&mut self, deadline_ns: u64, action: TimerAction) -> TimerHandle {
        let order = (deadline_ns.div_ceil(self.tick_ns), self.scheduled);
        self.scheduled += 1;
        self.wheel
            .schedule(deadline_ns, TimerEntry { order, action })
    }

    /// Fires what is due by `now_ns` into `self.fired`, which then holds
    /// it (and anything left there) in reverse deadline order and, within
    /// a tick, reverse order of scheduling, to be popped from the end;
    /// returns how many fired now.
    pub(crate) fn fire(&mut self, now_ns: u64) -> usize {
        let count = self.wheel.advance(now_ns, &mut self.fired);
        if self.fired.len() > 1 {
            self.fired
                .sort_unstable_by_key(|entry| std::cmp::Reverse(entry.order));
        }
        count
    }

    /// Whether a timer is due by `now_ns`.
    #[inline]
    pub(crate) fn due(&self, now_ns: u64) -> bool {
        self.wheel
            .next_deadline()
            .is_some_and(|deadline| deadline <= now_ns)
    }

    /// How long a parked core may block: until the next timer may be due,
    /// on the monotonic clock; without limit otherwise (no timer, or a
    /// virtual clock, which wakes the core when it moves).
    pub(crate) fn park_timeout(&self, now_ns: u64) -> Option<Duration> {
        if self.source.is_virtual() {
            return None;
        }
        let deadline = self.wheel.next_deadline()?;
        Some(Duration::from_nanos(deadline.saturating_sub(now_ns)))
    }

    fn deadline_after(&self, after: Duration) -> u64 {
        let after = u64::try_from(after.as_nanos()).unwrap_or(u64::MAX);
        self.source.now_ns().saturating_add(after)
    }
}

impl<M: Message> Context<'_, M> {
    /// The time the core's timers run on, in nanoseconds: the monotonic
    /// clock, or the builder's virtual clock.
    pub fn now_ns(&self) -> u64 {
        self.timers.source.now_ns()
    }

    /// Schedules a call of [`Handler::on_timer`](super::Handler::on_timer)
    /// with `timer` (an id of the handler's choosing) `after` from now.
    /// Never early; late by at most the wheel's tick on a busy core.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use corelane::frame::Message;
    /// use corelane::runtime::{Context, Handler, Runtime};
    ///
    /// #[derive(rkyv::Archive, rkyv::Serialize)]
    /// struct Ping;
    /// impl Message for Ping {
    ///     const TYPE_ID: u16 = 1;
    ///     const VERSION: u8 = 1;
    ///     const NAME: &'static str = "Ping";
    /// }
    ///
    /// struct Alarm;
    /// impl Handler for Alarm {
    ///     type Message = Ping;
    ///     fn on_start(&mut self, cx: &mut Context<'_, Ping>) {
    ///         cx.schedule_timer(Duration::from_millis(2), 7);
    ///     }
    ///     fn on_message(&mut self, _: &mut Context<'_, Ping>, _: usize, _: &ArchivedPing) {}
    ///     fn on_timer(&mut self, cx: &mut Context<'_, Ping>, timer: u64) {
    ///         assert_eq!(timer, 7);
    ///         cx.stop_runtime();
    ///     }
    /// }
    ///
    /// let runtime = Runtime::builder().cores(1).build()?;
    /// let report = runtime.start(|_| Alarm)?.wait()?;
    /// assert_eq!(report.totals.timers_fired, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn schedule_timer(&mut self, after: Duration, timer: u64) -> TimerHandle {
        let deadline = self.timers.deadline_after(after);
        self.schedule_timer_at(deadline, timer)
    }

    /// As [`schedule_timer`](Self::schedule_timer), at `deadline_ns` on
    /// [`now_ns`](Self::now_ns)'s clock. A deadline already past fires on
    /// the next turn.
    pub fn schedule_timer_at(&mut self, deadline_ns: u64, timer: u64) -> TimerHandle {
        self.timers
            .schedule(deadline_ns, TimerAction::Handler(timer))
    }

    /// Cancels a timer or a delayed message; returns whether it was still
    /// pending. A stale handle (its timer fired or was cancelled) cancels
    /// nothing. A handle names a timer of the core that issued it: keep it
    /// on that core.
    pub fn cancel_timer(&mut self, handle: TimerHandle) -> bool {
        self.timers.wheel.cancel(handle).is_some()
    }

    /// Sends `msg` to core `to` `after` from now, in the normal lane. As
    /// with [`send`](Self::send), `msg` is an `M` or a view that archives as
    /// one ([`Encodes`]). The message is serialized now and written into the lane when its timer
    /// fires; [`cancel_timer`](Self::cancel_timer) with the handle drops it
    /// unsent. Counted in `delayed` when scheduled and in `sent` when
    /// written; one still pending at shutdown is listed in the report's
    /// `held`. A message too large for a lane frame waits in a buffer from
    /// this core's pool and travels by handle, as with [`send`](Self::send).
    ///
    /// # Errors
    ///
    /// Hands `msg` back: [`SendError::NoSuchCore`], [`SendError::TooLarge`]
    /// (over [`max_message`](Self::max_message)), [`SendError::Encode`].
    pub fn send_after<'m, T: Encodes<M>>(
        &mut self,
        after: Duration,
        to: usize,
        msg: &'m T,
    ) -> Result<TimerHandle, SendError<&'m T>> {
        self.send_after_with(after, to, msg, Priority::Normal)
    }

    /// As [`send_after`](Self::send_after), in the lane of `priority`.
    ///
    /// # Errors
    ///
    /// As [`send_after`](Self::send_after).
    pub fn send_after_with<'m, T: Encodes<M>>(
        &mut self,
        after: Duration,
        to: usize,
        msg: &'m T,
        priority: Priority,
    ) -> Result<TimerHandle, SendError<&'m T>> {
        if to >= self.cores() {
            return Err(SendError::NoSuchCore(msg, to));
        }
        let held =
            HeldFrame::encode::<M, T>(msg, to, priority, clock::now_ns(), &mut self.outbox.arena)
                .map_err(|reason| SendError::Encode(msg, reason))?;
        let max_payload = self.outbox.lanes_for(priority)[to].max_payload();
        // Too large for a frame: held in a pooled buffer, sent by handle.
        let held = held
            .fit(max_payload, self.outbox.max_message, &self.outbox.pool)
            .map_err(|(payload_len, max_payload)| SendError::TooLarge {
                msg,
                payload_len,
                max_payload,
            })?;
        let deadline = self.timers.deadline_after(after);
        self.recorder.local.counters.delayed += 1;
        Ok(self.timers.schedule(deadline, TimerAction::Delayed(held)))
    }
}
