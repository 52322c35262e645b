//! `corelane serve --journal DIR`: every PUBLISH, journaled by the core
//! that executes it.
//!
//! A journal has one writer, and a connection belongs to one core, so each
//! core keeps a journal of its own in `DIR/core-N`. A PUBLISH is appended
//! to its core's journal before it is delivered to anyone; if the append
//! fails the client gets an error and nobody gets the message. Order: each
//! core's journal holds the messages its connections published in the
//! order it executed them, so every publisher's messages are in the order
//! it sent them. There is no single order across cores; `time_ns` (wall
//! clock) says roughly when each message arrived.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::published::Published;
use crate::clock;
use crate::segment::journal::{JournalConfig, JournalError, JournalWriter};

/// The journal directory of core `core` under `dir`.
pub fn core_dir(dir: &Path, core: usize) -> PathBuf {
    dir.join(format!("core-{core}"))
}

/// One core's journal and the record it reuses for each message.
#[derive(Debug)]
pub(crate) struct CoreJournal {
    writer: JournalWriter,
    /// Reused so that journaling a message does not allocate once the
    /// buffers have grown to the largest message seen.
    record: Published,
}

impl CoreJournal {
    /// Opens (and recovers) the journals of `cores` cores under `dir`.
    pub(crate) fn open_all(
        dir: &Path,
        cores: usize,
        config: JournalConfig,
    ) -> Result<Vec<CoreJournal>, JournalError> {
        (0..cores)
            .map(|core| {
                let writer = JournalWriter::open(&core_dir(dir, core), config)?;
                if let Some(tail) = &writer.recovery().torn_tail {
                    log::warn!(
                        "journal of core {core}: cut a torn tail of {} bytes at position {}",
                        tail.bytes,
                        tail.position
                    );
                }
                Ok(CoreJournal {
                    writer,
                    record: Published {
                        channel: Vec::new(),
                        payload: Vec::new(),
                        time_ns: 0,
                    },
                })
            })
            .collect()
    }

    /// Appends one published message; returns its position.
    pub(crate) fn append(&mut self, channel: &[u8], payload: &[u8]) -> Result<u64, JournalError> {
        self.record.channel.clear();
        self.record.channel.extend_from_slice(channel);
        self.record.payload.clear();
        self.record.payload.extend_from_slice(payload);
        self.record.time_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        self.writer.append_message(&self.record, clock::now_ns())
    }
}
