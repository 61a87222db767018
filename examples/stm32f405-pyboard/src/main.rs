//! MQTT on a Pyboard v1.1 (STM32F405RG) through a WiFi bridge on the 5-wire link: publishes a counter every
//! second and switches the blue LED from a topic. Needs a bridge (ESP32-C3 or ESP8266 running the bridge firmware)
//! wired as README.md shows.
#![no_std]
#![no_main]

mod board;
mod link;

use embassy_executor::Spawner;
use embassy_futures::select::{select, Either};
use embassy_stm32::exti::{self, ExtiInput};
use embassy_stm32::gpio::{Level, Output, OutputOpenDrain, Pull, Speed};
use embassy_stm32::mode::Async;
use embassy_stm32::{bind_interrupts, interrupt};
use embassy_time::{Duration, Ticker};
use panic_halt as _;
use protocol::{Config, Event, QoS, Status, PROTOCOL_VERSION};

use link::{Link, LinkPort};

// ---- Edit these: your WiFi network and MQTT broker (placeholders). ----
const WIFI_SSID: &str = "your-wifi";
const WIFI_PASSWORD: &str = "your-wifi-password";
const BROKER_HOST: &str = "broker.example.com";
const BROKER_PORT: u16 = 1883;
const CLIENT_ID: &str = "pyboard-1";
// ---- End of settings. ----

/// Where the counter goes, once a second.
const TOPIC_COUNTER: &str = "pyboard/counter";
/// Payload `on` or `off` switches the LED.
const TOPIC_LED: &str = "pyboard/led";
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

// B_CLK (PB8) and B_DAT (PB9) are EXTI lines 8 and 9, which share the EXTI9_5 vector.
bind_interrupts!(struct Irqs {
    EXTI9_5 => exti::InterruptHandler<interrupt::typelevel::EXTI9_5>;
});

type BoardLink<'a> = Link<
    'a,
    Output<'static>,
    Output<'static>,
    ExtiInput<'static, Async>,
    ExtiInput<'static, Async>,
    OutputOpenDrain<'static>,
>;

#[embassy_executor::main]
async fn main(_spawner: Spawner) {
    let p = embassy_stm32::init(board::config());
    // LED4, blue. LED1 (red) and LED2 (green) sit on PA13/PA14, the SWD pins: driving them locks out the probe.
    let led = Output::new(p.PB4, Level::Low, Speed::Low);

    // The link: pins on the Y header, queues, and the bridge's configuration. With the target-driver crate this
    // block becomes `target_driver::new(pins, config, &mut resources)` and a spawned task running the runner.
    let mut port = LinkPort::new();
    let Ok(mut link) = Link::new(
        Output::new(p.PC6, Level::Low, Speed::Medium),        // Y1: T_CLK
        Output::new(p.PC7, Level::Low, Speed::Medium),        // Y2: T_DAT
        ExtiInput::new(p.PB8, p.EXTI8, Pull::Down, Irqs),     // Y3: B_CLK, rests low
        ExtiInput::new(p.PB9, p.EXTI9, Pull::Up, Irqs),       // Y4: B_DAT, rests high
        OutputOpenDrain::new(p.PB12, Level::Low, Speed::Low), // Y5: RST, bridge held in reset
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
