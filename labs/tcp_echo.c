/* tcp_echo.c: the tcp-echo lab: an echo server that answers in upper case and its clients. */
#include "tcp_echo.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/neighbour.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "i18n.h"
#include "lab.h"
#include "net/frame.h"
#include "net/net.h"
#include "net/nl.h"
#include "decode/decode.h"
#include "observer/observer.h"
#include "sock.h"
#include "tcpstate/tcpstate.h"

/*
 * Two shapes of run:
 *  - mode=both: server and clients in this process (threads), inside the run's
 *    private network namespace, talking over its loopback;
 *  - mode=server: only the server, on a port of the host that the student's own
 *    client (nc, a Python script) connects to. It stops after idle_timeout.
 * Both use the same server loop. Every socket call is a syscall event.
 *
 * capture=on (mode=both) adds the toolkit's observer (labs/observer): the
 * segments on the run's loopback, or on both hosts' eth0, merged in time
 * order with the calls, the kernel's TCP states of each connection's two
 * sockets (tracepoint, sock_diag), checksums, the capture's drop counts in
 * run.end and the pcap. A client's port is known once connect() returns, so
 * each client holds the observer's delivery back (obs_hold) from just before
 * its connect() until it has watched its socket and the server's socket of
 * the same connection: the kernel's events of the handshake are matched to
 * them when delivered, never lost to the race.
 */

#define MAX_CLIENTS 4
#define MAX_BYO_CONNS 8              /* concurrent connections in mode=server */
#define BYO_MAX_BYTES (1024 * 1024)  /* per connection in mode=server */
#define MAX_MSG 65536
/* capture=on: at most this many bytes in all (messages x size x clients),
 * so every segment is kept, shown and written to the pcap. */
#define CAPTURE_MAX_BYTES (4LL * 1024 * 1024)

static const char *const mode_choices[] = {"both", "server", NULL};
static const char *const transform_choices[] = {"upper", "echo", NULL};
static const char *const closer_choices[] = {"client", "server", NULL};
static const char *const style_choices[] = {"iterative", "concurrent", NULL};

static const struct lab_param_def echo_params[] = {
	{"mode", LAB_P_ENUM, "Mode",
	 "both: the lab runs the server and its clients; server: only the server, for your own "
	 "client (nc, Python)",
	 NULL, "both", 0, 0, mode_choices, 0},
	{"messages", LAB_P_INT, "Messages", "How many messages each client sends", NULL, "3", 1,
	 1000, NULL, 0},
	{"size", LAB_P_INT, "Message size",
	 "Bytes per message; 0 sends the text exactly as written", "bytes", "0", 0, MAX_MSG, NULL,
	 0},
	{"text", LAB_P_STRING, "Text", "What the client sends (repeated to fill size)", NULL,
	 "hello, socklab", 1, 512, NULL, 0},
	{"transform", LAB_P_ENUM, "Server reply",
	 "upper: answer in upper case, as the course's server does; echo: the same bytes", NULL,
	 "upper", 0, 0, transform_choices, 0},
	{"closer", LAB_P_ENUM, "Who closes first",
	 "The side that closes first sends the first FIN (and later waits in TIME_WAIT)", NULL,
	 "client", 0, 0, closer_choices, 0},
	{"server_style", LAB_P_ENUM, "Server style",
	 "iterative: one client at a time, later ones wait in the accept queue; concurrent: a "
	 "thread per client",
	 NULL, "iterative", 0, 0, style_choices, 0},
	{"clients", LAB_P_INT, "Clients", "How many clients connect, one after another", NULL, "1",
	 1, MAX_CLIENTS, NULL, 0},
	{"interval_ms", LAB_P_INT, "Pause between messages", "Client pause after each reply", "ms",
	 "0", 0, 5000, NULL, LAB_PF_ADVANCED},
	{"bufsize", LAB_P_INT, "Server recv() size", "The buffer size the server passes to recv()",
	 "bytes", "1024", 1, MAX_MSG, NULL, LAB_PF_ADVANCED},
	{"backlog", LAB_P_INT, "listen() backlog", "The backlog the server passes to listen()", NULL,
	 "5", 1, 128, NULL, LAB_PF_ADVANCED},
	{"idle_timeout", LAB_P_INT, "Idle timeout",
	 "mode=server: stop after this long with no client activity", "s", "60", 1, 600, NULL,
	 LAB_PF_ADVANCED},
	{"port", LAB_P_INT, "Port", "The server's port; 0 lets the kernel choose", NULL, "0", 0,
	 65535, NULL, LAB_PF_SERVER | LAB_PF_ADVANCED},
	{"capture", LAB_P_BOOL, "Capture segments",
	 "Capture the TCP segments on the wire and watch both sockets' states in the kernel "
	 "(needs CAP_NET_RAW); it costs the round trips a little (the run says how much)",
	 NULL, "false", 0, 0, NULL, 0},
	{"bind", LAB_P_STRING, "Listen address",
	 "The address the server binds (an IPv4 or IPv6 literal)", NULL, "127.0.0.1", 2, 45, NULL,
	 LAB_PF_SERVER | LAB_PF_ADVANCED},
	NET_PARAMS,
};

void echo_transform(char *buf, size_t n, enum echo_transform t)
{
	size_t i;

	if (t != ECHO_UPPER)
		return;
	for (i = 0; i < n; i++)
		if (buf[i] >= 'a' && buf[i] <= 'z')
			buf[i] = (char)(buf[i] - 'a' + 'A');
}

size_t echo_message(char *out, size_t cap, int index, size_t size, const char *text)
{
	size_t tl = strlen(text), n, i;
	int w;

	if (cap == 0)
		return 0;
	if (size == 0) {
		n = tl < cap ? tl : cap;
		memcpy(out, text, n);
		return n;
	}
	if (size > cap)
		size = cap;
	w = snprintf(out, cap, "[%d] ", index);
	n = w < 0 ? 0 : ((size_t)w < size ? (size_t)w : size);
	for (i = 0; n < size; i++, n++)
		out[n] = tl ? (i % (tl + 1) == tl ? ' ' : text[i % (tl + 1)]) : '.';
	return n;
}

/* What the capture saw of one connection, by direction (0: client to server,
 * 1: server to client). Sequence numbers are relative to each side's ISN, as
 * tcpdump and Wireshark show them. */
struct echo_wire {
	uint16_t cport;     /* the client's port, host order; 0: not connected yet */
	int have_isn[2];
	uint32_t isn[2];
	uint32_t end[2];    /* the highest relative sequence number sent + 1 */
	long long bytes[2]; /* payload bytes, retransmissions not counted again */
	long long segs[2];
	int fin[2];
	int fin_acked[2]; /* an ACK from the other side covered this side's FIN */
};

struct echo_run {
	struct lab_ctx *ctx;
	int byo;        /* mode=server */
	int messages;
	size_t size;
	const char *text;
	enum echo_transform transform;
	int server_closes;
	int concurrent;
	int clients;
	int interval_ms;
	size_t bufsize;
	int backlog;
	int idle_ms;
	struct sockaddr_storage addr; /* where the server listens, after bind */
	socklen_t addrlen;
	int lfd;

	pthread_mutex_t lock; /* guards everything below */
	pthread_cond_t cond;
	int connected[MAX_CLIENTS + 2];   /* client k has connected (and was seen queued) */
	int first_reply[MAX_CLIENTS + 2]; /* client k got its first reply */
	int active;                       /* server connections being served */
	int64_t last_activity_us;
	int failed;
	long long c_bytes_sent, c_bytes_recv, replies_ok, replies_bad, split_replies;
	long long s_bytes_in, s_bytes_out, conns, resets, peer_closes, idle_closes, max_queue;
	long long c_retrans, s_retrans;
	int arp_frames[2]; /* ARP frames the relay carried, by direction */
	int64_t *rtts; /* every reply's round trip, for the tracing note */
	size_t n_rtts;

	/* capture=on. obs is set before any lab thread starts; the rest is
	 * guarded by lock (the observer's callback takes it too). */
	struct obs *obs;
	uint16_t sport;               /* the server's port, host order */
	struct echo_wire wire[MAX_CLIENTS + 1]; /* by conn (1..clients) */
	int sock_conn[OBS_MAX_WATCH]; /* the observer's socket index -> conn (0: none) */
	const char *sock_who[OBS_MAX_WATCH];
	long long segments, seg_other, seg_retrans;
	int64_t obs_started_ns;
};

static void touch(struct echo_run *r)
{
	pthread_mutex_lock(&r->lock);
	r->last_activity_us = ev_now_us(r->ctx->em);
	pthread_mutex_unlock(&r->lock);
}

static void add(struct echo_run *r, long long *field, long long v)
{
	pthread_mutex_lock(&r->lock);
	*field += v;
	pthread_mutex_unlock(&r->lock);
}

static void fail(struct echo_run *r)
{
	pthread_mutex_lock(&r->lock);
	r->failed = 1;
	pthread_cond_broadcast(&r->cond);
	pthread_mutex_unlock(&r->lock);
}

/* An event a lab thread emits while the run goes on. With capture=on it is
 * queued with the observer, stamped now, so it takes its place among the
 * calls, segments and kernel states the observer emits in time order (a
 * note emitted at once would come before the held call it follows); else it
 * is emitted at once, and carries t_lab_us, the run time when the lab said
 * it. j is stolen. */
struct echo_item {
	const char *type;
	json_t *j;
};

static void say(struct echo_run *r, const char *type, json_t *j)
{
	struct echo_item *it = r->obs && j ? malloc(sizeof *it) : NULL;

	if (it) {
		/* When the lab said it: the observer emits it later, in its place
		 * (the CLI and the view show it at this time). */
		json_object_set_new(j, "t_lab_us", json_integer(ev_now_us(r->ctx->em)));
		*it = (struct echo_item){type, json_incref(j)};
		/* On failure the observer freed it (one reference): emit below. */
		if (obs_record(r->obs, obs_now_ns(), it) == 0) {
			json_decref(j);
			return;
		}
	}
	ev_emit(r->ctx->em, type, j);
}

/* A note (its English text from the tables, the event ev_note builds), said
 * in its place. params is stolen. */
static void say_note(struct echo_run *r, const char *key, json_t *params)
{
	char id[128];
	char *english = NULL;
	json_t *f;

	if (snprintf(id, sizeof id, "note.%s", key) < (int)sizeof id)
		english = i18n_text("en", id, params);
	f = json_pack("{s:s, s:s}", "key", key, "text", english ? english : key);
	free(english);
	if (!f) {
		json_decref(params);
		return;
	}
	json_object_set_new(f, "params", params ? params : json_object());
	say(r, "note", f);
}

static void item_free(void *rec)
{
	struct echo_item *it = rec;

	json_decref(it->j);
	free(it);
}

/* Wait until flags[k] is set (or the run fails or is cancelled). */
static int wait_flag(struct echo_run *r, int *flags, int k)
{
	int rc = 0;

	pthread_mutex_lock(&r->lock);
	while (!flags[k] && !r->failed) {
		struct timespec ts;
		pthread_mutex_unlock(&r->lock);
		if (lab_cancelled(r->ctx))
			return -ECANCELED;
		pthread_mutex_lock(&r->lock);
		/* Wake at least every 100 ms to notice cancellation. */
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 100 * 1000 * 1000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&r->cond, &r->lock, &ts);
	}
	if (!flags[k])
		rc = -ECANCELED;
	pthread_mutex_unlock(&r->lock);
	return rc;
}

static void set_flag(struct echo_run *r, int *flags, int k)
{
	pthread_mutex_lock(&r->lock);
	flags[k] = 1;
	pthread_cond_broadcast(&r->cond);
	pthread_mutex_unlock(&r->lock);
}

/* ---- server side ---- */

static size_t echo_message_len(const struct echo_run *r)
{
	return r->size ? r->size : strlen(r->text);
}


/* Over two hosts, say how many segments the kernel retransmitted on this
 * connection (TCP_INFO's tcpi_total_retrans): the evidence that a lossy wire
 * cost TCP retransmissions, not data. */
static void report_retransmits(struct echo_run *r, int fd, struct lsock_who w)
{
	struct tcp_info ti;
	socklen_t tl = sizeof ti;

	if (!r->ctx->net || getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &tl) < 0)
		return;
	pthread_mutex_lock(&r->lock);
	if (!strcmp(w.who, "client"))
		r->c_retrans += ti.tcpi_total_retrans;
	else
		r->s_retrans += ti.tcpi_total_retrans;
	pthread_mutex_unlock(&r->lock);
	say(r, "metric",
		json_pack("{s:s, s:s, s:i, s:i, s:i}", "name", "tcp_retransmits", "who", w.who,
			  "conn", w.conn, "value", (int)ti.tcpi_total_retrans, "rto_ms",
			  (int)(ti.tcpi_rto / 1000)));
}

struct conn_arg {
	struct echo_run *r;
	int fd;
	int conn;
	pthread_t tid;
	int started;
};

/* Serve one connection until the peer closes, resets, idles out, or (when the
 * server closes first) every expected byte has been answered. */
static void serve_conn(struct echo_run *r, int fd, int conn)
{
	struct lab_ctx *ctx = r->ctx;
	struct lsock_who w = {"server", conn};
	long long expected = r->byo ? -1 : (long long)r->messages * (long long)echo_message_len(r);
	long long echoed = 0, conn_in = 0;
	char *buf = malloc(r->bufsize);

	if (!buf) {
		fail(r);
		goto out;
	}
	for (;;) {
		ssize_t n = lsock_recv(ctx, w, fd, buf, r->bufsize, r->byo ? r->idle_ms : -1);
		if (n == -ETIMEDOUT) {
			add(r, &r->idle_closes, 1);
			say_note(r, "echo.idle_close", json_pack("{s:i, s:i}", "conn", conn,
				"idle_s", r->idle_ms / 1000));
			break;
		}
		if (n == -ECANCELED)
			break;
		if (n == 0) {
			add(r, &r->peer_closes, 1);
			say_note(r, "echo.peer_closed", json_pack("{s:i}", "conn", conn));
			break;
		}
		if (n < 0) {
			if (n == -ECONNRESET) {
				add(r, &r->resets, 1);
				say_note(r, "echo.reset", json_pack("{s:i}", "conn", conn));
			} else if (!r->byo) {
				fail(r);
			}
			break;
		}
		if (r->byo) /* only mode=server stops when idle */
			touch(r);
		add(r, &r->s_bytes_in, n);
		conn_in += n;
		if (r->byo && conn_in > BYO_MAX_BYTES) {
			say_note(r, "echo.byo_limit", json_pack("{s:i}", "conn", conn));
			break;
		}
		echo_transform(buf, (size_t)n, r->transform);
		n = lsock_send_all(ctx, w, fd, buf, (size_t)n, r->byo ? r->idle_ms : -1);
		if (n < 0) {
			if (n == -ECONNRESET || n == -EPIPE)
				add(r, &r->resets, 1);
			else if (!r->byo && n != -ECANCELED)
				fail(r);
			break;
		}
		add(r, &r->s_bytes_out, n);
		echoed += n;
		if (expected > 0 && r->server_closes && echoed >= expected) {
			say_note(r, "echo.server_closes", json_pack("{s:i}", "conn", conn));
			break;
		}
	}
out:
	free(buf);
	report_retransmits(r, fd, w);
	lsock_close(ctx, w, fd);
	pthread_mutex_lock(&r->lock);
	r->active--;
	r->last_activity_us = ev_now_us(ctx->em);
	pthread_mutex_unlock(&r->lock);
}

static void *conn_thread(void *arg)
{
	struct conn_arg *a = arg;

	serve_conn(a->r, a->fd, a->conn);
	return NULL;
}

/* Accept and serve until every lab client was served (mode=both) or nobody
 * has been active for idle_timeout (mode=server). */
static void *server_thread(void *arg)
{
	struct echo_run *r = arg;
	struct lab_ctx *ctx = r->ctx;
	struct conn_arg conns[MAX_BYO_CONNS + MAX_CLIENTS];
	int n_conns = 0, served = 0, i;

	memset(conns, 0, sizeof conns);
	if (net_enter(ctx->net, NET_SERVER) < 0) {
		fail(r);
		return NULL;
	}
	for (;;) {
		int fd, timeout = -1, active;
		int64_t idle_for;

		if (!r->byo && served == r->clients)
			break;
		pthread_mutex_lock(&r->lock);
		active = r->active;
		idle_for = ev_now_us(ctx->em) - r->last_activity_us;
		pthread_mutex_unlock(&r->lock);
		if (r->byo) {
			if (active == 0 && idle_for >= (int64_t)r->idle_ms * 1000) {
				ev_note(ctx->em, "echo.idle_stop",
					json_pack("{s:i}", "idle_s", r->idle_ms / 1000),
					NULL);
				break;
			}
			timeout = active ? 200 : (int)((int64_t)r->idle_ms - idle_for / 1000);
			if (timeout < 1)
				timeout = 1;
		}
		/* In mode=server the number of connections served one after another
		 * is unbounded, but only MAX_BYO_CONNS run at once. */
		if (r->concurrent && n_conns == (int)(sizeof conns / sizeof conns[0])) {
			for (i = 0; i < n_conns; i++)
				pthread_join(conns[i].tid, NULL);
			n_conns = 0;
		}
		if (r->byo && r->concurrent && active >= MAX_BYO_CONNS) {
			if (lab_sleep_ms(ctx, 50) < 0)
				break;
			continue;
		}
		fd = lsock_accept(ctx, (struct lsock_who){"server", 0}, r->lfd, NULL, timeout);
		if (fd == -ETIMEDOUT)
			continue;
		if (fd < 0) {
			if (fd != -ECANCELED)
				fail(r);
			break;
		}
		served++;
		pthread_mutex_lock(&r->lock);
		r->active++;
		r->conns++;
		r->last_activity_us = ev_now_us(ctx->em);
		pthread_mutex_unlock(&r->lock);
		if (!r->concurrent) {
			serve_conn(r, fd, served);
			continue;
		}
		conns[n_conns] = (struct conn_arg){r, fd, served, 0, 0};
		if (pthread_create(&conns[n_conns].tid, NULL, conn_thread, &conns[n_conns]) != 0) {
			serve_conn(r, fd, served);
			continue;
		}
		n_conns++;
	}
	for (i = 0; i < n_conns; i++)
		pthread_join(conns[i].tid, NULL);
	return NULL;
}

/* ---- capture=on: the observer ---- */

/* The connection whose client has port cport (r->lock held); 0: none. */
static int conn_of_port(const struct echo_run *r, uint16_t cport)
{
	int k;

	for (k = 1; k <= r->clients; k++)
		if (r->wire[k].cport == cport)
			return k;
	return 0;
}

/* One segment's relative numbers and what it adds to its connection's
 * counts (r->lock held). Returns 1 when it carries only bytes seen before
 * (a retransmission). */
static int wire_account(struct echo_wire *w, int dir, const struct dec_tcp *t, uint32_t *rel)
{
	uint32_t len = t->payload_len, end;
	int retrans = 0;

	if (t->flags & DEC_TCP_SYN) {
		w->isn[dir] = t->seq;
		w->have_isn[dir] = 1;
	}
	w->segs[dir]++;
	if (!w->have_isn[dir])
		return 0;
	*rel = t->seq - w->isn[dir];
	end = *rel + len;
	if (len && end <= w->end[dir])
		retrans = 1;
	else if (len)
		w->bytes[dir] += end - (*rel > w->end[dir] ? *rel : w->end[dir]);
	end += (t->flags & DEC_TCP_SYN ? 1u : 0u) + (t->flags & DEC_TCP_FIN ? 1u : 0u);
	if (end > w->end[dir])
		w->end[dir] = end;
	if (t->flags & DEC_TCP_FIN)
		w->fin[dir] = 1;
	/* An ACK that covers the other side's FIN: that side's close is done. */
	if ((t->flags & DEC_TCP_ACK) && w->fin[!dir] && w->have_isn[!dir] &&
	    t->ack - w->isn[!dir] >= w->end[!dir])
		w->fin_acked[!dir] = 1;
	return retrans;
}

/* A captured frame (the observer's thread, in time order): each segment
 * once, as it left its host (two hosts) or as lo carried it, written to the
 * pcap and emitted with its connection, direction and relative numbers. */
static void on_frame(struct echo_run *r, const struct obs_event *ev)
{
	const struct dec_packet *d = ev->pkt;
	const struct dec_tcp *t = &d->tcp;
	uint32_t rel = 0, rel_ack = 0;
	int k, dir, retrans = 0, have_rel = 0, have_ack = 0;
	json_t *f;

	if (ev->host >= 0 && !ev->frame->outgoing)
		return;
	obs_pcap_write(r->obs, ev->frame);
	if (!dec_has(d, DEC_L_TCP))
		return;
	f = obs_segment_json(r->ctx, ev->frame, d, ev->t_ns);
	if (!f)
		return;
	dir = t->sport == r->sport ? 1 : 0;
	pthread_mutex_lock(&r->lock);
	r->segments++;
	k = conn_of_port(r, dir ? t->dport : t->sport);
	if (k) {
		struct echo_wire *w = &r->wire[k];

		retrans = wire_account(w, dir, t, &rel);
		have_rel = w->have_isn[dir];
		if ((t->flags & DEC_TCP_ACK) && w->have_isn[!dir]) {
			rel_ack = t->ack - w->isn[!dir];
			have_ack = 1;
		}
		if (retrans)
			r->seg_retrans++;
	} else {
		r->seg_other++;
	}
	pthread_mutex_unlock(&r->lock);
	json_object_set_new(f, "conn", json_integer(k));
	json_object_set_new(f, "dir", json_string(dir ? "s2c" : "c2s"));
	json_object_set_new(f, "from", json_string(dir ? "server" : "client"));
	json_object_set_new(f, "to", json_string(dir ? "client" : "server"));
	if (have_rel)
		json_object_set_new(f, "rel_seq", json_integer(rel));
	if (have_ack)
		json_object_set_new(f, "rel_ack", json_integer(rel_ack));
	if (retrans)
		json_object_set_new(f, "retransmit", json_true());
	if (ev->host >= 0)
		json_object_set_new(f, "host",
				    json_string(ev->host == NET_SERVER ? "server" : "client"));
	ev_emit(r->ctx->em, "segment", f);
}

/* The observer's callback. Kernel states of a watched socket get its
 * connection number (who is "client" or "server"). */
static json_t *on_obs(void *arg, const struct obs_event *ev)
{
	struct echo_run *r = arg;
	int k = 0;

	if (ev->kind == OBS_FRAME) {
		on_frame(r, ev);
		return NULL;
	}
	if (ev->kind == OBS_RECORD) {
		const struct echo_item *it = ev->rec;

		ev_emit(r->ctx->em, it->type, json_incref(it->j)); /* item_free drops its own */
		return NULL;
	}
	if (ev->sock < 0 || ev->sock >= OBS_MAX_WATCH)
		return NULL;
	pthread_mutex_lock(&r->lock);
	k = r->sock_conn[ev->sock];
	pthread_mutex_unlock(&r->lock);
	return json_pack("{s:i}", "conn", k);
}

/* Start the observer on the server's port (main thread, after the listener
 * is open, before any other lab thread starts). 0, or negative after its
 * error event. */
static int open_observer(struct echo_run *r)
{
	struct lab_ctx *ctx = r->ctx;
	struct obs_config cfg;
	char filter[48], trace[96];
	int rc;

	/* Said in this lab's words (the capture's own message offers a
	 * replay, which tcp-echo has not). */
	rc = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
	if (rc < 0 && (errno == EPERM || errno == EACCES)) {
		ev_error(ctx->em, "no_capture_privilege", "capture",
			 "parameter 'capture': capturing packets needs the CAP_NET_RAW capability: "
			 "run as root, or give the container NET_RAW (docker/podman run --cap-add "
			 "NET_RAW); or run with capture=off");
		return -EPERM;
	}
	if (rc >= 0)
		close(rc);
	snprintf(filter, sizeof filter, "tcp port %u", r->sport);
	snprintf(trace, sizeof trace, "sport == %u || dport == %u", r->sport, r->sport);
	memset(&cfg, 0, sizeof cfg);
	cfg.ctx = ctx;
	cfg.filter = filter;
	cfg.trace_filter = trace;
	cfg.fn = on_obs;
	cfg.arg = r;
	cfg.pcap_path = ctx->pcap_path;
	cfg.free_rec = item_free;
	cfg.watch_later = 1;
	r->obs_started_ns = obs_now_ns();
	rc = obs_start(&r->obs, &cfg); /* emits the capture event, or the error */
	if (rc < 0) {
		r->obs = NULL;
		return rc;
	}
	/* No records come from elsewhere: only the clients' holds keep
	 * delivery back. */
	obs_caught_up(r->obs, INT64_MAX);
	if (!obs_has_tracepoint(r->obs))
		ev_note(ctx->em, "echo.no_tracepoint",
			json_pack("{s:s}", "reason", obs_trace_error(r->obs)), NULL);
	return net_enter(ctx->net, NET_SERVER);
}

/* Client k's thread, right after its connect() returned: the connection's
 * port, and its two sockets watched in the kernel (the client's, and the
 * server's accepted one, which the kernel made during the handshake, before
 * any accept() returns it). Between obs_hold and here the observer delivered
 * nothing that happened after connect() began. */
static void watch_conn(struct echo_run *r, int k, int fd, int64_t from_ns, int64_t until_ns)
{
	const struct sockaddr_in *srv = (const struct sockaddr_in *)&r->addr;
	struct sockaddr_storage ss;
	struct sockaddr_in *cli = (struct sockaddr_in *)&ss;
	socklen_t sl = sizeof ss;
	struct obs_sock s;
	struct obs_watch_opts opt = {from_ns, until_ns, 0};
	uint16_t cport;
	int i;

	if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0)
		return;
	/* sin_port and sin6_port sit at the same offset. */
	cport = ntohs(cli->sin_port);
	pthread_mutex_lock(&r->lock);
	r->wire[k].cport = cport;
	pthread_mutex_unlock(&r->lock);
	if (ss.ss_family != AF_INET)
		return; /* IPv6: segments only, the kernel sources watch IPv4 */
	s = (struct obs_sock){"client", cli->sin_addr, srv->sin_addr, cport, r->sport, NET_CLIENT};
	i = obs_watch(r->obs, &s, &opt);
	if (i >= 0) {
		pthread_mutex_lock(&r->lock);
		r->sock_conn[i] = k;
		r->sock_who[i] = "client";
		pthread_mutex_unlock(&r->lock);
	}
	s = (struct obs_sock){"server", srv->sin_addr, cli->sin_addr, r->sport, cport, NET_SERVER};
	opt.until_ns = 0;
	i = obs_watch(r->obs, &s, &opt);
	if (i >= 0) {
		pthread_mutex_lock(&r->lock);
		r->sock_conn[i] = k;
		r->sock_who[i] = "server";
		pthread_mutex_unlock(&r->lock);
	}
}

/* Wait (bounded) until the capture has seen every connection's close
 * finish: both FINs, each acknowledged. The last ACK leaves after the lab's
 * threads have returned (the kernel sends it), one wire delay later. */
static void wait_closed(struct echo_run *r)
{
	int64_t end = obs_now_ns() + 3000LL * 1000000;

	for (;;) {
		int k, done = 1;

		pthread_mutex_lock(&r->lock);
		for (k = 1; k <= r->clients; k++)
			if (r->wire[k].cport && !(r->wire[k].fin_acked[0] && r->wire[k].fin_acked[1]))
				done = 0;
		pthread_mutex_unlock(&r->lock);
		if (done || obs_now_ns() > end || lab_sleep_ms(r->ctx, 2) < 0)
			return;
	}
}

/* What capturing cost this run, measured: the observer thread's CPU time
 * over the time it ran (its polling, the sock_diag samples, decoding and
 * emitting every frame) and the frames per round trip (the note next to the
 * RTTs). Taken while the observer still runs. */
static void note_capture_cost(struct echo_run *r, int64_t cpu_ns, int64_t rtt_us)
{
	long long frames;
	int64_t wall_ns = obs_now_ns() - r->obs_started_ns;
	char ms[32], wall[32], pct[32], per_rtt[32];

	pthread_mutex_lock(&r->lock);
	frames = r->segments;
	pthread_mutex_unlock(&r->lock);
	if (cpu_ns < 0 || wall_ns <= 0 || !frames || !r->n_rtts)
		return;
	snprintf(ms, sizeof ms, "%.1f", (double)cpu_ns / 1e6);
	snprintf(wall, sizeof wall, "%.1f", (double)wall_ns / 1e6);
	snprintf(pct, sizeof pct, "%.1f", 100.0 * (double)cpu_ns / (double)wall_ns);
	snprintf(per_rtt, sizeof per_rtt, "%.1f", (double)frames / (double)r->n_rtts);
	ev_note(r->ctx->em, "echo.capture_cost",
		json_pack("{s:I, s:s, s:s, s:s, s:s, s:I}", "frames", (json_int_t)frames, "cpu_ms", ms,
			  "wall_ms", wall, "cpu_pct", pct, "frames_per_rtt", per_rtt, "rtt_us",
			  (json_int_t)rtt_us),
		NULL);
}

/* run.end's capture figures: the observer's report (frames, drops,
 * complete), the segments of each connection and each watched socket's last
 * state as the kernel gave it, with its source. After obs_stop. */
static void capture_summary(struct echo_run *r, json_t *s)
{
	json_t *conns = json_array(), *states = json_array(), *st;
	int k, i;

	obs_capture_report(r->obs, r->ctx->em, s);
	obs_trace_report(r->obs, r->ctx->em, s);
	pthread_mutex_lock(&r->lock);
	for (k = 1; k <= r->clients; k++) {
		const struct echo_wire *w = &r->wire[k];

		if (!w->cport)
			continue;
		json_array_append_new(conns,
				      json_pack("{s:i, s:i, s:I, s:I, s:I, s:I}", "conn", k,
						"client_port", w->cport, "c2s_bytes",
						(json_int_t)w->bytes[0], "s2c_bytes",
						(json_int_t)w->bytes[1], "c2s_segments",
						(json_int_t)w->segs[0], "s2c_segments",
						(json_int_t)w->segs[1]));
	}
	for (i = 0; i < OBS_MAX_WATCH; i++) {
		struct obs_final fin;

		if (!r->sock_conn[i])
			continue;
		obs_final_state(r->obs, i, &fin);
		st = json_pack("{s:s, s:i, s:s, s:s, s:b}", "who", r->sock_who[i], "conn",
			       r->sock_conn[i], "state",
			       fin.src < 0 ? "unknown" : tcpst_name(fin.state), "source",
			       fin.src < 0 ? "none" : obs_src_name(fin.src), "listed_at_end",
			       fin.listed_at_end);
		/* The tracepoint's last word, from a lane with gaps: a later
		 * transition may be the one lost. */
		if (fin.trace_incomplete)
			json_object_set_new(st, "complete", json_false());
		json_array_append_new(states, st);
	}
	json_object_set_new(s, "segments", json_integer(r->segments));
	json_object_set_new(s, "retransmitted_segments", json_integer(r->seg_retrans));
	pthread_mutex_unlock(&r->lock);
	json_object_set_new(s, "captured_connections", conns);
	json_object_set_new(s, "kernel_states", states);
}

/* ---- client side (mode=both) ---- */

struct client_arg {
	struct echo_run *r;
	int k;
	pthread_t tid;
};

/* Report how many connections the kernel holds in the listener's accept queue
 * (TCP_INFO on a listening socket gives the queue length and its limit). */
static void report_accept_queue(struct echo_run *r, int k)
{
	struct tcp_info ti;
	socklen_t tl = sizeof ti;

	/* The handshake's last ACK is processed right after connect() returns;
	 * wait until the listener is readable, i.e. the connection is queued. */
	if (lab_wait_fd(r->ctx, r->lfd, POLLIN, 1000) <= 0)
		return;
	if (getsockopt(r->lfd, IPPROTO_TCP, TCP_INFO, &ti, &tl) < 0)
		return;
	pthread_mutex_lock(&r->lock);
	if ((long long)ti.tcpi_unacked > r->max_queue)
		r->max_queue = ti.tcpi_unacked;
	pthread_mutex_unlock(&r->lock);
	say(r, "metric",
		json_pack("{s:s, s:s, s:i, s:i, s:i}", "name", "accept_queue", "who", "server",
			  "value", (int)ti.tcpi_unacked, "max", (int)ti.tcpi_sacked, "after_client",
			  k));
	say_note(r, "echo.accept_queue",
		json_pack("{s:i, s:i, s:i}", "client", k, "busy_with", k - 1, "queued",
			  (int)ti.tcpi_unacked));
}

/* Relay thread: count the ARP frames that cross the wire. */
static json_t *echo_hook(void *arg, const struct wire_verdict *v, const uint8_t *frame, size_t len)
{
	struct echo_run *r = arg;
	struct frame_info fi;

	if (frame_parse(frame, len, &fi) == FRAME_OK && fi.ethertype == FRAME_ETH_P_ARP &&
	    v->dir >= 0 && v->dir < 2) {
		pthread_mutex_lock(&r->lock);
		r->arp_frames[v->dir]++;
		pthread_mutex_unlock(&r->lock);
	}
	return NULL;
}

/* The NUD_* state of this namespace's neighbour entry for the server on the
 * lab interface: 0 when there is none, -1 when it cannot be read. */
static int server_neigh(const struct echo_run *r)
{
	const struct sockaddr_in *sin = (const struct sockaddr_in *)&r->addr;
	struct nl_neigh ne;
	struct nl nl;
	int ifindex = (int)if_nametoindex(NET_IFNAME), rc;

	if (!r->ctx->net || r->addr.ss_family != AF_INET || !ifindex || nl_open(&nl, NULL, 0) < 0)
		return -1;
	rc = nl_neigh_get(&nl, ifindex, ntohl(sin->sin_addr.s_addr), &ne, NULL, 0);
	nl_close(&nl);
	return rc == -ENOENT ? 0 : rc < 0 ? -1 : ne.state;
}

/* The first client's connect() over the relay: when the client had no
 * neighbour entry for the server and the relay carried ARP both ways before
 * the handshake finished, the time connect() was blocked includes an ARP
 * round trip. Said only with that evidence. */
static void connect_arp_note(struct echo_run *r, int before, int64_t blocked_us)
{
	char ms[32];
	int out, back, after;

	if (before < 0 || (before != 0 && !(before & (NUD_INCOMPLETE | NUD_FAILED))) ||
	    !net_has_relay(r->ctx->net))
		return;
	pthread_mutex_lock(&r->lock);
	out = r->arp_frames[0];
	back = r->arp_frames[1];
	pthread_mutex_unlock(&r->lock);
	if (!out || !back)
		return;
	after = server_neigh(r);
	snprintf(ms, sizeof ms, "%.3f", (double)blocked_us / 1000.0);
	say_note(r, "echo.connect_arp",
		json_pack("{s:s, s:s, s:s, s:i, s:i}", "connect_ms", ms, "before",
			  nl_nud_name((uint16_t)before), "after",
			  nl_nud_name((uint16_t)(after > 0 ? after : 0)),
			  "arp_out", out, "arp_back", back));
}

static int client_session(struct echo_run *r, int k)
{
	struct lab_ctx *ctx = r->ctx;
	struct lsock_who w = {"client", k};
	size_t len = echo_message_len(r);
	char *msg = malloc(len), *want = malloc(len), *got = malloc(len);
	int fd = -1, rc = 0, i, neigh_before = -1, hold = -1;
	int64_t t_connect, connect_us = -1, from_ns = 0;

	if (!msg || !want || !got) {
		rc = -ENOMEM;
		goto out;
	}
	/* Over two hosts the client is on the other host. */
	rc = net_enter(ctx->net, NET_CLIENT);
	if (rc < 0)
		goto out;
	if (k > 1) {
		rc = wait_flag(r, r->first_reply, k - 1);
		if (rc < 0)
			goto out;
	}
	fd = lsock_socket(ctx, w, r->addr.ss_family, SOCK_STREAM);
	if (fd < 0) {
		rc = fd;
		goto out;
	}
	/* The neighbour entry is read before connect() and the note emitted after
	 * the echoes, so neither adds to what the run measures. */
	neigh_before = k == 1 ? server_neigh(r) : -1;
	if (r->obs) {
		from_ns = obs_now_ns();
		hold = obs_hold(r->obs, from_ns);
	}
	t_connect = ev_now_us(ctx->em);
	rc = lsock_connect(ctx, w, fd, (struct sockaddr *)&r->addr, r->addrlen, 5000);
	if (rc == 0)
		connect_us = ev_now_us(ctx->em) - t_connect;
	if (r->obs) {
		if (rc == 0)
			watch_conn(r, k, fd, from_ns, obs_now_ns());
		obs_release(r->obs, hold);
	}
	if (rc < 0)
		goto out;
	/* The previous client holds the iterative server busy until this one
	 * is seen waiting in the accept queue: only then is it let go. */
	if (k > 1 && !r->concurrent)
		report_accept_queue(r, k);
	set_flag(r, r->connected, k);
	for (i = 1; i <= r->messages; i++) {
		int64_t t0 = ev_now_us(ctx->em), rtt;
		size_t have = 0;
		int pieces = 0;
		ssize_t n;
		json_t *f;

		echo_message(msg, len, i, r->size, r->text);
		n = lsock_send_all(ctx, w, fd, msg, len, -1);
		if (n < 0) {
			rc = (int)n;
			goto out;
		}
		add(r, &r->c_bytes_sent, n);
		/* A byte stream keeps no message boundaries: read until the whole
		 * reply is here, however many recv() calls that takes. */
		while (have < len) {
			n = lsock_recv(ctx, w, fd, got + have, len - have, -1);
			if (n <= 0) {
				rc = n == 0 ? -ECONNRESET : (int)n;
				goto out;
			}
			have += (size_t)n;
			pieces++;
		}
		add(r, &r->c_bytes_recv, (long long)have);
		rtt = ev_now_us(ctx->em) - t0;
		memcpy(want, msg, len);
		echo_transform(want, len, r->transform);
		f = json_pack("{s:i, s:i, s:o, s:o, s:I, s:I, s:b, s:i}", "conn", k, "index", i,
			      "sent", lsock_preview(msg, len, 256), "reply",
			      lsock_preview(got, len, 256), "bytes", (json_int_t)len, "rtt_us",
			      (json_int_t)rtt, "ok",
			      memcmp(want, got, len) == 0, "recv_calls", pieces);
		pthread_mutex_lock(&r->lock);
		if (r->rtts && r->n_rtts < (size_t)r->messages * (size_t)r->clients)
			r->rtts[r->n_rtts++] = rtt;
		pthread_mutex_unlock(&r->lock);
		say(r, "echo", f);
		add(r, memcmp(want, got, len) == 0 ? &r->replies_ok : &r->replies_bad, 1);
		if (pieces > 1 && r->split_replies++ == 0)
			say_note(r, "echo.split_reply",
				json_pack("{s:i, s:i, s:i}", "conn", k, "index", i, "recv_calls",
					  pieces));
		if (i == 1) {
			set_flag(r, r->first_reply, k);
			/* Hold this connection until the next client has connected, so
			 * an iterative server is visibly busy while it waits. */
			if (k < r->clients) {
				rc = wait_flag(r, r->connected, k + 1);
				if (rc < 0)
					goto out;
			}
		}
		if (r->interval_ms && i < r->messages && lab_sleep_ms(ctx, r->interval_ms) < 0) {
			rc = -ECANCELED;
			goto out;
		}
	}
	if (r->server_closes) {
		/* Wait for the server's FIN: recv() returns 0. */
		ssize_t n = lsock_recv(ctx, w, fd, got, len, -1);
		if (n > 0)
			rc = -EPROTO;
	}
out:
	if (fd >= 0) {
		report_retransmits(r, fd, w);
		lsock_close(ctx, w, fd);
	}
	if (rc == 0 && k == 1 && connect_us >= 0)
		connect_arp_note(r, neigh_before, connect_us);
	if (rc < 0 && rc != -ECANCELED)
		fail(r);
	/* Never leave the next client waiting on a client that gave up. */
	set_flag(r, r->first_reply, k);
	free(msg);
	free(want);
	free(got);
	return rc;
}

static void *client_thread(void *arg)
{
	struct client_arg *a = arg;

	client_session(a->r, a->k);
	return NULL;
}

/* ---- the run ---- */

static int open_listener(struct echo_run *r)
{
	struct lab_ctx *ctx = r->ctx;
	struct lsock_who w = {"server", 0};
	struct sockaddr_storage ss;
	socklen_t sl;
	int fd, rc;
	char err[160];

	if (net_server_addr(ctx, &ss, &sl) < 0)
		return -EINVAL; /* check() already refused this */
	fd = lsock_socket(ctx, w, ss.ss_family, SOCK_STREAM);
	if (fd < 0)
		return fd;
	/* A restarted server may rebind while old connections sit in TIME_WAIT. */
	lsock_setsockopt_int(ctx, w, fd, SOL_SOCKET, SO_REUSEADDR, 1);
	rc = lsock_bind(ctx, w, fd, (struct sockaddr *)&ss, sl);
	if (rc == 0)
		rc = lsock_listen(ctx, w, fd, r->backlog);
	if (rc < 0) {
		snprintf(err, sizeof err, "the server could not listen on %s port %lld: %s",
			 lab_str(ctx->p, "bind"), lab_int(ctx->p, "port"), strerror(-rc));
		ev_error(ctx->em, rc == -EADDRINUSE ? "port_in_use" : "listen_failed",
			 rc == -EADDRINUSE ? "port" : NULL, err);
		lsock_close(ctx, w, fd);
		return rc;
	}
	r->addrlen = sizeof r->addr;
	getsockname(fd, (struct sockaddr *)&r->addr, &r->addrlen);
	r->lfd = fd;
	{
		json_t *a = lsock_addr_json((struct sockaddr *)&r->addr);
		json_object_set_new(a, "who", json_string("server"));
		json_object_set_new(a, "backlog", json_integer(r->backlog));
		json_object_set_new(a, "idle_timeout_s", json_integer(r->idle_ms / 1000));
		json_object_set_new(a, "byo", json_boolean(r->byo));
		ev_emit(ctx->em, "listening", a);
	}
	return 0;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

/* Say next to the round trips what recording the calls added to them. Three
 * recorded calls lie between a round trip's two clock reads: the client's
 * send and recv (its record is made before the second read) and the
 * server's recv (recorded before it sends the reply); more when a message
 * takes several calls. The median is the one the view shows. */
static void note_trace_cost(struct echo_run *r)
{
	json_t *params;

	if (!r->n_rtts)
		return;
	qsort(r->rtts, r->n_rtts, sizeof r->rtts[0], cmp_i64);
	params = lsock_trace_cost(r->ctx, 3, r->rtts[r->n_rtts / 2]);
	if (params)
		ev_note(r->ctx->em, "echo.trace_cost", params, NULL);
}

static json_t *summary(struct echo_run *r)
{
	json_t *s;

	pthread_mutex_lock(&r->lock);
	s = json_pack("{s:I, s:I, s:I, s:I, s:I}", "connections", (json_int_t)r->conns,
		      "server_bytes_in", (json_int_t)r->s_bytes_in, "server_bytes_out",
		      (json_int_t)r->s_bytes_out, "peer_closes", (json_int_t)r->peer_closes,
		      "resets", (json_int_t)r->resets);
	if (r->byo) {
		json_object_set_new(s, "idle_closes", json_integer(r->idle_closes));
	} else {
		json_object_set_new(s, "messages", json_integer((json_int_t)r->messages * r->clients));
		json_object_set_new(s, "client_bytes_sent", json_integer(r->c_bytes_sent));
		json_object_set_new(s, "client_bytes_received", json_integer(r->c_bytes_recv));
		json_object_set_new(s, "replies_ok", json_integer(r->replies_ok));
		json_object_set_new(s, "replies_bad", json_integer(r->replies_bad));
		json_object_set_new(s, "max_accept_queue", json_integer(r->max_queue));
	}
	if (r->ctx->net) {
		json_object_set_new(s, "client_retransmits", json_integer(r->c_retrans));
		json_object_set_new(s, "server_retransmits", json_integer(r->s_retrans));
	}
	pthread_mutex_unlock(&r->lock);
	return s;
}

static int echo_run(struct lab_ctx *ctx)
{
	const struct lab_params *p = ctx->p;
	struct echo_run r;
	struct client_arg ca[MAX_CLIENTS];
	pthread_t srv;
	int i, n_clients = 0, rc = 0;

	memset(&r, 0, sizeof r);
	r.ctx = ctx;
	r.byo = lab_int(p, "mode") == 1;
	r.messages = (int)lab_int(p, "messages");
	r.size = (size_t)lab_int(p, "size");
	r.text = lab_str(p, "text");
	r.transform = lab_int(p, "transform") == 0 ? ECHO_UPPER : ECHO_PLAIN;
	r.server_closes = lab_int(p, "closer") == 1;
	r.concurrent = lab_int(p, "server_style") == 1;
	r.clients = (int)lab_int(p, "clients");
	r.interval_ms = (int)lab_int(p, "interval_ms");
	r.bufsize = (size_t)lab_int(p, "bufsize");
	r.backlog = (int)lab_int(p, "backlog");
	r.idle_ms = (int)lab_int(p, "idle_timeout") * 1000;
	r.lfd = -1;
	pthread_mutex_init(&r.lock, NULL);
	pthread_cond_init(&r.cond, NULL);
	if (!r.byo)
		r.rtts = calloc((size_t)r.messages * (size_t)r.clients, sizeof *r.rtts);

	rc = open_listener(&r);
	if (rc < 0)
		goto out;
	/* sin_port and sin6_port sit at the same offset. */
	r.sport = ntohs(((struct sockaddr_in *)&r.addr)->sin_port);
	if (!r.byo && lab_int(p, "capture")) {
		rc = open_observer(&r);
		if (rc < 0) {
			lsock_close(ctx, (struct lsock_who){"server", 0}, r.lfd);
			goto out;
		}
	}
	if (r.byo)
		ev_note(ctx->em, "echo.byo_ready",
			json_pack("{s:s, s:I}", "addr", lab_str(p, "bind"),
				  "port", (json_int_t)ntohs(((struct sockaddr_in *)&r.addr)->sin_port)),
			NULL);
	else if (r.clients > 1 && !r.concurrent)
		ev_note(ctx->em, "echo.iterative",
			json_pack("{s:i}", "clients", r.clients),
			NULL);
	r.last_activity_us = ev_now_us(ctx->em);
	if (!r.byo)
		net_set_frame_hook(ctx->net, echo_hook, &r);
	if (pthread_create(&srv, NULL, server_thread, &r) != 0) {
		rc = -EAGAIN;
		ev_error(ctx->em, "internal", NULL, "could not start the server thread");
		lsock_close(ctx, (struct lsock_who){"server", 0}, r.lfd);
		goto out;
	}
	for (i = 0; !r.byo && i < r.clients; i++) {
		ca[i] = (struct client_arg){&r, i + 1, 0};
		if (pthread_create(&ca[i].tid, NULL, client_thread, &ca[i]) != 0) {
			fail(&r);
			break;
		}
		n_clients++;
	}
	for (i = 0; i < n_clients; i++)
		pthread_join(ca[i].tid, NULL);
	if (r.failed)
		lab_abort(ctx); /* a client gave up: wake the server out of accept() */
	pthread_join(srv, NULL);
	net_set_frame_hook(ctx->net, NULL, NULL);
	if (!r.failed && !lab_cancelled(ctx))
		note_trace_cost(&r);
	if (r.obs && !r.failed && !lab_cancelled(ctx)) {
		wait_closed(&r);
		note_capture_cost(&r, obs_cpu_ns(r.obs), r.n_rtts ? r.rtts[r.n_rtts / 2] : 0);
	}
	lsock_close(ctx, (struct lsock_who){"server", 0}, r.lfd);
	if (r.failed && !lab_cancelled(ctx)) {
		rc = -EIO;
		ev_error(ctx->em, "lab_failed", NULL,
			 "a socket call failed unexpectedly; see the failed call above");
	}
out:
	{
		json_t *s = summary(&r);

		if (r.obs) {
			obs_stop(r.obs); /* everything delivered */
			capture_summary(&r, s);
			obs_destroy(r.obs);
		}
		json_object_update(ctx->summary, s);
		json_decref(s);
	}
	free(r.rtts);
	pthread_cond_destroy(&r.cond);
	pthread_mutex_destroy(&r.lock);
	return rc;
}

static int echo_check(const struct lab_params *p, const char **param, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	const char *bind = lab_str(p, "bind");
	int byo = lab_int(p, "mode") == 1;

	if (lsock_parse_addr(bind, 0, &ss, &sl) < 0) {
		*param = "bind";
		snprintf(err, errlen,
			 "parameter 'bind': must be an IPv4 or IPv6 address literal (got \"%.45s\")",
			 bind);
		return -EINVAL;
	}
	if (!byo && lab_int(p, "messages") * (lab_int(p, "size") ? lab_int(p, "size") : 512) >
			    64LL * 1024 * 1024) {
		*param = "messages";
		snprintf(err, errlen,
			 "parameter 'messages': messages x size must stay within 64 MiB per client");
		return -EINVAL;
	}
	if (net_params_check(p, param, err, errlen) < 0)
		return -EINVAL;
	if (lab_int(p, "capture") && byo) {
		*param = "capture";
		snprintf(err, errlen,
			 "parameter 'capture': mode=server runs on the host's network, where the "
			 "lab captures nothing; use capture=off (or mode=both)");
		return -EINVAL;
	}
	if (lab_int(p, "capture") &&
	    lab_int(p, "messages") * (lab_int(p, "size") ? lab_int(p, "size")
							 : (long long)strlen(lab_str(p, "text"))) *
			    lab_int(p, "clients") >
		    CAPTURE_MAX_BYTES) {
		*param = "capture";
		snprintf(err, errlen,
			 "parameter 'capture': with capture=on a run sends at most %lld bytes "
			 "(messages x size x clients), so every segment can be kept and shown",
			 CAPTURE_MAX_BYTES);
		return -EINVAL;
	}
	if (byo && lab_int(p, "network") != 0) {
		*param = "network";
		snprintf(err, errlen,
			 "parameter 'network': mode=server runs on the host's network so that your "
			 "own client can reach it; use network=loopback");
		return -EINVAL;
	}
	if (!byo && lab_int(p, "network") == 1 && lab_is_set(p, "bind")) {
		*param = "bind";
		snprintf(err, errlen,
			 "parameter 'bind': with network=two-hosts the server listens on its own "
			 "host's address (shown in run.start)");
		return -EINVAL;
	}
	if (byo && lab_is_set(p, "clients")) {
		*param = "clients";
		snprintf(err, errlen,
			 "parameter 'clients': not used with mode=server (your own client "
			 "connects instead)");
		return -EINVAL;
	}
	return 0;
}

static enum lab_net echo_network(const struct lab_params *p)
{
	return lab_int(p, "mode") == 1 ? LAB_NET_HOST : LAB_NET_PRIVATE;
}

/* The CLI's readable lines for what capture=on adds: the capture, each
 * segment (tcpdump's style, relative numbers, checksum status) and the
 * kernel's states of the two sockets with their source. Every other event
 * is printed by the generic line. */
static int echo_format(const struct lab_params *p, const json_t *ev, char *buf, size_t len)
{
	const char *type = json_string_value(json_object_get(ev, "type"));
	const json_t *tk = json_object_get(ev, "t_kernel_us");
	double t = (double)json_integer_value(tk ? tk : json_object_get(ev, "t_us")) / 1000.0;
	long long conn = json_integer_value(json_object_get(ev, "conn"));
	char who[32], what[256];

	(void)p;
	if (!type)
		return -1;
	if (!strcmp(type, "capture"))
		return snprintf(buf, len, "%10.3f  capturing on %s: %s\n", t,
				json_string_value(json_object_get(ev, "interface")),
				json_string_value(json_object_get(ev, "filter")));
	if (!strcmp(type, "segment")) {
		const json_t *rs = json_object_get(ev, "rel_seq"), *ra = json_object_get(ev, "rel_ack");
		char cs[400], num[64] = "";
		int n;

		if (json_is_integer(ra))
			snprintf(num, sizeof num, ", ack %lld", (long long)json_integer_value(ra));
		dec_checksums_text(json_object_get(ev, "checksums"), cs, sizeof cs);
		n = snprintf(buf, len,
			     "%10.3f  packet     #%lld %s > %s  Flags [%s], seq %lld%s, win %lld, "
			     "length %lld%s%s%s%s\n",
			     t, conn, json_string_value(json_object_get(ev, "from")),
			     json_string_value(json_object_get(ev, "to")),
			     json_string_value(json_object_get(ev, "flags_short")),
			     json_is_integer(rs) ? (long long)json_integer_value(rs)
						 : json_integer_value(json_object_get(ev, "seq_raw")),
			     num, json_integer_value(json_object_get(ev, "win")),
			     json_integer_value(json_object_get(ev, "len")),
			     json_is_true(json_object_get(ev, "retransmit")) ? "  (retransmission)" : "",
			     cs[0] ? "  [" : "", cs, cs[0] ? "]" : "");
		return n;
	}
	if (strcmp(type, "state") && strcmp(type, "observation") && strcmp(type, "timer"))
		return -1;
	snprintf(who, sizeof who, "%s#%lld", json_string_value(json_object_get(ev, "who")), conn);
	if (obs_state_text(ev, what, sizeof what) < 0)
		return -1;
	return snprintf(buf, len, "%10.3f  %-10s %s\n", t, who, what);
}

const struct lab_desc lab_tcp_echo = {
	.name = "tcp-echo",
	.title = "TCP echo",
	.summary = "A server answers each message in upper case; watch both sides' socket calls, "
		   "or connect your own client.",
	.params = echo_params,
	.n_params = sizeof echo_params / sizeof echo_params[0],
	.check = echo_check,
	.network = echo_network,
	.captures = 1, /* with capture=on */
	.run = echo_run,
	.format = echo_format,
	.format_keeps_calls = 1,
};
