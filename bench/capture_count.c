/* capture_count.c: bench/capture's reader: socklab's capture (labs/capture) on one interface, every frame decoded as a lab would, counted until SIGINT. */
#include <errno.h>
#include <linux/ethtool.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "capture.h"
#include "decode/decode.h"

/*
 * Usage: capture_count IFNAME FILTER
 * Prints "ready" once the capture is open, then on SIGINT or SIGTERM stops
 * the capture (delivering what is still queued) and prints one line:
 *   frames N drops N ring_full N tcp N
 * Built twice by bench/capture: against this tree's capture.c and against
 * an older revision's, so the two rings are measured on the same traffic.
 */

static volatile sig_atomic_t stop;
static unsigned long long n_tcp;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static int on_frame(void *arg, const struct cap_frame *f)
{
	struct dec_packet p;

	(void)arg;
	dec_packet(f->data, f->caplen, f->len, f->link, &p);
	if (dec_has(&p, DEC_L_TCP))
		n_tcp++;
	return 0;
}

/* Segmentation offload off, as the sticky lab does: the tap then sees each
 * segment rather than the large buffers TCP hands a GSO device. */
static void offload_off(const char *ifname)
{
	__u32 cmds[] = {ETHTOOL_STSO, ETHTOOL_SGSO};
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	size_t i;

	if (fd < 0)
		return;
	for (i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
		struct ethtool_value ev = {.cmd = cmds[i], .data = 0};
		struct ifreq ifr;

		memset(&ifr, 0, sizeof ifr);
		snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", ifname);
		ifr.ifr_data = (char *)&ev;
		if (ioctl(fd, SIOCETHTOOL, &ifr) < 0)
			fprintf(stderr, "capture_count: offload off on %s: %s\n", ifname,
				strerror(errno));
	}
	close(fd);
}

int main(int argc, char **argv)
{
	struct sigaction sa;
	struct cap *c;
	struct cap_stats st;
	char err[512];
	int rc;

	if (argc != 3) {
		fprintf(stderr, "usage: capture_count IFNAME FILTER\n");
		return 2;
	}
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	offload_off(argv[1]);
	rc = cap_open(&c, argv[1], argv[2], err, sizeof err);
	if (rc < 0) {
		fprintf(stderr, "capture_count: %s\n", err);
		return 1;
	}
	rc = cap_start(c, on_frame, NULL);
	if (rc < 0) {
		fprintf(stderr, "capture_count: cap_start: %s\n", strerror(-rc));
		cap_close(c);
		return 1;
	}
	printf("ready\n");
	fflush(stdout);
	while (!stop)
		pause();
	cap_stop(c);
	cap_get_stats(c, &st);
#ifdef CAP_DELAY_MS /* this tree's capture.h: the ring also counts how often it was full */
	printf("frames %llu drops %llu ring_full %llu tcp %llu\n", (unsigned long long)st.frames,
	       (unsigned long long)st.kernel_drops, (unsigned long long)st.ring_full, n_tcp);
#else
	printf("frames %llu drops %llu ring_full - tcp %llu\n", (unsigned long long)st.frames,
	       (unsigned long long)st.kernel_drops, n_tcp);
#endif
	cap_close(c);
	return 0;
}
