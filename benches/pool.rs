//! Buffer pools against the system allocator, side by side in one run.
//!
//! ```text
//! cargo bench --bench pool                 # about a minute
//! POOL_QUICK=1 cargo bench --bench pool    # smoke run, a few seconds
//! ```
//!
//! For 64 B, 4 KiB and 64 KiB buffers, two pairs of rows:
//!
//! - *owner*: one thread takes a buffer, writes its first byte and drops it,
//!   over and over: `Pool::take` and the drop back to the free list, against
//!   `Vec::with_capacity`, a push and the drop (malloc and free).
//! - *cross*: thread A (pinned to the first CPU) takes buffers and passes
//!   them through an rtrb ring to thread B (pinned to the second CPU),
//!   which drops them: pooled buffers go home through the return queue,
//!   `Vec`s are freed by B into memory A allocated. Time from A's first
//!   take to B's last drop, per buffer.
//!
//! Rows run interleaved (pool, Vec, pool, Vec, ...) for several rounds after
//! a warm-up round that is not kept; the table shows medians, and each
//! ratio is the median of per-round ratios. Results also go to
//! `$CARGO_TARGET_DIR/corelane-bench/pool.json`.
//!
//! Environment: `POOL_QUICK=1`, `POOL_ROUNDS=n` (default 7). `POOL_SOLO=pool`
//! or `POOL_SOLO=vec` (with `POOL_SOLO_SIZE`, default 4096) instead runs one
//! owner loop of 1,000,000 operations, to count instructions:
//!
//! ```text
//! POOL_SOLO=pool valgrind --tool=callgrind --toggle-collect='*solo*' \
//!     target/release/deps/pool-<hash> --bench
//! ```

mod common;

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Instant;

use common::{json_number, json_object, json_string, Bar};
use corelane::pool::{Pool, PoolConfig};

const SIZES: [usize; 3] = [64, 4096, 65536];

/// Slots in the ring between the two threads of a cross row.
const RING: usize = 256;

fn config() -> PoolConfig {
    // Room for every buffer a cross row has in flight (the ring plus the
    // receiver's batch), so no row falls back to the allocator.
    PoolConfig::uniform(65536, 1 << 30)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Pool,
    Vec,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Placement {
    Owner,
    Cross,
}

struct Row {
    kind: Kind,
    placement: Placement,
    size: usize,
}

impl Row {
    fn name(&self) -> String {
        let what = match self.kind {
            Kind::Pool => "pool take+return",
            Kind::Vec => "Vec::with_capacity+drop",
        };
        let where_ = match self.placement {
            Placement::Owner => "owner",
            Placement::Cross => "cross-core",
        };
        format!("{what}, {}, {where_}", size_name(self.size))
    }
}

fn size_name(size: usize) -> String {
    if size >= 1024 {
        format!("{} KiB", size / 1024)
    } else {
        format!("{size} B")
    }
}

fn rows() -> Vec<Row> {
    let mut rows = Vec::new();
    for placement in [Placement::Owner, Placement::Cross] {
        for size in SIZES {
            for kind in [Kind::Pool, Kind::Vec] {
                rows.push(Row {
                    kind,
                    placement,
                    size,
                });
            }
        }
    }
    rows
}

/// One owner loop: `ops` takes and drops; ns per take+drop.
fn owner(kind: Kind, size: usize, ops: usize) -> f64 {
    common::pin(0);
    let pool = Pool::new(&config());
    // The pool's first buffer of the class is allocated here, not timed.
    drop(pool.take(size));
    let started = Instant::now();
    match kind {
        Kind::Pool => solo_pool(&pool, size, ops),
        Kind::Vec => solo_vec(size, ops),
    }
    started.elapsed().as_nanos() as f64 / ops as f64
}

#[inline(never)]
fn solo_pool(pool: &Pool, size: usize, ops: usize) {
    for _ in 0..ops {
        let mut buf = pool.take(black_box(size));
        buf.capacity_mut()[0] = 1;
        black_box(&buf);
    }
}

#[inline(never)]
fn solo_vec(size: usize, ops: usize) {
    for _ in 0..ops {
        let mut buf = Vec::<u8>::with_capacity(black_box(size));
        buf.push(1);
        black_box(&buf);
    }
}

/// One cross row: ns per buffer from the first take on A to the last drop
/// on B; also the pool's fallbacks (0 expected).
fn cross(kind: Kind, size: usize, ops: usize) -> (f64, u64) {
    match kind {
        Kind::Pool => {
            let pool = Pool::new(&config());
            let (tx, rx) = rtrb::RingBuffer::new(RING);
            let elapsed = relay(ops, tx, rx, || {
                let mut buf = pool.take(size);
                buf.capacity_mut()[0] = 1;
                buf
            });
            (elapsed, pool.usage().fallbacks)
        }
        Kind::Vec => {
            let (tx, rx) = rtrb::RingBuffer::new(RING);
            let elapsed = relay(ops, tx, rx, || {
                let mut buf = Vec::<u8>::with_capacity(size);
                buf.push(1);
                buf
            });
            (elapsed, 0)
        }
    }
}

/// Makes `ops` values on this thread (pinned to the first CPU) and drops
/// them on another (pinned to the second); ns per value.
fn relay<T: Send + 'static>(
    ops: usize,
    mut tx: rtrb::Producer<T>,
    mut rx: rtrb::Consumer<T>,
    mut make: impl FnMut() -> T,
) -> f64 {
    common::pin(0);
    let go = Arc::new(AtomicBool::new(false));
    let started_flag = Arc::clone(&go);
    let dropper = thread::spawn(move || {
        common::pin(1);
        while !started_flag.load(Ordering::Acquire) {
            std::hint::spin_loop();
        }
        let mut dropped = 0;
        while dropped < ops {
            match rx.pop() {
                Ok(value) => {
                    drop(value);
                    dropped += 1;
                }
                Err(_) => std::hint::spin_loop(),
            }
        }
    });
    let started = Instant::now();
    go.store(true, Ordering::Release);
    for _ in 0..ops {
        let mut value = make();
        loop {
            match tx.push(value) {
                Ok(()) => break,
                Err(rtrb::PushError::Full(back)) => {
                    value = back;
                    std::hint::spin_loop();
                }
            }
        }
    }
    dropper.join().expect("the dropper does not panic");
    started.elapsed().as_nanos() as f64 / ops as f64
}

struct Settings {
    rounds: usize,
    owner_ops: usize,
    cross_ops: usize,
    write_json: bool,
}

impl Settings {
    fn from_env() -> Settings {
        let benching = common::benching();
        let quick = !benching || common::env_flag("POOL_QUICK");
        Settings {
            rounds: common::env_count("POOL_ROUNDS").unwrap_or(if quick { 3 } else { 7 }),
            owner_ops: if quick { 100_000 } else { 2_000_000 },
            cross_ops: if quick { 20_000 } else { 200_000 },
            write_json: benching,
        }
    }
}

/// A row's rounds.
struct Measured {
    ns: Vec<f64>,
    fallbacks: u64,
}

fn measure(row: &Row, settings: &Settings) -> (f64, u64) {
    match row.placement {
        Placement::Owner => (owner(row.kind, row.size, settings.owner_ops), 0),
        Placement::Cross => cross(row.kind, row.size, settings.cross_ops),
    }
}

fn run_solo(kind: &str) {
    let size = common::env_count("POOL_SOLO_SIZE").unwrap_or(4096);
    let ops = 1_000_000;
    let pool = Pool::new(&config());
    drop(pool.take(size));
    let started = Instant::now();
    match kind {
        "pool" => solo_pool(&pool, size, ops),
        "vec" => solo_vec(size, ops),
        other => {
            eprintln!("pool: POOL_SOLO={other}: try pool or vec");
            std::process::exit(2);
        }
    }
    println!(
        "{kind}: {ops} takes and drops of {size} bytes in {:.3} s",
        started.elapsed().as_secs_f64()
    );
}

fn main() {
    if let Ok(kind) = std::env::var("POOL_SOLO") {
        run_solo(&kind);
        return;
    }
    let settings = Settings::from_env();
    let rows = rows();
    println!(
        "pool: {} rounds; owner rows {} ops, cross-core rows {} buffers through an rtrb ring of {RING}",
        settings.rounds, settings.owner_ops, settings.cross_ops
    );

    // Warm-up round, not kept.
    for row in &rows {
        measure(row, &settings);
    }
    let mut measured: Vec<Measured> = rows
        .iter()
        .map(|_| Measured {
            ns: Vec::new(),
            fallbacks: 0,
        })
        .collect();
    let started = Instant::now();
    for round in 1..=settings.rounds {
        for (row, kept) in rows.iter().zip(&mut measured) {
            let (ns, fallbacks) = measure(row, &settings);
            kept.ns.push(ns);
            kept.fallbacks += fallbacks;
        }
        eprintln!(
            "round {round}/{} done at {:.1} s",
            settings.rounds,
            started.elapsed().as_secs_f64()
        );
    }

    // Each pool row is followed by its Vec row.
    let mut table = Vec::new();
    let mut bars = Vec::new();
    for pair in rows.chunks(2).zip(measured.chunks(2)) {
        let ([pool_row, vec_row], [pool, vec]) = pair else {
            unreachable!("rows come in pairs")
        };
        let speedup = common::ratios(&vec.ns, &pool.ns);
        if pool_row.placement == Placement::Owner && pool_row.size == 4096 {
            bars.push(Bar {
                text: "pool take+return, owning core, 4 KiB: >= 3x faster than Vec (malloc)".into(),
                ratios: speedup.clone(),
                limit: 3.0,
            });
        }
        table.push((pool_row, pool, Some(common::median(speedup))));
        table.push((vec_row, vec, None));
    }

    println!(
        "\n{:<46} {:>9} {:>10} {:>10}",
        "row", "ns/op", "x vs Vec", "fallbacks"
    );
    let mut json_rows = Vec::new();
    for (row, kept, speedup) in &table {
        let ns = common::median(kept.ns.clone());
        println!(
            "{:<46} {:>9.1} {:>10} {:>10}",
            row.name(),
            ns,
            speedup.map_or("-".to_owned(), |s| format!("{s:.2}")),
            if row.kind == Kind::Pool {
                kept.fallbacks.to_string()
            } else {
                "-".to_owned()
            }
        );
        json_rows.push(json_object(&[
            ("name", json_string(&row.name())),
            (
                "kind",
                json_string(&format!("{:?}", row.kind).to_lowercase()),
            ),
            (
                "placement",
                json_string(&format!("{:?}", row.placement).to_lowercase()),
            ),
            ("size_bytes", row.size.to_string()),
            ("ns_per_op", json_number(Some(ns))),
            ("speedup_vs_vec", json_number(*speedup)),
            ("fallbacks", kept.fallbacks.to_string()),
            (
                "per_round",
                format!(
                    "[{}]",
                    kept.ns
                        .iter()
                        .map(|ns| json_number(Some(*ns)))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
        ]));
    }
    println!(
        "Medians over the rounds; x vs Vec is the median of per-round ratios (Vec ns / pool ns)."
    );
    common::print_bars(&bars);
    if settings.write_json {
        let header = [
            ("bench", json_string("pool")),
            ("rounds", settings.rounds.to_string()),
            ("owner_ops", settings.owner_ops.to_string()),
            ("cross_ops", settings.cross_ops.to_string()),
        ];
        match common::write_json("pool", &common::json_report(&header, &json_rows, &bars)) {
            Ok(path) => println!("\nwrote {}", path.display()),
            Err(error) => eprintln!("pool: cannot write the JSON report: {error}"),
        }
    }
}
