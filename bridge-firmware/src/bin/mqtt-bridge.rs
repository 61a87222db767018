//! The host bridge: the bridge service on Linux, TCP to an MQTT broker, and the link on the protocol's simulated
//! wires served over a Unix socket so that a target process (the real target driver on simulated pins) can attach.
//!
//! `cargo run -p bridge-firmware --features host --bin mqtt-bridge -- --wires /tmp/link.sock
//! [--broker mqtt://host:port] [--log-level info]`
//!
//! `--broker` (or `MQTT_BRIDGE_BROKER`) overrides the broker the target configures. The demo
//! (`cargo run --release -p examples --bin demo`) runs this same bridge in-process instead.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Mutex;

use bridge_firmware::host::{self, BrokerAddr, HostOptions};

const USAGE: &str = "usage: mqtt-bridge --wires PATH [--broker mqtt://host:port] [--log-level LEVEL]
  --wires PATH       serve the simulated link wires on this Unix socket (a target process connects to it)
  --broker URL       broker to connect to, overriding the target's configuration (env MQTT_BRIDGE_BROKER)
  --log-level LEVEL  off, error, warn, info (default), debug or trace (env MQTT_BRIDGE_LOG)";

struct Args {
    wires: PathBuf,
    broker: Option<BrokerAddr>,
    level: log::LevelFilter,
}

fn parse() -> Result<Args, String> {
    let mut wires = None;
    let mut broker = std::env::var("MQTT_BRIDGE_BROKER")
        .ok()
        .map(|b| host::parse_broker(&b).map_err(|e| format!("MQTT_BRIDGE_BROKER: {e}")))
        .transpose()?;
    let mut level = match std::env::var("MQTT_BRIDGE_LOG") {
        Ok(l) => host::parse_level(&l).map_err(|e| format!("MQTT_BRIDGE_LOG: {e}"))?,
        Err(_) => log::LevelFilter::Info,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match flag.as_str() {
            "--wires" => wires = Some(PathBuf::from(value("--wires")?)),
            "--broker" => broker = Some(host::parse_broker(&value("--broker")?)?),
            "--log-level" => level = host::parse_level(&value("--log-level")?)?,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    let wires = wires.ok_or("--wires PATH is required (the demo runs the bridge in-process instead)")?;
    Ok(Args { wires, broker, level })
}

fn main() -> ExitCode {
    let args = match host::args_or_exit("mqtt-bridge", USAGE, parse()) {
        Ok(a) => a,
        Err(code) => return code,
    };
    host::init_logging(args.level);
    match &args.broker {
        Some(b) => log::info!("broker {b} (overrides the target's configuration)"),
        None => log::info!("broker: as the target configures it"),
    }
    log::info!("waiting for a target on {}", args.wires.display());
    let wires = match protocol::sim::Wires::share_unix(&args.wires, false) {
        Ok(w) => w,
        Err(e) => {
            log::error!("cannot serve the wires at {}: {e}", args.wires.display());
            return ExitCode::FAILURE;
        }
    };
    log::info!("target attached");
    let options = HostOptions {
        broker: args.broker,
        ..HostOptions::default()
    };
    let stop = AtomicBool::new(false);
    let stats = Mutex::new(host::HostStats::default());
    host::run(&wires, &options, &stop, &stats);
    ExitCode::SUCCESS
}
