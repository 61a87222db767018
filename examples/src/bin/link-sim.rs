//! The link simulator: a target (link master) and a bridge (link slave) run the real blocking link drivers in two
//! threads over simulated wires with random latency and stalls, exchange numbered publications both ways, suffer a
//! few injected faults, and report what arrived. Needs nothing but this repository.
//!
//! `cargo run --release -p examples --bin link-sim -- [--frames N] [--seed S] [--faults N]`

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use protocol::driver::{blocking, Progress, Timing};
use protocol::sim::{bridge_pins, target_pins, Chaos, ChaosConfig, Line, SimDelay, Wires};
use protocol::{Event, Port, QoS, Request, MAX_FRAME_LEN};

const CHAOS: ChaosConfig = ChaosConfig {
    latency_per_million: 10_000,
    max_latency_ns: 20_000,
    stall_per_million: 20,
    stall_us: (500, 5_000),
    drop_per_million: 0,
};

struct Args {
    frames: u32,
    seed: u64,
    faults: u32,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        frames: 5_000,
        seed: 1,
        faults: 10,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match flag.as_str() {
            "--frames" => args.frames = value("--frames")?.parse().map_err(|e| format!("--frames: {e}"))?,
            "--seed" => args.seed = value("--seed")?.parse().map_err(|e| format!("--seed: {e}"))?,
            "--faults" => args.faults = value("--faults")?.parse().map_err(|e| format!("--faults: {e}"))?,
            "-h" | "--help" => {
                println!("usage: link-sim [--frames N] [--seed S] [--faults N]");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    if args.frames == 0 || args.frames > u16::MAX as u32 {
        return Err("--frames must be between 1 and 65535".into());
    }
    Ok(args)
}

fn payload(side: u32, i: u32) -> Vec<u8> {
    (0..(i * 7 + side) % 65).map(|k| (k * 31 + i + side) as u8).collect()
}

#[derive(Default)]
struct Report {
    received: u32,
    damaged: u32,
    out_of_order: u32,
    exchanges: u64,
    resyncs: u32,
    frame_errors: u32,
    errors: u32,
}

type SimPort = Port<1024, MAX_FRAME_LEN>;

/// Takes received frames; checks each is the one the peer sent under that number, in order.
fn take(port: &mut SimPort, target: bool, last: &mut Option<u32>, r: &mut Report, rx: &AtomicU32) {
    while let Some(bytes) = port.received() {
        let got = if target {
            match Event::decode(bytes) {
                Ok(Event::Message { id, payload: p, .. }) => Some((id as u32, p == payload(1, id as u32).as_slice())),
                _ => None,
            }
        } else {
            match Request::decode(bytes) {
                Ok(Request::Publish { id, payload: p, .. }) => Some((id as u32, p == payload(0, id as u32).as_slice())),
                _ => None,
            }
        };
        match got {
            Some((id, true)) => {
                if last.is_some_and(|l| id <= l) {
                    r.out_of_order += 1;
                }
                *last = Some(id);
                r.received += 1;
            }
            _ => r.damaged += 1,
        }
        rx.fetch_add(1, Ordering::Relaxed);
        port.release();
    }
}

fn send(port: &mut SimPort, target: bool, next: &mut u32, total: u32) {
    while *next < total && port.tx_pending() < 256 {
        let id = *next as u16;
        let p = payload(if target { 0 } else { 1 }, *next);
        let topic = "demo/link";
        let r = if target {
            port.send(&Request::Publish {
                id,
                topic,
                payload: &p,
                qos: QoS::AtLeastOnce,
                retain: false,
            })
        } else {
            port.send(&Event::Message {
                id,
                topic,
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

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("link-sim: {e}");
            return ExitCode::from(2);
        }
    };
    let wires = Wires::new();
    let stop = Arc::new(AtomicBool::new(false));
    let rx = Arc::new([AtomicU32::new(0), AtomicU32::new(0)]);
    let timing = Timing {
        timeout_us: 1_000_000,
        ..Timing::default()
    };
    let (frames, seed) = (args.frames, args.seed);
    println!(
        "link-sim: {frames} frames each way, seed {seed}, {} injected faults",
        args.faults
    );

    let target = {
        let (wires, stop, rx) = (Arc::clone(&wires), Arc::clone(&stop), Arc::clone(&rx));
        thread::spawn(move || {
            let (tc, td, bc, bd, _rst) = target_pins(&wires, Chaos::new(seed, CHAOS));
            let mut drv = blocking::Master::new(tc, td, bc, bd, SimDelay, timing).expect("simulated pins cannot fail");
            let mut port = SimPort::new();
            let (mut r, mut next, mut last) = (Report::default(), 0, None);
            while !stop.load(Ordering::Relaxed) {
                send(&mut port, true, &mut next, frames);
                match drv.poll(&mut port, 4096) {
                    Ok(Progress::Idle) => thread::yield_now(),
                    Ok(_) => {}
                    Err(e) => {
                        r.errors += 1;
                        eprintln!("target: link error: {e}");
                    }
                }
                take(&mut port, true, &mut last, &mut r, &rx[0]);
            }
            let (st, ps) = (drv.stats(), port.stats());
            (r.exchanges, r.resyncs, r.frame_errors) =
                (st.exchanges, st.resyncs, ps.crc_errors + ps.malformed + ps.overlong);
            r
        })
    };
    let bridge = {
        let (wires, stop, rx) = (Arc::clone(&wires), Arc::clone(&stop), Arc::clone(&rx));
        thread::spawn(move || {
            let (bc, bd, tc, td, _rst) = bridge_pins(&wires, Chaos::new(seed ^ 0x5A5A, CHAOS));
            let mut drv = blocking::Slave::new(bc, bd, tc, td, timing).expect("simulated pins cannot fail");
            let mut port = SimPort::new();
            let (mut r, mut next, mut last) = (Report::default(), 0, None);
            while !stop.load(Ordering::Relaxed) {
                send(&mut port, false, &mut next, frames);
                match drv.poll(&mut port, 4096) {
                    Ok(Progress::Idle) => thread::yield_now(),
                    Ok(_) => {}
                    Err(e) => {
                        r.errors += 1;
                        eprintln!("bridge: link error: {e}");
                    }
                }
                take(&mut port, false, &mut last, &mut r, &rx[1]);
            }
            let (st, ps) = (drv.stats(), port.stats());
            (r.exchanges, r.resyncs, r.frame_errors) =
                (st.exchanges, st.resyncs, ps.crc_errors + ps.malformed + ps.overlong);
            r
        })
    };

    let start = Instant::now();
    let mut chaos = Chaos::new(seed ^ 0xFA17, ChaosConfig::NONE);
    for k in 0..args.faults {
        thread::sleep(Duration::from_millis(20));
        let (line, watch) = if k % 2 == 0 {
            (Line::TClk, Line::BClk)
        } else {
            (Line::BClk, Line::TClk)
        };
        let _ = wires.glitch_seen(line, watch, Duration::from_micros(50 + chaos.next_u64() % 200));
    }
    // Wait for the traffic to finish (counts stop moving).
    let mut last = (u32::MAX, u32::MAX);
    loop {
        thread::sleep(Duration::from_millis(200));
        let now = (rx[0].load(Ordering::Relaxed), rx[1].load(Ordering::Relaxed));
        if now == last || start.elapsed() > Duration::from_secs(300) {
            break;
        }
        last = now;
    }
    let elapsed = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    let t = target.join().expect("target thread");
    let b = bridge.join().expect("bridge thread");
    let damaged = t.damaged + b.damaged + t.out_of_order + b.out_of_order;
    println!(
        "target -> bridge: {}/{frames} frames intact ({} dropped by the link after faults); link resyncs {}, frame errors {}",
        b.received,
        frames - b.received,
        b.resyncs,
        b.frame_errors
    );
    println!(
        "bridge -> target: {}/{frames} frames intact ({} dropped by the link after faults); link resyncs {}, frame errors {}",
        t.received,
        frames - t.received,
        t.resyncs,
        t.frame_errors
    );
    println!(
        "{} exchanges in {:.2} s on simulated wires ({:.0} exchanges/s, stalls included); timeouts {}",
        t.exchanges,
        elapsed.as_secs_f64(),
        t.exchanges as f64 / elapsed.as_secs_f64(),
        t.errors + b.errors
    );
    println!("damaged or out-of-order frames delivered: {damaged}");
    // Frames lost to faults are expected (the layers above resend by id); damaged or reordered ones never are.
    if damaged == 0 && b.received > 0 && t.received > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
