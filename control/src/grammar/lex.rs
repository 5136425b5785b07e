//! Recognising option tokens: ipvsadm's short letters (which may be
//! clustered, `-Ln`), its long names (which may be abbreviated), and
//! whether each takes a value.

use xvs_config::svc::Fwd;

use super::table::{Cmd, Opt};
use super::TunCsum;

/// Whether an option takes a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Arg {
    No,
    Required,
    Optional,
}

/// One recognised option token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Tok {
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
    pub(super) fn arg(self) -> Arg {
        match self {
            Tok::Cmd(Cmd::StartDaemon | Cmd::StopDaemon | Cmd::SetMark | Cmd::Maintenance) => {
                Arg::Required
            }
            Tok::Cmd(_) => Arg::No,
            Tok::Tcp | Tok::Udp | Tok::Sctp | Tok::Fwmark => Arg::Required,
            Tok::Value(Opt::Persistent) => Arg::Optional,
            Tok::Value(_) => Arg::Required,
            Tok::Set(_) | Tok::Fwd(_) | Tok::Csum(_) => Arg::No,
        }
    }
}

pub(super) fn short(c: char) -> Option<Tok> {
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

pub(super) fn long(name: &str) -> Option<Tok> {
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
        "maintenance" => Tok::Cmd(Cmd::Maintenance),
        "bgp-feed" => Tok::Cmd(Cmd::BgpFeed),
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
        "announce" => Tok::Set(Opt::Announce),
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
        "check" => Tok::Value(Opt::Check),
        "check-port" => Tok::Value(Opt::CheckPort),
        "check-path" => Tok::Value(Opt::CheckPath),
        "check-host" => Tok::Value(Opt::CheckHost),
        "check-method" => Tok::Value(Opt::CheckMethod),
        "check-expect" => Tok::Value(Opt::CheckExpect),
        "check-regex" => Tok::Value(Opt::CheckRegex),
        "check-send" => Tok::Value(Opt::CheckSend),
        "check-receive" => Tok::Value(Opt::CheckReceive),
        "check-cmd" => Tok::Value(Opt::CheckCmd),
        "check-ca" => Tok::Value(Opt::CheckCa),
        "check-interval" => Tok::Value(Opt::CheckInterval),
        "check-timeout" => Tok::Value(Opt::CheckTimeout),
        "check-rise" => Tok::Value(Opt::CheckRise),
        "check-fall" => Tok::Value(Opt::CheckFall),
        "check-on-fail" => Tok::Value(Opt::CheckOnFail),
        "quorum" => Tok::Value(Opt::Quorum),
        "sorry-server" => Tok::Value(Opt::SorryServer),
        _ => return None,
    })
}
