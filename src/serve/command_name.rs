//! The full name of a command, as CLIENT LIST's `cmd` field shows the
//! last one a connection sent: lower case, a subcommand after its
//! container as `container|sub` (`client|list`), as Redis 7 names them.
//!
//! Only commands this server understands have a name here. A command it
//! does not know (`GET`), or an unknown subcommand of one it does, has none
//! and is shown as `NULL`, as Redis shows a command it does not know; but a
//! subscriber's command that Redis 7.0 has, refused with Redis's words, is
//! named by `redis_commands` as Redis names it (`cmd=get`).

/// Subcommands of CLIENT this server answers.
const CLIENT: &[&str] = &[
    "client|getname",
    "client|help",
    "client|id",
    "client|info",
    "client|list",
    "client|setinfo",
    "client|setname",
];

/// Subcommands of COMMAND this server answers.
const COMMAND: &[&str] = &[
    "command|count",
    "command|docs",
    "command|help",
    "command|info",
    "command|list",
];

/// Subcommands of CONFIG this server knows: GET, and those it refuses as
/// a read-only configuration.
const CONFIG: &[&str] = &[
    "config|get",
    "config|help",
    "config|resetstat",
    "config|rewrite",
    "config|set",
];

/// The full name of the command named `upper` (already in upper case),
/// whose first argument, if any, is `sub`. Called for every command, so
/// a plain command costs one `match` on its name.
pub(crate) fn full_name(upper: &[u8], sub: Option<&[u8]>) -> Option<&'static str> {
    let (container, subcommands) = match upper {
        b"PING" => return Some("ping"),
        b"ECHO" => return Some("echo"),
        b"PUBLISH" => return Some("publish"),
        b"SUBSCRIBE" => return Some("subscribe"),
        b"PSUBSCRIBE" => return Some("psubscribe"),
        b"UNSUBSCRIBE" => return Some("unsubscribe"),
        b"PUNSUBSCRIBE" => return Some("punsubscribe"),
        b"QUIT" => return Some("quit"),
        b"RESET" => return Some("reset"),
        b"SELECT" => return Some("select"),
        b"HELLO" => return Some("hello"),
        b"INFO" => return Some("info"),
        b"CLIENT" => ("client", CLIENT),
        b"COMMAND" => ("command", COMMAND),
        b"CONFIG" => ("config", CONFIG),
        _ => return None,
    };
    // A container alone is named as itself (Redis answers it with an
    // arity error, or for COMMAND, the command table).
    let Some(sub) = sub else {
        return Some(container);
    };
    subcommands.iter().copied().find(|name| {
        let (_, known) = name.split_once('|').expect("a subcommand's full name");
        sub.eq_ignore_ascii_case(known.as_bytes())
    })
}

#[cfg(test)]
mod tests {
    use super::full_name;

    #[test]
    fn commands_are_named_as_redis_7_names_them() {
        assert_eq!(full_name(b"PING", None), Some("ping"));
        assert_eq!(full_name(b"PUBLISH", Some(b"news")), Some("publish"));
        assert_eq!(full_name(b"CLIENT", Some(b"List")), Some("client|list"));
        assert_eq!(full_name(b"CONFIG", Some(b"set")), Some("config|set"));
        assert_eq!(full_name(b"COMMAND", None), Some("command"));
        assert_eq!(full_name(b"CLIENT", Some(b"KILL")), None);
        assert_eq!(full_name(b"GET", Some(b"key")), None);
        assert_eq!(full_name(b"", None), None);
    }
}
