//! The session's public vocabulary: options, events, reasons and errors.

use core::fmt;

use super::backoff::BackoffConfig;
use crate::codec::{ConnectReturnCode, DecodeError, QoS, SubAckCode};
use crate::time::Duration;
use crate::topic::TopicError;

/// Longest client identifier the session stores.
pub const MAX_CLIENT_ID_LEN: usize = 64;
/// Longest user name the session stores.
pub const MAX_USERNAME_LEN: usize = 64;
/// Longest password the session stores.
pub const MAX_PASSWORD_LEN: usize = 128;
/// Longest topic filter the session stores (subscriptions) and longest will topic.
pub const MAX_FILTER_LEN: usize = 128;
/// Longest will payload the session stores.
pub const MAX_WILL_PAYLOAD_LEN: usize = 256;
/// Most filters in one `subscribe` or `unsubscribe` call: the largest and default `FILTERS` of a
/// [`Client`](super::Client), and the capacity of [`SubResults`].
pub const MAX_FILTERS_PER_REQUEST: usize = 8;
/// Most application SUBSCRIBE/UNSUBSCRIBE requests waiting for their acknowledgement at once.
pub const MAX_PENDING_REQUESTS: usize = 4;
/// Most received QoS 1 messages not yet acknowledged (handed out and waiting for `ack`, or PUBACK waiting to be
/// sent). At this limit the session reads no further packet until the application acks: flow control towards the
/// broker, which holds the rest.
pub const MAX_PENDING_ACKS: usize = 32;

/// The identity and behaviour of a client. Strings are copied into the session (see the `MAX_*` limits).
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Options<'a> {
    /// Client identifier (must be non-empty when `clean_session` is false).
    pub client_id: &'a str,
    /// User name.
    pub username: Option<&'a str>,
    /// Password.
    pub password: Option<&'a [u8]>,
    /// Keepalive in seconds (0 disables pings and half-open detection). Default 30.
    pub keep_alive_secs: u16,
    /// Ask the broker for a fresh session at every connection. Default false (a persistent session).
    pub clean_session: bool,
    /// Last will.
    pub will: Option<crate::codec::Will<'a>>,
    /// QoS 1 publications in flight (sent, PUBACK pending) at once. Default 8.
    pub max_in_flight: usize,
    /// A PUBACK, SUBACK or UNSUBACK missing this long after its request ends the connection. Default 10 s.
    pub ack_timeout: Duration,
    /// A CONNACK missing this long after the transport came up ends the connection. Default 10 s.
    pub connack_timeout: Duration,
    /// Send the PUBACK of a received QoS 1 message when it is handed out, instead of at [`ack`](super::Client::ack).
    pub auto_ack: bool,
    /// Largest packet the session sends; the transmit buffer given to `poll_transmit` must be at least this long.
    /// Default 4096.
    pub max_packet_size: usize,
    /// Reconnect delays.
    pub backoff: BackoffConfig,
    /// Seed of the backoff jitter; give each device a different one (a MAC address, a serial number...).
    pub jitter_seed: u32,
}

impl<'a> Options<'a> {
    /// Options with defaults for everything but the client identifier.
    pub fn new(client_id: &'a str) -> Self {
        Self {
            client_id,
            username: None,
            password: None,
            keep_alive_secs: 30,
            clean_session: false,
            will: None,
            max_in_flight: 8,
            ack_timeout: Duration::from_secs(10),
            connack_timeout: Duration::from_secs(10),
            auto_ack: false,
            max_packet_size: 4096,
            backoff: BackoffConfig::default(),
            jitter_seed: 0,
        }
    }
}

/// Why a connection ended (or never got accepted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum DisconnectReason {
    /// The transport reported an error or the broker closed it.
    TransportClosed,
    /// The broker refused the CONNECT with this code.
    Refused(ConnectReturnCode),
    /// No CONNACK within `connack_timeout`.
    ConnAckTimeout,
    /// No PINGRESP (nor anything else) within half a keepalive after a PINGREQ: the link is dead or half-open.
    PingTimeout,
    /// A PUBACK, SUBACK or UNSUBACK did not come within `ack_timeout`.
    AckTimeout,
    /// The broker sent a malformed or oversize packet.
    Malformed(DecodeError),
    /// The broker sent a well-formed packet the session cannot accept here (a second CONNACK, QoS 2, ...).
    ProtocolViolation,
    /// The application asked for it ([`disconnect`](super::Client::disconnect)).
    Requested,
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TransportClosed => f.write_str("transport closed"),
            Self::Refused(code) => write!(f, "connection refused: {code}"),
            Self::ConnAckTimeout => f.write_str("no CONNACK in time"),
            Self::PingTimeout => f.write_str("no PINGRESP in time (dead or half-open link)"),
            Self::AckTimeout => f.write_str("no acknowledgement in time"),
            Self::Malformed(e) => write!(f, "malformed packet from the broker: {e}"),
            Self::ProtocolViolation => f.write_str("unexpected packet from the broker"),
            Self::Requested => f.write_str("disconnect requested"),
        }
    }
}

/// A message received from the broker. Borrows the session's receive buffer until the next `poll_event`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub struct Message<'a> {
    /// Packet identifier for QoS 1 (pass it to [`ack`](super::Client::ack)); `None` for QoS 0.
    pub packet_id: Option<u16>,
    /// Topic name.
    pub topic: &'a str,
    /// Payload.
    pub payload: &'a [u8],
    /// QoS of this delivery.
    pub qos: QoS,
    /// Delivered because it was retained.
    pub retain: bool,
    /// The broker says this may be a redelivery.
    pub dup: bool,
}

/// Per-filter results of a SUBSCRIBE, in the order of the filters.
pub type SubResults = heapless::Vec<SubAckCode, MAX_FILTERS_PER_REQUEST>;

/// What the session tells the application.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event<'a> {
    /// The broker accepted the CONNECT; `session_present` says it resumed the stored session.
    Connected {
        /// The broker had a session for this client id.
        session_present: bool,
    },
    /// A transport that came up ([`handle_link_up`](super::Client::handle_link_up)) has ended. Exactly one per link.
    Disconnected {
        /// Why.
        reason: DisconnectReason,
    },
    /// The publication with this token is done: PUBACK received (QoS 1) or handed to the transport (QoS 0).
    Published {
        /// The caller's token given to `publish`.
        token: u32,
    },
    /// The broker answered a `subscribe`.
    Subscribed {
        /// The caller's token given to `subscribe`.
        token: u32,
        /// One result per filter; [`SubAckCode::Failure`] for a refused filter.
        results: SubResults,
    },
    /// The broker acknowledged an `unsubscribe`.
    Unsubscribed {
        /// The caller's token given to `unsubscribe`.
        token: u32,
    },
    /// A message from the broker. For QoS 1 call [`ack`](super::Client::ack) with its packet id once it is taken,
    /// unless `auto_ack` is on.
    Message(Message<'a>),
}

#[cfg(feature = "defmt")]
impl defmt::Format for Event<'_> {
    fn format(&self, f: defmt::Formatter<'_>) {
        match self {
            Self::Connected { session_present } => defmt::write!(f, "Connected({})", session_present),
            Self::Disconnected { reason } => defmt::write!(f, "Disconnected({})", reason),
            Self::Published { token } => defmt::write!(f, "Published({})", token),
            Self::Subscribed { token, results } => defmt::write!(f, "Subscribed({}, {})", token, results.as_slice()),
            Self::Unsubscribed { token } => defmt::write!(f, "Unsubscribed({})", token),
            Self::Message(m) => defmt::write!(f, "Message({})", m),
        }
    }
}

/// Why `publish` refused a publication. Nothing is queued then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum PublishError {
    /// The topic is not a valid topic name.
    Topic(TopicError),
    /// QoS 2 is not supported.
    QoS2Unsupported,
    /// The publication would exceed `max_packet_size` or the whole publication store.
    TooLarge,
    /// The outgoing queue (entries or bytes) is full: retry after a `Published` event (backpressure).
    QueueFull,
}

/// Why `subscribe` or `unsubscribe` refused a request. Nothing is queued then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum RequestError {
    /// A filter is invalid.
    Filter(TopicError),
    /// No filters, or more than the client's `FILTERS` (at most [`MAX_FILTERS_PER_REQUEST`]).
    FilterCount,
    /// QoS 2 is not supported.
    QoS2Unsupported,
    /// [`MAX_PENDING_REQUESTS`] requests already wait for their acknowledgement.
    TooManyPending,
    /// The subscription table would overflow.
    TableFull,
}

/// Why `ack` refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum AckError {
    /// No QoS 1 message with this packet id awaits its ack on the current connection: it was acknowledged already,
    /// or it came on an earlier connection (the broker redelivers it, with a new `Message` event, to be acked then).
    NotAwaited,
    /// Packet id 0 is never valid.
    ZeroPacketId,
}

/// Why the session could not be created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ConfigError {
    /// A string is longer than its `MAX_*` limit.
    TooLong,
    /// The will topic is invalid.
    WillTopic(TopicError),
    /// An empty client id needs `clean_session`, QoS 2 wills are not supported, or `max_in_flight` is 0.
    Invalid,
}

macro_rules! display_error {
    ($ty:ty, |$s:ident, $f:ident| $body:expr) => {
        impl fmt::Display for $ty {
            fn fmt(&self, $f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let $s = self;
                $body
            }
        }
        impl core::error::Error for $ty {}
    };
}

display_error!(PublishError, |s, f| match s {
    PublishError::Topic(e) => write!(f, "invalid topic: {e}"),
    PublishError::QoS2Unsupported => f.write_str("QoS 2 is not supported"),
    PublishError::TooLarge => f.write_str("publication too large"),
    PublishError::QueueFull => f.write_str("outgoing queue full"),
});

display_error!(RequestError, |s, f| match s {
    RequestError::Filter(e) => write!(f, "invalid filter: {e}"),
    RequestError::FilterCount => f.write_str("no filter or too many filters"),
    RequestError::QoS2Unsupported => f.write_str("QoS 2 is not supported"),
    RequestError::TooManyPending => f.write_str("too many pending requests"),
    RequestError::TableFull => f.write_str("subscription table full"),
});

display_error!(AckError, |s, f| match s {
    AckError::NotAwaited => f.write_str("no message awaits an ack with this packet id"),
    AckError::ZeroPacketId => f.write_str("packet id 0"),
});

display_error!(ConfigError, |s, f| match s {
    ConfigError::TooLong => f.write_str("option string too long"),
    ConfigError::WillTopic(e) => write!(f, "invalid will topic: {e}"),
    ConfigError::Invalid => f.write_str("inconsistent options"),
});

/// The session's timers; [`poll_at`](super::Client::poll_at) is the earliest armed one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Timer {
    /// Disconnected: when to try connecting again.
    ReconnectBackoff,
    /// Transport up, CONNACK awaited: when to give up.
    ConnAckTimeout,
    /// Connected: when a PINGREQ is due (nothing sent or nothing received for a keepalive).
    Keepalive,
    /// PINGREQ sent: when the link counts as dead.
    PingTimeout,
    /// Oldest unacknowledged PUBLISH/SUBSCRIBE/UNSUBSCRIBE: when the link counts as dead.
    AckTimeout,
}

/// Counters for diagnostics and figures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub struct Stats {
    /// Transports that came up.
    pub links: u32,
    /// CONNACKs that accepted.
    pub connections: u32,
    /// Malformed or oversize packets from the broker.
    pub malformed_packets: u32,
    /// PUBLISH packets sent again with DUP.
    pub retransmissions: u32,
    /// PINGREQs sent.
    pub pings: u32,
    /// Messages received.
    pub messages: u32,
    /// Subscriptions the broker refused when they were replayed.
    pub replay_failures: u32,
    /// Events dropped because the application did not poll them (should stay 0).
    pub events_dropped: u32,
}
