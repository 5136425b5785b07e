//! `xvs-bench gen`: the AF_XDP packet generator, and with `--rx` the
//! whole tester (generator and sink on one socket, one thread, one core).
//!
//! Traffic: `--flows` established flows visited in turn, and a share
//! `--new-pct` of frames opening new connections (TCP SYN, or the first
//! datagram of a new UDP flow) from flows never used before; TCP
//! established flows send ACKs or ACK+PSH data. Frames of `--size` bytes
//! (FCS included), at `--rate` frames per second or as fast as the socket
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

use crate::sink::{receive, RxSocket, SinkReport, SinkStats};
use crate::traffic::{monotonic_ns, Endpoints, Proto, Stamp, TcpEstablished, Template};
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;
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
    /// Virtual address.
    #[arg(long, default_value = "198.18.0.100")]
    pub vip: Ipv4Addr,
    /// Virtual port.
    #[arg(long, default_value_t = 80)]
    pub vport: u16,
    /// First client address (flows use 60000 ports per address).
    #[arg(long, default_value = "198.19.0.1")]
    pub cip: Ipv4Addr,
    /// Do not open the established TCP flows with SYNs first.
    #[arg(long)]
    pub skip_open: bool,
    /// Also receive on the socket (tester mode) and report loss,
    /// reordering and latency.
    #[arg(long)]
    pub rx: bool,
    /// Addresses whose frames the tester receives (default: the VIP).
    #[arg(long = "rx-addr")]
    pub rx_addrs: Vec<Ipv4Addr>,
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
}

/// Which frames open new connections: frame `seq` does when the running
/// count of new frames `floor(seq * ppm / 1e6)` steps up after it.
#[derive(Debug, Clone, Copy)]
struct Mix {
    ppm: u64,
    flows: u64,
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
            (seq - before) % self.flows
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

/// The socket: with or without the receiving half.
enum Socket {
    Tx(XskPort),
    TxRx(RxSocket),
}

impl Socket {
    fn port(&mut self) -> &mut XskPort {
        match self {
            Socket::Tx(p) => p,
            Socket::TxRx(s) => &mut s.port,
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

/// Run the generator (and the sink with `--rx`).
pub fn run(a: &GenArgs) -> Result<GenReport, String> {
    let ends = Endpoints {
        src_mac: mac(&a.src_mac)?,
        dst_mac: mac(&a.dst_mac)?,
        cip_base: a.cip,
        vip: a.vip,
        vport: a.vport,
    };
    let t = Template::new(a.proto, a.tcp, usize::from(a.size), &ends);
    let mut sock = if a.rx {
        let addrs = if a.rx_addrs.is_empty() {
            vec![a.vip]
        } else {
            a.rx_addrs.clone()
        };
        Socket::TxRx(RxSocket::open(&a.iface, &addrs)?)
    } else {
        Socket::Tx(XskPort::open(&a.iface, 0, 8192).map_err(|e| e.to_string())?)
    };
    let mut stats = a.rx.then(|| SinkStats::new(a.gue_port));
    let flows = a.flows.max(1);
    let secs = a.secs.clamp(0.0, 3600.0);
    if a.proto == Proto::Tcp && !a.skip_open {
        // Open the established flows: one SYN each (every frame new).
        let open = Mix {
            ppm: 1_000_000,
            flows: 0,
            new_base: 0,
        };
        let (n, _) = send_phase(
            &mut sock,
            &t,
            open,
            &mut stats,
            a.rate,
            (flows, 10.0_f64.min(secs + 1.0)),
            false,
        );
        drain(&mut sock, &mut stats, n, 100);
        if let Some(s) = stats.as_mut() {
            s.reset();
        }
    }
    let mix = Mix {
        ppm: (a.new_pct.clamp(0.0, 100.0) * 10_000.0) as u64,
        flows,
        new_base: a.new_base,
    };
    let (sent, el) = send_phase(
        &mut sock,
        &t,
        mix,
        &mut stats,
        a.rate,
        (a.max, secs),
        !a.quiet,
    );
    let el = el.max(1e-6);
    // Rates are over the sending time; what arrives in the drain counts
    // as received, not as lost.
    let rx_during = stats.as_ref().map_or(0, SinkStats::received);
    drain(&mut sock, &mut stats, sent, a.drain_ms);
    let xsk_rx_dropped = match &sock {
        Socket::TxRx(s) => s.port.kernel_stats().map(|k| k.rx_dropped()).unwrap_or(0),
        Socket::Tx(_) => 0,
    };
    let rx = stats.map(|s| s.report());
    let received = rx.as_ref().map_or(0, |r| r.received);
    Ok(GenReport {
        proto: a.proto.name().into(),
        size: a.size,
        flows,
        new_pct: a.new_pct,
        rate: a.rate,
        secs: el,
        sent,
        new_conns: mix.new_before(sent),
        sent_mpps: sent as f64 / el / 1e6,
        rx_mpps: rx_during.max(received.min(sent)) as f64 / el / 1e6,
        loss_pct: if a.rx && sent > 0 {
            100.0 * sent.saturating_sub(received) as f64 / sent as f64
        } else {
            0.0
        },
        rx,
        xsk_rx_dropped,
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
