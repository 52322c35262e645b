//! A glob matcher written straight from the rules, for checking
//! `glob_match` against: the unit tests and the `glob` fuzz target both
//! include this file. Memoised, so hostile patterns stay cheap; meant for
//! short inputs.

/// Whether `pattern` matches `subject` by the rules `glob_match` follows.
pub fn reference_match(pattern: &[u8], subject: &[u8]) -> bool {
    Reference::new(pattern, subject).matches(0, 0)
}

/// Matching `pattern[at..]` against `subject[byte..]`, with each answer
/// remembered so hostile patterns stay cheap.
struct Reference<'a> {
    pattern: &'a [u8],
    subject: &'a [u8],
    memo: Vec<Option<bool>>,
}

impl<'a> Reference<'a> {
    fn new(pattern: &'a [u8], subject: &'a [u8]) -> Self {
        let memo = vec![None; (pattern.len() + 1) * (subject.len() + 1)];
        Reference {
            pattern,
            subject,
            memo,
        }
    }

    fn matches(&mut self, at: usize, byte: usize) -> bool {
        let slot = at * (self.subject.len() + 1) + byte;
        if let Some(known) = self.memo[slot] {
            return known;
        }
        let answer = self.compute(at, byte);
        self.memo[slot] = Some(answer);
        answer
    }

    fn compute(&mut self, at: usize, byte: usize) -> bool {
        let Some(&token) = self.pattern.get(at) else {
            return byte == self.subject.len();
        };
        if token == b'*' {
            return self.matches(at + 1, byte)
                || (byte < self.subject.len() && self.matches(at, byte + 1));
        }
        let Some(&c) = self.subject.get(byte) else {
            return false;
        };
        let rest = &self.pattern[at + 1..];
        let (hit, len) = match token {
            b'?' => (true, 1),
            b'\\' if !rest.is_empty() => (rest[0] == c, 2),
            b'[' => class(rest, c),
            _ => (token == c, 1),
        };
        hit && self.matches(at + len, byte + 1)
    }
}

/// Matches a class body (after `[`) against `c`; returns the result and the
/// class length counting its `[`.
fn class(body: &[u8], c: u8) -> (bool, usize) {
    let (negated, mut rest) = match body {
        [b'^', rest @ ..] => (true, rest),
        _ => (false, body),
    };
    let mut hit = false;
    loop {
        rest = match rest {
            [] => break,
            [b'\\', x, tail @ ..] => {
                hit |= *x == c;
                tail
            }
            [b']', tail @ ..] => {
                rest = tail;
                break;
            }
            [a, b'-', b, tail @ ..] => {
                hit |= (*a.min(b)..=*a.max(b)).contains(&c);
                tail
            }
            [x, tail @ ..] => {
                hit |= *x == c;
                tail
            }
        };
    }
    (hit != negated, 1 + body.len() - rest.len())
}
