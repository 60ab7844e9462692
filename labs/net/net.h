/* net.h: the lab network every lab can use: loopback, or two hosts joined by a wire (veth, or the impairment relay). */
#ifndef SOCKLAB_NET_NET_H
#define SOCKLAB_NET_NET_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <jansson.h>

#include "lab.h"
#include "net/wire.h"

/*
 * network=loopback: the run's own namespace and its lo (what the CLI front end
 * sets up for every lab). network=two-hosts: two more anonymous namespaces,
 * "client" and "server", each with an Ethernet interface eth0 (its own MAC and
 * an address from 198.18.0.0/15, MTU 1500), joined by a wire:
 *  - a veth pair when nothing is impaired (the kernel's own fast path);
 *  - otherwise two TAP devices and socklab's relay thread between them, which
 *    applies each direction's delay, jitter, loss, duplication, reordering and
 *    rate limit from a seeded generator and reports what it did to each frame
 *    as a "wire" event (see wire.h).
 *
 * Nothing is named or mounted: the namespaces are held by file descriptors of
 * the run's process, the TAP devices by its open fds, and the address lease by
 * an abstract Unix socket it has bound, so every piece disappears with the
 * process however it ends (even SIGKILL). The run's threads enter the side
 * they act for with net_enter(); a socket stays in the namespace where it was
 * created, whichever thread uses it later.
 *
 * Addresses: the run leases one of the 32768 /30 subnets of 198.18.0.0/15 (a
 * random free one, held by binding "\0socklab-net-N" in the namespace the run
 * started in), so concurrent runs on one host never share addresses; the
 * client is .1 and the server .2 of its subnet (counting from the subnet's
 * base), and the MACs are 02:73:6c:HI:LO:01 and :02 for lease HILO.
 */

enum net_kind { NET_LOOPBACK, NET_TWO_HOSTS };
enum net_side { NET_SERVER = 0, NET_CLIENT = 1 };

#define NET_MTU 1500
#define NET_LEASES 32768
#define NET_BASE 0xc6120000u /* 198.18.0.0 */
#define NET_IFNAME "eth0"

struct net_config {
	enum net_kind kind;
	struct wire_dir_cfg dir[2]; /* [WIRE_C2S], [WIRE_S2C] */
	uint64_t seed;              /* never 0 once read: 0 in the parameters picks one */
	int seed_chosen;            /* the seed was picked at random */
	int force_relay;            /* use the relay even without impairment */
	int trace_frames;           /* an event for every frame, not only impaired ones */
};

/* ---- the shared parameters ---- */

extern const char *const net_network_choices[];
extern const char *const net_wire_choices[];

/* Entries for a lab's lab_param_def table: the network and the wire's
 * impairment per direction (c2s_: client to server, s2c_: server to client). */
#define NET_DIR_PARAMS(d, D, ADV) NET_DIR_PARAMS_D(d, D, ADV, "0")
/* The same with another default delay (a string, in ms). */
#define NET_DIR_PARAMS_D(d, D, ADV, DELAY)                                                     \
	{d "_delay_ms", LAB_P_INT, D ": delay",                                                 \
	 D ": one-way delay the wire adds to every frame (two-hosts only)", "ms", DELAY, 0,       \
	 10000, NULL, ADV},                                                                    \
	{d "_loss_pct", LAB_P_INT, D ": loss",                                                  \
	 D ": share of IP frames the wire drops (two-hosts only)", "%", "0", 0, 100, NULL, ADV},   \
	{d "_jitter_ms", LAB_P_INT, D ": jitter",                                               \
	 D ": each IP frame's delay varies uniformly by up to plus or minus this (at most the " \
	   "delay; frames keep their order)",                                                  \
	 "ms", "0", 0, 10000, NULL, LAB_PF_ADVANCED},                                          \
	{d "_dup_pct", LAB_P_INT, D ": duplication",                                            \
	 D ": share of IP frames the wire delivers twice", "%", "0", 0, 100, NULL,              \
	 LAB_PF_ADVANCED},                                                                     \
	{d "_reorder_pct", LAB_P_INT, D ": reordering",                                         \
	 D ": share of IP frames held back and delivered after the next frame", "%", "0", 0,    \
	 100, NULL, LAB_PF_ADVANCED},                                                          \
	{d "_rate_kbit", LAB_P_INT, D ": rate limit",                                           \
	 D ": line rate in kbit/s, 0 for unlimited; frames queue behind each other (at most 1 " \
	   "s of backlog, then they are dropped)",                                             \
	 "kbit/s", "0", 0, 10000000, NULL, LAB_PF_ADVANCED}

#define NET_PARAMS NET_PARAMS_D("loopback", "0")
/* The same with another default network and one-way delay (both strings),
 * for a lab best seen over a slow wire. Such a lab's check() must accept
 * network=loopback with the delays left at their defaults. */
#define NET_PARAMS_D(NETWORK, DELAY)                                                           \
	{"network", LAB_P_ENUM, "Network",                                                       \
	 "loopback: one namespace and its loopback (no wire, 64 KiB MTU); two-hosts: a client "   \
	 "and a server host with Ethernet interfaces (MTU 1500) joined by a wire you can make "   \
	 "slow, lossy and jittery",                                                            \
	 NULL, NETWORK, 0, 0, net_network_choices, 0},                                         \
	NET_DIR_PARAMS_D("c2s", "Client to server", 0, DELAY),                                 \
	NET_DIR_PARAMS_D("s2c", "Server to client", 0, DELAY),                                 \
	{"wire", LAB_P_ENUM, "Wire",                                                             \
	 "two-hosts: auto uses a veth pair when nothing is impaired, else socklab's relay; "       \
	 "relay always uses the relay (to see or measure it)",                                 \
	 NULL, "auto", 0, 0, net_wire_choices, LAB_PF_ADVANCED},                               \
	{"wire_trace", LAB_P_BOOL, "Show every frame",                                           \
	 "two-hosts: send every frame through socklab's relay and report each one as a wire "     \
	 "event, not only the impaired ones",                                                  \
	 NULL, "false", 0, 0, NULL, LAB_PF_ADVANCED | LAB_PF_WIRE_TRACE},                      \
	{"seed", LAB_P_INT, "Wire seed",                                                         \
	 "Seed of the wire's random decisions: the same seed and parameters drop the same "      \
	 "frames; 0 picks one (run.start shows it)",                                           \
	 NULL, "0", 0, 2147483647, NULL, LAB_PF_ADVANCED}

/* Read the shared parameters (the lab must include NET_PARAMS). A seed of 0
 * is replaced by a random one. Any true boolean flagged LAB_PF_WIRE_TRACE (such
 * as wire_trace) turns on trace_frames. */
void net_config_read(const struct lab_params *p, struct net_config *cfg);

/* Nonzero when the lab's descriptor includes NET_PARAMS. */
int net_lab_has_params(const struct lab_desc *lab);

/* Nonzero when any impairment is set in either direction. */
int net_config_impaired(const struct net_config *cfg);

/* Cross-parameter rules of NET_PARAMS, for a lab's check(): impairments need
 * two-hosts; jitter at most the delay; loss + dup + reorder at most 100 per
 * direction. */
int net_params_check(const struct lab_params *p, const char **param, char *err, size_t errlen);

/* net_params_check for a lab that only works on two hosts: any other network
 * is refused, naming 'network', the lab and why (a phrase, e.g. "each side's
 * sockets are listed in its own host"). */
int net_params_check_two_hosts(const struct lab_params *p, const char *why, const char **param,
			       char *err, size_t errlen);

/* ---- the topology ---- */

struct net;

/* Build network=two-hosts: lease addresses, create both namespaces, the wire
 * and the addresses. The calling process must have no other thread yet; the
 * calling thread ends up in the server's namespace. On failure returns
 * negative with a message in err (which names CAP_SYS_ADMIN/CAP_NET_ADMIN
 * when permission is what is missing). */
int net_create(struct net **out, const struct net_config *cfg, char *err, size_t errlen);

/* Start the relay thread when the wire is one (a veth needs nothing). */
int net_start(struct net *n, struct ev_emitter *em, char *err, size_t errlen);

/* Stop the relay; returns its counters (new reference) or NULL for a veth. */
json_t *net_stop(struct net *n);

/* Close everything the run holds (fds: namespaces, TAPs, the lease). */
void net_destroy(struct net *n);

/* What was built, for run.start: kind, wire, MTU, each host's interface, MAC
 * and address, the impairment per direction and the seed. */
json_t *net_describe(const struct net *n);

/* The loopback network's description (kind, MTU of lo, address). */
json_t *net_describe_loopback(void);

/* ---- for lab threads (n may be NULL: loopback or the host's network) ---- */

/* Move the calling thread into side's namespace. 0 or -errno. */
int net_enter(const struct net *n, enum net_side side);

/* The fd that holds side's namespace (for a child to setns() into), or -1
 * without a two-hosts network. Owned by n. */
int net_ns_fd(const struct net *n, enum net_side side);

/* side's IPv4 address (host byte order); 0 without two hosts. */
uint32_t net_addr(const struct net *n, enum net_side side);

/* The TcpExt counters names[0..n-1] of the calling thread's network
 * namespace (/proc/thread-self/net/netstat: a thread that net_enter()ed a
 * host reads that host's). A name this kernel lacks reads -1. 0, or a
 * negative errno (-ENOENT: no TcpExt lines). */
int net_tcpext(const char *const names[], size_t n, long long out[]);

/* The two hosts of a lab that needs network=two-hosts: their addresses,
 * and the server's port (the "port" parameter; 0 picks one at random in
 * 20000-29999, so two runs side by side do not share it). */
struct net_pair {
	struct sockaddr_in srv, cli; /* srv carries the port */
	char srv_ip[INET_ADDRSTRLEN], cli_ip[INET_ADDRSTRLEN];
	uint16_t port;
};

/* Fill *pr for ctx's lab. Without two hosts: an error event naming the
 * parameter "network" and -EINVAL. */
int net_pair_pick(struct lab_ctx *ctx, struct net_pair *pr);

/* Where a lab's server binds: on two hosts its host's own address and the
 * lab's "port" parameter; otherwise the lab's "bind" and "port" parameters.
 * 0, or -EINVAL when "bind" is no IP literal (a lab's check() refuses that). */
int net_server_addr(const struct lab_ctx *ctx, struct sockaddr_storage *ss, socklen_t *sl);

/* The path MTU between the hosts (1500), or 65536 on loopback. */
int net_mtu(const struct net *n);

/* For topo.c: switch off checksum and segmentation offloads on ifname (in the
 * calling thread's namespace), so every frame a relay reads is a real one
 * with a real checksum; and an unbound relay packet socket (-errno). */
void net_offloads_off(const char *ifname);
int net_port_socket(void);

/* Nonzero when frames cross socklab's relay (so "wire" events come). */
int net_has_relay(const struct net *n);

/* Install the relay's frame hook (no-op without a relay). */
void net_set_frame_hook(struct net *n, wire_hook_fn fn, void *arg);

#endif
