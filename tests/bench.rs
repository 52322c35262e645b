//! `corelane bench` end to end: the IPC and pools sections run the real
//! command (side B of the IPC rows is the command re-executed), report
//! sane rows in JSON and the table, show progress, and leave no ring file
//! or echo process behind. Values are checked for sense, never for speed.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

mod common;
use common::Scratch;

/// Runs `corelane bench ARGS` with its temporary directory in `tmp`.
fn bench(tmp: &Path, args: &[&str]) -> Output {
    let output = Command::new(env!("CARGO_BIN_EXE_corelane"))
        .arg("bench")
        .args(args)
        .env("TMPDIR", tmp)
        .output()
        .expect("run corelane bench");
    assert!(
        output.status.success(),
        "corelane bench {args:?}: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn field(row: &Value, name: &str) -> f64 {
    row[name]
        .as_f64()
        .unwrap_or_else(|| panic!("{name} missing in {row}"))
}

/// The names of `rows`, in order.
fn row_names<'a>(rows: &[&'a Value]) -> Vec<&'a str> {
    rows.iter().map(|row| name_of(row)).collect()
}

/// A row's name.
fn name_of(row: &Value) -> &str {
    row["name"].as_str().expect("a row's name")
}

fn rows<'a>(report: &'a Value, section: &str) -> Vec<&'a Value> {
    report["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .filter(|row| row["section"] == section)
        .collect()
}

/// Processes whose command line mentions `text` (echo processes name
/// their ring directory, which lies under the test's scratch directory).
fn processes_mentioning(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(text) {
                found.push(cmdline);
            }
        }
    }
    found
}

#[test]
fn ipc_and_pools_sections_report_sane_rows_and_clean_up() {
    let scratch = Scratch::new("bench-json");
    let output = bench(
        &scratch.0,
        &[
            "--quick",
            "--json",
            "--only",
            "ipc,pools",
            "--seconds",
            "0.05",
        ],
    );
    let report: Value = serde_json::from_slice(&output.stdout).expect("JSON on stdout");

    // Only the sections asked for.
    for row in report["rows"].as_array().unwrap() {
        assert!(
            row["section"] == "ipc" || row["section"] == "pools",
            "{row}"
        );
    }

    let ipc = rows(&report, "ipc");
    let names = row_names(&ipc);
    assert_eq!(
        names,
        [
            "in-process frame lane (2 threads)",
            "ipc ring (2 processes)",
            "ipc ring, checksummed (2 processes)",
            "unix socket pair (2 processes)",
            "pipe pair (2 processes)",
        ]
    );
    for row in &ipc {
        let count = field(row, "count");
        let (p50, p99, p999, max) = (
            field(row, "p50_ns"),
            field(row, "p99_ns"),
            field(row, "p999_ns"),
            field(row, "max_ns"),
        );
        assert!(count > 0.0, "{row}");
        assert!(
            0.0 < p50 && p50 <= p99 && p99 <= p999 && p999 <= max,
            "{row}"
        );
        let rate = field(row, "msgs_per_s");
        assert!(rate.is_finite() && rate > 0.0, "{row}");
        // The ratios are of this run's own p50s.
        let lane_p50 = field(ipc[0], "p50_ns");
        assert!(
            (field(row, "p50_x_lane") - p50 / lane_p50).abs() < 1e-9,
            "{row}"
        );
        let socket_p50 = field(ipc[3], "p50_ns");
        assert!(
            (field(row, "p50_x_socket") - p50 / socket_p50).abs() < 1e-9,
            "{row}"
        );
    }

    let pools = rows(&report, "pools");
    let names = row_names(&pools);
    assert_eq!(
        names,
        [
            "64 B, owning core",
            "4 KiB, owning core",
            "64 KiB, owning core",
            "64 B, across cores",
            "4 KiB, across cores",
            "64 KiB, across cores",
        ]
    );
    for row in &pools {
        assert!(field(row, "ops") > 0.0, "{row}");
        let (pool, vec) = (field(row, "pool_ns"), field(row, "vec_ns"));
        assert!(pool.is_finite() && pool > 0.0, "{row}");
        assert!(vec.is_finite() && vec > 0.0, "{row}");
        // One round (--quick): the speed-up is that round's ratio.
        assert!(
            (field(row, "pool_x_faster") - vec / pool).abs() < 1e-6 * (vec / pool),
            "{row}"
        );
        assert_eq!(field(row, "fallbacks"), 0.0, "{row}");
    }

    // Progress on stderr, section by section and row by row.
    let progress = String::from_utf8_lossy(&output.stderr);
    for line in [
        "corelane bench: ipc",
        "corelane bench: ipc: ipc ring (2 processes) (round 1/1)",
        "corelane bench: pools",
    ] {
        assert!(progress.contains(line), "no {line:?} in:\n{progress}");
    }

    // Ring directories removed, echo processes gone.
    let left: Vec<_> = std::fs::read_dir(&scratch.0).unwrap().flatten().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    let echoes = processes_mentioning(&scratch.0.to_string_lossy());
    assert!(echoes.is_empty(), "echo processes left: {echoes:?}");
}

#[test]
fn table_shows_the_pools_section_alone() {
    let scratch = Scratch::new("bench-table");
    let output = bench(
        &scratch.0,
        &["--quick", "--only", "pools", "--seconds", "0.02"],
    );
    let table = String::from_utf8(output.stdout).unwrap();
    assert!(table.contains("\n[pools]\n"), "{table}");
    assert!(
        !table.contains("[ipc]") && !table.contains("[floor]"),
        "{table}"
    );
    for size in ["64 B", "4 KiB", "64 KiB"] {
        for placement in ["owning core", "across cores"] {
            assert!(table.contains(&format!("{size}, {placement}")), "{table}");
        }
    }
}

#[test]
fn echo_side_refuses_an_unknown_transport() {
    let output = Command::new(env!("CARGO_BIN_EXE_corelane"))
        .args(["bench-echo", "carrier-pigeon", "/nonexistent"])
        .output()
        .expect("run corelane bench-echo");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("unknown transport"), "{stderr}");
}

#[test]
fn an_unknown_section_is_refused() {
    let output = Command::new(env!("CARGO_BIN_EXE_corelane"))
        .args(["bench", "--only", "ipc,warp-drive"])
        .output()
        .expect("run corelane bench");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("warp-drive"), "{stderr}");
}

/// Side A killed in the middle of an IPC ring row (SIGKILL: no unwinding,
/// no destructor) leaves the echo process to notice the hang-up on its
/// own: it must exit, and no ring file or directory may be left behind
/// (they would live in memory, under /dev/shm, until a reboot).
#[test]
fn killing_the_bench_mid_ring_leaves_no_echo_process_or_ring_files() {
    use std::process::Stdio;
    use std::time::Duration;

    let scratch = Scratch::new("bench-killed");
    let mut bench = Command::new(env!("CARGO_BIN_EXE_corelane"))
        .args(["bench", "--only", "ipc", "--rounds", "1", "--seconds", "10"])
        .env("TMPDIR", &scratch.0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run corelane bench");
    // Wait for the ring row: its echo process runs. The row lasts 10 s,
    // far longer than this takes to see.
    loop {
        let echoes = processes_mentioning(&scratch.0.to_string_lossy());
        if echoes
            .iter()
            .any(|cmdline| cmdline.contains("bench-echo ring "))
        {
            break;
        }
        assert!(
            bench.try_wait().unwrap().is_none(),
            "the bench ended before its ring row"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // Both sides open both rings within milliseconds; the files' names go
    // then, while the row runs on (see tests/bench_ipc_cleanup.rs).
    let mut waited = 0;
    while std::fs::read_dir(&scratch.0).unwrap().next().is_some() {
        waited += 1;
        assert!(waited < 1_000, "the ring files keep their names");
        std::thread::sleep(Duration::from_millis(5));
    }
    bench.kill().unwrap();
    bench.wait().unwrap();

    // The echo process sees the writer of ring `a` gone and exits (it
    // never decides on a clock, so this wait is bounded only generously).
    let mut waited = 0;
    while !processes_mentioning(&scratch.0.to_string_lossy()).is_empty() {
        waited += 1;
        assert!(waited < 12_000, "the echo process lingers");
        std::thread::sleep(Duration::from_millis(5));
    }
    let left: Vec<_> = std::fs::read_dir(&scratch.0).unwrap().flatten().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// Latency fields of a row: count > 0 and p50 <= p99 <= p99.9 <= max.
fn assert_sane_latency(row: &Value) {
    assert!(field(row, "count") > 0.0, "{row}");
    let (p50, p99, p999, max) = (
        field(row, "p50_ns"),
        field(row, "p99_ns"),
        field(row, "p999_ns"),
        field(row, "max_ns"),
    );
    assert!(
        0.0 < p50 && p50 <= p99 && p99 <= p999 && p999 <= max,
        "{row}"
    );
}

fn named<'a>(rows: &[&'a Value], name: &str) -> &'a Value {
    rows.iter()
        .find(|row| row["name"] == name)
        .unwrap_or_else(|| panic!("no row {name:?} in {rows:?}"))
}

/// The floor pipeline runs beside corelane's and tokio's, with its ratio
/// rows, and the floor section reports the hiccups of spinning CPUs: in
/// the JSON, and as a curve in the plot.
#[test]
fn floor_pipeline_and_hiccups_rows_are_reported() {
    let scratch = Scratch::new("bench-pfloor");
    let plot = scratch.0.join("latency.svg");
    let output = bench(
        &scratch.0,
        &[
            "--quick",
            "--json",
            "--only",
            "floor,pipeline",
            "--seconds",
            "0.2",
            "--rates",
            "20000",
            "--idle",
            "busy-spin",
            "--plot",
            plot.to_str().unwrap(),
        ],
    );
    let report: Value = serde_json::from_slice(&output.stdout).expect("JSON on stdout");

    let pipeline = rows(&report, "pipeline");
    let names = row_names(&pipeline);
    assert_eq!(
        names,
        [
            "corelane busy-spin 20000/s",
            "  send lag, busy-spin 20000/s",
            "tokio mpsc 20000/s",
            "p99 corelane busy-spin / tokio at 20000/s",
            "floor pipeline 20000/s",
            "p99 floor / tokio at 20000/s",
            "p99 corelane busy-spin / floor at 20000/s",
        ]
    );
    let floor = named(&pipeline, "floor pipeline 20000/s");
    assert_sane_latency(floor);
    // Every request due in the 0.2 s measured (20000/s: 4000) is answered
    // and recorded once.
    assert_eq!(field(floor, "count"), 4000.0, "{floor}");
    let corelane = named(&pipeline, "corelane busy-spin 20000/s");
    let tokio = named(&pipeline, "tokio mpsc 20000/s");
    // One round: each ratio is that round's ratio of the p99s above.
    for (name, over, under) in [
        ("p99 floor / tokio at 20000/s", floor, tokio),
        ("p99 corelane busy-spin / floor at 20000/s", corelane, floor),
    ] {
        let ratio = field(named(&pipeline, name), "ratio");
        let expected = field(over, "p99_ns") / field(under, "p99_ns");
        assert!(
            (ratio - expected).abs() < 1e-9 * expected,
            "{name}: {ratio}"
        );
    }

    let floor_rows = rows(&report, "floor");
    // The threads that ran while both CPUs spun come after the two CPUs'
    // rows: their sum, then at most five by name.
    let (others, floor_rows): (Vec<&Value>, Vec<&Value>) = floor_rows
        .into_iter()
        .partition(|row| name_of(row).starts_with("hiccups: "));
    let names = row_names(&floor_rows);
    assert_eq!(
        names,
        [
            "cache-line round trip",
            "hiccups cpu0",
            "hiccups cpu1",
            "hiccups cpu0, cpu1 idle",
        ]
    );
    assert_eq!(row_names(&others)[0], "hiccups: all others ran");
    assert!(others.len() <= 6, "{others:?}");
    let all = field(others[0], "ran_ms");
    for row in &others {
        let (ran, pct) = (field(row, "ran_ms"), field(row, "pct"));
        assert!(
            ran > 0.0 || name_of(row) == "hiccups: all others ran",
            "{row}"
        );
        assert!(ran <= all, "{row}");
        // Of two CPUs' 0.2 s: 400 ms.
        assert!((pct - ran / 400.0 * 100.0).abs() < 1e-6, "{row}");
        assert!(field(row, "slices") >= 1.0 || ran == 0.0, "{row}");
    }
    for row in &floor_rows[1..] {
        let lost = field(row, "lost_pct");
        assert!((0.0..100.0).contains(&lost), "{row}");
        let per_second = field(row, "gaps_per_s");
        // Gaps per second agree with the count over the time watched: the
        // 0.2 s asked for, plus at most the last step, which is a gap (no
        // longer than the longest) when the spinner was descheduled as the
        // 0.2 s ran out.
        let count = field(row, "count");
        if count > 0.0 {
            let watched = count / per_second;
            let longest = field(row, "max_ns") / 1e9;
            assert!(
                watched >= 0.2 * 0.999 && watched <= (0.2 + longest) * 1.001,
                "{row}"
            );
        } else {
            assert_eq!(per_second, 0.0, "{row}");
        }
        if count > 0.0 {
            assert_sane_latency(row);
            // Only gaps longer than 2 us are counted.
            assert!(field(row, "p50_ns") > 2_000.0, "{row}");
            assert!(lost > 0.0, "{row}");
        }
    }

    let svg = std::fs::read_to_string(&plot).expect("the plot");
    assert!(svg.contains("floor pipeline 20000/s"), "{svg}");
}
