//! Integration tests against a real Mosquitto started by the test on a free 127.0.0.1 port.
#![cfg(feature = "std")]

mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use resilient_mqtt::codec::ConnectReturnCode;
use resilient_mqtt::host::{tcp_connector, HostClient, OwnedEvent, OwnedMessage};
use resilient_mqtt::{DisconnectReason, Options, QoS, SubAckCode, Will};
use support::mosquitto;
use support::proxy::{FaultProxy, Mode};
use test_support::{Config, Mosquitto};

const WAIT: Duration = Duration::from_secs(10);

fn spawn(options: &Options<'_>, addr: SocketAddr) -> HostClient {
    HostClient::spawn(options, tcp_connector(addr, Duration::from_secs(1))).unwrap()
}

/// Waits for an event matching `pred`, returning it and the events seen before it.
fn wait_for(c: &HostClient, timeout: Duration, pred: impl Fn(&OwnedEvent) -> bool) -> (OwnedEvent, Vec<OwnedEvent>) {
    let end = Instant::now() + timeout;
    let mut seen = vec![];
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        match c.next_event(left) {
            Some(e) if pred(&e) => return (e, seen),
            Some(e) => seen.push(e),
            None => break,
        }
    }
    panic!("event not seen within {timeout:?}; saw {seen:?}");
}

fn connected(c: &HostClient) -> bool {
    matches!(wait_for(c, WAIT, |e| matches!(e, OwnedEvent::Connected { .. })).0, OwnedEvent::Connected { session_present } if session_present)
}

fn subscribe(c: &HostClient, filter: &str, qos: QoS) {
    c.subscribe(1000, &[(filter, qos)]).unwrap();
    let (e, _) = wait_for(c, WAIT, |e| matches!(e, OwnedEvent::Subscribed { .. }));
    assert_eq!(
        e,
        OwnedEvent::Subscribed {
            token: 1000,
            results: vec![SubAckCode::Granted(qos)]
        }
    );
}

fn messages(c: &HostClient, n: usize, timeout: Duration) -> Vec<OwnedMessage> {
    let end = Instant::now() + timeout;
    let mut out = vec![];
    while out.len() < n {
        let Some(left) = end.checked_duration_since(Instant::now()) else {
            break;
        };
        match c.next_event(left) {
            Some(OwnedEvent::Message(m)) => out.push(m),
            Some(_) => {}
            None => break,
        }
    }
    out
}

fn mosquitto_sub(broker: &Mosquitto, topic: &str, count: usize) -> Child {
    let child = Command::new("mosquitto_sub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &broker.port().to_string(),
            "-t",
            topic,
            "-q",
            "1",
        ])
        .args(["-C", &count.to_string(), "-W", "10", "-F", "%r %q %t %p"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto_sub");
    // Give it time to subscribe.
    std::thread::sleep(Duration::from_millis(300));
    child
}

fn lines(child: Child) -> Vec<String> {
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

fn mosquitto_pub(broker: &Mosquitto, topic: &str, message: &str, qos: u8) {
    let status = Command::new("mosquitto_pub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &broker.port().to_string(),
            "-t",
            topic,
            "-m",
            message,
        ])
        .args(["-q", &qos.to_string()])
        .status()
        .expect("mosquitto_pub");
    assert!(status.success());
}

fn publish_all(c: &HostClient, range: std::ops::Range<u32>, topic: &str) {
    for i in range {
        c.publish(i, topic, i.to_string().as_bytes(), QoS::AtLeastOnce, false)
            .unwrap();
    }
}

fn wait_published(c: &HostClient, tokens: std::ops::Range<u32>, timeout: Duration) -> Vec<OwnedEvent> {
    wait_published_after(c, tokens, &[], timeout)
}

/// Like `wait_published`, counting the `Published` events among `seen` already.
fn wait_published_after(
    c: &HostClient,
    tokens: std::ops::Range<u32>,
    seen: &[OwnedEvent],
    timeout: Duration,
) -> Vec<OwnedEvent> {
    let mut want: BTreeSet<u32> = tokens.collect();
    for e in seen {
        if let OwnedEvent::Published { token } = e {
            want.remove(token);
        }
    }
    let mut others = vec![];
    let end = Instant::now() + timeout;
    while !want.is_empty() {
        let Some(left) = end.checked_duration_since(Instant::now()) else {
            panic!("not published: {want:?}; other events {others:?}")
        };
        match c.next_event(left) {
            Some(OwnedEvent::Published { token }) => {
                want.remove(&token);
            }
            Some(e) => others.push(e),
            None => {}
        }
    }
    others
}

/// Collects message payloads (decimal numbers) until all of `want` arrived (duplicates allowed) or time runs out.
fn collect(c: &HostClient, want: std::ops::Range<u32>, mut got: BTreeSet<u32>, timeout: Duration) -> BTreeSet<u32> {
    let want: BTreeSet<u32> = want.collect();
    let end = Instant::now() + timeout;
    while !want.is_subset(&got) {
        let Some(left) = end.checked_duration_since(Instant::now()) else {
            break;
        };
        match c.next_event(left) {
            Some(OwnedEvent::Message(m)) => got.extend(payload_set(&[m])),
            Some(_) => {}
            None => break,
        }
    }
    got
}

fn payload_set(msgs: &[OwnedMessage]) -> BTreeSet<u32> {
    msgs.iter()
        .filter_map(|m| std::str::from_utf8(&m.payload).ok()?.parse().ok())
        .collect()
}

#[test]
fn qos0_and_qos1_flow_both_ways_with_mosquitto_clients_as_the_peer() {
    let broker = mosquitto(Config::default());
    let mut o = Options::new("both-ways");
    o.auto_ack = true;
    let c = spawn(&o, broker.addr());
    connected(&c);
    subscribe(&c, "in/#", QoS::AtLeastOnce);
    mosquitto_pub(&broker, "in/zero", "m0", 0);
    mosquitto_pub(&broker, "in/one", "m1", 1);
    let got = messages(&c, 2, WAIT);
    let summary: Vec<_> = got
        .iter()
        .map(|m| (m.topic.as_str(), m.payload.as_slice(), m.qos, m.retain))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("in/zero", &b"m0"[..], QoS::AtMostOnce, false),
            ("in/one", &b"m1"[..], QoS::AtLeastOnce, false)
        ]
    );
    assert!(got[1].packet_id.is_some());

    let sub = mosquitto_sub(&broker, "out/#", 2);
    c.publish(1, "out/zero", b"p0", QoS::AtMostOnce, false).unwrap();
    c.publish(2, "out/one", b"p1", QoS::AtLeastOnce, false).unwrap();
    wait_published(&c, 1..3, WAIT);
    assert_eq!(lines(sub), vec!["0 0 out/zero p0", "0 1 out/one p1"]);
}

#[test]
fn retained_messages_keep_the_flag_and_retain_false_stays_false() {
    let broker = mosquitto(Config::default());
    let publisher = spawn(&Options::new("retain-pub"), broker.addr());
    connected(&publisher);
    publisher.publish(1, "r/state", b"on", QoS::AtLeastOnce, true).unwrap();
    wait_published(&publisher, 1..2, WAIT);

    let mut o = Options::new("retain-sub");
    o.auto_ack = true;
    let sub = spawn(&o, broker.addr());
    connected(&sub);
    subscribe(&sub, "r/#", QoS::AtLeastOnce);
    let first = messages(&sub, 1, WAIT);
    assert_eq!(first[0].payload, b"on");
    assert!(
        first[0].retain,
        "a retained message arrives with retain set to a new subscriber"
    );

    publisher
        .publish(2, "r/state", b"live", QoS::AtLeastOnce, false)
        .unwrap();
    let live = messages(&sub, 1, WAIT);
    assert_eq!(live[0].payload, b"live");
    assert!(!live[0].retain, "retain false stays false");

    let checker = mosquitto_sub(&broker, "r/#", 1);
    assert_eq!(lines(checker), vec!["1 1 r/state on"]);
}

#[test]
fn will_is_delivered_when_the_client_dies() {
    let broker = mosquitto(Config::default());
    let watcher = mosquitto_sub(&broker, "dev/status", 1);
    let mut o = Options::new("will-client");
    o.will = Some(Will {
        topic: "dev/status",
        payload: b"offline",
        qos: QoS::AtLeastOnce,
        retain: false,
    });
    let c = spawn(&o, broker.addr());
    connected(&c);
    drop(c); // closes the socket without DISCONNECT
    assert_eq!(lines(watcher), vec!["0 1 dev/status offline"]);
}

#[test]
fn clean_disconnect_does_not_publish_the_will() {
    let broker = mosquitto(Config::default());
    let mut o = Options::new("will-clean");
    o.will = Some(Will {
        topic: "dev/status",
        payload: b"offline",
        qos: QoS::AtLeastOnce,
        retain: false,
    });
    let sub = spawn(&Options::new("will-watch"), broker.addr());
    connected(&sub);
    subscribe(&sub, "dev/#", QoS::AtLeastOnce);
    let c = spawn(&o, broker.addr());
    connected(&c);
    c.disconnect();
    let (e, _) = wait_for(&c, WAIT, |e| matches!(e, OwnedEvent::Disconnected { .. }));
    assert_eq!(
        e,
        OwnedEvent::Disconnected {
            reason: DisconnectReason::Requested
        }
    );
    drop(c);
    assert!(messages(&sub, 1, Duration::from_millis(700)).is_empty());
}

#[test]
fn persistent_session_delivers_what_was_published_while_away() {
    let broker = mosquitto(Config::default());
    let c = spawn(&Options::new("persist-1"), broker.addr());
    connected(&c);
    subscribe(&c, "away/#", QoS::AtLeastOnce);
    c.disconnect();
    wait_for(&c, WAIT, |e| matches!(e, OwnedEvent::Disconnected { .. }));
    for i in 0..3 {
        mosquitto_pub(&broker, "away/x", &i.to_string(), 1);
    }
    c.reconnect();
    assert!(connected(&c), "the broker kept the session");
    let got = messages(&c, 3, WAIT);
    assert_eq!(payload_set(&got), BTreeSet::from([0, 1, 2]));
    for m in &got {
        c.ack(m.packet_id.unwrap()).unwrap();
    }
}

#[test]
fn wrong_password_gives_the_typed_reason_and_backs_off() {
    let broker = mosquitto(Config {
        credentials: Some(("dev".into(), "right".into())),
        ..Config::default()
    });
    let mut o = Options::new("pw-client");
    o.username = Some("dev");
    o.password = Some(b"wrong");
    let c = spawn(&o, broker.addr());
    let (e, _) = wait_for(&c, WAIT, |e| matches!(e, OwnedEvent::Disconnected { .. }));
    let OwnedEvent::Disconnected {
        reason: DisconnectReason::Refused(code),
    } = e
    else {
        panic!("{e:?}")
    };
    assert!(
        matches!(
            code,
            ConnectReturnCode::NotAuthorized | ConnectReturnCode::BadUserNameOrPassword
        ),
        "{code:?}"
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(c.snapshot().stats.links, 1, "retried a refused CONNECT within 3 s");

    o.password = Some(b"right");
    o.client_id = "pw-client-2";
    let good = spawn(&o, broker.addr());
    connected(&good);
}

#[test]
fn broker_killed_and_restarted_with_persistence_loses_nothing() {
    let mut broker = mosquitto(Config {
        persistence: true,
        ..Config::default()
    });
    let mut so = Options::new("kill-sub");
    so.auto_ack = true;
    let sub = spawn(&so, broker.addr());
    connected(&sub);
    subscribe(&sub, "k/#", QoS::AtLeastOnce);
    let publisher = spawn(&Options::new("kill-pub"), broker.addr());
    connected(&publisher);
    publish_all(&publisher, 0..50, "k/x");
    wait_published(&publisher, 0..50, WAIT);
    let got = collect(&sub, 0..50, BTreeSet::new(), WAIT);
    std::thread::sleep(Duration::from_millis(1_500)); // let the broker save

    broker.kill();
    publish_all(&publisher, 50..100, "k/x"); // into the offline queue
    std::thread::sleep(Duration::from_millis(300));
    let restarted = Instant::now();
    broker.restart().expect("restart mosquitto");
    wait_published(&publisher, 50..100, WAIT);
    eprintln!("broker restart to queue drained: {:?}", restarted.elapsed());
    assert_eq!(collect(&sub, 0..100, got, WAIT), (0..100).collect());
}

#[test]
fn half_open_link_is_detected_within_one_and_a_half_keepalives_and_nothing_is_lost() {
    let broker = mosquitto(Config::default());
    let proxy = FaultProxy::start(broker.addr());
    let mut so = Options::new("ho-sub");
    so.auto_ack = true;
    let sub = spawn(&so, broker.addr());
    connected(&sub);
    subscribe(&sub, "h/#", QoS::AtLeastOnce);
    let mut po = Options::new("ho-pub");
    po.keep_alive_secs = 2;
    let publisher = spawn(&po, proxy.addr());
    connected(&publisher);
    publish_all(&publisher, 0..5, "h/x");
    wait_published(&publisher, 0..5, WAIT);

    proxy.set_mode(Mode::Blackhole);
    let blackholed = Instant::now();
    publish_all(&publisher, 5..10, "h/x");
    let (e, seen) = wait_for(&publisher, WAIT, |e| matches!(e, OwnedEvent::Disconnected { .. }));
    let detected = blackholed.elapsed();
    assert_eq!(
        e,
        OwnedEvent::Disconnected {
            reason: DisconnectReason::PingTimeout
        }
    );
    assert!(
        // 1.5 x keepalive = 3 s after the last byte received (just before the blackhole), plus scheduling slack
        // for a loaded 2-core CI machine; the exact bound is proven in virtual time in tests/session.rs.
        detected <= Duration::from_millis(3_600),
        "half-open detected after {detected:?}"
    );
    eprintln!("half-open detected after {detected:?} with a 2 s keepalive");

    proxy.reset();
    proxy.set_mode(Mode::Pass);
    wait_published_after(&publisher, 5..10, &seen, WAIT);
    assert_eq!(collect(&sub, 0..10, BTreeSet::new(), WAIT), (0..10).collect());
}

#[test]
fn connection_reset_is_recovered_and_nothing_is_lost() {
    let broker = mosquitto(Config::default());
    let proxy = FaultProxy::start(broker.addr());
    let mut so = Options::new("rst-sub");
    so.auto_ack = true;
    let sub = spawn(&so, broker.addr());
    connected(&sub);
    subscribe(&sub, "x/#", QoS::AtLeastOnce);
    let publisher = spawn(&Options::new("rst-pub"), proxy.addr());
    connected(&publisher);
    proxy.set_delay(Duration::from_millis(50)); // keep publications in flight when the RST comes
    publish_all(&publisher, 0..20, "x/y");
    std::thread::sleep(Duration::from_millis(120));
    proxy.reset();
    let (e, seen) = wait_for(&publisher, WAIT, |e| matches!(e, OwnedEvent::Disconnected { .. }));
    assert_eq!(
        e,
        OwnedEvent::Disconnected {
            reason: DisconnectReason::TransportClosed
        }
    );
    proxy.set_delay(Duration::ZERO);
    let others = wait_published_after(&publisher, 0..20, &seen, WAIT);
    assert!(others.iter().any(|e| matches!(e, OwnedEvent::Connected { .. })));
    assert!(publisher.snapshot().stats.retransmissions > 0 || publisher.snapshot().stats.links == 2);
    assert_eq!(collect(&sub, 0..20, BTreeSet::new(), WAIT), (0..20).collect());
}

#[test]
fn added_delay_slows_qos1_down_but_loses_nothing() {
    let broker = mosquitto(Config::default());
    let proxy = FaultProxy::start(broker.addr());
    proxy.set_delay(Duration::from_millis(150));
    let mut so = Options::new("delay-sub");
    so.auto_ack = true;
    let sub = spawn(&so, proxy.addr());
    connected(&sub);
    subscribe(&sub, "d/#", QoS::AtLeastOnce);
    let publisher = spawn(&Options::new("delay-pub"), proxy.addr());
    connected(&publisher);
    publish_all(&publisher, 0..10, "d/x");
    let others = wait_published(&publisher, 0..10, WAIT);
    assert!(
        !others.iter().any(|e| matches!(e, OwnedEvent::Disconnected { .. })),
        "{others:?}"
    );
    assert_eq!(collect(&sub, 0..10, BTreeSet::new(), WAIT), (0..10).collect());
}

#[test]
fn unacknowledged_delivery_is_redelivered_after_a_reconnect_and_acked_one_is_not() {
    let broker = mosquitto(Config::default());
    let proxy = FaultProxy::start(broker.addr());
    let c = spawn(&Options::new("e2e-qos1"), proxy.addr());
    connected(&c);
    subscribe(&c, "e2e/#", QoS::AtLeastOnce);
    mosquitto_pub(&broker, "e2e/a", "first", 1);
    let first = messages(&c, 1, WAIT).remove(0);
    assert!(!first.dup);
    // The application has not taken it yet when the link dies.
    proxy.reset();
    let (again, _) = wait_for(&c, WAIT, |e| matches!(e, OwnedEvent::Message(_)));
    let OwnedEvent::Message(again) = again else {
        unreachable!()
    };
    assert_eq!(
        (again.payload.as_slice(), again.dup),
        (&b"first"[..], true),
        "redelivered with DUP"
    );
    c.ack(again.packet_id.unwrap()).unwrap();
    // Wait until the broker has the PUBACK (its log says so) before cutting the link again.
    let end = Instant::now() + WAIT;
    while !broker.log().contains("Received PUBACK from e2e-qos1") {
        assert!(Instant::now() < end, "the broker never got the PUBACK");
        std::thread::sleep(Duration::from_millis(20));
    }
    proxy.reset();
    connected(&c);
    assert!(
        messages(&c, 1, Duration::from_millis(700)).is_empty(),
        "an acknowledged message came back"
    );
}

#[test]
fn host_client_can_be_shared_between_an_event_thread_and_publishers() {
    fn shareable<T: Send + Sync>() {}
    shareable::<HostClient>();
    let broker = mosquitto(Config::default());
    let c = std::sync::Arc::new(spawn(&Options::new("shared"), broker.addr()));
    connected(&c);
    let publisher = {
        let c = c.clone();
        std::thread::spawn(move || publish_all(&c, 0..20, "s/x"))
    };
    publisher.join().unwrap();
    wait_published(&c, 0..20, WAIT);
}
