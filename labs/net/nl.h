/* nl.h: the rtnetlink requests and reports the lab network needs (links, veth pairs, bridges, addresses, routes, neighbours), over libmnl. */
#ifndef SOCKLAB_NET_NL_H
#define SOCKLAB_NET_NL_H

#include <stddef.h>
#include <stdint.h>

/*
 * A netlink socket belongs to the network namespace of the thread that opened
 * it, so each request acts in that namespace whatever thread sends it later.
 * Every request asks for an acknowledgement and returns 0 or -errno from the
 * kernel, with a sentence in err.
 */

struct mnl_socket;

struct nl {
	struct mnl_socket *sock;
	unsigned seq;
	unsigned portid;
};

/* Open an rtnetlink socket in the calling thread's network namespace. */
int nl_open(struct nl *nl, char *err, size_t errlen);
void nl_close(struct nl *nl);

/* Create a veth pair: name here, peer in the namespace held by peer_ns_fd,
 * each with its MAC and the MTU. Both ends start down. */
int nl_veth_create(struct nl *nl, const char *name, const uint8_t mac[6], const char *peer,
		   const uint8_t peer_mac[6], int peer_ns_fd, int mtu, char *err, size_t errlen);

/* Set a link's MAC (when mac is not NULL) and MTU (when mtu > 0) and bring it
 * up (when up). */
int nl_link_set(struct nl *nl, int ifindex, const uint8_t *mac, int mtu, int up, char *err,
		size_t errlen);

/* Read a link's RFC 2863 operational state (IF_OPER_UP, ...) into *state. */
int nl_link_operstate(struct nl *nl, int ifindex, int *state, char *err, size_t errlen);

/* Add an IPv4 address (host byte order) with its prefix length. */
int nl_addr_add(struct nl *nl, int ifindex, uint32_t addr, int prefix, char *err, size_t errlen);

/* Create a bridge (STP off, so a port forwards as soon as it is up). */
int nl_bridge_create(struct nl *nl, const char *name, char *err, size_t errlen);

/* Make ifindex a port of the bridge master_ifindex. */
int nl_link_set_master(struct nl *nl, int ifindex, int master_ifindex, char *err, size_t errlen);

/* Add the default route (0.0.0.0/0) via gw (host byte order) out of oif. */
int nl_route_add_default(struct nl *nl, uint32_t gw, int oif, char *err, size_t errlen);

/* What the kernel answers to RTM_GETROUTE for one destination. */
struct nl_route {
	uint32_t dst;     /* the route's destination prefix (host byte order) */
	int dst_len;      /* its length: 0 for the default route */
	uint32_t gateway; /* 0: the destination is on the link (no gateway) */
	uint32_t prefsrc; /* the source address the kernel picks */
	int oif;          /* the interface the packet leaves by */
	int type;         /* RTN_UNICAST, RTN_LOCAL, ... */
	int scope;        /* RT_SCOPE_LINK for a connected subnet, ... */
	int table;
};

/* Ask the kernel which route it uses for dst (host byte order). With
 * fib_match the answer is the routing table's entry that matched (its prefix
 * and length); without, the route resolved for dst (gateway, source). */
int nl_route_get(struct nl *nl, uint32_t dst, int fib_match, struct nl_route *out, char *err,
		 size_t errlen);

/* The ARP table's parameters of one interface, in milliseconds. */
struct nl_neigh_parms {
	uint64_t reachable_ms;      /* the reachable time in force (random, from the base) */
	uint64_t base_reachable_ms; /* base_reachable_time */
	uint64_t retrans_ms;        /* between two solicitations */
	uint64_t delay_probe_ms;    /* delay_first_probe_time */
	uint64_t gc_stale_ms;
	uint32_t ucast_probes, mcast_probes;
};

/* Set the ARP timers of ifindex (0 leaves one as it is). The kernel draws a
 * new reachable time from the base at once. */
int nl_neightbl_set(struct nl *nl, int ifindex, uint64_t base_reachable_ms,
		    uint64_t delay_probe_ms, uint64_t retrans_ms, char *err, size_t errlen);

/* Read the ARP timers in force on ifindex. */
int nl_neightbl_get(struct nl *nl, int ifindex, struct nl_neigh_parms *out, char *err,
		    size_t errlen);

/* One IPv4 neighbour entry as the kernel reports it. */
struct nl_neigh {
	int deleted;   /* RTM_DELNEIGH */
	int ifindex;
	uint16_t state; /* NUD_* */
	uint8_t flags;  /* NTF_* */
	uint32_t ip;    /* host byte order */
	uint8_t mac[6];
	int has_mac;
	uint32_t probes; /* NDA_PROBES, when present */
};

/* Open an rtnetlink socket in the calling thread's namespace that receives
 * every neighbour change (RTNLGRP_NEIGH). Read it with nl_neigh_read(). */
int nl_neigh_monitor_open(struct nl *nl, char *err, size_t errlen);

/* Read one batch of messages from a monitor socket (non-blocking when the
 * socket is), calling fn for each IPv4 neighbour entry. Returns the number of
 * entries, or -errno (-EAGAIN: nothing queued; -ENOBUFS: the kernel dropped
 * notifications because the socket's buffer was full). */
int nl_neigh_read(struct nl *nl, void (*fn)(void *arg, const struct nl_neigh *ne), void *arg);

/* Ask for one neighbour entry (ip in host byte order) on ifindex: 0 and *out,
 * or -ENOENT when the kernel has none. */
int nl_neigh_get(struct nl *nl, int ifindex, uint32_t ip, struct nl_neigh *out, char *err,
		 size_t errlen);

/* Remove the neighbour entry for ip on ifindex (-ENOENT when there is none). */
int nl_neigh_del(struct nl *nl, int ifindex, uint32_t ip, char *err, size_t errlen);

/* "REACHABLE", "STALE", ... for a NUD_* value (one bit); "NONE" for 0. */
const char *nl_nud_name(uint16_t state);

#endif
