//! Helpers shared by the link tests.
#![allow(dead_code)]

use std::collections::VecDeque;

#[cfg(feature = "sim")]
pub mod pair;

use protocol::link::LinkIo;

/// A byte queue each way, unbounded unless `rx_room` says otherwise.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct QueueIo {
    pub tx: VecDeque<u8>,
    pub rx: Vec<u8>,
    /// Bytes `rx` may still take; `None` is unbounded.
    pub rx_room: Option<usize>,
}

impl LinkIo for QueueIo {
    fn tx_ready(&self) -> bool {
        !self.tx.is_empty()
    }
    fn tx_next(&mut self) -> Option<u8> {
        self.tx.pop_front()
    }
    fn rx(&mut self, byte: u8) -> bool {
        match &mut self.rx_room {
            Some(0) => false,
            Some(n) => {
                *n -= 1;
                self.rx.push(byte);
                true
            }
            None => {
                self.rx.push(byte);
                true
            }
        }
    }
}

/// Splits a received byte stream into frames at `0x00`, dropping empty ones.
pub fn frames(stream: &[u8]) -> Vec<Vec<u8>> {
    stream
        .split(|&b| b == 0)
        .filter(|f| !f.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}
