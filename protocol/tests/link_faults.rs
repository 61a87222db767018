//! Faults injected deterministically: the two engines run in lockstep in one thread (no scheduler, no timing), and
//! at fixed exchanges a fault strikes: a spurious edge on either clock, a bit error on either data line, a reset of
//! either end. Every fault is certain to be seen, so each test also checks that it was noticed, and that the link
//! recovers within the bound `docs/protocol.md` states: the frames in flight are lost, nothing else, and nothing
//! damaged is ever delivered.

use protocol::link::{LinkIo, Master, Slave, Wait};
use protocol::{Event, Port, QoS, Request, MAX_FRAME_LEN};

type P = Port<512, MAX_FRAME_LEN>;

#[derive(Debug, Clone, Copy)]
enum Fault {
    /// T_CLK flips and flips back; the slave sees both.
    TargetClockGlitch,
    /// B_CLK flips while the master waits for it, then flips back.
    BridgeClockGlitch,
    /// The bit on T_DAT is read wrong by the slave.
    TargetDataError,
    /// The bit on B_DAT is read wrong by the master.
    BridgeDataError,
    /// The slave restarts from its reset state (its queued frames are gone).
    BridgeReset,
    /// The master restarts from its reset state (its queued frames are gone).
    TargetReset,
}

struct Rig {
    m: Master,
    s: Slave,
    mio: P,
    sio: P,
    t_clk: bool,
    t_dat: bool,
    b_clk: bool,
    b_dat: bool,
    m_next: u16,
    s_next: u16,
    /// Ids received by the slave (from the master) and by the master (from the slave), in order.
    s_got: Vec<u16>,
    m_got: Vec<u16>,
    damaged: u32,
    discarded: u32,
    flip_b_dat: bool,
}

fn payload(from_target: bool, id: u16) -> Vec<u8> {
    (0..(id % 40))
        .map(|k| (k as u8).wrapping_mul(37) ^ id as u8 ^ from_target as u8)
        .collect()
}

impl Rig {
    fn new() -> Rig {
        let (m, s) = (Master::new(), Slave::new());
        let (t_clk, t_dat) = m.outputs();
        let (b_clk, b_dat) = s.outputs();
        Rig {
            m,
            s,
            mio: P::new(),
            sio: P::new(),
            t_clk,
            t_dat,
            b_clk,
            b_dat,
            m_next: 0,
            s_next: 0,
            s_got: Vec::new(),
            m_got: Vec::new(),
            damaged: 0,
            discarded: 0,
            flip_b_dat: false,
        }
    }

    fn step_master(&mut self) -> Wait {
        let st = self.m.step(self.b_clk, self.b_dat, &mut self.mio);
        (self.t_clk, self.t_dat) = (st.clk, st.dat);
        st.wait
    }

    fn step_slave(&mut self) {
        let st = self.s.step(self.t_clk, self.t_dat, &mut self.sio);
        (self.b_clk, self.b_dat) = (st.clk, st.dat);
    }

    fn feed(&mut self, total: u16) {
        while self.m_next < total && self.mio.tx_pending() < 128 {
            let p = payload(true, self.m_next);
            let req = Request::Publish {
                id: self.m_next,
                topic: "f/t",
                payload: &p,
                qos: QoS::AtLeastOnce,
                retain: false,
            };
            if self.mio.send(&req).is_err() {
                break;
            }
            self.m_next += 1;
        }
        while self.s_next < total && self.sio.tx_pending() < 128 {
            let p = payload(false, self.s_next);
            let ev = Event::Message {
                id: self.s_next,
                topic: "f/t",
                payload: &p,
                qos: QoS::AtMostOnce,
                retain: false,
                dup: false,
            };
            if self.sio.send(&ev).is_err() {
                break;
            }
            self.s_next += 1;
        }
    }

    fn take(&mut self) {
        if let Some(bytes) = self.sio.received() {
            match Request::decode(bytes) {
                Ok(Request::Publish { id, payload: p, .. }) if p == payload(true, id).as_slice() => self.s_got.push(id),
                _ => self.damaged += 1,
            }
            self.sio.release();
        }
        if let Some(bytes) = self.mio.received() {
            match Event::decode(bytes) {
                Ok(Event::Message { id, payload: p, .. }) if p == payload(false, id).as_slice() => self.m_got.push(id),
                _ => self.damaged += 1,
            }
            self.mio.release();
        }
    }

    fn strike(&mut self, fault: Fault) {
        match fault {
            Fault::TargetClockGlitch => {
                // The slave answers the master's toggle, then sees T_CLK flip and flip back: two answers more.
                self.step_slave();
                self.t_clk = !self.t_clk;
                self.step_slave();
                self.t_clk = !self.t_clk;
            }
            Fault::BridgeClockGlitch => {
                // The master waits for the slave's answer and sees B_CLK match too early: a phantom exchange.
                self.b_clk = !self.b_clk;
                self.step_master();
                self.b_clk = !self.b_clk;
            }
            Fault::TargetDataError => {
                self.t_dat = !self.t_dat;
                self.step_slave();
            }
            Fault::BridgeDataError => {
                // Once the slave has answered, the master reads the opposite of its bit.
                self.flip_b_dat = true;
            }
            Fault::BridgeReset => {
                self.discarded += queued_frames(&self.sio);
                self.s = Slave::new();
                self.sio.clear();
                (self.b_clk, self.b_dat) = self.s.outputs();
            }
            Fault::TargetReset => {
                self.discarded += queued_frames(&self.mio);
                self.m = Master::resume(self.b_clk);
                self.mio.clear();
                (self.t_clk, self.t_dat) = self.m.outputs();
            }
        }
    }
}

/// Frames waiting in a send queue (each ends with one 0x00).
fn queued_frames(port: &P) -> u32 {
    let mut copy = port.clone();
    let mut n = 0;
    while let Some(b) = copy.tx_next() {
        n += u32::from(b == 0);
    }
    // The frame being sent when the reset struck counts too.
    n + 1
}

/// Strictly increasing ids (in order, no duplicates); returns how many of `0..sent` are missing.
fn missing(got: &[u16], sent: u16) -> u32 {
    assert!(
        got.windows(2).all(|w| w[0] < w[1]),
        "out of order or duplicated: {got:?}"
    );
    u32::from(sent) - got.len() as u32
}

/// 300 frames each way, `fault` every `every` exchanges while traffic flows.
fn survives(fault: Fault, every: u64) {
    const TOTAL: u16 = 300;
    let mut rig = Rig::new();
    let mut faults = 0u32;
    let mut quiet = 0;
    for round in 0..5_000_000u64 {
        rig.feed(TOTAL);
        let wait = rig.step_master();
        // Strike between the master's move and the slave's answer: the moment a glitch or a bit error matters.
        let busy = rig.m_next < TOTAL || rig.s_next < TOTAL;
        if busy && round > 0 && round % every == 0 {
            rig.strike(fault);
            faults += 1;
        }
        rig.step_slave();
        if std::mem::take(&mut rig.flip_b_dat) {
            rig.b_dat = !rig.b_dat;
        }
        rig.take();
        if wait == Wait::Idle && !busy && rig.mio.tx_pending() == 0 && rig.sio.tx_pending() == 0 {
            quiet += 1;
            if quiet > 100 {
                break;
            }
        } else {
            quiet = 0;
        }
    }
    let st = (rig.m.stats(), rig.s.stats(), rig.mio.stats(), rig.sio.stats());
    if std::env::var_os("LINK_FAULTS_DEBUG").is_some() {
        println!(
            "{:?}\n{:?}\nlines {:?} next {} {}",
            rig.m,
            rig.s,
            (rig.t_clk, rig.t_dat, rig.b_clk, rig.b_dat),
            rig.m_next,
            rig.s_next
        );
    }
    let felt = st.0.resyncs + st.1.resyncs + st.2.crc_errors + st.3.crc_errors + st.2.malformed + st.3.malformed;
    let lost = missing(&rig.s_got, rig.m_next) + missing(&rig.m_got, rig.s_next);
    println!(
        "{fault:?}: {faults} faults, lost {lost} frames (bound {}), discarded by resets {}, noticed {felt}",
        4 * faults,
        rig.discarded
    );
    assert_eq!(rig.damaged, 0, "{fault:?}: a damaged frame was delivered");
    assert!(faults >= 10, "{fault:?}: too few faults struck ({faults})");
    assert!(felt > 0, "{fault:?}: no fault was noticed");
    // At most the frame in flight each way per fault (two each way when a fault straddles a frame boundary).
    assert!(lost <= 4 * faults + rig.discarded, "{fault:?}: lost {lost}");
    assert_eq!(
        rig.s_got.last(),
        Some(&(TOTAL - 1)),
        "{fault:?}: not back in step toward the bridge"
    );
    assert_eq!(
        rig.m_got.last(),
        Some(&(TOTAL - 1)),
        "{fault:?}: not back in step toward the target"
    );
}

#[test]
fn a_spurious_edge_on_the_target_clock_costs_only_the_frames_in_flight() {
    survives(Fault::TargetClockGlitch, 997);
}

#[test]
fn a_spurious_edge_on_the_bridge_clock_costs_only_the_frames_in_flight() {
    survives(Fault::BridgeClockGlitch, 1009);
}

#[test]
fn a_bit_error_on_the_target_data_line_costs_only_the_frame_in_flight() {
    survives(Fault::TargetDataError, 983);
}

#[test]
fn a_bit_error_on_the_bridge_data_line_costs_only_the_frame_in_flight() {
    survives(Fault::BridgeDataError, 991);
}

#[test]
fn a_bridge_reset_costs_only_the_frames_in_flight_and_queued() {
    survives(Fault::BridgeReset, 1499);
}

#[test]
fn a_target_reset_costs_only_the_frames_in_flight_and_queued() {
    survives(Fault::TargetReset, 1511);
}
