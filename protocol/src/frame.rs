//! Frames: a message in postcard's encoding ([`crate::wire`]), its CRC-16, COBS-encoded and ended by one `0x00`.
//!
//! ```text
//! frame = COBS( message ‖ crc16_le(message) ) ‖ 0x00
//! ```
//!
//! The CRC is CRC-16/IBM-3740 (polynomial 0x1021, initial value 0xFFFF, not reflected, no final XOR; the
//! "CCITT-FALSE" CRC). 0x1021 keeps a Hamming distance of 4 up to 32 751 bits, far beyond the longest frame
//! (about 11 000 bits), so every 1-, 2- and 3-bit error and every odd number of bit errors (0x1021 has the factor
//! x + 1) and every burst of up to 16 bits is caught. The non-zero initial value makes leading zero bytes count.
//! Two bytes of CRC are a fair price on frames of tens of bytes; CRC-32 would cost two more for no need.
//!
//! COBS removes every `0x00` from the frame body, so `0x00` marks the end of a frame unambiguously and a decoder
//! that starts in the middle of a frame is back in step at the next `0x00`.

use crc::{Crc, NoTable, CRC_16_IBM_3740};

use crate::message::MAX_MESSAGE_LEN;
use crate::wire::{Encode, Sink};

/// The frame CRC (see the module documentation for the choice).
///
/// The frames' CRC is computed by [`crc16`], which the tests compare with this.
pub const CRC: Crc<u16, NoTable> = Crc::<u16, NoTable>::new(&CRC_16_IBM_3740);

// What crc16() relies on: the CRC is not reflected and has no final XOR, so its register is its value.
const _: () = assert!(!CRC_16_IBM_3740.refin && !CRC_16_IBM_3740.refout && CRC_16_IBM_3740.xorout == 0);

/// The CRC's register before the first byte.
const CRC_INIT: u16 = CRC_16_IBM_3740.init;

/// [`CRC`] continued over `bytes` from the register `crc` ([`CRC_INIT`] for a new frame): the bitwise
/// algorithm written out for this one CRC. The crc crate's `NoTable` code takes the algorithm's reflection and
/// shift from memory at run time and carries the code for both kinds, and its digest keeps a reference to the
/// algorithm: together about 180 bytes more on the STM32F405 and 300 on the RP2040. Out of line: inlined into its
/// two callers (the frame writer and the decoder) it costs 24 to 36 bytes more.
#[inline(never)]
pub(crate) fn crc16(mut crc: u16, bytes: &[u8]) -> u16 {
    for &b in bytes {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            let carry = crc & 0x8000 != 0;
            crc <<= 1;
            if carry {
                crc ^= CRC_16_IBM_3740.poly;
            }
        }
    }
    crc
}

/// Bytes the CRC adds.
pub const CRC_LEN: usize = 2;

/// Upper bound of the encoded length (COBS, CRC and delimiter included) of a body of `n` bytes.
pub const fn max_encoded_len(n: usize) -> usize {
    let body = n + CRC_LEN;
    body + body / 254 + 1 + 1
}

/// Longest frame any valid message produces; a decoder with this capacity accepts every message.
pub const MAX_FRAME_LEN: usize = max_encoded_len(MAX_MESSAGE_LEN);

/// Why a message could not be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum EncodeError {
    /// The caller's buffer is too small for this frame or message.
    BufferFull,
}

impl core::fmt::Display for EncodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            EncodeError::BufferFull => f.write_str("buffer too small for the frame"),
        }
    }
}

impl core::error::Error for EncodeError {}

/// COBS-encodes a message into a buffer as it goes and keeps the CRC of the raw bytes.
///
/// The frame may start anywhere in the buffer and wrap around its end (the buffer is a ring, as a [`crate::Port`]'s
/// send queue is); it may take at most `room` bytes.
pub(crate) struct CobsCrcWriter<'b> {
    buf: &'b mut [u8],
    /// Where the frame starts in `buf`.
    start: usize,
    /// Bytes the frame may take.
    room: usize,
    /// Where the code byte of the current block goes, from the frame's start.
    code_at: usize,
    /// Next free position, from the frame's start.
    pos: usize,
    /// Code of the current block: 1 + data bytes in it.
    code: u8,
    /// The CRC's register over the message bytes so far (see [`crc16`]).
    crc: u16,
}

impl<'b> CobsCrcWriter<'b> {
    /// A frame at `start` (below `buf.len()`, or 0) taking at most `room` bytes (at most `buf.len()`).
    pub(crate) fn new(buf: &'b mut [u8], start: usize, room: usize) -> Self {
        CobsCrcWriter {
            buf,
            start,
            room,
            code_at: 0,
            pos: 1,
            code: 1,
            crc: CRC_INIT,
        }
    }

    // Out of line: inlined at its four call sites it costs 24 to 32 bytes more on the target's boards.
    #[inline(never)]
    fn put(&mut self, at: usize, byte: u8) -> Result<(), EncodeError> {
        if at >= self.room {
            return Err(EncodeError::BufferFull);
        }
        // start < len and at < room <= len: one subtraction wraps it.
        let mut i = self.start + at;
        if i >= self.buf.len() {
            i -= self.buf.len();
        }
        *self.buf.get_mut(i).ok_or(EncodeError::BufferFull)? = byte;
        Ok(())
    }

    fn close_block(&mut self) -> Result<(), EncodeError> {
        self.put(self.code_at, self.code)?;
        self.code_at = self.pos;
        self.pos += 1;
        self.code = 1;
        Ok(())
    }

    /// COBS-encodes one byte without touching the CRC.
    fn encode(&mut self, byte: u8) -> Result<(), EncodeError> {
        if byte == 0 {
            return self.close_block();
        }
        self.put(self.pos, byte)?;
        self.pos += 1;
        self.code += 1;
        if self.code == 0xFF {
            self.close_block()?;
        }
        Ok(())
    }

    /// Ends the frame (CRC, last code byte, delimiter) and returns its length. Write nothing more afterwards.
    ///
    /// By reference, not by value: moved in, the writer (36 bytes) was copied on the stack at the callers, about
    /// 140 bytes of code on the boards.
    pub(crate) fn finish(&mut self) -> Result<usize, EncodeError> {
        // The CRC's bytes through `write`, as the message's: it also runs the CRC over them, which nothing reads
        // afterwards, but one call costs less code than a loop of its own: 28 bytes less on the STM32F405, 20 on
        // the RP2040.
        self.write(&self.crc.to_le_bytes())?;
        self.put(self.code_at, self.code)?;
        self.put(self.pos, 0)?;
        Ok(self.pos + 1)
    }
}

impl Sink for CobsCrcWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> Result<(), EncodeError> {
        self.crc = crc16(self.crc, bytes);
        bytes.iter().try_for_each(|&b| self.encode(b))
    }
}

/// Encodes `msg` as one frame into `buf` and returns the frame's length (delimiter included).
///
/// `buf` needs at most [`max_encoded_len`] of the message's length; [`MAX_FRAME_LEN`] is always enough.
pub fn encode<T: Encode + ?Sized>(msg: &T, buf: &mut [u8]) -> Result<usize, EncodeError> {
    let room = buf.len();
    let mut writer = CobsCrcWriter::new(buf, 0, room);
    msg.encode_to(&mut writer)?;
    writer.finish()
}

/// Why a frame was dropped by the decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum FrameError {
    /// The CRC does not match: bits were damaged on the way.
    Crc,
    /// The frame is longer than the decoder's buffer; it was skipped up to its delimiter.
    Overlong,
    /// The COBS structure is broken (a block runs past the delimiter) or the frame is too short for a CRC.
    Malformed,
}

impl core::fmt::Display for FrameError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            FrameError::Crc => f.write_str("frame CRC mismatch"),
            FrameError::Overlong => f.write_str("frame longer than the receive buffer"),
            FrameError::Malformed => f.write_str("malformed frame"),
        }
    }
}

impl core::error::Error for FrameError {}

/// What [`FrameDecoder::feed`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Feed<'a, 'b> {
    /// Every input byte was consumed and no frame ended.
    Consumed,
    /// A frame ended and is intact: its message bytes (CRC removed) and the input not consumed yet.
    Frame {
        /// The message bytes, for [`crate::Request::decode`] or [`crate::Event::decode`].
        message: &'b [u8],
        /// Input bytes after the frame's delimiter.
        rest: &'a [u8],
    },
    /// A frame ended and was dropped (and counted); the input not consumed yet.
    Error {
        /// Why it was dropped.
        error: FrameError,
        /// Input bytes after the frame's delimiter.
        rest: &'a [u8],
    },
}

/// Counters kept by a [`FrameDecoder`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct DecoderStats {
    /// Intact frames.
    pub frames: u32,
    /// Frames with a bad CRC.
    pub crc_errors: u32,
    /// Frames longer than the buffer.
    pub overlong: u32,
    /// Frames with broken COBS or too short.
    pub malformed: u32,
}

/// A byte-fed frame decoder with an `N`-byte buffer (the longest message it accepts is `N - 2`).
///
/// Feed it whatever bytes arrive; it never panics, whatever they are, and it resynchronises at every `0x00`.
#[derive(Debug, Clone)]
pub struct FrameDecoder<const N: usize> {
    buf: [u8; N],
    len: usize,
    /// Data bytes left in the current COBS block; 0 means the next byte is a code byte.
    block_left: u8,
    /// The current block ends with an implied zero (its code was below 0xFF).
    zero_after_block: bool,
    /// Any byte of the current frame seen.
    started: bool,
    overlong: bool,
    stats: DecoderStats,
}

impl<const N: usize> Default for FrameDecoder<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> FrameDecoder<N> {
    /// The longest message it accepts, in bytes (the frame's CRC and COBS not counted).
    pub const MAX_MESSAGE: usize = N.saturating_sub(CRC_LEN);

    /// An empty decoder.
    // Always inline: kept out of line (its body is a clear of `N` bytes), it returns the decoder through a
    // temporary that is then copied, twice, on the way into a caller's larger value: 2 × 240 bytes of stack in the
    // board examples' blocking program, and 188 bytes of flash in the async one.
    #[inline(always)]
    pub const fn new() -> Self {
        FrameDecoder {
            buf: [0; N],
            len: 0,
            block_left: 0,
            zero_after_block: false,
            started: false,
            overlong: false,
            stats: DecoderStats {
                frames: 0,
                crc_errors: 0,
                overlong: 0,
                malformed: 0,
            },
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> DecoderStats {
        self.stats
    }

    /// Forgets a partial frame (after a link resynchronisation, for instance). Counters are kept.
    pub fn reset(&mut self) {
        self.len = 0;
        self.block_left = 0;
        self.zero_after_block = false;
        self.started = false;
        self.overlong = false;
    }

    /// The first `len` bytes of the buffer: the message of the frame [`FrameDecoder::feed`] returned last,
    /// valid until the next byte is fed.
    pub(crate) fn message(&self, len: usize) -> &[u8] {
        &self.buf[..len.min(N)]
    }

    fn push(&mut self, byte: u8) {
        if self.len < N {
            self.buf[self.len] = byte;
            self.len += 1;
        } else {
            self.overlong = true;
        }
    }

    /// Consumes input up to and including the first frame delimiter, and says what it found there.
    ///
    /// Call it again with `rest` until it returns [`Feed::Consumed`]. Empty frames (two delimiters in a row) are
    /// skipped silently.
    pub fn feed<'a>(&mut self, input: &'a [u8]) -> Feed<'a, '_> {
        for (i, &byte) in input.iter().enumerate() {
            if byte != 0 {
                self.started = true;
                // A code byte stands for the zero that ended the previous block (if it did), a data byte for
                // itself: one call of push() for both.
                let data = if self.block_left == 0 {
                    let zero = self.zero_after_block;
                    self.block_left = byte - 1;
                    self.zero_after_block = byte < 0xFF;
                    zero.then_some(0)
                } else {
                    self.block_left -= 1;
                    Some(byte)
                };
                if let Some(data) = data {
                    self.push(data);
                }
                continue;
            }
            let rest = &input[i + 1..];
            if !self.started {
                continue;
            }
            let result = self.finish();
            let len = self.len;
            self.reset();
            return match result {
                Ok(()) => Feed::Frame {
                    message: &self.buf[..len - CRC_LEN],
                    rest,
                },
                Err(error) => Feed::Error { error, rest },
            };
        }
        Feed::Consumed
    }

    fn finish(&mut self) -> Result<(), FrameError> {
        if self.overlong {
            self.stats.overlong += 1;
            return Err(FrameError::Overlong);
        }
        // `len` is never above `N` (see `push`): `get` says so without a panic path, in the malformed branch.
        let frame = match self.buf.get(..self.len) {
            Some(frame) if self.block_left == 0 && frame.len() > CRC_LEN => frame,
            _ => {
                self.stats.malformed += 1;
                return Err(FrameError::Malformed);
            }
        };
        let (body, crc) = frame.split_at(frame.len() - CRC_LEN);
        if crc16(CRC_INIT, body).to_le_bytes() != crc {
            self.stats.crc_errors += 1;
            return Err(FrameError::Crc);
        }
        self.stats.frames += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc16_agrees_with_the_crc_crate() {
        assert_eq!(crc16(CRC_INIT, b"123456789"), CRC_16_IBM_3740.check);
        // Pseudo-random bytes (xorshift), every length up to 300, whole and continued from any split point.
        let mut bytes = [0u8; 300];
        let mut x = 0x2545_f491u32;
        for b in &mut bytes {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            *b = x as u8;
        }
        bytes[7] = 0;
        bytes[8] = 0xFF;
        for len in 0..=bytes.len() {
            let body = &bytes[..len];
            let expected = CRC.checksum(body);
            assert_eq!(crc16(CRC_INIT, body), expected, "length {len}");
            let (a, b) = body.split_at(len / 3);
            assert_eq!(crc16(crc16(CRC_INIT, a), b), expected, "length {len} split");
        }
    }
}
