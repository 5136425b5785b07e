//! Connection synchronisation between directors: one connection as the
//! sync protocol carries it, and the sync daemons' settings.
//!
//! The workers of a master produce [`SyncConn`]s and hand them to the
//! sender; the receiver of a backup decodes datagrams into [`SyncConn`]s
//! and hands them to the workers to install. The wire format (IPVS sync
//! versions 0 and 1) lives with the daemon; this is the plain record
//! both sides of that hand-over speak.

use std::net::{IpAddr, Ipv4Addr};

/// `IP_VS_CONN_F_*` bits carried in a record's flags.
pub mod flags {
    /// Forwarding method mask.
    pub const FWD_MASK: u32 = 0x0007;
    /// Masquerading (NAT).
    pub const MASQ: u32 = 0x0000;
    /// Local node.
    pub const LOCALNODE: u32 = 0x0001;
    /// IP-in-IP tunnel.
    pub const TUNNEL: u32 = 0x0002;
    /// Direct routing.
    pub const DROUTE: u32 = 0x0003;
    /// Cache bypass.
    pub const BYPASS: u32 = 0x0004;
    /// Installed by the sync daemon.
    pub const SYNC: u32 = 0x0020;
    /// Hashed in the table (never sent).
    pub const HASHED: u32 = 0x0040;
    /// No output packets.
    pub const NOOUTPUT: u32 = 0x0080;
    /// Not active (TCP: not established).
    pub const INACTIVE: u32 = 0x0100;
    /// Outgoing sequence adjustment.
    pub const OUT_SEQ: u32 = 0x0200;
    /// Incoming sequence adjustment.
    pub const IN_SEQ: u32 = 0x0400;
    /// Both sequence bits.
    pub const SEQ_MASK: u32 = 0x0600;
    /// Client port unknown.
    pub const NO_CPORT: u32 = 0x0800;
    /// A persistence template.
    pub const TEMPLATE: u32 = 0x1000;
    /// One-packet scheduling.
    pub const ONE_PACKET: u32 = 0x2000;
    /// Bits a backup keeps from a record.
    pub const BACKUP_MASK: u32 = FWD_MASK | NOOUTPUT | INACTIVE | SEQ_MASK | NO_CPORT | TEMPLATE;
    /// Bits a backup updates on an existing connection.
    pub const BACKUP_UPD_MASK: u32 = INACTIVE | SEQ_MASK;
}

/// One connection or persistence template, as a sync record carries it.
/// Addresses are those of the record: for a template of a fwmark service
/// `vaddr` is the mark (as an IPv4 address, as IPVS writes it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SyncConn {
    /// IP protocol (templates of fwmark services: 0).
    pub protocol: u8,
    /// `IP_VS_CONN_F_*` flags (see [`flags`]).
    pub flags: u32,
    /// Protocol state (IPVS numbering: TCP ESTABLISHED = 1, ...).
    pub state: u16,
    /// Client port.
    pub cport: u16,
    /// Virtual port.
    pub vport: u16,
    /// Real server port.
    pub dport: u16,
    /// Firewall mark of the service (0: none).
    pub fwmark: u32,
    /// Seconds left (0: the receiver's timeout for the state).
    pub timeout: u32,
    /// Client address.
    pub caddr: IpAddr,
    /// Virtual address.
    pub vaddr: IpAddr,
    /// Real server address.
    pub daddr: IpAddr,
}

impl SyncConn {
    /// Whether this is a persistence template.
    pub fn is_template(&self) -> bool {
        self.flags & flags::TEMPLATE != 0
    }

    /// The forwarding method bits.
    pub fn fwd(&self) -> u32 {
        self.flags & flags::FWD_MASK
    }

    /// The forwarding method the flags name, if xvs has it (local node and
    /// bypass it has not): how a backup forwards a connection whose real
    /// server it does not have.
    pub fn method(&self) -> Option<crate::svc::Fwd> {
        match self.fwd() {
            flags::MASQ => Some(crate::svc::Fwd::Nat),
            flags::TUNNEL => Some(crate::svc::Fwd::Tun),
            flags::DROUTE => Some(crate::svc::Fwd::Dr),
            _ => None,
        }
    }
}

/// A sync daemon's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SyncRole {
    /// Sends the local connections.
    Master,
    /// Receives and installs a master's connections.
    Backup,
}

impl SyncRole {
    /// The word ipvsadm uses.
    pub fn name(self) -> &'static str {
        match self {
            SyncRole::Master => "master",
            SyncRole::Backup => "backup",
        }
    }
}

/// Default multicast group (`224.0.0.81`).
pub const DEFAULT_GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 81);
/// Default UDP port.
pub const DEFAULT_PORT: u16 = 8848;
/// Default multicast TTL.
pub const DEFAULT_TTL: u8 = 1;
/// Default interface (as ipvsadm's when `--mcast-interface` is omitted).
pub const DEFAULT_IFACE: &str = "eth0";

/// One sync daemon as `--start-daemon` configures it. Options left out
/// are `None` and take the kernel's defaults when the daemon starts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SyncDaemonConf {
    /// Master or backup.
    pub role: SyncRole,
    /// `--mcast-interface`.
    pub iface: String,
    /// `--syncid` (0: a backup accepts any).
    pub syncid: u8,
    /// `--sync-maxlen` (UDP payload bytes).
    pub maxlen: Option<u16>,
    /// `--mcast-group`.
    pub group: Option<IpAddr>,
    /// `--mcast-port`.
    pub port: Option<u16>,
    /// `--mcast-ttl`.
    pub ttl: Option<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::svc::Fwd;

    #[test]
    fn the_method_of_a_record() {
        let mut c = SyncConn {
            protocol: 6,
            flags: flags::DROUTE | flags::INACTIVE,
            state: 1,
            cport: 1,
            vport: 80,
            dport: 80,
            fwmark: 0,
            timeout: 0,
            caddr: Ipv4Addr::new(198, 18, 0, 1).into(),
            vaddr: Ipv4Addr::new(198, 18, 0, 2).into(),
            daddr: Ipv4Addr::new(198, 18, 0, 3).into(),
        };
        assert_eq!(c.method(), Some(Fwd::Dr));
        c.flags = flags::TUNNEL;
        assert_eq!(c.method(), Some(Fwd::Tun));
        c.flags = flags::MASQ | flags::TEMPLATE;
        assert_eq!(c.method(), Some(Fwd::Nat));
        for f in [flags::LOCALNODE, flags::BYPASS, 5, 7] {
            c.flags = f;
            assert_eq!(c.method(), None, "{f}");
        }
    }
}
