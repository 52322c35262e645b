//! Renderings of a [`Snapshot`](super::Snapshot) for people and tools: a
//! table, JSON, Prometheus text exposition, and HdrHistogram interval
//! logs. All run on the reader's thread, never on a core.

mod interval_log;
mod json;
mod prometheus;
mod table;

pub use interval_log::IntervalLog;
pub use json::to_json;
pub use prometheus::{to_prometheus, CONTENT_TYPE as PROMETHEUS_CONTENT_TYPE};
pub use table::to_table;

/// Percentiles every rendering reports, as (label, percentile).
pub(crate) const PERCENTILES: [(&str, f64); 4] = [
    ("p50", 50.0),
    ("p99", 99.0),
    ("p999", 99.9),
    ("p9999", 99.99),
];
