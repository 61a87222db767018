//! The target side: the application's MQTT API (async and blocking) over the 5-wire link. Not written yet (issue 4).
#![no_std]
