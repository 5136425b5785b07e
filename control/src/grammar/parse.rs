//! Walking the argument vector: each option as it is met (bad values,
//! repeated options), then the command/option table, then the checks that
//! need the whole command, in ipvsadm's order.

use std::net::IpAddr;

use xvs_config::check::{self, CheckConf, CheckKind, HttpMethod, OnFail, StatusSet};
use xvs_config::svc::{Fwd, SvcKey};
use xvs_config::{SyncDaemonConf, SyncRole};

use super::lex::{long, short, Arg, Tok};
use super::table::{rule, Cmd, Opt, Rule, ALL_OPTS};
use super::values::{
    parse_addr_port, parse_netmask, parse_number, parse_sched_flags, parse_timeout,
};
use super::*;

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
    daemon_role: Option<SyncRole>,
    mcast_if: Option<String>,
    syncid: Option<u8>,
    mcast_group: Option<IpAddr>,
    mcast_port: Option<u16>,
    mcast_ttl: Option<u8>,
    sync_maxlen: Option<u16>,
    mark: Option<u32>,
    maintenance: Option<bool>,
    check: CheckConf,
    quorum: Option<u32>,
    sorry: Option<SorrySpec>,
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
            let Some(mut tok) = long(name) else {
                return err(format!("{a}: unknown option"));
            };
            // `--check TYPE` configures a check; `-L --check` lists them.
            if tok == Tok::Value(Opt::Check) && raw.cmd == Some(Cmd::List) {
                tok = Tok::Set(Opt::ListCheck);
            }
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

/// Longest interface name ipvsadm passes on (`IP_VS_IFNAME_MAXLEN - 1`).
const IFNAME_MAX: usize = 15;

/// `--mcast-group`: IPv6 if it has a colon; either way a multicast group.
fn parse_mcast_group(v: &str) -> Result<IpAddr, ParseError> {
    if v.contains(':') {
        match v.parse::<std::net::Ipv6Addr>() {
            Ok(a) if a.is_multicast() => Ok(IpAddr::V6(a)),
            _ => err(format!("invalid IPv6 mcast-group `{v}'")),
        }
    } else {
        match v.parse::<std::net::Ipv4Addr>() {
            Ok(a) if a.is_multicast() => Ok(IpAddr::V4(a)),
            _ => err(format!("invalid IPv4 mcast-group `{v}'")),
        }
    }
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
                raw.daemon_role = Some(match v.as_str() {
                    "master" => SyncRole::Master,
                    "backup" => SyncRole::Backup,
                    _ => return err(format!("illegal {} parameter specified", cmd.name())),
                });
            } else if cmd == Cmd::Maintenance {
                raw.maintenance = Some(match v.as_str() {
                    "on" => true,
                    "off" => false,
                    _ => return err("illegal maintenance parameter specified (on or off)"),
                });
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
        // `-6` names the family of a firewall-mark service, so it must
        // come after `-f` (ipvsadm's message ends with a blank line), and
        // may be repeated.
        Tok::Set(Opt::Ipv6) => {
            if !matches!(raw.svc, Some(RawSvc::Fwmark(_))) {
                return err("-6 used before -f\n");
            }
            raw.opts |= Opt::Ipv6.bit();
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
                // Sync-daemon options, with ipvsadm's ranges and messages.
                Opt::McastIf => {
                    // ipvsadm copies at most IFNAMSIZ - 1 bytes.
                    let mut n = v.len().min(IFNAME_MAX);
                    while !v.is_char_boundary(n) {
                        n -= 1;
                    }
                    raw.mcast_if = Some(v[..n].to_string());
                }
                Opt::SyncId => match parse_number(&v, 0, 255) {
                    Some(x) => raw.syncid = Some(x as u8),
                    None => return err("illegal syncid specified"),
                },
                Opt::McastGroup => raw.mcast_group = Some(parse_mcast_group(&v)?),
                Opt::McastPort => match parse_number(&v, 1, 65535) {
                    Some(x) => raw.mcast_port = Some(x as u16),
                    None => return err("illegal mcast-port specified"),
                },
                Opt::McastTtl => match parse_number(&v, 1, 255) {
                    Some(x) => raw.mcast_ttl = Some(x as u8),
                    None => return err("illegal mcast-ttl specified"),
                },
                Opt::SyncMaxlen => match parse_number(&v, 1, 65535 - 20 - 8) {
                    Some(x) => raw.sync_maxlen = Some(x as u16),
                    None => return err("illegal sync-maxlen specified"),
                },
                Opt::Quorum => match parse_number(&v, 0, i32::MAX as u64) {
                    Some(q) => raw.quorum = Some(q as u32),
                    None => return err("illegal quorum specified"),
                },
                Opt::SorryServer => {
                    raw.sorry = Some(if v == "none" {
                        SorrySpec::Clear
                    } else {
                        match parse_addr_port(&v) {
                            Some((addr, port)) => SorrySpec::Server(addr, port),
                            None => return err("illegal sorry server address[:port] specified"),
                        }
                    })
                }
                o if o.is_check() => check_value(&mut raw.check, o, v)?,
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
    // -L --check is a listing of its own: not with another one.
    if cmd == Cmd::List && raw.has(Opt::ListCheck) {
        for other in [Opt::Connection, Opt::Timeout, Opt::Daemon, Opt::Dataplane] {
            if raw.has(other) {
                return err(format!(
                    "The option 'check' can't be used with '{}'",
                    other.name()
                ));
            }
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
                    None if svc_v6 => return err("illegal ipv6 netmask specified"),
                    None => return err("illegal virtual server persistent mask specified"),
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
                check: checked(&raw.check)?,
                quorum: raw.quorum,
                sorry: raw.sorry,
                replace_checks: false,
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
                announce: raw.has(Opt::Announce),
                check: raw.has(Opt::ListCheck),
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
            // IPVS forwards to a server of the other family only through a
            // tunnel (the outer header follows the server's family).
            if addr.is_ipv6() != svc_v6 && fwd != Fwd::Tun {
                return err("Different address family is allowed only for tunneling servers");
            }
            let tun = tunnel(&raw, fwd)?;
            let dest = DestSpec {
                addr,
                port,
                fwd,
                weight: raw.weight.unwrap_or(1),
                u_threshold: raw.u_threshold,
                l_threshold: raw.l_threshold,
                tun,
                check: checked(&raw.check)?,
                replace_checks: false,
            };
            Ok(if cmd == Cmd::AddDest {
                Command::AddServer { svc, dest }
            } else {
                Command::EditServer { svc, dest }
            })
        }
        Cmd::StartDaemon => Ok(Command::StartDaemon(SyncDaemonConf {
            role: raw.daemon_role.expect("parsed with the command"),
            iface: raw
                .mcast_if
                .clone()
                .unwrap_or_else(|| xvs_config::sync::DEFAULT_IFACE.to_string()),
            syncid: raw.syncid.unwrap_or(0),
            maxlen: raw.sync_maxlen,
            group: raw.mcast_group,
            port: raw.mcast_port,
            ttl: raw.mcast_ttl,
        })),
        Cmd::StopDaemon => Ok(Command::StopDaemon {
            role: raw.daemon_role.expect("parsed with the command"),
            syncid: raw.syncid,
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
        Cmd::Maintenance => Ok(Command::Maintenance(
            raw.maintenance.expect("parsed with the command"),
        )),
        Cmd::BgpFeed => Ok(Command::BgpFeed),
        Cmd::Timeout | Cmd::Help | Cmd::Version => unreachable!("handled above"),
    }
}

/// Check and collect the `--tun-*` options of a server.
fn tunnel(raw: &Raw, fwd: Fwd) -> Result<TunConf, ParseError> {
    let any = raw.tun_type.is_some() || raw.tun_port.is_some() || !raw.csum.is_empty();
    if any && fwd != Fwd::Tun {
        return err("Tunnel options conflict with forward method");
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

/// A string option value: not empty, no control characters (a rule is one
/// line of a rules file); `spaces`: whether blanks are allowed.
fn text(v: String, what: &str, spaces: bool) -> Result<String, ParseError> {
    if v.is_empty()
        || v.chars()
            .any(|c| c.is_control() || (!spaces && c.is_whitespace()))
    {
        return err(format!("illegal check {what} `{v}' specified"));
    }
    Ok(v)
}

/// Check and record one `--check*` option's value.
fn check_value(c: &mut CheckConf, opt: Opt, v: String) -> Result<(), ParseError> {
    let secs = |what: &str| match parse_number(&v, 1, 86_400) {
        Some(n) => Ok(n as u32),
        None => err(format!("illegal check {what} specified")),
    };
    let count = |what: &str| match parse_number(&v, 1, 1_000) {
        Some(n) => Ok(n as u32),
        None => err(format!("illegal check {what} specified")),
    };
    match opt {
        Opt::Check => match CheckKind::parse(&v) {
            Some(k) => c.kind = Some(k),
            None => return err(format!("illegal check type `{v}' specified")),
        },
        Opt::CheckPort => match parse_number(&v, 1, 65535) {
            Some(p) => c.port = Some(p as u16),
            None => return err("illegal check port specified"),
        },
        Opt::CheckPath => {
            if !v.starts_with('/') {
                return err(format!("illegal check path `{v}' specified"));
            }
            c.path = Some(text(v, "path", false)?);
        }
        Opt::CheckHost => c.host = Some(text(v, "host", false)?),
        Opt::CheckMethod => match HttpMethod::parse(&v) {
            Some(m) => c.method = Some(m),
            None => return err(format!("illegal check method `{v}' specified")),
        },
        Opt::CheckExpect => match StatusSet::parse(&v) {
            Ok(set) => c.expect = Some(set),
            Err(why) => return err(format!("illegal check status list `{v}' specified: {why}")),
        },
        Opt::CheckRegex => {
            let v = text(v, "regex", true)?;
            if let Err(e) = regex::bytes::Regex::new(&v) {
                let why = e.to_string();
                let why = why.lines().last().unwrap_or_default().trim();
                let why = why.strip_prefix("error: ").unwrap_or(why);
                return err(format!("illegal check regex `{v}' specified: {why}"));
            }
            c.regex = Some(v);
        }
        Opt::CheckSend | Opt::CheckReceive => {
            let what = if opt == Opt::CheckSend {
                "send string"
            } else {
                "receive string"
            };
            let v = text(v, what, true)?;
            if let Err(why) = check::unescape(&v) {
                return err(format!("illegal check {what} specified: {why}"));
            }
            if opt == Opt::CheckSend {
                c.send = Some(v);
            } else {
                c.receive = Some(v);
            }
        }
        Opt::CheckCmd => c.cmd = Some(text(v, "command", true)?),
        Opt::CheckCa => c.ca = Some(text(v, "CA file", false)?),
        Opt::CheckInterval => c.interval = Some(secs("interval")?),
        Opt::CheckTimeout => c.timeout = Some(secs("timeout")?),
        Opt::CheckRise => c.rise = Some(count("rise count")?),
        Opt::CheckFall => c.fall = Some(count("fall count")?),
        Opt::CheckOnFail => match OnFail::parse(&v) {
            Some(f) => c.on_fail = Some(f),
            None => return err(format!("illegal check on-fail action `{v}' specified")),
        },
        _ => unreachable!("only --check* options come here"),
    }
    Ok(())
}

/// The check kinds an option is for, with the words its message uses.
fn check_kinds(c: &CheckConf) -> Vec<(&'static str, bool, &'static [CheckKind], &'static str)> {
    use CheckKind::*;
    const HTTP: &[CheckKind] = &[Http, Https];
    vec![
        (
            "check-port",
            c.port.is_some(),
            &[Tcp, Http, Https, Udp, Vip],
            "tcp, http, https, udp and vip checks",
        ),
        (
            "check-path",
            c.path.is_some(),
            HTTP,
            "http and https checks",
        ),
        (
            "check-host",
            c.host.is_some(),
            HTTP,
            "http and https checks",
        ),
        (
            "check-method",
            c.method.is_some(),
            HTTP,
            "http and https checks",
        ),
        (
            "check-expect",
            c.expect.is_some(),
            HTTP,
            "http and https checks",
        ),
        (
            "check-regex",
            c.regex.is_some(),
            &[Tcp, Http, Https, Udp],
            "tcp, http, https and udp checks",
        ),
        (
            "check-send",
            c.send.is_some(),
            &[Tcp, Udp],
            "tcp and udp checks",
        ),
        (
            "check-receive",
            c.receive.is_some(),
            &[Tcp, Udp],
            "tcp and udp checks",
        ),
        ("check-cmd", c.cmd.is_some(), &[Exec], "exec checks"),
        ("check-ca", c.ca.is_some(), &[Https], "https checks"),
    ]
}

/// Why an option given in `c` does not belong to a `kind` check, if one
/// does not.
pub(crate) fn misplaced_check_option(c: &CheckConf, kind: CheckKind) -> Option<String> {
    check_kinds(c)
        .into_iter()
        .find(|(_, given, kinds, _)| *given && !kinds.contains(&kind))
        .map(|(name, _, _, words)| format!("the '{name}' option is only for {words}"))
}

/// The message for a body regex on a HEAD request.
pub(crate) const HEAD_REGEX: &str =
    "the 'check-regex' option needs a body: it can't be used with HEAD";

/// The check options of one command, checked against the `--check` type
/// given with them (options for another type are a mistake; without a
/// type they are defaults that may meet their type elsewhere).
fn checked(c: &CheckConf) -> Result<CheckConf, ParseError> {
    if let Some(why) = c.kind.and_then(|k| misplaced_check_option(c, k)) {
        return err(why);
    }
    if c.method == Some(HttpMethod::Head) && c.regex.is_some() {
        return err(HEAD_REGEX);
    }
    Ok(c.clone())
}
