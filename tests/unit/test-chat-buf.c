/* chat-buf: a growable buffer with a hard cap, and JSON string escaping. */
#include "chat-test.h"

#include <string.h>

#include "chat-buf.h"

static int buf_setup(void **state)
{
    static chat_buf_t b;
    chat_buf_init(&b, 1 << 20);
    *state = &b;
    return 0;
}

static int buf_teardown(void **state)
{
    chat_buf_close(*state);
    return 0;
}

/* Asserts that the buffer holds exactly the NUL-free string want. */
#define assert_buf_equal(b, want)                                                                  \
    do {                                                                                           \
        assert_int_equal((b)->len, strlen(want));                                                  \
        assert_memory_equal((b)->data, (want), strlen(want));                                      \
    } while (0)

static void test_init_is_empty_without_memory(void **state)
{
    (void)state;
    chat_buf_t b;
    chat_buf_init(&b, 100);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, 0);
    assert_int_equal(b.max, 100);
    chat_buf_close(&b);
}

static void test_append_grows_and_keeps_content(void **state)
{
    chat_buf_t *b = *state;
    char chunk[100];
    for (int i = 0; i < 50; i++) {
        memset(chunk, 'a' + i % 26, sizeof(chunk));
        assert_chat_ok(chat_buf_append(b, chunk, sizeof(chunk)));
    }
    assert_int_equal(b->len, 5000);
    assert_true(b->cap >= 5000);
    for (int i = 0; i < 50; i++)
        assert_int_equal(b->data[i * 100 + 99], 'a' + i % 26);
}

static void test_growth_doubles(void **state)
{
    chat_buf_t *b = *state;
    assert_chat_ok(chat_buf_append(b, "x", 1));
    size_t first = b->cap;
    assert_true(first >= 1);
    assert_chat_ok(chat_buf_reserve(b, first)); /* len + n = first + 1 */
    assert_int_equal(b->cap, 2 * first);
}

static void test_reset_keeps_memory(void **state)
{
    chat_buf_t *b = *state;
    assert_chat_ok(chat_buf_append_str(b, "hello"));
    char *data = b->data;
    size_t cap = b->cap;
    chat_buf_reset(b);
    assert_int_equal(b->len, 0);
    assert_ptr_equal(b->data, data);
    assert_int_equal(b->cap, cap);
    assert_chat_ok(chat_buf_append_str(b, "again"));
    assert_buf_equal(b, "again");
}

static void test_append_up_to_max_succeeds(void **state)
{
    (void)state;
    chat_buf_t b;
    char bytes[1000];
    memset(bytes, 'z', sizeof(bytes));
    chat_buf_init(&b, 1000);
    assert_chat_ok(chat_buf_append(&b, bytes, 600));
    assert_chat_ok(chat_buf_append(&b, bytes, 400));
    assert_int_equal(b.len, 1000);
    assert_true(b.cap <= b.max);
    chat_buf_close(&b);
}

static void test_append_past_max_is_too_big_and_changes_nothing(void **state)
{
    (void)state;
    chat_buf_t b;
    chat_buf_init(&b, 10);
    assert_chat_ok(chat_buf_append(&b, "0123456789", 10));
    assert_chat_err(chat_buf_append(&b, "x", 1), CHAT_ETOOBIG);
    assert_int_equal(b.len, 10);
    assert_memory_equal(b.data, "0123456789", 10);
    chat_buf_close(&b);
}

static void test_reserve_huge_is_too_big(void **state)
{
    chat_buf_t *b = *state;
    assert_chat_ok(chat_buf_append(b, "abc", 3));
    assert_chat_err(chat_buf_reserve(b, SIZE_MAX), CHAT_ETOOBIG);
    assert_chat_err(chat_buf_reserve(b, SIZE_MAX - 1), CHAT_ETOOBIG);
    assert_chat_err(chat_buf_reserve(b, b->max), CHAT_ETOOBIG);
    assert_chat_ok(chat_buf_reserve(b, b->max - 3));
    assert_int_equal(b->len, 3);
}

static void test_cap_never_exceeds_max(void **state)
{
    (void)state;
    chat_buf_t b;
    chat_buf_init(&b, 300);
    for (int i = 0; i < 300; i++)
        assert_chat_ok(chat_buf_append(&b, "y", 1));
    assert_int_equal(b.cap, 300);
    assert_chat_err(chat_buf_append(&b, "y", 1), CHAT_ETOOBIG);
    chat_buf_close(&b);
}

static void test_empty_append_succeeds(void **state)
{
    chat_buf_t *b = *state;
    assert_chat_ok(chat_buf_append(b, NULL, 0));
    assert_chat_ok(chat_buf_append_str(b, ""));
    assert_int_equal(b->len, 0);
}

static void test_printf_formats(void **state)
{
    chat_buf_t *b = *state;
    assert_chat_ok(chat_buf_append_str(b, "seq="));
    assert_chat_ok(chat_buf_printf(b, "%d/%s", 42, "conv"));
    assert_buf_equal(b, "seq=42/conv");
}

static void test_printf_grows_past_capacity(void **state)
{
    (void)state;
    chat_buf_t b;
    chat_buf_init(&b, 4096);
    assert_chat_ok(chat_buf_append_str(&b, "ab"));
    size_t room = b.cap - b.len;
    /* Longer than the free space: formatted again after growing, whole. */
    char want[600];
    memset(want, 'x', room + 100);
    want[room + 100] = '\0';
    assert_chat_ok(chat_buf_printf(&b, "%s|%d", want, -7));
    assert_int_equal(b.len, 2 + room + 100 + 3);
    assert_memory_equal(b.data, "ab", 2);
    assert_memory_equal(b.data + 2, want, room + 100);
    assert_memory_equal(b.data + 2 + room + 100, "|-7", 3);
    /* Exactly the free space minus the terminator: no growth needed. */
    chat_buf_reset(&b);
    size_t cap = b.cap;
    memset(want, 'y', cap - 1);
    want[cap - 1] = '\0';
    assert_chat_ok(chat_buf_printf(&b, "%s", want));
    assert_int_equal(b.len, cap - 1);
    assert_int_equal(b.cap, cap);
    chat_buf_close(&b);
}

static void test_printf_past_max_is_too_big(void **state)
{
    (void)state;
    chat_buf_t b;
    chat_buf_init(&b, 8);
    assert_chat_err(chat_buf_printf(&b, "%s", "0123456789"), CHAT_ETOOBIG);
    assert_int_equal(b.len, 0);
    chat_buf_close(&b);
}

static void test_append_i64_extremes(void **state)
{
    chat_buf_t *b = *state;
    assert_chat_ok(chat_buf_append_i64(b, INT64_MIN));
    assert_chat_ok(chat_buf_append_str(b, " "));
    assert_chat_ok(chat_buf_append_i64(b, 0));
    assert_chat_ok(chat_buf_append_str(b, " "));
    assert_chat_ok(chat_buf_append_i64(b, INT64_MAX));
    assert_buf_equal(b, "-9223372036854775808 0 9223372036854775807");
}

static void test_json_str_plain(void **state)
{
    chat_buf_t *b = *state;
    assert_chat_ok(chat_buf_append_json_str(b, "hello", 5));
    assert_buf_equal(b, "\"hello\"");
}

static void test_json_str_empty(void **state)
{
    chat_buf_t *b = *state;
    assert_chat_ok(chat_buf_append_json_str(b, "", 0));
    assert_buf_equal(b, "\"\"");
}

static void test_json_str_escapes_quote_and_backslash(void **state)
{
    chat_buf_t *b = *state;
    const char s[] = "say \"hi\" \\o/";
    assert_chat_ok(chat_buf_append_json_str(b, s, sizeof(s) - 1));
    assert_buf_equal(b, "\"say \\\"hi\\\" \\\\o/\"");
}

static void test_json_str_escapes_whitespace_controls(void **state)
{
    chat_buf_t *b = *state;
    const char s[] = "a\nb\rc\td";
    assert_chat_ok(chat_buf_append_json_str(b, s, sizeof(s) - 1));
    assert_buf_equal(b, "\"a\\nb\\rc\\td\"");
}

static void test_json_str_escapes_other_controls_as_u00xx(void **state)
{
    chat_buf_t *b = *state;
    const char s[] = {'\x01', '\x1f', '\x08', '\x0c', '\0', 'x'};
    assert_chat_ok(chat_buf_append_json_str(b, s, sizeof(s)));
    assert_buf_equal(b, "\"\\u0001\\u001f\\u0008\\u000c\\u0000x\"");
}

/* Long strings are checked eight bytes at a time: an escape anywhere, at
 * every position in a word, is still found. */
static void test_json_str_finds_escapes_at_every_offset(void **state)
{
    chat_buf_t *b = *state;
    static const char specials[] = {'"', '\\', '\n', '\x01', '\x1f'};
    for (size_t k = 0; k < sizeof(specials); k++) {
        for (size_t pos = 0; pos < 40; pos++) {
            char s[40], want[64];
            memset(s, 'a', sizeof(s));
            s[pos] = specials[k];
            const char *esc = specials[k] == '"'    ? "\\\""
                              : specials[k] == '\\' ? "\\\\"
                              : specials[k] == '\n' ? "\\n"
                              : specials[k] == 1    ? "\\u0001"
                                                    : "\\u001f";
            snprintf(want, sizeof(want), "\"%.*s%s%.*s\"", (int)pos, s, esc,
                     (int)(sizeof(s) - pos - 1), s + pos + 1);
            chat_buf_reset(b);
            assert_chat_ok(chat_buf_append_json_str(b, s, sizeof(s)));
            assert_buf_equal(b, want);
        }
    }
    /* High bytes never need escaping, however many. */
    char hi[33];
    memset(hi, 0xa0, 32);
    hi[32] = '\0';
    chat_buf_reset(b);
    assert_chat_ok(chat_buf_append_json_str(b, hi, 32));
    assert_int_equal(b->len, 34);
}

static void test_json_str_keeps_utf8_and_del(void **state)
{
    chat_buf_t *b = *state;
    const char s[] = "h\xc3\xa9llo \xe2\x9c\x93 \xf0\x9f\x98\x80 \x7f";
    assert_chat_ok(chat_buf_append_json_str(b, s, sizeof(s) - 1));
    assert_buf_equal(b, "\"h\xc3\xa9llo \xe2\x9c\x93 \xf0\x9f\x98\x80 \x7f\"");
}

static void test_json_str_that_fits_exactly_succeeds(void **state)
{
    (void)state;
    /* Escaping may need up to six bytes per input byte, but a string whose
     * escaped form fits must not be refused for the worst case. */
    chat_buf_t b;
    chat_buf_init(&b, 14);
    assert_chat_ok(chat_buf_append_json_str(&b, "0123456789ab", 12));
    assert_buf_equal(&b, "\"0123456789ab\"");
    chat_buf_reset(&b);
    /* 1 + 2 + 1 + 2 + 6 bytes escaped, and the quotes. */
    assert_chat_ok(chat_buf_append_json_str(&b, "a\"b\n\x01", 5));
    assert_buf_equal(&b, "\"a\\\"b\\n\\u0001\"");
    chat_buf_close(&b);
}

static void test_json_str_that_does_not_fit_is_too_big(void **state)
{
    (void)state;
    chat_buf_t b;
    chat_buf_init(&b, 12);
    assert_chat_ok(chat_buf_append(&b, "{", 1));
    assert_chat_err(chat_buf_append_json_str(&b, "0123456789", 10), CHAT_ETOOBIG);
    assert_chat_err(chat_buf_append_json_str(&b, "\x01\x02", 2), CHAT_ETOOBIG);
    assert_int_equal(b.len, 1);
    chat_buf_close(&b);
}

static void test_close_twice_is_safe(void **state)
{
    (void)state;
    chat_buf_t b;
    chat_buf_init(&b, 64);
    assert_chat_ok(chat_buf_append_str(&b, "x"));
    chat_buf_close(&b);
    chat_buf_close(&b);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
}

#define BUF_TEST(f) cmocka_unit_test_setup_teardown(f, buf_setup, buf_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_is_empty_without_memory),
        BUF_TEST(test_append_grows_and_keeps_content),
        BUF_TEST(test_growth_doubles),
        BUF_TEST(test_reset_keeps_memory),
        cmocka_unit_test(test_append_up_to_max_succeeds),
        cmocka_unit_test(test_append_past_max_is_too_big_and_changes_nothing),
        BUF_TEST(test_reserve_huge_is_too_big),
        cmocka_unit_test(test_cap_never_exceeds_max),
        BUF_TEST(test_empty_append_succeeds),
        BUF_TEST(test_printf_formats),
        cmocka_unit_test(test_printf_grows_past_capacity),
        cmocka_unit_test(test_printf_past_max_is_too_big),
        BUF_TEST(test_append_i64_extremes),
        BUF_TEST(test_json_str_plain),
        BUF_TEST(test_json_str_empty),
        BUF_TEST(test_json_str_escapes_quote_and_backslash),
        BUF_TEST(test_json_str_escapes_whitespace_controls),
        BUF_TEST(test_json_str_escapes_other_controls_as_u00xx),
        BUF_TEST(test_json_str_finds_escapes_at_every_offset),
        BUF_TEST(test_json_str_keeps_utf8_and_del),
        cmocka_unit_test(test_json_str_that_fits_exactly_succeeds),
        cmocka_unit_test(test_json_str_that_does_not_fit_is_too_big),
        cmocka_unit_test(test_close_twice_is_safe),
    };
    return cmocka_run_group_tests_name("chat-buf", tests, NULL, NULL);
}
