//! Side B in a second process: which transport it speaks, how it is
//! started and stopped, and the directory its ring files live in.
//!
//! Side A starts side B as a child process (a program the caller names:
//! `corelane bench` re-executes itself with a hidden subcommand, the cargo
//! bench re-executes its own binary), hands it what it needs (the ring
//! directory, or a socket or pipes as its standard input and output),
//! times round trips, then hangs up: it drops its ends, and side B, seeing
//! the writer gone or end of file, exits. [`EchoProcess`] kills a child
//! that has not exited by then, and kills it on every other way out too
//! (an error, a panic), so no echo process outlives a run.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::endpoints::{
    echo, time_round_trips, Endpoint, RingEnd, RoundTrips, StreamEnd, TickClock, PATIENCE,
    RING_BYTES,
};
use crate::segment::ipc::{IpcError, IpcPublisher, IpcSubscriber};

/// How the two processes talk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// Two shared-memory rings, one each way.
    Ring,
    /// As `Ring`, every frame with a CRC-32.
    RingChecksummed,
    /// A connected pair of Unix stream sockets.
    Socket,
    /// A pipe each way (side B's standard input and output).
    Pipe,
}

impl Transport {
    /// Every transport, in the order the rows print.
    pub const ALL: [Transport; 4] = [
        Transport::Ring,
        Transport::RingChecksummed,
        Transport::Socket,
        Transport::Pipe,
    ];

    /// The transport's short name, as side B is told it.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Ring => "ring",
            Transport::RingChecksummed => "ring-crc",
            Transport::Socket => "socket",
            Transport::Pipe => "pipe",
        }
    }

    /// The transport of a short name.
    pub fn parse(name: &str) -> Option<Transport> {
        Transport::ALL.into_iter().find(|t| t.name() == name)
    }
}

/// The two CPUs of a measurement: side A's and side B's, read once,
/// before any thread is pinned (a pinned thread, and a process it starts,
/// see only their own CPU). `None` on a machine with fewer than two: the
/// sides then run where the system puts them.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sides {
    /// Side A's CPU.
    pub a: Option<core_affinity::CoreId>,
    /// Side B's CPU.
    pub b: Option<core_affinity::CoreId>,
}

impl Sides {
    /// The first two CPUs this process may use.
    pub fn detect() -> Self {
        match core_affinity::get_core_ids().as_deref() {
            Some([a, b, ..]) => Sides {
                a: Some(*a),
                b: Some(*b),
            },
            _ => Sides::default(),
        }
    }

    /// Pins the calling thread to side A's CPU.
    pub fn pin_a(&self) {
        if let Some(core) = self.a {
            core_affinity::set_for_current(core);
        }
    }

    /// Pins the calling thread to side B's CPU.
    pub fn pin_b(&self) {
        if let Some(core) = self.b {
            core_affinity::set_for_current(core);
        }
    }
}

/// What side B is told: the transport, the directory of the ring files
/// and the CPU to pin itself to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EchoSpec {
    /// How to talk.
    pub transport: Transport,
    /// Where side A made ring `a` and side B makes ring `b`.
    pub dir: PathBuf,
    /// Side B's CPU, if pinned.
    pub cpu: Option<usize>,
}

impl EchoSpec {
    /// The arguments that carry this spec: `TRANSPORT DIR [--cpu N]`. A
    /// program that runs side B takes them after its own.
    pub fn to_args(&self) -> Vec<OsString> {
        let mut args = vec![self.transport.name().into(), self.dir.clone().into()];
        if let Some(cpu) = self.cpu {
            args.push("--cpu".into());
            args.push(cpu.to_string().into());
        }
        args
    }
}

/// Starts side B for a spec, with the given standard input and output.
pub type SpawnEcho<'a> = &'a dyn Fn(&EchoSpec, Stdio, Stdio) -> io::Result<Child>;

/// A [`SpawnEcho`] that runs `command` (a program and its leading
/// arguments) followed by [`EchoSpec::to_args`].
pub fn spawn_command(
    command: &[OsString],
) -> impl Fn(&EchoSpec, Stdio, Stdio) -> io::Result<Child> + '_ {
    move |spec, stdin, stdout| {
        let (program, leading) = command
            .split_first()
            .ok_or_else(|| io::Error::other("no echo command"))?;
        Command::new(program)
            .args(leading)
            .args(spec.to_args())
            .stdin(stdin)
            .stdout(stdout)
            .spawn()
    }
}

/// A child process running side B, killed if it is still running when
/// this is dropped.
pub struct EchoProcess {
    child: Option<Child>,
}

impl EchoProcess {
    /// Takes charge of `child`.
    pub fn new(child: Child) -> Self {
        EchoProcess { child: Some(child) }
    }

    /// The child, to take its standard streams.
    pub fn child(&mut self) -> Option<&mut Child> {
        self.child.as_mut()
    }

    /// Whether the child is still running.
    fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// After side A hung up: waits up to `patience` for the child to exit
    /// by itself, then kills it.
    ///
    /// # Errors
    ///
    /// If the child failed, or had to be killed.
    pub fn finish(mut self, patience: Duration) -> io::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait()? {
                return if status.success() {
                    Ok(())
                } else {
                    Err(io::Error::other(format!("echo process: {status}")))
                };
            }
            if started.elapsed() > patience {
                let _ = child.kill();
                let _ = child.wait();
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "echo process did not exit after the hang-up: killed",
                ));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Drop for EchoProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A fresh directory for ring files, owner-only, removed with everything
/// in it when dropped. It goes under `$TMPDIR` when that is set, else
/// under `/dev/shm` where it is a directory (memory, as rings shared
/// between processes should be: a disk-backed file's dirty pages are
/// written back and write-protected again, and the next write faults),
/// else under the system's temporary directory.
pub struct ScratchDir(PathBuf);

/// Where [`ScratchDir`]s go.
fn scratch_base() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if std::env::var_os("TMPDIR").is_none() && shm.is_dir() {
        shm.to_owned()
    } else {
        std::env::temp_dir()
    }
}

impl ScratchDir {
    /// Makes `corelane-bench-<what>-<pid>-<n>`.
    ///
    /// # Errors
    ///
    /// If no such directory could be made.
    pub fn new(what: &str) -> io::Result<Self> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        loop {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let dir =
                scratch_base().join(format!("corelane-bench-{what}-{}-{n}", std::process::id()));
            match fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => return Ok(ScratchDir(dir)),
                // Left by an earlier process of the same id: not ours.
                Err(error) if error.kind() == io::ErrorKind::AlreadyExists && n < 1000 => {}
                Err(error) => return Err(error),
            }
        }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Waits for the ring at `path`, made by the other process, and opens it;
/// gives up after [`PATIENCE`], or at once if `echo` (the process that
/// makes it) has exited.
fn subscribe_when_ready(
    path: &Path,
    mut echo: Option<&mut EchoProcess>,
) -> io::Result<IpcSubscriber> {
    let started = Instant::now();
    loop {
        match IpcSubscriber::open(path) {
            Ok(subscriber) => return Ok(subscriber),
            Err(IpcError::Segment(_)) if started.elapsed() < PATIENCE => {
                if let Some(echo) = echo.as_deref_mut() {
                    if !echo.running() {
                        return Err(io::Error::other(format!(
                            "echo process exited before making {}",
                            path.display()
                        )));
                    }
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(error) => return Err(io::Error::other(format!("{}: {error}", path.display()))),
        }
    }
}

/// Side A of `transport`: starts side B with `spawn`, pins itself, times
/// round trips for `measure`, hangs up and sees side B exit.
///
/// # Errors
///
/// Starting side B, setting up the transport, or any error of the round
/// trips; side B is killed on every error.
pub fn process_round_trips(
    transport: Transport,
    spawn: SpawnEcho<'_>,
    sides: Sides,
    measure: Duration,
    clock: TickClock,
) -> io::Result<RoundTrips> {
    let cpu = sides.b.map(|core| core.id);
    // The stream transports need no files: their side B is told the
    // current directory and ignores it.
    let spec = &EchoSpec {
        transport,
        dir: PathBuf::from("."),
        cpu,
    };
    match transport {
        Transport::Ring | Transport::RingChecksummed => {
            let scratch = ScratchDir::new("ipc")?;
            let spec = EchoSpec {
                transport,
                dir: scratch.path().to_owned(),
                cpu,
            };
            let publisher = IpcPublisher::create(&scratch.path().join("a"), RING_BYTES)
                .map_err(|error| io::Error::other(format!("ring a: {error}")))?;
            let mut process = EchoProcess::new(spawn(&spec, Stdio::null(), Stdio::null())?);
            let subscriber = subscribe_when_ready(&scratch.path().join("b"), Some(&mut process))?;
            // Side B opened ring `a` before it made `b`, and we have `b`
            // open: both ends hold both files, so their names can go now.
            // The mappings keep the memory until the processes end, however
            // they end, and a Ctrl-C to the whole process group (which
            // kills both sides before either cleans up) leaves nothing
            // under /dev/shm.
            drop(scratch);
            let checksummed = transport == Transport::RingChecksummed;
            let end = RingEnd::new(publisher, subscriber, checksummed);
            time_then_hang_up(end, process, sides, measure, clock)
        }
        Transport::Socket => {
            let (ours, theirs) = UnixStream::pair()?;
            let theirs = Stdio::from(OwnedFd::from(theirs));
            let process = EchoProcess::new(spawn(spec, theirs, Stdio::null())?);
            let end = StreamEnd::new(ours.try_clone()?, ours);
            time_then_hang_up(end, process, sides, measure, clock)
        }
        Transport::Pipe => {
            let mut process = EchoProcess::new(spawn(spec, Stdio::piped(), Stdio::piped())?);
            let child = process
                .child()
                .ok_or_else(|| io::Error::other("no child"))?;
            let (Some(tx), Some(rx)) = (child.stdin.take(), child.stdout.take()) else {
                return Err(io::Error::other("echo process without pipes"));
            };
            time_then_hang_up(StreamEnd::new(tx, rx), process, sides, measure, clock)
        }
    }
}

/// Times round trips on `end`, then drops it (the hang-up) and waits for
/// `process` to exit.
fn time_then_hang_up(
    mut end: impl Endpoint,
    process: EchoProcess,
    sides: Sides,
    measure: Duration,
    clock: TickClock,
) -> io::Result<RoundTrips> {
    sides.pin_a();
    let timed = time_round_trips(&mut end, measure, clock);
    drop(end);
    let finished = process.finish(Duration::from_secs(5));
    let timed = timed?;
    finished?;
    Ok(timed)
}

/// After side A hung up: removes both ring files and their directory.
/// Side A removes them as soon as both sides hold both rings; this is for
/// a side A killed before that (during the few milliseconds of setup),
/// whose files would otherwise stay in memory under /dev/shm until a
/// reboot. Only the two rings are removed, and the directory only if that
/// leaves it empty: `dir` comes from the command line.
fn remove_rings(dir: &Path) {
    for ring in ["a", "b"] {
        let _ = fs::remove_file(dir.join(ring));
    }
    let _ = fs::remove_dir(dir);
}

/// Side B, in the child process: pins itself, then echoes on the
/// transport of `spec` until side A hangs up.
///
/// # Errors
///
/// Setting up the transport, or any error while echoing.
pub fn run_echo_side(spec: &EchoSpec) -> io::Result<()> {
    if let Some(id) = spec.cpu {
        core_affinity::set_for_current(core_affinity::CoreId { id });
    }
    match spec.transport {
        Transport::Ring | Transport::RingChecksummed => {
            let subscriber = subscribe_when_ready(&spec.dir.join("a"), None)?;
            let publisher = IpcPublisher::create(&spec.dir.join("b"), RING_BYTES)
                .map_err(|error| io::Error::other(format!("ring b: {error}")))?;
            let checksummed = spec.transport == Transport::RingChecksummed;
            let echoed = echo(&mut RingEnd::new(publisher, subscriber, checksummed));
            if echoed.is_ok() {
                remove_rings(&spec.dir);
            }
            echoed
        }
        Transport::Socket => {
            let socket = UnixStream::from(io::stdin().as_fd().try_clone_to_owned()?);
            echo(&mut StreamEnd::new(socket.try_clone()?, socket))
        }
        Transport::Pipe => {
            let rx = fs::File::from(io::stdin().as_fd().try_clone_to_owned()?);
            let tx = fs::File::from(io::stdout().as_fd().try_clone_to_owned()?);
            echo(&mut StreamEnd::new(tx, rx))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_echo_process_is_killed_and_reaped() {
        let child = Command::new("sleep").arg("30").spawn().unwrap();
        let proc_dir = PathBuf::from(format!("/proc/{}", child.id()));
        let process = EchoProcess::new(child);
        assert!(proc_dir.exists());
        drop(process);
        // Killed and waited for: not even a zombie is left.
        assert!(!proc_dir.exists());
    }

    #[test]
    fn finish_kills_a_child_that_does_not_exit() {
        let child = Command::new("sleep").arg("30").spawn().unwrap();
        let proc_dir = PathBuf::from(format!("/proc/{}", child.id()));
        let error = EchoProcess::new(child)
            .finish(Duration::from_millis(20))
            .unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert!(!proc_dir.exists());
    }

    #[test]
    fn specs_round_trip_through_their_arguments() {
        let spec = EchoSpec {
            transport: Transport::RingChecksummed,
            dir: PathBuf::from("/tmp/x"),
            cpu: Some(1),
        };
        assert_eq!(spec.to_args(), ["ring-crc", "/tmp/x", "--cpu", "1"]);
        for transport in Transport::ALL {
            assert_eq!(Transport::parse(transport.name()), Some(transport));
        }
        assert_eq!(Transport::parse("carrier-pigeon"), None);
    }

    #[test]
    fn scratch_dirs_are_owner_only_and_removed() {
        use std::os::unix::fs::PermissionsExt;
        let scratch = ScratchDir::new("unit").unwrap();
        let path = scratch.path().to_owned();
        fs::write(path.join("ring"), b"x").unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        drop(scratch);
        assert!(!path.exists());
    }
}
