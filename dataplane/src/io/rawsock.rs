//! Raw IPv4 and IPv6 sockets, packet sockets and TUN/TAP devices: the kernel
//! interfaces the test harness needs to play a tunnel endpoint in user
//! space (this kernel has no `ipip` module), and to put hand-made frames on
//! a wire. Small safe wrappers; the `unsafe` calls stay here, in `io/`.
//!
//! Nothing here is on the data plane's hot path.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// `ETH_P_ALL`: a packet socket bound with it receives every frame.
pub const ETH_P_ALL: u16 = 0x0003;

fn cvt(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn cvt_size(rc: libc::ssize_t) -> io::Result<usize> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc as usize)
    }
}

fn socket(domain: libc::c_int, ty: libc::c_int, protocol: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: socket(2) takes plain integers and returns a new descriptor
    // or -1; nothing else is touched.
    let fd = cvt(unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC, protocol) })?;
    // SAFETY: `fd` was just returned by socket(2), is open, and is owned by
    // nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn set_rcvtimeo(fd: RawFd, t: Option<Duration>) -> io::Result<()> {
    let t = t.unwrap_or(Duration::ZERO);
    let tv = libc::timeval {
        tv_sec: t.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_usec: libc::suseconds_t::from(t.subsec_micros()),
    };
    // SAFETY: SO_RCVTIMEO reads a `timeval` of exactly the length passed,
    // from a live local; the fd is borrowed for the call.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

fn recv(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: recv(2) writes at most `buf.len()` bytes into `buf`, which is
    // valid and exclusively borrowed for the call.
    cvt_size(unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) })
}

/// Waits until `fd` is readable, at most `timeout`; `Ok(false)` on timeout.
pub fn wait_readable(fd: BorrowedFd<'_>, timeout: Duration) -> io::Result<bool> {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
    // SAFETY: poll(2) reads and writes exactly one `pollfd`, a live local.
    let n = cvt(unsafe { libc::poll(&mut p, 1, ms) })?;
    Ok(n > 0)
}

/// A raw IPv4 socket for one IP protocol (`socket(AF_INET, SOCK_RAW, p)`,
/// needs CAP_NET_RAW): receives every packet of that protocol delivered to
/// the host, IPv4 header included, and sends payloads under an IPv4 header
/// the kernel writes (source address chosen by the routing table).
#[derive(Debug)]
pub struct RawIpv4Socket {
    fd: OwnedFd,
    protocol: u8,
}

impl RawIpv4Socket {
    /// Opens a raw socket for IP protocol `protocol` (e.g. 4, IP-in-IP).
    pub fn open(protocol: u8) -> io::Result<Self> {
        let fd = socket(libc::AF_INET, libc::SOCK_RAW, libc::c_int::from(protocol))?;
        Ok(RawIpv4Socket { fd, protocol })
    }

    /// The IP protocol this socket carries.
    pub fn protocol(&self) -> u8 {
        self.protocol
    }

    /// Receives one packet, IPv4 header included; blocks (see
    /// [`RawIpv4Socket::set_read_timeout`]).
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        recv(self.fd.as_raw_fd(), buf)
    }

    /// Sends `payload` to `dst` under a kernel-written IPv4 header whose
    /// protocol is this socket's.
    pub fn send_to(&self, payload: &[u8], dst: Ipv4Addr) -> io::Result<usize> {
        let sa = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: 0,
            sin_addr: libc::in_addr {
                s_addr: u32::from(dst).to_be(),
            },
            sin_zero: [0; 8],
        };
        // SAFETY: sendto(2) reads `payload.len()` bytes from `payload` and a
        // `sockaddr_in` of the length passed, both live for the call.
        cvt_size(unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                payload.as_ptr().cast(),
                payload.len(),
                0,
                (&sa as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        })
    }

    /// Bounds how long [`RawIpv4Socket::recv`] blocks (`None`: forever);
    /// a timeout surfaces as `WouldBlock`/`TimedOut`.
    pub fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        set_rcvtimeo(self.fd.as_raw_fd(), t)
    }
}

impl AsFd for RawIpv4Socket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// A raw IPv6 socket for one next-header value (`socket(AF_INET6,
/// SOCK_RAW, p)`, needs CAP_NET_RAW): sends payloads under an IPv6 header
/// the kernel writes, and receives the payloads (no IPv6 header, as IPv6
/// raw sockets deliver them) with their source. For ICMPv6 (58) the
/// kernel computes the checksum over the pseudo-header itself.
#[derive(Debug)]
pub struct RawIpv6Socket {
    fd: OwnedFd,
}

impl RawIpv6Socket {
    /// Opens a raw socket for next header `protocol` (e.g. 58, ICMPv6).
    pub fn open(protocol: u8) -> io::Result<Self> {
        let fd = socket(libc::AF_INET6, libc::SOCK_RAW, libc::c_int::from(protocol))?;
        Ok(RawIpv6Socket { fd })
    }

    /// Sends `payload` to `dst` under a kernel-written IPv6 header.
    pub fn send_to(&self, payload: &[u8], dst: Ipv6Addr) -> io::Result<usize> {
        // SAFETY: all-zero bytes are a valid `sockaddr_in6`.
        let mut sa: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
        sa.sin6_family = libc::AF_INET6 as libc::sa_family_t;
        sa.sin6_addr.s6_addr = dst.octets();
        // SAFETY: sendto(2) reads `payload.len()` bytes from `payload` and a
        // `sockaddr_in6` of the length passed, both live for the call.
        cvt_size(unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                payload.as_ptr().cast(),
                payload.len(),
                0,
                (&sa as *const libc::sockaddr_in6).cast(),
                std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
            )
        })
    }

    /// Receives one payload and the address it came from; blocks (see
    /// [`RawIpv6Socket::set_read_timeout`]).
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, Ipv6Addr)> {
        // SAFETY: all-zero bytes are a valid `sockaddr_in6`.
        let mut sa: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
        let mut sl = std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
        // SAFETY: recvfrom(2) writes at most `buf.len()` bytes into `buf`
        // and at most `sl` bytes into `sa`, both live and exclusively
        // borrowed for the call.
        let n = cvt_size(unsafe {
            libc::recvfrom(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                0,
                (&mut sa as *mut libc::sockaddr_in6).cast(),
                &mut sl,
            )
        })?;
        Ok((n, Ipv6Addr::from(sa.sin6_addr.s6_addr)))
    }

    /// Bounds how long [`RawIpv6Socket::recv_from`] blocks (`None`:
    /// forever); a timeout surfaces as `WouldBlock`/`TimedOut`.
    pub fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        set_rcvtimeo(self.fd.as_raw_fd(), t)
    }
}

impl AsFd for RawIpv6Socket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// A packet socket (`AF_PACKET`, `SOCK_RAW`) bound to one interface: sends
/// whole Ethernet frames as they are, and receives the frames of
/// `protocol` (an EtherType, or [`ETH_P_ALL`]; 0 receives nothing).
#[derive(Debug)]
pub struct PacketSocket {
    fd: OwnedFd,
    ifindex: i32,
}

/// The index of interface `name` in the caller's network namespace.
pub fn if_index(name: &str) -> io::Result<u32> {
    let c = CString::new(name).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: if_nametoindex reads a NUL-terminated string that lives for
    // the call.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(idx)
}

/// The IPv4 and IPv6 addresses of interface `name` (`getifaddrs(3)`), in
/// the order the kernel lists them.
pub fn interface_addrs(name: &str) -> io::Result<Vec<std::net::IpAddr>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs(3) writes one pointer into `head`, a live local;
    // on success the list it points to is ours until freeifaddrs.
    cvt(unsafe { libc::getifaddrs(&mut head) })?;
    let mut out = Vec::new();
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a non-null node of the list getifaddrs returned,
        // not yet freed; its name is a NUL-terminated string and its
        // address, when non-null, a sockaddr of the family it names
        // (sockaddr_in for AF_INET, sockaddr_in6 for AF_INET6).
        unsafe {
            let ifa = &*cur;
            let same = std::ffi::CStr::from_ptr(ifa.ifa_name).to_bytes() == name.as_bytes();
            if same && !ifa.ifa_addr.is_null() {
                match i32::from((*ifa.ifa_addr).sa_family) {
                    libc::AF_INET => {
                        let sa = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                        out.push(Ipv4Addr::from(u32::from_be(sa.sin_addr.s_addr)).into());
                    }
                    libc::AF_INET6 => {
                        let sa = &*(ifa.ifa_addr as *const libc::sockaddr_in6);
                        out.push(Ipv6Addr::from(sa.sin6_addr.s6_addr).into());
                    }
                    _ => {}
                }
            }
            cur = ifa.ifa_next;
        }
    }
    // SAFETY: `head` came from a successful getifaddrs and is freed once;
    // no reference into the list outlives this call.
    unsafe { libc::freeifaddrs(head) };
    Ok(out)
}

impl PacketSocket {
    /// Opens a packet socket on interface `ifname` receiving `protocol`.
    pub fn bind(ifname: &str, protocol: u16) -> io::Result<Self> {
        let ifindex = if_index(ifname)? as i32;
        let proto = protocol.to_be();
        let fd = socket(libc::AF_PACKET, libc::SOCK_RAW, libc::c_int::from(proto))?;
        let sa = libc::sockaddr_ll {
            sll_family: libc::AF_PACKET as libc::c_ushort,
            sll_protocol: proto,
            sll_ifindex: ifindex,
            sll_hatype: 0,
            sll_pkttype: 0,
            sll_halen: 0,
            sll_addr: [0; 8],
        };
        // SAFETY: bind(2) reads a `sockaddr_ll` of the length passed from a
        // live local.
        cvt(unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sa as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        })?;
        Ok(PacketSocket { fd, ifindex })
    }

    /// The interface index the socket is bound to.
    pub fn ifindex(&self) -> i32 {
        self.ifindex
    }

    /// Sends one Ethernet frame unchanged.
    pub fn send(&self, frame: &[u8]) -> io::Result<usize> {
        // SAFETY: send(2) reads `frame.len()` bytes from `frame`, live for
        // the call.
        cvt_size(unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) })
    }

    /// Receives one frame (sent or received on the interface); blocks (see
    /// [`PacketSocket::set_read_timeout`]).
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        recv(self.fd.as_raw_fd(), buf)
    }

    /// Receives one frame the interface received (frames it sent, which a
    /// packet socket sees too, are skipped).
    pub fn recv_incoming(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            // SAFETY: all-zero bytes are a valid `sockaddr_ll`.
            let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut sl = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            // SAFETY: recvfrom(2) writes at most `buf.len()` bytes into
            // `buf` and at most `sl` bytes into `sa`, both live and
            // exclusively borrowed for the call.
            let n = cvt_size(unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    0,
                    (&mut sa as *mut libc::sockaddr_ll).cast(),
                    &mut sl,
                )
            })?;
            if sa.sll_pkttype != libc::PACKET_OUTGOING {
                return Ok(n);
            }
        }
    }

    /// Bounds how long [`PacketSocket::recv`] blocks (`None`: forever).
    pub fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        set_rcvtimeo(self.fd.as_raw_fd(), t)
    }
}

impl AsFd for PacketSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Layer of a [`TunDevice`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TunMode {
    /// A TUN device: IP packets, no link header.
    Tun,
    /// A TAP device: Ethernet frames.
    Tap,
}

/// A TUN or TAP device (`/dev/net/tun`, `TUNSETIFF`, no packet-info
/// prefix): what is written to it the kernel receives as if it arrived on
/// that interface, and what the kernel sends through it can be read. The
/// interface lives as long as this value (it is not made persistent); it
/// is created down: bring it up with `ip link set NAME up`.
#[derive(Debug)]
pub struct TunDevice {
    file: File,
    name: String,
}

impl TunDevice {
    /// Creates (or attaches to) device `name` (at most 15 bytes).
    pub fn open(name: &str, mode: TunMode) -> io::Result<Self> {
        if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains('\0') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "interface names are 1 to 15 bytes",
            ));
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/net/tun")?;
        let flags = libc::IFF_NO_PI
            | match mode {
                TunMode::Tun => libc::IFF_TUN,
                TunMode::Tap => libc::IFF_TAP,
            };
        // SAFETY: `ifreq` is a plain C struct (arrays and a union of plain
        // fields) for which all-zero bytes are a valid value.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        for (d, s) in req.ifr_name.iter_mut().zip(name.bytes()) {
            *d = s as libc::c_char;
        }
        req.ifr_ifru.ifru_flags = flags as libc::c_short;
        // SAFETY: TUNSETIFF reads and writes one `ifreq`, a live local whose
        // name is NUL-terminated (checked length, zeroed tail); the fd is
        // an open /dev/net/tun borrowed for the call.
        cvt(unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &mut req) })?;
        let got: Vec<u8> = req
            .ifr_name
            .iter()
            .take_while(|c| **c != 0)
            .map(|c| *c as u8)
            .collect();
        Ok(TunDevice {
            file,
            name: String::from_utf8_lossy(&got).into_owned(),
        })
    }

    /// The interface name the kernel gave the device.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Reads one packet (TUN) or frame (TAP) the kernel sent through the
    /// device; blocks (see [`wait_readable`]).
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        (&self.file).read(buf)
    }

    /// Hands one packet (TUN) or frame (TAP) to the kernel as received on
    /// the device.
    pub fn write(&self, pkt: &[u8]) -> io::Result<usize> {
        (&self.file).write(pkt)
    }
}

impl AsFd for TunDevice {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}
