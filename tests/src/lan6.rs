//! IPv6 on the test LANs. The LANs come up with IPv6 off (no router
//! solicitations or MLD reports on the wire); an IPv6 test turns it on
//! here, with addresses from 2001:2::/48 only (the IPv6 benchmarking
//! range, RFC 5180) and duplicate address detection off, so that every
//! address is usable at once and no test waits for DAD.

use crate::lans::{NatLan, TunLan, DECAP_DEV};
use crate::netns::{exec_ok, sysctl, DrLan, Host};
use std::net::Ipv6Addr;

/// The IPv6 VIP of the DR LAN: 2001:2::100.
pub const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0x100);
/// The IPv6 VIP of the NAT LAN, on its client segment: 2001:2:1::100.
pub const NAT_VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 1, 0, 0, 0, 0, 0x100);
/// Prefix length of the LANs' IPv6 subnet (2001:2::/64).
pub const LAN6_PREFIX_LEN: u8 = 64;

/// The IPv6 address of host `h`, written like its IPv4 one: the subnet
/// 2001:2:S::/64 for 198.18.S.0/24, and the host's last decimal digits
/// read as hex (198.18.0.11 → 2001:2::11, 198.18.2.1 → 2001:2:2::1).
pub fn addr6(h: &Host) -> Ipv6Addr {
    let o = h.ip.octets();
    let hex = |b: u8| u16::from_str_radix(&b.to_string(), 16).expect("decimal digits are hex");
    Ipv6Addr::new(0x2001, 2, hex(o[2]), 0, 0, 0, 0, hex(o[3]))
}

/// `[addr]:port`, as ipvsadm and sockets write an IPv6 endpoint.
pub fn endpoint6(addr: Ipv6Addr, port: u16) -> String {
    format!("[{addr}]:{port}")
}

/// Turn IPv6 on for `h`'s namespace (its interface and `lo`), without
/// DAD or router advertisements, and give its interface [`addr6`]`/64`.
pub fn enable_ipv6(h: &Host) {
    let mut settings = Vec::new();
    for dev in ["all", "default", "lo", h.iface.as_str()] {
        settings.push((format!("net.ipv6.conf.{dev}.accept_dad"), "0"));
        settings.push((format!("net.ipv6.conf.{dev}.accept_ra"), "0"));
        settings.push((format!("net.ipv6.conf.{dev}.disable_ipv6"), "0"));
    }
    let s: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    sysctl(&h.ns, &s);
    add6(h, &format!("{}/{LAN6_PREFIX_LEN}", addr6(h)), &h.iface);
}

/// Add IPv6 address `cidr` to `dev` in `h`'s namespace, without DAD.
pub fn add6(h: &Host, cidr: &str, dev: &str) {
    exec_ok(
        &h.ns,
        &["ip", "-6", "addr", "add", cidr, "dev", dev, "nodad"],
    );
}

/// Add a VIP (`cidr`) to the director's `dev`, deprecated (preferred
/// lifetime 0): it still answers for it, but never picks it as the source
/// of its own packets. Else source selection would prefer the /128 VIP
/// (its whole length matches) and the director would solicit its real
/// servers from an address they hold themselves, so their answers would
/// never leave them.
pub fn add_vip6(h: &Host, cidr: &str, dev: &str) {
    exec_ok(
        &h.ns,
        &[
            "ip",
            "-6",
            "addr",
            "add",
            cidr,
            "dev",
            dev,
            "nodad",
            "preferred_lft",
            "0",
        ],
    );
}

/// Stop bridge `bridge` (in `switch_ns`) from snooping multicast: it then
/// floods neighbour solicitations to every port instead of only to those
/// whose MLD reports it has seen, so a host's new address is found at
/// once (a report still on its way would otherwise delay the first
/// solicitation past a test client's patience).
pub fn flood_multicast(switch_ns: &str, bridge: &str) {
    crate::netns::run_ok(&[
        "ip",
        "-n",
        switch_ns,
        "link",
        "set",
        bridge,
        "type",
        "bridge",
        "mcast_snooping",
        "0",
    ]);
}

/// Resolve the neighbours `to` from `from` (one ping each, each waiting
/// up to 3 s for its neighbour discovery and echo): the kernel's NDP
/// table then holds them, as a director's holds its real servers after
/// the first exchange, and xvsd reads them when the servers are added.
/// NDP's first solicitation can take over a second here, longer than a
/// test client's first connection waits.
pub fn resolve6(from: &Host, to: &[Ipv6Addr]) {
    for a in to {
        exec_ok(
            &from.ns,
            &["ping", "-6", "-c", "1", "-W", "3", &a.to_string()],
        );
    }
}

impl DrLan {
    /// Give the client extra IPv6 addresses (no DAD; the real servers
    /// resolve them at once) and make its new connections to `dst` leave
    /// from `src` (a host route with a preferred source): one client
    /// namespace plays several clients.
    pub fn client_source6(&self, dst: Ipv6Addr, src: Ipv6Addr) {
        let c = &self.client;
        let have = exec_ok(&c.ns, &["ip", "-6", "addr", "show", "dev", &c.iface]);
        if !have.contains(&format!("{src}/")) {
            add6(c, &format!("{src}/128"), &c.iface);
            // The servers learn the new address before they answer it: a
            // server's first solicitation for a client, when a reply from
            // the VIP triggers it, took over a second on these LANs (a
            // test client's first connection gives up after two).
            for h in &self.rs {
                resolve6(h, &[src]);
            }
        }
        exec_ok(
            &c.ns,
            &[
                "ip",
                "-6",
                "route",
                "replace",
                &format!("{dst}/128"),
                "dev",
                &c.iface,
                "src",
                &src.to_string(),
            ],
        );
    }

    /// Turn IPv6 on for every host of the LAN ([`enable_ipv6`]) and put
    /// [`VIP6`] on the director's interface (it answers neighbour
    /// solicitations for it) and, on every real server, a local route for
    /// it on `lo` (they take DR frames for it): a route, not an address,
    /// so that a server never solicits a neighbour from the VIP (Linux
    /// takes a packet's own source for the solicitation its first packet
    /// triggers when that source is one of its addresses), which would
    /// make the client send to the server's MAC instead of the director's
    /// from then on: IPv6's counterpart of IPv4's `arp_announce`. The
    /// director and the servers resolve each other and the client
    /// ([`resolve6`]). The bridge floods
    /// multicast ([`flood_multicast`]).
    pub fn enable_ipv6(&self) {
        flood_multicast(&self.switch_ns, &self.bridge);
        for h in self.hosts() {
            enable_ipv6(h);
        }
        let vip = format!("{VIP6}/128");
        add_vip6(&self.director, &vip, &self.director.iface);
        for h in &self.rs {
            exec_ok(
                &h.ns,
                &["ip", "-6", "route", "add", "local", &vip, "dev", "lo"],
            );
        }
        let rs: Vec<Ipv6Addr> = self.rs.iter().map(addr6).collect();
        resolve6(&self.director, &rs);
        for h in &self.rs {
            resolve6(h, &[addr6(&self.client)]);
        }
    }
}

impl NatLan {
    /// Turn IPv6 on for every host of the network ([`enable_ipv6`]: the
    /// client segment is 2001:2:1::/64, the server segment 2001:2:2::/64),
    /// put [`NAT_VIP6`] on the director's client-side interface and route
    /// the real servers through the director's server-side address. The
    /// director's kernel does not forward IPv6 (a new namespace's
    /// default): only the data plane passes packets between the segments.
    /// The director resolves the servers ([`resolve6`]).
    pub fn enable_ipv6(&self) {
        for br in [&self.client_bridge, &self.server_bridge] {
            flood_multicast(&self.switch_ns, br);
        }
        for h in self.hosts() {
            enable_ipv6(h);
        }
        add_vip6(
            &self.director,
            &format!("{NAT_VIP6}/128"),
            &self.director.iface,
        );
        let gw = addr6(&self.director_rs).to_string();
        for h in &self.rs {
            exec_ok(&h.ns, &["ip", "-6", "route", "add", "default", "via", &gw]);
        }
        sysctl(&self.director.ns, &[("net.ipv6.conf.all.forwarding", "0")]);
        let rs: Vec<Ipv6Addr> = self.rs.iter().map(addr6).collect();
        resolve6(&self.director_rs, &rs);
    }
}

impl TunLan {
    /// [`DrLan::enable_ipv6`], and IPv6 on every real server's
    /// decapsulating device (made while IPv6 was still off), so that the
    /// IPv6 packets it hands the kernel are taken.
    pub fn enable_ipv6(&self) {
        self.lan.enable_ipv6();
        let dev = format!("net.ipv6.conf.{DECAP_DEV}.disable_ipv6");
        for h in &self.lan.rs {
            sysctl(&h.ns, &[(&dev, "0")]);
        }
    }
}
