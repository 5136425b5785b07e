//! Probes below the socket layer: `vip` (a half-open TCP probe to the VIP
//! through one real server) and `ping` (ICMP or ICMPv6 echo), for IPv4
//! and IPv6 alike.
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
//!
//! IPv6 is the same walk: the server's MAC comes from NDP through the
//! same neighbour cell, the SYN's source is the director's IPv6 address
//! towards the server, and a tunnel server gets the SYN in IPv6 (IPv6-in-
//! IPv6, GRE or GUE over IPv6). Across families (an IPv4 VIP with an
//! IPv6 tunnel server, or the reverse) the inner SYN takes its source
//! from the served interface's addresses of the VIP's family, since the
//! route to the server has none: the server answers there, through its
//! own route of that family.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use xvs_config::check::ProbeKey;
use xvs_config::tun::TunKind;
use xvs_dataplane::io::rawsock::{self, PacketSocket, RawIpv4Socket, RawIpv6Socket};

use super::probe::{left, Outcome};
use super::{ProbeCtx, VipPath};

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
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

/// An IP packet `src` → `dst` carrying a TCP SYN `sport` → `dport` with
/// sequence number `seq` (MSS option 1460), checksums filled in (the TCP
/// checksum over the IPv4 or IPv6 pseudo-header). `None` when the two
/// addresses are of different families.
pub fn syn_packet(src: IpAddr, dst: IpAddr, sport: u16, dport: u16, seq: u32) -> Option<Vec<u8>> {
    tcp_packet(src, dst, sport, dport, seq, TCP_SYN)
}

/// The RST that closes what our SYN opened on the server (sequence
/// number `seq` + 1, as its SYN-ACK acknowledges).
pub fn rst_packet(src: IpAddr, dst: IpAddr, sport: u16, dport: u16, seq: u32) -> Option<Vec<u8>> {
    tcp_packet(src, dst, sport, dport, seq.wrapping_add(1), TCP_RST)
}

/// The pseudo-header the TCP checksum covers: RFC 793's for IPv4, RFC
/// 8200's (addresses, 32-bit length, next header) for IPv6.
pub fn pseudo_header(src: IpAddr, dst: IpAddr, len: usize) -> Option<Vec<u8>> {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut p = Vec::with_capacity(12);
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
            p.extend_from_slice(&[0, 6]);
            p.extend_from_slice(&(len as u16).to_be_bytes());
            Some(p)
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let mut p = Vec::with_capacity(40);
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
            p.extend_from_slice(&(len as u32).to_be_bytes());
            p.extend_from_slice(&[0, 0, 0, 6]);
            Some(p)
        }
        _ => None,
    }
}

fn tcp_packet(
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
    seq: u32,
    flags: u8,
) -> Option<Vec<u8>> {
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
    let pseudo = pseudo_header(src, dst, tcp.len())?;
    let c = checksum(&[&pseudo, &tcp]);
    tcp[16..18].copy_from_slice(&c.to_be_bytes());

    let mut ip = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut ip = vec![0u8; 20];
            ip[0] = 0x45;
            ip[2..4].copy_from_slice(&((20 + tcp.len()) as u16).to_be_bytes());
            ip[4..6].copy_from_slice(&(seq as u16).to_be_bytes());
            ip[6] = 0x40; // DF
            ip[8] = 64;
            ip[9] = 6;
            ip[12..16].copy_from_slice(&s.octets());
            ip[16..20].copy_from_slice(&d.octets());
            let c = checksum(&[&ip]);
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            ip
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            // Version 6, no traffic class or flow label; no header
            // checksum in IPv6.
            let mut ip = vec![0u8; 40];
            ip[0] = 0x60;
            ip[4..6].copy_from_slice(&(tcp.len() as u16).to_be_bytes());
            ip[6] = 6;
            ip[7] = 64;
            ip[8..24].copy_from_slice(&s.octets());
            ip[24..40].copy_from_slice(&d.octets());
            ip
        }
        _ => return None,
    };
    ip.extend_from_slice(&tcp);
    Some(ip)
}

/// Whether IP packet `pkt` (IPv4, or IPv6 with TCP as its first next
/// header) is the answer to our SYN: TCP from `vip:vport` to
/// `src:sport`, SYN-ACK or RST. Returns which.
pub fn syn_answer(
    pkt: &[u8],
    vip: IpAddr,
    vport: u16,
    src: IpAddr,
    sport: u16,
) -> Option<&'static str> {
    let tcp = match (vip, src) {
        (IpAddr::V4(v), IpAddr::V4(s)) => {
            if pkt.len() < 20 || pkt[0] >> 4 != 4 || pkt[9] != 6 {
                return None;
            }
            if pkt[12..16] != v.octets() || pkt[16..20] != s.octets() {
                return None;
            }
            let ihl = usize::from(pkt[0] & 0x0f) * 4;
            pkt.get(ihl..ihl + 14)?
        }
        (IpAddr::V6(v), IpAddr::V6(s)) => {
            if pkt.len() < 40 || pkt[0] >> 4 != 6 || pkt[6] != 6 {
                return None;
            }
            if pkt[8..24] != v.octets() || pkt[24..40] != s.octets() {
                return None;
            }
            pkt.get(40..54)?
        }
        _ => return None,
    };
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
/// (the outer IP header is the kernel's, as the UDP header for GUE). The
/// inner packet's version picks the protocol numbers, as the data plane
/// does: IP-in-IP 4 or 41, GRE type 0x0800 or 0x86dd, GUE proto 4 or 41.
pub fn encapsulate(kind: TunKind, inner: Vec<u8>) -> (Option<u8>, Vec<u8>) {
    let v6 = inner.first().is_some_and(|b| b >> 4 == 6);
    let (ipproto, ethertype) = if v6 {
        (41u8, ETH_P_IPV6)
    } else {
        (4u8, ETH_P_IP)
    };
    let with = |header: &[u8]| {
        let mut v = Vec::with_capacity(header.len() + inner.len());
        v.extend_from_slice(header);
        v.extend_from_slice(&inner);
        v
    };
    match kind {
        TunKind::Ipip => (Some(ipproto), inner),
        // Flags and version 0, protocol type of the inner packet (RFC 2784).
        TunKind::Gre => {
            let t = ethertype.to_be_bytes();
            (Some(47), with(&[0, 0, t[0], t[1]]))
        }
        // GUE version 0, data, no options, proto/ctype of the inner packet.
        TunKind::Gue { .. } => (None, with(&[0, ipproto, 0, 0])),
    }
}

/// Sends tunnel payload `payload` (from [`encapsulate`]) to `rip` under a
/// kernel-written outer header of `rip`'s family.
fn send_tunnelled(
    kind: TunKind,
    proto: Option<u8>,
    payload: &[u8],
    rip: IpAddr,
) -> std::io::Result<usize> {
    match (kind, proto, rip) {
        (TunKind::Gue { port, .. }, _, IpAddr::V4(_)) => {
            UdpSocket::bind("0.0.0.0:0")?.send_to(payload, SocketAddr::new(rip, port))
        }
        (TunKind::Gue { port, .. }, _, IpAddr::V6(_)) => {
            UdpSocket::bind("[::]:0")?.send_to(payload, SocketAddr::new(rip, port))
        }
        (_, Some(p), IpAddr::V4(a)) => RawIpv4Socket::open(p)?.send_to(payload, a),
        (_, Some(p), IpAddr::V6(a)) => RawIpv6Socket::open(p)?.send_to(payload, a),
        (_, None, _) => Err(std::io::Error::other("no tunnel protocol")),
    }
}

/// The `vip` probe of `key` along `ctx.path`: an IPv4 or IPv6 SYN to the
/// VIP, in a frame to a direct-routing server's MAC (from ARP or NDP) or
/// in a tunnel server's tunnel, whose answer is read off the interface the
/// route to the server names.
pub fn probe(key: &ProbeKey, ctx: &ProbeCtx, deadline: Instant) -> Outcome {
    let rip = key.addr;
    let Some((vip, vport)) = key.vip else {
        return Err("vip checks need an address service (not a firewall mark)".into());
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
    let ifname = ifname(oif)?;
    // The SYN's source: the director's address towards the server, of the
    // VIP's family (the inner packet's, in a tunnel). Across families the
    // route to the server has none of that family: the served interface's
    // first address of it, the VIP excepted, is where the answer comes.
    let src = match (vip, rip, &ctx.path) {
        (IpAddr::V4(_), IpAddr::V4(_), _) => cell.src().map(IpAddr::V4),
        (IpAddr::V6(_), IpAddr::V6(_), _) => cell.src6().map(IpAddr::V6),
        (_, _, VipPath::Tun(..)) => rawsock::interface_addrs(&ifname)
            .map_err(|e| format!("{ifname}: {e}"))?
            .into_iter()
            .find(|a| a.is_ipv4() == vip.is_ipv4() && *a != vip && !is_link_local(*a)),
        _ => return Err("direct routing needs the server in the VIP's family".into()),
    }
    .ok_or("no source address towards the server")?;
    let ethertype = if vip.is_ipv4() { ETH_P_IP } else { ETH_P_IPV6 };
    // The answer comes from the VIP, one of the director's own addresses:
    // the kernel drops it as a martian before any IP socket could see it,
    // so it is read off the interface, where the SYN-ACK arrives.
    let sock = PacketSocket::bind(&ifname, ethertype).map_err(|e| format!("packet socket: {e}"))?;
    let server_mac = match &ctx.path {
        VipPath::Tun(..) => None,
        _ => Some(cell.mac().ok_or("the server's MAC is not resolved yet")?),
    };
    let our_mac = iface_mac(&ifname)?;
    // A packet to the VIP through this server, as the data plane sends a
    // client's: in a frame to its MAC, or in its tunnel.
    let send = |pkt: Option<Vec<u8>>| -> Result<(), String> {
        let pkt = pkt.ok_or("mixed address families")?;
        let sent = match (&ctx.path, server_mac) {
            (VipPath::Tun(kind, _), _) => {
                let (proto, payload) = encapsulate(*kind, pkt);
                send_tunnelled(*kind, proto, &payload, rip)
            }
            (_, Some(mac)) => {
                let mut frame = Vec::with_capacity(14 + pkt.len());
                frame.extend_from_slice(&mac);
                frame.extend_from_slice(&our_mac);
                frame.extend_from_slice(&ethertype.to_be_bytes());
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
    let vip_port = SocketAddr::new(vip, vport);
    let mut buf = vec![0u8; 2048];
    loop {
        let t = left(deadline).map_err(|_| format!("no answer from {vip_port} {via} {rip}"))?;
        sock.set_read_timeout(Some(t))
            .map_err(|e| format!("receive: {e}"))?;
        match sock.recv_incoming(&mut buf) {
            Ok(n) if n > 14 && buf[12..14] == ethertype.to_be_bytes() => {
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

/// Whether `a` is an IPv6 link-local address (fe80::/10), never the
/// source of a routed answer.
fn is_link_local(a: IpAddr) -> bool {
    matches!(a, IpAddr::V6(v) if v.segments()[0] & 0xffc0 == 0xfe80)
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

/// ICMP echo (IPv4) or ICMPv6 echo (IPv6) to `dst`: up when the echo
/// reply with our identifier and sequence number comes back from `dst`;
/// anything else the raw socket sees is skipped.
pub fn ping(dst: IpAddr, deadline: Instant) -> Outcome {
    match dst {
        IpAddr::V4(a) => ping4(a, deadline),
        IpAddr::V6(a) => ping6(a, deadline),
    }
}

/// The identifier and sequence number of a new echo request.
fn echo_ids() -> (u16, u16) {
    let s = serial();
    ((s >> 16) as u16, s as u16)
}

/// An echo request message of `ty` (8: ICMP, 128: ICMPv6) with the
/// checksum left zero.
pub fn echo_request(ty: u8, id: u16, seq: u16) -> Vec<u8> {
    let mut echo = vec![ty, 0, 0, 0];
    echo.extend_from_slice(&id.to_be_bytes());
    echo.extend_from_slice(&seq.to_be_bytes());
    echo.extend_from_slice(b"xvsd health check");
    echo
}

/// Whether ICMP(v6) message `icmp` is an echo reply of type `ty` (0 or
/// 129) to our request `id`/`seq`.
pub fn is_echo_reply(icmp: &[u8], ty: u8, id: u16, seq: u16) -> bool {
    icmp.len() >= 8
        && icmp[0] == ty
        && icmp[1] == 0
        && u16::from_be_bytes([icmp[4], icmp[5]]) == id
        && u16::from_be_bytes([icmp[6], icmp[7]]) == seq
}

fn ping4(dst: Ipv4Addr, deadline: Instant) -> Outcome {
    let sock = RawIpv4Socket::open(1).map_err(|e| format!("raw socket: {e}"))?;
    let (id, seq) = echo_ids();
    let mut echo = echo_request(8, id, seq);
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
                if buf[12..16] == dst.octets() && is_echo_reply(icmp, 0, id, seq) {
                    return Ok(None);
                }
            }
            Ok(_) => {}
            Err(e) if is_timeout(&e) => {}
            Err(e) => return Err(format!("receive: {e}")),
        }
    }
}

fn ping6(dst: Ipv6Addr, deadline: Instant) -> Outcome {
    // The kernel computes an ICMPv6 raw socket's checksum (RFC 3542).
    let sock = RawIpv6Socket::open(58).map_err(|e| format!("raw socket: {e}"))?;
    let (id, seq) = echo_ids();
    let echo = echo_request(128, id, seq);
    sock.send_to(&echo, dst).map_err(|e| format!("send: {e}"))?;
    let mut buf = vec![0u8; 2048];
    loop {
        let t = left(deadline).map_err(|_| "no echo reply".to_string())?;
        sock.set_read_timeout(Some(t))
            .map_err(|e| format!("receive: {e}"))?;
        match sock.recv_from(&mut buf) {
            Ok((n, from)) => {
                if from == dst && is_echo_reply(&buf[..n], 129, id, seq) {
                    return Ok(None);
                }
            }
            Err(e) if is_timeout(&e) => {}
            Err(e) => return Err(format!("receive: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(a: [u8; 4]) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(a))
    }

    fn v6(s: &str) -> IpAddr {
        IpAddr::V6(s.parse().unwrap())
    }

    #[test]
    fn syn_checksums_verify_and_answers_match() {
        let (src, vip) = (v4([198, 18, 0, 1]), v4([198, 18, 0, 10]));
        let p = syn_packet(src, vip, 40000, 80, 12345).unwrap();
        assert_eq!(p.len(), 44);
        assert_eq!(checksum(&[&p[..20]]), 0, "IPv4 header checksum");
        let pseudo = pseudo_header(src, vip, 24).unwrap();
        assert_eq!(pseudo.len(), 12);
        assert_eq!(checksum(&[&pseudo, &p[20..]]), 0, "TCP checksum");
        // The server's answer: the SYN mirrored, SYN-ACK.
        let mut a = syn_packet(vip, src, 80, 40000, 1).unwrap();
        a[20 + 13] = TCP_SYN | TCP_ACK;
        assert_eq!(syn_answer(&a, vip, 80, src, 40000), Some("SYN-ACK"));
        a[20 + 13] = TCP_RST | TCP_ACK;
        assert_eq!(syn_answer(&a, vip, 80, src, 40000), Some("RST"));
        assert_eq!(syn_answer(&a, vip, 80, src, 40001), None, "another probe's");
        assert_eq!(syn_answer(&p, vip, 80, src, 40000), None, "our own SYN");
        let r = rst_packet(src, vip, 40000, 80, 12345).unwrap();
        assert_eq!(r.len(), 40);
        assert_eq!(checksum(&[&r[..20]]), 0);
        let pseudo = pseudo_header(src, vip, 20).unwrap();
        assert_eq!(checksum(&[&pseudo, &r[20..]]), 0, "RST checksum");
        assert_eq!(
            (r[20 + 13], &r[24..28]),
            (TCP_RST, &12346u32.to_be_bytes()[..])
        );
        assert_eq!(syn_packet(src, v6("2001:2::10"), 1, 2, 3), None);
    }

    #[test]
    fn ipv6_syn_checksums_verify_and_answers_match() {
        let (src, vip) = (v6("2001:2::1"), v6("2001:2::10"));
        let p = syn_packet(src, vip, 40000, 443, 0xdead_beef).unwrap();
        assert_eq!(p.len(), 64);
        assert_eq!(p[0] >> 4, 6);
        assert_eq!(u16::from_be_bytes([p[4], p[5]]), 24, "payload length");
        assert_eq!((p[6], p[7]), (6, 64), "next header TCP, hop limit");
        assert_eq!(
            &p[8..24],
            &"2001:2::1".parse::<Ipv6Addr>().unwrap().octets()
        );
        // The pseudo-header of RFC 8200 section 8.1, written out by hand.
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&p[8..40]);
        pseudo.extend_from_slice(&[0, 0, 0, 24, 0, 0, 0, 6]);
        assert_eq!(pseudo_header(src, vip, 24).unwrap(), pseudo);
        assert_eq!(checksum(&[&pseudo, &p[40..]]), 0, "TCP checksum");
        // The data plane's own IPv6 transport checksum agrees.
        let mut seg = p[40..].to_vec();
        let written = u16::from_be_bytes([seg[16], seg[17]]);
        seg[16..18].copy_from_slice(&[0, 0]);
        let (s6, d6) = ("2001:2::1".parse().unwrap(), "2001:2::10".parse().unwrap());
        assert_eq!(
            xvs_dataplane::wire::checksum::transport_checksum6(s6, d6, 6, &seg),
            written
        );
        // TCP options: MSS 1460.
        assert_eq!(&p[60..64], &[2, 4, 0x05, 0xb4]);

        let mut a = syn_packet(vip, src, 443, 40000, 7).unwrap();
        a[40 + 13] = TCP_SYN | TCP_ACK;
        assert_eq!(syn_answer(&a, vip, 443, src, 40000), Some("SYN-ACK"));
        a[40 + 13] = TCP_RST | TCP_ACK;
        assert_eq!(syn_answer(&a, vip, 443, src, 40000), Some("RST"));
        a[40 + 13] = TCP_ACK;
        assert_eq!(syn_answer(&a, vip, 443, src, 40000), None, "a plain ACK");
        a[40 + 13] = TCP_SYN | TCP_ACK;
        assert_eq!(
            syn_answer(&a, vip, 443, src, 40001),
            None,
            "another probe's"
        );
        assert_eq!(syn_answer(&a, vip, 80, src, 40000), None, "another port");
        assert_eq!(
            syn_answer(&a, v6("2001:2::11"), 443, src, 40000),
            None,
            "another VIP"
        );
        assert_eq!(syn_answer(&p, vip, 443, src, 40000), None, "our own SYN");
        let mut ext = a.clone();
        ext[6] = 0; // a hop-by-hop header first: not read
        assert_eq!(syn_answer(&ext, vip, 443, src, 40000), None);
        // An IPv4 answer does not match an IPv6 probe.
        let a4 = syn_packet(v4([198, 18, 0, 10]), v4([198, 18, 0, 1]), 443, 40000, 7).unwrap();
        assert_eq!(syn_answer(&a4, vip, 443, src, 40000), None);

        let r = rst_packet(src, vip, 40000, 443, 0xdead_beef).unwrap();
        assert_eq!(r.len(), 60);
        let pseudo = pseudo_header(src, vip, 20).unwrap();
        assert_eq!(checksum(&[&pseudo, &r[40..]]), 0, "RST checksum");
        assert_eq!(
            (r[40 + 13], &r[44..48]),
            (TCP_RST, &0xdead_bef0u32.to_be_bytes()[..])
        );
    }

    #[test]
    fn tunnels_wrap_the_syn_as_the_data_plane_does() {
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let inner = syn_packet(lo, lo, 1, 2, 3).unwrap();
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
        // IPv6 inside: protocol 41, GRE type 0x86dd, GUE proto 41.
        let inner = syn_packet(v6("2001:2::1"), v6("2001:2::10"), 1, 2, 3).unwrap();
        assert_eq!(
            encapsulate(TunKind::Ipip, inner.clone()),
            (Some(41), inner.clone())
        );
        let (p, gre) = encapsulate(TunKind::Gre, inner.clone());
        assert_eq!(
            (p, &gre[..4], &gre[4..]),
            (Some(47), &[0, 0, 0x86, 0xdd][..], &inner[..])
        );
        let (p, g) = encapsulate(gue, inner.clone());
        assert_eq!(
            (p, &g[..4], &g[4..]),
            (None, &[0, 41, 0, 0][..], &inner[..])
        );
    }

    /// The tunnelled SYN leaves through the kernel as `rip`'s family
    /// wants: received back on loopback by a socket of the outer protocol
    /// (raw IPv6 for IP-in-IPv6 and GRE, UDP for GUE), byte for byte.
    #[test]
    fn ipv6_tunnel_payloads_leave_through_the_kernel() {
        use std::time::Duration;
        let lo6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
        let inner = syn_packet(v6("2001:2::1"), v6("2001:2::10"), 40000, 80, 9).unwrap();
        let until = |f: &mut dyn FnMut() -> Option<Vec<u8>>, want: &[u8]| {
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_secs(2) {
                if f().as_deref() == Some(want) {
                    return true;
                }
            }
            false
        };
        for kind in [TunKind::Ipip, TunKind::Gre] {
            let (proto, payload) = encapsulate(kind, inner.clone());
            let rx = RawIpv6Socket::open(proto.unwrap()).unwrap();
            rx.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            send_tunnelled(kind, proto, &payload, lo6).unwrap();
            let mut buf = vec![0u8; 2048];
            let mut next = || {
                let (n, from) = rx.recv_from(&mut buf).ok()?;
                (from == Ipv6Addr::LOCALHOST).then(|| buf[..n].to_vec())
            };
            assert!(until(&mut next, &payload), "{kind:?} over IPv6");
        }
        let rx = UdpSocket::bind("[::1]:0").unwrap();
        rx.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let gue = TunKind::Gue {
            port: rx.local_addr().unwrap().port(),
            checksum: true,
        };
        let (proto, payload) = encapsulate(gue, inner.clone());
        send_tunnelled(gue, proto, &payload, lo6).unwrap();
        let mut buf = vec![0u8; 2048];
        let mut next = || {
            let n = rx.recv(&mut buf).ok()?;
            Some(buf[..n].to_vec())
        };
        assert!(until(&mut next, &payload), "GUE over IPv6");
    }

    #[test]
    fn interface_addresses_and_link_local() {
        let lo = rawsock::interface_addrs("lo").unwrap();
        assert!(lo.contains(&IpAddr::V4(Ipv4Addr::LOCALHOST)), "{lo:?}");
        assert!(lo.contains(&IpAddr::V6(Ipv6Addr::LOCALHOST)), "{lo:?}");
        assert!(rawsock::interface_addrs("no-such-if0").unwrap().is_empty());
        assert!(is_link_local(v6("fe80::1")));
        assert!(is_link_local(v6("febf::1")));
        assert!(!is_link_local(v6("fec0::1")));
        assert!(!is_link_local(v6("2001:2::1")));
        assert!(!is_link_local(v4([169, 254, 0, 1])));
    }

    #[test]
    fn echo_replies_match_only_ours() {
        let req = echo_request(128, 0x1234, 7);
        assert_eq!(&req[..8], &[128, 0, 0, 0, 0x12, 0x34, 0, 7]);
        let mut rep = req.clone();
        rep[0] = 129;
        assert!(is_echo_reply(&rep, 129, 0x1234, 7));
        assert!(!is_echo_reply(&req, 129, 0x1234, 7), "our own request");
        assert!(!is_echo_reply(&rep, 129, 0x1234, 8), "another sequence");
        assert!(!is_echo_reply(&rep, 129, 0x1235, 7), "another identifier");
        assert!(!is_echo_reply(&rep, 0, 0x1234, 7), "ICMPv6 is not ICMP");
        assert!(!is_echo_reply(&rep[..7], 129, 0x1234, 7), "truncated");
    }

    #[test]
    fn ping_loopback() {
        // Raw sockets need CAP_NET_RAW (CI runs as root).
        let t = Instant::now() + std::time::Duration::from_secs(2);
        assert_eq!(ping(IpAddr::V4(Ipv4Addr::LOCALHOST), t), Ok(None));
    }

    #[test]
    fn ping6_loopback_and_nobody() {
        let t = Instant::now() + std::time::Duration::from_secs(2);
        assert_eq!(ping(IpAddr::V6(Ipv6Addr::LOCALHOST), t), Ok(None));
        // An address no one holds (documentation prefix, no route): no
        // reply before the deadline, whatever else the socket sees.
        let t0 = Instant::now();
        let t = t0 + std::time::Duration::from_millis(300);
        let e = ping(v6("2001:db8::dead"), t).unwrap_err();
        assert!(e == "no echo reply" || e.starts_with("send:"), "{e}");
        assert!(t0.elapsed() < std::time::Duration::from_secs(2));
    }
}
