/* nl.c: rtnetlink requests (RTM_NEWLINK, RTM_NEWADDR) built and acknowledged with libmnl. */
#include "net/nl.h"

#include <arpa/inet.h>
#include <errno.h>
#include <libmnl/libmnl.h>
#include <linux/if.h>
#include <linux/if_addr.h>
#include <linux/if_link.h>
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

/* Send one request and wait for its acknowledgement. */
static int nl_talk(struct nl *nl, struct nlmsghdr *nlh, const char *what, char *err,
		   size_t errlen)
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
		rc = mnl_cb_run(buf, (size_t)n, nl->seq, nl->portid, NULL, NULL);
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
