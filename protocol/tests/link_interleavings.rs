//! Explores every interleaving of the two link engines' atomic actions (read a line, write a line) for small
//! frames, including the moment each side's frame becomes ready, and checks that every run that comes to rest
//! has delivered every frame intact both ways. This proves the busy/idle rule: a data line is only read when the
//! handshake says it is stable, and the slave's early start marker is harmless wherever it falls.

mod common;

use std::collections::hash_map::DefaultHasher;
use std::collections::HashSet;
use std::hash::{Hash, Hasher};

use common::{frames, QueueIo};
use protocol::link::{Master, Slave, Step, Wait};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Pc {
    ReadClk,
    ReadDat(bool),
    WriteDat(Step),
    WriteClk(Step),
    Waiting(Wait),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct World {
    m: Master,
    s: Slave,
    m_io: QueueIo,
    s_io: QueueIo,
    mpc: Pc,
    spc: Pc,
    // Lines.
    t_clk: bool,
    t_dat: bool,
    b_clk: bool,
    b_dat: bool,
    m_injected: bool,
    s_injected: bool,
}

struct Explorer<'a> {
    seen: HashSet<u64>,
    m_frame: &'a [u8],
    s_frame: &'a [u8],
    rests: usize,
}

fn hash(w: &World) -> u64 {
    let mut h = DefaultHasher::new();
    w.hash(&mut h);
    h.finish()
}

const MAX_STATES: usize = 3_000_000;

impl Explorer<'_> {
    /// Every world one atomic action away.
    fn successors(&self, w: &World) -> Vec<World> {
        let mut out = Vec::new();
        if !w.m_injected {
            let mut n = w.clone();
            n.m_io.tx.extend(self.m_frame);
            n.m_injected = true;
            out.push(n);
        }
        if !w.s_injected {
            let mut n = w.clone();
            n.s_io.tx.extend(self.s_frame);
            n.s_injected = true;
            out.push(n);
        }
        // A bounded receiver's application takes a byte, making room for one more.
        if w.m_io.rx_room == Some(0) {
            let mut n = w.clone();
            n.m_io.rx_room = Some(1);
            out.push(n);
        }
        if w.s_io.rx_room == Some(0) {
            let mut n = w.clone();
            n.s_io.rx_room = Some(1);
            out.push(n);
        }
        // Master.
        let mut n = w.clone();
        let moved = match w.mpc {
            Pc::ReadClk => {
                n.mpc = Pc::ReadDat(w.b_clk);
                true
            }
            Pc::ReadDat(clk) => {
                let step = n.m.step(clk, w.b_dat, &mut n.m_io);
                n.mpc = Pc::WriteDat(step);
                true
            }
            Pc::WriteDat(step) => {
                n.t_dat = step.dat;
                n.mpc = Pc::WriteClk(step);
                true
            }
            Pc::WriteClk(step) => {
                n.t_clk = step.clk;
                n.mpc = Pc::Waiting(step.wait);
                true
            }
            Pc::Waiting(wait) => {
                let ready = match wait {
                    Wait::PeerClk(level) => w.b_clk == level,
                    Wait::Idle => !w.b_dat || w.m_io.tx_ready_pub(),
                    Wait::RxFull => w.m_io.rx_room != Some(0),
                    Wait::Fault(_) => panic!("unexpected {wait:?}"),
                };
                n.mpc = Pc::ReadClk;
                ready
            }
        };
        if moved {
            out.push(n);
        }
        // Slave.
        let mut n = w.clone();
        let moved = match w.spc {
            Pc::ReadClk => {
                n.spc = Pc::ReadDat(w.t_clk);
                true
            }
            Pc::ReadDat(clk) => {
                let step = n.s.step(clk, w.t_dat, &mut n.s_io);
                n.spc = Pc::WriteDat(step);
                true
            }
            Pc::WriteDat(step) => {
                n.b_dat = step.dat;
                n.spc = Pc::WriteClk(step);
                true
            }
            Pc::WriteClk(step) => {
                n.b_clk = step.clk;
                n.spc = Pc::Waiting(step.wait);
                true
            }
            Pc::Waiting(wait) => {
                let ready = match wait {
                    // A slave also steps again when a frame becomes ready (to ask for service).
                    Wait::PeerClk(level) => w.t_clk == level || (w.s_io.tx_ready_pub() && w.s.outputs().1),
                    Wait::RxFull => w.s_io.rx_room != Some(0),
                    other => panic!("unexpected {other:?}"),
                };
                n.spc = Pc::ReadClk;
                ready
            }
        };
        if moved {
            out.push(n);
        }
        out
    }

    fn check_rest(&mut self, w: &World) {
        self.rests += 1;
        assert!(
            w.m_injected && w.s_injected,
            "came to rest before both frames were ready: {w:?}"
        );
        let expect_m = frames(self.s_frame);
        let expect_s = frames(self.m_frame);
        assert_eq!(
            frames(&w.m_io.rx),
            expect_m,
            "master received wrong frames at rest: {w:?}"
        );
        assert_eq!(
            frames(&w.s_io.rx),
            expect_s,
            "slave received wrong frames at rest: {w:?}"
        );
        assert!(w.m_io.tx.is_empty() && w.s_io.tx.is_empty());
    }

    fn run(&mut self, start: World) {
        let mut stack = vec![start];
        while let Some(w) = stack.pop() {
            if !self.seen.insert(hash(&w)) {
                continue;
            }
            assert!(
                self.seen.len() < MAX_STATES,
                "state space larger than expected: a livelock?"
            );
            let next = self.successors(&w);
            // Waiting actors whose condition does not hold contribute nothing; at rest nobody can move except
            // by spurious re-steps, which lead back to seen states.
            let progress: Vec<World> = next.into_iter().filter(|n| n != &w).collect();
            let quiet = progress.is_empty()
                || (matches!(w.mpc, Pc::Waiting(Wait::Idle))
                    && matches!(w.spc, Pc::Waiting(_))
                    && w.m_injected
                    && w.s_injected
                    && progress.iter().all(|n| self.seen.contains(&hash(n))));
            if quiet && matches!(w.mpc, Pc::Waiting(Wait::Idle)) && w.b_dat && !w.s_io.tx_ready_pub() {
                self.check_rest(&w);
            }
            stack.extend(progress);
        }
    }
}

trait TxReady {
    fn tx_ready_pub(&self) -> bool;
}

impl TxReady for QueueIo {
    fn tx_ready_pub(&self) -> bool {
        !self.tx.is_empty()
    }
}

fn explore(m_frame: &[u8], s_frame: &[u8]) -> (usize, usize) {
    explore_with(m_frame, s_frame, None)
}

/// `room`: bytes each receiver takes before its application must make room again (`None`: unbounded).
fn explore_with(m_frame: &[u8], s_frame: &[u8], room: Option<usize>) -> (usize, usize) {
    let m = Master::new();
    let s = Slave::new();
    let (t_clk, t_dat) = m.outputs();
    let (b_clk, b_dat) = s.outputs();
    let start = World {
        m,
        s,
        m_io: QueueIo {
            rx_room: room,
            ..QueueIo::default()
        },
        s_io: QueueIo {
            rx_room: room,
            ..QueueIo::default()
        },
        mpc: Pc::ReadClk,
        spc: Pc::ReadClk,
        t_clk,
        t_dat,
        b_clk,
        b_dat,
        m_injected: false,
        s_injected: false,
    };
    let mut ex = Explorer {
        seen: HashSet::new(),
        m_frame,
        s_frame,
        rests: 0,
    };
    ex.run(start);
    assert!(ex.rests > 0, "no run came to rest");
    (ex.seen.len(), ex.rests)
}

#[test]
fn every_interleaving_delivers_one_byte_frames_both_ways() {
    let (states, rests) = explore(&[0x41, 0x00], &[0xFF, 0x00]);
    println!("{states} states, {rests} resting states");
}

#[test]
fn every_interleaving_delivers_frames_with_long_runs_of_ones() {
    // 0xFF 0xFF forces a stuffed bit; 0x80 0x01 gives a long run of zeros.
    let (states, rests) = explore(&[0xFF, 0xFF, 0x7F, 0x00], &[0x80, 0x01, 0xFE, 0x00]);
    println!("{states} states, {rests} resting states");
}

#[test]
fn every_interleaving_delivers_frames_when_both_receivers_take_one_byte_at_a_time() {
    // Flow control: each receiver has room for one byte until its application takes it, at any moment; the link
    // must hold (the master stops clocking, the slave stretches its answer) and lose nothing.
    let (states, rests) = explore_with(&[0x41, 0xFF, 0x00], &[0xFF, 0x01, 0x00], Some(0));
    println!("{states} states, {rests} resting states");
}
