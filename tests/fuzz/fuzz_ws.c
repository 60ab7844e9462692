/* fuzz_ws.c: libFuzzer target for the WebSocket op handler (server/ws.c ws_offline): messages in, replies out. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "config.h"
#include "http.h"
#include "ws.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_MESSAGES 32

/* Abort (a finding) unless every reply is an object with a type, and every
 * error has a code and a message for a person. */
static void check_replies(const json_t *replies)
{
	size_t i;
	json_t *r;

	if (!json_is_array(replies) || json_array_size(replies) > 16)
		abort();
	json_array_foreach(replies, i, r) {
		const char *type = json_string_value(json_object_get(r, "type"));
		if (!json_is_object(r) || !type || !*type)
			abort();
		if (!strcmp(type, "error")) {
			const char *code = json_string_value(json_object_get(r, "code"));
			const char *msg = json_string_value(json_object_get(r, "message"));
			if (!code || !*code || !msg || !*msg)
				abort();
		}
	}
}

/*
 * The input is up to MAX_MESSAGES client messages separated by NUL bytes,
 * handled in order by one session of a fresh server (so sign-in, classes,
 * watches and their errors can follow one another). The server's run
 * manager checks requests and starts nothing.
 */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct serve_config cfg;
	static struct http_counters ctr;
	static int ready;
	struct ws_offline *o;
	size_t off = 0;
	int n = 0;

	if (!ready) {
		/* Few connection slots: every input builds and frees a whole server,
		 * and ASan makes large allocations the cost of a run. */
		char *argv[] = {"serve", "--instructor-secret", "fuzz-secret-1",
				"--max-conns", "16", "--byo-ports", "40000-40015", NULL};
		char err[256];
		if (config_parse(&cfg, 7, argv, NULL, err, sizeof err) < 0)
			abort();
		http_counters_init(&ctr);
		ready = 1;
	}
	if (size > CONFIG_MAX_MESSAGE_BYTES)
		return 0;
	if (ws_offline_create(&o, &cfg, &ctr) < 0)
		abort();
	while (off <= size && n++ < MAX_MESSAGES) {
		const uint8_t *end = memchr(data + off, 0, size - off);
		size_t len = end ? (size_t)(end - (data + off)) : size - off;
		json_t *replies = ws_offline_message(o, (const char *)data + off, len);

		check_replies(replies);
		json_decref(replies);
		off += len + 1;
	}
	ws_offline_destroy(o);
	return 0;
}
