//! Tests of the glob matcher: the rules one by one, agreement with the
//! reference matcher on random short and long inputs, and step counts on
//! hostile patterns.

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

#[test]
fn runs_of_stars_count_once() {
    let glob = Glob::new(b"**a***b*");
    assert_eq!(&glob.code[..], b"*a*b*");
    assert_eq!(glob.tokens, 2);
    assert_eq!(glob.middle_lengths(), [1, 1]);
    // Escaped and bracketed stars are tokens, not stars.
    let glob = Glob::new(b"\\*[*]");
    assert_eq!(glob.tokens, 2);
    assert!(glob.stars.is_none());
    assert!(glob.matches(b"**"));
    assert!(!glob.matches(b"*"));
    // Nor do stars after an escaped star or a class ending in a `*` byte
    // join a run with them.
    let glob = Glob::new(b"\\***[*]**");
    assert_eq!(glob.tokens, 2);
    assert_eq!(glob.middle_lengths(), [1]);
    assert!(glob.matches(b"*x*y"));
    assert!(!glob.matches(b"x*y"));
}

#[test]
fn byte_set_ranges_cover_exactly_their_bytes() {
    for low in 0..=255u8 {
        for high in low..=255u8 {
            let mut set = ByteSet::default();
            set.insert_range(low, high);
            for byte in 0..=255u8 {
                assert_eq!(
                    set.contains(byte),
                    (low..=high).contains(&byte),
                    "{low}..={high} and {byte}"
                );
            }
        }
    }
}

#[test]
fn byte_set_lists_its_members_in_order() {
    let mut set = ByteSet::default();
    set.insert_range(60, 70);
    set.insert(0);
    set.insert(255);
    let mut members = Vec::new();
    set.for_each(|byte| members.push(byte));
    let expected: Vec<u8> = [0].into_iter().chain(60..=70).chain([255]).collect();
    assert_eq!(members, expected);
}

/// A pattern that `subject` matches or nearly does: each byte becomes a
/// literal, a `?` or a class, and stars swallow runs; with `slips` a few
/// tokens are made to miss. One star in `star_odds` places keeps some
/// segments long, past one word of search state.
fn pattern_for(dice: &mut Dice, subject: &[u8], star_odds: usize, slips: bool) -> Vec<u8> {
    let mut pattern = Vec::new();
    let mut at = 0;
    while at <= subject.len() {
        if dice.roll(star_odds) == 0 {
            pattern.push(b'*');
            at += dice.roll(12);
            continue;
        }
        let Some(&byte) = subject.get(at) else {
            break;
        };
        let shown = if slips && dice.roll(60) == 0 {
            byte ^ 1
        } else {
            byte
        };
        match dice.roll(10) {
            0 => pattern.push(b'?'),
            // A negated class leaving out a byte subjects do hold.
            1 => {
                let left_out = if shown == b'a' { b'b' } else { b'a' };
                pattern.extend_from_slice(&[b'[', b'^', left_out, b']']);
            }
            2 => pattern.extend_from_slice(&[b'[', shown.saturating_sub(1), b'-', shown, b']']),
            _ if b"*?[\\".contains(&shown) => pattern.extend_from_slice(&[b'\\', shown]),
            _ => pattern.push(shown),
        }
        at += 1;
    }
    pattern
}

#[test]
fn agrees_with_reference_on_long_segments() {
    let mut dice = Dice(0x2545_f491_4f6c_dd1d);
    let (mut matches, mut wide, mut wide_matches) = (0, 0, 0);
    for round in 0..3_000 {
        let alphabet: &[u8] = if round % 3 == 0 {
            b"ab*?\\[]\xff"
        } else {
            b"aab"
        };
        let subject = dice.word(alphabet, 400);
        let star_odds = [3, 15, 60, 200][round % 4];
        let pattern = pattern_for(&mut dice, &subject, star_odds, round % 2 == 1);
        // Against an unrelated subject too, where most patterns miss.
        let other = dice.word(alphabet, 400);
        for subject in [&subject, &other] {
            let expected = reference(&pattern, subject);
            assert_eq!(
                glob_match(&pattern, subject),
                expected,
                "pattern {:?} subject {:?}",
                pattern.escape_ascii().to_string(),
                subject.escape_ascii().to_string(),
            );
            matches += usize::from(expected);

            // A middle segment over one word long makes a multi-word search.
            let glob = Glob::new(&pattern);
            if glob.middle_lengths().iter().any(|&len| len > WORD_BITS) {
                wide += 1;
                wide_matches += usize::from(expected);
            }
        }
    }
    // Both outcomes, and enough multi-word searches of each.
    assert!(matches > 1_000 && matches < 5_000, "{matches} matches");
    assert!(
        wide > 300 && wide_matches > 100,
        "{wide} wide, {wide_matches} matched"
    );
}

#[test]
fn middle_segments_take_their_leftmost_place() {
    // The segment "ab" occurs at 1 and 4; only the leftmost leaves room.
    assert!(glob_match(b"*ab*ba", b"xabbaba"));
    assert!(glob_match(b"*a?a*b", b"aaaab"));
    // A 100-token segment found by the multi-word search, and missed by
    // one byte.
    let segment = [&b"a".repeat(70)[..], b"b", &b"a".repeat(29)].concat();
    let subject = [&b"a".repeat(300)[..], &segment, &b"a".repeat(300)].concat();
    let pattern = [&b"*"[..], &segment, b"*"].concat();
    assert!(glob_match(&pattern, &subject));
    assert!(!glob_match(&pattern, &subject[..370]));
    let glob = Glob::new(&pattern);
    let segment = &glob.code[1..glob.code.len() - 1];
    assert_eq!(find(segment, glob.tokens, &subject, glob.plain), Some(300));

    // Wide classes in a two-word segment: 70 bytes other than `b` in a
    // row, found only after the runs of 69.
    let pattern = [&b"*"[..], &b"[^b]".repeat(70), b"*"].concat();
    let runs = [&b"a".repeat(69)[..], b"b"].concat().repeat(5);
    assert!(!glob_match(&pattern, &runs));
    assert!(glob_match(
        &pattern,
        &[&runs[..], &b"a".repeat(70)].concat()
    ));
}

#[test]
fn segments_past_the_stack_table_still_match() {
    // 1,100 tokens: more words of state than the stack table holds.
    let segment = [&b"a".repeat(1099)[..], b"?"].concat();
    let pattern = [&b"b*"[..], &segment, b"*b"].concat();
    assert!(Glob::new(&pattern).tokens > STACK_WORDS * WORD_BITS);
    let subject = |run: usize| [&b"b"[..], &b"a".repeat(run), b"cb"].concat();
    assert!(glob_match(&pattern, &subject(1099)));
    assert!(glob_match(&pattern, &subject(3000)));
    assert!(!glob_match(&pattern, &subject(1098)));
    let split = [
        &b"b"[..],
        &b"a".repeat(1000),
        b"c",
        &b"a".repeat(1000),
        b"cb",
    ]
    .concat();
    assert!(!glob_match(&pattern, &split));
}

/// Matches the pattern made of `parts` against `subject`, and checks the
/// outcome and that it took at most `most` steps.
fn assert_cheap(parts: &[&[u8]], subject: &[u8], expected: bool, most: usize) {
    let pattern = parts.concat();
    let glob = Glob::new(&pattern);
    let before = STEPS.with(|steps| steps.get());
    let matched = glob.matches(subject);
    let steps = STEPS.with(|steps| steps.get()) - before;

    let shown = String::from_utf8_lossy(&pattern[..pattern.len().min(40)]);
    assert_eq!(matched, expected, "{shown}");
    assert!(steps <= most, "{shown}: {steps} steps, at most {most}");
}

#[test]
fn hostile_patterns_cost_linear_steps() {
    // The old matcher took about pattern × subject steps on these: a
    // billion for the first ones.
    let mb = &vec![b'a'; 1 << 20][..];
    let mb_b = &[mb, b"b"].concat()[..];
    let abab = &b"ab".repeat(1 << 19)[..];
    let a1000 = &b"a".repeat(1000)[..];

    // The breaker's pattern: its last segment is pinned to the end.
    assert_cheap(&[b"*", a1000, b"b"], mb, false, 2_000);
    // The same as a middle segment: 16 words of state a byte.
    assert_cheap(&[b"*", a1000, b"b*"], mb, false, 17 << 20);
    assert_cheap(&[b"*", a1000, b"b*"], mb_b, true, 17 << 20);
    // Many one-token segments, the last never found.
    assert_cheap(&[&b"*a".repeat(500), b"*b*"], mb, false, 2 << 20);
    // Many two-token segments, each found at once: a table each.
    assert_cheap(&[&b"*ab".repeat(300), b"*c*"], abab, false, 2 << 20);
    // `?`-heavy and class-heavy segments.
    assert_cheap(&[b"*?", &b"?".repeat(60), b"b*"], mb, false, 2 << 20);
    assert_cheap(&[b"*?", &b"?".repeat(60), b"b*"], mb_b, true, 2 << 20);
    assert_cheap(&[b"*", &b"[a-c]".repeat(200), b"x*"], mb, false, 5 << 20);
    assert_cheap(&[b"*", &b"[^b]".repeat(250), b"*"], mb, true, 5_000);
    assert_cheap(&[&b"*?".repeat(300), b"*c"], mb, false, 2_000);
    assert_cheap(&[&b"*?".repeat(300), b"*a"], mb, true, 5_000);
    assert_cheap(&[&b"?*".repeat(300), b"c*"], mb, false, 2 << 20);
}

/// A pattern parsed for subjects of at most `longest` bytes is the same
/// glob when it fits them, and none when it has more tokens (stars take
/// no byte, however many).
#[test]
fn within_refuses_only_patterns_longer_than_any_subject() {
    let glob = Glob::within(b"a?[bc]", 3).expect("three tokens fit in three bytes");
    assert!(glob.matches(b"axc"));
    assert!(!glob.matches(b"axd"));
    assert!(Glob::within(b"a?[bc]d", 3).is_none());
    assert!(Glob::within(&b"[]".repeat(1000), 26).is_none());
    let stars = Glob::within(&b"*".repeat(1000), 0).expect("stars take no byte");
    assert!(stars.matches(b""));
    assert!(stars.matches(b"anything"));
    assert!(Glob::within(b"*x*", 0).is_none());
}

/// What a parsed pattern holds grows with the pattern's bytes, at most
/// twice them, whatever it is made of: a server keeps every pattern a
/// client subscribes to. A token each of 16 bytes and a 32-byte set each
/// class held 1,024 bytes of `[]` in 25 KiB.
#[test]
fn parsed_patterns_hold_at_most_twice_their_bytes() {
    let distinct: Vec<u8> = (0..=255u8).flat_map(|byte| [b'[', byte, b']']).collect();
    let mut dice = Dice(0x5851_f42d_4c95_7f2d);
    let random: Vec<u8> = (0..1024).map(|_| dice.roll(256) as u8).collect();
    let hostile: Vec<Vec<u8>> = vec![
        b"[]".repeat(512),
        b"[^]".repeat(341),
        distinct,
        b"?".repeat(1024),
        b"\\*".repeat(512),
        b"[a-z]".repeat(204),
        b"[abcdefghijklmnop]".repeat(56),
        b"[abcdefghijklmnopq]".repeat(53),
        [&b"["[..], &b"x".repeat(1023)].concat(),
        [&b"[a"[..], &b"]".repeat(1022)].concat(),
        b"*?".repeat(512),
        b"*".repeat(1024),
        random,
        dice.word(b"ab*?[]^-\\", 1024),
    ];
    for pattern in &hostile {
        let glob = Glob::new(pattern);
        let shown = String::from_utf8_lossy(&pattern[..pattern.len().min(40)]);
        assert!(
            glob.heap_bytes() <= 2 * pattern.len(),
            "{shown}: {} bytes held for {}",
            glob.heap_bytes(),
            pattern.len()
        );
        // What it holds is what it matches by: the same as the reference.
        let subject: Vec<u8> = pattern.iter().rev().copied().take(300).collect();
        assert_eq!(
            glob.matches(&subject),
            reference(pattern, &subject),
            "{shown}"
        );
    }
    // Long enough classes keep their set: 34 bytes however long the class.
    let long_class = [&b"["[..], &b"abc".repeat(10_000), b"]"].concat();
    assert_eq!(Glob::new(&long_class).heap_bytes(), 34);
}

/// A class of more than 16 ranges keeps its set instead of its list;
/// both forms, plain and negated, accept exactly the bytes the rules say.
#[test]
fn classes_kept_as_sets_or_lists_accept_the_same_bytes() {
    let mut dice = Dice(0x1405_7b7e_f767_814f);
    for round in 0..400 {
        // Up to 40 members and ranges, escapes among them.
        let mut pattern = vec![b'['];
        if round % 2 == 1 {
            pattern.push(b'^');
        }
        for _ in 0..dice.roll(41) {
            match dice.roll(3) {
                0 => pattern.extend_from_slice(&[dice.roll(256) as u8, b'-', dice.roll(256) as u8]),
                1 => pattern.extend_from_slice(&[b'\\', dice.roll(256) as u8]),
                _ => pattern.push(b'a' + dice.roll(26) as u8),
            }
        }
        pattern.extend_from_slice(b"]x");
        let glob = Glob::new(&pattern);
        for byte in 0..=255u8 {
            let subject = [byte, b'x'];
            assert_eq!(
                glob.matches(&subject),
                reference(&pattern, &subject),
                "pattern {:?} byte {byte}",
                pattern.escape_ascii().to_string()
            );
        }
    }
}

#[test]
fn plain_patterns_are_read_as_bytes_with_the_same_outcome() {
    // No class and no escape: each code byte is a token or a star.
    for pattern in [
        &b"news.*"[..],
        b"h?llo",
        b"*",
        b"",
        b"*a*b?*c",
        b"user:*:events",
    ] {
        assert!(Glob::new(pattern).plain, "{pattern:?}");
    }
    for pattern in [&b"h[ae]llo"[..], b"a\\*b", b"x*[^y]", b"\\", b"[]"] {
        assert!(!Glob::new(pattern).plain, "{pattern:?}");
    }

    // Reading plain code as bytes and decoding it find the same places,
    // whether the window is tried place by place or searched with a table.
    let mut dice = Dice(0x5eed_91ab);
    for _ in 0..2_000 {
        let segment = dice.word(b"ab?", 6);
        if segment.is_empty() {
            continue;
        }
        let long = dice.roll(2) == 0;
        let window = dice.word(b"abc", if long { 3_000 } else { 20 });
        let plain = find(&segment, segment.len(), &window, true);
        let decoded = find(&segment, segment.len(), &window, false);
        assert_eq!(plain, decoded, "{segment:?} in {window:?}");
        if let Some(bytes) = window.get(..segment.len()) {
            assert_eq!(plain_fits(&segment, bytes), fits(&segment, bytes));
        }
    }
    assert!(glob_match(b"*?b?*", b"xxabaxx"));
    assert!(!glob_match(b"*?b?*", b"xxab"));
}

#[test]
fn a_token_accepts_in_place_the_bytes_of_its_set() {
    let many_ranges: Vec<u8> = [
        &b"["[..],
        &(b'0'..=b'Z').step_by(2).collect::<Vec<_>>(),
        b"]",
    ]
    .concat();
    let negated_many = [&b"[^"[..], &many_ranges[1..]].concat();
    let patterns: [&[u8]; 9] = [
        b"x",
        b"?",
        b"\\*",
        b"[]",
        b"[a-c]",
        b"[^a-c0-9]",
        b"[z-a]",
        &many_ranges,
        &negated_many,
    ];
    for pattern in patterns {
        let glob = Glob::new(pattern);
        let (token, len) = decode(&glob.code).expect("one token");
        assert_eq!(len, glob.code.len(), "{pattern:?}");
        let set = token.byte_set();
        for byte in 0..=u8::MAX {
            let expected = set.contains(byte).then_some(len);
            assert_eq!(accept(&glob.code, byte), expected, "{pattern:?} {byte}");
        }
    }
    // The set form is taken, so both forms are tested.
    assert_eq!(
        decode(&Glob::new(&many_ranges).code).map(|(t, _)| matches!(t, Token::Set(_))),
        Some(true)
    );
}
