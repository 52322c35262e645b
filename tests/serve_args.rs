//! `corelane serve` and `corelane stat` given the addresses users get
//! wrong: a bare port or a host alone for `--bind`, a port another server
//! holds, and `stat` pointed at a port that answers no HTTP. Each fails
//! with an error that says what to do instead. A `--metrics` port or
//! `--latency-log` path that fails stops the server before it says it is
//! listening, and leaves no journal directory or latency log behind; a
//! damaged journal is named with how to inspect it and start again. More cores than CPUs is warned about.
//! Everything listens on loopback only.

use std::net::TcpListener;
use std::process::{Command, ExitStatus, Output};

fn corelane(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_corelane"))
        .args(args)
        .output()
        .expect("run corelane")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn a_bare_port_for_bind_is_refused_with_the_address_to_write() {
    let output = corelane(&["serve", "--bind", "6381"]);
    assert!(!output.status.success());
    let error = stderr(&output);
    assert!(error.contains("is a port alone"), "{error}");
    assert!(error.contains("--bind 127.0.0.1:6381"), "{error}");
}

/// redis-server's `--port N`, the habit of a Redis user, is refused with
/// the `--bind` that serves that port, not as an argument clap never heard
/// of (which names no flag to use instead).
#[test]
fn a_port_flag_is_refused_with_the_bind_to_write() {
    let output = corelane(&["serve", "--port", "6381"]);
    assert_eq!(output.status.code(), Some(2));
    let error = stderr(&output);
    assert!(!error.contains("unexpected argument"), "{error}");
    assert!(
        error.contains(
            "the port is given in --bind HOST:PORT (--bind 127.0.0.1:6381 for loopback, \
             --bind 0.0.0.0:6381 for every interface)"
        ),
        "{error}"
    );
    // Still not a documented flag.
    let help = String::from_utf8_lossy(&corelane(&["serve", "--help"]).stdout).into_owned();
    assert!(!help.contains("--port"), "{help}");
}

#[test]
fn a_number_too_large_for_a_port_is_refused_as_such_not_as_a_host() {
    for flag in ["--bind", "--metrics"] {
        let output = corelane(&["serve", flag, "70000"]);
        assert!(!output.status.success());
        let error = stderr(&output);
        assert!(
            error.contains("\"70000\" is not a port: ports run from 0 to 65535"),
            "{flag}: {error}"
        );
        assert!(!error.contains("has no port"), "{flag}: {error}");
    }
}

#[test]
fn a_host_without_a_port_is_refused_with_the_address_to_write() {
    let output = corelane(&["serve", "--bind", "localhost"]);
    assert!(!output.status.success());
    let error = stderr(&output);
    assert!(error.contains("\"localhost\" has no port"), "{error}");
    assert!(error.contains("--bind localhost:6380"), "{error}");

    let output = corelane(&["serve", "--bind", "127.0.0.1:0", "--metrics", "localhost"]);
    assert!(!output.status.success());
    let error = stderr(&output);
    assert!(
        error.contains("\"localhost\" has no port: give HOST:PORT"),
        "{error}"
    );
}

#[test]
fn a_port_another_server_holds_says_to_stop_it_or_pick_another() {
    let holder = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = holder.local_addr().unwrap().to_string();
    let output = corelane(&["serve", "--bind", &address, "--cores", "1"]);
    assert!(!output.status.success());
    let error = stderr(&output);
    assert!(
        error.contains("another server is listening there"),
        "{error}"
    );
}

#[test]
fn stat_at_a_port_that_answers_no_http_names_the_metrics_port() {
    // Accepts and never answers, as the server's Redis port does to HTTP.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = silent.local_addr().unwrap().to_string();
    let (done, finished) = std::sync::mpsc::channel::<()>();
    let keep = std::thread::spawn(move || {
        let connection = silent.accept();
        // Held open until the client has given up.
        let _ = finished.recv();
        drop(connection);
    });
    let output = corelane(&["stat", &address, "--count", "1"]);
    done.send(()).unwrap();
    keep.join().unwrap();
    assert!(!output.status.success());
    let error = stderr(&output);
    assert!(error.contains("not the Redis port"), "{error}");
}

/// The server's Redis port answers `stat`'s request at once, with an error
/// line and no HTTP: `stat` says so then, without waiting for the answer to
/// end (the port keeps the connection open).
#[test]
fn stat_at_a_port_that_answers_in_resp_says_so_at_once() {
    use std::io::Write;

    let redis_like = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = redis_like.local_addr().unwrap().to_string();
    let (done, finished) = std::sync::mpsc::channel::<()>();
    let keep = std::thread::spawn(move || {
        let (mut connection, _) = redis_like.accept().unwrap();
        let answer = b"-ERR unknown command 'GET', with args beginning with: '/metrics'\r\n";
        connection.write_all(answer).unwrap();
        // Held open until the client has given up.
        let _ = finished.recv();
    });
    let output = corelane(&["stat", &address, "--count", "1"]);
    done.send(()).unwrap();
    keep.join().unwrap();
    assert!(!output.status.success());
    let error = stderr(&output);
    assert!(
        error.contains(
            "answered \"-ERR unknown command 'GET', with args beginning with: '/metrics'\", \
             not HTTP (give the port of `serve --metrics`, not the Redis port)"
        ),
        "{error}"
    );
}

/// Runs `serve` on one core at `bind` with `flag value`, expecting it to
/// fail; returns what it wrote to stderr. A server that starts instead is
/// stopped and the test fails, rather than waiting on it for ever.
fn serve_failing(bind: &str, flag: &str, value: &str) -> String {
    let args = ["serve", "--bind", bind, "--cores", "1", flag, value];
    let (listening, status, log) = run_until_listening(&args);
    assert!(!listening, "started instead of failing: {log}");
    assert!(!status.success(), "{status}: {log}");
    log
}

#[test]
fn a_busy_metrics_port_fails_before_the_server_says_it_is_listening() {
    let holder = TcpListener::bind("127.0.0.1:0").unwrap();
    let metrics = holder.local_addr().unwrap().to_string();
    let error = serve_failing("127.0.0.1:0", "--metrics", &metrics);
    assert!(
        error.contains(&format!("cannot serve metrics on {metrics}")),
        "{error}"
    );
    assert!(!error.contains("listening on"), "{error}");
}

/// The metrics endpoint at the server's own address is refused as such,
/// not as a port that another server holds.
#[test]
fn a_metrics_address_that_is_the_bind_address_is_refused_as_such() {
    let free = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = free.local_addr().unwrap().to_string();
    drop(free);
    let error = serve_failing(&addr, "--metrics", &addr);
    assert!(
        error.contains(&format!("--metrics {addr} is the address --bind serves on")),
        "{error}"
    );
    assert!(!error.contains("another server"), "{error}");
}

/// Runs `corelane args` until it exits or says it is listening; one that
/// is listening is stopped with SIGTERM. Returns whether it was listening,
/// how it exited and all it wrote to stderr.
fn run_until_listening(args: &[&str]) -> (bool, ExitStatus, String) {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let mut child = Command::new(env!("CARGO_BIN_EXE_corelane"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run corelane");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut log = String::new();
    let mut listening = false;
    while let Some(line) = lines.next().map(Result::unwrap) {
        log.push_str(&line);
        log.push('\n');
        if line.contains("listening on ") {
            listening = true;
            break;
        }
    }
    if listening {
        let pid = libc::pid_t::try_from(child.id()).unwrap();
        // SAFETY: kill has no memory effects; the pid is our own child, which
        // has not been waited for, so it cannot be another process.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    }
    for line in lines {
        log.push_str(&line.unwrap());
        log.push('\n');
    }
    let status = child.wait().unwrap();
    (listening, status, log)
}

/// Runs `corelane args` until it says it is listening, then stops it with
/// SIGTERM; returns all it wrote to stderr. It must exit with success.
fn serve_until_listening(args: &[&str]) -> String {
    let (listening, status, log) = run_until_listening(args);
    assert!(listening, "exited before listening: {log}");
    assert!(status.success(), "{status}: {log}");
    log
}

/// More cores than CPUs starts, with a warning that says how the loops
/// share the CPUs and that the extra cores add no parallelism.
#[test]
fn more_cores_than_cpus_warns_how_they_share_the_cpus() {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cores = (cpus + 1).to_string();
    let error = serve_until_listening(&[
        "serve",
        "--bind",
        "127.0.0.1:0",
        "--cores",
        &cores,
        "--lane-capacity",
        "4096",
    ]);
    assert!(error.contains(&format!("{cores} cores on ")), "{error}");
    assert!(error.contains("add no parallelism"), "{error}");
    assert!(
        error.contains("loops are pinned to each CPU") || error.contains("are not pinned"),
        "{error}"
    );
}

#[test]
fn a_latency_log_in_a_missing_directory_fails_before_the_server_says_it_is_listening() {
    let dir = std::env::temp_dir().join(format!("corelane-no-such-dir-{}", std::process::id()));
    let log = dir.join("latency.hlog");
    let error = serve_failing("127.0.0.1:0", "--latency-log", log.to_str().unwrap());
    assert!(
        error.contains(&format!("cannot create {}", log.display())),
        "{error}"
    );
    assert!(!error.contains("listening on"), "{error}");
}

/// A server that fails to start (its port, or its metrics port, taken)
/// leaves nothing behind: no journal directory made, segments reserved
/// or "created" said; no new latency log, and an earlier one as it was.
#[test]
fn a_server_that_cannot_start_leaves_no_journal_and_no_latency_log() {
    let base = std::env::temp_dir().join(format!("corelane-no-start-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).unwrap();
    let dir = base.join("nested").join("journal");
    let earlier = base.join("earlier.hlog");
    std::fs::write(&earlier, b"an earlier run's log").unwrap();
    let fresh = base.join("fresh.hlog");
    let holder = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = holder.local_addr().unwrap().to_string();

    for (bind, metrics, log) in [
        (&taken[..], None, &earlier),
        ("127.0.0.1:0", Some(&taken), &fresh),
    ] {
        let mut args = vec!["serve", "--bind", bind, "--cores", "1"];
        args.extend(["--journal", dir.to_str().unwrap()]);
        args.extend(["--latency-log", log.to_str().unwrap()]);
        if let Some(metrics) = metrics {
            args.extend(["--metrics", metrics]);
        }
        let output = corelane(&args);
        assert!(!output.status.success());
        let error = stderr(&output);
        assert!(
            error.contains(&format!("{taken}: Address already in use")),
            "{error}"
        );
        assert!(!error.contains("journal directory"), "{error}");
        assert!(!dir.exists(), "{bind} {metrics:?}: {error}");
    }
    assert_eq!(std::fs::read(&earlier).unwrap(), b"an earlier run's log");
    assert!(!fresh.exists());

    // A log path that is a symbolic link to nothing: the file made through
    // it goes again, the link stays as it was.
    let target = base.join("target.hlog");
    let link = base.join("link.hlog");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let output = corelane(&[
        "serve",
        "--bind",
        &taken,
        "--cores",
        "1",
        "--latency-log",
        link.to_str().unwrap(),
    ]);
    assert!(!output.status.success());
    assert!(!target.exists(), "{}", stderr(&output));
    assert!(link.symlink_metadata().unwrap().file_type().is_symlink());
    let _ = std::fs::remove_dir_all(&base);
}

/// A `--journal` path that is a file, or a symbolic link to nothing, is
/// refused by that name before the server starts: not reported as a
/// `core-0` directory that could not be made, and never announced as a
/// directory being created.
#[test]
fn a_journal_path_that_is_no_directory_is_refused_by_its_name() {
    let base = std::env::temp_dir().join(format!("corelane-journal-nodir-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).unwrap();
    let file = base.join("a-file");
    std::fs::write(&file, b"not a journal").unwrap();
    let dangling = base.join("dangling");
    std::os::unix::fs::symlink(base.join("nowhere"), &dangling).unwrap();

    for (path, why) in [
        (&file, "is not a directory"),
        (&dangling, "is a symbolic link to nothing"),
    ] {
        let error = serve_failing("127.0.0.1:0", "--journal", path.to_str().unwrap());
        assert!(
            error.contains(&format!("--journal {}: {why}", path.display())),
            "{error}"
        );
        assert!(!error.contains("core-0"), "{error}");
        assert!(!error.contains("creating the journal directory"), "{error}");
        assert!(!error.contains("listening on"), "{error}");
    }
    let _ = std::fs::remove_dir_all(&base);
}

/// A `--journal` path under a file (`FILE/journal`, `FILE/a/b`) names that
/// file as what is not a directory: not the `core-0` directory that could
/// not be made, with the operating system's "Not a directory".
#[test]
fn a_journal_path_under_a_file_names_the_file() {
    let base = std::env::temp_dir().join(format!("corelane-journal-under-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).unwrap();
    let file = base.join("a-file");
    std::fs::write(&file, b"not a journal").unwrap();
    for path in [file.join("journal"), file.join("a").join("b")] {
        let error = serve_failing("127.0.0.1:0", "--journal", path.to_str().unwrap());
        assert!(
            error.contains(&format!(
                "--journal {}: {} is not a directory",
                path.display(),
                file.display()
            )),
            "{error}"
        );
        assert!(!error.contains("core-0"), "{error}");
        assert!(!error.contains("listening on"), "{error}");
    }
    let _ = std::fs::remove_dir_all(&base);
}

/// A `--journal-segment-size` that no PUBLISH fits in, or that the
/// journal writer would cut down to its 1 GiB limit, is refused with the
/// range to give, rather than started with and failed (or changed)
/// silently.
#[test]
fn journal_segment_sizes_outside_the_writers_range_are_refused() {
    // A busy port stops a server that accepts the size right after the
    // flags are read, so the test needs no signal to end it.
    let holder = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = holder.local_addr().unwrap().to_string();
    for size in ["0", "1", "4095", "1073741825", "18446744073709551615"] {
        let error = serve_failing(&address, "--journal-segment-size", size);
        assert!(
            error.contains("from 4096 to 1073741824 bytes"),
            "{size}: {error}"
        );
        assert!(
            !error.contains("another server is listening"),
            "{size}: {error}"
        );
    }
}

/// A `--latency-log` that is a named pipe nobody reads is refused at
/// once. Opening it for writing would wait for a reader: the server,
/// already serving, would never say it is listening, and SIGTERM would
/// stop it without ending the process.
#[test]
fn a_latency_log_on_a_named_pipe_without_a_reader_is_refused_at_once() {
    let base = std::env::temp_dir().join(format!("corelane-latency-fifo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).unwrap();
    let fifo = base.join("latency.hlog");
    let c_path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path; mkfifo only creates a file.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);

    let mut child = Command::new(env!("CARGO_BIN_EXE_corelane"))
        .args(["serve", "--bind", "127.0.0.1:0", "--cores", "1"])
        .arg("--latency-log")
        .arg(&fifo)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Generous: the refusal takes milliseconds; a server blocked on the
    // pipe never exits on its own, and is killed so the test can fail.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    if child.try_wait().unwrap().is_none() {
        child.kill().unwrap();
        let _ = child.wait();
        let _ = std::fs::remove_dir_all(&base);
        panic!("serve still running after 60 s: blocked opening the named pipe");
    }
    let output = child.wait_with_output().unwrap();
    let _ = std::fs::remove_dir_all(&base);
    assert!(!output.status.success());
    let error = stderr(&output);
    assert!(
        error.contains(&format!("cannot create {}", fifo.display())),
        "{error}"
    );
    assert!(error.contains("named pipe"), "{error}");
    assert!(!error.contains("listening on"), "{error}");
}

/// A journal the writer will not append to (here its first segment cut to
/// its header page, with a segment of frames after it) stops the server
/// with the error and what to do: inspect it, or move it aside. (A segment
/// merely cut short, at the end of the journal or before it, the writer
/// passes over on its own, resuming past its positions.)
#[test]
fn a_damaged_journal_says_how_to_inspect_it_and_start_again() {
    use corelane::frame::layout::FrameMeta;
    use corelane::segment::journal::{Durability, JournalConfig, JournalWriter};

    let base = std::env::temp_dir().join(format!("corelane-journal-cut-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let core = base.join("core-0");
    let config = JournalConfig {
        segment_size: 4096,
        durability: Durability::None,
    };
    let mut writer = JournalWriter::open(&core, config).unwrap();
    // Frames of 3000 bytes: one to a segment, so the second starts the next.
    let positions: Vec<u64> = (0..2)
        .map(|_| writer.append(&[7; 3000], FrameMeta::default()).unwrap())
        .collect();
    assert_eq!(positions, [0, 4096]);
    drop(writer);
    // The first segment's header overwritten, its length kept: damage that
    // recovery refuses (a segment merely cut short before the last one is
    // logged and passed over; see `tests/segment_truncate.rs`).
    let first = core.join("0000000000000000.journal");
    let mut bytes = std::fs::read(&first).unwrap();
    bytes[..64].fill(0xa5);
    std::fs::write(&first, bytes).unwrap();
    let error = serve_failing("127.0.0.1:0", "--journal", base.to_str().unwrap());
    assert!(
        error.contains("0000000000000000.journal: not a corelane segment (bad magic)"),
        "{error}"
    );
    assert!(
        error.contains(&format!(
            "(`corelane journal inspect {}` shows the damage; to start a new journal, move \
             that one aside or pick another --journal)",
            base.display()
        )),
        "{error}"
    );
    let _ = std::fs::remove_dir_all(&base);
}

/// `stat --count 0` would scrape once and print nothing: refused, with the
/// range, before it connects anywhere.
#[test]
fn stat_with_a_count_of_zero_is_refused() {
    let output = corelane(&["stat", "127.0.0.1:9", "--count", "0"]);
    assert!(!output.status.success());
    let error = stderr(&output);
    assert!(
        error.contains("invalid value '0' for '--count <COUNT>'"),
        "{error}"
    );
    assert!(
        error.contains("give at least 1 (or leave --count out to refresh until interrupted)"),
        "{error}"
    );
}

/// A sync period of zero frames or milliseconds is refused with what to
/// give instead, not taken silently as `each`.
#[test]
fn journal_sync_periods_of_zero_are_refused() {
    for when in ["frames:0", "ms:0"] {
        let error = serve_failing("127.0.0.1:0", "--journal-sync", when);
        assert!(
            error.contains(&format!(
                "\"{when}\": N must be at least 1 (to sync after every frame, give each)"
            )),
            "{error}"
        );
    }
}

/// A journal flag without `--journal` is refused, naming the flag it
/// needs: ignored, `--journal-sync each` would leave its user believing
/// every PUBLISH reaches the disk when nothing is journaled.
#[test]
fn journal_flags_without_a_journal_are_refused() {
    for (flag, value) in [
        ("--journal-sync", "each"),
        ("--journal-segment-size", "4096"),
    ] {
        let error = serve_failing("127.0.0.1:0", flag, value);
        assert!(
            error.contains("the following required arguments were not provided"),
            "{flag}: {error}"
        );
        assert!(error.contains("--journal <DIR>"), "{flag}: {error}");
    }
    // With `--journal`, either flag is taken.
    let dir = std::env::temp_dir().join(format!("corelane-flags-{}", std::process::id()));
    let journal = dir.to_str().unwrap();
    for (flag, value) in [
        ("--journal-sync", "each"),
        ("--journal-segment-size", "4096"),
    ] {
        let log = serve_until_listening(&[
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--cores",
            "1",
            "--journal",
            journal,
            flag,
            value,
        ]);
        assert!(log.contains("listening on "), "{flag}: {log}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The stop signal is logged by its name, with how to stop at once: a
/// number ("signal 15") sends the user to a table, and "again" did not
/// say again what.
#[test]
fn a_stop_signal_is_logged_by_its_name() {
    // `serve_until_listening` stops the server with SIGTERM.
    let log = serve_until_listening(&["serve", "--bind", "127.0.0.1:0", "--cores", "1"]);
    assert!(
        log.contains("SIGTERM: shutting down (a second Ctrl-C or SIGTERM stops at once)"),
        "{log}"
    );
    assert!(!log.contains("signal 15"), "{log}");
}
