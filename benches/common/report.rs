//! Result rows shared by the benches that write
//! `target/corelane-bench/NAME.json`: one JSON object per row with the
//! fields of the lanes bench (name, msgs_per_s, p50_ns, p99_ns, p999_ns,
//! max_ns, count). Include with `#[path = "common/report.rs"] mod report;`.

use std::fmt::Write as _;
use std::path::PathBuf;

/// One row of results: medians over the rounds.
#[derive(Clone, Debug)]
pub struct Row {
    /// What was measured.
    pub name: String,
    /// Messages per second, if measured.
    pub msgs_per_s: Option<f64>,
    /// Latency percentiles and maximum, nanoseconds.
    pub p50_ns: f64,
    /// 99th percentile.
    pub p99_ns: f64,
    /// 99.9th percentile.
    pub p999_ns: f64,
    /// Largest.
    pub max_ns: f64,
    /// Latency samples behind the percentiles.
    pub count: u64,
}

/// The directory results go to: `$CARGO_TARGET_DIR/corelane-bench`.
pub fn out_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"),
        PathBuf::from,
    );
    target.join("corelane-bench")
}

/// Writes `rows` as `out_dir()/NAME.json`, with `notes` (machine, clock,
/// directory) as a top-level object of strings; returns the path.
pub fn write_json(name: &str, notes: &[(&str, String)], rows: &[Row]) -> std::io::Result<PathBuf> {
    let mut text = String::from("{\n");
    for (key, value) in notes {
        let _ = writeln!(text, "  {}: {},", string(key), string(value));
    }
    text.push_str("  \"rows\": [\n");
    for (i, row) in rows.iter().enumerate() {
        let _ = write!(
            text,
            "    {{\"name\": {}, \"msgs_per_s\": {}, \"p50_ns\": {}, \"p99_ns\": {}, \
             \"p999_ns\": {}, \"max_ns\": {}, \"count\": {}}}",
            string(&row.name),
            number(row.msgs_per_s),
            number(Some(row.p50_ns)),
            number(Some(row.p99_ns)),
            number(Some(row.p999_ns)),
            number(Some(row.max_ns)),
            row.count
        );
        text.push_str(if i + 1 < rows.len() { ",\n" } else { "\n" });
    }
    text.push_str("  ]\n}\n");
    let dir = out_dir();
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, text)?;
    Ok(path)
}

/// The median of `values` (NaN if empty).
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    if values.is_empty() {
        f64::NAN
    } else if values.len() % 2 == 1 {
        values[middle]
    } else {
        (values[middle - 1] + values[middle]) / 2.0
    }
}

fn string(text: &str) -> String {
    let mut quoted = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(quoted, "\\u{:04x}", c as u32);
            }
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

fn number(value: Option<f64>) -> String {
    match value {
        Some(value) if value.is_finite() => format!("{}", (value * 1000.0).round() / 1000.0),
        _ => "null".to_owned(),
    }
}
