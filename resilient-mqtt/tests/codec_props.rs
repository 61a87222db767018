//! Property tests: every packet encodes and decodes back to itself; arbitrary bytes never panic the decoder.

use proptest::prelude::*;
use resilient_mqtt::codec::v311::{decode, encode, encoded_len};
use resilient_mqtt::codec::*;
use resilient_mqtt::topic;

/// A packet that owns its data, to build a borrowed [`Packet`] from.
#[derive(Debug, Clone)]
enum Owned {
    Connect {
        clean: bool,
        keep_alive: u16,
        client_id: String,
        will: Option<(String, Vec<u8>, QoS, bool)>,
        username: Option<String>,
        password: Option<Vec<u8>>,
    },
    ConnAck(bool, u8),
    Publish {
        dup: bool,
        qos: QoS,
        retain: bool,
        topic: String,
        id: u16,
        payload: Vec<u8>,
    },
    Id(u8, u16),
    Subscribe(u16, Vec<(String, QoS)>),
    SubAck(u16, Vec<u8>),
    Unsubscribe(u16, Vec<String>),
    Empty(u8),
}

fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![Just(QoS::AtMostOnce), Just(QoS::AtLeastOnce), Just(QoS::ExactlyOnce)]
}

fn topic_name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_/ é$-]{1,40}"
}

fn filter() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(prop_oneof![Just("+".to_string()), "[a-z0-9]{0,6}"], 1..5),
        any::<bool>(),
    )
        .prop_map(|(levels, hash)| {
            let mut f = levels.join("/");
            if hash {
                f.push_str("/#");
            }
            if f.is_empty() {
                f.push('x');
            }
            f
        })
}

fn id() -> impl Strategy<Value = u16> {
    1..=u16::MAX
}

fn owned() -> impl Strategy<Value = Owned> {
    prop_oneof![
        (
            any::<bool>(),
            any::<u16>(),
            "[a-zA-Z0-9-]{0,23}",
            prop::option::of((
                topic_name(),
                prop::collection::vec(any::<u8>(), 0..50),
                qos(),
                any::<bool>()
            )),
            prop::option::of("[a-z]{0,10}"),
            prop::option::of(prop::collection::vec(any::<u8>(), 0..20)),
        )
            .prop_map(
                |(clean, keep_alive, client_id, will, username, password)| Owned::Connect {
                    clean,
                    keep_alive,
                    client_id,
                    will,
                    username,
                    password
                }
            ),
        (any::<bool>(), 0u8..=255).prop_map(|(sp, code)| Owned::ConnAck(sp && code == 0, code)),
        (
            any::<bool>(),
            qos(),
            any::<bool>(),
            topic_name(),
            id(),
            prop::collection::vec(any::<u8>(), 0..300)
        )
            .prop_map(|(dup, qos, retain, topic, id, payload)| Owned::Publish {
                dup: dup && qos != QoS::AtMostOnce,
                qos,
                retain,
                topic,
                id,
                payload
            }),
        (4u8..=11, id()).prop_filter_map("id-only packets", |(k, id)| matches!(k, 4..=7 | 11)
            .then_some(Owned::Id(k, id))),
        (id(), prop::collection::vec((filter(), qos()), 1..6)).prop_map(|(id, f)| Owned::Subscribe(id, f)),
        (id(), prop::collection::vec(any::<u8>(), 1..10)).prop_map(|(id, c)| Owned::SubAck(id, c)),
        (id(), prop::collection::vec(filter(), 1..6)).prop_map(|(id, f)| Owned::Unsubscribe(id, f)),
        (12u8..=14).prop_map(Owned::Empty),
    ]
}

fn with_packet<R>(o: &Owned, f: impl FnOnce(Packet<'_>) -> R) -> R {
    match o {
        Owned::Connect {
            clean,
            keep_alive,
            client_id,
            will,
            username,
            password,
        } => f(Packet::Connect(Connect {
            protocol: ProtocolLevel::V311,
            clean_session: *clean,
            keep_alive: *keep_alive,
            client_id,
            will: will.as_ref().map(|(t, p, q, r)| Will {
                topic: t,
                payload: p,
                qos: *q,
                retain: *r,
            }),
            username: username.as_deref(),
            password: password.as_deref(),
        })),
        Owned::ConnAck(sp, code) => f(Packet::ConnAck(ConnAck {
            session_present: *sp,
            code: ConnectReturnCode::from_u8(*code),
        })),
        Owned::Publish {
            dup,
            qos,
            retain,
            topic,
            id,
            payload,
        } => f(Packet::Publish(Publish {
            dup: *dup,
            qos: *qos,
            retain: *retain,
            topic,
            packet_id: (*qos != QoS::AtMostOnce).then_some(*id),
            payload,
        })),
        Owned::Id(k, id) => f(match k {
            4 => Packet::PubAck(*id),
            5 => Packet::PubRec(*id),
            6 => Packet::PubRel(*id),
            7 => Packet::PubComp(*id),
            _ => Packet::UnsubAck(*id),
        }),
        Owned::Subscribe(id, filters) => {
            let list: Vec<SubscribeFilter<'_>> = filters
                .iter()
                .map(|(f, q)| SubscribeFilter { filter: f, qos: *q })
                .collect();
            f(Packet::Subscribe(Subscribe {
                packet_id: *id,
                filters: SubscribeFilters::List(&list),
            }))
        }
        Owned::SubAck(id, codes) => f(Packet::SubAck(SubAck { packet_id: *id, codes })),
        Owned::Unsubscribe(id, filters) => {
            let list: Vec<&str> = filters.iter().map(String::as_str).collect();
            f(Packet::Unsubscribe(Unsubscribe {
                packet_id: *id,
                filters: UnsubscribeFilters::List(&list),
            }))
        }
        Owned::Empty(k) => f(match k {
            12 => Packet::PingReq,
            13 => Packet::PingResp,
            _ => Packet::Disconnect,
        }),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_packet_decodes_to_what_was_encoded(o in owned()) {
        with_packet(&o, |p| {
            let mut buf = vec![0u8; 4096];
            let n = encode(&p, &mut buf).unwrap();
            prop_assert_eq!(encoded_len(&p), Ok(n));
            let (back, used) = decode(&buf[..n], n).unwrap().unwrap();
            prop_assert_eq!(used, n);
            prop_assert_eq!(back, p);
            // Every strict prefix asks for more bytes instead of failing.
            for cut in 0..n {
                prop_assert_eq!(decode(&buf[..cut], n), Ok(None));
            }
            // One byte less of room is an error, never a panic or a partial success.
            prop_assert_eq!(encode(&p, &mut buf[..n - 1]), Err(EncodeError::BufferTooSmall));
            // A maximum one byte short refuses it.
            prop_assert_eq!(decode(&buf[..n], n - 1), Err(DecodeError::TooLarge));
            Ok(())
        })?;
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_decoded_packets_reencode_stably(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(Some((p, n))) = decode(&bytes, 1024) {
            prop_assert!(n <= bytes.len());
            let mut buf = vec![0u8; 2048];
            let m = encode(&p, &mut buf).unwrap();
            let (again, _) = decode(&buf[..m], 2048).unwrap().unwrap();
            prop_assert_eq!(again, p);
        }
    }

    #[test]
    fn mutated_valid_packets_never_panic(o in owned(), at in any::<prop::sample::Index>(), value in any::<u8>()) {
        with_packet(&o, |p| {
            let mut buf = vec![0u8; 4096];
            let n = encode(&p, &mut buf).unwrap();
            buf[at.index(n)] = value;
            let _ = decode(&buf[..n], 4096);
        });
    }

    #[test]
    fn generated_topics_and_filters_validate(t in topic_name(), f in filter()) {
        prop_assert_eq!(topic::validate_topic(&t), Ok(()));
        prop_assert_eq!(topic::validate_filter(&f), Ok(()));
        prop_assert_eq!(topic::validate_filter(&t), Ok(()));
        let with_wildcard = format!("{t}/+");
        prop_assert_eq!(topic::validate_topic(&with_wildcard), Err(topic::TopicError::Wildcard));
    }

    #[test]
    fn return_codes_round_trip(v in any::<u8>()) {
        prop_assert_eq!(ConnectReturnCode::from_u8(v).to_u8(), v);
        prop_assert_eq!(SubAckCode::from_u8(v).to_u8(), v);
    }
}

/// Found by the `decode` fuzz target: a CONNECT of protocol level 0 decoded as `Unknown(0)` but encoded as level 4.
#[test]
fn connect_of_another_level_encodes_back_to_that_level() {
    let mut bytes = vec![
        0x10, 0x1c, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x00, 0x00, 0x00, 0x00, 0x00, 0x10,
    ];
    bytes.extend_from_slice(&[b'V'; 16]);
    let (packet, n) = resilient_mqtt::codec::v311::decode(&bytes, 64)
        .expect("valid")
        .expect("complete");
    assert_eq!(n, bytes.len());
    let mut buf = [0u8; 64];
    let m = resilient_mqtt::codec::v311::encode(&packet, &mut buf).expect("encodes");
    assert_eq!(&buf[..m], &bytes[..]);
}
