#!/usr/bin/env bash
# Installs what is missing, builds every binary and runs every test of the
# workspace, all in the release profile (so everything compiles once).
# Run as root from anywhere: ./scripts/test.sh [extra `cargo test` args]

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

trap 'rc=$?; if [ $rc -eq 0 ]; then echo "xvs test.sh: OK: build and all tests passed"; else echo "xvs test.sh: FAILED (exit $rc)" >&2; fi' EXIT

xvs_setup_and_build
xvs_log "cargo test --release --workspace $*"
cargo test --release --workspace "$@"
