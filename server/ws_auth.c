/* ws_auth.c: who may connect to the WebSocket server (Host, Origin, per-address and total limits, refused with an HTTP answer) and the instructor sign-in. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <jansson.h>
#include <libwebsockets.h>

#include "ws_int.h"

/* Seconds until bucket b (already refilled) has a token again. */
static int bucket_wait_s(const struct class_bucket *b, double rate)
{
	double need = 1.0 - b->tokens;

	return need <= 0 ? 1 : (int)(need / rate) + 1;
}

int ws_signin_may_try(struct ws_session *s, const char *tag)
{
	const struct serve_config *cfg = s->srv->cfg;
	int64_t now = ws_now_us();
	struct ws_addr *a = s->addr_counted ? ws_addr_find(&s->srv->addrs, s->addr) : NULL;
	char m[200];
	int wait = 0;
	json_t *err;

	/* Too many wrong secrets on this connection: refused until the
	 * lockout has passed, then the count starts again. */
	if (s->signin_locked_until && now >= s->signin_locked_until) {
		s->signin_locked_until = 0;
		s->signin_fails = 0;
	}
	if (s->signin_locked_until)
		wait = (int)((s->signin_locked_until - now + 999999) / 1000000);
	else if (!a)
		wait = cfg->signin_lockout_s;
	else if (!class_bucket_ready(&a->signin, WS_ADDR_SIGNIN_RATE, WS_ADDR_SIGNIN_BURST, now))
		wait = bucket_wait_s(&a->signin, WS_ADDR_SIGNIN_RATE);
	else if (!class_bucket_ready(&s->srv->signin, WS_SIGNIN_RATE, WS_SIGNIN_BURST, now))
		wait = bucket_wait_s(&s->srv->signin, WS_SIGNIN_RATE);
	if (!wait)
		return 1;
	http_count(s->srv->ctr, HTTP_C_SIGNIN_FAILURES, 1);
	snprintf(m, sizeof m,
		 "too many sign-in attempts; try again in %d s (after %d wrong ones a connection "
		 "waits %d s)",
		 wait, WS_SIGNIN_FAILS_MAX, cfg->signin_lockout_s);
	err = json_pack("{s:s, s:s, s:s, s:s, s:i, s:s?}", "type", "error", "code", "limit", "param",
			"secret", "message", m, "retry_after_s", wait, "tag", tag);
	ws_send_json(s, err);
	return 0;
}

void ws_signin_failed(struct ws_session *s)
{
	int64_t now = ws_now_us();
	struct ws_addr *a = s->addr_counted ? ws_addr_find(&s->srv->addrs, s->addr) : NULL;

	if (a)
		class_bucket_take(&a->signin, WS_ADDR_SIGNIN_RATE, WS_ADDR_SIGNIN_BURST, now);
	class_bucket_take(&s->srv->signin, WS_SIGNIN_RATE, WS_SIGNIN_BURST, now);
	if (++s->signin_fails >= WS_SIGNIN_FAILS_MAX)
		s->signin_locked_until = now + (int64_t)s->srv->cfg->signin_lockout_s * 1000000;
	http_count(s->srv->ctr, HTTP_C_SIGNIN_FAILURES, 1);
}

void ws_op_signin(struct ws_session *s, json_t *msg, const char *tag)
{
	const char *secret = s->srv->cfg->instructor_secret;
	const char *given = json_string_value(json_object_get(msg, "secret"));

	if (s->instructor) {
		ws_send_json(s, json_pack("{s:s, s:s, s:s?}", "type", "signin.accepted", "role",
				       "instructor", "tag", tag));
		return;
	}
	/* Failures drain the address's bucket (guessing from many connections
	 * of one client), a server-wide one (from many addresses) and lock the
	 * connection out for --signin-lockout seconds after WS_SIGNIN_FAILS_MAX.
	 * One address cannot empty the server-wide bucket (its own refills ten
	 * times slower), so it cannot lock out an instructor at another
	 * address. A refusal says how long to wait; after that the right
	 * secret is let in. */
	if (!ws_signin_may_try(s, tag))
		return;
	/* With no secret (a loopback-only server) whoever reaches it may
	 * teach; otherwise the secret must match, compared in constant time. */
	if (secret[0] && !(given && class_secret_equal(secret, given))) {
		ws_signin_failed(s);
		ws_send_error(s, "forbidden", "secret", "wrong instructor secret", tag, NULL);
		return;
	}
	s->signin_fails = 0;
	s->instructor = 1;
	ws_send_json(s, json_pack("{s:s, s:s, s:s?}", "type", "signin.accepted", "role", "instructor",
			       "tag", tag));
}

/*
 * Refuse a WebSocket upgrade with an HTTP answer (RFC 6455 4.2.2: any status
 * other than 101) whose JSON body says why, in the same shape as the HTTP
 * API's errors, instead of dropping the connection. Runs in
 * FILTER_PROTOCOL_CONNECTION, before anything was sent; returns -1, which
 * makes lws close the connection once the answer is written.
 */
static int refuse_upgrade(struct ws_server *srv, struct lws *wsi, unsigned status,
			  const char *code, const char *message)
{
	unsigned char buf[LWS_PRE + 1024];
	json_t *j = json_pack("{s:{s:s, s:s}}", "error", "code", code, "message", message);
	char *text = j ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII)
		       : NULL;
	int n = -1;

	json_decref(j);
	http_count(srv->ctr, HTTP_C_WS_REFUSED, 1);
	if (!text)
		return -1;
	/* Written whole here: lws would answer HTTP/1.0 at this point (it has
	 * not recorded the request's version yet), which clients refuse. */
	n = snprintf((char *)buf + LWS_PRE, sizeof buf - LWS_PRE,
		     "HTTP/1.1 %u %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
		     "Connection: close\r\nCache-Control: no-store\r\n\r\n%s",
		     status, status == HTTP_STATUS_FORBIDDEN ? "Forbidden" : "Service Unavailable",
		     strlen(text), text);
	if (n > 0 && (size_t)n < sizeof buf - LWS_PRE)
		lws_write(wsi, buf + LWS_PRE, (size_t)n, LWS_WRITE_HTTP_FINAL);
	free(text);
	return -1;
}

/* The admission checks of an upgrade, in FILTER_PROTOCOL_CONNECTION. */
int ws_admit(struct ws_server *srv, struct lws *wsi)
{
	char origin[300], host[300], m[160];
	const char *h = ws_hdr(wsi, WSI_TOKEN_HOST, host, sizeof host);
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	unsigned char key[16];
	struct ws_addr *a;

	if (!config_host_allowed(srv->cfg, h)) {
		http_count(srv->ctr, HTTP_C_BAD_HOST, 1);
		return refuse_upgrade(srv, wsi, HTTP_STATUS_FORBIDDEN, "bad_host",
				      "this server does not answer to that Host name; use its "
				      "address or a name given with --origin or --public-ws-url");
	}
	/* Reject cross-site pages here: lws does not check Origin. */
	if (!config_origin_allowed(srv->cfg, srv->http_port,
				   ws_hdr(wsi, WSI_TOKEN_ORIGIN, origin, sizeof origin), h))
		return refuse_upgrade(srv, wsi, HTTP_STATUS_FORBIDDEN, "bad_origin",
				      "pages from this Origin may not connect; see --origin");
	if (srv->stopping)
		return refuse_upgrade(srv, wsi, HTTP_STATUS_SERVICE_UNAVAILABLE, "stopping",
				      "the server is shutting down");
	if (srv->n_sessions >= srv->n_slots) {
		snprintf(m, sizeof m, "the server is full: %zu connections at once (--max-conns)",
			 srv->n_slots);
		return refuse_upgrade(srv, wsi, HTTP_STATUS_SERVICE_UNAVAILABLE, "server_full", m);
	}
	if (getpeername(lws_get_socket_fd(wsi), (struct sockaddr *)&ss, &sl) < 0 ||
	    ws_addr_key((struct sockaddr *)&ss, sl, key) < 0)
		return refuse_upgrade(srv, wsi, HTTP_STATUS_SERVICE_UNAVAILABLE, "internal",
				      "cannot tell the client's address");
	a = ws_addr_find(&srv->addrs, key);
	if (a && a->sessions >= srv->cfg->max_conns_per_addr) {
		snprintf(m, sizeof m,
			 "too many connections from your address: at most %d at once "
			 "(--max-conns-per-addr)",
			 srv->cfg->max_conns_per_addr);
		return refuse_upgrade(srv, wsi, HTTP_STATUS_SERVICE_UNAVAILABLE,
				      "too_many_connections", m);
	}
	return 0;
}

/* The session s has just been established: count it for its address. */
int ws_session_admit(struct ws_server *srv, struct ws_session *s)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	struct ws_addr *a;

	if (getpeername(lws_get_socket_fd(s->wsi), (struct sockaddr *)&ss, &sl) < 0 ||
	    ws_addr_key((struct sockaddr *)&ss, sl, s->addr) < 0)
		return -1;
	a = ws_addr_get(&srv->addrs, s->addr, ws_now_us());
	if (!a)
		return -1;
	a->sessions++;
	s->addr_counted = 1;
	return 0;
}
