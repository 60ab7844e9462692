/* nats_chunk.c: remove or corrupt one chunk of a run file in the JetStream stream SOCKLAB_RUN_FILES (for the --nats integration tests: a reader must refuse the file, never serve it truncated or wrong). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nats/nats.h>

/* usage: nats_chunk URL STREAM SUBJECT INDEX del|flip. del: the chunk whose
 * Socklab-Chunk header is INDEX is deleted from the stream; flip: it is
 * deleted and published again (last in the stream) with its first byte
 * inverted and the same headers. Exit 0 when done, 1 with the reason on
 * stderr. */
int main(int argc, char **argv)
{
	natsConnection *nc = NULL;
	jsCtx *js = NULL;
	jsStreamInfo *si = NULL;
	natsMsg *found = NULL;
	jsErrCode jerr = 0;
	natsStatus s;
	uint64_t seq;
	int rc = 1;

	if (argc != 6 || (strcmp(argv[5], "del") && strcmp(argv[5], "flip"))) {
		fprintf(stderr, "usage: nats_chunk URL STREAM SUBJECT INDEX del|flip\n");
		return 2;
	}
	s = natsConnection_ConnectTo(&nc, argv[1]);
	if (s == NATS_OK)
		s = natsConnection_JetStream(&js, nc, NULL);
	if (s == NATS_OK)
		s = js_GetStreamInfo(&si, js, argv[2], NULL, &jerr);
	if (s != NATS_OK) {
		fprintf(stderr, "nats_chunk: %s (JetStream error %d)\n", natsStatus_GetText(s),
			(int)jerr);
		goto out;
	}
	for (seq = si->State.FirstSeq; seq && seq <= si->State.LastSeq && !found; seq++) {
		natsMsg *m = NULL;
		const char *idx = NULL;
		s = js_GetMsg(&m, js, argv[2], seq, NULL, &jerr);
		if (s != NATS_OK)
			continue; /* deleted */
		if (!strcmp(natsMsg_GetSubject(m), argv[3]) &&
		    natsMsgHeader_Get(m, "Socklab-Chunk", &idx) == NATS_OK && idx &&
		    !strcmp(idx, argv[4]))
			found = m;
		else
			natsMsg_Destroy(m);
	}
	if (!found) {
		fprintf(stderr, "nats_chunk: no chunk %s on %s\n", argv[4], argv[3]);
		goto out;
	}
	s = js_DeleteMsg(js, argv[2], natsMsg_GetSequence(found), NULL, &jerr);
	if (s == NATS_OK && !strcmp(argv[5], "flip")) {
		const char **keys = NULL;
		int n = 0, i, len = natsMsg_GetDataLength(found);
		char *data = malloc(len ? (size_t)len : 1);
		natsMsg *copy = NULL;

		if (!data) {
			s = NATS_NO_MEMORY;
		} else {
			memcpy(data, natsMsg_GetData(found), (size_t)len);
			if (len)
				data[0] = (char)~data[0];
			s = natsMsg_Create(&copy, argv[3], NULL, data, len);
		}
		if (s == NATS_OK)
			s = natsMsgHeader_Keys(found, &keys, &n);
		for (i = 0; s == NATS_OK && i < n; i++) {
			const char *v = NULL;
			if (!strcmp(keys[i], "Nats-Msg-Id"))
				continue;
			s = natsMsgHeader_Get(found, keys[i], &v);
			if (s == NATS_OK)
				s = natsMsgHeader_Set(copy, keys[i], v);
		}
		free((void *)keys);
		if (s == NATS_OK)
			s = js_PublishMsg(NULL, js, copy, NULL, &jerr);
		natsMsg_Destroy(copy);
		free(data);
	}
	if (s != NATS_OK) {
		fprintf(stderr, "nats_chunk: %s (JetStream error %d)\n", natsStatus_GetText(s),
			(int)jerr);
		goto out;
	}
	rc = 0;
out:
	natsMsg_Destroy(found);
	jsStreamInfo_Destroy(si);
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);
	nats_Close();
	return rc;
}
