//! `corelane serve` out of file descriptors: a connection that arrives
//! while `accept` fails (EMFILE) waits in the listen backlog, and must be
//! taken once descriptors are free again, without a new client having to
//! connect first (the listener is polled edge-triggered: no second event
//! comes for a connection already waiting).
//!
//! Its own test binary: it lowers this process's descriptor limit.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use corelane::serve::{Server, ServerConfig};

/// How long a read may wait before the test gives up (a hang guard, not a
/// bar: with the fault, the reply never comes).
const TIMEOUT: Duration = Duration::from_secs(10);

fn ping(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    stream.write_all(b"PING\r\n")?;
    let mut reply = [0; 7];
    stream.read_exact(&mut reply)?;
    Ok(reply.to_vec())
}

/// This process's descriptor limit (soft, hard).
fn fd_limit() -> libc::rlimit {
    let mut rlimit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct we pass.
    let result = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rlimit) };
    assert_eq!(result, 0);
    rlimit
}

fn set_soft_fd_limit(limit: u64) {
    let rlimit = libc::rlimit {
        rlim_cur: limit,
        ..fd_limit()
    };
    // SAFETY: setrlimit reads the struct we pass.
    let result = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &rlimit) };
    assert_eq!(result, 0);
}

/// The highest descriptor this process has open.
fn highest_fd() -> u64 {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u64>().ok())
        .max()
        .unwrap()
}

#[test]
fn a_connection_waiting_while_out_of_descriptors_is_accepted_once_they_free() {
    let server = Server::start(ServerConfig {
        bind: SocketAddr::from(([127, 0, 0, 1], 0)),
        cores: Some(1),
        ..ServerConfig::default()
    })
    .expect("server starts");
    let mut first = TcpStream::connect(server.local_addr()).unwrap();
    first.set_read_timeout(Some(TIMEOUT)).unwrap();
    assert_eq!(ping(&mut first).unwrap(), b"+PONG\r\n");

    // Fill every descriptor below a limit just above what is open, then
    // free one: the next client's socket takes it, and the server has none
    // left to accept it with.
    let old_limit = fd_limit().rlim_cur;
    set_soft_fd_limit(highest_fd() + 4);
    let mut fillers = Vec::new();
    while let Ok(file) = File::open("/dev/null") {
        fillers.push(file);
    }
    assert!(!fillers.is_empty());
    fillers.pop();
    let mut waiting = TcpStream::connect(server.local_addr()).unwrap();
    waiting.set_read_timeout(Some(TIMEOUT)).unwrap();
    // One core serves both: by the time `first` has its reply, the core
    // has handled the listener's event for `waiting`, and failed to accept.
    assert_eq!(ping(&mut first).unwrap(), b"+PONG\r\n");

    // Descriptors free again; nobody else connects.
    drop(fillers);
    set_soft_fd_limit(old_limit);
    let reply = ping(&mut waiting).expect("the waiting connection is served");
    assert_eq!(reply, b"+PONG\r\n");

    drop((first, waiting));
    let report = server.shutdown().unwrap();
    assert!(report.adds_up(), "{report}");
}
