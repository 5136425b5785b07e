//! The receiving end: counts the generator's frames per destination,
//! reordering, and one-way latency from the stamps (both ends read
//! CLOCK_MONOTONIC of the same machine).
//!
//! [`SinkStats`] is fed by the tester (`gen --rx`, which receives on its
//! own socket) and by the standalone `sink` command, which binds an AF_XDP
//! socket on a real server's interface and steers the frames addressed to
//! the given addresses to it with xvs's own XDP steering program (an entry
//! with port 0 per address and protocol: every port).

use crate::traffic::{mac_str, monotonic_ns, read_stamp, TS_MASK};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::time::{Duration, Instant};
use xvs_dataplane::io::xdp::Steering;
use xvs_dataplane::io::xsk::XskPort;
use xvs_dataplane::io::Port;
use xvs_dataplane::pipeline::Verdict;

/// Latencies above this are not recorded (a stale or foreign stamp).
const LAT_MAX_NS: u64 = 60_000_000_000;

/// Frames seen for one destination (MAC and outermost IP address).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DestCount {
    /// Destination MAC.
    pub mac: String,
    /// Outermost destination address.
    pub ip: String,
    /// Frames received.
    pub frames: u64,
    /// Frames whose sequence number was below one seen before for this
    /// destination.
    pub reordered: u64,
    #[serde(skip)]
    key: ([u8; 6], u128),
    #[serde(skip)]
    last_seq: Option<u32>,
}

/// One-way latency percentiles in ns.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Latency {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Maximum.
    pub max: u64,
    /// Mean.
    pub mean: f64,
}

/// What a sink saw.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SinkReport {
    /// Stamped frames received.
    pub received: u64,
    /// Their bytes (as received, FCS excluded).
    pub bytes: u64,
    /// Frames without a readable stamp.
    pub foreign: u64,
    /// Frames that arrived after a later-sent frame of their destination.
    pub reordered: u64,
    /// One-way latency.
    pub latency: Latency,
    /// Per destination, in order of first appearance.
    pub dests: Vec<DestCount>,
}

/// Running counters of a sink.
#[derive(Debug)]
pub struct SinkStats {
    gue_port: u16,
    received: u64,
    bytes: u64,
    foreign: u64,
    dests: Vec<DestCount>,
    hist: Histogram<u64>,
}

impl SinkStats {
    /// Empty counters; `gue_port` is the UDP port of GUE-encapsulated
    /// frames (looked through).
    pub fn new(gue_port: u16) -> Self {
        SinkStats {
            gue_port,
            received: 0,
            bytes: 0,
            foreign: 0,
            dests: Vec::new(),
            hist: Histogram::new_with_bounds(1, LAT_MAX_NS, 3).expect("valid histogram bounds"),
        }
    }

    /// Stamped frames received so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Account one received frame at time `now` (monotonic ns).
    #[inline]
    pub fn record(&mut self, frame: &[u8], now: u64) {
        let Some(s) = read_stamp(frame, self.gue_port) else {
            self.foreign += 1;
            return;
        };
        self.received += 1;
        self.bytes += frame.len() as u64;
        let lat = (now & TS_MASK).wrapping_sub(s.ts48) & TS_MASK;
        if lat < LAT_MAX_NS {
            let _ = self.hist.record(lat.max(1));
        }
        let ip = match s.dst_ip {
            IpAddr::V4(a) => u128::from(a.to_ipv6_mapped()),
            IpAddr::V6(a) => u128::from(a),
        };
        let key = (s.dst_mac, ip);
        let d = match self.dests.iter().position(|d| d.key == key) {
            Some(i) => &mut self.dests[i],
            None => {
                self.dests.push(DestCount {
                    mac: mac_str(&s.dst_mac),
                    ip: s.dst_ip.to_string(),
                    frames: 0,
                    reordered: 0,
                    key,
                    last_seq: None,
                });
                self.dests.last_mut().expect("just pushed")
            }
        };
        d.frames += 1;
        match d.last_seq {
            Some(last) if (s.seq.wrapping_sub(last) as i32) < 0 => d.reordered += 1,
            _ => d.last_seq = Some(s.seq),
        }
    }

    /// Add the counts of `other` (the sink of another queue) to these.
    pub fn merge(&mut self, other: &SinkStats) {
        self.received += other.received;
        self.bytes += other.bytes;
        self.foreign += other.foreign;
        let _ = self.hist.add(&other.hist);
        for d in &other.dests {
            match self.dests.iter_mut().find(|x| x.key == d.key) {
                Some(x) => {
                    x.frames += d.frames;
                    x.reordered += d.reordered;
                }
                None => self.dests.push(d.clone()),
            }
        }
    }

    /// Forget everything (after a warm-up).
    pub fn reset(&mut self) {
        *self = SinkStats::new(self.gue_port);
    }

    /// The report so far.
    pub fn report(&self) -> SinkReport {
        let h = &self.hist;
        SinkReport {
            received: self.received,
            bytes: self.bytes,
            foreign: self.foreign,
            reordered: self.dests.iter().map(|d| d.reordered).sum(),
            latency: Latency {
                count: h.len(),
                p50: h.value_at_quantile(0.5),
                p99: h.value_at_quantile(0.99),
                p999: h.value_at_quantile(0.999),
                max: h.max(),
                mean: h.mean(),
            },
            dests: self.dests.clone(),
        }
    }
}

/// The interface index of `iface` (in the current network namespace).
pub fn ifindex(iface: &str) -> Result<u32, String> {
    std::fs::read_to_string(format!("/sys/class/net/{iface}/ifindex"))
        .map_err(|e| format!("{iface}: {e}"))?
        .trim()
        .parse()
        .map_err(|e| format!("{iface}: ifindex: {e}"))
}

/// An AF_XDP socket on `iface` queue 0 receiving the TCP and UDP frames
/// addressed to `addrs` (xvs's steering program, attached here; detached
/// on drop).
pub struct RxSocket {
    /// The socket (declared first: closed before the program goes).
    pub port: XskPort,
    _steering: Steering,
}

impl RxSocket {
    /// Bind the socket and steer `addrs` to it.
    pub fn open(iface: &str, addrs: &[IpAddr]) -> Result<Self, String> {
        let mut s = RxSockets::open(iface, addrs, 1)?;
        Ok(RxSocket {
            port: s.ports.pop().expect("one queue, one socket"),
            _steering: s.steering,
        })
    }
}

/// [`RxSocket`] on every queue of a multi-queue link: socket `q` receives
/// what arrives on queue `q` (a thread each).
pub struct RxSockets {
    /// The sockets, by queue (declared first: closed before the program
    /// goes).
    pub ports: Vec<XskPort>,
    steering: Steering,
}

impl RxSockets {
    /// Bind a socket on each of queues `0..queues` and steer `addrs` to
    /// them.
    pub fn open(iface: &str, addrs: &[IpAddr], queues: u32) -> Result<Self, String> {
        let mut steering = Steering::load(ifindex(iface)?, None).map_err(|e| e.to_string())?;
        steering.attach(false).map_err(|e| e.to_string())?;
        let mut ports = Vec::new();
        for q in 0..queues.max(1) {
            let port = XskPort::open(iface, q, 8192).map_err(|e| format!("queue {q}: {e}"))?;
            steering.set_xsk(q, port.fd()).map_err(|e| e.to_string())?;
            ports.push(port);
        }
        for a in addrs {
            for proto in [6u8, 17] {
                match *a {
                    IpAddr::V4(a) => steering.add_service(proto, a, 0),
                    IpAddr::V6(a) => steering.add_service6(proto, a, 0),
                }
                .map_err(|e| e.to_string())?;
            }
        }
        Ok(RxSockets { ports, steering })
    }
}

/// Receive one batch (waiting up to `timeout_ms`) into `stats`.
#[inline]
pub fn receive(port: &mut XskPort, stats: &mut SinkStats, timeout_ms: i32) -> usize {
    let now = monotonic_ns();
    port.poll(timeout_ms, |_, f| {
        stats.record(f.bytes(), now);
        Verdict::Pass
    })
    .unwrap_or(0)
}

/// Arguments of `xvs-bench sink`.
#[derive(Debug, Clone, clap::Args)]
pub struct SinkArgs {
    /// Interface to receive on (queue 0; use single-queue veths).
    #[arg(long)]
    pub iface: String,
    /// Addresses whose TCP and UDP frames are received (repeat).
    #[arg(long = "addr", required = true)]
    pub addrs: Vec<IpAddr>,
    /// Stop after this many seconds.
    #[arg(long, default_value_t = 10.0)]
    pub secs: f64,
    /// Stop after this many frames.
    #[arg(long, default_value_t = 1_000_000_000)]
    pub max: u64,
    /// Stop after this many seconds without a frame (0: never).
    #[arg(long, default_value_t = 0.0)]
    pub idle: f64,
    /// UDP port of GUE encapsulation (looked through).
    #[arg(long, default_value_t = 6080)]
    pub gue_port: u16,
}

/// `xvs-bench sink`: receive until a bound, printing progress every
/// second to stderr and the report as JSON on stdout.
pub fn main(a: &SinkArgs) -> Result<SinkReport, String> {
    let mut rx = RxSocket::open(&a.iface, &a.addrs)?;
    let mut stats = SinkStats::new(a.gue_port);
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(a.secs.clamp(0.0, 3600.0));
    let mut next = start + Duration::from_secs(1);
    let mut last_rx = Instant::now();
    let mut prev = 0u64;
    eprintln!("sink: ready on {}", a.iface);
    while stats.received() < a.max && Instant::now() < deadline {
        if receive(&mut rx.port, &mut stats, 100) > 0 {
            last_rx = Instant::now();
        } else if a.idle > 0.0 && last_rx.elapsed().as_secs_f64() > a.idle {
            break;
        }
        if Instant::now() >= next {
            let r = stats.received();
            eprintln!(
                "sink: {:5.1} s  received {r}  ({:.3} Mpps)  p99 {:.1} us",
                start.elapsed().as_secs_f64(),
                (r - prev) as f64 / 1e6,
                stats.hist.value_at_quantile(0.99) as f64 / 1e3
            );
            prev = r;
            next += Duration::from_secs(1);
        }
    }
    Ok(stats.report())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traffic::{Endpoints, Proto, Stamp, TcpEstablished, Template};

    #[test]
    fn counts_per_destination_reordering_and_latency() {
        let t = Template::new(
            Proto::Udp,
            TcpEstablished::Ack,
            64,
            &Endpoints {
                src_mac: [2, 0, 0, 0, 0, 1],
                dst_mac: [2, 0, 0, 0, 0, 2],
                cip_base: std::net::Ipv4Addr::new(198, 19, 0, 1).into(),
                vip: std::net::Ipv4Addr::new(198, 18, 0, 100).into(),
                vport: 80,
            },
        );
        let mut s = SinkStats::new(6080);
        for (seq, mac) in [(0u32, 0x11u8), (1, 0x12), (3, 0x11), (2, 0x11), (4, 0x12)] {
            let mut f = t.frame.clone();
            t.stamp(
                &mut f,
                Stamp {
                    flow: 1,
                    new_conn: false,
                    seq,
                    ts: 1_000,
                },
            );
            f[5] = mac;
            s.record(&f, 1_000 + 5_000);
        }
        s.record(&[0u8; 20], 0);
        let r = s.report();
        assert_eq!((r.received, r.foreign, r.reordered), (5, 1, 1));
        assert_eq!(r.dests.len(), 2);
        assert_eq!(r.dests[0].frames, 3);
        assert_eq!(r.dests[0].reordered, 1);
        assert!(
            r.latency.p99 >= 4_990 && r.latency.p99 <= 5_010,
            "{:?}",
            r.latency
        );
    }
}
