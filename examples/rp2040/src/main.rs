//! MQTT on a Raspberry Pi Pico (RP2040) through a WiFi bridge on the 5-wire link, with the `target-driver` crate:
//! publishes a counter every second and switches the on-board LED from a topic. Needs a bridge (ESP32-C3 or ESP8266
//! running the bridge firmware) wired as README.md shows.
#![no_std]
#![no_main]

use embassy_executor::Spawner;
use embassy_rp::gpio::{Input, Level, Output, OutputOpenDrain, Pull};
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_time::{Duration, Instant, Ticker};
use panic_halt as _;
use static_cell::StaticCell;
use target_driver::{Config, Event, Pins, QoS, Timing};

// ---- Edit these: your WiFi network and MQTT broker (placeholders). ----
const WIFI_SSID: &str = "your-wifi";
const WIFI_PASSWORD: &str = "your-wifi-password";
const BROKER_HOST: &str = "broker.example.com";
const BROKER_PORT: u16 = 1883;
const CLIENT_ID: &str = "pico-1";
// ---- End of settings. ----

/// Where the counter goes, once a second.
const TOPIC_COUNTER: &str = "pico/counter";
/// Payload `on` or `off` switches the LED.
const TOPIC_LED: &str = "pico/led";
const PUBLISH_EVERY: Duration = Duration::from_secs(1);

/// The driver's defaults: keepalive 30 s, persistent session (the broker keeps the subscription and queued QoS 1
/// messages across reconnections), no TLS, no will; watchdog 2 s. Change fields here for other settings.
const CONFIG: Config<'static> = Config::new(WIFI_SSID, WIFI_PASSWORD, BROKER_HOST, BROKER_PORT, CLIENT_ID);

/// The mutex guarding the driver's state, shared by the runner and the application's tasks (all on one executor;
/// a critical section also serves if a client call is ever made from an interrupt-mode executor).
type Mutex = CriticalSectionRawMutex;
/// T_CLK and T_DAT.
type OutLine = Output<'static>;
/// B_CLK and B_DAT: inputs that wait for edges through the GPIO bank interrupt (IO_IRQ_BANK0), which embassy-rp
/// binds itself.
type InLine = Input<'static>;
/// RST.
type RstLine = OutputOpenDrain<'static>;
/// The driver's memory, with the crate's default buffers (topics 64 B, payloads 128 B, 4 publications in flight,
/// 4 subscriptions, 256-byte link buffers).
type Resources = target_driver::Resources<'static, Mutex>;
type Client = target_driver::Client<'static, 'static, Mutex>;
type Runner = target_driver::Runner<
    'static,
    'static,
    Mutex,
    OutLine,
    OutLine,
    InLine,
    InLine,
    RstLine,
    { target_driver::DEFAULT_TOPIC },
    { target_driver::DEFAULT_PAYLOAD },
    { target_driver::DEFAULT_PUBS },
    { target_driver::DEFAULT_SUBS },
    { target_driver::DEFAULT_TX },
    { target_driver::DEFAULT_RX },
>;

static RESOURCES: StaticCell<Resources> = StaticCell::new();
/// The runner is handed to its task by reference: a task's argument taken by value is stored twice in the task
/// (the argument and the local it is moved into).
static RUNNER: StaticCell<Runner> = StaticCell::new();

#[embassy_executor::main]
async fn main(spawner: Spawner) {
    let p = embassy_rp::init(Default::default());
    // The Pico's LED. (On a Pico W the LED hangs off the WiFi chip, not GP25: this example is for the plain Pico.)
    let led = Output::new(p.PIN_25, Level::Low);

    // The link's pins, GP2 to GP6.
    let pins = Pins {
        t_clk: Output::new(p.PIN_2, Level::Low),        // GP2: T_CLK
        t_dat: Output::new(p.PIN_3, Level::Low),        // GP3: T_DAT
        b_clk: Input::new(p.PIN_4, Pull::Down),         // GP4: B_CLK, rests low
        b_dat: Input::new(p.PIN_5, Pull::Up),           // GP5: B_DAT, rests high
        rst: OutputOpenDrain::new(p.PIN_6, Level::Low), // GP6: RST, bridge held in reset
    };
    let resources = RESOURCES.init(Resources::new());
    let Ok((client, runner)) = target_driver::new(pins, CONFIG, Timing::default(), resources) else {
        panic!("this chip's pins cannot fail");
    };
    let (Ok(driver), Ok(events)) = (driver_task(RUNNER.init(runner)), events_task(client, led)) else {
        panic!("each task is spawned once");
    };
    spawner.spawn(driver);
    spawner.spawn(events);
    publish(client).await
}

/// Runs the driver: the link, RST and the watchdog.
#[embassy_executor::task]
async fn driver_task(runner: &'static mut Runner) -> ! {
    runner.run().await
}

/// Subscribes to [`TOPIC_LED`], then publishes a counter every second.
///
/// Publications wait for the broker's acknowledgement, which stalls while the bridge or the broker is down, so
/// events are read by [`events_task`], not here.
async fn publish(client: Client) -> ! {
    // Once is enough: the driver replays the subscription after every bridge reset. Returns when the broker has
    // granted it. A refusal (the broker's ACL, say) leaves the LED alone and the counter running.
    let _ = client.subscribe(TOPIC_LED, QoS::AtLeastOnce).await;

    let mut ticker = Ticker::every(PUBLISH_EVERY);
    let mut counter: u32 = 0;
    loop {
        ticker.next().await;
        counter = counter.wrapping_add(1);
        let mut digits = [0; 10];
        let started = Instant::now();
        // QoS 1: returns once the broker has acknowledged it; the driver resends it across bridge resets. It fails
        // only for an invalid topic or payload (not these) or when the bridge refuses it: that value is skipped.
        let _ = client
            .publish(TOPIC_COUNTER, decimal(counter, &mut digits), QoS::AtLeastOnce, false)
            .await;
        if started.elapsed() > PUBLISH_EVERY {
            // An outage: go on from now rather than publish the missed seconds in a burst.
            ticker.reset();
        }
    }
}

/// Switches the LED on `on`/`off` from [`TOPIC_LED`].
#[embassy_executor::task]
async fn events_task(client: Client, mut led: Output<'static>) -> ! {
    loop {
        // Read in place, without a buffer of this task's own; the closure runs with the driver locked, so it only
        // switches the LED.
        client
            .next_event_with(|event| match event {
                // A QoS 1 message is acknowledged by the driver once it has been handed out here.
                Event::Message(message) if message.topic == TOPIC_LED => match message.payload {
                    b"on" => led.set_high(),
                    b"off" => led.set_low(),
                    _ => {}
                },
                // Other topics, and status changes (bridge reset or up, WiFi and broker down or up, backpressure):
                // the driver restores configuration, subscription and unacknowledged publications by itself.
                _ => {}
            })
            .await;
    }
}

/// `n` in decimal ASCII, written at the end of `buf` (without `core::fmt`, which would cost kilobytes).
fn decimal(mut n: u32, buf: &mut [u8; 10]) -> &[u8] {
    let mut start = buf.len();
    loop {
        start -= 1;
        buf[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[start..];
        }
    }
}
