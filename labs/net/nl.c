/* nl.c: rtnetlink requests (links, addresses, routes, neighbour tables) built and acknowledged with libmnl, and neighbour reports parsed. */
#include "net/nl.h"

#include <arpa/inet.h>
#include <errno.h>
#include <libmnl/libmnl.h>
#include <linux/if.h>
#include <linux/if_addr.h>
#include <linux/if_link.h>
#include <linux/neighbour.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

int nl_open(struct nl *nl, char *err, size_t errlen)
{
	memset(nl, 0, sizeof *nl);
	nl->sock = mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC);
	if (!nl->sock || mnl_socket_bind(nl->sock, 0, MNL_SOCKET_AUTOPID) < 0) {
		int e = errno;
		snprintf(err, errlen, "opening rtnetlink: %s", strerror(e));
		nl_close(nl);
		return -e;
	}
	nl->portid = mnl_socket_get_portid(nl->sock);
	nl->seq = (unsigned)time(NULL);
	return 0;
}

void nl_close(struct nl *nl)
{
	if (nl->sock)
		mnl_socket_close(nl->sock);
	nl->sock = NULL;
}

/* Send one request and wait for its acknowledgement (a dump ends with
 * NLMSG_DONE instead), calling cb for every answer before it. */
static int nl_talk_cb(struct nl *nl, struct nlmsghdr *nlh, mnl_cb_t cb, void *data,
		      const char *what, char *err, size_t errlen)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	int rc;
	ssize_t n;

	nlh->nlmsg_flags |= NLM_F_REQUEST | NLM_F_ACK;
	nlh->nlmsg_seq = ++nl->seq;
	if (mnl_socket_sendto(nl->sock, nlh, nlh->nlmsg_len) < 0) {
		rc = -errno;
		snprintf(err, errlen, "%s: sending the request: %s", what, strerror(-rc));
		return rc;
	}
	for (;;) {
		n = mnl_socket_recvfrom(nl->sock, buf, sizeof buf);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = -errno;
			break;
		}
		rc = mnl_cb_run(buf, (size_t)n, nl->seq, nl->portid, cb, data);
		if (rc == MNL_CB_STOP) {
			rc = 0;
			break;
		}
		if (rc < 0) {
			rc = -errno;
			break;
		}
	}
	if (rc < 0)
		snprintf(err, errlen, "%s: %s", what, strerror(-rc));
	return rc;
}

static int nl_talk(struct nl *nl, struct nlmsghdr *nlh, const char *what, char *err,
		   size_t errlen)
{
	return nl_talk_cb(nl, nlh, NULL, NULL, what, err, errlen);
}

struct oper_arg {
	int ifindex;
	int state;
};

static int oper_attr(const struct nlattr *a, void *data)
{
	struct oper_arg *o = data;

	if (mnl_attr_get_type(a) == IFLA_OPERSTATE && mnl_attr_validate(a, MNL_TYPE_U8) >= 0)
		o->state = mnl_attr_get_u8(a);
	return MNL_CB_OK;
}

static int oper_cb(const struct nlmsghdr *nlh, void *data)
{
	const struct ifinfomsg *ifm = mnl_nlmsg_get_payload(nlh);
	struct oper_arg *o = data;

	if (nlh->nlmsg_type != RTM_NEWLINK || ifm->ifi_index != o->ifindex)
		return MNL_CB_OK;
	return mnl_attr_parse(nlh, sizeof *ifm, oper_attr, data);
}

int nl_link_operstate(struct nl *nl, int ifindex, int *state, char *err, size_t errlen)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	struct ifinfomsg *ifm;
	struct oper_arg o = {ifindex, -1};
	ssize_t n;
	int rc;

	nlh->nlmsg_type = RTM_GETLINK;
	nlh->nlmsg_flags = NLM_F_REQUEST;
	nlh->nlmsg_seq = ++nl->seq;
	ifm = mnl_nlmsg_put_extra_header(nlh, sizeof *ifm);
	ifm->ifi_family = AF_UNSPEC;
	ifm->ifi_index = ifindex;
	if (mnl_socket_sendto(nl->sock, nlh, nlh->nlmsg_len) < 0) {
		rc = -errno;
		snprintf(err, errlen, "reading the link state: %s", strerror(-rc));
		return rc;
	}
	do {
		n = mnl_socket_recvfrom(nl->sock, buf, sizeof buf);
	} while (n < 0 && errno == EINTR);
	if (n < 0 || mnl_cb_run(buf, (size_t)n, nl->seq, nl->portid, oper_cb, &o) < 0) {
		rc = -errno;
		snprintf(err, errlen, "reading the link state: %s", strerror(-rc));
		return rc;
	}
	*state = o.state;
	return 0;
}

int nl_veth_create(struct nl *nl, const char *name, const uint8_t mac[6], const char *peer,
		   const uint8_t peer_mac[6], int peer_ns_fd, int mtu, char *err, size_t errlen)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	struct ifinfomsg *ifm, *pifm;
	struct nlattr *linkinfo, *data, *peer_attr;

	nlh->nlmsg_type = RTM_NEWLINK;
	nlh->nlmsg_flags = NLM_F_CREATE | NLM_F_EXCL;
	ifm = mnl_nlmsg_put_extra_header(nlh, sizeof *ifm);
	ifm->ifi_family = AF_UNSPEC;
	mnl_attr_put_strz(nlh, IFLA_IFNAME, name);
	mnl_attr_put(nlh, IFLA_ADDRESS, 6, mac);
	mnl_attr_put_u32(nlh, IFLA_MTU, (uint32_t)mtu);
	linkinfo = mnl_attr_nest_start(nlh, IFLA_LINKINFO);
	mnl_attr_put_strz(nlh, IFLA_INFO_KIND, "veth");
	data = mnl_attr_nest_start(nlh, IFLA_INFO_DATA);
	/* VETH_INFO_PEER holds a struct ifinfomsg followed by the peer's attributes. */
	peer_attr = mnl_attr_nest_start(nlh, VETH_INFO_PEER);
	pifm = mnl_nlmsg_put_extra_header(nlh, sizeof *pifm);
	pifm->ifi_family = AF_UNSPEC;
	mnl_attr_put_strz(nlh, IFLA_IFNAME, peer);
	mnl_attr_put(nlh, IFLA_ADDRESS, 6, peer_mac);
	mnl_attr_put_u32(nlh, IFLA_MTU, (uint32_t)mtu);
	mnl_attr_put_u32(nlh, IFLA_NET_NS_FD, (uint32_t)peer_ns_fd);
	mnl_attr_nest_end(nlh, peer_attr);
	mnl_attr_nest_end(nlh, data);
	mnl_attr_nest_end(nlh, linkinfo);
	return nl_talk(nl, nlh, "creating the veth pair", err, errlen);
}

int nl_link_set(struct nl *nl, int ifindex, const uint8_t *mac, int mtu, int up, char *err,
		size_t errlen)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	struct ifinfomsg *ifm;

	nlh->nlmsg_type = RTM_NEWLINK;
	ifm = mnl_nlmsg_put_extra_header(nlh, sizeof *ifm);
	ifm->ifi_family = AF_UNSPEC;
	ifm->ifi_index = ifindex;
	if (up) {
		ifm->ifi_flags = IFF_UP;
		ifm->ifi_change = IFF_UP;
	}
	if (mac)
		mnl_attr_put(nlh, IFLA_ADDRESS, 6, mac);
	if (mtu > 0)
		mnl_attr_put_u32(nlh, IFLA_MTU, (uint32_t)mtu);
	return nl_talk(nl, nlh, "configuring the link", err, errlen);
}

int nl_addr_add(struct nl *nl, int ifindex, uint32_t addr, int prefix, char *err, size_t errlen)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	struct ifaddrmsg *ifa;
	uint32_t a = htonl(addr);
	uint32_t bcast = htonl(addr | (prefix >= 32 ? 0 : (0xffffffffu >> prefix)));

	nlh->nlmsg_type = RTM_NEWADDR;
	nlh->nlmsg_flags = NLM_F_CREATE | NLM_F_EXCL;
	ifa = mnl_nlmsg_put_extra_header(nlh, sizeof *ifa);
	ifa->ifa_family = AF_INET;
	ifa->ifa_prefixlen = (unsigned char)prefix;
	ifa->ifa_scope = RT_SCOPE_UNIVERSE;
	ifa->ifa_index = (unsigned)ifindex;
	mnl_attr_put_u32(nlh, IFA_LOCAL, a);
	mnl_attr_put_u32(nlh, IFA_ADDRESS, a);
	mnl_attr_put_u32(nlh, IFA_BROADCAST, bcast);
	return nl_talk(nl, nlh, "adding the address", err, errlen);
}

int nl_bridge_create(struct nl *nl, const char *name, char *err, size_t errlen)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	struct ifinfomsg *ifm;
	struct nlattr *linkinfo, *data;

	nlh->nlmsg_type = RTM_NEWLINK;
	nlh->nlmsg_flags = NLM_F_CREATE | NLM_F_EXCL;
	ifm = mnl_nlmsg_put_extra_header(nlh, sizeof *ifm);
	ifm->ifi_family = AF_UNSPEC;
	mnl_attr_put_strz(nlh, IFLA_IFNAME, name);
	linkinfo = mnl_attr_nest_start(nlh, IFLA_LINKINFO);
	mnl_attr_put_strz(nlh, IFLA_INFO_KIND, "bridge");
	data = mnl_attr_nest_start(nlh, IFLA_INFO_DATA);
	/* No IGMP snooping: the bridge then sends no IGMP reports or queries of
	 * its own, and floods multicast like a plain hub would. */
	mnl_attr_put_u8(nlh, IFLA_BR_MCAST_SNOOPING, 0);
	mnl_attr_nest_end(nlh, data);
	mnl_attr_nest_end(nlh, linkinfo);
	return nl_talk(nl, nlh, "creating the bridge", err, errlen);
}

int nl_link_set_master(struct nl *nl, int ifindex, int master_ifindex, char *err, size_t errlen)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	struct ifinfomsg *ifm;

	nlh->nlmsg_type = RTM_NEWLINK;
	ifm = mnl_nlmsg_put_extra_header(nlh, sizeof *ifm);
	ifm->ifi_family = AF_UNSPEC;
	ifm->ifi_index = ifindex;
	mnl_attr_put_u32(nlh, IFLA_MASTER, (uint32_t)master_ifindex);
	return nl_talk(nl, nlh, "adding a port to the bridge", err, errlen);
}

int nl_route_add_default(struct nl *nl, uint32_t gw, int oif, char *err, size_t errlen)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	struct rtmsg *rtm;

	nlh->nlmsg_type = RTM_NEWROUTE;
	nlh->nlmsg_flags = NLM_F_CREATE | NLM_F_EXCL;
	rtm = mnl_nlmsg_put_extra_header(nlh, sizeof *rtm);
	rtm->rtm_family = AF_INET;
	rtm->rtm_dst_len = 0;
	rtm->rtm_table = RT_TABLE_MAIN;
	rtm->rtm_protocol = RTPROT_STATIC;
	rtm->rtm_scope = RT_SCOPE_UNIVERSE;
	rtm->rtm_type = RTN_UNICAST;
	mnl_attr_put_u32(nlh, RTA_GATEWAY, htonl(gw));
	mnl_attr_put_u32(nlh, RTA_OIF, (uint32_t)oif);
	return nl_talk(nl, nlh, "adding the default route", err, errlen);
}

static int route_attr(const struct nlattr *a, void *data)
{
	struct nl_route *r = data;

	if (mnl_attr_validate(a, MNL_TYPE_U32) < 0)
		return MNL_CB_OK;
	switch (mnl_attr_get_type(a)) {
	case RTA_DST:
		r->dst = ntohl(mnl_attr_get_u32(a));
		break;
	case RTA_GATEWAY:
		r->gateway = ntohl(mnl_attr_get_u32(a));
		break;
	case RTA_PREFSRC:
		r->prefsrc = ntohl(mnl_attr_get_u32(a));
		break;
	case RTA_OIF:
		r->oif = (int)mnl_attr_get_u32(a);
		break;
	case RTA_TABLE:
		r->table = (int)mnl_attr_get_u32(a);
		break;
	}
	return MNL_CB_OK;
}

static int route_cb(const struct nlmsghdr *nlh, void *data)
{
	const struct rtmsg *rtm = mnl_nlmsg_get_payload(nlh);
	struct nl_route *r = data;

	if (nlh->nlmsg_type != RTM_NEWROUTE || rtm->rtm_family != AF_INET)
		return MNL_CB_OK;
	r->dst_len = rtm->rtm_dst_len;
	r->type = rtm->rtm_type;
	r->scope = rtm->rtm_scope;
	r->table = rtm->rtm_table;
	return mnl_attr_parse(nlh, sizeof *rtm, route_attr, data);
}

int nl_route_get(struct nl *nl, uint32_t dst, int fib_match, struct nl_route *out, char *err,
		 size_t errlen)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	struct rtmsg *rtm;

	memset(out, 0, sizeof *out);
	out->dst_len = -1;
	nlh->nlmsg_type = RTM_GETROUTE;
	rtm = mnl_nlmsg_put_extra_header(nlh, sizeof *rtm);
	rtm->rtm_family = AF_INET;
	rtm->rtm_dst_len = 32;
	rtm->rtm_flags = fib_match ? RTM_F_FIB_MATCH : 0;
	mnl_attr_put_u32(nlh, RTA_DST, htonl(dst));
	return nl_talk_cb(nl, nlh, route_cb, out, "asking for the route", err, errlen);
}

int nl_neightbl_set(struct nl *nl, int ifindex, uint64_t base_reachable_ms,
		    uint64_t delay_probe_ms, uint64_t retrans_ms, char *err, size_t errlen)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	struct ndtmsg *ndt;
	struct nlattr *parms;

	nlh->nlmsg_type = RTM_SETNEIGHTBL;
	ndt = mnl_nlmsg_put_extra_header(nlh, sizeof *ndt);
	ndt->ndtm_family = AF_INET;
	mnl_attr_put_strz(nlh, NDTA_NAME, "arp_cache");
	parms = mnl_attr_nest_start(nlh, NDTA_PARMS);
	mnl_attr_put_u32(nlh, NDTPA_IFINDEX, (uint32_t)ifindex);
	if (base_reachable_ms)
		mnl_attr_put_u64(nlh, NDTPA_BASE_REACHABLE_TIME, base_reachable_ms);
	if (delay_probe_ms)
		mnl_attr_put_u64(nlh, NDTPA_DELAY_PROBE_TIME, delay_probe_ms);
	if (retrans_ms)
		mnl_attr_put_u64(nlh, NDTPA_RETRANS_TIME, retrans_ms);
	mnl_attr_nest_end(nlh, parms);
	return nl_talk(nl, nlh, "setting the ARP timers", err, errlen);
}

struct tbl_arg {
	int ifindex;
	int found;
	struct nl_neigh_parms p;
	struct nl_neigh_parms cur;
	int cur_if;
};

static int parms_attr(const struct nlattr *a, void *data)
{
	struct tbl_arg *t = data;
	int type = mnl_attr_get_type(a);

	if (type == NDTPA_IFINDEX && mnl_attr_validate(a, MNL_TYPE_U32) >= 0) {
		t->cur_if = (int)mnl_attr_get_u32(a);
		return MNL_CB_OK;
	}
	if (type == NDTPA_UCAST_PROBES && mnl_attr_validate(a, MNL_TYPE_U32) >= 0)
		t->cur.ucast_probes = mnl_attr_get_u32(a);
	if (type == NDTPA_MCAST_PROBES && mnl_attr_validate(a, MNL_TYPE_U32) >= 0)
		t->cur.mcast_probes = mnl_attr_get_u32(a);
	if (mnl_attr_validate(a, MNL_TYPE_U64) < 0)
		return MNL_CB_OK;
	switch (type) {
	case NDTPA_REACHABLE_TIME:
		t->cur.reachable_ms = mnl_attr_get_u64(a);
		break;
	case NDTPA_BASE_REACHABLE_TIME:
		t->cur.base_reachable_ms = mnl_attr_get_u64(a);
		break;
	case NDTPA_RETRANS_TIME:
		t->cur.retrans_ms = mnl_attr_get_u64(a);
		break;
	case NDTPA_DELAY_PROBE_TIME:
		t->cur.delay_probe_ms = mnl_attr_get_u64(a);
		break;
	case NDTPA_GC_STALETIME:
		t->cur.gc_stale_ms = mnl_attr_get_u64(a);
		break;
	}
	return MNL_CB_OK;
}

struct tbl_msg {
	struct tbl_arg *t;
	int arp;
	const struct nlattr *parms;
};

static int tbl_attr(const struct nlattr *a, void *data)
{
	struct tbl_msg *m = data;

	if (mnl_attr_get_type(a) == NDTA_NAME && mnl_attr_validate(a, MNL_TYPE_STRING) >= 0)
		m->arp = strcmp(mnl_attr_get_str(a), "arp_cache") == 0;
	if (mnl_attr_get_type(a) == NDTA_PARMS)
		m->parms = a;
	return MNL_CB_OK;
}

static int tbl_cb(const struct nlmsghdr *nlh, void *data)
{
	struct tbl_msg m = {data, 0, NULL};

	if (nlh->nlmsg_type != RTM_NEWNEIGHTBL)
		return MNL_CB_OK;
	mnl_attr_parse(nlh, sizeof(struct ndtmsg), tbl_attr, &m);
	if (!m.arp || !m.parms)
		return MNL_CB_OK;
	memset(&m.t->cur, 0, sizeof m.t->cur);
	m.t->cur_if = 0;
	mnl_attr_parse_nested(m.parms, parms_attr, m.t);
	if (m.t->cur_if == m.t->ifindex) {
		m.t->p = m.t->cur;
		m.t->found = 1;
	}
	return MNL_CB_OK;
}

int nl_neightbl_get(struct nl *nl, int ifindex, struct nl_neigh_parms *out, char *err,
		    size_t errlen)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	struct ndtmsg *ndt;
	struct tbl_arg t;
	int rc;

	memset(&t, 0, sizeof t);
	t.ifindex = ifindex;
	nlh->nlmsg_type = RTM_GETNEIGHTBL;
	nlh->nlmsg_flags = NLM_F_DUMP;
	ndt = mnl_nlmsg_put_extra_header(nlh, sizeof *ndt);
	ndt->ndtm_family = AF_INET;
	rc = nl_talk_cb(nl, nlh, tbl_cb, &t, "reading the ARP timers", err, errlen);
	if (rc == 0 && !t.found) {
		snprintf(err, errlen, "reading the ARP timers: interface %d has none", ifindex);
		rc = -ENOENT;
	}
	*out = t.p;
	return rc;
}

static int neigh_attr(const struct nlattr *a, void *data)
{
	struct nl_neigh *ne = data;

	switch (mnl_attr_get_type(a)) {
	case NDA_DST:
		if (mnl_attr_get_payload_len(a) == 4)
			ne->ip = ntohl(mnl_attr_get_u32(a));
		break;
	case NDA_LLADDR:
		if (mnl_attr_get_payload_len(a) == 6) {
			memcpy(ne->mac, mnl_attr_get_payload(a), 6);
			ne->has_mac = 1;
		}
		break;
	case NDA_PROBES:
		if (mnl_attr_validate(a, MNL_TYPE_U32) >= 0)
			ne->probes = mnl_attr_get_u32(a);
		break;
	}
	return MNL_CB_OK;
}

/* Fill ne from an RTM_NEWNEIGH/RTM_DELNEIGH; 0, or -1 for another family. */
static int neigh_parse(const struct nlmsghdr *nlh, struct nl_neigh *ne)
{
	const struct ndmsg *ndm;

	if ((nlh->nlmsg_type != RTM_NEWNEIGH && nlh->nlmsg_type != RTM_DELNEIGH) ||
	    mnl_nlmsg_get_payload_len(nlh) < sizeof *ndm)
		return -1;
	ndm = mnl_nlmsg_get_payload(nlh);
	if (ndm->ndm_family != AF_INET)
		return -1;
	memset(ne, 0, sizeof *ne);
	ne->deleted = nlh->nlmsg_type == RTM_DELNEIGH;
	ne->ifindex = ndm->ndm_ifindex;
	ne->state = ndm->ndm_state;
	ne->flags = ndm->ndm_flags;
	mnl_attr_parse(nlh, sizeof *ndm, neigh_attr, ne);
	return 0;
}

int nl_neigh_monitor_open(struct nl *nl, char *err, size_t errlen)
{
	memset(nl, 0, sizeof *nl);
	nl->sock = mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (!nl->sock || mnl_socket_bind(nl->sock, RTMGRP_NEIGH, MNL_SOCKET_AUTOPID) < 0) {
		int e = errno;
		snprintf(err, errlen, "opening the neighbour monitor: %s", strerror(e));
		nl_close(nl);
		return -e;
	}
	nl->portid = mnl_socket_get_portid(nl->sock);
	return 0;
}

int nl_neigh_read(struct nl *nl, void (*fn)(void *arg, const struct nl_neigh *ne), void *arg)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	const struct nlmsghdr *nlh;
	struct nl_neigh ne;
	ssize_t n;
	int len, count = 0;

	do {
		n = mnl_socket_recvfrom(nl->sock, buf, sizeof buf);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	len = (int)n;
	for (nlh = (const struct nlmsghdr *)buf; mnl_nlmsg_ok(nlh, len);
	     nlh = mnl_nlmsg_next(nlh, &len)) {
		if (neigh_parse(nlh, &ne) == 0) {
			fn(arg, &ne);
			count++;
		}
	}
	return count;
}

static int neigh_get_cb(const struct nlmsghdr *nlh, void *data)
{
	struct nl_neigh *ne = data;

	if (neigh_parse(nlh, ne) == 0)
		ne->probes |= 0x80000000u; /* marks "found"; cleared by the caller */
	return MNL_CB_OK;
}

int nl_neigh_get(struct nl *nl, int ifindex, uint32_t ip, struct nl_neigh *out, char *err,
		 size_t errlen)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	struct ndmsg *ndm;
	int rc;

	memset(out, 0, sizeof *out);
	nlh->nlmsg_type = RTM_GETNEIGH;
	ndm = mnl_nlmsg_put_extra_header(nlh, sizeof *ndm);
	ndm->ndm_family = AF_INET;
	ndm->ndm_ifindex = ifindex;
	mnl_attr_put_u32(nlh, NDA_DST, htonl(ip));
	rc = nl_talk_cb(nl, nlh, neigh_get_cb, out, "asking for the neighbour entry", err, errlen);
	if (rc == 0 && !(out->probes & 0x80000000u))
		rc = -ENOENT;
	out->probes &= 0x7fffffffu;
	return rc;
}

int nl_neigh_del(struct nl *nl, int ifindex, uint32_t ip, char *err, size_t errlen)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	struct ndmsg *ndm;

	nlh->nlmsg_type = RTM_DELNEIGH;
	ndm = mnl_nlmsg_put_extra_header(nlh, sizeof *ndm);
	ndm->ndm_family = AF_INET;
	ndm->ndm_ifindex = ifindex;
	mnl_attr_put_u32(nlh, NDA_DST, htonl(ip));
	return nl_talk(nl, nlh, "removing the neighbour entry", err, errlen);
}

const char *nl_nud_name(uint16_t state)
{
	static const struct {
		uint16_t v;
		const char *name;
	} names[] = {
		{NUD_INCOMPLETE, "INCOMPLETE"}, {NUD_REACHABLE, "REACHABLE"}, {NUD_STALE, "STALE"},
		{NUD_DELAY, "DELAY"},		{NUD_PROBE, "PROBE"},	      {NUD_FAILED, "FAILED"},
		{NUD_NOARP, "NOARP"},		{NUD_PERMANENT, "PERMANENT"}, {0, NULL},
	};
	int i;

	if (state == 0)
		return "NONE";
	for (i = 0; names[i].name; i++)
		if (state & names[i].v)
			return names[i].name;
	return "UNKNOWN";
}
