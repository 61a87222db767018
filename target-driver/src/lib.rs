#![doc = include_str!("../README.md")]
#![no_std]
#![warn(missing_docs)]

// Declared first: its macros are visible in the modules below.
#[macro_use]
mod fmt;

pub mod asynch;
pub mod blocking;
mod config;
mod core;
mod error;

pub use crate::asynch::{new, Client, Pins, Resources, Runner};
pub use crate::config::{will, Config};
pub use crate::core::{
    Core, DriverStats, Event, Message, Outcome, ResetReason, Status, Token, DEFAULT_PAYLOAD, DEFAULT_POOL,
    DEFAULT_PUBS, DEFAULT_RX, DEFAULT_SUBS, DEFAULT_TOPIC, DEFAULT_TX,
};
pub use crate::error::{check_filter, check_topic, Error, TopicError};
pub use protocol::driver::Timing;
pub use protocol::{DownReason, QoS};
