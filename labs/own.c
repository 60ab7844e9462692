/* own.c: the "own" lab: a student's own Python server and/or client run sandboxed, every socket call traced. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lab.h"
#include "net/frame.h"
#include "net/net.h"
#include "observer/observer.h"
#include "own/record.h"
#include "own/spawn.h"
#include "sock.h"
#include "tcpstate/tcpstate.h"

/*
 * The lab runs up to two programs (a server and a client, each a Python 3
 * file) in their own sandboxes (own/spawn.h) inside the run's network: the
 * server first, the client once the server has called listen() (or bind()
 * for UDP), or has ended, or after server_wait_ms. Every socket call either
 * program makes arrives as a record from the shim and becomes a `syscall`
 * event in the same shape as a built-in lab's; each line a program prints is
 * an `output` event; each program's end is a `program.exit` event. The run
 * ends when the client ends (the server is then stopped, which a server
 * looping forever needs) or, with only a server, when it ends or the time
 * limit passes.
 *
 * What the lab explains comes from the records: a bind() that failed with
 * EADDRINUSE, a connect() refused, a Python traceback on stderr.
 *
 * The kernel's TCP states: the lab learns a socket's addresses only from
 * its records (a listen() on a bound address, a connect() with the local
 * address the kernel chose, an accept() with both ends), and then has the
 * observer watch it (obs_watch) exactly as a built-in lab's sockets:
 * `state` transitions from the tracepoint, `observation`s and TIME_WAIT
 * `timer`s from sock_diag. The tracepoint sees every namespace on the
 * machine and cannot tell two runs' sockets with the same addresses and
 * ports apart, so it is used only for sockets with an address this run
 * owns (the server's address: on loopback a 127.x.y.z chosen per run, on
 * two hosts the run's leased subnet); the rest (a listener on 0.0.0.0, a
 * connection between two 127.0.0.1 ends) are watched by sock_diag alone,
 * which reads only the run's own namespaces, and the lab says so.
 */

#define OWN_SRC_MAX (64 * 1024)
#define OWN_OUT_MAX (64 * 1024) /* bytes of output kept per program */
#define OWN_LINE_MAX 1000
#define OWN_TURN_MS 20 /* the runner's loop wakes at least this often */

extern const struct lab_desc lab_own;

static const struct lab_param_def params[] = {
	/* Paths on the machine that runs the lab: only the CLI may name them (a
	 * browser must never make the lab read a server-side file); a browser
	 * uploads the program's text instead, and the server names its copy. */
	{"server", LAB_P_STRING, "Server program",
	 "A Python 3 file to run as the server (empty: none)", NULL, "", 0, 512, NULL,
	 LAB_PF_SERVER | LAB_PF_UPLOAD},
	{"client", LAB_P_STRING, "Client program",
	 "A Python 3 file to run as the client (empty: none)", NULL, "", 0, 512, NULL,
	 LAB_PF_SERVER | LAB_PF_UPLOAD},
	{"time_limit_ms", LAB_P_INT, "Time limit",
	 "How long the programs may run in all (wall clock)", "ms", "10000", 500, 60000, NULL, 0},
	{"server_wait_ms", LAB_P_INT, "Server start wait",
	 "The client starts when the server has called listen() or bind(), or after this long",
	 "ms", "3000", 0, 10000, NULL, LAB_PF_ADVANCED},
	{"cpu_s", LAB_P_INT, "CPU limit", "CPU seconds each program may use", "s", "5", 1, 30,
	 NULL, LAB_PF_ADVANCED},
	NET_PARAMS,
};

enum { P_SERVER = 0, P_CLIENT = 1 };
static const char *const who_names[] = {[P_SERVER] = "server", [P_CLIENT] = "client"};
/* The message ids of the roles, sent beside them in a note's params as
 * NAME_key so the page says the role in the reader's language. */
static const char *const who_keys[] = {[P_SERVER] = "role.server", [P_CLIENT] = "role.client"};

/* The message id of a socket's role ("listener", "client", "server") in a note. */
static const char *sock_role_key(const char *role)
{
	if (!strcmp(role, "listener"))
		return "role.sock.listener";
	return !strcmp(role, "server") ? "role.sock.server" : "role.sock.client";
}
static const char *const prog_names[] = {[P_SERVER] = "server.py", [P_CLIENT] = "client.py"};

/* One TCP connection as one program saw it: its data calls in order, for
 * pairing with the other program's end and finding lost boundaries. */
#define OWN_CONNS 16
#define OWN_IO_MAX 4096

struct own_io {
	int64_t seq; /* the syscall event */
	int64_t bytes;
	int send;
};

struct own_conn {
	int fd, open;
	char key[64]; /* "addr:port" of the client's end: its local, the server's peer */
	struct own_io *io;
	int n_io;
};

/* What the main thread knows of a program's descriptors from its records,
 * to find its TCP sockets' addresses. */
#define OWN_FDS 256

struct own_fd {
	int tcp, listening;
	struct sockaddr_in bound; /* sin_family 0: not bound (or not IPv4) */
	int64_t listen_ns;        /* when its listen() began */
};

/* A socket the observer watches for the lab. Filled by the main thread
 * before obs_watch publishes it; `hist` is written by the observer's
 * callback only (read by the main thread after obs_stop). */
#define OWN_HIST 16

struct own_watch {
	int prog, fd, traced;
	const char *role; /* the state events' "who": "listener", "client", "server" */
	uint16_t lport;
	struct {
		int64_t t_ns, from_ns; /* from_ns: a sample saw it in [from_ns, t_ns] */
		int from, state, src;
	} hist[OWN_HIST]; /* the first OWN_HIST states the kernel sources gave */
	int n_hist;
	int64_t tw_ns; /* sock_diag first listed it in TIME_WAIT (0: never) */
};

/* A bind() that failed with EADDRINUSE (kept by the callback for the end). */
#define OWN_BINDFAILS 4

struct own_bindfail {
	int who;
	uint16_t port;
	int64_t t0_ns;
	json_int_t seq;
};

struct prog {
	int present;
	struct own_fd fds[OWN_FDS];
	struct own_conn conns[OWN_CONNS];
	int n_conns;
	struct own_proc proc;
	int started, ended, shim_ok, killed_by_lab;
	uint32_t next_seq;
	long long calls, bytes_out, bytes_in, bad_records, out_bytes;
	int listened, status;
	char line[2][OWN_LINE_MAX + 1]; /* partial output line per stream */
	size_t line_len[2];
	int eaddrinuse_noted, refused_noted, traceback_noted;
};

struct own_run {
	struct lab_ctx *ctx;
	struct obs *obs; /* the run's capture, merging records with segments; NULL: none */
	long long segments;
	struct prog p[2];
	/* Addresses this run owns (network byte order): the tracepoint can
	 * tell its sockets with one of them from any other run's. */
	uint32_t own_addr[2];
	struct own_watch watch[OBS_MAX_WATCH]; /* index = the observer's sock */
	int n_watch;                           /* main thread */
	int watch_full_noted, untraced_noted;  /* main thread */
	char srv_ip[16];                       /* what the name "server" is */
	struct own_bindfail bindfail[OWN_BINDFAILS]; /* the callback's */
	int n_bindfail;
};

static int check(const struct lab_params *p, const char **param, char *err, size_t errlen)
{
	if (!lab_str(p, "server")[0] && !lab_str(p, "client")[0]) {
		*param = "server";
		snprintf(err, errlen, "parameter 'server': give a server or a client program (or both)");
		return -EINVAL;
	}
	return net_params_check(p, param, err, errlen);
}



/* ---- records to events ---- */

static const char *const call_names[OWN_CALL_MAX] = {
	[OWN_HELLO] = "hello",	       [OWN_SOCKET] = "socket",	    [OWN_BIND] = "bind",
	[OWN_LISTEN] = "listen",       [OWN_ACCEPT] = "accept",	    [OWN_CONNECT] = "connect",
	[OWN_SEND] = "send",	       [OWN_SENDTO] = "sendto",	    [OWN_SENDMSG] = "sendmsg",
	[OWN_RECV] = "recv",	       [OWN_RECVFROM] = "recvfrom", [OWN_RECVMSG] = "recvmsg",
	[OWN_READ] = "read",	       [OWN_WRITE] = "write",	    [OWN_SHUTDOWN] = "shutdown",
	[OWN_CLOSE] = "close",	       [OWN_SETSOCKOPT] = "setsockopt",
	[OWN_GETSOCKOPT] = "getsockopt", [OWN_POLL] = "poll",	    [OWN_SELECT] = "select",
};

struct name_val {
	int v;
	const char *name;
};

static const struct name_val domains[] = {
	{AF_UNIX, "AF_UNIX"}, {AF_INET, "AF_INET"}, {AF_INET6, "AF_INET6"}, {0, NULL}};
static const struct name_val types[] = {
	{SOCK_STREAM, "SOCK_STREAM"}, {SOCK_DGRAM, "SOCK_DGRAM"}, {SOCK_RAW, "SOCK_RAW"}, {0, NULL}};
static const struct name_val levels[] = {
	{SOL_SOCKET, "SOL_SOCKET"}, {IPPROTO_TCP, "IPPROTO_TCP"}, {IPPROTO_IP, "IPPROTO_IP"}, {0, NULL}};
static const struct name_val sol_names[] = {
	{SO_REUSEADDR, "SO_REUSEADDR"}, {SO_REUSEPORT, "SO_REUSEPORT"}, {SO_KEEPALIVE, "SO_KEEPALIVE"},
	{SO_RCVBUF, "SO_RCVBUF"}, {SO_SNDBUF, "SO_SNDBUF"}, {SO_LINGER, "SO_LINGER"},
	{SO_BROADCAST, "SO_BROADCAST"}, {SO_ERROR, "SO_ERROR"}, {SO_TYPE, "SO_TYPE"},
	{SO_RCVTIMEO, "SO_RCVTIMEO"}, {SO_SNDTIMEO, "SO_SNDTIMEO"}, {0, NULL}};
static const struct name_val tcp_names[] = {
	{TCP_NODELAY, "TCP_NODELAY"}, {TCP_CORK, "TCP_CORK"}, {TCP_MAXSEG, "TCP_MAXSEG"},
	{TCP_QUICKACK, "TCP_QUICKACK"}, {0, NULL}};
static const struct name_val hows[] = {
	{SHUT_RD, "SHUT_RD"}, {SHUT_WR, "SHUT_WR"}, {SHUT_RDWR, "SHUT_RDWR"}, {0, NULL}};

/* The name of v, or its number as a JSON integer when the table lacks it. */
static json_t *named(const struct name_val *t, int v)
{
	for (; t->name; t++)
		if (t->v == v)
			return json_string(t->name);
	return json_integer(v);
}

static json_t *rec_addr_json(const struct own_rec *rec)
{
	struct sockaddr_storage ss;

	if (rec->addr_len < sizeof(sa_family_t))
		return NULL;
	memset(&ss, 0, sizeof ss);
	memcpy(&ss, rec->addr, rec->addr_len);
	if (ss.ss_family != AF_INET && ss.ss_family != AF_INET6)
		return NULL;
	return lsock_addr_json((struct sockaddr *)&ss);
}

static json_t *rec_args(const struct own_rec *rec)
{
	json_t *a, *addr = rec_addr_json(rec);

	/* bind() and connect(): the address is the argument, as in sock.c. */
	if ((rec->call == OWN_BIND || rec->call == OWN_CONNECT) && addr)
		return addr;
	a = json_object();

	switch (rec->call) {
	case OWN_SOCKET:
		json_object_set_new(a, "domain", named(domains, rec->a[0]));
		json_object_set_new(a, "type", named(types, rec->a[1] & 0xf));
		break;
	case OWN_LISTEN:
		json_object_set_new(a, "backlog", json_integer(rec->a[0]));
		break;
	case OWN_SETSOCKOPT:
	case OWN_GETSOCKOPT:
		json_object_set_new(a, "level", named(levels, rec->a[0]));
		json_object_set_new(a, "name", named(rec->a[0] == IPPROTO_TCP ? tcp_names : sol_names,
						     rec->a[1]));
		json_object_set_new(a, "value", json_integer(rec->a[2]));
		break;
	case OWN_SHUTDOWN:
		json_object_set_new(a, "how", named(hows, rec->a[0]));
		break;
	case OWN_SEND:
	case OWN_SENDTO:
	case OWN_SENDMSG:
	case OWN_RECV:
	case OWN_RECVFROM:
	case OWN_RECVMSG:
	case OWN_READ:
	case OWN_WRITE:
		json_object_set_new(a, "len", json_integer((json_int_t)rec->len));
		if (rec->a[0])
			json_object_set_new(a, "flags", json_integer(rec->a[0]));
		break;
	case OWN_POLL:
	case OWN_SELECT:
		json_object_set_new(a, "nfds", json_integer(rec->a[0]));
		json_object_set_new(a, "timeout_ms", json_integer(rec->a[1]));
		break;
	default:
		break;
	}
	if (addr && rec->call != OWN_ACCEPT) /* accept's peer is the event's own field */
		json_object_set_new(a,
				    rec->call == OWN_SENDTO || rec->call == OWN_SENDMSG ? "to"
				    : rec->call == OWN_RECVFROM || rec->call == OWN_RECVMSG ? "from"
											     : "addr",
				    addr);
	else
		json_decref(addr);
	return a;
}

static int moves_data(int call)
{
	return call == OWN_SEND || call == OWN_SENDTO || call == OWN_SENDMSG || call == OWN_WRITE ||
	       call == OWN_RECV || call == OWN_RECVFROM || call == OWN_RECVMSG || call == OWN_READ;
}

static int sends(int call)
{
	return call == OWN_SEND || call == OWN_SENDTO || call == OWN_SENDMSG || call == OWN_WRITE;
}

/* Explanations that one call's record decides (seq: its syscall event). */
static void explain_call(struct own_run *r, int who, const struct own_rec *rec, json_int_t seq)
{
	struct prog *pg = &r->p[who];
	struct lab_ctx *ctx = r->ctx;

	if (rec->call == OWN_BIND && rec->ret < 0 && rec->err == EADDRINUSE) {
		struct sockaddr_in sin;

		/* Which socket held the port is told at the end, when every
		 * kernel report before this bind() is in (own_end_notes). */
		memset(&sin, 0, sizeof sin);
		memcpy(&sin, rec->addr, rec->addr_len < sizeof sin ? rec->addr_len : sizeof sin);
		if (sin.sin_family == AF_INET && r->n_bindfail < OWN_BINDFAILS)
			r->bindfail[r->n_bindfail++] =
				(struct own_bindfail){who, ntohs(sin.sin_port), rec->t0_ns, seq};
		if (!pg->eaddrinuse_noted) {
			pg->eaddrinuse_noted = 1;
			ev_note(ctx->em, "own.eaddrinuse", json_pack("{s:s, s:s}", "who", who_names[who], "who_key",
				  who_keys[who]),
				NULL);
		}
	}
	if (rec->call == OWN_CONNECT && rec->ret < 0 && rec->err == ECONNREFUSED &&
	    !pg->refused_noted) {
		pg->refused_noted = 1;
		ev_note(ctx->em, "own.refused", json_pack("{s:s, s:s}", "who", who_names[who], "who_key",
				  who_keys[who]), NULL);
	}
}

static void addr_key(const struct sockaddr_storage *ss, char *key, size_t len)
{
	json_t *a = lsock_addr_json((const struct sockaddr *)ss);

	snprintf(key, len, "%s:%lld", json_string_value(json_object_get(a, "addr")),
		 (long long)json_integer_value(json_object_get(a, "port")));
	json_decref(a);
}

/* A connection starts: the client's connect() (keyed by its own address,
 * from the record's data) or the server's accept() (keyed by the peer). */
static void conn_open(struct prog *pg, int fd, const uint8_t *sa, size_t len)
{
	struct sockaddr_storage ss;
	struct own_conn *c;

	if (pg->n_conns == OWN_CONNS || len < sizeof(sa_family_t) || len > sizeof ss)
		return;
	memset(&ss, 0, sizeof ss);
	memcpy(&ss, sa, len);
	if (ss.ss_family != AF_INET && ss.ss_family != AF_INET6)
		return;
	c = &pg->conns[pg->n_conns++];
	c->fd = fd;
	c->open = 1;
	addr_key(&ss, c->key, sizeof c->key);
}

static struct own_conn *conn_of(struct prog *pg, int fd)
{
	int i;

	for (i = pg->n_conns - 1; i >= 0; i--)
		if (pg->conns[i].open && pg->conns[i].fd == fd)
			return &pg->conns[i];
	return NULL;
}

/* After the syscall event of a record was emitted as seq. */
static void track(struct own_run *r, int who, const struct own_rec *rec, int64_t seq)
{
	struct prog *pg = &r->p[who];
	struct own_conn *c;

	if (rec->call == OWN_ACCEPT && rec->ret >= 0)
		conn_open(pg, (int)rec->ret, rec->addr, rec->addr_len);
	else if (rec->call == OWN_CONNECT && (rec->ret == 0 || rec->err == EINPROGRESS))
		conn_open(pg, rec->fd, rec->data, rec->data_len);
	else if (rec->call == OWN_CLOSE && (c = conn_of(pg, rec->fd)))
		c->open = 0;
	else if ((rec->call == OWN_SEND || rec->call == OWN_WRITE || rec->call == OWN_SENDMSG ||
		  rec->call == OWN_RECV || rec->call == OWN_READ || rec->call == OWN_RECVMSG) &&
		 rec->ret > 0 && (c = conn_of(pg, rec->fd)) && c->n_io < OWN_IO_MAX) {
		if (!c->io && !(c->io = calloc(OWN_IO_MAX, sizeof *c->io)))
			return;
		c->io[c->n_io++] = (struct own_io){seq, rec->ret, sends(rec->call)};
	}
}

/* Where the sender's boundaries went in the receiver's recv() returns, for
 * one direction of one connection: the first recv() that returned bytes of
 * more than one send() is named, with those sends, as the evidence. Returns
 * the number of such recvs. Only whole streams are judged: when the bytes
 * the receiver got are not the bytes the sender sent (the run ended
 * first), nothing is said. */
static int find_glued(struct own_run *r, int sender, const struct own_conn *s, int receiver,
		      const struct own_conn *d)
{
	int64_t sent = 0, got = 0, off = 0, soff = 0;
	int i, j = 0, glued = 0, n_sends = 0;

	for (i = 0; i < s->n_io; i++)
		if (s->io[i].send)
			sent += s->io[i].bytes, n_sends++;
	for (i = 0; i < d->n_io; i++)
		if (!d->io[i].send)
			got += d->io[i].bytes;
	if (sent != got || n_sends < 2)
		return 0;
	/* Walk the receiver's recvs against the sender's sends by stream offset. */
	for (i = 0; i < d->n_io; i++) {
		int64_t a, b;
		int first = -1, last = -1;

		if (d->io[i].send)
			continue;
		a = off;
		b = off + d->io[i].bytes;
		off = b;
		while (j < s->n_io && (!s->io[j].send || soff + s->io[j].bytes <= a)) {
			if (s->io[j].send)
				soff += s->io[j].bytes;
			j++;
		}
		{
			int64_t o = soff;
			int k;
			for (k = j; k < s->n_io && o < b; k++) {
				if (!s->io[k].send)
					continue;
				if (first < 0)
					first = k;
				last = k;
				o += s->io[k].bytes;
			}
			if (first >= 0 && last > first) {
				int count = 0;
				for (k = first; k <= last; k++)
					count += s->io[k].send;
				if (glued++ == 0)
					ev_note(r->ctx->em, "own.glued",
						json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:i, s:I, s:I}", "receiver",
							  who_names[receiver], "receiver_key", who_keys[receiver],
							  "sender", who_names[sender], "sender_key", who_keys[sender],
							  "recv_seq", (json_int_t)d->io[i].seq, "bytes",
							  (json_int_t)d->io[i].bytes, "sends", count,
							  "first_seq", (json_int_t)s->io[first].seq,
							  "last_seq", (json_int_t)s->io[last].seq),
						NULL);
			}
		}
	}
	return glued;
}

/* At the end: pair each client connection with the server's accepted one
 * (the client's own address is the server's peer) and judge both directions. */
static void explain_streams(struct own_run *r, json_t *summary)
{
	struct prog *cl = &r->p[P_CLIENT], *sv = &r->p[P_SERVER];
	int i, k, paired = 0, glued = 0;

	for (i = 0; i < cl->n_conns; i++)
		for (k = 0; k < sv->n_conns; k++) {
			if (strcmp(cl->conns[i].key, sv->conns[k].key))
				continue;
			paired++;
			glued += find_glued(r, P_CLIENT, &cl->conns[i], P_SERVER, &sv->conns[k]);
			glued += find_glued(r, P_SERVER, &sv->conns[k], P_CLIENT, &cl->conns[i]);
		}
	json_object_set_new(summary, "connections_paired", json_integer(paired));
	json_object_set_new(summary, "glued_recvs", json_integer(glued));
}

static void emit_record(struct own_run *r, int who, const struct own_rec *rec)
{
	struct prog *pg = &r->p[who];
	json_t *f;
	int64_t t0 = obs_run_us(r->ctx, rec->t0_ns), t1 = obs_run_us(r->ctx, rec->t1_ns);
	json_int_t seq;

	if (rec->call == OWN_HELLO) {
		ev_emit(r->ctx->em, "program.start",
			json_pack("{s:s, s:s, s:I}", "who", who_names[who], "file", prog_names[who],
				  "t_call_us", (json_int_t)t0));
		return;
	}
	pg->calls++;
	f = json_pack("{s:s, s:i, s:s, s:i, s:o, s:I, s:I, s:I, s:s}", "who", who_names[who], "conn",
		      0, "call", call_names[rec->call], "fd", rec->fd, "args", rec_args(rec), "ret",
		      (json_int_t)(rec->ret < 0 ? -rec->err : rec->ret), "t_call_us",
		      (json_int_t)t0, "blocked_us", (json_int_t)(t1 - t0), "source", "shim");
	if (!f)
		return;
	if (rec->call == OWN_ACCEPT && rec->ret >= 0) {
		json_t *peer = rec_addr_json(rec);
		if (peer)
			json_object_set_new(f, "peer", peer);
	}
	if (rec->ret < 0 && rec->err > 0) {
		json_object_set_new(f, "errno", json_integer(rec->err));
		json_object_set_new(f, "errno_name", json_string(lsock_errno_name(rec->err)));
		json_object_set_new(f, "error", json_string(strerror(rec->err)));
	}
	if (moves_data(rec->call) && rec->ret >= 0) {
		json_object_set_new(f, "bytes", json_integer((json_int_t)rec->ret));
		if (rec->data_len)
			json_object_set_new(f, "data", lsock_preview(rec->data, rec->data_len,
								     OWN_REC_DATA));
		if (rec->ret > (int64_t)rec->data_len)
			json_object_set_new(f, "data_truncated", json_true());
		if (sends(rec->call))
			pg->bytes_out += rec->ret;
		else
			pg->bytes_in += rec->ret;
		if (rec->call == OWN_RECV || rec->call == OWN_RECVFROM || rec->call == OWN_READ ||
		    rec->call == OWN_RECVMSG) {
			if (rec->ret == 0)
				json_object_set_new(f, "eof", json_true());
		}
	}
	if (rec->call == OWN_CONNECT && rec->data_len >= sizeof(sa_family_t)) {
		struct sockaddr_storage ss;
		memset(&ss, 0, sizeof ss);
		memcpy(&ss, rec->data, rec->data_len < sizeof ss ? rec->data_len : sizeof ss);
		if (ss.ss_family == AF_INET || ss.ss_family == AF_INET6)
			json_object_set_new(f, "local", lsock_addr_json((struct sockaddr *)&ss));
	}
	seq = ev_emit(r->ctx->em, "syscall", f);
	track(r, who, rec, seq);
	explain_call(r, who, rec, seq);
}

/* ---- one time-ordered stream ----
 * Everything the runner learns (a call's record, a printed line, a program's
 * end) becomes an item stamped on CLOCK_MONOTONIC and goes through
 * the observer, which merges items with the captured segments and hands them
 * back in time order on its thread (or, without a capture, they are handled
 * at once). Only the handler touches the per-program counters and the
 * connection tracking; the main thread reads them after obs_stop. Notes the
 * main thread decides (tampering, limits) are emitted at once. */

enum item_kind { ITEM_REC, ITEM_EVENT, ITEM_SAMPLED, ITEM_EXIT };

struct own_item {
	enum item_kind kind;
	int who;
	struct own_rec rec;  /* ITEM_REC */
	const char *name;    /* ITEM_EVENT: the event type */
	/* ITEM_SAMPLED: the note own.states_sampled, fields its params */
	json_t *fields;      /* owned; may be NULL */
};

static void item_free(void *p)
{
	struct own_item *it = p;

	json_decref(it->fields);
	free(it);
}

static void handle_item(struct own_run *r, struct own_item *it)
{
	struct prog *pg = &r->p[it->who];

	switch (it->kind) {
	case ITEM_REC:
		emit_record(r, it->who, &it->rec);
		break;
	case ITEM_EVENT:
		ev_emit(r->ctx->em, it->name, it->fields);
		it->fields = NULL;
		break;
	case ITEM_SAMPLED:
		ev_note(r->ctx->em, "own.states_sampled", it->fields, NULL);
		it->fields = NULL;
		break;
	case ITEM_EXIT:
		/* Every call the program made is stamped before its end. */
		json_object_set_new(it->fields, "calls", json_integer(pg->calls));
		json_object_set_new(it->fields, "bytes_sent", json_integer(pg->bytes_out));
		json_object_set_new(it->fields, "bytes_received", json_integer(pg->bytes_in));
		ev_emit(r->ctx->em, "program.exit", it->fields);
		it->fields = NULL;
		break;
	}
}

/* Queue an item stamped t_ns (fields stolen). */
static void deliver(struct own_run *r, enum item_kind kind, int who, const struct own_rec *rec,
		    const char *name, json_t *fields, int64_t t_ns)
{
	struct own_item *it = calloc(1, sizeof *it);

	if (!it) {
		json_decref(fields);
		return;
	}
	it->kind = kind;
	it->who = who;
	if (rec)
		it->rec = *rec;
	it->name = name;
	it->fields = fields;
	if (r->obs) {
		obs_record(r->obs, t_ns, it); /* frees it on failure */
		return;
	}
	handle_item(r, it);
	item_free(it);
}

/* A kernel-state item about watched socket ev->sock: remembered for the
 * end's explanations; the event the observer emits names the program and
 * the descriptor (its "who" is the socket's role). */
static json_t *state_item(struct own_run *r, const struct obs_event *ev)
{
	struct own_watch *w;
	int state;

	if (ev->sock < 0 || ev->sock >= OBS_MAX_WATCH)
		return NULL;
	w = &r->watch[ev->sock];
	state = ev->kind == OBS_GONE ? TCPST_CLOSE : ev->to;
	if ((ev->kind == OBS_TRANSITION || ev->kind == OBS_SEEN || ev->kind == OBS_GONE) &&
	    w->n_hist < OWN_HIST) {
		w->hist[w->n_hist].t_ns = ev->t_ns;
		w->hist[w->n_hist].from_ns = ev->kind == OBS_SEEN ? ev->from_ns : ev->t_ns;
		w->hist[w->n_hist].from = ev->kind == OBS_TRANSITION ? ev->from : -1;
		w->hist[w->n_hist].state = state;
		w->hist[w->n_hist].src = ev->src;
		w->n_hist++;
	}
	if (ev->kind == OBS_SEEN && ev->to == TCPST_TIME_WAIT && !w->tw_ns)
		w->tw_ns = ev->t_ns;
	return json_pack("{s:s, s:i, s:i}", "program", who_names[w->prog], "fd", w->fd, "port",
			 w->lport);
}

/* The observer's callback: segments as they were captured, and the items. */
static json_t *on_obs(void *arg, const struct obs_event *ev)
{
	struct own_run *r = arg;
	json_t *f;

	if (ev->kind == OBS_RECORD) {
		handle_item(r, ev->rec);
		return NULL;
	}
	if (ev->kind != OBS_FRAME)
		return state_item(r, ev);
	if (!ev->pkt)
		return NULL;
	/* Two hosts: each segment once, as it left its host. */
	if (ev->host >= 0 && !ev->frame->outgoing)
		return NULL;
	obs_pcap_write(r->obs, ev->frame);
	f = obs_segment_json(r->ctx, ev->frame, ev->pkt, ev->t_ns);
	if (!f)
		return NULL;
	if (ev->host >= 0)
		json_object_set_new(f, "host",
				    json_string(ev->host == NET_SERVER ? "server" : "client"));
	r->segments++;
	ev_emit(r->ctx->em, "segment", f);
	return NULL;
}

/* Start the observer on the run's interfaces (loopback, or both hosts'
 * eth0), capturing every TCP and UDP packet the programs cause. Without
 * CAP_NET_RAW the lab runs on without segments and says so. */
static void open_observer(struct own_run *r)
{
	struct obs_config cfg;
	char trace[160];
	int probe = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);

	if (probe < 0) {
		ev_note(r->ctx->em, "own.no_capture", NULL, NULL);
		return;
	}
	close(probe);
	memset(&cfg, 0, sizeof cfg);
	cfg.ctx = r->ctx;
	cfg.filter = "tcp or udp";
	cfg.fn = on_obs;
	cfg.arg = r;
	cfg.free_rec = item_free;
	cfg.pcap_path = r->ctx->pcap_path;
	cfg.horizon_ms = 50; /* records cross a socket and this thread's loop first */
	/* The lab learns its programs' ports only from their records, and the
	 * tracepoint's events are matched to them when delivered; it traces
	 * only sockets with one of the run's own addresses at either end
	 * (watch_sock). So the filter takes every IPv4 TCP change with one of
	 * them as source or destination (saddr and daddr are 4-byte arrays the
	 * filter compares as a number: the address's bytes as the kernel
	 * stores them, which is s_addr read natively), and nothing of the rest
	 * of the machine, whose changes would only crowd the slot's ring.
	 * Should the kernel refuse that, every IPv4 change, as before. */
	if (r->own_addr[1])
		snprintf(trace, sizeof trace,
			 "family == 2 && (saddr == 0x%08x || daddr == 0x%08x || saddr == 0x%08x || "
			 "daddr == 0x%08x)",
			 r->own_addr[0], r->own_addr[0], r->own_addr[1], r->own_addr[1]);
	else if (r->own_addr[0])
		snprintf(trace, sizeof trace, "family == 2 && (saddr == 0x%08x || daddr == 0x%08x)",
			 r->own_addr[0], r->own_addr[0]);
	else
		snprintf(trace, sizeof trace, "family == 2");
	cfg.trace_filter = trace;
	cfg.trace_filter_wide = "family == 2";
	cfg.watch_later = 1;
	if (obs_start(&r->obs, &cfg) < 0) {
		r->obs = NULL; /* its error event says why */
		return;
	}
	if (!obs_has_tracepoint(r->obs))
		ev_note(r->ctx->em, "own.no_tracepoint",
			json_pack("{s:s}", "reason", obs_trace_error(r->obs)), NULL);
}

/* ---- the programs' TCP sockets, watched in the kernel ---- */

static int own_addr(const struct own_run *r, uint32_t a)
{
	return a && (a == r->own_addr[0] || a == r->own_addr[1]);
}

/* Watch one socket (main thread). A socket with none of the run's own
 * addresses is watched by sock_diag alone (see the top of this file); when
 * even that cannot see it (a refused connect() whose port is gone), it is
 * not watched. */
static void watch_sock(struct own_run *r, int who, int fd, const char *role,
		       const struct sockaddr_in *local, const struct sockaddr_in *peer,
		       int64_t from_ns, int64_t until_ns, int64_t at_ns)
{
	struct obs_sock s;
	struct obs_watch_opts opt;
	struct own_watch *w;
	int traced = own_addr(r, local->sin_addr.s_addr) ||
		     (peer && own_addr(r, peer->sin_addr.s_addr));
	int i;

	if (!r->obs || (!traced && !local->sin_port))
		return;
	if (r->n_watch >= OBS_MAX_WATCH) {
		if (!r->watch_full_noted++)
			ev_note(r->ctx->em, "own.watch_full", json_pack("{s:i}", "max", OBS_MAX_WATCH),
				NULL);
		return;
	}
	memset(&s, 0, sizeof s);
	s.who = role;
	s.laddr = local->sin_addr;
	s.lport = ntohs(local->sin_port);
	if (peer) {
		s.raddr = peer->sin_addr;
		s.rport = ntohs(peer->sin_port);
	}
	s.host = who == P_SERVER ? NET_SERVER : NET_CLIENT;
	opt = (struct obs_watch_opts){from_ns, until_ns, traced ? 0 : OBS_SOCK_NO_TRACE};
	/* The entry is complete before the observer can deliver anything
	 * about it (obs_watch publishes it). */
	w = &r->watch[r->n_watch];
	memset(w, 0, sizeof *w);
	w->prog = who;
	w->fd = fd;
	w->role = role;
	w->lport = s.lport;
	w->traced = traced;
	i = obs_watch(r->obs, &s, &opt);
	if (i != r->n_watch)
		return; /* -ENOSPC: OBS_MAX_WATCH, noted above next time */
	r->n_watch++;
	/* Said in time order, with the call that made the socket known. */
	if (!traced && !r->untraced_noted++)
		deliver(r, ITEM_SAMPLED, who, NULL, NULL,
			json_pack("{s:s, s:s, s:s, s:s, s:i, s:s}", "program", who_names[who],
				  "program_key", who_keys[who], "socket", role, "socket_key", sock_role_key(role),
				  "port", s.lport, "server_host", r->srv_ip),
			at_ns);
}

static int rec_sin(const uint8_t *b, size_t len, struct sockaddr_in *out)
{
	memset(out, 0, sizeof *out);
	if (len < sizeof *out)
		return 0;
	memcpy(out, b, sizeof *out);
	return out->sin_family == AF_INET;
}

/* What a record tells of the program's TCP sockets (main thread, as the
 * record arrives: the observer delivers horizon_ms later, so a socket
 * watched now is still given the transitions it made before its record came). */
static void watch_from_record(struct own_run *r, int who, const struct own_rec *rec)
{
	struct prog *pg = &r->p[who];
	struct own_fd *f = rec->fd >= 0 && rec->fd < OWN_FDS ? &pg->fds[rec->fd] : NULL;
	struct sockaddr_in local, peer;

	switch (rec->call) {
	case OWN_SOCKET:
		if (rec->ret >= 0 && rec->ret < OWN_FDS) {
			f = &pg->fds[rec->ret];
			memset(f, 0, sizeof *f);
			f->tcp = rec->a[0] == AF_INET && (rec->a[1] & 0xf) == SOCK_STREAM;
		}
		break;
	case OWN_BIND:
		if (f && f->tcp && rec->ret == 0)
			rec_sin(rec->addr, rec->addr_len, &f->bound);
		break;
	case OWN_LISTEN:
		if (f && f->tcp && rec->ret == 0 && !f->listening && f->bound.sin_family == AF_INET) {
			f->listening = 1;
			f->listen_ns = rec->t0_ns;
			watch_sock(r, who, rec->fd, "listener", &f->bound, NULL, rec->t0_ns, 0,
				   rec->t1_ns);
		}
		break;
	case OWN_CONNECT:
		if (!f || !f->tcp || !rec_sin(rec->addr, rec->addr_len, &peer))
			break;
		if (rec->ret == 0 || rec->err == EINPROGRESS) {
			if (rec_sin(rec->data, rec->data_len, &local))
				watch_sock(r, who, rec->fd, "client", &local, &peer, rec->t0_ns,
					   rec->t1_ns, rec->t1_ns);
		} else {
			/* Refused or unreachable: its port is gone with it; the
			 * tracepoint can still show its SYN_SENT and CLOSE. */
			memset(&local, 0, sizeof local);
			watch_sock(r, who, rec->fd, "client", &local, &peer, rec->t0_ns, rec->t1_ns,
				   rec->t1_ns);
		}
		break;
	case OWN_ACCEPT:
		if (rec->ret >= 0 && rec->ret < OWN_FDS) {
			int64_t from = f && f->listening ? f->listen_ns : 0;
			struct own_fd *nf = &pg->fds[rec->ret];

			memset(nf, 0, sizeof *nf);
			nf->tcp = 1;
			if (rec_sin(rec->data, rec->data_len, &local) &&
			    rec_sin(rec->addr, rec->addr_len, &peer))
				watch_sock(r, who, (int)rec->ret, "server", &local, &peer, from, 0,
					   rec->t1_ns);
		}
		break;
	case OWN_CLOSE:
		if (f && rec->ret == 0)
			memset(f, 0, sizeof *f);
		break;
	default:
		break;
	}
}

/* Read every record queued on a program's record socket. A message that is
 * not one whole record with the magic, or out of sequence, is tampering (or
 * a broken shim): counted, reported once, never turned into an event. */
static void drain_records(struct own_run *r, int who)
{
	struct prog *pg = &r->p[who];
	struct own_rec rec;

	for (;;) {
		ssize_t n = recv(pg->proc.rec_fd, &rec, sizeof rec, MSG_DONTWAIT | MSG_TRUNC);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		if (n != (ssize_t)sizeof rec || rec.magic != OWN_REC_MAGIC ||
		    rec.seq != pg->next_seq + 1 || rec.call == 0 || rec.call >= OWN_CALL_MAX ||
		    (rec.call == OWN_HELLO) != (rec.seq == 1) || rec.data_len > OWN_REC_DATA ||
		    rec.addr_len > OWN_REC_ADDR) {
			if (pg->bad_records++ == 0)
				ev_note(r->ctx->em, "own.tampered",
					json_pack("{s:s, s:s, s:I}", "who", who_names[who], "who_key", who_keys[who], "after",
						  (json_int_t)pg->next_seq),
					NULL);
			continue;
		}
		pg->next_seq = rec.seq;
		if (rec.call == OWN_HELLO)
			pg->shim_ok = 1;
		if ((rec.call == OWN_LISTEN && rec.ret == 0) ||
		    (rec.call == OWN_BIND && rec.ret == 0 && who == P_SERVER))
			pg->listened = 1;
		deliver(r, ITEM_REC, who, &rec, NULL, NULL, rec.t1_ns);
		watch_from_record(r, who, &rec);
	}
}

/* ---- output ---- */

static void emit_line(struct own_run *r, int who, int stream, const char *text, size_t len,
		      int cut)
{
	json_t *f = json_pack("{s:s, s:s, s:s%}", "who", who_names[who], "stream",
			      stream ? "stderr" : "stdout", "text", text, len);

	if (!f)
		return;
	if (cut)
		json_object_set_new(f, "cut", json_true());
	if (stream && !r->p[who].traceback_noted &&
	    (strstr(json_string_value(json_object_get(f, "text")), "Traceback (most recent") ||
	     strstr(json_string_value(json_object_get(f, "text")), "SyntaxError"))) {
		r->p[who].traceback_noted = 1;
		json_object_set_new(f, "traceback", json_true());
	}
	deliver(r, ITEM_EVENT, who, NULL, "output", f, obs_now_ns());
}

/* Read what a program printed; whole lines become events. Returns 0 at EOF. */
static int drain_output(struct own_run *r, int who, int stream)
{
	struct prog *pg = &r->p[who];
	int fd = stream ? pg->proc.err_fd : pg->proc.out_fd;
	char buf[4096];
	ssize_t n = read(fd, buf, sizeof buf);
	ssize_t i;

	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return 1;
	if (n <= 0) {
		if (pg->line_len[stream])
			emit_line(r, who, stream, pg->line[stream], pg->line_len[stream], 0);
		pg->line_len[stream] = 0;
		return 0;
	}
	for (i = 0; i < n; i++) {
		char c = buf[i];
		if (pg->out_bytes >= OWN_OUT_MAX) {
			if (pg->out_bytes++ == OWN_OUT_MAX)
				ev_note(r->ctx->em, "own.output_capped",
					json_pack("{s:s, s:s, s:i}", "who", who_names[who], "who_key", who_keys[who], "max",
						  OWN_OUT_MAX),
					NULL);
			continue;
		}
		pg->out_bytes++;
		if (c == '\n') {
			emit_line(r, who, stream, pg->line[stream], pg->line_len[stream], 0);
			pg->line_len[stream] = 0;
			continue;
		}
		pg->line[stream][pg->line_len[stream]++] = c;
		if (pg->line_len[stream] == OWN_LINE_MAX) {
			emit_line(r, who, stream, pg->line[stream], pg->line_len[stream], 1);
			pg->line_len[stream] = 0;
		}
	}
	return 1;
}

/* ---- the programs ---- */

static int open_source(struct own_run *r, int who, char *err, size_t errlen)
{
	const char *path = lab_str(r->ctx->p, who_names[who]);
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);

	const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;

	/* Messages name the file, never its directory (an uploaded program lives
	 * in the server's data directory). */
	if (fd < 0) {
		snprintf(err, errlen, "parameter '%s': cannot open %s: %s", who_names[who], base,
			 strerror(errno));
		return -EINVAL;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > OWN_SRC_MAX) {
		snprintf(err, errlen, "parameter '%s': %s must be a regular file of at most %d bytes",
			 who_names[who], base, OWN_SRC_MAX);
		close(fd);
		return -EINVAL;
	}
	return fd;
}

extern const unsigned char own_shim_so[];
extern const unsigned char own_shim_so_end[];

/* Start one program. bwrap reads the shim and hosts files from the current
 * offset of their fds, so each program is given fresh ones. */
static int start_prog(struct own_run *r, int who, const char *srv_ip, char *err, size_t errlen)
{
	struct lab_ctx *ctx = r->ctx;
	char host_env[64], hosts[160];
	const char *env[] = {host_env, NULL};
	struct own_spawn s;
	int src, rc, shim_fd, hosts_fd;

	snprintf(hosts, sizeof hosts, "127.0.0.1 localhost\n%s server\n", srv_ip);
	src = open_source(r, who, err, errlen);
	if (src < 0)
		return src;
	shim_fd = own_memfd("socklab-shim", own_shim_so, (size_t)(own_shim_so_end - own_shim_so));
	hosts_fd = own_memfd("socklab-hosts", hosts, strlen(hosts));
	if (shim_fd < 0 || hosts_fd < 0) {
		snprintf(err, errlen, "could not prepare the sandbox's files");
		rc = -EIO;
		goto out;
	}
	snprintf(host_env, sizeof host_env, "SERVER_HOST=%s", srv_ip);
	memset(&s, 0, sizeof s);
	s.bwrap = "/usr/bin/bwrap";
	s.python = "/usr/bin/python3";
	s.src_fd = src;
	s.name = prog_names[who];
	s.shim_fd = shim_fd;
	s.hosts_fd = hosts_fd;
	s.netns_fd = ctx->net ? net_ns_fd(ctx->net, who == P_SERVER ? NET_SERVER : NET_CLIENT) : -1;
	s.cpu_s = (int)lab_int(ctx->p, "cpu_s");
	s.env = env;
	rc = own_spawn_start(&s, &r->p[who].proc, err, errlen);
	if (rc == 0)
		r->p[who].started = 1;
out:
	close(src);
	if (shim_fd >= 0)
		close(shim_fd);
	if (hosts_fd >= 0)
		close(hosts_fd);
	return rc;
}

/* A program ended: its exit event, with what its status means. */
static void prog_ended(struct own_run *r, int who)
{
	struct prog *pg = &r->p[who];
	int status;
	json_t *f;

	drain_records(r, who);
	while (drain_output(r, who, 0) > 0)
		;
	while (drain_output(r, who, 1) > 0)
		;
	status = own_proc_close(&pg->proc);
	pg->ended = 1;
	pg->status = status;
	f = json_pack("{s:s}", "who", who_names[who]);
	if (WIFEXITED(status) && WEXITSTATUS(status) > 128 && WEXITSTATUS(status) < 128 + 65 &&
	    sigabbrev_np(WEXITSTATUS(status) - 128)) {
		/* bwrap reports a program killed by signal N as exit code 128 + N. */
		json_object_set_new(f, "code", json_integer(WEXITSTATUS(status)));
		json_object_set_new(f, "signal", json_string(sigabbrev_np(WEXITSTATUS(status) - 128)));
		json_object_set_new(f, "how", json_string(pg->killed_by_lab ? "stopped" : "killed"));
	} else if (WIFEXITED(status)) {
		json_object_set_new(f, "code", json_integer(WEXITSTATUS(status)));
		json_object_set_new(f, "how", json_string("exited"));
	} else if (WIFSIGNALED(status)) {
		json_object_set_new(f, "signal", json_string(sigabbrev_np(WTERMSIG(status))
								 ? sigabbrev_np(WTERMSIG(status))
								 : "?"));
		json_object_set_new(f, "how", json_string(pg->killed_by_lab ? "stopped" : "killed"));
	}
	deliver(r, ITEM_EXIT, who, NULL, NULL, f, obs_now_ns());
	if (!pg->shim_ok)
		ev_note(r->ctx->em, "own.no_shim", json_pack("{s:s, s:s}", "who", who_names[who], "who_key",
				  who_keys[who]), NULL);
	else if (pg->killed_by_lab && who == P_SERVER)
		ev_note(r->ctx->em, "own.server_stopped", NULL, NULL);
}

static void stop_prog(struct own_run *r, int who)
{
	struct prog *pg = &r->p[who];

	if (!pg->started || pg->ended)
		return;
	pg->killed_by_lab = 1;
	kill(pg->proc.pid, SIGKILL);
	prog_ended(r, who);
}

/* One turn of the loop: wait for anything from the running programs, at
 * most timeout_ms. Returns -ECANCELED when the run is cancelled. */
static int pump(struct own_run *r, int timeout_ms)
{
	struct pollfd pfd[9];
	int map[9][2], n = 0, who, i, rc;
	int64_t t_read;

	for (who = 0; who < 2; who++) {
		struct prog *pg = &r->p[who];
		if (!pg->started || pg->ended)
			continue;
		pfd[n] = (struct pollfd){.fd = pg->proc.rec_fd, .events = POLLIN};
		map[n][0] = who, map[n++][1] = 0;
		if (pg->proc.out_fd >= 0) {
			pfd[n] = (struct pollfd){.fd = pg->proc.out_fd, .events = POLLIN};
			map[n][0] = who, map[n++][1] = 1;
		}
		if (pg->proc.err_fd >= 0) {
			pfd[n] = (struct pollfd){.fd = pg->proc.err_fd, .events = POLLIN};
			map[n][0] = who, map[n++][1] = 2;
		}
		pfd[n] = (struct pollfd){.fd = pg->proc.pidfd, .events = POLLIN};
		map[n][0] = who, map[n++][1] = 3;
	}
	pfd[n] = (struct pollfd){.fd = r->ctx->cancel_fd, .events = POLLIN};
	map[n][0] = -1, map[n++][1] = -1;
	/* Wake at least every OWN_TURN_MS to tell the observer how far the
	 * records have been read (obs_caught_up): it delivers nothing later. */
	rc = poll(pfd, (nfds_t)n, timeout_ms < OWN_TURN_MS ? timeout_ms : OWN_TURN_MS);
	t_read = obs_now_ns();
	if (rc < 0)
		return errno == EINTR ? 0 : -errno;
	if (lab_cancelled(r->ctx))
		return -ECANCELED;
	/* Records and output first, the exit last, so nothing is lost. */
	for (i = 0; i < n; i++) {
		struct prog *pg;
		if (map[i][0] < 0 || !pfd[i].revents || map[i][1] == 3)
			continue;
		pg = &r->p[map[i][0]];
		if (map[i][1] == 0)
			drain_records(r, map[i][0]);
		else if (drain_output(r, map[i][0], map[i][1] - 1) == 0) {
			int *fd = map[i][1] == 1 ? &pg->proc.out_fd : &pg->proc.err_fd;
			close(*fd);
			*fd = -1;
		}
	}
	for (i = 0; i < n; i++)
		if (map[i][0] >= 0 && map[i][1] == 3 && pfd[i].revents &&
		    !r->p[map[i][0]].ended)
			prog_ended(r, map[i][0]);
	/* Every record sent before t_read has been read and its socket
	 * watched. */
	obs_caught_up(r->obs, t_read);
	return 0;
}

/* The state the kernel sources last gave watched socket w at or before
 * t_ns: its index in w->hist, or -1. */
static int state_at(const struct own_watch *w, int64_t t_ns)
{
	int i, last = -1;

	for (i = 0; i < w->n_hist && w->hist[i].t_ns <= t_ns; i++)
		last = i;
	return last;
}

/* The note's fields naming the failed bind() and the socket that held
 * its port, from report h of w. */
static json_t *held_params(struct own_run *r, const struct own_bindfail *b,
			   const struct own_watch *w, int h)
{
	int64_t us = obs_run_us(r->ctx, w->hist[h].t_ns);

	return json_pack("{s:s, s:s, s:i, s:I, s:s, s:s, s:s, s:s, s:i, s:s, s:s, s:I, s:I}", "who",
			 who_names[b->who], "who_key", who_keys[b->who], "port", b->port, "bind_seq",
			 b->seq, "program", who_names[w->prog], "program_key", who_keys[w->prog],
			 "socket", w->role, "socket_key", sock_role_key(w->role), "fd", w->fd, "state",
			 tcpst_name(w->hist[h].state), "source", obs_src_name(w->hist[h].src), "t_ms",
			 (json_int_t)(us / 1000), "t_us", (json_int_t)us);
}

/* A tracepoint's FIN_WAIT_2 (or TIME_WAIT) -> CLOSED at report h is the
 * kernel swapping the socket for its small timewait entry, which keeps
 * the port: the first sock_diag sample that listed w wholly after t_ns
 * (in FIN_WAIT_2 or TIME_WAIT) shows it was still there. -1: none. */
static int listed_after(const struct own_watch *w, int h, int64_t t_ns)
{
	int i;

	if (w->hist[h].from != TCPST_FIN_WAIT2 && w->hist[h].from != TCPST_TIME_WAIT)
		return -1;
	for (i = h + 1; i < w->n_hist; i++)
		if (w->hist[i].src == OBS_SRC_SOCK_DIAG && w->hist[i].from_ns > t_ns &&
		    (w->hist[i].state == TCPST_FIN_WAIT2 || w->hist[i].state == TCPST_TIME_WAIT))
			return i;
	return -1;
}

static json_t *tw_params(struct own_run *r, const struct own_bindfail *b,
			 const struct own_watch *w, int h, int later)
{
	json_t *p = held_params(r, b, w, h);
	int64_t us = obs_run_us(r->ctx, w->hist[later].from_ns);

	json_object_set_new(p, "from", json_string(tcpst_name(w->hist[h].from)));
	json_object_set_new(p, "listed_state", json_string(tcpst_name(w->hist[later].state)));
	json_object_set_new(p, "listed_source", json_string(obs_src_name(w->hist[later].src)));
	json_object_set_new(p, "listed_ms", json_integer(us / 1000));
	json_object_set_new(p, "listed_from_us", json_integer(us));
	return p;
}

#define OWN_TW_NOTES 4

/* After obs_stop: which socket held a port a bind() could not have, and
 * how each connection's TIME_WAIT ended or that it still runs, by the
 * kernel's own reports (as handshake says them). When the tracepoint lost
 * events (trace_incomplete), what held a port is not said of a socket it
 * watched: the state before the bind() rests on its transitions, and the
 * one that would change it may be the one lost. */
static void own_end_notes(struct own_run *r, int trace_incomplete)
{
	struct ev_emitter *em = r->ctx->em;
	int i, k, notes = 0;

	for (k = 0; k < r->n_bindfail; k++) {
		const struct own_bindfail *b = &r->bindfail[k];

		for (i = 0; i < r->n_watch; i++) {
			const struct own_watch *w = &r->watch[i];
			int h = state_at(w, b->t0_ns), later;

			/* A connection's socket still open, or still closing, at
			 * the bind(): listeners are told by their close() calls. */
			if (w->lport != b->port || !strcmp(w->role, "listener") || h < 0 ||
			    (trace_incomplete && w->traced))
				continue;
			if (w->hist[h].state != TCPST_CLOSE) {
				ev_note(em, "own.eaddrinuse_held", held_params(r, b, w, h), NULL);
				break;
			}
			/* Closed by the tracepoint's word, yet listed after the bind(). */
			later = listed_after(w, h, b->t0_ns);
			if (later < 0)
				continue;
			ev_note(em, "own.eaddrinuse_held_tw", tw_params(r, b, w, h, later), NULL);
			break;
		}
	}
	for (i = 0; i < r->n_watch && notes < OWN_TW_NOTES; i++) {
		const struct own_watch *w = &r->watch[i];
		struct obs_final fin;
		json_t *p;

		if (!strcmp(w->role, "listener"))
			continue;
		obs_final_state(r->obs, i, &fin);
		p = json_pack("{s:s, s:s, s:s, s:s, s:i, s:i}", "program", who_names[w->prog], "program_key",
			      who_keys[w->prog], "socket", w->role, "socket_key", sock_role_key(w->role),
			      "fd", w->fd, "port", w->lport);
		if (fin.listed_at_end && fin.state == TCPST_TIME_WAIT) {
			json_object_set_new(p, "ms_left", json_integer(fin.timer_ms));
			json_object_set_new(p, "source", json_string("sock_diag"));
			ev_note(em, "own.time_wait_left", p, NULL);
			notes++;
		} else if (w->tw_ns && fin.reason) {
			json_object_set_new(p, "t_ms", json_integer(obs_run_us(r->ctx, fin.t_ns) / 1000));
			if (!strcmp(fin.reason, "rst"))
				ev_note(em, "own.time_wait_ended.rst", p, NULL);
			else if (!strcmp(fin.reason, "timer_expired"))
				ev_note(em, "own.time_wait_ended.timer_expired", p, NULL);
			else if (!strcmp(fin.reason, "reused"))
				ev_note(em, "own.time_wait_ended.reused", p, NULL);
			else
				ev_note(em, "own.time_wait_ended.not_listed", p, NULL);
			notes++;
		} else {
			json_decref(p);
		}
	}
}

static int64_t left_ms(int64_t until_ns)
{
	int64_t l = (until_ns - obs_now_ns()) / 1000000;

	return l < 0 ? 0 : l > INT_MAX ? INT_MAX : l;
}

static int missing_tools(char *err, size_t errlen)
{
	if (access("/usr/bin/bwrap", X_OK) != 0) {
		snprintf(err, errlen,
			 "the own lab runs programs in bubblewrap, which is not installed "
			 "(apt-get install bubblewrap)");
		return 1;
	}
	if (access("/usr/bin/python3", X_OK) != 0) {
		snprintf(err, errlen,
			 "the own lab runs Python 3 programs: /usr/bin/python3 is not installed "
			 "(apt-get install python3)");
		return 1;
	}
	return 0;
}

static int run(struct lab_ctx *ctx)
{
	struct own_run r;
	char err[512] = "", srv_ip[16] = "127.0.0.1";
	int rc = 0, who;
	int64_t until, server_until;
	uint64_t records_lost = 0;
	json_t *progs;

	memset(&r, 0, sizeof r);
	r.ctx = ctx;
	r.p[P_SERVER].present = lab_str(ctx->p, "server")[0] != 0;
	r.p[P_CLIENT].present = lab_str(ctx->p, "client")[0] != 0;
	for (who = 0; who < 2; who++)
		r.p[who].proc.pid = -1, r.p[who].proc.pidfd = r.p[who].proc.rec_fd =
					    r.p[who].proc.out_fd = r.p[who].proc.err_fd = -1;
	if (missing_tools(err, sizeof err)) {
		ev_error(ctx->em, "missing_tool", NULL, err);
		return -ENOENT;
	}
	rc = own_userns_check(err, sizeof err);
	if (rc < 0) {
		ev_error(ctx->em, "sandbox_unavailable", NULL, err);
		return rc;
	}
	if (ctx->net) {
		frame_ip_str(net_addr(ctx->net, NET_SERVER), srv_ip);
		r.own_addr[0] = htonl(net_addr(ctx->net, NET_SERVER));
		r.own_addr[1] = htonl(net_addr(ctx->net, NET_CLIENT));
	} else {
		/* On loopback the server's name is a 127.x.y.z of this run's own
		 * (y, z in 1..254, x > 0 clear of 127.0.0.0/16, as handshake
		 * does): connections to it can be told from any other run's. */
		uint8_t rnd[3];

		if (getrandom(rnd, sizeof rnd, 0) == (ssize_t)sizeof rnd) {
			uint32_t a = 0x7f000000u | (uint32_t)(1 + rnd[0] % 254) << 16 |
				     (uint32_t)(1 + rnd[1] % 254) << 8 | (uint32_t)(1 + rnd[2] % 254);
			frame_ip_str(a, srv_ip);
			r.own_addr[0] = htonl(a);
		}
	}
	snprintf(r.srv_ip, sizeof r.srv_ip, "%s", srv_ip);
	ev_note(ctx->em, "own.sandbox", json_pack("{s:s}", "server_host", srv_ip), NULL);
	/* A record socket queues at most max_dgram_qlen records (10 by default)
	 * before the program waits for the runner; in the run's own namespace
	 * (never the host's) the queue may be longer. */
	if (ctx->netns || ctx->net) {
		int fd = open("/proc/sys/net/unix/max_dgram_qlen", O_WRONLY | O_CLOEXEC);
		if (fd >= 0) {
			if (write(fd, "4096", 4) < 0) {
				/* Not permitted: records still flow, paced. */
			}
			close(fd);
		}
	}

	open_observer(&r);
	until = obs_now_ns() + lab_int(ctx->p, "time_limit_ms") * 1000000;
	if (r.p[P_SERVER].present) {
		rc = start_prog(&r, P_SERVER, srv_ip, err, sizeof err);
		if (rc < 0) {
			ev_error(ctx->em, "sandbox_failed", "server", err);
			goto out;
		}
		/* The client starts once the server listens (or has bound a UDP
		 * socket), has ended, or after server_wait_ms. */
		server_until = obs_now_ns() + lab_int(ctx->p, "server_wait_ms") * 1000000;
		while (r.p[P_CLIENT].present && !r.p[P_SERVER].listened && !r.p[P_SERVER].ended &&
		       left_ms(server_until) > 0 && left_ms(until) > 0) {
			rc = pump(&r, (int)(left_ms(server_until) < left_ms(until)
						    ? left_ms(server_until)
						    : left_ms(until)));
			if (rc < 0)
				goto out;
		}
	}
	if (r.p[P_CLIENT].present) {
		rc = start_prog(&r, P_CLIENT, srv_ip, err, sizeof err);
		if (rc < 0) {
			ev_error(ctx->em, "sandbox_failed", "client", err);
			goto out;
		}
	}
	/* Until the client ends (or, with no client, the server), or time is up. */
	who = r.p[P_CLIENT].present ? P_CLIENT : P_SERVER;
	while (!r.p[who].ended && left_ms(until) > 0) {
		rc = pump(&r, (int)left_ms(until));
		if (rc < 0)
			goto out;
	}
	if (!r.p[who].ended) {
		ev_note(ctx->em, "own.time_limit",
			json_pack("{s:I}", "ms", (json_int_t)lab_int(ctx->p, "time_limit_ms")), NULL);
	} else if (who == P_CLIENT && r.p[P_SERVER].started && !r.p[P_SERVER].ended) {
		/* Give a server that ends by itself a moment to do so. */
		int64_t grace = obs_now_ns() + 300 * 1000000LL;
		while (!r.p[P_SERVER].ended && left_ms(grace) > 0)
			if (pump(&r, (int)left_ms(grace)) < 0)
				break;
	}
	rc = 0;
out:
	for (who = 0; who < 2; who++)
		stop_prog(&r, who);
	/* Everything queued is delivered; the handler runs on this thread now. */
	if (r.obs) {
		obs_stop(r.obs);
		/* The capture's counters (and capture.incomplete when frames were
		 * missed), with the segments this lab showed. */
		if (obs_capture_report(r.obs, ctx->em, ctx->summary) < 0)
			json_object_set_new(ctx->summary, "capture", json_object());
		json_object_set_new(json_object_get(ctx->summary, "capture"), "segments",
				    json_integer(r.segments));
		/* The tracepoint's losses (and tracepoint.incomplete), before the
		 * notes that would rest on its transitions. */
		own_end_notes(&r, obs_trace_report(r.obs, ctx->em, ctx->summary) == 0);
		records_lost = obs_records_lost(r.obs);
		if (records_lost)
			ev_note(ctx->em, "own.records_lost",
				json_pack("{s:I}", "lost", (json_int_t)records_lost), NULL);
		obs_destroy(r.obs);
		r.obs = NULL;
	}
	/* Explanations read the calls: none from a trace known to miss some. */
	if (r.p[P_SERVER].present && r.p[P_CLIENT].present && !records_lost)
		explain_streams(&r, ctx->summary);
	for (who = 0; who < 2; who++) {
		int c;
		for (c = 0; c < r.p[who].n_conns; c++)
			free(r.p[who].conns[c].io);
	}
	progs = json_object();
	for (who = 0; who < 2; who++) {
		struct prog *pg = &r.p[who];
		if (!pg->present)
			continue;
		json_object_set_new(
			progs, who_names[who],
			json_pack("{s:b, s:I, s:I, s:I, s:I, s:b}", "traced", pg->shim_ok, "calls",
				  (json_int_t)pg->calls, "bytes_sent", (json_int_t)pg->bytes_out,
				  "bytes_received", (json_int_t)pg->bytes_in, "bad_records",
				  (json_int_t)pg->bad_records, "stopped_by_lab", pg->killed_by_lab));
		if (pg->ended && WIFEXITED(pg->status))
			json_object_set_new(json_object_get(progs, who_names[who]), "exit_code",
					    json_integer(WEXITSTATUS(pg->status)));
	}
	json_object_set_new(ctx->summary, "programs", progs);
	json_object_set_new(ctx->summary, "server_host", json_string(srv_ip));
	if (rc == -ECANCELED)
		return 0; /* the front end reports the cancel */
	return rc;
}

/* The CLI's readable lines: what a program printed, its start and its end. */
static int own_format(const struct lab_params *p, const json_t *ev, char *buf, size_t len)
{
	const char *type = json_string_value(json_object_get(ev, "type"));
	const char *who = json_string_value(json_object_get(ev, "who"));
	double t = (double)json_integer_value(json_object_get(ev, "t_us")) / 1000.0;

	if (type && !strcmp(type, "capture"))
		return snprintf(buf, len, "%10.3f  capturing on %s: %s\n", t,
				json_string_value(json_object_get(ev, "interface")),
				json_string_value(json_object_get(ev, "filter")));
	if (type && !strcmp(type, "segment")) {
		const json_t *src = json_object_get(ev, "src"), *dst = json_object_get(ev, "dst");

		return snprintf(buf, len,
				"%10.3f  packet     %s:%lld > %s:%lld  Flags [%s], seq %lld, ack %lld, "
				"win %lld, length %lld\n",
				t, json_string_value(json_object_get(src, "addr")),
				json_integer_value(json_object_get(src, "port")),
				json_string_value(json_object_get(dst, "addr")),
				json_integer_value(json_object_get(dst, "port")),
				json_string_value(json_object_get(ev, "flags_short")),
				json_integer_value(json_object_get(ev, "seq_raw")),
				json_integer_value(json_object_get(ev, "ack_raw")),
				json_integer_value(json_object_get(ev, "win")),
				json_integer_value(json_object_get(ev, "len")));
	}
	if (!type || !who)
		return -1;
	if (!strcmp(type, "state") || !strcmp(type, "observation") || !strcmp(type, "timer")) {
		const char *prog = json_string_value(json_object_get(ev, "program"));
		char what[256];

		if (obs_state_text(ev, what, sizeof what) < 0)
			return -1;
		return snprintf(buf, len, "%10.3f  %-9s  %s socket fd %lld: %s\n", t,
				prog ? prog : "?", who, json_integer_value(json_object_get(ev, "fd")),
				what);
	}
	if (!strcmp(type, "output"))
		return snprintf(buf, len, "%10.3f  %-9s  %s| %s\n", t, who,
				strcmp(json_string_value(json_object_get(ev, "stream")), "stderr")
					? ""
					: "stderr ",
				json_string_value(json_object_get(ev, "text")));
	if (!strcmp(type, "program.start"))
		return snprintf(buf, len, "%10.3f  %-9s  python3 %s: started, traced\n", t, who,
				json_string_value(json_object_get(ev, "file")));
	if (!strcmp(type, "program.exit")) {
		const char *how = json_string_value(json_object_get(ev, "how"));
		char end[64];

		if (how && !strcmp(how, "exited"))
			snprintf(end, sizeof end, "exited with code %lld",
				 json_integer_value(json_object_get(ev, "code")));
		else
			snprintf(end, sizeof end, "%s by SIG%s", how ? how : "ended",
				 json_string_value(json_object_get(ev, "signal")));
		return snprintf(buf, len,
				"%10.3f  %-9s  %s (%lld socket calls, %lld bytes sent, %lld received)\n",
				t, who, end, json_integer_value(json_object_get(ev, "calls")),
				json_integer_value(json_object_get(ev, "bytes_sent")),
				json_integer_value(json_object_get(ev, "bytes_received")));
	}
	return -1;
}

const struct lab_desc lab_own = {
	.name = "own",
	.title = "Your own program",
	.summary = "Run your own Python server and client in a sandbox and see every socket call "
		   "they make.",
	.params = params,
	.n_params = sizeof params / sizeof params[0],
	.check = check,
	.captures = 1,
	.run = run,
	.format = own_format,
};
