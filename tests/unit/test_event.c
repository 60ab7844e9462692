/* test_event.c: the event envelope, gap-free seq, monotonic t_us, run.end last. */
#include "unit.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "event.h"

struct capture {
	json_t *events; /* array of the events seen, in order */
};

static int capture_sink(void *arg, const json_t *ev, const char *line)
{
	struct capture *c = arg;
	json_t *parsed = json_loads(line, 0, NULL);

	/* The serialised line must say the same as the object. */
	assert_true(json_equal(parsed, ev));
	json_array_append_new(c->events, parsed);
	return 0;
}

static void envelope_fields_come_first(void **state)
{
	struct ev_emitter em;
	struct capture c = {json_array()};
	const char *key;
	json_t *ev, *v;
	int i = 0;
	static const char *const order[] = {"v", "run", "seq", "t_us", "lab", "type", "x"};

	assert_int_equal(ev_init(&em, "0123456789abcdef", "tcp-echo"), 0);
	ev_add_sink(&em, capture_sink, &c);
	assert_int_equal(ev_emit(&em, "run.start", json_pack("{s:i}", "x", 1)), 0);
	ev = json_array_get(c.events, 0);
	json_object_foreach(ev, key, v) {
		assert_string_equal(key, order[i]);
		i++;
	}
	assert_int_equal(json_integer_value(json_object_get(ev, "v")), 1);
	assert_string_equal(json_string_value(json_object_get(ev, "run")), "0123456789abcdef");
	assert_string_equal(json_string_value(json_object_get(ev, "lab")), "tcp-echo");
	ev_cleanup(&em);
	json_decref(c.events);
}

static void fields_cannot_override_envelope(void **state)
{
	struct ev_emitter em;
	struct capture c = {json_array()};
	json_t *ev;

	ev_init(&em, NULL, "x");
	ev_add_sink(&em, capture_sink, &c);
	ev_emit(&em, "note", json_pack("{s:i, s:s}", "seq", 99, "type", "evil"));
	ev = json_array_get(c.events, 0);
	assert_int_equal(json_integer_value(json_object_get(ev, "seq")), 0);
	assert_string_equal(json_string_value(json_object_get(ev, "type")), "note");
	ev_cleanup(&em);
	json_decref(c.events);
}

struct worker {
	struct ev_emitter *em;
};

static void *emit_many(void *arg)
{
	struct worker *w = arg;
	int i;

	for (i = 0; i < 500; i++)
		ev_emit(w->em, "syscall", json_pack("{s:i}", "i", i));
	return NULL;
}

static void seq_is_gap_free_and_time_monotonic_across_threads(void **state)
{
	struct ev_emitter em;
	struct capture c = {json_array()};
	struct worker w = {&em};
	pthread_t t[4];
	size_t i;
	json_int_t last_t = -1;

	ev_init(&em, NULL, "x");
	ev_add_sink(&em, capture_sink, &c);
	for (i = 0; i < 4; i++)
		pthread_create(&t[i], NULL, emit_many, &w);
	for (i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	assert_int_equal(json_array_size(c.events), 2000);
	for (i = 0; i < json_array_size(c.events); i++) {
		json_t *ev = json_array_get(c.events, i);
		json_int_t t_us = json_integer_value(json_object_get(ev, "t_us"));
		assert_int_equal(json_integer_value(json_object_get(ev, "seq")), i);
		assert_true(t_us >= last_t);
		last_t = t_us;
	}
	ev_cleanup(&em);
	json_decref(c.events);
}

static void nothing_after_run_end(void **state)
{
	struct ev_emitter em;
	struct capture c = {json_array()};

	ev_init(&em, NULL, "x");
	ev_add_sink(&em, capture_sink, &c);
	assert_int_equal(ev_emit(&em, "run.end", NULL), 0);
	assert_true(ev_emit(&em, "note", NULL) < 0);
	assert_int_equal(json_array_size(c.events), 1);
	ev_cleanup(&em);
	json_decref(c.events);
}

static void run_ids_are_validated(void **state)
{
	char id[EV_RUN_ID_LEN + 1];
	struct ev_emitter em;

	assert_int_equal(ev_random_id(id), 0);
	assert_true(ev_valid_run_id(id));
	assert_false(ev_valid_run_id("0123456789ABCDEF"));
	assert_false(ev_valid_run_id("0123456789abcde"));
	assert_false(ev_valid_run_id("0123456789abcdef0"));
	assert_false(ev_valid_run_id("../../etc/passwd"));
	assert_true(ev_init(&em, "nope", "x") < 0);
}

static int failing_sink(void *arg, const json_t *ev, const char *line)
{
	int *calls = arg;
	(*calls)++;
	return -1;
}

static void failing_sink_is_removed(void **state)
{
	struct ev_emitter em;
	int calls = 0;

	ev_init(&em, NULL, "x");
	ev_add_sink(&em, failing_sink, &calls);
	assert_int_equal(ev_emit(&em, "a", NULL), 0);
	assert_int_equal(ev_emit(&em, "b", NULL), 1);
	assert_int_equal(calls, 1);
	assert_int_equal(em.sink_failed, 1);
	ev_cleanup(&em);
}


/* ---- the writer thread (ev_start) ---- */

/* A binary record for the tests: formatted as {"i":N,"s":"..."}. */
struct test_rec {
	int i;
	char s[16];
};

static void test_rec_format(struct ev_buf *b, const void *p)
{
	const struct test_rec *r = p;

	ev_buf_key(b, "i");
	ev_buf_int(b, r->i);
	ev_buf_key(b, "s");
	ev_buf_str(b, r->s);
}

static void record(struct ev_emitter *em, int i)
{
	struct ev_rec tok;
	struct test_rec *r = ev_rec_begin(em, "rec", test_rec_format, ev_clock_ns(), &tok);

	if (!r)
		return;
	r->i = i;
	snprintf(r->s, sizeof r->s, "r\"%d", i);
	ev_rec_commit(em, &tok);
}

static void *emit_and_record(void *arg)
{
	struct worker *w = arg;
	int i;

	for (i = 0; i < 500; i++) {
		if (i % 2)
			ev_emit(w->em, "syscall", json_pack("{s:i}", "i", i));
		else
			record(w->em, i);
	}
	return NULL;
}

static void check_order(json_t *events, size_t want)
{
	json_int_t last_t = -1;
	size_t i;

	assert_int_equal(json_array_size(events), want);
	for (i = 0; i < json_array_size(events); i++) {
		json_t *ev = json_array_get(events, i);
		json_int_t t_us = json_integer_value(json_object_get(ev, "t_us"));
		assert_int_equal(json_integer_value(json_object_get(ev, "seq")), i);
		assert_true(t_us >= last_t);
		last_t = t_us;
	}
}

/* Four threads mixing serialised events and binary records through a ring of
 * eight slots (so they wait for the writer): every event arrives, once, in
 * seq order, with t_us never going back. */
static void writer_thread_keeps_seq_order_and_loses_nothing(void **state)
{
	struct ev_emitter em;
	struct capture c = {json_array()};
	struct worker w = {&em};
	struct ev_trace_stats st;
	pthread_t t[4];
	size_t i;

	ev_init(&em, NULL, "x");
	ev_add_sink(&em, capture_sink, &c);
	assert_int_equal(ev_start(&em, 8), 0);
	assert_int_equal(ev_add_sink(&em, capture_sink, &c), -EBUSY);
	for (i = 0; i < 4; i++)
		pthread_create(&t[i], NULL, emit_and_record, &w);
	for (i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	ev_trace_stats(&em, &st);
	assert_int_equal(st.events, 2000);
	assert_int_equal(st.calls, 1000);
	assert_int_equal(st.threaded, 1);
	assert_true(st.call_ns_median <= st.call_ns_p99);
	ev_stop(&em);
	check_order(c.events, 2000);
	for (i = 0; i < 2000; i++) {
		json_t *ev = json_array_get(c.events, i);
		if (!strcmp(json_string_value(json_object_get(ev, "type")), "rec")) {
			char want[16];
			snprintf(want, sizeof want, "r\"%d",
				 (int)json_integer_value(json_object_get(ev, "i")));
			assert_string_equal(json_string_value(json_object_get(ev, "s")), want);
		}
	}
	ev_cleanup(&em);
	json_decref(c.events);
}

/* A sink that holds the writer on the first event until the test lets go. */
struct gate {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int open;
	int seen;
};

static int gate_sink(void *arg, const json_t *ev, const char *line)
{
	struct gate *g = arg;

	pthread_mutex_lock(&g->lock);
	g->seen++;
	while (!g->open)
		pthread_cond_wait(&g->cond, &g->lock);
	pthread_mutex_unlock(&g->lock);
	return 0;
}

static void *emit_twenty(void *arg)
{
	struct worker *w = arg;
	int i;

	for (i = 0; i < 20; i++)
		record(w->em, i);
	return NULL;
}

/* With the writer held up, a full ring makes the emitting thread wait (and
 * counts it) instead of dropping anything. */
static void full_ring_blocks_and_counts_never_drops(void **state)
{
	struct ev_emitter em;
	struct capture c = {json_array()};
	struct gate g = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};
	struct worker w = {&em};
	struct ev_trace_stats st;
	pthread_t t;
	uint64_t stalls = 0;

	ev_init(&em, NULL, "x");
	ev_add_sink(&em, gate_sink, &g);
	ev_add_sink(&em, capture_sink, &c);
	assert_int_equal(ev_start(&em, 4), 0);
	pthread_create(&t, NULL, emit_twenty, &w);
	/* The producer fills four slots and must then wait: the emitter
	 * counts the wait as it starts. */
	while (stalls == 0) {
		pthread_mutex_lock(&em.lock);
		stalls = em.stalls;
		pthread_mutex_unlock(&em.lock);
		if (!stalls)
			sched_yield();
	}
	pthread_mutex_lock(&g.lock);
	g.open = 1;
	pthread_cond_broadcast(&g.cond);
	pthread_mutex_unlock(&g.lock);
	pthread_join(t, NULL);
	ev_trace_stats(&em, &st);
	assert_true(st.stalls >= 1);
	assert_int_equal(st.events, 20);
	ev_stop(&em);
	check_order(c.events, 20);
	assert_int_equal(g.seen, 20);
	ev_cleanup(&em);
	json_decref(c.events);
}

static char *read_all(int fd)
{
	size_t len = 0, cap = 65536;
	char *buf = malloc(cap);
	ssize_t n;

	while ((n = read(fd, buf + len, cap - len - 1)) > 0) {
		len += (size_t)n;
		if (cap - len < 4096)
			buf = realloc(buf, cap *= 2);
	}
	buf[len] = '\0';
	return buf;
}

/* The same events give the same lines through the writer's batches as
 * synchronously, apart from the times. */
static void batched_lines_match_synchronous_ones(void **state)
{
	int p[2][2], mode, i;
	char *out[2];

	for (mode = 0; mode < 2; mode++) {
		struct ev_emitter em;

		assert_int_equal(pipe(p[mode]), 0);
		ev_init(&em, "0123456789abcdef", "lab");
		ev_add_fd_sink(&em, p[mode][1], NULL, NULL);
		if (mode)
			assert_int_equal(ev_start(&em, 16), 0);
		for (i = 0; i < 200; i++) {
			if (i % 2)
				record(&em, i);
			else
				ev_emit(&em, "note", json_pack("{s:s, s:i, s:{s:b}}", "text",
							     "caf\xc3\xa9 \"q\" \\ \n", "i", i,
							     "o", "b", 1));
		}
		ev_emit(&em, "run.end", NULL);
		ev_cleanup(&em);
		close(p[mode][1]);
		out[mode] = read_all(p[mode][0]);
		close(p[mode][0]);
	}
	/* Every time becomes 0, then compare byte for byte. */
	for (mode = 0; mode < 2; mode++) {
		char *q = out[mode];
		while ((q = strstr(q, "\"t_us\":"))) {
			char *digits = q + 7, *e = digits;
			while (*e >= '0' && *e <= '9')
				e++;
			*digits = '0';
			memmove(digits + 1, e, strlen(e) + 1);
			q = digits;
		}
	}
	assert_string_equal(out[0], out[1]);
	assert_non_null(strstr(out[0], "\"text\":\"caf\\u00E9 \\\"q\\\" \\\\ \\n\""));
	assert_non_null(strstr(out[0], "\"seq\":200,"));
	free(out[0]);
	free(out[1]);
}

static int errors_seen;

static void count_error(void *arg, int err)
{
	assert_int_equal(err, EPIPE);
	errors_seen++;
}

/* A reader that goes away is reported once and the run goes on. */
static void failed_fd_sink_is_reported_once_and_removed(void **state)
{
	struct ev_emitter em;
	struct capture c = {json_array()};
	int p[2], i;

	signal(SIGPIPE, SIG_IGN);
	assert_int_equal(pipe(p), 0);
	close(p[0]);
	ev_init(&em, NULL, "x");
	ev_add_fd_sink(&em, p[1], count_error, NULL);
	ev_add_sink(&em, capture_sink, &c);
	assert_int_equal(ev_start(&em, 0), 0);
	for (i = 0; i < 10; i++) {
		ev_emit(&em, "a", NULL);
		ev_flush(&em);
	}
	ev_stop(&em);
	assert_int_equal(errors_seen, 1);
	assert_int_equal(em.sink_failed, 1);
	check_order(c.events, 10);
	close(p[1]);
	ev_cleanup(&em);
	json_decref(c.events);
}

static void nothing_after_run_end_with_a_writer(void **state)
{
	struct ev_emitter em;
	struct capture c = {json_array()};

	ev_init(&em, NULL, "x");
	ev_add_sink(&em, capture_sink, &c);
	assert_int_equal(ev_start(&em, 0), 0);
	assert_int_equal(ev_emit(&em, "run.end", NULL), 0);
	assert_true(ev_emit(&em, "note", NULL) < 0);
	record(&em, 1);
	ev_stop(&em);
	assert_int_equal(json_array_size(c.events), 1);
	ev_cleanup(&em);
	json_decref(c.events);
}

/* ev_buf_str escapes every ASCII character as jansson's JSON_ENSURE_ASCII
 * does (the syscall events used to be built by jansson). */
static void strings_are_escaped_like_jansson(void **state)
{
	char s[128];
	struct ev_buf b = {0};
	json_t *j;
	char *want;
	int c;

	for (c = 1; c < 128; c++)
		s[c - 1] = (char)c;
	s[127] = '\0';
	ev_buf_str(&b, s);
	j = json_string(s);
	want = json_dumps(j, JSON_ENCODE_ANY | JSON_ENSURE_ASCII);
	assert_string_equal(b.p, want);
	free(want);
	json_decref(j);
	b.len = 0;
	ev_buf_str(&b, "\xe4\xbd\xa0\xe5\xa5\xbd");
	assert_string_equal(b.p, "\"\\u4F60\\u597D\"");
	b.len = 0;
	ev_buf_int(&b, -9223372036854775807LL - 1);
	assert_string_equal(b.p, "-9223372036854775808");
	ev_buf_free(&b);
}

/* Deferred records (the observer's merge): held out of the stream until the
 * consumer emits them, each with its own time, in the order it chooses; the
 * ones still held when deferring stops are emitted then, in order. */
struct taken {
	uint64_t t_ns[8];
	unsigned char rec[8][EV_REC_MAX];
	int n;
};

static void take_one(void *arg, uint64_t t_ns, const char *type, ev_rec_format_fn fmt,
		     const void *rec, int64_t cost_ns)
{
	struct taken *t = arg;

	assert_string_equal(type, "rec");
	assert_ptr_equal(fmt, test_rec_format);
	assert_true(cost_ns >= 0);
	assert_true(t->n < 8);
	t->t_ns[t->n] = t_ns;
	memcpy(t->rec[t->n++], rec, EV_REC_MAX);
}

static void deferred_records_wait_for_their_consumer(void **state)
{
	struct capture c = {json_array()};
	struct ev_emitter em;
	struct taken t = {0};
	int64_t hold;
	int kick = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK), i;

	assert_true(kick >= 0);
	assert_int_equal(ev_init(&em, NULL, "test"), 0);
	ev_add_sink(&em, capture_sink, &c);
	assert_int_equal(ev_defer_start(&em, kick), -EINVAL); /* needs a writer thread */
	assert_int_equal(ev_start(&em, 0), 0);
	assert_int_equal(ev_defer_start(&em, kick), 0);
	assert_int_equal(ev_defer_start(&em, kick), -EALREADY);
	record(&em, 1);
	record(&em, 2);
	ev_emit(&em, "segment", json_pack("{s:i}", "n", 1));
	ev_flush(&em);
	/* Only the segment is out: the records are held. */
	assert_int_equal(json_array_size(c.events), 1);
	assert_int_equal(ev_defer_take(&em, take_one, &t, &hold), 2);
	assert_true(hold == INT64_MAX);
	assert_true(t.t_ns[0] <= t.t_ns[1]);
	record(&em, 3);
	/* The consumer emits the second record first, then stops deferring:
	 * the third comes out then, and records go straight out again. */
	assert_int_equal(ev_rec_emit(&em, "rec", test_rec_format, t.t_ns[1], t.rec[1], 5), 0);
	ev_defer_stop(&em, NULL, NULL);
	record(&em, 4);
	ev_stop(&em);
	check_order(c.events, 4);
	{
		static const int want[] = {-1, 2, 3, 4};
		for (i = 1; i < 4; i++) {
			json_t *ev = json_array_get(c.events, (size_t)i);
			assert_string_equal(json_string_value(json_object_get(ev, "type")), "rec");
			assert_int_equal(json_integer_value(json_object_get(ev, "i")), want[i]);
		}
	}
	ev_cleanup(&em);
	json_decref(c.events);
	close(kick);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(envelope_fields_come_first),
		cmocka_unit_test(fields_cannot_override_envelope),
		cmocka_unit_test(seq_is_gap_free_and_time_monotonic_across_threads),
		cmocka_unit_test(nothing_after_run_end),
		cmocka_unit_test(run_ids_are_validated),
		cmocka_unit_test(failing_sink_is_removed),
		cmocka_unit_test(writer_thread_keeps_seq_order_and_loses_nothing),
		cmocka_unit_test(full_ring_blocks_and_counts_never_drops),
		cmocka_unit_test(batched_lines_match_synchronous_ones),
		cmocka_unit_test(failed_fd_sink_is_reported_once_and_removed),
		cmocka_unit_test(nothing_after_run_end_with_a_writer),
		cmocka_unit_test(strings_are_escaped_like_jansson),
		cmocka_unit_test(deferred_records_wait_for_their_consumer),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
