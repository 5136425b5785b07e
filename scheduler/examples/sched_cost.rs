//! A fixed amount of scheduling work, for instruction counts: the loops of
//! `xvs-bench sched` (its destinations, flows and churn) without the clock.
//!
//! Wall-clock figures on a shared machine vary by 2x between runs; counts
//! of instructions under callgrind do not. Run it twice with different
//! call counts and divide the difference by the extra calls, so set-up and
//! the scheduler's first build drop out:
//!
//! ```text
//! valgrind --tool=callgrind target/release/examples/sched_cost wlc 100 churn 20000
//! valgrind --tool=callgrind target/release/examples/sched_cost wlc 100 churn 40000
//! ```

use std::collections::VecDeque;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::Ordering;
use xvs_scheduler::{Dest, Flow};

/// Connections open in the churn loop, as the bench's `WINDOW`.
const WINDOW: usize = 1024;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 5 {
        eprintln!("usage: sched_cost NAME DESTS static|churn CALLS");
        std::process::exit(2);
    }
    let name = args[1].as_str();
    let n: usize = args[2].parse().expect("DESTS is a number");
    let churn = match args[3].as_str() {
        "static" => false,
        "churn" => true,
        other => panic!("static or churn, not {other}"),
    };
    let calls: usize = args[4].parse().expect("CALLS is a number");

    // The bench's destinations: weights 1..=8, counts spread.
    let dests: Vec<Dest> = (0..n)
        .map(|i| {
            let k = i as u32;
            let addr = IpAddr::V4(Ipv4Addr::from(0xC612_0000 | (k + 1)));
            let d = Dest::new(addr, 80, 1 + (i % 8) as i32);
            let mix = k.wrapping_mul(2_654_435_761);
            d.load.active.store(mix % 13, Ordering::Relaxed);
            d.load.inactive.store((mix >> 8) % 29, Ordering::Relaxed);
            d
        })
        .collect();
    // The bench's flows: 4096 of them over 1024 virtual addresses.
    let flows: Vec<Flow> = (0..4096u32)
        .map(|i| {
            let mix = i.wrapping_mul(0x9E37_79B9);
            Flow {
                proto: 6,
                saddr: IpAddr::V4(Ipv4Addr::from(0xC613_0000 | (mix >> 16))),
                sport: 1024 + (mix & 0x7fff) as u16,
                daddr: IpAddr::V4(Ipv4Addr::from(0xC612_8000 | (i % 1024))),
                dport: 80,
            }
        })
        .collect();
    let flags = xvs_scheduler::SCHED_FLAG_1 | xvs_scheduler::SCHED_FLAG_2;
    let mut s = xvs_scheduler::new(name, flags).expect("a scheduler name");
    s.update(&dests);
    let mut now = 1_000_000_000u64;
    let mut open: VecDeque<usize> = VecDeque::with_capacity(WINDOW + 1);
    for k in 0..calls {
        now += 1000;
        let f = &flows[k & (flows.len() - 1)];
        let got = s.schedule(black_box(&dests), f, now);
        if !churn {
            black_box(got);
            continue;
        }
        if let Some(i) = got {
            let d = &dests[i];
            d.load.active.fetch_add(1, Ordering::Relaxed);
            d.note_bound();
            open.push_back(i);
        }
        if open.len() > WINDOW {
            if let Some(j) = open.pop_front() {
                let d = &dests[j];
                d.load.active.fetch_sub(1, Ordering::Relaxed);
                d.note_unbound();
            }
        }
    }
}
