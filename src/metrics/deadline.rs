//! Socket reads and writes bounded by one deadline for a whole exchange,
//! not by a timeout per call: a peer that trickles a byte at a time cannot
//! stretch the exchange past the deadline. `corelane stat` uses them (the
//! metrics endpoint polls nonblocking sockets against its own deadlines).

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Time left before `deadline`; a `TimedOut` error once there is none
/// (a zero timeout would mean none at all to the socket).
pub(crate) fn time_left(deadline: Instant) -> io::Result<Duration> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|left| !left.is_zero())
        .ok_or_else(|| io::Error::new(io::ErrorKind::TimedOut, "out of time"))
}

/// One read that gives up at `deadline`.
pub(crate) fn read_by(
    stream: &mut TcpStream,
    buf: &mut [u8],
    deadline: Instant,
) -> io::Result<usize> {
    stream.set_read_timeout(Some(time_left(deadline)?))?;
    stream.read(buf)
}

/// `write_all` that gives up at `deadline`, however little each write
/// moves.
pub(crate) fn write_all_by(
    stream: &mut TcpStream,
    mut bytes: &[u8],
    deadline: Instant,
) -> io::Result<()> {
    while !bytes.is_empty() {
        stream.set_write_timeout(Some(time_left(deadline)?))?;
        match stream.write(bytes) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(written) => bytes = &bytes[written..],
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}
