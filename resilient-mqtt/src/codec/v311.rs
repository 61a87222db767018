//! The MQTT 3.1.1 wire format: [`decode`] and [`encode`].

use super::*;
use crate::topic;

/// The largest remaining length MQTT can express.
pub const MAX_REMAINING_LENGTH: usize = 268_435_455;

/// Decodes one packet from the start of `buf`.
///
/// `Ok(None)` means `buf` holds only the start of a packet (read more bytes); `Ok(Some((packet, n)))` means the
/// packet took the first `n` bytes. A packet whose total length exceeds `max_packet_size` is
/// [`DecodeError::TooLarge`] as soon as its header is read, before its body has arrived.
pub fn decode(buf: &[u8], max_packet_size: usize) -> Result<Option<(Packet<'_>, usize)>, DecodeError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let kind = first >> 4;
    let flags = first & 0x0f;
    if kind == 0 || kind == 15 {
        return Err(DecodeError::InvalidPacketType(kind));
    }
    let mut remaining: usize = 0;
    let mut header_len = 1;
    loop {
        if header_len > 4 {
            return Err(DecodeError::MalformedLength);
        }
        let Some(&b) = buf.get(header_len) else {
            return Ok(None);
        };
        remaining |= usize::from(b & 0x7f) << (7 * (header_len - 1));
        header_len += 1;
        if b & 0x80 == 0 {
            break;
        }
    }
    let total = header_len + remaining;
    if total > max_packet_size {
        return Err(DecodeError::TooLarge);
    }
    let Some(body) = buf.get(header_len..total) else {
        return Ok(None);
    };
    let packet = decode_body(kind, flags, body)?;
    Ok(Some((packet, total)))
}

fn expect_flags(flags: u8, want: u8) -> Result<(), DecodeError> {
    if flags == want {
        Ok(())
    } else {
        Err(DecodeError::InvalidFlags)
    }
}

fn decode_body(kind: u8, flags: u8, body: &[u8]) -> Result<Packet<'_>, DecodeError> {
    match kind {
        1 => {
            expect_flags(flags, 0)?;
            decode_connect(body).map(Packet::Connect)
        }
        2 => {
            expect_flags(flags, 0)?;
            let [ack_flags, code] = body else {
                return Err(if body.len() < 2 {
                    DecodeError::Truncated
                } else {
                    DecodeError::TrailingBytes
                });
            };
            if ack_flags & 0xfe != 0 || (*ack_flags == 1 && *code != 0) {
                return Err(DecodeError::InvalidProtocol);
            }
            Ok(Packet::ConnAck(ConnAck {
                session_present: *ack_flags == 1,
                code: ConnectReturnCode::from_u8(*code),
            }))
        }
        3 => decode_publish(flags, body).map(Packet::Publish),
        4 => id_only(flags, 0, body).map(Packet::PubAck),
        5 => id_only(flags, 0, body).map(Packet::PubRec),
        6 => id_only(flags, 2, body).map(Packet::PubRel),
        7 => id_only(flags, 0, body).map(Packet::PubComp),
        8 => {
            expect_flags(flags, 2)?;
            let (packet_id, rest) = read_id(body)?;
            check_filters(rest, true)?;
            Ok(Packet::Subscribe(Subscribe {
                packet_id,
                filters: SubscribeFilters::Encoded(rest),
            }))
        }
        9 => {
            expect_flags(flags, 0)?;
            let (packet_id, codes) = read_id(body)?;
            if codes.is_empty() {
                return Err(DecodeError::Empty);
            }
            Ok(Packet::SubAck(SubAck { packet_id, codes }))
        }
        10 => {
            expect_flags(flags, 2)?;
            let (packet_id, rest) = read_id(body)?;
            check_filters(rest, false)?;
            Ok(Packet::Unsubscribe(Unsubscribe {
                packet_id,
                filters: UnsubscribeFilters::Encoded(rest),
            }))
        }
        11 => id_only(flags, 0, body).map(Packet::UnsubAck),
        12..=14 => {
            expect_flags(flags, 0)?;
            if !body.is_empty() {
                return Err(DecodeError::TrailingBytes);
            }
            Ok(match kind {
                12 => Packet::PingReq,
                13 => Packet::PingResp,
                _ => Packet::Disconnect,
            })
        }
        other => Err(DecodeError::InvalidPacketType(other)),
    }
}

fn id_only(flags: u8, want: u8, body: &[u8]) -> Result<u16, DecodeError> {
    expect_flags(flags, want)?;
    let (id, rest) = read_id(body)?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes);
    }
    Ok(id)
}

fn read_u16(buf: &[u8]) -> Result<(u16, &[u8]), DecodeError> {
    match buf {
        [a, b, rest @ ..] => Ok((u16::from_be_bytes([*a, *b]), rest)),
        _ => Err(DecodeError::Truncated),
    }
}

/// Checks the payload of a SUBSCRIBE (`with_qos`: each filter followed by its QoS byte) or an UNSUBSCRIBE: at
/// least one filter, each a valid filter.
fn check_filters(mut r: &[u8], with_qos: bool) -> Result<(), DecodeError> {
    if r.is_empty() {
        return Err(DecodeError::Empty);
    }
    while !r.is_empty() {
        let (filter, mut tail) = read_str(r)?;
        topic::validate_filter(filter).map_err(|_| DecodeError::InvalidTopic)?;
        if with_qos {
            let (&q, after) = tail.split_first().ok_or(DecodeError::Truncated)?;
            if q & 0xfc != 0 || QoS::from_bits(q).is_none() {
                return Err(DecodeError::InvalidQoS);
            }
            tail = after;
        }
        r = tail;
    }
    Ok(())
}

fn read_id(buf: &[u8]) -> Result<(u16, &[u8]), DecodeError> {
    let (id, rest) = read_u16(buf)?;
    if id == 0 {
        return Err(DecodeError::ZeroPacketId);
    }
    Ok((id, rest))
}

fn read_bytes(buf: &[u8]) -> Result<(&[u8], &[u8]), DecodeError> {
    let (len, rest) = read_u16(buf)?;
    let len = usize::from(len);
    if rest.len() < len {
        return Err(DecodeError::Truncated);
    }
    Ok(rest.split_at(len))
}

/// Reads a length-prefixed MQTT UTF-8 string (no U+0000) from the start of `buf`.
pub(crate) fn read_str(buf: &[u8]) -> Result<(&str, &[u8]), DecodeError> {
    let (bytes, rest) = read_bytes(buf)?;
    let s = core::str::from_utf8(bytes).map_err(|_| DecodeError::InvalidUtf8)?;
    if s.contains('\0') {
        return Err(DecodeError::InvalidUtf8);
    }
    Ok((s, rest))
}

fn decode_publish(flags: u8, body: &[u8]) -> Result<Publish<'_>, DecodeError> {
    let qos = QoS::from_bits((flags >> 1) & 3).ok_or(DecodeError::InvalidQoS)?;
    let dup = flags & 0x08 != 0;
    if qos == QoS::AtMostOnce && dup {
        return Err(DecodeError::InvalidFlags);
    }
    let (topic, rest) = read_str(body)?;
    topic::validate_topic(topic).map_err(|_| DecodeError::InvalidTopic)?;
    let (packet_id, payload) = if qos == QoS::AtMostOnce {
        (None, rest)
    } else {
        let (id, rest) = read_id(rest)?;
        (Some(id), rest)
    };
    Ok(Publish {
        dup,
        qos,
        retain: flags & 1 != 0,
        topic,
        packet_id,
        payload,
    })
}

fn decode_connect(body: &[u8]) -> Result<Connect<'_>, DecodeError> {
    let (name, rest) = read_str(body)?;
    if name != "MQTT" {
        return Err(DecodeError::InvalidProtocol);
    }
    let [level, cflags, rest @ ..] = rest else {
        return Err(DecodeError::Truncated);
    };
    let protocol = if *level == 4 {
        ProtocolLevel::V311
    } else {
        ProtocolLevel::Unknown(*level)
    };
    if cflags & 1 != 0 {
        return Err(DecodeError::InvalidProtocol);
    }
    let (keep_alive, rest) = read_u16(rest)?;
    let (client_id, mut rest) = read_str(rest)?;
    let will_flag = cflags & 0x04 != 0;
    let will_qos = QoS::from_bits((cflags >> 3) & 3).ok_or(DecodeError::InvalidQoS)?;
    let will_retain = cflags & 0x20 != 0;
    let will = if will_flag {
        let (topic, r) = read_str(rest)?;
        topic::validate_topic(topic).map_err(|_| DecodeError::InvalidTopic)?;
        let (payload, r) = read_bytes(r)?;
        rest = r;
        Some(Will {
            topic,
            payload,
            qos: will_qos,
            retain: will_retain,
        })
    } else {
        if will_qos != QoS::AtMostOnce || will_retain {
            return Err(DecodeError::InvalidFlags);
        }
        None
    };
    let username = if cflags & 0x80 != 0 {
        let (u, r) = read_str(rest)?;
        rest = r;
        Some(u)
    } else {
        None
    };
    let password = if cflags & 0x40 != 0 {
        let (p, r) = read_bytes(rest)?;
        rest = r;
        Some(p)
    } else {
        None
    };
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes);
    }
    Ok(Connect {
        protocol,
        clean_session: cflags & 0x02 != 0,
        keep_alive,
        client_id,
        will,
        username,
        password,
    })
}

/// A cursor over an output buffer.
struct Writer<'b> {
    buf: &'b mut [u8],
    pos: usize,
}

impl Writer<'_> {
    fn put(&mut self, bytes: &[u8]) -> Result<(), EncodeError> {
        let end = self.pos + bytes.len();
        let dst = self.buf.get_mut(self.pos..end).ok_or(EncodeError::BufferTooSmall)?;
        dst.copy_from_slice(bytes);
        self.pos = end;
        Ok(())
    }
    fn u8(&mut self, v: u8) -> Result<(), EncodeError> {
        self.put(&[v])
    }
    fn u16(&mut self, v: u16) -> Result<(), EncodeError> {
        self.put(&v.to_be_bytes())
    }
    fn bytes(&mut self, b: &[u8]) -> Result<(), EncodeError> {
        let len = u16::try_from(b.len()).map_err(|_| EncodeError::FieldTooLong)?;
        self.u16(len)?;
        self.put(b)
    }
}

fn field_len(b: &[u8]) -> Result<usize, EncodeError> {
    if b.len() > usize::from(u16::MAX) {
        return Err(EncodeError::FieldTooLong);
    }
    Ok(2 + b.len())
}

/// Length of the body (after the fixed header) of `packet`.
fn body_len(packet: &Packet<'_>) -> Result<usize, EncodeError> {
    Ok(match packet {
        Packet::Connect(c) => {
            let mut n = 10 + field_len(c.client_id.as_bytes())?;
            if let Some(w) = &c.will {
                n += field_len(w.topic.as_bytes())? + field_len(w.payload)?;
            }
            if let Some(u) = c.username {
                n += field_len(u.as_bytes())?;
            }
            if let Some(p) = c.password {
                n += field_len(p)?;
            }
            n
        }
        Packet::ConnAck(_) => 2,
        Packet::Publish(p) => {
            field_len(p.topic.as_bytes())? + if p.qos == QoS::AtMostOnce { 0 } else { 2 } + p.payload.len()
        }
        Packet::PubAck(_) | Packet::PubRec(_) | Packet::PubRel(_) | Packet::PubComp(_) | Packet::UnsubAck(_) => 2,
        Packet::Subscribe(s) => {
            let mut n = 2;
            for f in s.filters.iter() {
                n += field_len(f.filter.as_bytes())? + 1;
            }
            n
        }
        Packet::SubAck(s) => 2 + s.codes.len(),
        Packet::Unsubscribe(u) => {
            let mut n = 2;
            for f in u.filters.iter() {
                n += field_len(f.as_bytes())?;
            }
            n
        }
        Packet::PingReq | Packet::PingResp | Packet::Disconnect => 0,
    })
}

fn varint_len(v: usize) -> usize {
    match v {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// The number of bytes [`encode`] writes for `packet`.
pub fn encoded_len(packet: &Packet<'_>) -> Result<usize, EncodeError> {
    let body = body_len(packet)?;
    if body > MAX_REMAINING_LENGTH {
        return Err(EncodeError::PacketTooLong);
    }
    Ok(1 + varint_len(body) + body)
}

/// Encodes `packet` at the start of `buf` and returns the number of bytes written.
///
/// Nothing is promised about `buf`'s content after an error.
pub fn encode(packet: &Packet<'_>, buf: &mut [u8]) -> Result<usize, EncodeError> {
    let body = body_len(packet)?;
    if body > MAX_REMAINING_LENGTH {
        return Err(EncodeError::PacketTooLong);
    }
    let first: u8 = match packet {
        Packet::Connect(_) => 0x10,
        Packet::ConnAck(_) => 0x20,
        Packet::Publish(p) => {
            if (p.qos == QoS::AtMostOnce) != p.packet_id.is_none() || p.packet_id == Some(0) {
                return Err(EncodeError::Invalid);
            }
            0x30 | (u8::from(p.dup) << 3) | ((p.qos as u8) << 1) | u8::from(p.retain)
        }
        Packet::PubAck(_) => 0x40,
        Packet::PubRec(_) => 0x50,
        Packet::PubRel(_) => 0x62,
        Packet::PubComp(_) => 0x70,
        Packet::Subscribe(_) => 0x82,
        Packet::SubAck(_) => 0x90,
        Packet::Unsubscribe(_) => 0xa2,
        Packet::UnsubAck(_) => 0xb0,
        Packet::PingReq => 0xc0,
        Packet::PingResp => 0xd0,
        Packet::Disconnect => 0xe0,
    };
    let mut w = Writer { buf, pos: 0 };
    w.u8(first)?;
    let mut len = body;
    loop {
        let mut b = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            b |= 0x80;
        }
        w.u8(b)?;
        if len == 0 {
            break;
        }
    }
    match packet {
        Packet::Connect(c) => {
            w.bytes(b"MQTT")?;
            // A decoded CONNECT of another level encodes back to that level.
            w.u8(match c.protocol {
                ProtocolLevel::V311 => 4,
                ProtocolLevel::Unknown(level) => level,
            })?;
            let mut flags = u8::from(c.clean_session) << 1;
            if let Some(will) = &c.will {
                flags |= 0x04 | ((will.qos as u8) << 3) | (u8::from(will.retain) << 5);
            }
            if c.password.is_some() {
                flags |= 0x40;
            }
            if c.username.is_some() {
                flags |= 0x80;
            }
            w.u8(flags)?;
            w.u16(c.keep_alive)?;
            w.bytes(c.client_id.as_bytes())?;
            if let Some(will) = &c.will {
                w.bytes(will.topic.as_bytes())?;
                w.bytes(will.payload)?;
            }
            if let Some(u) = c.username {
                w.bytes(u.as_bytes())?;
            }
            if let Some(p) = c.password {
                w.bytes(p)?;
            }
        }
        Packet::ConnAck(a) => {
            w.u8(u8::from(a.session_present))?;
            w.u8(a.code.to_u8())?;
        }
        Packet::Publish(p) => {
            w.bytes(p.topic.as_bytes())?;
            if let Some(id) = p.packet_id {
                w.u16(id)?;
            }
            w.put(p.payload)?;
        }
        Packet::PubAck(id) | Packet::PubRec(id) | Packet::PubRel(id) | Packet::PubComp(id) | Packet::UnsubAck(id) => {
            if *id == 0 {
                return Err(EncodeError::Invalid);
            }
            w.u16(*id)?;
        }
        Packet::Subscribe(s) => {
            if s.packet_id == 0 || s.filters.iter().next().is_none() {
                return Err(EncodeError::Invalid);
            }
            w.u16(s.packet_id)?;
            for f in s.filters.iter() {
                w.bytes(f.filter.as_bytes())?;
                w.u8(f.qos as u8)?;
            }
        }
        Packet::SubAck(s) => {
            if s.packet_id == 0 || s.codes.is_empty() {
                return Err(EncodeError::Invalid);
            }
            w.u16(s.packet_id)?;
            w.put(s.codes)?;
        }
        Packet::Unsubscribe(u) => {
            if u.packet_id == 0 || u.filters.iter().next().is_none() {
                return Err(EncodeError::Invalid);
            }
            w.u16(u.packet_id)?;
            for f in u.filters.iter() {
                w.bytes(f.as_bytes())?;
            }
        }
        Packet::PingReq | Packet::PingResp | Packet::Disconnect => {}
    }
    Ok(w.pos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribe_and_unsubscribe_payloads_are_checked_filter_by_filter() {
        // SUBSCRIBE (0x82) and UNSUBSCRIBE (0xa2), packet id 1, then the payload.
        let packet = |kind: u8, payload: &[u8]| {
            let mut p = vec![kind, (2 + payload.len()) as u8, 0x00, 0x01];
            p.extend_from_slice(payload);
            p
        };
        // What was decoded: the packet's kind, or the error.
        let kind = |bytes: Vec<u8>| match decode(&bytes, 100) {
            Ok(Some((Packet::Subscribe(_), _))) => Ok("subscribe"),
            Ok(Some((Packet::Unsubscribe(_), _))) => Ok("unsubscribe"),
            Ok(other) => panic!("{other:?}"),
            Err(e) => Err(e),
        };
        let sub = |payload: &[u8]| kind(packet(0x82, payload));
        let unsub = |payload: &[u8]| kind(packet(0xa2, payload));
        assert_eq!(sub(&[0, 3, b'a', b'/', b'+', 1, 0, 1, b'#', 0]), Ok("subscribe"));
        assert_eq!(sub(&[]), Err(DecodeError::Empty));
        assert_eq!(sub(&[0, 1, b'a']), Err(DecodeError::Truncated));
        assert_eq!(sub(&[0, 1, b'a', 3]), Err(DecodeError::InvalidQoS));
        assert_eq!(sub(&[0, 1, b'a', 0x41]), Err(DecodeError::InvalidQoS));
        assert_eq!(sub(&[0, 2, b'a', b'#', 0]), Err(DecodeError::InvalidTopic));
        assert_eq!(unsub(&[0, 3, b'a', b'/', b'+', 0, 1, b'#']), Ok("unsubscribe"));
        assert_eq!(unsub(&[]), Err(DecodeError::Empty));
        assert_eq!(unsub(&[0, 2, b'+', b'a']), Err(DecodeError::InvalidTopic));
        // An UNSUBSCRIBE carries no QoS bytes: a stray byte is read as the next filter's length.
        assert_eq!(unsub(&[0, 1, b'a', 0]), Err(DecodeError::Truncated));
    }

    #[test]
    fn rejects_oversize_packet_from_its_header_alone() {
        // PUBLISH announcing 200 bytes, only the header present.
        assert_eq!(decode(&[0x30, 0xc8, 0x01], 100), Err(DecodeError::TooLarge));
    }

    #[test]
    fn a_five_byte_remaining_length_is_malformed() {
        assert_eq!(
            decode(&[0x30, 0xff, 0xff, 0xff, 0xff, 0x01], usize::MAX),
            Err(DecodeError::MalformedLength)
        );
    }

    #[test]
    fn partial_packet_asks_for_more() {
        assert_eq!(decode(&[0x20, 0x02, 0x00], 100), Ok(None));
        assert_eq!(decode(&[], 100), Ok(None));
    }

    #[test]
    fn wildcard_in_incoming_publish_topic_is_rejected() {
        let bytes = [0x30, 0x05, 0x00, 0x03, b'a', b'/', b'#'];
        assert_eq!(decode(&bytes, 100), Err(DecodeError::InvalidTopic));
    }

    #[test]
    fn zero_packet_id_in_qos1_publish_is_rejected() {
        let bytes = [0x32, 0x05, 0x00, 0x01, b'a', 0x00, 0x00];
        assert_eq!(decode(&bytes, 100), Err(DecodeError::ZeroPacketId));
    }

    #[test]
    fn connack_with_session_present_and_refusal_is_invalid() {
        assert_eq!(
            decode(&[0x20, 0x02, 0x01, 0x05], 100),
            Err(DecodeError::InvalidProtocol)
        );
        let ok = decode(&[0x20, 0x02, 0x00, 0x05], 100).unwrap().unwrap().0;
        assert_eq!(
            ok,
            Packet::ConnAck(ConnAck {
                session_present: false,
                code: ConnectReturnCode::NotAuthorized
            })
        );
    }

    #[test]
    fn reserved_flags_are_rejected() {
        assert_eq!(decode(&[0x41, 0x02, 0x00, 0x01], 100), Err(DecodeError::InvalidFlags));
        assert_eq!(decode(&[0xd0, 0x01, 0x00], 100), Err(DecodeError::TrailingBytes));
        assert_eq!(decode(&[0xf0, 0x00], 100), Err(DecodeError::InvalidPacketType(15)));
    }

    #[test]
    fn encodes_the_known_bytes_of_a_qos1_publish() {
        let p = Packet::Publish(Publish {
            dup: true,
            qos: QoS::AtLeastOnce,
            retain: true,
            topic: "a/b",
            packet_id: Some(0x0102),
            payload: b"hi",
        });
        let mut buf = [0u8; 32];
        let n = encode(&p, &mut buf).unwrap();
        assert_eq!(&buf[..n], &[0x3b, 9, 0, 3, b'a', b'/', b'b', 1, 2, b'h', b'i']);
        assert_eq!(encoded_len(&p), Ok(n));
        assert_eq!(encode(&p, &mut buf[..5]), Err(EncodeError::BufferTooSmall));
    }
}
