//! MQTT on a Raspberry Pi Pico (RP2040) through a WiFi bridge on the 5-wire link: publishes a counter every second
//! and switches the on-board LED from a topic. Needs a bridge (ESP32-C3 or ESP8266 running the bridge firmware)
//! wired as README.md shows.
#![no_std]
#![no_main]

mod link;

use embassy_executor::Spawner;
use embassy_futures::select::{select, Either};
use embassy_rp::gpio::{Input, Level, Output, OutputOpenDrain, Pull};
use embassy_time::{Duration, Ticker};
use panic_halt as _;
use protocol::{Config, Event, QoS, Status, PROTOCOL_VERSION};

use link::{Link, LinkPort};

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

const CONFIG: Config<'static> = Config {
    version: PROTOCOL_VERSION,
    wifi_ssid: WIFI_SSID,
    wifi_password: WIFI_PASSWORD,
    broker_host: BROKER_HOST,
    broker_port: BROKER_PORT,
    client_id: CLIENT_ID,
    username: None,
    password: None,
    keepalive_s: 60,
    // Keep the subscription and queued QoS 1 messages at the broker across reconnections.
    clean_session: false,
    will: None,
    tls: false,
};

// Edge waits on B_CLK and B_DAT use the GPIO bank interrupt (IO_IRQ_BANK0), which embassy-rp binds itself.
type BoardLink<'a> =
    Link<'a, Output<'static>, Output<'static>, Input<'static>, Input<'static>, OutputOpenDrain<'static>>;

#[embassy_executor::main]
async fn main(_spawner: Spawner) {
    let p = embassy_rp::init(Default::default());
    // The Pico's LED. (On a Pico W the LED hangs off the WiFi chip, not GP25: this example is for the plain Pico.)
    let led = Output::new(p.PIN_25, Level::Low);

    // The link: pins GP2 to GP6, queues, and the bridge's configuration. With the target-driver crate this block
    // becomes `target_driver::new(pins, config, &mut resources)` and a spawned task running the runner.
    let mut port = LinkPort::new();
    let Ok(mut link) = Link::new(
        Output::new(p.PIN_2, Level::Low),          // GP2: T_CLK
        Output::new(p.PIN_3, Level::Low),          // GP3: T_DAT
        Input::new(p.PIN_4, Pull::Down),           // GP4: B_CLK, rests low
        Input::new(p.PIN_5, Pull::Up),             // GP5: B_DAT, rests high
        OutputOpenDrain::new(p.PIN_6, Level::Low), // GP6: RST, bridge held in reset
        CONFIG,
        &mut port,
    ) else {
        panic!("this chip's pins cannot fail");
    };
    app(&mut link, led).await
}

/// The application: publishes a counter every second, and switches the LED on `on`/`off` from [`TOPIC_LED`].
async fn app(link: &mut BoardLink<'_>, mut led: Output<'static>) -> ! {
    /// What to send once the event's borrow of the link has ended.
    enum Reply {
        Nothing,
        Subscribe,
        Ack(u16),
        Publish,
    }

    let mut ticker = Ticker::every(PUBLISH_EVERY);
    let mut counter: u32 = 0;
    loop {
        // The link runs (and sleeps on its lines' interrupts) while this waits; the ticker interrupts it.
        let reply = match select(link.next_event(), ticker.next()).await {
            // The bridge (re)started and has been sent CONFIG.
            Either::First(Ok(Event::Ready { .. })) => Reply::Subscribe,
            // The broker has forgotten this client (first connection, or its session expired).
            Either::First(Ok(Event::Status(Status::BrokerUp { session_present: false }))) => Reply::Subscribe,
            Either::First(Ok(Event::Message {
                id,
                topic,
                payload,
                qos,
                ..
            })) => {
                if topic == TOPIC_LED {
                    match payload {
                        b"on" => led.set_high(),
                        b"off" => led.set_low(),
                        _ => {}
                    }
                }
                match qos {
                    QoS::AtLeastOnce => Reply::Ack(id),
                    _ => Reply::Nothing,
                }
            }
            // PubAck, SubAck, other status changes, the bridge's errors, frames this version cannot decode.
            Either::First(_) => Reply::Nothing,
            Either::Second(()) => Reply::Publish,
        };
        // A request fails only before the bridge is ready or while it takes no frames (a link error then restarts
        // it, and Ready brings a new subscription): a counter value is skipped, an unacknowledged message comes
        // again from the broker.
        let _ = match reply {
            Reply::Nothing => Ok(()),
            Reply::Subscribe => link.subscribe(TOPIC_LED, QoS::AtLeastOnce).map(drop),
            Reply::Ack(id) => link.ack(id),
            Reply::Publish => {
                counter = counter.wrapping_add(1);
                let mut digits = [0; 10];
                link.publish(TOPIC_COUNTER, decimal(counter, &mut digits), QoS::AtLeastOnce, false)
                    .map(drop)
            }
        };
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
