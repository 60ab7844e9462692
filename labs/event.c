/* event.c: the event emitter (envelope, sequencing, sinks, and the writer thread with its ring). */
#include "event.h"
#include "i18n.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/uio.h>
#include <unistd.h>

/*
 * The writer thread's ring. An emitting thread takes the lock only to assign
 * the next seq and time and to check for room (a few tens of nanoseconds),
 * then fills its slot without the lock and publishes it by storing seq + 1 in
 * the slot's ready word. The writer reads slots strictly in seq order, so the
 * output is in seq order however the threads interleave; a slot reserved but
 * not yet published holds back the ones after it for a moment.
 *
 * The writer wakes every TICK_MIN_US while events arrive (backing off to
 * TICK_MAX_US when idle), or at once when the ring is half full, someone
 * flushes or stops. It does not wake per event: a wake-up per event would put
 * a futex call and a context switch on the lab's two cores in every round
 * trip, which is the cost this design removes.
 */
#define DEFAULT_SLOTS 4096
#define BATCH_MAX (64 * 1024)
#define TICK_MIN_US 1000
#define TICK_MAX_US 20000
#define SPACE_WAIT_MS 10

struct ev_slot {
	_Atomic uint64_t ready;   /* seq + 1 once the emitting thread has filled the slot */
	int64_t t_us;
	int64_t cost_ns;          /* a binary record's cost on its thread; -1 for others */
	ev_rec_format_fn fmt;     /* NULL: fields holds serialised JSON */
	char *fields;             /* malloc'd "{...}", or NULL for no fields */
	char *type_heap;          /* a type too long for type[] (malloc'd) */
	char type[40];
	_Alignas(16) unsigned char rec[EV_REC_MAX];
};

struct ev_ring {
	struct ev_slot *slots;
	size_t n; /* a power of two */
	pthread_t thread;
	pthread_cond_t wake;  /* em->lock: the writer sleeps here between batches */
	pthread_cond_t space; /* em->lock: emitting threads wait here while the ring is full */
	pthread_cond_t done;  /* em->lock: ev_flush waits here */
	uint64_t consumed_seen; /* em->lock: a recent value of consumed (it only grows) */
	uint64_t written;       /* em->lock: events handed to every sink */
	int flush_waiters;      /* em->lock */
	int kick;               /* em->lock: wake now, do not wait for the tick */
	int stop;               /* em->lock */
	_Atomic int space_waiters; /* changed under em->lock, read by the writer */
	/* Written by the writer only, on a line of its own. */
	_Alignas(64) _Atomic uint64_t consumed; /* events the writer is done with */
	/* Writer thread only. */
	struct ev_buf batch, line;
	uint64_t calls, call_ns_sum, call_ns_max, batches;
	uint32_t hist[EV_HIST_BUCKETS + 1];
	uint64_t cpu_ns; /* the writer thread's CPU time so far */
};

/* Binary records held for an observer (ev_defer_start). A thread reserves a
 * position under the emitter's lock, fills the slot without it and publishes
 * it by storing pos + 1 in ready; the one consumer takes slots in order. */
#define DEFER_SLOTS 4096
#define DEFER_WAIT_MS 2

struct ev_dslot {
	_Atomic uint64_t ready; /* pos + 1 once the slot is filled */
	uint64_t t_ns;          /* set under em->lock when reserved */
	int64_t cost_ns;
	ev_rec_format_fn fmt;
	const char *type;       /* a string literal (sock.c: "syscall") */
	_Alignas(16) unsigned char rec[EV_REC_MAX];
};

struct ev_defer {
	struct ev_dslot *slots;
	size_t n;               /* a power of two */
	uint64_t head;          /* em->lock: the next position to reserve */
	_Atomic uint64_t tail;  /* the consumer's: the next position to take */
	int kick_fd;
	int kicked;             /* em->lock: kick_fd written since the last take */
};

/* ---- text buffers ---- */

static int buf_grow(struct ev_buf *b, size_t need)
{
	size_t c;
	char *p;

	if (b->len + need + 1 <= b->cap)
		return 0;
	c = b->cap ? b->cap : 1024;
	while (c < b->len + need + 1)
		c *= 2;
	p = realloc(b->p, c);
	if (!p) {
		b->oom = 1;
		return -1;
	}
	b->p = p;
	b->cap = c;
	return 0;
}

void ev_buf_free(struct ev_buf *b)
{
	free(b->p);
	memset(b, 0, sizeof *b);
}

void ev_buf_put(struct ev_buf *b, const char *s, size_t n)
{
	if (buf_grow(b, n) < 0)
		return;
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

void ev_buf_puts(struct ev_buf *b, const char *s)
{
	ev_buf_put(b, s, strlen(s));
}

void ev_buf_int(struct ev_buf *b, long long v)
{
	char tmp[24], *e = tmp + sizeof tmp, *p = e;
	unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;

	do {
		*--p = (char)('0' + u % 10);
		u /= 10;
	} while (u);
	if (v < 0)
		*--p = '-';
	ev_buf_put(b, p, (size_t)(e - p));
}

/* Text that is not plain ASCII: let jansson escape it, as it always did. */
static void put_str_jansson(struct ev_buf *b, const char *s)
{
	json_t *j = json_string(s);
	char *d = j ? json_dumps(j, JSON_ENCODE_ANY | JSON_ENSURE_ASCII) : NULL;

	ev_buf_puts(b, d ? d : "\"\"");
	free(d);
	json_decref(j);
}

void ev_buf_str(struct ev_buf *b, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	const unsigned char *u = (const unsigned char *)s;
	size_t i, n = strlen(s);
	char *o;

	for (i = 0; i < n; i++) {
		if (u[i] >= 0x80) {
			put_str_jansson(b, s);
			return;
		}
	}
	if (buf_grow(b, 2 + 6 * n) < 0)
		return;
	o = b->p + b->len;
	*o++ = '"';
	for (i = 0; i < n; i++) {
		unsigned char c = u[i];
		switch (c) {
		case '"': *o++ = '\\'; *o++ = '"'; break;
		case '\\': *o++ = '\\'; *o++ = '\\'; break;
		case '\b': *o++ = '\\'; *o++ = 'b'; break;
		case '\f': *o++ = '\\'; *o++ = 'f'; break;
		case '\n': *o++ = '\\'; *o++ = 'n'; break;
		case '\r': *o++ = '\\'; *o++ = 'r'; break;
		case '\t': *o++ = '\\'; *o++ = 't'; break;
		default:
			if (c < 0x20) {
				*o++ = '\\';
				*o++ = 'u';
				*o++ = '0';
				*o++ = '0';
				*o++ = hex[c >> 4];
				*o++ = hex[c & 15];
			} else {
				*o++ = (char)c;
			}
		}
	}
	*o++ = '"';
	*o = '\0';
	b->len = (size_t)(o - b->p);
}

void ev_buf_key(struct ev_buf *b, const char *key)
{
	size_t n = strlen(key);
	char *o;

	if (buf_grow(b, n + 4) < 0)
		return;
	o = b->p + b->len;
	if (b->len && o[-1] != '{')
		*o++ = ',';
	*o++ = '"';
	memcpy(o, key, n);
	o += n;
	*o++ = '"';
	*o++ = ':';
	*o = '\0';
	b->len = (size_t)(o - b->p);
}

/* ---- run ids and clocks ---- */

int ev_valid_run_id(const char *s)
{
	size_t i;

	if (!s)
		return 0;
	for (i = 0; i < EV_RUN_ID_LEN; i++) {
		char c = s[i];
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			return 0;
	}
	return s[EV_RUN_ID_LEN] == '\0';
}

int ev_random_id(char out[EV_RUN_ID_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char raw[EV_RUN_ID_LEN / 2];
	size_t got = 0;
	size_t i;

	while (got < sizeof raw) {
		ssize_t n = getrandom(raw + got, sizeof raw - got, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		got += (size_t)n;
	}
	for (i = 0; i < sizeof raw; i++) {
		out[2 * i] = hex[raw[i] >> 4];
		out[2 * i + 1] = hex[raw[i] & 15];
	}
	out[EV_RUN_ID_LEN] = '\0';
	return 0;
}

uint64_t ev_clock_ns(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
}

int64_t ev_ns_to_us(const struct ev_emitter *em, uint64_t ns)
{
	return ((int64_t)ns - (int64_t)em->t0_ns) / 1000;
}

int64_t ev_now_us(struct ev_emitter *em)
{
	return ev_ns_to_us(em, ev_clock_ns());
}

int ev_init(struct ev_emitter *em, const char *run_id, const char *lab)
{
	memset(em, 0, sizeof *em);
	if (run_id) {
		if (!ev_valid_run_id(run_id))
			return -EINVAL;
		memcpy(em->run_id, run_id, EV_RUN_ID_LEN + 1);
	} else if (ev_random_id(em->run_id) < 0) {
		return -EIO;
	}
	snprintf(em->lab, sizeof em->lab, "%s", lab ? lab : "");
	/* The envelope's fixed parts, escaped once. */
	{
		struct ev_buf b = {0};
		ev_buf_puts(&b, "{\"v\":");
		ev_buf_int(&b, EV_VERSION);
		ev_buf_puts(&b, ",\"run\":");
		ev_buf_str(&b, em->run_id);
		ev_buf_puts(&b, ",\"seq\":");
		snprintf(em->env_head, sizeof em->env_head, "%s", b.p ? b.p : "");
		b.len = 0;
		ev_buf_puts(&b, ",\"lab\":");
		ev_buf_str(&b, em->lab);
		ev_buf_puts(&b, ",\"type\":");
		snprintf(em->env_lab, sizeof em->env_lab, "%s", b.p ? b.p : "");
		ev_buf_free(&b);
	}
	clock_gettime(CLOCK_MONOTONIC, &em->t0);
	em->t0_ns = (uint64_t)em->t0.tv_sec * 1000000000u + (uint64_t)em->t0.tv_nsec;
	em->last_ns = em->t0_ns;
	pthread_mutex_init(&em->lock, NULL);
	return 0;
}

void ev_cleanup(struct ev_emitter *em)
{
	ev_stop(em);
	pthread_mutex_destroy(&em->lock);
	ev_buf_free(&em->line);
}

static int add_sink(struct ev_emitter *em, const struct ev_sink *s)
{
	int rc = -ENOSPC;

	pthread_mutex_lock(&em->lock);
	if (em->ring) {
		rc = -EBUSY; /* the writer thread reads the list without the lock */
	} else if (em->n_sinks < EV_MAX_SINKS) {
		em->sinks[em->n_sinks++] = *s;
		rc = 0;
	}
	pthread_mutex_unlock(&em->lock);
	return rc;
}

int ev_add_sink(struct ev_emitter *em, ev_sink_fn fn, void *arg)
{
	struct ev_sink s = {.fn = fn, .arg = arg, .fd = -1};

	return add_sink(em, &s);
}

int ev_add_fd_sink(struct ev_emitter *em, int fd, ev_fd_error_fn on_error, void *arg)
{
	struct ev_sink s = {.fn = NULL, .arg = arg, .fd = fd, .on_error = on_error};

	return add_sink(em, &s);
}

/* ---- building and delivering lines ---- */

/* The whole line of one event into b (which is reset). */
static void format_line(struct ev_buf *b, const struct ev_emitter *em, uint64_t seq, int64_t t_us,
			const char *type, const char *fields, ev_rec_format_fn fmt, const void *rec)
{
	b->len = 0;
	b->oom = 0;
	ev_buf_puts(b, em->env_head);
	ev_buf_int(b, (long long)seq);
	ev_buf_put(b, ",\"t_us\":", 8);
	ev_buf_int(b, t_us);
	ev_buf_puts(b, em->env_lab);
	ev_buf_str(b, type);
	if (fmt) {
		fmt(b, rec);
	} else if (fields && fields[0] == '{' && fields[1] != '}') {
		/* The fields' own serialisation, spliced after the envelope:
		 * byte for byte what dumping the merged object gives. */
		ev_buf_put(b, ",", 1);
		ev_buf_puts(b, fields + 1);
		return;
	}
	ev_buf_put(b, "}", 1);
}

/* One write per line: a reader sees whole lines. */
static int write_line(int fd, const char *line, size_t len)
{
	struct iovec iov[2] = {{(void *)line, len}, {"\n", 1}};
	ssize_t n;

	do {
		n = writev(fd, iov, 2);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	if ((size_t)n == len + 1)
		return 0;
	if ((size_t)n < len && ev_write_all(fd, line + n, len - (size_t)n) < 0)
		return -EIO;
	return ev_write_all(fd, "\n", 1);
}

static void remove_sink(struct ev_emitter *em, int i, int err)
{
	struct ev_sink s = em->sinks[i];

	memmove(&em->sinks[i], &em->sinks[i + 1], (size_t)(em->n_sinks - i - 1) * sizeof s);
	em->n_sinks--;
	em->sink_failed = 1;
	if (!s.fn && s.on_error)
		s.on_error(s.arg, err > 0 ? err : EIO);
}

/* Hand one line to every sink: object sinks now, fd sinks now (batch NULL)
 * or appended to the writer's batch. */
static void deliver(struct ev_emitter *em, const struct ev_buf *line, struct ev_buf *batch)
{
	json_t *obj = NULL;
	int parsed = 0, fds = 0, i;

	for (i = 0; i < em->n_sinks;) {
		struct ev_sink *s = &em->sinks[i];
		int rc = 0;

		if (!s->fn && batch) {
			fds = 1;
		} else if (!s->fn) {
			rc = write_line(s->fd, line->p, line->len);
		} else {
			if (!parsed) {
				obj = json_loadb(line->p, line->len, 0, NULL);
				parsed = 1;
			}
			if (obj)
				rc = s->fn(s->arg, obj, line->p);
		}
		if (rc < 0) {
			remove_sink(em, i, -rc);
			continue;
		}
		i++;
	}
	json_decref(obj);
	if (fds) {
		ev_buf_put(batch, line->p, line->len);
		ev_buf_put(batch, "\n", 1);
	}
}

static void account(uint64_t *calls, uint64_t *sum, uint64_t *max, uint32_t *hist, int64_t ns)
{
	uint64_t v = ns > 0 ? (uint64_t)ns : 0;
	uint64_t b = v / 10;

	(*calls)++;
	*sum += v;
	if (v > *max)
		*max = v;
	hist[b < EV_HIST_BUCKETS ? b : EV_HIST_BUCKETS]++;
}

/* ---- the writer thread ---- */

static void flush_batch(struct ev_emitter *em, struct ev_ring *r)
{
	int i;

	if (!r->batch.len)
		return;
	for (i = 0; i < em->n_sinks;) {
		int rc;

		if (em->sinks[i].fn) {
			i++;
			continue;
		}
		rc = ev_write_all(em->sinks[i].fd, r->batch.p, r->batch.len);
		if (rc < 0) {
			remove_sink(em, i, -rc);
			continue;
		}
		i++;
	}
	r->batch.len = 0;
	r->batches++;
}

/* Format and deliver every published slot, in seq order. Returns how many. */
static uint64_t drain(struct ev_emitter *em, struct ev_ring *r)
{
	uint64_t seq = atomic_load_explicit(&r->consumed, memory_order_relaxed), n = 0;

	for (;;) {
		struct ev_slot *s = &r->slots[seq & (r->n - 1)];

		if (atomic_load_explicit(&s->ready, memory_order_acquire) != seq + 1)
			break;
		format_line(&r->line, em, seq, s->t_us, s->type_heap ? s->type_heap : s->type,
			    s->fields, s->fmt, s->rec);
		if (r->line.oom) {
			/* Never a gap in seq: say the event was lost, and why. */
			format_line(&r->line, em, seq, s->t_us, "error",
				    "{\"code\":\"internal\",\"message\":\"an event could not be "
				    "serialised: out of memory\"}",
				    NULL, NULL);
		}
		if (!r->line.oom)
			deliver(em, &r->line, &r->batch);
		if (s->cost_ns >= 0)
			account(&r->calls, &r->call_ns_sum, &r->call_ns_max, r->hist, s->cost_ns);
		free(s->fields);
		s->fields = NULL;
		free(s->type_heap);
		s->type_heap = NULL;
		seq++;
		n++;
		atomic_store_explicit(&r->consumed, seq, memory_order_seq_cst);
		if (atomic_load_explicit(&r->space_waiters, memory_order_seq_cst)) {
			pthread_mutex_lock(&em->lock);
			pthread_cond_broadcast(&r->space);
			pthread_mutex_unlock(&em->lock);
		}
		if (r->batch.len >= BATCH_MAX)
			flush_batch(em, r);
	}
	return n;
}

/* Lock held: add the writer's counts to the emitter's. */
static void merge_stats(struct ev_emitter *em, struct ev_ring *r)
{
	int i;

	if (!r->calls && !r->batches && em->writer_cpu_ns == r->cpu_ns)
		return;
	em->calls += r->calls;
	em->call_ns_sum += r->call_ns_sum;
	if (r->call_ns_max > em->call_ns_max)
		em->call_ns_max = r->call_ns_max;
	em->batches += r->batches;
	em->writer_cpu_ns = r->cpu_ns;
	for (i = 0; r->calls && i <= EV_HIST_BUCKETS; i++) {
		em->call_hist[i] += r->hist[i];
		r->hist[i] = 0;
	}
	r->calls = r->call_ns_sum = r->call_ns_max = r->batches = 0;
}

static void deadline_in(struct timespec *ts, int64_t us)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += us / 1000000;
	ts->tv_nsec += (us % 1000000) * 1000;
	if (ts->tv_nsec >= 1000000000) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000;
	}
}

static void *writer_main(void *arg)
{
	struct ev_emitter *em = arg;
	struct ev_ring *r = em->ring;
	int64_t tick = TICK_MIN_US;

	for (;;) {
		uint64_t n = drain(em, r);

		flush_batch(em, r);
		if (n) {
			struct timespec cpu;
			clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu);
			r->cpu_ns = (uint64_t)cpu.tv_sec * 1000000000u + (uint64_t)cpu.tv_nsec;
		}
		pthread_mutex_lock(&em->lock);
		r->written = atomic_load(&r->consumed);
		merge_stats(em, r);
		if (r->flush_waiters)
			pthread_cond_broadcast(&r->done);
		if (r->stop && r->written == em->seq) {
			pthread_mutex_unlock(&em->lock);
			break;
		}
		if (!r->kick) {
			struct timespec ts;
			deadline_in(&ts, tick);
			pthread_cond_timedwait(&r->wake, &em->lock, &ts);
		}
		r->kick = 0;
		pthread_mutex_unlock(&em->lock);
		tick = n ? TICK_MIN_US : (tick * 2 > TICK_MAX_US ? TICK_MAX_US : tick * 2);
	}
	return NULL;
}

static int cond_init_mono(pthread_cond_t *c)
{
	pthread_condattr_t a;
	int rc;

	pthread_condattr_init(&a);
	pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
	rc = pthread_cond_init(c, &a);
	pthread_condattr_destroy(&a);
	return rc;
}

/* The ring's slots, zeroed and already in memory: a thread that records a
 * call after sleeping (a udp-ping probe every 10 ms) finds its slot's page
 * mapped, and on huge pages where the kernel has them (a page walk per slot
 * is costly in a virtual machine). */
#define RING_ALIGN (2u << 20)

static void *ring_alloc(size_t size)
{
	void *p = NULL;

	if (posix_memalign(&p, RING_ALIGN, size) != 0)
		return NULL;
	madvise(p, size, MADV_HUGEPAGE);
	memset(p, 0, size);
	return p;
}

static void ring_free(struct ev_ring *r)
{
	size_t i;

	for (i = 0; i < r->n; i++) {
		free(r->slots[i].fields);
		free(r->slots[i].type_heap);
	}
	free(r->slots);
	ev_buf_free(&r->batch);
	ev_buf_free(&r->line);
	pthread_cond_destroy(&r->wake);
	pthread_cond_destroy(&r->space);
	pthread_cond_destroy(&r->done);
	free(r);
}

int ev_start(struct ev_emitter *em, size_t slots)
{
	struct ev_ring *r;
	sigset_t all, old;
	int rc;

	if (!slots)
		slots = DEFAULT_SLOTS;
	if (slots < 2 || (slots & (slots - 1)))
		return -EINVAL;
	r = calloc(1, sizeof *r);
	if (!r)
		return -ENOMEM;
	r->slots = ring_alloc(slots * sizeof *r->slots);
	if (!r->slots) {
		free(r);
		return -ENOMEM;
	}
	r->n = slots;
	/* Parse the translation tables now, not inside the first note a lab
	 * thread emits (a few milliseconds on this machine). */
	free(i18n_text(I18N_DEFAULT, "run.status.ok", NULL));
	cond_init_mono(&r->wake);
	cond_init_mono(&r->space);
	cond_init_mono(&r->done);
	pthread_mutex_lock(&em->lock);
	if (em->ring) {
		pthread_mutex_unlock(&em->lock);
		ring_free(r);
		return -EALREADY;
	}
	/* Events emitted so far were delivered synchronously. */
	atomic_store(&r->consumed, em->seq);
	r->consumed_seen = em->seq;
	r->written = em->seq;
	em->ring = r;
	/* The writer takes no signal: they stay with the threads that wait on
	 * the run's cancel fd. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&r->thread, NULL, writer_main, em);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		em->ring = NULL;
		pthread_mutex_unlock(&em->lock);
		ring_free(r);
		return -rc;
	}
	pthread_mutex_unlock(&em->lock);
	return 0;
}

void ev_flush(struct ev_emitter *em)
{
	struct ev_ring *r;
	uint64_t target;

	pthread_mutex_lock(&em->lock);
	r = em->ring;
	if (r) {
		target = em->seq;
		r->flush_waiters++;
		r->kick = 1;
		pthread_cond_signal(&r->wake);
		while (r->written < target)
			pthread_cond_wait(&r->done, &em->lock);
		r->flush_waiters--;
	}
	pthread_mutex_unlock(&em->lock);
}

void ev_stop(struct ev_emitter *em)
{
	struct ev_ring *r;

	ev_defer_stop(em, NULL, NULL); /* an observer that did not stop it */

	pthread_mutex_lock(&em->lock);
	r = em->ring;
	if (r) {
		r->stop = 1;
		r->kick = 1;
		pthread_cond_signal(&r->wake);
	}
	pthread_mutex_unlock(&em->lock);
	if (!r)
		return;
	pthread_join(r->thread, NULL);
	pthread_mutex_lock(&em->lock);
	merge_stats(em, r);
	em->ring = NULL;
	pthread_mutex_unlock(&em->lock);
	ring_free(r);
}

static uint64_t percentile(const struct ev_emitter *em, double q)
{
	uint64_t want = (uint64_t)((double)em->calls * q + 0.999999), seen = 0;
	int i;

	if (!want)
		want = 1;
	for (i = 0; i < EV_HIST_BUCKETS; i++) {
		seen += em->call_hist[i];
		if (seen >= want)
			return (uint64_t)(i + 1) * 10; /* the bucket's upper end */
	}
	return em->call_ns_max;
}

void ev_trace_stats(struct ev_emitter *em, struct ev_trace_stats *out)
{
	ev_flush(em);
	memset(out, 0, sizeof *out);
	pthread_mutex_lock(&em->lock);
	out->events = em->seq;
	out->calls = em->calls;
	if (em->calls) {
		out->call_ns_median = percentile(em, 0.5);
		out->call_ns_p99 = percentile(em, 0.99);
		out->call_ns_max = em->call_ns_max;
		out->call_ns_mean = em->call_ns_sum / em->calls;
	}
	out->stalls = em->stalls;
	out->stall_us = em->stall_ns / 1000;
	out->batches = em->batches;
	out->writer_cpu_us = em->writer_cpu_ns / 1000;
	out->threaded = em->ring != NULL;
	pthread_mutex_unlock(&em->lock);
}

/* ---- emitting ---- */

/* Lock held, a ring running: room for one more event, the event's seq and
 * time. Waits (counted) while the ring is full. NULL when the run ended
 * meanwhile. */
static struct ev_slot *reserve(struct ev_emitter *em, uint64_t t_ns, uint64_t *seq, int64_t *t_us,
			       uint64_t *stalled_ns)
{
	struct ev_ring *r = em->ring;
	uint64_t waited_from = 0;

	if (em->seq - r->consumed_seen >= r->n / 2) {
		r->consumed_seen = atomic_load(&r->consumed);
		if (em->seq - r->consumed_seen >= r->n / 2 && !r->kick) {
			r->kick = 1;
			pthread_cond_signal(&r->wake);
		}
		while (em->seq - r->consumed_seen >= r->n) {
			struct timespec ts;

			if (!waited_from) {
				/* Counted as the wait starts, so a stalled thread is
				 * visible while it waits. */
				waited_from = ev_clock_ns();
				em->stalls++;
			}
			atomic_fetch_add(&r->space_waiters, 1);
			r->consumed_seen = atomic_load(&r->consumed);
			if (em->seq - r->consumed_seen >= r->n) {
				r->kick = 1;
				pthread_cond_signal(&r->wake);
				deadline_in(&ts, SPACE_WAIT_MS * 1000);
				pthread_cond_timedwait(&r->space, &em->lock, &ts);
			}
			atomic_fetch_sub(&r->space_waiters, 1);
			r->consumed_seen = atomic_load(&r->consumed);
			if (em->ended || !em->ring)
				return NULL;
		}
		if (waited_from) {
			uint64_t now = ev_clock_ns();
			em->stall_ns += now - waited_from;
			*stalled_ns = now - waited_from;
			/* The event happens once there is room for it. */
			if (t_ns < now)
				t_ns = now;
		}
	}
	if (t_ns < em->last_ns)
		t_ns = em->last_ns;
	em->last_ns = t_ns;
	*seq = em->seq++;
	*t_us = ev_ns_to_us(em, t_ns);
	return &r->slots[*seq & (r->n - 1)];
}

static void slot_set_type(struct ev_slot *s, const char *type)
{
	size_t n = strlen(type);

	if (n < sizeof s->type) {
		memcpy(s->type, type, n + 1);
		s->type_heap = NULL;
	} else {
		s->type[0] = '\0';
		s->type_heap = strdup(type);
		if (!s->type_heap)
			memcpy(s->type, "?", 2);
	}
}

/* Lock held, synchronous: the next seq and time. */
static uint64_t sync_time(struct ev_emitter *em, uint64_t t_ns, int64_t *t_us)
{
	if (t_ns < em->last_ns)
		t_ns = em->last_ns;
	*t_us = ev_ns_to_us(em, t_ns);
	return t_ns;
}

int64_t ev_emit(struct ev_emitter *em, const char *type, json_t *fields)
{
	static const char *const envelope[] = {"v", "run", "seq", "t_us", "lab", "type"};
	struct ev_slot *slot;
	char *s = NULL;
	uint64_t seq, stalled = 0;
	int64_t t_us;
	size_t i;

	if (fields && !json_is_object(fields)) {
		json_decref(fields);
		return -EINVAL;
	}
	if (fields) {
		/* Fields never override the envelope. */
		for (i = 0; i < sizeof envelope / sizeof envelope[0]; i++) {
			if (json_object_get(fields, envelope[i])) {
				json_t *copy = json_copy(fields);
				size_t k;
				json_decref(fields);
				fields = copy;
				for (k = 0; fields && k < sizeof envelope / sizeof envelope[0]; k++)
					json_object_del(fields, envelope[k]);
				break;
			}
		}
		s = fields ? json_dumps(fields, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII)
			   : NULL;
		json_decref(fields);
		if (!s)
			return -ENOMEM;
	}
	pthread_mutex_lock(&em->lock);
	if (em->ended) {
		pthread_mutex_unlock(&em->lock);
		free(s);
		return -1;
	}
	if (!em->ring) {
		uint64_t t_ns = sync_time(em, ev_clock_ns(), &t_us);
		int64_t rc = -ENOMEM;

		format_line(&em->line, em, em->seq, t_us, type, s, NULL, NULL);
		if (!em->line.oom) {
			deliver(em, &em->line, NULL);
			em->last_ns = t_ns;
			rc = (int64_t)em->seq++;
			if (strcmp(type, "run.end") == 0)
				em->ended = 1;
		}
		pthread_mutex_unlock(&em->lock);
		free(s);
		return rc;
	}
	slot = reserve(em, ev_clock_ns(), &seq, &t_us, &stalled);
	if (!slot) {
		pthread_mutex_unlock(&em->lock);
		free(s);
		return -1;
	}
	if (strcmp(type, "run.end") == 0)
		em->ended = 1;
	pthread_mutex_unlock(&em->lock);
	slot->t_us = t_us;
	slot->cost_ns = -1;
	slot->fmt = NULL;
	slot->fields = s;
	slot_set_type(slot, type);
	atomic_store_explicit(&slot->ready, seq + 1, memory_order_release);
	return (int64_t)seq;
}

/* Lock held, deferring: a slot in the deferred ring for a record made at
 * t_ns. Waits (counted as a stall) while the ring is full. */
static void *defer_begin(struct ev_emitter *em, const char *type, ev_rec_format_fn fmt,
			 uint64_t t_ns, struct ev_rec *rec)
{
	struct ev_defer *d = em->defer;
	struct ev_dslot *slot;
	uint64_t waited_from = 0, one = 1;

	rec->stall_ns = 0;
	while (d->head - atomic_load(&d->tail) >= d->n) {
		/* Full: the observer is behind. Wake it and wait for room. */
		if (!waited_from) {
			waited_from = ev_clock_ns();
			em->stalls++;
		}
		if (write(d->kick_fd, &one, sizeof one) < 0) {
			/* an eventfd counter this small does not overflow */
		}
		pthread_mutex_unlock(&em->lock);
		usleep(DEFER_WAIT_MS * 1000);
		pthread_mutex_lock(&em->lock);
		if (em->ended || em->defer != d)
			return NULL; /* stopped meanwhile: the caller records it directly */
	}
	if (waited_from) {
		rec->stall_ns = ev_clock_ns() - waited_from;
		em->stall_ns += rec->stall_ns;
	}
	if (!d->kicked && d->head - atomic_load(&d->tail) >= d->n / 2) {
		d->kicked = 1;
		if (write(d->kick_fd, &one, sizeof one) < 0) {
			/* as above */
		}
	}
	/* The record's time is read here, under the lock, not taken from the
	 * caller: so any record stamped before the moment the observer looks
	 * (ev_defer_take, under the same lock) is already in the ring, taken or
	 * holding the observer back, even if its thread was descheduled between
	 * the call's return and this. */
	t_ns = ev_clock_ns();
	slot = &d->slots[d->head & (d->n - 1)];
	slot->t_ns = t_ns;
	slot->fmt = fmt;
	slot->type = type;
	rec->seq = d->head++;
	rec->slot = NULL;
	rec->dslot = slot;
	rec->t_ns = t_ns;
	return slot->rec;
}

static void *rec_begin(struct ev_emitter *em, const char *type, ev_rec_format_fn fmt,
		       uint64_t t_ns, struct ev_rec *rec, int may_defer)
{
	struct ev_slot *slot;
	uint64_t seq;
	int64_t t_us;

	rec->dslot = NULL;
	pthread_mutex_lock(&em->lock);
	if (em->ended) {
		pthread_mutex_unlock(&em->lock);
		return NULL;
	}
	if (may_defer && em->defer) {
		void *p = defer_begin(em, type, fmt, t_ns, rec);

		if (p || em->ended) {
			pthread_mutex_unlock(&em->lock);
			return p;
		}
		/* Deferring stopped while this thread waited: record it directly. */
	}
	if (!em->ring) {
		/* Synchronous: keep the lock until the commit. */
		rec->slot = NULL;
		rec->t_ns = t_ns;
		rec->seq = em->seq;
		rec->type = type;
		rec->fmt = fmt;
		em->last_ns = sync_time(em, t_ns, &rec->t_us);
		return em->scratch;
	}
	rec->stall_ns = 0;
	slot = reserve(em, t_ns, &seq, &t_us, &rec->stall_ns);
	pthread_mutex_unlock(&em->lock);
	if (!slot)
		return NULL;
	slot->t_us = t_us;
	slot->fmt = fmt;
	slot->fields = NULL;
	slot_set_type(slot, type);
	rec->slot = slot;
	rec->seq = seq;
	rec->t_ns = t_ns;
	return slot->rec;
}

void *ev_rec_begin(struct ev_emitter *em, const char *type, ev_rec_format_fn fmt, uint64_t t_ns,
		   struct ev_rec *rec)
{
	return rec_begin(em, type, fmt, t_ns, rec, 1);
}

void ev_rec_commit(struct ev_emitter *em, struct ev_rec *rec)
{
	/* A wait for room is counted as a stall, not as the record's cost. */
	int64_t cost = (int64_t)(ev_clock_ns() - rec->t_ns -
				 (rec->slot || rec->dslot ? rec->stall_ns : 0));
	struct ev_slot *slot = rec->slot;

	if (rec->dslot) {
		struct ev_dslot *d = rec->dslot;

		d->cost_ns = cost;
		atomic_store_explicit(&d->ready, rec->seq + 1, memory_order_release);
		return;
	}
	if (slot) {
		slot->cost_ns = cost;
		atomic_store_explicit(&slot->ready, rec->seq + 1, memory_order_release);
		return;
	}
	/* Synchronous: the lock is held since ev_rec_begin. */
	format_line(&em->line, em, rec->seq, rec->t_us, rec->type, NULL, rec->fmt, em->scratch);
	if (!em->line.oom)
		deliver(em, &em->line, NULL);
	em->seq++;
	account(&em->calls, &em->call_ns_sum, &em->call_ns_max, em->call_hist, cost);
	pthread_mutex_unlock(&em->lock);
}

int64_t ev_error(struct ev_emitter *em, const char *code, const char *param, const char *msg)
{
	json_t *f = json_pack("{s:s, s:s}", "code", code, "message", msg);

	if (f && param)
		json_object_set_new(f, "param", json_string(param));
	return ev_emit(em, "error", f);
}

int64_t ev_note(struct ev_emitter *em, const char *key, json_t *params, const char *text)
{
	char id[128];
	char *english = NULL;
	json_t *f;

	/* The English text comes from the translation table (message id
	 * "note.KEY"), so an event stays self-contained; a lab that still
	 * passes its own text (not yet moved to the tables) keeps it. */
	if (snprintf(id, sizeof id, "note.%s", key) < (int)sizeof id)
		english = i18n_text("en", id, params);
	f = json_pack("{s:s, s:s}", "key", key, "text", english ? english : text ? text : key);
	free(english);
	if (!f) {
		json_decref(params);
		return -ENOMEM;
	}
	json_object_set_new(f, "params", params ? params : json_object());
	return ev_emit(em, "note", f);
}

int ev_write_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

int ev_sink_fd(void *arg, const json_t *event, const char *line)
{
	(void)event;
	return write_line((int)(intptr_t)arg, line, strlen(line));
}

/* ---- deferred records ---- */

int ev_defer_start(struct ev_emitter *em, int kick_fd)
{
	struct ev_defer *d;
	int rc = 0;

	d = calloc(1, sizeof *d);
	if (!d)
		return -ENOMEM;
	d->n = DEFER_SLOTS;
	d->kick_fd = kick_fd;
	d->slots = ring_alloc(d->n * sizeof *d->slots);
	if (!d->slots) {
		free(d);
		return -ENOMEM;
	}
	pthread_mutex_lock(&em->lock);
	if (!em->ring || em->ended)
		rc = -EINVAL;
	else if (em->defer)
		rc = -EALREADY;
	else
		em->defer = d;
	pthread_mutex_unlock(&em->lock);
	if (rc < 0) {
		free(d->slots);
		free(d);
	}
	return rc;
}

/* Hand every committed record of d from tail on to fn (or emit it when fn
 * is NULL); stop at the first one still being written. */
static size_t defer_drain(struct ev_emitter *em, struct ev_defer *d, uint64_t head,
			  ev_defer_fn fn, void *arg, int64_t *hold_ns)
{
	uint64_t pos = atomic_load(&d->tail);
	size_t n = 0;

	if (hold_ns)
		*hold_ns = INT64_MAX;
	for (; pos < head; pos++) {
		struct ev_dslot *s = &d->slots[pos & (d->n - 1)];

		if (atomic_load_explicit(&s->ready, memory_order_acquire) != pos + 1) {
			if (hold_ns)
				*hold_ns = (int64_t)s->t_ns;
			break;
		}
		if (fn)
			fn(arg, s->t_ns, s->type, s->fmt, s->rec, s->cost_ns);
		else
			ev_rec_emit(em, s->type, s->fmt, s->t_ns, s->rec, s->cost_ns);
		n++;
	}
	atomic_store(&d->tail, pos);
	return n;
}

size_t ev_defer_take(struct ev_emitter *em, ev_defer_fn fn, void *arg, int64_t *hold_ns)
{
	struct ev_defer *d;
	uint64_t head;

	pthread_mutex_lock(&em->lock);
	d = em->defer;
	head = d ? d->head : 0;
	if (d)
		d->kicked = 0;
	pthread_mutex_unlock(&em->lock);
	if (!d) {
		if (hold_ns)
			*hold_ns = INT64_MAX;
		return 0;
	}
	return defer_drain(em, d, head, fn, arg, hold_ns);
}

void ev_defer_stop(struct ev_emitter *em, ev_defer_fn fn, void *arg)
{
	struct ev_defer *d;
	uint64_t head;
	int64_t hold;

	pthread_mutex_lock(&em->lock);
	d = em->defer;
	em->defer = NULL; /* records made from now on go to the stream directly */
	head = d ? d->head : 0;
	pthread_mutex_unlock(&em->lock);
	if (!d)
		return;
	/* Records reserved before the switch are finished within moments. */
	for (;;) {
		defer_drain(em, d, head, fn, arg, &hold);
		if (atomic_load(&d->tail) >= head)
			break;
		sched_yield();
	}
	free(d->slots);
	free(d);
}

int ev_rec_emit(struct ev_emitter *em, const char *type, ev_rec_format_fn fmt, uint64_t t_ns,
		const void *rec, int64_t cost_ns)
{
	struct ev_rec tok;
	void *p = rec_begin(em, type, fmt, t_ns, &tok, 0);

	if (!p)
		return -1;
	memcpy(p, rec, EV_REC_MAX);
	if (tok.slot) {
		struct ev_slot *slot = tok.slot;

		slot->cost_ns = cost_ns;
		atomic_store_explicit(&slot->ready, tok.seq + 1, memory_order_release);
		return 0;
	}
	/* Synchronous (the writer thread is gone): the lock is held. */
	format_line(&em->line, em, tok.seq, tok.t_us, tok.type, NULL, tok.fmt, em->scratch);
	if (!em->line.oom)
		deliver(em, &em->line, NULL);
	em->seq++;
	if (cost_ns >= 0)
		account(&em->calls, &em->call_ns_sum, &em->call_ns_max, em->call_hist, cost_ns);
	pthread_mutex_unlock(&em->lock);
	return 0;
}
