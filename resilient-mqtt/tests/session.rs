//! State × event tests of the session in virtual time against a scripted fake broker.

mod support;

use resilient_mqtt::codec::{ConnAck, ConnectReturnCode, Packet, Publish};
use resilient_mqtt::{AckError, DisconnectReason, PublishError, QoS, RequestError, SubAckCode, Timer, Will};
use support::fake_broker::*;

#[test]
fn connect_carries_credentials_will_keepalive_and_session_flag() {
    let mut o = options("dev-1");
    o.username = Some("user");
    o.password = Some(b"secret");
    o.will = Some(Will {
        topic: "dev/status",
        payload: b"gone",
        qos: QoS::AtLeastOnce,
        retain: true,
    });
    let mut h = Harness::new(&o);
    assert!(h.client.wants_link(h.now()));
    h.link_up();
    assert_eq!(
        h.take_sent(),
        vec![Sent::Connect {
            client_id: "dev-1".into(),
            clean: false,
            keep_alive: 10,
            username: Some("user".into()),
            password: Some(b"secret".to_vec()),
            will: Some(("dev/status".into(), b"gone".to_vec(), QoS::AtLeastOnce, true)),
        }]
    );
    assert!(!h.client.is_connected());
    h.feed(&Packet::ConnAck(ConnAck {
        session_present: true,
        code: ConnectReturnCode::Accepted,
    }));
    assert_eq!(h.take_events(), vec![Ev::Connected(true)]);
    assert!(h.client.is_connected());
}

#[test]
fn refused_connack_gives_the_typed_reason_and_backs_off_instead_of_storming() {
    let mut h = Harness::new(&options("dev"));
    h.link_up();
    h.feed(&Packet::ConnAck(ConnAck {
        session_present: false,
        code: ConnectReturnCode::BadUserNameOrPassword,
    }));
    assert_eq!(
        h.take_events(),
        vec![Ev::Disconnected(DisconnectReason::Refused(
            ConnectReturnCode::BadUserNameOrPassword
        ))]
    );
    assert!(!h.client.is_link_up());
    h.advance(4_900);
    assert!(!h.client.wants_link(h.now()), "retried a refused CONNECT within 5 s");
    // Each further refusal waits at least as long.
    let mut attempts = 0;
    for _ in 0..600 {
        h.advance(100);
        if h.client.wants_link(h.now()) {
            attempts += 1;
            h.link_up();
            h.feed(&Packet::ConnAck(ConnAck {
                session_present: false,
                code: ConnectReturnCode::NotAuthorized,
            }));
        }
    }
    assert!((1..=12).contains(&attempts), "{attempts} attempts in 60 s");
}

#[test]
fn qos0_publication_is_sent_once_and_reported() {
    let mut h = Harness::new(&options("dev"));
    h.connect(false);
    h.publish(7, "a/b", b"x", QoS::AtMostOnce);
    assert_eq!(publish_ids(&h.take_sent()), vec![(None, false, b"x".to_vec())]);
    assert_eq!(h.take_events(), vec![Ev::Published(7)]);
    assert_eq!(h.client.queued(), 0);
}

#[test]
fn qos1_publication_is_published_only_when_its_puback_arrives() {
    let mut h = Harness::new(&options("dev"));
    h.connect(false);
    h.publish(42, "a/b", b"x", QoS::AtLeastOnce);
    let sent = publish_ids(&h.take_sent());
    let id = sent[0].0.unwrap();
    assert!(h.take_events().is_empty());
    assert_eq!(h.client.in_flight(), 1);
    h.puback(id.wrapping_add(100)); // unknown id: ignored
    assert!(h.take_events().is_empty());
    h.puback(id);
    assert_eq!(h.take_events(), vec![Ev::Published(42)]);
    assert_eq!(h.client.queued(), 0);
}

#[test]
fn window_bounds_the_publications_in_flight() {
    let mut h = Harness::new(&options("dev")); // window 3
    h.connect(false);
    for t in 0..5 {
        h.publish(t, "t", &[t as u8], QoS::AtLeastOnce);
    }
    let first = publish_ids(&h.take_sent());
    assert_eq!(first.len(), 3);
    h.puback(first[1].0.unwrap());
    let next = publish_ids(&h.take_sent());
    assert_eq!(next, vec![(next[0].0, false, vec![3])]);
    assert_eq!(h.take_events(), vec![Ev::Published(1)]);
}

#[test]
fn reconnect_resends_unacked_publish_first() {
    let mut h = Harness::new(&options("dev"));
    h.connect(false);
    h.client.subscribe(1, &[("cmd/#", QoS::AtLeastOnce)]).unwrap();
    h.pump();
    let sub_id = match h.take_sent().as_slice() {
        [Sent::Subscribe { id, .. }] => *id,
        other => panic!("{other:?}"),
    };
    h.suback(sub_id, &[1]);
    h.publish(1, "t", b"one", QoS::AtLeastOnce);
    h.publish(2, "t", b"two", QoS::AtLeastOnce);
    let before = publish_ids(&h.take_sent());
    h.puback(before[1].0.unwrap()); // "two" acknowledged, "one" not
    h.link_down();
    h.publish(3, "t", b"three", QoS::AtLeastOnce);
    h.take_events();
    h.advance(1_000);
    assert!(h.client.wants_link(h.now()));
    h.connect(false);
    let after = h.take_sent();
    // "one" again, with DUP and its packet id, before the subscription replay and before "three".
    assert_eq!(
        after.first(),
        Some(&Sent::Publish {
            dup: true,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: "t".into(),
            id: before[0].0,
            payload: b"one".to_vec()
        })
    );
    assert!(
        matches!(&after[1], Sent::Subscribe { filters, .. } if filters == &[("cmd/#".to_string(), QoS::AtLeastOnce)])
    );
    assert_eq!(
        publish_ids(&after[2..]),
        vec![(publish_ids(&after[2..])[0].0, false, b"three".to_vec())]
    );
    assert_eq!(h.client.stats().retransmissions, 1);
}

#[test]
fn publications_accepted_offline_are_sent_in_order_once_connected() {
    let mut h = Harness::new(&options("dev"));
    for t in 0..3u8 {
        h.client
            .publish(u32::from(t), "t", &[t], QoS::AtLeastOnce, false)
            .unwrap();
    }
    h.client.publish(9, "t", b"q0", QoS::AtMostOnce, false).unwrap();
    h.connect(true);
    let payloads: Vec<_> = publish_ids(&h.take_sent()).into_iter().map(|p| p.2).collect();
    // The window (3) holds QoS 1 only; the QoS 0 one still goes after them, in order.
    assert_eq!(payloads, vec![vec![0], vec![1], vec![2], b"q0".to_vec()]);
}

#[test]
fn full_offline_queue_is_backpressure_not_a_silent_drop() {
    let mut h = Harness::new(&options("dev")); // 8 entries
    for t in 0..8 {
        h.client.publish(t, "t", b"x", QoS::AtLeastOnce, false).unwrap();
    }
    assert_eq!(
        h.client.publish(8, "t", b"x", QoS::AtLeastOnce, false),
        Err(PublishError::QueueFull)
    );
    assert_eq!(h.client.queued(), 8);
    h.connect(true);
    let ids = publish_ids(&h.take_sent());
    h.puback(ids[0].0.unwrap());
    assert_eq!(h.client.publish(8, "t", b"x", QoS::AtLeastOnce, false), Ok(()));
}

#[test]
fn invalid_publications_get_typed_errors() {
    let mut h = Harness::new(&options("dev"));
    use resilient_mqtt::topic::TopicError;
    assert_eq!(
        h.client.publish(0, "a/+", b"", QoS::AtMostOnce, false),
        Err(PublishError::Topic(TopicError::Wildcard))
    );
    assert_eq!(
        h.client.publish(0, "", b"", QoS::AtMostOnce, false),
        Err(PublishError::Topic(TopicError::Empty))
    );
    assert_eq!(
        h.client.publish(0, "t", b"", QoS::ExactlyOnce, false),
        Err(PublishError::QoS2Unsupported)
    );
    assert_eq!(
        h.client.publish(0, "t", &[0; 5000], QoS::AtMostOnce, false),
        Err(PublishError::TooLarge)
    );
    assert_eq!(
        h.client.subscribe(0, &[("a/#/b", QoS::AtMostOnce)]),
        Err(RequestError::Filter(TopicError::MisplacedWildcard))
    );
    assert_eq!(h.client.subscribe(0, &[]), Err(RequestError::FilterCount));
}

#[test]
fn missing_puback_within_the_timeout_counts_as_a_dead_connection() {
    let mut h = Harness::new(&options("dev")); // ack timeout 10 s
    h.connect(false);
    h.publish(1, "t", b"x", QoS::AtLeastOnce);
    h.take_sent();
    h.run_for(9_900, 100);
    assert!(h.client.is_connected());
    h.run_for(200, 100);
    assert!(h
        .take_events()
        .contains(&Ev::Disconnected(DisconnectReason::AckTimeout)));
    assert_eq!(h.client.queued(), 1, "the publication stays for the next connection");
}

#[test]
fn incoming_qos1_is_acked_only_when_the_application_takes_it() {
    let mut h = Harness::new(&options("dev"));
    h.connect(false);
    h.deliver("cmd/x", b"hello", QoS::AtLeastOnce, Some(77));
    assert_eq!(
        h.take_events(),
        vec![Ev::Message {
            id: Some(77),
            topic: "cmd/x".into(),
            payload: b"hello".to_vec(),
            qos: QoS::AtLeastOnce,
            retain: false,
            dup: false
        }]
    );
    assert!(
        h.take_sent().is_empty(),
        "PUBACK before the application took the message"
    );
    h.client.ack(77).unwrap();
    h.pump();
    assert_eq!(h.take_sent(), vec![Sent::PubAck(77)]);
}

#[test]
fn auto_ack_acknowledges_incoming_qos1_at_once() {
    let mut o = options("dev");
    o.auto_ack = true;
    let mut h = Harness::new(&o);
    h.connect(false);
    h.deliver("cmd/x", b"1", QoS::AtLeastOnce, Some(5));
    h.deliver("cmd/x", b"0", QoS::AtMostOnce, None);
    assert_eq!(h.take_sent(), vec![Sent::PubAck(5)]);
    assert_eq!(h.take_events().len(), 2);
}

#[test]
fn subscribe_reports_per_filter_results_including_failure() {
    let mut h = Harness::new(&options("dev"));
    h.connect(false);
    h.client
        .subscribe(
            11,
            &[
                ("a/#", QoS::AtLeastOnce),
                ("secret/#", QoS::AtLeastOnce),
                ("b", QoS::AtMostOnce),
            ],
        )
        .unwrap();
    h.pump();
    let id = match h.take_sent().as_slice() {
        [Sent::Subscribe { id, filters }] => {
            assert_eq!(filters.len(), 3);
            *id
        }
        other => panic!("{other:?}"),
    };
    h.suback(id, &[0x01, 0x80, 0x00]);
    assert_eq!(
        h.take_events(),
        vec![Ev::Subscribed(
            11,
            vec![
                SubAckCode::Granted(QoS::AtLeastOnce),
                SubAckCode::Failure,
                SubAckCode::Granted(QoS::AtMostOnce)
            ]
        )]
    );
    let table: Vec<_> = h.client.subscriptions().map(|(f, q)| (f.to_string(), q)).collect();
    assert_eq!(
        table,
        vec![
            ("a/#".to_string(), QoS::AtLeastOnce),
            ("b".to_string(), QoS::AtMostOnce)
        ]
    );
}

fn subscribed_harness() -> Harness {
    let mut h = Harness::new(&options("dev"));
    h.connect(false);
    h.client
        .subscribe(1, &[("a", QoS::AtLeastOnce), ("b", QoS::AtMostOnce)])
        .unwrap();
    h.pump();
    let Sent::Subscribe { id, .. } = h.take_sent()[0].clone() else {
        panic!()
    };
    h.suback(id, &[1, 0]);
    h.take_events();
    h
}

#[test]
fn subscriptions_are_replayed_when_the_broker_lost_the_session() {
    let mut h = subscribed_harness();
    h.link_down();
    h.advance(1_000);
    h.connect(false);
    let sent = h.take_sent();
    let [Sent::Subscribe { id, filters }] = sent.as_slice() else {
        panic!("{sent:?}")
    };
    assert_eq!(
        filters,
        &[("a".to_string(), QoS::AtLeastOnce), ("b".to_string(), QoS::AtMostOnce)]
    );
    h.suback(*id, &[1, 0]);
    assert!(h.take_events().is_empty(), "a replay is not an application request");
}

#[test]
fn subscriptions_are_not_replayed_when_the_session_is_present() {
    let mut h = subscribed_harness();
    h.link_down();
    h.advance(1_000);
    h.connect(true);
    assert!(h.take_sent().is_empty());
}

#[test]
fn unsubscribed_filters_leave_the_replay_table() {
    let mut h = subscribed_harness();
    h.client.unsubscribe(4, &["a"]).unwrap();
    h.pump();
    let Sent::Unsubscribe { id, filters } = one(h.take_sent()) else {
        panic!()
    };
    assert_eq!(filters, vec!["a".to_string()]);
    h.feed(&Packet::UnsubAck(id));
    assert_eq!(h.take_events(), vec![Ev::Unsubscribed(4)]);
    h.link_down();
    h.advance(1_000);
    h.connect(false);
    let Sent::Subscribe { filters, .. } = one(h.take_sent()) else {
        panic!()
    };
    assert_eq!(filters, vec![("b".to_string(), QoS::AtMostOnce)]);
}

/// A client that takes one filter per request, subscribed to "a", "b" and "c" (granted QoS 1, 0, 1).
fn one_filter_harness() -> Harness<1> {
    let mut h = Harness::<1>::with_filters(&options("dev"));
    h.connect(false);
    for (token, filter, code) in [(1, "a", 1), (2, "b", 0), (3, "c", 1)] {
        h.client.subscribe(token, &[(filter, QoS::AtLeastOnce)]).unwrap();
        h.pump();
        let Sent::Subscribe { id, .. } = one(h.take_sent()) else {
            panic!()
        };
        h.suback(id, &[code]);
    }
    h.take_events();
    h
}

#[test]
fn a_one_filter_client_refuses_two_filters_in_one_request() {
    let mut h = one_filter_harness();
    assert_eq!(
        h.client.subscribe(9, &[("x", QoS::AtMostOnce), ("y", QoS::AtMostOnce)]),
        Err(RequestError::FilterCount)
    );
    assert_eq!(h.client.unsubscribe(9, &["a", "b"]), Err(RequestError::FilterCount));
    h.client.unsubscribe(9, &["a"]).unwrap();
}

#[test]
fn a_one_filter_client_replays_one_filter_per_subscribe_before_new_requests() {
    let mut h = one_filter_harness();
    h.link_down();
    h.client.subscribe(7, &[("d", QoS::AtMostOnce)]).unwrap();
    h.advance(1_000);
    h.connect(false);
    let sent = h.take_sent();
    let filters: Vec<_> = sent
        .iter()
        .map(|s| match s {
            Sent::Subscribe { filters, .. } => filters.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    // The three replays (in table order, with their granted QoS) go before the application's request.
    assert_eq!(
        filters,
        vec![
            vec![("a".to_string(), QoS::AtLeastOnce)],
            vec![("b".to_string(), QoS::AtMostOnce)],
            vec![("c".to_string(), QoS::AtLeastOnce)],
            vec![("d".to_string(), QoS::AtMostOnce)],
        ]
    );
    let ids: Vec<u16> = sent
        .iter()
        .map(|s| match s {
            Sent::Subscribe { id, .. } => *id,
            _ => unreachable!(),
        })
        .collect();
    // "a" is refused this time: it leaves the table, and neither "b" nor "c" is skipped or lost.
    h.suback(ids[0], &[0x80]);
    h.suback(ids[1], &[0]);
    h.suback(ids[2], &[1]);
    h.suback(ids[3], &[0]);
    assert_eq!(
        h.take_events(),
        vec![Ev::Subscribed(7, vec![SubAckCode::Granted(QoS::AtMostOnce)])]
    );
    assert_eq!(h.client.stats().replay_failures, 1);
    let table: Vec<_> = h.client.subscriptions().map(|(f, q)| (f.to_string(), q)).collect();
    assert_eq!(
        table,
        vec![
            ("b".to_string(), QoS::AtMostOnce),
            ("c".to_string(), QoS::AtLeastOnce),
            ("d".to_string(), QoS::AtMostOnce)
        ]
    );
}

#[test]
fn a_replay_waits_for_suback_room_and_is_acked_in_time() {
    // More subscriptions than replay SUBSCRIBEs may wait at once (4): the rest follow the first SUBACKs.
    let mut h = Harness::<1>::with_filters(&options("dev"));
    h.connect(false);
    for token in 0..6u32 {
        let filter = format!("f{token}");
        h.client
            .subscribe(token, &[(filter.as_str(), QoS::AtMostOnce)])
            .unwrap();
        h.pump();
        let Sent::Subscribe { id, .. } = one(h.take_sent()) else {
            panic!()
        };
        h.suback(id, &[0]);
    }
    h.take_events();
    h.link_down();
    h.advance(1_000);
    h.connect(false);
    let first = h.take_sent();
    assert_eq!(first.len(), 4, "{first:?}");
    let Sent::Subscribe { id, .. } = first[0].clone() else {
        panic!()
    };
    h.suback(id, &[0]);
    let Sent::Subscribe { filters, .. } = one(h.take_sent()) else {
        panic!()
    };
    assert_eq!(filters, vec![("f4".to_string(), QoS::AtMostOnce)]);
    // The unanswered replays count for the acknowledgement timeout like any request.
    assert!(h.client.timer(Timer::AckTimeout).is_some());
}

#[test]
fn pending_subscribe_is_sent_again_after_a_reconnect() {
    let mut h = Harness::new(&options("dev"));
    h.connect(false);
    h.client.subscribe(3, &[("x", QoS::AtLeastOnce)]).unwrap();
    h.pump();
    assert_eq!(h.take_sent().len(), 1);
    h.link_down();
    h.advance(1_000);
    h.connect(true);
    let Sent::Subscribe { id, .. } = one(h.take_sent()) else {
        panic!()
    };
    h.suback(id, &[1]);
    assert_eq!(
        h.take_events(),
        vec![Ev::Subscribed(3, vec![SubAckCode::Granted(QoS::AtLeastOnce)])]
    );
}

#[test]
fn idle_client_pings_after_one_keepalive_and_pingresp_keeps_it_up() {
    let mut h = Harness::new(&options("dev")); // keepalive 10 s
    h.connect(false);
    assert_eq!(h.client.poll_at().map(|t| t.as_millis()), Some(10_000));
    h.run_for(9_900, 100);
    assert!(h.take_sent().is_empty());
    h.advance(100);
    assert_eq!(h.take_sent(), vec![Sent::PingReq]);
    h.advance(1_000);
    h.feed(&Packet::PingResp);
    for _ in 0..300 {
        h.advance(100);
        if h.take_sent().contains(&Sent::PingReq) {
            h.feed(&Packet::PingResp);
        }
    }
    assert!(h.client.is_connected());
    assert_eq!(h.client.stats().pings, 4);
}

#[test]
fn receive_only_client_still_pings() {
    let mut h = Harness::new(&options("dev"));
    h.connect(false);
    let mut pings = 0;
    for _ in 0..300 {
        h.advance(100); // the broker sends a QoS 0 message every 100 ms, the client sends nothing
        h.deliver("t", b"x", QoS::AtMostOnce, None);
        for s in h.take_sent() {
            if s == Sent::PingReq {
                pings += 1;
                h.feed(&Packet::PingResp);
            }
        }
    }
    assert_eq!(pings, 3, "one PINGREQ per keepalive of silence from the client");
    assert!(h.client.is_connected());
}

#[test]
fn constant_publishing_does_not_hide_a_dead_link() {
    let mut h = Harness::new(&options("dev"));
    h.connect(false);
    let mut detected_at = None;
    for _ in 0..300 {
        h.advance(100);
        let _ = h.client.publish(0, "t", b"x", QoS::AtMostOnce, false);
        h.pump();
        if h.take_events()
            .contains(&Ev::Disconnected(DisconnectReason::PingTimeout))
        {
            detected_at = Some(h.now);
            break;
        }
    }
    // Nothing ever comes back: a PINGREQ at 10 s, dead at 15 s.
    assert_eq!(detected_at, Some(15_000));
}

#[test]
fn detects_half_open_connection_within_one_and_a_half_keepalives() {
    let mut h = Harness::new(&options("dev"));
    h.connect(false);
    // Healthy for a while: the broker answers pings.
    for _ in 0..250 {
        h.advance(100);
        if h.take_sent().contains(&Sent::PingReq) {
            h.feed(&Packet::PingResp);
        }
    }
    let last_heard = h.now;
    // Half-open: whatever the client sends disappears.
    let mut detected = None;
    for _ in 0..400 {
        h.advance(100);
        h.take_sent();
        if h.take_events()
            .contains(&Ev::Disconnected(DisconnectReason::PingTimeout))
        {
            detected = Some(h.now - last_heard);
            break;
        }
    }
    let detected = detected.expect("half-open link never detected");
    assert!(detected <= 15_000, "detected after {detected} ms");
    assert!(!h.client.is_link_up());
}

#[test]
fn keepalive_zero_disables_pings() {
    let mut o = options("dev");
    o.keep_alive_secs = 0;
    let mut h = Harness::new(&o);
    h.connect(false);
    assert_eq!(h.client.poll_at(), None);
    h.run_for(100_000, 1_000);
    assert!(h.take_sent().is_empty());
}

#[test]
fn malformed_packet_ends_the_connection_and_is_counted() {
    let mut h = Harness::new(&options("dev"));
    h.connect(false);
    h.feed_bytes(&[0x40, 0x03, 0, 1, 2]); // PUBACK with a trailing byte
    let ev = h.take_events();
    assert!(
        matches!(ev.as_slice(), [Ev::Disconnected(DisconnectReason::Malformed(_))]),
        "{ev:?}"
    );
    assert_eq!(h.client.stats().malformed_packets, 1);
    assert!(!h.client.is_link_up());
}

#[test]
fn oversize_packet_ends_the_connection_without_buffering_it() {
    let mut h = Harness::new(&options("dev")); // 1024-byte receive buffer
    h.connect(false);
    h.feed_bytes(&[0x30, 0xff, 0x7f]); // announces 16 KiB
    assert_eq!(
        h.take_events(),
        vec![Ev::Disconnected(DisconnectReason::Malformed(
            resilient_mqtt::codec::DecodeError::TooLarge
        ))]
    );
}

#[test]
fn qos2_delivery_is_a_protocol_violation() {
    let mut h = Harness::new(&options("dev"));
    h.connect(false);
    h.deliver("t", b"x", QoS::ExactlyOnce, Some(3));
    assert_eq!(
        h.take_events(),
        vec![Ev::Disconnected(DisconnectReason::ProtocolViolation)]
    );
}

#[test]
fn packets_split_byte_by_byte_are_reassembled() {
    let mut h = Harness::new(&options("dev"));
    h.connect(false);
    let mut buf = [0u8; 64];
    let p = Packet::Publish(Publish {
        dup: true,
        qos: QoS::AtLeastOnce,
        retain: true,
        topic: "x/y",
        packet_id: Some(9),
        payload: b"abc",
    });
    let n = resilient_mqtt::codec::v311::encode(&p, &mut buf).unwrap();
    for b in &buf[..n] {
        h.feed_bytes(&[*b]);
    }
    assert_eq!(
        h.take_events(),
        vec![Ev::Message {
            id: Some(9),
            topic: "x/y".into(),
            payload: b"abc".to_vec(),
            qos: QoS::AtLeastOnce,
            retain: true,
            dup: true
        }]
    );
}

#[test]
fn connack_timeout_ends_the_link() {
    let mut h = Harness::new(&options("dev"));
    h.link_up();
    assert_eq!(
        h.client.timer(Timer::ConnAckTimeout).map(|t| t.as_millis()),
        Some(10_000)
    );
    h.run_for(10_000, 500);
    assert_eq!(
        h.take_events(),
        vec![Ev::Disconnected(DisconnectReason::ConnAckTimeout)]
    );
}

#[test]
fn first_retry_is_sub_second_and_backoff_resets_after_a_good_connection() {
    let mut h = Harness::new(&options("dev"));
    h.connect(false);
    h.link_down();
    let first = h.client.timer(Timer::ReconnectBackoff).unwrap().as_millis() - h.now;
    assert!((250..=500).contains(&first), "{first}");
    // Connection attempts that fail grow the delay.
    let mut delays = vec![];
    for _ in 0..8 {
        let at = h.client.timer(Timer::ReconnectBackoff).unwrap().as_millis();
        h.now = at;
        assert!(h.client.wants_link(h.now()));
        h.client.handle_link_failed(h.now());
        delays.push(h.client.timer(Timer::ReconnectBackoff).unwrap().as_millis() - h.now);
    }
    assert!(delays.iter().all(|d| *d <= 30_000));
    assert!(delays[7] >= 15_000, "{delays:?}");
    // A connection that lasts resets it.
    h.now = h.client.timer(Timer::ReconnectBackoff).unwrap().as_millis();
    h.connect(true);
    h.run_for(6_000, 1_000);
    h.link_down();
    let after = h.client.timer(Timer::ReconnectBackoff).unwrap().as_millis() - h.now;
    assert!(after <= 500, "{after}");
}

#[test]
fn graceful_disconnect_sends_disconnect_and_stops_reconnecting() {
    let mut h = Harness::new(&options("dev"));
    h.connect(false);
    h.deliver("t", b"x", QoS::AtLeastOnce, Some(4));
    h.take_events();
    h.client.ack(4).unwrap();
    h.client.publish(1, "t", b"later", QoS::AtLeastOnce, false).unwrap();
    h.client.disconnect(h.now());
    h.pump();
    assert_eq!(h.take_sent(), vec![Sent::PubAck(4), Sent::Disconnect]);
    assert_eq!(h.client.queued(), 1, "the publication waits for the next connection");
    assert_eq!(h.take_events(), vec![Ev::Disconnected(DisconnectReason::Requested)]);
    h.advance(120_000);
    assert!(!h.client.wants_link(h.now()));
    h.client.reconnect(h.now());
    assert!(h.client.wants_link(h.now()));
}

#[test]
fn a_second_connack_is_a_protocol_violation() {
    let mut h = Harness::new(&options("dev"));
    h.connect(false);
    h.feed(&Packet::ConnAck(ConnAck {
        session_present: false,
        code: ConnectReturnCode::Accepted,
    }));
    assert_eq!(
        h.take_events(),
        vec![Ev::Disconnected(DisconnectReason::ProtocolViolation)]
    );
}

#[test]
fn acks_of_a_dead_connection_are_not_sent_on_the_next_one() {
    let mut h = Harness::new(&options("dev"));
    h.connect(false);
    h.deliver("t", b"x", QoS::AtLeastOnce, Some(8));
    h.link_down();
    h.advance(1_000);
    h.connect(true);
    assert_eq!(
        h.client.ack(8),
        Err(AckError::NotAwaited),
        "delivered on the earlier connection"
    );
    h.pump();
    assert!(h.take_sent().is_empty());
    // The broker redelivers it; that delivery is acked.
    h.take_events();
    h.feed(&Packet::Publish(Publish {
        dup: true,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: "t",
        packet_id: Some(8),
        payload: b"x",
    }));
    assert!(matches!(h.take_events().as_slice(), [Ev::Message { dup: true, .. }]));
    h.client.ack(8).unwrap();
    assert_eq!(h.client.ack(8), Err(AckError::NotAwaited), "acked twice");
    h.pump();
    assert_eq!(h.take_sent(), vec![Sent::PubAck(8)]);
}

#[test]
fn unacknowledged_messages_hold_back_reception_at_the_limit() {
    let mut h = Harness::new(&options("dev"));
    h.connect(false);
    let limit = resilient_mqtt::session::MAX_PENDING_ACKS as u16;
    for id in 1..=limit + 2 {
        h.deliver("t", &id.to_be_bytes(), QoS::AtLeastOnce, Some(id));
    }
    let n = h.take_events().len();
    assert_eq!(
        n,
        usize::from(limit),
        "the broker's extra messages wait in the receive buffer"
    );
    h.client.ack(1).unwrap();
    h.pump();
    assert_eq!(h.take_events().len(), 1);
    assert!(h.client.is_connected());
}

fn one(sent: Vec<Sent>) -> Sent {
    assert_eq!(sent.len(), 1, "{sent:?}");
    sent.into_iter().next().unwrap()
}

#[test]
fn qos0_burst_beyond_the_event_queue_loses_no_published_event() {
    let mut h = Harness::new(&options("dev"));
    h.connect(false);
    let mut accepted = 0;
    let mut buf = [0u8; 256];
    let mut sent = 0;
    for _ in 0..4 {
        while h.client.publish(accepted, "t", b"x", QoS::AtMostOnce, false).is_ok() {
            accepted += 1;
        }
        // A runner that transmits everything before it looks at events.
        while h.client.poll_transmit(h.now(), &mut buf).is_some() {
            sent += 1;
        }
    }
    let mut published = 0;
    loop {
        while h.client.poll_event(h.now()).is_some() {
            published += 1;
        }
        let mut progressed = false;
        while h.client.poll_transmit(h.now(), &mut buf).is_some() {
            sent += 1;
            progressed = true;
        }
        if !progressed {
            break;
        }
    }
    assert!(accepted > 8);
    assert_eq!((published, sent), (accepted, accepted));
    assert_eq!(h.client.stats().events_dropped, 0);
}
