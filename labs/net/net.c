/* net.c: the two-hosts topology: anonymous namespaces, the address lease, veth or a relay (packet sockets on veth ends, or TAP), and the shared parameters. */
#include "net/net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/ethtool.h>
#include <linux/if_packet.h>
#include <linux/if_tun.h>
#include <linux/sockios.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "net/frame.h"
#include "net/nl.h"
#include "sock.h"
#include "sandbox.h"

const char *const net_network_choices[] = {"loopback", "two-hosts", NULL};
const char *const net_wire_choices[] = {"auto", "relay", NULL};

static const char *const side_names[] = {[NET_SERVER] = "server", [NET_CLIENT] = "client"};
static const char *const dir_prefix[] = {[WIRE_C2S] = "c2s", [WIRE_S2C] = "s2c"};

struct net {
	struct net_config cfg;
	int ns_fd[2];   /* by side: holds each namespace */
	int wire_ns_fd; /* the relay's own namespace (packet relay only) */
	int port_fd[2]; /* by side, relay only: a bound packet socket or a TAP fd */
	int tap;        /* the relay's ports are TAP devices (the fallback) */
	int lease_fd;   /* the bound abstract socket that holds the addresses */
	unsigned lease;
	uint32_t addr[2];
	uint8_t mac[2][6];
	int relay;
	struct wire *wire;
};

/* ---- parameters ---- */

static long long dir_int(const struct lab_params *p, int d, const char *what)
{
	char name[40];

	snprintf(name, sizeof name, "%s_%s", dir_prefix[d], what);
	return lab_int(p, name);
}

static uint64_t random_seed(void)
{
	uint32_t r = 0;

	while (r == 0) {
		if (getrandom(&r, sizeof r, 0) != sizeof r)
			r = (uint32_t)getpid() * 2654435761u;
		r &= 0x7fffffff;
	}
	return r;
}

void net_config_read(const struct lab_params *p, struct net_config *cfg)
{
	int d;

	memset(cfg, 0, sizeof *cfg);
	cfg->kind = lab_int(p, "network") == 1 ? NET_TWO_HOSTS : NET_LOOPBACK;
	for (d = 0; d < 2; d++) {
		struct wire_dir_cfg *c = &cfg->dir[d];
		c->delay_ms = (int)dir_int(p, d, "delay_ms");
		c->jitter_ms = (int)dir_int(p, d, "jitter_ms");
		c->loss_pct = (int)dir_int(p, d, "loss_pct");
		c->dup_pct = (int)dir_int(p, d, "dup_pct");
		c->reorder_pct = (int)dir_int(p, d, "reorder_pct");
		c->rate_kbit = (int)dir_int(p, d, "rate_kbit");
	}
	for (d = 0; d < (int)p->lab->n_params; d++)
		if ((p->lab->params[d].flags & LAB_PF_WIRE_TRACE) && p->v[d].i)
			cfg->trace_frames = 1;
	cfg->force_relay = lab_int(p, "wire") == 1;
	cfg->seed = (uint64_t)lab_int(p, "seed");
	if (cfg->seed == 0) {
		cfg->seed = random_seed();
		cfg->seed_chosen = 1;
	}
}

int net_lab_has_params(const struct lab_desc *lab)
{
	return lab_param_index(lab, "network") >= 0 && lab_param_index(lab, "seed") >= 0;
}

int net_config_impaired(const struct net_config *cfg)
{
	int d;

	for (d = 0; d < 2; d++) {
		const struct wire_dir_cfg *c = &cfg->dir[d];
		if (c->delay_ms || c->jitter_ms || c->loss_pct || c->dup_pct || c->reorder_pct ||
		    c->rate_kbit)
			return 1;
	}
	return 0;
}

int net_params_check_two_hosts(const struct lab_params *p, const char *why, const char **param,
			       char *err, size_t errlen)
{
	if (lab_int(p, "network") != 1) {
		*param = "network";
		snprintf(err, errlen, "parameter 'network': %s needs two-hosts (%s)", p->lab->name,
			 why);
		return -EINVAL;
	}
	return net_params_check(p, param, err, errlen);
}

int net_params_check(const struct lab_params *p, const char **param, char *err, size_t errlen)
{
	static const char *const knobs[] = {"delay_ms", "loss_pct", "jitter_ms", "dup_pct",
					    "reorder_pct", "rate_kbit", NULL};
	char name[40];
	int two = lab_int(p, "network") == 1, d, k;

	if (!two && lab_int(p, "wire_trace")) {
		*param = "wire_trace";
		snprintf(err, errlen,
			 "parameter 'wire_trace': needs network=two-hosts (loopback has no wire)");
		return -EINVAL;
	}
	if (!two && lab_int(p, "wire") != 0) {
		*param = "wire";
		snprintf(err, errlen, "parameter 'wire': needs network=two-hosts (loopback has no wire)");
		return -EINVAL;
	}

	for (d = 0; d < 2; d++) {
		long long delay = dir_int(p, d, "delay_ms"), jitter = dir_int(p, d, "jitter_ms");
		long long sum = dir_int(p, d, "loss_pct") + dir_int(p, d, "dup_pct") +
				dir_int(p, d, "reorder_pct");

		for (k = 0; knobs[k]; k++) {
			if (!two && dir_int(p, d, knobs[k]) != 0) {
				snprintf(name, sizeof name, "%s_%s", dir_prefix[d], knobs[k]);
				*param = p->lab->params[lab_param_index(p->lab, name)].name;
				snprintf(err, errlen,
					 "parameter '%s': impairments need network=two-hosts (loopback "
					 "has no wire to impair)",
					 name);
				return -EINVAL;
			}
		}
		if (jitter > delay) {
			snprintf(name, sizeof name, "%s_jitter_ms", dir_prefix[d]);
			*param = p->lab->params[lab_param_index(p->lab, name)].name;
			snprintf(err, errlen,
				 "parameter '%s': the jitter (%lld ms) must not exceed the delay "
				 "%s_delay_ms (%lld ms): a frame cannot arrive before it was sent",
				 name, jitter, dir_prefix[d], delay);
			return -EINVAL;
		}
		if (sum > 100) {
			snprintf(name, sizeof name, "%s_loss_pct", dir_prefix[d]);
			*param = p->lab->params[lab_param_index(p->lab, name)].name;
			snprintf(err, errlen,
				 "parameter '%s': %s_loss_pct + %s_dup_pct + %s_reorder_pct must be at "
				 "most 100 (got %lld): each frame is dropped, duplicated or reordered, "
				 "never two at once",
				 name, dir_prefix[d], dir_prefix[d], dir_prefix[d], sum);
			return -EINVAL;
		}
	}
	return 0;
}

/* ---- building the topology ---- */

/* Hold one /30 of 198.18.0.0/15 by binding an abstract socket named after it
 * in the namespace the run started in: the kernel refuses a second bind of the
 * same name, and releases it when the fd closes, however the process ends. */
static int lease_addresses(struct net *n, char *err, size_t errlen)
{
	uint32_t start = 0;
	unsigned i;
	int fd;

	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket for the address lease: %s", strerror(errno));
		return -errno;
	}
	if (getrandom(&start, sizeof start, 0) != sizeof start)
		start = (uint32_t)getpid();
	for (i = 0; i < NET_LEASES; i++) {
		unsigned idx = (start + i) % NET_LEASES;
		struct sockaddr_un sa;
		socklen_t len;
		int w;

		memset(&sa, 0, sizeof sa);
		sa.sun_family = AF_UNIX;
		w = snprintf(sa.sun_path + 1, sizeof sa.sun_path - 1, "socklab-net-%u", idx);
		len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)w);
		if (bind(fd, (struct sockaddr *)&sa, len) == 0) {
			n->lease_fd = fd;
			n->lease = idx;
			return 0;
		}
		if (errno != EADDRINUSE) {
			int e = errno;
			snprintf(err, errlen, "binding the address lease: %s", strerror(e));
			close(fd);
			return -e;
		}
	}
	close(fd);
	snprintf(err, errlen, "all %d address blocks of 198.18.0.0/15 are in use by other runs",
		 NET_LEASES);
	return -EADDRINUSE;
}

/* The wire only carries IPv4 in these labs: without IPv6 the hosts send no
 * router solicitations or MLD reports, so the wire is quiet until a lab talks.
 * A kernel without IPv6 has no such files, which is fine. */
static void disable_ipv6(void)
{
	static const char *const paths[] = {"/proc/sys/net/ipv6/conf/all/disable_ipv6",
					    "/proc/sys/net/ipv6/conf/default/disable_ipv6", NULL};
	int i;

	for (i = 0; paths[i]; i++) {
		int fd = open(paths[i], O_WRONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		if (write(fd, "1", 1) < 0) {
			/* Best effort: IPv6 chatter only adds unimpaired frames. */
		}
		close(fd);
	}
}

/* A fresh namespace for side, held by an fd; the calling thread stays in it. */
static int make_ns_fd(int *fd, const char *what, char *err, size_t errlen)
{
	int rc;

	if (unshare(CLONE_NEWNET) < 0) {
		rc = -errno;
		if (rc == -EPERM)
			snprintf(err, errlen,
				 "network=two-hosts needs network namespaces, and creating one needs "
				 "CAP_SYS_ADMIN (run as root, or give the container SYS_ADMIN and "
				 "NET_ADMIN)");
		else
			snprintf(err, errlen, "unshare(CLONE_NEWNET): %s", strerror(-rc));
		return rc;
	}
	*fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	if (*fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "opening the %s namespace: %s", what, strerror(-rc));
		return rc;
	}
	disable_ipv6();
	return sandbox_link_up("lo", err, errlen);
}

static int make_ns(struct net *n, enum net_side side, char *err, size_t errlen)
{
	return make_ns_fd(&n->ns_fd[side], side_names[side], err, errlen);
}

/* Open a TAP device named eth0 in the calling thread's namespace. */
static int tap_open(char *err, size_t errlen)
{
	struct ifreq ifr;
	int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK);

	if (fd < 0) {
		int e = errno;
		snprintf(err, errlen,
			 "opening /dev/net/tun: %s (the relay wire needs the TUN/TAP driver%s)",
			 strerror(e),
			 e == EPERM || e == EACCES ? " and CAP_NET_ADMIN"
			 : e == ENOENT		   ? "; in a container, give it the device: --device "
						     "/dev/net/tun"
						   : "");
		return -e;
	}
	memset(&ifr, 0, sizeof ifr);
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
	snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", NET_IFNAME);
	if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
		int e = errno;
		snprintf(err, errlen, "creating the TAP device: %s", strerror(e));
		close(fd);
		return -e;
	}
	return fd;
}

/* Names of the relay's veth ends in its own namespace, by side. */
static const char *const wire_end[] = {[NET_SERVER] = "wire-s", [NET_CLIENT] = "wire-c"};

/* Switch the offloads off on ifname in the calling thread's namespace, so
 * every frame that crosses the relay is one real Ethernet frame with its
 * checksums computed: no GSO/TSO buffers of 64 KiB, no partial checksums
 * left for hardware that a packet socket would hand over unfinished, no GRO
 * merging frames on the way in. Best effort: a switch a driver lacks is
 * already off. */
void net_offloads_off(const char *ifname)
{
	static const __u32 cmds[] = {ETHTOOL_STXCSUM, ETHTOOL_SSG, ETHTOOL_STSO, ETHTOOL_SGSO,
				     ETHTOOL_SGRO};
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	size_t i;

	if (fd < 0)
		return;
	for (i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
		struct ethtool_value ev = {.cmd = cmds[i], .data = 0};
		struct ifreq ifr;

		memset(&ifr, 0, sizeof ifr);
		snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", ifname);
		ifr.ifr_data = (char *)&ev;
		if (ioctl(fd, SIOCETHTOOL, &ifr) < 0) {
			/* Not supported by this device: nothing to switch off. */
		}
	}
	close(fd);
}

/* An unbound packet socket in the calling thread's namespace (the relay's):
 * it receives nothing until it is bound to a veth end. -EPERM without
 * CAP_NET_RAW. The frames this socket sends itself are not handed back to it
 * (PACKET_IGNORE_OUTGOING), and its receive buffer holds a burst of frames. */
int net_port_socket(void)
{
	int fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, 0), one = 1,
	    buf = 4 << 20;

	if (fd < 0)
		return -errno;
	if (setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof one) < 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &buf, sizeof buf) < 0 &&
	    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf) < 0) {
		/* The default buffer still works; the wire counts what it loses. */
	}
	return fd;
}

/* Bind the relay's packet socket for side to its veth end (in the calling
 * thread's namespace, the relay's) and bring the end up. */
static int port_bind(struct net *n, enum net_side side, struct nl *nl, char *err, size_t errlen)
{
	struct sockaddr_ll sll;
	int idx = (int)if_nametoindex(wire_end[side]), rc;

	if (idx == 0) {
		snprintf(err, errlen, "no %s in the wire's namespace: %s", wire_end[side],
			 strerror(errno));
		return -ENODEV;
	}
	net_offloads_off(wire_end[side]);
	rc = nl_link_set(nl, idx, NULL, NET_MTU, 1, err, errlen);
	if (rc < 0)
		return rc;
	memset(&sll, 0, sizeof sll);
	sll.sll_family = AF_PACKET;
	sll.sll_protocol = htons(ETH_P_ALL);
	sll.sll_ifindex = idx;
	if (bind(n->port_fd[side], (struct sockaddr *)&sll, sizeof sll) < 0) {
		rc = -errno;
		snprintf(err, errlen, "binding the wire's packet socket to %s: %s", wire_end[side],
			 strerror(-rc));
		return rc;
	}
	return 0;
}

/* Give eth0 of the calling thread's namespace side's MAC, MTU and address, and
 * bring it up. */
static int configure_side(struct net *n, enum net_side side, int set_mac, char *err,
			  size_t errlen)
{
	struct nl nl;
	int idx, rc;

	idx = (int)if_nametoindex(NET_IFNAME);
	if (idx == 0) {
		snprintf(err, errlen, "no %s in the %s namespace: %s", NET_IFNAME, side_names[side],
			 strerror(errno));
		return -ENODEV;
	}
	rc = nl_open(&nl, err, errlen);
	if (rc < 0)
		return rc;
	rc = nl_link_set(&nl, idx, set_mac ? n->mac[side] : NULL, NET_MTU, 1, err, errlen);
	if (rc == 0)
		rc = nl_addr_add(&nl, idx, n->addr[side], 30, err, errlen);
	nl_close(&nl);
	return rc;
}

/* IF_OPER_UP of <linux/if.h>, which cannot be included with <net/if.h>. */
#define NET_OPER_UP 6

/* Wait (at most 5 s) until eth0 of the calling thread's namespace is
 * operationally up. A veth end has its carrier once its peer comes up, and
 * the kernel attaches the end's queueing discipline only later, from its
 * link-watch work; until then every frame sent is dropped, so the first ARP
 * request would be lost and the first probes would wait the one second ARP
 * takes to retry. */
static int wait_oper_up(enum net_side side, char *err, size_t errlen)
{
	struct nl nl;
	struct timespec pause = {0, 2 * 1000 * 1000};
	int idx = (int)if_nametoindex(NET_IFNAME), state = -1, rc, i;

	rc = nl_open(&nl, err, errlen);
	if (rc < 0)
		return rc;
	for (i = 0; i < 2500; i++) {
		rc = nl_link_operstate(&nl, idx, &state, err, errlen);
		if (rc < 0 || state == NET_OPER_UP)
			break;
		nanosleep(&pause, NULL);
	}
	nl_close(&nl);
	if (rc == 0 && state != NET_OPER_UP) {
		snprintf(err, errlen, "the %s's interface did not come up within 5 s", side_names[side]);
		rc = -ETIMEDOUT;
	}
	return rc;
}

static int enter(struct net *n, enum net_side side, char *err, size_t errlen)
{
	if (setns(n->ns_fd[side], CLONE_NEWNET) < 0) {
		snprintf(err, errlen, "entering the %s namespace: %s", side_names[side],
			 strerror(errno));
		return -errno;
	}
	return 0;
}

/* The relay's ports as packet sockets: a namespace of the wire's own holds
 * one end of each host's veth pair (wire-c, wire-s), and a packet socket bound
 * to each end reads the frames a host sends and writes the frames it
 * receives. No TUN device is needed (container hosts often give a non-root
 * process none, or one it may not open), but CAP_NET_RAW is: -EPERM without
 * it, before anything was created, so the caller can fall back to TAP. The
 * calling thread is in the client's namespace, and is left in the server's. */
static int relay_packet(struct net *n, char *err, size_t errlen)
{
	static const uint8_t end_last[] = {[NET_SERVER] = 0x12, [NET_CLIENT] = 0x11};
	int rc, side, fd;
	struct nl nl;

	rc = make_ns_fd(&n->wire_ns_fd, "wire", err, errlen);
	if (rc < 0)
		return rc;
	for (side = 0; side < 2; side++) {
		fd = net_port_socket();
		if (fd < 0) {
			if (fd == -EPERM)
				snprintf(err, errlen, "the wire's packet sockets need CAP_NET_RAW");
			else
				snprintf(err, errlen, "the wire's packet socket: %s", strerror(-fd));
			return fd;
		}
		n->port_fd[side] = fd;
	}
	for (side = NET_CLIENT; side >= 0; side--) {
		uint8_t mac[6];

		memcpy(mac, n->mac[side], 6);
		mac[5] = end_last[side];
		rc = enter(n, (enum net_side)side, err, errlen);
		if (rc == 0)
			rc = nl_open(&nl, err, errlen);
		if (rc < 0)
			return rc;
		rc = nl_veth_create(&nl, NET_IFNAME, n->mac[side], wire_end[side], mac,
				    n->wire_ns_fd, NET_MTU, err, errlen);
		nl_close(&nl);
		if (rc < 0)
			return rc;
		net_offloads_off(NET_IFNAME);
		rc = configure_side(n, (enum net_side)side, 0, err, errlen);
		if (rc < 0)
			return rc;
	}
	if (setns(n->wire_ns_fd, CLONE_NEWNET) < 0) {
		snprintf(err, errlen, "entering the wire's namespace: %s", strerror(errno));
		return -errno;
	}
	rc = nl_open(&nl, err, errlen);
	if (rc < 0)
		return rc;
	for (side = 0; side < 2 && rc == 0; side++)
		rc = port_bind(n, (enum net_side)side, &nl, err, errlen);
	nl_close(&nl);
	for (side = NET_CLIENT; side >= 0 && rc == 0; side--) {
		rc = enter(n, (enum net_side)side, err, errlen);
		if (rc == 0)
			rc = wait_oper_up((enum net_side)side, err, errlen);
	}
	return rc;
}

/* The relay's ports as TAP devices named eth0 in each host (the fallback
 * without CAP_NET_RAW). Undoes what relay_packet made first. The calling
 * thread is left in the server's namespace. */
static int relay_tap(struct net *n, char *err, size_t errlen)
{
	char why[256];
	int rc, side;

	snprintf(why, sizeof why, "%s", err);
	for (side = 0; side < 2; side++) {
		if (n->port_fd[side] >= 0)
			close(n->port_fd[side]);
		n->port_fd[side] = -1;
	}
	if (n->wire_ns_fd >= 0)
		close(n->wire_ns_fd);
	n->wire_ns_fd = -1;
	n->tap = 1;
	for (side = NET_CLIENT; side >= 0; side--) {
		rc = enter(n, (enum net_side)side, err, errlen);
		if (rc < 0)
			return rc;
		n->port_fd[side] = tap_open(err, errlen);
		if (n->port_fd[side] < 0) {
			rc = n->port_fd[side];
			if (strlen(err) + strlen(why) + 8 < errlen) {
				size_t used = strlen(err);
				snprintf(err + used, errlen - used, "; and %s", why);
			}
			return rc;
		}
		rc = configure_side(n, (enum net_side)side, 1, err, errlen);
		if (rc < 0)
			return rc;
	}
	return 0;
}

int net_create(struct net **out, const struct net_config *cfg, char *err, size_t errlen)
{
	struct net *n = calloc(1, sizeof *n);
	struct nl nl = {0};
	int rc, side;

	*out = NULL;
	if (!n) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	n->cfg = *cfg;
	n->ns_fd[0] = n->ns_fd[1] = n->port_fd[0] = n->port_fd[1] = n->lease_fd = -1;
	n->wire_ns_fd = -1;
	n->relay = cfg->force_relay || cfg->trace_frames || net_config_impaired(cfg);

	rc = lease_addresses(n, err, errlen);
	if (rc < 0)
		goto out;
	for (side = 0; side < 2; side++) {
		uint8_t *m = n->mac[side];
		n->addr[side] = NET_BASE + n->lease * 4 + (side == NET_CLIENT ? 1 : 2);
		m[0] = 0x02; /* locally administered, unicast */
		m[1] = 0x73;
		m[2] = 0x6c;
		m[3] = (uint8_t)(n->lease >> 8);
		m[4] = (uint8_t)n->lease;
		m[5] = side == NET_CLIENT ? 1 : 2;
	}
	rc = make_ns(n, NET_SERVER, err, errlen);
	if (rc == 0)
		rc = make_ns(n, NET_CLIENT, err, errlen);
	if (rc < 0)
		goto out;
	/* The calling thread is in the client's namespace now. */
	if (n->relay) {
		rc = relay_packet(n, err, errlen);
		if (rc == -EPERM)
			rc = relay_tap(n, err, errlen);
		if (rc == 0)
			n->wire = wire_create(n->port_fd[NET_CLIENT], n->port_fd[NET_SERVER],
					      cfg->dir, cfg->seed, cfg->trace_frames, err, errlen);
		if (rc == 0 && !n->wire)
			rc = -ENOMEM;
	} else {
		rc = nl_open(&nl, err, errlen);
		if (rc == 0)
			rc = nl_veth_create(&nl, NET_IFNAME, n->mac[NET_CLIENT], NET_IFNAME,
					    n->mac[NET_SERVER], n->ns_fd[NET_SERVER], NET_MTU, err,
					    errlen);
		nl_close(&nl);
		if (rc == 0)
			rc = configure_side(n, NET_CLIENT, 0, err, errlen);
		if (rc == 0)
			rc = enter(n, NET_SERVER, err, errlen);
		if (rc == 0)
			rc = configure_side(n, NET_SERVER, 0, err, errlen);
		if (rc == 0)
			rc = wait_oper_up(NET_SERVER, err, errlen);
		if (rc == 0)
			rc = enter(n, NET_CLIENT, err, errlen);
		if (rc == 0)
			rc = wait_oper_up(NET_CLIENT, err, errlen);
		if (rc == 0)
			rc = enter(n, NET_SERVER, err, errlen);
	}
out:
	if (rc < 0) {
		net_destroy(n);
		return rc;
	}
	if (errlen)
		err[0] = '\0'; /* a fallback's first failure is not an error */
	*out = n;
	return 0;
}

int net_start(struct net *n, struct ev_emitter *em, char *err, size_t errlen)
{
	if (!n || !n->wire)
		return 0;
	return wire_start(n->wire, em, err, errlen);
}

json_t *net_stop(struct net *n)
{
	if (!n || !n->wire)
		return NULL;
	return wire_stop(n->wire);
}

void net_destroy(struct net *n)
{
	int i;

	if (!n)
		return;
	wire_destroy(n->wire);
	for (i = 0; i < 2; i++) {
		if (n->port_fd[i] >= 0)
			close(n->port_fd[i]);
		if (n->ns_fd[i] >= 0)
			close(n->ns_fd[i]);
	}
	if (n->wire_ns_fd >= 0)
		close(n->wire_ns_fd);
	if (n->lease_fd >= 0)
		close(n->lease_fd);
	free(n);
}

/* ---- descriptions ---- */

static json_t *host_json(const struct net *n, enum net_side side)
{
	char ip[16], mac[18];

	frame_ip_str(n->addr[side], ip);
	frame_mac_str(n->mac[side], mac);
	return json_pack("{s:s, s:s, s:s, s:i}", "if", NET_IFNAME, "mac", mac, "addr", ip,
			 "prefix", 30);
}

static json_t *impair_json(const struct wire_dir_cfg *c)
{
	return json_pack("{s:i, s:i, s:i, s:i, s:i, s:i}", "delay_ms", c->delay_ms, "jitter_ms",
			 c->jitter_ms, "loss_pct", c->loss_pct, "dup_pct", c->dup_pct,
			 "reorder_pct", c->reorder_pct, "rate_kbit", c->rate_kbit);
}

json_t *net_describe(const struct net *n)
{
	char subnet[16];
	json_t *o;

	frame_ip_str(NET_BASE + n->lease * 4, subnet);
	o = json_pack("{s:s, s:s, s:i, s:s, s:o, s:o, s:o, s:I, s:b}", "kind", "two-hosts", "wire",
		      n->relay ? "relay" : "veth", "mtu", NET_MTU, "subnet", subnet, "client",
		      host_json(n, NET_CLIENT), "server", host_json(n, NET_SERVER), "impair",
		      json_pack("{s:o, s:o}", "c2s", impair_json(&n->cfg.dir[WIRE_C2S]), "s2c",
				impair_json(&n->cfg.dir[WIRE_S2C])),
		      "seed", (json_int_t)n->cfg.seed, "seed_chosen", n->cfg.seed_chosen);
	if (o && n->relay)
		json_object_set_new(o, "relay_ports", json_string(n->tap ? "tap" : "packet"));
	if (o && n->cfg.trace_frames)
		json_object_set_new(o, "trace_frames", json_true());
	return o;
}

json_t *net_describe_loopback(void)
{
	struct ifreq ifr;
	int mtu = 65536, fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	if (fd >= 0) {
		memset(&ifr, 0, sizeof ifr);
		snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "lo");
		if (ioctl(fd, SIOCGIFMTU, &ifr) == 0)
			mtu = ifr.ifr_mtu;
		close(fd);
	}
	return json_pack("{s:s, s:s, s:i, s:s}", "kind", "loopback", "wire", "none", "mtu", mtu,
			 "addr", "127.0.0.1");
}

/* ---- for lab threads ---- */

int net_enter(const struct net *n, enum net_side side)
{
	if (!n)
		return 0;
	return setns(n->ns_fd[side], CLONE_NEWNET) < 0 ? -errno : 0;
}

int net_ns_fd(const struct net *n, enum net_side side)
{
	return n ? n->ns_fd[side] : -1;
}

uint32_t net_addr(const struct net *n, enum net_side side)
{
	return n ? n->addr[side] : 0;
}

int net_mtu(const struct net *n)
{
	return n ? NET_MTU : 65536;
}

int net_has_relay(const struct net *n)
{
	return n && n->wire;
}

void net_set_frame_hook(struct net *n, wire_hook_fn fn, void *arg)
{
	if (n && n->wire)
		wire_set_hook(n->wire, fn, arg);
}

int net_server_addr(const struct lab_ctx *ctx, struct sockaddr_storage *ss, socklen_t *sl)
{
	struct sockaddr_in *in = (struct sockaddr_in *)ss;

	if (!ctx->net)
		return lsock_parse_addr(lab_str(ctx->p, "bind"), (int)lab_int(ctx->p, "port"), ss,
					sl);
	memset(ss, 0, sizeof *ss);
	in->sin_family = AF_INET;
	in->sin_port = htons((uint16_t)lab_int(ctx->p, "port"));
	in->sin_addr.s_addr = htonl(net_addr(ctx->net, NET_SERVER));
	*sl = sizeof *in;
	return 0;
}

int net_pair_pick(struct lab_ctx *ctx, struct net_pair *pr)
{
	memset(pr, 0, sizeof *pr);
	if (!ctx->net) {
		char msg[160];

		snprintf(msg, sizeof msg,
			 "parameter 'network': %s needs two-hosts (its namespaces could not be built)",
			 ctx->p->lab->name);
		ev_error(ctx->em, "no_network", "network", msg);
		return -EINVAL;
	}
	pr->port = (uint16_t)lab_int(ctx->p, "port");
	if (!pr->port) {
		uint16_t r = 0;

		if (getrandom(&r, sizeof r, 0) != sizeof r)
			r = (uint16_t)time(NULL);
		pr->port = (uint16_t)(20000 + r % 10000);
	}
	pr->srv.sin_family = pr->cli.sin_family = AF_INET;
	pr->srv.sin_addr.s_addr = htonl(net_addr(ctx->net, NET_SERVER));
	pr->cli.sin_addr.s_addr = htonl(net_addr(ctx->net, NET_CLIENT));
	pr->srv.sin_port = htons(pr->port);
	inet_ntop(AF_INET, &pr->srv.sin_addr, pr->srv_ip, sizeof pr->srv_ip);
	inet_ntop(AF_INET, &pr->cli.sin_addr, pr->cli_ip, sizeof pr->cli_ip);
	return 0;
}

int net_tcpext(const char *const names[], size_t n, long long out[])
{
	char buf[8192], *keys = NULL, *vals = NULL, *line, *save = NULL, *ks = NULL, *vs = NULL;
	char *k, *v;
	int fd = open("/proc/thread-self/net/netstat", O_RDONLY | O_CLOEXEC);
	ssize_t got = 0, r;

	if (fd < 0)
		return -errno;
	while ((r = read(fd, buf + got, sizeof buf - 1 - (size_t)got)) > 0)
		got += r;
	close(fd);
	buf[got] = 0;
	/* Two lines start "TcpExt:": the names, then the values. */
	for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (strncmp(line, "TcpExt:", 7) != 0)
			continue;
		if (!keys)
			keys = line;
		else if (!vals)
			vals = line;
	}
	if (!keys || !vals)
		return -ENOENT;
	for (size_t i = 0; i < n; i++)
		out[i] = -1;
	k = strtok_r(keys + 7, " ", &ks);
	v = strtok_r(vals + 7, " ", &vs);
	for (; k && v; k = strtok_r(NULL, " ", &ks), v = strtok_r(NULL, " ", &vs))
		for (size_t i = 0; i < n; i++)
			if (!strcmp(k, names[i]))
				out[i] = strtoll(v, NULL, 10);
	return 0;
}
