//! The wheel's geometry: how ticks map onto levels and slots.
//!
//! A tick count is read as base-64 digits. Digit `l` (bits `6l..6l + 6`)
//! picks the slot at level `l`, so one slot at level `l` spans `64^l`
//! ticks and the whole of level `l` spans `64^(l + 1)`. With [`LEVELS`]
//! levels the wheel spans `2^36` ticks; a deadline whose digits differ
//! from the wheel's elapsed tick above that belongs to a later *block*
//! and waits in the overflow list.
//!
//! A timer is filed at the highest digit in which its deadline differs
//! from the elapsed tick. Every occupied slot at a level therefore lies
//! strictly ahead of the elapsed tick's digit at that level, and the
//! lowest occupied level holds the earliest deadlines.

/// Bits of a tick count that one level decodes.
pub(crate) const SLOT_BITS: u32 = 6;

/// Slots per level.
pub(crate) const SLOTS: usize = 1 << SLOT_BITS;

/// Levels in the wheel.
pub(crate) const LEVELS: usize = 6;

/// Bits of a tick count that the levels decode together: the wheel spans
/// `2^SPAN_BITS` ticks, and a block is that many ticks, aligned.
pub(crate) const SPAN_BITS: u32 = SLOT_BITS * LEVELS as u32;

/// The level that holds a timer due at tick `deadline` while the wheel
/// stands at tick `elapsed`, or `None` if the deadline lies in a later
/// block (the overflow list).
#[inline]
pub(crate) fn level_for(elapsed: u64, deadline: u64) -> Option<usize> {
    debug_assert!(
        deadline > elapsed,
        "deadline {deadline} is not after elapsed {elapsed}"
    );

    // The lowest level's bits are forced on so that a deadline differing
    // from `elapsed` only there still lands on level 0.
    let differing = (elapsed ^ deadline) | (SLOTS as u64 - 1);
    let top_bit = u64::BITS - 1 - differing.leading_zeros();
    let level = (top_bit / SLOT_BITS) as usize;
    (level < LEVELS).then_some(level)
}

/// The slot at `level` that holds a timer due at tick `deadline`.
#[inline]
pub(crate) fn slot_for(deadline: u64, level: usize) -> usize {
    ((deadline >> (SLOT_BITS * level as u32)) as usize) & (SLOTS - 1)
}

/// The first tick covered by `slot` at `level`, in the stretch of that
/// level which contains tick `elapsed`.
#[inline]
pub(crate) fn slot_start(elapsed: u64, level: usize, slot: usize) -> u64 {
    let shift = SLOT_BITS * level as u32;
    let level_span_mask = (1u64 << (shift + SLOT_BITS)) - 1;
    (elapsed & !level_span_mask) | ((slot as u64) << shift)
}

/// The first tick of the block that contains tick `tick`.
#[inline]
pub(crate) fn block_start(tick: u64) -> u64 {
    tick & !((1u64 << SPAN_BITS) - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_tick_is_on_level_zero() {
        assert_eq!(level_for(0, 1), Some(0));
        assert_eq!(level_for(62, 63), Some(0));
        assert_eq!(slot_for(63, 0), 63);
    }

    #[test]
    fn crossing_a_slot_boundary_moves_up_a_level() {
        // Tick 64 differs from tick 63 in digit 1, even though it is only
        // one tick later.
        assert_eq!(level_for(63, 64), Some(1));
        assert_eq!(slot_for(64, 1), 1);
        assert_eq!(slot_start(63, 1, 1), 64);
    }

    #[test]
    fn a_later_block_overflows() {
        let span = 1u64 << SPAN_BITS;
        assert_eq!(level_for(0, span - 1), Some(LEVELS - 1));
        assert_eq!(level_for(0, span), None);
        assert_eq!(level_for(span - 1, span), None);
        assert_eq!(block_start(span + 5), span);
    }

    #[test]
    fn slot_start_keeps_the_higher_digits() {
        // elapsed = digits (1, 2, 3) at levels (2, 1, 0).
        let elapsed = (1 << 12) | (2 << 6) | 3;
        assert_eq!(slot_start(elapsed, 0, 9), (1 << 12) | (2 << 6) | 9);
        assert_eq!(slot_start(elapsed, 1, 7), (1 << 12) | (7 << 6));
        assert_eq!(slot_start(elapsed, 2, 4), 4 << 12);
    }
}
