//! ipvsadm's command-line grammar, reproduced by hand.
//!
//! ipvsadm's grammar is irregular (an optional-valued `-p`, three bare
//! values after `--set`, one table saying which option goes with which
//! command) and its error messages are part of its interface: scripts and
//! people recognise them. A generic argument parser would reword them, so
//! this module walks the argument vector itself and reports exactly what
//! ipvsadm reports. The checking order follows ipvsadm's: each option as it
//! is met (bad values, repeated options), then the command/option table in
//! option order, then the checks that need the whole command.
//!
//! The parts: the typed result ([`Command`] and its specs, here), the
//! command/option table (`table`), option tokens (`lex`), option values
//! (`values`), the walk over the arguments (`parse`) and the `-h`/`-v`
//! texts (`usage`).

use std::net::IpAddr;

use xvs_config::check::CheckConf;
use xvs_config::svc::{Fwd, SvcKey};

mod lex;
mod parse;
mod table;
#[cfg(test)]
mod tests;
mod usage;
mod values;

pub use parse::parse;
pub(crate) use parse::{misplaced_check_option, HEAD_REGEX};
pub use usage::{usage, version};
pub use values::{parse_addr_port, parse_number, parse_sched_flags};

/// The hint line printed after every command-line error.
pub const HINT: &str = "Try `xvsadm -h' or 'xvsadm --help' for more information.";

/// IP protocol number of TCP.
pub const IPPROTO_TCP: u8 = 6;
/// IP protocol number of UDP.
pub const IPPROTO_UDP: u8 = 17;
/// IP protocol number of SCTP.
pub const IPPROTO_SCTP: u8 = 132;

/// Largest timeout ipvsadm accepts (31 days, in seconds).
pub const MAX_TIMEOUT: u32 = 86400 * 31;
/// Persistence timeout used when `-p` is given without a value.
pub const DEFAULT_PERSISTENCE: u32 = 360;
/// Scheduler used when `-s` is not given.
pub const DEFAULT_SCHED: &str = "wlc";
/// Largest weight ipvsadm accepts.
pub const MAX_WEIGHT: i32 = 65535;

/// A command-line error; its Display is ipvsadm's message (without the
/// hint line, which [`HINT`] holds).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

pub(crate) fn err<T>(msg: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError(msg.into()))
}

/// Tunnel parameters, shared with the data plane.
pub use xvs_config::tun::{TunConf, TunCsum, TunType};

/// `-A`/`-E`: a virtual service and its scheduling options, defaults
/// filled in (ipvsadm sends every field, so an edit replaces them all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSpec {
    /// The service.
    pub key: SvcKey,
    /// Scheduler name (`-s`, default `wlc`); validated by the model.
    pub sched: String,
    /// Scheduler flags (`-b`), `SCHED_FLAG_*` bits.
    pub flags: u32,
    /// Persistence timeout in seconds (`-p`).
    pub persistence: Option<u32>,
    /// Persistence granularity as a prefix length (`-M`; 32 or 128 when
    /// not given).
    pub netmask: u8,
    /// One-packet scheduling (`-o`).
    pub ops: bool,
    /// Persistence engine (`--pe`).
    pub pe: Option<String>,
    /// Check options given (`--check*`): defaults for every real server.
    pub check: CheckConf,
    /// `--quorum WEIGHT`, if given.
    pub quorum: Option<u32>,
    /// `--sorry-server`, if given.
    pub sorry: Option<SorrySpec>,
    /// Whether `check`, `quorum` and `sorry` replace the service's (a
    /// reload making it what a rules file says) rather than change only
    /// what is given (`-E`, as typed).
    pub replace_checks: bool,
}

/// `--sorry-server ADDR[:PORT]`, or `none` to remove it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SorrySpec {
    /// `none`: no sorry server.
    Clear,
    /// The server; without a port, the service's.
    Server(IpAddr, Option<u16>),
}

/// `-a`/`-e`: a real server and its options, defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestSpec {
    /// Real server address.
    pub addr: IpAddr,
    /// Port as written (`None`: the service's); the model applies
    /// IPVS's rules (DR/TUN and firewall-mark services fix the port).
    pub port: Option<u16>,
    /// Forwarding method (`-g` default, `-i`, `-m`).
    pub fwd: Fwd,
    /// Weight (`-w`, default 1).
    pub weight: i32,
    /// Upper connection threshold (`-x`, 0 = none).
    pub u_threshold: u32,
    /// Lower connection threshold (`-y`).
    pub l_threshold: u32,
    /// Tunnel parameters (`--tun-*`).
    pub tun: TunConf,
    /// Check options given (`--check*`), over the service's.
    pub check: CheckConf,
    /// Whether `check` replaces the server's own options (a reload)
    /// rather than change only those given (`-e`, as typed).
    pub replace_checks: bool,
}

/// Options of `-L` (and `-S`'s `-n`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ListOpts {
    /// `-n` (xvs never resolves names, so this changes nothing).
    pub numeric: bool,
    /// `-c`: list connections.
    pub connection: bool,
    /// `--stats`.
    pub stats: bool,
    /// `--rate`.
    pub rate: bool,
    /// `--exact`: full numbers in `--stats`/`--rate`.
    pub exact: bool,
    /// `--thresholds`.
    pub thresholds: bool,
    /// `--persistent-conn`.
    pub persistent_conn: bool,
    /// `--tun-info`.
    pub tun_info: bool,
    /// `--timeout`.
    pub timeout: bool,
    /// `--daemon`.
    pub daemon: bool,
    /// `--dataplane` (xvs): the data plane's counters, drops by reason and
    /// connection-table use.
    pub dataplane: bool,
    /// `--nosort`: list in table order.
    pub nosort: bool,
    /// `--json` (xvs's own): the listing as JSON for tools, in the shape
    /// documented in [`crate::json`].
    pub json: bool,
    /// `--announce` (xvs): which VIPs this director announces to its
    /// router, and why the others are not ([`crate::announce`]).
    pub announce: bool,
    /// `--check` (xvs): every real server's health check and its state.
    pub check: bool,
}

/// One parsed xvsadm invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `-A`.
    AddService(ServiceSpec),
    /// `-E`.
    EditService(ServiceSpec),
    /// `-D`.
    DeleteService(SvcKey),
    /// `-C`.
    Clear,
    /// `-R` (rules come from standard input).
    Restore,
    /// `-S`.
    Save {
        /// `-n`.
        numeric: bool,
    },
    /// `-a`.
    AddServer {
        /// The service.
        svc: SvcKey,
        /// The server.
        dest: DestSpec,
    },
    /// `-e`.
    EditServer {
        /// The service.
        svc: SvcKey,
        /// The server.
        dest: DestSpec,
    },
    /// `-d`.
    DeleteServer {
        /// The service.
        svc: SvcKey,
        /// Server address.
        addr: IpAddr,
        /// Server port as written (`None`: the service's).
        port: Option<u16>,
    },
    /// `-L`/`-l`, or no arguments at all.
    List {
        /// One service only.
        svc: Option<SvcKey>,
        /// Listing options.
        opts: ListOpts,
    },
    /// `-Z`.
    Zero(Option<SvcKey>),
    /// `--set tcp tcpfin udp` (0 keeps a value).
    Set {
        /// TCP ESTABLISHED timeout.
        tcp: u32,
        /// TCP FIN_WAIT timeout.
        tcpfin: u32,
        /// UDP timeout.
        udp: u32,
    },
    /// `--start-daemon master|backup` and its options (those left out
    /// are `None`; the interface defaults to `eth0`, the syncid to 0).
    StartDaemon(xvs_config::SyncDaemonConf),
    /// `--stop-daemon master|backup`.
    StopDaemon {
        /// Which daemon.
        role: xvs_config::SyncRole,
        /// `--syncid`, accepted and unused (as by IPVS).
        syncid: Option<u8>,
    },
    /// `--set-mark MARK -t|-u VIP:PORT` (xvs): packets to this (protocol,
    /// VIP, port) carry firewall mark MARK, the equivalent of an iptables
    /// `-j MARK --set-mark` rule, so a `-f MARK` service groups them.
    SetMark {
        /// The triple (an address service key with a port).
        triple: SvcKey,
        /// The mark.
        mark: u32,
    },
    /// `--del-mark -t|-u VIP:PORT` (xvs): forget the triple's mark.
    DelMark(SvcKey),
    /// `--maintenance on|off` (xvs): withdraw every VIP from the router
    /// (on) while established flows keep being forwarded, or announce
    /// again (off).
    Maintenance(bool),
    /// `--bgp-feed` (xvs): run as an ExaBGP process, announcing the VIPs
    /// xvsd says may be announced ([`crate::announce`]).
    BgpFeed,
    /// `-h`.
    Help,
    /// `-v`.
    Version,
}

impl Command {
    /// Whether the command changes the configuration.
    pub fn is_change(&self) -> bool {
        matches!(
            self,
            Command::AddService(_)
                | Command::EditService(_)
                | Command::DeleteService(_)
                | Command::Clear
                | Command::AddServer { .. }
                | Command::EditServer { .. }
                | Command::DeleteServer { .. }
                | Command::Set { .. }
                | Command::SetMark { .. }
                | Command::DelMark(_)
        )
    }
}
