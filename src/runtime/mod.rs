//! The runtime: one pinned event loop per core, lanes between every pair.
//!
//! Build a [`Runtime`] with [`Runtime::builder`], then [`Runtime::start`] it
//! with a factory that makes each core's [`Handler`] on that core's own
//! thread. Cores send typed messages to each other with
//! [`Context::send`]; the messages travel as rkyv frames through an SPSC
//! lane for every ordered pair of cores and are read in place.
//!
//! # Examples
//!
//! Two cores bounce a counter until it reaches 1000:
//!
//! ```
//! use corelane::frame::Message;
//! use corelane::runtime::{Context, Handler, IdleStrategy, Runtime};
//!
//! #[derive(rkyv::Archive, rkyv::Serialize)]
//! struct Ball(u32);
//!
//! impl Message for Ball {
//!     const TYPE_ID: u16 = 1;
//!     const VERSION: u8 = 1;
//!     const NAME: &'static str = "Ball";
//! }
//!
//! struct Player;
//!
//! impl Handler for Player {
//!     type Message = Ball;
//!
//!     fn on_start(&mut self, cx: &mut Context<'_, Ball>) {
//!         if cx.core() == 0 {
//!             cx.send(1, &Ball(0)).unwrap();
//!         }
//!     }
//!
//!     fn on_message(&mut self, cx: &mut Context<'_, Ball>, from: usize, ball: &ArchivedBall) {
//!         let hits = ball.0.to_native() + 1;
//!         if hits == 1000 {
//!             cx.stop_runtime();
//!         } else {
//!             cx.send(from, &Ball(hits)).unwrap();
//!         }
//!     }
//! }
//!
//! let runtime = Runtime::builder().cores(2).idle(IdleStrategy::Park).build()?;
//! let report = runtime.start(|_core| Player)?.wait()?;
//! assert_eq!(report.totals.delivered, 1000);
//! assert!(report.adds_up());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod backpressure;
mod batcher;
mod context;
mod core_loop;
mod doorbell;
mod drain_budget;
mod held;
mod idle;
mod large;
mod manual;
mod placement;
mod priority;
mod report;
mod routing;
mod time;
mod timers;

use std::fmt;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::{Events, Poll, Waker};
use rkyv::Archived;

/// The handle [`Context::schedule_timer`] returns, for [`Context::cancel_timer`].
pub use crate::timer::TimerHandle;
pub use backpressure::Backpressure;
pub use batcher::Batcher;
pub use context::{Context, SendError};
pub use idle::IdleStrategy;
pub use manual::{HostedCore, ManualRuntime};
pub use placement::Placement;
pub use priority::Priority;
pub use report::{ShutdownReport, Undelivered};
pub use routing::{core_for_key, key_hash};
pub use time::{TimeSource, VirtualClock};

use self::backpressure::Flow;
use self::context::Outbox;
use self::core_loop::{CoreExit, CoreLoop, Phase, WAKER_TOKEN};
use self::doorbell::{fence_after_publish, Doorbell};
use self::drain_budget::DrainBudget;
use self::idle::Idler;
use self::priority::StarvationGuard;
use self::timers::Timers;
use crate::frame::Message;
use crate::lane::frames::{self, FrameConsumer, FrameProducer};
use crate::lane::HeapRegion;
use crate::metrics::{MetricsCell, Recorder, Snapshot};
use crate::pool::{Pool, PoolConfig};
use crate::sync::{AtomicBool, AtomicU64, AtomicUsize, CachePadded, Ordering};

/// A core's behaviour. One handler per core, made on that core's thread and
/// touched only by it, so it need not be `Send`.
#[allow(unused_variables)]
pub trait Handler: 'static {
    /// The message type the runtime's lanes carry (an enum for several).
    type Message: Message;

    /// Called once on the core's thread before the first turn.
    fn on_start(&mut self, cx: &mut Context<'_, Self::Message>) {}

    /// A message from core `from`, read in place from the lane.
    fn on_message(
        &mut self,
        cx: &mut Context<'_, Self::Message>,
        from: usize,
        msg: &Archived<Self::Message>,
    );

    /// A timer the handler scheduled with
    /// [`Context::schedule_timer`] has fired; `timer` is the id it gave.
    fn on_timer(&mut self, cx: &mut Context<'_, Self::Message>, timer: u64) {}

    /// An I/O event for a source the handler registered.
    fn on_io(&mut self, cx: &mut Context<'_, Self::Message>, event: &mio::event::Event) {}

    /// Called on every turn for the handler's own work (retries, flushes).
    /// Returns whether it did any, which keeps the core from idling.
    fn on_turn(&mut self, cx: &mut Context<'_, Self::Message>) -> bool {
        false
    }

    /// Called once when a stop is requested; messages sent here are still
    /// delivered.
    fn on_stop(&mut self, cx: &mut Context<'_, Self::Message>) {}

    /// Called once, last, after the core's final drain. A handler that
    /// still holds messages it meant to send reports them here with
    /// [`Context::abandon`], so the shutdown report names them.
    fn on_exit(&mut self, cx: &mut Context<'_, Self::Message>) {}
}

/// Why a runtime could not be built, started or shut down cleanly.
#[derive(Debug)]
pub enum RuntimeError {
    /// A setting is out of range.
    Config(String),
    /// The OS refused a poller, waker or thread.
    Io(std::io::Error),
    /// A core's handler panicked; its lanes' contents are lost.
    CorePanicked {
        /// The core.
        core: usize,
        /// The panic message, if it was a string.
        message: String,
    },
}

impl fmt::Display for RuntimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuntimeError::Config(reason) => write!(f, "invalid runtime configuration: {reason}"),
            RuntimeError::Io(error) => write!(f, "runtime I/O error: {error}"),
            RuntimeError::CorePanicked { core, message } => {
                write!(f, "core {core} panicked: {message}")
            }
        }
    }
}

impl std::error::Error for RuntimeError {}

impl From<std::io::Error> for RuntimeError {
    fn from(error: std::io::Error) -> Self {
        RuntimeError::Io(error)
    }
}

/// Settings for a [`Runtime`].
#[derive(Clone, Debug)]
pub struct Builder {
    cores: Option<usize>,
    lane_capacity: usize,
    idle: IdleStrategy,
    pin: bool,
    drain_batch: (usize, usize),
    max_lane_memory: usize,
    high_lane_capacity: usize,
    starvation_limit: u32,
    timer_tick: Duration,
    time_source: TimeSource,
    max_in_flight: Option<u64>,
    backpressure: Backpressure,
    pool: PoolConfig,
    max_message: usize,
}

/// Largest lane a builder accepts (1 GiB).
const MAX_LANE_CAPACITY: usize = 1 << 30;

impl Default for Builder {
    fn default() -> Self {
        Builder {
            cores: None,
            lane_capacity: 1 << 16,
            idle: IdleStrategy::default(),
            pin: true,
            drain_batch: (16, 256),
            max_lane_memory: 4 << 30,
            high_lane_capacity: 1 << 14,
            starvation_limit: 8,
            timer_tick: Duration::from_millis(1),
            time_source: TimeSource::Monotonic,
            max_in_flight: None,
            backpressure: Backpressure::Refuse,
            pool: PoolConfig::default(),
            max_message: large::DEFAULT_MAX_MESSAGE,
        }
    }
}

impl Builder {
    /// Number of cores (event loops). Default: one per CPU the process may
    /// use. More cores than CPUs is allowed, with a warning: their loops
    /// are pinned to the CPUs in turn (see [`Placement`]), several to a
    /// CPU, and yield instead of spinning.
    pub fn cores(mut self, cores: usize) -> Self {
        self.cores = Some(cores);
        self
    }

    /// Bytes of frames in each lane (a power of two, at least 1 KiB).
    /// Default 64 KiB. The largest message a frame carries is half of it,
    /// less a header ([`Context::max_payload`]); a larger one, up to
    /// [`max_message`](Self::max_message), travels in a pooled buffer.
    pub fn lane_capacity(mut self, bytes: usize) -> Self {
        self.lane_capacity = bytes;
        self
    }

    /// How idle cores wait. Default [`IdleStrategy::default`].
    pub fn idle(mut self, idle: IdleStrategy) -> Self {
        self.idle = idle;
        self
    }

    /// Whether to pin each loop to a CPU. Default true.
    pub fn pin(mut self, pin: bool) -> Self {
        self.pin = pin;
        self
    }

    /// The most memory all lanes together may take: `cores * cores *
    /// lane_capacity` (a lane for every ordered pair of cores). Default
    /// 4 GiB. Lane memory is committed by the OS only as it is used.
    pub fn max_lane_memory(mut self, bytes: usize) -> Self {
        self.max_lane_memory = bytes;
        self
    }

    /// Reads exactly `frames` frames (at most) from one lane per turn: a
    /// fixed batch. Default: adaptive, see
    /// [`drain_batch_range`](Self::drain_batch_range).
    pub fn drain_batch(mut self, frames: usize) -> Self {
        self.drain_batch = (frames, frames);
        self
    }

    /// Lets the frames read from one lane per turn adapt to the backlog
    /// between `min` and `max`: doubled after a turn that left frames
    /// behind, halved after a quiet one. Default 16 to 256. The size in use
    /// shows in [`CoreMetrics::drain_batch`](crate::metrics::CoreMetrics).
    pub fn drain_batch_range(mut self, min: usize, max: usize) -> Self {
        self.drain_batch = (min, max);
        self
    }

    /// Bytes of frames in each high-priority lane (a power of two, at least
    /// 1 KiB). Default 16 KiB. Every ordered pair of cores has one, beside
    /// its normal lane; see [`Priority`].
    pub fn high_lane_capacity(mut self, bytes: usize) -> Self {
        self.high_lane_capacity = bytes;
        self
    }

    /// Turns in a row the normal lanes may wait while high-priority lanes
    /// are backed up; on the next turn they are drained anyway. Default 8;
    /// 0 drains both every turn.
    pub fn starvation_limit(mut self, turns: u32) -> Self {
        self.starvation_limit = turns;
        self
    }

    /// The tick of every core's timing wheel: timers fire at most this late
    /// on a busy core. Default 1 ms.
    pub fn timer_tick(mut self, tick: Duration) -> Self {
        self.timer_tick = tick;
        self
    }

    /// The time the cores' timers run on. Default
    /// [`TimeSource::Monotonic`]; tests pass a [`VirtualClock`].
    pub fn time_source(mut self, source: TimeSource) -> Self {
        self.time_source = source;
        self
    }

    /// Bounds the messages in flight (sent, not yet read) from one core to
    /// another at `messages`; past it, sends meet the
    /// [`backpressure`](Self::backpressure) policy as if the lane were
    /// full. Default: no bound but the lane's size.
    pub fn max_in_flight(mut self, messages: u64) -> Self {
        self.max_in_flight = Some(messages);
        self
    }

    /// What a send does when its destination has no room. Default
    /// [`Backpressure::Refuse`].
    pub fn backpressure(mut self, policy: Backpressure) -> Self {
        self.backpressure = policy;
        self
    }

    /// Size classes and caps of each core's buffer pool, which carries
    /// messages too large for a lane frame. Default
    /// [`PoolConfig::default`].
    pub fn pool(mut self, config: PoolConfig) -> Self {
        self.pool = config;
        self
    }

    /// Largest archived message [`Context::send`] accepts; larger than half
    /// a lane, it travels in a pooled buffer. Default 256 MiB.
    pub fn max_message(mut self, bytes: usize) -> Self {
        self.max_message = bytes;
        self
    }

    /// Checks the settings and reads the machine's CPU list (once, here,
    /// before any loop thread is pinned).
    ///
    /// # Errors
    ///
    /// [`RuntimeError::Config`] for zero cores, a bad lane capacity or a
    /// zero drain batch.
    pub fn build(self) -> Result<Runtime, RuntimeError> {
        let placement = Placement::detect(self.pin);
        let cores = self.cores.unwrap_or_else(|| placement.cpu_count());
        if cores == 0 {
            return Err(RuntimeError::Config("at least one core is needed".into()));
        }
        if !self.lane_capacity.is_power_of_two()
            || !(1024..=MAX_LANE_CAPACITY).contains(&self.lane_capacity)
        {
            return Err(RuntimeError::Config(format!(
                "lane capacity {} is not a power of two from 1024 to {MAX_LANE_CAPACITY}",
                self.lane_capacity
            )));
        }
        if !self.high_lane_capacity.is_power_of_two()
            || !(1024..=MAX_LANE_CAPACITY).contains(&self.high_lane_capacity)
        {
            return Err(RuntimeError::Config(format!(
                "high-priority lane capacity {} is not a power of two from 1024 to \
                 {MAX_LANE_CAPACITY}",
                self.high_lane_capacity
            )));
        }
        let lane_memory = cores
            .checked_mul(cores)
            .and_then(|lanes| lanes.checked_mul(self.lane_capacity + self.high_lane_capacity));
        if lane_memory.is_none_or(|bytes| bytes > self.max_lane_memory) {
            return Err(RuntimeError::Config(format!(
                "{cores} cores need {cores}x{cores} lanes of {} bytes (and high-priority lanes \
                 of {}), more than the {} bytes allowed for lanes: use fewer cores or a \
                 smaller lane capacity",
                self.lane_capacity, self.high_lane_capacity, self.max_lane_memory
            )));
        }
        let cpus = placement.cpu_count();
        if cores > cpus {
            // Said once, at start-up: more loops than CPUs only adds
            // switching between them, and a user who asked for 32 cores on
            // a 2-CPU machine may think each gets a CPU of its own.
            let sharing = if placement.cpu_of(0).is_some() {
                format!(
                    "up to {} loops are pinned to each CPU (core N to the CPU at N mod {cpus} \
                     in the process's CPU list)",
                    cores.div_ceil(cpus)
                )
            } else {
                "the loops are not pinned and share the CPUs as the scheduler places them"
                    .to_string()
            };
            log::warn!(
                "{cores} cores on {cpus} CPUs: {sharing}; they yield instead of spinning, and \
                 cores beyond {cpus} add no parallelism"
            );
        }
        let (min, max) = self.drain_batch;
        if min == 0 || min > max {
            return Err(RuntimeError::Config(format!(
                "drain batch range {min}..={max} must be at least 1 and not empty"
            )));
        }
        if self.timer_tick.is_zero() || u64::try_from(self.timer_tick.as_nanos()).is_err() {
            return Err(RuntimeError::Config(format!(
                "timer tick {:?} must be from 1 ns to u64::MAX ns",
                self.timer_tick
            )));
        }
        if self.max_in_flight == Some(0) {
            return Err(RuntimeError::Config(
                "max in flight must be at least 1".into(),
            ));
        }
        Ok(Runtime {
            cores,
            settings: self,
            placement,
        })
    }
}

/// A runtime built and ready to start.
#[derive(Debug)]
pub struct Runtime {
    cores: usize,
    settings: Builder,
    placement: Placement,
}

/// What the cores share: the stop switch and the doorbells and metrics
/// cells, each written by one core or read-mostly.
pub(crate) struct Shared {
    stop: AtomicBool,
    /// Cores that have run `on_stop` (or unwound), each counted once.
    stopping: AtomicUsize,
    /// `counted_stopping[core]`: `core` is in `stopping` already. A core
    /// that panics after its `on_stop` reaches `core_stopping` twice (from
    /// its loop, then from its `ExitGuard`); counted twice, it would let
    /// the others start their final drain while some core's `on_stop` may
    /// still be sending.
    counted_stopping: Vec<AtomicBool>,
    doorbells: Vec<Doorbell>,
    /// `room_wanted[from * cores + to]`: core `from` is parked (or about
    /// to) waiting for room in its lane to `to`; set by `from`, cleared by
    /// `to` when it frees space and rings `from`.
    room_wanted: Vec<AtomicBool>,
    metrics: Vec<std::sync::Arc<MetricsCell>>,
    /// Cores whose loop has returned (or panicked).
    exited: Vec<AtomicBool>,
    /// `consumed[from * cores + to]`: messages core `to` has read from
    /// core `from`, for `from`'s in-flight bound; written by `to` only,
    /// and only when a bound is set.
    consumed: Vec<CachePadded<AtomicU64>>,
}

impl Shared {
    fn cores(&self) -> usize {
        self.doorbells.len()
    }

    pub(crate) fn request_stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        self.wake_all();
    }

    pub(crate) fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Core `core` has run `on_stop` (or unwound); the last one wakes
    /// everyone. A core is counted once, however often it says so.
    pub(crate) fn core_stopping(&self, core: usize) {
        // Only the thread driving `core` touches its flag: no ordering
        // needed beyond the increment's.
        if self.counted_stopping[core].swap(true, Ordering::Relaxed) {
            return;
        }
        let now = self.stopping.fetch_add(1, Ordering::AcqRel) + 1;
        if now == self.cores() {
            self.wake_all();
        }
    }

    pub(crate) fn all_stopping(&self) -> bool {
        // Pairs with the AcqRel increments: messages sent in every `on_stop`
        // are published before the count is seen complete.
        self.stopping.load(Ordering::Acquire) >= self.cores()
    }

    /// The flag core `from` sets to be woken when `to` frees room.
    pub(crate) fn room_wanted(&self, from: usize, to: usize) -> &AtomicBool {
        &self.room_wanted[from * self.cores() + to]
    }

    /// The count of messages `to` has read from `from`.
    pub(crate) fn consumed_cell(&self, from: usize, to: usize) -> &AtomicU64 {
        &self.consumed[from * self.cores() + to]
    }

    /// Loads the count of messages `to` has read from `from`.
    pub(crate) fn consumed(&self, from: usize, to: usize) -> u64 {
        // Pairs with the receiver's Release store after it released the
        // frames it counts.
        self.consumed_cell(from, to).load(Ordering::Acquire)
    }

    /// Core `core`'s "handler running" slot, for its stall detector.
    pub(crate) fn handler_slot(&self, core: usize) -> &crate::metrics::HandlerSlot {
        &self.metrics[core].slot
    }

    pub(crate) fn snapshot(&self) -> Snapshot {
        Snapshot {
            cores: self.metrics.iter().map(|cell| cell.read()).collect(),
        }
    }

    pub(crate) fn wake_all(&self) {
        fence_after_publish();
        for doorbell in &self.doorbells {
            doorbell.ring_if_sleeping();
        }
    }
}

/// Marks a core as exited even if its thread unwinds, so that the others
/// can finish their shutdown.
struct ExitGuard {
    shared: std::sync::Arc<Shared>,
    core: usize,
    finished: bool,
}

impl Drop for ExitGuard {
    fn drop(&mut self) {
        if !self.finished {
            // The handler panicked: stop the runtime and count this core as
            // stopping (if its `on_stop` has not) so the others do not wait
            // for it forever.
            self.shared.stop.store(true, Ordering::Relaxed);
            self.shared.core_stopping(self.core);
            self.shared.wake_all();
        }
        self.shared.exited[self.core].store(true, Ordering::Release);
    }
}

impl Runtime {
    /// Settings with their defaults.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// Number of cores.
    pub fn cores(&self) -> usize {
        self.cores
    }

    /// The placement read when the runtime was built.
    pub fn placement(&self) -> &Placement {
        &self.placement
    }

    /// Creates the lanes, pollers and wakers, then starts one thread per
    /// core, pins it, and makes its handler there with `make_handler(core)`.
    ///
    /// # Errors
    ///
    /// [`RuntimeError::Io`] if a poller, waker or thread cannot be made.
    pub fn start<H, F>(self, make_handler: F) -> Result<Running<H::Message>, RuntimeError>
    where
        H: Handler,
        F: Fn(usize) -> H + Send + Sync + 'static,
    {
        let (running, hosted) = self.launch(std::sync::Arc::new(make_handler), |_| false)?;
        debug_assert!(hosted.is_empty());
        Ok(running)
    }

    /// Makes everything the cores share and starts a pinned thread for
    /// every core that `hosted` does not claim; returns the parts of the
    /// hosted cores, for the host to drive.
    fn launch<H, F>(
        self,
        make_handler: std::sync::Arc<F>,
        hosted: impl Fn(usize) -> bool,
    ) -> Result<(Running<H::Message>, Vec<CoreParts>), RuntimeError>
    where
        H: Handler,
        F: Fn(usize) -> H + Send + Sync + 'static,
    {
        let n = self.cores;
        let settings = &self.settings;
        let (mut outbound, mut inbound) = lanes(n, settings.lane_capacity)?;
        let (mut outbound_high, mut inbound_high) = lanes(n, settings.high_lane_capacity)?;
        let mut polls = Vec::with_capacity(n);
        let mut doorbells = Vec::with_capacity(n);
        for _ in 0..n {
            let poll = Poll::new()?;
            doorbells.push(Doorbell::new(Waker::new(poll.registry(), WAKER_TOKEN)?));
            polls.push(poll);
        }
        let shared = std::sync::Arc::new(Shared {
            stop: AtomicBool::new(false),
            stopping: AtomicUsize::new(0),
            counted_stopping: (0..n).map(|_| AtomicBool::new(false)).collect(),
            doorbells,
            room_wanted: (0..n * n).map(|_| AtomicBool::new(false)).collect(),
            metrics: (0..n).map(|_| Default::default()).collect(),
            exited: (0..n).map(|_| AtomicBool::new(false)).collect(),
            consumed: (0..n * n).map(|_| Default::default()).collect(),
        });
        settings.time_source.attach(&shared);
        let mut threads = Vec::with_capacity(n);
        let mut parts_of_hosted = Vec::new();
        for (core, poll) in polls.into_iter().enumerate().rev() {
            let parts = CoreParts {
                core,
                poll,
                outbound: outbound.pop().expect("one row of lanes per core"),
                outbound_high: outbound_high.pop().expect("one row of lanes per core"),
                inbound: inbound.pop().expect("one column of lanes per core"),
                inbound_high: inbound_high.pop().expect("one column of lanes per core"),
                shared: std::sync::Arc::clone(&shared),
                settings: self.settings.clone(),
                shares_cpu: self.placement.shares_cpu(core, n),
            };
            if hosted(core) {
                parts_of_hosted.push(parts);
                threads.push(None);
                continue;
            }
            let make_handler = std::sync::Arc::clone(&make_handler);
            let placement = self.placement.clone();
            let thread = std::thread::Builder::new()
                .name(format!("corelane-core-{core}"))
                .spawn(move || {
                    placement.pin_current(core);
                    let mut guard = ExitGuard {
                        shared: std::sync::Arc::clone(&parts.shared),
                        core,
                        finished: false,
                    };
                    let leftover = parts.into_loop(make_handler(core)).run();
                    guard.finished = true;
                    leftover
                })?;
            threads.push(Some(thread));
        }
        threads.reverse();
        parts_of_hosted.reverse();
        let running = Running {
            handle: RuntimeHandle { shared },
            threads,
            _message: std::marker::PhantomData,
        };
        Ok((running, parts_of_hosted))
    }
}

/// What one core is made of before its handler exists.
pub(crate) struct CoreParts {
    core: usize,
    poll: Poll,
    outbound: Vec<FrameProducer<HeapRegion>>,
    outbound_high: Vec<FrameProducer<HeapRegion>>,
    inbound: Vec<FrameConsumer<HeapRegion>>,
    inbound_high: Vec<FrameConsumer<HeapRegion>>,
    shared: std::sync::Arc<Shared>,
    settings: Builder,
    shares_cpu: bool,
}

impl CoreParts {
    /// The core's loop, with its handler.
    fn into_loop<H: Handler>(self, handler: H) -> CoreLoop<H> {
        let settings = self.settings;
        let cores = self.outbound.len();
        let flow = Flow::new(cores, settings.max_in_flight, settings.backpressure);
        let pool = Pool::new(&settings.pool);
        CoreLoop {
            core: self.core,
            handler,
            poll: self.poll,
            events: Events::with_capacity(1024),
            unheard: None,
            inbound: self.inbound,
            inbound_high: self.inbound_high,
            recorder: Recorder::new(std::sync::Arc::clone(&self.shared.metrics[self.core]))
                .with_pool(pool.probe()),
            outbox: Outbox::new(
                self.outbound,
                self.outbound_high,
                flow,
                pool,
                settings.max_message,
            ),
            idler: Idler::new(settings.idle, self.shares_cpu),
            budget: DrainBudget::new(settings.drain_batch.0, settings.drain_batch.1),
            guard: StarvationGuard::new(settings.starvation_limit),
            consumed: vec![0; cores],
            count_consumed: settings.max_in_flight.is_some(),
            timers: Timers::new(settings.timer_tick, settings.time_source),
            shared: self.shared,
            uses_io: false,
            next_lane: self.core,
            phase: Phase::Running,
        }
    }
}

/// Lanes for every ordered pair of cores: `outbound[from][to]` and
/// `inbound[to][from]`.
type LaneMatrix = (
    Vec<Vec<FrameProducer<HeapRegion>>>,
    Vec<Vec<FrameConsumer<HeapRegion>>>,
);

fn lanes(cores: usize, capacity: usize) -> Result<LaneMatrix, RuntimeError> {
    let mut outbound: Vec<Vec<_>> = (0..cores).map(|_| Vec::with_capacity(cores)).collect();
    let mut inbound: Vec<Vec<_>> = (0..cores).map(|_| Vec::with_capacity(cores)).collect();
    for (from, row) in outbound.iter_mut().enumerate() {
        for (to, column) in inbound.iter_mut().enumerate() {
            let (producer, consumer) = frames::try_heap_ring(capacity)
                .map_err(|error| RuntimeError::Config(format!("lane {from}->{to}: {error}")))?;
            row.push(producer);
            debug_assert_eq!(column.len(), from, "lane {from}->{to} out of order");
            column.push(consumer);
        }
    }
    Ok((outbound, inbound))
}

/// A cheap, cloneable handle on a running runtime: stop it, read metrics.
#[derive(Clone)]
pub struct RuntimeHandle {
    shared: std::sync::Arc<Shared>,
}

impl fmt::Debug for RuntimeHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RuntimeHandle")
            .field("cores", &self.shared.cores())
            .field("stop_requested", &self.shared.stop_requested())
            .finish()
    }
}

impl RuntimeHandle {
    /// Asks every core to stop (see [`Running::shutdown`]).
    pub fn stop(&self) {
        self.shared.request_stop();
    }

    /// Whether a stop has been requested.
    pub fn is_stopping(&self) -> bool {
        self.shared.stop_requested()
    }

    /// Number of cores.
    pub fn cores(&self) -> usize {
        self.shared.cores()
    }

    /// The metrics each core last published, without asking for more: never
    /// waits at all. A busy core publishes at least every 100 ms, a core
    /// publishes before it parks.
    pub fn metrics(&self) -> Snapshot {
        self.shared.snapshot()
    }

    /// Asks every core to publish now and waits, up to `timeout`, for each
    /// to do so on its next turn; a parked core is woken to answer (a core
    /// that parks often may hold up to 5 ms of numbers it has not
    /// published), exited cores are not waited for. Must not be called
    /// from a core's own thread (it would wait for itself).
    /// [`RuntimeHandle::metrics`] never waits at all.
    pub fn fresh_metrics(&self, timeout: Duration) -> Snapshot {
        let shared = &self.shared;
        let requests: Vec<u64> = shared.metrics.iter().map(|cell| cell.request()).collect();
        // Pairs with the fence in `announce_sleep`: either a parking core
        // sees the requests, or we see it sleeping and wake it.
        fence_after_publish();
        for doorbell in &shared.doorbells {
            doorbell.ring_if_sleeping();
        }
        let deadline = Instant::now() + timeout;
        for (core, request) in requests.into_iter().enumerate() {
            while !shared.metrics[core].answered(request)
                && !shared.exited[core].load(Ordering::Acquire)
                && Instant::now() < deadline
            {
                if shared.doorbells[core].is_sleeping() {
                    // It parked after the ring above, with the request
                    // unseen: ring again.
                    fence_after_publish();
                    shared.doorbells[core].ring_if_sleeping();
                }
                std::thread::sleep(Duration::from_micros(50));
            }
        }
        self.metrics()
    }
}

impl RuntimeHandle {
    /// Takes every core's metrics interval: what each published since the
    /// last take (or the start), swapped out for an empty one. Never waits
    /// for a core. Meant for one consumer at a time (a watcher, an
    /// interval log): two takers would split the intervals between them.
    pub fn take_intervals(&self) -> Vec<crate::metrics::Interval> {
        self.shared
            .metrics
            .iter()
            .map(|cell| cell.take_interval())
            .collect()
    }

    /// The handler each core is running now, with its start time, or
    /// `None` for a core between handlers. Reads one slot per core; never
    /// waits for a core.
    pub fn running_handlers(&self) -> Vec<Option<crate::metrics::RunningHandler>> {
        self.shared
            .metrics
            .iter()
            .map(|cell| cell.slot.running())
            .collect()
    }
}

impl crate::metrics::watch::WatchSource for RuntimeHandle {
    fn take_intervals(&self) -> Vec<crate::metrics::Interval> {
        RuntimeHandle::take_intervals(self)
    }

    fn running_handlers(&self) -> Vec<Option<crate::metrics::RunningHandler>> {
        RuntimeHandle::running_handlers(self)
    }
}

/// A started runtime. Dropping it without [`Running::shutdown`] or
/// [`Running::wait`] stops the cores and detaches their threads.
pub struct Running<M: Message> {
    handle: RuntimeHandle,
    /// One per core; `None` for a core driven by the host's thread.
    threads: Vec<Option<JoinHandle<CoreExit>>>,
    _message: std::marker::PhantomData<fn(M)>,
}

impl<M: Message> fmt::Debug for Running<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Running")
            .field("handle", &self.handle)
            .finish_non_exhaustive()
    }
}

impl<M: Message> Running<M> {
    /// A handle to stop the runtime or read its metrics from anywhere.
    pub fn handle(&self) -> RuntimeHandle {
        self.handle.clone()
    }

    /// Stops the runtime and waits for it: see [`Running::wait`].
    ///
    /// # Errors
    ///
    /// As [`Running::wait`].
    pub fn shutdown(self) -> Result<ShutdownReport, RuntimeError> {
        self.handle.stop();
        self.wait()
    }

    /// Waits until the runtime stops (a handler or a handle asked it to),
    /// then reports.
    ///
    /// Shutdown runs in three steps: every core runs its handler's
    /// `on_stop`; once all have, each drains its inbound lanes, delivering
    /// what it finds; then the cores exit and whatever is still in a lane
    /// (sent by a handler during that last drain) is counted here, by
    /// message type, as undelivered.
    ///
    /// # Errors
    ///
    /// [`RuntimeError::CorePanicked`] if a handler panicked;
    /// [`RuntimeError::Config`] if a core is driven by the host's thread
    /// (finish it with [`HostedCore::finish`] instead).
    pub fn wait(self) -> Result<ShutdownReport, RuntimeError> {
        if let Some(core) = self.threads.iter().position(Option::is_none) {
            self.handle.stop();
            return Err(RuntimeError::Config(format!(
                "core {core} is driven by the host's thread: finish it with HostedCore::finish"
            )));
        }
        self.join(Vec::new())
    }

    /// Joins the cores' threads and reports, with the exits of the cores
    /// the host drove.
    fn join(mut self, hosted: Vec<(usize, CoreExit)>) -> Result<ShutdownReport, RuntimeError> {
        let mut exits = Vec::with_capacity(self.threads.len());
        let mut panicked = None;
        for (core, thread) in std::mem::take(&mut self.threads).into_iter().enumerate() {
            let Some(thread) = thread else {
                continue;
            };
            match thread.join() {
                Ok(exit) => exits.push(exit),
                Err(payload) => {
                    let message = payload
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| payload.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    panicked.get_or_insert(RuntimeError::CorePanicked { core, message });
                }
            }
        }
        if let Some(error) = panicked {
            return Err(error);
        }
        exits.extend(hosted.into_iter().map(|(_, exit)| exit));
        Ok(report_exits::<M>(exits, &self.handle.shared))
    }
}

impl<M: Message> Drop for Running<M> {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            self.handle.stop();
        }
    }
}

/// The shutdown report from what every core left.
fn report_exits<M: Message>(exits: Vec<CoreExit>, shared: &Shared) -> ShutdownReport {
    let mut leftovers = Vec::with_capacity(exits.len());
    let mut abandoned = Vec::new();
    let mut held = Vec::new();
    for exit in exits {
        leftovers.push(exit.inbound);
        for entry in exit.abandoned {
            report::tally(&mut abandoned, &entry.name, entry.count);
        }
        for entry in exit.held {
            report::tally(&mut held, &entry.name, entry.count);
        }
    }
    let undelivered = count_undelivered::<M>(&mut leftovers);
    let metrics = shared.snapshot();
    ShutdownReport {
        totals: metrics.merged().counters,
        undelivered,
        abandoned,
        held,
        metrics,
    }
}

/// Drains every lane left by the cores and counts the frames by type.
fn count_undelivered<M: Message>(
    leftovers: &mut [Vec<FrameConsumer<HeapRegion>>],
) -> Vec<Undelivered> {
    let mut counts: Vec<Undelivered> = Vec::new();
    for consumer in leftovers.iter_mut().flatten() {
        let drained = consumer.drain(usize::MAX, |frame| {
            // SAFETY: these lanes are this process's heap memory, written
            // only by `Context::send`; each frame is read once.
            let pooled = unsafe { large::pooled_buffer(&frame) };
            if crate::frame::envelope::check_type::<M>(&frame.meta).is_ok() {
                let payload = pooled.as_deref().unwrap_or(frame.payload());
                // SAFETY: these lanes are this process's heap memory, written
                // only by `Context::send` for `M`, whose type and version were
                // just checked; the payload (lent by the lane, or the pooled
                // buffer it names) is aligned and unchanged.
                let msg = unsafe { crate::frame::envelope::access_trusted::<M>(payload) };
                report::tally(&mut counts, M::kind(msg), 1);
            } else {
                let name = format!(
                    "type {} version {}",
                    frame.meta.msg_type, frame.meta.version
                );
                report::tally(&mut counts, &name, 1);
            }
        });
        if let Err(error) = drained {
            log::error!("counting undelivered messages: {error}");
        }
    }
    counts
}
