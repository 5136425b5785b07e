//! The NAT and TUN test topologies, built with the same guards and rules as
//! [`crate::netns::DrLan`] (per-run prefix, 198.18.0.0/15 only, everything
//! inside namespaces created here, removed on drop, recorded in
//! [`crate::netns::RECORD_DIR`] so a killed run is reaped later).
//!
//! * [`NatLan`]: two segments, the director routing between them; the real
//!   servers' default route points at the director, so their replies come
//!   back through it to be translated.
//! * [`TunLan`]: the DR LAN plus a user-space decapsulator (`xvs-decap
//!   decap`) on every real server, since this kernel has no `ipip` module.

use std::net::Ipv4Addr;
use std::ops::Deref;
use std::process::Output;

use crate::netns::{
    add_addr, build, disable_ipv6, exec, plug, run_ok, spawn_ready, sysctl, wait_up, DrLan, Host,
    Netns, Proc, Record,
};

/// The virtual address of the NAT topology's service (client segment).
pub const NAT_VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 100);
/// The director's address on the client segment of the NAT topology.
pub const NAT_DIP_CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 2);
/// The director's address on the server segment of the NAT topology (the
/// real servers' default gateway).
pub const NAT_DIP_SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 1);
/// The name of the TUN device `xvs-decap decap` creates on real servers.
pub const DECAP_DEV: &str = "xdecap0";
/// The default GUE port of [`TunLan`] (`--tun-port`).
pub const GUE_PORT: u16 = 6080;

/// The NAT test network: a client segment and a server segment, each a
/// bridge (both in one switch namespace), the director on both.
///
/// | host     | segment | address            | notes                              |
/// |----------|---------|--------------------|------------------------------------|
/// | client   | client  | 198.18.1.10/24     | no route to the server segment     |
/// | director | client  | 198.18.1.2/24      | VIP 198.18.1.100/32 as second address |
/// | director | server  | 198.18.2.1/24      | same namespace, second interface   |
/// | rs1..rs3 | server  | 198.18.2.11..13/24 | default route via 198.18.2.1       |
///
/// Every veth has one RX and one TX queue and the kernel's default
/// offloads (as in [`DrLan`]); IPv6 is off. The director does not forward in the kernel
/// (`ip_forward` 0): only the data plane may pass packets between the
/// segments, so an untranslated reply never leaks to the client.
#[derive(Debug)]
pub struct NatLan {
    /// The per-run name prefix.
    pub prefix: String,
    /// Namespace holding both bridges.
    pub switch_ns: String,
    /// Bridge of the client segment.
    pub client_bridge: String,
    /// Bridge of the server segment.
    pub server_bridge: String,
    /// The client.
    pub client: Host,
    /// The director's client-side interface (the VIP is on it).
    pub director: Host,
    /// The director's server-side interface (same namespace as `director`).
    pub director_rs: Host,
    /// The real servers rs1, rs2, rs3.
    pub rs: Vec<Host>,
    /// The service address.
    pub vip: Ipv4Addr,
    namespaces: Vec<Netns>,
    _record: Record,
}

impl NatLan {
    /// Builds the network; panics with the failing command if anything
    /// fails (what was created so far is removed while unwinding).
    pub fn new() -> Self {
        build("the NAT LAN", Self::try_build)
    }

    fn try_build(p: &str) -> Result<Self, String> {
        const ROLES: [&str; 6] = ["sw", "cl", "dir", "rs1", "rs2", "rs3"];
        let record = Record::create(p, &ROLES.map(|r| format!("{p}-{r}")));
        let mut namespaces = Vec::new();
        for r in ROLES {
            namespaces.push(Netns::create(&format!("{p}-{r}"))?);
        }
        for ns in &namespaces {
            disable_ipv6(ns.name());
        }
        let switch_ns = format!("{p}-sw");
        let (cbr, sbr) = (format!("{p}-cbr"), format!("{p}-sbr"));
        for br in [&cbr, &sbr] {
            run_ok(&["ip", "-n", &switch_ns, "link", "add", br, "type", "bridge"]);
            run_ok(&["ip", "-n", &switch_ns, "link", "set", br, "up"]);
        }
        let host = |role: &str, ns: &str, iface: String, ip: [u8; 4]| Host {
            role: role.to_owned(),
            ns: format!("{p}-{ns}"),
            port: format!("{iface}p"),
            iface,
            ip: Ipv4Addr::from(ip),
            mac: format!("02:58:56:{:02x}:00:{:02x}", ip[2], ip[3]),
        };
        let client = host("client", "cl", format!("{p}-cl"), [198, 18, 1, 10]);
        let director = host("director", "dir", format!("{p}-dirc"), [198, 18, 1, 2]);
        let director_rs = host("director", "dir", format!("{p}-dirs"), [198, 18, 2, 1]);
        let rs: Vec<Host> = (1..=3u8)
            .map(|i| {
                let r = format!("rs{i}");
                host(&r, &r, format!("{p}-{r}"), [198, 18, 2, 10 + i])
            })
            .collect();
        plug(&switch_ns, &cbr, &client);
        plug(&switch_ns, &cbr, &director);
        plug(&switch_ns, &sbr, &director_rs);
        add_addr(&director.ns, &format!("{NAT_VIP}/32"), &director.iface);
        for h in &rs {
            plug(&switch_ns, &sbr, h);
            run_ok(&[
                "ip",
                "-n",
                &h.ns,
                "route",
                "add",
                "default",
                "via",
                &NAT_DIP_SERVER.to_string(),
            ]);
        }
        let lan = NatLan {
            prefix: p.to_owned(),
            switch_ns,
            client_bridge: cbr,
            server_bridge: sbr,
            client,
            director,
            director_rs,
            rs,
            vip: NAT_VIP,
            namespaces,
            _record: record,
        };
        wait_up(lan.hosts());
        Ok(lan)
    }

    /// Every host interface: client, both director interfaces, rs1..rs3.
    pub fn hosts(&self) -> impl Iterator<Item = &Host> {
        [&self.client, &self.director, &self.director_rs]
            .into_iter()
            .chain(self.rs.iter())
    }

    /// Names of every namespace (switch included).
    pub fn namespace_names(&self) -> Vec<String> {
        self.namespaces
            .iter()
            .map(|n| n.name().to_owned())
            .collect()
    }

    /// Turns the director's kernel IPv4 forwarding on or off (off when
    /// built); for tests that want the kernel, not xvs, to route.
    pub fn set_director_forwarding(&self, on: bool) {
        sysctl(
            &self.director.ns,
            &[("net.ipv4.ip_forward", if on { "1" } else { "0" })],
        );
    }

    /// Runs `cmd` in namespace `ns`.
    pub fn exec(&self, ns: &str, cmd: &[&str]) -> Output {
        exec(ns, cmd)
    }
}

impl Default for NatLan {
    fn default() -> Self {
        Self::new()
    }
}

/// The encapsulation a [`TunLan`]'s real servers decapsulate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TunType {
    /// IP-in-IP (protocol 4).
    Ipip,
    /// GUE on UDP port `port`.
    Gue {
        /// The UDP port (`--tun-port`).
        port: u16,
    },
    /// Plain GRE (protocol 47).
    Gre,
}

impl TunType {
    /// The `--mode` (and `--port`) arguments of `xvs-decap`.
    pub fn decap_args(self) -> Vec<String> {
        match self {
            TunType::Ipip => vec!["--mode".into(), "ipip".into()],
            TunType::Gre => vec!["--mode".into(), "gre".into()],
            TunType::Gue { port } => vec![
                "--mode".into(),
                "gue".into(),
                "--port".into(),
                port.to_string(),
            ],
        }
    }
}

/// The TUN test LAN: the DR LAN ([`DrLan`]: one bridge, the VIP on the
/// director's interface and on the real servers' `lo` with ARP kept quiet),
/// plus, on every real server, `xvs-decap decap` receiving the tunnelled
/// packets addressed to it and handing the inner packets to the kernel
/// through TUN device [`DECAP_DEV`]. Real servers answer the client
/// directly. Reverse-path filtering is off on the real servers (the inner
/// packets arrive on the TUN device, their source is routed elsewhere).
///
/// Dereferences to the [`DrLan`]; the decapsulators stop before the
/// namespaces go.
#[derive(Debug)]
pub struct TunLan {
    /// One decapsulator per real server, in `rs` order (declared first:
    /// dropped first).
    decaps: Vec<Proc>,
    /// The encapsulation.
    pub tun: TunType,
    /// The underlying DR LAN.
    pub lan: DrLan,
}

impl TunLan {
    /// Builds the DR LAN and starts a decapsulator on every real server;
    /// panics if one does not get ready.
    pub fn new(tun: TunType) -> Self {
        let lan = DrLan::new();
        let bin = crate::bin("xvs-decap");
        let bin = bin.to_string_lossy();
        let mut decaps = Vec::new();
        for h in &lan.rs {
            sysctl(
                &h.ns,
                &[
                    ("net.ipv4.conf.all.rp_filter", "0"),
                    ("net.ipv4.conf.default.rp_filter", "0"),
                ],
            );
            let mut cmd: Vec<String> = vec![bin.to_string(), "decap".into(), "--dev".into()];
            cmd.push(DECAP_DEV.into());
            cmd.extend(tun.decap_args());
            let cmd: Vec<&str> = cmd.iter().map(String::as_str).collect();
            decaps.push(spawn_ready(&h.ns, &cmd));
        }
        TunLan { decaps, tun, lan }
    }

    /// Packets real server `i` (0-based) has decapsulated so far (received
    /// by its kernel on [`DECAP_DEV`]).
    pub fn decapsulated(&self, i: usize) -> u64 {
        let h = &self.lan.rs[i];
        let out = exec(
            &h.ns,
            &[
                "cat",
                &format!("/sys/class/net/{DECAP_DEV}/statistics/rx_packets"),
            ],
        );
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0)
    }

    /// Whether every decapsulator still runs.
    pub fn decaps_running(&mut self) -> bool {
        self.decaps.iter_mut().all(Proc::is_running)
    }
}

impl Deref for TunLan {
    type Target = DrLan;
    fn deref(&self) -> &DrLan {
        &self.lan
    }
}
