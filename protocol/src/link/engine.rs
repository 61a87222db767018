//! The two link engines.

use super::bits::{LinkIo, RxBits, RxOut, TxBits};
use crate::frame::MAX_FRAME_LEN;

/// Bits the master accepts from the slave without a preamble before it calls the link faulty: the longest
/// frame, stuffed, plus a preamble. A slave that sends only zeros (a stuck B_DAT) is caught by this.
pub const MAX_BITS_WITHOUT_SYNC: u32 = (MAX_FRAME_LEN as u32 * 8) * 16 / 15 + 64;

/// What a link end wants after a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[must_use]
pub struct Step {
    /// Level to drive on this end's clock line.
    pub clk: bool,
    /// Level to drive on this end's data line (write it before the clock).
    pub dat: bool,
    /// What to wait for before the next step.
    pub wait: Wait,
}

/// What a link end waits for before its next step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Wait {
    /// Until the peer's clock line reads this level. For the slave this is also the idle state: it may wait
    /// forever, and should step again when it has a new frame to send.
    PeerClk(bool),
    /// Master only: the link is idle. Step again when the peer's data line is low (the slave asks for service)
    /// or when there is a frame to send.
    Idle,
    /// The receive side has no room ([`LinkIo::rx`] returned `false`): step again when it has. The link is held.
    RxFull,
    /// Master only: the link misbehaves; the driver reports it and the caller decides (usually: pulse RST).
    Fault(Fault),
}

/// A link fault the master detected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Fault {
    /// The slave sent [`MAX_BITS_WITHOUT_SYNC`] bits without a preamble (a stuck or noisy B_DAT).
    NoPreamble,
}

impl core::fmt::Display for Fault {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Fault::NoPreamble => f.write_str("no preamble from the peer: data line stuck or noisy"),
        }
    }
}

impl core::error::Error for Fault {}

/// Counters of one link end.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct LinkStats {
    /// Exchanges completed (one bit each way).
    pub exchanges: u64,
    /// Frames sent.
    pub frames_tx: u32,
    /// Times the receiver found a preamble in the middle of a byte (it had lost its place and found it again).
    pub resyncs: u32,
}

/// A received byte not yet taken by [`LinkIo::rx`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
struct RxHold(RxOut);

impl RxHold {
    fn set(&mut self, out: RxOut) {
        self.0 = out;
    }

    /// Delivers the byte if there is room; `true` when nothing is left.
    // Out of line: see `RxBits::push`.
    #[inline(never)]
    fn deliver<I: LinkIo>(&mut self, io: &mut I) -> bool {
        match self.0 {
            Some(byte) if !io.rx(byte) => false,
            _ => {
                self.0 = None;
                true
            }
        }
    }
}

/// What both ends keep: the levels they drive, their bit streams each way and their count of exchanges.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct End {
    clk: bool,
    dat: bool,
    hold: RxHold,
    tx: TxBits,
    rx: RxBits,
    exchanges: u64,
}

impl End {
    /// An end in its reset state: clock low, data at `dat`, sending a preamble first.
    const fn new(dat: bool) -> Self {
        End {
            clk: false,
            dat,
            hold: RxHold(None),
            tx: TxBits::new(),
            rx: RxBits::new(),
            exchanges: 0,
        }
    }

    fn outputs(&self) -> (bool, bool) {
        (self.clk, self.dat)
    }

    fn stats(&self) -> LinkStats {
        LinkStats {
            exchanges: self.exchanges,
            frames_tx: self.tx.frames,
            resyncs: self.rx.resyncs,
        }
    }

    // Out of line: see `RxBits::push`.
    #[inline(never)]
    fn result(&self, wait: Wait) -> Step {
        Step {
            clk: self.clk,
            dat: self.dat,
            wait,
        }
    }
}

/// The master (target) end of the link: it drives T_CLK, T_DAT and starts every exchange.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Master {
    end: End,
    /// An exchange was started and its answer is awaited.
    in_exchange: bool,
}

impl Default for Master {
    fn default() -> Self {
        Self::new()
    }
}

impl Master {
    /// A master in its reset state: both output lines low, sending a preamble first.
    pub const fn new() -> Self {
        Master {
            end: End::new(false),
            in_exchange: false,
        }
    }

    /// A master that takes over lines whose peer clock reads `peer_clk` after this end restarted while the slave
    /// kept running: it adopts that level so that it does not start a phantom exchange, and it does not take the
    /// slave for idle until it has seen a whole preamble from it (the slave may be in the middle of a frame).
    pub const fn resume(peer_clk: bool) -> Self {
        let mut m = Self::new();
        m.end.clk = peer_clk;
        m.end.rx = RxBits::unsynced();
        m
    }

    /// A master that starts afresh together with the slave (after the slave was reset through RST, which puts it
    /// in its reset state): both count as having just sent a preamble, so nobody clocks until one of them has a
    /// frame. It adopts `peer_clk` as its clock level.
    pub const fn restart_with_peer(peer_clk: bool) -> Self {
        let mut m = Self::new();
        m.end.clk = peer_clk;
        m
    }

    /// The levels this end drives now.
    pub fn outputs(&self) -> (bool, bool) {
        self.end.outputs()
    }

    /// Counters.
    pub fn stats(&self) -> LinkStats {
        self.end.stats()
    }

    /// Advances as far as the peer's levels allow. `peer_clk` and `peer_dat` are B_CLK and B_DAT, read in that
    /// order.
    pub fn step<I: LinkIo>(&mut self, peer_clk: bool, peer_dat: bool, io: &mut I) -> Step {
        let e = &mut self.end;
        if self.in_exchange {
            if peer_clk != e.clk {
                return e.result(Wait::PeerClk(e.clk));
            }
            self.in_exchange = false;
            e.exchanges += 1;
            e.hold.set(e.rx.push(peer_dat));
        }
        if !e.hold.deliver(io) {
            return e.result(Wait::RxFull);
        }
        if e.rx.since_sync > MAX_BITS_WITHOUT_SYNC {
            e.rx.since_sync = 0;
            return e.result(Wait::Fault(Fault::NoPreamble));
        }
        if e.tx.idle(io) && e.rx.peer_idle() && peer_dat {
            return e.result(Wait::Idle);
        }
        e.dat = e.tx.next_bit(io);
        e.clk = !e.clk;
        self.in_exchange = true;
        e.result(Wait::PeerClk(e.clk))
    }
}

/// The slave (bridge) end of the link: it answers the master's exchanges on B_CLK and B_DAT.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Slave {
    end: End,
    /// An exchange was seen and its received bits are not all delivered yet; the answer waits for them.
    answering: bool,
}

impl Default for Slave {
    fn default() -> Self {
        Self::new()
    }
}

impl Slave {
    /// A slave in its reset state: B_CLK low, B_DAT high (no service request), sending a preamble first.
    pub const fn new() -> Self {
        Slave {
            end: End::new(true),
            answering: false,
        }
    }

    /// The levels this end drives now.
    pub fn outputs(&self) -> (bool, bool) {
        self.end.outputs()
    }

    /// Counters.
    pub fn stats(&self) -> LinkStats {
        self.end.stats()
    }

    /// Advances as far as the peer's levels allow. `peer_clk` and `peer_dat` are T_CLK and T_DAT, read in that
    /// order.
    pub fn step<I: LinkIo>(&mut self, peer_clk: bool, peer_dat: bool, io: &mut I) -> Step {
        let e = &mut self.end;
        if !self.answering && peer_clk != e.clk {
            self.answering = true;
            e.hold.set(e.rx.push(peer_dat));
        }
        if self.answering {
            if !e.hold.deliver(io) {
                return e.result(Wait::RxFull);
            }
            self.answering = false;
            e.exchanges += 1;
            e.dat = e.tx.next_bit(io);
            e.clk = !e.clk;
        } else if e.tx.starts_next(io) {
            // Between exchanges with a whole preamble sent: present the start marker's 0 now. It asks an idle
            // master for service; a master still clocking reads it one exchange early at worst, which the
            // marker rule absorbs (see docs/protocol.md).
            e.dat = false;
        }
        e.result(Wait::PeerClk(!e.clk))
    }
}
