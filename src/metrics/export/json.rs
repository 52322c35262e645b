//! JSON for programs: every core's counters, gauges and percentiles.

use serde_json::{json, Map, Value};

use super::PERCENTILES;
use crate::metrics::{CoreMetrics, LatencyHistogram, NamedHistograms, Snapshot};

/// Renders `snapshot` as a JSON value: `{"cores": [...], "all": {...}}`,
/// latencies in nanoseconds.
pub fn to_json(snapshot: &Snapshot) -> Value {
    let cores: Vec<Value> = snapshot.cores.iter().map(core).collect();
    json!({ "cores": cores, "all": core(&snapshot.merged()) })
}

fn core(metrics: &CoreMetrics) -> Value {
    let c = &metrics.counters;
    let g = &metrics.gauges;
    json!({
        "sent": c.sent,
        "delivered": c.delivered,
        "refused": c.refused,
        "requests": c.requests,
        "turns": c.turns,
        "parks": c.parks,
        "busy_ns": c.busy_ns,
        "spinning_ns": c.spinning_ns,
        "parked_ns": c.parked_ns,
        "busy_share": c.busy_share(),
        "lane_backlog_bytes": g.lane_backlog_bytes,
        "handler_backlog_bytes": g.handler_backlog_bytes,
        "connections": g.connections,
        "delivery_ns": histogram(&metrics.delivery),
        "delivery_by_kind_ns": named(&metrics.delivery_by_kind),
        "handler_time_ns": named(&metrics.handler_time),
        "turn_lag_ns": histogram(&metrics.turn_lag),
    })
}

/// Count, saturated count, mean, percentiles and max of `h`, in ns.
pub(crate) fn histogram(h: &LatencyHistogram) -> Value {
    let mut fields = Map::new();
    fields.insert("count".into(), h.count().into());
    fields.insert("saturated".into(), h.saturated().into());
    fields.insert("mean".into(), h.mean().into());
    for (label, percentile) in PERCENTILES {
        fields.insert(label.into(), h.percentile(percentile).into());
    }
    fields.insert("max".into(), h.max().into());
    Value::Object(fields)
}

fn named(named: &NamedHistograms) -> Value {
    Value::Object(
        named
            .iter()
            .map(|(name, h)| (name.to_string(), histogram(h)))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_survive_a_round_trip_through_text() {
        let mut core = CoreMetrics::default();
        core.counters.delivered = 3;
        core.gauges.connections = 2;
        for value in [1_000, 2_000, 3_000] {
            core.delivery.record(value);
            core.delivery_by_kind.record("Quote \"q\"", value);
        }
        let snapshot = Snapshot { cores: vec![core] };
        let text = to_json(&snapshot).to_string();
        let parsed: Value = serde_json::from_str(&text).unwrap();
        let first = &parsed["cores"][0];
        assert_eq!(first["delivered"], 3);
        assert_eq!(first["connections"], 2);
        assert_eq!(first["delivery_ns"]["count"], 3);
        let p50 = first["delivery_ns"]["p50"].as_u64().unwrap();
        assert!(p50.abs_diff(2_000) <= 2, "{p50}");
        assert_eq!(first["delivery_by_kind_ns"]["Quote \"q\""]["count"], 3);
        assert_eq!(parsed["all"]["delivered"], 3);
    }
}
