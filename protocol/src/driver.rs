//! Link drivers over embedded-hal 1.0 pins: the engines of [`crate::link`] on real lines.
//!
//! [`blocking`] polls the peer's lines with a [`DelayNs`](embedded_hal::delay::DelayNs) between reads and gives
//! up after a timeout; [`asynch`] waits for edges with [`embedded_hal_async::digital::Wait`] (interrupts) and
//! embassy-time. Both run the same engine and use the same names. Pin set-up (push-pull outputs, inputs with the
//! pulls `docs/protocol.md` lists) is the board's job; the drivers take the pins by value.

pub mod asynch;
pub mod blocking;

use crate::link::Fault;

/// A link driver's error, generic over the pins' error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Error<E> {
    /// A pin failed.
    Pin(E),
    /// The peer did not answer an exchange within the timeout: it is stalled, reset, dead, or a line is stuck.
    Timeout,
    /// The link misbehaves (see [`Fault`]).
    Fault(Fault),
}

impl<E: core::fmt::Debug> core::fmt::Display for Error<E> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::Pin(e) => write!(f, "pin error: {e:?}"),
            Error::Timeout => f.write_str("link peer did not answer in time"),
            Error::Fault(fault) => write!(f, "link fault: {fault}"),
        }
    }
}

impl<E: core::fmt::Debug> core::error::Error for Error<E> {}

/// Timing of a driver. None of these decide correctness; they bound how long a dead peer takes to notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Timing {
    /// How long the master waits for an answer to one exchange before [`Error::Timeout`].
    pub timeout_us: u32,
    /// Blocking driver: pause between two reads of a line, in microseconds, once the first fast reads found
    /// nothing. Microseconds, not nanoseconds: a `DelayNs` on a microsecond clock (embassy-time's) converts them
    /// without the 64-bit division that nanoseconds cost (about 900 bytes of flash on a Cortex-M).
    pub poll_us: u32,
    /// Fast reads before the blocking driver starts pausing.
    pub spin_reads: u32,
    /// While a wait lasts this long, the driver writes its outputs again, which repairs a write that did not reach
    /// the line.
    pub redrive_us: u32,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            timeout_us: 100_000,
            poll_us: 2,
            spin_reads: 64,
            redrive_us: 1_000,
        }
    }
}

/// What a `poll`/`run` call of a driver ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Progress {
    /// Nothing to do: the link is idle (master), or no exchange is pending (slave).
    Idle,
    /// A received frame waits to be taken; the link holds until it is.
    RxFull,
    /// The exchange budget of this call is spent; call again.
    Busy,
}
