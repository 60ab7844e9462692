/* test_config.c: `socklab serve` flag/environment parsing, the Origin policy and HTTP helpers. */
#include "unit.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "http.h"

/* A fake environment: name=value pairs. */
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

static int parse(struct serve_config *c, const char *const *env, char *err, size_t errlen, ...)
{
	char *argv[32];
	int argc = 0;
	va_list ap;
	char *a;

	argv[argc++] = "serve";
	va_start(ap, errlen);
	while ((a = va_arg(ap, char *)) != NULL && argc < 31)
		argv[argc++] = a;
	va_end(ap);
	argv[argc] = NULL;
	fake_env = env;
	err[0] = '\0';
	return config_parse(c, argc, argv, env_get, err, errlen);
}

static void test_defaults(void **state)
{
	struct serve_config c;
	char err[256];

	(void)state;
	assert_int_equal(parse(&c, NULL, err, sizeof err, NULL), 0);
	assert_string_equal(c.listen, "127.0.0.1");
	assert_int_equal(c.http_port, 8080);
	assert_int_equal(c.ws_port, -1);
	assert_string_equal(c.nats_url, "");
	assert_int_equal(c.nats_max_bytes, 1LL << 30);
	assert_string_equal(c.data, "./socklab-data");
	assert_string_equal(c.port_file, "");
	assert_int_equal(c.byo_lo, 9000);
	assert_int_equal(c.byo_hi, 9019);
	assert_string_equal(c.byo_bind, "127.0.0.1");
	assert_int_equal(c.max_runs, config_default_max_runs(sysconf(_SC_NPROCESSORS_ONLN),
							     (long long)sysconf(_SC_PHYS_PAGES) *
								     sysconf(_SC_PAGESIZE) >> 20));
	assert_int_equal(c.max_runs_auto, 1);
	assert_int_equal(c.queue_max, 1000);
	assert_int_equal(c.queue_wait_s, 300);
	assert_int_equal(c.max_runs_per_conn, 3);
	assert_int_equal(c.max_byo, 8);
	assert_int_equal(c.max_byo_per_conn, 1);
	assert_int_equal(c.run_timeout_s, 120);
	assert_int_equal(c.n_origins, 0);
	assert_false(c.any_origin);
	assert_false(c.listen_v6);
	assert_string_equal(c.lab_exe, "/proc/self/exe");
	assert_string_equal(c.lab_exe_from, "");
	assert_int_equal(config_check_lab_exe(&c, err, sizeof err), 0);
	assert_int_equal(c.fanout, CONFIG_FANOUT_AUTO);
}

static void test_flags(void **state)
{
	struct serve_config c;
	char err[256];

	(void)state;
	assert_int_equal(parse(&c, NULL, err, sizeof err, "--listen", "::1", "--http-port=0",
			       "--ws-port", "0", "--data", "/tmp/x", "--byo-ports", "7000-7001",
			       "--max-runs", "2", "--run-timeout", "5", "--origin",
			       "https://lab.example", "--origin", "http://10.0.0.1:8080/",
			       "--public-ws-url", "wss://lab.example/ws", NULL),
			 0);
	assert_string_equal(c.listen, "::1");
	assert_true(c.listen_v6);
	assert_int_equal(c.http_port, 0);
	assert_int_equal(c.ws_port, 0);
	assert_string_equal(c.data, "/tmp/x");
	assert_int_equal(c.byo_lo, 7000);
	assert_int_equal(c.byo_hi, 7001);
	assert_string_equal(c.byo_bind, "::1"); /* follows --listen */
	assert_int_equal(c.max_runs, 2);
	assert_int_equal(c.run_timeout_s, 5);
	assert_int_equal(c.n_origins, 2);
	assert_string_equal(c.origins[0], "https://lab.example");
	assert_string_equal(c.origins[1], "http://10.0.0.1:8080"); /* trailing '/' dropped */
	assert_string_equal(c.public_ws_url, "wss://lab.example/ws");
}

static void test_env_and_precedence(void **state)
{
	static const char *const env[] = {
		"SOCKLAB_HTTP_PORT=9090",
		"SOCKLAB_WS_PORT=9091",
		"SOCKLAB_ORIGINS=http://a.example, https://b.example:8443",
		"SOCKLAB_BYO_BIND=0.0.0.0",
		"SOCKLAB_MAX_BYO=0",
		NULL,
	};
	struct serve_config c;
	char err[256];

	(void)state;
	assert_int_equal(parse(&c, env, err, sizeof err, NULL), 0);
	assert_int_equal(c.http_port, 9090);
	assert_int_equal(c.ws_port, 9091);
	assert_int_equal(c.n_origins, 2);
	assert_string_equal(c.origins[0], "http://a.example");
	assert_string_equal(c.origins[1], "https://b.example:8443");
	assert_string_equal(c.byo_bind, "0.0.0.0");
	assert_int_equal(c.max_byo, 0);

	/* A flag wins over its variable; --origin flags replace the list. */
	assert_int_equal(parse(&c, env, err, sizeof err, "--http-port", "1234", "--origin",
			       "http://c.example", NULL),
			 0);
	assert_int_equal(c.http_port, 1234);
	assert_int_equal(c.ws_port, 9091);
	assert_int_equal(c.n_origins, 1);
	assert_string_equal(c.origins[0], "http://c.example");
}

static void test_nats(void **state)
{
	struct serve_config c;
	char err[256];

	(void)state;
	assert_int_equal(parse(&c, NULL, err, sizeof err, "--nats", "nats://127.0.0.1:4222",
			       "--nats-max-bytes", "64M", NULL),
			 0);
	assert_string_equal(c.nats_url, "nats://127.0.0.1:4222");
	assert_int_equal(c.nats_max_bytes, 64LL << 20);
	assert_int_equal(parse(&c, NULL, err, sizeof err, "--nats", "nats://[::1]", NULL), 0);
	assert_string_equal(c.nats_url, "nats://[::1]");
}

static void test_bad_values_name_the_flag(void **state)
{
	static const struct {
		const char *flag, *value, *want;
	} cases[] = {
		{"--http-port", "65536", "--http-port: must be an integer from 0 to 65535"},
		{"--ws-port", "-1", "--ws-port: must be an integer from 0 to 65535"},
		{"--ws-port", "80x", "--ws-port: must be an integer from 0 to 65535"},
		{"--max-runs", "0", "--max-runs: must be an integer from 1 to 1024"},
		{"--max-runs-per-conn", "65", "from 1 to 64"},
		{"--run-timeout", "3601", "--run-timeout: must be an integer from 1 to 3600"},
		{"--listen", "localhost", "--listen: must be an IPv4 or IPv6 address"},
		{"--byo-bind", "1.2.3", "--byo-bind: must be an IPv4 or IPv6 address"},
		{"--byo-ports", "9010-9000", "--byo-ports: must be LO-HI"},
		{"--byo-ports", "0-10", "--byo-ports: must be LO-HI"},
		{"--byo-ports", "1000-3000", "at most 1000 ports"},
		{"--origin", "evil.example", "--origin: must be an origin"},
		{"--origin", "http://a.example/path", "--origin: must be an origin"},
		{"--origin", "ftp://a.example", "--origin: must be an origin"},
		{"--public-ws-url", "http://x", "--public-ws-url: must be a ws:// or wss:// URL"},
		{"--public-ws-url", "ws://x/a;b", "--public-ws-url: must be a ws:// or wss:// URL"},
		{"--public-ws-url", "ws://x/ 'unsafe-inline'", "must be a ws:// or wss:// URL"},
		{"--data", "", "--data: must be a path"},
		{"--nats", "http://127.0.0.1:4222", "--nats: must be a nats:// URL"},
		{"--nats", "nats://x:4222/path", "--nats: must be a nats:// URL"},
		{"--nats", "nats://user:pw@x:4222", "--nats: must be a nats:// URL"},
		{"--nats-max-bytes", "1K", "--nats-max-bytes: must be a byte count"},
		{"--fanout", "uring", "--fanout: must be auto, io_uring, send or lws (got \"uring\")"},
		{"--fanout", "", "--fanout: must be auto, io_uring, send or lws"},
	};
	struct serve_config c;
	char err[256];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		int rc = parse(&c, NULL, err, sizeof err, cases[i].flag, cases[i].value, NULL);
		if (rc != -EINVAL || !strstr(err, cases[i].want))
			fail_msg("%s %s: rc %d, err \"%s\", want \"%s\"", cases[i].flag,
				 cases[i].value, rc, err, cases[i].want);
	}
}

static void test_fanout(void **state)
{
	static const char *const env[] = {"SOCKLAB_FANOUT=send", NULL};
	static const struct {
		const char *value;
		int want;
	} cases[] = {
		{"auto", CONFIG_FANOUT_AUTO},
		{"io_uring", CONFIG_FANOUT_IO_URING},
		{"send", CONFIG_FANOUT_SEND},
		{"lws", CONFIG_FANOUT_LWS},
	};
	struct serve_config c;
	char err[256];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		assert_int_equal(parse(&c, NULL, err, sizeof err, "--fanout", cases[i].value, NULL), 0);
		assert_int_equal(c.fanout, cases[i].want);
		assert_string_equal(config_fanout_names[c.fanout], cases[i].value);
	}
	assert_int_equal(parse(&c, env, err, sizeof err, NULL), 0);
	assert_int_equal(c.fanout, CONFIG_FANOUT_SEND);
	/* The flag wins over the variable. */
	assert_int_equal(parse(&c, env, err, sizeof err, "--fanout", "lws", NULL), 0);
	assert_int_equal(c.fanout, CONFIG_FANOUT_LWS);
	assert_non_null(strstr(config_usage, "--fanout MODE"));
}

static void test_bad_env_names_the_variable(void **state)
{
	static const char *const env[] = {"SOCKLAB_MAX_RUNS=lots", NULL};
	struct serve_config c;
	char err[256];

	(void)state;
	assert_int_equal(parse(&c, env, err, sizeof err, NULL), -EINVAL);
	assert_non_null(strstr(err, "SOCKLAB_MAX_RUNS: must be an integer from 1 to 1024"));
}

static void test_usage_errors(void **state)
{
	struct serve_config c;
	char err[256];

	(void)state;
	assert_int_equal(parse(&c, NULL, err, sizeof err, "--bogus", NULL), -EINVAL);
	assert_non_null(strstr(err, "unknown option '--bogus'"));
	assert_int_equal(parse(&c, NULL, err, sizeof err, "--http-port", NULL), -EINVAL);
	assert_non_null(strstr(err, "--http-port needs a value"));
	assert_int_equal(parse(&c, NULL, err, sizeof err, "--help", NULL), CONFIG_HELP);
	assert_int_equal(parse(&c, NULL, err, sizeof err, "-h", NULL), CONFIG_HELP);
	assert_non_null(strstr(config_usage, "--max-byo-per-conn"));
}

static void test_lab_exe(void **state)
{
	static const char *const env[] = {"SOCKLAB_LAB_EXE=/bin/sh", NULL};
	static const char *const relative[] = {"SOCKLAB_LAB_EXE=socklab", NULL};
	static const char *const old_hook[] = {"SOCKLAB_TEST_RUN_EXE=/bin/true", NULL};
	struct serve_config c;
	char err[256];

	(void)state;
	/* The variable, then a flag winning over it; each remembers its name
	 * for later messages. */
	assert_int_equal(parse(&c, env, err, sizeof err, NULL), 0);
	assert_string_equal(c.lab_exe, "/bin/sh");
	assert_string_equal(c.lab_exe_from, "SOCKLAB_LAB_EXE");
	assert_int_equal(config_check_lab_exe(&c, err, sizeof err), 0);
	assert_int_equal(parse(&c, env, err, sizeof err, "--lab-exe", "/bin/true", NULL), 0);
	assert_string_equal(c.lab_exe, "/bin/true");
	assert_string_equal(c.lab_exe_from, "--lab-exe");

	/* Syntax: an absolute path. */
	assert_int_equal(parse(&c, relative, err, sizeof err, NULL), -EINVAL);
	assert_non_null(strstr(err, "SOCKLAB_LAB_EXE: must be an absolute path"));
	assert_int_equal(parse(&c, NULL, err, sizeof err, "--lab-exe", "", NULL), -EINVAL);
	assert_non_null(strstr(err, "--lab-exe: must be an absolute path"));

	/* The file: it must exist, be a regular file and be executable. */
	assert_int_equal(parse(&c, NULL, err, sizeof err, "--lab-exe", "/nonexistent/x", NULL), 0);
	assert_int_equal(config_check_lab_exe(&c, err, sizeof err), -ENOENT);
	assert_string_equal(err, "--lab-exe: cannot execute /nonexistent/x: No such file or directory");
	assert_int_equal(parse(&c, NULL, err, sizeof err, "--lab-exe", "/tmp", NULL), 0);
	assert_int_equal(config_check_lab_exe(&c, err, sizeof err), -EINVAL);
	assert_string_equal(err, "--lab-exe: /tmp is not a regular file");

	/* The test-only hook it replaced is gone. */
	assert_int_equal(parse(&c, old_hook, err, sizeof err, NULL), 0);
	assert_string_equal(c.lab_exe, "/proc/self/exe");
}

static void test_origin_loopback(void **state)
{
	struct serve_config c;
	char err[256];

	(void)state;
	assert_int_equal(parse(&c, NULL, err, sizeof err, NULL), 0);
	/* No Origin: a non-browser client. */
	assert_true(config_origin_allowed(&c, 8080, NULL, "127.0.0.1:8081"));
	assert_true(config_origin_allowed(&c, 8080, "http://127.0.0.1:8080", NULL));
	assert_true(config_origin_allowed(&c, 8080, "http://localhost:8080", NULL));
	assert_true(config_origin_allowed(&c, 8080, "http://[::1]:8080", NULL));
	assert_true(config_origin_allowed(&c, 8080, "HTTP://LOCALHOST:8080", NULL));
	assert_false(config_origin_allowed(&c, 8080, "http://localhost:8081", NULL));
	assert_false(config_origin_allowed(&c, 8080, "http://evil.example", NULL));
	assert_false(config_origin_allowed(&c, 8080, "http://127.0.0.1:8080.evil.example", NULL));
	assert_false(config_origin_allowed(&c, 8080, "null", NULL));
	assert_false(config_origin_allowed(&c, 8080, "", NULL));
	/* The Host header does not widen a loopback listener. */
	assert_false(config_origin_allowed(&c, 8080, "http://evil.example:8080",
					   "evil.example:8081"));
}

static void test_origin_wildcard_and_extra(void **state)
{
	struct serve_config c;
	char err[256];

	(void)state;
	assert_int_equal(parse(&c, NULL, err, sizeof err, "--listen", "0.0.0.0", "--origin",
			       "https://lab.example", NULL),
			 0);
	/* The page came from the host the client connected to. */
	assert_true(config_origin_allowed(&c, 80, "http://10.1.2.3:80", "10.1.2.3:8081"));
	/* A name in Host is not trusted (DNS rebinding): list it with --origin. */
	assert_false(config_origin_allowed(&c, 80, "http://lab-pc:80", "lab-pc:8081"));
	assert_false(config_origin_allowed(&c, 80, "http://evil.example:80", "evil.example:8081"));
	assert_true(config_origin_allowed(&c, 80, "http://[fd00::1]:80", "[fd00::1]:8081"));
	assert_false(config_origin_allowed(&c, 80, "http://other:80", "lab-pc:8081"));
	assert_false(config_origin_allowed(&c, 80, "http://10.1.2.3:80", NULL));
	assert_false(config_origin_allowed(&c, 80, "http://a b:80", "a b:8081"));
	assert_true(config_origin_allowed(&c, 80, "https://lab.example", "x"));
	assert_false(config_origin_allowed(&c, 80, "https://lab.example.evil", "x"));
	/* So does a listener on one LAN address; a name needs --origin. */
	assert_int_equal(parse(&c, NULL, err, sizeof err, "--listen", "10.1.2.3", NULL), 0);
	assert_true(config_origin_allowed(&c, 80, "http://10.1.2.3:80", NULL));
	assert_false(config_origin_allowed(&c, 80, "http://lab-pc:80", "lab-pc:8081"));
	assert_int_equal(parse(&c, NULL, err, sizeof err, "--listen", "10.1.2.3", "--origin",
			       "http://lab-pc:80", NULL), 0);
	assert_true(config_origin_allowed(&c, 80, "http://lab-pc:80", "lab-pc:8081"));
	assert_false(config_origin_allowed(&c, 80, "http://lab-pc:81", "lab-pc:8081"));
	/* --origin '*' accepts anything. */
	assert_int_equal(parse(&c, NULL, err, sizeof err, "--origin", "*", NULL), 0);
	assert_true(config_origin_allowed(&c, 8080, "http://evil.example", NULL));
}

static void test_addresses(void **state)
{
	char out[64];

	(void)state;
	assert_true(config_is_loopback("127.0.0.1"));
	assert_true(config_is_loopback("127.1.2.3"));
	assert_true(config_is_loopback("::1"));
	assert_false(config_is_loopback("10.0.0.1"));
	assert_true(config_is_wildcard("0.0.0.0"));
	assert_true(config_is_wildcard("::"));
	assert_false(config_is_wildcard("127.0.0.1"));
	config_url_host("::1", out, sizeof out);
	assert_string_equal(out, "[::1]");
	config_url_host("10.0.0.1", out, sizeof out);
	assert_string_equal(out, "10.0.0.1");
}

static void test_http_helpers(void **state)
{
	char h[64];

	(void)state;
	assert_string_equal(http_content_type("/index.html"), "text/html; charset=utf-8");
	assert_string_equal(http_content_type("/labs/tcp-echo.js"),
			    "text/javascript; charset=utf-8");
	assert_string_equal(http_content_type("/app.css"), "text/css; charset=utf-8");
	assert_string_equal(http_content_type("/i.svg"), "image/svg+xml");
	assert_string_equal(http_content_type("/f.woff2"), "font/woff2");
	assert_string_equal(http_content_type("/favicon.ico"), "image/x-icon");
	assert_string_equal(http_content_type("/x"), "application/octet-stream");
	assert_string_equal(http_content_type("/js"), "application/octet-stream");

	assert_int_equal(http_host_from_header("example.org:8080", h, sizeof h), 0);
	assert_string_equal(h, "example.org");
	assert_int_equal(http_host_from_header("10.0.0.1", h, sizeof h), 0);
	assert_string_equal(h, "10.0.0.1");
	assert_int_equal(http_host_from_header("[::1]:80", h, sizeof h), 0);
	assert_string_equal(h, "[::1]");
	assert_int_equal(http_host_from_header(NULL, h, sizeof h), -EINVAL);
	assert_int_equal(http_host_from_header("", h, sizeof h), -EINVAL);
	assert_int_equal(http_host_from_header("a;b", h, sizeof h), -EINVAL);
	assert_int_equal(http_host_from_header("a'b:80", h, sizeof h), -EINVAL);
	assert_int_equal(http_host_from_header("a:80x", h, sizeof h), -EINVAL);
	assert_int_equal(http_host_from_header("[::1;]:80", h, sizeof h), -EINVAL);
	assert_int_equal(http_host_from_header("a b", h, sizeof h), -EINVAL);
}

static void test_classroom_settings(void **state)
{
	static const char *const env[] = {"SOCKLAB_INSTRUCTOR_SECRET=from-the-env-1",
					  "SOCKLAB_MAX_CLASS_VIEWERS=9000", NULL};
	struct serve_config c;
	char err[256];

	(void)state;
	assert_int_equal(parse(&c, NULL, err, sizeof err, NULL), 0);
	assert_string_equal(c.instructor_secret, "");
	assert_int_equal(c.secret_generated, 0);
	assert_int_equal(c.max_classes, 8);
	assert_int_equal(c.max_class_viewers, 200);
	assert_int_equal(c.class_buffer, 4096);
	assert_int_equal(c.max_conns, 1024);
	assert_int_equal(c.msg_rate, 20);
	assert_int_equal(parse(&c, env, err, sizeof err, NULL), 0);
	assert_string_equal(c.instructor_secret, "from-the-env-1");
	assert_int_equal(c.max_class_viewers, 9000);
	assert_int_equal(parse(&c, env, err, sizeof err, "--instructor-secret", "flag-wins-99",
			       NULL), 0);
	assert_string_equal(c.instructor_secret, "flag-wins-99");
	/* Beyond loopback without a secret one is generated (24 characters). */
	assert_int_equal(parse(&c, NULL, err, sizeof err, "--listen", "0.0.0.0", NULL), 0);
	assert_int_equal(c.secret_generated, 1);
	assert_int_equal(strlen(c.instructor_secret), 24);
	assert_int_equal(parse(&c, env, err, sizeof err, "--listen", "0.0.0.0", NULL), 0);
	assert_int_equal(c.secret_generated, 0);
	/* Behind a reverse proxy a loopback listener is reachable from anywhere. */
	assert_int_equal(parse(&c, NULL, err, sizeof err, "--origin", "https://lab.example", NULL), 0);
	assert_int_equal(c.secret_generated, 1);
	assert_int_equal(parse(&c, NULL, err, sizeof err, "--public-ws-url", "wss://lab.example/ws",
			       NULL), 0);
	assert_int_equal(c.secret_generated, 1);
	assert_int_equal(parse(&c, NULL, err, sizeof err, "--instructor-secret", "short", NULL),
			 -EINVAL);
	assert_non_null(strstr(err, "--instructor-secret: must be 8 to 128 printable"));
	assert_null(strstr(err, "short"));
	assert_int_equal(parse(&c, NULL, err, sizeof err, "--max-conns", "8", NULL), -EINVAL);
	assert_non_null(strstr(err, "--max-conns: must be an integer from 16 to 60000"));
	assert_int_equal(parse(&c, NULL, err, sizeof err, "--class-buffer", "0", NULL), -EINVAL);
	assert_int_equal(parse(&c, NULL, err, sizeof err, "--msg-rate", "1001", NULL), -EINVAL);
}

static void test_host_policy(void **state)
{
	struct serve_config c;
	char err[256];

	(void)state;
	assert_int_equal(parse(&c, NULL, err, sizeof err, NULL), 0);
	assert_int_equal(c.http_max_conns, 1024);
	assert_int_equal(c.max_conns_per_addr, 64);
	assert_int_equal(c.header_timeout_s, 10);
	assert_int_equal(c.queue_total_mib, 64);
	assert_true(config_host_allowed(&c, NULL));
	assert_true(config_host_allowed(&c, "127.0.0.1"));
	assert_true(config_host_allowed(&c, "127.0.0.1:8080"));
	assert_true(config_host_allowed(&c, "127.9.9.9:8080"));
	assert_true(config_host_allowed(&c, "[::1]:8080"));
	assert_true(config_host_allowed(&c, "LocalHost:8080"));
	assert_false(config_host_allowed(&c, "evil.example"));
	assert_false(config_host_allowed(&c, "evil.example:8080"));
	assert_false(config_host_allowed(&c, "localhost.evil.example"));
	assert_false(config_host_allowed(&c, "10.0.0.1"));
	assert_false(config_host_allowed(&c, "127.0.0.1:80x"));
	assert_false(config_host_allowed(&c, "127.0.0.1:"));
	assert_false(config_host_allowed(&c, ""));
	assert_false(config_host_allowed(&c, "[::1"));

	assert_int_equal(parse(&c, NULL, err, sizeof err, "--listen", "192.0.2.7", "--origin",
			       "https://lab.example.edu", "--public-ws-url",
			       "wss://ws.example.edu/ws", NULL),
			 0);
	assert_true(config_host_allowed(&c, "192.0.2.7:8080"));
	assert_true(config_host_allowed(&c, "LAB.example.edu"));
	assert_true(config_host_allowed(&c, "ws.example.edu:443"));
	assert_false(config_host_allowed(&c, "192.0.2.8"));
	assert_false(config_host_allowed(&c, "127.0.0.1"));
	assert_false(config_host_allowed(&c, "localhost"));
	assert_false(config_host_allowed(&c, "example.edu"));

	assert_int_equal(parse(&c, NULL, err, sizeof err, "--listen", "0.0.0.0", NULL), 0);
	assert_true(config_host_allowed(&c, "198.51.100.3:8080"));
	assert_true(config_host_allowed(&c, "localhost"));
	assert_false(config_host_allowed(&c, "lab.example.edu"));

	assert_int_equal(parse(&c, NULL, err, sizeof err, "--origin", "*", NULL), 0);
	assert_true(config_host_allowed(&c, "anything.example"));
	assert_int_equal(parse(&c, NULL, err, sizeof err, "--header-timeout", "0", NULL), -EINVAL);
	assert_non_null(strstr(err, "--header-timeout: must be an integer from 1 to 300"));
}

static void test_default_max_runs(void **state)
{
	(void)state;
	/* Eight per core, one per 64 MiB at most, within 4..1024. */
	assert_int_equal(config_default_max_runs(2, 24105), 16);
	assert_int_equal(config_default_max_runs(8, 65536), 64);
	assert_int_equal(config_default_max_runs(16, 2048), 32);
	assert_int_equal(config_default_max_runs(1, 128), 4);
	assert_int_equal(config_default_max_runs(0, 0), 8);
	assert_int_equal(config_default_max_runs(512, 1LL << 30), 1024);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_flags),
		cmocka_unit_test(test_env_and_precedence),
		cmocka_unit_test(test_nats),
		cmocka_unit_test(test_bad_values_name_the_flag),
		cmocka_unit_test(test_fanout),
		cmocka_unit_test(test_bad_env_names_the_variable),
		cmocka_unit_test(test_usage_errors),
		cmocka_unit_test(test_lab_exe),
		cmocka_unit_test(test_origin_loopback),
		cmocka_unit_test(test_origin_wildcard_and_extra),
		cmocka_unit_test(test_addresses),
		cmocka_unit_test(test_http_helpers),
		cmocka_unit_test(test_classroom_settings),
		cmocka_unit_test(test_host_policy),
		cmocka_unit_test(test_default_max_runs),
	};

	return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
