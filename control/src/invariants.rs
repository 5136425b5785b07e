//! Properties every input must keep, for fuzzers and randomized tests.
//!
//! The cargo-fuzz targets in `fuzz/` and the deterministic randomized test
//! in `tests/fuzz.rs` feed arbitrary argument vectors and restore inputs
//! through these functions, which panic when a property breaks:
//!
//! - nothing panics, and the exit status is one of ipvsadm's;
//! - a command-line error (exit 2) ends with the hint line;
//! - a refused or failed change (including a failing `-R`) leaves the
//!   configuration and its generation exactly as they were;
//! - a successful change leaves a table whose `-S` output, restored into
//!   an empty daemon, saves back identically.
//!
//! It is test support, compiled only with the `testkit` feature (which
//! control's own tests and the fuzz crate turn on), so it never ships in
//! xvsadm or xvsd.

use crate::grammar::{self, HINT};
use crate::{Control, NoRuntime, Request};

/// The configuration every check starts from: a little of everything.
pub const BASE_RULES: &str = "\
-A -t 198.18.0.1:80 -s rr
-a -t 198.18.0.1:80 -r 198.18.1.1:80 -g -w 1
-a -t 198.18.0.1:80 -r 198.18.1.2:8080 -m -w 3 -x 10 -y 5
-A -u 198.18.0.53:53 -s sh -b sh-port -o
-a -u 198.18.0.53:53 -r 198.18.1.3:53 -i -w 2 --tun-type gue --tun-port 6080 --tun-csum
-A -f 7 -s wlc -p 60 -M 255.255.255.0
-a -f 7 -r 198.18.1.4:0 -g -w 1
-A -t [2001:2::1]:443 -s mh -b mh-fallback -p 360
";

/// A control plane holding [`BASE_RULES`].
pub fn base() -> Control {
    let mut c = Control::new();
    let r = restore(&mut c, BASE_RULES);
    assert_eq!(r.code, 0, "base rules refused: {}", r.stderr);
    c
}

fn restore(c: &mut Control, rules: &str) -> crate::Response {
    c.execute(
        &Request {
            args: vec!["-R".into()],
            stdin: Some(rules.into()),
        },
        &NoRuntime,
    )
}

/// `-S` of `c`.
pub fn save(c: &mut Control) -> String {
    let r = c.execute(
        &Request {
            args: vec!["-S".into()],
            stdin: None,
        },
        &NoRuntime,
    );
    assert_eq!(r.code, 0);
    r.stdout
}

/// Restoring `saved` into an empty control plane saves back identically.
pub fn check_round_trip(saved: &str) {
    let mut fresh = Control::new();
    let r = restore(&mut fresh, saved);
    assert_eq!(r.code, 0, "own save not restorable: {}\n{saved}", r.stderr);
    assert_eq!(save(&mut fresh), saved, "restore of a save differs");
}

fn check_status(r: &crate::Response) {
    assert!(
        matches!(r.code, 0 | 1 | 2 | 255),
        "exit status {} is none of ipvsadm's",
        r.code
    );
    if r.code == 2 {
        assert!(
            r.stderr.ends_with(&format!("\n{HINT}\n")),
            "exit 2 without the hint: {:?}",
            r.stderr
        );
    }
    if r.code != 0 {
        assert!(!r.stderr.is_empty(), "failure without a message");
    }
}

/// Run one argument vector (with `stdin` for `-R`) against `c`; returns
/// the exit status.
pub fn check_args_on(c: &mut Control, args: &[String], stdin: Option<&str>) -> i32 {
    let before = save(c);
    let generation = c.generation();
    let r = c.execute(
        &Request {
            args: args.to_vec(),
            stdin: stdin.map(String::from),
        },
        &NoRuntime,
    );
    check_status(&r);
    let after = save(c);
    let change = grammar::parse(args)
        .map(|cmd| cmd.is_change() || cmd == grammar::Command::Restore)
        .unwrap_or(false);
    if r.code != 0 || !change {
        assert_eq!(
            after, before,
            "{args:?} (exit {}) changed the table",
            r.code
        );
        if r.code != 0 {
            assert_eq!(c.generation(), generation, "{args:?} failed but bumped");
        }
    } else if after != before {
        check_round_trip(&after);
    }
    r.code
}

/// Run one argument vector against a fresh [`base`]; returns the exit
/// status.
pub fn check_args(args: &[String]) -> i32 {
    check_args_on(&mut base(), args, None)
}

/// Restore `rules` into a fresh [`base`]: all or nothing. Returns the exit
/// status.
pub fn check_restore(rules: &str) -> i32 {
    let mut c = base();
    let before = save(&mut c);
    let generation = c.generation();
    let r = restore(&mut c, rules);
    check_status(&r);
    assert!(matches!(r.code, 0 | 2 | 255), "restore exit {}", r.code);
    let after = save(&mut c);
    if r.code == 0 {
        check_round_trip(&after);
    } else {
        assert_eq!(after, before, "failing restore changed the table");
        assert_eq!(c.generation(), generation, "failing restore bumped");
    }
    r.code
}

/// Split fuzzer bytes into arguments at NUL bytes (lossy UTF-8), at most
/// 64 of them.
pub fn args_from_bytes(data: &[u8]) -> Vec<String> {
    if data.is_empty() {
        return Vec::new();
    }
    data.split(|b| *b == 0)
        .take(64)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}
