//! The `Every(T)` durability promise when appends stop: the writer's
//! `tick` syncs frames once their period is over, and `serve --journal`
//! drives it with a core timer. Time is a clock the test moves by hand, so
//! nothing here waits on the wall clock to decide a result.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use corelane::frame::layout::FrameMeta;
use corelane::runtime::{TimeSource, VirtualClock};
use corelane::segment::journal::{Durability, JournalConfig, JournalWriter};
use corelane::serve::{Server, ServerConfig};

mod common;
use common::Scratch;

const PERIOD: Duration = Duration::from_millis(100);
const MS: u64 = 1_000_000;

fn every_period() -> JournalConfig {
    JournalConfig {
        segment_size: 1 << 16,
        durability: Durability::Every(PERIOD),
    }
}

fn meta(i: u64) -> FrameMeta {
    FrameMeta {
        msg_type: 5,
        version: 1,
        timestamp_ns: i,
        ..FrameMeta::default()
    }
}

/// A writer whose clock is `now` (nanoseconds), standing at 0.
fn writer_on(dir: &Scratch, now: &Arc<AtomicU64>) -> JournalWriter {
    let mut writer = JournalWriter::open(&dir.0, every_period()).unwrap();
    let clock = Arc::clone(now);
    writer.set_clock(move || clock.load(Ordering::Relaxed));
    writer
}

#[test]
fn quiet_writer_syncs_its_last_frames_when_ticked_after_the_period() {
    let dir = Scratch::new("sync-tick");
    let now = Arc::new(AtomicU64::new(0));
    let mut writer = writer_on(&dir, &now);
    assert_eq!(writer.sync_deadline_ns(), None, "nothing to sync yet");

    for i in 0..3 {
        writer.append(b"frame", meta(i)).unwrap();
    }
    let end = writer.position();
    assert_eq!(writer.syncs(), 0, "the period has not passed");
    assert_eq!(writer.synced_position(), 0);
    assert_eq!(writer.sync_deadline_ns(), Some(100 * MS));
    assert_eq!(writer.sync_due_in(), Some(PERIOD));

    // Before the deadline a tick does nothing.
    now.store(99 * MS, Ordering::Relaxed);
    assert_eq!(writer.sync_due_in(), Some(Duration::from_millis(1)));
    assert!(!writer.tick().unwrap());
    assert_eq!((writer.syncs(), writer.synced_position()), (0, 0));

    // Past it, with no append since, the tick syncs every frame.
    now.store(101 * MS, Ordering::Relaxed);
    assert_eq!(writer.sync_due_in(), Some(Duration::ZERO));
    assert!(writer.tick().unwrap());
    assert_eq!(writer.syncs(), 1);
    assert_eq!(writer.synced_position(), end);
    assert_eq!(writer.sync_deadline_ns(), None, "nothing left to sync");

    // Nothing new: later ticks sync nothing.
    now.store(500 * MS, Ordering::Relaxed);
    assert!(!writer.tick().unwrap());
    assert_eq!(writer.syncs(), 1);
}

#[test]
fn period_runs_from_the_last_sync_whoever_made_it() {
    let dir = Scratch::new("sync-append");
    let now = Arc::new(AtomicU64::new(0));
    let mut writer = writer_on(&dir, &now);
    writer.append(b"a", meta(0)).unwrap();

    // An append that finds the period over syncs at once, itself included.
    now.store(150 * MS, Ordering::Relaxed);
    writer.append(b"b", meta(1)).unwrap();
    assert_eq!(writer.syncs(), 1);
    assert_eq!(writer.synced_position(), writer.position());

    // The next frame's deadline is a period after that sync.
    now.store(160 * MS, Ordering::Relaxed);
    writer.append(b"c", meta(2)).unwrap();
    assert_eq!(writer.sync_deadline_ns(), Some(250 * MS));
    now.store(249 * MS, Ordering::Relaxed);
    assert!(!writer.tick().unwrap());
    now.store(250 * MS, Ordering::Relaxed);
    assert!(writer.tick().unwrap());
    assert_eq!(writer.syncs(), 2);
    assert_eq!(writer.synced_position(), writer.position());
}

#[test]
fn only_the_timed_policy_has_a_deadline() {
    for durability in [
        Durability::None,
        Durability::EveryFrames(10),
        Durability::EachFrame,
    ] {
        let dir = Scratch::new("sync-policies");
        let config = JournalConfig {
            durability,
            ..every_period()
        };
        let mut writer = JournalWriter::open(&dir.0, config).unwrap();
        writer.append(b"x", meta(0)).unwrap();
        assert_eq!(writer.sync_deadline_ns(), None, "{durability:?}");
        assert!(!writer.tick().unwrap(), "{durability:?}");
        let expected = u64::from(durability == Durability::EachFrame);
        assert_eq!(writer.syncs(), expected, "{durability:?}");
    }
}

/// This core's journal fields from INFO: position, synced position, syncs.
fn journal_info(con: &mut redis::Connection) -> (u64, u64, u64) {
    let info: String = redis::cmd("INFO").arg("journal").query(con).unwrap();
    let field = |name: &str| -> u64 {
        info.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .unwrap_or_else(|| panic!("no {name} in {info:?}"))
            .trim()
            .parse()
            .unwrap()
    };
    (
        field("journal_position"),
        field("journal_synced_position"),
        field("journal_syncs"),
    )
}

#[test]
fn serve_journal_syncs_a_quiet_core_on_its_timer() {
    let _serial = common::serial();
    let dir = Scratch::new("sync-serve");
    let clock = VirtualClock::new();
    let server = Server::start(ServerConfig {
        bind: SocketAddr::from(([127, 0, 0, 1], 17301)),
        cores: Some(1),
        idle: common::idle(),
        journal: Some(dir.0.clone()),
        journal_config: every_period(),
        time_source: TimeSource::Virtual(clock.clone()),
        ..ServerConfig::default()
    })
    .unwrap();
    let url = format!("redis://{}/", server.local_addr());
    let timeout = Duration::from_secs(10);
    let mut con = redis::Client::open(url)
        .unwrap()
        .get_connection_with_timeout(timeout)
        .unwrap();
    con.set_read_timeout(Some(timeout)).unwrap();

    for i in 0..3 {
        let _: i64 = redis::cmd("PUBLISH")
            .arg("news")
            .arg(format!("item {i}"))
            .query(&mut con)
            .unwrap();
    }
    // The clock has not moved: the frames wait for their timer.
    let (end, synced, syncs) = journal_info(&mut con);
    assert!(end > 0);
    assert_eq!((synced, syncs), (0, 0));

    // No PUBLISH follows; the core's timer syncs once the period is over.
    clock.advance(PERIOD + Duration::from_millis(1));
    let give_up = Instant::now() + Duration::from_secs(30);
    let mut seen = journal_info(&mut con);
    while seen.2 == 0 && Instant::now() < give_up {
        std::thread::sleep(Duration::from_millis(5));
        seen = journal_info(&mut con);
    }
    assert_eq!(seen, (end, end, 1), "(position, synced, syncs)");

    drop(con);
    let report = server.shutdown().unwrap();
    assert!(report.adds_up(), "{report}");
}
