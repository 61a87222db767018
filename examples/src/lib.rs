//! Host demos of the MQTT link; see the `src/bin` programs. This library holds what the demo and the end-to-end
//! tests share: an embedded broker, a simulated target (the real `target-driver` on simulated pins) and the
//! echo run that the demo reports on.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant as StdInstant};

use bridge_firmware::host::BrokerAddr;
use embassy_futures::block_on;
use embassy_futures::select::{select, Either};
use embassy_sync::blocking_mutex::raw::NoopRawMutex;
use embassy_time::{Duration, Timer};
use protocol::sim::{target_pins, Chaos, ChaosConfig, Wires};
use target_driver::{Client, Config, Event, Pins, QoS, Resources, Status, Timing};
use test_support::{free_port, wait_listening};

/// Longest topic the simulated target handles.
pub const TOPIC: usize = 128;
/// Longest payload the simulated target handles (the protocol's limit).
pub const PAYLOAD: usize = 1024;

/// Publications the simulated target keeps in flight.
const PUBS: usize = 8;
/// Its publication pool: room for `PUBS` of the largest.
const POOL: usize = PUBS * (TOPIC + PAYLOAD);

/// The simulated target's client: topics up to 128 bytes, payloads up to 1024, 8 publications in flight.
pub type TargetClient<'a> = Client<'a, 'static, NoopRawMutex, TOPIC, PAYLOAD, PUBS, 4, 4096, 2048, POOL>;
type TargetResources = Resources<'static, NoopRawMutex, TOPIC, PAYLOAD, PUBS, 4, 4096, 2048, POOL>;

/// `127.0.0.1:port` as the bridge and the target take a broker's address.
pub fn loopback(port: u16) -> BrokerAddr {
    BrokerAddr {
        host: "127.0.0.1".into(),
        port,
    }
}

/// Starts an embedded rumqttd broker on a free 127.0.0.1 port, in its own threads, and waits until it listens.
pub fn start_rumqttd() -> Result<BrokerAddr, String> {
    use rumqttd::{Broker, Config as BrokerConfig, ConnectionSettings, RouterConfig, ServerSettings};
    let port = free_port().map_err(|e| format!("no free port: {e}"))?;
    let listen = ([127, 0, 0, 1], port).into();
    let server = ServerSettings {
        name: "demo".into(),
        listen,
        tls: None,
        next_connection_delay_ms: 1,
        connections: ConnectionSettings {
            connection_timeout_ms: 60_000,
            max_payload_size: 64 * 1024,
            max_inflight_count: 100,
            auth: None,
            external_auth: None,
            dynamic_filters: true,
        },
    };
    let config = BrokerConfig {
        router: RouterConfig {
            max_connections: 100,
            max_outgoing_packet_count: 200,
            max_segment_size: 16 * 1024 * 1024,
            max_segment_count: 10,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: Default::default(),
        },
        v4: Some(HashMap::from([("1".to_string(), server)])),
        ..BrokerConfig::default()
    };
    std::thread::Builder::new()
        .name("rumqttd".into())
        .spawn(move || {
            let mut broker = Broker::new(config);
            if let Err(e) = broker.start() {
                log::error!("embedded broker stopped: {e}");
            }
        })
        .map_err(|e| format!("cannot start the broker thread: {e}"))?;
    if !wait_listening(port, StdDuration::from_secs(10)) {
        return Err(format!("the embedded broker did not listen on 127.0.0.1:{port}"));
    }
    Ok(loopback(port))
}

/// The target's configuration for a broker, with watchdog timings a loaded machine cannot trip by accident.
pub fn target_config(broker: &BrokerAddr, client_id: &str) -> Config<'static> {
    let host: &'static str = Box::leak(broker.host.clone().into_boxed_str());
    let id: &'static str = Box::leak(client_id.to_string().into_boxed_str());
    let mut c = Config::new("sim-wifi", "", host, broker.port, id);
    c.clean_session = true;
    c.watchdog = Duration::from_millis(2_000);
    c.ping_timeout = Duration::from_millis(2_000);
    c.reset_pulse = Duration::from_millis(20);
    c.ready_timeout = Duration::from_millis(3_000);
    c.max_reset_backoff = Duration::from_secs(2);
    c
}

/// Runs `app` on a simulated target (the real async target driver and its runner) on `wires`, until it returns
/// or `timeout` passes (`None`).
pub fn with_target<R>(
    wires: &Arc<Wires>,
    config: Config<'static>,
    timeout: StdDuration,
    app: impl AsyncFnOnce(TargetClient<'_>) -> R,
) -> Option<R> {
    let mut res: TargetResources = Resources::new();
    let pins = Pins::from(target_pins(wires, Chaos::new(11, ChaosConfig::NONE)));
    let timing = Timing {
        timeout_us: 1_000_000,
        ..Timing::default()
    };
    let (client, mut runner) = match target_driver::new(pins, config, timing, &mut res) {
        Ok(pair) => pair,
        Err(never) => match never {
            protocol::driver::Error::Pin(e) => match e {},
            other => panic!("simulated pins failed: {other:?}"),
        },
    };
    block_on(async {
        let app = async {
            match select(
                app(client),
                Timer::after(Duration::from_micros(timeout.as_micros() as u64)),
            )
            .await
            {
                Either::First(r) => Some(r),
                Either::Second(()) => None,
            }
        };
        match select(runner.run(), app).await {
            Either::First(never) => never,
            Either::Second(r) => r,
        }
    })
}

/// Waits for the next status event matching `want` (messages are ignored), up to `timeout`.
pub async fn wait_status(c: &TargetClient<'_>, timeout: StdDuration, want: impl Fn(&Status) -> bool) -> Option<Status> {
    let mut buf = vec![0u8; TOPIC + PAYLOAD];
    let wait = async {
        loop {
            if let Event::Status(s) = c.next_event(&mut buf).await {
                log::info!("target: status {s:?}");
                if want(&s) {
                    return s;
                }
            }
        }
    };
    match select(wait, Timer::after(Duration::from_micros(timeout.as_micros() as u64))).await {
        Either::First(s) => Some(s),
        Either::Second(()) => None,
    }
}

/// What the echo run asks for.
#[derive(Debug, Clone)]
pub struct EchoOptions {
    /// Messages to publish.
    pub count: u32,
    /// Their QoS (also of the subscription).
    pub qos: QoS,
    /// Payload bytes (at least 16: sequence number and send time).
    pub payload_size: usize,
    /// Topic prefix: messages go to `prefix/<n>`, the subscription is `prefix/#`.
    pub prefix: String,
    /// Publications the target keeps going at once.
    pub concurrency: usize,
    /// How long to wait for the last messages after the last publication.
    pub linger: StdDuration,
}

/// What the echo run saw.
#[derive(Debug, Clone, Default)]
pub struct EchoReport {
    /// Publications completed (QoS 1: acknowledged end to end).
    pub published: u32,
    /// Publications that failed.
    pub publish_errors: u32,
    /// Distinct messages received.
    pub received: u32,
    /// Messages received more than once.
    pub duplicates: u32,
    /// Messages received whose payload was not what was sent.
    pub corrupt: u32,
    /// Publish-to-receive latencies, sorted, in microseconds.
    pub latencies_us: Vec<u64>,
    /// Status events, in order.
    pub statuses: Vec<Status>,
    /// Elapsed time of the publishing and receiving.
    pub elapsed: StdDuration,
}

impl EchoReport {
    /// Messages published and never received.
    pub fn lost(&self) -> u32 {
        self.published.saturating_sub(self.received)
    }

    /// The `p`-th percentile latency in milliseconds.
    pub fn latency_ms(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        let i = ((self.latencies_us.len() - 1) as f64 * p / 100.0).round() as usize;
        self.latencies_us[i] as f64 / 1000.0
    }

    /// The demo's summary line.
    pub fn summary(&self) -> String {
        format!(
            "published {}, received {}, lost {}, duplicates {}, p50 latency {:.1} ms",
            self.published,
            self.received,
            self.lost(),
            self.duplicates,
            self.latency_ms(50.0)
        )
    }
}

/// The payload of message `seq`: the sequence number, the send time (µs since `origin`), then a pattern that runs
/// through every byte value.
pub fn payload(seq: u32, origin: StdInstant, size: usize) -> Vec<u8> {
    let mut p = Vec::with_capacity(size.max(16));
    p.extend_from_slice(&seq.to_le_bytes());
    p.extend_from_slice(&0u32.to_le_bytes());
    p.extend_from_slice(&(origin.elapsed().as_micros() as u64).to_le_bytes());
    while p.len() < size {
        p.push((seq as usize + p.len()) as u8);
    }
    p
}

fn check_payload(p: &[u8]) -> Option<(u32, u64)> {
    let seq = u32::from_le_bytes(p.get(..4)?.try_into().ok()?);
    let sent = u64::from_le_bytes(p.get(8..16)?.try_into().ok()?);
    let ok = p[16..]
        .iter()
        .enumerate()
        .all(|(i, &b)| b == (seq as usize + 16 + i) as u8);
    ok.then_some((seq, sent))
}

/// Subscribes to `prefix/#`, publishes `count` messages to `prefix/<n>` and receives them back; reports what came.
pub async fn echo(c: &TargetClient<'_>, opts: &EchoOptions) -> Result<EchoReport, String> {
    let origin = StdInstant::now();
    let filter = format!("{}/#", opts.prefix);
    let granted = c
        .subscribe(&filter, opts.qos)
        .await
        .map_err(|e| format!("subscribe to {filter} failed: {e}"))?;
    log::info!("target: subscribed to {filter} (granted {granted:?})");
    let report = core::cell::RefCell::new(EchoReport::default());
    let seen = core::cell::RefCell::new(vec![0u32; opts.count as usize]);
    let done_publishing = core::cell::Cell::new(None::<StdInstant>);
    let next = core::cell::Cell::new(0u32);
    let publisher = async {
        let workers = opts.concurrency.clamp(1, 4);
        let w = |k: usize| publish_worker(c, opts, origin, &next, &report, k < workers);
        embassy_futures::join::join4(w(0), w(1), w(2), w(3)).await;
        done_publishing.set(Some(StdInstant::now()));
    };
    let receiver = async {
        let mut buf = vec![0u8; TOPIC + PAYLOAD];
        let mut last_rx = StdInstant::now();
        loop {
            let all = report.borrow().received == opts.count;
            if let Some(done) = done_publishing.get() {
                if all || (done.elapsed() > opts.linger && last_rx.elapsed() > opts.linger) {
                    return;
                }
            }
            match select(c.next_event(&mut buf), Timer::after(Duration::from_millis(100))).await {
                Either::First(Event::Message(m)) => {
                    last_rx = StdInstant::now();
                    let mut r = report.borrow_mut();
                    match check_payload(m.payload) {
                        Some((seq, sent))
                            if (seq as usize) < opts.count as usize && m.payload.len() == opts.payload_size.max(16) =>
                        {
                            let mut s = seen.borrow_mut();
                            s[seq as usize] += 1;
                            if s[seq as usize] == 1 {
                                r.received += 1;
                                let now = origin.elapsed().as_micros() as u64;
                                r.latencies_us.push(now.saturating_sub(sent));
                            } else {
                                r.duplicates += 1;
                            }
                        }
                        _ => r.corrupt += 1,
                    }
                }
                Either::First(Event::Status(s)) => {
                    log::info!("target: status {s:?}");
                    report.borrow_mut().statuses.push(s);
                }
                Either::Second(()) => {}
            }
        }
    };
    embassy_futures::join::join(publisher, receiver).await;
    let mut r = report.into_inner();
    r.latencies_us.sort_unstable();
    r.elapsed = origin.elapsed();
    Ok(r)
}

/// Publishes the next unclaimed sequence number until all are claimed.
async fn publish_worker(
    c: &TargetClient<'_>,
    opts: &EchoOptions,
    origin: StdInstant,
    next: &core::cell::Cell<u32>,
    report: &core::cell::RefCell<EchoReport>,
    active: bool,
) {
    if !active {
        return;
    }
    loop {
        let seq = next.get();
        if seq >= opts.count {
            return;
        }
        next.set(seq + 1);
        let topic = format!("{}/{seq}", opts.prefix);
        let p = payload(seq, origin, opts.payload_size);
        match c.publish(&topic, &p, opts.qos, false).await {
            Ok(()) => report.borrow_mut().published += 1,
            Err(e) => {
                log::warn!("target: publish {seq} failed: {e}");
                report.borrow_mut().publish_errors += 1;
            }
        }
    }
}
