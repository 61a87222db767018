//! Link figures: efficiency, modelled goodput, engine cost. Run with `cargo bench -p protocol --bench link`.
//!
//! The two engines run in lockstep in one thread (no pins, no clock): one loop iteration is one exchange. Virtual
//! time charges each side a fixed answer time per edge, so the goodput is what a board whose link code answers an
//! edge in that time would get.

use std::collections::VecDeque;
use std::hint::black_box;
use std::time::Instant;

use protocol::link::{LinkIo, Master, Slave, Wait};
use protocol::{Event, Port, QoS, Request, MAX_FRAME_LEN};

/// Answer time per edge in the model.
const EDGE_US: f64 = 2.0;

/// A byte queue each way, with no framing work: isolates the engines' own cost.
#[derive(Default)]
struct Bytes {
    tx: VecDeque<u8>,
    rx: u64,
}

impl LinkIo for Bytes {
    fn tx_ready(&self) -> bool {
        !self.tx.is_empty()
    }
    fn tx_next(&mut self) -> Option<u8> {
        self.tx.pop_front()
    }
    fn rx(&mut self, byte: u8) -> bool {
        self.rx += byte as u64;
        true
    }
}

/// Runs both engines until the link is idle with nothing left to send; returns the exchanges.
fn run<A: LinkIo, B: LinkIo>(
    m: &mut Master,
    s: &mut Slave,
    mio: &mut A,
    sio: &mut B,
    mut after: impl FnMut(&mut A, &mut B),
) -> u64 {
    let (mut b_clk, mut b_dat) = s.outputs();
    let start = m.stats().exchanges;
    loop {
        let ms = m.step(b_clk, b_dat, mio);
        let ss = s.step(ms.clk, ms.dat, sio);
        (b_clk, b_dat) = (ss.clk, ss.dat);
        after(mio, sio);
        if ms.wait == Wait::Idle && !sio.tx_ready() && b_dat {
            // One more round so that an early start from the slave is seen.
            let ms = m.step(b_clk, b_dat, mio);
            if ms.wait == Wait::Idle {
                return m.stats().exchanges - start;
            }
        }
    }
}

fn frame_of(msg: &Request<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; MAX_FRAME_LEN];
    let n = protocol::encode(msg, &mut buf).expect("fits");
    buf.truncate(n);
    buf
}

/// Exchanges one frame costs on the wire in steady traffic (back-to-back frames), and the frame's length.
fn exchanges_per_frame(msg: &Request<'_>) -> (f64, usize) {
    let frame = frame_of(msg);
    let n = 200;
    let mut m = Master::new();
    let mut s = Slave::new();
    let mut mio = Bytes::default();
    let mut sio = Bytes::default();
    // Warm up (the first preamble), then measure n frames back to back.
    mio.tx.extend(&frame);
    run(&mut m, &mut s, &mut mio, &mut sio, |_, _| {});
    for _ in 0..n {
        mio.tx.extend(&frame);
    }
    let ex = run(&mut m, &mut s, &mut mio, &mut sio, |_, _| {});
    // The tail (the last frame's closing preamble before idling) is counted once; it is the next frame's preamble
    // in steady traffic.
    (ex as f64 / n as f64, frame.len())
}

fn efficiency(name: &str, topic: &str, payload: &[u8]) {
    let msg = Request::Publish {
        id: 1,
        topic,
        payload,
        qos: QoS::AtLeastOnce,
        retain: false,
    };
    let (ex, frame_len) = exchanges_per_frame(&msg);
    let wire_bytes = ex / 8.0;
    let app = (topic.len() + payload.len()) as f64;
    let goodput = app / (ex * 2.0 * EDGE_US * 1e-6);
    println!(
        "{name}: frame {frame_len} B, {ex:.1} exchanges/frame = {wire_bytes:.1} B on the wire; \
         efficiency (topic+payload)/wire = {:.3}, payload/wire = {:.3}, frame/wire = {:.3}; \
         modelled goodput at {EDGE_US} µs/edge: {:.1} kB/s of topic+payload, {:.1} kB/s of payload",
        app / wire_bytes,
        payload.len() as f64 / wire_bytes,
        frame_len as f64 / wire_bytes,
        goodput / 1000.0,
        payload.len() as f64 / (ex * 2.0 * EDGE_US * 1e-6) / 1000.0,
    );
}

fn full_duplex_goodput() {
    // Both directions at once: the target publishes and the bridge delivers, 64-byte payloads.
    let payload = [0xA5u8; 64];
    let n = 500u32;
    let mut m = Master::new();
    let mut s = Slave::new();
    let mut mio: Port<65536, MAX_FRAME_LEN> = Port::new();
    let mut sio: Port<65536, MAX_FRAME_LEN> = Port::new();
    for i in 0..n {
        let id = i as u16;
        mio.send(&Request::Publish {
            id,
            topic: "sensors/t/012345",
            payload: &payload,
            qos: QoS::AtLeastOnce,
            retain: false,
        })
        .expect("room");
        sio.send(&Event::Message {
            id,
            topic: "sensors/t/012345",
            payload: &payload,
            qos: QoS::AtLeastOnce,
            retain: false,
            dup: false,
        })
        .expect("room");
    }
    let (mut got_m, mut got_s) = (0u32, 0u32);
    let ex = run(&mut m, &mut s, &mut mio, &mut sio, |a, b| {
        if a.received().is_some() {
            got_m += 1;
            a.release();
        }
        if b.received().is_some() {
            got_s += 1;
            b.release();
        }
    });
    assert_eq!((got_m, got_s), (n, n), "frames lost in the bench");
    let secs = ex as f64 * 2.0 * EDGE_US * 1e-6;
    println!(
        "full duplex, {n} publishes of 64 B each way at once: {ex} exchanges, modelled {:.1} kB/s of payload per \
         direction at {EDGE_US} µs/edge",
        n as f64 * 64.0 / secs / 1000.0
    );
}

fn engine_cost() {
    let mut frame = Vec::new();
    for i in 0..64u8 {
        frame.push(i.wrapping_mul(37) | 1);
    }
    frame.push(0);
    let rounds = 20_000;
    let mut m = Master::new();
    let mut s = Slave::new();
    let mut mio = Bytes::default();
    let mut sio = Bytes::default();
    for _ in 0..rounds {
        mio.tx.extend(&frame);
        sio.tx.extend(&frame);
    }
    let start = Instant::now();
    let ex = run(&mut m, &mut s, &mut mio, &mut sio, |_, _| {});
    let ns = start.elapsed().as_nanos() as f64;
    black_box((mio.rx, sio.rx));
    println!(
        "engine cost: {ex} exchanges in {:.1} ms: {:.1} ns per exchange for both engines = {:.1} ns/bit per engine \
         (each exchange moves one bit each way)",
        ns / 1e6,
        ns / ex as f64,
        ns / ex as f64 / 2.0
    );

    let mut m = Master::new();
    let mut s = Slave::new();
    let mut mio: Port<{ 1 << 20 }, MAX_FRAME_LEN> = Port::new();
    let mut sio: Port<{ 1 << 20 }, MAX_FRAME_LEN> = Port::new();
    let payload = [0x5Au8; 48];
    let frames = 5_000u32;
    for i in 0..frames {
        let msg = Request::Publish {
            id: i as u16,
            topic: "a/b",
            payload: &payload,
            qos: QoS::AtMostOnce,
            retain: false,
        };
        mio.send(&msg).expect("room");
        sio.send(&msg).expect("room");
    }
    let mut got = 0u32;
    let start = Instant::now();
    let ex = run(&mut m, &mut s, &mut mio, &mut sio, |a, b| {
        for p in [&mut *a as &mut Port<{ 1 << 20 }, MAX_FRAME_LEN>, b] {
            if let Some(msg) = p.received() {
                got += black_box(Request::decode(msg)).is_ok() as u32;
                p.release();
            }
        }
    });
    let ns = start.elapsed().as_nanos() as f64;
    assert_eq!(got, 2 * frames);
    println!(
        "with framing (COBS, CRC, postcard decode): {:.1} ns per exchange for both ends = {:.1} ns/bit per end",
        ns / ex as f64,
        ns / ex as f64 / 2.0
    );
}

fn main() {
    // `cargo test --benches` runs this too; keep it quick then.
    if std::env::args().any(|a| a == "--test") {
        return;
    }
    println!("protocol link bench (virtual time; {EDGE_US} µs per edge answer)");
    efficiency(
        "16 B topic + 16 B payload, QoS 1 publish",
        "sensors/t/012345",
        &[0x42; 16],
    );
    efficiency(
        "16 B topic + 64 B payload, QoS 1 publish",
        "sensors/t/012345",
        &[0x42; 64],
    );
    efficiency(
        "16 B topic + 64 B payload of 0xFF (worst stuffing)",
        "sensors/t/012345",
        &[0xFF; 64],
    );
    full_duplex_goodput();
    engine_cost();
}
