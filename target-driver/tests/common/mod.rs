//! A scripted bridge on the protocol's simulated wires: the real link slave driver in a thread, answering the
//! target like the bridge firmware would, with knobs for the faults the tests need.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use protocol::driver::{blocking, Timing};
use protocol::sim::{bridge_pins, Chaos, ChaosConfig, Line, Wires};
use protocol::{
    BridgeState, BrokerState, Event, Limits, Port, QoS, Request, Status, SubResult, MAX_FRAME_LEN, PROTOCOL_VERSION,
};

/// What the bridge saw.
#[derive(Debug, Default, Clone)]
pub struct Log {
    pub boots: u32,
    pub configures: u32,
    pub publishes: Vec<(u16, String, Vec<u8>, QoS, bool)>,
    pub subscribes: Vec<String>,
    pub acks: Vec<u16>,
    pub pings: u32,
    pub delivered: u32,
}

/// Knobs, changeable while the bridge runs.
#[derive(Debug, Default)]
pub struct Knobs {
    pub stop: AtomicBool,
    /// Delay before a PubAck, in ms.
    pub ack_delay_ms: AtomicU64,
    /// After this many publications (counted since boot), the bridge hangs until the next reset (0: never).
    pub hang_after: AtomicU32,
    /// Stall the link once for this many ms.
    pub stall_ms: AtomicU64,
    /// Queue this many messages to the target on "flood/n" topics.
    pub flood: AtomicU32,
    /// Deliver publications back to matching subscriptions.
    pub echo: AtomicBool,
    /// Lose the next this many PubAcks (as damaged frames on the link would).
    pub lose_pubacks: AtomicU32,
    /// Lose the next this many status events.
    pub lose_statuses: AtomicU32,
    /// Lose the next this many configurations (as a damaged frame from the target would be).
    pub lose_configures: AtomicU32,
}

pub struct Bridge {
    pub knobs: Arc<Knobs>,
    pub log: Arc<Mutex<Log>>,
    handle: Option<thread::JoinHandle<()>>,
}

enum Out {
    Ready,
    Status(Status),
    PubAck(u16, Instant),
    SubAck(u16, QoS),
    UnsubAck(u16),
    Pong(u16, BridgeState),
    Time,
    Message(u16, String, Vec<u8>, QoS),
}

type P = Port<2048, MAX_FRAME_LEN>;

fn send(port: &mut P, out: &Out) -> bool {
    let ev = match out {
        Out::Ready => Event::Ready {
            version: PROTOCOL_VERSION,
            limits: Limits {
                max_frame: MAX_FRAME_LEN as u16,
                max_topic: 256,
                max_payload: 1024,
                window: 8,
            },
        },
        Out::Status(s) => Event::Status(*s),
        Out::PubAck(id, due) => {
            if Instant::now() < *due {
                return false;
            }
            Event::PubAck { id: *id }
        }
        Out::SubAck(id, q) => Event::SubAck {
            id: *id,
            result: SubResult::Granted(*q),
        },
        Out::UnsubAck(id) => Event::UnsubAck { id: *id },
        Out::Pong(id, state) => Event::Pong { id: *id, state: *state },
        Out::Time => Event::Time {
            unix_ms: Some(1_764_000_000_000),
        },
        Out::Message(id, t, p, q) => Event::Message {
            id: *id,
            topic: t,
            payload: p,
            qos: *q,
            retain: false,
            dup: false,
        },
    };
    port.send(&ev).is_ok()
}

/// Takes one from a "lose the next n" knob: `true` if there was one to take (this one is lost).
fn take_one(knob: &AtomicU32) -> bool {
    knob.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
        .is_ok()
}

impl Bridge {
    pub fn start(wires: &Arc<Wires>, knobs: Knobs) -> Bridge {
        let knobs = Arc::new(knobs);
        let log = Arc::new(Mutex::new(Log::default()));
        let (w, k, l) = (Arc::clone(wires), Arc::clone(&knobs), Arc::clone(&log));
        let handle = thread::spawn(move || run(w, k, l));
        Bridge {
            knobs,
            log,
            handle: Some(handle),
        }
    }

    pub fn log(&self) -> Log {
        self.log.lock().expect("log").clone()
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.knobs.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn run(wires: Arc<Wires>, knobs: Arc<Knobs>, log: Arc<Mutex<Log>>) {
    let timing = Timing::default();
    let mut link: Option<blocking::Slave<_, _, _, _>> = None;
    let mut port = P::new();
    let mut out: VecDeque<Out> = VecDeque::new();
    let mut subs: Vec<(String, QoS)> = Vec::new();
    let mut boot_at: Option<Instant> = None;
    let mut hung = false;
    let mut published_since_boot = 0;
    let mut configured = false;
    let mut next_msg = 1u16;
    let mut flooded = 0u32;
    while !knobs.stop.load(Ordering::Relaxed) {
        if !wires.level(Line::Rst) {
            // Held in reset: the chip's pins float to their pulls.
            if link.take().is_some() || boot_at.is_some() {
                boot_at = None;
            }
            wires.set(Line::BClk, false);
            wires.set(Line::BDat, true);
            thread::yield_now();
            continue;
        }
        if link.is_none() && boot_at.is_none() {
            boot_at = Some(Instant::now() + Duration::from_millis(20));
        }
        if let Some(at) = boot_at {
            if Instant::now() < at {
                thread::yield_now();
                continue;
            }
            // Boot: everything from scratch.
            boot_at = None;
            port = P::new();
            out.clear();
            subs.clear();
            hung = false;
            published_since_boot = 0;
            configured = false;
            let (bc, bd, tc, td, _rst) = bridge_pins(&wires, Chaos::new(7, ChaosConfig::NONE));
            link = Some(blocking::Slave::new(bc, bd, tc, td, timing).expect("pins"));
            out.push_back(Out::Ready);
            log.lock().expect("log").boots += 1;
        }
        if hung {
            thread::yield_now();
            continue;
        }
        let stall = knobs.stall_ms.swap(0, Ordering::Relaxed);
        if stall > 0 {
            thread::sleep(Duration::from_millis(stall));
        }
        while let Some(o) = out.front() {
            if !send(&mut port, o) {
                break;
            }
            out.pop_front();
        }
        let flood = knobs.flood.load(Ordering::Relaxed);
        while flooded < flood && port.tx_pending() < 512 {
            let p = flooded.to_le_bytes().to_vec();
            if !send(
                &mut port,
                &Out::Message(next_msg, format!("flood/{flooded}"), p, QoS::AtLeastOnce),
            ) {
                break;
            }
            next_msg = next_msg.wrapping_add(1);
            flooded += 1;
        }
        let Some(drv) = link.as_mut() else { continue };
        let _ = drv.poll(&mut port, 1024);
        while let Some(bytes) = port.received() {
            let req = Request::decode(bytes);
            let mut log = log.lock().expect("log");
            match req {
                Ok(Request::Configure(_)) if take_one(&knobs.lose_configures) => {}
                Ok(Request::Configure(_)) => {
                    log.configures += 1;
                    configured = true;
                    for status in [Status::WifiUp, Status::BrokerUp { session_present: false }] {
                        if !take_one(&knobs.lose_statuses) {
                            out.push_back(Out::Status(status));
                        }
                    }
                }
                Ok(Request::Publish {
                    id,
                    topic,
                    payload,
                    qos,
                    retain,
                }) => {
                    log.publishes.push((id, topic.into(), payload.into(), qos, retain));
                    published_since_boot += 1;
                    if knobs.hang_after.load(Ordering::Relaxed) == published_since_boot {
                        // Once: the bridge that comes back after the reset is healthy.
                        knobs.hang_after.store(0, Ordering::Relaxed);
                        hung = true;
                    } else if take_one(&knobs.lose_pubacks) {
                        // Published, but the answer never reaches the target.
                    } else {
                        let delay = Duration::from_millis(knobs.ack_delay_ms.load(Ordering::Relaxed));
                        out.push_back(Out::PubAck(id, Instant::now() + delay));
                        if knobs.echo.load(Ordering::Relaxed) {
                            for (f, q) in &subs {
                                if resilient_mqtt::topic::matches(f, topic) {
                                    let q = if *q == QoS::AtLeastOnce { qos } else { QoS::AtMostOnce };
                                    out.push_back(Out::Message(next_msg, topic.into(), payload.into(), q));
                                    next_msg = next_msg.wrapping_add(1);
                                    log.delivered += 1;
                                }
                            }
                        }
                    }
                }
                Ok(Request::Subscribe { id, filter, qos }) => {
                    log.subscribes.push(filter.into());
                    subs.retain(|(f, _)| f != filter);
                    subs.push((filter.into(), qos));
                    out.push_back(Out::SubAck(id, qos));
                }
                Ok(Request::Unsubscribe { id, filter }) => {
                    subs.retain(|(f, _)| f != filter);
                    out.push_back(Out::UnsubAck(id));
                }
                Ok(Request::Ack { id }) => log.acks.push(id),
                Ok(Request::Ping { id }) => {
                    log.pings += 1;
                    // The state its statuses reported (after a configuration: WiFi and the broker up).
                    let state = BridgeState {
                        wifi_up: configured,
                        broker: if configured {
                            BrokerState::Up { session_present: false }
                        } else {
                            BrokerState::Unknown
                        },
                        queue_full: false,
                    };
                    out.push_back(Out::Pong(id, state));
                }
                Ok(Request::TimeRequest) => out.push_back(Out::Time),
                Ok(Request::StatsRequest) | Err(_) => {}
            }
            drop(log);
            port.release();
            if hung {
                break;
            }
        }
        thread::yield_now();
    }
}
