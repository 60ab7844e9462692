/* topo.h: small lab topologies: hosts on Ethernet segments (one bridge per segment) and routers joining the segments' subnets. */
#ifndef SOCKLAB_NET_TOPO_H
#define SOCKLAB_NET_TOPO_H

#include <net/if.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "event.h"
#include "net/wire.h"

/*
 * A topology is a "switch" namespace holding one Linux bridge per segment,
 * and one namespace per host. Each host interface is one end of a veth pair
 * whose other end is a port of its segment's bridge, named after the host
 * and the interface ("a-eth0"). Every frame a host sends or receives crosses
 * its port, so a capture on each port in the switch namespace sees every link
 * (a broadcast once on every port of its segment). A host with interfaces on
 * two segments is a router: IPv4 forwarding is switched on in its namespace
 * only. The other hosts of a segment that has a router get a default route
 * via the router's address on that segment.
 *
 * Addressing is leased like two-hosts (net.h): each segment holds a /29 of
 * 198.18.0.0/15, two consecutive /30 blocks held by binding the abstract
 * sockets "\0socklab-net-N" and N+1 in the namespace the run started in, so
 * concurrent runs and two-hosts runs never share a subnet. Interfaces take
 * the segment's addresses in the order the spec lists them (.1, .2, ...), and
 * MACs 02:73:6c:HI:LO:NN for the segment's first block HILO and host octet NN.
 *
 * Impairment: an interface whose spec sets impair[i] is not plugged into its
 * bridge directly. Its port ("a-eth0") is one end of socklab's seeded relay
 * (wire.h, the same as two-hosts): a packet socket reads every frame the host
 * sends from it and writes every frame for the host to it, and a second veth
 * pair in the switch namespace ("a-eth0w", the relay's other end, and
 * "a-eth0b", the bridge's port) carries them to and from the bridge. The
 * port is still where the link is captured: there the host's frames are
 * seen before the wire decided on them, and the frames for the host after.
 * Direction WIRE_C2S is what the host sends, WIRE_S2C what it receives; each
 * link's wire draws from the topology's seed, so the same seed and the same
 * traffic drop the same frames. Its "wire" events carry "port".
 *
 * As in net.h nothing is named or mounted: the namespaces are held by fds of
 * the run's process, so the bridges, veths and addresses disappear with the
 * process however it ends (even SIGKILL).
 */

#define TOPO_MAX_HOSTS 6
#define TOPO_MAX_SEGS 3
#define TOPO_MAX_IFS 2
#define TOPO_PREFIX 29
#define TOPO_SEG_ADDRS 6 /* usable addresses of a /29 */

struct topo_host_spec {
	const char *name; /* "A": at most 3 characters, letters and digits */
	int n_ifs;
	int seg[TOPO_MAX_IFS]; /* the segment of eth0, eth1 */
	/* Each interface's impairment: [WIRE_C2S] what the host sends,
	 * [WIRE_S2C] what it receives. All zero: a plain bridge port. */
	struct wire_dir_cfg impair[TOPO_MAX_IFS][2];
};

struct topo_spec {
	int n_segs;
	int mtu[TOPO_MAX_SEGS]; /* each segment's MTU (68..1500); 0 means 1500 */
	int n_hosts;
	struct topo_host_spec host[TOPO_MAX_HOSTS];
	uint64_t seed; /* the wires' seed (nonzero when any link is impaired) */
};

/* Everything below is read-only once topo_create() returned. */
struct topo_if {
	char name[IF_NAMESIZE]; /* in the host: "eth0" */
	char port[IF_NAMESIZE]; /* its bridge port in the switch namespace: "a-eth0" */
	int seg;
	int ifindex;      /* in the host's namespace */
	int port_ifindex; /* in the switch namespace */
	int mtu;
	uint32_t addr; /* host byte order */
	uint8_t mac[6];
	/* An impaired link (else wire is NULL and relay_end empty). */
	struct wire_dir_cfg impair[2];
	char relay_end[IF_NAMESIZE]; /* "a-eth0w": the relay's bridge side */
	char bridge_port[IF_NAMESIZE]; /* "a-eth0b": the bridge's port */
	int wire_fd[2];                /* packet sockets: [0] the port, [1] relay_end */
	struct wire *wire;
};

struct topo_host {
	char name[8];
	int ns_fd;
	int router;      /* forwards IPv4 (interfaces on two segments) */
	uint32_t gateway; /* its default route's gateway, 0 for none */
	int n_ifs;
	struct topo_if ifs[TOPO_MAX_IFS];
};

struct topo {
	int switch_fd; /* the bridges' namespace */
	int n_segs;
	uint32_t seg_base[TOPO_MAX_SEGS]; /* subnet address, host byte order */
	int seg_mtu[TOPO_MAX_SEGS];
	int n_hosts;
	struct topo_host host[TOPO_MAX_HOSTS];
	int lease_fd[2 * TOPO_MAX_SEGS];
	unsigned lease[TOPO_MAX_SEGS]; /* the segment's first /30 block */
	uint64_t seed;
	int n_wires;
};

/* Check a spec: -EINVAL with a sentence naming what is wrong. */
int topo_spec_check(const struct topo_spec *spec, char *err, size_t errlen);

/* Build the topology. The calling thread must be in the namespace the run
 * started in (the leases are held there) and ends up in the switch namespace.
 * On failure everything built is gone, and err names CAP_SYS_ADMIN and
 * CAP_NET_ADMIN when permission is what is missing. */
int topo_create(struct topo **out, const struct topo_spec *spec, char *err, size_t errlen);

/* Close every fd the topology holds (namespaces, leases): the kernel then
 * removes every bridge, veth and address. NULL is fine. */
void topo_destroy(struct topo *t);

/* Start the relay thread of every impaired link; its "wire" events (with
 * "port") go to em. 0 or negative with err. */
int topo_start(struct topo *t, struct ev_emitter *em, char *err, size_t errlen);

/* Stop the relays: a new object of each impaired link's counters by port
 * (wire_stop's), or NULL when no link is impaired. */
json_t *topo_stop(struct topo *t);

/* Move the calling thread into host h's namespace (h < 0: the switch's).
 * 0 or -errno. */
int topo_enter(const struct topo *t, int h);

/* The host called name, or -1. */
int topo_host_index(const struct topo *t, const char *name);

/* New JSON: segments (subnet, prefix, MTU, bridge), hosts (interfaces with
 * address, MAC, port, and an impaired link's wire; router; gateway), and the
 * seed when a link is impaired. Caller owns it. */
json_t *topo_describe(const struct topo *t);

#endif
