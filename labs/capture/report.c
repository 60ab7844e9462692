/* report.c: one shape for every lab's capture counters in run.end, and the notes that say a capture is incomplete. */
#include "capture.h"

#include <string.h>

#include <jansson.h>

#include "event.h"

int cap_report(struct cap *const *caps, int n, uint64_t lost, struct ev_emitter *em,
	       json_t *summary)
{
	struct cap_stats sum, st;
	int i, have = 0;

	memset(&sum, 0, sizeof sum);
	sum.kernel_drops = lost;
	for (i = 0; i < n; i++) {
		if (!caps[i])
			continue;
		cap_get_stats(caps[i], &st);
		sum.frames += st.frames;
		sum.kernel_drops += st.kernel_drops;
		sum.ring_full += st.ring_full;
		sum.truncated += st.truncated;
		sum.ring_bytes += st.ring_bytes;
		have++;
	}
	if (!have)
		return -1;
	if (summary)
		json_object_set_new(summary, "capture",
				    json_pack("{s:I, s:I, s:I, s:I, s:b}", "frames",
					      (json_int_t)sum.frames, "drops",
					      (json_int_t)sum.kernel_drops, "ring_full",
					      (json_int_t)sum.ring_full, "truncated",
					      (json_int_t)sum.truncated, "complete",
					      sum.kernel_drops == 0));
	if (sum.kernel_drops == 0)
		return 1;
	ev_note(em, "capture.incomplete",
		json_pack("{s:I, s:I, s:I, s:i}", "missed", (json_int_t)sum.kernel_drops, "frames",
			  (json_int_t)sum.frames, "ring_full", (json_int_t)sum.ring_full, "ring_kib",
			  (int)(sum.ring_bytes / (uint64_t)have / 1024)),
		NULL);
	return 0;
}

void cap_report_no_verdict(struct ev_emitter *em)
{
	ev_note(em, "capture.no_verdict", NULL, NULL);
}
