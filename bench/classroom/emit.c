/* emit.c: bench/classroom's stand-in for `socklab run --json`: 200-byte events at a fixed rate, stamped with CLOCK_MONOTONIC.
 *
 * `socklab serve` runs it instead of itself (SOCKLAB_LAB_EXE), with the
 * usual arguments (run LAB --json --run-id ID ...); the node reference server
 * runs it with just `--run-id ID`. It prints run.start, BENCH_EVENTS events
 * of BENCH_BYTES bytes each at BENCH_RATE per second, then run.end. Each event
 * carries "ts", the CLOCK_MONOTONIC time in nanoseconds at which it was
 * written, from which the load client measures delivery latency.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static long env_long(const char *name, long dflt)
{
	const char *v = getenv(name);
	char *end;
	long n;

	if (!v || !*v)
		return dflt;
	n = strtol(v, &end, 10);
	return *end || n <= 0 ? dflt : n;
}

static long long mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	const char *run = "0000000000000000", *lab = "tcp-echo";
	long events = env_long("BENCH_EVENTS", 200), rate = env_long("BENCH_RATE", 20);
	long bytes = env_long("BENCH_BYTES", 200), i;
	long long t0 = mono_ns(), next;
	char line[4096], pad[4096];
	int n, k;

	for (k = 1; k + 1 < argc; k++)
		if (!strcmp(argv[k], "--run-id"))
			run = argv[k + 1];
	if (argc > 2 && !strcmp(argv[1], "run"))
		lab = argv[2];
	if (bytes > (long)sizeof pad - 1)
		bytes = sizeof pad - 1;
	printf("{\"v\":1,\"run\":\"%s\",\"seq\":0,\"t_us\":0,\"lab\":\"%s\",\"type\":\"run.start\","
	       "\"params\":{},\"sandbox\":{\"netns\":false}}\n",
	       run, lab);
	fflush(stdout);
	next = t0;
	for (i = 1; i <= events; i++) {
		struct timespec ts;
		long long now;

		next += 1000000000LL / rate;
		ts.tv_sec = next / 1000000000LL;
		ts.tv_nsec = next % 1000000000LL;
		clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
		now = mono_ns();
		n = snprintf(line, sizeof line,
			     "{\"v\":1,\"run\":\"%s\",\"seq\":%ld,\"t_us\":%lld,\"lab\":\"%s\","
			     "\"type\":\"bench\",\"ts\":%lld,\"pad\":\"",
			     run, i, (now - t0) / 1000, lab, now);
		/* Pad so the whole line (without its newline) is `bytes` long. */
		k = (int)bytes - n - 2;
		if (k < 0)
			k = 0;
		memset(pad, 'x', (size_t)k);
		pad[k] = '\0';
		printf("%s%s\"}\n", line, pad);
		fflush(stdout);
	}
	printf("{\"v\":1,\"run\":\"%s\",\"seq\":%ld,\"t_us\":%lld,\"lab\":\"%s\",\"type\":\"run.end\","
	       "\"status\":\"ok\",\"summary\":{}}\n",
	       run, events + 1, (mono_ns() - t0) / 1000, lab);
	fflush(stdout);
	return 0;
}
