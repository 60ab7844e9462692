/* labrun.c: cancellation-aware waiting for lab code (poll on the fd and the cancel eventfd; the run's stop watcher). */
#include "lab.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

static int cancel_signalled(int cancel_fd)
{
	struct pollfd p = {.fd = cancel_fd, .events = POLLIN};

	return cancel_fd >= 0 && poll(&p, 1, 0) > 0;
}

int lab_cancelled(struct lab_ctx *ctx)
{
	if (cancel_signalled(ctx->cancel_fd))
		return 1;
	return ctx->deadline_us > 0 && ev_now_us(ctx->em) >= ctx->deadline_us;
}

int lab_wait_fd(struct lab_ctx *ctx, int fd, short events, int timeout_ms)
{
	return lab_wait_fd2(ctx, fd, events, -1, timeout_ms);
}

int lab_wait_fd2(struct lab_ctx *ctx, int fd, short events, int wake_fd, int timeout_ms)
{
	int64_t start = ev_now_us(ctx->em), now = start;

	for (;;) {
		struct pollfd p[3] = {
			{.fd = fd, .events = events},
			{.fd = ctx->cancel_fd, .events = POLLIN},
			{.fd = wake_fd, .events = POLLIN},
		};
		int64_t wait_us = -1; /* -1: no limit of its own */
		int n;

		/* The caller's timeout is spent once now passes start + timeout:
		 * clamp at 0 (poll once without blocking), never below, since a
		 * negative value means "no limit" here. */
		if (timeout_ms >= 0) {
			wait_us = start + (int64_t)timeout_ms * 1000 - now;
			if (wait_us < 0)
				wait_us = 0;
		}
		if (ctx->deadline_us > 0) {
			int64_t left = ctx->deadline_us - now;
			if (left <= 0)
				return -ECANCELED;
			if (wait_us < 0 || left < wait_us)
				wait_us = left;
		}
		/* A negative fd is ignored by poll(); without a wake_fd it is
		 * left out altogether. */
		n = poll(p, wake_fd >= 0 ? 3 : 2, wait_us < 0 ? -1 : (int)((wait_us + 999) / 1000));
		if (n < 0) {
			if (errno == EINTR) {
				now = ev_now_us(ctx->em);
				continue;
			}
			return -errno;
		}
		if (ctx->cancel_fd >= 0 && (p[1].revents & POLLIN))
			return -ECANCELED;
		if (p[0].revents)
			return 1;
		if (wake_fd >= 0 && (p[2].revents & POLLIN))
			return 2;
		/* Timed out: either ours (0) or the deadline's (loop reports it). */
		now = ev_now_us(ctx->em);
		if (timeout_ms >= 0 && now >= start + (int64_t)timeout_ms * 1000)
			return 0;
	}
}

void lab_abort(struct lab_ctx *ctx)
{
	uint64_t one = 1;

	if (ctx->cancel_fd >= 0 && write(ctx->cancel_fd, &one, sizeof one) < 0) {
		/* The counter cannot overflow from this; nothing else to do. */
	}
}

int lab_sleep_ms(struct lab_ctx *ctx, int ms)
{
	int rc = lab_wait_fd(ctx, -1, 0, ms);

	return rc < 0 ? rc : 0;
}

/* ---- the run's stop watcher ---- */

#define WATCH_SIGNAL (SIGRTMIN + 3)
#define WATCH_REPEAT_MS 2

#define WATCH_MAX_WOKEN 4

struct lab_watch {
	struct lab_ctx *ctx;
	pthread_t thread;
	int stop_fd;               /* eventfd: lab_watch_stop ends the thread */
	int kick_fd;               /* eventfd: lab_wake asks the thread to interrupt */
	_Atomic int stopped;       /* the run is cancelled or past its deadline */
	_Atomic int woken[WATCH_MAX_WOKEN]; /* wake fds lab_wake was called for (-1: free) */
};

/* One thread that has made a blocking call under a watcher. Linked into
 * waiters while the thread lives (a thread-specific key's destructor unlinks
 * it), so the watcher never signals a thread that has exited. */
struct lab_waiter {
	pid_t tid;
	struct lab_watch *watch; /* waiters_lock: the run it last blocked for */
	_Atomic int in_call;     /* inside lab_block_begin .. lab_block_end */
	_Atomic int wake_fd;     /* the call's wake fd (lab_block_begin2), or -1 */
	struct lab_waiter *next; /* waiters_lock */
};

static pthread_mutex_t waiters_lock = PTHREAD_MUTEX_INITIALIZER;
static struct lab_waiter *waiters; /* waiters_lock */
static pthread_key_t waiter_key;
static pthread_once_t waiter_once = PTHREAD_ONCE_INIT;
static int waiter_once_rc;
static __thread struct lab_waiter *self; /* this thread's entry, once registered */

static void waiter_exit(void *arg)
{
	struct lab_waiter *w = arg, **pp;

	pthread_mutex_lock(&waiters_lock);
	for (pp = &waiters; *pp; pp = &(*pp)->next) {
		if (*pp == w) {
			*pp = w->next;
			break;
		}
	}
	pthread_mutex_unlock(&waiters_lock);
	free(w);
}

static void on_watch_signal(int sig)
{
	(void)sig; /* only to make the blocking call return EINTR */
}

static void waiter_setup(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_watch_signal; /* no SA_RESTART: the call returns EINTR */
	sigemptyset(&sa.sa_mask);
	waiter_once_rc = pthread_key_create(&waiter_key, waiter_exit);
	if (!waiter_once_rc && sigaction(WATCH_SIGNAL, &sa, NULL) < 0)
		waiter_once_rc = errno;
}

static int is_woken(struct lab_watch *w, int fd)
{
	int i;

	for (i = 0; fd >= 0 && i < WATCH_MAX_WOKEN; i++)
		if (atomic_load(&w->woken[i]) == fd)
			return 1;
	return 0;
}

/* Interrupt every thread inside a blocking call for w (all: the run stops;
 * else those waiting with a woken wake fd); returns how many. */
static int interrupt_waiters(struct lab_watch *w, int all)
{
	struct lab_waiter *p;
	pid_t pid = getpid();
	int n = 0;

	pthread_mutex_lock(&waiters_lock);
	for (p = waiters; p; p = p->next) {
		if (p->watch != w || !atomic_load(&p->in_call))
			continue;
		if (!all && !is_woken(w, atomic_load(&p->wake_fd)))
			continue;
		n++;
		syscall(SYS_tgkill, pid, p->tid, WATCH_SIGNAL);
	}
	pthread_mutex_unlock(&waiters_lock);
	return n;
}

static void *watch_main(void *arg)
{
	struct lab_watch *w = arg;
	struct lab_ctx *ctx = w->ctx;
	int waking = 0;

	for (;;) {
		struct pollfd p[3] = {
			{.fd = w->stop_fd, .events = POLLIN},
			{.fd = w->kick_fd, .events = POLLIN},
			{.fd = ctx->cancel_fd, .events = POLLIN},
		};
		int timeout = -1, stopped = atomic_load(&w->stopped);
		uint64_t v;

		if (stopped) {
			timeout = interrupt_waiters(w, 1) ? WATCH_REPEAT_MS : -1;
		} else {
			if (ctx->deadline_us > 0) {
				int64_t left = ctx->deadline_us - ev_now_us(ctx->em);
				if (left <= 0) {
					atomic_store(&w->stopped, 1);
					continue;
				}
				timeout = (int)((left + 999) / 1000);
			}
			if (waking && interrupt_waiters(w, 0))
				timeout = WATCH_REPEAT_MS;
			else
				waking = 0;
		}
		if (poll(p, stopped || ctx->cancel_fd < 0 ? 2 : 3, timeout) < 0 && errno != EINTR)
			break;
		if (p[0].revents)
			break;
		if ((p[1].revents & POLLIN) && read(w->kick_fd, &v, sizeof v) == sizeof v)
			waking = 1;
		if (p[2].revents & POLLIN)
			atomic_store(&w->stopped, 1);
	}
	return NULL;
}

int lab_watch_start(struct lab_ctx *ctx, char *err, size_t errlen)
{
	struct lab_watch *w;
	sigset_t all, old;
	int rc;

	pthread_once(&waiter_once, waiter_setup);
	if (waiter_once_rc) {
		snprintf(err, errlen, "no stop watcher: %s", strerror(waiter_once_rc));
		return -waiter_once_rc;
	}
	w = calloc(1, sizeof *w);
	if (!w) {
		snprintf(err, errlen, "no stop watcher: out of memory");
		return -ENOMEM;
	}
	w->ctx = ctx;
	for (rc = 0; rc < WATCH_MAX_WOKEN; rc++)
		atomic_store(&w->woken[rc], -1);
	w->stop_fd = eventfd(0, EFD_CLOEXEC);
	w->kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (w->stop_fd < 0 || w->kick_fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "no stop watcher: eventfd: %s", strerror(-rc));
		if (w->stop_fd >= 0)
			close(w->stop_fd);
		if (w->kick_fd >= 0)
			close(w->kick_fd);
		free(w);
		return rc;
	}
	/* The watcher takes no signal: they stay with the lab's threads. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&w->thread, NULL, watch_main, w);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc) {
		snprintf(err, errlen, "no stop watcher: %s", strerror(rc));
		close(w->stop_fd);
		close(w->kick_fd);
		free(w);
		return -rc;
	}
	ctx->watch = w;
	return 0;
}

void lab_watch_stop(struct lab_ctx *ctx)
{
	struct lab_watch *w = ctx->watch;
	uint64_t one = 1;

	if (!w)
		return;
	if (write(w->stop_fd, &one, sizeof one) < 0) {
		/* An eventfd write of 1 cannot fail here. */
	}
	pthread_join(w->thread, NULL);
	close(w->stop_fd);
	close(w->kick_fd);
	ctx->watch = NULL;
	free(w);
}

int lab_watch_stopped(const struct lab_ctx *ctx)
{
	return ctx->watch && atomic_load_explicit(&ctx->watch->stopped, memory_order_relaxed);
}

int lab_block_begin(struct lab_ctx *ctx)
{
	return lab_block_begin2(ctx, -1);
}

int lab_block_woken(const struct lab_ctx *ctx, int wake_fd)
{
	return ctx->watch && is_woken(ctx->watch, wake_fd);
}

void lab_wake(struct lab_ctx *ctx, int wake_fd)
{
	struct lab_watch *w = ctx->watch;
	uint64_t one = 1;
	int i;

	/* For a thread that waits in poll(): the fd becomes readable. */
	if (write(wake_fd, &one, sizeof one) < 0) {
		/* an eventfd counter this small does not overflow */
	}
	if (!w)
		return;
	for (i = 0; i < WATCH_MAX_WOKEN; i++) {
		int freeslot = -1;

		if (atomic_load(&w->woken[i]) == wake_fd ||
		    atomic_compare_exchange_strong(&w->woken[i], &freeslot, wake_fd))
			break;
	}
	/* The watcher interrupts a thread inside a blocking call with it. */
	if (write(w->kick_fd, &one, sizeof one) < 0) {
		/* as above */
	}
}

int lab_block_begin2(struct lab_ctx *ctx, int wake_fd)
{
	struct lab_watch *w = ctx->watch;

	if (!self) {
		struct lab_waiter *n = calloc(1, sizeof *n);

		if (!n || pthread_setspecific(waiter_key, n) != 0) {
			free(n);
			return -ENOMEM;
		}
		n->tid = (pid_t)syscall(SYS_gettid);
		pthread_mutex_lock(&waiters_lock);
		n->next = waiters;
		waiters = n;
		pthread_mutex_unlock(&waiters_lock);
		self = n;
	}
	if (self->watch != w) {
		pthread_mutex_lock(&waiters_lock);
		self->watch = w;
		pthread_mutex_unlock(&waiters_lock);
	}
	/* Either this thread sees stopped (or its wake fd woken), or the
	 * watcher sees in_call (all sequentially consistent) and interrupts the
	 * call. */
	atomic_store(&self->wake_fd, wake_fd);
	atomic_store(&self->in_call, 1);
	if (atomic_load(&w->stopped)) {
		atomic_store(&self->in_call, 0);
		return -ECANCELED;
	}
	if (is_woken(w, wake_fd)) {
		atomic_store(&self->in_call, 0);
		return 2;
	}
	return 0;
}

void lab_block_end(struct lab_ctx *ctx)
{
	(void)ctx;
	atomic_store_explicit(&self->in_call, 0, memory_order_release);
}
