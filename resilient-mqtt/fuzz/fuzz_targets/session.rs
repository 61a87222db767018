//! The session fed arbitrary broker bytes after a CONNACK: never panics, keeps producing valid packets.
#![no_main]

use libfuzzer_sys::fuzz_target;
use resilient_mqtt::codec::v311::decode;
use resilient_mqtt::{Client, Instant, Options, QoS};

fuzz_target!(|data: &[u8]| {
    let mut o = Options::new("fuzz");
    o.auto_ack = data.first().is_some_and(|b| b & 1 == 1);
    let Ok(mut c) = Client::<8, 1024, 512, 4>::new(&o) else {
        return;
    };
    let mut now = 0u64;
    c.handle_link_up(Instant::from_millis(now));
    let _ = c.publish(1, "t", b"x", QoS::AtLeastOnce, false);
    let _ = c.subscribe(2, &[("a/#", QoS::AtLeastOnce)]);
    let mut feed = vec![0x20, 0x02, 0x00, 0x00]; // CONNACK accepted
    feed.extend_from_slice(data);
    let mut buf = [0u8; 4096];
    for chunk in feed.chunks(7) {
        now += 100;
        let t = Instant::from_millis(now);
        let mut rest = chunk;
        while !rest.is_empty() && c.is_link_up() {
            let n = c.handle_bytes(rest, t);
            rest = &rest[n..];
            while let Some(e) = c.poll_event(t) {
                if let resilient_mqtt::Event::Message(m) = e {
                    if let Some(id) = m.packet_id {
                        let _ = c.ack(id);
                    }
                }
            }
        }
        while let Some(n) = c.poll_transmit(t, &mut buf) {
            assert!(matches!(decode(&buf[..n], usize::MAX), Ok(Some((_, m))) if m == n));
        }
    }
});
