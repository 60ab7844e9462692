/* ws_fanout.c: the class ring's fast path: each message framed once and written straight to every viewer waiting for it, in one io_uring submission (or a send() loop). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <liburing.h>

#include "ws_int.h"

/*
 * Why: a class message is the same bytes for every viewer (server frames are
 * unmasked, RFC 6455 5.1), yet through lws each viewer costs a writeable
 * request, a poll() over every connection, a callback and a send(). Here a
 * push only marks the class; on the next loop turn one sweep takes every
 * reader that waits for nothing but ring messages, gives it the frame built
 * once for its position (the ring entry with its header written into the
 * headroom in front of it, or a JSON array built once per position for
 * readers that are behind), and writes all of them: with io_uring in one
 * io_uring_enter() per FANOUT_SQ viewers, the sends done inline by the
 * kernel; without it, one send() each. Every send is MSG_DONTWAIT, so it
 * never waits: what a socket does not take at all is left to the reader's
 * lws writeable callback (ws_class_write(), the path before this one, which
 * catches it up with a JSON array); what it takes in part is handed to lws
 * (raw, lws_write(LWS_WRITE_HTTP)), which keeps the rest and sends it before
 * anything else on that connection, pings and close frames included. The
 * sweep waits for every completion before it returns, so no frame is freed
 * (the ring drops entries on later pushes) while the kernel may read it.
 *
 * Readers that do not qualify are woken as before and take the lws path:
 * anything queued for them or a replay in progress (those go first), a
 * resync, view or member notice due, or bytes lws still holds for them.
 */

/* Sends per submission (the ring's size); more viewers take several. */
#define FANOUT_SQ 1024
/* Frames one sweep builds for distinct reader positions; readers at yet
 * other positions take the lws path. */
#define FANOUT_FRAMES 8

/* One reader's frame in this sweep. */
struct fanout_send {
	uint64_t id;                /* the session */
	int fd;
	const unsigned char *frame; /* header and payload */
	size_t len;
	uint64_t end;               /* its ring position once the frame is out */
	int res;                    /* bytes written, or -errno */
};

/* A frame built for the readers at one ring position. */
struct fanout_frame {
	uint64_t pos, end;
	const unsigned char *frame;
	size_t len;
	unsigned char *own; /* a batch's buffer (NULL: the frame is in the ring) */
};

/* Owned by the lws service thread. */
struct ws_fanout {
	int uring;               /* 1: io_uring, 0: send() */
	struct io_uring ring;
	struct fanout_send sends[FANOUT_SQ];
	size_t n_sends;
	struct fanout_frame frames[FANOUT_FRAMES];
	size_t n_frames;
	long direct, deferred;   /* frames of this sweep written / left to lws */
};

size_t ws_frame_header(unsigned char *out, uint64_t len)
{
	int i;

	out[0] = 0x81; /* FIN, text */
	if (len < 126) {
		out[1] = (unsigned char)len;
		return 2;
	}
	if (len <= 0xffff) {
		out[1] = 126;
		out[2] = (unsigned char)(len >> 8);
		out[3] = (unsigned char)len;
		return 4;
	}
	out[1] = 127;
	for (i = 0; i < 8; i++)
		out[2 + i] = (unsigned char)(len >> (56 - 8 * i));
	return 10;
}

/* /api/health says which mode is in use. */
static void set_mode(struct ws_server *srv)
{
	long mode = !srv->fanout	  ? CONFIG_FANOUT_LWS
		    : srv->fanout->uring ? CONFIG_FANOUT_IO_URING
					 : CONFIG_FANOUT_SEND;

	http_count(srv->ctr, HTTP_C_FANOUT_MODE, mode - http_counters_get(srv->ctr, HTTP_C_FANOUT_MODE));
}

int ws_fanout_init(struct ws_server *srv, char *err, size_t errlen)
{
	struct ws_fanout *f;
	int mode = srv->cfg->fanout, rc;

	_Static_assert(LWS_PRE >= WS_FRAME_HEADER_MAX, "a frame header fits in the headroom");
	if (mode == CONFIG_FANOUT_LWS) {
		set_mode(srv);
		return 0;
	}
	f = calloc(1, sizeof *f);
	if (!f) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	if (mode == CONFIG_FANOUT_AUTO || mode == CONFIG_FANOUT_IO_URING) {
		rc = io_uring_queue_init(FANOUT_SQ, &f->ring, 0);
		if (rc == 0) {
			f->uring = 1;
		} else if (mode == CONFIG_FANOUT_IO_URING) {
			/* Kernels may refuse it: io_uring_disabled, a seccomp
			 * profile (many container runtimes), no CONFIG_IO_URING. */
			snprintf(err, errlen,
				 "--fanout io_uring: the kernel refused io_uring (%s); use --fanout "
				 "send or auto",
				 strerror(-rc));
			free(f);
			return rc;
		}
	}
	srv->fanout = f;
	set_mode(srv);
	return 0;
}

void ws_fanout_cleanup(struct ws_server *srv)
{
	struct ws_fanout *f = srv->fanout;

	if (!f)
		return;
	if (srv->ctx)
		lws_sul_cancel(&srv->sul_fanout);
	if (f->uring)
		io_uring_queue_exit(&f->ring);
	free(f);
	srv->fanout = NULL;
}

const char *ws_fanout_mode(const struct ws_server *srv)
{
	return !srv->fanout ? "lws" : srv->fanout->uring ? "io_uring" : "send";
}

/* Write every send in f->sends: their results into res. */
static void submit_uring(struct ws_fanout *f)
{
	struct io_uring_cqe *cqe;
	size_t i, done = 0;
	int rc;

	for (i = 0; i < f->n_sends; i++) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(&f->ring);
		/* The ring has FANOUT_SQ entries and is empty here. */
		io_uring_prep_send(sqe, f->sends[i].fd, f->sends[i].frame, f->sends[i].len,
				   MSG_DONTWAIT | MSG_NOSIGNAL);
		io_uring_sqe_set_data64(sqe, i);
	}
	while (io_uring_sq_ready(&f->ring) > 0) {
		rc = io_uring_submit(&f->ring);
		if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY)
			break;
	}
	if (io_uring_sq_ready(&f->ring) > 0) {
		/* The kernel took only some of them (it should never refuse):
		 * the rest go out with send(), and io_uring is not used again. */
		size_t taken = f->n_sends - io_uring_sq_ready(&f->ring);
		for (i = taken; i < f->n_sends; i++) {
			ssize_t n;
			do
				n = send(f->sends[i].fd, f->sends[i].frame, f->sends[i].len,
					 MSG_DONTWAIT | MSG_NOSIGNAL);
			while (n < 0 && errno == EINTR);
			f->sends[i].res = n < 0 ? -errno : (int)n;
		}
		done = f->n_sends - taken;
		f->uring = 0;
	}
	/* With MSG_DONTWAIT every send completes during the submission; wait
	 * all the same, so no frame is freed while the kernel may read it. */
	while (done < f->n_sends) {
		rc = io_uring_wait_cqe(&f->ring, &cqe);
		if (rc < 0) {
			if (rc == -EINTR || rc == -EAGAIN)
				continue;
			break;
		}
		if (cqe->user_data < f->n_sends)
			f->sends[cqe->user_data].res = cqe->res;
		io_uring_cqe_seen(&f->ring, cqe);
		done++;
	}
	if (!f->uring)
		io_uring_queue_exit(&f->ring);
}

static void submit_send(struct ws_fanout *f)
{
	size_t i;
	ssize_t n;

	for (i = 0; i < f->n_sends; i++) {
		do
			n = send(f->sends[i].fd, f->sends[i].frame, f->sends[i].len,
				 MSG_DONTWAIT | MSG_NOSIGNAL);
		while (n < 0 && errno == EINTR);
		f->sends[i].res = n < 0 ? -errno : (int)n;
	}
}

/* What each send did to its reader. */
static void complete(struct ws_server *srv, struct ws_fanout *f, const struct fanout_send *x)
{
	struct ws_session *s = ws_session_find(srv, x->id);

	if (!s)
		return;
	if (x->res > 0) {
		s->ring_pos = x->end;
		f->direct++;
		/* A part went: lws keeps the rest and sends it before anything
		 * else it writes on this connection. */
		if ((size_t)x->res < x->len &&
		    lws_write(s->wsi, (unsigned char *)x->frame + x->res, x->len - (size_t)x->res,
			      LWS_WRITE_HTTP) < 0)
			s->tx_failed = 1;
	} else {
		f->deferred++;
		/* EAGAIN: nothing went, the writeable callback sends it when the
		 * socket has room. Anything else: the connection is broken. */
		if (x->res < 0 && x->res != -EAGAIN && x->res != -EWOULDBLOCK)
			s->tx_failed = 1;
	}
	if (s->tx_failed || ws_class_pending(s))
		ws_want_write(s->wsi);
}

static void flush(struct ws_server *srv, struct ws_fanout *f)
{
	int was_uring = f->uring;
	size_t i;

	if (!f->n_sends)
		return;
	if (f->uring)
		submit_uring(f);
	else
		submit_send(f);
	for (i = 0; i < f->n_sends; i++)
		complete(srv, f, &f->sends[i]);
	f->n_sends = 0;
	if (was_uring && !f->uring)
		set_mode(srv);
}

/* The frame for readers of c at pos, built at most once per sweep; NULL when
 * FANOUT_FRAMES are built already or memory ran out. */
static const struct fanout_frame *frame_at(struct ws_fanout *f, struct ws_class *c, uint64_t pos)
{
	struct fanout_frame *fr;
	unsigned char *own, *payload;
	const unsigned char *p;
	size_t i, len, h;
	uint64_t end;

	for (i = 0; i < f->n_frames; i++)
		if (f->frames[i].pos == pos)
			return &f->frames[i];
	if (f->n_frames == FANOUT_FRAMES)
		return NULL;
	own = malloc(LWS_PRE + WS_BATCH_BYTES);
	if (!own)
		return NULL;
	p = ws_class_next(c, pos, own + LWS_PRE, &len, &end);
	if (!p) {
		free(own);
		return NULL;
	}
	if (p != own + LWS_PRE) {
		free(own);
		own = NULL;
	}
	/* The header goes into the headroom in front of the payload: LWS_PRE
	 * bytes in the ring entry and in the batch buffer alike. lws writes the
	 * same bytes there when it sends a ring entry itself. */
	{
		unsigned char hdr[WS_FRAME_HEADER_MAX];
		h = ws_frame_header(hdr, len);
		payload = (unsigned char *)p;
		memcpy(payload - h, hdr, h);
	}
	fr = &f->frames[f->n_frames++];
	fr->pos = pos;
	fr->end = end;
	fr->frame = payload - h;
	fr->len = len + h;
	fr->own = own;
	return fr;
}

/* s waits for nothing but messages of its class's ring, and lws holds
 * nothing unsent for it: the sweep may write to it directly (not through
 * TLS, which lws would have to encrypt; socklab's lws serves plain
 * WebSocket, and a proxy in front terminates TLS). */
static int direct_ok(struct ws_session *s, const struct ws_class *c)
{
	return s->id && s->wsi && !s->overflowed && !s->close_after && !s->tx_failed &&
	       s->q_count == 0 && !ws_has_replay(s) && !s->need_resync && !s->skipping &&
	       s->view_sent == c->view_ver && !s->members_dirty && s->ring_pos >= c->ring.tail &&
	       s->ring_pos < c->ring.head && !lws_partial_buffered(s->wsi) && !lws_is_ssl(s->wsi);
}

static void sweep_reader(struct ws_server *srv, struct ws_fanout *f, struct ws_class *c,
			 struct ws_session *s)
{
	const struct fanout_frame *fr;
	struct fanout_send *x;

	if (!s || !s->wsi || !ws_class_pending(s))
		return;
	if (!direct_ok(s, c) || !(fr = frame_at(f, c, s->ring_pos))) {
		f->deferred++;
		ws_want_write(s->wsi);
		return;
	}
	x = &f->sends[f->n_sends++];
	x->id = s->id;
	x->fd = lws_get_socket_fd(s->wsi);
	x->frame = fr->frame;
	x->len = fr->len;
	x->end = fr->end;
	x->res = 0;
	if (f->n_sends == FANOUT_SQ)
		flush(srv, f);
}

static void sweep_class(struct ws_server *srv, struct ws_fanout *f, struct ws_class *c)
{
	size_t i;

	c->fanout_due = 0;
	f->n_frames = 0;
	sweep_reader(srv, f, c, ws_session_find(srv, c->instructor));
	for (i = 0; i < c->n_members; i++)
		sweep_reader(srv, f, c, ws_session_find(srv, c->members[i]));
	flush(srv, f);
	for (i = 0; i < f->n_frames; i++)
		free(f->frames[i].own);
	f->n_frames = 0;
}

static void sweep(lws_sorted_usec_list_t *sul)
{
	struct ws_server *srv = lws_container_of(sul, struct ws_server, sul_fanout);
	struct ws_fanout *f = srv->fanout;
	int k;

	if (!f)
		return;
	f->direct = f->deferred = 0;
	for (k = 0; k < srv->cfg->max_classes; k++)
		if (srv->classes[k] && srv->classes[k]->fanout_due)
			sweep_class(srv, f, srv->classes[k]);
	http_count(srv->ctr, HTTP_C_CLASS_FRAMES_DIRECT, f->direct);
	http_count(srv->ctr, HTTP_C_CLASS_FRAMES_DEFERRED, f->deferred);
}

int ws_fanout_due(struct ws_class *c)
{
	struct ws_server *srv = c->srv;

	if (!srv->fanout || !srv->ctx)
		return 0;
	if (!c->fanout_due) {
		c->fanout_due = 1;
		/* The next loop turn: what else this turn pushes goes with it. */
		lws_sul_schedule(srv->ctx, 0, &srv->sul_fanout, sweep, 1);
	}
	return 1;
}
