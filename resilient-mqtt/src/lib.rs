#![doc = include_str!("../README.md")]
#![cfg_attr(not(feature = "std"), no_std)]
#![warn(missing_docs)]

#[macro_use]
mod fmt;

pub mod codec;
#[cfg(feature = "std")]
pub mod host;
pub mod runner;
pub mod session;
pub mod time;
pub mod topic;

pub use codec::{QoS, SubAckCode, Will};
pub use session::{
    AckError, BackoffConfig, Client, ConfigError, DisconnectReason, Event, Message, Options, PublishError,
    RequestError, Stats, Timer,
};
pub use time::{Duration, Instant};
