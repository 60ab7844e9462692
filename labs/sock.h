/* sock.h: socket calls that do the real syscall and report it as a "syscall" event. */
#ifndef SOCKLAB_SOCK_H
#define SOCKLAB_SOCK_H

#include <sys/socket.h>
#include <stdint.h>
#include <sys/types.h>

#include "lab.h"

/*
 * Each wrapper makes one real call and emits one event
 *   {"type":"syscall","who":WHO,"conn":N,"call":NAME,"fd":FD,"args":{...},
 *    "ret":R,"errno":E,"errno_name":"ECONNRESET","error":"Connection reset by peer",
 *    "bytes":B,"data":"preview","t_call_us":T0,"blocked_us":D}
 * where t_call_us is when the program made the call and blocked_us how long it
 * waited in it. A receive with no timeout and no wake fd, in a run with a stop
 * watcher (lab.h: lab_watch_start), is one blocking recv() that the watcher
 * interrupts when the run stops; other calls that block in a classic program
 * (accept, connect, recv with a timeout, send on a full buffer) wait with
 * poll() on the socket and the run's cancel fd. Either way a run can always be
 * cancelled, and the event describes the one call the program made, with the
 * time it spent blocked. Accepted sockets are blocking, as accept() makes them.
 *
 * who names the side ("server", "client"); conn is the connection number the
 * call belongs to (1, 2, ...), or 0 for calls on no connection (the listener).
 * Return values follow the call (fd, byte count, 0) or are -errno; the wait
 * helpers also return -ECANCELED (run cancelled) and -ETIMEDOUT (timeout_ms).
 */

struct lsock_who {
	const char *who;
	int conn;
};

int lsock_socket(struct lab_ctx *ctx, struct lsock_who w, int domain, int type);
int lsock_setsockopt_int(struct lab_ctx *ctx, struct lsock_who w, int fd, int level, int name,
			 int value);
/* setsockopt(SOL_SOCKET, SO_LINGER, {onoff, secs}). */
int lsock_setsockopt_linger(struct lab_ctx *ctx, struct lsock_who w, int fd, int onoff, int secs);
int lsock_bind(struct lab_ctx *ctx, struct lsock_who w, int fd, const struct sockaddr *sa,
	       socklen_t len);
int lsock_listen(struct lab_ctx *ctx, struct lsock_who w, int fd, int backlog);
/* Accept one connection; peer is filled when not NULL. */
int lsock_accept(struct lab_ctx *ctx, struct lsock_who w, int lfd, struct sockaddr_storage *peer,
		 int timeout_ms);
int lsock_connect(struct lab_ctx *ctx, struct lsock_who w, int fd, const struct sockaddr *sa,
		  socklen_t len, int timeout_ms);
ssize_t lsock_send(struct lab_ctx *ctx, struct lsock_who w, int fd, const void *buf, size_t len,
		   int timeout_ms);
/* send() until all of buf is sent (each send() is its own event). */
ssize_t lsock_send_all(struct lab_ctx *ctx, struct lsock_who w, int fd, const void *buf,
		       size_t len, int timeout_ms);
ssize_t lsock_recv(struct lab_ctx *ctx, struct lsock_who w, int fd, void *buf, size_t len,
		   int timeout_ms);
/* Optional details of one datagram call (may be NULL). */
struct lsock_io {
	int wake_fd;      /* in: -1, or an eventfd whose readability ends the wait with
			   * -EINTR (no call is made and no event emitted); wake it with
			   * lab_wake (lab.h), which also ends a blocking call */
	int64_t call_us;  /* out: run clock when the program made the call */
	int64_t ret_us;   /* out: run clock right after the syscall returned */
};

/* sendto(): one datagram to `to`. The event carries "to" and the data preview. */
ssize_t lsock_sendto(struct lab_ctx *ctx, struct lsock_who w, int fd, const void *buf, size_t len,
		     const struct sockaddr *to, socklen_t tolen, int timeout_ms,
		     struct lsock_io *io);
/* recvfrom(): one datagram; its source is in *from (when not NULL) and in the
 * event as "from". A datagram longer than len is cut by the kernel (the event
 * says "truncated" with the datagram's real length). */
ssize_t lsock_recvfrom(struct lab_ctx *ctx, struct lsock_who w, int fd, void *buf, size_t len,
		       struct sockaddr_storage *from, int timeout_ms, struct lsock_io *io);

int lsock_shutdown(struct lab_ctx *ctx, struct lsock_who w, int fd, int how);
int lsock_close(struct lab_ctx *ctx, struct lsock_who w, int fd);

/* What recording the calls cost this run so far, as the params of a lab's
 * "what tracing adds" note: {"calls":N,"median_ns":M,"tail_ns":P99,
 * "inside":K,"added_ns":K*M,"rtt_us":R} where inside is how many recorded
 * calls fall between the two clock reads of one round trip the lab measures
 * and rtt_us the round trip the lab shows. NULL when no call was recorded.
 * Flushes the event stream first (labs/event.h: ev_trace_stats). */
json_t *lsock_trace_cost(struct lab_ctx *ctx, int inside, int64_t rtt_us);

/* {"addr":"127.0.0.1","port":5000} for an AF_INET/AF_INET6 address. */
json_t *lsock_addr_json(const struct sockaddr *sa);

/* Parse an IPv4 or IPv6 literal and port into ss. 0 or -EINVAL. */
int lsock_parse_addr(const char *addr, int port, struct sockaddr_storage *ss, socklen_t *len);

/* The symbolic errno name ("ECONNRESET") of a positive errno value. */
const char *lsock_errno_name(int e);

/* Printable preview of bytes: text as is, other bytes as \xNN, at most max
 * input bytes (the event says "data_truncated" beyond). Caller owns the json. */
json_t *lsock_preview(const void *buf, size_t len, size_t max);

#endif
