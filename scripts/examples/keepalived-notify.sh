#!/bin/sh
# keepalived's notify script for an xvs director: the connection sync
# daemon's role follows the VRRP state. The director that holds the VIP
# sends its connections (sync master); the others receive and install
# them (sync backup), so the one that takes the VIP over already knows
# every established connection.
#
#   keepalived-notify.sh STATE IFACE [SYNCID [SOCKET [XVSADM]]]
#
# STATE   MASTER, BACKUP, FAULT or STOP (keepalived's notify_* events)
# IFACE   the interface the sync datagrams go over (--mcast-interface)
# SYNCID  the sync id both directors use (default 0)
# SOCKET  xvsd's control socket (default: xvsadm's)
# XVSADM  the xvsadm to run (default: xvsadm on PATH, else /usr/sbin/xvsadm)
#
# Everything it does is said on stderr (keepalived logs it). It changes
# only what must change, so keepalived may call it again for one state.

set -u

state=${1:?usage: keepalived-notify.sh STATE IFACE [SYNCID [SOCKET [XVSADM]]]}
iface=${2:?usage: keepalived-notify.sh STATE IFACE [SYNCID [SOCKET [XVSADM]]]}
syncid=${3:-0}
socket=${4:-}
xvsadm=${5:-}
if [ -z "$xvsadm" ]; then
    xvsadm=$(command -v xvsadm 2>/dev/null || echo /usr/sbin/xvsadm)
fi

adm() {
    if [ -n "$socket" ]; then
        "$xvsadm" --socket "$socket" "$@"
    else
        "$xvsadm" "$@"
    fi
}

# Whether the sync daemon of role $1 runs (`-L --daemon` lists it).
running() {
    adm -L --daemon 2>/dev/null | grep -q "^$1 sync daemon"
}

start() {
    running "$1" && return 0
    echo "xvs: $state: starting the $1 sync daemon on $iface (syncid $syncid)" >&2
    adm --start-daemon "$1" --mcast-interface "$iface" --syncid "$syncid"
}

stop() {
    running "$1" || return 0
    echo "xvs: $state: stopping the $1 sync daemon" >&2
    adm --stop-daemon "$1"
}

case "$state" in
MASTER)
    stop backup
    start master
    ;;
BACKUP | FAULT)
    stop master
    start backup
    ;;
STOP)
    stop master
    stop backup
    ;;
*)
    echo "keepalived-notify.sh: unknown state $state" >&2
    exit 2
    ;;
esac
