//! Tunnels (`-i`): what the administrator configured and what the data
//! plane puts on the wire.
//!
//! ipvsadm accepts more than xvs encapsulates (a checksum option on GRE,
//! remote checksum offload on GUE), and listings must print back exactly
//! what was written, so the configuration keeps [`TunConf`]; the workers
//! only need [`TunKind`], derived from it by [`TunConf::kind`], the one
//! place where an option xvs does not implement is mapped to what it does.

/// Length of the outer IPv4 header of every encapsulation (no options).
const OUTER_IPV4_LEN: usize = 20;
/// Length of a UDP header.
const UDP_HEADER_LEN: usize = 8;
/// Length of the GUE header written (version 0, no extension fields).
pub const GUE_HEADER_LEN: usize = 4;
/// Length of the GRE header written (no checksum, key or sequence).
pub const GRE_HEADER_LEN: usize = 4;

/// Encapsulation of a tunnel destination (`--tun-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TunType {
    /// IP-in-IP (the default).
    #[default]
    Ipip,
    /// Generic UDP Encapsulation, to `--tun-port`.
    Gue,
    /// Generic Routing Encapsulation.
    Gre,
}

impl TunType {
    /// The name as `--tun-type` spells it.
    pub fn name(self) -> &'static str {
        match self {
            TunType::Ipip => "ipip",
            TunType::Gue => "gue",
            TunType::Gre => "gre",
        }
    }
}

/// Checksum option of a GUE/GRE tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TunCsum {
    /// `--tun-nocsum` (the default).
    #[default]
    NoCsum,
    /// `--tun-csum`.
    Csum,
    /// `--tun-remcsum` (remote checksum offload, GUE only).
    RemCsum,
}

impl TunCsum {
    /// The option that selects this setting.
    pub fn option(self) -> &'static str {
        match self {
            TunCsum::NoCsum => "--tun-nocsum",
            TunCsum::Csum => "--tun-csum",
            TunCsum::RemCsum => "--tun-remcsum",
        }
    }
}

/// Tunnel parameters of a destination as configured (meaningful for
/// [`Fwd::Tun`](crate::Fwd::Tun) only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TunConf {
    /// Encapsulation.
    pub kind: TunType,
    /// Destination UDP port of GUE (0 otherwise).
    pub port: u16,
    /// Checksum setting.
    pub csum: TunCsum,
}

impl TunConf {
    /// The encapsulation the data plane performs for this configuration
    /// (remote checksum offload is not done: GUE then goes with a
    /// checksum; GRE is always sent without one).
    pub fn kind(&self) -> TunKind {
        match self.kind {
            TunType::Ipip => TunKind::Ipip,
            TunType::Gre => TunKind::Gre,
            TunType::Gue => TunKind::Gue {
                port: self.port,
                checksum: self.csum != TunCsum::NoCsum,
            },
        }
    }
}

/// The encapsulation a tunnel destination's packets get on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TunKind {
    /// IP-in-IP (protocol 4), the default.
    #[default]
    Ipip,
    /// Generic UDP Encapsulation to UDP port `port` (`--tun-port`); the
    /// UDP checksum is computed when `checksum` is set, else 0 (none).
    Gue {
        /// Destination UDP port.
        port: u16,
        /// Compute the outer UDP checksum (IPVS's `--tun-nocsum` off).
        checksum: bool,
    },
    /// Plain GRE (protocol 47) carrying IPv4 (0x0800).
    Gre,
}

impl TunKind {
    /// Bytes the encapsulation adds in front of the inner IPv4 packet.
    #[inline]
    pub const fn overhead(self) -> usize {
        match self {
            TunKind::Ipip => OUTER_IPV4_LEN,
            TunKind::Gue { .. } => OUTER_IPV4_LEN + UDP_HEADER_LEN + GUE_HEADER_LEN,
            TunKind::Gre => OUTER_IPV4_LEN + GRE_HEADER_LEN,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_options_map_to_what_is_sent() {
        let gue = |csum| TunConf {
            kind: TunType::Gue,
            port: 6080,
            csum,
        };
        assert_eq!(TunConf::default().kind(), TunKind::Ipip);
        assert_eq!(
            gue(TunCsum::NoCsum).kind(),
            TunKind::Gue {
                port: 6080,
                checksum: false
            }
        );
        for c in [TunCsum::Csum, TunCsum::RemCsum] {
            assert_eq!(
                gue(c).kind(),
                TunKind::Gue {
                    port: 6080,
                    checksum: true
                }
            );
        }
        let gre = TunConf {
            kind: TunType::Gre,
            port: 0,
            csum: TunCsum::Csum,
        };
        assert_eq!(gre.kind(), TunKind::Gre);
    }

    #[test]
    fn overheads_as_documented() {
        assert_eq!(TunKind::Ipip.overhead(), 20);
        assert_eq!(TunKind::Gre.overhead(), 24);
        let gue = TunKind::Gue {
            port: 1,
            checksum: false,
        };
        assert_eq!(gue.overhead(), 32);
    }
}
