//! The driver's core, state by event, in virtual time: frames are put into and taken out of its port by hand.

use embassy_time::{Duration, Instant};
use protocol::link::LinkIo;
use protocol::{
    BridgeState, BrokerState, DownReason, ErrorKind, Event as BridgeEvent, FrameDecoder, Limits, Request,
    Status as BStatus, SubResult, PROTOCOL_VERSION,
};
use target_driver::{Config, Core, Error, Event, Outcome, QoS, ResetReason, Status, Token};

type C = Core<'static>;

fn config() -> Config<'static> {
    Config::new("ssid", "pw", "broker", 1883, "id")
}

fn at(ms: u64) -> Instant {
    Instant::from_millis(ms)
}

/// Feeds one bridge event into the core (of any sizes) as the link would deliver it.
fn deliver<
    const T: usize,
    const P: usize,
    const PUBS: usize,
    const SUBS: usize,
    const TX: usize,
    const RX: usize,
    const POOL: usize,
>(
    core: &mut Core<'static, T, P, PUBS, SUBS, TX, RX, POOL>,
    ev: &BridgeEvent<'_>,
    now: Instant,
) {
    let mut buf = [0u8; 600];
    let n = protocol::encode(ev, &mut buf).expect("encode");
    for &b in &buf[..n] {
        assert!(core.port().rx(b), "port refused a byte");
    }
    core.handle_frame(now);
}

/// Everything the core has queued for the bridge, decoded to a short text each.
fn sent(core: &mut C) -> Vec<String> {
    let mut dec: FrameDecoder<600> = FrameDecoder::new();
    let mut out = Vec::new();
    while let Some(b) = core.port().tx_next() {
        if let protocol::Feed::Frame { message, .. } = dec.feed(&[b]) {
            out.push(match Request::decode(message).expect("request") {
                Request::Configure(_) => "configure".to_string(),
                Request::Publish { id, topic, .. } => format!("publish {id} {topic}"),
                Request::Subscribe { filter, .. } => format!("subscribe {filter}"),
                Request::Unsubscribe { filter, .. } => format!("unsubscribe {filter}"),
                Request::Ack { id } => format!("ack {id}"),
                Request::Ping { .. } => "ping".to_string(),
                Request::TimeRequest => "time".to_string(),
                Request::StatsRequest => "stats".to_string(),
            });
        }
    }
    out
}

fn ready(version: u16) -> BridgeEvent<'static> {
    BridgeEvent::Ready {
        version,
        limits: Limits {
            max_frame: 1400,
            max_topic: 256,
            max_payload: 1024,
            window: 8,
        },
    }
}

/// A message from the bridge, neither retained nor a duplicate.
fn message<'a>(id: u16, topic: &'a str, payload: &'a [u8], qos: QoS) -> BridgeEvent<'a> {
    BridgeEvent::Message {
        id,
        topic,
        payload,
        qos,
        retain: false,
        dup: false,
    }
}

/// The state a configured bridge with WiFi and the broker up, and room in its queue, answers a ping with.
const UP: BridgeState = BridgeState {
    wifi_up: true,
    broker: BrokerState::Up { session_present: false },
    queue_full: false,
};

/// An answer to a ping (the core does not look at a Pong's id: any frame answers the watchdog).
fn pong(state: BridgeState) -> BridgeEvent<'static> {
    BridgeEvent::Pong { id: 0, state }
}

fn statuses(core: &mut C) -> Vec<Status> {
    let mut buf = [0u8; 256];
    let mut out = Vec::new();
    while let Some(Event::Status(s)) = core.take_event(&mut buf) {
        out.push(s);
    }
    out
}

/// A core whose bridge came up at 200 ms and was configured.
fn up() -> C {
    up_with(config())
}

/// A core with this configuration, its bridge up and configured at 200 ms: the bridge answered the configuration
/// with its first status, WiFi down.
fn up_with(config: Config<'static>) -> C {
    let mut core = C::new(config, at(0));
    assert!(!core.rst_level(), "start-up must hold the bridge in reset");
    core.handle_timeout(at(100));
    assert!(core.rst_level());
    assert!(core.take_link_reset());
    deliver(&mut core, &ready(PROTOCOL_VERSION), at(200));
    assert_eq!(sent(&mut core), ["configure"]);
    deliver(&mut core, &BridgeEvent::Status(BStatus::WifiDown), at(200));
    statuses(&mut core);
    core
}

#[test]
fn a_new_core_holds_the_bridge_in_reset_and_reports_it() {
    let mut core = C::new(config(), at(0));
    assert!(!core.rst_level() && !core.link_enabled() && !core.bridge_up());
    assert_eq!(
        core.poll_at(),
        at(0) + config().reset_pulse,
        "the pulse's end is the first deadline"
    );
    assert_eq!(statuses(&mut core), [Status::BridgeReset(ResetReason::StartUp)]);
    assert_eq!(core.stats().resets, 1);
    // Nothing goes out before the bridge says it is ready.
    core.flush();
    assert!(sent(&mut core).is_empty());
}

#[test]
fn periods_of_duration_max_mean_never_not_a_panic() {
    let mut config = config();
    (config.watchdog, config.ping_timeout, config.answer_timeout) = (Duration::MAX, Duration::MAX, Duration::MAX);
    config.max_reset_backoff = Duration::MAX;
    let mut core = up_with(config);
    assert_eq!(core.poll_at(), Instant::MAX, "no deadline while the bridge is up");
    core.handle_timeout(at(1_000_000_000));
    assert!(core.bridge_up() && sent(&mut core).is_empty(), "no ping, no reset");
    // A failed attempt's backoff (capped by max_reset_backoff) does not overflow either.
    core.handle_link_error(at(1_000_000_000));
    assert!(!core.bridge_up());
}

#[test]
fn start_up_pulses_reset_then_configures_on_ready() {
    let mut core = up();
    assert!(core.bridge_up());
    assert_eq!(core.stats().resets, 1);
    assert!(sent(&mut core).is_empty());
}

#[test]
fn nothing_is_sent_before_the_bridge_is_ready() {
    let mut core = C::new(config(), at(0));
    let t = core.publish("a/b", b"x", QoS::AtLeastOnce, false).expect("accepted");
    core.subscribe("c/#", QoS::AtMostOnce).expect("accepted");
    assert!(sent(&mut core).is_empty());
    core.handle_timeout(at(100));
    deliver(&mut core, &ready(PROTOCOL_VERSION), at(150));
    assert_eq!(
        sent(&mut core),
        ["configure", "subscribe c/#", format!("publish {} a/b", t.0).as_str()]
    );
}

#[test]
fn qos1_publication_completes_only_on_its_puback() {
    let mut core = up();
    let t = core.publish("a/b", b"x", QoS::AtLeastOnce, false).expect("accepted");
    assert_eq!(sent(&mut core), [format!("publish {} a/b", t.0)]);
    assert_eq!(core.outcome(t), None);
    deliver(
        &mut core,
        &BridgeEvent::PubAck {
            id: t.0.wrapping_add(7),
        },
        at(300),
    );
    assert_eq!(core.outcome(t), None, "another id's ack completed it");
    deliver(&mut core, &BridgeEvent::PubAck { id: t.0 }, at(310));
    assert_eq!(core.outcome(t), Some(Ok(Outcome::Published)));
}

#[test]
fn bridge_reset_resends_unacked_qos1_and_replays_subscriptions_but_not_qos0() {
    let mut core = up();
    core.subscribe("cmd/+", QoS::AtLeastOnce).expect("sub");
    let t1 = core.publish("a", b"1", QoS::AtLeastOnce, false).expect("p1");
    let t2 = core.publish("b", b"2", QoS::AtLeastOnce, false).expect("p2");
    let t0 = core.publish("c", b"0", QoS::AtMostOnce, false).expect("p0");
    assert_eq!(sent(&mut core).len(), 4);
    assert_eq!(
        core.outcome(t0),
        None,
        "QoS 0 completes when the bridge confirms it, not when queued"
    );
    deliver(&mut core, &BridgeEvent::PubAck { id: t1.0 }, at(300));
    // The bridge goes silent: watchdog ping at 300 + 2000, no answer within 1 s: a second ping (the first or its
    // answer may have been lost), no answer within 1 s: reset.
    core.handle_timeout(at(2300));
    assert_eq!(sent(&mut core), ["ping"]);
    core.handle_timeout(at(3300));
    assert!(core.rst_level(), "reset after one unanswered ping");
    assert_eq!(sent(&mut core), ["ping"]);
    core.handle_timeout(at(4300));
    assert!(!core.rst_level());
    assert!(statuses(&mut core).contains(&Status::BridgeReset(ResetReason::Unresponsive)));
    assert_eq!(core.stats().pings, 2);
    core.handle_timeout(at(4400));
    deliver(&mut core, &ready(PROTOCOL_VERSION), at(4500));
    assert_eq!(
        sent(&mut core),
        ["configure", "subscribe cmd/+", format!("publish {} b", t2.0).as_str()]
    );
    assert_eq!(core.stats().resent, 1);
    assert_eq!(core.outcome(t2), None);
    assert_eq!(
        core.outcome(t0),
        Some(Err(Error::BridgeReset)),
        "a QoS 0 publication in flight must end, not hang"
    );
}

#[test]
fn resent_publications_keep_the_order_they_were_published_in() {
    let mut core = up();
    let t1 = core.publish("a", b"1", QoS::AtLeastOnce, false).expect("p1");
    let t2 = core.publish("b", b"2", QoS::AtLeastOnce, false).expect("p2");
    let t3 = core.publish("c", b"3", QoS::AtLeastOnce, false).expect("p3");
    deliver(&mut core, &BridgeEvent::PubAck { id: t1.0 }, at(300));
    // Takes the entry t1 left free, before t2 and t3 in the table, after them in time.
    let t4 = core.publish("d", b"4", QoS::AtLeastOnce, false).expect("p4");
    assert_eq!(sent(&mut core).len(), 4);
    deliver(&mut core, &ready(PROTOCOL_VERSION), at(400));
    assert_eq!(
        sent(&mut core),
        [
            "configure".to_string(),
            format!("publish {} b", t2.0),
            format!("publish {} c", t3.0),
            format!("publish {} d", t4.0),
        ]
    );
    assert_eq!(core.stats().resent, 3);
}

#[test]
fn qos0_publication_completes_on_the_bridges_confirmation() {
    let mut core = up();
    let t = core.publish("a", b"0", QoS::AtMostOnce, false).expect("p");
    assert_eq!(sent(&mut core), [format!("publish {} a", t.0)]);
    assert_eq!(core.outcome(t), None);
    deliver(&mut core, &BridgeEvent::PubAck { id: t.0 }, at(300));
    assert_eq!(core.outcome(t), Some(Ok(Outcome::Published)));
}

#[test]
fn any_frame_answers_the_watchdog() {
    let mut core = up();
    core.handle_timeout(at(2200));
    assert_eq!(sent(&mut core), ["ping"]);
    deliver(&mut core, &BridgeEvent::Status(BStatus::WifiUp), at(2500));
    core.handle_timeout(at(3300));
    assert!(core.rst_level(), "reset although the bridge answered");
}

#[test]
fn a_status_lost_on_the_link_is_reported_from_the_next_pong() {
    let mut core = up();
    // The bridge's WifiUp and BrokerUp after the configuration were lost: the watchdog's ping brings its state.
    core.handle_timeout(at(200) + config().watchdog);
    assert_eq!(sent(&mut core), ["ping"]);
    deliver(&mut core, &pong(UP), at(2300));
    assert_eq!(
        statuses(&mut core),
        [Status::WifiUp, Status::BrokerUp { session_present: false }]
    );
    // What the application was told is not told again: the same state, or a status that repeats it.
    deliver(&mut core, &pong(UP), at(2400));
    deliver(&mut core, &BridgeEvent::Status(BStatus::WifiUp), at(2500));
    assert_eq!(statuses(&mut core), []);
    // A change is, and a full queue holds publications.
    let down = BridgeState {
        broker: BrokerState::Down {
            reason: DownReason::KeepaliveTimeout,
        },
        queue_full: true,
        ..UP
    };
    deliver(&mut core, &pong(down), at(2600));
    assert_eq!(
        statuses(&mut core),
        [
            Status::BrokerDown(DownReason::KeepaliveTimeout),
            Status::QueueFull(true)
        ]
    );
    assert_eq!(core.publish("a", b"1", QoS::AtLeastOnce, false), Err(Error::WouldBlock));
    // Another reason is a change too; the room comes back with a status that repeats nothing.
    let closed = BStatus::BrokerDown {
        reason: DownReason::Closed,
    };
    deliver(&mut core, &BridgeEvent::Status(closed), at(2700));
    deliver(
        &mut core,
        &BridgeEvent::Status(BStatus::Backpressure { full: false }),
        at(2800),
    );
    assert_eq!(
        statuses(&mut core),
        [Status::BrokerDown(DownReason::Closed), Status::QueueFull(false)]
    );
    let t = core.publish("a", b"1", QoS::AtLeastOnce, false).expect("room again");
    assert_eq!(sent(&mut core), [format!("publish {} a", t.0)]);
    // A restarted bridge reports its state anew, and the application hears all of it again.
    deliver(&mut core, &ready(PROTOCOL_VERSION), at(2900));
    statuses(&mut core);
    deliver(&mut core, &BridgeEvent::Status(BStatus::WifiUp), at(3000));
    assert_eq!(statuses(&mut core), [Status::WifiUp]);
}

#[test]
fn a_damaged_frame_from_the_bridge_brings_a_ping_at_once() {
    let mut core = up();
    // A status whose frame took a bit error on the way.
    let mut frame = [0u8; 16];
    let n = protocol::encode(&BridgeEvent::Status(BStatus::WifiUp), &mut frame).expect("encode");
    frame[1] ^= 0x10;
    for &b in &frame[..n] {
        assert!(core.port().rx(b));
    }
    core.handle_frame(at(300));
    assert_eq!(core.stats().frame_errors, 1);
    assert_eq!(sent(&mut core), ["ping"], "no ping before the watchdog's period");
    assert_eq!(core.stats().pings, 1);
    deliver(&mut core, &pong(UP), at(310));
    assert_eq!(
        statuses(&mut core),
        [Status::WifiUp, Status::BrokerUp { session_present: false }]
    );
    // No error since: no ping until the watchdog's.
    core.handle_frame(at(400));
    core.handle_timeout(at(400));
    assert!(sent(&mut core).is_empty());
}

#[test]
fn a_configuration_lost_on_the_link_is_sent_again_until_the_bridge_answers_it() {
    let configured = || {
        let mut core = C::new(config(), at(0));
        core.handle_timeout(at(100));
        deliver(&mut core, &ready(PROTOCOL_VERSION), at(200));
        assert_eq!(sent(&mut core), ["configure"]);
        core
    };
    // Nothing answers it (a pong is no answer): the first answer check (5 s after the Ready) ages it, the second
    // sends it again. Without that, an application that waits for the broker would wait for ever.
    let mut core = configured();
    assert!(run_answering_pings(&mut core, 300, 10_100, UP).is_empty());
    assert_eq!(run_answering_pings(&mut core, 10_200, 10_200, UP), ["configure"]);
    // Answered with the bridge's state: not again.
    deliver(&mut core, &BridgeEvent::Status(BStatus::WifiUp), at(10_300));
    assert!(run_answering_pings(&mut core, 10_400, 30_000, UP).is_empty());
    assert!(core.bridge_up());
    // A refusal is an answer too: not sent again (the application has the refusal as a status).
    let mut core = configured();
    let kind = ErrorKind::Unsupported;
    deliver(&mut core, &BridgeEvent::Error { id: 0, kind }, at(300));
    assert!(statuses(&mut core).contains(&Status::ConfigurationRefused(kind)));
    assert!(run_answering_pings(&mut core, 400, 30_000, UP).is_empty());
}

#[test]
fn a_bridge_restarting_by_itself_is_restored() {
    let mut core = up();
    let t = core.publish("a", b"1", QoS::AtLeastOnce, false).expect("p");
    sent(&mut core);
    deliver(&mut core, &ready(PROTOCOL_VERSION), at(400));
    assert!(statuses(&mut core).contains(&Status::BridgeReset(ResetReason::Restarted)));
    assert_eq!(sent(&mut core), ["configure".to_string(), format!("publish {} a", t.0)]);
}

#[test]
fn another_protocol_version_is_refused_and_retried_with_backoff() {
    let mut core = C::new(config(), at(0));
    core.handle_timeout(at(100));
    deliver(&mut core, &ready(PROTOCOL_VERSION + 1), at(150));
    assert!(statuses(&mut core).contains(&Status::VersionMismatch {
        bridge: PROTOCOL_VERSION + 1
    }));
    assert!(sent(&mut core).is_empty(), "configured a bridge of another version");
    let first_retry = core.poll_at();
    assert!(first_retry > at(150 + 250), "no pause before the retry");
    // The pauses double.
    core.handle_timeout(first_retry);
    core.handle_timeout(core.poll_at()); // end of the reset pulse
    let t = core.poll_at(); // ready deadline
    core.handle_timeout(t);
    assert!(core.poll_at() - t > first_retry - at(150));
}

#[test]
fn queue_full_holds_publications_until_the_bridge_has_room() {
    let mut core = up();
    let t = core.publish("a", b"1", QoS::AtLeastOnce, false).expect("p");
    sent(&mut core);
    deliver(
        &mut core,
        &BridgeEvent::Error {
            id: t.0,
            kind: ErrorKind::QueueFull,
        },
        at(300),
    );
    assert_eq!(core.publish("b", b"2", QoS::AtLeastOnce, false), Err(Error::WouldBlock));
    assert!(sent(&mut core).is_empty());
    deliver(
        &mut core,
        &BridgeEvent::Status(BStatus::Backpressure { full: false }),
        at(400),
    );
    assert_eq!(sent(&mut core), [format!("publish {} a", t.0)]);
    assert_eq!(core.outcome(t), None, "a refused-for-room publication must not fail");
}

#[test]
fn publications_held_for_room_go_again_when_the_room_status_is_lost() {
    let mut core = up();
    let refuse = |core: &mut C, id: u16, t: u64| {
        let kind = ErrorKind::QueueFull;
        deliver(core, &BridgeEvent::Error { id, kind }, at(t));
    };
    let a = core.publish("a", b"1", QoS::AtLeastOnce, false).expect("a");
    let b = core.publish("b", b"2", QoS::AtLeastOnce, false).expect("b");
    assert_eq!(sent(&mut core).len(), 2);
    refuse(&mut core, b.0, 300);
    // The bridge's Backpressure { full: false } never comes; a's PubAck says there is room again.
    deliver(&mut core, &BridgeEvent::PubAck { id: a.0 }, at(400));
    assert_eq!(sent(&mut core), [format!("publish {} b", b.0)]);
    // Refused again, and nothing more from the bridge (its pongs say the queue is full): the answer check (5 s
    // after the Ready) tries again.
    refuse(&mut core, b.0, 500);
    let full = BridgeState { queue_full: true, ..UP };
    assert!(run_answering_pings(&mut core, 600, 5_100, full).is_empty());
    assert_eq!(
        run_answering_pings(&mut core, 5_200, 5_200, full),
        [format!("publish {} b", b.0)]
    );
    assert_eq!(core.outcome(b), None);
}

#[test]
fn other_refusals_fail_the_publication_with_the_reason() {
    let mut core = up();
    let t = core.publish("a", b"1", QoS::AtLeastOnce, false).expect("p");
    deliver(
        &mut core,
        &BridgeEvent::Error {
            id: t.0,
            kind: ErrorKind::TooLong,
        },
        at(300),
    );
    assert_eq!(core.outcome(t), Some(Err(Error::Refused(ErrorKind::TooLong))));
}

#[test]
fn the_id_0_names_no_operation_whatever_the_bridge_or_the_application_says() {
    // A free entry of the driver's tables carries the id 0: no acknowledgement and no token may reach one.
    let mut core = up();
    let t = core.publish("a", b"1", QoS::AtLeastOnce, false).expect("p");
    assert_eq!(sent(&mut core).len(), 1);
    deliver(&mut core, &BridgeEvent::PubAck { id: 0 }, at(300));
    deliver(
        &mut core,
        &BridgeEvent::SubAck {
            id: 0,
            result: SubResult::Granted(QoS::AtLeastOnce),
        },
        at(301),
    );
    deliver(&mut core, &BridgeEvent::UnsubAck { id: 0 }, at(302));
    assert_eq!(core.outcome(Token(0)), None);
    assert!(!core.in_flight(Token(0)));
    assert!(core.in_flight(t) && core.outcome(t).is_none());
    // The other entries are still free, and the publication still completes on its own acknowledgement.
    for i in 1..target_driver::DEFAULT_PUBS {
        core.publish("b", &[i as u8], QoS::AtLeastOnce, false).expect("room");
    }
    assert_eq!(core.publish("b", b"x", QoS::AtLeastOnce, false), Err(Error::WouldBlock));
    deliver(&mut core, &BridgeEvent::PubAck { id: t.0 }, at(310));
    assert_eq!(core.outcome(t), Some(Ok(Outcome::Published)));
}

#[test]
fn full_publication_table_gives_would_block() {
    let mut core = up();
    for i in 0..target_driver::DEFAULT_PUBS {
        core.publish("a", &[i as u8], QoS::AtLeastOnce, false).expect("room");
    }
    assert_eq!(core.publish("a", b"x", QoS::AtLeastOnce, false), Err(Error::WouldBlock));
}

#[test]
fn incoming_qos1_message_is_acked_only_when_taken_and_a_too_small_buffer_keeps_it() {
    let mut core = up();
    let msg = BridgeEvent::Message {
        id: 42,
        topic: "s/t",
        payload: &[0, 255, 7],
        qos: QoS::AtLeastOnce,
        retain: true,
        dup: false,
    };
    deliver(&mut core, &msg, at(300));
    assert!(sent(&mut core).is_empty(), "acked before the application took it");
    let mut small = [0u8; 4];
    assert_eq!(
        core.take_event(&mut small),
        Some(Event::Status(Status::BufferTooSmall { needed: 6 }))
    );
    assert!(core.has_event(), "a QoS 1 message was dropped for a small buffer");
    let mut buf = [0u8; 64];
    match core.take_event(&mut buf) {
        Some(Event::Message(m)) => {
            assert_eq!(
                (m.topic, m.payload, m.qos, m.retain),
                ("s/t", &[0u8, 255, 7][..], QoS::AtLeastOnce, true)
            )
        }
        other => panic!("expected the message, got {other:?}"),
    }
    assert_eq!(sent(&mut core), ["ack 42"]);
}

#[test]
fn a_borrowed_message_holds_the_link_until_the_next_call_and_is_acked_once() {
    let mut core = up();
    let msg = |id, payload: &'static [u8]| message(id, "s/t", payload, QoS::AtLeastOnce);
    deliver(&mut core, &msg(42, &[0, 255]), at(300));
    match core.borrow_event() {
        Some(Event::Message(m)) => assert_eq!((m.topic, m.payload), ("s/t", &[0u8, 255][..])),
        other => panic!("expected the message, got {other:?}"),
    }
    // Lent: the receive buffer is still taken, so the link cannot bring the next frame yet.
    assert!(!core.port().rx(0), "the port took bytes while the message was lent");
    assert!(!core.has_event(), "a lent message counted as a new event");
    core.flush();
    assert_eq!(sent(&mut core), ["ack 42"]);
    // The next call frees it; the next message comes in and is lent in turn.
    assert_eq!(core.borrow_event(), None);
    deliver(&mut core, &msg(43, b"x"), at(310));
    assert!(matches!(core.borrow_event(), Some(Event::Message(m)) if m.payload == b"x"));
    // handle_frame (the runner's or poll's first step) frees it too.
    core.handle_frame(at(320));
    assert!(core.port().rx(0), "handle_frame did not free the lent message");
    core.flush();
    assert_eq!(sent(&mut core), ["ack 43"]);
    assert_eq!(core.stats().delivered, 2);
}

#[test]
fn a_bridge_reset_while_a_message_is_lent_loses_no_later_frame() {
    let mut core = up();
    let msg = message(1, "a", b"1", QoS::AtMostOnce);
    deliver(&mut core, &msg, at(300));
    assert!(matches!(core.borrow_event(), Some(Event::Message(_))));
    // The link fails while the message is lent: the bridge is reset and the port cleared.
    core.handle_link_error(at(400));
    assert!(!core.rst_level(), "the link fault did not reset the bridge");
    let t = core.poll_at();
    core.handle_timeout(t);
    assert!(core.rst_level() && core.take_link_reset());
    // The bridge's Ready comes before the application calls again: it must not be freed in the lent message's
    // place.
    deliver(&mut core, &ready(PROTOCOL_VERSION), t + Duration::from_millis(10));
    assert!(core.bridge_up(), "the Ready after the reset was lost");
}

#[test]
fn subscription_results_and_failures_reach_the_caller() {
    let mut core = up();
    let ok = core.subscribe("a/#", QoS::AtLeastOnce).expect("s1");
    let bad = core.subscribe("b/#", QoS::AtLeastOnce).expect("s2");
    deliver(
        &mut core,
        &BridgeEvent::SubAck {
            id: ok.0,
            result: protocol::SubResult::Granted(QoS::AtMostOnce),
        },
        at(300),
    );
    deliver(
        &mut core,
        &BridgeEvent::SubAck {
            id: bad.0,
            result: protocol::SubResult::Failure,
        },
        at(300),
    );
    assert_eq!(core.outcome(ok), Some(Ok(Outcome::Subscribed(QoS::AtMostOnce))));
    assert_eq!(core.outcome(bad), Some(Err(Error::SubscriptionFailed)));
}

#[test]
fn a_dead_bridge_is_retried_with_doubling_pauses_up_to_the_cap() {
    let mut core = C::new(config(), at(0));
    let mut now = at(0);
    let mut resets = Vec::new();
    for _ in 0..40 {
        now = core.poll_at();
        core.handle_timeout(now);
        if !core.rst_level() {
            resets.push(now);
        }
    }
    let gaps: Vec<Duration> = resets.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.windows(2).all(|g| g[1] >= g[0]), "pauses shrink: {gaps:?}");
    assert!(gaps.last().expect("several resets") <= &(Duration::from_secs(60) + Duration::from_secs(6)));
    assert!(gaps.last().expect("several resets") >= &Duration::from_secs(60));
    let _ = now;
}

#[test]
fn a_qos0_message_too_big_for_the_buffer_is_dropped_and_counted() {
    let mut core = up();
    let msg = message(1, "s/t", &[1; 40], QoS::AtMostOnce);
    deliver(&mut core, &msg, at(300));
    let mut small = [0u8; 16];
    assert_eq!(core.take_event(&mut small), None);
    assert!(!core.has_event());
    assert_eq!(core.stats().dropped, 1);
    assert!(sent(&mut core).is_empty(), "a QoS 0 message must not be acknowledged");
}

#[test]
fn a_qos1_message_too_big_for_the_buffer_is_reported_and_kept_not_lost() {
    let mut core = up();
    let msg = message(9, "s/t", &[1; 40], QoS::AtLeastOnce);
    deliver(&mut core, &msg, at(300));
    let mut small = [0u8; 16];
    assert_eq!(
        core.take_event(&mut small),
        Some(Event::Status(Status::BufferTooSmall { needed: 43 }))
    );
    assert!(
        sent(&mut core).is_empty(),
        "acknowledged a message the application did not take"
    );
    let mut buf = [0u8; 64];
    assert!(matches!(core.take_event(&mut buf), Some(Event::Message(m)) if m.payload.len() == 40));
    assert_eq!(sent(&mut core), ["ack 9"]);
}

#[test]
fn replayed_subscriptions_leave_no_outcome_behind() {
    let mut core = up();
    let t = core.subscribe("a/#", QoS::AtLeastOnce).expect("sub");
    deliver(
        &mut core,
        &BridgeEvent::SubAck {
            id: t.0,
            result: protocol::SubResult::Granted(QoS::AtLeastOnce),
        },
        at(300),
    );
    assert!(core.outcome(t).is_some());
    sent(&mut core);
    // The bridge restarts; the subscription is replayed under a new id and its answer is nobody's outcome.
    deliver(&mut core, &ready(PROTOCOL_VERSION), at(400));
    let replay = sent(&mut core);
    assert_eq!(replay, ["configure", "subscribe a/#"]);
    for id in 0..64u16 {
        deliver(
            &mut core,
            &BridgeEvent::SubAck {
                id,
                result: protocol::SubResult::Granted(QoS::AtLeastOnce),
            },
            at(500),
        );
    }
    let p = core.publish("x", b"1", QoS::AtLeastOnce, false).expect("p");
    deliver(&mut core, &BridgeEvent::PubAck { id: p.0 }, at(600));
    assert_eq!(core.outcome(p), Some(Ok(Outcome::Published)));
}

#[test]
fn unsubscribe_forgets_the_filter_so_it_is_not_replayed() {
    let mut core = up();
    let a = core.subscribe("a/#", QoS::AtLeastOnce).expect("sub a");
    core.subscribe("b/#", QoS::AtMostOnce).expect("sub b");
    sent(&mut core);
    assert_eq!(
        core.unsubscribe("a/#"),
        Err(Error::WouldBlock),
        "an unsubscribe overtook the unanswered subscribe of its filter"
    );
    let granted = protocol::SubResult::Granted(QoS::AtLeastOnce);
    deliver(
        &mut core,
        &BridgeEvent::SubAck {
            id: a.0,
            result: granted,
        },
        at(250),
    );
    assert_eq!(core.outcome(a), Some(Ok(Outcome::Subscribed(QoS::AtLeastOnce))));
    let t = core.unsubscribe("a/#").expect("unsub");
    assert_eq!(sent(&mut core), ["unsubscribe a/#"]);
    deliver(&mut core, &BridgeEvent::UnsubAck { id: t.0 }, at(300));
    assert_eq!(core.outcome(t), Some(Ok(Outcome::Unsubscribed)));
    deliver(&mut core, &ready(PROTOCOL_VERSION), at(400));
    assert_eq!(sent(&mut core), ["configure", "subscribe b/#"]);
}

#[test]
fn a_full_subscription_table_waits_only_while_an_answer_may_free_it() {
    let mut core = up();
    let filters = ["a", "b", "c", "d"];
    for (i, f) in filters.iter().enumerate() {
        let t = core.subscribe(f, QoS::AtMostOnce).expect("room");
        let result = protocol::SubResult::Granted(QoS::AtMostOnce);
        deliver(&mut core, &BridgeEvent::SubAck { id: t.0, result }, at(300 + i as u64));
    }
    sent(&mut core);
    // Four settled subscriptions: nothing will free an entry by itself.
    assert_eq!(core.subscribe("e", QoS::AtMostOnce), Err(Error::TooManySubscriptions));
    assert_eq!(core.unsubscribe("old/#"), Err(Error::TooManySubscriptions));
    assert!(sent(&mut core).is_empty(), "sent without an entry");
    // The table's own filters still change.
    assert!(
        core.subscribe("a", QoS::AtLeastOnce).is_ok(),
        "a new QoS for a kept filter"
    );
    let u = core.unsubscribe("b").expect("a kept filter");
    // Answers may free an entry now: wait (would-block).
    assert_eq!(core.subscribe("e", QoS::AtMostOnce), Err(Error::WouldBlock));
    deliver(&mut core, &BridgeEvent::UnsubAck { id: u.0 }, at(400));
    assert!(
        core.subscribe("e", QoS::AtMostOnce).is_ok(),
        "the unsubscription freed an entry"
    );
}

#[test]
fn an_unanswered_unsubscribe_is_sent_again_after_a_bridge_reset_and_then_forgotten() {
    let mut core = up();
    // A filter this driver never subscribed (the broker may keep it from an earlier session) takes an entry.
    let t = core.unsubscribe("old/#").expect("unsub");
    assert_eq!(sent(&mut core), ["unsubscribe old/#"]);
    assert!(core.in_flight(t));
    assert_eq!(core.subscribe("old/#", QoS::AtMostOnce), Err(Error::WouldBlock));
    deliver(&mut core, &ready(PROTOCOL_VERSION), at(300));
    assert_eq!(sent(&mut core), ["configure", "unsubscribe old/#"]);
    deliver(&mut core, &BridgeEvent::UnsubAck { id: t.0 }, at(400));
    assert_eq!(core.outcome(t), Some(Ok(Outcome::Unsubscribed)));
    assert!(!core.in_flight(t));
    deliver(&mut core, &ready(PROTOCOL_VERSION), at(500));
    assert_eq!(sent(&mut core), ["configure"]);
}

#[test]
fn a_refused_or_failed_subscription_is_forgotten_not_replayed() {
    let mut core = up();
    let a = core.subscribe("a/#", QoS::AtLeastOnce).expect("sub a");
    let b = core.subscribe("b/#", QoS::AtLeastOnce).expect("sub b");
    let c = core.subscribe("c/#", QoS::AtLeastOnce).expect("sub c");
    sent(&mut core);
    let failure = protocol::SubResult::Failure;
    deliver(
        &mut core,
        &BridgeEvent::SubAck {
            id: a.0,
            result: failure,
        },
        at(300),
    );
    let refusal = BridgeEvent::Error {
        id: b.0,
        kind: ErrorKind::TooLong,
    };
    deliver(&mut core, &refusal, at(310));
    let granted = protocol::SubResult::Granted(QoS::AtMostOnce);
    deliver(
        &mut core,
        &BridgeEvent::SubAck {
            id: c.0,
            result: granted,
        },
        at(320),
    );
    assert_eq!(core.outcome(a), Some(Err(Error::SubscriptionFailed)));
    assert_eq!(core.outcome(b), Some(Err(Error::Refused(ErrorKind::TooLong))));
    assert_eq!(core.outcome(c), Some(Ok(Outcome::Subscribed(QoS::AtMostOnce))));
    deliver(&mut core, &ready(PROTOCOL_VERSION), at(400));
    assert_eq!(sent(&mut core), ["configure", "subscribe c/#"]);
}

#[test]
fn a_bridge_that_forgot_its_configuration_is_restored_once_and_nothing_is_failed() {
    let mut core = up();
    core.subscribe("a/#", QoS::AtLeastOnce).expect("sub");
    let t = core.publish("x", b"1", QoS::AtLeastOnce, false).expect("p");
    sent(&mut core);
    // The bridge restarted and its Ready was lost: it refuses the publication as not configured.
    deliver(
        &mut core,
        &BridgeEvent::Error {
            id: t.0,
            kind: ErrorKind::NotConfigured,
        },
        at(300),
    );
    assert!(statuses(&mut core).contains(&Status::BridgeReset(ResetReason::Restarted)));
    assert_eq!(
        sent(&mut core),
        [
            "configure".to_string(),
            "subscribe a/#".to_string(),
            format!("publish {} x", t.0)
        ]
    );
    assert_eq!(core.outcome(t), None);
    // A second publication sent before the restore is refused too, late: it is sent again, not failed.
    let t2 = core.publish("y", b"2", QoS::AtLeastOnce, false).expect("p2");
    sent(&mut core);
    deliver(
        &mut core,
        &BridgeEvent::Error {
            id: t2.0,
            kind: ErrorKind::NotConfigured,
        },
        at(350),
    );
    assert_eq!(core.outcome(t2), None);
    assert_eq!(sent(&mut core), [format!("publish {} y", t2.0)]);
    // The bridge answers the configuration with a status; still not configured after that: the refusal stands
    // (no restore storm).
    deliver(&mut core, &BridgeEvent::Status(BStatus::WifiUp), at(380));
    deliver(
        &mut core,
        &BridgeEvent::Error {
            id: t.0,
            kind: ErrorKind::NotConfigured,
        },
        at(400),
    );
    assert_eq!(core.outcome(t), Some(Err(Error::Refused(ErrorKind::NotConfigured))));
    assert!(sent(&mut core).is_empty());
}

#[test]
fn a_refused_configuration_is_a_status() {
    let mut core = up();
    deliver(
        &mut core,
        &BridgeEvent::Error {
            id: 0,
            kind: ErrorKind::Unsupported,
        },
        at(300),
    );
    assert_eq!(
        statuses(&mut core),
        [Status::ConfigurationRefused(ErrorKind::Unsupported)]
    );
}

#[test]
fn a_configuration_too_large_for_the_send_buffer_is_refused_once_not_retried() {
    // A 96-byte send queue: enough for every publication of 16 + 16 bytes, not for these names.
    let long = Config::new(
        "a-rather-long-network-name-0123",
        "a-wifi-passphrase-of-sixty-three-characters-0123456789012345678",
        "broker.example.com",
        1883,
        "id",
    );
    let mut core: Core<'static, 16, 16, 2, 2, 96, 96> = Core::new(long, at(0));
    core.handle_timeout(at(100));
    let _ = core.take_link_reset();
    let ev = ready(PROTOCOL_VERSION);
    let mut buf = [0u8; 96];
    let n = protocol::encode(&ev, &mut buf).expect("encode");
    for &b in &buf[..n] {
        assert!(core.port().rx(b));
    }
    core.handle_frame(at(200));
    let mut seen = Vec::new();
    while let Some(Event::Status(s)) = core.take_event(&mut buf) {
        seen.push(s);
    }
    assert!(
        seen.contains(&Status::ConfigurationRefused(ErrorKind::TooLong)),
        "{seen:?}"
    );
    assert_eq!(core.port().tx_pending(), 0, "nothing is sent for it");
    // Not retried: a later turn neither sends nor reports it again.
    core.flush();
    assert_eq!(core.port().tx_pending(), 0);
    assert_eq!(core.take_event(&mut buf), None);
    // The watchdog still works: the bridge is alive and answers pings.
    core.handle_timeout(at(2300));
    assert!(core.port().tx_pending() > 0, "the watchdog's ping");
}

/// A core with a 64-byte publication pool: topics up to 16 bytes, payloads up to 32.
type Small = Core<'static, 16, 32, 4, 4, 256, 256, 64>;

fn small_up() -> Small {
    let mut core = Small::new(config(), at(0));
    core.handle_timeout(at(100));
    deliver(&mut core, &ready(PROTOCOL_VERSION), at(200));
    sent_publications(&mut core);
    core
}

/// The publications the core has queued, as (id, topic, payload).
fn sent_publications(core: &mut Small) -> Vec<(u16, String, Vec<u8>)> {
    let mut dec: FrameDecoder<600> = FrameDecoder::new();
    let mut out = Vec::new();
    while let Some(b) = core.port().tx_next() {
        if let protocol::Feed::Frame { message, .. } = dec.feed(&[b]) {
            if let Ok(Request::Publish { id, topic, payload, .. }) = Request::decode(message) {
                out.push((id, topic.to_string(), payload.to_vec()));
            }
        }
    }
    out
}

fn puback(core: &mut Small, id: u16) {
    deliver(core, &BridgeEvent::PubAck { id }, at(300));
}

#[test]
fn publications_wait_for_pool_bytes_not_only_for_entries() {
    let mut core = small_up();
    let big = [7u8; 32];
    let a = core
        .publish("topic/aaaaaaaaaa", &big, QoS::AtLeastOnce, false)
        .expect("a");
    // 48 of the 64 bytes are taken: a second publication as large waits though three entries are free.
    assert_eq!(
        core.publish("topic/bbbbbbbbbb", &big, QoS::AtLeastOnce, false),
        Err(Error::WouldBlock)
    );
    let c = core
        .publish("c", b"0123456789abcde", QoS::AtLeastOnce, false)
        .expect("16 bytes fit");
    puback(&mut core, a.0);
    assert_eq!(core.outcome(a), Some(Ok(Outcome::Published)));
    let b = core
        .publish("topic/bbbbbbbbbb", &big, QoS::AtLeastOnce, false)
        .expect("b once a is gone");
    let sent = sent_publications(&mut core);
    assert_eq!(
        sent,
        [
            (a.0, "topic/aaaaaaaaaa".to_string(), big.to_vec()),
            (c.0, "c".to_string(), b"0123456789abcde".to_vec()),
            (b.0, "topic/bbbbbbbbbb".to_string(), big.to_vec()),
        ]
    );
}

#[test]
fn freed_pool_bytes_are_reused_in_place_and_resends_carry_the_right_bytes() {
    let mut core = small_up();
    // Three publications of 20 bytes: 0..20, 20..40, 40..60.
    let ids: Vec<_> = ["aaaa", "bbbb", "cccc"]
        .iter()
        .map(|t| {
            core.publish(t, t.repeat(4).as_bytes(), QoS::AtLeastOnce, false)
                .expect("fits")
                .0
        })
        .collect();
    sent_publications(&mut core);
    puback(&mut core, ids[1]);
    // The middle gap (20 bytes) and the tail (4) are not one piece: 24 bytes do not fit.
    assert_eq!(
        core.publish("dddd", &[1; 20], QoS::AtLeastOnce, false),
        Err(Error::WouldBlock)
    );
    let d = core
        .publish("dddd", &[1; 16], QoS::AtLeastOnce, false)
        .expect("20 bytes fit the gap");
    assert_eq!(sent_publications(&mut core), [(d.0, "dddd".to_string(), vec![1; 16])]);
    // After a bridge reset every publication in flight is resent from the pool, oldest first, intact.
    deliver(&mut core, &ready(PROTOCOL_VERSION), at(400));
    assert_eq!(
        sent_publications(&mut core),
        [
            (ids[0], "aaaa".to_string(), b"aaaaaaaaaaaaaaaa".to_vec()),
            (ids[2], "cccc".to_string(), b"cccccccccccccccc".to_vec()),
            (d.0, "dddd".to_string(), vec![1; 16]),
        ]
    );
}

#[test]
fn a_message_at_the_default_limits_fits_the_default_receive_buffer() {
    let mut core = up();
    let topic = "t".repeat(target_driver::DEFAULT_TOPIC);
    let payload = [0xffu8; target_driver::DEFAULT_PAYLOAD];
    let msg = BridgeEvent::Message {
        id: u16::MAX,
        topic: &topic,
        payload: &payload,
        qos: QoS::AtLeastOnce,
        retain: true,
        dup: true,
    };
    deliver(&mut core, &msg, at(300));
    assert_eq!(core.stats().frame_errors, 0, "the frame was dropped as overlong");
    match core.borrow_event() {
        Some(Event::Message(m)) => assert_eq!((m.topic, m.payload), (topic.as_str(), &payload[..])),
        other => panic!("expected the message, got {other:?}"),
    }
}

#[test]
fn the_configuration_tells_the_bridge_the_longest_message_the_receive_buffer_takes() {
    let mut core = C::new(config(), at(0));
    core.handle_timeout(at(100));
    deliver(&mut core, &ready(PROTOCOL_VERSION), at(200));
    let mut dec: FrameDecoder<600> = FrameDecoder::new();
    let mut max = None;
    while let Some(b) = core.port().tx_next() {
        if let protocol::Feed::Frame { message, .. } = dec.feed(&[b]) {
            if let Ok(Request::Configure(c)) = Request::decode(message) {
                max = Some(usize::from(c.max_message));
            }
        }
    }
    let max = max.expect("a configuration");
    assert_eq!(max, target_driver::DEFAULT_RX - 2);
    // It is what the port takes: a message of that many bytes arrives, one byte more is dropped.
    let payload = vec![0x5Au8; 400];
    let message = |n: usize| BridgeEvent::Message {
        id: 7,
        topic: "t",
        payload: &payload[..n],
        qos: QoS::AtMostOnce,
        retain: false,
        dup: false,
    };
    let n = (0..400)
        .find(|&n| protocol::wire::encoded_len(&message(n)) == max)
        .expect("a size");
    statuses(&mut core);
    deliver(&mut core, &message(n), at(300));
    assert_eq!(core.stats().frame_errors, 0);
    let mut buf = [0u8; 400];
    assert!(matches!(core.take_event(&mut buf), Some(Event::Message(m)) if m.payload.len() == n));
    deliver(&mut core, &message(n + 1), at(400));
    assert_eq!(core.stats().frame_errors, 1, "one byte more was taken");
    // A bridge that has the size does not send a longer one: it says it dropped one.
    deliver(&mut core, &BridgeEvent::TooLong { len: 320 }, at(500));
    assert_eq!(statuses(&mut core), [Status::MessageTooLong { len: 320 }]);
}

#[test]
fn an_application_slow_to_take_a_message_does_not_get_the_bridge_reset() {
    let mut core = up();
    let msg = message(5, "m", b"x", QoS::AtLeastOnce);
    deliver(&mut core, &msg, at(300));
    // Ten seconds, five watchdog periods, with the message waiting: the link is held on this side, so the
    // bridge could not answer a ping; no ping, no reset.
    for t in (400..10_400).step_by(100) {
        core.handle_timeout(at(t));
        core.flush();
    }
    assert!(sent(&mut core).is_empty());
    assert!(core.rst_level() && core.bridge_up());
    assert_eq!(core.stats().resets, 1);
    let mut buf = [0u8; 64];
    assert!(matches!(core.take_event(&mut buf), Some(Event::Message(_))));
    assert_eq!(sent(&mut core), ["ack 5"]);
    // Then the watchdog goes on from there: a silent bridge is pinged one period later.
    core.handle_timeout(at(10_400));
    core.handle_timeout(at(10_400 + 1_900));
    assert!(sent(&mut core).is_empty());
    core.handle_timeout(at(10_400 + 2_000));
    assert_eq!(sent(&mut core), ["ping"]);
}

/// Runs the core's timers from `from` to `to` ms in steps of 100 ms, answering its pings with `state`; everything
/// else it sends.
fn run_answering_pings(core: &mut C, from: u64, to: u64, state: BridgeState) -> Vec<String> {
    let mut out = Vec::new();
    for t in (from..=to).step_by(100) {
        core.handle_timeout(at(t));
        for line in sent(core) {
            if line == "ping" {
                deliver(core, &pong(state), at(t));
            } else {
                out.push(line);
            }
        }
    }
    out
}

#[test]
fn a_request_whose_answer_is_lost_is_sent_again_under_its_id() {
    // Answers checked every 5 s from the Ready at 200 ms: at 5 200 the requests are late, at 10 200 lost.
    let mut core = up();
    let p = core.publish("a", b"1", QoS::AtLeastOnce, false).expect("p");
    let s = core.subscribe("s/#", QoS::AtLeastOnce).expect("s");
    core.request_time();
    let first = [
        format!("publish {} a", p.0),
        "subscribe s/#".to_string(),
        "time".to_string(),
    ];
    assert_eq!(sent(&mut core), first);
    assert!(
        run_answering_pings(&mut core, 300, 10_100, UP).is_empty(),
        "sent again too early"
    );
    // In the order the core sends what is due: filters, questions, publications.
    let again = [
        "subscribe s/#".to_string(),
        "time".to_string(),
        format!("publish {} a", p.0),
    ];
    assert_eq!(
        run_answering_pings(&mut core, 10_200, 10_200, UP),
        again,
        "not sent again"
    );
    assert_eq!(core.stats().resent, 1);
    // The answers to the copies complete them, once.
    deliver(&mut core, &BridgeEvent::PubAck { id: p.0 }, at(10_300));
    deliver(&mut core, &BridgeEvent::PubAck { id: p.0 }, at(10_300));
    let granted = SubResult::Granted(QoS::AtLeastOnce);
    deliver(
        &mut core,
        &BridgeEvent::SubAck {
            id: s.0,
            result: granted,
        },
        at(10_300),
    );
    deliver(&mut core, &BridgeEvent::Time { unix_ms: Some(7) }, at(10_300));
    assert_eq!(core.outcome(p), Some(Ok(Outcome::Published)));
    assert_eq!(core.outcome(p), None);
    assert_eq!(core.outcome(s), Some(Ok(Outcome::Subscribed(QoS::AtLeastOnce))));
    assert_eq!(core.take_time(), Some(Some(7)));
    // Nothing is left to send again.
    assert!(run_answering_pings(&mut core, 10_400, 30_000, UP).is_empty());
}

#[test]
fn an_unconfirmed_qos0_publication_is_given_up_not_sent_again() {
    let mut core = up();
    let q = core.publish("a", b"0", QoS::AtMostOnce, false).expect("q");
    assert_eq!(sent(&mut core), [format!("publish {} a", q.0)]);
    assert!(run_answering_pings(&mut core, 300, 10_100, UP).is_empty());
    assert_eq!(core.outcome(q), None);
    assert!(
        run_answering_pings(&mut core, 10_200, 20_000, UP).is_empty(),
        "at most once"
    );
    assert_eq!(core.outcome(q), Some(Err(Error::Unconfirmed)));
    assert!(!core.in_flight(q));
}

#[test]
fn stray_answers_complete_nothing_and_evict_no_outcome() {
    let mut core = up();
    let p = core.publish("a", b"1", QoS::AtLeastOnce, false).expect("p");
    let s = core.subscribe("s/#", QoS::AtLeastOnce).expect("s");
    assert_eq!(sent(&mut core).len(), 2);
    // Answers of the wrong kind for the ids in flight: a subscription's or an unsubscription's for the
    // publication, an unsubscription's or a publication's for the subscription.
    let granted = |id| BridgeEvent::SubAck {
        id,
        result: SubResult::Granted(QoS::AtLeastOnce),
    };
    deliver(&mut core, &granted(p.0), at(300));
    deliver(&mut core, &BridgeEvent::UnsubAck { id: p.0 }, at(301));
    deliver(&mut core, &BridgeEvent::UnsubAck { id: s.0 }, at(302));
    deliver(&mut core, &BridgeEvent::PubAck { id: s.0 }, at(303));
    assert_eq!((core.outcome(p), core.outcome(s)), (None, None));
    assert!(core.in_flight(p) && core.in_flight(s));
    // Their own answers complete them.
    deliver(&mut core, &BridgeEvent::PubAck { id: p.0 }, at(310));
    deliver(&mut core, &granted(s.0), at(311));
    // More answers for ids nothing waits for than the table of outcomes holds: the two outcomes stay in it.
    for id in 1000..1020 {
        let kind = ErrorKind::TooLong;
        deliver(&mut core, &BridgeEvent::Error { id, kind }, at(320));
        deliver(&mut core, &granted(id), at(320));
        deliver(&mut core, &BridgeEvent::UnsubAck { id }, at(320));
    }
    assert_eq!(core.outcome(p), Some(Ok(Outcome::Published)));
    assert_eq!(core.outcome(s), Some(Ok(Outcome::Subscribed(QoS::AtLeastOnce))));
}

mod confused_bridge {
    //! A bridge that answers at random, right or wrong: answers to the ids in flight of every kind, to ids nothing
    //! waits for, refusals of every kind, restarts (with another version too), statuses, garbage, silence.
    //! Whatever it does, every operation the core accepted is either still in flight or has the one outcome its own
    //! answer allows, never another.

    use std::collections::{HashMap, HashSet};

    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Op {
        Publish { qos1: bool },
        Subscribe,
        Unsubscribe,
    }

    #[derive(Debug, Clone)]
    enum Step {
        Publish {
            qos1: bool,
            len: usize,
        },
        Subscribe(usize),
        Unsubscribe(usize),
        /// An answer for an id: `Some(i)` picks the i-th (modulo) of the ids the core has sent, `None` takes `any`.
        PubAck(Option<usize>, u16),
        SubAck(Option<usize>, u16, bool),
        UnsubAck(Option<usize>, u16),
        Refuse(Option<usize>, u16, u8),
        Room,
        /// A Ready: the bridge restarted, with this protocol's version or another.
        Restart(bool),
        /// An answer that concerns no operation: a pong, the time, counters, a WiFi or broker status.
        Chatter(u8),
        Message {
            qos1: bool,
            len: usize,
        },
        Garbage(Vec<u8>),
        Wait(u64),
    }

    const FILTERS: [&str; 3] = ["a/#", "b/+", "c"];

    fn step() -> impl Strategy<Value = Step> {
        let pick = proptest::option::of(any::<usize>());
        prop_oneof![
            (any::<bool>(), 0..40usize).prop_map(|(qos1, len)| Step::Publish { qos1, len }),
            (0..FILTERS.len()).prop_map(Step::Subscribe),
            (0..FILTERS.len()).prop_map(Step::Unsubscribe),
            (pick.clone(), any::<u16>()).prop_map(|(p, id)| Step::PubAck(p, id)),
            (pick.clone(), any::<u16>(), any::<bool>()).prop_map(|(p, id, g)| Step::SubAck(p, id, g)),
            (pick.clone(), any::<u16>()).prop_map(|(p, id)| Step::UnsubAck(p, id)),
            (pick, any::<u16>(), 0..12u8).prop_map(|(p, id, k)| Step::Refuse(p, id, k)),
            Just(Step::Room),
            any::<bool>().prop_map(Step::Restart),
            (0..6u8).prop_map(Step::Chatter),
            (any::<bool>(), 0..60usize).prop_map(|(qos1, len)| Step::Message { qos1, len }),
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(Step::Garbage),
            (0..1500u64).prop_map(Step::Wait),
        ]
    }

    /// The ids of the requests the core queued (publications, subscriptions, unsubscriptions), in order.
    fn sent_ids(core: &mut C, ids: &mut Vec<u16>) {
        let mut dec: FrameDecoder<600> = FrameDecoder::new();
        while let Some(b) = core.port().tx_next() {
            if let protocol::Feed::Frame { message, .. } = dec.feed(&[b]) {
                match Request::decode(message).expect("the core sends well-formed requests") {
                    Request::Publish { id, .. } | Request::Subscribe { id, .. } | Request::Unsubscribe { id, .. } => {
                        ids.push(id)
                    }
                    _ => {}
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn every_operation_ends_with_its_own_answer_or_waits(steps in proptest::collection::vec(step(), 1..80)) {
            // Late answers taken for lost within a few steps: requests are sent again, QoS 0 ones given up.
            let mut config = config();
            config.answer_timeout = Duration::from_millis(700);
            let mut core = up_with(config);
            let mut now = 300;
            let mut ids: Vec<u16> = Vec::new();
            let mut ops: HashMap<u16, Op> = HashMap::new();
            let mut done: HashSet<u16> = HashSet::new();
            // The answers delivered, by id.
            let mut pubacks = HashSet::new();
            let mut subacks = HashSet::new();
            let mut unsubacks = HashSet::new();
            let mut refusals = HashSet::new();
            let mut buf = [0u8; 256];
            for step in steps {
                now += 1;
                let id_of = |pick: Option<usize>, any: u16| match pick {
                    Some(i) if !ids.is_empty() => ids[i % ids.len()],
                    _ => any,
                };
                let mut answer = None;
                match step {
                    Step::Publish { qos1, len } => {
                        let qos = if qos1 { QoS::AtLeastOnce } else { QoS::AtMostOnce };
                        if let Ok(t) = core.publish("t/p", &vec![0xA5; len], qos, false) {
                            ops.insert(t.0, Op::Publish { qos1 });
                        }
                    }
                    Step::Subscribe(f) => {
                        if let Ok(t) = core.subscribe(FILTERS[f], QoS::AtLeastOnce) {
                            ops.insert(t.0, Op::Subscribe);
                        }
                    }
                    Step::Unsubscribe(f) => {
                        if let Ok(t) = core.unsubscribe(FILTERS[f]) {
                            ops.insert(t.0, Op::Unsubscribe);
                        }
                    }
                    Step::PubAck(p, any) => {
                        let id = id_of(p, any);
                        pubacks.insert(id);
                        answer = Some(BridgeEvent::PubAck { id });
                    }
                    Step::SubAck(p, any, granted) => {
                        let id = id_of(p, any);
                        subacks.insert((id, granted));
                        let result = if granted { SubResult::Granted(QoS::AtLeastOnce) } else { SubResult::Failure };
                        answer = Some(BridgeEvent::SubAck { id, result });
                    }
                    Step::UnsubAck(p, any) => {
                        let id = id_of(p, any);
                        unsubacks.insert(id);
                        answer = Some(BridgeEvent::UnsubAck { id });
                    }
                    Step::Refuse(p, any, kind) => {
                        let (id, kind) = (id_of(p, any), ErrorKind::from(kind));
                        refusals.insert((id, kind));
                        answer = Some(BridgeEvent::Error { id, kind });
                    }
                    Step::Room => answer = Some(BridgeEvent::Status(BStatus::Backpressure { full: false })),
                    Step::Restart(same) => answer = Some(ready(if same { PROTOCOL_VERSION } else { PROTOCOL_VERSION + 1 })),
                    Step::Chatter(which) => {
                        answer = Some(match which {
                            0 => BridgeEvent::Pong { id: 9, state: UP },
                            1 => BridgeEvent::Time { unix_ms: Some(1) },
                            2 => BridgeEvent::Stats(protocol::Stats::default()),
                            3 => BridgeEvent::Status(BStatus::WifiDown),
                            4 => BridgeEvent::Status(BStatus::BrokerDown {
                                reason: protocol::DownReason::Unreachable,
                            }),
                            _ => BridgeEvent::Status(BStatus::BrokerUp { session_present: false }),
                        })
                    }
                    Step::Message { qos1, len } => {
                        let qos = if qos1 { QoS::AtLeastOnce } else { QoS::AtMostOnce };
                        let payload = vec![0x5A; len];
                        deliver(&mut core, &message(7, "m/x", &payload, qos), at(now));
                    }
                    Step::Garbage(bytes) => {
                        for b in bytes.into_iter().chain([0]) {
                            let _ = core.port().rx(b);
                        }
                        core.handle_frame(at(now));
                    }
                    Step::Wait(ms) => {
                        now += ms;
                        core.handle_timeout(at(now));
                        if core.take_link_reset() {
                            // A reset bridge comes back.
                            core.handle_timeout(at(now + 100));
                            now += 100;
                            answer = Some(ready(PROTOCOL_VERSION));
                        }
                    }
                }
                if let Some(ev) = answer {
                    deliver(&mut core, &ev, at(now));
                }
                // The application takes whatever waits for it; the link carries what the core queued.
                while core.take_event(&mut buf).is_some() {}
                core.flush();
                sent_ids(&mut core, &mut ids);
                for (&id, &op) in &ops {
                    if done.contains(&id) {
                        continue;
                    }
                    let Some(outcome) = core.outcome(Token(id)) else {
                        prop_assert!(core.in_flight(Token(id)), "{op:?} {id} has no outcome and is not in flight");
                        continue;
                    };
                    let allowed = match (op, outcome) {
                        (Op::Publish { .. }, Ok(Outcome::Published)) => pubacks.contains(&id),
                        (Op::Publish { qos1: false }, Err(Error::BridgeReset | Error::Unconfirmed)) => true,
                        (Op::Subscribe, Ok(Outcome::Subscribed(_))) => subacks.contains(&(id, true)),
                        (Op::Subscribe, Err(Error::SubscriptionFailed)) => subacks.contains(&(id, false)),
                        (Op::Unsubscribe, Ok(Outcome::Unsubscribed)) => unsubacks.contains(&id),
                        (_, Err(Error::Refused(kind))) => refusals.contains(&(id, kind)),
                        _ => false,
                    };
                    prop_assert!(allowed, "{op:?} {id} ended with {outcome:?}, which no answer of its own gave");
                    done.insert(id);
                }
            }
        }
    }

    #[derive(Debug, Clone)]
    enum Inbound {
        /// The bridge sends a message (when the link is free: a message not yet taken holds it).
        Deliver {
            qos1: bool,
            len: usize,
        },
        /// The application takes the next event: lent, or copied into a buffer of this size.
        Take {
            copy: Option<usize>,
        },
        Restart,
        Wait(u64),
    }

    fn inbound() -> impl Strategy<Value = Inbound> {
        prop_oneof![
            (any::<bool>(), 0..100usize).prop_map(|(qos1, len)| Inbound::Deliver { qos1, len }),
            proptest::option::of(0..120usize).prop_map(|copy| Inbound::Take { copy }),
            Just(Inbound::Restart),
            (0..1500u64).prop_map(Inbound::Wait),
        ]
    }

    /// The acknowledgements the core queued, in order.
    fn sent_acks(core: &mut C, acks: &mut Vec<u16>) {
        let mut dec: FrameDecoder<600> = FrameDecoder::new();
        while let Some(b) = core.port().tx_next() {
            if let protocol::Feed::Frame { message, .. } = dec.feed(&[b]) {
                if let Request::Ack { id } = Request::decode(message).expect("the core sends well-formed requests") {
                    acks.push(id);
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn a_qos1_message_is_acknowledged_once_taken_never_before(steps in proptest::collection::vec(inbound(), 1..80)) {
            let mut core = up();
            let mut now = 300;
            let mut next_id = 1u16;
            // QoS 1 messages taken whose acknowledgement has not gone out; the ids ever acknowledged.
            let mut owed: Vec<u16> = Vec::new();
            let mut acked: Vec<u16> = Vec::new();
            let mut taken: Vec<u16> = Vec::new();
            // The id of the message the bridge sent last, for the event that hands it out.
            let mut last: Option<(u16, QoS)> = None;
            let mut buf = [0u8; 120];
            for step in steps {
                now += 1;
                let event = match step {
                    Inbound::Deliver { qos1, len } => {
                        // Only to a core that has the bridge up (a reset bridge starts with its Ready) and a free
                        // link (a message not yet taken holds it).
                        if core.bridge_up() && core.port().received().is_none() {
                            let qos = if qos1 { QoS::AtLeastOnce } else { QoS::AtMostOnce };
                            let payload = vec![0x11; len];
                            deliver(&mut core, &message(next_id, "m", &payload, qos), at(now));
                            last = Some((next_id, qos));
                            next_id += 1;
                        }
                        None
                    }
                    Inbound::Take { copy: None } => core.borrow_event().map(|e| match e {
                        Event::Message(m) => Err(m.qos),
                        Event::Status(s) => Ok(s),
                    }),
                    Inbound::Take { copy: Some(n) } => core.take_event(&mut buf[..n]).map(|e| match e {
                        Event::Message(m) => Err(m.qos),
                        Event::Status(s) => Ok(s),
                    }),
                    Inbound::Restart => {
                        // Not while a message holds the link: the bridge's Ready waits behind it.
                        if core.port().received().is_none() {
                            deliver(&mut core, &ready(PROTOCOL_VERSION), at(now));
                        }
                        None
                    }
                    Inbound::Wait(ms) => {
                        now += ms;
                        core.handle_timeout(at(now));
                        if core.take_link_reset() {
                            now += 100;
                            core.handle_timeout(at(now));
                            deliver(&mut core, &ready(PROTOCOL_VERSION), at(now));
                        }
                        None
                    }
                };
                match event {
                    // A reset or restart forgets the acknowledgements not yet sent (the broker sends those messages
                    // again) and the message held, if any.
                    Some(Ok(Status::BridgeReset(_))) => owed.clear(),
                    Some(Err(qos)) => {
                        let (id, sent_qos) = last.expect("a message was handed out that the bridge never sent");
                        prop_assert_eq!(qos, sent_qos);
                        prop_assert!(!taken.contains(&id), "message {} handed out twice", id);
                        taken.push(id);
                        if qos == QoS::AtLeastOnce {
                            owed.push(id);
                        }
                    }
                    _ => {}
                }
                core.flush();
                let before = acked.len();
                sent_acks(&mut core, &mut acked);
                for id in &acked[before..] {
                    prop_assert!(owed.contains(id), "ack {} for a message not taken, or acknowledged twice", id);
                    owed.retain(|o| o != id);
                }
                if core.bridge_up() {
                    // Taken and the bridge up: the acknowledgement went out with this turn.
                    prop_assert!(owed.is_empty(), "acknowledgements owed: {:?}", owed);
                }
            }
        }
    }
}

mod lossy_statuses {
    //! The bridge's state changes at random; each status event that reports a change may be lost on the link, and
    //! pongs come now and then (lost too, some). However the losses fall, the application is told each kind's state
    //! once per change it hears of, never twice in a row, and after a pong it knows the bridge's state.

    use proptest::prelude::*;

    use super::*;

    /// The kind of an application status: 0 WiFi, 1 broker, 2 queue.
    fn kind(s: &Status) -> usize {
        match s {
            Status::WifiUp | Status::WifiDown => 0,
            Status::BrokerUp { .. } | Status::BrokerDown(_) => 1,
            Status::QueueFull(_) => 2,
            other => panic!("not a bridge state: {other:?}"),
        }
    }

    /// What the application should have been told of `state`, by kind (the queue as [`heard`] gives it).
    fn expected(state: &BridgeState) -> [Option<Status>; 3] {
        [
            Some(if state.wifi_up {
                Status::WifiUp
            } else {
                Status::WifiDown
            }),
            match state.broker {
                BrokerState::Unknown => None,
                BrokerState::Up { session_present } => Some(Status::BrokerUp { session_present }),
                BrokerState::Down { reason } => Some(Status::BrokerDown(reason)),
            },
            Some(Status::QueueFull(state.queue_full)),
        ]
    }

    /// What the application was told, by kind; a queue it heard nothing of has room.
    fn heard(told: [Option<Status>; 3]) -> [Option<Status>; 3] {
        [told[0], told[1], told[2].or(Some(Status::QueueFull(false)))]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn the_application_is_told_each_change_once_and_the_state_after_a_pong(
            steps in proptest::collection::vec((0..3u8, 0..4u8, any::<bool>(), 0..4u8), 1..40),
        ) {
            let mut core = up();
            let mut state = BridgeState { wifi_up: false, broker: BrokerState::Unknown, queue_full: false };
            // up() answered the configuration with WiFi down.
            let mut told: [Option<Status>; 3] = [Some(Status::WifiDown), None, None];
            let mut t = 300;
            let check = |core: &mut C, told: &mut [Option<Status>; 3]| {
                for s in statuses(core) {
                    let k = kind(&s);
                    prop_assert_ne!(told[k], Some(s), "told twice in a row");
                    prop_assert!(k != 2 || told[k].is_some() || s == Status::QueueFull(true), "room never lost: {:?}", s);
                    told[k] = Some(s);
                }
                Ok(())
            };
            for (k, value, lost, pong_now) in steps {
                let status = match k {
                    0 => {
                        state.wifi_up = value % 2 == 1;
                        if state.wifi_up { BStatus::WifiUp } else { BStatus::WifiDown }
                    }
                    1 => {
                        // Up with or without a session, or down for one of two reasons.
                        let (broker, status) = match value {
                            0 | 1 => {
                                let session_present = value == 1;
                                (BrokerState::Up { session_present }, BStatus::BrokerUp { session_present })
                            }
                            _ => {
                                let reason = if value == 2 { DownReason::Closed } else { DownReason::KeepaliveTimeout };
                                (BrokerState::Down { reason }, BStatus::BrokerDown { reason })
                            }
                        };
                        state.broker = broker;
                        status
                    }
                    _ => {
                        state.queue_full = value % 2 == 1;
                        BStatus::Backpressure { full: state.queue_full }
                    }
                };
                t += 10;
                if !lost {
                    deliver(&mut core, &BridgeEvent::Status(status), at(t));
                }
                if pong_now == 0 {
                    deliver(&mut core, &pong(state), at(t));
                    check(&mut core, &mut told)?;
                    prop_assert_eq!(heard(told), expected(&state));
                }
                check(&mut core, &mut told)?;
            }
            deliver(&mut core, &pong(state), at(t + 10));
            check(&mut core, &mut told)?;
            prop_assert_eq!(heard(told), expected(&state));
        }
    }
}
