//! Persistence end to end (the set-ups of the LVS persistence tutorial, in
//! 198.18.0.0/15): one client lands on one real server across its
//! connections (and, for a port-0 service, across ports), other clients
//! spread, and a short-lived template lets the client be scheduled afresh
//! once it expired and its connections ended.

use std::net::Ipv4Addr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use xvs_tests::daemon::Xvsd;
use xvs_tests::netns::{DrLan, VIP};
use xvs_tests::node::{ClientSummary, Clients};
use xvs_tests::rig;

const NODE: &str = env!("CARGO_BIN_EXE_xvs-node");

static NET: Mutex<()> = Mutex::new(());

fn net_lock() -> MutexGuard<'static, ()> {
    NET.lock().unwrap_or_else(|e| e.into_inner())
}

fn client(lan: &DrLan, port: u16, count: u64) -> ClientSummary {
    Clients::new(3000, 60_000, 5).run(&lan.client.ns, &format!("{VIP}:{port}"), count)
}

/// The one server that answered every request of `s`.
fn only_server(s: &ClientSummary) -> String {
    assert_eq!(s.failed, 0, "{s:?}");
    assert_eq!(s.counts.len(), 1, "one client, one server: {s:?}");
    s.counts.keys().next().cloned().unwrap_or_default()
}

fn serve(lan: &DrLan, ports: &[u16]) -> Vec<xvs_tests::netns::Proc> {
    let mut v = Vec::new();
    for h in &lan.rs {
        for p in ports {
            v.push(rig::serve(h, *p, &[]));
        }
    }
    v
}

fn others() -> Vec<Ipv4Addr> {
    (20..25).map(|i| Ipv4Addr::new(198, 18, 0, i)).collect()
}

#[test]
fn persistent_port_keeps_each_client_on_one_server_and_clients_spread() {
    let _g = net_lock();
    let lan = DrLan::new();
    let _servers = serve(&lan, &[80]);
    lan.add_client_addrs(&others());
    let xvsd = Xvsd::start(&lan.director.ns, &[&lan.director.iface]);
    let svc = format!("{VIP}:80");
    xvsd.adm_ok(&["-A", "-t", &svc, "-s", "rr", "-p", "360"]);
    for h in &lan.rs {
        xvsd.adm_ok(&["-a", "-t", &svc, "-r", &h.ip.to_string(), "-g"]);
    }
    let listing = xvsd.adm_ok(&["-Ln"]);
    assert!(
        listing.contains(&format!("TCP  {svc} rr persistent 360")),
        "{listing}"
    );

    let mut seen = std::collections::BTreeSet::new();
    let first = only_server(&client(&lan, 80, 20));
    seen.insert(first.clone());
    for a in others() {
        lan.client_source(VIP, Some(a));
        let s = only_server(&client(&lan, 80, 4));
        seen.insert(s);
    }
    lan.client_source(VIP, None);
    assert_eq!(
        only_server(&client(&lan, 80, 5)),
        first,
        "the first client still sticks"
    );
    assert_eq!(
        seen.len(),
        3,
        "six clients spread over the three servers: {seen:?}"
    );

    // Templates are listed (-c) and counted (PersistConn).
    let conns = xvsd.adm_ok(&["-Lnc"]);
    let templates = conns
        .lines()
        .filter(|l| l.contains(" NONE ") && l.contains(":0 "))
        .count();
    assert_eq!(templates, 6, "one template per client:\n{conns}");
    let pc = xvsd.adm_ok(&["-Ln", "--persistent-conn"]);
    let persist: u64 = pc
        .lines()
        .filter(|l| l.trim_start().starts_with("->") && !l.contains("RemoteAddress"))
        .filter_map(|l| l.split_whitespace().nth(3)?.parse::<u64>().ok())
        .sum();
    assert_eq!(persist, 6, "PersistConn adds up to the templates:\n{pc}");
    drop(xvsd);
}

#[test]
fn port_zero_service_keeps_a_client_on_one_server_across_ports() {
    let _g = net_lock();
    let lan = DrLan::new();
    let _servers = serve(&lan, &[80, 8080]);
    lan.add_client_addrs(&others());
    let xvsd = Xvsd::start(&lan.director.ns, &[&lan.director.iface]);
    let svc = format!("{VIP}:0");
    xvsd.adm_ok(&["-A", "-t", &svc, "-s", "rr", "-p"]);
    for h in &lan.rs {
        xvsd.adm_ok(&["-a", "-t", &svc, "-r", &h.ip.to_string(), "-g"]);
    }
    let a = only_server(&client(&lan, 80, 5));
    assert_eq!(
        only_server(&client(&lan, 8080, 5)),
        a,
        "port 8080 follows port 80"
    );
    assert_eq!(only_server(&client(&lan, 80, 3)), a);
    lan.client_source(VIP, Some(others()[0]));
    let b = only_server(&client(&lan, 8080, 5));
    assert_eq!(only_server(&client(&lan, 80, 5)), b);
    assert_ne!(a, b, "the next client is scheduled to the next server");
    drop(xvsd);
}

#[test]
fn short_template_lets_the_client_move_once_it_expired_and_its_connections_ended() {
    let _g = net_lock();
    let lan = DrLan::new();
    let _servers = serve(&lan, &[80]);
    let xvsd = Xvsd::start(&lan.director.ns, &[&lan.director.iface]);
    // FIN_WAIT 2 s, so closed connections go quickly.
    xvsd.adm_ok(&["--set", "900", "2", "300"]);
    let svc = format!("{VIP}:80");
    xvsd.adm_ok(&["-A", "-t", &svc, "-s", "rr", "-p", "2"]);
    for h in &lan.rs {
        xvsd.adm_ok(&["-a", "-t", &svc, "-r", &h.ip.to_string(), "-g"]);
    }
    let first = only_server(&client(&lan, 80, 3));
    // While its connections live the template stays, past its 2 s.
    assert!(xvsd.adm_ok(&["-Lnc"]).contains(" NONE "), "template listed");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let c = xvsd.adm_ok(&["-Lnc"]);
        if c.lines().count() <= 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "connections and template never expired:\n{c}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let again = only_server(&client(&lan, 80, 3));
    assert_ne!(again, first, "rescheduled after the template expired");
    drop(xvsd);
}

#[test]
fn firewall_mark_groups_ports_under_one_persistent_service() {
    let _g = net_lock();
    let lan = DrLan::new();
    let _servers = serve(&lan, &[80, 8080, 443]);
    lan.add_client_addrs(&others());
    let xvsd = Xvsd::start(&lan.director.ns, &[&lan.director.iface]);
    // The tutorial's iptables MARK rules, as xvsadm commands.
    for port in [80, 8080, 443] {
        xvsd.adm_ok(&["--set-mark", "10", "-t", &format!("{VIP}:{port}")]);
    }
    xvsd.adm_ok(&["-A", "-f", "10", "-s", "rr", "-p"]);
    for h in &lan.rs {
        xvsd.adm_ok(&["-a", "-f", "10", "-r", &h.ip.to_string(), "-g"]);
    }
    let l = xvsd.adm_ok(&["-Ln"]);
    assert!(l.contains("FWM  10 rr persistent 360"), "{l}");
    assert!(l.contains(":0 "), "FWM destinations list port 0:\n{l}");
    let a = only_server(&client(&lan, 80, 4));
    assert_eq!(only_server(&client(&lan, 8080, 4)), a, "8080 follows 80");
    assert_eq!(only_server(&client(&lan, 443, 4)), a, "443 follows 80");
    lan.client_source(VIP, Some(others()[0]));
    let b = only_server(&client(&lan, 443, 4));
    assert_eq!(only_server(&client(&lan, 80, 4)), b);
    assert_ne!(a, b, "another client, the next server");
    // The template is keyed on the mark: protocol IP, the mark as address.
    let c = xvsd.adm_ok(&["-Lnc"]);
    assert!(
        c.lines()
            .any(|l| l.starts_with("IP ") && l.contains("0.0.0.10:0")),
        "{c}"
    );
    let saved = xvsd.adm_ok(&["-S", "-n"]);
    assert!(
        saved.contains(&format!("--set-mark 10 -t {VIP}:8080")),
        "{saved}"
    );
    drop(xvsd);
}

#[test]
fn a_full_table_forwards_new_connections_without_an_entry_and_established_ones_keep_going() {
    let _g = net_lock();
    let lan = DrLan::new();
    let _servers = rig::serve_on(&lan.rs, 80, &["--idle-timeout-s", "30"]);
    let xvsd = Xvsd::start_with(
        Some(&lan.director.ns),
        &rig::xvsd_args(&[&lan.director.iface], None, Some(3)),
    );
    let svc = format!("{VIP}:80");
    xvsd.add_dr_service(&svc, "rr", &lan.rs);
    // Three held connections fill the table.
    let holder =
        xvs_tests::node::Holder::start(&lan.client.ns, NODE, &svc, 3, Duration::from_secs(20));
    assert_eq!(holder.held(), 3);
    // Nothing to evict (every entry is ESTABLISHED): new connections are
    // forwarded without an entry, every packet of each to one server.
    let s = Clients::new(1500, 10_000, 2).run(&lan.client.ns, &svc, 2);
    assert_eq!(
        s.ok, 2,
        "new connections go through without an entry: {s:?}"
    );
    let dp = xvsd.adm_ok(&["-L", "--dataplane"]);
    let counter = |name: &str| -> u64 {
        dp.split_whitespace()
            .skip_while(|w| *w != name)
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    assert!(
        counter("stateless") >= 2,
        "counted and visible in xvsadm:\n{dp}"
    );
    assert_eq!(counter("conns_evicted"), 0, "{dp}");
    assert_eq!(counter("conn_table_full"), 0, "{dp}");
    assert!(dp.contains("3 of 3 entries in use"), "{dp}");
    // Every counter is listed once: the workers' reads, the rings' drops
    // and the steering program's counters of the interface.
    for name in [" rx ", " tx_ring_full ", " no_port ", " redirect "] {
        assert_eq!(dp.matches(name).count(), 1, "{name:?} once in:\n{dp}");
    }
    assert!(dp.contains("  steering "), "{dp}");
    // The established connections complete their exchange.
    let done = holder.release(Duration::from_secs(20));
    assert_eq!(done.ok, 3, "established connections keep flowing: {done:?}");
    drop(xvsd);
}
