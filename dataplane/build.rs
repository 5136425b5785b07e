//! Builds the XDP steering program (bpf/steer.bpf.c) with clang; the object
//! is embedded into the binary and loaded by `io::xdp` (with aya, which
//! reads its BTF-defined maps: keep `-g`).

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let src = "bpf/steer.bpf.c";
    println!("cargo:rerun-if-changed={src}");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("steer.bpf.o");
    let arch = match std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("x86_64") => "x86_64",
        Ok("aarch64") => "aarch64",
        Ok(other) => panic!("unsupported target architecture {other}"),
        Err(_) => "x86_64",
    };
    let clang = std::env::var("CLANG").unwrap_or_else(|_| "clang".into());
    let status = Command::new(&clang)
        .args(["-O2", "-g", "-Wall", "-Werror", "-target", "bpf"])
        .arg(format!("-I/usr/include/{arch}-linux-gnu"))
        .args(["-c", src, "-o"])
        .arg(&out)
        .status()
        .unwrap_or_else(|e| panic!("cannot run {clang} to build {src} (install clang): {e}"));
    assert!(status.success(), "{clang} failed to build {src}");
}
