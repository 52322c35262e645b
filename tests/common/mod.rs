//! What the test files share: the idle strategy CI picks, one threaded
//! runtime at a time, and scratch directories. Each file includes it with `mod common;`.

#![allow(dead_code)] // each test file uses its own part

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

use corelane::runtime::IdleStrategy;

static SERIAL: Mutex<()> = Mutex::new(());

/// Threaded runtimes pin their loops: run them one at a time.
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The idle strategy named by `CORELANE_TEST_IDLE` (busy-spin or park; CI
/// runs both, case C11), or the default.
pub fn idle() -> IdleStrategy {
    match std::env::var("CORELANE_TEST_IDLE").as_deref() {
        Ok("busy-spin") => IdleStrategy::BusySpin,
        Ok("park") => IdleStrategy::Park,
        Ok(other) => panic!("CORELANE_TEST_IDLE={other}: expected busy-spin or park"),
        Err(_) => IdleStrategy::default(),
    }
}

/// A fresh directory under the system's temporary directory, removed when
/// dropped.
pub struct Scratch(pub PathBuf);

impl Scratch {
    /// `corelane-test-NAME-PID`, emptied first.
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("corelane-test-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    /// `file` inside the directory.
    pub fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }

    /// Writes `bytes` to `file` with owner-only permissions.
    pub fn write(&self, file: &str, bytes: &[u8]) -> PathBuf {
        let path = self.path(file);
        fs::write(&path, bytes).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The runtime the large held-message tests use: two busy-spinning cores,
/// 64 KiB lanes (so their blobs never fit a frame) and the default pool.
pub fn large_message_builder() -> corelane::runtime::Builder {
    corelane::runtime::Runtime::builder()
        .cores(2)
        .idle(IdleStrategy::BusySpin)
        .lane_capacity(1 << 16)
        .pool(corelane::pool::PoolConfig::default())
}

/// `builder`'s runtime, driven by hand on `clock` with a 1 ms timer tick,
/// each core's handler made by `make`.
pub fn manual_on_clock<H: corelane::runtime::Handler>(
    builder: corelane::runtime::Builder,
    clock: &corelane::runtime::VirtualClock,
    make: impl FnMut(usize) -> H,
) -> corelane::runtime::ManualRuntime<H> {
    builder
        .time_source(corelane::runtime::TimeSource::Virtual(clock.clone()))
        .timer_tick(std::time::Duration::from_millis(1))
        .build()
        .expect("a valid runtime")
        .start_manual(make)
        .expect("a manual runtime")
}

/// Runs the test named `test` of this test binary, alone, in a child
/// process, with `scenario` in the environment variable `scenario_var` and
/// a fresh scratch directory (named after `label` and the scenario) in
/// `dir_var`; returns the child's status and everything it printed. For
/// scenarios that may kill the process that runs them.
pub fn run_test_in_child(
    test: &str,
    label: &str,
    (scenario_var, scenario): (&str, &str),
    dir_var: &str,
) -> (std::process::ExitStatus, String) {
    let dir = Scratch::new(&format!("{label}-{scenario}"));
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(scenario_var, scenario)
        .env(dir_var, &dir.0)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status, text)
}
