//! What the application tells the driver: the bridge's configuration and the driver's own timing.

use embassy_time::Duration;
use protocol::{QoS, Will};

/// Everything the bridge needs (sent after every bridge start) and the watchdog's timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config<'a> {
    /// WiFi network name.
    pub wifi_ssid: &'a str,
    /// WiFi passphrase (empty for an open network).
    pub wifi_password: &'a str,
    /// Broker host name or address.
    pub broker_host: &'a str,
    /// Broker TCP port.
    pub broker_port: u16,
    /// MQTT client identifier.
    pub client_id: &'a str,
    /// MQTT user name.
    pub username: Option<&'a str>,
    /// MQTT password.
    pub password: Option<&'a [u8]>,
    /// MQTT keepalive in seconds.
    pub keepalive_s: u16,
    /// MQTT clean session.
    pub clean_session: bool,
    /// Last will.
    pub will: Option<Will<'a>>,
    /// Ask the bridge for TLS to the broker.
    pub tls: bool,
    /// When the bridge has been silent this long, the driver pings it. Not while a message waits for the
    /// application: that message holds the link, so the bridge could not answer.
    pub watchdog: Duration,
    /// A ping unanswered this long is sent once more (the ping or its answer may have been lost on the link); a
    /// second one unanswered as long means the bridge is stuck: the driver resets it.
    pub ping_timeout: Duration,
    /// How long RST is held low.
    pub reset_pulse: Duration,
    /// How long a reset bridge may take to say it is ready.
    pub ready_timeout: Duration,
    /// Longest pause between two reset attempts of a bridge that does not answer (the pauses double up to it).
    pub max_reset_backoff: Duration,
    /// How often the driver looks for answers that are late: a request still unanswered at two of these checks
    /// (between one and two of these after it was sent) is taken for lost on the link and sent again under its id
    /// (a QoS 0 publication ends with [`Error::Unconfirmed`](crate::Error::Unconfirmed) instead). The bridge
    /// recognises a request it still works on, so a slow broker costs only the copies.
    pub answer_timeout: Duration,
}

impl<'a> Config<'a> {
    /// A configuration with the usual defaults: no credentials, keepalive 30 s, persistent session, no will, no
    /// TLS, watchdog 2 s, ping timeout 1 s, reset pulse 100 ms, ready timeout 5 s, reset backoff up to 60 s, answers
    /// checked every 5 s.
    pub const fn new(
        wifi_ssid: &'a str,
        wifi_password: &'a str,
        broker_host: &'a str,
        broker_port: u16,
        client_id: &'a str,
    ) -> Self {
        Config {
            wifi_ssid,
            wifi_password,
            broker_host,
            broker_port,
            client_id,
            username: None,
            password: None,
            keepalive_s: 30,
            clean_session: false,
            will: None,
            tls: false,
            watchdog: Duration::from_secs(2),
            ping_timeout: Duration::from_secs(1),
            reset_pulse: Duration::from_millis(100),
            ready_timeout: Duration::from_secs(5),
            max_reset_backoff: Duration::from_secs(60),
            answer_timeout: Duration::from_secs(5),
        }
    }

    /// The configure request for the bridge, for a target that accepts messages of up to `max_message` bytes.
    // Out of line, and the whole request (not its configuration, then wrapped): the field by field copy, inlined in
    // `Core::flush`, spilled registers there, which costs 28 bytes of flash and 64 of flush's stack frame on the
    // RP2040 (on the STM32F405 it is a wash). The fields are written in this order, roughly the reverse of their
    // place in memory, for the compiler copies them in that order: in the order of the declaration it loaded every
    // field first, into stack slots, and stored them after (78 bytes more on the STM32F405, 48 on the RP2040).
    #[inline(never)]
    pub(crate) fn request(&self, max_message: u16) -> protocol::Request<'a> {
        protocol::Request::Configure(protocol::Config {
            version: protocol::PROTOCOL_VERSION,
            max_message,
            broker_port: self.broker_port,
            keepalive_s: self.keepalive_s,
            clean_session: self.clean_session,
            tls: self.tls,
            will: self.will,
            client_id: self.client_id,
            broker_host: self.broker_host,
            wifi_password: self.wifi_password,
            wifi_ssid: self.wifi_ssid,
            password: self.password,
            username: self.username,
        })
    }
}

/// QoS of a will, for [`Config::will`].
pub const fn will<'a>(topic: &'a str, payload: &'a [u8], qos: QoS, retain: bool) -> Will<'a> {
    Will {
        topic,
        payload,
        qos,
        retain,
    }
}
