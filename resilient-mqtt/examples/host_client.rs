//! A host client that subscribes to a filter, prints what arrives (acking QoS 1 after printing) and publishes a
//! line of standard input per publication.
//!
//! ```text
//! cargo run -p resilient-mqtt --features std --example host_client -- 127.0.0.1:1883 'demo/#' demo/in
//! ```

use std::io::BufRead;
use std::time::Duration;

use resilient_mqtt::host::{tcp_connector, HostClient, OwnedEvent};
use resilient_mqtt::{Options, QoS};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (addr, filter, topic) = match args.as_slice() {
        [a, f, t] => (a.clone(), f.clone(), t.clone()),
        _ => {
            eprintln!("usage: host_client BROKER_ADDR FILTER TOPIC   (e.g. 127.0.0.1:1883 'demo/#' demo/in)");
            std::process::exit(2);
        }
    };
    let Ok(addr) = addr.parse() else {
        eprintln!("not an address: {addr}");
        std::process::exit(2);
    };
    let mut options = Options::new("resilient-mqtt-example");
    options.keep_alive_secs = 10;
    let client = match HostClient::spawn(&options, tcp_connector(addr, Duration::from_secs(2))) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("bad options: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = client.subscribe(0, &[(&filter, QoS::AtLeastOnce)]) {
        eprintln!("subscribe refused: {e}");
        std::process::exit(2);
    }
    let client = std::sync::Arc::new(client);
    let printer = client.clone();
    std::thread::spawn(move || loop {
        match printer.next_event(Duration::from_secs(3600)) {
            Some(OwnedEvent::Message(m)) => {
                println!("{} {}", m.topic, String::from_utf8_lossy(&m.payload));
                if let Some(id) = m.packet_id {
                    let _ = printer.ack(id);
                }
            }
            Some(other) => eprintln!("event: {other:?}"),
            None => {}
        }
    });
    for (token, line) in std::io::stdin().lock().lines().map_while(Result::ok).enumerate() {
        if let Err(e) = client.publish(token as u32 + 1, &topic, line.as_bytes(), QoS::AtLeastOnce, false) {
            eprintln!("not queued: {e}");
        }
    }
    client.disconnect();
    std::thread::sleep(Duration::from_millis(200));
}
