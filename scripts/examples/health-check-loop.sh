#!/bin/bash
# The health-check loop of the LVS tutorials, written for xvsadm: curl each
# real server every few seconds, take a dead one out with -d and put it
# back with -a, and send clients to a "sorry server" on the director while
# every real server is down. Kept for comparison only: xvsd does all of
# this itself, once per server however many services share it, with
# rise/fall damping and states in the listings; see
# health-check-builtin.sh for the one line that replaces this file.
#
# Usage: health-check-loop.sh   (as root, with xvsd running; edit below)

VIP=198.18.0.100
VPORT=80
RS=(198.18.0.11 198.18.0.12)   # real servers
RW=(2 1)                       # their weights
RPORT=80
FWD=-g                         # -g direct routing, -i tunnel, -m NAT
SORRY=198.18.0.20               # a server with an error page
INTERVAL=5
TRIES=2                        # failed curls in a row before a server is out
LOG=/var/log/xvs-health.log

XVSADM=${XVSADM:-xvsadm}
SVC="-t $VIP:$VPORT"

log() { echo "$(date '+%F %T') $*" >> "$LOG"; }

# Up if one of $TRIES requests answers within a second.
alive() {
    local i
    for ((i = 0; i < TRIES; i++)); do
        curl -s -o /dev/null --connect-timeout 1 --max-time 2 "http://$1:$RPORT/" && return 0
    done
    return 1
}

listed() { $XVSADM -L -n $SVC | grep -q -- "-> $1:"; }

# Start from what is configured now: a listed server counts as up.
declare -a UP
for i in "${!RS[@]}"; do
    if listed "${RS[$i]}"; then UP[$i]=1; else UP[$i]=0; fi
done
sorry_on=0
listed "$SORRY" && sorry_on=1

while :; do
    for i in "${!RS[@]}"; do
        rs=${RS[$i]}
        if alive "$rs"; then
            if [ "${UP[$i]}" -eq 0 ] && $XVSADM -a $SVC -r "$rs:$RPORT" $FWD -w "${RW[$i]}"; then
                UP[$i]=1
                log "$rs is back"
            fi
        elif [ "${UP[$i]}" -eq 1 ] && $XVSADM -d $SVC -r "$rs:$RPORT"; then
            UP[$i]=0
            log "$rs is gone"
        fi
    done
    # The sorry server only while nobody else is there.
    any=0
    for u in "${UP[@]}"; do [ "$u" -eq 1 ] && any=1; done
    if [ $any -eq 0 ] && [ $sorry_on -eq 0 ]; then
        $XVSADM -a $SVC -r "$SORRY:$RPORT" $FWD -w 1 && sorry_on=1 && log "sorry server on"
    elif [ $any -eq 1 ] && [ $sorry_on -eq 1 ]; then
        $XVSADM -d $SVC -r "$SORRY:$RPORT" && sorry_on=0 && log "sorry server off"
    fi
    sleep "$INTERVAL"
done
