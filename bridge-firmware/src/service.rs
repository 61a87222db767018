//! The bridge service: link requests in, MQTT session operations out, and back. Sans-IO: bytes, link frames and
//! `now` go in; frames for the target, packets for the broker and the next deadline come out.
//!
//! # Driving a [`Bridge`]
//!
//! A runner (the host bridge in [`crate::host`], or a board's main loop) owns the link driver and the transport:
//!
//! 1. run the link slave driver over [`Bridge::port`] (the frame queues);
//! 2. call [`Bridge::poll`] after every link activity, every transport input and at [`Bridge::poll_at`];
//! 3. when [`Bridge::wants_link`] says so, open a transport to [`Bridge::broker`] and report it with
//!    [`Bridge::handle_link_up`] or [`Bridge::handle_link_failed`]; feed received bytes with
//!    [`Bridge::handle_bytes`]; write what [`Bridge::poll_transmit`] gives; close the transport when
//!    [`Bridge::is_link_up`] turns false and report a closed one with [`Bridge::handle_link_down`];
//! 4. report WiFi with [`Bridge::handle_wifi`] and the wall clock with [`Bridge::set_wall_clock`].
//!
//! # Queues and their overflow policy
//!
//! - **Target → broker.** Publications go into the session's store (`QUEUE` entries, `STORE` bytes), which is
//!   also the window of publications in flight for the target (`Limits::window`). When it is full the bridge
//!   refuses with `Error { id, QueueFull }` and sends `Status::Backpressure { full: true }` once; the next
//!   completed publication sends `Backpressure { full: false }`. Nothing accepted is dropped.
//! - **Broker → target.** A message leaves the session only when the link's send queue has room for a whole
//!   frame and no answer waits before it; otherwise the session stops reading, TCP pushes back and the broker
//!   holds the rest. QoS 1 deliveries are acknowledged to the broker only at the target's `Ack`; one left
//!   unacknowledged by a target that talks on (its message or its `Ack` lost on the link) is fetched again by a
//!   reconnection with a persistent session, and given up (acknowledged, counted) with a clean one, which could
//!   not get it back, so that the broker's window of messages in flight does not shrink ([`ACK_TIMEOUT`]). A
//!   message longer than the link carries or than the target takes (`Config::max_message`) is not sent: it is
//!   dropped, acknowledged (QoS 1) and counted ([`Bridge::too_long`]), and the target is told (`Event::TooLong`).
//! - **Answers to the target.** At most [`CONTROL_QUEUE`] small events (acks, statuses, pongs) wait for the link;
//!   a request is taken from the link only when its answers fit, otherwise the link holds (clock stretching). A
//!   broker state change that finds the queue full is sent as soon as there is room (the latest state wins).
//!   `Time` and `Stats` answers carry the clock and the counters of the moment they enter the link's queue.

use heapless::{Deque, String, Vec};
use protocol::message::{MAX_PAYLOAD_LEN, MAX_TOPIC_LEN};
use protocol::{
    BridgeState, BrokerState, Config, DownReason, ErrorKind, Event as LinkEvent, Limits, Port, QoS, Request, Stats,
    Status, SubResult, MAX_FRAME_LEN, PROTOCOL_VERSION,
};
use resilient_mqtt::session::{MAX_FILTER_LEN, MAX_PENDING_ACKS, MAX_PENDING_REQUESTS};
use resilient_mqtt::{
    Client, ConfigError, DisconnectReason, Duration, Event as MqttEvent, Instant, Options, PublishError, RequestError,
    SubAckCode,
};

/// Small events (everything but messages) waiting for room in the link's send queue.
///
/// What bounds them: a request is taken from the link only when `REQUEST_ROOM` (4) entries are free, and its
/// answers take at most three (a `Configure`'s statuses; a publication's refusal and `Backpressure`). The session's
/// events are handled only when the queue is empty and take at most two (a `PubAck` and a `Backpressure`). The
/// broker's and the WiFi's state changes wait beside the queue when it is full (the latest state wins), and the
/// refusals of the publications that a new configuration drops wait in a list of their own (sent first). So
/// requests and events never fill more than 7 entries; the 8th takes a state change. An entry takes 6 bytes.
pub const CONTROL_QUEUE: usize = 8;
/// Room a request needs in the control queue before it is taken from the link: its answers (at most three).
const REQUEST_ROOM: usize = 4;
/// Bytes of the link's send queue a message from the broker leaves free, for the answers a target may be waiting
/// for. A request is taken only when the control queue has room for its answers, and that queue drains only into
/// the send queue, which drains only over the link: if messages could fill the send queue, a few answers could hold
/// the link (docs/protocol.md §6). A target that bounds its outstanding requests, as `target-driver` does, waits
/// for at most about 180 bytes of answers with its default sizes (4 acknowledgements of publications, 6 of
/// subscription requests, a pong, the time, the counters and 3 status changes, framed).
pub const ANSWER_RESERVE: usize = 256;
/// Filters per SUBSCRIBE/UNSUBSCRIBE: the link's `Subscribe` and `Unsubscribe` carry one each. The session reserves
/// room for this many filters in each of its 4 pending requests: one, not the session's default of 8, saves 3.8 KiB.
const FILTERS: usize = 1;
/// Longest WiFi SSID, passphrase and broker host kept for the board layer.
const HOST_LEN: usize = protocol::message::MAX_NAME_LEN;

/// Where the board layer should connect, from the target's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    /// WiFi network name.
    pub wifi_ssid: String<{ protocol::message::MAX_SSID_LEN }>,
    /// WiFi passphrase.
    pub wifi_password: String<{ protocol::message::MAX_WIFI_PASSWORD_LEN }>,
    /// Broker host name or address.
    pub broker_host: String<HOST_LEN>,
    /// Broker TCP port.
    pub broker_port: u16,
}

/// A small event waiting for the link: 6 bytes where the link's `Event` takes 40 (for `Stats`). `Ready`, `Time`
/// and `Stats` are made as they enter the link's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Control {
    Ready,
    Status(Status),
    PubAck(u16),
    SubAck(u16, SubResult),
    UnsubAck(u16),
    Pong(u16),
    Time,
    Stats,
    Error(u16, ErrorKind),
    /// A message too long for the target was dropped; its encoded length.
    TooLong(u16),
}

/// A QoS 1 delivery to the target awaiting its `Ack`, on the current connection.
#[derive(Debug, Clone, Copy)]
struct Delivery {
    id: u16,
    packet_id: u16,
}

/// How long the oldest delivery may go unacknowledged, once its frame has left the link's send queue, while the
/// target goes on sending frames, before the bridge takes the message or its `Ack` for lost on the link.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(10);

/// The oldest delivery, watched since its frame left the link's send queue.
#[derive(Debug, Clone, Copy)]
struct DeliveryWatch {
    id: u16,
    since: Instant,
    /// Frames from the target by then: one more proves the target did not hold the link on this delivery.
    frames_rx: u32,
}

/// What happened to a request taken from the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Taken {
    Done,
    /// Not taken: the link holds it until there is room.
    Hold,
}

/// Counters kept across sessions.
#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    published: u32,
    delivered: u32,
    connections: u32,
    resyncs: u32,
    queue_high_water: u16,
    refused_full: u32,
    /// Reconnections made to have the broker send a lost delivery again.
    redelivery_reconnects: u32,
    /// Deliveries of a clean session given up (see [`Bridge::check_deliveries`]).
    given_up_deliveries: u32,
    /// Messages from the broker too long for the link or for the target, dropped (and acknowledged).
    too_long: u32,
}

/// What [`Bridge::poll`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[must_use]
pub struct PollResult {
    /// Requests taken from the link.
    pub requests: u32,
    /// Session events handled (messages, acknowledgements, connection changes).
    pub session_events: u32,
}

impl PollResult {
    /// Whether anything happened (call again soon if so: more may be waiting).
    pub fn progressed(&self) -> bool {
        self.requests > 0 || self.session_events > 0
    }
}

/// The bridge service.
///
/// - `TX`, `RX`: the link port's send queue and receive buffer (`RX` bounds the longest frame accepted);
/// - `QUEUE`, `STORE`, `MQTT_RX`, `SUBS`: the MQTT session's sizes (see [`resilient_mqtt::Client`]); `QUEUE` is
///   also the window of publications the target may have in flight.
pub struct Bridge<
    const TX: usize = 4096,
    const RX: usize = MAX_FRAME_LEN,
    const QUEUE: usize = 16,
    const STORE: usize = 8192,
    const MQTT_RX: usize = 4096,
    const SUBS: usize = 16,
> {
    port: Port<TX, RX>,
    session: Option<Client<QUEUE, STORE, MQTT_RX, SUBS, FILTERS>>,
    network: Option<Network>,
    /// A digest of the configuration the session was made from: an identical `Configure` keeps the session.
    config_digest: u32,
    jitter_seed: u32,
    /// The longest message the target takes (`Config::max_message`).
    target_max_message: u16,
    wifi_up: bool,
    /// The broker connection as last reported to the target (or about to be, from `broker_pending`).
    broker: BrokerState,
    /// A broker state change waits for room in the control queue.
    broker_pending: Option<Status>,
    /// The target has not been told the WiFi state yet (the control queue was full).
    wifi_pending: bool,
    out: Deque<Control, CONTROL_QUEUE>,
    /// Publications of a session that a new configuration replaced, to be refused (before the control queue).
    refusals: Vec<u16, QUEUE>,
    /// The target's ids of the publications in the session (their order does not matter).
    pubs: Vec<(u16, QoS), QUEUE>,
    /// The target's ids of the subscribe and unsubscribe requests waiting for the broker: a copy of one (the target
    /// sends a request again when its answer is late) is not passed on.
    requests: Vec<u16, MAX_PENDING_REQUESTS>,
    backpressure: bool,
    /// Cleared at every connection change: a delivery of an earlier connection cannot be acknowledged any more
    /// (the broker redelivers it).
    deliveries: Vec<Delivery, MAX_PENDING_ACKS>,
    delivery_watch: Option<DeliveryWatch>,
    /// The session is persistent (the broker sends unacknowledged deliveries again on the next connection).
    persistent: bool,
    /// The session was disconnected to reconnect at once (see [`Bridge::check_deliveries`]).
    reconnect_after_disconnect: bool,
    next_delivery: u16,
    wall_clock: Option<(Instant, u64)>,
    counters: Counters,
}

fn qos_to_mqtt(q: QoS) -> Option<resilient_mqtt::QoS> {
    match q {
        QoS::AtMostOnce => Some(resilient_mqtt::QoS::AtMostOnce),
        QoS::AtLeastOnce => Some(resilient_mqtt::QoS::AtLeastOnce),
        QoS::Unknown(_) => None,
    }
}

fn qos_from_mqtt(q: resilient_mqtt::QoS) -> QoS {
    QoS::from(q as u8)
}

/// The link's reason for a session's disconnection.
pub fn down_reason(reason: DisconnectReason) -> DownReason {
    use resilient_mqtt::codec::ConnectReturnCode as C;
    match reason {
        DisconnectReason::TransportClosed | DisconnectReason::Requested => DownReason::Closed,
        DisconnectReason::Refused(C::UnacceptableProtocolVersion) => DownReason::RefusedProtocol,
        DisconnectReason::Refused(C::IdentifierRejected) => DownReason::RefusedClientId,
        DisconnectReason::Refused(C::ServerUnavailable) => DownReason::RefusedUnavailable,
        DisconnectReason::Refused(C::BadUserNameOrPassword) => DownReason::RefusedCredentials,
        DisconnectReason::Refused(C::NotAuthorized) => DownReason::RefusedNotAuthorized,
        DisconnectReason::Refused(_) => DownReason::RefusedUnavailable,
        DisconnectReason::ConnAckTimeout => DownReason::Unreachable,
        DisconnectReason::PingTimeout | DisconnectReason::AckTimeout => DownReason::KeepaliveTimeout,
        DisconnectReason::Malformed(_) | DisconnectReason::ProtocolViolation => DownReason::ProtocolError,
        _ => DownReason::Closed,
    }
}

fn sub_result(code: Option<&SubAckCode>) -> SubResult {
    match code {
        Some(SubAckCode::Granted(q)) => SubResult::Granted(qos_from_mqtt(*q)),
        _ => SubResult::Failure,
    }
}

/// FNV-1a over the configuration's fields (the version excluded).
fn digest(c: &Config<'_>) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    let mut feed = |bytes: &[u8]| {
        for &b in bytes.iter().chain(&[0xff]) {
            h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
        }
    };
    feed(c.wifi_ssid.as_bytes());
    feed(c.wifi_password.as_bytes());
    feed(c.broker_host.as_bytes());
    feed(&c.broker_port.to_le_bytes());
    feed(c.client_id.as_bytes());
    feed(c.username.map_or(&[][..], str::as_bytes));
    feed(&[c.username.is_some() as u8, c.password.is_some() as u8]);
    feed(c.password.unwrap_or(&[]));
    feed(&c.keepalive_s.to_le_bytes());
    feed(&[c.clean_session as u8, c.tls as u8, c.will.is_some() as u8]);
    if let Some(w) = &c.will {
        feed(w.topic.as_bytes());
        feed(w.payload);
        feed(&[u8::from(w.qos), w.retain as u8]);
    }
    h
}

fn config_error(e: ConfigError) -> ErrorKind {
    match e {
        ConfigError::TooLong => ErrorKind::TooLong,
        ConfigError::WillTopic(_) => ErrorKind::InvalidTopic,
        _ => ErrorKind::Refused,
    }
}

impl<
        const TX: usize,
        const RX: usize,
        const QUEUE: usize,
        const STORE: usize,
        const MQTT_RX: usize,
        const SUBS: usize,
    > Bridge<TX, RX, QUEUE, STORE, MQTT_RX, SUBS>
{
    /// The send queue holds the largest frame and the answers beside it.
    const SEND_QUEUE_FITS: () = assert!(
        TX >= MAX_FRAME_LEN + ANSWER_RESERVE,
        "bridge-firmware: TX must hold MAX_FRAME_LEN + ANSWER_RESERVE bytes"
    );

    /// A bridge just out of reset: it announces itself with `Ready` and waits for `Configure`. `jitter_seed`
    /// spreads the reconnect backoff of bridges that restart together (a MAC address, a serial number...).
    pub fn new(jitter_seed: u32) -> Self {
        let () = Self::SEND_QUEUE_FITS;
        let mut b = Bridge {
            port: Port::new(),
            session: None,
            network: None,
            config_digest: 0,
            jitter_seed,
            target_max_message: 0,
            wifi_up: false,
            broker: BrokerState::Unknown,
            broker_pending: None,
            wifi_pending: false,
            out: Deque::new(),
            refusals: Vec::new(),
            pubs: Vec::new(),
            requests: Vec::new(),
            backpressure: false,
            deliveries: Vec::new(),
            delivery_watch: None,
            persistent: false,
            reconnect_after_disconnect: false,
            next_delivery: 0,
            wall_clock: None,
            counters: Counters::default(),
        };
        b.push(Control::Ready);
        b
    }

    /// The limits announced in `Ready`.
    pub fn limits(&self) -> Limits {
        Limits {
            max_frame: RX.min(u16::MAX as usize) as u16,
            max_topic: MAX_TOPIC_LEN as u16,
            max_payload: MAX_PAYLOAD_LEN as u16,
            window: QUEUE.min(u8::MAX as usize) as u8,
        }
    }

    /// The link's frame queues: run the link slave driver over them.
    pub fn port(&mut self) -> &mut Port<TX, RX> {
        &mut self.port
    }

    /// Where to connect, once the target has configured the bridge.
    pub fn network(&self) -> Option<&Network> {
        self.network.as_ref()
    }

    /// The broker's host and port from the configuration.
    pub fn broker(&self) -> Option<(&str, u16)> {
        self.network.as_ref().map(|n| (n.broker_host.as_str(), n.broker_port))
    }

    /// The wall clock: at `now` it is `unix_ms` (from SNTP on a chip, the system clock on the host).
    pub fn set_wall_clock(&mut self, now: Instant, unix_ms: u64) {
        self.wall_clock = Some((now, unix_ms));
    }

    /// The link driver's resync count (for `Stats`).
    pub fn set_link_resyncs(&mut self, resyncs: u32) {
        self.counters.resyncs = resyncs;
    }

    /// WiFi came up or went down. Down ends the broker connection: close the transport.
    pub fn handle_wifi(&mut self, up: bool, now: Instant) {
        if up == self.wifi_up {
            return;
        }
        self.wifi_up = up;
        info!("wifi {}", up as u8);
        if self.network.is_some() {
            if self.out.is_full() || self.wifi_pending {
                self.wifi_pending = true;
            } else {
                self.push(Control::Status(if up { Status::WifiUp } else { Status::WifiDown }));
            }
        }
        if !up {
            if let Some(s) = self.session.as_mut() {
                s.handle_link_down(now);
            }
        }
    }

    // ----- the transport to the broker -----

    /// There is no transport and it is time to open one to [`Bridge::broker`].
    pub fn wants_link(&self, now: Instant) -> bool {
        self.wifi_up && self.session.as_ref().is_some_and(|s| s.wants_link(now))
    }

    /// A transport to the broker is open.
    pub fn handle_link_up(&mut self, now: Instant) {
        if let Some(s) = self.session.as_mut() {
            s.handle_link_up(now);
        }
    }

    /// Opening a transport failed for `reason` (`Dns`, `Unreachable`, `Tls`): the session backs off.
    pub fn handle_link_failed(&mut self, now: Instant, reason: DownReason) {
        if let Some(s) = self.session.as_mut() {
            s.handle_link_failed(now);
            self.set_broker_down(reason);
        }
    }

    /// The transport ended (end of stream or an error).
    pub fn handle_link_down(&mut self, now: Instant) {
        if let Some(s) = self.session.as_mut() {
            s.handle_link_down(now);
        }
    }

    /// The session uses a transport; when this turns false, close it.
    pub fn is_link_up(&self) -> bool {
        self.session.as_ref().is_some_and(|s| s.is_link_up())
    }

    /// Bytes from the broker; returns how many were taken (fewer when the session's buffer is full: call
    /// [`Bridge::poll`], then hand in the rest).
    pub fn handle_bytes(&mut self, data: &[u8], now: Instant) -> usize {
        match self.session.as_mut() {
            Some(s) => s.handle_bytes(data, now),
            None => data.len(),
        }
    }

    /// The next packet for the broker, written at the start of `buf` (at least `max_packet_size`, 4096 bytes).
    #[must_use]
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        self.session.as_mut()?.poll_transmit(now, buf)
    }

    /// When to call [`Bridge::poll`] at the latest (besides link and transport activity).
    pub fn poll_at(&self) -> Option<Instant> {
        self.session.as_ref().and_then(|s| s.poll_at())
    }

    /// Counters, as sent in answer to `StatsRequest`.
    pub fn stats(&self) -> Stats {
        let p = self.port.stats();
        Stats {
            frames_rx: p.frames_rx,
            frames_tx: p.frames_queued,
            frame_errors: p.crc_errors.saturating_add(p.overlong).saturating_add(p.malformed),
            resyncs: self.counters.resyncs,
            reconnects: self.counters.connections.saturating_sub(1),
            published: self.counters.published,
            delivered: self.counters.delivered,
            queue_high_water: self.counters.queue_high_water,
        }
    }

    /// The MQTT session's counters, if configured.
    pub fn session_stats(&self) -> Option<resilient_mqtt::Stats> {
        self.session.as_ref().map(|s| s.stats())
    }

    /// Publications refused because the queue was full.
    pub fn refused_full(&self) -> u32 {
        self.counters.refused_full
    }

    // ----- the main step -----

    /// Takes requests from the link, handles the session's events and timers, and queues frames for the target.
    /// Never blocks; call it after any input and at [`Bridge::poll_at`].
    pub fn poll(&mut self, now: Instant) -> PollResult {
        let mut result = PollResult::default();
        loop {
            self.flush(now);
            let mut progressed = false;
            let room = self.out.capacity() - self.out.len() >= REQUEST_ROOM;
            if room && self.port.received().is_some() && self.take_request(now) == Taken::Done {
                result.requests += 1;
                progressed = true;
            }
            self.flush(now);
            // Messages go straight to the link queue: only when no answer waits before them and a whole frame fits.
            let clear = self.out.is_empty() && self.refusals.is_empty() && !self.wifi_pending;
            let clear = clear && self.broker_pending.is_none();
            let fits = TX - self.port.tx_pending() >= MAX_FRAME_LEN + ANSWER_RESERVE;
            if clear && fits && self.session_event(now) {
                result.session_events += 1;
                progressed = true;
            }
            if !progressed {
                break;
            }
        }
        self.check_deliveries(now);
        if let Some(s) = self.session.as_mut() {
            s.handle_timeout(now);
        }
        self.flush(now);
        result
    }

    /// Reconnections made to have the broker send a lost delivery again.
    pub fn redelivery_reconnects(&self) -> u32 {
        self.counters.redelivery_reconnects
    }

    /// Messages from the broker longer than the link carries or than the target takes (`Config::max_message`):
    /// dropped, and acknowledged to the broker (QoS 1) so that it does not send them again and again.
    pub fn too_long(&self) -> u32 {
        self.counters.too_long
    }

    /// QoS 1 deliveries of a clean session that the target did not acknowledge (lost on the link), acknowledged to
    /// the broker after [`ACK_TIMEOUT`] all the same.
    pub fn given_up_deliveries(&self) -> u32 {
        self.counters.given_up_deliveries
    }

    /// The link drops a damaged frame: a QoS 1 message to the target, or the target's `Ack` of it, may be lost.
    /// The oldest delivery is watched from when its frame has left the send queue; if it is still unacknowledged
    /// [`ACK_TIMEOUT`] later although the target has sent frames since (a target that has not taken a message holds
    /// the link and sends nothing), it was lost. The broker sends an unacknowledged delivery again only on a new
    /// connection, so with a persistent session the bridge disconnects (cleanly: no will) and connects again at
    /// once. With a clean session a new connection would not bring it back (nor would anything else): the bridge
    /// acknowledges it, so that it does not hold one of the broker's messages in flight for this client for the
    /// rest of the connection (the broker stops sending QoS 1 messages when all of them are held), and counts it.
    fn check_deliveries(&mut self, now: Instant) {
        let Some(oldest) = self.deliveries.first().map(|d| d.id) else {
            self.delivery_watch = None;
            return;
        };
        let frames_rx = self.port.stats().frames_rx;
        match self.delivery_watch {
            Some(w) if w.id == oldest => {
                if now < w.since + ACK_TIMEOUT || frames_rx == w.frames_rx {
                    return;
                }
                let Some(session) = self.session.as_mut() else { return };
                self.delivery_watch = None;
                if !self.persistent {
                    warn!("delivery {} unacknowledged by a target that talks on: given up", oldest);
                    let d = self.deliveries.remove(0);
                    let _ = session.ack(d.packet_id);
                    self.counters.given_up_deliveries = self.counters.given_up_deliveries.saturating_add(1);
                    return;
                }
                warn!(
                    "delivery {} unacknowledged by a target that talks on: reconnecting for the broker to resend it",
                    oldest
                );
                session.disconnect(now);
                self.reconnect_after_disconnect = true;
                self.counters.redelivery_reconnects = self.counters.redelivery_reconnects.saturating_add(1);
                self.deliveries.clear();
            }
            _ => {
                self.delivery_watch = (self.port.tx_pending() == 0).then_some(DeliveryWatch {
                    id: oldest,
                    since: now,
                    frames_rx,
                });
            }
        }
    }

    fn push(&mut self, ev: Control) {
        if self.out.push_back(ev).is_err() {
            // Callers check the room first; a status that did not fit is re-sent from `broker_pending`.
            warn!("control queue full");
        }
    }

    /// Moves queued small events into the link's send queue as far as they fit.
    fn flush(&mut self, now: Instant) {
        // First: they concern publications of the replaced session, which nothing else in the queue mentions.
        while let Some(&id) = self.refusals.last() {
            if self
                .port
                .send(&LinkEvent::Error {
                    id,
                    kind: ErrorKind::Refused,
                })
                .is_err()
            {
                return;
            }
            self.refusals.pop();
        }
        if self.wifi_pending {
            let status = if self.wifi_up { Status::WifiUp } else { Status::WifiDown };
            self.wifi_pending = self.out.push_back(Control::Status(status)).is_err();
        }
        if let Some(s) = self.broker_pending {
            if self.out.push_back(Control::Status(s)).is_ok() {
                self.broker_pending = None;
            }
        }
        while let Some(&c) = self.out.front() {
            let ev = match c {
                Control::Ready => LinkEvent::Ready {
                    version: PROTOCOL_VERSION,
                    limits: self.limits(),
                },
                Control::Status(s) => LinkEvent::Status(s),
                Control::PubAck(id) => LinkEvent::PubAck { id },
                Control::SubAck(id, result) => LinkEvent::SubAck { id, result },
                Control::UnsubAck(id) => LinkEvent::UnsubAck { id },
                Control::Pong(id) => LinkEvent::Pong {
                    id,
                    state: self.state(),
                },
                Control::Time => LinkEvent::Time {
                    unix_ms: self
                        .wall_clock
                        .map(|(at, ms)| ms.saturating_add(now.saturating_since(at).as_millis())),
                },
                Control::Stats => LinkEvent::Stats(self.stats()),
                Control::Error(id, kind) => LinkEvent::Error { id, kind },
                Control::TooLong(len) => LinkEvent::TooLong { len },
            };
            if self.port.send(&ev).is_err() {
                break;
            }
            self.out.pop_front();
        }
    }

    fn set_broker_down(&mut self, reason: DownReason) {
        let state = BrokerState::Down { reason };
        if self.broker == state {
            return; // the same failure again: one status per change, not one per retry
        }
        self.broker = state;
        self.queue_status(Status::BrokerDown { reason });
    }

    /// The state the target has been told of (or is about to be): what a `Pong` carries.
    fn state(&self) -> BridgeState {
        BridgeState {
            wifi_up: self.wifi_up,
            broker: self.broker,
            queue_full: self.backpressure,
        }
    }

    fn queue_status(&mut self, status: Status) {
        // Behind a WiFi change that waits: the target hears them in order.
        if self.out.is_full() || self.wifi_pending {
            self.broker_pending = Some(status);
        } else {
            self.push(Control::Status(status));
        }
    }

    fn error(&mut self, id: u16, kind: ErrorKind) {
        self.push(Control::Error(id, kind));
    }

    fn set_backpressure(&mut self, full: bool) {
        if self.backpressure != full {
            self.backpressure = full;
            self.push(Control::Status(Status::Backpressure { full }));
        }
    }

    fn take_request(&mut self, now: Instant) -> Taken {
        let Some(bytes) = self.port.received() else {
            return Taken::Hold;
        };
        // Copy the request out of the port so that the session can be called while it is borrowed: the port is
        // released only after the request is handled, so the frame stays in place meanwhile.
        let mut frame = [0u8; protocol::message::MAX_MESSAGE_LEN];
        let n = bytes.len().min(frame.len());
        frame[..n].copy_from_slice(&bytes[..n]);
        let taken = match Request::decode(&frame[..n]) {
            Ok(req) => self.handle_request(req, now),
            Err(_) => {
                // A newer target's request or a damaged one that passed the CRC: nothing to answer (protocol §11).
                warn!("undecodable request of {} bytes dropped", n);
                Taken::Done
            }
        };
        if taken == Taken::Done {
            self.port.release();
        }
        taken
    }

    fn handle_request(&mut self, req: Request<'_>, now: Instant) -> Taken {
        match req {
            Request::Configure(c) => self.configure(&c, now),
            Request::Publish {
                id,
                topic,
                payload,
                qos,
                retain,
            } => self.publish(id, topic, payload, qos, retain),
            Request::Subscribe { id, .. } | Request::Unsubscribe { id, .. } if self.requests.contains(&id) => {
                // Sent again by a target that did not see our answer yet: the first one's answer will do.
                debug!("filter request {} already waiting for the broker", id);
                Taken::Done
            }
            Request::Subscribe { id, filter, qos } => self.subscribe(id, filter, qos),
            Request::Unsubscribe { id, filter } => self.unsubscribe(id, filter),
            Request::Ack { id } => {
                self.ack(id);
                Taken::Done
            }
            Request::Ping { id } => {
                self.push(Control::Pong(id));
                Taken::Done
            }
            Request::TimeRequest => {
                self.push(Control::Time);
                Taken::Done
            }
            Request::StatsRequest => {
                self.push(Control::Stats);
                Taken::Done
            }
        }
    }

    fn configure(&mut self, c: &Config<'_>, now: Instant) -> Taken {
        if c.version != PROTOCOL_VERSION {
            warn!("configure of protocol version {} refused", c.version);
            self.error(0, ErrorKind::VersionMismatch);
            return Taken::Done;
        }
        if c.tls {
            self.error(0, ErrorKind::Unsupported);
            return Taken::Done;
        }
        // A fact about the target, whatever becomes of the rest (kept with an identical configuration too).
        self.target_max_message = c.max_message;
        let d = digest(c);
        if self.session.is_some() && d == self.config_digest {
            // The same configuration again (a target that restarted without resetting the bridge): keep the
            // session and tell the target where things stand.
            self.report_state();
            return Taken::Done;
        }
        if self.refusals.len() + self.pubs.len() > QUEUE {
            // The refusals of an earlier replacement are still going out (a rare burst of configurations).
            return Taken::Hold;
        }
        let will = match c.will {
            Some(w) => match qos_to_mqtt(w.qos) {
                Some(qos) => Some(resilient_mqtt::Will {
                    topic: w.topic,
                    payload: w.payload,
                    qos,
                    retain: w.retain,
                }),
                None => {
                    self.error(0, ErrorKind::Unsupported);
                    return Taken::Done;
                }
            },
            None => None,
        };
        let mut options = Options::new(c.client_id);
        options.username = c.username;
        options.password = c.password;
        options.keep_alive_secs = c.keepalive_s;
        options.clean_session = c.clean_session;
        self.persistent = !c.clean_session;
        options.will = will;
        options.max_in_flight = QUEUE.clamp(1, 8);
        options.jitter_seed = self.jitter_seed;
        let session = match Client::new(&options) {
            Ok(s) => s,
            Err(e) => {
                self.error(0, config_error(e));
                return Taken::Done;
            }
        };
        let network = (|| {
            Some(Network {
                wifi_ssid: String::try_from(c.wifi_ssid).ok()?,
                wifi_password: String::try_from(c.wifi_password).ok()?,
                broker_host: String::try_from(c.broker_host).ok()?,
                broker_port: c.broker_port,
            })
        })();
        let Some(network) = network else {
            self.error(0, ErrorKind::TooLong);
            return Taken::Done;
        };
        if let Some(mut old) = self.session.take() {
            // Another configuration replaces the session: what the old one held cannot be carried over.
            info!("configuration replaced");
            old.disconnect(now);
            for &(id, _) in self.pubs.iter().rev() {
                let _ = self.refusals.push(id); // room checked above
            }
            self.pubs.clear();
            self.deliveries.clear();
            self.requests.clear();
            self.set_backpressure(false);
        }
        info!("configured (client id of {} bytes)", c.client_id.len());
        self.session = Some(session);
        self.network = Some(network);
        self.config_digest = d;
        self.broker = BrokerState::Unknown;
        self.report_state();
        Taken::Done
    }

    fn report_state(&mut self) {
        if let BrokerState::Up { session_present } = &mut self.broker {
            // A connection that goes on under an identical configuration kept its session.
            *session_present = true;
        }
        let [wifi, broker, _queue] = self.state().statuses();
        for status in [wifi, broker].into_iter().flatten() {
            self.push(Control::Status(status));
        }
    }

    fn publish(&mut self, id: u16, topic: &str, payload: &[u8], qos: QoS, retain: bool) -> Taken {
        let Some(session) = self.session.as_mut() else {
            self.error(id, ErrorKind::NotConfigured);
            return Taken::Done;
        };
        if self.pubs.iter().any(|(p, _)| *p == id) {
            // Sent again by a target that did not see our answer yet: the first one's answer will do.
            debug!("publication {} already queued", id);
            return Taken::Done;
        }
        let Some(mqtt_qos) = qos_to_mqtt(qos) else {
            self.error(id, ErrorKind::Unsupported);
            return Taken::Done;
        };
        if self.pubs.is_full() {
            self.counters.refused_full = self.counters.refused_full.saturating_add(1);
            self.error(id, ErrorKind::QueueFull);
            self.set_backpressure(true);
            return Taken::Done;
        }
        match session.publish(u32::from(id), topic, payload, mqtt_qos, retain) {
            Ok(()) => {
                let queued = session.queued();
                let _ = self.pubs.push((id, qos)); // room checked above
                let hw = queued.min(u16::MAX as usize) as u16;
                self.counters.queue_high_water = self.counters.queue_high_water.max(hw);
            }
            Err(PublishError::QueueFull) => {
                self.counters.refused_full = self.counters.refused_full.saturating_add(1);
                self.error(id, ErrorKind::QueueFull);
                self.set_backpressure(true);
            }
            Err(PublishError::Topic(_)) => self.error(id, ErrorKind::InvalidTopic),
            Err(PublishError::TooLarge) => self.error(id, ErrorKind::TooLong),
            Err(_) => self.error(id, ErrorKind::Unsupported),
        }
        Taken::Done
    }

    fn request_error(e: RequestError) -> ErrorKind {
        match e {
            RequestError::Filter(_) | RequestError::FilterCount => ErrorKind::InvalidTopic,
            RequestError::QoS2Unsupported => ErrorKind::Unsupported,
            RequestError::TooManyPending => ErrorKind::QueueFull,
            _ => ErrorKind::Refused,
        }
    }

    fn subscribe(&mut self, id: u16, filter: &str, qos: QoS) -> Taken {
        let Some(session) = self.session.as_mut() else {
            self.error(id, ErrorKind::NotConfigured);
            return Taken::Done;
        };
        let Some(mqtt_qos) = qos_to_mqtt(qos) else {
            self.error(id, ErrorKind::Unsupported);
            return Taken::Done;
        };
        if filter.len() > MAX_FILTER_LEN {
            self.error(id, ErrorKind::TooLong);
            return Taken::Done;
        }
        match session.subscribe(u32::from(id), &[(filter, mqtt_qos)]) {
            // Room: the session refuses more than MAX_PENDING_REQUESTS.
            Ok(()) => {
                let _ = self.requests.push(id);
            }
            Err(e) => self.error(id, Self::request_error(e)),
        }
        Taken::Done
    }

    fn unsubscribe(&mut self, id: u16, filter: &str) -> Taken {
        let Some(session) = self.session.as_mut() else {
            self.error(id, ErrorKind::NotConfigured);
            return Taken::Done;
        };
        if filter.len() > MAX_FILTER_LEN {
            self.error(id, ErrorKind::TooLong);
            return Taken::Done;
        }
        match session.unsubscribe(u32::from(id), &[filter]) {
            Ok(()) => {
                let _ = self.requests.push(id);
            }
            Err(e) => self.error(id, Self::request_error(e)),
        }
        Taken::Done
    }

    fn ack(&mut self, id: u16) {
        let Some(i) = self.deliveries.iter().position(|d| d.id == id) else {
            debug!("ack of unknown delivery {}", id);
            return;
        };
        // In order: the first is the oldest (check_deliveries).
        let d = self.deliveries.remove(i);
        if let Some(s) = self.session.as_mut() {
            let _ = s.ack(d.packet_id);
        }
    }

    /// Handles one session event; `false` when there was none.
    fn session_event(&mut self, now: Instant) -> bool {
        let target_max = usize::from(self.target_max_message);
        let Some(session) = self.session.as_mut() else {
            return false;
        };
        let Some(event) = session.poll_event(now) else {
            return false;
        };
        match event {
            MqttEvent::Message(m) => {
                self.next_delivery = self.next_delivery.wrapping_add(1);
                if self.next_delivery == 0 {
                    self.next_delivery = 1;
                }
                let id = self.next_delivery;
                let ev = LinkEvent::Message {
                    id,
                    topic: m.topic,
                    payload: m.payload,
                    qos: qos_from_mqtt(m.qos),
                    retain: m.retain,
                    dup: m.dup,
                };
                let len = protocol::wire::encoded_len(&ev);
                let too_long = m.topic.len() > MAX_TOPIC_LEN || m.payload.len() > MAX_PAYLOAD_LEN || len > target_max;
                let packet_id = m.packet_id;
                if too_long {
                    // The link or the target cannot take it (the target would drop its frame, and a QoS 1 delivery
                    // lost that way would be fetched again and again): acknowledge it so that the broker does not
                    // resend it.
                    warn!("message over the link's or the target's limits dropped");
                    self.counters.too_long = self.counters.too_long.saturating_add(1);
                    // The target hears of it (the control queue is empty: messages are taken only then).
                    let _ = self
                        .out
                        .push_back(Control::TooLong(u16::try_from(len).unwrap_or(u16::MAX)));
                    if let Some(pid) = packet_id {
                        let _ = session.ack(pid);
                    }
                    return true;
                }
                // Room for a whole frame was checked before polling.
                if self.port.send(&ev).is_ok() {
                    self.counters.delivered = self.counters.delivered.wrapping_add(1);
                    if let Some(packet_id) = packet_id {
                        if self.deliveries.is_full() {
                            self.deliveries.remove(0);
                        }
                        let _ = self.deliveries.push(Delivery { id, packet_id });
                    }
                } else {
                    warn!("message frame did not fit the link queue");
                }
            }
            MqttEvent::Published { token } => {
                let id = token as u16;
                if let Some(i) = self.pubs.iter().position(|(p, _)| *p == id) {
                    self.pubs.swap_remove(i);
                }
                self.counters.published = self.counters.published.wrapping_add(1);
                self.push(Control::PubAck(id));
                if self.backpressure {
                    self.set_backpressure(false);
                }
            }
            MqttEvent::Subscribed { token, results } => {
                self.requests.retain(|&r| u32::from(r) != token);
                let result = sub_result(results.first());
                self.push(Control::SubAck(token as u16, result));
            }
            MqttEvent::Unsubscribed { token } => {
                self.requests.retain(|&r| u32::from(r) != token);
                self.push(Control::UnsubAck(token as u16));
            }
            MqttEvent::Connected { session_present } => {
                self.counters.connections = self.counters.connections.saturating_add(1);
                self.deliveries.clear();
                self.broker = BrokerState::Up { session_present };
                info!("broker up (session present {})", session_present as u8);
                self.queue_status(Status::BrokerUp { session_present });
            }
            MqttEvent::Disconnected { reason } => {
                self.deliveries.clear();
                if core::mem::take(&mut self.reconnect_after_disconnect) && reason == DisconnectReason::Requested {
                    session.reconnect(now);
                }
                let reason = if self.wifi_up {
                    down_reason(reason)
                } else {
                    DownReason::NoNetwork
                };
                info!("broker down (reason {})", u8::from(reason));
                self.set_broker_down(reason);
            }
            _ => {}
        }
        true
    }
}

#[cfg(test)]
mod tests;
