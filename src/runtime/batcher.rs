//! Batching by size or deadline, whichever comes first, for handlers that
//! want to act on many items at once (one write per batch, one frame per
//! batch) without holding the first item longer than they allow.
//!
//! A [`Batcher`] belongs to a handler and lives on its core. The first item
//! of a batch schedules a flush timer on the core's wheel; the batch is
//! handed back when it reaches its size (and the timer is cancelled) or
//! when the timer fires, whichever comes first. The handler routes its
//! `on_timer` calls with the batcher's timer id to
//! [`Batcher::on_timer`].

use std::time::Duration;

use super::context::Context;
use crate::frame::Message;
use crate::timer::TimerHandle;

/// Collects items into batches of at most `max_items`, flushed when full or
/// `max_wait` after the first item of the batch, whichever comes first.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use corelane::frame::Message;
/// use corelane::runtime::{Batcher, Context, Handler, Runtime, TimeSource, VirtualClock};
///
/// #[derive(rkyv::Archive, rkyv::Serialize)]
/// struct Reading(u32);
/// impl Message for Reading {
///     const TYPE_ID: u16 = 1;
///     const VERSION: u8 = 1;
///     const NAME: &'static str = "Reading";
/// }
///
/// const FLUSH: u64 = 1;
///
/// struct Sink {
///     batcher: Batcher<u32>,
///     written: Vec<Vec<u32>>,
/// }
/// impl Handler for Sink {
///     type Message = Reading;
///     fn on_message(&mut self, cx: &mut Context<'_, Reading>, _: usize, r: &ArchivedReading) {
///         if let Some(batch) = self.batcher.push(cx, r.0.to_native()) {
///             self.written.push(batch); // full: 3 items
///         }
///     }
///     fn on_timer(&mut self, _: &mut Context<'_, Reading>, timer: u64) {
///         if let Some(batch) = self.batcher.on_timer(timer) {
///             self.written.push(batch); // 5 ms after its first item
///         }
///     }
///     fn on_start(&mut self, cx: &mut Context<'_, Reading>) {
///         for n in 0..4 {
///             cx.send(0, &Reading(n)).unwrap();
///         }
///     }
/// }
///
/// let clock = VirtualClock::new();
/// let runtime = Runtime::builder()
///     .cores(1)
///     .time_source(TimeSource::Virtual(clock.clone()))
///     .build()?;
/// let mut runtime = runtime.start_manual(|_| Sink {
///     batcher: Batcher::new(3, Duration::from_millis(5), FLUSH),
///     written: Vec::new(),
/// })?;
/// runtime.run_until_idle(10);
/// assert_eq!(runtime.handler(0).written, [vec![0, 1, 2]]);
/// clock.advance(Duration::from_millis(5));
/// runtime.run_until_idle(10);
/// assert_eq!(runtime.handler(0).written, [vec![0, 1, 2], vec![3]]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Batcher<T> {
    items: Vec<T>,
    max_items: usize,
    max_wait: Duration,
    /// The id of the flush timer, as `on_timer` will see it.
    timer_id: u64,
    /// The pending flush timer of the current batch.
    timer: Option<TimerHandle>,
    /// Flush timers of earlier batches that had fired, their `on_timer`
    /// still to come, when their batch was handed back by size (in the
    /// same turn, by another timer's handler): those calls are ignored,
    /// rather than taken for the current batch's.
    stale: u32,
}

/// Items a batch reserves room for up front. A `max_items` far above any
/// real batch (`usize::MAX` for "by deadline only") must not reserve that
/// much memory, or overflow the reservation; past this the batch grows as
/// items come.
const RESERVED_ITEMS: usize = 1024;

impl<T> Batcher<T> {
    /// A batcher flushing at `max_items` items (at least 1) or `max_wait`
    /// after a batch's first item; its flush timer fires with `timer_id`.
    pub fn new(max_items: usize, max_wait: Duration, timer_id: u64) -> Self {
        let max_items = max_items.max(1);
        Batcher {
            items: Vec::with_capacity(max_items.min(RESERVED_ITEMS)),
            max_items,
            max_wait,
            timer_id,
            timer: None,
            stale: 0,
        }
    }

    /// Items in the current batch.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the current batch is empty.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Adds `item`; returns the batch if it is now full. The first item of
    /// a batch starts its flush timer.
    pub fn push<M: Message>(&mut self, cx: &mut Context<'_, M>, item: T) -> Option<Vec<T>> {
        if self.items.is_empty() {
            self.timer = Some(cx.schedule_timer(self.max_wait, self.timer_id));
        }
        self.items.push(item);
        if self.items.len() < self.max_items {
            return None;
        }
        self.cancel_timer(cx);
        Some(self.take())
    }

    /// Call from `on_timer`: returns the batch if `timer` is this
    /// batcher's flush timer and the batch is not empty.
    pub fn on_timer(&mut self, timer: u64) -> Option<Vec<T>> {
        if timer != self.timer_id {
            return None;
        }
        if self.stale > 0 {
            self.stale -= 1;
            return None;
        }
        if self.timer.take().is_none() || self.items.is_empty() {
            return None;
        }
        Some(self.take())
    }

    /// Hands the current batch back now (at shutdown, say), cancelling its
    /// timer; `None` if it is empty.
    pub fn flush<M: Message>(&mut self, cx: &mut Context<'_, M>) -> Option<Vec<T>> {
        self.cancel_timer(cx);
        (!self.items.is_empty()).then(|| self.take())
    }

    /// Cancels the current batch's flush timer; one that has fired
    /// already (its `on_timer` comes later this turn) is counted stale.
    fn cancel_timer<M: Message>(&mut self, cx: &mut Context<'_, M>) {
        if let Some(timer) = self.timer.take() {
            if !cx.cancel_timer(timer) {
                self.stale += 1;
            }
        }
    }

    fn take(&mut self) -> Vec<T> {
        let reserve = self.max_items.min(RESERVED_ITEMS);
        std::mem::replace(&mut self.items, Vec::with_capacity(reserve))
    }
}
