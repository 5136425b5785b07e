#!/usr/bin/env bash
# xvs scaled out: three directors behind one ECMP router, each announcing
# the VIP by BGP only while its xvsd serves it.
#
#   client 198.18.2.10 ── router (BIRD, or FRR with XVS_ROUTER=frr: eBGP with every
#              │      director, ECMP into the kernel,
#              │      fib_multipath_hash_policy=1: the 5-tuple picks the path)
#              └─ LAN 198.18.1.0/24 (a bridge) ─┬─ dir1..dir3: xvsd (AF_XDP on
#                                               │   the veth) + ExaBGP, whose
#                                               │   process is xvsadm --bgp-feed
#                                               └─ rs1..rs3: DR (VIP on lo)
#
# It shows the router's multipath route for the VIP, sends real traffic,
# prints each director's share (xvsadm -Ln --stats), kills one director's
# xvsd (kill -9) and shows the route shrink (with the time it took) and
# traffic continue, then removes everything (also on Ctrl-C).
# Run as root: ./scripts/demo-cluster.sh [CONNECTIONS]   (default 300)
# XVS_ROUTER=frr runs FRR's zebra and bgpd as the router instead of BIRD.

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CONNS=${1:-300}
ROUTER=${XVS_ROUTER:-bird}
[ "$ROUTER" = bird ] || [ "$ROUTER" = frr ] || xvs_die "XVS_ROUTER must be bird or frr"

[[ "$CONNS" =~ ^[0-9]+$ ]] && [ "$CONNS" -ge 1 ] && [ "$CONNS" -le 10000 ] \
    || xvs_die "CONNECTIONS must be 1..10000"

xvs_setup_and_build

VIP=198.18.0.100
ROUTER_AS=65000
DIRECTOR_AS=65001
# Per-run prefix for every namespace and link (names stay <= 15 chars).
while :; do
    P=$(printf 'x%04x' $(( (RANDOM * 7919 + $$ + SECONDS) & 0xffff )))
    ip netns list | grep -q "^$P-" || break
done
DIRS=(d1 d2 d3)
RSS=(rs1 rs2 rs3)
declare -A ADDR=([rt]=198.18.1.1 [d1]=198.18.1.11 [d2]=198.18.1.12 [d3]=198.18.1.13
    [rs1]=198.18.1.21 [rs2]=198.18.1.22 [rs3]=198.18.1.23)
TMP=$(mktemp -d "/tmp/xvs-cluster-$P.XXXXXX")
CREATED=()
declare -A XVSD_PID=()

cleanup() {
    set +e
    local ns pid
    for ns in "${CREATED[@]}"; do
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
    done
    for ns in "${CREATED[@]}"; do ip netns del "$ns" 2>/dev/null; done
    rm -rf "$TMP"
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
adm() { local d=$1; shift; "$XVS_BIN/xvsadm" --socket "$TMP/$d.sock" "$@"; }
# Wait up to $1 tenths of a second for command "${@:2}" to succeed.
wait_for() {
    local n=$1 i; shift
    for i in $(seq "$n"); do "$@" && return 0; sleep 0.1; done
    return 1
}
# The router's next hops for the VIP, one per line.
next_hops() { nsx "$P-rt" ip -4 route show "$VIP/32" | grep -o 'via [0-9.]*' | cut -d' ' -f2 | sort; }
hops_are() { [ "$(next_hops | wc -l)" -eq "$1" ]; }

xvs_log "creating the namespaces (prefix $P): client, router, switch, ${DIRS[*]}, ${RSS[*]}"
for h in sw cl rt "${DIRS[@]}" "${RSS[@]}"; do
    ns=$P-$h
    ip netns add "$ns"
    CREATED+=("$ns")
    ip -n "$ns" link set lo up
    sysctl_ns "$ns" net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
done
# Client ── router: a veth pair of their own.
ip -n "$P-cl" link add "$P-cl" type veth peer name "$P-rc" netns "$P-rt"
ip -n "$P-cl" addr add 198.18.2.10/24 dev "$P-cl"
ip -n "$P-cl" link set "$P-cl" up
ip -n "$P-cl" route add default via 198.18.2.1
ip -n "$P-rt" addr add 198.18.2.1/24 dev "$P-rc"
ip -n "$P-rt" link set "$P-rc" up
sysctl_ns "$P-rt" net.ipv4.ip_forward=1 net.ipv4.fib_multipath_hash_policy=1 \
    net.ipv4.fib_multipath_use_neigh=1
# Router, directors and real servers on one bridge.
ip -n "$P-sw" link add "$P-br" type bridge
ip -n "$P-sw" link set "$P-br" up
for h in rt "${DIRS[@]}" "${RSS[@]}"; do
    ns=$P-$h
    ip -n "$P-sw" link add name "${ns}p" numtxqueues 1 numrxqueues 1 type veth \
        peer name "$ns" numtxqueues 1 numrxqueues 1 netns "$ns"
    ip -n "$P-sw" link set "${ns}p" master "$P-br" up
    sysctl_ns "$ns" "net.ipv6.conf.$ns.disable_ipv6=1"
    if [[ $h == rs* ]]; then
        sysctl_ns "$ns" net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2 \
            "net.ipv4.conf.$ns.arp_ignore=1" "net.ipv4.conf.$ns.arp_announce=2"
        ip -n "$ns" addr add "$VIP/32" dev lo
    fi
    ip -n "$ns" addr add "${ADDR[$h]}/24" dev "$ns"
    ip -n "$ns" link set "$ns" up
    if [ "$h" != rt ]; then ip -n "$ns" route add default via "${ADDR[rt]}"; fi
done

start_bird() {
    {
        echo "router id ${ADDR[rt]};"
        echo "protocol device { }"
        echo "protocol kernel { ipv4 { import none; export all; }; merge paths on; }"
        echo "template bgp director {"
        echo "    local ${ADDR[rt]} as $ROUTER_AS;"
        echo "    connect delay time 1; connect retry time 2; error wait time 1, 5;"
        echo "    ipv4 { import all; export none; };"
        echo "}"
        for d in "${DIRS[@]}"; do
            echo "protocol bgp $d from director { neighbor ${ADDR[$d]} as $DIRECTOR_AS; }"
        done
    } >"$TMP/bird.conf"
    nsx "$P-rt" bird -c "$TMP/bird.conf" -s "$TMP/bird.ctl" -P "$TMP/bird.pid"
}

# FRR's daemons run as its frr user (root is not in its frrvty group): they
# get a directory of their own, and the way through $TMP.
FRR=$TMP/frr
start_frr() {
    mkdir -p "$FRR"
    echo "hostname $P-rt" >"$FRR/zebra.conf"
    {
        echo "frr defaults traditional"
        echo "hostname $P-rt"
        echo "router bgp $ROUTER_AS"
        echo " bgp router-id ${ADDR[rt]}"
        echo " no bgp ebgp-requires-policy"
        echo " neighbor directors peer-group"
        echo " neighbor directors remote-as $DIRECTOR_AS"
        echo " neighbor directors timers connect 1"
        echo " neighbor directors advertisement-interval 0"
        for d in "${DIRS[@]}"; do echo " neighbor ${ADDR[$d]} peer-group directors"; done
        echo " address-family ipv4 unicast"
        echo "  maximum-paths 16"
        echo " exit-address-family"
    } >"$FRR/bgpd.conf"
    chmod 711 "$TMP"
    chown -R frr:frr "$FRR"
    local d
    for d in zebra bgpd; do
        nsx "$P-rt" "/usr/lib/frr/$d" -d -f "$FRR/$d.conf" -i "$FRR/$d.pid" -z "$FRR/zserv.api" \
            --vty_socket "$FRR" -P 0 --log "file:$FRR/$d.log" 2>/dev/null
        if [ "$d" = zebra ]; then
            wait_for 100 test -S "$FRR/zserv.api" || xvs_die "zebra did not start: $(cat "$FRR/zebra.log")"
        fi
    done
}
router_state() {
    if [ "$ROUTER" = frr ]; then
        nsx "$P-rt" vtysh --vty_socket "$FRR" -c "show bgp summary"
    else
        nsx "$P-rt" birdc -s "$TMP/bird.ctl" show protocols
    fi
}

xvs_log "starting the router: ${ROUTER^^}, eBGP (AS $ROUTER_AS) with ${DIRS[*]} (AS $DIRECTOR_AS), ECMP"
"start_$ROUTER"

xvs_log "starting xvs-node servers on ${RSS[*]} port 80"
for h in "${RSS[@]}"; do
    ip netns exec "$P-$h" "$XVS_BIN/xvs-node" serve --name "$h" --port 80 --lifetime-s 600 >/dev/null &
    disown
done
listening() { [ -n "$(nsx "$1" ss -Hltn 'sport = :80')" ]; }
for h in "${RSS[@]}"; do
    wait_for 100 listening "$P-$h" || xvs_die "xvs-node on $h did not start"
done

start_xvsd() { # DIRECTOR
    local d=$1 ns=$P-$1
    # `ip netns exec` gives a fresh /sys without bpffs: mount it again in
    # that private mount namespace. ip and sh exec in place: $! is xvsd.
    ip netns exec "$ns" sh -c 'mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf 2>/dev/null; exec "$0" "$@"' \
        "$XVS_BIN/xvsd" --iface "$ns" --sloppy-tcp --state-dir "$TMP/$d.state" \
        --socket "$TMP/$d.sock" 2>>"$TMP/$d.xvsd.log" &
    XVSD_PID[$d]=$!
    disown
    wait_for 100 test -S "$TMP/$d.sock" || { cat "$TMP/$d.xvsd.log" >&2; xvs_die "xvsd on $d did not start"; }
}

for d in "${DIRS[@]}"; do
    mkdir -p "$TMP/$d.state"
    xvs_log "$d: xvsd on $P-$d (mh over the three real servers, DR) and ExaBGP"
    start_xvsd "$d"
    adm "$d" -A -t "$VIP:80" -s mh
    for h in "${RSS[@]}"; do adm "$d" -a -t "$VIP:80" -r "${ADDR[$h]}" -g; done
    cat >"$TMP/$d.exabgp.conf" <<EOF
process xvs {
    run $XVS_BIN/xvsadm --socket $TMP/$d.sock --bgp-feed;
    encoder text;
}
neighbor ${ADDR[rt]} {
    router-id ${ADDR[$d]};
    local-address ${ADDR[$d]};
    local-as $DIRECTOR_AS;
    peer-as $ROUTER_AS;
    api { processes [ xvs ]; }
}
EOF
    ip netns exec "$P-$d" env exabgp.daemon.user=root exabgp.daemon.daemonize=false \
        exabgp.log.destination="$TMP/$d.exabgp.log" exabgp.api.ack=false \
        exabgp.api.cli=false \
        exabgp "$TMP/$d.exabgp.conf" >/dev/null 2>&1 &
    disown
done
adm d1 -L --announce

xvs_log "waiting for the router's route to $VIP to have three next hops"
wait_for 300 hops_are 3 || { router_state; xvs_die "no 3-way route"; }
set -x
nsx "$P-rt" ip route show "$VIP/32"
{ set +x; } 2>/dev/null

xvs_log "client 198.18.2.10: $CONNS TCP connections to $VIP:80 (many source ports:"
xvs_log "the router spreads them; mh, keyed on the client address, picks one server on every director)"
rc=0
nsx "$P-cl" "$XVS_BIN/xvs-node" client --connect "$VIP:80" --count "$CONNS" \
    --timeout-ms 3000 --deadline-ms 60000 --max-failures 5 || rc=$?
for d in "${DIRS[@]}"; do
    xvs_log "$d: xvsadm -Ln --stats"
    adm "$d" -Ln --stats
done

xvs_log "kill -9 of d1's xvsd: its feed withdraws the VIP"
t0=$(date +%s%N)
kill -KILL "${XVSD_PID[d1]}"
shrank=
for _ in $(seq 2000); do
    if hops_are 2; then shrank=$(date +%s%N); break; fi
    sleep 0.005
done
if [ -n "$shrank" ]; then
    xvs_log "route shrank to two next hops $(( (shrank - t0) / 1000000 )) ms after kill -9"
else
    xvs_log "the route did not shrink within 10 s"
    rc=1
fi
set -x
nsx "$P-rt" ip route show "$VIP/32"
{ set +x; } 2>/dev/null

xvs_log "client: $CONNS more connections, now over d2 and d3"
nsx "$P-cl" "$XVS_BIN/xvs-node" client --connect "$VIP:80" --count "$CONNS" \
    --timeout-ms 3000 --deadline-ms 60000 --max-failures 5 || rc=$?
for d in d2 d3; do
    xvs_log "$d: xvsadm -Ln --stats"
    adm "$d" -Ln --stats
done

if [ "$rc" -eq 0 ]; then
    echo "xvs cluster demo: OK: three directors shared the VIP, one left, traffic went on"
else
    echo "xvs cluster demo: FAILED (exit $rc)" >&2
    for d in "${DIRS[@]}"; do tail -n 5 "$TMP/$d.xvsd.log" "$TMP/$d.exabgp.log" >&2; done
fi
exit "$rc"
