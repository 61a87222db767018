//! Arbitrary bytes, cut in arbitrary chunks, into the largest frame decoder; every frame it delivers is decoded as
//! a request and as an event. Checks, besides "no panic": chunking does not change what the decoder finds; every
//! frame end is counted once; whatever decodes re-encodes into a frame that fits `MAX_FRAME_LEN` and decodes to the
//! same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protocol::{Event, Feed, FrameDecoder, FrameError, Request, MAX_FRAME_LEN};

/// The message bytes or the error of each frame end.
type Out = Vec<Result<Vec<u8>, FrameError>>;

fn feed(dec: &mut FrameDecoder<MAX_FRAME_LEN>, mut input: &[u8], out: &mut Out) {
    loop {
        match dec.feed(input) {
            Feed::Consumed => return,
            Feed::Frame { message, rest } => {
                out.push(Ok(message.to_vec()));
                input = rest;
            }
            Feed::Error { error, rest } => {
                out.push(Err(error));
                input = rest;
            }
        }
    }
}

/// Re-frames a decoded message and checks that it comes back equal.
fn reframe<T: protocol::Encode>(msg: &T) -> Vec<u8> {
    let mut buf = [0u8; MAX_FRAME_LEN];
    let n = protocol::encode(msg, &mut buf).expect("a message within the limits fits MAX_FRAME_LEN");
    let mut dec = FrameDecoder::<MAX_FRAME_LEN>::new();
    match dec.feed(&buf[..n]) {
        Feed::Frame { message, rest } => {
            assert!(rest.is_empty());
            message.to_vec()
        }
        other => panic!("own frame refused: {other:?}"),
    }
}

fuzz_target!(|chunks: Vec<&[u8]>| {
    let mut dec = FrameDecoder::<MAX_FRAME_LEN>::new();
    let mut out = Out::new();
    for chunk in &chunks {
        feed(&mut dec, chunk, &mut out);
    }
    let s = dec.stats();
    assert_eq!((s.frames + s.crc_errors + s.overlong + s.malformed) as usize, out.len());

    let whole: Vec<u8> = chunks.concat();
    let mut once = Out::new();
    feed(&mut FrameDecoder::<MAX_FRAME_LEN>::new(), &whole, &mut once);
    assert_eq!(out, once, "chunking changed the result");

    for message in out.iter().flatten() {
        if let Ok(req) = Request::decode(message) {
            let again = reframe(&req);
            assert_eq!(Request::decode(&again), Ok(req));
        }
        if let Ok(ev) = Event::decode(message) {
            let again = reframe(&ev);
            assert_eq!(Event::decode(&again), Ok(ev));
        }
    }
});
