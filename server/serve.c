/* serve.c: `socklab serve`: configuration, start-up order, port file and shutdown. */
#include "serve.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <poll.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bus.h"
#include "bus_class.h"
#include "config.h"
#include "front.h"
#include "http.h"
#include "privs.h"
#include "runs.h"
#include "tcpstate/tcpstate.h"
#include "version.h"
#include "ws.h"

static const char *env_lookup(const char *name)
{
	return getenv(name);
}

/* Children get stdin, stdout and stderr by number: make sure all three are
 * open so no pipe or file of ours lands on one of them. */
static void ensure_std_fds(void)
{
	int fd = open("/dev/null", O_RDWR);

	while (fd >= 0 && fd <= 2)
		fd = open("/dev/null", O_RDWR);
	if (fd > 2)
		close(fd);
}

/* Every connection the limits allow is an fd: raise the soft fd limit to
 * what they add up to (within the hard limit), and say so when it cannot be.
 * Runs are unaffected: each child sets its own limit. */
static void raise_fd_limit(const struct serve_config *c)
{
	/* HTTP connections, those waiting for their first bytes, WebSocket. */
	rlim_t want = (rlim_t)c->http_max_conns * 2 + (rlim_t)c->max_conns +
		      (rlim_t)c->max_runs * 8 + 256;
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= want)
		return;
	rl.rlim_cur = rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want ? rl.rlim_max : want;
	setrlimit(RLIMIT_NOFILE, &rl);
	if (rl.rlim_cur < want)
		fprintf(stderr,
			"socklab serve: the fd limit (ulimit -n %llu) is below what --http-max-conns, "
			"--max-conns and --max-runs add up to (%llu): connections beyond it are "
			"refused\n",
			(unsigned long long)rl.rlim_cur, (unsigned long long)want);
}

/* Start `exe build-id` and read what it prints (at most idlen - 1 bytes, one
 * line, within 5 s). 0 when it exited with 0, else a negative code and why
 * in why. */
static int probe_build_id(const char *exe, char *id, size_t idlen, char *why, size_t whylen)
{
	struct pollfd pfd = {.events = POLLIN};
	int fds[2], st = 0, rc = 0;
	size_t got = 0;
	pid_t pid;

	if (pipe2(fds, O_CLOEXEC) < 0) {
		snprintf(why, whylen, "pipe: %s", strerror(errno));
		return -errno;
	}
	pid = fork();
	if (pid < 0) {
		rc = -errno;
		snprintf(why, whylen, "fork: %s", strerror(errno));
		close(fds[0]);
		close(fds[1]);
		return rc;
	}
	if (pid == 0) {
		if (dup2(fds[1], 1) < 0)
			_exit(127);
		execl(exe, "socklab-lab", "build-id", (char *)NULL);
		_exit(127);
	}
	close(fds[1]);
	pfd.fd = fds[0];
	while (got < idlen - 1) {
		ssize_t n;
		int p = poll(&pfd, 1, 5000);
		if (p < 0 && errno == EINTR)
			continue;
		if (p <= 0) {
			rc = -ETIMEDOUT;
			snprintf(why, whylen, "no answer within 5 s");
			kill(pid, SIGKILL);
			break;
		}
		n = read(fds[0], id + got, idlen - 1 - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(fds[0]);
	id[got] = '\0';
	id[strcspn(id, "\n")] = '\0';
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	if (rc == 0 && WIFEXITED(st) && WEXITSTATUS(st) == 127) {
		rc = -ENOEXEC;
		snprintf(why, whylen, "it could not be executed");
	} else if (rc == 0 && WIFEXITED(st) && WEXITSTATUS(st) != 0) {
		rc = -ENOEXEC;
		snprintf(why, whylen, "`build-id` exited with status %d", WEXITSTATUS(st));
	} else if (rc == 0 && WIFSIGNALED(st)) {
		rc = -ENOEXEC;
		snprintf(why, whylen, "`build-id` was killed by signal %d", WTERMSIG(st));
	}
	return rc;
}

/* With no --lab-exe, runs execute socklab-lab from this binary's directory
 * when it is there and from the same build (it prints our build id): it
 * starts in a fraction of the time this binary does, which loads the
 * server's libraries. Otherwise runs execute this binary, and a socklab-lab
 * that is there but not used is reported on stderr with the reason. */
static void find_lab_exe(struct serve_config *c)
{
	char self[PATH_MAX], exe[CONFIG_PATH_MAX], id[80], why[80] = "";
	ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
	char *slash;
	int rc;

	if (c->lab_exe_from[0] || n <= 0)
		return;
	self[n] = '\0';
	slash = strrchr(self, '/');
	if (!slash)
		return;
	*slash = '\0';
	if (snprintf(exe, sizeof exe, "%s/socklab-lab", self) >= (int)sizeof exe ||
	    access(exe, F_OK) < 0)
		return;
	rc = probe_build_id(exe, id, sizeof id, why, sizeof why);
	if (rc == 0 && !strcmp(id, socklab_build_id)) {
		memcpy(c->lab_exe, exe, sizeof c->lab_exe);
		return;
	}
	if (rc < 0)
		fprintf(stderr,
			"socklab serve: %s did not start (%s): runs execute this binary, which "
			"starts more slowly\n",
			exe, why);
	else
		fprintf(stderr,
			"socklab serve: %s is from another build (build %.20s, this one %s): runs "
			"execute this binary, which starts more slowly; `make all` builds both\n",
			exe, id[0] ? id : "unknown", socklab_build_id);
}

/* {"http_port":N,"ws_port":M,"ws_path":"/ws"}, written to a temporary file
 * renamed over path, so a reader never sees it half written. ws_port is
 * where a WebSocket client connects: N itself unless --ws-port. */
static int write_port_file(const char *path, int http_port, int ws_port, char *err,
			   size_t errlen)
{
	char tmp[CONFIG_PATH_MAX + 16], buf[96];
	int fd, n, rc = 0;

	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	n = snprintf(buf, sizeof buf, "{\"http_port\":%d,\"ws_port\":%d,\"ws_path\":\"%s\"}\n",
		     http_port, ws_port, WS_PATH);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		rc = -errno;
	if (rc == 0 && write(fd, buf, (size_t)n) != n)
		rc = -EIO;
	if (fd >= 0 && close(fd) < 0 && rc == 0)
		rc = -errno;
	if (rc == 0 && rename(tmp, path) < 0)
		rc = -errno;
	if (rc < 0) {
		unlink(tmp);
		snprintf(err, errlen, "cannot write --port-file %.300s: %s", path, strerror(-rc));
	}
	return rc;
}

int serve_main(int argc, char **argv)
{
	struct serve_config cfg;
	struct http_counters counters;
	struct ws_server *ws = NULL;
	struct http_server *http = NULL;
	struct front *front = NULL;
	struct bus *bus = NULL;
	struct bus_class *bclass = NULL;
	struct bundle_store *store = NULL;
	char err[512], host[CONFIG_ADDR_MAX + 2], lab_note[1024];
	sigset_t mask;
	int rc, sfd, status = 1, port = 0, wsp = 0;

	rc = config_parse(&cfg, argc, argv, env_lookup, err, sizeof err);
	if (rc == CONFIG_HELP) {
		fputs(config_usage, stdout);
		return 0;
	}
	if (rc < 0) {
		fprintf(stderr, "socklab serve: %s\n", err);
		return 2;
	}
	rc = config_check_lab_exe(&cfg, err, sizeof err);
	if (rc < 0) {
		fprintf(stderr, "socklab serve: %s\n", err);
		return 2;
	}
	/* The server itself needs no capability: a non-root server gives up
	 * any it was handed (podman passes --cap-add ones to a non-root user
	 * as ambient capabilities) before it starts a thread. Lab runs get
	 * theirs from the lab program's file capabilities (privs.h). A root
	 * server keeps its own: run as root on a host, it is the host's. */
	if (geteuid() != 0 && privs_drop(err, sizeof err) < 0) {
		fprintf(stderr, "socklab serve: %s\n", err);
		return 1;
	}
	find_lab_exe(&cfg);
	privs_describe_exe(cfg.lab_exe, lab_note, sizeof lab_note);
	ensure_std_fds();
	raise_fd_limit(&cfg);
	rc = runs_recover(cfg.data, err, sizeof err);
	if (rc < 0) {
		fprintf(stderr, "socklab serve: %s\n", err);
		return 1;
	}
	if (rc > 0)
		fprintf(stderr, "socklab serve: %d run(s) were in progress when the server last "
				"stopped; marked as error\n", rc);
	fprintf(stderr,
		"socklab serve: runs: at most %d at once (--max-runs%s); up to %d more wait in "
		"the queue (--queue-max), each at most %d s (--queue-wait)\n",
		cfg.max_runs, cfg.max_runs_auto ? ", sized from this machine's cores and memory" : "",
		cfg.queue_max, cfg.queue_wait_s);
	rc = bundle_default_limits(cfg.data, cfg.max_runs, &cfg.max_data, &cfg.max_run_data);
	if (rc < 0) {
		fprintf(stderr, "socklab serve: cannot read the size of %s's filesystem: %s\n",
			cfg.data, strerror(-rc));
		return 1;
	}
	if (cfg.max_run_data > cfg.max_data) {
		fprintf(stderr,
			"socklab serve: --max-run-data (%lld bytes) must not be more than "
			"--max-data (%lld bytes)\n",
			cfg.max_run_data, cfg.max_data);
		return 2;
	}
	rc = bundle_store_open(&store, cfg.data, cfg.max_data, cfg.keep_runs, err, sizeof err);
	if (rc < 0) {
		fprintf(stderr, "socklab serve: %s\n", err);
		return 1;
	}
	/* Within --keep-runs and --max-data from the start (either may have
	 * been lowered since the bundles were written). */
	bundle_store_prune(store, 0);
	/* Tracefs instances of runs that were killed beyond the kept pool, and
	 * of builds before it (harmless without root). */
	tcpst_trace_cleanup(0);

	/* Signals are read in the lws loop through a signalfd; block them
	 * before any thread exists so every thread inherits the mask. */
	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGCHLD);
	pthread_sigmask(SIG_BLOCK, &mask, NULL);
	sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (sfd < 0) {
		fprintf(stderr, "socklab serve: signalfd: %s\n", strerror(errno));
		bundle_store_close(store);
		return 1;
	}

	http_counters_init(&counters);
	/* The public port first (front.h): socklab listens on it, and hands
	 * each connection to libwebsockets (GET /ws) or libmicrohttpd. */
	rc = front_open(&front, &cfg, &counters, err, sizeof err);
	if (rc < 0) {
		close(sfd);
	} else {
		port = front_port(front);
		rc = ws_create(&ws, &cfg, &counters, store, sfd, err, sizeof err);
	}
	if (rc == 0) {
		wsp = ws_port(ws) >= 0 ? ws_port(ws) : port;
		ws_set_http_port(ws, port);
		rc = http_start(&http, &cfg, port, wsp, &counters, store, err, sizeof err);
	}
	/* --nats: connecting goes on in the background (a NATS that is down
	 * does not stop the server); only a bad setting fails here. */
	if (rc == 0 && cfg.nats_url[0]) {
		rc = bus_start(&bus, &cfg, err, sizeof err);
		if (rc == 0) {
			ws_set_bus(ws, bus);
			http_set_bus(http, bus);
			/* Each run's meta goes to the run index; a removed
			 * bundle takes its events out of the stream. */
			bundle_store_set_listener(store, bus_meta_put, bus_run_removed, bus);
			/* Classes across replicas. */
			rc = bus_class_start(&bclass, bus, &cfg, &counters, ws_wake, ws, err,
					     sizeof err);
		}
		if (rc == 0) {
			ws_set_bus_class(ws, bclass);
			http_set_bus_class(http, bclass);
		}
	}
	if (rc == 0)
		rc = front_start(front, http, ws, err, sizeof err);
	if (rc == 0 && cfg.port_file[0])
		rc = write_port_file(cfg.port_file, port, wsp, err, sizeof err);
	if (rc < 0) {
		fprintf(stderr, "socklab serve: %s\n", err);
		goto out;
	}
	config_url_host(cfg.listen, host, sizeof host);
	printf("socklab serving http://%s:%d/ (WebSocket ws://%s:%d%s)\n", host, port, host, wsp,
	       WS_PATH);
	printf("socklab serve: %s\n", lab_note);
	/* A generated instructor secret is said once, here, on stdout, and
	 * nowhere else (never on stderr or in a log). */
	if (cfg.secret_generated)
		printf("instructor secret (sign in on the dashboard to open a class): %s\n",
		       cfg.instructor_secret);
	fflush(stdout);

	ws_run(ws);
	status = 0;
out:
	/* The front door first: nothing is handed to either server any more.
	 * Then HTTP: it reads bundles the run manager is finishing. */
	front_close(front);
	/* HTTP requests waiting for another replica's run are answered. */
	bus_release_waiters(bus);
	http_stop(http);
	/* The reader's wakes stop before the lws server they wake is freed. */
	bus_set_wake(bus, NULL, NULL);
	bus_class_set_wake(bclass, NULL, NULL);
	ws_destroy(ws);
	/* NATS away: closed now, so stopping the watchers and subscriptions
	 * below does not wait 5 s for each consumer delete. */
	bus_quiesce(bus);
	/* After the classes (ws_destroy): their ends are queued by then. */
	bus_class_stop(bclass);
	/* After the runs (ws_destroy): their last lines are queued by then. */
	bus_stop(bus);
	bundle_store_close(store);
	http_counters_cleanup(&counters);
	/* Every run has ended (ws_destroy waits for them): the tracefs pool's
	 * idle slots go (those a CLI run holds now stay). */
	tcpst_trace_cleanup(1);
	return status;
}
