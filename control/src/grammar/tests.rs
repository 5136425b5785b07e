//! The parser's messages, defaults and corner cases.

use super::*;
use std::net::{Ipv4Addr, Ipv6Addr};

fn p(line: &str) -> Result<Command, ParseError> {
    let args: Vec<&str> = line.split_whitespace().collect();
    parse(&args)
}

fn msg(line: &str) -> String {
    match p(line) {
        Ok(c) => panic!("{line:?} parsed as {c:?}"),
        Err(e) => e.0,
    }
}

const V4: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 100));

#[test]
fn parser_messages() {
    let table: &[(&str, &str)] = &[
        (
            "-A -t 198.18.0.300:80",
            "illegal virtual server address[:port] specified",
        ),
        (
            "-A -t www.example.com:80",
            "illegal virtual server address[:port] specified",
        ),
        (
            "-A -t 198.18.0.1:http",
            "illegal virtual server address[:port] specified",
        ),
        (
            "-A -t 198.18.0.1:65536",
            "illegal virtual server address[:port] specified",
        ),
        (
            "-A -t 198.18.0.1:",
            "illegal virtual server address[:port] specified",
        ),
        (
            "-A -u [2001:2::1",
            "illegal virtual server address[:port] specified",
        ),
        (
            "-a -t 198.18.0.1:80 -r foo",
            "illegal real server address[:port] specified",
        ),
        (
            "-a -t 198.18.0.1:80 -r 198.18.0.2 -w 65536",
            "illegal weight specified",
        ),
        (
            "-a -t 198.18.0.1:80 -r 198.18.0.2 -w -1",
            "illegal weight specified",
        ),
        (
            "-a -t 198.18.0.1:80 -r 198.18.0.2 -w abc",
            "illegal weight specified",
        ),
        ("-A -a", "multiple commands specified"),
        ("-L -L", "multiple commands specified"),
        (
            "-A -s rr",
            "You need to supply the 'service-address' option for the 'add-service' command",
        ),
        (
            "-a -t 198.18.0.1:80",
            "You need to supply the 'real-server' option for the 'add-server' command",
        ),
        (
            "-d -t 198.18.0.1:80",
            "You need to supply the 'real-server' option for the 'delete-server' command",
        ),
        (
            "-D -t 198.18.0.1:80 -s rr",
            "Illegal 'scheduler' option with the 'delete-service' command",
        ),
        (
            "-C -t 198.18.0.1:80",
            "Illegal 'service-address' option with the 'flush' command",
        ),
        (
            "-A -t 198.18.0.1:80 -w 3",
            "Illegal 'weight' option with the 'add-service' command",
        ),
        (
            "-L -r 198.18.0.1",
            "Illegal 'real-server' option with the 'list' command",
        ),
        (
            "-S --stats",
            "Illegal 'stats' option with the 'save' command",
        ),
        (
            "-A -t 198.18.0.1:0 -s rr",
            "Zero port specified for non-persistent service",
        ),
        (
            "-A -t 198.18.0.1 -s rr",
            "Zero port specified for non-persistent service",
        ),
        (
            "-A -t 198.18.0.1:53 -o",
            "One-Packet Scheduling is only for UDP virtual services",
        ),
        (
            "-A -f 1 -o",
            "One-Packet Scheduling is only for UDP virtual services",
        ),
        (
            "-A -t 198.18.0.1:80 -p 0",
            "invalid timeout value `0' specified",
        ),
        (
            "-A -t 198.18.0.1:80 -p 2678401",
            "invalid timeout value `2678401' specified",
        ),
        (
            "-A -t 198.18.0.1:80 -p abc",
            "invalid timeout value `abc' specified",
        ),
        ("--set 1 2", "--set option requires 3 timeout values"),
        ("--set", "--set option requires 3 timeout values"),
        ("--set 1 2 x", "invalid timeout value `x' specified"),
        (
            "-A -t 198.18.0.1:80 -t 198.18.0.2:80",
            "multiple 'service-address' options specified",
        ),
        (
            "-a -t 198.18.0.1:80 -r 198.18.0.2 -g -m",
            "multiple 'forwarding-method' options specified",
        ),
        (
            "-L -c --timeout",
            "The option 'timeout' can't be used with 'connection'",
        ),
        ("-A -f 0", "invalid fwmark value `0' specified"),
        (
            "-a -t 198.18.0.1:80 -r 198.18.0.2 -x -3",
            "illegal u_threshold specified",
        ),
        (
            "-a -t 198.18.0.1:80 -r 198.18.0.2 -y 2147483648",
            "illegal l_threshold specified",
        ),
        ("-t 198.18.0.1:80", "the first option must be a command"),
        ("-nL", "the first option must be a command"),
        ("garbage", "the first option must be a command"),
        ("-L extra", "unexpected argument `extra'"),
        ("-L --bogus", "--bogus: unknown option"),
        ("-Lq", "-q: unknown option"),
        ("-A -t", "-t: missing argument"),
        ("-A --tcp-service", "--tcp-service: missing argument"),
        (
            "-A -t 198.18.0.1:80 -M 255.0.255.0 -p",
            "illegal virtual server persistent mask specified",
        ),
        (
            "-A -t 198.18.0.1:80 -b sh-bogus",
            "invalid scheduler flag `sh-bogus' specified",
        ),
        (
            "--start-daemon slave",
            "illegal start-daemon parameter specified",
        ),
    ];
    for (line, want) in table {
        assert_eq!(&msg(line), want, "for {line:?}");
    }
}

#[test]
fn defaults_and_clusters() {
    assert_eq!(
        p("-A -t 198.18.0.100:80").unwrap(),
        Command::AddService(ServiceSpec {
            key: SvcKey::Addr {
                proto: IPPROTO_TCP,
                vip: V4,
                port: 80
            },
            sched: "wlc".into(),
            flags: 0,
            persistence: None,
            netmask: 32,
            ops: false,
            pe: None,
            check: Default::default(),
            quorum: None,
            sorry: None,
            replace_checks: false,
        })
    );
    let Command::AddService(s) = p("-A -t 198.18.0.100:0 -s rr -p").unwrap() else {
        panic!()
    };
    assert_eq!(s.persistence, Some(360));
    let Command::AddService(s) = p("-A -t 198.18.0.100:80 -p 60 -s rr").unwrap() else {
        panic!()
    };
    assert_eq!((s.persistence, s.sched.as_str()), (Some(60), "rr"));
    let Command::AddService(s) = p("-A -t 198.18.0.100:80 -p60 -srr -M 255.255.255.0").unwrap()
    else {
        panic!()
    };
    assert_eq!((s.persistence, s.netmask), (Some(60), 24));
    let Command::AddService(s) =
        p("--add-service --tcp-service=198.18.0.100:80 --persistent=30").unwrap()
    else {
        panic!()
    };
    assert_eq!(s.persistence, Some(30));
    let Command::List { svc, opts } = p("-Lnc").unwrap() else {
        panic!()
    };
    assert!(svc.is_none() && opts.numeric && opts.connection);
    let Command::List { opts, .. } = p("-Ln --stats --exact").unwrap() else {
        panic!()
    };
    assert!(opts.stats && opts.exact);
    let Command::AddServer { dest, .. } = p("-a -t 198.18.0.100:80 -r 198.18.1.1 -w2").unwrap()
    else {
        panic!()
    };
    assert_eq!((dest.weight, dest.fwd, dest.port), (2, Fwd::Dr, None));
    let Command::AddServer { dest, .. } = p("-a -t 198.18.0.100:80 -r 198.18.1.1:8080 -m").unwrap()
    else {
        panic!()
    };
    assert_eq!(
        (dest.weight, dest.fwd, dest.port),
        (1, Fwd::Nat, Some(8080))
    );
    assert_eq!(
        p("-A -f 10 -6 -p").unwrap(),
        Command::AddService(ServiceSpec {
            key: SvcKey::Fwmark { mark: 10, v6: true },
            sched: "wlc".into(),
            flags: 0,
            persistence: Some(360),
            netmask: 128,
            ops: false,
            pe: None,
            check: Default::default(),
            quorum: None,
            sorry: None,
            replace_checks: false,
        })
    );
    assert_eq!(
        p("--set 0 120 300").unwrap(),
        Command::Set {
            tcp: 0,
            tcpfin: 120,
            udp: 300
        }
    );
    assert_eq!(p("-h").unwrap(), Command::Help);
    assert_eq!(p("--version").unwrap(), Command::Version);
    assert!(matches!(p("").unwrap(), Command::List { svc: None, .. }));
}

#[test]
fn addresses() {
    let v6 = |a: &str| IpAddr::V6(a.parse::<Ipv6Addr>().unwrap());
    // What ipvsadm's parse_service accepts, numeric forms only.
    let good: &[(&str, IpAddr, Option<u16>)] = &[
        ("[2001:2::1]:80", v6("2001:2::1"), Some(80)),
        ("[2001:2::1]:0", v6("2001:2::1"), Some(0)),
        ("[2001:2:0:0:0:0:0:1]:65535", v6("2001:2::1"), Some(65535)),
        ("2001:2::1", v6("2001:2::1"), None),
        // A bare IPv6 address has no port: the last group is the address's.
        ("2001:2::1:80", v6("2001:2::1:80"), None),
        // inet_pton takes IPv4-mapped and dotted-tail forms as IPv6.
        ("[::ffff:198.18.0.1]:80", v6("::ffff:198.18.0.1"), Some(80)),
        ("2001:2::198.18.0.1", v6("2001:2::c612:1"), None),
        ("198.18.0.100:80", V4, Some(80)),
        ("198.18.0.100", V4, None),
    ];
    for &(text, ip, port) in good {
        assert_eq!(parse_addr_port(text), Some((ip, port)), "{text:?}");
    }
    for bad in [
        "",
        ":",
        "[]:1",
        "1.2.3",
        "1.2.3.4:99999",
        "[::1]x",
        "[::1]80",
        "[2001:2::1",
        "[2001:2::1]",
        "[2001:2::1]:",
        "[2001:2::1]:http",
        "[2001:2::1]:65536",
        "[2001:2::1]:-1",
        "[[2001:2::1]]:80",
        "[198.18.0.1]:80",
        "2001:2::1]:80",
        "2001:2:::1",
        "2001:2::1::2",
        "2001:2::g",
        "fe80::1%eth0",
        "[fe80::1%eth0]:80",
        "[fe80::1%1]:80",
        "host",
        "1.2.3.4:-1",
    ] {
        assert_eq!(parse_addr_port(bad), None, "{bad:?}");
    }
}

/// The IPv6 rules of ipvsadm 1.31: messages for malformed input, `-6`
/// after `-f` only, `-M` as a prefix length, families mixed only through
/// a tunnel.
#[test]
fn ipv6_messages() {
    let table: &[(&str, &str)] = &[
        (
            "-A -t [2001:2::1 -p",
            "illegal virtual server address[:port] specified",
        ),
        (
            "-A -t [2001:2::1] -p",
            "illegal virtual server address[:port] specified",
        ),
        (
            "-A -t [::1]x -p",
            "illegal virtual server address[:port] specified",
        ),
        (
            "-A -t [fe80::1%eth0]:80",
            "illegal virtual server address[:port] specified",
        ),
        (
            "-A -u fe80::1%eth0 -p",
            "illegal virtual server address[:port] specified",
        ),
        (
            "-A -t [198.18.0.1]:80",
            "illegal virtual server address[:port] specified",
        ),
        // The port is part of the address: no port, so not without -p.
        (
            "-A -t 2001:2::1:80",
            "Zero port specified for non-persistent service",
        ),
        (
            "-a -t [2001:2::1]:80 -r [2001:2::11",
            "illegal real server address[:port] specified",
        ),
        (
            "-a -t [2001:2::1]:80 -r [2001:2::11]",
            "illegal real server address[:port] specified",
        ),
        (
            "-a -t [2001:2::1]:80 -r [2001:2::11]:x",
            "illegal real server address[:port] specified",
        ),
        ("-A -6 -f 7", "-6 used before -f\n"),
        ("-A -t [2001:2::1]:80 -6", "-6 used before -f\n"),
        ("-L -6", "-6 used before -f\n"),
        ("-Z -6 -f 7", "-6 used before -f\n"),
        (
            "-A -t [2001:2::1]:80 -p -M 0",
            "illegal ipv6 netmask specified",
        ),
        (
            "-A -t [2001:2::1]:80 -p -M 129",
            "illegal ipv6 netmask specified",
        ),
        (
            "-A -t [2001:2::1]:80 -p -M 64x",
            "illegal ipv6 netmask specified",
        ),
        (
            "-A -t [2001:2::1]:80 -p -M ffff:ffff:ffff:ffff::",
            "illegal ipv6 netmask specified",
        ),
        (
            "-A -f 7 -6 -p -M 255.255.255.0",
            "illegal ipv6 netmask specified",
        ),
        (
            "-A -t 198.18.0.1:80 -p -M 255.0.255.0",
            "illegal virtual server persistent mask specified",
        ),
        (
            "-A -f 7 -p -M 2001:2::",
            "illegal virtual server persistent mask specified",
        ),
        (
            "-a -t 198.18.0.1:80 -r 2001:2::11",
            "Different address family is allowed only for tunneling servers",
        ),
        (
            "-a -t 198.18.0.1:80 -r [2001:2::11]:8080 -m",
            "Different address family is allowed only for tunneling servers",
        ),
        (
            "-e -t [2001:2::1]:80 -r 198.18.0.11 -g",
            "Different address family is allowed only for tunneling servers",
        ),
        (
            "-a -f 7 -r 2001:2::11",
            "Different address family is allowed only for tunneling servers",
        ),
        (
            "-a -f 7 -6 -r 198.18.0.11 -m",
            "Different address family is allowed only for tunneling servers",
        ),
        // The family comes before the tunnel options, as in ipvsadm.
        (
            "-a -t 198.18.0.1:80 -r 2001:2::11 -g --tun-type gue",
            "Different address family is allowed only for tunneling servers",
        ),
        (
            "-a -t [2001:2::1]:80 -r 2001:2::11 -g --tun-type gue",
            "Tunnel options conflict with forward method",
        ),
    ];
    for (line, want) in table {
        assert_eq!(&msg(line), want, "for {line:?}");
    }
}

#[test]
fn ipv6_services_and_servers() {
    let v6 = |a: &str| IpAddr::V6(a.parse::<Ipv6Addr>().unwrap());
    // -M: default 128 (and for an IPv6 mark), 1..128 taken as written.
    for (line, mask) in [
        ("-A -t [2001:2::1]:80 -p", 128),
        ("-A -t [2001:2::1]:80 -p -M 64", 64),
        ("-A -t [2001:2::1]:80 -p -M 1", 1),
        ("-A -t [2001:2::1]:80 -p -M 128", 128),
        ("-A -t 2001:2::1 -p 300 -M 48", 48),
        ("-A -f 7 -6 -p -M 64", 64),
        ("-A -f 7 -6 -6", 128),
        ("-A -f 7 -p -M 24", 24),
        ("-A -f 7", 32),
    ] {
        let Ok(Command::AddService(spec)) = p(line) else {
            panic!("{line:?}")
        };
        assert_eq!(spec.netmask, mask, "{line:?}");
    }
    let Ok(Command::AddService(spec)) = p("-A -f 7 -6 -s rr") else {
        panic!()
    };
    assert_eq!(spec.key, SvcKey::Fwmark { mark: 7, v6: true });
    // Servers: a port only in brackets; DR and tunnel take the service's.
    for (line, addr, port, fwd) in [
        (
            "-a -t [2001:2::1]:80 -r [2001:2::11]:8080 -m",
            "2001:2::11",
            Some(8080),
            Fwd::Nat,
        ),
        (
            "-a -t [2001:2::1]:80 -r 2001:2::11",
            "2001:2::11",
            None,
            Fwd::Dr,
        ),
        (
            "-a -t 198.18.0.1:80 -r 2001:2::11 -i",
            "2001:2::11",
            None,
            Fwd::Tun,
        ),
        (
            "-a -t [2001:2::1]:80 -r 198.18.0.11 -i --tun-type gue --tun-port 6080",
            "198.18.0.11",
            None,
            Fwd::Tun,
        ),
        ("-a -f 7 -6 -r 2001:2::11 -g", "2001:2::11", None, Fwd::Dr),
    ] {
        let Ok(Command::AddServer { dest, .. }) = p(line) else {
            panic!("{line:?}")
        };
        let want = addr.parse::<IpAddr>().unwrap();
        assert_eq!(
            (dest.addr, dest.port, dest.fwd),
            (want, port, fwd),
            "{line:?}"
        );
    }
    let Ok(Command::DeleteServer { addr, .. }) = p("-d -t 198.18.0.1:80 -r 2001:2::11") else {
        panic!()
    };
    assert_eq!(addr, v6("2001:2::11"));
}

#[test]
fn tunnel_options() {
    let Command::AddServer { dest, .. } =
        p("-a -t 198.18.0.100:80 -r 198.18.1.1 -i --tun-type gue --tun-port 6080 --tun-csum")
            .unwrap()
    else {
        panic!()
    };
    assert_eq!(
        dest.tun,
        TunConf {
            kind: TunType::Gue,
            port: 6080,
            csum: TunCsum::Csum
        }
    );
    assert!(p("-a -t 198.18.0.100:80 -r 198.18.1.1 --tun-type gre").is_err());
    assert!(p("-a -t 198.18.0.100:80 -r 198.18.1.1 -i --tun-type gue").is_err());
    assert!(p("-a -t 198.18.0.100:80 -r 198.18.1.1 -i --tun-csum").is_err());
    assert!(
        p("-a -t 198.18.0.100:80 -r 198.18.1.1 -i --tun-type gre --tun-csum --tun-nocsum").is_err()
    );
}

#[test]
fn hostile_input_never_panics() {
    let long = "9".repeat(500);
    let lines = [
        format!("-A -t 198.18.0.1:{long}"),
        format!("-a -t 198.18.0.1:80 -r 198.18.0.2 -w {long}"),
        format!("--set {long} {long} {long}"),
        format!("-A -f {long}"),
        "-".to_string(),
        "--".to_string(),
        "--=".to_string(),
        "-p".to_string(),
        "-A -t [::1]:80 -M 0".to_string(),
        "-Léé".to_string(),
        "-A -t é:80".to_string(),
        "-a -t 1.2.3.4:80 -r 1.2.3.5 -i --tun-port 0".to_string(),
    ];
    for l in &lines {
        let _ = p(l);
    }
    let _ = parse(&["-A", "-t", "\u{0}"]);
    let _ = parse(&["-e", "-t", "1.1.1.1:1", "-r", "[::]:0", "-wé"]);
}

#[test]
fn maintenance_feed_and_announce_listing() {
    assert_eq!(p("--maintenance on"), Ok(Command::Maintenance(true)));
    assert_eq!(p("--maintenance=off"), Ok(Command::Maintenance(false)));
    assert_eq!(
        msg("--maintenance maybe"),
        "illegal maintenance parameter specified (on or off)"
    );
    assert_eq!(msg("--maintenance"), "--maintenance: missing argument");
    assert_eq!(
        msg("--maintenance on -n"),
        "Illegal 'numeric' option with the 'maintenance' command"
    );
    assert_eq!(p("--bgp-feed"), Ok(Command::BgpFeed));
    assert_eq!(
        msg("--bgp-feed -t 198.18.0.1:80"),
        "Illegal 'service-address' option with the 'bgp-feed' command"
    );
    match p("-Ln --announce") {
        Ok(Command::List { svc: None, opts }) => assert!(opts.announce && opts.numeric),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        msg("-L --announce -c"),
        "The option 'announce' can't be used with 'connection'"
    );
}

#[test]
fn check_options_parse_on_services_and_servers() {
    let Command::AddService(s) = p(
        "-A -t 198.18.0.100:80 -s rr --check http --check-path /health --check-host www.example \
         --check-method HEAD --check-expect 200-299,301 --check-interval 1 --check-timeout 2 \
         --check-rise 3 --check-fall 4 --check-on-fail remove --quorum 5 --sorry-server 198.18.2.1:8080",
    )
    .unwrap() else {
        panic!()
    };
    let c = &s.check;
    assert_eq!(c.kind, Some(xvs_config::check::CheckKind::Http));
    assert_eq!(
        (c.path.as_deref(), c.host.as_deref()),
        (Some("/health"), Some("www.example"))
    );
    assert_eq!(c.method, Some(xvs_config::check::HttpMethod::Head));
    assert_eq!(c.expect.as_ref().unwrap().to_string(), "200-299,301");
    assert_eq!(
        (c.interval, c.timeout, c.rise, c.fall),
        (Some(1), Some(2), Some(3), Some(4))
    );
    assert_eq!(c.on_fail, Some(xvs_config::check::OnFail::Remove));
    assert_eq!(s.quorum, Some(5));
    assert_eq!(
        s.sorry,
        Some(SorrySpec::Server("198.18.2.1".parse().unwrap(), Some(8080)))
    );
    let Command::EditService(s) = p("-E -t 198.18.0.100:80 --sorry-server none").unwrap() else {
        panic!()
    };
    assert_eq!(
        (s.sorry, s.check.is_empty()),
        (Some(SorrySpec::Clear), true)
    );
    let Command::EditServer { dest, .. } = p(
        "-e -t 198.18.0.100:80 -r 198.18.1.1 --check tcp --check-port 8080 --check-send a\\r\\n \
         --check-receive OK --check-regex ^O.?K",
    )
    .unwrap() else {
        panic!()
    };
    assert_eq!(dest.check.port, Some(8080));
    assert_eq!(dest.check.send.as_deref(), Some("a\\r\\n"));
    assert_eq!(dest.check.regex.as_deref(), Some("^O.?K"));
    let args = [
        "-a",
        "-f",
        "7",
        "-r",
        "198.18.1.1",
        "--check",
        "exec",
        "--check-cmd",
        "/usr/local/bin/probe --vip 198.18.0.1",
    ];
    let Command::AddServer { dest, .. } = parse(&args).unwrap() else {
        panic!()
    };
    assert_eq!(
        dest.check.cmd.as_deref(),
        Some("/usr/local/bin/probe --vip 198.18.0.1")
    );
    // `-L --check` is the listing, without a value.
    let Command::List { opts, .. } = p("-L -n --check").unwrap() else {
        panic!()
    };
    assert!(opts.check && opts.numeric);
}

#[test]
fn check_option_messages() {
    let table: &[(&str, &str)] = &[
        (
            "-A -t 198.18.0.1:80 --check smtp",
            "illegal check type `smtp' specified",
        ),
        ("-A -t 198.18.0.1:80 --check", "--check: missing argument"),
        (
            "-A -t 198.18.0.1:80 --check-port 0",
            "illegal check port specified",
        ),
        (
            "-A -t 198.18.0.1:80 --check-path health",
            "illegal check path `health' specified",
        ),
        (
            "-A -t 198.18.0.1:80 --check-method POST",
            "illegal check method `POST' specified",
        ),
        (
            "-A -t 198.18.0.1:80 --check-expect 200-099",
            "illegal check status list `200-099' specified: invalid HTTP status code '099'",
        ),
        (
            "-A -t 198.18.0.1:80 --check-interval 0",
            "illegal check interval specified",
        ),
        (
            "-A -t 198.18.0.1:80 --check-timeout x",
            "illegal check timeout specified",
        ),
        (
            "-A -t 198.18.0.1:80 --check-rise 0",
            "illegal check rise count specified",
        ),
        (
            "-A -t 198.18.0.1:80 --check-fall 1001",
            "illegal check fall count specified",
        ),
        (
            "-A -t 198.18.0.1:80 --check-on-fail drop",
            "illegal check on-fail action `drop' specified",
        ),
        (
            "-A -t 198.18.0.1:80 --check-send a\\q",
            "illegal check send string specified: invalid escape `\\q' in `a\\q'",
        ),
        (
            "-A -t 198.18.0.1:80 --quorum -1",
            "illegal quorum specified",
        ),
        (
            "-A -t 198.18.0.1:80 --sorry-server foo",
            "illegal sorry server address[:port] specified",
        ),
        (
            "-A -t 198.18.0.1:80 --check tcp --check-path /x",
            "the 'check-path' option is only for http and https checks",
        ),
        (
            "-a -t 198.18.0.1:80 -r 198.18.1.1 --check http --check-cmd /bin/true",
            "the 'check-cmd' option is only for exec checks",
        ),
        (
            "-a -t 198.18.0.1:80 -r 198.18.1.1 --check ping --check-port 80",
            "the 'check-port' option is only for tcp, http, https, udp and vip checks",
        ),
        (
            "-A -t 198.18.0.1:80 --check-method HEAD --check-regex x",
            "the 'check-regex' option needs a body: it can't be used with HEAD",
        ),
        (
            "-a -t 198.18.0.1:80 -r 198.18.1.1 --quorum 2",
            "Illegal 'quorum' option with the 'add-server' command",
        ),
        (
            "-d -t 198.18.0.1:80 -r 198.18.1.1 --check tcp",
            "Illegal 'check' option with the 'delete-server' command",
        ),
        (
            "-D -t 198.18.0.1:80 --sorry-server 198.18.1.1",
            "Illegal 'sorry-server' option with the 'delete-service' command",
        ),
        (
            "-A -t 198.18.0.1:80 --check tcp --check tcp",
            "multiple 'check' options specified",
        ),
        ("-L --check tcp", "unexpected argument `tcp'"),
        (
            "-L -c --check",
            "The option 'check' can't be used with 'connection'",
        ),
    ];
    for (line, want) in table {
        assert_eq!(&msg(line), want, "for {line:?}");
    }
    let m = msg("-A -t 198.18.0.1:80 --check-regex a(b");
    assert!(
        m.starts_with("illegal check regex `a(b' specified: "),
        "{m}"
    );
    assert!(!m.contains('\n'), "{m}");
}
