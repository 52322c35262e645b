//! `corelane serve` and `corelane stat` given the addresses users get
//! wrong: a bare port for `--bind`, a port another server holds, and
//! `stat` pointed at a port that answers no HTTP. Each fails with an error
//! that says what to do instead. Everything listens on loopback only.

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
