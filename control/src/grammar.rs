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

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use xvs_config::svc::{Fwd, SvcKey};
use xvs_scheduler::{SCHED_FLAG_1, SCHED_FLAG_2, SCHED_FLAG_3};

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

fn err<T>(msg: impl Into<String>) -> Result<T, ParseError> {
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
    /// `--start-daemon master|backup`.
    StartDaemon {
        /// `master` or `backup`.
        state: String,
    },
    /// `--stop-daemon master|backup`.
    StopDaemon {
        /// `master` or `backup`.
        state: String,
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

/// The commands, in ipvsadm's table order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmd {
    Add,
    Edit,
    Del,
    Flush,
    List,
    AddDest,
    DelDest,
    EditDest,
    Timeout,
    StartDaemon,
    StopDaemon,
    Restore,
    Save,
    Zero,
    SetMark,
    DelMark,
    Help,
    Version,
}

impl Cmd {
    fn name(self) -> &'static str {
        match self {
            Cmd::Add => "add-service",
            Cmd::Edit => "edit-service",
            Cmd::Del => "delete-service",
            Cmd::Flush => "flush",
            Cmd::List => "list",
            Cmd::AddDest => "add-server",
            Cmd::DelDest => "delete-server",
            Cmd::EditDest => "edit-server",
            Cmd::Timeout => "set",
            Cmd::StartDaemon => "start-daemon",
            Cmd::StopDaemon => "stop-daemon",
            Cmd::Restore => "restore",
            Cmd::Save => "save",
            Cmd::Zero => "zero",
            Cmd::SetMark => "set-mark",
            Cmd::DelMark => "del-mark",
            Cmd::Help => "help",
            Cmd::Version => "version",
        }
    }
}

/// The options, in ipvsadm's table order (the order the command/option
/// check walks them, so it decides which message comes first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opt {
    Numeric,
    Connection,
    Service,
    Scheduler,
    Persistent,
    Netmask,
    Server,
    Forward,
    Weight,
    UThreshold,
    LThreshold,
    McastIf,
    SyncId,
    Timeout,
    Daemon,
    Stats,
    Rate,
    Thresholds,
    PersistentConn,
    NoSort,
    Sort,
    Exact,
    Ipv6,
    Ops,
    Pe,
    SchedFlags,
    McastGroup,
    McastPort,
    McastTtl,
    SyncMaxlen,
    TunType,
    TunPort,
    TunNoCsum,
    TunCsum,
    TunRemCsum,
    TunInfo,
    Json,
    Dataplane,
}

const ALL_OPTS: [Opt; 38] = [
    Opt::Numeric,
    Opt::Connection,
    Opt::Service,
    Opt::Scheduler,
    Opt::Persistent,
    Opt::Netmask,
    Opt::Server,
    Opt::Forward,
    Opt::Weight,
    Opt::UThreshold,
    Opt::LThreshold,
    Opt::McastIf,
    Opt::SyncId,
    Opt::Timeout,
    Opt::Daemon,
    Opt::Stats,
    Opt::Rate,
    Opt::Thresholds,
    Opt::PersistentConn,
    Opt::NoSort,
    Opt::Sort,
    Opt::Exact,
    Opt::Ipv6,
    Opt::Ops,
    Opt::Pe,
    Opt::SchedFlags,
    Opt::McastGroup,
    Opt::McastPort,
    Opt::McastTtl,
    Opt::SyncMaxlen,
    Opt::TunType,
    Opt::TunPort,
    Opt::TunNoCsum,
    Opt::TunCsum,
    Opt::TunRemCsum,
    Opt::TunInfo,
    Opt::Json,
    Opt::Dataplane,
];

impl Opt {
    fn name(self) -> &'static str {
        match self {
            Opt::Numeric => "numeric",
            Opt::Connection => "connection",
            Opt::Service => "service-address",
            Opt::Scheduler => "scheduler",
            Opt::Persistent => "persistent",
            Opt::Netmask => "netmask",
            Opt::Server => "real-server",
            Opt::Forward => "forwarding-method",
            Opt::Weight => "weight",
            Opt::UThreshold => "u-threshold",
            Opt::LThreshold => "l-threshold",
            Opt::McastIf => "mcast-interface",
            Opt::SyncId => "syncid",
            Opt::Timeout => "timeout",
            Opt::Daemon => "daemon",
            Opt::Stats => "stats",
            Opt::Rate => "rate",
            Opt::Thresholds => "thresholds",
            Opt::PersistentConn => "persistent-conn",
            Opt::NoSort => "nosort",
            Opt::Sort => "sort",
            Opt::Exact => "exact",
            Opt::Ipv6 => "ipv6",
            Opt::Ops => "ops",
            Opt::Pe => "pe",
            Opt::SchedFlags => "sched-flags",
            Opt::McastGroup => "mcast-group",
            Opt::McastPort => "mcast-port",
            Opt::McastTtl => "mcast-ttl",
            Opt::SyncMaxlen => "sync-maxlen",
            Opt::TunType => "tun-type",
            Opt::TunPort => "tun-port",
            Opt::TunNoCsum => "tun-nocsum",
            Opt::TunCsum => "tun-csum",
            Opt::TunRemCsum => "tun-remcsum",
            Opt::TunInfo => "tun-info",
            Opt::Json => "json",
            Opt::Dataplane => "dataplane",
        }
    }

    fn bit(self) -> u64 {
        1u64 << (self as u32)
    }
}

/// How an option relates to a command: required, allowed, allowed but
/// exclusive with the other `One` options, or illegal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    Required,
    Allowed,
    One,
    Illegal,
}

fn rule(cmd: Cmd, opt: Opt) -> Rule {
    use Opt as O;
    use Rule::{Allowed as A, Illegal as X, One, Required as R};
    match cmd {
        Cmd::Add | Cmd::Edit => match opt {
            O::Service => R,
            O::Scheduler | O::Persistent | O::Netmask | O::Ipv6 | O::Ops | O::Pe => A,
            O::SchedFlags => A,
            _ => X,
        },
        Cmd::Del => match opt {
            O::Service => R,
            O::Ipv6 => A,
            _ => X,
        },
        Cmd::List => match opt {
            O::Connection | O::Service | O::Timeout | O::Daemon | O::Dataplane => One,
            O::Numeric
            | O::Stats
            | O::Rate
            | O::Thresholds
            | O::PersistentConn
            | O::NoSort
            | O::Sort
            | O::Exact
            | O::Ipv6
            | O::TunInfo
            | O::Json => A,
            _ => X,
        },
        Cmd::AddDest | Cmd::EditDest => match opt {
            O::Service | O::Server => R,
            O::Forward
            | O::Weight
            | O::UThreshold
            | O::LThreshold
            | O::Ipv6
            | O::TunType
            | O::TunPort
            | O::TunNoCsum
            | O::TunCsum
            | O::TunRemCsum => A,
            _ => X,
        },
        Cmd::DelDest => match opt {
            O::Service | O::Server => R,
            O::Ipv6 => A,
            _ => X,
        },
        Cmd::StartDaemon => match opt {
            O::McastIf | O::SyncId | O::McastGroup | O::McastPort | O::McastTtl | O::SyncMaxlen => {
                A
            }
            _ => X,
        },
        Cmd::StopDaemon => match opt {
            O::SyncId => A,
            _ => X,
        },
        Cmd::Save => match opt {
            O::Numeric => A,
            _ => X,
        },
        Cmd::Zero => match opt {
            O::Service | O::Ipv6 => A,
            _ => X,
        },
        Cmd::SetMark | Cmd::DelMark => match opt {
            O::Service => R,
            _ => X,
        },
        Cmd::Flush | Cmd::Timeout | Cmd::Restore | Cmd::Help | Cmd::Version => X,
    }
}

/// Whether an option takes a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arg {
    No,
    Required,
    Optional,
}

/// One recognised option token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    Cmd(Cmd),
    Tcp,
    Udp,
    Sctp,
    Fwmark,
    Set(Opt),
    Value(Opt),
    Fwd(Fwd),
    Csum(TunCsum),
}

impl Tok {
    fn arg(self) -> Arg {
        match self {
            Tok::Cmd(Cmd::StartDaemon | Cmd::StopDaemon | Cmd::SetMark) => Arg::Required,
            Tok::Cmd(_) => Arg::No,
            Tok::Tcp | Tok::Udp | Tok::Sctp | Tok::Fwmark => Arg::Required,
            Tok::Value(Opt::Persistent) => Arg::Optional,
            Tok::Value(_) => Arg::Required,
            Tok::Set(_) | Tok::Fwd(_) | Tok::Csum(_) => Arg::No,
        }
    }
}

fn short(c: char) -> Option<Tok> {
    Some(match c {
        'A' => Tok::Cmd(Cmd::Add),
        'E' => Tok::Cmd(Cmd::Edit),
        'D' => Tok::Cmd(Cmd::Del),
        'C' => Tok::Cmd(Cmd::Flush),
        'R' => Tok::Cmd(Cmd::Restore),
        'S' => Tok::Cmd(Cmd::Save),
        'a' => Tok::Cmd(Cmd::AddDest),
        'e' => Tok::Cmd(Cmd::EditDest),
        'd' => Tok::Cmd(Cmd::DelDest),
        'L' | 'l' => Tok::Cmd(Cmd::List),
        'Z' => Tok::Cmd(Cmd::Zero),
        'h' => Tok::Cmd(Cmd::Help),
        'v' => Tok::Cmd(Cmd::Version),
        't' => Tok::Tcp,
        'u' => Tok::Udp,
        'f' => Tok::Fwmark,
        's' => Tok::Value(Opt::Scheduler),
        'p' => Tok::Value(Opt::Persistent),
        'M' => Tok::Value(Opt::Netmask),
        'b' => Tok::Value(Opt::SchedFlags),
        'o' => Tok::Set(Opt::Ops),
        'r' => Tok::Value(Opt::Server),
        'g' => Tok::Fwd(Fwd::Dr),
        'i' => Tok::Fwd(Fwd::Tun),
        'm' => Tok::Fwd(Fwd::Nat),
        'w' => Tok::Value(Opt::Weight),
        'x' => Tok::Value(Opt::UThreshold),
        'y' => Tok::Value(Opt::LThreshold),
        'n' => Tok::Set(Opt::Numeric),
        'c' => Tok::Set(Opt::Connection),
        '6' => Tok::Set(Opt::Ipv6),
        _ => return None,
    })
}

fn long(name: &str) -> Option<Tok> {
    Some(match name {
        "add-service" => Tok::Cmd(Cmd::Add),
        "edit-service" => Tok::Cmd(Cmd::Edit),
        "delete-service" => Tok::Cmd(Cmd::Del),
        "clear" => Tok::Cmd(Cmd::Flush),
        "restore" => Tok::Cmd(Cmd::Restore),
        "save" => Tok::Cmd(Cmd::Save),
        "add-server" => Tok::Cmd(Cmd::AddDest),
        "edit-server" => Tok::Cmd(Cmd::EditDest),
        "delete-server" => Tok::Cmd(Cmd::DelDest),
        "list" => Tok::Cmd(Cmd::List),
        "zero" => Tok::Cmd(Cmd::Zero),
        "set" => Tok::Cmd(Cmd::Timeout),
        "start-daemon" => Tok::Cmd(Cmd::StartDaemon),
        "stop-daemon" => Tok::Cmd(Cmd::StopDaemon),
        "set-mark" => Tok::Cmd(Cmd::SetMark),
        "del-mark" => Tok::Cmd(Cmd::DelMark),
        "help" => Tok::Cmd(Cmd::Help),
        "version" => Tok::Cmd(Cmd::Version),
        "tcp-service" => Tok::Tcp,
        "udp-service" => Tok::Udp,
        "sctp-service" => Tok::Sctp,
        "fwmark-service" => Tok::Fwmark,
        "scheduler" => Tok::Value(Opt::Scheduler),
        "persistent" => Tok::Value(Opt::Persistent),
        "netmask" => Tok::Value(Opt::Netmask),
        "sched-flags" => Tok::Value(Opt::SchedFlags),
        "ops" => Tok::Set(Opt::Ops),
        "pe" => Tok::Value(Opt::Pe),
        "real-server" => Tok::Value(Opt::Server),
        "gatewaying" => Tok::Fwd(Fwd::Dr),
        "ipip" => Tok::Fwd(Fwd::Tun),
        "masquerading" => Tok::Fwd(Fwd::Nat),
        "tun-type" => Tok::Value(Opt::TunType),
        "tun-port" => Tok::Value(Opt::TunPort),
        "tun-nocsum" => Tok::Csum(TunCsum::NoCsum),
        "tun-csum" => Tok::Csum(TunCsum::Csum),
        "tun-remcsum" => Tok::Csum(TunCsum::RemCsum),
        "weight" => Tok::Value(Opt::Weight),
        "u-threshold" => Tok::Value(Opt::UThreshold),
        "l-threshold" => Tok::Value(Opt::LThreshold),
        "numeric" => Tok::Set(Opt::Numeric),
        "connection" => Tok::Set(Opt::Connection),
        "stats" => Tok::Set(Opt::Stats),
        "rate" => Tok::Set(Opt::Rate),
        "exact" => Tok::Set(Opt::Exact),
        "thresholds" => Tok::Set(Opt::Thresholds),
        "persistent-conn" => Tok::Set(Opt::PersistentConn),
        "tun-info" => Tok::Set(Opt::TunInfo),
        "json" => Tok::Set(Opt::Json),
        "dataplane" => Tok::Set(Opt::Dataplane),
        "timeout" => Tok::Set(Opt::Timeout),
        "daemon" => Tok::Set(Opt::Daemon),
        "nosort" => Tok::Set(Opt::NoSort),
        "sort" => Tok::Set(Opt::Sort),
        "ipv6" => Tok::Set(Opt::Ipv6),
        "mcast-interface" => Tok::Value(Opt::McastIf),
        "syncid" => Tok::Value(Opt::SyncId),
        "mcast-group" => Tok::Value(Opt::McastGroup),
        "mcast-port" => Tok::Value(Opt::McastPort),
        "mcast-ttl" => Tok::Value(Opt::McastTtl),
        "sync-maxlen" => Tok::Value(Opt::SyncMaxlen),
        _ => return None,
    })
}

/// The virtual service as written (family of a fwmark service is known
/// only at the end, when `-6` may have been seen).
#[derive(Debug, Clone, Copy)]
enum RawSvc {
    Addr { proto: u8, vip: IpAddr, port: u16 },
    Fwmark(u32),
}

/// Everything collected while walking the arguments.
#[derive(Debug, Default)]
struct Raw {
    cmd: Option<Cmd>,
    opts: u64,
    svc: Option<RawSvc>,
    sched: Option<String>,
    persistence: Option<u32>,
    netmask: Option<String>,
    flags: u32,
    pe: Option<String>,
    server: Option<(IpAddr, Option<u16>)>,
    fwd: Option<Fwd>,
    weight: Option<i32>,
    u_threshold: u32,
    l_threshold: u32,
    tun_type: Option<TunType>,
    tun_port: Option<u16>,
    csum: Vec<TunCsum>,
    daemon_state: Option<String>,
    mark: Option<u32>,
    positional: Vec<String>,
}

impl Raw {
    fn has(&self, opt: Opt) -> bool {
        self.opts & opt.bit() != 0
    }

    fn set_option(&mut self, opt: Opt) -> Result<(), ParseError> {
        if self.has(opt) {
            return err(format!("multiple '{}' options specified", opt.name()));
        }
        self.opts |= opt.bit();
        Ok(())
    }

    fn set_command(&mut self, cmd: Cmd) -> Result<(), ParseError> {
        if self.cmd.is_some() {
            return err("multiple commands specified");
        }
        self.cmd = Some(cmd);
        Ok(())
    }
}

/// Parse an unsigned decimal number in `min..=max` (ipvsadm's
/// `string_to_number`: the whole string must be the number).
pub fn parse_number(s: &str, min: u64, max: u64) -> Option<u64> {
    let digits = s.strip_prefix('+').unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let v: u64 = digits.parse().ok()?;
    (min..=max).contains(&v).then_some(v)
}

fn parse_port(s: &str) -> Option<u16> {
    parse_number(s, 0, 65535).and_then(|v| u16::try_from(v).ok())
}

/// Parse `a.b.c.d[:port]`, `[v6addr][:port]` or a bare IPv6 address.
/// Names are never resolved: anything else is `None`.
pub fn parse_addr_port(s: &str) -> Option<(IpAddr, Option<u16>)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (addr, after) = rest.split_once(']')?;
        let ip: Ipv6Addr = addr.parse().ok()?;
        let port = match after {
            "" => None,
            p => Some(parse_port(p.strip_prefix(':')?)?),
        };
        return Some((IpAddr::V6(ip), port));
    }
    if let Ok(ip) = s.parse::<Ipv6Addr>() {
        return Some((IpAddr::V6(ip), None));
    }
    match s.split_once(':') {
        Some((addr, port)) => {
            let ip: Ipv4Addr = addr.parse().ok()?;
            Some((IpAddr::V4(ip), Some(parse_port(port)?)))
        }
        None => Some((IpAddr::V4(s.parse().ok()?), None)),
    }
}

/// Parse `-b`'s comma list into `SCHED_FLAG_*` bits.
pub fn parse_sched_flags(s: &str) -> Option<u32> {
    let mut flags = 0;
    for word in s.split(',') {
        flags |= match word {
            "sh-fallback" | "mh-fallback" | "flag-1" => SCHED_FLAG_1,
            "sh-port" | "mh-port" | "flag-2" => SCHED_FLAG_2,
            "flag-3" => SCHED_FLAG_3,
            _ => return None,
        };
    }
    Some(flags)
}

/// Parse `-M`: a prefix length, or (IPv4) a contiguous dotted mask.
fn parse_netmask(s: &str, v6: bool) -> Option<u8> {
    if v6 {
        return parse_number(s, 1, 128).and_then(|v| u8::try_from(v).ok());
    }
    if let Some(v) = parse_number(s, 0, 32) {
        return u8::try_from(v).ok();
    }
    let mask = u32::from(s.parse::<Ipv4Addr>().ok()?);
    let prefix = mask.leading_ones();
    // Contiguous masks only: a mask with holes has no prefix length.
    (mask.checked_shl(prefix).unwrap_or(0) == 0).then_some(prefix as u8)
}

fn parse_timeout(s: &str, min: u32) -> Result<u32, ParseError> {
    match parse_number(s, u64::from(min), u64::from(MAX_TIMEOUT)) {
        Some(v) => Ok(v as u32),
        None => err(format!("invalid timeout value `{s}' specified")),
    }
}

/// Parse an ipvsadm argument vector (without the program name).
///
/// An empty vector lists the table, as bare `ipvsadm` does.
pub fn parse<S: AsRef<str>>(args: &[S]) -> Result<Command, ParseError> {
    let args: Vec<&str> = args.iter().map(|a| a.as_ref()).collect();
    if args.is_empty() {
        return Ok(Command::List {
            svc: None,
            opts: ListOpts::default(),
        });
    }
    let mut raw = Raw::default();
    let mut i = 0;
    let mut first = true;
    while i < args.len() {
        let a = args[i];
        i += 1;
        if a == "--" {
            raw.positional
                .extend(args[i..].iter().map(|s| s.to_string()));
            break;
        }
        if let Some(name) = a.strip_prefix("--") {
            let (name, inline) = match name.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (name, None),
            };
            let Some(tok) = long(name) else {
                return err(format!("{a}: unknown option"));
            };
            let value = match (tok.arg(), inline) {
                (Arg::No, Some(_)) => {
                    return err(format!("--{name}: option does not take a value"))
                }
                (Arg::No, None) => None,
                (_, Some(v)) => Some(v.to_string()),
                (Arg::Required, None) => match args.get(i) {
                    Some(v) => {
                        i += 1;
                        Some(v.to_string())
                    }
                    None => return err(format!("--{name}: missing argument")),
                },
                (Arg::Optional, None) => take_optional(&args, &mut i),
            };
            handle(&mut raw, tok, value, first)?;
            first = false;
        } else if a.len() > 1 && a.starts_with('-') {
            let body = &a[1..];
            for (pos, c) in body.char_indices() {
                let Some(tok) = short(c) else {
                    return err(format!("-{c}: unknown option"));
                };
                let rest = &body[pos + c.len_utf8()..];
                let value = match tok.arg() {
                    Arg::No => None,
                    Arg::Required if !rest.is_empty() => Some(rest.to_string()),
                    Arg::Required => match args.get(i) {
                        Some(v) => {
                            i += 1;
                            Some(v.to_string())
                        }
                        None => return err(format!("-{c}: missing argument")),
                    },
                    Arg::Optional if !rest.is_empty() => Some(rest.to_string()),
                    Arg::Optional => take_optional(&args, &mut i),
                };
                handle(&mut raw, tok, value, first)?;
                first = false;
                if tok.arg() != Arg::No {
                    break;
                }
            }
        } else {
            if first {
                return err("the first option must be a command");
            }
            raw.positional.push(a.to_string());
        }
    }
    finish(raw)
}

/// An optional value is the next argument unless that looks like an option.
fn take_optional(args: &[&str], i: &mut usize) -> Option<String> {
    match args.get(*i) {
        Some(v) if !v.starts_with('-') => {
            *i += 1;
            Some(v.to_string())
        }
        _ => None,
    }
}

fn handle(raw: &mut Raw, tok: Tok, value: Option<String>, first: bool) -> Result<(), ParseError> {
    if first && !matches!(tok, Tok::Cmd(_)) {
        return err("the first option must be a command");
    }
    let v = value.unwrap_or_default();
    match tok {
        Tok::Cmd(cmd) => {
            raw.set_command(cmd)?;
            if matches!(cmd, Cmd::StartDaemon | Cmd::StopDaemon) {
                if v != "master" && v != "backup" {
                    return err(format!("illegal {} parameter specified", cmd.name()));
                }
                raw.daemon_state = Some(v);
            } else if cmd == Cmd::SetMark {
                match parse_number(&v, 1, u64::from(u32::MAX)) {
                    Some(m) => raw.mark = Some(m as u32),
                    None => return err(format!("invalid fwmark value `{v}' specified")),
                }
            }
        }
        Tok::Tcp | Tok::Udp | Tok::Sctp => {
            raw.set_option(Opt::Service)?;
            let proto = match tok {
                Tok::Tcp => IPPROTO_TCP,
                Tok::Udp => IPPROTO_UDP,
                _ => IPPROTO_SCTP,
            };
            let Some((vip, port)) = parse_addr_port(&v) else {
                return err("illegal virtual server address[:port] specified");
            };
            raw.svc = Some(RawSvc::Addr {
                proto,
                vip,
                port: port.unwrap_or(0),
            });
        }
        Tok::Fwmark => {
            raw.set_option(Opt::Service)?;
            match parse_number(&v, 1, u64::from(u32::MAX)) {
                Some(m) => raw.svc = Some(RawSvc::Fwmark(m as u32)),
                None => return err(format!("invalid fwmark value `{v}' specified")),
            }
        }
        Tok::Fwd(f) => {
            raw.set_option(Opt::Forward)?;
            raw.fwd = Some(f);
        }
        Tok::Csum(c) => {
            let opt = match c {
                TunCsum::NoCsum => Opt::TunNoCsum,
                TunCsum::Csum => Opt::TunCsum,
                TunCsum::RemCsum => Opt::TunRemCsum,
            };
            raw.set_option(opt)?;
            raw.csum.push(c);
        }
        Tok::Set(opt) => raw.set_option(opt)?,
        Tok::Value(opt) => {
            raw.set_option(opt)?;
            match opt {
                Opt::Scheduler => raw.sched = Some(v),
                Opt::Persistent => {
                    raw.persistence = Some(if v.is_empty() {
                        DEFAULT_PERSISTENCE
                    } else {
                        parse_timeout(&v, 1)?
                    });
                }
                Opt::Netmask => raw.netmask = Some(v),
                Opt::SchedFlags => match parse_sched_flags(&v) {
                    Some(f) => raw.flags = f,
                    None => return err(format!("invalid scheduler flag `{v}' specified")),
                },
                Opt::Pe => raw.pe = Some(v),
                Opt::Server => match parse_addr_port(&v) {
                    Some(s) => raw.server = Some(s),
                    None => return err("illegal real server address[:port] specified"),
                },
                Opt::Weight => match parse_number(&v, 0, MAX_WEIGHT as u64) {
                    Some(w) => raw.weight = Some(w as i32),
                    None => return err("illegal weight specified"),
                },
                Opt::UThreshold => match parse_number(&v, 0, i32::MAX as u64) {
                    Some(x) => raw.u_threshold = x as u32,
                    None => return err("illegal u_threshold specified"),
                },
                Opt::LThreshold => match parse_number(&v, 0, i32::MAX as u64) {
                    Some(y) => raw.l_threshold = y as u32,
                    None => return err("illegal l_threshold specified"),
                },
                Opt::TunType => {
                    raw.tun_type = Some(match v.as_str() {
                        "ipip" => TunType::Ipip,
                        "gue" => TunType::Gue,
                        "gre" => TunType::Gre,
                        _ => return err(format!("illegal tunnel type `{v}' specified")),
                    })
                }
                Opt::TunPort => match parse_number(&v, 1, 65535) {
                    Some(p) => raw.tun_port = Some(p as u16),
                    None => return err("illegal tunnel port specified"),
                },
                // Sync-daemon options: xvs has no sync daemon, so their
                // values are never used; --start-daemon is refused later.
                _ => {}
            }
        }
    }
    Ok(())
}

fn finish(raw: Raw) -> Result<Command, ParseError> {
    let Some(cmd) = raw.cmd else {
        return err("the first option must be a command");
    };
    if matches!(cmd, Cmd::Help) {
        return Ok(Command::Help);
    }
    if matches!(cmd, Cmd::Version) {
        return Ok(Command::Version);
    }
    // The command/option table, walked in option order.
    let mut one: Option<Opt> = None;
    for opt in ALL_OPTS {
        let given = raw.has(opt);
        match (rule(cmd, opt), given) {
            (Rule::Required, false) => {
                return err(format!(
                    "You need to supply the '{}' option for the '{}' command",
                    opt.name(),
                    cmd.name()
                ))
            }
            (Rule::Illegal, true) => {
                return err(format!(
                    "Illegal '{}' option with the '{}' command",
                    opt.name(),
                    cmd.name()
                ))
            }
            (Rule::One, true) => match one {
                None => one = Some(opt),
                Some(first) => {
                    return err(format!(
                        "The option '{}' can't be used with '{}'",
                        opt.name(),
                        first.name()
                    ))
                }
            },
            _ => {}
        }
    }
    // Bare values belong to --set only.
    let mut positional = raw.positional.iter();
    if cmd == Cmd::Timeout {
        let (Some(tcp), Some(fin), Some(udp)) =
            (positional.next(), positional.next(), positional.next())
        else {
            return err("--set option requires 3 timeout values");
        };
        let (tcp, tcpfin, udp) = (
            parse_timeout(tcp, 0)?,
            parse_timeout(fin, 0)?,
            parse_timeout(udp, 0)?,
        );
        if let Some(extra) = positional.next() {
            return err(format!("unexpected argument `{extra}'"));
        }
        return Ok(Command::Set { tcp, tcpfin, udp });
    }
    if let Some(extra) = positional.next() {
        return err(format!("unexpected argument `{extra}'"));
    }

    let v6_mark = raw.has(Opt::Ipv6);
    let svc = raw.svc.map(|s| match s {
        RawSvc::Addr { proto, vip, port } => SvcKey::Addr { proto, vip, port },
        RawSvc::Fwmark(mark) => SvcKey::Fwmark { mark, v6: v6_mark },
    });
    let svc_v6 = match svc {
        Some(SvcKey::Addr { vip, .. }) => vip.is_ipv6(),
        Some(SvcKey::Fwmark { v6, .. }) => v6,
        None => false,
    };

    match cmd {
        Cmd::Add | Cmd::Edit => {
            let key = svc.expect("service is required by the table");
            let persistent = raw.persistence.is_some();
            if let SvcKey::Addr { proto, port, .. } = key {
                if port == 0 && !persistent {
                    return err("Zero port specified for non-persistent service");
                }
                if raw.has(Opt::Ops) && proto != IPPROTO_UDP {
                    return err("One-Packet Scheduling is only for UDP virtual services");
                }
            } else if raw.has(Opt::Ops) {
                return err("One-Packet Scheduling is only for UDP virtual services");
            }
            let netmask = match &raw.netmask {
                None => {
                    if svc_v6 {
                        128
                    } else {
                        32
                    }
                }
                Some(m) => match parse_netmask(m, svc_v6) {
                    Some(p) => p,
                    None => return err("illegal netmask specified"),
                },
            };
            let ops = raw.has(Opt::Ops);
            let spec = ServiceSpec {
                key,
                sched: raw.sched.unwrap_or_else(|| DEFAULT_SCHED.to_string()),
                flags: raw.flags,
                persistence: raw.persistence,
                netmask,
                ops,
                pe: raw.pe,
            };
            Ok(if cmd == Cmd::Add {
                Command::AddService(spec)
            } else {
                Command::EditService(spec)
            })
        }
        Cmd::Del => Ok(Command::DeleteService(svc.expect("required"))),
        Cmd::Flush => Ok(Command::Clear),
        Cmd::Restore => Ok(Command::Restore),
        Cmd::Save => Ok(Command::Save {
            numeric: raw.has(Opt::Numeric),
        }),
        Cmd::Zero => Ok(Command::Zero(svc)),
        Cmd::List => Ok(Command::List {
            svc,
            opts: ListOpts {
                numeric: raw.has(Opt::Numeric),
                connection: raw.has(Opt::Connection),
                stats: raw.has(Opt::Stats),
                rate: raw.has(Opt::Rate),
                exact: raw.has(Opt::Exact),
                thresholds: raw.has(Opt::Thresholds),
                persistent_conn: raw.has(Opt::PersistentConn),
                tun_info: raw.has(Opt::TunInfo),
                timeout: raw.has(Opt::Timeout),
                daemon: raw.has(Opt::Daemon),
                dataplane: raw.has(Opt::Dataplane),
                nosort: raw.has(Opt::NoSort),
                json: raw.has(Opt::Json),
            },
        }),
        Cmd::DelDest => {
            let (addr, port) = raw.server.expect("required");
            Ok(Command::DeleteServer {
                svc: svc.expect("required"),
                addr,
                port,
            })
        }
        Cmd::AddDest | Cmd::EditDest => {
            let svc = svc.expect("required");
            let (addr, port) = raw.server.expect("required");
            let fwd = raw.fwd.unwrap_or(Fwd::Dr);
            let tun = tunnel(&raw, fwd)?;
            let dest = DestSpec {
                addr,
                port,
                fwd,
                weight: raw.weight.unwrap_or(1),
                u_threshold: raw.u_threshold,
                l_threshold: raw.l_threshold,
                tun,
            };
            Ok(if cmd == Cmd::AddDest {
                Command::AddServer { svc, dest }
            } else {
                Command::EditServer { svc, dest }
            })
        }
        Cmd::StartDaemon => Ok(Command::StartDaemon {
            state: raw.daemon_state.unwrap_or_default(),
        }),
        Cmd::StopDaemon => Ok(Command::StopDaemon {
            state: raw.daemon_state.unwrap_or_default(),
        }),
        Cmd::SetMark | Cmd::DelMark => {
            let triple = svc.expect("required");
            match triple {
                SvcKey::Addr { port, .. } if port != 0 => {}
                _ => return err("a mark is set on a protocol, address and port (-t|-u VIP:PORT)"),
            }
            Ok(if cmd == Cmd::SetMark {
                Command::SetMark {
                    triple,
                    mark: raw.mark.expect("parsed with the command"),
                }
            } else {
                Command::DelMark(triple)
            })
        }
        Cmd::Timeout | Cmd::Help | Cmd::Version => unreachable!("handled above"),
    }
}

/// Check and collect the `--tun-*` options of a server.
fn tunnel(raw: &Raw, fwd: Fwd) -> Result<TunConf, ParseError> {
    let any = raw.tun_type.is_some() || raw.tun_port.is_some() || !raw.csum.is_empty();
    if any && fwd != Fwd::Tun {
        return err("tunnel options are only valid with the tunneling forwarding method (-i)");
    }
    if raw.csum.len() > 1 {
        return err(format!(
            "The option '{}' can't be used with '{}'",
            &raw.csum[1].option()[2..],
            &raw.csum[0].option()[2..]
        ));
    }
    let kind = raw.tun_type.unwrap_or_default();
    let csum = raw.csum.first().copied().unwrap_or_default();
    match kind {
        TunType::Gue if raw.tun_port.is_none() => {
            return err("You need to supply the 'tun-port' option for a gue tunnel")
        }
        TunType::Ipip | TunType::Gre if raw.tun_port.is_some() => {
            return err("the 'tun-port' option is only for gue tunnels")
        }
        TunType::Ipip if csum != TunCsum::NoCsum => {
            return err("checksum options are only for gue and gre tunnels")
        }
        TunType::Gre if csum == TunCsum::RemCsum => {
            return err("the 'tun-remcsum' option is only for gue tunnels")
        }
        _ => {}
    }
    Ok(TunConf {
        kind,
        port: raw.tun_port.unwrap_or(0),
        csum,
    })
}

/// `-v`'s text.
pub fn version() -> String {
    format!(
        "xvsadm v{} (compatible with ipvsadm v1.31)\n",
        env!("CARGO_PKG_VERSION")
    )
}

/// `-h`'s text: ipvsadm's usage, naming xvsadm.
pub fn usage() -> String {
    let mut s = version();
    s.push_str(
        "Usage:
  xvsadm -A|E virtual-service [-s scheduler] [-p [timeout]] [-M netmask] [--pe persistence_engine] [-b sched-flags]
  xvsadm -D virtual-service
  xvsadm -C
  xvsadm -R
  xvsadm -S [-n]
  xvsadm -a|e virtual-service -r server-address [options]
  xvsadm -d virtual-service -r server-address
  xvsadm -L|l [virtual-service] [options]
  xvsadm -Z [virtual-service]
  xvsadm --set tcp tcpfin udp
  xvsadm --start-daemon {master|backup} [daemon-options]
  xvsadm --stop-daemon {master|backup}
  xvsadm --set-mark fwmark -t|-u service-address:port
  xvsadm --del-mark -t|-u service-address:port
  xvsadm -h

Commands:
Either long or short options are allowed.
  --add-service     -A        add virtual service with options
  --edit-service    -E        edit virtual service with options
  --delete-service  -D        delete virtual service
  --clear           -C        clear the whole table
  --restore         -R        restore rules from stdin
  --save            -S        save rules to stdout
  --add-server      -a        add real server with options
  --edit-server     -e        edit real server with options
  --delete-server   -d        delete real server
  --list            -L|-l     list the table
  --zero            -Z        zero counters in a service or all services
  --set tcp tcpfin udp        set connection timeout values
  --start-daemon              start connection sync daemon (not supported by xvs)
  --stop-daemon               stop connection sync daemon (not supported by xvs)
  --set-mark fwmark           mark packets to a protocol, address and port with
                              fwmark, so that a -f fwmark service takes them
                              (what iptables -j MARK --set-mark does for IPVS)
  --del-mark                  remove the mark of a protocol, address and port
  --help            -h        display this help message

virtual-service:
  --tcp-service|-t  service-address   service-address is host[:port]
  --udp-service|-u  service-address   service-address is host[:port]
  --sctp-service    service-address   service-address is host[:port]
  --fwmark-service|-f fwmark          fwmark is an integer greater than zero

Options:
  --ipv6         -6                   fwmark entry uses IPv6
  --scheduler    -s scheduler         one of rr|wrr|lc|wlc|lblc|lblcr|dh|sh|sed|nq|fo|ovf|twos|mh,
                                      the default scheduler is wlc.
  --pe            engine              alternate persistence engine (none supported by xvs)
  --persistent   -p [timeout]         persistent service
  --netmask      -M netmask           persistent granularity mask
  --real-server  -r server-address    server-address is host (and port)
  --gatewaying   -g                   gatewaying (direct routing) (default)
  --ipip         -i                   ipip encapsulation (tunneling)
  --masquerading -m                   masquerading (NAT)
  --tun-type      type                one of ipip|gue|gre,
                                      the default tunnel type is ipip.
  --tun-port      port                tunnel destination port
  --tun-nocsum                        tunnel encapsulation without checksum
  --tun-csum                          tunnel encapsulation with checksum
  --tun-remcsum                       tunnel encapsulation with remote checksum
  --weight       -w weight            capacity of real server
  --u-threshold  -x uthreshold        upper threshold of connections
  --l-threshold  -y lthreshold        lower threshold of connections
  --connection   -c                   output of current IPVS connections
  --timeout                           output of timeout (tcp tcpfin udp)
  --daemon                            output of daemon information
  --stats                             output of statistics information
  --rate                              output of rate information
  --exact                             expand numbers (display exact values)
  --thresholds                        output of thresholds information
  --persistent-conn                   output of persistent connection info
  --tun-info                          output of tunnel information
  --nosort                            disable sorting output of service/server entries
  --json                              listing as JSON (xvs extension, for tools)
  --dataplane                         data plane counters, drops by reason and
                                      connection-table use (xvs extension)
  --sort                              does nothing, for backwards compatibility
  --ops          -o                   one-packet scheduling
  --numeric      -n                   numeric output of addresses and ports
  --sched-flags  -b flags             scheduler flags (comma-separated)
  --socket       PATH                 xvsd control socket (default /run/xvs/xvsd.sock,
                                      or $XVS_SOCKET)
",
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(line: &str) -> Result<Command, ParseError> {
        let args: Vec<&str> = line.split_whitespace().collect();
        parse(&args)
    }

    fn msg(line: &str) -> String {
        match p(line) {
            Ok(c) => panic!("{line:?} parsed as {c:?}"),
            Err(e) => e.0,
        }
    }

    const V4: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 100));

    #[test]
    fn parser_messages() {
        let table: &[(&str, &str)] = &[
            (
                "-A -t 198.18.0.300:80",
                "illegal virtual server address[:port] specified",
            ),
            (
                "-A -t www.example.com:80",
                "illegal virtual server address[:port] specified",
            ),
            (
                "-A -t 198.18.0.1:http",
                "illegal virtual server address[:port] specified",
            ),
            (
                "-A -t 198.18.0.1:65536",
                "illegal virtual server address[:port] specified",
            ),
            (
                "-A -t 198.18.0.1:",
                "illegal virtual server address[:port] specified",
            ),
            (
                "-A -u [2001:db8::1",
                "illegal virtual server address[:port] specified",
            ),
            (
                "-a -t 198.18.0.1:80 -r foo",
                "illegal real server address[:port] specified",
            ),
            (
                "-a -t 198.18.0.1:80 -r 198.18.0.2 -w 65536",
                "illegal weight specified",
            ),
            (
                "-a -t 198.18.0.1:80 -r 198.18.0.2 -w -1",
                "illegal weight specified",
            ),
            (
                "-a -t 198.18.0.1:80 -r 198.18.0.2 -w abc",
                "illegal weight specified",
            ),
            ("-A -a", "multiple commands specified"),
            ("-L -L", "multiple commands specified"),
            (
                "-A -s rr",
                "You need to supply the 'service-address' option for the 'add-service' command",
            ),
            (
                "-a -t 198.18.0.1:80",
                "You need to supply the 'real-server' option for the 'add-server' command",
            ),
            (
                "-d -t 198.18.0.1:80",
                "You need to supply the 'real-server' option for the 'delete-server' command",
            ),
            (
                "-D -t 198.18.0.1:80 -s rr",
                "Illegal 'scheduler' option with the 'delete-service' command",
            ),
            (
                "-C -t 198.18.0.1:80",
                "Illegal 'service-address' option with the 'flush' command",
            ),
            (
                "-A -t 198.18.0.1:80 -w 3",
                "Illegal 'weight' option with the 'add-service' command",
            ),
            (
                "-L -r 198.18.0.1",
                "Illegal 'real-server' option with the 'list' command",
            ),
            (
                "-S --stats",
                "Illegal 'stats' option with the 'save' command",
            ),
            (
                "-A -t 198.18.0.1:0 -s rr",
                "Zero port specified for non-persistent service",
            ),
            (
                "-A -t 198.18.0.1 -s rr",
                "Zero port specified for non-persistent service",
            ),
            (
                "-A -t 198.18.0.1:53 -o",
                "One-Packet Scheduling is only for UDP virtual services",
            ),
            (
                "-A -f 1 -o",
                "One-Packet Scheduling is only for UDP virtual services",
            ),
            (
                "-A -t 198.18.0.1:80 -p 0",
                "invalid timeout value `0' specified",
            ),
            (
                "-A -t 198.18.0.1:80 -p 2678401",
                "invalid timeout value `2678401' specified",
            ),
            (
                "-A -t 198.18.0.1:80 -p abc",
                "invalid timeout value `abc' specified",
            ),
            ("--set 1 2", "--set option requires 3 timeout values"),
            ("--set", "--set option requires 3 timeout values"),
            ("--set 1 2 x", "invalid timeout value `x' specified"),
            (
                "-A -t 198.18.0.1:80 -t 198.18.0.2:80",
                "multiple 'service-address' options specified",
            ),
            (
                "-a -t 198.18.0.1:80 -r 198.18.0.2 -g -m",
                "multiple 'forwarding-method' options specified",
            ),
            (
                "-L -c --timeout",
                "The option 'timeout' can't be used with 'connection'",
            ),
            ("-A -f 0", "invalid fwmark value `0' specified"),
            (
                "-a -t 198.18.0.1:80 -r 198.18.0.2 -x -3",
                "illegal u_threshold specified",
            ),
            (
                "-a -t 198.18.0.1:80 -r 198.18.0.2 -y 2147483648",
                "illegal l_threshold specified",
            ),
            ("-t 198.18.0.1:80", "the first option must be a command"),
            ("-nL", "the first option must be a command"),
            ("garbage", "the first option must be a command"),
            ("-L extra", "unexpected argument `extra'"),
            ("-L --bogus", "--bogus: unknown option"),
            ("-Lq", "-q: unknown option"),
            ("-A -t", "-t: missing argument"),
            ("-A --tcp-service", "--tcp-service: missing argument"),
            (
                "-A -t 198.18.0.1:80 -M 255.0.255.0 -p",
                "illegal netmask specified",
            ),
            (
                "-A -t 198.18.0.1:80 -b sh-bogus",
                "invalid scheduler flag `sh-bogus' specified",
            ),
            (
                "--start-daemon slave",
                "illegal start-daemon parameter specified",
            ),
        ];
        for (line, want) in table {
            assert_eq!(&msg(line), want, "for {line:?}");
        }
    }

    #[test]
    fn defaults_and_clusters() {
        assert_eq!(
            p("-A -t 198.18.0.100:80").unwrap(),
            Command::AddService(ServiceSpec {
                key: SvcKey::Addr {
                    proto: IPPROTO_TCP,
                    vip: V4,
                    port: 80
                },
                sched: "wlc".into(),
                flags: 0,
                persistence: None,
                netmask: 32,
                ops: false,
                pe: None,
            })
        );
        let Command::AddService(s) = p("-A -t 198.18.0.100:0 -s rr -p").unwrap() else {
            panic!()
        };
        assert_eq!(s.persistence, Some(360));
        let Command::AddService(s) = p("-A -t 198.18.0.100:80 -p 60 -s rr").unwrap() else {
            panic!()
        };
        assert_eq!((s.persistence, s.sched.as_str()), (Some(60), "rr"));
        let Command::AddService(s) = p("-A -t 198.18.0.100:80 -p60 -srr -M 255.255.255.0").unwrap()
        else {
            panic!()
        };
        assert_eq!((s.persistence, s.netmask), (Some(60), 24));
        let Command::AddService(s) =
            p("--add-service --tcp-service=198.18.0.100:80 --persistent=30").unwrap()
        else {
            panic!()
        };
        assert_eq!(s.persistence, Some(30));
        let Command::List { svc, opts } = p("-Lnc").unwrap() else {
            panic!()
        };
        assert!(svc.is_none() && opts.numeric && opts.connection);
        let Command::List { opts, .. } = p("-Ln --stats --exact").unwrap() else {
            panic!()
        };
        assert!(opts.stats && opts.exact);
        let Command::AddServer { dest, .. } = p("-a -t 198.18.0.100:80 -r 198.18.1.1 -w2").unwrap()
        else {
            panic!()
        };
        assert_eq!((dest.weight, dest.fwd, dest.port), (2, Fwd::Dr, None));
        let Command::AddServer { dest, .. } =
            p("-a -t 198.18.0.100:80 -r 198.18.1.1:8080 -m").unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (dest.weight, dest.fwd, dest.port),
            (1, Fwd::Nat, Some(8080))
        );
        assert_eq!(
            p("-A -f 10 -6 -p").unwrap(),
            Command::AddService(ServiceSpec {
                key: SvcKey::Fwmark { mark: 10, v6: true },
                sched: "wlc".into(),
                flags: 0,
                persistence: Some(360),
                netmask: 128,
                ops: false,
                pe: None,
            })
        );
        assert_eq!(
            p("--set 0 120 300").unwrap(),
            Command::Set {
                tcp: 0,
                tcpfin: 120,
                udp: 300
            }
        );
        assert_eq!(p("-h").unwrap(), Command::Help);
        assert_eq!(p("--version").unwrap(), Command::Version);
        assert!(matches!(p("").unwrap(), Command::List { svc: None, .. }));
    }

    #[test]
    fn addresses() {
        let v6: Ipv6Addr = "2001:db8::1".parse().unwrap();
        assert_eq!(
            parse_addr_port("[2001:db8::1]:80"),
            Some((IpAddr::V6(v6), Some(80)))
        );
        assert_eq!(
            parse_addr_port("[2001:db8::1]"),
            Some((IpAddr::V6(v6), None))
        );
        assert_eq!(parse_addr_port("2001:db8::1"), Some((IpAddr::V6(v6), None)));
        assert_eq!(parse_addr_port("198.18.0.100:80"), Some((V4, Some(80))));
        assert_eq!(parse_addr_port("198.18.0.100"), Some((V4, None)));
        for bad in [
            "",
            ":",
            "[]:1",
            "1.2.3",
            "1.2.3.4:99999",
            "[::1]x",
            "host",
            "1.2.3.4:-1",
        ] {
            assert_eq!(parse_addr_port(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn tunnel_options() {
        let Command::AddServer { dest, .. } =
            p("-a -t 198.18.0.100:80 -r 198.18.1.1 -i --tun-type gue --tun-port 6080 --tun-csum")
                .unwrap()
        else {
            panic!()
        };
        assert_eq!(
            dest.tun,
            TunConf {
                kind: TunType::Gue,
                port: 6080,
                csum: TunCsum::Csum
            }
        );
        assert!(p("-a -t 198.18.0.100:80 -r 198.18.1.1 --tun-type gre").is_err());
        assert!(p("-a -t 198.18.0.100:80 -r 198.18.1.1 -i --tun-type gue").is_err());
        assert!(p("-a -t 198.18.0.100:80 -r 198.18.1.1 -i --tun-csum").is_err());
        assert!(
            p("-a -t 198.18.0.100:80 -r 198.18.1.1 -i --tun-type gre --tun-csum --tun-nocsum")
                .is_err()
        );
    }

    #[test]
    fn hostile_input_never_panics() {
        let long = "9".repeat(500);
        let lines = [
            format!("-A -t 198.18.0.1:{long}"),
            format!("-a -t 198.18.0.1:80 -r 198.18.0.2 -w {long}"),
            format!("--set {long} {long} {long}"),
            format!("-A -f {long}"),
            "-".to_string(),
            "--".to_string(),
            "--=".to_string(),
            "-p".to_string(),
            "-A -t [::1]:80 -M 0".to_string(),
            "-Léé".to_string(),
            "-A -t é:80".to_string(),
            "-a -t 1.2.3.4:80 -r 1.2.3.5 -i --tun-port 0".to_string(),
        ];
        for l in &lines {
            let _ = p(l);
        }
        let _ = parse(&["-A", "-t", "\u{0}"]);
        let _ = parse(&["-e", "-t", "1.1.1.1:1", "-r", "[::]:0", "-wé"]);
    }
}
