//! `-L`/`-l` and `-S` output, byte for byte as ipvsadm prints it.
//!
//! Monitoring scripts parse ipvsadm's columns (often with fixed offsets),
//! so every width, every padding space and every trailing space matters.
//! xvs never resolves names: `-n` and its absence print the same thing.

use std::fmt::Write as _;
use std::net::IpAddr;

use xvs_config::check::CheckConf;
use xvs_config::stats::CounterValues;
use xvs_config::svc::{Fwd, SvcKey};
use xvs_scheduler::{SCHED_FLAG_1, SCHED_FLAG_2, SCHED_FLAG_3};

use crate::grammar::{ListOpts, TunCsum, TunType, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP};
use crate::model::{ConfigError, Dest, Model, Service, ServiceState, Timeouts};
use crate::rate::Rates;

/// The IPVS version ipvsadm prints in the header.
pub const IPVS_VERSION: &str = "1.2.1";

/// One connection (or persistence template) for `-L -c`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnEntry {
    /// IP protocol number; 0 lists as `IP` (templates of fwmark services).
    pub proto: u8,
    /// Whether this is a persistence template rather than a connection.
    pub template: bool,
    /// State name (`ESTABLISHED`, `SYN_RECV`, `NONE` for templates, ...).
    pub state: &'static str,
    /// Seconds until it expires.
    pub expire_secs: u64,
    /// Client address.
    pub cip: IpAddr,
    /// Client port (0 in templates).
    pub cport: u16,
    /// Virtual address (for fwmark templates IPVS shows the mark as an
    /// address, e.g. `0.0.0.10`).
    pub vip: IpAddr,
    /// Virtual port.
    pub vport: u16,
    /// Real server address.
    pub dip: IpAddr,
    /// Real server port.
    pub dport: u16,
}

/// What the running daemon knows that the configuration does not.
pub trait Runtime {
    /// Every live connection and persistence template.
    fn connections(&self) -> Vec<ConnEntry>;

    /// Every live connection and template, produced as pulled (on any
    /// thread): a listing streams them instead of holding them all.
    fn connections_iter(&self) -> Box<dyn Iterator<Item = ConnEntry> + Send> {
        Box::new(self.connections().into_iter())
    }

    /// `-L --dataplane`: the data plane's counters as text.
    fn dataplane(&self) -> String {
        "Data plane: none (control only)\n".to_string()
    }

    /// The running connection sync daemons: settings in effect and
    /// counters (`-L --daemon`, its `--stats`, the metrics page).
    fn sync_status(&self) -> Vec<crate::syncd::SyncStatus> {
        Vec::new()
    }
}

/// A [`Runtime`] with no connections (tests, tools).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoRuntime;

impl Runtime for NoRuntime {
    fn connections(&self) -> Vec<ConnEntry> {
        Vec::new()
    }
}

/// An address as ipvsadm prints it (glibc's `inet_ntop`): IPv6 compressed
/// (RFC 5952), with the last 32 bits dotted for IPv4-mapped addresses
/// (`::ffff:198.18.0.1`) and for IPv4-compatible ones (`::198.18.0.1`:
/// six zero groups, then a non-zero one), which Rust's `Display` writes
/// in hex.
pub fn ip_text(addr: IpAddr) -> String {
    match addr {
        IpAddr::V6(a) => {
            let g = a.segments();
            if g[..6] == [0; 6] && g[6] != 0 {
                let [.., b12, b13, b14, b15] = a.octets();
                format!("::{}", std::net::Ipv4Addr::new(b12, b13, b14, b15))
            } else {
                a.to_string()
            }
        }
        IpAddr::V4(a) => a.to_string(),
    }
}

/// `addr:port`, IPv6 in brackets.
pub fn addr_port(addr: IpAddr, port: u16) -> String {
    match addr {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(_) => format!("[{}]:{port}", ip_text(addr)),
    }
}

/// ipvsadm's protocol name.
pub fn proto_name(proto: u8) -> &'static str {
    match proto {
        IPPROTO_TCP => "TCP",
        IPPROTO_UDP => "UDP",
        IPPROTO_SCTP => "SCTP",
        0 => "IP",
        _ => "???",
    }
}

/// Append a counter or rate by ipvsadm's large-number rule: `%9llu` below
/// 10^8, then K (/10^3) below 10^9, M (/10^6) below 10^11, G (/10^9) below
/// 10^14, else T (/10^12), each `%8llu` plus the letter. `exact` prints the
/// whole number in at least 9 columns, always after a space.
pub fn push_largenum(out: &mut String, n: u64, exact: bool) {
    if exact {
        let len = n.to_string().len();
        let width = if len <= 8 { 9 } else { len + 1 };
        let _ = write!(out, "{n:>width$}");
    } else if n < 100_000_000 {
        let _ = write!(out, "{n:>9}");
    } else if n < 1_000_000_000 {
        let _ = write!(out, "{:>8}K", n / 1_000);
    } else if n < 100_000_000_000 {
        let _ = write!(out, "{:>8}M", n / 1_000_000);
    } else if n < 100_000_000_000_000 {
        let _ = write!(out, "{:>8}G", n / 1_000_000_000);
    } else {
        let _ = write!(out, "{:>8}T", n / 1_000_000_000_000);
    }
}

/// The service's name column: `TCP  addr:port`, `FWM  10`, `FWM  10 IPv6`.
fn svc_name(key: &SvcKey) -> String {
    match *key {
        SvcKey::Addr { proto, vip, port } => {
            format!("{:<4} {}", proto_name(proto), addr_port(vip, port))
        }
        SvcKey::Fwmark { mark, v6: false } => format!("FWM  {mark}"),
        SvcKey::Fwmark { mark, v6: true } => format!("FWM  {mark} IPv6"),
    }
}

/// The service as `-S` writes it: `-t addr:port`, `-f 10`, `-f 10 -6`.
pub(crate) fn svc_rule(key: &SvcKey) -> String {
    match *key {
        SvcKey::Addr { proto, vip, port } => {
            let opt = match proto {
                IPPROTO_UDP => "-u",
                IPPROTO_SCTP => "--sctp-service",
                _ => "-t",
            };
            format!("{opt} {}", addr_port(vip, port))
        }
        SvcKey::Fwmark { mark, v6: false } => format!("-f {mark}"),
        SvcKey::Fwmark { mark, v6: true } => format!("-f {mark} -6"),
    }
}

/// Scheduler flags as ipvsadm names them for this scheduler, comma-joined.
pub fn sched_flags(sched: &str, flags: u32) -> String {
    let names: [&str; 3] = match sched {
        "sh" => ["sh-fallback", "sh-port", "flag-3"],
        "mh" => ["mh-fallback", "mh-port", "mh-sorted"],
        _ => ["flag-1", "flag-2", "flag-3"],
    };
    [SCHED_FLAG_1, SCHED_FLAG_2, SCHED_FLAG_3]
        .iter()
        .zip(names)
        .filter(|(bit, _)| flags & **bit != 0)
        .map(|(_, n)| n)
        .collect::<Vec<_>>()
        .join(",")
}

const ALL_SCHED_FLAGS: u32 = SCHED_FLAG_1 | SCHED_FLAG_2 | SCHED_FLAG_3;

/// The netmask as ipvsadm prints it: dotted for IPv4, a number for IPv6;
/// `None` for a full mask (/32, /128), which is not printed.
fn mask_text(s: &Service) -> Option<String> {
    if s.is_v6() {
        (s.netmask < 128).then(|| s.netmask.to_string())
    } else if s.netmask < 32 {
        let bits = u32::MAX.checked_shl(32 - u32::from(s.netmask)).unwrap_or(0);
        Some(std::net::Ipv4Addr::from(bits).to_string())
    } else {
        None
    }
}

pub(crate) fn fwd_name(f: Fwd) -> &'static str {
    match f {
        Fwd::Nat => "Masq",
        Fwd::Dr => "Route",
        Fwd::Tun => "Tunnel",
    }
}

fn fwd_switch(f: Fwd) -> &'static str {
    match f {
        Fwd::Nat => "-m",
        Fwd::Dr => "-g",
        Fwd::Tun => "-i",
    }
}

fn family(a: IpAddr) -> u8 {
    u8::from(a.is_ipv6())
}

fn addr_bytes(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V4(v) => {
            let mut b = [0; 16];
            b[..4].copy_from_slice(&v.octets());
            b
        }
        IpAddr::V6(v) => v.octets(),
    }
}

/// ipvsadm's service order: fwmark (0 for address services), family,
/// protocol, address, port. (ipvsadm subtracts fwmarks as ints, which
/// misorders marks above 2^31; xvs compares them properly.)
fn svc_sort_key(s: &Service) -> (u32, u8, u8, [u8; 16], u16) {
    match s.key {
        SvcKey::Addr { proto, vip, port } => (0, family(vip), proto, addr_bytes(vip), port),
        SvcKey::Fwmark { mark, v6 } => (mark, u8::from(v6), IPPROTO_TCP, [0; 16], 0),
    }
}

/// Services in listing order.
pub(crate) fn ordered_services(model: &Model, nosort: bool) -> Vec<&Service> {
    let mut v: Vec<&Service> = model.services.iter().collect();
    if nosort {
        v.sort_by_key(|s| s.seq);
    } else {
        v.sort_by_key(|s| svc_sort_key(s));
    }
    v
}

/// Destinations in listing order (`nosort`: list order, newest first).
pub(crate) fn ordered_dests(s: &Service, nosort: bool) -> Vec<&Dest> {
    let mut v: Vec<&Dest> = s.dests.iter().collect();
    if !nosort {
        v.sort_by_key(|d| (family(d.addr), addr_bytes(d.addr), d.port));
    }
    v
}

/// Which columns a listing shows (ipvsadm's precedence among the options).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Stats,
    Rate,
    Thresholds,
    PersistentConn,
    TunInfo,
    Normal,
}

impl Format {
    fn of(o: &ListOpts) -> Format {
        if o.stats {
            Format::Stats
        } else if o.rate {
            Format::Rate
        } else if o.thresholds {
            Format::Thresholds
        } else if o.persistent_conn {
            Format::PersistentConn
        } else if o.tun_info {
            Format::TunInfo
        } else {
            Format::Normal
        }
    }
}

fn push_title(out: &mut String, f: Format) {
    let cols: Option<[&str; 5]> = match f {
        Format::Stats => Some(["Conns", "InPkts", "OutPkts", "InBytes", "OutBytes"]),
        Format::Rate => Some(["CPS", "InPPS", "OutPPS", "InBPS", "OutBPS"]),
        _ => None,
    };
    if let Some(c) = cols {
        let _ = writeln!(
            out,
            "{:<33} {:>8} {:>8} {:>8} {:>8} {:>8}\n  -> RemoteAddress:Port",
            "Prot LocalAddress:Port", c[0], c[1], c[2], c[3], c[4]
        );
        return;
    }
    match f {
        Format::Thresholds => {
            let _ = writeln!(
                out,
                "{:<33} {:<10} {:<10} {:<10} {:<10}\n  -> RemoteAddress:Port",
                "Prot LocalAddress:Port", "Uthreshold", "Lthreshold", "ActiveConn", "InActConn"
            );
        }
        Format::PersistentConn => {
            let _ = writeln!(
                out,
                "{:<33} {:<9} {:<11} {:<10} {:<10}\n  -> RemoteAddress:Port",
                "Prot LocalAddress:Port", "Weight", "PersistConn", "ActiveConn", "InActConn"
            );
        }
        Format::TunInfo => out.push_str(
            "Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward TunnelInfo    Weight ActiveConn InActConn\n",
        ),
        _ => out.push_str(
            "Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n",
        ),
    }
}

fn push_numbers(out: &mut String, v: [u64; 5], exact: bool) {
    for n in v {
        push_largenum(out, n, exact);
    }
    out.push('\n');
}

fn counter_array(c: CounterValues) -> [u64; 5] {
    [c.conns, c.inpkts, c.outpkts, c.inbytes, c.outbytes]
}

fn rate_array(r: Rates) -> [u64; 5] {
    [r.cps, r.inpps, r.outpps, r.inbps, r.outbps]
}

/// TunnelInfo column of `--tun-info` (xvs's rendering: the type, `:port`
/// for GUE, `,csum`/`,remcsum` when set; empty for non-tunnel servers).
fn tun_info(d: &Dest) -> String {
    if d.fwd != Fwd::Tun {
        return String::new();
    }
    let mut s = d.tun.kind.name().to_string();
    if d.tun.kind == TunType::Gue {
        let _ = write!(s, ":{}", d.tun.port);
    }
    match d.tun.csum {
        TunCsum::NoCsum => {}
        TunCsum::Csum => s.push_str(",csum"),
        TunCsum::RemCsum => s.push_str(",remcsum"),
    }
    s
}

/// The servers a listing shows, as scheduled: effective weights, a server
/// removed while down left out, the sorry server while it stands in
/// (ipvsadm's view of a table kept by keepalived).
fn listed_dests<'a>(st: &'a ServiceState<'a>, nosort: bool) -> Vec<(&'a Dest, i32)> {
    let mut v: Vec<(&Dest, i32)> = st
        .dests
        .iter()
        .filter(|d| !d.removed)
        .map(|d| (d.dest, d.weight))
        .chain(st.sorry.as_ref().map(|d| (d, d.weight)))
        .collect();
    if !nosort {
        v.sort_by_key(|(d, _)| (family(d.addr), addr_bytes(d.addr), d.port));
    }
    v
}

fn push_service(out: &mut String, model: &Model, s: &Service, f: Format, o: &ListOpts) {
    let name = svc_name(&s.key);
    match f {
        Format::Stats => {
            let _ = write!(out, "{name:<33}");
            push_numbers(out, counter_array(s.counters.get()), o.exact);
        }
        Format::Rate => {
            let _ = write!(out, "{name:<33}");
            push_numbers(out, rate_array(s.rate.rates()), o.exact);
        }
        _ => {
            let _ = write!(out, "{name} {}", s.sched);
            if s.flags & ALL_SCHED_FLAGS != 0 {
                let _ = write!(out, " ({})", sched_flags(&s.sched, s.flags));
            }
            if let Some(t) = s.persistence {
                let _ = write!(out, " persistent {t}");
                if let Some(m) = mask_text(s) {
                    let _ = write!(out, " mask {m}");
                }
            }
            if s.ops {
                out.push_str(" ops");
            }
            out.push('\n');
        }
    }
    let st = model.service_state(s);
    for (d, weight) in listed_dests(&st, o.nosort) {
        let name = addr_port(d.addr, d.port);
        let (active, inact) = (d.load.active(), d.load.inactive());
        match f {
            Format::Stats => {
                let _ = write!(out, "  -> {name:<28}");
                push_numbers(out, counter_array(d.counters.get()), o.exact);
            }
            Format::Rate => {
                let _ = write!(out, "  -> {name:<28}");
                push_numbers(out, rate_array(d.rate.rates()), o.exact);
            }
            Format::Thresholds => {
                let _ = writeln!(
                    out,
                    "  -> {name:<28} {:<10} {:<10} {active:<10} {inact:<10}",
                    d.u_threshold, d.l_threshold
                );
            }
            Format::PersistentConn => {
                let _ = writeln!(
                    out,
                    "  -> {name:<28} {:<9} {:<11} {active:<10} {inact:<10}",
                    weight,
                    d.load.persist()
                );
            }
            Format::TunInfo => {
                let _ = writeln!(
                    out,
                    "  -> {name:<28} {:<7} {:<13} {:<6} {active:<10} {inact:<10}",
                    fwd_name(d.fwd),
                    tun_info(d),
                    weight
                );
            }
            Format::Normal => {
                let _ = writeln!(
                    out,
                    "  -> {name:<28} {:<7} {:<6} {active:<10} {inact:<10}",
                    fwd_name(d.fwd),
                    weight
                );
            }
        }
    }
}

/// `-L` of the whole table: header with the connection table size, column
/// titles, then every service and its servers.
pub fn list_all(model: &Model, o: &ListOpts, conn_tab_size: u32) -> String {
    let f = Format::of(o);
    let mut out = format!("IP Virtual Server version {IPVS_VERSION} (size={conn_tab_size})\n");
    push_title(&mut out, f);
    for s in ordered_services(model, o.nosort) {
        push_service(&mut out, model, s, f, o);
    }
    out
}

/// `-L` of one service: column titles and the service (no version
/// header, as ipvsadm).
pub fn list_service(model: &Model, key: &SvcKey, o: &ListOpts) -> Result<String, ConfigError> {
    let s = model.service(key).ok_or(ConfigError::NoSuchService)?;
    let f = Format::of(o);
    let mut out = String::new();
    push_title(&mut out, f);
    push_service(&mut out, model, s, f, o);
    Ok(out)
}

fn push_rules(out: &mut String, s: &Service) {
    let svc = svc_rule(&s.key);
    // ipvsadm 1.31's order: -p [-M], then -o, then -b.
    let _ = write!(out, "-A {svc} -s {}", s.sched);
    if let Some(t) = s.persistence {
        let _ = write!(out, " -p {t}");
        if let Some(m) = mask_text(s) {
            let _ = write!(out, " -M {m}");
        }
    }
    if s.ops {
        out.push_str(" -o");
    }
    if s.flags & ALL_SCHED_FLAGS != 0 {
        let _ = write!(out, " -b {}", sched_flags(&s.sched, s.flags));
    }
    push_check_rules(out, &s.check);
    if let Some(q) = s.quorum.weight {
        let _ = write!(out, " --quorum {q}");
    }
    if let Some(at) = s.quorum.sorry {
        let _ = write!(out, " --sorry-server {}", addr_port(at.ip(), at.port()));
    }
    out.push('\n');
    for d in ordered_dests(s, false) {
        let _ = write!(
            out,
            "-a {svc} -r {} {} -w {}",
            addr_port(d.addr, d.port),
            fwd_switch(d.fwd),
            d.weight
        );
        if d.u_threshold != 0 {
            let _ = write!(out, " -x {}", d.u_threshold);
        }
        if d.l_threshold != 0 {
            let _ = write!(out, " -y {}", d.l_threshold);
        }
        if d.fwd == Fwd::Tun {
            let _ = write!(out, " --tun-type {}", d.tun.kind.name());
            if d.tun.kind == TunType::Gue {
                let _ = write!(out, " --tun-port {}", d.tun.port);
            }
            // gue and gre always name their checksum option (ipvsadm
            // writes --tun-nocsum too); ipip has none.
            if d.tun.kind != TunType::Ipip {
                let _ = write!(out, " {}", d.tun.csum.option());
            }
        }
        push_check_rules(out, &d.check);
        out.push('\n');
    }
}

/// How long ago `since` (Unix seconds) was, in two units at most:
/// `45s`, `2m05s`, `3h07m`, `12d04h`; `-` when unknown.
pub fn age(now: u64, since: u64) -> String {
    if since == 0 {
        return "-".into();
    }
    let t = now.saturating_sub(since);
    match t {
        0..=59 => format!("{t}s"),
        60..=3599 => format!("{}m{:02}s", t / 60, t % 60),
        3600..=86_399 => format!("{}h{:02}m", t / 3600, t % 3600 / 60),
        _ => format!("{}d{:02}h", t / 86_400, t % 86_400 / 3600),
    }
}

/// A probe duration in microseconds as milliseconds: `1.204ms`.
pub fn latency(us: u64) -> String {
    format!("{}.{:03}ms", us / 1000, us % 1000)
}

const CHECK_TITLE: &str = "Prot LocalAddress:Port Quorum\n  -> RemoteAddress:Port           Check  State    Weight Config For       Latency    Last\n";

/// One service of `-L --check`: its quorum line, then every real server
/// (a removed one too: its weight shows as `-`).
fn push_checks(out: &mut String, model: &Model, s: &Service, nosort: bool, now: u64) {
    let st = model.service_state(s);
    let _ = write!(
        out,
        "{} up {} quorum {}",
        svc_name(&s.key),
        st.up_weight,
        s.quorum.weight()
    );
    if let Some(at) = s.quorum.sorry {
        let _ = write!(out, " sorry {}", addr_port(at.ip(), at.port()));
        // The sorry server stands in exactly while the quorum is lost.
        let in_use = st.up_weight < i64::from(s.quorum.weight());
        if in_use {
            out.push_str(" in-use");
        }
    }
    out.push('\n');
    let mut dests: Vec<_> = st.dests.iter().collect();
    if !nosort {
        dests.sort_by_key(|d| (family(d.dest.addr), addr_bytes(d.dest.addr), d.dest.port));
    }
    for d in dests {
        let weight = if d.removed {
            "-".to_string()
        } else {
            d.weight.to_string()
        };
        let (since, lat, last) = match (d.probe.is_some(), d.status) {
            (false, _) => ("-".into(), "-".into(), "-"),
            (true, None) => ("-".into(), "-".into(), "no result yet"),
            (true, Some(st)) => (
                age(now, st.since),
                latency(st.latency_us),
                if st.last.is_empty() {
                    "-"
                } else {
                    st.last.as_str()
                },
            ),
        };
        let check = d.probe.as_ref().map_or("-", |k| k.spec.kind.name());
        let _ = writeln!(
            out,
            "  -> {:<28} {check:<6} {:<8} {weight:<6} {:<6} {since:<9} {lat:<10} {last}",
            addr_port(d.dest.addr, d.dest.port),
            d.health.name(),
            d.dest.weight,
        );
    }
}

/// `-L --check` of the whole table: every service's quorum line and its
/// real servers' checks. `now` is the time in Unix seconds.
pub fn list_checks_all(model: &Model, nosort: bool, conn_tab_size: u32, now: u64) -> String {
    let mut out = format!("IP Virtual Server version {IPVS_VERSION} (size={conn_tab_size})\n");
    out.push_str(CHECK_TITLE);
    for s in ordered_services(model, nosort) {
        push_checks(&mut out, model, s, nosort, now);
    }
    out
}

/// `-L --check` of one service (no version header).
pub fn list_checks(
    model: &Model,
    key: &SvcKey,
    nosort: bool,
    now: u64,
) -> Result<String, ConfigError> {
    let s = model.service(key).ok_or(ConfigError::NoSuchService)?;
    let mut out = CHECK_TITLE.to_string();
    push_checks(&mut out, model, s, nosort, now);
    Ok(out)
}

/// A value as a rules file holds it: as is when it is one plain word,
/// else in single quotes (a quote inside as `'\\''`), which
/// [`crate::exec`]'s reading of rules undoes.
pub fn quote(v: &str) -> std::borrow::Cow<'_, str> {
    let plain = !v.is_empty()
        && !v
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '\'' | '"' | '\\' | '#'));
    if plain {
        v.into()
    } else {
        format!("'{}'", v.replace('\'', "'\\''")).into()
    }
}

/// The check options given on one level, as `-S` writes them.
fn push_check_rules(out: &mut String, c: &CheckConf) {
    let mut opt = |name: &str, v: Option<String>| {
        if let Some(v) = v {
            let _ = write!(out, " --{name} {}", quote(&v));
        }
    };
    opt("check", c.kind.map(|k| k.name().to_string()));
    opt("check-port", c.port.map(|p| p.to_string()));
    opt("check-path", c.path.clone());
    opt("check-host", c.host.clone());
    opt("check-method", c.method.map(|m| m.name().to_string()));
    opt("check-expect", c.expect.as_ref().map(|e| e.to_string()));
    opt("check-regex", c.regex.clone());
    opt("check-send", c.send.clone());
    opt("check-receive", c.receive.clone());
    opt("check-cmd", c.cmd.clone());
    opt("check-ca", c.ca.clone());
    opt("check-interval", c.interval.map(|v| v.to_string()));
    opt("check-timeout", c.timeout.map(|v| v.to_string()));
    opt("check-rise", c.rise.map(|v| v.to_string()));
    opt("check-fall", c.fall.map(|v| v.to_string()));
    opt("check-on-fail", c.on_fail.map(|f| f.name().to_string()));
}

/// `-S`: the table as rules `-R` reads back, in ipvsadm's sorted order
/// (services and servers alike, as ipvsadm writes them). Restoring rebuilds
/// the same table; like ipvsadm, the servers' list order (which schedulers
/// walk) becomes the reverse of the sorted order.
pub fn save(model: &Model) -> String {
    let mut out = String::new();
    for (triple, mark) in &model.marks {
        if let SvcKey::Addr { proto, vip, port } = triple {
            let _ = writeln!(
                out,
                "--set-mark {mark} {} {}",
                match *proto {
                    17 => "-u",
                    132 => "--sctp-service",
                    _ => "-t",
                },
                addr_port(*vip, *port)
            );
        }
    }
    for s in ordered_services(model, false) {
        push_rules(&mut out, s);
    }
    out
}

/// `-L --timeout`.
pub fn list_timeout(t: &Timeouts) -> String {
    format!(
        "Timeout (tcp tcpfin udp): {} {} {}\n",
        t.tcp, t.tcp_fin, t.udp
    )
}

/// `-L -c` (`templates_only`: `-c --persistent-conn`, templates alone).
pub fn list_conns(conns: &[ConnEntry], templates_only: bool) -> String {
    let mut out = conns_header();
    for c in conns.iter().filter(|c| c.template || !templates_only) {
        push_conn(&mut out, c);
    }
    out
}

/// The two header lines of `-L -c`.
pub fn conns_header() -> String {
    let mut out = String::from("IPVS connection entries\n");
    let _ = writeln!(
        out,
        "pro expire {:<11} {:<18} {:<18} destination",
        "state", "source", "virtual"
    );
    out
}

/// One line of `-L -c`.
pub fn push_conn(out: &mut String, c: &ConnEntry) {
    let expire = format!("{:02}:{:02}", c.expire_secs / 60, c.expire_secs % 60);
    let _ = writeln!(
        out,
        "{:<3} {:<6} {:<11} {:<18} {:<18} {}",
        proto_name(c.proto),
        expire,
        c.state,
        addr_port(c.cip, c.cport),
        addr_port(c.vip, c.vport),
        addr_port(c.dip, c.dport)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// glibc's `inet_ntop`, as ipvsadm prints addresses.
    #[test]
    fn addresses_as_inet_ntop_writes_them() {
        for (addr, text, with_port) in [
            ("198.18.0.1", "198.18.0.1", "198.18.0.1:80"),
            ("2001:2::1", "2001:2::1", "[2001:2::1]:80"),
            (
                "2001:0002:0000:0000:0000:0000:0000:0100",
                "2001:2::100",
                "[2001:2::100]:80",
            ),
            // The first longest run of zero groups is the one compressed...
            (
                "2001:2:0:0:1:0:0:1",
                "2001:2::1:0:0:1",
                "[2001:2::1:0:0:1]:80",
            ),
            ("2001:2:0:1:0:0:0:1", "2001:2:0:1::1", "[2001:2:0:1::1]:80"),
            // ...and a single zero group is not.
            (
                "2001:2:0:1:1:1:1:1",
                "2001:2:0:1:1:1:1:1",
                "[2001:2:0:1:1:1:1:1]:80",
            ),
            ("::", "::", "[::]:80"),
            ("::1", "::1", "[::1]:80"),
            ("::7", "::7", "[::7]:80"),
            ("2001:2::", "2001:2::", "[2001:2::]:80"),
            // IPv4-mapped and IPv4-compatible: the last 32 bits dotted.
            (
                "::ffff:198.18.0.1",
                "::ffff:198.18.0.1",
                "[::ffff:198.18.0.1]:80",
            ),
            ("::c612:1", "::198.18.0.1", "[::198.18.0.1]:80"),
            ("::c612:0", "::198.18.0.0", "[::198.18.0.0]:80"),
            ("::1:c612:1", "::1:c612:1", "[::1:c612:1]:80"),
            (
                "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
                "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
                "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:80",
            ),
        ] {
            let a: IpAddr = addr.parse().unwrap();
            assert_eq!(ip_text(a), text, "{addr}");
            assert_eq!(addr_port(a, 80), with_port, "{addr}");
            assert_eq!(ip_text(a).parse::<IpAddr>().unwrap(), a, "{addr}");
        }
    }
}
