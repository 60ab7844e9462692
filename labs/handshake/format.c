/* format.c: the handshake lab's readable CLI lines (lab_desc.format), in the spirit of tcpdump and ss. */
#include <stdio.h>
#include <string.h>

#include "hs.h"

static const char *js(const json_t *o, const char *k)
{
	const char *v = json_string_value(json_object_get(o, k));
	return v ? v : "";
}

static long long ji(const json_t *o, const char *k)
{
	return (long long)json_integer_value(json_object_get(o, k));
}


/* tcpdump's option list: "mss 65495,sackOK,TS val 1 ecr 0,nop,wscale 7". */
static void fmt_options(const json_t *opts, char *buf, size_t len)
{
	size_t i, off = 0;
	const json_t *o;

	buf[0] = '\0';
	json_array_foreach(opts, i, o) {
		const char *name = js(o, "name");
		const json_t *v = json_object_get(o, "value");

		obs_put(buf, len, &off, "%s", i ? "," : "");
		if (!strcmp(name, "mss") || !strcmp(name, "wscale"))
			obs_put(buf, len, &off, "%s %lld", name, (long long)json_integer_value(v));
		else if (!strcmp(name, "sack_perm"))
			obs_put(buf, len, &off, "sackOK");
		else if (!strcmp(name, "timestamp"))
			obs_put(buf, len, &off, "TS val %lld ecr %lld", ji(v, "val"), ji(v, "ecr"));
		else if (!strcmp(name, "sack"))
			obs_put(buf, len, &off, "sack %zu", json_array_size(v));
		else if (!strcmp(name, "nop") || !strcmp(name, "eol"))
			obs_put(buf, len, &off, "%s", name);
		else
			obs_put(buf, len, &off, "%s (kind %lld)", name, ji(o, "kind"));
	}
}

int hs_format(const struct lab_params *p, const json_t *ev, char *buf, size_t len)
{
	const char *type = js(ev, "type");
	double ms = (double)ji(ev, "t_kernel_us") / 1000.0;
	size_t off = 0;
	char kt[256];

	(void)p;
	if (!strcmp(type, "segment")) {
		const json_t *ra = json_object_get(ev, "rel_ack");
		char opts[400];

		fmt_options(json_object_get(ev, "options"), opts, sizeof opts);
		obs_put(buf, len, &off, "%10.3f  %-10s #%lld %s > %s  Flags [%s], seq %lld", ms, "packet",
		    ji(ev, "n"), js(ev, "from"), js(ev, "to"), js(ev, "flags_short"), ji(ev, "rel_seq"));
		if (json_is_integer(ra))
			obs_put(buf, len, &off, ", ack %lld", (long long)json_integer_value(ra));
		obs_put(buf, len, &off, ", win %lld", ji(ev, "win"));
		if (opts[0])
			obs_put(buf, len, &off, ", options [%s]", opts);
		obs_put(buf, len, &off, ", length %lld", ji(ev, "len"));
		if (strcmp(js(ev, "status"), "ok") != 0)
			obs_put(buf, len, &off, "  [%s: %s]", js(ev, "status"), js(ev, "why"));
		if (dec_checksums_text(json_object_get(ev, "checksums"), opts, sizeof opts)[0])
			obs_put(buf, len, &off, "  [%s]", opts);
		obs_put(buf, len, &off, "\n");
	} else if (!strcmp(type, "state") && !strcmp(js(ev, "source"), "rfc-model")) {
		obs_put(buf, len, &off, "%10.3f  %-10s   rfc 9293: %s -> %s  (segment #%lld: %s)\n", ms,
		    js(ev, "who"), js(ev, "from"), js(ev, "to"), ji(ev, "seg"), js(ev, "why"));
	} else if (obs_state_text(ev, kt, sizeof kt) >= 0) {
		obs_put(buf, len, &off, "%10.3f  %-10s %s\n", ms, js(ev, "who"), kt);
	} else if (!strcmp(type, "capture")) {
		obs_put(buf, len, &off, "%10.3f  capturing on %s%s: %s\n", (double)ji(ev, "t_us") / 1000.0,
		    js(ev, "interface"),
		    json_array_size(json_object_get(ev, "hosts")) > 1 ? " of both hosts" : "",
		    js(ev, "filter"));
	} else if (!strcmp(type, "arrival")) {
		obs_put(buf, len, &off, "%10.3f  %-10s #%lld reached the %s after %.3f ms on the wire%s\n", ms,
		    "packet", ji(ev, "n"), js(ev, "who"), (double)ji(ev, "wire_us") / 1000.0,
		    json_is_true(json_object_get(ev, "duplicate")) ? " (a duplicate)" : "");
	} else if (!strcmp(type, "wire") && !strcmp(js(ev, "action"), "delay")) {
		return 0; /* every frame is delayed: the arrival lines say by how much */
	} else if (!strcmp(type, "state.compare")) {
		size_t i;
		const json_t *row;

		obs_put(buf, len, &off, "            %s: kernel (transitions: %s) vs RFC 9293 from the packets: %s\n",
		    js(ev, "who"), js(ev, "kernel_source"),
		    json_is_true(json_object_get(ev, "agree")) ? "they agree" : "they differ");
		json_array_foreach(json_object_get(ev, "rows"), i, row) {
			const json_t *k = json_object_get(row, "kernel");
			const json_t *f = json_object_get(row, "inferred");
			const json_t *o = json_object_get(row, "observed");
			char kc[64] = "-", ft[64] = "-";

			if (o) {
				snprintf(kc, sizeof kc, "seen %s (%s)",
					 json_is_false(json_object_get(o, "listed")) ? "gone" : js(o, "state"),
					 js(o, "source"));
				snprintf(ft, sizeof ft, "model: %s", js(row, "model_state"));
			}
			if (k)
				snprintf(kc, sizeof kc, "%s -> %s", js(k, "from"), js(k, "to"));
			if (f)
				snprintf(ft, sizeof ft, "%s -> %s", js(f, "from"), js(f, "to"));
			obs_put(buf, len, &off, "              %-28s %-28s %s\n", kc, ft, js(row, "match"));
		}
	} else {
		return -1;
	}
	return (int)off;
}

