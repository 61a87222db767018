//! Arbitrary bytes straight into `Request::decode` and `Event::decode`, past the CRC that keeps random bytes out
//! of them in `frame_decoder`. Whatever decodes must be within the limits, re-encode within `MAX_MESSAGE_LEN` and
//! decode to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protocol::message::MAX_MESSAGE_LEN;
use protocol::{Event, Request};

fuzz_target!(|data: &[u8]| {
    let mut buf = [0u8; MAX_MESSAGE_LEN];
    if let Ok(req) = Request::decode(data) {
        assert_eq!(req.check_limits(), Ok(()));
        let again = postcard::to_slice(&req, &mut buf).expect("a request within the limits fits MAX_MESSAGE_LEN");
        assert_eq!(Request::decode(again), Ok(req));
    }
    if let Ok(ev) = Event::decode(data) {
        assert_eq!(ev.check_limits(), Ok(()));
        let again = postcard::to_slice(&ev, &mut buf).expect("an event within the limits fits MAX_MESSAGE_LEN");
        assert_eq!(Event::decode(again), Ok(ev));
    }
});
