//! The messages' wire encoding, written out by hand: postcard's format, without serde.
//!
//! postcard's format, as these messages use it: `u16`, `u32` and `u64` are unsigned LEB128 varints (7 bits per
//! byte, least significant group first, the high bit set on every byte but the last); a `u8` is one raw byte; a
//! `bool` is `0x00` or `0x01`; an `Option` is `0x00` for `None`, `0x01` and the value for `Some`; strings and byte
//! strings are a varint length and the bytes; an enum variant is its index as a varint, then its fields in order;
//! a struct is its fields in order. [`QoS`], [`DownReason`], [`SubResult`] and [`ErrorKind`] travel as one `u8`.
//!
//! Serde and postcard would produce the same bytes (with the `serde` feature the message types derive
//! `Serialize`/`Deserialize`, and `tests/postcard.rs` checks that both agree on encoding, decoding and refusal), but
//! their generic machinery costs a board several kilobytes of flash; these functions cost a few hundred bytes.
//! `docs/protocol.md` pins the format with golden bytes.

use crate::frame::EncodeError;
use crate::message::{
    BridgeState, BrokerState, Config, DecodeError, DownReason, ErrorKind, Event, Limits, QoS, Request, Stats, Status,
    SubResult, Will,
};

/// Where encoded bytes go: a frame writer ([`crate::frame::encode`]), a port's send queue, or a plain slice
/// ([`encode`]).
pub trait Sink {
    /// Appends `bytes`, or fails with [`EncodeError::BufferFull`] when there is no room.
    fn write(&mut self, bytes: &[u8]) -> Result<(), EncodeError>;
}

/// A message that can be encoded: [`Request`] and [`Event`].
pub trait Encode {
    /// Writes the message's bytes to `out`.
    fn encode_to<S: Sink + ?Sized>(&self, out: &mut S) -> Result<(), EncodeError>;
}

/// A slice being filled from its start.
struct SliceSink<'b> {
    buf: &'b mut [u8],
    len: usize,
}

impl Sink for SliceSink<'_> {
    fn write(&mut self, bytes: &[u8]) -> Result<(), EncodeError> {
        let end = self.len + bytes.len();
        self.buf
            .get_mut(self.len..end)
            .ok_or(EncodeError::BufferFull)?
            .copy_from_slice(bytes);
        self.len = end;
        Ok(())
    }
}

/// Encodes `msg` into `buf` (the message bytes alone, no frame) and returns their length.
pub fn encode<T: Encode + ?Sized>(msg: &T, buf: &mut [u8]) -> Result<usize, EncodeError> {
    let mut sink = SliceSink { buf, len: 0 };
    msg.encode_to(&mut sink)?;
    Ok(sink.len)
}

/// The length of `msg`'s encoding (the message bytes alone, no frame).
pub fn encoded_len<T: Encode + ?Sized>(msg: &T) -> usize {
    struct Count(usize);
    impl Sink for Count {
        fn write(&mut self, bytes: &[u8]) -> Result<(), EncodeError> {
            self.0 += bytes.len();
            Ok(())
        }
    }
    let mut count = Count(0);
    // A count never fails.
    let _ = msg.encode_to(&mut count);
    count.0
}

/// `bytes` as a string if they are well-formed UTF-8: what `core::str::from_utf8` decides, in about a fifth of
/// its flash (it brings a 256-byte table and an unrolled fast path that a board does not need for topics of tens
/// of bytes). Tests compare both on every sequence of up to three bytes and on every four-byte lead.
pub fn utf8(bytes: &[u8]) -> Option<&str> {
    let mut i = 0;
    while let Some(&lead) = bytes.get(i) {
        i += 1;
        if lead < 0x80 {
            continue;
        }
        // The well-formed sequences (the Unicode standard, table 3-7): the lead says how many continuation bytes
        // 80..=BF follow, and four leads narrow the range of the first of them.
        let more = match lead {
            0xC2..=0xDF => 1,
            0xE0..=0xEF => 2,
            0xF0..=0xF4 => 3,
            _ => return None,
        };
        let (mut low, mut high) = match lead {
            0xE0 => (0xA0, 0xBF),
            0xED => (0x80, 0x9F),
            0xF0 => (0x90, 0xBF),
            0xF4 => (0x80, 0x8F),
            _ => (0x80, 0xBF),
        };
        for _ in 0..more {
            let b = *bytes.get(i)?;
            if b < low || b > high {
                return None;
            }
            i += 1;
            (low, high) = (0x80, 0xBF);
        }
    }
    // SAFETY: the loop above went through every byte and found only well-formed UTF-8 sequences.
    Some(unsafe { core::str::from_utf8_unchecked(bytes) })
}

/// The encoding helpers over a sink.
///
/// The sink's first error is kept, and nothing is written after it: the helpers return nothing, and an encoder
/// writes all of its fields and returns [`Writer::result`] once at the end. With a `Result` from every helper, each
/// of the encoders' few dozen call sites tested it and branched to a shared exit: 36 to 80 bytes more on the
/// boards. The sink sees the same writes as with an early return: those before its error, and none after
/// (`tests/frames.rs` checks it).
struct Writer<'s, S: ?Sized> {
    out: &'s mut S,
    /// `Ok` until the sink's first error.
    result: Result<(), EncodeError>,
}

impl<'s, S: Sink + ?Sized> Writer<'s, S> {
    fn new(out: &'s mut S) -> Self {
        Writer { out, result: Ok(()) }
    }

    /// What the encoding came to: `Ok`, or the sink's first error.
    fn result(self) -> Result<(), EncodeError> {
        self.result
    }

    /// Writes `bytes` unless the sink has already failed.
    fn write(&mut self, bytes: &[u8]) {
        if self.result.is_ok() {
            self.result = self.out.write(bytes);
        }
    }

    /// Out of line: inlined, each of its few dozen call sites builds a one-byte slice on the stack and calls the
    /// sink with it; out of line, a call site is a constant and a call (about 100 bytes less on the boards).
    #[inline(never)]
    fn byte(&mut self, b: u8) {
        self.write(&[b])
    }

    fn bool(&mut self, b: bool) {
        self.byte(b as u8)
    }

    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.byte(v as u8 | 0x80);
            v >>= 7;
        }
        self.byte(v as u8)
    }

    fn bytes(&mut self, b: &[u8]) {
        self.varint(b.len() as u64);
        self.write(b)
    }

    fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes())
    }

    fn opt_bytes(&mut self, b: Option<&[u8]>) {
        // An Option's 0x00 / 0x01 is a bool's: one call of Writer::byte for both.
        self.bool(b.is_some());
        if let Some(b) = b {
            self.bytes(b)
        }
    }
}

impl Encode for Request<'_> {
    fn encode_to<S: Sink + ?Sized>(&self, out: &mut S) -> Result<(), EncodeError> {
        let mut w = Writer::new(out);
        // The variant's index, then the u16 that six requests start with (an id, the configuration's version):
        // written once for all of them, one call site of each instead of one in every arm.
        let (tag, first) = match *self {
            Request::Configure(ref c) => (0, Some(c.version)),
            Request::Publish { id, .. } => (1, Some(id)),
            Request::Subscribe { id, .. } => (2, Some(id)),
            Request::Unsubscribe { id, .. } => (3, Some(id)),
            Request::Ack { id } => (4, Some(id)),
            Request::Ping { id } => (5, Some(id)),
            Request::TimeRequest => (6, None),
            Request::StatsRequest => (7, None),
        };
        w.byte(tag);
        if let Some(first) = first {
            w.varint(first.into());
        }
        match *self {
            Request::Configure(ref c) => config(&mut w, c),
            Request::Publish {
                topic,
                payload,
                qos,
                retain,
                ..
            } => {
                w.str(topic);
                w.bytes(payload);
                w.byte(qos.into());
                w.bool(retain)
            }
            Request::Subscribe { filter, qos, .. } => {
                w.str(filter);
                w.byte(qos.into())
            }
            Request::Unsubscribe { filter, .. } => w.str(filter),
            Request::Ack { .. } | Request::Ping { .. } | Request::TimeRequest | Request::StatsRequest => {}
        }
        w.result()
    }
}

/// A configuration's fields after its version (which `Encode for Request` writes with the tag).
fn config<S: Sink + ?Sized>(w: &mut Writer<'_, S>, c: &Config<'_>) {
    w.str(c.wifi_ssid);
    w.str(c.wifi_password);
    w.str(c.broker_host);
    w.varint(c.broker_port.into());
    w.str(c.client_id);
    w.opt_bytes(c.username.map(str::as_bytes));
    w.opt_bytes(c.password);
    w.varint(c.keepalive_s.into());
    w.bool(c.clean_session);
    match &c.will {
        None => w.byte(0),
        Some(will) => {
            w.byte(1);
            w.str(will.topic);
            w.bytes(will.payload);
            w.byte(will.qos.into());
            w.bool(will.retain);
        }
    }
    w.bool(c.tls);
    w.varint(c.max_message.into())
}

impl Encode for Event<'_> {
    fn encode_to<S: Sink + ?Sized>(&self, out: &mut S) -> Result<(), EncodeError> {
        let mut w = Writer::new(out);
        match *self {
            Event::Ready { version, limits } => {
                w.byte(0);
                w.varint(version.into());
                w.varint(limits.max_frame.into());
                w.varint(limits.max_topic.into());
                w.varint(limits.max_payload.into());
                w.byte(limits.window)
            }
            Event::Status(s) => {
                w.byte(1);
                match s {
                    Status::WifiUp => w.byte(0),
                    Status::WifiDown => w.byte(1),
                    Status::BrokerUp { session_present } => {
                        w.byte(2);
                        w.bool(session_present)
                    }
                    Status::BrokerDown { reason } => {
                        w.byte(3);
                        w.byte(reason.into())
                    }
                    Status::Backpressure { full } => {
                        w.byte(4);
                        w.bool(full)
                    }
                }
            }
            Event::PubAck { id } => {
                w.byte(2);
                w.varint(id.into())
            }
            Event::SubAck { id, result } => {
                w.byte(3);
                w.varint(id.into());
                w.byte(result.into())
            }
            Event::UnsubAck { id } => {
                w.byte(4);
                w.varint(id.into())
            }
            Event::Message {
                id,
                topic,
                payload,
                qos,
                retain,
                dup,
            } => {
                w.byte(5);
                w.varint(id.into());
                w.str(topic);
                w.bytes(payload);
                w.byte(qos.into());
                w.bool(retain);
                w.bool(dup)
            }
            Event::Pong { id, state } => {
                w.byte(6);
                w.varint(id.into());
                w.bool(state.wifi_up);
                match state.broker {
                    BrokerState::Unknown => w.byte(0),
                    BrokerState::Up { session_present } => {
                        w.byte(1);
                        w.bool(session_present);
                    }
                    BrokerState::Down { reason } => {
                        w.byte(2);
                        w.byte(reason.into());
                    }
                }
                w.bool(state.queue_full)
            }
            Event::Time { unix_ms } => {
                w.byte(7);
                match unix_ms {
                    None => w.byte(0),
                    Some(ms) => {
                        w.byte(1);
                        w.varint(ms)
                    }
                }
            }
            Event::Stats(s) => {
                w.byte(8);
                for v in [
                    s.frames_rx,
                    s.frames_tx,
                    s.frame_errors,
                    s.resyncs,
                    s.reconnects,
                    s.published,
                    s.delivered,
                ] {
                    w.varint(v.into());
                }
                w.varint(s.queue_high_water.into())
            }
            Event::Error { id, kind } => {
                w.byte(9);
                w.varint(id.into());
                w.byte(kind.into())
            }
            Event::TooLong { len } => {
                w.byte(10);
                w.varint(len.into())
            }
        }
        w.result()
    }
}

/// Reads a message's bytes from the front.
///
/// A field that cannot be read (too few bytes, a bool or an `Option` tag other than 0 and 1, a bad varint or
/// UTF-8) marks the reader malformed and reads as zero, `false`, `None` or empty; [`Reader::end`] then fails with
/// [`DecodeError::Malformed`]. So the decoders read all of their fields without a test after each: with a
/// `Result` from every read, each of their few dozen call sites tested it and branched to a shared exit. What a
/// decoder builds from a malformed message is dropped.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    /// A field could not be read.
    malformed: bool,
}

type R<T> = Result<T, DecodeError>;

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Reader {
            bytes,
            malformed: false,
        }
    }

    /// Fails unless every field could be read and every byte was read.
    pub(crate) fn end(&self) -> R<()> {
        if self.bytes.is_empty() && !self.malformed {
            Ok(())
        } else {
            Err(DecodeError::Malformed)
        }
    }

    /// Marks the reader malformed; returns the value a field that cannot be read reads as.
    fn fail<T: Default>(&mut self) -> T {
        self.malformed = true;
        T::default()
    }

    fn take(&mut self, n: usize) -> &'a [u8] {
        if n > self.bytes.len() {
            return self.fail();
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        head
    }

    /// Out of line, as [`Reader::bool`]: inlined at their dozen call sites in the event decoder, each with its own
    /// path that marks the reader malformed, each costs about 100 bytes more on the STM32F405.
    #[inline(never)]
    fn byte(&mut self) -> u8 {
        match self.bytes.split_first() {
            Some((&b, rest)) => {
                self.bytes = rest;
                b
            }
            None => self.fail(),
        }
    }

    #[inline(never)]
    fn bool(&mut self) -> bool {
        match self.byte() {
            0 => false,
            1 => true,
            _ => self.fail(),
        }
    }

    /// A varint of a `bits`-bit integer. As postcard: at most `ceil(bits / 7)` bytes, and the last of that many
    /// carries no bits beyond `bits`; groups of zeros that pad a value are accepted.
    ///
    /// Always inlined into its few callers, each with a constant `bits`, so that the two bounds are constants.
    #[inline(always)]
    fn varint(&mut self, bits: u32) -> u64 {
        let max_bytes = bits.div_ceil(7);
        let last_max = (1u8 << (bits % 7)) - 1;
        self.varint_within(max_bytes, last_max)
    }

    /// A varint of at most `max_bytes` bytes, the last of that many at most `last_max` (see [`Reader::varint`]).
    fn varint_within(&mut self, max_bytes: u32, last_max: u8) -> u64 {
        // First the varint's length: up to the first byte without the continuation bit, which the last byte
        // allowed must be (`last_max` is below 0x80) and within `last_max`.
        let mut n = 0;
        loop {
            let Some(&b) = self.bytes.get(n as usize) else {
                return self.fail();
            };
            n += 1;
            if n == max_bytes && b > last_max {
                return self.fail();
            }
            if b < 0x80 {
                break;
            }
        }
        // Then its groups from the most significant: shifts by a constant 7, which the Cortex-M0+ does inline
        // (a shift by a variable amount of a u64 is a call of the compiler's __aeabi_llsl there).
        let mut out = 0u64;
        for &b in self.take(n as usize).iter().rev() {
            out = out << 7 | u64::from(b & 0x7F);
        }
        out
    }

    #[inline(never)]
    fn u16(&mut self) -> u16 {
        // Within 16 bits by the check in varint().
        self.varint(16) as u16
    }

    #[inline(never)]
    fn u32(&mut self) -> u32 {
        self.varint(32) as u32
    }

    /// The tag of an enum: its variant's index.
    pub(crate) fn tag(&mut self) -> u32 {
        self.u32()
    }

    fn bytes(&mut self) -> &'a [u8] {
        // A length is a 64-bit varint, as postcard reads a `usize` on a 64-bit host: the same bytes are accepted
        // on every platform. Compared before the cast, which would truncate on a 32-bit one.
        let len = self.varint(64);
        if len > self.bytes.len() as u64 {
            return self.fail();
        }
        self.take(len as usize)
    }

    fn str(&mut self) -> &'a str {
        match utf8(self.bytes()) {
            Some(s) => s,
            None => self.fail(),
        }
    }

    /// Whether an `Option`'s value follows.
    fn some(&mut self) -> bool {
        self.bool()
    }

    fn qos(&mut self) -> QoS {
        QoS::from(self.byte())
    }

    /// The fields of the request with tag `tag`; an unknown tag is [`DecodeError::UnknownMessage`].
    pub(crate) fn request(&mut self, tag: u32) -> R<Request<'a>> {
        Ok(match tag {
            0 => Request::Configure(self.config()),
            1 => Request::Publish {
                id: self.u16(),
                topic: self.str(),
                payload: self.bytes(),
                qos: self.qos(),
                retain: self.bool(),
            },
            2 => Request::Subscribe {
                id: self.u16(),
                filter: self.str(),
                qos: self.qos(),
            },
            3 => Request::Unsubscribe {
                id: self.u16(),
                filter: self.str(),
            },
            4 => Request::Ack { id: self.u16() },
            5 => Request::Ping { id: self.u16() },
            6 => Request::TimeRequest,
            7 => Request::StatsRequest,
            _ => return Err(DecodeError::UnknownMessage(tag)),
        })
    }

    fn config(&mut self) -> Config<'a> {
        Config {
            version: self.u16(),
            wifi_ssid: self.str(),
            wifi_password: self.str(),
            broker_host: self.str(),
            broker_port: self.u16(),
            client_id: self.str(),
            username: self.some().then(|| self.str()),
            password: self.some().then(|| self.bytes()),
            keepalive_s: self.u16(),
            clean_session: self.bool(),
            will: self.some().then(|| Will {
                topic: self.str(),
                payload: self.bytes(),
                qos: self.qos(),
                retain: self.bool(),
            }),
            tls: self.bool(),
            max_message: self.u16(),
        }
    }

    /// The fields of the event with tag `tag`; an unknown tag is [`DecodeError::UnknownMessage`].
    pub(crate) fn event(&mut self, tag: u32) -> R<Event<'a>> {
        // Eight events start with a u16 (an id, Ready's version, TooLong's length): read before the match, one
        // call site instead of eight. Nothing else is read before it, so the order of the reads is the wire's.
        // Read for an unknown tag too (which fails whatever follows it): one test less.
        let first = match tag {
            1 | 7 | 8 => 0,
            _ => self.u16(),
        };
        Ok(match tag {
            0 => {
                // As the counters of Stats: one call site instead of three.
                let v: [u16; 3] = core::array::from_fn(|_| self.u16());
                let [max_frame, max_topic, max_payload] = v;
                Event::Ready {
                    version: first,
                    limits: Limits {
                        max_frame,
                        max_topic,
                        max_payload,
                        window: self.byte(),
                    },
                }
            }
            1 => Event::Status(match self.tag() {
                0 => Status::WifiUp,
                1 => Status::WifiDown,
                2 => Status::BrokerUp {
                    session_present: self.bool(),
                },
                3 => Status::BrokerDown {
                    reason: DownReason::from(self.byte()),
                },
                4 => Status::Backpressure { full: self.bool() },
                // An unknown status inside a known event: the event cannot be read.
                _ => return Err(DecodeError::Malformed),
            }),
            2 => Event::PubAck { id: first },
            3 => Event::SubAck {
                id: first,
                result: SubResult::from(self.byte()),
            },
            4 => Event::UnsubAck { id: first },
            5 => Event::Message {
                id: first,
                topic: self.str(),
                payload: self.bytes(),
                qos: self.qos(),
                retain: self.bool(),
                dup: self.bool(),
            },
            6 => Event::Pong {
                id: first,
                state: BridgeState {
                    wifi_up: self.bool(),
                    broker: match self.tag() {
                        0 => BrokerState::Unknown,
                        1 => BrokerState::Up {
                            session_present: self.bool(),
                        },
                        2 => BrokerState::Down {
                            reason: DownReason::from(self.byte()),
                        },
                        _ => return Err(DecodeError::Malformed),
                    },
                    queue_full: self.bool(),
                },
            },
            7 => Event::Time {
                unix_ms: self.some().then(|| self.varint(64)),
            },
            8 => {
                // The seven counters with `array::from_fn`, which calls its closure in index order (the wire's):
                // one call site instead of seven. A loop filling a zeroed array cost 8 bytes more on the boards
                // (the array cleared first).
                let c: [u32; 7] = core::array::from_fn(|_| self.u32());
                let [frames_rx, frames_tx, frame_errors, resyncs, reconnects, published, delivered] = c;
                Event::Stats(Stats {
                    frames_rx,
                    frames_tx,
                    frame_errors,
                    resyncs,
                    reconnects,
                    published,
                    delivered,
                    queue_high_water: self.u16(),
                })
            }
            9 => Event::Error {
                id: first,
                kind: ErrorKind::from(self.byte()),
            },
            10 => Event::TooLong { len: first },
            _ => return Err(DecodeError::UnknownMessage(tag)),
        })
    }
}
