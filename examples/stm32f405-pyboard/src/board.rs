//! The Pyboard v1.1's clocks, shared by both programs so that their sizes compare like for like.

use embassy_stm32::rcc::{
    AHBPrescaler, APBPrescaler, Hse, HseMode, Pll, PllMul, PllPDiv, PllPreDiv, PllQDiv, PllSource, Sysclk,
};
use embassy_stm32::time::Hertz;

/// 12 MHz crystal (HSE) → PLL: 168 MHz system clock, 48 MHz for USB (unused here), APB1 42 MHz, APB2 84 MHz.
pub fn config() -> embassy_stm32::Config {
    let mut config = embassy_stm32::Config::default();
    let rcc = &mut config.rcc;
    rcc.hse = Some(Hse {
        freq: Hertz(12_000_000),
        mode: HseMode::Oscillator,
    });
    rcc.pll_src = PllSource::HSE;
    rcc.pll = Some(Pll {
        prediv: PllPreDiv::DIV12,
        mul: PllMul::MUL336,
        divp: Some(PllPDiv::DIV2),
        divq: Some(PllQDiv::DIV7),
        divr: None,
    });
    rcc.ahb_pre = AHBPrescaler::DIV1;
    rcc.apb1_pre = APBPrescaler::DIV4;
    rcc.apb2_pre = APBPrescaler::DIV2;
    rcc.sys = Sysclk::PLL1_P;
    config
}
