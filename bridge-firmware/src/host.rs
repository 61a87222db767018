//! The host bridge (feature `host`): the bridge service on Linux, with TCP to the broker and the link on the
//! protocol's simulated wires (in-process, or shared with a target process over a Unix socket).
//!
//! One thread runs the main loop: it answers the link (the blocking slave driver), steps the [`Bridge`], writes
//! packets to the broker and sleeps only when nothing moved. Connecting (DNS, TCP) happens on a helper thread and
//! reading on one thread per connection, so the loop never blocks on the network. RST low resets the bridge: the
//! connection is dropped (the broker publishes the will) and the bridge boots again with `Ready`.
//!
//! Test-only hook (for the end-to-end fault tests, off unless the variable is set): with
//! `MQTT_BRIDGE_TEST_HANG_FILE=PATH`, a file appearing at `PATH` makes the bridge delete it and hang, answering
//! neither the link nor the broker, until the target resets it through RST (as a hardware reset would).

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration as StdDuration, SystemTime, UNIX_EPOCH};

use embedded_hal::digital::InputPin;
use protocol::driver::{blocking, Timing};
use protocol::sim::{bridge_pins, Chaos, ChaosConfig, Wires};
use protocol::DownReason;
use resilient_mqtt::Instant;

use crate::Bridge;

/// The host bridge's service: a generous queue (64 publications in flight, 256 KiB), 64 KiB packets in.
pub type HostBridgeCore = Bridge<8192, { protocol::MAX_FRAME_LEN }, 64, 262_144, 65_536, 32>;

/// The broker the host bridge connects to, whatever the target configured (`--broker mqtt://host:port`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddr {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl core::fmt::Display for BrokerAddr {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "mqtt://{}:{}", self.host, self.port)
    }
}

/// Parses `mqtt://host:port`, `mqtt://host` (port 1883), `host:port` or `[v6]:port`.
pub fn parse_broker(url: &str) -> Result<BrokerAddr, String> {
    let rest = match url.split_once("://") {
        Some(("mqtt" | "tcp", rest)) => rest,
        Some((scheme, _)) => {
            return Err(format!(
                "unsupported scheme `{scheme}://` in `{url}` (only mqtt:// is supported, no TLS)"
            ))
        }
        None => url,
    };
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() {
        return Err(format!("no host in `{url}` (expected mqtt://host:port)"));
    }
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or_else(|| format!("unclosed `[` in `{url}`"))?;
        (h, after.strip_prefix(':'))
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        }
    };
    let port = match port {
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|&p| p > 0)
            .ok_or_else(|| format!("bad port `{p}` in `{url}` (expected 1 to 65535)"))?,
        None => 1883,
    };
    if host.is_empty() {
        return Err(format!("no host in `{url}` (expected mqtt://host:port)"));
    }
    Ok(BrokerAddr {
        host: host.into(),
        port,
    })
}

/// How the host bridge runs.
#[derive(Debug, Clone)]
pub struct HostOptions {
    /// Connect here instead of the broker the target configured.
    pub broker: Option<BrokerAddr>,
    /// TCP connect timeout.
    pub connect_timeout: StdDuration,
    /// The link driver's timing.
    pub timing: Timing,
    /// Seed of the reconnect jitter.
    pub jitter_seed: u32,
}

impl Default for HostOptions {
    fn default() -> Self {
        HostOptions {
            broker: None,
            connect_timeout: StdDuration::from_secs(3),
            timing: Timing::default(),
            jitter_seed: std::process::id(),
        }
    }
}

/// What the host bridge reports about itself while it runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HostStats {
    /// The service's counters (as the target gets them).
    pub link: protocol::Stats,
    /// The MQTT session's counters.
    pub mqtt: resilient_mqtt::Stats,
    /// Times the bridge booted (1 + resets by the target).
    pub boots: u32,
    /// Publications refused because the queue was full.
    pub refused_full: u32,
    /// Reconnections made to have the broker send a delivery lost on the link again.
    pub redelivery_reconnects: u32,
    /// Deliveries of a clean session lost on the link and given up (acknowledged to the broker).
    pub given_up_deliveries: u32,
    /// Messages from the broker too long for the link or the target, dropped (and acknowledged).
    pub too_long: u32,
}

/// A host bridge running in its own thread.
pub struct HostBridge {
    stop: Arc<AtomicBool>,
    stats: Arc<Mutex<HostStats>>,
    thread: Option<JoinHandle<()>>,
}

impl HostBridge {
    /// Starts the bridge on `wires` (the bridge's end).
    pub fn spawn(wires: Arc<Wires>, options: HostOptions) -> io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(Mutex::new(HostStats::default()));
        let (s, st) = (Arc::clone(&stop), Arc::clone(&stats));
        let thread = thread::Builder::new()
            .name("mqtt-bridge".into())
            .stack_size(16 << 20)
            .spawn(move || run(&wires, &options, &s, &st))?;
        Ok(HostBridge {
            stop,
            stats,
            thread: Some(thread),
        })
    }

    /// The counters now.
    pub fn stats(&self) -> HostStats {
        *self.stats.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stops the bridge abruptly (like a power cut: no DISCONNECT, so the broker publishes the will).
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for HostBridge {
    fn drop(&mut self) {
        self.halt();
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

enum Input {
    Bytes(Vec<u8>),
    Closed,
}

/// One TCP connection: the writing half here, a reader thread feeding `rx`.
struct Conn {
    stream: TcpStream,
    rx: Receiver<Input>,
    pending: Vec<u8>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

fn open(stream: TcpStream) -> io::Result<Conn> {
    stream.set_nodelay(true)?;
    stream.set_write_timeout(Some(StdDuration::from_secs(2)))?;
    let mut reader = stream.try_clone()?;
    let (tx, rx) = mpsc::channel();
    thread::Builder::new().name("mqtt-bridge-rx".into()).spawn(move || {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match reader.read(&mut buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Ok(0) | Err(_) => {
                    let _ = tx.send(Input::Closed);
                    return;
                }
                Ok(n) => {
                    if tx.send(Input::Bytes(buf[..n].to_vec())).is_err() {
                        return;
                    }
                }
            }
        }
    })?;
    Ok(Conn {
        stream,
        rx,
        pending: Vec::new(),
    })
}

/// Resolves and connects on a helper thread; the answer comes on the returned channel.
fn connect(addr: BrokerAddr, timeout: StdDuration) -> Receiver<Result<TcpStream, (DownReason, String)>> {
    let (tx, rx) = mpsc::channel();
    let spawned = thread::Builder::new().name("mqtt-bridge-connect".into()).spawn({
        let tx = tx.clone();
        move || {
            let result = (|| {
                let addrs: Vec<_> = (addr.host.as_str(), addr.port)
                    .to_socket_addrs()
                    .map_err(|e| (DownReason::Dns, format!("cannot resolve {addr}: {e}")))?
                    .collect();
                let mut last = String::from("no address");
                for a in addrs {
                    match TcpStream::connect_timeout(&a, timeout) {
                        Ok(s) => return Ok(s),
                        Err(e) => last = format!("cannot reach the broker at {addr} ({a}): {e}"),
                    }
                }
                Err((DownReason::Unreachable, last))
            })();
            let _ = tx.send(result);
        }
    });
    if let Err(e) = spawned {
        let _ = tx.send(Err((DownReason::Unreachable, format!("cannot start a thread: {e}"))));
    }
    rx
}

/// The test-only hang hook's variable (see the module documentation).
const TEST_HANG_FILE: &str = "MQTT_BRIDGE_TEST_HANG_FILE";

/// The main loop; returns when `stop` is set.
pub fn run(wires: &Arc<Wires>, options: &HostOptions, stop: &AtomicBool, stats: &Mutex<HostStats>) {
    let hang_file = std::env::var_os(TEST_HANG_FILE).map(std::path::PathBuf::from);
    let mut hang_checked = std::time::Instant::now();
    let origin = std::time::Instant::now();
    let now = || Instant::from_millis(origin.elapsed().as_millis() as u64);
    let mut boots = 0u32;
    let mut last_error = String::new();
    while !stop.load(Ordering::Relaxed) {
        let (b_clk, b_dat, t_clk, t_dat, mut rst) = bridge_pins(wires, Chaos::new(1, ChaosConfig::NONE));
        // Held in reset: wait for RST to go high (the pins float to their pulls meanwhile).
        while rst.is_low().unwrap_or(false) {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            wires.set(protocol::sim::Line::BClk, false);
            wires.set(protocol::sim::Line::BDat, true);
            thread::sleep(StdDuration::from_micros(200));
        }
        let mut link = match blocking::Slave::new(b_clk, b_dat, t_clk, t_dat, options.timing) {
            Ok(l) => l,
            Err(e) => {
                // Simulated pins cannot fail; a real board would report this and restart.
                log::error!("link pins failed: {e}");
                return;
            }
        };
        boots += 1;
        log::info!("bridge booted (boot {boots}), announcing Ready");
        let mut bridge: Box<HostBridgeCore> = Box::new(HostBridgeCore::new(options.jitter_seed));
        bridge.handle_wifi(true, now()); // the host's network is always "associated"
        bridge.set_wall_clock(now(), unix_ms());
        let mut conn: Option<Conn> = None;
        let mut connecting: Option<Receiver<Result<TcpStream, (DownReason, String)>>> = None;
        let mut buf = vec![0u8; 70 * 1024];
        let mut idle = 0u32;
        let mut last_exchanges = 0u64;
        loop {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            if rst.is_low().unwrap_or(false) {
                log::warn!("reset by the target (RST low): dropping the broker connection and rebooting");
                break;
            }
            if let Some(f) = hang_file
                .as_ref()
                .filter(|_| hang_checked.elapsed() >= StdDuration::from_millis(10))
            {
                hang_checked = std::time::Instant::now();
                if std::fs::remove_file(f).is_ok() {
                    log::warn!("test hook {TEST_HANG_FILE}: hanging until the target resets the bridge");
                    while !rst.is_low().unwrap_or(false) && !stop.load(Ordering::Relaxed) {
                        thread::sleep(StdDuration::from_micros(200));
                    }
                    continue;
                }
            }
            let _ = link.poll(bridge.port(), 4096);
            let link_stats = link.stats();
            bridge.set_link_resyncs(link_stats.resyncs);
            let mut moved = link_stats.exchanges != last_exchanges;
            last_exchanges = link_stats.exchanges;
            moved |= bridge.poll(now()).progressed();

            // The transport.
            if conn.is_none() && connecting.is_none() && bridge.wants_link(now()) {
                let addr = options.broker.clone().or_else(|| {
                    bridge.broker().map(|(h, p)| BrokerAddr {
                        host: h.into(),
                        port: p,
                    })
                });
                if let Some(addr) = addr {
                    log::debug!("connecting to {addr}");
                    connecting = Some(connect(addr, options.connect_timeout));
                }
            }
            if let Some(rx) = &connecting {
                match rx.try_recv() {
                    Ok(Ok(stream)) => {
                        connecting = None;
                        match open(stream) {
                            Ok(c) => {
                                conn = Some(c);
                                bridge.handle_link_up(now());
                                last_error.clear();
                            }
                            Err(e) => {
                                log::warn!("broker connection unusable: {e}");
                                bridge.handle_link_failed(now(), DownReason::Unreachable);
                            }
                        }
                        moved = true;
                    }
                    Ok(Err((reason, message))) => {
                        connecting = None;
                        if message != last_error {
                            log::error!("{message}; retrying with backoff");
                            last_error = message;
                        }
                        bridge.handle_link_failed(now(), reason);
                        moved = true;
                    }
                    Err(TryRecvError::Empty) => {}
                    Err(TryRecvError::Disconnected) => {
                        connecting = None;
                        bridge.handle_link_failed(now(), DownReason::Unreachable);
                    }
                }
            }
            let mut closed = false;
            if let Some(c) = conn.as_mut() {
                loop {
                    match c.rx.try_recv() {
                        Ok(Input::Bytes(b)) => {
                            c.pending.extend_from_slice(&b);
                            moved = true;
                        }
                        Ok(Input::Closed) | Err(TryRecvError::Disconnected) => {
                            closed = true;
                            break;
                        }
                        Err(TryRecvError::Empty) => break,
                    }
                    if c.pending.len() > 256 * 1024 {
                        break; // enough to chew on; the rest waits in the channel
                    }
                }
                while !c.pending.is_empty() {
                    let n = bridge.handle_bytes(&c.pending, now());
                    c.pending.drain(..n);
                    if bridge.poll(now()).progressed() {
                        moved = true;
                    }
                    if n == 0 {
                        break; // the session holds reception until the target drains the link
                    }
                }
            }
            moved |= bridge.poll(now()).progressed();
            let mut write_failed = false;
            while let Some(n) = bridge.poll_transmit(now(), &mut buf) {
                moved = true;
                if let Some(c) = conn.as_mut() {
                    if let Err(e) = c.stream.write_all(&buf[..n]) {
                        log::warn!("write to the broker failed: {e}");
                        write_failed = true;
                        break;
                    }
                }
            }
            if (closed || write_failed) && conn.is_some() {
                conn = None;
                bridge.handle_link_down(now());
                moved = true;
            }
            if conn.is_some() && !bridge.is_link_up() {
                conn = None; // the session gave the connection up (timeout, malformed packet, ...)
            }
            if let Ok(mut s) = stats.lock() {
                *s = HostStats {
                    link: bridge.stats(),
                    mqtt: bridge.session_stats().unwrap_or_default(),
                    boots,
                    refused_full: bridge.refused_full(),
                    redelivery_reconnects: bridge.redelivery_reconnects(),
                    given_up_deliveries: bridge.given_up_deliveries(),
                    too_long: bridge.too_long(),
                };
            }
            if moved {
                idle = 0;
            } else {
                idle += 1;
                if idle < 2_000 {
                    thread::yield_now();
                } else {
                    // Idle for a while: a short sleep bounds the CPU cost and the delay to the next exchange.
                    thread::sleep(StdDuration::from_micros(200));
                }
            }
        }
    }
}

/// What a host binary does with its parsed arguments: the arguments, or the exit code to return at once. An empty
/// error is a request for help (the usage on stdout, success); any other is a mistake (the program's name, the
/// error and the usage on stderr, exit code 2).
pub fn args_or_exit<T>(program: &str, usage: &str, parsed: Result<T, String>) -> Result<T, std::process::ExitCode> {
    match parsed {
        Ok(args) => Ok(args),
        Err(e) if e.is_empty() => {
            println!("{usage}");
            Err(std::process::ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{program}: {e}\n{usage}");
            Err(std::process::ExitCode::from(2))
        }
    }
}

/// A stderr logger for the host binaries: `error`, `warn`, `info`, `debug` or `trace`.
pub fn init_logging(level: log::LevelFilter) {
    struct Stderr;
    impl log::Log for Stderr {
        fn enabled(&self, m: &log::Metadata<'_>) -> bool {
            // An embedded broker (rumqttd in the demo) logs every packet at error level: only from debug on.
            let noisy = m.target().starts_with("rumqttd") && log::max_level() < log::LevelFilter::Debug;
            m.level() <= log::max_level() && !noisy
        }
        fn log(&self, r: &log::Record<'_>) {
            if self.enabled(r.metadata()) {
                let t = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
                eprintln!(
                    "{}.{:03} {:5} {}: {}",
                    t.as_secs() % 100_000,
                    t.subsec_millis(),
                    r.level(),
                    r.target(),
                    r.args()
                );
            }
        }
        fn flush(&self) {}
    }
    static LOGGER: Stderr = Stderr;
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(level);
    }
}

/// Parses a log level name.
pub fn parse_level(s: &str) -> Result<log::LevelFilter, String> {
    s.parse::<log::LevelFilter>()
        .map_err(|_| format!("bad log level `{s}` (expected off, error, warn, info, debug or trace)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls_parse_or_say_what_is_wrong() {
        let b = |h: &str, p| BrokerAddr {
            host: h.into(),
            port: p,
        };
        assert_eq!(parse_broker("mqtt://127.0.0.1:1884"), Ok(b("127.0.0.1", 1884)));
        assert_eq!(parse_broker("mqtt://broker.local"), Ok(b("broker.local", 1883)));
        assert_eq!(parse_broker("localhost:7"), Ok(b("localhost", 7)));
        assert_eq!(parse_broker("mqtt://[::1]:1883/"), Ok(b("::1", 1883)));
        assert!(parse_broker("mqtts://h:8883").unwrap_err().contains("no TLS"));
        assert!(parse_broker("mqtt://h:0").unwrap_err().contains("bad port"));
        assert!(parse_broker("mqtt://h:99999").unwrap_err().contains("bad port"));
        assert!(parse_broker("mqtt://").unwrap_err().contains("no host"));
        assert!(parse_broker("mqtt://:1883").unwrap_err().contains("no host"));
    }
}
