//! What the end-to-end tests share: a Mosquitto broker of each test's own (from `test-support`), `mosquitto_sub` and `mosquitto_pub`, a
//! TCP fault proxy, the host bridge as a child process, and a relay that keeps the target's simulated wires
//! attached while that process is killed and started again.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bridge_firmware::host::BrokerAddr;
use examples::loopback;
pub use test_support::{Config, Mosquitto, MosquittoSub, TempDir};

/// One busy bridge and target at a time: a 2-core machine should not run several.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// A Mosquitto of the test's own on a free 127.0.0.1 port, anonymous clients, up to 10 000 queued messages per
/// client; with `persistence`, sessions and messages saved at every change so that they survive a SIGKILL.
pub fn mosquitto(tag: &str, persistence: bool) -> Mosquitto {
    let config = Config {
        persistence,
        ..Config::default()
    };
    Mosquitto::start(tag, &config).expect("start mosquitto")
}

/// A scratch directory of the test's own, removed on drop.
pub fn temp_dir(tag: &str) -> TempDir {
    TempDir::new(&format!("bridge-e2e-{tag}")).expect("temp dir")
}

/// A `mosquitto_sub` (QoS 1) whose output lines (`topic|retain|hex payload`) arrive on a channel.
pub struct Sub(MosquittoSub);

impl Sub {
    pub fn start(port: u16, filter: &str, extra: &[&str]) -> Sub {
        Sub(MosquittoSub::start(port, filter, 1, "%t|%r|%x", extra).expect("mosquitto_sub (install mosquitto-clients)"))
    }

    /// Waits until the subscription is in place: publishes a sentinel to `topic` until it comes back.
    pub fn ready(&self, port: u16, topic: &str) {
        let ready = self
            .0
            .wait_ready(port, topic, Duration::from_secs(20), |line| line.starts_with(topic));
        assert!(ready, "mosquitto_sub never saw its sentinel");
    }

    pub fn next(&self, timeout: Duration) -> Option<String> {
        self.0.lines.recv_timeout(timeout).ok()
    }
}

/// What a `mosquitto_sub` on the echo's topics counted, by sequence number (the payload's first 4 bytes).
#[derive(Default)]
pub struct Counts {
    /// Copies seen of each sequence number.
    pub seen: BTreeMap<u32, u32>,
    /// Other lines (sentinels, wills, ...).
    pub other: Vec<String>,
}

impl Counts {
    pub fn distinct(&self) -> usize {
        self.seen.len()
    }

    pub fn duplicates(&self) -> u32 {
        self.seen.values().map(|n| n - 1).sum()
    }
}

/// Counts the echo's messages at the broker, as a `mosquitto_sub` connected straight to it sees them.
pub struct Tally {
    _sub: Sub,
    pub counts: Arc<Mutex<Counts>>,
}

impl Tally {
    pub fn start(port: u16, prefix: &str) -> Tally {
        let mut sub = Sub::start(port, &format!("{prefix}/#"), &[]);
        sub.ready(port, &format!("{prefix}/sentinel"));
        let counts = Arc::new(Mutex::new(Counts::default()));
        let c = Arc::clone(&counts);
        // This thread takes the subscriber's lines over.
        let rx = std::mem::replace(&mut sub.0.lines, mpsc::channel().1);
        std::thread::spawn(move || {
            for line in rx.iter() {
                let seq = line
                    .rsplit('|')
                    .next()
                    .filter(|h| h.len() >= 8 && !line.contains("sentinel"))
                    .and_then(|h| u32::from_str_radix(&h[..8], 16).ok())
                    .map(|be| be.swap_bytes());
                let mut c = c.lock().unwrap_or_else(|p| p.into_inner());
                match seq {
                    Some(s) => *c.seen.entry(s).or_insert(0) += 1,
                    None => c.other.push(line),
                }
            }
        });
        Tally { _sub: sub, counts }
    }

    pub fn distinct(&self) -> usize {
        self.counts.lock().unwrap_or_else(|p| p.into_inner()).distinct()
    }

    /// Waits until `n` distinct messages arrived, up to `timeout`; the count then.
    pub fn wait_distinct(&self, n: usize, timeout: Duration) -> usize {
        let start = Instant::now();
        while self.distinct() < n && start.elapsed() < timeout {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.distinct()
    }
}

pub fn pub_(port: u16, topic: &str, payload: &[u8], retain: bool) {
    let file = std::env::temp_dir().join(format!("bridge-e2e-pub-{}-{port}", std::process::id()));
    std::fs::write(&file, payload).expect("payload file");
    let mut cmd = Command::new("mosquitto_pub");
    cmd.args(["-h", "127.0.0.1", "-p", &port.to_string(), "-t", topic, "-q", "1", "-f"])
        .arg(&file);
    if retain {
        cmd.arg("-r");
    }
    let status = cmd.status().expect("mosquitto_pub (install mosquitto-clients)");
    let _ = std::fs::remove_file(&file);
    assert!(status.success(), "mosquitto_pub failed");
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn all_bytes() -> Vec<u8> {
    (0..=255u8).collect()
}

/// One connection through the [`FaultProxy`].
struct ProxyConn {
    /// Forward nothing more either way, close nothing: half-open as far as both ends can tell.
    blackhole: AtomicBool,
    /// End both sides with an RST.
    reset: AtomicBool,
    /// When the client (the bridge) closed its side.
    client_closed: Mutex<Option<Instant>>,
}

struct ProxyShared {
    upstream: SocketAddr,
    stop: AtomicBool,
    conns: Mutex<Vec<Arc<ProxyConn>>>,
    accepted: Mutex<Vec<Instant>>,
}

/// A TCP proxy in front of the broker that can blackhole or reset the connections it carries. New connections
/// are forwarded normally whatever happened to the older ones (the network found another path).
pub struct FaultProxy {
    pub port: u16,
    shared: Arc<ProxyShared>,
}

impl FaultProxy {
    pub fn start(upstream: SocketAddr) -> Self {
        let shared = Arc::new(ProxyShared {
            upstream,
            stop: AtomicBool::new(false),
            conns: Mutex::new(Vec::new()),
            accepted: Mutex::new(Vec::new()),
        });
        let (s, s2) = (Arc::clone(&shared), Arc::clone(&shared));
        let port = listen(
            "proxy",
            move || s.stop.load(Ordering::SeqCst),
            move |c| proxy_connection(c, &s2),
        );
        FaultProxy { port, shared }
    }

    pub fn addr(&self) -> BrokerAddr {
        loopback(self.port)
    }

    /// When each connection was accepted.
    pub fn accepted(&self) -> Vec<Instant> {
        self.shared.accepted.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn conns(&self) -> Vec<Arc<ProxyConn>> {
        self.shared.conns.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Blackholes every current connection.
    pub fn blackhole(&self) {
        for c in self.conns() {
            c.blackhole.store(true, Ordering::SeqCst);
        }
    }

    /// Ends every current connection with an RST on both sides.
    pub fn reset(&self) {
        for c in self.conns() {
            c.reset.store(true, Ordering::SeqCst);
        }
    }

    /// The first time the client closed a connection, or a new connection came, after `since`.
    pub fn client_gave_up_after(&self, since: Instant) -> Option<Instant> {
        let closed = self
            .conns()
            .iter()
            .filter_map(|c| *c.client_closed.lock().unwrap_or_else(|p| p.into_inner()))
            .filter(|&t| t >= since)
            .min();
        let accepted = self.accepted().into_iter().filter(|&t| t >= since).min();
        match (closed, accepted) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.reset();
    }
}

/// Listens on a free loopback port and hands each accepted connection (made blocking) to `accept`, on a thread
/// of its own, until `stop` says so. Returns the port.
fn listen(
    what: &str,
    stop: impl Fn() -> bool + Send + 'static,
    mut accept: impl FnMut(TcpStream) + Send + 'static,
) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind {what}: {e}"));
    let port = listener.local_addr().expect("listener address").port();
    listener.set_nonblocking(true).expect("nonblocking");
    std::thread::spawn(move || {
        while !stop() {
            match listener.accept() {
                Ok((client, _)) => {
                    let _ = client.set_nonblocking(false);
                    accept(client);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(5)),
                Err(_) => return,
            }
        }
    });
    port
}

fn proxy_connection(client: TcpStream, shared: &Arc<ProxyShared>) {
    shared
        .accepted
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(Instant::now());
    let Ok(server) = TcpStream::connect(shared.upstream) else {
        rst(&client);
        return;
    };
    let conn = Arc::new(ProxyConn {
        blackhole: AtomicBool::new(false),
        reset: AtomicBool::new(false),
        client_closed: Mutex::new(None),
    });
    shared
        .conns
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(Arc::clone(&conn));
    for (from, to, from_client) in [(&client, &server, true), (&server, &client, false)] {
        let (Ok(from), Ok(to)) = (from.try_clone(), to.try_clone()) else {
            continue;
        };
        let c = Arc::clone(&conn);
        std::thread::spawn(move || proxy_pump(from, to, &c, from_client));
    }
}

/// SO_LINGER 0: closing the socket sends an RST. The socket closes when its last handle is dropped.
fn rst(s: &TcpStream) {
    let _ = socket2::SockRef::from(s).set_linger(Some(Duration::ZERO));
}

fn proxy_pump(mut from: TcpStream, mut to: TcpStream, conn: &ProxyConn, from_client: bool) {
    let _ = from.set_read_timeout(Some(Duration::from_millis(20)));
    let mut buf = [0u8; 16 * 1024];
    loop {
        if conn.reset.load(Ordering::SeqCst) {
            rst(&from);
            rst(&to);
            return; // both pumps return within a read timeout: the last handles close with an RST
        }
        match from.read(&mut buf) {
            Ok(0) => {
                if from_client {
                    *conn.client_closed.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
                }
                if !conn.blackhole.load(Ordering::SeqCst) {
                    let _ = to.shutdown(std::net::Shutdown::Write);
                }
                return;
            }
            Ok(n) => {
                if conn.blackhole.load(Ordering::SeqCst) {
                    continue;
                }
                if to.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            Err(_) => {
                if from_client {
                    *conn.client_closed.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
                }
                if !conn.blackhole.load(Ordering::SeqCst) {
                    rst(&to);
                }
                return;
            }
        }
    }
}

/// Keeps a target's shared wires (`Wires::share_unix(target_path, true)`) attached to whichever bridge process
/// serves `bridge_path`: when the bridge process dies, the relay connects to the next one and tells it the levels
/// of the lines the target drives (as wires that stay soldered would). The socket protocol is the one of
/// `protocol::sim`: two bytes per level change, `[line, level]`.
pub struct WireRelay {
    pub target_path: PathBuf,
    stop: Arc<AtomicBool>,
}

struct RelayState {
    /// Last level of each line the target drives (TClk, TDat, Rst: lines 0, 1, 4).
    levels: [Option<u8>; 5],
    bridge: Option<UnixStream>,
}

impl WireRelay {
    pub fn start(target_path: PathBuf, bridge_path: PathBuf) -> WireRelay {
        let _ = std::fs::remove_file(&target_path);
        let listener = UnixListener::bind(&target_path).expect("relay socket");
        let stop = Arc::new(AtomicBool::new(false));
        let state = Arc::new(Mutex::new(RelayState {
            levels: [None; 5],
            bridge: None,
        }));
        let (s, st) = (Arc::clone(&stop), Arc::clone(&state));
        std::thread::spawn(move || {
            let Ok((target, _)) = listener.accept() else { return };
            let Ok(mut from_target) = target.try_clone() else {
                return;
            };
            // Target → bridge, remembering the levels.
            let st2 = Arc::clone(&st);
            std::thread::spawn(move || {
                let mut msg = [0u8; 2];
                while from_target.read_exact(&mut msg).is_ok() {
                    let mut g = st2.lock().unwrap_or_else(|p| p.into_inner());
                    if let Some(l) = g.levels.get_mut(msg[0] as usize) {
                        *l = Some(msg[1]);
                    }
                    if let Some(b) = g.bridge.as_mut() {
                        if b.write_all(&msg).is_err() {
                            g.bridge = None;
                        }
                    }
                }
            });
            // Bridge → target, and reconnection to every new bridge process.
            while !s.load(Ordering::SeqCst) {
                let Ok(bridge) = UnixStream::connect(&bridge_path) else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let Ok(mut from_bridge) = bridge.try_clone() else {
                    continue;
                };
                {
                    let mut g = st.lock().unwrap_or_else(|p| p.into_inner());
                    let mut b = bridge;
                    for (line, level) in g.levels.iter().enumerate() {
                        if let Some(level) = level {
                            let _ = b.write_all(&[line as u8, *level]);
                        }
                    }
                    g.bridge = Some(b);
                }
                let mut to_target = match target.try_clone() {
                    Ok(t) => t,
                    Err(_) => return,
                };
                let mut msg = [0u8; 2];
                while from_bridge.read_exact(&mut msg).is_ok() {
                    if to_target.write_all(&msg).is_err() {
                        return;
                    }
                }
                st.lock().unwrap_or_else(|p| p.into_inner()).bridge = None;
            }
        });
        WireRelay { target_path, stop }
    }
}

impl Drop for WireRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = std::fs::remove_file(&self.target_path);
    }
}

/// `mqtt-bridge --wires PATH --broker URL` as a child process (the same program as `bridge-firmware`'s binary,
/// built in this package as `mqtt-bridge-e2e`); its log goes to a file.
pub struct BridgeProc {
    child: Option<Child>,
    wires: PathBuf,
    broker: BrokerAddr,
    log: PathBuf,
    hang_file: PathBuf,
    pub starts: u32,
}

impl BridgeProc {
    pub fn start(dir: &TempDir, broker: &BrokerAddr) -> BridgeProc {
        let mut b = BridgeProc {
            child: None,
            wires: dir.join("bridge.sock"),
            broker: broker.clone(),
            log: dir.join("bridge.log"),
            hang_file: dir.join("hang"),
            starts: 0,
        };
        b.spawn();
        b
    }

    pub fn wires(&self) -> PathBuf {
        self.wires.clone()
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("bridge log");
        let child = Command::new(env!("CARGO_BIN_EXE_mqtt-bridge-e2e"))
            .arg("--wires")
            .arg(&self.wires)
            .args(["--broker", &self.broker.to_string(), "--log-level", "info"])
            .env("MQTT_BRIDGE_TEST_HANG_FILE", &self.hang_file)
            .env_remove("MQTT_BRIDGE_BROKER")
            .env_remove("MQTT_BRIDGE_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn the bridge");
        self.child = Some(child);
        self.starts += 1;
    }

    /// SIGKILL: the process ends at once, its sockets are closed by the kernel (no DISCONNECT).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// The test-only hook: the bridge hangs (neither link nor broker) until the target resets it.
    pub fn hang(&self) {
        std::fs::write(&self.hang_file, b"").expect("hang file");
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for BridgeProc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Attaches to shared wires at `path`, retrying while nobody listens yet.
pub fn attach_wires(path: &Path, timeout: Duration) -> Arc<protocol::sim::Wires> {
    let start = Instant::now();
    loop {
        match protocol::sim::Wires::share_unix(path, true) {
            Ok(w) => return w,
            Err(e) if start.elapsed() < timeout => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("cannot attach to the wires at {}: {e}", path.display()),
        }
    }
}

/// What the [`GarbageBroker`] does with one connection, by its order of arrival.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GarbagePlan {
    /// Forward both ways to the broker; [`GarbageBroker::inject`] puts garbage between two of the broker's packets.
    Forward,
    /// Read the CONNECT, answer with garbage and keep the connection open: the client has to give it up itself.
    AnswerConnectWithGarbage,
}

/// Bytes that can never start a valid MQTT 3.1.1 packet: packet type 0 (reserved).
pub const GARBAGE_TYPE: &[u8] = b"\x00\x03bad";
/// A CONNACK whose remaining length runs past four bytes: malformed.
pub const GARBAGE_LENGTH: &[u8] = b"\x20\xff\xff\xff\xff\x7f";

struct GarbageShared {
    upstream: SocketAddr,
    plans: Vec<GarbagePlan>,
    stop: AtomicBool,
    /// Set by `inject`, taken by the broker → client pump of the forwarded connection that writes the garbage.
    inject: AtomicBool,
    accepted: Mutex<Vec<Instant>>,
    /// When the client closed each connection (by order of arrival), if it did.
    client_closed: Mutex<BTreeMap<usize, Instant>>,
    /// When garbage was written (mid-session injection or answer to CONNECT).
    garbage_at: Mutex<Vec<Instant>>,
}

/// A broker in front of the real one that sends garbage: connection `i` follows `plans[i]` (the last plan for every
/// later connection). The broker → client direction of a forwarded connection is cut at packet boundaries, so
/// injected garbage always starts where the client expects a packet's first byte.
pub struct GarbageBroker {
    pub port: u16,
    shared: Arc<GarbageShared>,
}

impl GarbageBroker {
    pub fn start(upstream: SocketAddr, plans: &[GarbagePlan]) -> Self {
        assert!(!plans.is_empty(), "at least one plan");
        let shared = Arc::new(GarbageShared {
            upstream,
            plans: plans.to_vec(),
            stop: AtomicBool::new(false),
            inject: AtomicBool::new(false),
            accepted: Mutex::new(Vec::new()),
            client_closed: Mutex::new(BTreeMap::new()),
            garbage_at: Mutex::new(Vec::new()),
        });
        let (s, s2) = (Arc::clone(&shared), Arc::clone(&shared));
        let port = listen(
            "garbage broker",
            move || s.stop.load(Ordering::SeqCst),
            move |c| garbage_connection(c, &s2),
        );
        GarbageBroker { port, shared }
    }

    pub fn addr(&self) -> BrokerAddr {
        loopback(self.port)
    }

    /// Writes [`GARBAGE_TYPE`] to the client of the current forwarded connection, between two packets.
    pub fn inject(&self) {
        self.shared.inject.store(true, Ordering::SeqCst);
    }

    /// When each connection was accepted.
    pub fn accepted(&self) -> Vec<Instant> {
        self.shared.accepted.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// When the client closed connection `i` (by order of arrival), if it did.
    pub fn client_closed(&self, i: usize) -> Option<Instant> {
        self.shared
            .client_closed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&i)
            .copied()
    }

    /// When garbage was written, in order.
    pub fn garbage_at(&self) -> Vec<Instant> {
        self.shared.garbage_at.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Drop for GarbageBroker {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
    }
}

fn garbage_connection(client: TcpStream, shared: &Arc<GarbageShared>) {
    let i = {
        let mut a = shared.accepted.lock().unwrap_or_else(|p| p.into_inner());
        a.push(Instant::now());
        a.len() - 1
    };
    let s = Arc::clone(shared);
    match shared.plans[i.min(shared.plans.len() - 1)] {
        GarbagePlan::AnswerConnectWithGarbage => {
            std::thread::spawn(move || garbage_connack(client, i, &s));
        }
        GarbagePlan::Forward => {
            let Ok(server) = TcpStream::connect(shared.upstream) else {
                rst(&client);
                return;
            };
            let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
                return;
            };
            let s_up = Arc::clone(shared);
            std::thread::spawn(move || garbage_pump_up(c2, s2, i, &s_up));
            std::thread::spawn(move || garbage_pump_down(server, client, &s));
        }
    }
}

fn note_closed(shared: &GarbageShared, i: usize) {
    shared
        .client_closed
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(i)
        .or_insert_with(Instant::now);
}

fn note_garbage(shared: &GarbageShared) {
    shared
        .garbage_at
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(Instant::now());
}

/// Waits for the CONNECT (any bytes), answers [`GARBAGE_LENGTH`], then only waits for the client to close.
fn garbage_connack(mut client: TcpStream, i: usize, shared: &GarbageShared) {
    let _ = client.set_read_timeout(Some(Duration::from_millis(20)));
    let mut buf = [0u8; 4096];
    let mut answered = false;
    while !shared.stop.load(Ordering::SeqCst) {
        match client.read(&mut buf) {
            Ok(0) => break,
            Ok(_) if !answered => {
                answered = true;
                if client.write_all(GARBAGE_LENGTH).is_err() {
                    break;
                }
                note_garbage(shared);
            }
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            Err(_) => break,
        }
    }
    note_closed(shared, i);
}

/// Client → broker, as it comes.
fn garbage_pump_up(mut from: TcpStream, mut to: TcpStream, i: usize, shared: &GarbageShared) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => {
                note_closed(shared, i);
                let _ = to.shutdown(std::net::Shutdown::Both);
                return;
            }
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

/// The length of the complete MQTT packet at the start of `buf`, if it is all there. Mosquitto's packets are
/// well formed; a malformed length is treated as "not complete" (and the connection stalls, visibly).
fn packet_len(buf: &[u8]) -> Option<usize> {
    let mut remaining = 0usize;
    for i in 1..=4 {
        let b = *buf.get(i)?;
        remaining |= usize::from(b & 0x7f) << (7 * (i - 1));
        if b & 0x80 == 0 {
            let total = 1 + i + remaining;
            return (buf.len() >= total).then_some(total);
        }
    }
    None
}

/// Broker → client, whole packets at a time, with the garbage injected between two of them when asked.
fn garbage_pump_down(mut from: TcpStream, mut to: TcpStream, shared: &GarbageShared) {
    let _ = from.set_read_timeout(Some(Duration::from_millis(5)));
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        if shared.inject.swap(false, Ordering::SeqCst) {
            if to.write_all(GARBAGE_TYPE).is_err() {
                return;
            }
            note_garbage(shared);
        }
        match from.read(&mut buf) {
            Ok(0) => {
                let _ = to.shutdown(std::net::Shutdown::Write);
                return;
            }
            Ok(n) => pending.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            Err(_) => {
                let _ = to.shutdown(std::net::Shutdown::Both);
                return;
            }
        }
        let mut whole = 0;
        while let Some(n) = packet_len(&pending[whole..]) {
            whole += n;
        }
        if whole > 0 {
            if to.write_all(&pending[..whole]).is_err() {
                return;
            }
            pending.drain(..whole);
        }
    }
}
