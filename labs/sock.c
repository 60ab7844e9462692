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

json_t *lsock_preview(const void *buf, size_t len, size_t max)
{
	const unsigned char *b = buf;
	char out[PREVIEW_MAX * 4 + 1];
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
			static const char hex[] = "0123456789abcdef";
			out[o++] = '\\';
			out[o++] = 'x';
			out[o++] = hex[b[i] >> 4];
			out[o++] = hex[b[i] & 15];
		}
	}
	return json_stringn(out, o);
}

/* Start a syscall event: the common fields. */
static json_t *sc_new(struct lsock_who w, const char *call, int fd, json_t *args)
{
	json_t *f = json_pack("{s:s, s:i, s:s, s:i}", "who", w.who, "conn", w.conn, "call", call,
			      "fd", fd);

	json_object_set_new(f, "args", args ? args : json_object());
	return f;
}

/* The bytes a send or receive moved and a printable preview of them
 * (n <= 0: none). */
static void sc_data(json_t *f, const void *buf, ssize_t n)
{
	json_object_set_new(f, "bytes", json_integer(n > 0 ? n : 0));
	if (n > 0)
		json_object_set_new(f, "data", lsock_preview(buf, (size_t)n, PREVIEW_MAX));
	if (n > PREVIEW_MAX)
		json_object_set_new(f, "data_truncated", json_true());
}

/* Finish and emit: ret >= 0 is success, negative is -errno. */
static void sc_emit(struct lab_ctx *ctx, json_t *f, long long ret, int64_t t_call)
{
	int64_t now = ev_now_us(ctx->em);

	if (ret < 0) {
		int e = (int)-ret;
		char msg[128];
		json_object_set_new(f, "ret", json_integer(-1));
		json_object_set_new(f, "errno", json_integer(e));
		json_object_set_new(f, "errno_name", json_string(lsock_errno_name(e)));
		json_object_set_new(f, "error", json_string(strerror_r(e, msg, sizeof msg)));
	} else {
		json_object_set_new(f, "ret", json_integer(ret));
		json_object_set_new(f, "errno", json_integer(0));
	}
	json_object_set_new(f, "t_call_us", json_integer(t_call));
	json_object_set_new(f, "blocked_us", json_integer(now - t_call));
	ev_emit(ctx->em, "syscall", f);
}

int lsock_socket(struct lab_ctx *ctx, struct lsock_who w, int domain, int type)
{
	int64_t t = ev_now_us(ctx->em);
	int fd = socket(domain, type | SOCK_CLOEXEC, 0);
	int rc = fd < 0 ? -errno : fd;
	json_t *args = json_pack("{s:s, s:s}", "domain", tok_name(domain_names, domain), "type",
				 tok_name(type_names, type));

	sc_emit(ctx, sc_new(w, "socket", rc < 0 ? -1 : fd, args), rc, t);
	return rc;
}

int lsock_setsockopt_int(struct lab_ctx *ctx, struct lsock_who w, int fd, int level, int name,
			 int value)
{
	int64_t t = ev_now_us(ctx->em);
	int rc = setsockopt(fd, level, name, &value, sizeof value) < 0 ? -errno : 0;
	const struct name_tok *names = level == IPPROTO_TCP  ? tcp_names
				       : level == IPPROTO_IP ? ip_names
							     : sol_names;
	json_t *args = json_pack("{s:s, s:s, s:i}", "level", tok_name(level_names, level), "name",
				 tok_name(names, name), "value", value);

	sc_emit(ctx, sc_new(w, "setsockopt", fd, args), rc, t);
	return rc;
}

int lsock_setsockopt_linger(struct lab_ctx *ctx, struct lsock_who w, int fd, int onoff, int secs)
{
	int64_t t = ev_now_us(ctx->em);
	struct linger l = {.l_onoff = onoff, .l_linger = secs};
	int rc = setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l) < 0 ? -errno : 0;
	json_t *args = json_pack("{s:s, s:s, s:{s:i, s:i}}", "level", "SOL_SOCKET", "name",
				 "SO_LINGER", "value", "l_onoff", onoff, "l_linger", secs);

	sc_emit(ctx, sc_new(w, "setsockopt", fd, args), rc, t);
	return rc;
}

int lsock_bind(struct lab_ctx *ctx, struct lsock_who w, int fd, const struct sockaddr *sa,
	       socklen_t len)
{
	int64_t t = ev_now_us(ctx->em);
	int rc = bind(fd, sa, len) < 0 ? -errno : 0;
	json_t *f = sc_new(w, "bind", fd, lsock_addr_json(sa));

	if (rc == 0) {
		struct sockaddr_storage got;
		socklen_t gl = sizeof got;
		/* Port 0 asks the kernel to choose: report what it chose. */
		if (getsockname(fd, (struct sockaddr *)&got, &gl) == 0)
			json_object_set_new(f, "local", lsock_addr_json((struct sockaddr *)&got));
	}
	sc_emit(ctx, f, rc, t);
	return rc;
}

int lsock_listen(struct lab_ctx *ctx, struct lsock_who w, int fd, int backlog)
{
	int64_t t = ev_now_us(ctx->em);
	int rc = listen(fd, backlog) < 0 ? -errno : 0;

	sc_emit(ctx, sc_new(w, "listen", fd, json_pack("{s:i}", "backlog", backlog)), rc, t);
	return rc;
}

int lsock_accept(struct lab_ctx *ctx, struct lsock_who w, int lfd, struct sockaddr_storage *peer,
		 int timeout_ms)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	int64_t t = ev_now_us(ctx->em);
	int rc;
	json_t *f;

	for (;;) {
		rc = lab_wait_fd(ctx, lfd, POLLIN, timeout_ms);
		if (rc < 0)
			return rc;
		if (rc == 0)
			return -ETIMEDOUT;
		rc = accept4(lfd, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (rc < 0 && (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED))
			continue; /* the connection went away between poll and accept */
		if (rc < 0)
			rc = -errno;
		break;
	}
	f = sc_new(w, "accept", lfd, NULL);
	if (rc >= 0) {
		json_object_set_new(f, "peer", lsock_addr_json((struct sockaddr *)&ss));
		if (peer)
			*peer = ss;
	}
	sc_emit(ctx, f, rc, t);
	return rc;
}

int lsock_connect(struct lab_ctx *ctx, struct lsock_who w, int fd, const struct sockaddr *sa,
		  socklen_t len, int timeout_ms)
{
	int64_t t = ev_now_us(ctx->em);
	int flags = fcntl(fd, F_GETFL);
	int rc;
	json_t *f;

	fcntl(fd, F_SETFL, flags | O_NONBLOCK);
	rc = connect(fd, sa, len) < 0 ? -errno : 0;
	if (rc == -EINPROGRESS) {
		int soerr = 0;
		socklen_t sl = sizeof soerr;

		rc = lab_wait_fd(ctx, fd, POLLOUT, timeout_ms);
		if (rc == 0)
			rc = -ETIMEDOUT;
		if (rc > 0) {
			rc = getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0 ? -errno : -soerr;
		}
	}
	if (rc == -ECANCELED)
		return rc;
	fcntl(fd, F_SETFL, flags);
	f = sc_new(w, "connect", fd, lsock_addr_json(sa));
	if (rc == 0) {
		struct sockaddr_storage me;
		socklen_t ml = sizeof me;
		if (getsockname(fd, (struct sockaddr *)&me, &ml) == 0)
			json_object_set_new(f, "local", lsock_addr_json((struct sockaddr *)&me));
	}
	sc_emit(ctx, f, rc, t);
	return rc;
}

ssize_t lsock_send(struct lab_ctx *ctx, struct lsock_who w, int fd, const void *buf, size_t len,
		   int timeout_ms)
{
	int64_t t = ev_now_us(ctx->em);
	ssize_t n;
	json_t *f;

	for (;;) {
		int rc = lab_wait_fd(ctx, fd, POLLOUT, timeout_ms);
		if (rc < 0)
			return rc;
		if (rc == 0)
			return -ETIMEDOUT;
		n = send(fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (n < 0)
			n = -errno;
		break;
	}
	f = sc_new(w, "send", fd, json_pack("{s:I, s:s}", "len", (json_int_t)len, "flags", "0"));
	sc_data(f, buf, n);
	sc_emit(ctx, f, n, t);
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
	int64_t t = ev_now_us(ctx->em);
	ssize_t n;
	json_t *f;

	for (;;) {
		int rc = lab_wait_fd(ctx, fd, POLLIN, timeout_ms);
		if (rc < 0)
			return rc;
		if (rc == 0)
			return -ETIMEDOUT;
		n = recv(fd, buf, len, MSG_DONTWAIT);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (n < 0)
			n = -errno;
		break;
	}
	f = sc_new(w, "recv", fd, json_pack("{s:I, s:s}", "len", (json_int_t)len, "flags", "0"));
	sc_data(f, buf, n);
	if (n == 0)
		json_object_set_new(f, "eof", json_true());
	sc_emit(ctx, f, n, t);
	return n;
}

ssize_t lsock_sendto(struct lab_ctx *ctx, struct lsock_who w, int fd, const void *buf, size_t len,
		     const struct sockaddr *to, socklen_t tolen, int timeout_ms, struct lsock_io *io)
{
	int64_t t = ev_now_us(ctx->em), t_ret;
	ssize_t n;
	json_t *f, *args;

	for (;;) {
		int rc = lab_wait_fd2(ctx, fd, POLLOUT, io ? io->wake_fd : -1, timeout_ms);
		if (rc < 0)
			return rc;
		if (rc == 0)
			return -ETIMEDOUT;
		if (rc == 2)
			return -EINTR;
		n = sendto(fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL, to, tolen);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (n < 0)
			n = -errno;
		break;
	}
	t_ret = ev_now_us(ctx->em);
	if (io) {
		io->call_us = t;
		io->ret_us = t_ret;
	}
	args = json_pack("{s:I, s:s, s:o}", "len", (json_int_t)len, "flags", "0", "to",
			 lsock_addr_json(to));
	f = sc_new(w, "sendto", fd, args);
	sc_data(f, buf, n);
	sc_emit(ctx, f, n, t);
	return n;
}

ssize_t lsock_recvfrom(struct lab_ctx *ctx, struct lsock_who w, int fd, void *buf, size_t len,
		       struct sockaddr_storage *from, int timeout_ms, struct lsock_io *io)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	int64_t t = ev_now_us(ctx->em), t_ret;
	ssize_t n;
	json_t *f;

	for (;;) {
		int rc = lab_wait_fd2(ctx, fd, POLLIN, io ? io->wake_fd : -1, timeout_ms);
		if (rc < 0)
			return rc;
		if (rc == 0)
			return -ETIMEDOUT;
		if (rc == 2)
			return -EINTR;
		sl = sizeof ss;
		/* MSG_TRUNC: the return value is the datagram's real length even
		 * when it did not fit, so a cut datagram is visible. */
		n = recvfrom(fd, buf, len, MSG_DONTWAIT | MSG_TRUNC, (struct sockaddr *)&ss, &sl);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (n < 0)
			n = -errno;
		break;
	}
	t_ret = ev_now_us(ctx->em);
	if (io) {
		io->call_us = t;
		io->ret_us = t_ret;
	}
	f = sc_new(w, "recvfrom", fd, json_pack("{s:I, s:s}", "len", (json_int_t)len, "flags", "0"));
	if (n >= 0) {
		size_t got = (size_t)n < len ? (size_t)n : len;
		json_object_set_new(f, "from", lsock_addr_json((struct sockaddr *)&ss));
		sc_data(f, buf, (ssize_t)got);
		if (got == 0) /* an empty datagram is data too */
			json_object_set_new(f, "data", json_string(""));
		if ((size_t)n > len)
			json_object_set_new(f, "truncated", json_integer((json_int_t)n));
		if (from)
			*from = ss;
		if ((size_t)n > len)
			n = (ssize_t)len;
	}
	sc_emit(ctx, f, n, t);
	return n;
}

int lsock_shutdown(struct lab_ctx *ctx, struct lsock_who w, int fd, int how)
{
	int64_t t = ev_now_us(ctx->em);
	int rc = shutdown(fd, how) < 0 ? -errno : 0;

	sc_emit(ctx, sc_new(w, "shutdown", fd, json_pack("{s:s}", "how", tok_name(how_names, how))),
		rc, t);
	return rc;
}

int lsock_close(struct lab_ctx *ctx, struct lsock_who w, int fd)
{
	int64_t t = ev_now_us(ctx->em);
	int rc = close(fd) < 0 ? -errno : 0;

	sc_emit(ctx, sc_new(w, "close", fd, NULL), rc, t);
	return rc;
}
