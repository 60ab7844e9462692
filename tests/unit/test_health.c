/* test_health.c: `socklab health`: URL parsing, the default URL, judging an answer. */
#include "unit.h"

#include <errno.h>
#include <string.h>

#include "health.h"

static const char *const *fake_env;

static const char *env_get(const char *name)
{
	size_t n = strlen(name);
	int i;

	for (i = 0; fake_env && fake_env[i]; i++)
		if (!strncmp(fake_env[i], name, n) && fake_env[i][n] == '=')
			return fake_env[i] + n + 1;
	return NULL;
}

static void parses_urls(void **state)
{
	struct health_url u;
	char err[256];

	(void)state;
	assert_int_equal(health_parse_url("http://127.0.0.1:8080/api/health", &u, err, sizeof err), 0);
	assert_string_equal(u.host, "127.0.0.1");
	assert_int_equal(u.port, 8080);
	assert_string_equal(u.path, "/api/health");
	assert_int_equal(health_parse_url("http://10.0.0.7", &u, err, sizeof err), 0);
	assert_int_equal(u.port, 80);
	assert_string_equal(u.path, "/");
	assert_int_equal(health_parse_url("http://[::1]:9/x?y=1", &u, err, sizeof err), 0);
	assert_string_equal(u.host, "::1");
	assert_int_equal(u.port, 9);
	assert_string_equal(u.path, "/x?y=1");
}

static void refuses_bad_urls(void **state)
{
	static const char *const bad[] = {
		"https://127.0.0.1/", "http://localhost:8080/", "http://127.0.0.1:0/",
		"http://127.0.0.1:65536/", "http://127.0.0.1:80x/", "http://[::1/", "http://[]:80/",
		"http://127.0.0.1:/", "http://127.0.0.1/a b", "http://::1:80/", "127.0.0.1:8080",
		NULL,
	};
	struct health_url u;
	char err[256];
	int i;

	(void)state;
	for (i = 0; bad[i]; i++) {
		err[0] = '\0';
		assert_int_equal(health_parse_url(bad[i], &u, err, sizeof err), -EINVAL);
		assert_non_null(strstr(err, "URL must be http://ADDRESS[:PORT][/PATH]"));
		assert_non_null(strstr(err, bad[i]));
	}
}

static void default_url_follows_the_server_settings(void **state)
{
	static const char *const wild4[] = {"SOCKLAB_LISTEN=0.0.0.0", "SOCKLAB_HTTP_PORT=9090", NULL};
	static const char *const wild6[] = {"SOCKLAB_LISTEN=::", NULL};
	static const char *const addr[] = {"SOCKLAB_LISTEN=10.1.2.3", NULL};
	char url[200];

	(void)state;
	fake_env = NULL;
	health_default_url(env_get, url, sizeof url);
	assert_string_equal(url, "http://127.0.0.1:8080/api/health");
	fake_env = wild4;
	health_default_url(env_get, url, sizeof url);
	assert_string_equal(url, "http://127.0.0.1:9090/api/health");
	fake_env = wild6;
	health_default_url(env_get, url, sizeof url);
	assert_string_equal(url, "http://[::1]:8080/api/health");
	fake_env = addr;
	health_default_url(env_get, url, sizeof url);
	assert_string_equal(url, "http://10.1.2.3:8080/api/health");
}

static int judge(const char *resp, char *err, size_t errlen)
{
	err[0] = '\0';
	return health_check_response(resp, strlen(resp), err, errlen);
}

static void judges_answers(void **state)
{
	char err[256];

	(void)state;
	assert_int_equal(judge("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n"
			       "{\"status\":\"ok\",\"runs_active\":0}",
			       err, sizeof err),
			 0);
	assert_int_equal(judge("HTTP/1.1 503 Service Unavailable\r\n\r\n{}", err, sizeof err),
			 -EPROTO);
	assert_string_equal(err, "answered HTTP/1.1 503 Service Unavailable");
	assert_int_equal(judge("HTTP/1.1 200 OK\r\n\r\n{\"status\":\"starting\"}", err, sizeof err),
			 -EPROTO);
	assert_int_equal(judge("HTTP/1.1 200 OK\r\n\r\nnot json", err, sizeof err), -EPROTO);
	assert_int_equal(judge("HTTP/1.1 200 OK\r\nX: y\r\n", err, sizeof err), -EPROTO);
	assert_string_equal(err, "the response has no body");
	assert_int_equal(judge("SSH-2.0-OpenSSH_9.2\r\n", err, sizeof err), -EPROTO);
	assert_string_equal(err, "not an HTTP response");
	assert_int_equal(judge("", err, sizeof err), -EPROTO);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(parses_urls),
		cmocka_unit_test(refuses_bad_urls),
		cmocka_unit_test(default_url_follows_the_server_settings),
		cmocka_unit_test(judges_answers),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
