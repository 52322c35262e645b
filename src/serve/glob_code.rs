//! The compact form a [`Glob`](super::Glob) keeps of its pattern: its
//! *code*, a byte string read token by token at match time.
//!
//! A server holds a parsed pattern for as long as a client stays
//! subscribed to it, and a client may hold any number of patterns, so the
//! code is never more than twice the pattern's length: one byte per star
//! run, `?` and plain byte, two per escaped byte, and for a class a header
//! and its ranges, or its 256-bit set where that is shorter. Every token
//! still decodes in a few steps and tests a byte in at most
//! [`LIST_RANGES`] comparisons.
//!
//! Layout, one entry per token or star run:
//!
//! ```text
//! *                     a run of stars
//! ?                     any byte
//! \ x                   the byte x, for x one of * ? [ \
//! [ H l0 h0 l1 h1 ...   a class of n = H >> 2 ranges lo..=hi (n <= 16);
//!                       bit 0 of H: negated
//! [ 0b10 s0 ... s31     a class as its 256-bit set, negation applied:
//!                       bit (b % 8) of s(b / 8) says whether b is in it
//! x                     any other byte: itself
//! ```

/// Most ranges a class keeps as a list; one with more keeps its set,
/// which takes no more room than this many ranges.
pub(super) const LIST_RANGES: usize = 16;

/// Bytes of a class kept as its set.
const SET_BYTES: usize = 32;

/// Header bit: the class is negated (list form only).
const NEGATED: u8 = 1;

/// Header bit: the class is kept as its set.
const SET_FORM: u8 = 2;

/// One token, as decoded from the code: the bytes it matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Token<'c> {
    /// This byte only.
    Byte(u8),
    /// Any byte (`?`).
    Any,
    /// A class of at most [`LIST_RANGES`] ranges, as `low, high` pairs.
    Ranges { negated: bool, pairs: &'c [u8] },
    /// A class as its set: bit `b % 8` of byte `b / 8`.
    Set(&'c [u8]),
}

impl Token<'_> {
    /// Every byte this token matches.
    #[inline]
    pub(super) fn byte_set(self) -> ByteSet {
        let mut set = ByteSet::default();
        match self {
            Token::Byte(byte) => set.insert(byte),
            Token::Any => set.invert(),
            Token::Ranges { negated, pairs } => {
                for pair in pairs.chunks_exact(2) {
                    set.insert_range(pair[0], pair[1]);
                }
                if negated {
                    set.invert();
                }
            }
            Token::Set(bits) => {
                for (word, chunk) in set.0.iter_mut().zip(bits.chunks_exact(8)) {
                    let mut le = [0; 8];
                    le.copy_from_slice(chunk);
                    *word = u64::from_le_bytes(le);
                }
            }
        }
        set
    }
}

/// The tokens of one segment of code (a stretch without stars), in order.
#[derive(Clone, Debug)]
pub(super) struct Tokens<'c> {
    code: &'c [u8],
}

impl<'c> Tokens<'c> {
    /// The tokens of `segment`, which must hold whole tokens and no star.
    #[inline]
    pub(super) fn new(segment: &'c [u8]) -> Self {
        Tokens { code: segment }
    }
}

impl<'c> Iterator for Tokens<'c> {
    type Item = Token<'c>;

    #[inline]
    fn next(&mut self) -> Option<Token<'c>> {
        let (token, len) = decode(self.code)?;
        self.code = &self.code[len..];
        Some(token)
    }
}

/// The token `code` starts with and its length in the code; `None` at the
/// end of the code or at a star. `code` must start at a token boundary of
/// code written by [`Writer`].
#[inline]
pub(super) fn decode(code: &[u8]) -> Option<(Token<'_>, usize)> {
    match code {
        [] | [b'*', ..] => None,
        [b'?', ..] => Some((Token::Any, 1)),
        [b'\\', byte, ..] => Some((Token::Byte(*byte), 2)),
        [b'[', header, rest @ ..] if header & SET_FORM != 0 => {
            Some((Token::Set(&rest[..SET_BYTES]), 2 + SET_BYTES))
        }
        [b'[', header, rest @ ..] => {
            let len = 2 * usize::from(header >> 2);
            let negated = header & NEGATED != 0;
            let pairs = &rest[..len];
            Some((Token::Ranges { negated, pairs }, 2 + len))
        }
        [byte, ..] => Some((Token::Byte(*byte), 1)),
    }
}

/// Whether the token `code` starts with accepts `byte`: its length in the
/// code if it does, `None` if it does not. It reads the token in place,
/// as [`decode`] does, for matching that reads each token once:
/// `code` must start with a token (not a star, not the end) of code written
/// by [`Writer`].
#[inline]
pub(super) fn accept(code: &[u8], byte: u8) -> Option<usize> {
    let (accepted, len) = match code[0] {
        b'?' => (true, 1),
        b'\\' => (code[1] == byte, 2),
        b'[' => {
            let header = code[1];
            if header & SET_FORM != 0 {
                let bits = code[2 + usize::from(byte >> 3)];
                ((bits >> (byte & 7)) & 1 == 1, 2 + SET_BYTES)
            } else {
                let len = 2 + 2 * usize::from(header >> 2);
                // Ranges are few (one, mostly): stop at the first that
                // holds the byte rather than test them all.
                let inside = code[2..len]
                    .chunks_exact(2)
                    .any(|pair| byte.wrapping_sub(pair[0]) <= pair[1].wrapping_sub(pair[0]));
                (inside != (header & NEGATED != 0), len)
            }
        }
        other => (other == byte, 1),
    };
    accepted.then_some(len)
}

/// Where the segment starting at `code` ends (at the next star or the end
/// of the code), and how many tokens it holds.
pub(super) fn segment_end(code: &[u8]) -> (usize, usize) {
    let (mut at, mut tokens) = (0, 0);
    while let Some((_, len)) = decode(&code[at..]) {
        at += len;
        tokens += 1;
    }
    (at, tokens)
}

/// Builds the code of a pattern, token by token.
#[derive(Debug, Default)]
pub(super) struct Writer {
    code: Vec<u8>,
    /// The length of the code just after the last star written: a star
    /// there would lengthen a run.
    starred: Option<usize>,
}

impl Writer {
    /// The code written so far.
    pub(super) fn len(&self) -> usize {
        self.code.len()
    }

    /// A star; a run of stars is written once.
    pub(super) fn star(&mut self) {
        if self.starred != Some(self.code.len()) {
            self.code.push(b'*');
            self.starred = Some(self.code.len());
        }
    }

    /// A `?`.
    pub(super) fn any(&mut self) {
        self.code.push(b'?');
    }

    /// A token matching `byte` only.
    pub(super) fn byte(&mut self, byte: u8) {
        if b"*?[\\".contains(&byte) {
            self.code.push(b'\\');
        }
        self.code.push(byte);
    }

    /// The class whose body starts at `pattern[at]` (after its `[`); returns
    /// the offset after the class.
    pub(super) fn class(&mut self, pattern: &[u8], at: usize) -> usize {
        let mut pairs = [0u8; 2 * LIST_RANGES];
        let mut ranges = 0;
        let mut set = ByteSet::default();
        let (negated, end) = parse_class(pattern, at, |low, high| {
            set.insert_range(low, high);
            if ranges < LIST_RANGES {
                pairs[2 * ranges] = low;
                pairs[2 * ranges + 1] = high;
            }
            ranges += 1;
        });

        self.code.push(b'[');
        if ranges <= LIST_RANGES {
            // At most 16, so the count fits the header's top six bits.
            let header = (ranges as u8) << 2 | if negated { NEGATED } else { 0 };
            self.code.push(header);
            self.code.extend_from_slice(&pairs[..2 * ranges]);
        } else {
            if negated {
                set.invert();
            }
            self.code.push(SET_FORM);
            for word in set.0 {
                self.code.extend_from_slice(&word.to_le_bytes());
            }
        }
        end
    }

    /// The finished code, holding no spare capacity.
    pub(super) fn finish(self) -> Box<[u8]> {
        self.code.into_boxed_slice()
    }
}

/// Reads the class whose body starts at `pattern[at]` (after the `[`) by
/// Redis's rules, calling `range` with each range it holds (a single byte
/// is a range of one); returns whether it is negated and the offset after
/// the class.
fn parse_class(pattern: &[u8], mut at: usize, mut range: impl FnMut(u8, u8)) -> (bool, usize) {
    let negated = pattern.get(at) == Some(&b'^');
    if negated {
        at += 1;
    }
    let end = loop {
        match &pattern[at..] {
            [] => break at,
            [b'\\', escaped, ..] => {
                range(*escaped, *escaped);
                at += 2;
            }
            [b']', ..] => break at + 1,
            [low, b'-', high, ..] => {
                range(*low.min(high), *low.max(high));
                at += 3;
            }
            [member, ..] => {
                range(*member, *member);
                at += 1;
            }
        }
    };
    (negated, end)
}

/// A set of byte values, one bit each.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct ByteSet(pub(super) [u64; 4]);

impl ByteSet {
    pub(super) fn contains(&self, byte: u8) -> bool {
        (self.0[usize::from(byte >> 6)] >> (byte & 63)) & 1 == 1
    }

    pub(super) fn insert(&mut self, byte: u8) {
        self.0[usize::from(byte >> 6)] |= 1 << (byte & 63);
    }

    /// Adds every byte from `low` to `high`, both included.
    pub(super) fn insert_range(&mut self, low: u8, high: u8) {
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

    pub(super) fn len(&self) -> usize {
        self.0.iter().map(|word| word.count_ones() as usize).sum()
    }

    pub(super) fn invert(&mut self) {
        for word in &mut self.0 {
            *word = !*word;
        }
    }

    /// Calls `visit` with each byte in the set, in order.
    pub(super) fn for_each(&self, mut visit: impl FnMut(u8)) {
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
