//! The messages: requests from the target, events from the bridge.
//!
//! Every message borrows its strings and byte strings from the buffer it was decoded from, so decoding copies
//! nothing and needs no heap. The wire encoding is postcard's (varint integers, length-prefixed strings, enum
//! variants as a varint index), written out in [`crate::wire`]; `docs/protocol.md` pins it with golden bytes. New variants are only ever appended,
//! so an older peer reports a newer message as [`DecodeError::UnknownMessage`] instead of misreading it.

use crate::wire::Reader;

/// The protocol version this crate speaks. A peer announcing another version is refused (see `docs/protocol.md`).
pub const PROTOCOL_VERSION: u16 = 2;

/// Longest topic or topic filter, in bytes of UTF-8.
pub const MAX_TOPIC_LEN: usize = 256;
/// Longest message payload, in bytes (any byte values).
pub const MAX_PAYLOAD_LEN: usize = 1024;
/// Longest WiFi SSID, in bytes (IEEE 802.11).
pub const MAX_SSID_LEN: usize = 32;
/// Longest WiFi passphrase, in bytes (WPA2).
pub const MAX_WIFI_PASSWORD_LEN: usize = 64;
/// Longest broker host name, client id, user name or password, in bytes.
pub const MAX_NAME_LEN: usize = 128;
/// Longest will payload, in bytes.
pub const MAX_WILL_PAYLOAD_LEN: usize = 256;
/// Upper bound of any encoded message (before CRC and COBS). Checked by a test against the largest messages.
pub const MAX_MESSAGE_LEN: usize = 1344;

/// MQTT quality of service. QoS 2 is not offered: values other than 0 and 1 decode as `Unknown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(from = "u8", into = "u8"))]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum QoS {
    /// Fire and forget.
    AtMostOnce,
    /// Acknowledged end to end; may be delivered more than once after a fault.
    AtLeastOnce,
    /// A value this version does not know.
    Unknown(u8),
}

impl From<u8> for QoS {
    fn from(v: u8) -> Self {
        match v {
            0 => QoS::AtMostOnce,
            1 => QoS::AtLeastOnce,
            other => QoS::Unknown(other),
        }
    }
}

impl From<QoS> for u8 {
    fn from(q: QoS) -> u8 {
        match q {
            QoS::AtMostOnce => 0,
            QoS::AtLeastOnce => 1,
            QoS::Unknown(v) => v,
        }
    }
}

/// The last will the broker publishes when the bridge's connection dies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Will<'a> {
    /// Topic of the will.
    pub topic: &'a str,
    /// Payload of the will.
    pub payload: &'a [u8],
    /// QoS of the will.
    pub qos: QoS,
    /// Whether the broker retains the will.
    pub retain: bool,
}

/// Everything the bridge needs to reach the broker. The target owns it and sends it after every bridge start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Config<'a> {
    /// The sender's [`PROTOCOL_VERSION`]; the bridge refuses another with [`ErrorKind::VersionMismatch`].
    pub version: u16,
    /// WiFi network name.
    pub wifi_ssid: &'a str,
    /// WiFi passphrase (empty for an open network).
    pub wifi_password: &'a str,
    /// Broker host name or address.
    pub broker_host: &'a str,
    /// Broker TCP port.
    pub broker_port: u16,
    /// MQTT client identifier.
    pub client_id: &'a str,
    /// MQTT user name.
    pub username: Option<&'a str>,
    /// MQTT password.
    pub password: Option<&'a [u8]>,
    /// MQTT keepalive in seconds (0 disables it).
    pub keepalive_s: u16,
    /// MQTT clean session flag.
    pub clean_session: bool,
    /// Last will.
    #[cfg_attr(feature = "serde", serde(borrow))]
    pub will: Option<Will<'a>>,
    /// Whether the target wants TLS to the broker.
    pub tls: bool,
    /// The longest message the target accepts, in encoded bytes (the frame's CRC and COBS not counted): the
    /// bridge sends no longer [`Event::Message`] (the target would drop its frame), and acknowledges a QoS 1
    /// delivery it cannot send, so that the broker does not send it again and again.
    pub max_message: u16,
}

/// A request from the target to the bridge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Request<'a> {
    /// Connect to WiFi and the broker with this configuration (replaces any earlier one).
    #[cfg_attr(feature = "serde", serde(borrow))]
    Configure(Config<'a>),
    /// Publish a message. For QoS 1 the bridge answers [`Event::PubAck`] once the broker has acknowledged it.
    Publish {
        /// The target's id for this publication, echoed in the answer.
        id: u16,
        /// Topic (no wildcards).
        topic: &'a str,
        /// Payload, any bytes.
        payload: &'a [u8],
        /// Quality of service.
        qos: QoS,
        /// Retain flag.
        retain: bool,
    },
    /// Subscribe to a topic filter; answered by [`Event::SubAck`].
    Subscribe {
        /// The target's id, echoed in the answer.
        id: u16,
        /// Topic filter (wildcards allowed).
        filter: &'a str,
        /// Maximum QoS wanted.
        qos: QoS,
    },
    /// Unsubscribe from a topic filter; answered by [`Event::UnsubAck`].
    Unsubscribe {
        /// The target's id, echoed in the answer.
        id: u16,
        /// Topic filter.
        filter: &'a str,
    },
    /// The target has taken the delivered [`Event::Message`] with this id (QoS 1): the bridge may now acknowledge
    /// it to the broker.
    Ack {
        /// The message's id.
        id: u16,
    },
    /// Are you alive? Answered by [`Event::Pong`] with the same id.
    Ping {
        /// Echoed in the answer.
        id: u16,
    },
    /// Ask for the wall-clock time; answered by [`Event::Time`].
    TimeRequest,
    /// Ask for the bridge's counters; answered by [`Event::Stats`].
    StatsRequest,
}

/// The limits of the bridge, announced in [`Event::Ready`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Limits {
    /// Longest frame the bridge accepts (COBS-encoded, with CRC and delimiter).
    pub max_frame: u16,
    /// Longest topic.
    pub max_topic: u16,
    /// Longest payload.
    pub max_payload: u16,
    /// QoS 1 publications the bridge keeps in flight for the target.
    pub window: u8,
}

/// Why the broker connection is down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(from = "u8", into = "u8"))]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum DownReason {
    /// Not configured yet, or WiFi is down.
    NoNetwork,
    /// The host name did not resolve.
    Dns,
    /// TCP connection refused or timed out.
    Unreachable,
    /// TLS handshake failed.
    Tls,
    /// CONNACK: unacceptable protocol version.
    RefusedProtocol,
    /// CONNACK: client identifier rejected.
    RefusedClientId,
    /// CONNACK: server unavailable.
    RefusedUnavailable,
    /// CONNACK: bad user name or password.
    RefusedCredentials,
    /// CONNACK: not authorized.
    RefusedNotAuthorized,
    /// No answer within the keepalive bound (half-open connection).
    KeepaliveTimeout,
    /// The broker closed the connection.
    Closed,
    /// The broker sent a malformed packet.
    ProtocolError,
    /// A value this version does not know.
    Unknown(u8),
}

impl From<u8> for DownReason {
    fn from(v: u8) -> Self {
        use DownReason::*;
        match v {
            0 => NoNetwork,
            1 => Dns,
            2 => Unreachable,
            3 => Tls,
            4 => RefusedProtocol,
            5 => RefusedClientId,
            6 => RefusedUnavailable,
            7 => RefusedCredentials,
            8 => RefusedNotAuthorized,
            9 => KeepaliveTimeout,
            10 => Closed,
            11 => ProtocolError,
            other => Unknown(other),
        }
    }
}

impl From<DownReason> for u8 {
    fn from(r: DownReason) -> u8 {
        use DownReason::*;
        match r {
            NoNetwork => 0,
            Dns => 1,
            Unreachable => 2,
            Tls => 3,
            RefusedProtocol => 4,
            RefusedClientId => 5,
            RefusedUnavailable => 6,
            RefusedCredentials => 7,
            RefusedNotAuthorized => 8,
            KeepaliveTimeout => 9,
            Closed => 10,
            ProtocolError => 11,
            Unknown(v) => v,
        }
    }
}

/// A change of the bridge's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Status {
    /// WiFi associated and an address obtained.
    WifiUp,
    /// WiFi lost; the bridge retries by itself.
    WifiDown,
    /// Broker connected.
    BrokerUp {
        /// The broker still had this client's session (subscriptions and queued messages).
        session_present: bool,
    },
    /// Broker connection lost; the bridge reconnects by itself with backoff.
    BrokerDown {
        /// Why.
        reason: DownReason,
    },
    /// The bridge's queue toward the broker is full (`true`) or has room again (`false`). While full, the bridge
    /// refuses publications with [`ErrorKind::QueueFull`]; the target holds them until this says `false`.
    Backpressure {
        /// Whether the queue is full.
        full: bool,
    },
}

/// The broker connection as the bridge's status events last reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum BrokerState {
    /// Nothing reported since the configuration: the first connection attempt has not ended.
    Unknown,
    /// As [`Status::BrokerUp`].
    Up {
        /// The broker still had this client's session.
        session_present: bool,
    },
    /// As [`Status::BrokerDown`].
    Down {
        /// Why.
        reason: DownReason,
    },
}

/// The bridge's state as its status events last reported it, repeated in every [`Event::Pong`]: a target that lost
/// a status event on the link learns the state from the next Pong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct BridgeState {
    /// As [`Status::WifiUp`] (`true`) and [`Status::WifiDown`].
    pub wifi_up: bool,
    /// The broker connection.
    pub broker: BrokerState,
    /// As [`Status::Backpressure`].
    pub queue_full: bool,
}

impl BridgeState {
    /// The status events that report this state, in the order WiFi, broker, queue; none for an unknown broker.
    pub fn statuses(&self) -> [Option<Status>; 3] {
        [
            Some(if self.wifi_up { Status::WifiUp } else { Status::WifiDown }),
            match self.broker {
                BrokerState::Unknown => None,
                BrokerState::Up { session_present } => Some(Status::BrokerUp { session_present }),
                BrokerState::Down { reason } => Some(Status::BrokerDown { reason }),
            },
            Some(Status::Backpressure { full: self.queue_full }),
        ]
    }
}

/// The broker's answer to a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(from = "u8", into = "u8"))]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum SubResult {
    /// Granted at this QoS.
    Granted(QoS),
    /// Refused by the broker (MQTT return code 0x80).
    Failure,
}

impl From<u8> for SubResult {
    fn from(v: u8) -> Self {
        if v == 0x80 {
            SubResult::Failure
        } else {
            SubResult::Granted(QoS::from(v))
        }
    }
}

impl From<SubResult> for u8 {
    fn from(r: SubResult) -> u8 {
        match r {
            SubResult::Granted(q) => q.into(),
            SubResult::Failure => 0x80,
        }
    }
}

/// Why the bridge refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(from = "u8", into = "u8"))]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ErrorKind {
    /// The request's protocol version is not the bridge's.
    VersionMismatch,
    /// The request came before a configuration.
    NotConfigured,
    /// Invalid topic (wildcards in a publish topic, empty, bad) or filter.
    InvalidTopic,
    /// Topic or payload longer than the bridge's limits.
    TooLong,
    /// The bridge's queue is full; retry after [`Status::Backpressure`] says `false`.
    QueueFull,
    /// Something this bridge does not offer (QoS 2, TLS on a bridge without it).
    Unsupported,
    /// The broker refused the operation.
    Refused,
    /// A value this version does not know.
    Unknown(u8),
}

impl From<u8> for ErrorKind {
    fn from(v: u8) -> Self {
        use ErrorKind::*;
        match v {
            0 => VersionMismatch,
            1 => NotConfigured,
            2 => InvalidTopic,
            3 => TooLong,
            4 => QueueFull,
            5 => Unsupported,
            6 => Refused,
            other => Unknown(other),
        }
    }
}

impl From<ErrorKind> for u8 {
    fn from(k: ErrorKind) -> u8 {
        use ErrorKind::*;
        match k {
            VersionMismatch => 0,
            NotConfigured => 1,
            InvalidTopic => 2,
            TooLong => 3,
            QueueFull => 4,
            Unsupported => 5,
            Refused => 6,
            Unknown(v) => v,
        }
    }
}

/// The bridge's counters, answered to [`Request::StatsRequest`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Stats {
    /// Frames received intact from the target.
    pub frames_rx: u32,
    /// Frames sent to the target.
    pub frames_tx: u32,
    /// Frames from the target dropped for a bad CRC, bad COBS or overlength.
    pub frame_errors: u32,
    /// Times the link receiver realigned in the middle of a frame.
    pub resyncs: u32,
    /// Broker connections made after the first.
    pub reconnects: u32,
    /// Publications sent to the broker.
    pub published: u32,
    /// Messages delivered to the target.
    pub delivered: u32,
    /// Highest number of messages queued toward the broker.
    pub queue_high_water: u16,
}

/// An event from the bridge to the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Event<'a> {
    /// The bridge (re)started and waits for [`Request::Configure`].
    Ready {
        /// The bridge's [`PROTOCOL_VERSION`].
        version: u16,
        /// The bridge's limits.
        limits: Limits,
    },
    /// A change of WiFi, broker or queue state.
    Status(Status),
    /// The broker acknowledged the QoS 1 publication with this id (for QoS 0: the bridge sent it).
    PubAck {
        /// The target's publication id.
        id: u16,
    },
    /// The broker answered a subscription.
    SubAck {
        /// The target's subscription id.
        id: u16,
        /// Granted QoS or failure.
        result: SubResult,
    },
    /// The broker acknowledged an unsubscription.
    UnsubAck {
        /// The target's id.
        id: u16,
    },
    /// A message from a subscription. For QoS 1, answer with [`Request::Ack`] once taken.
    Message {
        /// The bridge's id for this delivery.
        id: u16,
        /// Topic it was published to.
        topic: &'a str,
        /// Payload, any bytes.
        payload: &'a [u8],
        /// QoS of the delivery.
        qos: QoS,
        /// Retain flag (set when it is a retained message sent on subscription).
        retain: bool,
        /// The broker may have delivered it before.
        dup: bool,
    },
    /// Answer to [`Request::Ping`].
    Pong {
        /// The ping's id.
        id: u16,
        /// The bridge's state when it answered.
        state: BridgeState,
    },
    /// Answer to [`Request::TimeRequest`]: milliseconds since the Unix epoch, or `None` when the bridge does not
    /// know the time yet.
    Time {
        /// Wall-clock time.
        unix_ms: Option<u64>,
    },
    /// Answer to [`Request::StatsRequest`].
    Stats(Stats),
    /// The bridge refused the request with this id.
    Error {
        /// Id of the refused request (0 for requests without one).
        id: u16,
        /// Why.
        kind: ErrorKind,
    },
    /// A message from the broker was longer than the target takes ([`Config::max_message`]): the bridge dropped it
    /// (and acknowledged it to the broker, for QoS 1) instead of sending it.
    TooLong {
        /// Its length, encoded as an [`Event::Message`] (at most 65535: longer ones say 65535).
        len: u16,
    },
}

/// Why a message could not be decoded or encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum DecodeError {
    /// The message's variant index is not one this version knows (a newer peer).
    UnknownMessage(u32),
    /// The bytes are not a valid message (truncated, bad UTF-8, trailing bytes, bad varint).
    Malformed,
    /// A topic, payload or name is longer than this crate's limits.
    TooLong,
}

impl core::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            DecodeError::UnknownMessage(tag) => write!(f, "unknown message type {tag}"),
            DecodeError::Malformed => f.write_str("malformed message"),
            DecodeError::TooLong => f.write_str("field longer than the protocol's limits"),
        }
    }
}

impl core::error::Error for DecodeError {}

fn check(len: usize, max: usize) -> Result<(), DecodeError> {
    if len > max {
        Err(DecodeError::TooLong)
    } else {
        Ok(())
    }
}

fn check_opt(s: Option<&[u8]>, max: usize) -> Result<(), DecodeError> {
    s.map_or(Ok(()), |s| check(s.len(), max))
}

impl<'a> Request<'a> {
    /// Decodes a request from a frame's message bytes (see [`crate::frame::FrameDecoder`]); nothing may trail it
    /// and every field must be within the limits.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let tag = r.tag();
        let req = r.request(tag)?;
        r.end()?;
        req.check_limits()?;
        Ok(req)
    }

    /// Checks every field against the protocol's limits.
    pub fn check_limits(&self) -> Result<(), DecodeError> {
        match self {
            Request::Configure(c) => {
                check(c.wifi_ssid.len(), MAX_SSID_LEN)?;
                check(c.wifi_password.len(), MAX_WIFI_PASSWORD_LEN)?;
                check(c.broker_host.len(), MAX_NAME_LEN)?;
                check(c.client_id.len(), MAX_NAME_LEN)?;
                check_opt(c.username.map(str::as_bytes), MAX_NAME_LEN)?;
                check_opt(c.password, MAX_NAME_LEN)?;
                if let Some(w) = &c.will {
                    check(w.topic.len(), MAX_TOPIC_LEN)?;
                    check(w.payload.len(), MAX_WILL_PAYLOAD_LEN)?;
                }
                Ok(())
            }
            Request::Publish { topic, payload, .. } => {
                check(topic.len(), MAX_TOPIC_LEN)?;
                check(payload.len(), MAX_PAYLOAD_LEN)
            }
            Request::Subscribe { filter, .. } | Request::Unsubscribe { filter, .. } => {
                check(filter.len(), MAX_TOPIC_LEN)
            }
            Request::Ack { .. } | Request::Ping { .. } | Request::TimeRequest | Request::StatsRequest => Ok(()),
        }
    }
}

impl<'a> Event<'a> {
    /// Decodes an event from a frame's message bytes (see [`crate::frame::FrameDecoder`]); nothing may trail it
    /// and every field must be within the limits.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let tag = r.tag();
        let ev = r.event(tag)?;
        r.end()?;
        ev.check_limits()?;
        Ok(ev)
    }

    /// Checks every field against the protocol's limits.
    pub fn check_limits(&self) -> Result<(), DecodeError> {
        match self {
            Event::Message { topic, payload, .. } => {
                check(topic.len(), MAX_TOPIC_LEN)?;
                check(payload.len(), MAX_PAYLOAD_LEN)
            }
            _ => Ok(()),
        }
    }
}
