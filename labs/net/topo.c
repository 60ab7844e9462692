/* topo.c: building a topology of hosts, bridges and routers in anonymous namespaces, configured over rtnetlink. */
#include "net/topo.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <net/ethernet.h>
#include <netpacket/packet.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "net/frame.h"
#include "net/net.h"
#include "net/nl.h"
#include "sandbox.h"

/* IF_OPER_UP of <linux/if.h>, which cannot be included with <net/if.h>. */
#define TOPO_OPER_UP 6

int topo_spec_check(const struct topo_spec *spec, char *err, size_t errlen)
{
	int count[TOPO_MAX_SEGS] = {0};
	int h, i, s;

	if (spec->n_segs < 1 || spec->n_segs > TOPO_MAX_SEGS) {
		snprintf(err, errlen, "a topology has 1 to %d segments (got %d)", TOPO_MAX_SEGS,
			 spec->n_segs);
		return -EINVAL;
	}
	if (spec->n_hosts < 1 || spec->n_hosts > TOPO_MAX_HOSTS) {
		snprintf(err, errlen, "a topology has 1 to %d hosts (got %d)", TOPO_MAX_HOSTS,
			 spec->n_hosts);
		return -EINVAL;
	}
	for (s = 0; s < spec->n_segs; s++) {
		if (spec->mtu[s] && (spec->mtu[s] < 68 || spec->mtu[s] > NET_MTU)) {
			snprintf(err, errlen, "segment %d: the MTU must be 68 to %d (got %d)", s,
				 NET_MTU, spec->mtu[s]);
			return -EINVAL;
		}
	}
	for (h = 0; h < spec->n_hosts; h++) {
		const struct topo_host_spec *hs = &spec->host[h];
		size_t len = hs->name ? strlen(hs->name) : 0;

		if (len < 1 || len > 3) {
			snprintf(err, errlen, "host %d: a name of 1 to 3 letters or digits", h);
			return -EINVAL;
		}
		for (i = 0; i < (int)len; i++)
			if (!isalnum((unsigned char)hs->name[i])) {
				snprintf(err, errlen, "host %s: a name of letters and digits", hs->name);
				return -EINVAL;
			}
		for (i = 0; i < h; i++)
			if (!strcasecmp(spec->host[i].name, hs->name)) {
				snprintf(err, errlen, "two hosts are called %s", hs->name);
				return -EINVAL;
			}
		if (hs->n_ifs < 1 || hs->n_ifs > TOPO_MAX_IFS) {
			snprintf(err, errlen, "host %s: 1 to %d interfaces (got %d)", hs->name,
				 TOPO_MAX_IFS, hs->n_ifs);
			return -EINVAL;
		}
		for (i = 0; i < hs->n_ifs; i++) {
			if (hs->seg[i] < 0 || hs->seg[i] >= spec->n_segs) {
				snprintf(err, errlen, "host %s: eth%d is on segment %d, which does not exist",
					 hs->name, i, hs->seg[i]);
				return -EINVAL;
			}
			if (i > 0 && hs->seg[i] == hs->seg[0]) {
				snprintf(err, errlen, "host %s: two interfaces on segment %d", hs->name,
					 hs->seg[i]);
				return -EINVAL;
			}
			for (int d = 0; d < 2; d++) {
				const struct wire_dir_cfg *c = &hs->impair[i][d];

				if (c->delay_ms < 0 || c->jitter_ms < 0 || c->jitter_ms > c->delay_ms ||
				    c->loss_pct < 0 || c->dup_pct < 0 || c->reorder_pct < 0 ||
				    c->loss_pct + c->dup_pct + c->reorder_pct > 100 || c->rate_kbit < 0) {
					snprintf(err, errlen,
						 "host %s: eth%d's impairment: no negative values, jitter at "
						 "most the delay, loss + dup + reorder at most 100",
						 hs->name, i);
					return -EINVAL;
				}
			}
			if (++count[hs->seg[i]] > TOPO_SEG_ADDRS) {
				snprintf(err, errlen, "segment %d: at most %d interfaces (a /%d)",
					 hs->seg[i], TOPO_SEG_ADDRS, TOPO_PREFIX);
				return -EINVAL;
			}
		}
	}
	return 0;
}

/* Hold one /29 (the /30 blocks idx and idx + 1) per segment, the way net.c
 * holds a /30: an abstract socket bound per block in the namespace the run
 * started in. */
static int bind_block(unsigned idx)
{
	struct sockaddr_un sa;
	socklen_t len;
	int fd, w;

	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	memset(&sa, 0, sizeof sa);
	sa.sun_family = AF_UNIX;
	w = snprintf(sa.sun_path + 1, sizeof sa.sun_path - 1, "socklab-net-%u", idx);
	len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)w);
	if (bind(fd, (struct sockaddr *)&sa, len) < 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	return fd;
}

static int lease_segments(struct topo *t, char *err, size_t errlen)
{
	uint32_t start = 0;
	unsigned i;
	int s = 0;

	if (getrandom(&start, sizeof start, 0) != sizeof start)
		start = (uint32_t)getpid();
	for (i = 0; i < NET_LEASES / 2 && s < t->n_segs; i++) {
		unsigned idx = ((start + i) % (NET_LEASES / 2)) * 2;
		int a = bind_block(idx), b;

		if (a == -EADDRINUSE)
			continue;
		if (a < 0) {
			snprintf(err, errlen, "binding the address lease: %s", strerror(-a));
			return a;
		}
		b = bind_block(idx + 1);
		if (b == -EADDRINUSE) {
			close(a);
			continue;
		}
		if (b < 0) {
			close(a);
			snprintf(err, errlen, "binding the address lease: %s", strerror(-b));
			return b;
		}
		t->lease_fd[2 * s] = a;
		t->lease_fd[2 * s + 1] = b;
		t->lease[s] = idx;
		t->seg_base[s] = NET_BASE + idx * 4;
		s++;
	}
	if (s < t->n_segs) {
		snprintf(err, errlen, "not enough free address blocks in 198.18.0.0/15 (other runs hold them)");
		return -EADDRINUSE;
	}
	return 0;
}

static void write_proc(const char *path, const char *value)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);

	if (fd < 0)
		return;
	if (write(fd, value, strlen(value)) < 0) {
		/* Best effort (a kernel without IPv6 has no such file). */
	}
	close(fd);
}

/* A fresh namespace held by *fd; the calling thread stays in it. */
static int new_ns(int *fd, const char *who, char *err, size_t errlen)
{
	int rc;

	if (unshare(CLONE_NEWNET) < 0) {
		rc = -errno;
		if (rc == -EPERM)
			snprintf(err, errlen,
				 "the topology needs network namespaces, and creating one needs "
				 "CAP_SYS_ADMIN (run as root, or give the container SYS_ADMIN and "
				 "NET_ADMIN)");
		else
			snprintf(err, errlen, "unshare(CLONE_NEWNET) for %s: %s", who, strerror(-rc));
		return rc;
	}
	*fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	if (*fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "opening the namespace of %s: %s", who, strerror(-rc));
		return rc;
	}
	/* IPv4 only: no router solicitations or MLD reports on the links, so
	 * every frame captured is one the lab caused. */
	write_proc("/proc/sys/net/ipv6/conf/all/disable_ipv6", "1");
	write_proc("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1");
	return sandbox_link_up("lo", err, errlen);
}

static int enter_fd(int fd, const char *who, char *err, size_t errlen)
{
	if (setns(fd, CLONE_NEWNET) < 0) {
		int e = errno;
		snprintf(err, errlen, "entering the namespace of %s: %s", who, strerror(e));
		return -e;
	}
	return 0;
}

/* Wait (at most 5 s) until ifindex in the calling thread's namespace is
 * operationally up: until the kernel's link-watch work has attached the
 * device's queueing discipline, frames sent on it are dropped (net.c). */
static int wait_up(struct nl *nl, int ifindex, const char *what, char *err, size_t errlen)
{
	struct timespec pause = {0, 2 * 1000 * 1000};
	int state = -1, rc = 0, i;

	for (i = 0; i < 2500; i++) {
		rc = nl_link_operstate(nl, ifindex, &state, err, errlen);
		if (rc < 0 || state == TOPO_OPER_UP)
			break;
		nanosleep(&pause, NULL);
	}
	if (rc == 0 && state != TOPO_OPER_UP) {
		snprintf(err, errlen, "%s did not come up within 5 s", what);
		rc = -ETIMEDOUT;
	}
	return rc;
}

static int impaired(const struct wire_dir_cfg c[2])
{
	static const struct wire_dir_cfg none;

	return memcmp(&c[0], &none, sizeof none) || memcmp(&c[1], &none, sizeof none);
}

/* Give every interface its address and MAC (before anything is built, so a
 * failure later has nothing to do with naming). */
static void plan(struct topo *t, const struct topo_spec *spec)
{
	int next[TOPO_MAX_SEGS] = {0};
	int h, i;

	for (h = 0; h < spec->n_hosts; h++) {
		struct topo_host *th = &t->host[h];
		const struct topo_host_spec *hs = &spec->host[h];

		snprintf(th->name, sizeof th->name, "%s", hs->name);
		th->ns_fd = -1;
		th->n_ifs = hs->n_ifs;
		th->router = hs->n_ifs > 1;
		for (i = 0; i < hs->n_ifs; i++) {
			struct topo_if *ti = &th->ifs[i];
			int s = hs->seg[i], k, octet = ++next[s];
			char low[8];

			for (k = 0; hs->name[k] && k < 7; k++)
				low[k] = (char)tolower((unsigned char)hs->name[k]);
			low[k] = 0;
			/* i < TOPO_MAX_IFS (at most 9): one digit. */
			snprintf(ti->name, sizeof ti->name, "eth%c", '0' + i);
			snprintf(ti->port, sizeof ti->port, "%.3s-eth%c", low, '0' + i);
			ti->seg = s;
			ti->mtu = t->seg_mtu[s];
			ti->addr = t->seg_base[s] + (uint32_t)octet;
			ti->mac[0] = 0x02; /* locally administered, unicast */
			ti->mac[1] = 0x73;
			ti->mac[2] = 0x6c;
			ti->mac[3] = (uint8_t)(t->lease[s] >> 8);
			ti->mac[4] = (uint8_t)t->lease[s];
			ti->mac[5] = (uint8_t)octet;
			ti->wire_fd[0] = ti->wire_fd[1] = -1;
			memcpy(ti->impair, hs->impair[i], sizeof ti->impair);
			if (impaired(ti->impair)) {
				snprintf(ti->relay_end, sizeof ti->relay_end, "%.3s-eth%cw", low, '0' + i);
				snprintf(ti->bridge_port, sizeof ti->bridge_port, "%.3s-eth%cb", low,
					 '0' + i);
				t->n_wires++;
			}
		}
	}
	/* Default routes: via the first router on the host's (only) segment. */
	for (h = 0; h < t->n_hosts; h++) {
		struct topo_host *th = &t->host[h];
		int r;

		if (th->router)
			continue;
		for (r = 0; r < t->n_hosts && !th->gateway; r++) {
			if (!t->host[r].router)
				continue;
			for (i = 0; i < t->host[r].n_ifs; i++)
				if (t->host[r].ifs[i].seg == th->ifs[0].seg)
					th->gateway = t->host[r].ifs[i].addr;
		}
	}
}

static int build_host(struct topo *t, int h, char *err, size_t errlen)
{
	struct topo_host *th = &t->host[h];
	struct nl nl;
	int rc, i;

	rc = new_ns(&th->ns_fd, th->name, err, errlen);
	if (rc < 0)
		return rc;
	if (th->router)
		write_proc("/proc/sys/net/ipv4/ip_forward", "1");
	rc = nl_open(&nl, err, errlen);
	if (rc < 0)
		return rc;
	for (i = 0; i < th->n_ifs && rc == 0; i++) {
		struct topo_if *ti = &th->ifs[i];
		uint8_t port_mac[6];

		/* The switch's ports get MACs too, though no frame carries them
		 * (a bridge forwards without rewriting): 02:73:6c:HI:LO:80+NN
		 * keeps them apart from every host's. */
		memcpy(port_mac, ti->mac, 6);
		port_mac[5] = (uint8_t)(0x80 | ti->mac[5]);
		rc = nl_veth_create(&nl, ti->name, ti->mac, ti->port, port_mac, t->switch_fd,
				    ti->mtu, err, errlen);
		if (rc == 0) {
			ti->ifindex = (int)if_nametoindex(ti->name);
			rc = ti->ifindex ? 0 : -ENODEV;
			if (rc < 0)
				snprintf(err, errlen, "%s of %s vanished", ti->name, th->name);
		}
		if (rc == 0)
			rc = nl_link_set(&nl, ti->ifindex, NULL, ti->mtu, 1, err, errlen);
		if (rc == 0)
			rc = nl_addr_add(&nl, ti->ifindex, ti->addr, TOPO_PREFIX, err, errlen);
		if (rc == 0 && ti->relay_end[0])
			net_offloads_off(ti->name);
	}
	nl_close(&nl);
	return rc;
}

/* A packet socket of the relay bound to ifname (in the switch namespace). */
static int relay_socket(const char *ifname, int ifindex, char *err, size_t errlen)
{
	struct sockaddr_ll sll;
	int fd = net_port_socket(), rc;

	if (fd < 0) {
		if (fd == -EPERM)
			snprintf(err, errlen, "the wire's packet sockets need CAP_NET_RAW");
		else
			snprintf(err, errlen, "the wire's packet socket: %s", strerror(-fd));
		return fd;
	}
	memset(&sll, 0, sizeof sll);
	sll.sll_family = AF_PACKET;
	sll.sll_protocol = htons(ETH_P_ALL);
	sll.sll_ifindex = ifindex;
	if (bind(fd, (struct sockaddr *)&sll, sizeof sll) < 0) {
		rc = -errno;
		close(fd);
		snprintf(err, errlen, "binding the wire's packet socket to %s: %s", ifname,
			 strerror(-rc));
		return rc;
	}
	return fd;
}

/* An impaired link, in the switch namespace: its port becomes the relay's
 * host side, a second veth pair (relay_end, bridge_port) its bridge side, and
 * bridge_port goes into the bridge. Offloads are off on every end the relay
 * touches, so it reads real frames with real checksums (net.c does the same). */
static int build_relay(struct topo *t, struct topo_if *ti, struct nl *nl, int br, char *err,
		       size_t errlen)
{
	uint8_t mac_w[6], mac_b[6];
	int w_idx, b_idx, rc;

	memcpy(mac_w, ti->mac, 6);
	memcpy(mac_b, ti->mac, 6);
	mac_w[5] = (uint8_t)(0x40 | ti->mac[5]);
	mac_b[5] = (uint8_t)(0xc0 | ti->mac[5]);
	rc = nl_veth_create(nl, ti->relay_end, mac_w, ti->bridge_port, mac_b, t->switch_fd, ti->mtu,
			    err, errlen);
	if (rc < 0)
		return rc;
	w_idx = (int)if_nametoindex(ti->relay_end);
	b_idx = (int)if_nametoindex(ti->bridge_port);
	if (!w_idx || !b_idx) {
		snprintf(err, errlen, "the switch has no %s", w_idx ? ti->bridge_port : ti->relay_end);
		return -ENODEV;
	}
	net_offloads_off(ti->port);
	net_offloads_off(ti->relay_end);
	net_offloads_off(ti->bridge_port);
	rc = nl_link_set_master(nl, b_idx, br, err, errlen);
	if (rc == 0)
		rc = nl_link_set(nl, b_idx, NULL, ti->mtu, 1, err, errlen);
	if (rc == 0)
		rc = nl_link_set(nl, w_idx, NULL, ti->mtu, 1, err, errlen);
	if (rc == 0)
		rc = nl_link_set(nl, ti->port_ifindex, NULL, 0, 1, err, errlen);
	if (rc < 0)
		return rc;
	ti->wire_fd[0] = relay_socket(ti->port, ti->port_ifindex, err, errlen);
	if (ti->wire_fd[0] < 0)
		return ti->wire_fd[0];
	ti->wire_fd[1] = relay_socket(ti->relay_end, w_idx, err, errlen);
	if (ti->wire_fd[1] < 0)
		return ti->wire_fd[1];
	ti->wire = wire_create(ti->wire_fd[0], ti->wire_fd[1], ti->impair, t->seed, 0, err, errlen);
	return ti->wire ? 0 : -ENOMEM;
}

static int build(struct topo *t, const struct topo_spec *spec, char *err, size_t errlen)
{
	char bridge[IF_NAMESIZE];
	int br[TOPO_MAX_SEGS];
	struct nl nl = {0};
	int rc, h, i, s;

	rc = lease_segments(t, err, errlen);
	if (rc < 0)
		return rc;
	plan(t, spec);
	rc = new_ns(&t->switch_fd, "the switch", err, errlen);
	if (rc < 0)
		return rc;
	rc = nl_open(&nl, err, errlen);
	for (s = 0; s < t->n_segs && rc == 0; s++) {
		snprintf(bridge, sizeof bridge, "br%c", '0' + s);
		rc = nl_bridge_create(&nl, bridge, err, errlen);
		br[s] = rc == 0 ? (int)if_nametoindex(bridge) : 0;
		if (rc == 0)
			rc = nl_link_set(&nl, br[s], NULL, t->seg_mtu[s], 1, err, errlen);
	}
	nl_close(&nl);
	for (h = 0; h < t->n_hosts && rc == 0; h++)
		rc = build_host(t, h, err, errlen);
	if (rc < 0)
		return rc;

	/* The ports: into their bridges, up, and forwarding. */
	rc = enter_fd(t->switch_fd, "the switch", err, errlen);
	if (rc == 0)
		rc = nl_open(&nl, err, errlen);
	if (rc < 0)
		return rc;
	for (h = 0; h < t->n_hosts && rc == 0; h++) {
		for (i = 0; i < t->host[h].n_ifs && rc == 0; i++) {
			struct topo_if *ti = &t->host[h].ifs[i];

			ti->port_ifindex = (int)if_nametoindex(ti->port);
			if (!ti->port_ifindex) {
				snprintf(err, errlen, "the switch has no port %s", ti->port);
				rc = -ENODEV;
				break;
			}
			if (ti->relay_end[0]) {
				rc = build_relay(t, ti, &nl, br[ti->seg], err, errlen);
				continue;
			}
			rc = nl_link_set_master(&nl, ti->port_ifindex, br[ti->seg], err, errlen);
			if (rc == 0)
				rc = nl_link_set(&nl, ti->port_ifindex, NULL, 0, 1, err, errlen);
		}
	}
	for (h = 0; h < t->n_hosts && rc == 0; h++)
		for (i = 0; i < t->host[h].n_ifs && rc == 0; i++) {
			const struct topo_if *ti = &t->host[h].ifs[i];

			rc = wait_up(&nl, ti->port_ifindex, ti->port, err, errlen);
			if (rc == 0 && ti->relay_end[0])
				rc = wait_up(&nl, (int)if_nametoindex(ti->bridge_port), ti->bridge_port,
					     err, errlen);
			if (rc == 0 && ti->relay_end[0])
				rc = wait_up(&nl, (int)if_nametoindex(ti->relay_end), ti->relay_end,
					     err, errlen);
		}
	nl_close(&nl);

	/* Each host: its interfaces up for real, and its default route. */
	for (h = 0; h < t->n_hosts && rc == 0; h++) {
		struct topo_host *th = &t->host[h];

		rc = enter_fd(th->ns_fd, th->name, err, errlen);
		if (rc == 0)
			rc = nl_open(&nl, err, errlen);
		if (rc < 0)
			break;
		for (i = 0; i < th->n_ifs && rc == 0; i++)
			rc = wait_up(&nl, th->ifs[i].ifindex, th->ifs[i].name, err, errlen);
		if (rc == 0 && th->gateway)
			rc = nl_route_add_default(&nl, th->gateway, th->ifs[0].ifindex, err, errlen);
		nl_close(&nl);
	}
	if (rc == 0)
		rc = enter_fd(t->switch_fd, "the switch", err, errlen);
	return rc;
}

int topo_create(struct topo **out, const struct topo_spec *spec, char *err, size_t errlen)
{
	struct topo *t;
	int home, rc, i;

	*out = NULL;
	rc = topo_spec_check(spec, err, errlen);
	if (rc < 0)
		return rc;
	t = calloc(1, sizeof *t);
	if (!t) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	t->switch_fd = -1;
	for (i = 0; i < 2 * TOPO_MAX_SEGS; i++)
		t->lease_fd[i] = -1;
	for (i = 0; i < TOPO_MAX_HOSTS; i++)
		t->host[i].ns_fd = -1;
	t->n_segs = spec->n_segs;
	t->n_hosts = spec->n_hosts;
	for (i = 0; i < spec->n_segs; i++)
		t->seg_mtu[i] = spec->mtu[i] ? spec->mtu[i] : NET_MTU;
	t->seed = spec->seed;

	home = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	rc = build(t, spec, err, errlen);
	if (rc < 0) {
		/* Back where we started, so nothing later runs in a half-built
		 * host; then the fds go and the kernel removes the rest. */
		if (home >= 0 && setns(home, CLONE_NEWNET) < 0) {
			/* Nothing better to do: the run ends with the error anyway. */
		}
		topo_destroy(t);
		t = NULL;
	}
	if (home >= 0)
		close(home);
	*out = t;
	return rc;
}

void topo_destroy(struct topo *t)
{
	int i;

	if (!t)
		return;
	for (i = 0; i < TOPO_MAX_HOSTS; i++) {
		for (int k = 0; k < TOPO_MAX_IFS; k++) {
			struct topo_if *ti = &t->host[i].ifs[k];

			/* The relay thread first, then the fds it reads. */
			wire_destroy(ti->wire);
			ti->wire = NULL;
			if (ti->relay_end[0] && ti->wire_fd[0] >= 0)
				close(ti->wire_fd[0]);
			if (ti->relay_end[0] && ti->wire_fd[1] >= 0)
				close(ti->wire_fd[1]);
		}
		if (t->host[i].ns_fd >= 0)
			close(t->host[i].ns_fd);
	}
	if (t->switch_fd >= 0)
		close(t->switch_fd);
	for (i = 0; i < 2 * TOPO_MAX_SEGS; i++)
		if (t->lease_fd[i] >= 0)
			close(t->lease_fd[i]);
	free(t);
}

/* Relay thread: every wire event of a link names its port. */
static json_t *port_hook(void *arg, const struct wire_verdict *v, const uint8_t *frame, size_t len)
{
	const struct topo_if *ti = arg;

	(void)v;
	(void)frame;
	(void)len;
	return json_pack("{s:s}", "port", ti->port);
}

int topo_start(struct topo *t, struct ev_emitter *em, char *err, size_t errlen)
{
	int h, i, rc;

	for (h = 0; h < t->n_hosts; h++)
		for (i = 0; i < t->host[h].n_ifs; i++) {
			struct topo_if *ti = &t->host[h].ifs[i];

			if (!ti->wire)
				continue;
			wire_set_hook(ti->wire, port_hook, ti);
			rc = wire_start(ti->wire, em, err, errlen);
			if (rc < 0)
				return rc;
		}
	return 0;
}

json_t *topo_stop(struct topo *t)
{
	json_t *o = NULL;
	int h, i;

	for (h = 0; h < t->n_hosts; h++)
		for (i = 0; i < t->host[h].n_ifs; i++) {
			struct topo_if *ti = &t->host[h].ifs[i];

			if (!ti->wire)
				continue;
			if (!o)
				o = json_object();
			json_object_set_new(o, ti->port, wire_stop(ti->wire));
		}
	return o;
}

int topo_enter(const struct topo *t, int h)
{
	int fd = h < 0 ? t->switch_fd : t->host[h].ns_fd;

	return setns(fd, CLONE_NEWNET) < 0 ? -errno : 0;
}

int topo_host_index(const struct topo *t, const char *name)
{
	int h;

	for (h = 0; h < t->n_hosts; h++)
		if (!strcmp(t->host[h].name, name))
			return h;
	return -1;
}

static json_t *dir_json(const struct wire_dir_cfg *c)
{
	return json_pack("{s:i, s:i, s:i, s:i, s:i, s:i}", "delay_ms", c->delay_ms, "jitter_ms",
			 c->jitter_ms, "loss_pct", c->loss_pct, "dup_pct", c->dup_pct, "reorder_pct",
			 c->reorder_pct, "rate_kbit", c->rate_kbit);
}

/* An impaired link: both directions, and the relay's two ends. */
static json_t *impair_json(const struct topo_if *ti)
{
	return json_pack("{s:o, s:o, s:s, s:s}", "sent", dir_json(&ti->impair[WIRE_C2S]),
			 "received", dir_json(&ti->impair[WIRE_S2C]), "relay_end", ti->relay_end,
			 "bridge_port", ti->bridge_port);
}

json_t *topo_describe(const struct topo *t)
{
	json_t *o = json_object(), *segs = json_array(), *hosts = json_array();
	char ip[16], mac[18];
	int h, i, s;

	for (s = 0; s < t->n_segs; s++) {
		char br[16];

		frame_ip_str(t->seg_base[s], ip);
		snprintf(br, sizeof br, "br%c", '0' + s);
		json_array_append_new(segs, json_pack("{s:i, s:s, s:i, s:i, s:s}", "seg", s, "subnet",
						      ip, "prefix", TOPO_PREFIX, "mtu",
						      t->seg_mtu[s], "bridge", br));
	}
	for (h = 0; h < t->n_hosts; h++) {
		const struct topo_host *th = &t->host[h];
		json_t *ifs = json_array(), *ho;

		for (i = 0; i < th->n_ifs; i++) {
			const struct topo_if *ti = &th->ifs[i];

			frame_ip_str(ti->addr, ip);
			frame_mac_str(ti->mac, mac);
			json_array_append_new(ifs, json_pack("{s:s, s:s, s:i, s:s, s:s, s:i, s:i}", "if",
							     ti->name, "port", ti->port, "seg",
							     ti->seg, "addr", ip, "mac", mac,
							     "prefix", TOPO_PREFIX, "mtu", ti->mtu));
			if (ti->wire) {
				json_t *last = json_array_get(ifs, json_array_size(ifs) - 1);

				json_object_set_new(last, "wire", impair_json(ti));
			}
		}
		ho = json_pack("{s:s, s:b, s:o}", "name", th->name, "router", th->router, "ifs", ifs);
		if (th->gateway) {
			frame_ip_str(th->gateway, ip);
			json_object_set_new(ho, "gateway", json_string(ip));
		}
		json_array_append_new(hosts, ho);
	}
	json_object_set_new(o, "kind", json_string("topology"));
	if (t->n_wires)
		json_object_set_new(o, "seed", json_integer((json_int_t)t->seed));
	json_object_set_new(o, "segments", segs);
	json_object_set_new(o, "hosts", hosts);
	return o;
}
