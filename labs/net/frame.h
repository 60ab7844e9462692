/* frame.h: just enough Ethernet/ARP/IPv4/UDP/TCP/ICMP decoding for the wire's one-line frame summaries. */
#ifndef SOCKLAB_NET_FRAME_H
#define SOCKLAB_NET_FRAME_H

#include <stddef.h>
#include <stdint.h>

/*
 * The wire reports what it did to each frame with a short summary such as
 * "UDP 198.18.0.1:40000 → 198.18.0.2:5000 len 64" or "ARP who-has 198.18.0.2
 * tell 198.18.0.1", and labs look inside frames to match them with their own
 * messages (udp-ping finds its probe's sequence number). This is not the full
 * protocol decoder: it reads the few fields those need through one
 * bounds-checked cursor, never casting packet memory to a struct, and says
 * whether the frame was complete.
 */

enum frame_status {
	FRAME_OK,
	FRAME_TRUNCATED,   /* a header or a length field points past the end */
	FRAME_INVALID,     /* a field has an impossible value (IHL < 5, ...) */
	FRAME_UNSUPPORTED, /* a protocol this decoder does not read */
};

#define FRAME_ETH_P_IP 0x0800
#define FRAME_ETH_P_ARP 0x0806
#define FRAME_ETH_P_IPV6 0x86dd

struct frame_info {
	enum frame_status status;
	uint8_t dst_mac[6], src_mac[6];
	uint16_t ethertype;

	/* ARP (ethertype 0x0806, Ethernet/IPv4 only) */
	uint16_t arp_op; /* 1 request, 2 reply */
	uint8_t arp_sha[6];
	uint32_t arp_spa, arp_tpa; /* host byte order */

	/* IPv4 (RFC 791) */
	int is_ipv4;
	uint32_t src, dst; /* host byte order */
	uint8_t proto, ttl;
	uint16_t ip_id;
	uint16_t frag_off; /* in bytes */
	int more_frags, dont_frag;
	uint16_t ip_total_len;
	size_t ip_payload_len; /* bytes after the IP header within ip_total_len */

	/* UDP (RFC 768) or TCP (RFC 9293): only in a first (or only) fragment */
	int has_l4;
	uint16_t sport, dport;
	uint16_t udp_len;          /* UDP length field (header included) */
	uint32_t tcp_seq, tcp_ack; /* TCP */
	uint8_t tcp_flags;
	uint16_t tcp_win;
	uint8_t icmp_type, icmp_code;
	const uint8_t *payload; /* application bytes present in this frame */
	size_t payload_len;
};

/* Decode frame (len bytes, starting at the Ethernet header) into fi. Returns
 * fi->status; fields the frame does not carry are left zero. */
enum frame_status frame_parse(const uint8_t *frame, size_t len, struct frame_info *fi);

/* A one-line summary of a parsed frame into out (always NUL-terminated).
 * Returns the length written. */
size_t frame_summary(const struct frame_info *fi, size_t frame_len, char *out, size_t cap);

/* Short protocol name: "ARP", "UDP", "TCP", "ICMP", "IPv4", "IPv6", "other". */
const char *frame_proto_name(const struct frame_info *fi);

/* "198.18.0.1" for a host-order IPv4 address. */
void frame_ip_str(uint32_t addr, char out[16]);

/* "02:73:6c:00:01:01". */
void frame_mac_str(const uint8_t mac[6], char out[18]);

#endif
