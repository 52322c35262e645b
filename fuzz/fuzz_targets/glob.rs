//! Compares `glob_match` with a memoized recursive matcher written straight
//! from the rules, on patterns of up to 127 bytes and subjects of up to 512:
//! long enough for the matcher's bit-parallel search, which it uses only
//! when a window is too long to try each place directly, and for segments
//! of more than one word (64 tokens).
//!
//! Input layout: byte 0 picks whether bytes are mapped onto a small alphabet
//! of glob metacharacters (bit 0) and the pattern length (the rest); the
//! following bytes are the pattern, then the subject.

#![no_main]

use corelane::serve::glob::glob_match;
use libfuzzer_sys::fuzz_target;

const MAX_PATTERN: usize = 127;
const MAX_SUBJECT: usize = 512;

#[path = "../../src/serve/glob_reference.rs"]
mod glob_reference;

use glob_reference::reference_match;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let alphabet = b"ab*?[]^-\\";
    let bytes: Vec<u8> = if mode & 1 == 1 {
        rest.iter()
            .map(|&b| alphabet[usize::from(b) % alphabet.len()])
            .collect()
    } else {
        rest.to_vec()
    };
    let pattern_len = (usize::from(mode >> 1) % (MAX_PATTERN + 1)).min(bytes.len());
    let (pattern, subject) = bytes.split_at(pattern_len);
    let subject = &subject[..subject.len().min(MAX_SUBJECT)];

    let expected = reference_match(pattern, subject);
    assert_eq!(glob_match(pattern, subject), expected);
});
