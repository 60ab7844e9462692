/* front.c: the one public port: accept, peek each connection's first bytes on the front-door thread, hand it to libwebsockets (GET /ws) or libmicrohttpd. */
#include "front.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "ws.h"
#include "ws_addr.h"

/* How long the listener rests when accept() runs out of fds (ms). */
#define FRONT_EMFILE_PAUSE_MS 100
/* Events taken from epoll per wait. */
#define FRONT_EVENTS 64
/* epoll tags: the listener and the stop eventfd; connections are slot + 2. */
#define TAG_LISTEN 0
#define TAG_STOP 1

static const char ws_prefix[] = "GET " WS_PATH;

enum front_kind front_classify(const unsigned char *buf, size_t n)
{
	size_t plen = sizeof ws_prefix - 1, i;

	for (i = 0; i < n && i < plen; i++)
		if (buf[i] != (unsigned char)ws_prefix[i])
			return FRONT_HTTP;
	if (n <= plen)
		return FRONT_NEED_MORE;
	/* "GET /ws HTTP/1.1" or "GET /ws?..."; "GET /wsx" is another page. */
	return buf[plen] == ' ' || buf[plen] == '?' ? FRONT_WS : FRONT_HTTP;
}

/* A connection waiting for its first bytes; in a FIFO by accept time (which
 * is deadline order: every connection has the same time). */
struct front_conn {
	int fd;                 /* -1: a free slot */
	int64_t deadline_us;    /* CLOCK_MONOTONIC */
	struct sockaddr_storage ss;
	socklen_t sl;
	unsigned char key[16];
	int keyed;              /* counted in the address table */
	int prev, next;         /* FIFO (or free list through next); -1 ends */
};

/* Everything below is owned by the front-door thread once it runs. */
struct front {
	const struct serve_config *cfg; /* read-only */
	struct http_counters *ctr;
	struct http_server *http;
	struct ws_server *ws;
	int lfd, epfd, stopfd;
	int port;
	struct front_conn *conns; /* cfg->http_max_conns slots */
	int n_slots, n_waiting;
	int head, tail;           /* oldest, newest waiting */
	int free_head;
	struct ws_addr_table addrs; /* waiting connections per address (sessions) */
	int64_t listen_resume_us;   /* 0: the listener is watched */
	pthread_t thread;
	int started;
};

static int64_t mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/*
 * Answer status with {"error":{"code","message"}} and close fd. What the
 * client already sent is read first (bounded), so the close does not turn
 * into a reset that could destroy the answer before the client reads it.
 */
static void refuse(int fd, unsigned status, const char *reason, const char *code,
		   const char *message)
{
	char buf[1024], drain[4096];
	json_t *j = json_pack("{s:{s:s, s:s}}", "error", "code", code, "message", message);
	char *body = j ? json_dumps(j, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
	int n, i;

	json_decref(j);
	for (i = 0; i < 16 && recv(fd, drain, sizeof drain, MSG_DONTWAIT) > 0; i++)
		;
	if (body) {
		n = snprintf(buf, sizeof buf,
			     "HTTP/1.1 %u %s\r\nContent-Type: application/json\r\n"
			     "Content-Length: %zu\r\nConnection: close\r\nCache-Control: no-store\r\n"
			     "\r\n%s",
			     status, reason, strlen(body), body);
		/* A short send means the client is not reading either. */
		if (n > 0 && (size_t)n < sizeof buf &&
		    send(fd, buf, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
			(void)0;
	}
	free(body);
	shutdown(fd, SHUT_RDWR);
	close(fd);
}

static void refuse_timeout(int fd)
{
	refuse(fd, 408, "Request Timeout", "request_timeout", "the request did not arrive in time");
}

/* ---- the waiting list ---- */

static void unlink_conn(struct front *f, int i)
{
	struct front_conn *k = &f->conns[i];

	if (k->prev >= 0)
		f->conns[k->prev].next = k->next;
	else
		f->head = k->next;
	if (k->next >= 0)
		f->conns[k->next].prev = k->prev;
	else
		f->tail = k->prev;
	if (k->keyed) {
		struct ws_addr *a = ws_addr_find(&f->addrs, k->key);
		if (a) {
			a->sessions--;
			ws_addr_put(&f->addrs, a, 0);
		}
	}
	k->fd = -1;
	k->keyed = 0;
	k->next = f->free_head;
	f->free_head = i;
	f->n_waiting--;
}

/* Stop watching slot i and give its fd to the caller. */
static int take(struct front *f, int i)
{
	int fd = f->conns[i].fd;

	epoll_ctl(f->epfd, EPOLL_CTL_DEL, fd, NULL);
	unlink_conn(f, i);
	return fd;
}

static void hand_over(struct front *f, int i, enum front_kind kind)
{
	struct sockaddr_storage ss = f->conns[i].ss;
	socklen_t sl = f->conns[i].sl;
	int fd = take(f, i);

	if (kind == FRONT_WS) {
		if (ws_adopt(f->ws, fd) < 0) {
			http_count(f->ctr, HTTP_C_WS_REFUSED, 1);
			refuse(fd, 503, "Service Unavailable", "server_busy",
			       "the WebSocket server is busy; try again");
		}
		return;
	}
	/* Refused (its limits): MHD has closed fd, as it always did. */
	http_add_connection(f->http, fd, (struct sockaddr *)&ss, sl);
}

/* A waiting connection became readable (or was shut down): decide if its
 * first bytes are in. Peeking consumes nothing; each library reads the
 * request from its first byte. */
static void on_readable(struct front *f, int i, uint32_t ev)
{
	unsigned char buf[FRONT_PEEK_MAX];
	ssize_t n = recv(f->conns[i].fd, buf, sizeof buf, MSG_PEEK | MSG_DONTWAIT);
	enum front_kind kind;

	if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
		if (!(ev & (EPOLLHUP | EPOLLERR)))
			return;
	}
	if (n <= 0) {
		/* Closed before saying anything, or an error. */
		close(take(f, i));
		return;
	}
	kind = front_classify(buf, (size_t)n);
	if (kind == FRONT_NEED_MORE) {
		/* Edge-triggered: the next bytes wake us again. A client that
		 * has shut its side sends nothing more: HTTP answers it. */
		if (!(ev & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
			return;
		kind = FRONT_HTTP;
	}
	hand_over(f, i, kind);
}

/* Answer 408 to every connection past its deadline; the time to the next
 * deadline in ms (-1: none). */
static int expire(struct front *f, int64_t now)
{
	long expired = 0;
	int ms;

	while (f->head >= 0 && f->conns[f->head].deadline_us <= now) {
		refuse_timeout(take(f, f->head));
		expired++;
	}
	if (expired)
		http_count(f->ctr, HTTP_C_HEADER_TIMEOUTS, expired);
	ms = f->head < 0 ? -1 : (int)((f->conns[f->head].deadline_us - now + 999) / 1000);
	if (f->listen_resume_us) {
		int lms = f->listen_resume_us <= now
				  ? 0
				  : (int)((f->listen_resume_us - now + 999) / 1000);
		if (ms < 0 || lms < ms)
			ms = lms;
	}
	return ms;
}

static void accept_one(struct front *f, int fd, const struct sockaddr_storage *ss, socklen_t sl,
		       int64_t now)
{
	struct epoll_event ev;
	struct ws_addr *a = NULL;
	unsigned char key[16];
	char m[160];
	int i;

	if (ws_addr_key((const struct sockaddr *)ss, sl, key) == 0) {
		a = ws_addr_find(&f->addrs, key);
		if (a && a->sessions >= f->cfg->max_conns_per_addr) {
			http_count(f->ctr, HTTP_C_FRONT_REFUSED, 1);
			snprintf(m, sizeof m,
				 "too many connections from your address: at most %d at once "
				 "(--max-conns-per-addr)",
				 f->cfg->max_conns_per_addr);
			refuse(fd, 503, "Service Unavailable", "too_many_connections", m);
			return;
		}
	}
	/* Full: the connection that has waited longest makes room. */
	if (f->free_head < 0) {
		http_count(f->ctr, HTTP_C_FRONT_EVICTED, 1);
		refuse_timeout(take(f, f->head));
	}
	i = f->free_head;
	f->free_head = f->conns[i].next;
	f->conns[i].fd = fd;
	f->conns[i].deadline_us = now + (int64_t)f->cfg->header_timeout_s * 1000000;
	f->conns[i].ss = *ss;
	f->conns[i].sl = sl;
	f->conns[i].keyed = 0;
	f->conns[i].prev = f->tail;
	f->conns[i].next = -1;
	if (f->tail >= 0)
		f->conns[f->tail].next = i;
	else
		f->head = i;
	f->tail = i;
	f->n_waiting++;
	if (ws_addr_key((const struct sockaddr *)ss, sl, key) == 0) {
		a = ws_addr_get(&f->addrs, key, now);
		if (a) {
			a->sessions++;
			memcpy(f->conns[i].key, key, 16);
			f->conns[i].keyed = 1;
		}
	}
	/* Edge-triggered: one wake-up per arrival of bytes, so a client that
	 * sent part of its first line does not spin the loop. Adding a socket
	 * that is already readable reports it at once. */
	memset(&ev, 0, sizeof ev);
	ev.events = EPOLLIN | EPOLLRDHUP | EPOLLET;
	ev.data.u64 = (uint64_t)i + 2;
	if (epoll_ctl(f->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
		close(take(f, i));
}

static void set_listening(struct front *f, int on)
{
	struct epoll_event ev;

	memset(&ev, 0, sizeof ev);
	ev.events = on ? EPOLLIN : 0;
	ev.data.u64 = TAG_LISTEN;
	epoll_ctl(f->epfd, EPOLL_CTL_MOD, f->lfd, &ev);
}

static void on_listen(struct front *f, int64_t now)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	int fd, k;

	/* Bounded per wake-up, so waiting connections are served too. */
	for (k = 0; k < 256; k++) {
		sl = sizeof ss;
		fd = accept4(f->lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd >= 0) {
			accept_one(f, fd, &ss, sl, now);
			continue;
		}
		if (errno == EINTR || errno == ECONNABORTED)
			continue;
		if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
			/* The listener stays readable: rest it instead of spinning. */
			set_listening(f, 0);
			f->listen_resume_us = now + FRONT_EMFILE_PAUSE_MS * 1000;
		}
		return;
	}
}

static void *front_thread(void *arg)
{
	struct front *f = arg;
	struct epoll_event evs[FRONT_EVENTS];
	int timeout = -1, n, j;

	for (;;) {
		int64_t now;
		n = epoll_wait(f->epfd, evs, FRONT_EVENTS, timeout);
		if (n < 0 && errno != EINTR)
			break;
		now = mono_us();
		for (j = 0; j < n; j++) {
			uint64_t tag = evs[j].data.u64;
			if (tag == TAG_STOP)
				return NULL;
			if (tag == TAG_LISTEN) {
				on_listen(f, now);
				continue;
			}
			/* A slot freed earlier in this batch may hold another
			 * connection by now: a peek at it is harmless. */
			if (f->conns[tag - 2].fd >= 0)
				on_readable(f, (int)(tag - 2), evs[j].events);
		}
		if (f->listen_resume_us && now >= f->listen_resume_us) {
			f->listen_resume_us = 0;
			set_listening(f, 1);
		}
		timeout = expire(f, now);
	}
	return NULL;
}

int front_open(struct front **out, const struct serve_config *cfg,
	       struct http_counters *counters, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	struct epoll_event ev;
	struct front *f;
	int one = 1, i, rc;

	*out = NULL;
	f = calloc(1, sizeof *f);
	if (!f) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	f->cfg = cfg;
	f->ctr = counters;
	f->lfd = f->epfd = f->stopfd = -1;
	f->head = f->tail = f->free_head = -1;
	f->n_slots = cfg->http_max_conns;
	f->conns = calloc((size_t)f->n_slots, sizeof *f->conns);
	if (!f->conns || ws_addr_init(&f->addrs, (size_t)f->n_slots) < 0) {
		snprintf(err, errlen, "out of memory");
		rc = -ENOMEM;
		goto fail;
	}
	for (i = f->n_slots - 1; i >= 0; i--) {
		f->conns[i].fd = -1;
		f->conns[i].next = f->free_head;
		f->free_head = i;
	}

	memset(&ss, 0, sizeof ss);
	if (cfg->listen_v6) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
		a->sin6_family = AF_INET6;
		a->sin6_port = htons((uint16_t)cfg->http_port);
		inet_pton(AF_INET6, cfg->listen, &a->sin6_addr);
		sl = sizeof *a;
	} else {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;
		a->sin_family = AF_INET;
		a->sin_port = htons((uint16_t)cfg->http_port);
		inet_pton(AF_INET, cfg->listen, &a->sin_addr);
		sl = sizeof *a;
	}
	f->lfd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (f->lfd < 0) {
		rc = -errno;
		snprintf(err, errlen, "cannot listen on %s port %d: %s", cfg->listen, cfg->http_port,
			 strerror(-rc));
		goto fail;
	}
	setsockopt(f->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	/* "::" means IPv6 only, as the listener always did. */
	if (cfg->listen_v6)
		setsockopt(f->lfd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
	if (bind(f->lfd, (struct sockaddr *)&ss, sl) < 0 || listen(f->lfd, 1024) < 0) {
		rc = -errno;
		snprintf(err, errlen, "cannot listen on %s port %d: %s", cfg->listen, cfg->http_port,
			 strerror(-rc));
		goto fail;
	}
	sl = sizeof ss;
	if (getsockname(f->lfd, (struct sockaddr *)&ss, &sl) < 0) {
		rc = -errno;
		snprintf(err, errlen, "getsockname: %s", strerror(-rc));
		goto fail;
	}
	f->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
						 : ((struct sockaddr_in *)&ss)->sin_port);

	f->epfd = epoll_create1(EPOLL_CLOEXEC);
	f->stopfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (f->epfd < 0 || f->stopfd < 0) {
		rc = -errno;
		snprintf(err, errlen, "cannot create the front door's event loop: %s",
			 strerror(-rc));
		goto fail;
	}
	memset(&ev, 0, sizeof ev);
	ev.events = EPOLLIN;
	ev.data.u64 = TAG_LISTEN;
	if (epoll_ctl(f->epfd, EPOLL_CTL_ADD, f->lfd, &ev) < 0)
		goto epoll_fail;
	ev.data.u64 = TAG_STOP;
	if (epoll_ctl(f->epfd, EPOLL_CTL_ADD, f->stopfd, &ev) < 0)
		goto epoll_fail;
	*out = f;
	return 0;
epoll_fail:
	rc = -errno;
	snprintf(err, errlen, "epoll_ctl: %s", strerror(-rc));
fail:
	front_close(f);
	return rc;
}

int front_port(const struct front *f)
{
	return f->port;
}

int front_start(struct front *f, struct http_server *http, struct ws_server *ws, char *err,
		size_t errlen)
{
	f->http = http;
	f->ws = ws;
	if (pthread_create(&f->thread, NULL, front_thread, f) != 0) {
		snprintf(err, errlen, "cannot start the front-door thread");
		return -EAGAIN;
	}
	f->started = 1;
	return 0;
}

void front_close(struct front *f)
{
	uint64_t one = 1;
	int i;

	if (!f)
		return;
	if (f->started) {
		if (write(f->stopfd, &one, sizeof one) < 0)
			(void)0;
		pthread_join(f->thread, NULL);
	}
	if (f->conns)
		for (i = 0; i < f->n_slots; i++)
			if (f->conns[i].fd >= 0)
				close(f->conns[i].fd);
	if (f->lfd >= 0)
		close(f->lfd);
	if (f->epfd >= 0)
		close(f->epfd);
	if (f->stopfd >= 0)
		close(f->stopfd);
	ws_addr_cleanup(&f->addrs);
	free(f->conns);
	free(f);
}
