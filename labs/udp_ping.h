/* udp_ping.h: pure helpers of the udp-ping lab (probe payloads, RTT statistics), exposed for unit tests. */
#ifndef SOCKLAB_UDP_PING_H
#define SOCKLAB_UDP_PING_H

#include <stddef.h>
#include <stdint.h>

#define PING_MIN_SIZE 16
#define PING_UDP_MAX 65507 /* 65535 - 20 (IPv4 header) - 8 (UDP header) */

/* Write probe seq's payload of exactly size bytes into out (capacity >= size):
 * "seq=SEQ " then lower-case letters, so an upper-casing server's reply is
 * visibly different and still carries the number. Returns size. */
size_t ping_payload(char *out, size_t size, unsigned seq);

/* The sequence number at the start of a payload ("seq=12 ..." in any case), or
 * -1 when the bytes do not start that way. */
long ping_parse_seq(const uint8_t *p, size_t n);

/* The largest UDP payload that fits one IPv4 packet of mtu bytes. */
int ping_max_unfragmented(int mtu);

/* How many IPv4 fragments a UDP payload of size bytes needs at mtu. */
int ping_fragments(int size, int mtu);

/* RTT statistics in the way ping(8) reports them: min/avg/max and mdev, the
 * standard deviation sqrt(mean(x^2) - mean(x)^2). */
struct ping_stats {
	uint64_t n;
	int64_t min_us, max_us;
	double sum, sum2;
};
void ping_stats_add(struct ping_stats *s, int64_t rtt_us);
double ping_stats_avg(const struct ping_stats *s);
double ping_stats_mdev(const struct ping_stats *s);

#endif
