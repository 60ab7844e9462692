/* trace.c: the sock:inet_sock_set_state tracepoint through a pool of private tracefs instances. */
#include "tcpstate.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/*
 * A run reads the tracepoint through a private instance under instances/,
 * so that it never touches the global trace buffer or another run's
 * settings: its own clock (mono, the clock of every socklab event), its own
 * filter and its own buffer.
 *
 * Making an instance ready costs about 80 ms of waiting on this machine,
 * almost all of it RCU grace periods: setting its buffer size and its clock
 * each reset the ring buffer, and removing it frees the buffer. So the
 * instances are a pool of slots, instances/socklab-slot-K, made ready once
 * and reused run after run. A slot is owned by whoever holds an exclusive
 * flock on its directory: the kernel releases the lock when the owner's
 * last descriptor closes, however it ends (SIGKILL included), so a killed
 * run's slot is free again at once, and no name carries a pid. Taking a slot:
 * the event is disabled (a killed owner left it enabled), the new filter
 * written, whatever the ring still holds read and thrown away, and only then
 * is the event enabled; an event stamped before that moment (a previous
 * owner's, committed on another CPU while it was being disabled) is dropped
 * when read. Slots 0..TCPST_TRACE_POOL_KEEP-1 (128 KiB per CPU each) are
 * kept when released; a run that finds them all taken makes a slot beyond
 * them and removes it when it ends (if it was killed, the next run that
 * takes that slot does, or tcpst_trace_cleanup). Idle slots are
 * removed by tcpst_trace_cleanup(1): `socklab serve` at exit, `socklab
 * cleanup` by hand. The kernel refuses to remove an instance whose
 * trace_pipe is open, and cleanup only removes a slot it has locked, so a
 * live run's slot cannot be taken away.
 */

#define TRACEFS "/sys/kernel/tracing"
#define EVENT "events/sock/inet_sock_set_state"
#define PREFIX "socklab-"
#define SLOT_PREFIX "socklab-slot-"
#define TRACE_POOL_MAX 1024
#define BUFFER_KB 128
#define BUFFER_KB_TEXT "128"
#define READ_BUF 65536
#define FLOOD_ENV "SOCKLAB_TRACE_TEST_FLOOD_KB"
#define FLOOD_MAX_KB 65536
#define MAX_CPUS 4096

/* The rings' counters summed over every CPU. */
struct ring_sum {
	uint64_t overrun, dropped;
	int ok; /* at least one CPU's stats were read */
};

struct tcpst_trace {
	char dir[PATH_MAX];
	int slot;        /* K of the slot's name */
	int dfd;         /* the slot's directory, flocked: owning the slot */
	int fd;          /* its trace_pipe */
	int64_t since_ns; /* when the event was enabled for this owner (CLOCK_MONOTONIC) */
	char *buf;       /* READ_BUF bytes; a partial last line is kept at the start */
	size_t have;
	/* Losses (see tcpst_trace_loss): the counters when the slot was taken,
	 * and what the reader itself saw. */
	struct ring_sum at_start;
	uint64_t events, lost_lines, unreadable;
	int lost_uncounted;
	long flood_kb; /* SOCKLAB_TRACE_TEST_FLOOD_KB; 0: not set */
};

/* The slots' name prefix: SOCKLAB_TRACE_POOL when set (tests keep a pool of
 * their own), else SLOT_PREFIX. NULL, with a message, when it is not a
 * name cleanup would see. */
static const char *pool_prefix(char *err, size_t errlen)
{
	const char *p = getenv("SOCKLAB_TRACE_POOL");
	size_t i;

	if (!p || !*p)
		return SLOT_PREFIX;
	for (i = 0; p[i]; i++)
		if (!((p[i] >= 'a' && p[i] <= 'z') || (p[i] >= '0' && p[i] <= '9') || p[i] == '-'))
			break;
	if (p[i] || i > 60 || strncmp(p, SLOT_PREFIX, strlen(SLOT_PREFIX)) != 0) {
		snprintf(err, errlen,
			 "SOCKLAB_TRACE_POOL must start with " SLOT_PREFIX
			 " and hold at most 60 of a-z, 0-9 and -");
		return NULL;
	}
	return p;
}

static int64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

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

/* Write text to file, relative to the slot's directory (dir names it in
 * messages). */
static int write_file(int dfd, const char *dir, const char *file, const char *text, char *err,
		      size_t errlen)
{
	size_t len = strlen(text);
	ssize_t n;
	int fd, e;

	fd = openat(dfd, file, O_WRONLY | O_TRUNC | O_CLOEXEC);
	if (fd < 0) {
		e = errno;
		snprintf(err, errlen, "cannot open %.200s/%.100s: %s", dir, file, strerror(e));
		return -e;
	}
	do {
		n = write(fd, text, len);
	} while (n < 0 && errno == EINTR);
	e = errno;
	close(fd);
	if (n != (ssize_t)len) {
		snprintf(err, errlen, "writing \"%.100s\" to %.200s/%.100s: %s", text, dir, file,
			 n < 0 ? strerror(e) : "short write");
		return n < 0 ? -e : -EIO;
	}
	return 0;
}

/* The start of file (relative to dfd), NUL-terminated; "" when unreadable. */
static void read_file(int dfd, const char *file, char *out, size_t outlen)
{
	ssize_t n;
	int fd = openat(dfd, file, O_RDONLY | O_CLOEXEC);

	out[0] = '\0';
	if (fd < 0)
		return;
	do {
		n = read(fd, out, outlen - 1);
	} while (n < 0 && errno == EINTR);
	close(fd);
	if (n > 0)
		out[n] = '\0';
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

/* Lock the instance at path: its directory's descriptor, flocked, when the
 * lock was free and path still names the locked directory (a cleanup may
 * have removed it, or removed and remade it, since it was opened); -EAGAIN
 * when another process holds it or it went away; another -errno when it
 * cannot be opened. */
static int lock_instance(const char *path)
{
	struct stat a, b;
	int dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (dfd < 0)
		return -errno;
	if (flock(dfd, LOCK_EX | LOCK_NB) < 0 || fstat(dfd, &a) < 0 || stat(path, &b) < 0 ||
	    a.st_dev != b.st_dev || a.st_ino != b.st_ino) {
		close(dfd);
		return -EAGAIN;
	}
	return dfd;
}

/* Take slot k: 1 when it is ours (t->dfd), 0 when someone else has it, or
 * -errno with a message. Makes the slot when it does not exist. */
static int slot_take(struct tcpst_trace *t, const char *prefix, int k, char *err, size_t errlen)
{
	int rc;

	snprintf(t->dir, sizeof t->dir, TRACEFS "/instances/%.60s%d", prefix, k);
	rc = lock_instance(t->dir);
	if (rc == -ENOENT) {
		if (mkdir(t->dir, 0700) < 0 && errno != EEXIST) {
			rc = -errno;
			if (rc == -EACCES || rc == -EPERM)
				snprintf(err, errlen,
					 "reading the kernel's TCP state tracepoint needs root "
					 "(CAP_SYS_ADMIN) to create a tracefs instance");
			else
				snprintf(err, errlen, "creating the tracefs instance %.200s: %s",
					 t->dir, strerror(-rc));
			return rc;
		}
		rc = lock_instance(t->dir);
	}
	if (rc == -EAGAIN || rc == -ENOENT)
		return 0;
	if (rc < 0) {
		snprintf(err, errlen, "opening the tracefs instance %.200s: %s", t->dir,
			 strerror(-rc));
		return rc;
	}
	t->dfd = rc;
	t->slot = k;
	return 1;
}

/* The number after "name:" on a line of text, or 0 when no line has it. */
static uint64_t stats_field(const char *text, const char *name, int *found)
{
	size_t n = strlen(name);
	const char *p = text;

	while (p && *p) {
		if (!strncmp(p, name, n) && p[n] == ':') {
			*found = 1;
			return strtoull(p + n + 1, NULL, 10);
		}
		p = strchr(p, '\n');
		if (p)
			p++;
	}
	return 0;
}

int tcpst_trace_parse_stats(const char *text, struct tcpst_ring_stats *st)
{
	int found = 0, other = 0;

	memset(st, 0, sizeof *st);
	st->overrun = stats_field(text, "overrun", &found);
	st->entries = stats_field(text, "entries", &other);
	st->commit_overrun = stats_field(text, "commit overrun", &other);
	st->dropped = stats_field(text, "dropped events", &other);
	st->read = stats_field(text, "read events", &other);
	return found ? 0 : -1;
}

int tcpst_trace_parse_lost(const char *line, size_t len, uint64_t *n)
{
	char buf[128], *p, *end;

	*n = 0;
	if (len >= sizeof buf)
		return 0;
	memcpy(buf, line, len);
	buf[len] = '\0';
	while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r' || buf[len - 1] == ' '))
		buf[--len] = '\0';
	if (strncmp(buf, "CPU:", 4) != 0)
		return 0;
	p = buf + 4;
	if (*p < '0' || *p > '9')
		return 0;
	strtoul(p, &end, 10);
	if (!strcmp(end, " [LOST EVENTS]"))
		return 2;
	if (strncmp(end, " [LOST ", 7) != 0)
		return 0;
	p = end + 7;
	if (*p < '0' || *p > '9')
		return 0;
	*n = strtoull(p, &end, 10);
	return !strcmp(end, " EVENTS]") ? 1 : 0;
}

/* Every CPU's ring counters of the slot, summed. */
static void ring_sum_read(const struct tcpst_trace *t, struct ring_sum *sum)
{
	int cpu;

	memset(sum, 0, sizeof *sum);
	for (cpu = 0; cpu < MAX_CPUS; cpu++) {
		char file[64], text[512];
		struct tcpst_ring_stats st;
		struct stat sb;

		snprintf(file, sizeof file, "per_cpu/cpu%d/stats", cpu);
		if (fstatat(t->dfd, file, &sb, 0) < 0)
			break;
		read_file(t->dfd, file, text, sizeof text);
		if (tcpst_trace_parse_stats(text, &st) < 0)
			continue;
		sum->overrun += st.overrun + st.commit_overrun;
		sum->dropped += st.dropped;
		sum->ok = 1;
	}
}

/* The test knob's value: 0 when unset, -1 (with a message) when invalid. */
static long flood_knob(char *err, size_t errlen)
{
	const char *env = getenv(FLOOD_ENV);
	char *end = NULL;
	long kb;

	if (!env || !*env)
		return 0;
	errno = 0;
	kb = strtol(env, &end, 10);
	if (errno || !end || *end || kb < 1 || kb > FLOOD_MAX_KB) {
		snprintf(err, errlen,
			 FLOOD_ENV "=\"%.40s\": the test flood must be a whole number of KiB "
			 "from 1 to %d",
			 env, FLOOD_MAX_KB);
		return -1;
	}
	return kb;
}

/* Make the slot we own ready for a new owner: its settings as we need them
 * (written only when they differ: each write resets the ring), the event off
 * and filtered, the ring emptied, the pipe open, then the event on. */
static int slot_prepare(struct tcpst_trace *t, const char *filter, char *err, size_t errlen)
{
	char now[512], ignored[128];
	long kb;
	int rc;

	read_file(t->dfd, EVENT "/enable", now, sizeof now);
	if (now[0] != '0') {
		rc = write_file(t->dfd, t->dir, EVENT "/enable", "0", err, errlen);
		if (rc < 0)
			return rc;
	}
	/* Small per-CPU buffers: a handshake run makes a few dozen events. The
	 * kernel reports the size it rounded to whole pages (131 for 128); a
	 * new instance has 1410 or more. */
	read_file(t->dfd, "buffer_size_kb", now, sizeof now);
	kb = strtol(now, NULL, 10);
	if (kb < BUFFER_KB || kb >= 2 * BUFFER_KB) {
		rc = write_file(t->dfd, t->dir, "buffer_size_kb", BUFFER_KB_TEXT, err, errlen);
		if (rc < 0)
			return rc;
	}
	read_file(t->dfd, "trace_clock", now, sizeof now);
	if (!strstr(now, "[mono]")) {
		rc = write_file(t->dfd, t->dir, "trace_clock", "mono", err, errlen);
		if (rc < 0)
			return rc;
	}
	/* Wake a reader on the first byte (the file is absent on old kernels). */
	write_file(t->dfd, t->dir, "buffer_percent", "0", ignored, sizeof ignored);
	rc = write_file(t->dfd, t->dir, EVENT "/filter", filter && *filter ? filter : "0", err,
			errlen);
	if (rc < 0)
		return rc;
	t->fd = openat(t->dfd, "trace_pipe", O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (t->fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "opening %.200s/trace_pipe: %s", t->dir, strerror(-rc));
		return rc;
	}
	/* What a previous owner left: read and thrown away. */
	for (;;) {
		ssize_t n = read(t->fd, t->buf, READ_BUF);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
	}
	/* trace_pipe prints stamps in microseconds: compare in whole ones. */
	t->since_ns = mono_ns() / 1000 * 1000;
	/* The counters go on from the previous owners (and a killed one's
	 * overruns): what this owner loses is the difference from here, where
	 * the ring is empty and the event not yet on. */
	ring_sum_read(t, &t->at_start);
	return write_file(t->dfd, t->dir, EVENT "/enable", "1", err, errlen);
}

int tcpst_trace_open(struct tcpst_trace **out, const char *filter, char *err, size_t errlen)
{
	const char *prefix = pool_prefix(err, errlen);
	struct tcpst_trace *t;
	int rc = 0, k;

	*out = NULL;
	if (!prefix)
		return -EINVAL;
	if (flood_knob(err, errlen) < 0)
		return -EINVAL;
	rc = ensure_tracefs(err, errlen);
	if (rc < 0)
		return rc;
	t = calloc(1, sizeof *t);
	if (!t)
		return -ENOMEM;
	t->fd = -1;
	t->dfd = -1;
	t->flood_kb = flood_knob(err, errlen);
	t->buf = malloc(READ_BUF);
	if (!t->buf) {
		free(t);
		return -ENOMEM;
	}
	for (k = 0; k < TRACE_POOL_MAX && rc == 0; k++)
		rc = slot_take(t, prefix, k, err, errlen);
	if (rc == 0) {
		snprintf(err, errlen, "all %d tracefs instances are taken", TRACE_POOL_MAX);
		rc = -EBUSY;
	}
	if (rc > 0)
		rc = slot_prepare(t, filter, err, errlen);
	if (rc == -ENOENT)
		snprintf(err, errlen, "this kernel has no sock:inet_sock_set_state tracepoint");
	if (rc < 0) {
		tcpst_trace_close(t);
		return rc;
	}
	*out = t;
	return 0;
}

const char *tcpst_trace_dir(const struct tcpst_trace *t)
{
	return t->dir;
}

int tcpst_trace_fd(const struct tcpst_trace *t)
{
	return t->fd;
}

/* Read what the pipe holds now; the work of tcpst_trace_read. */
static int trace_read(struct tcpst_trace *t, tcpst_trace_fn fn, void *arg)
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
			uint64_t lost;
			int rc = tcpst_trace_parse(p, (size_t)(nl - p), &ev), lr;

			/* An event stamped before this owner enabled it is a
			 * previous owner's. */
			if (rc == 1 && ev.t_mono_ns >= t->since_ns) {
				fn(arg, &ev);
				events++;
				t->events++;
			} else if (rc < 0) {
				/* Our event, unreadable: a transition lost here. */
				t->unreadable++;
			} else if (rc == 0 && (lr = tcpst_trace_parse_lost(p, (size_t)(nl - p), &lost))) {
				/* The kernel says its ring lost events since the
				 * last read (everything before the slot was
				 * taken was read then and thrown away). */
				t->lost_lines += lost;
				if (lr == 2)
					t->lost_uncounted = 1;
			}
			p = nl + 1;
		}
		t->have -= (size_t)(p - t->buf);
		memmove(t->buf, p, t->have);
	}
}

int tcpst_trace_read(struct tcpst_trace *t, tcpst_trace_fn fn, void *arg)
{
	return t->flood_kb ? 0 : trace_read(t, fn, arg);
}

int tcpst_trace_stalled(const struct tcpst_trace *t)
{
	return t && t->flood_kb > 0;
}

/* The test knob: flood_kb KiB of trace_marker text into the slot's ring on
 * every CPU this thread may run on (a marker lands in the ring of the CPU
 * that writes it), then the thread's CPUs as they were. */
static void flood(struct tcpst_trace *t)
{
	static const char line[] = "socklab test flood: overwriting this slot's unread events "
				   "on purpose (" FLOOD_ENV ")";
	cpu_set_t was, one;
	long i, n = t->flood_kb * 1024 / (long)(sizeof line - 1) + 1;
	int fd, cpu;

	fd = openat(t->dfd, "trace_marker", O_WRONLY | O_CLOEXEC);
	if (fd < 0 || sched_getaffinity(0, sizeof was, &was) < 0) {
		if (fd >= 0)
			close(fd);
		return;
	}
	for (cpu = 0; cpu < CPU_SETSIZE; cpu++) {
		if (!CPU_ISSET(cpu, &was))
			continue;
		CPU_ZERO(&one);
		CPU_SET(cpu, &one);
		if (sched_setaffinity(0, sizeof one, &one) < 0)
			continue;
		for (i = 0; i < n; i++)
			if (write(fd, line, sizeof line - 1) < 0)
				break;
	}
	sched_setaffinity(0, sizeof was, &was);
	close(fd);
}

int tcpst_trace_read_last(struct tcpst_trace *t, tcpst_trace_fn fn, void *arg)
{
	if (t->flood_kb)
		flood(t);
	return trace_read(t, fn, arg);
}

void tcpst_trace_loss(struct tcpst_trace *t, struct tcpst_trace_loss *out)
{
	struct ring_sum now;
	char kb[64];
	uint64_t ring;

	memset(out, 0, sizeof *out);
	ring_sum_read(t, &now);
	out->events = t->events;
	out->lost_lines = t->lost_lines;
	out->unreadable = t->unreadable;
	out->uncounted = t->lost_uncounted;
	if (now.ok && t->at_start.ok) {
		out->stats = 1;
		/* Counters only grow while the ring lives: less than before means
		 * it was reset (and what it held is gone, uncounted). */
		if (now.overrun < t->at_start.overrun || now.dropped < t->at_start.dropped) {
			out->uncounted = 1;
			out->overrun = now.overrun;
			out->dropped = now.dropped;
		} else {
			out->overrun = now.overrun - t->at_start.overrun;
			out->dropped = now.dropped - t->at_start.dropped;
		}
	}
	ring = out->overrun + out->dropped;
	out->lost = (ring > out->lost_lines ? ring : out->lost_lines) + out->unreadable;
	if (out->uncounted && !out->lost)
		out->lost = 1; /* at least one */
	read_file(t->dfd, "buffer_size_kb", kb, sizeof kb);
	out->ring_kib = (int)strtol(kb, NULL, 10);
}

void tcpst_trace_close(struct tcpst_trace *t)
{
	char ignored[128];

	if (!t)
		return;
	if (t->dfd >= 0) {
		write_file(t->dfd, t->dir, EVENT "/enable", "0", ignored, sizeof ignored);
		if (t->fd >= 0)
			close(t->fd);
		/* Beyond the kept slots: removed while still ours. */
		if (t->slot >= TCPST_TRACE_POOL_KEEP)
			rmdir(t->dir);
		close(t->dfd); /* releases the slot */
	}
	free(t->buf);
	free(t);
}

/* An instance named socklab-RUNID-PID-START by a build before the pool,
 * whose process is gone. */
static int legacy_stale(const char *name)
{
	const char *dash2, *dash1;
	char *end;
	long pid;
	unsigned long long start;

	if (strncmp(name, PREFIX, strlen(PREFIX)) != 0 ||
	    strncmp(name, SLOT_PREFIX, strlen(SLOT_PREFIX)) == 0)
		return 0;
	dash2 = strrchr(name, '-');
	if (!dash2 || dash2 == name)
		return 0;
	dash1 = dash2 - 1;
	while (dash1 > name && *dash1 != '-')
		dash1--;
	pid = strtol(dash1 + 1, &end, 10);
	if (end != dash2 || pid <= 0)
		return 0;
	start = strtoull(dash2 + 1, &end, 10);
	if (*end)
		return 0;
	return !(proc_start_time(pid) == start && start != 0);
}

int tcpst_trace_cleanup(int all)
{
	DIR *d = opendir(TRACEFS "/instances");
	struct dirent *de;
	int removed = 0;

	if (!d)
		return 0;
	while ((de = readdir(d))) {
		char path[PATH_MAX];
		const char *dash;
		char *end;
		long k;
		int dfd;

		snprintf(path, sizeof path, TRACEFS "/instances/%.200s", de->d_name);
		if (legacy_stale(de->d_name)) {
			if (rmdir(path) == 0)
				removed++;
			continue;
		}
		if (strncmp(de->d_name, SLOT_PREFIX, strlen(SLOT_PREFIX)) != 0)
			continue;
		dash = strrchr(de->d_name, '-');
		k = strtol(dash + 1, &end, 10);
		if (*end || end == dash + 1 || (!all && k < TCPST_TRACE_POOL_KEEP))
			continue;
		/* Only a slot nobody holds, and removed while we hold it. */
		dfd = lock_instance(path);
		if (dfd < 0)
			continue;
		if (rmdir(path) == 0)
			removed++;
		close(dfd);
	}
	closedir(d);
	return removed;
}
