//! Every message of IPVS.md section 1, through `Control::execute`, with its
//! exit status: 2 and the hint for command-line errors, 255 for refusals, 1
//! for listing what does not exist. A failed command never changes the
//! table nor its generation.

use xvs_control::grammar::HINT;
use xvs_control::model::Limits;
use xvs_control::{Control, NoRuntime, Request};

mod common;
use common::run;

const BASE: &[&str] = &[
    "-A -t 198.18.0.1:80 -s rr",
    "-a -t 198.18.0.1:80 -r 198.18.1.1",
    "-A -u 198.18.0.53:53 -s rr",
];

fn control(limits: Limits) -> Control {
    let mut c = Control::with_config(limits, 4096);
    for l in BASE {
        let r = run(&mut c, l);
        assert_eq!(r.code, 0, "{l}: {}", r.stderr);
    }
    c
}

fn save(c: &mut Control) -> String {
    run(c, "-S").stdout
}

fn check(c: &mut Control, line: &str, code: i32, msg: &str) {
    let before = save(c);
    let g = c.generation();
    let r = run(c, line);
    let want = if code == 2 {
        format!("{msg}\n{HINT}\n")
    } else {
        format!("{msg}\n")
    };
    assert_eq!(
        (r.code, r.stdout.as_str(), r.stderr.as_str()),
        (code, "", want.as_str()),
        "{line}"
    );
    assert_eq!(save(c), before, "{line} changed the table");
    assert_eq!(c.generation(), g, "{line} bumped the generation");
}

#[test]
fn refusals_exit_255_with_ipvs_messages() {
    let table: &[(&str, &str)] = &[
        ("-A -t 198.18.0.1:80", "Service already exists"),
        ("-A -t 198.18.0.1:80 -s bogus", "Service already exists"),
        (
            "-A -t 198.18.0.2:80 -s bogus",
            "Scheduler or persistence engine not found",
        ),
        (
            "-E -t 198.18.0.1:80 -s bogus",
            "Scheduler or persistence engine not found",
        ),
        (
            "-A -t 198.18.0.2:80 -p --pe bogus",
            "Scheduler or persistence engine not found",
        ),
        ("-E -t 198.18.0.2:80", "No such service"),
        ("-D -t 198.18.0.2:80", "No such service"),
        ("-D -u 198.18.0.1:80", "No such service"),
        ("-D -f 1", "No such service"),
        ("-Z -t 198.18.0.2:80", "No such service"),
        ("-a -t 198.18.0.2:80 -r 198.18.1.1", "Service not defined"),
        ("-e -t 198.18.0.2:80 -r 198.18.1.1", "Service not defined"),
        ("-d -t 198.18.0.2:80 -r 198.18.1.1", "Service not defined"),
        ("-a -f 3 -r 198.18.1.1", "Service not defined"),
        (
            "-a -t 198.18.0.1:80 -r 198.18.1.1",
            "Destination already exists",
        ),
        (
            "-a -t 198.18.0.1:80 -r 198.18.1.1:80 -m",
            "Destination already exists",
        ),
        (
            "-a -t 198.18.0.1:80 -r 198.18.1.1:81 -i",
            "Destination already exists",
        ),
        ("-e -t 198.18.0.1:80 -r 198.18.1.2", "No such destination"),
        (
            "-e -t 198.18.0.1:80 -r 198.18.1.1:81 -m",
            "No such destination",
        ),
        ("-d -t 198.18.0.1:80 -r 198.18.1.2", "No such destination"),
        (
            "-a -t 198.18.0.1:80 -r 198.18.1.2 -x 5 -y 6",
            "Numerical result out of range",
        ),
        (
            "-e -t 198.18.0.1:80 -r 198.18.1.1 -y 1",
            "Numerical result out of range",
        ),
        (
            "-a -t 198.18.0.1:80 -r 0.0.0.0",
            "Invalid operation.  Possibly wrong module version, address not unicast, ...",
        ),
        (
            "-a -t 198.18.0.1:80 -r 255.255.255.255",
            "Invalid operation.  Possibly wrong module version, address not unicast, ...",
        ),
        (
            "-a -t 198.18.0.1:80 -r 239.1.1.1",
            "Invalid operation.  Possibly wrong module version, address not unicast, ...",
        ),
        (
            "-a -t 198.18.0.1:80 -r fe80::1 -i",
            "Invalid operation.  Possibly wrong module version, address not unicast, ...",
        ),
        ("--stop-daemon master", "No daemon is running"),
        ("--stop-daemon backup --syncid 2", "No daemon is running"),
        // What xvs cannot honour is refused, saying so.
        (
            "-A -t 198.18.0.2:5060 -p --pe sip",
            "xvs has no SIP persistence engine: --pe sip is not supported",
        ),
        (
            "-E -t 198.18.0.1:80 -p --pe sip",
            "xvs has no SIP persistence engine: --pe sip is not supported",
        ),
    ];
    for (line, msg) in table {
        check(&mut control(Limits::default()), line, 255, msg);
    }
    // A table is full.
    let mut c = control(Limits {
        max_services: 2,
        max_dests: 1,
    });
    check(
        &mut c,
        "-A -t 198.18.0.3:80",
        255,
        "Memory allocation problem",
    );
    check(
        &mut c,
        "-a -t 198.18.0.1:80 -r 198.18.1.2",
        255,
        "Memory allocation problem",
    );
}

#[test]
fn listing_what_does_not_exist_exits_1() {
    let mut c = control(Limits::default());
    for line in [
        "-L -t 198.18.0.2:80",
        "-L -n -u 198.18.0.1:80",
        "-l -f 9",
        "-L --stats -t 198.18.0.2:80",
        "-L --json -t 198.18.0.2:80",
    ] {
        check(&mut c, line, 1, "No such service");
    }
}

#[test]
fn command_line_errors_exit_2_with_the_hint() {
    let table: &[(&str, &str)] = &[
        (
            "-A -t 198.18.0.300:80",
            "illegal virtual server address[:port] specified",
        ),
        (
            "-A -u 198.18.0.1:99999",
            "illegal virtual server address[:port] specified",
        ),
        (
            "-D --sctp-service x:1",
            "illegal virtual server address[:port] specified",
        ),
        (
            "-a -t 198.18.0.1:80 -r 198.18.1",
            "illegal real server address[:port] specified",
        ),
        (
            "-d -t 198.18.0.1:80 -r [::1",
            "illegal real server address[:port] specified",
        ),
        (
            "-a -t 198.18.0.1:80 -r 198.18.1.2 -w 65536",
            "illegal weight specified",
        ),
        (
            "-e -t 198.18.0.1:80 -r 198.18.1.1 -w -1",
            "illegal weight specified",
        ),
        ("-A -E", "multiple commands specified"),
        ("-L -Z", "multiple commands specified"),
        ("-C --clear", "multiple commands specified"),
        (
            "-A -s rr",
            "You need to supply the 'service-address' option for the 'add-service' command",
        ),
        (
            "-E -p",
            "You need to supply the 'service-address' option for the 'edit-service' command",
        ),
        (
            "-D",
            "You need to supply the 'service-address' option for the 'delete-service' command",
        ),
        (
            "-a -r 198.18.1.1",
            "You need to supply the 'service-address' option for the 'add-server' command",
        ),
        (
            "-e -t 198.18.0.1:80",
            "You need to supply the 'real-server' option for the 'edit-server' command",
        ),
        (
            "-d -t 198.18.0.1:80",
            "You need to supply the 'real-server' option for the 'delete-server' command",
        ),
        (
            "-A -t 198.18.0.2:80 -r 198.18.1.1",
            "Illegal 'real-server' option with the 'add-service' command",
        ),
        (
            "-a -t 198.18.0.1:80 -r 198.18.1.2 -s rr",
            "Illegal 'scheduler' option with the 'add-server' command",
        ),
        (
            "-d -t 198.18.0.1:80 -r 198.18.1.1 -w 1",
            "Illegal 'weight' option with the 'delete-server' command",
        ),
        ("-C -n", "Illegal 'numeric' option with the 'flush' command"),
        (
            "-S -t 198.18.0.1:80",
            "Illegal 'service-address' option with the 'save' command",
        ),
        (
            "-R -n",
            "Illegal 'numeric' option with the 'restore' command",
        ),
        (
            "-Z --stats",
            "Illegal 'stats' option with the 'zero' command",
        ),
        ("-L -w 1", "Illegal 'weight' option with the 'list' command"),
        (
            "--set 1 2 3 -n",
            "Illegal 'numeric' option with the 'set' command",
        ),
        (
            "-A -t 198.18.0.2:0",
            "Zero port specified for non-persistent service",
        ),
        (
            "-E -u 198.18.0.53",
            "Zero port specified for non-persistent service",
        ),
        (
            "-A -t 198.18.0.2:53 -o",
            "One-Packet Scheduling is only for UDP virtual services",
        ),
        (
            "-E -f 1 --ops",
            "One-Packet Scheduling is only for UDP virtual services",
        ),
        (
            "-A -t 198.18.0.2:80 -p 0",
            "invalid timeout value `0' specified",
        ),
        (
            "-A -t 198.18.0.2:80 -p 2678401",
            "invalid timeout value `2678401' specified",
        ),
        ("--set 900 x 300", "invalid timeout value `x' specified"),
        (
            "--set 2678401 0 0",
            "invalid timeout value `2678401' specified",
        ),
        ("--set", "--set option requires 3 timeout values"),
        ("--set 1 2", "--set option requires 3 timeout values"),
    ];
    let mut c = control(Limits::default());
    for (line, msg) in table {
        check(&mut c, line, 2, msg);
    }
}

#[test]
fn defaults_and_limits_of_section_1() {
    let mut c = Control::new();
    for l in [
        "-A -t 198.18.0.1:80",
        "-A -t 198.18.0.2:0 -p",
        "-A -t 198.18.0.3:80 -p 2678400",
        "-A -t 198.18.0.4:80 -p 1",
        "-a -t 198.18.0.1:80 -r 198.18.1.1",
        "-a -t 198.18.0.1:80 -r 198.18.1.2 -w 65535 -x 2147483647 -y 2147483647",
        "-a -t 198.18.0.1:80 -r 198.18.1.3 -i",
        "--set 0 0 0",
    ] {
        assert_eq!(run(&mut c, l).code, 0, "{l}");
    }
    assert_eq!(
        save(&mut c),
        "-A -t 198.18.0.1:80 -s wlc\n\
-a -t 198.18.0.1:80 -r 198.18.1.1:80 -g -w 1\n\
-a -t 198.18.0.1:80 -r 198.18.1.2:80 -g -w 65535 -x 2147483647 -y 2147483647\n\
-a -t 198.18.0.1:80 -r 198.18.1.3:80 -i -w 1 --tun-type ipip\n\
-A -t 198.18.0.2:0 -s wlc -p 360\n\
-A -t 198.18.0.3:80 -s wlc -p 2678400\n\
-A -t 198.18.0.4:80 -s wlc -p 1\n"
    );
    assert_eq!(
        run(&mut c, "-L --timeout").stdout,
        "Timeout (tcp tcpfin udp): 900 120 300\n"
    );
    // 10,000 services fit the default limits (IPVS has no hard limit).
    let mut big = String::new();
    for i in 0..10_000 {
        big.push_str(&format!("-A -t 198.19.{}.{}:80\n", i / 250, i % 250 + 1));
    }
    let r = c.execute(
        &Request {
            args: vec!["-R".into()],
            stdin: Some(big),
        },
        &NoRuntime,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(c.model().services.len(), 10_004);
}

#[test]
fn firewall_marks_are_set_listed_in_save_and_restored() {
    use xvs_control::{Control, NoRuntime, Request};
    let mut c = Control::new();
    let run = |c: &mut Control, args: &[&str], stdin: Option<&str>| {
        c.execute(
            &Request {
                args: args.iter().map(|s| s.to_string()).collect(),
                stdin: stdin.map(str::to_string),
            },
            &NoRuntime,
        )
    };
    for args in [
        &["--set-mark", "10", "-t", "198.18.0.100:80"][..],
        &["--set-mark", "10", "-t", "198.18.0.100:8080"],
        &["--set-mark", "10", "-t", "198.18.0.100:22"],
        &["-A", "-f", "10", "-s", "rr", "-p"],
        &["-a", "-f", "10", "-r", "198.18.0.11", "-g"],
    ] {
        let r = run(&mut c, args, None);
        assert_eq!(r.code, 0, "{args:?}: {}", r.stderr);
    }
    let saved = run(&mut c, &["-S", "-n"], None).stdout;
    assert!(
        saved.starts_with("--set-mark 10 -t 198.18.0.100:80\n"),
        "{saved}"
    );
    assert!(saved.contains("-A -f 10 -s rr -p 360"), "{saved}");
    let mut d = Control::new();
    let r = run(&mut d, &["-R"], Some(&saved));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        run(&mut d, &["-S", "-n"], None).stdout,
        saved,
        "restore is identical"
    );
    // Errors: no port, a fwmark service, an absent mark, a bad mark.
    assert_eq!(
        run(&mut c, &["--set-mark", "10", "-t", "198.18.0.100"], None).code,
        2
    );
    assert_eq!(run(&mut c, &["--set-mark", "10", "-f", "3"], None).code, 2);
    assert_eq!(
        run(&mut c, &["--set-mark", "0", "-t", "198.18.0.100:80"], None).code,
        2
    );
    let r = run(&mut c, &["--del-mark", "-t", "198.18.0.100:81"], None);
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (255, "No such firewall mark assignment\n")
    );
    assert_eq!(
        run(&mut c, &["--del-mark", "-t", "198.18.0.100:22"], None).code,
        0
    );
    assert!(!run(&mut c, &["-S"], None).stdout.contains(":22"));
}
