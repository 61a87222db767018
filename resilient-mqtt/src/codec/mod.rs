//! MQTT packets: borrowed, zero-copy views and their wire format.
//!
//! The packet types here are version-neutral views (borrowed strings and byte slices, return codes kept as enums
//! with an `Unknown(u8)` arm). The wire format of MQTT 3.1.1 lives in [`v311`]; MQTT 5 will be a sibling module
//! (`v5`) that adds properties and reason codes next to these fields, without changing the session's use of them.
//!
//! Decoding is strict: reserved flags, bad UTF-8, a zero packet id, a wildcard in a PUBLISH topic, trailing bytes
//! or a packet longer than the caller's maximum are all typed [`DecodeError`]s, never a panic.

pub mod v311;

use core::fmt;

/// Quality of service of a publication or a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum QoS {
    /// Fire and forget.
    AtMostOnce = 0,
    /// Acknowledged by PUBACK, resent until then.
    AtLeastOnce = 1,
    /// QoS 2: the codec knows it, the session does not support it (see the README).
    ExactlyOnce = 2,
}

impl QoS {
    /// The QoS of a two-bit wire value; `None` for the reserved value 3.
    pub const fn from_bits(bits: u8) -> Option<QoS> {
        match bits {
            0 => Some(QoS::AtMostOnce),
            1 => Some(QoS::AtLeastOnce),
            2 => Some(QoS::ExactlyOnce),
            _ => None,
        }
    }
}

/// The protocol level sent in CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ProtocolLevel {
    /// MQTT 3.1.1 (level 4).
    V311,
    /// Any other level seen when decoding a CONNECT.
    Unknown(u8),
}

/// The last will of a client, published by the broker when the client dies without DISCONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Will<'a> {
    /// Topic of the will message (no wildcards).
    pub topic: &'a str,
    /// Payload of the will message.
    pub payload: &'a [u8],
    /// QoS of the will message.
    pub qos: QoS,
    /// Whether the broker retains the will message.
    pub retain: bool,
}

/// CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Connect<'a> {
    /// Protocol level; the 3.1.1 encoder writes level 4 whatever this says.
    pub protocol: ProtocolLevel,
    /// Start a new session (and drop any stored one) instead of resuming.
    pub clean_session: bool,
    /// Keepalive in seconds; 0 disables it.
    pub keep_alive: u16,
    /// Client identifier.
    pub client_id: &'a str,
    /// Last will.
    pub will: Option<Will<'a>>,
    /// User name.
    pub username: Option<&'a str>,
    /// Password (MQTT 3.1.1 requires a user name with it).
    pub password: Option<&'a [u8]>,
}

/// The CONNACK return code of MQTT 3.1.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ConnectReturnCode {
    /// 0: connection accepted.
    Accepted,
    /// 1: the broker does not speak this protocol level.
    UnacceptableProtocolVersion,
    /// 2: the client identifier is not allowed.
    IdentifierRejected,
    /// 3: the MQTT service is unavailable.
    ServerUnavailable,
    /// 4: bad user name or password.
    BadUserNameOrPassword,
    /// 5: not authorized.
    NotAuthorized,
    /// A code that MQTT 3.1.1 does not define.
    Unknown(u8),
}

impl ConnectReturnCode {
    /// The code of a wire byte.
    pub const fn from_u8(v: u8) -> Self {
        match v {
            0 => Self::Accepted,
            1 => Self::UnacceptableProtocolVersion,
            2 => Self::IdentifierRejected,
            3 => Self::ServerUnavailable,
            4 => Self::BadUserNameOrPassword,
            5 => Self::NotAuthorized,
            other => Self::Unknown(other),
        }
    }

    /// The wire byte of a code.
    pub const fn to_u8(self) -> u8 {
        match self {
            Self::Accepted => 0,
            Self::UnacceptableProtocolVersion => 1,
            Self::IdentifierRejected => 2,
            Self::ServerUnavailable => 3,
            Self::BadUserNameOrPassword => 4,
            Self::NotAuthorized => 5,
            Self::Unknown(v) => v,
        }
    }
}

impl fmt::Display for ConnectReturnCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Accepted => f.write_str("accepted"),
            Self::UnacceptableProtocolVersion => f.write_str("unacceptable protocol version"),
            Self::IdentifierRejected => f.write_str("client identifier rejected"),
            Self::ServerUnavailable => f.write_str("server unavailable"),
            Self::BadUserNameOrPassword => f.write_str("bad user name or password"),
            Self::NotAuthorized => f.write_str("not authorized"),
            Self::Unknown(v) => write!(f, "unknown return code {v}"),
        }
    }
}

/// CONNACK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ConnAck {
    /// The broker resumed a stored session.
    pub session_present: bool,
    /// Accepted, or why not.
    pub code: ConnectReturnCode,
}

/// PUBLISH.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Publish<'a> {
    /// A retransmission.
    pub dup: bool,
    /// QoS of this delivery.
    pub qos: QoS,
    /// Retained message (from the broker: delivered because it was retained).
    pub retain: bool,
    /// Topic name (no wildcards).
    pub topic: &'a str,
    /// Packet identifier; `Some` exactly when `qos` is above 0.
    pub packet_id: Option<u16>,
    /// Application payload.
    pub payload: &'a [u8],
}

/// One filter of a SUBSCRIBE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SubscribeFilter<'a> {
    /// Topic filter (wildcards allowed).
    pub filter: &'a str,
    /// Maximum QoS requested.
    pub qos: QoS,
}

/// The filters of a SUBSCRIBE: a slice when encoding, the checked wire bytes when decoded.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum SubscribeFilters<'a> {
    /// Filters to encode.
    List(&'a [SubscribeFilter<'a>]),
    /// Decoded wire bytes (already validated).
    Encoded(&'a [u8]),
}

impl<'a> SubscribeFilters<'a> {
    /// The filters in order.
    pub fn iter(&self) -> impl Iterator<Item = SubscribeFilter<'a>> + 'a {
        let (list, mut raw): (&'a [SubscribeFilter<'a>], &'a [u8]) = match *self {
            Self::List(l) => (l, &[]),
            Self::Encoded(r) => (&[], r),
        };
        list.iter().copied().chain(core::iter::from_fn(move || {
            let (filter, rest) = v311::read_str(raw).ok()?;
            let (&q, rest) = rest.split_first()?;
            raw = rest;
            Some(SubscribeFilter {
                filter,
                qos: QoS::from_bits(q & 3)?,
            })
        }))
    }
}

impl PartialEq for SubscribeFilters<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

/// SUBSCRIBE.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Subscribe<'a> {
    /// Packet identifier (non-zero).
    pub packet_id: u16,
    /// At least one filter.
    pub filters: SubscribeFilters<'a>,
}

/// One return code of a SUBACK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum SubAckCode {
    /// The subscription is in place with this maximum QoS.
    Granted(QoS),
    /// 0x80: the broker refused this filter.
    Failure,
    /// A code MQTT 3.1.1 does not define.
    Unknown(u8),
}

impl SubAckCode {
    /// The code of a wire byte.
    pub const fn from_u8(v: u8) -> Self {
        match v {
            0 => Self::Granted(QoS::AtMostOnce),
            1 => Self::Granted(QoS::AtLeastOnce),
            2 => Self::Granted(QoS::ExactlyOnce),
            0x80 => Self::Failure,
            other => Self::Unknown(other),
        }
    }
    /// The wire byte of a code.
    pub const fn to_u8(self) -> u8 {
        match self {
            Self::Granted(q) => q as u8,
            Self::Failure => 0x80,
            Self::Unknown(v) => v,
        }
    }
}

/// SUBACK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SubAck<'a> {
    /// Packet identifier of the SUBSCRIBE.
    pub packet_id: u16,
    /// One wire code per filter, in order (see [`SubAckCode::from_u8`]).
    pub codes: &'a [u8],
}

/// The filters of an UNSUBSCRIBE: a slice when encoding, the checked wire bytes when decoded.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum UnsubscribeFilters<'a> {
    /// Filters to encode.
    List(&'a [&'a str]),
    /// Decoded wire bytes (already validated).
    Encoded(&'a [u8]),
}

impl<'a> UnsubscribeFilters<'a> {
    /// The filters in order.
    pub fn iter(&self) -> impl Iterator<Item = &'a str> + 'a {
        let (list, mut raw): (&'a [&'a str], &'a [u8]) = match *self {
            Self::List(l) => (l, &[]),
            Self::Encoded(r) => (&[], r),
        };
        list.iter().copied().chain(core::iter::from_fn(move || {
            let (filter, rest) = v311::read_str(raw).ok()?;
            raw = rest;
            Some(filter)
        }))
    }
}

impl PartialEq for UnsubscribeFilters<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

/// UNSUBSCRIBE.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Unsubscribe<'a> {
    /// Packet identifier (non-zero).
    pub packet_id: u16,
    /// At least one filter.
    pub filters: UnsubscribeFilters<'a>,
}

/// Any MQTT 3.1.1 control packet.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Packet<'a> {
    /// CONNECT (client to broker).
    Connect(Connect<'a>),
    /// CONNACK.
    ConnAck(ConnAck),
    /// PUBLISH (both ways).
    Publish(Publish<'a>),
    /// PUBACK with its packet id.
    PubAck(u16),
    /// PUBREC (QoS 2, decoded only to be refused by the session).
    PubRec(u16),
    /// PUBREL (QoS 2).
    PubRel(u16),
    /// PUBCOMP (QoS 2).
    PubComp(u16),
    /// SUBSCRIBE.
    Subscribe(Subscribe<'a>),
    /// SUBACK.
    SubAck(SubAck<'a>),
    /// UNSUBSCRIBE.
    Unsubscribe(Unsubscribe<'a>),
    /// UNSUBACK with its packet id.
    UnsubAck(u16),
    /// PINGREQ.
    PingReq,
    /// PINGRESP.
    PingResp,
    /// DISCONNECT.
    Disconnect,
}

/// Why bytes are not a valid packet. Every variant ends the connection; none panics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum DecodeError {
    /// Packet type 0 or 15 (reserved in 3.1.1).
    InvalidPacketType(u8),
    /// Reserved fixed-header flags are not as the specification demands.
    InvalidFlags,
    /// The remaining length takes more than four bytes.
    MalformedLength,
    /// The packet (header included) is longer than the maximum packet size.
    TooLarge,
    /// A field runs past the end of the packet.
    Truncated,
    /// The packet has bytes after its last field.
    TrailingBytes,
    /// A string is not UTF-8 or holds U+0000.
    InvalidUtf8,
    /// QoS 3.
    InvalidQoS,
    /// A topic name is empty or holds a wildcard.
    InvalidTopic,
    /// A packet identifier is 0.
    ZeroPacketId,
    /// A CONNECT does not name the MQTT protocol, or a CONNACK has reserved bits set.
    InvalidProtocol,
    /// A SUBSCRIBE, SUBACK or UNSUBSCRIBE with no entries.
    Empty,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidPacketType(t) => write!(f, "reserved packet type {t}"),
            Self::InvalidFlags => f.write_str("invalid fixed header flags"),
            Self::MalformedLength => f.write_str("malformed remaining length"),
            Self::TooLarge => f.write_str("packet larger than the maximum packet size"),
            Self::Truncated => f.write_str("field runs past the end of the packet"),
            Self::TrailingBytes => f.write_str("bytes after the last field"),
            Self::InvalidUtf8 => f.write_str("string is not valid MQTT UTF-8"),
            Self::InvalidQoS => f.write_str("QoS 3"),
            Self::InvalidTopic => f.write_str("invalid topic name"),
            Self::ZeroPacketId => f.write_str("packet identifier 0"),
            Self::InvalidProtocol => f.write_str("invalid protocol name or reserved bits"),
            Self::Empty => f.write_str("no entries"),
        }
    }
}

impl core::error::Error for DecodeError {}

/// Why a packet cannot be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum EncodeError {
    /// The output buffer is too small.
    BufferTooSmall,
    /// A string or binary field is longer than 65 535 bytes.
    FieldTooLong,
    /// The packet is longer than MQTT allows (268 435 455 bytes).
    PacketTooLong,
    /// The packet needs a packet id or at least one entry and has none.
    Invalid,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BufferTooSmall => f.write_str("output buffer too small"),
            Self::FieldTooLong => f.write_str("field longer than 65535 bytes"),
            Self::PacketTooLong => f.write_str("packet longer than MQTT allows"),
            Self::Invalid => f.write_str("packet misses a packet id or an entry"),
        }
    }
}

impl core::error::Error for EncodeError {}
