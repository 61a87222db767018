//! Subscriptions: the durable table, and the SUBSCRIBE/UNSUBSCRIBE requests waiting for their acknowledgement.
//!
//! The table holds what the broker confirmed. When a CONNACK says no session is present, the table is replayed
//! (SUBSCRIBE packets with the session's own packet ids) before any pending application request is sent.

use crate::codec::{QoS, SubAckCode};
use crate::session::types::{
    Event, RequestError, SubResults, MAX_FILTERS_PER_REQUEST, MAX_FILTER_LEN, MAX_PENDING_REQUESTS,
};
use crate::time::Instant;
use crate::topic;

pub(crate) type FilterString = heapless::String<MAX_FILTER_LEN>;
/// The filters of one request: at most `F` (the client's `FILTERS`).
type Filters<const F: usize> = heapless::Vec<(FilterString, QoS), F>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RequestKind {
    Subscribe,
    Unsubscribe,
}

/// An application's SUBSCRIBE or UNSUBSCRIBE waiting for its acknowledgement.
#[derive(Debug, Clone)]
pub(crate) struct Request<const F: usize> {
    pub(crate) kind: RequestKind,
    token: u32,
    pub(crate) packet_id: Option<u16>,
    pub(crate) sent_at: Option<Instant>,
    pub(crate) filters: Filters<F>,
}

/// Where a confirmed subscription stands in the replay that follows a connection without a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Replay {
    /// Not being replayed.
    Done,
    /// To be sent again on this connection.
    Due,
    /// Sent again in the SUBSCRIBE with this packet id, SUBACK awaited.
    Sent(u16),
}

#[derive(Debug, Clone)]
struct Sub {
    filter: FilterString,
    qos: QoS,
    replay: Replay,
}

/// A SUBSCRIBE that replays table entries (those marked `Replay::Sent(packet_id)`), SUBACK awaited.
#[derive(Debug, Clone, Copy)]
struct ReplaySent {
    packet_id: u16,
    sent_at: Instant,
}

/// What to send next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// A SUBSCRIBE replaying the table's next `Due` entries.
    Replay,
    /// The application's request at this index.
    Request(usize),
}

/// `S` confirmed subscriptions; application requests of at most `F` filters each.
///
/// Replays do not copy filters: the table's entries are marked, and a replay SUBSCRIBE is made from them.
pub(crate) struct Subscriptions<const S: usize, const F: usize> {
    table: heapless::Vec<Sub, S>,
    pub(crate) requests: heapless::Vec<Request<F>, MAX_PENDING_REQUESTS>,
    replays: heapless::Vec<ReplaySent, MAX_PENDING_REQUESTS>,
}

fn to_filter(s: &str) -> Result<FilterString, RequestError> {
    topic::validate_filter(s).map_err(RequestError::Filter)?;
    FilterString::try_from(s).map_err(|_| RequestError::Filter(topic::TopicError::TooLong))
}

impl<const S: usize, const F: usize> Subscriptions<S, F> {
    pub(crate) const fn new() -> Self {
        const {
            assert!(
                F >= 1 && F <= MAX_FILTERS_PER_REQUEST,
                "FILTERS must be 1 to MAX_FILTERS_PER_REQUEST"
            )
        };
        Self {
            table: heapless::Vec::new(),
            requests: heapless::Vec::new(),
            replays: heapless::Vec::new(),
        }
    }

    /// The confirmed subscriptions.
    pub(crate) fn table(&self) -> impl Iterator<Item = (&str, QoS)> {
        self.table.iter().map(|s| (s.filter.as_str(), s.qos))
    }

    pub(crate) fn add(
        &mut self,
        kind: RequestKind,
        token: u32,
        filters: &mut dyn Iterator<Item = (&str, QoS)>,
    ) -> Result<(), RequestError> {
        if self.requests.is_full() {
            return Err(RequestError::TooManyPending);
        }
        let mut list = Filters::<F>::new();
        for (f, q) in filters {
            if q == QoS::ExactlyOnce {
                return Err(RequestError::QoS2Unsupported);
            }
            list.push((to_filter(f)?, q)).map_err(|_| RequestError::FilterCount)?;
        }
        if list.is_empty() {
            return Err(RequestError::FilterCount);
        }
        if kind == RequestKind::Subscribe {
            let pending: usize = self
                .requests
                .iter()
                .filter(|r| r.kind == RequestKind::Subscribe)
                .map(|r| r.filters.len())
                .sum();
            let new = list
                .iter()
                .filter(|(f, _)| !self.table.iter().any(|t| t.filter == *f))
                .count();
            if self.table.len() + pending + new > S {
                return Err(RequestError::TableFull);
            }
        }
        let req = Request {
            kind,
            token,
            packet_id: None,
            sent_at: None,
            filters: list,
        };
        self.requests.push(req).map_err(|_| RequestError::TooManyPending)
    }

    /// What may be sent now, if anything. Application requests wait until the whole table has been replayed.
    pub(crate) fn next_unsent(&self) -> Option<Next> {
        if self.table.iter().any(|s| s.replay == Replay::Due) {
            return (!self.replays.is_full()).then_some(Next::Replay);
        }
        self.requests
            .iter()
            .position(|r| r.sent_at.is_none())
            .map(Next::Request)
    }

    /// The filters of the next replay SUBSCRIBE (the first `Due` entries, at most `F`).
    pub(crate) fn replay_filters(&self) -> impl Iterator<Item = (&str, QoS)> {
        self.table
            .iter()
            .filter(|s| s.replay == Replay::Due)
            .take(F)
            .map(|s| (s.filter.as_str(), s.qos))
    }

    /// The replay SUBSCRIBE made of [`replay_filters`](Self::replay_filters) went out with `packet_id`.
    pub(crate) fn replay_sent(&mut self, packet_id: u16, now: Instant) {
        if self.replays.is_full() {
            return; // not reached: `next_unsent` checks
        }
        for s in self.table.iter_mut().filter(|s| s.replay == Replay::Due).take(F) {
            s.replay = Replay::Sent(packet_id);
        }
        let _ = self.replays.push(ReplaySent {
            packet_id,
            sent_at: now,
        });
    }

    pub(crate) fn uses_id(&self, id: u16) -> bool {
        self.requests.iter().any(|r| r.packet_id == Some(id)) || self.replays.iter().any(|r| r.packet_id == id)
    }

    pub(crate) fn oldest_sent_at(&self) -> Option<Instant> {
        let requests = self.requests.iter().filter_map(|r| r.sent_at);
        requests.chain(self.replays.iter().map(|r| r.sent_at)).min()
    }

    /// A new connection: nothing sent on it yet; replays of the previous one are forgotten.
    pub(crate) fn reset_connection(&mut self) {
        self.replays.clear();
        for s in self.table.iter_mut() {
            s.replay = Replay::Done;
        }
        for r in self.requests.iter_mut() {
            r.sent_at = None;
            r.packet_id = None;
        }
    }

    /// The broker has no session: re-subscribe everything confirmed so far.
    pub(crate) fn start_replay(&mut self) {
        for s in self.table.iter_mut() {
            s.replay = Replay::Due;
        }
    }

    fn take_sent(&mut self, id: u16, kind: RequestKind) -> Option<Request<F>> {
        let i = self
            .requests
            .iter()
            .position(|r| r.packet_id == Some(id) && r.sent_at.is_some() && r.kind == kind)?;
        Some(self.requests.remove(i))
    }

    /// A SUBACK: updates the table; `Err` when no SUBSCRIBE waits for this id, `Ok(None)` for a replay.
    pub(crate) fn on_suback(
        &mut self,
        id: u16,
        codes: &[u8],
        replay_failures: &mut u32,
    ) -> Result<Option<Event<'static>>, ()> {
        if let Some(i) = self.replays.iter().position(|r| r.packet_id == id) {
            self.replays.swap_remove(i);
            return self.on_replay_suback(id, codes, replay_failures).map(|()| None);
        }
        let req = self.take_sent(id, RequestKind::Subscribe).ok_or(())?;
        if codes.len() != req.filters.len() {
            return Err(());
        }
        let mut results = SubResults::new();
        for ((filter, _), &code) in req.filters.iter().zip(codes) {
            let code = SubAckCode::from_u8(code);
            let _ = results.push(code); // same length as the filters, at most F
            let existing = self.table.iter().position(|s| s.filter == *filter);
            match (code, existing) {
                (SubAckCode::Granted(q), Some(i)) => self.table[i].qos = q,
                (SubAckCode::Granted(qos), None) => {
                    let sub = Sub {
                        filter: filter.clone(),
                        qos,
                        replay: Replay::Done,
                    };
                    if self.table.push(sub).is_err() {
                        warn!("subscription table full, a granted filter is not stored for replay");
                    }
                }
                (_, Some(i)) => {
                    self.table.remove(i);
                }
                (_, None) => {}
            }
        }
        Ok(Some(Event::Subscribed {
            token: req.token,
            results,
        }))
    }

    /// The SUBACK of a replay: the entries it carried are confirmed again, or leave the table if refused.
    fn on_replay_suback(&mut self, id: u16, codes: &[u8], replay_failures: &mut u32) -> Result<(), ()> {
        let carried = self.table.iter().filter(|s| s.replay == Replay::Sent(id)).count();
        if carried != codes.len() {
            // An entry left the table meanwhile (an UNSUBACK overtook this SUBACK) or the broker miscounted: the
            // rest stay in the table as they are.
            for s in self.table.iter_mut().filter(|s| s.replay == Replay::Sent(id)) {
                s.replay = Replay::Done;
            }
            return Err(());
        }
        let mut codes = codes.iter();
        self.table.retain_mut(|s| {
            if s.replay != Replay::Sent(id) {
                return true;
            }
            s.replay = Replay::Done;
            match codes.next().map(|&c| SubAckCode::from_u8(c)) {
                Some(SubAckCode::Granted(q)) => {
                    s.qos = q;
                    true
                }
                _ => {
                    *replay_failures = replay_failures.saturating_add(1);
                    warn!("the broker refused a replayed subscription");
                    false
                }
            }
        });
        Ok(())
    }

    /// An UNSUBACK: removes the filters from the table; `Err` when no UNSUBSCRIBE waits for this id.
    pub(crate) fn on_unsuback(&mut self, id: u16) -> Result<Event<'static>, ()> {
        let req = self.take_sent(id, RequestKind::Unsubscribe).ok_or(())?;
        self.table.retain(|s| !req.filters.iter().any(|(g, _)| *g == s.filter));
        Ok(Event::Unsubscribed { token: req.token })
    }
}
