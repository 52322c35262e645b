//! What the pool and codec benches share: settings from the environment,
//! medians, pinning, bars, and the JSON report under
//! `target/corelane-bench/` (rows shaped like the lanes bench's).

#![allow(dead_code)] // each bench uses its own part

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::{env, fs};

/// Whether `cargo bench` runs us (it passes `--bench`); `cargo test
/// --benches` does not, and then a quick pass that writes nothing will do.
pub fn benching() -> bool {
    env::args().any(|arg| arg == "--bench")
}

/// Whether the environment variable `name` is set to something but `0`.
pub fn env_flag(name: &str) -> bool {
    env::var(name).is_ok_and(|value| value != "0")
}

/// A positive number from the environment variable `name`.
pub fn env_count(name: &str) -> Option<usize> {
    env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .filter(|&count| count > 0)
}

/// The median; NaN for no values.
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

/// Per-round ratios `top[i] / bottom[i]`.
pub fn ratios(top: &[f64], bottom: &[f64]) -> Vec<f64> {
    top.iter()
        .zip(bottom)
        .map(|(top, bottom)| top / bottom)
        .collect()
}

/// Pins the calling thread to the first (`side` 0) or second (`side` 1)
/// CPU; does nothing on a machine with fewer than two.
pub fn pin(side: usize) {
    static CORES: OnceLock<Vec<core_affinity::CoreId>> = OnceLock::new();
    let cores = CORES.get_or_init(|| core_affinity::get_core_ids().unwrap_or_default());
    if cores.len() >= 2 {
        core_affinity::set_for_current(cores[side]);
    }
}

/// One of an issue's bars: the median of per-round ratios must be at least
/// `limit`.
pub struct Bar {
    pub text: String,
    pub ratios: Vec<f64>,
    pub limit: f64,
}

impl Bar {
    pub fn ratio(&self) -> f64 {
        median(self.ratios.clone())
    }

    pub fn met(&self) -> bool {
        self.ratio() >= self.limit
    }
}

pub fn print_bars(bars: &[Bar]) {
    println!("\nbars (this run; the machine is shared, ratios are per-round medians):");
    for bar in bars {
        let rounds: Vec<String> = bar.ratios.iter().map(|r| format!("{r:.2}")).collect();
        println!(
            "  [{}] {:<72} {:>6.2}x  (rounds: {})",
            if bar.met() { "met   " } else { "MISSED" },
            bar.text,
            bar.ratio(),
            rounds.join(" ")
        );
    }
}

pub fn json_string(text: &str) -> String {
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

pub fn json_number(value: Option<f64>) -> String {
    match value {
        Some(value) if value.is_finite() => format!("{}", (value * 1000.0).round() / 1000.0),
        _ => "null".to_owned(),
    }
}

/// A JSON object of `fields` (name and already-encoded value) on one line.
pub fn json_object(fields: &[(&str, String)]) -> String {
    let inner: Vec<String> = fields
        .iter()
        .map(|(name, value)| format!("{}: {value}", json_string(name)))
        .collect();
    format!("{{{}}}", inner.join(", "))
}

/// The whole report: `header` fields, then `rows` and `bars` arrays.
pub fn json_report(header: &[(&str, String)], rows: &[String], bars: &[Bar]) -> String {
    let mut out = String::from("{\n");
    for (name, value) in header {
        let _ = writeln!(out, "  {}: {value},", json_string(name));
    }
    let _ = writeln!(out, "  \"rows\": [\n    {}\n  ],", rows.join(",\n    "));
    let bars: Vec<String> = bars
        .iter()
        .map(|bar| {
            json_object(&[
                ("bar", json_string(&bar.text)),
                ("ratio", json_number(Some(bar.ratio()))),
                ("limit", json_number(Some(bar.limit))),
                ("met", bar.met().to_string()),
                (
                    "per_round",
                    format!(
                        "[{}]",
                        bar.ratios
                            .iter()
                            .map(|r| json_number(Some(*r)))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ),
            ])
        })
        .collect();
    let _ = writeln!(out, "  \"bars\": [\n    {}\n  ]", bars.join(",\n    "));
    out.push_str("}\n");
    out
}

/// Writes `text` to `$CARGO_TARGET_DIR/corelane-bench/<file>` (default
/// `target/`).
pub fn write_report(file: &str, text: &str) -> std::io::Result<PathBuf> {
    let target =
        env::var_os("CARGO_TARGET_DIR").map_or_else(|| PathBuf::from("target"), PathBuf::from);
    let directory = target.join("corelane-bench");
    fs::create_dir_all(&directory)?;
    let path = directory.join(file);
    fs::write(&path, text)?;
    Ok(path)
}
