//! Arbitrary bytes straight into `Request::decode` and `Event::decode`, past the CRC that keeps random bytes out
//! of them in `frame_decoder`. Whatever decodes must be within the limits, re-encode within `MAX_MESSAGE_LEN` and
//! decode to the same message. Differential too: serde and postcard must decode (or refuse) every input exactly as
//! the built-in decoders do, and encode what decodes to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protocol::message::MAX_MESSAGE_LEN;
use protocol::{Event, Request};

#[path = "../../tests/support/postcard_reference.rs"]
mod postcard_reference;
use postcard_reference::postcard_decode;

fuzz_target!(|data: &[u8]| {
    let mut buf = [0u8; MAX_MESSAGE_LEN];
    let mut reference = [0u8; MAX_MESSAGE_LEN];
    let req = Request::decode(data);
    assert_eq!(req, postcard_decode(data, 8, Request::check_limits));
    if let Ok(req) = req {
        assert_eq!(req.check_limits(), Ok(()));
        let n = protocol::wire::encode(&req, &mut buf).expect("a request within the limits fits MAX_MESSAGE_LEN");
        assert_eq!(postcard::to_slice(&req, &mut reference).map(|b| &*b), Ok(&buf[..n]));
        assert_eq!(Request::decode(&buf[..n]), Ok(req));
    }
    let ev = Event::decode(data);
    assert_eq!(ev, postcard_decode(data, 10, Event::check_limits));
    if let Ok(ev) = ev {
        assert_eq!(ev.check_limits(), Ok(()));
        let n = protocol::wire::encode(&ev, &mut buf).expect("an event within the limits fits MAX_MESSAGE_LEN");
        assert_eq!(postcard::to_slice(&ev, &mut reference).map(|b| &*b), Ok(&buf[..n]));
        assert_eq!(Event::decode(&buf[..n]), Ok(ev));
    }
});
