//! rkyv in place against serde_json and bincode, for one order-like
//! message, side by side in one run.
//!
//! ```text
//! cargo bench --bench codec                 # about a minute
//! CODEC_QUICK=1 cargo bench --bench codec   # smoke run, a few seconds
//! ```
//!
//! The message: two ids, a price, a quantity, a side, a symbol string and
//! a list of three fills. Each format is timed step by step and as a whole
//! path, in ns per operation:
//!
//! - rkyv: *encode*, serialized in place into a pooled buffer (as a lane or
//!   a large message does), scratch from a reused arena; *access
//!   validated* (`rkyv::access`, bytecheck), *access unvalidated*
//!   (`access_unchecked`, for this process's own memory); the whole path
//!   is encode then access.
//! - serde_json: *encode* into a reused `Vec`, *decode* into an owned
//!   message (`from_slice`).
//! - bincode 2 (derived `Encode`/`Decode`, standard config): *encode* into
//!   a reused slice, *decode* into an owned message.
//!
//! Every access or decode is followed by the same read of every field (a
//! digest the loop keeps), so each path ends with the data usable. Rows
//! run interleaved for several rounds after a warm-up round; the table
//! shows medians, ratios are medians of per-round ratios. Results also go
//! to `$CARGO_TARGET_DIR/corelane-bench/codec.json`.
//!
//! Environment: `CODEC_QUICK=1`, `CODEC_ROUNDS=n` (default 7). `CODEC_SOLO=key`
//! (a row key, e.g. `rkyv-access`, `bincode-decode`) instead runs that row
//! for 1,000,000 operations, to count instructions under callgrind:
//!
//! ```text
//! CODEC_SOLO=rkyv-access valgrind --tool=callgrind --toggle-collect='*solo*' \
//!     target/release/deps/codec-<hash> --bench
//! ```

mod common;

use std::hint::black_box;
use std::time::Instant;

use common::{json_number, json_object, json_string, Bar};
use corelane::pool::{Pool, PoolBuf, PoolConfig};
use rkyv::rancor;
use rkyv::ser::allocator::Arena;

#[derive(
    rkyv::Archive,
    rkyv::Serialize,
    serde::Serialize,
    serde::Deserialize,
    bincode::Encode,
    bincode::Decode,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Debug,
)]
#[rkyv(derive(PartialEq, Eq, Debug))]
enum Side {
    Buy,
    Sell,
}

#[derive(
    rkyv::Archive,
    rkyv::Serialize,
    serde::Serialize,
    serde::Deserialize,
    bincode::Encode,
    bincode::Decode,
    Clone,
    Debug,
)]
struct Fill {
    fill_id: u64,
    price: i64,
    quantity: u32,
}

#[derive(
    rkyv::Archive,
    rkyv::Serialize,
    serde::Serialize,
    serde::Deserialize,
    bincode::Encode,
    bincode::Decode,
    Clone,
    Debug,
)]
struct Order {
    order_id: u64,
    client_id: u64,
    /// Price in ten-thousandths.
    price: i64,
    quantity: u64,
    side: Side,
    symbol: String,
    fills: Vec<Fill>,
}

fn order() -> Order {
    Order {
        order_id: 9_120_331_771,
        client_id: 40_417,
        price: 1_013_250,
        quantity: 2_500,
        side: Side::Sell,
        symbol: "ACME.L".into(),
        fills: vec![
            Fill {
                fill_id: 1,
                price: 1_013_250,
                quantity: 1_000,
            },
            Fill {
                fill_id: 2,
                price: 1_013_300,
                quantity: 900,
            },
            Fill {
                fill_id: 3,
                price: 1_013_400,
                quantity: 600,
            },
        ],
    }
}

/// The read every path ends with: every field, folded into one number.
#[inline(always)]
fn digest_owned(order: &Order) -> u64 {
    let mut sum = order.order_id ^ order.client_id ^ order.price as u64 ^ order.quantity;
    sum ^= (order.side == Side::Sell) as u64;
    sum ^= order.symbol.len() as u64 + u64::from(order.symbol.as_bytes()[0]);
    for fill in &order.fills {
        sum = sum.wrapping_add(fill.fill_id ^ fill.price as u64 ^ u64::from(fill.quantity));
    }
    sum
}

#[inline(always)]
fn digest_archived(order: &ArchivedOrder) -> u64 {
    let mut sum = order.order_id.to_native()
        ^ order.client_id.to_native()
        ^ order.price.to_native() as u64
        ^ order.quantity.to_native();
    sum ^= (order.side == ArchivedSide::Sell) as u64;
    sum ^= order.symbol.len() as u64 + u64::from(order.symbol.as_bytes()[0]);
    for fill in order.fills.iter() {
        sum = sum.wrapping_add(
            fill.fill_id.to_native()
                ^ fill.price.to_native() as u64
                ^ u64::from(fill.quantity.to_native()),
        );
    }
    sum
}

/// What every row works with: the message, a pooled buffer for rkyv, a
/// slice and a `Vec` for the others, and each format's encoded bytes.
struct Bench {
    order: Order,
    arena: Arena,
    rkyv_buf: PoolBuf,
    rkyv_len: usize,
    json: Vec<u8>,
    bincode: Vec<u8>,
    bincode_len: usize,
}

const BINCODE: bincode::config::Configuration = bincode::config::standard();

impl Bench {
    fn new(pool: &Pool) -> Bench {
        let mut bench = Bench {
            order: order(),
            arena: Arena::new(),
            rkyv_buf: pool.take(1024),
            rkyv_len: 0,
            json: Vec::with_capacity(1024),
            bincode: vec![0; 1024],
            bincode_len: 0,
        };
        bench.rkyv_encode();
        bench.json_encode();
        bench.bincode_encode();
        assert_eq!(bench.rkyv_access(), digest_owned(&bench.order));
        assert_eq!(bench.rkyv_access_unchecked(), digest_owned(&bench.order));
        assert_eq!(bench.json_decode(), digest_owned(&bench.order));
        assert_eq!(bench.bincode_decode(), digest_owned(&bench.order));
        bench
    }

    #[inline(always)]
    fn rkyv_encode(&mut self) {
        let written = rkyv::api::high::to_bytes_in_with_alloc::<_, _, rancor::Error>(
            black_box(&self.order),
            rkyv::ser::writer::Buffer::from(self.rkyv_buf.capacity_mut()),
            self.arena.acquire(),
        )
        .expect("the order fits 1 KiB");
        self.rkyv_len = written.len();
        self.rkyv_buf.set_len(self.rkyv_len);
    }

    #[inline(always)]
    fn rkyv_access(&self) -> u64 {
        let archived = rkyv::access::<ArchivedOrder, rancor::Error>(black_box(&self.rkyv_buf))
            .expect("a valid archive");
        digest_archived(archived)
    }

    #[inline(always)]
    fn rkyv_access_unchecked(&self) -> u64 {
        // SAFETY: `rkyv_encode` wrote an `Order` archive into exactly these
        // bytes, in this process, and nothing has changed them since.
        let archived =
            unsafe { rkyv::access_unchecked::<ArchivedOrder>(black_box(&self.rkyv_buf)) };
        digest_archived(archived)
    }

    #[inline(always)]
    fn json_encode(&mut self) {
        self.json.clear();
        serde_json::to_writer(&mut self.json, black_box(&self.order)).expect("encodes");
    }

    #[inline(always)]
    fn json_decode(&self) -> u64 {
        let order: Order = serde_json::from_slice(black_box(&self.json)).expect("decodes");
        digest_owned(&order)
    }

    #[inline(always)]
    fn bincode_encode(&mut self) {
        self.bincode_len =
            bincode::encode_into_slice(black_box(&self.order), &mut self.bincode, BINCODE)
                .expect("the order fits 1 KiB");
    }

    #[inline(always)]
    fn bincode_decode(&self) -> u64 {
        let (order, _): (Order, usize) =
            bincode::decode_from_slice(black_box(&self.bincode[..self.bincode_len]), BINCODE)
                .expect("decodes");
        digest_owned(&order)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Format {
    Rkyv,
    Json,
    Bincode,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Step {
    Encode,
    /// rkyv's validated access, or the others' decode.
    Decode,
    AccessUnvalidated,
    /// Encode then validated access (rkyv) or decode.
    Whole,
    WholeUnvalidated,
}

struct Row {
    key: &'static str,
    name: &'static str,
    format: Format,
    step: Step,
}

const ROWS: [Row; 11] = [
    Row {
        key: "rkyv-encode",
        name: "rkyv: encode in place",
        format: Format::Rkyv,
        step: Step::Encode,
    },
    Row {
        key: "rkyv-access",
        name: "rkyv: access, validated",
        format: Format::Rkyv,
        step: Step::Decode,
    },
    Row {
        key: "rkyv-access-unchecked",
        name: "rkyv: access, unvalidated",
        format: Format::Rkyv,
        step: Step::AccessUnvalidated,
    },
    Row {
        key: "rkyv-whole",
        name: "rkyv: encode + validated access",
        format: Format::Rkyv,
        step: Step::Whole,
    },
    Row {
        key: "rkyv-whole-unchecked",
        name: "rkyv: encode + unvalidated access",
        format: Format::Rkyv,
        step: Step::WholeUnvalidated,
    },
    Row {
        key: "json-encode",
        name: "serde_json: encode",
        format: Format::Json,
        step: Step::Encode,
    },
    Row {
        key: "json-decode",
        name: "serde_json: decode",
        format: Format::Json,
        step: Step::Decode,
    },
    Row {
        key: "json-whole",
        name: "serde_json: encode + decode",
        format: Format::Json,
        step: Step::Whole,
    },
    Row {
        key: "bincode-encode",
        name: "bincode: encode",
        format: Format::Bincode,
        step: Step::Encode,
    },
    Row {
        key: "bincode-decode",
        name: "bincode: decode",
        format: Format::Bincode,
        step: Step::Decode,
    },
    Row {
        key: "bincode-whole",
        name: "bincode: encode + decode",
        format: Format::Bincode,
        step: Step::Whole,
    },
];

/// Runs `row` `ops` times; ns per operation.
fn time(bench: &mut Bench, row: &Row, ops: usize) -> f64 {
    let started = Instant::now();
    black_box(solo(bench, row.format, row.step, ops));
    started.elapsed().as_nanos() as f64 / ops as f64
}

#[inline(never)]
fn solo(bench: &mut Bench, format: Format, step: Step, ops: usize) -> u64 {
    let mut sum = 0u64;
    macro_rules! repeat {
        ($body:expr) => {
            for _ in 0..ops {
                sum = sum.wrapping_add($body);
            }
        };
    }
    match (format, step) {
        (Format::Rkyv, Step::Encode) => repeat!({
            bench.rkyv_encode();
            bench.rkyv_len as u64
        }),
        (Format::Rkyv, Step::Decode) => repeat!(bench.rkyv_access()),
        (Format::Rkyv, Step::AccessUnvalidated) => repeat!(bench.rkyv_access_unchecked()),
        (Format::Rkyv, Step::Whole) => repeat!({
            bench.rkyv_encode();
            bench.rkyv_access()
        }),
        (Format::Rkyv, Step::WholeUnvalidated) => repeat!({
            bench.rkyv_encode();
            bench.rkyv_access_unchecked()
        }),
        (Format::Json, Step::Encode) => repeat!({
            bench.json_encode();
            bench.json.len() as u64
        }),
        (Format::Json, Step::Decode) => repeat!(bench.json_decode()),
        (Format::Json, Step::Whole) => repeat!({
            bench.json_encode();
            bench.json_decode()
        }),
        (Format::Bincode, Step::Encode) => repeat!({
            bench.bincode_encode();
            bench.bincode_len as u64
        }),
        (Format::Bincode, Step::Decode) => repeat!(bench.bincode_decode()),
        (Format::Bincode, Step::Whole) => repeat!({
            bench.bincode_encode();
            bench.bincode_decode()
        }),
        (format, step) => unreachable!("no row {format:?} {step:?}"),
    }
    sum
}

fn encoded_bytes(bench: &Bench, format: Format) -> usize {
    match format {
        Format::Rkyv => bench.rkyv_len,
        Format::Json => bench.json.len(),
        Format::Bincode => bench.bincode_len,
    }
}

fn row_index(key: &str) -> usize {
    ROWS.iter()
        .position(|row| row.key == key)
        .expect("a known row")
}

fn main() {
    common::pin(0);
    let pool = Pool::new(&PoolConfig::default());
    let mut bench = Bench::new(&pool);

    if let Ok(key) = std::env::var("CODEC_SOLO") {
        let Some(row) = ROWS.iter().find(|row| row.key == key) else {
            let keys: Vec<&str> = ROWS.iter().map(|row| row.key).collect();
            eprintln!("codec: CODEC_SOLO={key}: try one of {}", keys.join(", "));
            std::process::exit(2);
        };
        let ns = time(&mut bench, row, 1_000_000);
        println!("{}: 1000000 operations, {ns:.1} ns each", row.name);
        return;
    }

    let benching = common::benching();
    let quick = !benching || common::env_flag("CODEC_QUICK");
    let rounds = common::env_count("CODEC_ROUNDS").unwrap_or(if quick { 3 } else { 7 });
    let ops = if quick { 20_000 } else { 500_000 };
    println!(
        "codec: {rounds} rounds of {ops} operations per row; encoded bytes: rkyv {}, serde_json {}, \
         bincode {}",
        bench.rkyv_len,
        bench.json.len(),
        bench.bincode_len
    );

    for row in &ROWS {
        time(&mut bench, row, ops / 4);
    }
    let mut rounds_ns: Vec<Vec<f64>> = ROWS.iter().map(|_| Vec::new()).collect();
    let started = Instant::now();
    for round in 1..=rounds {
        for (row, kept) in ROWS.iter().zip(&mut rounds_ns) {
            kept.push(time(&mut bench, row, ops));
        }
        eprintln!(
            "round {round}/{rounds} done at {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }

    let of = |key: &str| &rounds_ns[row_index(key)];
    let bars = vec![
        Bar {
            text: "rkyv in place + validated access >= 10x faster than serde_json encode+decode"
                .into(),
            ratios: common::ratios(of("json-whole"), of("rkyv-whole")),
            limit: 10.0,
        },
        Bar {
            text: "rkyv in place + validated access >= 2x faster than bincode encode+decode".into(),
            ratios: common::ratios(of("bincode-whole"), of("rkyv-whole")),
            limit: 2.0,
        },
        Bar {
            text: "rkyv validated access >= 5x faster than bincode decode".into(),
            ratios: common::ratios(of("bincode-decode"), of("rkyv-access")),
            limit: 5.0,
        },
    ];

    println!(
        "\n{:<36} {:>9} {:>9} {:>12}",
        "row", "ns/op", "bytes", "x rkyv whole"
    );
    let rkyv_whole = of("rkyv-whole");
    let mut json_rows = Vec::new();
    for (row, kept) in ROWS.iter().zip(&rounds_ns) {
        let ns = common::median(kept.clone());
        let vs_rkyv =
            (row.step == Step::Whole).then(|| common::median(common::ratios(kept, rkyv_whole)));
        println!(
            "{:<36} {:>9.1} {:>9} {:>12}",
            row.name,
            ns,
            encoded_bytes(&bench, row.format),
            vs_rkyv.map_or("-".to_owned(), |ratio| format!("{ratio:.2}"))
        );
        json_rows.push(json_object(&[
            ("name", json_string(row.name)),
            ("key", json_string(row.key)),
            ("ns_per_op", json_number(Some(ns))),
            (
                "encoded_bytes",
                encoded_bytes(&bench, row.format).to_string(),
            ),
            ("whole_vs_rkyv_whole", json_number(vs_rkyv)),
            (
                "per_round",
                format!(
                    "[{}]",
                    kept.iter()
                        .map(|ns| json_number(Some(*ns)))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
        ]));
    }
    println!(
        "Medians over the rounds; x rkyv whole: this whole path's time / rkyv encode + validated \
         access (median of per-round ratios)."
    );
    common::print_bars(&bars);
    if benching {
        let header = [
            ("bench", json_string("codec")),
            ("rounds", rounds.to_string()),
            ("ops_per_round", ops.to_string()),
        ];
        match common::write_json("codec", &common::json_report(&header, &json_rows, &bars)) {
            Ok(path) => println!("\nwrote {}", path.display()),
            Err(error) => eprintln!("codec: cannot write the JSON report: {error}"),
        }
    }
}
