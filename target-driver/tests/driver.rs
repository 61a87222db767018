//! The async driver against a scripted bridge on simulated wires.

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant as StdInstant};

use common::{Bridge, Knobs};
use embassy_futures::block_on;
use embassy_futures::select::{select, Either};
use embassy_sync::blocking_mutex::raw::NoopRawMutex;
use embassy_time::{Duration, Timer};
use protocol::sim::{target_pins, Chaos, ChaosConfig, Wires};
use target_driver::{Client, Config, Error, Event, Pins, QoS, ResetReason, Resources, Status, Timing, TopicError};

type C<'a> = Client<'a, 'static, NoopRawMutex>;

fn config() -> Config<'static> {
    // Timeouts well above what a loaded 2-core machine running many test threads may stall a thread for.
    let mut c = Config::new("ssid", "secret", "127.0.0.1", 1883, "target-1");
    c.watchdog = Duration::from_millis(1000);
    c.ping_timeout = Duration::from_millis(1000);
    c.reset_pulse = Duration::from_millis(20);
    c.ready_timeout = Duration::from_millis(2000);
    c.max_reset_backoff = Duration::from_secs(2);
    c
}

/// Runs `app` with a driver on `wires` until it returns (or 30 s pass).
fn drive<R>(wires: &Arc<Wires>, config: Config<'static>, app: impl AsyncFnOnce(C<'_>) -> R) -> R {
    let mut res: Resources<'static, NoopRawMutex> = Resources::new();
    let pins = Pins::from(target_pins(wires, Chaos::new(11, ChaosConfig::NONE)));
    let (client, mut runner) = target_driver::new(
        pins,
        config,
        Timing {
            timeout_us: 1_000_000,
            ..Timing::default()
        },
        &mut res,
    )
    .expect("pins");
    block_on(async {
        let app = async {
            match select(app(client), Timer::after(Duration::from_secs(30))).await {
                Either::First(r) => r,
                Either::Second(()) => panic!("the test did not finish in 30 s"),
            }
        };
        match select(runner.run(), app).await {
            Either::First(never) => never,
            Either::Second(r) => r,
        }
    })
}

/// Waits for the first status matching `want`, collecting every status seen.
async fn wait_status(c: &C<'_>, seen: &mut Vec<Status>, want: impl Fn(&Status) -> bool) {
    let mut buf = [0u8; 256];
    loop {
        if let Event::Status(s) = c.next_event(&mut buf).await {
            seen.push(s);
            if want(&s) {
                return;
            }
        }
    }
}

#[test]
fn start_up_resets_configures_and_qos1_publish_completes_only_after_the_broker_ack() {
    let wires = Wires::new();
    let bridge = Bridge::start(&wires, Knobs::default());
    bridge.knobs.ack_delay_ms.store(300, Ordering::Relaxed);
    let waited = drive(&wires, config(), async |c| {
        let mut seen = Vec::new();
        wait_status(&c, &mut seen, |s| *s == Status::BridgeReady).await;
        assert_eq!(seen.first(), Some(&Status::BridgeReset(ResetReason::StartUp)));
        let start = StdInstant::now();
        c.publish("t/qos1", b"hello", QoS::AtLeastOnce, false)
            .await
            .expect("published");
        start.elapsed()
    });
    assert!(
        waited >= StdDuration::from_millis(290),
        "QoS 1 publish returned before the PubAck: {waited:?}"
    );
    let log = bridge.log();
    assert_eq!(log.configures, 1);
    assert_eq!(log.boots, 1);
    assert_eq!(log.publishes.len(), 1);
    assert_eq!(log.publishes[0].1, "t/qos1");
    assert_eq!((log.publishes[0].3, log.publishes[0].4), (QoS::AtLeastOnce, false));
}

#[test]
fn a_qos1_publication_whose_puback_is_lost_is_sent_again_and_completes() {
    let wires = Wires::new();
    let bridge = Bridge::start(&wires, Knobs::default());
    bridge.knobs.lose_pubacks.store(2, Ordering::Relaxed);
    let mut config = config();
    config.answer_timeout = Duration::from_millis(500);
    drive(&wires, config, async |c| {
        for (i, topic) in ["t/lost/1", "t/lost/2", "t/kept"].into_iter().enumerate() {
            c.publish(topic, &[i as u8], QoS::AtLeastOnce, false)
                .await
                .expect("published, after a resend if its PubAck was lost");
        }
        assert_eq!(c.stats().resent, 2);
    });
    let log = bridge.log();
    // The first publication's PubAck was lost twice: it went three times, under its id, then the others once.
    let ids: Vec<u16> = log.publishes.iter().map(|p| p.0).collect();
    assert_eq!(ids.len(), 5, "{ids:?}");
    assert!(
        ids[1] == ids[0] && ids[2] == ids[0] && ids[3] != ids[0] && ids[4] != ids[3],
        "{ids:?}"
    );
    assert_eq!(log.boots, 1, "no reset for a lost answer");
}

/// How many times the bridge has received a publication to `topic`.
fn times_sent(bridge_log: &std::sync::Mutex<common::Log>, topic: &str) -> usize {
    let log = bridge_log.lock().expect("log");
    log.publishes.iter().filter(|p| p.1 == topic).count()
}

#[test]
fn a_publish_dropped_while_it_waits_for_room_sends_nothing_and_one_dropped_later_stays_in_flight() {
    let wires = Wires::new();
    let bridge = Bridge::start(&wires, Knobs::default());
    // No PubAck reaches the driver until the test says so: four publications hold the four slots.
    bridge.knobs.lose_pubacks.store(u32::MAX, Ordering::Relaxed);
    let mut config = config();
    config.answer_timeout = Duration::from_millis(300);
    let (knobs, log) = (Arc::clone(&bridge.knobs), Arc::clone(&bridge.log));
    let in_flight = ["t/in-flight/0", "t/in-flight/1", "t/in-flight/2", "t/in-flight/3"];
    drive(&wires, config, async |c| {
        for topic in in_flight {
            // Dropped once the bridge has it: the publication stays in flight, its outcome unreported.
            let sent = async {
                while times_sent(&log, topic) == 0 {
                    Timer::after(Duration::from_millis(5)).await;
                }
            };
            if let Either::First(r) = select(c.publish(topic, b"x", QoS::AtLeastOnce, false), sent).await {
                panic!("{topic} completed without a PubAck: {r:?}");
            }
        }
        // Every slot is taken (and stays taken: no PubAck comes): this one waits for room, and is dropped while it
        // waits.
        let waiting = c.publish("t/never", b"x", QoS::AtLeastOnce, false);
        if let Either::First(r) = select(waiting, Timer::after(Duration::from_millis(100))).await {
            panic!("a fifth publication found room: {r:?}");
        }
        knobs.lose_pubacks.store(0, Ordering::Relaxed);
        // The four are sent again (their answers are late) and acknowledged, which makes room for this one.
        c.publish("t/after", b"x", QoS::AtLeastOnce, false)
            .await
            .expect("published");
        // Every dropped publication was still in flight: sent again, not forgotten with its future.
        while in_flight.iter().any(|t| times_sent(&log, t) < 2) {
            Timer::after(Duration::from_millis(10)).await;
        }
    });
    assert_eq!(times_sent(&bridge.log, "t/after"), 1);
    assert_eq!(
        times_sent(&bridge.log, "t/never"),
        0,
        "a publication dropped before it started was sent"
    );
}

#[test]
fn statuses_lost_on_the_link_reach_the_application_from_the_watchdogs_ping() {
    let wires = Wires::new();
    let bridge = Bridge::start(&wires, Knobs::default());
    bridge.knobs.lose_statuses.store(2, Ordering::Relaxed);
    let (seen, waited) = drive(&wires, config(), async |c| {
        let mut seen = Vec::new();
        wait_status(&c, &mut seen, |s| *s == Status::BridgeReady).await;
        let ready = StdInstant::now();
        wait_status(&c, &mut seen, |s| matches!(s, Status::BrokerUp { .. })).await;
        (seen, ready.elapsed())
    });
    // The bridge's WifiUp and BrokerUp after the configuration never came: the answer to the watchdog's first ping
    // (after 1 s of quiet) said so instead, in the same order.
    let n = seen.len();
    assert_eq!(
        seen[n - 2..],
        [Status::WifiUp, Status::BrokerUp { session_present: false }],
        "{seen:?}"
    );
    assert!(waited >= StdDuration::from_millis(900), "{waited:?}");
    let log = bridge.log();
    assert!(log.pings >= 1);
    assert_eq!(log.boots, 1, "no reset");
}

#[test]
fn a_configuration_lost_on_the_link_is_sent_again_and_the_broker_comes_up() {
    let wires = Wires::new();
    let bridge = Bridge::start(&wires, Knobs::default());
    bridge.knobs.lose_configures.store(1, Ordering::Relaxed);
    let mut config = config();
    config.answer_timeout = Duration::from_millis(500);
    let seen = drive(&wires, config, async |c| {
        // An application that waits for the broker before it does anything.
        let mut seen = Vec::new();
        wait_status(&c, &mut seen, |s| matches!(s, Status::BrokerUp { .. })).await;
        seen
    });
    assert!(seen.contains(&Status::BrokerUp { session_present: false }), "{seen:?}");
    let log = bridge.log();
    assert_eq!(
        (log.configures, log.boots),
        (1, 1),
        "configured once it got through, without a reset"
    );
}

#[test]
fn a_subscription_past_a_full_table_is_an_error_not_a_wait() {
    let wires = Wires::new();
    let _bridge = Bridge::start(&wires, Knobs::default());
    let last = drive(&wires, config(), async |c| {
        // The default table holds four.
        for f in ["a/1", "a/2", "a/3", "a/4"] {
            assert_eq!(c.subscribe(f, QoS::AtMostOnce).await, Ok(QoS::AtMostOnce));
        }
        c.subscribe("a/5", QoS::AtMostOnce).await
    });
    assert_eq!(last, Err(Error::TooManySubscriptions));
}

#[test]
fn wildcard_subscription_delivers_every_byte_value_and_acks_only_when_taken() {
    let wires = Wires::new();
    let bridge = Bridge::start(&wires, Knobs::default());
    bridge.knobs.echo.store(true, Ordering::Relaxed);
    let payload: Vec<u8> = (0..=255u8).collect();
    let (topic, got, qos, acks_before_take) = drive(&wires, config(), async |c| {
        assert_eq!(
            c.subscribe("sensors/+/raw", QoS::AtLeastOnce).await,
            Ok(QoS::AtLeastOnce)
        );
        // The application reads events in a task of its own (here: a future joined with the publisher), as it
        // must: a message it has not taken holds the link, and acknowledgements behind it wait too.
        let publisher = async {
            c.publish("sensors/a/raw", &payload[..128], QoS::AtLeastOnce, false)
                .await
                .expect("first half");
            c.publish("sensors/b/raw", &payload[128..], QoS::AtLeastOnce, false)
                .await
                .expect("second half");
            c.publish("other/a/raw", b"not for us", QoS::AtMostOnce, false)
                .await
                .expect("qos 0");
        };
        let reader = async {
            // Let the first message arrive and wait: it must not be acknowledged before it is taken.
            Timer::after(Duration::from_millis(200)).await;
            let acks_before_take = bridge.log().acks.len();
            let mut buf = [0u8; 256];
            let (mut got, mut topics, mut qos) = (Vec::new(), Vec::new(), Vec::new());
            while got.len() < 256 {
                if let Event::Message(m) = c.next_event(&mut buf).await {
                    topics.push(m.topic.to_string());
                    got.extend_from_slice(m.payload);
                    qos.push(m.qos);
                }
            }
            (topics, got, qos, acks_before_take)
        };
        let ((), r) = embassy_futures::join::join(publisher, reader).await;
        Timer::after(Duration::from_millis(100)).await;
        r
    });
    assert_eq!(topic, ["sensors/a/raw", "sensors/b/raw"]);
    assert_eq!(got, payload, "8-bit payload changed on the way");
    assert_eq!(qos, [QoS::AtLeastOnce, QoS::AtLeastOnce]);
    assert_eq!(
        acks_before_take, 0,
        "a message was acknowledged before the application took it"
    );
    assert_eq!(bridge.log().acks.len(), 2);
}

#[test]
fn invalid_topics_and_payloads_are_refused_before_anything_is_sent() {
    let wires = Wires::new();
    let bridge = Bridge::start(&wires, Knobs::default());
    drive(&wires, config(), async |c| {
        assert_eq!(
            c.publish("a/+/b", b"x", QoS::AtMostOnce, false).await,
            Err(Error::Topic(TopicError::WildcardInTopic))
        );
        assert_eq!(
            c.publish("", b"x", QoS::AtMostOnce, false).await,
            Err(Error::Topic(TopicError::Empty))
        );
        let long = "x".repeat(65);
        assert_eq!(
            c.publish(&long, b"x", QoS::AtMostOnce, false).await,
            Err(Error::Topic(TopicError::TooLong))
        );
        assert_eq!(
            c.publish("a", &[0u8; 129], QoS::AtMostOnce, false).await,
            Err(Error::PayloadTooLong)
        );
        assert_eq!(
            c.subscribe("a/#/b", QoS::AtMostOnce).await,
            Err(Error::Topic(TopicError::BadWildcard))
        );
        assert_eq!(
            c.publish("a", b"x", QoS::Unknown(2), false).await,
            Err(Error::UnsupportedQoS)
        );
    });
    assert!(bridge.log().publishes.is_empty());
}

#[test]
fn a_bridge_that_hangs_mid_publication_is_reset_and_every_unacked_publication_is_resent() {
    let wires = Wires::new();
    let bridge = Bridge::start(&wires, Knobs::default());
    bridge.knobs.hang_after.store(3, Ordering::Relaxed);
    let seen = drive(&wires, config(), async |c| {
        assert!(c.subscribe("cmd/#", QoS::AtLeastOnce).await.is_ok());
        let publish = async |i: u8| c.publish("t/n", &[i], QoS::AtLeastOnce, false).await;
        // Four publications in flight at once; the bridge hangs on the third.
        let (a, b) = embassy_futures::join::join(
            embassy_futures::join::join(publish(1), publish(2)),
            embassy_futures::join::join(publish(3), publish(4)),
        )
        .await;
        assert_eq!((a, b), ((Ok(()), Ok(())), (Ok(()), Ok(()))));
        let mut seen = Vec::new();
        let mut buf = [0u8; 64];
        while let Either::First(Event::Status(s)) =
            select(c.next_event(&mut buf), Timer::after(Duration::from_millis(50))).await
        {
            seen.push(s);
        }
        seen
    });
    // A hung bridge is caught by the link timeout (mid-exchange) or by the unanswered ping.
    assert!(
        seen.iter().any(|s| matches!(
            s,
            Status::BridgeReset(ResetReason::Unresponsive | ResetReason::LinkFault)
        )),
        "statuses: {seen:?}"
    );
    let log = bridge.log();
    assert!(log.boots >= 2, "the bridge was not reset");
    assert_eq!(log.configures, log.boots, "not reconfigured after each reset");
    assert_eq!(
        log.subscribes.len() as u32,
        log.boots,
        "subscription not replayed after each reset"
    );
    assert!(log.subscribes.iter().all(|s| s == "cmd/#"));
    let mut ids: Vec<u8> = log.publishes.iter().map(|p| p.2[0]).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids, [1, 2, 3, 4], "a publication was lost");
}

#[test]
fn a_dead_bridge_gives_status_events_and_backs_off() {
    let wires = Wires::new();
    let start = StdInstant::now();
    let mut cfg = config();
    cfg.ready_timeout = Duration::from_millis(300);
    let seen = drive(&wires, cfg, async |c| {
        let mut seen = Vec::new();
        let mut buf = [0u8; 64];
        while let Either::First(Event::Status(s)) =
            select(c.next_event(&mut buf), Timer::after(Duration::from_millis(3000))).await
        {
            seen.push((s, start.elapsed()));
            if start.elapsed() > StdDuration::from_secs(4) {
                break;
            }
        }
        seen
    });
    let resets: Vec<_> = seen
        .iter()
        .filter(|(s, _)| matches!(s, Status::BridgeReset(_)))
        .collect();
    assert!(resets.len() >= 3, "too few attempts: {seen:?}");
    // Backoff: with a 300 ms ready timeout, retrying without pause would make more than 12 attempts in 4 s.
    assert!(resets.len() <= 10, "retries storm the bridge: {seen:?}");
    assert!(!seen.iter().any(|(s, _)| *s == Status::BridgeReady));
}

#[test]
fn a_flood_of_incoming_messages_is_held_by_flow_control_and_nothing_is_lost() {
    let wires = Wires::new();
    let bridge = Bridge::start(&wires, Knobs::default());
    let got = drive(&wires, config(), async |c| {
        let mut seen = Vec::new();
        wait_status(&c, &mut seen, |s| matches!(s, Status::BrokerUp { .. })).await;
        bridge.knobs.flood.store(300, Ordering::Relaxed);
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        while got.len() < 300 {
            match select(c.next_event(&mut buf), Timer::after(Duration::from_secs(5))).await {
                Either::First(Event::Message(m)) => {
                    got.push(u32::from_le_bytes(m.payload.try_into().expect("4 bytes")));
                    if got.len() % 50 == 0 {
                        // A slow application: the link must hold, not drop.
                        Timer::after(Duration::from_millis(30)).await;
                    }
                }
                Either::First(Event::Status(s)) => seen.push(s),
                Either::Second(()) => panic!("stuck after {} messages; statuses {seen:?}; {:?}", got.len(), c.stats()),
            }
        }
        // The runner stops with this closure: give it time to send the last acknowledgements.
        Timer::after(Duration::from_millis(300)).await;
        got
    });
    assert_eq!(got, (0..300).collect::<Vec<_>>());
    assert_eq!(bridge.log().acks.len(), 300, "each message acknowledged once");
}

#[test]
fn a_flood_read_in_place_with_next_event_with_loses_nothing_and_acks_everything() {
    let wires = Wires::new();
    let bridge = Bridge::start(&wires, Knobs::default());
    let got = drive(&wires, config(), async |c| {
        let mut seen = Vec::new();
        wait_status(&c, &mut seen, |s| matches!(s, Status::BrokerUp { .. })).await;
        bridge.knobs.flood.store(200, Ordering::Relaxed);
        let mut got = Vec::new();
        while got.len() < 200 {
            let read = c.next_event_with(|ev| match ev {
                Event::Message(m) => Some(u32::from_le_bytes(m.payload.try_into().expect("4 bytes"))),
                Event::Status(_) => None,
            });
            match select(read, Timer::after(Duration::from_secs(5))).await {
                Either::First(Some(n)) => got.push(n),
                Either::First(None) => {}
                Either::Second(()) => panic!("stuck after {} messages; {:?}", got.len(), c.stats()),
            }
        }
        // The runner stops with this closure: give it time to send the last acknowledgements.
        Timer::after(Duration::from_millis(300)).await;
        got
    });
    assert_eq!(got, (0..200).collect::<Vec<_>>());
    // Every message was QoS 1 and taken: each is acknowledged, once.
    let mut acks = bridge.log().acks.clone();
    let sent = acks.len();
    acks.sort_unstable();
    acks.dedup();
    assert_eq!((acks.len(), sent), (200, 200), "(distinct, sent) acknowledgements");
}

#[test]
fn a_bridge_stalling_for_a_second_loses_nothing() {
    let wires = Wires::new();
    let bridge = Bridge::start(&wires, Knobs::default());
    let done = drive(&wires, config(), async |c| {
        c.publish("t/s", b"0", QoS::AtLeastOnce, false)
            .await
            .expect("before the stall");
        bridge.knobs.stall_ms.store(1000, Ordering::Relaxed);
        for i in 1..=5u8 {
            c.publish("t/s", &[b'0' + i], QoS::AtLeastOnce, false)
                .await
                .expect("during and after the stall");
        }
        assert_eq!(c.time().await, Some(1_764_000_000_000));
        true
    });
    assert!(done);
    let mut got: Vec<u8> = bridge.log().publishes.iter().map(|p| p.2[0]).collect();
    got.sort_unstable();
    got.dedup();
    assert_eq!(got, b"012345");
}

#[test]
fn the_ready_after_a_reset_is_taken_at_once_not_at_the_ready_timeout() {
    let wires = Wires::new();
    let _bridge = Bridge::start(&wires, Knobs::default());
    let mut cfg = config();
    cfg.ready_timeout = Duration::from_secs(10);
    let start = StdInstant::now();
    let ready_after = drive(&wires, cfg, async |c| {
        let mut seen = Vec::new();
        wait_status(&c, &mut seen, |s| *s == Status::BridgeReady).await;
        assert!(
            !seen
                .iter()
                .any(|s| matches!(s, Status::BridgeReset(ResetReason::NotReady))),
            "{seen:?}"
        );
        start.elapsed()
    });
    // The bridge boots in 20 ms; the Ready used to wait in the port until the 10 s ready timeout.
    assert!(
        ready_after < StdDuration::from_secs(5),
        "Ready taken only after {ready_after:?}"
    );
}

#[test]
fn an_idle_link_answers_the_watchdog_and_the_bridge_is_not_reset() {
    let wires = Wires::new();
    let bridge = Bridge::start(&wires, Knobs::default());
    let seen = drive(&wires, config(), async |c| {
        let mut seen = Vec::new();
        wait_status(&c, &mut seen, |s| matches!(s, Status::BrokerUp { .. })).await;
        // Nothing to say for 5 s: the watchdog (1 s) pings, the Pong must count before the ping timeout (1 s).
        let mut buf = [0u8; 64];
        while let Either::First(ev) = select(c.next_event(&mut buf), Timer::after(Duration::from_secs(5))).await {
            if let Event::Status(s) = ev {
                seen.push(s);
            }
        }
        seen
    });
    assert!(bridge.log().pings >= 2, "the watchdog did not ping an idle bridge");
    assert!(
        !seen
            .iter()
            .any(|s| matches!(s, Status::BridgeReset(ResetReason::Unresponsive))),
        "{seen:?}"
    );
    assert_eq!(bridge.log().boots, 1);
}
