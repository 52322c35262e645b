//! Behaviour of the timing wheel (`corelane::timer::Wheel`): checked
//! against a sorted-map model under random operations, and case by case
//! for far deadlines (case C13), stale handles and large counts.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use corelane::timer::{TimerHandle, Wheel};

/// The system allocator, counting the allocations of threads that ask.
struct CountingAllocator;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn note_allocation() {
    // `try_with`: a thread being torn down may still allocate.
    let _ = COUNTING.try_with(|counting| {
        if counting.get() {
            ALLOCATIONS.with(|count| count.set(count.get() + 1));
        }
    });
}

// SAFETY: every method forwards to `System` unchanged, so `System`'s
// guarantees hold; the counting touches only const-initialised
// thread-locals, which never allocate.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: the caller upholds `GlobalAlloc::alloc_zeroed`'s contract.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        // SAFETY: `ptr` came from this allocator, which is `System`, and the
        // caller upholds `GlobalAlloc::realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, which is `System`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// How many allocations this thread makes while running `work`.
fn allocations_in(work: impl FnOnce()) -> u64 {
    ALLOCATIONS.with(|count| count.set(0));
    COUNTING.with(|counting| counting.set(true));
    work();
    COUNTING.with(|counting| counting.set(false));
    ALLOCATIONS.with(Cell::get)
}

/// Ticks spanned by the wheel's levels, per its documentation.
const SPAN_TICKS: u64 = 1 << 36;

const MS: u64 = 1_000_000;

/// A tiny xorshift generator, so runs repeat from their seed.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A number in `0..n` (0 when `n` is 0).
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}

/// What the wheel promises, written plainly: a timer scheduled for `d` ns is
/// due at tick `ceil(d / tick)`, or at once if `d` is not after the wheel's
/// `now`; `advance(now)` fires everything due by tick `floor(now / tick)`,
/// and `advance(u64::MAX)` fires everything.
struct Model {
    tick: u64,
    now: u64,
    /// Advances so far.
    epoch: u64,
    /// (due tick, sequence number) -> (deadline in ns, epoch when scheduled).
    pending: BTreeMap<(u64, u64), (u64, u64)>,
    /// Sequence number -> due tick, for the pending timers.
    due_of: BTreeMap<u64, u64>,
}

impl Model {
    fn new(tick: u64) -> Self {
        Model {
            tick,
            now: 0,
            epoch: 0,
            pending: BTreeMap::new(),
            due_of: BTreeMap::new(),
        }
    }

    fn schedule(&mut self, deadline: u64, seq: u64) {
        let due = if deadline <= self.now {
            self.now / self.tick
        } else {
            deadline.div_ceil(self.tick)
        };
        self.pending.insert((due, seq), (deadline, self.epoch));
        self.due_of.insert(seq, due);
    }

    fn cancel(&mut self, seq: u64) -> Option<u64> {
        let due = self.due_of.remove(&seq)?;
        self.pending.remove(&(due, seq));
        Some(seq)
    }

    /// The timers an advance to `now` must fire, removed from the model.
    fn advance(&mut self, now: u64) -> BTreeMap<(u64, u64), (u64, u64)> {
        self.now = self.now.max(now);
        self.epoch += 1;
        let target = if self.now == u64::MAX {
            u64::MAX
        } else {
            self.now / self.tick
        };
        let later = match target.checked_add(1) {
            Some(next) => self.pending.split_off(&(next, 0)),
            None => BTreeMap::new(),
        };
        let fired = std::mem::replace(&mut self.pending, later);
        for (_, seq) in fired.keys() {
            self.due_of.remove(seq);
        }
        fired
    }

    fn earliest_due(&self) -> Option<u64> {
        self.pending.keys().next().map(|&(due, _)| due)
    }
}

/// A deadline in ns for the model test: in the past, near, mid-range, past
/// the top level, on a tick boundary, or at the end of `u64`.
fn random_deadline(rng: &mut XorShift, now: u64, tick: u64) -> u64 {
    let ticks = |n: u64| n.saturating_mul(tick);
    match rng.below(20) {
        0..=1 => now - rng.below(now.saturating_add(1)),
        2..=8 => now.saturating_add(rng.below(ticks(130).max(1))),
        9..=12 => now.saturating_add(rng.below(ticks(1 << 18))),
        13..=14 => now.saturating_add(rng.below(ticks(SPAN_TICKS * 4))),
        15..=17 => ticks((now / tick).saturating_add(rng.below(70))),
        18 => now.saturating_add(ticks(SPAN_TICKS - 2 + rng.below(4))),
        _ => u64::MAX - rng.below(3 * tick),
    }
}

/// The next `now` for the model test: mostly small steps, sometimes the
/// wheel's own `next_deadline`, a huge jump, or a step back in time.
fn random_now(rng: &mut XorShift, now: u64, tick: u64, wheel_next: Option<u64>) -> u64 {
    let ticks = |n: u64| n.saturating_mul(tick);
    match rng.below(20) {
        0 => now,
        1..=2 => now.saturating_sub(rng.below(ticks(3))),
        3..=9 => now.saturating_add(rng.below(ticks(3))),
        10..=12 => now.saturating_add(rng.below(ticks(1 << 13))),
        13..=15 => wheel_next.unwrap_or(now),
        16..=17 => wheel_next.map_or(now, |next| next.saturating_sub(1)),
        18 => now.saturating_add(rng.below(ticks(SPAN_TICKS * 3))),
        _ => now.saturating_add(rng.below(ticks(1 << 24))),
    }
}

fn check_next_deadline(wheel: &Wheel<u64>, model: &Model) {
    match (wheel.next_deadline(), model.earliest_due()) {
        (None, None) => {}
        (Some(next), Some(due)) => {
            if due <= model.now / model.tick {
                assert_eq!(next, model.now, "a due timer should make next_deadline now");
            } else {
                // Not in the past, and not after the earliest timer becomes
                // fireable.
                assert!(
                    next > model.now,
                    "next_deadline {next} not after now {}",
                    model.now
                );
                assert!(
                    next <= due.saturating_mul(model.tick),
                    "next_deadline {next} after earliest due tick {due} (tick {})",
                    model.tick
                );
            }
        }
        (wheel_says, model_says) => {
            panic!("next_deadline {wheel_says:?} but model's earliest due tick {model_says:?}")
        }
    }
}

/// What a model run exercised, so the test can tell it reached every path.
#[derive(Default, Debug)]
struct Coverage {
    fired: u64,
    /// Fired after being scheduled beyond the wheel's span.
    fired_from_overflow: u64,
    cancelled: u64,
    stale_cancels: u64,
}

/// Runs `ops` random operations on a wheel and the model side by side.
fn run_model(seed: u64, tick: u64, ops: usize, coverage: &mut Coverage) {
    let mut rng = XorShift::new(seed);
    let mut wheel = Wheel::new(Duration::from_nanos(tick));
    let mut model = Model::new(tick);
    let mut handles: Vec<(TimerHandle, u64)> = Vec::new();
    let mut fired = Vec::new();
    let mut seq = 0u64;
    // Sequence number -> whether it was scheduled beyond the wheel's span.
    let mut far = Vec::new();

    for _ in 0..ops {
        match rng.below(10) {
            0..=4 => {
                let deadline = random_deadline(&mut rng, model.now, tick);
                let handle = wheel.schedule(deadline, seq);
                model.schedule(deadline, seq);
                far.push(deadline.div_ceil(tick).saturating_sub(model.now / tick) >= SPAN_TICKS);
                handles.push((handle, seq));
                seq += 1;
            }
            5..=6 if !handles.is_empty() => {
                // Half the time a recent handle, which is likely live; else
                // any handle ever issued, which is likely stale.
                let len = handles.len() as u64;
                let pick = if rng.below(2) == 0 {
                    len - 1 - rng.below(len.min(16))
                } else {
                    rng.below(len)
                };
                let (handle, seq) = handles[pick as usize];
                let cancelled = wheel.cancel(handle);
                assert_eq!(cancelled, model.cancel(seq), "cancel of timer {seq}");
                match cancelled {
                    Some(_) => coverage.cancelled += 1,
                    None => coverage.stale_cancels += 1,
                }
            }
            _ => {
                let previous_now = model.now;
                let now = random_now(&mut rng, model.now, tick, wheel.next_deadline());
                fired.clear();
                let count = wheel.advance(now, &mut fired);
                let expected = model.advance(now);
                assert_eq!(count, fired.len());

                let expected_seqs: HashSet<u64> = expected.keys().map(|&(_, s)| s).collect();
                let fired_seqs: HashSet<u64> = fired.iter().copied().collect();
                assert_eq!(fired_seqs.len(), fired.len(), "a timer fired twice");
                assert_eq!(
                    fired_seqs, expected_seqs,
                    "seed {seed} tick {tick} now {now}"
                );

                let due_of: BTreeMap<u64, (u64, u64, u64)> = expected
                    .iter()
                    .map(|(&(due, s), &(deadline, epoch))| (s, (due, deadline, epoch)))
                    .collect();
                coverage.fired += fired.len() as u64;
                let mut last_due = 0;
                for s in &fired {
                    coverage.fired_from_overflow += u64::from(far[*s as usize]);
                    let (due, deadline, epoch) = due_of[s];
                    assert!(due >= last_due, "timer {s} fired out of deadline order");
                    last_due = due;
                    assert!(deadline <= model.now, "timer {s} fired early");
                    if epoch + 1 < model.epoch {
                        // It was pending at the previous advance and did not
                        // fire then, so it is less than a tick late.
                        assert!(previous_now < deadline.saturating_add(tick));
                    }
                }
            }
        }
        assert_eq!(wheel.len(), model.due_of.len());
        assert_eq!(wheel.is_empty(), model.due_of.is_empty());
        check_next_deadline(&wheel, &model);
    }

    // Everything left fires at the end of time, exactly once.
    fired.clear();
    wheel.advance(u64::MAX, &mut fired);
    let rest = model.advance(u64::MAX);
    assert_eq!(fired.len(), rest.len());
    assert!(wheel.is_empty());
}

#[test]
fn random_operations_match_a_sorted_map_model() {
    let (seeds, ops) = if cfg!(miri) { (2, 300) } else { (200, 3000) };
    let mut coverage = Coverage::default();
    for seed in 0..seeds {
        for tick in [1, 7, 1000, MS] {
            run_model(seed, tick, ops, &mut coverage);
        }
    }
    eprintln!("{coverage:?}");
    let runs = seeds * 4;
    assert!(coverage.fired > runs * ops as u64 / 10, "{coverage:?}");
    assert!(coverage.cancelled > runs * ops as u64 / 50, "{coverage:?}");
    assert!(coverage.stale_cancels > runs, "{coverage:?}");
    assert!(coverage.fired_from_overflow > runs / 2, "{coverage:?}");
}

#[test]
fn delay_longer_than_the_wheel_fires_once_and_not_early() {
    // Case C13: three whole spans of the wheel and then some, off a tick
    // boundary by one nanosecond.
    let mut wheel = Wheel::new(Duration::from_millis(1));
    let deadline = (3 * SPAN_TICKS + 12_345) * MS + 1;
    let fires_at = (3 * SPAN_TICKS + 12_346) * MS;
    wheel.schedule(deadline, "far");

    let mut fired = Vec::new();
    for now in [
        0,
        SPAN_TICKS * MS,
        2 * SPAN_TICKS * MS + 5,
        3 * SPAN_TICKS * MS,
    ] {
        wheel.advance(now, &mut fired);
        assert!(fired.is_empty(), "fired at {now}, before {deadline}");
        assert!(wheel.next_deadline().unwrap() <= fires_at);
    }
    wheel.advance(deadline - 1, &mut fired);
    wheel.advance(deadline, &mut fired);
    wheel.advance(fires_at - 1, &mut fired);
    assert!(fired.is_empty());
    assert_eq!(wheel.next_deadline(), Some(fires_at));

    wheel.advance(fires_at, &mut fired);
    assert_eq!(fired, ["far"]);
    wheel.advance(u64::MAX, &mut fired);
    assert_eq!(fired, ["far"]);
    assert!(wheel.is_empty());
}

#[test]
fn delay_longer_than_the_wheel_fires_once_when_jumped_over() {
    // With 1 ns ticks the wheel spans about 69 s; an hour is far beyond.
    let hour = 3_600_000_000_000;
    let mut wheel = Wheel::new(Duration::from_nanos(1));
    wheel.schedule(hour, 1);
    wheel.schedule(2 * hour, 2);

    let mut fired = Vec::new();
    wheel.advance(hour - 1, &mut fired);
    assert!(fired.is_empty());
    wheel.advance(hour + 10 * SPAN_TICKS, &mut fired);
    assert_eq!(fired, [1]);
    wheel.advance(2 * hour, &mut fired);
    assert_eq!(fired, [1, 2]);
}

#[test]
fn deadline_at_the_end_of_time_does_not_panic() {
    let mut wheel = Wheel::new(Duration::from_millis(1));
    let handle = wheel.schedule(u64::MAX, 'z');
    wheel.schedule(u64::MAX - 1, 'y');
    let mut fired = Vec::new();
    wheel.advance(u64::MAX - 2 * MS, &mut fired);
    assert!(fired.is_empty());
    assert_eq!(wheel.cancel(handle), Some('z'));
    wheel.advance(u64::MAX, &mut fired);
    assert_eq!(fired, ['y']);
    // Past the last tick, anything scheduled is in the past.
    wheel.schedule(u64::MAX, 'x');
    wheel.advance(u64::MAX, &mut fired);
    assert_eq!(fired, ['y', 'x']);
}

#[test]
fn past_deadline_fires_on_next_advance() {
    let mut wheel = Wheel::new(Duration::from_millis(1));
    let mut fired = Vec::new();
    wheel.advance(10 * MS + MS / 2, &mut fired);

    // 10.2 ms is before the wheel's now (10.5 ms) though inside its tick.
    wheel.schedule(10 * MS + MS / 5, "inside the current tick");
    wheel.schedule(3 * MS, "long ago");
    wheel.schedule(0, "at the epoch");
    assert_eq!(wheel.next_deadline(), Some(10 * MS + MS / 2));
    wheel.advance(10 * MS + MS / 2, &mut fired);
    fired.sort();
    assert_eq!(
        fired,
        ["at the epoch", "inside the current tick", "long ago"]
    );
}

#[test]
fn never_fires_before_its_deadline_within_a_tick() {
    let mut wheel = Wheel::new(Duration::from_millis(1));
    let mut fired = Vec::new();
    wheel.schedule(5 * MS + 1, "just after a boundary");
    wheel.schedule(6 * MS, "on a boundary");
    for now in (5 * MS..6 * MS).step_by(100_000) {
        wheel.advance(now, &mut fired);
    }
    wheel.advance(6 * MS - 1, &mut fired);
    assert!(fired.is_empty());
    wheel.advance(6 * MS, &mut fired);
    fired.sort();
    assert_eq!(fired, ["just after a boundary", "on a boundary"]);
}

#[test]
fn fires_in_deadline_order_across_levels() {
    let mut wheel = Wheel::new(Duration::from_millis(1));
    let deadlines = [
        900_000,
        3,
        64,
        63,
        4_096,
        65,
        262_143,
        1,
        70_000,
        SPAN_TICKS + 7,
    ];
    for &ticks in &deadlines {
        wheel.schedule(ticks * MS, ticks);
    }
    let mut fired = Vec::new();
    wheel.advance(u64::MAX, &mut fired);
    let mut sorted = deadlines.to_vec();
    sorted.sort();
    assert_eq!(fired, sorted);
}

#[test]
fn next_deadline_is_the_start_of_the_earliest_slot() {
    let mut wheel = Wheel::new(Duration::from_millis(1));
    assert_eq!(wheel.next_deadline(), None);
    // Tick 100 lies in level 1 (slot 1 spans ticks 64..128) while the wheel
    // stands at tick 0: the answer is conservative.
    wheel.schedule(100 * MS, ());
    assert_eq!(wheel.next_deadline(), Some(64 * MS));
    let mut fired = Vec::new();
    wheel.advance(64 * MS, &mut fired);
    assert!(fired.is_empty());
    assert_eq!(wheel.next_deadline(), Some(100 * MS));
    wheel.advance(100 * MS, &mut fired);
    assert_eq!(fired.len(), 1);
    assert_eq!(wheel.next_deadline(), None);
}

#[test]
fn time_going_backwards_is_ignored() {
    let mut wheel = Wheel::new(Duration::from_millis(1));
    let mut fired = Vec::new();
    wheel.advance(50 * MS, &mut fired);
    wheel.schedule(52 * MS, 1);
    wheel.advance(10 * MS, &mut fired);
    assert_eq!(wheel.now_ns(), 50 * MS);
    assert!(fired.is_empty());
    wheel.advance(52 * MS, &mut fired);
    assert_eq!(fired, [1]);
}

#[test]
fn cancel_after_fire_returns_none() {
    let mut wheel = Wheel::new(Duration::from_millis(1));
    let handle = wheel.schedule(MS, "once");
    let mut fired = Vec::new();
    wheel.advance(MS, &mut fired);
    assert_eq!(fired, ["once"]);
    assert_eq!(wheel.cancel(handle), None);
}

#[test]
fn double_cancel_returns_none() {
    let mut wheel = Wheel::new(Duration::from_millis(1));
    let handle = wheel.schedule(MS, 7);
    let other = wheel.schedule(MS, 8);
    assert_eq!(wheel.cancel(handle), Some(7));
    assert_eq!(wheel.cancel(handle), None);
    assert_eq!(wheel.len(), 1);
    assert_eq!(wheel.cancel(other), Some(8));
}

#[test]
fn stale_handle_does_not_cancel_the_timer_that_reused_its_slot() {
    let mut wheel = Wheel::new(Duration::from_millis(1));
    let old = wheel.schedule(MS, "old");
    assert_eq!(wheel.cancel(old), Some("old"));
    // The freed entry is reused at once by the next timer.
    let new = wheel.schedule(2 * MS, "new");
    assert_ne!(old, new);
    assert_eq!(wheel.cancel(old), None);
    assert_eq!(wheel.len(), 1);

    // The same after a fire.
    let mut fired = Vec::new();
    wheel.advance(2 * MS, &mut fired);
    let newer = wheel.schedule(3 * MS, "newer");
    assert_eq!(wheel.cancel(new), None);
    assert_eq!(wheel.cancel(newer), Some("newer"));
}

#[test]
fn panicking_callback_leaves_the_rest_pending() {
    let mut wheel = Wheel::new(Duration::from_millis(1));
    for ms in 1..=4 {
        wheel.schedule(ms * MS, ms);
    }
    let mut seen = Vec::new();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wheel.advance_with(10 * MS, |ms| {
            seen.push(ms);
            assert_ne!(ms, 2, "refusing timer 2");
        })
    }));
    assert!(result.is_err());
    assert_eq!(seen, [1, 2]);
    assert_eq!(wheel.len(), 2);

    let mut fired = Vec::new();
    wheel.advance(10 * MS, &mut fired);
    assert_eq!(fired, [3, 4]);
    assert!(wheel.is_empty());
}

#[test]
fn million_timers_mostly_cancelled_fire_exact_counts() {
    let count: u64 = if cfg!(miri) { 2_000 } else { 1_000_000 };
    let horizon_ms = if cfg!(miri) { 200 } else { 10_000 };
    let mut rng = XorShift::new(42);
    let mut wheel = Wheel::with_capacity(Duration::from_millis(1), count as usize);
    let mut deadlines = Vec::with_capacity(count as usize);
    let mut handles = Vec::with_capacity(count as usize);
    for i in 0..count {
        let deadline = 1 + rng.below(horizon_ms * MS);
        deadlines.push(deadline);
        handles.push(wheel.schedule(deadline, i));
    }
    assert_eq!(wheel.len() as u64, count);

    let mut cancelled = 0;
    for (i, &handle) in handles.iter().enumerate() {
        if i % 10 != 0 {
            assert_eq!(wheel.cancel(handle), Some(i as u64));
            cancelled += 1;
        }
    }
    assert_eq!(cancelled, count - count / 10);
    assert_eq!(wheel.len() as u64, count / 10);

    let mut fired = Vec::new();
    let mut seen = vec![false; count as usize];
    for ms in 0..=horizon_ms {
        fired.clear();
        let now = ms * MS;
        wheel.advance(now, &mut fired);
        for &i in &fired {
            assert_eq!(i % 10, 0, "cancelled timer {i} fired");
            assert!(deadlines[i as usize] <= now, "timer {i} fired early");
            assert!(
                now - deadlines[i as usize] < MS,
                "timer {i} more than a tick late"
            );
            assert!(
                !std::mem::replace(&mut seen[i as usize], true),
                "timer {i} fired twice"
            );
        }
    }
    assert_eq!(seen.iter().filter(|&&s| s).count() as u64, count / 10);
    assert!(wheel.is_empty());
}

#[test]
fn steady_state_does_not_allocate() {
    let rounds = if cfg!(miri) { 5 } else { 500 };
    let batch = 256;
    let mut rng = XorShift::new(7);
    let mut wheel = Wheel::with_capacity(Duration::from_millis(1), batch);
    let mut handles = Vec::with_capacity(batch);
    let mut fired = Vec::with_capacity(batch);
    let mut now = 0;
    let mut total_fired = 0;

    let allocations = allocations_in(|| {
        for _ in 0..rounds {
            handles.clear();
            for i in 0..batch as u64 {
                // Every eighth timer lies beyond the wheel's span.
                let ticks = if i % 8 == 0 {
                    SPAN_TICKS + rng.below(SPAN_TICKS)
                } else {
                    rng.below(100_000)
                };
                handles.push(wheel.schedule(now + ticks * MS, i));
            }
            for (i, &handle) in handles.iter().enumerate() {
                if i % 4 != 1 {
                    assert!(wheel.cancel(handle).is_some());
                }
            }
            now += 100_000 * MS;
            fired.clear();
            total_fired += wheel.advance(now, &mut fired);
        }
    });
    assert_eq!(allocations, 0);
    assert_eq!(total_fired, rounds * batch / 4);
    assert!(wheel.is_empty());
}
