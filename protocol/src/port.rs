//! A [`Port`]: the frame queues between an application and a link engine.
//!
//! Outgoing messages are encoded into a byte ring as whole frames (so the engine never waits for a frame's next
//! byte); incoming bytes go through a [`FrameDecoder`]. A received frame stays in the decoder until the
//! application has taken it, and until then the port refuses further bytes: the link holds (flow control), nothing
//! is dropped.

use crate::frame::{CobsCrcWriter, Feed, FrameDecoder, FrameError};
use crate::link::LinkIo;
use crate::wire::Encode;

/// Why a message could not be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum SendError {
    /// The queue has no room for this frame now; try again once the link has sent some.
    Full,
    /// The frame is larger than the whole queue.
    TooLarge,
}

impl core::fmt::Display for SendError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SendError::Full => f.write_str("send queue full"),
            SendError::TooLarge => f.write_str("frame larger than the send queue"),
        }
    }
}

impl core::error::Error for SendError {}

/// Counters of a port.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct PortStats {
    /// Frames queued for sending.
    pub frames_queued: u32,
    /// Intact frames received.
    pub frames_rx: u32,
    /// Received frames dropped for a bad CRC.
    pub crc_errors: u32,
    /// Received frames dropped for being longer than the receive buffer.
    pub overlong: u32,
    /// Received frames dropped for broken COBS or a missing CRC.
    pub malformed: u32,
}

/// Frame queues for one end of the link: `TX` bytes of outgoing frames, an `RX`-byte receive buffer.
///
/// `RX` bounds the longest frame accepted; [`crate::MAX_FRAME_LEN`] accepts every message.
#[derive(Debug, Clone)]
pub struct Port<const TX: usize, const RX: usize> {
    /// A ring: `tx_len` bytes of frames from `tx_start` on, wrapping around the end.
    tx: [u8; TX],
    tx_start: usize,
    tx_len: usize,
    decoder: FrameDecoder<RX>,
    /// Length of a received message waiting in the decoder's buffer.
    ready: Option<usize>,
    /// The last frame error, not yet reported.
    error: Option<FrameError>,
    frames_queued: u32,
}

impl<const TX: usize, const RX: usize> Default for Port<TX, RX> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const TX: usize, const RX: usize> Port<TX, RX> {
    /// The longest message the receive side accepts, in bytes (the frame's CRC and COBS not counted).
    pub const MAX_RX_MESSAGE: usize = FrameDecoder::<RX>::MAX_MESSAGE;

    /// Empty queues.
    pub const fn new() -> Self {
        Port {
            tx: [0; TX],
            tx_start: 0,
            tx_len: 0,
            decoder: FrameDecoder::new(),
            ready: None,
            error: None,
            frames_queued: 0,
        }
    }

    /// Encodes `msg` as a frame at the end of the send queue.
    pub fn send<T: Encode + ?Sized>(&mut self, msg: &T) -> Result<(), SendError> {
        let mut at = self.tx_start + self.tx_len;
        if at >= TX {
            at -= TX;
        }
        let mut writer = CobsCrcWriter::new(&mut self.tx, at, TX - self.tx_len);
        match msg.encode_to(&mut writer).and_then(|()| writer.finish()) {
            Ok(n) => {
                self.tx_len += n;
                self.frames_queued = self.frames_queued.wrapping_add(1);
                Ok(())
            }
            Err(_) if self.tx_len == 0 => Err(SendError::TooLarge),
            Err(_) => Err(SendError::Full),
        }
    }

    /// Bytes waiting to be sent.
    pub fn tx_pending(&self) -> usize {
        self.tx_len
    }

    /// Forgets everything queued for sending and any partial frame received (after the peer was reset).
    pub fn clear(&mut self) {
        self.tx_start = 0;
        self.tx_len = 0;
        self.decoder.reset();
        self.ready = None;
        self.error = None;
    }

    /// The message bytes of the received frame waiting to be taken, if any. Decode them with
    /// [`crate::Request::decode`] or [`crate::Event::decode`], then call [`Port::release`].
    pub fn received(&self) -> Option<&[u8]> {
        self.ready.map(|len| self.decoder.message(len))
    }

    /// Frees the received frame so that the link can go on receiving.
    pub fn release(&mut self) {
        self.ready = None;
    }

    /// The last dropped frame's error, once.
    pub fn take_error(&mut self) -> Option<FrameError> {
        self.error.take()
    }

    /// Counters.
    pub fn stats(&self) -> PortStats {
        let d = self.decoder.stats();
        PortStats {
            frames_queued: self.frames_queued,
            frames_rx: d.frames,
            crc_errors: d.crc_errors,
            overlong: d.overlong,
            malformed: d.malformed,
        }
    }
}

impl<const TX: usize, const RX: usize> LinkIo for Port<TX, RX> {
    fn tx_ready(&self) -> bool {
        self.tx_len > 0
    }

    fn tx_next(&mut self) -> Option<u8> {
        if self.tx_len == 0 {
            return None;
        }
        let byte = *self.tx.get(self.tx_start)?;
        self.tx_start += 1;
        if self.tx_start == TX {
            self.tx_start = 0;
        }
        self.tx_len -= 1;
        Some(byte)
    }

    fn rx(&mut self, byte: u8) -> bool {
        if self.ready.is_some() {
            return false;
        }
        match self.decoder.feed(&[byte]) {
            Feed::Consumed => {}
            Feed::Frame { message, .. } => self.ready = Some(message.len()),
            Feed::Error { error, .. } => self.error = Some(error),
        }
        true
    }
}
