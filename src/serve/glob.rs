//! Glob matching for `PSUBSCRIBE` patterns, with Redis's rules.
//!
//! A pattern is a sequence of *tokens*, each matching exactly one byte,
//! and stars:
//!
//! - `*` matches any run of bytes, the empty run included;
//! - `?` matches any byte;
//! - `[abc]` matches a byte in the class, `[^abc]` one outside it; `a-z` in
//!   a class is a range, and a reversed range `z-a` means the same; `\x` in
//!   a class stands for `x` itself;
//! - `\x` matches `x` itself, so `\*` matches a star;
//! - any other byte matches itself.
//!
//! Matching is byte-wise and binary safe. The quirks of Redis's class syntax
//! are kept: a `]` right after `[` or `[^` closes an empty class, a class
//! left open runs to the end of the pattern, and a `\` at the very end of a
//! pattern is a literal backslash.
//!
//! NB: one deliberate difference: Redis never matches an empty subject
//! against a non-empty pattern, so there `*` does not match the empty
//! channel name; here it does, as the rule "`*` matches the empty run" says.
//!
//! A [`Glob`] is a pattern parsed once: its tokens, cut by the stars into
//! *segments*, kept as compact code (see `glob_code.rs`) of at most twice
//! the pattern's bytes, since a server holds every pattern its clients
//! subscribe to. Tokens are decoded as matching reads them; each tests a
//! byte in at most 16 comparisons (a class's ranges, or its set). A pattern
//! with no class and no escape (most are) is flagged when parsed, and its
//! code is read as plain bytes, one a token: `?` or the byte itself.
//!
//! Because every token matches exactly one byte, a pattern without a star
//! matches token for token, and one with stars matches when its first
//! segment matches at the start of the subject, its last segment at the
//! end, and each segment between, left to right, somewhere after the one
//! before. Taking each middle segment at its leftmost place is never
//! wrong: it leaves the most room to the ones after it, and the stars around
//! it absorb whatever it skipped.
//!
//! The leftmost place is found with a bit-parallel (Shift-And) search: a
//! table holds, for each byte value, which of the segment's tokens accept
//! it, and one pass over the subject keeps, in the bits of a few words, which
//! prefixes of the segment end at the current byte. A search stops where the
//! segment is found and the next one starts there, so the searches together
//! read the subject once. For a subject of `n` bytes whose longest middle
//! segment has `s` tokens, that is O(n × ⌈s / 64⌉) word operations, at most
//! 16 a byte for a pattern `PSUBSCRIBE` accepts (1,024 bytes). On top come
//! costs bounded by the pattern alone: reading the first and last segments,
//! and for each middle segment the subject reaches, counting its tokens and
//! its table (256 words per 64 tokens, plus at most 128 updates per
//! class). A middle segment of one token is looked for as a set of bytes,
//! and one whose window is too short to repay a table is tried at each
//! place directly, at no more than a few tables' cost. No input makes
//! matching quadratic: the 1,001-token segment of `*a…ab*` against 1 MB of
//! `a` takes 16 word operations a byte, not 1,001 comparisons.
//!
//! Matching allocates nothing, unless a single segment holds more than
//! [`STACK_WORDS`] × 64 tokens (a longer pattern than `PSUBSCRIBE` accepts),
//! whose table does not fit on the stack.

/// Tokens in one word of the search state.
const WORD_BITS: usize = 64;

/// Most steps per word of search state that trying each place of a short
/// window directly may take, instead of setting up a search table (256
/// steps a word).
const DIRECT_STEPS: usize = 1024;

/// Most words per table row kept on the stack: segments of up to 1,024
/// tokens, as long as the longest pattern `PSUBSCRIBE` accepts.
pub const STACK_WORDS: usize = 16;

#[path = "glob_code.rs"]
mod code;

#[cfg(test)]
use code::ByteSet;
use code::{accept, decode, segment_end, Token, Tokens, Writer};

/// Whether `subject` matches the glob `pattern`, parsing the pattern on the
/// way; to match many subjects against one pattern, keep a [`Glob`].
///
/// Parsing allocates (the pattern's tokens), so the server never calls
/// this per message: a PSUBSCRIBE pattern is parsed once, when it is
/// subscribed, and each PUBLISH matches it with [`Glob::matches`], which
/// allocates nothing for any pattern PSUBSCRIBE accepts.
///
/// # Examples
///
/// ```
/// use corelane::serve::glob::glob_match;
///
/// assert!(glob_match(b"news.*", b"news.sport"));
/// assert!(glob_match(b"h?llo", b"hallo"));
/// assert!(glob_match(b"h[^e]llo", b"hallo"));
/// assert!(!glob_match(b"h[a-b]llo", b"hello"));
/// assert!(glob_match(b"price\\*", b"price*"));
/// ```
pub fn glob_match(pattern: &[u8], subject: &[u8]) -> bool {
    Glob::new(pattern).matches(subject)
}

/// A glob pattern, parsed once to be matched against many subjects.
///
/// It holds its pattern's code (see `glob_code.rs`): at most twice the
/// pattern's bytes, whatever the pattern.
///
/// # Examples
///
/// ```
/// use corelane::serve::glob::Glob;
///
/// let glob = Glob::new(b"news.*.[a-m]*");
/// assert!(glob.matches(b"news.sport.football"));
/// assert!(!glob.matches(b"news.sport.rugby"));
/// assert!(glob.heap_bytes() <= 2 * b"news.*.[a-m]*".len());
/// ```
#[derive(Clone, Debug)]
pub struct Glob {
    /// The pattern's tokens and star runs, in order.
    code: Box<[u8]>,
    /// Tokens in the whole pattern, stars left out.
    tokens: usize,
    /// The offset in `code` of the first star and the offset just after
    /// the last; `None` for a pattern without stars. A run of stars counts
    /// once, so every middle segment holds at least one token.
    stars: Option<(usize, usize)>,
    /// Tokens before the first star.
    head_tokens: usize,
    /// Tokens after the last star.
    tail_tokens: usize,
    /// The code holds no class and no escaped byte, so each of its bytes
    /// is a token or a star run: matching reads it as bytes (see
    /// [`plain_fits`]) without decoding.
    plain: bool,
}

impl Glob {
    /// Parses `pattern`. Every byte string is a pattern: the rules give
    /// each one a meaning, so parsing cannot fail.
    pub fn new(pattern: &[u8]) -> Glob {
        Glob::within(pattern, usize::MAX).expect("no pattern has usize::MAX tokens")
    }

    /// Parses `pattern` to match subjects of at most `longest` bytes;
    /// `None` if it has more tokens than that, so matches none of them.
    ///
    /// A parsed pattern holds at most twice its pattern's bytes, and at
    /// most 34 bytes a token (a class of many ranges keeps its 256-bit
    /// set), so a caller that matches a few known names (CONFIG GET) and
    /// stops parsing past the longest of them holds an amount bounded by
    /// those names, not by the pattern it was sent.
    pub fn within(pattern: &[u8], longest: usize) -> Option<Glob> {
        let mut code = Writer::default();
        let mut tokens = 0;
        let (mut first_star, mut last_star) = (None, 0);
        let (mut head_tokens, mut tail_tokens) = (0, 0);
        let mut at = 0;
        while at < pattern.len() {
            if pattern[at] == b'*' {
                first_star.get_or_insert(code.len());
                code.star();
                last_star = code.len();
                tail_tokens = 0;
                at += 1;
                continue;
            }
            if tokens == longest {
                return None;
            }
            at = match &pattern[at..] {
                [b'?', ..] => {
                    code.any();
                    at + 1
                }
                [b'[', ..] => code.class(pattern, at + 1),
                [b'\\', escaped, ..] => {
                    code.byte(*escaped);
                    at + 2
                }
                [literal, ..] => {
                    code.byte(*literal);
                    at + 1
                }
                [] => unreachable!("at < pattern.len()"),
            };
            tokens += 1;
            tail_tokens += 1;
            if first_star.is_none() {
                head_tokens += 1;
            }
        }
        let code = code.finish();
        let plain = !code.iter().any(|&byte| byte == b'[' || byte == b'\\');
        Some(Glob {
            plain,
            code,
            tokens,
            stars: first_star.map(|first| (first, last_star)),
            head_tokens,
            tail_tokens,
        })
    }

    /// Bytes this glob holds on the heap: its code, at most twice the
    /// pattern's length.
    pub fn heap_bytes(&self) -> usize {
        self.code.len()
    }

    /// Whether `subject` matches. Allocates nothing (see the module doc for
    /// the one exception); the module doc gives the cost.
    pub fn matches(&self, subject: &[u8]) -> bool {
        // Every token takes a byte of its own.
        if self.tokens > subject.len() {
            return false;
        }
        // Stars alone match anything; no pattern at all, only nothing.
        if self.tokens == 0 {
            return self.stars.is_some() || subject.is_empty();
        }
        let fits = |segment: &[u8], bytes: &[u8]| {
            if self.plain {
                plain_fits(segment, bytes)
            } else {
                fits(segment, bytes)
            }
        };
        let Some((first_star, after_last)) = self.stars else {
            return self.tokens == subject.len() && fits(&self.code, subject);
        };

        // The first and last segments are pinned to the ends of the subject.
        let head = &self.code[..first_star];
        let tail = &self.code[after_last..];
        let end = subject.len() - self.tail_tokens;
        if !fits(head, &subject[..self.head_tokens]) || !fits(tail, &subject[end..]) {
            return false;
        }

        first_star + 1 == after_last || self.middles_fit(first_star + 1, after_last, subject, end)
    }

    /// Whether the middle segments, whose code runs from `at` to the star
    /// ending at `after_last`, fit one after the other in `subject` between
    /// the head and `end`, where the tail starts. Kept out of line, so that
    /// matching a pattern with no middle segment (most) sets up none of
    /// the state a search needs.
    #[inline(never)]
    fn middles_fit(&self, mut at: usize, after_last: usize, subject: &[u8], end: usize) -> bool {
        // Each middle segment at its leftmost place after the one before.
        let mut from = self.head_tokens;
        while at < after_last {
            let (code_len, len) = if self.plain {
                // One byte a token, up to the next star (`after_last`
                // follows one).
                let code_len = self.code[at..after_last]
                    .iter()
                    .position(|&byte| byte == b'*')
                    .unwrap_or(after_last - at);
                (code_len, code_len)
            } else {
                segment_end(&self.code[at..])
            };
            tally(len);
            let segment = &self.code[at..at + code_len];
            match find(segment, len, &subject[from..end], self.plain) {
                Some(start) => from += start + len,
                None => return false,
            }
            // Past the segment and the star after it.
            at += code_len + 1;
        }
        true
    }

    /// The token counts of the middle segments, for tests.
    #[cfg(test)]
    fn middle_lengths(&self) -> Vec<usize> {
        let mut lengths = Vec::new();
        if let Some((first_star, after_last)) = self.stars {
            let mut at = first_star + 1;
            while at < after_last {
                let (code_len, len) = segment_end(&self.code[at..]);
                lengths.push(len);
                at += code_len + 1;
            }
        }
        lengths
    }
}

/// Whether the tokens of `segment` (code without stars) match `bytes` token
/// for token; `bytes` holds one byte per token of `segment`, so no token is
/// left over once they are read.
#[inline(always)]
fn fits(segment: &[u8], bytes: &[u8]) -> bool {
    tally(bytes.len());
    let mut at = 0;
    for &byte in bytes {
        // Most tokens are plain bytes: one that reads as `byte` itself, and
        // does not start a class or an escape, matches it undecoded.
        if segment[at] == byte && byte != b'[' && byte != b'\\' {
            at += 1;
            continue;
        }
        match accept(&segment[at..], byte) {
            Some(len) => at += len,
            None => return false,
        }
    }
    debug_assert!(decode(&segment[at..]).is_none(), "a token left over");
    true
}

/// [`fits`] for the code of a plain pattern (no class, no escape): each
/// byte of `segment` is a token, `?` or the byte itself.
#[inline]
fn plain_fits(segment: &[u8], bytes: &[u8]) -> bool {
    tally(bytes.len());
    debug_assert_eq!(segment.len(), bytes.len(), "a token per byte");
    segment
        .iter()
        .zip(bytes)
        .all(|(&token, &byte)| token == byte || token == b'?')
}

/// The offset in `window` of the leftmost place `segment`, of `len`
/// tokens, fits; `plain` says the segment is plain code (see
/// [`plain_fits`]).
fn find(segment: &[u8], len: usize, window: &[u8], plain: bool) -> Option<usize> {
    let starts = window.len().checked_sub(len)? + 1;
    let words = len.div_ceil(WORD_BITS);

    // A single token is a set of bytes to look for; a byte or `?` needs
    // no set built.
    if len == 1 {
        let (token, _) = decode(segment)?;
        let found = match token {
            Token::Byte(expected) => window[..starts].iter().position(|&byte| byte == expected),
            Token::Any => Some(0),
            _ => {
                let set = token.byte_set();
                window[..starts].iter().position(|&byte| set.contains(byte))
            }
        };
        tally(found.map_or(starts, |at| at + 1));
        return found;
    }

    // Trying each place costs up to `len` steps a place, but most places
    // fail at their first token; the search always pays for its table
    // first. A window short enough that trying every place costs at most a
    // few tables goes direct.
    if starts.saturating_mul(len) <= DIRECT_STEPS * words {
        return (0..starts).find(|&start| {
            let bytes = &window[start..start + len];
            if plain {
                plain_fits(segment, bytes)
            } else {
                fits(segment, bytes)
            }
        });
    }

    table_search(segment, len, window)
}

/// The leftmost place `segment`, of `len` tokens, fits in `window`, by the
/// Shift-And search. Kept out of line: its table takes up to 32 KiB of
/// stack, which a caller that inlined it would set up (probing each page)
/// on every match, even one that never searches.
#[inline(never)]
fn table_search(segment: &[u8], len: usize, window: &[u8]) -> Option<usize> {
    let words = len.div_ceil(WORD_BITS);
    // One row of `words` words per byte value, and the state after them.
    // A segment of more than one word zeroes the whole stack table (32
    // KiB), a few steps per token of a segment that long.
    let needed = 257 * words;
    let mut one_word = [0; 257];
    let mut stack_words;
    let mut heap_words;
    let cells: &mut [u64] = if words == 1 {
        &mut one_word
    } else if words <= STACK_WORDS {
        stack_words = [0; 257 * STACK_WORDS];
        &mut stack_words[..needed]
    } else {
        heap_words = vec![0; needed];
        &mut heap_words
    };
    let (table, state) = cells.split_at_mut(256 * words);
    fill_table(segment, table, state);
    shift_and(table, state, len, window)
}

/// Sets bit `i % 64` of word `i / 64` in the row of each byte token `i`
/// of `segment` accepts; `table` holds 256 rows of as many words as
/// `state`, all zeroed, and `state` is left zeroed.
fn fill_table(segment: &[u8], table: &mut [u64], state: &mut [u64]) {
    tally(table.len());
    let words = state.len();

    // `?` and classes of more than half the bytes (`[^x]`) go into every
    // row at once, gathered first in `state`; a wide class then leaves the
    // rows of the bytes it lacks. So no token costs more than 128 row
    // updates.
    for (index, token) in Tokens::new(segment).enumerate() {
        if token.byte_set().len() > 128 {
            state[index / WORD_BITS] |= 1 << (index % WORD_BITS);
        }
    }
    if state.iter().any(|&wide| wide != 0) {
        for row in table.chunks_exact_mut(words) {
            for (cell, &wide) in row.iter_mut().zip(state.iter()) {
                *cell |= wide;
            }
        }
        state.fill(0);
    }

    for (index, token) in Tokens::new(segment).enumerate() {
        let (word, bit) = (index / WORD_BITS, index % WORD_BITS);
        let cell = |byte: u8| usize::from(byte) * words + word;
        match token {
            Token::Byte(byte) => table[cell(byte)] |= 1 << bit,
            Token::Any => {}
            _ => {
                let set = token.byte_set();
                if set.len() > 128 {
                    let mut lacking = set;
                    lacking.invert();
                    tally(lacking.len());
                    lacking.for_each(|byte| table[cell(byte)] &= !(1 << bit));
                } else {
                    tally(set.len());
                    set.for_each(|byte| table[cell(byte)] |= 1 << bit);
                }
            }
        }
    }
}

/// The Shift-And pass: where the first place a segment of `len` tokens
/// fits in `window` starts, given the segment's `table` (see
/// [`Glob::fill_table`]) and a zeroed `state` of as many words as a row.
///
/// After each byte, bit `i` of the state says whether the segment's first
/// `i + 1` tokens match the bytes just read: shifting the state up one bit
/// and setting bit 0 extends every such prefix, including the empty one, by
/// this byte, and the byte's row keeps the extensions whose next token
/// accepts it.
fn shift_and(table: &[u64], state: &mut [u64], len: usize, window: &[u8]) -> Option<usize> {
    let words = state.len();
    let last = words - 1;
    let full = 1 << ((len - 1) % WORD_BITS);
    for (at, &byte) in window.iter().enumerate() {
        let row = &table[usize::from(byte) * words..][..words];
        let mut carry = 1;
        for (word, &accepted) in state.iter_mut().zip(row) {
            let shifted = (*word << 1) | carry;
            carry = *word >> (WORD_BITS - 1);
            *word = shifted & accepted;
        }
        if state[last] & full != 0 {
            tally((at + 1) * words);
            return Some(at + 1 - len);
        }
    }
    tally(window.len() * words);
    None
}

#[cfg(test)]
thread_local! {
    /// Steps matching has taken on this thread: tokens compared, table
    /// cells set up, state words updated.
    static STEPS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Counts `steps` towards [`STEPS`] in tests; nothing otherwise.
#[inline]
fn tally(steps: usize) {
    #[cfg(test)]
    STEPS.with(|count| count.set(count.get() + steps));
    #[cfg(not(test))]
    let _ = steps;
}

#[cfg(test)]
#[path = "glob_reference.rs"]
mod glob_reference;

#[cfg(test)]
#[path = "glob_tests.rs"]
mod tests;
