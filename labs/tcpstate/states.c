/* states.c: TCP state names, the RFC 9293 state machine fed by segments, and the tracepoint line parser. */
#include "tcpstate.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "decode/decode.h"

static const char *const state_names[TCPST_COUNT] = {
	[TCPST_UNKNOWN] = "UNKNOWN",
	[TCPST_ESTABLISHED] = "ESTABLISHED",
	[TCPST_SYN_SENT] = "SYN_SENT",
	[TCPST_SYN_RECV] = "SYN_RECV",
	[TCPST_FIN_WAIT1] = "FIN_WAIT_1",
	[TCPST_FIN_WAIT2] = "FIN_WAIT_2",
	[TCPST_TIME_WAIT] = "TIME_WAIT",
	[TCPST_CLOSE] = "CLOSED",
	[TCPST_CLOSE_WAIT] = "CLOSE_WAIT",
	[TCPST_LAST_ACK] = "LAST_ACK",
	[TCPST_LISTEN] = "LISTEN",
	[TCPST_CLOSING] = "CLOSING",
	[TCPST_NEW_SYN_RECV] = "NEW_SYN_RECV",
};

/* The names the tracepoint prints (__print_symbolic in trace/events/sock.h). */
static const char *const kernel_names[TCPST_COUNT] = {
	[TCPST_ESTABLISHED] = "TCP_ESTABLISHED",
	[TCPST_SYN_SENT] = "TCP_SYN_SENT",
	[TCPST_SYN_RECV] = "TCP_SYN_RECV",
	[TCPST_FIN_WAIT1] = "TCP_FIN_WAIT1",
	[TCPST_FIN_WAIT2] = "TCP_FIN_WAIT2",
	[TCPST_TIME_WAIT] = "TCP_TIME_WAIT",
	[TCPST_CLOSE] = "TCP_CLOSE",
	[TCPST_CLOSE_WAIT] = "TCP_CLOSE_WAIT",
	[TCPST_LAST_ACK] = "TCP_LAST_ACK",
	[TCPST_LISTEN] = "TCP_LISTEN",
	[TCPST_CLOSING] = "TCP_CLOSING",
	[TCPST_NEW_SYN_RECV] = "TCP_NEW_SYN_RECV",
};

const char *tcpst_name(int state)
{
	return state >= 0 && state < TCPST_COUNT ? state_names[state] : "?";
}

int tcpst_from_kernel_name(const char *s, size_t len)
{
	int i;

	for (i = 1; i < TCPST_COUNT; i++)
		if (strlen(kernel_names[i]) == len && memcmp(kernel_names[i], s, len) == 0)
			return i;
	return TCPST_UNKNOWN;
}

/* ---- inference: RFC 9293 section 3.10 ("Event Processing") ---- */

void tcpst_infer_init(struct tcpst_infer *m, int initial_state)
{
	memset(m, 0, sizeof *m);
	m->state = initial_state;
	m->listener = initial_state == TCPST_LISTEN;
}

/* a >= b in sequence space (RFC 9293 3.4: modulo 2^32). */
static int seq_ge(uint32_t a, uint32_t b)
{
	return (int32_t)(a - b) >= 0;
}

static int change(struct tcpst_infer *m, int to, const char *why, struct tcpst_change *out,
		  int n)
{
	out[n].from = m->state;
	out[n].to = to;
	out[n].why = why;
	m->state = to;
	return n + 1;
}

int tcpst_infer_segment(struct tcpst_infer *m, int outgoing, uint16_t flags, uint32_t seq,
			uint32_t ack, uint32_t len, struct tcpst_change out[2])
{
	int syn = flags & DEC_TCP_SYN, fin = flags & DEC_TCP_FIN, rst = flags & DEC_TCP_RST;
	int has_ack = flags & DEC_TCP_ACK;
	int n = 0;

	if (outgoing) {
		/* What we send: a SYN opens, a FIN closes our direction, a RST aborts. */
		if (syn) {
			m->syn_sent = 1;
			m->syn_end = seq + 1;
		}
		if (fin) {
			m->fin_sent = 1;
			m->fin_end = seq + (syn ? 1 : 0) + len + 1;
		}
		if (rst) {
			if (m->state != TCPST_CLOSE && m->state != TCPST_LISTEN &&
			    m->state != TCPST_UNKNOWN)
				n = change(m, TCPST_CLOSE, "sent RST: the connection is aborted", out,
					   n);
			return n;
		}
		switch (m->state) {
		case TCPST_CLOSE:
			if (syn && !has_ack)
				n = change(m, TCPST_SYN_SENT, "sent SYN (active open)", out, n);
			break;
		case TCPST_ESTABLISHED:
			if (fin)
				n = change(m, TCPST_FIN_WAIT1, "sent FIN (this side closes first)",
					   out, n);
			break;
		case TCPST_CLOSE_WAIT:
			if (fin)
				n = change(m, TCPST_LAST_ACK, "sent FIN after the peer's FIN", out,
					   n);
			break;
		case TCPST_SYN_RECV:
			if (fin)
				n = change(m, TCPST_FIN_WAIT1, "sent FIN before the handshake ended",
					   out, n);
			break;
		default:
			break;
		}
		return n;
	}

	/* What we receive. A RST ends everything but a listener. */
	if (rst) {
		switch (m->state) {
		case TCPST_LISTEN:
		case TCPST_CLOSE:
		case TCPST_UNKNOWN:
			return 0;
		case TCPST_SYN_SENT:
			/* RFC 9293 3.10.7.3: acceptable only if it ACKs our SYN. */
			if (has_ack && m->syn_sent && ack == m->syn_end)
				n = change(m, TCPST_CLOSE,
					   "received RST answering our SYN: connection refused", out,
					   n);
			return n;
		case TCPST_SYN_RECV:
			if (m->listener)
				return change(m, TCPST_LISTEN, "received RST: back to listening",
					      out, n);
			return change(m, TCPST_CLOSE, "received RST", out, n);
		default:
			return change(m, TCPST_CLOSE, "received RST: the peer aborted", out, n);
		}
	}
	switch (m->state) {
	case TCPST_LISTEN:
		if (syn && !has_ack)
			n = change(m, TCPST_SYN_RECV, "received SYN (passive open), answering SYN-ACK",
				   out, n);
		return n;
	case TCPST_SYN_SENT:
		if (syn && has_ack && m->syn_sent && ack == m->syn_end)
			n = change(m, TCPST_ESTABLISHED, "received SYN-ACK for our SYN", out, n);
		else if (syn && !has_ack)
			n = change(m, TCPST_SYN_RECV, "received a SYN while ours was unanswered "
				   "(simultaneous open)", out, n);
		return n;
	default:
		break;
	}
	/* ACK processing first (RFC 9293 3.10.7.4, "check the ACK field")... */
	if (has_ack) {
		int our_fin_acked = m->fin_sent && seq_ge(ack, m->fin_end);
		switch (m->state) {
		case TCPST_SYN_RECV:
			if (m->syn_sent && seq_ge(ack, m->syn_end))
				n = change(m, TCPST_ESTABLISHED, "received the ACK of our SYN-ACK",
					   out, n);
			break;
		case TCPST_FIN_WAIT1:
			if (our_fin_acked)
				n = change(m, TCPST_FIN_WAIT2, "received the ACK of our FIN", out,
					   n);
			break;
		case TCPST_CLOSING:
			if (our_fin_acked)
				n = change(m, TCPST_TIME_WAIT,
					   "received the ACK of our FIN after the peer's FIN", out, n);
			break;
		case TCPST_LAST_ACK:
			if (our_fin_acked)
				n = change(m, TCPST_CLOSE, "received the ACK of our FIN: done", out,
					   n);
			break;
		default:
			break;
		}
	}
	/* ...then the FIN bit (3.10.7.4, "check the FIN bit"). */
	if (fin) {
		switch (m->state) {
		case TCPST_SYN_RECV:
		case TCPST_ESTABLISHED:
			n = change(m, TCPST_CLOSE_WAIT, "received FIN: the peer has closed its side",
				   out, n);
			break;
		case TCPST_FIN_WAIT1:
			/* Our FIN not ACKed (else the ACK above moved us on): the FINs
			 * crossed. */
			n = change(m, TCPST_CLOSING,
				   "received FIN while our own FIN was not yet ACKed (the FINs crossed)",
				   out, n);
			break;
		case TCPST_FIN_WAIT2:
			n = change(m, TCPST_TIME_WAIT, "received the peer's FIN after ours was ACKed",
				   out, n);
			break;
		default:
			break;
		}
	}
	return n;
}

/* ---- the tracepoint's text (trace_pipe) ---- */

#define MARK ": inet_sock_set_state: "

/* The value of key= in the space-separated list [p, end), NUL-terminated
 * into buf; NULL when absent or too long. */
static const char *kv(const char *p, const char *end, const char *key, char *buf, size_t len)
{
	size_t kl = strlen(key);

	while (p < end) {
		const char *sp = memchr(p, ' ', (size_t)(end - p));
		const char *tok_end = sp ? sp : end;

		if ((size_t)(tok_end - p) > kl && memcmp(p, key, kl) == 0 && p[kl] == '=') {
			size_t vl = (size_t)(tok_end - p) - kl - 1;
			if (vl >= len)
				return NULL;
			memcpy(buf, p + kl + 1, vl);
			buf[vl] = '\0';
			return buf;
		}
		p = tok_end + 1;
	}
	return NULL;
}

static int parse_u16(const char *s, uint16_t *out)
{
	char *e;
	unsigned long v;

	if (!s || !*s)
		return -1;
	v = strtoul(s, &e, 10);
	if (*e || v > 65535)
		return -1;
	*out = (uint16_t)v;
	return 0;
}

/* "1900.270491" (seconds.fraction) to nanoseconds. */
static int parse_ts(const char *s, size_t len, int64_t *ns)
{
	int64_t sec = 0, frac = 0;
	size_t i = 0, digits = 0;

	if (len == 0)
		return -1;
	for (; i < len && s[i] != '.'; i++) {
		if (s[i] < '0' || s[i] > '9' || sec > INT64_MAX / 20)
			return -1;
		sec = sec * 10 + (s[i] - '0');
	}
	if (i < len)
		i++;
	for (; i < len; i++, digits++) {
		if (s[i] < '0' || s[i] > '9' || digits >= 9)
			return -1;
		frac = frac * 10 + (s[i] - '0');
	}
	for (; digits < 9; digits++)
		frac *= 10;
	*ns = sec * 1000000000 + frac;
	return 0;
}

int tcpst_trace_parse(const char *line, size_t len, struct tcpst_trace_ev *ev)
{
	char buf[1024], v[64];
	const char *mark, *end, *p, *ts_end, *ts_start;
	const char *sa, *da;

	if (len >= sizeof buf)
		return 0;
	memcpy(buf, line, len);
	buf[len] = '\0';
	mark = strstr(buf, MARK);
	if (!mark)
		return 0;
	memset(ev, 0, sizeof *ev);
	/* "...  1900.270491: inet_sock_set_state: " : the stamp ends at mark. */
	ts_end = mark;
	ts_start = ts_end;
	while (ts_start > buf && ts_start[-1] != ' ')
		ts_start--;
	if (parse_ts(ts_start, (size_t)(ts_end - ts_start), &ev->t_mono_ns) < 0)
		return -1;
	p = mark + strlen(MARK);
	end = buf + len;
	while (end > p && (end[-1] == '\n' || end[-1] == '\r' || end[-1] == ' '))
		end--;
	if (!kv(p, end, "protocol", v, sizeof v))
		return -1;
	if (strcmp(v, "IPPROTO_TCP") != 0)
		return 0;
	if (!kv(p, end, "family", v, sizeof v))
		return -1;
	if (!strcmp(v, "AF_INET"))
		ev->family = AF_INET;
	else if (!strcmp(v, "AF_INET6"))
		ev->family = AF_INET6;
	else
		return -1;
	if (parse_u16(kv(p, end, "sport", v, sizeof v), &ev->sport) < 0 ||
	    parse_u16(kv(p, end, "dport", v, sizeof v), &ev->dport) < 0)
		return -1;
	if (ev->family == AF_INET) {
		char d[64];
		sa = kv(p, end, "saddr", v, sizeof v);
		if (!sa || inet_pton(AF_INET, sa, ev->saddr) != 1)
			return -1;
		da = kv(p, end, "daddr", d, sizeof d);
		if (!da || inet_pton(AF_INET, da, ev->daddr) != 1)
			return -1;
	} else {
		char d[64];
		sa = kv(p, end, "saddrv6", v, sizeof v);
		if (!sa || inet_pton(AF_INET6, sa, ev->saddr) != 1)
			return -1;
		da = kv(p, end, "daddrv6", d, sizeof d);
		if (!da || inet_pton(AF_INET6, da, ev->daddr) != 1)
			return -1;
	}
	if (!kv(p, end, "oldstate", v, sizeof v))
		return -1;
	ev->oldstate = tcpst_from_kernel_name(v, strlen(v));
	if (!kv(p, end, "newstate", v, sizeof v))
		return -1;
	ev->newstate = tcpst_from_kernel_name(v, strlen(v));
	if (ev->oldstate == TCPST_UNKNOWN || ev->newstate == TCPST_UNKNOWN)
		return -1;
	return 1;
}
