//! `corelane serve` takes its socket input buffers from each core's pool
//! and reports the pools in INFO.

use std::net::SocketAddr;
use std::time::Duration;

use corelane::serve::{Server, ServerConfig};

/// One `key=value` field of an INFO line `name:key=value,...`.
fn pool_field(info: &str, line: &str, key: &str) -> u64 {
    let fields = info
        .lines()
        .find_map(|text| text.strip_prefix(line)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("INFO has no {line}: {info}"));
    fields
        .trim()
        .split(',')
        .find_map(|pair| pair.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("{line} has no {key}: {fields}"))
        .parse()
        .expect("a number")
}

fn this_core(info: &str) -> usize {
    info.lines()
        .find_map(|line| line.strip_prefix("this_core:"))
        .expect("INFO server has this_core")
        .trim()
        .parse()
        .expect("a number")
}

#[test]
fn input_buffers_come_from_the_pool_and_info_shows_it() {
    let server = Server::start(ServerConfig {
        bind: SocketAddr::from(([127, 0, 0, 1], 0)),
        cores: Some(2),
        ..ServerConfig::default()
    })
    .expect("server starts");
    let client = redis::Client::open(format!("redis://{}/", server.local_addr())).unwrap();
    let mut con = client
        .get_connection_with_timeout(Duration::from_secs(10))
        .expect("client connects");
    con.set_read_timeout(Some(Duration::from_secs(10))).unwrap();

    // A command larger than one read chunk grows the input buffer through
    // the 16, 32, 64 and 128 KiB classes; once parsed, all go back.
    let payload = vec![b'x'; 100 * 1024];
    let receivers: i64 = redis::cmd("PUBLISH")
        .arg("news")
        .arg(&payload)
        .query(&mut con)
        .unwrap();
    assert_eq!(receivers, 0);

    let info: String = redis::cmd("INFO").query(&mut con).unwrap();
    assert!(info.contains("# Pools\r\n"), "{info}");
    let core = this_core(&info);
    let line = format!("pool_core_{core}");
    // The buffer holding this very INFO command is in use.
    assert!(pool_field(&info, &line, "in_use") >= 1, "{info}");
    assert!(
        pool_field(&info, &line, "in_use_bytes") >= 16 * 1024,
        "{info}"
    );
    // The PUBLISH's buffers are back on the free list.
    assert!(
        pool_field(&info, &line, "free_bytes") >= 128 * 1024,
        "{info}"
    );
    assert_eq!(pool_field(&info, &line, "fallbacks"), 0, "{info}");
    assert!(
        pool_field(&info, "pool_all", "free_bytes") >= 128 * 1024,
        "{info}"
    );

    let only: String = redis::cmd("INFO").arg("pools").query(&mut con).unwrap();
    assert!(only.starts_with("# Pools\r\n"), "{only}");
    assert!(!only.contains("# Stats"), "{only}");

    let report = server.shutdown().expect("no core panicked");
    assert!(report.adds_up(), "{report}");
    assert_eq!(report.metrics.merged().pool.in_use, 0, "{report}");
}
