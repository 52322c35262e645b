//! Timers: the timing wheel against `BinaryHeap`, `BTreeMap` and tokio-util's
//! `DelayQueue`, side by side in one run.
//!
//! ```text
//! cargo bench --bench timers                   # about 2-3 minutes
//! TIMERS_QUICK=1 cargo bench --bench timers    # smoke run, some seconds
//! ```
//!
//! Every row holds `pending` timers (1 k, 100 k, 1 M) with deadlines drawn at
//! random, cancels 90% of them in a shuffled order (the common fate of a
//! timeout in a server), and is timed in two ways:
//!
//! - *schedule+cancel*: schedule `pending` timers spread over 60 s, then
//!   cancel 90%. Nanoseconds per operation, over `1.9 * pending` operations.
//!   Between the two timed phases the handles to cancel are copied, untimed,
//!   into cancel order, so the cancel loop reads them in sequence (a random
//!   read of the harness's own handle table would add the same cache miss to
//!   every structure and hide their differences).
//! - *schedule+fire*: schedule `pending` timers spread over 500 ms, cancel
//!   90%, then fire the rest. Nanoseconds per operation, over `2 * pending`
//!   operations (schedule, cancel, fire). The wheel, the heap and the map run
//!   on a virtual clock stepped one tick (1 ms) at a time, so their lateness
//!   is exact and no time is spent waiting; each fired timer's lateness
//!   (the `now` that fired it minus its deadline) is kept, and a fire before
//!   the deadline counts as early. `DelayQueue` runs on tokio's real clock
//!   (paused time needs tokio's `test-util`, which this crate does not
//!   enable): the bench sleeps, untimed, until every deadline has passed and
//!   then times draining the queue, so its row shows no lateness.
//!
//! A last pair of rows, *fire (real clock)*, drives the wheel (with
//! [`corelane::clock::now_ns`] and `thread::sleep` until `next_deadline`)
//! and `DelayQueue` (awaiting `poll_expired`) on the real clock with 100 k
//! timers (90% cancelled) over 500 ms, starting 200 ms after setup, to show
//! accuracy under a real wake-up path: their lateness, measured after the
//! fire, adds the tick rounding (up to one tick) and the OS's wake-up delay
//! on a shared machine, so the one-tick bar is judged on the virtual-clock
//! rows.
//!
//! How each peer is used:
//!
//! - `BTreeMap<(deadline, seq), id>`: cancel removes the key; firing pops
//!   the first entry while it is due.
//! - `BinaryHeap` with lazy cancellation: each timer takes a slot in a side
//!   table (a vector with a free list) that holds a generation; the heap
//!   holds `(deadline, slot, generation)`. Cancel bumps the slot's
//!   generation and frees it, in O(1); a heap entry whose generation no
//!   longer matches is a tombstone, dropped when it reaches the top. The
//!   heap therefore keeps cancelled timers' memory until their deadline.
//! - `DelayQueue`: `insert_at` and `remove` inside a current-thread tokio
//!   runtime, `poll_expired` to fire.
//!
//! Rounds run interleaved (wheel, heap, map, delay queue, starting one
//! further each round); the table shows medians over rounds. Small sizes
//! repeat their workload (`200_000 / pending` times) inside one sample so a
//! sample lasts long enough to time. Lateness percentiles are exact, from
//! every fired timer of every round (an HdrHistogram's bucket rounding would
//! blur the one-tick limit). Bars compare the wheel with each peer as the
//! median of per-round ratios.
//!
//! Environment: `TIMERS_QUICK=1` (smoke run: 1 k and 100 k, 2 rounds),
//! `TIMERS_ROUNDS=n` (default 5). Results also go to
//! `$CARGO_TARGET_DIR/corelane-bench/timers.json` (default `target/`). Run as
//! a test (`cargo test --benches`), it does one small pass (1 k pending,
//! one round) and writes no JSON.

mod common;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::fmt::Write as _;
use std::future::poll_fn;
use std::hint::black_box;
use std::time::{Duration, Instant};
use std::{env, thread};

use common::{json_number, median};
use corelane::clock::now_ns;
use corelane::timer::{TimerHandle, Wheel};
use tokio_util::time::delay_queue::{DelayQueue, Key};

/// The tick of the wheel and the step of the virtual clock.
const TICK_NS: u64 = 1_000_000;
/// Deadlines of the schedule+cancel rows are spread over this many ticks.
const CANCEL_HORIZON_TICKS: u64 = 60_000;
/// Deadlines of the schedule+fire rows are spread over this many ticks.
const FIRE_HORIZON_TICKS: u64 = 500;
/// Timers per sample, at least: small sizes repeat their workload.
const TIMERS_PER_SAMPLE: usize = 200_000;
/// On the real clock, the first deadline comes this long after the start,
/// so that scheduling and cancelling are over before any timer is due.
const SETUP_MARGIN_NS: u64 = 200 * TICK_NS;
/// The share of timers cancelled, in tenths.
const CANCELLED_TENTHS: usize = 9;

const STRUCTURES: [Structure; 4] = [
    Structure::Wheel,
    Structure::Heap,
    Structure::Map,
    Structure::DelayQueue,
];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Structure {
    Wheel,
    Heap,
    Map,
    DelayQueue,
}

impl Structure {
    fn name(self) -> &'static str {
        match self {
            Structure::Wheel => "wheel",
            Structure::Heap => "binary-heap",
            Structure::Map => "btree-map",
            Structure::DelayQueue => "delay-queue",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Op {
    ScheduleCancel,
    ScheduleFire,
    FireRealClock,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::ScheduleCancel => "schedule+cancel",
            Op::ScheduleFire => "schedule+fire",
            Op::FireRealClock => "fire (real clock)",
        }
    }
}

/// A tiny xorshift generator, so every structure sees the same workload.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x % n
    }
}

/// What one sample does: the deadlines (ns after the start, timer `i` has
/// deadline `deadlines[i]`) and which timers to cancel, in order.
struct Workload {
    deadlines: Vec<u64>,
    cancel_order: Vec<u32>,
    horizon_ticks: u64,
}

impl Workload {
    fn new(seed: u64, pending: usize, horizon_ticks: u64) -> Workload {
        let mut rng = XorShift::new(seed);
        let deadlines = (0..pending)
            .map(|_| 1 + rng.below(horizon_ticks * TICK_NS))
            .collect();
        let mut order: Vec<u32> = (0..pending as u32).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i as u64 + 1) as usize);
        }
        order.truncate(pending * CANCELLED_TENTHS / 10);
        Workload {
            deadlines,
            cancel_order: order,
            horizon_ticks,
        }
    }

    fn survivors(&self) -> usize {
        self.deadlines.len() - self.cancel_order.len()
    }
}

/// A timer queue driven by a virtual clock, in nanoseconds.
trait Queue {
    type Handle: Copy;
    fn with_capacity(capacity: usize) -> Self;
    fn schedule(&mut self, deadline_ns: u64, id: u32) -> Self::Handle;
    fn cancel(&mut self, handle: Self::Handle) -> bool;
    /// Appends the ids of every timer due by `now_ns` to `fired`.
    fn fire(&mut self, now_ns: u64, fired: &mut Vec<u32>);
}

impl Queue for Wheel<u32> {
    type Handle = TimerHandle;

    fn with_capacity(capacity: usize) -> Self {
        Wheel::with_capacity(Duration::from_nanos(TICK_NS), capacity)
    }

    fn schedule(&mut self, deadline_ns: u64, id: u32) -> TimerHandle {
        Wheel::schedule(self, deadline_ns, id)
    }

    fn cancel(&mut self, handle: TimerHandle) -> bool {
        Wheel::cancel(self, handle).is_some()
    }

    fn fire(&mut self, now_ns: u64, fired: &mut Vec<u32>) {
        self.advance(now_ns, fired);
    }
}

/// `BTreeMap` keyed by `(deadline, seq)`.
struct MapQueue {
    map: BTreeMap<(u64, u64), u32>,
    seq: u64,
}

impl Queue for MapQueue {
    type Handle = (u64, u64);

    fn with_capacity(_: usize) -> Self {
        MapQueue {
            map: BTreeMap::new(),
            seq: 0,
        }
    }

    fn schedule(&mut self, deadline_ns: u64, id: u32) -> (u64, u64) {
        self.seq += 1;
        let key = (deadline_ns, self.seq);
        self.map.insert(key, id);
        key
    }

    fn cancel(&mut self, key: (u64, u64)) -> bool {
        self.map.remove(&key).is_some()
    }

    fn fire(&mut self, now_ns: u64, fired: &mut Vec<u32>) {
        while let Some(entry) = self.map.first_entry() {
            if entry.key().0 > now_ns {
                break;
            }
            fired.push(entry.remove());
        }
    }
}

/// `BinaryHeap` with lazy cancellation by generation (see the module doc).
struct HeapQueue {
    heap: BinaryHeap<Reverse<(u64, u32, u32)>>,
    /// Per slot: its generation and the id of the timer holding it.
    slots: Vec<(u32, u32)>,
    free: Vec<u32>,
}

impl Queue for HeapQueue {
    type Handle = (u32, u32);

    fn with_capacity(capacity: usize) -> Self {
        HeapQueue {
            heap: BinaryHeap::with_capacity(capacity),
            slots: Vec::with_capacity(capacity),
            free: Vec::with_capacity(capacity),
        }
    }

    fn schedule(&mut self, deadline_ns: u64, id: u32) -> (u32, u32) {
        let slot = self.free.pop().unwrap_or_else(|| {
            self.slots.push((0, 0));
            self.slots.len() as u32 - 1
        });
        let generation = self.slots[slot as usize].0;
        self.slots[slot as usize].1 = id;
        self.heap.push(Reverse((deadline_ns, slot, generation)));
        (slot, generation)
    }

    fn cancel(&mut self, (slot, generation): (u32, u32)) -> bool {
        let entry = &mut self.slots[slot as usize];
        if entry.0 != generation {
            return false;
        }
        entry.0 = entry.0.wrapping_add(1);
        self.free.push(slot);
        true
    }

    fn fire(&mut self, now_ns: u64, fired: &mut Vec<u32>) {
        while let Some(&Reverse((deadline, slot, generation))) = self.heap.peek() {
            if deadline > now_ns {
                break;
            }
            self.heap.pop();
            let entry = &mut self.slots[slot as usize];
            if entry.0 == generation {
                entry.0 = entry.0.wrapping_add(1);
                self.free.push(slot);
                fired.push(entry.1);
            }
        }
    }
}

/// One round of one row.
#[derive(Default)]
struct Sample {
    ns_per_op: Option<f64>,
    /// Lateness of every fired timer, in ns.
    lateness: Vec<u64>,
    early: u64,
}

/// The handles of the timers to cancel, in cancel order, gathered between
/// the timed phases so that the cancel loop reads them in sequence: a
/// random read of the harness's own handle table would add a cache miss per
/// cancel to every structure alike and blur the comparison.
fn victims<H: Copy>(handles: &[H], workload: &Workload, out: &mut Vec<H>) {
    out.clear();
    out.extend(workload.cancel_order.iter().map(|&id| handles[id as usize]));
}

fn schedule_cancel<Q: Queue>(workload: &Workload, reps: usize) -> Sample {
    let pending = workload.deadlines.len();
    let mut handles = Vec::with_capacity(pending);
    let mut doomed = Vec::with_capacity(pending);
    let mut elapsed = Duration::ZERO;
    for _ in 0..reps {
        let mut queue = Q::with_capacity(pending);
        handles.clear();
        let start = Instant::now();
        for (id, &deadline) in workload.deadlines.iter().enumerate() {
            handles.push(queue.schedule(deadline, id as u32));
        }
        elapsed += start.elapsed();

        victims(&handles, workload, &mut doomed);
        let start = Instant::now();
        let mut cancelled = 0;
        for &handle in &doomed {
            cancelled += usize::from(queue.cancel(handle));
        }
        elapsed += start.elapsed();
        assert_eq!(cancelled, workload.cancel_order.len());
        drop(black_box(queue));
    }
    let ops = reps * (pending + workload.cancel_order.len());
    Sample {
        ns_per_op: Some(elapsed.as_nanos() as f64 / ops as f64),
        ..Sample::default()
    }
}

fn schedule_fire<Q: Queue>(workload: &Workload, reps: usize) -> Sample {
    let pending = workload.deadlines.len();
    let mut handles = Vec::with_capacity(pending);
    let mut doomed = Vec::with_capacity(pending);
    let mut fired = Vec::with_capacity(pending);
    let mut sample = Sample {
        lateness: Vec::with_capacity(reps * workload.survivors()),
        ..Sample::default()
    };
    let mut elapsed = Duration::ZERO;
    for _ in 0..reps {
        let mut queue = Q::with_capacity(pending);
        handles.clear();
        let start = Instant::now();
        for (id, &deadline) in workload.deadlines.iter().enumerate() {
            handles.push(queue.schedule(deadline, id as u32));
        }
        elapsed += start.elapsed();

        victims(&handles, workload, &mut doomed);
        let start = Instant::now();
        for &handle in &doomed {
            queue.cancel(handle);
        }
        let before = sample.lateness.len();
        for tick in 0..=workload.horizon_ticks + 1 {
            let now = tick * TICK_NS;
            fired.clear();
            queue.fire(now, &mut fired);
            for &id in &fired {
                let deadline = workload.deadlines[id as usize];
                match now.checked_sub(deadline) {
                    Some(late) => sample.lateness.push(late),
                    None => sample.early += 1,
                }
            }
        }
        elapsed += start.elapsed();
        let fired = sample.lateness.len() - before + sample.early as usize;
        assert_eq!(fired, workload.survivors(), "wrong number of timers fired");
    }
    let ops = reps * 2 * pending;
    sample.ns_per_op = Some(elapsed.as_nanos() as f64 / ops as f64);
    sample
}

fn delay_queue_schedule_cancel(
    rt: &tokio::runtime::Runtime,
    workload: &Workload,
    reps: usize,
) -> Sample {
    rt.block_on(async {
        let pending = workload.deadlines.len();
        let mut keys: Vec<Key> = Vec::with_capacity(pending);
        let mut doomed = Vec::with_capacity(pending);
        let mut elapsed = Duration::ZERO;
        for _ in 0..reps {
            let base = tokio::time::Instant::now();
            let mut queue = DelayQueue::with_capacity(pending);
            keys.clear();
            let start = Instant::now();
            for (id, &deadline) in workload.deadlines.iter().enumerate() {
                keys.push(queue.insert_at(id as u32, base + Duration::from_nanos(deadline)));
            }
            elapsed += start.elapsed();

            victims(&keys, workload, &mut doomed);
            let start = Instant::now();
            for key in &doomed {
                black_box(queue.remove(key));
            }
            elapsed += start.elapsed();
            drop(black_box(queue));
        }
        let ops = reps * (pending + workload.cancel_order.len());
        Sample {
            ns_per_op: Some(elapsed.as_nanos() as f64 / ops as f64),
            ..Sample::default()
        }
    })
}

fn delay_queue_schedule_fire(
    rt: &tokio::runtime::Runtime,
    workload: &Workload,
    reps: usize,
) -> Sample {
    rt.block_on(async {
        let pending = workload.deadlines.len();
        let mut keys: Vec<Key> = Vec::with_capacity(pending);
        let mut doomed = Vec::with_capacity(pending);
        let mut queues = Vec::with_capacity(reps);
        let mut elapsed = Duration::ZERO;
        let base = tokio::time::Instant::now();
        for _ in 0..reps {
            let mut queue = DelayQueue::with_capacity(pending);
            keys.clear();
            let start = Instant::now();
            for (id, &deadline) in workload.deadlines.iter().enumerate() {
                keys.push(queue.insert_at(id as u32, base + Duration::from_nanos(deadline)));
            }
            elapsed += start.elapsed();

            victims(&keys, workload, &mut doomed);
            let start = Instant::now();
            for key in &doomed {
                black_box(queue.remove(key));
            }
            elapsed += start.elapsed();
            queues.push(queue);
        }

        // Waiting for the deadlines is not the queue's cost; draining is.
        let horizon = Duration::from_nanos((workload.horizon_ticks + 2) * TICK_NS);
        tokio::time::sleep_until(base + horizon).await;
        let mut sample = Sample::default();
        let start = Instant::now();
        let drain_start = tokio::time::Instant::now();
        let mut fired = 0;
        for queue in &mut queues {
            while let Some(expired) = poll_fn(|cx| queue.poll_expired(cx)).await {
                let deadline =
                    base + Duration::from_nanos(workload.deadlines[expired.into_inner() as usize]);
                sample.early += u64::from(deadline > drain_start);
                fired += 1;
            }
        }
        elapsed += start.elapsed();
        assert_eq!(
            fired,
            reps * workload.survivors(),
            "wrong number of timers fired"
        );
        sample.ns_per_op = Some(elapsed.as_nanos() as f64 / (reps * 2 * pending) as f64);
        sample
    })
}

/// The wheel on the real clock: sleep until `next_deadline`, then advance.
fn wheel_real_clock(workload: &Workload) -> Sample {
    let mut wheel = Wheel::with_capacity(Duration::from_nanos(TICK_NS), workload.deadlines.len());
    let base = now_ns() + SETUP_MARGIN_NS;
    let mut handles = Vec::with_capacity(workload.deadlines.len());
    for (id, &deadline) in workload.deadlines.iter().enumerate() {
        handles.push(wheel.schedule(base + deadline, id as u32));
    }
    for &id in &workload.cancel_order {
        wheel.cancel(handles[id as usize]);
    }

    let mut sample = Sample::default();
    let mut fired = Vec::new();
    while !wheel.is_empty() {
        let now = now_ns();
        fired.clear();
        wheel.advance(now, &mut fired);
        let fired_at = now_ns();
        for &id in &fired {
            let deadline = base + workload.deadlines[id as usize];
            match fired_at.checked_sub(deadline).filter(|_| deadline <= now) {
                Some(late) => sample.lateness.push(late),
                None => sample.early += 1,
            }
        }
        if let Some(next) = wheel.next_deadline() {
            let now = now_ns();
            if next > now {
                thread::sleep(Duration::from_nanos(next - now));
            }
        }
    }
    assert_eq!(
        sample.lateness.len() + sample.early as usize,
        workload.survivors()
    );
    sample
}

/// `DelayQueue` on the real clock: await `poll_expired`.
fn delay_queue_real_clock(rt: &tokio::runtime::Runtime, workload: &Workload) -> Sample {
    rt.block_on(async {
        let mut queue = DelayQueue::with_capacity(workload.deadlines.len());
        let base = tokio::time::Instant::now() + Duration::from_nanos(SETUP_MARGIN_NS);
        let mut keys = Vec::with_capacity(workload.deadlines.len());
        for (id, &deadline) in workload.deadlines.iter().enumerate() {
            keys.push(queue.insert_at(id as u32, base + Duration::from_nanos(deadline)));
        }
        for &id in &workload.cancel_order {
            queue.remove(&keys[id as usize]);
        }

        let mut sample = Sample::default();
        while let Some(expired) = poll_fn(|cx| queue.poll_expired(cx)).await {
            let fired_at = tokio::time::Instant::now();
            let deadline =
                base + Duration::from_nanos(workload.deadlines[expired.into_inner() as usize]);
            match fired_at.checked_duration_since(deadline) {
                Some(late) => sample.lateness.push(late.as_nanos() as u64),
                None => sample.early += 1,
            }
        }
        assert_eq!(
            sample.lateness.len() + sample.early as usize,
            workload.survivors()
        );
        sample
    })
}

/// One row of the table: every round of one structure, op and size.
struct Row {
    op: Op,
    structure: Structure,
    pending: usize,
    rounds: Vec<Sample>,
}

/// Lateness percentiles, in ticks.
struct Lateness {
    p50: f64,
    p99: f64,
    p999: f64,
    max: f64,
    count: usize,
}

impl Row {
    fn name(&self) -> String {
        format!("{}/{}", self.op.name(), self.structure.name())
    }

    fn ns_per_op(&self) -> Option<f64> {
        let values: Vec<f64> = self.rounds.iter().filter_map(|s| s.ns_per_op).collect();
        (!values.is_empty()).then(|| median(values))
    }

    fn early(&self) -> u64 {
        self.rounds.iter().map(|s| s.early).sum()
    }

    fn lateness(&self) -> Option<Lateness> {
        let mut all: Vec<u64> = self
            .rounds
            .iter()
            .flat_map(|s| s.lateness.iter().copied())
            .collect();
        if all.is_empty() {
            return None;
        }
        all.sort_unstable();
        let at = |q: f64| {
            all[((all.len() as f64 * q).ceil() as usize).clamp(1, all.len()) - 1] as f64
                / TICK_NS as f64
        };
        Some(Lateness {
            p50: at(0.50),
            p99: at(0.99),
            p999: at(0.999),
            max: at(1.0),
            count: all.len(),
        })
    }
}

struct Settings {
    rounds: usize,
    sizes: Vec<usize>,
    real_clock_pending: usize,
    real_clock_rounds: usize,
    write_json: bool,
}

impl Settings {
    fn from_env() -> Settings {
        // `cargo bench` passes `--bench`; `cargo test --benches` does not,
        // and then one small pass that writes nothing is enough (unoptimised,
        // DelayQueue checks each removal by walking its slot's list).
        let benching = env::args().any(|arg| arg == "--bench");
        let quick = env::var("TIMERS_QUICK").is_ok_and(|value| value != "0");
        let (sizes, rounds, real_clock_pending) = match (benching, quick) {
            (false, _) => (vec![1_000], 1, 1_000),
            (true, true) => (vec![1_000, 100_000], 2, 10_000),
            (true, false) => (vec![1_000, 100_000, 1_000_000], 5, 100_000),
        };
        let rounds = env::var("TIMERS_ROUNDS")
            .ok()
            .and_then(|value| value.parse().ok())
            .filter(|&rounds| rounds > 0)
            .unwrap_or(rounds);
        Settings {
            rounds,
            sizes,
            real_clock_pending,
            real_clock_rounds: if benching && !quick { 2 } else { 1 },
            write_json: benching,
        }
    }
}

/// A claim checked by the run: `value` against `limit`.
struct Bar {
    text: String,
    value: f64,
    limit: f64,
    /// Whether `value` must be at least (true) or at most (false) `limit`.
    at_least: bool,
}

impl Bar {
    fn met(&self) -> bool {
        if self.at_least {
            self.value >= self.limit
        } else {
            self.value <= self.limit
        }
    }
}

fn main() {
    let settings = Settings::from_env();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("tokio runtime");
    let started = Instant::now();
    let mut rows: Vec<Row> = Vec::new();

    for &pending in &settings.sizes {
        let reps = (TIMERS_PER_SAMPLE / pending).max(1);
        let first = rows.len();
        for op in [Op::ScheduleCancel, Op::ScheduleFire] {
            for structure in STRUCTURES {
                rows.push(Row {
                    op,
                    structure,
                    pending,
                    rounds: Vec::new(),
                });
            }
        }
        for round in 0..settings.rounds {
            let seed = (pending as u64) << 8 | round as u64;
            let cancel_load = Workload::new(seed, pending, CANCEL_HORIZON_TICKS);
            let fire_load = Workload::new(seed ^ 0x5EED, pending, FIRE_HORIZON_TICKS);
            for k in 0..STRUCTURES.len() {
                let structure = STRUCTURES[(k + round) % STRUCTURES.len()];
                let (cancel, fire) = match structure {
                    Structure::Wheel => (
                        schedule_cancel::<Wheel<u32>>(&cancel_load, reps),
                        schedule_fire::<Wheel<u32>>(&fire_load, reps),
                    ),
                    Structure::Heap => (
                        schedule_cancel::<HeapQueue>(&cancel_load, reps),
                        schedule_fire::<HeapQueue>(&fire_load, reps),
                    ),
                    Structure::Map => (
                        schedule_cancel::<MapQueue>(&cancel_load, reps),
                        schedule_fire::<MapQueue>(&fire_load, reps),
                    ),
                    Structure::DelayQueue => (
                        delay_queue_schedule_cancel(&rt, &cancel_load, reps),
                        delay_queue_schedule_fire(&rt, &fire_load, reps),
                    ),
                };
                let index = STRUCTURES.iter().position(|&s| s == structure).unwrap();
                rows[first + index].rounds.push(cancel);
                rows[first + STRUCTURES.len() + index].rounds.push(fire);
            }
        }
        eprintln!(
            "timers: {pending} pending done after {:.1?}",
            started.elapsed()
        );
    }

    let pending = settings.real_clock_pending;
    let mut wheel_row = Row {
        op: Op::FireRealClock,
        structure: Structure::Wheel,
        pending,
        rounds: Vec::new(),
    };
    let mut queue_row = Row {
        op: Op::FireRealClock,
        structure: Structure::DelayQueue,
        pending,
        rounds: Vec::new(),
    };
    for round in 0..settings.real_clock_rounds {
        let load = Workload::new(0xC10C + round as u64, pending, FIRE_HORIZON_TICKS);
        if round % 2 == 0 {
            wheel_row.rounds.push(wheel_real_clock(&load));
            queue_row.rounds.push(delay_queue_real_clock(&rt, &load));
        } else {
            queue_row.rounds.push(delay_queue_real_clock(&rt, &load));
            wheel_row.rounds.push(wheel_real_clock(&load));
        }
    }
    rows.push(wheel_row);
    rows.push(queue_row);
    eprintln!("timers: real clock done after {:.1?}", started.elapsed());

    let bars = bars(&rows, *settings.sizes.last().unwrap());
    print_table(&settings, &rows, &bars);
    if settings.write_json {
        match common::write_json("timers", &json(&settings, &rows, &bars)) {
            Ok(path) => println!("\nwrote {}", path.display()),
            Err(error) => eprintln!("could not write timers.json: {error}"),
        }
    }
}

fn find(rows: &[Row], op: Op, structure: Structure, pending: usize) -> &Row {
    rows.iter()
        .find(|row| row.op == op && row.structure == structure && row.pending == pending)
        .expect("row")
}

/// The median over rounds of `peer / wheel` for schedule+cancel.
fn speedup(rows: &[Row], peer: Structure, pending: usize) -> f64 {
    let wheel = find(rows, Op::ScheduleCancel, Structure::Wheel, pending);
    let peer = find(rows, Op::ScheduleCancel, peer, pending);
    let ratios = wheel
        .rounds
        .iter()
        .zip(&peer.rounds)
        .filter_map(|(w, p)| Some(p.ns_per_op? / w.ns_per_op?))
        .collect();
    median(ratios)
}

fn bars(rows: &[Row], largest: usize) -> Vec<Bar> {
    let mut bars = Vec::new();
    for peer in [Structure::Map, Structure::DelayQueue] {
        bars.push(Bar {
            text: format!(
                "schedule+cancel at {largest} pending: wheel vs {} (x faster)",
                peer.name()
            ),
            value: speedup(rows, peer, largest),
            limit: 3.0,
            at_least: true,
        });
    }
    bars.push(Bar {
        text: "timers fired early, every row".to_owned(),
        value: rows.iter().map(Row::early).sum::<u64>() as f64,
        limit: 0.0,
        at_least: false,
    });
    let worst = rows
        .iter()
        .filter(|row| row.op == Op::ScheduleFire && row.structure == Structure::Wheel)
        .filter_map(|row| row.lateness())
        .map(|lateness| lateness.p999)
        .fold(0.0, f64::max);
    bars.push(Bar {
        text: "wheel p99.9 lateness, virtual clock, every size (ticks)".to_owned(),
        value: worst,
        limit: 1.0,
        at_least: false,
    });
    bars
}

fn print_table(settings: &Settings, rows: &[Row], bars: &[Bar]) {
    println!(
        "\ntimers: tick {} ms, {} rounds (median), 90% cancelled",
        TICK_NS / 1_000_000,
        settings.rounds
    );
    println!(
        "{:<18} {:<12} {:>9} {:>10} {:>8} {:>8} {:>8} {:>8} {:>9} {:>6}",
        "op", "structure", "pending", "ns/op", "p50", "p99", "p99.9", "max", "fired", "early"
    );
    println!(
        "{:<18} {:<12} {:>9} {:>10} {:^35} {:>9} {:>6}",
        "", "", "", "", "lateness (ticks)", "", ""
    );
    for row in rows {
        let ns = row
            .ns_per_op()
            .map_or_else(|| "-".to_owned(), |ns| format!("{ns:.1}"));
        // Truncated, not rounded: 0.9999 ticks must not read as 1.000.
        let ticks = |value: f64| format!("{:.3}", (value * 1000.0).floor() / 1000.0);
        let (p50, p99, p999, max, count) = match row.lateness() {
            Some(l) => (
                ticks(l.p50),
                ticks(l.p99),
                ticks(l.p999),
                ticks(l.max),
                l.count.to_string(),
            ),
            None => Default::default(),
        };
        println!(
            "{:<18} {:<12} {:>9} {:>10} {:>8} {:>8} {:>8} {:>8} {:>9} {:>6}",
            row.op.name(),
            row.structure.name(),
            row.pending,
            ns,
            p50,
            p99,
            p999,
            max,
            count,
            row.early()
        );
    }
    println!("\nbars:");
    for bar in bars {
        println!(
            "  [{}] {:<66} {:>7.3} ({} {})",
            if bar.met() { "met   " } else { "MISSED" },
            bar.text,
            bar.value,
            if bar.at_least { ">=" } else { "<=" },
            bar.limit
        );
    }
}

fn json(settings: &Settings, rows: &[Row], bars: &[Bar]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{{");
    let _ = writeln!(out, "  \"bench\": \"timers\",");
    let _ = writeln!(out, "  \"tick_ns\": {TICK_NS},");
    let _ = writeln!(out, "  \"rounds\": {},", settings.rounds);
    let _ = writeln!(out, "  \"cancelled_share\": 0.9,");
    let _ = writeln!(out, "  \"rows\": [");
    for (index, row) in rows.iter().enumerate() {
        let lateness = row.lateness();
        // Lateness in ticks is a whole number of ns over 1e6: print it all.
        let pick = |f: fn(&Lateness) -> f64| {
            lateness
                .as_ref()
                .map_or_else(|| "null".to_owned(), |l| format!("{}", f(l)))
        };
        let rounds: Vec<String> = row
            .rounds
            .iter()
            .map(|s| json_number(s.ns_per_op))
            .collect();
        let _ = writeln!(
            out,
            "    {{\"name\": \"{}\", \"op\": \"{}\", \"structure\": \"{}\", \"pending\": {}, \
             \"ns_per_op\": {}, \"ns_per_op_rounds\": [{}], \"p50_lateness_ticks\": {}, \
             \"p99_lateness_ticks\": {}, \"p999_lateness_ticks\": {}, \
             \"max_lateness_ticks\": {}, \"fired\": {}, \"early_fires\": {}}}{}",
            row.name(),
            row.op.name(),
            row.structure.name(),
            row.pending,
            json_number(row.ns_per_op()),
            rounds.join(", "),
            pick(|l| l.p50),
            pick(|l| l.p99),
            pick(|l| l.p999),
            pick(|l| l.max),
            lateness.as_ref().map_or(0, |l| l.count),
            row.early(),
            if index + 1 < rows.len() { "," } else { "" }
        );
    }
    let _ = writeln!(out, "  ],");
    let _ = writeln!(out, "  \"bars\": [");
    for (index, bar) in bars.iter().enumerate() {
        let _ = writeln!(
            out,
            "    {{\"bar\": \"{}\", \"value\": {}, \"limit\": {}, \"met\": {}}}{}",
            bar.text,
            json_number(Some(bar.value)),
            json_number(Some(bar.limit)),
            bar.met(),
            if index + 1 < bars.len() { "," } else { "" }
        );
    }
    let _ = writeln!(out, "  ]");
    let _ = writeln!(out, "}}");
    out
}
