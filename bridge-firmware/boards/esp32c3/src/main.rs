//! The mqtt-link bridge on an ESP32-C3: the link's slave role on five GPIOs, the bridge service, and MQTT over
//! WiFi (esp-radio station, embassy-net DHCP, DNS, TCP), all on one embassy executor (esp-rtos).
//!
//! Nothing is compiled in: the WiFi network, the broker and the MQTT options come from the target's `Configure`.
//!
//! Tasks:
//! - `bridge` (the main task): the link, the [`Bridge`] service and the broker's TCP socket. It never waits for the
//!   network while the link needs it: DNS and TCP connect run beside the link (see [`Board::serve_until`]), and a
//!   write waits for room in the socket beside the link too.
//! - `wifi`: joins the configured network, rejoins with backoff when it is lost, switches on a new configuration.
//! - `net`: embassy-net's runner (DHCP, DNS, TCP, UDP). `sntp`: the wall clock. `watchdog`: feeds the MWDT while
//!   the bridge loop keeps turning.

#![no_std]
#![no_main]

mod sntp;

use core::future::{pending, Future};
use core::pin::pin;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use core::task::Poll;

use bridge_firmware::{Bridge, ANSWER_RESERVE};
use embassy_executor::Spawner;
use embassy_futures::poll_once;
use embassy_futures::select::{select, select3, Either};
use embassy_net::dns::DnsQueryType;
use embassy_net::tcp::TcpSocket;
use embassy_net::udp::{PacketMetadata, UdpSocket};
use embassy_net::{IpAddress, Runner, Stack, StackResources};
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_sync::signal::Signal;
use embassy_time::{with_timeout, Duration, Instant, Timer};
use esp_backtrace as _;
use esp_hal::clock::CpuClock;
use esp_hal::gpio::{Input, InputConfig, Level, Output, OutputConfig, Pull};
use esp_hal::peripherals::TIMG0;
use esp_hal::rng::Rng;
use esp_hal::timer::timg::{MwdtStage, MwdtStageAction, TimerGroup, Wdt};
use esp_radio::wifi::sta::StationConfig;
use esp_radio::wifi::{AuthenticationMethodConfig, Config as WifiConfig, ControllerConfig, Interface, WifiController};
use heapless::String;
use log::{error, info, warn};
use protocol::driver::asynch::Slave;
use protocol::driver::Timing;
use protocol::message::{MAX_NAME_LEN, MAX_PAYLOAD_LEN, MAX_SSID_LEN, MAX_TOPIC_LEN, MAX_WIFI_PASSWORD_LEN};
use protocol::{DownReason, MAX_FRAME_LEN};
use static_cell::StaticCell;

esp_bootloader_esp_idf::esp_app_desc!();

// ----- sizes -----

// Lean: the bridge core's RAM goal is 12 KiB (see `docs/benchmarks.md`).

/// The largest PUBLISH packet the link can carry either way: a 256-byte topic and a 1024-byte payload at QoS 1,
/// with the longest fixed header (1289 bytes).
const LARGEST_PUBLISH: usize = 5 + (2 + MAX_TOPIC_LEN) + 2 + MAX_PAYLOAD_LEN;
/// The link's send queue: one whole frame and the room the service keeps for answers (its smallest allowed size).
/// A message from the broker goes into it only when a whole frame fits beside that room (the service's rule), so
/// the next one waits in the session meanwhile.
const LINK_TX: usize = MAX_FRAME_LEN + ANSWER_RESERVE;
/// Publications queued or in flight toward the broker (also the target's window).
const QUEUE: usize = 4;
/// Bytes of topic and payload those publications may hold: one of the largest the link carries (1280) and small
/// ones; over it the target hears `QueueFull` and `Backpressure`, and sends again.
const STORE: usize = 1536;
/// The MQTT receive buffer: the largest packet accepted from the broker, as large as any message the link can
/// carry. A message that fits but whose topic or payload is over the link's limits is dropped and acknowledged; a
/// larger packet ends the connection (`BrokerDown { ProtocolError }`).
const MQTT_RX: usize = LARGEST_PUBLISH;
/// Subscriptions remembered for replay.
const SUBS: usize = 8;
/// The bridge core as this image sizes it (see `docs/benchmarks.md` for its RAM).
type Core = Bridge<LINK_TX, MAX_FRAME_LEN, QUEUE, STORE, MQTT_RX, SUBS>;

/// Packets to the broker are assembled here. The session never makes a packet larger than the largest PUBLISH the
/// link can ask for (a CONNECT is at most 665 bytes with the session's limits, a SUBSCRIBE 140).
const MQTT_TX: usize = LARGEST_PUBLISH;
/// The TCP socket's buffers.
const TCP_RX: usize = 2048;
const TCP_TX: usize = 2048;

// ----- timing -----

/// The bridge loop turns at least this often (it feeds the watchdog through [`HEARTBEAT`]).
const TICK: Duration = Duration::from_secs(1);
/// The watchdog resets the chip when the bridge loop has not turned for this long.
const WATCHDOG: u64 = 8;
/// DNS look-up of the broker.
const DNS_TIMEOUT: Duration = Duration::from_secs(5);
/// TCP connect to the broker.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// WiFi rejoin backoff: doubles from the first to the last.
const WIFI_BACKOFF: (u64, u64) = (1, 30);
/// SNTP: resync period, and the retry backoff from the first to the last.
const SNTP_PERIOD: Duration = Duration::from_secs(3600);
const SNTP_BACKOFF: (u64, u64) = (5, 600);
/// The link exchanges served before the bridge is polled again. Small, so that a message waiting in the session
/// for room in the link's send queue goes out soon after the room appears (the driver does not report it).
const LINK_BUDGET: u32 = 64;

// ----- what the tasks tell each other -----

/// The WiFi network the target configured (bridge → wifi task).
#[derive(Clone, PartialEq, Eq)]
struct Credentials {
    ssid: String<MAX_SSID_LEN>,
    password: String<MAX_WIFI_PASSWORD_LEN>,
}

static CREDENTIALS: Signal<CriticalSectionRawMutex, Credentials> = Signal::new();
/// The station is associated (wifi task → bridge).
static ASSOCIATED: AtomicBool = AtomicBool::new(false);
/// The wall clock from SNTP: at this instant it was this many Unix milliseconds (sntp task → bridge).
static CLOCK: Signal<CriticalSectionRawMutex, (Instant, u64)> = Signal::new();
/// Something the bridge loop should look at changed (association, DHCP lease, clock).
static WAKE: Signal<CriticalSectionRawMutex, ()> = Signal::new();
/// Counts the bridge loop's turns (bridge → watchdog task).
static HEARTBEAT: AtomicU32 = AtomicU32::new(0);

static CORE: StaticCell<Core> = StaticCell::new();
static MQTT_TX_BUF: StaticCell<[u8; MQTT_TX]> = StaticCell::new();
static TCP_BUFFERS: StaticCell<TcpBuffers> = StaticCell::new();
static NET_RESOURCES: StaticCell<StackResources<4>> = StaticCell::new();

/// The broker socket's buffers (the network stack's side, not the bridge core's).
struct TcpBuffers {
    rx: [u8; TCP_RX],
    tx: [u8; TCP_TX],
}

type Link = Slave<Output<'static>, Output<'static>, Input<'static>, Input<'static>>;

fn now() -> resilient_mqtt::Instant {
    Instant::now().into()
}

#[esp_rtos::main]
async fn main(spawner: Spawner) -> ! {
    esp_println::logger::init_logger_from_env();
    let peripherals = esp_hal::init(esp_hal::Config::default().with_cpu_clock(CpuClock::max()));
    // The WiFi driver's heap: the RAM the second-stage bootloader used, and some more.
    esp_alloc::heap_allocator!(#[esp_hal::ram(reclaimed)] size: 64 * 1024);
    esp_alloc::heap_allocator!(size: 32 * 1024);

    let timg0 = TimerGroup::new(peripherals.TIMG0);
    esp_rtos::start(timg0.timer0, peripherals.FROM_CPU_INTR0);

    info!(
        "mqtt-link bridge {} on ESP32-C3: link T_CLK=GPIO4 T_DAT=GPIO5 (in), B_CLK=GPIO6 B_DAT=GPIO7 (out), RST=EN",
        env!("CARGO_PKG_VERSION")
    );

    // The link's slave end. The pulls hold T_CLK and T_DAT low while the target is in reset or booting
    // (T_CLK equal to B_CLK: no exchange); B_CLK starts low and B_DAT high ("no request"), as the protocol says.
    let t_clk = Input::new(peripherals.GPIO4, InputConfig::default().with_pull(Pull::Down));
    let t_dat = Input::new(peripherals.GPIO5, InputConfig::default().with_pull(Pull::Down));
    let b_clk = Output::new(peripherals.GPIO6, Level::Low, OutputConfig::default());
    let b_dat = Output::new(peripherals.GPIO7, Level::High, OutputConfig::default());
    let link: Link = match Slave::new(b_clk, b_dat, t_clk, t_dat, Timing::default()) {
        Ok(l) => l,
        Err(_) => panic!("link pins"), // esp-hal's pins cannot fail
    };

    // WiFi station (started unconfigured; the wifi task joins once the target configured a network) and the
    // network stack on it.
    let controller = match WifiController::new(peripherals.WIFI, ControllerConfig::default()) {
        Ok(c) => c,
        Err(e) => panic!("WiFi driver failed to start: {e:?}"),
    };
    let interface = Interface::station();
    let mac = interface.mac_address();
    info!(
        "WiFi MAC {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]
    );
    let rng = Rng::new();
    let seed = (u64::from(rng.random()) << 32) | u64::from(rng.random());
    let (stack, runner) = embassy_net::new(
        interface,
        embassy_net::Config::dhcpv4(Default::default()),
        NET_RESOURCES.init(StackResources::new()),
        seed,
    );

    spawner.spawn(unwrap_spawn(net_task(runner)));
    spawner.spawn(unwrap_spawn(wifi_task(controller)));
    spawner.spawn(unwrap_spawn(lease_task(stack)));
    spawner.spawn(unwrap_spawn(sntp_task(stack, seed)));
    spawner.spawn(unwrap_spawn(watchdog_task(timg0.wdt)));

    // The jitter seed spreads the reconnects of bridges that restart together: the MAC differs between them.
    let jitter = u32::from_le_bytes([mac[2], mac[3], mac[4], mac[5]]);
    let bridge = CORE.init(Core::new(jitter));
    info!(
        "bridge core: {} bytes (link queue {}, MQTT queue {}/{} bytes, rx {}); waiting for the target's Configure",
        core::mem::size_of::<Core>(),
        LINK_TX,
        QUEUE,
        STORE,
        MQTT_RX
    );
    let tcp = TCP_BUFFERS.init(TcpBuffers {
        rx: [0; TCP_RX],
        tx: [0; TCP_TX],
    });
    let mqtt_tx = MQTT_TX_BUF.init([0; MQTT_TX]);
    run_bridge(
        Board {
            stack,
            link,
            bridge,
            net_up: false,
            sent: None,
        },
        tcp,
        mqtt_tx,
    )
    .await
}

fn unwrap_spawn<T>(token: Result<T, embassy_executor::SpawnError>) -> T {
    match token {
        Ok(t) => t,
        Err(e) => panic!("task did not spawn: {e:?}"),
    }
}

// ----- the bridge loop -----

/// What the bridge loop owns besides the broker's socket.
struct Board {
    stack: Stack<'static>,
    link: Link,
    bridge: &'static mut Core,
    /// WiFi associated and a DHCP lease: what the bridge last heard.
    net_up: bool,
    /// The credentials last handed to the wifi task.
    sent: Option<Credentials>,
}

impl Board {
    /// Everything that needs no waiting: the clock, the network's state, a new configuration's WiFi network, and
    /// the service's step.
    fn step(&mut self) {
        // Only this task writes it (the RV32IMC has no atomic read-modify-write).
        HEARTBEAT.store(HEARTBEAT.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
        let t = now();
        if let Some((at, unix_ms)) = CLOCK.try_take() {
            self.bridge.set_wall_clock(at.into(), unix_ms);
        }
        let associated = ASSOCIATED.load(Ordering::Relaxed);
        let leased = self.stack.is_config_up();
        let up = associated && leased;
        if up != self.net_up {
            self.net_up = up;
            if up {
                if let Some(c) = self.stack.config_v4() {
                    info!("network up: address {}", c.address);
                }
            } else if associated {
                warn!("network down: DHCP lease lost or not obtained yet");
            } else {
                warn!("network down: WiFi not associated");
            }
        }
        self.bridge.handle_wifi(up, t);
        if let Some(n) = self.bridge.network() {
            let wanted = Credentials {
                ssid: n.wifi_ssid.clone(),
                password: n.wifi_password.clone(),
            };
            if self.sent.as_ref() != Some(&wanted) {
                CREDENTIALS.signal(wanted.clone());
                self.sent = Some(wanted);
            }
        }
        self.bridge.set_link_resyncs(self.link.stats().resyncs);
        let _ = self.bridge.poll(t);
    }

    /// Waits for the link (a frame to take, an exchange budget spent), the service's next deadline, at most
    /// [`TICK`], or a [`WAKE`]. Cancel-safe: the link driver's futures are.
    async fn wait_local(&mut self) {
        let tick = Instant::now() + TICK;
        let deadline = match self.bridge.poll_at() {
            Some(at) => embassy_time::Instant::from(at).min(tick),
            None => tick,
        };
        // A frame the service could not take yet holds the link (the driver would return at once): wait for the
        // rest then.
        let held = self.bridge.port().received().is_some();
        let link = &mut self.link;
        let port = self.bridge.port();
        let serve = async {
            if held {
                pending::<()>().await;
            }
            // The pins are infallible and the slave reports no faults: its result says only why it returned.
            let _ = link.run(port, LINK_BUDGET).await;
        };
        let _ = select3(serve, Timer::at(deadline), WAKE.wait()).await;
    }

    /// Serves the link and the service until `fut` completes (DNS and TCP connect take seconds; the target's
    /// watchdog would reset a bridge whose link stalls that long).
    async fn serve_until<F: Future>(&mut self, fut: F) -> F::Output {
        let mut fut = pin!(fut);
        loop {
            self.step();
            if let Either::First(out) = select(fut.as_mut(), self.wait_local()).await {
                return out;
            }
        }
    }
}

/// Resolves the broker's name and opens the TCP connection.
async fn open(stack: Stack<'static>, socket: &mut TcpSocket<'_>, host: &str, port: u16) -> Result<(), DownReason> {
    let addr = match with_timeout(DNS_TIMEOUT, stack.dns_query(host, DnsQueryType::A)).await {
        Ok(Ok(addrs)) => match addrs.first() {
            Some(IpAddress::Ipv4(a)) => *a,
            _ => {
                warn!("broker: {host} has no IPv4 address");
                return Err(DownReason::Dns);
            }
        },
        Ok(Err(e)) => {
            warn!("broker: DNS look-up of {host} failed ({e:?})");
            return Err(DownReason::Dns);
        }
        Err(_) => {
            warn!("broker: DNS look-up of {host} timed out");
            return Err(DownReason::Dns);
        }
    };
    socket.abort();
    match with_timeout(CONNECT_TIMEOUT, socket.connect((addr, port))).await {
        Ok(Ok(())) => {
            info!("broker: TCP connected to {addr}:{port}");
            Ok(())
        }
        Ok(Err(e)) => {
            warn!("broker: TCP connect to {addr}:{port} failed ({e:?})");
            socket.abort();
            Err(DownReason::Unreachable)
        }
        Err(_) => {
            warn!("broker: TCP connect to {addr}:{port} timed out");
            socket.abort();
            Err(DownReason::Unreachable)
        }
    }
}

/// What ended a wait of the bridge loop on the broker's socket.
enum NetWake {
    Readable,
    Wrote(Result<usize, embassy_net::tcp::Error>),
}

async fn run_bridge(mut board: Board, tcp: &'static mut TcpBuffers, mqtt_tx: &'static mut [u8; MQTT_TX]) -> ! {
    let mut socket = TcpSocket::new(board.stack, &mut tcp.rx, &mut tcp.tx);
    // The session's keepalive finds dead connections; Nagle would delay small packets (acks, pings).
    socket.set_timeout(None);
    socket.set_keep_alive(None);
    socket.set_nagle_enabled(false);
    let mut connected = false;
    // Bytes of `mqtt_tx` written to the socket, and assembled.
    let (mut tx_off, mut tx_len) = (0usize, 0usize);
    // The session took no bytes last time: read again only after something else happened.
    let mut rx_blocked = false;
    loop {
        board.step();
        let t = now();

        // The connection ends when the session gives it up (keepalive, malformed packet, WiFi lost).
        if connected && !board.bridge.is_link_up() {
            info!("broker: closing the connection");
            socket.abort();
            connected = false;
            (tx_off, tx_len) = (0, 0);
        }
        // `broker()` is there whenever the service wants a link (it wants one only once configured).
        let target = match board.bridge.broker() {
            Some((host, port)) if !connected && board.net_up && board.bridge.wants_link(t) => {
                let mut name: String<MAX_NAME_LEN> = String::new();
                let _ = name.push_str(host); // as long as the service's copy
                Some((name, port))
            }
            _ => None,
        };
        if let Some((name, port)) = target {
            info!("broker: connecting to {}:{}", name.as_str(), port);
            let stack = board.stack;
            let result = board.serve_until(open(stack, &mut socket, &name, port)).await;
            let t = now();
            let same = board
                .bridge
                .broker()
                .is_some_and(|(h, p)| h == name.as_str() && p == port);
            if !same {
                // The target configured another broker meanwhile: its session has not been told of this attempt.
                info!("broker: configuration changed while connecting; starting over");
                socket.abort();
                continue;
            }
            match result {
                Ok(()) if board.net_up => {
                    board.bridge.handle_link_up(t);
                    connected = true;
                    rx_blocked = false;
                }
                Ok(()) => {
                    socket.abort();
                    board.bridge.handle_link_failed(t, DownReason::NoNetwork);
                }
                Err(reason) => board.bridge.handle_link_failed(t, reason),
            }
            continue;
        }

        if connected {
            // Take what the broker sent, as far as the session has room.
            if !rx_blocked {
                let bridge = &mut *board.bridge;
                let read = poll_once(socket.read_with(|data| {
                    let n = bridge.handle_bytes(data, t);
                    (n, (n, data.len()))
                }));
                match read {
                    Poll::Ready(Ok((taken, offered))) => rx_blocked = taken == 0 && offered > 0,
                    Poll::Ready(Err(_)) => {
                        info!("broker: connection closed by the peer");
                        board.bridge.handle_link_down(t);
                        socket.abort();
                        connected = false;
                        (tx_off, tx_len) = (0, 0);
                        continue;
                    }
                    Poll::Pending => {}
                }
                let _ = board.bridge.poll(t);
            }
            // Assemble the next packets once the last are in the socket.
            if tx_off == tx_len {
                (tx_off, tx_len) = (0, 0);
                while let Some(n) = board.bridge.poll_transmit(t, &mut mqtt_tx[tx_len..]) {
                    tx_len += n;
                }
            }
        }

        let net = async {
            if !connected {
                return pending::<NetWake>().await;
            }
            let (reader, mut writer) = socket.split();
            let readable = async {
                if rx_blocked {
                    pending::<()>().await;
                }
                reader.wait_read_ready().await;
            };
            let write = async {
                if tx_off == tx_len {
                    return pending().await;
                }
                writer.write(&mqtt_tx[tx_off..tx_len]).await
            };
            match select(readable, write).await {
                Either::First(()) => NetWake::Readable,
                Either::Second(r) => NetWake::Wrote(r),
            }
        };
        match select(board.wait_local(), net).await {
            Either::First(()) => rx_blocked = false,
            Either::Second(NetWake::Readable) => {}
            Either::Second(NetWake::Wrote(Ok(n))) if n > 0 => tx_off += n,
            Either::Second(NetWake::Wrote(_)) => {
                warn!("broker: write failed");
                board.bridge.handle_link_down(now());
                socket.abort();
                connected = false;
                (tx_off, tx_len) = (0, 0);
            }
        }
    }
}

// ----- the other tasks -----

#[embassy_executor::task]
async fn net_task(mut runner: Runner<'static, Interface>) -> ! {
    runner.run().await
}

/// Wakes the bridge loop when the DHCP lease comes or goes.
#[embassy_executor::task]
async fn lease_task(stack: Stack<'static>) -> ! {
    loop {
        stack.wait_config_up().await;
        WAKE.signal(());
        stack.wait_config_down().await;
        WAKE.signal(());
    }
}

fn station_config(c: &Credentials) -> Option<WifiConfig> {
    let ssid = c.ssid.as_str().try_into().ok()?;
    let auth = if c.password.is_empty() {
        AuthenticationMethodConfig::Open
    } else {
        // The weakest mode accepted. WPA(1)-only networks would need `WpaWpa2Personal`.
        AuthenticationMethodConfig::Wpa2Personal(c.password.as_str().try_into().ok()?)
    };
    Some(WifiConfig::Station(
        StationConfig::default().with_ssid(ssid).with_authentication(auth),
    ))
}

/// Joins the configured network and keeps it: rejoins with backoff after a loss or a failed attempt, and
/// switches when the target configures another network.
#[embassy_executor::task]
async fn wifi_task(mut controller: WifiController<'static>) -> ! {
    let mut creds = CREDENTIALS.wait().await;
    let mut backoff = WIFI_BACKOFF.0;
    loop {
        let Some(config) = station_config(&creds) else {
            error!("wifi: the configured SSID or password is not usable");
            creds = CREDENTIALS.wait().await;
            continue;
        };
        if let Err(e) = controller.set_config(&config) {
            error!("wifi: configuration refused ({e:?})");
            creds = CREDENTIALS.wait().await;
            continue;
        }
        info!("wifi: joining \"{}\"", creds.ssid.as_str());
        match select(controller.connect_async(), CREDENTIALS.wait()).await {
            Either::First(Ok(info)) => {
                info!("wifi: associated (channel {})", info.channel);
                backoff = WIFI_BACKOFF.0;
                ASSOCIATED.store(true, Ordering::Relaxed);
                WAKE.signal(());
                match select(controller.wait_for_disconnect_async(), CREDENTIALS.wait()).await {
                    Either::First(Ok(info)) => warn!("wifi: lost ({:?}); rejoining", info.reason),
                    Either::First(Err(e)) => warn!("wifi: lost ({e:?}); rejoining"),
                    Either::Second(new) => {
                        info!("wifi: another network was configured");
                        creds = new;
                        let _ = controller.disconnect_async().await;
                    }
                }
                ASSOCIATED.store(false, Ordering::Relaxed);
                WAKE.signal(());
            }
            Either::First(Err(e)) => {
                warn!("wifi: joining failed ({e:?}); next attempt in {backoff} s");
                if let Either::Second(new) = select(Timer::after_secs(backoff), CREDENTIALS.wait()).await {
                    creds = new;
                    backoff = WIFI_BACKOFF.0;
                } else {
                    backoff = (backoff * 2).min(WIFI_BACKOFF.1);
                }
            }
            Either::Second(new) => {
                info!("wifi: another network was configured");
                creds = new;
                let _ = controller.disconnect_async().await; // ends the attempt in progress
            }
        }
    }
}

/// The wall clock from SNTP, after every new lease and then hourly; retried with backoff.
#[embassy_executor::task]
async fn sntp_task(stack: Stack<'static>, seed: u64) -> ! {
    let mut rx_meta = [PacketMetadata::EMPTY; 2];
    let mut tx_meta = [PacketMetadata::EMPTY; 2];
    let mut rx_buf = [0u8; 128];
    let mut tx_buf = [0u8; 64];
    let mut socket = UdpSocket::new(stack, &mut rx_meta, &mut rx_buf, &mut tx_meta, &mut tx_buf);
    if let Err(e) = socket.bind(0) {
        error!("sntp: no UDP socket ({e:?}); no wall clock");
        pending::<()>().await;
    }
    let mut retry = SNTP_BACKOFF.0;
    let mut cookie = seed;
    loop {
        stack.wait_config_up().await;
        cookie = cookie.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        match sntp::query(stack, &socket, cookie).await {
            Ok((at, unix_ms)) => {
                info!(
                    "sntp: Unix time {}.{:03} s from {}",
                    unix_ms / 1000,
                    unix_ms % 1000,
                    sntp::SERVER
                );
                CLOCK.signal((at, unix_ms));
                WAKE.signal(());
                retry = SNTP_BACKOFF.0;
                // Resync hourly, or at once after the lease was lost and regained.
                let lost = async {
                    stack.wait_config_down().await;
                    stack.wait_config_up().await;
                };
                let _ = select(Timer::after(SNTP_PERIOD), lost).await;
            }
            Err(e) => {
                warn!("sntp: {e:?}; next attempt in {retry} s");
                Timer::after_secs(retry).await;
                retry = (retry * 2).min(SNTP_BACKOFF.1);
            }
        }
    }
}

/// Feeds the main watchdog (MWDT0) while the bridge loop keeps turning; a loop stuck for [`WATCHDOG`] seconds
/// (or an executor that no longer runs) resets the chip.
#[embassy_executor::task]
async fn watchdog_task(mut wdt: Wdt<TIMG0<'static>>) -> ! {
    wdt.set_timeout(MwdtStage::Stage0, esp_hal::time::Duration::from_secs(WATCHDOG));
    wdt.set_stage_action(MwdtStage::Stage0, MwdtStageAction::ResetSystem);
    wdt.enable();
    let mut last = HEARTBEAT.load(Ordering::Relaxed);
    loop {
        Timer::after(TICK).await;
        let beat = HEARTBEAT.load(Ordering::Relaxed);
        if beat != last {
            last = beat;
            wdt.feed();
        }
    }
}
