/* decode.h: packet decoders (Ethernet, Linux cooked, ARP, IPv4, IPv6, TCP, UDP, ICMP): pure functions over bytes. */
#ifndef SOCKLAB_DECODE_H
#define SOCKLAB_DECODE_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

/*
 * dec_packet() reads one captured frame through a single bounds-checked
 * cursor and fills a plain struct: every field's value and where it lies in
 * the frame (offset and length in bytes, so a viewer can highlight it). Every
 * length field (IPv4 IHL and total length, IPv6 payload length and extension
 * header lengths, TCP data offset, TCP option lengths, UDP length) is checked
 * against the bytes it claims before it is used. Bad input is a status, never
 * a crash or a read outside the buffer:
 *   ok           every layer decoded;
 *   truncated    the capture stops before the end of a header (a short
 *                snapshot, or a frame shorter than its IP length says);
 *   invalid      a length or value contradicts the protocol (data offset
 *                below 5, an option longer than the option space, ...);
 *   unsupported  a protocol or link type these decoders do not read.
 * The first layer that is not ok sets the packet's status; layers after it
 * are not decoded. dec_packet_json() (decode_json.c) is the one place that
 * turns the struct into JSON.
 *
 * Checksums (the IPv4 header's, RFC 791; TCP's and UDP's over their
 * pseudo-headers, RFC 9293 3.1, RFC 768, RFC 8200 8.1) are verified after
 * decoding, from the bytes, and never change the packet's status: a frame
 * with a bad checksum is still a well-formed frame. Each has one
 * dec_csum_status and the reason for it (struct dec_csum below).
 */

/* What the capture knew about a frame's transport checksum: the rx flags of
 * dec_packet_rx(), the same values as capture.h's CAP_CSUM_*. */
enum {
	DEC_RX_CSUM_NOT_READY = 1, /* the kernel left a partial sum for the device (offload) */
	DEC_RX_CSUM_VALID = 2,     /* the receiving kernel (or its NIC) verified it; the
				    * verdict still comes from the bytes */
};

enum dec_csum_status {
	DEC_CSUM_UNCHECKED = 0, /* the field was not reached */
	DEC_CSUM_GOOD,          /* it matches the bytes it covers */
	DEC_CSUM_BAD,           /* it does not: expected holds the right value */
	DEC_CSUM_NOT_COMPUTED,  /* a partial (pseudo-header) sum left for checksum offload */
	DEC_CSUM_UNVERIFIABLE,  /* bytes it covers are missing (short capture, fragment, ...) */
	DEC_CSUM_NONE,          /* UDP over IPv4 with checksum 0: the sender computed none */
};

enum dec_csum_reason {
	DEC_CSUM_R_NONE = 0,
	DEC_CSUM_R_MATCH,            /* good */
	DEC_CSUM_R_MISMATCH,         /* bad */
	DEC_CSUM_R_UDP6_ZERO,        /* bad: 0 over IPv6, which RFC 8200 forbids */
	DEC_CSUM_R_OFFLOAD,          /* not computed: the capture's flag says so (the kernel) */
	DEC_CSUM_R_OFFLOAD_INFERRED, /* not computed: the value is the partial sum (no flag) */
	DEC_CSUM_R_TRUNCATED,        /* unverifiable: the capture holds part of the bytes */
	DEC_CSUM_R_FRAGMENT,         /* unverifiable: it covers the reassembled datagram */
	DEC_CSUM_R_ROUTING,          /* unverifiable: an IPv6 routing header changes the address */
	DEC_CSUM_R_MALFORMED,        /* unverifiable: the header itself is invalid */
	DEC_CSUM_R_UDP_ZERO,         /* none */
	DEC_CSUM_R_COUNT,
};

/* A checksum's verdict. found is the header's value; expected (when
 * has_expected) is what a complete, correct checksum over these bytes is:
 * for a bad one the value it should have had, for a not-computed one the
 * value the device would have written. */
struct dec_csum {
	enum dec_csum_status status;
	enum dec_csum_reason reason;
	uint16_t found, expected;
	uint8_t has_expected;
};

enum dec_status {
	DEC_OK = 0,
	DEC_TRUNCATED,
	DEC_INVALID,
	DEC_UNSUPPORTED,
};

/* Link types, numbered as in pcap files (LINKTYPE_*). */
enum dec_link {
	DEC_LINK_ETHERNET = 1,
	DEC_LINK_RAW = 101,   /* IPv4 or IPv6, by the version nibble */
	DEC_LINK_SLL = 113,   /* Linux "cooked" capture (tcpdump -i any) */
	DEC_LINK_IPV4 = 228,
	DEC_LINK_IPV6 = 229,
};

/* Where a field lies: offset from the frame's first byte and length in
 * bytes. A bit field reports the bytes that hold it. len 0: absent. */
struct dec_span {
	uint32_t off, len;
};

enum dec_layer_kind {
	DEC_L_SLL,
	DEC_L_ETH,
	DEC_L_ARP,
	DEC_L_IPV4,
	DEC_L_IPV6,
	DEC_L_TCP,
	DEC_L_UDP,
	DEC_L_ICMP,
	DEC_L_PAYLOAD,
	DEC_L_COUNT,
};

struct dec_layer {
	enum dec_status status;
	const char *why;      /* static English text when status is not ok */
	struct dec_span span; /* the header's bytes (as far as captured) */
};

enum dec_eth_field { DEC_ETH_DST, DEC_ETH_SRC, DEC_ETH_VLAN, DEC_ETH_TYPE, DEC_ETH_N };
struct dec_eth {
	uint8_t dst[6], src[6];
	uint16_t vlan_tci; /* with an 802.1Q tag (at[DEC_ETH_VLAN].len != 0) */
	uint16_t type;
	struct dec_span at[DEC_ETH_N];
};

enum dec_sll_field { DEC_SLL_PKTTYPE, DEC_SLL_HATYPE, DEC_SLL_HALEN, DEC_SLL_ADDR, DEC_SLL_TYPE,
		     DEC_SLL_N };
struct dec_sll {
	uint16_t pkttype, hatype, halen, type;
	uint8_t addr[8];
	struct dec_span at[DEC_SLL_N];
};

enum dec_arp_field { DEC_ARP_HTYPE, DEC_ARP_PTYPE, DEC_ARP_HLEN, DEC_ARP_PLEN, DEC_ARP_OP,
		     DEC_ARP_SHA, DEC_ARP_SPA, DEC_ARP_THA, DEC_ARP_TPA, DEC_ARP_N };
struct dec_arp {
	uint16_t htype, ptype, op;
	uint8_t hlen, plen;
	uint8_t sha[6], spa[4], tha[6], tpa[4]; /* Ethernet/IPv4 only */
	struct dec_span at[DEC_ARP_N];
};

enum dec_ip4_field { DEC_IP4_VERSION, DEC_IP4_IHL, DEC_IP4_TOS, DEC_IP4_TOTLEN, DEC_IP4_ID,
		     DEC_IP4_FLAGS, DEC_IP4_FRAG, DEC_IP4_TTL, DEC_IP4_PROTO, DEC_IP4_CSUM,
		     DEC_IP4_SRC, DEC_IP4_DST, DEC_IP4_OPTIONS, DEC_IP4_N };
struct dec_ipv4 {
	uint8_t version, ihl, tos, flags, ttl, proto;
	uint16_t total_len, id, frag_off, checksum;
	uint8_t src[4], dst[4];
	uint8_t options[40]; /* (ihl - 5) * 4 bytes */
	struct dec_csum csum;
	struct dec_span at[DEC_IP4_N];
};

#define DEC_IP6_MAX_EXT 8
struct dec_ip6_ext {
	uint8_t type;        /* the header's own protocol number (0, 43, 44, 60) */
	uint8_t next;        /* its next-header field */
	uint32_t len;        /* bytes, from its length field */
	uint16_t frag_off;   /* fragment header: offset in 8-byte units */
	uint8_t more;        /* fragment header: more fragments */
	struct dec_span span;
};
enum dec_ip6_field { DEC_IP6_VERSION, DEC_IP6_TCLASS, DEC_IP6_FLOW, DEC_IP6_PLEN, DEC_IP6_NEXT,
		     DEC_IP6_HLIM, DEC_IP6_SRC, DEC_IP6_DST, DEC_IP6_N };
struct dec_ipv6 {
	uint8_t version, tclass, next, hop_limit;
	uint32_t flow;
	uint16_t payload_len;
	uint8_t src[16], dst[16];
	uint8_t proto; /* the upper-layer protocol after the extension headers */
	struct dec_ip6_ext ext[DEC_IP6_MAX_EXT];
	unsigned n_ext;
	struct dec_span at[DEC_IP6_N];
};

/* TCP option kinds (RFC 9293, RFC 7323, RFC 2018). */
enum {
	DEC_TCPOPT_EOL = 0,
	DEC_TCPOPT_NOP = 1,
	DEC_TCPOPT_MSS = 2,
	DEC_TCPOPT_WSCALE = 3,
	DEC_TCPOPT_SACK_PERM = 4,
	DEC_TCPOPT_SACK = 5,
	DEC_TCPOPT_TS = 8,
};

struct dec_tcp_opt {
	uint8_t kind;
	uint8_t len; /* the length byte; 1 for EOL and NOP, which have none */
	enum dec_status status;
	const char *why;
	struct dec_span span;
	union {
		uint16_t mss;
		uint8_t wscale;
		struct {
			uint32_t val, ecr;
		} ts;
		struct {
			uint8_t n;
			uint32_t left[4], right[4];
		} sack;
		uint8_t raw[40]; /* a kind not interpreted: its len - 2 data bytes */
	} u;
};

/* TCP flag bits as in the 12 bits after the data offset (RFC 9293 3.1). */
enum {
	DEC_TCP_FIN = 0x001,
	DEC_TCP_SYN = 0x002,
	DEC_TCP_RST = 0x004,
	DEC_TCP_PSH = 0x008,
	DEC_TCP_ACK = 0x010,
	DEC_TCP_URG = 0x020,
	DEC_TCP_ECE = 0x040,
	DEC_TCP_CWR = 0x080,
	DEC_TCP_AE = 0x100, /* accurate ECN (formerly NS) */
};

#define DEC_TCP_MAX_OPTS 40 /* 40 option bytes: at most 40 one-byte options */
enum dec_tcp_field { DEC_TCP_SPORT, DEC_TCP_DPORT, DEC_TCP_SEQ, DEC_TCP_ACKNO, DEC_TCP_DOFF,
		     DEC_TCP_FLAGS, DEC_TCP_WIN, DEC_TCP_CSUM, DEC_TCP_URGPTR, DEC_TCP_OPTIONS,
		     DEC_TCP_N };
struct dec_tcp {
	uint16_t sport, dport, flags, window, checksum, urgent;
	uint32_t seq, ack;
	uint8_t doff; /* in 32-bit words */
	struct dec_tcp_opt opt[DEC_TCP_MAX_OPTS];
	unsigned n_opts;
	uint32_t payload_len; /* from the IP length; may exceed what was captured */
	struct dec_csum csum;
	struct dec_span at[DEC_TCP_N];
};

enum dec_udp_field { DEC_UDP_SPORT, DEC_UDP_DPORT, DEC_UDP_LEN, DEC_UDP_CSUM, DEC_UDP_N };
struct dec_udp {
	uint16_t sport, dport, len, checksum;
	uint32_t payload_len;
	struct dec_csum csum;
	struct dec_span at[DEC_UDP_N];
};

/* ICMP for IPv4 (RFC 792). The 4 bytes after the checksum depend on the
 * type: an identifier and sequence number for echo and timestamp messages,
 * the next-hop MTU for "fragmentation needed" (RFC 1191), unused for time
 * exceeded. An error message's data is the IP header and at least the first
 * 8 bytes of the datagram that caused it (Linux quotes as much as fits in 576
 * bytes); it is the "payload" layer. */
enum dec_icmp_field { DEC_ICMP_TYPE, DEC_ICMP_CODE, DEC_ICMP_CSUM, DEC_ICMP_ID, DEC_ICMP_SEQ,
		      DEC_ICMP_MTU, DEC_ICMP_REST, DEC_ICMP_N };
struct dec_icmp {
	uint8_t type, code;
	uint16_t checksum;
	uint16_t id, seq, mtu; /* as the type says (at[] tells which are present) */
	uint32_t rest;         /* the 4 bytes after the checksum, as one number */
	uint32_t len;          /* the ICMP message's length, from the IP length */
	struct dec_csum csum;
	struct dec_span at[DEC_ICMP_N];
};

struct dec_packet {
	uint32_t caplen, wirelen;
	int link;
	enum dec_status status; /* the first layer that is not ok, else ok */
	const char *why;
	/* Layers in the order they appear; layer[kind] is valid for those. */
	enum dec_layer_kind order[DEC_L_COUNT];
	unsigned n_layers;
	struct dec_layer layer[DEC_L_COUNT];
	struct dec_sll sll;
	struct dec_eth eth;
	struct dec_arp arp;
	struct dec_ipv4 ip4;
	struct dec_ipv6 ip6;
	struct dec_tcp tcp;
	struct dec_udp udp;
	struct dec_icmp icmp;
	struct dec_span payload; /* the upper layer's data as captured */
};

/* Decode caplen captured bytes of a frame that was wirelen bytes long on the
 * wire (wirelen < caplen is corrected to caplen). Returns the packet's status
 * (also in out->status). Never reads outside data[0..caplen). A frame from a
 * file: a transport checksum equal to the partial pseudo-header sum is
 * reported as not computed, inferred (as Wireshark's "partial checksum"). */
enum dec_status dec_packet(const uint8_t *data, size_t caplen, size_t wirelen, int link,
			   struct dec_packet *out);

/* The same for a live frame whose capture said what it knows about the
 * transport checksum (DEC_RX_CSUM_* flags): with DEC_RX_CSUM_NOT_READY it is
 * reported as not computed on the kernel's word, never as bad. */
enum dec_status dec_packet_rx(const uint8_t *data, size_t caplen, size_t wirelen, int link,
			      unsigned rx, struct dec_packet *out);

/* 1 when the layer was reached (decoded fully or partly). */
int dec_has(const struct dec_packet *p, enum dec_layer_kind k);

/* Names for statuses, layers, TCP states of flags and option kinds. */
const char *dec_status_name(enum dec_status s);
const char *dec_layer_name(enum dec_layer_kind k);
const char *dec_tcpopt_name(uint8_t kind);
/* "good", "bad", "not_computed", "unverifiable", "none" ("unchecked"). */
const char *dec_csum_status_name(enum dec_csum_status s);
/* "match", "mismatch", "offload", "offload_inferred", "truncated", ... */
const char *dec_csum_reason_name(enum dec_csum_reason r);
/* One line of English saying what the reason means. */
const char *dec_csum_why(enum dec_csum_reason r);
/* "SYN, ACK" style list into buf; returns buf. */
const char *dec_tcp_flags_text(uint16_t flags, char *buf, size_t len);
/* tcpdump's compact form: "S.", "F.", "P.", "R", "." into buf; returns buf. */
const char *dec_tcp_flags_short(uint16_t flags, char *buf, size_t len);

/* New JSON of the decoded packet: {"status", ["why"], "link", "caplen",
 * "wirelen", "layers":[{"layer","status",["why"],"off","len","fields":[
 * {"name","value",["text"],"off","len",["children"]}]}]}. Caller owns it. */
json_t *dec_packet_json(const struct dec_packet *p);

/* New JSON of one checksum's verdict: {"status", "reason", "source"
 * ("computed" from the bytes, "kernel" from the capture's flag, or
 * "inferred"), "value", ["expected"], "why"}; NULL when unchecked. */
json_t *dec_csum_json(const struct dec_csum *c);

/* New JSON object for an event: {"ipv4": verdict, "tcp"|"udp": verdict}
 * with the checked ones (ip4 and l4 may be NULL; l4_kind is DEC_L_TCP or
 * DEC_L_UDP). Caller owns it. */
json_t *dec_checksums_json(const struct dec_csum *ip4, const struct dec_csum *l4,
			   enum dec_layer_kind l4_kind);

/* The CLI's words for an event's "checksums" object: "" when every one is
 * good or none, else e.g. "tcp checksum 0x8e2c not computed (offload)" or
 * "ipv4 checksum 0x1234 bad, should be 0x1235", joined by "; ". Returns buf. */
const char *dec_checksums_text(const json_t *checksums, char *buf, size_t len);

/* New JSON array of a TCP header's options as compact objects ({"kind",
 * "name", value fields}) for event summaries. Caller owns it. */
json_t *dec_tcp_options_json(const struct dec_tcp *t);

#endif
