#!/bin/sh
# What health-check-loop.sh does, done by xvsd itself: the service's
# options are the defaults of every real server, so one line sets the
# check, and the sorry server stands in only while no server is up.
# A server that fails 2 checks in a row (5 s apart) gets weight 0 (its
# established connections go on); 2 successes bring it back. States:
# `xvsadm -L -n --check`.
set -e
VIP=198.18.0.100

xvsadm -A -t $VIP:80 -s wrr --check http --check-interval 5 --check-fall 2 --check-rise 2 --sorry-server 198.18.0.20:80
xvsadm -a -t $VIP:80 -r 198.18.0.11:80 -g -w 2
xvsadm -a -t $VIP:80 -r 198.18.0.12:80 -g -w 1
