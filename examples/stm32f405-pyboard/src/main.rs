//! MQTT on a Pyboard v1.1 (STM32F405RG) through a WiFi bridge on the 5-wire link, with the `target-driver` crate:
//! publishes a counter every second and switches the blue LED from a topic. Needs a bridge (ESP32-C3 or ESP8266
//! running the bridge firmware) wired as README.md shows.
#![no_std]
#![no_main]

mod board;
mod settings;

use embassy_executor::Spawner;
use embassy_stm32::exti::{self, ExtiInput};
use embassy_stm32::gpio::{Level, Output, OutputOpenDrain, Pull, Speed};
use embassy_stm32::mode::Async;
use embassy_stm32::{bind_interrupts, interrupt};
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_time::{Instant, Ticker};
use panic_halt as _;
use settings::{decimal, CONFIG, PUBLISH_EVERY, TOPIC_COUNTER, TOPIC_LED};
use static_cell::StaticCell;
use target_driver::{Event, Pins, QoS, Timing};

// B_CLK (PB8) and B_DAT (PB9) are EXTI lines 8 and 9, which share the EXTI9_5 vector.
bind_interrupts!(struct Irqs {
    EXTI9_5 => exti::InterruptHandler<interrupt::typelevel::EXTI9_5>;
});

/// The mutex guarding the driver's state, shared by the runner and the application's tasks (all on one executor;
/// a critical section also serves if a client call is ever made from an interrupt-mode executor).
type Mutex = CriticalSectionRawMutex;
/// T_CLK and T_DAT.
type OutLine = Output<'static>;
/// B_CLK and B_DAT: inputs that wait for edges on their EXTI lines.
type InLine = ExtiInput<'static, Async>;
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
    let p = embassy_stm32::init(board::config());
    // LED4, blue. LED1 (red) and LED2 (green) sit on PA13/PA14, the SWD pins: driving them locks out the probe.
    let led = Output::new(p.PB4, Level::Low, Speed::Low);

    // The link's pins on the Y header.
    let pins = Pins {
        t_clk: Output::new(p.PC6, Level::Low, Speed::Medium),    // Y1: T_CLK
        t_dat: Output::new(p.PC7, Level::Low, Speed::Medium),    // Y2: T_DAT
        b_clk: ExtiInput::new(p.PB8, p.EXTI8, Pull::Down, Irqs), // Y3: B_CLK, rests low
        b_dat: ExtiInput::new(p.PB9, p.EXTI9, Pull::Up, Irqs),   // Y4: B_DAT, rests high
        rst: OutputOpenDrain::new(p.PB12, Level::Low, Speed::Low), // Y5: RST, bridge held in reset
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
