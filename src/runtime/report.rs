//! What a runtime reports when it has shut down.

use std::fmt;

use crate::metrics::{Counters, Snapshot};

/// Messages left in lanes at shutdown, by message type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Undelivered {
    /// The message type's name, or its id and version if unknown.
    pub name: String,
    /// How many.
    pub count: u64,
}

/// The final account of a runtime's traffic.
///
/// The counters add up: every message sent was either delivered or is
/// listed as undelivered ([`ShutdownReport::adds_up`]). Refused sends
/// were handed back to their senders and are not part of `sent`.
#[derive(Clone, Debug)]
pub struct ShutdownReport {
    /// Totals over all cores.
    pub totals: Counters,
    /// Messages still in lanes when the cores had stopped.
    pub undelivered: Vec<Undelivered>,
    /// Final metrics of every core.
    pub metrics: Snapshot,
}

impl ShutdownReport {
    /// Messages sent but never delivered.
    pub fn undelivered_total(&self) -> u64 {
        self.undelivered.iter().map(|u| u.count).sum()
    }

    /// Whether `sent == delivered + undelivered`.
    pub fn adds_up(&self) -> bool {
        self.totals.sent == self.totals.delivered + self.undelivered_total()
    }
}

impl fmt::Display for ShutdownReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let totals = &self.totals;
        write!(
            f,
            "sent {}, delivered {}, refused {} (handed back), undelivered {}",
            totals.sent,
            totals.delivered,
            totals.refused,
            self.undelivered_total()
        )?;
        for undelivered in &self.undelivered {
            write!(f, "; {} x {}", undelivered.count, undelivered.name)?;
        }
        Ok(())
    }
}
