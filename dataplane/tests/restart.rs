//! A connection table kept in a file, as a restarted daemon finds it: the
//! connections are there, the builder gives their servers the ids they
//! had, and the servers' connection counts are made again from them.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use xvs_config::{Config, DestConf, Fwd, ServiceConf, SvcKey, TcpState, TunKind};
use xvs_dataplane::build::SnapshotBuilder;
use xvs_dataplane::conn::table::{ConnTable, Init, Key, Opened};
use xvs_dataplane::conn::time::ticks;
use xvs_dataplane::conn::tracker::bind;
use xvs_dataplane::director::{id_file_of, Director, DirectorConfig};
use xvs_dataplane::flow::FlowKey;
use xvs_dataplane::neigh::NeighTable;
use xvs_scheduler::DestLoad;

const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);

fn service(port: u16, servers: &[u8]) -> ServiceConf {
    ServiceConf {
        key: SvcKey::Addr {
            proto: 6,
            vip: IpAddr::V4(VIP),
            port,
        },
        sched: "wlc".into(),
        flags: 0,
        persist: None,
        dests: servers
            .iter()
            .map(|&last| DestConf {
                addr: IpAddr::V4(Ipv4Addr::new(198, 18, 1, last)),
                port,
                weight: 1,
                last_weight: 1,
                u_threshold: 0,
                l_threshold: 0,
                fwd: Fwd::Dr,
                tun: TunKind::Ipip,
                // A new daemon's model starts with fresh counts.
                load: Arc::new(DestLoad::default()),
                counters: Arc::default(),
            })
            .collect(),
        counters: Arc::default(),
    }
}

fn flow(n: u16) -> FlowKey {
    FlowKey {
        proto: 6,
        cip: Ipv4Addr::new(198, 18, 2, 1),
        cport: 10_000 + n,
        vip: VIP,
        vport: 80,
    }
}

/// Each server's (last octet, active, inactive) in `cfg`.
fn loads(cfg: &Config) -> Vec<(u8, u32, u32)> {
    let mut v: Vec<(u8, u32, u32)> = cfg.services[0]
        .dests
        .iter()
        .map(|d| {
            let IpAddr::V4(a) = d.addr else {
                unreachable!()
            };
            (a.octets()[3], d.load.active(), d.load.inactive())
        })
        .collect();
    v.sort();
    v
}

#[test]
fn a_restarted_director_finds_the_connections_their_servers_and_counts() {
    let dir = std::env::temp_dir().join(format!("xvs-restart-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("xvs-test.table");
    let neigh = NeighTable::new(Vec::new());
    let now = ticks(xvs_dataplane::clock::now_ns());

    // The first daemon: rules, connections made as the tracker makes them.
    let cfg = Config {
        services: vec![service(80, &[11, 12, 13])],
        ..Config::default()
    };
    let mut b = SnapshotBuilder::with_id_file(Some(id_file_of(&path)));
    let snap = b.build(&cfg, &neigh);
    let svc = snap.lookup(6, VIP, 80).unwrap();
    let ids: Vec<u32> = (0..8).filter(|&i| snap.dest(i).is_some()).collect();
    assert_eq!(ids.len(), 3);
    let (t, mut parts, o) = ConnTable::open(&path, 1000, 2).unwrap();
    assert_eq!(o, Opened::Created);
    let mut placed = Vec::new();
    for n in 0..12u16 {
        let d = snap.dest(ids[n as usize % 3]).unwrap();
        let state = if n % 4 == 0 {
            TcpState::SynRecv
        } else {
            TcpState::Established
        };
        let init = Init {
            state: state as u8,
            fwd: 0,
            expires: now.wrapping_add(ticks(600_000_000_000)),
            dest: d.id,
            svc: svc.id,
            ctl: 0,
            nat: None,
        };
        t.insert(&mut parts[n as usize % 2], &Key::conn(&flow(n)), init)
            .unwrap();
        bind(d, false, state);
        placed.push((n, d.sched.addr));
    }
    let before = loads(&cfg);
    assert_eq!(before, vec![(11, 3, 1), (12, 3, 1), (13, 3, 1)]);
    // kill -9: nothing is cleaned up.
    drop((t, parts, b, snap));

    // The next daemon: the same rules, listed in another order.
    let mut cfg2 = Config {
        services: vec![service(80, &[13, 12, 11])],
        ..Config::default()
    };
    cfg2.services[0].dests.swap(0, 1);
    let dcfg = DirectorConfig {
        conn_max: 1000,
        table_file: Some(path.clone()),
        ..DirectorConfig::default()
    };
    let mut director = Director::start(&dcfg).unwrap();
    assert_eq!(director.id_file(), Some(id_file_of(&path)));
    // A second daemon cannot take the table the first one holds.
    assert!(Director::start(&dcfg).is_err());
    let mut b = SnapshotBuilder::with_id_file(director.id_file());
    let snap = b.build(&cfg2, director.neigh());
    director.publish(snap).unwrap();
    assert_eq!(loads(&cfg2), before, "counts made again from the table");
    // Every connection still goes to the server it went to.
    let conns = director.connections();
    assert_eq!(conns.len(), 12);
    for (n, rip) in placed {
        let c = conns.iter().find(|c| c.cport == 10_000 + n).unwrap();
        assert_eq!(c.rip, rip, "connection {n}");
    }
    // Publishing again counts nothing twice.
    let snap = b.build(&cfg2, director.neigh());
    director.publish(snap).unwrap();
    assert_eq!(loads(&cfg2), before);
    drop(director);
    let _ = std::fs::remove_dir_all(&dir);
}
