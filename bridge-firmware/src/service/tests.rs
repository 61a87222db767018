//! State × event tests of the bridge service in virtual time: a fake target (a second `Port`, frames in and out)
//! and a fake broker (MQTT packets encoded and decoded with the client crate's codec).

extern crate std;

use std::string::{String, ToString};
use std::vec;
use std::vec::Vec;

use protocol::link::LinkIo;
use protocol::{
    BridgeState, BrokerState, Config, DownReason, ErrorKind, Event, Port, QoS, Request, Status, SubResult, Will,
    MAX_FRAME_LEN, PROTOCOL_VERSION,
};
use resilient_mqtt::codec::{v311, ConnAck, ConnectReturnCode, Packet, Publish, SubAck};
use resilient_mqtt::{Duration, Instant};

use super::Bridge;

type Small = Bridge<4096, MAX_FRAME_LEN, 2, 1024, 4096, 4>;
type Std = Bridge;

/// An event as the target saw it, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ev {
    Ready {
        version: u16,
        window: u8,
    },
    Status(Status),
    PubAck(u16),
    SubAck(u16, SubResult),
    UnsubAck(u16),
    Message {
        id: u16,
        topic: String,
        payload: Vec<u8>,
        qos: QoS,
        retain: bool,
        dup: bool,
    },
    Pong(u16, BridgeState),
    Time(Option<u64>),
    Stats(protocol::Stats),
    Error(u16, ErrorKind),
    TooLong(u16),
}

fn owned(e: Event<'_>) -> Ev {
    match e {
        Event::Ready { version, limits } => Ev::Ready {
            version,
            window: limits.window,
        },
        Event::Status(s) => Ev::Status(s),
        Event::PubAck { id } => Ev::PubAck(id),
        Event::SubAck { id, result } => Ev::SubAck(id, result),
        Event::UnsubAck { id } => Ev::UnsubAck(id),
        Event::Message {
            id,
            topic,
            payload,
            qos,
            retain,
            dup,
        } => Ev::Message {
            id,
            topic: topic.to_string(),
            payload: payload.to_vec(),
            qos,
            retain,
            dup,
        },
        Event::Pong { id, state } => Ev::Pong(id, state),
        Event::Time { unix_ms } => Ev::Time(unix_ms),
        Event::Stats(s) => Ev::Stats(s),
        Event::Error { id, kind } => Ev::Error(id, kind),
        Event::TooLong { len } => Ev::TooLong(len),
    }
}

/// A packet as the broker saw it, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pk {
    Connect {
        client_id: String,
        clean: bool,
        will: Option<String>,
    },
    Publish {
        topic: String,
        payload: Vec<u8>,
        qos: u8,
        retain: bool,
        dup: bool,
        pid: Option<u16>,
    },
    PubAck(u16),
    Subscribe {
        pid: u16,
        filters: Vec<(String, u8)>,
    },
    Unsubscribe {
        pid: u16,
    },
    PingReq,
    Disconnect,
    Other,
}

struct Rig<B> {
    bridge: B,
    target: Port<8192, MAX_FRAME_LEN>,
    now: Instant,
}

fn config(version: u16) -> Config<'static> {
    Config {
        version,
        wifi_ssid: "net",
        wifi_password: "pw",
        broker_host: "broker.local",
        broker_port: 1883,
        client_id: "bridge-test",
        username: None,
        password: None,
        keepalive_s: 10,
        clean_session: false,
        will: None,
        tls: false,
        max_message: protocol::message::MAX_MESSAGE_LEN as u16,
    }
}

macro_rules! rig_impl {
    ($t:ty) => {
        #[allow(dead_code)]
        impl Rig<$t> {
            fn new() -> Self {
                Rig {
                    bridge: <$t>::new(7),
                    target: Port::new(),
                    now: Instant::ZERO,
                }
            }

            fn advance(&mut self, ms: u64) {
                self.now = self.now + Duration::from_millis(ms);
                let _ = self.bridge.poll(self.now);
            }

            /// Sends a request and moves frames both ways until nothing moves; returns the events the target got.
            fn request(&mut self, req: &Request<'_>) -> Vec<Ev> {
                self.target.send(req).expect("target queue");
                self.pump()
            }

            /// The state the bridge's answer to a ping carries (no other event may come with it).
            fn ping(&mut self, id: u16) -> BridgeState {
                let ev = self.request(&Request::Ping { id });
                match ev[..] {
                    [Ev::Pong(i, state)] if i == id => state,
                    _ => panic!("{ev:?}"),
                }
            }

            fn pump(&mut self) -> Vec<Ev> {
                let mut out = Vec::new();
                loop {
                    let mut moved = false;
                    while self.target.tx_ready() && self.bridge.port().received().is_none() {
                        let b = self.target.tx_next().expect("byte");
                        assert!(self.bridge.port().rx(b));
                        moved = true;
                    }
                    let _ = self.bridge.poll(self.now);
                    while let Some(b) = self.bridge.port().tx_next() {
                        assert!(self.target.rx(b));
                        moved = true;
                        if let Some(bytes) = self.target.received() {
                            out.push(owned(Event::decode(bytes).expect("event")));
                            self.target.release();
                        }
                    }
                    if !moved {
                        return out;
                    }
                }
            }

            /// Everything the bridge has for the broker now.
            fn broker_reads(&mut self) -> Vec<Pk> {
                let mut out = Vec::new();
                let mut buf = vec![0u8; 8192];
                while let Some(n) = self.bridge.poll_transmit(self.now, &mut buf) {
                    let (p, used) = v311::decode(&buf[..n], 1 << 16).expect("valid").expect("whole");
                    assert_eq!(used, n);
                    out.push(match p {
                        Packet::Connect(c) => Pk::Connect {
                            client_id: c.client_id.to_string(),
                            clean: c.clean_session,
                            will: c.will.map(|w| w.topic.to_string()),
                        },
                        Packet::Publish(p) => Pk::Publish {
                            topic: p.topic.to_string(),
                            payload: p.payload.to_vec(),
                            qos: p.qos as u8,
                            retain: p.retain,
                            dup: p.dup,
                            pid: p.packet_id,
                        },
                        Packet::PubAck(id) => Pk::PubAck(id),
                        Packet::Subscribe(s) => Pk::Subscribe {
                            pid: s.packet_id,
                            filters: s
                                .filters
                                .iter()
                                .map(|f| (f.filter.to_string(), f.qos as u8))
                                .collect(),
                        },
                        Packet::Unsubscribe(u) => Pk::Unsubscribe { pid: u.packet_id },
                        Packet::PingReq => Pk::PingReq,
                        Packet::Disconnect => Pk::Disconnect,
                        _ => Pk::Other,
                    });
                }
                out
            }

            fn broker_sends(&mut self, p: &Packet<'_>) -> usize {
                let mut buf = vec![0u8; 8192];
                let n = v311::encode(p, &mut buf).expect("encode");
                self.bridge.handle_bytes(&buf[..n], self.now)
            }

            /// Configured, WiFi up, transport open, CONNACK accepted.
            fn connected(session_present: bool) -> (Self, Vec<Ev>) {
                Self::connected_with(config(PROTOCOL_VERSION), session_present)
            }

            /// As [`connected`](Self::connected), with this configuration.
            fn connected_with(c: Config<'static>, session_present: bool) -> (Self, Vec<Ev>) {
                let mut r = Self::new();
                let mut seen = r.pump();
                r.bridge.handle_wifi(true, r.now);
                seen.extend(r.request(&Request::Configure(c)));
                r.connect(session_present, &mut seen);
                (r, seen)
            }

            fn connect(&mut self, session_present: bool, seen: &mut Vec<Ev>) {
                assert!(self.bridge.wants_link(self.now));
                self.bridge.handle_link_up(self.now);
                let sent = self.broker_reads();
                assert!(matches!(sent.first(), Some(Pk::Connect { .. })), "{sent:?}");
                self.broker_sends(&Packet::ConnAck(ConnAck {
                    session_present,
                    code: ConnectReturnCode::Accepted,
                }));
                seen.extend(self.pump());
            }
        }
    };
}

rig_impl!(Std);
rig_impl!(Small);

/// What a bridge that has not been configured answers a ping with: it has told the target nothing.
const UNCONFIGURED: BridgeState = BridgeState {
    wifi_up: false,
    broker: BrokerState::Unknown,
    queue_full: false,
};

fn publish(id: u16, topic: &'static str, payload: &'static [u8], qos: QoS, retain: bool) -> Request<'static> {
    Request::Publish {
        id,
        topic,
        payload,
        qos,
        retain,
    }
}

fn broker_publish<'a>(topic: &'a str, payload: &'a [u8], pid: Option<u16>, dup: bool) -> Packet<'a> {
    Packet::Publish(Publish {
        dup,
        qos: if pid.is_some() {
            resilient_mqtt::QoS::AtLeastOnce
        } else {
            resilient_mqtt::QoS::AtMostOnce
        },
        retain: false,
        topic,
        packet_id: pid,
        payload,
    })
}

#[test]
fn starts_with_ready_and_refuses_mqtt_requests_before_configure() {
    let mut r = Rig::<Std>::new();
    assert_eq!(
        r.pump(),
        vec![Ev::Ready {
            version: PROTOCOL_VERSION,
            window: 16
        }]
    );
    assert_eq!(
        r.request(&publish(3, "a", b"x", QoS::AtLeastOnce, false)),
        vec![Ev::Error(3, ErrorKind::NotConfigured)]
    );
    assert_eq!(
        r.request(&Request::Subscribe {
            id: 4,
            filter: "a/#",
            qos: QoS::AtMostOnce
        }),
        vec![Ev::Error(4, ErrorKind::NotConfigured)]
    );
    assert_eq!(r.request(&Request::Ping { id: 9 }), vec![Ev::Pong(9, UNCONFIGURED)]);
    assert!(!r.bridge.wants_link(r.now));
    assert_eq!(r.bridge.poll_at(), None);
}

#[test]
fn configure_of_another_version_is_refused_with_version_mismatch() {
    let mut r = Rig::<Std>::new();
    r.pump();
    r.bridge.handle_wifi(true, r.now);
    assert_eq!(
        r.request(&Request::Configure(config(PROTOCOL_VERSION + 1))),
        vec![Ev::Error(0, ErrorKind::VersionMismatch)]
    );
    assert!(!r.bridge.wants_link(r.now));
    assert_eq!(r.bridge.broker(), None);
}

#[test]
fn configure_reports_wifi_and_broker_and_connects_to_the_configured_broker() {
    let (r, seen) = Rig::<Std>::connected(false);
    assert_eq!(
        seen,
        vec![
            Ev::Ready {
                version: PROTOCOL_VERSION,
                window: 16
            },
            Ev::Status(Status::WifiUp),
            Ev::Status(Status::BrokerUp { session_present: false }),
        ]
    );
    assert_eq!(r.bridge.broker(), Some(("broker.local", 1883)));
    assert_eq!(r.bridge.network().map(|n| n.wifi_ssid.as_str()), Some("net"));
}

#[test]
fn connect_carries_client_id_and_will() {
    let mut r = Rig::<Std>::new();
    r.pump();
    r.bridge.handle_wifi(true, r.now);
    let mut c = config(PROTOCOL_VERSION);
    c.will = Some(Will {
        topic: "dead/bridge-test",
        payload: b"gone",
        qos: QoS::AtLeastOnce,
        retain: true,
    });
    r.request(&Request::Configure(c));
    r.bridge.handle_link_up(r.now);
    assert_eq!(
        r.broker_reads(),
        vec![Pk::Connect {
            client_id: "bridge-test".into(),
            clean: false,
            will: Some("dead/bridge-test".into())
        }]
    );
}

#[test]
fn qos1_puback_reaches_the_target_only_after_the_broker_puback() {
    let (mut r, _) = Rig::<Std>::connected(false);
    assert_eq!(
        r.request(&publish(7, "t/a", &[0, 255, 128], QoS::AtLeastOnce, true)),
        vec![]
    );
    let sent = r.broker_reads();
    let [Pk::Publish {
        topic,
        payload,
        qos: 1,
        retain: true,
        dup: false,
        pid: Some(pid),
    }] = &sent[..]
    else {
        panic!("{sent:?}")
    };
    assert_eq!((topic.as_str(), &payload[..]), ("t/a", &[0u8, 255, 128][..]));
    r.advance(100);
    assert_eq!(r.pump(), vec![], "no PubAck before the broker's");
    r.broker_sends(&Packet::PubAck(*pid));
    assert_eq!(r.pump(), vec![Ev::PubAck(7)]);
    assert_eq!(r.bridge.stats().published, 1);
}

#[test]
fn qos0_puback_once_written_to_the_broker() {
    let (mut r, _) = Rig::<Std>::connected(false);
    assert_eq!(r.request(&publish(8, "t/b", b"zero", QoS::AtMostOnce, false)), vec![]);
    let sent = r.broker_reads();
    assert!(
        matches!(
            &sent[..],
            [Pk::Publish {
                qos: 0,
                retain: false,
                pid: None,
                ..
            }]
        ),
        "{sent:?}"
    );
    assert_eq!(r.pump(), vec![Ev::PubAck(8)]);
}

#[test]
fn several_publications_in_flight_complete_in_any_order() {
    let (mut r, _) = Rig::<Std>::connected(false);
    for id in 1..=5 {
        r.request(&publish(id, "w", b"p", QoS::AtLeastOnce, false));
    }
    let pids: Vec<u16> = r
        .broker_reads()
        .into_iter()
        .filter_map(|p| match p {
            Pk::Publish { pid, .. } => pid,
            _ => None,
        })
        .collect();
    assert_eq!(pids.len(), 5, "a window of 5 in flight at once");
    for pid in pids.iter().rev() {
        r.broker_sends(&Packet::PubAck(*pid));
    }
    let mut acked: Vec<Ev> = r.pump();
    acked.sort_by_key(|e| std::format!("{e:?}"));
    assert_eq!(acked, (1..=5).map(Ev::PubAck).collect::<Vec<_>>());
}

#[test]
fn publications_are_queued_offline_and_sent_after_connect() {
    let mut r = Rig::<Std>::new();
    r.pump();
    r.bridge.handle_wifi(true, r.now);
    r.request(&Request::Configure(config(PROTOCOL_VERSION)));
    r.bridge.handle_link_failed(r.now, DownReason::Unreachable);
    r.request(&publish(1, "q", b"1", QoS::AtLeastOnce, false));
    let mut seen = vec![];
    r.advance(60_000);
    r.connect(true, &mut seen);
    let sent = r.broker_reads();
    assert!(matches!(&sent[..], [Pk::Publish { pid: Some(_), .. }]), "{sent:?}");
}

#[test]
fn a_duplicate_publication_id_is_published_once() {
    let (mut r, _) = Rig::<Std>::connected(false);
    r.request(&publish(5, "d", b"1", QoS::AtLeastOnce, false));
    r.request(&publish(5, "d", b"1", QoS::AtLeastOnce, false));
    let sent = r.broker_reads();
    assert_eq!(sent.len(), 1, "{sent:?}");
}

#[test]
fn wildcard_topics_qos2_and_long_filters_get_typed_errors() {
    let (mut r, _) = Rig::<Std>::connected(false);
    assert_eq!(
        r.request(&publish(1, "a/+/b", b"", QoS::AtLeastOnce, false)),
        vec![Ev::Error(1, ErrorKind::InvalidTopic)]
    );
    assert_eq!(
        r.request(&publish(2, "a/b", b"", QoS::Unknown(2), false)),
        vec![Ev::Error(2, ErrorKind::Unsupported)]
    );
    assert_eq!(
        r.request(&publish(3, "", b"", QoS::AtMostOnce, false)),
        vec![Ev::Error(3, ErrorKind::InvalidTopic)]
    );
    let long = "x".repeat(200);
    assert_eq!(
        r.request(&Request::Subscribe {
            id: 4,
            filter: &long,
            qos: QoS::AtMostOnce
        }),
        vec![Ev::Error(4, ErrorKind::TooLong)]
    );
    assert_eq!(
        r.request(&Request::Subscribe {
            id: 5,
            filter: "a/#/b",
            qos: QoS::AtMostOnce
        }),
        vec![Ev::Error(5, ErrorKind::InvalidTopic)]
    );
    assert_eq!(r.broker_reads(), vec![]);
}

#[test]
fn full_queue_refuses_with_queue_full_and_backpressure_until_a_publication_completes() {
    let mut r = Rig::<Small>::new();
    assert_eq!(
        r.pump(),
        vec![Ev::Ready {
            version: PROTOCOL_VERSION,
            window: 2
        }]
    );
    r.bridge.handle_wifi(true, r.now);
    r.request(&Request::Configure(config(PROTOCOL_VERSION)));
    assert_eq!(r.request(&publish(1, "f", b"1", QoS::AtLeastOnce, false)), vec![]);
    assert_eq!(r.request(&publish(2, "f", b"2", QoS::AtLeastOnce, false)), vec![]);
    assert_eq!(
        r.request(&publish(3, "f", b"3", QoS::AtLeastOnce, false)),
        vec![
            Ev::Error(3, ErrorKind::QueueFull),
            Ev::Status(Status::Backpressure { full: true })
        ]
    );
    assert_eq!(
        r.request(&publish(4, "f", b"4", QoS::AtLeastOnce, false)),
        vec![Ev::Error(4, ErrorKind::QueueFull)],
        "backpressure is reported once"
    );
    let full = BridgeState {
        wifi_up: true,
        broker: BrokerState::Unknown,
        queue_full: true,
    };
    assert_eq!(r.ping(5), full, "a pong repeats the state the statuses reported");
    let mut seen = vec![];
    r.connect(false, &mut seen);
    let first = r
        .broker_reads()
        .into_iter()
        .find_map(|p| match p {
            Pk::Publish { pid, .. } => pid,
            _ => None,
        })
        .expect("publish");
    r.broker_sends(&Packet::PubAck(first));
    let ev = r.pump();
    assert!(ev.contains(&Ev::Status(Status::Backpressure { full: false })), "{ev:?}");
    assert_eq!(r.bridge.stats().queue_high_water, 2);
    let room = BridgeState {
        broker: BrokerState::Up { session_present: false },
        queue_full: false,
        ..full
    };
    assert_eq!(r.ping(6), room);
    assert_eq!(r.request(&publish(3, "f", b"3", QoS::AtLeastOnce, false)), vec![]);
}

fn subscribe(r: &mut Rig<Std>, id: u16, filter: &'static str) {
    r.request(&Request::Subscribe {
        id,
        filter,
        qos: QoS::AtLeastOnce,
    });
    let sent = r.broker_reads();
    let [Pk::Subscribe { pid, filters }] = &sent[..] else {
        panic!("{sent:?}")
    };
    assert_eq!(filters, &vec![(filter.to_string(), 1)]);
    r.broker_sends(&Packet::SubAck(SubAck {
        packet_id: *pid,
        codes: &[1],
    }));
    assert_eq!(r.pump(), vec![Ev::SubAck(id, SubResult::Granted(QoS::AtLeastOnce))]);
}

#[test]
fn incoming_qos1_is_acknowledged_to_the_broker_only_after_the_target_acks() {
    let (mut r, _) = Rig::<Std>::connected(false);
    subscribe(&mut r, 1, "s/#");
    r.broker_sends(&broker_publish("s/x", &[1, 2, 3], Some(42), false));
    let ev = r.pump();
    let [Ev::Message {
        id,
        topic,
        payload,
        qos: QoS::AtLeastOnce,
        retain: false,
        dup: false,
    }] = &ev[..]
    else {
        panic!("{ev:?}")
    };
    assert_eq!((topic.as_str(), &payload[..]), ("s/x", &[1u8, 2, 3][..]));
    assert_eq!(r.broker_reads(), vec![], "no PUBACK before the target's ack");
    r.request(&Request::Ack { id: *id });
    assert_eq!(r.broker_reads(), vec![Pk::PubAck(42)]);
    assert_eq!(r.bridge.stats().delivered, 1);
}

#[test]
fn a_message_longer_than_the_target_takes_is_dropped_and_acknowledged_not_sent() {
    // The target would drop its frame: a QoS 1 delivery lost that way would be fetched again and again.
    let mut small = config(PROTOCOL_VERSION);
    small.max_message = 40;
    let (mut r, _) = Rig::<Std>::connected_with(small, false);
    subscribe(&mut r, 1, "s/#");
    // Encoded: tag, id, topic (1 + 3), payload (1 + 40), qos, retain, dup = 50 bytes, over 40.
    r.broker_sends(&broker_publish("s/x", &[7; 40], Some(5), false));
    assert_eq!(
        r.pump(),
        vec![Ev::TooLong(50)],
        "sent to a target that cannot take it, or not said"
    );
    assert_eq!(
        r.broker_reads(),
        vec![Pk::PubAck(5)],
        "left for the broker to send again"
    );
    assert_eq!(r.bridge.too_long(), 1);
    r.broker_sends(&broker_publish("s/y", &[7; 40], None, false));
    assert_eq!(r.pump(), vec![Ev::TooLong(50)]);
    assert_eq!(r.bridge.too_long(), 2);
    // 40 bytes fit.
    r.broker_sends(&broker_publish("s/x", &[7; 30], Some(6), false));
    let ev = r.pump();
    assert!(
        matches!(&ev[..], [Ev::Message { payload, .. }] if payload.len() == 30),
        "{ev:?}"
    );
    assert_eq!(r.bridge.too_long(), 2);
}

/// The target pings once a second, with these ids.
fn ping_every_second(r: &mut Rig<Std>, ids: core::ops::Range<u16>) {
    for id in ids {
        r.advance(1_000);
        r.request(&Request::Ping { id });
    }
}

/// The broker sends a QoS 1 message; returns the target's id of it.
fn deliver_one(r: &mut Rig<Std>, pid: u16, dup: bool) -> u16 {
    r.broker_sends(&broker_publish("s/x", b"m", Some(pid), dup));
    let ev = r.pump();
    let [Ev::Message { id, .. }] = ev[..] else {
        panic!("{ev:?}")
    };
    id
}

#[test]
fn a_delivery_unacknowledged_by_a_target_that_talks_on_is_fetched_again_by_a_reconnection() {
    // The message or the target's Ack was lost on the link: the broker sends it again only on a new connection.
    let (mut r, _) = Rig::<Std>::connected(false);
    let first = deliver_one(&mut r, 5, false);
    // The target goes on pinging (so it does not hold the link on the message) and never acknowledges it.
    ping_every_second(&mut r, 0..9);
    assert_eq!(r.broker_reads(), vec![], "not before ACK_TIMEOUT");
    r.advance(1_000);
    r.request(&Request::Ping { id: 9 });
    assert_eq!(r.broker_reads(), vec![Pk::Disconnect], "a clean disconnection: no will");
    assert_eq!(r.bridge.redelivery_reconnects(), 1);
    assert!(!r.bridge.is_link_up());
    let mut seen = r.pump();
    assert!(r.bridge.wants_link(r.now), "connects again at once");
    r.connect(true, &mut seen);
    let again = deliver_one(&mut r, 5, true);
    assert_ne!(again, first, "a new delivery");
    r.request(&Request::Ack { id: again });
    assert_eq!(r.broker_reads(), vec![Pk::PubAck(5)]);
    // Acknowledged: nothing more happens while the target talks on.
    ping_every_second(&mut r, 10..22);
    assert!(!r.broker_reads().contains(&Pk::Disconnect));
    assert_eq!(r.bridge.redelivery_reconnects(), 1);
}

#[test]
fn a_target_holding_a_message_or_a_clean_session_gets_no_reconnection() {
    // A target that has not taken the message holds the link: it sends nothing, however long.
    let (mut r, _) = Rig::<Std>::connected(false);
    deliver_one(&mut r, 5, false);
    for _ in 0..30 {
        r.advance(1_000);
    }
    assert!(!r.broker_reads().contains(&Pk::Disconnect));
    assert_eq!(r.bridge.redelivery_reconnects(), 0);
}

/// What the bridge sent the broker, keepalive pings answered and left out.
fn broker_reads_answering_pings(r: &mut Rig<Std>) -> Vec<Pk> {
    let mut sent = r.broker_reads();
    if sent.contains(&Pk::PingReq) {
        r.broker_sends(&Packet::PingResp);
        sent.retain(|p| *p != Pk::PingReq);
    }
    sent
}

#[test]
fn a_clean_session_gives_a_lost_delivery_up_instead_of_holding_the_brokers_window() {
    // A new connection would not bring the message back: the bridge acknowledges it, or every lost delivery would
    // hold one of the broker's messages in flight for this client until the connection ends.
    let mut clean = config(PROTOCOL_VERSION);
    clean.clean_session = true;
    let (mut r, _) = Rig::<Std>::connected_with(clean, false);
    let lost = deliver_one(&mut r, 5, false);
    let kept = deliver_one(&mut r, 6, false);
    ping_every_second(&mut r, 0..9);
    assert_eq!(broker_reads_answering_pings(&mut r), vec![], "not before ACK_TIMEOUT");
    r.advance(1_000);
    r.request(&Request::Ping { id: 9 });
    assert_eq!(
        broker_reads_answering_pings(&mut r),
        vec![Pk::PubAck(5)],
        "given up: acknowledged, no reconnection"
    );
    assert_eq!(
        (r.bridge.given_up_deliveries(), r.bridge.redelivery_reconnects()),
        (1, 0)
    );
    assert!(r.bridge.is_link_up());
    // A late Ack of it changes nothing; the next delivery is watched afresh, and acknowledged in time it stays.
    r.request(&Request::Ack { id: lost });
    assert_eq!(broker_reads_answering_pings(&mut r), vec![]);
    r.request(&Request::Ack { id: kept });
    assert_eq!(broker_reads_answering_pings(&mut r), vec![Pk::PubAck(6)]);
    for id in 10..30 {
        ping_every_second(&mut r, id..id + 1);
        assert_eq!(broker_reads_answering_pings(&mut r), vec![]);
    }
    assert!(r.bridge.is_link_up());
    assert_eq!(r.bridge.given_up_deliveries(), 1);
}

#[test]
fn an_ack_from_an_earlier_connection_does_not_acknowledge_a_reused_packet_id() {
    let (mut r, _) = Rig::<Std>::connected(true);
    r.broker_sends(&broker_publish("s/x", b"old", Some(5), false));
    let Ev::Message { id: old, .. } = r.pump()[0].clone() else {
        panic!()
    };
    r.bridge.handle_link_down(r.now);
    let mut seen = r.pump();
    assert_eq!(
        seen,
        vec![Ev::Status(Status::BrokerDown {
            reason: DownReason::Closed
        })]
    );
    r.advance(60_000);
    r.connect(true, &mut seen);
    r.broker_sends(&broker_publish("s/x", b"old", Some(5), true));
    let ev = r.pump();
    let [Ev::Message { id: new, dup: true, .. }] = ev[..] else {
        panic!("{ev:?}")
    };
    assert_ne!(old, new);
    r.request(&Request::Ack { id: old });
    assert_eq!(r.broker_reads(), vec![], "a stale ack acknowledges nothing");
    r.request(&Request::Ack { id: new });
    assert_eq!(r.broker_reads(), vec![Pk::PubAck(5)]);
}

#[test]
fn messages_wait_in_the_session_while_the_link_queue_is_full() {
    let (mut r, _) = Rig::<Std>::connected(false);
    subscribe(&mut r, 1, "f/#");
    let payload = [0xA5u8; 1000];
    let mut taken = 0;
    for i in 0..20u16 {
        let mut buf = vec![0u8; 2048];
        let n = v311::encode(&broker_publish("f/x", &payload, Some(100 + i), false), &mut buf).expect("enc");
        taken += r.bridge.handle_bytes(&buf[..n], r.now);
        let _ = r.bridge.poll(r.now);
    }
    assert!(r.bridge.port().tx_pending() <= 4096);
    assert!(
        taken < 20 * 1000,
        "the session stopped reading: the broker holds the rest"
    );
    // The target drains the link: everything taken so far arrives, none lost or duplicated.
    let ev = r.pump();
    let n = ev.iter().filter(|e| matches!(e, Ev::Message { .. })).count();
    assert!((2..20).contains(&n), "{n}");
}

#[test]
fn repeated_connection_failures_send_one_status_and_refusals_map_their_reason() {
    let mut r = Rig::<Std>::new();
    r.pump();
    r.bridge.handle_wifi(true, r.now);
    r.request(&Request::Configure(config(PROTOCOL_VERSION)));
    for _ in 0..3 {
        r.bridge.handle_link_failed(r.now, DownReason::Unreachable);
        r.advance(60_000);
    }
    assert_eq!(
        r.pump(),
        vec![Ev::Status(Status::BrokerDown {
            reason: DownReason::Unreachable
        })]
    );
    r.bridge.handle_link_up(r.now);
    r.broker_reads();
    r.broker_sends(&Packet::ConnAck(ConnAck {
        session_present: false,
        code: ConnectReturnCode::BadUserNameOrPassword,
    }));
    assert_eq!(
        r.pump(),
        vec![Ev::Status(Status::BrokerDown {
            reason: DownReason::RefusedCredentials
        })]
    );
    let retry = r.bridge.poll_at().expect("a retry is scheduled");
    assert!(
        retry.saturating_since(r.now) >= Duration::from_secs(5),
        "backed off, not a storm"
    );
}

#[test]
fn a_half_open_connection_is_reported_as_keepalive_timeout() {
    let (mut r, _) = Rig::<Std>::connected(false);
    let mut pinged = false;
    for _ in 0..40 {
        r.advance(500);
        pinged |= r.broker_reads().contains(&Pk::PingReq);
    }
    assert!(pinged);
    assert_eq!(
        r.pump(),
        vec![Ev::Status(Status::BrokerDown {
            reason: DownReason::KeepaliveTimeout
        })]
    );
    assert!(!r.bridge.is_link_up());
}

#[test]
fn garbage_from_the_broker_is_a_protocol_error_and_a_reconnect() {
    let (mut r, _) = Rig::<Std>::connected(false);
    r.bridge.handle_bytes(&[0xF0, 0x00, 0xFF, 0xFF], r.now);
    assert_eq!(
        r.pump(),
        vec![Ev::Status(Status::BrokerDown {
            reason: DownReason::ProtocolError
        })]
    );
    r.advance(60_000);
    assert!(r.bridge.wants_link(r.now));
}

#[test]
fn wifi_down_ends_the_connection_with_no_network() {
    let (mut r, _) = Rig::<Std>::connected(false);
    r.bridge.handle_wifi(false, r.now);
    assert_eq!(
        r.pump(),
        vec![
            Ev::Status(Status::WifiDown),
            Ev::Status(Status::BrokerDown {
                reason: DownReason::NoNetwork
            })
        ]
    );
    r.advance(60_000);
    assert!(!r.bridge.wants_link(r.now), "no connection attempts without WiFi");
}

#[test]
fn a_pong_carries_the_state_of_the_statuses_before_it() {
    let (mut r, _) = Rig::<Std>::connected(false);
    let up = BridgeState {
        wifi_up: true,
        broker: BrokerState::Up { session_present: false },
        queue_full: false,
    };
    assert_eq!(r.ping(1), up);
    r.bridge.handle_wifi(false, r.now);
    // The session hears of the lost connection at the bridge's next poll, after the ping is answered.
    let wifi_down = BridgeState { wifi_up: false, ..up };
    assert_eq!(
        r.request(&Request::Ping { id: 2 }),
        vec![
            Ev::Status(Status::WifiDown),
            Ev::Pong(2, wifi_down),
            Ev::Status(Status::BrokerDown {
                reason: DownReason::NoNetwork
            }),
        ]
    );
    let down = BridgeState {
        broker: BrokerState::Down {
            reason: DownReason::NoNetwork,
        },
        ..wifi_down
    };
    assert_eq!(r.ping(3), down);
    // A target that restarts without resetting the bridge configures it again: the connection goes on, and the
    // statuses and pongs say its session is there.
    r.bridge.handle_wifi(true, r.now);
    r.advance(60_000);
    let mut seen = r.pump();
    r.connect(false, &mut seen);
    assert_eq!(r.ping(4), up);
    let seen = r.request(&Request::Configure(config(PROTOCOL_VERSION)));
    let kept = BrokerState::Up { session_present: true };
    assert_eq!(
        seen,
        vec![
            Ev::Status(Status::WifiUp),
            Ev::Status(Status::BrokerUp { session_present: true })
        ]
    );
    assert_eq!(r.ping(5), BridgeState { broker: kept, ..up });
}

#[test]
fn time_comes_from_the_wall_clock_the_runner_supplies_and_stats_count_frames() {
    let mut r = Rig::<Std>::new();
    r.pump();
    assert_eq!(r.request(&Request::TimeRequest), vec![Ev::Time(None)]);
    r.bridge.set_wall_clock(r.now, 1_700_000_000_000);
    r.advance(1_500);
    assert_eq!(
        r.request(&Request::TimeRequest),
        vec![Ev::Time(Some(1_700_000_001_500))]
    );
    r.bridge.set_link_resyncs(3);
    let ev = r.request(&Request::StatsRequest);
    let [Ev::Stats(s)] = ev[..] else { panic!("{ev:?}") };
    assert_eq!((s.frames_rx, s.frames_tx, s.resyncs), (3, 3, 3));
}

#[test]
fn a_damaged_frame_is_counted_and_the_next_one_taken() {
    let mut r = Rig::<Std>::new();
    r.pump();
    for b in [0x05u8, 0x01, 0x77, 0x00] {
        assert!(r.bridge.port().rx(b));
    }
    assert_eq!(r.request(&Request::Ping { id: 1 }), vec![Ev::Pong(1, UNCONFIGURED)]);
    let ev = r.request(&Request::StatsRequest);
    let [Ev::Stats(s)] = ev[..] else { panic!("{ev:?}") };
    assert_eq!(s.frame_errors, 1);
}

#[test]
fn the_same_configuration_keeps_the_session_and_another_replaces_it() {
    let (mut r, _) = Rig::<Std>::connected(false);
    r.request(&publish(9, "k", b"1", QoS::AtLeastOnce, false));
    r.broker_reads();
    assert_eq!(
        r.request(&Request::Configure(config(PROTOCOL_VERSION))),
        vec![
            Ev::Status(Status::WifiUp),
            Ev::Status(Status::BrokerUp { session_present: true })
        ]
    );
    assert!(r.bridge.is_link_up(), "kept");
    let mut other = config(PROTOCOL_VERSION);
    other.client_id = "other";
    let ev = r.request(&Request::Configure(other));
    assert_eq!(ev[0], Ev::Error(9, ErrorKind::Refused), "{ev:?}");
    assert!(ev.contains(&Ev::Status(Status::WifiUp)));
}

#[test]
fn a_copy_of_a_subscribe_still_waiting_for_the_broker_is_not_passed_on() {
    // The target sends a request again when its answer is late: the copy must not become a second SUBSCRIBE.
    let (mut r, _) = Rig::<Std>::connected(false);
    let req = Request::Subscribe {
        id: 4,
        filter: "d/#",
        qos: QoS::AtLeastOnce,
    };
    assert_eq!(r.request(&req), vec![]);
    assert_eq!(r.request(&req), vec![]);
    let sent = r.broker_reads();
    let [Pk::Subscribe { pid, .. }] = sent[..] else {
        panic!("{sent:?}")
    };
    r.broker_sends(&Packet::SubAck(SubAck {
        packet_id: pid,
        codes: &[1],
    }));
    assert_eq!(r.pump(), vec![Ev::SubAck(4, SubResult::Granted(QoS::AtLeastOnce))]);
    // Answered: a later copy (that answer was lost on the link) is a new request, answered again.
    r.request(&req);
    assert!(matches!(r.broker_reads()[..], [Pk::Subscribe { .. }]));
    // An unsubscribe's copy likewise.
    let unsub = Request::Unsubscribe { id: 5, filter: "d/#" };
    r.request(&unsub);
    r.request(&unsub);
    let unsubs = r
        .broker_reads()
        .into_iter()
        .filter(|p| matches!(p, Pk::Unsubscribe { .. }))
        .count();
    assert_eq!(unsubs, 1);
}

#[test]
fn unsubscribe_is_answered_after_the_broker_unsuback() {
    let (mut r, _) = Rig::<Std>::connected(false);
    subscribe(&mut r, 1, "u/#");
    r.request(&Request::Unsubscribe { id: 2, filter: "u/#" });
    let sent = r.broker_reads();
    let [Pk::Unsubscribe { pid }] = sent[..] else {
        panic!("{sent:?}")
    };
    assert_eq!(r.pump(), vec![]);
    r.broker_sends(&Packet::UnsubAck(pid));
    assert_eq!(r.pump(), vec![Ev::UnsubAck(2)]);
}

/// Sends pings without reading the bridge's answers, until the bridge holds one on the link: its send queue and
/// then its control queue are full.
fn stall_with_pings(r: &mut Rig<Std>) {
    for id in 1..5000u16 {
        if r.target.send(&Request::Ping { id }).is_err() {
            break;
        }
        while r.target.tx_ready() && r.bridge.port().received().is_none() {
            let b = r.target.tx_next().expect("byte");
            assert!(r.bridge.port().rx(b));
        }
        let _ = r.bridge.poll(r.now);
        if r.bridge.port().received().is_some() {
            return;
        }
    }
    panic!("the bridge never held a request");
}

#[test]
fn the_last_wifi_state_reaches_a_stalled_target_even_past_a_full_control_queue() {
    let (mut r, _) = Rig::<Std>::connected(false);
    stall_with_pings(&mut r);
    for up in [false, true, false, true, false, true] {
        r.bridge.handle_wifi(up, r.now);
    }
    let ev = r.pump();
    let pongs = ev.iter().filter(|e| matches!(e, Ev::Pong(..))).count();
    let wifi: Vec<_> = ev
        .iter()
        .filter(|e| matches!(e, Ev::Status(Status::WifiUp | Status::WifiDown)))
        .collect();
    assert!(pongs > 100, "{pongs}");
    assert_eq!(wifi.last(), Some(&&Ev::Status(Status::WifiUp)), "{wifi:?}");
    assert!(wifi.len() < 6, "changes beyond the queue's room were merged: {wifi:?}");
    // The ping that was held is answered too, and the link carries requests again.
    let ev = r.request(&Request::Ping { id: 60_000 });
    let [Ev::Pong(60_000, state)] = ev[..] else {
        panic!("{ev:?}")
    };
    assert!(state.wifi_up, "{state:?}");
}

#[test]
fn a_configuration_refuses_more_dropped_publications_than_the_control_queue_holds() {
    // 12 publications in the replaced session, with 8 entries of control queue: all 12 are refused, once each.
    let (mut r, _) = Rig::<Std>::connected(false);
    const TOPICS: [&str; 12] = ["p0", "p1", "p2", "p3", "p4", "p5", "p6", "p7", "p8", "p9", "p10", "p11"];
    for (i, topic) in TOPICS.iter().enumerate() {
        assert_eq!(
            r.request(&publish(i as u16 + 1, topic, b"x", QoS::AtLeastOnce, false)),
            vec![]
        );
    }
    let mut other = config(PROTOCOL_VERSION);
    other.client_id = "other";
    let ev = r.request(&Request::Configure(other));
    let mut refused: Vec<u16> = ev
        .iter()
        .filter_map(|e| match e {
            Ev::Error(id, ErrorKind::Refused) => Some(*id),
            _ => None,
        })
        .collect();
    refused.sort_unstable();
    assert_eq!(refused, (1..=12).collect::<Vec<u16>>(), "{ev:?}");
    assert!(ev.contains(&Ev::Status(Status::WifiUp)), "{ev:?}");
    // The new session takes publications with the same ids.
    assert_eq!(r.request(&publish(1, "q", b"y", QoS::AtLeastOnce, false)), vec![]);
}

#[test]
fn names_within_the_links_limits_but_over_the_sessions_are_refused_with_too_long() {
    // The link allows 256-byte filters and will topics and 128-byte client ids and user names; the MQTT session
    // stores 128 and 64 (resilient-mqtt's MAX_* constants). Between the two the target gets a typed error.
    let filter = "f".repeat(200);
    let (mut r, _) = Rig::<Std>::connected(false);
    assert_eq!(
        r.request(&Request::Unsubscribe { id: 3, filter: &filter }),
        vec![Ev::Error(3, ErrorKind::TooLong)]
    );
    let long_id = "c".repeat(100);
    let long_topic = "w".repeat(200);
    let mut c = config(PROTOCOL_VERSION);
    c.client_id = &long_id;
    assert_eq!(
        r.request(&Request::Configure(c)),
        vec![Ev::Error(0, ErrorKind::TooLong)]
    );
    let mut c = config(PROTOCOL_VERSION);
    c.username = Some(&long_id);
    assert_eq!(
        r.request(&Request::Configure(c)),
        vec![Ev::Error(0, ErrorKind::TooLong)]
    );
    let mut c = config(PROTOCOL_VERSION);
    c.will = Some(Will {
        topic: &long_topic,
        payload: b"gone",
        qos: QoS::AtLeastOnce,
        retain: false,
    });
    assert_eq!(
        r.request(&Request::Configure(c)),
        vec![Ev::Error(0, ErrorKind::TooLong)]
    );
    // The refused configurations left the session as it was.
    assert!(r.bridge.is_link_up());
}

#[test]
fn messages_leave_the_send_queue_room_for_the_answers_a_target_waits_for() {
    let (mut r, _) = Rig::<Std>::connected(false);
    subscribe(&mut r, 1, "#");
    // The largest messages the link carries, while the target reads nothing: they stop short of the reserve.
    let topic = "t".repeat(protocol::message::MAX_TOPIC_LEN);
    let payload = [0x5Au8; protocol::message::MAX_PAYLOAD_LEN];
    for i in 0..6u16 {
        let mut buf = vec![0u8; 4096];
        let n = v311::encode(&broker_publish(&topic, &payload, Some(200 + i), false), &mut buf).expect("enc");
        r.bridge.handle_bytes(&buf[..n], r.now);
        let _ = r.bridge.poll(r.now);
    }
    let free = 4096 - r.bridge.port().tx_pending();
    assert!(free >= super::ANSWER_RESERVE, "{free} bytes free");
    // A target with one of each request outstanding gets every one taken (none holds the link) and answered.
    for req in [Request::Ping { id: 7 }, Request::TimeRequest, Request::StatsRequest] {
        r.target.send(&req).expect("target queue");
        while let Some(b) = r.target.tx_next() {
            assert!(r.bridge.port().rx(b), "the bridge held the link");
        }
        let _ = r.bridge.poll(r.now);
        assert!(r.bridge.port().received().is_none(), "{req:?} not taken");
    }
    let ev = r.pump();
    assert!(ev.iter().any(|e| matches!(e, Ev::Pong(7, _))), "{ev:?}");
    assert!(ev.iter().any(|e| matches!(e, Ev::Time(_))));
    assert!(ev.iter().any(|e| matches!(e, Ev::Stats(_))));
}
