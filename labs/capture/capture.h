/* capture.h: packet capture in the current network namespace (AF_PACKET + classic BPF) and pcap files. */
#ifndef SOCKLAB_CAPTURE_H
#define SOCKLAB_CAPTURE_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

/*
 * A capture is an AF_PACKET socket on one interface of the calling thread's
 * network namespace, filtered in the kernel by a classic BPF program that
 * libpcap compiles from a tcpdump expression. It is opened the way libpcap
 * does it, so no packet slips past the filter: the socket is created with
 * protocol 0 (it receives nothing yet), the filter is attached, anything
 * queued is drained, and only then is it bound with ETH_P_ALL.
 *
 * On a loopback interface every frame passes the tap twice (once leaving,
 * once arriving); the capture keeps only the arriving copy ("inbound" in the
 * filter, and PACKET_OUTGOING frames are dropped again in user space), so
 * each segment is seen once. On any other interface both directions are
 * kept: outgoing frames are the ones this host sent.
 *
 * Frames arrive through a memory-mapped ring (TPACKET_V3: 8 MiB of blocks
 * in which the kernel packs frames by their real size), each stamped by the
 * kernel when it reached the tap (on CLOCK_REALTIME); each frame also
 * carries the stamp converted to CLOCK_MONOTONIC (the clock every socklab
 * event uses) by the offset between the two clocks read when it is read.
 * The kernel hands a block over when it is full or CAP_DELAY_MS at most
 * after its first frame, so frames become readable in batches, a few
 * milliseconds late at worst. When the reader falls behind by a whole ring
 * the kernel drops frames and counts them: cap_get_stats() reports the
 * count, and a lab must then say that its capture is incomplete.
 *
 * The environment variable SOCKLAB_CAPTURE_RING_KB (8 to 65536) sets the
 * ring's size: a test and diagnostic knob, so a test can make a capture
 * overflow on purpose. cap_open() fails with -EINVAL on a value out of
 * range.
 *
 * Two ways to consume frames: poll cap_fd() and call cap_read() (any
 * thread, one at a time; cap_flush() at the end), or cap_start() a reader
 * thread that calls a callback for every frame until cap_stop().
 */

/* Link types, numbered as in pcap files (decode.h uses the same numbers). */
#define CAP_LINK_ETHERNET 1
#define CAP_LINK_RAW 101
#define CAP_LINK_SLL 113

/* A frame is readable at most about this long after the kernel stamped
 * it (when the reader keeps up): a merger of time-ordered sources should
 * hold events back this long. */
#define CAP_DELAY_MS 20

/* Frames larger than about this are cut (loopback's MTU is 64 KiB); the
 * frame's len still says how long it was. */
#define CAP_SNAPLEN 262144

/* What the kernel said about a frame's transport checksum (tp_status), the
 * same values as decode.h's DEC_RX_CSUM_* so csum_flags can be passed to
 * dec_packet_rx() as they are. */
#define CAP_CSUM_NOT_READY 1u /* TP_STATUS_CSUMNOTREADY: only the partial sum (offload) */
#define CAP_CSUM_VALID 2u     /* TP_STATUS_CSUM_VALID: verified on receipt */

struct cap_frame {
	struct timespec ts_real; /* the kernel's stamp (CLOCK_REALTIME) */
	int64_t t_mono_ns;       /* the same instant on CLOCK_MONOTONIC; -1 when unknown */
	const uint8_t *data;     /* valid only during the callback */
	uint32_t caplen, len;    /* bytes captured, bytes on the wire */
	int outgoing;            /* sent by this host (never on loopback: see above) */
	int link;                /* CAP_LINK_* */
	unsigned csum_flags;     /* CAP_CSUM_*; 0 from a file or when the kernel said nothing */
};

/* Called for every frame; returns 0, or negative to stop reading. */
typedef int (*cap_frame_fn)(void *arg, const struct cap_frame *f);

struct cap_stats {
	uint64_t frames;       /* delivered to the callback */
	uint64_t kernel_drops; /* dropped by the kernel: the ring was full */
	uint64_t ring_full;    /* times the kernel found the ring full (tp_freeze_q_cnt) */
	uint64_t duplicates;   /* loopback's outgoing copies dropped in user space */
	uint64_t truncated;    /* frames cut short (longer than a ring block or CAP_SNAPLEN) */
	uint64_t ring_bytes;   /* the ring's size */
};

struct cap;

/* Open a capture on interface ifname with the filter expression expr (tcpdump
 * syntax; NULL or "" captures everything). On failure returns -errno and a
 * message for a person in err: -EPERM names CAP_NET_RAW and how to grant it,
 * -EINVAL a filter libpcap refused, -ENODEV an unknown interface. */
int cap_open(struct cap **out, const char *ifname, const char *expr, char *err, size_t errlen);

/* The socket to poll for POLLIN. */
int cap_fd(const struct cap *c);

/* The link type of the frames (CAP_LINK_*). */
int cap_link(const struct cap *c);

/* Read every frame queued now without blocking, calling fn for each.
 * Returns the number of frames delivered, or -errno (a callback's negative
 * return value stops reading and is returned). Not while a reader thread
 * runs. */
int cap_read(struct cap *c, cap_frame_fn fn, void *arg);

/* cap_read(), after waiting (at most 200 ms) until the kernel has handed
 * over every frame it captured before the call: the last read of a run. */
int cap_flush(struct cap *c, cap_frame_fn fn, void *arg);

/* Give the calling thread the priority of a capture reader (nice -10, when
 * the process may: CAP_SYS_NICE). cap_start's thread does it; a thread of
 * the caller's that reads captures with cap_read should too. */
void cap_reader_priority(void);

/* Start a thread that calls fn for every frame until cap_stop(). fn runs on
 * that thread. 0 or -errno. */
int cap_start(struct cap *c, cap_frame_fn fn, void *arg);

/* Deliver what is still queued, stop the reader thread and join it. */
void cap_stop(struct cap *c);

/* Counters so far, the kernel's drop counters included (read from the
 * kernel and added up on each call: the kernel resets them when read).
 * Any thread; call it before cap_close(). */
void cap_get_stats(struct cap *c, struct cap_stats *st);

/* Stop the thread if one runs and close the socket. NULL is fine. */
void cap_close(struct cap *c);

/* ---- what a lab reports about its capture (report.c) ---- */

struct ev_emitter;
struct json_t;

/* The one shape every capturing lab uses: adds the counters of the n
 * captures in caps (NULL entries are skipped) and puts them in the run's
 * summary (NULL: none) as
 *   "capture": {"frames":N, "drops":N, "ring_full":N, "truncated":N,
 *               "complete":BOOL}
 * where drops are the frames the kernel dropped because a ring was full,
 * plus lost: frames the lab lost itself after reading them (a full queue of
 * its own; 0 for most labs).
 * When there are drops it emits the note capture.incomplete ("the capture
 * missed N frames: the counts below are incomplete"). Call it once, after
 * the last read (cap_stop or cap_flush) and before cap_close. Returns 1
 * when the capture is complete, 0 when it missed frames (the lab must then
 * draw no verdict from its wire lane: see cap_report_no_verdict), -1 when
 * there was no capture. */
int cap_report(struct cap *const *caps, int n, uint64_t lost, struct ev_emitter *em,
	       struct json_t *summary);

/* The note capture.no_verdict ("no verdict: the capture is incomplete"),
 * emitted where a lab withholds a verdict it would draw from the wire. */
void cap_report_no_verdict(struct ev_emitter *em);

/* ---- pcap files (libpcap's dump API; nanosecond timestamps) ---- */

struct cap_pcap;

/* Create (truncate) a pcap file for frames of link type link. */
int cap_pcap_open(struct cap_pcap **out, const char *path, int link, char *err, size_t errlen);

/* Append one frame and flush it to the file, so a killed run still leaves
 * every frame written so far. 0 or -EIO. */
int cap_pcap_write(struct cap_pcap *w, const struct cap_frame *f);

/* Flush and close. NULL is fine. */
void cap_pcap_close(struct cap_pcap *w);

/* ---- reading a recorded capture (replay) ---- */

struct cap_file;

/* Open a pcap or pcapng file of at most max_bytes. -EFBIG when it is larger,
 * -EPROTONOSUPPORT for a link type the decoders cannot read. */
int cap_file_open(struct cap_file **out, const char *path, size_t max_bytes, char *err,
		  size_t errlen);

int cap_file_link(const struct cap_file *f);

/* The next frame: 1, 0 at the end, or -EIO with a message in err for a
 * damaged file. The frame's data is valid until the next call. t_mono_ns
 * is -1 (a recorded capture has only its wall-clock stamps). */
int cap_file_next(struct cap_file *f, struct cap_frame *out, char *err, size_t errlen);

void cap_file_close(struct cap_file *f);

#endif
