//! Probes below the socket layer: `vip` (a half-open TCP probe to the VIP
//! through one real server) and `ping` (ICMP echo).
//!
//! The director's kernel cannot send to the VIP through a chosen server:
//! the VIP is the director's own address. So the SYN is written by hand
//! and put on the wire addressed to the server's MAC (direct routing) or
//! inside the server's tunnel (IP-in-IP, GUE or GRE), the way the data
//! plane forwards a client's SYN. Only a server that really accepts the
//! VIP (VIP on `lo`, right `arp_ignore`/`rp_filter`) answers, from the VIP,
//! with a SYN-ACK or a RST. That answer is read off the interface with a
//! packet socket (the kernel drops it: its source is one of our own
//! addresses), and a SYN-ACK is closed with a RST sent the same way.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use xvs_config::check::ProbeKey;
use xvs_config::tun::TunKind;
use xvs_dataplane::io::rawsock::{PacketSocket, RawIpv4Socket};

use super::probe::{left, Outcome};
use super::{ProbeCtx, VipPath};

const ETH_P_IP: u16 = 0x0800;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_ACK: u8 = 0x10;

/// A different source port / echo id for each probe.
static SERIAL: AtomicU32 = AtomicU32::new(0);

fn serial() -> u32 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    nanos ^ SERIAL.fetch_add(0x9e37, Ordering::Relaxed).rotate_left(16)
}

/// The Internet checksum of `parts` (RFC 1071), folded and complemented.
pub fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum = 0u32;
    let mut odd: Option<u8> = None;
    for p in parts {
        for &b in p.iter() {
            match odd.take() {
                Some(hi) => sum += u32::from(u16::from_be_bytes([hi, b])),
                None => odd = Some(b),
            }
        }
    }
    if let Some(hi) = odd {
        sum += u32::from(u16::from_be_bytes([hi, 0]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An IPv4 packet `src` → `dst` carrying a TCP SYN `sport` → `dport` with
/// sequence number `seq` (MSS option 1460), checksums filled in.
pub fn syn_packet(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, seq: u32) -> Vec<u8> {
    tcp_packet(src, dst, sport, dport, seq, TCP_SYN)
}

/// The RST that closes what our SYN opened on the server (sequence
/// number `seq` + 1, as its SYN-ACK acknowledges).
pub fn rst_packet(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, seq: u32) -> Vec<u8> {
    tcp_packet(src, dst, sport, dport, seq.wrapping_add(1), TCP_RST)
}

fn tcp_packet(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    seq: u32,
    flags: u8,
) -> Vec<u8> {
    let mut tcp = vec![0u8; if flags == TCP_SYN { 24 } else { 20 }];
    tcp[0..2].copy_from_slice(&sport.to_be_bytes());
    tcp[2..4].copy_from_slice(&dport.to_be_bytes());
    tcp[4..8].copy_from_slice(&seq.to_be_bytes());
    tcp[12] = ((tcp.len() / 4) as u8) << 4;
    tcp[13] = flags;
    if flags == TCP_SYN {
        tcp[14..16].copy_from_slice(&64240u16.to_be_bytes());
        tcp[20..24].copy_from_slice(&[2, 4, 0x05, 0xb4]);
    }
    let mut pseudo = [0u8; 12];
    pseudo[0..4].copy_from_slice(&src.octets());
    pseudo[4..8].copy_from_slice(&dst.octets());
    pseudo[9] = 6;
    pseudo[10..12].copy_from_slice(&(tcp.len() as u16).to_be_bytes());
    let c = checksum(&[&pseudo, &tcp]);
    tcp[16..18].copy_from_slice(&c.to_be_bytes());

    let mut ip = vec![0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&((20 + tcp.len()) as u16).to_be_bytes());
    ip[4..6].copy_from_slice(&(seq as u16).to_be_bytes());
    ip[6] = 0x40; // DF
    ip[8] = 64;
    ip[9] = 6;
    ip[12..16].copy_from_slice(&src.octets());
    ip[16..20].copy_from_slice(&dst.octets());
    let c = checksum(&[&ip]);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    ip.extend_from_slice(&tcp);
    ip
}

/// Whether IPv4 packet `pkt` is the answer to our SYN: TCP from
/// `vip:vport` to `src:sport`, SYN-ACK or RST. Returns which.
pub fn syn_answer(
    pkt: &[u8],
    vip: Ipv4Addr,
    vport: u16,
    src: Ipv4Addr,
    sport: u16,
) -> Option<&'static str> {
    if pkt.len() < 20 || pkt[0] >> 4 != 4 || pkt[9] != 6 {
        return None;
    }
    let ihl = usize::from(pkt[0] & 0x0f) * 4;
    let tcp = pkt.get(ihl..ihl + 14)?;
    if pkt[12..16] != vip.octets() || pkt[16..20] != src.octets() {
        return None;
    }
    if u16::from_be_bytes([tcp[0], tcp[1]]) != vport
        || u16::from_be_bytes([tcp[2], tcp[3]]) != sport
    {
        return None;
    }
    let flags = tcp[13];
    if flags & TCP_RST != 0 {
        Some("RST")
    } else if flags & (TCP_SYN | TCP_ACK) == TCP_SYN | TCP_ACK {
        Some("SYN-ACK")
    } else {
        None
    }
}

/// What goes to the server for an inner packet `inner` in tunnel `kind`:
/// the IP protocol of the outer packet (`None`: UDP, GUE) and its payload
/// (the outer IPv4 header is the kernel's, as the UDP header for GUE).
pub fn encapsulate(kind: TunKind, inner: Vec<u8>) -> (Option<u8>, Vec<u8>) {
    let with = |header: &[u8]| {
        let mut v = Vec::with_capacity(header.len() + inner.len());
        v.extend_from_slice(header);
        v.extend_from_slice(&inner);
        v
    };
    match kind {
        TunKind::Ipip => (Some(4), inner),
        // Flags and version 0, protocol type IPv4 (RFC 2784).
        TunKind::Gre => (Some(47), with(&[0, 0, 0x08, 0x00])),
        // GUE version 0, data, no options, proto/ctype 4 (IPv4).
        TunKind::Gue { .. } => (None, with(&[0, 4, 0, 0])),
    }
}

/// The `vip` probe of `key` along `ctx.path`.
pub fn probe(key: &ProbeKey, ctx: &ProbeCtx, deadline: Instant) -> Outcome {
    let (IpAddr::V4(rip), Some((IpAddr::V4(vip), vport))) = (key.addr, key.vip) else {
        return Err("vip checks need an IPv4 server and an IPv4 service".into());
    };
    let vport = key.spec.port.unwrap_or(vport);
    let sport = 32768 + (serial() % 28000) as u16;
    let seq = serial();
    let cell = match &ctx.path {
        VipPath::None => return Err("vip checks need a direct-routing or tunnel server".into()),
        VipPath::Dr(cell) | VipPath::Tun(_, cell) => cell,
    };
    let oif = cell
        .oif()
        .ok_or("no route to the server on a served interface")?;
    let src = cell.src().ok_or("no source address towards the server")?;
    let ifname = ifname(oif)?;
    // The answer comes from the VIP, one of the director's own addresses:
    // the kernel drops it as a martian before any IP socket could see it,
    // so it is read off the interface, where the SYN-ACK arrives.
    let sock = PacketSocket::bind(&ifname, ETH_P_IP).map_err(|e| format!("packet socket: {e}"))?;
    let server_mac = match &ctx.path {
        VipPath::Tun(..) => None,
        _ => Some(cell.mac().ok_or("the server's MAC is not resolved yet")?),
    };
    let our_mac = iface_mac(&ifname)?;
    // A packet to the VIP through this server, as the data plane sends a
    // client's: in a frame to its MAC, or in its tunnel.
    let send = |pkt: Vec<u8>| -> Result<(), String> {
        let sent = match (&ctx.path, server_mac) {
            (VipPath::Tun(kind, _), _) => match (kind, encapsulate(*kind, pkt)) {
                (TunKind::Gue { port, .. }, (_, payload)) => UdpSocket::bind("0.0.0.0:0")
                    .and_then(|u| u.send_to(&payload, SocketAddr::new(IpAddr::V4(rip), *port))),
                (_, (Some(proto), payload)) => {
                    RawIpv4Socket::open(proto).and_then(|tx| tx.send_to(&payload, rip))
                }
                (_, (None, _)) => return Err("no tunnel protocol".into()),
            },
            (_, Some(mac)) => {
                let mut frame = Vec::with_capacity(14 + pkt.len());
                frame.extend_from_slice(&mac);
                frame.extend_from_slice(&our_mac);
                frame.extend_from_slice(&ETH_P_IP.to_be_bytes());
                frame.extend_from_slice(&pkt);
                sock.send(&frame)
            }
            (_, None) => return Err("no way to the server".into()),
        };
        sent.map(|_| ()).map_err(|e| format!("send: {e}"))
    };
    send(syn_packet(src, vip, sport, vport, seq))?;
    let via = if server_mac.is_some() {
        "via"
    } else {
        "via tunnel to"
    };
    let mut buf = vec![0u8; 2048];
    loop {
        let t = left(deadline).map_err(|_| format!("no answer from {vip}:{vport} {via} {rip}"))?;
        sock.set_read_timeout(Some(t))
            .map_err(|e| format!("receive: {e}"))?;
        match sock.recv_incoming(&mut buf) {
            Ok(n) if n > 14 && buf[12..14] == ETH_P_IP.to_be_bytes() => {
                // Direct routing: the answer must come from that server.
                if server_mac.is_some_and(|m| buf[6..12] != m) {
                    continue;
                }
                match syn_answer(&buf[14..n], vip, vport, src, sport) {
                    Some("SYN-ACK") => {
                        // Close the half-open connection on the server (our
                        // kernel will not: to it, the VIP's answer is a
                        // martian). Best effort: the probe has succeeded.
                        let _ = send(rst_packet(src, vip, sport, vport, seq));
                        return Ok(None);
                    }
                    Some(_) => return Ok(None),
                    None => {}
                }
            }
            Ok(_) => {}
            Err(e) if is_timeout(&e) => {}
            Err(e) => return Err(format!("receive: {e}")),
        }
    }
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock
            | std::io::ErrorKind::TimedOut
            | std::io::ErrorKind::Interrupted
    )
}

/// The name of interface `index` (from sysfs).
fn ifname(index: u32) -> Result<String, String> {
    let dir = std::fs::read_dir("/sys/class/net").map_err(|e| format!("/sys/class/net: {e}"))?;
    for d in dir.flatten() {
        let p = d.path().join("ifindex");
        if std::fs::read_to_string(&p)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
            == Some(index)
        {
            return Ok(d.file_name().to_string_lossy().into_owned());
        }
    }
    Err(format!("no interface with index {index}"))
}

/// The MAC address of interface `name`.
fn iface_mac(name: &str) -> Result<[u8; 6], String> {
    let s = std::fs::read_to_string(format!("/sys/class/net/{name}/address"))
        .map_err(|e| format!("{name}: {e}"))?;
    let mut mac = [0u8; 6];
    let mut parts = s.trim().split(':');
    for b in mac.iter_mut() {
        *b = parts
            .next()
            .and_then(|p| u8::from_str_radix(p, 16).ok())
            .ok_or_else(|| format!("{name}: bad MAC {s:?}"))?;
    }
    Ok(mac)
}

/// ICMP echo to `dst`: up when the matching echo reply comes back.
pub fn ping(dst: Ipv4Addr, deadline: Instant) -> Outcome {
    let sock = RawIpv4Socket::open(1).map_err(|e| format!("raw socket: {e}"))?;
    let s = serial();
    let (id, seq) = ((s >> 16) as u16, s as u16);
    let mut echo = vec![8u8, 0, 0, 0];
    echo.extend_from_slice(&id.to_be_bytes());
    echo.extend_from_slice(&seq.to_be_bytes());
    echo.extend_from_slice(b"xvsd health check");
    let c = checksum(&[&echo]);
    echo[2..4].copy_from_slice(&c.to_be_bytes());
    sock.send_to(&echo, dst).map_err(|e| format!("send: {e}"))?;
    let mut buf = vec![0u8; 2048];
    loop {
        let t = left(deadline).map_err(|_| "no echo reply".to_string())?;
        sock.set_read_timeout(Some(t))
            .map_err(|e| format!("receive: {e}"))?;
        match sock.recv(&mut buf) {
            Ok(n) if n >= 20 => {
                let ihl = usize::from(buf[0] & 0x0f) * 4;
                let Some(icmp) = buf.get(ihl..n) else {
                    continue;
                };
                if buf[12..16] != dst.octets() || icmp.len() < 8 {
                    continue;
                }
                let (ty, rid, rseq) = (
                    icmp[0],
                    u16::from_be_bytes([icmp[4], icmp[5]]),
                    u16::from_be_bytes([icmp[6], icmp[7]]),
                );
                if ty == 0 && rid == id && rseq == seq {
                    return Ok(None);
                }
            }
            Ok(_) => {}
            Err(e) if is_timeout(&e) => {}
            Err(e) => return Err(format!("receive: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syn_checksums_verify_and_answers_match() {
        let (src, vip) = (Ipv4Addr::new(198, 18, 0, 1), Ipv4Addr::new(198, 18, 0, 10));
        let p = syn_packet(src, vip, 40000, 80, 12345);
        assert_eq!(p.len(), 44);
        assert_eq!(checksum(&[&p[..20]]), 0, "IPv4 header checksum");
        let mut pseudo = [0u8; 12];
        pseudo[0..4].copy_from_slice(&src.octets());
        pseudo[4..8].copy_from_slice(&vip.octets());
        pseudo[9] = 6;
        pseudo[10..12].copy_from_slice(&24u16.to_be_bytes());
        assert_eq!(checksum(&[&pseudo, &p[20..]]), 0, "TCP checksum");
        // The server's answer: the SYN mirrored, SYN-ACK.
        let mut a = syn_packet(vip, src, 80, 40000, 1);
        a[20 + 13] = TCP_SYN | TCP_ACK;
        assert_eq!(syn_answer(&a, vip, 80, src, 40000), Some("SYN-ACK"));
        a[20 + 13] = TCP_RST | TCP_ACK;
        assert_eq!(syn_answer(&a, vip, 80, src, 40000), Some("RST"));
        assert_eq!(syn_answer(&a, vip, 80, src, 40001), None, "another probe's");
        assert_eq!(syn_answer(&p, vip, 80, src, 40000), None, "our own SYN");
        let r = rst_packet(src, vip, 40000, 80, 12345);
        assert_eq!(r.len(), 40);
        assert_eq!(checksum(&[&r[..20]]), 0);
        pseudo[10..12].copy_from_slice(&20u16.to_be_bytes());
        assert_eq!(checksum(&[&pseudo, &r[20..]]), 0, "RST checksum");
        assert_eq!(
            (r[20 + 13], &r[24..28]),
            (TCP_RST, &12346u32.to_be_bytes()[..])
        );
    }

    #[test]
    fn tunnels_wrap_the_syn_as_the_data_plane_does() {
        let inner = syn_packet(Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST, 1, 2, 3);
        assert_eq!(
            encapsulate(TunKind::Ipip, inner.clone()),
            (Some(4), inner.clone())
        );
        let (p, gre) = encapsulate(TunKind::Gre, inner.clone());
        assert_eq!(
            (p, &gre[..4], &gre[4..]),
            (Some(47), &[0, 0, 8, 0][..], &inner[..])
        );
        let gue = TunKind::Gue {
            port: 6080,
            checksum: true,
        };
        let (p, g) = encapsulate(gue, inner.clone());
        assert_eq!((p, &g[..4], &g[4..]), (None, &[0, 4, 0, 0][..], &inner[..]));
    }

    #[test]
    fn ping_loopback() {
        // Raw sockets need CAP_NET_RAW (CI runs as root).
        let t = Instant::now() + std::time::Duration::from_secs(2);
        assert_eq!(ping(Ipv4Addr::LOCALHOST, t), Ok(None));
    }
}
