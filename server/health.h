/* health.h: `socklab health [URL]`: ask a server's /api/health, for container health checks. */
#ifndef SOCKLAB_HEALTH_H
#define SOCKLAB_HEALTH_H

#include <stddef.h>

/* A parsed http://HOST[:PORT][/PATH] with HOST an IP literal (no name is
 * looked up: a health check must not depend on DNS). */
struct health_url {
	char host[64];  /* the address, without brackets */
	int port;       /* 80 when absent */
	char path[256]; /* "/" when absent */
};

/* Parse url. 0, or -EINVAL with a message in err. */
int health_parse_url(const char *url, struct health_url *u, char *err, size_t errlen);

/* The URL a health check uses without an argument: /api/health of the server
 * these SOCKLAB_* variables configure (env may be NULL for none; a wildcard
 * listen address becomes its loopback). Writes into out. */
void health_default_url(const char *(*env)(const char *name), char *out, size_t outlen);

/* Judge a complete HTTP response: 0 when the status is 200 and the body is a
 * JSON object with "status":"ok"; otherwise -EPROTO and the reason in err. */
int health_check_response(const char *resp, size_t len, char *err, size_t errlen);

/* The subcommand: exit status 0 healthy, 1 not, 2 bad usage. */
int health_main(int argc, char **argv);

#endif
