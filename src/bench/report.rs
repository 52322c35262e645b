//! What a bench run found: rows for the table and JSON, curves for the
//! plot.

use std::fmt::Write;

use serde_json::{json, Value};

use crate::metrics::LatencyHistogram;

/// One measured line.
#[derive(Clone, Debug)]
pub struct Row {
    /// Section, e.g. `floor`, `pipeline`.
    pub section: &'static str,
    /// What was measured.
    pub name: String,
    /// Named values, in the order printed.
    pub fields: Vec<(&'static str, f64)>,
}

/// A latency distribution to plot: value (ns) at each percentile.
#[derive(Clone, Debug)]
pub struct Curve {
    /// Legend text.
    pub name: String,
    /// (percentile 0..100, latency ns), ascending.
    pub points: Vec<(f64, u64)>,
}

/// Everything a run measured.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Rows, in the order measured.
    pub rows: Vec<Row>,
    /// Latency distributions for `--plot`.
    pub curves: Vec<Curve>,
}

/// Latency fields of a histogram: count, p50, p99, p99.9, max (ns).
pub(crate) fn latency_fields(h: &LatencyHistogram) -> Vec<(&'static str, f64)> {
    vec![
        ("count", h.count() as f64),
        ("p50_ns", h.percentile(50.0) as f64),
        ("p99_ns", h.percentile(99.0) as f64),
        ("p999_ns", h.percentile(99.9) as f64),
        ("max_ns", h.max() as f64),
    ]
}

/// The median of `values` (0 if there are none).
pub(crate) fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// The percentile spectrum of `h`, from p0 to p99.999, for plotting.
pub(crate) fn curve(name: String, h: &LatencyHistogram) -> Curve {
    let points = (0..=100)
        .map(|step| {
            // Evenly spaced in log10(1 / (1 - q)): 0 to 5 nines.
            let percentile = 100.0 * (1.0 - 10f64.powf(-(step as f64) / 20.0));
            (percentile, h.percentile(percentile))
        })
        .collect();
    Curve { name, points }
}

impl Report {
    /// Adds a row.
    pub fn push(
        &mut self,
        section: &'static str,
        name: impl Into<String>,
        fields: Vec<(&'static str, f64)>,
    ) {
        self.rows.push(Row {
            section,
            name: name.into(),
            fields,
        });
    }

    /// The value of `field` in the first row of `section` named `name`.
    pub fn value(&self, section: &str, name: &str, field: &str) -> Option<f64> {
        self.rows
            .iter()
            .find(|row| row.section == section && row.name == name)
            .and_then(|row| row.fields.iter().find(|(key, _)| *key == field))
            .map(|(_, value)| *value)
    }

    /// The rows as aligned text, a block per section.
    pub fn to_table(&self) -> String {
        const NAME_WIDTH: usize = 44;
        let mut text = String::new();
        let mut section = "";
        let mut keys: Vec<&str> = Vec::new();
        for row in &self.rows {
            let row_keys: Vec<&str> = row.fields.iter().map(|(key, _)| *key).collect();
            // A heading for each section, and again wherever a row's
            // fields differ from the ones above it (a ratio row after
            // latency rows), so that no number sits under another's name.
            if row.section != section || row_keys != keys {
                if row.section != section {
                    section = row.section;
                    let _ = write!(text, "\n[{section}]\n");
                }
                let _ = write!(text, "{:<NAME_WIDTH$}", "");
                for key in &row_keys {
                    let _ = write!(text, " {key:>12}");
                }
                text.push('\n');
                keys = row_keys;
            }
            let _ = write!(text, "{:<NAME_WIDTH$}", row.name);
            for (_, value) in &row.fields {
                if value.fract() == 0.0 && value.abs() < 1e15 {
                    let _ = write!(text, " {value:>12}");
                } else {
                    let _ = write!(text, " {value:>12.3}");
                }
            }
            text.push('\n');
        }
        text
    }

    /// The rows as JSON: `{"rows": [{"section", "name", fields...}]}`.
    pub fn to_json(&self) -> Value {
        let rows: Vec<Value> = self
            .rows
            .iter()
            .map(|row| {
                let mut object = serde_json::Map::new();
                object.insert("section".into(), row.section.into());
                object.insert("name".into(), row.name.clone().into());
                for (key, value) in &row.fields {
                    object.insert((*key).into(), json!(value));
                }
                Value::Object(object)
            })
            .collect();
        json!({ "rows": rows })
    }
}
