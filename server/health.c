/* health.c: `socklab health [URL]`: ask a server's /api/health, for container health checks. */
#include "health.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "config.h"

/* The whole check, connect to last byte, must finish within this. */
#define HEALTH_TIMEOUT_MS 5000
/* The largest answer read; /api/health is a few hundred bytes. */
#define HEALTH_MAX_RESPONSE 65536

static const char health_usage[] =
	"usage: socklab health [URL]\n"
	"\n"
	"Ask a socklab server whether it is healthy (GET URL, default /api/health of the\n"
	"server the SOCKLAB_* variables configure, e.g. http://127.0.0.1:8080/api/health).\n"
	"URL is http://ADDRESS[:PORT][/PATH] with an IPv4 or [IPv6] address. Exit status:\n"
	"0 healthy, 1 not (the reason is printed), 2 bad usage. Gives up after 5 s.\n";

int health_parse_url(const char *url, struct health_url *u, char *err, size_t errlen)
{
	const char *p, *host_end, *path;
	unsigned char buf[16];
	size_t hlen;
	long port = 80;

	memset(u, 0, sizeof *u);
	if (strncmp(url, "http://", 7) != 0)
		goto bad;
	p = url + 7;
	if (*p == '[') {
		host_end = strchr(p, ']');
		if (!host_end)
			goto bad;
		hlen = (size_t)(host_end - p - 1);
		if (hlen == 0 || hlen >= sizeof u->host)
			goto bad;
		memcpy(u->host, p + 1, hlen);
		p = host_end + 1;
		if (inet_pton(AF_INET6, u->host, buf) != 1)
			goto bad;
	} else {
		hlen = strcspn(p, ":/");
		if (hlen == 0 || hlen >= sizeof u->host)
			goto bad;
		memcpy(u->host, p, hlen);
		p += hlen;
		if (inet_pton(AF_INET, u->host, buf) != 1)
			goto bad;
	}
	if (*p == ':') {
		char *end;
		if (p[1] < '0' || p[1] > '9')
			goto bad;
		errno = 0;
		port = strtol(p + 1, &end, 10);
		if (errno || port < 1 || port > 65535 || (*end && *end != '/'))
			goto bad;
		p = end;
	}
	path = *p ? p : "/";
	if (*path != '/' || strlen(path) >= sizeof u->path)
		goto bad;
	for (p = path; *p; p++)
		if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
			goto bad;
	snprintf(u->path, sizeof u->path, "%s", path);
	u->port = (int)port;
	return 0;
bad:
	snprintf(err, errlen,
		 "URL must be http://ADDRESS[:PORT][/PATH] with an IPv4 or [IPv6] address and a "
		 "port from 1 to 65535 (got \"%.100s\")",
		 url);
	return -EINVAL;
}

void health_default_url(const char *(*env)(const char *name), char *out, size_t outlen)
{
	const char *listen = env ? env("SOCKLAB_LISTEN") : NULL;
	const char *port = env ? env("SOCKLAB_HTTP_PORT") : NULL;
	char host[CONFIG_ADDR_MAX + 2];

	if (!listen || !*listen)
		listen = "127.0.0.1";
	/* A wildcard listener is reachable on its loopback. */
	if (config_is_wildcard(listen))
		listen = strchr(listen, ':') ? "::1" : "127.0.0.1";
	config_url_host(listen, host, sizeof host);
	if (!port || !*port)
		port = "8080";
	snprintf(out, outlen, "http://%s:%s/api/health", host, port);
}

int health_check_response(const char *resp, size_t len, char *err, size_t errlen)
{
	const char *body = NULL, *eol;
	json_t *j, *st;
	json_error_t je;
	size_t i, line_len;
	int ok;

	eol = memchr(resp, '\n', len);
	line_len = eol ? (size_t)(eol - resp) : len;
	if (line_len > 0 && resp[line_len - 1] == '\r')
		line_len--;
	if (line_len < 12 || strncmp(resp, "HTTP/1.", 7) != 0 || resp[8] != ' ') {
		snprintf(err, errlen, "not an HTTP response");
		return -EPROTO;
	}
	if (strncmp(resp + 9, "200", 3) != 0) {
		snprintf(err, errlen, "answered %.*s", (int)(line_len < 80 ? line_len : 80), resp);
		return -EPROTO;
	}
	for (i = 0; i + 3 < len; i++) {
		if (memcmp(resp + i, "\r\n\r\n", 4) == 0) {
			body = resp + i + 4;
			break;
		}
	}
	if (!body) {
		snprintf(err, errlen, "the response has no body");
		return -EPROTO;
	}
	j = json_loadb(body, len - (size_t)(body - resp), 0, &je);
	st = json_object_get(j, "status");
	ok = json_is_string(st) && strcmp(json_string_value(st), "ok") == 0;
	if (!ok)
		snprintf(err, errlen, "the body is not {\"status\":\"ok\",...}");
	json_decref(j);
	return ok ? 0 : -EPROTO;
}

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait for events on fd until the deadline. 1 ready, 0 timed out, -errno. */
static int wait_fd(int fd, short events, long long deadline)
{
	struct pollfd p = {.fd = fd, .events = events};
	int n;

	for (;;) {
		long long left = deadline - now_ms();
		if (left <= 0)
			return 0;
		n = poll(&p, 1, (int)left);
		if (n > 0)
			return 1;
		if (n < 0 && errno != EINTR)
			return -errno;
	}
}

/* GET u->path; the whole response (until the server closes) into buf. */
static int fetch(const struct health_url *u, char *buf, size_t cap, size_t *len, char *err,
		 size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t slen;
	char req[512], hosthdr[80];
	long long deadline = now_ms() + HEALTH_TIMEOUT_MS;
	int fd = -1, rc = 0, n, soerr = 0, v6 = strchr(u->host, ':') != NULL;
	socklen_t elen = sizeof soerr;
	size_t off = 0;

	memset(&ss, 0, sizeof ss);
	if (v6) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
		a->sin6_family = AF_INET6;
		a->sin6_port = htons((uint16_t)u->port);
		inet_pton(AF_INET6, u->host, &a->sin6_addr);
		slen = sizeof *a;
	} else {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;
		a->sin_family = AF_INET;
		a->sin_port = htons((uint16_t)u->port);
		inet_pton(AF_INET, u->host, &a->sin_addr);
		slen = sizeof *a;
	}
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "socket: %s", strerror(errno));
		goto out;
	}
	if (connect(fd, (struct sockaddr *)&ss, slen) < 0) {
		if (errno != EINPROGRESS) {
			rc = -errno;
			goto conn_failed;
		}
		rc = wait_fd(fd, POLLOUT, deadline);
		if (rc == 0)
			rc = -ETIMEDOUT;
		if (rc < 0)
			goto conn_failed;
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &elen) < 0)
			soerr = errno;
		if (soerr) {
			rc = -soerr;
			goto conn_failed;
		}
	}
	snprintf(hosthdr, sizeof hosthdr, v6 ? "[%s]:%d" : "%s:%d", u->host, u->port);
	n = snprintf(req, sizeof req,
		     "GET %s HTTP/1.0\r\nHost: %s\r\nUser-Agent: socklab-health\r\n"
		     "Connection: close\r\n\r\n",
		     u->path, hosthdr);
	/* The request is far smaller than any socket buffer: one send. */
	if (send(fd, req, (size_t)n, MSG_NOSIGNAL) != n) {
		rc = -EIO;
		snprintf(err, errlen, "could not send the request");
		goto out;
	}
	for (;;) {
		ssize_t got;
		rc = wait_fd(fd, POLLIN, deadline);
		if (rc == 0) {
			rc = -ETIMEDOUT;
			snprintf(err, errlen, "no complete answer within %d ms", HEALTH_TIMEOUT_MS);
			goto out;
		}
		if (rc < 0) {
			snprintf(err, errlen, "poll: %s", strerror(-rc));
			goto out;
		}
		if (off == cap) {
			rc = -E2BIG;
			snprintf(err, errlen, "the answer is longer than %zu bytes", cap);
			goto out;
		}
		got = recv(fd, buf + off, cap - off, 0);
		if (got == 0)
			break;
		if (got < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			rc = -errno;
			snprintf(err, errlen, "recv: %s", strerror(errno));
			goto out;
		}
		off += (size_t)got;
	}
	*len = off;
	rc = 0;
	goto out;
conn_failed:
	snprintf(err, errlen, "cannot connect to %s:%d: %s", u->host, u->port, strerror(-rc));
out:
	if (fd >= 0)
		close(fd);
	return rc;
}

static const char *env_lookup(const char *name)
{
	return getenv(name);
}

int health_main(int argc, char **argv)
{
	struct health_url u;
	char url[400], err[300];
	char *buf;
	size_t len = 0;
	int rc;

	if (argc > 2) {
		fputs(health_usage, stderr);
		return 2;
	}
	if (argc == 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
		fputs(health_usage, stdout);
		return 0;
	}
	if (argc == 2)
		snprintf(url, sizeof url, "%s", argv[1]);
	else
		health_default_url(env_lookup, url, sizeof url);
	if (health_parse_url(url, &u, err, sizeof err) < 0) {
		fprintf(stderr, "socklab health: %s\n", err);
		return 2;
	}
	buf = malloc(HEALTH_MAX_RESPONSE);
	if (!buf) {
		fprintf(stderr, "socklab health: out of memory\n");
		return 1;
	}
	rc = fetch(&u, buf, HEALTH_MAX_RESPONSE, &len, err, sizeof err);
	if (rc == 0)
		rc = health_check_response(buf, len, err, sizeof err);
	free(buf);
	if (rc < 0) {
		printf("unhealthy: %s: %s\n", url, err);
		return 1;
	}
	printf("healthy: %s\n", url);
	return 0;
}
