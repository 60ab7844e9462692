/* shim.c: the LD_PRELOAD library that confines a student's program and records its socket calls for the runner. */

/*
 * Loaded into the student's Python by the dynamic linker (LD_PRELOAD), before
 * any of the program's code runs. Inert unless SOCKLAB_SHIM_FD names the
 * record socket the runner passed in. Its constructor then:
 *  1. moves that socket to an undisclosed descriptor number and scrubs the
 *     two variables from the environment;
 *  2. installs a seccomp filter (libseccomp) that the process and its
 *     threads can never remove: no exec, no fork (threads only), no ptrace,
 *     mounts, namespaces, BPF, perf, keyrings, modules, kexec, io_uring,
 *     userfaultfd or other processes' memory; sockets of the Unix and
 *     Internet families only and never raw; no executable memory (so no C
 *     extension, ctypes or code loaded from the working directory);
 *  3. sends a HELLO record.
 * If any step fails the process exits with status 125 before the program
 * starts: it never runs unconfined or untraced.
 *
 * Each wrapped function makes the real system call itself (syscall(2), so
 * the shim never recurses into its own wrappers) and then sends one record
 * (record.h). read() and write() are recorded only on descriptors the
 * program got from socket() or accept(); everything else passes through.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <poll.h>
#include <seccomp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "../record.h"

#define SHIM_EXPORT __attribute__((visibility("default")))
#define FD_TRACKED 65536

static int rec_fd = -1;      /* the record socket; -1: the shim is inert */
static uint32_t rec_seq;     /* atomic */
static uint8_t is_sock[FD_TRACKED]; /* atomic bytes: 1 for a socket the program made */

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void mark(int fd, uint8_t v)
{
	if (fd >= 0 && fd < FD_TRACKED)
		__atomic_store_n(&is_sock[fd], v, __ATOMIC_RELAXED);
}

static int tracked(int fd)
{
	return rec_fd >= 0 && fd >= 0 && fd < FD_TRACKED &&
	       __atomic_load_n(&is_sock[fd], __ATOMIC_RELAXED);
}

static void rec_init(struct own_rec *r, enum own_call call, int fd, int64_t t0)
{
	memset(r, 0, sizeof *r);
	r->magic = OWN_REC_MAGIC;
	r->call = (uint16_t)call;
	r->fd = fd;
	r->t0_ns = t0;
}

static void rec_addr(struct own_rec *r, const struct sockaddr *sa, socklen_t len)
{
	if (!sa || len == 0)
		return;
	if (len > OWN_REC_ADDR)
		len = OWN_REC_ADDR;
	memcpy(r->addr, sa, len);
	r->addr_len = (uint16_t)len;
}

static void rec_data(struct own_rec *r, const void *buf, size_t n)
{
	if (!buf)
		return;
	if (n > OWN_REC_DATA)
		n = OWN_REC_DATA;
	memcpy(r->data, buf, n);
	r->data_len = (uint16_t)n;
}

static void rec_iov(struct own_rec *r, const struct msghdr *m, size_t n)
{
	size_t i, got = 0;

	for (i = 0; m && i < m->msg_iovlen && got < n && got < OWN_REC_DATA; i++) {
		size_t take = m->msg_iov[i].iov_len;
		if (take > n - got)
			take = n - got;
		if (take > OWN_REC_DATA - got)
			take = OWN_REC_DATA - got;
		memcpy(r->data + got, m->msg_iov[i].iov_base, take);
		got += take;
	}
	r->data_len = (uint16_t)got;
}

/* Send the record (the errno the program sees is kept). */
static void rec_send(struct own_rec *r, long ret, int err)
{
	int saved = errno;

	r->t1_ns = now_ns();
	r->ret = ret;
	r->err = ret < 0 ? err : 0;
	r->seq = __atomic_add_fetch(&rec_seq, 1, __ATOMIC_RELAXED);
	syscall(SYS_sendto, rec_fd, r, sizeof *r, MSG_NOSIGNAL, NULL, 0);
	errno = saved;
}

/* ---- the wrappers ---- */

SHIM_EXPORT int socket(int domain, int type, int protocol)
{
	int64_t t0 = now_ns();
	long rc = syscall(SYS_socket, domain, type, protocol);
	int e = errno;
	struct own_rec r;

	if (rec_fd < 0)
		return (int)rc;
	if (rc >= 0)
		mark((int)rc, 1);
	rec_init(&r, OWN_SOCKET, (int)rc, t0);
	r.a[0] = domain;
	r.a[1] = type;
	r.a[2] = protocol;
	rec_send(&r, rc, e);
	return (int)rc;
}

SHIM_EXPORT int bind(int fd, const struct sockaddr *sa, socklen_t len)
{
	int64_t t0 = now_ns();
	long rc = syscall(SYS_bind, fd, sa, len);
	int e = errno;
	struct own_rec r;

	if (rec_fd < 0)
		return (int)rc;
	rec_init(&r, OWN_BIND, fd, t0);
	rec_addr(&r, sa, len);
	rec_send(&r, rc, e);
	return (int)rc;
}

SHIM_EXPORT int listen(int fd, int backlog)
{
	int64_t t0 = now_ns();
	long rc = syscall(SYS_listen, fd, backlog);
	int e = errno;
	struct own_rec r;

	if (rec_fd < 0)
		return (int)rc;
	rec_init(&r, OWN_LISTEN, fd, t0);
	r.a[0] = backlog;
	rec_send(&r, rc, e);
	return (int)rc;
}

SHIM_EXPORT int accept4(int fd, struct sockaddr *sa, socklen_t *len, int flags)
{
	int64_t t0 = now_ns();
	struct sockaddr_storage peer;
	socklen_t plen = sizeof peer;
	long rc = syscall(SYS_accept4, fd, &peer, &plen, flags);
	int e = errno;
	struct own_rec r;

	if (rc >= 0 && sa && len) {
		socklen_t n = *len < plen ? *len : plen;
		memcpy(sa, &peer, n);
		*len = plen;
	}
	if (rec_fd < 0) {
		errno = e;
		return (int)rc;
	}
	if (rc >= 0)
		mark((int)rc, 1);
	rec_init(&r, OWN_ACCEPT, fd, t0);
	r.a[0] = flags;
	if (rc >= 0) {
		struct sockaddr_storage local;
		socklen_t llen = sizeof local;

		rec_addr(&r, (struct sockaddr *)&peer, plen);
		/* This end's address (a listener on 0.0.0.0 accepts on a concrete
		 * one): with the peer, the connection's addresses and ports. */
		if (syscall(SYS_getsockname, rc, &local, &llen) == 0 && llen <= OWN_REC_DATA) {
			memcpy(r.data, &local, llen);
			r.data_len = (uint16_t)llen;
		}
	}
	rec_send(&r, rc, e);
	errno = e;
	return (int)rc;
}

SHIM_EXPORT int accept(int fd, struct sockaddr *sa, socklen_t *len)
{
	return accept4(fd, sa, len, 0);
}

SHIM_EXPORT int connect(int fd, const struct sockaddr *sa, socklen_t len)
{
	int64_t t0 = now_ns();
	long rc = syscall(SYS_connect, fd, sa, len);
	int e = errno;
	struct own_rec r;
	struct sockaddr_storage local;
	socklen_t llen = sizeof local;

	if (rec_fd < 0)
		return (int)rc;
	rec_init(&r, OWN_CONNECT, fd, t0);
	rec_addr(&r, sa, len);
	/* The address the kernel chose for this end: how the runner pairs the
	 * connection with the server's accept(). In data, which connect() moves
	 * none of. */
	if ((rc == 0 || e == EINPROGRESS) &&
	    syscall(SYS_getsockname, fd, &local, &llen) == 0 && llen <= OWN_REC_DATA) {
		memcpy(r.data, &local, llen);
		r.data_len = (uint16_t)llen;
	}
	rec_send(&r, rc, e);
	errno = e;
	return (int)rc;
}

static ssize_t sendto_rec(enum own_call call, int fd, const void *buf, size_t n, int flags,
			  const struct sockaddr *to, socklen_t tolen)
{
	int64_t t0 = now_ns();
	long rc = syscall(SYS_sendto, fd, buf, n, flags, to, tolen);
	int e = errno;
	struct own_rec r;

	if (rec_fd < 0)
		return rc;
	rec_init(&r, call, fd, t0);
	r.a[0] = flags;
	r.len = n;
	rec_addr(&r, to, tolen);
	rec_data(&r, buf, rc > 0 ? (size_t)rc : 0);
	rec_send(&r, rc, e);
	return rc;
}

SHIM_EXPORT ssize_t send(int fd, const void *buf, size_t n, int flags)
{
	return sendto_rec(OWN_SEND, fd, buf, n, flags, NULL, 0);
}

SHIM_EXPORT ssize_t sendto(int fd, const void *buf, size_t n, int flags, const struct sockaddr *to,
			   socklen_t tolen)
{
	return sendto_rec(OWN_SENDTO, fd, buf, n, flags, to, tolen);
}

static ssize_t recvfrom_rec(enum own_call call, int fd, void *buf, size_t n, int flags,
			    struct sockaddr *from, socklen_t *fromlen)
{
	int64_t t0 = now_ns();
	long rc = syscall(SYS_recvfrom, fd, buf, n, flags, from, fromlen);
	int e = errno;
	struct own_rec r;

	if (rec_fd < 0)
		return rc;
	rec_init(&r, call, fd, t0);
	r.a[0] = flags;
	r.len = n;
	if (rc >= 0 && from && fromlen)
		rec_addr(&r, from, *fromlen);
	rec_data(&r, buf, rc > 0 ? (size_t)rc : 0);
	rec_send(&r, rc, e);
	return rc;
}

SHIM_EXPORT ssize_t recv(int fd, void *buf, size_t n, int flags)
{
	return recvfrom_rec(OWN_RECV, fd, buf, n, flags, NULL, NULL);
}

SHIM_EXPORT ssize_t recvfrom(int fd, void *buf, size_t n, int flags, struct sockaddr *from,
			     socklen_t *fromlen)
{
	return recvfrom_rec(OWN_RECVFROM, fd, buf, n, flags, from, fromlen);
}

static size_t iov_total(const struct msghdr *m)
{
	size_t i, t = 0;

	for (i = 0; m && i < m->msg_iovlen; i++)
		t += m->msg_iov[i].iov_len;
	return t;
}

SHIM_EXPORT ssize_t sendmsg(int fd, const struct msghdr *m, int flags)
{
	int64_t t0 = now_ns();
	long rc = syscall(SYS_sendmsg, fd, m, flags);
	int e = errno;
	struct own_rec r;

	if (rec_fd < 0)
		return rc;
	rec_init(&r, OWN_SENDMSG, fd, t0);
	r.a[0] = flags;
	r.len = iov_total(m);
	if (m)
		rec_addr(&r, m->msg_name, m->msg_namelen);
	rec_iov(&r, m, rc > 0 ? (size_t)rc : 0);
	rec_send(&r, rc, e);
	return rc;
}

SHIM_EXPORT ssize_t recvmsg(int fd, struct msghdr *m, int flags)
{
	int64_t t0 = now_ns();
	long rc = syscall(SYS_recvmsg, fd, m, flags);
	int e = errno;
	struct own_rec r;

	if (rec_fd < 0)
		return rc;
	rec_init(&r, OWN_RECVMSG, fd, t0);
	r.a[0] = flags;
	r.len = iov_total(m);
	if (rc >= 0 && m)
		rec_addr(&r, m->msg_name, m->msg_namelen);
	rec_iov(&r, m, rc > 0 ? (size_t)rc : 0);
	rec_send(&r, rc, e);
	return rc;
}

SHIM_EXPORT ssize_t read(int fd, void *buf, size_t n)
{
	int64_t t0;
	long rc;
	int e;
	struct own_rec r;

	if (!tracked(fd))
		return syscall(SYS_read, fd, buf, n);
	t0 = now_ns();
	rc = syscall(SYS_read, fd, buf, n);
	e = errno;
	rec_init(&r, OWN_READ, fd, t0);
	r.len = n;
	rec_data(&r, buf, rc > 0 ? (size_t)rc : 0);
	rec_send(&r, rc, e);
	return rc;
}

SHIM_EXPORT ssize_t write(int fd, const void *buf, size_t n)
{
	int64_t t0;
	long rc;
	int e;
	struct own_rec r;

	if (!tracked(fd))
		return syscall(SYS_write, fd, buf, n);
	t0 = now_ns();
	rc = syscall(SYS_write, fd, buf, n);
	e = errno;
	rec_init(&r, OWN_WRITE, fd, t0);
	r.len = n;
	rec_data(&r, buf, rc > 0 ? (size_t)rc : 0);
	rec_send(&r, rc, e);
	return rc;
}

SHIM_EXPORT int shutdown(int fd, int how)
{
	int64_t t0 = now_ns();
	long rc = syscall(SYS_shutdown, fd, how);
	int e = errno;
	struct own_rec r;

	if (rec_fd < 0)
		return (int)rc;
	rec_init(&r, OWN_SHUTDOWN, fd, t0);
	r.a[0] = how;
	rec_send(&r, rc, e);
	return (int)rc;
}

SHIM_EXPORT int close(int fd)
{
	int64_t t0;
	long rc;
	int e;
	struct own_rec r;

	if (fd == rec_fd && rec_fd >= 0) {
		errno = EBADF; /* the record socket is not the program's to close */
		return -1;
	}
	if (!tracked(fd))
		return (int)syscall(SYS_close, fd);
	t0 = now_ns();
	mark(fd, 0);
	rc = syscall(SYS_close, fd);
	e = errno;
	rec_init(&r, OWN_CLOSE, fd, t0);
	rec_send(&r, rc, e);
	return (int)rc;
}

SHIM_EXPORT int setsockopt(int fd, int level, int name, const void *val, socklen_t len)
{
	int64_t t0 = now_ns();
	long rc = syscall(SYS_setsockopt, fd, level, name, val, len);
	int e = errno;
	struct own_rec r;

	if (rec_fd < 0)
		return (int)rc;
	rec_init(&r, OWN_SETSOCKOPT, fd, t0);
	r.a[0] = level;
	r.a[1] = name;
	if (val && len == sizeof(int))
		memcpy(&r.a[2], val, sizeof(int));
	r.len = len;
	rec_send(&r, rc, e);
	return (int)rc;
}

SHIM_EXPORT int getsockopt(int fd, int level, int name, void *val, socklen_t *len)
{
	int64_t t0 = now_ns();
	long rc = syscall(SYS_getsockopt, fd, level, name, val, len);
	int e = errno;
	struct own_rec r;

	if (rec_fd < 0)
		return (int)rc;
	rec_init(&r, OWN_GETSOCKOPT, fd, t0);
	r.a[0] = level;
	r.a[1] = name;
	if (rc == 0 && val && len && *len == sizeof(int))
		memcpy(&r.a[2], val, sizeof(int));
	rec_send(&r, rc, e);
	return (int)rc;
}

SHIM_EXPORT int poll(struct pollfd *fds, nfds_t n, int timeout)
{
	int64_t t0 = now_ns();
	long rc = syscall(SYS_poll, fds, n, timeout);
	int e = errno;
	struct own_rec r;
	nfds_t i;
	int first = -1;

	if (rec_fd < 0)
		return (int)rc;
	for (i = 0; i < n && first < 0; i++)
		if (tracked(fds[i].fd))
			first = fds[i].fd;
	if (first < 0)
		return (int)rc; /* a wait on no socket of the program's */
	rec_init(&r, OWN_POLL, first, t0);
	r.a[0] = (int)n;
	r.a[1] = timeout;
	r.a[2] = first;
	rec_send(&r, rc, e);
	return (int)rc;
}

SHIM_EXPORT int select(int n, fd_set *rd, fd_set *wr, fd_set *ex, struct timeval *tv)
{
	int64_t t0 = now_ns();
	int timeout = tv ? (int)(tv->tv_sec * 1000 + tv->tv_usec / 1000) : -1;
	long rc = syscall(SYS_select, n, rd, wr, ex, tv);
	int e = errno, fd, first = -1;
	struct own_rec r;

	if (rec_fd < 0)
		return (int)rc;
	for (fd = 0; fd < n && fd < FD_SETSIZE && first < 0; fd++)
		if (tracked(fd))
			first = fd;
	if (first < 0)
		return (int)rc;
	rec_init(&r, OWN_SELECT, first, t0);
	r.a[0] = n;
	r.a[1] = timeout;
	r.a[2] = first;
	rec_send(&r, rc, e);
	return (int)rc;
}

/* ---- confinement ---- */

static int deny(scmp_filter_ctx ctx, int err, int nr)
{
	return seccomp_rule_add(ctx, SCMP_ACT_ERRNO((uint32_t)err), nr, 0);
}

static int confine(void)
{
	static const int denied[] = {
		SCMP_SYS(execve),	   SCMP_SYS(execveat),	     SCMP_SYS(fork),
		SCMP_SYS(vfork),	   SCMP_SYS(ptrace),	     SCMP_SYS(mount),
		SCMP_SYS(umount2),	   SCMP_SYS(pivot_root),     SCMP_SYS(chroot),
		SCMP_SYS(unshare),	   SCMP_SYS(setns),	     SCMP_SYS(bpf),
		SCMP_SYS(perf_event_open), SCMP_SYS(keyctl),	     SCMP_SYS(add_key),
		SCMP_SYS(request_key),	   SCMP_SYS(init_module),    SCMP_SYS(finit_module),
		SCMP_SYS(delete_module),   SCMP_SYS(kexec_load),     SCMP_SYS(kexec_file_load),
		SCMP_SYS(process_vm_readv), SCMP_SYS(process_vm_writev), SCMP_SYS(userfaultfd),
		SCMP_SYS(io_uring_setup),  SCMP_SYS(io_uring_enter), SCMP_SYS(io_uring_register),
		SCMP_SYS(personality),	   SCMP_SYS(open_by_handle_at), SCMP_SYS(name_to_handle_at),
		SCMP_SYS(fanotify_init),   SCMP_SYS(syslog),	     SCMP_SYS(acct),
		SCMP_SYS(swapon),	   SCMP_SYS(swapoff),	     SCMP_SYS(reboot),
		SCMP_SYS(memfd_create),	   SCMP_SYS(pidfd_open),     SCMP_SYS(pidfd_getfd),
	};
	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
	size_t i;
	int rc = 0, dom;

	if (!ctx)
		return -1;
	for (i = 0; i < sizeof denied / sizeof denied[0] && rc == 0; i++)
		rc = deny(ctx, EPERM, denied[i]);
	/* Threads only: a clone without CLONE_THREAD is a new process. glibc tries
	 * clone3 first and falls back to clone on ENOSYS. */
	if (rc == 0)
		rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1,
				      SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, 0));
	if (rc == 0)
		rc = deny(ctx, ENOSYS, SCMP_SYS(clone3));
	/* Sockets: AF_UNIX (1), AF_INET (2) and AF_INET6 (10) only, never raw. */
	for (dom = 0; dom < 64 && rc == 0; dom++)
		if (dom != AF_UNIX && dom != AF_INET && dom != AF_INET6)
			rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EAFNOSUPPORT), SCMP_SYS(socket), 1,
					      SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)dom));
	if (rc == 0)
		rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EAFNOSUPPORT), SCMP_SYS(socket), 1,
				      SCMP_A0(SCMP_CMP_GE, 64));
	if (rc == 0)
		rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(socket), 1,
				      SCMP_A1(SCMP_CMP_MASKED_EQ, 0xf, SOCK_RAW));
	/* No new executable memory: no C extension, ctypes or code from the
	 * working directory. What the interpreter needs is mapped already. */
	if (rc == 0)
		rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(mmap), 1,
				      SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, PROT_EXEC));
	if (rc == 0)
		rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(mprotect), 1,
				      SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, PROT_EXEC));
	if (rc == 0)
		rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(pkey_mprotect), 1,
				      SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, PROT_EXEC));
	if (rc == 0)
		rc = seccomp_load(ctx);
	seccomp_release(ctx);
	return rc;
}

__attribute__((constructor)) static void shim_start(void)
{
	const char *v = getenv("SOCKLAB_SHIM_FD");
	struct own_rec r;
	struct rlimit rl;
	uint16_t pick = 0;
	char *end;
	long fd;
	int moved;

	if (!v)
		return;
	fd = strtol(v, &end, 10);
	if (*end || fd < 0 || fd > 1023)
		_exit(125);
	/* An undisclosed number in the upper half of what the process may open. */
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur < 16 || rl.rlim_cur > 65536)
		_exit(125);
	if (getrandom(&pick, sizeof pick, 0) != sizeof pick)
		pick = (uint16_t)getpid();
	moved = fcntl((int)fd, F_DUPFD_CLOEXEC,
		      (int)(rl.rlim_cur / 2 + pick % (rl.rlim_cur / 2 - 1)));
	if (moved < 0)
		_exit(125);
	syscall(SYS_close, fd);
	unsetenv("SOCKLAB_SHIM_FD");
	unsetenv("LD_PRELOAD");
	if (confine() != 0)
		_exit(125);
	rec_fd = moved;
	rec_init(&r, OWN_HELLO, -1, now_ns());
	r.a[0] = (int32_t)getpid();
	rec_send(&r, 0, 0);
}
