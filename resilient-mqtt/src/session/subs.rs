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
type Filters = heapless::Vec<(FilterString, QoS), MAX_FILTERS_PER_REQUEST>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RequestKind {
    Subscribe,
    Unsubscribe,
    /// Re-subscription of confirmed filters after the broker lost the session (no event).
    Replay,
}

#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub(crate) kind: RequestKind,
    token: u32,
    pub(crate) packet_id: Option<u16>,
    pub(crate) sent_at: Option<Instant>,
    pub(crate) filters: Filters,
}

const REQUESTS: usize = 2 * MAX_PENDING_REQUESTS;

pub(crate) struct Subscriptions<const S: usize> {
    table: heapless::Vec<(FilterString, QoS), S>,
    pub(crate) requests: heapless::Vec<Request, REQUESTS>,
    replay_cursor: Option<usize>,
}

fn to_filter(s: &str) -> Result<FilterString, RequestError> {
    topic::validate_filter(s).map_err(RequestError::Filter)?;
    FilterString::try_from(s).map_err(|_| RequestError::Filter(topic::TopicError::TooLong))
}

impl<const S: usize> Subscriptions<S> {
    pub(crate) const fn new() -> Self {
        Self {
            table: heapless::Vec::new(),
            requests: heapless::Vec::new(),
            replay_cursor: None,
        }
    }

    /// The confirmed subscriptions.
    pub(crate) fn table(&self) -> impl Iterator<Item = (&str, QoS)> {
        self.table.iter().map(|(f, q)| (f.as_str(), *q))
    }

    fn user_pending(&self) -> usize {
        self.requests.iter().filter(|r| r.kind != RequestKind::Replay).count()
    }

    pub(crate) fn add(
        &mut self,
        kind: RequestKind,
        token: u32,
        filters: &mut dyn Iterator<Item = (&str, QoS)>,
    ) -> Result<(), RequestError> {
        if self.user_pending() >= MAX_PENDING_REQUESTS {
            return Err(RequestError::TooManyPending);
        }
        let mut list = Filters::new();
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
                .filter(|(f, _)| !self.table.iter().any(|(t, _)| t == f))
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

    /// Index of the next request to send, if any may go now.
    pub(crate) fn next_unsent(&mut self) -> Option<usize> {
        self.refill_replay();
        let i = self.requests.iter().position(|r| r.sent_at.is_none())?;
        // Application requests wait until the whole table has been replayed.
        if self.replay_cursor.is_some() && self.requests[i].kind != RequestKind::Replay {
            return None;
        }
        Some(i)
    }

    fn refill_replay(&mut self) {
        while let Some(start) = self.replay_cursor {
            if start >= self.table.len() {
                self.replay_cursor = None;
                break;
            }
            if self.requests.is_full() {
                break;
            }
            let end = (start + MAX_FILTERS_PER_REQUEST).min(self.table.len());
            let mut filters = Filters::new();
            for (f, q) in &self.table[start..end] {
                let _ = filters.push((f.clone(), *q)); // never full: at most MAX_FILTERS_PER_REQUEST
            }
            let at = self
                .requests
                .iter()
                .take_while(|r| r.kind == RequestKind::Replay)
                .count();
            let req = Request {
                kind: RequestKind::Replay,
                token: 0,
                packet_id: None,
                sent_at: None,
                filters,
            };
            if self.requests.insert(at, req).is_err() {
                break;
            }
            self.replay_cursor = Some(end);
        }
    }

    pub(crate) fn uses_id(&self, id: u16) -> bool {
        self.requests.iter().any(|r| r.packet_id == Some(id))
    }

    pub(crate) fn oldest_sent_at(&self) -> Option<Instant> {
        self.requests.iter().filter_map(|r| r.sent_at).min()
    }

    /// A new connection: nothing sent on it yet; replays of the previous one are forgotten.
    pub(crate) fn reset_connection(&mut self) {
        self.requests.retain(|r| r.kind != RequestKind::Replay);
        for r in self.requests.iter_mut() {
            r.sent_at = None;
            r.packet_id = None;
        }
        self.replay_cursor = None;
    }

    /// The broker has no session: re-subscribe everything confirmed so far.
    pub(crate) fn start_replay(&mut self) {
        if !self.table.is_empty() {
            self.replay_cursor = Some(0);
        }
    }

    fn take_sent(&mut self, id: u16, kind_ok: impl Fn(RequestKind) -> bool) -> Option<Request> {
        let i = self
            .requests
            .iter()
            .position(|r| r.packet_id == Some(id) && r.sent_at.is_some())?;
        if !kind_ok(self.requests[i].kind) {
            return None;
        }
        Some(self.requests.remove(i))
    }

    /// A SUBACK: updates the table; `Err` when no SUBSCRIBE waits for this id, `Ok(None)` for a replay.
    pub(crate) fn on_suback(
        &mut self,
        id: u16,
        codes: &[u8],
        replay_failures: &mut u32,
    ) -> Result<Option<Event<'static>>, ()> {
        let req = self.take_sent(id, |k| k != RequestKind::Unsubscribe).ok_or(())?;
        if codes.len() != req.filters.len() {
            return Err(());
        }
        let mut results = SubResults::new();
        for ((filter, _), &code) in req.filters.iter().zip(codes) {
            let code = SubAckCode::from_u8(code);
            let _ = results.push(code); // same length as the filters
            let existing = self.table.iter().position(|(f, _)| f == filter);
            match (code, existing) {
                (SubAckCode::Granted(q), Some(i)) => self.table[i].1 = q,
                (SubAckCode::Granted(q), None) => {
                    if self.table.push((filter.clone(), q)).is_err() {
                        warn!("subscription table full, a granted filter is not stored for replay");
                    }
                }
                (_, Some(i)) => {
                    if req.kind == RequestKind::Replay {
                        *replay_failures = replay_failures.saturating_add(1);
                        warn!("the broker refused a replayed subscription");
                    }
                    self.table.remove(i);
                }
                (_, None) => {}
            }
        }
        Ok(match req.kind {
            RequestKind::Replay => None,
            _ => Some(Event::Subscribed {
                token: req.token,
                results,
            }),
        })
    }

    /// An UNSUBACK: removes the filters from the table; `Err` when no UNSUBSCRIBE waits for this id.
    pub(crate) fn on_unsuback(&mut self, id: u16) -> Result<Event<'static>, ()> {
        let req = self.take_sent(id, |k| k == RequestKind::Unsubscribe).ok_or(())?;
        self.table.retain(|(f, _)| !req.filters.iter().any(|(g, _)| g == f));
        Ok(Event::Unsubscribed { token: req.token })
    }
}
