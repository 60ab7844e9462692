/* runs_sm.c: the pure parts of the run manager: the run state machine and the line splitter. */
#include "runs.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* ======================================================================
 * The state machine
 * ====================================================================== */

void run_sm_init(struct run_sm *sm)
{
	memset(sm, 0, sizeof *sm);
	sm->state = RUN_STARTING;
}

/* Begin stopping a run that is still going; the first reason sticks. */
static unsigned sm_stop(struct run_sm *sm, enum run_reason why, unsigned acts)
{
	if (sm->state != RUN_STARTING && sm->state != RUN_RUNNING)
		return 0;
	sm->state = RUN_CANCELLING;
	sm->reason = why;
	return acts;
}

/* Both ends are done: the output is closed and the process reaped. */
static unsigned sm_maybe_finish(struct run_sm *sm, unsigned otherwise)
{
	if (sm->eof && sm->exited) {
		sm->state = RUN_FINISHED;
		return RUN_ACT_FINISH;
	}
	return otherwise;
}

unsigned run_sm_step(struct run_sm *sm, enum run_input in)
{
	if (sm->state == RUN_FINISHED)
		return 0;
	switch (in) {
	case RUN_IN_SPAWN_OK:
		if (sm->state != RUN_STARTING)
			return 0;
		sm->state = RUN_RUNNING;
		return RUN_ACT_ARM_TIMEOUT;
	case RUN_IN_SPAWN_FAIL:
		if (sm->state != RUN_STARTING)
			return 0;
		sm->reason = RUN_R_SPAWN;
		sm->eof = sm->exited = 1;
		sm->state = RUN_FINISHED;
		return RUN_ACT_FINISH;
	case RUN_IN_END_SEEN:
		sm->end_seen = 1;
		return 0;
	case RUN_IN_BAD_OUTPUT:
		/* Output we cannot trust: no grace period. */
		if (sm->state == RUN_CANCELLING)
			return sm->exited ? 0 : RUN_ACT_KILL;
		return sm_stop(sm, RUN_R_BAD_OUTPUT, RUN_ACT_KILL | RUN_ACT_ARM_KILL);
	case RUN_IN_CANCEL:
		return sm_stop(sm, RUN_R_CANCELLED, RUN_ACT_TERM | RUN_ACT_ARM_KILL);
	case RUN_IN_LIMIT:
		return sm_stop(sm, RUN_R_LIMIT, RUN_ACT_TERM | RUN_ACT_ARM_KILL);
	case RUN_IN_TIMEOUT:
		return sm_stop(sm, RUN_R_TIMEOUT, RUN_ACT_TERM | RUN_ACT_ARM_KILL);
	case RUN_IN_KILL_TIMER:
		if (!sm->exited)
			return RUN_ACT_KILL | RUN_ACT_ARM_KILL;
		/* Reaped, but something still holds the pipe open. */
		return sm->eof ? 0 : RUN_ACT_CLOSE_PIPE;
	case RUN_IN_EOF:
		sm->eof = 1;
		/* The process should exit right after closing its output. */
		return sm_maybe_finish(sm, RUN_ACT_ARM_KILL);
	case RUN_IN_EXITED:
		sm->exited = 1;
		/* Whatever else is in its process group goes too; give the pipe a
		 * moment to deliver what is buffered and close. */
		return sm_maybe_finish(sm, RUN_ACT_KILL | RUN_ACT_ARM_KILL);
	}
	return 0;
}

const char *run_sm_status(const struct run_sm *sm)
{
	switch (sm->reason) {
	case RUN_R_CANCELLED:
		return "cancelled";
	case RUN_R_TIMEOUT:
		return "timeout";
	case RUN_R_LIMIT:
		return "truncated";
	default:
		return "error";
	}
}

const char *run_sm_error_code(const struct run_sm *sm)
{
	static const char *const codes[] = {
		[RUN_R_NONE] = "run_died",
		[RUN_R_CANCELLED] = "cancelled",
		[RUN_R_TIMEOUT] = "timeout",
		[RUN_R_BAD_OUTPUT] = "bad_output",
		[RUN_R_SPAWN] = "spawn_failed",
		[RUN_R_LIMIT] = "data_limit",
	};
	return codes[sm->reason];
}

/* ======================================================================
 * The line splitter
 * ====================================================================== */

void run_linebuf_init(struct run_linebuf *lb, size_t max)
{
	memset(lb, 0, sizeof *lb);
	lb->max = max;
}

void run_linebuf_cleanup(struct run_linebuf *lb)
{
	free(lb->buf);
	memset(lb, 0, sizeof *lb);
}

int run_linebuf_feed(struct run_linebuf *lb, const char *data, size_t n, run_line_fn fn,
		     void *arg)
{
	while (n > 0) {
		const char *nl = memchr(data, '\n', n);
		size_t take = nl ? (size_t)(nl - data) : n;
		int rc;

		/* The limit is checked before anything is buffered. */
		if (lb->len + take > lb->max) {
			lb->len = 0;
			return -E2BIG;
		}
		if (lb->len + take + 1 > lb->cap) {
			size_t cap = lb->cap ? lb->cap : 4096;
			char *nb;
			while (cap < lb->len + take + 1)
				cap *= 2;
			if (cap > lb->max + 1)
				cap = lb->max + 1;
			nb = realloc(lb->buf, cap);
			if (!nb)
				return -ENOMEM;
			lb->buf = nb;
			lb->cap = cap;
		}
		memcpy(lb->buf + lb->len, data, take);
		lb->len += take;
		if (!nl)
			return 0;
		lb->buf[lb->len] = '\0';
		rc = fn(arg, lb->buf, lb->len);
		lb->len = 0;
		if (rc < 0)
			return rc;
		data += take + 1;
		n -= take + 1;
	}
	return 0;
}
