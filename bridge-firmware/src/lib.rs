#![doc = include_str!("../README.md")]
#![cfg_attr(not(feature = "std"), no_std)]
#![warn(missing_docs)]

// Declared first: its macros are visible in the modules below.
#[macro_use]
mod fmt;

#[cfg(feature = "host")]
pub mod host;
pub mod service;

pub use service::{down_reason, Bridge, Network, PollResult, ANSWER_RESERVE, CONTROL_QUEUE};
