#![doc = include_str!("../README.md")]
#![cfg_attr(not(feature = "std"), no_std)]
#![warn(missing_docs)]

pub mod frame;
pub mod link;
pub mod message;

pub use frame::{encode, Feed, FrameDecoder, FrameError, MAX_FRAME_LEN};
pub use message::{
    Config, DecodeError, DownReason, ErrorKind, Event, Limits, QoS, Request, Stats, Status, SubResult, Will,
    PROTOCOL_VERSION,
};
