#![doc = include_str!("../README.md")]
#![cfg_attr(not(feature = "std"), no_std)]
#![warn(missing_docs)]

pub mod driver;
pub mod frame;
pub mod link;
pub mod message;
pub mod port;
#[cfg(feature = "sim")]
pub mod sim;
pub mod wire;

pub use frame::{encode, Feed, FrameDecoder, FrameError, MAX_FRAME_LEN};
pub use message::{
    BridgeState, BrokerState, Config, DecodeError, DownReason, ErrorKind, Event, Limits, QoS, Request, Stats, Status,
    SubResult, Will, PROTOCOL_VERSION,
};
pub use port::{Port, SendError};
pub use wire::Encode;
