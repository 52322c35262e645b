//! The commands the server understands, executed on the connection's core.
//!
//! Pub/sub: PUBLISH, SUBSCRIBE, UNSUBSCRIBE, PSUBSCRIBE, PUNSUBSCRIBE.
//! Connection: PING, ECHO, QUIT, RESET, SELECT, HELLO, CLIENT.
//! What clients ask when they connect: COMMAND (DOCS, COUNT, ...), CONFIG
//! GET, INFO. Anything else gets `-ERR unknown command`, never a dropped
//! connection.

use std::sync::atomic::Ordering;

use super::client_list::client_line;
use super::command_name;
use super::connection::Connection;
use super::glob::Glob;
use super::info;
use super::message::ServerMsg;
use super::redis_commands::{self, Refusal};
use super::reply;
use super::resp::{self, Request};
use super::server::ServeCore;
use crate::runtime::Context;
use crate::segment::journal::JournalError;

/// Settings CONFIG GET reports, for clients (redis-benchmark) that read
/// them at connect time; `client-output-buffer-limit` is added from the
/// server's own output limit.
const CONFIG: &[(&str, &str)] = &[
    ("save", ""),
    ("appendonly", "no"),
    ("databases", "1"),
    ("maxmemory", "0"),
];

/// Overhead of a forwarded PUBLISH beyond channel and payload bytes
/// (rkyv's enum tag, two vectors' lengths and offsets, alignment).
const PUBLISH_OVERHEAD: usize = 64;

/// Longest PSUBSCRIBE pattern accepted. It bounds what one pattern costs
/// each PUBLISH beyond reading the channel name (a few hundred steps per
/// pattern byte at most), the words of search state a glob segment needs
/// (16, kept on the stack) and the memory a parsed pattern holds.
const MAX_PATTERN_LEN: usize = 1024;

/// Commands a subscribed RESP2 connection may still send.
const SUBSCRIBED_ALLOWED: &[&[u8]] = &[
    b"SUBSCRIBE",
    b"UNSUBSCRIBE",
    b"PSUBSCRIBE",
    b"PUNSUBSCRIBE",
    b"PING",
    b"QUIT",
    b"RESET",
];

/// `CLIENT HELP`, laid out as Redis lays out its help replies: a header
/// line, then each subcommand with its description indented below it,
/// sent as an array of status lines.
const CLIENT_HELP: &[&str] = &[
    "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "GETNAME",
    "    Return the name of this connection, or nil if it has none.",
    "ID",
    "    Return the ID of this connection.",
    "INFO",
    "    Return this connection's line of CLIENT LIST.",
    "LIST [options ...]",
    "    Return one line per connection, of every core, in the order of their IDs. Options:",
    "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
    "      Return clients of specified type.",
    "    * ID <client-id> [<client-id> ...]",
    "      Return clients of specified IDs only, in that order.",
    "SETINFO <LIB-NAME|LIB-VER> <value>",
    "    Accepted for client libraries (a value without spaces); the value is not kept.",
    "SETNAME <name>",
    "    Name this connection.",
    "HELP",
    "    Print this help.",
];

/// `COMMAND HELP`, laid out as [`CLIENT_HELP`] is.
const COMMAND_HELP: &[&str] = &[
    "COMMAND <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "(no subcommand)",
    "    Return an empty list: this server publishes no command table.",
    "COUNT",
    "    Return 0.",
    "DOCS [<command-name> ...]",
    "    Return an empty list.",
    "INFO [<command-name> ...]",
    "    Return a nil for each command named (an empty list if none is).",
    "LIST [FILTERBY (MODULE <module-name>|ACLCAT <category>|PATTERN <pattern>)]",
    "    Return an empty list.",
    "HELP",
    "    Print this help.",
];

/// `CONFIG HELP`, laid out as [`CLIENT_HELP`] is.
const CONFIG_HELP: &[&str] = &[
    "CONFIG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "GET <pattern> [<pattern> ...]",
    "    Return parameters matching the glob-like <pattern> and their values, of save,",
    "    appendonly, databases, maxmemory and client-output-buffer-limit.",
    "SET, RESETSTAT, REWRITE",
    "    Refused: the configuration is read-only (set by corelane serve's flags).",
    "HELP",
    "    Print this help.",
];

/// Longest name or argument an error message repeats; the rest is cut, as
/// Redis cuts it, so that a client cannot have megabytes echoed back.
const SHOWN_LEN: usize = 128;

/// A client's name or argument as an error message shows it.
pub(super) fn shown(arg: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(&arg[..arg.len().min(SHOWN_LEN)])
}

/// The command name in upper case, in `buffer`; names longer than any
/// command come back empty (unknown) rather than allocated.
fn upper_name<'b>(name: &[u8], buffer: &'b mut [u8; 16]) -> &'b [u8] {
    if name.len() > buffer.len() {
        return &[];
    }
    let upper = &mut buffer[..name.len()];
    upper.copy_from_slice(name);
    upper.make_ascii_uppercase();
    upper
}

/// Redis's words refusing the command `full_name` to a RESP2 subscriber.
fn subscribed_error(full_name: &str) -> String {
    format!(
        "ERR Can't execute '{full_name}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / \
         RESET are allowed in this context"
    )
}

/// Names a connection (CLIENT SETNAME, HELLO SETNAME); an empty name
/// removes it. Refused, as Redis refuses it, if it holds a space, a line
/// end or any byte outside `!`..=`~`: a listing of clients writes each
/// name as one word on one line.
fn set_name(conn: &mut Connection, name: &[u8]) -> Result<(), &'static str> {
    if !is_one_word(name) {
        return Err("ERR Client names cannot contain spaces, newlines or special characters.");
    }
    conn.name = (!name.is_empty()).then(|| name.to_vec());
    Ok(())
}

/// A HELP reply: an array of status lines, as Redis sends its help.
fn help(out: &mut impl reply::ReplyBuf, lines: &[&str]) {
    reply::array_header(out, lines.len());
    for line in lines {
        reply::simple(out, line);
    }
}

/// Whether `bytes` are all printable ASCII other than the space (`!`..=`~`).
fn is_one_word(bytes: &[u8]) -> bool {
    bytes.iter().all(|byte| (b'!'..=b'~').contains(byte))
}

/// Checks CLIENT SETINFO's attribute and value as Redis 7.2 does: the
/// attribute is `LIB-NAME` or `LIB-VER` (in any case), and the value is
/// one word, as a client name is. The value is not kept.
fn check_lib_info(attribute: &[u8], value: &[u8]) -> Result<(), String> {
    if !attribute.eq_ignore_ascii_case(b"LIB-NAME") && !attribute.eq_ignore_ascii_case(b"LIB-VER") {
        return Err(format!("ERR Unrecognized option '{}'", shown(attribute)));
    }
    if !is_one_word(value) {
        return Err(format!(
            "ERR {} cannot contain spaces, newlines or special characters.",
            shown(attribute)
        ));
    }
    Ok(())
}

/// Whether a request of `len` words (the command's name included) has
/// the arguments the command `full_name` takes, as Redis 7 counts them.
/// CONFIG's refused subcommands take any number: they are refused anyway.
fn arity_ok(full_name: &str, len: usize) -> bool {
    match full_name {
        "ping" => len <= 2,
        "echo" | "select" => len == 2,
        "publish" => len == 3,
        "subscribe" | "psubscribe" | "client" | "config" => len >= 2,
        "reset" => len == 1,
        "client|setname" => len == 3,
        "client|getname" | "client|id" | "client|info" | "client|help" => len == 2,
        "command|help" | "config|help" => len == 2,
        "client|setinfo" => len == 4,
        "command|count" => len == 2,
        "config|get" => len >= 3,
        // QUIT closes whatever follows it, as in Redis 7; the others read
        // (and refuse) their own options.
        _ => true,
    }
}

impl ServeCore {
    /// Executes one request from connection `key`, appending its reply.
    pub(crate) fn execute(
        &mut self,
        cx: &mut Context<'_, ServerMsg>,
        key: usize,
        request: &Request<'_>,
    ) {
        self.commands += 1;
        cx.count_requests(1);
        self.stats.commands[self.core].store(self.commands, Ordering::Relaxed);
        let mut upper = [0u8; 16];
        let name = upper_name(request.arg(0), &mut upper);
        let conn = &mut self.conns[key];
        // Named before any check, as Redis names it: a command refused
        // for its arity or in subscribed mode is still the last one.
        conn.last_command = command_name::full_name(name, request.get(1));
        // Checked in Redis 7's order: a command (or subcommand) this server
        // does not know is refused as unknown by the dispatch below (in
        // subscribed mode, as Redis refuses it if Redis has it); then the
        // arity; then subscribed mode. The errors name a subcommand as
        // `client|id`, as Redis does.
        if let Some(full_name) = conn.last_command {
            let subscribed = conn.is_subscriber();
            if !arity_ok(full_name, request.len()) {
                let text = format!("ERR wrong number of arguments for '{full_name}' command");
                self.reply_error(key, &text);
                return;
            }
            if subscribed && !SUBSCRIBED_ALLOWED.contains(&name) {
                self.reply_error(key, &subscribed_error(full_name));
                return;
            }
        } else if conn.is_subscriber() {
            // A command this server does not serve, from a subscriber:
            // answered as Redis 7.0 answers it if Redis has it, so that a
            // client told "Can't execute 'get'" by Redis is told so here.
            let refusal =
                redis_commands::subscribed_refusal(request.arg(0), request.get(1), request.len());
            // Named as Redis names it in CLIENT LIST: by the full name it
            // found (`get`, `config|set`), even though refused; an unknown
            // command or subcommand stays `NULL`.
            if let Some(Refusal::Arity(full_name) | Refusal::Subscribed(full_name)) = refusal {
                conn.last_command = Some(full_name);
            }
            let text = match refusal {
                Some(Refusal::UnknownSubcommand) => format!(
                    "ERR unknown subcommand '{}'. Try {} HELP.",
                    shown(request.arg(1)),
                    shown(request.arg(0)).to_ascii_uppercase()
                ),
                Some(Refusal::Arity(full_name)) => {
                    format!("ERR wrong number of arguments for '{full_name}' command")
                }
                Some(Refusal::Subscribed(full_name)) => subscribed_error(full_name),
                None => {
                    self.unknown(key, request);
                    self.mark_dirty(key);
                    return;
                }
            };
            self.reply_error(key, &text);
            return;
        }
        match name {
            b"PING" => self.ping(key, request.get(1)),
            b"ECHO" => reply::bulk(&mut self.conns[key].out, request.arg(1)),
            b"PUBLISH" => self.publish(cx, key, request.arg(1), request.arg(2)),
            b"SUBSCRIBE" => self.subscribe(cx, key, request, false),
            b"PSUBSCRIBE" => self.subscribe(cx, key, request, true),
            b"UNSUBSCRIBE" => self.unsubscribe(cx, key, request, false),
            b"PUNSUBSCRIBE" => self.unsubscribe(cx, key, request, true),
            b"QUIT" => {
                let conn = &mut self.conns[key];
                reply::simple(&mut conn.out, "OK");
                conn.closing = true;
            }
            b"RESET" => self.reset(cx, key),
            b"SELECT" => self.select(key, request.arg(1)),
            b"HELLO" => self.hello(key, request),
            b"CLIENT" => self.client(cx, key, request),
            b"COMMAND" => self.command(key, request),
            b"CONFIG" => self.config(key, request),
            b"INFO" => {
                let text = info::render(self, cx, request.args().skip(1));
                reply::bulk(&mut self.conns[key].out, text.as_bytes());
            }
            _ => self.unknown(key, request),
        }
        self.mark_dirty(key);
    }

    fn reply_error(&mut self, key: usize, text: &str) {
        reply::error(&mut self.conns[key].out, text);
        self.mark_dirty(key);
    }

    /// Redis 7's words: each argument quoted and followed by a space, until
    /// [`SHOWN_LEN`] bytes of them are shown (the last one cut to fit).
    fn unknown(&mut self, key: usize, request: &Request<'_>) {
        let mut args = String::new();
        for arg in request.args().skip(1) {
            let Some(room) = SHOWN_LEN.checked_sub(args.len()).filter(|&room| room > 0) else {
                break;
            };
            let arg = String::from_utf8_lossy(&arg[..arg.len().min(room)]);
            args.push_str(&format!("'{arg}' "));
        }
        let text = format!(
            "ERR unknown command '{}', with args beginning with: {args}",
            shown(request.arg(0))
        );
        reply::error(&mut self.conns[key].out, &text);
    }

    fn ping(&mut self, key: usize, message: Option<&[u8]>) {
        let conn = &mut self.conns[key];
        if conn.is_subscriber() {
            reply::array_header(&mut conn.out, 2);
            reply::bulk(&mut conn.out, b"pong");
            reply::bulk(&mut conn.out, message.unwrap_or(b""));
        } else if let Some(message) = message {
            reply::bulk(&mut conn.out, message);
        } else {
            reply::simple(&mut conn.out, "PONG");
        }
    }

    fn publish(
        &mut self,
        cx: &mut Context<'_, ServerMsg>,
        key: usize,
        channel: &[u8],
        payload: &[u8],
    ) {
        // Refuse before delivering anywhere, so a message reaches all cores
        // or none.
        let size = channel.len() + payload.len() + PUBLISH_OVERHEAD;
        if cx.cores() > 1 && size > cx.max_payload() {
            let text = format!(
                "ERR message too large: channel and payload take {} bytes, a lane carries at \
                 most {} (raise --lane-capacity)",
                channel.len() + payload.len(),
                cx.max_payload() - PUBLISH_OVERHEAD
            );
            reply::error(&mut self.conns[key].out, &text);
            return;
        }
        // Journaled before anyone receives it: a message that could not be
        // journaled is refused.
        if let Some(journal) = &mut self.journal {
            // `append` logs the journal's own failures, once a spell.
            if let Err(error) = journal.append(cx, channel, payload) {
                let hint = match error {
                    JournalError::FrameTooLarge { .. } => " (raise --journal-segment-size)",
                    _ => "",
                };
                let text = format!("ERR journal: {error}{hint}");
                reply::error(&mut self.conns[key].out, &text);
                return;
            }
        }
        let receivers = self.deliver(channel, payload) + self.forward(cx, channel, payload);
        if let Some(conn) = self.conns.get_mut(key) {
            reply::integer(&mut conn.out, receivers as i64);
        }
    }

    fn subscribe(
        &mut self,
        cx: &mut Context<'_, ServerMsg>,
        key: usize,
        request: &Request<'_>,
        pattern: bool,
    ) {
        if let Some(text) = self.refuse_names(cx, request, pattern) {
            reply::error(&mut self.conns[key].out, &text);
            return;
        }
        let kind: &[u8] = if pattern { b"psubscribe" } else { b"subscribe" };
        for name in request.args().skip(1) {
            let conn = &mut self.conns[key];
            let set = if pattern {
                &mut conn.patterns
            } else {
                &mut conn.channels
            };
            if set.insert(name.into()) {
                if pattern {
                    self.subs.psubscribe(name, key);
                } else {
                    self.subs.subscribe(name, key);
                }
                self.announce(cx, name, pattern, 1, Some(key));
            }
            let conn = &mut self.conns[key];
            reply::array_header(&mut conn.out, 3);
            reply::bulk(&mut conn.out, kind);
            reply::bulk(&mut conn.out, name);
            let count = conn.subscription_count() as i64;
            reply::integer(&mut conn.out, count);
        }
    }

    /// Why a (P)SUBSCRIBE must be refused as a whole, if it must: a name
    /// too large for the notice other cores need, or a pattern long enough
    /// to make matching every PUBLISH against it costly.
    fn refuse_names(
        &self,
        cx: &Context<'_, ServerMsg>,
        request: &Request<'_>,
        pattern: bool,
    ) -> Option<String> {
        let longest = request.args().skip(1).map(<[u8]>::len).max().unwrap_or(0);
        if pattern && longest > MAX_PATTERN_LEN {
            return Some(format!(
                "ERR pattern of {longest} bytes is too long (at most {MAX_PATTERN_LEN})"
            ));
        }
        if cx.cores() > 1 && longest + PUBLISH_OVERHEAD > cx.max_payload() {
            return Some(format!(
                "ERR name of {longest} bytes is too large: a lane carries at most {} \
                 (raise --lane-capacity)",
                cx.max_payload() - PUBLISH_OVERHEAD
            ));
        }
        None
    }

    fn unsubscribe(
        &mut self,
        cx: &mut Context<'_, ServerMsg>,
        key: usize,
        request: &Request<'_>,
        pattern: bool,
    ) {
        let kind: &[u8] = if pattern {
            b"punsubscribe"
        } else {
            b"unsubscribe"
        };
        let conn = &self.conns[key];
        let set = if pattern {
            &conn.patterns
        } else {
            &conn.channels
        };
        // No names: every one held.
        let names: Vec<Box<[u8]>> = if request.len() > 1 {
            request.args().skip(1).map(Box::from).collect()
        } else {
            set.iter().cloned().collect()
        };
        if names.is_empty() {
            let conn = &mut self.conns[key];
            reply::array_header(&mut conn.out, 3);
            reply::bulk(&mut conn.out, kind);
            reply::null_bulk(&mut conn.out);
            let count = conn.subscription_count() as i64;
            reply::integer(&mut conn.out, count);
            return;
        }
        for name in names {
            if self.conns[key].forget(&name, pattern) {
                if pattern {
                    self.subs.punsubscribe(&name, key);
                } else {
                    self.subs.unsubscribe(&name, key);
                }
                // Held like a SUBSCRIBE reply: once the client sees it, no
                // core still counts this subscription in a PUBLISH reply.
                self.announce(cx, &name, pattern, -1, Some(key));
            }
            let conn = &mut self.conns[key];
            reply::array_header(&mut conn.out, 3);
            reply::bulk(&mut conn.out, kind);
            reply::bulk(&mut conn.out, &name);
            let count = conn.subscription_count() as i64;
            reply::integer(&mut conn.out, count);
        }
    }

    fn reset(&mut self, cx: &mut Context<'_, ServerMsg>, key: usize) {
        let conn = &mut self.conns[key];
        let (channels, patterns) = conn.take_subscriptions();
        conn.name = None;
        reply::simple(&mut conn.out, "RESET");
        // Held as for UNSUBSCRIBE: the reply means every core has forgotten.
        for channel in channels {
            self.subs.unsubscribe(&channel, key);
            self.announce(cx, &channel, false, -1, Some(key));
        }
        for pattern in patterns {
            self.subs.punsubscribe(&pattern, key);
            self.announce(cx, &pattern, true, -1, Some(key));
        }
    }

    fn select(&mut self, key: usize, index: &[u8]) {
        let out = &mut self.conns[key].out;
        // Redis reads the index as a C int before it looks for the database.
        match resp::parse_integer(index).map(i32::try_from) {
            Some(Ok(0)) => reply::simple(out, "OK"),
            Some(Ok(_)) => reply::error(out, "ERR DB index is out of range"),
            Some(Err(_)) => reply::error(
                out,
                // Redis's words, its grammar included.
                "ERR value is out of range, value must between -2147483648 and 2147483647",
            ),
            None => reply::error(out, "ERR value is not an integer or out of range"),
        }
    }

    fn hello(&mut self, key: usize, request: &Request<'_>) {
        let conn = &mut self.conns[key];
        if let Some(version) = request.get(1) {
            // As Redis answers: a version that is no integer is a plain
            // error, one it does not speak is NOPROTO.
            let text = match resp::parse_integer(version) {
                Some(2) => None,
                Some(3) => Some("NOPROTO this server speaks RESP2 only"),
                Some(_) => Some("NOPROTO unsupported protocol version"),
                None => Some("ERR Protocol version is not an integer or out of range"),
            };
            if let Some(text) = text {
                reply::error(&mut conn.out, text);
                return;
            }
        }
        // Options are all checked before any takes effect, as Redis does:
        // one missing its value, or unknown, fails the whole command.
        let mut name = None;
        let mut index = 2;
        while index < request.len() {
            let option = request.arg(index);
            let values = request.len() - 1 - index;
            if option.eq_ignore_ascii_case(b"AUTH") && values >= 2 {
                index += 3;
            } else if option.eq_ignore_ascii_case(b"SETNAME") && values >= 1 {
                name = Some(request.arg(index + 1));
                index += 2;
            } else {
                let text = format!("ERR Syntax error in HELLO option '{}'", shown(option));
                reply::error(&mut conn.out, &text);
                return;
            }
        }
        if let Some(name) = name {
            if let Err(text) = set_name(conn, name) {
                reply::error(&mut conn.out, text);
                return;
            }
        }
        reply::array_header(&mut conn.out, 14);
        for (field, value) in [
            ("server", "corelane"),
            // The Redis version INFO reports too: clients pick features
            // by it (the crate's version is INFO's `corelane_version`).
            ("version", info::REDIS_VERSION),
        ] {
            reply::bulk(&mut conn.out, field.as_bytes());
            reply::bulk(&mut conn.out, value.as_bytes());
        }
        reply::bulk(&mut conn.out, b"proto");
        reply::integer(&mut conn.out, 2);
        reply::bulk(&mut conn.out, b"id");
        reply::integer(&mut conn.out, conn.id as i64);
        for (field, value) in [("mode", "standalone"), ("role", "master")] {
            reply::bulk(&mut conn.out, field.as_bytes());
            reply::bulk(&mut conn.out, value.as_bytes());
        }
        reply::bulk(&mut conn.out, b"modules");
        reply::array_header(&mut conn.out, 0);
    }

    fn client(&mut self, cx: &mut Context<'_, ServerMsg>, key: usize, request: &Request<'_>) {
        let sub = request.arg(1).to_ascii_uppercase();
        // A subcommand this server answers has a full name, and `execute`
        // has checked its arity.
        if self.conns[key].last_command.is_none() {
            // Redis 7's words for a subcommand it does not have.
            let text = format!(
                "ERR unknown subcommand '{}'. Try CLIENT HELP.",
                shown(request.arg(1))
            );
            reply::error(&mut self.conns[key].out, &text);
            return;
        }
        match sub.as_slice() {
            b"LIST" => {
                self.list_clients(cx, key, request);
                return;
            }
            b"INFO" => {
                let mut text = String::new();
                let now = std::time::Instant::now();
                client_line(&mut text, &self.conns[key], self.core, now);
                reply::bulk(&mut self.conns[key].out, text.as_bytes());
                return;
            }
            _ => {}
        }
        let conn = &mut self.conns[key];
        match sub.as_slice() {
            b"SETNAME" => match set_name(conn, request.arg(2)) {
                Ok(()) => reply::simple(&mut conn.out, "OK"),
                Err(text) => reply::error(&mut conn.out, text),
            },
            b"GETNAME" => match &conn.name {
                Some(name) => reply::bulk(&mut conn.out, name),
                None => reply::null_bulk(&mut conn.out),
            },
            b"ID" => reply::integer(&mut conn.out, conn.id as i64),
            // Library name and version that clients announce; nothing to keep.
            b"SETINFO" => match check_lib_info(request.arg(2), request.arg(3)) {
                Ok(()) => reply::simple(&mut conn.out, "OK"),
                Err(text) => reply::error(&mut conn.out, &text),
            },
            _ => help(&mut conn.out, CLIENT_HELP),
        }
    }

    fn command(&mut self, key: usize, request: &Request<'_>) {
        let out = &mut self.conns[key].out;
        let sub = request.get(1).map(<[u8]>::to_ascii_uppercase);
        match sub.as_deref() {
            // No command table is published: clients fall back to their
            // defaults (redis-cli only loses hints and completion).
            None | Some(b"DOCS") | Some(b"LIST") => reply::array_header(out, 0),
            // One entry per name asked, nil for each as for a command Redis
            // does not have: a client pairs the entries with its names.
            Some(b"INFO") => {
                let names = request.len() - 2;
                reply::array_header(out, names);
                for _ in 0..names {
                    reply::null_bulk(out);
                }
            }
            // Its arity is checked by `execute`.
            Some(b"COUNT") => reply::integer(out, 0),
            Some(b"HELP") => help(out, COMMAND_HELP),
            Some(_) => reply::error(
                out,
                &format!(
                    "ERR unknown subcommand '{}'. Try COMMAND HELP.",
                    shown(request.arg(1))
                ),
            ),
        }
    }

    fn config(&mut self, key: usize, request: &Request<'_>) {
        let out = &mut self.conns[key].out;
        let sub = request.arg(1).to_ascii_uppercase();
        if sub == b"HELP" {
            help(out, CONFIG_HELP);
            return;
        }
        if sub != b"GET" {
            // Redis's other subcommands are there but refused; a name Redis
            // does not know either gets Redis's words for that.
            let text = if matches!(sub.as_slice(), b"SET" | b"RESETSTAT" | b"REWRITE") {
                "ERR CONFIG is read-only here: only CONFIG GET <parameter> is supported".to_string()
            } else {
                format!(
                    "ERR unknown subcommand '{}'. Try CONFIG HELP.",
                    shown(request.arg(1))
                )
            };
            reply::error(out, &text);
            return;
        }
        // Only subscribers are held to the limit (0: none, as in Redis).
        let output_limit = format!("normal 0 0 0 pubsub {} 0 0", self.config.output_limit);
        let settings = CONFIG
            .iter()
            .copied()
            .chain([("client-output-buffer-limit", output_limit.as_str())]);
        // Each setting once, under the name it was first asked by: as
        // Redis 7 answers, a plain name comes back spelled as given
        // (`SAVE`), a pattern's matches as the settings are named.
        let mut found: Vec<(&str, &[u8], &str)> = Vec::new();
        // A pattern is parsed only as far as a setting's name could match
        // it: parsed whole, one of a few MiB (`[][][]...`) held 30 times
        // its size.
        let longest = settings
            .clone()
            .map(|(name, _)| name.len())
            .max()
            .unwrap_or(0);
        for pattern in request.args().skip(2) {
            let plain = !pattern.iter().any(|byte| b"[*?".contains(byte));
            let glob = if plain {
                None
            } else {
                Glob::within(&pattern.to_ascii_lowercase(), longest)
            };
            for (name, value) in settings.clone() {
                let matches = if plain {
                    pattern.eq_ignore_ascii_case(name.as_bytes())
                } else {
                    glob.as_ref()
                        .is_some_and(|glob| glob.matches(name.as_bytes()))
                };
                if matches && !found.iter().any(|&(seen, _, _)| seen == name) {
                    let shown = if plain { pattern } else { name.as_bytes() };
                    found.push((name, shown, value));
                }
            }
        }
        reply::array_header(out, found.len() * 2);
        for (_, shown, value) in found {
            reply::bulk(out, shown);
            reply::bulk(out, value.as_bytes());
        }
    }
}
