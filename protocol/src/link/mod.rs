//! The 5-wire handshake link as pure state machines, one per role, and the drivers that run them on pins.
//!
//! Lines: the master (target) drives T_CLK, T_DAT and RST; the slave (bridge) drives B_CLK and B_DAT. One
//! *exchange* moves one bit each way:
//!
//! 1. the master puts its bit on T_DAT, then toggles T_CLK;
//! 2. the slave sees T_CLK differ from B_CLK, reads T_DAT, puts its bit on B_DAT, then makes B_CLK equal T_CLK;
//! 3. the master sees B_CLK equal T_CLK, reads B_DAT.
//!
//! Each side only waits for the other's level, so either may stall for any time and no bit is lost. Drivers read
//! the peer's clock before its data, and write their data before their clock.
//!
//! Above the exchanges sits the bit layer of [`bits`]: preamble, start marker, stuffing. The master
//! stops clocking when both directions are idle (each has sent a whole preamble and has nothing to send); the slave
//! then asks for service by pulling B_DAT low, which is the first bit of its next frame's start marker, presented
//! early. `docs/protocol.md` gives the full rules and why they are safe.
//!
//! The engines read no pins and no clock: [`Master::step`] and [`Slave::step`] take the peer's line levels and
//! return a [`Step`]: the levels to drive and what to wait for.

pub mod bits;
mod engine;

pub use bits::LinkIo;
pub use engine::{Fault, LinkStats, Master, Slave, Step, Wait, MAX_BITS_WITHOUT_SYNC};
