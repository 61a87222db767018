//! The bit layer shared by both roles: preamble, start marker, bit stuffing.
//!
//! ```text
//! idle / between frames:   1 1 1 … 1          (at least PREAMBLE_ONES ones: the preamble, also the idle fill)
//! frame start:             0 1                (the marker; extra 0s before the 1 are tolerated)
//! frame bytes:             b0 b1 … b7         (each byte LSB first; a 0 is stuffed after 15 ones in a row)
//! frame end:               0, then the next preamble (the 0x00 delimiter is not sent; the preamble stands for it)
//! ```
//!
//! Stuffing keeps runs of ones in a frame below [`SYNC_ONES`], so a run of `SYNC_ONES` ones is a preamble
//! wherever it is found: a receiver that lost its place (a spurious or lost clock edge, a peer reset, garbage)
//! finds it again at the next frame start, at any bit offset.

/// Ones a sender puts before every frame start marker.
pub const PREAMBLE_ONES: u8 = 17;
/// Ones in a row after which a receiver knows it sees a preamble (one less than sent, see `docs/protocol.md`).
pub const SYNC_ONES: u8 = 16;
/// After this many ones in a row inside a frame, the sender inserts a 0.
pub const STUFF_AFTER: u8 = 15;

/// Where a byte stream comes from and goes to. The engine calls these between exchanges.
pub trait LinkIo {
    /// Whether a frame byte is ready to send.
    fn tx_ready(&self) -> bool;
    /// The next byte to send, `0x00` at the end of each frame. Once a frame has started, its bytes must be
    /// available without a gap: a `None` in the middle of a frame ends it (the receiver drops it).
    fn tx_next(&mut self) -> Option<u8>;
    /// A received byte; `0x00` marks a frame boundary. Returns `false` when there is no room: the engine keeps
    /// the byte and holds the link (flow control) until a later step delivers it.
    fn rx(&mut self, byte: u8) -> bool;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum TxMode {
    /// Sending ones.
    Fill,
    /// Sent the marker's 0, its 1 comes next.
    Marker,
    /// In a frame, at a byte boundary.
    Between,
    /// In a frame, sending `byte` from bit `bit`.
    Data { byte: u8, bit: u8 },
    /// The frame's bytes are sent; the end bit (a 0) comes next.
    End,
}

/// The sending half of a link end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct TxBits {
    mode: TxMode,
    /// Ones sent in a row.
    ones: u8,
    pub(crate) frames: u32,
}

impl TxBits {
    /// A sender after reset: it counts as having sent a whole preamble, so a frame can start at once. This is
    /// what lets a freshly booted slave ask for service without any clocking (see `RxBits::new`).
    pub(crate) const fn new() -> Self {
        TxBits {
            mode: TxMode::Fill,
            ones: PREAMBLE_ONES,
            frames: 0,
        }
    }

    /// Sending fill with the preamble complete and nothing to send.
    pub(crate) fn idle<I: LinkIo>(&self, io: &I) -> bool {
        self.mode == TxMode::Fill && self.ones >= PREAMBLE_ONES && !io.tx_ready()
    }

    /// The next bit will be a frame's start marker 0 (the preamble is complete and a frame is ready).
    pub(crate) fn starts_next<I: LinkIo>(&self, io: &I) -> bool {
        self.mode == TxMode::Fill && self.ones >= PREAMBLE_ONES && io.tx_ready()
    }

    fn emit(&mut self, bit: bool) -> bool {
        self.ones = if bit { self.ones.saturating_add(1) } else { 0 };
        bit
    }

    /// The bit for the next exchange.
    pub(crate) fn next_bit<I: LinkIo>(&mut self, io: &mut I) -> bool {
        loop {
            match self.mode {
                TxMode::Fill => {
                    if self.starts_next(io) {
                        self.mode = TxMode::Marker;
                        return self.emit(false);
                    }
                    return self.emit(true);
                }
                TxMode::Marker => {
                    self.mode = TxMode::Between;
                    return self.emit(true);
                }
                TxMode::Between => match io.tx_next() {
                    Some(0) | None => {
                        self.frames += 1;
                        self.mode = TxMode::End;
                    }
                    Some(byte) => self.mode = TxMode::Data { byte, bit: 0 },
                },
                TxMode::Data { byte, bit } => {
                    if self.ones >= STUFF_AFTER {
                        return self.emit(false);
                    }
                    self.mode = if bit == 7 {
                        TxMode::Between
                    } else {
                        TxMode::Data { byte, bit: bit + 1 }
                    };
                    return self.emit(byte >> bit & 1 == 1);
                }
                TxMode::End => {
                    // The end bit is stuffed like a data bit, so that the receiver never takes it for one.
                    if self.ones < STUFF_AFTER {
                        self.mode = TxMode::Fill;
                    }
                    return self.emit(false);
                }
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum RxMode {
    /// Preamble seen; `zero` once the marker's 0 came.
    Armed { zero: bool },
    /// In a frame: `bits` bits of `byte` received.
    Data { byte: u8, bits: u8 },
}

/// What the receiving half made of a bit: a byte, a frame boundary (`0x00`) or nothing.
pub(crate) type RxOut = Option<u8>;

/// Received bits wait in a delay line this long before they count as data: when a preamble is recognised (its
/// 16th one), the line holds exactly the frame's end bit and the preamble's first 15 ones, which are dropped.
const DELAY: u8 = SYNC_ONES;

/// The receiving half of a link end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct RxBits {
    mode: RxMode,
    /// Ones received in a row.
    ones: u8,
    /// Delay line: the newest bit is bit 0.
    delay: u32,
    delay_len: u8,
    /// Bits since the last preamble (saturating), to spot a peer that never sends one.
    pub(crate) since_sync: u32,
    /// Preambles that cut a frame in the middle of a byte: the receiver had lost its place.
    pub(crate) resyncs: u32,
}

impl RxBits {
    /// A receiver after reset: it assumes the line was idle (as it is when both ends start together) and takes
    /// the next start marker. If the peer was in the middle of a frame instead, the receiver takes garbage, which
    /// the frame CRC rejects, and it is back in step at the next preamble.
    pub(crate) const fn new() -> Self {
        RxBits {
            mode: RxMode::Armed { zero: false },
            ones: PREAMBLE_ONES,
            delay: 0,
            delay_len: 0,
            since_sync: 0,
            resyncs: 0,
        }
    }

    /// A receiver that joins a peer in an unknown state: it takes a start marker like [`RxBits::new`], but it does
    /// not take the peer for idle before it has seen a whole preamble.
    pub(crate) const fn unsynced() -> Self {
        let mut rx = Self::new();
        rx.ones = 0;
        rx
    }

    /// The peer has sent at least a whole preamble and no frame since.
    pub(crate) fn peer_idle(&self) -> bool {
        self.mode == (RxMode::Armed { zero: false }) && self.ones >= PREAMBLE_ONES
    }

    // Out of line, as the engine's `deliver` and `result`: the three together take 48 to 116 bytes less in the
    // board examples (board-sizes.sh); the engine's cost per bit on the host did not change (cargo bench).
    #[inline(never)]
    pub(crate) fn push(&mut self, bit: bool) -> RxOut {
        let ones_before = self.ones;
        self.ones = if bit { self.ones.saturating_add(1) } else { 0 };
        self.since_sync = self.since_sync.saturating_add(1);
        if self.ones >= SYNC_ONES {
            self.since_sync = 0;
            let out = if let RxMode::Data { bits, .. } = self.mode {
                // Clean end: the delay line holds the end bit and 15 ones, and the last byte was whole.
                let clean = bits == 0 && self.delay_len == DELAY && self.delay >> (DELAY - 1) & 1 == 0;
                if !clean {
                    self.resyncs += 1;
                }
                Some(0)
            } else {
                None
            };
            self.mode = RxMode::Armed { zero: false };
            return out;
        }
        match self.mode {
            RxMode::Armed { zero } => {
                if !bit {
                    self.mode = RxMode::Armed { zero: true };
                } else if zero {
                    self.mode = RxMode::Data { byte: 0, bits: 0 };
                    self.delay = 0;
                    self.delay_len = 0;
                }
                None
            }
            RxMode::Data { byte, bits } => {
                if !bit && ones_before == STUFF_AFTER {
                    return None;
                }
                self.delay = self.delay << 1 | bit as u32;
                if self.delay_len < DELAY {
                    self.delay_len += 1;
                    return None;
                }
                let data = self.delay >> DELAY & 1 == 1;
                let byte = byte | (data as u8) << bits;
                if bits == 7 {
                    self.mode = RxMode::Data { byte: 0, bits: 0 };
                    Some(byte)
                } else {
                    self.mode = RxMode::Data { byte, bits: bits + 1 };
                    None
                }
            }
        }
    }
}
