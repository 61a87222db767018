//! Blocking link drivers: poll the peer's lines, pause with a [`DelayNs`], give up after a timeout.

use embedded_hal::delay::DelayNs;
use embedded_hal::digital::{InputPin, OutputPin, PinState};

use super::{Error, Progress, Timing};
use crate::link::{self, LinkIo, LinkStats, Wait};

/// Drives the levels `(clk, dat)`, writing only the pins whose level `last` (what was driven before) differs.
fn drive<E, C: OutputPin<Error = E>, D: OutputPin<Error = E>>(
    clk: &mut C,
    dat: &mut D,
    last: &mut Option<(bool, bool)>,
    (clk_level, dat_level): (bool, bool),
) -> Result<(), Error<E>> {
    let (old_clk, old_dat) = match *last {
        Some((c, d)) => (Some(c), Some(d)),
        None => (None, None),
    };
    // Data before clock: the peer reads data only after it sees the clock move.
    if old_dat != Some(dat_level) {
        dat.set_state(PinState::from(dat_level)).map_err(Error::Pin)?;
    }
    if old_clk != Some(clk_level) {
        clk.set_state(PinState::from(clk_level)).map_err(Error::Pin)?;
    }
    *last = Some((clk_level, dat_level));
    Ok(())
}

/// Writes the levels driven last (`last`, if any) again, both pins, data before clock: [`drive`] as if nothing had
/// been driven before, so that the pin writes are not inlined a second time.
fn redrive<E, C: OutputPin<Error = E>, D: OutputPin<Error = E>>(
    clk: &mut C,
    dat: &mut D,
    last: Option<(bool, bool)>,
) -> Result<(), Error<E>> {
    match last {
        Some(levels) => drive(clk, dat, &mut None, levels),
        None => Ok(()),
    }
}

/// The master (target) end, blocking. Pins: T_CLK and T_DAT outputs, B_CLK and B_DAT inputs.
pub struct Master<TC, TD, BC, BD, D> {
    t_clk: TC,
    t_dat: TD,
    b_clk: BC,
    b_dat: BD,
    delay: D,
    timing: Timing,
    engine: link::Master,
    driven: Option<(bool, bool)>,
}

impl<E, TC, TD, BC, BD, D> Master<TC, TD, BC, BD, D>
where
    TC: OutputPin<Error = E>,
    TD: OutputPin<Error = E>,
    BC: InputPin<Error = E>,
    BD: InputPin<Error = E>,
    D: DelayNs,
{
    /// Takes the pins, adopts the slave's clock level (so that no phantom exchange starts) and drives the outputs.
    pub fn new(
        mut t_clk: TC,
        mut t_dat: TD,
        mut b_clk: BC,
        b_dat: BD,
        delay: D,
        timing: Timing,
    ) -> Result<Self, Error<E>> {
        let peer_clk = b_clk.is_high().map_err(Error::Pin)?;
        let engine = link::Master::resume(peer_clk);
        let mut driven = None;
        drive(&mut t_clk, &mut t_dat, &mut driven, engine.outputs())?;
        // The outputs are driven before the driver is built, which is built once, in its result: built first and
        // driven through itself, it was copied on its way out (the superloop example: 258 bytes of copies, and a
        // stack frame of 476 bytes instead of 180).
        Ok(Master {
            t_clk,
            t_dat,
            b_clk,
            b_dat,
            delay,
            timing,
            engine,
            driven,
        })
    }

    /// Starts the link afresh together with the slave: call it when the slave was reset through RST and is in its
    /// reset state (see [`link::Master::restart_with_peer`]).
    pub fn reset(&mut self) -> Result<(), Error<E>> {
        let peer_clk = self.b_clk.is_high().map_err(Error::Pin)?;
        self.engine = link::Master::restart_with_peer(peer_clk);
        drive(
            &mut self.t_clk,
            &mut self.t_dat,
            &mut self.driven,
            self.engine.outputs(),
        )
    }

    /// Counters.
    pub fn stats(&self) -> LinkStats {
        self.engine.stats()
    }

    /// The engine, for inspection.
    pub fn engine(&self) -> &link::Master {
        &self.engine
    }

    /// Whether the slave asks for service (B_DAT low) while the link is idle.
    pub fn service_requested(&mut self) -> Result<bool, Error<E>> {
        self.b_dat.is_low().map_err(Error::Pin)
    }

    /// Runs exchanges until the link is idle, a received frame waits in `io`, or `max_exchanges` are done.
    pub fn poll<I: LinkIo>(&mut self, io: &mut I, max_exchanges: u32) -> Result<Progress, Error<E>> {
        let mut done = 0;
        loop {
            let clk = self.b_clk.is_high().map_err(Error::Pin)?;
            let dat = self.b_dat.is_high().map_err(Error::Pin)?;
            let step = self.engine.step(clk, dat, io);
            drive(&mut self.t_clk, &mut self.t_dat, &mut self.driven, (step.clk, step.dat))?;
            match step.wait {
                Wait::Idle => return Ok(Progress::Idle),
                Wait::RxFull => return Ok(Progress::RxFull),
                Wait::Fault(fault) => return Err(Error::Fault(fault)),
                Wait::PeerClk(level) => {
                    self.wait_clk(level)?;
                    done += 1;
                    if done >= max_exchanges {
                        return Ok(Progress::Busy);
                    }
                }
            }
        }
    }

    fn wait_clk(&mut self, level: bool) -> Result<(), Error<E>> {
        for _ in 0..self.timing.spin_reads {
            if self.b_clk.is_high().map_err(Error::Pin)? == level {
                return Ok(());
            }
        }
        // Microseconds in 32 bits, as the timeout itself: no 64-bit arithmetic here.
        let poll_us = self.timing.poll_us.max(1);
        let redrive_us = self.timing.redrive_us.max(poll_us);
        let (mut waited, mut since_redrive) = (0u32, 0u32);
        loop {
            if self.b_clk.is_high().map_err(Error::Pin)? == level {
                return Ok(());
            }
            if waited >= self.timing.timeout_us {
                return Err(Error::Timeout);
            }
            self.delay.delay_us(poll_us);
            waited = waited.saturating_add(poll_us);
            since_redrive = since_redrive.saturating_add(poll_us);
            if since_redrive >= redrive_us {
                since_redrive = 0;
                redrive(&mut self.t_clk, &mut self.t_dat, self.driven)?;
            }
        }
    }

    /// Gives the pins and the delay back.
    pub fn release(self) -> (TC, TD, BC, BD, D) {
        (self.t_clk, self.t_dat, self.b_clk, self.b_dat, self.delay)
    }
}

/// The slave (bridge) end, blocking. Pins: B_CLK and B_DAT outputs, T_CLK and T_DAT inputs.
///
/// The slave never waits long: [`Slave::poll`] answers the exchanges the master has started and returns as soon as
/// none is pending. Call it when T_CLK changes (an interrupt), when a frame was queued, and when a received frame
/// was taken.
pub struct Slave<BC, BD, TC, TD> {
    b_clk: BC,
    b_dat: BD,
    t_clk: TC,
    t_dat: TD,
    timing: Timing,
    engine: link::Slave,
    driven: Option<(bool, bool)>,
}

impl<E, BC, BD, TC, TD> Slave<BC, BD, TC, TD>
where
    BC: OutputPin<Error = E>,
    BD: OutputPin<Error = E>,
    TC: InputPin<Error = E>,
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
            driven: None,
        };
        drive(&mut s.b_clk, &mut s.b_dat, &mut s.driven, s.engine.outputs())?;
        Ok(s)
    }

    /// Counters.
    pub fn stats(&self) -> LinkStats {
        self.engine.stats()
    }

    /// The engine, for inspection.
    pub fn engine(&self) -> &link::Slave {
        &self.engine
    }

    /// Answers pending exchanges until none is pending (after a few fast reads), a received frame waits in `io`,
    /// or `max_exchanges` are done.
    pub fn poll<I: LinkIo>(&mut self, io: &mut I, max_exchanges: u32) -> Result<Progress, Error<E>> {
        let mut done = 0;
        loop {
            let clk = self.t_clk.is_high().map_err(Error::Pin)?;
            let dat = self.t_dat.is_high().map_err(Error::Pin)?;
            let step = self.engine.step(clk, dat, io);
            drive(&mut self.b_clk, &mut self.b_dat, &mut self.driven, (step.clk, step.dat))?;
            match step.wait {
                Wait::RxFull => return Ok(Progress::RxFull),
                Wait::PeerClk(level) => {
                    let mut seen = false;
                    for _ in 0..self.timing.spin_reads.max(1) {
                        if self.t_clk.is_high().map_err(Error::Pin)? == level {
                            seen = true;
                            break;
                        }
                    }
                    if !seen {
                        // Writing the outputs again on every idle return repairs a write that never reached the
                        // line (the master would otherwise wait for it until its timeout, again and again).
                        redrive(&mut self.b_clk, &mut self.b_dat, self.driven)?;
                        return Ok(Progress::Idle);
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
