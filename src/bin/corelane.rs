//! The `corelane` command line.
//!
//! `corelane serve` runs the Redis-protocol pub/sub server until SIGINT or
//! SIGTERM, then shuts down gracefully and prints what it did. Reports go
//! to stdout, diagnostics to stderr (`RUST_LOG` sets the level).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};

use clap::{Parser, Subcommand, ValueEnum};
use corelane::bench::Settings;
use corelane::metrics::export::IntervalLog;
use corelane::metrics::http::MetricsServer;
use corelane::metrics::watch::{WatchConfig, Watcher};
use corelane::runtime::{IdleStrategy, RuntimeHandle};
use corelane::segment::journal::writer::MAX_SEGMENT_SIZE;
use corelane::segment::journal::{Durability, JournalConfig, JournalError};
use corelane::serve::{ServeError, Server, ServerConfig};

#[derive(Parser)]
#[command(
    name = "corelane",
    version,
    about = "A thread-per-core messaging runtime"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the pub/sub server that speaks the Redis protocol (RESP2).
    Serve(ServeArgs),
    /// Inspect or tail a journal (see `serve --journal`).
    #[command(subcommand)]
    Journal(journal_cli::JournalCommand),
    /// Measure this machine's floor and corelane against its peers.
    Bench(BenchArgs),
    /// Show a running server's cores live, from its metrics endpoint.
    ///
    /// Rates (request/s: commands served; deliver/s, send/s, refuse/s:
    /// messages between cores) and busy% are since the previous refresh;
    /// backlog and connections are as of the refresh; p99_us is
    /// the delivery p99 since the server started (the largest over message
    /// kinds), so a spike long past still shows there.
    Stat(StatArgs),
    /// Side B of `bench`'s IPC rows (started by `bench` itself).
    #[command(hide = true)]
    BenchEcho(BenchEchoArgs),
}

#[derive(clap::Args)]
struct BenchEchoArgs {
    /// ring, ring-crc, socket or pipe.
    transport: String,
    /// The directory of the ring files.
    dir: std::path::PathBuf,
    /// The CPU to pin to.
    #[arg(long)]
    cpu: Option<usize>,
}

#[derive(clap::Args)]
struct BenchArgs {
    /// A smoke run of about 20 seconds (for CI), instead of a few minutes.
    #[arg(long)]
    quick: bool,
    /// Print the results as JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Draw the latency percentile distributions into this SVG file.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<std::path::PathBuf>,
    /// Offered rates of the pipeline, requests per second (comma-separated).
    #[arg(long, value_delimiter = ',')]
    rates: Option<Vec<u64>>,
    /// Interleaved rounds of the pipeline, IPC and pools rows.
    #[arg(long)]
    rounds: Option<usize>,
    /// Seconds each timed measurement runs.
    #[arg(long)]
    seconds: Option<f64>,
    /// How corelane's pipeline cores idle between requests: one run per
    /// strategy listed (comma-separated). Default: busy-spin (the bar's
    /// configuration) and backoff (the runtime's default).
    #[arg(long, value_enum, value_delimiter = ',')]
    idle: Option<Vec<Idle>>,
    /// Run only these sections (comma-separated): record, floor, lanes,
    /// ipc, timers, pools, pipeline.
    #[arg(long, value_delimiter = ',', value_parser = clap::builder::PossibleValuesParser::new(corelane::bench::SECTIONS))]
    only: Option<Vec<String>>,
}

#[derive(clap::Args)]
struct StatArgs {
    /// The server's metrics endpoint (`serve --metrics`), HOST:PORT or a
    /// bare port on 127.0.0.1.
    #[arg(value_parser = metrics_addr)]
    addr: SocketAddr,
    /// Seconds between refreshes.
    #[arg(long, default_value_t = 1.0)]
    every: f64,
    /// Stop after this many refreshes, at least 1 (default: until
    /// interrupted).
    #[arg(long, value_parser = parse_count)]
    count: Option<u64>,
}

#[path = "cli/journal.rs"]
mod journal_cli;
#[path = "cli/journal_follow.rs"]
mod journal_follow;

#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on, HOST:PORT (a name such as localhost:6380 is
    /// resolved; the first address is used).
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:6380", value_parser = bind_addr)]
    bind: SocketAddr,
    /// Not a flag of its own: redis-server's `--port` is the habit, so it
    /// is refused with the `--bind` to give (hidden from `--help`).
    #[arg(long, hide = true, value_name = "PORT", value_parser = port_flag)]
    port: Option<std::convert::Infallible>,
    /// Number of cores (event loops); default one per CPU. More cores than
    /// CPUs is allowed, with a warning: their loops are pinned to the CPUs
    /// in turn, several to a CPU, and yield instead of spinning, so the
    /// extra cores add no parallelism.
    #[arg(long, value_name = "N")]
    cores: Option<usize>,
    /// Bytes of frames per lane between two cores: a power of two from
    /// 1024 to 1 GiB. The largest publishable message is about half of it
    /// (with more than one core), and a request's bulk strings may hold
    /// half of it too (8 MiB at least); all lanes together take cores x
    /// cores x this (committed as used), which may not pass 4 GiB.
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20)]
    lane_capacity: usize,
    /// How idle cores wait for work.
    #[arg(long, value_enum, default_value_t = Idle::Backoff)]
    idle: Idle,
    /// Unwritten bytes at which a subscriber that does not read is
    /// disconnected; 0 for no limit.
    #[arg(long, value_name = "BYTES", default_value_t = 32 << 20)]
    output_limit: usize,
    /// Journal every PUBLISH under this directory (one journal per core,
    /// in DIR/core-N).
    #[arg(long, value_name = "DIR")]
    journal: Option<std::path::PathBuf>,
    /// When journal frames are synced to disk: none, each, frames:N or
    /// ms:N (every N frames or N milliseconds). Needs --journal.
    // Refused without --journal rather than ignored: a user who asks for
    // `each` alone would otherwise believe PUBLISHes reach the disk.
    #[arg(long, value_name = "WHEN", default_value = "ms:100", value_parser = parse_durability, requires = "journal")]
    journal_sync: Durability,
    /// Bytes of frames per journal segment file, from 4096 to 1 GiB (rounded
    /// up to a multiple of 32). A PUBLISH whose frame does not fit in one
    /// segment gets an error reply. Needs --journal.
    #[arg(long, value_name = "BYTES", default_value_t = 64 << 20, value_parser = segment_size, requires = "journal")]
    journal_segment_size: usize,
    /// Serve Prometheus metrics over HTTP at ADDR (GET /metrics, and
    /// /metrics.json); a bare port means 127.0.0.1:PORT.
    #[arg(long, value_name = "ADDR", value_parser = metrics_addr)]
    metrics: Option<SocketAddr>,
    /// Write each core's delivery latency every second to this
    /// HdrHistogram interval log (V2 compressed); an existing file is
    /// replaced.
    #[arg(long, value_name = "FILE")]
    latency_log: Option<std::path::PathBuf>,
    /// Warn when a handler runs longer than this many milliseconds (0: off).
    #[arg(long, default_value_t = 500)]
    stall_ms: u64,
    /// Warn when a core's delivery p99, averaged over its last 10 seconds
    /// with deliveries (quiet seconds are left out), passes this many
    /// microseconds.
    #[arg(long)]
    p99_limit_us: Option<u64>,
}

/// `HOST:PORT`; a bare port is refused with the address to write instead.
fn bind_addr(text: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = text.parse::<u16>() {
        return Err(format!(
            "{text:?} is a port alone: give HOST:PORT (--bind 127.0.0.1:{port} for loopback, \
             --bind 0.0.0.0:{port} for every interface)"
        ));
    }
    port_in_range(text)?;
    if !text.contains(':') {
        // A host alone, as redis-server's `bind` takes it.
        return Err(format!(
            "{text:?} has no port: give HOST:PORT (--bind {text}:6380, the default port)"
        ));
    }
    resolve(text)
}

/// `PORT` alone is a loopback port; otherwise `HOST:PORT`.
fn metrics_addr(text: &str) -> Result<SocketAddr, String> {
    match text.parse::<u16>() {
        Ok(port) => Ok(SocketAddr::from(([127, 0, 0, 1], port))),
        Err(_) => {
            port_in_range(text)?;
            resolve(text)
        }
    }
}

/// `--port`, always refused: the port is given with the host, in `--bind`.
fn port_flag(text: &str) -> Result<std::convert::Infallible, String> {
    Err(format!(
        "the port is given in --bind HOST:PORT (--bind 127.0.0.1:{text} for loopback, \
         --bind 0.0.0.0:{text} for every interface)"
    ))
}

/// Refuses a number too large for a port. Without this, `70000` reads as
/// a host name and is refused as a host with no port, which sends the
/// user looking for the wrong mistake.
fn port_in_range(text: &str) -> Result<(), String> {
    if !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(format!(
            "{text:?} is not a port: ports run from 0 to {}",
            u16::MAX
        ));
    }
    Ok(())
}

/// The smallest `--journal-segment-size`: one page, a few dozen small
/// messages. Below it the writer would keep a size no PUBLISH fits in, and
/// the server would start only to refuse every message.
const MIN_SEGMENT_SIZE: usize = 4096;

/// A journal segment size the writer keeps as given (bar rounding up to
/// the frame alignment): it would silently change one outside its range.
fn segment_size(text: &str) -> Result<usize, String> {
    let max = MAX_SEGMENT_SIZE;
    let range = format!("from {MIN_SEGMENT_SIZE} to {max} bytes");
    let size: usize = text
        .parse()
        .map_err(|error| format!("{text:?}: {error} (give a size {range})"))?;
    if !(MIN_SEGMENT_SIZE..=max).contains(&size) {
        return Err(format!("{size}: give a size {range}"));
    }
    Ok(size)
}

/// `stat --count`: how many refreshes, at least one.
fn parse_count(text: &str) -> Result<u64, String> {
    match text.parse::<u64>() {
        Ok(0) => Err("give at least 1 (or leave --count out to refresh until interrupted)".into()),
        Ok(count) => Ok(count),
        Err(error) => Err(format!("{text:?}: {error}")),
    }
}

fn parse_durability(text: &str) -> Result<Durability, String> {
    // N counts frames or milliseconds between syncs: 0 of either would
    // mean `each` under another name, so it is refused as a likely slip.
    let number = |n: &str| match n.parse::<u64>() {
        Ok(0) => Err(format!(
            "{text:?}: N must be at least 1 (to sync after every frame, give each)"
        )),
        Ok(n) => Ok(n),
        Err(e) => Err(format!(
            "{text:?}: {e} (expected none, each, frames:N or ms:N)"
        )),
    };
    match text.split_once(':') {
        None if text == "none" => Ok(Durability::None),
        None if text == "each" => Ok(Durability::EachFrame),
        Some(("frames", n)) => Ok(Durability::EveryFrames(number(n)?)),
        Some(("ms", n)) => Ok(Durability::Every(std::time::Duration::from_millis(number(
            n,
        )?))),
        _ => Err(format!("{text:?}: expected none, each, frames:N or ms:N")),
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum Idle {
    /// Spin: lowest latency, a CPU per core always busy.
    BusySpin,
    /// Spin briefly, then yield the CPU on each idle turn.
    SpinYield,
    /// Spin, yield, then park until work arrives.
    Backoff,
    /// Park at once when idle.
    Park,
}

impl From<Idle> for IdleStrategy {
    fn from(idle: Idle) -> Self {
        match idle {
            Idle::BusySpin => IdleStrategy::BusySpin,
            Idle::SpinYield => IdleStrategy::SpinThenYield { spins: 1000 },
            Idle::Backoff => IdleStrategy::default(),
            Idle::Park => IdleStrategy::Park,
        }
    }
}

fn resolve(text: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    if !text.contains(':') {
        return Err(format!("{text:?} has no port: give HOST:PORT"));
    }
    let mut addrs = text
        .to_socket_addrs()
        .map_err(|error| format!("cannot resolve {text:?} as HOST:PORT: {error}"))?;
    addrs
        .next()
        .ok_or_else(|| format!("{text:?} resolves to no address"))
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Journal(command) => journal_cli::run(command),
        Command::Bench(args) => bench(args),
        Command::Stat(args) => stat(args),
        Command::BenchEcho(args) => bench_echo(args),
    }
}

fn bench_echo(args: BenchEchoArgs) -> ExitCode {
    use corelane::bench::ipc::{run_echo_side, EchoSpec, Transport};
    // The hang-up (the ring's writer gone) is how every run ends: not news.
    log::set_max_level(log::LevelFilter::Warn);
    let Some(transport) = Transport::parse(&args.transport) else {
        eprintln!(
            "corelane: bench-echo: unknown transport {:?}",
            args.transport
        );
        return ExitCode::FAILURE;
    };
    let spec = EchoSpec {
        transport,
        dir: args.dir,
        cpu: args.cpu,
    };
    match run_echo_side(&spec) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("corelane: bench-echo {}: {error}", args.transport);
            ExitCode::FAILURE
        }
    }
}

fn bench(args: BenchArgs) -> ExitCode {
    if let Some(only) = &args.only {
        // Else the flag would be dropped in silence, and the run look like
        // one that measured what it asked for.
        let given = [
            ("--rates", args.rates.is_some()),
            ("--idle", args.idle.is_some()),
        ];
        if let Some((flag, _)) = given.iter().find(|(_, given)| *given) {
            if !only.iter().any(|section| section == "pipeline") {
                eprintln!(
                    "corelane: {flag} sets the pipeline section, and --only {} does not run it",
                    only.join(",")
                );
                return ExitCode::FAILURE;
            }
        }
    }
    let mut settings = if args.quick {
        Settings::quick()
    } else {
        Settings::full()
    };
    if let Some(rates) = args.rates {
        // A rate of 0 used to be dropped in silence (and with it the whole
        // pipeline section, for `--rates 0`): refuse it instead.
        if rates.contains(&0) {
            eprintln!("corelane: --rates must be positive requests per second");
            return ExitCode::FAILURE;
        }
        settings.rates = rates;
    }
    if let Some(rounds) = args.rounds {
        // Like a zero rate or zero seconds, zero rounds is refused rather
        // than quietly run as one.
        if rounds == 0 {
            eprintln!("corelane: --rounds must be at least 1");
            return ExitCode::FAILURE;
        }
        settings.rounds = rounds;
    }
    if let Some(seconds) = args.seconds {
        match std::time::Duration::try_from_secs_f64(seconds) {
            Ok(measure) if seconds > 0.0 => settings.measure = measure,
            _ => {
                eprintln!("corelane: --seconds must be a positive number");
                return ExitCode::FAILURE;
            }
        }
    }
    if let Some(idle) = args.idle {
        settings.pipeline_idle = idle.into_iter().map(IdleStrategy::from).collect();
    }
    if let (Some(path), Some(only)) = (&args.plot, &args.only) {
        // Else the file would get axes and no curve, after the whole run.
        let plotted = corelane::bench::PLOTTED_SECTIONS;
        if !only
            .iter()
            .any(|section| plotted.contains(&section.as_str()))
        {
            eprintln!(
                "corelane: --plot {} draws the {} sections' latency, and --only {} runs none \
                 of them",
                path.display(),
                plotted.join(", "),
                only.join(",")
            );
            return ExitCode::FAILURE;
        }
    }
    settings.only = args.only;
    // Opened before the run, so that a path that cannot be written is
    // refused at once, not after minutes of measuring.
    let plot = match args.plot {
        None => None,
        Some(path) => match std::fs::File::create(&path) {
            Ok(file) => Some((file, path)),
            Err(error) => {
                eprintln!("corelane: cannot write {}: {error}", path.display());
                return ExitCode::FAILURE;
            }
        },
    };
    // Side B of the IPC rows is this program again.
    settings.echo_command = std::env::current_exe()
        .ok()
        .map(|exe| vec![exe.into_os_string(), "bench-echo".into()]);
    let report = corelane::bench::run(&settings);
    if args.json {
        println!("{:#}", report.to_json());
    } else {
        print!("{}", report.to_table());
    }
    if let Some((mut file, path)) = plot {
        use std::io::Write;
        let svg =
            corelane::bench::plot::to_svg("corelane bench: latency by percentile", &report.curves);
        if let Err(error) = file.write_all(svg.as_bytes()) {
            eprintln!("corelane: cannot write {}: {error}", path.display());
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

fn stat(args: StatArgs) -> ExitCode {
    let every = match std::time::Duration::try_from_secs_f64(args.every) {
        Ok(every) if args.every > 0.0 => every,
        _ => {
            eprintln!("corelane: --every must be a positive number of seconds");
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout().lock();
    match corelane::metrics::stat::watch(args.addr, every, args.count, &mut out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let hint = match error.kind() {
                std::io::ErrorKind::ConnectionRefused => {
                    " (is `corelane serve --metrics` listening there?)"
                }
                // A read timeout: something listens but sends no HTTP
                // answer.
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                    " (no HTTP answer within 5 s: give the port of `serve --metrics`, \
                     not the Redis port)"
                }
                // An answer that is not HTTP, as the server's own Redis port
                // gives (`-ERR unknown command 'GET'`).
                std::io::ErrorKind::InvalidData => {
                    " (give the port of `serve --metrics`, not the Redis port)"
                }
                _ => "",
            };
            eprintln!("corelane: stat {}: {error}{hint}", args.addr);
            ExitCode::FAILURE
        }
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    // Block the stop signals before any thread starts, so every thread
    // inherits the mask and only the waiter below receives them.
    let signals = match StopSignals::block() {
        Ok(signals) => signals,
        Err(error) => {
            eprintln!("corelane: cannot set up signal handling: {error}");
            return ExitCode::FAILURE;
        }
    };
    // A journal directory the server is about to create: said once it
    // has, so that a mistyped path does not go unnoticed.
    let new_journal_dir = match &args.journal {
        Some(dir) => match check_journal_dir(dir) {
            Ok(exists) => (!exists).then_some(dir),
            Err(error) => {
                eprintln!("corelane: --journal {}: {error}", dir.display());
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    // Every other flag's resource is taken before the server starts, so
    // one that fails leaves nothing behind: no journal directory, no
    // segments reserved on disk.
    if args.metrics == Some(args.bind) && args.bind.port() != 0 {
        // Else the metrics endpoint takes the port first and the server
        // is told another server holds it, which sends the user looking
        // for a process that is not there.
        eprintln!(
            "corelane: --metrics {} is the address --bind serves on: give the metrics \
             endpoint a port of its own",
            args.bind
        );
        return ExitCode::FAILURE;
    }
    let metrics_listener = match args.metrics {
        Some(addr) => match std::net::TcpListener::bind(addr) {
            Ok(listener) => Some(listener),
            Err(error) => {
                eprintln!("corelane: cannot serve metrics on {addr}: {error}");
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    let latency_log = match &args.latency_log {
        Some(path) => match LatencyLog::open(path) {
            Ok(log) => Some(log),
            Err(error) => {
                eprintln!("corelane: cannot create {}: {error}", path.display());
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    let config = ServerConfig {
        bind: args.bind,
        cores: args.cores,
        lane_capacity: args.lane_capacity,
        idle: args.idle.into(),
        output_limit: args.output_limit,
        journal: args.journal.clone(),
        journal_config: JournalConfig {
            segment_size: args.journal_segment_size,
            durability: args.journal_sync,
        },
        ..ServerConfig::default()
    };
    // The waiter starts before the server, so a signal during start-up
    // (lanes for many cores take a while) is not ignored.
    let started: Arc<OnceLock<RuntimeHandle>> = Arc::new(OnceLock::new());
    let runtime = Arc::clone(&started);
    std::thread::spawn(move || loop {
        let signal = signals.wait();
        match runtime.get() {
            Some(runtime) if !runtime.is_stopping() => {
                log::info!(
                    "{}: shutting down (a second Ctrl-C or SIGTERM stops at once)",
                    signal_name(signal)
                );
                runtime.stop();
            }
            Some(_) => {
                eprintln!(
                    "corelane: {} during shutdown: exiting now",
                    signal_name(signal)
                );
                std::process::exit(130);
            }
            None => {
                eprintln!("corelane: {} during start-up: exiting", signal_name(signal));
                std::process::exit(130);
            }
        }
    });
    let server = match Server::start(config) {
        Ok(server) => server,
        Err(error) => {
            let hint = match (&error, &args.journal) {
                (ServeError::Bind(_, error), _)
                    if error.kind() == std::io::ErrorKind::AddrInUse =>
                {
                    " (another server is listening there: stop it, or pick another port \
                     with --bind HOST:PORT)"
                        .to_string()
                }
                // The writer will not append after frames it cannot trust:
                // say how to see them and how to start again.
                (
                    ServeError::Journal(JournalError::Damaged { .. } | JournalError::Segment(_)),
                    Some(dir),
                ) => format!(
                    " (`corelane journal inspect {}` shows the damage; to start a new journal, \
                     move that one aside or pick another --journal)",
                    dir.display()
                ),
                _ => String::new(),
            };
            eprintln!("corelane: {error}{hint}");
            if let Some(log) = latency_log {
                log.discard();
            }
            return ExitCode::FAILURE;
        }
    };
    let _ = started.set(server.runtime());
    if let Some(dir) = new_journal_dir {
        log::info!("created the journal directory {}", dir.display());
    }
    let _metrics_endpoint = match metrics_listener {
        Some(listener) => {
            let runtime = server.runtime();
            match MetricsServer::on(listener, move || runtime.metrics()) {
                Ok(endpoint) => {
                    log::info!("metrics on http://{}/metrics", endpoint.local_addr());
                    Some(endpoint)
                }
                Err(error) => {
                    eprintln!("corelane: cannot start the metrics endpoint: {error}");
                    server.runtime().stop();
                    let _ = server.wait();
                    return ExitCode::FAILURE;
                }
            }
        }
        None => None,
    };
    let _watcher = match watch(&args, latency_log, server.runtime()) {
        Ok(watcher) => watcher,
        Err(error) => {
            eprintln!("corelane: {error}");
            server.runtime().stop();
            let _ = server.wait();
            return ExitCode::FAILURE;
        }
    };
    // Only now, with every flag's piece up: a script that waits for this
    // line never sees it from a server about to fail on `--metrics` or
    // `--latency-log`.
    let cores = server.runtime().cores();
    log::info!(
        "corelane serve: listening on {} with {cores} core{} (Ctrl-C to stop)",
        server.local_addr(),
        if cores == 1 { "" } else { "s" }
    );
    match server.wait() {
        Ok(report) => {
            println!("corelane serve: stopped: {report}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("corelane: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Checks that `--journal DIR` can be a journal directory; returns whether
/// it exists already.
///
/// The server would otherwise report a file as a `DIR/core-0` it cannot
/// make, and a symbolic link to nothing as a directory it creates and then
/// finds there.
fn check_journal_dir(dir: &std::path::Path) -> Result<bool, String> {
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => Ok(true),
        Ok(_) => Err("is not a directory".to_string()),
        Err(_) if dir.symlink_metadata().is_ok() => {
            Err("is a symbolic link to nothing".to_string())
        }
        Err(_) => {
            // Created by the server with any missing parents, which it
            // cannot make under a file: name that file, rather than the
            // `DIR/core-0` whose creation would fail on it. Any other
            // trouble (permissions) is the server's to report, naming the
            // step.
            let existing = dir
                .ancestors()
                .skip(1)
                .find(|a| a.symlink_metadata().is_ok());
            match existing {
                Some(parent) if !parent.is_dir() && !parent.as_os_str().is_empty() => {
                    Err(format!("{} is not a directory", parent.display()))
                }
                _ => Ok(false),
            }
        }
    }
}

/// The watcher the serve flags ask for: stalls, p99, an interval log into
/// `latency_log`.
fn watch(
    args: &ServeArgs,
    latency_log: Option<LatencyLog>,
    runtime: RuntimeHandle,
) -> Result<Option<Watcher>, String> {
    let log = match latency_log {
        Some(log) => {
            let (path, file) = log
                .begin()
                .map_err(|error| format!("--latency-log: {error}"))?;
            let out: Box<dyn std::io::Write + Send> = Box::new(std::io::BufWriter::new(file));
            Some(IntervalLog::begin(out).map_err(|error| format!("{}: {error}", path.display()))?)
        }
        None => None,
    };
    let config = WatchConfig {
        stall_after: (args.stall_ms > 0).then(|| std::time::Duration::from_millis(args.stall_ms)),
        p99_limit_ns: args.p99_limit_us.map(|us| us.saturating_mul(1_000)),
        ..WatchConfig::default()
    };
    Watcher::start(runtime, config, Box::new(|_| {}), log)
        .map(Some)
        .map_err(|error| format!("cannot start the metrics watcher: {error}"))
}

/// The `--latency-log` file, opened before the server starts so that a
/// bad path fails with nothing started, and emptied only once it has.
struct LatencyLog {
    path: std::path::PathBuf,
    file: std::fs::File,
    /// Made by this run: removed again if the server does not start.
    created: bool,
}

impl LatencyLog {
    /// Opens (or creates) `path` for writing without waiting on it and
    /// without emptying it yet: a server that then fails to start leaves
    /// an earlier log as it was.
    ///
    /// Opened non-blocking, so that a named pipe no process reads is
    /// refused at once (`ENXIO`) rather than waited on for ever with the
    /// server already serving; the writes after that block as usual.
    fn open(path: &std::path::Path) -> std::io::Result<LatencyLog> {
        // Through symbolic links: one to nothing gets its file made here.
        let created = std::fs::metadata(path).is_err();
        let file = open_latency_log(path)?;
        Ok(LatencyLog {
            path: path.to_owned(),
            file,
            created,
        })
    }

    /// The server did not start: a file this run created goes again.
    fn discard(self) {
        if self.created {
            // The file made, not a symbolic link that led to it.
            let made = std::fs::canonicalize(&self.path).unwrap_or(self.path);
            let _ = std::fs::remove_file(made);
        }
    }

    /// The server started: an earlier log in a regular file is replaced
    /// (a pipe has nothing to empty).
    fn begin(self) -> std::io::Result<(std::path::PathBuf, std::fs::File)> {
        if self.file.metadata()?.is_file() {
            self.file.set_len(0)?;
        }
        Ok((self.path, self.file))
    }
}

/// Opens `path` for writing as [`LatencyLog::open`] says.
fn open_latency_log(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::io::AsRawFd;

    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|error| match error.raw_os_error() {
            Some(libc::ENXIO) => std::io::Error::new(
                error.kind(),
                format!("{error} (a named pipe that no process reads)"),
            ),
            _ => error,
        })?;
    let fd = file.as_raw_fd();
    // SAFETY: `fd` is the descriptor `file` owns and keeps open; F_GETFL
    // and F_SETFL only read and change its status flags.
    let rc = unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 {
            flags
        } else {
            libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK)
        }
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(file)
}

/// A stop signal by the name a user knows it by: "signal 2" sends them to
/// a table of numbers.
fn signal_name(signal: i32) -> String {
    match signal {
        libc::SIGINT => "SIGINT (Ctrl-C)".to_string(),
        libc::SIGTERM => "SIGTERM".to_string(),
        other => format!("signal {other}"),
    }
}

/// SIGINT and SIGTERM, blocked in every thread and received by `wait`.
struct StopSignals {
    set: libc::sigset_t,
}

impl StopSignals {
    fn block() -> std::io::Result<Self> {
        // SAFETY: an all-zero sigset_t is a valid value to pass to
        // sigemptyset, which initialises it.
        let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` is a valid, exclusively borrowed sigset_t; the
        // signal numbers are valid; pthread_sigmask only changes this
        // thread's mask (threads spawned later inherit it).
        let rc = unsafe {
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGINT);
            libc::sigaddset(&mut set, libc::SIGTERM);
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut())
        };
        if rc != 0 {
            return Err(std::io::Error::from_raw_os_error(rc));
        }
        Ok(StopSignals { set })
    }

    /// Waits for one of the signals; returns its number.
    fn wait(&self) -> i32 {
        let mut signal = 0;
        loop {
            // SAFETY: `self.set` was initialised in `block`; `signal` is a
            // valid place for sigwait to store the signal number.
            let rc = unsafe { libc::sigwait(&self.set, &mut signal) };
            if rc == 0 {
                return signal;
            }
        }
    }
}
