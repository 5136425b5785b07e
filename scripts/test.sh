#!/usr/bin/env bash
# Installs what is missing, builds every binary and runs every test of the
# workspace, all in the release profile (so everything compiles once).
# Run as root from anywhere: ./scripts/test.sh [extra `cargo test` args]

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

trap 'rc=$?; if [ $rc -eq 0 ]; then echo "xvs test.sh: OK: build and all tests passed"; else echo "xvs test.sh: FAILED (exit $rc)" >&2; fi' EXIT

xvs_setup_and_build

# xvsadm and the control plane must build without the data plane (no clang,
# no libxdp): only xvsd links both.
xvs_log "checking that xvs-control does not depend on the data plane"
if cargo tree -p xvs-control -e normal,build --prefix none | grep -E '^(xvs-dataplane|libxdp-sys|xsk-rs|aya) '; then
    xvs_die "xvs-control depends on the data plane (see above)"
fi
xvs_log "cargo test --release --workspace $*"
cargo test --release --workspace "$@"
