/* decode_json.c: the one place a decoded packet becomes JSON (layers, fields, byte spans). */
#include "decode.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

struct tok {
	unsigned v;
	const char *name;
};

static const struct tok ethertypes[] = {
	{0x0800, "IPv4"}, {0x86dd, "IPv6"}, {0x0806, "ARP"}, {0x8100, "802.1Q"}, {0, NULL}};
static const struct tok ipprotos[] = {
	{1, "ICMP"}, {6, "TCP"}, {17, "UDP"}, {58, "ICMPv6"}, {0, "hop-by-hop options"},
	{43, "routing"}, {44, "fragment"}, {59, "no next header"}, {60, "destination options"},
	{0, NULL}};
static const struct tok sll_pkttypes[] = {
	{0, "to us"}, {1, "broadcast"}, {2, "multicast"}, {3, "to another host"}, {4, "sent by us"},
	{0, NULL}};
static const struct tok arp_ops[] = {{1, "request"}, {2, "reply"}, {0, NULL}};
/* RFC 792 (and RFC 1191 for code 4 of type 3). */
static const struct tok icmp_types[] = {
	{0, "echo reply"}, {3, "destination unreachable"}, {4, "source quench"}, {5, "redirect"},
	{8, "echo request"}, {11, "time exceeded"}, {12, "parameter problem"}, {13, "timestamp"},
	{14, "timestamp reply"}, {0, NULL}};
static const struct tok icmp_unreach_codes[] = {
	{0, "network unreachable"}, {1, "host unreachable"}, {2, "protocol unreachable"},
	{3, "port unreachable"}, {4, "fragmentation needed and DF set"},
	{5, "source route failed"}, {0, NULL}};
static const struct tok icmp_exceeded_codes[] = {
	{0, "time to live exceeded in transit"}, {1, "fragment reassembly time exceeded"},
	{0, NULL}};

static const char *tok_name(const struct tok *t, unsigned v)
{
	for (; t->name; t++)
		if (t->v == v)
			return t->name;
	return NULL;
}

static json_t *hex_json(const uint8_t *b, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	char buf[2 * 64 + 1];
	size_t i;

	if (n > 64)
		n = 64;
	for (i = 0; i < n; i++) {
		buf[2 * i] = hex[b[i] >> 4];
		buf[2 * i + 1] = hex[b[i] & 15];
	}
	return json_stringn(buf, 2 * n);
}

static json_t *mac_json(const uint8_t *m)
{
	char buf[18];

	snprintf(buf, sizeof buf, "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
	return json_string(buf);
}

static json_t *ip_json(int af, const uint8_t *a)
{
	char buf[INET6_ADDRSTRLEN];

	if (!inet_ntop(af, a, buf, sizeof buf))
		return json_string("?");
	return json_string(buf);
}

/* {"name","value",["text"],"off","len"} appended to arr when the field was
 * reached (at.len != 0). value is stolen. Returns the field, or NULL. */
static json_t *field(json_t *arr, const char *name, json_t *value, const char *text,
		     struct dec_span at)
{
	json_t *f;

	if (at.len == 0) {
		json_decref(value);
		return NULL;
	}
	f = json_object();
	json_object_set_new(f, "name", json_string(name));
	json_object_set_new(f, "value", value ? value : json_null());
	if (text)
		json_object_set_new(f, "text", json_string(text));
	json_object_set_new(f, "off", json_integer(at.off));
	json_object_set_new(f, "len", json_integer(at.len));
	json_array_append_new(arr, f);
	return f;
}

static json_t *num(long long v)
{
	return json_integer(v);
}

static const char *hex16(uint16_t v, char *buf, size_t len)
{
	snprintf(buf, len, "0x%04x", v);
	return buf;
}

static const char *csum_source(enum dec_csum_reason r)
{
	if (r == DEC_CSUM_R_OFFLOAD)
		return "kernel";
	if (r == DEC_CSUM_R_OFFLOAD_INFERRED)
		return "inferred";
	return "computed";
}

json_t *dec_csum_json(const struct dec_csum *c)
{
	json_t *o;

	if (!c || c->status == DEC_CSUM_UNCHECKED)
		return NULL;
	o = json_object();
	json_object_set_new(o, "status", json_string(dec_csum_status_name(c->status)));
	json_object_set_new(o, "reason", json_string(dec_csum_reason_name(c->reason)));
	json_object_set_new(o, "source", json_string(csum_source(c->reason)));
	json_object_set_new(o, "value", json_integer(c->found));
	if (c->has_expected && c->status != DEC_CSUM_GOOD)
		json_object_set_new(o, "expected", json_integer(c->expected));
	json_object_set_new(o, "why", json_string(dec_csum_why(c->reason)));
	return o;
}

/* The checksum field of the tree with its verdict under "check". */
static void csum_field(json_t *a, uint16_t v, const struct dec_csum *c, struct dec_span at)
{
	char t[16];
	json_t *f = field(a, "checksum", num(v), hex16(v, t, sizeof t), at);
	json_t *k = dec_csum_json(c);

	if (f && k)
		json_object_set_new(f, "check", k);
	else
		json_decref(k);
}

json_t *dec_checksums_json(const struct dec_csum *ip4, const struct dec_csum *l4,
			   enum dec_layer_kind l4_kind)
{
	json_t *o = json_object(), *k;

	k = dec_csum_json(ip4);
	if (k)
		json_object_set_new(o, "ipv4", k);
	k = dec_csum_json(l4);
	if (k)
		json_object_set_new(o, dec_layer_name(l4_kind), k);
	return o;
}

const char *dec_checksums_text(const json_t *checksums, char *buf, size_t len)
{
	const char *layer;
	const json_t *k;
	size_t off = 0;

	if (len == 0)
		return buf;
	buf[0] = '\0';
	json_object_foreach((json_t *)checksums, layer, k) {
		const char *st = json_string_value(json_object_get(k, "status"));
		const char *why = json_string_value(json_object_get(k, "reason"));
		json_int_t v = json_integer_value(json_object_get(k, "value"));
		const json_t *e = json_object_get(k, "expected");
		int w;

		if (!st || !why || !strcmp(st, "good") || !strcmp(st, "none"))
			continue;
		if (!strcmp(st, "bad") && e)
			w = snprintf(buf + off, len - off, "%s%s checksum 0x%04llx bad, should be 0x%04llx",
				     off ? "; " : "", layer, (long long)v,
				     (long long)json_integer_value(e));
		else if (!strcmp(st, "not_computed"))
			w = snprintf(buf + off, len - off, "%s%s checksum 0x%04llx not computed (%s)",
				     off ? "; " : "", layer, (long long)v,
				     !strcmp(why, "offload") ? "offload"
							     : "offload, inferred from the value");
		else
			w = snprintf(buf + off, len - off, "%s%s checksum 0x%04llx %s (%s)",
				     off ? "; " : "", layer, (long long)v, st, why);
		if (w < 0 || (size_t)w >= len - off)
			break;
		off += (size_t)w;
	}
	return buf;
}

static void sll_fields(json_t *a, const struct dec_sll *s)
{
	char t[16];

	field(a, "packet_type", num(s->pkttype), tok_name(sll_pkttypes, s->pkttype),
	      s->at[DEC_SLL_PKTTYPE]);
	field(a, "link_type", num(s->hatype), NULL, s->at[DEC_SLL_HATYPE]);
	field(a, "address_length", num(s->halen), NULL, s->at[DEC_SLL_HALEN]);
	field(a, "address", hex_json(s->addr, s->halen <= 8 ? s->halen : 8), NULL,
	      s->at[DEC_SLL_ADDR]);
	field(a, "protocol", num(s->type), tok_name(ethertypes, s->type) ? tok_name(ethertypes, s->type)
									 : hex16(s->type, t, sizeof t),
	      s->at[DEC_SLL_TYPE]);
}

static void eth_fields(json_t *a, const struct dec_eth *e)
{
	char t[32];

	field(a, "dst", mac_json(e->dst), NULL, e->at[DEC_ETH_DST]);
	field(a, "src", mac_json(e->src), NULL, e->at[DEC_ETH_SRC]);
	if (e->at[DEC_ETH_VLAN].len) {
		snprintf(t, sizeof t, "VLAN %u, priority %u", e->vlan_tci & 0xfff, e->vlan_tci >> 13);
		field(a, "vlan", num(e->vlan_tci & 0xfff), t, e->at[DEC_ETH_VLAN]);
	}
	field(a, "type", num(e->type), tok_name(ethertypes, e->type) ? tok_name(ethertypes, e->type)
								       : hex16(e->type, t, sizeof t),
	      e->at[DEC_ETH_TYPE]);
}

static void arp_fields(json_t *a, const struct dec_arp *r)
{
	char t[16];

	field(a, "hardware_type", num(r->htype), r->htype == 1 ? "Ethernet" : NULL,
	      r->at[DEC_ARP_HTYPE]);
	field(a, "protocol_type", num(r->ptype), tok_name(ethertypes, r->ptype) ? tok_name(ethertypes, r->ptype)
										: hex16(r->ptype, t, sizeof t),
	      r->at[DEC_ARP_PTYPE]);
	field(a, "hardware_length", num(r->hlen), NULL, r->at[DEC_ARP_HLEN]);
	field(a, "protocol_length", num(r->plen), NULL, r->at[DEC_ARP_PLEN]);
	field(a, "opcode", num(r->op), tok_name(arp_ops, r->op), r->at[DEC_ARP_OP]);
	field(a, "sender_mac", mac_json(r->sha), NULL, r->at[DEC_ARP_SHA]);
	field(a, "sender_ip", ip_json(AF_INET, r->spa), NULL, r->at[DEC_ARP_SPA]);
	field(a, "target_mac", mac_json(r->tha), NULL, r->at[DEC_ARP_THA]);
	field(a, "target_ip", ip_json(AF_INET, r->tpa), NULL, r->at[DEC_ARP_TPA]);
}

static void ip4_fields(json_t *a, const struct dec_ipv4 *ip)
{
	char t[64];

	field(a, "version", num(ip->version), NULL, ip->at[DEC_IP4_VERSION]);
	snprintf(t, sizeof t, "%u bytes", ip->ihl * 4u);
	field(a, "ihl", num(ip->ihl), t, ip->at[DEC_IP4_IHL]);
	snprintf(t, sizeof t, "DSCP %u, ECN %u", ip->tos >> 2, ip->tos & 3u);
	field(a, "tos", num(ip->tos), t, ip->at[DEC_IP4_TOS]);
	field(a, "total_length", num(ip->total_len), NULL, ip->at[DEC_IP4_TOTLEN]);
	field(a, "id", num(ip->id), hex16(ip->id, t, sizeof t), ip->at[DEC_IP4_ID]);
	snprintf(t, sizeof t, "%s%s%s", ip->flags & 2 ? "DF" : "",
		 (ip->flags & 2) && (ip->flags & 1) ? ", " : "", ip->flags & 1 ? "MF" : "");
	field(a, "flags", num(ip->flags), t[0] ? t : "none", ip->at[DEC_IP4_FLAGS]);
	snprintf(t, sizeof t, "%u bytes", ip->frag_off * 8u);
	field(a, "fragment_offset", num(ip->frag_off), t, ip->at[DEC_IP4_FRAG]);
	field(a, "ttl", num(ip->ttl), NULL, ip->at[DEC_IP4_TTL]);
	field(a, "protocol", num(ip->proto), tok_name(ipprotos, ip->proto), ip->at[DEC_IP4_PROTO]);
	csum_field(a, ip->checksum, &ip->csum, ip->at[DEC_IP4_CSUM]);
	field(a, "src", ip_json(AF_INET, ip->src), NULL, ip->at[DEC_IP4_SRC]);
	field(a, "dst", ip_json(AF_INET, ip->dst), NULL, ip->at[DEC_IP4_DST]);
	if (ip->at[DEC_IP4_OPTIONS].len)
		field(a, "options",
		      hex_json(ip->options, ip->at[DEC_IP4_OPTIONS].len), NULL,
		      ip->at[DEC_IP4_OPTIONS]);
}

static void ip6_fields(json_t *a, const struct dec_ipv6 *ip)
{
	char t[32];
	unsigned i;

	field(a, "version", num(ip->version), NULL, ip->at[DEC_IP6_VERSION]);
	snprintf(t, sizeof t, "DSCP %u, ECN %u", ip->tclass >> 2, ip->tclass & 3u);
	field(a, "traffic_class", num(ip->tclass), t, ip->at[DEC_IP6_TCLASS]);
	field(a, "flow_label", num(ip->flow), NULL, ip->at[DEC_IP6_FLOW]);
	field(a, "payload_length", num(ip->payload_len), NULL, ip->at[DEC_IP6_PLEN]);
	field(a, "next_header", num(ip->next), tok_name(ipprotos, ip->next), ip->at[DEC_IP6_NEXT]);
	field(a, "hop_limit", num(ip->hop_limit), NULL, ip->at[DEC_IP6_HLIM]);
	field(a, "src", ip_json(AF_INET6, ip->src), NULL, ip->at[DEC_IP6_SRC]);
	field(a, "dst", ip_json(AF_INET6, ip->dst), NULL, ip->at[DEC_IP6_DST]);
	for (i = 0; i < ip->n_ext; i++) {
		const struct dec_ip6_ext *e = &ip->ext[i];
		json_t *f = field(a, "extension", num(e->type), tok_name(ipprotos, e->type), e->span);
		json_t *kids;

		if (!f)
			continue;
		kids = json_array();
		field(kids, "next_header", num(e->next), tok_name(ipprotos, e->next),
		      (struct dec_span){e->span.off, 1});
		field(kids, "length", num(e->len), NULL,
		      (struct dec_span){e->span.off + 1, e->type == 44 ? 0 : 1});
		if (e->type == 44) {
			field(kids, "fragment_offset", num(e->frag_off), NULL,
			      (struct dec_span){e->span.off + 2, 2});
			field(kids, "more_fragments", json_boolean(e->more), NULL,
			      (struct dec_span){e->span.off + 3, 1});
		}
		json_object_set_new(f, "children", kids);
	}
}

/* The value of one option: what it says, as JSON (stolen by the caller). */
static json_t *opt_value(const struct dec_tcp_opt *o, char *text,
			 size_t tlen)
{
	json_t *v;
	int i;

	text[0] = '\0';
	if (o->status != DEC_OK)
		return json_null();
	switch (o->kind) {
	case DEC_TCPOPT_EOL:
	case DEC_TCPOPT_NOP:
		return json_null();
	case DEC_TCPOPT_MSS:
		snprintf(text, tlen, "%u bytes", o->u.mss);
		return json_integer(o->u.mss);
	case DEC_TCPOPT_WSCALE:
		if (o->u.wscale <= 14)
			snprintf(text, tlen, "shift %u (window x %u)", o->u.wscale, 1u << o->u.wscale);
		else
			snprintf(text, tlen, "shift %u (above 14: treated as 14)", o->u.wscale);
		return json_integer(o->u.wscale);
	case DEC_TCPOPT_SACK_PERM:
		return json_true();
	case DEC_TCPOPT_TS:
		snprintf(text, tlen, "TSval %u TSecr %u", o->u.ts.val, o->u.ts.ecr);
		return json_pack("{s:I, s:I}", "val", (json_int_t)o->u.ts.val, "ecr",
				 (json_int_t)o->u.ts.ecr);
	case DEC_TCPOPT_SACK:
		v = json_array();
		for (i = 0; i < o->u.sack.n; i++)
			json_array_append_new(v, json_pack("[I, I]", (json_int_t)o->u.sack.left[i],
							   (json_int_t)o->u.sack.right[i]));
		snprintf(text, tlen, "%u block%s", o->u.sack.n, o->u.sack.n == 1 ? "" : "s");
		return v;
	default:
		snprintf(text, tlen, "kind %u, %u bytes", o->kind, o->len);
		return hex_json(o->u.raw, o->len > 2 ? o->len - 2u : 0);
	}
}

static void tcp_fields(json_t *a, const struct dec_tcp *t)
{
	char txt[96] = "";
	json_t *f;
	unsigned i;

	field(a, "sport", num(t->sport), NULL, t->at[DEC_TCP_SPORT]);
	field(a, "dport", num(t->dport), NULL, t->at[DEC_TCP_DPORT]);
	field(a, "seq", num(t->seq), NULL, t->at[DEC_TCP_SEQ]);
	field(a, "ack", num(t->ack), NULL, t->at[DEC_TCP_ACKNO]);
	if (t->at[DEC_TCP_DOFF].len)
		snprintf(txt, sizeof txt, "%u bytes", t->doff * 4u);
	field(a, "data_offset", num(t->doff), txt, t->at[DEC_TCP_DOFF]);
	field(a, "flags", num(t->flags), dec_tcp_flags_text(t->flags, txt, sizeof txt),
	      t->at[DEC_TCP_FLAGS]);
	field(a, "window", num(t->window), NULL, t->at[DEC_TCP_WIN]);
	csum_field(a, t->checksum, &t->csum, t->at[DEC_TCP_CSUM]);
	field(a, "urgent_pointer", num(t->urgent), NULL, t->at[DEC_TCP_URGPTR]);
	f = field(a, "options", num(t->n_opts), NULL, t->at[DEC_TCP_OPTIONS]);
	if (f) {
		json_t *kids = json_array();

		for (i = 0; i < t->n_opts; i++) {
			const struct dec_tcp_opt *o = &t->opt[i];
			json_t *v = opt_value(o, txt, sizeof txt);
			json_t *of = field(kids, dec_tcpopt_name(o->kind), v, txt[0] ? txt : NULL,
					   o->span);

			if (!of)
				continue;
			json_object_set_new(of, "kind", json_integer(o->kind));
			if (o->status != DEC_OK) {
				json_object_set_new(of, "status", json_string(dec_status_name(o->status)));
				json_object_set_new(of, "why", json_string(o->why ? o->why : ""));
			}
		}
		json_object_set_new(f, "children", kids);
	}
}

static void udp_fields(json_t *a, const struct dec_udp *u)
{
	field(a, "sport", num(u->sport), NULL, u->at[DEC_UDP_SPORT]);
	field(a, "dport", num(u->dport), NULL, u->at[DEC_UDP_DPORT]);
	field(a, "length", num(u->len), NULL, u->at[DEC_UDP_LEN]);
	csum_field(a, u->checksum, &u->csum, u->at[DEC_UDP_CSUM]);
}

static void icmp_fields(json_t *a, const struct dec_icmp *m)
{
	const char *code = m->type == 3    ? tok_name(icmp_unreach_codes, m->code)
			   : m->type == 11 ? tok_name(icmp_exceeded_codes, m->code)
					   : NULL;

	field(a, "type", num(m->type), tok_name(icmp_types, m->type), m->at[DEC_ICMP_TYPE]);
	field(a, "code", num(m->code), code, m->at[DEC_ICMP_CODE]);
	csum_field(a, m->checksum, &m->csum, m->at[DEC_ICMP_CSUM]);
	if (m->at[DEC_ICMP_ID].len) {
		field(a, "identifier", num(m->id), NULL, m->at[DEC_ICMP_ID]);
		field(a, "sequence", num(m->seq), NULL, m->at[DEC_ICMP_SEQ]);
	}
	if (m->at[DEC_ICMP_MTU].len)
		field(a, "next_hop_mtu", num(m->mtu), NULL, m->at[DEC_ICMP_MTU]);
	if (m->at[DEC_ICMP_REST].len)
		field(a, "rest_of_header", num(m->rest), NULL, m->at[DEC_ICMP_REST]);
}

static const char *link_name(int link)
{
	switch (link) {
	case DEC_LINK_ETHERNET:
		return "ethernet";
	case DEC_LINK_RAW:
		return "raw";
	case DEC_LINK_SLL:
		return "linux-sll";
	case DEC_LINK_IPV4:
		return "ipv4";
	case DEC_LINK_IPV6:
		return "ipv6";
	default:
		return "unknown";
	}
}

static json_t *layer_json(const struct dec_packet *p, enum dec_layer_kind k)
{
	const struct dec_layer *l = &p->layer[k];
	json_t *o = json_object(), *fields = json_array();
	char t[32];

	json_object_set_new(o, "layer", json_string(dec_layer_name(k)));
	json_object_set_new(o, "status", json_string(dec_status_name(l->status)));
	if (l->why)
		json_object_set_new(o, "why", json_string(l->why));
	json_object_set_new(o, "off", json_integer(l->span.off));
	json_object_set_new(o, "len", json_integer(l->span.len));
	switch (k) {
	case DEC_L_SLL:
		sll_fields(fields, &p->sll);
		break;
	case DEC_L_ETH:
		eth_fields(fields, &p->eth);
		break;
	case DEC_L_ARP:
		arp_fields(fields, &p->arp);
		break;
	case DEC_L_IPV4:
		ip4_fields(fields, &p->ip4);
		break;
	case DEC_L_IPV6:
		ip6_fields(fields, &p->ip6);
		break;
	case DEC_L_TCP:
		tcp_fields(fields, &p->tcp);
		break;
	case DEC_L_UDP:
		udp_fields(fields, &p->udp);
		break;
	case DEC_L_ICMP:
		icmp_fields(fields, &p->icmp);
		break;
	case DEC_L_PAYLOAD:
		snprintf(t, sizeof t, "%u bytes", p->payload.len);
		field(fields, "data", num(p->payload.len), t, p->payload);
		break;
	default:
		break;
	}
	json_object_set_new(o, "fields", fields);
	return o;
}

json_t *dec_packet_json(const struct dec_packet *p)
{
	json_t *o = json_object(), *layers = json_array();
	unsigned i;

	json_object_set_new(o, "status", json_string(dec_status_name(p->status)));
	if (p->why)
		json_object_set_new(o, "why", json_string(p->why));
	json_object_set_new(o, "link", json_string(link_name(p->link)));
	json_object_set_new(o, "caplen", json_integer(p->caplen));
	json_object_set_new(o, "wirelen", json_integer(p->wirelen));
	for (i = 0; i < p->n_layers; i++)
		json_array_append_new(layers, layer_json(p, p->order[i]));
	json_object_set_new(o, "layers", layers);
	return o;
}

json_t *dec_tcp_options_json(const struct dec_tcp *t)
{
	json_t *a = json_array();
	char txt[96];
	unsigned i;

	for (i = 0; i < t->n_opts; i++) {
		const struct dec_tcp_opt *o = &t->opt[i];
		json_t *v = opt_value(o, txt, sizeof txt);
		json_t *j = json_pack("{s:i, s:s}", "kind", o->kind, "name", dec_tcpopt_name(o->kind));

		if (!json_is_null(v))
			json_object_set(j, "value", v);
		if (txt[0])
			json_object_set_new(j, "text", json_string(txt));
		if (o->status != DEC_OK)
			json_object_set_new(j, "status", json_string(dec_status_name(o->status)));
		json_decref(v);
		json_array_append_new(a, j);
	}
	return a;
}
