//! The blocking client in a superloop against the scripted bridge on simulated wires.

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration as StdDuration, Instant as StdInstant};

use common::{Bridge, Knobs};
use embassy_time::{Duration, Instant};
use protocol::sim::{target_pins, Chaos, ChaosConfig, SimDelay, Wires};
use target_driver::blocking::Client;
use target_driver::{Config, Error, Event, Outcome, Pins, QoS, Status, Timing};

#[test]
fn superloop_publishes_subscribes_and_receives() {
    let wires = Wires::new();
    let bridge = Bridge::start(&wires, Knobs::default());
    bridge.knobs.echo.store(true, Ordering::Relaxed);
    let start = StdInstant::now();
    let now = || Instant::from_micros(start.elapsed().as_micros() as u64);
    let mut config = Config::new("ssid", "pw", "broker", 1883, "blocking-1");
    config.reset_pulse = Duration::from_millis(20);
    let pins = Pins::from(target_pins(&wires, Chaos::new(5, ChaosConfig::NONE)));
    let mut client: Client<'_, _, _, _, _, _, _> =
        Client::new(pins, SimDelay, config, Timing::default(), now()).expect("pins");

    let mut statuses = Vec::new();
    let mut sub = None;
    let mut publ = None;
    let mut published = false;
    let mut received = None;
    while start.elapsed() < StdDuration::from_secs(20) && (received.is_none() || !published) {
        client.poll(now());
        while let Some(ev) = client.next_event() {
            match ev {
                Event::Status(s) => statuses.push(s),
                Event::Message(m) => received = Some((m.topic.to_string(), m.payload.to_vec(), m.qos)),
            }
        }
        if client.bridge_up() && sub.is_none() {
            sub = Some(client.subscribe("loop/#", QoS::AtLeastOnce).expect("subscribe"));
        }
        if let Some(t) = sub {
            if let Some(r) = client.outcome(t) {
                assert_eq!(r, Ok(Outcome::Subscribed(QoS::AtLeastOnce)));
                assert_eq!(
                    client.publish("loop/+", b"x", QoS::AtMostOnce, false),
                    Err(Error::Topic(target_driver::TopicError::WildcardInTopic))
                );
                publ = Some(
                    client
                        .publish("loop/1", &[0, 1, 254, 255], QoS::AtLeastOnce, false)
                        .expect("publish"),
                );
                sub = Some(target_driver::Token(0));
            }
        }
        if let Some(t) = publ {
            if let Some(r) = client.outcome(t) {
                assert_eq!(r, Ok(Outcome::Published));
                published = true;
            }
        }
        std::thread::yield_now();
    }
    assert!(published, "publication not acknowledged; statuses {statuses:?}");
    assert_eq!(
        received,
        Some(("loop/1".to_string(), vec![0, 1, 254, 255], QoS::AtLeastOnce))
    );
    assert!(statuses.contains(&Status::BridgeReady));
    // Let the ack go out.
    let until = StdInstant::now() + StdDuration::from_millis(200);
    while StdInstant::now() < until {
        client.poll(now());
    }
    assert_eq!(bridge.log().acks.len(), 1);
}
