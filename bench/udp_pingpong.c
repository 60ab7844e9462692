/* udp_pingpong.c: baseline for bench/udp-ping: an untraced UDP sendto/recvfrom ping-pong on loopback. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Usage: udp_pingpong N SIZE INTERVAL_MS. Prints one RTT in microseconds per
 * line, measured like the udp-ping lab measures rtt_us: from just before
 * sendto() to just after recvfrom() returned the upper-cased reply. A probe is
 * sent every INTERVAL_MS (0: back to back), as the lab does. */

static int sfd;

static void *server(void *arg)
{
	char buf[65536];
	struct sockaddr_in from;
	socklen_t fl;
	ssize_t n;

	(void)arg;
	for (;;) {
		fl = sizeof from;
		n = recvfrom(sfd, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl);
		if (n <= 0)
			break;
		for (ssize_t i = 0; i < n; i++)
			if (buf[i] >= 'a' && buf[i] <= 'z')
				buf[i] = (char)(buf[i] - 32);
		if (sendto(sfd, buf, (size_t)n, 0, (struct sockaddr *)&from, fl) < 0)
			break;
	}
	return NULL;
}

static double now_us(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? (int)strtol(argv[1], NULL, 10) : 1000;
	size_t size = argc > 2 ? (size_t)strtol(argv[2], NULL, 10) : 64;
	long interval_ms = argc > 3 ? strtol(argv[3], NULL, 10) : 0;
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof sa;
	char *msg = malloc(size), *got = malloc(size);
	pthread_t tid;
	double next;
	int cfd;

	if (!msg || !got || size == 0 || size > 65507)
		return 2;
	memset(msg, 'a', size);
	sfd = socket(AF_INET, SOCK_DGRAM, 0);
	cfd = socket(AF_INET, SOCK_DGRAM, 0);
	if (sfd < 0 || cfd < 0 || bind(sfd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
	    getsockname(sfd, (struct sockaddr *)&sa, &sl) < 0) {
		perror("socket");
		return 1;
	}
	pthread_create(&tid, NULL, server, NULL);
	next = now_us();
	for (int i = 0; i < n; i++) {
		double t0, wait = next - now_us();

		if (wait > 0)
			usleep((useconds_t)wait);
		t0 = now_us();
		if (sendto(cfd, msg, size, 0, (struct sockaddr *)&sa, sizeof sa) < 0 ||
		    recvfrom(cfd, got, size, 0, NULL, NULL) < 0) {
			perror("ping");
			return 1;
		}
		printf("%.1f\n", now_us() - t0);
		next = t0 + (double)interval_ms * 1000.0;
	}
	return 0;
}
