//! `corelane serve` and `corelane stat` given the addresses users get
//! wrong: a bare port for `--bind`, a port another server holds, and
//! `stat` pointed at a port that answers no HTTP. Each fails with an error
//! that says what to do instead. A `--metrics` port or `--latency-log`
//! path that fails stops the server before it says it is listening, and a
//! `--journal` directory that is not there is named as it is created, and a
//! damaged one is named with how to inspect it and start again.
//! Everything listens on loopback only.

use std::net::TcpListener;
use std::process::{Command, Output};

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

/// Runs `serve` on one core at `bind` with `flag value`, expecting it to
/// fail; returns what it wrote to stderr.
fn serve_failing(bind: &str, flag: &str, value: &str) -> String {
    let output = corelane(&["serve", "--bind", bind, "--cores", "1", flag, value]);
    assert!(!output.status.success());
    stderr(&output)
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

#[test]
fn a_journal_directory_that_is_not_there_is_created_and_said() {
    let base = std::env::temp_dir().join(format!("corelane-journal-said-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let dir = base.join("nested").join("journal");
    // A busy port stops the server right after the flags are read, so the
    // test needs no signal to end it.
    let holder = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = holder.local_addr().unwrap().to_string();
    let error = serve_failing(&address, "--journal", dir.to_str().unwrap());
    assert!(
        error.contains(&format!("creating the journal directory {}", dir.display())),
        "{error}"
    );
    let _ = std::fs::remove_dir_all(&base);
}

/// A journal segment size the writer cannot make is refused with the range,
/// rather than clamped to 1 GiB (or up from 0) without a word.
#[test]
fn a_journal_segment_size_out_of_range_is_refused_with_the_range() {
    for size in ["0", "2147483648"] {
        let error = serve_failing("127.0.0.1:0", "--journal-segment-size", size);
        assert!(
            error.contains(&format!(
                "invalid value '{size}' for '--journal-segment-size <BYTES>'"
            )),
            "{error}"
        );
        assert!(error.contains("from 1 to 1073741824 bytes"), "{error}");
    }
}

/// A journal the writer will not append to (here a segment cut to its
/// header page) stops the server with the error and what to do: inspect
/// it, or move it aside.
#[test]
fn a_damaged_journal_says_how_to_inspect_it_and_start_again() {
    let base = std::env::temp_dir().join(format!("corelane-journal-cut-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let core = base.join("core-0");
    std::fs::create_dir_all(&core).unwrap();
    std::fs::write(core.join("0000000000000000.journal"), vec![0u8; 4096]).unwrap();
    let error = serve_failing("127.0.0.1:0", "--journal", base.to_str().unwrap());
    assert!(
        error.contains("4096 bytes is too short for a segment"),
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
