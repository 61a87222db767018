//! The size baseline: the same board set-up, executor, timer and LED as the main program, without the link.
//! `scripts/board-sizes.sh` subtracts its size from the main program's to get the link's cost. It blinks the blue
//! LED once a second.
#![no_std]
#![no_main]

#[path = "../board.rs"]
mod board;

use embassy_executor::Spawner;
use embassy_stm32::gpio::{Level, Output, Speed};
use embassy_time::{Duration, Ticker};
use panic_halt as _;

#[embassy_executor::main]
async fn main(_spawner: Spawner) {
    let p = embassy_stm32::init(board::config());
    let mut led = Output::new(p.PB4, Level::Low, Speed::Low);
    let mut ticker = Ticker::every(Duration::from_secs(1));
    loop {
        ticker.next().await;
        led.toggle();
    }
}
