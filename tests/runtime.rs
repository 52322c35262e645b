//! The runtime end to end: placement, progress, wake-ups, shutdown counts.
//!
//! Runtimes pin their loops to the machine's CPUs, so the tests here take a
//! lock and run one at a time: two busy-spinning runtimes on one CPU would
//! measure the scheduler, not corelane.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::time::Duration;

use corelane::frame::Message;
use corelane::runtime::{Backpressure, Context, Handler, IdleStrategy, Runtime, SendError};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

const STRATEGIES: [IdleStrategy; 4] = [
    IdleStrategy::BusySpin,
    IdleStrategy::SpinThenYield { spins: 100 },
    IdleStrategy::Backoff {
        spins: 100,
        yields: 10,
    },
    IdleStrategy::Park,
];

#[derive(rkyv::Archive, rkyv::Serialize)]
struct Ball {
    hits: u64,
    trail: Vec<u8>,
}

impl Message for Ball {
    const TYPE_ID: u16 = 1;
    const VERSION: u8 = 1;
    const NAME: &'static str = "Ball";
}

/// Bounces a ball between core `a` and core `b` until it has been hit
/// `rounds` times, then stops the runtime.
struct Bounce {
    a: usize,
    b: usize,
    rounds: u64,
}

impl Handler for Bounce {
    type Message = Ball;

    fn on_start(&mut self, cx: &mut Context<'_, Ball>) {
        if cx.core() == self.a {
            let ball = Ball {
                hits: 0,
                trail: vec![7; 16],
            };
            cx.send(self.b, &ball).unwrap();
        }
    }

    fn on_message(&mut self, cx: &mut Context<'_, Ball>, from: usize, ball: &ArchivedBall) {
        assert_eq!(ball.trail.as_slice(), &[7; 16]);
        let hits = ball.hits.to_native() + 1;
        if hits == self.rounds {
            cx.stop_runtime();
            return;
        }
        let next = Ball {
            hits,
            trail: vec![7; 16],
        };
        cx.send(from, &next).unwrap();
    }
}

fn bounce(cores: usize, a: usize, b: usize, rounds: u64, idle: IdleStrategy) {
    let runtime = Runtime::builder().cores(cores).idle(idle).build().unwrap();
    let report = runtime
        .start(move |_| Bounce { a, b, rounds })
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(report.totals.sent, rounds, "{idle:?}");
    assert_eq!(report.totals.delivered, rounds, "{idle:?}");
    assert_eq!(report.totals.refused, 0);
    assert!(report.adds_up(), "{report}");
    let merged = report.metrics.merged();
    assert_eq!(merged.delivery.count(), rounds);
    assert_eq!(report.metrics.cores[a].counters.delivered, rounds / 2);
    assert_eq!(
        report.metrics.cores[b].counters.delivered,
        rounds - rounds / 2
    );
}

#[test]
fn messages_bounce_between_two_cores_under_every_idle_strategy() {
    let _serial = serial();
    for idle in STRATEGIES {
        bounce(2, 0, 1, 20_000, idle);
    }
}

/// A message with borrowed-bytes views sent in its place.
#[derive(rkyv::Archive, rkyv::Serialize)]
enum Parcel {
    Bytes { seq: u64, bytes: Vec<u8> },
}

impl Message for Parcel {
    const TYPE_ID: u16 = 2;
    const VERSION: u8 = 1;
    const NAME: &'static str = "Parcel";
}

/// A `Parcel` made of borrowed bytes, archived exactly as one
/// (`Encodes<Parcel>`): what a sender uses to archive bytes it does not own
/// straight into a lane.
#[derive(rkyv::Archive, rkyv::Serialize)]
#[rkyv(as = ArchivedParcel)]
enum ParcelView<'a> {
    Bytes {
        seq: u64,
        #[rkyv(with = rkyv::with::AsVec)]
        bytes: &'a [u8],
    },
}

// SAFETY: `Parcel`'s one variant, its fields in the same order, archived
// to the same bytes; the test below reads every view back as a `Parcel`.
unsafe impl corelane::frame::Encodes<Parcel> for ParcelView<'_> {}

/// Core 0 sends `count` views (and a few owned parcels) at once into a
/// small lane, so that most wait in the overflow queue and some are too
/// large for a frame; core 1 checks that each arrives whole, as a
/// `Parcel`, in order.
struct Views {
    count: u64,
    next: u64,
}

/// The trail of the `n`th view: its length and bytes vary with `n`, and
/// every 50th is larger than the lane's frames (so it goes by pool buffer).
fn view_trail(n: u64) -> Vec<u8> {
    let len = if n.is_multiple_of(50) {
        5000
    } else {
        (n % 200) as usize
    };
    (0..len).map(|i| (n as usize + i) as u8).collect()
}

impl Handler for Views {
    type Message = Parcel;

    fn on_start(&mut self, cx: &mut Context<'_, Parcel>) {
        if cx.core() == 0 {
            for n in 0..self.count {
                let trail = view_trail(n);
                // Every 7th goes as an owned `Parcel`, in among the views.
                let sent = if n % 7 == 3 {
                    let owned = Parcel::Bytes {
                        seq: n,
                        bytes: trail,
                    };
                    cx.send(1, &owned).map_err(|e| e.to_string())
                } else {
                    let view = ParcelView::Bytes {
                        seq: n,
                        bytes: &trail,
                    };
                    cx.send(1, &view).map_err(|e| e.to_string())
                };
                if let Err(error) = sent {
                    panic!("parcel {n}: {error}");
                }
            }
        }
    }

    fn on_message(&mut self, cx: &mut Context<'_, Parcel>, from: usize, parcel: &ArchivedParcel) {
        assert_eq!(from, 0);
        let ArchivedParcel::Bytes { seq, bytes } = parcel;
        assert_eq!(seq.to_native(), self.next);
        assert_eq!(bytes.as_slice(), view_trail(self.next).as_slice());
        self.next += 1;
        if self.next == self.count {
            cx.stop_runtime();
        }
    }
}

#[test]
fn a_borrowed_view_is_read_as_the_message_it_mirrors_sent_direct_held_and_pooled() {
    let _serial = serial();
    let count = 2_000;
    let runtime = Runtime::builder()
        .cores(2)
        .lane_capacity(4096)
        .backpressure(Backpressure::Overflow {
            capacity: count as usize,
        })
        .build()
        .unwrap();
    let report = runtime
        .start(move |_| Views { count, next: 0 })
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(report.totals.sent, count);
    assert_eq!(report.totals.delivered, count);
    assert_eq!(report.totals.refused, 0);
    assert!(report.metrics.cores[0].counters.overflowed > 0, "{report}");
}

/// C02: more cores than CPUs must still make progress, spinning or not.
#[test]
fn more_cores_than_cpus_make_progress_under_every_idle_strategy() {
    let _serial = serial();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cores = (cpus * 2).max(4);
    for idle in STRATEGIES {
        bounce(cores, 0, cores - 1, 100_000, idle);
    }
}

/// C01: the CPU list is read before any loop is pinned, so two cores land
/// on two different CPUs.
#[test]
fn each_core_runs_on_its_own_cpu() {
    let _serial = serial();
    let cpus = core_affinity::get_core_ids().unwrap_or_default();
    if cpus.len() < 2 {
        eprintln!("skipped: fewer than two CPUs");
        return;
    }
    let seen = Arc::new(Mutex::new(Vec::new()));

    struct WhereAmI(Arc<Mutex<Vec<(usize, i32)>>>);
    impl Handler for WhereAmI {
        type Message = Ball;
        fn on_start(&mut self, cx: &mut Context<'_, Ball>) {
            // SAFETY: sched_getcpu has no preconditions.
            let cpu = unsafe { libc::sched_getcpu() };
            let mut seen = self.0.lock().unwrap();
            seen.push((cx.core(), cpu));
            if seen.len() == cx.cores() {
                cx.stop_runtime();
            }
        }
        fn on_message(&mut self, _: &mut Context<'_, Ball>, _: usize, _: &ArchivedBall) {}
    }

    let runtime = Runtime::builder().cores(2).build().unwrap();
    let placement = runtime.placement().clone();
    let shared = Arc::clone(&seen);
    runtime
        .start(move |_| WhereAmI(Arc::clone(&shared)))
        .unwrap()
        .wait()
        .unwrap();
    let mut seen = seen.lock().unwrap().clone();
    seen.sort();
    assert_eq!(seen.len(), 2);
    assert_ne!(seen[0].1, seen[1].1, "both cores ran on CPU {}", seen[0].1);
    for (core, cpu) in seen {
        assert_eq!(placement.cpu_of(core), Some(cpu as usize));
    }
}

/// Core 0 floods core 1 through a small lane; core 1 reads slowly. Full
/// lanes hand the message back, and nothing is lost.
struct Flood {
    total: u64,
    sent: u64,
    refusals: Arc<AtomicUsize>,
}

impl Handler for Flood {
    type Message = Ball;

    fn on_message(&mut self, cx: &mut Context<'_, Ball>, _: usize, ball: &ArchivedBall) {
        if ball.hits.to_native() + 1 == self.total {
            cx.stop_runtime();
        }
    }

    fn on_turn(&mut self, cx: &mut Context<'_, Ball>) -> bool {
        if cx.core() != 0 || self.sent == self.total {
            return false;
        }
        let ball = Ball {
            hits: self.sent,
            trail: vec![1; 100],
        };
        match cx.send(1, &ball) {
            Ok(()) => self.sent += 1,
            Err(SendError::Full(returned)) => {
                assert_eq!(returned.hits, self.sent, "the same message came back");
                self.refusals.fetch_add(1, Ordering::Relaxed);
                // No progress: let the core idle. Under `Park` it parks and
                // must be woken when core 1 frees room in the lane.
                return false;
            }
            Err(other) => panic!("unexpected {other}"),
        }
        true
    }
}

#[test]
fn a_full_lane_hands_the_message_back_and_counts_add_up() {
    let _serial = serial();
    for idle in [IdleStrategy::BusySpin, IdleStrategy::Park] {
        let refusals = Arc::new(AtomicUsize::new(0));
        let shared = Arc::clone(&refusals);
        let runtime = Runtime::builder()
            .cores(2)
            .lane_capacity(1024)
            .drain_batch(1)
            .idle(idle)
            .build()
            .unwrap();
        let report = runtime
            .start(move |_| Flood {
                total: 50_000,
                sent: 0,
                refusals: Arc::clone(&shared),
            })
            .unwrap()
            .wait()
            .unwrap();
        assert_eq!(report.totals.sent, 50_000);
        assert_eq!(report.totals.delivered, 50_000);
        assert_eq!(
            report.totals.refused,
            refusals.load(Ordering::Relaxed) as u64
        );
        assert!(report.adds_up(), "{report}");
    }
}

/// Two cores rally forever until stopped from outside: at shutdown every
/// message sent is delivered or reported undelivered by name.
struct Rally;

impl Handler for Rally {
    type Message = Ball;

    fn on_start(&mut self, cx: &mut Context<'_, Ball>) {
        for hits in 0..8 {
            let ball = Ball {
                hits,
                trail: Vec::new(),
            };
            cx.send(1 - cx.core(), &ball).unwrap();
        }
    }

    fn on_message(&mut self, cx: &mut Context<'_, Ball>, from: usize, ball: &ArchivedBall) {
        let next = Ball {
            hits: ball.hits.to_native().wrapping_add(1),
            trail: Vec::new(),
        };
        // The lane may be full while the other core is stopping; a real
        // handler would keep the ball and retry, this one lets it fall.
        let _ = cx.send(from, &next);
    }

    fn on_stop(&mut self, cx: &mut Context<'_, Ball>) {
        let last = Ball {
            hits: u64::MAX,
            trail: b"sent in on_stop".to_vec(),
        };
        if let Err(error) = cx.send(1 - cx.core(), &last) {
            panic!("on_stop send: {error}");
        }
    }
}

#[test]
fn shutdown_accounts_for_every_message_under_every_idle_strategy() {
    let _serial = serial();
    for idle in STRATEGIES {
        let runtime = Runtime::builder().cores(2).idle(idle).build().unwrap();
        let running = runtime.start(|_| Rally).unwrap();
        // Stop mid-rally, once balls have crossed: a fixed sleep could
        // end before any did on a loaded machine.
        let handle = running.handle();
        let patience = std::time::Instant::now() + Duration::from_secs(60);
        while handle
            .fresh_metrics(Duration::from_secs(1))
            .cores
            .iter()
            .map(|core| core.counters.delivered)
            .sum::<u64>()
            <= 16
            && std::time::Instant::now() < patience
        {
            std::thread::sleep(Duration::from_millis(1));
        }
        let report = running.shutdown().unwrap();
        assert!(report.totals.delivered > 16, "{idle:?}: {report}");
        assert!(report.adds_up(), "{idle:?}: {report}");
        for undelivered in &report.undelivered {
            assert_eq!(undelivered.name, "Ball");
        }
    }
}

/// C12: a snapshot never waits for an idle core, and a fresh one sees what
/// busy cores recorded.
#[test]
fn metrics_snapshot_does_not_wait_for_parked_cores() {
    let _serial = serial();

    struct Pinger {
        sent: Arc<AtomicUsize>,
    }
    impl Handler for Pinger {
        type Message = Ball;
        fn on_start(&mut self, cx: &mut Context<'_, Ball>) {
            if cx.core() == 0 {
                for hits in 0..100 {
                    let ball = Ball {
                        hits,
                        trail: Vec::new(),
                    };
                    cx.send(1, &ball).unwrap();
                }
                self.sent.store(100, Ordering::Release);
            }
        }
        fn on_message(&mut self, _: &mut Context<'_, Ball>, _: usize, _: &ArchivedBall) {}
    }

    let sent = Arc::new(AtomicUsize::new(0));
    let shared = Arc::clone(&sent);
    let runtime = Runtime::builder()
        .cores(2)
        .idle(IdleStrategy::Park)
        .build()
        .unwrap();
    let running = runtime
        .start(move |_| Pinger {
            sent: Arc::clone(&shared),
        })
        .unwrap();
    let handle = running.handle();
    // Both cores park once the 100 messages are delivered; a fresh snapshot
    // then returns what they published before parking.
    let mut delivered = 0;
    for _ in 0..2000 {
        let snapshot = handle.fresh_metrics(Duration::from_secs(5));
        delivered = snapshot.merged().counters.delivered;
        if delivered == 100 {
            assert_eq!(snapshot.cores[1].delivery.count(), 100);
            assert_eq!(snapshot.cores[0].counters.sent, 100);
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(delivered, 100);
    let report = running.shutdown().unwrap();
    assert_eq!(report.totals.delivered, 100);
    assert!(report.adds_up());
}

#[test]
fn bad_settings_are_refused_with_a_reason() {
    let error = Runtime::builder().cores(0).build().unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid runtime configuration: at least one core is needed"
    );
    let error = Runtime::builder().lane_capacity(3000).build().unwrap_err();
    assert!(error.to_string().contains("lane capacity 3000"));
    let error = Runtime::builder()
        .lane_capacity(1 << 62)
        .build()
        .unwrap_err();
    assert!(error.to_string().contains("not a power of two from 1024"));
    // Lanes grow with the square of the core count: refused, not aborted.
    let error = Runtime::builder().cores(100_000).build().unwrap_err();
    assert!(error.to_string().contains("100000x100000 lanes"), "{error}");
    let error = Runtime::builder()
        .cores(8)
        .lane_capacity(1 << 20)
        .max_lane_memory(32 << 20)
        .build()
        .unwrap_err();
    assert!(error.to_string().contains("use fewer cores"), "{error}");
}

/// What a handler still holds at exit is reported by name, apart from the
/// lane accounting.
#[test]
fn messages_held_by_handlers_at_exit_are_reported() {
    let _serial = serial();

    struct Hoarder;
    impl Handler for Hoarder {
        type Message = Ball;
        fn on_start(&mut self, cx: &mut Context<'_, Ball>) {
            cx.stop_runtime();
        }
        fn on_message(&mut self, _: &mut Context<'_, Ball>, _: usize, _: &ArchivedBall) {}
        fn on_exit(&mut self, cx: &mut Context<'_, Ball>) {
            cx.abandon("queued Ball", 3);
            cx.abandon("queued Ball", 2);
        }
    }

    let runtime = Runtime::builder().cores(2).build().unwrap();
    let report = runtime.start(|_| Hoarder).unwrap().wait().unwrap();
    assert_eq!(report.abandoned.len(), 1);
    assert_eq!(report.abandoned[0].name, "queued Ball");
    assert_eq!(report.abandoned[0].count, 10);
    assert!(report.adds_up());
    assert!(report
        .to_string()
        .contains("held by handlers at exit, never sent: 10 x queued Ball"));
}

/// One core of a three-core shutdown: core 1 is held in `on_stop` until
/// the test lets it go, then sends core 2 a ball; core 0 fails on its first
/// turn after its `on_stop`; core 2 reports what it heard when it exits.
struct StopOrder {
    core: usize,
    gate: Arc<Mutex<mpsc::Receiver<()>>>,
    report: mpsc::Sender<Vec<u64>>,
    heard: Vec<u64>,
    stopped: bool,
}

impl Handler for StopOrder {
    type Message = Ball;

    fn on_message(&mut self, _: &mut Context<'_, Ball>, _: usize, ball: &ArchivedBall) {
        self.heard.push(ball.hits.to_native());
    }

    fn on_turn(&mut self, _: &mut Context<'_, Ball>) -> bool {
        assert!(
            !(self.core == 0 && self.stopped),
            "core 0 fails after its on_stop"
        );
        false
    }

    fn on_stop(&mut self, cx: &mut Context<'_, Ball>) {
        self.stopped = true;
        if self.core == 1 {
            self.gate.lock().unwrap().recv().unwrap();
            let ball = Ball {
                hits: 7,
                trail: Vec::new(),
            };
            cx.send(2, &ball).unwrap();
        }
    }

    fn on_exit(&mut self, _: &mut Context<'_, Ball>) {
        if self.core == 2 {
            let _ = self.report.send(std::mem::take(&mut self.heard));
        }
    }
}

/// A core whose handler panics after its `on_stop` counts once among the
/// cores that have stopped, so the others still wait for every `on_stop`
/// before their final drain and hear what was sent there. Before, the
/// unwinding core counted itself a second time: with core 1 still in its
/// `on_stop`, the count reached three of three, core 2 drained and exited
/// without the ball core 1 then sent, and the ball was left undelivered.
#[test]
fn a_core_failing_after_on_stop_counts_once_as_stopping() {
    let _serial = serial();
    let (open_gate, gate) = mpsc::channel();
    let gate = Arc::new(Mutex::new(gate));
    let (report, reported) = mpsc::channel();
    let running = Runtime::builder()
        .cores(3)
        .pin(false)
        .idle(IdleStrategy::Park)
        .build()
        .unwrap()
        .start(move |core| StopOrder {
            core,
            gate: Arc::clone(&gate),
            report: report.clone(),
            heard: Vec::new(),
            stopped: false,
        })
        .unwrap();
    running.handle().stop();

    // Core 1 is held in `on_stop`: core 2 must not exit before it is let
    // go. Give a wrongly counted core 2 the time to exit first.
    let early = reported.recv_timeout(Duration::from_secs(1));
    open_gate.send(()).unwrap();
    let heard = early.unwrap_or_else(|_| reported.recv_timeout(Duration::from_secs(10)).unwrap());
    assert_eq!(heard, [7], "core 2 heard core 1's on_stop");
    match running.wait() {
        Err(corelane::runtime::RuntimeError::CorePanicked { core, .. }) => assert_eq!(core, 0),
        other => panic!("{other:?}"),
    }
}
