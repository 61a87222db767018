//! The bridge service (link requests ⇄ MQTT session) and its host runner. Not written yet (issue 5).
#![no_std]
