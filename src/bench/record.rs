//! What recording one latency sample costs on the owning core: the
//! histogram alone, and by message kind as the core loop does it, in
//! interleaved rounds; each row is the median over the rounds, and
//! `x_plain` the median of the per-round ratios to the plain histogram.

use std::hint::black_box;
use std::time::Instant;

use super::report::median;
use super::{Report, Settings};
use crate::metrics::{LatencyHistogram, NamedHistograms};

/// Values recorded, cycled through (realistic latencies, 100 ns to 1 ms).
const VALUES: usize = 4096;

/// Rounds of each loop, interleaved (plain, by kind, plain, ...): on a
/// shared machine one long run of each can land on a busy and an idle
/// stretch; medians over interleaved rounds compare like with like.
const ROUNDS: usize = 11;

pub(super) fn run(settings: &Settings, report: &mut Report) {
    let values = sample_values();
    let kinded = with_kinds(&values);
    let passes = if settings.measure.as_millis() < 1_000 {
        2_000
    } else {
        10_000
    };
    // Each round runs its share of the passes over the values.
    let passes = (passes / ROUNDS).max(1);
    let samples = (passes * VALUES) as f64;

    let mut histogram = LatencyHistogram::new();
    let mut named = NamedHistograms::default();
    let (mut plain_ns, mut by_kind_ns) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let started = Instant::now();
        record_plain(&mut histogram, &values, passes);
        plain_ns.push(started.elapsed().as_nanos() as f64 / samples);

        let started = Instant::now();
        record_by_kind(&mut named, &kinded, passes);
        by_kind_ns.push(started.elapsed().as_nanos() as f64 / samples);
    }
    let ratios = by_kind_ns
        .iter()
        .zip(&plain_ns)
        .map(|(by_kind, plain)| by_kind / plain.max(1e-3))
        .collect();

    report.push(
        "record",
        "LatencyHistogram::record",
        vec![
            ("ns_per_sample", median(plain_ns)),
            ("x_plain", 1.0),
            ("bar_ns", 10.0),
        ],
    );
    report.push(
        "record",
        "by kind (3 kinds)",
        vec![
            ("ns_per_sample", median(by_kind_ns)),
            ("x_plain", median(ratios)),
            ("bar_ns", 10.0),
        ],
    );
}

/// The measured loop, kept out of line so that instruction counters
/// (`valgrind --tool=callgrind --toggle-collect='*record_plain*'`) can
/// count it alone.
#[inline(never)]
fn record_plain(histogram: &mut LatencyHistogram, values: &[u64], rounds: usize) {
    for _ in 0..rounds {
        for &value in values {
            histogram.record(black_box(value));
        }
    }
    black_box(histogram);
}

/// As [`record_plain`], through the by-kind lookup the core loop uses:
/// each value comes with its kind, three kinds taking turns. The kind is
/// read from memory with the value, as the core loop has it from the
/// frame: the loop computes no kind of its own (it once did, `i % 3` per
/// sample, which the recording cost then included).
#[inline(never)]
fn record_by_kind(named: &mut NamedHistograms, samples: &[(&'static str, u64)], rounds: usize) {
    for _ in 0..rounds {
        for &(kind, value) in samples {
            named.record(kind, black_box(value));
        }
    }
    black_box(named);
}

/// `values`, each with one of three kinds in turn.
fn with_kinds(values: &[u64]) -> Vec<(&'static str, u64)> {
    const KINDS: [&str; 3] = ["Publish", "Interest", "Ack"];
    values
        .iter()
        .enumerate()
        .map(|(i, &value)| (KINDS[i % KINDS.len()], value))
        .collect()
}

/// Pseudo-random latencies, log-spread from 100 ns to about 1 ms.
fn sample_values() -> Vec<u64> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    (0..VALUES)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (100 << (state % 14)) | ((state >> 40) % 100)
        })
        .collect()
}
