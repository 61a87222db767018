//! Simulated wires (feature `sim`, std): the five link lines as shared levels, with embedded-hal pins on them, so
//! that the real drivers run in two threads of one process, or in two processes joined by a Unix socket.
//!
//! Faults for tests: seeded per-write latency and stalls ([`Chaos`]), writes that never reach the line, a glitch
//! (a short spurious pulse), a line forced to a level (stuck), and the reset of either end (the test builds a new
//! driver, as a rebooted chip would).

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use embedded_hal::digital::{ErrorType, InputPin, OutputPin};

/// One of the five lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Line {
    /// Target clock.
    TClk = 0,
    /// Target data.
    TDat = 1,
    /// Bridge clock.
    BClk = 2,
    /// Bridge data.
    BDat = 3,
    /// Reset of the bridge, driven by the target.
    Rst = 4,
}

impl Line {
    const ALL: [Line; 5] = [Line::TClk, Line::TDat, Line::BClk, Line::BDat, Line::Rst];

    /// Whether the target (master) drives this line.
    pub fn driven_by_target(self) -> bool {
        matches!(self, Line::TClk | Line::TDat | Line::Rst)
    }
}

/// The five lines. Shared with `Arc`; every pin holds one.
#[derive(Debug)]
pub struct Wires {
    levels: [AtomicBool; 5],
    /// 0: not forced, 1: forced low, 2: forced high.
    forced: [AtomicU8; 5],
    writes: AtomicU64,
    remote: Mutex<Option<UnixStream>>,
}

impl Wires {
    /// Lines at rest: clocks low, data lines high (their pull-ups), RST high (not in reset).
    pub fn new() -> Arc<Self> {
        let w = Wires {
            levels: Default::default(),
            forced: Default::default(),
            writes: AtomicU64::new(0),
            remote: Mutex::new(None),
        };
        w.levels[Line::TDat as usize].store(true, Ordering::SeqCst);
        w.levels[Line::BDat as usize].store(true, Ordering::SeqCst);
        w.levels[Line::Rst as usize].store(true, Ordering::SeqCst);
        Arc::new(w)
    }

    /// The level a reader sees.
    pub fn level(&self, line: Line) -> bool {
        match self.forced[line as usize].load(Ordering::SeqCst) {
            1 => false,
            2 => true,
            _ => self.levels[line as usize].load(Ordering::SeqCst),
        }
    }

    /// Drives a line (and tells the other process, when the wires are shared).
    pub fn set(&self, line: Line, level: bool) {
        if self.levels[line as usize].swap(level, Ordering::SeqCst) == level {
            // Rewriting a level changes nothing here, nor in the other process's copy.
            return;
        }
        self.writes.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut remote) = self.remote.lock() {
            if let Some(stream) = remote.as_mut() {
                // A peer that went away is not this end's problem: its lines simply stop changing.
                if stream.write_all(&[line as u8, level as u8]).is_err() {
                    *remote = None;
                }
            }
        }
    }

    /// Forces a line to a level whatever is driven (`None` releases it): a stuck line.
    pub fn force(&self, line: Line, level: Option<bool>) {
        let v = match level {
            None => 0,
            Some(false) => 1,
            Some(true) => 2,
        };
        self.forced[line as usize].store(v, Ordering::SeqCst);
    }

    /// A spurious pulse: the line flips for about `width` and flips back.
    pub fn glitch(&self, line: Line, width: Duration) {
        let old = self.levels[line as usize].load(Ordering::SeqCst);
        self.levels[line as usize].store(!old, Ordering::SeqCst);
        spin_for(width);
        self.levels[line as usize].store(old, Ordering::SeqCst);
    }

    /// A spurious pulse that lasts until `watch` changes (the peer reacted to it) or `max` passes: a glitch the
    /// peer is sure to see, however busy the machine running the simulation is.
    /// Returns whether the peer reacted.
    pub fn glitch_seen(&self, line: Line, watch: Line, max: Duration) -> bool {
        let old = self.levels[line as usize].load(Ordering::SeqCst);
        let watched = self.level(watch);
        self.levels[line as usize].store(!old, Ordering::SeqCst);
        let start = Instant::now();
        while self.level(watch) == watched && start.elapsed() < max {
            std::thread::yield_now();
        }
        let seen = self.level(watch) != watched;
        self.levels[line as usize].store(old, Ordering::SeqCst);
        seen
    }

    /// Level changes written so far (a measure of activity).
    pub fn changes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }

    /// Shares the lines with another process over a Unix socket: the bridge end listens at `path`, the target end
    /// connects. Each end sends the levels of the lines it drives; a thread applies the other's.
    pub fn share_unix(path: &Path, target: bool) -> std::io::Result<Arc<Self>> {
        let stream = if target {
            UnixStream::connect(path)?
        } else {
            let _ = std::fs::remove_file(path);
            let listener = UnixListener::bind(path)?;
            listener.accept()?.0
        };
        let wires = Wires::new();
        let mut reader = stream.try_clone()?;
        *wires.remote.lock().map_err(|_| std::io::Error::other("poisoned"))? = Some(stream);
        // Tell the peer where this end's lines are now.
        if let Ok(mut remote) = wires.remote.lock() {
            for line in Line::ALL.into_iter().filter(|l| l.driven_by_target() == target) {
                let level = wires.levels[line as usize].load(Ordering::SeqCst);
                if let Some(stream) = remote.as_mut() {
                    stream.write_all(&[line as u8, level as u8])?;
                }
            }
        }
        let w = Arc::clone(&wires);
        std::thread::Builder::new().name("sim-wires".into()).spawn(move || {
            let mut msg = [0u8; 2];
            while reader.read_exact(&mut msg).is_ok() {
                if let Some(&line) = Line::ALL.get(msg[0] as usize) {
                    if line.driven_by_target() != target {
                        w.levels[line as usize].store(msg[1] != 0, Ordering::SeqCst);
                    }
                }
            }
        })?;
        Ok(wires)
    }
}

fn spin_for(d: Duration) {
    let start = Instant::now();
    while start.elapsed() < d {
        std::hint::spin_loop();
    }
}

/// How unkind the simulated wires are to one end's writes. All randomness comes from the seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChaosConfig {
    /// Chance per write, in millionths, of a delay before it.
    pub latency_per_million: u32,
    /// A delayed write waits a random 0..=this many nanoseconds (busy wait).
    pub max_latency_ns: u32,
    /// Chance per write, in millionths, of a stall before it.
    pub stall_per_million: u32,
    /// Length of a stall, from..=to microseconds.
    pub stall_us: (u32, u32),
    /// Chance per write, in millionths, that the write never reaches the line.
    pub drop_per_million: u32,
}

impl ChaosConfig {
    /// Perfect wires.
    pub const NONE: ChaosConfig = ChaosConfig {
        latency_per_million: 0,
        max_latency_ns: 0,
        stall_per_million: 0,
        stall_us: (0, 0),
        drop_per_million: 0,
    };
}

/// A seeded source of trouble for one end's writes.
#[derive(Debug, Clone)]
pub struct Chaos {
    rng: u64,
    cfg: ChaosConfig,
    /// Stalls and dropped writes so far.
    pub stalls: u32,
    /// Writes dropped so far.
    pub dropped: u32,
}

impl Chaos {
    /// Trouble per `cfg`, from `seed`.
    pub fn new(seed: u64, cfg: ChaosConfig) -> Self {
        Chaos {
            rng: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
            cfg,
            stalls: 0,
            dropped: 0,
        }
    }

    /// The next pseudo-random number (xorshift64*).
    pub fn next_u64(&mut self) -> u64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn chance(&mut self, per_million: u32) -> bool {
        per_million > 0 && (self.next_u64() % 1_000_000) < per_million as u64
    }

    /// Delays or stalls before a write; `false` when the write is to be dropped.
    fn before_write(&mut self) -> bool {
        if self.chance(self.cfg.latency_per_million) {
            let ns = self.next_u64() % (self.cfg.max_latency_ns as u64 + 1);
            spin_for(Duration::from_nanos(ns));
        }
        if self.chance(self.cfg.stall_per_million) {
            self.stalls += 1;
            let (lo, hi) = self.cfg.stall_us;
            let us = lo as u64 + self.next_u64() % ((hi.saturating_sub(lo)) as u64 + 1);
            std::thread::sleep(Duration::from_micros(us));
        }
        if self.chance(self.cfg.drop_per_million) {
            self.dropped += 1;
            return false;
        }
        true
    }
}

/// An output pin on a simulated line.
#[derive(Debug)]
pub struct SimOutput {
    wires: Arc<Wires>,
    line: Line,
    chaos: Arc<Mutex<Chaos>>,
}

/// An input pin on a simulated line. Its async `Wait` polls the line and yields between reads.
#[derive(Debug, Clone)]
pub struct SimInput {
    wires: Arc<Wires>,
    line: Line,
}

impl ErrorType for SimOutput {
    type Error = core::convert::Infallible;
}

impl ErrorType for SimInput {
    type Error = core::convert::Infallible;
}

impl OutputPin for SimOutput {
    fn set_low(&mut self) -> Result<(), Self::Error> {
        self.write(false);
        Ok(())
    }
    fn set_high(&mut self) -> Result<(), Self::Error> {
        self.write(true);
        Ok(())
    }
}

impl SimOutput {
    fn write(&mut self, level: bool) {
        let go = self.chaos.lock().map(|mut c| c.before_write()).unwrap_or(true);
        if go {
            self.wires.set(self.line, level);
        }
    }
}

impl InputPin for SimInput {
    fn is_high(&mut self) -> Result<bool, Self::Error> {
        Ok(self.wires.level(self.line))
    }
    fn is_low(&mut self) -> Result<bool, Self::Error> {
        Ok(!self.wires.level(self.line))
    }
}

/// Yields once to the executor.
struct YieldNow(bool);

impl core::future::Future for YieldNow {
    type Output = ();
    fn poll(mut self: core::pin::Pin<&mut Self>, cx: &mut core::task::Context<'_>) -> core::task::Poll<()> {
        if self.0 {
            core::task::Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            core::task::Poll::Pending
        }
    }
}

impl SimInput {
    async fn wait_level(&mut self, level: bool) {
        let mut reads = 0u32;
        while self.wires.level(self.line) != level {
            reads += 1;
            if reads % 64 == 0 {
                std::thread::yield_now();
            }
            YieldNow(false).await;
        }
    }
}

impl embedded_hal_async::digital::Wait for SimInput {
    async fn wait_for_high(&mut self) -> Result<(), Self::Error> {
        self.wait_level(true).await;
        Ok(())
    }
    async fn wait_for_low(&mut self) -> Result<(), Self::Error> {
        self.wait_level(false).await;
        Ok(())
    }
    async fn wait_for_rising_edge(&mut self) -> Result<(), Self::Error> {
        self.wait_level(false).await;
        self.wait_level(true).await;
        Ok(())
    }
    async fn wait_for_falling_edge(&mut self) -> Result<(), Self::Error> {
        self.wait_level(true).await;
        self.wait_level(false).await;
        Ok(())
    }
    async fn wait_for_any_edge(&mut self) -> Result<(), Self::Error> {
        let now = self.wires.level(self.line);
        self.wait_level(!now).await;
        Ok(())
    }
}

/// A [`DelayNs`](embedded_hal::delay::DelayNs) for the simulation: spins for short delays, yields the thread
/// for longer ones.
#[derive(Debug, Clone, Copy, Default)]
pub struct SimDelay;

impl embedded_hal::delay::DelayNs for SimDelay {
    fn delay_ns(&mut self, ns: u32) {
        if ns < 20_000 {
            std::thread::yield_now();
            spin_for(Duration::from_nanos(ns as u64));
        } else {
            std::thread::sleep(Duration::from_nanos(ns as u64));
        }
    }
}

/// The target's pins: T_CLK, T_DAT outputs, B_CLK, B_DAT inputs, RST output.
pub type TargetPins = (SimOutput, SimOutput, SimInput, SimInput, SimOutput);
/// The bridge's pins: B_CLK, B_DAT outputs, T_CLK, T_DAT inputs, RST input.
pub type BridgePins = (SimOutput, SimOutput, SimInput, SimInput, SimInput);

/// Output and input pins on `wires` that share one source of trouble for their writes.
fn pin_makers(wires: &Arc<Wires>, chaos: Chaos) -> (impl Fn(Line) -> SimOutput + '_, impl Fn(Line) -> SimInput + '_) {
    let chaos = Arc::new(Mutex::new(chaos));
    let out = move |line| SimOutput {
        wires: Arc::clone(wires),
        line,
        chaos: Arc::clone(&chaos),
    };
    let inp = |line| SimInput {
        wires: Arc::clone(wires),
        line,
    };
    (out, inp)
}

/// The target's pins on `wires`, with its writes troubled by `chaos`.
pub fn target_pins(wires: &Arc<Wires>, chaos: Chaos) -> TargetPins {
    let (out, inp) = pin_makers(wires, chaos);
    (
        out(Line::TClk),
        out(Line::TDat),
        inp(Line::BClk),
        inp(Line::BDat),
        out(Line::Rst),
    )
}

/// The bridge's pins on `wires`, with its writes troubled by `chaos`.
pub fn bridge_pins(wires: &Arc<Wires>, chaos: Chaos) -> BridgePins {
    let (out, inp) = pin_makers(wires, chaos);
    (
        out(Line::BClk),
        out(Line::BDat),
        inp(Line::TClk),
        inp(Line::TDat),
        inp(Line::Rst),
    )
}
