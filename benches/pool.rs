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
//!   them through a corelane typed lane to thread B (pinned to the second CPU),
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
//! POOL_SOLO=pool valgrind --tool=callgrind --toggle-collect='*take_and_return*' \
//!     target/release/deps/pool-<hash> --bench
//! ```
//!
//! (`POOL_SOLO=vec`: `--toggle-collect='*alloc_and_drop*'`.) The loops
//! are `corelane::bench::pools`', shared with `corelane bench`.

mod common;

use std::time::Instant;

use common::{json_number, json_object, json_string, Bar};
use corelane::bench::pools::{
    alloc_and_drop, config, cross_ns, owner_ns, size_name, take_and_return, Allocator, RELAY_SLOTS,
    SIZES,
};
use corelane::pool::Pool;

// The loops and the relay between cores are `corelane::bench::pools`',
// which `corelane bench` runs too; this file keeps its rounds, table, bars
// and JSON.

type Kind = Allocator;

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

/// One owner loop on the first CPU: ns per take+drop.
fn owner(kind: Kind, size: usize, ops: usize) -> f64 {
    common::pin(0);
    owner_ns(kind, size, ops)
}

/// One cross row: ns per buffer from the first take on A to the last drop
/// on B; also the pool's fallbacks (0 expected).
fn cross(kind: Kind, size: usize, ops: usize) -> (f64, u64) {
    cross_ns(kind, size, ops, common::sides())
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
        "pool" => take_and_return(&pool, size, ops),
        "vec" => alloc_and_drop(size, ops),
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
        "pool: {} rounds; owner rows {} ops, cross-core rows {} buffers through a typed lane of {RELAY_SLOTS}",
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
