pub mod fake_broker;
pub mod proxy;

use test_support::{Config, Mosquitto};

/// A Mosquitto of the test's own on a free 127.0.0.1 port (see `test-support`), logging every packet: some tests
/// read its log.
#[allow(dead_code)]
pub fn mosquitto(config: Config) -> Mosquitto {
    Mosquitto::start(
        "resilient-mqtt",
        &Config {
            log_all: true,
            ..config
        },
    )
    .expect("start mosquitto")
}
