//! The size baseline: the same chip set-up, executor, timer and LED as the main program, without the link.
//! `scripts/board-sizes.sh` subtracts its size from the main program's to get the link's cost. It blinks the LED
//! (GP25) once a second.
#![no_std]
#![no_main]

use embassy_executor::Spawner;
use embassy_rp::gpio::{Level, Output};
use embassy_time::{Duration, Ticker};
use panic_halt as _;

#[embassy_executor::main]
async fn main(_spawner: Spawner) {
    let p = embassy_rp::init(Default::default());
    let mut led = Output::new(p.PIN_25, Level::Low);
    let mut ticker = Ticker::every(Duration::from_secs(1));
    loop {
        ticker.next().await;
        led.toggle();
    }
}
