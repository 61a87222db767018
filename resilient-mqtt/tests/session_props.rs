//! Property tests of the session: arbitrary broker bytes never panic it, and QoS 1 publications survive any
//! sequence of disconnects, each reported published exactly once.

mod support;

use std::collections::BTreeMap;

use proptest::prelude::*;
use resilient_mqtt::codec::v311::decode;
use resilient_mqtt::{Client, Event, Instant, Options, QoS};
use support::fake_broker::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_broker_bytes_never_panic_the_session(data in prop::collection::vec(any::<u8>(), 0..600), auto_ack in any::<bool>()) {
        let mut o = Options::new("prop");
        o.auto_ack = auto_ack;
        let mut c = Client::<8, 1024, 512, 4>::new(&o).unwrap();
        let mut now = 0u64;
        c.handle_link_up(Instant::from_millis(now));
        c.publish(1, "t", b"x", QoS::AtLeastOnce, false).unwrap();
        c.subscribe(2, &[("a/#", QoS::AtLeastOnce)]).unwrap();
        let mut feed = vec![0x20, 0x02, 0x00, 0x00];
        feed.extend_from_slice(&data);
        let mut buf = [0u8; 4096];
        for chunk in feed.chunks(7) {
            now += 100;
            let t = Instant::from_millis(now);
            let mut rest = chunk;
            while !rest.is_empty() && c.is_link_up() {
                let n = c.handle_bytes(rest, t);
                rest = &rest[n..];
                while let Some(e) = c.poll_event(t) {
                    if let Event::Message(m) = e {
                        if let Some(id) = m.packet_id {
                            let _ = c.ack(id);
                        }
                    }
                }
            }
            while let Some(n) = c.poll_transmit(t, &mut buf) {
                prop_assert!(matches!(decode(&buf[..n], usize::MAX), Ok(Some((_, m))) if m == n));
            }
        }
    }

    #[test]
    fn qos1_publications_survive_any_sequence_of_outages(ops in prop::collection::vec(0u8..7, 1..60)) {
        let mut h = Harness::new(&options("model"));
        let mut next_token = 0u32;
        let mut accepted = Vec::new();
        let mut published: BTreeMap<u32, u32> = BTreeMap::new();
        let record = |h: &mut Harness, published: &mut BTreeMap<u32, u32>| {
            for e in h.take_events() {
                if let Ev::Published(t) = e {
                    *published.entry(t).or_default() += 1;
                }
            }
        };
        for op in ops {
            match op {
                0 | 1 => {
                    if h.client.publish(next_token, "t", &next_token.to_be_bytes(), QoS::AtLeastOnce, false).is_ok() {
                        accepted.push(next_token);
                    }
                    next_token += 1;
                    h.pump();
                }
                2 => {
                    // The broker acknowledges everything sent so far.
                    for s in h.take_sent() {
                        if let Sent::Publish { id: Some(id), .. } = s {
                            h.puback(id);
                        }
                    }
                }
                3 => h.link_down(),
                4 | 6 => {
                    h.advance(40_000);
                    if h.client.wants_link(h.now()) {
                        h.connect(op == 4);
                    }
                }
                _ => h.advance(1_000),
            }
            record(&mut h, &mut published);
        }
        // Finally a good connection where the broker acknowledges everything.
        for _ in 0..50 {
            if !h.client.is_connected() {
                h.link_down();
                h.advance(40_000);
                h.connect(true);
            }
            for s in h.take_sent() {
                if let Sent::Publish { id: Some(id), .. } = s {
                    h.puback(id);
                }
            }
            record(&mut h, &mut published);
            if h.client.queued() == 0 {
                break;
            }
        }
        prop_assert_eq!(h.client.queued(), 0);
        let expected: BTreeMap<u32, u32> = accepted.iter().map(|t| (*t, 1)).collect();
        prop_assert_eq!(published, expected);
    }
}
