//! The figures of `docs/benchmarks.md`, all from one run against a loopback Mosquitto started here:
//!
//! ```text
//! cargo bench -p resilient-mqtt --features std --bench figures
//! ```
//!
//! - QoS 1 publish rate, ours (host runner) against rumqttc with the same in-flight window, and their ratio;
//! - QoS 0 publish rate (publications written to the socket; what a subscriber got is printed beside it);
//! - time from a broker restart (SIGKILL, then start with persistence) to session back and offline queue drained;
//! - half-open detection time for a 2 s keepalive, through a blackholing proxy.

#[path = "../tests/support/proxy.rs"]
mod proxy;

use std::time::{Duration, Instant};

use proxy::{FaultProxy, Mode};
use resilient_mqtt::host::{tcp_connector, HostClient, OwnedEvent};
use resilient_mqtt::{Options, PublishError, QoS};
use test_support::{Config, Mosquitto};

const WINDOW: usize = 16;
const PAYLOAD: usize = 64;

fn spawn(options: &Options<'_>, addr: std::net::SocketAddr) -> HostClient {
    let c = HostClient::spawn(options, tcp_connector(addr, Duration::from_secs(1))).expect("options");
    wait_connected(&c);
    c
}

fn wait_connected(c: &HostClient) -> Duration {
    let start = Instant::now();
    loop {
        match c.next_event(Duration::from_secs(30)) {
            Some(OwnedEvent::Connected { .. }) => return start.elapsed(),
            Some(_) => {}
            None => panic!("no connection"),
        }
    }
}

/// Publishes `n` messages through our host runner and waits for all `Published` events.
fn ours(addr: std::net::SocketAddr, n: u32, qos: QoS, id: &str, topic: &str) -> Duration {
    let mut o = Options::new(id);
    o.max_in_flight = WINDOW;
    o.clean_session = true;
    let c = spawn(&o, addr);
    let payload = [0x5au8; PAYLOAD];
    let start = Instant::now();
    let (mut sent, mut done) = (0u32, 0u32);
    while done < n {
        while sent < n {
            match c.publish(sent, topic, &payload, qos, false) {
                Ok(()) => sent += 1,
                Err(PublishError::QueueFull) => break,
                Err(e) => panic!("{e}"),
            }
        }
        match c.next_event(Duration::from_secs(30)) {
            Some(OwnedEvent::Published { .. }) => done += 1,
            Some(_) => {}
            None => panic!("stalled at {done}/{n}"),
        }
        while let Some(e) = c.try_event() {
            if matches!(e, OwnedEvent::Published { .. }) {
                done += 1;
            }
        }
    }
    start.elapsed()
}

/// The same with rumqttc: QoS 1 done = PUBACK received.
fn rumqttc_qos1(port: u16, n: u32) -> Duration {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut opts = MqttOptions::new("bench-rumqttc", "127.0.0.1", port);
        opts.set_inflight(WINDOW as u16);
        opts.set_keep_alive(Duration::from_secs(30));
        opts.set_clean_session(true);
        let (client, mut eventloop) = AsyncClient::new(opts, 1024);
        loop {
            if let Event::Incoming(Packet::ConnAck(_)) = eventloop.poll().await.expect("rumqttc connect") {
                break;
            }
        }
        let start = Instant::now();
        let publisher = tokio::spawn(async move {
            let payload = vec![0x5au8; PAYLOAD];
            for _ in 0..n {
                client
                    .publish("bench/rumqttc", rumqttc::QoS::AtLeastOnce, false, payload.clone())
                    .await
                    .expect("queue");
            }
            client
        });
        let mut acked = 0;
        while acked < n {
            if let Event::Incoming(Packet::PubAck(_)) = eventloop.poll().await.expect("rumqttc poll") {
                acked += 1;
            }
        }
        let elapsed = start.elapsed();
        drop(publisher.await);
        elapsed
    })
}

fn rate(n: u32, d: Duration) -> f64 {
    f64::from(n) / d.as_secs_f64()
}

/// A Mosquitto of the bench's own on a free 127.0.0.1 port, logging every packet.
fn mosquitto(config: Config) -> Mosquitto {
    Mosquitto::start(
        "figures",
        &Config {
            log_all: true,
            ..config
        },
    )
    .expect("start mosquitto")
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn restart_recovery(rounds: usize, queued: u32) -> Vec<(Duration, Duration)> {
    let mut broker = mosquitto(Config {
        persistence: true,
        ..Config::default()
    });
    let c = spawn(&Options::new("bench-restart"), broker.addr());
    let mut out = vec![];
    let mut token = 0;
    for _ in 0..rounds {
        broker.kill();
        for _ in 0..queued {
            c.publish(token, "bench/restart", b"x", QoS::AtLeastOnce, false)
                .expect("offline queue");
            token += 1;
        }
        std::thread::sleep(Duration::from_secs(1));
        let restarted = Instant::now();
        broker.restart().expect("restart mosquitto");
        let mut back = None;
        let mut left = queued;
        while left > 0 {
            match c.next_event(Duration::from_secs(30)) {
                Some(OwnedEvent::Connected { .. }) => back = Some(restarted.elapsed()),
                Some(OwnedEvent::Published { .. }) => left -= 1,
                Some(_) => {}
                None => panic!("queue not drained"),
            }
        }
        out.push((back.expect("connected"), restarted.elapsed()));
        // Stay up past `BackoffConfig::stable_after` (5 s) so the next outage starts from the first, short delay,
        // as an outage after a good connection does.
        std::thread::sleep(Duration::from_secs(6));
    }
    out
}

fn half_open(rounds: usize, keep_alive: u16) -> Vec<Duration> {
    let broker = mosquitto(Config::default());
    let proxy = FaultProxy::start(broker.addr());
    let mut o = Options::new("bench-halfopen");
    o.keep_alive_secs = keep_alive;
    let c = spawn(&o, proxy.addr());
    let mut out = vec![];
    for _ in 0..rounds {
        // Idle a little so the detection does not start right after a ping.
        std::thread::sleep(Duration::from_millis(700));
        proxy.set_mode(Mode::Blackhole);
        let start = Instant::now();
        loop {
            match c.next_event(Duration::from_secs(30)) {
                Some(OwnedEvent::Disconnected { .. }) => break,
                Some(_) => {}
                None => panic!("half-open never detected"),
            }
        }
        out.push(start.elapsed());
        proxy.reset();
        proxy.set_mode(Mode::Pass);
        wait_connected(&c);
    }
    out
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` / `cargo test --benches` probes
    }
    let broker = mosquitto(Config::default());
    let n = 20_000;
    // Warm up the broker and both clients once.
    ours(broker.addr(), 1_000, QoS::AtLeastOnce, "warm-ours", "bench/ours");
    rumqttc_qos1(broker.port(), 1_000);

    let mut ours_q1 = vec![];
    let mut theirs_q1 = vec![];
    for round in 0..3 {
        ours_q1.push(ours(
            broker.addr(),
            n,
            QoS::AtLeastOnce,
            &format!("bench-ours-{round}"),
            "bench/ours",
        ));
        theirs_q1.push(rumqttc_qos1(broker.port(), n));
    }
    let (o1, t1) = (median(ours_q1), median(theirs_q1));
    println!("QoS 1, {n} x {PAYLOAD} B, window {WINDOW}, median of 3:");
    println!("  resilient-mqtt host runner: {:>9.0} msg/s", rate(n, o1));
    println!("  rumqttc 0.25:               {:>9.0} msg/s", rate(n, t1));
    println!("  ratio ours / rumqttc:       {:>9.2}", rate(n, o1) / rate(n, t1));

    // QoS 0 with a subscriber on the same broker, to show how much of a burst actually gets through.
    let mut so = Options::new("bench-q0-sub");
    so.clean_session = true;
    let sub = spawn(&so, broker.addr());
    sub.subscribe(1, &[("bench/q0", QoS::AtMostOnce)]).expect("subscribe");
    let mut q0 = vec![];
    let mut delivered = vec![];
    for r in 0..3 {
        q0.push(ours(
            broker.addr(),
            n,
            QoS::AtMostOnce,
            &format!("bench-q0-{r}"),
            "bench/q0",
        ));
        let mut got = 0;
        while let Some(e) = sub.next_event(Duration::from_millis(500)) {
            if matches!(e, OwnedEvent::Message(_)) {
                got += 1;
            }
        }
        delivered.push(got);
    }
    println!(
        "QoS 0, {n} x {PAYLOAD} B written to the socket, median of 3: {:.0} msg/s; delivered to a QoS 0 subscriber \
         per run: {delivered:?}",
        rate(n, median(q0))
    );

    let restarts = restart_recovery(5, 100);
    let back = median(restarts.iter().map(|r| r.0).collect());
    let drained = median(restarts.iter().map(|r| r.1).collect());
    println!("Broker SIGKILL, 1 s down, restart with persistence, 100 QoS 1 queued offline, 5 rounds:");
    println!("  restart -> CONNACK: median {back:?}; restart -> queue drained: median {drained:?}");
    println!("  all rounds (back, drained): {restarts:?}");

    let detections = half_open(3, 2);
    println!("Half-open (blackhole) detection, keepalive 2 s (bound 3 s): {detections:?}");
}
