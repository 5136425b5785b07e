//! The Debian package: built from the binaries the tests run (the
//! release profile, or `ci` under scripts/test.sh) with cargo-deb
//! (as `scripts/package.sh` does), it must carry the binaries, the systemd
//! unit, the man pages and the default files where a system service
//! expects them, and its binaries must run once unpacked.
//!
//! cargo-deb itself is installed by `scripts/lib.sh`'s set-up (it takes
//! minutes to build); this test fails, rather than skips, without it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

fn run(cmd: &mut Command) -> Output {
    let what = format!("{cmd:?}");
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Builds the .deb from the existing binaries of the tests' profile into
/// `dir`.
fn build_deb(dir: &Path) -> PathBuf {
    let has_cargo_deb = Command::new(cargo())
        .args(["deb", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        has_cargo_deb,
        "cargo-deb is not installed: run scripts/package.sh (or \
         `cargo install cargo-deb --locked`), as scripts/lib.sh's set-up does"
    );
    // The binaries the package takes; fails here, clearly, if they are not
    // built.
    xvs_tests::bin("xvsd");
    xvs_tests::bin("xvsadm");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    run(Command::new(cargo())
        .current_dir(root)
        .args([
            "deb",
            "-p",
            "xvs-daemon",
            "--no-build",
            "--profile",
            &xvs_tests::bin_profile(),
            "--fast",
            "--output",
        ])
        .arg(dir));
    let debs: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read the output directory")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "deb"))
        .collect();
    assert_eq!(debs.len(), 1, "one .deb in {}: {debs:?}", dir.display());
    debs[0].clone()
}

#[test]
fn the_deb_installs_binaries_unit_man_pages_and_default_rules() {
    let scratch = Scratch(std::env::temp_dir().join(format!(
        "xvs-package-{}-{}",
        xvs_tests::netns::unique_prefix(),
        std::process::id()
    )));
    std::fs::create_dir_all(&scratch.0).expect("scratch directory");
    let deb = build_deb(&scratch.0.join("out"));

    let info = text(&run(Command::new("dpkg-deb").arg("-I").arg(&deb)));
    assert!(info.contains("Package: xvs\n"), "{info}");
    let conffiles = text(&run(Command::new("dpkg-deb")
        .arg("-I")
        .arg(&deb)
        .arg("conffiles")));
    for f in ["/etc/xvs/rules", "/etc/default/xvsd"] {
        assert!(
            conffiles.lines().any(|l| l == f),
            "{f} not a conffile:\n{conffiles}"
        );
    }

    // `dpkg-deb -c` lists `./usr/sbin/xvsd` etc. with modes first.
    let contents = text(&run(Command::new("dpkg-deb").arg("-c").arg(&deb)));
    let paths: Vec<&str> = contents
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .collect();
    let has = |p: &str| paths.iter().any(|q| q.trim_start_matches('.') == p);
    let has_man = |p: &str| has(p) || has(&format!("{p}.gz"));
    for p in [
        "/usr/sbin/xvsd",
        "/usr/sbin/xvsadm",
        "/lib/systemd/system/xvsd.service",
        "/etc/xvs/rules",
        "/etc/default/xvsd",
    ] {
        assert!(has(p), "{p} not in the package:\n{contents}");
    }
    for p in ["/usr/share/man/man8/xvsd.8", "/usr/share/man/man8/xvsadm.8"] {
        assert!(has_man(p), "{p} not in the package:\n{contents}");
    }
    for l in contents.lines().filter(|l| l.ends_with("/usr/sbin/xvsd")) {
        assert!(l.starts_with("-rwxr-xr-x"), "xvsd not executable: {l}");
    }

    // Unpacked into a scratch root, the binaries run and the unit and the
    // default rules are what the service needs.
    let root = scratch.0.join("root");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root));
    let version = text(&run(
        Command::new(root.join("usr/sbin/xvsadm")).arg("--version")
    ));
    assert!(version.starts_with("xvsadm v"), "{version}");
    let version = text(&run(
        Command::new(root.join("usr/sbin/xvsd")).arg("--version")
    ));
    assert!(version.starts_with("xvsd "), "{version}");
    let unit = std::fs::read_to_string(root.join("lib/systemd/system/xvsd.service")).unwrap();
    for line in [
        "ExecStart=/usr/sbin/xvsd ",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
        "StateDirectory=xvs",
        "RuntimeDirectory=xvs",
        "RuntimeDirectoryPreserve=yes",
        "EnvironmentFile=-/etc/default/xvsd",
    ] {
        assert!(
            unit.lines().any(|l| l.starts_with(line)),
            "{line} missing:\n{unit}"
        );
    }
    // The default rules are empty: comments only, which -R accepts.
    let rules = std::fs::read_to_string(root.join("etc/xvs/rules")).unwrap();
    assert!(
        rules
            .lines()
            .all(|l| l.trim().is_empty() || l.starts_with('#')),
        "{rules}"
    );
}
