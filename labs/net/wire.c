/* wire.c: the impairment wire: seeded per-frame decisions, a delivery queue, and the TAP relay thread. */
#include "net/wire.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "net/frame.h"

#define WIRE_HELD_MAX 64 /* reordered frames held at once per direction */

static const char *const action_names[] = {
	[WIRE_PASS] = "pass",       [WIRE_DELAY] = "delay",     [WIRE_DROP] = "drop",
	[WIRE_DUP] = "dup",         [WIRE_REORDER] = "reorder", [WIRE_QUEUE_DROP] = "queue_drop",
};

const char *wire_action_name(enum wire_action a)
{
	return (unsigned)a < sizeof action_names / sizeof action_names[0] ? action_names[a] : "?";
}

/* ---- randomness ---- */

/* The splitmix64 output function (a bijection with good avalanche). */
static uint64_t mix64(uint64_t z)
{
	z += 0x9e3779b97f4a7c15ull;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

uint64_t wire_rand(uint64_t seed, int dir, int purpose, uint64_t index)
{
	uint64_t stream = mix64(mix64(seed) ^ ((uint64_t)(unsigned)dir << 8 | (unsigned)purpose));

	return mix64(stream ^ mix64(index));
}

struct wire_draw wire_draw(const struct wire_dir_cfg *c, uint64_t seed, int dir, uint64_t index)
{
	struct wire_draw d = {WIRE_PASS, 0};
	/* 2^32 mod 100 leaves a bias below 1e-8: negligible. */
	unsigned bucket = (unsigned)((wire_rand(seed, dir, 0, index) >> 32) % 100);

	if (bucket < (unsigned)c->loss_pct)
		d.action = WIRE_DROP;
	else if (bucket < (unsigned)(c->loss_pct + c->dup_pct))
		d.action = WIRE_DUP;
	else if (bucket < (unsigned)(c->loss_pct + c->dup_pct + c->reorder_pct))
		d.action = WIRE_REORDER;
	if (c->jitter_ms > 0) {
		uint64_t span = (uint64_t)c->jitter_ms * 2000 + 1;
		d.jitter_us = (int64_t)(wire_rand(seed, dir, 1, index) % span) -
			      (int64_t)c->jitter_ms * 1000;
	}
	return d;
}

/* ---- the scheduler ---- */

struct wq_item {
	int64_t due;
	uint64_t order;  /* insertion order: ties in due keep it */
	uint64_t arrival; /* when it entered the wire, as a count of pushes */
	int dir;
	uint64_t frame;
	int copy, hold_timeout;
	size_t len;
	uint8_t data[];
};

struct wire_core {
	struct wire_dir_cfg cfg[2];
	uint64_t seed;
	struct wire_dir_counters ctr[2];
	int64_t link_free[2]; /* when the rate-limited line is next free */
	int64_t last_due[2];  /* frames leave in order: none before this */
	uint64_t order, pushes;
	size_t queued[2];

	struct wq_item **heap; /* min-heap on (due, order) */
	size_t n_heap, cap_heap;
	struct wq_item *held[2][WIRE_HELD_MAX]; /* reordered frames, in arrival order */
	size_t n_held[2];
	struct wq_item *ready[2 * WIRE_HELD_MAX]; /* released, to go next (FIFO) */
	size_t ready_head, n_ready;
	struct wq_item *last_out; /* returned by the last pop; freed by the next */
};

struct wire_core *wire_core_create(const struct wire_dir_cfg cfg[2], uint64_t seed)
{
	struct wire_core *c = calloc(1, sizeof *c);

	if (!c)
		return NULL;
	memcpy(c->cfg, cfg, sizeof c->cfg);
	c->seed = seed;
	return c;
}

void wire_core_destroy(struct wire_core *c)
{
	size_t i, d;

	if (!c)
		return;
	for (i = 0; i < c->n_heap; i++)
		free(c->heap[i]);
	for (d = 0; d < 2; d++)
		for (i = 0; i < c->n_held[d]; i++)
			free(c->held[d][i]);
	for (i = 0; i < c->n_ready; i++)
		free(c->ready[(c->ready_head + i) % (2 * WIRE_HELD_MAX)]);
	free(c->last_out);
	free(c->heap);
	free(c);
}

static int item_before(const struct wq_item *a, const struct wq_item *b)
{
	return a->due < b->due || (a->due == b->due && a->order < b->order);
}

static int heap_push(struct wire_core *c, struct wq_item *it)
{
	size_t i;

	if (c->n_heap == c->cap_heap) {
		size_t cap = c->cap_heap ? c->cap_heap * 2 : 64;
		struct wq_item **h = realloc(c->heap, cap * sizeof *h);
		if (!h)
			return -ENOMEM;
		c->heap = h;
		c->cap_heap = cap;
	}
	i = c->n_heap++;
	while (i > 0 && item_before(it, c->heap[(i - 1) / 2])) {
		c->heap[i] = c->heap[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	c->heap[i] = it;
	return 0;
}

static struct wq_item *heap_pop(struct wire_core *c)
{
	struct wq_item *top = c->heap[0], *last;
	size_t i = 0;

	last = c->heap[--c->n_heap];
	while (2 * i + 1 < c->n_heap) {
		size_t k = 2 * i + 1;
		if (k + 1 < c->n_heap && item_before(c->heap[k + 1], c->heap[k]))
			k++;
		if (!item_before(c->heap[k], last))
			break;
		c->heap[i] = c->heap[k];
		i = k;
	}
	if (c->n_heap > 0)
		c->heap[i] = last;
	return top;
}

static struct wq_item *item_new(struct wire_core *c, int dir, const uint8_t *frame, size_t len,
				uint64_t frame_no, int64_t due)
{
	struct wq_item *it = malloc(sizeof *it + len);

	if (!it)
		return NULL;
	memset(it, 0, sizeof *it);
	it->due = due;
	it->order = c->order++;
	it->arrival = c->pushes;
	it->dir = dir;
	it->frame = frame_no;
	it->len = len;
	memcpy(it->data, frame, len);
	return it;
}

int wire_core_push(struct wire_core *c, int dir, int64_t now_us, const uint8_t *frame,
		   size_t len, int ipv4, struct wire_verdict *v)
{
	const struct wire_dir_cfg *cfg = &c->cfg[dir];
	struct wire_dir_counters *ctr = &c->ctr[dir];
	struct wire_draw d = {WIRE_PASS, 0};
	struct wq_item *it = NULL, *copy = NULL;
	int64_t start, tx = 0, due;
	size_t need;

	c->pushes++;
	memset(v, 0, sizeof *v);
	ctr->frames++;
	ctr->bytes += len;
	v->dir = dir;
	v->frame = ctr->frames;
	v->arrival_us = now_us;
	v->len = len;
	if (ipv4) {
		v->ip_index = ++ctr->ip_frames;
		d = wire_draw(cfg, c->seed, dir, v->ip_index);
	}
	v->jitter_us = d.jitter_us;
	if (d.action == WIRE_DROP) {
		v->action = WIRE_DROP;
		ctr->dropped++;
		return 0;
	}
	/* The line: one frame at a time at the set rate. */
	start = now_us;
	if (cfg->rate_kbit > 0) {
		if (c->link_free[dir] > start)
			start = c->link_free[dir];
		tx = ((int64_t)len * 8000 + cfg->rate_kbit - 1) / cfg->rate_kbit;
	}
	v->queue_us = start - now_us;
	need = d.action == WIRE_DUP ? 2 : 1;
	if (v->queue_us > WIRE_QUEUE_MAX_US || c->queued[dir] + need > WIRE_MAX_FRAMES) {
		v->action = WIRE_QUEUE_DROP;
		v->queue_us = 0;
		ctr->queue_drops++;
		return 0;
	}
	if (cfg->rate_kbit > 0)
		c->link_free[dir] = start + tx;
	due = start + tx + (int64_t)cfg->delay_ms * 1000 + d.jitter_us;
	if (due < now_us)
		due = now_us;
	if (d.action == WIRE_REORDER && c->n_held[dir] == WIRE_HELD_MAX)
		d.action = WIRE_PASS; /* nothing more can be held: it just goes */
	if (d.action != WIRE_REORDER) {
		if (due < c->last_due[dir])
			due = c->last_due[dir];
		c->last_due[dir] = due;
	}
	v->delay_us = due - now_us;
	it = item_new(c, dir, frame, len, v->frame, due);
	if (d.action == WIRE_DUP) {
		copy = item_new(c, dir, frame, len, v->frame, due);
		if (copy)
			copy->copy = 1;
	}
	if (!it || (d.action == WIRE_DUP && !copy))
		goto nomem;
	if (d.action == WIRE_REORDER) {
		c->held[dir][c->n_held[dir]++] = it;
		v->action = WIRE_REORDER;
		ctr->reordered++;
	} else {
		if (heap_push(c, it) < 0)
			goto nomem;
		if (copy && heap_push(c, copy) < 0) {
			/* The original is queued; only the copy is lost. */
			free(copy);
			copy = NULL;
			d.action = WIRE_PASS;
		}
		if (d.action == WIRE_DUP) {
			v->action = WIRE_DUP;
			ctr->duplicated++;
		} else if (v->delay_us > 0) {
			v->action = WIRE_DELAY;
			ctr->delayed++;
		} else {
			v->action = WIRE_PASS;
			ctr->passed++;
		}
	}
	c->queued[dir] += copy ? 2 : 1;
	return 0;
nomem:
	free(it);
	free(copy);
	v->action = WIRE_QUEUE_DROP;
	v->delay_us = v->queue_us = 0;
	ctr->queue_drops++;
	return -ENOMEM;
}

int64_t wire_core_next_due(const struct wire_core *c)
{
	int64_t next = -1;
	size_t d, i;

	if (c->n_ready)
		return 0;
	if (c->n_heap)
		next = c->heap[0]->due;
	for (d = 0; d < 2; d++)
		for (i = 0; i < c->n_held[d]; i++) {
			int64_t exp = c->held[d][i]->due + WIRE_HOLD_MAX_US;
			if (next < 0 || exp < next)
				next = exp;
		}
	return next;
}

static void ready_add(struct wire_core *c, struct wq_item *it)
{
	c->ready[(c->ready_head + c->n_ready++) % (2 * WIRE_HELD_MAX)] = it;
}

/* Move held frames of dir that satisfy release (arrived before `before`, or
 * timed out at now) to the ready queue, keeping their order. */
static void release_held(struct wire_core *c, int dir, uint64_t before, int64_t now)
{
	size_t i, k = 0;

	for (i = 0; i < c->n_held[dir]; i++) {
		struct wq_item *it = c->held[dir][i];
		int timed_out = now >= 0 && now >= it->due + WIRE_HOLD_MAX_US;
		if (it->arrival < before || timed_out) {
			it->hold_timeout = timed_out && it->arrival >= before;
			if (it->hold_timeout)
				c->ctr[dir].hold_timeouts++;
			ready_add(c, it);
		} else {
			c->held[dir][k++] = it;
		}
	}
	c->n_held[dir] = k;
}

int wire_core_pop(struct wire_core *c, int64_t now_us, struct wire_out *out)
{
	struct wq_item *it = NULL;
	int d;

	free(c->last_out);
	c->last_out = NULL;
	if (!c->n_ready)
		for (d = 0; d < 2; d++)
			release_held(c, d, 0, now_us);
	if (c->n_ready) {
		it = c->ready[c->ready_head];
		c->ready_head = (c->ready_head + 1) % (2 * WIRE_HELD_MAX);
		c->n_ready--;
	} else if (c->n_heap && c->heap[0]->due <= now_us) {
		it = heap_pop(c);
		/* Frames held for reordering go right after this later one. */
		release_held(c, it->dir, it->arrival, -1);
	}
	if (!it)
		return 0;
	c->queued[it->dir]--;
	c->ctr[it->dir].delivered++;
	c->last_out = it;
	out->dir = it->dir;
	out->frame = it->frame;
	out->data = it->data;
	out->len = it->len;
	out->copy = it->copy;
	out->hold_timeout = it->hold_timeout;
	return 1;
}

size_t wire_core_queued(const struct wire_core *c, int dir)
{
	return c->queued[dir];
}

const struct wire_dir_counters *wire_core_counters(const struct wire_core *c, int dir)
{
	return &c->ctr[dir];
}

/* ---- the relay thread ---- */

struct wire {
	struct wire_core *core; /* relay thread only, once started */
	int tap[2];             /* tap[WIRE_C2S]: the client's TAP; tap[WIRE_S2C]: the server's */
	int ep, tfd, stop_fd;
	int trace;
	struct ev_emitter *em;
	pthread_t tid;
	int running;

	pthread_mutex_t lock; /* guards hook and hook_arg */
	wire_hook_fn hook;
	void *hook_arg;

	/* Relay thread only (read by wire_stop after the join). */
	uint64_t events, suppressed, write_errors, read_errors, oversize;
};

static const char *const dir_names[] = {"c2s", "s2c"};

struct wire *wire_create(int tap_c, int tap_s, const struct wire_dir_cfg cfg[2], uint64_t seed,
			 int trace, char *err, size_t errlen)
{
	struct wire *w = calloc(1, sizeof *w);
	struct epoll_event ev = {.events = EPOLLIN};
	int i;

	if (!w) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	w->tap[WIRE_C2S] = tap_c;
	w->tap[WIRE_S2C] = tap_s;
	w->trace = trace;
	w->ep = epoll_create1(EPOLL_CLOEXEC);
	w->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	w->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	w->core = wire_core_create(cfg, seed);
	pthread_mutex_init(&w->lock, NULL);
	if (w->ep < 0 || w->tfd < 0 || w->stop_fd < 0 || !w->core) {
		snprintf(err, errlen, "setting up the wire: %s", strerror(errno ? errno : ENOMEM));
		wire_destroy(w);
		return NULL;
	}
	for (i = 0; i < 2; i++) {
		ev.data.u32 = (uint32_t)i;
		if (epoll_ctl(w->ep, EPOLL_CTL_ADD, w->tap[i], &ev) < 0)
			goto fail;
	}
	ev.data.u32 = 2;
	if (epoll_ctl(w->ep, EPOLL_CTL_ADD, w->tfd, &ev) < 0)
		goto fail;
	ev.data.u32 = 3;
	if (epoll_ctl(w->ep, EPOLL_CTL_ADD, w->stop_fd, &ev) < 0)
		goto fail;
	return w;
fail:
	snprintf(err, errlen, "epoll_ctl for the wire: %s", strerror(errno));
	wire_destroy(w);
	return NULL;
}

void wire_set_hook(struct wire *w, wire_hook_fn fn, void *arg)
{
	pthread_mutex_lock(&w->lock);
	w->hook = fn;
	w->hook_arg = arg;
	pthread_mutex_unlock(&w->lock);
}

/* Relay thread: the event for one frame (when it was acted on, or always when tracing). */
static void frame_event(struct wire *w, const struct wire_verdict *v, const uint8_t *frame,
			size_t len, json_t *extra)
{
	struct frame_info fi;
	char summary[200];
	json_t *f;

	if (v->action == WIRE_PASS && !w->trace) {
		json_decref(extra);
		return;
	}
	if (w->events >= WIRE_EVENTS_MAX) {
		if (w->suppressed++ == 0)
			ev_note(w->em, "wire.events_capped", json_pack("{s:i}", "max", WIRE_EVENTS_MAX),
				NULL);
		json_decref(extra);
		return;
	}
	w->events++;
	frame_parse(frame, len, &fi);
	frame_summary(&fi, len, summary, sizeof summary);
	f = json_pack("{s:I, s:s, s:s, s:I, s:s, s:s}", "frame", (json_int_t)v->frame, "dir",
		      dir_names[v->dir], "action", wire_action_name(v->action), "len",
		      (json_int_t)len, "proto", frame_proto_name(&fi), "summary", summary);
	if (!f) {
		json_decref(extra);
		return;
	}
	if (v->action != WIRE_DROP && v->action != WIRE_QUEUE_DROP)
		json_object_set_new(f, "delay_us", json_integer(v->delay_us));
	if (v->queue_us > 0)
		json_object_set_new(f, "queue_us", json_integer(v->queue_us));
	if (v->jitter_us != 0 && v->action != WIRE_DROP)
		json_object_set_new(f, "jitter_us", json_integer(v->jitter_us));
	if (v->action == WIRE_DUP)
		json_object_set_new(f, "copies", json_integer(2));
	if (extra) {
		json_object_update(f, extra);
		json_decref(extra);
	}
	ev_emit(w->em, "wire", f);
}

/* Relay thread: read every frame waiting on one TAP (at most a batch). */
static void drain_tap(struct wire *w, int dir, uint8_t *buf, size_t cap)
{
	int i;

	for (i = 0; i < 256; i++) {
		struct wire_verdict v;
		ssize_t n = read(w->tap[dir], buf, cap);
		json_t *extra = NULL;
		wire_hook_fn hook;
		void *arg;
		int ipv4;

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				w->read_errors++;
			return;
		}
		if (n == 0)
			return;
		if ((size_t)n > WIRE_FRAME_MAX) {
			w->oversize++;
			continue;
		}
		ipv4 = n >= 14 && buf[12] == 0x08 && buf[13] == 0x00;
		wire_core_push(w->core, dir, ev_now_us(w->em), buf, (size_t)n, ipv4, &v);
		pthread_mutex_lock(&w->lock);
		hook = w->hook;
		arg = w->hook_arg;
		pthread_mutex_unlock(&w->lock);
		if (hook)
			extra = hook(arg, &v, buf, (size_t)n);
		frame_event(w, &v, buf, (size_t)n, extra);
	}
}

/* Relay thread: write every frame that is due to its destination TAP. */
static void deliver_due(struct wire *w)
{
	struct wire_out out;
	int64_t now = ev_now_us(w->em);

	while (wire_core_pop(w->core, now, &out) == 1) {
		ssize_t n;
		do {
			n = write(w->tap[1 - out.dir], out.data, out.len);
		} while (n < 0 && errno == EINTR);
		if (n != (ssize_t)out.len)
			w->write_errors++;
	}
}

static void arm_timer(struct wire *w)
{
	struct itimerspec its;
	int64_t next = wire_core_next_due(w->core), now = ev_now_us(w->em), wait;

	memset(&its, 0, sizeof its);
	if (next >= 0) {
		wait = next - now;
		if (wait < 1)
			wait = 1;
		its.it_value.tv_sec = wait / 1000000;
		its.it_value.tv_nsec = (wait % 1000000) * 1000;
	}
	timerfd_settime(w->tfd, 0, &its, NULL);
}

static void *relay_main(void *arg)
{
	struct wire *w = arg;
	uint8_t *buf = malloc(65536);

	if (!buf)
		return NULL;
	for (;;) {
		struct epoll_event evs[4];
		int n, i;
		uint64_t tick;

		deliver_due(w);
		arm_timer(w);
		n = epoll_wait(w->ep, evs, 4, -1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			break;
		for (i = 0; i < n; i++) {
			uint32_t id = evs[i].data.u32;
			if (id == 3)
				goto out;
			if (id == 2) {
				if (read(w->tfd, &tick, sizeof tick) < 0) {
					/* EAGAIN: it was re-armed since it fired. */
				}
				continue;
			}
			drain_tap(w, (int)id, buf, 65536);
		}
	}
out:
	free(buf);
	return NULL;
}

int wire_start(struct wire *w, struct ev_emitter *em, char *err, size_t errlen)
{
	int rc;

	w->em = em;
	rc = pthread_create(&w->tid, NULL, relay_main, w);
	if (rc != 0) {
		snprintf(err, errlen, "could not start the wire's relay thread: %s", strerror(rc));
		return -rc;
	}
	w->running = 1;
	return 0;
}

static json_t *dir_json(const struct wire_dir_counters *c, size_t discarded)
{
	json_t *o = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "frames",
			      (json_int_t)c->frames, "bytes", (json_int_t)c->bytes, "passed",
			      (json_int_t)c->passed, "delayed", (json_int_t)c->delayed, "dropped",
			      (json_int_t)c->dropped, "duplicated", (json_int_t)c->duplicated,
			      "reordered", (json_int_t)c->reordered, "queue_drops",
			      (json_int_t)c->queue_drops, "delivered", (json_int_t)c->delivered,
			      "hold_timeouts", (json_int_t)c->hold_timeouts);

	if (o)
		json_object_set_new(o, "discarded_at_end", json_integer((json_int_t)discarded));
	return o;
}

json_t *wire_stop(struct wire *w)
{
	uint64_t one = 1;
	json_t *o;

	if (w->running) {
		if (write(w->stop_fd, &one, sizeof one) < 0) {
			/* An eventfd write of 1 cannot fail here. */
		}
		pthread_join(w->tid, NULL);
		w->running = 0;
	}
	o = json_pack("{s:o, s:o, s:I, s:I}", "c2s",
		      dir_json(wire_core_counters(w->core, WIRE_C2S),
			       wire_core_queued(w->core, WIRE_C2S)),
		      "s2c",
		      dir_json(wire_core_counters(w->core, WIRE_S2C),
			       wire_core_queued(w->core, WIRE_S2C)),
		      "events", (json_int_t)w->events, "events_suppressed",
		      (json_int_t)w->suppressed);
	if (o && (w->write_errors || w->read_errors || w->oversize)) {
		json_object_set_new(o, "write_errors", json_integer((json_int_t)w->write_errors));
		json_object_set_new(o, "read_errors", json_integer((json_int_t)w->read_errors));
		json_object_set_new(o, "oversize", json_integer((json_int_t)w->oversize));
	}
	return o;
}

void wire_destroy(struct wire *w)
{
	if (!w)
		return;
	if (w->running)
		json_decref(wire_stop(w));
	if (w->ep >= 0)
		close(w->ep);
	if (w->tfd >= 0)
		close(w->tfd);
	if (w->stop_fd >= 0)
		close(w->stop_fd);
	wire_core_destroy(w->core);
	pthread_mutex_destroy(&w->lock);
	free(w);
}
