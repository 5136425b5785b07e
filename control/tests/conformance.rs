//! Conformance: the ipvsadm sessions of shared/seeds replayed through
//! xvsadm's control plane, every listing compared with what ipvsadm
//! printed.
//!
//! The sessions live in `tests/seeds/*.session`: excerpts of the seed pages
//! (commands and ipvsadm's output as the pages show them, original
//! addresses) plus directives: `@map FROM TO` readdresses into
//! 198.18.0.0/15, `$+` marks a command the page evidently ran but does not
//! show (each with a comment saying why), `!= CODE [MESSAGE]` expects a
//! failure, `!active`/`!counters` set live numbers the page's listing shows
//! (connections and traffic xvs cannot replay here), `!restore-saved`
//! restores the last `-S` output.
//!
//! Two comparisons per listing line:
//! - against the page: where the page kept ipvsadm's spacing
//!   (`@whitespace intact`) the line must equal the page's line re-rendered
//!   by the format oracle below at the readdressed width (the page may have
//!   lost trailing spaces; the oracle is first checked against the page's
//!   own bytes at the original addresses, modulo those trailing spaces);
//!   where the page mangled whitespace (`@whitespace mangled`: non-breaking
//!   spaces, joined words) the line must equal it with all whitespace
//!   removed;
//! - against the format strings of IPVS.md section 2, byte for byte,
//!   trailing spaces included ([`oracle`], written from those strings and
//!   independent of `listing.rs`).

use xvs_config::stats::CounterValues;
use xvs_control::grammar::{self, Command, HINT};
use xvs_control::listing::addr_port;
use xvs_control::{Control, NoRuntime, Request};

const SESSIONS: [(&str, &str); 5] = [
    ("000", include_str!("seeds/000.session")),
    ("001", include_str!("seeds/001.session")),
    ("002", include_str!("seeds/002.session")),
    ("003", include_str!("seeds/003.session")),
    ("004", include_str!("seeds/004.session")),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Normal,
    Stats,
    PersistConn,
    Thresholds,
    Save,
    Other,
}

fn kind(args: &[String]) -> Kind {
    let has = |o: &str| args.iter().any(|a| a == o);
    let cmd = grammar::parse(args).ok();
    match cmd {
        Some(Command::Save { .. }) => Kind::Save,
        Some(Command::List { opts, .. }) if opts.connection || opts.timeout || opts.daemon => {
            Kind::Other
        }
        Some(Command::List { .. }) if has("--stats") || has("--rate") => Kind::Stats,
        Some(Command::List { .. }) if has("--thresholds") => Kind::Thresholds,
        Some(Command::List { .. }) if has("--persistent-conn") => Kind::PersistConn,
        _ => Kind::Normal,
    }
}

/// Render a listing line from its words by IPVS.md section 2's format
/// strings.
fn oracle(line: &str, kind: Kind) -> String {
    let w: Vec<&str> = line.split_whitespace().collect();
    let tail = |from: usize| w[from.min(w.len())..].join(" ");
    let nums = |from: usize| -> String {
        w[from.min(w.len())..]
            .iter()
            .map(|n| format!("{n:>9}"))
            .collect()
    };
    match (kind, w.as_slice()) {
        (Kind::Save | Kind::Other, _) => {
            if w.first() == Some(&"pro") {
                // "pro expire %-11s %-18s %-18s %s"
                return format!(
                    "pro expire {:<11} {:<18} {:<18} {}",
                    w[2],
                    w[3],
                    w[4],
                    tail(5)
                );
            }
            if w.len() == 6 && kind == Kind::Other && w[0].len() <= 3 && w[1].contains(':') {
                // "%-3s %-6s %-11s %-18s %-18s %s"
                return format!(
                    "{:<3} {:<6} {:<11} {:<18} {:<18} {}",
                    w[0], w[1], w[2], w[3], w[4], w[5]
                );
            }
            w.join(" ")
        }
        (_, ["IP", ..]) => w.join(" "),
        (_, ["Prot", "LocalAddress:Port", "Scheduler", "Flags"]) => w.join(" "),
        (_, ["->", "RemoteAddress:Port", "Forward", ..]) => {
            "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn".to_string()
        }
        (_, ["->", "RemoteAddress:Port"]) => "  -> RemoteAddress:Port".to_string(),
        (Kind::Stats, ["Prot", "LocalAddress:Port", c @ ..]) if c.len() == 5 => format!(
            "{:<33} {:>8} {:>8} {:>8} {:>8} {:>8}",
            "Prot LocalAddress:Port", c[0], c[1], c[2], c[3], c[4]
        ),
        (Kind::Thresholds, ["Prot", "LocalAddress:Port", c @ ..]) if c.len() == 4 => format!(
            "{:<33} {:<10} {:<10} {:<10} {:<10}",
            "Prot LocalAddress:Port", c[0], c[1], c[2], c[3]
        ),
        (Kind::PersistConn, ["Prot", "LocalAddress:Port", c @ ..]) if c.len() == 4 => format!(
            "{:<33} {:<9} {:<11} {:<10} {:<10}",
            "Prot LocalAddress:Port", c[0], c[1], c[2], c[3]
        ),
        (Kind::Stats, ["->", addr, ..]) => format!("  -> {addr:<28}{}", nums(2)),
        (Kind::Stats, [proto, addr, ..]) => {
            format!("{:<33}{}", format!("{proto:<4} {addr}"), nums(2))
        }
        (Kind::Thresholds, ["->", a, x, y, act, ina]) => {
            format!("  -> {a:<28} {x:<10} {y:<10} {act:<10} {ina:<10}")
        }
        (Kind::PersistConn, ["->", a, wt, p, act, ina]) => {
            format!("  -> {a:<28} {wt:<9} {p:<11} {act:<10} {ina:<10}")
        }
        (_, ["->", a, fwd, wt, act, ina]) => {
            format!("  -> {a:<28} {fwd:<7} {wt:<6} {act:<10} {ina:<10}")
        }
        (_, ["FWM", mark, ..]) => format!("FWM  {mark} {}", tail(2)),
        (_, [proto, addr, ..]) => format!("{proto:<4} {addr} {}", tail(2)),
        _ => w.join(" "),
    }
}

fn no_ws(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}

#[derive(Debug, Default)]
struct Step {
    line_no: usize,
    cmd: Vec<String>,
    fail: Option<(i32, Option<String>)>,
    seed: Vec<String>,
    mapped: Vec<String>,
}

#[derive(Debug)]
enum Item {
    Run(Step),
    Active(Vec<String>, String, u32),
    Counters(Vec<String>, [u64; 5]),
    RestoreSaved,
}

struct Session {
    mangled: bool,
    items: Vec<Item>,
}

fn parse_session(text: &str) -> Session {
    let mut maps: Vec<(String, String)> = Vec::new();
    let mut mangled = None;
    let mut items = Vec::new();
    let map = |maps: &[(String, String)], s: &str| -> String {
        let mut s = s.to_string();
        for (a, b) in maps {
            s = s.replace(a.as_str(), b.as_str());
        }
        s
    };
    for (n, line) in text.lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("@map ") {
            let (a, b) = rest.split_once(' ').expect("@map FROM TO");
            maps.push((a.to_string(), b.to_string()));
        } else if let Some(rest) = line.strip_prefix("@whitespace ") {
            mangled = Some(rest == "mangled");
        } else if line.starts_with("@seed ") {
        } else if let Some(cmd) = line.strip_prefix("$ ").or_else(|| line.strip_prefix("$+ ")) {
            let mut words: Vec<String> = map(&maps, cmd)
                .split_whitespace()
                .map(String::from)
                .collect();
            match words.first().map(String::as_str) {
                Some("ipvsadm") => {
                    words.remove(0);
                }
                Some("ipvsadm-save") => words[0] = "-S".into(),
                other => panic!("line {}: not an ipvsadm command: {other:?}", n + 1),
            }
            items.push(Item::Run(Step {
                line_no: n + 1,
                cmd: words,
                ..Step::default()
            }));
        } else if let Some(rest) = line.strip_prefix("!= ") {
            let Some(Item::Run(step)) = items.last_mut() else {
                panic!("line {}: != without a command", n + 1)
            };
            let (code, msg) = match rest.split_once(' ') {
                Some((c, m)) => (c, Some(m.to_string())),
                None => (rest, None),
            };
            step.fail = Some((code.parse().expect("exit code"), msg));
        } else if let Some(rest) = line.strip_prefix("!active ") {
            let w: Vec<String> = map(&maps, rest)
                .split_whitespace()
                .map(String::from)
                .collect();
            items.push(Item::Active(
                w[..2].to_vec(),
                w[2].clone(),
                w[3].parse().expect("count"),
            ));
        } else if let Some(rest) = line.strip_prefix("!counters ") {
            let w: Vec<String> = map(&maps, rest)
                .split_whitespace()
                .map(String::from)
                .collect();
            let v: Vec<u64> = w[2..].iter().map(|x| x.parse().expect("number")).collect();
            items.push(Item::Counters(
                w[..2].to_vec(),
                [v[0], v[1], v[2], v[3], v[4]],
            ));
        } else if line == "!restore-saved" {
            items.push(Item::RestoreSaved);
        } else {
            let Some(Item::Run(step)) = items.last_mut() else {
                panic!("line {}: output without a command", n + 1)
            };
            step.seed.push(line.to_string());
            step.mapped.push(map(&maps, line));
        }
    }
    Session {
        mangled: mangled.expect("@whitespace intact|mangled"),
        items,
    }
}

fn key_of(svc: &[String]) -> xvs_config::svc::SvcKey {
    let mut args = vec!["-L".to_string()];
    args.extend_from_slice(svc);
    match grammar::parse(&args) {
        Ok(Command::List { svc: Some(k), .. }) => k,
        other => panic!("bad service {svc:?}: {other:?}"),
    }
}

/// Replays one session; returns how many listing lines were compared with
/// the page.
fn replay(name: &str, text: &str) -> usize {
    let session = parse_session(text);
    let mut c = Control::new();
    let mut last_save = String::new();
    let mut compared = 0;
    for item in &session.items {
        let step = match item {
            Item::Run(step) => step,
            Item::Active(svc, dest, n) => {
                let m = c.model();
                let s = m.service(&key_of(svc)).expect("service of !active");
                let d = s
                    .dests
                    .iter()
                    .find(|d| addr_port(d.addr, d.port) == *dest)
                    .expect("server of !active");
                d.load
                    .active
                    .store(*n, std::sync::atomic::Ordering::Relaxed);
                continue;
            }
            Item::Counters(svc, v) => {
                let m = c.model();
                let s = m.service(&key_of(svc)).expect("service of !counters");
                s.counters.add_values(CounterValues {
                    conns: v[0],
                    inpkts: v[1],
                    outpkts: v[2],
                    inbytes: v[3],
                    outbytes: v[4],
                });
                continue;
            }
            Item::RestoreSaved => {
                let r = c.execute(
                    &Request {
                        args: vec!["-R".into()],
                        stdin: Some(last_save.clone()),
                    },
                    &NoRuntime,
                );
                assert_eq!(r.code, 0, "{name}: restore: {}", r.stderr);
                continue;
            }
        };
        let at = format!("session {name} line {}: {:?}", step.line_no, step.cmd);
        let r = c.execute(
            &Request {
                args: step.cmd.clone(),
                stdin: None,
            },
            &NoRuntime,
        );
        match &step.fail {
            Some((code, msg)) => {
                assert_eq!(r.code, *code, "{at}: {}", r.stderr);
                assert_eq!(r.stdout, "", "{at}");
                if let Some(m) = msg {
                    assert_eq!(r.stderr.lines().next(), Some(m.as_str()), "{at}");
                }
                if *code == 2 {
                    assert!(r.stderr.ends_with(&format!("\n{HINT}\n")), "{at}");
                }
                continue;
            }
            None => assert_eq!((r.code, r.stderr.as_str()), (0, ""), "{at}"),
        }
        let k = kind(&step.cmd);
        if k == Kind::Save {
            last_save = r.stdout.clone();
        }
        let ours: Vec<&str> = r.stdout.lines().collect();
        // Byte for byte against the format of IPVS.md section 2.
        for l in &ours {
            assert_eq!(*l, oracle(l, k), "{at}: line does not follow the format");
        }
        if step.seed.is_empty() {
            continue;
        }
        assert_eq!(
            ours.len(),
            step.mapped.len(),
            "{at}: line count\nours:\n{}\npage:\n{}",
            r.stdout,
            step.mapped.join("\n")
        );
        for ((l, seed), mapped) in ours.iter().zip(&step.seed).zip(&step.mapped) {
            if session.mangled {
                assert_eq!(no_ws(l), no_ws(mapped), "{at}");
            } else {
                // The oracle reproduces the page's own bytes...
                assert_eq!(
                    oracle(seed, k).trim_end(),
                    seed.trim_end(),
                    "{at}: the format oracle disagrees with ipvsadm's output"
                );
                // ...and ours equals the page re-rendered at our addresses,
                // trailing spaces included.
                assert_eq!(*l, oracle(mapped, k), "{at}");
            }
            compared += 1;
        }
    }
    compared
}

#[test]
fn every_seed_session_replays_byte_for_byte() {
    let mut total = 0;
    for (name, text) in SESSIONS {
        let n = replay(name, text);
        eprintln!("session {name}: {n} listing lines compared with the page");
        total += n;
    }
    assert!(total >= 80, "only {total} lines compared");
}

#[test]
fn oracle_matches_the_format_strings() {
    // Spot checks of the oracle itself against IPVS.md section 2's example.
    assert_eq!(
        oracle("-> 192.168.2.100:80 Masq 2 0 0", Kind::Normal),
        "  -> 192.168.2.100:80             Masq    2      0          0         "
    );
    assert_eq!(
        oracle("TCP 192.168.4.5:80 wrr", Kind::Normal),
        "TCP  192.168.4.5:80 wrr"
    );
    assert_eq!(
        oracle(
            "Prot LocalAddress:Port Conns InPkts OutPkts InBytes OutBytes",
            Kind::Stats
        ),
        "Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes"
    );
}
