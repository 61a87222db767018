//! A minimal SNTP client (RFC 4330): one 48-byte request over UDP, the server's transmit time from the answer.
//!
//! Accuracy is what the link needs (the target asks for the time in milliseconds): half the round trip is added
//! to the server's time; there is no filtering over several servers.

use embassy_net::dns::DnsQueryType;
use embassy_net::udp::UdpSocket;
use embassy_net::{IpAddress, Stack};
use embassy_time::{with_timeout, Duration, Instant};

/// The NTP servers asked, one at a time (the pool answers with a different server at each look-up).
pub const SERVER: &str = "pool.ntp.org";
/// The NTP port.
const PORT: u16 = 123;
/// Seconds from 1900-01-01 (NTP's era 0) to 1970-01-01.
const UNIX_OFFSET: u64 = 2_208_988_800;
/// How long one answer may take.
const TIMEOUT: Duration = Duration::from_secs(3);

/// Why a query gave no time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SntpError {
    /// The server's name did not resolve.
    Dns,
    /// The request could not be sent.
    Send,
    /// No valid answer in time.
    Timeout,
    /// The server answered "kiss of death" (stratum 0) or an unsynchronised clock.
    Unsynchronised,
}

/// Asks [`SERVER`] once. Returns the local instant of the answer and the Unix time then, in milliseconds.
/// `cookie` (any changing number) goes out as the request's transmit time and must come back as the origin time.
pub async fn query(stack: Stack<'_>, socket: &UdpSocket<'_>, cookie: u64) -> Result<(Instant, u64), SntpError> {
    let addrs = match with_timeout(TIMEOUT, stack.dns_query(SERVER, DnsQueryType::A)).await {
        Ok(Ok(a)) => a,
        _ => return Err(SntpError::Dns),
    };
    let server = match addrs.first() {
        Some(a @ IpAddress::Ipv4(_)) => *a,
        _ => return Err(SntpError::Dns),
    };
    let mut packet = [0u8; 48];
    packet[0] = 0x23; // leap indicator 0, version 4, mode 3 (client)
    packet[40..48].copy_from_slice(&cookie.to_be_bytes());
    let sent = Instant::now();
    socket
        .send_to(&packet, (server, PORT))
        .await
        .map_err(|_| SntpError::Send)?;
    let deadline = sent + TIMEOUT;
    loop {
        let mut answer = [0u8; 64];
        let left = deadline.saturating_duration_since(Instant::now());
        let (n, meta) = match with_timeout(left, socket.recv_from(&mut answer)).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => continue, // truncated datagram: not ours
            Err(_) => return Err(SntpError::Timeout),
        };
        let received = Instant::now();
        let from_server = meta.endpoint.port == PORT;
        if n < 48 || !from_server || answer[0] & 0x07 != 4 || answer[24..32] != cookie.to_be_bytes() {
            continue; // not an answer to this request
        }
        if answer[1] == 0 || answer[0] >> 6 == 3 {
            return Err(SntpError::Unsynchronised);
        }
        let secs = u64::from(u32::from_be_bytes([answer[40], answer[41], answer[42], answer[43]]));
        let frac = u64::from(u32::from_be_bytes([answer[44], answer[45], answer[46], answer[47]]));
        // Era 1 starts in 2036: a small seconds count is from then, not from 1900.
        let secs = if secs < UNIX_OFFSET { secs + (1 << 32) } else { secs };
        let server_ms = (secs - UNIX_OFFSET) * 1000 + ((frac * 1000) >> 32);
        let half_rtt = (received - sent).as_millis() / 2;
        return Ok((received, server_ms + half_rtt));
    }
}
