//! Forwarding methods, one file each. Every method has the same entry
//! point, `packet_xmit(buf, pkt, ctx)`: the frame, the view the pipeline
//! parsed it into once, and where it goes. A connection is bound to its
//! method when it is created (the `fwd` code of its entry), as IPVS binds
//! `packet_xmit`, and the pipeline dispatches on that code.
//!
//! The rewrites behind `packet_xmit` trust the parsed view's offsets and
//! do not validate again. The older entry points (`nat::xmit_in`,
//! `tun::xmit`, ...) validate a raw frame first, for callers that have no
//! parsed view (the decapsulating test peer, the frame tests).

pub mod dr;
pub mod nat;
pub mod tun;

use crate::wire::eth::{EthernetFrame, Mac};
use std::net::{Ipv4Addr, Ipv6Addr};
use tun::TunKind;

/// Which way a packet goes through the director (NAT rewrites the
/// opposite ends for the two).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// Client → real server: the destination changes (for an ICMP error,
    /// the outer destination and the quoted source).
    In,
    /// Real server → client: the source changes (for an ICMP error, the
    /// outer source and the quoted destination).
    Out,
}

/// Where a frame goes, for any method; each reads the fields it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XmitCtx {
    /// Source MAC: the director's egress interface.
    pub src_mac: Mac,
    /// Destination MAC: the real server, the client or the next hop.
    pub dst_mac: Mac,
    /// NAT: the address the rewritten end gets. TUN: the outer
    /// destination, the real server.
    pub addr: Ipv4Addr,
    /// NAT of IPv6: the address the rewritten end gets.
    pub addr6: Ipv6Addr,
    /// NAT: the port the rewritten end gets.
    pub port: u16,
    /// NAT: which way the packet goes.
    pub dir: Dir,
    /// TUN: the encapsulation.
    pub tun: TunKind,
    /// TUN: the outer source, the director's address on the egress link.
    pub tun_src: Ipv4Addr,
    /// TUN to an IPv6 real server (`addr6`): the outer IPv6 source.
    pub tun_src6: Ipv6Addr,
    /// TUN: IP MTU of the egress link.
    pub mtu: u16,
    /// TUN: identification of the outer header (and of a
    /// fragmentation-needed error).
    pub ident: u16,
}

impl XmitCtx {
    /// A context that only readdresses the frame from `src_mac` to
    /// `dst_mac` (direct routing); the other fields are neutral.
    #[inline]
    pub fn macs(src_mac: Mac, dst_mac: Mac) -> Self {
        XmitCtx {
            src_mac,
            dst_mac,
            addr: Ipv4Addr::UNSPECIFIED,
            addr6: Ipv6Addr::UNSPECIFIED,
            port: 0,
            dir: Dir::In,
            tun: TunKind::Ipip,
            tun_src: Ipv4Addr::UNSPECIFIED,
            tun_src6: Ipv6Addr::UNSPECIFIED,
            mtu: 0,
            ident: 0,
        }
    }
}

/// What a method left in the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Out {
    /// The rewritten frame: send it on towards its destination.
    Tx,
    /// An ICMP fragmentation-needed (IPv6: an ICMPv6 packet too big) for
    /// the sender: send it back out of the port the frame came in on.
    FragNeeded,
}

/// Why a method could not send a frame (the frame is left as it was).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum XmitError {
    /// The buffer cannot grow to hold the result.
    #[error("no tailroom for the result")]
    NoTailroom,
    /// Too big for the egress MTU, and no ICMP error may answer it.
    #[error("too big for the egress MTU")]
    TooBig,
    /// The packet's headers do not allow the method (truncated, impossible
    /// fields, not IPv4).
    #[error("malformed packet")]
    Malformed,
    /// The egress MTU is too small for the method's headers.
    #[error("egress MTU too small for the method")]
    MtuTooSmall,
}

/// Readdress a validated frame from `src_mac` to `dst_mac`.
#[inline]
pub(crate) fn set_macs(frame: &mut [u8], src_mac: Mac, dst_mac: Mac) {
    let mut e = EthernetFrame::new_unchecked(frame);
    e.set_dst(dst_mac);
    e.set_src(src_mac);
}
