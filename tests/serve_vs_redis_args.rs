//! `benches/serve-vs-redis.sh` given what users get wrong: no redis-server
//! installed, or a ROUNDS that is not a number. Each is refused at once,
//! before the script builds anything or starts a server, with what to do
//! instead. The script runs under a `PATH` the test makes, so the tools it
//! finds are only the ones the test means it to find.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use common::Scratch;

/// Runs the script with `args` and `path` as its whole `PATH`.
fn script(path: &Path, args: &[&str]) -> Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/serve-vs-redis.sh");
    Command::new("/bin/bash")
        .arg(script)
        .args(args)
        .env("PATH", path)
        .output()
        .expect("run bash")
}

/// Stand-ins for the redis tools that would fail if the script ran them.
fn fake_redis_tools(dir: &Path) {
    for tool in ["redis-server", "redis-benchmark", "redis-cli"] {
        let path = dir.join(tool);
        fs::write(&path, "#!/bin/sh\nexit 99\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    }
}

#[test]
fn a_missing_redis_server_is_named_before_anything_runs() {
    let empty = Scratch::new("svr-no-tools");
    let output = script(&empty.0, &["1"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr.trim_end(),
        "serve-vs-redis.sh: needs redis-server (Debian: apt-get install redis-server \
         redis-tools)"
    );
    assert!(output.stdout.is_empty(), "{output:?}");
}

#[test]
fn rounds_that_are_not_a_positive_number_are_refused_with_the_usage() {
    let tools = Scratch::new("svr-rounds");
    fake_redis_tools(&tools.0);
    for rounds in ["0", "x", "--cores"] {
        let output = script(&tools.0, &[rounds, "--", "--cores", "1"]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{rounds}: {stderr}");
        assert!(
            stderr.contains(&format!("ROUNDS must be a positive number, not '{rounds}'")),
            "{stderr}"
        );
        assert!(
            stderr.contains("usage: benches/serve-vs-redis.sh [ROUNDS]"),
            "{stderr}"
        );
    }
}
