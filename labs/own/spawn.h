/* spawn.h: start a student's Python program in a bubblewrap sandbox with the call-recording shim preloaded. */
#ifndef SOCKLAB_OWN_SPAWN_H
#define SOCKLAB_OWN_SPAWN_H

#include <stddef.h>
#include <sys/types.h>

/*
 * The sandbox, from the outside in:
 *  - the network namespace of the run (or of one host of a two-hosts run),
 *    entered by the child before anything else: the program reaches the
 *    lab's addresses and nothing else (not the host's 127.0.0.1);
 *  - an unprivileged user: a root runner drops to nobody (65534) before it
 *    executes bwrap, so the kernel's per-user limits apply;
 *  - bubblewrap: new user, PID, IPC, UTS and cgroup namespaces, every
 *    capability dropped, no new privileges, a read-only /usr (Python and its
 *    standard library; /lib, /bin as symlinks into it), a minimal /dev, no
 *    /proc, no /etc but a generated hosts file ("server" names the server's
 *    address), and a small tmpfs /work holding the program (its working
 *    directory and $HOME; everything else is read-only or absent);
 *  - rlimits: CPU seconds, address space, open files, file size, no core;
 *  - the shim's seccomp filter (shim/shim.c), installed before the
 *    program's first line: no exec, no fork, no raw or packet sockets, no
 *    executable memory, no ptrace, mounts, namespaces, BPF or io_uring.
 */

#define OWN_WORK_BYTES (4u << 20)   /* the tmpfs /work */
#define OWN_AS_BYTES (512ull << 20) /* address space */
#define OWN_NOFILE 64
#define OWN_FSIZE_BYTES (1u << 20)

struct own_spawn {
	const char *bwrap;     /* path of bwrap */
	const char *python;    /* path of python3 (under /usr) */
	int src_fd;            /* the program's source, copied to /work/<name> */
	const char *name;      /* "server.py" */
	int shim_fd;           /* memfd with the shim library (read once: one per program) */
	int hosts_fd;          /* memfd with /etc/hosts (likewise) */
	int netns_fd;          /* namespace to enter first, or -1 for the caller's */
	int cpu_s;             /* RLIMIT_CPU */
	const char *const *env; /* extra NAME=VALUE entries, NULL-terminated (may be NULL) */
};

struct own_proc {
	pid_t pid;
	int pidfd;   /* readable when the process ended */
	int rec_fd;  /* the runner's end of the record socket (SOCK_SEQPACKET) */
	int out_fd;  /* the program's stdout */
	int err_fd;  /* the program's stderr */
};

/* Start one program. Every fd in *p is the caller's to close (own_proc_close).
 * 0, or negative with a message in err. */
int own_spawn_start(const struct own_spawn *s, struct own_proc *p, char *err, size_t errlen);

/* Kill (SIGKILL) if still running, reap, close every fd. Returns the wait
 * status, or -1 if it was already reaped. */
int own_proc_close(struct own_proc *p);

/* Whether the sandbox can start here: as the user bwrap runs as (nobody,
 * for a root runner), a child does what bwrap needs first: create a user
 * and a UTS namespace, open /proc/sys/user/max_user_namespaces for writing
 * (--disable-userns) and set the hostname. 0, or -errno with what is
 * missing in err (a container's seccomp profile or read-only /proc/sys, or
 * the kernel's user namespace settings). */
int own_userns_check(char *err, size_t errlen);

/* A memfd holding len bytes of data (CLOEXEC), or negative. */
int own_memfd(const char *name, const void *data, size_t len);

#endif
