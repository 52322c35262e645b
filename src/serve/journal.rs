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
//!
//! Durability: under [`Durability::Every`](crate::segment::journal::Durability)
//! each append arms a core timer (one at a time) for when the frames not yet
//! synced are due, and the timer ticks the writer, so the last messages
//! before a quiet spell are synced on time rather than at the next PUBLISH.
//!
//! A segment file cut under the server (another process truncating it) is
//! the writer's to handle: it abandons the segment, logs once which
//! positions may be lost, and appends go on in a new segment, so the
//! PUBLISH that found the cut is journaled there and not refused (see
//! [`JournalWriter`]). Only if that fails are PUBLISHes refused, with the
//! reason in the reply.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::message::ServerMsg;
use super::published::{Published, PublishedRef};
use crate::clock;
use crate::runtime::{Context, TimeSource};
use crate::segment::journal::{JournalConfig, JournalError, JournalWriter};

/// Id of the core timer that ticks the core's journal writer (the server
/// sets no other handler timer).
pub(crate) const SYNC_TIMER: u64 = 0x6a6f_7572_6e61_6c00;

/// The journal directory of core `core` under `dir`.
pub fn core_dir(dir: &Path, core: usize) -> PathBuf {
    dir.join(format!("core-{core}"))
}

/// One core's journal and the record it reuses for each message.
#[derive(Debug)]
pub(crate) struct CoreJournal {
    writer: JournalWriter,
    /// Whether a [`SYNC_TIMER`] is pending.
    sync_armed: bool,
    /// Whether the last append failed for a reason of the journal's own (not
    /// a message too large): the failure is logged when it starts and when it
    /// ends, not once per PUBLISH, which a busy publisher would turn into a
    /// flood of the same line.
    failing: bool,
}

impl CoreJournal {
    /// Opens (and recovers) the journals of `cores` cores under `dir`,
    /// measuring sync periods on the runtime's `time` so that they agree
    /// with its timers.
    pub(crate) fn open_all(
        dir: &Path,
        cores: usize,
        config: JournalConfig,
        time: &TimeSource,
    ) -> Result<Vec<CoreJournal>, JournalError> {
        (0..cores)
            .map(|core| {
                let mut writer = JournalWriter::open(&core_dir(dir, core), config)?;
                if let TimeSource::Virtual(virtual_clock) = time {
                    let virtual_clock = virtual_clock.clone();
                    writer.set_clock(move || virtual_clock.now_ns());
                }
                if let Some(tail) = &writer.recovery().torn_tail {
                    log::warn!(
                        "journal of core {core}: cut a torn tail of {} bytes at position {}",
                        tail.bytes,
                        tail.position
                    );
                }
                Ok(CoreJournal {
                    writer,
                    sync_armed: false,
                    failing: false,
                })
            })
            .collect()
    }

    /// Appends one published message and arms the sync timer if frames now
    /// wait for one; returns the message's position.
    ///
    /// # Errors
    ///
    /// What [`JournalWriter::append_message`] returns. A message too large
    /// for any segment is the client's to hear about, in the reply, and is
    /// not logged; any other failure is logged when the journal starts
    /// failing, and again when it works again.
    pub(crate) fn append(
        &mut self,
        cx: &mut Context<'_, ServerMsg>,
        channel: &[u8],
        payload: &[u8],
    ) -> Result<u64, JournalError> {
        // Archived straight from the client's bytes (see `PublishedRef`).
        let record = PublishedRef {
            channel,
            payload,
            time_ns: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
        };
        match self
            .writer
            .append_as::<Published, _>(&record, clock::now_ns())
        {
            Ok(position) => {
                if self.failing {
                    self.failing = false;
                    log::info!("core {}: journal appends succeed again", cx.core());
                }
                self.arm_sync(cx);
                Ok(position)
            }
            Err(error @ JournalError::FrameTooLarge { .. }) => Err(error),
            Err(error) => {
                if !self.failing {
                    self.failing = true;
                    log::error!(
                        "core {}: journal append failed: {error} (each PUBLISH on this core is \
                         refused until appends succeed again)",
                        cx.core()
                    );
                }
                Err(error)
            }
        }
    }

    /// The [`SYNC_TIMER`] fired: syncs if the frames are due, and re-arms
    /// for frames appended since the last sync.
    pub(crate) fn on_sync_timer(&mut self, cx: &mut Context<'_, ServerMsg>) {
        self.sync_armed = false;
        if let Err(error) = self.writer.tick() {
            log::error!("core {}: journal sync failed: {error}", cx.core());
        }
        self.arm_sync(cx);
    }

    /// The writer, for INFO.
    pub(crate) fn writer(&self) -> &JournalWriter {
        &self.writer
    }

    /// Schedules the sync timer for the frames' deadline, unless one is
    /// pending (it re-arms when it fires, if the deadline has moved).
    fn arm_sync(&mut self, cx: &mut Context<'_, ServerMsg>) {
        if self.sync_armed {
            return;
        }
        if let Some(after) = self.writer.sync_due_in() {
            cx.schedule_timer(after, SYNC_TIMER);
            self.sync_armed = true;
        }
    }
}
