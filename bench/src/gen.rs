//! `xvs-bench gen`: the AF_XDP packet generator, and with `--rx` the
//! whole tester (generator and sink on one socket, one thread, one core).
//!
//! Traffic: `--flows` established flows visited in turn, and a share
//! `--new-pct` of frames opening new connections (TCP SYN, or the first
//! datagram of a new UDP flow) from flows never used before; TCP
//! established flows send ACKs or ACK+PSH data. IPv4, or IPv6 when
//! `--vip` is an IPv6 address (`--cip` then too). Frames of `--size` bytes
//! (FCS included; IPv6 raises the smallest, see `traffic::min_size`), at `--rate` frames per second or as fast as the socket
//! takes them, for at most `--secs` seconds and `--max` frames. With TCP
//! the established flows are first opened with one SYN each (not
//! counted). A progress line goes to stderr every second; the report goes
//! to stdout as one `report {json}` line, then `sent N`.
//!
//! With `--rx` the same socket also receives (xvs's steering program on
//! the interface sends it the frames for `--rx-addr`): the tester of a
//! one-armed forwarder, whose output comes back on the link it was sent
//! on. Receiving between bursts on the one core the generator has is
//! cheaper than a second process fighting it for that core.
//!
//! With `--queues N` (a link of N queues) a thread per queue sends and
//! receives on its own socket, its own share of the flows and of the
//! rate: on a veth, frames sent on queue q arrive on the peer's queue q,
//! and a forwarder with a worker per queue answers on the same queue.
//! The threads' counts are added into one report.

use crate::sink::{receive, RxSockets, SinkReport, SinkStats};
use crate::traffic::{monotonic_ns, Endpoints, Proto, Stamp, TcpEstablished, Template};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::time::{Duration, Instant};
use xvs_dataplane::io::xsk::XskPort;

/// What the generator prints before its count (parsed by `fwd`).
pub const SENT: &str = "sent ";
/// What the generator prints before its JSON report.
pub const REPORT: &str = "report ";
/// Frames per burst.
const BURST: usize = 64;
/// At a fixed rate, frames are sent in bursts of at least this many (the
/// generator sleeps in between).
const MIN_PACED_BURST: usize = 8;

/// Arguments of `xvs-bench gen`.
#[derive(Debug, Clone, clap::Args)]
pub struct GenArgs {
    /// Interface to send on (queue 0).
    #[arg(long)]
    pub iface: String,
    /// Queues to send and receive on, a thread each (the flows and the
    /// rate are split between them).
    #[arg(long, default_value_t = 1)]
    pub queues: u32,
    /// Source MAC (the interface's).
    #[arg(long)]
    pub src_mac: String,
    /// Destination MAC (the forwarder's).
    #[arg(long)]
    pub dst_mac: String,
    /// Transport protocol.
    #[arg(long, value_enum, default_value_t = Proto::Udp)]
    pub proto: Proto,
    /// What established TCP flows send.
    #[arg(long, value_enum, default_value_t = TcpEstablished::Data)]
    pub tcp: TcpEstablished,
    /// Established flows, visited in turn.
    #[arg(long, default_value_t = 1000)]
    pub flows: u64,
    /// Percentage of frames that open a new connection (0-100).
    #[arg(long, default_value_t = 0.0)]
    pub new_pct: f64,
    /// Number of the first new flow after the established ones (give
    /// successive runs against one forwarder different bases).
    #[arg(long, default_value_t = 0)]
    pub new_base: u64,
    /// Frame size in bytes, FCS included (64, 128, 256, 512, 1024, 1280,
    /// 1518, or anything in between).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(64..=1518))]
    pub size: u16,
    /// Frames per second (0: as fast as possible).
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Stop sending after this many seconds.
    #[arg(long, default_value_t = 5.0)]
    pub secs: f64,
    /// Stop sending after this many frames.
    #[arg(long, default_value_t = 100_000_000)]
    pub max: u64,
    /// Virtual address (IPv6: IPv6 frames, at least 76 bytes for UDP and
    /// 84 for TCP).
    #[arg(long, default_value = "198.18.0.100")]
    pub vip: IpAddr,
    /// Virtual port.
    #[arg(long, default_value_t = 80)]
    pub vport: u16,
    /// First client address (flows use 60000 ports per address), of the
    /// VIP's family.
    #[arg(long, default_value = "198.19.0.1")]
    pub cip: IpAddr,
    /// Do not open the established TCP flows with SYNs first.
    #[arg(long)]
    pub skip_open: bool,
    /// Also receive on the socket (tester mode) and report loss,
    /// reordering and latency.
    #[arg(long)]
    pub rx: bool,
    /// Addresses whose frames the tester receives (default: the VIP).
    #[arg(long = "rx-addr")]
    pub rx_addrs: Vec<IpAddr>,
    /// UDP port of GUE encapsulation (looked through by the sink).
    #[arg(long, default_value_t = 6080)]
    pub gue_port: u16,
    /// How long the tester keeps receiving after the last frame, in ms.
    #[arg(long, default_value_t = 300)]
    pub drain_ms: u64,
    /// No progress lines.
    #[arg(long)]
    pub quiet: bool,
}

/// What a generator run did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GenReport {
    /// Protocol.
    pub proto: String,
    /// Frame size (FCS included).
    pub size: u16,
    /// Established flows.
    pub flows: u64,
    /// Share of new connections in percent.
    pub new_pct: f64,
    /// Target rate (0: as fast as possible).
    pub rate: f64,
    /// Seconds spent sending.
    pub secs: f64,
    /// Frames sent.
    pub sent: u64,
    /// New connections among them.
    pub new_conns: u64,
    /// Send rate in Mpps.
    pub sent_mpps: f64,
    /// What came back (tester mode).
    pub rx: Option<SinkReport>,
    /// Receive rate in Mpps (tester mode).
    pub rx_mpps: f64,
    /// Lost frames in percent of those sent (tester mode).
    pub loss_pct: f64,
    /// Frames the kernel dropped on the socket's RX ring (tester mode).
    pub xsk_rx_dropped: u64,
    /// Frames received per queue (tester mode): which queues the
    /// forwarder answered on.
    #[serde(default)]
    pub rx_queues: Vec<u64>,
}

/// Which frames open new connections: frame `seq` does when the running
/// count of new frames `floor(seq * ppm / 1e6)` steps up after it.
#[derive(Debug, Clone, Copy)]
struct Mix {
    ppm: u64,
    /// Established flows `first..first + flows`.
    first: u64,
    flows: u64,
    /// New flows are numbered from `flows + new_base`.
    new_base: u64,
}

impl Mix {
    fn new_before(&self, seq: u64) -> u64 {
        (u128::from(seq) * u128::from(self.ppm) / 1_000_000) as u64
    }

    #[inline]
    fn stamp(&self, seq: u64, ts: u64) -> Stamp {
        let before = self.new_before(seq);
        let new_conn = self.new_before(seq + 1) > before;
        let flow = if new_conn {
            self.flows + self.new_base + before
        } else {
            self.first + (seq - before) % self.flows
        };
        Stamp {
            flow,
            new_conn,
            seq: seq as u32,
            ts,
        }
    }
}

fn mac(s: &str) -> Result<[u8; 6], String> {
    xvs_dataplane::director::parse_mac(s).ok_or_else(|| format!("bad MAC {s:?}"))
}

/// The socket of one queue: with or without the receiving half (the
/// steering program that feeds it is held by [`run`]).
enum Socket {
    Tx(XskPort),
    TxRx(XskPort),
}

impl Socket {
    fn port(&mut self) -> &mut XskPort {
        match self {
            Socket::Tx(p) | Socket::TxRx(p) => p,
        }
    }
}

/// Send `n` frames numbered from `seq0` at `rate` (0: at once), receiving
/// between bursts; returns how many were sent.
fn send_phase(
    sock: &mut Socket,
    t: &Template,
    mix: Mix,
    stats: &mut Option<SinkStats>,
    rate: f64,
    (n, secs): (u64, f64),
    progress: bool,
) -> (u64, f64) {
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(secs);
    let mut next_line = start + Duration::from_secs(1);
    let (mut sent, mut last_sent, mut last_rx) = (0u64, 0u64, 0u64);
    let mut now = Instant::now();
    while sent < n && now < deadline {
        let due = if rate > 0.0 {
            ((now - start).as_secs_f64() * rate) as u64 + 1
        } else {
            u64::MAX
        };
        let want = due.min(n).saturating_sub(sent).min(BURST as u64) as usize;
        if want > 0 {
            let ts = monotonic_ns();
            let did = sock.port().send_burst(
                &t.frame,
                want,
                |seq, f| t.stamp(f, mix.stamp(seq, ts)),
                sent,
            );
            sent += did as u64;
            if did == 0 {
                // TX ring full: the kernel stopped taking frames (send
                // budget); only a wake-up gets it going again.
                sock.port().kick_tx();
            }
        }
        let mut got = 0;
        if let Some(st) = stats.as_mut() {
            got = receive(sock.port(), st, 0);
        }
        if got == 0 && rate > 0.0 && want < MIN_PACED_BURST {
            // Ahead of the rate: sleep until a small burst is due, so the
            // kernel's softirq work on this core (the link's receive side)
            // runs instead of waiting behind a spinning generator.
            let next = (sent + MIN_PACED_BURST as u64) as f64 / rate - (now - start).as_secs_f64();
            if next > 60e-6 {
                std::thread::sleep(Duration::from_secs_f64(next.min(1e-3) - 50e-6));
            }
        }
        now = Instant::now();
        if progress && now >= next_line {
            let rx = stats.as_ref().map_or(0, SinkStats::received);
            match stats {
                Some(_) => eprintln!(
                    "gen: {:5.1} s  sent {sent} ({:.3} Mpps)  received {rx} ({:.3} Mpps)",
                    (now - start).as_secs_f64(),
                    (sent - last_sent) as f64 / 1e6,
                    (rx - last_rx) as f64 / 1e6
                ),
                None => eprintln!(
                    "gen: {:5.1} s  sent {sent} ({:.3} Mpps)",
                    (now - start).as_secs_f64(),
                    (sent - last_sent) as f64 / 1e6
                ),
            }
            last_sent = sent;
            last_rx = rx;
            next_line += Duration::from_secs(1);
        }
    }
    (sent, start.elapsed().as_secs_f64())
}

/// Keep receiving (tester mode) for up to `ms`, or until `want` frames
/// came back; always wait for the transmissions to complete.
fn drain(sock: &mut Socket, stats: &mut Option<SinkStats>, want: u64, ms: u64) {
    let deadline = Instant::now() + Duration::from_millis(ms);
    if let Some(st) = stats.as_mut() {
        while Instant::now() < deadline && st.received() < want {
            receive(sock.port(), st, 10);
        }
    }
    sock.port().drain(100);
}

/// What one queue's thread did.
struct Part {
    sent: u64,
    secs: f64,
    new_conns: u64,
    rx_during: u64,
    stats: Option<SinkStats>,
    xsk_rx_dropped: u64,
}

/// Queue `q` of `queues`: its share of the established flows (the first
/// queues take one more when they do not divide evenly) and of the rate.
fn run_queue(a: &GenArgs, t: &Template, sock: &mut Socket, q: u64, queues: u64) -> Part {
    let total = a.flows.max(1);
    let flows = (total / queues + u64::from(q < total % queues)).max(1);
    let first = q * (total / queues) + q.min(total % queues);
    let rate = a.rate / queues as f64;
    let mut stats = a.rx.then(|| SinkStats::new(a.gue_port));
    let secs = a.secs.clamp(0.0, 3600.0);
    if a.proto == Proto::Tcp && !a.skip_open {
        // Open the established flows: one SYN each (every frame new).
        let open = Mix {
            ppm: 1_000_000,
            first: 0,
            flows: 0,
            new_base: first,
        };
        let (n, _) = send_phase(
            sock,
            t,
            open,
            &mut stats,
            rate,
            (flows, 10.0_f64.min(secs + 1.0)),
            false,
        );
        drain(sock, &mut stats, n, 100);
        if let Some(s) = stats.as_mut() {
            s.reset();
        }
    }
    // New flows after every queue's established ones, 2^24 apart.
    let mix = Mix {
        ppm: (a.new_pct.clamp(0.0, 100.0) * 10_000.0) as u64,
        first,
        flows,
        new_base: total - flows + a.new_base + (q << 24),
    };
    let (sent, el) = send_phase(
        sock,
        t,
        mix,
        &mut stats,
        rate,
        (a.max / queues, secs),
        !a.quiet && q == 0,
    );
    // Rates are over the sending time; what arrives in the drain counts
    // as received, not as lost.
    let rx_during = stats.as_ref().map_or(0, SinkStats::received);
    drain(sock, &mut stats, sent, a.drain_ms);
    let xsk_rx_dropped = match sock {
        Socket::TxRx(p) => p.kernel_stats().map(|k| k.rx_dropped()).unwrap_or(0),
        Socket::Tx(_) => 0,
    };
    Part {
        sent,
        secs: el,
        new_conns: mix.new_before(sent),
        rx_during,
        stats,
        xsk_rx_dropped,
    }
}

/// Run the generator (and the sink with `--rx`).
pub fn run(a: &GenArgs) -> Result<GenReport, String> {
    let ends = Endpoints {
        src_mac: mac(&a.src_mac)?,
        dst_mac: mac(&a.dst_mac)?,
        cip_base: a.cip,
        vip: a.vip,
        vport: a.vport,
    };
    if a.vip.is_ipv6() != a.cip.is_ipv6() {
        return Err(format!(
            "--vip {} and --cip {} are of different families",
            a.vip, a.cip
        ));
    }
    let t = Template::new(a.proto, a.tcp, usize::from(a.size), &ends);
    let queues = a.queues.clamp(1, 64);
    // The steering program (with --rx) lives until every thread is done.
    let (mut socks, _rx) = if a.rx {
        let addrs = if a.rx_addrs.is_empty() {
            vec![a.vip]
        } else {
            a.rx_addrs.clone()
        };
        let mut s = RxSockets::open(&a.iface, &addrs, queues)?;
        let socks: Vec<Socket> = s.ports.drain(..).map(Socket::TxRx).collect();
        (socks, Some(s))
    } else {
        let socks = (0..queues)
            .map(|q| {
                XskPort::open(&a.iface, q, 8192)
                    .map(Socket::Tx)
                    .map_err(|e| format!("queue {q}: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        (socks, None)
    };
    let n = u64::from(queues);
    let parts: Vec<Part> = if n == 1 {
        vec![run_queue(a, &t, &mut socks[0], 0, 1)]
    } else {
        std::thread::scope(|sc| {
            let hs: Vec<_> = socks
                .iter_mut()
                .enumerate()
                .map(|(q, sock)| {
                    let t = &t;
                    sc.spawn(move || run_queue(a, t, sock, q as u64, n))
                })
                .collect();
            hs.into_iter()
                .map(|h| h.join().expect("a queue's thread panicked"))
                .collect()
        })
    };
    drop(socks);
    let sent: u64 = parts.iter().map(|p| p.sent).sum();
    let el = parts.iter().map(|p| p.secs).fold(0.0, f64::max).max(1e-6);
    let rx_during: u64 = parts.iter().map(|p| p.rx_during).sum();
    let mut stats: Option<SinkStats> = None;
    for p in &parts {
        if let Some(s) = &p.stats {
            match stats.as_mut() {
                Some(all) => all.merge(s),
                None => {
                    let mut all = SinkStats::new(a.gue_port);
                    all.merge(s);
                    stats = Some(all);
                }
            }
        }
    }
    let rx = stats.map(|s| s.report());
    let received = rx.as_ref().map_or(0, |r| r.received);
    Ok(GenReport {
        proto: a.proto.name().into(),
        // As sent: IPv6 raises the smallest sizes.
        size: (t.frame.len() + crate::traffic::FCS) as u16,
        flows: a.flows.max(1),
        new_pct: a.new_pct,
        rate: a.rate,
        secs: el,
        sent,
        new_conns: parts.iter().map(|p| p.new_conns).sum(),
        sent_mpps: sent as f64 / el / 1e6,
        rx_mpps: rx_during.max(received.min(sent)) as f64 / el / 1e6,
        loss_pct: if a.rx && sent > 0 {
            100.0 * sent.saturating_sub(received) as f64 / sent as f64
        } else {
            0.0
        },
        rx,
        xsk_rx_dropped: parts.iter().map(|p| p.xsk_rx_dropped).sum(),
        rx_queues: parts
            .iter()
            .map(|p| p.stats.as_ref().map_or(0, SinkStats::received))
            .collect(),
    })
}

/// `xvs-bench gen`: run and print the report and the count.
pub fn main(a: &GenArgs) -> i32 {
    match run(a) {
        Ok(r) => {
            if !a.quiet {
                eprintln!(
                    "gen: sent {} frames in {:.2} s ({:.3} Mpps){}",
                    r.sent,
                    r.secs,
                    r.sent_mpps,
                    match &r.rx {
                        Some(rx) => format!(
                            ", received {} ({:.3} Mpps), loss {:.3}%, p99 {:.1} us",
                            rx.received,
                            r.rx_mpps,
                            r.loss_pct,
                            rx.latency.p99 as f64 / 1e3
                        ),
                        None => String::new(),
                    }
                );
            }
            println!(
                "{REPORT}{}",
                serde_json::to_string(&r).expect("a report serialises")
            );
            println!("{SENT}{}", r.sent);
            0
        }
        Err(e) => {
            eprintln!("xvs-bench gen: {e}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mix_spreads_new_connections_evenly() {
        let m = Mix {
            ppm: 100_000,
            first: 0,
            flows: 10,
            new_base: 1000,
        };
        let stamps: Vec<Stamp> = (0..100).map(|s| m.stamp(s, 0)).collect();
        let new: Vec<&Stamp> = stamps.iter().filter(|s| s.new_conn).collect();
        assert_eq!(new.len(), 10);
        // New flows are distinct and beyond the established ones.
        let mut flows: Vec<u64> = new.iter().map(|s| s.flow).collect();
        flows.dedup();
        assert_eq!(flows.len(), 10);
        assert!(flows.iter().all(|&f| f >= 1010));
        // Established frames cycle through all flows.
        let est: std::collections::BTreeSet<u64> = stamps
            .iter()
            .filter(|s| !s.new_conn)
            .map(|s| s.flow)
            .collect();
        assert_eq!(est.len(), 10);
    }
}
