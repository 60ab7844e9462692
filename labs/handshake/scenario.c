/* scenario.c: the handshake lab's two programs (server and client), played step by step through the traced socket calls. */
#include <errno.h>
#include <linux/sockios.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "hs.h"
#include "net/net.h"
#include "sock.h"

#define FILL_MIN 8192 /* simultaneous: bytes that overflow the server's window */
#define SMALL_RCVBUF 4096
#define STEP_TIMEOUT_MS HS_STEP_TIMEOUT_MS

/* Without the tracepoint, TCP_INFO samples the descriptors the lab holds
 * (the observer ignores this when the tracepoint runs). */
static void poll_tcp_info(struct hs_run *r)
{
	int side;

	for (side = SIDE_CLIENT; side <= SIDE_SERVER; side++)
		obs_tcp_info(r->obs, side, r->fds[side]);
}

static const struct lsock_who W_SERVER = {"server", 1};
static const struct lsock_who W_CLIENT = {"client", 1};
static const struct lsock_who W_LISTENER = {"server", 0};

/* A payload of n bytes of readable text. */
static char *payload(size_t n, const char *text)
{
	char *b = malloc(n ? n : 1);
	size_t i, tl = strlen(text);

	if (!b)
		return NULL;
	for (i = 0; i < n; i++)
		b[i] = text[i % tl];
	return b;
}

/* recv() until n bytes arrived; the byte count, or negative. */
static ssize_t recv_n(struct hs_run *r, struct lsock_who w, int fd, size_t n)
{
	char *buf = malloc(n ? n : 1);
	size_t have = 0;
	ssize_t rc = 0;

	if (!buf)
		return -ENOMEM;
	while (have < n) {
		rc = lsock_recv(r->ctx, w, fd, buf + have, n - have, STEP_TIMEOUT_MS);
		if (rc <= 0)
			break;
		have += (size_t)rc;
	}
	free(buf);
	return rc < 0 ? rc : (ssize_t)have;
}

/* recv() until it returns 0 (the peer's FIN): 0, or negative. Data still
 * arriving before the FIN is read too. */
static ssize_t recv_eof(struct hs_run *r, struct lsock_who w, int fd)
{
	char buf[16384];
	int i;

	for (i = 0; i < 1024; i++) {
		ssize_t n = lsock_recv(r->ctx, w, fd, buf, sizeof buf, STEP_TIMEOUT_MS);
		if (n <= 0)
			return n;
	}
	return -EPROTO;
}

static void closefd(struct hs_run *r, struct lsock_who w, int side)
{
	if (r->fds[side] < 0)
		return;
	lsock_close(r->ctx, w, r->fds[side]);
	r->fds[side] = -1;
	poll_tcp_info(r);
}

static int close_delay(struct hs_run *r)
{
	return r->close_delay_ms ? lab_sleep_ms(r->ctx, r->close_delay_ms) : 0;
}



/* What the scenario will show (the texts are in web/i18n). */
void hs_scenario_note(struct hs_run *r)
{
	struct ev_emitter *em = r->ctx->em;
	json_t *p = json_pack("{s:s}", "scenario", hs_scenario_choices[r->sc]);

	switch (r->sc) {
	case SC_CLIENT_CLOSES:
		ev_note(em, "handshake.scenario.client_closes", p, NULL);
		break;
	case SC_SERVER_CLOSES:
		ev_note(em, "handshake.scenario.server_closes", p, NULL);
		break;
	case SC_SIMULTANEOUS:
		if (r->net)
			ev_note(em, "handshake.scenario.simultaneous_wire", p, NULL);
		else
			ev_note(em, "handshake.scenario.simultaneous", p, NULL);
		break;
	case SC_HALF_CLOSE:
		ev_note(em, "handshake.scenario.half_close", p, NULL);
		break;
	case SC_REFUSED:
		ev_note(em, "handshake.scenario.refused", p, NULL);
		break;
	case SC_ABORT:
		ev_note(em, "handshake.scenario.abort", p, NULL);
		break;
	default:
		ev_note(em, "handshake.scenario.data_close", p, NULL);
		break;
	}
}

/* Keep the client sending until some of its data cannot leave (the server's
 * window is full): its FIN will then wait behind that data. */
static int fill_window(struct hs_run *r, int cfd)
{
	char *chunk = payload(4096, "window ");
	size_t sent = 0;
	int rc = 0, unsent = 0;

	if (!chunk)
		return -ENOMEM;
	while (sent < 256 * 1024) {
		ssize_t n = lsock_send(r->ctx, W_CLIENT, cfd, chunk, 4096, STEP_TIMEOUT_MS);
		if (n < 0) {
			rc = (int)n;
			break;
		}
		sent += (size_t)n;
		if (ioctl(cfd, SIOCOUTQNSD, &unsent) == 0 && unsent > 0 && sent >= FILL_MIN)
			break;
	}
	free(chunk);
	if (rc == 0)
		ev_emit(r->ctx->em, "metric",
			json_pack("{s:s, s:s, s:i, s:s}", "name", "unsent_bytes", "who", "client",
				  "value", unsent, "unit", "bytes"));
	return rc;
}

static int fail_step(struct hs_run *r, const char *what, int rc)
{
	char msg[256];

	if (rc == -ECANCELED)
		return rc;
	snprintf(msg, sizeof msg, "%s failed unexpectedly: %s (see the call above)", what,
		 strerror(rc < 0 ? -rc : EIO));
	ev_error(r->ctx->em, "lab_failed", NULL, msg);
	return rc < 0 ? rc : -EIO;
}

int hs_run_scenario(struct hs_run *r)
{
	struct lab_ctx *ctx = r->ctx;
	char *data = NULL, *reply = NULL;
	int rc = 0;
	ssize_t n;

	hs_scenario_note(r);
	data = payload(r->data, "hello, server! ");
	reply = payload(r->reply, "hello, client! ");
	if (!data || !reply) {
		rc = -ENOMEM;
		goto out;
	}
	/* A socket belongs to the namespace (host) where it is made, whichever
	 * thread uses it later: make each on its own host. */
	if (r->sc != SC_REFUSED) {
		int lfd;

		if ((rc = net_enter(r->net, NET_SERVER)) < 0) {
			rc = fail_step(r, "entering the server's host", rc);
			goto out;
		}
		lfd = lsock_socket(ctx, W_LISTENER, AF_INET, SOCK_STREAM);
		if (lfd < 0) {
			rc = fail_step(r, "socket()", lfd);
			goto out;
		}
		r->fds[SIDE_LISTENER] = lfd;
		lsock_setsockopt_int(ctx, W_LISTENER, lfd, SOL_SOCKET, SO_REUSEADDR, 1);
		if (r->sc == SC_SIMULTANEOUS)
			lsock_setsockopt_int(ctx, W_LISTENER, lfd, SOL_SOCKET, SO_RCVBUF, SMALL_RCVBUF);
		rc = lsock_bind(ctx, W_LISTENER, lfd, (struct sockaddr *)&r->srv, sizeof r->srv);
		if (rc == 0)
			rc = lsock_listen(ctx, W_LISTENER, lfd, 1);
		if (rc < 0) {
			rc = fail_step(r, "the server's bind()/listen()", rc);
			goto out;
		}
	}
	if ((rc = net_enter(r->net, NET_CLIENT)) < 0) {
		rc = fail_step(r, "entering the client's host", rc);
		goto out;
	}
	r->fds[SIDE_CLIENT] = lsock_socket(ctx, W_CLIENT, AF_INET, SOCK_STREAM);
	if (r->fds[SIDE_CLIENT] < 0) {
		rc = fail_step(r, "socket()", r->fds[SIDE_CLIENT]);
		goto out;
	}
	/* A fixed local address and port: the tracepoint reports the client's
	 * SYN_SENT with its port only when the socket was bound before connect. */
	rc = lsock_bind(ctx, W_CLIENT, r->fds[SIDE_CLIENT], (struct sockaddr *)&r->cli,
			sizeof r->cli);
	if (rc < 0) {
		rc = fail_step(r, "the client's bind()", rc);
		goto out;
	}
	rc = lsock_connect(ctx, W_CLIENT, r->fds[SIDE_CLIENT], (struct sockaddr *)&r->srv,
			   sizeof r->srv, STEP_TIMEOUT_MS);
	poll_tcp_info(r);
	if (r->sc == SC_REFUSED) {
		if (rc != -ECONNREFUSED) {
			rc = fail_step(r, "connect() to a port nobody listens on", rc ? rc : -EISCONN);
			goto out;
		}
		rc = 0;
		closefd(r, W_CLIENT, SIDE_CLIENT);
		goto out;
	}
	if (rc < 0) {
		rc = fail_step(r, "connect()", rc);
		goto out;
	}
	r->fds[SIDE_SERVER] = lsock_accept(ctx, W_LISTENER, r->fds[SIDE_LISTENER], NULL,
					   STEP_TIMEOUT_MS);
	if (r->fds[SIDE_SERVER] < 0) {
		rc = fail_step(r, "accept()", r->fds[SIDE_SERVER]);
		goto out;
	}
	poll_tcp_info(r);
	if (r->sc == SC_DATA_CLOSE) {
		lsock_setsockopt_int(ctx, W_CLIENT, r->fds[SIDE_CLIENT], IPPROTO_TCP, TCP_CORK, 1);
		n = lsock_send_all(ctx, W_CLIENT, r->fds[SIDE_CLIENT], data, r->data, STEP_TIMEOUT_MS);
		if (n < 0) {
			rc = fail_step(r, "send()", (int)n);
			goto out;
		}
		closefd(r, W_CLIENT, SIDE_CLIENT);
		n = recv_n(r, W_SERVER, r->fds[SIDE_SERVER], r->data);
		if (n >= 0)
			n = recv_eof(r, W_SERVER, r->fds[SIDE_SERVER]);
		if (n != 0) {
			rc = fail_step(r, "the server's recv()", n < 0 ? (int)n : -EPROTO);
			goto out;
		}
		if ((rc = close_delay(r)) < 0)
			goto out;
		closefd(r, W_SERVER, SIDE_SERVER);
		goto out;
	}
	if (r->data) {
		n = lsock_send_all(ctx, W_CLIENT, r->fds[SIDE_CLIENT], data, r->data, STEP_TIMEOUT_MS);
		if (n >= 0)
			n = recv_n(r, W_SERVER, r->fds[SIDE_SERVER], r->data);
		if (n < 0) {
			rc = fail_step(r, "sending the client's data", (int)n);
			goto out;
		}
	}
	if (r->reply && r->sc != SC_HALF_CLOSE) {
		n = lsock_send_all(ctx, W_SERVER, r->fds[SIDE_SERVER], reply, r->reply,
				   STEP_TIMEOUT_MS);
		if (n >= 0)
			n = recv_n(r, W_CLIENT, r->fds[SIDE_CLIENT], r->reply);
		if (n < 0) {
			rc = fail_step(r, "sending the server's reply", (int)n);
			goto out;
		}
	}
	poll_tcp_info(r);
	switch (r->sc) {
	case SC_CLIENT_CLOSES:
	case SC_SERVER_CLOSES: {
		int first = r->sc == SC_CLIENT_CLOSES ? SIDE_CLIENT : SIDE_SERVER;
		int second = first == SIDE_CLIENT ? SIDE_SERVER : SIDE_CLIENT;
		struct lsock_who w1 = first == SIDE_CLIENT ? W_CLIENT : W_SERVER;
		struct lsock_who w2 = first == SIDE_CLIENT ? W_SERVER : W_CLIENT;

		closefd(r, w1, first);
		n = recv_eof(r, w2, r->fds[second]);
		poll_tcp_info(r);
		if (n != 0) {
			rc = fail_step(r, "waiting for the FIN", n < 0 ? (int)n : -EPROTO);
			goto out;
		}
		if ((rc = close_delay(r)) < 0)
			goto out;
		closefd(r, w2, second);
		break;
	}
	case SC_SIMULTANEOUS:
		if (r->net) {
			/* Over the wire: both close, one right after the other; the
			 * FINs cross. */
			closefd(r, W_CLIENT, SIDE_CLIENT);
			closefd(r, W_SERVER, SIDE_SERVER);
			break;
		}
		rc = fill_window(r, r->fds[SIDE_CLIENT]);
		if (rc < 0) {
			rc = fail_step(r, "filling the server's window", rc);
			goto out;
		}
		closefd(r, W_CLIENT, SIDE_CLIENT);
		lsock_shutdown(ctx, W_SERVER, r->fds[SIDE_SERVER], SHUT_WR);
		poll_tcp_info(r);
		n = recv_eof(r, W_SERVER, r->fds[SIDE_SERVER]);
		if (n != 0) {
			rc = fail_step(r, "the server's reading", n < 0 ? (int)n : -EPROTO);
			goto out;
		}
		closefd(r, W_SERVER, SIDE_SERVER);
		break;
	case SC_HALF_CLOSE:
		lsock_shutdown(ctx, W_CLIENT, r->fds[SIDE_CLIENT], SHUT_WR);
		poll_tcp_info(r);
		n = recv_eof(r, W_SERVER, r->fds[SIDE_SERVER]);
		if (n == 0 && r->reply) {
			n = lsock_send_all(ctx, W_SERVER, r->fds[SIDE_SERVER], reply, r->reply,
					   STEP_TIMEOUT_MS);
			if (n >= 0)
				n = recv_n(r, W_CLIENT, r->fds[SIDE_CLIENT], r->reply);
			if (n >= 0)
				n = 0;
		}
		if (n != 0) {
			rc = fail_step(r, "the half-closed exchange", n < 0 ? (int)n : -EPROTO);
			goto out;
		}
		closefd(r, W_SERVER, SIDE_SERVER);
		n = recv_eof(r, W_CLIENT, r->fds[SIDE_CLIENT]);
		if (n != 0) {
			rc = fail_step(r, "waiting for the server's FIN", n < 0 ? (int)n : -EPROTO);
			goto out;
		}
		closefd(r, W_CLIENT, SIDE_CLIENT);
		break;
	case SC_ABORT:
		lsock_setsockopt_linger(ctx, W_CLIENT, r->fds[SIDE_CLIENT], 1, 0);
		closefd(r, W_CLIENT, SIDE_CLIENT);
		n = lsock_recv(ctx, W_SERVER, r->fds[SIDE_SERVER], data, r->data ? r->data : 1,
			       STEP_TIMEOUT_MS);
		if (n != -ECONNRESET) {
			rc = fail_step(r, "the server's recv() after the RST", n < 0 ? (int)n : -EPROTO);
			goto out;
		}
		closefd(r, W_SERVER, SIDE_SERVER);
		break;
	default:
		break;
	}
out:
	if (r->fds[SIDE_SERVER] >= 0)
		closefd(r, W_SERVER, SIDE_SERVER);
	if (r->fds[SIDE_CLIENT] >= 0)
		closefd(r, W_CLIENT, SIDE_CLIENT);
	if (r->fds[SIDE_LISTENER] >= 0) {
		lsock_close(ctx, W_LISTENER, r->fds[SIDE_LISTENER]);
		r->fds[SIDE_LISTENER] = -1;
	}
	free(data);
	free(reply);
	return rc;
}

