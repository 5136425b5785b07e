//! The rtnetlink the data plane needs for next hops: look up a route, dump
//! the neighbour tables (ARP for IPv4, NDP for IPv6), ask the kernel to
//! resolve an address (`NTF_USE`: an ARP request or a neighbour
//! solicitation), and follow neighbour, route and address changes of both
//! families as the kernel announces them.
//!
//! Messages are built and parsed by `netlink-packet-route` and the sockets
//! are `netlink-sys`'s, synchronously (no async runtime in a data plane
//! thread). What those crates leave to their user is done here: replies are
//! matched by sequence number, a dump the kernel marks interrupted
//! (`NLM_F_DUMP_INTR`) is repeated, a datagram larger than the buffer is
//! detected (`MSG_TRUNC`) instead of parsed short, and an overflowing
//! subscription (`ENOBUFS`: events were lost) is reported as such so that
//! the caller reads the tables again.

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP,
    NLM_F_DUMP_INTR, NLM_F_REQUEST,
};
use netlink_packet_route::link::{LinkAttribute, LinkMessage, LinkXdp};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage,
};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use std::io;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::time::Duration;

const NUD_INCOMPLETE: u16 = 0x01;
const NUD_FAILED: u16 = 0x20;
const NUD_NOARP: u16 = 0x40;

/// How long a request waits for the kernel's answer.
const REPLY_TIMEOUT: Duration = Duration::from_secs(1);
/// How often a dump the kernel interrupted is tried again at once.
const DUMP_TRIES: usize = 3;
/// Receive buffer of a socket (the kernel's datagrams for a dump are at
/// most a page or two; events are small).
const BUF: usize = 64 * 1024;
/// Kernel socket buffer asked for the subscription, so that a burst of
/// changes (a link going down with many neighbours) is not lost.
const EVENT_RCVBUF: usize = 4 << 20;

/// One entry of the kernel's neighbour table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Neighbour {
    /// Interface index.
    pub ifindex: u32,
    /// IPv4 or IPv6 address.
    pub addr: IpAddr,
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
    /// Gateway, if the address is not on-link (for IPv6 usually a
    /// link-local address, which names a neighbour on `oif`).
    pub gateway: Option<IpAddr>,
    /// Preferred source address (the director's address towards it).
    pub prefsrc: Option<IpAddr>,
}

impl Route {
    /// The next hop: the gateway, or the address itself when on-link.
    pub fn hop(&self, dst: IpAddr) -> IpAddr {
        self.gateway.unwrap_or(dst)
    }
}

/// A change the kernel announced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A neighbour entry was added or changed.
    Neighbour(Neighbour),
    /// A neighbour entry was deleted.
    NeighbourGone(Neighbour),
    /// A route or address (IPv4 or IPv6) changed: any route may be
    /// different now.
    Routes,
    /// Events were lost (the socket overflowed, or one did not fit the
    /// buffer): the tables must be read again.
    Lost,
}

/// Wait until `fd` is readable or `timeout` passed; true if readable.
fn readable(fd: &impl AsRawFd, timeout: Duration) -> io::Result<bool> {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: `p` is one valid pollfd that poll(2) may write `revents` into;
    // the descriptor is borrowed from a live socket for the call.
    let rc = unsafe { libc::poll(&mut p, 1, ms) };
    match rc {
        0 => Ok(false),
        n if n > 0 => Ok(true),
        _ => {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                Ok(false)
            } else {
                Err(e)
            }
        }
    }
}

/// Receive one datagram into `buf` (cleared first); `Ok(None)` when it was
/// larger than the buffer (its content is lost; the buffer is grown for
/// the next one).
fn recv_whole(sock: &Socket, buf: &mut Vec<u8>, flags: libc::c_int) -> io::Result<Option<()>> {
    buf.clear();
    let cap = buf.capacity();
    let n = sock.recv(buf, flags | libc::MSG_TRUNC)?;
    if n > cap {
        buf.clear();
        buf.reserve(n.next_power_of_two());
        return Ok(None);
    }
    Ok(Some(()))
}

/// The messages of one datagram, with their header flags.
fn messages(
    mut b: &[u8],
) -> impl Iterator<Item = io::Result<NetlinkMessage<RouteNetlinkMessage>>> + '_ {
    std::iter::from_fn(move || {
        if b.len() < 16 {
            return None;
        }
        let len = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize;
        if len < 16 || len > b.len() {
            b = &[];
            return Some(Err(io::Error::other("malformed netlink message")));
        }
        let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&b[..len])
            .map_err(|e| io::Error::other(format!("netlink message: {e}")));
        b = &b[len.next_multiple_of(4).min(b.len())..];
        Some(msg)
    })
}

fn parse_neigh(m: &NeighbourMessage) -> Option<Neighbour> {
    if !matches!(m.header.family, AddressFamily::Inet | AddressFamily::Inet6) {
        return None;
    }
    let mut addr = None;
    let mut mac = None;
    for a in &m.attributes {
        match a {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => {
                addr = Some(IpAddr::V4(*ip))
            }
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(ip)) => {
                addr = Some(IpAddr::V6(*ip))
            }
            NeighbourAttribute::LinkLayerAddress(l) if l.len() == 6 => {
                let mut b = [0u8; 6];
                b.copy_from_slice(l);
                mac = Some(b);
            }
            _ => {}
        }
    }
    Some(Neighbour {
        ifindex: m.header.ifindex,
        addr: addr?,
        mac,
        state: u16::from(m.header.state),
    })
}

fn parse_route(m: &RouteMessage) -> Option<Route> {
    let mut route = Route {
        oif: 0,
        gateway: None,
        prefsrc: None,
    };
    for a in &m.attributes {
        match a {
            RouteAttribute::Oif(i) => route.oif = *i,
            RouteAttribute::Gateway(RouteAddress::Inet(g)) => route.gateway = Some((*g).into()),
            RouteAttribute::Gateway(RouteAddress::Inet6(g)) => route.gateway = Some((*g).into()),
            RouteAttribute::PrefSource(RouteAddress::Inet(s)) => route.prefsrc = Some((*s).into()),
            RouteAttribute::PrefSource(RouteAddress::Inet6(s)) => route.prefsrc = Some((*s).into()),
            _ => {}
        }
    }
    (route.oif != 0).then_some(route)
}

fn family_of(a: IpAddr) -> AddressFamily {
    match a {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

/// `RTM_GETROUTE` for the host route to `dst` (/32 or /128).
fn route_request(dst: IpAddr) -> RouteMessage {
    let mut req = RouteMessage::default();
    req.header.address_family = family_of(dst);
    req.header.destination_prefix_length = if dst.is_ipv4() { 32 } else { 128 };
    req.attributes
        .push(RouteAttribute::Destination(RouteAddress::from(dst)));
    req
}

/// `RTM_NEWNEIGH` with `NTF_USE` for `addr` on `ifindex`: resolve it.
fn resolve_request(ifindex: u32, addr: IpAddr) -> NeighbourMessage {
    let mut req = NeighbourMessage::default();
    req.header.family = family_of(addr);
    req.header.ifindex = ifindex;
    req.header.flags = NeighbourFlags::Use;
    let dst = match addr {
        IpAddr::V4(a) => NeighbourAddress::Inet(a),
        IpAddr::V6(a) => NeighbourAddress::Inet6(a),
    };
    req.attributes.push(NeighbourAttribute::Destination(dst));
    req
}

/// A NETLINK_ROUTE socket for requests (route look-ups, dumps, resolution).
#[derive(Debug)]
pub struct Netlink {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl Netlink {
    /// Open a socket (in the calling thread's network namespace).
    pub fn open() -> io::Result<Self> {
        let mut sock = Socket::new(NETLINK_ROUTE)?;
        sock.bind_auto()?;
        sock.connect(&SocketAddr::new(0, 0))?;
        Ok(Netlink {
            sock,
            seq: 1,
            buf: Vec::with_capacity(BUF),
        })
    }

    /// Send `msg` with `flags`; returns its sequence number.
    fn send(&mut self, msg: RouteNetlinkMessage, flags: u16) -> io::Result<u32> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = flags;
        header.sequence_number = self.seq;
        let mut m = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
        m.finalize();
        let mut out = vec![0u8; m.buffer_len()];
        m.serialize(&mut out);
        self.sock.send(&out, 0)?;
        Ok(self.seq)
    }

    /// Read the answer to request `seq`, handing each message to `f` until
    /// `f` says stop, the dump ends or the kernel acknowledges (a negative
    /// acknowledgement is the error). Returns whether any message of a dump
    /// was marked interrupted.
    fn replies(
        &mut self,
        seq: u32,
        mut f: impl FnMut(&RouteNetlinkMessage) -> bool,
    ) -> io::Result<bool> {
        let mut intr = false;
        loop {
            if !readable(&self.sock, REPLY_TIMEOUT)? {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no netlink answer from the kernel",
                ));
            }
            if recv_whole(&self.sock, &mut self.buf, 0)?.is_none() {
                return Err(io::Error::other("netlink answer truncated"));
            }
            for m in messages(&self.buf) {
                let m = m?;
                if m.header.sequence_number != seq {
                    continue;
                }
                intr |= m.header.flags & NLM_F_DUMP_INTR != 0;
                match m.payload {
                    NetlinkPayload::Done(_) => return Ok(intr),
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(intr),
                            Some(_) => Err(e.to_io()),
                        }
                    }
                    NetlinkPayload::InnerMessage(inner) if !f(&inner) => return Ok(intr),
                    _ => {}
                }
            }
        }
    }

    /// The neighbour tables of both families (ARP, then NDP). A dump the
    /// kernel interrupted (the table changed during it) is repeated; still
    /// interrupted after a few tries, it fails with
    /// [`io::ErrorKind::Interrupted`].
    pub fn neighbours(&mut self) -> io::Result<Vec<Neighbour>> {
        let mut all = self.neighbours_of(AddressFamily::Inet)?;
        all.extend(self.neighbours_of(AddressFamily::Inet6)?);
        Ok(all)
    }

    /// The neighbour table of `family`, as [`Netlink::neighbours`] reads it.
    fn neighbours_of(&mut self, family: AddressFamily) -> io::Result<Vec<Neighbour>> {
        for _ in 0..DUMP_TRIES {
            let mut req = NeighbourMessage::default();
            req.header.family = family;
            let seq = self.send(
                RouteNetlinkMessage::GetNeighbour(req),
                NLM_F_REQUEST | NLM_F_DUMP,
            )?;
            let mut out = Vec::new();
            let intr = self.replies(seq, |m| {
                if let RouteNetlinkMessage::NewNeighbour(n) = m {
                    out.extend(parse_neigh(n));
                }
                true
            })?;
            if !intr {
                return Ok(out);
            }
        }
        Err(io::Error::new(
            io::ErrorKind::Interrupted,
            "neighbour dump interrupted",
        ))
    }

    /// Look up the route to `dst` (as `ip route get` does), IPv4 or IPv6.
    pub fn route_get(&mut self, dst: IpAddr) -> io::Result<Route> {
        let seq = self.send(
            RouteNetlinkMessage::GetRoute(route_request(dst)),
            NLM_F_REQUEST,
        )?;
        let mut route = None;
        self.replies(seq, |m| match m {
            RouteNetlinkMessage::NewRoute(r) => {
                route = parse_route(r);
                false
            }
            _ => true,
        })?;
        route.ok_or_else(|| io::Error::other(format!("no route to {dst} through an interface")))
    }

    /// The id of the XDP program attached to interface `ifindex`, if any.
    pub fn xdp_prog_id(&mut self, ifindex: u32) -> io::Result<Option<u32>> {
        let mut req = LinkMessage::default();
        req.header.index = ifindex;
        let seq = self.send(RouteNetlinkMessage::GetLink(req), NLM_F_REQUEST)?;
        let mut id = None;
        self.replies(seq, |m| match m {
            RouteNetlinkMessage::NewLink(l) => {
                for a in &l.attributes {
                    if let LinkAttribute::Xdp(xs) = a {
                        for x in xs {
                            if let LinkXdp::ProgId(p) = x {
                                id = Some(*p).filter(|&p| p != 0);
                            }
                        }
                    }
                }
                false
            }
            _ => true,
        })?;
        Ok(id)
    }

    /// Detach the XDP program attached to interface `ifindex` without a
    /// link (as `ip link set dev IF xdp off`), in generic and in driver
    /// mode; a program attached through a link another process owns
    /// cannot be, and that is the error.
    pub fn detach_xdp(&mut self, ifindex: u32) -> io::Result<()> {
        const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
        const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
        for flags in [XDP_FLAGS_SKB_MODE, XDP_FLAGS_DRV_MODE] {
            let mut req = LinkMessage::default();
            req.header.index = ifindex;
            req.attributes.push(LinkAttribute::Xdp(vec![
                LinkXdp::Fd(-1),
                LinkXdp::Flags(flags),
            ]));
            let seq = self.send(RouteNetlinkMessage::SetLink(req), NLM_F_REQUEST | NLM_F_ACK)?;
            self.replies(seq, |_| true)?;
        }
        match self.xdp_prog_id(ifindex)? {
            None => Ok(()),
            Some(id) => Err(io::Error::other(format!(
                "XDP program id {id} is still attached (through a link another process owns?)"
            ))),
        }
    }

    /// Ask the kernel to resolve `addr` on interface `ifindex` (creates
    /// the entry and sends an ARP request or a neighbour solicitation,
    /// like a packet sent to it would).
    pub fn resolve(&mut self, ifindex: u32, addr: IpAddr) -> io::Result<()> {
        let seq = self.send(
            RouteNetlinkMessage::NewNeighbour(resolve_request(ifindex, addr)),
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE,
        )?;
        self.replies(seq, |_| true).map(|_| ())
    }
}

/// A NETLINK_ROUTE socket subscribed to neighbour changes and to route and
/// address changes of both families.
#[derive(Debug)]
pub struct Events {
    sock: Socket,
    buf: Vec<u8>,
}

impl Events {
    /// Subscribe (in the calling thread's network namespace).
    pub fn open() -> io::Result<Self> {
        let mut sock = Socket::new(NETLINK_ROUTE)?;
        // Best effort: a smaller buffer only makes ENOBUFS likelier.
        let _ = sock.set_rx_buf_sz(EVENT_RCVBUF);
        sock.bind_auto()?;
        for g in [
            libc::RTNLGRP_NEIGH,
            libc::RTNLGRP_IPV4_ROUTE,
            libc::RTNLGRP_IPV4_IFADDR,
            libc::RTNLGRP_IPV6_ROUTE,
            libc::RTNLGRP_IPV6_IFADDR,
        ] {
            sock.add_membership(g)?;
        }
        sock.set_non_blocking(true)?;
        Ok(Events {
            sock,
            buf: Vec::with_capacity(BUF),
        })
    }

    /// Wait until an event is pending or `timeout` passed.
    pub fn wait(&self, timeout: Duration) -> io::Result<bool> {
        readable(&self.sock, timeout)
    }

    /// Hand every pending event to `f`, without waiting.
    pub fn drain(&mut self, mut f: impl FnMut(Event)) -> io::Result<()> {
        loop {
            match recv_whole(&self.sock, &mut self.buf, libc::MSG_DONTWAIT) {
                Ok(Some(())) => {}
                Ok(None) => {
                    f(Event::Lost);
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    f(Event::Lost);
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            for m in messages(&self.buf) {
                let Ok(m) = m else {
                    // An event we cannot read may have been one we need.
                    f(Event::Lost);
                    break;
                };
                let NetlinkPayload::InnerMessage(inner) = m.payload else {
                    continue;
                };
                match inner {
                    RouteNetlinkMessage::NewNeighbour(n) => {
                        if let Some(n) = parse_neigh(&n) {
                            f(Event::Neighbour(n));
                        }
                    }
                    RouteNetlinkMessage::DelNeighbour(n) => {
                        if let Some(n) = parse_neigh(&n) {
                            f(Event::NeighbourGone(n));
                        }
                    }
                    RouteNetlinkMessage::NewRoute(_)
                    | RouteNetlinkMessage::DelRoute(_)
                    | RouteNetlinkMessage::NewAddress(_)
                    | RouteNetlinkMessage::DelAddress(_) => f(Event::Routes),
                    _ => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn a_route_get_request_parses_back() {
        let mut req = RouteMessage::default();
        req.header.address_family = AddressFamily::Inet;
        req.header.destination_prefix_length = 32;
        req.attributes
            .push(RouteAttribute::Destination(RouteAddress::Inet(
                Ipv4Addr::new(198, 18, 0, 1),
            )));
        let mut m = NetlinkMessage::new(
            NetlinkHeader::default(),
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::GetRoute(req.clone())),
        );
        m.finalize();
        let mut out = vec![0u8; m.buffer_len()];
        m.serialize(&mut out);
        // Two messages back to back, as a datagram holds them.
        let mut two = out.clone();
        two.extend_from_slice(&out);
        let got: Vec<_> = messages(&two).collect::<io::Result<_>>().unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(
            got[1].payload,
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::GetRoute(req))
        );
        assert!(messages(&out[..out.len() - 1]).next().unwrap().is_err());
    }

    #[test]
    fn neighbour_and_route_attributes_are_read() {
        let mut n = NeighbourMessage::default();
        n.header.family = AddressFamily::Inet;
        n.header.ifindex = 7;
        n.attributes
            .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(
                Ipv4Addr::new(198, 18, 0, 2),
            )));
        n.attributes
            .push(NeighbourAttribute::LinkLayerAddress(vec![2, 0, 0, 0, 0, 9]));
        let nb = parse_neigh(&n).unwrap();
        assert_eq!(nb.addr, IpAddr::from([198, 18, 0, 2]));
        assert_eq!(nb.mac, Some([2, 0, 0, 0, 0, 9]));
        assert_eq!(nb.ifindex, 7);
        let mut r = RouteMessage::default();
        assert_eq!(parse_route(&r), None);
        r.attributes.push(RouteAttribute::Oif(3));
        r.attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet(Ipv4Addr::new(
                198, 18, 0, 254,
            ))));
        let route = parse_route(&r).unwrap();
        assert_eq!(route.oif, 3);
        assert_eq!(
            route.hop(IpAddr::from([198, 19, 0, 1])),
            IpAddr::from([198, 18, 0, 254])
        );
    }

    #[test]
    fn ipv6_neighbours_routes_and_requests() {
        let rs: Ipv6Addr = "2001:2::11".parse().unwrap();
        let gw: Ipv6Addr = "fe80::1".parse().unwrap();
        let src: Ipv6Addr = "2001:2::2".parse().unwrap();
        let mut n = NeighbourMessage::default();
        n.header.family = AddressFamily::Inet6;
        n.header.ifindex = 4;
        n.header.state = netlink_packet_route::neighbour::NeighbourState::Reachable;
        n.attributes
            .push(NeighbourAttribute::Destination(NeighbourAddress::Inet6(gw)));
        n.attributes
            .push(NeighbourAttribute::LinkLayerAddress(vec![2, 0, 0, 0, 6, 1]));
        let nb = parse_neigh(&n).unwrap();
        assert_eq!(
            (nb.addr, nb.ifindex, nb.mac),
            (IpAddr::V6(gw), 4, Some([2, 0, 0, 0, 6, 1]))
        );
        assert!(nb.usable());
        // A bridge's forwarding entry is not a neighbour.
        n.header.family = AddressFamily::Bridge;
        assert_eq!(parse_neigh(&n), None);

        let mut r = RouteMessage::default();
        r.header.address_family = AddressFamily::Inet6;
        r.attributes.push(RouteAttribute::Oif(4));
        r.attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet6(gw)));
        r.attributes
            .push(RouteAttribute::PrefSource(RouteAddress::Inet6(src)));
        let route = parse_route(&r).unwrap();
        assert_eq!(route.hop(IpAddr::V6(rs)), IpAddr::V6(gw));
        assert_eq!(route.prefsrc, Some(IpAddr::V6(src)));
        let on_link = Route {
            gateway: None,
            ..route
        };
        assert_eq!(on_link.hop(IpAddr::V6(rs)), IpAddr::V6(rs));

        // The requests name the family and a host route of its length, and
        // go out as the kernel reads them.
        let q = route_request(IpAddr::V6(rs));
        assert_eq!(q.header.address_family, AddressFamily::Inet6);
        assert_eq!(q.header.destination_prefix_length, 128);
        let q4 = route_request(IpAddr::from([198, 18, 0, 1]));
        assert_eq!(q4.header.destination_prefix_length, 32);
        let res = resolve_request(4, IpAddr::V6(gw));
        assert_eq!(res.header.family, AddressFamily::Inet6);
        for msg in [
            RouteNetlinkMessage::GetRoute(q),
            RouteNetlinkMessage::NewNeighbour(res),
        ] {
            let mut m = NetlinkMessage::new(
                NetlinkHeader::default(),
                NetlinkPayload::InnerMessage(msg.clone()),
            );
            m.finalize();
            let mut out = vec![0u8; m.buffer_len()];
            m.serialize(&mut out);
            let back = messages(&out).next().unwrap().unwrap();
            assert_eq!(back.payload, NetlinkPayload::InnerMessage(msg));
        }
    }
}
