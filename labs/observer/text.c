/* text.c: the CLI's words for the observer's kernel-state events (state, observation, timer), one wording for every lab. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "observer/observer.h"

static const char *js(const json_t *o, const char *k)
{
	const char *v = json_string_value(json_object_get(o, k));
	return v ? v : "?";
}

static long long ji(const json_t *o, const char *k)
{
	return (long long)json_integer_value(json_object_get(o, k));
}

void obs_put(char *buf, size_t len, size_t *off, const char *fmt, ...)
{
	va_list ap;
	int w;

	if (*off >= len)
		return;
	va_start(ap, fmt);
	w = vsnprintf(buf + *off, len - *off, fmt, ap);
	va_end(ap);
	if (w > 0)
		*off = *off + (size_t)w < len ? *off + (size_t)w : len - 1;
}

int obs_state_text(const json_t *ev, char *buf, size_t len)
{
	const char *type = json_string_value(json_object_get(ev, "type"));
	size_t off = 0;

	if (!len)
		return -1;
	buf[0] = 0;
	if (!type)
		return -1;
	if (!strcmp(type, "state") && strcmp(js(ev, "source"), "rfc-model") != 0) {
		obs_put(buf, len, &off, "state %s -> %s  (kernel: %s)", js(ev, "from"), js(ev, "to"),
		    js(ev, "source"));
	} else if (!strcmp(type, "observation") && json_is_false(json_object_get(ev, "listed"))) {
		obs_put(buf, len, &off, "gone: %s no longer lists it (last seen in %s; %s", js(ev, "source"),
		    js(ev, "last_state"), js(ev, "reason"));
		if (json_object_get(ev, "evidence"))
			obs_put(buf, len, &off, ": the RST #%lld, seq %lld", ji(ev, "evidence_seg"),
			    ji(json_object_get(ev, "evidence"), "seq_raw"));
		obs_put(buf, len, &off, ")");
	} else if (!strcmp(type, "observation")) {
		obs_put(buf, len, &off, "seen in %s  (%s sample", js(ev, "state"), js(ev, "source"));
		if (json_object_get(ev, "timer_ms"))
			obs_put(buf, len, &off, ", timer %s %.1f s", js(ev, "timer"),
			    (double)ji(ev, "timer_ms") / 1000.0);
		obs_put(buf, len, &off, ")");
	} else if (!strcmp(type, "timer") && json_is_true(json_object_get(ev, "stopped"))) {
		obs_put(buf, len, &off, "%s: the kernel's timer stopped (%s)", js(ev, "state"),
		    js(ev, "reason"));
	} else if (!strcmp(type, "timer")) {
		obs_put(buf, len, &off, "%s: %.1f s left on the kernel's timer (%s)", js(ev, "state"),
		    (double)ji(ev, "ms_left") / 1000.0, js(ev, "source"));
	} else {
		return -1;
	}
	return (int)off;
}
