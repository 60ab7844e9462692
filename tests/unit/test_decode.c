/* test_decode.c: golden decoder cases from tests/data/decode (hex in, JSON out) and decoder properties. */
#include "unit.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decode/decode.h"

/*
 * Each case is NAME.hex (comment lines "# ...", optional "# link: NAME",
 * "# wirelen: N" and "# rx: csum_not_ready" (the capture's offload flag),
 * then hex bytes) and NAME.json, the decoded packet exactly
 * as dec_packet_json() must produce it. With SOCKLAB_GOLDEN_WRITE=1 the
 * runner writes NAME.json from the decoder instead (to start a new case;
 * review the file before committing it).
 */

#define DATA_DIR "tests/data/decode"
#define MAX_FRAME 4096

struct gcase {
	char name[128];
	uint8_t frame[MAX_FRAME];
	size_t len, wirelen;
	int link;
	unsigned rx; /* DEC_RX_CSUM_* */
};

static const struct {
	const char *name;
	int link;
} links[] = {
	{"ethernet", DEC_LINK_ETHERNET}, {"raw", DEC_LINK_RAW},   {"linux-sll", DEC_LINK_SLL},
	{"ipv4", DEC_LINK_IPV4},         {"ipv6", DEC_LINK_IPV6}, {NULL, 0},
};

static const char *data_dir(void)
{
	const char *d = getenv("SOCKLAB_DECODE_DATA");
	return d ? d : DATA_DIR;
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Parse NAME.hex into c; 0 or a message in err. */
static int load_hex(const char *path, struct gcase *c, char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");
	char line[1024];
	long wl = -1;

	if (!f) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	c->len = 0;
	c->link = DEC_LINK_ETHERNET;
	c->rx = 0;
	while (fgets(line, sizeof line, f)) {
		char *p = line;
		if (line[0] == '#') {
			if (!strncmp(line, "# link: ", 8)) {
				int i, found = 0;
				line[strcspn(line, "\n")] = '\0';
				for (i = 0; links[i].name; i++)
					if (!strcmp(line + 8, links[i].name)) {
						c->link = links[i].link;
						found = 1;
					}
				if (!found) {
					snprintf(err, errlen, "%.200s: unknown link '%.20s'", path, line + 8);
					fclose(f);
					return -1;
				}
			} else if (!strncmp(line, "# wirelen: ", 11)) {
				wl = strtol(line + 11, NULL, 10);
			} else if (!strcmp(line, "# rx: csum_not_ready\n")) {
				c->rx |= DEC_RX_CSUM_NOT_READY;
			} else if (!strncmp(line, "# rx: ", 6)) {
				snprintf(err, errlen, "%.200s: unknown rx flag '%.30s'", path, line + 6);
				fclose(f);
				return -1;
			}
			continue;
		}
		while (*p) {
			int hi, lo;
			if (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r') {
				p++;
				continue;
			}
			hi = hexval(p[0]);
			lo = hi < 0 ? -1 : hexval(p[1]);
			if (hi < 0 || lo < 0 || c->len >= MAX_FRAME) {
				snprintf(err, errlen, "%s: bad hex near '%.8s'", path, p);
				fclose(f);
				return -1;
			}
			c->frame[c->len++] = (uint8_t)(hi << 4 | lo);
			p += 2;
		}
	}
	fclose(f);
	c->wirelen = wl > 0 ? (size_t)wl : c->len;
	return 0;
}

static void golden_case(void **state)
{
	const struct gcase *c = *state;
	struct dec_packet p;
	char path[512], err[256];
	json_t *got, *want;
	json_error_t jerr;

	dec_packet_rx(c->frame, c->len, c->wirelen, c->link, c->rx, &p);
	got = dec_packet_json(&p);
	assert_non_null(got);
	snprintf(path, sizeof path, "%s/%s.json", data_dir(), c->name);
	if (getenv("SOCKLAB_GOLDEN_WRITE")) {
		assert_int_equal(json_dump_file(got, path, JSON_INDENT(1) | JSON_PRESERVE_ORDER), 0);
		json_decref(got);
		return;
	}
	want = json_load_file(path, 0, &jerr);
	if (!want) {
		snprintf(err, sizeof err, "%.100s: %.100s (line %d)", path, jerr.text, jerr.line);
		json_decref(got);
		fail_msg("%s", err);
	}
	if (!json_equal(got, want)) {
		char *g = json_dumps(got, JSON_COMPACT | JSON_PRESERVE_ORDER);
		char *w = json_dumps(want, JSON_COMPACT | JSON_PRESERVE_ORDER);
		print_error("case %s\n  got:  %s\n  want: %s\n", c->name, g, w);
		free(g);
		free(w);
		json_decref(got);
		json_decref(want);
		fail_msg("decoded JSON differs from %s", path);
	}
	json_decref(got);
	json_decref(want);
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Every field and layer span lies inside the captured bytes. */
static void assert_spans_inside(const json_t *fields, size_t caplen)
{
	size_t i;
	json_t *f;

	json_array_foreach(fields, i, f) {
		json_int_t off = json_integer_value(json_object_get(f, "off"));
		json_int_t len = json_integer_value(json_object_get(f, "len"));
		if (off < 0 || len < 0 || (size_t)(off + len) > caplen)
			fail_msg("field %s at %lld+%lld outside %zu captured bytes",
				 json_string_value(json_object_get(f, "name")), (long long)off,
				 (long long)len, caplen);
		if (json_object_get(f, "children"))
			assert_spans_inside(json_object_get(f, "children"), caplen);
	}
}

static void check_spans(const uint8_t *frame, size_t len, size_t wirelen, int link)
{
	struct dec_packet p;
	json_t *j, *l;
	size_t i;

	dec_packet(frame, len, wirelen, link, &p);
	j = dec_packet_json(&p);
	json_array_foreach(json_object_get(j, "layers"), i, l) {
		json_int_t off = json_integer_value(json_object_get(l, "off"));
		json_int_t ln = json_integer_value(json_object_get(l, "len"));
		assert_true(off >= 0 && (size_t)(off + ln) <= len);
		assert_spans_inside(json_object_get(l, "fields"), len);
	}
	json_decref(j);
}

/* Cutting a well-formed frame anywhere gives "truncated", never a crash, a
 * read past the cut (the sanitizer build checks) or a span beyond it. */
static void every_prefix_is_truncated(void **state)
{
	static const char *const names[] = {"ipv4_tcp_syn_linux_options", "ipv6_hop_by_hop_tcp",
					    "ipv4_tcp_data_psh", "arp_request", "sll_ipv4_tcp",
					    "vlan_ipv4_tcp", "ipv4_udp"};
	struct gcase *c = malloc(sizeof *c);
	char path[512], err[256];
	size_t k, n;

	assert_non_null(c);
	for (k = 0; k < sizeof names / sizeof names[0]; k++) {
		snprintf(path, sizeof path, "%s/%s.hex", data_dir(), names[k]);
		size_t used = 0;
		struct dec_packet full;
		unsigned li;

		assert_int_equal(load_hex(path, c, err, sizeof err), 0);
		/* Bytes after the last decoded layer (Ethernet padding) do not count. */
		assert_int_equal(dec_packet(c->frame, c->len, c->len, c->link, &full), DEC_OK);
		for (li = 0; li < full.n_layers; li++) {
			const struct dec_span *sp = &full.layer[full.order[li]].span;
			if (sp->off + sp->len > used)
				used = sp->off + sp->len;
		}
		for (n = 0; n <= c->len; n++) {
			struct dec_packet p;
			/* A heap copy of exactly n bytes: ASan sees any over-read. */
			uint8_t *cut = malloc(n ? n : 1);
			enum dec_status st;

			memcpy(cut, c->frame, n);
			st = dec_packet(cut, n, c->len, c->link, &p);
			if (n < used && st != DEC_TRUNCATED)
				fail_msg("%s cut to %zu of %zu bytes: status %s, want truncated",
					 names[k], n, c->len, dec_status_name(st));
			if (n >= used)
				assert_int_equal(st, DEC_OK);
			check_spans(cut, n, c->len, c->link);
			free(cut);
		}
	}
	free(c);
}

/* Flipping any single byte of a frame never crashes and never reports a
 * span outside the frame. */
static void every_byte_flip_is_safe(void **state)
{
	struct gcase *c = malloc(sizeof *c);
	char path[512], err[256];
	size_t i;
	int v;

	assert_non_null(c);
	snprintf(path, sizeof path, "%s/%s.hex", data_dir(), "ipv4_tcp_syn_linux_options");
	assert_int_equal(load_hex(path, c, err, sizeof err), 0);
	for (i = 0; i < c->len; i++) {
		uint8_t keep = c->frame[i];
		for (v = 0; v < 256; v += 17) {
			uint8_t *copy = malloc(c->len);
			memcpy(copy, c->frame, c->len);
			copy[i] = (uint8_t)v;
			check_spans(copy, c->len, c->len, DEC_LINK_ETHERNET);
			free(copy);
		}
		c->frame[i] = keep;
	}
	free(c);
}

static void flag_names(void **state)
{
	char b[64];

	assert_string_equal(dec_tcp_flags_text(DEC_TCP_SYN | DEC_TCP_ACK, b, sizeof b), "SYN, ACK");
	assert_string_equal(dec_tcp_flags_short(DEC_TCP_SYN | DEC_TCP_ACK, b, sizeof b), "S.");
	assert_string_equal(dec_tcp_flags_short(DEC_TCP_FIN | DEC_TCP_ACK, b, sizeof b), "F.");
	assert_string_equal(dec_tcp_flags_short(DEC_TCP_PSH | DEC_TCP_ACK, b, sizeof b), "P.");
	assert_string_equal(dec_tcp_flags_short(DEC_TCP_RST, b, sizeof b), "R");
	assert_string_equal(dec_tcp_flags_short(DEC_TCP_ACK, b, sizeof b), ".");
	assert_string_equal(dec_tcp_flags_short(0, b, sizeof b), "none");
	assert_string_equal(dec_tcp_flags_text(0, b, sizeof b), "none");
	assert_string_equal(dec_tcpopt_name(8), "timestamp");
	assert_string_equal(dec_tcpopt_name(200), "unknown");
}

/* A checksum over bytes the capture does not hold is unverifiable, never
 * bad or good: cut a frame with correct checksums anywhere. */
static void truncation_never_makes_a_checksum_bad(void **state)
{
	static const char *const names[] = {"csum_ipv4_tcp_good", "csum_ipv4_udp_good",
					    "csum_ipv6_tcp_good", "csum_ipv6_hbh_udp_good"};
	struct gcase *c = malloc(sizeof *c);
	char path[512], err[256];
	size_t k, n;

	assert_non_null(c);
	for (k = 0; k < sizeof names / sizeof names[0]; k++) {
		snprintf(path, sizeof path, "%s/%s.hex", data_dir(), names[k]);
		assert_int_equal(load_hex(path, c, err, sizeof err), 0);
		for (n = 0; n <= c->len; n++) {
			struct dec_packet p;
			uint8_t *cut = malloc(n ? n : 1);
			const struct dec_csum *l4;

			memcpy(cut, c->frame, n);
			dec_packet(cut, n, c->len, c->link, &p);
			l4 = dec_has(&p, DEC_L_UDP) ? &p.udp.csum : &p.tcp.csum;
			if (n < c->len && l4->status != DEC_CSUM_UNCHECKED &&
			    l4->status != DEC_CSUM_UNVERIFIABLE)
				fail_msg("%s cut to %zu of %zu bytes: transport checksum %s, want "
					 "unverifiable or unchecked",
					 names[k], n, c->len, dec_csum_status_name(l4->status));
			if (n == c->len)
				assert_int_equal(l4->status, DEC_CSUM_GOOD);
			if (p.ip4.csum.status == DEC_CSUM_BAD)
				fail_msg("%s cut to %zu bytes: IPv4 checksum bad", names[k], n);
			free(cut);
		}
	}
	free(c);
}

/* The CLI's one line: only what is not good, with the expected value. */
static void checksum_text_for_the_cli(void **state)
{
	struct dec_csum ip = {DEC_CSUM_BAD, DEC_CSUM_R_MISMATCH, 0x9352, 0x9253, 1};
	struct dec_csum tcp = {DEC_CSUM_NOT_COMPUTED, DEC_CSUM_R_OFFLOAD, 0x8c51, 0x3c49, 1};
	struct dec_csum good = {DEC_CSUM_GOOD, DEC_CSUM_R_MATCH, 0x3c49, 0x3c49, 1};
	struct dec_csum none = {DEC_CSUM_NONE, DEC_CSUM_R_UDP_ZERO, 0, 0, 0};
	struct dec_csum unchecked = {DEC_CSUM_UNCHECKED, DEC_CSUM_R_NONE, 0, 0, 0};
	char b[256];
	json_t *j;

	j = dec_checksums_json(&ip, &tcp, DEC_L_TCP);
	assert_string_equal(dec_checksums_text(j, b, sizeof b),
			    "ipv4 checksum 0x9352 bad, should be 0x9253; "
			    "tcp checksum 0x8c51 not computed (offload)");
	assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "ipv4"), "expected")),
			 0x9253);
	assert_string_equal(json_string_value(json_object_get(json_object_get(j, "tcp"), "source")),
			    "kernel");
	json_decref(j);
	tcp.reason = DEC_CSUM_R_OFFLOAD_INFERRED;
	j = dec_checksums_json(&good, &tcp, DEC_L_TCP);
	assert_string_equal(dec_checksums_text(j, b, sizeof b),
			    "tcp checksum 0x8c51 not computed (offload, inferred from the value)");
	assert_null(json_object_get(json_object_get(j, "ipv4"), "expected"));
	json_decref(j);
	j = dec_checksums_json(&good, &none, DEC_L_UDP);
	assert_string_equal(dec_checksums_text(j, b, sizeof b), "");
	assert_string_equal(json_string_value(json_object_get(json_object_get(j, "udp"), "status")),
			    "none");
	json_decref(j);
	j = dec_checksums_json(&unchecked, NULL, DEC_L_TCP);
	assert_int_equal(json_object_size(j), 0);
	/* A short buffer is cut, never overrun. */
	assert_string_equal(dec_checksums_text(j, b, 1), "");
	json_decref(j);
}

int main(void)
{
	const struct CMUnitTest fixed[] = {
		cmocka_unit_test(truncation_never_makes_a_checksum_bad),
		cmocka_unit_test(checksum_text_for_the_cli),
		cmocka_unit_test(every_prefix_is_truncated),
		cmocka_unit_test(every_byte_flip_is_safe),
		cmocka_unit_test(flag_names),
	};
	struct CMUnitTest *tests;
	struct gcase *cases;
	char **names = NULL;
	size_t n = 0, cap = 0, i;
	DIR *d = opendir(data_dir());
	struct dirent *de;
	int rc;

	if (!d) {
		fprintf(stderr, "test_decode: cannot open %s: %s\n", data_dir(), strerror(errno));
		return 1;
	}
	while ((de = readdir(d))) {
		size_t l = strlen(de->d_name);
		if (l < 5 || strcmp(de->d_name + l - 4, ".hex") || l - 4 >= sizeof cases->name)
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			names = realloc(names, cap * sizeof *names);
		}
		names[n++] = strndup(de->d_name, l - 4);
	}
	closedir(d);
	qsort(names, n, sizeof *names, cmp_names);
	cases = calloc(n ? n : 1, sizeof *cases);
	tests = calloc(n + sizeof fixed / sizeof fixed[0], sizeof *tests);
	for (i = 0; i < n; i++) {
		char path[512], err[256];
		snprintf(cases[i].name, sizeof cases[i].name, "%s", names[i]);
		snprintf(path, sizeof path, "%s/%s.hex", data_dir(), names[i]);
		if (load_hex(path, &cases[i], err, sizeof err) < 0) {
			fprintf(stderr, "test_decode: %s\n", err);
			return 1;
		}
		tests[i].name = cases[i].name;
		tests[i].test_func = golden_case;
		tests[i].initial_state = &cases[i];
	}
	memcpy(tests + n, fixed, sizeof fixed);
	rc = _cmocka_run_group_tests("decode", tests, n + sizeof fixed / sizeof fixed[0], NULL, NULL);
	for (i = 0; i < n; i++)
		free(names[i]);
	free(names);
	free(cases);
	free(tests);
	return rc;
}
