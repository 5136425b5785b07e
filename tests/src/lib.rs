//! End-to-end test harness of xvs.
//!
//! Unit tests drive the pipeline through in-memory ports; this crate is the
//! other end: real Linux network namespaces joined by veth pairs on a bridge,
//! a real `xvsd` attached to the director's interface, and real TCP/UDP
//! clients and servers (`xvs-node`). What passes here works on a wire.
//!
//! Rules the harness keeps so that tests can run in parallel and never leak:
//! every namespace and link name carries a per-run prefix
//! ([`netns::unique_prefix`]), only 198.18.0.0/15 addresses are used and only
//! inside namespaces the harness created, nothing in the root namespace is
//! touched, and every resource is owned by a guard whose `Drop` removes it,
//! also when a test panics.

#![forbid(unsafe_code)]

pub mod cluster;
pub mod daemon;
pub mod health;
pub mod lan6;
pub mod lans;
pub mod listing;
pub mod netns;
pub mod node;
pub mod rig;
pub mod unshared;

use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Polls `f` every `poll` until it holds, at most `within` (it is asked
/// once more after that); whether it held.
pub fn wait_until(within: Duration, poll: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(poll);
    }
}

/// True when the process runs as root (uid 0), which network namespaces need.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// Directory holding the workspace binaries (`xvsd`, `xvsadm`, `xvs-node`).
///
/// `XVS_BIN_DIR` wins when set; otherwise it is the directory of the running
/// test executable, minus a trailing `deps` (integration tests live in
/// `target/{profile}/deps/`, binaries in `target/{profile}/`).
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("XVS_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("cannot find the running executable");
    let mut dir = exe
        .parent()
        .expect("executable has no parent directory")
        .to_path_buf();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.pop();
    }
    dir
}

/// The Cargo profile the binaries of [`bin_dir`] were built with, as
/// `cargo --profile` names it: the directory's name (`release`, `ci`),
/// except `dev` for `debug`.
pub fn bin_profile() -> String {
    let dir = bin_dir();
    match dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev".into(),
        Some(name) => name.into(),
        None => "release".into(),
    }
}

/// Path of the workspace binary `name`; panics with the build command to run
/// when it has not been built.
pub fn bin(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.is_file(),
        "{} not found: build the binaries of the same profile first, \
         e.g. `cargo build --profile ci --workspace --bins` for `cargo test \
         --profile ci` (scripts/test.sh does this)",
        path.display()
    );
    path
}
