//! HdrHistogram interval logs (V2 compressed histograms, base64, one line
//! per interval and core), as HdrHistogram's own tools read them
//! (`HistogramLogProcessor`, HistogramLogAnalyzer, the `hdrhistogram`
//! crate's `IntervalLogIterator`).
//!
//! Per core and interval: one line tagged `core<N>` with the core's
//! delivery latency of every kind together, then one line per message kind
//! the core delivered in that interval, tagged `core<N>.<kind>` (kinds with
//! nothing delivered in the interval get no line). All in nanoseconds.
//! HdrHistogram's tools select lines by tag (`HistogramLogProcessor -tag
//! core0.Quote`). A tag may not hold commas or white space: those
//! characters of a kind's name, and control characters, are written as
//! `_`.

use std::io::{self, Write};
use std::time::{Duration, SystemTime};

use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use hdrhistogram::serialization::V2DeflateSerializer;

use crate::clock;
use crate::metrics::Interval;

/// An interval log being written to `W`.
pub struct IntervalLog<W: Write> {
    out: W,
    serializer: V2DeflateSerializer,
    /// [`crate::clock`]'s epoch, as wall-clock time.
    epoch: SystemTime,
}

impl<W: Write> IntervalLog<W> {
    /// Starts a log: writes the header comments, the start time and the
    /// column legend.
    ///
    /// # Errors
    ///
    /// Any error from writing to `out`.
    pub fn begin(mut out: W) -> io::Result<Self> {
        let epoch = SystemTime::now() - Duration::from_nanos(clock::now_ns());
        IntervalLogWriterBuilder::new()
            .add_comment(
                "corelane delivery latency, ns: per core per interval, all kinds (tag coreN) \
                 and each kind delivered (tag coreN.KIND)",
            )
            .with_start_time(epoch)
            .with_base_time(epoch)
            .begin_log_with(&mut out, &mut V2DeflateSerializer::new())?;
        out.write_all(
            b"\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\"\n",
        )?;
        Ok(IntervalLog {
            out,
            serializer: V2DeflateSerializer::new(),
            epoch,
        })
    }

    /// Appends one line per core for `intervals` (indexed by core), with
    /// timestamps relative to the log's base time.
    ///
    /// # Errors
    ///
    /// Any error from writing or compressing.
    pub fn write(&mut self, intervals: &[Interval]) -> io::Result<()> {
        for (core, interval) in intervals.iter().enumerate() {
            let start = Duration::from_nanos(interval.start_ns);
            let length = Duration::from_nanos(interval.end_ns.saturating_sub(interval.start_ns));
            let all = format!("core{core}");
            self.line(interval.metrics.delivery.inner(), start, length, &all)?;
            for (kind, histogram) in interval.metrics.delivery_by_kind.iter() {
                if histogram.is_empty() {
                    continue;
                }
                let tag = kind_tag(core, kind);
                self.line(histogram.inner(), start, length, &tag)?;
            }
        }
        self.out.flush()
    }

    /// Appends one histogram line.
    fn line(
        &mut self,
        histogram: &hdrhistogram::Histogram<u64>,
        start: Duration,
        length: Duration,
        tag: &str,
    ) -> io::Result<()> {
        let mut writer =
            IntervalLogWriterBuilder::new().begin_log_with(&mut self.out, &mut self.serializer)?;
        writer
            .write_histogram(histogram, start, length, Tag::new(tag))
            .map_err(|error| io::Error::other(error.to_string()))
    }

    /// When the log's timestamps start (the base time), as wall-clock time.
    pub fn base_time(&self) -> SystemTime {
        self.epoch
    }

    /// The writer, back.
    pub fn into_inner(self) -> W {
        self.out
    }
}

/// The tag of `kind`'s line for `core`: `core<N>.<kind>`, with the
/// characters a tag may not hold (commas, white space) and control
/// characters written as `_`.
pub(crate) fn kind_tag(core: usize, kind: &str) -> String {
    let kind: String = kind
        .chars()
        .map(|c| {
            if c == ',' || c.is_whitespace() || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    format!("core{core}.{kind}")
}

#[cfg(test)]
mod tests {
    use super::kind_tag;
    use hdrhistogram::serialization::interval_log::Tag;

    #[test]
    fn kind_tags_are_valid_tags() {
        assert_eq!(kind_tag(3, "Quote"), "core3.Quote");
        let odd = kind_tag(0, "a, b\tc\n\u{7f}");
        assert_eq!(odd, "core0.a__b_c__");
        assert!(Tag::new(&odd).is_some());
    }
}
