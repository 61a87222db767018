#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod mosquitto;
mod sub;

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub use mosquitto::{Config, Mosquitto, MOSQUITTO};
pub use sub::MosquittoSub;

/// How often [`wait_listening`] tries to connect: fine enough for the restart times `e2e-bench` reports.
const POLL: Duration = Duration::from_millis(1);

/// A free TCP port on 127.0.0.1 (bound and released: another process could take it in between, rarely).
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Waits until something accepts TCP connections on `127.0.0.1:port`; `false` if nothing did within `timeout`.
pub fn wait_listening(port: u16, timeout: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(POLL);
    }
    false
}

/// A scratch directory of the caller's own, `<system temp>/<tag>-<process id>-<counter>`, empty when made and
/// removed (with what is in it) on drop.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Makes the directory; a leftover of the same name (an earlier process with the same id) is removed first.
    pub fn new(tag: &str) -> std::io::Result<TempDir> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "{tag}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)?;
        Ok(TempDir { path })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `name` inside the directory.
    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_dir_is_fresh_and_removed_on_drop() {
        let a = TempDir::new("test-support").expect("temp dir");
        let b = TempDir::new("test-support").expect("temp dir");
        assert_ne!(a.path(), b.path());
        std::fs::write(a.join("file"), b"x").expect("write");
        let path = a.path().to_path_buf();
        drop(a);
        assert!(!path.exists());
        assert!(b.path().is_dir());
    }

    #[test]
    fn wait_listening_sees_a_listener_and_gives_up_without_one() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("address").port();
        assert!(wait_listening(port, Duration::from_secs(1)));
        drop(listener);
        assert!(!wait_listening(port, Duration::from_millis(20)));
    }
}
