//! Golden bytes: the wire format of protocol version 1, written by hand from postcard's format and pinned here.
//!
//! postcard's format, as used by these messages: `u16`/`u32`/`u64` are unsigned LEB128 varints (7 bits per byte,
//! least significant group first, high bit set on every byte but the last); `u8` is one raw byte; `bool` is
//! `0x00`/`0x01`; `Option` is `0x00` for `None`, `0x01` then the value for `Some`; strings and byte strings are a
//! varint length then the bytes; an enum variant is its index as a varint, then its fields in order; a struct is
//! its fields in order. QoS, DownReason, SubResult and ErrorKind travel as one `u8`.
//!
//! Every expected byte string below is derived from that description, not copied from the encoder. If one of these
//! tests fails, the wire format changed: that needs a new `PROTOCOL_VERSION` and a new section in
//! `docs/protocol.md`, not a new expected value.

mod common;

use common::QueueIo;
use protocol::link::bits::{PREAMBLE_ONES, STUFF_AFTER, SYNC_ONES};
use protocol::link::{Master, Slave, Wait};
use protocol::message::{
    MAX_MESSAGE_LEN, MAX_NAME_LEN, MAX_PAYLOAD_LEN, MAX_SSID_LEN, MAX_TOPIC_LEN, MAX_WIFI_PASSWORD_LEN,
    MAX_WILL_PAYLOAD_LEN,
};
use protocol::{
    BridgeState, BrokerState, Config, DecodeError, DownReason, Encode, ErrorKind, Event, Feed, FrameDecoder, Limits,
    QoS, Request, Stats, Status, SubResult, Will, MAX_FRAME_LEN, PROTOCOL_VERSION,
};

/// What postcard needs to encode a message: serde's `Serialize` with the `serde` feature, nothing without it.
#[cfg(feature = "serde")]
trait Postcard: serde::Serialize {}
#[cfg(feature = "serde")]
impl<T: serde::Serialize> Postcard for T {}
#[cfg(not(feature = "serde"))]
trait Postcard {}
#[cfg(not(feature = "serde"))]
impl<T> Postcard for T {}

/// Checks that `msg` encodes to exactly `bytes` (also through postcard, with the `serde` feature) and that `bytes`
/// decodes to exactly `msg`.
fn test_message<'a, T: Encode + Postcard + PartialEq + std::fmt::Debug>(
    msg: T,
    bytes: &'a [u8],
    decode: fn(&'a [u8]) -> Result<T, DecodeError>,
) {
    let mut buf = [0u8; MAX_MESSAGE_LEN];
    let n = protocol::wire::encode(&msg, &mut buf).expect("encodes");
    assert_eq!(&buf[..n], bytes, "encoding of {msg:?}");
    #[cfg(feature = "serde")]
    assert_eq!(
        postcard::to_slice(&msg, &mut buf).expect("serializes"),
        bytes,
        "postcard's encoding of {msg:?}"
    );
    assert_eq!(decode(bytes), Ok(msg), "decoding of {bytes:02X?}");
}

fn test_request(msg: Request<'_>, bytes: &[u8]) {
    test_message(msg, bytes, Request::decode);
}

fn test_event(msg: Event<'_>, bytes: &[u8]) {
    test_message(msg, bytes, Event::decode);
}

#[test]
fn protocol_version_is_two() {
    assert_eq!(PROTOCOL_VERSION, 2);
}

/// The limits table of `docs/protocol.md`: changing one changes what a peer must accept.
#[test]
fn limits_are_those_of_the_specification() {
    assert_eq!(
        (
            MAX_TOPIC_LEN,
            MAX_PAYLOAD_LEN,
            MAX_SSID_LEN,
            MAX_WIFI_PASSWORD_LEN,
            MAX_NAME_LEN,
            MAX_WILL_PAYLOAD_LEN
        ),
        (256, 1024, 32, 64, 128, 256)
    );
    assert_eq!((MAX_MESSAGE_LEN, MAX_FRAME_LEN), (1344, 1353));
    assert_eq!((PREAMBLE_ONES, SYNC_ONES, STUFF_AFTER), (17, 16, 15));
}

// ---------------------------------------------------------------------------------------------------------------
// Requests (target → bridge). Variant indices: Configure 0, Publish 1, Subscribe 2, Unsubscribe 3, Ack 4, Ping 5,
// TimeRequest 6, StatsRequest 7.
// ---------------------------------------------------------------------------------------------------------------

#[test]
fn configure_minimal() {
    test_request(
        Request::Configure(Config {
            version: 1,
            wifi_ssid: "net",
            wifi_password: "",
            broker_host: "h",
            broker_port: 1883,
            client_id: "c",
            username: None,
            password: None,
            keepalive_s: 60,
            clean_session: true,
            will: None,
            tls: false,
            max_message: 210,
        }),
        &[
            0x00, // Configure
            0x01, // version 1
            0x03, b'n', b'e', b't', // wifi_ssid
            0x00, // wifi_password ""
            0x01, b'h', // broker_host
            0xDB, 0x0E, // broker_port 1883 = 0x075B: 0x5B | 0x80, 0x075B >> 7 = 0x0E
            0x01, b'c', // client_id
            0x00, // username None
            0x00, // password None
            0x3C, // keepalive_s 60
            0x01, // clean_session true
            0x00, // will None
            0x00, // tls false
            0xD2, 0x01, // max_message 210 = 0xD2: 0x52 | 0x80, 0xD2 >> 7 = 1
        ],
    );
}

#[test]
fn configure_with_everything() {
    test_request(
        Request::Configure(Config {
            version: 300,
            wifi_ssid: "",
            wifi_password: "pw",
            broker_host: "10.0.0.1",
            broker_port: 8883,
            client_id: "id",
            username: Some("u"),
            password: Some(&[0x00, 0xFF]),
            keepalive_s: 0,
            clean_session: false,
            will: Some(Will {
                topic: "w",
                payload: b"bye",
                qos: QoS::AtLeastOnce,
                retain: true,
            }),
            tls: true,
            max_message: u16::MAX,
        }),
        &[
            0x00, // Configure
            0xAC, 0x02, // version 300 = 0x12C: 0x2C | 0x80, 0x12C >> 7 = 2
            0x00, // wifi_ssid ""
            0x02, b'p', b'w', // wifi_password
            0x08, b'1', b'0', b'.', b'0', b'.', b'0', b'.', b'1', // broker_host
            0xB3, 0x45, // broker_port 8883 = 0x22B3: 0x33 | 0x80, 0x22B3 >> 7 = 0x45
            0x02, b'i', b'd', // client_id
            0x01, 0x01, b'u', // username Some("u")
            0x01, 0x02, 0x00, 0xFF, // password Some([00 FF])
            0x00, // keepalive_s 0
            0x00, // clean_session false
            0x01, // will Some
            0x01, b'w', // will.topic
            0x03, b'b', b'y', b'e', // will.payload
            0x01, // will.qos AtLeastOnce
            0x01, // will.retain true
            0x01, // tls true
            0xFF, 0xFF, 0x03, // max_message 65535: three bytes
        ],
    );
}

#[test]
fn configure_with_will_of_unknown_qos() {
    test_request(
        Request::Configure(Config {
            version: 1,
            wifi_ssid: "s",
            wifi_password: "p",
            broker_host: "b",
            broker_port: 127,
            client_id: "c",
            username: Some(""),
            password: Some(&[]),
            keepalive_s: 128,
            clean_session: true,
            will: Some(Will {
                topic: "",
                payload: &[],
                qos: QoS::Unknown(2),
                retain: false,
            }),
            tls: false,
            max_message: 0,
        }),
        &[
            0x00, 0x01, 0x01, b's', 0x01, b'p', 0x01, b'b', //
            0x7F, // broker_port 127: one byte
            0x01, b'c', //
            0x01, 0x00, // username Some("")
            0x01, 0x00, // password Some([])
            0x80, 0x01, // keepalive_s 128: two bytes
            0x01, // clean_session
            0x01, 0x00, 0x00, 0x02, 0x00, // will Some { "", [], qos 2 (unknown), retain false }
            0x00, // tls false
            0x00, // max_message 0
        ],
    );
}

#[test]
fn publish() {
    test_request(
        Request::Publish {
            id: 0x1234,
            topic: "a/b",
            payload: &[0x00, 0xFF, 0x80],
            qos: QoS::AtMostOnce,
            retain: false,
        },
        &[
            0x01, // Publish
            0xB4, 0x24, // id 0x1234: 0x34 | 0x80, 0x1234 >> 7 = 0x24
            0x03, b'a', b'/', b'b', // topic
            0x03, 0x00, 0xFF, 0x80, // payload
            0x00, // qos AtMostOnce
            0x00, // retain false
        ],
    );
    test_request(
        Request::Publish {
            id: u16::MAX,
            topic: "",
            payload: &[],
            qos: QoS::AtLeastOnce,
            retain: true,
        },
        &[0x01, 0xFF, 0xFF, 0x03, 0x00, 0x00, 0x01, 0x01],
    );
}

#[test]
fn publish_with_unknown_qos_keeps_the_value() {
    test_request(
        Request::Publish {
            id: 0,
            topic: "t",
            payload: b"x",
            qos: QoS::Unknown(2),
            retain: false,
        },
        &[0x01, 0x00, 0x01, b't', 0x01, b'x', 0x02, 0x00],
    );
    // A u8 is one raw byte, not a varint: 0xFF stays one byte.
    test_request(
        Request::Publish {
            id: 0,
            topic: "t",
            payload: b"x",
            qos: QoS::Unknown(0xFF),
            retain: false,
        },
        &[0x01, 0x00, 0x01, b't', 0x01, b'x', 0xFF, 0x00],
    );
}

#[test]
fn publish_with_long_payload_has_a_two_byte_length() {
    let payload = [0xA5u8; 200];
    let mut bytes = vec![0x01, 0x07, 0x01, b't', 0xC8, 0x01]; // 200 = 0xC8: 0x48 | 0x80, 200 >> 7 = 1
    bytes.extend_from_slice(&payload);
    bytes.extend_from_slice(&[0x01, 0x00]);
    test_request(
        Request::Publish {
            id: 7,
            topic: "t",
            payload: &payload,
            qos: QoS::AtLeastOnce,
            retain: false,
        },
        &bytes,
    );
}

#[test]
fn subscribe() {
    test_request(
        Request::Subscribe {
            id: 1,
            filter: "s/+/#",
            qos: QoS::AtLeastOnce,
        },
        &[0x02, 0x01, 0x05, b's', b'/', b'+', b'/', b'#', 0x01],
    );
    // The length counts UTF-8 bytes: "é" is C3 A9.
    test_request(
        Request::Subscribe {
            id: 2,
            filter: "é/#",
            qos: QoS::AtMostOnce,
        },
        &[0x02, 0x02, 0x04, 0xC3, 0xA9, b'/', b'#', 0x00],
    );
}

#[test]
fn unsubscribe() {
    test_request(Request::Unsubscribe { id: 127, filter: "x" }, &[0x03, 0x7F, 0x01, b'x']);
    test_request(Request::Unsubscribe { id: 128, filter: "" }, &[0x03, 0x80, 0x01, 0x00]);
}

#[test]
fn ack() {
    test_request(Request::Ack { id: 0 }, &[0x04, 0x00]);
    test_request(Request::Ack { id: 16384 }, &[0x04, 0x80, 0x80, 0x01]); // 0x4000 = 2^14
}

#[test]
fn ping() {
    test_request(Request::Ping { id: 0 }, &[0x05, 0x00]);
    test_request(Request::Ping { id: 1 }, &[0x05, 0x01]);
    test_request(Request::Ping { id: 150 }, &[0x05, 0x96, 0x01]);
}

#[test]
fn time_request() {
    test_request(Request::TimeRequest, &[0x06]);
}

#[test]
fn stats_request() {
    test_request(Request::StatsRequest, &[0x07]);
}

// ---------------------------------------------------------------------------------------------------------------
// Events (bridge → target). Variant indices: Ready 0, Status 1, PubAck 2, SubAck 3, UnsubAck 4, Message 5, Pong 6,
// Time 7, Stats 8, Error 9, TooLong 10.
// ---------------------------------------------------------------------------------------------------------------

#[test]
fn ready() {
    test_event(
        Event::Ready {
            version: 1,
            limits: Limits {
                max_frame: 1353,
                max_topic: 256,
                max_payload: 1024,
                window: 8,
            },
        },
        &[
            0x00, // Ready
            0x01, // version
            0xC9, 0x0A, // max_frame 1353 = 0x549: 0x49 | 0x80, 0x549 >> 7 = 0x0A
            0x80, 0x02, // max_topic 256
            0x80, 0x08, // max_payload 1024
            0x08, // window (u8)
        ],
    );
    // window is a u8: one raw byte even above 127.
    test_event(
        Event::Ready {
            version: 2,
            limits: Limits {
                max_frame: 0,
                max_topic: 1,
                max_payload: u16::MAX,
                window: 200,
            },
        },
        &[0x00, 0x02, 0x00, 0x01, 0xFF, 0xFF, 0x03, 0xC8],
    );
}

#[test]
fn status() {
    test_event(Event::Status(Status::WifiUp), &[0x01, 0x00]);
    test_event(Event::Status(Status::WifiDown), &[0x01, 0x01]);
    test_event(
        Event::Status(Status::BrokerUp { session_present: false }),
        &[0x01, 0x02, 0x00],
    );
    test_event(
        Event::Status(Status::BrokerUp { session_present: true }),
        &[0x01, 0x02, 0x01],
    );
    test_event(
        Event::Status(Status::BrokerDown {
            reason: DownReason::Dns,
        }),
        &[0x01, 0x03, 0x01],
    );
    test_event(Event::Status(Status::Backpressure { full: true }), &[0x01, 0x04, 0x01]);
    test_event(Event::Status(Status::Backpressure { full: false }), &[0x01, 0x04, 0x00]);
}

#[test]
fn every_down_reason() {
    let reasons = [
        (DownReason::NoNetwork, 0),
        (DownReason::Dns, 1),
        (DownReason::Unreachable, 2),
        (DownReason::Tls, 3),
        (DownReason::RefusedProtocol, 4),
        (DownReason::RefusedClientId, 5),
        (DownReason::RefusedUnavailable, 6),
        (DownReason::RefusedCredentials, 7),
        (DownReason::RefusedNotAuthorized, 8),
        (DownReason::KeepaliveTimeout, 9),
        (DownReason::Closed, 10),
        (DownReason::ProtocolError, 11),
        (DownReason::Unknown(12), 12),
        (DownReason::Unknown(0xFF), 0xFF),
    ];
    for (reason, byte) in reasons {
        test_event(Event::Status(Status::BrokerDown { reason }), &[0x01, 0x03, byte]);
    }
}

#[test]
fn pub_ack() {
    test_event(Event::PubAck { id: 300 }, &[0x02, 0xAC, 0x02]);
    test_event(Event::PubAck { id: 150 }, &[0x02, 0x96, 0x01]);
}

#[test]
fn sub_ack() {
    test_event(
        Event::SubAck {
            id: 1,
            result: SubResult::Granted(QoS::AtMostOnce),
        },
        &[0x03, 0x01, 0x00],
    );
    test_event(
        Event::SubAck {
            id: 1,
            result: SubResult::Granted(QoS::AtLeastOnce),
        },
        &[0x03, 0x01, 0x01],
    );
    test_event(
        Event::SubAck {
            id: 1,
            result: SubResult::Granted(QoS::Unknown(2)),
        },
        &[0x03, 0x01, 0x02],
    );
    // MQTT's failure return code.
    test_event(
        Event::SubAck {
            id: 1,
            result: SubResult::Failure,
        },
        &[0x03, 0x01, 0x80],
    );
}

#[test]
fn unsub_ack() {
    test_event(Event::UnsubAck { id: 2 }, &[0x04, 0x02]);
}

#[test]
fn message() {
    test_event(
        Event::Message {
            id: 7,
            topic: "t",
            payload: &[0x00, 0x01, 0x02],
            qos: QoS::AtLeastOnce,
            retain: false,
            dup: true,
        },
        &[
            0x05, // Message
            0x07, // id
            0x01, b't', // topic
            0x03, 0x00, 0x01, 0x02, // payload
            0x01, // qos
            0x00, // retain
            0x01, // dup
        ],
    );
    test_event(
        Event::Message {
            id: 1000,
            topic: "a/b/c",
            payload: &[],
            qos: QoS::AtMostOnce,
            retain: true,
            dup: false,
        },
        // id 1000 = 0x3E8: 0x68 | 0x80, 0x3E8 >> 7 = 0x07.
        &[
            0x05, 0xE8, 0x07, 0x05, b'a', b'/', b'b', b'/', b'c', 0x00, 0x00, 0x01, 0x00,
        ],
    );
}

#[test]
fn pong() {
    let state = BridgeState {
        wifi_up: true,
        broker: BrokerState::Unknown,
        queue_full: false,
    };
    test_event(
        Event::Pong { id: 16384, state },
        &[0x06, 0x80, 0x80, 0x01, 0x01, 0x00, 0x00],
    );
    let up = BridgeState {
        broker: BrokerState::Up { session_present: true },
        queue_full: true,
        ..state
    };
    test_event(Event::Pong { id: 1, state: up }, &[0x06, 0x01, 0x01, 0x01, 0x01, 0x01]);
    let down = BridgeState {
        wifi_up: false,
        broker: BrokerState::Down {
            reason: DownReason::KeepaliveTimeout,
        },
        queue_full: false,
    };
    test_event(
        Event::Pong { id: 2, state: down },
        &[0x06, 0x02, 0x00, 0x02, 0x09, 0x00],
    );
}

#[test]
fn time() {
    test_event(Event::Time { unix_ms: None }, &[0x07, 0x00]);
    test_event(Event::Time { unix_ms: Some(0) }, &[0x07, 0x01, 0x00]);
    // 1 700 000 000 000 = 0x18B_CFE5_6800, 7 bits at a time from the bottom:
    // 0x00, 0x50, 0x15, 0x7F, 0x3C, 0x31 → 0x80 0xD0 0x95 0xFF 0xBC 0x31.
    test_event(
        Event::Time {
            unix_ms: Some(1_700_000_000_000),
        },
        &[0x07, 0x01, 0x80, 0xD0, 0x95, 0xFF, 0xBC, 0x31],
    );
    test_event(
        Event::Time {
            unix_ms: Some(u64::MAX),
        },
        &[0x07, 0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01],
    );
}

#[test]
fn stats() {
    test_event(
        Event::Stats(Stats {
            frames_rx: 1,
            frames_tx: 2,
            frame_errors: 3,
            resyncs: 4,
            reconnects: 5,
            published: 128,
            delivered: u32::MAX,
            queue_high_water: 7,
        }),
        &[
            0x08, // Stats
            0x01, 0x02, 0x03, 0x04, 0x05, // frames_rx .. reconnects
            0x80, 0x01, // published 128
            0xFF, 0xFF, 0xFF, 0xFF, 0x0F, // delivered u32::MAX
            0x07, // queue_high_water
        ],
    );
    test_event(Event::Stats(Stats::default()), &[0x08, 0, 0, 0, 0, 0, 0, 0, 0]);
}

#[test]
fn error() {
    let kinds = [
        (ErrorKind::VersionMismatch, 0),
        (ErrorKind::NotConfigured, 1),
        (ErrorKind::InvalidTopic, 2),
        (ErrorKind::TooLong, 3),
        (ErrorKind::QueueFull, 4),
        (ErrorKind::Unsupported, 5),
        (ErrorKind::Refused, 6),
        (ErrorKind::Unknown(7), 7),
        (ErrorKind::Unknown(99), 99),
    ];
    for (kind, byte) in kinds {
        test_event(Event::Error { id: 9, kind }, &[0x09, 0x09, byte]);
    }
    test_event(
        Event::Error {
            id: 0x1234,
            kind: ErrorKind::QueueFull,
        },
        &[0x09, 0xB4, 0x24, 0x04],
    );
}

#[test]
fn too_long() {
    test_event(Event::TooLong { len: 210 }, &[0x0A, 0xD2, 0x01]);
    test_event(Event::TooLong { len: u16::MAX }, &[0x0A, 0xFF, 0xFF, 0x03]);
}

// ---------------------------------------------------------------------------------------------------------------
// Bytes that are not messages.
// ---------------------------------------------------------------------------------------------------------------

#[test]
fn unknown_variant_indices_are_reported_with_their_tag() {
    assert_eq!(Request::decode(&[0x08]), Err(DecodeError::UnknownMessage(8)));
    assert_eq!(
        Request::decode(&[0x08, 0x01, 0x02]),
        Err(DecodeError::UnknownMessage(8))
    );
    assert_eq!(Request::decode(&[0x80, 0x01]), Err(DecodeError::UnknownMessage(128)));
    assert_eq!(Event::decode(&[0x0B]), Err(DecodeError::UnknownMessage(11)));
    assert_eq!(Event::decode(&[0x0B, 0xFF]), Err(DecodeError::UnknownMessage(11)));
    assert_eq!(Event::decode(&[0x7F]), Err(DecodeError::UnknownMessage(127)));
}

#[test]
fn malformed_bytes_are_refused() {
    let requests: &[&[u8]] = &[
        &[],                                   // empty
        &[0x05],                               // Ping without its id
        &[0x05, 0x01, 0x00],                   // trailing byte
        &[0x05, 0x80],                         // unfinished varint
        &[0x05, 0xFF, 0xFF, 0x04],             // 0x4FFFF does not fit a u16
        &[0x03, 0x01, 0x01, 0xFF],             // topic filter not UTF-8
        &[0x03, 0x01, 0x02, b'a'],             // topic filter shorter than its length
        &[0x01, 0x00, 0x00, 0x00, 0x00, 0x02], // retain = 2 is no bool
        &[0x80],                               // unfinished variant index
        &[0x8B],                               // unfinished variant index, 11 so far: no request has it
    ];
    for bytes in requests {
        assert_eq!(Request::decode(bytes), Err(DecodeError::Malformed), "{bytes:02X?}");
    }
    let events: &[&[u8]] = &[
        &[],
        &[0x07, 0x02],                         // Option tag 2
        &[0x07, 0x01],                         // Some without its value
        &[0x01, 0x05],                         // Status variant 5 does not exist
        &[0x06, 0x01, 0x01, 0x00, 0x00, 0x00], // trailing byte
        &[0x06, 0x01, 0x01, 0x00],             // Pong without its queue flag
        &[0x06, 0x01, 0x01, 0x03, 0x00],       // BrokerState variant 3 does not exist
        &[0x8B],                               // unfinished variant index, 11 so far: no event has it
        &[0x05, 0x01, 0x8B],                   // a topic length of 11 so far, unfinished
    ];
    for bytes in events {
        assert_eq!(Event::decode(bytes), Err(DecodeError::Malformed), "{bytes:02X?}");
    }
}

#[test]
fn fields_over_the_limits_are_refused() {
    // Publish with a 257-byte topic: 257 = 0x101 → 0x81 0x02.
    let mut bytes = vec![0x01, 0x00, 0x81, 0x02];
    bytes.extend(std::iter::repeat_n(b'a', MAX_TOPIC_LEN + 1));
    bytes.extend_from_slice(&[0x00, 0x00, 0x00]);
    assert_eq!(Request::decode(&bytes), Err(DecodeError::TooLong));
    // Message with a 1025-byte payload: 1025 = 0x401 → 0x81 0x08.
    let mut bytes = vec![0x05, 0x00, 0x00, 0x81, 0x08];
    bytes.extend(std::iter::repeat_n(0u8, MAX_PAYLOAD_LEN + 1));
    bytes.extend_from_slice(&[0x00, 0x00, 0x00]);
    assert_eq!(Event::decode(&bytes), Err(DecodeError::TooLong));
}

// ---------------------------------------------------------------------------------------------------------------
// Frames: COBS( message ‖ CRC-16/IBM-3740 little-endian ) ‖ 0x00.
// ---------------------------------------------------------------------------------------------------------------

/// CRC-16/IBM-3740, bit by bit: polynomial 0x1021, initial 0xFFFF, MSB first, no final XOR.
fn crc16(data: &[u8]) -> u16 {
    let mut crc = 0xFFFFu16;
    for &byte in data {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 { crc << 1 ^ 0x1021 } else { crc << 1 };
        }
    }
    crc
}

#[test]
fn crc16_check_value() {
    assert_eq!(crc16(b"123456789"), 0x29B1);
    assert_eq!(crc16(b""), 0xFFFF);
}

/// Checks that `msg` is framed to exactly `frame`, and that the decoder takes `frame` back to the message.
fn test_frame<T: protocol::Encode>(msg: &T, message: &[u8], frame: &[u8]) {
    let mut buf = [0u8; MAX_FRAME_LEN];
    let n = protocol::encode(msg, &mut buf).expect("encodes");
    assert_eq!(&buf[..n], frame, "frame bytes");
    let mut dec = FrameDecoder::<MAX_FRAME_LEN>::new();
    match dec.feed(frame) {
        Feed::Frame { message: got, rest } => {
            assert_eq!(got, message);
            assert!(rest.is_empty());
        }
        other => panic!("expected a frame, got {other:?}"),
    }
}

#[test]
fn frame_of_ping_1() {
    // Message 05 01; CRC 0xF2DB, sent DB F2; no zero in 05 01 DB F2, so one COBS block of 4 bytes: code 05.
    assert_eq!(crc16(&[0x05, 0x01]), 0xF2DB);
    test_frame(
        &Request::Ping { id: 1 },
        &[0x05, 0x01],
        &[0x05, 0x05, 0x01, 0xDB, 0xF2, 0x00],
    );
}

#[test]
fn frame_of_ping_150_has_a_zero_in_its_crc() {
    // Message 05 96 01; CRC 0x8500, sent 00 85: blocks [05 96 01] 0 [85] → 04 05 96 01 | 02 85.
    assert_eq!(crc16(&[0x05, 0x96, 0x01]), 0x8500);
    test_frame(
        &Request::Ping { id: 150 },
        &[0x05, 0x96, 0x01],
        &[0x04, 0x05, 0x96, 0x01, 0x02, 0x85, 0x00],
    );
}

#[test]
fn frame_of_subscribe_has_a_zero_in_its_message() {
    // Message 02 00 03 61 2F 23 01 (id 0); CRC 0xB9FA, sent FA B9.
    // Blocks: [02] 0 [03 61 2F 23 01 FA B9] → 02 02 | 08 03 61 2F 23 01 FA B9.
    let message = [0x02, 0x00, 0x03, b'a', b'/', b'#', 0x01];
    assert_eq!(crc16(&message), 0xB9FA);
    test_frame(
        &Request::Subscribe {
            id: 0,
            filter: "a/#",
            qos: QoS::AtLeastOnce,
        },
        &message,
        &[0x02, 0x02, 0x08, 0x03, b'a', b'/', b'#', 0x01, 0xFA, 0xB9, 0x00],
    );
}

#[test]
fn frame_of_pub_ack_150_ends_with_a_zero() {
    // Message 02 96 01; CRC 0x0090, sent 90 00: blocks [02 96 01 90] 0 [] → 05 02 96 01 90 | 01.
    assert_eq!(crc16(&[0x02, 0x96, 0x01]), 0x0090);
    test_frame(
        &Event::PubAck { id: 150 },
        &[0x02, 0x96, 0x01],
        &[0x05, 0x02, 0x96, 0x01, 0x90, 0x01, 0x00],
    );
}

#[test]
fn frame_of_time_none() {
    // Message 07 00; CRC 0x8498, sent 98 84: blocks [07] 0 [98 84] → 02 07 | 03 98 84.
    assert_eq!(crc16(&[0x07, 0x00]), 0x8498);
    test_frame(
        &Event::Time { unix_ms: None },
        &[0x07, 0x00],
        &[0x02, 0x07, 0x03, 0x98, 0x84, 0x00],
    );
}

#[test]
fn frame_with_a_full_cobs_block() {
    // Publish { id 1, topic "t", payload 300 × 0x55, qos 0, retain false }:
    // 01 01 01 74 AC 02 (55 × 300) 00 00, then the CRC.
    let payload = [0x55u8; 300];
    let mut message = vec![0x01, 0x01, 0x01, b't', 0xAC, 0x02];
    message.extend_from_slice(&payload);
    message.extend_from_slice(&[0x00, 0x00]);
    let crc = crc16(&message).to_le_bytes();
    assert!(
        crc.iter().all(|&b| b != 0),
        "this layout assumes a CRC without zero bytes"
    );
    // 306 bytes without a zero: a full block (code FF, 254 bytes, no implied zero), then 52 bytes ended by the
    // first zero (code 0x35), an empty block ended by the second zero (code 01), the CRC (code 03), the delimiter.
    let mut frame = vec![0xFF];
    frame.extend_from_slice(&message[..254]);
    frame.push(0x35);
    frame.extend_from_slice(&message[254..306]);
    frame.push(0x01);
    frame.push(0x03);
    frame.extend_from_slice(&crc);
    frame.push(0x00);
    assert_eq!(frame.len(), 1 + 254 + 1 + 52 + 1 + 1 + 2 + 1);
    test_frame(
        &Request::Publish {
            id: 1,
            topic: "t",
            payload: &payload,
            qos: QoS::AtMostOnce,
            retain: false,
        },
        &message,
        &frame,
    );
}

#[test]
fn frame_of_exactly_254_bytes_without_zero_ends_with_an_empty_block() {
    // Publish { id 1, topic "t", payload 246 × 0x55, qos 1, retain true }: 01 01 01 74 F6 01 (55 × 246) 01 01 is
    // 254 bytes; with a CRC of no zero byte the body is 256 bytes: FF + 254 bytes, then 03 + the CRC.
    let payload = [0x55u8; 246];
    let mut message = vec![0x01, 0x01, 0x01, b't', 0xF6, 0x01];
    message.extend_from_slice(&payload);
    message.extend_from_slice(&[0x01, 0x01]);
    assert_eq!(message.len(), 254);
    let crc = crc16(&message).to_le_bytes();
    assert!(
        crc.iter().all(|&b| b != 0),
        "this layout assumes a CRC without zero bytes"
    );
    let mut frame = vec![0xFF];
    frame.extend_from_slice(&message);
    frame.push(0x03);
    frame.extend_from_slice(&crc);
    frame.push(0x00);
    test_frame(
        &Request::Publish {
            id: 1,
            topic: "t",
            payload: &payload,
            qos: QoS::AtLeastOnce,
            retain: true,
        },
        &message,
        &frame,
    );
}

// ---------------------------------------------------------------------------------------------------------------
// The bit layer: what a link end sends for a frame and what the receiving end makes of it.
// ---------------------------------------------------------------------------------------------------------------

/// `"1 0 1…"` as bits; spaces and `_` are for the reader.
fn bits(s: &str) -> Vec<bool> {
    s.chars()
        .filter(|c| !matches!(c, ' ' | '_'))
        .map(|c| match c {
            '0' => false,
            '1' => true,
            other => panic!("not a bit: {other}"),
        })
        .collect()
}

/// T_DAT, one bit per exchange, from a master's reset until it stops clocking, when it has `frame` to send and the
/// slave sends only ones.
fn master_sends(frame: &[u8]) -> Vec<bool> {
    let mut m = Master::new();
    let mut io = QueueIo {
        tx: frame.iter().copied().collect(),
        ..QueueIo::default()
    };
    let mut sent = Vec::new();
    let mut b_clk = false;
    loop {
        let step = m.step(b_clk, true, &mut io);
        match step.wait {
            // A new exchange: T_DAT carries its bit; the slave answers at once (B_CLK follows T_CLK, B_DAT high).
            Wait::PeerClk(level) => {
                assert_eq!(step.clk, level);
                sent.push(step.dat);
                b_clk = level;
            }
            Wait::Idle => return sent,
            other => panic!("unexpected {other:?}"),
        }
        assert!(sent.len() < 10_000, "the master never stops");
    }
}

/// The bytes a slave delivers when the master sends `sent`, one bit per exchange.
fn slave_receives(sent: &[bool]) -> Vec<u8> {
    let mut s = Slave::new();
    let mut io = QueueIo::default();
    let mut t_clk = false;
    for &bit in sent {
        t_clk = !t_clk;
        let step = s.step(t_clk, bit, &mut io);
        assert_eq!(step.clk, t_clk, "the slave answers every exchange");
    }
    io.rx
}

const PREAMBLE: &str = "11111111111111111"; // 17 ones

#[test]
fn bits_of_the_ping_frame() {
    // Frame 05 05 01 DB F2 00 from an end just out of reset (which counts as having sent a preamble): marker 0 1,
    // each byte LSB first, end bit 0, then the next preamble (here the idle fill) stands for the 00. Later frames
    // are preceded by a whole preamble.
    let frame = [0x05, 0x05, 0x01, 0xDB, 0xF2, 0x00];
    let expected = bits(&format!("01 10100000 10100000 10000000 11011011 01001111 0 {PREAMBLE}"));
    assert_eq!(master_sends(&frame), expected);
    // The receiver delivers every byte and the 00 (at the 16th one of the following preamble).
    assert_eq!(slave_receives(&expected), frame);
}

#[test]
fn bits_with_a_stuffed_zero() {
    // FF FF: the marker's 1 and the first FF make 9 ones; after 6 more a 0 is stuffed, then the last 2 ones.
    let expected = bits(&format!("01 11111111 111111_0_11 0 {PREAMBLE}"));
    assert_eq!(master_sends(&[0xFF, 0xFF, 0x00]), expected);
    assert_eq!(slave_receives(&expected), [0xFF, 0xFF, 0x00]);
}

#[test]
fn bits_with_a_stuffed_end_bit() {
    // FE FF end with 15 ones (7 + 8): the end bit is stuffed like a data bit, a 0 first, then the end bit 0.
    let expected = bits(&format!("01 01111111 11111111 _0_ 0 {PREAMBLE}"));
    assert_eq!(master_sends(&[0xFE, 0xFF, 0x00]), expected);
    assert_eq!(slave_receives(&expected), [0xFE, 0xFF, 0x00]);
}

#[test]
fn receiver_tolerates_extra_zeros_before_the_marker_one() {
    // A master that read the slave's early start marker one exchange early sees 16 ones and two 0s: the same frame.
    let expected = bits("1111111111111111 001 10100000 10100000 10000000 11011011 01001111 0 1111111111111111");
    assert_eq!(slave_receives(&expected), [0x05, 0x05, 0x01, 0xDB, 0xF2, 0x00]);
}

#[test]
fn max_bits_without_sync_is_the_documented_value() {
    // docs/protocol.md, section 10: the longest frame, stuffed, plus a preamble.
    assert_eq!(protocol::link::MAX_BITS_WITHOUT_SYNC, 11_609);
}
