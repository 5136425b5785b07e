#!/usr/bin/env bash
# Installs what is missing, builds every binary and runs every test of the
# workspace (unit and end-to-end), all in the `ci` profile: release
# optimisation with debug assertions and overflow checks on, so the
# invariants the code asserts are checked while real traffic flows, and
# everything compiles once. The end-to-end tests find the binaries next to
# them, in target/ci/. scripts/demo.sh still uses the release profile.
# Run as root from anywhere: ./scripts/test.sh [extra `cargo test` args]

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

trap 'rc=$?; if [ $rc -eq 0 ]; then echo "xvs test.sh: OK: build and all tests passed"; else echo "xvs test.sh: FAILED (exit $rc)" >&2; fi' EXIT
# Interrupted is not passed: without these the EXIT trap would see 0.
trap 'exit 130' INT
trap 'exit 143' TERM

XVS_TEST_PROFILE=ci
xvs_setup_and_build "$XVS_TEST_PROFILE"

# xvsadm and the control plane must build without the data plane (no clang,
# no libxdp): only xvsd links both.
xvs_log "checking that xvs-control does not depend on the data plane"
if cargo tree -p xvs-control -e normal,build --prefix none | grep -E '^(xvs-dataplane|libxdp-sys|xsk-rs|aya) '; then
    xvs_die "xvs-control depends on the data plane (see above)"
fi
# Every test binary runs even after one fails, so one run shows every
# failure (cargo stops at the first failing binary otherwise).
args=("$@")
case " $* " in *" --no-fail-fast "*) ;; *) args=(--no-fail-fast "${args[@]}") ;; esac
xvs_log "cargo test --profile $XVS_TEST_PROFILE --workspace ${args[*]}"
cargo test --profile "$XVS_TEST_PROFILE" --workspace "${args[@]}"
