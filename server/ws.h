/* ws.h: the WebSocket half of `socklab serve` (libwebsockets): sessions, ops and event fan-out. */
#ifndef SOCKLAB_WS_H
#define SOCKLAB_WS_H

#include <jansson.h>

#include <stddef.h>

#include "config.h"
#include "http.h"

/*
 * The socklab.v1 protocol. Client -> server, one JSON object per text
 * message (at most CONFIG_MAX_MESSAGE_BYTES; larger: an error, then close
 * 1009); "tag" (a string of at most 64 bytes) is optional and echoed:
 *   {"op":"run","lab":L,"params":{...}}  -> {"type":"run.accepted","run":ID,"tag","lab"}
 *                                           then every event of the run
 *   {"op":"cancel","run":ID}             -> {"type":"cancel.accepted","run":ID,"tag"}
 *                                           (only the connection's own runs)
 *   {"op":"watch","run":ID}              -> {"type":"watch.accepted","run":ID,"tag","live"}
 *                                           then the run's events from seq 0, live
 *                                           after the replay while it is going
 *   {"op":"ping"}                        -> {"type":"pong","tag"}
 * Classroom mode (roles are checked here, on the server, for every op):
 *   {"op":"signin","secret":S}           -> {"type":"signin.accepted","role":"instructor"}
 *   {"op":"class.open"}                  -> {"type":"class.opened","class":CODE}   (instructor)
 *   {"op":"class.join","class","name"}   -> {"type":"class.joined",...}            (anyone)
 *   {"op":"class.leave"}                 -> {"type":"class.left"}
 *   {"op":"class.run","lab","params"}    -> run.accepted; members get class.run
 *                                           and the run's events (class's instructor)
 *   {"op":"class.view","paused","pos","speed"} -> members get class.view (instructor)
 *   {"op":"class.end"}                   -> class.ended to everyone (instructor)
 * A class's messages go through one ring per class that every member reads
 * at its own position; one that falls out of the ring is sent class.resync and
 * re-reads the run's bundle over HTTP. Refusals add the codes forbidden and
 * unknown_class; every connection is limited to cfg->msg_rate messages a
 * second (bursts of twice that): a message over it, whatever it holds, is
 * dropped unread and counted, and the client is told once per burst.
 * Any refusal is {"type":"error","code","message","tag"[,"param"][,"run"]}
 * with code bad_request, bad_param, unknown_lab, unknown_run, not_owner,
 * not_running, limit or internal; the connection stays usable.
 * Before the upgrade (ws_auth.c): a wrong Host or Origin is answered HTTP 403,
 * a full server or address (--max-conns, --max-conns-per-addr) 503, each with
 * a JSON body {"error":{"code","message"}}. After it, an unmasked client frame
 * closes the connection with 1002 (RFC 6455 5.1, ws_mask.h).
 */

/* WebSocket subprotocol every client must ask for. */
#define WS_PROTOCOL "socklab.v1"

/* The WebSocket's path on the public port (front.h); on a --ws-port of its
 * own any path is taken, as before. */
#define WS_PATH "/ws"

/* Connections handed over by the front door and not yet adopted by the lws
 * thread; beyond this the front door refuses with 503 server_busy. */
#define WS_ADOPT_MAX 1024

/* Per-connection outgoing queue bound: messages and bytes. A connection that
 * reads so slowly that either is reached is closed with 1008 (counted in
 * /api/health); so are the slowest readers when all queues together reach
 * --queue-total. The connection that started a run is waited for instead:
 * while it lags, its runs' output is not read and the child blocks. */
#define WS_QUEUE_MAX 4096
#define WS_QUEUE_BYTES (8u * 1024 * 1024)

/* Runs one connection may watch at once. */
#define WS_MAX_WATCHES 8

struct ws_server;

/*
 * Create the lws context on the calling thread, which becomes the service
 * thread: listen on cfg->listen:cfg->ws_port (0: a free port) when it is not
 * -1 (otherwise connections come only through ws_adopt()) and adopt
 * signal_fd, a signalfd for SIGINT, SIGTERM and SIGCHLD (blocked in every
 * thread), into the loop; signal_fd is taken over even on failure. Creates
 * the run manager, which records runs in store (it must outlive the server).
 * 0 or -errno with err.
 */
struct bundle_store;
int ws_create(struct ws_server **out, const struct serve_config *cfg,
	      struct http_counters *counters, struct bundle_store *store, int signal_fd,
	      char *err, size_t errlen);

/* The port of the separate WebSocket listener (--ws-port), or -1 when the
 * WebSocket is served on the public port only. */
int ws_port(const struct ws_server *w);

/*
 * Hand an accepted connection whose request line starts "GET /ws" (peeked:
 * nothing read yet) to the WebSocket server; any thread. It is queued and
 * the lws thread woken (lws_cancel_service()); there it is followed by the
 * unmasked-frame check (ws_mask.h) from its first byte and adopted with
 * lws_adopt_socket_vhost(), which reads and answers the upgrade request
 * itself (Host, Origin and the connection limits: ws_auth.c). 0, or -EAGAIN
 * when WS_ADOPT_MAX connections are already queued (fd stays the caller's).
 */
int ws_adopt(struct ws_server *w, int fd);

/* --nats: every run event line also goes to b (bus.h); before ws_run(). */
struct bus;
void ws_set_bus(struct ws_server *w, struct bus *b);
/* --nats: classes across replicas (bus_class.h); before ws_run(). ws_wake
 * (any thread, arg: the server) is the wake to give bus_class_start(). */
struct bus_class;
void ws_set_bus_class(struct ws_server *w, struct bus_class *bc);
void ws_wake(void *arg);

/* The HTTP port, for the Origin check (pages come from it). */
void ws_set_http_port(struct ws_server *w, int port);

/* Serve until SIGINT or SIGTERM, then cancel every run, wait until each has
 * finished (bounded), and return 0. */
int ws_run(struct ws_server *w);

/* Destroy the context and free w (on the service thread). NULL is fine. */
void ws_destroy(struct ws_server *w);

/*
 * The op handler without a connection or an event loop, for the unit tests
 * and the fuzzer (tests/fuzz/fuzz_ws.c): one session on a server that has
 * cfg and counters (both must outlive it) but no listener, and a run
 * manager that checks every request as usual and then refuses it (code
 * "internal"): nothing is ever started. Classes, sign-in, watch, cancel and
 * every error path behave as on a live connection.
 */
struct ws_offline;
int ws_offline_create(struct ws_offline **out, const struct serve_config *cfg,
		      struct http_counters *counters);
/* Handle one client message (any bytes); returns the replies it queued,
 * in order, as a new JSON array. Class notices that go through a class's
 * ring are not included. */
json_t *ws_offline_message(struct ws_offline *o, const char *buf, size_t len);
void ws_offline_destroy(struct ws_offline *o);

#endif
