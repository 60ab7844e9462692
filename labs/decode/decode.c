/* decode.c: the packet decoders: one bounds-checked cursor, every length field checked before use. */
#include "decode.h"

#include <endian.h>
#include <stdio.h>
#include <string.h>

/*
 * The cursor reads big-endian fields of one frame. pos is the next byte,
 * cap the bytes captured and end the end the enclosing header claims (an IP
 * total length, a TCP data offset, a UDP length; NO_END where nothing
 * claims one). A read of n bytes succeeds only when pos + n is within both.
 * When it fails, the reason says which bound was hit: the enclosing length
 * (invalid: the packet contradicts itself) or only the capture (truncated).
 */
#define NO_END UINT32_MAX

struct cur {
	const uint8_t *buf;
	uint32_t pos, end, cap;
};

static uint32_t cur_limit(const struct cur *c)
{
	return c->end < c->cap ? c->end : c->cap;
}

static int cur_has(const struct cur *c, uint32_t n)
{
	return c->pos <= cur_limit(c) && cur_limit(c) - c->pos >= n;
}

/* Why n more bytes are not there. */
static enum dec_status cur_short(const struct cur *c, uint32_t n)
{
	if ((uint64_t)c->pos + n > c->end)
		return DEC_INVALID;
	return DEC_TRUNCATED;
}

/* Each reader checks, reads, records the span and advances; -1 when short. */
static int rd_bytes(struct cur *c, void *dst, uint32_t n, struct dec_span *at)
{
	if (!cur_has(c, n))
		return -1;
	if (dst)
		memcpy(dst, c->buf + c->pos, n);
	if (at) {
		at->off = c->pos;
		at->len = n;
	}
	c->pos += n;
	return 0;
}

static int rd8(struct cur *c, uint8_t *v, struct dec_span *at)
{
	return rd_bytes(c, v, 1, at);
}

static int rd16(struct cur *c, uint16_t *v, struct dec_span *at)
{
	uint8_t b[2];

	if (rd_bytes(c, b, 2, at) < 0)
		return -1;
	*v = (uint16_t)(b[0] << 8 | b[1]);
	return 0;
}

static int rd32(struct cur *c, uint32_t *v, struct dec_span *at)
{
	uint8_t b[4];

	if (rd_bytes(c, b, 4, at) < 0)
		return -1;
	*v = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
	return 0;
}

/* Peek one byte at pos without moving. */
static int peek8(const struct cur *c, uint8_t *v)
{
	if (!cur_has(c, 1))
		return -1;
	*v = c->buf[c->pos];
	return 0;
}

static void span_of(struct dec_span *at, uint32_t off, uint32_t len)
{
	at->off = off;
	at->len = len;
}

/* ---- names ---- */

static const char *const status_names[] = {
	[DEC_OK] = "ok",
	[DEC_TRUNCATED] = "truncated",
	[DEC_INVALID] = "invalid",
	[DEC_UNSUPPORTED] = "unsupported",
};

static const char *const layer_names[] = {
	[DEC_L_SLL] = "linux-sll",
	[DEC_L_ETH] = "ethernet",
	[DEC_L_ARP] = "arp",
	[DEC_L_IPV4] = "ipv4",
	[DEC_L_IPV6] = "ipv6",
	[DEC_L_TCP] = "tcp",
	[DEC_L_UDP] = "udp",
	[DEC_L_ICMP] = "icmp",
	[DEC_L_PAYLOAD] = "payload",
};

const char *dec_status_name(enum dec_status s)
{
	return (unsigned)s < sizeof status_names / sizeof status_names[0] ? status_names[s] : "?";
}

const char *dec_layer_name(enum dec_layer_kind k)
{
	return (unsigned)k < DEC_L_COUNT ? layer_names[k] : "?";
}

static const struct {
	uint8_t kind;
	const char *name;
} tcpopt_names[] = {
	{DEC_TCPOPT_EOL, "eol"},
	{DEC_TCPOPT_NOP, "nop"},
	{DEC_TCPOPT_MSS, "mss"},
	{DEC_TCPOPT_WSCALE, "wscale"},
	{DEC_TCPOPT_SACK_PERM, "sack_perm"},
	{DEC_TCPOPT_SACK, "sack"},
	{DEC_TCPOPT_TS, "timestamp"},
	{19, "md5sig"},
	{28, "user_timeout"},
	{29, "tcp_ao"},
	{30, "mptcp"},
	{34, "tfo"},
	{253, "experimental"},
	{254, "experimental"},
	{0, NULL},
};

const char *dec_tcpopt_name(uint8_t kind)
{
	size_t i;

	for (i = 0; tcpopt_names[i].name; i++)
		if (tcpopt_names[i].kind == kind)
			return tcpopt_names[i].name;
	return "unknown";
}

static const struct {
	uint16_t bit;
	const char *name;
	char letter; /* tcpdump's letter; '.' is ACK */
} tcp_flag_names[] = {
	{DEC_TCP_SYN, "SYN", 'S'}, {DEC_TCP_FIN, "FIN", 'F'}, {DEC_TCP_RST, "RST", 'R'},
	{DEC_TCP_PSH, "PSH", 'P'}, {DEC_TCP_URG, "URG", 'U'}, {DEC_TCP_ECE, "ECE", 'E'},
	{DEC_TCP_CWR, "CWR", 'W'}, {DEC_TCP_AE, "AE", 'e'},   {DEC_TCP_ACK, "ACK", '.'},
	{0, NULL, 0},
};

const char *dec_tcp_flags_text(uint16_t flags, char *buf, size_t len)
{
	size_t i, off = 0;

	if (len == 0)
		return buf;
	buf[0] = '\0';
	for (i = 0; tcp_flag_names[i].name; i++) {
		int w;
		if (!(flags & tcp_flag_names[i].bit))
			continue;
		w = snprintf(buf + off, len - off, "%s%s", off ? ", " : "", tcp_flag_names[i].name);
		if (w < 0 || (size_t)w >= len - off)
			break;
		off += (size_t)w;
	}
	if (off == 0)
		snprintf(buf, len, "none");
	return buf;
}

const char *dec_tcp_flags_short(uint16_t flags, char *buf, size_t len)
{
	size_t i, off = 0;

	if (len == 0)
		return buf;
	for (i = 0; tcp_flag_names[i].name && off + 1 < len; i++)
		if (flags & tcp_flag_names[i].bit)
			buf[off++] = tcp_flag_names[i].letter;
	if (off == 0 && len > 4) {
		snprintf(buf, len, "none");
		return buf;
	}
	buf[off] = '\0';
	return buf;
}

/* ---- layers ---- */

/* Enter a layer: mark it reached and where its header starts. */
static struct dec_layer *layer_begin(struct dec_packet *p, enum dec_layer_kind k, uint32_t off)
{
	struct dec_layer *l = &p->layer[k];

	p->order[p->n_layers++] = k;
	l->status = DEC_OK;
	l->why = NULL;
	l->span.off = off;
	l->span.len = 0;
	return l;
}

static enum dec_status layer_end(struct dec_packet *p, struct dec_layer *l, const struct cur *c,
				 enum dec_status st, const char *why)
{
	l->span.len = c->pos - l->span.off;
	l->status = st;
	l->why = st == DEC_OK ? NULL : why;
	if (st != DEC_OK && p->status == DEC_OK) {
		p->status = st;
		p->why = why;
	}
	return st;
}

/* Data after the last header: the payload layer, truncated when the capture
 * holds fewer bytes than the header chain says there are. */
static enum dec_status dec_payload(struct dec_packet *p, struct cur *c)
{
	struct dec_layer *l;
	uint32_t want = c->end > c->pos ? c->end - c->pos : 0;
	uint32_t have = cur_limit(c) > c->pos ? cur_limit(c) - c->pos : 0;

	if (want == 0)
		return DEC_OK;
	l = layer_begin(p, DEC_L_PAYLOAD, c->pos);
	span_of(&p->payload, c->pos, have);
	c->pos += have;
	if (have < want)
		return layer_end(p, l, c, DEC_TRUNCATED, "the capture holds only part of the payload");
	return layer_end(p, l, c, DEC_OK, NULL);
}

/* One TCP option at c->pos inside the option space [.., c->end). */
static enum dec_status dec_tcp_option(struct cur *c, struct dec_tcp_opt *o)
{
	uint32_t start = c->pos;
	uint8_t kind, len;
	int i;

	memset(o, 0, sizeof *o);
	rd8(c, &kind, NULL); /* the caller saw a byte */
	o->kind = kind;
	o->len = 1;
	span_of(&o->span, start, 1);
	if (kind == DEC_TCPOPT_EOL || kind == DEC_TCPOPT_NOP)
		return DEC_OK;
	if (rd8(c, &len, NULL) < 0) {
		o->status = cur_short(c, 1);
		o->why = o->status == DEC_TRUNCATED ? "the capture ends inside the option"
						    : "the option's length byte is missing";
		return o->status;
	}
	o->len = len;
	if (len < 2) {
		o->why = "option length below 2";
		return o->status = DEC_INVALID;
	}
	if (!cur_has(c, (uint32_t)len - 2)) {
		o->status = cur_short(c, (uint32_t)len - 2);
		o->why = o->status == DEC_TRUNCATED ? "the capture ends inside the option"
						    : "option longer than the option space";
		/* Cover what is there, no further. */
		span_of(&o->span, start, cur_limit(c) - start);
		c->pos = cur_limit(c);
		return o->status;
	}
	span_of(&o->span, start, len);
	switch (kind) {
	case DEC_TCPOPT_MSS:
		if (len != 4)
			break;
		rd16(c, &o->u.mss, NULL);
		return DEC_OK;
	case DEC_TCPOPT_WSCALE:
		if (len != 3)
			break;
		rd8(c, &o->u.wscale, NULL);
		return DEC_OK;
	case DEC_TCPOPT_SACK_PERM:
		if (len != 2)
			break;
		return DEC_OK;
	case DEC_TCPOPT_TS:
		if (len != 10)
			break;
		rd32(c, &o->u.ts.val, NULL);
		rd32(c, &o->u.ts.ecr, NULL);
		return DEC_OK;
	case DEC_TCPOPT_SACK:
		if (len < 10 || (len - 2) % 8 != 0 || (len - 2) / 8 > 4)
			break;
		o->u.sack.n = (uint8_t)((len - 2) / 8);
		for (i = 0; i < o->u.sack.n; i++) {
			rd32(c, &o->u.sack.left[i], NULL);
			rd32(c, &o->u.sack.right[i], NULL);
		}
		return DEC_OK;
	default:
		/* A kind we do not interpret: its bytes are kept as they are. */
		rd_bytes(c, o->u.raw, (uint32_t)len - 2, NULL);
		return DEC_OK;
	}
	/* A known kind with a length its RFC does not allow. */
	c->pos = start + len;
	o->why = "wrong length for this option kind";
	return o->status = DEC_INVALID;
}

/* RFC 9293 section 3.1. seg_len is the TCP segment's length per the IP
 * header (header plus data). */
static enum dec_status dec_tcp(struct dec_packet *p, struct cur *c, uint32_t seg_len)
{
	struct dec_tcp *t = &p->tcp;
	struct dec_layer *l = layer_begin(p, DEC_L_TCP, c->pos);
	uint32_t start = c->pos, hlen;
	enum dec_status st = DEC_OK;
	const char *why = NULL;
	uint16_t w;
	struct cur oc;

	c->end = start + seg_len;
	if (rd16(c, &t->sport, &t->at[DEC_TCP_SPORT]) < 0 ||
	    rd16(c, &t->dport, &t->at[DEC_TCP_DPORT]) < 0 ||
	    rd32(c, &t->seq, &t->at[DEC_TCP_SEQ]) < 0 ||
	    rd32(c, &t->ack, &t->at[DEC_TCP_ACKNO]) < 0 || rd16(c, &w, NULL) < 0) {
		st = cur_short(c, 20 - (c->pos - start));
		return layer_end(p, l, c, st,
				 st == DEC_TRUNCATED ? "the capture ends inside the TCP header"
						     : "the IP length leaves no room for a TCP header");
	}
	t->doff = (uint8_t)(w >> 12);
	t->flags = w & 0x1ff;
	span_of(&t->at[DEC_TCP_DOFF], start + 12, 1);
	span_of(&t->at[DEC_TCP_FLAGS], start + 12, 2);
	if (rd16(c, &t->window, &t->at[DEC_TCP_WIN]) < 0 ||
	    rd16(c, &t->checksum, &t->at[DEC_TCP_CSUM]) < 0 ||
	    rd16(c, &t->urgent, &t->at[DEC_TCP_URGPTR]) < 0) {
		st = cur_short(c, 20 - (c->pos - start));
		return layer_end(p, l, c, st,
				 st == DEC_TRUNCATED ? "the capture ends inside the TCP header"
						     : "the IP length leaves no room for a TCP header");
	}
	hlen = (uint32_t)t->doff * 4;
	if (t->doff < 5)
		return layer_end(p, l, c, DEC_INVALID, "data offset below 5 (a header under 20 bytes)");
	if (hlen > seg_len)
		return layer_end(p, l, c, DEC_INVALID, "data offset points past the end of the segment");
	oc = *c;
	oc.end = start + hlen;
	if (hlen > 20 && c->cap > start + 20) {
		/* The option space, as far as it was captured. */
		uint32_t have = c->cap - (start + 20);
		span_of(&t->at[DEC_TCP_OPTIONS], start + 20, have < hlen - 20 ? have : hlen - 20);
	}
	while (oc.pos < oc.end && t->n_opts < DEC_TCP_MAX_OPTS) {
		uint8_t b;
		struct dec_tcp_opt *o;

		if (peek8(&oc, &b) < 0) {
			st = DEC_TRUNCATED;
			why = "the capture ends inside the TCP options";
			break;
		}
		o = &t->opt[t->n_opts++];
		if (dec_tcp_option(&oc, o) != DEC_OK) {
			st = o->status;
			why = st == DEC_TRUNCATED ? "the capture ends inside the TCP options"
						  : "a TCP option is malformed";
			break;
		}
		if (o->kind == DEC_TCPOPT_EOL)
			break; /* the rest is padding */
	}
	if (st == DEC_OK && (uint64_t)start + hlen > c->cap) {
		/* Options ended (EOL) but the padding after them was not captured. */
		st = DEC_TRUNCATED;
		why = "the capture ends inside the TCP options";
		oc.pos = c->cap;
	}
	c->pos = oc.pos > start + hlen ? start + hlen : oc.pos;
	if (st != DEC_OK)
		return layer_end(p, l, c, st, why);
	c->pos = start + hlen;
	l->span.len = hlen;
	t->payload_len = seg_len - hlen;
	layer_end(p, l, c, DEC_OK, NULL);
	return dec_payload(p, c);
}

/* RFC 768. dgram_len is the IP payload's length; in a first fragment
 * (first_frag) the UDP length covers the whole reassembled datagram, so it
 * may exceed it. */
static enum dec_status dec_udp(struct dec_packet *p, struct cur *c, uint32_t dgram_len,
			       int first_frag)
{
	struct dec_udp *u = &p->udp;
	struct dec_layer *l = layer_begin(p, DEC_L_UDP, c->pos);
	uint32_t start = c->pos;
	enum dec_status st;

	c->end = start + dgram_len;
	if (rd16(c, &u->sport, &u->at[DEC_UDP_SPORT]) < 0 ||
	    rd16(c, &u->dport, &u->at[DEC_UDP_DPORT]) < 0 ||
	    rd16(c, &u->len, &u->at[DEC_UDP_LEN]) < 0 ||
	    rd16(c, &u->checksum, &u->at[DEC_UDP_CSUM]) < 0) {
		st = cur_short(c, 8 - (c->pos - start));
		return layer_end(p, l, c, st,
				 st == DEC_TRUNCATED ? "the capture ends inside the UDP header"
						     : "the IP length leaves no room for a UDP header");
	}
	if (u->len < 8)
		return layer_end(p, l, c, DEC_INVALID, "UDP length below 8");
	if (u->len > dgram_len && !first_frag)
		return layer_end(p, l, c, DEC_INVALID, "UDP length beyond the IP payload");
	c->end = start + (u->len < dgram_len ? u->len : dgram_len);
	u->payload_len = (uint32_t)u->len - 8;
	layer_end(p, l, c, DEC_OK, NULL);
	return dec_payload(p, c);
}

/* RFC 792: type, code, checksum and 4 bytes whose meaning depends on the
 * type; the rest is the message's data. */
static enum dec_status dec_icmp(struct dec_packet *p, struct cur *c, uint32_t msg_len)
{
	struct dec_icmp *m = &p->icmp;
	struct dec_layer *l = layer_begin(p, DEC_L_ICMP, c->pos);
	uint32_t start = c->pos;
	uint16_t a, b;
	enum dec_status st;

	c->end = start + msg_len;
	m->len = msg_len;
	if (rd8(c, &m->type, &m->at[DEC_ICMP_TYPE]) < 0 ||
	    rd8(c, &m->code, &m->at[DEC_ICMP_CODE]) < 0 ||
	    rd16(c, &m->checksum, &m->at[DEC_ICMP_CSUM]) < 0 || rd16(c, &a, NULL) < 0 ||
	    rd16(c, &b, NULL) < 0) {
		st = cur_short(c, 8 - (c->pos - start));
		return layer_end(p, l, c, st,
				 st == DEC_TRUNCATED ? "the capture ends inside the ICMP header"
						     : "the IP length leaves no room for an ICMP header");
	}
	m->rest = (uint32_t)a << 16 | b;
	switch (m->type) {
	case 0:  /* echo reply */
	case 8:  /* echo request */
	case 13: /* timestamp */
	case 14: /* timestamp reply */
		m->id = a;
		m->seq = b;
		span_of(&m->at[DEC_ICMP_ID], start + 4, 2);
		span_of(&m->at[DEC_ICMP_SEQ], start + 6, 2);
		break;
	case 3: /* destination unreachable: code 4 carries the next-hop MTU */
		if (m->code == 4) {
			m->mtu = b;
			span_of(&m->at[DEC_ICMP_MTU], start + 6, 2);
			break;
		}
		span_of(&m->at[DEC_ICMP_REST], start + 4, 4);
		break;
	default: /* unused (time exceeded), a gateway (redirect), a pointer, ... */
		span_of(&m->at[DEC_ICMP_REST], start + 4, 4);
		break;
	}
	layer_end(p, l, c, DEC_OK, NULL);
	return dec_payload(p, c);
}

/* The transport after an IP header; len is the IP payload's length. */
static enum dec_status dec_transport(struct dec_packet *p, struct cur *c, uint8_t proto,
				     uint32_t len, int first_frag)
{
	if (proto == 6)
		return dec_tcp(p, c, len);
	if (proto == 17)
		return dec_udp(p, c, len, first_frag);
	if (proto == 1 && dec_has(p, DEC_L_IPV4))
		return dec_icmp(p, c, len);
	c->end = c->pos + len;
	dec_payload(p, c);
	if (p->status == DEC_OK) {
		p->status = DEC_UNSUPPORTED;
		p->why = "an IP protocol these decoders do not read";
	}
	return p->status;
}

/* RFC 791. */
static enum dec_status dec_ipv4(struct dec_packet *p, struct cur *c)
{
	struct dec_ipv4 *ip = &p->ip4;
	struct dec_layer *l = layer_begin(p, DEC_L_IPV4, c->pos);
	uint32_t start = c->pos, hlen;
	uint8_t vi;
	uint16_t ff;
	enum dec_status st;

	c->end = NO_END;
	if (rd8(c, &vi, NULL) < 0 || rd8(c, &ip->tos, &ip->at[DEC_IP4_TOS]) < 0 ||
	    rd16(c, &ip->total_len, &ip->at[DEC_IP4_TOTLEN]) < 0 ||
	    rd16(c, &ip->id, &ip->at[DEC_IP4_ID]) < 0 || rd16(c, &ff, NULL) < 0 ||
	    rd8(c, &ip->ttl, &ip->at[DEC_IP4_TTL]) < 0 ||
	    rd8(c, &ip->proto, &ip->at[DEC_IP4_PROTO]) < 0 ||
	    rd16(c, &ip->checksum, &ip->at[DEC_IP4_CSUM]) < 0 ||
	    rd_bytes(c, ip->src, 4, &ip->at[DEC_IP4_SRC]) < 0 ||
	    rd_bytes(c, ip->dst, 4, &ip->at[DEC_IP4_DST]) < 0)
		return layer_end(p, l, c, DEC_TRUNCATED, "the capture ends inside the IPv4 header");
	ip->version = vi >> 4;
	ip->ihl = vi & 15;
	ip->flags = (uint8_t)(ff >> 13);
	ip->frag_off = ff & 0x1fff;
	span_of(&ip->at[DEC_IP4_VERSION], start, 1);
	span_of(&ip->at[DEC_IP4_IHL], start, 1);
	span_of(&ip->at[DEC_IP4_FLAGS], start + 6, 1);
	span_of(&ip->at[DEC_IP4_FRAG], start + 6, 2);
	hlen = (uint32_t)ip->ihl * 4;
	if (ip->version != 4)
		return layer_end(p, l, c, DEC_INVALID, "IP version is not 4");
	if (ip->ihl < 5)
		return layer_end(p, l, c, DEC_INVALID, "header length (IHL) below 5");
	if (ip->total_len < hlen)
		return layer_end(p, l, c, DEC_INVALID, "total length shorter than the header");
	c->end = start + ip->total_len;
	if (hlen > 20) {
		if (!cur_has(c, hlen - 20)) {
			st = cur_short(c, hlen - 20);
			return layer_end(p, l, c, st, "the capture ends inside the IPv4 options");
		}
		rd_bytes(c, ip->options, hlen - 20, &ip->at[DEC_IP4_OPTIONS]);
	}
	layer_end(p, l, c, DEC_OK, NULL);
	if ((uint64_t)start + ip->total_len > c->cap && p->caplen == p->wirelen) {
		/* The frame itself is shorter than IP says: not a snapshot limit. */
		l->status = DEC_TRUNCATED;
		l->why = "the frame is shorter than the IPv4 total length";
		p->status = DEC_TRUNCATED;
		p->why = l->why;
	}
	if (ip->frag_off != 0) {
		/* A later fragment: no transport header in it. */
		dec_payload(p, c);
		return p->status;
	}
	st = dec_transport(p, c, ip->proto, ip->total_len - hlen, ip->flags & 1);
	return p->status != DEC_OK ? p->status : st;
}

/* RFC 8200. */
static enum dec_status dec_ipv6(struct dec_packet *p, struct cur *c)
{
	struct dec_ipv6 *ip = &p->ip6;
	struct dec_layer *l = layer_begin(p, DEC_L_IPV6, c->pos);
	uint32_t start = c->pos, w, ext_len = 0;
	uint8_t next;
	enum dec_status st;
	int first_frag = 0;

	c->end = NO_END;
	if (rd32(c, &w, NULL) < 0 || rd16(c, &ip->payload_len, &ip->at[DEC_IP6_PLEN]) < 0 ||
	    rd8(c, &ip->next, &ip->at[DEC_IP6_NEXT]) < 0 ||
	    rd8(c, &ip->hop_limit, &ip->at[DEC_IP6_HLIM]) < 0 ||
	    rd_bytes(c, ip->src, 16, &ip->at[DEC_IP6_SRC]) < 0 ||
	    rd_bytes(c, ip->dst, 16, &ip->at[DEC_IP6_DST]) < 0)
		return layer_end(p, l, c, DEC_TRUNCATED, "the capture ends inside the IPv6 header");
	ip->version = (uint8_t)(w >> 28);
	ip->tclass = (uint8_t)(w >> 20);
	ip->flow = w & 0xfffff;
	span_of(&ip->at[DEC_IP6_VERSION], start, 1);
	span_of(&ip->at[DEC_IP6_TCLASS], start, 2);
	span_of(&ip->at[DEC_IP6_FLOW], start + 1, 3);
	if (ip->version != 6)
		return layer_end(p, l, c, DEC_INVALID, "IP version is not 6");
	c->end = start + 40 + ip->payload_len;
	next = ip->next;
	/* Extension headers: each length checked against the payload length. */
	for (;;) {
		struct dec_ip6_ext *e;
		uint8_t b[2];
		uint32_t len;

		if (next != 0 && next != 43 && next != 44 && next != 60)
			break;
		if (ip->n_ext == DEC_IP6_MAX_EXT)
			return layer_end(p, l, c, DEC_UNSUPPORTED, "too many IPv6 extension headers");
		e = &ip->ext[ip->n_ext++];
		e->type = next;
		if (!cur_has(c, 2)) {
			st = cur_short(c, 2);
			return layer_end(p, l, c, st,
					 st == DEC_TRUNCATED
						 ? "the capture ends inside an IPv6 extension header"
						 : "an IPv6 extension header runs past the payload length");
		}
		b[0] = c->buf[c->pos];
		b[1] = c->buf[c->pos + 1];
		len = next == 44 ? 8 : ((uint32_t)b[1] + 1) * 8;
		e->next = b[0];
		e->len = len;
		if (!cur_has(c, len)) {
			st = cur_short(c, len);
			return layer_end(p, l, c, st,
					 st == DEC_TRUNCATED
						 ? "the capture ends inside an IPv6 extension header"
						 : "an IPv6 extension header runs past the payload length");
		}
		if (next == 44) {
			uint16_t fo = (uint16_t)(c->buf[c->pos + 2] << 8 | c->buf[c->pos + 3]);
			e->frag_off = fo >> 3;
			e->more = fo & 1;
		}
		rd_bytes(c, NULL, len, &e->span);
		ext_len += len;
		next = e->next;
		if (e->type == 44 && e->more)
			first_frag = 1; /* offset 0 here: later ones stop below */
		if (e->type == 44 && e->frag_off != 0) {
			ip->proto = next;
			layer_end(p, l, c, DEC_OK, NULL);
			dec_payload(p, c);
			return p->status;
		}
	}
	ip->proto = next;
	layer_end(p, l, c, DEC_OK, NULL);
	if ((uint64_t)start + 40 + ip->payload_len > c->cap && p->caplen == p->wirelen) {
		l->status = DEC_TRUNCATED;
		l->why = "the frame is shorter than the IPv6 payload length";
		p->status = DEC_TRUNCATED;
		p->why = l->why;
	}
	if (next == 59)
		return p->status; /* no next header */
	st = dec_transport(p, c, next, ip->payload_len - ext_len, first_frag);
	return p->status != DEC_OK ? p->status : st;
}

/* RFC 826, for Ethernet and IPv4 addresses. */
static enum dec_status dec_arp(struct dec_packet *p, struct cur *c)
{
	struct dec_arp *a = &p->arp;
	struct dec_layer *l = layer_begin(p, DEC_L_ARP, c->pos);

	c->end = NO_END;
	if (rd16(c, &a->htype, &a->at[DEC_ARP_HTYPE]) < 0 ||
	    rd16(c, &a->ptype, &a->at[DEC_ARP_PTYPE]) < 0 ||
	    rd8(c, &a->hlen, &a->at[DEC_ARP_HLEN]) < 0 ||
	    rd8(c, &a->plen, &a->at[DEC_ARP_PLEN]) < 0 || rd16(c, &a->op, &a->at[DEC_ARP_OP]) < 0)
		return layer_end(p, l, c, DEC_TRUNCATED, "the capture ends inside the ARP header");
	if (a->htype != 1 || a->ptype != 0x0800 || a->hlen != 6 || a->plen != 4)
		return layer_end(p, l, c, DEC_UNSUPPORTED,
				 "ARP for addresses other than Ethernet and IPv4");
	if (rd_bytes(c, a->sha, 6, &a->at[DEC_ARP_SHA]) < 0 ||
	    rd_bytes(c, a->spa, 4, &a->at[DEC_ARP_SPA]) < 0 ||
	    rd_bytes(c, a->tha, 6, &a->at[DEC_ARP_THA]) < 0 ||
	    rd_bytes(c, a->tpa, 4, &a->at[DEC_ARP_TPA]) < 0)
		return layer_end(p, l, c, DEC_TRUNCATED, "the capture ends inside the ARP addresses");
	return layer_end(p, l, c, DEC_OK, NULL);
}

static enum dec_status dec_ethertype(struct dec_packet *p, struct cur *c, uint16_t type)
{
	switch (type) {
	case 0x0800:
		return dec_ipv4(p, c);
	case 0x86dd:
		return dec_ipv6(p, c);
	case 0x0806:
		return dec_arp(p, c);
	default:
		p->status = DEC_UNSUPPORTED;
		p->why = "an EtherType these decoders do not read";
		return p->status;
	}
}

/* IEEE 802.3, with one optional 802.1Q tag. */
static enum dec_status dec_eth(struct dec_packet *p, struct cur *c)
{
	struct dec_eth *e = &p->eth;
	struct dec_layer *l = layer_begin(p, DEC_L_ETH, c->pos);

	if (rd_bytes(c, e->dst, 6, &e->at[DEC_ETH_DST]) < 0 ||
	    rd_bytes(c, e->src, 6, &e->at[DEC_ETH_SRC]) < 0 ||
	    rd16(c, &e->type, &e->at[DEC_ETH_TYPE]) < 0)
		return layer_end(p, l, c, DEC_TRUNCATED, "the capture ends inside the Ethernet header");
	if (e->type == 0x8100) {
		if (rd16(c, &e->vlan_tci, &e->at[DEC_ETH_VLAN]) < 0 ||
		    rd16(c, &e->type, &e->at[DEC_ETH_TYPE]) < 0)
			return layer_end(p, l, c, DEC_TRUNCATED,
					 "the capture ends inside the 802.1Q tag");
	}
	if (e->type < 0x0600)
		return layer_end(p, l, c, DEC_UNSUPPORTED, "an 802.3 length field, not an EtherType");
	layer_end(p, l, c, DEC_OK, NULL);
	return dec_ethertype(p, c, e->type);
}

/* The Linux cooked header (LINKTYPE_LINUX_SLL). */
static enum dec_status dec_sll(struct dec_packet *p, struct cur *c)
{
	struct dec_sll *s = &p->sll;
	struct dec_layer *l = layer_begin(p, DEC_L_SLL, c->pos);

	if (rd16(c, &s->pkttype, &s->at[DEC_SLL_PKTTYPE]) < 0 ||
	    rd16(c, &s->hatype, &s->at[DEC_SLL_HATYPE]) < 0 ||
	    rd16(c, &s->halen, &s->at[DEC_SLL_HALEN]) < 0 ||
	    rd_bytes(c, s->addr, 8, &s->at[DEC_SLL_ADDR]) < 0 ||
	    rd16(c, &s->type, &s->at[DEC_SLL_TYPE]) < 0)
		return layer_end(p, l, c, DEC_TRUNCATED, "the capture ends inside the cooked header");
	if (s->halen > 8)
		return layer_end(p, l, c, DEC_INVALID, "link address length above 8");
	layer_end(p, l, c, DEC_OK, NULL);
	return dec_ethertype(p, c, s->type);
}

/* ---- checksums ---- */

static const char *const csum_status_names[] = {
	[DEC_CSUM_UNCHECKED] = "unchecked",
	[DEC_CSUM_GOOD] = "good",
	[DEC_CSUM_BAD] = "bad",
	[DEC_CSUM_NOT_COMPUTED] = "not_computed",
	[DEC_CSUM_UNVERIFIABLE] = "unverifiable",
	[DEC_CSUM_NONE] = "none",
};

static const struct {
	const char *name, *why;
} csum_reasons[DEC_CSUM_R_COUNT] = {
	[DEC_CSUM_R_NONE] = {"none", ""},
	[DEC_CSUM_R_MATCH] = {"match", "the checksum matches the bytes it covers"},
	[DEC_CSUM_R_MISMATCH] = {"mismatch", "the checksum does not match the bytes it covers: a "
					     "receiver discards this packet"},
	[DEC_CSUM_R_UDP6_ZERO] = {"udp6_zero", "checksum 0 over IPv6, where RFC 8200 requires a UDP "
					       "checksum: a receiver discards this datagram"},
	[DEC_CSUM_R_OFFLOAD] = {"offload",
				"checksum offload: the kernel stored only the pseudo-header sum and "
				"marked the frame for the device to finish (on loopback and veth "
				"nothing finishes it: the bytes never leave memory)"},
	[DEC_CSUM_R_OFFLOAD_INFERRED] = {"offload_inferred",
					 "the value is the pseudo-header sum a kernel leaves for "
					 "checksum offload (inferred: a recorded capture carries no "
					 "offload flag)"},
	[DEC_CSUM_R_TRUNCATED] = {"truncated",
				  "the capture does not hold every byte the checksum covers"},
	[DEC_CSUM_R_FRAGMENT] = {"fragment",
				 "a fragment: the checksum covers the whole reassembled datagram"},
	[DEC_CSUM_R_ROUTING] = {"routing", "an IPv6 routing header: the checksum is over the final "
					   "destination, not the address in this header"},
	[DEC_CSUM_R_MALFORMED] = {"malformed", "the header is malformed, so its checksum is not "
					       "checked"},
	[DEC_CSUM_R_UDP_ZERO] = {"udp_zero", "checksum 0: the sender computed none (allowed for UDP "
					     "over IPv4, RFC 768)"},
};

const char *dec_csum_status_name(enum dec_csum_status s)
{
	return (unsigned)s < sizeof csum_status_names / sizeof csum_status_names[0]
		       ? csum_status_names[s]
		       : "?";
}

const char *dec_csum_reason_name(enum dec_csum_reason r)
{
	return (unsigned)r < DEC_CSUM_R_COUNT ? csum_reasons[r].name : "?";
}

const char *dec_csum_why(enum dec_csum_reason r)
{
	return (unsigned)r < DEC_CSUM_R_COUNT ? csum_reasons[r].why : "";
}

/* Add n bytes at off to the ones' complement sum acc (RFC 1071), reading
 * through the cursor; -1 when they were not all captured. An odd last byte
 * is padded with a zero byte. */
static int cur_sum(struct cur *c, uint32_t off, uint32_t n, uint64_t *acc)
{
	const uint8_t *b;
	uint64_t w, sum = 0; /* local: a store through acc could alias the bytes */
	uint32_t i;

	c->pos = off;
	c->end = NO_END;
	if (!cur_has(c, n))
		return -1;
	b = c->buf + off;
	/* Eight bytes at a time: 2^16 = 1 modulo 0xffff, so summing the two
	 * big-endian 32-bit halves and folding later gives the same sum as
	 * 16-bit words. Below 2^31 additions the 64-bit total cannot wrap. */
	for (i = 0; i + 8 <= n; i += 8) {
		memcpy(&w, b + i, 8);
		w = be64toh(w);
		sum += (w >> 32) + (w & 0xffffffffu);
	}
	for (; i + 1 < n; i += 2)
		sum += (uint32_t)(b[i] << 8 | b[i + 1]);
	if (n & 1)
		sum += (uint32_t)b[n - 1] << 8;
	*acc += sum;
	return 0;
}

static uint16_t fold(uint64_t acc)
{
	while (acc >> 16)
		acc = (acc & 0xffff) + (acc >> 16);
	return (uint16_t)acc;
}

static void csum_set(struct dec_csum *k, enum dec_csum_status st, enum dec_csum_reason r)
{
	k->status = st;
	k->reason = r;
}

/* Verify a checksum over n bytes at off whose own field holds k->found,
 * with pseudo the pseudo-header's sum (0 for the IPv4 header): sets status,
 * reason and the expected value. Returns 0, or -1 when the bytes were not
 * all captured. */
static int csum_verify(struct cur *c, uint32_t off, uint32_t n, uint64_t pseudo,
		       struct dec_csum *k)
{
	uint64_t acc = pseudo;

	if (cur_sum(c, off, n, &acc) < 0)
		return -1;
	/* The sum with the checksum field taken out (adding its complement
	 * subtracts it in ones' complement), complemented: the right value. */
	k->expected = (uint16_t)~fold(acc + (uint16_t)~k->found);
	k->has_expected = 1;
	if (fold(acc) == 0xffff)
		csum_set(k, DEC_CSUM_GOOD, DEC_CSUM_R_MATCH);
	else
		csum_set(k, DEC_CSUM_BAD, DEC_CSUM_R_MISMATCH);
	return 0;
}

/* RFC 791 3.1: the ones' complement sum of the header is all ones. */
static void verify_ipv4(struct dec_packet *p, struct cur *c)
{
	struct dec_ipv4 *ip = &p->ip4;
	uint32_t off = p->layer[DEC_L_IPV4].span.off;

	if (ip->at[DEC_IP4_CSUM].len == 0)
		return;
	ip->csum.found = ip->checksum;
	if (ip->at[DEC_IP4_DST].len == 0) {
		csum_set(&ip->csum, DEC_CSUM_UNVERIFIABLE, DEC_CSUM_R_TRUNCATED);
		return;
	}
	if (ip->version != 4 || ip->ihl < 5 || ip->total_len < ip->ihl * 4u) {
		csum_set(&ip->csum, DEC_CSUM_UNVERIFIABLE, DEC_CSUM_R_MALFORMED);
		return;
	}
	if (csum_verify(c, off, ip->ihl * 4u, 0, &ip->csum) < 0)
		csum_set(&ip->csum, DEC_CSUM_UNVERIFIABLE, DEC_CSUM_R_TRUNCATED);
}

/* The pseudo-header's sum for a transport segment of len bytes: RFC 9293
 * 3.1 and RFC 768 over IPv4 (addresses, zero, protocol, 16-bit length),
 * RFC 8200 8.1 over IPv6 (addresses, 32-bit length, next header). */
static uint64_t pseudo_sum(const struct dec_packet *p, uint8_t proto, uint32_t len)
{
	uint64_t acc = 0;
	const uint8_t *a;
	int i, n;

	if (dec_has(p, DEC_L_IPV6)) {
		a = p->ip6.src;
		n = 16;
	} else {
		a = p->ip4.src;
		n = 4;
	}
	for (i = 0; i < n; i += 2)
		acc += (uint32_t)(a[i] << 8 | a[i + 1]);
	a = dec_has(p, DEC_L_IPV6) ? p->ip6.dst : p->ip4.dst;
	for (i = 0; i < n; i += 2)
		acc += (uint32_t)(a[i] << 8 | a[i + 1]);
	return acc + proto + (len >> 16) + (len & 0xffff);
}

/* Why the transport checksum cannot be checked from this IP header, or
 * DEC_CSUM_R_NONE when it can. */
static enum dec_csum_reason ip_blocks_l4(const struct dec_packet *p, struct cur *c)
{
	unsigned i;

	if (dec_has(p, DEC_L_IPV4))
		return p->ip4.flags & 1 ? DEC_CSUM_R_FRAGMENT : DEC_CSUM_R_NONE; /* MF */
	for (i = 0; i < p->ip6.n_ext; i++) {
		const struct dec_ip6_ext *e = &p->ip6.ext[i];
		uint8_t left;

		if (e->type == 44 && (e->more || e->frag_off))
			return DEC_CSUM_R_FRAGMENT; /* an atomic fragment (RFC 6946) holds it all */
		c->pos = e->span.off + 3;
		c->end = NO_END;
		if (e->type == 43 && peek8(c, &left) == 0 && left != 0)
			return DEC_CSUM_R_ROUTING; /* segments left: not the final address */
	}
	return DEC_CSUM_R_NONE;
}

/* The TCP or UDP checksum (k) over len bytes at off. */
static void verify_l4(struct dec_packet *p, struct cur *c, enum dec_layer_kind kind,
		      uint32_t len, unsigned rx, struct dec_csum *k)
{
	uint8_t proto = kind == DEC_L_TCP ? 6 : 17;
	uint32_t off = p->layer[kind].span.off;
	int v6 = dec_has(p, DEC_L_IPV6);
	enum dec_csum_reason r;
	uint64_t pseudo;

	if (p->layer[kind].status != DEC_OK) {
		csum_set(k, DEC_CSUM_UNVERIFIABLE,
			 p->layer[kind].status == DEC_TRUNCATED ? DEC_CSUM_R_TRUNCATED
								: DEC_CSUM_R_MALFORMED);
		return;
	}
	if (kind == DEC_L_UDP && k->found == 0 && !v6) {
		csum_set(k, DEC_CSUM_NONE, DEC_CSUM_R_UDP_ZERO);
		return;
	}
	r = ip_blocks_l4(p, c);
	if (r != DEC_CSUM_R_NONE) {
		csum_set(k, DEC_CSUM_UNVERIFIABLE, r);
		return;
	}
	pseudo = pseudo_sum(p, proto, len);
	if (csum_verify(c, off, len, pseudo, k) < 0) {
		csum_set(k, rx & DEC_RX_CSUM_NOT_READY ? DEC_CSUM_NOT_COMPUTED : DEC_CSUM_UNVERIFIABLE,
			 rx & DEC_RX_CSUM_NOT_READY ? DEC_CSUM_R_OFFLOAD : DEC_CSUM_R_TRUNCATED);
		return;
	}
	if (kind == DEC_L_UDP && k->expected == 0)
		k->expected = 0xffff; /* RFC 768: a computed 0 is sent as all ones */
	if (rx & DEC_RX_CSUM_NOT_READY) {
		csum_set(k, DEC_CSUM_NOT_COMPUTED, DEC_CSUM_R_OFFLOAD);
		return;
	}
	if (kind == DEC_L_UDP && k->found == 0) {
		csum_set(k, DEC_CSUM_BAD, DEC_CSUM_R_UDP6_ZERO); /* over IPv4 it was none, above */
		return;
	}
	if (k->status == DEC_CSUM_GOOD)
		return;
	/* What a kernel leaves for the device under checksum offload: the
	 * folded pseudo-header sum, not complemented (Linux's
	 * tcp_v4_send_check, udp4_hwcsum; Wireshark's "partial checksum"). */
	if (k->found == fold(pseudo))
		csum_set(k, DEC_CSUM_NOT_COMPUTED, DEC_CSUM_R_OFFLOAD_INFERRED);
}

/* RFC 792: the checksum covers the whole ICMP message, with no pseudo-header. */
static void verify_icmp(struct dec_packet *p, struct cur *c)
{
	struct dec_csum *k = &p->icmp.csum;
	enum dec_csum_reason r;

	k->found = p->icmp.checksum;
	if (p->layer[DEC_L_ICMP].status != DEC_OK) {
		csum_set(k, DEC_CSUM_UNVERIFIABLE,
			 p->layer[DEC_L_ICMP].status == DEC_TRUNCATED ? DEC_CSUM_R_TRUNCATED
								     : DEC_CSUM_R_MALFORMED);
		return;
	}
	r = ip_blocks_l4(p, c);
	if (r != DEC_CSUM_R_NONE) {
		csum_set(k, DEC_CSUM_UNVERIFIABLE, r);
		return;
	}
	if (csum_verify(c, p->layer[DEC_L_ICMP].span.off, p->icmp.len, 0, k) < 0)
		csum_set(k, DEC_CSUM_UNVERIFIABLE, DEC_CSUM_R_TRUNCATED);
}

/* Verify every checksum of a decoded packet. */
static void verify_checksums(struct dec_packet *p, struct cur *c, unsigned rx)
{
	if (dec_has(p, DEC_L_IPV4))
		verify_ipv4(p, c);
	if (dec_has(p, DEC_L_TCP) && p->tcp.at[DEC_TCP_CSUM].len) {
		p->tcp.csum.found = p->tcp.checksum;
		verify_l4(p, c, DEC_L_TCP, (uint32_t)p->tcp.doff * 4 + p->tcp.payload_len, rx,
			  &p->tcp.csum);
	}
	if (dec_has(p, DEC_L_UDP) && p->udp.at[DEC_UDP_CSUM].len) {
		p->udp.csum.found = p->udp.checksum;
		verify_l4(p, c, DEC_L_UDP, p->udp.len, rx, &p->udp.csum);
	}
	if (dec_has(p, DEC_L_ICMP) && p->icmp.at[DEC_ICMP_CSUM].len)
		verify_icmp(p, c);
}

static enum dec_status decode_link(struct dec_packet *out, struct cur *c, int link)
{
	uint8_t v;

	switch (link) {
	case DEC_LINK_ETHERNET:
		return dec_eth(out, c);
	case DEC_LINK_SLL:
		return dec_sll(out, c);
	case DEC_LINK_IPV4:
		return dec_ipv4(out, c);
	case DEC_LINK_IPV6:
		return dec_ipv6(out, c);
	case DEC_LINK_RAW:
		if (peek8(c, &v) < 0) {
			out->status = DEC_TRUNCATED;
			out->why = "an empty frame";
			return out->status;
		}
		if (v >> 4 == 4)
			return dec_ipv4(out, c);
		if (v >> 4 == 6)
			return dec_ipv6(out, c);
		out->status = DEC_INVALID;
		out->why = "a raw IP frame whose version is neither 4 nor 6";
		return out->status;
	default:
		out->status = DEC_UNSUPPORTED;
		out->why = "a link type these decoders do not read";
		return out->status;
	}
}

enum dec_status dec_packet(const uint8_t *data, size_t caplen, size_t wirelen, int link,
			   struct dec_packet *out)
{
	return dec_packet_rx(data, caplen, wirelen, link, 0, out);
}

enum dec_status dec_packet_rx(const uint8_t *data, size_t caplen, size_t wirelen, int link,
			      unsigned rx, struct dec_packet *out)
{
	struct cur c;
	enum dec_status st;

	memset(out, 0, sizeof *out);
	/* Frames beyond 4 GiB do not exist; clamp so offsets fit 32 bits. */
	if (caplen > UINT32_MAX / 2)
		caplen = UINT32_MAX / 2;
	if (wirelen < caplen)
		wirelen = caplen;
	if (wirelen > UINT32_MAX / 2)
		wirelen = UINT32_MAX / 2;
	out->caplen = (uint32_t)caplen;
	out->wirelen = (uint32_t)wirelen;
	out->link = link;
	out->status = DEC_OK;
	c.buf = data;
	c.pos = 0;
	c.cap = (uint32_t)caplen;
	c.end = NO_END;
	st = decode_link(out, &c, link);
	verify_checksums(out, &c, rx);
	return st;
}

int dec_has(const struct dec_packet *p, enum dec_layer_kind k)
{
	unsigned i;

	for (i = 0; i < p->n_layers; i++)
		if (p->order[i] == k)
			return 1;
	return 0;
}
