//! Host runner (feature `std`): one driver thread per client over `std::net::TcpStream`.
//!
//! [`HostClient`] is a handle: its methods send commands to the driver thread, which owns the [`Client`], opens
//! connections through the caller's connector, reconnects, and sends [`OwnedEvent`]s back on a channel. A reader
//! thread per connection feeds received bytes to the driver.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender};
use std::sync::{Arc, Mutex};
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

enum Command {
    Publish {
        token: u32,
        topic: String,
        payload: Vec<u8>,
        qos: QoS,
        retain: bool,
        reply: SyncSender<Result<(), PublishError>>,
    },
    Subscribe {
        token: u32,
        filters: Vec<(String, QoS)>,
        reply: SyncSender<Result<(), RequestError>>,
    },
    Unsubscribe {
        token: u32,
        filters: Vec<String>,
        reply: SyncSender<Result<(), RequestError>>,
    },
    Ack {
        packet_id: u16,
        reply: SyncSender<Result<(), AckError>>,
    },
    Disconnect,
    Reconnect,
    Stop,
}

enum Input {
    Command(Command),
    Bytes(u64, Vec<u8>),
    Closed(u64),
}

/// What the driver last reported about its session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
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
    inputs: Sender<Input>,
    events: Receiver<OwnedEvent>,
    snapshot: Arc<Mutex<Snapshot>>,
    thread: Option<JoinHandle<()>>,
}

fn call<T>(inputs: &Sender<Input>, make: impl FnOnce(SyncSender<T>) -> Command, stopped: T) -> T {
    let (tx, rx) = mpsc::sync_channel(1);
    if inputs.send(Input::Command(make(tx))).is_err() {
        return stopped;
    }
    rx.recv().unwrap_or(stopped)
}

impl HostClient {
    /// Starts a client that connects through `connector` (see [`tcp_connector`]).
    pub fn spawn(options: &Options<'_>, connector: Connector) -> Result<Self, ConfigError> {
        // The session is large (its store and buffers are inline): build it on the driver thread's big stack.
        let (inputs, input_rx) = mpsc::channel();
        let (event_tx, events) = mpsc::channel();
        let (ready_tx, ready_rx) = mpsc::sync_channel(1);
        let snapshot = Arc::new(Mutex::new(Snapshot::default()));
        let (driver_inputs, driver_snapshot) = (inputs.clone(), snapshot.clone());
        let owned = OwnedOptions::from(options);
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
                let _ = ready_tx.send(Ok(()));
                let driver = Driver {
                    session,
                    connector,
                    inputs: driver_inputs,
                    input_rx,
                    events: event_tx,
                    snapshot: driver_snapshot,
                    stream: None,
                    generation: 0,
                    origin: std::time::Instant::now(),
                };
                driver.run();
            })
            .map_err(|_| ConfigError::Invalid)?;
        ready_rx.recv().map_err(|_| ConfigError::Invalid)??;
        Ok(Self {
            inputs,
            events,
            snapshot,
            thread: Some(thread),
        })
    }

    /// See [`Client::publish`]. Errors with [`PublishError::QueueFull`] also when the driver has stopped.
    pub fn publish(&self, token: u32, topic: &str, payload: &[u8], qos: QoS, retain: bool) -> Result<(), PublishError> {
        let (topic, payload) = (topic.to_string(), payload.to_vec());
        call(
            &self.inputs,
            |reply| Command::Publish {
                token,
                topic,
                payload,
                qos,
                retain,
                reply,
            },
            Err(PublishError::QueueFull),
        )
    }

    /// See [`Client::subscribe`].
    pub fn subscribe(&self, token: u32, filters: &[(&str, QoS)]) -> Result<(), RequestError> {
        let filters = filters.iter().map(|(f, q)| (f.to_string(), *q)).collect();
        call(
            &self.inputs,
            |reply| Command::Subscribe { token, filters, reply },
            Err(RequestError::TooManyPending),
        )
    }

    /// See [`Client::unsubscribe`].
    pub fn unsubscribe(&self, token: u32, filters: &[&str]) -> Result<(), RequestError> {
        let filters = filters.iter().map(|f| f.to_string()).collect();
        call(
            &self.inputs,
            |reply| Command::Unsubscribe { token, filters, reply },
            Err(RequestError::TooManyPending),
        )
    }

    /// See [`Client::ack`].
    pub fn ack(&self, packet_id: u16) -> Result<(), AckError> {
        call(
            &self.inputs,
            |reply| Command::Ack { packet_id, reply },
            Err(AckError::QueueFull),
        )
    }

    /// Ends the connection cleanly (DISCONNECT) and stops reconnecting until [`reconnect`](Self::reconnect).
    pub fn disconnect(&self) {
        let _ = self.inputs.send(Input::Command(Command::Disconnect));
    }

    /// Connects again now.
    pub fn reconnect(&self) {
        let _ = self.inputs.send(Input::Command(Command::Reconnect));
    }

    /// The event channel.
    pub fn events(&self) -> &Receiver<OwnedEvent> {
        &self.events
    }

    /// The next event, waiting at most `timeout`.
    pub fn next_event(&self, timeout: StdDuration) -> Option<OwnedEvent> {
        self.events.recv_timeout(timeout).ok()
    }

    /// The driver's last report.
    pub fn snapshot(&self) -> Snapshot {
        self.snapshot.lock().map(|s| *s).unwrap_or_default()
    }
}

impl Drop for HostClient {
    fn drop(&mut self) {
        let _ = self.inputs.send(Input::Command(Command::Stop));
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
    session: HostSession,
    connector: Connector,
    inputs: Sender<Input>,
    input_rx: Receiver<Input>,
    events: Sender<OwnedEvent>,
    snapshot: Arc<Mutex<Snapshot>>,
    stream: Option<TcpStream>,
    generation: u64,
    origin: std::time::Instant,
}

impl Driver {
    fn now(&self) -> Instant {
        Instant::from_millis(self.origin.elapsed().as_millis() as u64)
    }

    fn run(mut self) {
        loop {
            let now = self.now();
            if self.session.wants_link(now) {
                self.open(now);
            }
            self.flush();
            if let Ok(mut s) = self.snapshot.lock() {
                *s = Snapshot {
                    stats: self.session.stats(),
                    queued: self.session.queued(),
                    connected: self.session.is_connected(),
                };
            }
            let now = self.now();
            let wait = self
                .session
                .poll_at()
                .map_or(1_000, |at| at.as_millis().saturating_sub(now.as_millis()));
            match self.input_rx.recv_timeout(StdDuration::from_millis(wait.min(1_000))) {
                Ok(Input::Command(Command::Stop)) | Err(RecvTimeoutError::Disconnected) => break,
                Ok(Input::Command(c)) => self.command(c),
                Ok(Input::Bytes(generation, bytes)) if generation == self.generation => self.received(&bytes),
                Ok(Input::Closed(generation)) if generation == self.generation => {
                    self.session.handle_link_down(self.now())
                }
                Ok(_) => {} // from an earlier connection
                Err(RecvTimeoutError::Timeout) => self.session.handle_timeout(self.now()),
            }
        }
        self.close();
    }

    fn open(&mut self, now: Instant) {
        match (self.connector)() {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                let _ = stream.set_write_timeout(Some(StdDuration::from_secs(5)));
                let reader = match stream.try_clone() {
                    Ok(r) => r,
                    Err(_) => return self.session.handle_link_failed(now),
                };
                self.generation += 1;
                let (generation, inputs) = (self.generation, self.inputs.clone());
                let spawned = std::thread::Builder::new()
                    .name("resilient-mqtt-rx".into())
                    .spawn(move || read_loop(reader, generation, inputs));
                if spawned.is_err() {
                    return self.session.handle_link_failed(now);
                }
                self.stream = Some(stream);
                self.session.handle_link_up(now);
            }
            Err(_) => self.session.handle_link_failed(now),
        }
    }

    fn close(&mut self) {
        if let Some(s) = self.stream.take() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    fn received(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let n = self.session.handle_bytes(bytes, self.now());
            bytes = &bytes[n..];
            self.flush();
        }
    }

    /// Hands out every event and writes every due packet; closes the stream when the session dropped the link.
    fn flush(&mut self) {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 8192];
        loop {
            let now = self.now();
            let mut progressed = false;
            while let Some(event) = self.session.poll_event(now) {
                progressed = true;
                let _ = self.events.send(event.into());
            }
            while let Some(n) = self.session.poll_transmit(now, &mut buf) {
                progressed = true;
                out.extend_from_slice(&buf[..n]);
            }
            if !out.is_empty() {
                let written = match self.stream.as_mut() {
                    Some(s) => s.write_all(&out),
                    None => Ok(()),
                };
                out.clear();
                if written.is_err() {
                    self.session.handle_link_down(now);
                    progressed = true;
                }
            }
            if !progressed {
                break;
            }
        }
        if !self.session.is_link_up() {
            self.close();
        }
    }

    fn command(&mut self, c: Command) {
        let now = self.now();
        match c {
            Command::Publish {
                token,
                topic,
                payload,
                qos,
                retain,
                reply,
            } => {
                let _ = reply.send(self.session.publish(token, &topic, &payload, qos, retain));
            }
            Command::Subscribe { token, filters, reply } => {
                let list: Vec<(&str, QoS)> = filters.iter().map(|(f, q)| (f.as_str(), *q)).collect();
                let _ = reply.send(self.session.subscribe(token, &list));
            }
            Command::Unsubscribe { token, filters, reply } => {
                let list: Vec<&str> = filters.iter().map(String::as_str).collect();
                let _ = reply.send(self.session.unsubscribe(token, &list));
            }
            Command::Ack { packet_id, reply } => {
                let _ = reply.send(self.session.ack(packet_id));
            }
            Command::Disconnect => self.session.disconnect(now),
            Command::Reconnect => self.session.reconnect(now),
            Command::Stop => {}
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
