/* sock.c: traced socket calls (see sock.h for the event they emit). */
#include "sock.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define PREVIEW_MAX 256

struct name_tok {
	int v;
	const char *name;
};

static const struct name_tok domain_names[] = {
	{AF_INET, "AF_INET"}, {AF_INET6, "AF_INET6"}, {AF_UNIX, "AF_UNIX"}, {0, NULL}};
static const struct name_tok type_names[] = {
	{SOCK_STREAM, "SOCK_STREAM"}, {SOCK_DGRAM, "SOCK_DGRAM"}, {SOCK_RAW, "SOCK_RAW"}, {0, NULL}};
static const struct name_tok level_names[] = {
	{SOL_SOCKET, "SOL_SOCKET"}, {IPPROTO_TCP, "IPPROTO_TCP"}, {IPPROTO_IP, "IPPROTO_IP"},
	{IPPROTO_IPV6, "IPPROTO_IPV6"}, {0, NULL}};
static const struct name_tok sol_names[] = {
	{SO_REUSEADDR, "SO_REUSEADDR"}, {SO_REUSEPORT, "SO_REUSEPORT"}, {SO_RCVBUF, "SO_RCVBUF"},
	{SO_SNDBUF, "SO_SNDBUF"}, {SO_KEEPALIVE, "SO_KEEPALIVE"}, {SO_LINGER, "SO_LINGER"},
	{0, NULL}};
static const struct name_tok tcp_names[] = {
	{TCP_NODELAY, "TCP_NODELAY"}, {TCP_CORK, "TCP_CORK"}, {TCP_MAXSEG, "TCP_MAXSEG"},
	{TCP_QUICKACK, "TCP_QUICKACK"}, {0, NULL}};
static const struct name_tok ip_names[] = {
	{IP_MTU_DISCOVER, "IP_MTU_DISCOVER"}, {IP_TTL, "IP_TTL"}, {IP_TOS, "IP_TOS"},
	{IP_RECVERR, "IP_RECVERR"}, {0, NULL}};
static const struct name_tok how_names[] = {
	{SHUT_RD, "SHUT_RD"}, {SHUT_WR, "SHUT_WR"}, {SHUT_RDWR, "SHUT_RDWR"}, {0, NULL}};

static const char *tok_name(const struct name_tok *t, int v)
{
	for (; t->name; t++)
		if (t->v == v)
			return t->name;
	return "?";
}

const char *lsock_errno_name(int e)
{
	const char *n = strerrorname_np(e);

	return n ? n : "E?";
}

json_t *lsock_addr_json(const struct sockaddr *sa)
{
	char host[INET6_ADDRSTRLEN] = "";
	int port = 0;

	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
		port = ntohs(in->sin_port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
		port = ntohs(in6->sin6_port);
	}
	return json_pack("{s:s, s:i}", "addr", host, "port", port);
}

int lsock_parse_addr(const char *addr, int port, struct sockaddr_storage *ss, socklen_t *len)
{
	struct sockaddr_in *in = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof *ss);
	if (port < 0 || port > 65535)
		return -EINVAL;
	if (inet_pton(AF_INET, addr, &in->sin_addr) == 1) {
		in->sin_family = AF_INET;
		in->sin_port = htons((uint16_t)port);
		*len = sizeof *in;
		return 0;
	}
	if (inet_pton(AF_INET6, addr, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)port);
		*len = sizeof *in6;
		return 0;
	}
	return -EINVAL;
}

/* The printable preview of at most max bytes into out (room for 4 * max);
 * returns its length. */
static size_t preview_text(const unsigned char *b, size_t len, size_t max, char *out)
{
	static const char hex[] = "0123456789abcdef";
	size_t i, o = 0;

	if (max > PREVIEW_MAX)
		max = PREVIEW_MAX;
	for (i = 0; i < len && i < max; i++) {
		if (b[i] >= 0x20 && b[i] < 0x7f && b[i] != '\\') {
			out[o++] = (char)b[i];
		} else if (b[i] == '\\') {
			out[o++] = '\\';
			out[o++] = '\\';
		} else if (b[i] == '\n') {
			out[o++] = '\\';
			out[o++] = 'n';
		} else {
			out[o++] = '\\';
			out[o++] = 'x';
			out[o++] = hex[b[i] >> 4];
			out[o++] = hex[b[i] & 15];
		}
	}
	return o;
}

json_t *lsock_preview(const void *buf, size_t len, size_t max)
{
	char out[PREVIEW_MAX * 4 + 1];

	return json_stringn(out, preview_text(buf, len, max, out));
}

/*
 * A traced call is recorded as a binary struct sc_rec on the calling thread
 * (ev_rec_begin: the seq and time, then a copy of the arguments, result and
 * at most PREVIEW_MAX bytes of data), and turned into the syscall event's JSON
 * by sc_format on the emitter's writer thread. The JSON is exactly what the
 * calls emitted when they built it themselves: the members and their order
 * per call are listed in sc_format.
 */
enum sc_call {
	SC_SOCKET,
	SC_SETSOCKOPT,
	SC_LINGER,
	SC_BIND,
	SC_LISTEN,
	SC_ACCEPT,
	SC_CONNECT,
	SC_SEND,
	SC_RECV,
	SC_SENDTO,
	SC_RECVFROM,
	SC_SHUTDOWN,
	SC_CLOSE,
};

static const char *const call_names[] = {
	[SC_SOCKET] = "socket",   [SC_SETSOCKOPT] = "setsockopt", [SC_LINGER] = "setsockopt",
	[SC_BIND] = "bind",       [SC_LISTEN] = "listen",         [SC_ACCEPT] = "accept",
	[SC_CONNECT] = "connect", [SC_SEND] = "send",             [SC_RECV] = "recv",
	[SC_SENDTO] = "sendto",   [SC_RECVFROM] = "recvfrom",     [SC_SHUTDOWN] = "shutdown",
	[SC_CLOSE] = "close",
};

/* An IPv4 or IPv6 address and port, as the event shows it. */
struct sc_addr {
	uint16_t family;
	uint16_t port; /* host order */
	unsigned char a[16];
};

enum {
	SC_HAVE_ADDR = 1 << 0,  /* addr is set (bind, connect: args; sendto: args.to) */
	SC_HAVE_ADDR2 = 1 << 1, /* addr2 is set (bind/connect: local; accept: peer; recvfrom: from) */
	SC_HAVE_DATA = 1 << 2,  /* bytes and the preview are part of the event */
};

struct sc_rec {
	char who[32];
	int conn, fd;
	int call;    /* enum sc_call */
	int flags;   /* SC_HAVE_* */
	int a1, a2, a3; /* socket: domain, type; setsockopt: level, name, value;
			 * linger: onoff, secs; listen: backlog; shutdown: how */
	int64_t ret; /* >= 0, or -errno */
	int64_t t_call_us, t_ret_us;
	int64_t len;       /* send, recv, sendto, recvfrom: the len argument */
	int64_t bytes;     /* bytes moved (SC_HAVE_DATA) */
	int64_t truncated; /* recvfrom: the datagram's real length when cut, else -1 */
	struct sc_addr addr, addr2;
	uint16_t nprev; /* bytes in preview */
	unsigned char preview[PREVIEW_MAX];
};

_Static_assert(sizeof(struct sc_rec) <= EV_REC_MAX, "a call record must fit an event slot");

static void sc_set_addr(struct sc_addr *out, const struct sockaddr *sa)
{
	memset(out, 0, sizeof *out);
	out->family = sa->sa_family;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
		memcpy(out->a, &in->sin_addr, 4);
		out->port = ntohs(in->sin_port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
		memcpy(out->a, &in6->sin6_addr, 16);
		out->port = ntohs(in6->sin6_port);
	}
}

/* {"addr":"127.0.0.1","port":5000}, as lsock_addr_json. */
static void put_addr(struct ev_buf *b, const struct sc_addr *a)
{
	char host[INET6_ADDRSTRLEN] = "";

	if (a->family == AF_INET || a->family == AF_INET6)
		inet_ntop(a->family, a->a, host, sizeof host);
	ev_buf_puts(b, "{");
	ev_buf_key(b, "addr");
	ev_buf_str(b, host);
	ev_buf_key(b, "port");
	ev_buf_int(b, a->family == AF_INET || a->family == AF_INET6 ? a->port : 0);
	ev_buf_puts(b, "}");
}

/* The data preview as a JSON string in one pass: lsock_preview's text
 * (printable ASCII as is, a backslash doubled, \n, \xNN for other bytes)
 * escaped as jansson escapes it. */
static void put_preview(struct ev_buf *b, const unsigned char *d, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	char out[PREVIEW_MAX * 5 + 2];
	size_t i, o = 0;

	out[o++] = '"';
	for (i = 0; i < n && i < PREVIEW_MAX; i++) {
		unsigned char c = d[i];

		if (c >= 0x20 && c < 0x7f && c != '\\' && c != '"') {
			out[o++] = (char)c;
		} else if (c == '"') {
			out[o++] = '\\';
			out[o++] = '"';
		} else if (c == '\\') {
			memcpy(out + o, "\\\\\\\\", 4);
			o += 4;
		} else if (c == '\n') {
			memcpy(out + o, "\\\\n", 3);
			o += 3;
		} else {
			memcpy(out + o, "\\\\x", 3);
			o += 3;
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 15];
		}
	}
	out[o++] = '"';
	ev_buf_put(b, out, o);
}

static void put_kv_str(struct ev_buf *b, const char *k, const char *v)
{
	ev_buf_key(b, k);
	ev_buf_str(b, v);
}

static void put_kv_int(struct ev_buf *b, const char *k, long long v)
{
	ev_buf_key(b, k);
	ev_buf_int(b, v);
}

static void sc_format(struct ev_buf *b, const void *p)
{
	const struct sc_rec *r = p;
	const struct name_tok *names;

	put_kv_str(b, "who", r->who);
	put_kv_int(b, "conn", r->conn);
	put_kv_str(b, "call", call_names[r->call]);
	put_kv_int(b, "fd", r->fd);
	ev_buf_key(b, "args");
	switch (r->call) {
	case SC_SOCKET:
		ev_buf_puts(b, "{");
		put_kv_str(b, "domain", tok_name(domain_names, r->a1));
		put_kv_str(b, "type", tok_name(type_names, r->a2));
		ev_buf_puts(b, "}");
		break;
	case SC_SETSOCKOPT:
		names = r->a1 == IPPROTO_TCP  ? tcp_names
			: r->a1 == IPPROTO_IP ? ip_names
					      : sol_names;
		ev_buf_puts(b, "{");
		put_kv_str(b, "level", tok_name(level_names, r->a1));
		put_kv_str(b, "name", tok_name(names, r->a2));
		put_kv_int(b, "value", r->a3);
		ev_buf_puts(b, "}");
		break;
	case SC_LINGER:
		ev_buf_puts(b, "{");
		put_kv_str(b, "level", "SOL_SOCKET");
		put_kv_str(b, "name", "SO_LINGER");
		ev_buf_key(b, "value");
		ev_buf_puts(b, "{");
		put_kv_int(b, "l_onoff", r->a1);
		put_kv_int(b, "l_linger", r->a2);
		ev_buf_puts(b, "}}");
		break;
	case SC_BIND:
	case SC_CONNECT:
		put_addr(b, &r->addr);
		break;
	case SC_LISTEN:
		ev_buf_puts(b, "{");
		put_kv_int(b, "backlog", r->a1);
		ev_buf_puts(b, "}");
		break;
	case SC_SEND:
	case SC_RECV:
	case SC_SENDTO:
	case SC_RECVFROM:
		ev_buf_puts(b, "{");
		put_kv_int(b, "len", r->len);
		put_kv_str(b, "flags", "0");
		if (r->call == SC_SENDTO) {
			ev_buf_key(b, "to");
			put_addr(b, &r->addr);
		}
		ev_buf_puts(b, "}");
		break;
	case SC_SHUTDOWN:
		ev_buf_puts(b, "{");
		put_kv_str(b, "how", tok_name(how_names, r->a1));
		ev_buf_puts(b, "}");
		break;
	default: /* accept, close */
		ev_buf_puts(b, "{}");
	}
	if (r->flags & SC_HAVE_ADDR2) {
		ev_buf_key(b, r->call == SC_ACCEPT ? "peer" : r->call == SC_RECVFROM ? "from" : "local");
		put_addr(b, &r->addr2);
	}
	if (r->flags & SC_HAVE_DATA) {
		put_kv_int(b, "bytes", r->bytes > 0 ? r->bytes : 0);
		/* An empty datagram is data too; an empty stream read is not. */
		if (r->bytes > 0 || r->call == SC_RECVFROM) {
			ev_buf_key(b, "data");
			put_preview(b, r->preview, r->nprev);
		}
		if (r->bytes > PREVIEW_MAX) {
			ev_buf_key(b, "data_truncated");
			ev_buf_puts(b, "true");
		}
		if (r->call == SC_RECV && r->ret == 0) {
			ev_buf_key(b, "eof");
			ev_buf_puts(b, "true");
		}
		if (r->truncated >= 0)
			put_kv_int(b, "truncated", r->truncated);
	}
	if (r->ret < 0) {
		int e = (int)-r->ret;
		char msg[128];

		put_kv_int(b, "ret", -1);
		put_kv_int(b, "errno", e);
		put_kv_str(b, "errno_name", lsock_errno_name(e));
		put_kv_str(b, "error", strerror_r(e, msg, sizeof msg));
	} else {
		put_kv_int(b, "ret", r->ret);
		put_kv_int(b, "errno", 0);
	}
	put_kv_int(b, "t_call_us", r->t_call_us);
	put_kv_int(b, "blocked_us", r->t_ret_us - r->t_call_us);
}

/* Start the record of one call that was made at t_call and returned at t_ret
 * (ev_clock_ns). NULL once the run has ended (nothing to record). */
static struct sc_rec *sc_begin(struct lab_ctx *ctx, struct ev_rec *tok, struct lsock_who w,
			       enum sc_call call, int fd, uint64_t t_call, uint64_t t_ret)
{
	struct sc_rec *r = ev_rec_begin(ctx->em, "syscall", sc_format, t_ret, tok);
	size_t n;

	if (!r)
		return NULL;
	n = strnlen(w.who, sizeof r->who - 1);
	memcpy(r->who, w.who, n);
	r->who[n] = '\0';
	r->conn = w.conn;
	r->call = call;
	r->fd = fd;
	r->flags = 0;
	r->truncated = -1;
	r->t_call_us = ev_ns_to_us(ctx->em, t_call);
	/* The record's own time (event.h: a deferred record is stamped when it
	 * is reserved): the call's return as the stream orders it. */
	r->t_ret_us = ev_ns_to_us(ctx->em, tok->t_ns);
	return r;
}

/* The bytes a send or receive moved and a copy of the first PREVIEW_MAX. */
static void sc_data(struct sc_rec *r, const void *buf, ssize_t n)
{
	r->flags |= SC_HAVE_DATA;
	r->bytes = n > 0 ? n : 0;
	r->nprev = (uint16_t)(n <= 0 ? 0 : n > PREVIEW_MAX ? PREVIEW_MAX : n);
	memcpy(r->preview, buf, r->nprev);
}

static void sc_commit(struct lab_ctx *ctx, struct ev_rec *tok, struct sc_rec *r, long long ret)
{
	r->ret = ret;
	ev_rec_commit(ctx->em, tok);
}

/* A call that is tried before waiting (send, sendto) makes no poll() when it
 * succeeds at once, so it checks for the end of the run itself: the deadline
 * on every call, the cancel fd only when this thread has not looked at it for
 * a millisecond (a poll() costs more than the send; every wait below looks at
 * it too). A run cancelled while a thread sends without ever blocking thus
 * stops within a millisecond. */
static __thread uint64_t cancel_looked;

static int sc_cancelled(struct lab_ctx *ctx, uint64_t now)
{
	if (ctx->watch) /* it watches the cancel fd and the deadline for us */
		return lab_watch_stopped(ctx);
	if (ctx->deadline_us > 0 && ev_ns_to_us(ctx->em, now) >= ctx->deadline_us)
		return 1;
	if (ctx->cancel_fd >= 0 && now - cancel_looked >= 1000000) {
		struct pollfd p = {.fd = ctx->cancel_fd, .events = POLLIN};
		cancel_looked = now;
		return poll(&p, 1, 0) > 0;
	}
	return 0;
}

/* lab_wait_fd2. It looks at the cancel fd in the same poll(): the caller
 * notes that (sc_looked) with the clock it reads after the call anyway. */
static void sc_looked(uint64_t now)
{
	cancel_looked = now;
}

static int sc_wait(struct lab_ctx *ctx, int fd, short events, int wake_fd, int timeout_ms)
{
	int rc = lab_wait_fd2(ctx, fd, events, wake_fd, timeout_ms);

	/* A wait that timed out or was woken looked at the cancel fd too: the
	 * next send() need not (a udp-ping client sends right after its wait
	 * for the next probe's time ran out). */
	if (rc == 0 || rc == 2)
		sc_looked(ev_clock_ns());
	return rc;
}

/*
 * A receive with no timeout and no wake fd, on a run with a stop watcher
 * (lab.h: lab_watch_start), is the classic blocking call and nothing else:
 * one recv() that sleeps in the kernel, with no poll() before it and no timer.
 * The watcher interrupts it (EINTR) when the run is cancelled or reaches its
 * deadline. Returns the call's result or -errno, -ECANCELED when the run
 * stopped, or -EAGAIN when the caller must wait with poll() instead (no
 * watcher or a non-blocking socket).
 */
enum { SC_RECV_STREAM, SC_RECV_DGRAM };

static ssize_t sc_block_recv(struct lab_ctx *ctx, int kind, int fd, void *buf, size_t len,
			     struct sockaddr_storage *from, socklen_t *fl, int wake_fd)
{
	for (;;) {
		ssize_t n;
		int e, rc = lab_block_begin2(ctx, wake_fd);

		if (rc == 2)
			return -EINTR; /* woken: as a poll() on wake_fd returns */
		if (rc < 0)
			return lab_watch_stopped(ctx) ? -ECANCELED : -EAGAIN;
		if (kind == SC_RECV_DGRAM) {
			*fl = sizeof *from;
			n = recvfrom(fd, buf, len, MSG_TRUNC, (struct sockaddr *)from, fl);
		} else {
			n = recv(fd, buf, len, 0);
		}
		e = errno;
		lab_block_end(ctx);
		if (n >= 0)
			return n;
		if (e != EINTR)
			return -e;
		if (lab_watch_stopped(ctx))
			return -ECANCELED;
		if (lab_block_woken(ctx, wake_fd))
			return -EINTR;
	}
}

/* Whether a receive on this thread tries the call before waiting. A receive
 * that finds its data already there needs no poll(): on loopback, when one
 * CPU runs both ends, the reply is usually in before the sender is back from
 * its send(). One that has to wait would only waste a call trying. So a
 * thread tries first while its tries find data, polls first after one that
 * found none, and tries again every 16th receive. */
static __thread int recv_found;
static __thread unsigned recv_count;

static int sc_try_first(void)
{
	return recv_found || (++recv_count & 15) == 0;
}

int lsock_socket(struct lab_ctx *ctx, struct lsock_who w, int domain, int type)
{
	uint64_t t = ev_clock_ns();
	int fd = socket(domain, type | SOCK_CLOEXEC, 0);
	int rc = fd < 0 ? -errno : fd;
	uint64_t t1 = ev_clock_ns();
	struct ev_rec tok;
	struct sc_rec *r = sc_begin(ctx, &tok, w, SC_SOCKET, rc < 0 ? -1 : fd, t, t1);

	if (r) {
		r->a1 = domain;
		r->a2 = type;
		sc_commit(ctx, &tok, r, rc);
	}
	return rc;
}

int lsock_setsockopt_int(struct lab_ctx *ctx, struct lsock_who w, int fd, int level, int name,
			 int value)
{
	uint64_t t = ev_clock_ns();
	int rc = setsockopt(fd, level, name, &value, sizeof value) < 0 ? -errno : 0;
	uint64_t t1 = ev_clock_ns();
	struct ev_rec tok;
	struct sc_rec *r = sc_begin(ctx, &tok, w, SC_SETSOCKOPT, fd, t, t1);

	if (r) {
		r->a1 = level;
		r->a2 = name;
		r->a3 = value;
		sc_commit(ctx, &tok, r, rc);
	}
	return rc;
}

int lsock_setsockopt_linger(struct lab_ctx *ctx, struct lsock_who w, int fd, int onoff, int secs)
{
	uint64_t t = ev_clock_ns();
	struct linger l = {.l_onoff = onoff, .l_linger = secs};
	int rc = setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l) < 0 ? -errno : 0;
	uint64_t t1 = ev_clock_ns();
	struct ev_rec tok;
	struct sc_rec *r = sc_begin(ctx, &tok, w, SC_LINGER, fd, t, t1);

	if (r) {
		r->a1 = onoff;
		r->a2 = secs;
		sc_commit(ctx, &tok, r, rc);
	}
	return rc;
}

int lsock_bind(struct lab_ctx *ctx, struct lsock_who w, int fd, const struct sockaddr *sa,
	       socklen_t len)
{
	uint64_t t = ev_clock_ns();
	int rc = bind(fd, sa, len) < 0 ? -errno : 0;
	uint64_t t1 = ev_clock_ns();
	struct sockaddr_storage got;
	socklen_t gl = sizeof got;
	/* Port 0 asks the kernel to choose: report what it chose. */
	int have_local = rc == 0 && getsockname(fd, (struct sockaddr *)&got, &gl) == 0;
	struct ev_rec tok;
	struct sc_rec *r = sc_begin(ctx, &tok, w, SC_BIND, fd, t, t1);

	if (r) {
		sc_set_addr(&r->addr, sa);
		r->flags |= SC_HAVE_ADDR;
		if (have_local) {
			sc_set_addr(&r->addr2, (struct sockaddr *)&got);
			r->flags |= SC_HAVE_ADDR2;
		}
		sc_commit(ctx, &tok, r, rc);
	}
	return rc;
}

int lsock_listen(struct lab_ctx *ctx, struct lsock_who w, int fd, int backlog)
{
	uint64_t t = ev_clock_ns();
	int rc = listen(fd, backlog) < 0 ? -errno : 0;
	uint64_t t1 = ev_clock_ns();
	struct ev_rec tok;
	struct sc_rec *r = sc_begin(ctx, &tok, w, SC_LISTEN, fd, t, t1);

	if (r) {
		r->a1 = backlog;
		sc_commit(ctx, &tok, r, rc);
	}
	return rc;
}

int lsock_accept(struct lab_ctx *ctx, struct lsock_who w, int lfd, struct sockaddr_storage *peer,
		 int timeout_ms)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	uint64_t t = ev_clock_ns(), t1;
	struct ev_rec tok;
	struct sc_rec *r;
	int rc;

	for (;;) {
		rc = sc_wait(ctx, lfd, POLLIN, -1, timeout_ms);
		if (rc < 0)
			return rc;
		if (rc == 0)
			return -ETIMEDOUT;
		rc = accept4(lfd, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC);
		if (rc < 0 && (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED))
			continue; /* the connection went away between poll and accept */
		if (rc < 0)
			rc = -errno;
		break;
	}
	if (rc >= 0 && peer)
		*peer = ss;
	t1 = ev_clock_ns();
	sc_looked(t1);
	r = sc_begin(ctx, &tok, w, SC_ACCEPT, lfd, t, t1);
	if (r) {
		if (rc >= 0) {
			sc_set_addr(&r->addr2, (struct sockaddr *)&ss);
			r->flags |= SC_HAVE_ADDR2;
		}
		sc_commit(ctx, &tok, r, rc);
	}
	return rc;
}

int lsock_connect(struct lab_ctx *ctx, struct lsock_who w, int fd, const struct sockaddr *sa,
		  socklen_t len, int timeout_ms)
{
	uint64_t t = ev_clock_ns(), t1;
	int flags = fcntl(fd, F_GETFL);
	struct sockaddr_storage me;
	socklen_t ml = sizeof me;
	int rc, have_local;
	struct ev_rec tok;
	struct sc_rec *r;

	fcntl(fd, F_SETFL, flags | O_NONBLOCK);
	rc = connect(fd, sa, len) < 0 ? -errno : 0;
	if (rc == -EINPROGRESS) {
		int soerr = 0;
		socklen_t sl = sizeof soerr;

		rc = sc_wait(ctx, fd, POLLOUT, -1, timeout_ms);
		if (rc == 0)
			rc = -ETIMEDOUT;
		if (rc > 0) {
			rc = getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0 ? -errno : -soerr;
		}
	}
	if (rc == -ECANCELED)
		return rc;
	t1 = ev_clock_ns();
	fcntl(fd, F_SETFL, flags);
	have_local = rc == 0 && getsockname(fd, (struct sockaddr *)&me, &ml) == 0;
	r = sc_begin(ctx, &tok, w, SC_CONNECT, fd, t, t1);
	if (r) {
		sc_set_addr(&r->addr, sa);
		r->flags |= SC_HAVE_ADDR;
		if (have_local) {
			sc_set_addr(&r->addr2, (struct sockaddr *)&me);
			r->flags |= SC_HAVE_ADDR2;
		}
		sc_commit(ctx, &tok, r, rc);
	}
	return rc;
}

ssize_t lsock_send(struct lab_ctx *ctx, struct lsock_who w, int fd, const void *buf, size_t len,
		   int timeout_ms)
{
	uint64_t t = ev_clock_ns(), t1;
	struct ev_rec tok;
	struct sc_rec *r;
	int waited = 0;
	ssize_t n;

	/* Try first: a send that does not block needs no poll(). */
	if (sc_cancelled(ctx, t))
		return -ECANCELED;
	for (;;) {
		int rc;

		n = send(fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n >= 0)
			break;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN) {
			n = -errno;
			break;
		}
		rc = sc_wait(ctx, fd, POLLOUT, -1, timeout_ms);
		if (rc < 0)
			return rc;
		if (rc == 0)
			return -ETIMEDOUT;
		waited = 1;
	}
	t1 = ev_clock_ns();
	if (waited)
		sc_looked(t1);
	r = sc_begin(ctx, &tok, w, SC_SEND, fd, t, t1);
	if (r) {
		r->len = (int64_t)len;
		sc_data(r, buf, n);
		sc_commit(ctx, &tok, r, n);
	}
	return n;
}

ssize_t lsock_send_all(struct lab_ctx *ctx, struct lsock_who w, int fd, const void *buf,
		       size_t len, int timeout_ms)
{
	const char *p = buf;
	size_t done = 0;

	while (done < len) {
		ssize_t n = lsock_send(ctx, w, fd, p + done, len - done, timeout_ms);
		if (n < 0)
			return n;
		done += (size_t)n;
	}
	return (ssize_t)done;
}

ssize_t lsock_recv(struct lab_ctx *ctx, struct lsock_who w, int fd, void *buf, size_t len,
		   int timeout_ms)
{
	uint64_t t = ev_clock_ns(), t1;
	struct ev_rec tok;
	struct sc_rec *r;
	int waited = 0;
	ssize_t n = -EAGAIN;

	if (ctx->watch && timeout_ms < 0) {
		n = sc_block_recv(ctx, SC_RECV_STREAM, fd, buf, len, NULL, NULL, -1);
		if (n == -ECANCELED || n == -EINTR)
			return n;
	} else if (sc_try_first()) {
		if (sc_cancelled(ctx, t))
			return -ECANCELED;
		n = recv(fd, buf, len, MSG_DONTWAIT);
		if (n < 0)
			n = -errno;
		recv_found = n != -EAGAIN && n != -EINTR;
	}
	while (n == -EAGAIN || n == -EINTR) {
		int rc = sc_wait(ctx, fd, POLLIN, -1, timeout_ms);
		if (rc < 0)
			return rc;
		if (rc == 0)
			return -ETIMEDOUT;
		waited = 1;
		n = recv(fd, buf, len, MSG_DONTWAIT);
		if (n < 0)
			n = -errno;
	}
	t1 = ev_clock_ns();
	if (waited)
		sc_looked(t1);
	r = sc_begin(ctx, &tok, w, SC_RECV, fd, t, t1);
	if (r) {
		r->len = (int64_t)len;
		sc_data(r, buf, n);
		sc_commit(ctx, &tok, r, n);
	}
	return n;
}

ssize_t lsock_sendto(struct lab_ctx *ctx, struct lsock_who w, int fd, const void *buf, size_t len,
		     const struct sockaddr *to, socklen_t tolen, int timeout_ms, struct lsock_io *io)
{
	uint64_t t = ev_clock_ns(), t1;
	struct ev_rec tok;
	struct sc_rec *r;
	int waited = 0;
	ssize_t n;

	if (sc_cancelled(ctx, t))
		return -ECANCELED;
	for (;;) {
		int rc;

		n = sendto(fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL, to, tolen);
		if (n >= 0)
			break;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN) {
			n = -errno;
			break;
		}
		rc = sc_wait(ctx, fd, POLLOUT, io ? io->wake_fd : -1, timeout_ms);
		if (rc < 0)
			return rc;
		if (rc == 0)
			return -ETIMEDOUT;
		if (rc == 2)
			return -EINTR;
		waited = 1;
	}
	t1 = ev_clock_ns();
	if (waited)
		sc_looked(t1);
	if (io) {
		io->call_us = ev_ns_to_us(ctx->em, t);
		io->ret_us = ev_ns_to_us(ctx->em, t1);
	}
	r = sc_begin(ctx, &tok, w, SC_SENDTO, fd, t, t1);
	if (r) {
		r->len = (int64_t)len;
		sc_set_addr(&r->addr, to);
		r->flags |= SC_HAVE_ADDR;
		sc_data(r, buf, n);
		sc_commit(ctx, &tok, r, n);
	}
	return n;
}

ssize_t lsock_recvfrom(struct lab_ctx *ctx, struct lsock_who w, int fd, void *buf, size_t len,
		       struct sockaddr_storage *from, int timeout_ms, struct lsock_io *io)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	uint64_t t = ev_clock_ns(), t1;
	struct ev_rec tok;
	struct sc_rec *r;
	int waited = 0;
	ssize_t n = -EAGAIN, got = 0;

	/* MSG_TRUNC: the return value is the datagram's real length even when
	 * it did not fit, so a cut datagram is visible. A datagram already
	 * there is taken before wake_fd is looked at, as poll() would. */
	if (ctx->watch && timeout_ms < 0) {
		n = sc_block_recv(ctx, SC_RECV_DGRAM, fd, buf, len, &ss, &sl, io ? io->wake_fd : -1);
		if (n == -ECANCELED || n == -EINTR)
			return n;
	} else if (sc_try_first()) {
		if (sc_cancelled(ctx, t))
			return -ECANCELED;
		n = recvfrom(fd, buf, len, MSG_DONTWAIT | MSG_TRUNC, (struct sockaddr *)&ss, &sl);
		if (n < 0)
			n = -errno;
		recv_found = n != -EAGAIN && n != -EINTR;
	}
	while (n == -EAGAIN || n == -EINTR) {
		int rc = sc_wait(ctx, fd, POLLIN, io ? io->wake_fd : -1, timeout_ms);
		if (rc < 0)
			return rc;
		if (rc == 0)
			return -ETIMEDOUT;
		if (rc == 2)
			return -EINTR;
		waited = 1;
		sl = sizeof ss;
		n = recvfrom(fd, buf, len, MSG_DONTWAIT | MSG_TRUNC, (struct sockaddr *)&ss, &sl);
		if (n < 0)
			n = -errno;
	}
	t1 = ev_clock_ns();
	if (waited)
		sc_looked(t1);
	if (io) {
		io->call_us = ev_ns_to_us(ctx->em, t);
		io->ret_us = ev_ns_to_us(ctx->em, t1);
	}
	if (n >= 0) {
		got = (size_t)n < len ? n : (ssize_t)len;
		if (from)
			*from = ss;
	}
	r = sc_begin(ctx, &tok, w, SC_RECVFROM, fd, t, t1);
	if (r) {
		r->len = (int64_t)len;
		if (n >= 0) {
			sc_set_addr(&r->addr2, (struct sockaddr *)&ss);
			r->flags |= SC_HAVE_ADDR2;
			sc_data(r, buf, got);
			if ((size_t)n > len)
				r->truncated = n;
		}
	}
	if (n >= 0 && (size_t)n > len)
		n = (ssize_t)len;
	if (r)
		sc_commit(ctx, &tok, r, n);
	return n;
}

int lsock_shutdown(struct lab_ctx *ctx, struct lsock_who w, int fd, int how)
{
	uint64_t t = ev_clock_ns();
	int rc = shutdown(fd, how) < 0 ? -errno : 0;
	uint64_t t1 = ev_clock_ns();
	struct ev_rec tok;
	struct sc_rec *r = sc_begin(ctx, &tok, w, SC_SHUTDOWN, fd, t, t1);

	if (r) {
		r->a1 = how;
		sc_commit(ctx, &tok, r, rc);
	}
	return rc;
}

int lsock_close(struct lab_ctx *ctx, struct lsock_who w, int fd)
{
	uint64_t t = ev_clock_ns();
	int rc = close(fd) < 0 ? -errno : 0;
	uint64_t t1 = ev_clock_ns();
	struct ev_rec tok;
	struct sc_rec *r = sc_begin(ctx, &tok, w, SC_CLOSE, fd, t, t1);

	if (r)
		sc_commit(ctx, &tok, r, rc);
	return rc;
}

json_t *lsock_trace_cost(struct lab_ctx *ctx, int inside, int64_t rtt_us)
{
	struct ev_trace_stats st;

	ev_trace_stats(ctx->em, &st);
	if (!st.calls)
		return NULL;
	return json_pack("{s:I, s:I, s:I, s:i, s:I, s:I}", "calls", (json_int_t)st.calls,
			 "median_ns", (json_int_t)st.call_ns_median, "tail_ns",
			 (json_int_t)st.call_ns_p99, "inside", inside, "added_ns",
			 (json_int_t)(st.call_ns_median * (uint64_t)inside), "rtt_us",
			 (json_int_t)rtt_us);
}
