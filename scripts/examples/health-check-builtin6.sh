#!/bin/sh
# health-check-builtin.sh for an IPv6 service: the same one line, with
# IPv6 real servers and an IPv6 sorry server written [addr]:port. The
# vip check of the second server also proves it takes the VIP (a local
# route for it on lo): a SYN to the VIP sent to its MAC must be answered.
set -e
VIP=2001:2::100

xvsadm -A -t [$VIP]:80 -s wrr --check http --check-interval 5 --check-fall 2 --check-rise 2 --sorry-server [2001:2::20]:80
xvsadm -a -t [$VIP]:80 -r [2001:2::11]:80 -g -w 2
xvsadm -a -t [$VIP]:80 -r [2001:2::12]:80 -g -w 1 --check vip
