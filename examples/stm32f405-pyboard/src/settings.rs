//! The settings the programs share (`src/main.rs` and `src/bin/superloop.rs`): edit the WiFi network and the
//! broker here.

use embassy_time::Duration;
use target_driver::Config;

// ---- Edit these: your WiFi network and MQTT broker (placeholders). ----
const WIFI_SSID: &str = "your-wifi";
const WIFI_PASSWORD: &str = "your-wifi-password";
const BROKER_HOST: &str = "broker.example.com";
const BROKER_PORT: u16 = 1883;
const CLIENT_ID: &str = "pyboard-1";
// ---- End of settings. ----

/// Where the counter goes, once a second.
pub const TOPIC_COUNTER: &str = "pyboard/counter";
/// Payload `on` or `off` switches the LED.
pub const TOPIC_LED: &str = "pyboard/led";
pub const PUBLISH_EVERY: Duration = Duration::from_secs(1);

/// The driver's defaults: keepalive 30 s, persistent session (the broker keeps the subscription and queued QoS 1
/// messages across reconnections), no TLS, no will; watchdog 2 s. Change fields here for other settings.
pub const CONFIG: Config<'static> = Config::new(WIFI_SSID, WIFI_PASSWORD, BROKER_HOST, BROKER_PORT, CLIENT_ID);

/// `n` in decimal ASCII, written at the end of `buf` (without `core::fmt`, which would cost kilobytes).
pub fn decimal(mut n: u32, buf: &mut [u8; 10]) -> &[u8] {
    let mut start = buf.len();
    loop {
        start -= 1;
        buf[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[start..];
        }
    }
}
