//! Differential tests against rumqttc's MQTT 3.1.1 codec: what one encodes, the other decodes the same.

use bytes::BytesMut;
use proptest::prelude::*;
use resilient_mqtt::codec::v311::{decode, encode};
use resilient_mqtt::codec::*;
use rumqttc::mqttbytes::v4 as rm;

fn rm_qos(q: QoS) -> rumqttc::mqttbytes::QoS {
    match q {
        QoS::AtMostOnce => rumqttc::mqttbytes::QoS::AtMostOnce,
        QoS::AtLeastOnce => rumqttc::mqttbytes::QoS::AtLeastOnce,
        QoS::ExactlyOnce => rumqttc::mqttbytes::QoS::ExactlyOnce,
    }
}

fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![Just(QoS::AtMostOnce), Just(QoS::AtLeastOnce)]
}

fn ours_to_theirs(p: &Packet<'_>) -> rm::Packet {
    let mut buf = vec![0u8; 8192];
    let n = encode(p, &mut buf).unwrap();
    let mut stream = BytesMut::from(&buf[..n]);
    let packet = rm::Packet::read(&mut stream, 1 << 20).expect("rumqttc decodes our packet");
    assert!(stream.is_empty());
    packet
}

fn theirs_to_ours(p: &rm::Packet, check: impl FnOnce(Packet<'_>)) {
    let mut stream = BytesMut::new();
    p.write(&mut stream, 1 << 20).unwrap();
    let (packet, n) = decode(&stream, 1 << 20)
        .expect("we decode rumqttc's packet")
        .expect("complete");
    assert_eq!(n, stream.len());
    check(packet);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn publish_agrees_both_ways(
        topic in "[a-z0-9/]{1,30}",
        payload in prop::collection::vec(any::<u8>(), 0..200),
        q in qos(),
        retain in any::<bool>(),
        dup in any::<bool>(),
        id in 1..=u16::MAX,
    ) {
        let dup = dup && q != QoS::AtMostOnce;
        let packet_id = (q != QoS::AtMostOnce).then_some(id);
        let ours = Packet::Publish(Publish { dup, qos: q, retain, topic: &topic, packet_id, payload: &payload });
        let rm::Packet::Publish(p) = ours_to_theirs(&ours) else { panic!("not a publish") };
        prop_assert_eq!((p.dup, p.qos, p.retain, p.topic.as_str(), p.payload.as_ref()), (dup, rm_qos(q), retain, topic.as_str(), payload.as_slice()));
        if q != QoS::AtMostOnce {
            prop_assert_eq!(p.pkid, id);
        }
        let theirs = rm::Packet::Publish(p);
        theirs_to_ours(&theirs, |back| assert_eq!(back, ours));
    }

    #[test]
    fn subscribe_and_suback_agree_both_ways(
        filters in prop::collection::vec(("[a-z0-9]{1,8}(/\\+)?(/#)?", qos()), 1..5),
        id in 1..=u16::MAX,
        codes in prop::collection::vec(prop_oneof![Just(0u8), Just(1), Just(0x80)], 1..5),
    ) {
        let list: Vec<SubscribeFilter<'_>> = filters.iter().map(|(f, q)| SubscribeFilter { filter: f, qos: *q }).collect();
        let ours = Packet::Subscribe(Subscribe { packet_id: id, filters: SubscribeFilters::List(&list) });
        let rm::Packet::Subscribe(s) = ours_to_theirs(&ours) else { panic!("not a subscribe") };
        prop_assert_eq!(s.pkid, id);
        let theirs_filters: Vec<_> = s.filters.iter().map(|f| (f.path.clone(), f.qos)).collect();
        let want: Vec<_> = filters.iter().map(|(f, q)| (f.clone(), rm_qos(*q))).collect();
        prop_assert_eq!(theirs_filters, want);
        theirs_to_ours(&rm::Packet::Subscribe(s), |back| assert_eq!(back, ours));

        let suback = Packet::SubAck(SubAck { packet_id: id, codes: &codes });
        let rm::Packet::SubAck(a) = ours_to_theirs(&suback) else { panic!("not a suback") };
        prop_assert_eq!(a.return_codes.len(), codes.len());
        theirs_to_ours(&rm::Packet::SubAck(a), |back| assert_eq!(back, suback));
    }

    #[test]
    fn acks_unsubscribe_and_connect_agree_both_ways(
        id in 1..=u16::MAX,
        filters in prop::collection::vec("[a-z0-9]{1,8}(/#)?", 1..4),
        client_id in "[a-zA-Z0-9]{1,23}",
        keep_alive in any::<u16>(),
        clean in any::<bool>(),
        // rumqttc writes an empty password as no password at all, so passwords here are non-empty.
        login in prop::option::of(("[a-z]{1,8}", "[a-z0-9]{1,12}")),
        will in prop::option::of(("[a-z/]{1,12}", prop::collection::vec(any::<u8>(), 0..20), qos(), any::<bool>())),
    ) {
        let ack = Packet::PubAck(id);
        theirs_to_ours(&ours_to_theirs(&ack), |back| assert_eq!(back, ack));
        let unsuback = Packet::UnsubAck(id);
        theirs_to_ours(&ours_to_theirs(&unsuback), |back| assert_eq!(back, unsuback));
        let list: Vec<&str> = filters.iter().map(String::as_str).collect();
        let unsub = Packet::Unsubscribe(Unsubscribe { packet_id: id, filters: UnsubscribeFilters::List(&list) });
        let rm::Packet::Unsubscribe(u) = ours_to_theirs(&unsub) else { panic!("not an unsubscribe") };
        prop_assert_eq!(&u.topics, &filters);
        theirs_to_ours(&rm::Packet::Unsubscribe(u), |back| assert_eq!(back, unsub));

        let connect = Packet::Connect(Connect {
            protocol: ProtocolLevel::V311,
            clean_session: clean,
            keep_alive,
            client_id: &client_id,
            will: will.as_ref().map(|(t, p, q, r)| Will { topic: t, payload: p, qos: *q, retain: *r }),
            username: login.as_ref().map(|(u, _)| u.as_str()),
            password: login.as_ref().map(|(_, p)| p.as_bytes()),
        });
        let rm::Packet::Connect(c) = ours_to_theirs(&connect) else { panic!("not a connect") };
        prop_assert_eq!((c.keep_alive, c.client_id.as_str(), c.clean_session), (keep_alive, client_id.as_str(), clean));
        prop_assert_eq!(c.login.as_ref().map(|l| (l.username.clone(), l.password.clone())), login.clone());
        prop_assert_eq!(c.last_will.as_ref().map(|w| (w.topic.clone(), w.message.to_vec())), will.as_ref().map(|w| (w.0.clone(), w.1.clone())));
        theirs_to_ours(&rm::Packet::Connect(c), |back| assert_eq!(back, connect));
    }
}
