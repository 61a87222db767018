//! Async link drivers: wait for the peer's edges with [`Wait`](embedded_hal_async::digital::Wait) (interrupts),
//! time out with embassy-time. Every `await` point leaves the engine consistent, so the futures are cancel-safe:
//! select them against the application's own signals.

use embassy_time::{with_deadline, with_timeout, Duration, Instant};
use embedded_hal::digital::{InputPin, OutputPin, PinState};
use embedded_hal_async::digital::Wait as WaitPin;

use super::{Error, Progress, Timing};
use crate::link::{self, LinkIo, LinkStats, Wait};

/// Drives the levels `(clk, dat)`.
fn drive<E, C: OutputPin<Error = E>, D: OutputPin<Error = E>>(
    clk: &mut C,
    dat: &mut D,
    (clk_level, dat_level): (bool, bool),
) -> Result<(), E> {
    // Data before clock: the peer reads data only after it sees the clock move.
    dat.set_state(PinState::from(dat_level))?;
    clk.set_state(PinState::from(clk_level))
}

async fn wait_level<P: WaitPin>(pin: &mut P, level: bool) -> Result<(), P::Error> {
    if level {
        pin.wait_for_high().await
    } else {
        pin.wait_for_low().await
    }
}

/// The master (target) end, async. Pins: T_CLK and T_DAT outputs, B_CLK and B_DAT inputs that can wait.
pub struct Master<TC, TD, BC, BD> {
    t_clk: TC,
    t_dat: TD,
    b_clk: BC,
    b_dat: BD,
    timing: Timing,
    engine: link::Master,
}

impl<E, TC, TD, BC, BD> Master<TC, TD, BC, BD>
where
    TC: OutputPin<Error = E>,
    TD: OutputPin<Error = E>,
    BC: InputPin<Error = E> + WaitPin<Error = E>,
    BD: InputPin<Error = E> + WaitPin<Error = E>,
{
    /// Takes the pins, adopts the slave's clock level and drives the outputs.
    pub fn new(t_clk: TC, t_dat: TD, mut b_clk: BC, b_dat: BD, timing: Timing) -> Result<Self, Error<E>> {
        let peer_clk = b_clk.is_high().map_err(Error::Pin)?;
        let mut m = Master {
            t_clk,
            t_dat,
            b_clk,
            b_dat,
            timing,
            engine: link::Master::resume(peer_clk),
        };
        drive(&mut m.t_clk, &mut m.t_dat, m.engine.outputs()).map_err(Error::Pin)?;
        Ok(m)
    }

    /// Starts the link afresh together with the slave: call it when the slave was reset through RST and is in its
    /// reset state (see [`link::Master::restart_with_peer`]).
    pub fn reset(&mut self) -> Result<(), Error<E>> {
        let peer_clk = self.b_clk.is_high().map_err(Error::Pin)?;
        self.engine = link::Master::restart_with_peer(peer_clk);
        drive(&mut self.t_clk, &mut self.t_dat, self.engine.outputs()).map_err(Error::Pin)
    }

    /// Counters.
    pub fn stats(&self) -> LinkStats {
        self.engine.stats()
    }

    /// Runs exchanges until the link is idle, a received frame waits in `io`, or `max_exchanges` are done.
    pub async fn run<I: LinkIo>(&mut self, io: &mut I, max_exchanges: u32) -> Result<Progress, Error<E>> {
        let mut done = 0;
        loop {
            match self.step(io)? {
                Wait::Idle => return Ok(Progress::Idle),
                Wait::RxFull => return Ok(Progress::RxFull),
                Wait::Fault(fault) => return Err(Error::Fault(fault)),
                Wait::PeerClk(level) => {
                    self.wait_clk(level).await?;
                    done += 1;
                    if done >= max_exchanges {
                        return Ok(Progress::Busy);
                    }
                }
            }
        }
    }

    /// One step without waiting: reads B_CLK and B_DAT, advances the engine and drives T_CLK and T_DAT. For a
    /// caller that holds `io` only briefly (a lock): after [`Wait::PeerClk`], release it, await
    /// [`Master::wait_clk`], and step again.
    pub fn step<I: LinkIo>(&mut self, io: &mut I) -> Result<Wait, Error<E>> {
        let clk = self.b_clk.is_high().map_err(Error::Pin)?;
        let dat = self.b_dat.is_high().map_err(Error::Pin)?;
        let step = self.engine.step(clk, dat, io);
        drive(&mut self.t_clk, &mut self.t_dat, (step.clk, step.dat)).map_err(Error::Pin)?;
        Ok(step.wait)
    }

    /// Waits until B_CLK reads `level` (the answer to the exchange [`Master::step`] started), driving the outputs
    /// again every `redrive_us`; [`Error::Timeout`] after `timeout_us`. Cancel-safe: the engine does not move.
    pub async fn wait_clk(&mut self, level: bool) -> Result<(), Error<E>> {
        // u32 and saturating, as in the blocking driver: 64-bit sums cost code on a 32-bit core, and a sum stuck
        // at u32::MAX has passed any u32 timeout.
        let mut waited = 0u32;
        loop {
            // The slice's end is worked out afresh for every wait rather than kept across it: kept, it is 8 more
            // bytes in the future (the runner's task). The pin's own future in each branch, not `wait_level`'s
            // state machine around them: 68 bytes less on the STM32F405 and 8 of RAM (4 bytes more on the RP2040).
            let end = Instant::now() + Duration::from_micros(self.timing.redrive_us.max(1) as u64);
            let b_clk = &mut self.b_clk;
            let r = if level {
                with_deadline(end, b_clk.wait_for_high()).await
            } else {
                with_deadline(end, b_clk.wait_for_low()).await
            };
            match r {
                Ok(r) => return r.map_err(Error::Pin),
                Err(_) => {
                    waited = waited.saturating_add(self.timing.redrive_us);
                    if waited >= self.timing.timeout_us {
                        return Err(Error::Timeout);
                    }
                    drive(&mut self.t_clk, &mut self.t_dat, self.engine.outputs()).map_err(Error::Pin)?;
                }
            }
        }
    }

    /// Waits until the slave asks for service (B_DAT low). Select it against the application's "frame queued".
    pub async fn wait_request(&mut self) -> Result<(), Error<E>> {
        self.b_dat.wait_for_low().await.map_err(Error::Pin)
    }

    /// Gives the pins back.
    pub fn release(self) -> (TC, TD, BC, BD) {
        (self.t_clk, self.t_dat, self.b_clk, self.b_dat)
    }
}

/// The slave (bridge) end, async. Pins: B_CLK and B_DAT outputs, T_CLK and T_DAT inputs that can wait.
pub struct Slave<BC, BD, TC, TD> {
    b_clk: BC,
    b_dat: BD,
    t_clk: TC,
    t_dat: TD,
    timing: Timing,
    engine: link::Slave,
}

impl<E, BC, BD, TC, TD> Slave<BC, BD, TC, TD>
where
    BC: OutputPin<Error = E>,
    BD: OutputPin<Error = E>,
    TC: InputPin<Error = E> + WaitPin<Error = E>,
    TD: InputPin<Error = E>,
{
    /// Takes the pins and drives the outputs to their reset levels (B_CLK low, B_DAT high).
    pub fn new(b_clk: BC, b_dat: BD, t_clk: TC, t_dat: TD, timing: Timing) -> Result<Self, Error<E>> {
        let mut s = Slave {
            b_clk,
            b_dat,
            t_clk,
            t_dat,
            timing,
            engine: link::Slave::new(),
        };
        drive(&mut s.b_clk, &mut s.b_dat, s.engine.outputs()).map_err(Error::Pin)?;
        Ok(s)
    }

    /// Counters.
    pub fn stats(&self) -> LinkStats {
        self.engine.stats()
    }

    /// Answers the master's exchanges, waiting for each, until a received frame waits in `io` or `max_exchanges`
    /// are done. While the master is idle this waits forever: select it against "a frame was queued" and call it
    /// again after queueing (cancel-safe).
    pub async fn run<I: LinkIo>(&mut self, io: &mut I, max_exchanges: u32) -> Result<Progress, Error<E>> {
        let mut done = 0;
        loop {
            let clk = self.t_clk.is_high().map_err(Error::Pin)?;
            let dat = self.t_dat.is_high().map_err(Error::Pin)?;
            let step = self.engine.step(clk, dat, io);
            drive(&mut self.b_clk, &mut self.b_dat, (step.clk, step.dat)).map_err(Error::Pin)?;
            match step.wait {
                Wait::RxFull => return Ok(Progress::RxFull),
                Wait::PeerClk(level) => {
                    // Waits as long as the master stays idle, writing the outputs again now and then to repair
                    // a write that never reached the line.
                    let slice = Duration::from_micros(self.timing.redrive_us.max(1) as u64);
                    while with_timeout(slice, wait_level(&mut self.t_clk, level)).await.is_err() {
                        drive(&mut self.b_clk, &mut self.b_dat, (step.clk, step.dat)).map_err(Error::Pin)?;
                    }
                    done += 1;
                    if done >= max_exchanges {
                        return Ok(Progress::Busy);
                    }
                }
                Wait::Idle | Wait::Fault(_) => return Ok(Progress::Idle),
            }
        }
    }

    /// Gives the pins back.
    pub fn release(self) -> (BC, BD, TC, TD) {
        (self.b_clk, self.b_dat, self.t_clk, self.t_dat)
    }
}
