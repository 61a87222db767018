//! The packet decoder on arbitrary bytes: never panics; whatever it accepts re-encodes to an equal packet.
#![no_main]

use libfuzzer_sys::fuzz_target;
use resilient_mqtt::codec::v311::{decode, encode};

fuzz_target!(|data: &[u8]| {
    let (max, bytes) = match data.split_first() {
        Some((m, rest)) => (usize::from(*m) * 16 + 2, rest),
        None => return,
    };
    if let Ok(Some((packet, n))) = decode(bytes, max) {
        assert!(n <= bytes.len() && n <= max);
        let mut buf = vec![0u8; n + 16];
        let m = encode(&packet, &mut buf).expect("a decoded packet encodes");
        let (again, _) = decode(&buf[..m], usize::MAX)
            .expect("re-encoded packet decodes")
            .expect("complete");
        assert_eq!(again, packet);
    }
});
