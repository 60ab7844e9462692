/* test_wire.c: the wire's seeded decisions and its scheduler (pure: times are given, no I/O). */
#include "unit.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "net/wire.h"

static const uint8_t ip_frame[64] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0x08, 0x00};

static struct wire_dir_cfg cfg_of(int delay, int jitter, int loss, int dup, int reorder, int rate)
{
	struct wire_dir_cfg c = {delay, jitter, loss, dup, reorder, rate};
	return c;
}

static void rand_is_a_pure_function(void **state)
{
	assert_int_equal(wire_rand(7, 0, 0, 1), wire_rand(7, 0, 0, 1));
	assert_int_not_equal(wire_rand(7, 0, 0, 1), wire_rand(8, 0, 0, 1));
	assert_int_not_equal(wire_rand(7, 0, 0, 1), wire_rand(7, 1, 0, 1));
	assert_int_not_equal(wire_rand(7, 0, 0, 1), wire_rand(7, 0, 1, 1));
	assert_int_not_equal(wire_rand(7, 0, 0, 1), wire_rand(7, 0, 0, 2));
}

/* Over n draws each action's count is binomial(n, p): it must lie within six
 * standard deviations of n*p (a false failure has probability below 2e-9). */
static void check_binomial(long got, long n, double p, const char *what)
{
	double mean = n * p, sd = sqrt(n * p * (1 - p));

	if (fabs((double)got - mean) > 6 * sd + 1e-9) {
		fprintf(stderr, "%s: %ld of %ld, expected %.0f +- %.0f\n", what, got, n, mean, 6 * sd);
		fail();
	}
}

static void draws_follow_the_percentages(void **state)
{
	struct wire_dir_cfg c = cfg_of(0, 0, 20, 5, 10, 0);
	long n = 200000, drop = 0, dup = 0, reo = 0, i;

	for (i = 1; i <= n; i++) {
		struct wire_draw d = wire_draw(&c, 12345, 0, (uint64_t)i);
		drop += d.action == WIRE_DROP;
		dup += d.action == WIRE_DUP;
		reo += d.action == WIRE_REORDER;
		assert_int_equal(d.jitter_us, 0);
	}
	check_binomial(drop, n, 0.20, "drop");
	check_binomial(dup, n, 0.05, "dup");
	check_binomial(reo, n, 0.10, "reorder");
}

static void zero_and_full_loss_are_exact(void **state)
{
	struct wire_dir_cfg none = cfg_of(0, 0, 0, 0, 0, 0), all = cfg_of(0, 0, 100, 0, 0, 0);
	uint64_t i;

	for (i = 1; i <= 10000; i++) {
		assert_int_equal(wire_draw(&none, 1, 0, i).action, WIRE_PASS);
		assert_int_equal(wire_draw(&all, 1, 1, i).action, WIRE_DROP);
	}
}

static void jitter_stays_within_bounds(void **state)
{
	struct wire_dir_cfg c = cfg_of(10, 3, 0, 0, 0, 0);
	double sum = 0;
	int64_t lo = 0, hi = 0;
	uint64_t i, n = 100000;

	for (i = 1; i <= n; i++) {
		int64_t j = wire_draw(&c, 99, 1, i).jitter_us;
		assert_true(j >= -3000 && j <= 3000);
		lo = j < lo ? j : lo;
		hi = j > hi ? j : hi;
		sum += (double)j;
	}
	/* Uniform on [-3000, 3000]: sd 1732 us, the mean of n draws within 6 sd/sqrt(n). */
	assert_true(fabs(sum / (double)n) < 6 * 1732.0 / sqrt((double)n));
	assert_true(lo < -2900 && hi > 2900);
}

/* Push n IPv4 frames 1 ms apart and return the indices dropped as a bit string. */
static void drop_pattern(uint64_t seed, int with_arp, char *out, int n)
{
	struct wire_dir_cfg cfg[2] = {cfg_of(0, 0, 30, 0, 0, 0), cfg_of(0, 0, 0, 0, 0, 0)};
	struct wire_core *c = wire_core_create(cfg, seed);
	struct wire_verdict v;
	struct wire_out o;
	int i, k = 0;

	assert_non_null(c);
	for (i = 0; i < n; i++) {
		if (with_arp && i % 3 == 0)
			wire_core_push(c, WIRE_C2S, i * 1000, ip_frame, 42, 0, &v);
		wire_core_push(c, WIRE_C2S, i * 1000, ip_frame, 64, 1, &v);
		out[k++] = v.action == WIRE_DROP ? 'x' : '.';
		while (wire_core_pop(c, i * 1000, &o))
			;
	}
	out[k] = '\0';
	wire_core_destroy(c);
}

static void same_seed_same_drops_whatever_else_crosses(void **state)
{
	char a[201], b[201], d[201];

	drop_pattern(42, 0, a, 200);
	drop_pattern(42, 1, b, 200);
	drop_pattern(43, 0, d, 200);
	assert_string_equal(a, b);
	assert_string_not_equal(a, d);
}

static void non_ip_frames_are_never_impaired(void **state)
{
	struct wire_dir_cfg cfg[2] = {cfg_of(5, 5, 100, 0, 0, 0), cfg_of(0, 0, 0, 0, 0, 0)};
	struct wire_core *c = wire_core_create(cfg, 1);
	struct wire_verdict v;
	int i;

	for (i = 0; i < 100; i++) {
		wire_core_push(c, WIRE_C2S, 0, ip_frame, 42, 0, &v);
		assert_int_equal(v.action, WIRE_DELAY);
		assert_int_equal(v.delay_us, 5000); /* the delay, never jitter */
		assert_int_equal(v.ip_index, 0);
	}
	wire_core_push(c, WIRE_C2S, 0, ip_frame, 64, 1, &v);
	assert_int_equal(v.action, WIRE_DROP);
	assert_int_equal(v.frame, 101);
	assert_int_equal(v.ip_index, 1);
	wire_core_destroy(c);
}

static void delay_holds_frames_until_due(void **state)
{
	struct wire_dir_cfg cfg[2] = {cfg_of(0, 0, 0, 0, 0, 0), cfg_of(10, 0, 0, 0, 0, 0)};
	struct wire_core *c = wire_core_create(cfg, 1);
	struct wire_verdict v;
	struct wire_out o;

	wire_core_push(c, WIRE_C2S, 100, ip_frame, 64, 1, &v);
	assert_int_equal(v.action, WIRE_PASS);
	assert_int_equal(wire_core_pop(c, 100, &o), 1);
	assert_int_equal(o.dir, WIRE_C2S);
	wire_core_push(c, WIRE_S2C, 200, ip_frame, 60, 1, &v);
	assert_int_equal(v.action, WIRE_DELAY);
	assert_int_equal(v.delay_us, 10000);
	assert_int_equal(wire_core_next_due(c), 10200);
	assert_int_equal(wire_core_pop(c, 10199, &o), 0);
	assert_int_equal(wire_core_pop(c, 10200, &o), 1);
	assert_int_equal(o.len, 60);
	assert_int_equal(wire_core_next_due(c), -1);
	assert_int_equal(wire_core_counters(c, WIRE_S2C)->delivered, 1);
	wire_core_destroy(c);
}

static void jitter_never_reorders(void **state)
{
	struct wire_dir_cfg cfg[2] = {cfg_of(20, 20, 0, 0, 0, 0), cfg_of(0, 0, 0, 0, 0, 0)};
	struct wire_core *c = wire_core_create(cfg, 5);
	struct wire_verdict v;
	struct wire_out o;
	uint64_t last = 0;
	int i, got = 0;

	for (i = 0; i < 500; i++)
		wire_core_push(c, WIRE_C2S, i * 100, ip_frame, 64, 1, &v);
	while (wire_core_next_due(c) >= 0) {
		assert_int_equal(wire_core_pop(c, wire_core_next_due(c), &o), 1);
		assert_true(o.frame > last);
		last = o.frame;
		got++;
	}
	assert_int_equal(got, 500);
	wire_core_destroy(c);
}

static void duplicate_is_delivered_twice(void **state)
{
	struct wire_dir_cfg cfg[2] = {cfg_of(0, 0, 0, 100, 0, 0), cfg_of(0, 0, 0, 0, 0, 0)};
	struct wire_core *c = wire_core_create(cfg, 1);
	struct wire_verdict v;
	struct wire_out o;

	wire_core_push(c, WIRE_C2S, 0, ip_frame, 64, 1, &v);
	assert_int_equal(v.action, WIRE_DUP);
	assert_int_equal(wire_core_pop(c, 0, &o), 1);
	assert_int_equal(o.copy, 0);
	assert_int_equal(wire_core_pop(c, 0, &o), 1);
	assert_int_equal(o.copy, 1);
	assert_int_equal(o.frame, 1);
	assert_int_equal(wire_core_pop(c, 0, &o), 0);
	assert_int_equal(wire_core_counters(c, WIRE_C2S)->duplicated, 1);
	assert_int_equal(wire_core_counters(c, WIRE_C2S)->delivered, 2);
	wire_core_destroy(c);
}

static void reordered_frame_goes_after_the_next(void **state)
{
	struct wire_dir_cfg cfg[2] = {cfg_of(0, 0, 0, 0, 100, 0), cfg_of(0, 0, 0, 0, 0, 0)};
	struct wire_core *c = wire_core_create(cfg, 1);
	struct wire_verdict v;
	struct wire_out o;

	/* Every IPv4 frame is held, so only a non-IP frame can release it. */
	wire_core_push(c, WIRE_C2S, 0, ip_frame, 64, 1, &v);
	assert_int_equal(v.action, WIRE_REORDER);
	assert_int_equal(wire_core_pop(c, 0, &o), 0);
	wire_core_push(c, WIRE_C2S, 50, ip_frame, 42, 0, &v);
	assert_int_equal(wire_core_pop(c, 50, &o), 1);
	assert_int_equal(o.frame, 2);
	assert_int_equal(wire_core_pop(c, 50, &o), 1);
	assert_int_equal(o.frame, 1);
	assert_int_equal(o.hold_timeout, 0);
	wire_core_destroy(c);

	/* Nothing comes after it: released by the hold timeout. */
	c = wire_core_create(cfg, 1);
	wire_core_push(c, WIRE_C2S, 0, ip_frame, 64, 1, &v);
	assert_int_equal(wire_core_next_due(c), WIRE_HOLD_MAX_US);
	assert_int_equal(wire_core_pop(c, WIRE_HOLD_MAX_US - 1, &o), 0);
	assert_int_equal(wire_core_pop(c, WIRE_HOLD_MAX_US, &o), 1);
	assert_int_equal(o.hold_timeout, 1);
	assert_int_equal(wire_core_counters(c, WIRE_C2S)->hold_timeouts, 1);
	wire_core_destroy(c);

	/* A frame that entered before the held one does not release it: A (not
	 * IP, so never held) enters at 0 and is due at 10 ms, B is held at 1 ms,
	 * C enters at 20 ms; the order out is A, C, B. */
	cfg[0].delay_ms = 10;
	c = wire_core_create(cfg, 1);
	wire_core_push(c, WIRE_C2S, 0, ip_frame, 42, 0, &v);
	wire_core_push(c, WIRE_C2S, 1000, ip_frame, 64, 1, &v);
	assert_int_equal(v.action, WIRE_REORDER);
	assert_int_equal(wire_core_pop(c, 10000, &o), 1);
	assert_int_equal(o.frame, 1);
	assert_int_equal(wire_core_pop(c, 10000, &o), 0);
	wire_core_push(c, WIRE_C2S, 20000, ip_frame, 42, 0, &v);
	assert_int_equal(wire_core_pop(c, 30000, &o), 1);
	assert_int_equal(o.frame, 3);
	assert_int_equal(wire_core_pop(c, 30000, &o), 1);
	assert_int_equal(o.frame, 2);
	wire_core_destroy(c);
}

static void rate_limit_spaces_frames_and_bounds_the_queue(void **state)
{
	/* 8000 kbit/s: a 1000-byte frame takes 1000 us on the line. */
	struct wire_dir_cfg cfg[2] = {cfg_of(0, 0, 0, 0, 0, 8000), cfg_of(0, 0, 0, 0, 0, 0)};
	struct wire_core *c = wire_core_create(cfg, 1);
	uint8_t big[1000];
	struct wire_verdict v;
	int i, queued = 0, qdrops = 0;

	memcpy(big, ip_frame, sizeof ip_frame);
	wire_core_push(c, WIRE_C2S, 0, big, sizeof big, 1, &v);
	assert_int_equal(v.delay_us, 1000);
	assert_int_equal(v.queue_us, 0);
	wire_core_push(c, WIRE_C2S, 0, big, sizeof big, 1, &v);
	assert_int_equal(v.delay_us, 2000);
	assert_int_equal(v.queue_us, 1000);
	for (i = 0; i < 2000; i++) {
		wire_core_push(c, WIRE_C2S, 0, big, sizeof big, 1, &v);
		if (v.action == WIRE_QUEUE_DROP)
			qdrops++;
		else
			queued++;
	}
	/* At most 1 s of backlog: 1000 frames of 1 ms, two of them pushed above. */
	assert_int_equal(queued + 2, 1001);
	assert_int_equal(qdrops, 2000 - queued);
	assert_int_equal(wire_core_counters(c, WIRE_C2S)->queue_drops, (uint64_t)qdrops);
	wire_core_destroy(c);
}

static void frame_queue_is_bounded(void **state)
{
	struct wire_dir_cfg cfg[2] = {cfg_of(1000, 0, 0, 0, 0, 0), cfg_of(0, 0, 0, 0, 0, 0)};
	struct wire_core *c = wire_core_create(cfg, 1);
	struct wire_verdict v;
	int i, drops = 0;

	for (i = 0; i < WIRE_MAX_FRAMES + 10; i++) {
		wire_core_push(c, WIRE_C2S, i, ip_frame, 64, 1, &v);
		drops += v.action == WIRE_QUEUE_DROP;
	}
	assert_int_equal(drops, 10);
	assert_int_equal(wire_core_queued(c, WIRE_C2S), WIRE_MAX_FRAMES);
	wire_core_destroy(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(rand_is_a_pure_function),
		cmocka_unit_test(draws_follow_the_percentages),
		cmocka_unit_test(zero_and_full_loss_are_exact),
		cmocka_unit_test(jitter_stays_within_bounds),
		cmocka_unit_test(same_seed_same_drops_whatever_else_crosses),
		cmocka_unit_test(non_ip_frames_are_never_impaired),
		cmocka_unit_test(delay_holds_frames_until_due),
		cmocka_unit_test(jitter_never_reorders),
		cmocka_unit_test(duplicate_is_delivered_twice),
		cmocka_unit_test(reordered_frame_goes_after_the_next),
		cmocka_unit_test(rate_limit_spaces_frames_and_bounds_the_queue),
		cmocka_unit_test(frame_queue_is_bounded),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
