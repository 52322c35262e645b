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
    /// Messages still in lanes when the cores had stopped, by kind.
    pub undelivered: Vec<Undelivered>,
    /// Messages handlers still held (queued for a full lane, say) when
    /// they exited, as they reported them with
    /// [`Context::abandon`](crate::runtime::Context::abandon). Never sent,
    /// so not part of `sent`.
    pub abandoned: Vec<Undelivered>,
    /// Messages the runtime itself still held when the cores exited, by
    /// kind: delayed messages not yet due and messages waiting in
    /// backpressure overflow queues. Never written into a lane, so not part
    /// of `sent`.
    pub held: Vec<Undelivered>,
    /// Final metrics of every core.
    pub metrics: Snapshot,
}

/// Adds `count` messages of kind `name` to `list`.
pub(crate) fn tally(list: &mut Vec<Undelivered>, name: &str, count: u64) {
    match list.iter_mut().find(|entry| entry.name == name) {
        Some(entry) => entry.count += count,
        None => list.push(Undelivered {
            name: name.to_string(),
            count,
        }),
    }
}

impl ShutdownReport {
    /// Messages sent but never delivered.
    pub fn undelivered_total(&self) -> u64 {
        self.undelivered.iter().map(|u| u.count).sum()
    }

    /// Messages the runtime held at exit (see [`ShutdownReport::held`]).
    pub fn held_total(&self) -> u64 {
        self.held.iter().map(|u| u.count).sum()
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
        if !self.held.is_empty() {
            f.write_str("; held by the runtime at exit (delayed or overflow), never sent:")?;
            for held in &self.held {
                write!(f, " {} x {}", held.count, held.name)?;
            }
        }
        if !self.abandoned.is_empty() {
            f.write_str("; held by handlers at exit, never sent:")?;
            for abandoned in &self.abandoned {
                write!(f, " {} x {}", abandoned.count, abandoned.name)?;
            }
        }
        Ok(())
    }
}
