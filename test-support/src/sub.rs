//! A `mosquitto_sub` of the caller's own, its output read line by line.

use std::io::{self, BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

/// `mosquitto_sub` on a broker at 127.0.0.1; each line it prints arrives on [`MosquittoSub::lines`]. Killed when
/// dropped.
#[derive(Debug)]
pub struct MosquittoSub {
    child: Child,
    /// The lines `mosquitto_sub` prints, in order, as it prints them.
    pub lines: Receiver<String>,
}

impl MosquittoSub {
    /// Runs `mosquitto_sub -h 127.0.0.1 -p port -t filter -q qos -F format` with `extra` arguments after those.
    pub fn start(port: u16, filter: &str, qos: u8, format: &str, extra: &[&str]) -> io::Result<MosquittoSub> {
        let mut child = Command::new("mosquitto_sub")
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-t", filter])
            .args(["-q", &qos.to_string(), "-F", format])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let out = child
            .stdout
            .take()
            .ok_or_else(|| io::Error::other("mosquitto_sub has no stdout"))?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Ok(MosquittoSub { child, lines })
    }

    /// Waits until the subscription is in place: publishes `sentinel` to `topic` (`mosquitto_pub`, QoS 1) every
    /// 300 ms until a line for which `is_sentinel` holds comes back, then drops what follows within 50 ms (more
    /// copies of the sentinel). `false` if none came back within `timeout`.
    pub fn wait_ready(&self, port: u16, topic: &str, timeout: Duration, is_sentinel: impl Fn(&str) -> bool) -> bool {
        let start = Instant::now();
        while start.elapsed() < timeout {
            let _ = Command::new("mosquitto_pub")
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &port.to_string(),
                    "-t",
                    topic,
                    "-q",
                    "1",
                    "-m",
                    "sentinel",
                ])
                .status();
            if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(300)) {
                if is_sentinel(&line) {
                    while self.lines.recv_timeout(Duration::from_millis(50)).is_ok() {}
                    return true;
                }
            }
        }
        false
    }
}

impl Drop for MosquittoSub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
