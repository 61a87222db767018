//! Topic name and topic filter validation.

use core::fmt;

/// The longest topic or filter MQTT can carry (a two-byte length prefix).
pub const MAX_TOPIC_BYTES: usize = 65_535;

/// Why a topic name or a topic filter is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum TopicError {
    /// Empty (MQTT 3.1.1 forbids empty topics and filters).
    Empty,
    /// Longer than the limit (MQTT's 65 535 bytes, or the session's smaller limit for stored filters).
    TooLong,
    /// A `+` or `#` in a topic name (only filters may hold wildcards).
    Wildcard,
    /// A `#` that is not the whole last level, or a `+` that is not a whole level.
    MisplacedWildcard,
    /// Not UTF-8.
    InvalidUtf8,
    /// Holds U+0000.
    NullCharacter,
}

impl fmt::Display for TopicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Empty => "empty topic",
            Self::TooLong => "topic too long",
            Self::Wildcard => "wildcard in a topic name",
            Self::MisplacedWildcard => "wildcard not a whole level (or # not last)",
            Self::InvalidUtf8 => "topic is not UTF-8",
            Self::NullCharacter => "topic holds U+0000",
        })
    }
}

impl core::error::Error for TopicError {}

fn common(s: &str) -> Result<(), TopicError> {
    if s.is_empty() {
        return Err(TopicError::Empty);
    }
    if s.len() > MAX_TOPIC_BYTES {
        return Err(TopicError::TooLong);
    }
    if s.contains('\0') {
        return Err(TopicError::NullCharacter);
    }
    Ok(())
}

/// Checks a topic name, the topic of a PUBLISH: not empty, at most 65 535 bytes, no wildcard, no U+0000.
pub fn validate_topic(topic: &str) -> Result<(), TopicError> {
    common(topic)?;
    if topic.contains(['+', '#']) {
        return Err(TopicError::Wildcard);
    }
    Ok(())
}

/// Checks a topic filter, the topic of a SUBSCRIBE: as a topic name, but `+` may be a whole level and `#` the whole
/// last level.
pub fn validate_filter(filter: &str) -> Result<(), TopicError> {
    common(filter)?;
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        let last = levels.peek().is_none();
        match level {
            "+" => {}
            "#" if last => {}
            l if l.contains(['+', '#']) => return Err(TopicError::MisplacedWildcard),
            _ => {}
        }
    }
    Ok(())
}

/// Checks topic name bytes (as they come from a link) and returns them as a `&str`.
pub fn topic_from_bytes(bytes: &[u8]) -> Result<&str, TopicError> {
    let s = core::str::from_utf8(bytes).map_err(|_| TopicError::InvalidUtf8)?;
    validate_topic(s)?;
    Ok(s)
}

/// Checks topic filter bytes (as they come from a link) and returns them as a `&str`.
pub fn filter_from_bytes(bytes: &[u8]) -> Result<&str, TopicError> {
    let s = core::str::from_utf8(bytes).map_err(|_| TopicError::InvalidUtf8)?;
    validate_filter(s)?;
    Ok(s)
}

/// Whether `topic` matches `filter` (both assumed valid). Topics starting with `$` match no leading wildcard.
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_refuse_wildcards_and_empty() {
        assert_eq!(validate_topic("a/b"), Ok(()));
        assert_eq!(validate_topic(""), Err(TopicError::Empty));
        assert_eq!(validate_topic("a/+"), Err(TopicError::Wildcard));
        assert_eq!(validate_topic("a/#"), Err(TopicError::Wildcard));
        assert_eq!(validate_topic("a\0"), Err(TopicError::NullCharacter));
        let long = [b'a'; MAX_TOPIC_BYTES + 1];
        assert_eq!(
            validate_topic(core::str::from_utf8(&long).unwrap()),
            Err(TopicError::TooLong)
        );
    }

    #[test]
    fn filters_allow_only_whole_level_wildcards() {
        for ok in ["#", "+", "a/+/b", "a/#", "+/+", "/", "a//b"] {
            assert_eq!(validate_filter(ok), Ok(()), "{ok}");
        }
        for bad in ["a#", "a/#/b", "a+/b", "#/a", "a/b+"] {
            assert_eq!(validate_filter(bad), Err(TopicError::MisplacedWildcard), "{bad}");
        }
    }

    #[test]
    fn bad_utf8_is_a_typed_error() {
        assert_eq!(topic_from_bytes(&[0xff, 0x41]), Err(TopicError::InvalidUtf8));
        assert_eq!(filter_from_bytes(b"a/+"), Ok("a/+"));
    }

    #[test]
    fn matching_follows_the_specification() {
        assert!(matches("a/+/c", "a/b/c"));
        assert!(matches("a/#", "a"));
        assert!(matches("a/#", "a/b/c"));
        assert!(!matches("a/+", "a/b/c"));
        assert!(!matches("#", "$SYS/x"));
        assert!(matches("$SYS/#", "$SYS/x"));
    }
}
