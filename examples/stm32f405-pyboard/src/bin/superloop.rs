//! The same program as the main one (a counter published every second, the blue LED switched from a topic) with
//! the driver's blocking API: one loop polls the driver, no task of its own, pins read and written without
//! interrupts. `scripts/board-sizes.sh` measures it next to the async program, so that the cost of each API is
//! known. The executor stays only so that the baseline (`src/bin/baseline.rs`) compares like for like.
#![no_std]
#![no_main]

#[path = "../board.rs"]
mod board;
#[path = "../settings.rs"]
mod settings;

use embassy_executor::Spawner;
use embassy_stm32::gpio::{Input, Level, Output, OutputOpenDrain, Pull, Speed};
use embassy_time::{Delay, Duration, Instant, Timer};
use panic_halt as _;
use settings::{decimal, CONFIG, PUBLISH_EVERY, TOPIC_COUNTER, TOPIC_LED};
use target_driver::blocking::Client;
use target_driver::{Event, Pins, QoS, Timing};

#[embassy_executor::main]
async fn main(_spawner: Spawner) {
    let p = embassy_stm32::init(board::config());
    let mut led = Output::new(p.PB4, Level::Low, Speed::Low);
    let pins = Pins {
        t_clk: Output::new(p.PC6, Level::Low, Speed::Medium),
        t_dat: Output::new(p.PC7, Level::Low, Speed::Medium),
        b_clk: Input::new(p.PB8, Pull::Down),
        b_dat: Input::new(p.PB9, Pull::Up),
        rst: OutputOpenDrain::new(p.PB12, Level::Low, Speed::Low),
    };
    // The driver's default buffers, as in the main program.
    let Ok(mut client) = Client::<_, _, _, _, _, _>::new(pins, Delay, CONFIG, Timing::default(), Instant::now()) else {
        panic!("this chip's pins cannot fail");
    };
    let mut subscribed = false;
    let mut counter: u32 = 0;
    let mut next_publish = Instant::now() + PUBLISH_EVERY;
    loop {
        client.poll(Instant::now());
        if !subscribed {
            // Once is enough: the driver replays it after every bridge reset.
            subscribed = client.subscribe(TOPIC_LED, QoS::AtLeastOnce).is_ok();
        }
        if Instant::now() >= next_publish {
            next_publish += PUBLISH_EVERY;
            let mut digits = [0; 10];
            // Would-block while the bridge's queue is full or every slot is taken: that value is skipped.
            if client
                .publish(TOPIC_COUNTER, decimal(counter, &mut digits), QoS::AtLeastOnce, false)
                .is_ok()
            {
                counter = counter.wrapping_add(1);
            }
        }
        // Messages are lent from the driver's receive buffer: no buffer of the program's own.
        while let Some(event) = client.next_event() {
            if let Event::Message(message) = event {
                if message.topic == TOPIC_LED {
                    match message.payload {
                        b"on" => led.set_high(),
                        b"off" => led.set_low(),
                        _ => {}
                    }
                }
            }
        }
        // A millisecond between polls, or less when the driver wants to be polled sooner.
        let wake = client.poll_at().min(Instant::now() + Duration::from_millis(1));
        Timer::at(wake).await;
    }
}
