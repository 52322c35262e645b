//! Bottleneck analysis off the hot path: a watcher thread that takes every
//! core's metrics interval each period, keeps moving averages, and raises
//! alerts; and a stall detector that names a handler running too long.
//!
//! The analysis itself ([`Analyzer`]) is plain code fed with intervals and
//! handler slots, so it can be driven deterministically; [`Watcher`] is
//! the thread that feeds it from a running runtime. Neither ever waits for
//! a core: intervals are swapped out, and the stall detector reads each
//! core's "handler running since" slot.

use std::collections::VecDeque;
use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::export::IntervalLog;
use super::{Interval, RunningHandler};
use crate::clock;

/// Where a [`Watcher`] reads from: a running runtime
/// ([`RuntimeHandle`](crate::runtime::RuntimeHandle) implements it), or
/// anything else that hands out intervals and handler slots.
pub trait WatchSource {
    /// Every core's interval since the last call, swapped out.
    fn take_intervals(&self) -> Vec<Interval>;
    /// What each core is running now.
    fn running_handlers(&self) -> Vec<Option<RunningHandler>>;
}

/// What to watch for. A limit of `None` is not checked.
#[derive(Clone, Debug)]
pub struct WatchConfig {
    /// How often intervals are taken and thresholds evaluated.
    pub period: Duration,
    /// Periods in the moving averages that thresholds compare against.
    pub window: usize,
    /// Limit on a core's delivery p99, in nanoseconds, averaged over the
    /// last `window` periods in which the core delivered anything (a
    /// period with no deliveries has no p99 and is left out).
    pub p99_limit_ns: Option<u64>,
    /// Limit on a core's backlog (lanes plus handler), in bytes.
    pub backlog_limit_bytes: Option<u64>,
    /// Limit on a core's busy share, 0.0 to 1.0.
    pub busy_share_limit: Option<f64>,
    /// A backlog that grew in this many periods running raises a trend
    /// warning (0: never).
    pub trend_periods: usize,
    /// A handler running longer than this is a stall.
    pub stall_after: Option<Duration>,
    /// How often the stall detector looks at the cores.
    pub stall_check: Duration,
}

impl Default for WatchConfig {
    fn default() -> Self {
        WatchConfig {
            period: Duration::from_secs(1),
            window: 10,
            p99_limit_ns: None,
            backlog_limit_bytes: None,
            busy_share_limit: None,
            trend_periods: 5,
            stall_after: Some(Duration::from_millis(500)),
            stall_check: Duration::from_millis(10),
        }
    }
}

/// A threshold crossed, a trend or a stall.
#[derive(Clone, Debug, PartialEq)]
pub enum Alert {
    /// The moving average of a core's delivery p99 went over the limit.
    P99 {
        /// The core.
        core: usize,
        /// p99 of the last period, ns.
        last_ns: u64,
        /// Moving average over the window, ns.
        average_ns: f64,
        /// The limit, ns.
        limit_ns: u64,
    },
    /// The moving average of a core's backlog went over the limit.
    Backlog {
        /// The core.
        core: usize,
        /// Backlog at the end of the last period, bytes.
        last_bytes: u64,
        /// Moving average, bytes.
        average_bytes: f64,
        /// The limit, bytes.
        limit_bytes: u64,
    },
    /// The moving average of a core's busy share went over the limit.
    BusyShare {
        /// The core.
        core: usize,
        /// Busy share of the last period.
        last: f64,
        /// Moving average.
        average: f64,
        /// The limit.
        limit: f64,
    },
    /// A core's backlog grew in every one of the last `periods` periods.
    BacklogGrowing {
        /// The core.
        core: usize,
        /// Periods of growth.
        periods: usize,
        /// Backlog when the growth began, bytes.
        from_bytes: u64,
        /// Backlog now, bytes.
        to_bytes: u64,
    },
    /// A handler has been running longer than allowed.
    Stall {
        /// The core.
        core: usize,
        /// The handler's name (a message kind, `on_io`, `on_timer`, `on_turn`).
        handler: &'static str,
        /// How long it has been running, ns.
        running_ns: u64,
    },
}

impl fmt::Display for Alert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Alert::P99 { core, last_ns, average_ns, limit_ns } => write!(
                f,
                "core {core}: delivery p99 averages {:.1} us (last {:.1} us), over the {:.1} us limit",
                average_ns / 1e3,
                *last_ns as f64 / 1e3,
                *limit_ns as f64 / 1e3
            ),
            Alert::Backlog { core, last_bytes, average_bytes, limit_bytes } => write!(
                f,
                "core {core}: backlog averages {average_bytes:.0} bytes (last {last_bytes}), \
                 over the {limit_bytes} byte limit"
            ),
            Alert::BusyShare { core, last, average, limit } => write!(
                f,
                "core {core}: busy {:.0}% on average (last {:.0}%), over the {:.0}% limit",
                average * 100.0,
                last * 100.0,
                limit * 100.0
            ),
            Alert::BacklogGrowing { core, periods, from_bytes, to_bytes } => write!(
                f,
                "core {core}: backlog has grown for {periods} periods running, \
                 {from_bytes} -> {to_bytes} bytes"
            ),
            Alert::Stall { core, handler, running_ns } => write!(
                f,
                "core {core}: handler {handler} has been running for {:.1} ms",
                *running_ns as f64 / 1e6
            ),
        }
    }
}

/// Moving averages and alert state for one core.
#[derive(Debug, Default)]
struct CoreWatch {
    p99: VecDeque<f64>,
    backlog: VecDeque<f64>,
    busy: VecDeque<f64>,
    /// Which thresholds are over their limit now (alerts fire on crossing).
    over: [bool; 3],
    /// Backlog at the end of each recent period, newest last.
    backlog_history: VecDeque<u64>,
    trend_raised: bool,
    /// Start time of the handler last reported as stalled.
    stalled: Option<u64>,
}

/// The analysis, fed by [`Watcher`] or by hand.
#[derive(Debug)]
pub struct Analyzer {
    config: WatchConfig,
    cores: Vec<CoreWatch>,
}

impl Analyzer {
    /// An analyzer with no history.
    pub fn new(config: WatchConfig) -> Self {
        Analyzer {
            config,
            cores: Vec::new(),
        }
    }

    /// Evaluates one period: `intervals` indexed by core. Returns the
    /// alerts raised; a threshold alerts when its moving average crosses
    /// the limit, and again only after it has come back under.
    pub fn evaluate(&mut self, intervals: &[Interval]) -> Vec<Alert> {
        if self.cores.len() < intervals.len() {
            self.cores.resize_with(intervals.len(), CoreWatch::default);
        }
        let window = self.config.window.max(1);
        let mut alerts = Vec::new();
        for (core, interval) in intervals.iter().enumerate() {
            let metrics = &interval.metrics;
            let watch = &mut self.cores[core];
            let p99 = metrics.delivery.percentile(99.0);
            let backlog = metrics.gauges.backlog_bytes();
            let busy = metrics.counters.busy_share();
            // A period that delivered nothing has no p99 (the histogram
            // reads 0). Averaged in as 0 it would dilute the spikes of a
            // core with sporadic traffic until no limit fires: it leaves
            // the p99 average, and whether it is over, as they were.
            let delivered = metrics.delivery.count() > 0;
            let p99_average = if delivered {
                push_average(&mut watch.p99, p99 as f64, window)
            } else {
                mean(&watch.p99)
            };
            let averages = [
                p99_average,
                push_average(&mut watch.backlog, backlog as f64, window),
                push_average(&mut watch.busy, busy, window),
            ];
            let limits = [
                self.config.p99_limit_ns.map(|l| l as f64),
                self.config.backlog_limit_bytes.map(|l| l as f64),
                self.config.busy_share_limit,
            ];
            for which in 0..3 {
                let Some(limit) = limits[which] else { continue };
                if which == 0 && !delivered {
                    continue;
                }
                let over = averages[which] > limit;
                if over && !watch.over[which] {
                    alerts.push(match which {
                        0 => Alert::P99 {
                            core,
                            last_ns: p99,
                            average_ns: averages[0],
                            limit_ns: limit as u64,
                        },
                        1 => Alert::Backlog {
                            core,
                            last_bytes: backlog,
                            average_bytes: averages[1],
                            limit_bytes: limit as u64,
                        },
                        _ => Alert::BusyShare {
                            core,
                            last: busy,
                            average: averages[2],
                            limit,
                        },
                    });
                }
                watch.over[which] = over;
            }
            if let Some(alert) = self.trend(core, backlog) {
                alerts.push(alert);
            }
        }
        alerts
    }

    /// Records `backlog` for `core`; a trend alert if it has grown for
    /// `trend_periods` periods running (once per run of growth).
    fn trend(&mut self, core: usize, backlog: u64) -> Option<Alert> {
        let periods = self.config.trend_periods;
        let watch = &mut self.cores[core];
        if periods == 0 {
            return None;
        }
        let grew = watch
            .backlog_history
            .back()
            .is_some_and(|&last| backlog > last);
        if !grew {
            watch.backlog_history.clear();
            watch.trend_raised = false;
        }
        watch.backlog_history.push_back(backlog);
        if watch.backlog_history.len() > periods + 1 {
            watch.backlog_history.pop_front();
        }
        if watch.backlog_history.len() == periods + 1 && !watch.trend_raised {
            watch.trend_raised = true;
            return Some(Alert::BacklogGrowing {
                core,
                periods,
                from_bytes: watch.backlog_history[0],
                to_bytes: backlog,
            });
        }
        None
    }

    /// Checks what each core is running at `now_ns` (on [`crate::clock`]);
    /// a handler running past `stall_after` is reported once.
    pub fn check_stalls(&mut self, running: &[Option<RunningHandler>], now_ns: u64) -> Vec<Alert> {
        let Some(limit) = self.config.stall_after else {
            return Vec::new();
        };
        if self.cores.len() < running.len() {
            self.cores.resize_with(running.len(), CoreWatch::default);
        }
        let limit = limit.as_nanos() as u64;
        let mut alerts = Vec::new();
        for (core, handler) in running.iter().enumerate() {
            let watch = &mut self.cores[core];
            let Some(handler) = handler else {
                watch.stalled = None;
                continue;
            };
            let running_ns = now_ns.saturating_sub(handler.started_ns);
            if running_ns > limit && watch.stalled != Some(handler.started_ns) {
                watch.stalled = Some(handler.started_ns);
                alerts.push(Alert::Stall {
                    core,
                    handler: handler.name,
                    running_ns,
                });
            }
        }
        alerts
    }
}

/// Adds `value` to a window of at most `window` values; returns the mean.
fn push_average(values: &mut VecDeque<f64>, value: f64, window: usize) -> f64 {
    values.push_back(value);
    while values.len() > window {
        values.pop_front();
    }
    mean(values)
}

/// The mean of `values`; 0 for none.
fn mean(values: &VecDeque<f64>) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.iter().sum::<f64>() / values.len() as f64
}

/// A callback told of every alert, on the watcher's thread.
pub type AlertCallback = Box<dyn FnMut(&Alert) + Send>;

/// The watcher thread. Dropping it stops the thread.
pub struct Watcher {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Watcher {
    /// Starts watching `runtime`: every alert goes to `log::warn!` and to
    /// `on_alert`; if `log` is given, every period's intervals are also
    /// appended to it. The watcher takes the runtime's intervals (see
    /// [`RuntimeHandle::take_intervals`](crate::runtime::RuntimeHandle::take_intervals)):
    /// run one watcher per runtime.
    ///
    /// # Errors
    ///
    /// The thread could not be started.
    pub fn start(
        runtime: impl WatchSource + Send + 'static,
        config: WatchConfig,
        mut on_alert: AlertCallback,
        mut log: Option<IntervalLog<Box<dyn Write + Send>>>,
    ) -> std::io::Result<Watcher> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("corelane-watch".into())
            .spawn(move || {
                let tick = config
                    .stall_check
                    .min(config.period)
                    .max(Duration::from_millis(1));
                let period = config.period.as_nanos() as u64;
                let mut analyzer = Analyzer::new(config);
                let mut next_period = clock::now_ns() + period;
                let mut raise = |alert: Alert| {
                    log::warn!("{alert}");
                    on_alert(&alert);
                };
                while !stopping.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    let now = clock::now_ns();
                    for alert in analyzer.check_stalls(&runtime.running_handlers(), now) {
                        raise(alert);
                    }
                    if now < next_period {
                        continue;
                    }
                    next_period = now + period;
                    let intervals = runtime.take_intervals();
                    for alert in analyzer.evaluate(&intervals) {
                        raise(alert);
                    }
                    if let Some(writer) = log.as_mut() {
                        if let Err(error) = writer.write(&intervals) {
                            log::error!("interval log: {error}; no longer written");
                            log = None;
                        }
                    }
                }
            })?;
        Ok(Watcher {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::CoreMetrics;

    fn interval(p99_ns: u64, backlog: u64, busy_ns: u64, idle_ns: u64) -> Interval {
        let mut metrics = CoreMetrics::default();
        metrics.delivery.record(p99_ns);
        metrics.gauges.lane_backlog_bytes = backlog;
        metrics.counters.busy_ns = busy_ns;
        metrics.counters.parked_ns = idle_ns;
        Interval {
            metrics,
            start_ns: 0,
            end_ns: 1,
        }
    }

    #[test]
    fn thresholds_fire_on_crossing_of_the_moving_average() {
        let mut analyzer = Analyzer::new(WatchConfig {
            window: 2,
            p99_limit_ns: Some(1_000),
            busy_share_limit: Some(0.9),
            trend_periods: 0,
            ..WatchConfig::default()
        });
        // Core 1 spikes once: the average (500 + 2000) / 2 crosses 1000.
        assert!(analyzer
            .evaluate(&[interval(500, 0, 1, 9), interval(500, 0, 1, 9)])
            .is_empty());
        let alerts = analyzer.evaluate(&[interval(500, 0, 1, 9), interval(2_000, 0, 1, 9)]);
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        assert!(matches!(
            alerts[0],
            Alert::P99 {
                core: 1,
                limit_ns: 1_000,
                ..
            }
        ));
        // Still over: no repeat. Back under, then over again: fires again.
        assert!(analyzer
            .evaluate(&[interval(500, 0, 1, 9), interval(2_000, 0, 1, 9)])
            .is_empty());
        analyzer.evaluate(&[interval(500, 0, 1, 9), interval(100, 0, 1, 9)]);
        analyzer.evaluate(&[interval(500, 0, 1, 9), interval(100, 0, 1, 9)]);
        let again = analyzer.evaluate(&[interval(500, 0, 1, 9), interval(5_000, 0, 1, 9)]);
        assert!(
            matches!(again[..], [Alert::P99 { core: 1, .. }]),
            "{again:?}"
        );
        // Busy share: 100% on core 0 for two periods.
        analyzer.evaluate(&[interval(500, 0, 10, 0), interval(100, 0, 1, 9)]);
        let busy = analyzer.evaluate(&[interval(500, 0, 10, 0), interval(100, 0, 1, 9)]);
        assert!(
            matches!(busy[..], [Alert::BusyShare { core: 0, .. }]),
            "{busy:?}"
        );
    }

    /// Periods in which a core delivered nothing do not count as a p99
    /// of 0: a core whose traffic comes in bursts is judged on the
    /// bursts' latency.
    #[test]
    fn periods_without_deliveries_leave_the_p99_average_alone() {
        let mut analyzer = Analyzer::new(WatchConfig {
            window: 4,
            p99_limit_ns: Some(1_000),
            trend_periods: 0,
            ..WatchConfig::default()
        });
        let quiet = || Interval {
            metrics: CoreMetrics::default(),
            start_ns: 0,
            end_ns: 1,
        };
        for _ in 0..3 {
            assert!(analyzer.evaluate(&[quiet()]).is_empty());
        }
        let alerts = analyzer.evaluate(&[interval(2_000, 0, 1, 9)]);
        assert!(
            matches!(
                alerts[..],
                [Alert::P99 {
                    core: 0,
                    last_ns: 2_000..=2_100,
                    ..
                }]
            ),
            "{alerts:?}"
        );
        // Quiet again: still over, so no second alert. Back under with
        // fast periods (quiet ones between them change nothing), then
        // over again: it fires again.
        assert!(analyzer.evaluate(&[quiet()]).is_empty());
        for _ in 0..3 {
            assert!(analyzer.evaluate(&[interval(100, 0, 1, 9)]).is_empty());
            assert!(analyzer.evaluate(&[quiet()]).is_empty());
        }
        let again = analyzer.evaluate(&[interval(5_000, 0, 1, 9)]);
        assert!(
            matches!(again[..], [Alert::P99 { core: 0, .. }]),
            "(100 + 100 + 100 + 5000) / 4 is over again: {again:?}"
        );
    }

    #[test]
    fn a_backlog_that_keeps_growing_raises_one_trend_warning() {
        let mut analyzer = Analyzer::new(WatchConfig {
            trend_periods: 3,
            backlog_limit_bytes: Some(10_000),
            ..WatchConfig::default()
        });
        let mut alerts = Vec::new();
        for backlog in [100, 50, 60, 70, 80, 90, 95, 10] {
            alerts.extend(analyzer.evaluate(&[interval(1, backlog, 1, 1)]));
        }
        assert_eq!(
            alerts,
            vec![Alert::BacklogGrowing {
                core: 0,
                periods: 3,
                from_bytes: 50,
                to_bytes: 80
            }]
        );
    }

    #[test]
    fn a_stall_is_named_once_per_handler_call() {
        let mut analyzer = Analyzer::new(WatchConfig {
            stall_after: Some(Duration::from_millis(5)),
            ..WatchConfig::default()
        });
        let slow = Some(RunningHandler {
            name: "Publish",
            started_ns: 1_000,
        });
        assert!(analyzer.check_stalls(&[None, slow], 2_000_000).is_empty());
        let alerts = analyzer.check_stalls(&[None, slow], 10_000_000);
        assert_eq!(
            alerts,
            vec![Alert::Stall {
                core: 1,
                handler: "Publish",
                running_ns: 9_999_000
            }]
        );
        assert!(analyzer.check_stalls(&[None, slow], 20_000_000).is_empty());
        assert!(alerts[0].to_string().contains("core 1: handler Publish"));
    }
}
