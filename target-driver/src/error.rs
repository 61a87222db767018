//! The application's errors.

use protocol::ErrorKind;

/// Why a topic or filter is refused before anything is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum TopicError {
    /// Empty.
    Empty,
    /// Longer than the driver's topic buffer.
    TooLong,
    /// `+` or `#` in a publish topic.
    WildcardInTopic,
    /// `+` or `#` not alone in its level, or `#` not last, in a filter.
    BadWildcard,
    /// A NUL character (forbidden by MQTT).
    Nul,
}

/// Why an operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Error {
    /// The topic or filter is invalid (nothing was sent).
    Topic(TopicError),
    /// The payload is longer than the driver's payload buffer (nothing was sent).
    PayloadTooLong,
    /// QoS 2 or an unknown QoS (nothing was sent).
    UnsupportedQoS,
    /// Not now: every slot for publications in flight (or subscriptions) is taken, the bridge said its queue is
    /// full, or an earlier subscribe or unsubscribe of the same filter is unanswered. Async calls wait instead; the
    /// blocking client returns this so the caller can retry (would-block).
    WouldBlock,
    /// Every entry of the subscription table (`SUBS`) holds a filter and none waits for an answer that could free
    /// it: a subscribe of another filter, or an unsubscribe of a filter not in the table, would wait forever.
    /// Unsubscribe from one first, or build the driver with a larger `SUBS` (nothing was sent).
    TooManySubscriptions,
    /// The bridge refused the operation.
    Refused(ErrorKind),
    /// The broker refused the subscription.
    SubscriptionFailed,
    /// The bridge was reset before it confirmed this QoS 0 publication, which is not resent (at most once): it may
    /// or may not have reached the broker.
    BridgeReset,
    /// The bridge did not confirm this QoS 0 publication in time ([`Config::answer_timeout`](crate::Config)): the
    /// request or its answer may have been lost on the link, or the broker is slow or down. It is not resent (at
    /// most once): it may or may not reach the broker.
    Unconfirmed,
}

impl core::fmt::Display for TopicError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            TopicError::Empty => "empty topic",
            TopicError::TooLong => "topic longer than the topic buffer",
            TopicError::WildcardInTopic => "wildcard in a publish topic",
            TopicError::BadWildcard => "misplaced wildcard in a filter",
            TopicError::Nul => "NUL character in a topic",
        })
    }
}

impl core::error::Error for TopicError {}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::Topic(e) => write!(f, "invalid topic: {e}"),
            Error::PayloadTooLong => f.write_str("payload longer than the payload buffer"),
            Error::UnsupportedQoS => f.write_str("only QoS 0 and 1 are supported"),
            Error::WouldBlock => f.write_str("no room now; retry later"),
            Error::TooManySubscriptions => f.write_str("the subscription table is full"),
            Error::Refused(kind) => write!(f, "the bridge refused: {kind:?}"),
            Error::SubscriptionFailed => f.write_str("the broker refused the subscription"),
            Error::BridgeReset => f.write_str("the bridge was reset before it confirmed this QoS 0 publication"),
            Error::Unconfirmed => f.write_str("the bridge did not confirm this QoS 0 publication in time"),
        }
    }
}

impl core::error::Error for Error {}

impl From<TopicError> for Error {
    fn from(e: TopicError) -> Self {
        Error::Topic(e)
    }
}

/// Checks a publish topic: not empty, at most `max` bytes, no wildcard, no NUL.
pub fn check_topic(topic: &str, max: usize) -> Result<(), TopicError> {
    check_common(topic, max)?;
    if topic.bytes().any(|b| b == b'+' || b == b'#') {
        return Err(TopicError::WildcardInTopic);
    }
    Ok(())
}

/// Checks a subscription filter: as a topic, but `+` may fill a level and `#` may end the filter.
pub fn check_filter(filter: &str, max: usize) -> Result<(), TopicError> {
    check_common(filter, max)?;
    // Byte by byte (both wildcards are ASCII): a wildcard must fill its level, and `#` must be the last level.
    let b = filter.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        let starts_level = i == 0 || b[i - 1] == b'/';
        let last = i + 1 == b.len();
        let ends_level = last || b[i + 1] == b'/';
        let ok = match c {
            b'+' => starts_level && ends_level,
            b'#' => starts_level && last,
            _ => true,
        };
        if !ok {
            return Err(TopicError::BadWildcard);
        }
    }
    Ok(())
}

fn check_common(s: &str, max: usize) -> Result<(), TopicError> {
    if s.is_empty() {
        return Err(TopicError::Empty);
    }
    if s.len() > max {
        return Err(TopicError::TooLong);
    }
    if s.bytes().any(|b| b == 0) {
        return Err(TopicError::Nul);
    }
    Ok(())
}
