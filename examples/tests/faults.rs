//! End-to-end faults through a real Mosquitto (started here on a free 127.0.0.1 port), the host bridge over real
//! TCP (in-process, or the `mqtt-bridge` program as a child process) and a simulated target running the real
//! target driver: a blackholed and a reset broker connection (through a TCP fault proxy), a bridge hung until the
//! target's watchdog resets it, a bridge process killed with SIGKILL and started again, the will when the bridge
//! dies, a broker that sends garbage (through a fake broker in front of Mosquitto), spurious edges on the link's
//! clocks that cost frames both ways, and bad input (a wildcard in a publish topic, wrong credentials).
//!
//! Each echo run prints what was sent, acknowledged (QoS 1, end to end), seen at the broker by a `mosquitto_sub`
//! connected straight to it, and received back by the target. QoS 1 with a persistent session: nothing
//! acknowledged may be lost either way; duplicates may follow a fault.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bridge_firmware::host::{BrokerAddr, HostBridge, HostOptions};
use examples::{echo, loopback, target_config, wait_status, with_target, EchoOptions, EchoReport};
use protocol::sim::{Line, Wires};
use support::{
    attach_wires, mosquitto, serial, temp_dir, BridgeProc, FaultProxy, GarbageBroker, GarbagePlan, Mosquitto, Sub,
    Tally, TempDir, WireRelay,
};
use target_driver::{Config, DownReason, Error, QoS, ResetReason, Status, TopicError};

fn host_bridge(wires: &Arc<Wires>, broker: BrokerAddr) -> HostBridge {
    debug_logging();
    HostBridge::spawn(
        Arc::clone(wires),
        HostOptions {
            broker: Some(broker),
            ..HostOptions::default()
        },
    )
    .expect("bridge")
}

/// `E2E_LOG=debug` (or another level) logs the bridge and the target to stderr.
fn debug_logging() {
    if let Some(level) = std::env::var("E2E_LOG")
        .ok()
        .and_then(|l| bridge_firmware::host::parse_level(&l).ok())
    {
        bridge_firmware::host::init_logging(level);
    }
}

/// A persistent session (what QoS 1 across a reconnection needs) and a will on `will_topic`.
fn persistent_config(broker: &BrokerAddr, id: &str, will_topic: Option<&'static str>) -> Config<'static> {
    let mut c = target_config(broker, id);
    c.clean_session = false;
    c.will = will_topic.map(|topic| target_driver::will(topic, b"bridge gone", QoS::AtLeastOnce, false));
    c
}

fn echo_options(prefix: &str, count: u32) -> EchoOptions {
    EchoOptions {
        count,
        qos: QoS::AtLeastOnce,
        payload_size: 64,
        prefix: prefix.into(),
        concurrency: 4,
        linger: Duration::from_secs(10),
    }
}

/// Runs the echo on the target until it has received everything back (or gave up waiting).
fn run_echo(wires: &Arc<Wires>, config: Config<'static>, opts: &EchoOptions) -> EchoReport {
    with_target(wires, config, Duration::from_secs(120), async |c| {
        let up = wait_status(&c, Duration::from_secs(30), |s| matches!(s, Status::BrokerUp { .. })).await;
        assert!(up.is_some(), "broker never came up");
        echo(&c, opts).await
    })
    .expect("the target finished")
    .expect("echo")
}

/// Prints the counts and asserts that nothing acknowledged was lost either way.
fn check_nothing_lost(test: &str, opts: &EchoOptions, report: &EchoReport, tally: &Tally) {
    let at_broker = tally.wait_distinct(report.published as usize, Duration::from_secs(10));
    let counts = tally.counts.lock().unwrap_or_else(|p| p.into_inner());
    eprintln!(
        "{test}: sent {}, acknowledged {}, at the broker {} (duplicates {}), received back {} (duplicates {}), \
         statuses {:?}",
        opts.count,
        report.published,
        at_broker,
        counts.duplicates(),
        report.received,
        report.duplicates,
        report.statuses
    );
    assert_eq!(report.published, opts.count, "every publication was acknowledged");
    assert_eq!(report.publish_errors, 0);
    assert_eq!(report.corrupt, 0);
    assert!(
        at_broker >= report.published as usize,
        "every acknowledged publication reached the broker"
    );
    assert_eq!(
        report.lost(),
        0,
        "every acknowledged publication came back to the target"
    );
}

/// Waits for `topic`'s line on `sub`.
fn wait_line(sub: &Sub, topic: &str, timeout: Duration) -> Option<String> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if let Some(line) = sub.next(Duration::from_millis(100)) {
            if line.starts_with(topic) {
                return Some(line);
            }
        }
    }
    None
}

/// Spurious edges on the link's clocks, each one the peer is sure to see, one every `every` from [`Glitches::start`]
/// on, `max` in all (so that a slow machine, where each costs more, still gets to the end): they cost frames (the
/// link is in step again at the next preamble).
struct Glitches {
    started: Arc<AtomicBool>,
    done: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<u32>,
}

impl Glitches {
    fn spawn(wires: &Arc<Wires>, every: Duration, max: u32) -> Glitches {
        let (started, done) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        let thread = {
            let (wires, started, done) = (Arc::clone(wires), Arc::clone(&started), Arc::clone(&done));
            std::thread::spawn(move || {
                let mut n = 0u32;
                while !done.load(Ordering::Relaxed) && n < max {
                    if !started.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                    std::thread::sleep(every);
                    let (line, watch) = if n % 2 == 0 {
                        (Line::BClk, Line::TClk)
                    } else {
                        (Line::TClk, Line::BClk)
                    };
                    wires.glitch_seen(line, watch, Duration::from_millis(5));
                    n += 1;
                }
                n
            })
        };
        Glitches { started, done, thread }
    }

    fn start(&self) {
        self.started.store(true, Ordering::Relaxed);
    }

    /// Stops them; how many there were.
    fn stop(self) -> u32 {
        self.done.store(true, Ordering::Relaxed);
        self.thread.join().expect("glitches")
    }
}

/// Runs `fault` on `host` once the bridge has sent `after` publications; returns when it ran.
fn fault_after(
    host: &Arc<HostBridge>,
    after: u32,
    fault: impl FnOnce() + Send + 'static,
) -> std::thread::JoinHandle<Instant> {
    let host = Arc::clone(host);
    std::thread::spawn(move || {
        let start = Instant::now();
        while host.stats().link.published < after && start.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(2));
        }
        let at = Instant::now();
        fault();
        at
    })
}

#[test]
fn blackholed_broker_connection_is_detected_within_1_5_keepalive_and_nothing_acknowledged_is_lost() {
    let _serial = serial();
    const KEEPALIVE_S: u16 = 2;
    let broker = mosquitto("blackhole", false);
    let tally = Tally::start(broker.port(), "e2e/bh");
    let proxy = Arc::new(FaultProxy::start(broker.addr()));
    let wires = Wires::new();
    let host = Arc::new(host_bridge(&wires, proxy.addr()));
    let fault = {
        let p = Arc::clone(&proxy);
        fault_after(&host, 40, move || p.blackhole())
    };
    let mut config = persistent_config(&loopback(broker.port()), "e2e-blackhole", None);
    config.keepalive_s = KEEPALIVE_S;
    let opts = echo_options("e2e/bh", 150);
    let report = run_echo(&wires, config, &opts);
    let blackholed_at = fault.join().expect("fault");
    let detected = proxy
        .client_gave_up_after(blackholed_at)
        .map(|t| t - blackholed_at)
        .expect("the bridge never gave the blackholed connection up");
    let stats = host.stats();
    eprintln!(
        "blackhole: detected after {} ms (keepalive {KEEPALIVE_S} s), connections through the proxy {}, \
         reconnects {}",
        detected.as_millis(),
        proxy.accepted().len(),
        stats.link.reconnects
    );
    check_nothing_lost("blackhole", &opts, &report, &tally);
    // 1.5 keepalives from the last byte received, plus 1 s for a loaded machine's scheduling.
    let bound = Duration::from_millis(1_500 * u64::from(KEEPALIVE_S) + 1_000);
    assert!(detected <= bound, "detected after {detected:?}, more than {bound:?}");
    assert!(stats.link.reconnects >= 1, "the bridge reconnected");
    assert!(
        report
            .statuses
            .contains(&Status::BrokerDown(DownReason::KeepaliveTimeout)),
        "the target was told why: {:?}",
        report.statuses
    );
}

#[test]
fn reset_broker_connection_reconnects_nothing_acknowledged_is_lost_and_the_will_is_published() {
    let _serial = serial();
    let broker = mosquitto("reset", false);
    let tally = Tally::start(broker.port(), "e2e/rst");
    let will = Sub::start(broker.port(), "e2e/will/#", &[]);
    will.ready(broker.port(), "e2e/will/sentinel");
    let proxy = Arc::new(FaultProxy::start(broker.addr()));
    let wires = Wires::new();
    let host = Arc::new(host_bridge(&wires, proxy.addr()));
    let fault = {
        let p = Arc::clone(&proxy);
        fault_after(&host, 40, move || p.reset())
    };
    let config = persistent_config(&loopback(broker.port()), "e2e-reset", Some("e2e/will/reset"));
    let opts = echo_options("e2e/rst", 150);
    let report = run_echo(&wires, config, &opts);
    fault.join().expect("fault");
    let stats = host.stats();
    eprintln!(
        "reset: connections through the proxy {}, reconnects {}",
        proxy.accepted().len(),
        stats.link.reconnects
    );
    check_nothing_lost("reset", &opts, &report, &tally);
    assert!(stats.link.reconnects >= 1, "the bridge reconnected");
    assert!(proxy.accepted().len() >= 2, "through the proxy again");
    assert!(
        report.statuses.iter().any(|s| matches!(s, Status::BrokerDown(_))),
        "the target was told: {:?}",
        report.statuses
    );
    let line = wait_line(&will, "e2e/will/reset", Duration::from_secs(10));
    assert_eq!(
        line.as_deref(),
        Some("e2e/will/reset|0|62726964676520676f6e65"),
        "the reset connection's will"
    );
}

#[test]
fn frames_lost_to_glitches_on_the_link_are_sent_again_and_every_publication_completes() {
    // The link drops a damaged frame and does not retransmit: a lost Publish or PubAck must not leave a publication
    // waiting forever. Spurious edges on the clocks, one every 30 ms, cost frames (the link is in step again at the
    // next preamble); the target sends an unanswered request again after one to two answer timeouts (300 ms here).
    let _serial = serial();
    let broker = mosquitto("glitch", false);
    let tally = Tally::start(broker.port(), "e2e/glitch");
    let wires = Wires::new();
    let host = host_bridge(&wires, loopback(broker.port()));
    let mut config = persistent_config(&loopback(broker.port()), "e2e-glitch", None);
    config.answer_timeout = embassy_time::Duration::from_millis(300);
    let count = 300u32;
    // From the broker's BrokerUp on (glitches at start-up cost resets and their backoff, which is not what this
    // measures) until the last publication completed.
    let glitches = Glitches::spawn(&wires, Duration::from_millis(30), 200);
    let stats = with_target(&wires, config, Duration::from_secs(120), async |c| {
        let up = wait_status(&c, Duration::from_secs(30), |s| matches!(s, Status::BrokerUp { .. })).await;
        assert!(up.is_some(), "broker never came up");
        glitches.start();
        for seq in 0..count {
            let mut payload = [0u8; 100];
            payload[..4].copy_from_slice(&seq.to_le_bytes());
            c.publish(&format!("e2e/glitch/{seq}"), &payload, QoS::AtLeastOnce, false)
                .await
                .expect("published");
        }
        c.stats()
    });
    let glitched = glitches.stop();
    let stats = stats.expect("every publication completed within 120 s");
    let link = host.stats().link;
    eprintln!(
        "glitch: {glitched} glitches; target: resent {}, frame errors {}, bridge resets {}; bridge: frame errors {}, \
         resyncs {}",
        stats.resent, stats.frame_errors, stats.resets, link.frame_errors, link.resyncs
    );
    assert_eq!(
        tally.wait_distinct(count as usize, Duration::from_secs(10)),
        count as usize,
        "every acknowledged publication reached the broker"
    );
    assert!(
        stats.frame_errors + link.frame_errors + link.resyncs > 0,
        "the glitches cost no frame: this run shows nothing"
    );
}

#[test]
fn messages_lost_to_glitches_on_the_link_are_delivered_again_and_nothing_acknowledged_is_lost() {
    // The other direction: a lost Message (bridge to target) or Ack (target to bridge) leaves a delivery
    // unacknowledged to the broker, which sends it again only on a new connection: the bridge reconnects when a
    // target that talks on leaves it unacknowledged for ACK_TIMEOUT (persistent session).
    let _serial = serial();
    let broker = mosquitto("glitch-echo", false);
    let tally = Tally::start(broker.port(), "e2e/glecho");
    let wires = Wires::new();
    let host = host_bridge(&wires, loopback(broker.port()));
    let mut config = persistent_config(&loopback(broker.port()), "e2e-glitch-echo", None);
    config.answer_timeout = embassy_time::Duration::from_millis(300);
    let mut opts = echo_options("e2e/glecho", 100);
    opts.linger = Duration::from_secs(30);
    let glitches = Glitches::spawn(&wires, Duration::from_millis(30), 200);
    let report = with_target(&wires, config, Duration::from_secs(180), async |c| {
        let up = wait_status(&c, Duration::from_secs(30), |s| matches!(s, Status::BrokerUp { .. })).await;
        assert!(up.is_some(), "broker never came up");
        glitches.start();
        echo(&c, &opts).await
    });
    let glitched = glitches.stop();
    let report = report.expect("the target finished").expect("echo");
    let stats = host.stats();
    eprintln!(
        "glitch-echo: {glitched} glitches; bridge: frame errors {}, resyncs {}, reconnections for a lost delivery {}",
        stats.link.frame_errors, stats.link.resyncs, stats.redelivery_reconnects
    );
    check_nothing_lost("glitch-echo", &opts, &report, &tally);
}

#[test]
fn broker_sending_garbage_gets_a_clean_reconnect_with_backoff_and_nothing_acknowledged_is_lost() {
    let _serial = serial();
    let broker = mosquitto("garbage", false);
    let tally = Tally::start(broker.port(), "e2e/garbage");
    // Connection 0 is forwarded until garbage is injected mid-session; connection 1 gets garbage for its CONNACK;
    // every later one is forwarded.
    let fake = Arc::new(GarbageBroker::start(
        broker.addr(),
        &[
            GarbagePlan::Forward,
            GarbagePlan::AnswerConnectWithGarbage,
            GarbagePlan::Forward,
        ],
    ));
    let wires = Wires::new();
    let host = Arc::new(host_bridge(&wires, fake.addr()));
    let acked_at_fault = Arc::new(Mutex::new(0u32));
    let fault = {
        let (f, h, acked) = (Arc::clone(&fake), Arc::clone(&host), Arc::clone(&acked_at_fault));
        fault_after(&host, 40, move || {
            *acked.lock().unwrap_or_else(|p| p.into_inner()) = h.stats().link.published;
            f.inject();
        })
    };
    let config = persistent_config(&loopback(broker.port()), "e2e-garbage", None);
    let opts = echo_options("e2e/garbage", 150);
    let report = run_echo(&wires, config, &opts);
    fault.join().expect("fault");
    let stats = host.stats();
    let accepted = fake.accepted();
    let garbage = fake.garbage_at();
    // When the bridge closed each garbage connection (after the garbage), and how long it waited to connect again.
    let closed: Vec<Option<Instant>> = (0..2).map(|i| fake.client_closed(i)).collect();
    let close_ms: Vec<Option<u128>> = closed
        .iter()
        .zip(&garbage)
        .map(|(c, g)| c.map(|c| c.saturating_duration_since(*g).as_millis()))
        .collect();
    let retry_ms: Vec<Option<u128>> = closed
        .iter()
        .enumerate()
        .map(|(i, c)| Some(accepted.get(i + 1)?.saturating_duration_since((*c)?).as_millis()))
        .collect();
    eprintln!(
        "garbage: acknowledged at the fault {}, garbage written {}, connections {}, closed by the bridge \
         {close_ms:?} ms after the garbage, next attempt {retry_ms:?} ms after the close, malformed packets {}, \
         reconnects {}",
        acked_at_fault.lock().unwrap_or_else(|p| p.into_inner()),
        garbage.len(),
        accepted.len(),
        stats.mqtt.malformed_packets,
        stats.link.reconnects
    );
    check_nothing_lost("garbage", &opts, &report, &tally);
    assert_eq!(garbage.len(), 2, "garbage mid-session, then as the CONNACK");
    assert_eq!(
        stats.mqtt.malformed_packets, 2,
        "both garbage packets seen as malformed"
    );
    assert!(
        close_ms.iter().all(Option::is_some),
        "the bridge closed both garbage connections itself: {close_ms:?}"
    );
    // No storm: one attempt per garbage connection, each after a growing backoff (resilient-mqtt's defaults: at
    // least 250 ms after the first failure, 500 ms after the second; a slow machine only lengthens them, and 50 ms
    // allow for the fake broker's threads noticing the close late).
    assert_eq!(accepted.len(), 3, "one reconnect per garbage connection, no more");
    assert!(
        matches!(retry_ms[..], [Some(a), Some(b)] if a >= 200 && b >= 450),
        "reconnects backed off: {retry_ms:?} ms"
    );
    let down = report
        .statuses
        .iter()
        .position(|s| *s == Status::BrokerDown(DownReason::ProtocolError))
        .unwrap_or_else(|| panic!("the target was told the broker sent garbage: {:?}", report.statuses));
    assert!(
        report.statuses[down..]
            .iter()
            .any(|s| matches!(s, Status::BrokerUp { session_present: true })),
        "then the broker came back with the session: {:?}",
        report.statuses
    );
}

#[test]
fn will_is_published_when_the_bridge_dies_and_not_before() {
    let _serial = serial();
    let broker = mosquitto("will", false);
    let will = Sub::start(broker.port(), "e2e/will/#", &[]);
    will.ready(broker.port(), "e2e/will/sentinel");
    let wires = Wires::new();
    let host = host_bridge(&wires, loopback(broker.port()));
    let config = persistent_config(&loopback(broker.port()), "e2e-will", Some("e2e/will/dies"));
    with_target(&wires, config, Duration::from_secs(60), async |c| {
        let up = wait_status(&c, Duration::from_secs(30), |s| matches!(s, Status::BrokerUp { .. })).await;
        assert!(up.is_some(), "broker never came up");
        c.publish("e2e/alive", b"1", QoS::AtLeastOnce, false)
            .await
            .expect("publish");
    })
    .expect("the target finished");
    assert_eq!(
        wait_line(&will, "e2e/will/dies", Duration::from_secs(2)),
        None,
        "no will while the bridge lives"
    );
    host.stop(); // a power cut: the socket closes without DISCONNECT
    let line = wait_line(&will, "e2e/will/dies", Duration::from_secs(10));
    eprintln!("will: {line:?}");
    assert_eq!(line.as_deref(), Some("e2e/will/dies|0|62726964676520676f6e65"));
}

/// A bridge process with the target attached through a wire relay, and a tally at the broker.
struct ProcRig {
    broker: Mosquitto,
    bridge: Arc<Mutex<BridgeProc>>,
    wires: Arc<Wires>,
    tally: Tally,
    will: Sub,
    _relay: WireRelay,
    _dir: TempDir,
}

impl ProcRig {
    fn start(tag: &str, prefix: &str) -> ProcRig {
        debug_logging();
        let dir = temp_dir(tag);
        let broker = mosquitto(tag, false);
        let tally = Tally::start(broker.port(), prefix);
        let will = Sub::start(broker.port(), "e2e/will/#", &[]);
        will.ready(broker.port(), "e2e/will/sentinel");
        let bridge = BridgeProc::start(&dir, &loopback(broker.port()));
        let relay = WireRelay::start(dir.join("target.sock"), bridge.wires());
        let wires = attach_wires(&relay.target_path, Duration::from_secs(10));
        ProcRig {
            broker,
            bridge: Arc::new(Mutex::new(bridge)),
            wires,
            tally,
            will,
            _relay: relay,
            _dir: dir,
        }
    }

    /// Runs `fault` on the bridge process once the broker has seen `after` of the echo's messages.
    fn fault_after(
        &self,
        after: usize,
        fault: impl FnOnce(&mut BridgeProc) + Send + 'static,
    ) -> std::thread::JoinHandle<()> {
        let (bridge, counts) = (Arc::clone(&self.bridge), Arc::clone(&self.tally.counts));
        std::thread::spawn(move || {
            let start = Instant::now();
            while counts.lock().unwrap_or_else(|p| p.into_inner()).distinct() < after
                && start.elapsed() < Duration::from_secs(60)
            {
                std::thread::sleep(Duration::from_millis(2));
            }
            fault(&mut bridge.lock().unwrap_or_else(|p| p.into_inner()));
        })
    }

    fn bridge_log(&self) -> String {
        self.bridge.lock().unwrap_or_else(|p| p.into_inner()).log()
    }
}

#[test]
fn hung_bridge_is_reset_by_the_targets_watchdog_and_restored_with_nothing_lost() {
    let _serial = serial();
    let rig = ProcRig::start("hang", "e2e/hang");
    let hung = Arc::new(Mutex::new(None::<Instant>));
    let fault = {
        let hung = Arc::clone(&hung);
        rig.fault_after(30, move |b| {
            b.hang();
            *hung.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        })
    };
    let config = persistent_config(&loopback(rig.broker.port()), "e2e-hang", Some("e2e/will/hang"));
    let (watchdog, ping_timeout) = (config.watchdog, config.ping_timeout);
    let opts = echo_options("e2e/hang", 120);
    let report = run_echo(&rig.wires, config, &opts);
    fault.join().expect("fault");
    assert!(hung.lock().expect("hung").is_some(), "the bridge was hung");
    let log = rig.bridge_log();
    eprintln!("hang: bridge boots {}", log.matches("bridge booted").count());
    check_nothing_lost("hang", &opts, &report, &rig.tally);
    // Unresponsive: the ping went unanswered; LinkFault: the bridge hung in the middle of an exchange and the link
    // timed out first.
    let reset = report.statuses.iter().position(|s| {
        matches!(
            s,
            Status::BridgeReset(ResetReason::Unresponsive | ResetReason::LinkFault)
        )
    });
    let reset = reset.unwrap_or_else(|| panic!("the target reset the hung bridge: {:?}", report.statuses));
    assert!(
        report.statuses[reset..].contains(&Status::BridgeReady),
        "and restored it: {:?}",
        report.statuses
    );
    assert!(log.contains("hanging until the target resets the bridge"), "{log}");
    assert!(log.contains("reset by the target (RST low)"), "{log}");
    assert!(log.contains("boot 2"), "{log}");
    eprintln!(
        "hang: the watchdog ({} ms) and the ping timeout ({} ms) elapsed before the reset",
        watchdog.as_millis(),
        ping_timeout.as_millis()
    );
    // The reset dropped the broker connection without DISCONNECT.
    assert!(
        wait_line(&rig.will, "e2e/will/hang", Duration::from_secs(10)).is_some(),
        "the hung bridge's will"
    );
}

#[test]
fn bridge_process_killed_and_restarted_loses_no_acknowledged_qos1_message() {
    let _serial = serial();
    let rig = ProcRig::start("kill9", "e2e/kill9");
    let fault = rig.fault_after(30, |b| {
        b.kill();
        std::thread::sleep(Duration::from_millis(300));
        b.restart();
    });
    let config = persistent_config(&loopback(rig.broker.port()), "e2e-kill9", Some("e2e/will/kill9"));
    let opts = echo_options("e2e/kill9", 120);
    let report = run_echo(&rig.wires, config, &opts);
    fault.join().expect("fault");
    let starts = rig.bridge.lock().expect("bridge").starts;
    if std::env::var_os("E2E_LOG").is_some() {
        eprintln!("{}", rig.bridge_log());
    }
    eprintln!("kill -9: bridge processes started {starts}");
    check_nothing_lost("kill -9", &opts, &report, &rig.tally);
    assert_eq!(starts, 2);
    let reset = report
        .statuses
        .iter()
        .position(|s| matches!(s, Status::BridgeReset(_)))
        .unwrap_or_else(|| panic!("the target reset the new bridge: {:?}", report.statuses));
    assert!(
        report.statuses[reset..].contains(&Status::BridgeReady),
        "and restored it: {:?}",
        report.statuses
    );
    assert!(
        wait_line(&rig.will, "e2e/will/kill9", Duration::from_secs(10)).is_some(),
        "the killed bridge's will"
    );
}

#[test]
fn wildcard_in_a_publish_topic_is_a_typed_error_and_nothing_reaches_the_broker() {
    let _serial = serial();
    let broker = mosquitto("badtopic", false);
    let sub = Sub::start(broker.port(), "#", &[]);
    sub.ready(broker.port(), "e2e/sentinel");
    let wires = Wires::new();
    let _host = host_bridge(&wires, loopback(broker.port()));
    let results = with_target(
        &wires,
        target_config(&loopback(broker.port()), "e2e-badtopic"),
        Duration::from_secs(60),
        async |c| {
            let up = wait_status(&c, Duration::from_secs(30), |s| matches!(s, Status::BrokerUp { .. })).await;
            assert!(up.is_some(), "broker never came up");
            let plus = c.publish("a/+/b", b"x", QoS::AtLeastOnce, false).await;
            let hash = c.publish("a/#", b"x", QoS::AtMostOnce, false).await;
            let filter = c.subscribe("a/#/b", QoS::AtLeastOnce).await.map(|_| ());
            // A good publication after them: the broker's only message.
            c.publish("a/ok/b", b"ok", QoS::AtLeastOnce, false)
                .await
                .expect("publish");
            (plus, hash, filter)
        },
    )
    .expect("the target finished");
    eprintln!("bad topics: {results:?}");
    assert_eq!(results.0, Err(Error::Topic(TopicError::WildcardInTopic)));
    assert_eq!(results.1, Err(Error::Topic(TopicError::WildcardInTopic)));
    assert_eq!(results.2, Err(Error::Topic(TopicError::BadWildcard)));
    let mut got = Vec::new();
    while let Some(line) = sub.next(Duration::from_secs(2)) {
        got.push(line);
    }
    got.retain(|l| !l.starts_with("e2e/sentinel"));
    assert_eq!(got, vec!["a/ok/b|0|6f6b".to_string()], "only the good publication");
}

#[test]
fn wrong_credentials_reach_the_target_and_the_bridge_backs_off() {
    let _serial = serial();
    let broker = Mosquitto::start(
        "creds",
        &test_support::Config {
            credentials: Some(("device".into(), "right".into())),
            ..Default::default()
        },
    )
    .expect("start mosquitto");
    let proxy = FaultProxy::start(broker.addr());
    let wires = Wires::new();
    let _host = host_bridge(&wires, proxy.addr());
    let mut config = target_config(&loopback(broker.port()), "e2e-creds");
    config.username = Some("device");
    config.password = Some(b"wrong");
    const WINDOW: Duration = Duration::from_secs(11);
    let statuses = with_target(&wires, config, Duration::from_secs(60), async |c| {
        let refused = wait_status(&c, Duration::from_secs(30), |s| {
            matches!(
                s,
                Status::BrokerDown(DownReason::RefusedCredentials | DownReason::RefusedNotAuthorized)
            )
        })
        .await;
        let first = Instant::now();
        // Keep the target running (and taking events) through the window.
        let mut later = Vec::new();
        while first.elapsed() < WINDOW {
            if let Some(s) = wait_status(&c, WINDOW.saturating_sub(first.elapsed()), |_| true).await {
                later.push(s);
            }
        }
        refused.into_iter().chain(later).collect::<Vec<_>>()
    })
    .expect("the target finished");
    let accepted = proxy.accepted();
    let first_attempt = *accepted.first().expect("the bridge tried to connect");
    let in_window = accepted
        .iter()
        .filter(|&&t| t >= first_attempt && t - first_attempt <= WINDOW)
        .count();
    eprintln!(
        "credentials: statuses {statuses:?}, connection attempts {} in total, {in_window} in the {} s after the \
         first",
        accepted.len(),
        WINDOW.as_secs()
    );
    assert!(
        matches!(
            statuses.first(),
            Some(Status::BrokerDown(
                DownReason::RefusedCredentials | DownReason::RefusedNotAuthorized
            ))
        ),
        "the target was told the broker refused the credentials: {statuses:?}"
    );
    assert!(
        !statuses.iter().any(|s| matches!(s, Status::BrokerUp { .. })),
        "{statuses:?}"
    );
    // A refused connection is retried no sooner than 5 s later (resilient-mqtt's `refused_min`): at most 3 attempts
    // in 11 s, and at least the first retry.
    assert!(
        (2..=3).contains(&in_window),
        "{in_window} connection attempts in {WINDOW:?}: backed off, not a storm, but still retrying"
    );
}

#[test]
fn a_message_too_long_for_the_target_is_dropped_by_the_bridge_not_fetched_again_and_again() {
    // A QoS 1 message longer than the target's receive buffer takes, to a persistent session. Sent all the same,
    // the target's link would drop its frame, and the bridge would reconnect every ACK_TIMEOUT for the broker to
    // send it again, for ever. The configuration tells the bridge the target's limit: it drops the message and
    // acknowledges it.
    use embassy_futures::select::{select, Either};
    use embassy_sync::blocking_mutex::raw::NoopRawMutex;
    use protocol::sim::{target_pins, Chaos, ChaosConfig};
    use target_driver::{Event, Pins, Resources, Timing};

    let _serial = serial();
    let broker = mosquitto("too-long", false);
    let port = broker.port();
    let wires = Wires::new();
    let host = host_bridge(&wires, loopback(port));
    // The driver's default buffers: its 212-byte receive buffer takes messages of up to 210 bytes.
    let mut res: Resources<'static, NoopRawMutex> = Resources::new();
    let pins = Pins::from(target_pins(&wires, Chaos::new(11, ChaosConfig::NONE)));
    let timing = Timing {
        timeout_us: 1_000_000,
        ..Timing::default()
    };
    let config = persistent_config(&loopback(port), "e2e-too-long", None);
    let (c, mut runner) = target_driver::new(pins, config, timing, &mut res).expect("pins");
    let app = async {
        let mut got: Vec<(String, usize)> = Vec::new();
        let mut dropped = Vec::new();
        let mut up = false;
        let mut publisher = None;
        let start = Instant::now();
        let mut small_at = None;
        // Until the small message came, and then past ACK_TIMEOUT (10 s), as long as a reconnection would take.
        while start.elapsed() < Duration::from_secs(60)
            && small_at.is_none_or(|t: Instant| t.elapsed() < Duration::from_secs(13))
        {
            let timeout = embassy_time::Timer::after(embassy_time::Duration::from_millis(200));
            let event = c.next_event_with(|event| match event {
                Event::Message(m) => Some(Ok((m.topic.to_string(), m.payload.len()))),
                Event::Status(s) => Some(Err(s)),
            });
            match select(event, timeout).await {
                Either::First(Some(Ok(message))) => {
                    if message.0.ends_with("small") {
                        small_at = Some(Instant::now());
                    }
                    got.push(message);
                }
                Either::First(Some(Err(Status::MessageTooLong { len }))) => dropped.push(len),
                Either::First(Some(Err(Status::BrokerUp { .. }))) if !up => {
                    up = true;
                    c.subscribe("e2e/long/#", QoS::AtLeastOnce).await.expect("subscribe");
                    publisher = Some(std::thread::spawn(move || {
                        support::pub_(port, "e2e/long/big", &[0x42; 300], false);
                        support::pub_(port, "e2e/long/small", b"fits", false);
                    }));
                }
                _ => {}
            }
        }
        if let Some(p) = publisher {
            let _ = p.join();
        }
        (got, dropped)
    };
    let (got, dropped) = embassy_futures::block_on(async {
        match select(runner.run(), app).await {
            Either::First(never) => never,
            Either::Second(r) => r,
        }
    });
    let stats = host.stats();
    eprintln!(
        "too-long: received {got:?}; bridge: dropped as too long {}, reconnections for a lost delivery {}",
        stats.too_long, stats.redelivery_reconnects
    );
    assert_eq!(
        got,
        vec![("e2e/long/small".to_string(), 4)],
        "only the message that fits"
    );
    // Told, with the length: a topic of 12 bytes, a payload of 300 and the message's own bytes.
    assert!(matches!(dropped[..], [len] if len > 312), "{dropped:?}");
    assert_eq!(stats.too_long, 1, "the long message was dropped once, by the bridge");
    assert_eq!(stats.redelivery_reconnects, 0, "a reconnection to fetch it again");
}
