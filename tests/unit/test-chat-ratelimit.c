/* chat-ratelimit: a token bucket driven by the caller's clock, so every
 * test passes the time in and nothing here sleeps. */
#include "chat-test.h"

#include "chat-ratelimit.h"

#define T0 UINT64_C(1700000000000)

/* Takes tokens at one instant until refused; returns how many were given. */
static int drain(chat_bucket_t *b, double rate, double burst, uint64_t now)
{
    int n = 0;
    while (n < 1000 && chat_bucket_take(b, rate, burst, now))
        n++;
    return n;
}

static void test_starts_full(void **state)
{
    (void)state;
    chat_bucket_t b;
    chat_bucket_init(&b, 5, T0);
    assert_int_equal(drain(&b, 1, 5, T0), 5);
}

static void test_empty_bucket_refuses(void **state)
{
    (void)state;
    chat_bucket_t b;
    chat_bucket_init(&b, 2, T0);
    assert_int_equal(drain(&b, 1, 2, T0), 2);
    assert_false(chat_bucket_take(&b, 1, 2, T0));
}

static void test_refills_at_rate(void **state)
{
    (void)state;
    chat_bucket_t b;
    chat_bucket_init(&b, 10, T0);
    drain(&b, 4, 10, T0);
    /* 4 tokens per second: 125 ms gives half a token, 250 ms one, 1 s four.
     * (Steps are binary fractions, so the sums are exact.) */
    assert_false(chat_bucket_take(&b, 4, 10, T0 + 125));
    assert_true(chat_bucket_take(&b, 4, 10, T0 + 250));
    assert_false(chat_bucket_take(&b, 4, 10, T0 + 250));
    assert_int_equal(drain(&b, 4, 10, T0 + 1250), 4);
}

static void test_refill_is_capped_at_burst(void **state)
{
    (void)state;
    chat_bucket_t b;
    chat_bucket_init(&b, 3, T0);
    drain(&b, 100, 3, T0);
    assert_int_equal(drain(&b, 100, 3, T0 + 3600 * 1000), 3);
}

static void test_fractional_refill_accumulates(void **state)
{
    (void)state;
    chat_bucket_t b;
    chat_bucket_init(&b, 1, T0);
    drain(&b, 1, 1, T0);
    /* Refused attempts 125 ms apart still add up to one token. */
    for (int i = 1; i < 8; i++)
        assert_false(chat_bucket_take(&b, 1, 1, T0 + (uint64_t)i * 125));
    assert_true(chat_bucket_take(&b, 1, 1, T0 + 1000));
}

static void test_clock_going_back_gives_nothing(void **state)
{
    (void)state;
    chat_bucket_t b;
    chat_bucket_init(&b, 1, T0);
    drain(&b, 1, 1, T0);
    assert_false(chat_bucket_take(&b, 1, 1, T0 - 5000));
    /* And time is measured from the latest instant seen, not the earlier. */
    assert_false(chat_bucket_take(&b, 1, 1, T0 + 500));
    assert_true(chat_bucket_take(&b, 1, 1, T0 + 1000));
}

static void test_zero_rate_never_refills(void **state)
{
    (void)state;
    chat_bucket_t b;
    chat_bucket_init(&b, 2, T0);
    assert_int_equal(drain(&b, 0, 2, T0), 2);
    assert_false(chat_bucket_take(&b, 0, 2, T0 + 86400 * 1000));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_starts_full),
        cmocka_unit_test(test_empty_bucket_refuses),
        cmocka_unit_test(test_refills_at_rate),
        cmocka_unit_test(test_refill_is_capped_at_burst),
        cmocka_unit_test(test_fractional_refill_accumulates),
        cmocka_unit_test(test_clock_going_back_gives_nothing),
        cmocka_unit_test(test_zero_rate_never_refills),
    };
    return cmocka_run_group_tests_name("chat-ratelimit", tests, NULL, NULL);
}
