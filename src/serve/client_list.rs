//! CLIENT LIST: one line per connection of every core, filtered by
//! `TYPE` or `ID` as Redis 7 filters them.
//!
//! The core that serves the asking connection writes its own lines and
//! asks every other core for theirs ([`ServerMsg::ListClients`], carrying
//! the filter); each answers with its matching lines
//! ([`ServerMsg::ClientLines`], in pieces that fit a lane frame). The
//! reply goes out when the last piece is in, the lines in the order of
//! their ids, or, for `ID`, in the order the ids were given.

use std::fmt::Write;
use std::time::Instant;

use super::commands::shown;
use super::connection::{ClientListing, Connection};
use super::message::{ServerMsg, ServerMsgRef};
use super::reply;
use super::resp::{self, Request};
use super::server::ServeCore;
use crate::runtime::Context;

/// The connections a CLIENT LIST asks for.
#[derive(rkyv::Archive, rkyv::Serialize, Clone, Debug, PartialEq, Eq)]
pub enum ClientFilter {
    /// Every connection.
    All,
    /// Connections of one type (`TYPE`).
    Type(ClientType),
    /// Connections with these ids (`ID`), sorted, each once.
    Ids(Vec<u64>),
}

/// A connection's type, as `CLIENT LIST TYPE` names it. This server has
/// no replication: no connection is a replica or a master, and asking for
/// them lists none, as on a Redis without replicas.
#[derive(rkyv::Archive, rkyv::Serialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientType {
    /// Not subscribed.
    Normal,
    /// Subscribed to a channel or pattern.
    Pubsub,
    /// A replica (Redis also calls it `slave`).
    Replica,
    /// The master of this server, as seen by a replica.
    Master,
}

impl ClientType {
    /// The type Redis names `name` (in any case).
    fn from_name(name: &[u8]) -> Option<Self> {
        [
            (b"normal".as_slice(), ClientType::Normal),
            (b"pubsub", ClientType::Pubsub),
            (b"replica", ClientType::Replica),
            (b"slave", ClientType::Replica),
            (b"master", ClientType::Master),
        ]
        .into_iter()
        .find(|(known, _)| name.eq_ignore_ascii_case(known))
        .map(|(_, kind)| kind)
    }

    fn of(conn: &Connection) -> Self {
        if conn.is_subscriber() {
            ClientType::Pubsub
        } else {
            ClientType::Normal
        }
    }
}

impl ClientFilter {
    fn admits(&self, conn: &Connection) -> bool {
        match self {
            ClientFilter::All => true,
            ClientFilter::Type(kind) => ClientType::of(conn) == *kind,
            ClientFilter::Ids(ids) => ids.binary_search(&conn.id).is_ok(),
        }
    }

    /// The filter another core sent.
    fn from_archived(archived: &ArchivedClientFilter) -> Self {
        match archived {
            ArchivedClientFilter::All => ClientFilter::All,
            ArchivedClientFilter::Type(kind) => ClientFilter::Type(match kind {
                ArchivedClientType::Normal => ClientType::Normal,
                ArchivedClientType::Pubsub => ClientType::Pubsub,
                ArchivedClientType::Replica => ClientType::Replica,
                ArchivedClientType::Master => ClientType::Master,
            }),
            ArchivedClientFilter::Ids(ids) => {
                ClientFilter::Ids(ids.iter().map(|id| id.to_native()).collect())
            }
        }
    }
}

/// A CLIENT LIST's arguments: the filter, and for `ID` the ids in the
/// order given (repeats kept), which is the order Redis lists them in.
#[derive(Debug, PartialEq, Eq)]
struct ListRequest {
    filter: ClientFilter,
    given: Option<Vec<u64>>,
}

/// Reads the arguments after `CLIENT LIST`, refused with Redis 7's
/// words: `TYPE` takes exactly one type, `ID` at least one integer, and
/// nothing else is an option.
fn parse_request(args: &[&[u8]]) -> Result<ListRequest, String> {
    match args {
        [] => Ok(ListRequest {
            filter: ClientFilter::All,
            given: None,
        }),
        [option, name] if option.eq_ignore_ascii_case(b"TYPE") => match ClientType::from_name(name)
        {
            Some(kind) => Ok(ListRequest {
                filter: ClientFilter::Type(kind),
                given: None,
            }),
            None => Err(format!("ERR Unknown client type '{}'", shown(name))),
        },
        [option, ids @ ..] if option.eq_ignore_ascii_case(b"ID") && !ids.is_empty() => {
            let mut given = Vec::with_capacity(ids.len());
            for id in ids {
                let id = resp::parse_integer(id).ok_or("ERR Invalid client ID")?;
                // Ids start at 1: no connection has any other.
                if let Ok(id @ 1..) = u64::try_from(id) {
                    given.push(id);
                }
            }
            let mut wanted = given.clone();
            wanted.sort_unstable();
            wanted.dedup();
            Ok(ListRequest {
                filter: ClientFilter::Ids(wanted),
                given: Some(given),
            })
        }
        _ => Err("ERR syntax error".to_string()),
    }
}

/// The core that owns connection `id`: core `c` of `cores` hands out ids
/// `c + 1`, `c + 1 + cores`, ... (see `ServeCore::next_id`), and a
/// connection stays on the core that adopted it.
fn owner_of(id: u64, cores: usize) -> usize {
    ((id - 1) % cores as u64) as usize
}

/// Room for everything but the lines in an archived
/// [`ServerMsg::ClientLines`] (or the ids in a [`ServerMsg::ListClients`]):
/// the enum's tags, the waiter, the vector's header and the flag, padded,
/// with margin.
const CLIENT_LINES_OVERHEAD: usize = 64;

impl ServeCore {
    /// CLIENT LIST [TYPE type | ID id ...]: this core's lines, then every
    /// other core's, asked for with [`ServerMsg::ListClients`]. The answer
    /// goes out when the last core's lines are in (see
    /// `client_lines_received`); the connection's further commands wait
    /// for it, so replies keep their order.
    pub(crate) fn list_clients(
        &mut self,
        cx: &mut Context<'_, ServerMsg>,
        key: usize,
        request: &Request<'_>,
    ) {
        let args: Vec<&[u8]> = request.args().skip(2).collect();
        let ListRequest { filter, given } = match parse_request(&args) {
            Ok(request) => request,
            Err(text) => {
                reply::error(&mut self.conns[key].out, &text);
                return;
            }
        };
        let own = self.client_lines(&filter).into_bytes();
        let mut lines = vec![Vec::new(); cx.cores()];
        lines[self.core] = own;
        let waiter = (key as u32, self.conns[key].id);
        let mut waiting = 0;
        let this = self.core;
        for core in (0..cx.cores()).filter(|&core| core != this) {
            waiting += self.ask_for_lines(cx, core, waiter, &filter);
        }
        let conn = &mut self.conns[key];
        let listing = ClientListing {
            lines,
            waiting,
            given,
        };
        if waiting == 0 {
            reply::bulk(&mut conn.out, &listing.arrange());
        } else {
            conn.listing = Some(listing);
        }
    }

    /// Asks `core` for its lines that `filter` admits; returns how many
    /// requests it sent (each answered with its own last piece). An `ID`
    /// filter goes only to the cores that own some of its ids, with just
    /// those ids, in requests that each fit a lane frame.
    fn ask_for_lines(
        &mut self,
        cx: &mut Context<'_, ServerMsg>,
        core: usize,
        waiter: (u32, u64),
        filter: &ClientFilter,
    ) -> usize {
        let ClientFilter::Ids(ids) = filter else {
            self.send_ahead(cx, core, ServerMsgRef::ListClients { waiter, filter });
            return 1;
        };
        let owned: Vec<u64> = ids
            .iter()
            .copied()
            .filter(|&id| owner_of(id, cx.cores()) == core)
            .collect();
        let per_request = (cx.max_payload().saturating_sub(CLIENT_LINES_OVERHEAD) / 8).max(1);
        let mut sent = 0;
        for chunk in owned.chunks(per_request) {
            let filter = ClientFilter::Ids(chunk.to_vec());
            let msg = ServerMsgRef::ListClients {
                waiter,
                filter: &filter,
            };
            self.send_ahead(cx, core, msg);
            sent += 1;
        }
        sent
    }

    /// This core's lines of CLIENT LIST that `filter` admits, one per
    /// connection.
    pub(crate) fn client_lines(&self, filter: &ClientFilter) -> String {
        let now = Instant::now();
        let mut text = String::new();
        for (_, conn) in &self.conns {
            if filter.admits(conn) {
                client_line(&mut text, conn, self.core, now);
            }
        }
        text
    }

    /// Answers another core's [`ServerMsg::ListClients`] for its connection
    /// `waiter`: this core's lines that `filter` admits, in pieces that
    /// each fit a lane frame.
    pub(crate) fn send_client_lines(
        &mut self,
        cx: &mut Context<'_, ServerMsg>,
        to: usize,
        waiter: (u32, u64),
        filter: &ArchivedClientFilter,
    ) {
        let text = self.client_lines(&ClientFilter::from_archived(filter));
        let bytes = text.as_bytes();
        let piece = cx
            .max_payload()
            .saturating_sub(CLIENT_LINES_OVERHEAD)
            .max(1);
        // At least one piece, the last marked: no lines is one empty piece.
        let mut start = 0;
        loop {
            let end = bytes.len().min(start + piece);
            let last = end == bytes.len();
            let lines = &bytes[start..end];
            self.send_ahead(
                cx,
                to,
                ServerMsgRef::ClientLines {
                    waiter,
                    lines,
                    last,
                },
            );
            if last {
                return;
            }
            start = end;
        }
    }

    /// Takes core `from`'s [`ServerMsg::ClientLines`] for the connection
    /// (slab key, id) `waiter`; answers its CLIENT LIST once the last
    /// piece of every request is in, and goes on with the commands that
    /// waited.
    pub(crate) fn client_lines_received(
        &mut self,
        cx: &mut Context<'_, ServerMsg>,
        from: usize,
        waiter: (usize, u64),
        lines: &[u8],
        last: bool,
    ) {
        let (key, id) = waiter;
        let Some(conn) = self.conns.get_mut(key).filter(|conn| conn.id == id) else {
            // The connection closed meanwhile.
            return;
        };
        let Some(listing) = &mut conn.listing else {
            return;
        };
        listing.lines[from].extend_from_slice(lines);
        if last {
            listing.waiting -= 1;
        }
        if listing.waiting > 0 {
            return;
        }
        let listing = conn.listing.take().expect("a listing was checked above");
        reply::bulk(&mut conn.out, &listing.arrange());
        self.mark_dirty(key);
        self.execute_input(cx, key);
        // Read again, as after any pause: a client that shut down its
        // sending side meanwhile is met at the end of its input once the
        // commands that waited have all run (they can stop short of it,
        // at the read pause), and closed then.
        self.mark_unread(key);
    }
}

impl ClientListing {
    /// Every core's lines, as CLIENT LIST answers them: in the order of
    /// their ids, as Redis lists its clients (the order they connected),
    /// or for `ID` in the order the ids were given.
    fn arrange(&self) -> Vec<u8> {
        let text = self.lines.concat();
        let mut lines: Vec<(u64, &[u8])> = text
            .split_inclusive(|&b| b == b'\n')
            .map(|line| (line_id(line), line))
            .collect();
        lines.sort_by_key(|&(id, _)| id);
        let Some(given) = &self.given else {
            return lines
                .into_iter()
                .flat_map(|(_, line)| line)
                .copied()
                .collect();
        };
        let mut arranged = Vec::with_capacity(text.len());
        for id in given {
            if let Ok(at) = lines.binary_search_by_key(id, |&(id, _)| id) {
                arranged.extend_from_slice(lines[at].1);
            }
        }
        arranged
    }
}

/// The id a line of CLIENT LIST starts with (`u64::MAX` if none: such a
/// line would be a bug, listed last).
fn line_id(line: &[u8]) -> u64 {
    line.strip_prefix(b"id=")
        .and_then(|rest| rest.split(|&b| b == b' ').next())
        .and_then(|digits| std::str::from_utf8(digits).ok()?.parse::<u64>().ok())
        .unwrap_or(u64::MAX)
}

/// Appends `conn`'s line of CLIENT LIST, as of `now`, in Redis's
/// `field=value` form with the fields this server keeps, in Redis 7's
/// order: `addr` and `laddr` as they were when the client connected (a
/// client gone meanwhile keeps them; `?:0`, Redis's words for an address
/// it cannot read, only if they could not be read then), `idle` is whole
/// seconds since the server last read from or wrote to the client (since
/// it connected, before either), `flags` is `P` for a subscriber and `N`
/// otherwise, `qbuf` the query buffer (see
/// [`Connection::query_buffer`]) and `omem` the unwritten output in
/// bytes, `cmd` the last command's name (`NULL` before any, or after one
/// this server does not know), and `core` (not in Redis) the core that
/// serves it.
pub(crate) fn client_line(text: &mut String, conn: &Connection, core: usize, now: Instant) {
    let addr = |addr: Option<std::net::SocketAddr>| {
        addr.map_or_else(|| "?:0".to_string(), |addr| addr.to_string())
    };
    let seconds_since = |then: Instant| now.saturating_duration_since(then).as_secs();
    let name = conn.name.as_deref().map(String::from_utf8_lossy);
    let _ = writeln!(
        text,
        "id={} addr={} laddr={} fd={} name={} age={} idle={} flags={} db=0 sub={} psub={} \
         qbuf={} omem={} cmd={} resp=2 core={core}",
        conn.id,
        addr(conn.peer_addr),
        addr(conn.local_addr),
        std::os::fd::AsRawFd::as_raw_fd(&conn.stream),
        name.unwrap_or_default(),
        seconds_since(conn.since),
        seconds_since(conn.last_interaction),
        if conn.is_subscriber() { "P" } else { "N" },
        conn.channels.len(),
        conn.patterns.len(),
        conn.query_buffer(),
        conn.pending_out(),
        conn.last_command.unwrap_or("NULL"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(args: &[&str]) -> Result<ListRequest, String> {
        let args: Vec<&[u8]> = args.iter().map(|arg| arg.as_bytes()).collect();
        parse_request(&args)
    }

    #[test]
    fn arguments_are_read_as_redis_7_reads_them() {
        assert_eq!(parsed(&[]).unwrap().filter, ClientFilter::All);
        let pubsub = ClientFilter::Type(ClientType::Pubsub);
        assert_eq!(parsed(&["type", "PubSub"]).unwrap().filter, pubsub);
        let slave = parsed(&["TYPE", "slave"]).unwrap().filter;
        assert_eq!(slave, ClientFilter::Type(ClientType::Replica));

        let ids = parsed(&["id", "7", "0", "-3", "2", "7"]).unwrap();
        assert_eq!(ids.filter, ClientFilter::Ids(vec![2, 7]));
        assert_eq!(ids.given, Some(vec![7, 2, 7]));

        for (args, error) in [
            (&["TYPE", "nope"][..], "ERR Unknown client type 'nope'"),
            (&["TYPE"], "ERR syntax error"),
            (&["ID"], "ERR syntax error"),
            (&["TYPE", "normal", "ID", "1"], "ERR syntax error"),
            (&["ID", "1", "one"], "ERR Invalid client ID"),
            (&["ID", "01"], "ERR Invalid client ID"),
            (&["ID", "18446744073709551615"], "ERR Invalid client ID"),
        ] {
            assert_eq!(parsed(args), Err(error.to_string()), "{args:?}");
        }
    }

    #[test]
    fn ids_are_owned_by_the_core_that_hands_them_out() {
        // Three cores: core 0 hands out 1, 4, 7; core 1 2, 5; core 2 3, 6.
        let owners: Vec<usize> = (1..=7).map(|id| owner_of(id, 3)).collect();
        assert_eq!(owners, [0, 1, 2, 0, 1, 2, 0]);
        assert_eq!(owner_of(u64::MAX, 1), 0);
    }

    #[test]
    fn lines_are_arranged_by_id_or_as_given() {
        let lines = vec![
            b"id=4 core=0\nid=1 core=0\n".to_vec(),
            b"id=2 core=1\n".to_vec(),
        ];
        let by_id = ClientListing {
            lines: lines.clone(),
            waiting: 0,
            given: None,
        };
        assert_eq!(by_id.arrange(), b"id=1 core=0\nid=2 core=1\nid=4 core=0\n");
        let as_given = ClientListing {
            lines,
            waiting: 0,
            given: Some(vec![4, 9, 2, 4]),
        };
        assert_eq!(
            as_given.arrange(),
            b"id=4 core=0\nid=2 core=1\nid=4 core=0\n"
        );
    }

    /// A connection over a loopback socket of its own, with the client's
    /// end of it.
    fn connection(pool: &crate::pool::Pool) -> (Connection, std::net::TcpStream) {
        use crate::serve::output::{OutputBuffer, OutputPool};
        use crate::serve::resp::RequestParser;

        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let peer = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (stream, _) = listener.accept().unwrap();
        stream.set_nonblocking(true).unwrap();
        let out = OutputBuffer::new(OutputPool::new(pool.lender()));
        let stream = mio::net::TcpStream::from_std(stream);
        let conn = Connection::new(stream, 5, RequestParser::default(), out);
        (conn, peer)
    }

    #[test]
    fn a_line_counts_idle_from_the_last_interaction() {
        use crate::pool::{Pool, PoolConfig};

        let pool = Pool::new(&PoolConfig::default());
        let (mut conn, _peer) = connection(&pool);
        let now = conn.since + std::time::Duration::from_secs(9);

        // Nothing read or written yet: idle since it connected.
        let mut line = String::new();
        client_line(&mut line, &conn, 1, now);
        assert!(line.contains(" age=9 idle=9 flags=N "), "{line}");
        assert!(line.ends_with(" omem=0 cmd=NULL resp=2 core=1\n"), "{line}");

        conn.last_interaction = conn.since + std::time::Duration::from_millis(4500);
        conn.last_command = Some("client|list");
        line.clear();
        client_line(&mut line, &conn, 1, now);
        assert!(line.contains(" age=9 idle=4 flags=N "), "{line}");
        assert!(line.ends_with(" cmd=client|list resp=2 core=1\n"), "{line}");
    }

    /// Reads and writes of bytes, not only commands, are interactions, as
    /// Redis counts them: a client sending a command a byte at a time, or
    /// a subscriber that only receives messages, is not idle. Before,
    /// only a command reset `idle`.
    #[test]
    fn reads_and_writes_reset_idle() {
        use crate::pool::{Pool, PoolConfig};
        use crate::serve::connection::ReadOutcome;
        use std::io::{Read, Write};

        let pool = Pool::new(&PoolConfig::default());
        let (mut conn, mut peer) = connection(&pool);
        let long_ago = conn.since;

        conn.last_interaction = long_ago;
        peer.write_all(b"*1\r\n$4\r\nPI").unwrap();
        let read = loop {
            match conn.read_chunk(&pool).unwrap() {
                ReadOutcome::Drained => continue,
                outcome => break outcome,
            }
        };
        assert_eq!(read, ReadOutcome::Data);
        assert!(conn.last_interaction > long_ago);

        conn.last_interaction = long_ago;
        reply::simple(&mut conn.out, "PONG");
        assert!(conn.write_out().unwrap());
        let mut pong = [0; 7];
        peer.read_exact(&mut pong).unwrap();
        assert_eq!(&pong, b"+PONG\r\n");
        assert!(conn.last_interaction > long_ago);

        // Nothing to write, nothing written: no interaction.
        conn.last_interaction = long_ago;
        assert!(conn.write_out().unwrap());
        assert_eq!(conn.last_interaction, long_ago);
    }

    /// `qbuf` is what Redis 7 shows: the bytes not yet parsed, where the
    /// whole arguments of a partial command are parsed (3 bytes of a
    /// 10-byte payload wait here, as `redis-server` 7.0 shows it), and
    /// while the connection's own commands run, every byte read with them
    /// (its own CLIENT LIST sees the 26 bytes `redis-cli` sent). Before,
    /// the running connection showed 0 and a partial command all its
    /// bytes.
    #[test]
    fn qbuf_counts_the_query_buffer_as_redis_does() {
        use crate::pool::{Pool, PoolConfig};

        let pool = Pool::new(&PoolConfig::default());
        let (mut conn, mut peer) = connection(&pool);
        let qbuf = |conn: &Connection| {
            let mut line = String::new();
            client_line(&mut line, conn, 0, conn.since);
            line_field::<usize>(&line, "qbuf")
        };
        assert_eq!(qbuf(&conn), 0);

        let partial = b"*3\r\n$7\r\nPUBLISH\r\n$2\r\nch\r\n$10\r\nhel";
        std::io::Write::write_all(&mut peer, partial).unwrap();
        while conn.input.len() < partial.len() {
            conn.read_chunk(&pool).unwrap();
        }
        assert_eq!(qbuf(&conn), partial.len());
        assert!(conn.parser.parse(conn.input.data()).unwrap().is_none());
        assert_eq!(qbuf(&conn), 3);

        // Its commands running (the input taken out, as `execute_input`
        // does), the connection's own line counts what was read with them.
        let _input = std::mem::take(&mut conn.input);
        let _parser = std::mem::take(&mut conn.parser);
        conn.running_input = b"*2\r\n$6\r\nCLIENT\r\n$4\r\nLIST\r\n".len();
        assert_eq!(qbuf(&conn), 26);
    }

    /// A client gone (its socket reset) while the server has not yet read
    /// its end, as a connection waiting for its own CLIENT LIST reads
    /// nothing, is listed with the addresses it had, as Redis lists a
    /// client it has not yet found gone. Before, the socket was asked at
    /// listing time, and a reset socket answered `addr=?:0 laddr=?:0`.
    #[test]
    fn a_client_gone_keeps_its_address() {
        use crate::pool::{Pool, PoolConfig};

        let pool = Pool::new(&PoolConfig::default());
        let (conn, peer) = connection(&pool);
        let client = peer.local_addr().unwrap().to_string();
        let server = peer.peer_addr().unwrap().to_string();

        // Closed with a zero linger time: the server's socket is reset.
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: `peer` is an open socket; `linger` is a live value whose
        // size is passed with it.
        let set = unsafe {
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&peer),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&linger as *const libc::linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            )
        };
        assert_eq!(set, 0, "{}", std::io::Error::last_os_error());
        drop(peer);
        let mut byte = [0; 1];
        let reset = loop {
            match std::io::Read::read(&mut &conn.stream, &mut byte) {
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                other => break other,
            }
        };
        assert_eq!(
            reset.map_err(|error| error.kind()),
            Err(std::io::ErrorKind::ConnectionReset)
        );
        assert!(
            conn.stream.peer_addr().is_err(),
            "the socket forgot its peer"
        );

        let mut line = String::new();
        client_line(&mut line, &conn, 0, conn.since);
        assert_eq!(line_field::<String>(&line, "addr"), client, "{line}");
        assert_eq!(line_field::<String>(&line, "laddr"), server, "{line}");
    }

    /// The value of `field` in a CLIENT LIST line.
    fn line_field<T: std::str::FromStr>(line: &str, field: &str) -> T
    where
        T::Err: std::fmt::Debug,
    {
        let value = line
            .split(' ')
            .find_map(|pair| pair.strip_prefix(field)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("no {field} in {line}"));
        value.parse().unwrap()
    }
}
