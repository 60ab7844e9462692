/* test_ws_ops.c: the WebSocket op handler without a connection (ws_offline in server/ws.c): JSON in, replies out. */
#include "unit.h"

#include <string.h>

#include <jansson.h>

#include "config.h"
#include "http.h"
#include "ws.h"

static struct serve_config cfg;
static struct http_counters ctr;
static struct ws_offline *o;

static int setup(void **state)
{
	char *argv[] = {"serve", "--instructor-secret", "unit-secret-1", NULL};
	char err[256];

	(void)state;
	if (config_parse(&cfg, 3, argv, NULL, err, sizeof err) < 0)
		return -1;
	http_counters_init(&ctr);
	return ws_offline_create(&o, &cfg, &ctr);
}

static int teardown(void **state)
{
	(void)state;
	ws_offline_destroy(o);
	http_counters_cleanup(&ctr);
	return 0;
}

/* The single reply to text, which must be of type want; returned for more checks. */
static json_t *one_reply(const char *text, const char *want)
{
	json_t *replies = ws_offline_message(o, text, strlen(text));
	json_t *r;

	assert_non_null(replies);
	assert_int_equal(json_array_size(replies), 1);
	r = json_incref(json_array_get(replies, 0));
	json_decref(replies);
	assert_string_equal(json_string_value(json_object_get(r, "type")), want);
	return r;
}

static const char *field(const json_t *o_, const char *k)
{
	const char *v = json_string_value(json_object_get(o_, k));

	return v ? v : "";
}

static void ping_echoes_its_tag(void **state)
{
	json_t *r = one_reply("{\"op\":\"ping\",\"tag\":\"t1\"}", "pong");

	(void)state;
	assert_string_equal(field(r, "tag"), "t1");
	json_decref(r);
}

static void bad_messages_are_named(void **state)
{
	json_t *r;

	(void)state;
	r = one_reply("{\"op\":", "error");
	assert_string_equal(field(r, "code"), "bad_request");
	assert_non_null(strstr(field(r, "message"), "not valid JSON"));
	json_decref(r);
	r = one_reply("[1,2]", "error");
	assert_string_equal(field(r, "message"), "message must be a JSON object");
	json_decref(r);
	r = one_reply("{\"op\":\"fly\"}", "error");
	assert_string_equal(field(r, "param"), "op");
	assert_non_null(strstr(field(r, "message"), "unknown op 'fly'"));
	json_decref(r);
	r = one_reply("{\"op\":\"ping\",\"tag\":7}", "error");
	assert_string_equal(field(r, "param"), "tag");
	json_decref(r);
}

static void runs_are_checked_and_never_started(void **state)
{
	json_t *r;

	(void)state;
	r = one_reply("{\"op\":\"run\",\"lab\":\"tcp-echo\",\"params\":{\"messages\":0}}", "error");
	assert_string_equal(field(r, "code"), "bad_param");
	assert_string_equal(field(r, "param"), "messages");
	assert_non_null(strstr(field(r, "message"), "from 1 to 1000"));
	json_decref(r);
	r = one_reply("{\"op\":\"run\",\"lab\":\"nope\"}", "error");
	assert_string_equal(field(r, "code"), "unknown_lab");
	json_decref(r);
	/* A valid request passes every check, then is refused: nothing runs. */
	r = one_reply("{\"op\":\"run\",\"lab\":\"tcp-echo\",\"params\":{\"messages\":2}}", "error");
	assert_string_equal(field(r, "code"), "internal");
	assert_non_null(strstr(field(r, "message"), "only checks requests"));
	json_decref(r);
	r = one_reply("{\"op\":\"cancel\",\"run\":\"0123456789abcdef\"}", "error");
	assert_string_equal(field(r, "code"), "unknown_run");
	json_decref(r);
}

static void sign_in_and_open_a_class(void **state)
{
	json_t *r;

	(void)state;
	r = one_reply("{\"op\":\"class.open\"}", "error");
	assert_string_equal(field(r, "code"), "forbidden");
	json_decref(r);
	r = one_reply("{\"op\":\"signin\",\"secret\":\"wrong-secret\"}", "error");
	json_decref(r);
	r = one_reply("{\"op\":\"signin\",\"secret\":\"unit-secret-1\"}", "signin.accepted");
	json_decref(r);
	/* The instructor's optional display name is checked like a student's. */
	r = one_reply("{\"op\":\"class.open\",\"name\":7}", "error");
	assert_string_equal(field(r, "code"), "bad_request");
	assert_string_equal(field(r, "param"), "name");
	assert_non_null(strstr(field(r, "message"), "1 to 32 characters"));
	json_decref(r);
	r = one_reply("{\"op\":\"class.open\",\"name\":\"a\\u0007b\"}", "error");
	assert_string_equal(field(r, "code"), "bad_param");
	assert_string_equal(field(r, "param"), "name");
	json_decref(r);
	r = one_reply("{\"op\":\"class.open\",\"tag\":\"c\",\"name\":\" Dr. Wu \"}",
		      "class.opened");
	assert_int_equal(strlen(field(r, "class")), 6);
	assert_string_equal(field(r, "instructor"), "Dr. Wu");
	json_decref(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(ping_echoes_its_tag, setup, teardown),
		cmocka_unit_test_setup_teardown(bad_messages_are_named, setup, teardown),
		cmocka_unit_test_setup_teardown(runs_are_checked_and_never_started, setup, teardown),
		cmocka_unit_test_setup_teardown(sign_in_and_open_a_class, setup, teardown),
	};

	return cmocka_run_group_tests_name("ws_ops", tests, NULL, NULL);
}
