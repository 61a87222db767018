//! Properties of messages and frames: round trips of arbitrary messages within the limits, frames fed in arbitrary
//! chunks and several to a buffer, no panic on arbitrary bytes, every single-bit error caught, overlong frames
//! skipped and counted, and the limits: the largest messages fit `MAX_MESSAGE_LEN` and `MAX_FRAME_LEN`, one byte more
//! is refused.

use proptest::collection::vec;
use proptest::prelude::*;
use protocol::frame::max_encoded_len;
use protocol::message::{
    MAX_MESSAGE_LEN, MAX_NAME_LEN, MAX_PAYLOAD_LEN, MAX_SSID_LEN, MAX_TOPIC_LEN, MAX_WIFI_PASSWORD_LEN,
    MAX_WILL_PAYLOAD_LEN,
};
use protocol::Encode;
use protocol::{
    BridgeState, BrokerState, Config, DecodeError, DownReason, ErrorKind, Event, Feed, FrameDecoder, FrameError,
    Limits, QoS, Request, Stats, Status, SubResult, Will, MAX_FRAME_LEN,
};

// ---------------------------------------------------------------------------------------------------------------
// Owned mirrors of the borrowed messages, so that proptest can generate and shrink them.
// ---------------------------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct OwnedWill {
    topic: String,
    payload: Vec<u8>,
    qos: QoS,
    retain: bool,
}

#[derive(Debug, Clone)]
struct OwnedConfig {
    version: u16,
    wifi_ssid: String,
    wifi_password: String,
    broker_host: String,
    broker_port: u16,
    client_id: String,
    username: Option<String>,
    password: Option<Vec<u8>>,
    keepalive_s: u16,
    clean_session: bool,
    will: Option<OwnedWill>,
    tls: bool,
    max_message: u16,
}

#[derive(Debug, Clone)]
enum OwnedRequest {
    Configure(OwnedConfig),
    Publish {
        id: u16,
        topic: String,
        payload: Vec<u8>,
        qos: QoS,
        retain: bool,
    },
    Subscribe {
        id: u16,
        filter: String,
        qos: QoS,
    },
    Unsubscribe {
        id: u16,
        filter: String,
    },
    Ack {
        id: u16,
    },
    Ping {
        id: u16,
    },
    TimeRequest,
    StatsRequest,
}

impl OwnedRequest {
    fn get(&self) -> Request<'_> {
        match self {
            OwnedRequest::Configure(c) => Request::Configure(Config {
                version: c.version,
                wifi_ssid: &c.wifi_ssid,
                wifi_password: &c.wifi_password,
                broker_host: &c.broker_host,
                broker_port: c.broker_port,
                client_id: &c.client_id,
                username: c.username.as_deref(),
                password: c.password.as_deref(),
                keepalive_s: c.keepalive_s,
                clean_session: c.clean_session,
                will: c.will.as_ref().map(|w| Will {
                    topic: &w.topic,
                    payload: &w.payload,
                    qos: w.qos,
                    retain: w.retain,
                }),
                tls: c.tls,
                max_message: c.max_message,
            }),
            OwnedRequest::Publish {
                id,
                topic,
                payload,
                qos,
                retain,
            } => Request::Publish {
                id: *id,
                topic,
                payload,
                qos: *qos,
                retain: *retain,
            },
            OwnedRequest::Subscribe { id, filter, qos } => Request::Subscribe {
                id: *id,
                filter,
                qos: *qos,
            },
            OwnedRequest::Unsubscribe { id, filter } => Request::Unsubscribe { id: *id, filter },
            OwnedRequest::Ack { id } => Request::Ack { id: *id },
            OwnedRequest::Ping { id } => Request::Ping { id: *id },
            OwnedRequest::TimeRequest => Request::TimeRequest,
            OwnedRequest::StatsRequest => Request::StatsRequest,
        }
    }
}

#[derive(Debug, Clone)]
enum OwnedEvent {
    Ready {
        version: u16,
        limits: Limits,
    },
    Status(Status),
    PubAck {
        id: u16,
    },
    SubAck {
        id: u16,
        result: SubResult,
    },
    UnsubAck {
        id: u16,
    },
    Message {
        id: u16,
        topic: String,
        payload: Vec<u8>,
        qos: QoS,
        retain: bool,
        dup: bool,
    },
    Pong {
        id: u16,
        state: BridgeState,
    },
    Time {
        unix_ms: Option<u64>,
    },
    Stats(Stats),
    Error {
        id: u16,
        kind: ErrorKind,
    },
    TooLong {
        len: u16,
    },
}

impl OwnedEvent {
    fn get(&self) -> Event<'_> {
        match self {
            OwnedEvent::Ready { version, limits } => Event::Ready {
                version: *version,
                limits: *limits,
            },
            OwnedEvent::Status(s) => Event::Status(*s),
            OwnedEvent::PubAck { id } => Event::PubAck { id: *id },
            OwnedEvent::SubAck { id, result } => Event::SubAck {
                id: *id,
                result: *result,
            },
            OwnedEvent::UnsubAck { id } => Event::UnsubAck { id: *id },
            OwnedEvent::Message {
                id,
                topic,
                payload,
                qos,
                retain,
                dup,
            } => Event::Message {
                id: *id,
                topic,
                payload,
                qos: *qos,
                retain: *retain,
                dup: *dup,
            },
            OwnedEvent::Pong { id, state } => Event::Pong { id: *id, state: *state },
            OwnedEvent::Time { unix_ms } => Event::Time { unix_ms: *unix_ms },
            OwnedEvent::Stats(s) => Event::Stats(*s),
            OwnedEvent::Error { id, kind } => Event::Error { id: *id, kind: *kind },
            OwnedEvent::TooLong { len } => Event::TooLong { len: *len },
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Strategies.
// ---------------------------------------------------------------------------------------------------------------

/// A string of at most `max` bytes of UTF-8, any characters (so multi-byte ones too).
fn text(max: usize) -> impl Strategy<Value = String> {
    vec(any::<char>(), 0..=max).prop_map(move |chars| {
        let mut s = String::new();
        for c in chars {
            if s.len() + c.len_utf8() > max {
                break;
            }
            s.push(c);
        }
        s
    })
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..=max)
}

/// Every QoS value, `Unknown` ones included. Values 0 and 1 have no `Unknown` form: they decode as the named ones.
fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![
        Just(QoS::AtMostOnce),
        Just(QoS::AtLeastOnce),
        (2u8..=255).prop_map(QoS::Unknown)
    ]
}

fn will() -> impl Strategy<Value = OwnedWill> {
    (text(MAX_TOPIC_LEN), bytes(MAX_WILL_PAYLOAD_LEN), qos(), any::<bool>()).prop_map(
        |(topic, payload, qos, retain)| OwnedWill {
            topic,
            payload,
            qos,
            retain,
        },
    )
}

fn config() -> impl Strategy<Value = OwnedConfig> {
    (
        (
            any::<u16>(),
            text(MAX_SSID_LEN),
            text(MAX_WIFI_PASSWORD_LEN),
            text(MAX_NAME_LEN),
            any::<u16>(),
            text(MAX_NAME_LEN),
        ),
        (
            proptest::option::of(text(MAX_NAME_LEN)),
            proptest::option::of(bytes(MAX_NAME_LEN)),
            any::<u16>(),
            any::<bool>(),
            proptest::option::of(will()),
            any::<bool>(),
            any::<u16>(),
        ),
    )
        .prop_map(
            |(
                (version, wifi_ssid, wifi_password, broker_host, broker_port, client_id),
                (username, password, keepalive_s, clean_session, will, tls, max_message),
            )| OwnedConfig {
                version,
                wifi_ssid,
                wifi_password,
                broker_host,
                broker_port,
                client_id,
                username,
                password,
                keepalive_s,
                clean_session,
                will,
                tls,
                max_message,
            },
        )
}

fn request() -> impl Strategy<Value = OwnedRequest> {
    prop_oneof![
        config().prop_map(OwnedRequest::Configure),
        (
            any::<u16>(),
            text(MAX_TOPIC_LEN),
            bytes(MAX_PAYLOAD_LEN),
            qos(),
            any::<bool>()
        )
            .prop_map(|(id, topic, payload, qos, retain)| OwnedRequest::Publish {
                id,
                topic,
                payload,
                qos,
                retain
            }),
        (any::<u16>(), text(MAX_TOPIC_LEN), qos()).prop_map(|(id, filter, qos)| OwnedRequest::Subscribe {
            id,
            filter,
            qos
        }),
        (any::<u16>(), text(MAX_TOPIC_LEN)).prop_map(|(id, filter)| OwnedRequest::Unsubscribe { id, filter }),
        any::<u16>().prop_map(|id| OwnedRequest::Ack { id }),
        any::<u16>().prop_map(|id| OwnedRequest::Ping { id }),
        Just(OwnedRequest::TimeRequest),
        Just(OwnedRequest::StatsRequest),
    ]
}

fn status() -> impl Strategy<Value = Status> {
    prop_oneof![
        Just(Status::WifiUp),
        Just(Status::WifiDown),
        any::<bool>().prop_map(|session_present| Status::BrokerUp { session_present }),
        // DownReason::from maps every byte to its one canonical value (named, or Unknown above 11).
        any::<u8>().prop_map(|r| Status::BrokerDown {
            reason: DownReason::from(r)
        }),
        any::<bool>().prop_map(|full| Status::Backpressure { full }),
    ]
}

fn bridge_state() -> impl Strategy<Value = BridgeState> {
    let broker = prop_oneof![
        Just(BrokerState::Unknown),
        any::<bool>().prop_map(|session_present| BrokerState::Up { session_present }),
        any::<u8>().prop_map(|r| BrokerState::Down {
            reason: DownReason::from(r)
        }),
    ];
    (any::<bool>(), broker, any::<bool>()).prop_map(|(wifi_up, broker, queue_full)| BridgeState {
        wifi_up,
        broker,
        queue_full,
    })
}

fn event() -> impl Strategy<Value = OwnedEvent> {
    prop_oneof![
        (any::<u16>(), any::<(u16, u16, u16, u8)>()).prop_map(
            |(version, (max_frame, max_topic, max_payload, window))| OwnedEvent::Ready {
                version,
                limits: Limits {
                    max_frame,
                    max_topic,
                    max_payload,
                    window
                }
            }
        ),
        status().prop_map(OwnedEvent::Status),
        any::<u16>().prop_map(|id| OwnedEvent::PubAck { id }),
        // SubResult::from: 0x80 is Failure, every other byte a granted QoS.
        (any::<u16>(), any::<u8>()).prop_map(|(id, r)| OwnedEvent::SubAck {
            id,
            result: SubResult::from(r)
        }),
        any::<u16>().prop_map(|id| OwnedEvent::UnsubAck { id }),
        (
            any::<u16>(),
            text(MAX_TOPIC_LEN),
            bytes(MAX_PAYLOAD_LEN),
            qos(),
            any::<bool>(),
            any::<bool>()
        )
            .prop_map(|(id, topic, payload, qos, retain, dup)| OwnedEvent::Message {
                id,
                topic,
                payload,
                qos,
                retain,
                dup
            }),
        (any::<u16>(), bridge_state()).prop_map(|(id, state)| OwnedEvent::Pong { id, state }),
        proptest::option::of(any::<u64>()).prop_map(|unix_ms| OwnedEvent::Time { unix_ms }),
        any::<(u32, u32, u32, u32, u32, u32, u32, u16)>().prop_map(|(a, b, c, d, e, f, g, h)| OwnedEvent::Stats(
            Stats {
                frames_rx: a,
                frames_tx: b,
                frame_errors: c,
                resyncs: d,
                reconnects: e,
                published: f,
                delivered: g,
                queue_high_water: h,
            }
        )),
        (any::<u16>(), any::<u8>()).prop_map(|(id, k)| OwnedEvent::Error {
            id,
            kind: ErrorKind::from(k)
        }),
        any::<u16>().prop_map(|len| OwnedEvent::TooLong { len }),
    ]
}

/// Chunk sizes to cut a byte stream with (cycled); empty means one chunk.
fn chunks() -> impl Strategy<Value = Vec<usize>> {
    vec(1usize..=40, 0..16)
}

// ---------------------------------------------------------------------------------------------------------------
// Helpers.
// ---------------------------------------------------------------------------------------------------------------

/// The message bytes, without a frame.
fn message_bytes<T: Encode>(msg: &T) -> Vec<u8> {
    let mut buf = vec![0u8; 4 * MAX_MESSAGE_LEN];
    let n = protocol::wire::encode(msg, &mut buf).expect("encodes");
    buf.truncate(n);
    buf
}

/// `v` as an unsigned LEB128 varint (postcard's integers).
fn varint(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
    out
}

/// The whole frame, delimiter included.
fn frame<T: Encode>(msg: &T) -> Vec<u8> {
    let mut buf = vec![0u8; MAX_FRAME_LEN];
    let n = protocol::encode(msg, &mut buf).expect("fits MAX_FRAME_LEN");
    buf.truncate(n);
    buf
}

/// What the decoder said about each frame end: the message bytes or the error.
type Out = Result<Vec<u8>, FrameError>;

/// Feeds `input` to `dec` cut in chunks of the given sizes (cycled; all of it at once when `sizes` is empty) and
/// collects every frame end.
fn feed_chunks<const N: usize>(dec: &mut FrameDecoder<N>, input: &[u8], sizes: &[usize]) -> Vec<Out> {
    let mut out = Vec::new();
    let mut pos = 0;
    let mut k = 0;
    while pos < input.len() {
        let size = sizes.get(k % sizes.len().max(1)).copied().unwrap_or(input.len()).max(1);
        k += 1;
        let end = (pos + size).min(input.len());
        let mut chunk = &input[pos..end];
        pos = end;
        loop {
            match dec.feed(chunk) {
                Feed::Consumed => break,
                Feed::Frame { message, rest } => {
                    out.push(Ok(message.to_vec()));
                    chunk = rest;
                }
                Feed::Error { error, rest } => {
                    out.push(Err(error));
                    chunk = rest;
                }
            }
        }
    }
    out
}

fn decoder() -> FrameDecoder<MAX_FRAME_LEN> {
    FrameDecoder::new()
}

/// A sink with room for `room` bytes that records what it was given: the accepted bytes, and every write it
/// refused.
struct ShortSink {
    room: usize,
    bytes: Vec<u8>,
    refused: usize,
    /// A write came after a refused one.
    written_after_refusal: bool,
}

impl protocol::wire::Sink for ShortSink {
    fn write(&mut self, bytes: &[u8]) -> Result<(), protocol::frame::EncodeError> {
        if self.refused > 0 {
            self.written_after_refusal = true;
        }
        if self.bytes.len() + bytes.len() > self.room {
            self.refused += 1;
            return Err(protocol::frame::EncodeError::BufferFull);
        }
        self.bytes.extend_from_slice(bytes);
        Ok(())
    }
}

/// Encodes `msg` into sinks of every size below its length: each fails with `BufferFull` after exactly one
/// refused write, having taken a prefix of the encoding and nothing after the refusal.
fn check_short_sinks<T: Encode>(msg: &T) -> Result<(), TestCaseError> {
    let full = message_bytes(msg);
    for room in 0..full.len() {
        let mut sink = ShortSink {
            room,
            bytes: Vec::new(),
            refused: 0,
            written_after_refusal: false,
        };
        prop_assert_eq!(msg.encode_to(&mut sink), Err(protocol::frame::EncodeError::BufferFull));
        prop_assert_eq!(sink.refused, 1);
        prop_assert!(!sink.written_after_refusal);
        prop_assert!(full.starts_with(&sink.bytes));
        let mut buf = vec![0u8; room];
        prop_assert!(protocol::wire::encode(msg, &mut buf).is_err());
    }
    Ok(())
}

proptest! {
    #[test]
    fn request_into_a_short_sink_fails_at_its_first_refusal(req in request()) {
        check_short_sinks(&req.get())?;
    }

    #[test]
    fn event_into_a_short_sink_fails_at_its_first_refusal(ev in event()) {
        check_short_sinks(&ev.get())?;
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Round trips.
// ---------------------------------------------------------------------------------------------------------------

proptest! {
    #[test]
    fn request_round_trips(req in request()) {
        let req = req.get();
        prop_assert_eq!(req.check_limits(), Ok(()));
        let bytes = message_bytes(&req);
        prop_assert!(bytes.len() <= MAX_MESSAGE_LEN);
        prop_assert_eq!(Request::decode(&bytes), Ok(req));
    }

    #[test]
    fn event_round_trips(ev in event()) {
        let ev = ev.get();
        prop_assert_eq!(ev.check_limits(), Ok(()));
        let bytes = message_bytes(&ev);
        prop_assert!(bytes.len() <= MAX_MESSAGE_LEN);
        prop_assert_eq!(Event::decode(&bytes), Ok(ev));
    }

    #[test]
    fn request_frame_round_trips_in_any_chunks(req in request(), sizes in chunks()) {
        let req = req.get();
        let frame = frame(&req);
        prop_assert!(frame.len() <= max_encoded_len(message_bytes(&req).len()));
        prop_assert!(frame[..frame.len() - 1].iter().all(|&b| b != 0), "COBS leaves no zero inside a frame");
        let mut dec = decoder();
        let out = feed_chunks(&mut dec, &frame, &sizes);
        prop_assert_eq!(out.len(), 1);
        let message = out[0].as_ref().expect("intact frame");
        prop_assert_eq!(message, &message_bytes(&req));
        prop_assert_eq!(Request::decode(message), Ok(req));
        prop_assert_eq!(dec.stats().frames, 1);
    }

    #[test]
    fn event_frame_round_trips_in_any_chunks(ev in event(), sizes in chunks()) {
        let ev = ev.get();
        let frame = frame(&ev);
        let mut dec = decoder();
        let out = feed_chunks(&mut dec, &frame, &sizes);
        prop_assert_eq!(out.len(), 1);
        let message = out[0].as_ref().expect("intact frame");
        prop_assert_eq!(Event::decode(message), Ok(ev));
    }

    /// Several frames in one buffer, with extra delimiters between them (empty frames are skipped), fed whole or
    /// in chunks: every frame comes out, in order.
    #[test]
    fn several_frames_in_one_buffer(
        evs in vec(event(), 1..6),
        extra_zeros in vec(0usize..3, 6),
        sizes in chunks(),
    ) {
        let mut stream = Vec::new();
        for (i, ev) in evs.iter().enumerate() {
            stream.extend(std::iter::repeat_n(0u8, extra_zeros[i]));
            stream.extend(frame(&ev.get()));
        }
        for sizes in [&[][..], &sizes[..]] {
            let mut dec = decoder();
            let out = feed_chunks(&mut dec, &stream, sizes);
            prop_assert_eq!(out.len(), evs.len());
            for (got, ev) in out.iter().zip(&evs) {
                let message = got.as_ref().expect("intact frame");
                prop_assert_eq!(Event::decode(message), Ok(ev.get()));
            }
            prop_assert_eq!(dec.stats().frames as usize, evs.len());
        }
    }

    /// A decoder that starts in the middle of a stream (a reset, a bit slip) loses at most the frame it started in:
    /// the tail of that one ends as one frame end (an error: see `every_tail_of_a_frame_is_refused`), then every
    /// later frame is whole.
    #[test]
    fn decoder_started_mid_frame_recovers_at_the_next_delimiter(
        reqs in vec(request(), 2..5),
        cut in any::<prop::sample::Index>(),
        sizes in chunks(),
    ) {
        let first = frame(&reqs[0].get());
        let mut stream = first.clone();
        for r in &reqs[1..] {
            stream.extend(frame(&r.get()));
        }
        let start = 1 + cut.index(first.len() - 1);
        let mut dec = decoder();
        let out = feed_chunks(&mut dec, &stream[start..], &sizes);
        prop_assert!(out.len() == reqs.len() || out.len() == reqs.len() - 1, "{} frame ends", out.len());
        let later = &out[out.len() - (reqs.len() - 1)..];
        for (got, r) in later.iter().zip(&reqs[1..]) {
            prop_assert_eq!(Request::decode(got.as_ref().expect("intact frame")), Ok(r.get()));
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Arbitrary bytes.
// ---------------------------------------------------------------------------------------------------------------

/// Bytes with more zeros and small values than uniform, to hit COBS code bytes and delimiters often.
fn noise() -> impl Strategy<Value = Vec<u8>> {
    vec(prop_oneof![6 => any::<u8>(), 2 => 0u8..4, 1 => Just(0xFFu8)], 0..1500)
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_the_decoder(input in noise(), sizes in chunks()) {
        let mut small = FrameDecoder::<16>::new();
        let mut full = decoder();
        let small_out = feed_chunks(&mut small, &input, &sizes);
        let full_out = feed_chunks(&mut full, &input, &sizes);
        for (out, stats) in [(&small_out, small.stats()), (&full_out, full.stats())] {
            for message in out.iter().flatten() {
                let _ = Request::decode(message);
                let _ = Event::decode(message);
            }
            // Every frame end is counted once.
            prop_assert_eq!((stats.frames + stats.crc_errors + stats.overlong + stats.malformed) as usize, out.len());
        }
        // Chunking changes nothing.
        prop_assert_eq!(&full_out, &feed_chunks(&mut decoder(), &input, &[]));
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_message_decoders(input in bytes(300)) {
        // Whatever decodes re-encodes to something that decodes the same (the decoder accepts no message that
        // the encoder could not produce, up to non-minimal varints).
        if let Ok(req) = Request::decode(&input) {
            let again = message_bytes(&req);
            prop_assert_eq!(Request::decode(&again), Ok(req));
        }
        if let Ok(ev) = Event::decode(&input) {
            let again = message_bytes(&ev);
            prop_assert_eq!(Event::decode(&again), Ok(ev));
        }
    }

    #[test]
    fn arbitrary_message_bytes_with_a_known_tag_never_panic(tag in 0u8..12, input in bytes(64)) {
        let mut bytes = vec![tag];
        bytes.extend(input);
        let _ = Request::decode(&bytes);
        let _ = Event::decode(&bytes);
    }

    #[test]
    fn unknown_variant_index_is_reported(tag in 0u32..100_000, rest in bytes(8)) {
        let mut bytes = varint(tag.into()); // the index as a varint
        bytes.extend(rest);
        if tag >= 8 {
            prop_assert_eq!(Request::decode(&bytes), Err(DecodeError::UnknownMessage(tag)));
        }
        if tag >= 10 {
            prop_assert_eq!(Event::decode(&bytes), Err(DecodeError::UnknownMessage(tag)));
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Bit errors.
// ---------------------------------------------------------------------------------------------------------------

/// Flips every bit of `frame` in turn (delimiter included) and checks that the decoder never delivers a frame from
/// the damaged bytes, and that it is back in step for the frame after the next delimiter.
fn every_bit_flip_is_caught(frame: &[u8]) {
    let good = self::frame(&Request::Ping { id: 0x0BAD });
    for bit in 0..frame.len() * 8 {
        let mut damaged = frame.to_vec();
        damaged[bit / 8] ^= 1 << (bit % 8);
        let mut dec = decoder();
        let out = feed_chunks(&mut dec, &damaged, &[]);
        assert!(
            out.iter().all(Result::is_err),
            "bit {bit} flipped in {frame:02X?}: the decoder delivered {out:02X?}"
        );
        // A flipped delimiter merges the damaged frame with the next one; the one after is whole.
        let mut stream = good.clone();
        stream.extend(&good);
        let out = feed_chunks(&mut dec, &stream, &[]);
        assert_eq!(out.last(), Some(&Ok(vec![0x05, 0xAD, 0x17])), "bit {bit}: no recovery");
    }
}

#[test]
fn every_single_bit_error_is_caught() {
    for f in &representative_frames() {
        every_bit_flip_is_caught(f);
    }
}

/// A receiver that starts inside a frame (after a reset or a bit slip) sees its tail: never accepted as a frame.
#[test]
fn every_tail_of_a_frame_is_refused() {
    for f in &representative_frames() {
        for start in 1..f.len() {
            let out = feed_chunks(&mut decoder(), &f[start..], &[]);
            assert!(
                out.iter().all(Result::is_err),
                "tail from {start} of {f:02X?}: {out:02X?}"
            );
        }
    }
}

fn representative_frames() -> Vec<Vec<u8>> {
    let payload: Vec<u8> = (0..=255u8).cycle().take(600).collect();
    vec![
        frame(&Request::Ping { id: 1 }),
        frame(&Request::TimeRequest),
        frame(&Request::Subscribe {
            id: 0,
            filter: "a/#",
            qos: QoS::AtLeastOnce,
        }),
        frame(&Request::Publish {
            id: 0x1234,
            topic: "sensors/kitchen/temperature",
            payload: &payload,
            qos: QoS::AtLeastOnce,
            retain: false,
        }),
        frame(&Request::Publish {
            id: 1,
            topic: "t",
            payload: &[0x55; 300],
            qos: QoS::AtMostOnce,
            retain: false,
        }),
        frame(&Request::Configure(Config {
            version: 1,
            wifi_ssid: "home",
            wifi_password: "correct horse battery staple",
            broker_host: "broker.example",
            broker_port: 1883,
            client_id: "target-1",
            username: Some("user"),
            password: Some(&[0, 1, 2, 0, 0]),
            keepalive_s: 30,
            clean_session: false,
            will: Some(Will {
                topic: "status/target-1",
                payload: b"offline",
                qos: QoS::AtLeastOnce,
                retain: true,
            }),
            tls: false,
            max_message: 1000,
        })),
        frame(&Event::Message {
            id: 9,
            topic: "cmd/#",
            payload: &[0; 40],
            qos: QoS::AtLeastOnce,
            retain: false,
            dup: false,
        }),
        frame(&Event::Time { unix_ms: None }),
        frame(&Event::PubAck { id: 150 }),
        frame(&Event::Stats(Stats {
            frames_rx: 1,
            frames_tx: 0,
            frame_errors: u32::MAX,
            resyncs: 3,
            reconnects: 0,
            published: 70_000,
            delivered: 12,
            queue_high_water: 4,
        })),
    ]
}

// ---------------------------------------------------------------------------------------------------------------
// Overlong frames.
// ---------------------------------------------------------------------------------------------------------------

/// A Publish of `6 + n` message bytes: 01, id 0, topic "", payload of n bytes (n < 128), qos 0, retain false.
fn publish_of(n: usize) -> Vec<u8> {
    assert!(n < 128);
    let payload = vec![0xA5u8; n];
    frame(&Request::Publish {
        id: 0,
        topic: "",
        payload: &payload,
        qos: QoS::AtMostOnce,
        retain: false,
    })
}

#[test]
fn decoder_takes_a_frame_that_exactly_fills_its_buffer() {
    // 6 + 8 message bytes + 2 CRC bytes = 16.
    let mut dec = FrameDecoder::<16>::new();
    let out = feed_chunks(&mut dec, &publish_of(8), &[]);
    assert!(matches!(out.as_slice(), [Ok(m)] if m.len() == 14), "{out:?}");
    assert_eq!(dec.stats().overlong, 0);
}

#[test]
fn overlong_frame_is_counted_and_the_decoder_recovers() {
    let mut dec = FrameDecoder::<16>::new();
    // One byte more than the buffer.
    let out = feed_chunks(&mut dec, &publish_of(9), &[]);
    assert_eq!(out, [Err(FrameError::Overlong)]);
    assert_eq!(dec.stats().overlong, 1);
    // The next frame is whole.
    let ping = frame(&Request::Ping { id: 1 });
    assert_eq!(feed_chunks(&mut dec, &ping, &[]), [Ok(vec![0x05, 0x01])]);
    // A much longer one, fed in small chunks, followed in the same buffer by a good one.
    let mut stream = publish_of(120);
    stream.extend(&ping);
    assert_eq!(
        feed_chunks(&mut dec, &stream, &[3, 1, 7]),
        [Err(FrameError::Overlong), Ok(vec![0x05, 0x01])]
    );
    let stats = dec.stats();
    assert_eq!(
        (stats.overlong, stats.frames, stats.crc_errors, stats.malformed),
        (2, 2, 0, 0)
    );
}

proptest! {
    #[test]
    fn overlong_frames_never_stop_the_next_one(n in 0usize..5000, filler in 1u8..=255, sizes in chunks()) {
        let mut stream = vec![filler; n];
        stream.push(0);
        let ping = frame(&Request::Ping { id: 7 });
        stream.extend(&ping);
        let mut dec = FrameDecoder::<64>::new();
        let out = feed_chunks(&mut dec, &stream, &sizes);
        prop_assert_eq!(out.last(), Some(&Ok(vec![0x05, 0x07])));
        // n filler bytes decode to at least n - n / 255 - 1 bytes, whatever their value.
        if n > 80 {
            prop_assert_eq!(dec.stats().overlong, 1);
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Limits.
// ---------------------------------------------------------------------------------------------------------------

/// A string of exactly `len` bytes made of two-byte characters (and one `a` when `len` is odd): limits count bytes.
fn wide(len: usize) -> String {
    let mut s = "é".repeat(len / 2);
    if len % 2 == 1 {
        s.push('a');
    }
    assert_eq!(s.len(), len);
    s
}

/// Checks that `msg` is within the limits, fits `MAX_MESSAGE_LEN` as a message and `MAX_FRAME_LEN` as a frame,
/// and comes back whole through a `FrameDecoder<MAX_FRAME_LEN>`; returns the message length.
fn check_largest_request(msg: Request<'_>) -> usize {
    assert_eq!(msg.check_limits(), Ok(()));
    let bytes = message_bytes(&msg);
    assert!(bytes.len() <= MAX_MESSAGE_LEN, "{} > MAX_MESSAGE_LEN", bytes.len());
    let f = frame(&msg);
    assert!(f.len() <= MAX_FRAME_LEN);
    let out = feed_chunks(&mut decoder(), &f, &[]);
    assert_eq!(out.len(), 1);
    assert_eq!(Request::decode(out[0].as_ref().expect("intact")), Ok(msg));
    bytes.len()
}

fn largest_config(s: &Strings) -> Config<'_> {
    Config {
        version: u16::MAX,
        wifi_ssid: &s.ssid,
        wifi_password: &s.wifi_password,
        broker_host: &s.name,
        broker_port: u16::MAX,
        client_id: &s.name,
        username: Some(&s.name),
        password: Some(&s.password),
        keepalive_s: u16::MAX,
        clean_session: true,
        will: Some(Will {
            topic: &s.topic,
            payload: &s.will_payload,
            qos: QoS::AtLeastOnce,
            retain: true,
        }),
        tls: true,
        max_message: u16::MAX,
    }
}

/// Fields of the largest messages, at their limits, without a zero byte (the worst case for COBS).
struct Strings {
    ssid: String,
    wifi_password: String,
    name: String,
    password: Vec<u8>,
    topic: String,
    will_payload: Vec<u8>,
    payload: Vec<u8>,
}

impl Strings {
    fn at_limits() -> Self {
        Strings {
            ssid: wide(MAX_SSID_LEN),
            wifi_password: wide(MAX_WIFI_PASSWORD_LEN),
            name: wide(MAX_NAME_LEN),
            password: vec![0xFF; MAX_NAME_LEN],
            topic: wide(MAX_TOPIC_LEN),
            will_payload: vec![0xFF; MAX_WILL_PAYLOAD_LEN],
            payload: vec![0xFF; MAX_PAYLOAD_LEN],
        }
    }
}

#[test]
fn largest_messages_fit_the_frame_limits() {
    let s = Strings::at_limits();
    // Sizes by hand: every u16 at its maximum takes 3 bytes, a length of 128 or more takes 2.
    // Configure: 1 + 3 + (1+32) + (1+64) + (2+128) + 3 + (2+128) + (1+2+128) + (1+2+128) + 3 + 1
    //            + will (1 + (2+256) + (2+256) + 1 + 1) + 1 + 3 = 1154.
    assert_eq!(check_largest_request(Request::Configure(largest_config(&s))), 1154);
    // Publish: 1 + 3 + (2+256) + (2+1024) + 1 + 1 = 1290.
    assert_eq!(
        check_largest_request(Request::Publish {
            id: u16::MAX,
            topic: &s.topic,
            payload: &s.payload,
            qos: QoS::AtLeastOnce,
            retain: true,
        }),
        1290
    );
    // Message: 1 + 3 + (2+256) + (2+1024) + 1 + 1 + 1 = 1291.
    let msg = Event::Message {
        id: u16::MAX,
        topic: &s.topic,
        payload: &s.payload,
        qos: QoS::AtLeastOnce,
        retain: true,
        dup: true,
    };
    let bytes = message_bytes(&msg);
    assert_eq!(bytes.len(), 1291);
    assert!(bytes.len() <= MAX_MESSAGE_LEN);
    // The frame fits a buffer of exactly MAX_FRAME_LEN and the largest decoder takes it back.
    let f = frame(&msg);
    assert!(f.len() <= MAX_FRAME_LEN);
    let out = feed_chunks(&mut decoder(), &f, &[]);
    assert_eq!(Event::decode(out[0].as_ref().expect("intact")), Ok(msg));
    // The bound itself: a message of MAX_MESSAGE_LEN bytes without a zero until its end frames into MAX_FRAME_LEN
    // and passes a FrameDecoder<MAX_FRAME_LEN>. Publish { id 0, topic "", payload n } is 1+1+1+2+n+1+1 bytes (its
    // payload is over the limit, which the frame layer does not look at).
    let worst = vec![0xFFu8; MAX_MESSAGE_LEN - 7];
    let publish = Request::Publish {
        id: 0,
        topic: "",
        payload: &worst,
        qos: QoS::AtMostOnce,
        retain: false,
    };
    assert_eq!(message_bytes(&publish).len(), MAX_MESSAGE_LEN);
    let f = frame(&publish);
    assert!(f.len() <= MAX_FRAME_LEN);
    assert_eq!(feed_chunks(&mut decoder(), &f, &[]), [Ok(message_bytes(&publish))]);
    // Stats and Ready are the largest fixed-size messages.
    let stats = Event::Stats(Stats {
        frames_rx: u32::MAX,
        frames_tx: u32::MAX,
        frame_errors: u32::MAX,
        resyncs: u32::MAX,
        reconnects: u32::MAX,
        published: u32::MAX,
        delivered: u32::MAX,
        queue_high_water: u16::MAX,
    });
    assert_eq!(message_bytes(&stats).len(), 1 + 7 * 5 + 3);
}

#[test]
fn one_byte_over_any_limit_is_too_long() {
    let s = Strings::at_limits();
    let over_topic = wide(MAX_TOPIC_LEN + 1);
    let over_name = wide(MAX_NAME_LEN + 1);
    let over_bytes = vec![1u8; MAX_NAME_LEN + 1];
    let over_will = vec![1u8; MAX_WILL_PAYLOAD_LEN + 1];
    let over_payload = vec![1u8; MAX_PAYLOAD_LEN + 1];
    let over_ssid = wide(MAX_SSID_LEN + 1);
    let over_wifi_password = wide(MAX_WIFI_PASSWORD_LEN + 1);
    let base = largest_config(&s);
    let will = base.will.expect("set");
    let configs = [
        Config {
            wifi_ssid: &over_ssid,
            ..base
        },
        Config {
            wifi_password: &over_wifi_password,
            ..base
        },
        Config {
            broker_host: &over_name,
            ..base
        },
        Config {
            client_id: &over_name,
            ..base
        },
        Config {
            username: Some(&over_name),
            ..base
        },
        Config {
            password: Some(&over_bytes),
            ..base
        },
        Config {
            will: Some(Will {
                topic: &over_topic,
                ..will
            }),
            ..base
        },
        Config {
            will: Some(Will {
                payload: &over_will,
                ..will
            }),
            ..base
        },
    ];
    let mut requests: Vec<Request<'_>> = configs.into_iter().map(Request::Configure).collect();
    requests.extend([
        Request::Publish {
            id: 1,
            topic: &over_topic,
            payload: &[],
            qos: QoS::AtMostOnce,
            retain: false,
        },
        Request::Publish {
            id: 1,
            topic: "t",
            payload: &over_payload,
            qos: QoS::AtMostOnce,
            retain: false,
        },
        Request::Subscribe {
            id: 1,
            filter: &over_topic,
            qos: QoS::AtMostOnce,
        },
        Request::Unsubscribe {
            id: 1,
            filter: &over_topic,
        },
    ]);
    for req in requests {
        assert_eq!(req.check_limits(), Err(DecodeError::TooLong), "{req:?}");
        assert_eq!(
            Request::decode(&message_bytes(&req)),
            Err(DecodeError::TooLong),
            "{req:?}"
        );
    }
    for (topic, payload) in [(&over_topic[..], &[][..]), ("t", &over_payload[..])] {
        let ev = Event::Message {
            id: 1,
            topic,
            payload,
            qos: QoS::AtMostOnce,
            retain: false,
            dup: false,
        };
        assert_eq!(Event::decode(&message_bytes(&ev)), Err(DecodeError::TooLong));
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The built-in encoding is postcard's: with the `serde` feature, postcard and serde agree with it byte for byte,
// and on which bytes are refused and how.
// ---------------------------------------------------------------------------------------------------------------

#[cfg(feature = "serde")]
#[path = "support/postcard_reference.rs"]
mod postcard_reference;

#[cfg(feature = "serde")]
mod postcard_agrees {
    use super::postcard_reference::postcard_decode;
    use super::*;

    fn postcard_bytes<T: serde::Serialize>(msg: &T) -> Vec<u8> {
        let mut buf = vec![0u8; 4 * MAX_MESSAGE_LEN];
        postcard::to_slice(msg, &mut buf).expect("serializes").to_vec()
    }

    fn check_decoders_agree(bytes: &[u8]) -> Result<(), TestCaseError> {
        prop_assert_eq!(
            Request::decode(bytes),
            postcard_decode(bytes, 8, Request::check_limits),
            "request"
        );
        prop_assert_eq!(
            Event::decode(bytes),
            postcard_decode(bytes, 11, Event::check_limits),
            "event"
        );
        Ok(())
    }

    /// A valid message's bytes, damaged: cut short, one byte changed, or a byte appended.
    fn damaged(mut bytes: Vec<u8>, at: prop::sample::Index, value: u8, how: u8) -> Vec<u8> {
        match how % 3 {
            0 => bytes.truncate(at.index(bytes.len())),
            1 => {
                let i = at.index(bytes.len());
                bytes[i] = value;
            }
            _ => bytes.push(value),
        }
        bytes
    }

    proptest! {
        #[test]
        fn requests_encode_as_postcard_does(req in request()) {
            let req = req.get();
            prop_assert_eq!(message_bytes(&req), postcard_bytes(&req));
        }

        #[test]
        fn events_encode_as_postcard_does(ev in event()) {
            let ev = ev.get();
            prop_assert_eq!(message_bytes(&ev), postcard_bytes(&ev));
        }

        #[test]
        fn decoders_agree_on_arbitrary_bytes(tag in 0u8..12, input in bytes(80)) {
            let mut bytes = vec![tag];
            bytes.extend(input);
            check_decoders_agree(&bytes)?;
        }

        #[test]
        fn decoders_agree_on_damaged_requests(
            req in request(), at in any::<prop::sample::Index>(), value in any::<u8>(), how in any::<u8>(),
        ) {
            check_decoders_agree(&damaged(message_bytes(&req.get()), at, value, how))?;
        }

        #[test]
        fn decoders_agree_on_damaged_events(
            ev in event(), at in any::<prop::sample::Index>(), value in any::<u8>(), how in any::<u8>(),
        ) {
            check_decoders_agree(&damaged(message_bytes(&ev.get()), at, value, how))?;
        }

        /// Varints at the edges of their widths: the longest form, a last byte with bits beyond the width,
        /// padding groups of zeros.
        #[test]
        fn decoders_agree_on_odd_varints(
            prefix in prop_oneof![
                // Integers: ids (u16), the Stats counters (u32), the time (u64 after Some).
                Just(vec![2u8]), Just(vec![4]), Just(vec![8]), Just(vec![7, 1]),
                // Lengths: of a filter after an id, of the SSID after a version.
                Just(vec![3, 1]), Just(vec![0, 1]),
            ],
            groups in vec(prop_oneof![0x80u8..=0xFF, 0u8..0x80], 1..12),
            tail in bytes(4),
        ) {
            let mut bytes = prefix;
            bytes.extend(groups);
            bytes.extend(tail);
            check_decoders_agree(&bytes)?;
        }

    }
    /// Every integer and length field of a valid message padded to every length up to eleven bytes, with a last
    /// byte at the edges of what each width allows (random bytes almost never make such a padded value that is
    /// small enough to be read). A length is read as a 64-bit varint, as postcard reads a `usize` here.
    #[test]
    fn decoders_agree_on_padded_varints() {
        // Each message with its field under test given as `None`: (value, bytes before, bytes after).
        let cases: [(u8, &[u8], &[u8]); 6] = [
            (2, &[3, 1], b"ab"),                // Unsubscribe: the filter's length
            (5, &[4], &[]),                     // Ack: the id
            (5, &[8], &[0, 0, 0, 0, 0, 0, 0]),  // Stats: the first counter
            (5, &[7, 1], &[]),                  // Time: the milliseconds
            (2, &[5, 1, 1, b't'], b"xy\0\0\0"), // Message: the payload's length
            (1, &[0, 1, 1, b's'], &[]),         // Configure: the password's length, truncated after it
        ];
        for (value, before, after) in cases {
            for padding in 0..=10 {
                for last in [0u8, 1, 2, 3, 4, 0x0F, 0x10, 0x7F] {
                    let mut bytes = before.to_vec();
                    if padding == 0 {
                        bytes.push(value);
                    } else {
                        bytes.push(value | 0x80);
                        bytes.extend(std::iter::repeat_n(0x80, padding - 1));
                        bytes.push(last);
                    }
                    bytes.extend(after);
                    check_decoders_agree(&bytes).unwrap_or_else(|e| panic!("{bytes:02X?}: {e}"));
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// A port's send queue is a ring: frames wrap around its end and come out whole, in order.
// ---------------------------------------------------------------------------------------------------------------

proptest! {
    /// Queues requests into a small port while draining some bytes between them, so that frames start anywhere
    /// and wrap around the end of the ring; every frame queued comes out intact and in order, and a refusal is
    /// `Full` when bytes are queued and `TooLarge` only when the queue is empty.
    #[test]
    fn port_send_queue_wraps_around(reqs in vec(request(), 1..20), drains in vec(0usize..60, 20)) {
        use protocol::link::LinkIo;
        use protocol::{Port, SendError};

        let mut port = Port::<97, 8>::new();
        let mut sent = Vec::new();
        let mut wire = Vec::new();
        for (req, drain) in reqs.iter().zip(&drains) {
            let req = req.get();
            let len = frame(&req).len();
            let before = port.tx_pending();
            match port.send(&req) {
                Ok(()) => {
                    prop_assert_eq!(port.tx_pending(), before + len);
                    sent.push(req);
                }
                Err(SendError::Full) => prop_assert!(before > 0 && before + len > 97),
                Err(SendError::TooLarge) => prop_assert!(before == 0 && len > 97),
                Err(e) => prop_assert!(false, "unexpected {:?}", e),
            }
            for _ in 0..*drain {
                match port.tx_next() {
                    Some(b) => wire.push(b),
                    None => break,
                }
            }
        }
        while let Some(b) = port.tx_next() {
            wire.push(b);
        }
        prop_assert!(!port.tx_ready());
        let out = feed_chunks(&mut decoder(), &wire, &[]);
        prop_assert_eq!(out.len(), sent.len());
        for (got, req) in out.iter().zip(&sent) {
            prop_assert_eq!(Request::decode(got.as_ref().expect("intact frame")), Ok(*req));
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The UTF-8 check of the decoders agrees with core's.
// ---------------------------------------------------------------------------------------------------------------

fn same_as_core(bytes: &[u8]) {
    let ours = protocol::wire::utf8(bytes);
    let core = std::str::from_utf8(bytes).ok();
    assert_eq!(ours, core, "{bytes:02X?}");
}

#[test]
fn utf8_agrees_with_core_on_every_sequence_of_up_to_three_bytes() {
    same_as_core(&[]);
    for a in 0..=255u8 {
        same_as_core(&[a]);
        for b in 0..=255u8 {
            same_as_core(&[a, b]);
            for c in 0..=255u8 {
                same_as_core(&[a, b, c]);
            }
        }
    }
}

#[test]
fn utf8_agrees_with_core_on_every_four_byte_lead() {
    // Every lead byte from F0 up with every second and third byte, and fourth bytes at the edges of the
    // continuation range; then the same sequences followed by ASCII and cut short.
    for a in 0xF0..=0xFFu8 {
        for b in 0..=255u8 {
            for c in [0x00, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xFF] {
                for d in [0x00, 0x7F, 0x80, 0xBF, 0xC0, 0xFF] {
                    same_as_core(&[a, b, c, d]);
                    same_as_core(&[a, b, c, d, b'x']);
                    same_as_core(&[b'x', a, b, c, d]);
                }
            }
        }
    }
}

proptest! {
    #[test]
    fn utf8_agrees_with_core_on_strings_and_noise(s in ".{0,40}", noise in bytes(40), cut in any::<prop::sample::Index>()) {
        same_as_core(s.as_bytes());
        same_as_core(&noise);
        // A valid string cut anywhere, even inside a character.
        let b = s.as_bytes();
        same_as_core(&b[..cut.index(b.len() + 1)]);
        let mut mixed = s.clone().into_bytes();
        mixed.extend(&noise);
        same_as_core(&mixed);
    }
}
