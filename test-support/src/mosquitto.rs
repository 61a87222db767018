//! A Mosquitto broker of the caller's own on a free 127.0.0.1 port.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{free_port, wait_listening, TempDir};

/// Where Debian's `mosquitto` package puts the broker.
pub const MOSQUITTO: &str = "/usr/sbin/mosquitto";

/// How long a start or restart may take before it counts as failed.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// The broker's log file, in its directory.
const LOG: &str = "mosquitto.log";

/// What the broker's configuration file says besides its listener (127.0.0.1 on the broker's port), its log file
/// and `user root` (so that it can run as root without dropping to a `mosquitto` user).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Keep sessions and queued messages in the broker's directory, saved at every change (`autosave_on_changes`),
    /// so that they survive a SIGKILL. That costs a write per QoS 1 message.
    pub persistence: bool,
    /// Only this user name and password may connect (`allow_anonymous false` and a `mosquitto_passwd` file);
    /// `None`: anyone may, anonymously.
    pub credentials: Option<(String, String)>,
    /// `max_queued_messages`: how many messages Mosquitto keeps for one client before it drops more.
    pub max_queued_messages: u32,
    /// `log_type all`: every packet in the log (for tests that read it). Otherwise Mosquitto's default: errors,
    /// warnings, notices and information.
    pub log_all: bool,
}

impl Default for Config {
    /// No persistence, anonymous clients, 10 000 queued messages, the default log.
    fn default() -> Self {
        Config {
            persistence: false,
            credentials: None,
            max_queued_messages: 10_000,
            log_all: false,
        }
    }
}

/// `/usr/sbin/mosquitto` as a child process, listening on `127.0.0.1:port()`, with its configuration, log and
/// persistence file in a [`TempDir`] of its own. Dropping it kills the broker and removes the directory.
#[derive(Debug)]
pub struct Mosquitto {
    port: u16,
    conf: PathBuf,
    child: Option<Child>,
    /// Declared last: removed after the broker is killed.
    dir: TempDir,
}

impl Mosquitto {
    /// Starts a broker on a free port, in a directory named after `tag`; returns once it accepts connections
    /// (10 s at the most).
    pub fn start(tag: &str, config: &Config) -> io::Result<Mosquitto> {
        if !Path::new(MOSQUITTO).exists() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "{MOSQUITTO} is missing: install the Debian packages mosquitto and mosquitto-clients \
                     (scripts/test.sh does)"
                ),
            ));
        }
        let port = free_port()?;
        let dir = TempDir::new(&format!("mosquitto-{tag}"))?;
        let mut broker = Mosquitto {
            port,
            conf: dir.join("mosquitto.conf"),
            child: None,
            dir,
        };
        broker.configure(config)?;
        broker.spawn()?;
        Ok(broker)
    }

    /// Writes the configuration the next [`restart`](Self::restart) uses (the running broker keeps its own). The
    /// port and the directory, with any persistence file in it, stay.
    pub fn configure(&mut self, config: &Config) -> io::Result<()> {
        let mut text = format!(
            "listener {} 127.0.0.1\nuser root\nmax_queued_messages {}\nlog_dest file {}\n",
            self.port,
            config.max_queued_messages,
            self.dir.join(LOG).display()
        );
        if config.log_all {
            text += "log_type all\n";
        }
        match &config.credentials {
            None => text += "allow_anonymous true\n",
            Some((user, password)) => {
                let file = self.dir.join("passwd");
                let status = Command::new("mosquitto_passwd")
                    .arg("-b")
                    .arg("-c")
                    .arg(&file)
                    .args([user, password])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()?;
                if !status.success() {
                    return Err(io::Error::other(format!("mosquitto_passwd failed: {status}")));
                }
                text += &format!("allow_anonymous false\npassword_file {}\n", file.display());
            }
        }
        if config.persistence {
            text += &format!(
                "persistence true\npersistence_location {}/\nautosave_interval 1\nautosave_on_changes true\n",
                self.dir.path().display()
            );
        }
        std::fs::write(&self.conf, text)
    }

    fn spawn(&mut self) -> io::Result<()> {
        let child = Command::new(MOSQUITTO)
            .arg("-c")
            .arg(&self.conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.child = Some(child);
        if wait_listening(self.port, START_TIMEOUT) {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "mosquitto did not listen on 127.0.0.1:{} within {} s (its log: {})",
                    self.port,
                    START_TIMEOUT.as_secs(),
                    self.dir.join(LOG).display()
                ),
            ))
        }
    }

    /// The port it listens on, the same across restarts.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:port()`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The broker's directory: configuration, log, password and persistence files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// SIGKILL: no clean shutdown, no final save, no goodbye to the clients. Nothing happens if it is not running.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the broker if it runs and starts it again on the same port, with the configuration last written and
    /// the same persistence file; returns once it accepts connections (10 s at the most).
    pub fn restart(&mut self) -> io::Result<()> {
        self.kill();
        self.spawn()
    }

    /// The broker's log so far (empty if there is none yet).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join(LOG)).unwrap_or_default()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpStream;

    /// CONNECT (MQTT 3.1.1, keepalive 10 s, client id `t`), with a user name and password if given.
    fn connect(clean: bool, user: Option<(&str, &str)>) -> Vec<u8> {
        let field = |s: &str| {
            let mut v = (s.len() as u16).to_be_bytes().to_vec();
            v.extend_from_slice(s.as_bytes());
            v
        };
        let flags = if user.is_some() { 0xc0 } else { 0 } | if clean { 0x02 } else { 0 };
        let mut body = field("MQTT");
        body.extend_from_slice(&[4, flags, 0, 10]);
        body.extend(field("t"));
        if let Some((u, p)) = user {
            body.extend(field(u));
            body.extend(field(p));
        }
        let mut packet = vec![0x10, body.len() as u8];
        packet.extend(body);
        packet
    }

    /// The CONNACK the broker answers a CONNECT with: (session present, return code).
    fn connack(broker: &Mosquitto, clean: bool, user: Option<(&str, &str)>) -> (bool, u8) {
        let mut s = TcpStream::connect(broker.addr()).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        s.write_all(&connect(clean, user)).expect("send CONNECT");
        let mut ack = [0u8; 4];
        s.read_exact(&mut ack).expect("CONNACK");
        assert_eq!(ack[..2], [0x20, 2], "not a CONNACK: {ack:02x?}");
        (ack[2] & 1 == 1, ack[3])
    }

    fn connack_code(broker: &Mosquitto, user: Option<(&str, &str)>) -> u8 {
        connack(broker, true, user).1
    }

    #[test]
    fn starts_kills_and_restarts_on_the_same_port() {
        let mut broker = Mosquitto::start("self-test", &Config::default()).expect("start");
        let port = broker.port();
        assert_eq!(connack_code(&broker, None), 0);
        broker.kill();
        assert!(TcpStream::connect(broker.addr()).is_err());
        broker.restart().expect("restart");
        assert_eq!(broker.port(), port);
        assert_eq!(connack_code(&broker, None), 0);
        assert!(broker.log().contains("mosquitto version"), "log: {}", broker.log());
        let dir = broker.dir().to_path_buf();
        drop(broker);
        assert!(!dir.exists());
    }

    #[test]
    fn credentials_refuse_anonymous_clients() {
        let config = Config {
            credentials: Some(("device".into(), "right".into())),
            ..Config::default()
        };
        let broker = Mosquitto::start("self-test-creds", &config).expect("start");
        assert_eq!(connack_code(&broker, Some(("device", "right"))), 0);
        assert_ne!(connack_code(&broker, Some(("device", "wrong"))), 0);
        assert_ne!(connack_code(&broker, None), 0);
    }

    #[test]
    fn persistence_keeps_a_session_across_a_kill() {
        let mut broker = Mosquitto::start("self-test-persist", &Config::default()).expect("start");
        broker
            .configure(&Config {
                persistence: true,
                log_all: true,
                ..Config::default()
            })
            .expect("configure");
        broker.restart().expect("restart");
        assert_eq!(connack(&broker, false, None), (false, 0));
        // Saved at the change; give the broker a moment to write it before the SIGKILL.
        let db = broker.dir().join("mosquitto.db");
        let start = std::time::Instant::now();
        while !db.exists() && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(20));
        }
        broker.kill();
        broker.restart().expect("restart");
        assert_eq!(connack(&broker, false, None), (true, 0), "log: {}", broker.log());
        assert!(broker.log().contains("Sending CONNACK"), "log: {}", broker.log());
    }
}
