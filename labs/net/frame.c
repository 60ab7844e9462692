/* frame.c: bounds-checked decoding of the frames the wire carries, and their one-line summaries. */
#include "net/frame.h"

#include <stdio.h>
#include <string.h>

/* A read cursor: every read checks the bytes left first. */
struct cur {
	const uint8_t *p;
	size_t len, off;
};

static int cur_need(const struct cur *c, size_t n)
{
	return c->len - c->off >= n;
}

static int cur_u8(struct cur *c, uint8_t *v)
{
	if (!cur_need(c, 1))
		return -1;
	*v = c->p[c->off++];
	return 0;
}

static int cur_u16(struct cur *c, uint16_t *v)
{
	if (!cur_need(c, 2))
		return -1;
	*v = (uint16_t)(c->p[c->off] << 8 | c->p[c->off + 1]);
	c->off += 2;
	return 0;
}

static int cur_u32(struct cur *c, uint32_t *v)
{
	if (!cur_need(c, 4))
		return -1;
	*v = (uint32_t)c->p[c->off] << 24 | (uint32_t)c->p[c->off + 1] << 16 |
	     (uint32_t)c->p[c->off + 2] << 8 | c->p[c->off + 3];
	c->off += 4;
	return 0;
}

static int cur_bytes(struct cur *c, uint8_t *out, size_t n)
{
	if (!cur_need(c, n))
		return -1;
	memcpy(out, c->p + c->off, n);
	c->off += n;
	return 0;
}

static int cur_skip(struct cur *c, size_t n)
{
	if (!cur_need(c, n))
		return -1;
	c->off += n;
	return 0;
}

/* ARP for Ethernet and IPv4 (RFC 826). */
static enum frame_status parse_arp(struct cur *c, struct frame_info *fi)
{
	uint16_t htype, ptype;
	uint8_t hlen, plen, tha[6];

	if (cur_u16(c, &htype) || cur_u16(c, &ptype) || cur_u8(c, &hlen) || cur_u8(c, &plen) ||
	    cur_u16(c, &fi->arp_op))
		return FRAME_TRUNCATED;
	if (htype != 1 || ptype != FRAME_ETH_P_IP || hlen != 6 || plen != 4)
		return FRAME_UNSUPPORTED;
	if (cur_bytes(c, fi->arp_sha, 6) || cur_u32(c, &fi->arp_spa) || cur_bytes(c, tha, 6) ||
	    cur_u32(c, &fi->arp_tpa))
		return FRAME_TRUNCATED;
	return FRAME_OK;
}

static enum frame_status parse_l4(struct cur *c, struct frame_info *fi, size_t l4_len)
{
	struct cur l4 = {c->p + c->off, l4_len, 0};
	uint16_t sum, urg;
	uint8_t doff_byte;

	switch (fi->proto) {
	case 17: /* UDP, RFC 768 */
		if (cur_u16(&l4, &fi->sport) || cur_u16(&l4, &fi->dport) ||
		    cur_u16(&l4, &fi->udp_len) || cur_u16(&l4, &sum))
			return FRAME_TRUNCATED;
		if (fi->udp_len < 8)
			return FRAME_INVALID;
		break;
	case 6: /* TCP, RFC 9293 section 3.1 */
		if (cur_u16(&l4, &fi->sport) || cur_u16(&l4, &fi->dport) ||
		    cur_u32(&l4, &fi->tcp_seq) || cur_u32(&l4, &fi->tcp_ack) ||
		    cur_u8(&l4, &doff_byte) || cur_u8(&l4, &fi->tcp_flags) ||
		    cur_u16(&l4, &fi->tcp_win) || cur_u16(&l4, &sum) || cur_u16(&l4, &urg))
			return FRAME_TRUNCATED;
		if ((doff_byte >> 4) < 5)
			return FRAME_INVALID;
		if (cur_skip(&l4, (size_t)(doff_byte >> 4) * 4 - 20))
			return FRAME_TRUNCATED;
		break;
	case 1: /* ICMP, RFC 792 */
		if (cur_u8(&l4, &fi->icmp_type) || cur_u8(&l4, &fi->icmp_code) || cur_u16(&l4, &sum))
			return FRAME_TRUNCATED;
		break;
	default:
		return FRAME_OK;
	}
	fi->has_l4 = 1;
	fi->payload = l4.p + l4.off;
	fi->payload_len = l4.len - l4.off;
	return FRAME_OK;
}

/* IPv4, RFC 791 section 3.1. */
static enum frame_status parse_ipv4(struct cur *c, struct frame_info *fi)
{
	uint8_t vihl, tos;
	uint16_t flags_off, csum;
	size_t hlen, start = c->off;

	if (cur_u8(c, &vihl) || cur_u8(c, &tos) || cur_u16(c, &fi->ip_total_len) ||
	    cur_u16(c, &fi->ip_id) || cur_u16(c, &flags_off) || cur_u8(c, &fi->ttl) ||
	    cur_u8(c, &fi->proto) || cur_u16(c, &csum) || cur_u32(c, &fi->src) ||
	    cur_u32(c, &fi->dst))
		return FRAME_TRUNCATED;
	if (vihl >> 4 != 4 || (vihl & 15) < 5)
		return FRAME_INVALID;
	hlen = (size_t)(vihl & 15) * 4;
	if (fi->ip_total_len < hlen)
		return FRAME_INVALID;
	if (c->len - start < fi->ip_total_len)
		return FRAME_TRUNCATED;
	fi->is_ipv4 = 1;
	fi->dont_frag = (flags_off & 0x4000) != 0;
	fi->more_frags = (flags_off & 0x2000) != 0;
	fi->frag_off = (uint16_t)((flags_off & 0x1fff) * 8);
	c->off = start + hlen;
	fi->ip_payload_len = fi->ip_total_len - hlen;
	if (fi->frag_off != 0)
		return FRAME_OK; /* a later fragment: no transport header here */
	return parse_l4(c, fi, fi->ip_payload_len);
}

enum frame_status frame_parse(const uint8_t *frame, size_t len, struct frame_info *fi)
{
	struct cur c = {frame, len, 0};

	memset(fi, 0, sizeof *fi);
	if (cur_bytes(&c, fi->dst_mac, 6) || cur_bytes(&c, fi->src_mac, 6) ||
	    cur_u16(&c, &fi->ethertype)) {
		fi->status = FRAME_TRUNCATED;
		return fi->status;
	}
	switch (fi->ethertype) {
	case FRAME_ETH_P_ARP:
		fi->status = parse_arp(&c, fi);
		break;
	case FRAME_ETH_P_IP:
		fi->status = parse_ipv4(&c, fi);
		break;
	default:
		fi->status = FRAME_UNSUPPORTED;
	}
	return fi->status;
}

void frame_ip_str(uint32_t a, char out[16])
{
	snprintf(out, 16, "%u.%u.%u.%u", a >> 24, (a >> 16) & 255, (a >> 8) & 255, a & 255);
}

void frame_mac_str(const uint8_t m[6], char out[18])
{
	snprintf(out, 18, "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
}

const char *frame_proto_name(const struct frame_info *fi)
{
	if (fi->ethertype == FRAME_ETH_P_ARP)
		return "ARP";
	if (fi->ethertype == FRAME_ETH_P_IPV6)
		return "IPv6";
	if (!fi->is_ipv4)
		return "other";
	if (fi->frag_off != 0)
		return "IPv4";
	switch (fi->proto) {
	case 17:
		return "UDP";
	case 6:
		return "TCP";
	case 1:
		return "ICMP";
	default:
		return "IPv4";
	}
}

/* TCP flags the way tcpdump writes them: [S.], [P.], [F.], [R]. */
static void tcp_flags_str(uint8_t f, char out[12])
{
	size_t n = 0;

	if (f & 0x02)
		out[n++] = 'S';
	if (f & 0x01)
		out[n++] = 'F';
	if (f & 0x04)
		out[n++] = 'R';
	if (f & 0x08)
		out[n++] = 'P';
	if (f & 0x20)
		out[n++] = 'U';
	if (f & 0x10)
		out[n++] = '.';
	out[n] = '\0';
	if (n == 0)
		snprintf(out, 12, "none");
}

size_t frame_summary(const struct frame_info *fi, size_t frame_len, char *out, size_t cap)
{
	char s[16], d[16], mac[18], flags[12], frag[64] = "";
	int n;

	if (cap == 0)
		return 0;
	if (fi->ethertype == FRAME_ETH_P_ARP && fi->status == FRAME_OK) {
		frame_ip_str(fi->arp_tpa, d);
		frame_ip_str(fi->arp_spa, s);
		if (fi->arp_op == 1) {
			n = snprintf(out, cap, "ARP who-has %s tell %s", d, s);
		} else if (fi->arp_op == 2) {
			frame_mac_str(fi->arp_sha, mac);
			n = snprintf(out, cap, "ARP %s is-at %s", s, mac);
		} else {
			n = snprintf(out, cap, "ARP op %u", fi->arp_op);
		}
		return n < 0 ? 0 : ((size_t)n < cap ? (size_t)n : cap - 1);
	}
	if (!fi->is_ipv4) {
		n = snprintf(out, cap, "%s frame, ethertype 0x%04x, %zu bytes%s",
			     fi->ethertype == FRAME_ETH_P_IPV6 ? "IPv6" : "Ethernet", fi->ethertype,
			     frame_len, fi->status == FRAME_TRUNCATED ? " (truncated)" : "");
		return n < 0 ? 0 : ((size_t)n < cap ? (size_t)n : cap - 1);
	}
	frame_ip_str(fi->src, s);
	frame_ip_str(fi->dst, d);
	if (fi->more_frags || fi->frag_off)
		snprintf(frag, sizeof frag, ", IP fragment id %u offset %u%s", fi->ip_id,
			 fi->frag_off, fi->more_frags ? " +MF" : "");
	if (fi->frag_off != 0) {
		n = snprintf(out, cap, "IPv4 %s → %s proto %u len %zu%s", s, d, fi->proto,
			     fi->ip_payload_len, frag);
	} else if (fi->has_l4 && fi->proto == 17) {
		n = snprintf(out, cap, "UDP %s:%u → %s:%u len %u%s", s, fi->sport, d, fi->dport,
			     fi->udp_len - 8, frag);
	} else if (fi->has_l4 && fi->proto == 6) {
		tcp_flags_str(fi->tcp_flags, flags);
		n = snprintf(out, cap, "TCP %s:%u → %s:%u [%s] seq %u ack %u win %u len %zu%s", s,
			     fi->sport, d, fi->dport, flags, fi->tcp_seq, fi->tcp_ack, fi->tcp_win,
			     fi->payload_len, frag);
	} else if (fi->has_l4 && fi->proto == 1) {
		n = snprintf(out, cap, "ICMP %s → %s type %u code %u%s", s, d, fi->icmp_type,
			     fi->icmp_code, frag);
	} else {
		n = snprintf(out, cap, "IPv4 %s → %s proto %u len %zu%s%s", s, d, fi->proto,
			     fi->ip_payload_len, frag,
			     fi->status == FRAME_TRUNCATED ? " (truncated)" : "");
	}
	return n < 0 ? 0 : ((size_t)n < cap ? (size_t)n : cap - 1);
}
