//! The text of INFO: server, clients, pub/sub, stats, pools and latency
//! sections.
//!
//! Counts of other cores come from what they last published (see
//! [`crate::metrics`]); INFO never waits for another core.

use std::collections::HashSet;
use std::fmt::Write;
use std::sync::atomic::Ordering;

use super::message::ServerMsg;
use super::output::OutputCounts;
use super::server::ServeCore;
use crate::metrics::{CoreMetrics, LatencyHistogram};
use crate::pool::PoolUsage;
use crate::runtime::Context;

/// Renders INFO for `sections`, as Redis 7 does (`INFO server clients`):
/// none, or any of `all`, `everything` and `default`, for every section;
/// otherwise those named among server, clients, memory, pubsub, stats,
/// pools, latency, journal and keyspace, case-insensitive, in that order.
pub(crate) fn render<'a>(
    core: &ServeCore,
    cx: &mut Context<'_, ServerMsg>,
    sections: impl Iterator<Item = &'a [u8]>,
) -> String {
    let wanted: Vec<Vec<u8>> = sections.map(<[u8]>::to_ascii_lowercase).collect();
    let every = wanted.is_empty()
        || wanted
            .iter()
            .any(|name| matches!(name.as_slice(), b"all" | b"everything" | b"default"));
    let show = |name: &str| every || wanted.iter().any(|w| w == name.as_bytes());
    let mut text = String::new();
    if show("server") {
        server(core, cx, &mut text);
    }
    if show("clients") {
        clients(core, &mut text);
    }
    if show("memory") {
        memory(&mut text);
    }
    if show("pubsub") {
        pubsub(core, &mut text);
    }
    // A snapshot (every core's histograms) costs far more than the rest of
    // INFO: take it only for the sections that read it, and merge once.
    if show("stats") || show("pools") || show("latency") {
        let snapshot = cx.metrics();
        let merged = snapshot.merged();
        if show("stats") {
            stats(core, &merged, &mut text);
        }
        if show("pools") {
            pools(core, &snapshot.cores, &mut text);
        }
        if show("latency") {
            latency(&snapshot.cores, &merged, &mut text);
        }
    }
    if show("journal") {
        journal(core, &mut text);
    }
    // Redis's last section, its header shown even with no keys (there
    // are never any here): clients and tools that split INFO by headers
    // find it where Redis has it.
    if show("keyspace") {
        text.push_str("# Keyspace\r\n\r\n");
    }
    // Each section ends with a blank line; Redis has one between sections
    // but none after the last.
    if text.ends_with("\r\n\r\n") {
        text.truncate(text.len() - 2);
    }
    text
}

/// The Redis version this server answers as, in INFO's `redis_version`
/// and HELLO's `version`: clients read either to decide which commands
/// and replies to expect, and this server's commands, replies and error
/// texts are Redis 7.0's. The crate's own version is INFO's
/// `corelane_version`.
pub(crate) const REDIS_VERSION: &str = "7.0.0";

fn server(core: &ServeCore, cx: &Context<'_, ServerMsg>, text: &mut String) {
    let stats = &core.stats;
    let _ = write!(
        text,
        "# Server\r\nredis_version:{REDIS_VERSION}\r\ncorelane_version:{}\r\nredis_mode:standalone\r\n\
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
        "blocked_clients:0\r\nclient_output_limit_bytes:{}\r\n\r\n",
        core.config.output_limit
    );
}

/// `used_memory`, `used_memory_rss` and where the first came from.
///
/// Redis's `used_memory` is what its allocator has handed out and not yet
/// taken back. Here that is glibc malloc's own count (`mallinfo2`: bytes
/// in chunks in use plus bytes in chunks it mapped whole), which covers
/// everything allocated through Rust's default allocator: tables,
/// buffers, pools and lanes (a lane counts whole once allocated, touched
/// or not). `used_memory_source:malloc` says so. When the process has no
/// `mallinfo2` (glibc before 2.33, another libc) `used_memory` is the
/// resident set, as `used_memory_rss`, and `used_memory_source:rss`. A
/// process that installs another global allocator (jemalloc, mimalloc)
/// still gets glibc's count, which then misses that allocator's memory;
/// compare with `used_memory_rss`.
fn memory(text: &mut String) {
    let rss = resident_bytes();
    let (used, source) = match malloc_in_use() {
        Some(bytes) => (bytes, "malloc"),
        None => (rss, "rss"),
    };
    let _ = write!(
        text,
        "# Memory\r\nused_memory:{used}\r\nused_memory_rss:{rss}\r\n\
         used_memory_source:{source}\r\n\r\n"
    );
}

/// The process's resident set in bytes, from `/proc/self/statm` (0 if it
/// cannot be read).
fn resident_bytes() -> u64 {
    let pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|statm| statm.split_whitespace().nth(1)?.parse::<u64>().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(0) as u64;
    pages * page
}

/// Bytes glibc malloc has handed out and not had back, if this process's
/// libc has `mallinfo2`.
///
/// Looked up by name at run time rather than linked: a binary linked
/// against `mallinfo2` would not load at all on a glibc older than 2.33.
/// (The older `mallinfo` is not used: its `int` fields wrap past 2 GiB.)
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn malloc_in_use() -> Option<u64> {
    use std::sync::OnceLock;

    type Mallinfo2 = unsafe extern "C" fn() -> libc::mallinfo2;
    static MALLINFO2: OnceLock<Option<Mallinfo2>> = OnceLock::new();
    let mallinfo2 = MALLINFO2.get_or_init(|| {
        // SAFETY: the name is a NUL-terminated string; dlsym has no other
        // preconditions, and RTLD_DEFAULT searches the loaded objects.
        let symbol = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"mallinfo2".as_ptr()) };
        // SAFETY: a symbol named mallinfo2 in glibc is the function of
        // that signature (glibc 2.33 and later); null means absent.
        (!symbol.is_null())
            .then(|| unsafe { std::mem::transmute::<*mut libc::c_void, Mallinfo2>(symbol) })
    });
    // SAFETY: mallinfo2 takes no arguments, only reads malloc's state
    // under its own locks, and may be called from any thread.
    let info = unsafe { (*mallinfo2)?() };
    Some((info.uordblks + info.hblkhd) as u64)
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn malloc_in_use() -> Option<u64> {
    None
}

/// This core's journal (with `--journal`): where it ends, how far it is
/// synced, how many syncs it took, and how many segments it abandoned
/// because their file was truncated under it (each may have lost frames).
fn journal(core: &ServeCore, text: &mut String) {
    let Some(journal) = &core.journal else {
        return;
    };
    let writer = journal.writer();
    let _ = write!(
        text,
        "# Journal\r\njournal_position:{}\r\njournal_synced_position:{}\r\njournal_syncs:{}\r\n\
         journal_abandoned_segments:{}\r\n\r\n",
        writer.position(),
        writer.synced_position(),
        writer.syncs(),
        writer.abandoned().len()
    );
}

fn pubsub(core: &ServeCore, text: &mut String) {
    // This core's subscriptions and what the others last announced.
    let mut channels: HashSet<&[u8]> = core.subs.channels().collect();
    let mut patterns: HashSet<&[u8]> = core.subs.patterns().collect();
    for remote in &core.remote {
        channels.extend(remote.channels());
        patterns.extend(remote.patterns());
    }
    let _ = write!(
        text,
        "# Pubsub\r\npubsub_channels:{}\r\npubsub_patterns:{}\r\n\r\n",
        channels.len(),
        patterns.len()
    );
}

fn stats(core: &ServeCore, merged: &CoreMetrics, text: &mut String) {
    let counters = &merged.counters;
    let _ = write!(
        text,
        "# Stats\r\ntotal_connections_received:{}\r\ntotal_commands_processed:{}\r\n\
         lane_messages_sent:{}\r\n\
         lane_messages_delivered:{}\r\nlane_messages_refused:{}\r\nloop_turns:{}\r\n\
         loop_parks:{}\r\n\r\n",
        core.stats.accepted.load(Ordering::Relaxed),
        core.stats
            .commands
            .iter()
            .map(|count| count.load(Ordering::Relaxed))
            .sum::<u64>(),
        counters.sent,
        counters.delivered,
        counters.refused,
        counters.turns,
        counters.parks,
    );
}

/// Each core's buffer pool (socket input and output buffers, large lane
/// messages), as that core last published it, and the total; then the
/// part of each pool that connections hold for output.
fn pools(core: &ServeCore, cores: &[CoreMetrics], text: &mut String) {
    text.push_str("# Pools\r\n");
    let mut total = PoolUsage::default();
    for (index, metrics) in cores.iter().enumerate() {
        let _ = write!(text, "pool_core_{index}:");
        pool_usage(&metrics.pool, text);
        total.add(&metrics.pool);
    }
    text.push_str("pool_all:");
    pool_usage(&total, text);
    let mut all = OutputCounts::default();
    for (index, output) in core.stats.output.iter().enumerate() {
        let counts = output.load();
        let _ = write!(text, "output_core_{index}:");
        output_counts(&counts, text);
        all.buffers += counts.buffers;
        all.bytes += counts.bytes;
        all.fallbacks += counts.fallbacks;
    }
    text.push_str("output_all:");
    output_counts(&all, text);
    text.push_str("\r\n");
}

fn output_counts(counts: &OutputCounts, text: &mut String) {
    let _ = write!(
        text,
        "buffers={},bytes={},fallbacks={}\r\n",
        counts.buffers, counts.bytes, counts.fallbacks
    );
}

fn pool_usage(usage: &PoolUsage, text: &mut String) {
    let _ = write!(
        text,
        "in_use={},in_use_bytes={},free={},free_bytes={},remote_returns={},fallbacks={},\
         fallback_bytes={}\r\n",
        usage.in_use,
        usage.in_use_bytes,
        usage.free,
        usage.free_bytes,
        usage.remote_returns,
        usage.fallbacks,
        usage.fallback_bytes,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `used_memory` counts what was allocated, touched or not; the
    /// resident set only what was touched.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn used_memory_is_mallocs_count_not_the_resident_set() {
        const LEN: usize = 1 << 30;
        let before = malloc_in_use().expect("glibc has mallinfo2");
        let rss_before = resident_bytes();
        let untouched: Vec<u8> = std::hint::black_box(Vec::with_capacity(LEN));
        let after = malloc_in_use().expect("glibc has mallinfo2");
        let rss_after = resident_bytes();
        drop(untouched);
        // Process-wide counts: other test threads allocate and free
        // meanwhile (here a run saw 49 KB less than the gigabyte), so the
        // bar is half of it, the same half the resident set must stay under.
        assert!(after >= before + (LEN as u64) / 2, "{before} -> {after}");
        assert!(
            rss_after < rss_before + (LEN as u64) / 2,
            "{rss_before} -> {rss_after}"
        );

        let mut text = String::new();
        memory(&mut text);
        assert!(text.contains("\r\nused_memory_source:malloc\r\n"), "{text}");
    }
}
