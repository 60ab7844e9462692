/* nats_read.c: print the messages of one subject of a JetStream stream, oldest first, one per line (for the --nats integration tests). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nats/nats.h>

/* usage: nats_read URL STREAM SUBJECT. Exit 0 with the payloads on stdout, 1
 * when the stream cannot be read (the reason on stderr). */
int main(int argc, char **argv)
{
	natsConnection *nc = NULL;
	jsCtx *js = NULL;
	jsStreamInfo *si = NULL;
	jsErrCode jerr = 0;
	natsStatus s;
	uint64_t seq;
	int rc = 1;

	if (argc != 4) {
		fprintf(stderr, "usage: nats_read URL STREAM SUBJECT\n");
		return 2;
	}
	s = natsConnection_ConnectTo(&nc, argv[1]);
	if (s == NATS_OK)
		s = natsConnection_JetStream(&js, nc, NULL);
	if (s == NATS_OK)
		s = js_GetStreamInfo(&si, js, argv[2], NULL, &jerr);
	if (s != NATS_OK) {
		fprintf(stderr, "nats_read: %s (JetStream error %d)\n", natsStatus_GetText(s),
			(int)jerr);
		goto out;
	}
	for (seq = si->State.FirstSeq; seq && seq <= si->State.LastSeq; seq++) {
		natsMsg *m = NULL;
		s = js_GetMsg(&m, js, argv[2], seq, NULL, &jerr);
		if (s == NATS_NOT_FOUND || (s != NATS_OK && jerr == JSNoMessageFoundErr))
			continue; /* deleted (the stream's limits) */
		if (s != NATS_OK) {
			fprintf(stderr, "nats_read: message %llu: %s\n", (unsigned long long)seq,
				natsStatus_GetText(s));
			goto out;
		}
		if (!strcmp(natsMsg_GetSubject(m), argv[3])) {
			fwrite(natsMsg_GetData(m), 1, (size_t)natsMsg_GetDataLength(m), stdout);
			fputc('\n', stdout);
		}
		natsMsg_Destroy(m);
	}
	rc = 0;
out:
	jsStreamInfo_Destroy(si);
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);
	nats_Close();
	return rc;
}
