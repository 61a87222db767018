//! A scripted fake broker in virtual time: the test feeds broker packets to a `Client` and reads what it sent.
#![allow(dead_code)]

use resilient_mqtt::codec::v311;
use resilient_mqtt::codec::{ConnAck, ConnectReturnCode, Packet, Publish, SubAck};
use resilient_mqtt::{Client, DisconnectReason, Event, Instant, Options, QoS, SubAckCode};

/// The client under test; `F` is its `FILTERS` (filters per request, default 8).
pub type TestClient<const F: usize = 8> = Client<8, 1024, 1024, 8, F>;

#[derive(Debug, Clone, PartialEq)]
pub enum Sent {
    Connect {
        client_id: String,
        clean: bool,
        keep_alive: u16,
        username: Option<String>,
        password: Option<Vec<u8>>,
        will: Option<(String, Vec<u8>, QoS, bool)>,
    },
    Publish {
        dup: bool,
        qos: QoS,
        retain: bool,
        topic: String,
        id: Option<u16>,
        payload: Vec<u8>,
    },
    PubAck(u16),
    Subscribe {
        id: u16,
        filters: Vec<(String, QoS)>,
    },
    Unsubscribe {
        id: u16,
        filters: Vec<String>,
    },
    PingReq,
    Disconnect,
    Other(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Ev {
    Connected(bool),
    Disconnected(DisconnectReason),
    Published(u32),
    Subscribed(u32, Vec<SubAckCode>),
    Unsubscribed(u32),
    Message {
        id: Option<u16>,
        topic: String,
        payload: Vec<u8>,
        qos: QoS,
        retain: bool,
        dup: bool,
    },
}

pub struct Harness<const F: usize = 8> {
    pub client: TestClient<F>,
    pub now: u64,
    pub sent: Vec<Sent>,
    pub events: Vec<Ev>,
    pending: Vec<u8>,
}

pub fn options(id: &str) -> Options<'_> {
    let mut o = Options::new(id);
    o.keep_alive_secs = 10;
    o.max_in_flight = 3;
    o
}

impl Harness {
    pub fn new(options: &Options<'_>) -> Self {
        Harness::with_filters(options)
    }
}

impl<const F: usize> Harness<F> {
    /// A harness whose client takes at most `F` filters per request.
    pub fn with_filters(options: &Options<'_>) -> Self {
        Harness {
            client: TestClient::<F>::new(options).unwrap(),
            now: 0,
            sent: vec![],
            events: vec![],
            pending: vec![],
        }
    }

    pub fn now(&self) -> Instant {
        Instant::from_millis(self.now)
    }

    /// Drains events and transmissions, as a runner does after every input.
    pub fn pump(&mut self) {
        let now = self.now();
        loop {
            let mut progressed = false;
            while let Some(ev) = self.client.poll_event(now) {
                progressed = true;
                self.events.push(match ev {
                    Event::Connected { session_present } => Ev::Connected(session_present),
                    Event::Disconnected { reason } => Ev::Disconnected(reason),
                    Event::Published { token } => Ev::Published(token),
                    Event::Subscribed { token, results } => Ev::Subscribed(token, results.to_vec()),
                    Event::Unsubscribed { token } => Ev::Unsubscribed(token),
                    Event::Message(m) => Ev::Message {
                        id: m.packet_id,
                        topic: m.topic.to_string(),
                        payload: m.payload.to_vec(),
                        qos: m.qos,
                        retain: m.retain,
                        dup: m.dup,
                    },
                    other => panic!("unexpected event {other:?}"),
                });
            }
            let mut buf = [0u8; 2048];
            while let Some(n) = self.client.poll_transmit(now, &mut buf) {
                progressed = true;
                self.pending.extend_from_slice(&buf[..n]);
            }
            if !progressed {
                break;
            }
        }
        self.parse_sent();
    }

    fn parse_sent(&mut self) {
        loop {
            let (sent, n) = match v311::decode(&self.pending, usize::MAX).expect("client sent a malformed packet") {
                None => break,
                Some((p, n)) => (to_sent(&p), n),
            };
            self.sent.push(sent);
            self.pending.drain(..n);
        }
    }

    /// The runner opened a transport.
    pub fn link_up(&mut self) {
        self.pending.clear();
        self.client.handle_link_up(self.now());
        self.pump();
    }

    /// The transport died under the client.
    pub fn link_down(&mut self) {
        self.client.handle_link_down(self.now());
        self.pump();
    }

    /// Brings the link up and accepts the CONNECT.
    pub fn connect(&mut self, session_present: bool) {
        self.link_up();
        let c = self.take_sent();
        assert!(
            matches!(c.last(), Some(Sent::Connect { .. })),
            "expected CONNECT, got {c:?}"
        );
        self.feed(&Packet::ConnAck(ConnAck {
            session_present,
            code: ConnectReturnCode::Accepted,
        }));
        assert!(self.take_events().contains(&Ev::Connected(session_present)));
    }

    pub fn feed_bytes(&mut self, bytes: &[u8]) {
        let mut rest = bytes;
        while !rest.is_empty() {
            let n = self.client.handle_bytes(rest, self.now());
            rest = &rest[n..];
            self.pump();
        }
        self.pump();
    }

    pub fn feed(&mut self, packet: &Packet<'_>) {
        let mut buf = vec![0u8; 4096];
        let n = v311::encode(packet, &mut buf).unwrap();
        self.feed_bytes(&buf[..n]);
    }

    pub fn puback(&mut self, id: u16) {
        self.feed(&Packet::PubAck(id));
    }

    pub fn suback(&mut self, id: u16, codes: &[u8]) {
        self.feed(&Packet::SubAck(SubAck { packet_id: id, codes }));
    }

    pub fn deliver(&mut self, topic: &str, payload: &[u8], qos: QoS, id: Option<u16>) {
        self.feed(&Packet::Publish(Publish {
            dup: false,
            qos,
            retain: false,
            topic,
            packet_id: id,
            payload,
        }));
    }

    /// Moves virtual time on, as a runner woken by its timer does.
    pub fn advance(&mut self, ms: u64) {
        self.now += ms;
        self.client.handle_timeout(self.now());
        self.pump();
    }

    /// Moves time on in steps of `step` ms up to `total`, pumping at each (like a runner's timer wakeups).
    pub fn run_for(&mut self, total: u64, step: u64) {
        let end = self.now + total;
        while self.now < end {
            self.advance(step.min(end - self.now));
        }
    }

    pub fn take_sent(&mut self) -> Vec<Sent> {
        std::mem::take(&mut self.sent)
    }

    pub fn take_events(&mut self) -> Vec<Ev> {
        std::mem::take(&mut self.events)
    }

    pub fn publish(&mut self, token: u32, topic: &str, payload: &[u8], qos: QoS) {
        self.client.publish(token, topic, payload, qos, false).unwrap();
        self.pump();
    }
}

pub fn to_sent(p: &Packet<'_>) -> Sent {
    match p {
        Packet::Connect(c) => Sent::Connect {
            client_id: c.client_id.to_string(),
            clean: c.clean_session,
            keep_alive: c.keep_alive,
            username: c.username.map(str::to_string),
            password: c.password.map(<[u8]>::to_vec),
            will: c
                .will
                .map(|w| (w.topic.to_string(), w.payload.to_vec(), w.qos, w.retain)),
        },
        Packet::Publish(p) => Sent::Publish {
            dup: p.dup,
            qos: p.qos,
            retain: p.retain,
            topic: p.topic.to_string(),
            id: p.packet_id,
            payload: p.payload.to_vec(),
        },
        Packet::PubAck(id) => Sent::PubAck(*id),
        Packet::Subscribe(s) => Sent::Subscribe {
            id: s.packet_id,
            filters: s.filters.iter().map(|f| (f.filter.to_string(), f.qos)).collect(),
        },
        Packet::Unsubscribe(u) => Sent::Unsubscribe {
            id: u.packet_id,
            filters: u.filters.iter().map(str::to_string).collect(),
        },
        Packet::PingReq => Sent::PingReq,
        Packet::Disconnect => Sent::Disconnect,
        other => Sent::Other(format!("{other:?}")),
    }
}

pub fn publish_ids(sent: &[Sent]) -> Vec<(Option<u16>, bool, Vec<u8>)> {
    sent.iter()
        .filter_map(|s| match s {
            Sent::Publish { id, dup, payload, .. } => Some((*id, *dup, payload.clone())),
            _ => None,
        })
        .collect()
}
