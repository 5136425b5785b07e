//! ipvsadm's command/option table: which options each command requires,
//! allows or forbids. It is walked in ipvsadm's option order, because that
//! order decides which message a wrong command line gets first.

/// The commands, in ipvsadm's table order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Cmd {
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
    Maintenance,
    BgpFeed,
    Help,
    Version,
}

impl Cmd {
    pub(super) fn name(self) -> &'static str {
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
            Cmd::Maintenance => "maintenance",
            Cmd::BgpFeed => "bgp-feed",
            Cmd::Help => "help",
            Cmd::Version => "version",
        }
    }
}

/// The options, in ipvsadm's table order (the order the command/option
/// check walks them, so it decides which message comes first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Opt {
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
    Announce,
    Check,
    CheckPort,
    CheckPath,
    CheckHost,
    CheckMethod,
    CheckExpect,
    CheckRegex,
    CheckSend,
    CheckReceive,
    CheckCmd,
    CheckCa,
    CheckInterval,
    CheckTimeout,
    CheckRise,
    CheckFall,
    CheckOnFail,
    Quorum,
    SorryServer,
    ListCheck,
}

pub(super) const ALL_OPTS: [Opt; 58] = [
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
    Opt::Announce,
    Opt::Check,
    Opt::CheckPort,
    Opt::CheckPath,
    Opt::CheckHost,
    Opt::CheckMethod,
    Opt::CheckExpect,
    Opt::CheckRegex,
    Opt::CheckSend,
    Opt::CheckReceive,
    Opt::CheckCmd,
    Opt::CheckCa,
    Opt::CheckInterval,
    Opt::CheckTimeout,
    Opt::CheckRise,
    Opt::CheckFall,
    Opt::CheckOnFail,
    Opt::Quorum,
    Opt::SorryServer,
    Opt::ListCheck,
];

impl Opt {
    pub(super) fn name(self) -> &'static str {
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
            Opt::Announce => "announce",
            Opt::Check => "check",
            Opt::CheckPort => "check-port",
            Opt::CheckPath => "check-path",
            Opt::CheckHost => "check-host",
            Opt::CheckMethod => "check-method",
            Opt::CheckExpect => "check-expect",
            Opt::CheckRegex => "check-regex",
            Opt::CheckSend => "check-send",
            Opt::CheckReceive => "check-receive",
            Opt::CheckCmd => "check-cmd",
            Opt::CheckCa => "check-ca",
            Opt::CheckInterval => "check-interval",
            Opt::CheckTimeout => "check-timeout",
            Opt::CheckRise => "check-rise",
            Opt::CheckFall => "check-fall",
            Opt::CheckOnFail => "check-on-fail",
            Opt::Quorum => "quorum",
            Opt::SorryServer => "sorry-server",
            Opt::ListCheck => "check",
        }
    }

    /// Whether this is one of the `--check-*` options of a service or a
    /// real server (not `-L`'s `--check`).
    pub(super) fn is_check(self) -> bool {
        (Opt::Check as u32..=Opt::CheckOnFail as u32).contains(&(self as u32))
    }

    pub(super) fn bit(self) -> u64 {
        1u64 << (self as u32)
    }
}

/// How an option relates to a command: required, allowed, allowed but
/// exclusive with the other `One` options, or illegal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Rule {
    Required,
    Allowed,
    One,
    Illegal,
}

pub(super) fn rule(cmd: Cmd, opt: Opt) -> Rule {
    use Opt as O;
    use Rule::{Allowed as A, Illegal as X, One, Required as R};
    match cmd {
        Cmd::Add | Cmd::Edit => match opt {
            O::Service => R,
            O::Scheduler | O::Persistent | O::Netmask | O::Ipv6 | O::Ops | O::Pe => A,
            O::SchedFlags => A,
            o if o.is_check() => A,
            O::Quorum | O::SorryServer => A,
            _ => X,
        },
        Cmd::Del => match opt {
            O::Service => R,
            O::Ipv6 => A,
            _ => X,
        },
        Cmd::List => match opt {
            O::Connection | O::Service | O::Timeout | O::Daemon | O::Dataplane | O::Announce => One,
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
            | O::Json
            | O::ListCheck => A,
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
            o if o.is_check() => A,
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
        Cmd::Flush
        | Cmd::Timeout
        | Cmd::Restore
        | Cmd::Maintenance
        | Cmd::BgpFeed
        | Cmd::Help
        | Cmd::Version => X,
    }
}
