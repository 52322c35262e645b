//! Embedding: a core driven by the host's own thread, beside pinned cores
//! or with every core driven by hand. Threaded cores take their idle
//! strategy from `CORELANE_TEST_IDLE` (busy-spin or park), as CI runs both.

use corelane::frame::Message;
use corelane::runtime::{Context, Handler, IdleStrategy, ManualRuntime, Runtime, RuntimeError};

mod common;
use common::{idle, serial};

#[derive(rkyv::Archive, rkyv::Serialize)]
struct Ball(u64);

impl Message for Ball {
    const TYPE_ID: u16 = 3;
    const VERSION: u8 = 1;
    const NAME: &'static str = "Ball";
}

/// Returns every ball to its sender, one hit higher, up to `rounds`.
#[derive(Default)]
struct Player {
    rounds: u64,
    hits_seen: u64,
    timer_at: Option<u64>,
}

impl Handler for Player {
    type Message = Ball;

    fn on_message(&mut self, cx: &mut Context<'_, Ball>, from: usize, ball: &ArchivedBall) {
        let hits = ball.0.to_native() + 1;
        self.hits_seen = hits;
        if hits < self.rounds {
            cx.send(from, &Ball(hits)).unwrap();
        }
    }

    fn on_timer(&mut self, cx: &mut Context<'_, Ball>, _: u64) {
        self.timer_at = Some(cx.now_ns());
    }
}

#[test]
fn the_host_thread_drives_one_core_turn_by_turn() {
    let _serial = serial();
    const ROUNDS: u64 = 2000;
    let runtime = Runtime::builder().cores(2).idle(idle()).build().unwrap();
    let (mut host, running) = runtime
        .start_hosted(0, |_| Player {
            rounds: ROUNDS,
            ..Player::default()
        })
        .unwrap();
    assert_eq!(host.core(), 0);
    host.with_context(|_, cx| cx.send(1, &Ball(0)).unwrap());
    // The host decides when core 0 runs: here, a plain loop of turns.
    let mut turns = 0u64;
    while host.handler().hits_seen + 1 < ROUNDS {
        host.turn();
        turns += 1;
        if turns.is_multiple_of(1024) {
            std::thread::yield_now();
        }
    }
    let report = host.finish(running).unwrap();
    assert_eq!(report.totals.delivered, ROUNDS);
    assert_eq!(report.metrics.cores[0].counters.delivered, ROUNDS / 2);
    assert!(report.metrics.cores[0].counters.turns >= ROUNDS / 2);
    assert!(report.adds_up());
}

#[test]
fn a_hosted_core_parks_until_its_timer() {
    let _serial = serial();
    let runtime = Runtime::builder()
        .cores(2)
        .idle(IdleStrategy::Park)
        .build()
        .unwrap();
    let (mut host, running) = runtime.start_hosted(1, |_| Player::default()).unwrap();
    let deadline = host.with_context(|_, cx| {
        let deadline = cx.now_ns() + 2_000_000;
        cx.schedule_timer_at(deadline, 1);
        deadline
    });
    assert!(host.run_until(|player| player.timer_at.is_some()));
    let fired_at = host.handler().timer_at.unwrap();
    assert!(
        fired_at >= deadline,
        "fired at {fired_at}, before {deadline}"
    );
    let report = host.finish(running).unwrap();
    assert_eq!(report.metrics.cores[1].counters.timers_fired, 1);
    assert!(report.adds_up());
}

#[test]
fn waiting_on_a_runtime_with_a_hosted_core_says_how_to_finish_it() {
    let _serial = serial();
    let runtime = Runtime::builder().cores(2).idle(idle()).build().unwrap();
    let (host, running) = runtime.start_hosted(1, |_| Player::default()).unwrap();
    let error = running.wait().unwrap_err();
    assert!(matches!(error, RuntimeError::Config(_)));
    assert!(error.to_string().contains("HostedCore::finish"), "{error}");
    drop(host);
}

#[test]
fn hosting_a_core_that_does_not_exist_is_refused() {
    let runtime = Runtime::builder().cores(2).build().unwrap();
    let error = runtime.start_hosted(2, |_| Player::default()).unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid runtime configuration: no core 2 to host: the runtime has 2"
    );
}

#[test]
fn a_manual_runtime_shuts_down_like_a_threaded_one() {
    /// Sends one last ball in `on_stop`; it must still be delivered.
    struct Farewell(Vec<u64>);
    impl Handler for Farewell {
        type Message = Ball;
        fn on_message(&mut self, _: &mut Context<'_, Ball>, _: usize, ball: &ArchivedBall) {
            self.0.push(ball.0.to_native());
        }
        fn on_stop(&mut self, cx: &mut Context<'_, Ball>) {
            let to = (cx.core() + 1) % cx.cores();
            cx.send(to, &Ball(100 + cx.core() as u64)).unwrap();
        }
        fn on_exit(&mut self, cx: &mut Context<'_, Ball>) {
            assert_eq!(self.0.len(), 1, "core {} heard {:?}", cx.core(), self.0);
        }
    }
    let mut runtime = Runtime::builder()
        .cores(3)
        .build()
        .unwrap()
        .start_manual(|_| Farewell(Vec::new()))
        .unwrap();
    assert_eq!(runtime.cores(), 3);
    assert_eq!(
        runtime.run_until_idle(5),
        1,
        "nothing to do before any send"
    );
    let report = runtime.shutdown().unwrap();
    assert_eq!(report.totals.sent, 3);
    assert_eq!(report.totals.delivered, 3);
    assert!(report.adds_up());
}

/// Panics on ball 2; keeps the others.
#[derive(Default)]
struct Fragile {
    kept: Vec<u64>,
}

impl Handler for Fragile {
    type Message = Ball;

    fn on_message(&mut self, _: &mut Context<'_, Ball>, _: usize, ball: &ArchivedBall) {
        let ball = ball.0.to_native();
        assert_ne!(ball, 2, "the handler fails on ball 2");
        self.kept.push(ball);
    }
}

/// A runtime of `cores` unpinned cores that this thread turns, each with
/// a handler from `make`.
fn manual<H: Handler>(cores: usize, make: fn() -> H) -> ManualRuntime<H> {
    Runtime::builder()
        .cores(cores)
        .pin(false)
        .build()
        .unwrap()
        .start_manual(|_| make())
        .unwrap()
}

/// A host that catches a handler's panic and goes on turning the core
/// loses only the message the handler failed on: the lane goes on with the
/// next, and the shutdown counts add up. Before, the lane stopped at the
/// failed message for good (its senders' later messages neither delivered
/// nor counted undelivered: sent 5, delivered 2, undelivered 0).
#[test]
fn a_caught_handler_panic_costs_only_its_own_message() {
    let mut runtime = manual(2, Fragile::default);
    runtime.with_context(0, |_, cx| {
        for ball in 1..=3 {
            cx.send(1, &Ball(ball)).unwrap();
        }
    });
    let turned = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| runtime.turn_core(1)));
    assert!(turned.is_err(), "ball 2 panics");

    runtime.with_context(0, |_, cx| {
        for ball in 4..=5 {
            cx.send(1, &Ball(ball)).unwrap();
        }
    });
    runtime.run_until_idle(10);
    assert_eq!(runtime.handler(1).kept, [1, 3, 4, 5]);
    let report = runtime.shutdown().unwrap();
    assert_eq!(report.totals.sent, 5);
    assert_eq!(report.totals.delivered, 5);
    assert!(report.adds_up(), "{report}");
}

/// Schedules its timer 1 and then a delayed ball for core 1, due
/// together; panics in `on_timer`; keeps the balls it gets.
#[derive(Default)]
struct FragileTimer {
    kept: Vec<u64>,
}

impl Handler for FragileTimer {
    type Message = Ball;

    fn on_start(&mut self, cx: &mut Context<'_, Ball>) {
        if cx.core() == 0 {
            cx.schedule_timer(std::time::Duration::from_millis(1), 1);
            cx.send_after(std::time::Duration::from_millis(1), 1, &Ball(7))
                .unwrap();
        }
    }

    fn on_message(&mut self, _: &mut Context<'_, Ball>, _: usize, ball: &ArchivedBall) {
        self.kept.push(ball.0.to_native());
    }

    fn on_timer(&mut self, _: &mut Context<'_, Ball>, timer: u64) {
        panic!("the handler fails on timer {timer}");
    }
}

/// A host that catches a panic in `on_timer` does not lose what was due
/// with that timer: a delayed message due in the same tick is still sent
/// on a later turn. Before, the turn's other due timers were dropped with
/// the unwind: the message was counted delayed and then never sent, nor
/// held. The stall detector sees `on_timer` running as it sees the other
/// handlers: once the host has caught the panic, the slot names no handler.
#[test]
fn a_caught_timer_panic_keeps_what_was_due_with_it() {
    use corelane::runtime::{TimeSource, VirtualClock};

    let clock = VirtualClock::new();
    let mut runtime = Runtime::builder()
        .cores(2)
        .pin(false)
        .time_source(TimeSource::Virtual(clock.clone()))
        .build()
        .unwrap()
        .start_manual(|_| FragileTimer::default())
        .unwrap();
    clock.advance(std::time::Duration::from_millis(1));
    let turned = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| runtime.turn_core(0)));
    assert!(turned.is_err(), "timer 1 panics");
    assert_eq!(runtime.handle().running_handlers(), [None, None]);

    runtime.run_until_idle(10);
    assert_eq!(runtime.handler(1).kept, [7]);
    let report = runtime.shutdown().unwrap();
    assert_eq!((report.totals.delayed, report.totals.sent), (1, 1));
    assert!(report.adds_up(), "{report}");
}

/// Panics in `on_turn` while `fail_turn` is set.
#[derive(Default)]
struct FragileTurn {
    fail_turn: bool,
}

impl Handler for FragileTurn {
    type Message = Ball;

    fn on_message(&mut self, _: &mut Context<'_, Ball>, _: usize, _: &ArchivedBall) {}

    fn on_turn(&mut self, _: &mut Context<'_, Ball>) -> bool {
        assert!(!self.fail_turn, "the handler fails in on_turn");
        false
    }
}

/// A handler that unwinds is no longer running: once the host has caught
/// the panic, the stall detector's slot says so at once, not on the next
/// handler's return. Before, the slot kept the failed handler and its
/// start, so a watcher saw it "running" (and, given time, stalled) for as
/// long as the host waited before its next turn.
#[test]
fn a_caught_panic_leaves_no_handler_running() {
    let mut runtime = manual(2, Fragile::default);
    runtime.with_context(0, |_, cx| cx.send(1, &Ball(2)).unwrap());
    let turned = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| runtime.turn_core(1)));
    assert!(turned.is_err(), "ball 2 panics");
    assert_eq!(runtime.handle().running_handlers(), [None, None]);
    runtime.shutdown().unwrap();

    let mut runtime = manual(1, FragileTurn::default);
    runtime.handler_mut(0).fail_turn = true;
    let turned = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| runtime.turn_core(0)));
    assert!(turned.is_err(), "on_turn panics");
    assert_eq!(runtime.handle().running_handlers(), [None]);
    runtime.handler_mut(0).fail_turn = false;
    runtime.shutdown().unwrap();
}
