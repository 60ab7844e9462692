/* test_sock.c: traced socket calls: each call's syscall event, member by member, and cancellation of calls that do not wait. */
#include "unit.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "lab.h"
#include "sock.h"

struct capture {
	json_t *events;
};

/* Every line must be exactly what jansson writes for the same object: the
 * events were built with jansson before the calls became binary records. */
static int capture_sink(void *arg, const json_t *ev, const char *line)
{
	struct capture *c = arg;
	char *again = json_dumps(ev, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII);

	assert_string_equal(line, again);
	free(again);
	json_array_append(c->events, (json_t *)ev);
	return 0;
}

struct fixture {
	struct ev_emitter em;
	struct lab_ctx ctx;
	struct capture cap;
	size_t next; /* first event not checked yet */
};

static void fixture_init(struct fixture *f, int threaded)
{
	memset(f, 0, sizeof *f);
	f->cap.events = json_array();
	assert_int_equal(ev_init(&f->em, "0123456789abcdef", "test"), 0);
	ev_add_sink(&f->em, capture_sink, &f->cap);
	if (threaded)
		assert_int_equal(ev_start(&f->em, 0), 0);
	f->ctx.em = &f->em;
	f->ctx.cancel_fd = -1;
	f->ctx.deadline_us = ev_now_us(&f->em) + 60 * 1000000LL;
}

static void fixture_cleanup(struct fixture *f)
{
	ev_cleanup(&f->em);
	json_decref(f->cap.events);
}

/* The next event: a syscall event of call whose members are, in order, the
 * envelope and then keys (comma-separated). */
static json_t *expect(struct fixture *f, const char *call, const char *keys)
{
	char got[512] = "", want[512];
	const char *k;
	json_t *ev, *v;
	size_t off = 0;

	ev_flush(&f->em);
	ev = json_array_get(f->cap.events, f->next++);
	assert_non_null(ev);
	json_object_foreach(ev, k, v) {
		off += (size_t)snprintf(got + off, sizeof got - off, "%s%s", off ? "," : "", k);
	}
	snprintf(want, sizeof want, "v,run,seq,t_us,lab,type,who,conn,call,fd,args,%s", keys);
	assert_string_equal(got, want);
	assert_string_equal(json_string_value(json_object_get(ev, "type")), "syscall");
	assert_string_equal(json_string_value(json_object_get(ev, "call")), call);
	assert_true(json_integer_value(json_object_get(ev, "blocked_us")) >= 0);
	assert_true(json_integer_value(json_object_get(ev, "t_call_us")) <=
		    json_integer_value(json_object_get(ev, "t_us")));
	return ev;
}

static const char *s_of(const json_t *o, const char *path)
{
	return json_string_value(json_object_get(o, path));
}

static long long i_of(const json_t *o, const char *path)
{
	return (long long)json_integer_value(json_object_get(o, path));
}

#define OK_TAIL "ret,errno,t_call_us,blocked_us"
#define ERR_TAIL "ret,errno,errno_name,error,t_call_us,blocked_us"

static void every_call(int threaded)
{
	struct fixture f;
	struct lsock_who srv = {"server", 0}, cli = {"client", 1}, acc = {"server", 1};
	struct sockaddr_storage ss, peer;
	struct sockaddr_in any = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof ss;
	unsigned char msg[300], got[1000];
	size_t have = 0;
	int lfd, cfd, afd, u1, u2, i;
	int port;
	json_t *ev, *prev;

	fixture_init(&f, threaded);
	for (i = 0; i < (int)sizeof msg; i++)
		msg[i] = (unsigned char)i; /* control bytes, quotes, backslashes, high bytes */

	lfd = lsock_socket(&f.ctx, srv, AF_INET, SOCK_STREAM);
	assert_true(lfd >= 0);
	ev = expect(&f, "socket", OK_TAIL);
	assert_string_equal(s_of(json_object_get(ev, "args"), "domain"), "AF_INET");
	assert_string_equal(s_of(json_object_get(ev, "args"), "type"), "SOCK_STREAM");
	assert_int_equal(i_of(ev, "ret"), lfd);
	assert_int_equal(i_of(ev, "fd"), lfd);
	assert_string_equal(s_of(ev, "who"), "server");

	assert_int_equal(lsock_setsockopt_int(&f.ctx, srv, lfd, SOL_SOCKET, SO_REUSEADDR, 1), 0);
	ev = expect(&f, "setsockopt", OK_TAIL);
	assert_string_equal(s_of(json_object_get(ev, "args"), "level"), "SOL_SOCKET");
	assert_string_equal(s_of(json_object_get(ev, "args"), "name"), "SO_REUSEADDR");
	assert_int_equal(i_of(json_object_get(ev, "args"), "value"), 1);

	assert_int_equal(lsock_bind(&f.ctx, srv, lfd, (struct sockaddr *)&any, sizeof any), 0);
	ev = expect(&f, "bind", "local," OK_TAIL);
	port = (int)i_of(json_object_get(ev, "local"), "port");
	assert_true(port > 0);
	assert_int_equal(i_of(json_object_get(ev, "args"), "port"), 0);
	assert_string_equal(s_of(json_object_get(ev, "local"), "addr"), "127.0.0.1");

	assert_int_equal(lsock_listen(&f.ctx, srv, lfd, 5), 0);
	ev = expect(&f, "listen", OK_TAIL);
	assert_int_equal(i_of(json_object_get(ev, "args"), "backlog"), 5);

	cfd = lsock_socket(&f.ctx, cli, AF_INET, SOCK_STREAM);
	expect(&f, "socket", OK_TAIL);
	assert_int_equal(lsock_setsockopt_linger(&f.ctx, cli, cfd, 1, 0), 0);
	ev = expect(&f, "setsockopt", OK_TAIL);
	assert_int_equal(i_of(json_object_get(json_object_get(ev, "args"), "value"), "l_onoff"), 1);
	any.sin_port = htons((uint16_t)port);
	assert_int_equal(lsock_connect(&f.ctx, cli, cfd, (struct sockaddr *)&any, sizeof any, 5000),
			 0);
	ev = expect(&f, "connect", "local," OK_TAIL);
	assert_int_equal(i_of(json_object_get(ev, "args"), "port"), port);
	assert_int_equal(i_of(ev, "conn"), 1);

	afd = lsock_accept(&f.ctx, srv, lfd, &peer, 5000);
	assert_true(afd >= 0);
	ev = expect(&f, "accept", "peer," OK_TAIL);
	assert_int_equal(json_object_size(json_object_get(ev, "args")), 0);
	assert_int_equal(i_of(ev, "ret"), afd);

	assert_int_equal(lsock_send(&f.ctx, cli, cfd, msg, sizeof msg, 5000), (ssize_t)sizeof msg);
	ev = expect(&f, "send", "bytes,data,data_truncated," OK_TAIL);
	{
		json_t *want = lsock_preview(msg, sizeof msg, 256);
		assert_string_equal(s_of(ev, "data"), json_string_value(want));
		json_decref(want);
	}
	assert_int_equal(i_of(json_object_get(ev, "args"), "len"), 300);
	assert_string_equal(s_of(json_object_get(ev, "args"), "flags"), "0");

	while (have < sizeof msg) {
		ssize_t n = lsock_recv(&f.ctx, acc, afd, got + have, sizeof got - have, 5000);
		assert_true(n > 0);
		ev = expect(&f, "recv", n > 256 ? "bytes,data,data_truncated," OK_TAIL
						: "bytes,data," OK_TAIL);
		assert_int_equal(i_of(ev, "bytes"), n);
		have += (size_t)n;
	}
	assert_memory_equal(got, msg, sizeof msg);

	assert_int_equal(lsock_shutdown(&f.ctx, cli, cfd, SHUT_WR), 0);
	ev = expect(&f, "shutdown", OK_TAIL);
	assert_string_equal(s_of(json_object_get(ev, "args"), "how"), "SHUT_WR");
	assert_int_equal(lsock_recv(&f.ctx, acc, afd, got, sizeof got, 5000), 0);
	ev = expect(&f, "recv", "bytes,eof," OK_TAIL);
	assert_int_equal(i_of(ev, "bytes"), 0);
	assert_true(json_is_true(json_object_get(ev, "eof")));

	/* A send on a reset connection fails: the error's members. */
	assert_int_equal(lsock_close(&f.ctx, cli, cfd), 0); /* linger 0: RST */
	expect(&f, "close", OK_TAIL);
	{
		ssize_t n;
		do {
			n = lsock_send(&f.ctx, acc, afd, msg, 10, 5000);
			ev = expect(&f, "send", n < 0 ? "bytes," ERR_TAIL : "bytes,data," OK_TAIL);
		} while (n > 0);
		assert_true(n == -ECONNRESET || n == -EPIPE);
		assert_int_equal(i_of(ev, "ret"), -1);
		assert_int_equal(i_of(ev, "errno"), -n);
		assert_string_equal(s_of(ev, "errno_name"), n == -EPIPE ? "EPIPE" : "ECONNRESET");
		assert_string_equal(s_of(ev, "error"), strerror((int)-n));
	}
	assert_int_equal(lsock_close(&f.ctx, acc, afd), 0);
	expect(&f, "close", OK_TAIL);
	assert_int_equal(lsock_close(&f.ctx, srv, lfd), 0);
	expect(&f, "close", OK_TAIL);
	assert_int_equal(lsock_close(&f.ctx, srv, lfd), -EBADF);
	ev = expect(&f, "close", ERR_TAIL);
	assert_string_equal(s_of(ev, "errno_name"), "EBADF");

	/* Nobody listens any more: refused. */
	cfd = lsock_socket(&f.ctx, cli, AF_INET, SOCK_STREAM);
	expect(&f, "socket", OK_TAIL);
	assert_int_equal(lsock_connect(&f.ctx, cli, cfd, (struct sockaddr *)&any, sizeof any, 5000),
			 -ECONNREFUSED);
	ev = expect(&f, "connect", ERR_TAIL);
	assert_string_equal(s_of(ev, "errno_name"), "ECONNREFUSED");
	lsock_close(&f.ctx, cli, cfd);
	expect(&f, "close", OK_TAIL);

	/* Datagrams: an empty one is data too; a long one is cut. */
	u1 = lsock_socket(&f.ctx, srv, AF_INET, SOCK_DGRAM);
	ev = expect(&f, "socket", OK_TAIL);
	assert_string_equal(s_of(json_object_get(ev, "args"), "type"), "SOCK_DGRAM");
	any.sin_port = 0;
	assert_int_equal(lsock_bind(&f.ctx, srv, u1, (struct sockaddr *)&any, sizeof any), 0);
	expect(&f, "bind", "local," OK_TAIL);
	getsockname(u1, (struct sockaddr *)&ss, &sl);
	u2 = lsock_socket(&f.ctx, cli, AF_INET, SOCK_DGRAM);
	expect(&f, "socket", OK_TAIL);
	assert_int_equal(lsock_sendto(&f.ctx, cli, u2, "", 0, (struct sockaddr *)&ss, sl, 1000, NULL),
			 0);
	ev = expect(&f, "sendto", "bytes," OK_TAIL);
	assert_int_equal(i_of(json_object_get(json_object_get(ev, "args"), "to"), "port"),
			 ntohs(((struct sockaddr_in *)&ss)->sin_port));
	assert_int_equal(lsock_sendto(&f.ctx, cli, u2, "0123456789\"\\abcdefgh", 20,
				      (struct sockaddr *)&ss, sl, 1000, NULL),
			 20);
	expect(&f, "sendto", "bytes,data," OK_TAIL);
	assert_int_equal(lsock_recvfrom(&f.ctx, srv, u1, got, 10, &peer, 1000, NULL), 0);
	ev = expect(&f, "recvfrom", "from,bytes,data," OK_TAIL);
	assert_string_equal(s_of(ev, "data"), "");
	prev = ev;
	assert_int_equal(lsock_recvfrom(&f.ctx, srv, u1, got, 10, &peer, 1000, NULL), 10);
	ev = expect(&f, "recvfrom", "from,bytes,data,truncated," OK_TAIL);
	assert_int_equal(i_of(ev, "truncated"), 20);
	assert_int_equal(i_of(ev, "bytes"), 10);
	assert_int_equal(i_of(ev, "ret"), 10);
	assert_string_equal(s_of(ev, "data"), "0123456789");
	assert_true(i_of(ev, "seq") == i_of(prev, "seq") + 1);
	assert_int_equal(lsock_recvfrom(&f.ctx, srv, u1, got, 10, &peer, 0, NULL), -ETIMEDOUT);
	lsock_close(&f.ctx, srv, u1);
	lsock_close(&f.ctx, cli, u2);
	expect(&f, "close", OK_TAIL);
	expect(&f, "close", OK_TAIL);
	ev_flush(&f.em);
	assert_int_equal(json_array_size(f.cap.events), f.next); /* a timeout makes no call */
	{
		struct ev_trace_stats st;
		ev_trace_stats(&f.em, &st);
		assert_int_equal(st.calls, f.next);
	}
	fixture_cleanup(&f);
}

static void every_call_synchronously(void **state)
{
	every_call(0);
}

static void every_call_through_the_writer(void **state)
{
	every_call(1);
}


/* Receives whose data is already there are tried before any poll() (after a
 * first one that found data): the same events, end of stream and cut
 * datagrams included. */
static void receives_that_find_their_data_ready(void **state)
{
	struct fixture f;
	struct lsock_who srv = {"server", 0}, cli = {"client", 1};
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	char got[64], want[16];
	int lfd, cfd, afd, u1, u2, i;
	json_t *ev;

	fixture_init(&f, 1);
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof a), 0);
	assert_int_equal(listen(lfd, 1), 0);
	getsockname(lfd, (struct sockaddr *)&ss, &sl);
	cfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_int_equal(connect(cfd, (struct sockaddr *)&ss, sl), 0);
	afd = accept(lfd, NULL, NULL);
	for (i = 0; i < 40; i++) {
		snprintf(want, sizeof want, "m%03d\"", i);
		assert_int_equal(send(cfd, want, 5, 0), 5);
		/* A stream may deliver fewer bytes than were sent: read all 5. */
		for (size_t have = 0; have < 5;) {
			ssize_t n = lsock_recv(&f.ctx, srv, afd, got + have, 5 - have, 5000);
			assert_true(n > 0);
			ev = expect(&f, "recv", "bytes,data," OK_TAIL);
			assert_int_equal(i_of(ev, "ret"), n);
			have += (size_t)n;
		}
		assert_memory_equal(got, want, 5);
	}
	shutdown(cfd, SHUT_WR);
	assert_int_equal(lsock_recv(&f.ctx, srv, afd, got, sizeof got, 5000), 0);
	ev = expect(&f, "recv", "bytes,eof," OK_TAIL);
	assert_true(json_is_true(json_object_get(ev, "eof")));

	u1 = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_int_equal(bind(u1, (struct sockaddr *)&a, sizeof a), 0);
	sl = sizeof ss;
	getsockname(u1, (struct sockaddr *)&ss, &sl);
	u2 = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	for (i = 0; i < 40; i++) {
		assert_int_equal(sendto(u2, "0123456789", 10, 0, (struct sockaddr *)&ss, sl), 10);
		assert_int_equal(lsock_recvfrom(&f.ctx, cli, u1, got, 4, NULL, 5000, NULL), 4);
		ev = expect(&f, "recvfrom", "from,bytes,data,truncated," OK_TAIL);
		assert_int_equal(i_of(ev, "truncated"), 10);
		assert_string_equal(s_of(ev, "data"), "0123");
	}
	close(u1);
	close(u2);
	close(afd);
	close(cfd);
	close(lfd);
	fixture_cleanup(&f);
}

struct sender {
	struct fixture *f;
	int fd;
	struct sockaddr_storage to;
	socklen_t tolen;
	int efd;
	ssize_t last;
	long sent;
};

/* Wait once (so this thread has just looked at the cancel fd), then cancel
 * the run and send datagrams that never block until a send says the run is
 * over. */
static void *send_until_cancelled(void *arg)
{
	struct sender *s = arg;
	uint64_t one = 1;
	char c;

	assert_int_equal(lsock_recvfrom(&s->f->ctx, (struct lsock_who){"client", 0}, s->fd, &c, 1,
					NULL, 0, NULL),
			 -ETIMEDOUT);
	assert_int_equal(write(s->efd, &one, sizeof one), (ssize_t)sizeof one);
	for (;;) {
		s->last = lsock_sendto(&s->f->ctx, (struct lsock_who){"client", 0}, s->fd, "x", 1,
				       (struct sockaddr *)&s->to, s->tolen, 1000, NULL);
		if (s->last < 0)
			break;
		s->sent++;
	}
	return NULL;
}

/* A send that succeeds at once does not poll; it still notices a cancelled
 * run (within a millisecond), and a run past its deadline at once. */
static void sends_that_never_block_still_see_cancel(void **state)
{
	struct fixture f;
	struct sender s;
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int sink, fd;
	pthread_t t;

	fixture_init(&f, 1);
	memset(&s, 0, sizeof s);
	s.f = &f;
	s.efd = eventfd(0, EFD_CLOEXEC);
	f.ctx.cancel_fd = s.efd;
	sink = socket(AF_INET, SOCK_DGRAM, 0);
	assert_int_equal(bind(sink, (struct sockaddr *)&a, sizeof a), 0);
	s.tolen = sizeof s.to;
	getsockname(sink, (struct sockaddr *)&s.to, &s.tolen);
	fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	s.fd = fd;
	pthread_create(&t, NULL, send_until_cancelled, &s);
	pthread_join(t, NULL);
	assert_int_equal(s.last, -ECANCELED);

	/* Past the deadline: refused before the call. */
	f.ctx.cancel_fd = -1;
	f.ctx.deadline_us = 1;
	assert_int_equal(lsock_send(&f.ctx, (struct lsock_who){"client", 0}, fd, "x", 1, 1000),
			 -ECANCELED);
	close(fd);
	close(sink);
	close(s.efd);
	fixture_cleanup(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(every_call_synchronously),
		cmocka_unit_test(every_call_through_the_writer),
		cmocka_unit_test(receives_that_find_their_data_ready),
		cmocka_unit_test(sends_that_never_block_still_see_cancel),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
