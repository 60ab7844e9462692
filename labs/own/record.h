/* record.h: the binary call record the own-program shim sends to the runner (one SOCK_SEQPACKET message each). */
#ifndef SOCKLAB_OWN_RECORD_H
#define SOCKLAB_OWN_RECORD_H

#include <stdint.h>

/*
 * The shim (labs/own/shim/shim.c, preloaded into the student's Python) makes
 * each wrapped libc call itself and then sends one record describing it: the
 * call, its arguments, return value and errno, the first bytes it moved, and
 * when it started and returned on CLOCK_MONOTONIC (the clock every socklab
 * event uses, shared across PID namespaces). The runner (labs/own.c) turns
 * each record into the same `syscall` event a built-in lab emits.
 *
 * Integrity: records come over a socket the shim moves to an undisclosed
 * descriptor number before the program starts. A program that finds it can
 * still write to it, so every record carries the process's own sequence
 * number: the runner accepts only whole records of exactly this size with
 * the magic, in sequence, and reports anything else as tampering (the run's
 * trace is then marked untrustworthy, never silently repaired).
 */

#define OWN_REC_MAGIC 0x534b4c31u /* "SKL1" */
#define OWN_REC_DATA 64
#define OWN_REC_ADDR 28 /* a struct sockaddr_in6 */

enum own_call {
	OWN_HELLO = 1, /* the shim started: a[0] = pid in the sandbox */
	OWN_SOCKET,    /* a[0..2] = domain, type, protocol */
	OWN_BIND,      /* addr */
	OWN_LISTEN,    /* a[0] = backlog */
	OWN_ACCEPT,    /* ret = new fd; addr = peer; a[0] = flags (accept4); data = its local address */
	OWN_CONNECT,   /* addr; data = the local address the kernel chose (a sockaddr) */
	OWN_SEND,      /* len, data, a[0] = flags */
	OWN_SENDTO,    /* len, data, addr, a[0] = flags */
	OWN_SENDMSG,   /* len (total of the iovecs), data, addr, a[0] = flags */
	OWN_RECV,      /* len, data, a[0] = flags */
	OWN_RECVFROM,  /* len, data, addr, a[0] = flags */
	OWN_RECVMSG,   /* len, data, addr, a[0] = flags */
	OWN_READ,      /* on a socket: len, data */
	OWN_WRITE,     /* on a socket: len, data */
	OWN_SHUTDOWN,  /* a[0] = how */
	OWN_CLOSE,
	OWN_SETSOCKOPT, /* a[0] = level, a[1] = name, a[2] = the int value (when it is one) */
	OWN_GETSOCKOPT, /* a[0] = level, a[1] = name, a[2] = the int value read */
	OWN_POLL,       /* a[0] = nfds, a[1] = timeout ms, a[2] = first socket fd waited on */
	OWN_SELECT,     /* a[0] = nfds, a[1] = timeout ms (-1: none), a[2] = first socket fd */
	OWN_CALL_MAX
};

struct own_rec {
	uint32_t magic;
	uint16_t call; /* enum own_call */
	uint16_t data_len;
	uint32_t seq; /* 1, 2, ... per process */
	int32_t fd;
	int64_t ret; /* the call's return value (-1 on failure, as libc returns it) */
	int32_t err; /* errno when ret is -1, else 0 */
	int32_t a[4];
	int64_t t0_ns, t1_ns; /* CLOCK_MONOTONIC: the call began, it returned */
	uint64_t len;         /* the buffer length the program passed */
	uint16_t addr_len;
	uint8_t addr[OWN_REC_ADDR];
	uint8_t data[OWN_REC_DATA];
};

#endif
