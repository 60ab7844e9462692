/* test_event.c: the event envelope, gap-free seq, monotonic t_us, run.end last. */
#include "unit.h"

#include <pthread.h>
#include <string.h>

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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(envelope_fields_come_first),
		cmocka_unit_test(fields_cannot_override_envelope),
		cmocka_unit_test(seq_is_gap_free_and_time_monotonic_across_threads),
		cmocka_unit_test(nothing_after_run_end),
		cmocka_unit_test(run_ids_are_validated),
		cmocka_unit_test(failing_sink_is_removed),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
