//! Virtual services and how their real servers are reached: the identity
//! of a service, the forwarding method and persistence, exactly as both the
//! grammar writes them and the workers act on them.

use std::net::IpAddr;

/// Scheduler flags of a service (`-b flag-1,flag-2,flag-3`), as bits of
/// [`ServiceConf::flags`](crate::ServiceConf::flags).
pub use xvs_scheduler::{SCHED_FLAG_1, SCHED_FLAG_2, SCHED_FLAG_3};

/// Forwarding method of a real server, bound to a connection when it is
/// created (as IPVS binds `packet_xmit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fwd {
    /// Direct routing (`-g`, listed as `Route`).
    Dr,
    /// IP-in-IP tunnelling (`-i`, listed as `Tunnel`).
    Tun,
    /// Masquerading (`-m`, listed as `Masq`).
    Nat,
}

/// Identity of a virtual service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SvcKey {
    /// `-t/-u/--sctp-service addr:port` (protocol number, VIP, port).
    Addr {
        /// IP protocol number.
        proto: u8,
        /// Virtual IP.
        vip: IpAddr,
        /// Virtual port (0 = every port, persistent only).
        port: u16,
    },
    /// `-f mark` (firewall mark, IPv6 or not).
    Fwmark {
        /// The mark.
        mark: u32,
        /// `-6`.
        v6: bool,
    },
}

/// Persistence of a service (`-p timeout [-M netmask]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Persist {
    /// Template lifetime in seconds.
    pub timeout: u32,
    /// Client address mask applied to the template key (IPv4).
    pub mask: u32,
    /// The `-M` prefix length itself: what IPv6 clients are masked with.
    pub prefix: u8,
}

impl Persist {
    /// Persistence for `timeout` seconds grouping clients by their first
    /// `prefix` address bits (`-M`; 32 or more, or an IPv6 length, keeps
    /// the whole IPv4 address).
    pub fn new(timeout: u32, prefix: u8) -> Self {
        let mask = if prefix >= 32 {
            u32::MAX
        } else if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - prefix)
        };
        Persist {
            timeout,
            mask,
            prefix,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_lengths_become_masks() {
        assert_eq!(Persist::new(1, 32).mask, u32::MAX);
        assert_eq!(Persist::new(1, 128).mask, u32::MAX);
        assert_eq!(Persist::new(1, 24).mask, 0xffff_ff00);
        assert_eq!(Persist::new(1, 1).mask, 0x8000_0000);
        assert_eq!(Persist::new(1, 0).mask, 0);
        assert_eq!(Persist::new(1, 64).prefix, 64);
        assert_eq!(Persist::new(360, 16).timeout, 360);
    }
}
