//! RESP2 reply encoding.
//!
//! Each function appends one reply, or the header of one, to an output
//! buffer ([`ReplyBuf`]) the caller later writes to the socket: a
//! connection's chain of pooled buffers in the server, or a plain
//! `Vec<u8>`. Nothing here allocates beyond what that buffer does; numbers
//! are formatted on the stack.
//!
//! Simple strings and errors are single lines on the wire, so any `\r` or
//! `\n` in their text is replaced by a space, as Redis does for errors.
//!
//! # Examples
//!
//! A pub/sub message as Redis sends it to a subscriber:
//!
//! ```
//! use corelane::serve::reply;
//!
//! let mut out = Vec::new();
//! reply::array_header(&mut out, 3);
//! reply::bulk(&mut out, b"message");
//! reply::bulk(&mut out, b"news");
//! reply::bulk(&mut out, b"hello");
//! assert_eq!(out, b"*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$5\r\nhello\r\n");
//! ```

/// The most bytes a `u64` takes in decimal.
const MAX_DECIMAL_DIGITS: usize = 20;

/// Where replies are appended.
pub trait ReplyBuf {
    /// Appends `bytes`.
    fn put(&mut self, bytes: &[u8]);
}

impl ReplyBuf for Vec<u8> {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// Appends a simple string: `+text\r\n`, such as `+OK`.
pub fn simple(out: &mut impl ReplyBuf, text: &str) {
    push_line(out, b'+', text.as_bytes());
}

/// Appends an error: `-text\r\n`.
///
/// `text` is the whole message without the `-`, starting with its code,
/// such as `ERR unknown command` or `WRONGTYPE ...`.
pub fn error(out: &mut impl ReplyBuf, text: &str) {
    push_line(out, b'-', text.as_bytes());
}

/// Appends an integer: `:value\r\n`.
pub fn integer(out: &mut impl ReplyBuf, value: i64) {
    // ':' and '-' and 20 digits and CRLF.
    let mut line = [0u8; MAX_DECIMAL_DIGITS + 4];
    let mut len = 0;
    line[len] = b':';
    len += 1;
    if value < 0 {
        line[len] = b'-';
        len += 1;
    }
    len += write_decimal(&mut line[len..], value.unsigned_abs());
    line[len..len + 2].copy_from_slice(b"\r\n");
    out.put(&line[..len + 2]);
}

/// Appends a bulk string: `$len\r\nbytes\r\n`. Any bytes may appear.
pub fn bulk(out: &mut impl ReplyBuf, bytes: &[u8]) {
    push_header(out, b'$', bytes.len());
    out.put(bytes);
    out.put(b"\r\n");
}

/// Appends the null bulk string, `$-1\r\n`: "no such value".
pub fn null_bulk(out: &mut impl ReplyBuf) {
    out.put(b"$-1\r\n");
}

/// Appends the header of an array of `len` elements, `*len\r\n`; the
/// elements follow as replies of their own.
pub fn array_header(out: &mut impl ReplyBuf, len: usize) {
    push_header(out, b'*', len);
}

/// Appends the null array, `*-1\r\n`.
pub fn null_array(out: &mut impl ReplyBuf) {
    out.put(b"*-1\r\n");
}

/// Appends `kind`, `text` with line breaks blanked out, and `\r\n`.
fn push_line(out: &mut impl ReplyBuf, kind: u8, text: &[u8]) {
    out.put(&[kind]);
    let mut parts = text.split(|&b| b == b'\r' || b == b'\n');
    if let Some(first) = parts.next() {
        out.put(first);
    }
    for part in parts {
        out.put(b" ");
        out.put(part);
    }
    out.put(b"\r\n");
}

/// Appends `kind`, `len` in decimal and `\r\n`, in one piece.
fn push_header(out: &mut impl ReplyBuf, kind: u8, len: usize) {
    let mut line = [0u8; MAX_DECIMAL_DIGITS + 3];
    line[0] = kind;
    // usize is at most 64 bits on every target Rust supports.
    let digits = write_decimal(&mut line[1..], len as u64);
    line[1 + digits..3 + digits].copy_from_slice(b"\r\n");
    out.put(&line[..3 + digits]);
}

/// Writes `value` in decimal at the start of `to` (at least
/// [`MAX_DECIMAL_DIGITS`] long); returns the number of digits.
fn write_decimal(to: &mut [u8], mut value: u64) -> usize {
    let mut digits = [0u8; MAX_DECIMAL_DIGITS];
    let mut first = digits.len();
    loop {
        first -= 1;
        digits[first] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    let count = digits.len() - first;
    to[..count].copy_from_slice(&digits[first..]);
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(write: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let mut out = Vec::new();
        write(&mut out);
        out
    }

    #[test]
    fn simple_string() {
        assert_eq!(encoded(|out| simple(out, "OK")), b"+OK\r\n");
        assert_eq!(encoded(|out| simple(out, "")), b"+\r\n");
        assert_eq!(encoded(|out| simple(out, "a\r\nb")), b"+a  b\r\n");
    }

    #[test]
    fn error_line() {
        let text = "ERR unknown command 'FOO'";
        assert_eq!(
            encoded(|out| error(out, text)),
            b"-ERR unknown command 'FOO'\r\n"
        );
        assert_eq!(encoded(|out| error(out, "ERR a\nb")), b"-ERR a b\r\n");
    }

    #[test]
    fn integers() {
        assert_eq!(encoded(|out| integer(out, 0)), b":0\r\n");
        assert_eq!(encoded(|out| integer(out, 7)), b":7\r\n");
        assert_eq!(encoded(|out| integer(out, -1)), b":-1\r\n");
        assert_eq!(encoded(|out| integer(out, 1_000_000)), b":1000000\r\n");
        assert_eq!(
            encoded(|out| integer(out, i64::MAX)),
            b":9223372036854775807\r\n"
        );
        assert_eq!(
            encoded(|out| integer(out, i64::MIN)),
            b":-9223372036854775808\r\n"
        );
    }

    #[test]
    fn integers_match_std_formatting() {
        let mut value: i64 = 1;
        while let Some(next) = value.checked_mul(3) {
            for n in [value, -value, value - 1, 1 - value] {
                assert_eq!(
                    encoded(|out| integer(out, n)),
                    format!(":{n}\r\n").into_bytes()
                );
            }
            value = next;
        }
    }

    #[test]
    fn bulk_strings() {
        assert_eq!(encoded(|out| bulk(out, b"hello")), b"$5\r\nhello\r\n");
        assert_eq!(encoded(|out| bulk(out, b"")), b"$0\r\n\r\n");
        assert_eq!(encoded(|out| bulk(out, b"a\r\n\0")), b"$4\r\na\r\n\0\r\n");
        let long = vec![b'x'; 12345];
        let out = encoded(|out| bulk(out, &long));
        assert_eq!(&out[..8], b"$12345\r\n");
        assert_eq!(out.len(), 8 + 12345 + 2);
    }

    #[test]
    fn nulls_and_arrays() {
        assert_eq!(encoded(null_bulk), b"$-1\r\n");
        assert_eq!(encoded(null_array), b"*-1\r\n");
        assert_eq!(encoded(|out| array_header(out, 0)), b"*0\r\n");
        assert_eq!(encoded(|out| array_header(out, 3)), b"*3\r\n");
        assert_eq!(
            encoded(|out| array_header(out, usize::MAX)),
            format!("*{}\r\n", usize::MAX).into_bytes()
        );
    }

    #[test]
    fn replies_append() {
        let mut out = b"+OK\r\n".to_vec();
        integer(&mut out, 42);
        null_bulk(&mut out);
        assert_eq!(out, b"+OK\r\n:42\r\n$-1\r\n");
    }
}
