//! Drives the timing wheel with operations decoded from the input and
//! checks every result against a sorted-map model of its documented rule:
//! a timer for `d` ns is due at tick `ceil(d / tick)`, or at once if `d` is
//! not after the wheel's `now`; `advance(now)` fires all due by tick
//! `floor(now / tick)` (everything at `now == u64::MAX`), in due order.
//!
//! Input layout: byte 0 picks the tick length; then operations, each an
//! opcode byte (low 2 bits: schedule, schedule, cancel, advance; the rest:
//! a mode) and up to 8 little-endian bytes of argument (missing bytes are 0).

#![no_main]

use std::collections::BTreeMap;
use std::time::Duration;

use corelane::timer::{TimerHandle, Wheel};
use libfuzzer_sys::fuzz_target;

const SPAN_TICKS: u64 = 1 << 36;
const TICKS: [u64; 8] = [1, 2, 3, 7, 64, 1000, 1_000_000, 999_983];
const MAX_OPS: usize = 4096;

/// Reads operations from the fuzzer's bytes.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&first, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(first)
    }

    /// Up to 8 bytes, little-endian; short input reads as zeros.
    fn word(&mut self, bytes: usize) -> u64 {
        let take = bytes.min(self.0.len());
        let (head, rest) = self.0.split_at(take);
        self.0 = rest;
        head.iter()
            .rev()
            .fold(0, |word, &b| (word << 8) | u64::from(b))
    }
}

struct Model {
    tick: u64,
    now: u64,
    /// (due tick, sequence number) -> deadline in ns.
    pending: BTreeMap<(u64, u64), u64>,
    due_of: BTreeMap<u64, u64>,
}

impl Model {
    fn due_tick(&self, deadline: u64) -> u64 {
        if deadline <= self.now {
            self.now / self.tick
        } else {
            deadline.div_ceil(self.tick)
        }
    }

    fn target(&self) -> u64 {
        if self.now == u64::MAX {
            u64::MAX
        } else {
            self.now / self.tick
        }
    }

    /// Removes and returns the timers an advance to `now` fires.
    fn advance(&mut self, now: u64) -> BTreeMap<(u64, u64), u64> {
        self.now = self.now.max(now);
        let later = match self.target().checked_add(1) {
            Some(next) => self.pending.split_off(&(next, 0)),
            None => BTreeMap::new(),
        };
        let fired = std::mem::replace(&mut self.pending, later);
        for (_, seq) in fired.keys() {
            self.due_of.remove(seq);
        }
        fired
    }
}

fn schedule_deadline(mode: u8, arg: u64, now: u64, tick: u64) -> u64 {
    let ticks = |n: u64| n.saturating_mul(tick);
    match mode % 7 {
        0 => now.saturating_sub(arg),
        1 => now.saturating_add(arg % ticks(130)),
        2 => now.saturating_add(arg % ticks(1 << 20)),
        3 => now.saturating_add(arg % ticks(SPAN_TICKS * 8)),
        4 => ticks((now / tick).saturating_add(arg % 70)),
        5 => now.saturating_add(ticks(SPAN_TICKS - 2 + arg % 4)),
        _ => arg,
    }
}

fn advance_to(mode: u8, arg: u64, now: u64, tick: u64, next: Option<u64>) -> u64 {
    let ticks = |n: u64| n.saturating_mul(tick);
    match mode % 6 {
        0 => now.saturating_add(arg % ticks(4)),
        1 => now.saturating_add(arg % ticks(1 << 14)),
        2 => next.unwrap_or(now),
        3 => next.map_or(now, |next| next.saturating_sub(1)),
        4 => now.saturating_add(arg % ticks(SPAN_TICKS * 4)),
        _ => arg,
    }
}

fn check_advance(wheel: &mut Wheel<u64>, model: &mut Model, now: u64, fired: &mut Vec<u64>) {
    fired.clear();
    let count = wheel.advance(now, fired);
    let expected = model.advance(now);
    assert_eq!(count, fired.len());
    assert_eq!(fired.len(), expected.len(), "wrong number fired at {now}");

    let by_seq: BTreeMap<u64, (u64, u64)> = expected
        .iter()
        .map(|(&(due, seq), &deadline)| (seq, (due, deadline)))
        .collect();
    let mut last_due = 0;
    for seq in fired.iter() {
        let Some(&(due, deadline)) = by_seq.get(seq) else {
            panic!("timer {seq} fired at {now} but is not due");
        };
        assert!(deadline <= model.now, "timer {seq} fired early");
        assert!(due >= last_due, "timer {seq} fired out of order");
        last_due = due;
    }
}

fn check_next_deadline(wheel: &Wheel<u64>, model: &Model) {
    let earliest = model.pending.keys().next().map(|&(due, _)| due);
    match (wheel.next_deadline(), earliest) {
        (None, None) => {}
        (Some(next), Some(due)) if due <= model.target() => assert_eq!(next, model.now),
        (Some(next), Some(due)) => {
            assert!(next > model.now);
            assert!(next <= due.saturating_mul(model.tick));
        }
        (next, due) => panic!("next_deadline {next:?}, earliest due tick {due:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let Some(first) = input.byte() else {
        return;
    };
    let tick = TICKS[usize::from(first) % TICKS.len()];
    let mut wheel = Wheel::new(Duration::from_nanos(tick));
    let mut model = Model {
        tick,
        now: 0,
        pending: BTreeMap::new(),
        due_of: BTreeMap::new(),
    };
    let mut handles: Vec<(TimerHandle, u64)> = Vec::new();
    let mut fired = Vec::new();

    for seq in 0..MAX_OPS as u64 {
        let Some(op) = input.byte() else {
            break;
        };
        let mode = op >> 2;
        match op & 3 {
            0 | 1 => {
                let arg = input.word(usize::from(op & 1) * 4 + 4);
                let deadline = schedule_deadline(mode, arg, model.now, tick);
                handles.push((wheel.schedule(deadline, seq), seq));
                let due = model.due_tick(deadline);
                model.pending.insert((due, seq), deadline);
                model.due_of.insert(seq, due);
            }
            2 if !handles.is_empty() => {
                let pick = input.word(2) as usize % handles.len();
                let (handle, seq) = handles[pick];
                let expected = model.due_of.remove(&seq).map(|due| {
                    model.pending.remove(&(due, seq));
                    seq
                });
                assert_eq!(wheel.cancel(handle), expected);
            }
            _ => {
                let arg = input.word(8);
                let now = advance_to(mode, arg, model.now, tick, wheel.next_deadline());
                check_advance(&mut wheel, &mut model, now, &mut fired);
            }
        }
        assert_eq!(wheel.len(), model.due_of.len());
        check_next_deadline(&wheel, &model);
    }

    check_advance(&mut wheel, &mut model, u64::MAX, &mut fired);
    assert!(wheel.is_empty());
});
