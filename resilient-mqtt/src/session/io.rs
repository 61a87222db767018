//! The session's byte side: received bytes to events, state to packets.

use core::ops::Range;

use super::subs::{Next, RequestKind};
use super::*;
use crate::codec::v311;
use crate::codec::{
    ConnectReturnCode, Packet, ProtocolLevel, Publish, SubscribeFilter, SubscribeFilters, UnsubscribeFilters,
};

/// A decoded packet, copied out of the receive buffer so the session can change state.
enum Incoming {
    ConnAck {
        session_present: bool,
        code: ConnectReturnCode,
    },
    Publish {
        qos: QoS,
        retain: bool,
        dup: bool,
        packet_id: Option<u16>,
        topic: Range<usize>,
        payload: Range<usize>,
    },
    PubAck(u16),
    SubAck(u16, heapless::Vec<u8, MAX_FILTERS_PER_REQUEST>),
    UnsubAck(u16),
    PingResp,
    Unexpected,
}

fn offsets(base: &[u8], part: &[u8]) -> Range<usize> {
    let start = (part.as_ptr() as usize).saturating_sub(base.as_ptr() as usize);
    start..start + part.len()
}

impl<const QUEUE: usize, const STORE: usize, const RX: usize, const SUBS: usize, const FILTERS: usize>
    Client<QUEUE, STORE, RX, SUBS, FILTERS>
{
    fn consume_rx(&mut self) {
        if self.rx_consume > 0 {
            let n = self.rx_consume.min(self.rx_len);
            self.rx.copy_within(n..self.rx_len, 0);
            self.rx_len -= n;
            self.rx_consume = 0;
        }
    }

    /// Free space of the receive buffer: read transport bytes into it, then call
    /// [`handle_received`](Self::handle_received). Empty when the buffer is full: poll events first.
    pub fn receive_buffer(&mut self) -> &mut [u8] {
        self.consume_rx();
        &mut self.rx[self.rx_len..]
    }

    /// `n` bytes were written at the start of [`receive_buffer`](Self::receive_buffer).
    pub fn handle_received(&mut self, n: usize, now: Instant) {
        if !self.is_link_up() || n == 0 {
            return;
        }
        self.rx_len = (self.rx_len + n).min(RX);
        self.last_rx = now;
    }

    /// Copies received bytes in; returns how many were taken (fewer when the receive buffer is full: poll events,
    /// then hand in the rest).
    pub fn handle_bytes(&mut self, data: &[u8], now: Instant) -> usize {
        if !self.is_link_up() {
            return data.len(); // stale bytes of a dead transport
        }
        let room = self.receive_buffer();
        let n = room.len().min(data.len());
        room[..n].copy_from_slice(&data[..n]);
        self.handle_received(n, now);
        n
    }

    /// The next event. Received packets are processed here, one at a time: call it until `None` after every input.
    ///
    /// A [`Event::Message`] borrows the receive buffer; it stays valid until the next call.
    #[must_use]
    pub fn poll_event(&mut self, now: Instant) -> Option<Event<'_>> {
        self.consume_rx();
        self.handle_timeout(now);
        loop {
            if let Some(event) = self.events.pop_front() {
                return Some(event);
            }
            // Room for one more unacknowledged message, or read nothing more (flow control towards the broker).
            if !self.is_link_up() || self.acks.len() + self.owed.len() >= MAX_PENDING_ACKS {
                return None;
            }
            let (incoming, len) = match v311::decode(&self.rx[..self.rx_len], RX) {
                Ok(None) => return None,
                Err(e) => {
                    warn!("malformed packet from the broker");
                    self.stats.malformed_packets = self.stats.malformed_packets.saturating_add(1);
                    self.link_lost(DisconnectReason::Malformed(e), now);
                    continue;
                }
                Ok(Some((packet, len))) => (self.classify(packet), len),
            };
            self.rx_consume = len;
            if let Some(message) = self.handle_incoming(incoming, now) {
                let topic = core::str::from_utf8(&self.rx[message.1]).unwrap_or_default();
                let mut m = message.0;
                m.topic = topic;
                m.payload = &self.rx[message.2];
                return Some(Event::Message(m));
            }
            self.consume_rx();
        }
    }

    fn classify(&self, packet: Packet<'_>) -> Incoming {
        match packet {
            Packet::ConnAck(a) => Incoming::ConnAck {
                session_present: a.session_present,
                code: a.code,
            },
            Packet::Publish(p) => Incoming::Publish {
                qos: p.qos,
                retain: p.retain,
                dup: p.dup,
                packet_id: p.packet_id,
                topic: offsets(&self.rx, p.topic.as_bytes()),
                payload: offsets(&self.rx, p.payload),
            },
            Packet::PubAck(id) => Incoming::PubAck(id),
            Packet::SubAck(s) => match heapless::Vec::from_slice(s.codes) {
                Ok(codes) => Incoming::SubAck(s.packet_id, codes),
                Err(_) => Incoming::Unexpected,
            },
            Packet::UnsubAck(id) => Incoming::UnsubAck(id),
            Packet::PingResp => Incoming::PingResp,
            _ => Incoming::Unexpected,
        }
    }

    /// Applies a packet; returns the message to hand out for a PUBLISH (topic and payload as ranges of `rx`).
    fn handle_incoming(
        &mut self,
        incoming: Incoming,
        now: Instant,
    ) -> Option<(Message<'static>, Range<usize>, Range<usize>)> {
        let connected = self.is_connected();
        match incoming {
            Incoming::ConnAck { session_present, code } if !connected => {
                if code == ConnectReturnCode::Accepted {
                    debug!("connected, session present: {}", session_present);
                    self.link = Link::Connected { since: now };
                    self.stats.connections = self.stats.connections.saturating_add(1);
                    if !session_present {
                        self.subs.start_replay();
                    }
                    self.push_event(Event::Connected { session_present });
                } else {
                    warn!("connection refused");
                    self.link_lost(DisconnectReason::Refused(code), now);
                }
            }
            Incoming::Publish {
                qos,
                retain,
                dup,
                packet_id,
                topic,
                payload,
            } if connected => {
                if qos == QoS::ExactlyOnce {
                    self.link_lost(DisconnectReason::ProtocolViolation, now);
                    return None;
                }
                self.stats.messages = self.stats.messages.saturating_add(1);
                // Room for both was checked before decoding.
                match (self.auto_ack, packet_id) {
                    (true, Some(id)) => {
                        let _ = self.acks.push_back(id);
                    }
                    (false, Some(id)) if !self.owed.contains(&id) => {
                        let _ = self.owed.push(id);
                    }
                    _ => {}
                }
                let m = Message {
                    packet_id,
                    topic: "",
                    payload: &[],
                    qos,
                    retain,
                    dup,
                };
                return Some((m, topic, payload));
            }
            Incoming::PubAck(id) if connected => match self.store.position_of_sent_id(id) {
                Some(i) => {
                    if let Some(e) = self.store.remove(i) {
                        self.push_event(Event::Published { token: e.token });
                    }
                }
                None => warn!("PUBACK for an unknown packet id {}", id),
            },
            Incoming::SubAck(id, codes) if connected => {
                match self.subs.on_suback(id, &codes, &mut self.stats.replay_failures) {
                    Ok(Some(event)) => self.push_event(event),
                    Ok(None) => {}
                    Err(()) => warn!("SUBACK for an unknown packet id {}", id),
                }
            }
            Incoming::UnsubAck(id) if connected => match self.subs.on_unsuback(id) {
                Ok(event) => self.push_event(event),
                Err(()) => warn!("UNSUBACK for an unknown packet id {}", id),
            },
            Incoming::PingResp if connected => self.ping_sent_at = None,
            _ => {
                warn!("unexpected packet from the broker");
                self.link_lost(DisconnectReason::ProtocolViolation, now);
            }
        }
        None
    }

    fn alloc_packet_id(&mut self) -> u16 {
        loop {
            self.next_packet_id = self.next_packet_id.wrapping_add(1);
            let id = self.next_packet_id;
            if id != 0 && !self.store.uses_id(id) && !self.subs.uses_id(id) {
                return id;
            }
        }
    }

    /// The next packet to send, written at the start of `buf`; returns its length.
    ///
    /// `buf` must hold `max_packet_size` bytes to be sure of progress: a packet that does not fit is not written
    /// (and stays due). Call until `None`, then write the bytes to the transport.
    #[must_use]
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        self.handle_timeout(now);
        let n = match self.link {
            Link::Down { .. } => return None,
            Link::AwaitConnAck { connect_sent: true, .. } => return None,
            Link::AwaitConnAck {
                since,
                connect_sent: false,
            } => {
                let n = self.encode_connect(buf)?;
                self.link = Link::AwaitConnAck {
                    since,
                    connect_sent: true,
                };
                n
            }
            Link::Connected { .. } => self.transmit_connected(now, buf)?,
        };
        self.last_tx = now;
        Some(n)
    }

    fn encode_connect(&self, buf: &mut [u8]) -> Option<usize> {
        let connect = crate::codec::Connect {
            protocol: ProtocolLevel::V311,
            clean_session: self.clean_session,
            keep_alive: self.keep_alive_secs,
            client_id: &self.client_id,
            will: self.will(),
            username: self.username.as_deref(),
            password: self.password.as_deref(),
        };
        v311::encode(&Packet::Connect(connect), buf).ok()
    }

    fn transmit_connected(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        if let Some(&id) = self.acks.front() {
            let n = v311::encode(&Packet::PubAck(id), buf).ok()?;
            self.acks.pop_front();
            return Some(n);
        }
        if self.disconnect_requested {
            // Owed PUBACKs went first; queued publications wait for the next connection.
            let n = v311::encode(&Packet::Disconnect, buf).ok()?;
            self.link_lost(DisconnectReason::Requested, now);
            return Some(n);
        }
        if self.timer(Timer::Keepalive).is_some_and(|at| now >= at) {
            let n = v311::encode(&Packet::PingReq, buf).ok()?;
            self.ping_sent_at = Some(now);
            self.stats.pings = self.stats.pings.saturating_add(1);
            return Some(n);
        }
        let first = self.store.first_unsent();
        let window_open = self.store.in_flight() < self.max_in_flight;
        // Unacknowledged publications of an earlier connection go first.
        if let Some(i) = first {
            if window_open && self.store.entry(i).is_some_and(|e| e.ever_sent) {
                return self.transmit_publication(i, now, buf);
            }
        }
        match self.subs.next_unsent() {
            Some(Next::Replay) => return self.transmit_replay(now, buf),
            Some(Next::Request(i)) => return self.transmit_request(i, now, buf),
            None => {}
        }
        if let Some(i) = first {
            let qos0 = self.store.entry(i).is_some_and(|e| e.qos == QoS::AtMostOnce);
            // A QoS 0 publication is reported when written: wait for room for its event (poll events first).
            if (qos0 && !self.events.is_full()) || (!qos0 && window_open) {
                return self.transmit_publication(i, now, buf);
            }
        }
        None
    }

    fn transmit_publication(&mut self, i: usize, now: Instant, buf: &mut [u8]) -> Option<usize> {
        let entry = self.store.entry(i)?;
        let packet_id = match (entry.qos, entry.packet_id) {
            (QoS::AtMostOnce, _) => None,
            (_, Some(id)) => Some(id),
            (_, None) => Some(self.alloc_packet_id()),
        };
        let entry = self.store.entry(i)?;
        let (topic, payload) = self.store.data(i)?;
        let publish = Publish {
            dup: entry.ever_sent,
            qos: entry.qos,
            retain: entry.retain,
            topic,
            packet_id,
            payload,
        };
        let n = v311::encode(&Packet::Publish(publish), buf).ok()?;
        if entry.qos == QoS::AtMostOnce {
            if let Some(e) = self.store.remove(i) {
                self.push_event(Event::Published { token: e.token });
            }
        } else if let Some(e) = self.store.entry_mut(i) {
            if e.ever_sent {
                self.stats.retransmissions = self.stats.retransmissions.saturating_add(1);
            }
            e.packet_id = packet_id;
            e.sent_at = Some(now);
            e.ever_sent = true;
        }
        Some(n)
    }

    /// A SUBSCRIBE of the next subscriptions to replay (up to `FILTERS`).
    fn transmit_replay(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        let id = self.alloc_packet_id();
        let n = {
            let mut list: heapless::Vec<SubscribeFilter<'_>, FILTERS> = heapless::Vec::new();
            for (filter, qos) in self.subs.replay_filters() {
                let _ = list.push(SubscribeFilter { filter, qos }); // at most FILTERS
            }
            let packet = crate::codec::Subscribe {
                packet_id: id,
                filters: SubscribeFilters::List(&list),
            };
            v311::encode(&Packet::Subscribe(packet), buf).ok()?
        };
        self.subs.replay_sent(id, now);
        Some(n)
    }

    fn transmit_request(&mut self, i: usize, now: Instant, buf: &mut [u8]) -> Option<usize> {
        let id = match self.subs.requests.get(i)?.packet_id {
            Some(id) => id,
            None => self.alloc_packet_id(),
        };
        let req = self.subs.requests.get(i)?;
        let n = if req.kind == RequestKind::Unsubscribe {
            let mut list: heapless::Vec<&str, FILTERS> = heapless::Vec::new();
            for (f, _) in &req.filters {
                let _ = list.push(f.as_str()); // same capacity
            }
            let packet = crate::codec::Unsubscribe {
                packet_id: id,
                filters: UnsubscribeFilters::List(&list),
            };
            v311::encode(&Packet::Unsubscribe(packet), buf).ok()?
        } else {
            let mut list: heapless::Vec<SubscribeFilter<'_>, FILTERS> = heapless::Vec::new();
            for (f, q) in &req.filters {
                let _ = list.push(SubscribeFilter {
                    filter: f.as_str(),
                    qos: *q,
                }); // same capacity
            }
            let packet = crate::codec::Subscribe {
                packet_id: id,
                filters: SubscribeFilters::List(&list),
            };
            v311::encode(&Packet::Subscribe(packet), buf).ok()?
        };
        let req = self.subs.requests.get_mut(i)?;
        req.packet_id = Some(id);
        req.sent_at = Some(now);
        Some(n)
    }
}
