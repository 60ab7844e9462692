/* test_params.c: parameter schema validation (types, ranges, choices, messages). */
#include "unit.h"

#include <string.h>

#include "lab.h"

static const struct lab_desc *echo(void)
{
	const struct lab_desc *d = lab_find("tcp-echo");
	assert_non_null(d);
	return d;
}

static void defaults_are_applied(void **state)
{
	struct lab_params p;

	lab_params_init(&p, echo());
	assert_int_equal(lab_int(&p, "messages"), 3);
	assert_string_equal(lab_str(&p, "transform"), "upper");
	assert_int_equal(lab_int(&p, "transform"), 0);
	assert_false(lab_is_set(&p, "messages"));
}

static void int_in_range_is_set(void **state)
{
	struct lab_params p;
	char err[256] = "";

	lab_params_init(&p, echo());
	assert_int_equal(lab_param_set_kv(&p, "messages=1000", err, sizeof err), 0);
	assert_int_equal(lab_int(&p, "messages"), 1000);
	assert_true(lab_is_set(&p, "messages"));
}

static void int_out_of_range_names_field_and_range(void **state)
{
	struct lab_params p;
	char err[256] = "";

	lab_params_init(&p, echo());
	assert_true(lab_param_set(&p, "messages", "1001", err, sizeof err) < 0);
	assert_string_equal(err, "parameter 'messages': must be an integer from 1 to 1000 (got \"1001\")");
	assert_true(lab_param_set(&p, "messages", "0", err, sizeof err) < 0);
	assert_true(lab_param_set(&p, "messages", "3x", err, sizeof err) < 0);
	assert_true(lab_param_set(&p, "messages", "", err, sizeof err) < 0);
	assert_true(lab_param_set(&p, "messages", " 3", err, sizeof err) < 0);
	assert_true(lab_param_set(&p, "messages", "99999999999999999999", err, sizeof err) < 0);
	/* A rejected value leaves the previous one in place. */
	assert_int_equal(lab_int(&p, "messages"), 3);
}

static void enum_lists_choices(void **state)
{
	struct lab_params p;
	char err[256] = "";

	lab_params_init(&p, echo());
	assert_true(lab_param_set(&p, "server_style", "forking", err, sizeof err) < 0);
	assert_string_equal(err, "parameter 'server_style': must be one of iterative or concurrent "
				 "(got \"forking\")");
	assert_int_equal(lab_param_set(&p, "server_style", "concurrent", err, sizeof err), 0);
	assert_int_equal(lab_int(&p, "server_style"), 1);
}

static void unknown_param_lists_known_ones(void **state)
{
	struct lab_params p;
	char err[512] = "";

	lab_params_init(&p, echo());
	assert_true(lab_param_set_kv(&p, "mesages=3", err, sizeof err) < 0);
	assert_non_null(strstr(err, "unknown parameter 'mesages' for lab tcp-echo; known: mode, messages"));
	assert_true(lab_param_set_kv(&p, "novalue", err, sizeof err) < 0);
	assert_string_equal(err, "-p expects KEY=VALUE (got \"novalue\")");
}

static void string_limits_and_control_chars(void **state)
{
	struct lab_params p;
	char err[256] = "", big[600];

	lab_params_init(&p, echo());
	memset(big, 'a', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	assert_true(lab_param_set(&p, "text", big, err, sizeof err) < 0);
	assert_string_equal(err, "parameter 'text': must be text of 1 to 512 bytes (got 599 bytes)");
	assert_true(lab_param_set(&p, "text", "a\x01" "b", err, sizeof err) < 0);
	assert_true(lab_param_set(&p, "text", "bad \xff utf8", err, sizeof err) < 0);
	assert_int_equal(lab_param_set(&p, "text", "你好, socklab", err, sizeof err), 0);
}

static void json_types_are_strict(void **state)
{
	struct lab_params p;
	char err[256] = "";
	json_t *v;

	lab_params_init(&p, echo());
	v = json_string("5");
	assert_true(lab_param_set_json(&p, "messages", v, err, sizeof err) < 0);
	assert_string_equal(err, "parameter 'messages': must be a JSON integer from 1 to 1000");
	json_decref(v);
	v = json_real(5.0);
	assert_true(lab_param_set_json(&p, "messages", v, err, sizeof err) < 0);
	json_decref(v);
	v = json_integer(7);
	assert_int_equal(lab_param_set_json(&p, "messages", v, err, sizeof err), 0);
	assert_int_equal(lab_int(&p, "messages"), 7);
	json_decref(v);
	v = json_integer(2);
	assert_true(lab_param_set_json(&p, "mode", v, err, sizeof err) < 0);
	assert_string_equal(err, "parameter 'mode': must be a JSON string");
	json_decref(v);
}

static void cross_check_names_param(void **state)
{
	struct lab_params p;
	char err[256] = "";
	const char *bad = NULL;

	lab_params_init(&p, echo());
	assert_int_equal(lab_param_set(&p, "bind", "not-an-ip", err, sizeof err), 0);
	assert_true(lab_params_check(&p, &bad, err, sizeof err) < 0);
	assert_string_equal(bad, "bind");
	lab_params_init(&p, echo());
	assert_int_equal(lab_param_set(&p, "mode", "server", err, sizeof err), 0);
	assert_int_equal(lab_param_set(&p, "clients", "2", err, sizeof err), 0);
	assert_true(lab_params_check(&p, &bad, err, sizeof err) < 0);
	assert_string_equal(bad, "clients");
}

static void describe_has_schema(void **state)
{
	json_t *d = lab_describe(echo());
	json_t *params = json_object_get(d, "params");
	json_t *first = json_array_get(params, 1);

	assert_string_equal(json_string_value(json_object_get(d, "name")), "tcp-echo");
	assert_int_equal(json_array_size(params), echo()->n_params);
	assert_string_equal(json_string_value(json_object_get(first, "name")), "messages");
	assert_string_equal(json_string_value(json_object_get(first, "type")), "integer");
	assert_int_equal(json_integer_value(json_object_get(first, "min")), 1);
	assert_int_equal(json_integer_value(json_object_get(first, "max")), 1000);
	assert_int_equal(json_integer_value(json_object_get(first, "default")), 3);
	json_decref(d);
}

static void params_json_is_typed(void **state)
{
	struct lab_params p;
	json_t *j;

	lab_params_init(&p, echo());
	j = lab_params_json(&p);
	assert_true(json_is_integer(json_object_get(j, "messages")));
	assert_true(json_is_string(json_object_get(j, "mode")));
	json_decref(j);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(defaults_are_applied),
		cmocka_unit_test(int_in_range_is_set),
		cmocka_unit_test(int_out_of_range_names_field_and_range),
		cmocka_unit_test(enum_lists_choices),
		cmocka_unit_test(unknown_param_lists_known_ones),
		cmocka_unit_test(string_limits_and_control_chars),
		cmocka_unit_test(json_types_are_strict),
		cmocka_unit_test(cross_check_names_param),
		cmocka_unit_test(describe_has_schema),
		cmocka_unit_test(params_json_is_typed),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
