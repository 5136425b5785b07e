//! The sockets of the sync daemons, set up as the kernel's are, so that a
//! kernel IPVS peer and an xvs peer cannot tell each other apart: the
//! master sends from the interface's primary IPv4 address (an ephemeral
//! port) to the group, never to itself (loop off), with the configured TTL;
//! the backup is bound to group:port on the interface and joins the group
//! there.

use std::ffi::OsString;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::socket::{self, sockopt, AddressFamily, SockFlag, SockType, SockaddrIn};

/// What a daemon needs to know of its interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Iface {
    /// Interface index.
    pub index: u32,
    /// Its primary (first) IPv4 address.
    pub addr: Ipv4Addr,
    /// Its MTU.
    pub mtu: u32,
}

/// Receive buffer asked for (the kernel may give less without
/// CAP_NET_ADMIN): a resync arrives as a burst of datagrams.
const RCVBUF: usize = 8 << 20;

/// Look `name` up: `No such device` (as the kernel's ENODEV) when it does
/// not exist, and an error when it has no IPv4 address.
pub fn iface(name: &str) -> Result<Iface, String> {
    let index = nix::net::if_::if_nametoindex(name).map_err(|_| "No such device".to_string())?;
    let addr = nix::ifaddrs::getifaddrs()
        .map_err(|e| format!("{name}: cannot read its addresses: {e}"))?
        .filter(|a| a.interface_name == name)
        .find_map(|a| a.address.and_then(|s| s.as_sockaddr_in().map(|s| s.ip())))
        .ok_or_else(|| format!("{name}: the interface has no IPv4 address"))?;
    let mtu = std::fs::read_to_string(format!("/sys/class/net/{name}/mtu"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1500);
    Ok(Iface { index, addr, mtu })
}

fn udp_on(name: &str, reuse: bool) -> io::Result<OwnedFd> {
    let fd = socket::socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    if reuse {
        socket::setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    }
    socket::setsockopt(&fd, sockopt::BindToDevice, &OsString::from(name))?;
    Ok(fd)
}

fn bind(fd: &OwnedFd, addr: Ipv4Addr, port: u16) -> io::Result<()> {
    socket::bind(
        fd.as_raw_fd(),
        &SockaddrIn::from(SocketAddrV4::new(addr, port)),
    )?;
    Ok(())
}

/// A master's sending socket: on `name`, from its primary address, loop
/// off, `ttl`, connected to `group:port`.
pub fn master_socket(
    name: &str,
    ifc: &Iface,
    group: Ipv4Addr,
    port: u16,
    ttl: u8,
) -> io::Result<UdpSocket> {
    let fd = udp_on(name, false)?;
    bind(&fd, ifc.addr, 0)?;
    let s = UdpSocket::from(fd);
    s.set_multicast_loop_v4(false)?;
    s.set_multicast_ttl_v4(u32::from(ttl))?;
    s.connect(SocketAddrV4::new(group, port))?;
    Ok(s)
}

/// A socket receiving the group's datagrams to `port` on `name` (a
/// backup's, and a master's resync responder): address reuse, bound to
/// `group:port` on the interface, member of the group there.
pub fn group_socket(name: &str, ifc: &Iface, group: Ipv4Addr, port: u16) -> io::Result<UdpSocket> {
    let fd = udp_on(name, true)?;
    if socket::setsockopt(&fd, sockopt::RcvBufForce, &RCVBUF).is_err() {
        let _ = socket::setsockopt(&fd, sockopt::RcvBuf, &RCVBUF);
    }
    bind(&fd, group, port)?;
    let s = UdpSocket::from(fd);
    s.join_multicast_v4(&group, &ifc.addr)?;
    Ok(s)
}

/// A unicast socket on `name` from its primary address (an ephemeral
/// port), able to send to the group with `ttl` (a backup's resync
/// requests, a master's resync answers).
pub fn unicast_socket(name: &str, ifc: &Iface, ttl: u8) -> io::Result<UdpSocket> {
    let fd = udp_on(name, false)?;
    if socket::setsockopt(&fd, sockopt::RcvBufForce, &RCVBUF).is_err() {
        let _ = socket::setsockopt(&fd, sockopt::RcvBuf, &RCVBUF);
    }
    bind(&fd, ifc.addr, 0)?;
    let s = UdpSocket::from(fd);
    s.set_multicast_loop_v4(false)?;
    s.set_multicast_ttl_v4(u32::from(ttl))?;
    Ok(s)
}
