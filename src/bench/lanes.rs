//! A frame lane's round trip: one small rkyv message each way between two
//! pinned threads, against the floor measured just before.

use std::hint::spin_loop;
use std::time::Instant;

use rkyv::ser::allocator::Arena;

use super::report::{curve, latency_fields};
use super::{pin, Report, Settings};
use crate::frame::envelope::access_trusted;
use crate::frame::Message;
use crate::lane::frames::heap_ring;
use crate::metrics::LatencyHistogram;

/// A sequence number, as a lane message.
#[derive(rkyv::Archive, rkyv::Serialize)]
struct Seq(u64);

impl Message for Seq {
    const TYPE_ID: u16 = 0x7e01;
    const VERSION: u8 = 1;
    const NAME: &'static str = "Seq";
}

/// Reads the next `Seq` from `consumer`, spinning until one arrives.
fn receive(consumer: &mut crate::lane::frames::FrameConsumer<crate::lane::HeapRegion>) -> u64 {
    loop {
        let mut got = None;
        let read = consumer.drain(1, |frame| {
            // SAFETY: this ring is heap memory of this process, written
            // only below with `Seq` messages; the payload is lent aligned
            // and unchanged until released.
            let seq = unsafe { access_trusted::<Seq>(frame.payload()) };
            got = Some(seq.0.to_native());
        });
        if let (Ok(1), Some(value)) = (read, got) {
            return value;
        }
        spin_loop();
    }
}

pub(super) fn run(settings: &Settings, report: &mut Report) {
    let (mut ping_tx, mut ping_rx) = heap_ring(1 << 16);
    let (mut pong_tx, mut pong_rx) = heap_ring(1 << 16);
    let echo = std::thread::spawn(move || {
        pin(1);
        let mut arena = Arena::new();
        loop {
            let value = receive(&mut ping_rx);
            while pong_tx.write_message(&Seq(value), 0, &mut arena).is_err() {
                spin_loop();
            }
            if value == u64::MAX {
                return;
            }
        }
    });
    pin(0);
    let mut arena = Arena::new();
    let mut histogram = LatencyHistogram::new();
    let started = Instant::now();
    let mut value = 0;
    while started.elapsed() < settings.measure {
        value += 1;
        let sent = Instant::now();
        while ping_tx.write_message(&Seq(value), 0, &mut arena).is_err() {
            spin_loop();
        }
        let echoed = receive(&mut pong_rx);
        histogram.record(sent.elapsed().as_nanos() as u64);
        debug_assert_eq!(echoed, value);
    }
    while ping_tx
        .write_message(&Seq(u64::MAX), 0, &mut arena)
        .is_err()
    {
        spin_loop();
    }
    let _ = echo.join();

    let mut fields = latency_fields(&histogram);
    if let Some(floor) = report.value("floor", "cache-line round trip", "p50_ns") {
        fields.push((
            "p50_x_floor",
            histogram.percentile(50.0) as f64 / floor.max(1.0),
        ));
    }
    report.push("lanes", "frame lane round trip (rkyv u64)", fields);
    report
        .curves
        .push(curve("frame lane round trip".into(), &histogram));
}
