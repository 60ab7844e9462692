/* test_runs.c: the run state machine and the line splitter of server/runs.c, without processes. */
#include "unit.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "runs.h"

/* ---- state machine ---- */

static void test_normal_run(void **state)
{
	struct run_sm sm;

	(void)state;
	run_sm_init(&sm);
	assert_int_equal(sm.state, RUN_STARTING);
	assert_int_equal(run_sm_step(&sm, RUN_IN_SPAWN_OK), RUN_ACT_ARM_TIMEOUT);
	assert_int_equal(sm.state, RUN_RUNNING);
	assert_int_equal(run_sm_step(&sm, RUN_IN_END_SEEN), 0);
	assert_true(sm.end_seen);
	/* Output closes first: wait (bounded) for the exit. */
	assert_int_equal(run_sm_step(&sm, RUN_IN_EOF), RUN_ACT_ARM_KILL);
	assert_int_equal(sm.state, RUN_RUNNING);
	assert_int_equal(run_sm_step(&sm, RUN_IN_EXITED), RUN_ACT_FINISH);
	assert_int_equal(sm.state, RUN_FINISHED);
	assert_int_equal(sm.reason, RUN_R_NONE);
}

static void test_exit_before_eof(void **state)
{
	struct run_sm sm;
	unsigned a;

	(void)state;
	run_sm_init(&sm);
	run_sm_step(&sm, RUN_IN_SPAWN_OK);
	/* Reaped while its output is still in the pipe: stragglers in the
	 * process group are killed, and the pipe has a grace period. */
	a = run_sm_step(&sm, RUN_IN_EXITED);
	assert_int_equal(a, RUN_ACT_KILL | RUN_ACT_ARM_KILL);
	assert_int_equal(sm.state, RUN_RUNNING);
	/* The grace period passes with the pipe still open: close it. */
	assert_int_equal(run_sm_step(&sm, RUN_IN_KILL_TIMER), RUN_ACT_CLOSE_PIPE);
	assert_int_equal(run_sm_step(&sm, RUN_IN_EOF), RUN_ACT_FINISH);
	assert_int_equal(sm.state, RUN_FINISHED);
	/* No run.end came: the server writes status error, code run_died. */
	assert_false(sm.end_seen);
	assert_string_equal(run_sm_status(&sm), "error");
	assert_string_equal(run_sm_error_code(&sm), "run_died");
}

static void test_cancel(void **state)
{
	struct run_sm sm;

	(void)state;
	run_sm_init(&sm);
	run_sm_step(&sm, RUN_IN_SPAWN_OK);
	assert_int_equal(run_sm_step(&sm, RUN_IN_CANCEL), RUN_ACT_TERM | RUN_ACT_ARM_KILL);
	assert_int_equal(sm.state, RUN_CANCELLING);
	/* A second cancel and a timeout change nothing: the first reason sticks. */
	assert_int_equal(run_sm_step(&sm, RUN_IN_CANCEL), 0);
	assert_int_equal(run_sm_step(&sm, RUN_IN_TIMEOUT), 0);
	assert_int_equal(sm.reason, RUN_R_CANCELLED);
	/* It ignored SIGTERM: SIGKILL, and the timer again. */
	assert_int_equal(run_sm_step(&sm, RUN_IN_KILL_TIMER), RUN_ACT_KILL | RUN_ACT_ARM_KILL);
	assert_int_equal(run_sm_step(&sm, RUN_IN_EOF), RUN_ACT_ARM_KILL);
	assert_int_equal(run_sm_step(&sm, RUN_IN_EXITED), RUN_ACT_FINISH);
	assert_string_equal(run_sm_status(&sm), "cancelled");
	assert_string_equal(run_sm_error_code(&sm), "cancelled");
}

static void test_timeout(void **state)
{
	struct run_sm sm;

	(void)state;
	run_sm_init(&sm);
	run_sm_step(&sm, RUN_IN_SPAWN_OK);
	assert_int_equal(run_sm_step(&sm, RUN_IN_TIMEOUT), RUN_ACT_TERM | RUN_ACT_ARM_KILL);
	assert_int_equal(sm.state, RUN_CANCELLING);
	assert_int_equal(sm.reason, RUN_R_TIMEOUT);
	assert_int_equal(run_sm_step(&sm, RUN_IN_EXITED), RUN_ACT_KILL | RUN_ACT_ARM_KILL);
	assert_int_equal(run_sm_step(&sm, RUN_IN_EOF), RUN_ACT_FINISH);
	assert_string_equal(run_sm_status(&sm), "timeout");
	assert_string_equal(run_sm_error_code(&sm), "timeout");
}

static void test_bad_output(void **state)
{
	struct run_sm sm;

	(void)state;
	run_sm_init(&sm);
	run_sm_step(&sm, RUN_IN_SPAWN_OK);
	/* Untrusted output: SIGKILL at once, no SIGTERM grace. */
	assert_int_equal(run_sm_step(&sm, RUN_IN_BAD_OUTPUT), RUN_ACT_KILL | RUN_ACT_ARM_KILL);
	assert_int_equal(sm.reason, RUN_R_BAD_OUTPUT);
	assert_string_equal(run_sm_error_code(&sm), "bad_output");
	assert_string_equal(run_sm_status(&sm), "error");
}

static void test_data_limit(void **state)
{
	struct run_sm sm;

	(void)state;
	run_sm_init(&sm);
	run_sm_step(&sm, RUN_IN_SPAWN_OK);
	/* A valid run that says too much: stopped like a cancel (its output
	 * is trusted), recorded as truncated, not as bad output. */
	assert_int_equal(run_sm_step(&sm, RUN_IN_LIMIT), RUN_ACT_TERM | RUN_ACT_ARM_KILL);
	assert_int_equal(sm.state, RUN_CANCELLING);
	assert_string_equal(run_sm_status(&sm), "truncated");
	assert_string_equal(run_sm_error_code(&sm), "data_limit");
	/* A second limit (or a cancel) changes nothing. */
	assert_int_equal(run_sm_step(&sm, RUN_IN_LIMIT), 0);
	assert_int_equal(run_sm_step(&sm, RUN_IN_CANCEL), 0);
	assert_string_equal(run_sm_status(&sm), "truncated");
}

static void test_bad_output_while_cancelling(void **state)
{
	struct run_sm sm;

	(void)state;
	run_sm_init(&sm);
	run_sm_step(&sm, RUN_IN_SPAWN_OK);
	run_sm_step(&sm, RUN_IN_CANCEL);
	/* Escalates to SIGKILL, but the run stays "cancelled". */
	assert_int_equal(run_sm_step(&sm, RUN_IN_BAD_OUTPUT), RUN_ACT_KILL);
	assert_int_equal(sm.reason, RUN_R_CANCELLED);
}

static void test_spawn_fail(void **state)
{
	struct run_sm sm;

	(void)state;
	run_sm_init(&sm);
	assert_int_equal(run_sm_step(&sm, RUN_IN_SPAWN_FAIL), RUN_ACT_FINISH);
	assert_int_equal(sm.state, RUN_FINISHED);
	assert_string_equal(run_sm_error_code(&sm), "spawn_failed");
	/* SPAWN_OK after the fact is a no-op. */
	assert_int_equal(run_sm_step(&sm, RUN_IN_SPAWN_OK), 0);
}

static void test_finished_ignores_everything(void **state)
{
	static const enum run_input all[] = {
		RUN_IN_SPAWN_OK, RUN_IN_SPAWN_FAIL, RUN_IN_END_SEEN, RUN_IN_BAD_OUTPUT, RUN_IN_CANCEL,
		RUN_IN_TIMEOUT,  RUN_IN_KILL_TIMER, RUN_IN_EOF,      RUN_IN_EXITED,
	};
	struct run_sm sm;
	size_t i;

	(void)state;
	run_sm_init(&sm);
	run_sm_step(&sm, RUN_IN_SPAWN_OK);
	run_sm_step(&sm, RUN_IN_EOF);
	run_sm_step(&sm, RUN_IN_EXITED);
	assert_int_equal(sm.state, RUN_FINISHED);
	for (i = 0; i < sizeof all / sizeof all[0]; i++) {
		assert_int_equal(run_sm_step(&sm, all[i]), 0);
		assert_int_equal(sm.state, RUN_FINISHED);
	}
}

static void test_kill_timer_after_both(void **state)
{
	struct run_sm sm;

	(void)state;
	run_sm_init(&sm);
	run_sm_step(&sm, RUN_IN_SPAWN_OK);
	run_sm_step(&sm, RUN_IN_CANCEL);
	run_sm_step(&sm, RUN_IN_EOF);
	/* Exited and EOF together finish it; a late timer does nothing. */
	assert_int_equal(run_sm_step(&sm, RUN_IN_EXITED), RUN_ACT_FINISH);
	assert_int_equal(run_sm_step(&sm, RUN_IN_KILL_TIMER), 0);
}

/* Every order of the two completion inputs finishes exactly once. */
static void test_finish_exactly_once(void **state)
{
	static const enum run_input mid[] = {RUN_IN_END_SEEN, RUN_IN_CANCEL, RUN_IN_TIMEOUT,
					     RUN_IN_BAD_OUTPUT, RUN_IN_KILL_TIMER};
	size_t i, order;

	(void)state;
	for (i = 0; i < sizeof mid / sizeof mid[0]; i++) {
		for (order = 0; order < 2; order++) {
			struct run_sm sm;
			int finishes = 0;
			run_sm_init(&sm);
			run_sm_step(&sm, RUN_IN_SPAWN_OK);
			finishes += !!(run_sm_step(&sm, mid[i]) & RUN_ACT_FINISH);
			finishes += !!(run_sm_step(&sm, order ? RUN_IN_EOF : RUN_IN_EXITED) &
				       RUN_ACT_FINISH);
			finishes += !!(run_sm_step(&sm, mid[i]) & RUN_ACT_FINISH);
			finishes += !!(run_sm_step(&sm, order ? RUN_IN_EXITED : RUN_IN_EOF) &
				       RUN_ACT_FINISH);
			finishes += !!(run_sm_step(&sm, RUN_IN_EOF) & RUN_ACT_FINISH);
			assert_int_equal(finishes, 1);
			assert_int_equal(sm.state, RUN_FINISHED);
		}
	}
}

/* ---- line splitter ---- */

struct lines {
	char got[16][64];
	int n;
	int fail_at; /* return -EPIPE for this line index, -1 never */
};

static int collect(void *arg, char *line, size_t len)
{
	struct lines *l = arg;

	assert_int_equal(strlen(line), len); /* NUL-terminated in place */
	if (l->n == l->fail_at)
		return -EPIPE;
	assert_true(l->n < 16 && len < 64);
	memcpy(l->got[l->n], line, len + 1);
	l->n++;
	return 0;
}

static void test_lines_whole(void **state)
{
	struct run_linebuf lb;
	struct lines l = {.fail_at = -1};
	const char in[] = "a\nbc\n\ndef\n";

	(void)state;
	run_linebuf_init(&lb, 100);
	assert_int_equal(run_linebuf_feed(&lb, in, strlen(in), collect, &l), 0);
	assert_int_equal(l.n, 4);
	assert_string_equal(l.got[0], "a");
	assert_string_equal(l.got[1], "bc");
	assert_string_equal(l.got[2], "");
	assert_string_equal(l.got[3], "def");
	run_linebuf_cleanup(&lb);
}

/* A stream parser must give the same lines fed one byte at a time. */
static void test_lines_byte_at_a_time(void **state)
{
	struct run_linebuf lb;
	struct lines l = {.fail_at = -1};
	const char in[] = "{\"seq\":0}\n{\"seq\":1}\npartial";
	size_t i;

	(void)state;
	run_linebuf_init(&lb, 100);
	for (i = 0; i < strlen(in); i++)
		assert_int_equal(run_linebuf_feed(&lb, in + i, 1, collect, &l), 0);
	assert_int_equal(l.n, 2);
	assert_string_equal(l.got[0], "{\"seq\":0}");
	assert_string_equal(l.got[1], "{\"seq\":1}");
	/* The unterminated tail is held, not delivered. */
	assert_int_equal(lb.len, strlen("partial"));
	assert_int_equal(run_linebuf_feed(&lb, "!\n", 2, collect, &l), 0);
	assert_string_equal(l.got[2], "partial!");
	run_linebuf_cleanup(&lb);
}

static void test_lines_limit(void **state)
{
	struct run_linebuf lb;
	struct lines l = {.fail_at = -1};

	(void)state;
	run_linebuf_init(&lb, 4);
	/* Exactly the limit is fine. */
	assert_int_equal(run_linebuf_feed(&lb, "abcd\n", 5, collect, &l), 0);
	assert_string_equal(l.got[0], "abcd");
	/* One more byte, even split across feeds, is refused before buffering. */
	assert_int_equal(run_linebuf_feed(&lb, "abc", 3, collect, &l), 0);
	assert_int_equal(run_linebuf_feed(&lb, "de", 2, collect, &l), -E2BIG);
	assert_true(lb.cap <= 5);
	assert_int_equal(l.n, 1);
	run_linebuf_cleanup(&lb);
}

static void test_lines_callback_error(void **state)
{
	struct run_linebuf lb;
	struct lines l = {.fail_at = 1};

	(void)state;
	run_linebuf_init(&lb, 100);
	assert_int_equal(run_linebuf_feed(&lb, "x\ny\nz\n", 6, collect, &l), -EPIPE);
	assert_int_equal(l.n, 1);
	run_linebuf_cleanup(&lb);
}

static void test_bundle_path(void **state)
{
	char out[64], tiny[8];

	(void)state;
	assert_int_equal(runs_bundle_path("/d", "0123456789abcdef", "meta.json", out, sizeof out),
			 0);
	assert_string_equal(out, "/d/runs/0123456789abcdef/meta.json");
	assert_int_equal(runs_bundle_path("/d", "0123456789abcdef", NULL, out, sizeof out), 0);
	assert_string_equal(out, "/d/runs/0123456789abcdef");
	assert_int_equal(runs_bundle_path("/d", "0123456789abcdef", NULL, tiny, sizeof tiny),
			 -ENAMETOOLONG);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_normal_run),
		cmocka_unit_test(test_exit_before_eof),
		cmocka_unit_test(test_cancel),
		cmocka_unit_test(test_timeout),
		cmocka_unit_test(test_bad_output),
		cmocka_unit_test(test_data_limit),
		cmocka_unit_test(test_bad_output_while_cancelling),
		cmocka_unit_test(test_spawn_fail),
		cmocka_unit_test(test_finished_ignores_everything),
		cmocka_unit_test(test_kill_timer_after_both),
		cmocka_unit_test(test_finish_exactly_once),
		cmocka_unit_test(test_lines_whole),
		cmocka_unit_test(test_lines_byte_at_a_time),
		cmocka_unit_test(test_lines_limit),
		cmocka_unit_test(test_lines_callback_error),
		cmocka_unit_test(test_bundle_path),
	};

	return cmocka_run_group_tests_name("runs", tests, NULL, NULL);
}
