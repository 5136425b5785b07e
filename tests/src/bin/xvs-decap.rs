//! `xvs-decap`: user-space tunnel endpoints and a user-space NAT for the
//! TUN and NAT test topologies, built on the data plane's own rewrite
//! functions. This kernel has no `ipip` (nor `fou`, `gre`) module, so a real
//! server cannot decapsulate in the kernel: `decap` does it instead.
//!
//! ```text
//! xvs-decap decap --dev NAME [--mode ipip|gue|gre] [--port P] [--lifetime-s S]
//! xvs-decap encap --dev NAME --iface IF --src ADDR --rip ADDR --rs-mac MAC
//!                 --peer-mac MAC [--mode ipip|gue|gre] [--port P] [--gue-csum]
//!                 [--mtu M] [--lifetime-s S]
//! xvs-decap nat --client-if IF --server-if IF --client-mac MAC --rs-mac MAC
//!               --vip ADDR --vport P --rip ADDR --rport P [--lifetime-s S]
//! ```
//!
//! * `decap` (on a real server) creates TUN device NAME (up, rp_filter 0),
//!   receives the tunnelled packets addressed to this host (a raw IPv4
//!   socket of protocol 4 or 47, or a UDP socket on port P for GUE, of
//!   both families), checks the outer header, strips it and writes the
//!   inner packet (IPv4, or IPv6 inside GUE) to the TUN device: the kernel
//!   receives it as if it had arrived there, delivers it to the VIP on
//!   `lo`, and the server answers the client directly.
//! * `encap` (on the director, a stand-in for xvsd's TUN forwarding)
//!   creates TUN device NAME; every packet the kernel routes into it is
//!   framed as if received from `--peer-mac`, passed to
//!   `xvs_dataplane::xmit::tun::xmit` and the result (the encapsulated
//!   frame to the real server, or an ICMP fragmentation-needed back to the
//!   peer) is sent on IF through a packet socket, byte for byte.
//! * `nat` (on the director, a stand-in for xvsd's NAT forwarding) reads
//!   the IPv4 frames of both interfaces through packet sockets and forwards
//!   those of one connection set, VIP:vport ⇄ RIP:rport, rewritten by
//!   `xvs_dataplane::xmit::nat` (ICMP errors about them too).
//!
//! Each prints `ready NAME` on stdout once it can work, and exits after its
//! lifetime (default 300 s) at the latest; counters go to stderr on exit.

#![forbid(unsafe_code)]

use std::io::Write;
use std::net::{Ipv4Addr, Ipv6Addr, UdpSocket};
use std::os::fd::AsFd;
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use xvs_dataplane::io::rawsock::{self, PacketSocket, RawIpv4Socket, TunDevice, TunMode};
use xvs_dataplane::wire::checksum;
use xvs_dataplane::wire::eth::{self, EthernetFrame, Mac, ETHERTYPE_IPV4};
use xvs_dataplane::wire::icmp::IcmpPacket;
use xvs_dataplane::wire::ipv4::{
    Ipv4Packet, PROTO_GRE, PROTO_ICMP, PROTO_IPIP, PROTO_TCP, PROTO_UDP,
};
use xvs_dataplane::wire::ipv6::{self, Ipv6Packet};
use xvs_dataplane::xmit::{nat, tun};

/// GUE's protocol of an IPv6 inner packet.
const PROTO_IPV6: u8 = ipv6::NEXT_IPV6;

const USAGE: &str = "usage:
  xvs-decap decap --dev NAME [--mode ipip|gue|gre] [--port P] [--lifetime-s S]
  xvs-decap encap --dev NAME --iface IF --src ADDR --rip ADDR --rs-mac MAC --peer-mac MAC
                  [--mode ipip|gue|gre] [--port P] [--gue-csum] [--mtu M] [--lifetime-s S]
  xvs-decap nat --client-if IF --server-if IF --client-mac MAC --rs-mac MAC
                --vip ADDR --vport P --rip ADDR --rport P [--lifetime-s S]";

/// Headroom left in front of frames handed to the tunnel code.
const HEADROOM: usize = 64;
/// Buffer size: headroom plus the largest frame.
const BUF: usize = 4096;
/// How often blocked reads wake up to check the lifetime.
const TICK: Duration = Duration::from_millis(200);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let res = match args.first().map(String::as_str) {
        Some(cmd @ ("decap" | "encap" | "nat")) => {
            Opts::parse(&args[1..]).and_then(|o| match cmd {
                "decap" => decap(&o),
                "encap" => encap(&o),
                _ => nat_fwd(&o),
            })
        }
        _ => Err("a command (decap, encap or nat) is required".into()),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("xvs-decap: {msg}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Ipip,
    Gue,
    Gre,
}

#[derive(Debug)]
struct Opts {
    dev: Option<String>,
    mode: Mode,
    port: u16,
    gue_csum: bool,
    iface: Option<String>,
    src: Option<Ipv4Addr>,
    rip: Option<Ipv4Addr>,
    rs_mac: Option<Mac>,
    peer_mac: Option<Mac>,
    mtu: u16,
    lifetime: Duration,
    client_if: Option<String>,
    server_if: Option<String>,
    client_mac: Option<Mac>,
    vip: Option<Ipv4Addr>,
    vport: Option<u16>,
    rport: Option<u16>,
}

fn parse_mac(s: &str) -> Result<Mac, String> {
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 {
        return Err(format!("bad MAC {s:?}"));
    }
    let mut m = [0u8; 6];
    for (d, p) in m.iter_mut().zip(parts) {
        *d = u8::from_str_radix(p, 16).map_err(|_| format!("bad MAC {s:?}"))?;
    }
    Ok(m)
}

fn parse<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, String> {
    v.parse().map_err(|_| format!("bad value {v:?} for {flag}"))
}

impl Opts {
    fn parse(args: &[String]) -> Result<Opts, String> {
        let mut o = Opts {
            dev: None,
            mode: Mode::Ipip,
            port: 6080,
            gue_csum: false,
            iface: None,
            src: None,
            rip: None,
            rs_mac: None,
            peer_mac: None,
            mtu: 1500,
            lifetime: Duration::from_secs(300),
            client_if: None,
            server_if: None,
            client_mac: None,
            vip: None,
            vport: None,
            rport: None,
        };
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            if flag == "--gue-csum" {
                o.gue_csum = true;
                continue;
            }
            let v = it
                .next()
                .ok_or_else(|| format!("{flag} needs a value"))?
                .as_str();
            match flag.as_str() {
                "--dev" => o.dev = Some(v.to_owned()),
                "--mode" => {
                    o.mode = match v {
                        "ipip" => Mode::Ipip,
                        "gue" => Mode::Gue,
                        "gre" => Mode::Gre,
                        _ => return Err(format!("unknown mode {v:?}")),
                    }
                }
                "--port" => o.port = parse(flag, v)?,
                "--iface" => o.iface = Some(v.to_owned()),
                "--src" => o.src = Some(parse(flag, v)?),
                "--rip" => o.rip = Some(parse(flag, v)?),
                "--rs-mac" => o.rs_mac = Some(parse_mac(v)?),
                "--peer-mac" => o.peer_mac = Some(parse_mac(v)?),
                "--mtu" => o.mtu = parse(flag, v)?,
                "--lifetime-s" => o.lifetime = Duration::from_secs(parse(flag, v)?),
                "--client-if" => o.client_if = Some(v.to_owned()),
                "--server-if" => o.server_if = Some(v.to_owned()),
                "--client-mac" => o.client_mac = Some(parse_mac(v)?),
                "--vip" => o.vip = Some(parse(flag, v)?),
                "--vport" => o.vport = Some(parse(flag, v)?),
                "--rport" => o.rport = Some(parse(flag, v)?),
                _ => return Err(format!("unknown option {flag}")),
            }
        }
        Ok(o)
    }
}

fn need<T: Clone>(v: &Option<T>, flag: &str) -> Result<T, String> {
    v.clone().ok_or_else(|| format!("{flag} is required"))
}

/// Creates TUN device `name`, up, with reverse-path filtering off (its
/// packets come from clients routed elsewhere).
fn tun_up(name: &str) -> Result<TunDevice, String> {
    let dev = TunDevice::open(name, TunMode::Tun).map_err(|e| format!("TUN {name}: {e}"))?;
    let out = Command::new("ip")
        .args(["link", "set", "dev", dev.name(), "up"])
        .output()
        .map_err(|e| format!("ip link: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "ip link set {} up: {}",
            dev.name(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let rp = format!("/proc/sys/net/ipv4/conf/{}/rp_filter", dev.name());
    std::fs::write(&rp, "0").map_err(|e| format!("{rp}: {e}"))?;
    Ok(dev)
}

fn ready(what: &str) {
    println!("ready {what}");
    let _ = std::io::stdout().flush();
}

fn iface_mac(name: &str) -> Result<Mac, String> {
    let p = format!("/sys/class/net/{name}/address");
    let s = std::fs::read_to_string(&p).map_err(|e| format!("{p}: {e}"))?;
    parse_mac(s.trim())
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock
            | std::io::ErrorKind::TimedOut
            | std::io::ErrorKind::Interrupted
    )
}

/// The inner packet of a tunnelled datagram (IPv4; or IPv6 in GUE), or
/// why not.
fn inner_of(mode: Mode, pkt: &[u8]) -> Result<&[u8], &'static str> {
    let inner = match mode {
        Mode::Ipip | Mode::Gre => {
            let ip = Ipv4Packet::new_checked(pkt).map_err(|_| "bad outer IPv4")?;
            if !ip.verify_checksum() {
                return Err("bad outer IPv4 checksum");
            }
            if ip.is_fragment() {
                return Err("outer fragment");
            }
            let want = if mode == Mode::Ipip {
                PROTO_IPIP
            } else {
                PROTO_GRE
            };
            if ip.protocol() != want {
                return Err("wrong outer protocol");
            }
            let (start, end) = (ip.header_len(), ip.total_len());
            let body = &pkt[start..end];
            if mode == Mode::Gre {
                // Plain GRE only: no checksum, key or sequence; IPv4 inside.
                if body.len() < 4 || body[..4] != [0, 0, 0x08, 0x00] {
                    return Err("unsupported GRE header");
                }
                &body[4..]
            } else {
                body
            }
        }
        Mode::Gue => {
            // `pkt` is the UDP payload: the GUE header, then the inner packet.
            let b = pkt.first().ok_or("empty GUE datagram")?;
            if b >> 6 != 0 || b & 0x20 != 0 {
                return Err("not a GUE version 0 data message");
            }
            let hlen = 4 + usize::from(b & 0x1f) * 4;
            if pkt.len() < hlen || (pkt[1] != PROTO_IPIP && pkt[1] != PROTO_IPV6) {
                return Err("GUE carries neither IPv4 nor IPv6");
            }
            if pkt[1] == PROTO_IPV6 {
                let inner = &pkt[hlen..];
                let ip = Ipv6Packet::new_checked(inner).map_err(|_| "bad inner IPv6")?;
                return Ok(&inner[..ipv6::HEADER_LEN + ip.payload_len()]);
            }
            &pkt[hlen..]
        }
    };
    let ip = Ipv4Packet::new_checked(inner).map_err(|_| "bad inner IPv4")?;
    Ok(&inner[..ip.total_len()])
}

#[derive(Default)]
struct Counters {
    ok: AtomicU64,
    bad: AtomicU64,
}

impl Counters {
    fn report(&self, what: &str) {
        eprintln!(
            "xvs-decap {what}: ok={} bad={}",
            self.ok.load(Ordering::Relaxed),
            self.bad.load(Ordering::Relaxed)
        );
    }
}

enum Rx {
    Raw(RawIpv4Socket),
    Udp(UdpSocket),
}

fn decap(o: &Opts) -> Result<(), String> {
    let name = need(&o.dev, "--dev")?;
    let dev = tun_up(&name)?;
    let deadline = Instant::now() + o.lifetime;
    let counters = Counters::default();
    let mut buf = vec![0u8; 65536];
    let rx = match o.mode {
        Mode::Ipip | Mode::Gre => {
            let p = if o.mode == Mode::Ipip {
                PROTO_IPIP
            } else {
                PROTO_GRE
            };
            let s = RawIpv4Socket::open(p).map_err(|e| format!("raw socket: {e}"))?;
            s.set_read_timeout(Some(TICK))
                .map_err(|e| format!("timeout: {e}"))?;
            Rx::Raw(s)
        }
        Mode::Gue => {
            // Both families where IPv6 is on (a dual-stack socket), IPv4
            // alone where it is not.
            let s = UdpSocket::bind((Ipv6Addr::UNSPECIFIED, o.port))
                .or_else(|_| UdpSocket::bind((Ipv4Addr::UNSPECIFIED, o.port)))
                .map_err(|e| format!("UDP port {}: {e}", o.port))?;
            s.set_read_timeout(Some(TICK))
                .map_err(|e| format!("timeout: {e}"))?;
            Rx::Udp(s)
        }
    };
    ready(dev.name());
    while Instant::now() < deadline {
        let got = match &rx {
            Rx::Raw(s) => s.recv(&mut buf),
            Rx::Udp(s) => s.recv(&mut buf),
        };
        let n = match got {
            Ok(n) => n,
            Err(e) if is_timeout(&e) => continue,
            Err(e) => return Err(format!("receive: {e}")),
        };
        match inner_of(o.mode, &buf[..n]) {
            Ok(inner) => match dev.write(inner) {
                Ok(_) => {
                    counters.ok.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    eprintln!("xvs-decap: TUN write: {e}");
                    counters.bad.fetch_add(1, Ordering::Relaxed);
                }
            },
            Err(why) => {
                eprintln!("xvs-decap: dropped a {n}-byte packet: {why}");
                counters.bad.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    counters.report("decap");
    Ok(())
}

fn encap(o: &Opts) -> Result<(), String> {
    let name = need(&o.dev, "--dev")?;
    let iface = need(&o.iface, "--iface")?;
    let kind = match o.mode {
        Mode::Ipip => tun::TunKind::Ipip,
        Mode::Gre => tun::TunKind::Gre,
        Mode::Gue => tun::TunKind::Gue {
            port: o.port,
            checksum: o.gue_csum,
        },
    };
    let our_mac = iface_mac(&iface)?;
    let peer_mac = need(&o.peer_mac, "--peer-mac")?;
    let tunnel = tun::Tunnel {
        kind,
        src: need(&o.src, "--src")?,
        rip: need(&o.rip, "--rip")?,
        src_mac: our_mac,
        dst_mac: need(&o.rs_mac, "--rs-mac")?,
        mtu: o.mtu,
    };
    let dev = tun_up(&name)?;
    let tx = PacketSocket::bind(&iface, 0).map_err(|e| format!("packet socket on {iface}: {e}"))?;
    let deadline = Instant::now() + o.lifetime;
    let (mut sent, mut frag_needed, mut errors) = (0u64, 0u64, 0u64);
    let mut ident: u16 = 1;
    let mut buf = vec![0u8; BUF];
    ready(dev.name());
    while Instant::now() < deadline {
        match rawsock::wait_readable(dev.as_fd(), TICK) {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) if is_timeout(&e) => continue,
            Err(e) => return Err(format!("poll: {e}")),
        }
        let pkt_at = HEADROOM + eth::HEADER_LEN;
        let n = match dev.read(&mut buf[pkt_at..]) {
            Ok(n) => n,
            Err(e) if is_timeout(&e) => continue,
            Err(e) => return Err(format!("TUN read: {e}")),
        };
        {
            let mut e = EthernetFrame::new_checked(&mut buf[HEADROOM..])
                .map_err(|e| format!("frame: {e}"))?;
            e.set_dst(our_mac);
            e.set_src(peer_mac);
            e.set_ethertype(ETHERTYPE_IPV4);
        }
        match tun::xmit(&mut buf, HEADROOM, eth::HEADER_LEN + n, &tunnel, ident) {
            Ok(out) => {
                ident = ident.wrapping_add(1);
                match tx.send(&buf[out.range()]) {
                    Ok(_) => match out {
                        tun::TunOutcome::Encapsulated { .. } => sent += 1,
                        tun::TunOutcome::FragNeeded { .. } => frag_needed += 1,
                    },
                    Err(e) => {
                        eprintln!("xvs-decap: send: {e}");
                        errors += 1;
                    }
                }
            }
            Err(e) => {
                eprintln!("xvs-decap: not tunnelled: {e}");
                errors += 1;
            }
        }
    }
    eprintln!("xvs-decap encap: sent={sent} frag_needed={frag_needed} errors={errors}");
    Ok(())
}

/// One direction of the user-space NAT.
struct NatDir {
    rx: PacketSocket,
    tx: Arc<PacketSocket>,
    /// Translate frames of this (address, port) as destination (inbound)
    /// or source (outbound).
    match_addr: Ipv4Addr,
    match_port: u16,
    inbound: bool,
    /// Rewrite to this address and port.
    to_addr: Ipv4Addr,
    to_port: u16,
    src_mac: Mac,
    dst_mac: Mac,
}

impl NatDir {
    /// `Some(is_icmp)` when the frame belongs to the translated connection.
    fn matches(&self, frame: &[u8]) -> Option<bool> {
        let e = EthernetFrame::new_checked(frame).ok()?;
        if e.ethertype() != ETHERTYPE_IPV4 {
            return None;
        }
        let ip = Ipv4Packet::new_checked(e.payload()).ok()?;
        let l4 = ip.payload();
        match ip.protocol() {
            PROTO_TCP | PROTO_UDP if l4.len() >= 4 => {
                let (addr, port) = if self.inbound {
                    (ip.dst(), u16::from_be_bytes([l4[2], l4[3]]))
                } else {
                    (ip.src(), u16::from_be_bytes([l4[0], l4[1]]))
                };
                (addr == self.match_addr && port == self.match_port).then_some(false)
            }
            PROTO_ICMP => {
                IcmpPacket::new_checked(l4).ok()?;
                let info = nat::parse_icmp_error(frame).ok()?;
                // The quoted datagram went the other way.
                let (addr, port) = if self.inbound {
                    (info.quoted.src, info.quoted.sport)
                } else {
                    (info.quoted.dst, info.quoted.dport)
                };
                (addr == self.match_addr && port == self.match_port).then_some(true)
            }
            _ => None,
        }
    }

    fn run(&self, deadline: Instant, c: &Counters) -> Result<(), String> {
        let mut buf = vec![0u8; 65536];
        while Instant::now() < deadline {
            let n = match self.rx.recv_incoming(&mut buf) {
                Ok(n) => n,
                Err(e) if is_timeout(&e) => continue,
                Err(e) => return Err(format!("receive: {e}")),
            };
            let f = &mut buf[..n];
            let Some(icmp) = self.matches(f) else {
                continue;
            };
            // Hosts with TX checksum offload (the default) send partial
            // checksums, which a packet socket shows as they are: complete
            // them before rewriting, as xvsd does.
            checksum::complete_partial(f);
            let (a, p, s, d) = (self.to_addr, self.to_port, self.src_mac, self.dst_mac);
            let r = match (self.inbound, icmp) {
                (true, false) => nat::xmit_in(f, a, p, s, d),
                (false, false) => nat::xmit_out(f, a, p, s, d),
                (true, true) => nat::icmp_in(f, a, p, s, d),
                (false, true) => nat::icmp_out(f, a, p, s, d),
            };
            match r.map(|()| self.tx.send(f)) {
                Ok(Ok(_)) => {
                    c.ok.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Err(e)) => {
                    eprintln!("xvs-decap nat: send: {e}");
                    c.bad.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    eprintln!("xvs-decap nat: not translated: {e}");
                    c.bad.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        Ok(())
    }
}

fn nat_fwd(o: &Opts) -> Result<(), String> {
    let cif = need(&o.client_if, "--client-if")?;
    let sif = need(&o.server_if, "--server-if")?;
    let vip = need(&o.vip, "--vip")?;
    let vport = need(&o.vport, "--vport")?;
    let rip = need(&o.rip, "--rip")?;
    let rport = need(&o.rport, "--rport")?;
    let open = |ifname: &str| -> Result<PacketSocket, String> {
        let s = PacketSocket::bind(ifname, ETHERTYPE_IPV4)
            .map_err(|e| format!("packet socket on {ifname}: {e}"))?;
        s.set_read_timeout(Some(TICK))
            .map_err(|e| format!("timeout: {e}"))?;
        Ok(s)
    };
    let inbound = NatDir {
        rx: open(&cif)?,
        tx: Arc::new(PacketSocket::bind(&sif, 0).map_err(|e| format!("{sif}: {e}"))?),
        match_addr: vip,
        match_port: vport,
        inbound: true,
        to_addr: rip,
        to_port: rport,
        src_mac: iface_mac(&sif)?,
        dst_mac: need(&o.rs_mac, "--rs-mac")?,
    };
    let outbound = NatDir {
        rx: open(&sif)?,
        tx: Arc::new(PacketSocket::bind(&cif, 0).map_err(|e| format!("{cif}: {e}"))?),
        match_addr: rip,
        match_port: rport,
        inbound: false,
        to_addr: vip,
        to_port: vport,
        src_mac: iface_mac(&cif)?,
        dst_mac: need(&o.client_mac, "--client-mac")?,
    };
    let deadline = Instant::now() + o.lifetime;
    let counters = Arc::new((Counters::default(), Counters::default()));
    let c2 = counters.clone();
    ready("nat");
    let t = std::thread::spawn(move || outbound.run(deadline, &c2.1));
    let r = inbound.run(deadline, &counters.0);
    let r2 = t
        .join()
        .map_err(|_| "outbound thread panicked".to_string())?;
    counters.0.report("nat in");
    counters.1.report("nat out");
    r.and(r2)
}
