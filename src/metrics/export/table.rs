//! A plain-text table for people: one row per core, then latency by
//! message kind and run time by handler.

use std::fmt::Write;

use crate::metrics::{CoreMetrics, LatencyHistogram, NamedHistograms, Snapshot};

/// Renders `snapshot` as aligned text. Times are in microseconds, busy is
/// the share of accounted time spent in turns that found work.
pub fn to_table(snapshot: &Snapshot) -> String {
    let mut text = String::new();
    let _ = writeln!(
        text,
        "{:<6} {:>10} {:>10} {:>10} {:>8} {:>6} {:>10} {:>6} {:>9} {:>9} {:>9} {:>9}",
        "core",
        "requests",
        "sent",
        "delivered",
        "refused",
        "busy%",
        "backlog_B",
        "conns",
        "p50_us",
        "p99_us",
        "p999_us",
        "max_us"
    );
    let merged = snapshot.merged();
    let rows = snapshot
        .cores
        .iter()
        .enumerate()
        .map(|(core, metrics)| (core.to_string(), metrics))
        .chain(std::iter::once(("all".to_string(), &merged)));
    for (name, metrics) in rows {
        core_row(&mut text, &name, metrics);
    }
    named_rows(&mut text, "delivery by kind", &merged.delivery_by_kind);
    named_rows(&mut text, "handler run time", &merged.handler_time);
    let _ = writeln!(text, "\nloop turn lag (turns that found work)");
    latency_row(&mut text, "all", &merged.turn_lag);
    text
}

fn core_row(text: &mut String, name: &str, metrics: &CoreMetrics) {
    let counters = &metrics.counters;
    let delivery = &metrics.delivery;
    let _ = writeln!(
        text,
        "{:<6} {:>10} {:>10} {:>10} {:>8} {:>6.1} {:>10} {:>6} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
        name,
        counters.requests,
        counters.sent,
        counters.delivered,
        counters.refused,
        counters.busy_share() * 100.0,
        metrics.gauges.backlog_bytes(),
        metrics.gauges.connections,
        micros(delivery.percentile(50.0)),
        micros(delivery.percentile(99.0)),
        micros(delivery.percentile(99.9)),
        micros(delivery.max()),
    );
}

fn named_rows(text: &mut String, title: &str, named: &NamedHistograms) {
    if named.is_empty() {
        return;
    }
    let _ = writeln!(text, "\n{title}");
    for (name, histogram) in named.iter() {
        latency_row(text, name, histogram);
    }
}

fn latency_row(text: &mut String, name: &str, histogram: &LatencyHistogram) {
    let _ = writeln!(
        text,
        "  {:<24} count={:<10} p50={:.1}us p99={:.1}us p999={:.1}us max={:.1}us",
        name,
        histogram.count(),
        micros(histogram.percentile(50.0)),
        micros(histogram.percentile(99.0)),
        micros(histogram.percentile(99.9)),
        micros(histogram.max()),
    );
}

fn micros(ns: u64) -> f64 {
    ns as f64 / 1_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_row_per_core_and_a_total() {
        let mut core = CoreMetrics::default();
        core.counters.sent = 12;
        core.delivery.record(2_000);
        core.delivery_by_kind.record("Tick", 2_000);
        let snapshot = Snapshot {
            cores: vec![core.clone(), core],
        };
        let table = to_table(&snapshot);
        let rows: Vec<&str> = table.lines().collect();
        assert!(
            rows[1].starts_with("0 ") && rows[1].contains(" 12 "),
            "{table}"
        );
        assert!(rows[2].starts_with("1 "), "{table}");
        assert!(
            rows[3].starts_with("all") && rows[3].contains(" 24 "),
            "{table}"
        );
        assert!(
            table.contains("Tick") && table.contains("count=2 "),
            "{table}"
        );
        assert!(rows[1].contains("2.0"), "{table}");
    }
}
