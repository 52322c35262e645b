//! Buffer pools against the system allocator: the pools section of
//! `corelane bench`, and the loops the cargo bench `benches/pool.rs`
//! shares with it.
//!
//! For 64 B, 4 KiB and 64 KiB buffers, two comparisons:
//!
//! - *owning core*: one thread takes a buffer, writes its first byte and
//!   drops it, over and over: [`Pool::take`] and the drop back to the free
//!   list, against `Vec::with_capacity`, a push and the drop (malloc and
//!   free).
//! - *across cores*: side A takes buffers and passes them through a typed
//!   lane to side B (another CPU), which drops them: pooled buffers go
//!   home through the return queue, `Vec`s are freed by B into memory A
//!   allocated. Time from A's first take to B's last drop, per buffer.

use std::hint::black_box;
use std::time::Instant;

use super::ipc::Sides;
use super::report::median;
use super::{Report, Settings};
use crate::lane::typed;
use crate::pool::{Pool, PoolConfig};

/// Buffer sizes compared, bytes.
pub const SIZES: [usize; 3] = [64, 4096, 65536];

/// Slots of the lane between the two sides of a cross-core run.
pub const RELAY_SLOTS: usize = 256;

/// The pools the comparisons use: room for every buffer a cross-core run
/// has in flight (the lane plus the receiver's batch), so no take falls
/// back to the allocator.
pub fn config() -> PoolConfig {
    PoolConfig::uniform(65536, 1 << 30)
}

/// Who hands out the buffers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Allocator {
    /// A corelane [`Pool`].
    Pool,
    /// `Vec::with_capacity`, the system allocator.
    Vec,
}

/// `size` for people: `64 B`, `4 KiB`.
pub fn size_name(size: usize) -> String {
    if size >= 1024 {
        format!("{} KiB", size / 1024)
    } else {
        format!("{size} B")
    }
}

/// `ops` takes and drops of `size` bytes from `pool` on its own thread.
/// Out of line so that instruction counters can count it alone
/// (`--toggle-collect='*take_and_return*'`).
#[inline(never)]
pub fn take_and_return(pool: &Pool, size: usize, ops: usize) {
    for _ in 0..ops {
        let mut buf = pool.take(black_box(size));
        buf.capacity_mut()[0] = 1;
        black_box(&buf);
    }
}

/// As [`take_and_return`], with `Vec::with_capacity` and drop.
#[inline(never)]
pub fn alloc_and_drop(size: usize, ops: usize) {
    for _ in 0..ops {
        let mut buf = Vec::<u8>::with_capacity(black_box(size));
        buf.push(1);
        black_box(&buf);
    }
}

/// Nanoseconds per take and drop on the calling thread (pin it first).
pub fn owner_ns(allocator: Allocator, size: usize, ops: usize) -> f64 {
    let pool = Pool::new(&config());
    // The class's first buffer is allocated here, not timed.
    drop(pool.take(size));
    let started = Instant::now();
    match allocator {
        Allocator::Pool => take_and_return(&pool, size, ops),
        Allocator::Vec => alloc_and_drop(size, ops),
    }
    started.elapsed().as_nanos() as f64 / ops.max(1) as f64
}

/// Nanoseconds per buffer made on side A and dropped on side B, and the
/// pool's fallbacks to the allocator (0 expected). The calling thread
/// becomes side A.
pub fn cross_ns(allocator: Allocator, size: usize, ops: usize, sides: Sides) -> (f64, u64) {
    match allocator {
        Allocator::Pool => {
            let pool = Pool::new(&config());
            let ns = relay(ops, sides, || {
                let mut buf = pool.take(size);
                buf.capacity_mut()[0] = 1;
                buf
            });
            (ns, pool.usage().fallbacks)
        }
        Allocator::Vec => {
            let ns = relay(ops, sides, || {
                let mut buf = Vec::<u8>::with_capacity(size);
                buf.push(1);
                buf
            });
            (ns, 0)
        }
    }
}

/// Makes `ops` values on this thread (side A) and drops them on another
/// (side B); nanoseconds per value, from the first made to the last
/// dropped.
pub fn relay<T: Send>(ops: usize, sides: Sides, mut make: impl FnMut() -> T) -> f64 {
    let (mut tx, mut rx) = typed::ring::<T>(RELAY_SLOTS);
    std::thread::scope(|scope| {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let dropper = scope.spawn(move || {
            sides.pin_b();
            let _ = ready_tx.send(());
            let mut dropped = 0;
            while dropped < ops {
                match rx.pop() {
                    Some(value) => {
                        drop(value);
                        dropped += 1;
                    }
                    // Side A gone before sending everything: stop.
                    None if rx.is_abandoned() && rx.is_empty() => return,
                    None => std::hint::spin_loop(),
                }
            }
        });
        sides.pin_a();
        let _ = ready_rx.recv();
        let started = Instant::now();
        for _ in 0..ops {
            let mut value = make();
            while let Err(full) = tx.push(value) {
                value = full.into_inner();
                std::hint::spin_loop();
            }
        }
        drop(tx);
        let _ = dropper.join();
        started.elapsed().as_nanos() as f64 / ops.max(1) as f64
    })
}

/// One comparison: pool against `Vec` for a size and a placement.
struct Pair {
    size: usize,
    cross: bool,
    pool_ns: Vec<f64>,
    vec_ns: Vec<f64>,
    fallbacks: u64,
}

/// Runs the section: every comparison once per round (pool, then `Vec`),
/// interleaved; the table shows medians over the rounds.
pub(super) fn run(settings: &Settings, report: &mut Report) {
    let sides = Sides::detect();
    let millis = settings.measure.as_millis().max(1) as usize;
    let owner_ops = (millis * 400).clamp(10_000, 4_000_000);
    let cross_ops = (millis * 40).clamp(2_000, 400_000);
    let mut pairs: Vec<Pair> = [false, true]
        .into_iter()
        .flat_map(|cross| {
            SIZES.map(|size| Pair {
                size,
                cross,
                pool_ns: Vec::new(),
                vec_ns: Vec::new(),
                fallbacks: 0,
            })
        })
        .collect();

    for round in 0..settings.rounds {
        settings.say(&format!(
            "pools: take+return against Vec (round {}/{})",
            round + 1,
            settings.rounds
        ));
        for pair in &mut pairs {
            for allocator in [Allocator::Pool, Allocator::Vec] {
                let (ns, fallbacks) = if pair.cross {
                    cross_ns(allocator, pair.size, cross_ops, sides)
                } else {
                    sides.pin_a();
                    (owner_ns(allocator, pair.size, owner_ops), 0)
                };
                match allocator {
                    Allocator::Pool => pair.pool_ns.push(ns),
                    Allocator::Vec => pair.vec_ns.push(ns),
                }
                pair.fallbacks += fallbacks;
            }
        }
    }

    for pair in &pairs {
        let speedups = pair
            .pool_ns
            .iter()
            .zip(&pair.vec_ns)
            .map(|(pool, vec)| vec / pool.max(1e-3))
            .collect();
        let (placement, ops) = if pair.cross {
            ("across cores", cross_ops)
        } else {
            ("owning core", owner_ops)
        };
        report.push(
            "pools",
            format!("{}, {placement}", size_name(pair.size)),
            vec![
                ("ops", ops as f64),
                ("pool_ns", median(pair.pool_ns.clone())),
                ("vec_ns", median(pair.vec_ns.clone())),
                ("pool_x_faster", median(speedups)),
                ("fallbacks", pair.fallbacks as f64),
            ],
        );
    }
}
