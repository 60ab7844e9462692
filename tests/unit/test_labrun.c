/* test_labrun.c: cancellation-aware waits (lab_wait_fd, lab_sleep_ms). */
#include "unit.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "lab.h"

static void setup_ctx(struct lab_ctx *ctx, struct ev_emitter *em, int cancel_fd, int deadline_ms)
{
	assert_int_equal(ev_init(em, NULL, "test"), 0);
	memset(ctx, 0, sizeof *ctx);
	ctx->em = em;
	ctx->cancel_fd = cancel_fd;
	ctx->deadline_us = ev_now_us(em) + (int64_t)deadline_ms * 1000;
}

/* A zero timeout is "look once, do not block", however much time passes
 * between the call and the look: it must never turn into "wait until the run's
 * deadline" (a bug that made a receiver with recv_delay_ms=0 hang). */
static void zero_timeout_never_waits_for_the_deadline(void **state)
{
	struct lab_ctx ctx;
	struct ev_emitter em;
	int i;

	setup_ctx(&ctx, &em, -1, 2000);
	for (i = 0; i < 2000; i++) {
		assert_int_equal(lab_wait_fd(&ctx, -1, 0, 0), 0);
		assert_int_equal(lab_sleep_ms(&ctx, 0), 0);
	}
	ev_cleanup(&em);
}

static void ready_fd_is_reported(void **state)
{
	struct lab_ctx ctx;
	struct ev_emitter em;
	int p[2];

	assert_int_equal(pipe(p), 0);
	assert_int_equal(write(p[1], "x", 1), 1);
	setup_ctx(&ctx, &em, -1, 5000);
	assert_int_equal(lab_wait_fd(&ctx, p[0], POLLIN, 0), 1);
	assert_int_equal(lab_wait_fd(&ctx, p[0], POLLIN, -1), 1);
	close(p[0]);
	close(p[1]);
	ev_cleanup(&em);
}

static void cancel_wins_over_an_endless_wait(void **state)
{
	struct lab_ctx ctx;
	struct ev_emitter em;
	int efd = eventfd(0, EFD_CLOEXEC);

	setup_ctx(&ctx, &em, efd, 60000);
	assert_false(lab_cancelled(&ctx));
	lab_abort(&ctx);
	assert_true(lab_cancelled(&ctx));
	assert_int_equal(lab_wait_fd(&ctx, -1, 0, -1), -ECANCELED);
	assert_int_equal(lab_sleep_ms(&ctx, 100000), -ECANCELED);
	close(efd);
	ev_cleanup(&em);
}

static void passed_deadline_cancels(void **state)
{
	struct lab_ctx ctx;
	struct ev_emitter em;

	setup_ctx(&ctx, &em, -1, 0);
	ctx.deadline_us = 1; /* already passed */
	assert_int_equal(lab_wait_fd(&ctx, -1, 0, -1), -ECANCELED);
	ev_cleanup(&em);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(zero_timeout_never_waits_for_the_deadline),
		cmocka_unit_test(ready_fd_is_reported),
		cmocka_unit_test(cancel_wins_over_an_endless_wait),
		cmocka_unit_test(passed_deadline_cancels),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
