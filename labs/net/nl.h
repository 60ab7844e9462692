/* nl.h: the few rtnetlink requests the lab network needs (links, veth pairs, addresses), over libmnl. */
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

#endif
