//! HdrHistogram interval logs (V2 compressed histograms, base64, one line
//! per interval and core), as HdrHistogram's own tools read them
//! (`HistogramLogProcessor`, HistogramLogAnalyzer, the `hdrhistogram`
//! crate's `IntervalLogIterator`).
//!
//! One line per core per interval, tagged `core<N>`, holding that core's
//! delivery latency in nanoseconds.

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
            .add_comment("corelane delivery latency, ns, one histogram per core per interval")
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
            let tag = format!("core{core}");
            let mut writer = IntervalLogWriterBuilder::new()
                .begin_log_with(&mut self.out, &mut self.serializer)?;
            writer
                .write_histogram(
                    interval.metrics.delivery.inner(),
                    Duration::from_nanos(interval.start_ns),
                    Duration::from_nanos(interval.end_ns.saturating_sub(interval.start_ns)),
                    Tag::new(&tag),
                )
                .map_err(|error| io::Error::other(error.to_string()))?;
        }
        self.out.flush()
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
