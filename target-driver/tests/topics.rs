//! Topic and filter validation: hand-written examples, and the byte-by-byte checks against a plain statement of
//! the MQTT rules (split into levels; a wildcard fills its level; `#` only last) on arbitrary strings.

use proptest::prelude::*;
use target_driver::{check_filter, check_topic, TopicError};

/// The MQTT rules, stated level by level.
fn reference_filter(filter: &str, max: usize) -> Result<(), TopicError> {
    reference_common(filter, max)?;
    let levels: Vec<&str> = filter.split('/').collect();
    for (i, level) in levels.iter().enumerate() {
        let last = i + 1 == levels.len();
        let ok = match *level {
            "+" => true,
            "#" => last,
            l => !l.contains(['+', '#']),
        };
        if !ok {
            return Err(TopicError::BadWildcard);
        }
    }
    Ok(())
}

fn reference_topic(topic: &str, max: usize) -> Result<(), TopicError> {
    reference_common(topic, max)?;
    if topic.contains(['+', '#']) {
        return Err(TopicError::WildcardInTopic);
    }
    Ok(())
}

fn reference_common(s: &str, max: usize) -> Result<(), TopicError> {
    if s.is_empty() {
        Err(TopicError::Empty)
    } else if s.len() > max {
        Err(TopicError::TooLong)
    } else if s.contains('\0') {
        Err(TopicError::Nul)
    } else {
        Ok(())
    }
}

#[test]
fn examples() {
    for ok in [
        "a", "a/b", "+", "#", "a/+", "a/#", "+/+/#", "/", "//", "/+/", "a//#", "é/+/ü",
    ] {
        assert_eq!(check_filter(ok, 64), Ok(()), "{ok:?}");
    }
    for bad in ["a+", "+a", "a/b+", "#/a", "a/#/b", "##", "++", "a#", "a/+b/c", "#a"] {
        assert_eq!(check_filter(bad, 64), Err(TopicError::BadWildcard), "{bad:?}");
    }
    assert_eq!(check_filter("", 64), Err(TopicError::Empty));
    assert_eq!(check_filter("a/\0", 64), Err(TopicError::Nul));
    assert_eq!(check_filter("abcde", 4), Err(TopicError::TooLong));
    assert_eq!(check_topic("a/b/c", 64), Ok(()));
    assert_eq!(check_topic("a/+/c", 64), Err(TopicError::WildcardInTopic));
    assert_eq!(check_topic("a/#", 64), Err(TopicError::WildcardInTopic));
}

proptest! {
    #[test]
    fn filters_checked_as_the_rules_say(s in "[ab/+#\u{0}é]{0,12}", max in 0usize..16) {
        prop_assert_eq!(check_filter(&s, max), reference_filter(&s, max));
        prop_assert_eq!(check_topic(&s, max), reference_topic(&s, max));
    }
}
