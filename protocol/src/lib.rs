//! The contract between a target without a network and its WiFi bridge.
#![no_std]
