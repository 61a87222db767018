//! The driver's core: a sans-IO state machine between the application and the bridge.
//!
//! It owns the frame queues ([`Port`]), the table of QoS 1 publications not yet acknowledged, the subscription
//! table and the watchdog. It reads no pins and no clock: the async runner and the blocking client feed it `now`,
//! move its frames over the link, and drive RST to the level it asks for. Everything it must restore after a
//! bridge reset (configuration, subscriptions, unacknowledged publications) it keeps itself, so a reset loses
//! nothing the broker acknowledged.

use embassy_time::{Duration, Instant};
use heapless::{Deque, String};

use protocol::frame::max_encoded_len;
use protocol::{
    DownReason, ErrorKind, Event as BridgeEvent, Port, QoS, Request, SendError, SubResult, PROTOCOL_VERSION,
};

use crate::config::Config;
use crate::error::{check_filter, check_topic, Error};

/// Default longest topic or filter, in bytes.
pub const DEFAULT_TOPIC: usize = 64;
/// Default longest payload, in bytes.
pub const DEFAULT_PAYLOAD: usize = 128;
/// Default QoS 1 publications in flight (kept for resending after a bridge reset).
pub const DEFAULT_PUBS: usize = 4;
/// Default subscriptions kept for replay.
pub const DEFAULT_SUBS: usize = 4;
/// Default pool for the topics and payloads of the publications in flight, in bytes: two of the largest (topic
/// and payload at their limits) fit, or [`DEFAULT_PUBS`] of up to 128 bytes each.
pub const DEFAULT_POOL: usize = 512;
/// Default send queue, in bytes of frames.
pub const DEFAULT_TX: usize = 256;
/// Default receive buffer, the longest frame accepted: a message with topic and payload at the default limits
/// (212 bytes; a message's own fields take at most 16 bytes besides its topic and payload).
pub const DEFAULT_RX: usize = max_encoded_len(DEFAULT_TOPIC + DEFAULT_PAYLOAD + 16);

/// Identifies an operation in flight; its outcome comes back under the same token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Token(pub u16);

/// A finished operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Outcome {
    /// The publication was acknowledged by the broker (QoS 1) or written to the broker by the bridge (QoS 0).
    Published,
    /// The subscription was granted at this QoS.
    Subscribed(QoS),
    /// The unsubscription was acknowledged.
    Unsubscribed,
}

/// Why the driver reset the bridge, or saw it restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ResetReason {
    /// The driver's first reset at start-up.
    StartUp,
    /// The bridge did not answer the watchdog's ping.
    Unresponsive,
    /// The bridge did not say it was ready after a reset.
    NotReady,
    /// The bridge restarted by itself (it sent Ready unasked).
    Restarted,
    /// The link reported a fault or a timeout.
    LinkFault,
}

/// A change the application hears about.
///
/// WiFi, broker and queue statuses come from the bridge's status events, or from the state its answer to a ping
/// carries when such an event was lost on the link; each is reported when it changes what the application was
/// told of its kind (after [`Status::BridgeReset`], all of them again).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Status {
    /// The bridge is up and configured; subscriptions and unacknowledged publications were restored.
    BridgeReady,
    /// The bridge is being reset (and will be restored).
    BridgeReset(ResetReason),
    /// The bridge speaks another protocol version; it is reset and retried with backoff.
    VersionMismatch {
        /// The bridge's version.
        bridge: u16,
    },
    /// WiFi is up.
    WifiUp,
    /// WiFi is down (the bridge retries).
    WifiDown,
    /// Connected to the broker.
    BrokerUp {
        /// The broker kept the session.
        session_present: bool,
    },
    /// Disconnected from the broker (the bridge retries).
    BrokerDown(DownReason),
    /// The bridge's queue toward the broker is full (`true`): publications wait; or has room again (`false`).
    QueueFull(bool),
    /// The bridge refused the configuration (for example TLS that it does not offer, or a limit); it stays
    /// unconfigured and refuses publications until the configuration changes. `TooLong` also comes from the
    /// driver itself when the configuration's frame does not fit its send buffer (`TX`): it is not sent at all.
    ConfigurationRefused(ErrorKind),
    /// A QoS 1 message waits that does not fit the buffer given to `next_event`: call again with at least this
    /// many bytes. The message stays (and holds the link) until then; it is not acknowledged, so nothing is lost.
    BufferTooSmall {
        /// Bytes needed (topic plus payload).
        needed: usize,
    },
    /// The bridge dropped a message from the broker that the receive buffer (`RX`) could not take (and
    /// acknowledged it to the broker, for QoS 1): a receive buffer of at least `len + 2` bytes takes such a message.
    MessageTooLong {
        /// The message's length as the link encodes it (topic, payload and at most 16 bytes of its own).
        len: u16,
    },
}

/// What the application receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Event<'a> {
    /// A message from a subscription.
    Message(Message<'a>),
    /// A change of the bridge's or the broker's state.
    Status(Status),
}

/// A message from a subscription, copied into the application's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Message<'a> {
    /// Topic it was published to.
    pub topic: &'a str,
    /// Payload.
    pub payload: &'a [u8],
    /// QoS of the delivery.
    pub qos: QoS,
    /// Retained message.
    pub retain: bool,
    /// Possibly delivered before.
    pub dup: bool,
}

/// A publication in flight. Its topic and then its payload are kept in the core's pool from `at` on.
///
/// The core's tables are fixed arrays whose entries never move (no shifting, no `memmove`), and a free entry is
/// marked by its own fields rather than by an `Option`: a free publication has id 0, which no request gets
/// ([`take_id`]); a free subscription has an empty filter, which no filter is. So an empty table is all zero bytes
/// and the core starts as one clear of its memory, not as copies of templates with `None` patterns in them.
#[derive(Debug)]
struct Pending {
    id: u16,
    /// Order of the publications: the oldest unsent is sent first.
    seq: u32,
    at: u16,
    topic_len: u16,
    payload_len: u16,
    qos: QoS,
    retain: bool,
    sent: bool,
    /// Sent at least once before (a later send is a resend).
    tried: bool,
    /// Sent and unanswered at the last answer check ([`Core::check_answers`]): unanswered at the next, it is sent
    /// again.
    aged: bool,
}

impl Pending {
    const FREE: Pending = Pending {
        id: 0,
        seq: 0,
        at: 0,
        topic_len: 0,
        payload_len: 0,
        qos: QoS::AtMostOnce,
        retain: false,
        sent: false,
        tried: false,
        aged: false,
    };

    fn used(&self) -> bool {
        self.id != 0
    }

    /// Frees the entry: only its id changes (the next publication writes every field).
    fn free(&mut self) {
        self.id = 0;
    }

    /// Where its topic and payload lie in the pool; a free entry's are left over.
    fn span(&self) -> core::ops::Range<usize> {
        let at = usize::from(self.at);
        at..at + usize::from(self.topic_len) + usize::from(self.payload_len)
    }
}

/// A filter: subscribed (kept for replay after a bridge reset), or being unsubscribed (the entry goes when the
/// bridge acknowledges that; until then it is resent after a reset like any request in flight).
#[derive(Debug)]
struct Sub<const T: usize> {
    filter: String<T>,
    qos: QoS,
    /// Id of the application's subscribe or unsubscribe request in flight (it waits for the outcome). One at a
    /// time per filter.
    id: Option<u16>,
    /// Id of a replay (after a bridge reset) in flight: nobody waits for its outcome.
    replay_id: Option<u16>,
    /// `id` is an unsubscription.
    unsubscribing: bool,
    sent: bool,
    /// As [`Pending::aged`].
    aged: bool,
}

impl<const T: usize> Sub<T> {
    /// A free entry (see [`Pending`]): no filter, no request in flight.
    const FREE: Sub<T> = Sub {
        filter: String::new(),
        qos: QoS::AtMostOnce,
        id: None,
        replay_id: None,
        unsubscribing: false,
        sent: false,
        aged: false,
    };

    fn used(&self) -> bool {
        !self.filter.is_empty()
    }

    /// Frees the entry: what marks it free (no filter, no request in flight), not a copy of [`Sub::FREE`].
    fn free(&mut self) {
        self.filter.clear();
        (self.id, self.replay_id) = (None, None);
    }
}

/// What [`Core::lend_message`] found.
enum Lent<'a> {
    /// Lent, its acknowledgement queued.
    Message(Message<'a>),
    /// Its topic and payload take `needed` bytes, more than the caller has room for: nothing done.
    TooLarge { needed: usize, qos: QoS },
}

/// A request without an id (the time, the bridge's counters): wanted until its answer comes, and sent again when
/// the answer is late (lost on the link) or the bridge was reset.
#[derive(Debug, Clone, Copy, Default)]
struct Query {
    wanted: bool,
    /// To be sent.
    due: bool,
    /// As [`Pending::aged`].
    aged: bool,
}

impl Query {
    fn ask(&mut self) {
        (self.wanted, self.due) = (true, true);
    }

    fn answered(&mut self) {
        (self.wanted, self.due) = (false, false);
    }

    /// It went into the send queue.
    fn sent(&mut self) {
        (self.due, self.aged) = (false, false);
    }

    /// At an answer check: a request sent and still unanswered at the previous one is sent again.
    fn check(&mut self) {
        if self.wanted && !self.due {
            self.due = late(&mut self.aged);
        }
    }
}

/// The answer check's rule for a request sent and still unanswered, with its `aged` flag (cleared whenever the
/// request is sent): at the first check it only ages; at the second it is late, and the flag starts over.
fn late(aged: &mut bool) -> bool {
    let late = *aged;
    *aged = !late;
    late
}

/// Acknowledgements of taken messages waiting to be sent, oldest first: a ring of ids rather than a
/// `heapless::Deque`, whose full flag and wrap-around by comparison cost more code at each use.
#[derive(Debug, Default)]
struct Acks {
    ids: [u16; ACKS],
    /// Where the oldest is. Words, not bytes: with bytes the core's zeroing at start-up took the compiler's
    /// generic `memclr` (208 bytes of flash more) instead of the word-aligned one.
    start: usize,
    len: usize,
}

impl Acks {
    /// Queues `id`; `false` when the ring is full.
    fn push(&mut self, id: u16) -> bool {
        if self.len == ACKS {
            return false;
        }
        self.ids[(self.start + self.len) % ACKS] = id;
        self.len += 1;
        true
    }

    /// The oldest.
    fn front(&self) -> Option<u16> {
        (self.len != 0).then(|| self.ids[self.start % ACKS])
    }

    /// Drops the oldest, if any.
    fn pop(&mut self) {
        if self.len > 0 {
            self.start = (self.start + 1) % ACKS;
            self.len -= 1;
        }
    }

    fn clear(&mut self) {
        self.len = 0;
    }
}

/// Where the bridge is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Holding RST low until then.
    Reset { until: Instant },
    /// Waiting for Ready until then.
    Booting { until: Instant },
    /// Configured and answering.
    Up,
    /// After a failed attempt: waiting until then before resetting again.
    Backoff { until: Instant },
}

/// Counters of the driver.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct DriverStats {
    /// Bridge resets the driver made (start-up included).
    pub resets: u32,
    /// Publications resent after a bridge reset.
    pub resent: u32,
    /// Pings sent by the watchdog.
    pub pings: u32,
    /// Received frames dropped for a bad CRC, bad COBS or overlength.
    pub frame_errors: u32,
    /// Messages delivered to the application.
    pub delivered: u32,
    /// QoS 0 messages dropped because they did not fit the application's buffer.
    pub dropped: u32,
}

/// `at + d`, or the end of time if that is past it: a configuration with a period of `Duration::MAX` (a watchdog
/// that never fires, say) means never, not a panic (`Instant + Duration` panics on overflow). Out of line: inlined
/// at each of the core's deadlines, the check costs more than a call.
#[inline(never)]
fn later(at: Instant, d: Duration) -> Instant {
    at.checked_add(d).unwrap_or(Instant::MAX)
}

/// The id `next` holds, and `next` moved on; never 0, which the bridge uses for requests without an id.
fn take_id(next: &mut u16) -> u16 {
    let id = *next;
    *next = next.wrapping_add(1).max(1);
    id
}

/// Answers waiting for the application.
const OUTCOMES: usize = 8;
/// Status changes waiting for the application; the oldest is dropped past this (statuses are states, the newest
/// matters).
const STATUSES: usize = 8;
/// Acknowledgements of taken messages waiting to be sent.
const ACKS: usize = 8;
/// Pings the watchdog sends to a silent bridge, each unanswered for `Config::ping_timeout`, before it resets it.
const PING_TRIES: u8 = 2;
/// What the application has been told of a bridge that was just reset: nothing, but that its queue has room.
const NOTHING_TOLD: [Option<protocol::Status>; 3] = [None, None, Some(protocol::Status::Backpressure { full: false })];
/// A free entry of the outcome table: no operation has the id 0.
const NO_OUTCOME: (u16, Result<Outcome, Error>) = (0, Ok(Outcome::Published));

/// The driver's core; `T` topic bytes, `P` payload bytes, `PUBS` publications in flight, `SUBS` subscriptions,
/// `TX`/`RX` link buffers, `POOL` bytes for the topics and payloads of the publications in flight (a publication
/// takes its topic's and payload's length; a new one waits until both an entry and its bytes are free).
pub struct Core<
    'c,
    const T: usize = DEFAULT_TOPIC,
    const P: usize = DEFAULT_PAYLOAD,
    const PUBS: usize = DEFAULT_PUBS,
    const SUBS: usize = DEFAULT_SUBS,
    const TX: usize = DEFAULT_TX,
    const RX: usize = DEFAULT_RX,
    const POOL: usize = DEFAULT_POOL,
> {
    config: Config<'c>,
    port: Port<TX, RX>,
    phase: Phase,
    pending: [Pending; PUBS],
    pool: [u8; POOL],
    /// The next publication's [`Pending::seq`].
    next_seq: u32,
    subs: [Sub<T>; SUBS],
    outcomes: [(u16, Result<Outcome, Error>); OUTCOMES],
    /// Where an outcome goes when every entry is taken (the application did not collect them).
    outcome_victim: usize,
    statuses: Deque<Status, STATUSES>,
    time_answer: Option<Option<u64>>,
    stats_answer: Option<protocol::Stats>,
    acks: Acks,
    configured: bool,
    ping: Option<(u16, Instant)>,
    ping_due: bool,
    /// Pings sent since the bridge was last heard (while `ping` is set).
    pings_sent: u8,
    time_query: Query,
    stats_query: Query,
    /// When [`Core::check_answers`] looks for answers that are late next.
    answers_check: Instant,
    last_rx: Instant,
    attempts: u32,
    next_id: u16,
    backpressure: bool,
    link_reset: bool,
    /// A restore was made because the bridge said it was not configured; cleared by the next acknowledgement.
    restored_unasked: bool,
    /// That restore's configuration has not been answered yet (by a status).
    awaiting_config_echo: bool,
    /// The configuration sent last has not been answered yet: the bridge answers one with its state (statuses) or
    /// a refusal. Unanswered at two answer checks in a row (lost on the link), it is sent again.
    config_unanswered: bool,
    /// As [`Pending::aged`], for the configuration.
    config_aged: bool,
    /// The application took a message since the last timer check.
    heard: bool,
    /// The received message is lent to the application (see [`Core::borrow_event`]).
    lent: bool,
    /// The bridge's last status of each kind the application was told: WiFi, broker, queue. A status equal to it
    /// is not reported again; a state in a Pong that differs from it is reported (its status event was lost on the
    /// link).
    told: [Option<protocol::Status>; 3],
    stats: DriverStats,
}

impl<
        'c,
        const T: usize,
        const P: usize,
        const PUBS: usize,
        const SUBS: usize,
        const TX: usize,
        const RX: usize,
        const POOL: usize,
    > Core<'c, T, P, PUBS, SUBS, TX, RX, POOL>
{
    /// Every publication the application may start fits the send buffer: `TX` holds the frame of a topic of `T`
    /// bytes and a payload of `P` (with the request's own bytes, at most 16). Checked when the program is built.
    const PUBLICATION_FITS: () = assert!(
        TX >= max_encoded_len(T + P + 16),
        "target-driver: TX is too small for a publication of T topic bytes and P payload bytes"
    );

    /// The largest publication fits the pool (once the others are gone), and offsets in it fit 16 bits.
    const POOL_FITS: () = assert!(
        POOL >= T + P && POOL <= u16::MAX as usize,
        "target-driver: POOL must hold T + P bytes and be at most 65535"
    );

    /// The longest message the receive buffer takes, as the configuration tells the bridge.
    const MAX_MESSAGE: u16 = {
        let n = Port::<TX, RX>::MAX_RX_MESSAGE;
        if n > u16::MAX as usize {
            u16::MAX
        } else {
            n as u16
        }
    };

    /// A core that starts by resetting the bridge at `now`.
    pub fn new(config: Config<'c>, now: Instant) -> Self {
        let () = Self::PUBLICATION_FITS;
        let () = Self::POOL_FITS;
        warn!("resetting the bridge: {:?}", ResetReason::StartUp);
        let mut statuses = Deque::new();
        let _ = statuses.push_back(Status::BridgeReset(ResetReason::StartUp));
        // Built whole, in the state reset_bridge() leaves (the first reset): a value changed after construction
        // would keep the compiler from building it in its final place, and the core is large.
        Core {
            port: Port::new(),
            phase: Phase::Reset {
                until: now + config.reset_pulse,
            },
            config,
            pending: [const { Pending::FREE }; PUBS],
            pool: [0; POOL],
            next_seq: 0,
            subs: [const { Sub::FREE }; SUBS],
            outcomes: [NO_OUTCOME; OUTCOMES],
            outcome_victim: 0,
            statuses,
            time_answer: None,
            stats_answer: None,
            acks: Acks::default(),
            configured: false,
            ping: None,
            ping_due: false,
            pings_sent: 0,
            time_query: Query::default(),
            stats_query: Query::default(),
            answers_check: now,
            last_rx: now,
            attempts: 0,
            next_id: 1,
            backpressure: false,
            link_reset: false,
            restored_unasked: false,
            awaiting_config_echo: false,
            config_unanswered: false,
            config_aged: false,
            heard: false,
            lent: false,
            told: NOTHING_TOLD,
            stats: DriverStats {
                resets: 1,
                ..DriverStats::default()
            },
        }
    }

    // ----- the runner's side -----

    /// The level RST must be driven to now (`false`: the bridge is held in reset).
    pub fn rst_level(&self) -> bool {
        !matches!(self.phase, Phase::Reset { .. })
    }

    /// Whether the bridge is up and configured.
    pub fn bridge_up(&self) -> bool {
        self.phase == Phase::Up && self.configured
    }

    /// `true` once after the core reset the bridge: the runner resets its link driver too.
    #[must_use]
    pub fn take_link_reset(&mut self) -> bool {
        core::mem::take(&mut self.link_reset)
    }

    /// The frame queues the link driver moves.
    pub fn port(&mut self) -> &mut Port<TX, RX> {
        &mut self.port
    }

    /// Counters.
    pub fn stats(&self) -> DriverStats {
        DriverStats {
            frame_errors: self.frame_errors(),
            ..self.stats
        }
    }

    fn frame_errors(&self) -> u32 {
        let s = self.port.stats();
        s.crc_errors + s.malformed + s.overlong
    }

    /// When the current timer runs out: the phase's end, or while the bridge is up the ping's answer is due or, with
    /// no ping in flight, the watchdog pings. (No timer enum: [`Core::handle_timeout`] tells them apart by phase and
    /// ping as this does, which is smaller than a value to build and match.)
    fn deadline(&self) -> Instant {
        match (self.phase, self.ping) {
            (Phase::Reset { until } | Phase::Booting { until } | Phase::Backoff { until }, _) => until,
            (Phase::Up, Some((_, until))) => until,
            (Phase::Up, None) => later(self.last_rx, self.config.watchdog),
        }
    }

    /// When the core wants [`Core::handle_timeout`] to be called at the latest.
    pub fn poll_at(&self) -> Instant {
        let at = self.deadline();
        if self.phase == Phase::Up {
            at.min(self.answers_check)
        } else {
            at
        }
    }

    /// Advances the timers to `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if core::mem::take(&mut self.heard) || self.port.received().is_some() {
            // A message the application took since, or one still waiting for it: the bridge was alive then. While
            // one waits, the link is held on this side and the bridge could not answer a ping: an application slow
            // to take a message must not get the bridge reset (and the message dropped).
            self.last_rx = now;
        }
        if self.phase == Phase::Up && now >= self.answers_check {
            self.check_answers(now);
        }
        if now < self.deadline() {
            return;
        }
        match (self.phase, self.ping) {
            // The end of the RST pulse.
            (Phase::Reset { .. }, _) => {
                // The bridge's pins are at their reset levels now: the link starts afresh from here.
                self.link_reset = true;
                self.phase = Phase::Booting {
                    until: later(now, self.config.ready_timeout),
                };
            }
            // Not ready in time.
            (Phase::Booting { .. }, _) => self.fail(ResetReason::NotReady, now),
            // The pause after a failed attempt is over.
            (Phase::Backoff { .. }, _) => self.reset_bridge(ResetReason::NotReady, now),
            // The watchdog: silent for too long.
            (Phase::Up, None) => self.send_ping(now, 1),
            // One lost frame (the ping or its answer) is not worth a reset.
            (Phase::Up, Some(_)) if self.pings_sent < PING_TRIES => self.send_ping(now, self.pings_sent + 1),
            (Phase::Up, Some(_)) => self.reset_bridge(ResetReason::Unresponsive, now),
        }
    }

    /// Pings the bridge, the `n`-th time since it was last heard.
    fn send_ping(&mut self, now: Instant, n: u8) {
        self.ping_due = true;
        let id = self.new_id();
        self.ping = Some((id, later(now, self.config.ping_timeout)));
        self.pings_sent = n;
        self.stats.pings += 1;
        self.flush();
    }

    /// The link failed (timeout or fault). A bridge that was up is reset at once; one that is still booting counts
    /// as a failed attempt, retried after the backoff pause.
    pub fn handle_link_error(&mut self, now: Instant) {
        match self.phase {
            Phase::Up => self.reset_bridge(ResetReason::LinkFault, now),
            Phase::Booting { .. } => self.fail(ResetReason::LinkFault, now),
            Phase::Reset { .. } | Phase::Backoff { .. } => {}
        }
    }

    /// Whether the link should run now: not while the bridge is held in reset or left alone between attempts.
    pub fn link_enabled(&self) -> bool {
        matches!(self.phase, Phase::Booting { .. } | Phase::Up)
    }

    fn status(&mut self, status: Status) {
        if self.statuses.is_full() {
            self.statuses.pop_front();
        }
        let _ = self.statuses.push_back(status);
    }

    fn new_id(&mut self) -> u16 {
        take_id(&mut self.next_id)
    }

    fn reset_bridge(&mut self, reason: ResetReason, now: Instant) {
        warn!("resetting the bridge: {:?}", reason);
        self.stats.resets += 1;
        self.phase = Phase::Reset {
            until: later(now, self.config.reset_pulse),
        };
        self.configured = false;
        self.ping = None;
        self.ping_due = false;
        self.port.clear();
        // A lent message went with it; the next frame must not be released in its place.
        self.lent = false;
        // Also forgets the bridge's backpressure.
        self.reset_state_for_restore();
        self.status(Status::BridgeReset(reason));
    }

    fn fail(&mut self, reason: ResetReason, now: Instant) {
        warn!("bridge attempt {} failed: {:?}", self.attempts + 1, reason);
        self.attempts += 1;
        let shift = self.attempts.min(16);
        let pause = Duration::from_millis(250 << shift).min(self.config.max_reset_backoff);
        self.phase = Phase::Backoff {
            until: later(now, pause),
        };
        self.status(Status::BridgeReset(reason));
    }

    /// Handles the received frame waiting in the port, if any. A message for the application stays there (and
    /// holds the link) until [`Core::take_event`] copies it out.
    pub fn handle_frame(&mut self, now: Instant) {
        self.return_lent();
        // `stats.frame_errors` holds the count when last looked at (`stats()` reads the port's).
        let errors = self.frame_errors();
        if errors != self.stats.frame_errors
            && self.phase == Phase::Up
            && self.ping.is_none()
            && self.port.received().is_none()
        {
            // A damaged frame may have been a status: the answer to a ping carries the bridge's state. (Not while
            // a message waits for the application: it holds the link.)
            self.stats.frame_errors = errors;
            self.send_ping(now, 1);
        }
        let Some(bytes) = self.port.received() else { return };
        self.last_rx = now;
        let event = match BridgeEvent::decode(bytes) {
            Ok(BridgeEvent::Message { .. }) => {
                // Any frame proves the bridge alive, and while the application holds a message the link is held
                // on this side: no reason to ping.
                self.ping = None;
                self.ping_due = false;
                return;
            }
            Ok(ev) => Self::owned(ev),
            Err(_) => None,
        };
        self.port.release();
        if let Some(ev) = event {
            self.handle_bridge_event(ev, now);
        }
        self.flush();
    }

    /// The event without borrowed parts; `None` for a message, the only event that has them (messages stay in the
    /// port until the application takes them).
    fn owned(ev: BridgeEvent<'_>) -> Option<BridgeEvent<'static>> {
        Some(match ev {
            BridgeEvent::Ready { version, limits } => BridgeEvent::Ready { version, limits },
            BridgeEvent::Status(s) => BridgeEvent::Status(s),
            BridgeEvent::PubAck { id } => BridgeEvent::PubAck { id },
            BridgeEvent::SubAck { id, result } => BridgeEvent::SubAck { id, result },
            BridgeEvent::UnsubAck { id } => BridgeEvent::UnsubAck { id },
            BridgeEvent::Pong { id, state } => BridgeEvent::Pong { id, state },
            BridgeEvent::Time { unix_ms } => BridgeEvent::Time { unix_ms },
            BridgeEvent::Stats(s) => BridgeEvent::Stats(s),
            BridgeEvent::Error { id, kind } => BridgeEvent::Error { id, kind },
            BridgeEvent::TooLong { len } => BridgeEvent::TooLong { len },
            BridgeEvent::Message { .. } => return None,
        })
    }

    // Out of line: inlined at its six call sites it costs 180 to 300 bytes more (board-sizes.sh).
    #[inline(never)]
    fn complete(&mut self, id: u16, result: Result<Outcome, Error>) {
        let slot = match self.outcomes.iter().position(|&(id, _)| id == 0) {
            Some(i) => i,
            None => {
                // Nobody collects them: overwrite one, round robin.
                self.outcome_victim = (self.outcome_victim + 1) % OUTCOMES;
                self.outcome_victim
            }
        };
        self.outcomes[slot] = (id, result);
    }

    /// The entry of the subscription table whose application request in flight is `id` (a free entry has none).
    // Out of line, as `complete` (12 to 24 bytes less on the boards).
    #[inline(never)]
    fn sub_slot(&mut self, id: u16) -> Option<&mut Sub<T>> {
        self.subs.iter_mut().find(|s| s.id == Some(id))
    }

    /// The entry of the publication `id` (not a free entry, whatever id the bridge names).
    fn pending_slot(&mut self, id: u16) -> Option<&mut Pending> {
        self.pending.iter_mut().find(|p| p.used() && p.id == id)
    }

    // Out of line: inlined, the event was taken apart into registers and stack slots right after decoding, to be
    // put together again for each kind; out of line it is copied whole once (14 bytes less in the superloop
    // example, 12 in the async one, 72 on the RP2040).
    #[inline(never)]
    fn handle_bridge_event(&mut self, ev: BridgeEvent<'static>, now: Instant) {
        // Any frame proves the bridge alive.
        self.ping = None;
        match ev {
            BridgeEvent::Ready { version, .. } => {
                if version != PROTOCOL_VERSION {
                    self.status(Status::VersionMismatch { bridge: version });
                    self.fail(ResetReason::NotReady, now);
                    return;
                }
                if self.phase == Phase::Up {
                    // The bridge restarted by itself: restore it as after a reset.
                    self.reset_state_for_restore();
                    self.status(Status::BridgeReset(ResetReason::Restarted));
                }
                info!("bridge ready");
                self.phase = Phase::Up;
                self.answers_check = later(now, self.config.answer_timeout);
                self.attempts = 0;
                self.configured = false;
                self.status(Status::BridgeReady);
            }
            BridgeEvent::Status(s) => {
                (self.awaiting_config_echo, self.config_unanswered) = (false, false);
                self.bridge_status(Some(s));
            }
            BridgeEvent::PubAck { id } => {
                self.restored_unasked = false;
                // A publication completed: the bridge's queue has room (its Backpressure { full: false } may be
                // lost on the link).
                self.backpressure = false;
                if let Some(p) = self.pending_slot(id) {
                    p.free();
                    self.complete(id, Ok(Outcome::Published));
                }
            }
            BridgeEvent::SubAck { id, result } => {
                if let Some(sub) = self.subs.iter_mut().find(|s| s.replay_id == Some(id)) {
                    // A replay: nobody waits for it; a refusal is only worth a log line.
                    sub.replay_id = None;
                    if result == SubResult::Failure {
                        warn!("the broker refused a replayed subscription");
                    }
                    return;
                }
                // Only the answer to a subscribe in flight completes one: a stray answer (to an id nothing waits
                // for, or to an unsubscribe or a publication) would hand some other operation a wrong outcome.
                let Some(sub) = self.sub_slot(id).filter(|s| !s.unsubscribing) else {
                    return;
                };
                let outcome = match result {
                    SubResult::Granted(qos) => {
                        sub.id = None;
                        Ok(Outcome::Subscribed(qos))
                    }
                    SubResult::Failure => {
                        // Refused: forgotten, not replayed.
                        sub.free();
                        Err(Error::SubscriptionFailed)
                    }
                };
                self.complete(id, outcome);
            }
            BridgeEvent::UnsubAck { id } => {
                if let Some(sub) = self.sub_slot(id).filter(|s| s.unsubscribing) {
                    sub.free();
                    self.complete(id, Ok(Outcome::Unsubscribed));
                }
            }
            BridgeEvent::Pong { state, .. } => {
                // Three calls rather than a loop over the array, which was built on the stack first.
                let [wifi, broker, queue] = state.statuses();
                self.bridge_status(wifi);
                self.bridge_status(broker);
                self.bridge_status(queue);
            }
            BridgeEvent::Message { .. } => {}
            BridgeEvent::Time { unix_ms } => {
                self.time_query.answered();
                self.time_answer = Some(unix_ms);
            }
            BridgeEvent::Stats(s) => {
                self.stats_query.answered();
                self.stats_answer = Some(s);
            }
            BridgeEvent::Error { id, kind } => self.refused(id, kind),
            BridgeEvent::TooLong { len } => self.status(Status::MessageTooLong { len }),
        }
    }

    /// A status from the bridge, or from the state in a Pong: reported to the application if it changes what the
    /// application was told. It takes an `Option`, as the state in a Pong gives them, and ignores `None` (nothing
    /// known of that kind): the Pong's statuses go in as they come.
    fn bridge_status(&mut self, s: Option<protocol::Status>) {
        use protocol::Status as S;
        let Some(s) = s else { return };
        let (kind, status) = match s {
            S::WifiUp => (0, Status::WifiUp),
            S::WifiDown => (0, Status::WifiDown),
            S::BrokerUp { session_present } => (1, Status::BrokerUp { session_present }),
            S::BrokerDown { reason } => (1, Status::BrokerDown(reason)),
            S::Backpressure { full } => {
                self.backpressure = full;
                (2, Status::QueueFull(full))
            }
        };
        if self.told[kind] != Some(s) {
            self.told[kind] = Some(s);
            self.status(status);
        }
    }

    fn refused(&mut self, id: u16, kind: ErrorKind) {
        if id == 0 {
            // Requests without an id: the configuration itself (TLS not offered, another version, ...).
            warn!("the bridge refused the configuration: {:?}", kind);
            self.restored_unasked = true;
            (self.awaiting_config_echo, self.config_unanswered) = (false, false);
            self.status(Status::ConfigurationRefused(kind));
            return;
        }
        // A refusal of something sent before that restore: it is being sent again after the configuration.
        let before_restore = kind == ErrorKind::NotConfigured && self.awaiting_config_echo;
        if kind == ErrorKind::NotConfigured && !before_restore && self.bridge_up() && !self.restored_unasked {
            // The bridge restarted and its Ready was lost (it came while the link was out of step): restore it as
            // after an announced restart. The refused request is kept and sent again.
            warn!("the bridge forgot its configuration: restoring it");
            self.reset_state_for_restore();
            self.configured = false;
            // Once: if the bridge still says so after this restore, the refusal stands (no restore storm). Until
            // the bridge answers the new configuration (its first status), refusals are of earlier requests.
            self.restored_unasked = true;
            self.awaiting_config_echo = true;
            self.status(Status::BridgeReset(ResetReason::Restarted));
            self.status(Status::BridgeReady);
            return;
        }
        // The publication is looked up once for every case that concerns one.
        if let Some(p) = self.pending_slot(id) {
            if before_restore || kind == ErrorKind::QueueFull {
                // Kept and sent again: after the configuration, or once the bridge has room.
                p.sent = false;
                if kind == ErrorKind::QueueFull {
                    self.backpressure = true;
                }
                return;
            }
            // Refused for good: dropped.
            p.free();
        } else if before_restore {
            return;
        } else if let Some(sub) = self.sub_slot(id) {
            // Refused for good: forgotten (it is not replayed either).
            sub.free();
        } else {
            // An id nothing waits for completes nothing (it would take an entry of the outcome table).
            return;
        }
        self.complete(id, Err(Error::Refused(kind)));
    }

    /// Every `Config::answer_timeout`: a request sent before the previous check and still unanswered is taken for
    /// lost on the link (the request or its answer). A QoS 1 publication, a subscribe or unsubscribe (the
    /// application's or a replay) and a question are sent again under the same id, which the bridge recognises while
    /// it still works on the first; a QoS 0 publication ends with [`Error::Unconfirmed`] instead (at most once).
    fn check_answers(&mut self, now: Instant) {
        self.answers_check = later(now, self.config.answer_timeout);
        // The bridge's "room again" may have been lost on the link: the oldest publication held for room goes again
        // (refused again while the queue is full, it holds the others once more).
        self.backpressure = false;
        for i in 0..PUBS {
            let p = &mut self.pending[i];
            if !(p.used() && p.sent && late(&mut p.aged)) {
                continue;
            }
            if p.qos == QoS::AtLeastOnce {
                p.sent = false;
            } else {
                let id = p.id;
                p.free();
                self.complete(id, Err(Error::Unconfirmed));
            }
        }
        for s in &mut self.subs {
            if s.used() && s.sent && (s.id.is_some() || s.replay_id.is_some()) && late(&mut s.aged) {
                s.sent = false;
            }
        }
        self.time_query.check();
        self.stats_query.check();
        if self.config_unanswered && late(&mut self.config_aged) {
            // Lost on the link (or its answer was): without it the bridge would never connect, and an
            // application that waits for the broker before it sends anything would wait for ever.
            warn!("the configuration went unanswered: sending it again");
            self.configured = false;
        }
        self.flush();
    }

    /// After a bridge reset or restart: everything is to be sent again, except QoS 0 publications already handed
    /// over, which end with [`Error::BridgeReset`] (at most once: they may or may not have reached the broker).
    fn reset_state_for_restore(&mut self) {
        self.acks.clear();
        self.backpressure = false;
        // The restored bridge reports its state anew, and the application hears it.
        self.told = NOTHING_TOLD;
        for i in 0..PUBS {
            let p = &mut self.pending[i];
            if p.used() && p.qos == QoS::AtMostOnce && p.sent {
                let id = p.id;
                p.free();
                self.complete(id, Err(Error::BridgeReset));
            } else {
                p.sent = false;
            }
        }
        for s in &mut self.subs {
            s.sent = false;
        }
        // A question in flight went with the bridge: asked again.
        self.time_query.due = self.time_query.wanted;
        self.stats_query.due = self.stats_query.wanted;
    }

    /// Queues every request that is due and fits, in this order: the configuration, a ping, subscribes and
    /// unsubscribes, acknowledgements, time and stats requests, then publications (not while the bridge's queue is
    /// full), oldest first, so that a resend after a reset keeps the order the application published in. Each request
    /// is found, built, sent and marked sent in one place (a full send queue ends the flush), rather than named by
    /// a value that two more matches then take apart.
    pub fn flush(&mut self) {
        if self.phase != Phase::Up {
            return;
        }
        if self.ping.is_none() {
            self.ping_due = false;
        }
        loop {
            if !self.configured {
                match self.port.send(&self.config.request(Self::MAX_MESSAGE)) {
                    Ok(()) => (self.config_unanswered, self.config_aged) = (true, false),
                    Err(SendError::TooLarge) => {
                        // It can never be sent: as if the bridge refused it (it will refuse what follows), not a
                        // retry at every turn. Done with, but not sent: no answer to wait for.
                        warn!("the configuration does not fit the send buffer");
                        self.restored_unasked = true;
                        self.status(Status::ConfigurationRefused(ErrorKind::TooLong));
                    }
                    Err(_) => return,
                }
                self.configured = true;
                continue;
            }
            if let (true, Some((id, _))) = (self.ping_due, self.ping) {
                if self.port.send(&Request::Ping { id }).is_err() {
                    return;
                }
                self.ping_due = false;
                continue;
            }
            if let Some(sub) = self.subs.iter_mut().find(|s| s.used() && !s.sent) {
                // The application's request, or a replay (sent again under its id if its answer is late).
                let id = match sub.id.or(sub.replay_id) {
                    Some(id) => id,
                    None => {
                        // A new replay: nobody waits for its outcome. Not new_id(): `sub` borrows the table.
                        let id = take_id(&mut self.next_id);
                        sub.replay_id = Some(id);
                        id
                    }
                };
                let filter = &sub.filter;
                let req = if sub.unsubscribing {
                    Request::Unsubscribe { id, filter }
                } else {
                    Request::Subscribe {
                        id,
                        filter,
                        qos: sub.qos,
                    }
                };
                if self.port.send(&req).is_err() {
                    return;
                }
                (sub.sent, sub.aged) = (true, false);
                continue;
            }
            if let Some(id) = self.acks.front() {
                if self.port.send(&Request::Ack { id }).is_err() {
                    return;
                }
                self.acks.pop();
                continue;
            }
            if self.time_query.due || self.stats_query.due {
                // One request built at run time, not one constant in flash for each question.
                let (query, req) = if self.time_query.due {
                    (&mut self.time_query, Request::TimeRequest)
                } else {
                    (&mut self.stats_query, Request::StatsRequest)
                };
                if self.port.send(&req).is_err() {
                    return;
                }
                query.sent();
                continue;
            }
            if self.backpressure {
                return;
            }
            let mut oldest: Option<&mut Pending> = None;
            for p in &mut self.pending {
                if p.used() && !p.sent && oldest.as_ref().is_none_or(|o| p.seq < o.seq) {
                    oldest = Some(p);
                }
            }
            let Some(p) = oldest else { return };
            // Its span lies in the pool, and its topic is UTF-8: both were checked when it was published, and failing
            // here would be this code's bug. Not sent, it is marked sent all the same: it stays in flight (never
            // acknowledged) and keeps no other publication from going.
            let fields = self
                .pool
                .get(p.span())
                .and_then(|b| b.split_at_checked(usize::from(p.topic_len)));
            if let Some((Some(topic), payload)) = fields.map(|(t, pl)| (protocol::wire::utf8(t), pl)) {
                let req = Request::Publish {
                    id: p.id,
                    topic,
                    payload,
                    qos: p.qos,
                    retain: p.retain,
                };
                if self.port.send(&req).is_err() {
                    return;
                }
            }
            if p.tried {
                self.stats.resent += 1;
            }
            (p.sent, p.tried, p.aged) = (true, true, false);
        }
    }

    // ----- the application's side -----

    /// Starts a publication. QoS 1: it is kept (and resent after a bridge reset or when its answer is late) until
    /// the broker acknowledges it; the outcome comes under the returned token. QoS 0: the outcome comes when the
    /// bridge says it wrote it to the broker, or [`Error::BridgeReset`] if the bridge was reset first, or
    /// [`Error::Unconfirmed`] if the bridge's answer is late (it is not resent: at most once).
    pub fn publish(&mut self, topic: &str, payload: &[u8], qos: QoS, retain: bool) -> Result<Token, Error> {
        check_topic(topic, T)?;
        if !matches!(qos, QoS::AtMostOnce | QoS::AtLeastOnce) {
            return Err(Error::UnsupportedQoS);
        }
        if payload.len() > P {
            return Err(Error::PayloadTooLong);
        }
        let n = topic.len() + payload.len();
        let (Some(free), Some(at), false) = (
            self.pending.iter().position(|p| !p.used()),
            self.pool_space(n),
            self.backpressure,
        ) else {
            return Err(Error::WouldBlock);
        };
        // pool_space() finds bytes inside the pool: get_mut() cannot fail, and it needs no panic path.
        let Some(bytes) = self.pool.get_mut(at..at + n) else {
            return Err(Error::WouldBlock);
        };
        let (t, p) = bytes.split_at_mut(topic.len());
        t.copy_from_slice(topic.as_bytes());
        p.copy_from_slice(payload);
        let id = self.new_id();
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        // The casts fit: POOL_FITS bounds the pool by u16::MAX.
        self.pending[free] = Pending {
            id,
            seq,
            at: at as u16,
            topic_len: topic.len() as u16,
            payload_len: payload.len() as u16,
            qos,
            retain,
            sent: false,
            tried: false,
            aged: false,
        };
        self.flush();
        Ok(Token(id))
    }

    /// Where `n` bytes are free in the pool: the first gap between the publications in flight that holds them.
    fn pool_space(&self, n: usize) -> Option<usize> {
        let mut at = 0;
        'search: loop {
            if at + n > POOL {
                return None;
            }
            for p in &self.pending {
                let span = p.span();
                if p.used() && span.start < at + n && at < span.end {
                    // Every start before the end of an entry overlapping [at, at + n) overlaps that entry too.
                    at = span.end;
                    continue 'search;
                }
            }
            return Some(at);
        }
    }

    /// Subscribes (or changes the QoS of a subscription). The filter is kept and replayed after a bridge reset.
    /// [`Error::WouldBlock`] while every entry is taken and one of them waits for an answer (which may free it), or
    /// while an earlier subscribe or unsubscribe of the same filter is unanswered;
    /// [`Error::TooManySubscriptions`] when every entry is taken and none waits.
    pub fn subscribe(&mut self, filter: &str, qos: QoS) -> Result<Token, Error> {
        check_filter(filter, T)?;
        if !matches!(qos, QoS::AtMostOnce | QoS::AtLeastOnce) {
            return Err(Error::UnsupportedQoS);
        }
        self.filter_request(filter, qos, false)
    }

    /// Unsubscribes; the filter is forgotten once the bridge acknowledges it (a bridge reset before that sends
    /// it again). It takes an entry of the subscription table until then, also for a filter this driver did not
    /// subscribe (one the broker kept in a persistent session). [`Error::WouldBlock`] as for
    /// [`Core::subscribe`].
    pub fn unsubscribe(&mut self, filter: &str) -> Result<Token, Error> {
        check_filter(filter, T)?;
        self.filter_request(filter, QoS::AtMostOnce, true)
    }

    /// Starts a subscribe or unsubscribe of `filter` (checked) in its entry, or in a free one.
    fn filter_request(&mut self, filter: &str, qos: QoS, unsubscribing: bool) -> Result<Token, Error> {
        // Its entry, or a free one. `filter` is not empty (checked): a free entry does not match it.
        let sub = match self.subs.iter().position(|s| s.filter.as_str() == filter) {
            Some(i) => &mut self.subs[i],
            None => {
                let Some(free) = self.subs.iter().position(|s| !s.used()) else {
                    // Only an answer can free an entry (to an unsubscription, or a refused subscription).
                    let pending = self.subs.iter().any(|s| s.id.is_some());
                    return Err(if pending {
                        Error::WouldBlock
                    } else {
                        Error::TooManySubscriptions
                    });
                };
                let sub = &mut self.subs[free];
                // Fits: check_filter() bounds it by T. A free entry has no request in flight and no replay; the
                // rest is set below.
                let _ = sub.filter.push_str(filter);
                sub
            }
        };
        if sub.id.is_some() {
            return Err(Error::WouldBlock);
        }
        // Not new_id(): `sub` borrows the table.
        let id = take_id(&mut self.next_id);
        (sub.qos, sub.unsubscribing, sub.id, sub.sent) = (qos, unsubscribing, Some(id), false);
        self.flush();
        Ok(Token(id))
    }

    /// Asks the bridge for the time; the answer comes from [`Core::take_time`].
    pub fn request_time(&mut self) {
        self.time_answer = None;
        self.time_query.ask();
        self.flush();
    }

    /// The answer to the last time request, once: Unix milliseconds, or `Some(None)` if the bridge does not know.
    pub fn take_time(&mut self) -> Option<Option<u64>> {
        self.time_answer.take()
    }

    /// Asks the bridge for its counters; the answer comes from [`Core::take_bridge_stats`].
    pub fn request_stats(&mut self) {
        self.stats_answer = None;
        self.stats_query.ask();
        self.flush();
    }

    /// The answer to the last stats request, once.
    pub fn take_bridge_stats(&mut self) -> Option<protocol::Stats> {
        self.stats_answer.take()
    }

    /// The outcome of the operation `token`, once it is known (taken: asking again gives `None`).
    pub fn outcome(&mut self, token: Token) -> Option<Result<Outcome, Error>> {
        // No operation has the id 0: that is a free entry.
        let slot = self
            .outcomes
            .iter_mut()
            .find(|(id, _)| token.0 != 0 && *id == token.0)?;
        slot.0 = 0;
        Some(slot.1)
    }

    /// Whether the operation `token` is still in flight.
    pub fn in_flight(&self, token: Token) -> bool {
        self.pending.iter().any(|p| p.used() && p.id == token.0) || self.subs.iter().any(|s| s.id == Some(token.0))
    }

    /// The next event for the application: status changes first, then a received message copied into
    /// `buf` (topic then payload). Taking a QoS 1 message queues its acknowledgement to the bridge. A message that
    /// does not fit `buf` is dropped (for QoS 0) or left waiting (for QoS 1, so nothing acknowledged is lost);
    /// give a buffer of at least topic + payload limits.
    pub fn take_event<'b>(&mut self, buf: &'b mut [u8]) -> Option<Event<'b>> {
        self.return_lent();
        if let Some(s) = self.statuses.pop_front() {
            return Some(Event::Status(s));
        }
        let (tl, pl, qos, retain, dup) = match self.lend_message(buf.len())? {
            Lent::Message(m) => {
                let tl = m.topic.len();
                buf[..tl].copy_from_slice(m.topic.as_bytes());
                buf[tl..tl + m.payload.len()].copy_from_slice(m.payload);
                (tl, m.payload.len(), m.qos, m.retain, m.dup)
            }
            Lent::TooLarge {
                qos: QoS::AtMostOnce, ..
            } => {
                self.stats.dropped += 1;
                self.port.release();
                return None;
            }
            Lent::TooLarge { needed, .. } => return Some(Event::Status(Status::BufferTooSmall { needed })),
        };
        self.return_lent();
        self.flush();
        let (t, p) = buf.split_at(tl);
        let topic = protocol::wire::utf8(t)?;
        Some(Event::Message(Message {
            topic,
            payload: &p[..pl],
            qos,
            retain,
            dup,
        }))
    }

    /// The next event, as [`Core::take_event`] but without a copy: a message is lent from the receive buffer. It
    /// stays there, holding the link, until the next call of [`Core::borrow_event`], [`Core::take_event`] or
    /// [`Core::handle_frame`]; its acknowledgement (QoS 1) goes out with the next [`Core::flush`].
    pub fn borrow_event(&mut self) -> Option<Event<'_>> {
        self.return_lent();
        if let Some(s) = self.statuses.pop_front() {
            return Some(Event::Status(s));
        }
        match self.lend_message(usize::MAX)? {
            Lent::Message(m) => Some(Event::Message(m)),
            // Nothing is larger than usize::MAX.
            Lent::TooLarge { .. } => None,
        }
    }

    /// Frees the receive buffer of a message lent by [`Core::borrow_event`].
    fn return_lent(&mut self) {
        if core::mem::take(&mut self.lent) {
            self.port.release();
        }
    }

    /// The message waiting in the port, if any: if its topic and payload take at most `room` bytes, its
    /// acknowledgement (QoS 1) is queued and the frame is lent (`self.lent`) until [`Core::return_lent`]; otherwise
    /// nothing changes (the caller decides).
    fn lend_message(&mut self, room: usize) -> Option<Lent<'_>> {
        let Ok(BridgeEvent::Message {
            id,
            topic,
            payload,
            qos,
            retain,
            dup,
        }) = BridgeEvent::decode(self.port.received()?)
        else {
            return None;
        };
        let needed = topic.len() + payload.len();
        if needed > room {
            return Some(Lent::TooLarge { needed, qos });
        }
        if qos == QoS::AtLeastOnce && !self.acks.push(id) {
            // Acknowledgements wait to be sent: the message waits for room among them.
            return None;
        }
        self.lent = true;
        // Any frame proves the bridge alive (see handle_timeout).
        self.heard = true;
        self.ping = None;
        self.ping_due = false;
        self.stats.delivered += 1;
        Some(Lent::Message(Message {
            topic,
            payload,
            qos,
            retain,
            dup,
        }))
    }

    /// Whether [`Core::take_event`] has something.
    pub fn has_event(&self) -> bool {
        !self.statuses.is_empty() || self.message_waiting()
    }

    fn message_waiting(&self) -> bool {
        !self.lent
            && self
                .port
                .received()
                .is_some_and(|b| matches!(BridgeEvent::decode(b), Ok(BridgeEvent::Message { .. })))
    }
}
