#!/usr/bin/env bash
# xvs in one minute: builds, creates the DR test LAN in network namespaces,
# starts xvsd on the director with 198.18.0.100:80 (rr over three real
# servers), sends real TCP connections through it, prints the split and
# `xvsadm -Ln --stats`, and removes everything again (also on Ctrl-C).
# Run as root: ./scripts/demo.sh [CONNECTIONS]   (default 30)

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CONNS=${1:-30}
[[ "$CONNS" =~ ^[0-9]+$ ]] && [ "$CONNS" -ge 1 ] && [ "$CONNS" -le 10000 ] \
    || xvs_die "CONNECTIONS must be 1..10000"

xvs_setup_and_build

VIP=198.18.0.100
# Per-run prefix for every namespace and link (names stay <= 15 chars).
while :; do
    P=$(printf 'x%04x' $(( (RANDOM * 7919 + $$ + SECONDS) & 0xffff )))
    ip netns list | grep -q "^$P-" || break
done
SW=$P-sw
HOSTS=(cl dir rs1 rs2 rs3)
declare -A ADDR=([cl]=198.18.0.10 [dir]=198.18.0.2 [rs1]=198.18.0.11 [rs2]=198.18.0.12 [rs3]=198.18.0.13)
SOCK=$(mktemp -u "/tmp/xvs-demo-$P.XXXXXX.sock")
XVSD_LOG=$(mktemp "/tmp/xvs-demo-$P.XXXXXX.log")
STATE_DIR=$(mktemp -d "/tmp/xvs-demo-$P.XXXXXX.state")
CREATED=()
XVSD_PID=

cleanup() {
    set +e
    if [ -n "$XVSD_PID" ] && kill -0 "$XVSD_PID" 2>/dev/null; then
        kill -TERM "$XVSD_PID"
        for _ in $(seq 50); do kill -0 "$XVSD_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$XVSD_PID" 2>/dev/null
    fi
    local ns pid
    for ns in "${CREATED[@]}"; do
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
    done
    for ns in "${CREATED[@]}"; do ip netns del "$ns" 2>/dev/null; done
    rm -f "$SOCK" "$XVSD_LOG"
    rm -rf "$STATE_DIR"
    if [ "${#CREATED[@]}" -gt 0 ]; then echo "==> removed namespaces ${CREATED[*]}" >&2; fi
    return 0
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

nsx() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
sysctl_ns() { # NS key=value...
    local ns=$1 kv; shift
    for kv in "$@"; do
        nsx "$ns" sh -c "echo ${kv#*=} > /proc/sys/$(echo "${kv%%=*}" | tr . /)"
    done
}
adm() { "$XVS_BIN/xvsadm" --socket "$SOCK" "$@"; }

xvs_log "creating the DR LAN (prefix $P): client, director, rs1..rs3 on one bridge"
for ns in "$SW" "${HOSTS[@]/#/$P-}"; do
    ip netns add "$ns"
    CREATED+=("$ns")
    ip -n "$ns" link set lo up
    sysctl_ns "$ns" net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
done
ip -n "$SW" link add "$P-br" type bridge
ip -n "$SW" link set "$P-br" up
for h in "${HOSTS[@]}"; do
    ns=$P-$h
    ip -n "$SW" link add name "${ns}p" numtxqueues 1 numrxqueues 1 type veth \
        peer name "$ns" numtxqueues 1 numrxqueues 1 netns "$ns"
    ip -n "$SW" link set "${ns}p" master "$P-br" up
    sysctl_ns "$ns" "net.ipv6.conf.$ns.disable_ipv6=1"
    # Offloads stay as the kernel sets them (TX checksum offload on): xvsd
    # completes the partial checksums the hosts send.
    if [[ $h == rs* ]]; then
        sysctl_ns "$ns" net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2 \
            "net.ipv4.conf.$ns.arp_ignore=1" "net.ipv4.conf.$ns.arp_announce=2"
        ip -n "$ns" addr add "$VIP/32" dev lo
    fi
    ip -n "$ns" addr add "${ADDR[$h]}/24" dev "$ns"
    if [ "$h" = dir ]; then ip -n "$ns" addr add "$VIP/32" dev "$ns"; fi
    ip -n "$ns" link set "$ns" up
done

xvs_log "starting xvs-node servers on rs1..rs3 port 80"
for h in rs1 rs2 rs3; do
    ip netns exec "$P-$h" "$XVS_BIN/xvs-node" serve --name "$h" --port 80 --lifetime-s 300 >/dev/null &
    disown
done
for h in rs1 rs2 rs3; do
    for _ in $(seq 100); do
        [ -n "$(nsx "$P-$h" ss -Hltn 'sport = :80')" ] && break
        sleep 0.05
    done
done

xvs_log "starting xvsd on $P-dir (socket $SOCK)"
# `ip netns exec` gives a fresh /sys without bpffs: mount it again in that
# private mount namespace. Both ip and sh exec in place, so $! is xvsd.
ip netns exec "$P-dir" sh -c 'mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf 2>/dev/null; exec "$0" "$@"' \
    "$XVS_BIN/xvsd" --iface "$P-dir" --state-dir "$STATE_DIR" --socket "$SOCK" 2>"$XVSD_LOG" &
XVSD_PID=$!
for _ in $(seq 200); do
    [ -S "$SOCK" ] && break
    kill -0 "$XVSD_PID" 2>/dev/null || { cat "$XVSD_LOG" >&2; xvs_die "xvsd exited"; }
    sleep 0.05
done
[ -S "$SOCK" ] || { cat "$XVSD_LOG" >&2; xvs_die "xvsd did not create $SOCK within 10 s"; }

set -x
adm -A -t "$VIP:80" -s rr
adm -a -t "$VIP:80" -r 198.18.0.11:80 -g
adm -a -t "$VIP:80" -r 198.18.0.12:80 -g
adm -a -t "$VIP:80" -r 198.18.0.13:80 -g
adm -Ln
{ set +x; } 2>/dev/null

xvs_log "client 198.18.0.10: $CONNS TCP connections to $VIP:80 (replies name the real server)"
rc=0
nsx "$P-cl" "$XVS_BIN/xvs-node" client --connect "$VIP:80" --count "$CONNS" \
    --timeout-ms 3000 --deadline-ms 30000 --max-failures 5 || rc=$?

xvs_log "xvsadm -Ln --stats"
adm -Ln --stats

xvs_log "stopping xvsd (SIGTERM)"
kill -TERM "$XVSD_PID"
for _ in $(seq 100); do kill -0 "$XVSD_PID" 2>/dev/null || break; sleep 0.1; done
wait "$XVSD_PID" 2>/dev/null || true
XVSD_PID=
grep 'frames total=' "$XVSD_LOG" >&2 || true

if [ "$rc" -eq 0 ]; then
    echo "xvs demo: OK: $CONNS connections balanced through xvsd"
else
    echo "xvs demo: FAILED: some connections did not get through (client exit $rc)" >&2
    tail -n 20 "$XVSD_LOG" >&2
fi
exit "$rc"
