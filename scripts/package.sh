#!/usr/bin/env bash
# Build the Debian package of xvs into target/debian/: the release
# binaries (xvsd, xvsadm), the systemd unit, the man pages and the default
# files (see [package.metadata.deb] in daemon/Cargo.toml).
#
#   scripts/package.sh            # installs cargo-deb first if missing
#
# Install it with `apt install ./target/debian/xvs_*.deb` (or dpkg -i).
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

xvs_find_cargo
xvs_install_cargo_deb
cd "$XVS_ROOT"
xvs_log "cargo build --release --workspace --bins"
cargo build --release --workspace --bins || xvs_die "build failed"
xvs_log "cargo deb -p xvs-daemon --no-build"
cargo deb -p xvs-daemon --no-build --output target/debian/ || xvs_die "cargo deb failed"
ls -1 "$XVS_ROOT"/target/debian/*.deb
