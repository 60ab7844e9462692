/* spawn.c: fork, enter the run's network namespace, drop privileges and execute bwrap with the shim preloaded. */
#include "own/spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define NOBODY 65534

int own_memfd(const char *name, const void *data, size_t len)
{
	int fd = memfd_create(name, MFD_CLOEXEC);
	const char *p = data;

	if (fd < 0)
		return -errno;
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			int e = n < 0 ? errno : EIO;
			close(fd);
			return -e;
		}
		p += n;
		len -= (size_t)n;
	}
	if (lseek(fd, 0, SEEK_SET) < 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	return fd;
}

static void set_limit2(int res, rlim_t soft, rlim_t hard)
{
	struct rlimit rl = {soft, hard};

	setrlimit(res, &rl);
}

static void set_limit(int res, rlim_t v)
{
	set_limit2(res, v, v);
}

/* The child, between fork and exec: only async-signal-safe calls. fds[] are
 * the child's ends, kept open across the exec (everything else is CLOEXEC).
 * Never returns. */
static void child(const struct own_spawn *s, char *const argv[], char *const envp[], int rec,
		  int out, int err, int status_fd, pid_t parent)
{
	int e = 0;

	if (s->netns_fd >= 0 && setns(s->netns_fd, CLONE_NEWNET) < 0)
		e = errno;
	if (!e && (dup2(out, 1) < 0 || dup2(err, 2) < 0))
		e = errno;
	if (!e) {
		int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
		if (devnull >= 0)
			dup2(devnull, 0);
	}
	/* Keep the record socket and the memfds across the exec (bwrap reads
	 * them by number). */
	if (!e && (fcntl(rec, F_SETFD, 0) < 0 || fcntl(s->src_fd, F_SETFD, 0) < 0 ||
		   fcntl(s->shim_fd, F_SETFD, 0) < 0 || fcntl(s->hosts_fd, F_SETFD, 0) < 0))
		e = errno;
	if (!e) {
		/* SIGXCPU at the limit (the program's end names it), SIGKILL a
		 * second later should it catch that. */
		set_limit2(RLIMIT_CPU, (rlim_t)s->cpu_s, (rlim_t)s->cpu_s + 1);
		set_limit(RLIMIT_AS, OWN_AS_BYTES);
		set_limit(RLIMIT_NOFILE, OWN_NOFILE);
		set_limit(RLIMIT_FSIZE, OWN_FSIZE_BYTES);
		set_limit(RLIMIT_CORE, 0);
		set_limit(RLIMIT_NPROC, 256); /* nobody's processes and threads, all runs together */
	}
	if (!e && geteuid() == 0) {
		/* A root runner gives the sandbox to nobody: a per-user limit
		 * then holds, and nothing in it is root outside its namespace. */
		if (setgroups(0, NULL) < 0 || setresgid(NOBODY, NOBODY, NOBODY) < 0 ||
		    setresuid(NOBODY, NOBODY, NOBODY) < 0)
			e = errno;
	}
	/* After the uid change, which clears it: bwrap dies with the runner, and
	 * (--die-with-parent) the program with bwrap. */
	if (!e && (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent))
		e = ECHILD;
	if (!e) {
		execve(s->bwrap, argv, envp);
		e = errno;
	}
	if (write(status_fd, &e, sizeof e) < 0) {
		/* The parent then sees EOF and reports a generic failure. */
	}
	_exit(127);
}

/* What own_userns_check's child could not do (its exit code is step * 40 +
 * errno, errno capped at 39). */
enum { CHECK_DROP = 1, CHECK_USERNS, CHECK_PROCSYS, CHECK_HOSTNAME };

#define CHECK_EXIT(step, e) _exit((step) * 40 + ((e) > 0 && (e) < 40 ? (e) : 39))

int own_userns_check(char *err, size_t errlen)
{
	int status, e = 0, step, fd;
	pid_t pid = fork();

	if (pid < 0) {
		e = errno;
		snprintf(err, errlen, "fork: %s", strerror(e));
		return -e;
	}
	if (pid == 0) {
		/* Only async-signal-safe calls, as spawn's child: what bwrap does
		 * first, as the user it runs as. */
		if (geteuid() == 0 && (setgroups(0, NULL) < 0 || setresgid(NOBODY, NOBODY, NOBODY) < 0 ||
				       setresuid(NOBODY, NOBODY, NOBODY) < 0))
			CHECK_EXIT(CHECK_DROP, errno);
		if (unshare(CLONE_NEWUSER | CLONE_NEWUTS) < 0)
			CHECK_EXIT(CHECK_USERNS, errno);
		/* --disable-userns: bwrap sets the new namespace's limit to 1. */
		fd = open("/proc/sys/user/max_user_namespaces", O_WRONLY | O_CLOEXEC);
		if (fd < 0)
			CHECK_EXIT(CHECK_PROCSYS, errno);
		close(fd);
		if (sethostname("sandbox", 7) < 0)
			CHECK_EXIT(CHECK_HOSTNAME, errno);
		_exit(0);
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR) {
			e = errno;
			snprintf(err, errlen, "waitpid: %s", strerror(e));
			return -e;
		}
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	step = WIFEXITED(status) ? WEXITSTATUS(status) / 40 : 0;
	e = WIFEXITED(status) && WEXITSTATUS(status) % 40 ? WEXITSTATUS(status) % 40 : EPERM;
	if (step == CHECK_PROCSYS)
		snprintf(err, errlen,
			 "the own lab's sandbox (bubblewrap --disable-userns, so a program cannot "
			 "nest user namespaces) writes /proc/sys/user/max_user_namespaces in its user "
			 "namespace, and /proc/sys is read-only here (%s): a container mounts it "
			 "read-only unless told otherwise (podman: --security-opt unmask=/proc/sys; "
			 "Docker: --security-opt systempaths=unconfined)",
			 strerror(e));
	else if (step == CHECK_HOSTNAME)
		snprintf(err, errlen,
			 "the own lab's sandbox (bubblewrap) gives each program its own hostname, and "
			 "sethostname() in a new UTS namespace is refused here (%s): a container's "
			 "seccomp profile that allows it only with CAP_SYS_ADMIN refuses it without",
			 strerror(e));
	else if (step == CHECK_DROP)
		snprintf(err, errlen, "the own lab could not drop to the user nobody (%s)", strerror(e));
	else
		snprintf(err, errlen,
			 "the own lab's sandbox (bubblewrap) needs unprivileged user namespaces, and "
			 "this system refuses them (unshare(CLONE_NEWUSER): %s): in a container, run it "
			 "with a seccomp profile that permits unshare and clone with CLONE_NEWUSER; on "
			 "a host, allow them (sysctl kernel.unprivileged_userns_clone=1, "
			 "user.max_user_namespaces > 0)",
			 strerror(e));
	return -e;
}

int own_spawn_start(const struct own_spawn *s, struct own_proc *p, char *err, size_t errlen)
{
	int sp[2] = {-1, -1}, outp[2] = {-1, -1}, errp[2] = {-1, -1}, st[2] = {-1, -1};
	char n_rec[16], n_src[16], n_shim[16], n_hosts[16], wsize[24], dst[64];
	char *argv[96];
	char *envp[24];
	int a = 0, k = 0, rc = 0, child_errno = 0;
	ssize_t got;
	pid_t pid, parent;

	memset(p, 0, sizeof *p);
	p->pid = -1;
	p->pidfd = p->rec_fd = p->out_fd = p->err_fd = -1;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0 ||
	    pipe2(outp, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0 || pipe2(st, O_CLOEXEC) < 0) {
		rc = -errno;
		snprintf(err, errlen, "setting up the sandbox's pipes: %s", strerror(-rc));
		goto out;
	}
	/* Room for a burst of records, so a program that makes calls quickly is
	 * not paced by how fast the runner turns records into events. */
	{
		int sz = 4 << 20;
		if (setsockopt(sp[1], SOL_SOCKET, SO_SNDBUFFORCE, &sz, sizeof sz) < 0 &&
		    setsockopt(sp[1], SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz) < 0) {
			/* The default buffer works, only sooner full. */
		}
	}
	snprintf(n_rec, sizeof n_rec, "%d", sp[1]);
	snprintf(n_src, sizeof n_src, "%d", s->src_fd);
	snprintf(n_shim, sizeof n_shim, "%d", s->shim_fd);
	snprintf(n_hosts, sizeof n_hosts, "%d", s->hosts_fd);
	snprintf(wsize, sizeof wsize, "%u", OWN_WORK_BYTES);
	snprintf(dst, sizeof dst, "/work/%s", s->name);

	argv[a++] = (char *)"bwrap";
	argv[a++] = (char *)"--unshare-user";
	argv[a++] = (char *)"--unshare-pid";
	argv[a++] = (char *)"--unshare-ipc";
	argv[a++] = (char *)"--unshare-uts";
	argv[a++] = (char *)"--unshare-cgroup-try";
	argv[a++] = (char *)"--disable-userns";
	argv[a++] = (char *)"--die-with-parent";
	argv[a++] = (char *)"--new-session";
	argv[a++] = (char *)"--cap-drop";
	argv[a++] = (char *)"ALL";
	argv[a++] = (char *)"--hostname";
	argv[a++] = (char *)"sandbox";
	argv[a++] = (char *)"--ro-bind";
	argv[a++] = (char *)"/usr";
	argv[a++] = (char *)"/usr";
	argv[a++] = (char *)"--symlink";
	argv[a++] = (char *)"usr/lib";
	argv[a++] = (char *)"/lib";
	argv[a++] = (char *)"--symlink";
	argv[a++] = (char *)"usr/lib64";
	argv[a++] = (char *)"/lib64";
	argv[a++] = (char *)"--symlink";
	argv[a++] = (char *)"usr/bin";
	argv[a++] = (char *)"/bin";
	argv[a++] = (char *)"--dev";
	argv[a++] = (char *)"/dev";
	argv[a++] = (char *)"--ro-bind-data";
	argv[a++] = n_hosts;
	argv[a++] = (char *)"/etc/hosts";
	argv[a++] = (char *)"--ro-bind-data";
	argv[a++] = n_shim;
	argv[a++] = (char *)"/run/socklab/shim.so";
	argv[a++] = (char *)"--size";
	argv[a++] = wsize;
	argv[a++] = (char *)"--tmpfs";
	argv[a++] = (char *)"/work";
	argv[a++] = (char *)"--file";
	argv[a++] = n_src;
	argv[a++] = dst;
	argv[a++] = (char *)"--chdir";
	argv[a++] = (char *)"/work";
	/* Set inside, for Python alone: bwrap itself must not preload it. */
	argv[a++] = (char *)"--setenv";
	argv[a++] = (char *)"LD_PRELOAD";
	argv[a++] = (char *)"/run/socklab/shim.so";
	argv[a++] = (char *)"--setenv";
	argv[a++] = (char *)"SOCKLAB_SHIM_FD";
	argv[a++] = n_rec;
	argv[a++] = (char *)"--";
	argv[a++] = (char *)s->python;
	argv[a++] = (char *)"-I"; /* isolated: no user site, no PYTHON* variables */
	argv[a++] = (char *)"-B"; /* no .pyc files */
	argv[a++] = (char *)"-u"; /* unbuffered: output arrives as it is printed */
	argv[a++] = (char *)s->name;
	argv[a] = NULL;

	envp[k++] = (char *)"PATH=/usr/bin";
	envp[k++] = (char *)"HOME=/work";
	envp[k++] = (char *)"LANG=C.UTF-8";
	for (a = 0; s->env && s->env[a] && k < 23; a++)
		envp[k++] = (char *)s->env[a];
	envp[k] = NULL;

	parent = getpid();
	pid = fork();
	if (pid < 0) {
		rc = -errno;
		snprintf(err, errlen, "fork: %s", strerror(-rc));
		goto out;
	}
	if (pid == 0)
		child(s, argv, envp, sp[1], outp[1], errp[1], st[1], parent);
	p->pid = pid;
	close(st[1]);
	st[1] = -1;
	/* EOF: the exec happened (the pipe is CLOEXEC); an int: it failed. */
	do {
		got = read(st[0], &child_errno, sizeof child_errno);
	} while (got < 0 && errno == EINTR);
	if (got == (ssize_t)sizeof child_errno) {
		rc = -child_errno;
		snprintf(err, errlen, "starting the sandbox (%s): %s", s->bwrap,
			 strerror(child_errno));
		goto out;
	}
	p->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (p->pidfd < 0) {
		rc = -errno;
		snprintf(err, errlen, "pidfd_open: %s", strerror(-rc));
		goto out;
	}
	p->rec_fd = sp[0];
	p->out_fd = outp[0];
	p->err_fd = errp[0];
	sp[0] = outp[0] = errp[0] = -1;
out:
	if (sp[0] >= 0)
		close(sp[0]);
	if (sp[1] >= 0)
		close(sp[1]);
	if (outp[0] >= 0)
		close(outp[0]);
	if (outp[1] >= 0)
		close(outp[1]);
	if (errp[0] >= 0)
		close(errp[0]);
	if (errp[1] >= 0)
		close(errp[1]);
	if (st[0] >= 0)
		close(st[0]);
	if (st[1] >= 0)
		close(st[1]);
	if (rc < 0)
		own_proc_close(p);
	return rc;
}

int own_proc_close(struct own_proc *p)
{
	int status = -1;

	if (p->pid > 0) {
		kill(p->pid, SIGKILL);
		while (waitpid(p->pid, &status, 0) < 0 && errno == EINTR)
			;
		p->pid = -1;
	}
	if (p->pidfd >= 0)
		close(p->pidfd);
	if (p->rec_fd >= 0)
		close(p->rec_fd);
	if (p->out_fd >= 0)
		close(p->out_fd);
	if (p->err_fd >= 0)
		close(p->err_fd);
	p->pidfd = p->rec_fd = p->out_fd = p->err_fd = -1;
	return status;
}
