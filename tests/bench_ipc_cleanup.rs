//! `corelane bench` interrupted by a Ctrl-C to its whole process group (the
//! bench and the echo process it runs die together, neither cleaning up)
//! leaves no IPC ring files behind: side A removes the rings' names as soon
//! as both sides have them open.
//!
//! The bench runs with `TMPDIR` pointing at a directory of this test's own,
//! so its scratch directories land there, not under /dev/shm. No timing is
//! asserted; the test waits 2 s into a 5 s measurement before it looks.

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The bench's scratch directories under `base`.
fn scratch_dirs(base: &Path) -> Vec<PathBuf> {
    fs::read_dir(base)
        .map(|entries| {
            entries
                .filter_map(|entry| entry.ok().map(|entry| entry.path()))
                .filter(|path| {
                    path.file_name()
                        .is_some_and(|name| name.to_string_lossy().starts_with("corelane-bench-"))
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_ctrl_c_to_the_process_group_leaves_no_ring_files() {
    let base =
        std::env::temp_dir().join(format!("corelane-test-ipc-cleanup-{}", std::process::id()));
    let _ = fs::remove_dir_all(&base);
    fs::create_dir_all(&base).unwrap();

    // Rings only, one round of 5 seconds each: long enough that the ring
    // files of a bench that kept them until the end would still be there
    // when the signal comes.
    let mut bench = Command::new(env!("CARGO_BIN_EXE_corelane"));
    bench
        .args([
            "bench",
            "--quick",
            "--only",
            "ipc",
            "--rounds",
            "1",
            "--seconds",
            "5",
        ])
        .env("TMPDIR", &base)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0);
    // A test run started in the background by a shell without job control
    // ignores SIGINT, and the bench would inherit that: it gets the default
    // disposition back, as in a terminal.
    // SAFETY: between fork and exec, `signal` is async-signal-safe and
    // touches nothing shared with the parent.
    unsafe {
        bench.pre_exec(|| {
            if libc::signal(libc::SIGINT, libc::SIG_DFL) == libc::SIG_ERR {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut bench = bench.spawn().expect("run corelane bench");
    let group = bench.id() as libc::pid_t;

    // The progress line of the first ring row comes as it starts; its
    // setup (side B started, both rings opened by both sides) takes
    // milliseconds, and its measurement 5 s: 2 s in, a bench that kept the
    // files' names until the end would still have them.
    let mut progress = BufReader::new(bench.stderr.take().unwrap()).lines();
    let started = progress
        .by_ref()
        .map_while(Result::ok)
        .any(|line| line.contains("ipc ring (2 processes)"));
    std::thread::sleep(Duration::from_secs(2));
    let left_before_signal = scratch_dirs(&base);

    // SAFETY: `kill` only sends a signal, to the process group this test
    // made for the bench (its id is the bench's pid).
    let sent = unsafe { libc::kill(-group, libc::SIGINT) };
    assert_eq!(sent, 0, "kill: {}", std::io::Error::last_os_error());
    let status = bench.wait().expect("wait for the bench");
    // The echo process got the signal too; give it a moment to be gone.
    std::thread::sleep(Duration::from_millis(100));
    let left = scratch_dirs(&base);
    let _ = fs::remove_dir_all(&base);

    assert!(started, "the bench never started its ring row");
    assert!(
        left_before_signal.is_empty(),
        "ring files still named 2 s into the measurement: {left_before_signal:?}"
    );
    assert!(!status.success(), "the bench was interrupted: {status:?}");
    assert!(left.is_empty(), "left behind after Ctrl-C: {left:?}");
}
