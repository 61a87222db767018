//! Host runner (feature `std`): one driver thread per client over `std::net::TcpStream`.
//!
//! [`HostClient`] is a handle on a [`Client`] shared (behind a mutex) with a driver thread. The handle's methods
//! call the session directly, so their errors (such as [`PublishError::QueueFull`]) come back at once, and wake
//! the driver. The driver opens connections through the caller's connector, reconnects, writes what the session
//! has to send, and sends [`OwnedEvent`]s back on a channel. A reader thread per connection feeds it received bytes.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration as StdDuration;

use crate::session::{AckError, Client, ConfigError, DisconnectReason, Event, Options, PublishError, RequestError};
use crate::{Instant, QoS, Stats, SubAckCode};

/// The session type the host runner drives: 256 queued publications, 128 KiB of them, 64 KiB packets in,
/// 32 subscriptions.
pub type HostSession = Client<256, 131_072, 65_536, 32>;

/// A message received from the broker, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedMessage {
    /// Packet id for QoS 1 (give it to [`HostClient::ack`] unless `auto_ack`).
    pub packet_id: Option<u16>,
    /// Topic name.
    pub topic: String,
    /// Payload.
    pub payload: Vec<u8>,
    /// QoS of this delivery.
    pub qos: QoS,
    /// Delivered because it was retained.
    pub retain: bool,
    /// Possibly a redelivery.
    pub dup: bool,
}

/// An [`Event`] that owns its data.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OwnedEvent {
    /// See [`Event::Connected`].
    Connected {
        /// The broker resumed the stored session.
        session_present: bool,
    },
    /// See [`Event::Disconnected`].
    Disconnected {
        /// Why.
        reason: DisconnectReason,
    },
    /// See [`Event::Published`].
    Published {
        /// The caller's token.
        token: u32,
    },
    /// See [`Event::Subscribed`].
    Subscribed {
        /// The caller's token.
        token: u32,
        /// One result per filter.
        results: Vec<SubAckCode>,
    },
    /// See [`Event::Unsubscribed`].
    Unsubscribed {
        /// The caller's token.
        token: u32,
    },
    /// See [`Event::Message`].
    Message(OwnedMessage),
}

impl From<Event<'_>> for OwnedEvent {
    fn from(e: Event<'_>) -> Self {
        match e {
            Event::Connected { session_present } => Self::Connected { session_present },
            Event::Disconnected { reason } => Self::Disconnected { reason },
            Event::Published { token } => Self::Published { token },
            Event::Subscribed { token, results } => Self::Subscribed {
                token,
                results: results.to_vec(),
            },
            Event::Unsubscribed { token } => Self::Unsubscribed { token },
            Event::Message(m) => Self::Message(OwnedMessage {
                packet_id: m.packet_id,
                topic: m.topic.into(),
                payload: m.payload.into(),
                qos: m.qos,
                retain: m.retain,
                dup: m.dup,
            }),
        }
    }
}

/// Opens a transport; called by the driver thread whenever the session wants one.
pub type Connector = Box<dyn FnMut() -> io::Result<TcpStream> + Send>;

/// A connector to a fixed address with a connect timeout.
pub fn tcp_connector(addr: SocketAddr, timeout: StdDuration) -> Connector {
    Box::new(move || TcpStream::connect_timeout(&addr, timeout))
}

enum Input {
    /// The application changed the session: flush it.
    Wake,
    Bytes(u64, Vec<u8>),
    Closed(u64),
    Stop,
}

/// What the handle and the driver share.
struct Shared {
    session: Mutex<HostSession>,
    wake_pending: AtomicBool,
    origin: std::time::Instant,
}

impl Shared {
    fn now(&self) -> Instant {
        Instant::from_millis(self.origin.elapsed().as_millis() as u64)
    }

    fn lock(&self) -> MutexGuard<'_, HostSession> {
        // A panic while holding the lock cannot leave the session half-updated in a way that matters more than
        // stopping; keep going with the data as it is.
        self.session.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A snapshot of the session's state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Snapshot {
    /// The session's counters.
    pub stats: Stats,
    /// Publications queued or in flight.
    pub queued: usize,
    /// The broker accepted the current connection.
    pub connected: bool,
}

/// A handle on a client driven by its own thread. Dropping it closes the connection abruptly (no DISCONNECT, so the
/// broker publishes the will); call [`disconnect`](Self::disconnect) first for a clean end.
pub struct HostClient {
    shared: Arc<Shared>,
    inputs: Sender<Input>,
    events: Mutex<Receiver<OwnedEvent>>,
    thread: Option<JoinHandle<()>>,
}

impl HostClient {
    /// Starts a client that connects through `connector` (see [`tcp_connector`]).
    pub fn spawn(options: &Options<'_>, connector: Connector) -> Result<Self, ConfigError> {
        let (inputs, input_rx) = mpsc::channel();
        let (event_tx, events) = mpsc::channel();
        let (ready_tx, ready_rx) = mpsc::sync_channel(1);
        let owned = OwnedOptions::from(options);
        let driver_inputs = inputs.clone();
        // The session is large (its store and buffers are inline): build it on the driver thread's big stack.
        let thread = std::thread::Builder::new()
            .name("resilient-mqtt".into())
            .stack_size(8 << 20)
            .spawn(move || {
                let session = match HostSession::new(&owned.options()) {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let shared = Arc::new(Shared {
                    session: Mutex::new(session),
                    wake_pending: AtomicBool::new(false),
                    origin: std::time::Instant::now(),
                });
                let _ = ready_tx.send(Ok(shared.clone()));
                let driver = Driver {
                    shared,
                    connector,
                    inputs: driver_inputs,
                    input_rx,
                    events: event_tx,
                    stream: None,
                    generation: 0,
                    pending_rx: Vec::new(),
                };
                driver.run();
            })
            .map_err(|_| ConfigError::Invalid)?;
        let shared = ready_rx.recv().map_err(|_| ConfigError::Invalid)??;
        Ok(Self {
            shared,
            inputs,
            events: Mutex::new(events),
            thread: Some(thread),
        })
    }

    fn wake(&self) {
        if !self.shared.wake_pending.swap(true, Ordering::AcqRel) {
            let _ = self.inputs.send(Input::Wake);
        }
    }

    fn with_session<T>(&self, f: impl FnOnce(&mut HostSession, Instant) -> T) -> T {
        let now = self.shared.now();
        let out = f(&mut self.shared.lock(), now);
        self.wake();
        out
    }

    /// See [`Client::publish`]; a full queue is [`PublishError::QueueFull`] at once (retry after a `Published`).
    pub fn publish(&self, token: u32, topic: &str, payload: &[u8], qos: QoS, retain: bool) -> Result<(), PublishError> {
        self.with_session(|s, _| s.publish(token, topic, payload, qos, retain))
    }

    /// See [`Client::subscribe`].
    pub fn subscribe(&self, token: u32, filters: &[(&str, QoS)]) -> Result<(), RequestError> {
        self.with_session(|s, _| s.subscribe(token, filters))
    }

    /// See [`Client::unsubscribe`].
    pub fn unsubscribe(&self, token: u32, filters: &[&str]) -> Result<(), RequestError> {
        self.with_session(|s, _| s.unsubscribe(token, filters))
    }

    /// See [`Client::ack`].
    pub fn ack(&self, packet_id: u16) -> Result<(), AckError> {
        self.with_session(|s, _| s.ack(packet_id))
    }

    /// Ends the connection cleanly (DISCONNECT) and stops reconnecting until [`reconnect`](Self::reconnect).
    pub fn disconnect(&self) {
        self.with_session(|s, now| s.disconnect(now));
    }

    /// Connects again now.
    pub fn reconnect(&self) {
        self.with_session(|s, now| s.reconnect(now));
    }

    /// The next event, waiting at most `timeout`. The handle is `Sync`: one thread may wait for events while
    /// others publish.
    pub fn next_event(&self, timeout: StdDuration) -> Option<OwnedEvent> {
        let events = self.events.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        events.recv_timeout(timeout).ok()
    }

    /// The next event if one is waiting.
    pub fn try_event(&self) -> Option<OwnedEvent> {
        let events = self.events.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        events.try_recv().ok()
    }

    /// The session's state now.
    pub fn snapshot(&self) -> Snapshot {
        let s = self.shared.lock();
        Snapshot {
            stats: s.stats(),
            queued: s.queued(),
            connected: s.is_connected(),
        }
    }
}

impl Drop for HostClient {
    fn drop(&mut self) {
        let _ = self.inputs.send(Input::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Options with owned strings, to cross into the driver thread.
struct OwnedOptions {
    client_id: String,
    username: Option<String>,
    password: Option<Vec<u8>>,
    will: Option<(String, Vec<u8>, QoS, bool)>,
    keep_alive_secs: u16,
    clean_session: bool,
    max_in_flight: usize,
    ack_timeout: crate::Duration,
    connack_timeout: crate::Duration,
    auto_ack: bool,
    max_packet_size: usize,
    backoff: crate::BackoffConfig,
    jitter_seed: u32,
}

impl From<&Options<'_>> for OwnedOptions {
    fn from(o: &Options<'_>) -> Self {
        Self {
            client_id: o.client_id.into(),
            username: o.username.map(Into::into),
            password: o.password.map(Into::into),
            will: o.will.map(|w| (w.topic.into(), w.payload.into(), w.qos, w.retain)),
            keep_alive_secs: o.keep_alive_secs,
            clean_session: o.clean_session,
            max_in_flight: o.max_in_flight,
            ack_timeout: o.ack_timeout,
            connack_timeout: o.connack_timeout,
            auto_ack: o.auto_ack,
            max_packet_size: o.max_packet_size,
            backoff: o.backoff,
            jitter_seed: o.jitter_seed,
        }
    }
}

impl OwnedOptions {
    fn options(&self) -> Options<'_> {
        let mut o = Options::new(&self.client_id);
        o.username = self.username.as_deref();
        o.password = self.password.as_deref();
        o.will = self.will.as_ref().map(|(topic, payload, qos, retain)| crate::Will {
            topic,
            payload,
            qos: *qos,
            retain: *retain,
        });
        o.keep_alive_secs = self.keep_alive_secs;
        o.clean_session = self.clean_session;
        o.max_in_flight = self.max_in_flight;
        o.ack_timeout = self.ack_timeout;
        o.connack_timeout = self.connack_timeout;
        o.auto_ack = self.auto_ack;
        o.max_packet_size = self.max_packet_size;
        o.backoff = self.backoff;
        o.jitter_seed = self.jitter_seed;
        o
    }
}

struct Driver {
    shared: Arc<Shared>,
    connector: Connector,
    inputs: Sender<Input>,
    input_rx: Receiver<Input>,
    events: Sender<OwnedEvent>,
    stream: Option<TcpStream>,
    generation: u64,
    /// Received bytes the session had no room for yet (it holds reception back until the application acks).
    pending_rx: Vec<u8>,
}

impl Driver {
    fn run(mut self) {
        loop {
            let now = self.shared.now();
            if self.shared.lock().wants_link(now) {
                self.open();
            }
            self.flush();
            let now = self.shared.now();
            let poll_at = self.shared.lock().poll_at();
            let wait = poll_at.map_or(1_000, |at| at.as_millis().saturating_sub(now.as_millis()));
            match self.input_rx.recv_timeout(StdDuration::from_millis(wait.min(1_000))) {
                Ok(Input::Stop) | Err(RecvTimeoutError::Disconnected) => break,
                Ok(Input::Wake) => {
                    self.shared.wake_pending.store(false, Ordering::Release);
                    self.feed();
                }
                Ok(Input::Bytes(generation, bytes)) if generation == self.generation => self.received(&bytes),
                Ok(Input::Closed(generation)) if generation == self.generation => {
                    let now = self.shared.now();
                    self.shared.lock().handle_link_down(now)
                }
                Ok(_) => {} // from an earlier connection
                Err(RecvTimeoutError::Timeout) => {
                    let now = self.shared.now();
                    self.shared.lock().handle_timeout(now)
                }
            }
        }
        self.close();
    }

    fn open(&mut self) {
        // Connecting may take a while: the session stays unlocked meanwhile.
        let opened = (self.connector)().and_then(|stream| {
            stream.set_nodelay(true)?;
            stream.set_write_timeout(Some(StdDuration::from_secs(5)))?;
            let reader = stream.try_clone()?;
            Ok((stream, reader))
        });
        let now = self.shared.now();
        let (stream, reader) = match opened {
            Ok(pair) => pair,
            Err(_) => return self.shared.lock().handle_link_failed(now),
        };
        self.generation += 1;
        let (generation, inputs) = (self.generation, self.inputs.clone());
        let spawned = std::thread::Builder::new()
            .name("resilient-mqtt-rx".into())
            .spawn(move || read_loop(reader, generation, inputs));
        if spawned.is_err() {
            return self.shared.lock().handle_link_failed(now);
        }
        self.stream = Some(stream);
        self.shared.lock().handle_link_up(now);
    }

    fn close(&mut self) {
        self.pending_rx.clear();
        if let Some(s) = self.stream.take() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    fn received(&mut self, bytes: &[u8]) {
        self.pending_rx.extend_from_slice(bytes);
        self.feed();
    }

    /// Hands pending received bytes to the session as far as it takes them.
    fn feed(&mut self) {
        while !self.pending_rx.is_empty() {
            let now = self.shared.now();
            let n = self.shared.lock().handle_bytes(&self.pending_rx, now);
            self.pending_rx.drain(..n);
            self.flush();
            if n == 0 {
                break; // retried when the application wakes the driver (an ack)
            }
        }
    }

    /// Hands out every event and writes every due packet (outside the lock); closes the stream when the session
    /// dropped the link.
    fn flush(&mut self) {
        let mut out = Vec::new();
        let mut buf = vec![0u8; self.shared.lock().max_packet_size().max(8192)];
        loop {
            let now = self.shared.now();
            let link_up = {
                let mut session = self.shared.lock();
                while let Some(event) = session.poll_event(now) {
                    let _ = self.events.send(event.into());
                }
                while let Some(n) = session.poll_transmit(now, &mut buf) {
                    out.extend_from_slice(&buf[..n]);
                    if out.len() >= 64 * 1024 {
                        break;
                    }
                }
                session.is_link_up()
            };
            let wrote = !out.is_empty();
            if wrote {
                let written = match self.stream.as_mut() {
                    Some(s) => s.write_all(&out),
                    None => Ok(()),
                };
                out.clear();
                if written.is_err() {
                    self.shared.lock().handle_link_down(self.shared.now());
                }
            }
            // After the write: a DISCONNECT is the last packet of its link.
            if !link_up {
                self.close();
            }
            if !wrote {
                break;
            }
        }
    }
}

fn read_loop(mut stream: TcpStream, generation: u64, inputs: Sender<Input>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match stream.read(&mut buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Ok(0) | Err(_) => {
                let _ = inputs.send(Input::Closed(generation));
                return;
            }
            Ok(n) => {
                if inputs.send(Input::Bytes(generation, buf[..n].to_vec())).is_err() {
                    return;
                }
            }
        }
    }
}
