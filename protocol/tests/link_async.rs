//! The async link drivers on simulated wires, and the blocking drivers in two processes sharing the wires over a
//! Unix socket.
#![cfg(feature = "sim")]

use std::process::Command;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use embassy_futures::block_on;
use embassy_futures::select::select;
use embassy_time::{with_timeout, Timer};
use protocol::driver::{asynch, blocking, Progress, Timing};
use protocol::sim::{bridge_pins, target_pins, Chaos, ChaosConfig, SimDelay, Wires};
use protocol::{Port, Request, MAX_FRAME_LEN};

type P = Port<2048, MAX_FRAME_LEN>;

fn ping_ids(port: &mut P, got: &mut Vec<u16>) {
    while let Some(bytes) = port.received() {
        if let Ok(Request::Ping { id }) = Request::decode(bytes) {
            got.push(id);
        }
        port.release();
    }
}

fn queue(port: &mut P, next: &mut u16, total: u16) {
    while *next < total && port.send(&Request::Ping { id: *next }).is_ok() {
        *next += 1;
    }
}

#[test]
fn async_drivers_exchange_frames_both_ways() {
    const N: u16 = 2_000;
    let wires = Wires::new();
    let chaos = ChaosConfig {
        latency_per_million: 10_000,
        max_latency_ns: 20_000,
        ..ChaosConfig::NONE
    };
    let timing = Timing {
        timeout_us: 2_000_000,
        ..Timing::default()
    };
    let w = Arc::clone(&wires);
    let target = thread::spawn(move || {
        let (tc, td, bc, bd, _rst) = target_pins(&w, Chaos::new(1, chaos));
        let mut m = asynch::Master::new(tc, td, bc, bd, timing).expect("pins");
        let (mut port, mut next, mut got) = (P::new(), 0, Vec::new());
        let start = Instant::now();
        block_on(async {
            while (got.len() < N as usize || next < N) && start.elapsed() < Duration::from_secs(60) {
                queue(&mut port, &mut next, N);
                if m.run(&mut port, 1024).await.expect("link") == Progress::Idle {
                    select(m.wait_request(), Timer::after_micros(200)).await;
                }
                ping_ids(&mut port, &mut got);
            }
            // Let the last frames out.
            for _ in 0..100 {
                let _ = m.run(&mut port, 1024).await;
            }
        });
        got
    });
    let (bc, bd, tc, td, _rst) = bridge_pins(&wires, Chaos::new(2, chaos));
    let mut s = asynch::Slave::new(bc, bd, tc, td, timing).expect("pins");
    let (mut port, mut next, mut got) = (P::new(), 0, Vec::new());
    let start = Instant::now();
    block_on(async {
        while (got.len() < N as usize || next < N) && start.elapsed() < Duration::from_secs(60) {
            queue(&mut port, &mut next, N);
            let _ = with_timeout(embassy_time::Duration::from_millis(1), s.run(&mut port, 1024)).await;
            ping_ids(&mut port, &mut got);
        }
        let until = Instant::now() + Duration::from_millis(300);
        while Instant::now() < until {
            let _ = with_timeout(embassy_time::Duration::from_millis(1), s.run(&mut port, 1024)).await;
        }
    });
    let target_got = target.join().expect("target thread");
    assert_eq!(got, (0..N).collect::<Vec<_>>(), "bridge received");
    assert_eq!(target_got, (0..N).collect::<Vec<_>>(), "target received");
}

const CHILD_ENV: &str = "PROTOCOL_LINK_CHILD_SOCKET";
const TWO_PROC_FRAMES: u16 = 1_000;

/// The bridge end of `two_processes_share_the_wires_over_a_unix_socket`; does nothing when run on its own.
#[test]
fn two_process_bridge_child() {
    let Ok(path) = std::env::var(CHILD_ENV) else { return };
    let wires = Wires::share_unix(path.as_ref(), false).expect("listen");
    let (bc, bd, tc, td, _rst) = bridge_pins(&wires, Chaos::new(3, ChaosConfig::NONE));
    let mut s = blocking::Slave::new(bc, bd, tc, td, Timing::default()).expect("pins");
    let (mut port, mut next, mut got) = (P::new(), 0, Vec::new());
    let start = Instant::now();
    // Serve until the target has been quiet for a while after everything was exchanged.
    let mut quiet_since = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        queue(&mut port, &mut next, TWO_PROC_FRAMES);
        let before = s.stats().exchanges;
        if s.poll(&mut port, 1024).expect("link") == Progress::Idle {
            thread::yield_now();
        }
        if s.stats().exchanges != before {
            quiet_since = Instant::now();
        }
        ping_ids(&mut port, &mut got);
        if got.len() == TWO_PROC_FRAMES as usize && quiet_since.elapsed() > Duration::from_secs(2) {
            break;
        }
    }
    assert_eq!(got, (0..TWO_PROC_FRAMES).collect::<Vec<_>>());
}

#[test]
fn two_processes_share_the_wires_over_a_unix_socket() {
    let dir = std::env::temp_dir().join(format!("protocol-link-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("wires.sock");
    let _ = std::fs::remove_file(&path);
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "two_process_bridge_child",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD_ENV, &path)
        .spawn()
        .expect("spawn the bridge process");
    let start = Instant::now();
    let wires = loop {
        match Wires::share_unix(&path, true) {
            Ok(w) => break w,
            Err(_) if start.elapsed() < Duration::from_secs(20) => thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("cannot reach the bridge process: {e}"),
        }
    };
    let (tc, td, bc, bd, _rst) = target_pins(&wires, Chaos::new(4, ChaosConfig::NONE));
    let timing = Timing {
        timeout_us: 2_000_000,
        ..Timing::default()
    };
    let mut m = blocking::Master::new(tc, td, bc, bd, SimDelay, timing).expect("pins");
    let (mut port, mut next, mut got) = (P::new(), 0, Vec::new());
    while (got.len() < TWO_PROC_FRAMES as usize || next < TWO_PROC_FRAMES) && start.elapsed() < Duration::from_secs(60)
    {
        queue(&mut port, &mut next, TWO_PROC_FRAMES);
        if m.poll(&mut port, 1024).expect("link") == Progress::Idle {
            thread::yield_now();
        }
        ping_ids(&mut port, &mut got);
    }
    // Let the last frames out, then let the bridge process check what it received.
    let until = Instant::now() + Duration::from_millis(500);
    while Instant::now() < until {
        let _ = m.poll(&mut port, 1024);
    }
    let status = child.wait().expect("bridge process");
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(got, (0..TWO_PROC_FRAMES).collect::<Vec<_>>(), "target received");
    assert!(
        status.success(),
        "the bridge process did not receive every frame intact"
    );
}
