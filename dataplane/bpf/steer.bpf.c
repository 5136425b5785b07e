// SPDX-License-Identifier: (MIT OR Apache-2.0)
//
// xvs steering program.
//
// Runs on every RX queue of every interface xvsd serves. A frame goes to
// the AF_XDP socket of its queue only when it is
//  - TCP/UDP addressed to a configured virtual service (VIP, protocol,
//    port; a port-0 entry matches every port of the VIP), or
//  - TCP/UDP from a NAT real server's address and port (its replies), or
//  - an ICMP error addressed to a VIP or sent by a NAT real server,
// and the same for IPv6 in maps of their own (svc6_map, nat6_map,
// vip6_map), the transport header found behind at most MAX_EXT_HEADERS
// extension headers (hop-by-hop, routing, destination options,
// authentication). Everything else -- ARP, NDP, ICMP and ICMPv6 echo,
// link-local and multicast traffic, the director's own addresses, non-VIP
// ports, fragments, longer or truncated extension chains -- is passed to
// the kernel untouched. The maps are kept in step with the service table
// by xvsd.
//
// A frame for a service that finds no socket on its queue (xvsd died or
// is restarting: the program and its maps stay pinned) is dropped and
// counted, never passed: the kernel has no such connection and would
// answer with a reset, while a dropped segment is retransmitted by TCP
// into the restarted daemon.
//
// A frame for a service whose destination MAC is unicast and not the
// interface's own (a veth, a promiscuous NIC, a switch flooding a dead
// director's MAC) is passed and counted: the kernel drops it as another
// host's, as it would without this program, and xvs never forwards a
// frame meant for another director. The check costs one 6-byte compare,
// made only for frames that would otherwise be redirected.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <linux/ipv6.h>

#define SEC(name) __attribute__((section(name), used))
#define __uint(name, val) int (*name)[val]
#define __type(name, val) typeof(val) *name

static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)BPF_FUNC_map_lookup_elem;
static long (*bpf_redirect_map)(void *map, __u64 key, __u64 flags) = (void *)BPF_FUNC_redirect_map;

/* Key of svc_map: destination address and port in network byte order. */
struct svc_key {
	__u32 addr;
	__u16 port;
	__u8 proto;
	__u8 pad;
};

/* Key of svc6_map and nat6_map: the IPv6 address, then as svc_key. */
struct svc6_key {
	__u8 addr[16];
	__u16 port;
	__u8 proto;
	__u8 pad;
};

/* Extension headers walked before giving up (wire::ipv6::MAX_EXT_HEADERS). */
#define MAX_EXT_HEADERS 8

/* Counters indexed by STEER_* (per-CPU, read by xvsd). */
enum {
	STEER_PASS = 0,
	STEER_REDIRECT = 1,
	STEER_NOSOCK = 2,
	STEER_OTHERHOST = 3,
	STEER_MAX = 4,
};

/* The interface's own MAC (own_mac's only entry); `set` 0: not known
 * yet, nothing is checked. */
struct own_mac {
	__u8 addr[6];
	__u16 set;
};

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, __u32);
} xsks_map SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct svc_key);
	__type(value, __u32);
} svc_map SEC(".maps");

/* NAT real servers: {rip, rport, proto}; rport 0 = any port. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct svc_key);
	__type(value, __u32);
} nat_map SEC(".maps");

/* Every VIP (ICMP errors about its connections). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, __u32);
} vip_map SEC(".maps");

/* IPv6 services, as svc_map. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct svc6_key);
	__type(value, __u32);
} svc6_map SEC(".maps");

/* IPv6 NAT real servers, as nat_map. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct svc6_key);
	__type(value, __u32);
} nat6_map SEC(".maps");

/* Every IPv6 VIP (ICMPv6 errors about its connections). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct in6_addr);
	__type(value, __u32);
} vip6_map SEC(".maps");

/* One program per interface: its MAC at key 0, filled by xvsd. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct own_mac);
} mac_map SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STEER_MAX);
	__type(key, __u32);
	__type(value, __u64);
} steer_stats SEC(".maps");

static __attribute__((always_inline)) int count(__u32 what, int verdict)
{
	__u64 *c = bpf_map_lookup_elem(&steer_stats, &what);
	if (c)
		*c += 1;
	return verdict;
}

/* Whether an IPv6 frame is for the sockets: 1 yes, 0 pass. */
static __attribute__((always_inline)) int steer6(struct ipv6hdr *ip6, void *data_end)
{
	struct svc6_key key = {};
	__u8 *hdr = (void *)(ip6 + 1);
	__u8 next = ip6->nexthdr;
	__u16 *ports;
	int i;

#pragma unroll
	for (i = 0; i < MAX_EXT_HEADERS; i++) {
		__u32 len;

		if (next == IPPROTO_TCP || next == IPPROTO_UDP || next == IPPROTO_ICMPV6)
			break;
		/* Hop-by-hop only first (RFC 8200); fragments go to the
		 * kernel like IPv4's; anything else is not ours. */
		if (next == IPPROTO_HOPOPTS && i != 0)
			return 0;
		if (next != IPPROTO_HOPOPTS && next != IPPROTO_ROUTING &&
		    next != IPPROTO_DSTOPTS && next != IPPROTO_AH)
			return 0;
		if ((void *)(hdr + 2) > data_end)
			return 0;
		if (next == IPPROTO_AH)
			len = ((__u32)hdr[1] + 2) * 4;
		else
			len = ((__u32)hdr[1] + 1) * 8;
		next = hdr[0];
		hdr += len;
	}
	if (next != IPPROTO_TCP && next != IPPROTO_UDP && next != IPPROTO_ICMPV6)
		return 0;
	ports = (void *)hdr;
	if ((void *)(ports + 2) > data_end)
		return 0;

	if (next == IPPROTO_ICMPV6) {
		__u8 type = hdr[0];

		/* Errors only: destination unreachable, packet too big, time
		 * exceeded, parameter problem (echo and NDP are the kernel's). */
		if (type < 1 || type > 4)
			return 0;
		if (bpf_map_lookup_elem(&vip6_map, &ip6->daddr))
			return 1;
		__builtin_memcpy(key.addr, &ip6->saddr, 16);
		return bpf_map_lookup_elem(&nat6_map, &key) != 0;
	}
	__builtin_memcpy(key.addr, &ip6->daddr, 16);
	key.port = ports[1];
	key.proto = next;
	if (bpf_map_lookup_elem(&svc6_map, &key))
		return 1;
	key.port = 0;
	if (bpf_map_lookup_elem(&svc6_map, &key))
		return 1;
	/* A NAT real server's reply? */
	__builtin_memcpy(key.addr, &ip6->saddr, 16);
	key.port = ports[0];
	if (bpf_map_lookup_elem(&nat6_map, &key))
		return 1;
	key.port = 0;
	return bpf_map_lookup_elem(&nat6_map, &key) != 0;
}

SEC("xdp")
int xvs_steer(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip;
	struct svc_key key = {};
	__u32 queue = ctx->rx_queue_index;
	__u16 *ports;
	__u32 ihl;
	long act;

	if ((void *)(eth + 1) > data_end)
		return count(STEER_PASS, XDP_PASS);
	if (eth->h_proto != __builtin_bswap16(ETH_P_IP)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);

		/* IPv4 keeps its single test; IPv6 is checked after it. */
		if (eth->h_proto != __builtin_bswap16(ETH_P_IPV6))
			return count(STEER_PASS, XDP_PASS);
		if ((void *)(ip6 + 1) > data_end || ip6->version != 6)
			return count(STEER_PASS, XDP_PASS);
		if (!steer6(ip6, data_end))
			return count(STEER_PASS, XDP_PASS);
		goto steer;
	}
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end)
		return count(STEER_PASS, XDP_PASS);
	if (ip->protocol != IPPROTO_TCP && ip->protocol != IPPROTO_UDP &&
	    ip->protocol != IPPROTO_ICMP)
		return count(STEER_PASS, XDP_PASS);
	/* Fragments carry no (or not all) ports: leave them to the kernel. */
	if (ip->frag_off & __builtin_bswap16(0x3fff))
		return count(STEER_PASS, XDP_PASS);
	ihl = ip->ihl;
	if (ihl < 5)
		return count(STEER_PASS, XDP_PASS);
	ports = (void *)ip + ihl * 4;
	if ((void *)(ports + 2) > data_end)
		return count(STEER_PASS, XDP_PASS);

	if (ip->protocol == IPPROTO_ICMP) {
		__u8 type = *(__u8 *)ports;
		__u32 daddr = ip->daddr;

		/* Errors only: destination unreachable, source quench, time
		 * exceeded, parameter problem. */
		if (type != 3 && type != 4 && type != 11 && type != 12)
			return count(STEER_PASS, XDP_PASS);
		if (!bpf_map_lookup_elem(&vip_map, &daddr)) {
			key.addr = ip->saddr;
			key.port = 0;
			key.proto = 0;
			if (!bpf_map_lookup_elem(&nat_map, &key))
				return count(STEER_PASS, XDP_PASS);
		}
	} else {
		key.addr = ip->daddr;
		key.port = ports[1];
		key.proto = ip->protocol;
		if (!bpf_map_lookup_elem(&svc_map, &key)) {
			key.port = 0;
			if (!bpf_map_lookup_elem(&svc_map, &key)) {
				/* A NAT real server's reply? */
				key.addr = ip->saddr;
				key.port = ports[0];
				if (!bpf_map_lookup_elem(&nat_map, &key)) {
					key.port = 0;
					if (!bpf_map_lookup_elem(&nat_map, &key))
						return count(STEER_PASS, XDP_PASS);
				}
			}
		}
	}
steer:
	/* Unicast to another host's MAC: the kernel's (it drops it). */
	if (!(eth->h_dest[0] & 1)) {
		__u32 zero = 0;
		struct own_mac *own = bpf_map_lookup_elem(&mac_map, &zero);

		if (own && own->set &&
		    (*(__u32 *)eth->h_dest != *(__u32 *)own->addr ||
		     *(__u16 *)(eth->h_dest + 4) != *(__u16 *)(own->addr + 4)))
			return count(STEER_OTHERHOST, XDP_PASS);
	}
	/* No socket on this queue (the daemon is gone or restarting): drop
	 * and count, so the peer retransmits instead of being reset. */
	if (!bpf_map_lookup_elem(&xsks_map, &queue))
		return count(STEER_NOSOCK, XDP_DROP);
	/* The socket may go between the lookup and the redirect: the
	 * redirect's fallback action is the same drop, counted alike. */
	act = bpf_redirect_map(&xsks_map, queue, XDP_DROP);
	return count(act == XDP_REDIRECT ? STEER_REDIRECT : STEER_NOSOCK, act);
}

char _license[] SEC("license") = "Dual MIT/GPL";
