/* trace.c: the sock:inet_sock_set_state tracepoint through a private tracefs instance. */
#include "tcpstate.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

/*
 * Each run makes its own instance under instances/ so that it never touches
 * the global trace buffer or another run's settings: its own clock (mono,
 * the clock of every socklab event), its own filter and its own buffer. The
 * instance's name carries the owner's pid and start time, so a run that was
 * killed before it could remove its instance is recognised later as gone
 * (tcpst_trace_cleanup_stale). The kernel refuses to remove an instance
 * whose trace_pipe is open, so a live run's instance cannot be taken away.
 */

#define TRACEFS "/sys/kernel/tracing"
#define EVENT "events/sock/inet_sock_set_state"
#define PREFIX "socklab-"
#define READ_BUF 65536

struct tcpst_trace {
	char dir[PATH_MAX];
	int fd;
	char *buf;      /* READ_BUF bytes; a partial last line is kept at the start */
	size_t have;
};

/* Field 22 of /proc/PID/stat: the process's start time in clock ticks since
 * boot; 0 when the process does not exist. */
static unsigned long long proc_start_time(long pid)
{
	char path[64], buf[1024];
	const char *p;
	ssize_t n;
	int fd, field;

	snprintf(path, sizeof path, "/proc/%ld/stat", pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	/* The command name may hold spaces and parentheses: fields start after
	 * the last ')', at field 3. */
	p = strrchr(buf, ')');
	if (!p)
		return 0;
	for (field = 2; *p && field < 22; p++)
		if (*p == ' ')
			field++;
	return strtoull(p, NULL, 10);
}

static int write_file(const char *dir, const char *file, const char *text, char *err,
		      size_t errlen)
{
	char path[PATH_MAX + 64];
	size_t len = strlen(text);
	ssize_t n;
	int fd, e;

	snprintf(path, sizeof path, "%s/%s", dir, file);
	fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
	if (fd < 0) {
		e = errno;
		snprintf(err, errlen, "cannot open %.200s: %s", path, strerror(e));
		return -e;
	}
	do {
		n = write(fd, text, len);
	} while (n < 0 && errno == EINTR);
	e = errno;
	close(fd);
	if (n != (ssize_t)len) {
		snprintf(err, errlen, "writing \"%.100s\" to %.200s: %s", text, path,
			 n < 0 ? strerror(e) : "short write");
		return n < 0 ? -e : -EIO;
	}
	return 0;
}

/* Make sure tracefs is mounted at TRACEFS; mount it if it is not. */
static int ensure_tracefs(char *err, size_t errlen)
{
	struct stat st;

	if (stat(TRACEFS "/instances", &st) == 0)
		return 0;
	if (mount("nodev", TRACEFS, "tracefs", 0, NULL) < 0) {
		int e = errno;
		if (e == EPERM || e == EACCES)
			snprintf(err, errlen,
				 "tracefs is not mounted and mounting it needs CAP_SYS_ADMIN "
				 "(run as root, or mount it: mount -t tracefs nodev " TRACEFS ")");
		else
			snprintf(err, errlen, "mounting tracefs at " TRACEFS ": %s", strerror(e));
		return -e;
	}
	if (stat(TRACEFS "/instances", &st) < 0) {
		snprintf(err, errlen, "tracefs at " TRACEFS " has no instances directory");
		return -ENOENT;
	}
	return 0;
}

int tcpst_trace_open(struct tcpst_trace **out, const char *tag, const char *filter, char *err,
		     size_t errlen)
{
	struct tcpst_trace *t;
	char path[PATH_MAX + 64];
	int rc;

	*out = NULL;
	rc = ensure_tracefs(err, errlen);
	if (rc < 0)
		return rc;
	t = calloc(1, sizeof *t);
	if (!t)
		return -ENOMEM;
	t->fd = -1;
	t->buf = malloc(READ_BUF);
	if (!t->buf) {
		free(t);
		return -ENOMEM;
	}
	snprintf(t->dir, sizeof t->dir, TRACEFS "/instances/" PREFIX "%.40s-%ld-%llu", tag,
		 (long)getpid(), proc_start_time((long)getpid()));
	if (mkdir(t->dir, 0700) < 0) {
		rc = -errno;
		if (rc == -EACCES || rc == -EPERM)
			snprintf(err, errlen,
				 "reading the kernel's TCP state tracepoint needs root "
				 "(CAP_SYS_ADMIN) to create a tracefs instance");
		else
			snprintf(err, errlen, "creating the tracefs instance %.200s: %s", t->dir,
				 strerror(-rc));
		t->dir[0] = '\0';
		goto out;
	}
	/* Small per-CPU buffers: a handshake run makes a few dozen events. */
	rc = write_file(t->dir, "buffer_size_kb", "128", err, errlen);
	if (rc == 0)
		rc = write_file(t->dir, "trace_clock", "mono", err, errlen);
	if (rc == 0) {
		/* Wake a reader on the first byte (the file is absent on old kernels). */
		char ignored[64];
		write_file(t->dir, "buffer_percent", "0", ignored, sizeof ignored);
		rc = write_file(t->dir, EVENT "/filter", filter && *filter ? filter : "0", err,
				errlen);
	}
	if (rc == 0)
		rc = write_file(t->dir, EVENT "/enable", "1", err, errlen);
	if (rc < 0) {
		if (rc == -ENOENT)
			snprintf(err, errlen,
				 "this kernel has no sock:inet_sock_set_state tracepoint");
		goto out;
	}
	snprintf(path, sizeof path, "%s/trace_pipe", t->dir);
	t->fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (t->fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "opening %.200s: %s", path, strerror(-rc));
		goto out;
	}
	rc = 0;
out:
	if (rc < 0) {
		tcpst_trace_close(t);
		return rc;
	}
	*out = t;
	return 0;
}

int tcpst_trace_fd(const struct tcpst_trace *t)
{
	return t->fd;
}

int tcpst_trace_read(struct tcpst_trace *t, tcpst_trace_fn fn, void *arg)
{
	int events = 0;

	for (;;) {
		ssize_t n;
		char *p, *nl;

		if (t->have == READ_BUF)
			t->have = 0; /* a line longer than the buffer: not ours; drop it */
		n = read(t->fd, t->buf + t->have, READ_BUF - t->have);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				return events;
			return -errno;
		}
		if (n == 0)
			return events;
		t->have += (size_t)n;
		p = t->buf;
		while ((nl = memchr(p, '\n', t->have - (size_t)(p - t->buf)))) {
			struct tcpst_trace_ev ev;
			if (tcpst_trace_parse(p, (size_t)(nl - p), &ev) == 1) {
				fn(arg, &ev);
				events++;
			}
			p = nl + 1;
		}
		t->have -= (size_t)(p - t->buf);
		memmove(t->buf, p, t->have);
	}
}

void tcpst_trace_close(struct tcpst_trace *t)
{
	char ignored[128];

	if (!t)
		return;
	if (t->dir[0])
		write_file(t->dir, EVENT "/enable", "0", ignored, sizeof ignored);
	if (t->fd >= 0)
		close(t->fd);
	if (t->dir[0])
		rmdir(t->dir);
	free(t->buf);
	free(t);
}

int tcpst_trace_cleanup_stale(void)
{
	DIR *d = opendir(TRACEFS "/instances");
	struct dirent *de;
	int removed = 0;

	if (!d)
		return 0;
	while ((de = readdir(d))) {
		char path[PATH_MAX];
		const char *dash2, *dash1;
		char *end;
		long pid;
		unsigned long long start;

		if (strncmp(de->d_name, PREFIX, strlen(PREFIX)) != 0)
			continue;
		/* ...-PID-START */
		dash2 = strrchr(de->d_name, '-');
		if (!dash2 || dash2 == de->d_name)
			continue;
		dash1 = dash2 - 1;
		while (dash1 > de->d_name && *dash1 != '-')
			dash1--;
		pid = strtol(dash1 + 1, &end, 10);
		if (end != dash2 || pid <= 0)
			continue;
		start = strtoull(dash2 + 1, &end, 10);
		if (*end)
			continue;
		if (proc_start_time(pid) == start && start != 0)
			continue; /* its run is alive */
		snprintf(path, sizeof path, TRACEFS "/instances/%s", de->d_name);
		if (rmdir(path) == 0)
			removed++;
	}
	closedir(d);
	return removed;
}
