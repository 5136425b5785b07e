//! The texts of `-v` and `-h`: ipvsadm's, naming xvsadm.

/// `-v`'s text.
pub fn version() -> String {
    format!(
        "xvsadm v{} (compatible with ipvsadm v1.31)\n",
        env!("CARGO_PKG_VERSION")
    )
}

/// `-h`'s text: ipvsadm's usage, naming xvsadm.
pub fn usage() -> String {
    let mut s = version();
    s.push_str(
        "Usage:
  xvsadm -A|E virtual-service [-s scheduler] [-p [timeout]] [-M netmask] [--pe persistence_engine] [-b sched-flags]
          [check-options] [--quorum weight] [--sorry-server server-address]
  xvsadm -D virtual-service
  xvsadm -C
  xvsadm -R
  xvsadm -S [-n]
  xvsadm -a|e virtual-service -r server-address [options] [check-options]
  xvsadm -d virtual-service -r server-address
  xvsadm -L|l [virtual-service] [options]
  xvsadm -Z [virtual-service]
  xvsadm --set tcp tcpfin udp
  xvsadm --start-daemon {master|backup} [daemon-options]
  xvsadm --stop-daemon {master|backup}
  xvsadm --set-mark fwmark -t|-u service-address:port
  xvsadm --del-mark -t|-u service-address:port
  xvsadm --maintenance {on|off}
  xvsadm --bgp-feed
  xvsadm -h

Commands:
Either long or short options are allowed.
  --add-service     -A        add virtual service with options
  --edit-service    -E        edit virtual service with options
  --delete-service  -D        delete virtual service
  --clear           -C        clear the whole table
  --restore         -R        restore rules from stdin
  --save            -S        save rules to stdout
  --add-server      -a        add real server with options
  --edit-server     -e        edit real server with options
  --delete-server   -d        delete real server
  --list            -L|-l     list the table
  --zero            -Z        zero counters in a service or all services
  --set tcp tcpfin udp        set connection timeout values
  --start-daemon              start connection sync daemon
  --stop-daemon               stop connection sync daemon
  --set-mark fwmark           mark packets to a protocol, address and port with
                              fwmark, so that a -f fwmark service takes them
                              (what iptables -j MARK --set-mark does for IPVS)
  --del-mark                  remove the mark of a protocol, address and port
  --maintenance on|off        on: withdraw every VIP from the router, keep
                              forwarding; off: announce them again
  --bgp-feed                  run as an ExaBGP process: announce and withdraw
                              the VIPs as xvsd says (all withdrawn if it stops)
  --help            -h        display this help message

virtual-service:
  --tcp-service|-t  service-address   service-address is host[:port]
  --udp-service|-u  service-address   service-address is host[:port]
  --sctp-service    service-address   service-address is host[:port]
  --fwmark-service|-f fwmark          fwmark is an integer greater than zero

Options:
  --ipv6         -6                   fwmark entry uses IPv6
  --scheduler    -s scheduler         one of rr|wrr|lc|wlc|lblc|lblcr|dh|sh|sed|nq|fo|ovf|twos|mh,
                                      the default scheduler is wlc.
  --pe            engine              alternate persistence engine (none supported by xvs)
  --persistent   -p [timeout]         persistent service
  --netmask      -M netmask           persistent granularity mask
  --real-server  -r server-address    server-address is host (and port)
  --gatewaying   -g                   gatewaying (direct routing) (default)
  --ipip         -i                   ipip encapsulation (tunneling)
  --masquerading -m                   masquerading (NAT)
  --tun-type      type                one of ipip|gue|gre,
                                      the default tunnel type is ipip.
  --tun-port      port                tunnel destination port
  --tun-nocsum                        tunnel encapsulation without checksum
  --tun-csum                          tunnel encapsulation with checksum
  --tun-remcsum                       tunnel encapsulation with remote checksum
  --weight       -w weight            capacity of real server
  --u-threshold  -x uthreshold        upper threshold of connections
  --l-threshold  -y lthreshold        lower threshold of connections
  --mcast-interface interface         multicast interface for connection sync
  --syncid sid                        syncid for connection sync (default=0)
  --connection   -c                   output of current IPVS connections
  --timeout                           output of timeout (tcp tcpfin udp)
  --daemon                            output of daemon information
                                      (with --stats: sync counters, xvs extension)
  --stats                             output of statistics information
  --rate                              output of rate information
  --exact                             expand numbers (display exact values)
  --thresholds                        output of thresholds information
  --persistent-conn                   output of persistent connection info
  --tun-info                          output of tunnel information
  --nosort                            disable sorting output of service/server entries
  --json                              listing as JSON (xvs extension, for tools)
  --dataplane                         data plane counters, drops by reason and
                                      connection-table use (xvs extension)
  --announce                          VIPs announced to the router, and why
                                      others are not (xvs extension)
  --check                             (with -L) every real server's health check,
                                      state, time in state, last result and latency
  --sort                              does nothing, for backwards compatibility
  --ops          -o                   one-packet scheduling
  --numeric      -n                   numeric output of addresses and ports
  --sched-flags  -b flags             scheduler flags (comma-separated)
  --mcast-group  address              IPv4/IPv6 group (default=224.0.0.81)
  --mcast-port   port                 UDP port (default=8848)
  --mcast-ttl    ttl                  Multicast TTL (default=1)
  --sync-maxlen  length               Max sync message length (default=1472)
  --socket       PATH                 xvsd control socket (default /run/xvs/xvsd.sock,
                                      or $XVS_SOCKET)

Health checks (xvs extension; on -A/-E the defaults of every real server
of the service, on -a/-e the server's own; -E/-e change only those given):
  --check        type                 one of none|tcp|http|https|udp|ping|exec|vip,
                                      the default is none (no check).
  --check-port   port                 port probed (default: the server's; the VIP's for vip)
  --check-path   path                 http(s) request path (default /)
  --check-host   host                 http(s) Host header and TLS server name
  --check-method GET|HEAD             http(s) request method (default GET)
  --check-expect codes                accepted http(s) status codes, e.g. 200-299,301
                                      (the default is 200-299)
  --check-regex  regex                http(s) body or tcp/udp reply must match
  --check-send   string               tcp/udp payload (escapes \\r \\n \\t \\0 \\\\ \\xHH)
  --check-receive string              tcp/udp reply must contain this
  --check-cmd    command              exec: exit 0 up, 1 down, 2..255 up with weight code-2
  --check-ca     file                 https: verify the certificate with this CA
                                      (without it, certificates are not verified)
  --check-interval secs               seconds between probes (default 5)
  --check-timeout secs                seconds a probe may take (default 3)
  --check-rise   count                passes in a row to come up (default 2)
  --check-fall   count                failures in a row to go down (default 3)
  --check-on-fail inhibit|remove      down means weight 0 (default) or out of the table
  --quorum       weight               least sum of up servers' weights (default 1)
  --sorry-server server-address       takes new connections while below the quorum
                                      (none: no sorry server)
",
    );
    s
}
