//! The outgoing publication store: the offline queue and the QoS 1 window in one ordered list.
//!
//! Entries keep their order from `publish` to removal; topic and payload bytes live in one arena, so the store
//! needs no heap. Entries sent at least once form a prefix, which makes "resend the unacknowledged first" natural.

use crate::codec::QoS;
use crate::session::types::PublishError;
use crate::time::Instant;

#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) token: u32,
    pub(crate) qos: QoS,
    pub(crate) retain: bool,
    offset: usize,
    topic_len: usize,
    len: usize,
    /// Assigned at the first transmission, kept across reconnects (the broker may hold it in its session).
    pub(crate) packet_id: Option<u16>,
    /// Sent on the current connection at this time.
    pub(crate) sent_at: Option<Instant>,
    /// Sent at least once (a retransmission carries DUP).
    pub(crate) ever_sent: bool,
}

pub(crate) struct Store<const Q: usize, const B: usize> {
    arena: heapless::Vec<u8, B>,
    entries: heapless::Vec<Entry, Q>,
}

impl<const Q: usize, const B: usize> Store<Q, B> {
    pub(crate) const fn new() -> Self {
        Self {
            arena: heapless::Vec::new(),
            entries: heapless::Vec::new(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn push(
        &mut self,
        token: u32,
        topic: &str,
        payload: &[u8],
        qos: QoS,
        retain: bool,
    ) -> Result<(), PublishError> {
        let len = topic.len() + payload.len();
        if len > B {
            return Err(PublishError::TooLarge);
        }
        if self.entries.is_full() || self.arena.capacity() - self.arena.len() < len {
            return Err(PublishError::QueueFull);
        }
        let offset = self.arena.len();
        // Both cannot fail: the room was checked above.
        self.arena
            .extend_from_slice(topic.as_bytes())
            .map_err(|_| PublishError::QueueFull)?;
        self.arena
            .extend_from_slice(payload)
            .map_err(|_| PublishError::QueueFull)?;
        let entry = Entry {
            token,
            qos,
            retain,
            offset,
            topic_len: topic.len(),
            len,
            packet_id: None,
            sent_at: None,
            ever_sent: false,
        };
        self.entries.push(entry).map_err(|_| PublishError::QueueFull)
    }

    pub(crate) fn entry(&self, i: usize) -> Option<&Entry> {
        self.entries.get(i)
    }

    pub(crate) fn entry_mut(&mut self, i: usize) -> Option<&mut Entry> {
        self.entries.get_mut(i)
    }

    /// Topic and payload of entry `i`.
    pub(crate) fn data(&self, i: usize) -> Option<(&str, &[u8])> {
        let e = self.entries.get(i)?;
        let bytes = self.arena.get(e.offset..e.offset + e.len)?;
        let (topic, payload) = bytes.split_at(e.topic_len);
        Some((core::str::from_utf8(topic).ok()?, payload))
    }

    pub(crate) fn remove(&mut self, i: usize) -> Option<Entry> {
        if i >= self.entries.len() {
            return None;
        }
        let e = self.entries.remove(i);
        let end = e.offset + e.len;
        let total = self.arena.len();
        self.arena.copy_within(end..total, e.offset);
        self.arena.truncate(total - e.len);
        for later in self.entries.iter_mut().skip(i) {
            later.offset -= e.len;
        }
        Some(e)
    }

    pub(crate) fn position_of_sent_id(&self, id: u16) -> Option<usize> {
        self.entries
            .iter()
            .position(|e| e.packet_id == Some(id) && e.sent_at.is_some())
    }

    pub(crate) fn uses_id(&self, id: u16) -> bool {
        self.entries.iter().any(|e| e.packet_id == Some(id))
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.entries.iter().filter(|e| e.sent_at.is_some()).count()
    }

    pub(crate) fn first_unsent(&self) -> Option<usize> {
        self.entries.iter().position(|e| e.sent_at.is_none())
    }

    pub(crate) fn oldest_sent_at(&self) -> Option<Instant> {
        self.entries.iter().filter_map(|e| e.sent_at).min()
    }

    /// A new connection: nothing is sent on it yet.
    pub(crate) fn reset_connection(&mut self) {
        for e in self.entries.iter_mut() {
            e.sent_at = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removal_in_the_middle_keeps_the_other_entries_intact() {
        let mut s: Store<4, 64> = Store::new();
        s.push(1, "a", b"111", QoS::AtLeastOnce, false).unwrap();
        s.push(2, "bb", b"22", QoS::AtLeastOnce, false).unwrap();
        s.push(3, "ccc", b"3", QoS::AtMostOnce, true).unwrap();
        assert_eq!(s.remove(1).map(|e| e.token), Some(2));
        assert_eq!(s.data(0), Some(("a", &b"111"[..])));
        assert_eq!(s.data(1), Some(("ccc", &b"3"[..])));
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn full_store_reports_queue_full_not_a_silent_drop() {
        let mut s: Store<2, 16> = Store::new();
        s.push(1, "t", b"0123456789", QoS::AtLeastOnce, false).unwrap();
        assert_eq!(
            s.push(2, "t", b"0123456789", QoS::AtLeastOnce, false),
            Err(PublishError::QueueFull)
        );
        assert_eq!(
            s.push(2, "t", &[0; 20], QoS::AtLeastOnce, false),
            Err(PublishError::TooLarge)
        );
        s.push(3, "t", b"x", QoS::AtLeastOnce, false).unwrap();
        assert_eq!(
            s.push(4, "t", b"x", QoS::AtLeastOnce, false),
            Err(PublishError::QueueFull)
        );
    }
}
