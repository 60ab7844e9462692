/* diag.c: TCP sockets and their timers from NETLINK_SOCK_DIAG (inet_diag), and TCP_INFO's state. */
#include "tcpstate.h"

#include <errno.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static const char *const timer_names[] = {
	[TCPST_TIMER_NONE] = "none",
	[TCPST_TIMER_RETRANS] = "retransmit",
	[TCPST_TIMER_KEEPALIVE] = "keepalive",
	[TCPST_TIMER_TIME_WAIT] = "time_wait",
	[TCPST_TIMER_PROBE] = "zero_window_probe",
};

const char *tcpst_timer_name(int timer)
{
	return timer >= 0 && timer < (int)(sizeof timer_names / sizeof timer_names[0])
		       ? timer_names[timer]
		       : "?";
}

/* At most this many replies are read: a dump of a busy host stays bounded. */
#define MAX_SOCKETS 100000

int tcpst_diag_dump(int family, tcpst_diag_fn fn, void *arg, char *err, size_t errlen)
{
	struct {
		struct nlmsghdr nh;
		struct inet_diag_req_v2 req;
	} msg;
	struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
	char buf[32768] __attribute__((aligned(NLMSG_ALIGNTO)));
	int fd, rc = 0, count = 0, done = 0;

	fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
	if (fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "socket(NETLINK_SOCK_DIAG): %s", strerror(-rc));
		return rc;
	}
	memset(&msg, 0, sizeof msg);
	msg.nh.nlmsg_len = sizeof msg;
	msg.nh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
	msg.nh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
	msg.nh.nlmsg_seq = 1;
	msg.req.sdiag_family = (__u8)family;
	msg.req.sdiag_protocol = IPPROTO_TCP;
	msg.req.idiag_states = ~0u; /* every state, TIME_WAIT and request sockets too */
	if (sendto(fd, &msg, sizeof msg, 0, (struct sockaddr *)&kernel, sizeof kernel) < 0) {
		rc = -errno;
		snprintf(err, errlen, "sock_diag request: %s", strerror(-rc));
		goto out;
	}
	while (!done) {
		ssize_t n = recv(fd, buf, sizeof buf, 0);
		struct nlmsghdr *h;

		if (n < 0) {
			if (errno == EINTR)
				continue;
			rc = -errno;
			snprintf(err, errlen, "sock_diag reply: %s", strerror(-rc));
			goto out;
		}
		if (n == 0)
			break;
		for (h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
			const struct inet_diag_msg *m;
			struct tcpst_diag_sock s;

			if (h->nlmsg_type == NLMSG_DONE) {
				done = 1;
				break;
			}
			if (h->nlmsg_type == NLMSG_ERROR) {
				const struct nlmsgerr *e = NLMSG_DATA(h);
				rc = h->nlmsg_len >= NLMSG_LENGTH(sizeof *e) ? e->error : -EIO;
				snprintf(err, errlen, "sock_diag: %s", strerror(-rc));
				goto out;
			}
			if (h->nlmsg_len < NLMSG_LENGTH(sizeof *m))
				continue;
			m = NLMSG_DATA(h);
			memset(&s, 0, sizeof s);
			s.family = m->idiag_family;
			s.state = m->idiag_state;
			s.timer = m->idiag_timer;
			s.expires_ms = m->idiag_expires;
			s.rqueue = m->idiag_rqueue;
			s.wqueue = m->idiag_wqueue;
			s.inode = m->idiag_inode;
			s.sport = ntohs(m->id.idiag_sport);
			s.dport = ntohs(m->id.idiag_dport);
			memcpy(s.src, m->id.idiag_src, 16);
			memcpy(s.dst, m->id.idiag_dst, 16);
			fn(arg, &s);
			if (++count >= MAX_SOCKETS) {
				done = 1;
				break;
			}
		}
	}
	rc = count;
out:
	close(fd);
	return rc;
}

int tcpst_tcp_info_state(int fd)
{
	struct tcp_info ti;
	socklen_t len = sizeof ti;

	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0)
		return -errno;
	return ti.tcpi_state;
}
