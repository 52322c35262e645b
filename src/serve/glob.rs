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
//! *segments*. Because every token matches exactly one byte, a pattern
//! without a star matches token for token, and one with stars matches when
//! its first segment matches at the start of the subject, its last segment
//! at the end, and each segment between, left to right, somewhere after the
//! one before. Taking each middle segment at its leftmost place is never
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
//! and for each middle segment the subject reaches, its table (256 words
//! per 64 tokens, plus at most 128 updates per class). A middle segment of
//! one token, or whose window is too short to repay a table, is tried at
//! each place directly, at no more than a few tables' cost. No input makes
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
/// # Examples
///
/// ```
/// use corelane::serve::glob::Glob;
///
/// let glob = Glob::new(b"news.*.[a-m]*");
/// assert!(glob.matches(b"news.sport.football"));
/// assert!(!glob.matches(b"news.sport.rugby"));
/// ```
#[derive(Clone, Debug)]
pub struct Glob {
    /// Every token of the pattern, stars left out.
    tokens: Box<[Token]>,
    /// The byte sets of the pattern's classes, in order.
    classes: Box<[ByteSet]>,
    /// Where each run of stars stands: the offset in `tokens` of the token
    /// after it. A run of stars counts once, so consecutive entries differ
    /// and every middle segment holds at least one token.
    stars: Box<[usize]>,
}

/// One token: the bytes it matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Token {
    /// This byte only.
    Byte(u8),
    /// Any byte (`?`).
    Any,
    /// The bytes of `classes[index]`.
    Class(usize),
}

/// A set of byte values, one bit each.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct ByteSet([u64; 4]);

impl ByteSet {
    fn contains(&self, byte: u8) -> bool {
        (self.0[usize::from(byte >> 6)] >> (byte & 63)) & 1 == 1
    }

    fn insert(&mut self, byte: u8) {
        self.0[usize::from(byte >> 6)] |= 1 << (byte & 63);
    }

    /// Adds every byte from `low` to `high`, both included.
    fn insert_range(&mut self, low: u8, high: u8) {
        for (index, word) in self.0.iter_mut().enumerate() {
            // The part of the range that falls in this word's 64 values.
            let first = usize::from(low).max(index * 64);
            let last = usize::from(high).min(index * 64 + 63);
            if first <= last {
                let width = last - first + 1;
                let bits = if width == 64 { !0 } else { (1 << width) - 1 };
                *word |= bits << (first - index * 64);
            }
        }
    }

    fn len(&self) -> usize {
        self.0.iter().map(|word| word.count_ones() as usize).sum()
    }

    fn invert(&mut self) {
        for word in &mut self.0 {
            *word = !*word;
        }
    }

    /// Calls `visit` with each byte in the set, in order.
    fn for_each(&self, mut visit: impl FnMut(u8)) {
        for (index, &word) in self.0.iter().enumerate() {
            let mut bits = word;
            while bits != 0 {
                // Below 256: `index` < 4 and `trailing_zeros` < 64.
                visit((index * 64) as u8 + bits.trailing_zeros() as u8);
                bits &= bits - 1;
            }
        }
    }
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
    /// A parsed pattern holds a token (16 bytes) for each `?` and a class
    /// (32 bytes more) for each `[]`, so an unbounded pattern costs up to
    /// 32 times its length: a caller that matches a few known names (CONFIG
    /// GET) stops parsing past the longest of them, so what it holds is
    /// bounded by those names, not by the pattern it was sent.
    pub fn within(pattern: &[u8], longest: usize) -> Option<Glob> {
        let mut tokens = Vec::new();
        let mut classes = Vec::new();
        let mut stars = Vec::new();
        let mut at = 0;
        while at < pattern.len() {
            let (token, next) = match &pattern[at..] {
                [b'*', ..] => {
                    if stars.last() != Some(&tokens.len()) {
                        stars.push(tokens.len());
                    }
                    at += 1;
                    continue;
                }
                [b'?', ..] => (Token::Any, at + 1),
                [b'[', ..] => {
                    let (set, next) = parse_class(pattern, at + 1);
                    classes.push(set);
                    (Token::Class(classes.len() - 1), next)
                }
                [b'\\', escaped, ..] => (Token::Byte(*escaped), at + 2),
                [literal, ..] => (Token::Byte(*literal), at + 1),
                [] => unreachable!("at < pattern.len()"),
            };
            if tokens.len() == longest {
                return None;
            }
            tokens.push(token);
            at = next;
        }
        Some(Glob {
            tokens: tokens.into(),
            classes: classes.into(),
            stars: stars.into(),
        })
    }

    /// Whether `subject` matches. Allocates nothing (see the module doc for
    /// the one exception); the module doc gives the cost.
    pub fn matches(&self, subject: &[u8]) -> bool {
        // Every token takes a byte of its own.
        if self.tokens.len() > subject.len() {
            return false;
        }
        let (Some(&first_star), Some(&last_star)) = (self.stars.first(), self.stars.last()) else {
            return self.fits(&self.tokens, subject);
        };

        // The first and last segments are pinned to the ends of the subject.
        let head = &self.tokens[..first_star];
        let tail = &self.tokens[last_star..];
        let end = subject.len() - tail.len();
        if !self.fits(head, &subject[..head.len()]) || !self.fits(tail, &subject[end..]) {
            return false;
        }

        // Each middle segment at its leftmost place after the one before.
        let mut from = head.len();
        for bounds in self.stars.windows(2) {
            let segment = &self.tokens[bounds[0]..bounds[1]];
            match self.find(segment, &subject[from..end]) {
                Some(start) => from += start + segment.len(),
                None => return false,
            }
        }
        true
    }

    fn accepts(&self, token: Token, byte: u8) -> bool {
        match token {
            Token::Byte(expected) => byte == expected,
            Token::Any => true,
            Token::Class(index) => self.classes[index].contains(byte),
        }
    }

    /// Whether `segment` matches `bytes` token for token.
    fn fits(&self, segment: &[Token], bytes: &[u8]) -> bool {
        tally(segment.len());
        segment.len() == bytes.len()
            && segment
                .iter()
                .zip(bytes)
                .all(|(&token, &byte)| self.accepts(token, byte))
    }

    /// The offset in `window` of the leftmost place `segment` fits.
    fn find(&self, segment: &[Token], window: &[u8]) -> Option<usize> {
        let len = segment.len();
        let starts = window.len().checked_sub(len)? + 1;
        let words = len.div_ceil(WORD_BITS);

        // Trying each place costs up to `len` steps a place, but most places
        // fail at their first token; the search always pays for its table
        // first. A single token, or a window short enough that trying every
        // place costs at most a few tables, goes direct.
        if len == 1 || starts.saturating_mul(len) <= DIRECT_STEPS * words {
            return (0..starts).find(|&start| self.fits(segment, &window[start..start + len]));
        }

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
        self.fill_table(segment, table, words);
        shift_and(table, state, len, window)
    }

    /// Sets bit `i % 64` of word `i / 64` in the row of each byte token `i`
    /// of `segment` accepts; `table` holds 256 rows of `words` words, zeroed.
    fn fill_table(&self, segment: &[Token], table: &mut [u64], words: usize) {
        tally(table.len());
        for (word, chunk) in segment.chunks(WORD_BITS).enumerate() {
            // `?` and classes of more than half the bytes (`[^x]`) go into
            // every row at once; a wide class then leaves the rows of the
            // bytes it lacks. So no token costs more than 128 row updates.
            let wide = chunk
                .iter()
                .enumerate()
                .filter(|&(_, &token)| self.is_wide(token))
                .fold(0, |bits, (bit, _)| bits | 1 << bit);
            if wide != 0 {
                for row in table.chunks_exact_mut(words) {
                    row[word] |= wide;
                }
            }

            for (bit, &token) in chunk.iter().enumerate() {
                let cell = |byte: u8| usize::from(byte) * words + word;
                match token {
                    Token::Byte(byte) => table[cell(byte)] |= 1 << bit,
                    Token::Any => {}
                    Token::Class(index) if self.is_wide(token) => {
                        let mut lacking = self.classes[index];
                        lacking.invert();
                        tally(lacking.len());
                        lacking.for_each(|byte| table[cell(byte)] &= !(1 << bit));
                    }
                    Token::Class(index) => {
                        tally(self.classes[index].len());
                        self.classes[index].for_each(|byte| table[cell(byte)] |= 1 << bit);
                    }
                }
            }
        }
    }

    /// Whether `token` accepts more than half the byte values.
    fn is_wide(&self, token: Token) -> bool {
        match token {
            Token::Byte(_) => false,
            Token::Any => true,
            Token::Class(index) => self.classes[index].len() > 128,
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

/// The class whose body starts at `at` (after the `[`), and the offset
/// after the class.
fn parse_class(pattern: &[u8], mut at: usize) -> (ByteSet, usize) {
    let negated = pattern.get(at) == Some(&b'^');
    if negated {
        at += 1;
    }

    let mut set = ByteSet::default();
    let end = loop {
        match &pattern[at..] {
            [] => break at,
            [b'\\', escaped, ..] => {
                set.insert(*escaped);
                at += 2;
            }
            [b']', ..] => break at + 1,
            [low, b'-', high, ..] => {
                set.insert_range(*low.min(high), *low.max(high));
                at += 3;
            }
            [member, ..] => {
                set.insert(*member);
                at += 1;
            }
        }
    };
    if negated {
        set.invert();
    }
    (set, end)
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
