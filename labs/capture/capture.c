/* capture.c: AF_PACKET capture with a libpcap-compiled BPF filter, kernel timestamps, pcap files. */
#include "capture.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <net/if_arp.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <poll.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <pcap/pcap.h>

/* The receive ring (TPACKET_V3): blocks of memory the kernel fills with
 * frames packed one after the other by their real size, each with its own
 * header and timestamp (taken when the frame reached the tap). A block is
 * handed to user space when it is full or when it has held frames for
 * RING_TOV_MS, so a quiet link still shows its frames within a few
 * milliseconds. A frame must fit in one block: 128 KiB blocks hold a
 * loopback frame of 64 KiB; a larger one is cut (tp_len says how long it
 * was) and counted as truncated.
 *
 * RING_DEFAULT_KB of ring (64 blocks) holds about 5,000 full-size Ethernet
 * frames (25 ms of a veth burst at 200,000 frames a second) or 50,000 small
 * ones; when frames come slowly, each block is handed over after RING_TOV_MS
 * with what it holds, so the ring then covers 64 x 4 ms = 256 ms. A reader
 * that falls behind by more loses frames, and the kernel counts every one
 * of them (cap_get_stats). bench/capture measures it: with 4 MiB a burst
 * of 100,000 segments lost a few hundred frames in some runs on a busy
 * 2-core machine, with 8 MiB none. */
#define RING_BLOCK (128 * 1024)
#define RING_DEFAULT_KB 8192
#define RING_TOV_MS 4
/* The test and diagnostic knob SOCKLAB_CAPTURE_RING_KB: the ring's size in
 * KiB, within these bounds. A ring smaller than RING_SMALL_KB uses smaller
 * blocks (at least 4 of them), so a test can make a capture overflow with
 * a few frames; large frames are then cut to the block. */
#define RING_MIN_KB 8
#define RING_MAX_KB 65536
#define RING_SMALL_KB 1024
#define RING_ENV "SOCKLAB_CAPTURE_RING_KB"
/* How long cap_stop() and cap_flush() wait at most for the kernel to hand
 * over a block holding frames captured before they were called. */
#define FLUSH_MAX_MS 200
/* The reader thread's nice value (see reader()). */
#define READER_NICE -10

struct cap {
	int fd;
	int loopback;
	int link;
	uint8_t *ring;     /* n_blocks blocks of block_size bytes (mmap) */
	size_t block_size;
	unsigned n_blocks;
	/* Where the reader is (one reader at a time): the block it looks at
	 * next, and inside it the frames already delivered and the offset of
	 * the next one (a callback that stops reading can stop mid-block). */
	unsigned blk;
	uint32_t blk_done;
	uint32_t blk_off;
	/* The reader thread (cap_start). */
	pthread_t tid;
	int running;
	int stop_fd;
	cap_frame_fn fn;
	void *arg;
	pthread_mutex_t lock; /* guards stats and reading the kernel's counters */
	struct cap_stats stats;
};

static int64_t ts_ns(const struct timespec *t)
{
	return (int64_t)t->tv_sec * 1000000000 + t->tv_nsec;
}

/* pcap's DLT value for a link type, and back. */
static int link_to_dlt(int link)
{
	switch (link) {
	case CAP_LINK_RAW:
		return DLT_RAW;
	case CAP_LINK_SLL:
		return DLT_LINUX_SLL;
	default:
		return DLT_EN10MB;
	}
}

static int dlt_to_link(int dlt)
{
	switch (dlt) {
	case DLT_EN10MB:
		return CAP_LINK_ETHERNET;
	case DLT_RAW:
#ifdef DLT_IPV4
	case DLT_IPV4:
	case DLT_IPV6:
#endif
		return CAP_LINK_RAW;
	case DLT_LINUX_SLL:
		return CAP_LINK_SLL;
	default:
		return -1;
	}
}

/* Compile expr for link with libpcap (on a dead handle: no device is
 * opened) into a classic BPF program for SO_ATTACH_FILTER. */
static int compile_filter(const char *expr, int link, struct sock_fprog *prog, char *err,
			  size_t errlen)
{
	pcap_t *p = pcap_open_dead(link_to_dlt(link), CAP_SNAPLEN);
	struct bpf_program bp;
	struct sock_filter *f;
	u_int i;

	if (!p) {
		snprintf(err, errlen, "libpcap could not start a filter compiler");
		return -ENOMEM;
	}
	if (pcap_compile(p, &bp, expr, 1, PCAP_NETMASK_UNKNOWN) < 0) {
		snprintf(err, errlen, "capture filter \"%.200s\": %.200s", expr, pcap_geterr(p));
		pcap_close(p);
		return -EINVAL;
	}
	f = calloc(bp.bf_len ? bp.bf_len : 1, sizeof *f);
	if (!f) {
		pcap_freecode(&bp);
		pcap_close(p);
		return -ENOMEM;
	}
	/* Copy field by field: struct bpf_insn and struct sock_filter have the
	 * same meaning but are distinct types. */
	for (i = 0; i < bp.bf_len; i++) {
		f[i].code = bp.bf_insns[i].code;
		f[i].jt = bp.bf_insns[i].jt;
		f[i].jf = bp.bf_insns[i].jf;
		f[i].k = bp.bf_insns[i].k;
	}
	prog->len = (unsigned short)bp.bf_len;
	prog->filter = f;
	pcap_freecode(&bp);
	pcap_close(p);
	return 0;
}

/* Interface facts: index, loopback or not, link type of its frames. */
static int iface_info(int fd, const char *ifname, int *index, int *loopback, int *link,
		      char *err, size_t errlen)
{
	struct ifreq ifr;

	memset(&ifr, 0, sizeof ifr);
	if (strlen(ifname) >= sizeof ifr.ifr_name) {
		snprintf(err, errlen, "interface name \"%.40s\" is too long", ifname);
		return -ENODEV;
	}
	memcpy(ifr.ifr_name, ifname, strlen(ifname));
	if (ioctl(fd, SIOCGIFINDEX, &ifr) < 0) {
		int e = errno;
		snprintf(err, errlen, "no interface \"%s\" in this network namespace: %s", ifname,
			 strerror(e));
		return e == ENODEV ? -ENODEV : -e;
	}
	*index = ifr.ifr_ifindex;
	if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0)
		return -errno;
	*loopback = (ifr.ifr_flags & IFF_LOOPBACK) != 0;
	if (ioctl(fd, SIOCGIFHWADDR, &ifr) < 0)
		return -errno;
	switch (ifr.ifr_hwaddr.sa_family) {
	case ARPHRD_ETHER:
	case ARPHRD_LOOPBACK:
		*link = CAP_LINK_ETHERNET;
		return 0;
	case ARPHRD_NONE:
		*link = CAP_LINK_RAW;
		return 0;
	default:
		snprintf(err, errlen, "interface %s has link type %u, which socklab cannot decode",
			 ifname, ifr.ifr_hwaddr.sa_family);
		return -EPROTONOSUPPORT;
	}
}

/* The ring's geometry: RING_DEFAULT_KB, or SOCKLAB_CAPTURE_RING_KB when
 * set (a test and diagnostic knob, RING_MIN_KB to RING_MAX_KB). */
static int ring_size(size_t *block_size, unsigned *n_blocks, char *err, size_t errlen)
{
	const char *env = getenv(RING_ENV);
	long kb = RING_DEFAULT_KB;
	size_t bs = RING_BLOCK;

	if (env && *env) {
		char *end = NULL;

		errno = 0;
		kb = strtol(env, &end, 10);
		if (errno || !end || *end || kb < RING_MIN_KB || kb > RING_MAX_KB) {
			snprintf(err, errlen,
				 "%s=\"%.40s\": the capture ring's size must be a whole number of "
				 "KiB from %d to %d",
				 RING_ENV, env, RING_MIN_KB, RING_MAX_KB);
			return -EINVAL;
		}
	}
	/* Small rings: blocks of a power of two pages, at least four of them. */
	if (kb < RING_SMALL_KB)
		while (bs > 4096 && bs * 4 > (size_t)kb * 1024)
			bs /= 2;
	*block_size = bs;
	*n_blocks = (unsigned)((size_t)kb * 1024 / bs);
	if (*n_blocks < 2)
		*n_blocks = 2;
	return 0;
}

int cap_open(struct cap **out, const char *ifname, const char *expr, char *err, size_t errlen)
{
	struct cap *c = calloc(1, sizeof *c);
	struct sock_fprog prog = {0, NULL};
	struct sockaddr_ll sll;
	char full[1024];
	int index = 0, rc;

	*out = NULL;
	if (!c) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	c->fd = -1;
	c->stop_fd = -1;
	pthread_mutex_init(&c->lock, NULL);
	/* Protocol 0: nothing is queued before bind(), so nothing unfiltered. */
	c->fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (c->fd < 0) {
		rc = -errno;
		if (rc == -EPERM || rc == -EACCES) {
			rc = -EPERM;
			snprintf(err, errlen,
				 "capturing packets needs the CAP_NET_RAW capability: run as root, "
				 "or give the container NET_RAW (docker/podman run --cap-add NET_RAW), "
				 "or study a recorded capture with -p replay=FILE.pcap");
		} else {
			snprintf(err, errlen, "socket(AF_PACKET): %s", strerror(-rc));
		}
		goto out;
	}
	rc = iface_info(c->fd, ifname, &index, &c->loopback, &c->link, err, errlen);
	if (rc < 0)
		goto out;
	/* On loopback keep only the arriving copy of each frame. */
	if (c->loopback)
		snprintf(full, sizeof full, "inbound%s%s%s", expr && *expr ? " and (" : "",
			 expr && *expr ? expr : "", expr && *expr ? ")" : "");
	else
		snprintf(full, sizeof full, "%s", expr ? expr : "");
	rc = compile_filter(full, c->link, &prog, err, errlen);
	if (rc < 0)
		goto out;
	if (setsockopt(c->fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog) < 0) {
		rc = -errno;
		snprintf(err, errlen, "attaching the capture filter: %s", strerror(-rc));
		goto out;
	}
	/* Drain anything queued before the filter was attached (nothing can be,
	 * with protocol 0, but a socket that was ever bound could hold some). */
	{
		char scratch[64];
		while (recv(c->fd, scratch, sizeof scratch, MSG_DONTWAIT | MSG_TRUNC) >= 0)
			;
	}
	/* A memory-mapped ring rather than recvmsg(): the kernel stamps every
	 * frame as it reaches the tap. With recvmsg() a frame that came before
	 * the system's timestamping was switched on (the kernel turns it on
	 * lazily, after a first socket asks) would only be stamped when it is
	 * read. */
	rc = ring_size(&c->block_size, &c->n_blocks, err, errlen);
	if (rc < 0)
		goto out;
	{
		int version = TPACKET_V3;
		struct tpacket_req3 req;

		memset(&req, 0, sizeof req);
		req.tp_block_size = (unsigned)c->block_size;
		req.tp_block_nr = c->n_blocks;
		/* V3 packs frames by size; the kernel only checks that the
		 * nominal frame count matches the blocks. */
		req.tp_frame_size = 2048;
		req.tp_frame_nr = (unsigned)(c->block_size / 2048) * c->n_blocks;
		req.tp_retire_blk_tov = RING_TOV_MS;
		if (setsockopt(c->fd, SOL_PACKET, PACKET_VERSION, &version, sizeof version) < 0 ||
		    setsockopt(c->fd, SOL_PACKET, PACKET_RX_RING, &req, sizeof req) < 0) {
			rc = -errno;
			snprintf(err, errlen, "setting up the capture ring (%u blocks of %zu KiB): %s",
				 c->n_blocks, c->block_size / 1024, strerror(-rc));
			goto out;
		}
		c->ring = mmap(NULL, c->block_size * c->n_blocks, PROT_READ | PROT_WRITE,
			       MAP_SHARED, c->fd, 0);
		if (c->ring == MAP_FAILED) {
			c->ring = NULL;
			rc = -errno;
			snprintf(err, errlen, "mapping the capture ring: %s", strerror(-rc));
			goto out;
		}
	}
	memset(&sll, 0, sizeof sll);
	sll.sll_family = AF_PACKET;
	sll.sll_protocol = htons(ETH_P_ALL);
	sll.sll_ifindex = index;
	if (bind(c->fd, (struct sockaddr *)&sll, sizeof sll) < 0) {
		rc = -errno;
		snprintf(err, errlen, "binding the capture to %s: %s", ifname, strerror(-rc));
		goto out;
	}
	rc = 0;
out:
	free(prog.filter);
	if (rc < 0) {
		cap_close(c);
		return rc;
	}
	*out = c;
	return 0;
}

int cap_fd(const struct cap *c)
{
	return c->fd;
}

int cap_link(const struct cap *c)
{
	return c->link;
}

/* What to add to a CLOCK_REALTIME stamp to put it on CLOCK_MONOTONIC, read
 * now (mono, real, mono: the real reading sits between the two). It is read
 * once per ring block: the two clocks only drift apart when the wall clock
 * is set or slewed. */
static int64_t real_to_mono_offset(void)
{
	struct timespec m1, r, m2;

	clock_gettime(CLOCK_MONOTONIC, &m1);
	clock_gettime(CLOCK_REALTIME, &r);
	clock_gettime(CLOCK_MONOTONIC, &m2);
	return (ts_ns(&m1) + ts_ns(&m2)) / 2 - ts_ns(&r);
}

static struct tpacket_hdr_v1 *block_at(const struct cap *c, unsigned i)
{
	return &((struct tpacket_block_desc *)(c->ring + (size_t)i * c->block_size))->hdr.bh1;
}

/* The checksum flags the kernel put in a frame's status. */
static unsigned csum_flags(uint32_t status)
{
	return ((status & TP_STATUS_CSUMNOTREADY) ? CAP_CSUM_NOT_READY : 0) |
	       ((status & TP_STATUS_CSUM_VALID) ? CAP_CSUM_VALID : 0);
}

/* Counters of one cap_read() call, added to the capture's under its lock
 * once per block rather than once per frame. */
struct batch {
	uint64_t frames, truncated, duplicates;
};

static void batch_add(struct cap *c, struct batch *b)
{
	pthread_mutex_lock(&c->lock);
	c->stats.frames += b->frames;
	c->stats.truncated += b->truncated;
	c->stats.duplicates += b->duplicates;
	pthread_mutex_unlock(&c->lock);
	memset(b, 0, sizeof *b);
}

/* Deliver the frame at c->blk_off of block blk: 1 when delivered, 0 when
 * skipped (loopback's outgoing copy; *bad when the header does not fit the
 * block, which the kernel never writes: never read past the block), or the
 * callback's negative return. */
static int deliver(struct cap *c, const uint8_t *blk, int64_t offset, struct batch *b,
		   cap_frame_fn fn, void *arg, int *bad)
{
	const struct tpacket3_hdr *h = (const struct tpacket3_hdr *)(blk + c->blk_off);
	const struct sockaddr_ll *from;
	struct cap_frame f;
	int rc;

	*bad = 0;
	if (c->blk_off + TPACKET3_HDRLEN > c->block_size ||
	    c->blk_off + (size_t)h->tp_mac + h->tp_snaplen > c->block_size) {
		*bad = 1;
		return 0;
	}
	from = (const struct sockaddr_ll *)((const uint8_t *)h +
					   TPACKET_ALIGN(sizeof(struct tpacket3_hdr)));
	memset(&f, 0, sizeof f);
	f.ts_real.tv_sec = h->tp_sec;
	f.ts_real.tv_nsec = h->tp_nsec;
	f.t_mono_ns = ts_ns(&f.ts_real) + offset;
	f.outgoing = from->sll_pkttype == PACKET_OUTGOING;
	f.data = (const uint8_t *)h + h->tp_mac;
	f.caplen = h->tp_snaplen;
	f.len = h->tp_len;
	f.link = c->link;
	f.csum_flags = csum_flags(h->tp_status);
	if (c->loopback && f.outgoing) {
		/* The filter's "inbound" already drops these; belt and braces. */
		b->duplicates++;
		return 0;
	}
	b->frames++;
	if (f.caplen < f.len)
		b->truncated++;
	rc = fn(arg, &f);
	return rc < 0 ? rc : 1;
}

int cap_read(struct cap *c, cap_frame_fn fn, void *arg)
{
	struct batch b;
	int n = 0;

	memset(&b, 0, sizeof b);
	for (;;) {
		struct tpacket_hdr_v1 *bh = block_at(c, c->blk);
		const uint8_t *blk = (const uint8_t *)bh - offsetof(struct tpacket_block_desc, hdr);
		int64_t offset;
		uint32_t num;

		/* The kernel hands a block over by setting TP_STATUS_USER last. */
		if (!(__atomic_load_n(&bh->block_status, __ATOMIC_ACQUIRE) & TP_STATUS_USER))
			return n;
		num = bh->num_pkts;
		offset = real_to_mono_offset();
		if (c->blk_done == 0)
			c->blk_off = bh->offset_to_first_pkt;
		while (c->blk_done < num) {
			const struct tpacket3_hdr *h = (const struct tpacket3_hdr *)(blk + c->blk_off);
			int bad, rc = deliver(c, blk, offset, &b, fn, arg, &bad);

			if (bad)
				break;
			c->blk_done++;
			c->blk_off += h->tp_next_offset;
			if (rc > 0)
				n++;
			if (rc < 0) {
				batch_add(c, &b);
				return rc;
			}
		}
		batch_add(c, &b);
		/* Give the block back. num_pkts is cleared so that a block the
		 * kernel has not opened again reads as empty (see pending()). */
		bh->num_pkts = 0;
		__atomic_store_n(&bh->block_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
		c->blk = (c->blk + 1) % c->n_blocks;
		c->blk_done = 0;
		c->blk_off = 0;
	}
}

/* Nonzero when the kernel holds frames it has not handed over yet: the
 * next block to read is still the kernel's and already has frames in it
 * (a block is opened with no frames, and cap_read clears the count of a
 * block it gives back). */
static int pending(const struct cap *c)
{
	struct tpacket_hdr_v1 *bh = block_at(c, c->blk);

	return !(__atomic_load_n(&bh->block_status, __ATOMIC_ACQUIRE) & TP_STATUS_USER) &&
	       __atomic_load_n(&bh->num_pkts, __ATOMIC_RELAXED) > 0;
}

int cap_flush(struct cap *c, cap_frame_fn fn, void *arg)
{
	struct timespec t;
	int64_t end;
	unsigned start;
	int n, rc;

	clock_gettime(CLOCK_MONOTONIC, &t);
	end = ts_ns(&t) + (int64_t)FLUSH_MAX_MS * 1000000;
	/* Read what is handed over. Frames captured before now that are not
	 * are in the kernel's current block: wait until that one is handed
	 * over too (at most a couple of RING_TOV_MS later) and read it. */
	n = cap_read(c, fn, arg);
	if (n < 0 || !pending(c))
		return n;
	start = c->blk;
	for (;;) {
		struct pollfd p = {c->fd, POLLIN, 0};

		if (poll(&p, 1, RING_TOV_MS) < 0 && errno != EINTR)
			return -errno;
		rc = cap_read(c, fn, arg);
		if (rc < 0)
			return rc;
		n += rc;
		clock_gettime(CLOCK_MONOTONIC, &t);
		if (c->blk != start || ts_ns(&t) >= end)
			return n;
	}
}

void cap_reader_priority(void)
{
	/* The reader does little work but must not wait long for a CPU: a
	 * burst fills the ring in tens of milliseconds. Best effort: it needs
	 * CAP_SYS_NICE, and without it the thread runs at the process's own
	 * priority. */
	if (setpriority(PRIO_PROCESS, (id_t)gettid(), READER_NICE) < 0) {
		/* not permitted: keep the default */
	}
}

static void *reader(void *arg)
{
	struct cap *c = arg;

	cap_reader_priority();
	for (;;) {
		struct pollfd p[2] = {{c->fd, POLLIN, 0}, {c->stop_fd, POLLIN, 0}};
		int n = poll(p, 2, -1);

		if (n < 0 && errno != EINTR)
			break;
		if (n > 0 && (p[0].revents & POLLIN) && cap_read(c, c->fn, c->arg) < 0)
			break;
		if (n > 0 && (p[1].revents & POLLIN)) {
			/* Deliver what was captured before the stop. */
			cap_flush(c, c->fn, c->arg);
			break;
		}
	}
	return NULL;
}

int cap_start(struct cap *c, cap_frame_fn fn, void *arg)
{
	int rc;

	if (c->running)
		return -EBUSY;
	c->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (c->stop_fd < 0)
		return -errno;
	c->fn = fn;
	c->arg = arg;
	rc = pthread_create(&c->tid, NULL, reader, c);
	if (rc != 0) {
		close(c->stop_fd);
		c->stop_fd = -1;
		return -rc;
	}
	c->running = 1;
	return 0;
}

void cap_stop(struct cap *c)
{
	uint64_t one = 1;

	if (!c || !c->running)
		return;
	if (write(c->stop_fd, &one, sizeof one) < 0) {
		/* An eventfd write cannot fail here; the join below would hang
		 * only if it did, so there is nothing better to do. */
	}
	pthread_join(c->tid, NULL);
	c->running = 0;
	close(c->stop_fd);
	c->stop_fd = -1;
}

void cap_get_stats(struct cap *c, struct cap_stats *st)
{
	struct tpacket_stats_v3 ks;
	socklen_t kl = sizeof ks;

	pthread_mutex_lock(&c->lock);
	/* Reading PACKET_STATISTICS resets the kernel's counters: add them up
	 * here, under the lock, so no two readers count the same drops and
	 * none is lost between readings. */
	memset(&ks, 0, sizeof ks);
	if (c->fd >= 0 && getsockopt(c->fd, SOL_PACKET, PACKET_STATISTICS, &ks, &kl) == 0) {
		c->stats.kernel_drops += ks.tp_drops;
		c->stats.ring_full += ks.tp_freeze_q_cnt;
	}
	c->stats.ring_bytes = (uint64_t)c->block_size * c->n_blocks;
	*st = c->stats;
	pthread_mutex_unlock(&c->lock);
}

void cap_close(struct cap *c)
{
	if (!c)
		return;
	cap_stop(c);
	if (c->ring)
		munmap(c->ring, c->block_size * c->n_blocks);
	if (c->fd >= 0)
		close(c->fd);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

/* ---- pcap files ---- */

/* The last component of path. Messages name files by it alone: a run's
 * files live under the server's data directory, whose absolute path is the
 * server's business, not a student's. */
static const char *file_name(const char *path)
{
	const char *slash = strrchr(path, '/');

	return slash && slash[1] ? slash + 1 : path;
}

struct cap_pcap {
	pcap_t *dead;
	pcap_dumper_t *dump;
};

int cap_pcap_open(struct cap_pcap **out, const char *path, int link, char *err, size_t errlen)
{
	struct cap_pcap *w = calloc(1, sizeof *w);
	FILE *fp = NULL;
	int fd, rc;

	*out = NULL;
	if (!w) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	w->dead = pcap_open_dead_with_tstamp_precision(link_to_dlt(link), CAP_SNAPLEN,
						       PCAP_TSTAMP_PRECISION_NANO);
	if (!w->dead) {
		free(w);
		snprintf(err, errlen, "libpcap could not start a pcap writer");
		return -ENOMEM;
	}
	/* Our own open, not pcap_dump_open's fopen: a capture holds a run's
	 * traffic and is private to its owner (0600, like the rest of a
	 * bundle), whatever the umask. */
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd >= 0 && fchmod(fd, 0600) == 0)
		fp = fdopen(fd, "wb");
	if (!fp) {
		rc = -errno;
		snprintf(err, errlen, "cannot write the pcap file %.200s: %s", file_name(path),
			 strerror(-rc));
		if (fd >= 0)
			close(fd);
		pcap_close(w->dead);
		free(w);
		return rc;
	}
	w->dump = pcap_dump_fopen(w->dead, fp);
	if (!w->dump) {
		snprintf(err, errlen, "cannot write the pcap file %.200s: %.200s", file_name(path),
			 pcap_geterr(w->dead));
		fclose(fp);
		pcap_close(w->dead);
		free(w);
		return -EIO;
	}
	*out = w;
	return 0;
}

int cap_pcap_write(struct cap_pcap *w, const struct cap_frame *f)
{
	struct pcap_pkthdr h;

	memset(&h, 0, sizeof h);
	/* With nanosecond precision libpcap reads tv_usec as nanoseconds. */
	h.ts.tv_sec = f->ts_real.tv_sec;
	h.ts.tv_usec = (suseconds_t)f->ts_real.tv_nsec;
	h.caplen = f->caplen;
	h.len = f->len;
	pcap_dump((u_char *)w->dump, &h, f->data);
	return pcap_dump_flush(w->dump) == 0 ? 0 : -EIO;
}

void cap_pcap_close(struct cap_pcap *w)
{
	if (!w)
		return;
	pcap_dump_close(w->dump);
	pcap_close(w->dead);
	free(w);
}

/* ---- reading a recorded capture ---- */

struct cap_file {
	pcap_t *p;
	int link;
};

int cap_file_open(struct cap_file **out, const char *path, size_t max_bytes, char *err,
		  size_t errlen)
{
	char perr[PCAP_ERRBUF_SIZE] = "";
	struct cap_file *f;
	struct stat st;
	FILE *fp;
	int fd, rc;

	*out = NULL;
	/* One open file for the checks and the reading: no swap in between. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "cannot open %.200s: %s", file_name(path), strerror(-rc));
		return rc;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%.200s is not a regular file", file_name(path));
		close(fd);
		return -EINVAL;
	}
	if ((uint64_t)st.st_size > max_bytes) {
		snprintf(err, errlen, "%.200s is %lld bytes; a replay reads at most %zu",
			 file_name(path),
			 (long long)st.st_size, max_bytes);
		close(fd);
		return -EFBIG;
	}
	fp = fdopen(fd, "rb");
	if (!fp) {
		rc = -errno;
		close(fd);
		snprintf(err, errlen, "cannot read %.200s: %s", file_name(path), strerror(-rc));
		return rc;
	}
	f = calloc(1, sizeof *f);
	if (!f) {
		fclose(fp);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	f->p = pcap_fopen_offline_with_tstamp_precision(fp, PCAP_TSTAMP_PRECISION_NANO, perr);
	if (!f->p) {
		fclose(fp);
		free(f);
		snprintf(err, errlen, "%.200s is not a pcap or pcapng file libpcap can read: %.200s",
			 file_name(path), perr);
		return -EINVAL;
	}
	f->link = dlt_to_link(pcap_datalink(f->p));
	if (f->link < 0) {
		snprintf(err, errlen,
			 "%.200s has link type %s; socklab reads Ethernet, raw IP and Linux cooked "
			 "captures",
			 file_name(path), pcap_datalink_val_to_name(pcap_datalink(f->p))
				       ? pcap_datalink_val_to_name(pcap_datalink(f->p))
				       : "?");
		pcap_close(f->p);
		free(f);
		return -EPROTONOSUPPORT;
	}
	*out = f;
	return 0;
}

int cap_file_link(const struct cap_file *f)
{
	return f->link;
}

int cap_file_next(struct cap_file *f, struct cap_frame *out, char *err, size_t errlen)
{
	struct pcap_pkthdr *h;
	const u_char *data;
	int rc = pcap_next_ex(f->p, &h, &data);

	if (rc == PCAP_ERROR_BREAK)
		return 0;
	if (rc != 1) {
		snprintf(err, errlen, "the capture file is damaged: %.200s", pcap_geterr(f->p));
		return -EIO;
	}
	memset(out, 0, sizeof *out);
	out->ts_real.tv_sec = h->ts.tv_sec;
	out->ts_real.tv_nsec = h->ts.tv_usec; /* nanoseconds: opened with NANO precision */
	out->t_mono_ns = -1;
	out->data = data;
	out->caplen = h->caplen;
	out->len = h->len < h->caplen ? h->caplen : h->len;
	out->link = f->link;
	return 1;
}

void cap_file_close(struct cap_file *f)
{
	if (!f)
		return;
	pcap_close(f->p);
	free(f);
}
