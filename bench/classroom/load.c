/* load.c: bench/classroom's load client: N WebSocket viewers on one epoll loop, per-event delivery latency.
 *
 * usage: load PORT N [CLASS_CODE]
 * Opens N connections to 127.0.0.1:PORT (at most 256 handshakes at once),
 * asks for subprotocol socklab.v1, and with a class code sends each one
 * {"op":"class.join",...}. When every viewer is ready (joined, or upgraded
 * when there is no code) it prints "ready N" and then counts every text
 * message carrying "ts" (CLOCK_MONOTONIC ns at emission, see emit.c): the
 * latency now - ts per viewer per event, seq gaps per viewer and resync
 * notices. It ends when every viewer has seen run.end or when stdin closes
 * or after BENCH_TIMEOUT seconds, and prints one JSON line of figures (and,
 * with BENCH_LAT_OUT=FILE, writes every latency to FILE for bench/nats).
 * Server frames are read with a small state machine per connection; client
 * frames are masked as RFC 6455 section 5.3 requires.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BUF 65536
#define MAX_INFLIGHT 256

enum { C_CONNECTING, C_HANDSHAKE, C_OPEN, C_DEAD };

struct conn {
	int fd, state;
	int joined, ended;
	long long next_seq;
	size_t len;
	unsigned char *buf;
};

static struct conn *conns;
static int n_conns, port, epfd;
static const char *code;
static int n_ready, n_ended, n_dead, inflight, next_to_open;
static uint32_t *lat; /* microseconds */
static size_t n_lat, cap_lat;
static long long gaps, resyncs, msgs, bytes_in;

static long long mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void die(const char *what)
{
	perror(what);
	exit(2);
}

static void kill_conn(struct conn *c)
{
	if (c->state == C_DEAD)
		return;
	if (c->state == C_CONNECTING || c->state == C_HANDSHAKE)
		inflight--;
	c->state = C_DEAD;
	close(c->fd);
	free(c->buf);
	c->buf = NULL;
	n_dead++;
}

/* Write all of a small message (handshake, one frame); the socket buffer is
 * empty at this point in practice, so a short write means a dead peer. */
static int send_all(struct conn *c, const void *p, size_t n)
{
	ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);

	return w == (ssize_t)n ? 0 : -1;
}

static int send_frame(struct conn *c, int opcode, const char *payload, size_t n)
{
	unsigned char f[512];
	unsigned char mask[4] = {0x12, 0x34, 0x56, 0x78};
	size_t i, h = 0;

	if (n > sizeof f - 14)
		return -1;
	f[h++] = (unsigned char)(0x80 | opcode);
	if (n < 126) {
		f[h++] = (unsigned char)(0x80 | n);
	} else {
		f[h++] = 0x80 | 126;
		f[h++] = (unsigned char)(n >> 8);
		f[h++] = (unsigned char)n;
	}
	memcpy(f + h, mask, 4);
	h += 4;
	for (i = 0; i < n; i++)
		f[h + i] = (unsigned char)payload[i] ^ mask[i % 4];
	return send_all(c, f, h + n);
}

static void open_next(void)
{
	while (inflight < MAX_INFLIGHT && next_to_open < n_conns) {
		struct conn *c = &conns[next_to_open];
		struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
		struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN, .data.u32 = (uint32_t)next_to_open};

		next_to_open++;
		a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (c->fd < 0)
			die("socket");
		c->state = C_CONNECTING;
		c->next_seq = -1;
		inflight++;
		if (connect(c->fd, (struct sockaddr *)&a, sizeof a) < 0 && errno != EINPROGRESS) {
			kill_conn(c);
			continue;
		}
		if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0)
			die("epoll_ctl");
	}
}

static void ready_one(struct conn *c)
{
	c->joined = 1;
	n_ready++;
	inflight--;
	open_next();
}

/* One event of a message: its "ts" at ts, its "seq" the last one before it. */
static void on_event_ts(struct conn *c, const char *seg, const char *ts, long long now)
{
	const char *sq = NULL, *q = seg;
	long long t = strtoll(ts + 5, NULL, 10), seq;

	while ((q = memmem(q, (size_t)(ts - q), "\"seq\":", 6)) != NULL)
		sq = q++;
	if (n_lat == cap_lat) {
		cap_lat = cap_lat ? cap_lat * 2 : 1 << 20;
		lat = realloc(lat, cap_lat * sizeof *lat);
		if (!lat)
			die("realloc");
	}
	lat[n_lat++] = (uint32_t)((now - t) / 1000 > 0xffffffffLL ? 0xffffffffLL : (now - t) / 1000);
	if (sq) {
		seq = strtoll(sq + 6, NULL, 10);
		if (c->next_seq >= 0 && seq != c->next_seq)
			gaps += seq > c->next_seq ? seq - c->next_seq : 1;
		c->next_seq = seq + 1;
	}
}

/* A text message: one event, or (a server batching for a late reader) a
 * JSON array of them. */
static void on_text(struct conn *c, const char *p, size_t n)
{
	const char *end = p + n, *seg = p, *ts;
	long long now = mono_ns();

	msgs++;
	if (!c->joined && code && memmem(p, n, "\"class.joined\"", 14)) {
		ready_one(c);
		return;
	}
	if (memmem(p, n, "\"class.resync\"", 14)) {
		resyncs++;
		c->next_seq = -1;
	}
	while ((ts = memmem(seg, (size_t)(end - seg), "\"ts\":", 5)) != NULL) {
		on_event_ts(c, seg, ts, now);
		seg = ts + 5;
	}
	if (memmem(p, n, "\"type\":\"run.end\"", 16) && !c->ended) {
		c->ended = 1;
		n_ended++;
	}
}

/* Parse complete frames in c->buf. */
static void parse(struct conn *c)
{
	size_t off = 0;

	for (;;) {
		unsigned char *b = c->buf + off;
		size_t have = c->len - off, h = 2;
		uint64_t n;
		int op;

		if (have < 2)
			break;
		op = b[0] & 0x0f;
		n = b[1] & 0x7f;
		if (n == 126) {
			if (have < 4)
				break;
			n = (uint64_t)b[2] << 8 | b[3];
			h = 4;
		} else if (n == 127) {
			int i;
			if (have < 10)
				break;
			for (n = 0, i = 2; i < 10; i++)
				n = n << 8 | b[i];
			h = 10;
		}
		if (h + n > BUF) {
			kill_conn(c);
			return;
		}
		if (have < h + n)
			break;
		if (op == 1)
			on_text(c, (const char *)b + h, (size_t)n);
		else if (op == 9)
			send_frame(c, 10, (const char *)b + h, (size_t)n < 125 ? (size_t)n : 0);
		else if (op == 8) {
			kill_conn(c);
			return;
		}
		off += h + (size_t)n;
	}
	memmove(c->buf, c->buf + off, c->len - off);
	c->len -= off;
}

static void on_event(struct conn *c, uint32_t events)
{
	char req[512], join[256];
	int n;

	if (c->state == C_DEAD)
		return;
	if (c->state == C_CONNECTING) {
		int err = 0;
		socklen_t el = sizeof err;
		struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)(c - conns)};
		if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
			return;
		getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
		if (err) {
			kill_conn(c);
			open_next();
			return;
		}
		n = snprintf(req, sizeof req,
			     "GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
			     "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
			     "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: socklab.v1\r\n\r\n",
			     port);
		c->buf = malloc(BUF);
		if (!c->buf)
			die("malloc");
		if (send_all(c, req, (size_t)n) < 0) {
			kill_conn(c);
			open_next();
			return;
		}
		c->state = C_HANDSHAKE;
		epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
		return;
	}
	for (;;) {
		size_t room = BUF - c->len;
		ssize_t r = recv(c->fd, c->buf + c->len, room, 0);
		if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
			kill_conn(c);
			open_next();
			return;
		}
		if (r < 0)
			return;
		bytes_in += r;
		c->len += (size_t)r;
		if (c->state == C_HANDSHAKE) {
			unsigned char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
			size_t hl;
			if (!end)
				continue;
			if (memcmp(c->buf, "HTTP/1.1 101", 12) != 0) {
				kill_conn(c);
				open_next();
				return;
			}
			hl = (size_t)(end - c->buf) + 4;
			memmove(c->buf, c->buf + hl, c->len - hl);
			c->len -= hl;
			c->state = C_OPEN;
			if (code) {
				n = snprintf(join, sizeof join,
					     "{\"op\":\"class.join\",\"class\":\"%s\",\"name\":\"v%ld\"}",
					     code, (long)(c - conns));
				if (send_frame(c, 1, join, (size_t)n) < 0) {
					kill_conn(c);
					open_next();
					return;
				}
			} else {
				ready_one(c);
			}
		}
		parse(c);
		if (c->state == C_DEAD)
			return;
		/* A short read took all there was: epoll (level-triggered) says
		 * when more comes, so no second recv() only to hear EAGAIN. */
		if ((size_t)r < room)
			return;
	}
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

static double pct(double p)
{
	size_t i;

	if (!n_lat)
		return -1;
	i = (size_t)(p * (double)(n_lat - 1));
	return lat[i] / 1000.0;
}

int main(int argc, char **argv)
{
	struct epoll_event evs[512];
	struct rlimit rl;
	struct rusage ru;
	long long deadline, t_ready = 0;
	int announced = 0, stdin_open = 1, i, timeout_s;

	if (argc < 3) {
		fprintf(stderr, "usage: load PORT N [CLASS_CODE]\n");
		return 2;
	}
	port = (int)strtol(argv[1], NULL, 10);
	n_conns = (int)strtol(argv[2], NULL, 10);
	code = argc > 3 ? argv[3] : NULL;
	timeout_s = getenv("BENCH_TIMEOUT") ? (int)strtol(getenv("BENCH_TIMEOUT"), NULL, 10) : 120;
	if (port <= 0 || port > 65535 || n_conns <= 0) {
		fprintf(stderr, "load: bad PORT or N\n");
		return 2;
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	conns = calloc((size_t)n_conns, sizeof *conns);
	epfd = epoll_create1(EPOLL_CLOEXEC);
	if (!conns || epfd < 0)
		die("setup");
	{
		struct epoll_event ev = {.events = EPOLLIN, .data.u32 = 0xffffffffu};
		fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
		if (epoll_ctl(epfd, EPOLL_CTL_ADD, 0, &ev) < 0)
			stdin_open = 0;
	}
	open_next();
	deadline = mono_ns() + (long long)timeout_s * 1000000000LL;
	for (;;) {
		int n = epoll_wait(epfd, evs, 512, 200);
		for (i = 0; i < n; i++) {
			if (evs[i].data.u32 == 0xffffffffu) {
				char b[64];
				ssize_t r = read(0, b, sizeof b);
				if (r == 0 || (r < 0 && errno != EAGAIN)) {
					epoll_ctl(epfd, EPOLL_CTL_DEL, 0, NULL);
					stdin_open = 0;
				}
				continue;
			}
			on_event(&conns[evs[i].data.u32], evs[i].events);
		}
		if (!announced && n_ready + n_dead >= n_conns && next_to_open >= n_conns) {
			announced = 1;
			t_ready = mono_ns();
			printf("ready %d\n", n_ready);
			fflush(stdout);
		}
		if (announced && n_ready > 0 && n_ended >= n_ready)
			break;
		if (!stdin_open && announced && n_lat == 0)
			break;
		if (mono_ns() > deadline)
			break;
	}
	getrusage(RUSAGE_SELF, &ru);
	qsort(lat, n_lat, sizeof *lat, cmp_u32);
	/* bench/nats merges several clients' latencies: the raw values
	 * (uint32 microseconds, sorted) into the file BENCH_LAT_OUT names. */
	if (getenv("BENCH_LAT_OUT")) {
		FILE *f = fopen(getenv("BENCH_LAT_OUT"), "wb");
		if (f) {
			if (n_lat)
				fwrite(lat, sizeof *lat, n_lat, f);
			fclose(f);
		}
	}
	printf("{\"viewers\":%d,\"dead\":%d,\"ended\":%d,\"latencies\":%zu,\"messages\":%lld,"
	       "\"bytes\":%lld,\"gaps\":%lld,\"resyncs\":%lld,\"p50_ms\":%.3f,\"p95_ms\":%.3f,"
	       "\"p99_ms\":%.3f,\"max_ms\":%.3f,\"client_cpu_s\":%.3f,\"measure_s\":%.3f}\n",
	       n_ready, n_dead, n_ended, n_lat, msgs, bytes_in, gaps, resyncs, pct(0.50), pct(0.95),
	       pct(0.99), n_lat ? lat[n_lat - 1] / 1000.0 : -1,
	       (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
		       ru.ru_stime.tv_usec / 1e6,
	       t_ready ? (mono_ns() - t_ready) / 1e9 : 0.0);
	return 0;
}
