//! Hiccups: the time a pinned, busy-spinning thread loses to the machine.
//!
//! A thread pinned to a CPU reads the clock in a tight loop; any gap
//! between two consecutive reads longer than [`GAP_NS`] is time the CPU
//! spent elsewhere: an interrupt, a kernel thread, the hypervisor running
//! another guest's vCPU. Each gap goes into a histogram, and the rows give
//! the gaps' latency fields, how many there were per second and the share
//! of the run they took. It runs once with a spinner on each of the first
//! two CPUs (as a spinning pipeline has them: client and server) and once
//! with only the first spinning and the second idle.
//!
//! What it means for a spinning pipeline's tail: a request that arrives
//! while either side is in a gap waits out the rest of the gap, so with
//! both CPUs spinning a share `s` of lost time on each puts roughly `2s`
//! of the requests behind a gap; once that passes 1%, the pipeline's p99
//! is a gap length, whatever the pipeline does. Kernel work that must run
//! on a CPU (kworkers, kdamond, RCU callbacks) runs on an idle one if
//! there is one; with every CPU spinning it has to preempt a spinner, so
//! the long gaps (hundreds of microseconds to milliseconds) land in the
//! pipeline. The run with the second CPU idle shows what a spare CPU buys;
//! a runtime whose server parks (tokio) leaves that CPU idle between
//! requests, which is why it can show a shorter tail on a machine with
//! no CPU to spare.
//!
//! After the run with both CPUs spinning come the other threads that ran
//! meanwhile ([`super::preempters`]): each took its time from a spinner.

use std::time::Duration;

use super::preempters::Snapshot;
use super::report::latency_fields;
use super::{pin, Report, Settings};
use crate::clock;
use crate::metrics::LatencyHistogram;

/// Gaps between clock reads longer than this are counted (a read takes
/// tens of nanoseconds; a cache miss or a TLB walk stays well under it).
pub(super) const GAP_NS: u64 = 2_000;

/// What one spinning CPU lost.
#[derive(Default)]
pub(super) struct Gaps {
    /// Length of each gap, ns.
    pub(super) lengths: LatencyHistogram,
    /// Sum of the gaps, ns.
    pub(super) lost_ns: u64,
    /// Time watched, ns.
    pub(super) watched_ns: u64,
}

impl Gaps {
    /// Accounts for the time from one clock read, `last_ns`, to the next,
    /// `now_ns`.
    pub(super) fn observe(&mut self, last_ns: u64, now_ns: u64) {
        let step = now_ns.saturating_sub(last_ns);
        self.watched_ns += step;
        if step > GAP_NS {
            self.lengths.record(step);
            self.lost_ns += step;
        }
    }

    /// Gaps per second watched.
    pub(super) fn per_second(&self) -> f64 {
        self.lengths.count() as f64 * 1e9 / self.watched_ns.max(1) as f64
    }

    /// The share of the watched time lost in gaps, percent.
    pub(super) fn lost_percent(&self) -> f64 {
        100.0 * self.lost_ns as f64 / self.watched_ns.max(1) as f64
    }

    /// Latency fields of the gaps, then gaps per second and the share lost.
    fn fields(&self) -> Vec<(&'static str, f64)> {
        let mut fields = latency_fields(&self.lengths);
        fields.push(("gaps_per_s", self.per_second()));
        fields.push(("lost_pct", self.lost_percent()));
        fields
    }
}

/// Other threads listed by name after the both-CPUs run, most time first.
const PREEMPTERS_SHOWN: usize = 5;

pub(super) fn run(settings: &Settings, report: &mut Report) {
    let before = Snapshot::take();
    let both = watch(&[0, 1], settings.measure);
    let after = Snapshot::take();
    for (cpu, gaps) in both.iter().enumerate() {
        report.push("floor", format!("hiccups cpu{cpu}"), gaps.fields());
    }
    // Both CPUs spun, so whatever else ran took their time: the share is
    // of the two CPUs' time together.
    let window_ns = 2 * settings.measure.as_nanos() as u64;
    let (ran, total) = before.ran_until(&after);
    report.push("floor", "hiccups: all others ran", total.fields(window_ns));
    for thread in ran.iter().take(PREEMPTERS_SHOWN) {
        report.push(
            "floor",
            format!("hiccups: {} ran", thread.name),
            thread.fields(window_ns),
        );
    }
    if let Some(alone) = watch(&[0], settings.measure).first() {
        report.push("floor", "hiccups cpu0, cpu1 idle", alone.fields());
    }
}

/// Spins on each of `cpus` at once for `measure`; what each lost.
fn watch(cpus: &[usize], measure: Duration) -> Vec<Gaps> {
    std::thread::scope(|scope| {
        let spinners: Vec<_> = cpus
            .iter()
            .map(|&cpu| scope.spawn(move || spin(cpu, measure)))
            .collect();
        spinners
            .into_iter()
            .map(|spinner| spinner.join().unwrap_or_default())
            .collect()
    })
}

/// Pins to `cpu` and reads the clock in a tight loop for `measure`.
fn spin(cpu: usize, measure: Duration) -> Gaps {
    pin(cpu);
    let mut gaps = Gaps::default();
    let start = clock::now_ns();
    let end = start + measure.as_nanos() as u64;
    let mut last = start;
    while last < end {
        let now = clock::now_ns();
        gaps.observe(last, now);
        last = now;
    }
    gaps
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_steps_longer_than_the_threshold_count_as_gaps() {
        let mut gaps = Gaps::default();
        let reads = [0, 50, 100, 100 + GAP_NS, 100 + GAP_NS + 5_000, 1_000_000];
        for pair in reads.windows(2) {
            gaps.observe(pair[0], pair[1]);
        }
        // A step of exactly GAP_NS is not a gap; 5 us and the last step are.
        let last_step = 1_000_000 - (100 + GAP_NS + 5_000);
        assert_eq!(gaps.lengths.count(), 2);
        assert_eq!(gaps.lost_ns, 5_000 + last_step);
        assert_eq!(gaps.watched_ns, 1_000_000);
        assert!((gaps.per_second() - 2_000.0).abs() < 1e-6);
        let share = 100.0 * (5_000 + last_step) as f64 / 1e6;
        assert!((gaps.lost_percent() - share).abs() < 1e-9);
    }

    #[test]
    fn a_short_watch_accounts_for_all_of_its_time() {
        let gaps = watch(&[0], Duration::from_millis(20));
        assert_eq!(gaps.len(), 1);
        assert!(gaps[0].watched_ns >= 20_000_000);
        assert!(gaps[0].lost_ns <= gaps[0].watched_ns);
        assert!((0.0..=100.0).contains(&gaps[0].lost_percent()));
    }
}
