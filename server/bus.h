/* bus.h: --nats: every run event appended to a NATS JetStream stream as it happens (libnats), published off the lws thread. */
#ifndef SOCKLAB_BUS_H
#define SOCKLAB_BUS_H

#include <stddef.h>

#include <jansson.h>

#include "config.h"

/*
 * With --nats URL, each event line of every run (exactly the line written to
 * the run's events.jsonl) is published to the subject BUS_SUBJECT_PREFIX.ID
 * of the JetStream stream BUS_STREAM, which this server creates when it is
 * missing (file storage, at most cfg->nats_max_bytes, the oldest messages
 * discarded first). The lws thread only queues a copy (bus_publish never
 * blocks); a publisher thread of its own hands lines to libnats in queue
 * order and counts the acknowledgements. NATS being down or slow never stops
 * a run: lines wait in a bounded queue (BUS_QUEUE_BYTES) while libnats
 * reconnects, and what does not fit is dropped and counted; /api/health says
 * so ("nats": state, published, acked, failed, dropped, queued).
 *
 * Not built yet (issue 16): reading the stream back (watch, replay, events
 * from another replica), classes and the admission queue across replicas.
 */

#define BUS_STREAM "SOCKLAB_RUNS"
#define BUS_SUBJECT_PREFIX "socklab.runs."
/* Bytes of lines waiting for the publisher thread at most. */
#define BUS_QUEUE_BYTES (16u * 1024 * 1024)

struct bus;

/* Start connecting to cfg->nats_url (in the background: a NATS server that
 * is down now is retried for ever) and start the publisher thread. cfg must
 * outlive the bus. 0 or -errno with err (a malformed URL, no memory). */
int bus_start(struct bus **out, const struct serve_config *cfg, char *err, size_t errlen);

/* Queue one event line of run id (no newline) for the stream; any thread,
 * never blocks. NULL b: nothing. */
void bus_publish(struct bus *b, const char *run_id, const char *line, size_t len);

/* {"url","state","published","acked","failed","dropped","queued"}: a new
 * reference. state is "connected", "connecting" (never connected yet),
 * "reconnecting", "no_stream" (connected, but the stream cannot be created:
 * is JetStream enabled?) or "closed". */
json_t *bus_health(struct bus *b);

/* Publish what is queued (waiting at most 2 s for it and its
 * acknowledgements), stop the thread, close the connection, free b. NULL is
 * fine. */
void bus_stop(struct bus *b);

#endif
