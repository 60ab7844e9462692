/* test_labrun.c: cancellation-aware waits (lab_wait_fd, lab_sleep_ms) and the run's stop watcher. */
#include "unit.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "lab.h"
#include "sock.h"

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

/* ---- the stop watcher: a receive that sleeps in the kernel, no poll() ---- */

struct blocked {
	struct lab_ctx *ctx;
	int fd;
	_Atomic int tid;
	ssize_t rc;
	char byte;
};

static void *blocked_recv(void *arg)
{
	struct blocked *b = arg;

	atomic_store(&b->tid, (int)syscall(SYS_gettid));
	b->rc = lsock_recv(b->ctx, (struct lsock_who){"server", 1}, b->fd, &b->byte, 1, -1);
	return NULL;
}

/* Whether thread tid sleeps in the kernel ('S' in /proc/self/task/TID/stat). */
static int thread_sleeps(int tid)
{
	char path[64], buf[256], *p;
	FILE *f;
	size_t n;

	snprintf(path, sizeof path, "/proc/self/task/%d/stat", tid);
	f = fopen(path, "r");
	if (!f)
		return 0;
	n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = '\0';
	p = strrchr(buf, ')');
	return p && p[1] == ' ' && p[2] == 'S';
}

static void start_blocked(struct lab_ctx *ctx, struct ev_emitter *em, int cancel_fd,
			  int deadline_ms, int sv[2], struct blocked *b, pthread_t *t)
{
	char err[128] = "";

	setup_ctx(ctx, em, cancel_fd, deadline_ms);
	assert_int_equal(lab_watch_start(ctx, err, sizeof err), 0);
	assert_non_null(ctx->watch);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	memset(b, 0, sizeof *b);
	b->ctx = ctx;
	b->fd = sv[0];
	b->rc = 12345;
	assert_int_equal(pthread_create(t, NULL, blocked_recv, b), 0);
}

static void finish_blocked(struct lab_ctx *ctx, struct ev_emitter *em, int sv[2], pthread_t t)
{
	pthread_join(t, NULL);
	lab_watch_stop(ctx);
	assert_null(ctx->watch);
	close(sv[0]);
	close(sv[1]);
	ev_cleanup(em);
}

/* A recv() asleep in the kernel (no data, no timeout) ends with -ECANCELED
 * once the run is cancelled: the watcher interrupts it. */
static void watcher_interrupts_a_sleeping_recv_on_cancel(void **state)
{
	struct lab_ctx ctx;
	struct ev_emitter em;
	struct blocked b;
	pthread_t t;
	int sv[2], efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);

	start_blocked(&ctx, &em, efd, 60000, sv, &b, &t);
	/* Wait (no sleep: the thread's own state) until it sleeps in recv(). */
	while (!atomic_load(&b.tid) || !thread_sleeps(atomic_load(&b.tid)))
		sched_yield();
	assert_false(lab_watch_stopped(&ctx));
	lab_abort(&ctx);
	finish_blocked(&ctx, &em, sv, t);
	assert_int_equal(b.rc, -ECANCELED);
	close(efd);
}

/* The run's deadline ends such a recv() too, with no timer of its own. */
static void watcher_enforces_the_deadline(void **state)
{
	struct lab_ctx ctx;
	struct ev_emitter em;
	struct blocked b;
	pthread_t t;
	int sv[2];

	start_blocked(&ctx, &em, -1, 50, sv, &b, &t);
	finish_blocked(&ctx, &em, sv, t);
	assert_int_equal(b.rc, -ECANCELED);
	assert_true(ev_now_us(&em) >= ctx.deadline_us);
}

/* Data that arrives is received as before. */
static void watcher_lets_data_through(void **state)
{
	struct lab_ctx ctx;
	struct ev_emitter em;
	struct blocked b;
	pthread_t t;
	int sv[2], efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);

	start_blocked(&ctx, &em, efd, 60000, sv, &b, &t);
	assert_int_equal(write(sv[1], "x", 1), 1);
	finish_blocked(&ctx, &em, sv, t);
	assert_int_equal(b.rc, 1);
	assert_int_equal(b.byte, 'x');
	close(efd);
}

/* Cancelled at every moment around the call (before the thread registers,
 * between its check and the call, inside the call): every run ends, never a
 * thread left asleep. Each iteration's thread has exited before the next
 * watcher starts, so a signal to an exited thread would show as a crash. */
static void watcher_never_misses_a_cancel(void **state)
{
	int i;

	for (i = 0; i < 300; i++) {
		struct lab_ctx ctx;
		struct ev_emitter em;
		struct blocked b;
		pthread_t t;
		int sv[2], efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);

		start_blocked(&ctx, &em, efd, 60000, sv, &b, &t);
		for (int k = 0; k < i % 7; k++)
			sched_yield();
		lab_abort(&ctx);
		finish_blocked(&ctx, &em, sv, t);
		assert_int_equal(b.rc, -ECANCELED);
		close(efd);
	}
}

struct woken {
	struct lab_ctx *ctx;
	int fd, wake_fd;
	_Atomic int tid;
	ssize_t rc;
};

static void *blocked_recvfrom(void *arg)
{
	struct woken *b = arg;
	char buf[16];
	struct lsock_io io = {.wake_fd = b->wake_fd};

	atomic_store(&b->tid, (int)syscall(SYS_gettid));
	b->rc = lsock_recvfrom(b->ctx, (struct lsock_who){"server", 0}, b->fd, buf, sizeof buf, NULL,
			       -1, &io);
	return NULL;
}

/* A datagram receive asleep in the kernel with a wake fd ends with -EINTR
 * (no call recorded) when another thread wakes it with lab_wake; the run is
 * not stopped by it. */
static void lab_wake_ends_a_sleeping_recvfrom(void **state)
{
	struct lab_ctx ctx;
	struct ev_emitter em;
	struct woken b = {0};
	pthread_t t;
	char err[128];
	int sv[2], efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);

	setup_ctx(&ctx, &em, -1, 60000);
	assert_int_equal(lab_watch_start(&ctx, err, sizeof err), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv), 0);
	b.ctx = &ctx;
	b.fd = sv[0];
	b.wake_fd = efd;
	b.rc = 12345;
	assert_int_equal(pthread_create(&t, NULL, blocked_recvfrom, &b), 0);
	while (!atomic_load(&b.tid) || !thread_sleeps(atomic_load(&b.tid)))
		sched_yield();
	lab_wake(&ctx, efd);
	pthread_join(t, NULL);
	assert_int_equal(b.rc, -EINTR);
	assert_false(lab_watch_stopped(&ctx));
	/* It stays woken: the next wait with it ends at once. */
	b.rc = 12345;
	assert_int_equal(pthread_create(&t, NULL, blocked_recvfrom, &b), 0);
	pthread_join(t, NULL);
	assert_int_equal(b.rc, -EINTR);
	lab_watch_stop(&ctx);
	close(sv[0]);
	close(sv[1]);
	close(efd);
	ev_cleanup(&em);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(zero_timeout_never_waits_for_the_deadline),
		cmocka_unit_test(ready_fd_is_reported),
		cmocka_unit_test(cancel_wins_over_an_endless_wait),
		cmocka_unit_test(passed_deadline_cancels),
		cmocka_unit_test(watcher_interrupts_a_sleeping_recv_on_cancel),
		cmocka_unit_test(watcher_enforces_the_deadline),
		cmocka_unit_test(watcher_lets_data_through),
		cmocka_unit_test(watcher_never_misses_a_cancel),
		cmocka_unit_test(lab_wake_ends_a_sleeping_recvfrom),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
