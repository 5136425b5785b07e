# shellcheck shell=bash
# Shared set-up of scripts/test.sh and scripts/demo.sh: system packages,
# bpffs, the build (release unless told otherwise). Sourced, not run.
# Idempotent: installs only what is missing, and runs `apt-get update` only
# when something is.

set -euo pipefail

XVS_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Where the binaries are (XVS_BIN_DIR overrides, as for the Rust harness).
XVS_BIN="${XVS_BIN_DIR:-$XVS_ROOT/target/release}"

# Debian packages: xsk-rs builds libxdp/libbpf from source (clang ... gcc);
# the tests and the demo need ip, ping, ethtool; bpftool helps debugging;
# `xvs-bench compare` (and its smoke test) runs nftables DNAT as the peer;
# the failover test runs keepalived (VRRP only) in each director's namespace;
# the cluster demo and test run BIRD or FRR (router, XVS_ROUTER=frr) and
# ExaBGP (directors);
# the https health check's test makes its certificates and server with openssl.
XVS_PACKAGES=(clang llvm linux-libc-dev libc6-dev libelf-dev libpcap-dev m4 zlib1g-dev pkg-config make gcc
    iproute2 iputils-ping ethtool bpftool nftables procps util-linux keepalived
    exabgp bird2 frr openssl)

xvs_log() { echo "==> $*" >&2; }
xvs_die() { echo "ERROR: $*" >&2; exit 1; }

xvs_require_root() {
    [ "$(id -u)" = 0 ] || xvs_die "run as root: xvs needs network namespaces and XDP"
}

xvs_pkg_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

xvs_install_deps() {
    local missing=() p
    for p in "${XVS_PACKAGES[@]}"; do
        xvs_pkg_installed "$p" || missing+=("$p")
    done
    if [ "${#missing[@]}" -eq 0 ]; then
        return 0
    fi
    command -v apt-get >/dev/null || xvs_die "missing packages (${missing[*]}) and no apt-get"
    xvs_log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || xvs_die "apt-get update failed"
    apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null \
        || xvs_die "apt-get install ${missing[*]} failed"
}

xvs_mount_bpffs() {
    if ! mountpoint -q /sys/fs/bpf 2>/dev/null; then
        xvs_log "mounting bpffs on /sys/fs/bpf"
        mount -t bpf bpf /sys/fs/bpf || echo "warning: could not mount bpffs (libxdp works without)" >&2
    fi
}

xvs_find_cargo() {
    if ! command -v cargo >/dev/null && [ -f "$HOME/.cargo/env" ]; then
        # shellcheck disable=SC1091
        . "$HOME/.cargo/env"
    fi
    command -v cargo >/dev/null || xvs_die "cargo not found: install the Rust toolchain"
}

# cargo-deb builds the Debian package (scripts/package.sh and its test).
# Installed from crates.io once; it takes a few minutes, so here and not in
# a test.
xvs_install_cargo_deb() {
    if cargo deb --version >/dev/null 2>&1; then
        return 0
    fi
    xvs_log "installing cargo-deb (cargo install cargo-deb --locked)"
    cargo install cargo-deb --locked || xvs_die "cargo install cargo-deb failed"
}

# Everything a run needs, up to and including the binaries of Cargo
# profile $1 (default: release; scripts/test.sh uses `ci`).
xvs_setup_and_build() {
    local profile="${1:-release}"
    xvs_require_root
    xvs_install_deps
    xvs_mount_bpffs
    xvs_find_cargo
    xvs_install_cargo_deb
    cd "$XVS_ROOT"
    xvs_log "cargo build --profile $profile --workspace --bins"
    cargo build --profile "$profile" --workspace --bins || xvs_die "build failed"
}
