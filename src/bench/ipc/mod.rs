//! Round trips between two processes through the shared-memory rings of
//! [`crate::segment::ipc`], against the in-process frame lane between two
//! threads and a Unix socket pair and a pipe pair between the same two
//! processes: the IPC section of `corelane bench`, and the parts the
//! cargo bench `benches/ipc.rs` shares with it.
//!
//! Every row bounces one 64-byte message between side A, pinned to the
//! first CPU, and side B, pinned to the second: A sends, B echoes, A times
//! the round trip. Side B is a second thread for the in-process lane and a
//! second process for every other row ([`process_round_trips`]).

mod endpoints;
mod process;

use std::time::Duration;

pub use endpoints::{
    echo, lane_pair, time_round_trips, Endpoint, LaneEnd, RingEnd, RoundTrips, StreamEnd,
    TickClock, Words64, MESSAGE_BYTES, PATIENCE, RING_BYTES, WARMUP_TRIPS,
};
pub use process::{
    process_round_trips, run_echo_side, spawn_command, EchoProcess, EchoSpec, ScratchDir, Sides,
    SpawnEcho, Transport,
};

use super::report::{curve, latency_fields};
use super::{Report, Settings};
use crate::metrics::LatencyHistogram;

/// The in-process frame lane: side B on a thread of its own.
///
/// # Errors
///
/// Any error of the round trips.
pub fn lane_round_trips(
    sides: Sides,
    measure: Duration,
    clock: TickClock,
) -> std::io::Result<RoundTrips> {
    let (mut a, mut b) = lane_pair();
    std::thread::scope(|scope| {
        let echo_side = scope.spawn(move || {
            sides.pin_b();
            echo(&mut b)
        });
        sides.pin_a();
        let timed = time_round_trips(&mut a, measure, clock);
        // Hang up whatever happened, so the echo thread returns.
        a.hang_up();
        let echoed = echo_side
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the echo thread panicked")));
        let timed = timed?;
        echoed?;
        Ok(timed)
    })
}

/// One row of the section, all its rounds merged.
struct Row {
    key: &'static str,
    name: &'static str,
    transport: Option<Transport>,
    histogram: LatencyHistogram,
    seconds: f64,
}

/// Runs the section: every row once per round, interleaved, each for
/// `settings.measure`; the rounds of a row are merged into one histogram.
/// Rows between processes need `settings.echo_command`; without it only
/// the lane row runs.
pub(super) fn run(settings: &Settings, report: &mut Report) {
    let sides = Sides::detect();
    let clock = TickClock::monotonic();
    let mut rows = vec![Row {
        key: "lane",
        name: "in-process frame lane (2 threads)",
        transport: None,
        histogram: LatencyHistogram::new(),
        seconds: 0.0,
    }];
    let spawn = settings.echo_command.as_deref().map(spawn_command);
    if spawn.is_some() {
        for (transport, name) in [
            (Transport::Ring, "ipc ring (2 processes)"),
            (
                Transport::RingChecksummed,
                "ipc ring, checksummed (2 processes)",
            ),
            (Transport::Socket, "unix socket pair (2 processes)"),
            (Transport::Pipe, "pipe pair (2 processes)"),
        ] {
            rows.push(Row {
                key: transport.name(),
                name,
                transport: Some(transport),
                histogram: LatencyHistogram::new(),
                seconds: 0.0,
            });
        }
    } else {
        log::warn!("bench: no echo command: IPC rows between processes skipped");
    }

    for round in 0..settings.rounds {
        for row in &mut rows {
            settings.say(&format!(
                "ipc: {} (round {}/{})",
                row.name,
                round + 1,
                settings.rounds
            ));
            let timed = match (row.transport, &spawn) {
                (Some(transport), Some(spawn)) => {
                    process_round_trips(transport, spawn, sides, settings.measure, clock)
                }
                _ => lane_round_trips(sides, settings.measure, clock),
            };
            match timed {
                Ok(timed) => {
                    row.histogram.merge(&timed.histogram);
                    row.seconds += timed.seconds;
                }
                Err(error) => log::error!("bench: ipc {}: {error}", row.name),
            }
        }
    }

    let p50 = |key: &str| {
        rows.iter()
            .find(|row| row.key == key && !row.histogram.is_empty())
            .map(|row| row.histogram.percentile(50.0) as f64)
    };
    let (lane_p50, socket_p50) = (p50("lane"), p50("socket"));
    for row in &rows {
        if row.histogram.is_empty() {
            continue;
        }
        let mut fields = latency_fields(&row.histogram);
        let mine = row.histogram.percentile(50.0) as f64;
        fields.push((
            "msgs_per_s",
            2.0 * row.histogram.count() as f64 / row.seconds.max(1e-9),
        ));
        if let Some(lane) = lane_p50 {
            fields.push(("p50_x_lane", mine / lane.max(1.0)));
        }
        if let Some(socket) = socket_p50 {
            fields.push(("p50_x_socket", mine / socket.max(1.0)));
        }
        report.push("ipc", row.name, fields);
        report
            .curves
            .push(curve(format!("ipc: {}", row.name), &row.histogram));
    }
}
