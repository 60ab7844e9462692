/* test_tcpstate.c: state names, the RFC 9293 inference per close pattern, recorded tracepoint text, live tracefs (the pool of instances) and sock_diag. */
#include "unit.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "decode/decode.h"
#include "sandbox.h"
#include "tcpstate/tcpstate.h"

#define S DEC_TCP_SYN
#define A DEC_TCP_ACK
#define F DEC_TCP_FIN
#define R DEC_TCP_RST
#define P DEC_TCP_PSH

static int privileged;
/* This binary's own pool of tracefs slots (SOCKLAB_TRACE_POOL), so
 * that no run on the machine takes the slots it reuses. */
static char pool[64];

#define INSTANCES "/sys/kernel/tracing/instances/"

/* One segment of a scripted exchange: who sent it and its header. */
struct seg {
	char from; /* 'c' or 's' */
	uint16_t flags;
	uint32_t seq, ack, len;
};

/* Run both endpoints' machines over segs; write each side's states, in
 * order, as "A>B A>B" text. */
static void run(const struct seg *segs, size_t n, int server_initial, char *cli, char *srv,
		size_t len)
{
	struct tcpst_infer c, s;
	size_t i;
	int k;

	tcpst_infer_init(&c, TCPST_CLOSE);
	tcpst_infer_init(&s, server_initial);
	cli[0] = srv[0] = '\0';
	for (i = 0; i < n; i++) {
		struct tcpst_change ch[2];
		int m = tcpst_infer_segment(&c, segs[i].from == 'c', segs[i].flags, segs[i].seq,
					    segs[i].ack, segs[i].len, ch);
		for (k = 0; k < m; k++)
			snprintf(cli + strlen(cli), len - strlen(cli), "%s%s>%s", cli[0] ? " " : "",
				 tcpst_name(ch[k].from), tcpst_name(ch[k].to));
		m = tcpst_infer_segment(&s, segs[i].from == 's', segs[i].flags, segs[i].seq,
					segs[i].ack, segs[i].len, ch);
		for (k = 0; k < m; k++)
			snprintf(srv + strlen(srv), len - strlen(srv), "%s%s>%s", srv[0] ? " " : "",
				 tcpst_name(ch[k].from), tcpst_name(ch[k].to));
	}
}

/* Client ISN 100, server ISN 500. */
#define HANDSHAKE {'c', S, 100, 0, 0}, {'s', S | A, 500, 101, 0}, {'c', A, 101, 501, 0}

static void client_closes_three_segments(void **state)
{
	const struct seg segs[] = {
		HANDSHAKE,
		{'c', P | A, 101, 501, 5},
		{'s', A, 501, 106, 0},
		{'c', F | A, 106, 501, 0},
		{'s', F | A, 501, 107, 0}, /* ACK and FIN together */
		{'c', A, 107, 502, 0},
	};
	char c[512], s[512];

	run(segs, sizeof segs / sizeof segs[0], TCPST_LISTEN, c, s, sizeof c);
	assert_string_equal(c, "CLOSED>SYN_SENT SYN_SENT>ESTABLISHED ESTABLISHED>FIN_WAIT_1 "
			       "FIN_WAIT_1>FIN_WAIT_2 FIN_WAIT_2>TIME_WAIT");
	assert_string_equal(s, "LISTEN>SYN_RECV SYN_RECV>ESTABLISHED ESTABLISHED>CLOSE_WAIT "
			       "CLOSE_WAIT>LAST_ACK LAST_ACK>CLOSED");
}

static void server_closes_four_segments(void **state)
{
	const struct seg segs[] = {
		HANDSHAKE,
		{'s', F | A, 501, 101, 0},
		{'c', A, 101, 502, 0},
		{'c', F | A, 101, 502, 0},
		{'s', A, 502, 102, 0},
	};
	char c[512], s[512];

	run(segs, sizeof segs / sizeof segs[0], TCPST_LISTEN, c, s, sizeof c);
	assert_string_equal(s, "LISTEN>SYN_RECV SYN_RECV>ESTABLISHED ESTABLISHED>FIN_WAIT_1 "
			       "FIN_WAIT_1>FIN_WAIT_2 FIN_WAIT_2>TIME_WAIT");
	assert_string_equal(c, "CLOSED>SYN_SENT SYN_SENT>ESTABLISHED ESTABLISHED>CLOSE_WAIT "
			       "CLOSE_WAIT>LAST_ACK LAST_ACK>CLOSED");
}

/* Both FINs in flight at once (over a link with delay): each side sends its
 * FIN, then sees the other's FIN before the ACK of its own. Each machine is
 * fed the order its own end saw; a single capture point on loopback cannot
 * show this for both sides (see the handshake lab's notes). */
static void simultaneous_close_both_closing(void **state)
{
	const struct seg client_view[] = {
		HANDSHAKE,
		{'c', F | A, 101, 501, 0},
		{'s', F | A, 501, 101, 0}, /* does not ACK the client's FIN */
		{'c', A, 102, 502, 0},
		{'s', A, 502, 102, 0},
	};
	const struct seg server_view[] = {
		HANDSHAKE,
		{'s', F | A, 501, 101, 0},
		{'c', F | A, 101, 501, 0},
		{'s', A, 502, 102, 0},
		{'c', A, 102, 502, 0},
	};
	char c[512], s[512], ignored[512];

	run(client_view, sizeof client_view / sizeof client_view[0], TCPST_LISTEN, c, ignored,
	    sizeof c);
	run(server_view, sizeof server_view / sizeof server_view[0], TCPST_LISTEN, ignored, s,
	    sizeof s);
	assert_string_equal(c, "CLOSED>SYN_SENT SYN_SENT>ESTABLISHED ESTABLISHED>FIN_WAIT_1 "
			       "FIN_WAIT_1>CLOSING CLOSING>TIME_WAIT");
	assert_string_equal(s, "LISTEN>SYN_RECV SYN_RECV>ESTABLISHED ESTABLISHED>FIN_WAIT_1 "
			       "FIN_WAIT_1>CLOSING CLOSING>TIME_WAIT");
}

static void refused_and_aborted(void **state)
{
	const struct seg refused[] = {
		{'c', S, 100, 0, 0},
		{'s', R | A, 0, 101, 0},
	};
	const struct seg wrong_ack[] = {
		{'c', S, 100, 0, 0},
		{'s', R | A, 0, 999, 0}, /* not for our SYN: ignored (RFC 9293 3.10.7.3) */
	};
	const struct seg abort[] = {
		HANDSHAKE,
		{'c', R | A, 101, 501, 0},
	};
	char c[512], s[512];

	run(refused, 2, TCPST_CLOSE, c, s, sizeof c);
	assert_string_equal(c, "CLOSED>SYN_SENT SYN_SENT>CLOSED");
	assert_string_equal(s, "");
	run(wrong_ack, 2, TCPST_CLOSE, c, s, sizeof c);
	assert_string_equal(c, "CLOSED>SYN_SENT");
	run(abort, 4, TCPST_LISTEN, c, s, sizeof c);
	assert_string_equal(c, "CLOSED>SYN_SENT SYN_SENT>ESTABLISHED ESTABLISHED>CLOSED");
	assert_string_equal(s, "LISTEN>SYN_RECV SYN_RECV>ESTABLISHED ESTABLISHED>CLOSED");
}

static void half_close_keeps_receiving(void **state)
{
	const struct seg segs[] = {
		HANDSHAKE,
		{'c', F | A, 101, 501, 0},
		{'s', A, 501, 102, 0},
		{'s', P | A, 501, 102, 10}, /* the server still sends */
		{'c', A, 102, 511, 0},
		{'s', F | A, 511, 102, 0},
		{'c', A, 102, 512, 0},
	};
	char c[512], s[512];

	run(segs, sizeof segs / sizeof segs[0], TCPST_LISTEN, c, s, sizeof c);
	assert_string_equal(c, "CLOSED>SYN_SENT SYN_SENT>ESTABLISHED ESTABLISHED>FIN_WAIT_1 "
			       "FIN_WAIT_1>FIN_WAIT_2 FIN_WAIT_2>TIME_WAIT");
	assert_string_equal(s, "LISTEN>SYN_RECV SYN_RECV>ESTABLISHED ESTABLISHED>CLOSE_WAIT "
			       "CLOSE_WAIT>LAST_ACK LAST_ACK>CLOSED");
}

static void sequence_numbers_wrap(void **state)
{
	const struct seg segs[] = {
		{'c', S, 0xffffffff, 0, 0},
		{'s', S | A, 7, 0, 0},
		{'c', A, 0, 8, 0},
		{'c', F | A, 0, 8, 0},
		{'s', A, 8, 1, 0},
	};
	char c[512], s[512];

	run(segs, sizeof segs / sizeof segs[0], TCPST_LISTEN, c, s, sizeof c);
	assert_string_equal(c, "CLOSED>SYN_SENT SYN_SENT>ESTABLISHED ESTABLISHED>FIN_WAIT_1 "
			       "FIN_WAIT_1>FIN_WAIT_2");
}

static void names(void **state)
{
	assert_string_equal(tcpst_name(TCPST_FIN_WAIT1), "FIN_WAIT_1");
	assert_string_equal(tcpst_name(TCPST_CLOSE), "CLOSED");
	assert_string_equal(tcpst_name(99), "?");
	assert_int_equal(tcpst_from_kernel_name("TCP_CLOSE_WAIT", 14), TCPST_CLOSE_WAIT);
	assert_int_equal(tcpst_from_kernel_name("TCP_CLOSE", 9), TCPST_CLOSE);
	assert_int_equal(tcpst_from_kernel_name("TCP_NOPE", 8), TCPST_UNKNOWN);
	assert_string_equal(tcpst_timer_name(TCPST_TIMER_TIME_WAIT), "time_wait");
}

/* Recorded trace_pipe text parses into the transitions it shows. */
static void recorded_trace_pipe(void **state)
{
	FILE *f = fopen("tests/data/tcpstate/trace_pipe.txt", "r");
	char line[1024], got[1024] = "";
	struct tcpst_trace_ev ev;
	int n = 0;

	assert_non_null(f);
	while (fgets(line, sizeof line, f)) {
		assert_int_equal(tcpst_trace_parse(line, strlen(line), &ev), 1);
		if (n == 0) {
			char a[INET_ADDRSTRLEN];
			assert_int_equal(ev.t_mono_ns, 1900270491000LL);
			assert_int_equal(ev.family, AF_INET);
			assert_int_equal(ev.sport, 45678);
			assert_int_equal(ev.dport, 0);
			inet_ntop(AF_INET, ev.saddr, a, sizeof a);
			assert_string_equal(a, "127.9.8.7");
		}
		if (ev.sport == 41234)
			snprintf(got + strlen(got), sizeof got - strlen(got), "%s%s>%s",
				 got[0] ? " " : "", tcpst_name(ev.oldstate), tcpst_name(ev.newstate));
		n++;
	}
	fclose(f);
	assert_int_equal(n, 12);
	/* The client: TIME_WAIT is not on the tracepoint; FIN_WAIT_2 "closes". */
	assert_string_equal(got, "CLOSED>SYN_SENT SYN_SENT>ESTABLISHED ESTABLISHED>FIN_WAIT_1 "
				 "FIN_WAIT_1>FIN_WAIT_2 FIN_WAIT_2>CLOSED");
	assert_int_equal(tcpst_trace_parse("  <idle>-0 [000] d.s. 12.5: sched_switch: x", 44, &ev), 0);
	assert_true(tcpst_trace_parse("x 1.5: inet_sock_set_state: family=AF_INET protocol=IPPROTO_TCP "
				      "sport=1 dport=2 saddr=1.2.3 daddr=1.2.3.4 oldstate=TCP_CLOSE "
				      "newstate=TCP_LISTEN", 130, &ev) < 0);
	assert_int_equal(tcpst_trace_parse("x 1.5: inet_sock_set_state: family=AF_INET "
					   "protocol=IPPROTO_SCTP sport=1", 71, &ev), 0);
}

/* A per_cpu/cpuN/stats file as kernel 6.18 prints it, and the lines
 * trace_pipe prints when the ring lost events. */
static void ring_stats_and_lost_lines(void **state)
{
	static const char text[] = "entries: 66\n"
				   "overrun: 234\n"
				   "commit overrun: 3\n"
				   "bytes: 8064\n"
				   "oldest event ts: 56343.946797\n"
				   "now ts: 56343.980000\n"
				   "dropped events: 7\n"
				   "read events: 12\n";
	struct tcpst_ring_stats st;
	uint64_t n;

	assert_int_equal(tcpst_trace_parse_stats(text, &st), 0);
	assert_int_equal(st.entries, 66);
	assert_int_equal(st.overrun, 234);
	assert_int_equal(st.commit_overrun, 3);
	assert_int_equal(st.dropped, 7);
	assert_int_equal(st.read, 12);
	/* An older kernel's file without the later lines: they count 0. */
	assert_int_equal(tcpst_trace_parse_stats("entries: 1\noverrun: 5\n", &st), 0);
	assert_int_equal(st.overrun, 5);
	assert_int_equal(st.dropped, 0);
	assert_int_equal(st.commit_overrun, 0);
	/* No overrun line: not a stats file. */
	assert_int_equal(tcpst_trace_parse_stats("entries: 1\ncommit overrun: 5\n", &st), -1);
	assert_int_equal(tcpst_trace_parse_stats("", &st), -1);

	assert_int_equal(tcpst_trace_parse_lost("CPU:0 [LOST 234 EVENTS]\n", 24, &n), 1);
	assert_int_equal(n, 234);
	assert_int_equal(tcpst_trace_parse_lost("CPU:13 [LOST 1 EVENTS]", 22, &n), 1);
	assert_int_equal(n, 1);
	assert_int_equal(tcpst_trace_parse_lost("CPU:1 [LOST EVENTS]", 19, &n), 2);
	assert_int_equal(n, 0);
	assert_int_equal(tcpst_trace_parse_lost("CPU:1 [LOST x EVENTS]", 21, &n), 0);
	assert_int_equal(tcpst_trace_parse_lost("CPU:1 [LOST 3 EVENTS] more", 26, &n), 0);
	assert_int_equal(tcpst_trace_parse_lost("CPU: [LOST 3 EVENTS]", 20, &n), 0);
	assert_int_equal(tcpst_trace_parse_lost("  bash-1 [000] 1.5: tracing_mark_write: CPU:0 [LOST 3 EVENTS]",
						61, &n), 0);
}

struct collect {
	int n;
	char text[1024];
	uint16_t port;
	uint16_t other_port; /* events of this port (either end) are counted in other */
	int other;
};

static void on_trace(void *arg, const struct tcpst_trace_ev *ev)
{
	struct collect *c = arg;

	if (c->other_port && (ev->sport == c->other_port || ev->dport == c->other_port))
		c->other++;
	if (ev->sport != c->port)
		return;
	snprintf(c->text + strlen(c->text), sizeof c->text - strlen(c->text), "%s%s>%s",
		 c->text[0] ? " " : "", tcpst_name(ev->oldstate), tcpst_name(ev->newstate));
	c->n++;
}

static void on_diag(void *arg, const struct tcpst_diag_sock *s)
{
	struct collect *c = arg;

	if (s->sport == c->port && s->state == TCPST_TIME_WAIT && s->timer == TCPST_TIMER_TIME_WAIT &&
	    s->expires_ms > 0 && s->expires_ms <= 60000)
		c->n++;
}

/* Instances whose name starts with prefix. */
static int count_instances(const char *prefix)
{
	DIR *d = opendir("/sys/kernel/tracing/instances");
	struct dirent *de;
	int n = 0;

	assert_non_null(d);
	while ((de = readdir(d)))
		if (!strncmp(de->d_name, prefix, strlen(prefix)))
			n++;
	closedir(d);
	return n;
}

/* Whether a process holds the flock of instance dir (0 or 1). */
static int instance_locked(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), locked;

	assert_true(fd >= 0);
	locked = flock(fd, LOCK_EX | LOCK_NB) < 0;
	close(fd);
	return locked;
}

/* Bind a TCP socket to 127.0.0.1 port 0; the port it got in *port. */
static int bound_socket(uint16_t *port)
{
	struct sockaddr_in b = {.sin_family = AF_INET};
	socklen_t bl = sizeof b;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	inet_pton(AF_INET, "127.0.0.1", &b.sin_addr);
	assert_int_equal(bind(fd, (struct sockaddr *)&b, sizeof b), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&b, &bl), 0);
	*port = ntohs(b.sin_port);
	return fd;
}

/* Client c (bound) connects to a new listener and closes first: five
 * transitions of c on the tracepoint. */
static void connect_and_close(int c)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	uint16_t lport;
	int l = bound_socket(&lport), s;
	char b;

	a.sin_port = htons(lport);
	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	assert_int_equal(listen(l, 1), 0);
	assert_int_equal(connect(c, (struct sockaddr *)&a, sizeof a), 0);
	s = accept(l, NULL, NULL);
	assert_true(s >= 0);
	close(c);
	assert_int_equal(recv(s, &b, 1, 0), 0);
	close(s);
	close(l);
}

static void read_until(struct tcpst_trace *t, struct collect *col, int n)
{
	int i;

	for (i = 0; i < 100 && col->n < n; i++) {
		struct pollfd p = {tcpst_trace_fd(t), POLLIN, 0};
		poll(&p, 1, 20);
		assert_true(tcpst_trace_read(t, on_trace, col) >= 0);
	}
}

/* A real connection in a private namespace, watched through a tracefs
 * instance of the pool; the slot stays, given back, on close; sock_diag
 * shows TIME_WAIT. */
static void live_tracepoint_and_diag(void **state)
{
	struct tcpst_trace *t;
	struct collect col;
	char err[256] = "", filter[128], dir[256];
	struct stat st;
	int c;

	if (!privileged)
		skip();
	memset(&col, 0, sizeof col);
	c = bound_socket(&col.port);
	snprintf(filter, sizeof filter, "sport == %u || dport == %u", col.port, col.port);
	if (tcpst_trace_open(&t, filter, err, sizeof err) < 0)
		fail_msg("tcpst_trace_open: %s", err);
	snprintf(dir, sizeof dir, INSTANCES "%s0", pool);
	assert_string_equal(tcpst_trace_dir(t), dir);
	assert_int_equal(instance_locked(dir), 1);
	connect_and_close(c);
	read_until(t, &col, 5);
	assert_string_equal(col.text, "CLOSED>SYN_SENT SYN_SENT>ESTABLISHED ESTABLISHED>FIN_WAIT_1 "
				      "FIN_WAIT_1>FIN_WAIT_2 FIN_WAIT_2>CLOSED");
	{
		struct tcpst_trace_loss l;

		tcpst_trace_loss(t, &l);
		assert_int_equal(l.stats, 1);
		assert_int_equal(l.lost, 0);
		assert_int_equal(l.overrun, 0);
		assert_int_equal(l.unreadable, 0);
		assert_int_equal(l.uncounted, 0);
		assert_true(l.events >= 5);
		assert_true(l.ring_kib >= 128);
	}
	tcpst_trace_close(t);
	/* Kept for the next owner, and free. */
	assert_int_equal(stat(dir, &st), 0);
	assert_int_equal(instance_locked(dir), 0);
	/* The closed client sits in TIME_WAIT with the kernel's timer running. */
	col.n = 0;
	assert_true(tcpst_diag_dump(AF_INET, on_diag, &col, err, sizeof err) >= 1);
	assert_int_equal(col.n, 1);
}

/* The test knob holds reading back and overwrites the ring on every CPU
 * before the last read: the run's transitions are gone, the counters say
 * how many events were; the next owner of the slot starts from 0. */
static void a_flooded_ring_counts_what_it_lost(void **state)
{
	struct tcpst_trace *t;
	struct tcpst_trace_loss l;
	struct collect col;
	char err[256] = "", filter[128];
	int c;

	if (!privileged)
		skip();
	memset(&col, 0, sizeof col);
	c = bound_socket(&col.port);
	snprintf(filter, sizeof filter, "sport == %u || dport == %u", col.port, col.port);
	setenv("SOCKLAB_TRACE_TEST_FLOOD_KB", "1024", 1);
	if (tcpst_trace_open(&t, filter, err, sizeof err) < 0)
		fail_msg("tcpst_trace_open: %s", err);
	assert_int_equal(tcpst_trace_stalled(t), 1);
	connect_and_close(c);
	assert_int_equal(tcpst_trace_read(t, on_trace, &col), 0); /* held back */
	assert_true(tcpst_trace_read_last(t, on_trace, &col) >= 0);
	tcpst_trace_loss(t, &l);
	unsetenv("SOCKLAB_TRACE_TEST_FLOOD_KB");
	/* 1 MiB of ~100-byte markers a CPU over a ring of 131 KiB. */
	assert_true(l.overrun > 5000);
	assert_true(l.lost_lines > 0);
	assert_true(l.lost_lines <= l.overrun);
	assert_int_equal(l.lost, l.overrun + l.dropped + l.unreadable);
	assert_true(l.events >= (uint64_t)col.n);
	tcpst_trace_close(t);

	/* Invalid values are refused, naming the knob and its range. */
	setenv("SOCKLAB_TRACE_TEST_FLOOD_KB", "70000", 1);
	assert_int_equal(tcpst_trace_open(&t, filter, err, sizeof err), -EINVAL);
	assert_non_null(strstr(err, "SOCKLAB_TRACE_TEST_FLOOD_KB=\"70000\""));
	assert_non_null(strstr(err, "from 1 to 65536"));
	unsetenv("SOCKLAB_TRACE_TEST_FLOOD_KB");

	/* The same slot, next owner: its counters carry the overrun, the
	 * difference is 0. */
	if (tcpst_trace_open(&t, filter, err, sizeof err) < 0)
		fail_msg("tcpst_trace_open: %s", err);
	assert_int_equal(tcpst_trace_stalled(t), 0);
	assert_true(tcpst_trace_read_last(t, on_trace, &col) >= 0);
	tcpst_trace_loss(t, &l);
	assert_int_equal(l.stats, 1);
	assert_int_equal(l.lost, 0);
	tcpst_trace_close(t);
}

/* Entries a slot's ring holds now, over every CPU. */
static long ring_entries(const char *dir)
{
	char path[512], line[256];
	long n = 0;
	int cpu;

	for (cpu = 0; cpu < 4096; cpu++) {
		FILE *f;
		snprintf(path, sizeof path, "%s/per_cpu/cpu%d/stats", dir, cpu);
		f = fopen(path, "r");
		if (!f)
			break;
		while (fgets(line, sizeof line, f))
			if (!strncmp(line, "entries: ", 9))
				n += strtol(line + 9, NULL, 10);
		fclose(f);
	}
	return n;
}

/* A run killed while it owns a slot leaves its event enabled and its
 * transitions unread in the ring. The next owner of the slot, even asking
 * for the very same ports, is given none of them: only its own. */
static void a_killed_owners_events_never_reach_the_next(void **state)
{
	int attempt;

	if (!privileged)
		skip();
	for (attempt = 0; attempt < 3; attempt++) {
		struct tcpst_trace *t;
		struct collect col;
		char err[256] = "", filter[256], dir[256], path[512], enabled[8] = "";
		struct stat before, after;
		uint16_t old_port;
		int pp[2], status, c, fd;
		pid_t pid;

		assert_int_equal(pipe(pp), 0);
		pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			/* The run that is killed: it never reads, never closes. */
			uint16_t port;
			int cc = bound_socket(&port), i;
			struct tcpst_trace *ct;

			snprintf(filter, sizeof filter, "sport == %u || dport == %u", port, port);
			if (tcpst_trace_open(&ct, filter, err, sizeof err) < 0)
				_exit(2);
			connect_and_close(cc);
			for (i = 0; i < 100 && ring_entries(tcpst_trace_dir(ct)) < 5; i++)
				usleep(10000);
			if (write(pp[1], &port, sizeof port) != sizeof port)
				_exit(3);
			raise(SIGKILL);
		}
		close(pp[1]);
		assert_int_equal(read(pp[0], &old_port, sizeof old_port), (ssize_t)sizeof old_port);
		close(pp[0]);
		assert_int_equal(waitpid(pid, &status, 0), pid);
		assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

		snprintf(dir, sizeof dir, INSTANCES "%s0", pool);
		assert_int_equal(stat(dir, &before), 0);
		assert_int_equal(instance_locked(dir), 0); /* the kernel let go of it */
		assert_true(ring_entries(dir) >= 5);       /* the dead run's transitions */
		snprintf(path, sizeof path, "%s/events/sock/inet_sock_set_state/enable", dir);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		assert_true(fd >= 0);
		assert_int_equal(read(fd, enabled, 1), 1);
		close(fd);
		assert_string_equal(enabled, "1");

		memset(&col, 0, sizeof col);
		c = bound_socket(&col.port);
		col.other_port = old_port;
		snprintf(filter, sizeof filter,
			 "sport == %u || dport == %u || sport == %u || dport == %u", old_port,
			 old_port, col.port, col.port);
		if (tcpst_trace_open(&t, filter, err, sizeof err) < 0)
			fail_msg("tcpst_trace_open: %s", err);
		assert_int_equal(stat(tcpst_trace_dir(t), &after), 0);
		if (strcmp(tcpst_trace_dir(t), dir) || after.st_ino != before.st_ino) {
			/* A cleanup elsewhere removed the idle slot: not the
			 * reuse this test is about. Again. */
			tcpst_trace_close(t);
			close(c);
			continue;
		}
		connect_and_close(c);
		read_until(t, &col, 5);
		assert_string_equal(col.text,
				    "CLOSED>SYN_SENT SYN_SENT>ESTABLISHED ESTABLISHED>FIN_WAIT_1 "
				    "FIN_WAIT_1>FIN_WAIT_2 FIN_WAIT_2>CLOSED");
		/* Everything the pipe delivered was read: none of the dead run's. */
		assert_true(tcpst_trace_read(t, on_trace, &col) >= 0);
		assert_int_equal(col.other, 0);
		tcpst_trace_close(t);
		return;
	}
	fail_msg("the slot was removed under the test three times");
}

/* Runs at once beyond the 16 kept slots get slots of their own, removed when
 * they end; the kept ones stay for the next runs. */
static void slots_beyond_the_kept_ones_are_removed(void **state)
{
	struct tcpst_trace *t[TCPST_TRACE_POOL_KEEP + 1];
	char err[256] = "", dir[256];
	struct stat st;
	int i;

	if (!privileged)
		skip();
	for (i = 0; i <= TCPST_TRACE_POOL_KEEP; i++)
		if (tcpst_trace_open(&t[i], "sport == 1", err, sizeof err) < 0)
			fail_msg("tcpst_trace_open %d: %s", i, err);
	snprintf(dir, sizeof dir, INSTANCES "%s%d", pool, TCPST_TRACE_POOL_KEEP);
	assert_string_equal(tcpst_trace_dir(t[TCPST_TRACE_POOL_KEEP]), dir);
	assert_int_equal(count_instances(pool), TCPST_TRACE_POOL_KEEP + 1);
	for (i = 0; i <= TCPST_TRACE_POOL_KEEP; i++)
		tcpst_trace_close(t[i]);
	assert_int_equal(stat(dir, &st), -1);
	assert_int_equal(count_instances(pool), TCPST_TRACE_POOL_KEEP);
}

/* Cleanup: an instance of a build before the pool whose owner is gone, and
 * an idle slot beyond the kept ones (a killed run's), always; idle kept
 * slots only when asked for all; a slot in use never. */
static void cleanup_removes_only_idle_instances(void **state)
{
	const char *stale = INSTANCES "socklab-deadbeef-999999999-12345";
	struct tcpst_trace *t;
	char err[256] = "", beyond[256], kept[256], used[256];
	struct stat st;

	if (!privileged)
		skip();
	snprintf(beyond, sizeof beyond, INSTANCES "%s%d", pool, TCPST_TRACE_POOL_KEEP + 3);
	snprintf(kept, sizeof kept, INSTANCES "%s1", pool);
	if (mkdir(stale, 0700) < 0 || mkdir(beyond, 0700) < 0)
		fail_msg("mkdir: %s", strerror(errno));
	if (stat(kept, &st) < 0 && mkdir(kept, 0700) < 0)
		fail_msg("mkdir %s: %s", kept, strerror(errno));
	if (tcpst_trace_open(&t, "sport == 1", err, sizeof err) < 0)
		fail_msg("tcpst_trace_open: %s", err);
	snprintf(used, sizeof used, "%s", tcpst_trace_dir(t));
	assert_true(strcmp(used, kept) != 0);
	assert_true(tcpst_trace_cleanup(0) >= 2);
	assert_int_equal(stat(stale, &st), -1);
	assert_int_equal(stat(beyond, &st), -1);
	assert_int_equal(stat(kept, &st), 0);
	/* All: other idle slots on this machine go too, and are made again by
	 * the runs that need them. */
	assert_true(tcpst_trace_cleanup(1) >= 1);
	assert_int_equal(stat(kept, &st), -1);
	assert_int_equal(stat(used, &st), 0);
	tcpst_trace_close(t);
}

/* This binary's slots, removed at the end. */
static int remove_pool(void **state)
{
	DIR *d;
	struct dirent *de;
	char path[512];

	if (!privileged)
		return 0;
	d = opendir(INSTANCES);
	if (!d)
		return 0;
	while ((de = readdir(d)))
		if (!strncmp(de->d_name, pool, strlen(pool))) {
			snprintf(path, sizeof path, INSTANCES "%s", de->d_name);
			rmdir(path);
		}
	closedir(d);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(names),
		cmocka_unit_test(client_closes_three_segments),
		cmocka_unit_test(server_closes_four_segments),
		cmocka_unit_test(simultaneous_close_both_closing),
		cmocka_unit_test(refused_and_aborted),
		cmocka_unit_test(half_close_keeps_receiving),
		cmocka_unit_test(sequence_numbers_wrap),
		cmocka_unit_test(recorded_trace_pipe),
		cmocka_unit_test(ring_stats_and_lost_lines),
		cmocka_unit_test(live_tracepoint_and_diag),
		cmocka_unit_test(a_flooded_ring_counts_what_it_lost),
		cmocka_unit_test(a_killed_owners_events_never_reach_the_next),
		cmocka_unit_test(slots_beyond_the_kept_ones_are_removed),
		cmocka_unit_test(cleanup_removes_only_idle_instances),
	};
	char err[256];

	privileged = geteuid() == 0 && sandbox_netns_enter(err, sizeof err) == 0;
	if (!privileged)
		fprintf(stderr, "# live tracepoint tests skipped: they need root\n");
	snprintf(pool, sizeof pool, "socklab-slot-unit%ld-", (long)getpid());
	setenv("SOCKLAB_TRACE_POOL", pool, 1);
	return cmocka_run_group_tests(tests, NULL, remove_pool);
}
