//! The whole system on one machine, with no set-up: an embedded MQTT broker (rumqttd) on a free loopback port, the
//! host bridge (the real bridge service) in-process on simulated wires, and a simulated target running the real
//! `target-driver` async client on simulated pins. The target subscribes to a wildcard filter, publishes `--count`
//! messages that come back to it, shows status events and statistics, and ends with one summary line. Exit code 1
//! if anything was lost.
//!
//! `cargo run --release -p examples --bin demo -- [--count N] [--qos 0|1] [--payload-size B]
//! [--broker mqtt://host:port] [--log-level LEVEL]`

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use bridge_firmware::host::{self, BrokerAddr, HostBridge, HostOptions};
use examples::{echo, start_rumqttd, target_config, wait_status, with_target, EchoOptions, PAYLOAD};
use protocol::sim::Wires;
use target_driver::{QoS, Status};

const USAGE: &str = "usage: demo [--count N] [--qos 0|1] [--payload-size BYTES] [--broker mqtt://host:port] \
[--log-level LEVEL]
  --count N            messages to publish (default 1000)
  --qos 0|1            their QoS and the subscription's (default 1)
  --payload-size B     payload bytes, 16 to 1024 (default 64)
  --broker URL         use this broker instead of the embedded one (env MQTT_BRIDGE_BROKER)
  --log-level LEVEL    off, error, warn (default), info, debug, trace";

struct Args {
    count: u32,
    qos: QoS,
    payload_size: usize,
    broker: Option<BrokerAddr>,
    level: log::LevelFilter,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        count: 1000,
        qos: QoS::AtLeastOnce,
        payload_size: 64,
        broker: std::env::var("MQTT_BRIDGE_BROKER")
            .ok()
            .map(|b| host::parse_broker(&b).map_err(|e| format!("MQTT_BRIDGE_BROKER: {e}")))
            .transpose()?,
        level: log::LevelFilter::Warn,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match flag.as_str() {
            "--count" => {
                let v = value("--count")?;
                a.count = v.parse().map_err(|_| format!("bad --count `{v}`"))?;
            }
            "--qos" => {
                a.qos = match value("--qos")?.as_str() {
                    "0" => QoS::AtMostOnce,
                    "1" => QoS::AtLeastOnce,
                    other => return Err(format!("bad --qos `{other}` (0 or 1; QoS 2 is not supported)")),
                }
            }
            "--payload-size" => {
                let v = value("--payload-size")?;
                a.payload_size = v
                    .parse()
                    .ok()
                    .filter(|n| (16..=PAYLOAD).contains(n))
                    .ok_or_else(|| format!("bad --payload-size `{v}` (16 to {PAYLOAD})"))?;
            }
            "--broker" => a.broker = Some(host::parse_broker(&value("--broker")?)?),
            "--log-level" => a.level = host::parse_level(&value("--log-level")?)?,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok(a)
}

fn main() -> ExitCode {
    let args = match host::args_or_exit("demo", USAGE, parse()) {
        Ok(a) => a,
        Err(code) => return code,
    };
    host::init_logging(args.level);
    let broker = match args.broker.clone() {
        Some(b) => {
            println!("broker: {b} (given)");
            b
        }
        None => match start_rumqttd() {
            Ok(b) => {
                println!("broker: embedded rumqttd on {b}");
                b
            }
            Err(e) => {
                eprintln!("demo: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    let wires = Wires::new();
    let bridge = match HostBridge::spawn(
        Arc::clone(&wires),
        HostOptions {
            broker: Some(broker.clone()),
            ..HostOptions::default()
        },
    ) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("demo: cannot start the bridge: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("bridge: host bridge in-process on simulated wires; target: target-driver on simulated pins");
    let run = std::process::id();
    let opts = EchoOptions {
        count: args.count,
        qos: args.qos,
        payload_size: args.payload_size,
        prefix: format!("demo/{run}"),
        concurrency: 4,
        linger: Duration::from_secs(5),
    };
    let config = target_config(&broker, &format!("demo-target-{run}"));
    let budget = Duration::from_secs(60 + u64::from(args.count) / 20);
    let outcome = with_target(&wires, config, budget, async |c| {
        let up = wait_status(&c, Duration::from_secs(20), |s| matches!(s, Status::BrokerUp { .. })).await;
        if up.is_none() {
            return Err(format!("the broker at {broker} did not come up within 20 s"));
        }
        println!(
            "status: broker up; publishing {} messages (QoS {:?}, {} B)",
            opts.count, opts.qos, opts.payload_size
        );
        let report = echo(&c, &opts).await?;
        let link = c.bridge_stats().await;
        Ok((report, link, c.stats()))
    });
    let host_stats = bridge.stats();
    drop(bridge);
    let (report, link, driver) = match outcome {
        Some(Ok(r)) => r,
        Some(Err(e)) => {
            eprintln!("demo: {e}");
            return ExitCode::FAILURE;
        }
        None => {
            eprintln!("demo: did not finish within {} s", budget.as_secs());
            return ExitCode::FAILURE;
        }
    };
    for s in &report.statuses {
        println!("status: {s:?}");
    }
    println!(
        "link (bridge side): frames rx {} tx {}, frame errors {}, resyncs {}, delivered {}, queue high-water {}, \
boots {}, too long {}, lost deliveries fetched again {} / given up {}",
        link.frames_rx,
        link.frames_tx,
        link.frame_errors,
        link.resyncs,
        link.delivered,
        link.queue_high_water,
        host_stats.boots,
        host_stats.too_long,
        host_stats.redelivery_reconnects,
        host_stats.given_up_deliveries
    );
    println!(
        "link (target side): resets {}, resent {}, pings {}, frame errors {}, delivered {}, dropped {}",
        driver.resets, driver.resent, driver.pings, driver.frame_errors, driver.delivered, driver.dropped
    );
    let m = host_stats.mqtt;
    println!(
        "mqtt: connections {}, reconnects {}, published {}, messages {}, retransmissions {}, pings {}, malformed {}",
        m.connections, link.reconnects, link.published, m.messages, m.retransmissions, m.pings, m.malformed_packets
    );
    println!(
        "rate: {:.0} messages/s each way; latency p50 {:.1} ms, p99 {:.1} ms; publish errors {}, corrupt {}",
        f64::from(report.received) / report.elapsed.as_secs_f64(),
        report.latency_ms(50.0),
        report.latency_ms(99.0),
        report.publish_errors,
        report.corrupt
    );
    println!("{}", report.summary());
    if report.lost() > 0 || report.publish_errors > 0 || report.corrupt > 0 || report.published < args.count {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
