//! An incremental parser for the requests Redis clients send (RESP2).
//!
//! A request arrives in one of two shapes:
//!
//! - a *multibulk* command, an array of bulk strings:
//!   `*2\r\n$4\r\nECHO\r\n$2\r\nhi\r\n`;
//! - an *inline* command, one line split on blanks, as typed into telnet:
//!   `ECHO "hi there"\r\n` (a bare `\n` ends the line too).
//!
//! The caller owns the read buffer. Each time bytes arrive it appends them and
//! calls [`RequestParser::parse`] with the unconsumed bytes, which always start
//! at the same *command start*. The parser keeps only offsets from that start
//! (the buffer may be reallocated between calls), and it remembers how far it
//! got: the arguments already parsed, the bulk length it waits for and where
//! the search for a line end resumes. A 100 MiB bulk trickling in 64 KiB at a
//! time is therefore examined once, not once per read.
//!
//! Memory follows the bytes actually received, never the lengths a client
//! claims: `*1000000` or `$500000000` reserve nothing. The only memory the
//! parser keeps is one entry per argument parsed so far and a scratch buffer
//! for inline arguments that needed unquoting; both are reused from command
//! to command and trimmed back after an unusually large one.
//!
//! Errors carry the text Redis itself sends, so a client sees familiar
//! messages. After an error the stream has no trustworthy command boundary:
//! reply with the error and close the connection, as Redis does.

use std::error::Error;
use std::fmt;

/// Argument entries kept between commands; more are released after a command
/// that needed them.
const RETAINED_SPANS: usize = 64;

/// Scratch bytes kept between commands; more are released after a command
/// that needed them.
const RETAINED_SCRATCH: usize = 4 * 1024;

/// Size limits a request must respect.
///
/// The defaults are Redis's own: `proto-max-bulk-len` of 512 MiB, at most
/// 1024 × 1024 arguments (Redis 6's limit; Redis 7 takes up to 2^31-1), and
/// 64 KiB for an inline line or a header line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The longest bulk string accepted, in bytes.
    pub max_bulk_len: usize,
    /// The most arguments one multibulk command may announce.
    pub max_args: usize,
    /// The longest inline line, and the longest `*<count>` or `$<len>` text,
    /// in bytes, line end excluded.
    pub max_inline_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bulk_len: 512 * 1024 * 1024,
            max_args: 1024 * 1024,
            max_inline_len: 64 * 1024,
        }
    }
}

/// A request that breaks the protocol.
///
/// The [`Display`](fmt::Display) text is what Redis replies in the same case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtocolError {
    /// The `*<count>` header is not a count, or announces more than
    /// [`Limits::max_args`] arguments.
    InvalidMultibulkLength,
    /// The `$<len>` header is not a length, or announces more than
    /// [`Limits::max_bulk_len`] bytes.
    InvalidBulkLength,
    /// An argument of a multibulk command did not start with `$`; holds the
    /// byte found instead.
    ExpectedBulk(u8),
    /// An inline line ran past [`Limits::max_inline_len`].
    TooBigInlineRequest,
    /// The `*<count>` text ran past [`Limits::max_inline_len`].
    TooBigMultibulkCount,
    /// The `$<len>` text ran past [`Limits::max_inline_len`].
    TooBigBulkCount,
    /// An inline quote was not closed, or was closed and then not followed
    /// by a blank or the end of the line.
    UnbalancedQuotes,
    /// A bulk string's bytes were not followed by `\r\n`.
    UnterminatedBulk,
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Protocol error: ")?;
        match *self {
            ProtocolError::InvalidMultibulkLength => f.write_str("invalid multibulk length"),
            ProtocolError::InvalidBulkLength => f.write_str("invalid bulk length"),
            ProtocolError::ExpectedBulk(found) if found.is_ascii_graphic() || found == b' ' => {
                write!(f, "expected '$', got '{}'", char::from(found))
            }
            ProtocolError::ExpectedBulk(found) => write!(f, "expected '$', got '\\x{found:02x}'"),
            ProtocolError::TooBigInlineRequest => f.write_str("too big inline request"),
            ProtocolError::TooBigMultibulkCount => f.write_str("too big mbulk count string"),
            ProtocolError::TooBigBulkCount => f.write_str("too big bulk count string"),
            ProtocolError::UnbalancedQuotes => f.write_str("unbalanced quotes in request"),
            ProtocolError::UnterminatedBulk => f.write_str("bulk string not followed by CRLF"),
        }
    }
}

impl Error for ProtocolError {}

/// Where one argument's bytes are, as offsets from the command start (wire)
/// or into the parser's scratch buffer (unquoted inline arguments).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ArgSpan {
    Wire { start: usize, end: usize },
    Scratch { start: usize, end: usize },
}

/// The two header lines of a multibulk command, which differ only in the
/// errors they raise.
#[derive(Clone, Copy, Debug)]
enum Header {
    /// `*<count>\r\n`, opening the command.
    Count,
    /// `$<len>\r\n`, opening one argument.
    Bulk,
}

impl Header {
    fn invalid(self) -> ProtocolError {
        match self {
            Header::Count => ProtocolError::InvalidMultibulkLength,
            Header::Bulk => ProtocolError::InvalidBulkLength,
        }
    }

    fn too_big(self) -> ProtocolError {
        match self {
            Header::Count => ProtocolError::TooBigMultibulkCount,
            Header::Bulk => ProtocolError::TooBigBulkCount,
        }
    }
}

/// Where the parser stands inside the current command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// No byte of the command examined yet.
    Start,
    /// An inline command: looking for the `\n` that ends its line.
    Inline,
    /// After `*`: looking for the end of the count line.
    Count,
    /// Expecting the `$<len>\r\n` line of the next argument.
    BulkHeader,
    /// Waiting for `len` bytes of an argument and the `\r\n` after them.
    BulkBody { len: usize },
}

/// What one step of the state machine achieved.
enum Step {
    /// Moved on; the next phase may make progress with the same bytes.
    Continue,
    /// The bytes run out before the current phase can finish.
    NeedMore,
    /// A whole command is parsed.
    Complete,
}

/// Parses requests out of a read buffer the caller owns, a piece at a time.
///
/// # Examples
///
/// A server's read loop: append what arrived, take every complete request
/// out, keep the rest for the next read.
///
/// ```
/// use corelane::serve::resp::RequestParser;
///
/// let mut parser = RequestParser::default();
/// let mut buf = Vec::new();
/// let mut seen = Vec::new();
///
/// for read in [&b"*2\r\n$4\r\nEC"[..], b"HO\r\n$2\r\nhi\r\nPI", b"NG\r\n"] {
///     buf.extend_from_slice(read);
///     while let Some(request) = parser.parse(&buf)? {
///         seen.push(request.args().map(<[u8]>::to_vec).collect::<Vec<_>>());
///         let consumed = request.consumed();
///         buf.drain(..consumed);
///     }
/// }
///
/// assert_eq!(seen, [vec![b"ECHO".to_vec(), b"hi".to_vec()], vec![b"PING".to_vec()]]);
/// assert!(buf.is_empty());
/// # Ok::<(), corelane::serve::resp::ProtocolError>(())
/// ```
#[derive(Debug)]
pub struct RequestParser {
    limits: Limits,
    phase: Phase,
    /// Bytes at the front of the buffer that held only empty commands (`*0`,
    /// `*-1`, blank inline lines); the command start lies after them.
    skipped: usize,
    /// Offset, from the command start, of the first byte not yet parsed.
    cursor: usize,
    /// Offset, from the command start, where the search for the end of the
    /// current line resumes; bytes before it hold no line end.
    scan: usize,
    /// Arguments announced by the `*<count>` line.
    announced: usize,
    /// The arguments parsed so far.
    spans: Vec<ArgSpan>,
    /// Unquoted inline arguments.
    scratch: Vec<u8>,
    /// The last call ended a command, by returning it or an error; the next
    /// call starts afresh.
    ended: bool,
}

impl Default for RequestParser {
    fn default() -> Self {
        RequestParser::new(Limits::default())
    }
}

impl RequestParser {
    /// Creates a parser enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        RequestParser {
            limits,
            phase: Phase::Start,
            skipped: 0,
            cursor: 0,
            scan: 0,
            announced: 0,
            spans: Vec::new(),
            scratch: Vec::new(),
            ended: false,
        }
    }

    /// The limits this parser enforces.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Parses the next request out of `buf`.
    ///
    /// `buf` must begin at the command start: the first byte after the last
    /// request this parser returned (and after any bytes handed out by
    /// [`take_skipped`](Self::take_skipped)). Between calls it may only grow
    /// at the end, not change.
    ///
    /// Returns `Ok(None)` when `buf` holds no complete request yet, and the
    /// request otherwise; drain [`Request::consumed`] bytes from the front
    /// of the buffer before the next call. Empty commands (`*0`, `*-1`, blank
    /// inline lines) are stepped over, as Redis does.
    ///
    /// # Errors
    ///
    /// A [`ProtocolError`] when the bytes break the protocol or the
    /// [`Limits`]. Calling again with the same bytes gives the same error.
    ///
    /// # Panics
    ///
    /// If `buf` is shorter than the bytes earlier calls already examined,
    /// which means the caller broke the contract above.
    pub fn parse<'a>(&'a mut self, buf: &'a [u8]) -> Result<Option<Request<'a>>, ProtocolError> {
        if self.ended {
            self.reset();
        }
        assert!(
            self.skipped + self.scan.max(self.cursor) <= buf.len(),
            "buffer shrank between calls: {} bytes examined, {} given",
            self.skipped + self.scan.max(self.cursor),
            buf.len(),
        );

        match self.advance(buf) {
            Ok(false) => Ok(None),
            Ok(true) => {
                self.ended = true;
                Ok(Some(self.request(buf)))
            }
            Err(error) => {
                self.ended = true;
                Err(error)
            }
        }
    }

    /// Hands out the bytes at the front of the buffer that held only empty
    /// commands, while the command after them is still incomplete.
    ///
    /// Draining them is optional: bytes not taken here count in the next
    /// request's [`consumed`](Request::consumed). A caller that does drain
    /// them protects itself from a client that sends nothing but blank lines.
    /// After this call the parser expects the buffer to start where the
    /// skipped bytes end, so the caller must drain exactly the returned count.
    pub fn take_skipped(&mut self) -> usize {
        if self.ended {
            return 0;
        }
        std::mem::take(&mut self.skipped)
    }

    /// Bytes at the front of the buffer that the parser has already taken
    /// in without completing a command: empty commands stepped over, and
    /// the count line, argument headers and whole arguments of the
    /// command in progress. The bytes after them are not parsed yet (a
    /// partial line or argument). Zero after a call that ended a command.
    ///
    /// This is what Redis has moved out of a client's query buffer at
    /// the same point, so `buf.len() - parsed_len()` is the query buffer
    /// Redis would report.
    ///
    /// # Examples
    ///
    /// ```
    /// use corelane::serve::resp::RequestParser;
    ///
    /// let mut parser = RequestParser::default();
    /// // The name and its header are parsed; 3 bytes of the payload wait.
    /// let buf = b"*2\r\n$4\r\nECHO\r\n$10\r\nhel";
    /// assert!(parser.parse(buf)?.is_none());
    /// assert_eq!(buf.len() - parser.parsed_len(), 3);
    /// # Ok::<(), corelane::serve::resp::ProtocolError>(())
    /// ```
    pub fn parsed_len(&self) -> usize {
        if self.ended {
            return 0;
        }
        self.skipped + self.cursor
    }

    /// Forgets the last command and trims buffers that a big one left large.
    fn reset(&mut self) {
        self.phase = Phase::Start;
        self.skipped = 0;
        self.cursor = 0;
        self.scan = 0;
        self.announced = 0;
        self.ended = false;

        self.spans.clear();
        self.spans.shrink_to(RETAINED_SPANS);
        self.scratch.clear();
        self.scratch.shrink_to(RETAINED_SCRATCH);
    }

    /// Runs the state machine until a command is complete (`true`) or the
    /// bytes run out (`false`).
    fn advance(&mut self, buf: &[u8]) -> Result<bool, ProtocolError> {
        loop {
            let command = &buf[self.skipped..];
            let step = match self.phase {
                Phase::Start => self.start(command),
                Phase::Inline => self.inline(command)?,
                Phase::Count => self.count(command)?,
                Phase::BulkHeader => self.bulk_header(command)?,
                Phase::BulkBody { len } => self.bulk_body(command, len)?,
            };
            match step {
                Step::Continue => {}
                Step::NeedMore => return Ok(false),
                Step::Complete => return Ok(true),
            }
        }
    }

    /// The first byte decides the shape: `*` opens a multibulk command,
    /// anything else an inline one.
    fn start(&mut self, command: &[u8]) -> Step {
        match command.first() {
            None => return Step::NeedMore,
            Some(b'*') => self.phase = Phase::Count,
            Some(_) => self.phase = Phase::Inline,
        }
        Step::Continue
    }

    /// Steps over an empty command of `len` bytes; the next command starts
    /// after it.
    fn skip_command(&mut self, len: usize) {
        self.skipped += len;
        self.phase = Phase::Start;
        self.cursor = 0;
        self.scan = 0;
        self.spans.clear();
        self.scratch.clear();
    }

    fn inline(&mut self, command: &[u8]) -> Result<Step, ProtocolError> {
        // A line of exactly `max_inline_len` bytes is fine; one more byte
        // without a line end is not.
        let limit = self.limits.max_inline_len;
        let window = command.len().min(limit.saturating_add(1));
        let Some(found) = find(&command[self.scan..window], b'\n') else {
            if command.len() > limit {
                return Err(ProtocolError::TooBigInlineRequest);
            }
            self.scan = command.len();
            return Ok(Step::NeedMore);
        };

        let newline = self.scan + found;
        let line = &command[..newline];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        self.split_inline(line)?;
        if self.spans.is_empty() {
            self.skip_command(newline + 1);
            return Ok(Step::Continue);
        }
        self.cursor = newline + 1;
        Ok(Step::Complete)
    }

    /// Splits an inline line into arguments the way Redis's `sdssplitargs`
    /// does. Unlike Redis, a NUL byte is an ordinary byte here.
    fn split_inline(&mut self, line: &[u8]) -> Result<(), ProtocolError> {
        let mut at = 0;
        loop {
            while line.get(at).is_some_and(|&b| is_blank(b)) {
                at += 1;
            }
            if at == line.len() {
                return Ok(());
            }
            at = self.inline_arg(line, at)?;
        }
    }

    /// Parses the inline argument starting at `start`; returns where it ends.
    ///
    /// An argument is a run of plain bytes, optionally ended by one quoted
    /// section. Plain arguments are borrowed from the wire; quoted ones are
    /// unescaped into the scratch buffer.
    fn inline_arg(&mut self, line: &[u8], start: usize) -> Result<usize, ProtocolError> {
        let plain_end = line[start..]
            .iter()
            .position(|&b| ends_plain_arg(b) || b == b'"' || b == b'\'')
            .map_or(line.len(), |len| start + len);
        let quote = match line.get(plain_end) {
            Some(&quote @ (b'"' | b'\'')) => quote,
            _ => {
                let span = ArgSpan::Wire {
                    start,
                    end: plain_end,
                };
                self.spans.push(span);
                return Ok(plain_end);
            }
        };

        let scratch_start = self.scratch.len();
        self.scratch.extend_from_slice(&line[start..plain_end]);
        let end = if quote == b'"' {
            self.double_quoted(line, plain_end + 1)?
        } else {
            self.single_quoted(line, plain_end + 1)?
        };
        let span = ArgSpan::Scratch {
            start: scratch_start,
            end: self.scratch.len(),
        };
        self.spans.push(span);
        Ok(end)
    }

    /// Unescapes a `"..."` section starting after its opening quote; returns
    /// the offset after the closing quote.
    fn double_quoted(&mut self, line: &[u8], mut at: usize) -> Result<usize, ProtocolError> {
        loop {
            match line.get(at..) {
                None | Some([]) => return Err(ProtocolError::UnbalancedQuotes),
                Some([b'\\', b'x', high, low, ..]) if is_hex(*high) && is_hex(*low) => {
                    self.scratch.push((hex_value(*high) << 4) | hex_value(*low));
                    at += 4;
                }
                Some([b'\\', escaped, ..]) => {
                    self.scratch.push(unescape(*escaped));
                    at += 2;
                }
                Some([b'"', ..]) => return closing_quote(line, at),
                Some([byte, ..]) => {
                    self.scratch.push(*byte);
                    at += 1;
                }
            }
        }
    }

    /// Copies a `'...'` section starting after its opening quote, where only
    /// `\'` is an escape; returns the offset after the closing quote.
    fn single_quoted(&mut self, line: &[u8], mut at: usize) -> Result<usize, ProtocolError> {
        loop {
            match line.get(at..) {
                None | Some([]) => return Err(ProtocolError::UnbalancedQuotes),
                Some([b'\\', b'\'', ..]) => {
                    self.scratch.push(b'\'');
                    at += 2;
                }
                Some([b'\'', ..]) => return closing_quote(line, at),
                Some([byte, ..]) => {
                    self.scratch.push(*byte);
                    at += 1;
                }
            }
        }
    }

    fn count(&mut self, command: &[u8]) -> Result<Step, ProtocolError> {
        let Some(text) = self.header_line(command, Header::Count)? else {
            return Ok(Step::NeedMore);
        };

        // Redis steps over an array of no elements, or of a count below
        // zero (`*-1`, null, among them), as a command of nothing.
        if parse_integer(text).is_some_and(|count| count <= 0) {
            self.skip_command(self.cursor);
            return Ok(Step::Continue);
        }
        self.announced = parse_len(text)
            .filter(|&count| count <= self.limits.max_args)
            .ok_or(ProtocolError::InvalidMultibulkLength)?;
        self.phase = Phase::BulkHeader;
        Ok(Step::Continue)
    }

    fn bulk_header(&mut self, command: &[u8]) -> Result<Step, ProtocolError> {
        match command.get(self.cursor) {
            None => return Ok(Step::NeedMore),
            Some(b'$') => {}
            Some(&other) => return Err(ProtocolError::ExpectedBulk(other)),
        }
        let Some(text) = self.header_line(command, Header::Bulk)? else {
            return Ok(Step::NeedMore);
        };

        let len = parse_len(text)
            .filter(|&len| len <= self.limits.max_bulk_len)
            .ok_or(ProtocolError::InvalidBulkLength)?;
        self.phase = Phase::BulkBody { len };
        Ok(Step::Continue)
    }

    fn bulk_body(&mut self, command: &[u8], len: usize) -> Result<Step, ProtocolError> {
        let start = self.cursor;
        let end = start
            .checked_add(len)
            .ok_or(ProtocolError::InvalidBulkLength)?;
        let Some(terminator) = command.get(end..end.saturating_add(2)) else {
            return Ok(Step::NeedMore);
        };
        if terminator != b"\r\n" {
            return Err(ProtocolError::UnterminatedBulk);
        }

        self.spans.push(ArgSpan::Wire { start, end });
        self.cursor = end + 2;
        if self.spans.len() == self.announced {
            return Ok(Step::Complete);
        }
        self.phase = Phase::BulkHeader;
        Ok(Step::Continue)
    }

    /// Finds the `*<count>\r\n` or `$<len>\r\n` line at the cursor, whose
    /// type byte is already checked. Returns its text between the type byte
    /// and `\r`, and moves the cursor past the line; `None` if the line is
    /// not all there yet.
    fn header_line<'c>(
        &mut self,
        command: &'c [u8],
        header: Header,
    ) -> Result<Option<&'c [u8]>, ProtocolError> {
        let text_start = self.cursor + 1;
        let limit = self.limits.max_inline_len;
        let window = command
            .len()
            .min(text_start.saturating_add(limit).saturating_add(1));
        let from = self.scan.max(text_start);
        let Some(found) = find(&command[from..window], b'\r') else {
            if command.len() - text_start > limit {
                return Err(header.too_big());
            }
            self.scan = command.len();
            return Ok(None);
        };

        let carriage = from + found;
        match command.get(carriage + 1) {
            None => {
                self.scan = carriage;
                Ok(None)
            }
            Some(b'\n') => {
                self.cursor = carriage + 2;
                self.scan = self.cursor;
                Ok(Some(&command[text_start..carriage]))
            }
            Some(_) => Err(header.invalid()),
        }
    }

    /// The request just completed, borrowing from `buf` and the scratch
    /// buffer.
    fn request<'a>(&'a self, buf: &'a [u8]) -> Request<'a> {
        let consumed = self.skipped + self.cursor;
        debug_assert!(
            consumed <= buf.len(),
            "consumed {consumed} of {} bytes",
            buf.len()
        );
        Request {
            wire: &buf[self.skipped..consumed],
            scratch: &self.scratch,
            spans: &self.spans,
            consumed,
        }
    }
}

/// One complete command: its arguments, the first being the command name.
///
/// Borrows from the caller's buffer and from the parser; drop it before
/// draining the buffer or parsing again.
#[derive(Clone, Copy)]
pub struct Request<'a> {
    /// The command's bytes, from its start to its end.
    wire: &'a [u8],
    scratch: &'a [u8],
    spans: &'a [ArgSpan],
    consumed: usize,
}

impl<'a> Request<'a> {
    /// How many bytes at the front of the buffer this request used, empty
    /// commands stepped over before it included. Drain that many before the
    /// next [`RequestParser::parse`].
    pub fn consumed(&self) -> usize {
        self.consumed
    }

    /// The number of arguments, command name included; never zero.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Always `false`: empty commands are stepped over, never returned.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// The `index`th argument; argument 0 is the command name.
    ///
    /// # Panics
    ///
    /// If `index` is not below [`len`](Self::len).
    pub fn arg(&self, index: usize) -> &'a [u8] {
        self.resolve(self.spans[index])
    }

    /// The `index`th argument, or `None` past the last one.
    pub fn get(&self, index: usize) -> Option<&'a [u8]> {
        self.spans.get(index).map(|&span| self.resolve(span))
    }

    /// The arguments in order, command name first.
    pub fn args(&self) -> Args<'a> {
        Args {
            request: *self,
            spans: self.spans.iter(),
        }
    }

    fn resolve(&self, span: ArgSpan) -> &'a [u8] {
        match span {
            ArgSpan::Wire { start, end } => &self.wire[start..end],
            ArgSpan::Scratch { start, end } => &self.scratch[start..end],
        }
    }
}

impl fmt::Debug for Request<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("args", &self.args().map(Escaped).collect::<Vec<_>>())
            .field("consumed", &self.consumed)
            .finish()
    }
}

/// Iterator over a [`Request`]'s arguments.
#[derive(Clone)]
pub struct Args<'a> {
    request: Request<'a>,
    spans: std::slice::Iter<'a, ArgSpan>,
}

impl<'a> Iterator for Args<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        self.spans.next().map(|&span| self.request.resolve(span))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.spans.size_hint()
    }
}

impl ExactSizeIterator for Args<'_> {}

/// Prints bytes as an escaped string literal.
struct Escaped<'a>(&'a [u8]);

impl fmt::Debug for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\"", self.0.escape_ascii())
    }
}

/// The offset of the first `needle` in `haystack`.
fn find(haystack: &[u8], needle: u8) -> Option<usize> {
    haystack.iter().position(|&b| b == needle)
}

/// Parses a decimal length as Redis does: digits only, no sign, no leading
/// zero, and no more than fit in `usize`.
fn parse_len(text: &[u8]) -> Option<usize> {
    match text {
        [] | [b'0', _, ..] => return None,
        _ => {}
    }
    text.iter().try_fold(0usize, |value, &digit| {
        if !digit.is_ascii_digit() {
            return None;
        }
        value
            .checked_mul(10)?
            .checked_add(usize::from(digit - b'0'))
    })
}

/// Parses a signed decimal integer as Redis reads a command's integer
/// argument: an optional `-`, then digits with no leading zero (`0` alone
/// is zero), nothing else (no `+`, no blanks), within `i64`.
pub fn parse_integer(text: &[u8]) -> Option<i64> {
    let (negative, digits) = match text {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, text),
    };
    match digits {
        [] | [b'0', _, ..] => return None,
        [b'0'] if negative => return None,
        _ => {}
    }
    // Accumulated as a negative number, whose range is one larger, so
    // `i64::MIN` parses too.
    let magnitude = digits.iter().try_fold(0i64, |value, &digit| {
        if !digit.is_ascii_digit() {
            return None;
        }
        value.checked_mul(10)?.checked_sub(i64::from(digit - b'0'))
    })?;
    if negative {
        Some(magnitude)
    } else {
        magnitude.checked_neg()
    }
}

/// Blanks skipped between inline arguments (C's `isspace`).
fn is_blank(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

/// Bytes that end an unquoted inline argument; note vertical tab and form
/// feed are not among them, as in Redis.
fn ends_plain_arg(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | b'\r')
}

/// Checks that the quote at `at` is followed by a blank or the line end;
/// returns the offset after it.
fn closing_quote(line: &[u8], at: usize) -> Result<usize, ProtocolError> {
    match line.get(at + 1) {
        Some(&next) if !is_blank(next) => Err(ProtocolError::UnbalancedQuotes),
        _ => Ok(at + 1),
    }
}

/// The byte a `\x` escape stands for inside double quotes.
fn unescape(escaped: u8) -> u8 {
    match escaped {
        b'n' => b'\n',
        b'r' => b'\r',
        b't' => b'\t',
        b'b' => 0x08,
        b'a' => 0x07,
        other => other,
    }
}

fn is_hex(byte: u8) -> bool {
    byte.is_ascii_hexdigit()
}

fn hex_value(digit: u8) -> u8 {
    match digit {
        b'0'..=b'9' => digit - b'0',
        b'a'..=b'f' => digit - b'a' + 10,
        _ => digit - b'A' + 10,
    }
}

#[cfg(test)]
#[path = "resp_check.rs"]
mod resp_check;

#[cfg(test)]
mod tests {
    use super::resp_check::{owned, parse_pieces, parse_whole, Args, Outcome};
    use super::*;

    fn args(words: &[&str]) -> Args {
        words.iter().map(|word| word.as_bytes().to_vec()).collect()
    }

    fn one(input: &[u8]) -> Result<Option<Args>, ProtocolError> {
        let mut parser = RequestParser::default();
        parser
            .parse(input)
            .map(|request| request.as_ref().map(owned))
    }

    fn error_text(input: &[u8]) -> String {
        one(input).unwrap_err().to_string()
    }

    #[test]
    fn multibulk_command() {
        let mut parser = RequestParser::default();
        let input = b"*2\r\n$4\r\nECHO\r\n$2\r\nhi\r\n";
        let request = parser.parse(input).unwrap().unwrap();
        assert_eq!(request.len(), 2);
        assert_eq!(request.arg(0), b"ECHO");
        assert_eq!(request.arg(1), b"hi");
        assert_eq!(request.get(2), None);
        assert_eq!(request.consumed(), input.len());
    }

    #[test]
    fn inline_command() {
        assert_eq!(one(b"PING\r\n"), Ok(Some(args(&["PING"]))));
        assert_eq!(one(b"PING\n"), Ok(Some(args(&["PING"]))));
        assert_eq!(
            one(b"  SET\tkey  value \r\n"),
            Ok(Some(args(&["SET", "key", "value"])))
        );
        assert_eq!(one(b"PING"), Ok(None));
        assert_eq!(one(b"PING\r"), Ok(None));
    }

    #[test]
    fn pipeline_in_one_buffer() {
        let input = b"*1\r\n$4\r\nPING\r\nECHO x\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\nQUIT\r\n";
        let outcome = parse_whole(input, Limits::default());
        let expected = vec![
            (args(&["PING"]), 14),
            (args(&["ECHO", "x"]), 21),
            (args(&["SET", "k", ""]), 47),
            (args(&["QUIT"]), input.len()),
        ];
        assert_eq!(
            outcome,
            Outcome {
                requests: expected,
                end: None
            }
        );
    }

    #[test]
    fn every_split_point_gives_the_same_requests() {
        let input: &[u8] =
            b"*2\r\n$4\r\nECHO\r\n$5\r\na\r\nbc\r\n\r\n*0\r\nECHO \"q \\x41\" 'x\\'y'\n\
            *-1\r\n \n*1\r\n$10\r\n0123456789\r\nPING\r\n*2\r\n$3\r\nGET\r\n$2\r\nk";
        let whole = parse_whole(input, Limits::default());
        assert_eq!(whole.requests.len(), 4);
        assert_eq!(whole.requests[1].0, args(&["ECHO", "q A", "x'y"]));

        for split in 0..=input.len() {
            let (head, tail) = input.split_at(split);
            for take_skipped in [false, true] {
                let pieces = parse_pieces([head, tail], Limits::default(), take_skipped);
                assert_eq!(pieces, whole, "split at {split}");
            }
        }
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(
            parse_pieces(bytes.iter().copied(), Limits::default(), false),
            whole
        );
        assert_eq!(
            parse_pieces(bytes.iter().copied(), Limits::default(), true),
            whole
        );
    }

    #[test]
    fn every_split_point_gives_the_same_error() {
        let input: &[u8] = b"*1\r\n$4\r\nPING\r\n*2\r\n$1\r\nx\r\n:1\r\n";
        let whole = parse_whole(input, Limits::default());
        assert_eq!(whole.end, Some(ProtocolError::ExpectedBulk(b':')));
        for split in 0..=input.len() {
            let (head, tail) = input.split_at(split);
            assert_eq!(parse_pieces([head, tail], Limits::default(), true), whole);
        }
    }

    #[test]
    fn inline_quotes_and_escapes() {
        let line = b"SET \"a b\" 'c\\'d' \"\\x41\\x4a\\n\\r\\t\\b\\a\\\\\\\"\\q\"\r\n";
        let expected = vec![
            b"SET".to_vec(),
            b"a b".to_vec(),
            b"c'd".to_vec(),
            b"AJ\n\r\t\x08\x07\\\"q".to_vec(),
        ];
        assert_eq!(one(line), Ok(Some(expected)));

        // A quote may open mid-argument; the section ends the argument.
        assert_eq!(
            one(b"foo\"bar baz\" x\n"),
            Ok(Some(args(&["foobar baz", "x"])))
        );
        assert_eq!(one(b"\"\" ''\n"), Ok(Some(args(&["", ""]))));
        // `\x` without two hex digits is just `x`; single quotes keep `\n`.
        assert_eq!(one(b"\"\\x4g\" '\\n'\n"), Ok(Some(args(&["x4g", "\\n"]))));
        // Vertical tab separates only between arguments, not inside one.
        assert_eq!(one(b"\x0ba\x0bb\n"), Ok(Some(args(&["a\x0bb"]))));
        // A lone `\r` inside the line separates arguments.
        assert_eq!(one(b"a\rb\r\n"), Ok(Some(args(&["a", "b"]))));
    }

    #[test]
    fn plain_inline_arguments_borrow_the_wire() {
        let mut parser = RequestParser::default();
        parser.parse(b"GET key\r\n").unwrap().unwrap();
        assert!(parser
            .spans
            .iter()
            .all(|span| matches!(span, ArgSpan::Wire { .. })));
        assert!(parser.scratch.is_empty());
    }

    #[test]
    fn scratch_buffer_is_reused() {
        let mut parser = RequestParser::default();
        let input = b"SET \"some quoted key\" 'and a value'\r\n";
        parser.parse(input).unwrap().unwrap();
        let capacity = (parser.spans.capacity(), parser.scratch.capacity());
        for _ in 0..100 {
            let request = parser.parse(input).unwrap().unwrap();
            assert_eq!(request.arg(2), b"and a value");
        }
        assert_eq!(
            (parser.spans.capacity(), parser.scratch.capacity()),
            capacity
        );
    }

    #[test]
    fn unbalanced_quotes() {
        let expected = "Protocol error: unbalanced quotes in request";
        for line in [
            &b"ECHO \"abc\n"[..],
            b"ECHO 'abc\n",
            b"ECHO \"a\"b\n",
            b"ECHO 'a'b\n",
            b"\"\\\"\n",
        ] {
            assert_eq!(error_text(line), expected, "{}", line.escape_ascii());
        }
    }

    #[test]
    fn empty_commands_are_stepped_over() {
        let input = b"*0\r\n*-1\r\n*-5\r\n*-9223372036854775808\r\n\r\n  \t \n\nPING\r\n";
        let mut parser = RequestParser::default();
        let request = parser.parse(input).unwrap().unwrap();
        assert_eq!(owned(&request), args(&["PING"]));
        assert_eq!(request.consumed(), input.len());

        assert_eq!(one(b"*0\r\n"), Ok(None));
        assert_eq!(one(b"\r\n\r\n"), Ok(None));
        // Counts Redis cannot read as an integer are still errors.
        for bad in [&b"*-0\r\n"[..], b"*00\r\n", b"*+1\r\n", b"*-\r\n"] {
            assert_eq!(
                one(bad),
                Err(ProtocolError::InvalidMultibulkLength),
                "{}",
                bad.escape_ascii()
            );
        }
    }

    #[test]
    fn skipped_bytes_can_be_drained_early() {
        let mut parser = RequestParser::default();
        let mut buf = b"*0\r\n\n*1\r\n$4\r\nPI".to_vec();
        assert!(parser.parse(&buf).unwrap().is_none());
        assert_eq!(parser.take_skipped(), 5);
        assert_eq!(parser.take_skipped(), 0);
        buf.drain(..5);

        buf.extend_from_slice(b"NG\r\n");
        let request = parser.parse(&buf).unwrap().unwrap();
        assert_eq!(owned(&request), args(&["PING"]));
        assert_eq!(request.consumed(), buf.len());
        assert_eq!(parser.take_skipped(), 0);
    }

    #[test]
    fn binary_safe_bulk() {
        let input = b"*2\r\n$7\r\nPUBLISH\r\n$6\r\n\r\n\0\xff\r\n\r\n";
        let expected = vec![b"PUBLISH".to_vec(), b"\r\n\0\xff\r\n".to_vec()];
        assert_eq!(one(input), Ok(Some(expected)));
    }

    #[test]
    fn bulk_must_end_with_crlf() {
        let text = "Protocol error: bulk string not followed by CRLF";
        assert_eq!(error_text(b"*1\r\n$3\r\nabcXY"), text);
        assert_eq!(error_text(b"*1\r\n$3\r\nabc\rX"), text);
        assert_eq!(one(b"*1\r\n$3\r\nabc\r"), Ok(None));
    }

    #[test]
    fn invalid_multibulk_lengths() {
        let text = "Protocol error: invalid multibulk length";
        for input in [
            &b"*\r\n"[..],
            b"*+1\r\n",
            b"*01\r\n",
            b"*1a\r\n",
            b"* 1\r\n",
            b"*18446744073709551616\r\n",
            b"*1048577\r\n",
            b"*1\rX",
        ] {
            assert_eq!(error_text(input), text, "{}", input.escape_ascii());
        }
        assert_eq!(one(b"*1048576\r\n"), Ok(None));
    }

    #[test]
    fn invalid_bulk_lengths() {
        let text = "Protocol error: invalid bulk length";
        for header in [
            &b"$\r\n"[..],
            b"$-1\r\n",
            b"$+3\r\n",
            b"$03\r\n",
            b"$3 \r\n",
            b"$99999999999999999999999\r\n",
            b"$536870913\r\n",
            b"$3\r\r",
        ] {
            let input = [&b"*1\r\n"[..], header].concat();
            assert_eq!(error_text(&input), text, "{}", header.escape_ascii());
        }
        assert_eq!(one(b"*1\r\n$536870912\r\n"), Ok(None));
    }

    #[test]
    fn expected_dollar() {
        assert_eq!(
            error_text(b"*1\r\n:4\r\n"),
            "Protocol error: expected '$', got ':'"
        );
        assert_eq!(
            error_text(b"*1\r\n\x01"),
            "Protocol error: expected '$', got '\\x01'"
        );
    }

    #[test]
    fn too_big_lines() {
        let limits = Limits {
            max_inline_len: 8,
            ..Limits::default()
        };
        let outcome = |input: &[u8]| parse_whole(input, limits).end.map(|e| e.to_string());

        assert_eq!(parse_whole(b"12345678\n", limits).requests.len(), 1);
        let inline = Some("Protocol error: too big inline request".to_string());
        assert_eq!(outcome(b"123456789"), inline);
        assert_eq!(outcome(b"123456789\n"), inline);
        assert_eq!(outcome(b"12345678"), None);

        let count = Some("Protocol error: too big mbulk count string".to_string());
        assert_eq!(outcome(b"*000000000"), count);
        assert_eq!(outcome(b"*00000000"), None);

        let bulk = Some("Protocol error: too big bulk count string".to_string());
        assert_eq!(outcome(b"*1\r\n$000000000"), bulk);
    }

    #[test]
    fn huge_claims_reserve_nothing() {
        let mut parser = RequestParser::default();
        let mut buf = b"*1000000\r\n$500000000\r\n".to_vec();
        buf.resize(buf.len() + 64 * 1024, b'x');
        assert!(parser.parse(&buf).unwrap().is_none());
        assert!(
            parser.spans.capacity() <= RETAINED_SPANS,
            "{}",
            parser.spans.capacity()
        );
        assert_eq!(parser.scratch.capacity(), 0);

        let mut parser = RequestParser::default();
        assert!(parser.parse(b"*1048576\r\n").unwrap().is_none());
        assert_eq!(parser.spans.capacity(), 0);
    }

    #[test]
    fn big_command_leaves_small_buffers_behind() {
        let mut parser = RequestParser::default();
        let mut input = b"*1000\r\n".to_vec();
        for _ in 0..1000 {
            input.extend_from_slice(b"$1\r\nx\r\n");
        }
        input.extend_from_slice(b"PING\r\n");

        let request = parser.parse(&input).unwrap().unwrap();
        assert_eq!(request.len(), 1000);
        let consumed = request.consumed();
        assert!(parser.spans.capacity() >= 1000);

        let request = parser.parse(&input[consumed..]).unwrap().unwrap();
        assert_eq!(owned(&request), args(&["PING"]));
        assert!(parser.spans.capacity() <= RETAINED_SPANS);
    }

    #[test]
    fn large_bulk_in_small_reads() {
        let payload: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        let mut input = format!("*2\r\n$7\r\nPUBLISH\r\n${}\r\n", payload.len()).into_bytes();
        input.extend_from_slice(&payload);
        input.extend_from_slice(b"\r\n");

        let pieces: Vec<&[u8]> = input.chunks(4096).collect();
        let outcome = parse_pieces(pieces.iter().copied(), Limits::default(), false);
        assert_eq!(outcome.requests.len(), 1);
        assert_eq!(outcome.requests[0].0[1], payload);
        assert_eq!(outcome.requests[0].1, input.len());
    }

    #[test]
    fn resumes_where_it_stopped() {
        let mut parser = RequestParser::default();
        let mut buf = b"*5\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n$1".to_vec();
        assert!(parser.parse(&buf).unwrap().is_none());
        // Three arguments kept, and the search for the fourth header's line
        // end already past the bytes seen.
        assert_eq!(parser.spans.len(), 3);
        assert_eq!(parser.cursor, 25);
        assert_eq!(parser.scan, buf.len());

        buf.extend_from_slice(b"0\r\n0123");
        assert!(parser.parse(&buf).unwrap().is_none());
        assert_eq!(parser.phase, Phase::BulkBody { len: 10 });
        assert_eq!(parser.cursor, 30);

        buf.extend_from_slice(b"456789\r\n$1\r\ne\r\n");
        let request = parser.parse(&buf).unwrap().unwrap();
        assert_eq!(owned(&request), args(&["a", "b", "c", "0123456789", "e"]));
    }

    #[test]
    fn many_small_arguments_in_small_reads() {
        let count = 100_000;
        let mut input = format!("*{count}\r\n").into_bytes();
        for _ in 0..count {
            input.extend_from_slice(b"$1\r\nx\r\n");
        }

        let mut parser = RequestParser::default();
        let mut buf = Vec::new();
        let mut reads = input.chunks(61);
        let request = loop {
            buf.extend_from_slice(reads.next().expect("request completes"));
            if let Some(request) = parser.parse(&buf).unwrap() {
                break request;
            }
        };
        assert_eq!(request.len(), count);
        assert!(request.args().all(|arg| arg == b"x"));
        assert_eq!(request.consumed(), input.len());
    }

    #[test]
    fn error_repeats_until_the_caller_gives_up() {
        let mut parser = RequestParser::default();
        let input = b"*1\r\n$x\r\n";
        assert_eq!(
            parser.parse(input).unwrap_err(),
            ProtocolError::InvalidBulkLength
        );
        assert_eq!(
            parser.parse(input).unwrap_err(),
            ProtocolError::InvalidBulkLength
        );
    }

    #[test]
    fn lengths_parse_like_redis() {
        assert_eq!(parse_len(b"0"), Some(0));
        assert_eq!(parse_len(b"10"), Some(10));
        assert_eq!(parse_len(b"18446744073709551615"), Some(usize::MAX));
        assert_eq!(parse_len(b"18446744073709551616"), None);
        for bad in [&b""[..], b"00", b"01", b"-1", b"+1", b"1x", b" 1"] {
            assert_eq!(parse_len(bad), None, "{}", bad.escape_ascii());
        }
    }

    #[test]
    fn integers_parse_like_redis() {
        assert_eq!(parse_integer(b"0"), Some(0));
        assert_eq!(parse_integer(b"2"), Some(2));
        assert_eq!(parse_integer(b"-17"), Some(-17));
        assert_eq!(parse_integer(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_integer(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [
            &b""[..],
            b"-",
            b"-0",
            b"02",
            b"-02",
            b"+2",
            b" 2",
            b"2 ",
            b"2x",
            b"9223372036854775808",
            b"-9223372036854775809",
        ] {
            assert_eq!(parse_integer(bad), None, "{}", bad.escape_ascii());
        }
    }

    #[test]
    fn debug_shows_arguments() {
        let mut parser = RequestParser::default();
        let request = parser.parse(b"ECHO \"a\\x00\"\n").unwrap().unwrap();
        let text = format!("{request:?}");
        assert_eq!(text, r#"Request { args: ["ECHO", "a\x00"], consumed: 13 }"#);
    }
}
