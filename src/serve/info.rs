//! The text of INFO: server, clients, pub/sub, stats and latency sections.
//!
//! Counts of other cores come from what they last published (see
//! [`crate::metrics`]); INFO never waits for another core.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use super::message::ServerMsg;
use super::server::ServeCore;
use crate::metrics::{CoreMetrics, LatencyHistogram};
use crate::runtime::Context;

/// Renders INFO for `section` (`None`, `all`, `everything` or `default`
/// for every section; otherwise one of server, clients, pubsub, stats,
/// latency, case-insensitive).
pub(crate) fn render(
    core: &ServeCore,
    cx: &mut Context<'_, ServerMsg>,
    section: Option<&[u8]>,
) -> String {
    let wanted = section.map(<[u8]>::to_ascii_lowercase);
    let show = |name: &str| match wanted.as_deref() {
        None | Some(b"all") | Some(b"everything") | Some(b"default") => true,
        Some(other) => other == name.as_bytes(),
    };
    let mut text = String::new();
    if show("server") {
        server(core, cx, &mut text);
    }
    if show("clients") {
        clients(core, &mut text);
    }
    if show("pubsub") {
        pubsub(core, &mut text);
    }
    let snapshot = cx.metrics();
    if show("stats") {
        stats(core, &snapshot.merged(), &mut text);
    }
    if show("latency") {
        latency(&snapshot.cores, &snapshot.merged(), &mut text);
    }
    text
}

fn server(core: &ServeCore, cx: &Context<'_, ServerMsg>, text: &mut String) {
    let stats = &core.stats;
    let _ = write!(
        text,
        "# Server\r\nredis_version:7.0.0\r\ncorelane_version:{}\r\nredis_mode:standalone\r\n\
         process_id:{}\r\ntcp_port:{}\r\nuptime_in_seconds:{}\r\ncores:{}\r\nthis_core:{}\r\n\r\n",
        env!("CARGO_PKG_VERSION"),
        std::process::id(),
        stats.bind.port(),
        stats.started.elapsed().as_secs(),
        cx.cores(),
        core.core,
    );
}

fn clients(core: &ServeCore, text: &mut String) {
    let per_core: Vec<u64> = core
        .stats
        .connections
        .iter()
        .map(|count| count.load(Ordering::Relaxed))
        .collect();
    let _ = write!(
        text,
        "# Clients\r\nconnected_clients:{}\r\n",
        per_core.iter().sum::<u64>()
    );
    for (index, count) in per_core.iter().enumerate() {
        let _ = write!(text, "connected_clients_core_{index}:{count}\r\n");
    }
    let _ = write!(
        text,
        "client_output_limit_bytes:{}\r\n\r\n",
        core.config.output_limit
    );
}

fn pubsub(core: &ServeCore, text: &mut String) {
    let _ = write!(
        text,
        "# Pubsub\r\npubsub_channels_this_core:{}\r\npubsub_patterns_this_core:{}\r\n\r\n",
        core.subs.channel_count(),
        core.subs.pattern_count()
    );
}

fn stats(core: &ServeCore, merged: &CoreMetrics, text: &mut String) {
    let counters = &merged.counters;
    let _ = write!(
        text,
        "# Stats\r\ntotal_connections_received:{}\r\nlane_messages_sent:{}\r\n\
         lane_messages_delivered:{}\r\nlane_messages_refused:{}\r\nloop_turns:{}\r\n\
         loop_parks:{}\r\n\r\n",
        core.stats.accepted.load(Ordering::Relaxed),
        counters.sent,
        counters.delivered,
        counters.refused,
        counters.turns,
        counters.parks,
    );
}

fn latency(cores: &[CoreMetrics], merged: &CoreMetrics, text: &mut String) {
    text.push_str(
        "# Latency\r\n# cross-core delivery, frame send timestamp to receiving handler, ns\r\n",
    );
    for (index, metrics) in cores.iter().enumerate() {
        let _ = write!(text, "delivery_core_{index}:");
        percentiles(&metrics.delivery, text);
    }
    text.push_str("delivery_all:");
    percentiles(&merged.delivery, text);
    text.push_str("\r\n");
}

fn percentiles(histogram: &LatencyHistogram, text: &mut String) {
    let _ = write!(
        text,
        "count={},p50={},p99={},p999={},max={}\r\n",
        histogram.count(),
        histogram.percentile(50.0),
        histogram.percentile(99.0),
        histogram.percentile(99.9),
        histogram.max(),
    );
}
