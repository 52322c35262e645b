//! `corelane bench` given odd pipeline arguments: a zero rate is refused
//! with a clear error, a rate too low to record anything reports no ratio
//! of empty histograms, and a rate no pipeline can keep up with still ends
//! (a client past the drain stops sending). No timing is asserted: the
//! watchdog below only tells a hang from a run, with minutes to spare.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Runs `corelane bench ARGS`, killing it if it runs past `limit` (a hang).
fn bench(args: &[&str], limit: Duration) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_corelane"))
        .arg("bench")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run corelane bench");
    let started = Instant::now();
    while child.try_wait().expect("wait for corelane bench").is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("corelane bench {args:?} still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.wait_with_output().expect("corelane bench output")
}

#[test]
fn a_zero_rate_is_refused() {
    for rates in ["0", "20000,0"] {
        let output = bench(
            &["--quick", "--only", "pipeline", "--rates", rates],
            Duration::from_secs(60),
        );
        assert!(!output.status.success(), "--rates {rates} accepted");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("--rates must be positive"), "{stderr}");
        assert!(output.stdout.is_empty(), "nothing measured: {output:?}");
    }
}

#[test]
fn zero_rounds_or_seconds_are_refused() {
    for (flag, message) in [
        ("--rounds", "--rounds must be at least 1"),
        ("--seconds", "--seconds must be a positive number"),
    ] {
        let output = bench(
            &["--quick", "--only", "record", flag, "0"],
            Duration::from_secs(60),
        );
        assert!(!output.status.success(), "{flag} 0 accepted");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(message), "{stderr}");
        assert!(output.stdout.is_empty(), "nothing measured: {output:?}");
    }
}

#[test]
fn a_plot_path_that_cannot_be_written_is_refused_before_the_run() {
    let output = bench(
        &[
            "--quick",
            "--only",
            "pipeline",
            "--plot",
            "/nonexistent-corelane-dir/plot.svg",
        ],
        Duration::from_secs(60),
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot write /nonexistent-corelane-dir/plot.svg"),
        "{stderr}"
    );
    // Refused before anything ran: no progress, no table.
    assert!(!stderr.contains("pipeline"), "{stderr}");
    assert!(output.stdout.is_empty(), "nothing measured: {output:?}");
}

/// `--plot` with `--only` sections that have no latency curves would
/// write empty axes after the run: it is refused before it, and no file
/// is made.
#[test]
fn a_plot_of_sections_without_curves_is_refused_before_the_run() {
    let path = std::env::temp_dir().join(format!("corelane-noplot-{}.svg", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let output = bench(
        &[
            "--quick",
            "--only",
            "record,pools",
            "--plot",
            path.to_str().unwrap(),
        ],
        Duration::from_secs(60),
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("draws the floor, lanes, ipc, pipeline sections' latency"),
        "{stderr}"
    );
    assert!(stderr.contains("--only record,pools runs none"), "{stderr}");
    assert!(output.stdout.is_empty(), "nothing measured: {output:?}");
    assert!(!path.exists(), "{} was made", path.display());
}

/// `--rates` and `--idle` set the pipeline section: with `--only`
/// sections that leave it out they would be dropped in silence, so they
/// are refused before the run.
#[test]
fn pipeline_flags_without_the_pipeline_are_refused() {
    for flag in [["--rates", "1000"], ["--idle", "park"]] {
        let output = bench(
            &["--quick", "--only", "timers,record", flag[0], flag[1]],
            Duration::from_secs(60),
        );
        assert!(!output.status.success(), "{flag:?} accepted");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(&format!(
                "{} sets the pipeline section, and --only timers,record does not run it",
                flag[0]
            )),
            "{stderr}"
        );
        assert!(output.stdout.is_empty(), "nothing measured: {output:?}");
    }
}

/// A quick pipeline-only run, busy-spinning, at `rate` for `seconds`: the
/// JSON report as text, after checking that the run succeeded.
fn pipeline_report(rate: &str, seconds: &str) -> String {
    let output = bench(
        &[
            "--quick",
            "--json",
            "--only",
            "pipeline",
            "--idle",
            "busy-spin",
            "--rates",
            rate,
            "--seconds",
            seconds,
        ],
        Duration::from_secs(300),
    );
    assert!(output.status.success(), "{output:?}");
    let report: Value = serde_json::from_slice(&output.stdout).expect("a JSON report");
    report.to_string()
}

/// At one request a second over a fraction of a second nothing falls in
/// the recorded window: the rows say count 0 and no ratio row claims a
/// ratio of 0.
#[test]
fn an_empty_run_reports_no_ratio() {
    let text = pipeline_report("1", "0.1");
    assert!(text.contains("floor pipeline 1/s"), "{text}");
    assert!(!text.contains("ratio"), "a ratio of empty runs: {text}");
}

/// One request a nanosecond: no pipeline keeps up, and each run still ends
/// about a second (the drain) after its schedule.
#[test]
fn a_rate_no_pipeline_keeps_up_with_still_ends() {
    let text = pipeline_report("1000000000", "0.05");
    assert!(text.contains("corelane busy-spin 1000000000/s"), "{text}");
    assert!(text.contains("floor pipeline 1000000000/s"), "{text}");
}
