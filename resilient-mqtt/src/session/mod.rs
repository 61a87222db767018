//! The sans-IO MQTT 3.1.1 session: bytes and `now` in; packets to send, events and `poll_at` out.
//!
//! # Driving a [`Client`]
//!
//! A runner (this crate has two, or write your own) owns a transport and loops:
//!
//! 1. when there is no transport and [`Client::wants_link`] says so, open one, then call
//!    [`handle_link_up`](Client::handle_link_up) (or [`handle_link_failed`](Client::handle_link_failed));
//! 2. put received bytes in with [`receive_buffer`](Client::receive_buffer) +
//!    [`handle_received`](Client::handle_received) (or [`handle_bytes`](Client::handle_bytes));
//!    call [`handle_link_down`](Client::handle_link_down) on end of stream or a transport error;
//! 3. drain [`poll_event`](Client::poll_event) until `None`, then [`poll_transmit`](Client::poll_transmit) until
//!    `None`, writing each packet to the transport;
//! 4. when [`is_link_up`](Client::is_link_up) turns false, close the transport (the session decided the link is
//!    dead, e.g. a ping timeout);
//! 5. sleep until [`poll_at`](Client::poll_at) or until bytes arrive or the application calls the session.
//!
//! # Durable state and connection state
//!
//! The publication store (offline queue and QoS 1 window), packet ids, the subscription table and pending
//! SUBSCRIBE/UNSUBSCRIBE requests live as long as the [`Client`]; the CONNACK wait, ping, receive buffer and
//! pending PUBACKs of received messages live as long as one transport.

mod backoff;
mod io;
pub(crate) mod store;
pub(crate) mod subs;
mod types;

pub use backoff::BackoffConfig;
pub use types::*;

use crate::codec::{QoS, Will};
use crate::time::{Duration, Instant};
use crate::topic;
use backoff::Backoff;
use store::Store;
use subs::{RequestKind, Subscriptions};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    /// No transport; try again at `next_attempt` unless stopped.
    Down { next_attempt: Instant },
    /// Transport up, CONNECT (to be) sent, CONNACK awaited.
    AwaitConnAck { since: Instant, connect_sent: bool },
    /// CONNACK accepted.
    Connected { since: Instant },
}

struct StoredWill {
    topic: heapless::String<MAX_FILTER_LEN>,
    payload: heapless::Vec<u8, MAX_WILL_PAYLOAD_LEN>,
    qos: QoS,
    retain: bool,
}

const EVENTS: usize = 8;

/// An MQTT 3.1.1 client session that survives reconnects.
///
/// - `QUEUE`: publications queued or in flight at once (the offline queue bound, in entries);
/// - `STORE`: bytes of topic + payload those publications may hold together;
/// - `RX`: receive buffer, which is also the largest packet accepted from the broker;
/// - `SUBS`: subscriptions remembered for replay;
/// - `FILTERS`: most filters in one `subscribe` or `unsubscribe` call, 1 to [`MAX_FILTERS_PER_REQUEST`] (the
///   default). Each of the [`MAX_PENDING_REQUESTS`] request slots reserves room for this many filters of
///   [`MAX_FILTER_LEN`] bytes (136 bytes a filter), so an application that subscribes one filter at a time saves
///   about 950 bytes a slot with `FILTERS = 1`. Replays of the subscription table after a lost session carry up to
///   `FILTERS` filters per SUBSCRIBE too (they copy nothing: the table's entries are marked).
pub struct Client<
    const QUEUE: usize = 16,
    const STORE: usize = 4096,
    const RX: usize = 4096,
    const SUBS: usize = 16,
    const FILTERS: usize = MAX_FILTERS_PER_REQUEST,
> {
    client_id: heapless::String<MAX_CLIENT_ID_LEN>,
    username: Option<heapless::String<MAX_USERNAME_LEN>>,
    password: Option<heapless::Vec<u8, MAX_PASSWORD_LEN>>,
    will: Option<StoredWill>,
    keep_alive_secs: u16,
    clean_session: bool,
    max_in_flight: usize,
    ack_timeout: Duration,
    connack_timeout: Duration,
    auto_ack: bool,
    max_packet_size: usize,
    backoff: Backoff,

    store: Store<QUEUE, STORE>,
    subs: Subscriptions<SUBS, FILTERS>,
    next_packet_id: u16,

    link: Link,
    stopped: bool,
    disconnect_requested: bool,
    last_tx: Instant,
    last_rx: Instant,
    ping_sent_at: Option<Instant>,
    /// PUBACKs to send.
    acks: heapless::Deque<u16, MAX_PENDING_ACKS>,
    /// QoS 1 messages handed out on this connection and not acked yet.
    owed: heapless::Vec<u16, MAX_PENDING_ACKS>,
    rx: [u8; RX],
    rx_len: usize,
    rx_consume: usize,
    events: heapless::Deque<Event<'static>, EVENTS>,
    stats: Stats,
}

fn copy_str<const N: usize>(s: &str) -> Result<heapless::String<N>, ConfigError> {
    heapless::String::try_from(s).map_err(|_| ConfigError::TooLong)
}

fn copy_bytes<const N: usize>(b: &[u8]) -> Result<heapless::Vec<u8, N>, ConfigError> {
    heapless::Vec::from_slice(b).map_err(|_| ConfigError::TooLong)
}

impl<const QUEUE: usize, const STORE: usize, const RX: usize, const SUBS: usize, const FILTERS: usize>
    Client<QUEUE, STORE, RX, SUBS, FILTERS>
{
    /// A disconnected session that wants a transport at once.
    pub fn new(options: &Options<'_>) -> Result<Self, ConfigError> {
        if (options.client_id.is_empty() && !options.clean_session) || options.max_in_flight == 0 {
            return Err(ConfigError::Invalid);
        }
        let will = match &options.will {
            Some(w) => {
                topic::validate_topic(w.topic).map_err(ConfigError::WillTopic)?;
                if w.qos == QoS::ExactlyOnce {
                    return Err(ConfigError::Invalid);
                }
                Some(StoredWill {
                    topic: copy_str(w.topic)?,
                    payload: copy_bytes(w.payload)?,
                    qos: w.qos,
                    retain: w.retain,
                })
            }
            None => None,
        };
        let seed = options
            .client_id
            .bytes()
            .fold(options.jitter_seed ^ 0x811c_9dc5, |h, b| {
                (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
            });
        Ok(Self {
            client_id: copy_str(options.client_id)?,
            username: options.username.map(copy_str).transpose()?,
            password: options.password.map(copy_bytes).transpose()?,
            will,
            keep_alive_secs: options.keep_alive_secs,
            clean_session: options.clean_session,
            max_in_flight: options.max_in_flight,
            ack_timeout: options.ack_timeout,
            connack_timeout: options.connack_timeout,
            auto_ack: options.auto_ack,
            max_packet_size: options.max_packet_size,
            backoff: Backoff::new(options.backoff, seed),
            store: Store::new(),
            subs: Subscriptions::new(),
            next_packet_id: 0,
            link: Link::Down {
                next_attempt: Instant::ZERO,
            },
            stopped: false,
            disconnect_requested: false,
            last_tx: Instant::ZERO,
            last_rx: Instant::ZERO,
            ping_sent_at: None,
            acks: heapless::Deque::new(),
            owed: heapless::Vec::new(),
            rx: [0; RX],
            rx_len: 0,
            rx_consume: 0,
            events: heapless::Deque::new(),
            stats: Stats::default(),
        })
    }

    // ----- application operations -----

    /// Queues a publication. `token` is the caller's own id, handed back in [`Event::Published`].
    ///
    /// Accepted while disconnected too (the offline queue); sent in order once connected. QoS 1 publications
    /// stay stored until their PUBACK and are resent with DUP, before anything newer, after a reconnect.
    /// A full queue is [`PublishError::QueueFull`]: nothing is ever dropped silently.
    pub fn publish(
        &mut self,
        token: u32,
        topic: &str,
        payload: &[u8],
        qos: QoS,
        retain: bool,
    ) -> Result<(), PublishError> {
        topic::validate_topic(topic).map_err(PublishError::Topic)?;
        if qos == QoS::ExactlyOnce {
            return Err(PublishError::QoS2Unsupported);
        }
        // Fixed header (up to 5) + topic length (2) + packet id (2).
        if 9 + topic.len() + payload.len() > self.max_packet_size {
            return Err(PublishError::TooLarge);
        }
        self.store.push(token, topic, payload, qos, retain)
    }

    /// Queues a SUBSCRIBE for up to `FILTERS` filters (see [`Client`]; more are [`RequestError::FilterCount`]),
    /// answered by [`Event::Subscribed`] with `token`. Granted filters enter the subscription table, which is
    /// replayed when a broker lost the session.
    pub fn subscribe(&mut self, token: u32, filters: &[(&str, QoS)]) -> Result<(), RequestError> {
        self.subs
            .add(RequestKind::Subscribe, token, &mut filters.iter().copied())
    }

    /// Queues an UNSUBSCRIBE, answered by [`Event::Unsubscribed`] with `token`; the filters leave the table then.
    pub fn unsubscribe(&mut self, token: u32, filters: &[&str]) -> Result<(), RequestError> {
        self.subs.add(
            RequestKind::Unsubscribe,
            token,
            &mut filters.iter().map(|f| (*f, QoS::AtMostOnce)),
        )
    }

    /// The application has taken the QoS 1 message with this packet id: its PUBACK may go out.
    ///
    /// Until then the broker keeps the message and redelivers it after a reconnect, which gives end-to-end QoS 1.
    /// Not needed with `auto_ack`. Only messages handed out on the current connection can be acked: for one of an
    /// earlier connection this is [`AckError::NotAwaited`], harmless, and the broker's redelivery comes as a new
    /// [`Event::Message`] (with `dup`) to ack in turn.
    pub fn ack(&mut self, packet_id: u16) -> Result<(), AckError> {
        if packet_id == 0 {
            return Err(AckError::ZeroPacketId);
        }
        let i = self
            .owed
            .iter()
            .position(|&id| id == packet_id)
            .ok_or(AckError::NotAwaited)?;
        self.owed.swap_remove(i);
        // Cannot fail: acks + owed never exceed MAX_PENDING_ACKS.
        self.acks.push_back(packet_id).map_err(|_| AckError::NotAwaited)
    }

    /// Ends the connection with DISCONNECT (no will) and stops reconnecting until [`reconnect`](Self::reconnect).
    pub fn disconnect(&mut self, now: Instant) {
        match self.link {
            Link::Connected { .. } => self.disconnect_requested = true,
            Link::AwaitConnAck { .. } => self.link_lost(DisconnectReason::Requested, now),
            Link::Down { .. } => self.stopped = true,
        }
    }

    /// Connects again as soon as possible, after [`disconnect`](Self::disconnect) or to cut a backoff short.
    pub fn reconnect(&mut self, now: Instant) {
        self.stopped = false;
        if let Link::Down { next_attempt } = &mut self.link {
            *next_attempt = now;
        }
    }

    // ----- transport lifecycle -----

    /// There is no transport and it is time to open one.
    pub fn wants_link(&self, now: Instant) -> bool {
        matches!(self.link, Link::Down { next_attempt } if !self.stopped && now >= next_attempt)
    }

    /// Opening a transport failed: back off before the next attempt.
    pub fn handle_link_failed(&mut self, now: Instant) {
        if let Link::Down { .. } = self.link {
            let delay = self.backoff.next_delay(false);
            debug!("transport failed, next attempt in {} ms", delay.as_millis());
            self.link = Link::Down {
                next_attempt: now + delay,
            };
        }
    }

    /// A transport is open: the session sends CONNECT next.
    pub fn handle_link_up(&mut self, now: Instant) {
        if self.is_link_up() {
            self.link_lost(DisconnectReason::TransportClosed, now);
        }
        self.link = Link::AwaitConnAck {
            since: now,
            connect_sent: false,
        };
        self.stopped = false;
        self.last_tx = now;
        self.last_rx = now;
        self.stats.links = self.stats.links.saturating_add(1);
    }

    /// The transport ended (end of stream or an error).
    pub fn handle_link_down(&mut self, now: Instant) {
        self.link_lost(DisconnectReason::TransportClosed, now);
    }

    /// The session uses a transport; when this turns false, close it.
    pub fn is_link_up(&self) -> bool {
        !matches!(self.link, Link::Down { .. })
    }

    /// The broker accepted the current connection.
    pub fn is_connected(&self) -> bool {
        matches!(self.link, Link::Connected { .. })
    }

    fn link_lost(&mut self, reason: DisconnectReason, now: Instant) {
        let was_up_since = match self.link {
            Link::Down { .. } => return,
            Link::AwaitConnAck { .. } => None,
            Link::Connected { since } => Some(since),
        };
        debug!("link lost");
        if was_up_since.is_some_and(|since| now - since >= self.backoff.config.stable_after) {
            self.backoff.reset();
        }
        let delay = self.backoff.next_delay(matches!(reason, DisconnectReason::Refused(_)));
        self.link = Link::Down {
            next_attempt: now + delay,
        };
        if reason == DisconnectReason::Requested {
            self.stopped = true;
        }
        self.disconnect_requested = false;
        self.ping_sent_at = None;
        self.acks.clear();
        self.owed.clear();
        self.rx_len = 0;
        self.rx_consume = 0;
        self.store.reset_connection();
        self.subs.reset_connection();
        self.push_event(Event::Disconnected { reason });
    }

    fn push_event(&mut self, event: Event<'static>) {
        if self.events.push_back(event).is_err() {
            self.stats.events_dropped = self.stats.events_dropped.saturating_add(1);
        }
    }

    // ----- timers -----

    fn keep_alive(&self) -> Option<Duration> {
        (self.keep_alive_secs > 0).then(|| Duration::from_secs(u64::from(self.keep_alive_secs)))
    }

    /// When `timer` expires, if it is armed.
    pub fn timer(&self, timer: Timer) -> Option<Instant> {
        match (timer, self.link) {
            (Timer::ReconnectBackoff, Link::Down { next_attempt }) => (!self.stopped).then_some(next_attempt),
            (Timer::ConnAckTimeout, Link::AwaitConnAck { since, .. }) => Some(since + self.connack_timeout),
            (Timer::Keepalive, Link::Connected { .. }) if self.ping_sent_at.is_none() => {
                Some(self.last_tx.min(self.last_rx) + self.keep_alive()?)
            }
            (Timer::PingTimeout, Link::Connected { .. }) => {
                Some(self.ping_sent_at? + Duration::from_millis(self.keep_alive()?.as_millis() / 2))
            }
            (Timer::AckTimeout, Link::Connected { .. }) => {
                let oldest = match (self.store.oldest_sent_at(), self.subs.oldest_sent_at()) {
                    (Some(a), Some(b)) => a.min(b),
                    (a, b) => a.or(b)?,
                };
                Some(oldest + self.ack_timeout)
            }
            _ => None,
        }
    }

    /// The earliest armed timer: call [`handle_timeout`](Self::handle_timeout) (or any `poll_*`) then.
    pub fn poll_at(&self) -> Option<Instant> {
        [
            Timer::ReconnectBackoff,
            Timer::ConnAckTimeout,
            Timer::Keepalive,
            Timer::PingTimeout,
            Timer::AckTimeout,
        ]
        .into_iter()
        .filter_map(|t| self.timer(t))
        .min()
    }

    /// Acts on expired timers: a missing CONNACK, PINGRESP or acknowledgement ends the connection.
    /// (`poll_event` and `poll_transmit` call it too.)
    pub fn handle_timeout(&mut self, now: Instant) {
        let expired = |t| self.timer(t).is_some_and(|at| now >= at);
        let reason = if expired(Timer::ConnAckTimeout) {
            DisconnectReason::ConnAckTimeout
        } else if expired(Timer::PingTimeout) {
            DisconnectReason::PingTimeout
        } else if expired(Timer::AckTimeout) {
            DisconnectReason::AckTimeout
        } else {
            return;
        };
        warn!("connection timed out");
        self.link_lost(reason, now);
    }

    // ----- introspection -----

    /// Counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The largest packet the session sends (`Options::max_packet_size`): the least transmit buffer of a runner.
    pub fn max_packet_size(&self) -> usize {
        self.max_packet_size
    }

    /// Publications queued or in flight.
    pub fn queued(&self) -> usize {
        self.store.len()
    }

    /// QoS 1 publications sent on the current connection and not yet acknowledged.
    pub fn in_flight(&self) -> usize {
        self.store.in_flight()
    }

    /// The confirmed subscriptions (filter, granted QoS).
    pub fn subscriptions(&self) -> impl Iterator<Item = (&str, QoS)> {
        self.subs.table()
    }

    fn will(&self) -> Option<Will<'_>> {
        self.will.as_ref().map(|w| Will {
            topic: &w.topic,
            payload: &w.payload,
            qos: w.qos,
            retain: w.retain,
        })
    }
}
