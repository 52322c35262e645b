//! The hierarchical timing wheel.
//!
//! Terms, used in this sense only:
//!
//! - *tick*: the wheel's unit of time, a length fixed at construction.
//!   Tick `k` is the stretch `[k * tick, (k + 1) * tick)` of nanoseconds.
//! - *deadline* (of a timer): the tick at which it is due, `ceil(d / tick)`
//!   for a deadline of `d` nanoseconds; a timer scheduled at or before the
//!   wheel's current time is due at once instead.
//! - *elapsed*: the last tick the wheel has reached; every timer due at or
//!   before it has fired or waits in the due list.
//! - *slot*, *level*, *block*: see the `level` module.
//! - *due list*: timers whose deadline has come; `advance` empties it first.
//! - *overflow list*: timers due in a later block than `elapsed`; they are
//!   filed into the levels when `elapsed` reaches their block.

use std::time::Duration;

use super::level::{block_start, level_for, slot_for, slot_start, LEVELS, SLOTS};
use super::slab::{Slab, TimerHandle, NIL};

/// List id of the overflow list; ids below it name level `id / 64`, slot
/// `id % 64`.
const OVERFLOW: u16 = (LEVELS * SLOTS) as u16;

/// List id of the due list.
const DUE: u16 = OVERFLOW + 1;

/// Number of lists, hence of list heads.
const LISTS: usize = DUE as usize + 1;

/// A hierarchical timing wheel owned by one core: no locks, no atomics.
///
/// Time is given in nanoseconds, as `u64`, from an epoch the caller picks
/// and keeps (such as [`crate::clock::now_ns`]); a test can pass
/// any virtual time instead. Internally the wheel counts ticks.
///
/// # Guarantees
///
/// - [`schedule`](Self::schedule) and [`cancel`](Self::cancel) are O(1) and
///   allocate nothing once the wheel has held as many timers as it holds now.
/// - **Never early.** A timer scheduled for `d` ns fires in the first
///   [`advance`](Self::advance) whose `now` is at least `d` rounded up to a
///   tick boundary, `ceil(d / tick) * tick`. So it fires no earlier than
///   `d`, and at most one tick after `d` if `advance` is called at every
///   tick boundary.
/// - **Past deadlines fire next.** A timer scheduled for `d` ns where `d` is
///   at or before the `now` of the last `advance` fires in the next
///   `advance`, whatever its `now`.
/// - **Order.** One `advance` fires timers in deadline order at tick
///   granularity: past-due timers first, then tick by tick. The order
///   among timers due in the same tick is unspecified.
/// - **Far deadlines are kept.** Deadlines beyond the wheel's span (`2^36`
///   ticks, over two years at 1 ms) wait in an overflow list and are filed
///   into the wheel as time reaches them; they never wrap around.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use corelane::timer::Wheel;
///
/// const MS: u64 = 1_000_000;
/// let mut wheel = Wheel::new(Duration::from_millis(1));
/// wheel.schedule(5 * MS, "flush");
/// let retry = wheel.schedule(20 * MS, "retry");
///
/// let mut fired = Vec::new();
/// wheel.advance(4 * MS, &mut fired);
/// assert!(fired.is_empty());
/// wheel.advance(5 * MS, &mut fired);
/// assert_eq!(fired, ["flush"]);
///
/// assert_eq!(wheel.cancel(retry), Some("retry"));
/// assert!(wheel.is_empty());
/// ```
pub struct Wheel<T> {
    /// Storage for every pending timer.
    slab: Slab<T>,
    /// First entry of each list, by list id, or `NIL`.
    heads: Box<[u32; LISTS]>,
    /// Per level, bit `s` is set when slot `s` is not empty.
    occupied: [u64; LEVELS],
    /// The tick the wheel has reached.
    elapsed: u64,
    /// The `now` of the last `advance`, in nanoseconds.
    now_ns: u64,
    /// Nanoseconds per tick, at least 1.
    tick_ns: u64,
    /// A tick at or before every deadline in the overflow list (it may lag
    /// behind after cancellations); `u64::MAX` when the list is empty.
    overflow_min: u64,
}

impl<T> Wheel<T> {
    /// An empty wheel with ticks of `tick`, standing at time 0.
    ///
    /// # Panics
    ///
    /// If `tick` is zero or longer than `u64::MAX` nanoseconds.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use corelane::timer::Wheel;
    ///
    /// let wheel: Wheel<u32> = Wheel::new(Duration::from_millis(1));
    /// assert_eq!(wheel.tick(), Duration::from_millis(1));
    /// assert_eq!(wheel.now_ns(), 0);
    /// ```
    pub fn new(tick: Duration) -> Self {
        Self::with_capacity(tick, 0)
    }

    /// An empty wheel like [`new`](Self::new) with room for `capacity`
    /// timers before its storage grows.
    ///
    /// # Panics
    ///
    /// If `tick` is zero or longer than `u64::MAX` nanoseconds.
    pub fn with_capacity(tick: Duration, capacity: usize) -> Self {
        let tick_ns = u64::try_from(tick.as_nanos()).expect("tick longer than u64::MAX ns");
        assert!(tick_ns > 0, "the tick of a timer wheel must not be zero");
        Wheel {
            slab: Slab::with_capacity(capacity),
            heads: Box::new([NIL; LISTS]),
            occupied: [0; LEVELS],
            elapsed: 0,
            now_ns: 0,
            tick_ns,
            overflow_min: u64::MAX,
        }
    }

    /// The length of one tick.
    pub fn tick(&self) -> Duration {
        Duration::from_nanos(self.tick_ns)
    }

    /// The `now` of the latest [`advance`](Self::advance), in nanoseconds
    /// (0 before the first).
    pub fn now_ns(&self) -> u64 {
        self.now_ns
    }

    /// The number of pending timers.
    pub fn len(&self) -> usize {
        self.slab.len()
    }

    /// Whether no timer is pending.
    pub fn is_empty(&self) -> bool {
        self.slab.len() == 0
    }

    /// Schedules `value` to fire at `deadline_ns` nanoseconds, in O(1).
    ///
    /// A deadline at or before [`now_ns`](Self::now_ns) fires in the next
    /// [`advance`](Self::advance). Any deadline is accepted, however far.
    ///
    /// # Panics
    ///
    /// If `u32::MAX` timers are already pending.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use corelane::timer::Wheel;
    ///
    /// let mut wheel = Wheel::new(Duration::from_micros(100));
    /// wheel.schedule(250_000, 'a');
    /// assert_eq!(wheel.len(), 1);
    /// // 250 µs rounds up to the tick starting at 300 µs.
    /// assert_eq!(wheel.next_deadline(), Some(300_000));
    /// ```
    #[inline]
    pub fn schedule(&mut self, deadline_ns: u64, value: T) -> TimerHandle {
        let deadline = if deadline_ns <= self.now_ns {
            self.elapsed
        } else {
            deadline_ns.div_ceil(self.tick_ns)
        };
        let index = self.slab.insert(value, deadline);
        self.file(index);
        self.slab.handle(index)
    }

    /// Cancels a pending timer in O(1) and hands its value back, or returns
    /// `None` if the handle is stale (its timer already fired or was
    /// cancelled).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use corelane::timer::Wheel;
    ///
    /// let mut wheel = Wheel::new(Duration::from_millis(1));
    /// let handle = wheel.schedule(1_000_000, "timeout");
    /// assert_eq!(wheel.cancel(handle), Some("timeout"));
    /// assert_eq!(wheel.cancel(handle), None);
    /// ```
    #[inline]
    pub fn cancel(&mut self, handle: TimerHandle) -> Option<T> {
        let index = self.slab.find(handle)?;
        self.unfile(index);
        Some(self.slab.remove(index))
    }

    /// Fires every timer due by `now_ns`, appending their values to `fired`
    /// in deadline order (at tick granularity), and returns how many fired.
    ///
    /// `fired` is only pushed to, so a vector kept by the caller and cleared
    /// between calls makes this allocation-free. A `now_ns` earlier than the
    /// last one is taken as the last one: the wheel's time never goes back.
    /// `u64::MAX` stands for the end of time and fires every pending timer.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use corelane::timer::Wheel;
    ///
    /// let mut wheel = Wheel::new(Duration::from_nanos(10));
    /// wheel.schedule(35, 2);
    /// wheel.schedule(12, 1);
    /// let mut fired = Vec::new();
    /// // 35 ns is due at tick 4 (40 ns): not yet at 39 ns.
    /// assert_eq!(wheel.advance(39, &mut fired), 1);
    /// assert_eq!(wheel.advance(40, &mut fired), 1);
    /// assert_eq!(fired, [1, 2]);
    /// ```
    pub fn advance(&mut self, now_ns: u64, fired: &mut Vec<T>) -> usize {
        self.advance_with(now_ns, |value| fired.push(value))
    }

    /// Like [`advance`](Self::advance), but hands each fired value to
    /// `fire` instead.
    ///
    /// If `fire` panics, the timers not yet fired stay pending and fire in
    /// the next `advance`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use corelane::timer::Wheel;
    ///
    /// let mut wheel = Wheel::new(Duration::from_millis(1));
    /// for ms in 1..=3 {
    ///     wheel.schedule(ms * 1_000_000, ms);
    /// }
    /// let mut total = 0;
    /// wheel.advance_with(10_000_000, |ms| total += ms);
    /// assert_eq!(total, 6);
    /// ```
    pub fn advance_with(&mut self, now_ns: u64, mut fire: impl FnMut(T)) -> usize {
        let now_ns = now_ns.max(self.now_ns);
        self.now_ns = now_ns;
        let target = if now_ns == u64::MAX {
            // The end of time: deadlines in the last, partial tick are due.
            u64::MAX
        } else {
            now_ns / self.tick_ns
        };
        let mut count = self.fire_due(&mut fire);

        // Jump from one non-empty slot to the next rather than tick by tick,
        // so a long quiet stretch costs no more than a short one.
        while let Some((start, list)) = self.next_expiration() {
            if start > target {
                break;
            }
            self.elapsed = self.elapsed.max(start);
            if list == OVERFLOW {
                self.refile_overflow();
            } else if usize::from(list) < SLOTS {
                self.expire_slot(list);
            } else {
                self.cascade(list);
            }
            count += self.fire_due(&mut fire);
        }

        self.elapsed = self.elapsed.max(target);
        count
    }

    /// When the next timer may be due, in nanoseconds, for the core loop's
    /// poll timeout; `None` if no timer is pending.
    ///
    /// The answer is conservative: it is the start of the earliest non-empty
    /// slot, which may precede the earliest deadline in it (and an `advance`
    /// at that time may then fire nothing). It is never later than the
    /// earliest deadline rounded up to its tick. When a timer is already
    /// due, it is [`now_ns`](Self::now_ns).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use corelane::timer::Wheel;
    ///
    /// let mut wheel = Wheel::new(Duration::from_millis(1));
    /// assert_eq!(wheel.next_deadline(), None);
    /// wheel.schedule(3_000_000, ());
    /// assert_eq!(wheel.next_deadline(), Some(3_000_000));
    /// ```
    pub fn next_deadline(&self) -> Option<u64> {
        if self.heads[usize::from(DUE)] != NIL {
            return Some(self.now_ns);
        }
        let (start, _) = self.next_expiration()?;
        Some(start.saturating_mul(self.tick_ns))
    }

    /// The earliest non-empty slot (or the overflow list, once the levels
    /// are empty): the tick it starts at and its list id.
    fn next_expiration(&self) -> Option<(u64, u16)> {
        for (level, &occupied) in self.occupied.iter().enumerate() {
            if occupied != 0 {
                let slot = occupied.trailing_zeros() as usize;
                let list = (level * SLOTS + slot) as u16;
                return Some((slot_start(self.elapsed, level, slot), list));
            }
        }
        if self.heads[usize::from(OVERFLOW)] != NIL {
            return Some((block_start(self.overflow_min), OVERFLOW));
        }
        None
    }

    /// The list that holds a timer due at tick `deadline`, given the
    /// elapsed tick.
    ///
    /// Lists are never recorded in the entries: between calls, every timer
    /// sits in exactly the list this names, because a timer's level stays
    /// right until the elapsed tick enters its slot, and `advance` empties a
    /// slot as soon as it does.
    #[inline]
    fn list_for(&self, deadline: u64) -> u16 {
        if deadline <= self.elapsed {
            return DUE;
        }
        match level_for(self.elapsed, deadline) {
            Some(level) => (level * SLOTS + slot_for(deadline, level)) as u16,
            None => OVERFLOW,
        }
    }

    /// Links the stored timer at `index` into the list its deadline
    /// belongs to.
    #[inline]
    fn file(&mut self, index: u32) {
        let deadline = self.slab.entry(index).deadline;
        let list = self.list_for(deadline);
        if list < OVERFLOW {
            let (level, slot) = (usize::from(list) / SLOTS, usize::from(list) % SLOTS);
            self.occupied[level] |= 1 << slot;
        } else if list == OVERFLOW {
            self.overflow_min = self.overflow_min.min(deadline);
        }
        self.slab
            .push_front(&mut self.heads[usize::from(list)], index);
    }

    /// Unlinks the stored timer at `index` from its list.
    #[inline]
    fn unfile(&mut self, index: u32) {
        let list = self.list_for(self.slab.entry(index).deadline);
        let head = &mut self.heads[usize::from(list)];
        self.slab.unlink(head, index);
        if *head != NIL {
            return;
        }
        if list < OVERFLOW {
            let (level, slot) = (usize::from(list) / SLOTS, usize::from(list) % SLOTS);
            self.occupied[level] &= !(1 << slot);
        } else if list == OVERFLOW {
            self.overflow_min = u64::MAX;
        }
    }

    /// Fires the timers in the due list, one at a time so that the list
    /// stays whole if `fire` panics.
    fn fire_due(&mut self, fire: &mut impl FnMut(T)) -> usize {
        let mut count = 0;
        while let Some(index) = self.slab.pop_front(&mut self.heads[usize::from(DUE)]) {
            let deadline = self.slab.entry(index).deadline;
            debug_assert!(
                deadline <= self.elapsed,
                "timer due at tick {deadline} fired at tick {}",
                self.elapsed
            );
            fire(self.slab.remove(index));
            count += 1;
        }
        count
    }

    /// Moves a slot of level 0, whose timers are all due at the elapsed
    /// tick, into the (empty) due list whole.
    fn expire_slot(&mut self, list: u16) {
        debug_assert_eq!(self.heads[usize::from(DUE)], NIL, "due list not empty");
        let head = std::mem::replace(&mut self.heads[usize::from(list)], NIL);
        self.heads[usize::from(DUE)] = head;
        self.occupied[0] &= !(1 << list);
    }

    /// Moves the timers of a slot above level 0, which the elapsed tick has
    /// just entered, down to the levels (or the due list) they now belong to.
    fn cascade(&mut self, list: u16) {
        let (level, slot) = (usize::from(list) / SLOTS, usize::from(list) % SLOTS);
        let head = std::mem::replace(&mut self.heads[usize::from(list)], NIL);
        self.occupied[level] &= !(1 << slot);
        self.file_chain(head);
    }

    /// Files the overflow list's timers again now that the elapsed tick has
    /// reached the block of the earliest: those of this block enter the
    /// levels, the rest stay.
    fn refile_overflow(&mut self) {
        let head = std::mem::replace(&mut self.heads[usize::from(OVERFLOW)], NIL);
        self.overflow_min = u64::MAX;
        self.file_chain(head);
    }

    /// Files every timer of a chain that has been detached from its list
    /// head. Filing relinks an entry, so its successor is read first.
    fn file_chain(&mut self, mut index: u32) {
        while index != NIL {
            let next = self.slab.next(index);
            self.file(index);
            index = next;
        }
    }
}

impl<T> std::fmt::Debug for Wheel<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wheel")
            .field("len", &self.len())
            .field("tick", &self.tick())
            .field("elapsed", &self.elapsed)
            .field("now_ns", &self.now_ns)
            .finish_non_exhaustive()
    }
}
