//! Two link ends on simulated wires, each in its own thread with the blocking driver, exchanging numbered frames.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use protocol::driver::{blocking, Error, Progress, Timing};
use protocol::sim::{bridge_pins, target_pins, Chaos, ChaosConfig, SimDelay, Wires};
use protocol::{Event, Port, QoS, Request, MAX_FRAME_LEN};

pub type TestPort = Port<4096, MAX_FRAME_LEN>;

/// The payload of frame `i` from one side: deterministic, every byte value appears.
pub fn payload(side: u8, seed: u64, i: u32) -> Vec<u8> {
    let mut x = seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ side as u64;
    let len = (x % 33) as usize;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// What one side saw.
#[derive(Debug, Default, Clone)]
pub struct SideReport {
    pub sent: u32,
    /// Ids of intact frames received, in arrival order.
    pub received: Vec<u32>,
    /// Frames whose content did not match what the peer sent under that id (must stay 0).
    pub corrupt: u32,
    pub errors: Vec<String>,
    pub resyncs: u32,
    pub exchanges: u64,
    pub crc_errors: u32,
    pub malformed: u32,
    /// Frames thrown away by a simulated reset of this side.
    pub discarded: u32,
    pub engine: String,
}

/// Faults the test asks a side to perform on itself.
#[derive(Debug, Default)]
pub struct Control {
    pub stop: AtomicBool,
    pub reset_slave: AtomicBool,
    pub reset_master: AtomicBool,
    pub master_sent_all: AtomicBool,
    pub slave_sent_all: AtomicBool,
    pub master_rx: AtomicU32,
    pub slave_rx: AtomicU32,
}

pub struct PairConfig {
    pub seed: u64,
    pub frames: u32,
    pub master_chaos: ChaosConfig,
    pub slave_chaos: ChaosConfig,
    pub timing: Timing,
}

fn take_frames(port: &mut TestPort, side: u8, seed: u64, report: &mut SideReport, ctl_rx: &AtomicU32) {
    while let Some(msg) = port.received() {
        let peer = 1 - side;
        let got = if side == 0 {
            match Event::decode(msg) {
                Ok(Event::Message {
                    id, topic, payload: p, ..
                }) => {
                    let i = topic.trim_start_matches("t/").parse::<u32>().unwrap_or(u32::MAX);
                    Some((i, i as u16 == id && p == payload(peer, seed, i).as_slice()))
                }
                _ => None,
            }
        } else {
            match Request::decode(msg) {
                Ok(Request::Publish {
                    id, topic, payload: p, ..
                }) => {
                    let i = topic.trim_start_matches("t/").parse::<u32>().unwrap_or(u32::MAX);
                    Some((i, i as u16 == id && p == payload(peer, seed, i).as_slice()))
                }
                _ => None,
            }
        };
        match got {
            Some((i, true)) => report.received.push(i),
            _ => report.corrupt += 1,
        }
        ctl_rx.fetch_add(1, Ordering::Relaxed);
        port.release();
    }
}

/// Bytes a side keeps queued at most, so that a reset discards only a few frames.
const QUEUE_AHEAD: usize = 256;

fn queue(port: &mut TestPort, side: u8, seed: u64, next: &mut u32, total: u32) {
    while *next < total && port.tx_pending() < QUEUE_AHEAD {
        let topic = format!("t/{next}");
        let p = payload(side, seed, *next);
        let r = if side == 0 {
            port.send(&Request::Publish {
                id: *next as u16,
                topic: &topic,
                payload: &p,
                qos: QoS::AtLeastOnce,
                retain: false,
            })
        } else {
            port.send(&Event::Message {
                id: *next as u16,
                topic: &topic,
                payload: &p,
                qos: QoS::AtLeastOnce,
                retain: false,
                dup: false,
            })
        };
        if r.is_err() {
            break;
        }
        *next += 1;
    }
}

pub struct Pair {
    pub wires: Arc<Wires>,
    pub ctl: Arc<Control>,
    master: Option<thread::JoinHandle<SideReport>>,
    slave: Option<thread::JoinHandle<SideReport>>,
}

impl Pair {
    pub fn start(cfg: PairConfig) -> Pair {
        Self::start_with(cfg, true)
    }

    /// `with_slave: false` leaves the bridge end dead.
    pub fn start_with(cfg: PairConfig, with_slave: bool) -> Pair {
        let wires = Wires::new();
        let ctl = Arc::new(Control::default());
        let (seed, frames, timing) = (cfg.seed, cfg.frames, cfg.timing);
        let master = {
            let (wires, ctl) = (Arc::clone(&wires), Arc::clone(&ctl));
            let chaos = cfg.master_chaos;
            thread::spawn(move || {
                let mut report = SideReport::default();
                let (tc, td, bc, bd, _rst) = target_pins(&wires, Chaos::new(seed, chaos));
                let mut drv = blocking::Master::new(tc, td, bc, bd, SimDelay, timing).expect("infallible pins");
                let mut port = TestPort::new();
                let mut next = 0;
                while !ctl.stop.load(Ordering::Relaxed) {
                    if ctl.reset_master.swap(false, Ordering::Relaxed) {
                        report.discarded += count_queued(&port);
                        port.clear();
                        drv.reset().expect("infallible pins");
                    }
                    queue(&mut port, 0, seed, &mut next, frames);
                    if next == frames && port.tx_pending() == 0 {
                        ctl.master_sent_all.store(true, Ordering::Relaxed);
                    }
                    match drv.poll(&mut port, 2048) {
                        Ok(Progress::Idle) => {
                            if !drv.service_requested().unwrap_or(false) {
                                thread::yield_now();
                            }
                        }
                        Ok(_) => {}
                        Err(e) => {
                            report.errors.push(format!("{e}"));
                            if matches!(e, Error::Timeout | Error::Fault(_)) && report.errors.len() > 1000 {
                                break;
                            }
                        }
                    }
                    take_frames(&mut port, 0, seed, &mut report, &ctl.master_rx);
                }
                report.sent = next;
                report.engine = format!(
                    "{:?} tx_pending {} rx {:?}",
                    drv.engine(),
                    port.tx_pending(),
                    port.received().map(|m| m.len())
                );
                let st = drv.stats();
                let ps = port.stats();
                (report.resyncs, report.exchanges, report.crc_errors, report.malformed) =
                    (st.resyncs, st.exchanges, ps.crc_errors, ps.malformed);
                report
            })
        };
        let slave = with_slave.then(|| {
            let (wires, ctl) = (Arc::clone(&wires), Arc::clone(&ctl));
            let chaos = cfg.slave_chaos;
            thread::spawn(move || {
                let mut report = SideReport::default();
                let new_driver = |wires: &Arc<Wires>, salt: u64| {
                    let (bc, bd, tc, td, _rst) = bridge_pins(wires, Chaos::new(seed ^ 0xABCD ^ salt, chaos));
                    blocking::Slave::new(bc, bd, tc, td, timing).expect("infallible pins")
                };
                let mut drv = new_driver(&wires, 0);
                let mut port = TestPort::new();
                let mut next = 0;
                let mut resets = 0;
                let mut stats_before_resets = (0, 0);
                while !ctl.stop.load(Ordering::Relaxed) {
                    if ctl.reset_slave.swap(false, Ordering::Relaxed) {
                        // A reboot: the engine and its queues start from scratch.
                        resets += 1;
                        let st = drv.stats();
                        stats_before_resets.0 += st.resyncs;
                        stats_before_resets.1 += st.exchanges;
                        report.discarded += count_queued(&port);
                        port.clear();
                        drv = new_driver(&wires, resets);
                    }
                    queue(&mut port, 1, seed, &mut next, frames);
                    if next == frames && port.tx_pending() == 0 {
                        ctl.slave_sent_all.store(true, Ordering::Relaxed);
                    }
                    match drv.poll(&mut port, 2048) {
                        Ok(Progress::Idle) => thread::yield_now(),
                        Ok(_) => {}
                        Err(e) => report.errors.push(format!("{e}")),
                    }
                    take_frames(&mut port, 1, seed, &mut report, &ctl.slave_rx);
                }
                report.sent = next;
                report.engine = format!(
                    "{:?} tx_pending {} rx {:?}",
                    drv.engine(),
                    port.tx_pending(),
                    port.received().map(|m| m.len())
                );
                let st = drv.stats();
                let ps = port.stats();
                report.resyncs = st.resyncs + stats_before_resets.0;
                report.exchanges = st.exchanges + stats_before_resets.1;
                (report.crc_errors, report.malformed) = (ps.crc_errors, ps.malformed);
                report
            })
        });
        Pair {
            wires,
            ctl,
            master: Some(master),
            slave,
        }
    }

    /// Waits until both sides have sent everything and the receive counts stop moving, or `limit` passes.
    pub fn settle(&self, limit: Duration) {
        let start = Instant::now();
        let mut last = (u32::MAX, u32::MAX);
        let mut still_since = Instant::now();
        while start.elapsed() < limit {
            thread::sleep(Duration::from_millis(20));
            let now = (
                self.ctl.master_rx.load(Ordering::Relaxed),
                self.ctl.slave_rx.load(Ordering::Relaxed),
            );
            let sent =
                self.ctl.master_sent_all.load(Ordering::Relaxed) && self.ctl.slave_sent_all.load(Ordering::Relaxed);
            if now != last {
                last = now;
                still_since = Instant::now();
            } else if sent && still_since.elapsed() > Duration::from_millis(300) {
                return;
            }
        }
    }

    pub fn stop(mut self) -> (SideReport, SideReport) {
        self.ctl.stop.store(true, Ordering::Relaxed);
        let m = self
            .master
            .take()
            .map(|h| h.join().expect("master thread"))
            .unwrap_or_default();
        let s = self
            .slave
            .take()
            .map(|h| h.join().expect("slave thread"))
            .unwrap_or_default();
        (m, s)
    }
}

fn count_queued(port: &TestPort) -> u32 {
    // Frames queued but not sent are lost with a reset; a rough count is enough for the bound (one frame of
    // this test is at most about 60 bytes, at least 12).
    (port.tx_pending() as u32).div_ceil(12)
}

/// Checks that received ids are strictly increasing (in order, no duplicates) and returns how many are missing.
pub fn check_in_order(received: &[u32], sent: u32) -> u32 {
    for w in received.windows(2) {
        assert!(w[0] < w[1], "frames out of order or duplicated: {} then {}", w[0], w[1]);
    }
    sent - received.len() as u32
}

#[allow(dead_code)]
pub fn shared<T>(v: T) -> Arc<Mutex<T>> {
    Arc::new(Mutex::new(v))
}
