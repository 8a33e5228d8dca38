/* chat-redis without a server: parsing presence values
 * "<gateway id>|<expiry ms>". */
#include "chat-test.h"

#include <string.h>

#include "chat-redis.h"

#define NOW UINT64_C(1700000000000)

static int parse(const char *value, uint64_t now, char *gw, size_t size)
{
    return chat_presence_parse(value, strlen(value), now, gw, size);
}

static void test_alive_entry(void **state)
{
    (void)state;
    char gw[64];
    assert_chat_ok(parse("gw-1|1700000030000", NOW, gw, sizeof(gw)));
    assert_string_equal(gw, "gw-1");
}

static void test_expiry_one_ms_ahead_is_alive(void **state)
{
    (void)state;
    char gw[64];
    assert_chat_ok(parse("gw-1|1700000000001", NOW, gw, sizeof(gw)));
}

static void test_expired_entry(void **state)
{
    (void)state;
    char gw[64] = "";
    assert_chat_err(parse("gw-2|1699999999999", NOW, gw, sizeof(gw)), CHAT_EEXPIRED);
    /* The gateway id is still reported, for logs. */
    assert_string_equal(gw, "gw-2");
}

static void test_expiry_equal_to_now_is_expired(void **state)
{
    (void)state;
    char gw[64];
    assert_chat_err(parse("gw-2|1700000000000", NOW, gw, sizeof(gw)), CHAT_EEXPIRED);
}

static void test_value_is_read_only_up_to_len(void **state)
{
    (void)state;
    /* hiredis replies carry a length; the value need not be NUL-terminated. */
    char gw[64];
    const char value[] = "gw-1|1700000030000xyz";
    assert_chat_ok(chat_presence_parse(value, sizeof(value) - 1 - 3, NOW, gw, sizeof(gw)));
    assert_string_equal(gw, "gw-1");
}

static void test_malformed_entries(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",                             /* empty */
        "gw-1",                         /* no separator */
        "|1700000030000",               /* no gateway */
        "gw-1|",                        /* no expiry */
        "gw-1|17000000x0000",           /* not a number */
        "gw-1|-1700000030000",          /* negative */
        "gw-1| 1700000030000",          /* space */
        "gw-1|1700000030000|",          /* trailing separator */
        "gw-1|1700000030000.5",         /* fraction */
        "gw-1|99999999999999999999999", /* past 2^64 */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char gw[64];
        int rc = parse(bad[i], NOW, gw, sizeof(gw));
        if (rc != CHAT_EPARSE)
            fail_msg("'%s' gave %s, expected EPARSE", bad[i], chat_err_name(rc));
    }
}

static void test_expiry_up_to_uint64_max(void **state)
{
    (void)state;
    char gw[64];
    assert_chat_ok(parse("gw-1|18446744073709551615", NOW, gw, sizeof(gw)));
    assert_chat_err(parse("gw-1|18446744073709551616", NOW, gw, sizeof(gw)), CHAT_EPARSE);
}

static void test_gateway_id_too_long_for_buffer(void **state)
{
    (void)state;
    char gw[5];
    assert_chat_err(parse("gw-12|1700000030000", NOW, gw, sizeof(gw)), CHAT_EPARSE);
    assert_chat_ok(parse("gw-1|1700000030000", NOW, gw, sizeof(gw)));
    assert_string_equal(gw, "gw-1");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alive_entry),
        cmocka_unit_test(test_expiry_one_ms_ahead_is_alive),
        cmocka_unit_test(test_expired_entry),
        cmocka_unit_test(test_expiry_equal_to_now_is_expired),
        cmocka_unit_test(test_value_is_read_only_up_to_len),
        cmocka_unit_test(test_malformed_entries),
        cmocka_unit_test(test_expiry_up_to_uint64_max),
        cmocka_unit_test(test_gateway_id_too_long_for_buffer),
    };
    return cmocka_run_group_tests_name("chat-redis", tests, NULL, NULL);
}
