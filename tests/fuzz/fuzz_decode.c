/* fuzz_decode.c: libFuzzer target for the packet decoders and their JSON (make fuzz; briefly in make test). */
#include <stdint.h>
#include <stdlib.h>

#include "decode/decode.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Abort (a finding) when a reported span leaves the captured bytes. */
static void check_fields(const json_t *fields, size_t caplen)
{
	size_t i;
	json_t *f;

	json_array_foreach(fields, i, f) {
		json_int_t off = json_integer_value(json_object_get(f, "off"));
		json_int_t len = json_integer_value(json_object_get(f, "len"));
		if (off < 0 || len <= 0 || (size_t)(off + len) > caplen)
			abort();
		check_fields(json_object_get(f, "children"), caplen);
	}
}

/* Abort when a checksum verdict contradicts itself. */
static void check_csum(const struct dec_csum *c, unsigned rx, int transport)
{
	char buf[160];
	json_t *j;

	if (c->status > DEC_CSUM_NONE || c->reason >= DEC_CSUM_R_COUNT)
		abort();
	if (c->status == DEC_CSUM_BAD && !c->has_expected)
		abort();
	/* The kernel's offload flag always wins over the bytes. */
	if (transport && (rx & DEC_RX_CSUM_NOT_READY) && c->status == DEC_CSUM_BAD)
		abort();
	j = dec_checksums_json(c, c, DEC_L_TCP);
	dec_checksums_text(j, buf, sizeof buf);
	json_decref(j);
}

/*
 * The first byte chooses the link type, whether the capture flagged the
 * transport checksum as left for offload (bit 0x40), and whether the frame
 * counts as a short snapshot (its wire length larger than what was
 * captured); the rest
 * is the frame. libFuzzer hands over a heap buffer of exactly size bytes, so
 * AddressSanitizer sees any read past the frame.
 */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const int links[] = {DEC_LINK_ETHERNET, DEC_LINK_RAW, DEC_LINK_SLL, DEC_LINK_IPV4,
				    DEC_LINK_IPV6, 0};
	struct dec_packet p;
	size_t caplen, wirelen, i;
	unsigned rx;
	json_t *j, *l;

	if (size < 1)
		return 0;
	caplen = size - 1;
	wirelen = caplen + ((data[0] & 0x80) ? 1500 : 0);
	rx = (data[0] & 0x40) ? DEC_RX_CSUM_NOT_READY : 0;
	dec_packet_rx(data + 1, caplen, wirelen, links[(data[0] & 0x3f) % 6], rx, &p);
	if (p.status > DEC_UNSUPPORTED || p.n_layers > DEC_L_COUNT)
		abort();
	j = dec_packet_json(&p);
	if (!j)
		abort();
	json_array_foreach(json_object_get(j, "layers"), i, l) {
		json_int_t off = json_integer_value(json_object_get(l, "off"));
		json_int_t len = json_integer_value(json_object_get(l, "len"));
		if (off < 0 || len < 0 || (size_t)(off + len) > caplen)
			abort();
		check_fields(json_object_get(l, "fields"), caplen);
	}
	json_decref(j);
	if (dec_has(&p, DEC_L_TCP))
		json_decref(dec_tcp_options_json(&p.tcp));
	check_csum(&p.ip4.csum, rx, 0);
	check_csum(&p.tcp.csum, rx, 1);
	check_csum(&p.udp.csum, rx, 1);
	return 0;
}
