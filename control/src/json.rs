//! `-L --json`: the listings as JSON, for tools.
//!
//! ipvsadm's columns are made for eyes and for `awk`; monitoring code wants
//! exact numbers and named fields instead. This shape is a stable
//! interface: fields are only ever added (bumping nothing), never renamed
//! or removed without raising [`SCHEMA`]. Numbers are exact (counters are
//! 64-bit: consumers in languages with 53-bit numbers should parse them as
//! big integers). Services and servers come in the order `-L` lists them
//! (`--nosort` is honoured). See control/README.md for a full example.
//!
//! ```text
//! -L --json            {"schema":1,"version":"1.2.1","conn_tab_size":N,"services":[Service...]}
//! -L -t VIP:P --json   the same with that one service
//! -L -c --json         {"schema":1,"connections":[Conn...]}
//! -L --timeout --json  {"schema":1,"timeout":{"tcp":N,"tcpfin":N,"udp":N}}
//! -L --daemon --json   {"schema":1,"daemons":[Daemon...]} (crate::syncd::list_daemon_json)
//!
//! Service = {"protocol":"TCP"|"UDP"|"SCTP"|null, "fwmark":N|null,
//!            "family":"inet"|"inet6", "address":"..."|null, "port":N,
//!            "scheduler":"wlc", "sched_flags":["sh-port",...],
//!            "persistent":SECONDS|null, "netmask":PREFIXLEN, "ops":bool,
//!            "stats":Stats, "rates":Rates, "dests":[Dest...],
//!            "quorum":N, "up_weight":N, "sorry_server":null|Sorry}
//! Dest    = {"address":"...", "port":N, "forward":"Route"|"Masq"|"Tunnel",
//!            "weight":N (configured), "effective_weight":N (scheduled),
//!            "in_service":bool (false: removed while down),
//!            "u_threshold":N, "l_threshold":N,
//!            "active_conns":N, "inactive_conns":N, "persistent_conns":N,
//!            "tunnel":null|{"type":"ipip"|"gue"|"gre","port":N,
//!                           "csum":"nocsum"|"csum"|"remcsum"},
//!            "stats":Stats, "rates":Rates,
//!            "check":null|Check, "health":Health}
//! Check   = the resolved check: {"type":"tcp", "port":N (probed),
//!            "vip":null|Addr, "path", "host"|null, "method", "expect",
//!            "regex"|null, "send"|null, "receive"|null, "cmd"|null,
//!            "ca"|null, "interval":SECS, "timeout":SECS, "rise":N,
//!            "fall":N, "on_fail":"inhibit"|"remove"}
//! Health  = {"state":"-"|"UP"|"DOWN"|"RISING"|"FALLING",
//!            "since":UNIXSECS|null, "last":"..."|null,
//!            "latency_us":N|null, "exec_weight":N|null, "transitions":N}
//! Sorry   = {"address":"...", "port":N, "in_use":bool, "stats":Stats}
//! Stats   = {"conns":N,"inpkts":N,"outpkts":N,"inbytes":N,"outbytes":N}
//! Rates   = {"cps":N,"inpps":N,"outpps":N,"inbps":N,"outbps":N}
//! Conn    = {"protocol":"TCP"|"UDP"|"SCTP"|"IP", "template":bool,
//!            "state":"ESTABLISHED", "expire_secs":N,
//!            "client":Addr, "virtual":Addr, "destination":Addr}
//! Addr    = {"address":"...","port":N}
//! ```

use serde::Serialize;
use xvs_config::stats::CounterValues;
use xvs_config::svc::{Fwd, SvcKey};

use crate::grammar::{ListOpts, TunCsum};
use crate::listing::{
    fwd_name, ip_text, ordered_services, proto_name, sched_flags, ConnEntry, IPVS_VERSION,
};
use crate::model::{ConfigError, Dest, DestState, Model, Service, Timeouts};
use crate::rate::Rates;

/// Version of the JSON shape; raised only by an incompatible change.
pub const SCHEMA: u32 = 1;

/// Traffic counters.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct StatsJson {
    /// Connections scheduled.
    pub conns: u64,
    /// Packets in (client to server).
    pub inpkts: u64,
    /// Packets out (server to client; 0 for DR/TUN).
    pub outpkts: u64,
    /// Bytes in.
    pub inbytes: u64,
    /// Bytes out.
    pub outbytes: u64,
}

impl From<CounterValues> for StatsJson {
    fn from(c: CounterValues) -> Self {
        StatsJson {
            conns: c.conns,
            inpkts: c.inpkts,
            outpkts: c.outpkts,
            inbytes: c.inbytes,
            outbytes: c.outbytes,
        }
    }
}

/// Rate estimates (2-second EWMA), per second.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct RatesJson {
    /// Connections per second.
    pub cps: u64,
    /// Packets in per second.
    pub inpps: u64,
    /// Packets out per second.
    pub outpps: u64,
    /// Bytes in per second.
    pub inbps: u64,
    /// Bytes out per second.
    pub outbps: u64,
}

impl From<Rates> for RatesJson {
    fn from(r: Rates) -> Self {
        RatesJson {
            cps: r.cps,
            inpps: r.inpps,
            outpps: r.outpps,
            inbps: r.inbps,
            outbps: r.outbps,
        }
    }
}

/// Tunnel parameters of a `-i` server.
#[derive(Debug, Clone, Serialize)]
pub struct TunnelJson {
    /// `ipip`, `gue` or `gre`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// GUE destination port (0 otherwise).
    pub port: u16,
    /// `nocsum`, `csum` or `remcsum`.
    pub csum: &'static str,
}

/// One real server.
#[derive(Debug, Clone, Serialize)]
pub struct DestJson {
    /// Address.
    pub address: String,
    /// Port.
    pub port: u16,
    /// `Route`, `Masq` or `Tunnel`, as `-L` prints it.
    pub forward: &'static str,
    /// Weight (0: quiesced).
    pub weight: i32,
    /// Upper connection threshold (0: none).
    pub u_threshold: u32,
    /// Lower connection threshold.
    pub l_threshold: u32,
    /// Active connections.
    pub active_conns: u32,
    /// Inactive connections.
    pub inactive_conns: u32,
    /// Persistence templates pointing here.
    pub persistent_conns: u32,
    /// Tunnel parameters (`null` unless forwarding is `Tunnel`).
    pub tunnel: Option<TunnelJson>,
    /// Counters.
    pub stats: StatsJson,
    /// Rates.
    pub rates: RatesJson,
    /// Weight scheduled now (health checks applied).
    pub effective_weight: i32,
    /// Whether the data plane has it (false: removed while down).
    pub in_service: bool,
    /// Its resolved check (`null`: none).
    pub check: Option<CheckJson>,
    /// What its check found.
    pub health: HealthJson,
}

/// A real server's resolved check.
#[derive(Debug, Clone, Serialize)]
pub struct CheckJson {
    /// Check type.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Port probed.
    pub port: u16,
    /// Destination of a `vip` probe.
    pub vip: Option<AddrJson>,
    /// HTTP path.
    pub path: String,
    /// HTTP Host.
    pub host: Option<String>,
    /// HTTP method.
    pub method: &'static str,
    /// Accepted HTTP status codes.
    pub expect: String,
    /// Regular expression of the body or reply.
    pub regex: Option<String>,
    /// Payload sent (escapes as written).
    pub send: Option<String>,
    /// Expected reply text (escapes as written).
    pub receive: Option<String>,
    /// Command of an exec check.
    pub cmd: Option<String>,
    /// CA file of an https check.
    pub ca: Option<String>,
    /// Seconds between probes.
    pub interval: u32,
    /// Seconds a probe may take.
    pub timeout: u32,
    /// Passes in a row to come up.
    pub rise: u32,
    /// Failures in a row to go down.
    pub fall: u32,
    /// `inhibit` or `remove`.
    pub on_fail: &'static str,
}

/// A real server's health.
#[derive(Debug, Clone, Serialize)]
pub struct HealthJson {
    /// `-` (unchecked), `UP`, `DOWN`, `RISING`, `FALLING`.
    pub state: &'static str,
    /// When the state was entered (Unix seconds).
    pub since: Option<u64>,
    /// Last probe's result.
    pub last: Option<String>,
    /// Last probe's duration.
    pub latency_us: Option<u64>,
    /// Weight an exec check set.
    pub exec_weight: Option<i32>,
    /// State changes since the check started.
    pub transitions: u64,
}

/// A service's sorry server.
#[derive(Debug, Clone, Serialize)]
pub struct SorryJson {
    /// Address.
    pub address: String,
    /// Port.
    pub port: u16,
    /// Whether it stands in now (quorum lost).
    pub in_use: bool,
    /// Its counters.
    pub stats: StatsJson,
}

/// One virtual service.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceJson {
    /// `TCP`, `UDP`, `SCTP`; `null` for a firewall-mark service.
    pub protocol: Option<&'static str>,
    /// The mark of a firewall-mark service, else `null`.
    pub fwmark: Option<u32>,
    /// `inet` or `inet6`.
    pub family: &'static str,
    /// Virtual address (`null` for a firewall-mark service).
    pub address: Option<String>,
    /// Virtual port (0: every port, or a firewall-mark service).
    pub port: u16,
    /// Scheduler name.
    pub scheduler: String,
    /// Scheduler flags by name.
    pub sched_flags: Vec<String>,
    /// Persistence timeout in seconds, `null` if not persistent.
    pub persistent: Option<u32>,
    /// Persistence granularity as a prefix length.
    pub netmask: u8,
    /// One-packet scheduling.
    pub ops: bool,
    /// Counters.
    pub stats: StatsJson,
    /// Rates.
    pub rates: RatesJson,
    /// Real servers.
    pub dests: Vec<DestJson>,
    /// Least sum of up servers' weights.
    pub quorum: u32,
    /// Sum of up servers' weights.
    pub up_weight: i64,
    /// Sorry server, if configured.
    pub sorry_server: Option<SorryJson>,
}

#[derive(Serialize)]
struct TableJson<'a> {
    schema: u32,
    version: &'a str,
    conn_tab_size: u32,
    services: Vec<ServiceJson>,
}

fn dest_json(d: &DestState<'_>) -> DestJson {
    let st = d.status;
    DestJson {
        effective_weight: d.weight,
        in_service: !d.removed,
        check: d.probe.as_ref().map(|k| {
            let spec = &k.spec;
            CheckJson {
                kind: spec.kind.name(),
                port: k.port,
                vip: k.vip.map(|(a, p)| AddrJson {
                    address: ip_text(a),
                    port: p,
                }),
                path: spec.path.clone(),
                host: spec.host.clone(),
                method: spec.method.name(),
                expect: spec.expect.to_string(),
                regex: spec.regex.clone(),
                send: spec.send.clone(),
                receive: spec.receive.clone(),
                cmd: spec.cmd.clone(),
                ca: spec.ca.clone(),
                interval: spec.interval,
                timeout: spec.timeout,
                rise: spec.rise,
                fall: spec.fall,
                on_fail: spec.on_fail.name(),
            }
        }),
        health: HealthJson {
            state: d.health.name(),
            since: st.map(|s| s.since).filter(|&t| t != 0),
            last: st.map(|s| s.last.clone()),
            latency_us: st.map(|s| s.latency_us),
            exec_weight: st.and_then(|s| s.weight),
            transitions: st.map_or(0, |s| s.transitions),
        },
        ..plain_dest_json(d.dest)
    }
}

fn plain_dest_json(d: &Dest) -> DestJson {
    DestJson {
        address: ip_text(d.addr),
        port: d.port,
        forward: fwd_name(d.fwd),
        weight: d.weight,
        u_threshold: d.u_threshold,
        l_threshold: d.l_threshold,
        active_conns: d.load.active(),
        inactive_conns: d.load.inactive(),
        persistent_conns: d.load.persist(),
        tunnel: (d.fwd == Fwd::Tun).then(|| TunnelJson {
            kind: d.tun.kind.name(),
            port: d.tun.port,
            csum: match d.tun.csum {
                TunCsum::NoCsum => "nocsum",
                TunCsum::Csum => "csum",
                TunCsum::RemCsum => "remcsum",
            },
        }),
        stats: d.counters.get().into(),
        rates: d.rate.rates().into(),
        effective_weight: d.weight,
        in_service: true,
        check: None,
        health: HealthJson {
            state: "-",
            since: None,
            last: None,
            latency_us: None,
            exec_weight: None,
            transitions: 0,
        },
    }
}

/// The JSON object of one service.
pub fn service_json(model: &Model, s: &Service, nosort: bool) -> ServiceJson {
    let (protocol, fwmark, address) = match s.key {
        SvcKey::Addr { proto, vip, .. } => (Some(proto_name(proto)), None, Some(ip_text(vip))),
        SvcKey::Fwmark { mark, .. } => (None, Some(mark), None),
    };
    let flags = sched_flags(&s.sched, s.flags);
    let st = model.service_state(s);
    let mut dests: Vec<&DestState<'_>> = st.dests.iter().collect();
    if !nosort {
        dests.sort_by_key(|d| (d.dest.addr.is_ipv6(), d.dest.addr, d.dest.port));
    }
    ServiceJson {
        protocol,
        fwmark,
        family: if s.is_v6() { "inet6" } else { "inet" },
        address,
        port: s.port(),
        scheduler: s.sched.clone(),
        sched_flags: if flags.is_empty() {
            Vec::new()
        } else {
            flags.split(',').map(String::from).collect()
        },
        persistent: s.persistence,
        netmask: s.netmask,
        ops: s.ops,
        stats: s.counters.get().into(),
        rates: s.rate.rates().into(),
        dests: dests.into_iter().map(dest_json).collect(),
        quorum: s.quorum.weight(),
        up_weight: st.up_weight,
        sorry_server: s.sorry.as_ref().map(|d| SorryJson {
            address: ip_text(d.addr),
            port: d.port,
            in_use: st.up_weight < i64::from(s.quorum.weight()),
            stats: d.counters.get().into(),
        }),
    }
}

fn to_text<T: Serialize>(v: &T) -> String {
    // Serializing these plain structs cannot fail (no maps with non-string
    // keys, no foreign Serialize impls); fall back to an empty object.
    let mut out = serde_json::to_string(v).unwrap_or_else(|_| "{}".to_string());
    out.push('\n');
    out
}

/// `-L --json`.
pub fn list_all(model: &Model, o: &ListOpts, conn_tab_size: u32) -> String {
    to_text(&TableJson {
        schema: SCHEMA,
        version: IPVS_VERSION,
        conn_tab_size,
        services: ordered_services(model, o.nosort)
            .into_iter()
            .map(|s| service_json(model, s, o.nosort))
            .collect(),
    })
}

/// `-L -t|-u|-f SERVICE --json`.
pub fn list_service(
    model: &Model,
    key: &SvcKey,
    o: &ListOpts,
    conn_tab_size: u32,
) -> Result<String, ConfigError> {
    let s = model.service(key).ok_or(ConfigError::NoSuchService)?;
    Ok(to_text(&TableJson {
        schema: SCHEMA,
        version: IPVS_VERSION,
        conn_tab_size,
        services: vec![service_json(model, s, o.nosort)],
    }))
}

/// An address and port.
#[derive(Debug, Clone, Serialize)]
pub struct AddrJson {
    /// Address.
    pub address: String,
    /// Port.
    pub port: u16,
}

#[derive(Serialize)]
struct ConnJson {
    protocol: &'static str,
    template: bool,
    state: &'static str,
    expire_secs: u64,
    client: AddrJson,
    #[serde(rename = "virtual")]
    vaddr: AddrJson,
    destination: AddrJson,
}

#[derive(Serialize)]
struct ConnsJson {
    schema: u32,
    connections: Vec<ConnJson>,
}

/// `-L -c --json` (`templates_only` with `--persistent-conn`).
pub fn list_conns(conns: &[ConnEntry], templates_only: bool) -> String {
    let a = |address: std::net::IpAddr, port: u16| AddrJson {
        address: ip_text(address),
        port,
    };
    to_text(&ConnsJson {
        schema: SCHEMA,
        connections: conns
            .iter()
            .filter(|c| c.template || !templates_only)
            .map(|c| ConnJson {
                protocol: proto_name(c.proto),
                template: c.template,
                state: c.state,
                expire_secs: c.expire_secs,
                client: a(c.cip, c.cport),
                vaddr: a(c.vip, c.vport),
                destination: a(c.dip, c.dport),
            })
            .collect(),
    })
}

#[derive(Serialize)]
struct TimeoutJson {
    tcp: u32,
    tcpfin: u32,
    udp: u32,
}

#[derive(Serialize)]
struct TimeoutsJson {
    schema: u32,
    timeout: TimeoutJson,
}

/// `-L --timeout --json`.
pub fn list_timeout(t: &Timeouts) -> String {
    to_text(&TimeoutsJson {
        schema: SCHEMA,
        timeout: TimeoutJson {
            tcp: t.tcp,
            tcpfin: t.tcp_fin,
            udp: t.udp,
        },
    })
}
