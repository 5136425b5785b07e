//! The connection sync daemons as the control plane shows them: `-L
//! --daemon` byte for byte as ipvsadm prints it, its `--stats` and
//! `--json` extensions, and the lines that restart them from xvsd's state
//! file.
//!
//! ipvsadm prints what the kernel reports, and the kernel fills in every
//! option left out when the daemon starts; so the listing shows the
//! defaults too (`maxlen=1472, group=224.0.0.81, port=8848, ttl=1`). The
//! payload size of a backup depends on its interface's MTU, which only the
//! running daemon knows: it comes from the [`SyncStatus`] the runtime
//! reports, and from the kernel's rule for a 1500-byte MTU otherwise.

use std::fmt::Write as _;
use std::net::IpAddr;

use serde::Serialize;
use xvs_config::sync::{DEFAULT_GROUP, DEFAULT_PORT, DEFAULT_TTL};
use xvs_config::{SyncDaemonConf, SyncRole};

use crate::model::Model;

/// A running sync daemon as xvsd reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncStatus {
    /// Master or backup.
    pub role: SyncRole,
    /// The payload size in effect.
    pub maxlen: u16,
    /// The daemon's counters, by name (datagrams, records, drops by
    /// reason, the data plane's emitted/installed/rejected counts).
    pub counters: Vec<(&'static str, u64)>,
    /// Counters per peer: a backup's senders, a master's resync
    /// requesters.
    pub peers: Vec<SyncPeer>,
}

/// One peer of a sync daemon and its counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncPeer {
    /// The peer's source address.
    pub addr: IpAddr,
    /// Its counters, by name.
    pub counters: Vec<(&'static str, u64)>,
}

/// A daemon's settings with the kernel's defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Effective {
    /// `master` or `backup`.
    pub state: &'static str,
    /// Interface.
    pub mcast_interface: String,
    /// Sync id.
    pub syncid: u8,
    /// Payload size.
    pub maxlen: u16,
    /// Multicast group.
    pub group: IpAddr,
    /// UDP port.
    pub port: u16,
    /// Multicast TTL.
    pub ttl: u8,
}

/// `conf` with the kernel's defaults, the payload size from `status` if
/// the daemon runs (else the kernel's rule for a 1500-byte MTU).
pub fn effective(conf: &SyncDaemonConf, status: Option<&SyncStatus>) -> Effective {
    let group = conf.group.unwrap_or(IpAddr::V4(DEFAULT_GROUP));
    let v6 = group.is_ipv6();
    let maxlen = match (status, conf.role) {
        (Some(s), _) => s.maxlen,
        (None, SyncRole::Master) => xvs_sync::master_maxlen(conf.maxlen, v6),
        (None, SyncRole::Backup) => xvs_sync::backup_maxlen(conf.maxlen, 1500, v6),
    };
    Effective {
        state: conf.role.name(),
        mcast_interface: conf.iface.clone(),
        syncid: conf.syncid,
        maxlen,
        group,
        port: conf.port.unwrap_or(DEFAULT_PORT),
        ttl: conf.ttl.unwrap_or(DEFAULT_TTL),
    }
}

fn status_of(status: &[SyncStatus], role: SyncRole) -> Option<&SyncStatus> {
    status.iter().find(|s| s.role == role)
}

/// `-L --daemon`: one line per running daemon, master first; nothing when
/// none runs. With `stats` (an xvs extension) each line is followed by the
/// daemon's counters and its peers', indented.
pub fn list_daemon(model: &Model, status: &[SyncStatus], stats: bool) -> String {
    let mut out = String::new();
    for conf in &model.sync_daemons {
        let st = status_of(status, conf.role);
        let e = effective(conf, st);
        let _ = writeln!(
            out,
            "{} sync daemon (mcast={}, syncid={}, maxlen={}, group={}, port={}, ttl={})",
            e.state, e.mcast_interface, e.syncid, e.maxlen, e.group, e.port, e.ttl
        );
        if !stats {
            continue;
        }
        let Some(st) = st else {
            continue;
        };
        for (name, v) in &st.counters {
            let _ = writeln!(out, "  {name:<24} {v}");
        }
        for p in &st.peers {
            let _ = writeln!(out, "  peer {}", p.addr);
            for (name, v) in &p.counters {
                let _ = writeln!(out, "    {name:<22} {v}");
            }
        }
    }
    out
}

#[derive(Serialize)]
struct PeerJson {
    address: IpAddr,
    counters: std::collections::BTreeMap<&'static str, u64>,
}

#[derive(Serialize)]
struct DaemonJson {
    #[serde(flatten)]
    settings: Effective,
    counters: std::collections::BTreeMap<&'static str, u64>,
    peers: Vec<PeerJson>,
}

#[derive(Serialize)]
struct DaemonsJson {
    schema: u32,
    daemons: Vec<DaemonJson>,
}

/// `-L --daemon --json`: `{"schema":1,"daemons":[{"state":"master",
/// "mcast_interface":"eth0","syncid":0,"maxlen":1472,"group":"224.0.0.81",
/// "port":8848,"ttl":1,"counters":{NAME:N,...},"peers":[{"address":"...",
/// "counters":{...}}]}]}`.
pub fn list_daemon_json(model: &Model, status: &[SyncStatus]) -> String {
    let daemons = model
        .sync_daemons
        .iter()
        .map(|conf| {
            let st = status_of(status, conf.role);
            DaemonJson {
                settings: effective(conf, st),
                counters: st
                    .map(|s| s.counters.iter().copied().collect())
                    .unwrap_or_default(),
                peers: st
                    .map(|s| {
                        s.peers
                            .iter()
                            .map(|p| PeerJson {
                                address: p.addr,
                                counters: p.counters.iter().copied().collect(),
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            }
        })
        .collect();
    let mut s = serde_json::to_string(&DaemonsJson {
        schema: crate::json::SCHEMA,
        daemons,
    })
    .unwrap_or_default();
    s.push('\n');
    s
}

/// The `--start-daemon` command that starts `conf` again (for xvsd's
/// state file; `-S` does not save daemons, as ipvsadm).
pub fn start_line(conf: &SyncDaemonConf) -> String {
    let mut s = format!(
        "--start-daemon {} --mcast-interface {} --syncid {}",
        conf.role.name(),
        conf.iface,
        conf.syncid
    );
    if let Some(m) = conf.maxlen {
        let _ = write!(s, " --sync-maxlen {m}");
    }
    if let Some(g) = conf.group {
        let _ = write!(s, " --mcast-group {g}");
    }
    if let Some(p) = conf.port {
        let _ = write!(s, " --mcast-port {p}");
    }
    if let Some(t) = conf.ttl {
        let _ = write!(s, " --mcast-ttl {t}");
    }
    s
}
