//! A minimal rtnetlink client: dump the IPv4 neighbour table and ask the
//! kernel to resolve an address (`NTF_USE`), enough for DR next hops.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const NLMSG_HDRLEN: usize = 16;
const NDMSG_LEN: usize = 12;
const RTM_NEWROUTE: u16 = 24;
const RTM_GETROUTE: u16 = 26;
const RTM_NEWNEIGH: u16 = 28;
const RTMSG_LEN: usize = 12;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_PREFSRC: u16 = 7;
const RTM_GETNEIGH: u16 = 30;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP: u16 = 0x300;
const NLM_F_CREATE: u16 = 0x400;
const NDA_DST: u16 = 1;
const NDA_LLADDR: u16 = 2;
const NTF_USE: u8 = 0x01;
const NUD_INCOMPLETE: u16 = 0x01;
const NUD_FAILED: u16 = 0x20;
const NUD_NOARP: u16 = 0x40;

/// One entry of the kernel's neighbour table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Neighbour {
    /// Interface index.
    pub ifindex: u32,
    /// IPv4 address.
    pub addr: Ipv4Addr,
    /// Link-layer address, when resolved.
    pub mac: Option<[u8; 6]>,
    /// NUD state bits.
    pub state: u16,
}

impl Neighbour {
    /// Whether the MAC may be used (resolved and not failed).
    pub fn usable(&self) -> bool {
        self.mac.is_some() && self.state & (NUD_INCOMPLETE | NUD_FAILED | NUD_NOARP) == 0
    }
}

/// The kernel's answer to "how do I reach this address".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// Outgoing interface.
    pub oif: u32,
    /// Gateway, if the address is not on-link.
    pub gateway: Option<Ipv4Addr>,
    /// Preferred source address (the director's address towards it).
    pub prefsrc: Option<Ipv4Addr>,
}

impl Route {
    /// The next hop: the gateway, or the address itself when on-link.
    pub fn hop(&self, dst: Ipv4Addr) -> Ipv4Addr {
        self.gateway.unwrap_or(dst)
    }
}

/// A NETLINK_ROUTE socket.
#[derive(Debug)]
pub struct Netlink {
    fd: OwnedFd,
    seq: u32,
    buf: Vec<u8>,
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

fn put_hdr(msg: &mut Vec<u8>, ty: u16, flags: u16, seq: u32) {
    msg.extend_from_slice(&0u32.to_ne_bytes()); // length, patched later
    msg.extend_from_slice(&ty.to_ne_bytes());
    msg.extend_from_slice(&flags.to_ne_bytes());
    msg.extend_from_slice(&seq.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
}

fn put_ndmsg(msg: &mut Vec<u8>, ifindex: u32, state: u16, flags: u8) {
    msg.push(libc::AF_INET as u8);
    msg.extend_from_slice(&[0, 0, 0]);
    msg.extend_from_slice(&(ifindex as i32).to_ne_bytes());
    msg.extend_from_slice(&state.to_ne_bytes());
    msg.push(flags);
    msg.push(0);
}

fn finish(msg: &mut [u8]) {
    let len = msg.len() as u32;
    msg[..4].copy_from_slice(&len.to_ne_bytes());
}

impl Netlink {
    /// Open a socket (in the calling thread's network namespace).
    pub fn open() -> io::Result<Self> {
        // SAFETY: plain socket(2) call; the result is checked.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor that we own from here on.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let tv = libc::timeval {
            tv_sec: 1,
            tv_usec: 0,
        };
        // SAFETY: setting SO_RCVTIMEO with a valid timeval of the right size.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as u32,
            )
        };
        Ok(Netlink {
            fd,
            seq: 1,
            buf: vec![0; 64 * 1024],
        })
    }

    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        // SAFETY: msg is a valid buffer of msg.len() bytes; a netlink
        // socket with no address sends to the kernel.
        let rc = unsafe { libc::send(self.fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn recv(&mut self) -> io::Result<usize> {
        // SAFETY: buf is a valid writable buffer of buf.len() bytes.
        let rc = unsafe {
            libc::recv(
                self.fd.as_raw_fd(),
                self.buf.as_mut_ptr().cast(),
                self.buf.len(),
                0,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(rc as usize)
    }

    /// Read the messages answering request `seq`, handing each (type,
    /// payload) to `f`, until `f` says stop, the dump ends (`NLMSG_DONE`)
    /// or the kernel acknowledges; a negative acknowledgement is the error.
    fn each_reply(&mut self, seq: u32, mut f: impl FnMut(u16, &[u8]) -> bool) -> io::Result<()> {
        loop {
            let n = self.recv()?;
            let mut off = 0;
            while off + NLMSG_HDRLEN <= n {
                let b = &self.buf[off..n];
                let len = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize;
                let ty = u16::from_ne_bytes([b[4], b[5]]);
                let mseq = u32::from_ne_bytes([b[8], b[9], b[10], b[11]]);
                if len < NLMSG_HDRLEN || len > b.len() {
                    return Err(io::Error::other("malformed netlink message"));
                }
                if mseq == seq {
                    match ty {
                        NLMSG_DONE => return Ok(()),
                        NLMSG_ERROR => {
                            if len < NLMSG_HDRLEN + 4 {
                                return Err(io::Error::other("short netlink error"));
                            }
                            let code = i32::from_ne_bytes([b[16], b[17], b[18], b[19]]);
                            return if code == 0 {
                                Ok(())
                            } else {
                                Err(io::Error::from_raw_os_error(-code))
                            };
                        }
                        _ => {
                            if !f(ty, &b[NLMSG_HDRLEN..len]) {
                                return Ok(());
                            }
                        }
                    }
                }
                off += align4(len);
            }
        }
    }

    /// The IPv4 neighbour table.
    pub fn neighbours(&mut self) -> io::Result<Vec<Neighbour>> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut msg = Vec::with_capacity(64);
        put_hdr(&mut msg, RTM_GETNEIGH, NLM_F_REQUEST | NLM_F_DUMP, seq);
        put_ndmsg(&mut msg, 0, 0, 0);
        finish(&mut msg);
        self.send(&msg)?;
        let mut out = Vec::new();
        self.each_reply(seq, |ty, payload| {
            if ty == RTM_NEWNEIGH {
                if let Some(nb) = parse_neigh(payload) {
                    out.push(nb);
                }
            }
            true
        })?;
        Ok(out)
    }

    /// Look up the route to `dst` (as `ip route get` does).
    pub fn route_get(&mut self, dst: Ipv4Addr) -> io::Result<Route> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut msg = Vec::with_capacity(64);
        put_hdr(&mut msg, RTM_GETROUTE, NLM_F_REQUEST, seq);
        // struct rtmsg: family, dst_len, src_len, tos, table, protocol,
        // scope, type, flags (u32).
        msg.extend_from_slice(&[libc::AF_INET as u8, 32, 0, 0, 0, 0, 0, 0]);
        msg.extend_from_slice(&0u32.to_ne_bytes());
        msg.extend_from_slice(&8u16.to_ne_bytes());
        msg.extend_from_slice(&RTA_DST.to_ne_bytes());
        msg.extend_from_slice(&dst.octets());
        finish(&mut msg);
        self.send(&msg)?;
        let mut route = None;
        self.each_reply(seq, |ty, payload| {
            if ty == RTM_NEWROUTE {
                route = parse_route(payload);
                return false;
            }
            true
        })?;
        route.ok_or_else(|| io::Error::other("no route through an interface"))
    }

    /// Ask the kernel to resolve `addr` on interface `ifindex` (creates
    /// the entry and sends an ARP request, like a packet sent to it would).
    pub fn resolve(&mut self, ifindex: u32, addr: Ipv4Addr) -> io::Result<()> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut msg = Vec::with_capacity(64);
        put_hdr(
            &mut msg,
            RTM_NEWNEIGH,
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE,
            seq,
        );
        put_ndmsg(&mut msg, ifindex, 0, NTF_USE);
        msg.extend_from_slice(&8u16.to_ne_bytes());
        msg.extend_from_slice(&NDA_DST.to_ne_bytes());
        msg.extend_from_slice(&addr.octets());
        finish(&mut msg);
        self.send(&msg)?;
        self.each_reply(seq, |_, _| true)
    }
}

fn parse_route(b: &[u8]) -> Option<Route> {
    if b.len() < RTMSG_LEN {
        return None;
    }
    let mut route = Route {
        oif: 0,
        gateway: None,
        prefsrc: None,
    };
    let mut off = RTMSG_LEN;
    while off + 4 <= b.len() {
        let alen = usize::from(u16::from_ne_bytes([b[off], b[off + 1]]));
        let aty = u16::from_ne_bytes([b[off + 2], b[off + 3]]);
        if alen < 4 || off + alen > b.len() {
            break;
        }
        let val = &b[off + 4..off + alen];
        let v4 = || (val.len() == 4).then(|| Ipv4Addr::new(val[0], val[1], val[2], val[3]));
        match aty {
            RTA_OIF if val.len() == 4 => {
                route.oif = u32::from_ne_bytes([val[0], val[1], val[2], val[3]])
            }
            RTA_GATEWAY => route.gateway = v4(),
            RTA_PREFSRC => route.prefsrc = v4(),
            _ => {}
        }
        off += align4(alen);
    }
    (route.oif != 0).then_some(route)
}

fn parse_neigh(b: &[u8]) -> Option<Neighbour> {
    if b.len() < NDMSG_LEN || b[0] != libc::AF_INET as u8 {
        return None;
    }
    let ifindex = i32::from_ne_bytes([b[4], b[5], b[6], b[7]]) as u32;
    let state = u16::from_ne_bytes([b[8], b[9]]);
    let mut addr = None;
    let mut mac = None;
    let mut off = NDMSG_LEN;
    while off + 4 <= b.len() {
        let alen = usize::from(u16::from_ne_bytes([b[off], b[off + 1]]));
        let aty = u16::from_ne_bytes([b[off + 2], b[off + 3]]);
        if alen < 4 || off + alen > b.len() {
            break;
        }
        let val = &b[off + 4..off + alen];
        match aty {
            NDA_DST if val.len() == 4 => addr = Some(Ipv4Addr::new(val[0], val[1], val[2], val[3])),
            NDA_LLADDR if val.len() == 6 => {
                let mut m = [0u8; 6];
                m.copy_from_slice(val);
                mac = Some(m);
            }
            _ => {}
        }
        off += align4(alen);
    }
    Some(Neighbour {
        ifindex,
        addr: addr?,
        mac,
        state,
    })
}
