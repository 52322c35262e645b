//! Who took the spinners' time: every other thread's time on a CPU while
//! the hiccups rows spin, from Linux's per-thread scheduler statistics
//! (`/proc/<pid>/task/<tid>/schedstat`: nanoseconds run, and the number of
//! times it was given a CPU).
//!
//! With every CPU spinning, any time another thread runs is taken from a
//! spinner, so the threads listed here are the gaps' causes that live in
//! this machine's kernel or processes (what the hypervisor takes shows in
//! the gaps only). A kernel thread that runs in long slices (kdamond
//! scanning memory, a kworker flushing) is what puts millisecond gaps into
//! a spinning pipeline's tail.
//!
//! Only threads alive at both ends of the run are listed: a process that
//! starts and ends within it (a compiler job) takes time that shows in the
//! gaps and not here, so `all others` below the gaps' `lost_pct` means
//! short-lived work or the hypervisor. Anything unreadable (no `/proc`, a
//! kernel without schedstats) is left out, never an error: this is a
//! diagnosis, not a measurement the bars depend on.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

/// One thread's scheduler totals.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Totals {
    /// The thread's name (`comm`).
    name: String,
    /// Nanoseconds it has run.
    run_ns: u64,
    /// Times it was given a CPU.
    slices: u64,
}

/// Every thread of every process but this one, by (pid, tid).
#[derive(Debug, Default)]
pub(super) struct Snapshot {
    threads: HashMap<(u32, u32), Totals>,
}

/// What one thread (or all of them) ran between two snapshots.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Ran {
    /// The thread's name.
    pub(super) name: String,
    /// Nanoseconds run.
    pub(super) run_ns: u64,
    /// Times it was given a CPU.
    pub(super) slices: u64,
}

impl Ran {
    /// Row fields: milliseconds run, share of `window_ns` of CPU time,
    /// slices, and the mean slice in microseconds.
    pub(super) fn fields(&self, window_ns: u64) -> Vec<(&'static str, f64)> {
        vec![
            ("ran_ms", self.run_ns as f64 / 1e6),
            ("pct", 100.0 * self.run_ns as f64 / window_ns.max(1) as f64),
            ("slices", self.slices as f64),
            (
                "us_per_slice",
                self.run_ns as f64 / 1e3 / self.slices.max(1) as f64,
            ),
        ]
    }
}

impl Snapshot {
    /// Reads every thread's totals from `/proc`, leaving out this process.
    pub(super) fn take() -> Snapshot {
        Snapshot::take_from(Path::new("/proc"), std::process::id())
    }

    fn take_from(proc: &Path, own_pid: u32) -> Snapshot {
        let mut threads = HashMap::new();
        let Ok(processes) = fs::read_dir(proc) else {
            return Snapshot { threads };
        };
        for process in processes.flatten() {
            let Some(pid) = number(&process.file_name()) else {
                continue;
            };
            if pid == own_pid {
                continue;
            }
            let Ok(tasks) = fs::read_dir(process.path().join("task")) else {
                continue;
            };
            for task in tasks.flatten() {
                let Some(tid) = number(&task.file_name()) else {
                    continue;
                };
                let path = task.path();
                let (Ok(schedstat), Ok(name)) = (
                    fs::read_to_string(path.join("schedstat")),
                    fs::read_to_string(path.join("comm")),
                ) else {
                    continue;
                };
                if let Some((run_ns, slices)) = parse_schedstat(&schedstat) {
                    let name = name.trim_end().to_string();
                    threads.insert(
                        (pid, tid),
                        Totals {
                            name,
                            run_ns,
                            slices,
                        },
                    );
                }
            }
        }
        Snapshot { threads }
    }

    /// What each thread present in both snapshots ran from `self` to
    /// `later`, most first, and the sum over all of them (named
    /// `all others`). Threads that started or ended in between are left
    /// out.
    pub(super) fn ran_until(&self, later: &Snapshot) -> (Vec<Ran>, Ran) {
        let mut ran: Vec<Ran> = later
            .threads
            .iter()
            .filter_map(|(key, after)| {
                let before = self.threads.get(key)?;
                let run_ns = after.run_ns.checked_sub(before.run_ns)?;
                let slices = after.slices.checked_sub(before.slices)?;
                (run_ns > 0).then(|| Ran {
                    name: after.name.clone(),
                    run_ns,
                    slices,
                })
            })
            .collect();
        ran.sort_by(|a, b| b.run_ns.cmp(&a.run_ns).then_with(|| a.name.cmp(&b.name)));
        let total = Ran {
            name: "all others".to_string(),
            run_ns: ran.iter().map(|r| r.run_ns).sum(),
            slices: ran.iter().map(|r| r.slices).sum(),
        };
        (ran, total)
    }
}

/// A `/proc` entry name that is a number (a pid or tid).
fn number(name: &std::ffi::OsStr) -> Option<u32> {
    name.to_str()?.parse().ok()
}

/// `schedstat`'s first and third fields: nanoseconds run, and slices.
fn parse_schedstat(text: &str) -> Option<(u64, u64)> {
    let mut fields = text.split_ascii_whitespace();
    let run_ns = fields.next()?.parse().ok()?;
    let _waited_ns: u64 = fields.next()?.parse().ok()?;
    let slices = fields.next()?.parse().ok()?;
    Some((run_ns, slices))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_run_time_and_slices_of_schedstat() {
        assert_eq!(
            parse_schedstat("13378526852 16893624819 9407\n"),
            Some((13_378_526_852, 9407))
        );
        assert_eq!(parse_schedstat(""), None);
        assert_eq!(parse_schedstat("12 x 3"), None);
        assert_eq!(parse_schedstat("12 5"), None);
    }

    #[test]
    fn lists_what_each_thread_ran_most_first_and_their_sum() {
        let snapshot = |entries: &[((u32, u32), &str, u64, u64)]| Snapshot {
            threads: entries
                .iter()
                .map(|&(key, name, run_ns, slices)| {
                    (
                        key,
                        Totals {
                            name: name.to_string(),
                            run_ns,
                            slices,
                        },
                    )
                })
                .collect(),
        };
        let before = snapshot(&[
            ((105, 105), "kdamond.0", 1_000, 10),
            ((7, 7), "kworker/1:1", 500, 4),
            ((8, 8), "idle one", 200, 2),
            ((9, 9), "gone", 100, 1),
        ]);
        let after = snapshot(&[
            ((105, 105), "kdamond.0", 9_000, 13),
            ((7, 7), "kworker/1:1", 1_500, 9),
            ((8, 8), "idle one", 200, 2),
            ((10, 10), "new", 700, 1),
        ]);
        let (ran, total) = before.ran_until(&after);
        let names: Vec<&str> = ran.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["kdamond.0", "kworker/1:1"]);
        assert_eq!((ran[0].run_ns, ran[0].slices), (8_000, 3));
        assert_eq!((total.run_ns, total.slices), (9_000, 8));
        let fields = ran[0].fields(80_000);
        assert_eq!(fields[1], ("pct", 10.0));
        assert_eq!(fields[3], ("us_per_slice", 8_000.0 / 1e3 / 3.0));
    }

    #[test]
    fn a_real_snapshot_leaves_this_process_out() {
        let snapshot = Snapshot::take();
        let own = std::process::id();
        assert!(snapshot.threads.keys().all(|&(pid, _)| pid != own));
        // Where the kernel keeps schedstats, init is always there.
        if Path::new("/proc/1/task/1/schedstat").exists() {
            assert!(snapshot.threads.contains_key(&(1, 1)));
        }
    }
}
