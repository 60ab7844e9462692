/* wire.h: the impairment wire: a seeded per-frame scheduler (pure) and the relay thread between two frame ports (packet sockets on veth ends, or TAP devices). */
#ifndef SOCKLAB_NET_WIRE_H
#define SOCKLAB_NET_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "event.h"

/*
 * Two directions: WIRE_C2S carries frames the client's kernel sent (read from
 * the client's TAP, written to the server's), WIRE_S2C the other way.
 *
 * What happens to one frame is decided when it enters the wire:
 *  - Only IPv4 frames are impaired (dropped, duplicated, reordered, jittered):
 *    the random decision for the k-th IPv4 frame of a direction is a pure
 *    function of (seed, direction, k), so the same seed and the same traffic
 *    give exactly the same drops, whatever else crosses the wire or how fast.
 *    ARP and other frames still take the delay and the rate limit, but are
 *    never lost: a lost probe is then always the probe itself, never a
 *    one-second address-resolution stall.
 *  - One draw per frame picks at most one of drop (loss_pct), duplicate
 *    (dup_pct) or reorder (reorder_pct), so each happens with exactly its
 *    probability and their sum is at most 100.
 *  - The rate limit serialises frames at rate_kbit (a frame of L bytes takes
 *    L*8000/rate_kbit us on the line); a frame that would wait more than
 *    WIRE_QUEUE_MAX_US, or find WIRE_MAX_FRAMES frames queued, is dropped
 *    (drop-tail, reported as action "queue_drop").
 *  - Then the frame travels delay_ms plus a uniform jitter in
 *    [-jitter_ms, +jitter_ms]. Jitter never reorders: a frame leaves no
 *    earlier than the one before it in its direction. Reordering is only ever
 *    the reorder action.
 *  - A duplicate is a second copy delivered right after the original.
 *  - A reordered frame is held back and delivered right after the next frame
 *    of its direction that entered the wire after it, or WIRE_HOLD_MAX_US
 *    after it was due if no such frame comes (a hold timeout).
 */

enum { WIRE_C2S = 0, WIRE_S2C = 1 };

#define WIRE_MAX_FRAMES 2048         /* frames queued per direction at most */
#define WIRE_QUEUE_MAX_US 1000000    /* rate-limit backlog at most 1 s */
#define WIRE_HOLD_MAX_US 1000000     /* a reordered frame waits at most 1 s */
#define WIRE_FRAME_MAX 2048          /* bytes; MTU 1500 frames are 1514 */

enum wire_action {
	WIRE_PASS,       /* forwarded at once */
	WIRE_DELAY,      /* forwarded after a delay (delay, jitter or rate limit) */
	WIRE_DROP,       /* dropped by the loss setting */
	WIRE_DUP,        /* forwarded twice */
	WIRE_REORDER,    /* held back to go after a later frame */
	WIRE_QUEUE_DROP, /* dropped because the rate limiter's queue was full */
};

/* "pass", "delay", "drop", "dup", "reorder", "queue_drop". */
const char *wire_action_name(enum wire_action a);

/* One direction's impairment. All zero: the frame passes untouched. */
struct wire_dir_cfg {
	int delay_ms, jitter_ms, loss_pct, dup_pct, reorder_pct, rate_kbit;
};

/* A 64-bit pseudo-random value, a pure function of its arguments (splitmix64
 * finaliser rounds). purpose separates independent draws for one frame. */
uint64_t wire_rand(uint64_t seed, int dir, int purpose, uint64_t index);

/* The random part of a decision for the index-th (1-based) IPv4 frame of
 * direction dir: the action (PASS, DROP, DUP or REORDER) and the jitter. */
struct wire_draw {
	enum wire_action action;
	int64_t jitter_us;
};
struct wire_draw wire_draw(const struct wire_dir_cfg *c, uint64_t seed, int dir, uint64_t index);

/* What the wire decided for one frame. */
struct wire_verdict {
	int dir;
	uint64_t frame;     /* 1-based count of frames in this direction */
	uint64_t ip_index;  /* 1-based count of IPv4 frames, 0 for other frames */
	enum wire_action action;
	int64_t arrival_us;
	int64_t delay_us;   /* planned time in the wire (queue + line + delay + jitter) */
	int64_t queue_us;   /* of which waiting behind earlier frames (rate limit) */
	int64_t jitter_us;
	size_t len;
};

struct wire_dir_counters {
	uint64_t frames, bytes, ip_frames;
	uint64_t passed, delayed, dropped, duplicated, reordered, queue_drops;
	uint64_t delivered, hold_timeouts;
};

/* ---- the scheduler (pure: no I/O, no clock; times are given) ---- */

struct wire_core;

/* cfg[2] per direction; frames copied in are freed by the core. NULL on no memory. */
struct wire_core *wire_core_create(const struct wire_dir_cfg cfg[2], uint64_t seed);
void wire_core_destroy(struct wire_core *c);

/* A frame of len bytes entered the wire in direction dir at now_us; ipv4 says
 * whether it may be impaired. Decides, queues its copies, fills v. Returns 0,
 * or -ENOMEM (the frame is then counted as a queue drop). */
int wire_core_push(struct wire_core *c, int dir, int64_t now_us, const uint8_t *frame,
		   size_t len, int ipv4, struct wire_verdict *v);

/* The earliest time something is due, or -1 when nothing is queued. */
int64_t wire_core_next_due(const struct wire_core *c);

/* One frame due at now_us, in delivery order. Returns 1 and fills the out
 * parameters (data stays valid until the next call), or 0 when nothing is due. */
struct wire_out {
	int dir;
	uint64_t frame;
	const uint8_t *data;
	size_t len;
	int copy;          /* 1 for a duplicate's second copy */
	int hold_timeout;  /* a reordered frame released by its hold timeout */
};
int wire_core_pop(struct wire_core *c, int64_t now_us, struct wire_out *out);

/* Frames still queued in a direction. */
size_t wire_core_queued(const struct wire_core *c, int dir);

const struct wire_dir_counters *wire_core_counters(const struct wire_core *c, int dir);

/* ---- the relay thread ---- */

/* Called by the relay thread for every frame that enters the wire (after the
 * decision, before any event about it). May return an object of extra fields
 * for the frame's event (stolen), or NULL. Must not block. */
typedef json_t *(*wire_hook_fn)(void *arg, const struct wire_verdict *v, const uint8_t *frame,
				size_t len);

#define WIRE_EVENTS_MAX 20000 /* wire events per run; later ones are only counted */

struct wire;

/* A relay between tap_c (the client's port: a packet socket bound to its veth end,
 * or its TAP fd; one frame per read and write) and tap_s (the server's). The
 * fds stay owned by the caller. trace: an event for every frame, including
 * those that pass untouched. */
struct wire *wire_create(int tap_c, int tap_s, const struct wire_dir_cfg cfg[2], uint64_t seed,
			 int trace, char *err, size_t errlen);

/* Start the relay thread; its events go to em. 0 or negative. */
int wire_start(struct wire *w, struct ev_emitter *em, char *err, size_t errlen);

/* Install the frame hook (any thread). */
void wire_set_hook(struct wire *w, wire_hook_fn fn, void *arg);

/* Stop and join the relay thread (frames still queued are discarded and
 * counted). Returns a new object with per-direction counters. */
json_t *wire_stop(struct wire *w);

void wire_destroy(struct wire *w);

#endif
