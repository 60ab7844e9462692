/* time_wait.c: the time-wait lab: who ends in TIME_WAIT, the kernel's own timer for it (sock_diag), a restarted server's bind() with and without SO_REUSEADDR, a client reusing its port, and an ephemeral range spent by TIME_WAIT. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lab.h"
#include "net/net.h"
#include "observer/observer.h"
#include "tcpstate/tcpstate.h"

/*
 * Two hosts (network=two-hosts): a client host and a server host, so each
 * side's sockets are listed by its own namespace's sock_diag and the side
 * that holds TIME_WAIT is never in doubt. One thread plays both programs
 * step by step through ordinary socket calls; every bind/connect/close is
 * reported as a `call` event with its errno.
 *
 * Scenarios:
 *  - who-closes: one connection, one message each way; `closer` calls
 *    close() first, the other side closes when its recv() returns 0. The
 *    observer watches both sockets: sock_diag shows which one is in
 *    TIME_WAIT and its timer counting down (`timer` events), and when it is
 *    gone, why. With closer=client the client then tries to reuse its port:
 *    bind() to the same port without and with SO_REUSEADDR, and connect()
 *    to the same server (the same 4-tuple as the socket in TIME_WAIT).
 *  - restart: the server closes first (its connection and its listener),
 *    the client follows, then the server binds its port again: without
 *    SO_REUSEADDR (EADDRINUSE: the TIME_WAIT socket holds the port), then
 *    with it (succeeds), then listen().
 *  - exhaust: the client host's ip_local_port_range is set to `ports`
 *    ports and tcp_tw_reuse to `tw_reuse` (its namespace only); the client
 *    connects and closes first, `gap_ms` apart, `ports` + `extra` times.
 *    Once every port's 4-tuple sits in TIME_WAIT, connect() fails with
 *    EADDRNOTAVAIL, unless tcp_tw_reuse lets it take over a TIME_WAIT older
 *    than a second (with timestamps).
 *  - ports: on the server host, bind() to port 0 takes an ephemeral port
 *    from the namespace's ip_local_port_range (read from /proc/sys there;
 *    getsockname() says which); while that socket listens, a second bind()
 *    of its port fails with EADDRINUSE, plain and with SO_REUSEADDR; then two
 *    listeners that both set SO_REUSEPORT bind the run's port, and the
 *    client connects `conns` times: which listener accepted each connection
 *    shows how the kernel spreads them.
 * After the exchange the lab keeps watching for `observe_ms` (up to 65 s, so
 * a run can see the 60 s timer run out).
 */

#define TW_SAMPLE_MS 500
#define EXHAUST_PORT_BASE 40000
#define MAX_SOCKS 128

static const char *const tw_scenario_choices[] = {"who-closes", "restart", "exhaust", "ports",
						  NULL};
enum { SC_WHO, SC_RESTART, SC_EXHAUST, SC_PORTS };
static const char *const tw_closer_choices[] = {"client", "server", NULL};

static const struct lab_param_def tw_params[] = {
	{"scenario", LAB_P_ENUM, "Scenario",
	 "who-closes: the side that calls close() first ends in TIME_WAIT, then the client tries "
	 "to reuse its port; restart: the server closes first and binds its port again without "
	 "and with SO_REUSEADDR; exhaust: a small ephemeral port range spent by TIME_WAIT; ports: "
	 "bind() to port 0, a second bind() of a busy port, two SO_REUSEPORT listeners sharing one",
	 NULL, "who-closes", 0, 0, tw_scenario_choices, 0},
	{"closer", LAB_P_ENUM, "Who closes first", "who-closes: the side that calls close() first",
	 NULL, "client", 0, 0, tw_closer_choices, 0},
	{"reuseaddr", LAB_P_BOOL, "SO_REUSEADDR",
	 "Every socket of the programs (the server's listeners, the client's socket) sets "
	 "SO_REUSEADDR before bind(), as the course notes' server does",
	 NULL, "false", 0, 0, NULL, 0},
	{"ports", LAB_P_INT, "Ephemeral ports",
	 "exhaust: the size of the client host's ip_local_port_range", NULL, "10", 2, 100, NULL,
	 0},
	{"extra", LAB_P_INT, "Connects past the range",
	 "exhaust: connects tried after the range's size", NULL, "3", 1, 20, NULL, 0},
	{"tw_reuse", LAB_P_INT, "tcp_tw_reuse",
	 "exhaust: net.ipv4.tcp_tw_reuse on the client host (0 off, 1 on, 2 loopback only)", NULL,
	 "0", 0, 2, NULL, 0},
	{"conns", LAB_P_INT, "Connections to the shared port",
	 "ports: connections the client makes to the two SO_REUSEPORT listeners", NULL, "16", 2,
	 64, NULL, 0},
	{"gap_ms", LAB_P_INT, "Gap between connects", "exhaust: time between connects", "ms", "100",
	 0, 2000, NULL, LAB_PF_ADVANCED},
	{"observe_ms", LAB_P_INT, "Watch afterwards",
	 "How long to keep watching the TIME_WAIT sockets afterwards (the kernel keeps them 60 s)",
	 "ms", "3000", 0, 65000, NULL, 0},
	{"port", LAB_P_INT, "Server port", "The server's port (0: a random one)", NULL, "0", 0,
	 65535, NULL, LAB_PF_ADVANCED},
	NET_PARAMS_D("two-hosts", "0"),
};

static const char *const counter_names[] = {"TW", "TWRecycled", "TWKilled",
					    "TCPTimeWaitOverflow"};
#define N_COUNTERS (sizeof counter_names / sizeof counter_names[0])

struct tw {
	struct lab_ctx *ctx;
	struct obs *obs;
	pthread_mutex_t lock;
	struct net_pair hp; /* the two hosts and the server's port */
	uint16_t cport;
	int scenario, closer;
	int64_t close_ns;        /* the first close() */
	int64_t last_fin_ns;     /* the last FIN the capture saw */
	int tw_first_ms;         /* the first TIME_WAIT timer sock_diag gave (-1: none) */
	int64_t tw_first_ns;
	const char *tw_who;
	long long counters[2][N_COUNTERS];
	long long eaddrinuse, eaddrnotavail, connects_ok;
	int reuse;                  /* the reuseaddr parameter */
	int lfd;                    /* who-closes: the listener, kept to the end */
	int reuse_bind, reuse_connect; /* errno of the second bind and its connect (-1: not tried) */
	int tw_sides[2];            /* TIME_WAIT sockets sock_diag listed, per host, last sample */
	int tw_peak[2];
	/* ports: what the calls returned (errno values; -1: not tried). */
	struct {
		int lo, hi;            /* ip_local_port_range read in the server namespace */
		int bind0, port0;      /* bind() to port 0, and the port getsockname() gave */
		int busy[2];           /* a second bind() of port0: plain, with SO_REUSEADDR */
		int rp_bind[2];        /* the two SO_REUSEPORT listeners' bind() */
		int accepts[2];        /* connections each listener accepted */
		int connects;          /* connects tried */
		int peer_parity[2];    /* the accepted connections' client ports: even, odd */
	} pt;
};

/* ---- calls ---- */

/* A call event; extra (stolen, may be NULL) adds fields of its own. */
static int64_t call_ev_x(struct tw *s, const char *who, const char *call, const char *detail,
			 int64_t t0, int err, json_t *extra)
{
	json_t *f = json_pack("{s:s,s:s,s:s?,s:I,s:I,s:b,s:s?,s:i}", "who", who, "call", call,
			      "detail", detail, "t_call_us", (json_int_t)obs_run_us(s->ctx, t0),
			      "took_us", (json_int_t)((obs_now_ns() - t0) / 1000), "ok", !err,
			      "errno", err ? strerrorname_np(err) : NULL, "errno_value", err);

	if (f && extra)
		json_object_update(f, extra);
	json_decref(extra);
	return ev_emit(s->ctx->em, "call", f);
}

static int64_t call_ev(struct tw *s, const char *who, const char *call, const char *detail,
		       int64_t t0, int err)
{
	return call_ev_x(s, who, call, detail, t0, err, NULL);
}

/* bind() fd to addr:port with or without SO_REUSEADDR, reported. Returns 0 or errno. */
static int do_bind(struct tw *s, const char *who, int fd, const struct sockaddr_in *a, int reuse)
{
	char d[96], ip[INET_ADDRSTRLEN];
	int64_t t0;
	int err = 0;

	if (reuse) {
		int one = 1;

		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	}
	inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
	snprintf(d, sizeof d, "%s:%u%s", ip, ntohs(a->sin_port), reuse ? ", SO_REUSEADDR" : "");
	t0 = obs_now_ns();
	if (bind(fd, (const struct sockaddr *)a, sizeof *a) < 0)
		err = errno;
	call_ev(s, who, "bind", d, t0, err);
	if (err == EADDRINUSE)
		s->eaddrinuse++;
	return err;
}

/* A blocking-style connect with a deadline. 0 or errno. */
static int do_connect(struct tw *s, int fd, int report)
{
	int64_t t0 = obs_now_ns();
	int err = 0, rc;
	socklen_t el = sizeof err;
	char d[64];

	rc = connect(fd, (struct sockaddr *)&s->hp.srv, sizeof s->hp.srv);
	if (rc < 0 && errno != EINPROGRESS)
		err = errno;
	else if (rc < 0) {
		rc = lab_wait_fd(s->ctx, fd, POLLOUT, 3000);
		if (rc == -ECANCELED)
			return ECANCELED;
		if (rc == 0)
			err = ETIMEDOUT;
		else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0)
			err = errno;
	}
	if (err == EADDRNOTAVAIL)
		s->eaddrnotavail++;
	else if (!err)
		s->connects_ok++;
	if (report) {
		struct sockaddr_in me;
		socklen_t ml = sizeof me;

		d[0] = 0;
		if (getsockname(fd, (struct sockaddr *)&me, &ml) == 0 && me.sin_port)
			snprintf(d, sizeof d, "from port %u to %s:%u", ntohs(me.sin_port), s->hp.srv_ip,
				 s->hp.port);
		call_ev(s, "client", "connect", d[0] ? d : NULL, t0, err);
	}
	return err;
}

static void do_close(struct tw *s, const char *who, int *fd)
{
	int64_t t0 = obs_now_ns();

	if (*fd < 0)
		return;
	close(*fd);
	*fd = -1;
	if (!s->close_ns)
		s->close_ns = t0;
	call_ev(s, who, "close", NULL, t0, 0);
}

/* Wait for fd readable, then read; returns bytes, 0 at EOF, -errno. */
static ssize_t recv_wait(struct tw *s, int fd)
{
	char buf[256];
	int rc = lab_wait_fd(s->ctx, fd, POLLIN, 5000);

	if (rc <= 0)
		return rc == 0 ? -ETIMEDOUT : rc;
	rc = (int)recv(fd, buf, sizeof buf, 0);
	return rc < 0 ? -errno : rc;
}

/* ---- the kernel's view ---- */

/* TcpExt of the calling thread's namespace. */
static int read_counters(long long out[N_COUNTERS])
{
	return net_tcpext(counter_names, N_COUNTERS, out);
}

struct tw_list {
	struct tw *s;
	json_t *arr;
	int n;
};

static void on_diag(void *arg, const struct tcpst_diag_sock *d)
{
	struct tw_list *l = arg;
	char a[INET_ADDRSTRLEN], b[INET_ADDRSTRLEN];

	if (d->family != AF_INET || d->state != 6 /* TIME_WAIT */ ||
	    (d->sport != l->s->hp.port && d->dport != l->s->hp.port))
		return;
	l->n++;
	if (json_array_size(l->arr) >= MAX_SOCKS)
		return;
	inet_ntop(AF_INET, d->src, a, sizeof a);
	inet_ntop(AF_INET, d->dst, b, sizeof b);
	json_array_append_new(l->arr, json_pack("{s:s,s:i,s:s,s:i,s:s,s:I}", "src", a, "sport",
						d->sport, "dst", b, "dport", d->dport, "timer",
						tcpst_timer_name(d->timer), "ms_left",
						(json_int_t)d->expires_ms));
}

/* One sock_diag dump per host: every TIME_WAIT socket of this run's port,
 * with the kernel's time left on its timer. A sample. */
static void sample_tw(struct tw *s, int last)
{
	static const char *const hosts[2] = {"server", "client"};

	for (int h = 0; h < 2; h++) {
		struct tw_list l = {.s = s, .arr = json_array()};
		char err[200];
		int64_t from, to;

		if (net_enter(s->ctx->net, h == 0 ? NET_SERVER : NET_CLIENT) < 0) {
			json_decref(l.arr);
			continue;
		}
		from = obs_now_ns();
		if (tcpst_diag_dump(AF_INET, on_diag, &l, err, sizeof err) < 0) {
			json_decref(l.arr);
			continue;
		}
		to = obs_now_ns();
		s->tw_sides[h] = l.n;
		if (l.n > s->tw_peak[h])
			s->tw_peak[h] = l.n;
		ev_emit(s->ctx->em, "tw_list",
			json_pack("{s:s,s:s,s:s,s:I,s:I,s:i,s:o,s:b}", "kind", "sample", "source",
				  "sock_diag", "host", hosts[h], "t_from_us",
				  (json_int_t)obs_run_us(s->ctx, from), "t_kernel_us",
				  (json_int_t)obs_run_us(s->ctx, to), "count", l.n, "sockets", l.arr,
				  "last", last));
	}
}

static void counters_snapshot(struct tw *s, int idx)
{
	for (int h = 0; h < 2; h++) {
		long long c[N_COUNTERS] = {0};

		if (net_enter(s->ctx->net, h == 0 ? NET_SERVER : NET_CLIENT) < 0 ||
		    read_counters(c) < 0)
			continue;
		if (idx == 0)
			memcpy(s->counters[h], c, sizeof c);
		else {
			json_t *v = json_object();

			for (size_t i = 0; i < N_COUNTERS; i++)
				json_object_set_new(v, counter_names[i],
						    json_integer(c[i] - s->counters[h][i]));
			ev_emit(s->ctx->em, "counters",
				json_pack("{s:s,s:s,s:s,s:o}", "source", "/proc/net/netstat TcpExt",
					  "host", h == 0 ? "server" : "client", "scope",
					  "this host's namespace, since the run began", "values", v));
		}
	}
}

static int set_sysctl(struct tw *s, const char *path, const char *name, const char *value)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	ssize_t len = (ssize_t)strlen(value);
	char msg[200];

	if (fd >= 0 && write(fd, value, (size_t)len) == len) {
		close(fd);
		ev_emit(s->ctx->em, "sysctl", json_pack("{s:s,s:s,s:s}", "name", name, "value", value,
							"scope", "client namespace"));
		return 0;
	}
	if (fd >= 0)
		close(fd);
	snprintf(msg, sizeof msg, "cannot set %s in the run's client namespace: %s", name,
		 strerror(errno));
	ev_error(s->ctx->em, "sysctl_failed", NULL, msg);
	return -EIO;
}

/* The observer's callback: frames become segment events; for the watched
 * sockets, the first TIME_WAIT timer is remembered. */
static json_t *on_obs(void *arg, const struct obs_event *ev)
{
	struct tw *s = arg;

	if (ev->kind == OBS_FRAME) {
		json_t *j;

		/* Each frame once: as the server host's capture saw it. */
		if (ev->host != NET_SERVER || !dec_has(ev->pkt, DEC_L_TCP) || s->scenario == SC_EXHAUST)
			return NULL;
		/* The second FIN puts the first closer in TIME_WAIT once it is
		 * acknowledged: the timer starts about then. */
		if (ev->pkt->tcp.flags & 0x01) {
			pthread_mutex_lock(&s->lock);
			s->last_fin_ns = ev->t_ns;
			pthread_mutex_unlock(&s->lock);
		}
		obs_pcap_write(s->obs, ev->frame);
		j = obs_segment_json(s->ctx, ev->frame, ev->pkt, ev->t_ns);
		if (j)
			ev_emit(s->ctx->em, "segment", j);
		return NULL;
	}
	if (ev->kind == OBS_TIMER && ev->timer == TCPST_TIMER_TIME_WAIT) {
		pthread_mutex_lock(&s->lock);
		if (s->tw_first_ms < 0) {
			s->tw_first_ms = (int)ev->timer_ms;
			s->tw_first_ns = ev->t_ns;
			s->tw_who = ev->sock == 0 ? "client" : "server";
		}
		pthread_mutex_unlock(&s->lock);
	}
	return NULL;
}

static int start_observer(struct tw *s, int watch)
{
	struct obs_sock socks[2];
	struct obs_config cfg;
	char filter[64];

	snprintf(filter, sizeof filter, "tcp port %u", s->hp.port);
	socks[0] = (struct obs_sock){"client", s->hp.cli.sin_addr, s->hp.srv.sin_addr, s->cport, s->hp.port,
				     NET_CLIENT};
	socks[1] = (struct obs_sock){"server", s->hp.srv.sin_addr, s->hp.cli.sin_addr, s->hp.port, s->cport,
				     NET_SERVER};
	memset(&cfg, 0, sizeof cfg);
	cfg.ctx = s->ctx;
	cfg.filter = filter;
	cfg.socks = socks;
	cfg.n_socks = watch ? 2 : 0;
	cfg.fn = on_obs;
	cfg.arg = s;
	cfg.pcap_path = s->ctx->pcap_path;
	return obs_start(&s->obs, &cfg);
}

/* ---- scenarios ---- */

/* A listener on the server's port (server namespace). -errno or the fd. */
static int listener(struct tw *s, int reuse)
{
	int fd, err;

	if (net_enter(s->ctx->net, NET_SERVER) < 0)
		return -EIO;
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	err = do_bind(s, "server", fd, &s->hp.srv, reuse);
	if (err || listen(fd, 16) < 0) {
		close(fd);
		return -(err ? err : errno);
	}
	call_ev(s, "server", "listen", NULL, obs_now_ns(), 0);
	return fd;
}

/* One connection, one message each way, first closes first. */
static int one_connection(struct tw *s, int first_is_client)
{
	struct lab_ctx *ctx = s->ctx;
	int lfd, cfd = -1, afd = -1, rc = 0;
	struct sockaddr_in me;
	socklen_t ml = sizeof me;
	struct sockaddr_in any = {.sin_family = AF_INET, .sin_addr = s->hp.cli.sin_addr};

	if ((lfd = listener(s, s->reuse)) < 0) {
		ev_error(ctx->em, "listen_failed", "port", strerror(-lfd));
		return lfd;
	}
	if (net_enter(ctx->net, NET_CLIENT) < 0 ||
	    (cfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) < 0 ||
	    do_bind(s, "client", cfd, &any, s->reuse) != 0 ||
	    getsockname(cfd, (struct sockaddr *)&me, &ml) < 0) {
		ev_error(ctx->em, "internal", NULL, "cannot open the client's socket");
		rc = -EIO;
		goto out;
	}
	s->cport = ntohs(me.sin_port);
	s->hp.cli.sin_port = me.sin_port;
	if ((rc = start_observer(s, 1)) < 0)
		goto out;
	if (net_enter(ctx->net, NET_CLIENT) < 0 || do_connect(s, cfd, 1) != 0) {
		ev_error(ctx->em, "connect_failed", NULL, "the client could not connect");
		rc = -EIO;
		goto out;
	}
	if (lab_wait_fd(ctx, lfd, POLLIN, 3000) <= 0 ||
	    (afd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK)) < 0) {
		ev_error(ctx->em, "internal", NULL, "the server accepted nothing");
		rc = -EIO;
		goto out;
	}
	call_ev(s, "server", "accept", NULL, obs_now_ns(), 0);
	if (send(cfd, "hello", 5, MSG_NOSIGNAL) != 5 || recv_wait(s, afd) <= 0 ||
	    send(afd, "hi", 2, MSG_NOSIGNAL) != 2 || recv_wait(s, cfd) <= 0) {
		ev_error(ctx->em, "internal", NULL, "the exchange failed");
		rc = -EIO;
		goto out;
	}
	if (first_is_client) {
		do_close(s, "client", &cfd);
		if (recv_wait(s, afd) == 0)
			call_ev(s, "server", "recv", "0: the client's FIN", obs_now_ns(), 0);
		do_close(s, "server", &afd);
	} else {
		do_close(s, "server", &afd);
		if (s->scenario == SC_RESTART)
			do_close(s, "server", &lfd); /* the whole server stops */
		if (recv_wait(s, cfd) == 0)
			call_ev(s, "client", "recv", "0: the server's FIN", obs_now_ns(), 0);
		do_close(s, "client", &cfd);
	}
	/* Let the last ACK cross before anything is asked of the kernel: a
	 * sock_diag dump shows the closer in TIME_WAIT once it is there. */
	for (int i = 0; i < 100 && !lab_cancelled(ctx); i++) {
		sample_tw(s, 0);
		if (s->tw_sides[first_is_client ? 1 : 0] > 0)
			break;
		lab_sleep_ms(ctx, 10);
	}
out:
	if (cfd >= 0)
		close(cfd);
	if (afd >= 0)
		close(afd);
	/* who-closes keeps listening: the client's port reuse connects to it. */
	if (lfd >= 0 && s->scenario == SC_WHO && rc == 0)
		s->lfd = lfd;
	else if (lfd >= 0)
		close(lfd);
	return rc;
}

static int scenario_who(struct tw *s)
{
	int rc = one_connection(s, s->closer == 0);
	struct sockaddr_in same = s->hp.cli;

	if (rc < 0 || s->closer != 0)
		return rc;
	/* The client reuses its port: the same local port, the same server. */
	{
		int fd, err;

		if (net_enter(s->ctx->net, NET_CLIENT) < 0 ||
		    (fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) < 0)
			return -EIO;
		err = s->reuse_bind = do_bind(s, "client", fd, &same, s->reuse);
		if (!err)
			s->reuse_connect = do_connect(s, fd, 1);
		close(fd);
	}
	return 0;
}

static int scenario_restart(struct tw *s)
{
	int rc = one_connection(s, 0), fd;

	if (rc < 0)
		return rc;
	/* The restarted server: the same program, so the same SO_REUSEADDR. */
	if (net_enter(s->ctx->net, NET_SERVER) < 0 ||
	    (fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		return -EIO;
	s->reuse_bind = do_bind(s, "server", fd, &s->hp.srv, s->reuse);
	if (!s->reuse_bind) {
		int64_t t0 = obs_now_ns();
		int err = listen(fd, 16) < 0 ? errno : 0;

		call_ev(s, "server", "listen", NULL, t0, err);
	}
	close(fd);
	return 0;
}

static int scenario_exhaust(struct tw *s)
{
	struct lab_ctx *ctx = s->ctx;
	int n = (int)lab_int(ctx->p, "ports"), extra = (int)lab_int(ctx->p, "extra");
	int gap = (int)lab_int(ctx->p, "gap_ms"), lfd, rc;
	char range[32], reuse[8];

	if (net_enter(ctx->net, NET_CLIENT) < 0)
		return -EIO;
	snprintf(range, sizeof range, "%d %d", EXHAUST_PORT_BASE, EXHAUST_PORT_BASE + n - 1);
	snprintf(reuse, sizeof reuse, "%lld", lab_int(ctx->p, "tw_reuse"));
	if ((rc = set_sysctl(s, "/proc/sys/net/ipv4/ip_local_port_range",
			     "net.ipv4.ip_local_port_range", range)) < 0 ||
	    (rc = set_sysctl(s, "/proc/sys/net/ipv4/tcp_tw_reuse", "net.ipv4.tcp_tw_reuse",
			     reuse)) < 0)
		return rc;
	if ((lfd = listener(s, 0)) < 0) {
		ev_error(ctx->em, "listen_failed", "port", strerror(-lfd));
		return lfd;
	}
	if ((rc = start_observer(s, 0)) < 0) {
		close(lfd);
		return rc;
	}
	for (int i = 0; i < n + extra && !lab_cancelled(ctx); i++) {
		int cfd, err;

		if (net_enter(ctx->net, NET_CLIENT) < 0 ||
		    (cfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) < 0)
			break;
		err = do_connect(s, cfd, 1);
		if (!err) {
			int afd;

			/* The server takes it; the client closes first, so the
			 * client's 4-tuple goes to TIME_WAIT; the server closes
			 * when it reads the FIN. */
			if (lab_wait_fd(ctx, lfd, POLLIN, 3000) > 0 &&
			    (afd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK)) >= 0) {
				close(cfd);
				cfd = -1;
				recv_wait(s, afd);
				close(afd);
			}
		}
		if (cfd >= 0)
			close(cfd);
		if (gap && lab_sleep_ms(ctx, gap) < 0)
			break;
	}
	close(lfd);
	sample_tw(s, 0);
	return 0;
}

/* ports: net.ipv4.ip_local_port_range of the namespace the thread is in. */
static int read_port_range(int *lo, int *hi)
{
	char buf[64], *end;
	int fd = open("/proc/sys/net/ipv4/ip_local_port_range", O_RDONLY | O_CLOEXEC);
	ssize_t n;
	long a, b;

	if (fd < 0)
		return -errno;
	n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return -EIO;
	buf[n] = 0;
	a = strtol(buf, &end, 10);
	b = strtol(end, &end, 10);
	if (a <= 0 || b < a || b > 65535)
		return -EIO;
	*lo = (int)a;
	*hi = (int)b;
	return 0;
}

/* setsockopt(fd, SOL_SOCKET, opt, 1), reported. 0 or errno. */
static int do_sockopt(struct tw *s, const char *who, int fd, int opt, const char *name, json_t *extra)
{
	int one = 1, err = 0;
	int64_t t0 = obs_now_ns();
	char d[32];

	if (setsockopt(fd, SOL_SOCKET, opt, &one, sizeof one) < 0)
		err = errno;
	snprintf(d, sizeof d, "%s=1", name);
	call_ev_x(s, who, "setsockopt", d, t0, err, extra);
	return err;
}

/* bind() reported with extra fields, no socket option of its own. 0 or errno. */
static int do_bind_x(struct tw *s, int fd, const struct sockaddr_in *a, const char *opts, json_t *extra)
{
	char d[96], ip[INET_ADDRSTRLEN];
	int64_t t0;
	int err = 0;

	inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
	snprintf(d, sizeof d, "%s:%u%s%s", ip, ntohs(a->sin_port), opts ? ", " : "", opts ? opts : "");
	t0 = obs_now_ns();
	if (bind(fd, (const struct sockaddr *)a, sizeof *a) < 0)
		err = errno;
	call_ev_x(s, "server", "bind", d, t0, err, extra);
	if (err == EADDRINUSE)
		s->eaddrinuse++;
	return err;
}

static int do_listen(struct tw *s, int fd, json_t *extra)
{
	int64_t t0 = obs_now_ns();
	int err = listen(fd, 64) < 0 ? errno : 0;

	call_ev_x(s, "server", "listen", NULL, t0, err, extra);
	return err;
}

/* Port 0 and a busy port, on the server host. Returns 0, or -errno when the
 * run cannot go on. */
static int ports_ephemeral(struct tw *s)
{
	struct lab_ctx *ctx = s->ctx;
	struct sockaddr_in a0 = s->hp.srv, got;
	socklen_t gl = sizeof got;
	int a = -1, b = -1, rc = 0, err;
	int64_t t0;
	char d[64];

	if (net_enter(ctx->net, NET_SERVER) < 0)
		return -EIO;
	if ((rc = read_port_range(&s->pt.lo, &s->pt.hi)) < 0) {
		ev_error(ctx->em, "port_range_unreadable", NULL,
			 "cannot read net.ipv4.ip_local_port_range in the run's server namespace");
		return rc;
	}
	ev_emit(ctx->em, "port_range",
		json_pack("{s:s,s:s,s:s,s:i,s:i}", "host", "server", "name",
			  "net.ipv4.ip_local_port_range", "source",
			  "/proc/sys/net/ipv4/ip_local_port_range, read in the server's namespace", "low",
			  s->pt.lo, "high", s->pt.hi));
	a0.sin_port = 0;
	if ((a = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) < 0) {
		rc = -errno;
		goto out;
	}
	s->pt.bind0 = do_bind_x(s, a, &a0, NULL, json_pack("{s:s}", "step", "port0"));
	if (s->pt.bind0)
		goto out;
	t0 = obs_now_ns();
	err = getsockname(a, (struct sockaddr *)&got, &gl) < 0 ? errno : 0;
	if (!err)
		s->pt.port0 = ntohs(got.sin_port);
	snprintf(d, sizeof d, "%s:%d", s->hp.srv_ip, s->pt.port0);
	call_ev_x(s, "server", "getsockname", err ? NULL : d, t0, err,
		  json_pack("{s:s,s:i}", "step", "port0", "port", s->pt.port0));
	if (err || do_listen(s, a, json_pack("{s:s}", "step", "port0")))
		goto out;
	/* A second socket asks for the port the listener holds: plain, then
	 * with SO_REUSEADDR (which never lets a bind share a listener's port). */
	for (int r = 0; r < 2; r++) {
		struct sockaddr_in busy = s->hp.srv;

		busy.sin_port = htons((uint16_t)s->pt.port0);
		if ((b = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) < 0) {
			rc = -errno;
			goto out;
		}
		if (r && do_sockopt(s, "server", b, SO_REUSEADDR, "SO_REUSEADDR",
				    json_pack("{s:s}", "step", "busy")) != 0)
			s->pt.busy[r] = -1;
		else
			s->pt.busy[r] = do_bind_x(s, b, &busy, r ? "SO_REUSEADDR" : NULL,
						  json_pack("{s:s,s:i}", "step", "busy", "port",
							    s->pt.port0));
		close(b);
		b = -1;
	}
out:
	if (b >= 0)
		close(b);
	if (a >= 0)
		close(a);
	return rc;
}

/* Accept the connection that arrived on one of the two listeners. Returns
 * the listener's index (0 or 1) with *afd set, or -1. */
static int ports_accept(struct tw *s, const int l[2], int *afd)
{
	int rc = lab_wait_fd2(s->ctx, l[0], POLLIN, l[1], 3000);

	*afd = -1;
	if (rc <= 0)
		return -1;
	for (int i = 0; i < 2; i++) {
		struct sockaddr_in peer;
		socklen_t pl = sizeof peer;
		int64_t t0 = obs_now_ns();
		char d[64], ip[INET_ADDRSTRLEN];

		*afd = accept4(l[i], (struct sockaddr *)&peer, &pl, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (*afd < 0)
			continue; /* EAGAIN: the connection is on the other listener */
		inet_ntop(AF_INET, &peer.sin_addr, ip, sizeof ip);
		snprintf(d, sizeof d, "listener %d: from %s:%u", i + 1, ip, ntohs(peer.sin_port));
		s->pt.peer_parity[ntohs(peer.sin_port) & 1]++;
		call_ev_x(s, "server", "accept", d, t0, 0,
			  json_pack("{s:s,s:i,s:i}", "step", "reuseport", "listener", i + 1, "peer_port",
				    ntohs(peer.sin_port)));
		return i;
	}
	return -1;
}

/* Two listeners share the run's port with SO_REUSEPORT; the client connects
 * `conns` times, each from a port of its own, and closes first. */
static int ports_reuseport(struct tw *s)
{
	struct lab_ctx *ctx = s->ctx;
	int l[2] = {-1, -1}, rc = 0, n = (int)lab_int(ctx->p, "conns");

	if (net_enter(ctx->net, NET_SERVER) < 0)
		return -EIO;
	for (int i = 0; i < 2; i++) {
		if ((l[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) < 0) {
			rc = -errno;
			goto out;
		}
		if (do_sockopt(s, "server", l[i], SO_REUSEPORT, "SO_REUSEPORT",
			       json_pack("{s:s,s:i}", "step", "reuseport", "listener", i + 1)) != 0)
			goto out;
		s->pt.rp_bind[i] = do_bind_x(s, l[i], &s->hp.srv, "SO_REUSEPORT",
					     json_pack("{s:s,s:i,s:i}", "step", "reuseport", "listener",
						       i + 1, "port", s->hp.port));
		if (s->pt.rp_bind[i] ||
		    do_listen(s, l[i], json_pack("{s:s,s:i}", "step", "reuseport", "listener", i + 1)))
			goto out;
	}
	if ((rc = start_observer(s, 0)) < 0)
		goto out;
	for (int i = 0; i < n && !lab_cancelled(ctx); i++) {
		int cfd, afd = -1, which;

		if (net_enter(ctx->net, NET_CLIENT) < 0 ||
		    (cfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) < 0) {
			rc = -EIO;
			break;
		}
		s->pt.connects++;
		if (do_connect(s, cfd, 1) != 0) {
			close(cfd);
			continue;
		}
		which = ports_accept(s, l, &afd);
		if (which >= 0)
			s->pt.accepts[which]++;
		/* The client closes first; the server closes on its FIN. */
		close(cfd);
		if (afd >= 0) {
			recv_wait(s, afd);
			close(afd);
		}
	}
out:
	for (int i = 0; i < 2; i++)
		if (l[i] >= 0)
			close(l[i]);
	return rc;
}

/* A call's outcome for the summary: NULL when not tried, "ok", or the errno's name. */
static const char *outcome(int err)
{
	return err < 0 ? NULL : err == 0 ? "ok" : strerrorname_np(err);
}

static void ports_verdicts(struct tw *s)
{
	struct lab_ctx *ctx = s->ctx;
	json_t *sum = ctx->summary;
	const char *b0 = s->pt.busy[0] > 0 ? strerrorname_np(s->pt.busy[0]) : NULL;
	const char *b1 = s->pt.busy[1] > 0 ? strerrorname_np(s->pt.busy[1]) : NULL;
	int in = s->pt.port0 >= s->pt.lo && s->pt.port0 <= s->pt.hi;
	int total = s->pt.accepts[0] + s->pt.accepts[1];

	json_object_set_new(
		sum, "ports",
		json_pack("{s:{s:i,s:i,s:s},s:i,s:b,s:{s:s?,s:s?},s:{s:i,s:[s?,s?],s:[i,i],s:i,s:I}}",
			  "range", "low", s->pt.lo, "high", s->pt.hi, "source",
			  "/proc/sys/net/ipv4/ip_local_port_range (server namespace)", "port0",
			  s->pt.port0, "port0_in_range", in, "busy_bind", "plain",
			  outcome(s->pt.busy[0]), "so_reuseaddr", outcome(s->pt.busy[1]), "reuseport",
			  "port", s->hp.port, "binds", outcome(s->pt.rp_bind[0]), outcome(s->pt.rp_bind[1]),
			  "accepts",
			  s->pt.accepts[0], s->pt.accepts[1], "connects", s->pt.connects,
			  "connects_ok", (json_int_t)s->connects_ok));
	if (s->pt.port0 && in)
		ev_note(ctx->em, "timewait.ports_ephemeral",
			json_pack("{s:i,s:i,s:i}", "port", s->pt.port0, "low", s->pt.lo, "high",
				  s->pt.hi),
			NULL);
	else if (s->pt.port0)
		ev_note(ctx->em, "timewait.ports_outside",
			json_pack("{s:i,s:i,s:i}", "port", s->pt.port0, "low", s->pt.lo, "high",
				  s->pt.hi),
			NULL);
	/* Only what this run shows: port 0's parity against every client port's. */
	if (s->pt.port0 && total > 0 && !s->pt.peer_parity[s->pt.port0 & 1]) {
		int p0 = s->pt.port0 & 1;

		ev_note(ctx->em, "timewait.ports_parity",
			json_pack("{s:s,s:s,s:i,s:s,s:s,s:i,s:i}", "bound", p0 ? "odd" : "even",
				  "bound_key", p0 ? "parity.odd" : "parity.even", "port", s->pt.port0,
				  "connected", p0 ? "even" : "odd", "connected_key",
				  p0 ? "parity.even" : "parity.odd", "n",
				  total, "low", s->pt.lo),
			NULL);
	}
	if (s->pt.busy[0] == EADDRINUSE && s->pt.busy[1] == EADDRINUSE)
		ev_note(ctx->em, "timewait.ports_busy", json_pack("{s:i}", "port", s->pt.port0), NULL);
	else if (s->pt.busy[0] >= 0 && s->pt.busy[1] >= 0 && s->pt.port0)
		ev_note(ctx->em, "timewait.ports_busy_other",
			json_pack("{s:i,s:s,s:s}", "port", s->pt.port0, "plain", b0 ? b0 : "success",
				  "reuse", b1 ? b1 : "success"),
			NULL);
	if (s->pt.rp_bind[0] == 0 && s->pt.rp_bind[1] == 0 && s->obs) {
		json_t *np = json_pack("{s:i,s:I,s:i,s:i,s:i,s:i}", "port", s->hp.port, "n",
				       (json_int_t)s->connects_ok, "first", s->pt.accepts[0], "second",
				       s->pt.accepts[1], "total", total, "only",
				       s->pt.accepts[0] ? 1 : 2);

		if (s->pt.accepts[0] && s->pt.accepts[1])
			ev_note(ctx->em, "timewait.ports_reuseport", np, NULL);
		else if (total)
			ev_note(ctx->em, "timewait.ports_reuseport_one", np, NULL);
		else
			ev_note(ctx->em, "timewait.ports_reuseport_none", np, NULL);
	}
	else if (s->pt.rp_bind[1] > 0)
		ev_note(ctx->em, "timewait.ports_reuseport_refused",
			json_pack("{s:i,s:s}", "port", s->hp.port, "errno",
				  strerrorname_np(s->pt.rp_bind[1])),
			NULL);
}

static int scenario_ports(struct tw *s)
{
	int rc = ports_ephemeral(s);

	if (rc < 0)
		return rc;
	rc = ports_reuseport(s);
	if (rc == 0 && !s->obs) {
		/* A listener could not be set up: its call event has the errno. */
		ports_verdicts(s);
		ev_error(s->ctx->em, "reuseport_failed", NULL,
			 "the two SO_REUSEPORT listeners could not both listen (see their calls)");
		rc = -EIO;
	}
	return rc;
}

/* ---- the run ---- */

static void verdicts(struct tw *s)
{
	struct lab_ctx *ctx = s->ctx;
	json_t *sum = ctx->summary;

	json_object_set_new(sum, "time_wait",
			    json_pack("{s:s,s:i,s:i,s:i,s:i}", "source", "sock_diag samples",
				      "server_peak", s->tw_peak[0], "client_peak", s->tw_peak[1],
				      "server_at_end", s->tw_sides[0], "client_at_end",
				      s->tw_sides[1]));
	json_object_set_new(sum, "errors",
			    json_pack("{s:I,s:I}", "EADDRINUSE", (json_int_t)s->eaddrinuse,
				      "EADDRNOTAVAIL", (json_int_t)s->eaddrnotavail));
	json_object_set_new(sum, "connects_ok", json_integer(s->connects_ok));
	if (s->reuse_bind >= 0)
		json_object_set_new(sum, "second_bind",
				    json_pack("{s:b,s:s?,s:s?}", "so_reuseaddr", s->reuse, "errno",
					      s->reuse_bind ? strerrorname_np(s->reuse_bind) : NULL,
					      "connect_errno",
					      s->reuse_connect > 0 ? strerrorname_np(s->reuse_connect)
								   : NULL));
	if (s->scenario == SC_PORTS) {
		ports_verdicts(s);
		return;
	}
	if (s->scenario != SC_EXHAUST) {
		const char *closer = s->scenario == SC_RESTART || s->closer == 1 ? "server" : "client";

		ev_note(ctx->em, "timewait.who",
			json_pack("{s:s,s:s,s:i,s:i}", "closer", closer, "closer_key",
				  !strcmp(closer, "server") ? "role.server" : "role.client", "client",
				  s->tw_peak[1], "server", s->tw_peak[0]),
			NULL);
	}
	if (s->tw_first_ms >= 0) {
		long long since = (s->tw_first_ns - (s->last_fin_ns ? s->last_fin_ns : s->close_ns)) / 1000000;

		json_object_set_new(sum, "first_timer",
				    json_pack("{s:s,s:i,s:I,s:I}", "who", s->tw_who, "ms_left",
					      s->tw_first_ms, "ms_after_fin", (json_int_t)since,
					      "sum_ms", (json_int_t)(since + s->tw_first_ms)));
		ev_note(ctx->em, "timewait.sixty",
			json_pack("{s:s,s:s,s:i,s:I,s:I}", "who", s->tw_who, "who_key",
				  !strcmp(s->tw_who, "server") ? "role.server" : "role.client", "ms_left",
				  s->tw_first_ms,
				  "since", (json_int_t)since,
				  "total", (json_int_t)(since + s->tw_first_ms)),
			NULL);
	}
	if (s->scenario == SC_RESTART && s->reuse_bind == EADDRINUSE)
		ev_note(ctx->em, "timewait.restart_inuse", json_pack("{s:i}", "port", s->hp.port), NULL);
	else if (s->scenario == SC_RESTART && s->reuse_bind == 0)
		ev_note(ctx->em, "timewait.restart_reuse", json_pack("{s:i}", "port", s->hp.port), NULL);
	if (s->scenario == SC_WHO && s->closer == 0 && s->reuse_bind == EADDRINUSE)
		ev_note(ctx->em, "timewait.client_port_inuse", json_pack("{s:i}", "port", s->cport),
			NULL);
	else if (s->scenario == SC_WHO && s->closer == 0 && s->reuse_bind == 0)
		ev_note(ctx->em, "timewait.client_port_reuse",
			json_pack("{s:i,s:s}", "port", s->cport, "connect",
				  s->reuse_connect > 0 ? strerrorname_np(s->reuse_connect)
						       : "success"),
			NULL);
	if (s->scenario == SC_EXHAUST)
		ev_note(ctx->em, "timewait.exhaust",
			json_pack("{s:I,s:I,s:I,s:I,s:i}", "ports", (json_int_t)lab_int(ctx->p, "ports"),
				  "ok", (json_int_t)s->connects_ok, "notavail",
				  (json_int_t)s->eaddrnotavail, "reuse",
				  (json_int_t)lab_int(ctx->p, "tw_reuse"), "tw", s->tw_peak[1]),
			NULL);
}

static int tw_run(struct lab_ctx *ctx)
{
	struct tw *s = calloc(1, sizeof *s);
	int rc;
	int64_t end;

	if (!s) {
		ev_error(ctx->em, "internal", NULL, "out of memory");
		return -ENOMEM;
	}
	pthread_mutex_init(&s->lock, NULL);
	s->ctx = ctx;
	s->tw_first_ms = -1;
	s->reuse_bind = s->reuse_connect = -1;
	s->pt.bind0 = s->pt.busy[0] = s->pt.busy[1] = s->pt.rp_bind[0] = s->pt.rp_bind[1] = -1;
	s->reuse = (int)lab_int(ctx->p, "reuseaddr");
	s->lfd = -1;
	s->scenario = (int)lab_int(ctx->p, "scenario");
	s->closer = (int)lab_int(ctx->p, "closer");
	if ((rc = net_pair_pick(ctx, &s->hp)) < 0)
		goto out;
	counters_snapshot(s, 0);
	rc = s->scenario == SC_WHO       ? scenario_who(s)
	     : s->scenario == SC_RESTART ? scenario_restart(s)
	     : s->scenario == SC_PORTS   ? scenario_ports(s)
					 : scenario_exhaust(s);
	/* Watch the TIME_WAIT sockets count down (sock_diag samples). */
	end = obs_now_ns() + lab_int(ctx->p, "observe_ms") * 1000000LL;
	while (rc == 0 && obs_now_ns() < end && !lab_cancelled(ctx)) {
		int64_t left = (end - obs_now_ns()) / 1000000;

		if (lab_sleep_ms(ctx, (int)(left < TW_SAMPLE_MS ? left : TW_SAMPLE_MS)) < 0)
			break;
		sample_tw(s, 0);
	}
	if (s->obs) {
		obs_stop(s->obs);
		sample_tw(s, 1);
		counters_snapshot(s, 1);
		if (rc == 0 && !lab_cancelled(ctx))
			verdicts(s);
	}
	if (rc == 0 && lab_cancelled(ctx))
		rc = -ECANCELED;
out:
	if (s->lfd >= 0)
		close(s->lfd);
	obs_destroy(s->obs);
	pthread_mutex_destroy(&s->lock);
	free(s);
	return rc;
}

static int tw_check(const struct lab_params *p, const char **param, char *err, size_t errlen)
{
	return net_params_check_two_hosts(p, "each side's sockets are listed in its own host", param, err, errlen);
}

static int tw_format(const struct lab_params *p, const json_t *ev, char *buf, size_t len)
{
	const char *type = json_string_value(json_object_get(ev, "type"));
	double t = (double)json_integer_value(json_object_get(ev, "t_us")) / 1000.0;

	(void)p;
	if (!type)
		return -1;
	if (!strcmp(type, "call")) {
		const char *e = json_string_value(json_object_get(ev, "errno"));
		const char *d = json_string_value(json_object_get(ev, "detail"));

		json_int_t l = json_integer_value(json_object_get(ev, "listener"));
		char who[32];

		snprintf(who, sizeof who, "%s%s", json_string_value(json_object_get(ev, "who")),
			 l == 1 ? " L1" : l == 2 ? " L2" : "");
		return snprintf(buf, len, "%10.3f  %-9s  %s(%s) = %s\n", t, who,
				json_string_value(json_object_get(ev, "call")), d ? d : "",
				e ? e : "ok");
	}
	if (!strcmp(type, "tw_list")) {
		const json_t *a = json_object_get(ev, "sockets");
		int n = snprintf(buf, len, "%10.3f  %-9s  TIME_WAIT x%lld (sock_diag)", t,
				 json_string_value(json_object_get(ev, "host")),
				 json_integer_value(json_object_get(ev, "count")));
		size_t i;
		json_t *x;

		if (!json_integer_value(json_object_get(ev, "count")))
			return 0;
		json_array_foreach(a, i, x) {
			if (i >= 3 || n < 0 || (size_t)n >= len)
				break;
			n += snprintf(buf + n, len - (size_t)n, " %s:%lld->%s:%lld %.1f s left",
				      json_string_value(json_object_get(x, "src")),
				      json_integer_value(json_object_get(x, "sport")),
				      json_string_value(json_object_get(x, "dst")),
				      json_integer_value(json_object_get(x, "dport")),
				      (double)json_integer_value(json_object_get(x, "ms_left")) / 1000);
		}
		if (n >= 0 && (size_t)n < len)
			n += snprintf(buf + n, len - (size_t)n, "\n");
		return n;
	}
	if (!strcmp(type, "port_range"))
		return snprintf(buf, len, "%10.3f  %-9s  %s = %lld %lld (%s)\n", t,
				json_string_value(json_object_get(ev, "host")),
				json_string_value(json_object_get(ev, "name")),
				json_integer_value(json_object_get(ev, "low")),
				json_integer_value(json_object_get(ev, "high")),
				json_string_value(json_object_get(ev, "source")));
	if (!strcmp(type, "counters")) {
		const char *k;
		json_t *v;
		int n = snprintf(buf, len, "%10.3f  %-9s  TcpExt since the run began:", t,
				 json_string_value(json_object_get(ev, "host")));

		json_object_foreach(json_object_get(ev, "values"), k, v) {
			if (n < 0 || (size_t)n >= len)
				break;
			n += snprintf(buf + n, len - (size_t)n, " %s +%lld", k, json_integer_value(v));
		}
		if (n >= 0 && (size_t)n < len)
			n += snprintf(buf + n, len - (size_t)n, "\n");
		return n;
	}
	if (!strcmp(type, "capture"))
		return snprintf(buf, len, "%10.3f  capture on %s (%s)\n", t,
				json_string_value(json_object_get(ev, "interface")),
				json_string_value(json_object_get(ev, "filter")));
	if (!strcmp(type, "segment"))
		return 0;
	return -1;
}

const struct lab_desc lab_time_wait = {
	.name = "time-wait",
	.title = "TIME_WAIT and ports",
	.summary = "Who ends in TIME_WAIT (the side that closes first), the kernel's own 60 s timer "
		   "read by sock_diag, a restarted server's bind() with and without SO_REUSEADDR, "
		   "and an ephemeral port range spent by TIME_WAIT.",
	.params = tw_params,
	.n_params = sizeof tw_params / sizeof tw_params[0],
	.check = tw_check,
	.captures = 1,
	.run = tw_run,
	.format = tw_format,
};
