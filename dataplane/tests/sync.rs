//! Connection sync through the pipeline: which packets make a master's
//! workers emit records (IPVS's threshold and period, state changes,
//! templates), and how a backup's workers install records (bind, update,
//! replace, stale, rejections) so that a synced connection forwards its
//! next segment like a local one.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use xvs_config::{Config, DestConf, ServiceConf};
use xvs_dataplane::build::SnapshotBuilder;
use xvs_dataplane::conn::state::Timeouts;
use xvs_dataplane::conn::table::{Key, View};
use xvs_dataplane::flow::FlowKey;
use xvs_dataplane::neigh::NeighTable;
use xvs_dataplane::pipeline::{DropReason, Pipeline, Verdict};
use xvs_dataplane::svc::{Fwd, Persist};
use xvs_dataplane::svc::{Snapshot, SvcKey};
use xvs_dataplane::sync::{flags, SyncConn, SyncCounters, SyncPort};
use xvs_dataplane::testkit::frame::{eth, ip, ip_packet, tcp, L4};
use xvs_dataplane::testkit::{
    dr_service, rip, rs_mac, service, service_with, Fixture, CLIENT_MAC, DIR_IP, DIR_MAC, VIP,
};
use xvs_dataplane::xmit::tun::TunKind;
use xvs_scheduler::DestLoad;

const S: u64 = 1_000_000_000;
const C: [u8; 4] = [198, 18, 0, 10];

fn seg(cip: [u8; 4], l4: L4) -> Vec<u8> {
    eth(CLIENT_MAC, DIR_MAC, &ip_packet(&ip(cip, VIP), &l4, b"x"))
}

fn syn(sport: u16) -> Vec<u8> {
    seg(C, tcp(sport, 80).syn())
}

fn ack(sport: u16) -> Vec<u8> {
    seg(C, tcp(sport, 80).ack(1))
}

fn fin(sport: u16) -> Vec<u8> {
    seg(C, tcp(sport, 80).ack(1).fin())
}

/// The real server a transmitted frame went to (last byte of its MAC).
fn sent_to(p: &mut Pipeline, now: u64, mut frame: Vec<u8>) -> Option<u8> {
    match p.process(now, &mut frame) {
        Verdict::Tx(0) => Some(frame[5] - 0x10),
        _ => None,
    }
}

/// A pipeline synced through a port of its own (one worker).
fn synced(f: &mut Fixture) -> Arc<SyncPort> {
    let port = Arc::new(SyncPort::new(1));
    f.pipeline.set_sync(port.clone(), 0);
    port
}

fn drain(port: &SyncPort) -> Vec<SyncConn> {
    let mut v = Vec::new();
    port.drain_out(&mut |c| v.push(c));
    v
}

fn v4(a: [u8; 4]) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(a))
}

/// The record of an ESTABLISHED DR connection from client port `cport`
/// to real server `i`.
fn record(cport: u16, i: u8) -> SyncConn {
    SyncConn {
        protocol: 6,
        flags: flags::DROUTE,
        state: 1,
        cport,
        vport: 80,
        dport: 80,
        fwmark: 0,
        timeout: 900,
        caddr: v4(C),
        vaddr: v4(VIP),
        daddr: v4(rip(i)),
    }
}

fn conn_key(cport: u16) -> Key {
    Key::conn(&FlowKey {
        proto: 6,
        cip: Ipv4Addr::from(C),
        cport,
        vip: Ipv4Addr::from(VIP),
        vport: 80,
    })
}

fn entry(p: &Pipeline, cport: u16) -> Option<View> {
    p.table().lookup(&conn_key(cport))
}

/// Install `records` on a backup pipeline at `now`; the counters after.
fn install(p: &mut Pipeline, port: &SyncPort, now: u64, records: &[SyncConn]) -> SyncCounters {
    for r in records {
        assert!(port.push_in(*r));
    }
    p.sync_in(now);
    port.counters()
}

#[test]
fn a_master_sends_at_the_third_and_fifty_third_packet_and_on_state_changes() {
    let mut f = Fixture::new(dr_service("rr", 3, None), 100);
    let port = synced(&mut f);
    port.set_master(true);
    let p = &mut f.pipeline;
    let to = sent_to(p, S, syn(5000)).unwrap();
    sent_to(p, S, ack(5000)).unwrap();
    assert!(drain(&port).is_empty(), "nothing before the threshold");
    sent_to(p, S, ack(5000)).unwrap();
    let got = drain(&port);
    assert_eq!(got.len(), 1, "the 3rd packet: {got:?}");
    let r = got[0];
    assert_eq!(
        r,
        SyncConn {
            timeout: r.timeout,
            ..record(5000, to)
        }
    );
    assert!((899..=900).contains(&r.timeout), "seconds left: {r:?}");
    for n in 4..53 {
        sent_to(p, 2 * S, ack(5000)).unwrap();
        assert!(drain(&port).is_empty(), "packet {n}");
    }
    sent_to(p, 2 * S, ack(5000)).unwrap();
    assert_eq!(drain(&port).len(), 1, "the 53rd packet");
    // FIN: FIN_WAIT at once, inactive.
    sent_to(p, 3 * S, fin(5000)).unwrap();
    let got = drain(&port);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].state, 4);
    assert_eq!(got[0].flags, flags::DROUTE | flags::INACTIVE);
    assert!((119..=120).contains(&got[0].timeout), "{:?}", got[0]);
    // Further FINs change nothing: nothing until the period comes round.
    sent_to(p, 3 * S, fin(5000)).unwrap();
    assert!(drain(&port).is_empty());
    assert_eq!(port.counters().emitted, 3);
}

#[test]
fn a_director_that_is_not_master_sends_nothing() {
    let mut f = Fixture::new(dr_service("rr", 3, None), 100);
    let port = synced(&mut f);
    for _ in 0..3 {
        sent_to(&mut f.pipeline, S, syn(5000));
    }
    assert!(drain(&port).is_empty());
    port.set_master(true);
    // Nothing was counted meanwhile: the count starts with the master, so
    // the third packet from now is the first send, then once a period.
    for _ in 0..2 {
        sent_to(&mut f.pipeline, S, ack(5000)).unwrap();
    }
    assert!(drain(&port).is_empty());
    sent_to(&mut f.pipeline, S, ack(5000)).unwrap();
    assert_eq!(drain(&port).len(), 1);
    for _ in 0..49 {
        sent_to(&mut f.pipeline, S, ack(5000)).unwrap();
    }
    assert!(drain(&port).is_empty());
    sent_to(&mut f.pipeline, S, ack(5000)).unwrap();
    assert_eq!(drain(&port).len(), 1);
}

#[test]
fn a_half_open_connection_is_not_sent() {
    let mut f = Fixture::new(dr_service("rr", 3, None), 100);
    let port = synced(&mut f);
    port.set_master(true);
    // Three SYNs: SYN_RECV, not a synced state.
    for _ in 0..3 {
        sent_to(&mut f.pipeline, S, syn(5000)).unwrap();
    }
    assert!(drain(&port).is_empty());
}

#[test]
fn a_persistent_connection_is_followed_by_its_template() {
    let persist = Persist {
        timeout: 300,
        mask: 0xffff_ff00,
        prefix: 24,
    };
    let mut f = Fixture::new(service("rr", 3, None, 80, Some(persist)), 100);
    let port = synced(&mut f);
    port.set_master(true);
    let to = sent_to(&mut f.pipeline, S, syn(5000)).unwrap();
    for _ in 0..2 {
        sent_to(&mut f.pipeline, S, ack(5000)).unwrap();
    }
    let got = drain(&port);
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0].flags, flags::DROUTE);
    assert_eq!(
        got[1],
        SyncConn {
            protocol: 6,
            flags: flags::DROUTE | flags::TEMPLATE,
            state: 0,
            cport: 0,
            vport: 80,
            dport: 80,
            fwmark: 0,
            timeout: got[1].timeout,
            caddr: v4([198, 18, 0, 0]),
            vaddr: v4(VIP),
            daddr: v4(rip(to)),
        }
    );
    assert!((299..=300).contains(&got[1].timeout), "{:?}", got[1]);
}

#[test]
fn a_port_zero_template_has_ports_zero() {
    let persist = Persist {
        timeout: 300,
        mask: 0xffff_ffff,
        prefix: 32,
    };
    let mut f = Fixture::new(service("rr", 2, None, 0, Some(persist)), 100);
    let port = synced(&mut f);
    port.set_master(true);
    for pkt in [syn(5000), ack(5000), ack(5000)] {
        sent_to(&mut f.pipeline, S, pkt).unwrap();
    }
    let got = drain(&port);
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!((got[1].cport, got[1].vport, got[1].dport), (0, 0, 0));
    assert_eq!(got[1].caddr, v4(C));
}

#[test]
fn a_full_queue_drops_records_and_counts_them_without_holding_packets() {
    let mut f = Fixture::new(dr_service("rr", 3, None), 100);
    let port = Arc::new(SyncPort::with_capacity(1, 2, 2));
    f.pipeline.set_sync(port.clone(), 0);
    port.set_master(true);
    for c in 0..3u16 {
        for pkt in [syn(6000 + c), ack(6000 + c), ack(6000 + c)] {
            assert!(sent_to(&mut f.pipeline, S, pkt).is_some());
        }
    }
    let c = port.counters();
    assert_eq!((c.emitted, c.out_dropped), (2, 1));
    assert_eq!(drain(&port).len(), 2);
}

#[test]
fn a_backup_installs_a_record_and_forwards_the_next_segment_like_a_local_connection() {
    let mut f = Fixture::new(dr_service("rr", 3, None), 100);
    let port = synced(&mut f);
    port.set_backup(true);
    let c = install(&mut f.pipeline, &port, 10 * S, &[record(7000, 2)]);
    assert_eq!(c.installed, 1, "{c:?}");
    let v = entry(&f.pipeline, 7000).expect("installed");
    assert_eq!(v.dest, f.dest(2).id);
    assert_eq!(v.state, 1);
    assert!(f.pipeline.table().synced(v.idx));
    assert_eq!(f.dest(2).sched.load.active(), 1);
    // Expires by the received timeout.
    assert_eq!(v.expires.wrapping_sub(1000), 900 * 100);
    // A mid-stream ACK (no SYN ever seen here) goes to server 2.
    assert_eq!(sent_to(&mut f.pipeline, 11 * S, ack(7000)), Some(2));
    // Without the record it would have been dropped.
    let mut lost = ack(7001);
    assert_eq!(
        f.pipeline.process(11 * S, &mut lost),
        Verdict::Drop(DropReason::NoConn)
    );
}

#[test]
fn records_update_replace_or_are_stale_as_in_ipvs() {
    let mut f = Fixture::new(dr_service("rr", 3, None), 100);
    let port = synced(&mut f);
    port.set_backup(true);
    install(&mut f.pipeline, &port, S, &[record(7000, 2)]);
    // Same server: state and timeout follow.
    let mut r = record(7000, 2);
    r.state = 4;
    r.flags |= flags::INACTIVE;
    r.timeout = 50;
    let c = install(&mut f.pipeline, &port, 2 * S, &[r]);
    assert_eq!(c.updated, 1);
    let v = entry(&f.pipeline, 7000).unwrap();
    assert_eq!(v.state, 4);
    assert_eq!(v.expires, 200 + 50 * 100);
    assert_eq!(f.dest(2).sched.load.active(), 0);
    assert_eq!(f.dest(2).sched.load.inactive(), 1);
    // Another server, active: replaced.
    let c = install(&mut f.pipeline, &port, 3 * S, &[record(7000, 3)]);
    assert_eq!(c.replaced, 1, "{c:?}");
    assert_eq!(entry(&f.pipeline, 7000).unwrap().dest, f.dest(3).id);
    assert_eq!(f.dest(2).sched.load.inactive(), 0);
    assert_eq!(f.dest(3).sched.load.active(), 1);
    // Another server, inactive: stale, ignored.
    let mut old = record(7000, 1);
    old.flags |= flags::INACTIVE;
    old.state = 5;
    let c = install(&mut f.pipeline, &port, 4 * S, &[old]);
    assert_eq!(c.stale, 1);
    assert_eq!(sent_to(&mut f.pipeline, 4 * S, ack(7000)), Some(3));
    assert_eq!(f.pipeline.table().iter().count(), 1);
}

#[test]
fn bad_records_are_rejected_by_reason() {
    let mut f = Fixture::new(dr_service("rr", 3, None), 100);
    let port = synced(&mut f);
    port.set_backup(true);
    let mut bad_state = record(1, 1);
    bad_state.state = 11;
    let mut sctp = record(2, 1);
    sctp.protocol = 132;
    let mut v6 = record(3, 1);
    v6.caddr = "2001:db8::1".parse().unwrap();
    let unknown_server = SyncConn {
        daddr: v4([198, 18, 9, 9]),
        ..record(4, 1)
    };
    let mut other_port = record(5, 1);
    other_port.dport = 81;
    let other_service = SyncConn {
        vport: 443,
        ..record(6, 1)
    };
    let mut local_node = record(7, 1);
    local_node.daddr = v4([198, 18, 9, 9]);
    local_node.flags = flags::LOCALNODE;
    let c = install(
        &mut f.pipeline,
        &port,
        S,
        &[
            bad_state,
            sctp,
            v6,
            unknown_server,
            other_port,
            other_service,
            local_node,
        ],
    );
    assert_eq!(c.rejected_state, 1);
    assert_eq!(c.rejected_proto, 1);
    assert_eq!(c.rejected_family, 1);
    assert_eq!(c.rejected_no_service, 1);
    assert_eq!(c.rejected_no_dest, 1);
    // Servers not configured here: parked for a destination of their own.
    assert_eq!(c.parked, 2);
    let mut parked = Vec::new();
    port.take_parked(&mut |c, svc| parked.push((c.cport, svc)));
    assert_eq!(parked, vec![(4, f.svc.key), (5, f.svc.key)]);
    assert_eq!(c.installed, 0);
    assert_eq!(f.pipeline.table().iter().count(), 0);
}

#[test]
fn a_zero_timeout_takes_the_states_and_a_director_not_backup_installs_nothing() {
    let mut f = Fixture::with_timeouts(dr_service("rr", 3, None), 100, Timeouts::default());
    let port = synced(&mut f);
    let c = install(&mut f.pipeline, &port, S, &[record(7000, 1)]);
    assert_eq!(c.installed, 0);
    assert!(entry(&f.pipeline, 7000).is_none());
    assert!(!port.has_input(0), "drained all the same");
    port.set_backup(true);
    let mut r = record(7000, 1);
    r.timeout = 0;
    install(&mut f.pipeline, &port, S, &[r]);
    let v = entry(&f.pipeline, 7000).unwrap();
    assert_eq!(v.expires, 100 + 900 * 100, "ESTABLISHED's 900 s");
}

#[test]
fn an_installed_template_keeps_a_clients_new_connections_on_its_server() {
    let persist = Persist {
        timeout: 300,
        mask: 0xffff_ffff,
        prefix: 32,
    };
    let mut f = Fixture::new(service("rr", 3, None, 80, Some(persist)), 100);
    let port = synced(&mut f);
    port.set_backup(true);
    let t = SyncConn {
        flags: flags::DROUTE | flags::TEMPLATE,
        state: 0,
        cport: 0,
        timeout: 0,
        ..record(0, 2)
    };
    let conn = record(7000, 2);
    let c = install(&mut f.pipeline, &port, S, &[t, conn]);
    assert_eq!(c.installed, 2, "{c:?}");
    let tv = f
        .pipeline
        .table()
        .lookup(&Key::template(
            6,
            Ipv4Addr::from(C),
            u32::from_be_bytes(VIP),
            80,
        ))
        .expect("template installed");
    assert_eq!(tv.expires, 100 + 180 * 100, "a template's 3 minutes");
    assert_eq!(tv.ctl, 1, "controls the synced connection");
    assert_eq!(f.dest(2).sched.load.persist(), 1);
    // Whatever rr would choose, the client's new connections follow the
    // template.
    for sport in 8000..8006 {
        assert_eq!(sent_to(&mut f.pipeline, 2 * S, syn(sport)), Some(2));
    }
}

#[test]
fn connections_synced_from_a_master_forward_on_the_backup() {
    let mut m = Fixture::new(dr_service("rr", 3, None), 100);
    let mport = synced(&mut m);
    mport.set_master(true);
    let mut b = Fixture::new(dr_service("rr", 3, None), 100);
    let bport = synced(&mut b);
    bport.set_backup(true);
    let mut to = Vec::new();
    for c in 0..6u16 {
        let sport = 9000 + c;
        to.push(sent_to(&mut m.pipeline, S, syn(sport)).unwrap());
        for _ in 0..2 {
            sent_to(&mut m.pipeline, S, ack(sport)).unwrap();
        }
    }
    mport.drain_out(&mut |c| assert!(bport.push_in(c)));
    b.pipeline.sync_in(2 * S);
    assert_eq!(bport.counters().installed, 6);
    for (c, want) in to.iter().enumerate() {
        assert_eq!(
            sent_to(&mut b.pipeline, 3 * S, ack(9000 + c as u16)),
            Some(*want),
            "connection {c} keeps its server"
        );
    }
    // A full resync carries the same: the backup's table as records.
    let listed: Vec<View> = b.pipeline.table().iter().collect();
    assert!(listed.iter().all(|v| b.pipeline.table().synced(v.idx)));
}

#[test]
fn a_synced_nat_connection_learns_where_replies_go_from_its_client() {
    let fwds = [(Fwd::Nat, TunKind::Ipip)];
    let mut f = Fixture::new(service_with("rr", &fwds, None, 80, None), 100);
    let port = synced(&mut f);
    port.set_backup(true);
    let r = SyncConn {
        flags: flags::MASQ,
        dport: 8080,
        ..record(7000, 1)
    };
    assert_eq!(install(&mut f.pipeline, &port, S, &[r]).installed, 1);
    let reply = |flags: L4| eth(rs_mac(1), DIR_MAC, &ip_packet(&ip(rip(1), C), &flags, b"y"));
    // A reply before the client was heard from here: nowhere to go yet.
    let mut early = reply(tcp(8080, 7000).ack(1));
    assert_eq!(
        f.pipeline.process(2 * S, &mut early),
        Verdict::Drop(DropReason::NoNeigh)
    );
    // The client's segment is translated to the real server's port ...
    let mut up = ack(7000);
    assert_eq!(f.pipeline.process(2 * S, &mut up), Verdict::Tx(0));
    assert_eq!(&up[0..6], &rs_mac(1));
    assert_eq!(u16::from_be_bytes([up[36], up[37]]), 8080);
    // ... and replies now go back to where it came from, from the VIP.
    let mut down = reply(tcp(8080, 7000).ack(1));
    assert_eq!(f.pipeline.process(2 * S, &mut down), Verdict::Tx(0));
    assert_eq!(&down[0..6], &CLIENT_MAC);
    assert_eq!(&down[26..30], &VIP);
}

#[test]
fn the_packet_count_and_the_sync_flag_share_a_word_with_the_nat_data_without_touching_it() {
    use xvs_dataplane::conn::table::{ConnTable, Init, NatInit};
    let (t, mut parts) = ConnTable::new(16, 1);
    let nat = NatInit {
        rip: Ipv4Addr::new(198, 18, 1, 11),
        rport: 8080,
        ret_port: 3,
        ret_mac: [2, 1, 2, 3, 4, 5],
    };
    let init = Init {
        state: 1,
        fwd: 2,
        expires: 1000,
        dest: 1,
        svc: 0,
        ctl: 0,
        nat: Some(nat),
    };
    let v = t.insert(&mut parts[0], &conn_key(1), init).unwrap();
    let counts: Vec<u32> = (0..53).map(|_| t.count_in(&v, 50)).collect();
    assert_eq!(&counts[..4], &[1, 2, 3, 4]);
    assert_eq!(counts[49], 0, "the 50th packet wraps");
    assert_eq!(counts[52], 3, "the 53rd is the threshold again");
    assert!(!t.synced(v.idx));
    t.set_synced(&v);
    assert!(t.synced(v.idx));
    let again = t.read(v.idx).unwrap();
    assert_eq!(again.nat, Some(nat), "the NAT data is intact");
    t.set_nat_return(&again, 1, [2, 9, 9, 9, 9, 9]);
    let after = t.read(v.idx).unwrap();
    assert_eq!(after.nat.unwrap().ret_mac, [2, 9, 9, 9, 9, 9]);
    assert!(t.synced(v.idx), "the flag stays");
    assert_eq!(t.count_in(&after, 50), 4, "so does the count");
    // A rebind (a new connection in the same entry) is local and counts
    // from the start.
    let (_, new) = t.rebind(&after, init).unwrap();
    assert!(!t.synced(new.idx));
    assert_eq!(t.count_in(&new, 50), 1);
    // A stale view does not write into a rewritten entry.
    t.count_in(&after, 50);
    assert_eq!(t.count_in(&new, 50), 2);
}

#[test]
fn a_synced_tunnel_connection_is_encapsulated_to_its_real_server() {
    let fwds = [(Fwd::Tun, TunKind::Ipip), (Fwd::Tun, TunKind::Ipip)];
    let mut f = Fixture::new(service_with("rr", &fwds, None, 80, None), 100);
    let port = synced(&mut f);
    port.set_backup(true);
    let r = SyncConn {
        flags: flags::TUNNEL,
        ..record(7000, 2)
    };
    assert_eq!(install(&mut f.pipeline, &port, S, &[r]).installed, 1);
    let mut seg = ack(7000);
    assert_eq!(f.pipeline.process(2 * S, &mut seg), Verdict::Tx(0));
    assert_eq!(&seg[0..6], &rs_mac(2));
    // IPIP: the outer header goes to the real server, protocol 4.
    assert_eq!(seg[23], 4, "an IP-in-IP packet");
    assert_eq!(&seg[30..34], &rip(2));
}

/// A backup whose snapshots come from the snapshot builder, as xvsd's do:
/// one service on VIP:80 with the servers `servers` (last octets), every
/// neighbour resolved to `rs_mac(last octet)`.
struct Backup {
    builder: SnapshotBuilder,
    neigh: Arc<NeighTable>,
    cfg: Config,
    pipeline: Pipeline,
    port: Arc<SyncPort>,
}

fn dest_conf(i: u8, port: u16, fwd: Fwd) -> DestConf {
    DestConf {
        addr: v4(rip(i)),
        port,
        weight: 1,
        last_weight: 1,
        u_threshold: 0,
        l_threshold: 0,
        fwd,
        tun: TunKind::Ipip,
        load: Arc::new(DestLoad::default()),
        counters: Arc::default(),
    }
}

impl Backup {
    fn new(servers: &[u8], port: u16, fwd: Fwd) -> Backup {
        let neigh = NeighTable::new(Vec::new());
        for i in 1..=9 {
            let cell = neigh.cell(v4(rip(i)));
            cell.set(Some(rs_mac(i)));
            cell.set_route(0, Some(Ipv4Addr::from(DIR_IP)));
        }
        let cfg = Config {
            services: vec![ServiceConf {
                key: SvcKey::Addr {
                    proto: 6,
                    vip: v4(VIP),
                    port: 80,
                },
                sched: "rr".into(),
                flags: 0,
                persist: None,
                dests: servers.iter().map(|&i| dest_conf(i, port, fwd)).collect(),
                counters: Arc::default(),
            }],
            ..Config::default()
        };
        let mut builder = SnapshotBuilder::new();
        let snap = Arc::new(builder.build(&cfg, &neigh));
        let mut pipeline = Pipeline::new(snap, 100, DIR_MAC);
        let port = Arc::new(SyncPort::new(1));
        pipeline.set_sync(port.clone(), 0);
        port.set_backup(true);
        Backup {
            builder,
            neigh,
            cfg,
            pipeline,
            port,
        }
    }

    fn publish(&mut self) -> Arc<Snapshot> {
        let snap = Arc::new(self.builder.build(&self.cfg, &self.neigh));
        self.pipeline.set_snapshot(snap.clone());
        snap
    }

    /// What xvsd's control thread does with parked records: a synced-only
    /// destination for each, a publish, the records queued again.
    fn serve_parked(&mut self) -> usize {
        let mut again = Vec::new();
        let (b, neigh) = (&mut self.builder, &self.neigh);
        let n = self.port.take_parked(&mut |c, svc| {
            let made = b.want_synced(svc, c.daddr, c.dport, c.method().unwrap(), neigh);
            assert!(made.is_ok(), "the service exists");
            again.push(c);
        });
        self.publish();
        for c in again {
            assert!(self.port.push_in(c));
        }
        n
    }

    fn install(&mut self, now: u64, records: &[SyncConn]) -> SyncCounters {
        install(&mut self.pipeline, &self.port, now, records)
    }
}

#[test]
fn a_record_for_a_server_not_configured_here_forwards_by_its_method_unscheduled() {
    let mut b = Backup::new(&[1, 2], 80, Fwd::Dr);
    let c = b.install(S, &[record(7000, 9)]);
    assert_eq!((c.parked, c.installed), (1, 0), "{c:?}");
    assert!(entry(&b.pipeline, 7000).is_none());
    assert_eq!(b.serve_parked(), 1);
    let c = b.install(S, &[]);
    assert_eq!((c.installed, c.unbound), (1, 1), "{c:?}");
    let v = entry(&b.pipeline, 7000).expect("installed unbound");
    assert!(b.pipeline.table().synced(v.idx));
    let snap = b.publish();
    let d = snap.dest(v.dest).expect("its destination is in the arena");
    assert!(!d.in_service);
    assert_eq!(d.sched.addr, v4(rip(9)));
    assert_eq!(d.sched.load.active(), 1);
    // The client's next segment goes to server 9 by direct routing.
    assert_eq!(sent_to(&mut b.pipeline, 2 * S, ack(7000)), Some(9));
    // New connections never do: no scheduler has it.
    for sport in 100..120 {
        let to = sent_to(&mut b.pipeline, 2 * S, syn(sport));
        assert!(matches!(to, Some(1 | 2)), "{to:?}");
    }
    // Its next record updates it in place.
    let mut r = record(7000, 9);
    r.state = 4;
    r.flags |= flags::INACTIVE;
    let c = b.install(3 * S, &[r]);
    assert_eq!(c.updated, 1, "{c:?}");
    assert_eq!(d.sched.load.inactive(), 1);
    // The operator adds server 9: the connection keeps its binding (the
    // same server), and the added server counts only its own.
    b.cfg.services[0].dests.push(dest_conf(9, 80, Fwd::Dr));
    let snap = b.publish();
    let c = b.install(4 * S, &[record(7000, 9)]);
    assert_eq!((c.updated, c.replaced, c.parked), (2, 0, 1), "{c:?}");
    assert_eq!(entry(&b.pipeline, 7000).unwrap().dest, v.dest);
    assert_eq!(sent_to(&mut b.pipeline, 4 * S, ack(7000)), Some(9));
    let live = snap
        .lookup(6, Ipv4Addr::from(VIP), 80)
        .unwrap()
        .sched
        .lock()
        .unwrap()
        .dests()
        .iter()
        .find(|d| d.sched.addr == v4(rip(9)))
        .cloned()
        .expect("server 9 configured");
    assert!(live.in_service);
    assert_eq!(live.sched.load.active(), 0);
    // A new record for a new connection to server 9 binds to it.
    let c = b.install(4 * S, &[record(7001, 9)]);
    assert_eq!((c.installed, c.unbound), (2, 1), "{c:?}");
    assert_eq!(entry(&b.pipeline, 7001).unwrap().dest, live.id);
}

#[test]
fn an_unbound_nat_connection_rewrites_both_ways() {
    let mut b = Backup::new(&[1], 8080, Fwd::Nat);
    let mut r = record(7000, 9);
    r.flags = flags::MASQ;
    r.dport = 8080;
    b.install(S, &[r]);
    b.serve_parked();
    let c = b.install(S, &[]);
    assert_eq!(c.unbound, 1, "{c:?}");
    let snap = b.publish();
    assert!(
        snap.nat_keys()
            .iter()
            .any(|k| k.vip == Ipv4Addr::from(rip(9)) && k.port == 8080),
        "its replies are steered to the sockets"
    );
    let mut f = ack(7000);
    assert_eq!(b.pipeline.process(2 * S, &mut f), Verdict::Tx(0));
    assert_eq!(&f[0..6], &rs_mac(9));
    assert_eq!(&f[30..34], &rip(9), "destination address");
    assert_eq!(&f[36..38], &8080u16.to_be_bytes(), "destination port");
    // The reply goes back to the client as from VIP:80.
    let mut reply = eth(
        rs_mac(9),
        DIR_MAC,
        &ip_packet(&ip(rip(9), C), &tcp(8080, 7000).ack(1), b"y"),
    );
    assert_eq!(b.pipeline.process(2 * S, &mut reply), Verdict::Tx(0));
    assert_eq!(&reply[0..6], &CLIENT_MAC);
    assert_eq!(&reply[26..30], &VIP, "source address");
    assert_eq!(&reply[34..36], &80u16.to_be_bytes(), "source port");
}

#[test]
fn tunnelled_and_template_records_get_destinations_of_their_own() {
    let mut b = Backup::new(&[1], 80, Fwd::Dr);
    let mut tun = record(7000, 9);
    tun.flags = flags::TUNNEL;
    let mut tpl = record(0, 8);
    tpl.flags = flags::DROUTE | flags::TEMPLATE;
    tpl.state = 0;
    let c = b.install(S, &[tun, tpl]);
    assert_eq!(c.parked, 2, "{c:?}");
    b.serve_parked();
    let c = b.install(S, &[]);
    assert_eq!((c.installed, c.unbound), (2, 2), "{c:?}");
    let snap = b.publish();
    let v = entry(&b.pipeline, 7000).unwrap();
    assert_eq!(snap.dest(v.dest).unwrap().fwd, Fwd::Tun);
    // The tunnelled connection's next segment is encapsulated to server 9.
    let mut f = ack(7000);
    assert_eq!(b.pipeline.process(2 * S, &mut f), Verdict::Tx(0));
    assert_eq!(f[23], 4, "IP-in-IP");
    assert_eq!(&f[30..34], &rip(9), "outer destination");
}

#[test]
fn a_full_parking_queue_drops_and_counts() {
    let mut b = Backup::new(&[1], 80, Fwd::Dr);
    let n = xvs_dataplane::sync::PARKED_QUEUE;
    for i in 0..=n {
        let mut r = record(1000 + i as u16, 9);
        r.daddr = v4([198, 18, 9, (i % 200) as u8]);
        assert!(b.port.push_in(r) || b.port.counters().in_dropped > 0);
        if (i + 1) % 256 == 0 {
            b.pipeline.sync_in(S);
        }
    }
    while b.pipeline.sync_in(S) > 0 {}
    let c = b.port.counters();
    assert_eq!(
        c.parked + c.parked_dropped + c.in_dropped,
        n as u64 + 1,
        "{c:?}"
    );
    assert_eq!(c.parked, n as u64);
    assert!(c.parked_dropped >= 1);
}

mod ipv6 {
    //! IPv6 connections are synced by the same rules as IPv4's, in the
    //! 72-byte records, and installed into the worker's IPv6 table.

    use super::*;
    use std::net::Ipv6Addr;
    use xvs_dataplane::testkit::v6::{rip6, service6, tcp6_frame, CIP6, VIP6};

    fn fixture(persist: Option<Persist>) -> Fixture {
        let dr = vec![(Fwd::Dr, TunKind::Ipip); 3];
        Fixture::new(service6("rr", &dr, 6, 80, persist), 100)
    }

    fn syn6(sport: u16) -> Vec<u8> {
        tcp6_frame(CIP6, sport, 80, true, false, b"x")
    }

    fn ack6(sport: u16) -> Vec<u8> {
        tcp6_frame(CIP6, sport, 80, false, true, b"x")
    }

    fn record6(cport: u16, i: u8) -> SyncConn {
        SyncConn {
            caddr: IpAddr::V6(CIP6),
            vaddr: IpAddr::V6(VIP6),
            daddr: IpAddr::V6(rip6(i)),
            ..record(cport, i)
        }
    }

    fn entry6(p: &Pipeline, cport: u16) -> Option<View<Ipv6Addr>> {
        p.table6().lookup(&Key::conn(&FlowKey {
            proto: 6,
            cip: CIP6,
            cport,
            vip: VIP6,
            vport: 80,
        }))
    }

    #[test]
    fn a_master_sends_ipv6_connections_and_their_templates() {
        let persist = Persist {
            timeout: 300,
            mask: 0,
            prefix: 64,
        };
        let mut f = fixture(Some(persist));
        let port = synced(&mut f);
        port.set_master(true);
        let to = sent_to(&mut f.pipeline, S, syn6(5000)).unwrap();
        sent_to(&mut f.pipeline, S, ack6(5000)).unwrap();
        assert!(drain(&port).is_empty(), "nothing before the threshold");
        sent_to(&mut f.pipeline, S, ack6(5000)).unwrap();
        let got = drain(&port);
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(
            got[0],
            SyncConn {
                timeout: got[0].timeout,
                ..record6(5000, to)
            }
        );
        assert!((899..=900).contains(&got[0].timeout), "{:?}", got[0]);
        assert_eq!(
            got[1],
            SyncConn {
                flags: flags::DROUTE | flags::TEMPLATE,
                state: 0,
                cport: 0,
                timeout: got[1].timeout,
                caddr: IpAddr::V6(Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0)),
                ..record6(5000, to)
            }
        );
        assert!((299..=300).contains(&got[1].timeout), "{:?}", got[1]);
    }

    #[test]
    fn a_backup_installs_ipv6_records_into_its_ipv6_table() {
        let mut f = fixture(None);
        let port = synced(&mut f);
        port.set_backup(true);
        let c = install(&mut f.pipeline, &port, 10 * S, &[record6(7000, 2)]);
        assert_eq!((c.installed, c.rejected_family), (1, 0), "{c:?}");
        let v = entry6(&f.pipeline, 7000).expect("installed");
        assert_eq!(v.dest, f.dest(2).id);
        assert!(f.pipeline.table6().synced(v.idx));
        assert_eq!(f.dest(2).sched.load.active(), 1);
        assert!(f.pipeline.table().iter().next().is_none(), "not in IPv4's");
        // A mid-stream ACK goes to server 2, as after a SYN here.
        let mut a = ack6(7000);
        assert_eq!(f.pipeline.process(11 * S, &mut a), Verdict::Tx(0));
        assert_eq!(a[..6], rs_mac(2));
        // The next record updates it.
        let mut fin = record6(7000, 2);
        fin.state = 2;
        fin.flags |= flags::INACTIVE;
        let c = install(&mut f.pipeline, &port, 12 * S, &[fin]);
        assert_eq!(c.updated, 1, "{c:?}");
        assert_eq!(entry6(&f.pipeline, 7000).unwrap().state, 2);
        assert_eq!(f.dest(2).sched.load.active(), 0);
    }

    #[test]
    fn ipv6_records_that_cannot_be_forwarded_are_rejected_by_family() {
        let mut f = fixture(None);
        let port = synced(&mut f);
        port.set_backup(true);
        // Client and virtual address of different families.
        let mut mixed = record6(7001, 1);
        mixed.caddr = v4(C);
        // A direct-routing server of the other family.
        let mut dr4 = record6(7002, 1);
        dr4.daddr = v4(rip(1));
        // A firewall-mark template in IPv6 (not exchanged).
        let mut mark = record6(0, 1);
        mark.protocol = 0;
        mark.flags |= flags::TEMPLATE;
        mark.fwmark = 5;
        mark.vaddr = IpAddr::V6(Ipv6Addr::from(5u128));
        let c = install(&mut f.pipeline, &port, 10 * S, &[mixed, dr4, mark]);
        assert_eq!(c.rejected_family, 3, "{c:?}");
        assert_eq!(c.installed, 0, "{c:?}");
        // An IPv6 server not configured here, same family: parked until
        // a destination is made for it, not refused.
        let mut other = record6(7003, 1);
        other.daddr = IpAddr::V6(rip6(9));
        let c = install(&mut f.pipeline, &port, 10 * S, &[other]);
        assert_eq!((c.parked, c.rejected_family), (1, 3), "{c:?}");
        let mut parked = Vec::new();
        port.take_parked(&mut |c, _| parked.push(c));
        assert_eq!(parked, vec![other]);
    }

    #[test]
    fn ipv6_connections_synced_from_a_master_forward_on_the_backup() {
        let mut m = fixture(None);
        let mport = synced(&mut m);
        mport.set_master(true);
        let mut tos = Vec::new();
        for sport in 6000..6006 {
            let to = sent_to(&mut m.pipeline, S, syn6(sport)).unwrap();
            for _ in 0..2 {
                sent_to(&mut m.pipeline, S, ack6(sport)).unwrap();
            }
            tos.push(to);
        }
        let recs = drain(&mport);
        assert_eq!(recs.len(), 6);
        let mut b = fixture(None);
        let bport = synced(&mut b);
        bport.set_backup(true);
        let c = install(&mut b.pipeline, &bport, 2 * S, &recs);
        assert_eq!(c.installed, 6, "{c:?}");
        for (sport, to) in (6000..6006).zip(tos) {
            assert_eq!(sent_to(&mut b.pipeline, 3 * S, ack6(sport)), Some(to));
        }
    }
}
