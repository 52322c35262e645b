//! `corelane bench`: one command that measures this machine's floor and
//! corelane's parts on it, side by side, and prints a table.
//!
//! Sections run one after another; each adds rows to a [`Report`]. A new
//! part adds a module with a `run(&Settings, &mut Report)` and a line in
//! [`run`] (and its name in [`SECTIONS`]). Absolute numbers on a shared machine mean
//! little: every section reports against a reference measured in the same
//! run (the floor, tokio, a binary heap), and the pipeline section
//! interleaves corelane and tokio runs.

mod floor;
mod hiccups;
pub mod ipc;
mod lanes;
mod pipeline;
mod pipeline_floor;
pub mod plot;
pub mod pools;
mod preempters;
mod record;
mod report;
mod timers;
#[cfg(feature = "cli")]
mod tokio_pipeline;

use std::ffi::OsString;
use std::sync::OnceLock;
use std::time::Duration;

use crate::runtime::IdleStrategy;

pub use report::{Curve, Report, Row};

/// How long and how hard to measure.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Time each timed measurement runs.
    pub measure: Duration,
    /// Offered rates of the pipeline, requests per second.
    pub rates: Vec<u64>,
    /// Interleaved rounds of the pipeline (corelane, tokio, corelane, ...),
    /// and of the IPC and pools sections' rows.
    pub rounds: usize,
    /// Warm-up before each pipeline run, not recorded.
    pub warmup: Duration,
    /// Print progress to stderr.
    pub progress: bool,
    /// How corelane's pipeline cores idle: the pipeline runs once per
    /// strategy, each against the same tokio runs. By default busy-spin,
    /// the configuration a latency-sensitive deployment runs (a pinned,
    /// spinning core per loop) and the one the bar is read on, then the
    /// runtime's default backoff, which parks after a few hundred idle
    /// microseconds and so shows what idling costs.
    pub pipeline_idle: Vec<IdleStrategy>,
    /// The program (and its leading arguments) that runs side B of the
    /// IPC rows between two processes, given [`ipc::EchoSpec::to_args`]
    /// after them; `corelane bench` names itself. `None` skips those rows.
    pub echo_command: Option<Vec<OsString>>,
    /// Sections to run, by name (see [`SECTIONS`]); `None` for all.
    pub only: Option<Vec<String>>,
}

/// The sections, in the order they run.
pub const SECTIONS: [&str; 7] = [
    "record", "floor", "lanes", "ipc", "timers", "pools", "pipeline",
];

/// The sections whose rows have latency curves, which `--plot` (see
/// [`plot`]) draws; the others' rows are ratios and rates.
pub const PLOTTED_SECTIONS: [&str; 4] = ["floor", "lanes", "ipc", "pipeline"];

impl Settings {
    /// The full run: a couple of minutes.
    pub fn full() -> Self {
        Settings {
            measure: Duration::from_secs(3),
            rates: vec![10_000, 50_000, 100_000, 200_000],
            rounds: 3,
            warmup: Duration::from_millis(500),
            progress: true,
            pipeline_idle: vec![IdleStrategy::BusySpin, IdleStrategy::default()],
            echo_command: None,
            only: None,
        }
    }

    /// A smoke run for CI: a few seconds.
    pub fn quick() -> Self {
        Settings {
            measure: Duration::from_millis(500),
            rates: vec![20_000, 100_000],
            rounds: 1,
            warmup: Duration::from_millis(200),
            progress: true,
            pipeline_idle: vec![IdleStrategy::BusySpin, IdleStrategy::default()],
            echo_command: None,
            only: None,
        }
    }

    /// Whether `section` is to run.
    fn wants(&self, section: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|only| only.iter().any(|name| name == section))
    }

    fn say(&self, what: &str) {
        if self.progress {
            eprintln!("corelane bench: {what}");
        }
    }
}

/// Runs every section (or those `settings.only` names).
pub fn run(settings: &Settings) -> Report {
    // The CPU list, before any section pins a thread (see `cpus`).
    cpus();
    let mut report = Report::default();
    if settings.wants("record") {
        settings.say("recording cost");
        record::run(settings, &mut report);
    }
    // These pin the measuring thread: run them on threads of their own,
    // so this thread keeps the whole CPU list (a runtime built later reads
    // it from here).
    if settings.wants("floor") {
        settings.say("the floor (cache-line round trip, hiccups of spinning CPUs)");
        off_thread(|| floor::run(settings, &mut report));
    }
    if settings.wants("lanes") {
        settings.say("lanes (frame ring round trip)");
        off_thread(|| lanes::run(settings, &mut report));
    }
    if settings.wants("ipc") {
        settings.say("ipc (round trips between two processes)");
        off_thread(|| ipc::run(settings, &mut report));
    }
    if settings.wants("timers") {
        settings.say("timers");
        timers::run(settings, &mut report);
    }
    if settings.wants("pools") {
        settings.say("pools (take+return against the allocator)");
        off_thread(|| pools::run(settings, &mut report));
    }
    if settings.wants("pipeline") {
        pipeline::run(settings, &mut report);
    }
    report
}

/// Runs `section` on a scoped thread of its own.
fn off_thread(section: impl FnOnce() + Send) {
    std::thread::scope(|scope| {
        if scope.spawn(section).join().is_err() {
            log::error!("a bench section panicked");
        }
    });
}

/// The CPUs the process may run on, read once: [`run`] reads it first,
/// before any thread is pinned. Read later from a pinned thread, the list
/// would hold that thread's CPU alone (it is the calling thread's mask),
/// and a thread it spawns inherits that mask: `pin(1)` from there would
/// land on the same CPU as `pin(0)`.
fn cpus() -> &'static [core_affinity::CoreId] {
    static CPUS: OnceLock<Vec<core_affinity::CoreId>> = OnceLock::new();
    CPUS.get_or_init(|| core_affinity::get_core_ids().unwrap_or_default())
}

/// Pins the calling thread to the `index`-th CPU the process may use (in
/// turn, when there are fewer). A no-op if the CPU list is unknown.
fn pin(index: usize) {
    let cpus = cpus();
    if !cpus.is_empty() {
        core_affinity::set_for_current(cpus[index % cpus.len()]);
    }
}

#[cfg(test)]
mod pin_tests {
    use super::*;

    /// A thread pinned to the first CPU spawns one that asks for the
    /// second: it must get the second, though it inherits the first
    /// thread's one-CPU mask (the hiccups rows once ran both spinners on
    /// one CPU that way).
    #[test]
    fn a_thread_spawned_by_a_pinned_thread_can_be_pinned_elsewhere() {
        let all = cpus().to_vec();
        if all.len() < 2 {
            eprintln!("one CPU: nothing to tell apart");
            return;
        }
        let seen = std::thread::spawn(|| {
            pin(0);
            std::thread::spawn(|| {
                pin(1);
                core_affinity::get_core_ids()
            })
            .join()
            .expect("inner thread")
        })
        .join()
        .expect("outer thread");
        assert_eq!(seen, Some(vec![all[1]]));
    }
}
