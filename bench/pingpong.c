/* pingpong.c: baseline for bench/run: an untraced TCP echo round trip over loopback. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Usage: pingpong N SIZE. Prints one RTT in microseconds per line, measured
 * like the tcp-echo lab measures rtt_us: send the message, read the whole
 * upper-cased reply. */

static int lfd;
static size_t msg_size;

static void *server(void *arg)
{
	char buf[1024];
	int fd = accept(lfd, NULL, NULL);
	ssize_t n;

	(void)arg;
	while ((n = recv(fd, buf, sizeof buf, 0)) > 0) {
		for (ssize_t i = 0; i < n; i++)
			if (buf[i] >= 'a' && buf[i] <= 'z')
				buf[i] = (char)(buf[i] - 32);
		if (send(fd, buf, (size_t)n, 0) < 0)
			break;
	}
	close(fd);
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
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof a;
	int n = argc > 1 ? (int)strtol(argv[1], NULL, 10) : 1000;
	pthread_t t;
	char msg[1024], got[1024];
	int fd;

	msg_size = argc > 2 ? (size_t)strtol(argv[2], NULL, 10) : 14;
	if (msg_size < 1 || msg_size > sizeof msg)
		return 2;
	memset(msg, 'a', msg_size);
	lfd = socket(AF_INET, SOCK_STREAM, 0);
	if (bind(lfd, (struct sockaddr *)&a, sizeof a) < 0 || listen(lfd, 5) < 0)
		return 1;
	getsockname(lfd, (struct sockaddr *)&a, &al);
	pthread_create(&t, NULL, server, NULL);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0)
		return 1;
	for (int i = 0; i < n; i++) {
		double t0 = now_us();
		size_t have = 0;
		if (send(fd, msg, msg_size, 0) < 0)
			return 1;
		while (have < msg_size) {
			ssize_t r = recv(fd, got + have, msg_size - have, 0);
			if (r <= 0)
				return 1;
			have += (size_t)r;
		}
		printf("%.0f\n", now_us() - t0);
	}
	close(fd);
	pthread_join(t, NULL);
	return 0;
}
