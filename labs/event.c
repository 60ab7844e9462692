/* event.c: the event emitter (envelope, sequencing, sinks). */
#include "event.h"
#include "i18n.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/uio.h>
#include <unistd.h>

static int64_t ts_diff_us(const struct timespec *a, const struct timespec *b)
{
	return (int64_t)(a->tv_sec - b->tv_sec) * 1000000 + (a->tv_nsec - b->tv_nsec) / 1000;
}

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
	clock_gettime(CLOCK_MONOTONIC, &em->t0);
	pthread_mutex_init(&em->lock, NULL);
	return 0;
}

void ev_cleanup(struct ev_emitter *em)
{
	pthread_mutex_destroy(&em->lock);
}

int ev_add_sink(struct ev_emitter *em, ev_sink_fn fn, void *arg)
{
	int rc = -ENOSPC;

	pthread_mutex_lock(&em->lock);
	if (em->n_sinks < EV_MAX_SINKS) {
		em->sinks[em->n_sinks].fn = fn;
		em->sinks[em->n_sinks].arg = arg;
		em->n_sinks++;
		rc = 0;
	}
	pthread_mutex_unlock(&em->lock);
	return rc;
}

int64_t ev_now_us(struct ev_emitter *em)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return ts_diff_us(&now, &em->t0);
}

int64_t ev_emit(struct ev_emitter *em, const char *type, json_t *fields)
{
	json_t *ev = NULL;
	char *line = NULL;
	int64_t seq = -1;
	int i;

	if (fields && !json_is_object(fields)) {
		json_decref(fields);
		return -EINVAL;
	}
	pthread_mutex_lock(&em->lock);
	if (em->ended)
		goto out;
	ev = json_object();
	if (!ev)
		goto out;
	/* Envelope first; JSON_PRESERVE_ORDER keeps it first in the line. */
	json_object_set_new(ev, "v", json_integer(EV_VERSION));
	json_object_set_new(ev, "run", json_string(em->run_id));
	json_object_set_new(ev, "seq", json_integer((json_int_t)em->seq));
	json_object_set_new(ev, "t_us", json_integer(ev_now_us(em)));
	json_object_set_new(ev, "lab", json_string(em->lab));
	json_object_set_new(ev, "type", json_string(type));
	if (fields) {
		const char *key;
		json_t *val;

		json_object_foreach(fields, key, val) {
			/* Fields never override the envelope. */
			if (!json_object_get(ev, key))
				json_object_set(ev, key, val);
		}
	}
	line = json_dumps(ev, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII);
	if (!line)
		goto out;
	seq = (int64_t)em->seq++;
	if (strcmp(type, "run.end") == 0)
		em->ended = 1;
	for (i = 0; i < em->n_sinks;) {
		if (em->sinks[i].fn(em->sinks[i].arg, ev, line) < 0) {
			memmove(&em->sinks[i], &em->sinks[i + 1],
				(size_t)(em->n_sinks - i - 1) * sizeof em->sinks[0]);
			em->n_sinks--;
			em->sink_failed = 1;
			continue;
		}
		i++;
	}
out:
	pthread_mutex_unlock(&em->lock);
	free(line);
	json_decref(ev);
	json_decref(fields);
	return seq;
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
	int fd = (int)(intptr_t)arg;
	size_t len = strlen(line);
	struct iovec iov[2] = {{(void *)line, len}, {"\n", 1}};
	ssize_t n;

	(void)event;
	/* One writev per event: a reader sees whole lines, and it is one syscall
	 * instead of two. Fall back to plain writes after a partial write. */
	do {
		n = writev(fd, iov, 2);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	if ((size_t)n == len + 1)
		return 0;
	if ((size_t)n < len)
		return ev_write_all(fd, line + n, len - (size_t)n) < 0 ? -EIO
									: ev_write_all(fd, "\n", 1);
	return ev_write_all(fd, "\n", 1);
}
