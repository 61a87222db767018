//! End to end through a real Mosquitto broker (started here on a free 127.0.0.1 port), the host bridge (the real
//! bridge service over real TCP) and a simulated target (the real target driver on simulated wires), with
//! Mosquitto's own clients on the other side. Needs `/usr/sbin/mosquitto`, `mosquitto_sub` and `mosquitto_pub`
//! (`./scripts/test.sh` installs them).
//!
//! The tests take one lock: each runs a busy bridge and target, and a 2-core machine should not run several.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bridge_firmware::host::{HostBridge, HostOptions};
use examples::{echo, loopback, target_config, wait_status, with_target, EchoOptions};
use protocol::sim::Wires;
use support::{all_bytes, hex, mosquitto, pub_, serial, Mosquitto, Sub};
use target_driver::{Event, QoS, Status};

fn bridge(wires: &Arc<Wires>, broker: &Mosquitto) -> HostBridge {
    HostBridge::spawn(
        Arc::clone(wires),
        HostOptions {
            broker: Some(loopback(broker.port())),
            ..HostOptions::default()
        },
    )
    .expect("bridge")
}

#[test]
fn target_to_mosquitto_sub_keeps_every_byte_and_the_retain_flag() {
    let _serial = serial();
    let broker = mosquitto("bytes", false);
    let sub = Sub::start(broker.port(), "e2e/bytes/#", &[]);
    sub.ready(broker.port(), "e2e/bytes/sentinel");
    let wires = Wires::new();
    let _bridge = bridge(&wires, &broker);
    let payload = all_bytes();
    let reversed: Vec<u8> = payload.iter().rev().copied().collect();
    let done = with_target(
        &wires,
        target_config(&loopback(broker.port()), "e2e-bytes"),
        Duration::from_secs(60),
        async |c| {
            let up = wait_status(&c, Duration::from_secs(30), |s| matches!(s, Status::BrokerUp { .. })).await;
            assert!(up.is_some(), "broker never came up");
            // QoS 0 completes once queued to the link: the QoS 1 publications after it (acknowledged end to end)
            // prove that it went out before the target stops.
            c.publish("e2e/bytes/zero", &payload, QoS::AtMostOnce, false)
                .await
                .expect("publish");
            c.publish("e2e/bytes/plain", &payload, QoS::AtLeastOnce, false)
                .await
                .expect("publish");
            c.publish("e2e/bytes/retained", &reversed, QoS::AtLeastOnce, true)
                .await
                .expect("publish");
        },
    );
    assert!(done.is_some(), "the target did not finish");
    let mut got = Vec::new();
    while got.iter().filter(|l: &&String| !l.contains("sentinel")).count() < 3 {
        let line = sub.next(Duration::from_secs(20));
        got.push(line.unwrap_or_else(|| panic!("mosquitto_sub saw only {got:?}")));
    }
    got.retain(|l| !l.contains("sentinel"));
    // A live subscriber gets retain 0 even for a retained publication (MQTT 3.1.1, 3.3.1.3).
    assert!(got.contains(&format!("e2e/bytes/plain|0|{}", hex(&payload))), "{got:?}");
    assert!(
        got.contains(&format!("e2e/bytes/retained|0|{}", hex(&reversed))),
        "{got:?}"
    );
    assert!(got.contains(&format!("e2e/bytes/zero|0|{}", hex(&payload))), "{got:?}");
    // A new subscriber: retain true stayed true, retain false stayed false (nothing retained on that topic).
    let late = Sub::start(broker.port(), "e2e/bytes/#", &[]);
    let line = late.next(Duration::from_secs(20)).expect("the retained message");
    assert_eq!(line, format!("e2e/bytes/retained|1|{}", hex(&reversed)));
    assert_eq!(late.next(Duration::from_secs(2)), None, "only one message was retained");
}

#[test]
fn mosquitto_pub_reaches_the_target_through_wildcard_filters() {
    let _serial = serial();
    let broker = mosquitto("wild", false);
    let wires = Wires::new();
    let _bridge = bridge(&wires, &broker);
    let port = broker.port();
    let got = with_target(
        &wires,
        target_config(&loopback(broker.port()), "e2e-wild"),
        Duration::from_secs(60),
        async |c| {
            let up = wait_status(&c, Duration::from_secs(30), |s| matches!(s, Status::BrokerUp { .. })).await;
            assert!(up.is_some(), "broker never came up");
            c.subscribe("e2e/in/+/x", QoS::AtLeastOnce).await.expect("subscribe +");
            c.subscribe("e2e/deep/#", QoS::AtLeastOnce).await.expect("subscribe #");
            // The publisher runs in its own thread while this task keeps taking events.
            let publisher = std::thread::spawn(move || {
                pub_(port, "e2e/in/a/x", &all_bytes(), false);
                pub_(port, "e2e/in/b/y", b"not for us", false);
                pub_(port, "e2e/other", b"not for us either", false);
                pub_(port, "e2e/deep/1/2/3", b"deep", false);
            });
            let mut got = Vec::new();
            let mut buf = vec![0u8; 2048];
            let start = Instant::now();
            while got.len() < 2 && start.elapsed() < Duration::from_secs(30) {
                let ev = embassy_futures::select::select(
                    c.next_event(&mut buf),
                    embassy_time::Timer::after(embassy_time::Duration::from_millis(200)),
                )
                .await;
                if let embassy_futures::select::Either::First(Event::Message(m)) = ev {
                    got.push((m.topic.to_string(), m.payload.to_vec(), m.retain));
                }
            }
            let _ = publisher.join();
            got
        },
    )
    .expect("the target finished");
    assert_eq!(
        got,
        vec![
            ("e2e/in/a/x".to_string(), all_bytes(), false),
            ("e2e/deep/1/2/3".to_string(), b"deep".to_vec(), false)
        ]
    );
}

#[test]
fn broker_sigkill_and_restart_loses_no_acknowledged_qos1_message() {
    let _serial = serial();
    let broker = Arc::new(Mutex::new(mosquitto("kill", true)));
    let addr = loopback(broker.lock().expect("broker").port());
    let wires = Wires::new();
    let host = Arc::new(
        HostBridge::spawn(
            Arc::clone(&wires),
            HostOptions {
                broker: Some(addr.clone()),
                ..HostOptions::default()
            },
        )
        .expect("bridge"),
    );
    // Kill the broker once the bridge has had 30 publications acknowledged, restart it 300 ms later.
    let killer = {
        let (broker, host) = (Arc::clone(&broker), Arc::clone(&host));
        std::thread::spawn(move || {
            let start = Instant::now();
            while host.stats().link.published < 30 && start.elapsed() < Duration::from_secs(60) {
                std::thread::sleep(Duration::from_millis(2));
            }
            let mut b = broker.lock().expect("broker");
            b.kill();
            std::thread::sleep(Duration::from_millis(300));
            b.restart().expect("restart mosquitto");
        })
    };
    let mut config = target_config(&addr, "e2e-kill");
    config.clean_session = false;
    let opts = EchoOptions {
        count: 100,
        qos: QoS::AtLeastOnce,
        payload_size: 64,
        prefix: "e2e/kill".into(),
        concurrency: 4,
        linger: Duration::from_secs(10),
    };
    let report = with_target(&wires, config, Duration::from_secs(100), async |c| {
        let up = wait_status(&c, Duration::from_secs(30), |s| matches!(s, Status::BrokerUp { .. })).await;
        assert!(up.is_some(), "broker never came up");
        echo(&c, &opts).await
    })
    .expect("the target finished")
    .expect("echo");
    killer.join().expect("killer");
    let stats = host.stats();
    eprintln!(
        "sent {}, acknowledged {}, received {}, duplicates {}, reconnects {}, statuses {:?}",
        opts.count, report.published, report.received, report.duplicates, stats.link.reconnects, report.statuses
    );
    assert!(
        stats.link.reconnects >= 1,
        "the broker was killed: the bridge reconnected"
    );
    assert!(
        report.statuses.iter().any(|s| matches!(s, Status::BrokerDown(_))),
        "the target was told: {:?}",
        report.statuses
    );
    assert_eq!(report.published, opts.count, "every publication completed");
    assert_eq!(report.corrupt, 0);
    assert_eq!(report.lost(), 0, "nothing acknowledged was lost");
}
