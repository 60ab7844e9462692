/* labrun.c: cancellation-aware waiting for lab code (poll on the fd and the cancel eventfd). */
#include "lab.h"

#include <errno.h>
#include <poll.h>
#include <stdint.h>
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
