//! Prometheus text exposition (format 0.0.4).
//!
//! Counters end in `_total`; latencies are summaries in seconds with
//! quantiles 0.5, 0.99, 0.999 and 0.9999 over everything since the start.
//! A summary's `_sum` is the histogram's mean times its count: HdrHistogram
//! keeps no exact sum.

use std::fmt::Write;

use super::PERCENTILES;
use crate::metrics::{CoreMetrics, Counters, Gauges, LatencyHistogram, Snapshot};

/// The quantile labels of [`PERCENTILES`], written out (a float's
/// `Display` would give 0.9990000000000001).
const QUANTILES: [&str; 4] = ["0.5", "0.99", "0.999", "0.9999"];

/// The content type to serve the exposition with.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A counter or gauge read from one core's numbers.
struct Scalar {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    read: fn(&Counters, &Gauges) -> u64,
}

const SCALARS: [Scalar; 9] = [
    Scalar {
        name: "corelane_messages_sent_total",
        kind: "counter",
        help: "Messages the core wrote into a lane.",
        read: |c, _| c.sent,
    },
    Scalar {
        name: "corelane_messages_delivered_total",
        kind: "counter",
        help: "Messages the core read from a lane and handed to its handler.",
        read: |c, _| c.delivered,
    },
    Scalar {
        name: "corelane_messages_refused_total",
        kind: "counter",
        help: "Sends refused because a lane was full (handed back, not lost).",
        read: |c, _| c.refused,
    },
    Scalar {
        name: "corelane_requests_total",
        kind: "counter",
        help: "Requests the core's handler served (corelane serve: client commands).",
        read: |c, _| c.requests,
    },
    Scalar {
        name: "corelane_loop_turns_total",
        kind: "counter",
        help: "Loop turns the core ran.",
        read: |c, _| c.turns,
    },
    Scalar {
        name: "corelane_loop_parks_total",
        kind: "counter",
        help: "Times the core parked.",
        read: |c, _| c.parks,
    },
    Scalar {
        name: "corelane_lane_backlog_bytes",
        kind: "gauge",
        help: "Bytes waiting in the core's inbound lanes.",
        read: |_, g| g.lane_backlog_bytes,
    },
    Scalar {
        name: "corelane_handler_backlog_bytes",
        kind: "gauge",
        help: "Bytes the core's handler holds queued for other cores.",
        read: |_, g| g.handler_backlog_bytes,
    },
    Scalar {
        name: "corelane_connections",
        kind: "gauge",
        help: "Connections the core owns.",
        read: |_, g| g.connections,
    },
];

/// Renders `snapshot` in the Prometheus text format, one series per core.
pub fn to_prometheus(snapshot: &Snapshot) -> String {
    let mut text = String::new();
    for scalar in &SCALARS {
        header(&mut text, scalar.name, scalar.kind, scalar.help);
        for (core, metrics) in snapshot.cores.iter().enumerate() {
            let value = (scalar.read)(&metrics.counters, &metrics.gauges);
            let _ = writeln!(text, "{}{{core=\"{core}\"}} {value}", scalar.name);
        }
    }

    let name = "corelane_core_seconds_total";
    header(
        &mut text,
        name,
        "counter",
        "Time the core spent busy, spinning and parked.",
    );
    for (core, metrics) in snapshot.cores.iter().enumerate() {
        let c = &metrics.counters;
        for (state, ns) in [
            ("busy", c.busy_ns),
            ("spinning", c.spinning_ns),
            ("parked", c.parked_ns),
        ] {
            let _ = writeln!(
                text,
                "{name}{{core=\"{core}\",state=\"{state}\"}} {}",
                seconds(ns as f64)
            );
        }
    }

    summaries(
        &mut text,
        snapshot,
        "corelane_delivery_latency_seconds",
        "Cross-core delivery latency, frame send timestamp to handler, by message kind.",
        "kind",
        |m| m.delivery_by_kind.iter().collect(),
    );
    summaries(
        &mut text,
        snapshot,
        "corelane_handler_run_seconds",
        "How long one handler call ran, by handler.",
        "handler",
        |m| m.handler_time.iter().collect(),
    );
    summaries(
        &mut text,
        snapshot,
        "corelane_loop_turn_seconds",
        "Length of loop turns that found work.",
        "",
        |m| vec![("", &m.turn_lag)],
    );

    let name = "corelane_latency_saturated_total";
    header(
        &mut text,
        name,
        "counter",
        "Delivery samples above the histogram's top, recorded as the top.",
    );
    for (core, metrics) in snapshot.cores.iter().enumerate() {
        let _ = writeln!(
            text,
            "{name}{{core=\"{core}\"}} {}",
            metrics.delivery.saturated()
        );
    }
    text
}

fn header(text: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// One summary family: per core and per name (under `label`, or no
/// extra label when `label` is empty).
fn summaries(
    text: &mut String,
    snapshot: &Snapshot,
    name: &str,
    help: &str,
    label: &str,
    histograms: impl Fn(&CoreMetrics) -> Vec<(&'static str, &LatencyHistogram)>,
) {
    header(text, name, "summary", help);
    for (core, metrics) in snapshot.cores.iter().enumerate() {
        for (key, h) in histograms(metrics) {
            let mut labels = format!("core=\"{core}\"");
            if !label.is_empty() {
                let _ = write!(labels, ",{label}=\"{}\"", escape(key));
            }
            for ((_, percentile), quantile) in PERCENTILES.iter().zip(QUANTILES) {
                let _ = writeln!(
                    text,
                    "{name}{{{labels},quantile=\"{quantile}\"}} {}",
                    seconds(h.percentile(*percentile) as f64)
                );
            }
            let sum = h.mean() * h.count() as f64;
            let _ = writeln!(text, "{name}_sum{{{labels}}} {}", seconds(sum));
            let _ = writeln!(text, "{name}_count{{{labels}}} {}", h.count());
        }
    }
}

fn seconds(ns: f64) -> f64 {
    ns / 1e9
}

/// Escapes a label value: backslash, double quote and newline.
fn escape(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            c => escaped.push(c),
        }
    }
    escaped
}
