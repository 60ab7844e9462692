/* fuzz_pcap.c: libFuzzer target for the capture file reader a replay uses (labs/capture cap_file_*). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "capture/capture.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The most a replay reads (the lab's own limit is larger; the reader is the same). */
#define MAX_FILE (256 * 1024)

/* The input is the file: written to a memory file and opened by its path,
 * as a replay opens an upload. Every frame must stay within what was read. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int fd = -1;
	static char path[64];
	struct cap_file *f = NULL;
	struct cap_frame fr;
	char err[512];
	int rc, n = 0;

	if (fd < 0) {
		fd = memfd_create("fuzz-pcap", MFD_CLOEXEC);
		if (fd < 0)
			abort();
		snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
	}
	if (ftruncate(fd, 0) < 0 || pwrite(fd, data, size, 0) != (ssize_t)size)
		abort();
	err[0] = '\0';
	rc = cap_file_open(&f, path, MAX_FILE, err, sizeof err);
	if (rc < 0) {
		if (f || !err[0])
			abort();
		return 0;
	}
	while ((rc = cap_file_next(f, &fr, err, sizeof err)) == 1 && n++ < 10000) {
		volatile uint8_t sum = 0;
		size_t i;

		if (fr.caplen > fr.len || fr.caplen > CAP_SNAPLEN || (fr.caplen && !fr.data))
			abort();
		/* Touch every captured byte: AddressSanitizer sees a short buffer. */
		for (i = 0; i < fr.caplen; i++)
			sum ^= fr.data[i];
		(void)sum;
	}
	if (rc < 0 && !err[0])
		abort();
	cap_file_close(f);
	return 0;
}
