/* chat-error: one table gives each CHAT_E* code its name and message, and
 * libuv's codes pass through both functions unchanged. */
#include "chat-test.h"

#include <string.h>

static void test_success_has_name_and_message(void **state)
{
    (void)state;
    assert_string_equal(chat_err_name(0), "OK");
    assert_string_equal(chat_strerror(0), "success");
}

static void test_every_code_has_its_name_and_message(void **state)
{
    (void)state;
#define CHECK(name, val, msg)                                                                      \
    assert_int_equal(CHAT_##name, val);                                                            \
    assert_string_equal(chat_err_name(CHAT_##name), #name);                                        \
    assert_string_equal(chat_strerror(CHAT_##name), msg);
    CHAT_ERRNO_MAP(CHECK)
#undef CHECK
}

static void test_codes_are_negative_and_distinct_from_libuv(void **state)
{
    (void)state;
    char buf[64];
    /* uv_err_name_r() says "Unknown system error" for a code libuv lacks. */
#define CHECK(name, val, msg)                                                                      \
    assert_true(CHAT_##name < 0);                                                                  \
    uv_err_name_r(CHAT_##name, buf, sizeof(buf));                                                  \
    assert_memory_equal(buf, "Unknown", 7);
    CHAT_ERRNO_MAP(CHECK)
#undef CHECK
}

static void test_libuv_codes_pass_through(void **state)
{
    (void)state;
    assert_string_equal(chat_err_name(UV_ECONNREFUSED), "ECONNREFUSED");
    assert_string_equal(chat_strerror(UV_ECONNREFUSED), uv_strerror(UV_ECONNREFUSED));
    assert_string_equal(chat_err_name(UV_EOF), "EOF");
    assert_string_equal(chat_strerror(UV_EOF), "end of file");
    assert_string_equal(chat_err_name(UV_EAI_NONAME), "EAI_NONAME");
}

static void test_unknown_code_has_a_name_and_does_not_leak(void **state)
{
    (void)state;
    /* libuv's uv_err_name() and uv_strerror() allocate a string for a code
     * they do not know; called per log line, that would leak. LeakSanitizer
     * fails this test if it does. */
    for (int i = 0; i < 3; i++) {
        assert_non_null(chat_err_name(-4242));
        assert_non_null(chat_strerror(-4242));
        assert_non_null(chat_err_name(4242));
    }
    assert_string_not_equal(chat_err_name(-4242), "OK");
}

static void test_error_set_fills_and_returns_code(void **state)
{
    (void)state;
    chat_error_t err = {0};
    int rc = chat_error_set(&err, CHAT_ERANGE, "port %d is outside [%d, %d]", 70000, 1, 65535);
    assert_int_equal(rc, CHAT_ERANGE);
    assert_int_equal(err.code, CHAT_ERANGE);
    assert_string_equal(err.message, "port 70000 is outside [1, 65535]");
}

static void test_error_set_with_null_only_returns_code(void **state)
{
    (void)state;
    assert_int_equal(chat_error_set(NULL, CHAT_EAUTH, "ignored %s", "x"), CHAT_EAUTH);
}

static void test_error_set_truncates_long_message(void **state)
{
    (void)state;
    chat_error_t err;
    char big[1000];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(chat_error_set(&err, CHAT_EINVAL, "%s", big), CHAT_EINVAL);
    assert_int_equal(strlen(err.message), sizeof(err.message) - 1);
    assert_int_equal(err.message[0], 'x');
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_success_has_name_and_message),
        cmocka_unit_test(test_every_code_has_its_name_and_message),
        cmocka_unit_test(test_codes_are_negative_and_distinct_from_libuv),
        cmocka_unit_test(test_libuv_codes_pass_through),
        cmocka_unit_test(test_unknown_code_has_a_name_and_does_not_leak),
        cmocka_unit_test(test_error_set_fills_and_returns_code),
        cmocka_unit_test(test_error_set_with_null_only_returns_code),
        cmocka_unit_test(test_error_set_truncates_long_message),
    };
    return cmocka_run_group_tests_name("chat-error", tests, NULL, NULL);
}
