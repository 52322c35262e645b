//! Embedding: cores whose loop the host's own thread drives, turn by turn.
//!
//! Two modes, both running the very loop a pinned thread runs:
//!
//! - [`Runtime::start_hosted`]: one core is driven by the calling thread
//!   (say, an application's main loop or a GUI thread), the others run on
//!   pinned threads as usual. The host calls [`HostedCore::turn`] when it
//!   likes, or [`HostedCore::run_until`] to let the core idle by its
//!   strategy (parking until a frame or its next timer) until a condition
//!   holds, and [`HostedCore::finish`] to shut the runtime down.
//! - [`Runtime::start_manual`]: every core is driven by the calling thread,
//!   one turn at a time, in the order the host chooses. With a
//!   [`VirtualClock`](super::VirtualClock) this makes a whole runtime
//!   deterministic, which is how the runtime's own tests check priority,
//!   batching and timers turn by turn.
//!
//! Cores driven by the host are not pinned: the host's thread stays where
//! the host put it.

use std::fmt;
use std::sync::Arc;

use super::core_loop::{CoreLoop, Step, FINAL_DRAIN_NS};
use super::{
    report_exits, Context, ExitGuard, Handler, Running, Runtime, RuntimeError, RuntimeHandle,
    ShutdownReport,
};
use crate::clock;

/// One core of a runtime, driven by the host's thread; the other cores run
/// on their own threads. Made by [`Runtime::start_hosted`].
///
/// Dropping it without [`finish`](Self::finish) stops the runtime (the
/// other cores then shut down without this one).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use corelane::frame::Message;
/// use corelane::runtime::{Context, Handler, Runtime};
///
/// #[derive(rkyv::Archive, rkyv::Serialize)]
/// struct Hello(u32);
/// impl Message for Hello {
///     const TYPE_ID: u16 = 1;
///     const VERSION: u8 = 1;
///     const NAME: &'static str = "Hello";
/// }
///
/// #[derive(Default)]
/// struct Greeter {
///     heard: u32,
/// }
/// impl Handler for Greeter {
///     type Message = Hello;
///     fn on_start(&mut self, cx: &mut Context<'_, Hello>) {
///         if cx.core() == 1 {
///             // Core 1, on its own thread, greets the host's core 0 later.
///             cx.send_after(Duration::from_millis(1), 0, &Hello(7)).unwrap();
///         }
///     }
///     fn on_message(&mut self, _: &mut Context<'_, Hello>, _: usize, hello: &ArchivedHello) {
///         self.heard += hello.0.to_native();
///     }
/// }
///
/// let runtime = Runtime::builder().cores(2).build()?;
/// let (mut host, running) = runtime.start_hosted(0, |_| Greeter::default())?;
/// // The host's thread runs core 0 until it has heard the greeting.
/// host.run_until(|greeter| greeter.heard > 0);
/// assert_eq!(host.handler().heard, 7);
/// let report = host.finish(running)?;
/// assert!(report.adds_up());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct HostedCore<H: Handler> {
    core_loop: Option<CoreLoop<H>>,
    guard: ExitGuard,
}

impl<H: Handler> fmt::Debug for HostedCore<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostedCore")
            .field("core", &self.guard.core)
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// Starts the runtime with core `core` driven by the calling thread and
    /// every other core on its own pinned thread. The hosted core's handler
    /// is made here, on this thread, and its `on_start` has run when this
    /// returns.
    ///
    /// # Errors
    ///
    /// [`RuntimeError::Config`] if there is no such core;
    /// [`RuntimeError::Io`] as [`Runtime::start`].
    #[allow(clippy::type_complexity)]
    pub fn start_hosted<H, F>(
        self,
        core: usize,
        make_handler: F,
    ) -> Result<(HostedCore<H>, Running<H::Message>), RuntimeError>
    where
        H: Handler,
        F: Fn(usize) -> H + Send + Sync + 'static,
    {
        if core >= self.cores {
            return Err(RuntimeError::Config(format!(
                "no core {core} to host: the runtime has {}",
                self.cores
            )));
        }
        let make_handler = Arc::new(make_handler);
        let (running, mut hosted) = self.launch(Arc::clone(&make_handler), |c| c == core)?;
        let parts = hosted.pop().expect("the hosted core's parts");
        let guard = ExitGuard {
            shared: Arc::clone(&parts.shared),
            core,
            finished: false,
        };
        let mut core_loop = parts.into_loop(make_handler(core));
        core_loop.start();
        Ok((
            HostedCore {
                core_loop: Some(core_loop),
                guard,
            },
            running,
        ))
    }

    /// Starts the runtime with every core driven by the calling thread:
    /// nothing runs until the host turns the cores. Handlers are made here,
    /// in core order, and their `on_start` has run when this returns.
    ///
    /// # Errors
    ///
    /// [`RuntimeError::Io`] if a poller or waker cannot be made.
    pub fn start_manual<H, F>(self, mut make_handler: F) -> Result<ManualRuntime<H>, RuntimeError>
    where
        H: Handler,
        F: FnMut(usize) -> H,
    {
        fn never<H>(_: usize) -> H {
            unreachable!("no core of a manual runtime runs on a thread")
        }
        let (mut running, parts) = self.launch(Arc::new(never::<H>), |_| true)?;
        // No thread to join or stop: the report is made from the host's
        // cores, so the `Running` has nothing left to do.
        running.threads.clear();
        let handle = running.handle();
        drop(running);
        let mut cores: Vec<CoreLoop<H>> = parts
            .into_iter()
            .map(|parts| {
                let core = parts.core;
                parts.into_loop(make_handler(core))
            })
            .collect();
        for core_loop in &mut cores {
            core_loop.start();
        }
        Ok(ManualRuntime { cores, handle })
    }
}

impl<H: Handler> HostedCore<H> {
    fn core_loop(&mut self) -> &mut CoreLoop<H> {
        self.core_loop
            .as_mut()
            .expect("a hosted core runs until finished")
    }

    /// This core's index.
    pub fn core(&self) -> usize {
        self.guard.core
    }

    /// The core's handler.
    pub fn handler(&self) -> &H {
        &self.core_loop.as_ref().expect("running").handler
    }

    /// The core's handler, to change.
    pub fn handler_mut(&mut self) -> &mut H {
        &mut self.core_loop().handler
    }

    /// Lends the handler and its context to `work` on the host's thread,
    /// as a callback would: the host sends messages, schedules timers and
    /// so on as this core.
    pub fn with_context<R>(
        &mut self,
        work: impl FnOnce(&mut H, &mut Context<'_, H::Message>) -> R,
    ) -> R {
        self.core_loop().with_handler(work)
    }

    /// A handle on the runtime: stop it, read metrics.
    pub fn runtime(&self) -> RuntimeHandle {
        RuntimeHandle {
            shared: Arc::clone(&self.guard.shared),
        }
    }

    /// Runs one turn of the core's loop (lanes, timers, the handler's own
    /// work, overflow) and returns how much work it found. Never blocks.
    pub fn turn(&mut self) -> usize {
        match self.core_loop().step() {
            Step::Work(work) => work,
            Step::Idle | Step::Stopped => 0,
        }
    }

    /// Runs the core, idling by its strategy between turns (it may park
    /// until a frame, a wake-up or its next timer), until `done` says so
    /// for the handler or every core has stopped. Returns whether `done`
    /// was met.
    pub fn run_until(&mut self, mut done: impl FnMut(&mut H) -> bool) -> bool {
        let core_loop = self.core_loop();
        loop {
            if done(&mut core_loop.handler) {
                return true;
            }
            match core_loop.step() {
                Step::Work(_) => {}
                Step::Idle => core_loop.idle(),
                Step::Stopped => return done(&mut core_loop.handler),
            }
        }
    }

    /// Stops the runtime, takes this core through the shutdown sequence on
    /// the host's thread, waits for the other cores and reports.
    ///
    /// # Errors
    ///
    /// As [`Running::wait`].
    pub fn finish(mut self, running: Running<H::Message>) -> Result<ShutdownReport, RuntimeError> {
        let mut core_loop = self.core_loop.take().expect("finished once");
        core_loop.shared.request_stop();
        loop {
            match core_loop.step() {
                Step::Work(_) => {}
                Step::Idle => core_loop.idle(),
                Step::Stopped => break,
            }
        }
        let exit = core_loop.finish();
        self.guard.finished = true;
        running.join(vec![(self.guard.core, exit)])
    }
}

/// A runtime whose every core is driven by the host's thread, turn by turn.
/// Made by [`Runtime::start_manual`].
///
/// # Examples
///
/// ```
/// use corelane::frame::Message;
/// use corelane::runtime::{Context, Handler, Runtime};
///
/// #[derive(rkyv::Archive, rkyv::Serialize)]
/// struct Note(u8);
/// impl Message for Note {
///     const TYPE_ID: u16 = 1;
///     const VERSION: u8 = 1;
///     const NAME: &'static str = "Note";
/// }
///
/// #[derive(Default)]
/// struct Ear(Vec<u8>);
/// impl Handler for Ear {
///     type Message = Note;
///     fn on_message(&mut self, _: &mut Context<'_, Note>, _: usize, note: &ArchivedNote) {
///         self.0.push(note.0);
///     }
///     fn on_start(&mut self, cx: &mut Context<'_, Note>) {
///         if cx.core() == 0 {
///             cx.send(1, &Note(3)).unwrap();
///         }
///     }
/// }
///
/// let mut runtime = Runtime::builder().cores(2).build()?.start_manual(|_| Ear::default())?;
/// assert!(runtime.handler(1).0.is_empty()); // nothing runs until turned
/// runtime.turn_core(1);
/// assert_eq!(runtime.handler(1).0, [3]);
/// let report = runtime.shutdown()?;
/// assert_eq!(report.totals.delivered, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ManualRuntime<H: Handler> {
    cores: Vec<CoreLoop<H>>,
    handle: RuntimeHandle,
}

impl<H: Handler> fmt::Debug for ManualRuntime<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManualRuntime")
            .field("cores", &self.cores.len())
            .finish_non_exhaustive()
    }
}

impl<H: Handler> ManualRuntime<H> {
    /// Number of cores.
    pub fn cores(&self) -> usize {
        self.cores.len()
    }

    /// A handle on the runtime: stop it, read metrics.
    pub fn handle(&self) -> RuntimeHandle {
        self.handle.clone()
    }

    /// Core `core`'s handler.
    ///
    /// # Panics
    ///
    /// If there is no such core.
    pub fn handler(&self, core: usize) -> &H {
        &self.cores[core].handler
    }

    /// Core `core`'s handler, to change.
    ///
    /// # Panics
    ///
    /// If there is no such core.
    pub fn handler_mut(&mut self, core: usize) -> &mut H {
        &mut self.cores[core].handler
    }

    /// Lends core `core`'s handler and context to `work`, as a callback
    /// would: the host sends, schedules timers and so on as that core.
    ///
    /// # Panics
    ///
    /// If there is no such core.
    pub fn with_context<R>(
        &mut self,
        core: usize,
        work: impl FnOnce(&mut H, &mut Context<'_, H::Message>) -> R,
    ) -> R {
        self.cores[core].with_handler(work)
    }

    /// Runs one turn of core `core`; returns the work it found.
    ///
    /// # Panics
    ///
    /// If there is no such core.
    pub fn turn_core(&mut self, core: usize) -> usize {
        match self.cores[core].step() {
            Step::Work(work) => work,
            Step::Idle | Step::Stopped => 0,
        }
    }

    /// Runs one turn of every core, in core order; returns the work found.
    pub fn turn(&mut self) -> usize {
        (0..self.cores.len()).map(|core| self.turn_core(core)).sum()
    }

    /// Turns every core until a whole round finds no work, or `max_rounds`
    /// rounds have run; returns the rounds run.
    pub fn run_until_idle(&mut self, max_rounds: usize) -> usize {
        for round in 1..=max_rounds {
            if self.turn() == 0 {
                return round;
            }
        }
        max_rounds
    }

    /// Stops every core, drains, and reports, all on the host's thread.
    ///
    /// # Errors
    ///
    /// None today; the `Result` matches [`Running::wait`].
    pub fn shutdown(mut self) -> Result<ShutdownReport, RuntimeError> {
        self.handle.stop();
        // Every core runs `on_stop`, then sees every other one has.
        loop {
            let mut stopped = 0;
            for core_loop in &mut self.cores {
                if core_loop.step() == Step::Stopped {
                    stopped += 1;
                }
            }
            if stopped == self.cores.len() {
                break;
            }
        }
        let deadline = clock::now_ns() + FINAL_DRAIN_NS;
        loop {
            let mut worked = false;
            for core_loop in &mut self.cores {
                worked |= core_loop.final_drain_round();
            }
            if !worked || clock::now_ns() > deadline {
                break;
            }
        }
        let exits = std::mem::take(&mut self.cores)
            .into_iter()
            .map(CoreLoop::exit)
            .collect();
        Ok(report_exits::<H::Message>(exits, &self.handle.shared))
    }
}
