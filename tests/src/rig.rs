//! The pieces end-to-end tests assemble before they check anything: the
//! same servers on every real server, a rules file over them, xvsd's
//! arguments. Written once here, so that each test reads as what it
//! checks and a change of how servers start is made in one place.

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use crate::netns::{Host, Proc};
use crate::node::Lines;

/// `xvs-node serve --name ROLE --port PORT EXTRA...` on `h` (answering
/// with its role name), once it is ready.
pub fn serve(h: &Host, port: u16, extra: &[&str]) -> Proc {
    let node = crate::bin("xvs-node");
    let node = node.to_string_lossy();
    let port = port.to_string();
    let mut cmd = vec![&*node, "serve", "--name", &h.role, "--port", &port];
    cmd.extend_from_slice(extra);
    h.spawn_ready(&cmd)
}

/// [`serve`] on each of `hosts`, in order.
pub fn serve_on(hosts: &[Host], port: u16, extra: &[&str]) -> Vec<Proc> {
    hosts.iter().map(|h| serve(h, port, extra)).collect()
}

/// `xvs-stream serve --port PORT --lifetime-s LIFETIME_S` (the echo
/// server of long-lived streams) on each of `hosts`, in order.
pub fn stream_on(hosts: &[Host], port: u16, lifetime_s: u64) -> Vec<Proc> {
    let stream = crate::bin("xvs-stream");
    let stream = stream.to_string_lossy();
    let (port, lifetime) = (port.to_string(), lifetime_s.to_string());
    hosts
        .iter()
        .map(|h| h.spawn_ready(&[&stream, "serve", "--port", &port, "--lifetime-s", &lifetime]))
        .collect()
}

/// A rules text (as `--config` and `-R` take it): service `svc` with
/// scheduler `sched`, then every one of `hosts` on `port`, forwarded by
/// `method` (`-g`, `-m`, `-i`) with weight 1.
pub fn rules(svc: &str, sched: &str, hosts: &[Host], port: u16, method: &str) -> String {
    let mut r = format!("-A -t {svc} -s {sched}\n");
    for h in hosts {
        r.push_str(&format!("-a -t {svc} -r {}:{port} {method} -w 1\n", h.ip));
    }
    r
}

/// xvsd's arguments: `--iface` for each of `ifaces`, then `--config` and
/// `--conn-max` when given.
pub fn xvsd_args(ifaces: &[&str], config: Option<&Path>, conn_max: Option<u64>) -> Vec<String> {
    let mut args = Vec::new();
    for i in ifaces {
        args.extend(["--iface".to_owned(), (*i).to_owned()]);
    }
    if let Some(c) = config {
        args.extend(["--config".to_owned(), c.display().to_string()]);
    }
    if let Some(n) = conn_max {
        args.extend(["--conn-max".to_owned(), n.to_string()]);
    }
    args
}

/// `xvs-stream client` in namespace `ns`: `conns` long-lived streams to
/// `target`, a `size`-byte line every 50 ms each for `duration_ms`, every
/// echo checked byte for byte and due within `timeout_ms`; returned once
/// all are connected (at most 10 s, or it panics).
pub fn start_streams(
    ns: &str,
    target: &str,
    conns: u64,
    duration_ms: u64,
    size: u64,
    timeout_ms: u64,
) -> Lines {
    let stream = crate::bin("xvs-stream");
    let stream = stream.to_string_lossy();
    let (conns, ms) = (conns.to_string(), duration_ms.to_string());
    let (size, timeout) = (size.to_string(), timeout_ms.to_string());
    let s = Lines::spawn(
        ns,
        &[
            &stream,
            "client",
            "--connect",
            target,
            "--conns",
            &conns,
            "--duration-ms",
            &ms,
            "--interval-ms",
            "50",
            "--size",
            &size,
            "--timeout-ms",
            &timeout,
        ],
    );
    match s.next_line(Duration::from_secs(10)) {
        Some(l) if l == "connected" => s,
        other => panic!("the streams did not connect: {other:?}"),
    }
}

/// A paced flood of spoofed SYNs (`xvs-synflood`) sent from `from`'s
/// interface and MAC in frames to `dst_mac`, for `vip:port`.
#[derive(Debug, Clone, Copy)]
pub struct SynFlood<'a> {
    /// The sending host.
    pub from: &'a Host,
    /// The frames' destination MAC.
    pub dst_mac: &'a str,
    /// The SYNs' destination address.
    pub vip: Ipv4Addr,
    /// The SYNs' destination port.
    pub port: u16,
    /// How many SYNs at most (`--count`).
    pub count: u64,
    /// For how long at most (`--secs`).
    pub secs: u64,
    /// SYNs a second (`--rate`).
    pub rate: u64,
}

impl SynFlood<'_> {
    /// The command line, the program's path first.
    fn cmd(&self) -> Vec<String> {
        let flood = crate::bin("xvs-synflood");
        let from = self.from;
        [
            &flood.to_string_lossy(),
            "--iface",
            &from.iface,
            "--src-mac",
            &from.mac,
            "--dst-mac",
            self.dst_mac,
            "--vip",
            &self.vip.to_string(),
            "--port",
            &self.port.to_string(),
            "--count",
            &self.count.to_string(),
            "--secs",
            &self.secs.to_string(),
            "--rate",
            &self.rate.to_string(),
        ]
        .map(str::to_owned)
        .to_vec()
    }

    /// Sends the flood and returns the flooder's output once it is done.
    pub fn run(&self) -> Output {
        let cmd = self.cmd();
        let cmd: Vec<&str> = cmd.iter().map(String::as_str).collect();
        self.from.exec(&cmd)
    }

    /// Starts the flood in the background; its report comes as lines.
    pub fn spawn(&self) -> Lines {
        let cmd = self.cmd();
        let cmd: Vec<&str> = cmd.iter().map(String::as_str).collect();
        Lines::spawn(&self.from.ns, &cmd)
    }
}

/// One ping from `from` to each of `hosts`, so that `from`'s kernel (and
/// the xvsd that mirrors it) knows their MACs before the first SYN.
pub fn resolve(from: &Host, hosts: &[Host]) {
    for h in hosts {
        from.exec_ok(&["ping", "-c", "1", "-W", "2", &h.ip.to_string()]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(role: &str, ip: [u8; 4]) -> Host {
        Host {
            role: role.into(),
            ns: format!("t-{role}"),
            iface: format!("t-{role}"),
            port: format!("t-{role}p"),
            ip: ip.into(),
            mac: "02:00:00:00:00:01".into(),
        }
    }

    #[test]
    fn rules_list_the_service_then_every_server() {
        let hosts = [host("rs1", [198, 18, 0, 11]), host("rs2", [198, 18, 0, 12])];
        assert_eq!(
            rules("198.18.0.100:80", "wlc", &hosts, 8080, "-m"),
            "-A -t 198.18.0.100:80 -s wlc\n\
             -a -t 198.18.0.100:80 -r 198.18.0.11:8080 -m -w 1\n\
             -a -t 198.18.0.100:80 -r 198.18.0.12:8080 -m -w 1\n"
        );
    }

    #[test]
    fn xvsd_args_keep_their_order() {
        assert_eq!(
            xvsd_args(&["a", "b"], Some(Path::new("/tmp/r")), Some(3)),
            [
                "--iface",
                "a",
                "--iface",
                "b",
                "--config",
                "/tmp/r",
                "--conn-max",
                "3"
            ]
        );
        assert_eq!(xvsd_args(&["a"], None, None), ["--iface", "a"]);
    }
}
