//! The async runner over a polling std socket adapter, with the embassy-time std driver, against Mosquitto.

mod support;

use std::collections::BTreeSet;
use std::io::{ErrorKind, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant as StdInstant};

use embassy_time::Timer;
use resilient_mqtt::runner::{self, Application, Connector};
use resilient_mqtt::{Client, DisconnectReason, Event, Instant, Options, QoS};
use support::mosquitto;
use test_support::Config;

/// A std socket made async by polling; cancel-safe because bytes are only taken when `read` returns. It borrows
/// the connector (as an embassy-net socket borrows its buffers).
struct PollingConn<'a>(TcpStream, #[allow(dead_code)] &'a mut u32);

#[derive(Debug)]
struct IoError;

impl std::fmt::Display for IoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("socket error")
    }
}

impl std::error::Error for IoError {}

impl embedded_io_async::Error for IoError {
    fn kind(&self) -> embedded_io_async::ErrorKind {
        embedded_io_async::ErrorKind::Other
    }
}

impl embedded_io_async::ErrorType for PollingConn<'_> {
    type Error = IoError;
}

impl embedded_io_async::Read for PollingConn<'_> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, IoError> {
        loop {
            match self.0.read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == ErrorKind::WouldBlock => Timer::after_millis(1).await,
                Err(_) => return Err(IoError),
            }
        }
    }
}

impl embedded_io_async::Write for PollingConn<'_> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, IoError> {
        loop {
            match self.0.write(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == ErrorKind::WouldBlock => Timer::after_millis(1).await,
                Err(_) => return Err(IoError),
            }
        }
    }

    async fn flush(&mut self) -> Result<(), IoError> {
        Ok(())
    }
}

struct StdConnector {
    addr: SocketAddr,
    /// Connections opened so far; each connection borrows it.
    opened: u32,
}

impl Connector for StdConnector {
    type Connection<'a> = PollingConn<'a>;
    type Error = std::io::Error;
    async fn connect(&mut self) -> Result<PollingConn<'_>, std::io::Error> {
        let s = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1))?;
        s.set_nonblocking(true)?;
        s.set_nodelay(true)?;
        self.opened += 1;
        Ok(PollingConn(s, &mut self.opened))
    }
}

#[derive(Default)]
struct Shared {
    to_publish: Vec<u32>,
    subscribe: bool,
    connected: u32,
    disconnects: Vec<DisconnectReason>,
    published: BTreeSet<u32>,
    received: BTreeSet<u32>,
    to_ack: Vec<u16>,
    subscribed: bool,
}

struct App {
    shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
}

impl Application<32, 8192, 4096, 8> for App {
    fn on_event(&mut self, event: Event<'_>) {
        let mut s = self.shared.lock().unwrap();
        match event {
            Event::Connected { .. } => s.connected += 1,
            Event::Disconnected { reason } => s.disconnects.push(reason),
            Event::Published { token } => {
                s.published.insert(token);
            }
            Event::Subscribed { .. } => s.subscribed = true,
            Event::Message(m) => {
                if let Some(v) = std::str::from_utf8(m.payload).ok().and_then(|p| p.parse().ok()) {
                    s.received.insert(v);
                }
                if let Some(id) = m.packet_id {
                    s.to_ack.push(id);
                }
            }
            _ => {}
        }
    }

    async fn wait(&mut self) {
        Timer::after_millis(10).await;
    }

    fn poll(&mut self, client: &mut Client<32, 8192, 4096, 8>, _now: Instant) -> ControlFlow<()> {
        if self.stop.load(Ordering::SeqCst) {
            return ControlFlow::Break(());
        }
        let mut s = self.shared.lock().unwrap();
        if std::mem::take(&mut s.subscribe) {
            client.subscribe(1, &[("a/#", QoS::AtLeastOnce)]).unwrap();
        }
        for id in std::mem::take(&mut s.to_ack) {
            client.ack(id).unwrap();
        }
        let todo = std::mem::take(&mut s.to_publish);
        for t in todo {
            client
                .publish(t, "a/x", t.to_string().as_bytes(), QoS::AtLeastOnce, false)
                .unwrap();
        }
        ControlFlow::Continue(())
    }
}

fn wait_until(shared: &Arc<Mutex<Shared>>, what: &str, pred: impl Fn(&Shared) -> bool) {
    let end = StdInstant::now() + Duration::from_secs(10);
    while StdInstant::now() < end {
        if pred(&shared.lock().unwrap()) {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("timed out waiting for {what}");
}

#[test]
fn async_runner_refuses_a_transmit_buffer_below_the_packet_size() {
    let mut client: Client<32, 8192, 4096, 8> = Client::new(&Options::new("async-0")).unwrap();
    let mut app = App {
        shared: Default::default(),
        stop: Default::default(),
    };
    let mut tx = [0u8; 100];
    let addr = SocketAddr::from(([127, 0, 0, 1], 9));
    let mut connector = StdConnector { addr, opened: 0 };
    let r = futures_executor::block_on(runner::run(&mut client, &mut connector, &mut app, &mut tx));
    assert_eq!(r, Err(runner::RunError::TxBufferTooSmall));
}

#[test]
fn async_runner_reconnects_replays_subscriptions_and_delivers_the_offline_queue() {
    let mut broker = mosquitto(Config::default()); // no persistence: the restarted broker has no session
    let shared = Arc::new(Mutex::new(Shared::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let (s2, stop2, addr) = (shared.clone(), stop.clone(), broker.addr());
    let runner = std::thread::spawn(move || {
        let mut client: Client<32, 8192, 4096, 8> = Client::new(&Options::new("async-1")).unwrap();
        let mut app = App {
            shared: s2,
            stop: stop2,
        };
        let mut tx = [0u8; 4096];
        let mut connector = StdConnector { addr, opened: 0 };
        let r = futures_executor::block_on(runner::run(&mut client, &mut connector, &mut app, &mut tx));
        (r, connector.opened)
    });

    wait_until(&shared, "connected", |s| s.connected == 1);
    shared.lock().unwrap().subscribe = true;
    wait_until(&shared, "subscribed", |s| s.subscribed);
    shared.lock().unwrap().to_publish.extend(0..10);
    wait_until(&shared, "first ten round trips", |s| {
        s.published.len() == 10 && s.received.len() == 10
    });

    broker.kill();
    wait_until(&shared, "disconnect seen", |s| !s.disconnects.is_empty());
    shared.lock().unwrap().to_publish.extend(10..20); // offline
    broker.restart().expect("restart mosquitto");
    wait_until(&shared, "second connection", |s| s.connected == 2);
    wait_until(&shared, "offline queue delivered to the replayed subscription", |s| {
        s.published.len() == 20 && s.received.len() == 20
    });
    assert_eq!(
        shared.lock().unwrap().disconnects,
        vec![DisconnectReason::TransportClosed]
    );
    stop.store(true, Ordering::SeqCst);
    assert_eq!(runner.join().unwrap(), (Ok(()), 2), "one connection per broker life");
}
