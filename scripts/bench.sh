#!/bin/sh
# Run every benchmark of xvs and print the Performance table of README.md
# in Markdown, with the date and the machine: the in-memory pipeline
# (xvs-bench micro, every case repeated and interleaved), one worker
# against two (xvs-bench pipeline --workers 2) and the forwarders on a
# veth pair (xvs-bench compare, in rounds, with the two-queue case and
# the CPU time per frame). Also written to target/xvs-bench/bench.md.
#
# Run it as root (compare builds network namespaces) on a quiet machine:
# the figures are only as good as the machine is idle. It takes about
# half an hour with the defaults; --quick runs every part with small
# counts in a few minutes, to check that it works (not for figures).
# Other options go to `xvs-bench report` (see --help: --reps, --flows,
# --rounds, --secs, --cost-rate, --no-compare).
set -eu
cd "$(dirname "$0")/.."

echo "bench.sh: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), Linux $(uname -r)" >&2
cargo build --release --workspace --bins >&2
XVS_BIN_DIR="$PWD/target/release" exec ./target/release/xvs-bench report "$@"
