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
//! Because every token matches exactly one byte, a failed match only ever
//! needs to retry from the most recent star, with that star taking one byte
//! more. The match is iterative and takes at most O(pattern × subject) steps,
//! however many stars a hostile pattern holds.

/// Whether `subject` matches the glob `pattern`.
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
    let mut at = 0;
    let mut byte = 0;
    // The most recent star: where the pattern resumes after it, and the
    // subject offset up to which the star has swallowed bytes.
    let mut last_star: Option<(usize, usize)> = None;

    while byte < subject.len() {
        if pattern.get(at) == Some(&b'*') {
            at += 1;
            last_star = Some((at, byte));
            continue;
        }
        if let Some(next) = token_matches(pattern, at, subject[byte]) {
            at = next;
            byte += 1;
            continue;
        }
        match last_star {
            Some((resume, swallowed)) => {
                at = resume;
                byte = swallowed + 1;
                last_star = Some((resume, byte));
            }
            None => return false,
        }
    }

    pattern[at..].iter().all(|&b| b == b'*')
}

/// Whether the token at `at` matches `byte`; returns the offset of the
/// next token if it does. `None` too if the pattern is used up or a star
/// stands at `at`.
fn token_matches(pattern: &[u8], at: usize, byte: u8) -> Option<usize> {
    let (hit, next) = match pattern.get(at..)? {
        [] | [b'*', ..] => return None,
        [b'?', ..] => (true, at + 1),
        [b'[', ..] => class_matches(pattern, at + 1, byte),
        [b'\\', escaped, ..] => (*escaped == byte, at + 2),
        [literal, ..] => (*literal == byte, at + 1),
    };
    hit.then_some(next)
}

/// Whether the class whose body starts at `at` (after the `[`) matches
/// `byte`, and the offset after the class.
fn class_matches(pattern: &[u8], mut at: usize, byte: u8) -> (bool, usize) {
    let negated = pattern.get(at) == Some(&b'^');
    if negated {
        at += 1;
    }

    let mut hit = false;
    loop {
        match &pattern[at..] {
            [] => return (hit != negated, at),
            [b'\\', escaped, ..] => {
                hit |= *escaped == byte;
                at += 2;
            }
            [b']', ..] => return (hit != negated, at + 1),
            [low, b'-', high, ..] => {
                let (low, high) = if low <= high {
                    (low, high)
                } else {
                    (high, low)
                };
                hit |= (*low..=*high).contains(&byte);
                at += 3;
            }
            [member, ..] => {
                hit |= *member == byte;
                at += 1;
            }
        }
    }
}

#[cfg(test)]
#[path = "glob_reference.rs"]
mod glob_reference;

#[cfg(test)]
mod tests {
    use super::*;

    /// The matcher written straight from the rules, shared with the fuzz
    /// target.
    fn reference(pattern: &[u8], subject: &[u8]) -> bool {
        super::glob_reference::reference_match(pattern, subject)
    }

    /// A small deterministic generator (xorshift), enough to spread cases.
    struct Dice(u64);

    impl Dice {
        fn roll(&mut self, sides: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % sides as u64) as usize
        }

        fn word(&mut self, alphabet: &[u8], max_len: usize) -> Vec<u8> {
            let len = self.roll(max_len + 1);
            (0..len)
                .map(|_| alphabet[self.roll(alphabet.len())])
                .collect()
        }
    }

    #[test]
    fn literals_and_wildcards() {
        assert!(glob_match(b"", b""));
        assert!(!glob_match(b"", b"a"));
        assert!(glob_match(b"news", b"news"));
        assert!(!glob_match(b"news", b"newsy"));
        assert!(glob_match(b"n?ws", b"nows"));
        assert!(!glob_match(b"n?ws", b"nws"));
        assert!(glob_match(b"*", b""));
        assert!(glob_match(b"*", b"anything"));
        assert!(glob_match(b"news.*", b"news."));
        assert!(glob_match(b"*.sport", b"news.sport"));
        assert!(glob_match(b"a*b*c", b"aXXbYYc"));
        assert!(!glob_match(b"a*b*c", b"aXXbYY"));
        assert!(glob_match(b"a**b", b"ab"));
        assert!(glob_match(b"a*", b"a"));
        assert!(!glob_match(b"a*b", b"a"));
    }

    #[test]
    fn classes() {
        assert!(glob_match(b"h[ae]llo", b"hello"));
        assert!(!glob_match(b"h[ae]llo", b"hillo"));
        assert!(glob_match(b"h[^e]llo", b"hallo"));
        assert!(!glob_match(b"h[^e]llo", b"hello"));
        assert!(glob_match(b"[a-c]", b"b"));
        assert!(glob_match(b"[c-a]", b"b"));
        assert!(!glob_match(b"[a-c]", b"d"));
        assert!(glob_match(b"[\\]]", b"]"));
        assert!(glob_match(b"[\\-]", b"-"));
        // `[a-]` is a range up to `]`, so this class stays open: it holds
        // `]` to `a` and `x`, and the pattern is one token long.
        assert!(glob_match(b"[a-]x", b"]"));
        assert!(glob_match(b"[a-]x", b"x"));
        assert!(!glob_match(b"[a-]x", b"]x"));
        // `]` right after `[` closes an empty class.
        assert!(!glob_match(b"[]a]", b"]a]"));
        assert!(glob_match(b"[^]a", b"xa"));
        // A class left open runs to the end of the pattern.
        assert!(glob_match(b"x[ab", b"xb"));
        assert!(!glob_match(b"x[ab", b"x["));
        assert!(glob_match(b"[^", b"z"));
        assert!(!glob_match(b"[", b"["));
    }

    #[test]
    fn escapes() {
        assert!(glob_match(b"a\\*b", b"a*b"));
        assert!(!glob_match(b"a\\*b", b"axb"));
        assert!(glob_match(b"\\?", b"?"));
        assert!(!glob_match(b"\\?", b"x"));
        assert!(glob_match(b"\\[x]", b"[x]"));
        assert!(glob_match(b"a\\", b"a\\"));
    }

    #[test]
    fn binary_subjects() {
        assert!(glob_match(b"\x00*\xff", b"\x00\r\n\xff"));
        assert!(glob_match(b"[\x80-\xff]", b"\x90"));
        assert!(!glob_match(b"[\x80-\xff]", b"\x7f"));
    }

    #[test]
    fn many_stars_do_not_explode() {
        let pattern = b"a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b";
        let mut subject = vec![b'a'; 20_000];
        assert!(!glob_match(pattern, &subject));
        subject.push(b'b');
        assert!(glob_match(pattern, &subject));

        let stars = b"*a".repeat(500);
        assert!(glob_match(&stars, &vec![b'a'; 1000]));
        assert!(!glob_match(
            &[&stars[..], b"c"].concat(),
            &vec![b'a'; 10_000]
        ));
        assert!(!glob_match(
            b"*?*?*?*?*?*?*?*?*?*?*?*?*?*?*?*?*?*?*?*?c",
            &vec![b'a'; 10_000]
        ));
    }

    #[test]
    fn agrees_with_reference() {
        let mut dice = Dice(0x9e37_79b9_7f4a_7c15);
        let pattern_alphabet = b"ab*?[]^-\\";
        let subject_alphabet = b"ab-]^\\*";
        let mut matches = 0;
        for _ in 0..200_000 {
            let pattern = dice.word(pattern_alphabet, 8);
            let subject = dice.word(subject_alphabet, 8);
            let expected = reference(&pattern, &subject);
            assert_eq!(
                glob_match(&pattern, &subject),
                expected,
                "pattern {:?} subject {:?}",
                pattern.escape_ascii().to_string(),
                subject.escape_ascii().to_string(),
            );
            matches += usize::from(expected);
        }
        // The generator must exercise both outcomes, not just mismatches.
        assert!(matches > 5_000, "{matches} matches");
    }
}
