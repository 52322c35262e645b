//! A cross-core request/response pipeline at fixed offered rates.
//!
//! A client on one core sends requests on a fixed schedule (every
//! `1 / rate` seconds); a server on another core answers each at once; the
//! client records, for every answer, the time since the request was
//! *meant* to be sent. A client held up (a full lane, a slow turn) still
//! owes the requests it missed, and their wait counts: latency is measured
//! from the intended send time, so coordinated omission cannot hide
//! stalls. The same pipeline runs on tokio's multi-thread runtime with its
//! mpsc channels, interleaved with corelane's runs, in the same process,
//! and so does the pipeline floor ([`super::pipeline_floor`]): two bare
//! spinning threads on the same CPUs, the least any spinning pipeline can
//! show here. `p99 floor / tokio` is the best the bar's ratio could read
//! on this machine; `p99 corelane busy-spin / floor` is corelane's own
//! cost above it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::report::{curve, latency_fields, median};
use super::{Report, Settings};
use crate::clock;
use crate::metrics::LatencyHistogram;
use crate::runtime::{Context, Handler, IdleStrategy, Runtime};

/// A request carries its intended send time; the answer echoes it.
#[derive(rkyv::Archive, rkyv::Serialize)]
enum Pipe {
    Request(u64),
    Answer(u64),
}

impl crate::frame::Message for Pipe {
    const TYPE_ID: u16 = 0x7e02;
    const VERSION: u8 = 1;
    const NAME: &'static str = "Pipe";
}

/// One run's schedule: `period_ns` apart from `start_ns`, recorded from
/// `record_from_ns`, sending until `end_ns`.
#[derive(Clone, Copy, Debug)]
pub(super) struct Schedule {
    pub(super) start_ns: u64,
    pub(super) period_ns: u64,
    pub(super) record_from_ns: u64,
    pub(super) end_ns: u64,
}

impl Schedule {
    pub(super) fn new(rate: u64, warmup: Duration, measure: Duration) -> Self {
        // Start a little later, so both runtimes are up before the first
        // request is due.
        let start_ns = clock::now_ns() + 20_000_000;
        let record_from_ns = start_ns + warmup.as_nanos() as u64;
        Schedule {
            start_ns,
            period_ns: (1_000_000_000 / rate.max(1)).max(1),
            record_from_ns,
            end_ns: record_from_ns + measure.as_nanos() as u64,
        }
    }
}

/// Longest a run waits for outstanding answers after the last request.
pub(super) const DRAIN_NS: u64 = 1_000_000_000;

struct Client {
    schedule: Schedule,
    next_ns: u64,
    sent: u64,
    answered: u64,
    histogram: LatencyHistogram,
    /// How late each request left, after its intended time.
    send_lag: LatencyHistogram,
    result: Arc<Mutex<Option<Measured>>>,
}

/// What a client measured: answer latency from the intended send time,
/// and how late the client itself sent.
#[derive(Default)]
pub(super) struct Measured {
    pub(super) latency: LatencyHistogram,
    pub(super) send_lag: LatencyHistogram,
}

struct Server {
    /// Answers the lane back had no room for, in order.
    queued: VecDeque<u64>,
}

enum Side {
    Client(Box<Client>),
    Server(Server),
}

impl Handler for Side {
    type Message = Pipe;

    fn on_message(&mut self, cx: &mut Context<'_, Pipe>, _from: usize, msg: &ArchivedPipe) {
        match (self, msg) {
            (Side::Server(server), ArchivedPipe::Request(intended)) => {
                server.queued.push_back(intended.to_native());
                server.flush(cx);
            }
            (Side::Client(client), ArchivedPipe::Answer(intended)) => {
                let intended = intended.to_native();
                client.answered += 1;
                if intended >= client.schedule.record_from_ns {
                    client
                        .histogram
                        .record(clock::now_ns().saturating_sub(intended));
                }
            }
            _ => {}
        }
    }

    fn on_turn(&mut self, cx: &mut Context<'_, Pipe>) -> bool {
        match self {
            Side::Server(server) => server.flush(cx),
            Side::Client(client) => client.send_due(cx),
        }
    }

    fn on_exit(&mut self, _cx: &mut Context<'_, Pipe>) {
        if let Side::Client(client) = self {
            let measured = Measured {
                latency: std::mem::take(&mut client.histogram),
                send_lag: std::mem::take(&mut client.send_lag),
            };
            *client.result.lock().unwrap_or_else(|e| e.into_inner()) = Some(measured);
        }
    }
}

impl Server {
    fn flush(&mut self, cx: &mut Context<'_, Pipe>) -> bool {
        let mut sent = false;
        while let Some(&intended) = self.queued.front() {
            if cx.send(0, &Pipe::Answer(intended)).is_err() {
                break;
            }
            self.queued.pop_front();
            sent = true;
        }
        sent
    }
}

impl Client {
    /// Sends every request whose time has come; stops the runtime once
    /// the schedule is over and every answer is in (or too late).
    fn send_due(&mut self, cx: &mut Context<'_, Pipe>) -> bool {
        let now = clock::now_ns();
        // A client that cannot keep up with the rate (say, one request a
        // nanosecond) would owe requests long after the schedule ends:
        // past the drain it stops sending, and what it never sent is not
        // recorded (as answers that never came are not).
        let late = now > self.schedule.end_ns + DRAIN_NS;
        while !late && self.next_ns <= now && self.next_ns < self.schedule.end_ns {
            if cx.send(1, &Pipe::Request(self.next_ns)).is_err() {
                // Lane full: the request is still owed, its wait counts.
                break;
            }
            if self.next_ns >= self.schedule.record_from_ns {
                self.send_lag.record(now - self.next_ns);
            }
            self.sent += 1;
            self.next_ns += self.schedule.period_ns;
        }
        let over = self.next_ns >= self.schedule.end_ns;
        if (over && self.answered == self.sent) || late {
            cx.stop_runtime();
        }
        true
    }
}

/// Runs the pipeline on corelane: client on core 0 (always busy while its
/// schedule runs, as tokio's client task is), server on core 1 (idling
/// with `idle` between requests).
pub(super) fn corelane(schedule: Schedule, idle: IdleStrategy) -> Measured {
    let result = Arc::new(Mutex::new(None));
    let client_result = Arc::clone(&result);
    let runtime = Runtime::builder()
        .cores(2)
        .idle(idle)
        .build()
        .and_then(|runtime| {
            runtime.start(move |core| {
                if core == 0 {
                    Side::Client(Box::new(Client {
                        schedule,
                        next_ns: schedule.start_ns,
                        sent: 0,
                        answered: 0,
                        histogram: LatencyHistogram::new(),
                        send_lag: LatencyHistogram::new(),
                        result: Arc::clone(&client_result),
                    }))
                } else {
                    Side::Server(Server {
                        queued: VecDeque::new(),
                    })
                }
            })
        });
    match runtime.and_then(|running| running.wait()) {
        Ok(_) => {}
        Err(error) => log::error!("corelane pipeline: {error}"),
    }
    let measured = result.lock().unwrap_or_else(|e| e.into_inner()).take();
    measured.unwrap_or_default()
}

/// A short name for an idle strategy, for row names.
fn idle_name(idle: IdleStrategy) -> &'static str {
    match idle {
        IdleStrategy::BusySpin => "busy-spin",
        IdleStrategy::SpinThenYield { .. } => "spin-yield",
        IdleStrategy::Backoff { .. } => "backoff",
        IdleStrategy::Park => "park",
    }
}

/// What one idle strategy measured over the rounds at one rate.
#[derive(Default)]
struct Runs {
    latency: LatencyHistogram,
    send_lag: LatencyHistogram,
    /// p99 over tokio's p99, one per round.
    ratios: Vec<f64>,
}

pub(super) fn run(settings: &Settings, report: &mut Report) {
    let strategies = &settings.pipeline_idle;
    for &rate in &settings.rates {
        let mut ours: Vec<Runs> = strategies.iter().map(|_| Runs::default()).collect();
        let mut theirs = LatencyHistogram::new();
        let mut floor = Floor::default();
        for round in 0..settings.rounds {
            let mut p99s = Vec::with_capacity(strategies.len());
            // Whether each strategy's run recorded anything: a ratio of an
            // empty histogram's p99 (0) means nothing and is not reported.
            let mut recorded = Vec::with_capacity(strategies.len());
            for (&idle, runs) in strategies.iter().zip(&mut ours) {
                settings.say(&format!(
                    "pipeline at {rate}/s, round {} of {}: corelane ({})",
                    round + 1,
                    settings.rounds,
                    idle_name(idle)
                ));
                let schedule = Schedule::new(rate, settings.warmup, settings.measure);
                let measured = corelane(schedule, idle);
                p99s.push(measured.latency.percentile(99.0));
                recorded.push(!measured.latency.is_empty());
                runs.latency.merge(&measured.latency);
                runs.send_lag.merge(&measured.send_lag);
            }
            let floor_p99 = floor.round(settings, rate, round);
            if let Some(spinning) = strategies.iter().position(|&i| i == IdleStrategy::BusySpin) {
                if let (Some(floor_p99), true) = (floor_p99, recorded[spinning]) {
                    floor
                        .over_floor
                        .push(p99s[spinning] as f64 / floor_p99.max(1) as f64);
                }
            }
            if let Some(b) = peer(settings, rate, round).filter(|b| !b.is_empty()) {
                let tokio_p99 = b.percentile(99.0).max(1) as f64;
                for ((runs, &p99), &recorded) in ours.iter_mut().zip(&p99s).zip(&recorded) {
                    if recorded {
                        runs.ratios.push(p99 as f64 / tokio_p99);
                    }
                }
                if let Some(floor_p99) = floor_p99 {
                    floor.over_tokio.push(floor_p99 as f64 / tokio_p99);
                }
                theirs.merge(&b);
            }
        }
        for (&idle, runs) in strategies.iter().zip(&ours) {
            let name = idle_name(idle);
            report.push(
                "pipeline",
                format!("corelane {name} {rate}/s"),
                latency_fields(&runs.latency),
            );
            report
                .curves
                .push(curve(format!("corelane {name} {rate}/s"), &runs.latency));
            report.push(
                "pipeline",
                format!("  send lag, {name} {rate}/s"),
                latency_fields(&runs.send_lag),
            );
        }
        if !theirs.is_empty() {
            report.push(
                "pipeline",
                format!("tokio mpsc {rate}/s"),
                latency_fields(&theirs),
            );
            report
                .curves
                .push(curve(format!("tokio {rate}/s"), &theirs));
            for (&idle, runs) in strategies.iter().zip(&mut ours) {
                if runs.ratios.is_empty() {
                    continue;
                }
                let median = median(std::mem::take(&mut runs.ratios));
                // The bar is read on the spinning configuration; the others
                // are shown for what idling costs.
                let mut fields = vec![("ratio", median)];
                if idle == IdleStrategy::BusySpin {
                    fields.push(("bar", 0.2));
                }
                report.push(
                    "pipeline",
                    format!("p99 corelane {} / tokio at {rate}/s", idle_name(idle)),
                    fields,
                );
            }
        }
        floor.report(rate, report);
    }
}

/// What the pipeline floor ([`super::pipeline_floor`]) measured over the
/// rounds at one rate.
#[derive(Default)]
struct Floor {
    latency: LatencyHistogram,
    /// The floor's p99 over tokio's, one per round: the least the bar's
    /// ratio could read on this machine.
    over_tokio: Vec<f64>,
    /// Busy-spinning corelane's p99 over the floor's, one per round:
    /// corelane's own cost above the machine's limit.
    over_floor: Vec<f64>,
}

impl Floor {
    /// Runs the floor pipeline once at `rate`; its p99, `None` if it
    /// recorded nothing.
    fn round(&mut self, settings: &Settings, rate: u64, round: usize) -> Option<u64> {
        settings.say(&format!(
            "pipeline at {rate}/s, round {} of {}: floor (two spinning threads)",
            round + 1,
            settings.rounds
        ));
        let schedule = Schedule::new(rate, settings.warmup, settings.measure);
        let latency = super::pipeline_floor::run(schedule);
        self.latency.merge(&latency);
        (!latency.is_empty()).then(|| latency.percentile(99.0))
    }

    /// The floor's row and curve, and its ratio rows (medians of the
    /// per-round ratios).
    fn report(self, rate: u64, report: &mut Report) {
        report.push(
            "pipeline",
            format!("floor pipeline {rate}/s"),
            latency_fields(&self.latency),
        );
        report
            .curves
            .push(curve(format!("floor pipeline {rate}/s"), &self.latency));
        if !self.over_tokio.is_empty() {
            report.push(
                "pipeline",
                format!("p99 floor / tokio at {rate}/s"),
                vec![("ratio", median(self.over_tokio))],
            );
        }
        if !self.over_floor.is_empty() {
            report.push(
                "pipeline",
                format!("p99 corelane busy-spin / floor at {rate}/s"),
                vec![("ratio", median(self.over_floor))],
            );
        }
    }
}

#[cfg(feature = "cli")]
fn peer(settings: &Settings, rate: u64, round: usize) -> Option<LatencyHistogram> {
    settings.say(&format!(
        "pipeline at {rate}/s, round {} of {}: tokio",
        round + 1,
        settings.rounds
    ));
    super::tokio_pipeline::run(Schedule::new(rate, settings.warmup, settings.measure))
}

#[cfg(not(feature = "cli"))]
fn peer(_settings: &Settings, _rate: u64, _round: usize) -> Option<LatencyHistogram> {
    None
}
